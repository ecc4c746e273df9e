#!/usr/bin/env bash
# Longer fuzzing runs of the atheris targets in tests/fuzz/ (CI runs each for seconds only,
# in tests/test_fuzz.py).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 600); TARGETs are names like tar, squash, manifest (default:
# every tests/fuzz/fuzz_*.py). The corpus of each target is kept between runs under
# $DOCKER2ACI_FUZZ_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/docker2aci-fuzz/corpus/TARGET),
# crashing inputs go to .../artifacts/TARGET/ and the full libFuzzer output to .../TARGET.log.
# Reproduce a crash:  .venv/bin/python tests/fuzz/fuzz_TARGET.py ARTIFACT
# Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in tests/fuzz/fuzz_*.py; do
        name=${f##*/fuzz_}
        targets+=("${name%.py}")
    done
fi
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
cache=${DOCKER2ACI_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/docker2aci-fuzz}

failed=()
for target in "${targets[@]}"; do
    corpus="$cache/corpus/$target"
    artifacts="$cache/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    echo "== $target: ${seconds}s, corpus $corpus"
    status=0
    "$python" "tests/fuzz/fuzz_$target.py" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$cache/$target.log" 2>&1 || status=$?
    grep -E "DONE|stat::number_of_executed_units|Test unit written|ERROR: libFuzzer" "$cache/$target.log" || true
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "!! $target failed (exit status $status); see $cache/$target.log"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "no crash in: ${targets[*]}"
