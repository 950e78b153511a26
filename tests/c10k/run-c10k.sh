#!/bin/sh
# tests/c10k/run-c10k.sh: the C10k run.  Starts examples/fake-openai (the
# upstream), then, for each round, examples/c10k-server with tracing on
# (file store) and with tracing off, each driven by tests/c10k/c10k-load
# with --conns connections, each keeping one request in flight; at the end
# of each measured window the load generator sends the server SIGTERM with
# every request in flight.  Every trace of the tracing-on runs is checked by
# tests/c10k/c10k-check.
#
#   run-c10k.sh --tap     TAP output (make test): correctness assertions,
#                         figures as "#" lines
#   run-c10k.sh --bench   "name value unit" lines (make bench)
#
# Environment (defaults: --tap / --bench):
#   C10K_CONNS         connections (1000, 200 under sanitizers / 10000)
#   C10K_WARMUP        seconds before the window (1 / 3)
#   C10K_DURATION      seconds of the measured window (3 / 10)
#   C10K_DELAY_MS      upstream delay before each SSE event (X-Fake-Delay-Ms)
#                      (20 / 0)
#   C10K_HANGUP_EVERY  every Nth request is abandoned by its client (50)
#   C10K_ROUNDS        tracing on/off pairs (1 / 2)
#   C10K_OFF           0: no tracing-off run (default 1; 0 under sanitizers)
#   C10K_EXPORT        file (default) or discard: the tracing-on exporter
#   C10K_DIR           keep the run's files there (default: a temporary dir)
#
# File descriptors: the server needs two per request in flight (client and
# upstream), the load generator and the upstream one each.  The soft
# RLIMIT_NOFILE is raised to the hard limit; when the hard limit is too low
# it is raised too if allowed (root), else the run stops with a message.
set -u
mode=${1:---tap}
: "${top_builddir:=.}"
B=$top_builddir
san=${MLT_SANITIZED:-}

if [ "$mode" = --bench ]; then
  conns=${C10K_CONNS:-10000}; warmup=${C10K_WARMUP:-3}; duration=${C10K_DURATION:-10}
  delay=${C10K_DELAY_MS:-0}; rounds=${C10K_ROUNDS:-2}
else
  if [ -n "$san" ]; then conns=${C10K_CONNS:-200}; else conns=${C10K_CONNS:-1000}; fi
  warmup=${C10K_WARMUP:-1}; duration=${C10K_DURATION:-3}
  delay=${C10K_DELAY_MS:-20}; rounds=${C10K_ROUNDS:-1}
fi
hangup=${C10K_HANGUP_EVERY:-50}
if [ -n "$san" ]; then off=${C10K_OFF:-0}; else off=${C10K_OFF:-1}; fi
export_kind=${C10K_EXPORT:-file}

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; failed=1; }
check() { desc=$1; shift; if "$@"; then ok "$desc"; else notok "$desc"; fi; }
diag() { if [ "$mode" = --bench ]; then echo "$*"; else echo "# $*"; fi; }
failed=0

# ---- file descriptors -------------------------------------------------------
need=$((2 * conns + 512))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  if ! ulimit -Hn "$need" 2>/dev/null; then
    msg="open files: the hard limit is $hard, $need needed for $conns connections (raise it: ulimit -Hn, limits.conf)"
    if [ "$mode" = --bench ]; then echo "c10k_skipped 1 ($msg)"; exit 0; fi
    echo "1..0 # SKIP $msg"
    exit 0
  fi
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || ulimit -Sn "$need"

if [ -n "${C10K_DIR:-}" ]; then
  dir=$C10K_DIR
  mkdir -p "$dir"
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/mlt-c10k-XXXXXX")
fi
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  [ -z "${C10K_DIR:-}" ] && rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Wait until $1 has a "listening on ...:PORT" line; print PORT.
wait_port() {
  i=0
  while [ $i -lt 600 ]; do
    p=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$1" 2>/dev/null | head -1)
    if [ -n "$p" ]; then echo "$p"; return 0; fi
    i=$((i + 1))
    sleep 0.05
  done
  return 1
}

