#!/bin/sh
# tests/cli/test_cli.sh: TAP tests of the mltrace command-line tool.
#
# Environment:
#   MLTRACE_BIN    the binary (default: $top_builddir/lib/cli/mltrace, or
#                  ./lib/cli/mltrace without top_builddir)
#   MLT_TEST_DATA  the test data folder; files are read from $MLT_TEST_DATA/cli
#                  (default: tests/data/cli next to this script's folder)
#   VALGRIND       if set, a few runs are repeated under valgrind
#
# The sample data: sample.jsonl was produced by MLflow 3.17.2
# (Trace.to_json(), one trace per line); the other .jsonl files are crafted
# edge cases; *.golden are expected outputs.  The 5000-deep chain and the
# 2 MB line are generated here with awk.  POSIX sh, grep, sed and awk only.

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$MLTRACE_BIN" ]; then
  if [ -n "$top_builddir" ]; then
    MLTRACE_BIN=$top_builddir/lib/cli/mltrace
  else
    MLTRACE_BIN=./lib/cli/mltrace
  fi
fi
if [ -n "$MLT_TEST_DATA" ]; then
  data=$MLT_TEST_DATA/cli
else
  data=$(cd "$here/.." && pwd)/data/cli
fi
case $MLTRACE_BIN in /*) ;; *) MLTRACE_BIN=$(pwd)/$MLTRACE_BIN ;; esac

if [ ! -x "$MLTRACE_BIN" ]; then
  echo "1..1"
  echo "not ok 1 - mltrace binary not found: $MLTRACE_BIN (set MLTRACE_BIN)"
  exit 1
fi

tmp=${TMPDIR:-/tmp}/mltrace-cli-test.$$
rm -rf "$tmp"
mkdir "$tmp" || exit 99
trap 'rm -rf "$tmp"' 0
trap 'exit 130' INT TERM
. "$here/../harness/tap.sh"
# Diagnostics of a failed check: the last command's output (TAP comments).
tap_fail_hook() {
  if [ -f "$tmp/out" ]; then sed -n '1,15s/^/# out: /p' "$tmp/out"; fi
  if [ -f "$tmp/err" ]; then sed -n '1,15s/^/# err: /p' "$tmp/err"; fi
  echo "# rc=$rc"
}
check() { tap_check "$@"; }
skip() { tap_skip "$@"; }

# run ARGS...: runs mltrace; stdout in $tmp/out, stderr in $tmp/err, status in $rc.
rc=0
run() {
  "$MLTRACE_BIN" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
}
rc_is() { [ "$rc" -eq "$1" ]; }
out_has() { grep -q -e "$1" "$tmp/out"; }
err_has() { grep -q -e "$1" "$tmp/err"; }
out_lines() { [ "$(wc -l <"$tmp/out" | tr -d ' ')" -eq "$1" ]; }
same_file() { cmp -s "$1" "$2"; }

# --- basics ---------------------------------------------------------------
run --version
check "--version prints the version" eval 'rc_is 0 && [ "$(cat "$tmp/out")" = "mltrace 0.1.0" ]'
run --help
check "--help prints usage, exit 0" eval 'rc_is 0 && out_has "Usage: mltrace" && out_has "show \[FILE\] \[TRACE_ID\]"'
run
check "no command: usage error, exit 2" eval 'rc_is 2 && err_has Usage'
run --bogus list "$data/sample.jsonl"
check "unknown option: exit 2" eval 'rc_is 2 && err_has "unknown option: --bogus"'
run frobnicate
check "unknown command: exit 2" eval 'rc_is 2 && err_has "unknown command"'
run list "$data/sample.jsonl" extra
check "too many arguments: exit 2" eval 'rc_is 2 && err_has "too many arguments"'
run list "$tmp/does-not-exist.jsonl"
check "missing file: exit 2 with a message" eval 'rc_is 2 && err_has "cannot open .*does-not-exist.jsonl"'
run list "$tmp"
check "a directory as FILE: exit 2" eval 'rc_is 2 && err_has "cannot read"'
: >"$tmp/empty.jsonl"
run list "$tmp/empty.jsonl"
check "empty store: nothing printed, exit 1" eval 'rc_is 1 && out_lines 0 && err_has "no traces"'

# --- list on MLflow-generated traces ---------------------------------------
run list "$data/sample.jsonl"
check "list sample: exit 0, one line per trace" eval 'rc_is 0 && out_lines 4 && [ ! -s "$tmp/err" ]'
check "list: mark, id, time, state, duration, spans, name, preview" \
  grep -q '^✓ tr-25452476bf262605e4345b329863dc9b  2026-11-24T04:28:56.207Z  OK  *47 ms  5 spans  rag_agent  *{"question": "What' "$tmp/out"
check "list: error trace marked with ✗ and ERROR" \
  grep -q '^✗ tr-f763512a3e49c573b1e4e5d66d26eff9 .* ERROR .*failing_pipeline' "$tmp/out"
check "list: only the error trace is marked as an error" eval '[ "$(grep -c "^✗" "$tmp/out")" -eq 1 ]'
check "list: columns never shift (field 2 is the id, field 4 the state, on every line)" eval \
  '[ "$(awk "{print \$2, \$4}" "$tmp/out" | grep -c "^tr-[0-9a-f]\{32\} [A-Z]")" -eq 4 ]'
check "list: file order kept (newest last)" eval \
  '[ "$(awk "{print \$2}" "$tmp/out" | tr "\n" " ")" = "tr-25452476bf262605e4345b329863dc9b tr-03b4bdd7bb368363ba1a2b2a7f438900 tr-f763512a3e49c573b1e4e5d66d26eff9 tr-0d87282058e5638e5726501171a7e759 " ]'
check "list: long previews truncated with an ellipsis" grep -q 'chat_stream  *{"prompt": "Dis bon…$' "$tmp/out"
check "list: lines fit about 120 columns" eval \
  '[ "$(LC_ALL=C awk "{ if (length(\$0) > m) m = length(\$0) } END { print m + 0 }" "$tmp/out")" -le 132 ]'
run --ascii list "$data/sample.jsonl"
check "list --ascii: marks ! and +" eval '[ "$(cut -c1 "$tmp/out" | tr -d "\n")" = "++!+" ]'

# --- show on MLflow-generated traces ---------------------------------------
run show "$data/sample.jsonl"
check "show sample: exit 0, no stderr" eval 'rc_is 0 && [ ! -s "$tmp/err" ]'
check "show: header with session, user, token usage, tags" \
  grep -q '^tr-25452476bf262605e4345b329863dc9b  rag_agent  OK  47 ms  2026-11-24T04:28:56.207Z  5 spans  session=sess-42  user=alice  tokens: 42 in / 9 out / 51 total  tags: env=dev$' "$tmp/out"
check "show: nested span drawn under its parent" eval \
  'grep -q "^├─ retrieve \[RETRIEVER\] [0-9.]* ms ok$" "$tmp/out" && grep -q "^│  └─ embed \[EMBEDDING\] [0-9.]* ms ok$" "$tmp/out"'
check "show: children sorted by start time" eval \
  '[ "$(sed -n "s/^[├└]─ \([a-z_]*\) .*/\1/p" "$tmp/out" | sed -n 1,3p | tr "\n" " ")" = "retrieve lookup_weather chat " ]'
