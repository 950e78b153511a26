"""MLflow 3.17 parity: feedback, expectations and tags on traces, and
update_current_trace(state=, model_id=) (part A); explicit start/end times,
span links, description, log level, sampling_ratio_override and the scoped
context (part B); read back from a real MLflow server with MLflow's own
client and from the JSONL file store with Trace.from_json.

One `mlflow server` (pinned MLflow, sqlite, 127.0.0.1, free port) serves
every check.  tests/parity/parity_emit exports to the server and the file
store at once (dual export), so the same assessment ids must show up in
both.  The MLflow UI's trace view reads GET ajax-api/3.0/mlflow/traces/{id}
and its Assessments pane renders trace.trace_info.assessments (valid ones,
grouped by assessment_name): that URL is checked too.  Then `mltrace` reads
the same traces from the server (list / show --tracking-uri) and from the
file.  Prints TAP.
"""
import json
import os
import subprocess
import urllib.request

from tap import Tap

t = Tap()

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import SpanLogLevel, Trace  # noqa: E402

from jsonl_store import merge_jsonl  # noqa: E402
from mltest import TMP, Server, clean_env, install_cleanup, program, serve_http  # noqa: E402

EMIT = program("tests", "parity", "parity_emit")
MLTRACE = program("lib", "cli", "mltrace")
server = Server("parity")
server.start(wait=False)
URL = server.url
install_cleanup()


def run(args, **env):
    r = subprocess.run(args, capture_output=True, text=True, env=clean_env(env), timeout=120)
    return r.returncode, r.stdout, r.stderr


