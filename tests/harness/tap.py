"""tests/tap.py: minimal TAP output for the Python tests (read by automake's
tap-driver).  Plan at the end ("1..N"), one line per check."""
import sys


class Tap:
    instances = []  # every Tap of this process (mltest.py keeps TMP when one failed)

    def __init__(self):
        self.n = 0
        self.failed = 0
        Tap.instances.append(self)

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line)
        sys.stdout.flush()

    def ok(self, cond, name, diag=None):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {name}")
        else:
            self.failed += 1
            print(f"not ok {self.n} - {name}")
            if diag:
                self.diag(diag)
        sys.stdout.flush()
        return cond

    def equal(self, got, want, name):
        return self.ok(got == want, name, f"got:  {got!r}\nwant: {want!r}")

    def skip_all(self, why):
        print(f"1..0 # SKIP {why}")
        sys.exit(0)

    def done(self):
        print(f"1..{self.n}")
        sys.exit(1 if self.failed else 0)
