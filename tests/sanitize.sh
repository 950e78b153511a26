#!/bin/sh
# tests/sanitize.sh: part of `make test`.  Builds the package twice more from
# a clean copy of the distributed tree — with ASan+UBSan and with TSan — and
# runs the test suite in each (under TSan without the Python round trips,
# which exercise MLflow more than our threads).  Results land in .trs files
# below _san/, which tests/summary.sh counts with the rest.  Exits non-zero
# when a build fails.
set -u
top_builddir=$(pwd)
rc=0
rm -rf _san
mkdir -p _san
if ! make -s distdir distdir=_san/src > _san/distdir.log 2>&1; then
  echo "sanitize: make distdir failed (see _san/distdir.log)"
  exit 1
fi
all_tests=$(make -s print-tests)
for kind in asan tsan; do
  d=_san/$kind
  cp -a _san/src "$d"
  case $kind in
    tsan) tests=$(printf '%s\n' $all_tests | grep -v '\.py$' | grep -v valgrind | tr '\n' ' ') ;;
    *) tests=$(printf '%s\n' $all_tests | grep -v valgrind | tr '\n' ' ') ;;
  esac
  # Share the MLflow test environment of the main build.
  if [ -d "$top_builddir/tests/.venv" ]; then mkdir -p "$d/tests" && ln -sfn "$top_builddir/tests/.venv" "$d/tests/.venv"; fi
  echo "sanitize: $kind build"
  if ! (cd "$d" && ./configure -q --enable-werror --enable-$kind > build.log 2>&1 && make -j2 >> build.log 2>&1); then
    echo "sanitize: $kind build failed (see $d/build.log)"
    tail -20 "$d/build.log"
    rc=1
    continue
  fi
  echo "sanitize: $kind tests"
  (cd "$d" && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
     ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
     make -k check TESTS="$tests" > check.log 2>&1) || true
  grep -E '^(FAIL|ERROR|XPASS)' "$d/check.log" | sed "s|^|  $kind: |" | head -40
done
rm -rf _san/src
exit $rc