check "show: error span with status message and exception event" eval \
  'grep -q "^├─ lookup_weather \[TOOL\] [0-9.]* ms ✗ ERROR: KeyError: '"'"'Paris'"'"'$" "$tmp/out" && grep -q "^│     ✗ exception: KeyError: '"'"'Paris'"'"'$" "$tmp/out"'
check "show: inputs decoded one layer, compact" grep -q '^│     in: {"city":"Paris"}$' "$tmp/out"
check "show: long previews cut at 100 columns with an ellipsis" \
  grep -q '^      in: {"messages":\[{"role":"system","content":"Answer using the documents."},{"role":"user","content":"Wh…$' "$tmp/out"
check "show: streaming span shows its chunk count" grep -q '^└─ stream_answer \[LLM\] [0-9.]* ms ok (12 chunks)$' "$tmp/out"
check "show: chunk events are not listed one by one" eval '! grep -q "mlflow.chunk" "$tmp/out"'
check "show: UTF-8 previews intact" grep -q '^│  out: "Bonjour à tous — ça va?"$' "$tmp/out"
check "show: error trace header marked" grep -q '^✗ tr-f763512a3e49c573b1e4e5d66d26eff9  failing_pipeline  ERROR' "$tmp/out"
check "show: span durations in µs below 1 ms" grep -q '^├─ validate \[UNKNOWN\] [0-9]* µs ok$' "$tmp/out"
check "show: 5-level recursion indented" grep -q '^               └─ leaf \[TOOL\] [0-9]* µs ok$' "$tmp/out"
check "show: no color when stdout is not a terminal" eval '! grep -q "$(printf "\033")" "$tmp/out"'

