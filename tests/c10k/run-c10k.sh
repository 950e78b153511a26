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
#   run-c10k.sh --bench   "name value unit" lines (make bench): each round
#                         runs both servers (on, off; off first in even
#                         rounds), then the medians of the per-round figures
#                         with their min and max; then, under callgrind
#                         (when valgrind is installed), instructions per
#                         request on and off (C10K_CALLGRIND=0 skips it)
#
# Environment (defaults: --tap / --bench):
#   C10K_CONNS         connections (1000, 200 under sanitizers / 10000)
#   C10K_WARMUP        seconds before the window (1 / 10: several latencies
#                      at 10,000 connections, so the window sees steady state)
#   C10K_DURATION      seconds of the measured window (3 / 20)
#   C10K_DELAY_MS      upstream delay before each SSE event (X-Fake-Delay-Ms)
#                      (20 / 0)
#   C10K_HANGUP_EVERY  every Nth request is abandoned by its client (50)
#   C10K_ROUNDS        tracing on/off pairs (1 / 5)
#   C10K_OFF           0: no tracing-off run (default 1; 0 under sanitizers)
#   C10K_EXPORT        file (default) or discard: the tracing-on exporter
#   C10K_DIR           keep the run's files there (default: a temporary dir)
#
# File descriptors: the server needs two per request in flight (client and
# upstream), the load generator and the upstream one each.  The soft
# RLIMIT_NOFILE is raised to the hard limit (and the hard one when allowed);
# when the server still lacks room, its upstream connections are capped
# (c10k-server --max-upstream: calls beyond wait for a connection).
set -u
mode=${1:---tap}
: "${top_builddir:=.}"
B=$top_builddir
san=${MLT_SANITIZED:-}

if [ "$mode" = --bench ]; then
  conns=${C10K_CONNS:-10000}; warmup=${C10K_WARMUP:-10}; duration=${C10K_DURATION:-20}
  delay=${C10K_DELAY_MS:-0}; rounds=${C10K_ROUNDS:-5}
else
  if [ -n "$san" ]; then conns=${C10K_CONNS:-200}; else conns=${C10K_CONNS:-1000}; fi
  warmup=${C10K_WARMUP:-1}; duration=${C10K_DURATION:-3}
  delay=${C10K_DELAY_MS:-20}; rounds=${C10K_ROUNDS:-1}
fi
hangup=${C10K_HANGUP_EVERY:-50}
if [ -n "$san" ]; then off=${C10K_OFF:-0}; else off=${C10K_OFF:-1}; fi
export_kind=${C10K_EXPORT:-file}

n=0
# TAP lines under --tap; under --bench only failures, as figure lines.
ok() { n=$((n + 1)); [ "$mode" = --bench ] || echo "ok $n - $*"; }
notok() {
  n=$((n + 1)); failed=1; nfail=$((nfail + 1))
  if [ "$mode" = --bench ]; then echo "c10k_FAILED 1 ($*)"; else echo "not ok $n - $*"; fi
}
check() { desc=$1; shift; if "$@"; then ok "$desc"; else notok "$desc"; fi; }
diag() { if [ "$mode" = --bench ]; then echo "$*"; else echo "# $*"; fi; }
failed=0; nfail=0

# ---- file descriptors -------------------------------------------------------
# The load generator and the upstream need one per connection, the server
# two (client and upstream).  Raise the soft limit to the hard one (and the
# hard one when allowed); when the server still lacks room, cap its upstream
# connections (calls beyond the cap wait for one, inside their LLM span).
need=$((2 * conns + 512))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  ulimit -Hn "$need" 2>/dev/null || ulimit -H -n "$need" 2>/dev/null
  hard=$(ulimit -Hn)
fi
ulimit -Sn "$hard" 2>/dev/null || ulimit -S -n "$hard" 2>/dev/null
max_upstream=0
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  max_upstream=$((hard - conns - 512))
  if [ "$max_upstream" -lt 64 ]; then
    msg="open files: the hard limit is $hard, about $need needed for $conns connections (raise it: ulimit -Hn, limits.conf)"
    if [ "$mode" = --bench ]; then echo "c10k_skipped 1 ($msg)"; exit 0; fi
    echo "1..0 # SKIP $msg"
    exit 0
  fi
fi

