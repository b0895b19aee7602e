#!/usr/bin/env bash
# tsforge benchmarks, from a clean checkout: builds the release binary, generates the inputs,
# checks that the outputs agree, times everything with hyperfine and prints a table.
#
#   bench/run.sh            # full run (a few minutes on 2 cores)
#   RUNS=3 bench/run.sh     # fewer timed runs per command (default 10; fsync runs: 3;
#                           # pure-Python PyYAML: SLOW_RUNS=2)
#
# Needs: cargo, python3, hyperfine, xmllint, python3-yaml. On Debian:
#   apt-get install -y hyperfine libxml2-utils python3-yaml
# Not part of `cargo test` or CI: nothing here runs unless you run it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
RUNS=${RUNS:-10}
FSYNC_RUNS=${FSYNC_RUNS:-3}
SLOW_RUNS=${SLOW_RUNS:-2} # pure-Python PyYAML takes about a minute per run
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
for tool in hyperfine xmllint cargo; do
    command -v "$tool" >/dev/null || {
        echo "bench/run.sh: $tool is missing (apt-get install -y hyperfine libxml2-utils python3-yaml)" >&2
        exit 2
    }
done
"$PY" -c 'import yaml' 2>/dev/null || {
    echo "bench/run.sh: $PY has no yaml module (apt-get install -y python3-yaml)" >&2
    exit 2
}

echo "== building tsforge (release)" >&2
cargo build --release --quiet --bin tsforge
TS="${CARGO_TARGET_DIR:-$root/target}/release/tsforge"
[ -x "$TS" ] || TS="$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tsforge"

