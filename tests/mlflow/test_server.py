"""Export to a real MLflow tracking server, read back with MLflow's client.

Starts `mlflow server` (pinned MLflow, sqlite store, 127.0.0.1, free port)
and stops it at the end, also when a check fails.  The C side is
tests/mlflow/emit, configured through the environment like any
application.  Covers the MLflow exporter (OTLP + StartTraceV3), the
artifact fallback (FileStore backend), the OTLP exporter pointed at the
server's /v1/traces, dual export, and faults: server not yet started, killed
and restarted mid-run, a port that accepts and never answers, HTTP 500s.
Prints TAP.
"""
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time

from tap import Tap

t = Tap()

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import SpanStatusCode  # noqa: E402

from mltest import TMP, Server, clean_env, cleanup, install_cleanup, program, run_json, serve_http, start_server  # noqa: E402

EMIT = program("tests", "mlflow", "emit")
install_cleanup()


def emit(args, env, timeout=180):
    return run_json([EMIT] + args, clean_env(env), timeout=timeout)


def emit_bg(args, env):
    return subprocess.Popen([EMIT] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(env))


def finish_bg(p, timeout=180):
    out, err = p.communicate(timeout=timeout)
    res = json.loads(out.strip().splitlines()[-1])
    res["stderr"] = err
    return res


def spans_by_name(trace):
    return {s.name: s for s in trace.data.spans}


def get_trace(client, tid, tries=20):
    for _ in range(tries):
        try:
            return client.get_trace(tid)
        except Exception as e:  # noqa: BLE001
            last = e
            time.sleep(0.5)
    t.diag(f"get_trace({tid}) failed: {last!r}")
    return None


