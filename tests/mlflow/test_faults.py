"""Delivery under faults, against a real MLflow server (issue 9).

Each case runs tests/mlflow/emit in session mode (traces carrying every
TraceInfo field: tags, metadata, client_request_id, previews, token usage),
then reads every trace back with MLflow's client and compares, trace by
trace, what the server holds (complete / spans only / absent) with what the
counters say (exported / partial / failed / spooled).  Faults: a server
slower than the request timeout (the request lands, the answer comes too
late, so it is sent again), HTTP 500s, a TraceInfo the server keeps
refusing, an error body that echoes the Authorization header, and the
server killed with SIGKILL and restarted on the same port after the retry
budget.  Short by design; long outages are in `make soak`.  Prints TAP.
"""
import os
import signal
import subprocess

from tap import Tap  # tests/harness/tap.py

t = Tap()

from mlflow import MlflowClient  # noqa: E402

from delivery import FaultProxy, Session, spans_stored, spool_files, spool_records, tally  # noqa: E402
from mltest import TMP, Server, cleanup, free_port, install_cleanup, program  # noqa: E402

install_cleanup()


def partition(st, label):
    parts = ("traces_exported", "traces_partial", "traces_failed", "traces_dropped", "traces_spooled",
             "traces_pending")
    t.equal(sum(st.get(k, 0) for k in parts), st.get("traces_finished"),
            f"{label}: finished = exported + partial + failed + dropped + spooled + pending")


srv = Server("faults")
if not srv.start():
    t.ok(False, "mlflow server started", srv.log_tail())
    t.done()
t.ok(True, "mlflow server started")
client = MlflowClient(srv.url)
OFF = {"MLTRACE_SPOOL": "off"}

# 1. A server slower than the request timeout: the first two OTLP requests and
# the first two StartTraceV3 requests reach the server, but their answers
# come 3 s late against a 1 s timeout.  They are sent again; the server must
# end up with each trace once, complete (3 spans, token usage not doubled).
eid = client.create_experiment("slow")
px = FaultProxy(srv.port, lambda kind, n: ("late", 3) if kind in ("otlp", "start") and n <= 2 else "forward")
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid, MLFLOW_HTTP_REQUEST_TIMEOUT="1"))
ids = s.rich(10)
f = s.flush(120000)
r = s.exit(5000)
st = r.get("stats", {})
t.equal(f.get("rc"), 0, "slow server: mlt_flush() returns OK")
t.equal((st.get("traces_exported"), st.get("traces_partial"), st.get("traces_failed")), (10, 0, 0),
        "slow server: 10 exported, none partial or failed") or t.diag(r.get("stderr", "")[-1500:])
t.ok(st.get("export_retries", 0) >= 3, f"slow server: timed-out requests were sent again ({st.get('export_retries')})")
t.ok(px.counts.get("otlp", 0) >= 3 and px.counts.get("start", 0) >= 12,
     f"slow server: the late requests reached the server and were repeated {px.counts}")
t.equal(tally(client, ids), {"complete": 10},
        "slow server: every trace complete on the server, stored once (repeated writes are idempotent)")
partition(st, "slow server")
px.close()

# 1b. A server always slower than the request timeout (every answer 1.5 s
# late against 1 s, as a loaded server is): a timed-out request is sent
# again with twice its time, so everything arrives complete instead of
# timing out forever.
eid = client.create_experiment("always-slow")
px = FaultProxy(srv.port, lambda kind, n: ("late", 1.5) if kind in ("otlp", "start") else "forward")
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid, MLFLOW_HTTP_REQUEST_TIMEOUT="1"))
ids = s.rich(10)
f = s.flush(120000)
r = s.exit(5000)
st = r.get("stats", {})
t.equal(f.get("rc"), 0, "always-slow server: mlt_flush() returns OK")
t.equal((st.get("traces_exported"), st.get("traces_partial"), st.get("traces_failed")), (10, 0, 0),
        "always-slow server: 10 exported, none partial or failed") or t.diag(r.get("stderr", "")[-1500:])
