#!/usr/bin/env bash
# Build rawproof._native with AddressSanitizer + UBSan (CMake option RAWPROOF_SANITIZE)
# into a scratch folder and run the native test suite against that build.
#
# The editable install everyone uses is left alone: the sanitized wheel goes to
# cache/sanitize/site (own CMake build dir too) and is put first on PYTHONPATH, and a
# tiny sitecustomize drops the editable finder so `import rawproof` resolves there.
# libasan is preloaded because the interpreter itself is not instrumented; leak
# detection is off because CPython keeps interned objects alive until exit by design.
# Any ASan or UBSan report aborts the process, so pytest fails and so does this script.
#
# Usage: native/sanitize.sh [extra pytest args]      (from any directory)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${RAWPROOF_SANITIZE_DIR:-$ROOT/cache/sanitize}
SITE=$WORK/site
start=$(date +%s)

rm -rf "$SITE"
mkdir -p "$WORK"
python3 -m pip install -q --no-deps --no-build-isolation \
    -C cmake.define.RAWPROOF_SANITIZE=ON -C build-dir="$WORK/build" -C cmake.build-type=RelWithDebInfo \
    --target "$SITE" "$ROOT"
built=$(date +%s)

# A .pth of the editable install adds a meta-path finder that would shadow PYTHONPATH.
cat > "$SITE/sitecustomize.py" <<'PY'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "_editable" not in type(f).__module__]
PY

ASAN_LIB=$(gcc -print-file-name=libasan.so)
UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
export PYTHONPATH="$SITE:$ROOT/tests"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" python3 - "$SITE" <<'PY'
import sys
import rawproof._native as n
if not n.__file__.startswith(sys.argv[1]):
    sys.exit(f"sanitize.sh: imported {n.__file__}, not the sanitized build")
print(f"sanitized build: {n.__file__}")
PY

LOG=$WORK/pytest.log
set +e
LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" python3 -m pytest -q -p no:cacheprovider \
    tests/test_native_unpack.py tests/test_native_cfa.py tests/test_native_dct.py tests/test_hostile_input.py \
    "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
if grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer" "$LOG"; then
    echo "sanitize.sh: sanitizer report found (see $LOG)" >&2
    exit 1
fi
end=$(date +%s)
echo "sanitize.sh: build $((built - start)) s, tests $((end - built)) s, pytest exit $rc"
exit "$rc"