def check_all(client, res, label, exp_id, otlp_only=False):
    """The traces of `emit all`, read back with MLflow's client."""
    ids = res.get("traces", {})
    t.equal(sorted(ids), ["client_root", "err_root", "fn_root"], f"{label}: three traces made")
    tr = get_trace(client, ids.get("fn_root", ""))
    if not t.ok(tr is not None, f"{label}: fn_root read back"):
        return
    s = spans_by_name(tr)
    t.equal(sorted(s), ["block_retrieve", "fn_root", "llm_stream", "tool"], f"{label}: span names")
    root = s["fn_root"]
    t.equal(root.parent_id, None, f"{label}: root has no parent")
    t.equal({n: s[n].parent_id == root.span_id for n in ("block_retrieve", "tool", "llm_stream")},
            {"block_retrieve": True, "tool": True, "llm_stream": True}, f"{label}: children under the root")
    t.equal((root.span_type, s["block_retrieve"].span_type, s["tool"].span_type, s["llm_stream"].span_type),
            ("AGENT", "RETRIEVER", "TOOL", "CHAT_MODEL"), f"{label}: span types")
    t.equal(root.inputs, {"question": "What is MLflow?", "k": 2}, f"{label}: root inputs are JSON, not double-encoded")
    t.equal(root.outputs, {"answer": "Hello"}, f"{label}: root outputs")
    t.equal(s["block_retrieve"].outputs, [{"id": "d1"}, {"id": "d2"}], f"{label}: list outputs")
    a = s["block_retrieve"].attributes
    t.equal((a.get("db"), a.get("k"), a.get("cut"), a.get("hit")), ("vec", 2, 0.5, True), f"{label}: typed attributes")
    ev = s["block_retrieve"].events
    t.ok(len(ev) == 1 and ev[0].name == "cache_miss" and ev[0].attributes.get("key") == "mlflow"
         and ev[0].attributes.get("n") == 3, f"{label}: event with attributes", repr(ev))
    t.equal(s["tool"].inputs, {"x": 1}, f"{label}: fields inputs")
    t.equal(root.attributes.get("mlflow.spanFunctionName"), "function_scope", f"{label}: function name attribute")
    t.equal(s["llm_stream"].outputs, "Hello", f"{label}: stream chunks aggregated")
    t.equal([e.name for e in s["llm_stream"].events], ["mlflow.chunk.item.0", "mlflow.chunk.item.1"],
            f"{label}: one event per chunk")
    info = tr.info
    t.equal(str(info.state).split(".")[-1], "OK", f"{label}: state OK")
    t.equal(info.trace_location.mlflow_experiment.experiment_id, exp_id, f"{label}: experiment")
    t.equal((info.tags.get("env"), info.tags.get("suite")), ("ci", "c"), f"{label}: tags")
    t.equal(info.tags.get("mlflow.traceName"), "fn_root", f"{label}: trace name tag")
    t.equal(info.trace_metadata.get("mlflow.trace.session"), "s-1", f"{label}: session")
    t.equal(info.trace_metadata.get("mlflow.trace.user"), "u-1", f"{label}: user")
    usage = info.trace_metadata.get("mlflow.trace.tokenUsage")
    t.equal(json.loads(usage) if usage else None, {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
            f"{label}: token usage")
    if not otlp_only:
        t.equal(info.trace_metadata.get("app.version"), "9.9", f"{label}: metadata")
        t.equal(info.client_request_id, "req-c-1", f"{label}: client_request_id")
        t.equal(info.trace_metadata.get("mlflow.trace_schema.version"), "3", f"{label}: schema version")
    t.equal(info.request_preview, '{"question": "What is MLflow?", "k": 2}', f"{label}: request preview")
    t.equal(info.response_preview, '{"answer": "Hello"}', f"{label}: response preview")
    err = get_trace(client, ids.get("err_root", ""))
    if t.ok(err is not None, f"{label}: err_root read back"):
        es = spans_by_name(err)
        t.equal(str(err.info.state).split(".")[-1], "ERROR", f"{label}: error trace state")
        t.equal((es["tool"].status.status_code, es["tool"].status.description),
                (SpanStatusCode.ERROR, "ValueError: negative"), f"{label}: error status and message")
        exc = [e for e in es["tool"].events if e.name == "exception"]
        t.ok(len(exc) == 1 and exc[0].attributes.get("exception.type") == "ValueError",
             f"{label}: exception event", repr(es["tool"].events))
    cl = get_trace(client, ids.get("client_root", ""))
    if t.ok(cl is not None, f"{label}: client_root read back"):
        cs = spans_by_name(cl)
        t.equal(cs["client_child"].parent_id, cs["client_root"].span_id, f"{label}: client api parent")
        t.equal((cs["client_child"].inputs, cs["client_child"].outputs), ([1, 2], 3), f"{label}: client api values")
        t.equal(cs["client_child"].attributes.get("via"), "handle", f"{label}: client api attribute")
        t.equal(cs["client_root"].outputs, {"done": True}, f"{label}: client api root outputs")


# ---------------------------------------------------------------------------
sql = start_server(t, "sql", "mlflow server (sqlite) started", backend=f"sqlite:///{TMP}/mlflow.db")
mlflow.set_tracking_uri(sql.url)
client = MlflowClient(sql.url)

# 1. MLflow exporter, experiment by name (created when missing).
res = emit(["all"], {"MLFLOW_TRACKING_URI": sql.url, "MLFLOW_EXPERIMENT_NAME": "c-tests"})
st = res.get("stats", {})
t.equal((st.get("traces_exported"), st.get("traces_failed")), (3, 0), "mlflow exporter: 3 exported, 0 failed",)
exp = client.get_experiment_by_name("c-tests")
t.ok(exp is not None, "experiment created by name")
if exp:
    check_all(client, res, "mlflow", exp.experiment_id)
    found = mlflow.search_traces(locations=[exp.experiment_id], return_type="list")
    t.equal(sorted(x.info.tags.get("mlflow.traceName") for x in found), ["client_root", "err_root", "fn_root"],
            "search_traces finds every trace (complete, with spans)")
    t.ok(all(len(x.data.spans) > 0 for x in found), "search_traces returns the spans")

# 2. OTLP exporter pointed at the server's /v1/traces (gzip).
eid = client.create_experiment("c-otlp")
res = emit(["all"], {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sql.url + "/v1/traces",
                     "OTEL_EXPORTER_OTLP_HEADERS": f"x-mlflow-experiment-id={eid}",
                     "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_SERVICE_NAME": "c-svc"})
st = res.get("stats", {})
t.equal((st.get("traces_exported"), st.get("traces_failed")), (3, 0), "otlp exporter: 3 exported, 0 failed")
check_all(client, res, "otlp", eid, otlp_only=True)

# 3. Dual export plus the file store.
jsonl = os.path.join(TMP, "dual.jsonl")
eid2 = client.create_experiment("c-dual")
res = emit(["all"], {"MLFLOW_TRACKING_URI": sql.url, "MLFLOW_EXPERIMENT_ID": eid2,
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sql.url + "/v1/traces",
                     "OTEL_EXPORTER_OTLP_HEADERS": f"x-mlflow-experiment-id={eid2}", "MLTRACE_FILE": jsonl})
st = res.get("stats", {})
t.equal((st.get("traces_exported"), st.get("traces_failed")), (3, 0), "dual export + file: 3 exported, 0 failed")
t.equal(len(open(jsonl).read().splitlines()) if os.path.exists(jsonl) else 0, 3, "dual export: file store has 3 lines")
check_all(client, res, "dual", eid2)

# 3b. JSON values read back as they were set through every path: the MLflow
# exporter, the OTLP exporter alone (it sends an object, array or string as
# its JSON text, a number, true, false or null natively: lib/export/otlp.c) and the
# file store.  Strings whose text is JSON, scalars, non-ASCII text, space
# around the value; previews alike on every path.
from mlflow.entities import Trace  # noqa: E402

VALUES = ['{"a":1,"b":[1,2.5,null,true],"s":"x"}', '[1, 2]', '"hello"', '"[1,2]"', '"{\\"a\\": 1}"', '42', '-3.5',
          '1e3', 'true', 'null', '"42"', '"h\u00e9llo \\u2028 \U0001F600"', '  {"ws" : [ ] }  ']
want = [json.loads(v) for v in VALUES]
eid_v = client.create_experiment("c-values")
jsonl_v = os.path.join(TMP, "values.jsonl")
res_m = emit(["values"] + VALUES, {"MLFLOW_TRACKING_URI": sql.url, "MLFLOW_EXPERIMENT_ID": eid_v, "MLTRACE_FILE": jsonl_v})
res_o = emit(["values"] + VALUES, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sql.url + "/v1/traces",
                                   "OTEL_EXPORTER_OTLP_HEADERS": f"x-mlflow-experiment-id={eid_v}"})