if [ -n "${C10K_DIR:-}" ]; then
  dir=$C10K_DIR
  mkdir -p "$dir"
  rm -f "$dir"/*.rc
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/mlt-c10k-XXXXXX")
fi
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  [ -z "${C10K_DIR:-}" ] && rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# wait_port FILE: the port of a "listening on ...:PORT" line (tests/harness/tap.sh).
. "$(dirname "$0")/../harness/tap.sh"
wait_port() { tap_wait_port "$1"; }

# calc FORMAT EXPR: awk arithmetic (NaN and infinities print as 0).
calc() { awk -v f="$1" "BEGIN { x = ($2); if (x != x || x == x + 1) x = 0; printf(f, x) }" 2>/dev/null || echo 0; }
# "name=value" of the server's counter line in file $1.
stat() { sed -n "s/^c10k-server:.*[ :]$2=\([^ ]*\).*/\1/p" "$1" | tail -1; }
# "value" of the load generator's "label_name value unit" line.
fig() { sed -n "s/^$2_$3 \([^ ]*\).*/\1/p" "$1" | tail -1; }

"$B/examples/fake-openai" --port 0 --quiet > "$dir/upstream.out" 2> "$dir/upstream.err" &
up_pid=$!
pids="$up_pid"
up_port=$(wait_port "$dir/upstream.out") || { echo "Bail out! fake-openai did not start"; exit 1; }

[ "$max_upstream" -gt 0 ] && diag "c10k_upstream_connections_cap $max_upstream connections (open files hard limit $hard)"
[ "$mode" = --bench ] || echo "# C10k: $conns connections, ${warmup}s warm-up, ${duration}s window, upstream delay ${delay} ms/event, hang-up every $hangup, exporter $export_kind"

# run LABEL TRACE(on|off) HANGUP_EVERY [SERVER_ARGS...]: one server, one
# load; leaves $dir/LABEL.*
run() {
  label=$1
  every=$3
  args="--upstream http://127.0.0.1:$up_port --quiet --max-upstream $max_upstream"
  case $2 in
    off) args="$args --no-trace" ;;
    *) [ "$export_kind" = discard ] && args="$args --discard" ;;
  esac
  shift 3
  args="$args $*"
  rm -f "$dir/$label".*
  cut -d' ' -f1 /proc/loadavg > "$dir/$label.loadavg" 2>/dev/null
  MLTRACE_FILE="$dir/$label.jsonl" "$B/examples/c10k-server" $args > "$dir/$label.srv" 2> "$dir/$label.srv.err" &
  spid=$!
  pids="$pids $spid"
  sport=$(wait_port "$dir/$label.srv") || { echo "Bail out! c10k-server did not start"; cat "$dir/$label.srv.err"; exit 1; }
  "$B/tests/c10k/c10k-load" --port "$sport" --conns "$conns" --warmup "$warmup" --duration "$duration" \
    --hangup-every "$every" --header "X-Fake-Delay-Ms: $delay" --sigterm "$spid" --out "$dir/$label.res" \
    --label "$label" > "$dir/$label.load" 2> "$dir/$label.load.err"
  lrc=$?
  wait "$spid"
  src=$?
  pids=$up_pid
  echo "$lrc $src" > "$dir/$label.rc"
}

r=1
while [ $r -le "$rounds" ]; do
  # on, off in odd rounds; off, on in even ones (a drift in the machine's
  # load then weighs on both sides alike)
  if [ "$off" = 1 ] && [ $((r % 2)) = 0 ]; then
    run "off$r" off "$hangup"
    run "on$r" on "$hangup"
  else
    run "on$r" on "$hangup"
    [ "$off" = 1 ] && run "off$r" off "$hangup"
  fi
  r=$((r + 1))
done
# Overload (make test only): one worker, 8 queue slots, retrievals that take
# 500 us: the queue refuses jobs, each request so refused is answered 503,
# and every rejection must be counted.
busy=0
if [ "$mode" = --tap ] && [ "${C10K_BUSY:-1}" = 1 ]; then
  busy=1
  run busy on 0 --workers 1 --max-pending 8 --job-us 500
fi

kill "$up_pid" 2>/dev/null
wait "$up_pid" 2>/dev/null

