#!/bin/sh
# Pre-execution hook: before a sequence that erases disks, make the operator type WIPE.
# Anything else (or no input) stops the boot; on WIPE it sets TSForgeWipeConfirmed=true.
# TSForgeConfirmWipe=false skips the question (unattended labs).
set -eu

set_var() {
    if command -v tsforge >/dev/null 2>&1; then
        tsforge env set "$1" "$2"
    else
        : "${TSFORGE_ENV_FILE:?TSFORGE_ENV_FILE is not set: run this hook from tsforge}"
        printf '%s=%s\n' "$1" "$2" >> "$TSFORGE_ENV_FILE"
    fi
}

case ${TSForgeConfirmWipe:-} in
    [Ff][Aa][Ll][Ss][Ee])
        echo "TSForgeConfirmWipe=false: not asking before the disks are erased" >&2
        exit 0
        ;;
esac

echo "WARNING: this task sequence erases disk(s) on this computer; everything on them is lost." >&2
echo "  disks found: ${_TSForgeDiskCount:-unknown}" >&2
if [ -n "${TSForgeWipeDisk:-}" ]; then
    echo "  target disk: TSForgeWipeDisk = $TSForgeWipeDisk" >&2
elif [ -n "${OSDisk:-}" ]; then
    echo "  target disk: OSDisk = $OSDisk" >&2
fi
printf 'Type WIPE to continue: ' >&2
if IFS= read -r answer && [ "$answer" = WIPE ]; then
    echo "Confirmed: the task sequence may erase the disk(s)." >&2
    set_var TSForgeWipeConfirmed true
    exit 0
fi
echo "not confirmed: nothing was changed" >&2
exit 1
