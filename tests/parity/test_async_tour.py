"""examples/async-tour (the README's async section as a program), run for
real: examples/fake-openai as the LLM, HTTP clients over 127.0.0.1, traces in
a JSONL file store read back with Trace.from_json.  Checks the trace shape the
README promises (request span, retrieve on a worker, the streamed LLM call,
both children of the request), previews, token usage, the X-Trace-Id header
and the feedback sent with it, a client that hangs up mid-stream, concurrent
requests, and a clean shutdown on SIGTERM.  Prints TAP.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import threading

from tap import Tap

t = Tap()

from jsonl_store import read_traces  # noqa: E402
from mltest import TMP, clean_env, install_cleanup, program, spawn  # noqa: E402

TOUR = program("examples", "async-tour")
FAKE = program("examples", "fake-openai")
STORE = os.path.join(TMP, "traces.jsonl")
if not os.path.exists(TOUR):
    t.skip_all("examples/async-tour not built (no libevent)")
install_cleanup()

env = clean_env(drop=("MLFLOW_", "OTEL_", "MLTRACE_", "OPENAI_"), spool=False, MLTRACE_FILE=STORE)
fake, fport = spawn([FAKE, "--port", "0", "--delay-ms", "20", "--quiet"], stderr=subprocess.PIPE)
tour, port = spawn([TOUR, "--port", "0", "--llm", f"http://127.0.0.1:{fport}/v1", "--workers", "2"], env,
                   stderr=subprocess.PIPE)
try:
    def ask(q):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/ask", body=json.dumps({"question": q}))
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, r.getheader("X-Trace-Id"), body

    status, tid, answer = ask("What is MLflow?")
    t.ok(status == 200 and answer == "Echo: What is MLflow? ✓" and tid and tid.startswith("tr-"),
         "/ask streams the model's answer; X-Trace-Id names the trace", f"{status} {tid} {answer!r}")

    def feedback(payload):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/feedback", body=json.dumps(payload))
        r = c.getresponse()
        r.read()
        c.close()
        return r.status

    t.equal(feedback({"trace_id": tid, "thumbs_up": True, "user": "alice", "comment": "spot on"}), 202,
            "/feedback with the trace id: accepted")
    t.equal(feedback({"trace_id": "nonsense", "thumbs_up": True}), 400, "/feedback with a bad id: 400")

    # A client that hangs up after the first bytes of the answer (a 300-word
    # question: the echoed answer takes 6 s to stream, far longer than the
    # server needs to notice the hang-up, however loaded the machine).
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"question": "hang up " + "word " * 300}).encode()
    s.sendall(b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while b"Echo" not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    hang_tid = next((ln.split(b":", 1)[1].strip().decode() for ln in got.split(b"\r\n")
                     if ln.lower().startswith(b"x-trace-id:")), None)
    s.close()

    # Concurrent requests (the loop, two workers, curl multi on one thread).
    results = {}

    def one(i):
        results[i] = ask(f"question number {i}")

    th = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    t.ok(all(results[i][0] == 200 and results[i][2] == f"Echo: question number {i} ✓" for i in range(6)),
         "6 concurrent requests each get their own answer", repr(results))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/ask", body="{}")
    r = c.getresponse()
    r.read()
    t.equal(r.status, 400, "/ask without a question: 400")
    c.close()
finally:
    tour.send_signal(signal.SIGTERM)
    try:
        _, err = tour.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        tour.kill()
        _, err = tour.communicate()
    fake.send_signal(signal.SIGTERM)
    fake.wait(timeout=30)
t.ok(tour.returncode == 0 and "0 failed, 0 dropped; feedback 1 delivered, 0 failed" in err,
     "SIGTERM: clean teardown, every trace and the feedback exported", err)

traces, updates = read_traces(STORE)
t.equal(len(traces), 9, "9 traces: 1 + hang-up + 6 concurrent + the 400")
tr = traces.get(tid)
spans = {s.name: s for s in tr.data.spans} if tr else {}
root, ret, llm = spans.get("POST /ask"), spans.get("retrieve"), spans.get("chat.completions")
t.ok(root and ret and llm and ret.parent_id == root.span_id and llm.parent_id == root.span_id
     and ret.span_type == "RETRIEVER" and llm.span_type == "CHAT_MODEL",
     "trace shape: retrieve (worker) and chat.completions (streamed) under the request span",
     repr([(s.name, s.span_id, s.parent_id) for s in tr.data.spans]) if tr else "missing")
t.ok(root and root.outputs == answer and llm and llm.outputs["choices"][0]["message"]["content"] == answer,
     "the request span's output is what the client received; the LLM span's is the assembled completion")
t.ok(llm and llm.get_attribute("mlflow.chat.tokenUsage", ) and json.loads(
    tr.info.trace_metadata.get("mlflow.trace.tokenUsage", "{}")).get("total_tokens", 0) > 0,
     "token usage recorded (stream_options.include_usage)")
t.ok(tr and tr.info.request_preview == "What is MLflow?" and tr.info.response_preview == answer,
     "previews: the question and the answer (MLT_TRACE_UPDATE)", f"{tr.info.request_preview!r} {tr.info.response_preview!r}")
fb = [a for u in updates if u.info.trace_id == tid for a in u.info.assessments]
t.ok(len(fb) == 1 and fb[0].name == "user_thumbs_up" and fb[0].value is True and fb[0].source.source_id == "alice"
     and fb[0].rationale == "spot on", "the feedback is on the trace, after it (an update line)", repr(fb))
ht = traces.get(hang_tid)
hs = {s.name: s for s in ht.data.spans} if ht else {}
t.ok(ht and ht.info.state.value == "ERROR" and hs["POST /ask"].status.status_code == "ERROR"
     and hs["chat.completions"].status.status_code == "ERROR"
     and "Cancelled" in hs["chat.completions"].status.description,
     "a client that hung up: request span ERROR, the LLM call cancelled",
     repr([(s.name, s.status) for s in ht.data.spans]) if ht else f"no trace {hang_tid}")
t.done()
