"""Bytes per span of MLflow's own Trace.to_json() for the GenAI trace of
bench_core (root + 4 children, the same inputs, outputs and attributes),
built with MLflow's Python SDK on a throw-away sqlite store.  Optionally
checks that a JSONL line we wrote loads with Trace.from_json.
Usage: mlflow_bytes.py [our.jsonl]   (prints "name value unit" lines)
"""
import atexit
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
import mlflow  # noqa: E402
from mlflow.entities import SpanType, Trace  # noqa: E402

if len(sys.argv) > 1:
    sys.argv[1] = os.path.abspath(sys.argv[1])  # before the chdir below
d = tempfile.mkdtemp(prefix="mlt-bytes-")
atexit.register(shutil.rmtree, d, True)
os.chdir(d)  # the store's default artifact root (./mlruns) goes there too
mlflow.set_tracking_uri("sqlite:///" + os.path.join(d, "db.sqlite"))
IN = {"messages": [{"role": "user", "content": "What does the Q3 report say about EMEA revenue?"}], "temperature": 0.2}
OUT = {"choices": [{"message": {"role": "assistant", "content": "EMEA revenue grew 12% quarter over quarter."}}]}
with mlflow.start_span("rag.pipeline", span_type=SpanType.CHAIN) as root:
    root.set_inputs(IN)
    root.set_attribute("request", 7)
    for name, ty in [("retrieve", SpanType.RETRIEVER), ("rerank", SpanType.RERANKER),
                     ("generate", SpanType.CHAT_MODEL), ("parse", SpanType.PARSER)]:
        with mlflow.start_span(name, span_type=ty) as c:
            c.set_inputs(IN)
            c.set_outputs(OUT)
            c.set_attribute("model", "gpt-4o-mini")
    root.set_outputs(OUT)
tid = mlflow.get_last_active_trace_id()
if hasattr(mlflow, "flush_trace_async_logging"):
    mlflow.flush_trace_async_logging()
tr = None
for _ in range(100):
    tr = mlflow.get_trace(tid)
    if tr:
        break
    time.sleep(0.1)
js = tr.to_json()
print("mlflow_to_json_bytes_per_span %.0f bytes (MLflow %s Trace.to_json(), %d spans)"
      % (len(js.encode()) / len(tr.data.spans), mlflow.__version__, len(tr.data.spans)))
if len(sys.argv) > 1:
    with open(sys.argv[1]) as f:
        line = f.readline()
    t = Trace.from_json(line)
    print("ours_jsonl_bytes_per_span %.0f bytes (loads with Trace.from_json: %d spans)"
          % (len(line.rstrip("\n").encode()) / len(t.data.spans), len(t.data.spans)))