# "name=value" of the server's counter line in file $1.
stat() { sed -n "s/^c10k-server:.*[ :]$2=\([^ ]*\).*/\1/p" "$1" | tail -1; }
# "value" of the load generator's "label_name value unit" line.
fig() { sed -n "s/^$2_$3 \([^ ]*\).*/\1/p" "$1" | tail -1; }

"$B/examples/fake-openai" --port 0 --quiet > "$dir/upstream.out" 2> "$dir/upstream.err" &
up_pid=$!
pids="$up_pid"
up_port=$(wait_port "$dir/upstream.out") || { echo "Bail out! fake-openai did not start"; exit 1; }

[ "$mode" = --bench ] || echo "# C10k: $conns connections, ${warmup}s warm-up, ${duration}s window, upstream delay ${delay} ms/event, hang-up every $hangup, exporter $export_kind"

# run LABEL TRACE(on|off): one server, one load; leaves $dir/LABEL.*
run() {
  label=$1
  args="--upstream http://127.0.0.1:$up_port --quiet"
  case $2 in
    off) args="$args --no-trace" ;;
    *) [ "$export_kind" = discard ] && args="$args --discard" ;;
  esac
  rm -f "$dir/$label.jsonl"
  MLTRACE_FILE="$dir/$label.jsonl" "$B/examples/c10k-server" $args > "$dir/$label.srv" 2> "$dir/$label.srv.err" &
  spid=$!
  pids="$pids $spid"
  sport=$(wait_port "$dir/$label.srv") || { echo "Bail out! c10k-server did not start"; cat "$dir/$label.srv.err"; exit 1; }
  "$B/tests/c10k/c10k-load" --port "$sport" --conns "$conns" --warmup "$warmup" --duration "$duration" \
    --hangup-every "$hangup" --header "X-Fake-Delay-Ms: $delay" --sigterm "$spid" --out "$dir/$label.res" \
    --label "$label" > "$dir/$label.load" 2> "$dir/$label.load.err"
  lrc=$?
  wait "$spid"
  src=$?
  pids=$up_pid
  echo "$lrc $src" > "$dir/$label.rc"
}

r=1
while [ $r -le "$rounds" ]; do
  run "on$r" on
  [ "$off" = 1 ] && run "off$r" off
  r=$((r + 1))
done

kill "$up_pid" 2>/dev/null
wait "$up_pid" 2>/dev/null

# ---- results ------------------------------------------------------------------
r=1
while [ $r -le "$rounds" ]; do
  for label in "on$r" "off$r"; do
    [ -f "$dir/$label.rc" ] || continue
    read -r lrc src < "$dir/$label.rc"
    srv=$dir/$label.srv
    load=$dir/$label.load
    check "$label: load generator ran ($conns connections)" test "$lrc" = 0
    check "$label: server stopped cleanly on SIGTERM" test "$src" = 0
    sent=$(fig "$load" "$label" sent); oks=$(fig "$load" "$label" ok)
    check "$label: every connection sent requests ($sent sent)" test "${sent:-0}" -ge "$conns"
    check "$label: no HTTP errors, no upstream errors, no connect failures" \
      test "$(fig "$load" "$label" http_errors)" = 0 -a "$(stat "$srv" upstream_errors)" = 0 \
      -a "$(fig "$load" "$label" connect_failures)" = 0
    check "$label: no work queue rejection" test "$(stat "$srv" work_queue_rejected)" = 0
    case $label in
      on*)
        if [ "$export_kind" = file ]; then
          exported=$(stat "$srv" traces_exported)
          check "$label: traces flushed, none dropped or failed" \
            test "$(stat "$srv" flush)" = ok -a "$(stat "$srv" traces_dropped)" = 0 -a "$(stat "$srv" traces_failed)" = 0
          "$B/tests/c10k/c10k-check" --traces "$dir/$label.jsonl" --results "$dir/$label.res" \
            --expect-traces "${exported:-0}" > "$dir/$label.check" 2> "$dir/$label.check.err"
          crc=$?
          sed 's/^/# /' "$dir/$label.check.err" | head -40
          check "$label: every trace checked: 0 wrong spans, 0 wrong/missing/duplicate/foreign traces" test "$crc" = 0
        fi
        ;;
    esac
  done
  r=$((r + 1))
