"""Throughput to a real MLflow server, beside MLflow's Python SDK, in one run.

For each backend, one `mlflow server`: sqlite with 1 worker (with several,
SQLite's single writer makes the server stall for tens of seconds and
answer some writes with errors), PostgreSQL with MLflow's default 4; then,
on that server, in this order: libmltrace from one
process, the Python SDK from one process, libmltrace from 8 processes, the
Python SDK from 8 processes.  Every run logs the same GenAI traces (root + 4
children, inputs, outputs and attributes of tests/bench/bench_delivery) into
its own experiment; the time runs from the start of the processes until the
last one has delivered everything (C: mlt_flush(); Python:
mlflow.flush_trace_async_logging()).  Then every trace is read back with
MLflow's client and counted complete only with its 5 spans, state OK, trace
name, schema version and previews.

Prints `name value unit` lines: traces/s delivered complete, the ratio C /
Python, and CPU milliseconds per trace (client processes; server processes,
the database included) -- the CPU figures do not depend on what else the
machine runs, the wall-clock ones do.

Usage (from the build directory, with the test venv):
    tests/.venv/bin/python tests/bench/bench_mlflow.py [--backend sqlite|postgresql|both]
        [--traces N] [--procs P] [--per-proc M]
PostgreSQL needs Debian's server binaries (apt-get install postgresql) and
psycopg2 in the venv (tests/venv.sh: mlt_venv_pg).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

from mltest import BUILD, TMP, Server, cleanup, clean_env  # noqa: E402

BENCH = os.path.join(BUILD, "tests", "bench", "bench_delivery")
PYEMIT = os.path.join(HERE, "pysdk_emit.py")
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root_pids):
    """CPU seconds of processes whose process group is one of root_pids."""
    tot = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) in root_pids:  # pgrp
                tot += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return tot / TICK


def complete_count(client, eid, expect):
    """Traces of the experiment that are complete (5 spans, TraceInfo)."""
    good, seen, token = 0, 0, None
    while True:
        try:
            page = client.search_traces(locations=[eid], max_results=500, page_token=token)
        except Exception as e:  # noqa: BLE001
            print(f"# search_traces failed: {str(e)[:200]}", flush=True)
            break
        for tr in page:
            seen += 1
            info = tr.info
            if (len(tr.data.spans) == 5 and str(info.state).split(".")[-1] == "OK"
                    and info.tags.get("mlflow.traceName") == "rag.pipeline"
                    and info.trace_metadata.get("mlflow.trace_schema.version") == "3"
                    and info.request_preview and info.response_preview):
                good += 1
        token = page.token
        if not token:
            break
    return good, seen


def run(server, client, label, who, procs, per_proc, server_pgids):
    eid = client.create_experiment(f"{label}-{who}-{procs}p-{time.time_ns()}")
    env = clean_env({"MLFLOW_TRACKING_URI": server.url, "MLFLOW_EXPERIMENT_ID": eid,
                     "MLFLOW_DISABLE_TELEMETRY": "true", "MLTRACE_LOG_LEVEL": "error"})
    cmd = [BENCH, "--env", str(per_proc)] if who == "c" else [sys.executable, PYEMIT, str(per_proc)]
    s0 = tree_cpu(server_pgids)
    r0 = os.times()
    t0 = time.time()
    env["MLTRACE_LOG_LEVEL"] = "warn"
    ps = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(procs)]
    outs = [p.communicate() for p in ps]
    wall = time.time() - t0
    r1 = os.times()
    s1 = tree_cpu(server_pgids)
    client_cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    n = procs * per_proc
    good, seen = complete_count(client, eid, n)
    bad = [o[1][-300:] for o, p in zip(outs, ps) if p.returncode != 0]
    if bad:
        print(f"# {label} {who}: a process failed: {bad[0]}", flush=True)
    if who == "c":
        for o in outs:
            for line in o[1].splitlines()[:3]:
                print(f"# {label} c: {line[:300]}", flush=True)
    name = f"mlflow_{label}_{'mltrace' if who == 'c' else 'pysdk'}_{procs}proc"
    print(f"{name}_traces_per_sec {good / wall:.1f} traces/s", flush=True)
    print(f"{name}_complete {good}/{n} traces", flush=True)
    print(f"{name}_client_cpu_ms_per_trace {client_cpu * 1000 / n:.2f} ms", flush=True)
    print(f"{name}_server_cpu_ms_per_trace {(s1 - s0) * 1000 / n:.2f} ms", flush=True)
    return good / wall


def bench_backend(label, backend_uri, args, extra_pgids=(), workers=4):
    from mlflow import MlflowClient

    import mlflow

    server = Server(f"bench-{label}", backend=backend_uri, workers=workers)
    if not server.start():
        print(f"# mlflow server ({label}) did not start: {server.log_tail(800)}")
        return
    mlflow.set_tracking_uri(server.url)  # traces whose spans are artifacts resolve against it
    client = MlflowClient(server.url)
    pgids = {server.proc.pid, *extra_pgids}
    # Warm the server up (its workers import and compile lazily): not measured.
    eid = client.create_experiment(f"warmup-{time.time_ns()}")
    env = clean_env({"MLFLOW_TRACKING_URI": server.url, "MLFLOW_EXPERIMENT_ID": eid, "MLTRACE_LOG_LEVEL": "error"})
    for cmd in ([BENCH, "--env", "100"], [sys.executable, PYEMIT, "20"]):
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c1 = run(server, client, label, "c", 1, args.traces, pgids)
        p1 = run(server, client, label, "py", 1, args.traces, pgids)
        c8 = run(server, client, label, "c", args.procs, args.per_proc, pgids)
        p8 = run(server, client, label, "py", args.procs, args.per_proc, pgids)
        print(f"mlflow_{label}_ratio_1proc {c1 / p1 if p1 else 0:.2f} x", flush=True)
        print(f"mlflow_{label}_ratio_{args.procs}proc {c8 / p8 if p8 else 0:.2f} x", flush=True)
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="both", choices=("sqlite", "postgresql", "both"))
    ap.add_argument("--traces", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--per-proc", type=int, default=250)
    args = ap.parse_args()

    print(f"# machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        if args.backend in ("sqlite", "both"):
            bench_backend("sqlite", f"sqlite:///{TMP}/bench.db", args, workers=1)
        if args.backend in ("postgresql", "both"):
            from pg import Postgres

            pg = Postgres()
            try:
                if not pg.start():
                    print("# PostgreSQL did not start; skipped")
                else:
                    bench_backend("postgresql", pg.create_db("mlflow_bench"), args, extra_pgids=(pg.proc.pid,))
            finally:
                pg.stop()
    finally:
        cleanup()
    print(f"# load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
