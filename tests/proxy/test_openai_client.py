"""The LLM gateway (examples/chat-proxy) used by the official openai Python
client, over real loopback HTTP.  Prints TAP.

One interpreter runs everything: examples/fake-openai and fakellm (a
third-party OpenAI-compatible mock server from PyPI, served in a thread of
this process) as upstreams, one chat-proxy in front of each (writing a JSONL
trace store), and the client `OpenAI(base_url=<proxy>/v1)`.  For every case
the test keeps what the client got and, once the proxies have flushed
(SIGTERM), checks that the request span recorded exactly that, and the LLM
span's assembled output.  Last, MLflow's own OpenAI autolog records the same
Responses API calls made directly against fake-openai, and the LLM spans of
the gateway must have the shape MLflow stores (outputs, token usage, tools,
model, one event per stream event).
"""
import json
import os
import signal
import socket
import tempfile
import threading
import time

from jsonl_store import attr, read_dicts, root_and_child
from mltest import clean_env, install_cleanup, program, spawn
from tap import Tap  # tests/harness/tap.py

t = Tap()
T0 = time.monotonic()
FAKE = program("examples", "fake-openai")
PROXY = program("examples", "chat-proxy")
if not (os.access(FAKE, os.X_OK) and os.access(PROXY, os.X_OK)):
    t.skip_all("examples/fake-openai or examples/chat-proxy not built")

tmp = tempfile.TemporaryDirectory()
install_cleanup()


def start_proxy(upstream, name):
    env = clean_env(drop=("MLFLOW_", "OTEL_", "OPENAI_API_KEY", "MLTRACE_FILE"), spool=False)
    store = os.path.join(tmp.name, name + ".jsonl")
    env["MLTRACE_FILE"] = store
    p, port = spawn([PROXY, "--upstream", upstream, "--port", "0", "--quiet"], env)
    return p, port, store


# ---- upstreams ---------------------------------------------------------------

fake, fake_port = spawn([FAKE, "--port", "0", "--quiet"])

FAKELLM_CONFIG = os.path.join(tmp.name, "fakellm.yaml")
with open(FAKELLM_CONFIG, "w", encoding="utf-8") as f:
    f.write("""rules:
  - name: tools
    when: {messages_contain: "weather"}
    respond:
      tool_calls:
        - {name: get_weather, arguments: {city: "Paris"}}
        - {name: get_time, arguments: {tz: "Europe/London"}}
  - name: french
    when: {messages_contain: "bonjour"}
    respond: {content: "Bonjour ! Ça va très bien, merci. 日本語 𝄞 ✓"}
""")
os.environ["FAKELLM_CONFIG"] = FAKELLM_CONFIG
import uvicorn  # noqa: E402
import fakellm.server  # noqa: E402  (reads FAKELLM_CONFIG at import)

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
fakellm_port = sock.getsockname()[1]
fakellm_server = uvicorn.Server(uvicorn.Config(fakellm.server.app, log_level="error", lifespan="off"))
threading.Thread(target=fakellm_server.run, kwargs={"sockets": [sock]}, daemon=True).start()
for _ in range(200):
    if fakellm_server.started:
        break
    time.sleep(0.05)
t.ok(fakellm_server.started, "fakellm (PyPI) serves as a second upstream")

proxy_a, port_a, store_a = start_proxy(f"http://127.0.0.1:{fake_port}", "fake")
proxy_b, port_b, store_b = start_proxy(f"http://127.0.0.1:{fakellm_port}/v1", "fakellm")

import openai  # noqa: E402

SECRET = "sk-SECRET-gateway-test"
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port_a}/v1", api_key=SECRET, max_retries=0, timeout=30)
client_b = openai.OpenAI(base_url=f"http://127.0.0.1:{port_b}/v1", api_key=SECRET, max_retries=0, timeout=30)
t.diag(f"openai {openai.__version__}, fakellm {getattr(fakellm, '__version__', '0.3.5')}")

CHECK = " ✓"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
RTOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]


def msgs(text):
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