# --- golden files -------------------------------------------------------------
run show --ascii --no-color "$data/small.jsonl"
check "show --ascii matches small.golden" eval 'rc_is 0 && same_file "$tmp/out" "$data/small.golden"'
run show "$data/small.jsonl"
check "show (UTF-8) matches small.utf8.golden" eval 'rc_is 0 && same_file "$tmp/out" "$data/small.utf8.golden"'
run --ascii show "$data/small.jsonl"
check "--ascii output is pure ASCII" eval 'rc_is 0 && ! LC_ALL=C grep -q "[^ -~]" "$tmp/out"'
run show --ids --no-color "$data/small.jsonl"
check "--ids shows span ids as 16 hex digits" eval \
  'rc_is 0 && grep -q "^answer \[CHAIN\] 12.3 ms ok id=1111111111111111$" "$tmp/out" && grep -q "cache 800 ns unset id=3333333333333333$" "$tmp/out"'

# --- trace id lookup --------------------------------------------------------------
for q in tr-0123456789abcdef0123456789abcdef 0123456789abcdef0123456789abcdef tr-0123 0123 TR-0123456789ABCDEF; do
  run show --ascii "$data/small.jsonl" "$q"
  check "show FILE $q: found" eval 'rc_is 0 && same_file "$tmp/out" "$data/small.golden"'
done
run show "$data/sample.jsonl" 03b4
check "prefix picks one trace among several" eval 'rc_is 0 && grep -q "^tr-03b4bdd7bb368363ba1a2b2a7f438900  chat_stream" "$tmp/out" && [ "$(grep -c "^[^ │├└]*tr-" "$tmp/out")" -eq 1 ]'
run show "$data/continuation.jsonl" aaaa
check "ambiguous prefix: exit 2, candidates listed" eval 'rc_is 2 && err_has "ambiguous" && err_has "tr-aaaa2222000000000000000000000002" && out_lines 0'
run show "$data/continuation.jsonl" tr-aaaa2
check "longer prefix resolves" eval 'rc_is 0 && out_has "^✗ tr-aaaa2222000000000000000000000002  other  ERROR"'
run show "$data/sample.jsonl" tr-deadbeef
check "unknown trace id: exit 2 with a message" eval 'rc_is 2 && err_has "trace not found: tr-deadbeef" && out_lines 0'
(cd "$data" && MLTRACE_FILE=small.jsonl "$MLTRACE_BIN" show --ascii 0123 >"$tmp/out" 2>"$tmp/err")
rc=$?
check "show TRACE_ID alone reads \$MLTRACE_FILE" eval 'rc_is 0 && same_file "$tmp/out" "$data/small.golden"'

# --- default file and stdin ------------------------------------------------------
MLTRACE_FILE=$data/sample.jsonl "$MLTRACE_BIN" list >"$tmp/out" 2>"$tmp/err"
rc=$?
check "default FILE from \$MLTRACE_FILE" eval 'rc_is 0 && out_lines 4'
mkdir "$tmp/cwd" && sed -n 1p "$data/small.jsonl" >"$tmp/cwd/traces.jsonl"
(cd "$tmp/cwd" && MLTRACE_FILE= "$MLTRACE_BIN" list >"$tmp/out" 2>"$tmp/err")
rc=$?
check "default FILE traces.jsonl" eval 'rc_is 0 && out_lines 1 && out_has "tr-0123456789abcdef0123456789abcdef"'
"$MLTRACE_BIN" list "$data/sample.jsonl" >"$tmp/expect"
"$MLTRACE_BIN" list - <"$data/sample.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "list - reads stdin" eval 'rc_is 0 && same_file "$tmp/out" "$tmp/expect"'
sed 's/x/x/' "$data/small.jsonl" | "$MLTRACE_BIN" --ascii show - tr-0123 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "show - TRACE_ID reads a pipe" eval 'rc_is 0 && same_file "$tmp/out" "$data/small.golden"'
"$MLTRACE_BIN" list - <"$data/malformed.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "stdin errors name <stdin>" eval 'rc_is 1 && err_has "<stdin>: line 2:"'