lines = open(jsonl_v).read().splitlines() if os.path.exists(jsonl_v) else []
paths = {"mlflow exporter": get_trace(client, res_m.get("traces", {}).get("values", "")),
         "otlp exporter": get_trace(client, res_o.get("traces", {}).get("values", "")),
         "file store": Trace.from_json(lines[0]) if lines else None}
previews = {}
for label, tr in paths.items():
    if not t.ok(tr is not None, f"values via {label}: trace read back"):
        continue
    s = spans_by_name(tr)
    got = [(s[f"v{i}"].inputs, s[f"v{i}"].outputs, s[f"v{i}"].attributes.get("j"), s[f"v{i}"].attributes.get("str"))
           if f"v{i}" in s else None for i in range(len(VALUES))]
    t.equal(got, [(w, w, w, "plain") for w in want], f"values via {label}: inputs, outputs, attributes as set")
    previews[label] = (tr.info.request_preview, tr.info.response_preview)
t.equal(previews.get("mlflow exporter"), (VALUES[0], VALUES[0]), "values: previews are the JSON text")
t.equal(previews.get("otlp exporter"), previews.get("mlflow exporter"), "values: OTLP-only previews are the same")
t.equal(previews.get("file store"), previews.get("mlflow exporter"), "values: file store previews are the same")

# 4. Artifact fallback: a FileStore-backed server (no OTLP ingestion).
fs = Server("filestore", f"file://{TMP}/mlruns", env={"MLFLOW_ALLOW_FILE_STORE": "true"})
if t.ok(fs.start(), "mlflow server (FileStore) started"):
    fclient = MlflowClient(fs.url)
    mlflow.set_tracking_uri(fs.url)  # mlflow-artifacts: URIs resolve against the global URI
    res = emit(["all"], {"MLFLOW_TRACKING_URI": fs.url, "MLTRACE_LOG_LEVEL": "info"})
    st = res.get("stats", {})
    t.equal((st.get("traces_exported"), st.get("traces_failed")), (3, 0), "fallback: 3 exported, 0 failed",
            ) or t.diag(res.get("stderr", "")[-1500:])
    t.ok("uploading traces.json artifacts" in res.get("stderr", ""), "fallback: switched to artifact upload")
    check_all(fclient, res, "fallback", "0")
    mlflow.set_tracking_uri(sql.url)
    fs.stop()

