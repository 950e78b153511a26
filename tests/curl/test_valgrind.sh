#!/bin/sh
# tests/curl/test_valgrind.sh: streaming tests of tests/curl/test_curl under
# valgrind memcheck (one test per run, in-process: TAP_NOFORK), failing on
# any memory error or definite leak.  The fake server the tests start is not
# traced (--trace-children=no).  TAP output.  Skipped when valgrind is not
# installed (CI installs it) or in sanitizer builds.
: "${top_builddir:=.}"
if [ -z "${VALGRIND:-}" ] || [ -n "${MLT_SANITIZED:-}" ]; then
  echo "1..0 # SKIP valgrind not available (or sanitizer build)"
  exit 0
fi
prog=tests/curl/test_curl
tests="easy_stream_span_and_previews easy_disconnect_mid_stream_keeps_partial_output
  easy_delta_hook_abort_is_cancel fixture_malformed_event_is_event_and_skipped own_multi_handle
  loop_fifty_concurrent_streams loop_cancel_from_delta_hook_is_deferred loop_free_with_transfers_in_flight
  loop_free_from_done_callback_and_disconnect chunk_callback_keeps_choices_apart
  responses_function_calls_cuts_and_errors"
. "$(dirname "$0")/../harness/tap.sh"
for t in $tests; do
  if [ ! -x "$top_builddir/$prog" ]; then tap_skip "$t" "not built"; continue; fi
  log="$top_builddir/$prog.$t.valgrind.log"
  if tap_valgrind "$prog" "$log" "$t"; then
    tap_ok 0 "$t is valgrind-clean"
  else
    tap_ok 1 "$t under valgrind (see $log)"
    grep -E '^==|^not ok|^# ' "$log" | head -30 | sed 's/^/# /'
  fi
done
tap_done