# --- update lines: feedback and tags given after the trace (assessment.h) ------------
run show --no-color "$data/updates.jsonl" tr-2545
check "show: update lines applied (tag set, tag set then deleted)" eval \
  'rc_is 0 && head -1 "$tmp/out" | grep -q "tags: env=prod$"'
check "show: trace-level assessments under the header, oldest first (one logged before the trace line)" eval \
  'sed -n 2p "$tmp/out" | grep -q "^  feedback early = true (HUMAN alice): logged before" && sed -n 3p "$tmp/out" | grep -q "^  expectation truth = {.city.:.Paris.} (CODE ci)" && sed -n 4p "$tmp/out" | grep -q "^  feedback judge: error TIMEOUT: slow judge (LLM_JUDGE gpt)"'
check "show: a span's assessment under that span" eval \
  'grep -A3 "retrieve \[RETRIEVER\]" "$tmp/out" | grep -q "feedback relevant = 0.5 (LLM_JUDGE judge-1)"'
run list "$data/updates.jsonl"
check "list: update lines are not traces; an orphan update is listed unmarked" eval \
  'rc_is 0 && out_lines 2 && grep -q "^✓ tr-25452476bf262605e4345b329863dc9b .* 5 spans" "$tmp/out" && grep -q "^· tr-000000000000000000000000000000ff " "$tmp/out"'
run merge "$data/updates.jsonl"
check "merge: one line per trace" eval 'rc_is 0 && out_lines 2 && [ ! -s "$tmp/err" ]'
check "merge: assessments and tags merged into the trace's line" eval \
  'head -1 "$tmp/out" | grep -q "\"env\": \"prod\"" && ! head -1 "$tmp/out" | grep -q "\"tmp\"" && [ "$(head -1 "$tmp/out" | grep -o "\"assessment_name\"" | wc -l)" -eq 4 ] && ! head -1 "$tmp/out" | grep -q mltrace.update'
check "merge: 19-digit times keep their exact text" eval \
  '[ "$(head -1 "$data/sample.jsonl" | grep -o "\"start_time_unix_nano\": [0-9]*" | head -1)" = "$(head -1 "$tmp/out" | grep -o "\"start_time_unix_nano\": [0-9]*" | head -1)" ]'
check "merge: the orphan update line is kept" eval 'tail -1 "$tmp/out" | grep -q "\"mltrace.update\": \"assessment\""'
run merge "$data/malformed.jsonl"
check "merge: malformed lines skipped with a message, exit 1" eval 'rc_is 1 && out_lines 2 && err_has "not a trace"'
run merge "$tmp/nope.jsonl"
check "merge: unreadable file, exit 2" eval 'rc_is 2 && err_has "cannot open"'
run list --experiment 1 "$data/sample.jsonl"
check "--experiment without --tracking-uri: usage error" eval 'rc_is 2 && err_has "need --tracking-uri"'
run show --tracking-uri ftp://x tr-1
check "--tracking-uri wants http(s)" eval 'rc_is 2 && err_has "http:// or https://"'
run list --tracking-uri http://127.0.0.1:1
check "list --tracking-uri on a closed port: exit 2, says why" eval 'rc_is 2 && err_has "cannot reach http://127.0.0.1:1"'
run show --tracking-uri http://user:secret@127.0.0.1:1 tr-00000000000000000000000000000001
check "server errors never print credentials" eval 'rc_is 2 && ! grep -q secret "$tmp/err"'
run show --tracking-uri http://127.0.0.1:1 tr-0123
check "show --tracking-uri wants a whole id" eval 'rc_is 2 && err_has "prefixes work on files only"'

# --- continuations: one trace over several lines -----------------------------------
run list "$data/continuation.jsonl"
check "list merges lines with the same trace id" eval \
  'rc_is 0 && out_lines 2 && grep -q "^✓ tr-aaaa1111000000000000000000000001 .* OK  *50 ms  5 spans  client" "$tmp/out"'
run show --no-color "$data/continuation.jsonl" tr-aaaa1
cat >"$tmp/expect" <<'EOF'
tr-aaaa1111000000000000000000000001  client  OK  50 ms  2025-06-15T15:06:40.000Z  5 spans
client [CHAIN] 50.0 ms ok
│  in: {"q":"remote?"}
│  out: "done"
└─ call_remote [TOOL] 39.0 ms ok
   └─ remote_handler [AGENT] 37.0 ms ok
      │  in: {"q":"remote?"}
      │  out: {"a":1}
      └─ remote_llm [LLM] 27.0 ms ok