t.ok(st.get("export_retries", 0) >= 1, f"always-slow server: timed-out requests sent again ({st.get('export_retries')})")
t.equal(tally(client, ids), {"complete": 10}, "always-slow server: every trace complete on the server, stored once")
partition(st, "always-slow server")
px.close()

# 2. HTTP 500 on the first three requests of each kind: retried, complete.
eid = client.create_experiment("http500")
px = FaultProxy(srv.port, lambda kind, n: ("status", 500) if kind in ("otlp", "start") and n <= 3 else "forward")
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid))
ids = s.rich(8)
f = s.flush(120000)
r = s.exit(5000)
st = r.get("stats", {})
t.equal((f.get("rc"), st.get("traces_exported"), st.get("traces_failed")), (0, 8, 0),
        "HTTP 500s: retried, all 8 exported")
t.equal(tally(client, ids), {"complete": 8}, "HTTP 500s: every trace complete on the server")
partition(st, "HTTP 500s")
px.close()

# 2b. Overload remembered.  Every forwarded request answers 0.3 s late, so
# the congestion window shows as requests in flight at once; it grows past 1
# while all goes well.  Then four StartTraceV3 are answered 503 (the server
# says it is overloaded): the window halves to 1 and, for its 10 s cooldown,
# does not grow back past it (it used to be back at 2 after one success --
# eight processes doing that kept an MLflow worker's connection pool
# deadlocked).  Every trace still arrives complete.
eid = client.create_experiment("overload")
fail = {"from": None}


def overload_rule(kind, n):
    if kind == "start" and fail["from"] is not None and fail["from"] <= n < fail["from"] + 4:
        return ("status", 503)
    return ("late", 0.3) if kind in ("otlp", "start") else "forward"


px = FaultProxy(srv.port, overload_rule)
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid))
ids = s.rich(12)
s.flush(120000)
grown = max((a for _, a in px.started), default=0)
fail["from"] = px.counts.get("start", 0) + 1
ids += s.rich(12)
f = s.flush(120000)
r = s.exit(5000)
st = r.get("stats", {})
t.ok(grown >= 2, f"overload: the window grows while all goes well ({grown} requests in flight at once)")
# The requests started from 0.5 s after the last 503 (a request the client
# sent before that answer reached it may arrive just after it) to 8 s (the
# cooldown is 10 s: COOLDOWN_MIN_NS in lib/net/http.c), overlapping each
# other -- a request from before the 503s, slow under load, is not the
# window's doing.
after = ([s for s, _ in px.spans if px.injected + 0.5 < s < px.injected + 8] if px.injected is not None else [])
most = px.most_at_once(px.injected + 0.5, px.injected + 8) if px.injected is not None else 0
t.ok(after and most == 1, f"overload: after the 503s, one request at a time during the cooldown "
     f"({len(after)} requests, {most} at most at once)")
t.equal((f.get("rc"), st.get("traces_exported"), st.get("traces_failed")), (0, 24, 0), "overload: all 24 exported")
t.equal(tally(client, ids), {"complete": 24}, "overload: every trace complete on the server")
partition(st, "overload")
px.close()

# 2c. A server that queues: one request at a time, each 0.15 s more.  More
# requests in flight only wait longer, so the window stops growing where the
# answers take over twice the least answer time: a few requests in flight
# (4 measured; the least time seen is itself one of a queued request's).  It
# used to grow by one per window of answers, ~8 after these 26 answers.
eid = client.create_experiment("queueing")
px = FaultProxy(srv.port, lambda kind, n: ("serial", 0.15) if kind in ("otlp", "start") else "forward")
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid))
ids = s.rich(24)
f = s.flush(120000)
r = s.exit(5000)
st = r.get("stats", {})
most = max((a for _, a in px.started), default=0)
t.ok(most <= 5, f"queueing server: at most 5 requests in flight ({most})")
t.equal((f.get("rc"), st.get("traces_exported")), (0, 24), "queueing server: all 24 exported")
t.equal(tally(client, ids), {"complete": 24}, "queueing server: every trace complete on the server")
partition(st, "queueing server")
px.close()

