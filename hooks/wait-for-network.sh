#!/bin/sh
# Pre-execution hook: wait until the machine has an IPv4 address (not loopback 127.x, not
# link-local 169.254.x), checking once a second, and set TSForgeIPAddress to it.
#   TSForgeNetworkTimeout  seconds to wait (default 60); on timeout the hook fails (exit 1)
#   TSForgeNetworkHost     optional: also wait until `ping -c 1 -W 1 HOST` succeeds
# For tests: TSFORGE_IP_COMMAND, when set, is run instead of `ip -4 -o addr show` (same output
# format); TSFORGE_PING_COMMAND, when set, instead of `ping -c 1 -W 1` (the host is appended).
# Without `ip` the addresses come from /proc/net/fib_trie.
set -eu

set_var() {
    if command -v tsforge >/dev/null 2>&1; then
        tsforge env set "$1" "$2"
    else
        : "${TSFORGE_ENV_FILE:?TSFORGE_ENV_FILE is not set: run this hook from tsforge}"
        printf '%s=%s\n' "$1" "$2" >> "$TSFORGE_ENV_FILE"
    fi
}

timeout=${TSForgeNetworkTimeout:-60}
case $timeout in
    "" | *[!0-9]*)
        echo "error: TSForgeNetworkTimeout=\"$timeout\" is not a number of seconds" >&2
        exit 1
        ;;
esac
host=${TSForgeNetworkHost:-}

# `ip -4 -o addr show` lines from /proc/net/fib_trie: "|-- ADDR" followed by "/32 host LOCAL".
fib_trie() {
    last=
    while read -r a b c _; do
        case "$a $b $c" in
            "|-- "*) last=$b ;;
            "/32 host LOCAL") echo "0: ?    inet $last/32" ;;
        esac
    done < /proc/net/fib_trie
}

# The first IPv4 address that is not loopback or link-local (empty when there is none).
first_address() {
    {
        if [ -n "${TSFORGE_IP_COMMAND:-}" ]; then
            eval "$TSFORGE_IP_COMMAND"
        elif command -v ip >/dev/null 2>&1; then
            ip -4 -o addr show
        elif [ -r /proc/net/fib_trie ]; then
            fib_trie
        fi
    } 2>/dev/null | sed -n 's/.* inet \([0-9][0-9.]*\)\/.*/\1/p' |
        grep -v -e '^127\.' -e '^169\.254\.' | sed -n 1p
}

answers_ping() {
    if [ -n "${TSFORGE_PING_COMMAND:-}" ]; then
        eval "$TSFORGE_PING_COMMAND \"\$1\""
    else
        ping -c 1 -W 1 "$1"
    fi > /dev/null 2>&1
}

# Hundredths of a second since boot, from /proc/uptime ("SECONDS.HH ..."); empty without it.
uptime_cs() {
    if read -r up _ < /proc/uptime; then
        frac=${up#*.}
        echo $((${up%.*} * 100 + ${frac#0}))
    fi 2>/dev/null
}
# Whole seconds since the start, else the number of one-second waits.
ticks=0
start=$(uptime_cs) || start=
elapsed() {
    if [ -n "$start" ]; then
        echo $((($(uptime_cs) - start) / 100))
    else
        echo "$ticks"
    fi
}

if [ -n "$host" ]; then
    echo "Waiting up to $timeout s for an IPv4 address and for $host to answer ping..." >&2
else
    echo "Waiting up to $timeout s for an IPv4 address..." >&2
fi
while :; do
    addr=$(first_address)
    if [ -n "$addr" ] && { [ -z "$host" ] || answers_ping "$host"; }; then
        break
    fi
    now=$(elapsed)
    if [ "$now" -ge "$timeout" ]; then
        if [ -z "$addr" ]; then
            echo "error: no IPv4 address after $timeout s (TSForgeNetworkTimeout): check the cable, the network driver and DHCP" >&2
        else
            echo "error: $host did not answer ping within $timeout s (TSForgeNetworkTimeout); this computer has $addr" >&2
        fi
        exit 1
    fi
    if [ "$now" -gt 0 ] && [ $((now % 10)) -eq 0 ]; then
        echo "  still waiting ($now s)" >&2
    fi
    sleep 1
    ticks=$((ticks + 1))
done
if [ -n "$host" ]; then
    echo "Network is up: IPv4 address $addr; $host answers ping" >&2
else
    echo "Network is up: IPv4 address $addr" >&2
fi
set_var TSForgeIPAddress "$addr"
