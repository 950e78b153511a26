"""A throwaway PostgreSQL for the scale tests (`make soak`, the MLflow
bench): Debian's server binaries, initdb into a temporary directory, one
`postgres` process on a free port on 127.0.0.1, stopped at the end.

Debian: `apt-get install postgresql` (the binaries go to
/usr/lib/postgresql/<version>/bin; the cluster the package may start is not
used).  PostgreSQL refuses to run as root: when we are root, the server runs
as the `postgres` user the package creates.  MLflow reaches it through
psycopg2 (`psycopg2-binary`, pinned in tests/venv.sh, installed into the
test venv by `mlt_venv_pg`).
"""
import glob
import os
import shutil
import subprocess
import tempfile
import time

from mltest import free_port


def pg_bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class Postgres:
    def __init__(self):
        self.bindir = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="mlt-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.proc = None
        self.as_user = "postgres" if os.geteuid() == 0 else None

    def _cmd(self, args):
        if self.as_user:
            return ["runuser", "-u", self.as_user, "--"] + args
        return args

    def start(self):
        if not self.bindir:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        if self.as_user:
            shutil.chown(self.dir, self.as_user)
        log = open(os.path.join(self.dir, "initdb.log"), "w")
        subprocess.run(self._cmd([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                                  "--auth=trust", "-E", "UTF8"]), stdout=log, stderr=log, check=True)
        conf = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}", "-c",
                f"unix_socket_directories={self.dir}", "-c", "max_connections=200", "-c", "fsync=on"]
        self.log = open(os.path.join(self.dir, "postgres.log"), "w")
        self.proc = subprocess.Popen(self._cmd([os.path.join(self.bindir, "postgres"), "-D", self.data] + conf),
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        end = time.time() + 60
        while time.time() < end:
            r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        return False

    def create_db(self, name):
        subprocess.run([os.path.join(self.bindir, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        "postgres", name], check=True, capture_output=True)
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def pids(self):
        """The server's processes (its backends are children of the postmaster)."""
        if not self.proc:
            return []
        out = [self.proc.pid]
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if os.getpgid(int(p)) == self.proc.pid:
                        out.append(int(p))
                except OSError:
                    pass
        return sorted(set(out))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                try:
                    os.killpg(self.proc.pid, 9)
                except Exception:  # noqa: BLE001
                    pass
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
