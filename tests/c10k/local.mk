# tests/c10k: the C10k shape end to end.  examples/c10k-server (evhttp,
# fan-out to worker threads, gather on the loop, a streamed LLM call over
# curl multi on the same loop) behind examples/fake-openai, driven by
# tests/c10k/c10k-load (a libevent HTTP/1.1 load generator in C) and checked
# trace by trace by tests/c10k/c10k-check.  tests/c10k/run-c10k.sh runs
# them: `make test` at 1,000 connections (fewer under the sanitizers,
# C10K_CONNS), `make bench` at 10,000.
check_PROGRAMS += examples/c10k-server
examples_c10k_server_SOURCES = examples/c10k-server.c
examples_c10k_server_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) $(CURL_CFLAGS) $(LIBEVENT_CFLAGS)
examples_c10k_server_LDADD = integrations/event/libmltrace_event.la integrations/curl/libmltrace_curl.la \
  lib/libmltrace.la $(CJSON_LIBS) $(CURL_LIBS) $(LIBEVENT_LIBS)

check_PROGRAMS += tests/c10k/c10k-load
tests_c10k_c10k_load_SOURCES = tests/c10k/c10k-load.c
tests_c10k_c10k_load_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_c10k_c10k_load_LDADD = $(LIBEVENT_LIBS)

check_PROGRAMS += tests/c10k/c10k-check
tests_c10k_c10k_check_SOURCES = tests/c10k/c10k-check.c
tests_c10k_c10k_check_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) -I$(top_srcdir)/tests/harness
tests_c10k_c10k_check_LDADD = $(CJSON_LIBS)

TESTS += tests/c10k/test_c10k.sh
EXTRA_DIST += tests/c10k/test_c10k.sh tests/c10k/run-c10k.sh
