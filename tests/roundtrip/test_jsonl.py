"""Round trip: the JSONL file store, loaded with MLflow's own Trace.from_json.

Runs tests/roundtrip/gen_traces (C) to write a store, then loads every line
with mlflow.entities.Trace.from_json and checks the span tree, types, inputs,
outputs, attributes, events, status, tags, metadata and previews.  Prints TAP.
"""
import json
import os
import subprocess
import sys
import tempfile

from mltest import program
from tap import Tap  # tests/harness/tap.py

t = Tap()

import mlflow  # noqa: E402
from mlflow.entities import SpanStatusCode, Trace  # noqa: E402

gen = program("tests", "roundtrip", "gen_traces")

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "traces.jsonl")
    r = subprocess.run([gen, path], capture_output=True, text=True, timeout=60)
    t.ok(r.returncode == 0, "gen_traces ran", r.stdout + r.stderr)
    t.ok("exported=6 failed=0 dropped=0" in r.stdout, "6 traces exported, none lost", r.stdout)
    lines = open(path, encoding="utf-8").read().splitlines()

t.equal(len(lines), 6, "one line per trace")
traces = []
for i, line in enumerate(lines):
    try:
        traces.append(Trace.from_json(line))
        ok = True
    except Exception as e:  # noqa: BLE001
        ok = False
        t.diag(f"line {i}: {e!r}")
    t.ok(ok, f"line {i} loads with Trace.from_json")

by_name = {}
for tr in traces:
    by_name.setdefault(tr.info.tags.get("mlflow.traceName"), []).append(tr)


def spans(tr):
    return {s.name: s for s in tr.data.spans}


# ---- function scope / block scope -------------------------------------
tr = by_name["function_scope"][0]
s = spans(tr)
root = tr.data.spans[0]
t.equal(root.name, "function_scope", "root span first")
t.equal(root.parent_id, None, "root has no parent")
t.equal(root.span_type, "AGENT", "root type")
t.equal(root.inputs, {"question": "Qu'est-ce que MLflow ? \u2713", "n": 3}, "root inputs (unicode escapes)")
t.equal(root.outputs, {"answer": "Hello world"}, "root outputs")
t.equal(root.attributes.get("mlflow.spanFunctionName"), "function_scope", "function name recorded")
for child in ("retrieve", "leaf", "llm"):
    t.equal(s[child].parent_id, root.span_id, f"{child} is a child of the root")
t.equal(s["retrieve"].span_type, "RETRIEVER", "retrieve type")
t.equal(s["retrieve"].outputs, [{"id": "d1", "score": 0.9}, {"id": "d2", "score": 0.5}], "list outputs")
a = s["retrieve"].attributes
t.equal((a.get("db"), a.get("k"), a.get("threshold"), a.get("cached")), ("vectors", 2, 0.25, False),
        "typed attributes")
ev = s["retrieve"].events
t.equal([e.name for e in ev], ["cache_miss"], "event recorded")
t.equal(ev[0].attributes, {"key": "mlflow", "shard": 3}, "event attributes raw")
t.equal(s["leaf"].inputs, {"x": 4}, "fields inputs")
t.equal(s["leaf"].outputs, {"doubled": 8}, "leaf outputs")
llm = s["llm"]
t.equal(llm.span_type, "CHAT_MODEL", "llm type")
t.equal(llm.outputs, "Hello world", "streamed chunks aggregated into the output")
t.equal([e.name for e in llm.events], [f"mlflow.chunk.item.{i}" for i in range(4)], "one event per chunk")
t.equal(json.loads(llm.events[1].attributes["mlflow.chunk.value"]), "lo", "chunk value is JSON text")
t.ok(llm.attributes.get("gen_ai.response.time_to_first_chunk") is not None, "time to first chunk recorded")
info = tr.info
t.equal(info.state.value if hasattr(info.state, "value") else str(info.state), "OK", "trace state OK")
t.equal(info.tags.get("env"), "test", "tag env")
t.equal(info.tags.get("team"), "c", "tag team")
t.equal(info.trace_metadata.get("app.version"), "1.2.3", "metadata")
t.equal(info.trace_metadata.get("mlflow.trace.session"), "sess-1", "session metadata")
t.equal(info.trace_metadata.get("mlflow.trace.user"), "alice", "user metadata")
t.equal(info.trace_metadata.get("mlflow.trace_schema.version"), "3", "schema version")
t.equal(json.loads(info.trace_metadata.get("mlflow.trace.tokenUsage")),
        {"input_tokens": 5, "output_tokens": 4, "total_tokens": 9}, "token usage summed into metadata")
