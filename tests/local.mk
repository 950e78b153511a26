# tests/: unit and integration tests (TAP), benchmarks.
TEST_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) -I$(top_srcdir)/tests/harness -I$(top_srcdir)/lib
TEST_LDADD = lib/libmltrace.la $(CJSON_LIBS) $(PTHREAD_LIBS)
include tests/harness/local.mk

check_PROGRAMS += tests/unit/test_core
tests_unit_test_core_SOURCES = tests/unit/test_core.c
tests_unit_test_core_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_core_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_core
# The hot path's fast paths against the general paths (issue 10).
check_PROGRAMS += tests/unit/test_hotpath
tests_unit_test_hotpath_SOURCES = tests/unit/test_hotpath.c
tests_unit_test_hotpath_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_hotpath_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_hotpath
# Streamed chunks stored delta-encoded export as if stored whole (issue 14).
check_PROGRAMS += tests/unit/test_chunks
tests_unit_test_chunks_SOURCES = tests/unit/test_chunks.c
tests_unit_test_chunks_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_chunks_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_chunks
# The export thread's JSON routines against reference versions (internal:
# built from the library's sources).
check_PROGRAMS += tests/unit/test_json
tests_unit_test_json_SOURCES = tests/unit/test_json.c lib/util/json.c lib/util/util.c
tests_unit_test_json_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/lib
tests_unit_test_json_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_json_LDADD = $(CJSON_LIBS) $(PTHREAD_LIBS) -lm
TESTS += tests/unit/test_json

# Worker queues under overload: rejections counted and logged, waiting
# submitters, teardown.
check_PROGRAMS += tests/unit/test_thread
tests_unit_test_thread_SOURCES = tests/unit/test_thread.c
tests_unit_test_thread_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_thread_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_thread

check_PROGRAMS += tests/unit/test_delivery
tests_unit_test_delivery_SOURCES = tests/unit/test_delivery.c
tests_unit_test_delivery_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_delivery_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_delivery

EXTRA_DIST += tests/summary.sh tests/run-python.sh tests/sanitize.sh

# Memcheck of the core and SSE tests (skipped without valgrind).
TESTS += tests/valgrind.sh
EXTRA_DIST += tests/valgrind.sh

# Benchmarks: built by `make check`, run by `make bench` (figures, not gates).
check_PROGRAMS += tests/bench/bench_core
tests_bench_bench_core_SOURCES = tests/bench/bench_core.c
tests_bench_bench_core_CFLAGS = $(TEST_CFLAGS)
tests_bench_bench_core_LDADD = $(TEST_LDADD)

# Delivery figures: queue bytes per trace, 100k-trace burst with defaults.
check_PROGRAMS += tests/bench/bench_delivery
tests_bench_bench_delivery_SOURCES = tests/bench/bench_delivery.c
tests_bench_bench_delivery_CFLAGS = $(TEST_CFLAGS)
tests_bench_bench_delivery_LDADD = $(TEST_LDADD)

# The mltrace CLI: list/show on recorded and hand-made stores.
TESTS += tests/cli/test_cli.sh
EXTRA_DIST += tests/cli/test_cli.sh tests/data/cli tests/venv.sh

# Round trip: the JSONL store loaded by MLflow's Trace.from_json (pinned
# MLflow in a venv created once in the build tree).
check_PROGRAMS += tests/roundtrip/gen_traces
tests_roundtrip_gen_traces_SOURCES = tests/roundtrip/gen_traces.c
tests_roundtrip_gen_traces_CFLAGS = $(TEST_CFLAGS)
tests_roundtrip_gen_traces_LDADD = $(TEST_LDADD)
TESTS += tests/roundtrip/test_jsonl.py
EXTRA_DIST += tests/roundtrip/test_jsonl.py
check_PROGRAMS += tests/roundtrip/gen_previews
tests_roundtrip_gen_previews_SOURCES = tests/roundtrip/gen_previews.c
tests_roundtrip_gen_previews_CFLAGS = $(TEST_CFLAGS)
tests_roundtrip_gen_previews_LDADD = $(TEST_LDADD)
TESTS += tests/roundtrip/test_previews.py
EXTRA_DIST += tests/roundtrip/test_previews.py

