# tests/proxy: the streaming chat proxy example and its end-to-end test.

# The example: an evhttp server relaying an OpenAI-compatible stream fetched
# with curl multi on the same loop (libmltrace_event + libmltrace_curl).
check_PROGRAMS += examples/chat-proxy
examples_chat_proxy_SOURCES = examples/chat-proxy.c
examples_chat_proxy_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) $(CURL_CFLAGS) $(LIBEVENT_CFLAGS)
examples_chat_proxy_LDADD = integrations/event/libmltrace_event.la integrations/curl/libmltrace_curl.la \
  lib/libmltrace.la $(CJSON_LIBS) $(CURL_LIBS) $(LIBEVENT_LIBS)
EXTRA_DIST += examples/chat-proxy.md

# End to end: examples/fake-openai upstream, examples/chat-proxy in between
# (each started by the test on port 0, the proxy writing a JSONL store),
# libevent clients in the test: 50 concurrent streams, upstream and client
# disconnects, upstream HTTP errors, shutdown with streams in flight.
check_PROGRAMS += tests/proxy/test_proxy
tests_proxy_test_proxy_SOURCES = tests/proxy/test_proxy.c
tests_proxy_test_proxy_CFLAGS = $(TEST_CFLAGS) $(LIBEVENT_CFLAGS)
tests_proxy_test_proxy_LDADD = $(CJSON_LIBS) $(LIBEVENT_LIBS)
TESTS += tests/proxy/test_proxy

# The official openai Python client (pinned in tests/venv.sh) through the
# gateway, over real HTTP: both APIs, streamed and not, n=2, tools, usage,
# upstream errors and cuts, framing quirks, fakellm (PyPI) as a second
# upstream, and MLflow's own autolog as the reference for the Responses span.
TESTS += tests/proxy/test_openai_client.py
EXTRA_DIST += tests/proxy/test_openai_client.py
