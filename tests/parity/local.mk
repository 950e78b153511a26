# tests/parity/: MLflow 3.17 parity (feedback, expectations, tags on finished
# traces, update_current_trace state/model_id), read back from a real MLflow
# server with MLflow's client and from the file store with Trace.from_json.
check_PROGRAMS += tests/parity/parity_emit
tests_parity_parity_emit_SOURCES = tests/parity/parity_emit.c
tests_parity_parity_emit_CFLAGS = $(TEST_CFLAGS)
tests_parity_parity_emit_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/unit/test_assess
tests_unit_test_assess_SOURCES = tests/unit/test_assess.c
tests_unit_test_assess_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_assess_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_assess

TESTS += tests/parity/test_parity.py
EXTRA_DIST += tests/parity/test_parity.py

# Part B: explicit times, links, description, log level, per-root sampling
# (in-memory store), and the scoped context across threads, the evhttp and
# curl integrations.
check_PROGRAMS += tests/unit/test_span_options
tests_unit_test_span_options_SOURCES = tests/unit/test_span_options.c
tests_unit_test_span_options_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_span_options_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_span_options

if HAVE_LIBEVENT
check_PROGRAMS += tests/parity/test_scope
tests_parity_test_scope_SOURCES = tests/parity/test_scope.c
tests_parity_test_scope_CFLAGS = $(CURL_TEST_CFLAGS)
tests_parity_test_scope_LDADD = integrations/event/libmltrace_event.la $(CURL_TEST_LDADD)
TESTS += tests/parity/test_scope
endif

# The README's async tour as a program (evhttp + work queue + streamed LLM
# call + feedback): built by make check, run by test_async_tour.py.
if HAVE_LIBEVENT
check_PROGRAMS += examples/async-tour
examples_async_tour_SOURCES = examples/async-tour.c
examples_async_tour_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) $(LIBEVENT_CFLAGS) $(CURL_CFLAGS)
examples_async_tour_LDADD = integrations/curl/libmltrace_curl.la integrations/event/libmltrace_event.la \
  lib/libmltrace.la $(CJSON_LIBS) $(LIBEVENT_LIBS) $(CURL_LIBS)
endif
TESTS += tests/parity/test_async_tour.py
EXTRA_DIST += tests/parity/test_async_tour.py