# ---- results ------------------------------------------------------------------
labels=""
r=1
while [ $r -le "$rounds" ]; do labels="$labels on$r off$r"; r=$((r + 1)); done
[ "$busy" = 1 ] && labels="$labels busy"
for label in $labels; do
    [ -f "$dir/$label.rc" ] || continue
    read -r lrc src < "$dir/$label.rc"
    srv=$dir/$label.srv
    load=$dir/$label.load
    check "$label: load generator ran ($conns connections)" test "$lrc" = 0
    check "$label: server stopped cleanly on SIGTERM" test "$src" = 0
    sent=$(fig "$load" "$label" sent); oks=$(fig "$load" "$label" ok)
    check "$label: every connection sent requests ($sent sent)" test "${sent:-0}" -ge "$conns"
    rejected=$(stat "$srv" work_queue_rejected)
    if [ "$label" = busy ]; then
      check "$label: the full queue refused jobs ($rejected), those requests got 503 ($(fig "$load" "$label" http_errors))" \
        test "${rejected:-0}" -gt 0 -a "$(fig "$load" "$label" http_errors)" -gt 0 -a "$(stat "$srv" busy)" -ge "$(fig "$load" "$label" http_errors)"
      warns=$(grep -c "work queue full" "$dir/$label.srv.err")
      rt=$(fig "$load" "$label" run_time)
      check "$label: rejections logged at most once a second ($warns warnings in ${rt}s)" \
        test "$warns" -ge 1 -a "$warns" -le "$(calc "%.0f" "${rt:-0} + 2")"
    else
      check "$label: no HTTP errors, no upstream errors, no connect failures" \
        test "$(fig "$load" "$label" http_errors)" = 0 -a "$(stat "$srv" upstream_errors)" = 0 \
        -a "$(fig "$load" "$label" connect_failures)" = 0
      check "$label: no work queue rejection" test "$rejected" = 0
    fi
    case $label in
      on*|busy)
        if [ "$export_kind" = file ]; then
          exported=$(stat "$srv" traces_exported)
          check "$label: traces flushed, none dropped or failed" \
            test "$(stat "$srv" flush)" = ok -a "$(stat "$srv" traces_dropped)" = 0 -a "$(stat "$srv" traces_failed)" = 0
          "$B/tests/c10k/c10k-check" --traces "$dir/$label.jsonl" --results "$dir/$label.res" \
            --expect-traces "${exported:-0}" --expect-rejected "${rejected:-0}" > "$dir/$label.check" \
            2> "$dir/$label.check.err"
          crc=$?
          [ "$mode" = --bench ] || sed 's/^/# /' "$dir/$label.check.err" | head -40
          check "$label: every trace checked: 0 wrong spans, 0 wrong/missing/duplicate/foreign traces, every rejection counted" test "$crc" = 0
        fi
        ;;
    esac
done

# ---- figures --------------------------------------------------------------------
# Server CPU time (user + system) per request it handled, in microseconds.
cpu_per_request() {
  u=$(stat "$1" cpu_user_s); s=$(stat "$1" cpu_sys_s); q=$(stat "$1" requests)
  if [ "${q:-0}" -gt 0 ]; then calc "%.1f" "(${u:-0} + ${s:-0}) * 1000000 / $q"; else echo 0; fi
}
# rss_per_call SRV_OUT: peak RSS (KB) / most LLM calls in flight at once
rss_per_call() {
  calc "%.1f" "$(stat "$1" maxrss_kb) / $(stat "$1" max_streams)"
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
    # peak RSS over the most LLM calls in flight at once, which it follows
    fig_line "$label" peak_rss_per_llm_call KB "$(rss_per_call "$srv")"
    fig_line "$label" server_cpu_per_request us "$(cpu_per_request "$srv")"
    fig_line "$label" load_avg "(1 min, at start)" "$(cat "$dir/$label.loadavg" 2>/dev/null)"
    case $label in
      on*)
        # memory held by finished traces waiting for the export thread, at most
        fig_line "$label" export_queue_peak MB "$(calc "%.1f" "$(stat "$srv" queue_peak_kb) / 1024")"
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
# Tracing-on / tracing-off ratios, each round; then the median of the
# rounds with the smallest and largest (wall-clock figures swing with the
# rest of the machine's load: the median of alternating rounds is the figure
# to quote, with its spread).
# stats NAME UNIT VALUES...: NAME_median, NAME_min, NAME_max lines.
stats() {
  name=$1; unit=$2; shift 2
  case $unit in on/off) f="%.3f" ;; *) f="%.1f" ;; esac
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | sort -g | awk -v n="$name" -v u="$unit" -v f="$f" '
    { v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%s_median " f " %s\n%s_min " f " %s\n%s_max " f " %s\n", n, m, u, n, v[1], u, n, v[NR], u }' |
    while read -r line; do diag "$line"; done
}
if [ "$off" = 1 ]; then
  tr_list=""; cr_list=""; ron=""; roff=""; con=""; coff=""; kon=""; koff=""; r=1
  while [ $r -le "$rounds" ]; do
    if [ -f "$dir/on$r.rc" ] && [ -f "$dir/off$r.rc" ]; then
      on=$(fig "$dir/on$r.load" "on$r" throughput); of=$(fig "$dir/off$r.load" "off$r" throughput)
      cpu_on=$(cpu_per_request "$dir/on$r.srv"); cpu_off=$(cpu_per_request "$dir/off$r.srv")
      t=$(calc "%.3f" "${on:-0} / ${of:-0}"); c=$(calc "%.3f" "$cpu_on / $cpu_off")
      diag "c10k_throughput_ratio_round$r $t on/off"
      diag "c10k_cpu_per_request_ratio_round$r $c on/off"
      tr_list="$tr_list $t"; cr_list="$cr_list $c"
      ron="$ron $(calc "%.1f" "$(stat "$dir/on$r.srv" maxrss_kb) / 1024")"
      roff="$roff $(calc "%.1f" "$(stat "$dir/off$r.srv" maxrss_kb) / 1024")"
      con="$con $cpu_on"; coff="$coff $cpu_off"
      kon="$kon $(rss_per_call "$dir/on$r.srv")"; koff="$koff $(rss_per_call "$dir/off$r.srv")"
    fi
    r=$((r + 1))
  done
  # shellcheck disable=SC2086
  {
    stats c10k_throughput_ratio on/off $tr_list
    stats c10k_cpu_per_request_ratio on/off $cr_list
    stats c10k_server_cpu_per_request_on us $con
    stats c10k_server_cpu_per_request_off us $coff
    stats c10k_peak_rss_on MB $ron
    stats c10k_peak_rss_off MB $roff
    stats c10k_peak_rss_per_llm_call_on KB $kon
    stats c10k_peak_rss_per_llm_call_off KB $koff
  }