done

# ---- figures --------------------------------------------------------------------
# calc FORMAT EXPR: awk arithmetic (a zero divisor gives 0).
calc() { awk -v f="$1" "BEGIN { x = 0; { x = ($2) }; printf(f, x) }" 2>/dev/null || echo 0; }
# Server CPU time (user + system) per request it handled, in microseconds.
cpu_per_request() {
  u=$(stat "$1" cpu_user_s); s=$(stat "$1" cpu_sys_s); q=$(stat "$1" requests)
  if [ "${q:-0}" -gt 0 ]; then calc "%.1f" "(${u:-0} + ${s:-0}) * 1000000 / $q"; else echo 0; fi
}
fig_line() { # label name unit value
  diag "c10k_$2_$1 $4 $3"
}
r=1
while [ $r -le "$rounds" ]; do
  for label in "on$r" "off$r"; do
    [ -f "$dir/$label.rc" ] || continue
    srv=$dir/$label.srv; load=$dir/$label.load
    rps=$(fig "$load" "$label" throughput); p50=$(fig "$load" "$label" latency_p50); p99=$(fig "$load" "$label" latency_p99)
    fig_line "$label" throughput req/s "$rps"
    fig_line "$label" latency_p50 ms "$p50"
    fig_line "$label" latency_p99 ms "$p99"
    fig_line "$label" min_in_flight requests "$(fig "$load" "$label" min_in_flight)"
    fig_line "$label" server_max_live requests "$(stat "$srv" max_live)"
    fig_line "$label" server_max_llm_streams streams "$(stat "$srv" max_streams)"
    rss=$(stat "$srv" maxrss_kb)
    fig_line "$label" peak_rss MB "$(calc "%.1f" "${rss:-0} / 1024")"
    fig_line "$label" server_cpu_per_request us "$(cpu_per_request "$srv")"
    case $label in
      on*)
        spans=$(stat "$srv" spans_exported); rt=$(fig "$load" "$label" run_time)
        fig_line "$label" spans_per_s spans/s "$(calc "%.0f" "${spans:-0} / ${rt:-1}")"
        if [ -f "$dir/$label.check" ]; then
          for k in traces spans checks wrong_spans wrong_traces missing_traces client_disconnected_spans server_shutdown_spans llm_cancelled; do
            v=$(sed -n "s/^check_$k \([0-9]*\).*/\1/p" "$dir/$label.check")
            fig_line "$label" "checked_$k" "" "$v"
          done
        fi
        ;;
    esac
  done
  r=$((r + 1))
done
# Tracing-on / tracing-off ratios, each round and best-of.
if [ "$off" = 1 ]; then
  best_on=0; best_off=0; r=1
  while [ $r -le "$rounds" ]; do
    on=$(fig "$dir/on$r.load" "on$r" throughput); of=$(fig "$dir/off$r.load" "off$r" throughput)
    diag "c10k_throughput_ratio_round$r $(calc "%.3f" "${on:-0} / ${of:-0}") on/off"
    diag "c10k_cpu_per_request_ratio_round$r $(calc "%.3f" "$(cpu_per_request "$dir/on$r.srv") / $(cpu_per_request "$dir/off$r.srv")") on/off"
    best_on=$(calc "%.0f" "(${on:-0} > $best_on) ? ${on:-0} : $best_on")
    best_off=$(calc "%.0f" "(${of:-0} > $best_off) ? ${of:-0} : $best_off")
    r=$((r + 1))
  done
  diag "c10k_throughput_ratio_best $(calc "%.3f" "$best_on / $best_off") on/off"
fi
[ "$mode" = --bench ] && exit 0
echo "1..$n"
exit $failed
