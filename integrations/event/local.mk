# integrations/event: libmltrace_event (evhttp server instrumentation,
# callbacks, deferred callbacks, timers, cross-thread calls and bufferevent
# callbacks under a captured context), its tests, example and benchmark.
lib_LTLIBRARIES += integrations/event/libmltrace_event.la
integrations_event_libmltrace_event_la_SOURCES = \
  integrations/event/evhttp.c \
  integrations/event/evloop.c
integrations_event_libmltrace_event_la_CFLAGS = $(AM_CFLAGS) $(MLT_VISIBILITY_CFLAGS) $(CJSON_CFLAGS) $(LIBEVENT_CFLAGS)
integrations_event_libmltrace_event_la_LIBADD = lib/libmltrace.la $(CJSON_LIBS) $(LIBEVENT_LIBS)
integrations_event_libmltrace_event_la_LDFLAGS = -no-undefined \
  -version-info $(MLT_LT_CURRENT):$(MLT_LT_REVISION):$(MLT_LT_AGE) \
  -export-symbols-regex '^mlt_'
mltraceinclude_HEADERS += integrations/event/include/mltrace/event.h
pkgconfig_DATA += integrations/event/mltrace_event.pc

EVENT_TEST_CFLAGS = $(TEST_CFLAGS) $(LIBEVENT_CFLAGS)
EVENT_TEST_LDADD = integrations/event/libmltrace_event.la $(TEST_LDADD) $(LIBEVENT_LIBS)

# Callbacks, timers, cross-thread calls, bufferevents (loop-level tests).
check_PROGRAMS += tests/event/test_evloop
tests_event_test_evloop_SOURCES = tests/event/test_evloop.c
tests_event_test_evloop_CFLAGS = $(EVENT_TEST_CFLAGS)
tests_event_test_evloop_LDADD = $(EVENT_TEST_LDADD)
TESTS += tests/event/test_evloop

# evhttp over loopback: spans, traceparent, streaming, disconnects, load.
check_PROGRAMS += tests/event/test_evhttp
tests_event_test_evhttp_SOURCES = tests/event/test_evhttp.c
tests_event_test_evhttp_CFLAGS = $(EVENT_TEST_CFLAGS)
tests_event_test_evhttp_LDADD = $(EVENT_TEST_LDADD)
TESTS += tests/event/test_evhttp

# The example server run end to end (it writes a file store).
check_PROGRAMS += tests/event/test_example
tests_event_test_example_SOURCES = tests/event/test_example.c
tests_event_test_example_CFLAGS = $(EVENT_TEST_CFLAGS)
tests_event_test_example_LDADD = $(EVENT_TEST_LDADD)
TESTS += tests/event/test_example

# The example server (fan-out to workers, gather on the loop, chunked reply).
check_PROGRAMS += examples/event-rag-server
examples_event_rag_server_SOURCES = examples/event-rag-server.c
examples_event_rag_server_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) $(LIBEVENT_CFLAGS)
examples_event_rag_server_LDADD = integrations/event/libmltrace_event.la lib/libmltrace.la $(CJSON_LIBS) $(LIBEVENT_LIBS)

# Benchmark: the example server with and without tracing, loopback client.
check_PROGRAMS += tests/bench/bench_event
tests_bench_bench_event_SOURCES = tests/bench/bench_event.c
tests_bench_bench_event_CFLAGS = $(EVENT_TEST_CFLAGS)
tests_bench_bench_event_LDADD = $(EVENT_TEST_LDADD)
