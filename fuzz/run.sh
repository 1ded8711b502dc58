#!/usr/bin/env bash
# Run each atheris fuzz target for N seconds and report execs/s, coverage and findings.
#
#   fuzz/run.sh [--seconds N] [--targets "native verify structure"] [--seed S]
#
# Seeds and fixtures come from fuzz/make_corpus.py (cache/fuzz/); the growing corpus
# is kept in cache/fuzz/corpus/<target> between runs, logs in cache/fuzz/logs/, and
# any crash/timeout/oom input in cache/fuzz/artifacts/<target>/. A finding is an
# exception outside the documented contract, an oracle mismatch, an input slower than
# 10 s or a process above 2 GB RSS. Exit status: 0 when every target ran with no
# finding, 1 otherwise. --seed fixes libFuzzer's random seed (CI uses one, so a CI run can be
# replayed); without it each run explores differently. Needs `pip install atheris`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
targets="native verify structure"
seed_flag=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --targets) targets=$2; shift 2 ;;
        --seed) seed_flag=(-seed="$2"); shift 2 ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
base=cache/fuzz
python3 fuzz/make_corpus.py --out "$base" > /dev/null
status=0
printf '%-8s %8s %10s %8s %6s %6s %6s %s\n' target seconds execs execs/s cov ft corpus findings
for t in $targets; do
    corpus=$base/corpus/$t artifacts=$base/artifacts/$t/ log=$base/logs/$t.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    rm -f "$artifacts"crash-* "$artifacts"timeout-* "$artifacts"oom-*
    set +e
    # -W ignore: numpy's RuntimeWarnings on NaN casts in the harness are expected noise.
    python3 -W ignore "fuzz/fuzz_$t.py" "$corpus" "$base/seeds/$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 "${seed_flag[@]}" -print_final_stats=1 -artifact_prefix="$artifacts" > "$log" 2>&1
    rc=$?
    set -e
    last=$(grep -E '(DONE|pulse|NEW|REDUCE|INITED) +cov:' "$log" | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<< "$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<< "$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<< "$last")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")
    findings=$(find "$artifacts" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l)
    printf '%-8s %8s %10s %8s %6s %6s %6s %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "$findings"
    if [[ $rc -ne 0 || $findings -ne 0 || -z "$execs" ]]; then
        status=1
        echo "run.sh: $t failed (exit $rc, $findings finding(s)); log: $log" >&2
        grep -A25 -E "Uncaught Python exception|ERROR: libFuzzer" "$log" | head -40 >&2 || true
    fi
done
exit $status
