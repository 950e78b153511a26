# tests/: unit and integration tests (TAP), benchmarks.
TEST_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) -I$(top_srcdir)/tests -I$(top_srcdir)/lib
TEST_LDADD = lib/libmltrace.la $(CJSON_LIBS) $(PTHREAD_LIBS)
noinst_HEADERS += tests/tap.h tests/testutil.h

check_PROGRAMS += tests/unit/test_core
tests_unit_test_core_SOURCES = tests/unit/test_core.c
tests_unit_test_core_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_core_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_core

EXTRA_DIST += tests/summary.sh tests/run-python.sh

# Benchmarks: built by `make check`, run by `make bench` (figures, not gates).
check_PROGRAMS += tests/bench/bench_core
tests_bench_bench_core_SOURCES = tests/bench/bench_core.c
tests_bench_bench_core_CFLAGS = $(TEST_CFLAGS)
tests_bench_bench_core_LDADD = $(TEST_LDADD)

# The mltrace CLI: list/show on recorded and hand-made stores.
TESTS += tests/cli/test_cli.sh
EXTRA_DIST += tests/cli/test_cli.sh tests/data/cli tests/venv.sh