# Export to a real MLflow tracking server (started and stopped by the test).
check_PROGRAMS += tests/mlflow/emit
tests_mlflow_emit_SOURCES = tests/mlflow/emit.c
tests_mlflow_emit_CFLAGS = $(TEST_CFLAGS)
tests_mlflow_emit_LDADD = $(TEST_LDADD)
TESTS += tests/mlflow/test_server.py tests/mlflow/test_faults.py
EXTRA_DIST += tests/mlflow/test_server.py tests/mlflow/test_faults.py

check_PROGRAMS += tests/bench/otlp-sink
tests_bench_otlp_sink_SOURCES = tests/bench/otlp-sink.c
tests_bench_otlp_sink_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_bench_otlp_sink_LDADD = $(LIBEVENT_LIBS)
EXTRA_DIST += tests/bench/bench_export.sh tests/bench/bench_callgrind.sh tests/bench/mlflow_bytes.py \
	tests/bench/bench_peers.sh tests/bench/peer_otel.js tests/bench/peer_otel.go

include tests/parity/local.mk

# Public headers documented; exported symbols = declared symbols.
TESTS += tests/check-headers.sh
EXTRA_DIST += tests/check-headers.sh

# The library's layers include downward only (ARCHITECTURE.md).
TESTS += tests/check-layers.sh
EXTRA_DIST += tests/check-layers.sh

# Files the test scripts make outside automake's knowledge.  `make clean`
# drops logs and the fuzz binary; `make distclean` also drops the fuzz corpus
# (it grows across runs on purpose) and the MLflow venv (slow to rebuild).
clean-local: mlt-clean-tests
mlt-clean-tests:
	-rm -f tests/*/*.valgrind.log tests/fuzz/*.log tests/fuzz/fuzz_sse
	-rm -rf tests/fuzz/seeds
distclean-local: mlt-distclean-tests
mlt-distclean-tests:
	-rm -rf tests/fuzz/corpus tests/fuzz/artifacts tests/.venv tests/.venv.lock
.PHONY: mlt-clean-tests mlt-distclean-tests

# `make soak` (not part of `make test`): 8 processes x 500 traces to an MLflow
# server on PostgreSQL, the server killed and restarted in the middle.
# `make bench-mlflow`: traces/s to a real MLflow server (sqlite, PostgreSQL)
# beside MLflow's Python SDK.  Both need Debian's PostgreSQL server
# (installed here with apt-get when missing and run as root) and psycopg2 in
# the test venv (tests/venv.sh: mlt_venv_pg).
MLT_PG_READY = { ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || command -v initdb > /dev/null || \
  { test "$$(id -u)" = 0 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql > /dev/null; } || \
  { echo "PostgreSQL server binaries missing: apt-get install postgresql"; exit 1; }; }
soak: tests/mlflow/emit$(EXEEXT)
	@$(MLT_PG_READY); top_builddir='$(abs_top_builddir)'; export top_builddir; \
	. $(top_srcdir)/tests/venv.sh && mlt_venv_pg && \
	PYTHONPATH='$(abs_top_srcdir)/tests/harness' "$$MLT_VENV/bin/python" $(top_srcdir)/tests/soak/soak.py
bench-mlflow: tests/bench/bench_delivery$(EXEEXT)
	@$(MLT_PG_READY); top_builddir='$(abs_top_builddir)'; export top_builddir; \
	. $(top_srcdir)/tests/venv.sh && mlt_venv_pg && \
	PYTHONPATH='$(abs_top_srcdir)/tests/harness' "$$MLT_VENV/bin/python" $(top_srcdir)/tests/bench/bench_mlflow.py
.PHONY: soak bench-mlflow
EXTRA_DIST += tests/soak/soak.py tests/bench/bench_mlflow.py tests/bench/pysdk_emit.py
