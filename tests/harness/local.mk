# tests/harness/: what the tests share (see tests/harness/README): the TAP
# runner, loopback servers and clients, child processes, JSONL and
# in-memory trace readers in C (header-only), and the Python side (TAP,
# MLflow server and emitter fixtures, fault proxy, JSONL readers,
# PostgreSQL).  Test programs get -I$(top_srcdir)/tests/harness through
# TEST_CFLAGS; Python tests get it on PYTHONPATH (tests/run-python.sh).
noinst_HEADERS += tests/harness/tap.h tests/harness/testutil.h tests/harness/traces.h tests/harness/jsonl.h \
	tests/harness/buf.h tests/harness/net.h tests/harness/proc.h tests/harness/evclient.h \
	tests/harness/numlocale.h
EXTRA_DIST += tests/harness/README tests/harness/tap.sh tests/harness/tap.py tests/harness/mltest.py tests/harness/delivery.py \
	tests/harness/jsonl_store.py tests/harness/pg.py