cases = {}  # trace id -> (store, name, what the client got, extra)


def keep(raw, store, name, got, **extra):
    tid = raw.headers.get("x-trace-id")
    t.ok(bool(tid), f"{name}: X-Trace-Id header")
    cases[tid] = (store, name, got, extra)


def stream_text(stream):
    """Iterate a chat stream as a client does: text per choice, tool calls,
    usage chunks, chunk count."""
    text, calls, usage, n = {}, {}, [], 0
    for ch in stream:
        n += 1
        if ch.usage:
            usage.append(ch.usage)
        for c in ch.choices:
            text[c.index] = text.get(c.index, "") + (c.delta.content or "")
            for tc in c.delta.tool_calls or []:
                cur = calls.setdefault((c.index, tc.index), {"id": "", "name": "", "arguments": ""})
                if tc.id:
                    cur["id"] = tc.id
                if tc.function and tc.function.name:
                    cur["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    cur["arguments"] += tc.function.arguments
    return text, calls, usage, n


# ---- Chat Completions -------------------------------------------------------

# 1. not streamed: a ChatCompletion assembled by the gateway
raw = client.chat.completions.with_raw_response.create(model="fake-gpt", messages=msgs("héllo wörld"))
r = raw.parse()
t.equal(type(r).__name__, "ChatCompletion", "chat, not streamed: create() returns a ChatCompletion")
t.equal(r.choices[0].message.content, "Echo: héllo wörld" + CHECK, "chat, not streamed: the answer")
t.equal((r.usage.prompt_tokens, r.usage.completion_tokens), (5, 7), "chat, not streamed: usage")
t.equal(r.system_fingerprint, "fp_fake", "chat, not streamed: system_fingerprint kept")
keep(raw, store_a, "chat json", raw.http_response.json(), text=r.choices[0].message.content)

# 2. streamed, no usage asked
raw = client.chat.completions.with_raw_response.create(model="fake-gpt", messages=msgs("héllo wörld"), stream=True)
text, calls, usage, n = stream_text(raw.parse())
t.equal(text, {0: "Echo: héllo wörld" + CHECK}, "chat, streamed: the client assembles the answer")
t.equal(usage, [], "chat, streamed without include_usage: no usage chunk")
t.equal(n, 9, "chat, streamed: role, 7 tokens, finish")
keep(raw, store_a, "chat stream", text[0], chunks=n + 1)

# 3. streamed with stream_options.include_usage
raw = client.chat.completions.with_raw_response.create(
    model="fake-gpt", messages=msgs("count me"), stream=True, stream_options={"include_usage": True})
text, calls, usage, n = stream_text(raw.parse())
t.equal(len(usage), 1, "chat, include_usage: exactly one usage chunk")
t.equal((usage[0].prompt_tokens, usage[0].completion_tokens, usage[0].total_tokens) if usage else None, (4, 5, 9),
        "chat, include_usage: the upstream's token counts")
keep(raw, store_a, "chat usage", text[0])

# 4. n=2, streamed and not: choices kept apart
want2 = {0: "Echo: hé wö" + CHECK, 1: "Echo #2: hé wö" + CHECK}
raw = client.chat.completions.with_raw_response.create(model="fake-gpt", messages=msgs("hé wö"), n=2, stream=True)
text, calls, usage, n = stream_text(raw.parse())
t.equal(text, want2, "n=2, streamed: each choice's text under its own index")
keep(raw, store_a, "n=2 stream", {i: text[i] for i in text}, n=2)
raw = client.chat.completions.with_raw_response.create(model="fake-gpt", messages=msgs("hé wö"), n=2)
r = raw.parse()
t.equal({c.index: c.message.content for c in r.choices}, want2, "n=2, not streamed: two choices")
keep(raw, store_a, "n=2 json", raw.http_response.json(), n=2)

# 5. tools: the client reassembles both calls with their arguments
want_calls = [("call_0", "get_weather", '{"city": "Paris"}'), ("call_1", "get_time", '{"city": "London"}')]
raw = client.chat.completions.with_raw_response.create(
    model="fake-gpt", messages=msgs("what is the weather?"), tools=TOOLS, stream=True)
text, calls, usage, n = stream_text(raw.parse())
got_calls = [(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
t.equal(got_calls, want_calls, "tools, streamed: both tool calls reassembled from their deltas")
keep(raw, store_a, "tools stream", got_calls)
with client.chat.completions.stream(model="fake-gpt", messages=msgs("what is the weather?"), tools=TOOLS) as s:
    final = s.get_final_completion()
t.equal([(c.id, c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls], want_calls,
        "tools, the SDK's stream helper: get_final_completion() has both calls")
t.equal(final.choices[0].finish_reason, "tool_calls", "tools: finish_reason tool_calls")
raw = client.chat.completions.with_raw_response.create(model="fake-gpt", messages=msgs("weather?"), tools=TOOLS)
r = raw.parse()
t.equal([(c.id, c.function.name, c.function.arguments) for c in r.choices[0].message.tool_calls], want_calls,
        "tools, not streamed: both calls in the ChatCompletion")
keep(raw, store_a, "tools json", raw.http_response.json())

# 6. upstream 500 before the first chunk: APIStatusError with its message
try:
    client.chat.completions.create(model="fake-gpt", messages=msgs("fail please"), extra_headers={"X-Fake-Status": "500"})
    err = None
except openai.APIStatusError as e:
    err = e
t.ok(isinstance(err, openai.InternalServerError), "upstream 500: the client raises InternalServerError (APIStatusError)")
t.equal(err.status_code if err else None, 500, "upstream 500: status passed on")
t.ok(err is not None and "injected by X-Fake-Status" in err.message, "upstream 500: the upstream's message",
     repr(err))
if err is not None:
    cases[err.response.headers.get("x-trace-id")] = (store_a, "upstream 500", err.response.json(), {})

# 7. upstream cut mid-stream: the client raises, after the partial answer
raw = client.chat.completions.with_raw_response.create(
    model="fake-gpt", messages=msgs("tell me a story"), stream=True, extra_headers={"X-Fake-Disconnect-After": "4"})
partial, err = "", None
try:
    for ch in raw.parse():
        for c in ch.choices:
            partial += c.delta.content or ""
except openai.APIError as e:
    err = e
t.ok(isinstance(err, openai.APIError), "upstream cut mid-stream: the client raises APIError", repr(err))
t.equal(partial, "Echo: tell m", "upstream cut mid-stream: the partial answer before the error")
keep(raw, store_a, "cut stream", partial, error=True)

# 8. chunk framing quirks upstream: the client still gets byte-exact text
quirky = "héllo 日本 𝄞 wörld"
for hdrs in ({"X-Fake-Framing": "crlf,comments"}, {"X-Fake-Write-Bytes": "1"},
             {"X-Fake-Framing": "split-utf8,crlf", "X-Fake-Write-Bytes": "2"}):
    raw = client.chat.completions.with_raw_response.create(
        model="fake-gpt", messages=msgs(quirky), stream=True, extra_headers=hdrs)
    text, calls, usage, n = stream_text(raw.parse())
    t.equal(text.get(0), "Echo: " + quirky + CHECK, f"framing quirks {hdrs}: byte-exact text")
    keep(raw, store_a, f"quirks {hdrs}", text.get(0))

# 9. GET /v1/models passed through
t.equal([m.id for m in client.models.list().data], ["fake-gpt"], "GET /v1/models: the upstream's list")

# ---- Responses API -----------------------------------------------------------

raw = client.responses.with_raw_response.create(model="fake-gpt", input="hello responses")
r = raw.parse()
t.equal(type(r).__name__, "Response", "responses, not streamed: a Response")
t.equal(r.output_text, "Echo: hello responses" + CHECK, "responses, not streamed: output_text")
t.equal((r.usage.input_tokens, r.usage.output_tokens), (3, 7), "responses, not streamed: usage")
keep(raw, store_a, "responses json", raw.http_response.json(), responses=True)

raw = client.responses.with_raw_response.create(model="fake-gpt", input="hello responses", stream=True)
events = list(raw.parse())
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
t.equal(text, "Echo: hello responses" + CHECK, "responses, streamed: the text deltas")
t.equal(events[-1].type if events else None, "response.completed", "responses, streamed: ends with response.completed")
completed = events[-1].response.to_dict(mode="json", exclude_unset=True) if events else {}
keep(raw, store_a, "responses stream", text, responses=True, completed=completed, nevents=len(events))

with client.responses.stream(model="fake-gpt", input="what is the weather?", tools=RTOOLS) as s:
    final = s.get_final_response()
fcalls = [(o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
t.equal(fcalls, [("call_0", "get_weather", '{"city": "Paris"}'), ("call_1", "get_weather", '{"city": "London"}')],
        "responses, streamed tools: the SDK assembles both function calls")

raw = client.responses.with_raw_response.create(
    model="fake-gpt", input="a long story", stream=True, extra_headers={"X-Fake-Disconnect-After": "6"})
partial, err = "", None
try:
    for e in raw.parse():
        if e.type == "response.output_text.delta":
            partial += e.delta
except openai.APIError as e:
    err = e
t.ok(isinstance(err, openai.APIError), "responses, upstream cut mid-stream: the client raises", repr(err))
t.equal(partial, "Echo: a ", "responses, cut: the partial text before the error")
keep(raw, store_a, "responses cut", partial, error=True, responses=True)

# ---- the second upstream: fakellm (PyPI) -------------------------------------

french = "Bonjour ! Ça va très bien, merci. 日本語 𝄞 ✓"
raw = client_b.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs("bonjour"), stream=True)
text, calls, usage, n = stream_text(raw.parse())
t.equal(text.get(0), french, "fakellm upstream, streamed: the answer")
keep(raw, store_b, "fakellm stream", text.get(0), no_usage=True)
raw = client_b.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs("bonjour"))
r = raw.parse()
t.equal(r.choices[0].message.content, french, "fakellm upstream, not streamed: assembled by the gateway")
keep(raw, store_b, "fakellm json", raw.http_response.json(), no_usage=True)
raw = client_b.chat.completions.with_raw_response.create(
    model="gpt-4o-mini", messages=msgs("what is the weather?"), tools=TOOLS, stream=True)
text, calls, usage, n = stream_text(raw.parse())
fl_calls = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
t.equal(fl_calls, [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/London"})],
        "fakellm upstream, tools streamed: both calls reassembled")
keep(raw, store_b, "fakellm tools", [(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())],
     no_usage=True)

t.diag(f"client calls done after {time.monotonic() - T0:.1f} s")

# ---- the traces ---------------------------------------------------------------

for p in (proxy_a, proxy_b):
    p.send_signal(signal.SIGTERM)
    t.equal(p.wait(timeout=30), 0, "chat-proxy exits 0 on SIGTERM after flushing")


text_a, traces_a = read_dicts(store_a)
text_b, traces_b = read_dicts(store_b)
t.ok(SECRET not in text_a and SECRET not in text_b, "the Authorization header is never recorded")
by_id = {tr["info"]["trace_id"]: tr for tr in traces_a + traces_b}


def chat_content(obj, i=0):
    c = next((c for c in obj.get("choices", []) if c.get("index") == i), {})
    return c.get("message", {}).get("content")


def chat_calls(obj, i=0):
    c = next((c for c in obj.get("choices", []) if c.get("index") == i), {})
    return [(x["id"], x["function"]["name"], x["function"]["arguments"]) for x in c.get("message", {}).get("tool_calls", [])]


for tid, (store, name, got, extra) in cases.items():
    tr = by_id.get(tid)
    if not t.ok(tr is not None, f"{name}: its trace is in the store"):
        continue
    root, llm = root_and_child(tr)
    out = attr(root, "mlflow.spanOutputs")
    llm_out = attr(llm, "mlflow.spanOutputs") if llm else None
    error = extra.get("error") or name == "upstream 500"
    t.equal(tr["info"]["state"], "ERROR" if error else "OK", f"{name}: trace state")
    t.ok(llm is not None and llm["name"] == ("responses" if extra.get("responses") else "chat.completions"),
         f"{name}: the LLM span under the request span")
    # What the client got == what the request span recorded.
    if isinstance(got, (str, dict)) and not (isinstance(got, dict) and all(isinstance(k, int) for k in got)):
        t.equal(out, got, f"{name}: request span output == what the client got")
    elif isinstance(got, dict):  # n=2 streamed: text per choice
        t.equal({i: chat_content(out, i) for i in got}, got, f"{name}: request span output == the client's choices")
    else:  # tool calls
        t.equal(chat_calls(out), got, f"{name}: request span output has the client's tool calls")
    # The LLM span's assembled output.
    if extra.get("responses"):
        llm_text = "".join(p.get("text", "") for o in (llm_out or {}).get("output", []) if o.get("type") == "message"
                           for p in o.get("content", []) if p.get("type") == "output_text")
        want = got if isinstance(got, str) else "Echo: hello responses" + CHECK
        t.equal(llm_text, want, f"{name}: LLM span output (the Response) has the text")
        if "completed" in extra:
            t.equal(llm_out, extra["completed"], f"{name}: LLM span output == the client's response.completed Response")
            t.equal(sum(e["name"].startswith("mlflow.chunk.item.") for e in llm["events"]), extra["nevents"],
                    f"{name}: one chunk event per stream event on the LLM span")
    elif isinstance(got, str):
        t.equal(chat_content(llm_out), got, f"{name}: LLM span assembled content")
    elif isinstance(got, dict) and "choices" in got:
        for i in range(extra.get("n", 1)):
            t.equal(chat_content(llm_out, i), chat_content(got, i), f"{name}: LLM span choice {i}")
        if chat_calls(got):
            t.equal(chat_calls(llm_out), chat_calls(got), f"{name}: LLM span tool calls")
    elif isinstance(got, dict) and "error" in got:
        t.equal(llm["status"]["code"], "STATUS_CODE_ERROR", f"{name}: LLM span ERROR")
        t.ok("HTTP 500" in llm["status"]["message"], f"{name}: LLM span HTTPError 500", llm["status"]["message"])
    elif isinstance(got, dict):
        for i in got:
            t.equal(chat_content(llm_out, i), got[i], f"{name}: LLM span choice {i}")
    else:
        t.equal(chat_calls(llm_out), got, f"{name}: LLM span tool calls")
    if extra.get("error") and llm:
        t.equal(llm["status"]["code"], "STATUS_CODE_ERROR", f"{name}: LLM span ERROR with the partial output")
    if "chunks" in extra:
        t.equal(sum(e["name"].startswith("mlflow.chunk.item.") for e in root["events"]), extra["chunks"],
                f"{name}: one chunk event per relayed event")
    # Token usage once: on the LLM span, and the trace's total equals it.
    if not error and not extra.get("no_usage"):
        u = attr(llm, "mlflow.chat.tokenUsage")
        tu = json.loads(tr["info"]["trace_metadata"].get("mlflow.trace.tokenUsage", "null"))
        t.ok(u is not None and attr(root, "mlflow.chat.tokenUsage") is None and
             {k: tu.get(k) for k in ("input_tokens", "output_tokens", "total_tokens")} ==
             {k: u.get(k) for k in ("input_tokens", "output_tokens", "total_tokens")},
             f"{name}: token usage recorded once", f"{u} / {tu}")
    t.ok(tr["info"].get("request_preview"), f"{name}: request preview set")

# ---- MLflow's own autolog, for the shape of a Responses call -----------------

# Each span MLflow records is captured as it ends (a span processor sees the
# span MLflow then exports); the store is a throw-away local one.
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
t1 = time.monotonic()
import logging  # noqa: E402

import mlflow  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.ERROR)
mlflow.set_tracking_uri("file://" + os.path.join(tmp.name, "mlruns"))
recorded = []
mlflow.tracing.configure(span_processors=[lambda span: recorded.append(span.to_dict())])
mlflow.openai.autolog()
direct = openai.OpenAI(base_url=f"http://127.0.0.1:{fake_port}/v1", api_key="sk-direct", max_retries=0, timeout=30)
ml = {}
for stream in (False, True):
    for tools in (False, True):
        kw = {"model": "fake-gpt", "input": "what is the weather?" if tools else "hello responses"}
        if tools:
            kw["tools"] = RTOOLS
        res = direct.responses.create(stream=stream, **kw)
        if stream:
            list(res)
        ml[(stream, tools)] = recorded[-1] if recorded else {"attributes": {}}
mlflow.openai.autolog(disable=True)
t.diag(f"MLflow autolog part: {time.monotonic() - t1:.1f} s")

# The same calls through the gateway (a fresh proxy on fake-openai).
proxy_c, port_c, store_c = start_proxy(f"http://127.0.0.1:{fake_port}", "shape")
gw = openai.OpenAI(base_url=f"http://127.0.0.1:{port_c}/v1", api_key="sk-x", max_retries=0, timeout=30)
for stream in (False, True):
    for tools in (False, True):
        kw = {"model": "fake-gpt", "input": "what is the weather?" if tools else "hello responses"}
        if tools:
            kw["tools"] = RTOOLS
        res = gw.responses.create(stream=stream, **kw)
        if stream:
            list(res)
proxy_c.send_signal(signal.SIGTERM)
proxy_c.wait(timeout=30)
_, traces_c = read_dicts(store_c)
ours = [root_and_child(tr)[1] for tr in traces_c]

VOLATILE = {"id", "created_at", "item_id"}


def strip(v):
    """Drop ids and timestamps (they differ between two calls)."""
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [strip(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def covered(small, big):
    """Every member of |small| is in |big| with the same value (|big| may
    have more members: the SDK's defaults, null)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and covered(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(covered(a, b) for a, b in zip(small, big))
    return small == big


t.equal(len(ours), 4, "the same four Responses calls through the gateway")
for k, (stream, tools) in enumerate([(False, False), (False, True), (True, False), (True, True)]):
    if k >= len(ours):
        break
    mine, theirs = ours[k], ml[(stream, tools)]
    what = f"Responses {'streamed' if stream else 'not streamed'}{' with tools' if tools else ''}"
    ta = theirs["attributes"]
    t.equal(attr(mine, "mlflow.spanType"), json.loads(ta["mlflow.spanType"]), f"{what}: span type as MLflow's")
    t.equal(attr(mine, "mlflow.chat.tokenUsage"), json.loads(ta["mlflow.chat.tokenUsage"]),
            f"{what}: mlflow.chat.tokenUsage as MLflow records it")
    t.equal(attr(mine, "mlflow.llm.model"), json.loads(ta["mlflow.llm.model"]), f"{what}: mlflow.llm.model")
    t.equal(attr(mine, "mlflow.message.format"), "openai", f"{what}: mlflow.message.format")
    if tools:
        t.equal(attr(mine, "mlflow.chat.tools"), json.loads(ta["mlflow.chat.tools"]),
                f"{what}: mlflow.chat.tools converted as MLflow converts them")
    mo, to = strip(attr(mine, "mlflow.spanOutputs")), strip(json.loads(ta["mlflow.spanOutputs"]))
    t.ok(covered(mo, to), f"{what}: outputs = the Response object MLflow stores",
         f"ours: {json.dumps(mo)[:600]}\nMLflow: {json.dumps(to)[:600]}")
    if stream:  # (the gateway streams from the upstream either way)
        t.equal(sum(e["name"].startswith("mlflow.chunk.item.") for e in mine["events"]),
                sum(e["name"].startswith("mlflow.chunk.item.") for e in theirs.get("events", [])),
                f"{what}: one chunk event per stream event, as MLflow")

fakellm_server.should_exit = True
fake.send_signal(signal.SIGTERM)
t.equal(fake.wait(timeout=30), 0, "fake-openai exits 0")
t.diag(f"total {time.monotonic() - T0:.1f} s")
t.done()