orphan [UNKNOWN] 1.0 ms ok (parent ffffffffffffffff not found)
EOF
check "show links spans across lines; missing parent -> top level" eval 'rc_is 0 && same_file "$tmp/out" "$tmp/expect"'

# --- malformed lines ----------------------------------------------------------------
run list "$data/malformed.jsonl"
check "malformed lines: exit 1, good traces still listed" eval 'rc_is 1 && out_lines 2'
check "malformed lines reported with their line numbers" eval \
  'err_has "line 2: not valid trace JSON: parse error" && err_has "line 3: not valid trace JSON: not a JSON object" && err_has "line 4: not valid trace JSON: missing info.trace_id" && err_has "line 7: not valid trace JSON: parse error"'
check "blank lines are not errors" eval '[ "$(grep -c "line" "$tmp/err")" -eq 4 ] && ! err_has "line 5"'
run show "$data/malformed.jsonl" c0ffee00000000000000000000000002
check "show TRACE_ID in a file with bad lines: printed, exit 1" eval 'rc_is 1 && out_has "^second 2.0 ms ok$"'

# --- missing keys, wrong types ------------------------------------------------------
run list "$data/missing.jsonl"
check "missing keys / wrong types: list survives" eval 'rc_is 0 && out_lines 5'
run show --ids "$data/missing.jsonl"
check "missing keys / wrong types: show survives" eval 'rc_is 0 && out_has "^huge \[5\] ? WEIRD" && out_has "(no spans)"'
check "self-parent and parent cycles are shown once" eval \
  'out_has "self_parent (unfinished) unset id=eeeeeeeeeeeeeeee (parent eeeeeeeeeeeeeeee is itself)" && out_has "^cycle_a .*is on a cycle)" && out_has "^├─ cycle_b" && [ "$(grep -c "cycle_" "$tmp/out")" -eq 2 ]'
check "16-hex span ids are accepted" out_has '^└─ hex_ids_child 1 ns unset id=00000000000000ff$'

# --- invalid UTF-8 and control characters -----------------------------------------------
run show "$data/badutf8.jsonl"
check "invalid UTF-8: exit 0" rc_is 0
check "invalid bytes replaced by U+FFFD" eval 'LC_ALL=C grep -q "$(printf "na\357\277\275me")" "$tmp/out" && ! LC_ALL=C grep -q "$(printf "\377")" "$tmp/out"'
check "control characters escaped, no raw ESC/BEL" eval \
  'out_has "root.\\\\x1b\]0;pwned\\\\x07\\\\ttab" && ! grep -q "$(printf "\033")" "$tmp/out" && ! grep -q "$(printf "\007")" "$tmp/out"'
check "previews never split a UTF-8 sequence" eval \
  'LC_ALL=C grep -q "$(printf "out: \"\346\227\245\346\234\254.*\342\200\246\$")" "$tmp/out"'
run list "$data/badutf8.jsonl"
check "list with invalid UTF-8: exit 0, no raw ESC" eval 'rc_is 0 && out_lines 1 && ! grep -q "$(printf "\033")" "$tmp/out"'

# --- a 5000-deep chain (spans written leaf first) -------------------------------------------
awk 'function b64(i,   a, s, b, k, v) {
       a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
       b[0] = 18; b[1] = 52; b[2] = 86; b[3] = 120; b[4] = 0; b[5] = 0
       b[6] = int(i / 256); b[7] = i % 256; b[8] = 0
       s = ""
       for (k = 0; k < 9; k += 3) {
         v = b[k] * 65536 + b[k + 1] * 256 + b[k + 2]
         s = s substr(a, int(v / 262144) + 1, 1) substr(a, int(v / 4096) % 64 + 1, 1) substr(a, int(v / 64) % 64 + 1, 1)
         if (k < 6) s = s substr(a, v % 64 + 1, 1)
       }
       return s "="
     }
     BEGIN {
       N = 5000
       printf "{\"info\": {\"trace_id\": \"tr-deeb0000000000000000000000000001\", \"trace_location\": {\"type\": \"MLFLOW_EXPERIMENT\"}, \"request_time\": \"2025-06-15T15:06:40.000Z\", \"state\": \"OK\", \"execution_duration_ms\": 100, \"tags\": {\"mlflow.traceName\": \"deep\"}}, \"data\": {\"spans\": ["
       for (i = N; i >= 1; i--) {
         printf "%s{\"trace_id\": \"3u4AAAAAAAAAAAAAAAAAAQ==\", \"span_id\": \"%s\", \"parent_span_id\": %s, \"name\": \"s%d\", ", (i < N ? ", " : ""), b64(i), (i == 1 ? "null" : "\"" b64(i - 1) "\""), i
         printf "\"start_time_unix_nano\": 1750000000%09d, \"end_time_unix_nano\": 1750000000%09d, \"events\": [], \"status\": {\"code\": \"STATUS_CODE_OK\", \"message\": \"\"}, \"attributes\": {\"mlflow.spanInputs\": \"{\\\"i\\\": %d}\"}, \"links\": []}", i * 1000, 100000000 - i * 1000, i
       }
       print "]}}"
     }' >"$tmp/deep.jsonl"