work=$(mktemp -d "${TMPDIR:-/tmp}/tsforge-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "== generating inputs in $work" >&2
"$PY" "$root/bench/gen-sequence.py" big >big.xml
"$TS" convert big.xml --to yaml -o big.yaml
"$PY" "$root/bench/gen-sequence.py" setvar >big-setvar.yaml
"$PY" "$root/bench/gen-sequence.py" setvar --steps 1 >one-setvar.yaml
cp "$root/examples/minimal.yaml" tiny.yaml

echo "== checking the outputs agree" >&2
fail=0
"$TS" validate big.xml >validate-xml.out 2>&1 || { echo "validate big.xml exited $?" >&2; fail=1; }
"$TS" validate big.yaml >validate-yaml.out 2>&1 || { echo "validate big.yaml exited $?" >&2; fail=1; }
xmllint --noout big.xml || fail=1
"$PY" -c 'import sys, yaml; d = yaml.load(open(sys.argv[1]), Loader=yaml.CSafeLoader); assert d["steps"]' big.yaml || fail=1
# Same findings from both formats (positions differ, messages do not).
strip() { sed -E 's/^[^:]*:[0-9]+:[0-9]+: //' "$1" | sort; }
if ! diff <(strip validate-xml.out) <(strip validate-yaml.out) >/dev/null; then
    echo "validate reports different findings for big.xml and big.yaml" >&2
    fail=1
fi
"$TS" convert big.yaml --to xml -o back.xml
"$TS" convert back.xml --to yaml -o back.yaml
cmp -s big.yaml back.yaml || { echo "XML -> YAML -> XML -> YAML is not stable" >&2; fail=1; }
d=$(mktemp -d "$work/state.XXXXXX")
"$TS" run big-setvar.yaml --state-dir "$d" >/dev/null 2>&1 || { echo "run big-setvar.yaml failed" >&2; fail=1; }
d=$(mktemp -d "$work/state.XXXXXX")
"$TS" run big-setvar.yaml --state-dir "$d" --no-fsync >/dev/null 2>&1 || { echo "run --no-fsync failed" >&2; fail=1; }
[ $fail = 0 ] || exit 1
steps=$(grep -c '<step ' big.xml)
findings=$(wc -l <validate-xml.out)
echo "   validate exits 0 for both, $findings identical findings (warnings) each, round trip stable" >&2

echo "== timing (hyperfine, $RUNS runs each)" >&2
H=(hyperfine --style basic -N)
"${H[@]}" --warmup 1 --runs "$RUNS" --export-json parse.json \
    -n "tsforge validate big.xml" "$TS validate big.xml" \
    -n "tsforge validate big.yaml" "$TS validate big.yaml" \
    -n "tsforge validate tiny.yaml" "$TS validate tiny.yaml" \
    -n "xmllint --noout big.xml" "xmllint --noout big.xml" \
    -n "python3 yaml CSafeLoader big.yaml" "$PY -c 'import sys,yaml; yaml.load(open(sys.argv[1]), Loader=yaml.CSafeLoader)' big.yaml" \
    -n "python3 import yaml" "$PY -c 'import yaml'" >&2
"${H[@]}" --runs "$SLOW_RUNS" --warmup 0 --export-json parse-slow.json \
    -n "python3 yaml.safe_load big.yaml" "$PY -c 'import sys,yaml; yaml.safe_load(open(sys.argv[1]))' big.yaml" >&2
# A run needs a fresh state directory each time (a second run would resume, i.e. do nothing).
R=(hyperfine --style basic --warmup 1)
"${R[@]}" --runs "$FSYNC_RUNS" --export-json run-fsync.json \
    -n "run 1000 set-variable (fsync)" "d=\$(mktemp -d $work/s.XXXXXX) && $TS run big-setvar.yaml --state-dir \$d" \
    -n "run 1 set-variable (fsync)" "d=\$(mktemp -d $work/s.XXXXXX) && $TS run one-setvar.yaml --state-dir \$d" >&2
"${R[@]}" --runs "$RUNS" --export-json run-nofsync.json \
    -n "run 1000 set-variable (--no-fsync)" "d=\$(mktemp -d $work/s.XXXXXX) && $TS run big-setvar.yaml --state-dir \$d --no-fsync" \
    -n "run 1 set-variable (--no-fsync)" "d=\$(mktemp -d $work/s.XXXXXX) && $TS run one-setvar.yaml --state-dir \$d --no-fsync" >&2

"$PY" - "$steps" "$(stat -c %s big.xml)" "$(stat -c %s big.yaml)" <<'PYEOF'
import json, sys
steps, xml_size, yaml_size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = {}
for f in ["parse.json", "parse-slow.json", "run-fsync.json", "run-nofsync.json"]:
    for x in json.load(open(f))["results"]:
        r[x["command"]] = x
def m(k): return r[k]["mean"]
def sd(k): return r[k]["stddev"] or 0.0
print(f"\nInputs: {steps} steps; big.xml {xml_size/1e6:.1f} MB, big.yaml {yaml_size/1e6:.1f} MB\n")
print(f"| command | mean ± σ | per step | time ÷ tsforge validate (same file) |")
print(f"| --- | --- | --- | --- |")
tiny = m("tsforge validate tiny.yaml")
imp = m("python3 import yaml")
rows = [
    ("tsforge validate big.xml", tiny, "tsforge validate big.xml"),
    ("xmllint --noout big.xml", 0, "tsforge validate big.xml"),
    ("tsforge validate big.yaml", tiny, "tsforge validate big.yaml"),
    ("python3 yaml.safe_load big.yaml", imp, "tsforge validate big.yaml"),
    ("python3 yaml CSafeLoader big.yaml", imp, "tsforge validate big.yaml"),
]
for k, base, ref in rows:
    per = (m(k) - base) / steps * 1e6
    ratio = m(k) / m(ref)
    print(f"| `{k}` | {m(k)*1e3:.1f} ± {sd(k)*1e3:.1f} ms | {per:.1f} µs | {ratio:.2f}× |")
for k in ["tsforge validate tiny.yaml", "python3 import yaml"]:
    print(f"| `{k}` (start-up, subtracted above) | {m(k)*1e3:.1f} ± {sd(k)*1e3:.1f} ms | | |")
print()
print("| engine: run | mean ± σ | per step (1000 − 1 step runs) |")
print("| --- | --- | --- |")
per = {}
for mode in ["fsync", "--no-fsync"]:
    big, one = m(f"run 1000 set-variable ({mode})"), m(f"run 1 set-variable ({mode})")
    per[mode] = (big - one) / 999
    print(f"| 1000 set-variable ({mode}) | {big*1e3:.0f} ± {sd(f'run 1000 set-variable ({mode})')*1e3:.0f} ms | {per[mode]*1e6:.0f} µs |")
    print(f"| 1 set-variable ({mode}) | {one*1e3:.1f} ± {sd(f'run 1 set-variable ({mode})')*1e3:.1f} ms | |")
print(f"\nfsync / no-fsync per step: {per['fsync']/per['--no-fsync']:.1f}×")
def rel(a, b):
    x = m(a) / m(b)
    return f"{x:.2f}× as long as" if x >= 1 else f"{1/x:.1f}× faster than"
print(f"tsforge validate big.xml:  {rel('tsforge validate big.xml', 'xmllint --noout big.xml')} xmllint --noout")
print(f"tsforge validate big.yaml: {rel('tsforge validate big.yaml', 'python3 yaml.safe_load big.yaml')} PyYAML safe_load, "
      f"{rel('tsforge validate big.yaml', 'python3 yaml CSafeLoader big.yaml')} PyYAML CSafeLoader")
PYEOF
echo
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1);" \
    "state dir on $(df -T "$work" | awk 'NR==2 {print $2 " (" $1 ")"}')"
