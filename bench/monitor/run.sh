#!/usr/bin/env bash
# tsforge monitor under load: 200 simulated runners post a full deployment each (run_start,
# 12 steps started and ended, run_end: 26 events in 14 batches) concurrently on loopback; the
# monitor is stopped (SIGTERM) and started again on the same SQLite file in the middle.
# Reports events/s and p99 latency and checks every event is stored exactly once.
#
#   bench/monitor/run.sh                 # RUNNERS=200 STEPS=12 RESTART_AFTER=1 (seconds)
#   DATABASE=postgres://… bench/monitor/run.sh
#
# Not part of the tests or CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNNERS=${RUNNERS:-200}
STEPS=${STEPS:-12}
RESTART_AFTER=${RESTART_AFTER:-1}
PORT=${PORT:-19800}
work=$(mktemp -d)
trap 'kill "${mon:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
DATABASE=${DATABASE:-sqlite:$work/monitor.db}

cargo build --release -q -p tsforge
cargo build --release -q -p tsforge-monitor --example loadgen
tsforge=target/release/tsforge
loadgen=target/release/examples/loadgen

start_monitor() {
    "$tsforge" monitor --listen "127.0.0.1:$PORT" --database "$DATABASE" 2>>"$work/monitor.log" &
    mon=$!
    for _ in $(seq 100); do
        if curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    echo "the monitor did not start:"; cat "$work/monitor.log"; exit 1
}

start_monitor
"$loadgen" "http://127.0.0.1:$PORT" "$RUNNERS" "$STEPS" >"$work/loadgen.out" &
gen=$!
sleep "$RESTART_AFTER"
echo "restarting the monitor after ${RESTART_AFTER} s"
kill -TERM "$mon"; wait "$mon" || true
start_monitor
status=0
wait "$gen" || status=$?
cat "$work/loadgen.out"
kill -TERM "$mon"; wait "$mon" || true
exit "$status"
