# integrations/: libmltrace_event (libevent) and libmltrace_curl (libcurl),
# each its own library and .pc, built when libevent is found.  Each
# integration's fragment also lists its tests, examples and benchmarks.
EXTRA_DIST += integrations/event/mltrace_event.pc.in integrations/curl/mltrace_curl.pc.in
AM_CPPFLAGS += -I$(top_srcdir)/integrations/event/include -I$(top_srcdir)/integrations/curl/include

if HAVE_LIBEVENT
include integrations/event/local.mk
include integrations/curl/local.mk
include tests/proxy/local.mk
include tests/c10k/local.mk
endif