# 3. The server keeps refusing the TraceInfo (StartTraceV3 always 500; retry
# budget 2 s; spool off): the spans are stored, the TraceInfo is not -- the
# traces are counted partial, not exported and not failed.
eid = client.create_experiment("no-info")
px = FaultProxy(srv.port, lambda kind, n: ("status", 500) if kind == "start" else "forward")
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid,
                 MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT="2"))
ids = s.rich(6)
f = s.flush(120000)
r = s.exit(5000)
st = r.get("stats", {})
t.equal(f.get("rc"), -8, "TraceInfo refused: mlt_flush() returns MLT_EIO")
t.equal((st.get("traces_exported"), st.get("traces_partial"), st.get("traces_failed")), (0, 6, 0),
        "TraceInfo refused: 6 partial") or t.diag(r.get("stderr", "")[-1500:])
t.equal(tally(client, ids), {"spans_only": 6}, "TraceInfo refused: the server holds the spans of each, no TraceInfo")
t.ok("6 partial" in r.get("stderr", "") and "main reason:" in r.get("stderr", ""),
     "TraceInfo refused: one shutdown warning with the counts and the reason") or t.diag(r.get("stderr", "")[-800:])
partition(st, "TraceInfo refused")
px.close()

# 3b. The spans refused for good after the TraceInfo went first (the
# exporter sends a batch's TraceInfos before its spans; the first spans
# request of a process is a probe and passes): spool off, the traces whose
# TraceInfo is stored without spans are counted partial, not failed.
eid = client.create_experiment("no-spans")
px = FaultProxy(srv.port, lambda kind, n: ("status", 400) if kind == "otlp" and n >= 2 else "forward")
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid))
first = s.rich(1)
s.flush(60000)
ids = s.rich(4)
f = s.flush(60000)
r = s.exit(5000)
st = r.get("stats", {})
t.equal(f.get("rc"), -8, "spans refused: mlt_flush() returns MLT_EIO")
t.equal((st.get("traces_exported"), st.get("traces_partial"), st.get("traces_failed")), (1, 4, 0),
        "spans refused: the probe's trace exported, 4 partial") or t.diag(r.get("stderr", "")[-1500:])
t.equal((tally(client, first), tally(client, ids)), ({"complete": 1}, {"info_only": 4}),
        "spans refused: the server holds the TraceInfo of each, no spans")
partition(st, "spans refused")
px.close()

# 4. An error body that echoes the Authorization header: the token never
# reaches the log.
px = FaultProxy(srv.port, lambda kind, n: ("echo_auth", 400) if kind == "start" else "forward")
s = Session(dict(OFF, MLFLOW_TRACKING_URI=px.url, MLFLOW_EXPERIMENT_ID=eid, MLFLOW_TRACKING_TOKEN="sekrit-tok-4242",
                 MLTRACE_LOG_LEVEL="debug"))
s.rich(2)
s.flush(60000)
r = s.exit(5000)
err = r.get("stderr", "")
t.ok("[REDACTED]" in err and "Authorization" in err, "echoed header: the error is logged, redacted") or t.diag(err[-800:])
t.ok("sekrit-tok-4242" not in err, "echoed header: the token is not in the log")
px.close()