# 5. Server not yet started when the program begins.
late = Server("late", f"sqlite:///{TMP}/late.db")
# A generous retry budget: on a loaded 2-core machine the server may take
# a minute to come up.
p = emit_bg(["steady", "20", "100"], {"MLFLOW_TRACKING_URI": late.url, "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": "300",
                                      "MLTRACE_SPOOL": "off",
                                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "60", "EMIT_SHUTDOWN_MS": "300000"})
time.sleep(3)
t.ok(late.start(), "late server started after the program")
res = finish_bg(p, timeout=400)
st = res.get("stats", {})
t.equal((st.get("traces_exported"), st.get("traces_failed")), (20, 0),
        "server up late: every trace arrives within the retry budget")
t.ok(st.get("export_retries", 0) > 0, "server up late: requests were retried")
lc = MlflowClient(late.url)
t.equal(len(lc.search_traces(locations=["0"], max_results=100)), 20, "server up late: 20 traces on the server")
late.stop()

# 6. Server killed mid-run and restarted on the same port and store.
eid3 = client.create_experiment("c-restart")
p = emit_bg(["steady", "60", "100"], {"MLFLOW_TRACKING_URI": sql.url, "MLFLOW_EXPERIMENT_ID": eid3, "MLTRACE_SPOOL": "off",
                                      "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": "300",
                                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "60", "EMIT_SHUTDOWN_MS": "300000"})
time.sleep(1.5)
sql.stop(signal.SIGKILL)
time.sleep(1.5)
t.ok(sql.start(), "server restarted")
res = finish_bg(p, timeout=400)
st = res.get("stats", {})
t.equal((st.get("traces_exported"), st.get("traces_failed")), (60, 0), "server restart: nothing lost")
n = len(MlflowClient(sql.url).search_traces(locations=[eid3], max_results=200))
t.equal(n, 60, "server restart: 60 traces on the server")

# 7. A port that accepts connections and never answers.
bh = socket.socket()
bh.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
bh.bind(("127.0.0.1", 0))
bh.listen(64)
held = []
stop_bh = threading.Event()


def blackhole():
    bh.settimeout(0.2)
    while not stop_bh.is_set():
        try:
            c, _ = bh.accept()
            held.append(c)
        except OSError:
            pass


threading.Thread(target=blackhole, daemon=True).start()
bh_url = f"http://user:hunter2@127.0.0.1:{bh.getsockname()[1]}"
up = emit(["hot", "500000"], {"MLFLOW_TRACKING_URI": sql.url, "EMIT_SHUTDOWN_MS": "20000"})
down = emit(["hot", "500000"], {"MLFLOW_TRACKING_URI": bh_url, "EMIT_SHUTDOWN_MS": "2000", "MLTRACE_SPOOL": "off",
                                "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_TRACKING_TOKEN": "sekrit-token-42",
                                "MLTRACE_LOG_LEVEL": "debug"})
t.diag(f"CPU ns/span with the server up: {up.get('ns_per_span')}, hanging: {down.get('ns_per_span')}")
t.ok(down.get("ns_per_span", 1e9) < max(3 * up.get("ns_per_span", 0), up.get("ns_per_span", 0) + 300),
     "hanging server: span calls stay as fast as with the server up")
t.ok(down.get("shutdown_ms", 1e9) < 2000 + 1500, f"hanging server: shutdown within its deadline "
     f"({down.get('shutdown_ms')} ms for a 2000 ms deadline)")
t.equal(down.get("shutdown_rc"), -7, "hanging server: shutdown reports the deadline (MLT_ETIMEDOUT)")
st = down.get("stats", {})
t.equal(st.get("traces_exported"), 0, "hanging server: nothing counted as exported")
t.equal(st.get("traces_failed", 0) + st.get("traces_dropped", 0), st.get("traces_started"),
        "hanging server: failed + dropped = started (every loss counted)")
t.ok("sekrit-token-42" not in down.get("stderr", "") and "hunter2" not in down.get("stderr", ""),
     "secrets never appear in logs")
