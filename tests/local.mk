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
