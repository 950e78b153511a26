"""Fixtures of the Python tests (tests/harness/README): where the build is,
free loopback ports, a temporary directory per test process, an environment
without the caller's exporter settings, the project's programs as child
processes (servers that print "listening on ADDR:PORT", the C emitters), a
loopback HTTP server on a thread, and a real `mlflow server` (pinned MLflow
from the test venv, sqlite store unless told otherwise, 127.0.0.1, free
port) started and stopped by the test, also when a check fails or the test
is killed with SIGTERM (`install_cleanup()`).
"""
import atexit
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BUILD = os.environ.get("top_builddir", ".")
MLFLOW_BIN = os.path.join(os.path.dirname(sys.executable), "mlflow")
TMP = tempfile.mkdtemp(prefix="mlt-test-")


def _remove_tmp():
    """At exit (after cleanup() stopped the servers): TMP goes when it is
    empty, or when this is a TAP test whose checks all passed; it stays (with
    the servers' logs) after a failed check, for a script that is not a TAP
    test, or when MLT_KEEP_TMP is set."""
    if not os.path.isdir(TMP):
        return
    from tap import Tap
    passed = bool(Tap.instances) and not any(t.failed for t in Tap.instances)
    if not os.listdir(TMP):
        os.rmdir(TMP)
    elif passed and not os.environ.get("MLT_KEEP_TMP"):
        shutil.rmtree(TMP, ignore_errors=True)


atexit.register(_remove_tmp)
servers = []   # every Server made (stopped by cleanup())
children = []  # every spawn()ed process (killed by cleanup())


def program(*rel):
    """The path of a built program: program("tests", "mlflow", "emit")."""
    return os.path.join(BUILD, *rel)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def clean_env(env=None, drop=("MLFLOW_", "OTEL_", "MLTRACE_"), spool=True, **extra):
    """os.environ without the variables starting with `drop` (the caller's
    exporter settings), plus `env` and `extra`.  With `spool`, a network
    exporter's spool goes under TMP, never to the user's own directory."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop))}
    if spool:
        e["MLTRACE_SPOOL_DIR"] = os.path.join(TMP, "spool")
    e.update(env or {})
    e.update(extra)
    return e


def last_json(stdout):
    """The last line of a program's stdout as JSON (the emitters' result), or
    {"error": stdout} when it is not JSON."""
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": stdout}


def run_json(argv, env, timeout=180):
    """Run a C emitter to the end: its last stdout line as a dict, plus
    "stderr" and "rc"."""
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    res = last_json(r.stdout)
    if "error" in res:
        res["error"] = r.stdout + r.stderr
    res["stderr"] = r.stderr
    res["rc"] = r.returncode
    return res


def spawn(argv, env=None, stderr=None):
    """Start a server that prints "listening on ADDR:PORT" on stdout;
    return (process, port).  Killed by cleanup() if still running."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
    children.append(p)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        raise RuntimeError(f"{argv[0]}: {line!r}")
    return p, int(line.strip().rsplit(":", 1)[1])


def serve_http(handler, threading_server=True):
    """A loopback HTTP server with `handler` (a BaseHTTPRequestHandler) on a
    daemon thread; returns (server, url).  server.shutdown() stops it."""
    cls = http.server.ThreadingHTTPServer if threading_server else http.server.HTTPServer
    srv = cls(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


class Server:
    """`mlflow server` on 127.0.0.1 (sqlite store in TMP unless `backend`
    says otherwise; its log in TMP/<name>.log)."""

    def __init__(self, name, backend=None, port=None, env=None, workers=1):
        self.name, self.port = name, port or free_port()
        self.backend = backend or f"sqlite:///{TMP}/{name}.db"
        self.env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", **(env or {}))
        self.proc = None
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        servers.append(self)

    def start(self, wait=True):
        """Start it; with `wait`, return whether it answered /health."""
        log = open(os.path.join(TMP, f"{self.name}.log"), "ab")
        art = os.path.join(TMP, f"{self.name}-artifacts")
        self.proc = subprocess.Popen(
            [MLFLOW_BIN, "server", "--backend-store-uri", self.backend, "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", str(self.workers), "--artifacts-destination", art],
            stdout=log, stderr=log, env=self.env, start_new_session=True)
        if wait:
            return self.wait()
        return True

    def wait(self, timeout=180):
        """Whether /health answers 200 within `timeout` s (False at once if
        the server exited)."""
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return True
            except Exception:  # noqa: BLE001
                time.sleep(0.3)
        return False

    def log_tail(self, n=2000):
        try:
            return open(os.path.join(TMP, f"{self.name}.log")).read()[-n:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        """Send `sig` to its process group and wait (SIGKILL after 15 s)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=15)
            except Exception:  # noqa: BLE001
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
                except Exception:  # noqa: BLE001
                    pass
        self.proc = None


def cleanup(*_):
    """Stop every Server and kill every spawn()ed child."""
    for s in servers:
        s.stop()
    for p in children:
        if p.poll() is None:
            p.kill()
            p.wait()


def install_cleanup():
    """cleanup() at exit and on SIGTERM (then exit 1)."""
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(1)))


def start_server(t, name="mlflow", check="mlflow server started", **kw):
    """A started Server and a passed check `check`, or that check failed
    (with the server's log) and the end of the test: a test against MLflow
    cannot go on without its server, and never skips for it."""
    srv = Server(name, **kw)
    if not srv.start():
        t.ok(False, check, srv.log_tail())
        t.done()
    t.ok(True, check)
    return srv
