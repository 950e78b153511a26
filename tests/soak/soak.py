"""`make soak`: many processes -> one MLflow server on PostgreSQL, with the
server killed (SIGKILL) and restarted in the middle.  Not part of `make test`.

Starts a throwaway PostgreSQL (Debian's package, initdb into a temporary
directory, a free port on 127.0.0.1), `mlflow server --backend-store-uri
postgresql+psycopg2://... --workers N`, then 8 processes (tests/mlflow/emit
richrun) each logging 500 traces that carry every TraceInfo field (tags,
metadata, client_request_id, previews, token usage), one every few ms.  A
third of the way in, the MLflow server is killed with SIGKILL; it is
restarted on the same port after longer than the processes' retry budget,
so what they cannot deliver meanwhile goes to their spools.  Each process
waits for its spool to drain, then shuts down; a last process started on
the same spool directory delivers anything left (as the next start of an
application would).  Then every trace is read back with MLflow's client.

Prints: traces expected, complete in the server (spans and TraceInfo),
counted exported / partial / failed / dropped / spooled / replayed, and the
drain time (server back -> everything delivered).  Exit status 1 when a
trace is missing or incomplete, or the counters do not add up.

Options (environment): SOAK_PROCS (8), SOAK_TRACES (500 per process),
SOAK_INTERVAL_MS (40), SOAK_DOWN_S (20, time the server stays down),
SOAK_BUDGET_S (8, the processes' retry budget), SOAK_WORKERS (4).
"""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

from delivery import EMIT, classify  # noqa: E402
from mltest import TMP, Server, clean_env, cleanup  # noqa: E402
from pg import Postgres  # noqa: E402

PROCS = int(os.environ.get("SOAK_PROCS", 8))
TRACES = int(os.environ.get("SOAK_TRACES", 500))
INTERVAL = int(os.environ.get("SOAK_INTERVAL_MS", 40))
DOWN = float(os.environ.get("SOAK_DOWN_S", 20))
BUDGET = float(os.environ.get("SOAK_BUDGET_S", 8))
WORKERS = int(os.environ.get("SOAK_WORKERS", 4))


def say(name, value, unit=""):
    print(f"{name} {value}{(' ' + unit) if unit else ''}", flush=True)


def main():
    from mlflow import MlflowClient

    pg = Postgres()
    if not pg.start():
        print("soak: PostgreSQL did not start (apt-get install postgresql?)")
        return 1
    status = 1
    try:
        uri = pg.create_db("mlflow_soak")
        srv = Server("soak", backend=uri, workers=WORKERS)
        t0 = time.time()
        if not srv.start(wait=True):
            print("soak: mlflow server did not start:", srv.log_tail())
            return 1
        say("soak_server_start_s", f"{time.time() - t0:.1f}", "s")
        client = MlflowClient(srv.url)
        eid = client.create_experiment("soak")
        spool = os.path.join(TMP, "soak-spool")
        env = clean_env({"MLFLOW_TRACKING_URI": srv.url, "MLFLOW_EXPERIMENT_ID": eid, "MLTRACE_SPOOL_DIR": spool,
                         "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": str(BUDGET), "EMIT_SHUTDOWN_MS": "60000",
                         "MLTRACE_LOG_LEVEL": "error"})
        produce_s = TRACES * INTERVAL / 1000.0
        wait_s = int(DOWN + 10 * produce_s + 600)
        start = time.time()
        ps = [subprocess.Popen([EMIT, "richrun", str(TRACES), str(INTERVAL), str(wait_s)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(PROCS)]
        time.sleep(max(produce_s / 3, 1))
        srv.stop(signal.SIGKILL)
        killed_at = time.time() - start
        time.sleep(DOWN)
        if not srv.start(wait=True):
            print("soak: mlflow server did not restart:", srv.log_tail())
            return 1
        back = time.time()
        say("soak_server_killed_at_s", f"{killed_at:.1f}", "s")
        say("soak_server_down_s", f"{back - start - killed_at:.1f}", "s")
        results = []
        for p in ps:
            out, err = p.communicate()
            try:
                results.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                results.append({"ids": [], "stats": {}, "error": err[-500:]})
                print("soak: a process failed:", err[-500:], flush=True)
        # A later start on the same spool delivers what is left.
        heir = subprocess.run([EMIT, "richrun", "0", "0", "600"], env=env, capture_output=True, text=True)
        try:
            heir_st = json.loads(heir.stdout.strip().splitlines()[-1]).get("stats", {})
        except (ValueError, IndexError):
            heir_st = {}
        drain = time.time() - back
        ids = [i for r in results for i in r.get("ids", [])]
        tot = {}
        for r in results:
            for k, v in r.get("stats", {}).items():
                tot[k] = tot.get(k, 0) + v
        kinds = {}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as ex:
            for c in ex.map(lambda tid: classify(client, tid), ids):
                kinds[c] = kinds.get(c, 0) + 1
        expected = PROCS * TRACES
        say("soak_traces_expected", expected)
        say("soak_traces_made", len(ids))
        say("soak_traces_complete_in_server", kinds.get("complete", 0))
        for k, v in sorted(kinds.items()):
            if k != "complete":
                say("soak_traces_" + k.split(":")[0].replace(" ", "_"), v)
        for k in ("exported", "partial", "failed", "dropped", "spooled", "replayed"):
            say(f"soak_counted_{k}", tot.get(f"traces_{k}", 0))
        say("soak_replayed_by_a_later_start", heir_st.get("traces_replayed", 0))
        say("soak_export_retries", tot.get("export_retries", 0))
        say("soak_drain_s", f"{drain:.1f}", "s")
        part = sum(tot.get(f"traces_{k}", 0) for k in ("exported", "partial", "failed", "dropped", "spooled",
                                                        "pending"))
        ok = (kinds.get("complete", 0) == expected and len(ids) == expected and part == tot.get("traces_finished"))
        say("soak_result", "PASS" if ok else "FAIL")
        status = 0 if ok else 1
    finally:
        cleanup()
        pg.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