stop_bh.set()
for c in held:
    c.close()
bh.close()

# 8. A server answering 500: retried within the budget, then counted failed.
class Err500(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.send_response(500)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST  # noqa: N815

    def log_message(self, *a):
        pass


srv, srv_url = serve_http(Err500)
res = emit(["steady", "5", "0"], {"MLFLOW_TRACKING_URI": srv_url, "MLTRACE_SPOOL": "off",
                                  "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": "3", "EMIT_SHUTDOWN_MS": "20000"})
st = res.get("stats", {})
t.equal((st.get("traces_exported"), st.get("traces_failed")), (0, 5), "HTTP 500: traces counted as failed")
t.ok(st.get("export_retries", 0) > 0, "HTTP 500: retried before giving up")
t.equal(res.get("shutdown_rc"), 0, "HTTP 500: clean shutdown")
srv.shutdown()

# 9. Volume: more than the exporter's 64 MiB in-flight window, through a
# receiver that answers every request 20 ms late.  The window fills; the
# export thread stops dequeuing (backpressure) and the queue holds the rest:
# nothing fails for lack of room, however busy the machine is.
SINK = program("tests", "bench", "otlp-sink")
sink = subprocess.Popen([SINK, "--delay-ms", "20"], stdout=subprocess.PIPE, text=True, start_new_session=True)
line = sink.stdout.readline()
sink_url = "http://" + line.split()[-1] if line.startswith("listening on") else None
res = emit(["big", "1200", "64", "0"], {"MLFLOW_TRACKING_URI": sink_url or "http://127.0.0.1:9",
                                        "EMIT_SHUTDOWN_MS": "30000"})
st = res.get("stats", {})
t.equal((st.get("traces_exported"), st.get("traces_failed"), st.get("traces_dropped")), (1200, 0, 0),
        "75 MiB through a slow receiver: every trace exported, none failed or dropped (backpressure)")
sink.terminate()
sink.wait()

# 10. An OTLP exporter built in code: service.name from the options (set
# after the exporter was created), headers as given (one with a 2000-byte
# key, which once overflowed a stack buffer).
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

got = []


class Capture(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        got.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


cap, cap_url = serve_http(Capture)
res = emit(["api_otlp", f"{cap_url}/v1/traces"], {"OTEL_SERVICE_NAME": "svc-env"})
t.equal(res.get("stats", {}).get("traces_exported"), 1, "API-built OTLP exporter: trace exported")
svc = None
if got:
    req = ExportTraceServiceRequest()
    req.ParseFromString(got[0][1])
    for a in req.resource_spans[0].resource.attributes:
        if a.key == "service.name":
            svc = a.value.string_value
t.equal(svc, "svc-from-options", "API-built OTLP exporter: service.name from the options")
t.equal(got[0][0].get("x-ok") if got else None, "yes", "API-built OTLP exporter: its headers are sent")

# What any OTLP backend gets: JSON objects, arrays and strings as string
# values holding their JSON text (as MLflow's own OpenTelemetry spans carry
# them), numbers, booleans and typed attributes natively.
del got[:]
res = emit(["values"] + VALUES, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{cap_url}/v1/traces"})
seen = {}
for _, body in got:
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                seen[sp.name] = {a.key: (a.value.WhichOneof("value"), getattr(a.value, a.value.WhichOneof("value") or "string_value"))
                                 for a in sp.attributes}
v = seen.get("v0", {})
t.equal((v.get("mlflow.spanInputs"), v.get("j"), v.get("str"), v.get("mlflow.spanType"), v.get("mlflow.spanLogLevel")),
        (("string_value", VALUES[0]), ("string_value", VALUES[0]), ("string_value", "plain"), ("string_value", "TOOL"),
         ("int_value", 20)), "OTLP: an object as its JSON text, typed attributes native")
t.equal([seen.get(f"v{i}", {}).get("mlflow.spanOutputs") for i in (1, 3, 5, 6, 8, 12)],
        [("string_value", "[1, 2]"), ("string_value", '"[1,2]"'), ("int_value", 42), ("double_value", -3.5),
         ("bool_value", True), ("string_value", '{"ws" : [ ] }')], "OTLP: arrays and strings as text, scalars native")
cap.shutdown()

cleanup()
t.done()
