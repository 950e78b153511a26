#!/bin/sh
# tests/curl/test_example.sh: run examples/curl-chat against
# examples/fake-openai and check the trace it writes (TAP).
#
# Environment: top_builddir (default .), VALGRIND (if set, one run is
# repeated under valgrind).  The server is started on port 0, bounded by
# timeout(1) when available, and killed (by its pid) on exit.

builddir=${top_builddir:-.}
fake=$builddir/examples/fake-openai
example=$builddir/examples/curl-chat
cli=$builddir/lib/cli/mltrace
if [ ! -x "$fake" ] || [ ! -x "$example" ]; then
  echo "1..0 # SKIP examples/fake-openai or examples/curl-chat not built"
  exit 0
fi

tmp=${TMPDIR:-/tmp}/mltrace-curl-example.$$
rm -rf "$tmp"
mkdir "$tmp" || exit 99
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup 0
trap 'exit 130' INT TERM

bound=
command -v timeout >/dev/null 2>&1 && bound="timeout 300"
$bound "$fake" --host 127.0.0.1 --port 0 --quiet >"$tmp/port" 2>"$tmp/fake.err" &
pid=$!
. "$(dirname "$0")/../harness/tap.sh"
port=$(tap_wait_port "$tmp/port")
if [ -z "$port" ]; then
  echo "1..0 # SKIP fake-openai did not start"
  exit 0
fi
url=http://127.0.0.1:$port/v1/chat/completions

tap_fail_hook() { tap_diag_file "$tmp/out" 10; tap_diag_file "$tmp/err" 10; }
ok() { tap_ok "$@"; }

# 1. a streamed answer, printed token by token
MLTRACE_FILE=$tmp/traces.jsonl OPENAI_API_KEY=sk-EXAMPLESECRET \
  "$example" "$url" "What is MLflow?" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] && grep -q 'Echo: What is MLflow? ✓' "$tmp/out"
ok $? "example prints the streamed answer"

# 2. one trace: the application's span and the CHAT_MODEL child
[ "$(wc -l <"$tmp/traces.jsonl")" -eq 1 ] &&
  grep -q '"name": "ask"' "$tmp/traces.jsonl" &&
  grep -q '"name": "chat.completions"' "$tmp/traces.jsonl" &&
  grep -q '"mlflow.spanType": "\\"CHAT_MODEL\\""' "$tmp/traces.jsonl" &&
  grep -q '"mlflow.chunk.item.0"' "$tmp/traces.jsonl" &&
  grep -q '"mlflow.trace.tokenUsage"' "$tmp/traces.jsonl" &&
  grep -q '"state": "OK"' "$tmp/traces.jsonl"
ok $? "trace with the LLM span, chunk events and token usage"

# 3. no secret in the trace
! grep -q EXAMPLESECRET "$tmp/traces.jsonl"
ok $? "the API key is not recorded"

# 4. the CLI shows it
if [ -x "$cli" ]; then
  "$cli" show "$tmp/traces.jsonl" >"$tmp/out" 2>"$tmp/err" && grep -q 'chat.completions' "$tmp/out"
  ok $? "mltrace show lists the span"
else
  tap_skip "mltrace show" "lib/cli/mltrace not built"
fi

# 5. an HTTP error: exit 1, trace state ERROR
rm -f "$tmp/traces.jsonl"
MLTRACE_FILE=$tmp/traces.jsonl "$example" "http://127.0.0.1:$port/nope" "x" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q 'HTTPError: HTTP 404' "$tmp/err" && grep -q '"state": "ERROR"' "$tmp/traces.jsonl"
ok $? "HTTP 404: the example fails and the trace is ERROR"

# 6. under valgrind (when available): no leak, no error.  Not planned at
# all in sanitizer builds (a skip there would count as a failure under
# CI=true).
if [ -n "${MLT_SANITIZED:-}" ]; then
  :
elif [ -n "$VALGRIND" ]; then
  MLTRACE_FILE=$tmp/vg.jsonl $VALGRIND -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
    "$example" "$url" "valgrind" >"$tmp/out" 2>"$tmp/err"
  ok $? "example under valgrind"
else
  tap_skip "example under valgrind" "valgrind not installed"
fi
tap_done
