#!/usr/bin/env bash
# Seeds for the run_state fuzz target: the state directory of the target's sequence stopped at
# its restart (`run --no-reboot`, exit 3) and after it finished, each as
# state.json NUL steps.jsonl, with FINGERPRINT for the program's fingerprint. Run from the repository root after `cargo build`.
set -euo pipefail
out=$(dirname "$0")/run_state
mkdir -p "$out"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
bin=${TSFORGE:-target/debug/tsforge}
# The sequence is the target's own (between the r#" and "# of SEQUENCE).
sed -n '/^const SEQUENCE: &str = r#"/,/^"#;/p' fuzz/fuzz_targets/run_state.rs |
    sed '1s/^const SEQUENCE: &str = r#"//; $d' >"$t/ts.yaml"
# The program's fingerprint becomes FINGERPRINT (the target puts its own back).
seed() {
    { sed 's/"program":"[0-9a-f]*"/"program":"FINGERPRINT"/' "$t/s/state.json"
      printf '\0'; cat "$t/s/steps.jsonl"; } >"$out/$1"
}
set +e
"$bin" run "$t/ts.yaml" --state-dir "$t/s" --no-reboot >/dev/null 2>&1
code=$?
set -e
[ "$code" = 3 ] || { echo "run_state.sh: expected exit 3 at the restart, got $code" >&2; exit 1; }
seed at-restart
"$bin" run "$t/ts.yaml" --state-dir "$t/s" --no-reboot >/dev/null 2>&1
seed finished
