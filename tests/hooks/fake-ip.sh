#!/bin/sh
# Stand-in for `ip -4 -o addr show` (TSFORGE_IP_COMMAND): `fake-ip.sh COUNTER N` shows only
# loopback and a link-local address for the first N calls (counted in the file COUNTER), then
# 10.0.2.15 as well.
calls=$(cat "$1" 2>/dev/null) || calls=0
calls=$((calls + 1))
echo "$calls" > "$1"
printf '%s\n' '1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever'
printf '%s\n' '2: eth0    inet 169.254.7.7/16 brd 169.254.255.255 scope link eth0\       valid_lft forever preferred_lft forever'
if [ "$calls" -gt "$2" ]; then
    printf '%s\n' '3: eth1    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth1\       valid_lft 86393sec preferred_lft 86393sec'
fi
