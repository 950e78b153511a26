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
progs="tests/unit/test_core tests/unit/test_hotpath tests/unit/test_chunks tests/unit/test_delivery tests/unit/test_thread tests/unit/test_assess tests/unit/test_sse tests/event/test_evloop tests/event/test_evhttp tests/unit/test_span_options tests/parity/test_scope tests/unit/test_chat_scan"
. "$(dirname "$0")/harness/tap.sh"
for p in $progs; do
  if [ ! -x "$top_builddir/$p" ]; then tap_skip "$p" "not built"; continue; fi
  log="$top_builddir/$p.valgrind.log"
  if tap_valgrind "$p" "$log"; then
    tap_ok 0 "$p is valgrind-clean"
  else
    tap_ok 1 "$p under valgrind (see $log)"
    grep -E '^==|^not ok|^# ' "$log" | head -30 | sed 's/^/# /'
  fi
done
tap_done
