#!/bin/sh
# tests/valgrind.sh: the core, SSE and libevent test programs under valgrind memcheck
# (in-process: TAP_NOFORK), failing on any memory error or definite leak.
# TAP output.  Skipped when valgrind is not installed (CI installs it) or in
# sanitizer builds.
: "${top_builddir:=.}"
if [ -z "${VALGRIND:-}" ] || [ -n "${MLT_SANITIZED:-}" ]; then
  echo "1..0 # SKIP valgrind not available (or sanitizer build)"
  exit 0
fi
progs="tests/unit/test_core tests/unit/test_hotpath tests/unit/test_delivery tests/unit/test_thread tests/unit/test_assess tests/unit/test_sse tests/event/test_evloop tests/event/test_evhttp tests/unit/test_span_options tests/parity/test_scope tests/unit/test_chat_scan"
n=0
echo "1..$(echo $progs | wc -w)"
for p in $progs; do
  n=$((n + 1))
  if [ ! -x "$top_builddir/$p" ]; then echo "ok $n - $p # SKIP not built"; continue; fi
  log="$top_builddir/$p.valgrind.log"
  if TAP_NOFORK=1 TAP_TIMEOUT_MULTIPLIER=20 "$top_builddir/libtool" --mode=execute "$VALGRIND" -q \
       --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9 --child-silent-after-fork=yes \
       "$top_builddir/$p" > "$log" 2>&1 && ! grep -q '^not ok' "$log"; then
    echo "ok $n - $p is valgrind-clean"
  else
    echo "not ok $n - $p under valgrind (see $log)"
    grep -E '^==|^not ok' "$log" | head -30 | sed 's/^/# /'
  fi
done
