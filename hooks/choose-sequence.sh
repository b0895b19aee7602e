#!/bin/sh
# Pre-execution hook: choose the task sequence to run and set TSForgeSequence.
# Lists the medium's sequences (_TSForgeSequences, comma-separated) numbered 1..n and asks for a
# number (5 tries). One sequence: chosen without asking. TSForgeSequence already set: kept.
set -eu

set_var() {
    if command -v tsforge >/dev/null 2>&1; then
        tsforge env set "$1" "$2"
    else
        : "${TSFORGE_ENV_FILE:?TSFORGE_ENV_FILE is not set: run this hook from tsforge}"
        printf '%s=%s\n' "$1" "$2" >> "$TSFORGE_ENV_FILE"
    fi
}

trim() {
    t=${1#"${1%%[! ]*}"}
    t=${t%"${t##*[! ]}"}
}

if [ -n "${TSForgeSequence:-}" ]; then
    echo "TSForgeSequence is already set: keeping \"$TSForgeSequence\"" >&2
    exit 0
fi

n=0
old_ifs=$IFS
IFS=,
set -f
for s in ${_TSForgeSequences:-}; do
    trim "$s"
    [ -n "$t" ] || continue
    n=$((n + 1))
    eval "seq_$n=\$t"
done
set +f
IFS=$old_ifs

if [ "$n" -eq 0 ]; then
    echo "error: no task sequences: _TSForgeSequences is empty (run this hook from tsforge boot)" >&2
    exit 1
fi
if [ "$n" -eq 1 ]; then
    echo "Task sequence: $seq_1 (the only one on this medium)" >&2
    set_var TSForgeSequence "$seq_1"
    exit 0
fi

echo "Task sequences on this medium:" >&2
i=1
while [ "$i" -le "$n" ]; do
    eval "echo \"  \$i. \$seq_$i\"" >&2
    i=$((i + 1))
done

tries=0
while :; do
    printf 'Sequence number: ' >&2
    IFS= read -r answer || { echo "no input: no task sequence chosen" >&2; exit 1; }
    trim "$answer"
    while :; do
        case $t in 0?*) t=${t#0} ;; *) break ;; esac
    done
    i=1
    while [ "$i" -le "$n" ]; do
        if [ "$t" = "$i" ]; then
            eval "chosen=\$seq_$i"
            echo "Task sequence: $chosen" >&2
            set_var TSForgeSequence "$chosen"
            exit 0
        fi
        i=$((i + 1))
    done
    echo "\"$answer\" is not a number from 1 to $n" >&2
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
        echo "no task sequence chosen after 5 tries" >&2
        exit 1
    fi
done