fi

# ---- instructions per request (make bench) ------------------------------------
# The same server under callgrind, 50 connections for 30 s, tracing on and
# off: instructions of every thread (start-up and shutdown included) per
# request handled, which the machine's load does not change (start-up and
# shutdown, ~20M instructions on either side, spread over fewer requests
# with tracing on: the longer the window, the less they weigh); on: split into
# the loop thread, the export thread and the workers.
callgrind_run() { # on|off DIR
  cdir=$2
  mkdir -p "$cdir"
  "$B/examples/fake-openai" --port 0 --quiet > "$cdir/upstream.out" 2>/dev/null &
  cup=$!
  cport=$(wait_port "$cdir/upstream.out") || { kill "$cup"; return 1; }
  cargs="--upstream http://127.0.0.1:$cport --quiet"
  [ "$1" = off ] && cargs="$cargs --no-trace"
  # shellcheck disable=SC2086
  MLTRACE_FILE="$cdir/t.jsonl" "$B/libtool" --mode=execute valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$cdir/cg.out" "$B/examples/c10k-server" $cargs > "$cdir/srv" 2> "$cdir/srv.err" &
  cpid=$!
  csport=$(wait_port "$cdir/srv") || { kill "$cpid" "$cup"; return 1; }
  "$B/tests/c10k/c10k-load" --port "$csport" --conns 50 --warmup 1 --duration 30 --hangup-every "$hangup" \
    --header "X-Fake-Delay-Ms: 0" --sigterm "$cpid" --label cg > "$cdir/load" 2>&1
  wait "$cpid"
  kill "$cup" 2>/dev/null
  wait "$cup" 2>/dev/null
  return 0
}
# instr FILE: the Ir total of one callgrind output file
instr() { sed -n 's/^summary: *\([0-9]*\).*/\1/p;s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -1; }
if [ "$mode" = --bench ] && [ "${C10K_CALLGRIND:-1}" = 1 ] && command -v valgrind >/dev/null 2>&1 && [ -x "$B/libtool" ]; then
  for side in on off; do
    callgrind_run "$side" "$dir/cg-$side" || { diag "c10k_callgrind_FAILED 1 ($side)"; continue; }
    q=$(stat "$dir/cg-$side/srv" requests)
    total=0; loop=0; export_t=0; workers=0
    for f in "$dir/cg-$side"/cg.out-*; do
      v=$(instr "$f"); v=${v:-0}
      total=$((total + v))
      case $f in
        *-01) loop=$((loop + v)) ;;
        *) if grep -q "export_main" "$f"; then export_t=$((export_t + v)); else workers=$((workers + v)); fi ;;
      esac
    done
    diag "c10k_callgrind_requests_$side ${q:-0} requests"
    diag "c10k_instr_per_request_$side $(calc "%.0f" "$total / ${q:-0}") instructions"
    if [ "$side" = on ]; then
      diag "c10k_instr_per_request_on_loop $(calc "%.0f" "$loop / ${q:-0}") instructions"
      diag "c10k_instr_per_request_on_export $(calc "%.0f" "$export_t / ${q:-0}") instructions"
      diag "c10k_instr_per_request_on_workers $(calc "%.0f" "$workers / ${q:-0}") instructions"
      ion=$(calc "%.6f" "$total / ${q:-0}")
    else
      diag "c10k_instr_per_request_off_loop $(calc "%.0f" "$loop / ${q:-0}") instructions"
      ioff=$(calc "%.6f" "$total / ${q:-0}")
    fi
  done
  [ -n "${ion:-}" ] && [ -n "${ioff:-}" ] && diag "c10k_instr_per_request_ratio $(calc "%.3f" "$ion / $ioff") on/off"
fi
if [ "$mode" = --bench ]; then
  echo "c10k_checks_failed $nfail of $n"
  exit 0
fi
echo "1..$n"
exit $failed