try:
    up = server.wait()
    t.ok(up, "mlflow server up")
    if not up:
        server.stop()
        t.done()
    mlflow.set_tracking_uri(URL)
    client = MlflowClient()
    store = os.path.join(TMP, "traces.jsonl")

    # ---- one run, exported to the server and the file store -------------
    r = subprocess.run([EMIT, "ghost"], capture_output=True, text=True, timeout=180,
                       env=clean_env(MLFLOW_TRACKING_URI=URL, MLTRACE_FILE=store, MLTRACE_EXPORT_RETRY_BUDGET_MS="3000"))
    out = json.loads(r.stdout.strip().splitlines()[-1])
    ids, rc, st = out["traces"], out["rc"], out["stats"]
    bad = {k: v for k, v in rc.items() if v != ("MLT_ENOTFOUND" if k == "live_delete_missing" else "MLT_OK")}
    t.ok(r.returncode == 0 and not bad, "every call returns MLT_OK (ENOTFOUND for a tag the live trace lacks)",
         json.dumps(bad) + r.stderr[-500:])
    t.equal(out["flush"], "MLT_EIO", "mlt_flush waits for the queued operations (EIO: the ghost's failed)")
    t.equal(st["traces_exported"], 4, "4 traces exported")
    t.equal((st["ops_queued"], st["ops_delivered"], st["ops_failed"], st["ops_dropped"]), (11, 10, 1, 0),
         "counters: 11 operations on finished traces, 10 delivered, the unknown trace's failed")
    t.ok("has no trace tr-00000000000000000000000000c0ffee" in r.stderr, "the failure is logged with its reason",
         r.stderr[-300:])

    done = client.get_trace(ids["done"])
    by_name = {a.name: a for a in done.info.assessments}
    t.equal(sorted(by_name), ["expected_answer", "facts", "feedback", "judge", "thumbs"],
         "server: the finished trace holds the five assessments")
    th = by_name.get("thumbs")
    t.ok(th is not None and th.value is True and th.source.source_type == "HUMAN" and th.source.source_id == "alice"
         and th.rationale == "quick and right" and th.metadata == {"channel": "web"} and th.span_id == ids["child_span"],
         "server: feedback value, source, rationale, metadata and span id", repr(th))
    fa = by_name.get("facts")
    t.ok(fa is not None and fa.value == {"city": "Paris", "alts": [1, 2.5, None]} and fa.source.source_type == "CODE",
         "server: expectation with a JSON object value", repr(fa))
    ea = by_name.get("expected_answer")
    t.ok(ea is not None and ea.value == "Paris" and ea.source.source_type == "HUMAN" and ea.source.source_id == "default",
         "server: expectation with a scalar value, MLflow's default source (HUMAN)", repr(ea))
    ju = by_name.get("judge")
    t.ok(ju is not None and ju.error is not None and ju.error.error_code == "TIMEOUT"
         and ju.source.source_type == "LLM_JUDGE", "server: feedback carrying an error from an LLM judge", repr(ju))
    fb = by_name.get("feedback")
    t.ok(fb is not None and fb.value == 0.75 and fb.source.source_type == "CODE", "server: defaults (name feedback, "
         "source CODE)", repr(fb))
    tags = {k: v for k, v in done.info.tags.items() if not k.startswith("mlflow.")}
    t.equal(tags, {"reviewed": "yes", "env": "prod"},
         "server: tags set after the fact (env overwritten), app and tmp deleted")

    live = client.get_trace(ids["live"])
    t.equal(sorted(a.name for a in live.info.assessments), ["live_expected", "live_thumbs"],
         "server: assessments on a trace in progress travel with it (StartTraceV3)")
    le = [a for a in live.info.assessments if a.name == "live_expected"]
    t.ok(le and le[0].value == ["a", "b"] and le[0].span_id == ids["live_child_span"],
         "server: the span handle's expectation, on its span")
    t.equal({k: v for k, v in live.info.tags.items() if not k.startswith("mlflow.")}, {"kept": "1", "live": "1"},
         "server: tag set and tag deleted while in progress")
    se, so = client.get_trace(ids["state_error"]), client.get_trace(ids["state_ok"])
    t.ok(se.info.state.value == "ERROR" and se.info.trace_metadata.get("mlflow.modelId") == "m-0123456789",
         "server: update_current_trace(state=ERROR, model_id=...)", f"{se.info.state} {se.info.trace_metadata}")
    t.equal(so.info.state.value, "OK", "server: state=OK overrides a root span that ended with ERROR")

    # The MLflow UI's trace view: GET ajax-api/3.0/mlflow/traces/{id}, its
    # Assessments pane shows trace_info.assessments with valid != false.
    with urllib.request.urlopen(f"{URL}/ajax-api/3.0/mlflow/traces/{ids['done']}", timeout=10) as resp:
        ui = json.load(resp)
    shown = sorted(a["assessment_name"] for a in ui["trace"]["trace_info"].get("assessments", [])
                   if a.get("valid") is not False)
    t.equal(shown, ["expected_answer", "facts", "feedback", "judge", "thumbs"],
         "UI data (ajax-api/3.0/mlflow/traces/{id}): the Assessments pane's five entries")
    found = client.search_traces(locations=["0"], filter_string="tag.reviewed = 'yes'")
    t.equal([x.info.trace_id for x in found], [ids["done"]], "search_traces finds the trace by the tag set afterwards")

    # ---- the same run's file store ---------------------------------------
    traces, updates = merge_jsonl(store)
    t.equal(len(traces), 4, "file: every line loads with Trace.from_json; 4 traces")
    t.equal(len(updates), 11, "file: 11 update lines (the ghost's too: the file cannot know)")
    fd = traces[ids["done"]]
    t.equal(sorted(a.name for a in fd.info.assessments), sorted(by_name),
         "file: merged, the finished trace has the same assessments")
    t.equal(sorted(a.assessment_id for a in fd.info.assessments), sorted(a.assessment_id for a in done.info.assessments),
         "file and server hold the same assessment ids (made by the client)")
    t.equal({k: v for k, v in fd.info.tags.items() if not k.startswith("mlflow.")}, {"reviewed": "yes", "env": "prod"},
         "file: merged tags equal the server's")
    fl = traces[ids["live"]]
    t.equal(sorted(a.name for a in fl.info.assessments), ["live_expected", "live_thumbs"],
         "file: the live trace's line carries its assessments itself")
    t.ok(traces[ids["state_error"]].info.state.value == "ERROR"
         and traces[ids["state_error"]].info.trace_metadata.get("mlflow.modelId") == "m-0123456789",
         "file: state and model id")
    lines = [json.loads(x) for x in open(store)]
    first = {}
    for i, x in enumerate(lines):
        first.setdefault(x["info"]["trace_id"], i)
    t.ok(all(first[x["info"]["trace_id"]] <= i for i, x in enumerate(lines)
             if x["info"]["trace_metadata"].get("mltrace.update") and x["info"]["trace_id"] != ids["ghost"]),
         "file: every update line comes after its trace's line")

    # `mltrace merge`: one complete trace per line, for plain Trace.from_json readers.
    code, merged, err = run([MLTRACE, "merge", store])
    mt = {}
    for line in merged.splitlines():
        tr = Trace.from_json(line)
        mt[tr.info.trace_id] = tr
    t.ok(code == 0 and len(mt) == 5 and sorted(a.name for a in mt[ids["done"]].info.assessments) == sorted(by_name)
         and {k: v for k, v in mt[ids["done"]].info.tags.items() if not k.startswith("mlflow.")}
         == {"reviewed": "yes", "env": "prod"} and len(mt[ids["done"]].data.spans) == 2,
         "mltrace merge: Trace.from_json of each line gives the merged trace (and the ghost's update)", err)

    # ---- mltrace reads the server -----------------------------------------
    code, out_list, err = run([MLTRACE, "--no-color", "list", "--tracking-uri", URL])
    rows = [ln.split() for ln in out_list.splitlines()]
    # (The four traces share one millisecond: the server's order among them is its own.)
    want = {ids["done"]: ("✓", "OK", "2"), ids["live"]: ("✓", "OK", "2"), ids["state_error"]: ("✗", "ERROR", "1"),
            ids["state_ok"]: ("✓", "OK", "1")}
    t.ok(code == 0 and sorted(r[1] for r in rows) == sorted(want),
         "mltrace list --tracking-uri: the experiment's traces", out_list + err)
    t.ok(all(len(r) >= 8 and (r[0], r[3], r[6]) == want.get(r[1]) for r in rows),
         "mltrace list --tracking-uri: a mark on every row, columns in place, span counts from sizeStats", out_list)
    code2, out2, err2 = run([MLTRACE, "--no-color", "list", "--tracking-uri", URL, "--experiment", "Default",
                             "--max", "2"])
    got2 = [ln.split()[1] for ln in out2.splitlines()]
    t.ok(code2 == 0 and len(got2) == 2 and set(got2) <= set(want), "--experiment by name, --max 2", out2 + err2)
    code, shown, err = run([MLTRACE, "--no-color", "show", "--tracking-uri", URL, ids["done"]])
    code_f, shown_f, _ = run([MLTRACE, "--no-color", "show", store, ids["done"]])
    t.ok(code == 0 and "feedback thumbs = true (HUMAN alice): quick and right" in shown
         and "expectation facts = {\"city\":\"Paris\",\"alts\":[1,2.5,null]} (CODE ci)" in shown
         and "env=prod" in shown.splitlines()[0] and "reviewed=yes" in shown.splitlines()[0] and "└─ llm [LLM]" in shown,
         "mltrace show --tracking-uri: header, assessments, span tree", shown + err)
    strip = lambda txt: [ln.split("  ")[0] if i == 0 else ln.split(" [")[0] + (" " + ln.split("] ")[1].split(" ")[-1]
                         if "] " in ln else "") for i, ln in enumerate(txt.splitlines())]
    ui = [ln for ln in shown.splitlines() if ln.startswith("  ui: ")]
    t.equal(ui, [f"  ui: {URL}/#/experiments/0/traces?selectedEvaluationId={ids['done']}&traceId={ids['done']}"],
            "mltrace show --tracking-uri: the trace's page in the MLflow UI")
    shown = "\n".join(ln for ln in shown.splitlines() if not ln.startswith("  ui: "))
    t.equal(strip(shown), strip(shown_f), "the same tree from the server and from the file store (durations aside)")
    code, _, err = run([MLTRACE, "show", "--tracking-uri", URL, "tr-0000000000000000000000000000beef"])
    t.ok(code == 2 and "trace not found" in err, "show --tracking-uri of an unknown id: exit 2", err)
    code, _, err = run([MLTRACE, "list", "--tracking-uri", URL, "--experiment", "no-such-experiment"])
    t.ok(code == 2 and "no experiment named" in err, "list --experiment with an unknown name: exit 2", err)

    # The same credentials as the exporter: a server that wants them.
    import http.server
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error_code": "UNAUTHENTICATED", "message": "credentials needed"}')

        def log_message(self, *a):
            pass

    hs, auth_url = serve_http(H, threading_server=False)
    code, _, err = run([MLTRACE, "list", "--tracking-uri", auth_url], MLFLOW_TRACKING_TOKEN="tok-123")
    code2, _, err2 = run([MLTRACE, "list", "--tracking-uri", auth_url], MLFLOW_TRACKING_USERNAME="ann",
                         MLFLOW_TRACKING_PASSWORD="pw-456")
    hs.shutdown()
    t.ok(seen == ["Bearer tok-123", "Basic YW5uOnB3LTQ1Ng=="] and code == 2 and code2 == 2
         and "credentials needed" in err and "MLFLOW_TRACKING_TOKEN" in err and "tok-123" not in err + err2
         and "pw-456" not in err + err2, "mltrace sends MLFLOW_TRACKING_TOKEN / USERNAME+PASSWORD, never prints them",
         f"{seen} {err} {err2}")

    # ---- part B: explicit times, links, description, log level, per-root
    # sampling, scoped context (the same server; an experiment of its own) --
    store_b = os.path.join(TMP, "traces-b.jsonl")
    r = subprocess.run([EMIT, "b"], capture_output=True, text=True, timeout=180,
                       env=clean_env(MLFLOW_TRACKING_URI=URL, MLFLOW_EXPERIMENT_NAME="parity-b", MLTRACE_FILE=store_b))
    out = json.loads(r.stdout.strip().splitlines()[-1])
    ids, rc, st = out["traces"], out["rc"], out["stats"]
    t.ok(r.returncode == 0 and rc.pop("end_before_start") == "MLT_ERANGE" and set(rc.values()) == {"MLT_OK"}
         and out["flush"] == "MLT_OK" and (st["traces_exported"], st["traces_failed"], st["traces_sampled_out"]) == (7, 0, 1),
         "part B: 7 traces exported, the root with sampling_ratio_override 0 not recorded; an end before the start "
         "gives MLT_ERANGE", r.stdout[-600:] + r.stderr[-300:])
    T0 = 1700000000123456789
    files = {tr.info.trace_id: tr for tr in (Trace.from_json(x) for x in open(store_b))}
    for where, get in (("server", client.get_trace), ("file", files.get)):
        rp, lk, cl = get(ids["replayed"]), get(ids["linker"]), get(ids["client"])
        sp = {s.name: s for tr in (rp, lk, cl) for s in tr.data.spans}
        t.ok((rp.info.request_time, rp.info.execution_duration) == (T0 // 1000000, 3500)
             and (sp["replayed"].start_time_ns, sp["replayed"].end_time_ns) == (T0, T0 + 3500000000)
             and (sp["step"].start_time_ns, sp["step"].end_time_ns) == (T0 + 10**9, T0 + 10**9),
             f"{where}: explicit start/end times; TraceInfo follows them; an end before the start is the start",
             f"{rp.info} {sp['step'].start_time_ns} {sp['step'].end_time_ns}")
        links = [x.to_dict() for x in sp["linker"].links]
        t.equal(links, [{"trace_id": ids["replayed"], "span_id": ids["replayed_root_span"],
                         "attributes": {"relation": "fan-in", "index": 2, "retry": False}},
                        {"trace_id": "tr-0123456789abcdef0123456789abcdef", "span_id": "00000000000000ff",
                         "attributes": None}], f"{where}: span links with their attributes")
        t.ok(sp["linker"].description == "joins the batch" and sp["linker"].log_level == SpanLogLevel.WARNING
             and sp["tool"].log_level == SpanLogLevel.ERROR and sp["replayed"].log_level == SpanLogLevel.DEBUG,
             f"{where}: description, explicit log level, ERROR from an exception event, DEBUG for CHAIN",
             f"{sp['linker'].description} {sp['linker'].log_level} {sp['tool'].log_level}")
        t.ok((cl.info.request_time, cl.info.execution_duration) == ((T0 + 10**10) // 1000000, 3000)
             and (sp["client_step"].start_time_ns, sp["client_step"].end_time_ns) == (T0 + 11 * 10**9, T0 + 12 * 10**9)
             and [x.span_id for x in sp["client_replay"].links] == [ids["replayed_root_span"]],
             f"{where}: client API start_trace/start_span/end_span/end_trace with times and a link")
        fp, ff = get(ids["far_past"]), get(ids["far_future"])
        t.ok((fp.data.spans[0].start_time_ns, fp.data.spans[0].end_time_ns, fp.info.request_time) == (1000, 2000000, 0)
             and (ff.data.spans[0].start_time_ns, ff.data.spans[0].end_time_ns) == (9 * 10**18, 9 * 10**18)
             and ff.info.request_time == 9 * 10**12 and ff.info.execution_duration == 0,
             f"{where}: the far past (1970) and far future (2255, ended now: clamped to its start)")
        for k in ("scoped", "scoped_worker"):
            sc = get(ids[k])
            t.ok(sc.info.tags.get("team") == "core" and {m: sc.info.trace_metadata.get(m) for m in
                 ("tier", "mlflow.trace.session", "mlflow.trace.user")} == {"tier": "gold",
                 "mlflow.trace.session": "sess-b", "mlflow.trace.user": "ann"},
                 f"{where}: scoped context tags/metadata/session/user ({k})", repr(sc.info))
    t.equal(sorted(x.info.trace_id for x in client.search_traces(locations=[client.get_experiment_by_name(
             "parity-b").experiment_id], filter_string="tag.team = 'core'")), sorted([ids["scoped_worker"], ids["scoped"]]),
            "server: search_traces by a scope's tag finds both scoped traces")
    t.equal(len(files), 7, "file: 7 traces, each read with Trace.from_json")

finally:
    server.stop()
t.done()
