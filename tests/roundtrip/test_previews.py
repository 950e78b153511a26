"""Previews: ours against MLflow's own rule (mlflow.tracing.utils.truncation
_get_truncated_preview, as the tracking server applies it to the stored
JSON text), on crafted and random chat-shaped inputs and outputs: OpenAI
chat requests and responses, Responses API input/output, a nested
"request", content as a string or a list of parts, missing roles, escapes,
non-ASCII text and values longer than 1,000 characters.  Writes the cases
through tests/roundtrip/gen_previews to the JSONL store.  Prints TAP.
"""
import json
import os
import random
import subprocess
import tempfile

from mltest import program
from tap import Tap  # tests/harness/tap.py

t = Tap()

from mlflow.entities import Trace  # noqa: E402
from mlflow.tracing.utils.truncation import _get_truncated_preview  # noqa: E402

gen = program("tests", "roundtrip", "gen_previews")

WORDS = ["hello", "Qu'est-ce", "\u00e9t\u00e9", "\u2713", "\U0001F600", 'a "quoted" word', "back\\slash", "line\nbreak",
         "tab\there", "\u2028", "x" * 40]


def text(rng):
    n = rng.choice([0, 1, 3, 8, 300])
    return " ".join(rng.choice(WORDS) for _ in range(n))


def part(rng):
    k = rng.random()
    if k < 0.2:
        return text(rng)
    if k < 0.7:
        p = {"type": rng.choice(["text", "output_text", "image_url", "input_text"])}
        if rng.random() < 0.85:
            p["text"] = text(rng) if rng.random() < 0.9 else rng.choice([None, 5, ["x"]])
        return p
    return rng.choice([None, 3, ["nested"], {"other": 1}])


def message(rng):
    m = {}
    if rng.random() < 0.9:
        m["role"] = rng.choice(["user", "assistant", "system", "tool", "developer", 7])
    if rng.random() < 0.9:
        k = rng.random()
        m["content"] = text(rng) if k < 0.6 else [part(rng) for _ in range(rng.randint(0, 3))] if k < 0.9 else None
    if rng.random() < 0.3:
        m["name"] = "n"
    keys = list(m)
    rng.shuffle(keys)
    return {k: m[k] for k in keys} if rng.random() < 0.95 else rng.choice(["str", 1, None])


def chat(rng, depth=0):
    o = {}
    for key in ["messages", "choices", "input", "output", "request", "model", "temperature"]:
        if rng.random() < 0.35:
            if key in ("messages", "input", "output"):
                o[key] = [message(rng) for _ in range(rng.randint(0, 4))] if rng.random() < 0.9 else "not a list"
            elif key == "choices":
                o[key] = [{"index": 0, "message": message(rng)} if rng.random() < 0.8 else message(rng)
                          for _ in range(rng.randint(0, 2))]
            elif key == "request":
                o[key] = chat(rng, depth + 1) if depth < 3 else {}
            else:
                o[key] = rng.choice(["gpt-x", 0.2, None])
    keys = list(o)
    rng.shuffle(keys)
    return {k: o[k] for k in keys}


def dump(rng, v):
    style = rng.random()
    if style < 0.4:
        return json.dumps(v)
    if style < 0.6:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if style < 0.8:
        return json.dumps(v, indent=rng.choice([1, 2]))
    return " \n" + json.dumps(v, ensure_ascii=rng.random() < 0.5) + "\t "


CRAFTED = [
    {"messages": [{"role": "user", "content": "What is MLflow?"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello"}]},
    {"choices": [{"message": {"role": "assistant", "content": "EMEA revenue grew 12%."}}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}]}]},
    {"output": [{"role": "assistant", "content": [{"type": "output_text", "text": "from responses"}]}]},
    {"input": [], "output": [{"role": "assistant", "content": "output wins over an empty input"}]},
    {"request": {"input": [{"role": "user", "content": "nested request"}]}},
    {"messages": [], "choices": [{"message": {"role": "assistant", "content": "empty messages fall through"}}]},
    {"messages": [{"role": "user", "content": "x" * 1500}]},
    {"messages": [{"role": "user", "content": "\u00e9" * 999 + "\U0001F600" * 5}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": None}, {"type": "text", "text": "later"}]}]},
    {"messages": [{"role": "user", "content": ""}]},
    {"question": "not chat", "k": 2},
    [1, 2, 3], "just a string", 42, None, True,
]

rng = random.Random(20261207)
cases = [(json.dumps(c), json.dumps(CRAFTED[(i + 2) % len(CRAFTED)])) for i, c in enumerate(CRAFTED)]
cases += [(dump(rng, chat(rng)), dump(rng, chat(rng))) for _ in range(400)]

with tempfile.TemporaryDirectory() as d:
    src, out = os.path.join(d, "cases.bin"), os.path.join(d, "traces.jsonl")
    with open(src, "wb") as f:
        for a, b in cases:
            f.write(a.encode() + b"\0" + b.encode() + b"\0")
    r = subprocess.run([gen, src, out], capture_output=True, text=True, timeout=120)
    t.ok(r.returncode == 0 and f"cases={len(cases)} exported={len(cases)}" in r.stdout, "gen_previews wrote every case",
         r.stdout + r.stderr)
    lines = [x for x in open(out, encoding="utf-8").read().split("\n") if x] if os.path.exists(out) else []

got = {}
for line in lines:
    tr = Trace.from_json(line)
    got[tr.info.tags.get("mlflow.traceName")] = (tr.info.request_preview, tr.info.response_preview)



def mlflow_preview(txt, role):
    """MLflow's preview of the stored JSON text, or None where MLflow has
    none: a text part that is not a string makes it fail (TypeError) or
    return that value, and the server then leaves the preview unset; we
    fall back to the text there, as for any value without chat content."""
    try:
        p = _get_truncated_preview(txt.strip(" \t\n\r"), role=role)
    except TypeError:
        return None
    return p if isinstance(p, str) else None


bad, compared = [], 0
for i, (a, b) in enumerate(cases):
    for k, (txt, role) in enumerate(((a, "user"), (b, "assistant"))):
        want = mlflow_preview(txt, role)
        if want is None:
            continue
        compared += 1
        g = got.get(f"p{i}")
        if g is None or g[k] != want:
            bad.append((i, role, txt[:200], g and g[k], want))
t.ok(not bad and compared > 700, f"previews of {compared} values are MLflow's", repr(bad[:3]))
chat_found = sum(1 for i, (a, b) in enumerate(cases) for k, txt in enumerate((a, b))
                 if got.get(f"p{i}") and got[f"p{i}"][k] != txt.strip(" \t\n\r")[:1000])
t.ok(chat_found > 200, f"{chat_found} of them are a message's text (not the value's)")
t.done()