t.equal(json.loads(info.trace_metadata["mlflow.trace.sizeStats"])["num_spans"], 4, "sizeStats num_spans")
t.equal(info.client_request_id, "req-42", "client_request_id")
t.equal(info.request_preview, '{"question": "Qu\'est-ce que MLflow ? \\u2713", "n": 3}', "request preview")
t.equal(info.response_preview, '{"answer": "Hello world"}', "response preview")
t.equal(info.trace_location.mlflow_experiment.experiment_id, "7", "experiment id")
t.ok(info.execution_duration is not None and info.execution_duration >= 0, "execution duration")
t.equal(tr.info.trace_id, root.trace_id, "span trace ids match the info")
again = Trace.from_json(tr.to_json())
t.equal(len(again.data.spans), 4, "to_json/from_json round trip keeps the spans")

# ---- error path -------------------------------------------------------
tr = by_name["error_path"][0]
s = spans(tr)
t.equal(str(tr.info.state), "TraceState.ERROR" if "TraceState" in str(tr.info.state) else "ERROR",
        "error trace state ERROR")
t.equal(s["leaf"].status.status_code, SpanStatusCode.ERROR, "failing span status ERROR")
t.equal(s["leaf"].status.description, "ValueError: negative input", "status description")
exc = [e for e in s["leaf"].events if e.name == "exception"]
t.equal(len(exc), 1, "exception event")
t.equal((exc[0].attributes["exception.type"], exc[0].attributes["exception.message"]),
        ("ValueError", "negative input"), "exception attributes")
t.equal(s["error_path"].status.description, "RuntimeError: leaf failed", "root error description")

# ---- client API -------------------------------------------------------
tr = by_name["client_root"][0]
s = spans(tr)
t.equal(s["client_root"].span_type, "WORKFLOW", "client root type")
t.equal(s["client_child"].parent_id, s["client_root"].span_id, "client child parent")
t.equal(s["client_child"].inputs, [1, 2, 3], "client child inputs")
t.equal(s["client_child"].outputs, 6, "client child outputs")
t.equal(s["client_root"].outputs, {"status": "done"}, "client root outputs")

# ---- odd values -------------------------------------------------------
tr = by_name["odd_values"][0]
sp = tr.data.spans[0]
t.equal(sp.span_type, "MY_PARSER", "custom span type")
t.equal(sp.inputs, "this is not json", "invalid JSON kept as a string")
t.equal(sp.outputs, '"quoted" \\ text\n', "text output escaped correctly")
t.ok("\ufffd" in sp.attributes["raw"] and "\x00" in sp.attributes["raw"], "NUL kept, invalid UTF-8 replaced")
t.ok(sp.attributes["big"].endswith("...[truncated by mltrace: 4999 bytes]") and len(sp.attributes["big"]) < 1100,
     "oversized value truncated with a marker")

# ---- continuation -----------------------------------------------------
conts = [tr for tr in traces if tr.info.trace_metadata.get("mltrace.continuation") == "true"]
t.equal(len(conts), 1, "one continuation line")
first = by_name["cont_root"][0]
t.equal(conts[0].info.trace_id, first.info.trace_id, "continuation shares the trace id")
t.equal(conts[0].data.spans[0].parent_id, first.data.spans[0].span_id, "late span parented to the root")

t.done()
