# integrations/: libmltrace_event (libevent) and libmltrace_curl (libcurl).
EXTRA_DIST += integrations/event/mltrace_event.pc.in integrations/curl/mltrace_curl.pc.in