run show --ascii "$tmp/deep.jsonl"
check "5000-deep chain: exit 0" eval 'rc_is 0 && [ ! -s "$tmp/err" ]'
check "5000-deep chain: every span printed once" eval '[ "$(grep -c "s[0-9][0-9]* [0-9.]* [mun]*s ok$" "$tmp/out")" -eq 5000 ]'
check "5000-deep chain: linked to the bottom" out_has '^\[\.\.\. depth 4999\] `- s5000 90.0 ms ok$'
check "5000-deep chain: indentation capped" eval \
  '[ "$(LC_ALL=C awk "{ if (length(\$0) > m) m = length(\$0) } END { print m + 0 }" "$tmp/out")" -le 120 ]'
run list "$tmp/deep.jsonl"
check "5000-deep chain: list counts the spans" out_has ' 5000 spans  deep'

# --- a 2 MB line -----------------------------------------------------------------------------
awk 'BEGIN { s = "x"; for (k = 0; k < 21; k++) s = s s
       printf "{\"info\": {\"trace_id\": \"tr-b16b0000000000000000000000000001\", \"state\": \"OK\", \"request_preview\": \"%s\"}, \"data\": {\"spans\": [{\"span_id\": \"AAAAAAAAAAE=\", \"parent_span_id\": null, \"name\": \"big\", \"status\": {\"code\": \"STATUS_CODE_OK\"}, \"attributes\": {\"mlflow.spanInputs\": \"\\\"%s\\\"\"}}]}}\n", s, s }' >"$tmp/big.jsonl"
run show --ascii "$tmp/big.jsonl"
check "2 MB line: read whole, preview truncated" eval \
  'rc_is 0 && grep -q "^   in: \"x*\.\.\.$" "$tmp/out" && [ "$(LC_ALL=C awk "{ if (length(\$0) > m) m = length(\$0) } END { print m + 0 }" "$tmp/out")" -le 120 ]'
run list "$tmp/big.jsonl"
check "2 MB line: list line stays short" eval 'rc_is 0 && [ "$(LC_ALL=C awk "{ print length(\$0) }" "$tmp/out")" -le 132 ]'

# --- valgrind (when configured) -----------------------------------------------------------
vg_run() {
  $VALGRIND --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=all \
    "$MLTRACE_BIN" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
}
# (Not in sanitizer builds: valgrind cannot run ASan/TSan binaries, and
# those builds leave memory checking to the sanitizers.)
if [ -n "${MLT_SANITIZED:-}" ]; then
  :
elif [ -n "$VALGRIND" ] && command -v "${VALGRIND%% *}" >/dev/null 2>&1; then
  vg_run show "$data/sample.jsonl"
  check "valgrind: show sample clean" rc_is 0
  vg_run show --ids "$data/missing.jsonl"
  check "valgrind: show missing-keys clean" rc_is 0
  vg_run list "$data/malformed.jsonl"
  check "valgrind: list malformed clean (exit 1)" rc_is 1
  vg_run show "$data/continuation.jsonl" aaaa
  check "valgrind: ambiguous lookup clean (exit 2)" rc_is 2
  vg_run show "$data/updates.jsonl"
  check "valgrind: show with update lines clean" rc_is 0
  vg_run merge "$data/updates.jsonl"
  check "valgrind: merge clean" rc_is 0
else
  for d in "show sample" "show missing-keys" "list malformed" "ambiguous lookup" "show updates" "merge"; do
    skip "valgrind: $d" "VALGRIND not set"
  done
fi

tap_done
