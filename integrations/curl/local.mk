# integrations/curl: libmltrace_curl (SSE parser, OpenAI stream aggregator,
# traced libcurl transfers, curl multi on a libevent loop).
lib_LTLIBRARIES += integrations/curl/libmltrace_curl.la
integrations_curl_libmltrace_curl_la_SOURCES = \
  integrations/curl/chat_stream.c \
  integrations/curl/sse.c
integrations_curl_libmltrace_curl_la_CFLAGS = $(AM_CFLAGS) $(MLT_VISIBILITY_CFLAGS) $(CJSON_CFLAGS) $(CURL_CFLAGS) $(LIBEVENT_CFLAGS)
integrations_curl_libmltrace_curl_la_LIBADD = lib/libmltrace.la $(CJSON_LIBS) $(CURL_LIBS) $(LIBEVENT_LIBS)
integrations_curl_libmltrace_curl_la_LDFLAGS = -no-undefined \
  -version-info $(MLT_LT_CURRENT):$(MLT_LT_REVISION):$(MLT_LT_AGE) \
  -export-symbols-regex '^mlt_'
mltraceinclude_HEADERS += integrations/curl/include/mltrace/sse.h
pkgconfig_DATA += integrations/curl/mltrace_curl.pc

CURL_TEST_CFLAGS = $(TEST_CFLAGS) $(CURL_CFLAGS) $(LIBEVENT_CFLAGS)
CURL_TEST_LDADD = integrations/curl/libmltrace_curl.la $(TEST_LDADD) $(CURL_LIBS) $(LIBEVENT_LIBS)

check_PROGRAMS += tests/unit/test_sse
tests_unit_test_sse_SOURCES = tests/unit/test_sse.c
tests_unit_test_sse_CFLAGS = $(CURL_TEST_CFLAGS)
tests_unit_test_sse_LDADD = $(CURL_TEST_LDADD)
TESTS += tests/unit/test_sse

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
