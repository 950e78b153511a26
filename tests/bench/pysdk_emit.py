"""MLflow's Python SDK logging the GenAI traces of tests/bench/bench_delivery
(root + 4 children, the same names, types, inputs, outputs and attributes)
to the tracking server in MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID, with
the SDK's defaults (asynchronous logging).  Usage: pysdk_emit.py N.
Prints one JSON line: elapsed seconds from the first span to the end of
mlflow.flush_trace_async_logging(), and the trace ids' count.
"""
import json
import sys
import time

import mlflow

IN = {"messages": [{"role": "user", "content": "What does the Q3 report say about EMEA revenue?"}],
      "temperature": 0.2}
OUT = {"choices": [{"message": {"role": "assistant", "content": "EMEA revenue grew 12% quarter over quarter."}}]}
CHILDREN = (("retrieve", "RETRIEVER"), ("rerank", "RERANKER"), ("generate", "CHAT_MODEL"), ("parse", "PARSER"))


def main():
    n = int(sys.argv[1])
    t0 = time.time()
    for i in range(n):
        with mlflow.start_span("rag.pipeline", span_type="CHAIN") as root:
            root.set_inputs(IN)
            root.set_attribute("request", i)
            for name, typ in CHILDREN:
                with mlflow.start_span(name, span_type=typ) as c:
                    c.set_inputs(IN)
                    c.set_outputs(OUT)
                    c.set_attribute("model", "gpt-4o-mini")
            root.set_outputs(OUT)
    made = time.time() - t0
    mlflow.flush_trace_async_logging(terminate=True)
    print(json.dumps({"traces": n, "elapsed_s": round(time.time() - t0, 3), "produce_s": round(made, 3)}))


if __name__ == "__main__":
    main()