# 5. The server killed with SIGKILL and restarted on the same port after the
# retry budget (2 s), with three applications running:
#   - spool off: traces made while the server was down are failed and
#     absent; those before and after are exported and complete;
#   - spool on: what could not be delivered goes to the spool and is
#     delivered once the server is back: all complete;
#   - spool on, the application killed with SIGKILL while the server is
#     down: the next process started with the same spool directory delivers
#     what it spooled.
# (The request timeout stays long: a retry budget shorter than one slow
# request would give up on a request whose outcome is unknown.)
E = dict(MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT="2", MLFLOW_HTTP_REQUEST_TIMEOUT="60", MLFLOW_TRACKING_URI=srv.url)
eid_off, eid_on, eid_kill = (client.create_experiment(n) for n in ("restart", "restart-spool", "app-killed"))
off = Session(dict(E, MLTRACE_SPOOL="off", MLFLOW_EXPERIMENT_ID=eid_off))
on = Session(dict(E, MLTRACE_SPOOL_DIR=os.path.join(TMP, "spool-on"), MLFLOW_EXPERIMENT_ID=eid_on))
env_kill = dict(E, MLTRACE_SPOOL_DIR=os.path.join(TMP, "spool-kill"), MLFLOW_EXPERIMENT_ID=eid_kill)
before_off, before_on = off.rich(5), on.rich(5)
f_off1, f_on1 = off.flush(60000), on.flush(60000)
srv.stop(signal.SIGKILL)
during_off, during_on = off.rich(5), on.rich(5)
victim = Session(env_kill)
killed_ids = victim.rich(6)
f_off2, f_on2, f_victim = off.flush(60000), on.flush(60000), victim.flush(60000)
victim.kill9()
files = spool_files(os.path.join(TMP, "spool-kill"))
t.ok(srv.start(), "server restarted on the same port")
after_off, after_on = off.rich(5), on.rich(5)
f_off3 = off.flush(120000)
on.flush(60000)
on.wait_replayed(5)
heir = Session(env_kill)
heir.wait_replayed(6)
r_off, r_on, r_heir = off.exit(5000), on.exit(30000), heir.exit(30000)

st = r_off.get("stats", {})
t.equal((f_off1.get("rc"), f_off2.get("rc"), f_off3.get("rc")), (0, -8, 0),
        "spool off: flush OK before, MLT_EIO while down, OK after restart")
t.equal((st.get("traces_exported"), st.get("traces_failed"), st.get("traces_partial")), (10, 5, 0),
        "spool off: 10 exported, 5 failed") or t.diag(r_off.get("stderr", "")[-1500:])
t.equal((tally(client, before_off), tally(client, during_off), tally(client, after_off)),
        ({"complete": 5}, {"absent": 5}, {"complete": 5}),
        "spool off: exported traces complete on the server, failed ones absent")
partition(st, "spool off")

st = r_on.get("stats", {})
t.equal((f_on1.get("rc"), f_on2.get("rc")), (0, -18), "spool on: flush OK before, MLT_EPENDING while the server is down")
t.ok(st.get("traces_spooled", 0) >= 5 and st.get("traces_failed") == 0 and st.get("traces_partial") == 0,
     f"spool on: traces made while the server was down were spooled, none failed ({st})")
t.equal(st.get("traces_exported", 0) + st.get("traces_spooled", 0), 15, "spool on: exported + spooled = 15")
t.equal(st.get("traces_replayed"), st.get("traces_spooled"), "spool on: every spooled trace was delivered (replayed)")
t.equal(tally(client, before_on + during_on + after_on), {"complete": 15},
        "spool on: all 15 traces complete on the server") or t.diag(r_on.get("stderr", "")[-1500:])
partition(st, "spool on")

st = r_heir.get("stats", {})
t.equal((f_victim.get("rc"), f_victim.get("stats", {}).get("traces_spooled")), (-18, 6),
        "app killed: its 6 traces were spooled")
t.ok(len(files) >= 1, f"app killed: spool files left behind ({len(files)})")
t.equal((st.get("traces_replayed"), st.get("traces_finished")), (6, 0),
        "app killed: the next process delivered the 6 spooled traces") or t.diag(r_heir.get("stderr", "")[-1500:])
