# integrations/curl: libmltrace_curl (SSE parser, OpenAI stream aggregator,
# traced libcurl transfers, curl multi on a libevent loop).
lib_LTLIBRARIES += integrations/curl/libmltrace_curl.la
integrations_curl_libmltrace_curl_la_SOURCES = \
  integrations/curl/call.c \
  integrations/curl/chat_stream.c \
  integrations/curl/curl-internal.h \
  integrations/curl/loop.c \
  integrations/curl/sse.c
integrations_curl_libmltrace_curl_la_CFLAGS = $(AM_CFLAGS) $(MLT_VISIBILITY_CFLAGS) $(CJSON_CFLAGS) $(CURL_CFLAGS) $(LIBEVENT_CFLAGS)
integrations_curl_libmltrace_curl_la_LIBADD = lib/libmltrace.la $(CJSON_LIBS) $(CURL_LIBS) $(LIBEVENT_LIBS)
integrations_curl_libmltrace_curl_la_LDFLAGS = -no-undefined \
  -version-info $(MLT_LT_CURRENT):$(MLT_LT_REVISION):$(MLT_LT_AGE) \
  -export-symbols-regex '^mlt_'
mltraceinclude_HEADERS += integrations/curl/include/mltrace/sse.h integrations/curl/include/mltrace/curl.h
pkgconfig_DATA += integrations/curl/mltrace_curl.pc

CURL_TEST_CFLAGS = $(TEST_CFLAGS) $(CURL_CFLAGS) $(LIBEVENT_CFLAGS)
CURL_TEST_LDADD = integrations/curl/libmltrace_curl.la $(TEST_LDADD) $(CURL_LIBS) $(LIBEVENT_LIBS)

check_PROGRAMS += tests/unit/test_sse
tests_unit_test_sse_SOURCES = tests/unit/test_sse.c
tests_unit_test_sse_CFLAGS = $(CURL_TEST_CFLAGS)
tests_unit_test_sse_LDADD = $(CURL_TEST_LDADD)
TESTS += tests/unit/test_sse

# The aggregator's chunk scanner against its cJSON path (built from the
# sources: the switch between them is internal).
check_PROGRAMS += tests/unit/test_chat_scan
tests_unit_test_chat_scan_SOURCES = tests/unit/test_chat_scan.c integrations/curl/chat_stream.c integrations/curl/sse.c
tests_unit_test_chat_scan_CFLAGS = $(CURL_TEST_CFLAGS) -I$(top_srcdir)/integrations/curl
tests_unit_test_chat_scan_LDADD = $(CJSON_LIBS)
TESTS += tests/unit/test_chat_scan

check_PROGRAMS += tests/bench/bench_sse
tests_bench_bench_sse_SOURCES = tests/bench/bench_sse.c
tests_bench_bench_sse_CFLAGS = $(CURL_TEST_CFLAGS)
tests_bench_bench_sse_LDADD = $(CURL_TEST_LDADD)

EXTRA_DIST += tests/data/sse tests/fuzz/fuzz_sse.c

# The deterministic OpenAI-compatible server used by examples and tests.
check_PROGRAMS += examples/fake-openai
examples_fake_openai_SOURCES = examples/fake-openai.c
examples_fake_openai_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) $(LIBEVENT_CFLAGS)
examples_fake_openai_LDADD = $(CJSON_LIBS) $(LIBEVENT_LIBS)
EXTRA_DIST += examples/fake-openai.md

# Traced transfers end to end against examples/fake-openai (started by the
# test on port 0): easy, multi and libevent paths, faults, 50 concurrent
# streams on one loop.
check_PROGRAMS += tests/curl/test_curl
tests_curl_test_curl_SOURCES = tests/curl/test_curl.c
tests_curl_test_curl_CFLAGS = $(CURL_TEST_CFLAGS)
tests_curl_test_curl_LDADD = $(CURL_TEST_LDADD)
TESTS += tests/curl/test_curl
# The streaming tests again under valgrind memcheck.
TESTS += tests/curl/test_valgrind.sh
EXTRA_DIST += tests/curl/test_valgrind.sh

# The example: one streamed chat completion with curl_easy_perform(); the
# script runs it against fake-openai and checks the trace it writes.
check_PROGRAMS += examples/curl-chat
examples_curl_chat_SOURCES = examples/curl-chat.c
examples_curl_chat_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) $(CURL_CFLAGS)
examples_curl_chat_LDADD = integrations/curl/libmltrace_curl.la lib/libmltrace.la $(CJSON_LIBS) $(CURL_LIBS)
TESTS += tests/curl/test_example.sh
EXTRA_DIST += tests/curl/test_example.sh

# Benchmark: per-chunk cost of the traced write path against a plain one.
check_PROGRAMS += tests/bench/bench_curl
tests_bench_bench_curl_SOURCES = tests/bench/bench_curl.c
tests_bench_bench_curl_CFLAGS = $(CURL_TEST_CFLAGS)
tests_bench_bench_curl_LDADD = $(CURL_TEST_LDADD)

# Fuzzing the SSE parser and the aggregator with libFuzzer (clang): a bounded
# run in `make check` (FUZZ_SECONDS, default 20; skipped without clang and
# libFuzzer: CI installs clang and libclang-rt-14-dev), or a longer one with
# `make fuzz` (FUZZ_SECONDS, default 300).
TESTS += tests/fuzz/run-fuzz.sh
EXTRA_DIST += tests/fuzz/run-fuzz.sh
fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
	  $(SHELL) $(top_srcdir)/tests/fuzz/run-fuzz.sh
