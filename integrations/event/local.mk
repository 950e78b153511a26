# integrations/event: libmltrace_event (evhttp instrumentation, callbacks and
# deferred callbacks under a captured context).  Filled in by issue 4.