t.equal(tally(client, killed_ids), {"complete": 6}, "app killed: all 6 complete on the server")
left = spool_files(os.path.join(TMP, "spool-kill"))
t.equal(left, [], "app killed: the spool is empty once delivered")

# 6. The OTLP exporter spools too: a receiver that answers 503, the
# application killed, the receiver fixed, the next process delivers.
eid = client.create_experiment("otlp-spool")
state = {"up": False}
px = FaultProxy(srv.port, lambda kind, n: "forward" if state["up"] else ("status", 503))
spool8 = os.path.join(TMP, "spool8")
env8 = dict(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=px.url + "/v1/traces", MLTRACE_SPOOL_DIR=spool8,
            OTEL_EXPORTER_OTLP_HEADERS=f"x-mlflow-experiment-id={eid}", MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT="1")
a = Session(env8)
ids = a.rich(3)
fa = a.flush(60000)
a.kill9()
state["up"] = True
b = Session(env8)
b.wait_replayed(3)
r = b.exit(30000)
t.equal((fa.get("stats", {}).get("traces_spooled"), r.get("stats", {}).get("traces_replayed")), (3, 3),
        "OTLP exporter: 3 spooled by the killed process, 3 delivered by the next")
t.equal([spans_stored(client, i) for i in ids], [3, 3, 3], "OTLP exporter: the spans of all 3 on the server")
px.close()

# 7. Crash-safe framing and the byte bound, with a receiver that only
# acknowledges (tests/bench/otlp-sink): 3000 traces spooled into a 1 MiB
# spool (the oldest evicted and counted), then the last record torn as by a
# write interrupted by a crash.  The next process delivers every record
# before the tear, skips the torn one with a warning, and the numbers add
# up: replayed + evicted + torn = spooled.
port = free_port()
spool9 = os.path.join(TMP, "spool-bound")
env9 = dict(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", MLFLOW_EXPERIMENT_ID="1", MLTRACE_SPOOL_DIR=spool9,
            MLTRACE_SPOOL_MAX_BYTES="1048576", MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT="1")
a = Session(env9)
for _ in range(60):  # records of 50 traces (~125 KB) in a 1 MiB spool
    a.rich(50)
    a.flush(60000)
ra = a.exit(1000)
sta = ra.get("stats", {})
files = spool_files(spool9)
size = sum(os.path.getsize(f) for f in files)
t.equal((sta.get("traces_spooled"), sta.get("traces_failed"), sta.get("traces_dropped")), (3000, 0, 0),
        "spool bound: 3000 traces spooled")
t.ok(sta.get("traces_evicted", 0) > 0, f"spool bound: the oldest evicted and counted ({sta.get('traces_evicted')})")
t.ok(size <= 1048576 + 300000, f"spool bound: {size} bytes on disk for a 1 MiB bound")
recs = spool_records(files[-1]) if files else []
torn = recs[-1][2] if recs else 0
if recs:
    with open(files[-1], "r+b") as fh:
        fh.truncate(recs[-1][0] + recs[-1][1] - 7)
waiting = sum(n for f in files for (_, _, n) in spool_records(f))
sink = subprocess.Popen([program("tests", "bench", "otlp-sink"), "--port", str(port)],
                        stdout=subprocess.PIPE, text=True, start_new_session=True)
sink.stdout.readline()
b = Session(env9)
b.wait_replayed(waiting)
rb = b.exit(5000)
stb = rb.get("stats", {})
sink.terminate()
sink.wait()
t.ok(torn > 0, f"torn record: the last record ({torn} traces) cut 7 bytes short")
t.equal(stb.get("traces_replayed"), waiting, "torn record: every record before it delivered")
t.equal(stb.get("traces_replayed", 0) + sta.get("traces_evicted", 0) + torn, 3000,
        "torn record: replayed + evicted + torn = spooled")
t.ok("damaged record" in rb.get("stderr", ""), "torn record: skipped with a warning")
t.equal(spool_files(spool9), [], "torn record: the spool is empty afterwards")

cleanup()
t.done()
