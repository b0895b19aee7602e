#!/bin/sh
# Pre-execution hook: ask for the computer name and set OSDComputerName.
# NetBIOS rules: 1-15 characters, letters, digits and '-', not only digits.
set -eu
tries=0
while :; do
    printf 'Computer name: ' >&2
    IFS= read -r name || { echo "no input: computer name not set" >&2; exit 1; }
    case "$name" in
        *[!A-Za-z0-9-]* | "") ok=no ;;
        *[!0-9]*) ok=yes ;;
        *) ok=no ;;
    esac
    if [ "$ok" = yes ] && [ "${#name}" -le 15 ]; then
        break
    fi
    echo "\"$name\" is not a valid computer name (1-15 letters, digits or '-', not only digits)" >&2
    tries=$((tries + 1))
    [ "$tries" -lt 5 ] || exit 1
done
if command -v tsforge >/dev/null 2>&1; then
    tsforge env set OSDComputerName "$name"
else
    : "${TSFORGE_ENV_FILE:?TSFORGE_ENV_FILE is not set: run this hook from tsforge}"
    printf 'OSDComputerName=%s\n' "$name" >> "$TSFORGE_ENV_FILE"
fi
