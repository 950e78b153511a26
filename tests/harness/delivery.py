"""Delivery under faults (tests/mlflow/test_faults.py, `make soak`): the C
emitter tests/mlflow/emit in session mode, a fault-injecting HTTP proxy in
front of a real MLflow server, the trace-by-trace check of what the server
holds, and readers of the durable spool's files.
"""
import http.client
import http.server
import json
import os
import signal
import subprocess
import threading
import time

from mltest import clean_env, program

EMIT = program("tests", "mlflow", "emit")


class Session:
    """tests/mlflow/emit in session mode: commands in, one JSON line out."""

    def __init__(self, env):
        self.p = subprocess.Popen([EMIT, "session"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=clean_env(env), start_new_session=True)
        self.stderr = ""

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        try:
            return json.loads(out)
        except ValueError:
            return {"error": out}

    def rich(self, n):
        return self.cmd(f"rich {n}").get("ids", [])

    def flush(self, ms):
        return self.cmd(f"flush {ms}")

    def wait_replayed(self, n, timeout=120):
        """Flush until `n` spooled traces were delivered (the spool delivers
        in the background once the server answers again)."""
        end = time.time() + timeout
        r = {}
        while time.time() < end:
            r = self.flush(1000)
            if r.get("stats", {}).get("traces_replayed", 0) >= n:
                break
            time.sleep(0.5)
        return r

    def exit(self, ms):
        r = self.cmd(f"exit {ms}")
        try:
            _, err = self.p.communicate(timeout=60)
        except Exception:  # noqa: BLE001
            err = ""
        self.stderr = err or ""
        r["stderr"] = self.stderr
        return r

    def kill9(self):
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()


class FaultProxy:
    """An HTTP proxy in front of a real server.  `rule(kind, n)` decides for
    the n-th request (from 1) of a kind -- "otlp" (POST /v1/traces), "start"
    (POST /api/3.0/mlflow/traces), "other" -- what happens: "forward";
    ("late", s): forward, then answer s seconds late (the request lands, the
    client times out); ("serial", s): forward one request at a time, each
    taking s seconds more (a server that queues: more requests at once only
    wait longer); ("status", code): answer code without forwarding;
    ("echo_auth", code): answer code with the request's Authorization header
    in the body.  `started` lists (monotonic time, requests in flight then)
    for each forwarded request, `spans` its [start, end] (end None while it
    runs); `injected` the time of the last injected status answer."""

    def most_at_once(self, lo, hi):
        """The most requests in flight at once among those started in (lo, hi):
        at each one's start, how many of them had started and not ended."""
        with self.lock:
            sel = [(s, e) for s, e in self.spans if lo < s < hi]
        return max((sum(1 for s2, e2 in sel if s2 <= s and (e2 is None or e2 > s)) for s, _ in sel), default=0)

    def __init__(self, upstream_port, rule):
        self.upstream_port, self.rule = upstream_port, rule
        self.counts = {}
        self.lock = threading.Lock()
        self.active, self.started, self.spans, self.injected = 0, [], [], None
        self.serial = threading.Lock()
        proxy = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                n_body = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(n_body) if n_body else b""
                kind = ("otlp" if self.path.startswith("/v1/traces") else
                        "start" if self.command == "POST" and self.path.rstrip("/") == "/api/3.0/mlflow/traces"
                        else "other")
                with proxy.lock:
                    proxy.counts[kind] = proxy.counts.get(kind, 0) + 1
                    n = proxy.counts[kind]
                action = proxy.rule(kind, n)
                if action == "drop":
                    self.close_connection = True
                    return
                if isinstance(action, tuple) and action[0] == "status":
                    self._reply(action[1], b'{"error_code": "INTERNAL_ERROR", "message": "injected"}',
                                "application/json")
                    with proxy.lock:
                        proxy.injected = time.monotonic()
                    return
                if isinstance(action, tuple) and action[0] == "echo_auth":
                    msg = json.dumps({"error_code": "BAD_REQUEST",
                                      "message": "rejected; request headers: Authorization: "
                                                 + str(self.headers.get("Authorization"))})
                    return self._reply(action[1], msg.encode(), "application/json")
                with proxy.lock:
                    proxy.active += 1
                    now = time.monotonic()
                    proxy.started.append((now, proxy.active))
                    span = [now, None]
                    proxy.spans.append(span)
                try:
                    if isinstance(action, tuple) and action[0] == "serial":
                        with proxy.serial:
                            time.sleep(action[1])
                            self._forward("forward", body)
                    else:
                        self._forward(action, body)
                finally:
                    with proxy.lock:
                        proxy.active -= 1
                        span[1] = time.monotonic()

            def _forward(self, action, body):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=300)
                    hdrs = {k: v for k, v in self.headers.items()
                            if k.lower() not in ("host", "connection", "content-length")}
                    c.request(self.command, self.path, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                    status, ctype = r.status, r.getheader("Content-Type", "application/json")
                    c.close()
                except Exception:  # noqa: BLE001  (upstream down)
                    self.close_connection = True
                    return
                if isinstance(action, tuple) and action[0] == "late":
                    time.sleep(action[1])
                try:
                    self._reply(status, data, ctype)
                except OSError:
                    pass

            def _reply(self, status, data, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_PATCH = _handle  # noqa: N815

            def log_message(self, *a):
                pass

        class Srv(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client killed mid-request (that is the test)

        self.srv = Srv(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def classify(client, tid, n_spans=3):
    """What the server holds of one trace of `emit session` (rich):
    "complete" (spans and every TraceInfo field the Python SDK would store),
    "spans_only" (spans, but not the TraceInfo), "info_only" (the TraceInfo
    with its metadata, no spans), "absent", or a string saying what is
    wrong."""
    try:
        tr = client.get_trace(tid)
    except Exception:  # noqa: BLE001
        try:  # the TraceInfo alone?  (get_trace refuses a trace without spans)
            info = client._tracing_client.get_trace_info(tid)
        except Exception:  # noqa: BLE001
            return "absent"
        return "info_only" if info is not None and info.trace_metadata.get("app.version") else "absent"
    if tr is None:
        return "absent"
    spans = tr.data.spans
    if len(spans) != n_spans:
        return f"{len(spans)} spans, expected {n_spans}"
    info = tr.info
    md, tags = info.trace_metadata, info.tags
    usage = md.get("mlflow.trace.tokenUsage")
    if usage and json.loads(usage).get("total_tokens") != 5:
        return f"token usage counted twice or wrong: {usage}"
    if md.get("app.version") is None:
        if str(info.state).split(".")[-1] != "OK":
            return f"spans only, state {info.state}"
        return "spans_only"
    want = {"client_request_id": info.client_request_id and info.client_request_id.startswith("req-"),
            "tag suite": tags.get("suite") == "fault",
            "trace name": tags.get("mlflow.traceName") == "rich_root",
            "session": md.get("mlflow.trace.session") == "s-1",
            "user": md.get("mlflow.trace.user") == "u-1",
            "schema version": md.get("mlflow.trace_schema.version") == "3",
            "request preview": info.request_preview == '{"question": "What is MLflow?"}',
            "response preview": info.response_preview == '{"answer": "Hello"}',
            "state": str(info.state).split(".")[-1] == "OK",
            "token usage": usage is not None}
    bad = [k for k, ok in want.items() if not ok]
    return "complete" if not bad else "incomplete: " + ", ".join(bad)


def spool_records(path):
    """The records of one spool file: [(offset, length, traces)], the valid
    ones in order (the format of lib/spool.c)."""
    import struct
    import zlib
    b = open(path, "rb").read()
    out, off = [], 32
    while off + 12 <= len(b):
        magic, plen, crc = struct.unpack_from("<III", b, off)
        p = b[off + 12:off + 12 + plen]
        if magic != 0x4D4C5452 or len(p) != plen or zlib.crc32(p) != crc:
            break
        out.append((off, 12 + plen, struct.unpack_from("<I", p, 0)[0]))
        off += 12 + plen
    return out


def spool_files(d):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs if f.endswith(".spool"))


def spans_stored(client, tid):
    try:
        tr = client.get_trace(tid)
    except Exception:  # noqa: BLE001
        return 0
    return len(tr.data.spans) if tr else 0


def tally(client, ids):
    out = {}
    for tid in ids:
        c = classify(client, tid)
        out[c] = out.get(c, 0) + 1
    return out
