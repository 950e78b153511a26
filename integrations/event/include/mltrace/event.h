/* <mltrace/event.h>: libmltrace_event: trace context through libevent.
 *
 * Link with `pkg-config --libs mltrace_event`.  Needs libevent >= 2.1
 * (libevent_core, libevent_extra for evhttp, libevent_pthreads).
 *
 * Context travels explicitly: every helper here captures an mlt_context when
 * work is *scheduled*, holds the trace open until the work has run (see
 * mlt_context_hold()), and attaches the context on the loop thread only for
 * the length of the callback.  Between callbacks the loop thread has no
 * current context, so nothing leaks from one request to the next.
 *
 * Three parts:
 *  - mlt_evloop: run a callback on an event_base under a captured context,
 *    deferred (next loop iteration), after a timer, or from any thread
 *    (the loop is woken with event_active()).  Optionally each callback runs
 *    in a child span of its own.
 *  - mlt_bufferevent_setcb(): bufferevent callbacks under a context.
 *  - mlt_evhttp: evhttp server instrumentation.  Each request gets a span
 *    (a root span, or a child of the caller's span when the request carries
 *    a valid W3C traceparent) that stays open while the reply is produced
 *    asynchronously and ends when the reply is complete or the client goes
 *    away.  Outbound: mlt_evhttp_request_set_traceparent().
 *
 * Worker threads use the core's <mltrace/thread.h> (mlt_thread_create(),
 * mlt_work_queue_submit()); a job hands its result back to the loop with
 * mlt_evloop_call(), which captures the job's context.
 *
 * Callback contract (every registration here): if the call that registers a
 * callback fails, the callback never runs and nothing was captured; if it
 * succeeds, the callback runs exactly once: with status MLT_OK when it fires,
 * or with status MLT_EVENT_CANCELLED when it is cancelled or its mlt_evloop
 * is freed first.  A cancelled callback runs without any context attached
 * and without a child span, so it can free its user data.  The captured
 * context is released right after the callback returns, in every case.
 *
 * Thread-safety phrases are those of <mltrace/common.h>; "loop thread only"
 * means the thread that runs the event_base's loop (or any single thread
 * while the loop is not running).
 */
#ifndef MLTRACE_EVENT_H
#define MLTRACE_EVENT_H

#include <sys/time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <mltrace/mltrace.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Status given to a callback that did not fire: it was cancelled with
 *  mlt_evtask_cancel(), or its loop was freed with mlt_evloop_free() first. */
#define MLT_EVENT_CANCELLED MLT_ECANCELED

/* ==== Callbacks on a loop ============================================ */

/** A context-carrying scheduler bound to one event_base. */
typedef struct mlt_evloop mlt_evloop;

/** A scheduled deferred or timer callback (see mlt_evtask_cancel()). */
typedef struct mlt_evtask mlt_evtask;

/**
 * Callback run on the loop thread.
 * @param status MLT_OK when the callback fires (its context attached, and
 *        its child span current when one was asked for), or
 *        MLT_EVENT_CANCELLED when it was cancelled (no context attached).
 * @param user_data the pointer given at registration.
 */
typedef void (*mlt_evloop_fn)(int status, void *user_data);

/**
 * Create a scheduler for @p base: an internal user event that other threads
 * wake with event_active(), and the bookkeeping that lets pending callbacks
 * be cancelled when the loop goes away.  Calls evthread_make_base_notifiable()
 * on @p base.  For mlt_evloop_call() from other threads, call
 * evthread_use_pthreads() before creating @p base.
 * @param base the event base (borrowed: it must outlive the scheduler).
 * @param out receives the scheduler; set to NULL on failure.
 * @return MLT_OK; MLT_EINVAL (NULL argument); MLT_ENOMEM; MLT_EIO (libevent
 *         refused to create the wake-up event).
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_evloop_new(struct event_base *base, mlt_evloop **out);

/**
 * Cancel everything still pending and free the scheduler: every deferred,
 * timer and cross-thread callback that has not fired runs now, once, with
 * MLT_EVENT_CANCELLED (the captured contexts are released after each).  A
 * cancelled callback that schedules new work on @p loop gets MLT_EENDED.
 * Call it before event_base_free() of the base.  Every mlt_evloop_call() on
 * @p loop from another thread must have returned before this call returns (a
 * call racing with it is either cancelled here or refused with MLT_EENDED);
 * none may start after.  NULL is a no-op.
 * Thread-safety: loop thread only (not from inside one of its callbacks).
 */
MLT_EXTERN void mlt_evloop_free(mlt_evloop *loop);

/** The event_base of @p loop (NULL for NULL).  Thread-safety: any thread. */
MLT_EXTERN struct event_base *mlt_evloop_get_base(const mlt_evloop *loop);

/**
 * Run @p fn(MLT_OK, @p user_data) on the next loop iteration (a zero
 * timeout: after the events already active, never inside this call) with
 * @p ctx attached.
 * @param ctx context to run under (borrowed: a holding reference is taken,
 *        see mlt_context_hold()), or NULL to capture this thread's current
 *        context now (none: the callback runs with no context attached).
 * @param span_name NULL, or the name (copied) of a child span of the context
 *        (type TASK) that is current while @p fn runs and ends when it
 *        returns.
 * @param task NULL, or receives a handle for mlt_evtask_cancel(), valid until
 *        @p fn is called (whatever its status).
 * @return MLT_OK (then @p fn runs exactly once); MLT_EINVAL (@p loop or @p fn
 *         NULL); MLT_ENOMEM; MLT_EENDED (the loop is being freed); MLT_EIO
 *         (libevent refused the timer).  On failure @p fn never runs and
 *         nothing is held.
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_evloop_defer(mlt_evloop *loop, mlt_context *ctx, const char *span_name, mlt_evloop_fn fn,
                                void *user_data, mlt_evtask **task);

/**
 * Like mlt_evloop_defer(), after @p delay (NULL or zero: next iteration).
 * The trace stays open until the timer fires or is cancelled (the trace
 * timeout still applies).
 * @return as mlt_evloop_defer(); MLT_EINVAL also for a negative delay.
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_evloop_after(mlt_evloop *loop, mlt_context *ctx, const struct timeval *delay,
                                const char *span_name, mlt_evloop_fn fn, void *user_data, mlt_evtask **task);

/**
 * Cancel a pending deferred or timer callback: its callback is called before
 * this returns, with MLT_EVENT_CANCELLED and no context attached, and the
 * captured context is released.  After that the handle is gone.
 * @return MLT_OK; MLT_EINVAL (NULL); MLT_EENDED when called from inside the
 *         task's own callback (nothing happens: it is already running).
 *         Calling it after the callback returned is undefined (the handle is
 *         freed then): clear your copy of the handle in the callback.
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_evtask_cancel(mlt_evtask *task);

/**
 * Run @p fn(MLT_OK, @p user_data) on the loop thread with @p ctx attached;
 * callable from any thread (a worker hands its result back to the loop).
 * Calls are queued under a mutex and run in FIFO order per calling thread;
 * one event_active() wakes the loop for a whole batch.
 * @param ctx as mlt_evloop_defer() (NULL: the context current on the calling
 *        thread, e.g. the one a worker job runs under).
 * @param span_name as mlt_evloop_defer().
 * @return MLT_OK (then @p fn runs exactly once, on the loop thread; with
 *         MLT_EVENT_CANCELLED if the loop is freed first); MLT_EINVAL;
 *         MLT_ENOMEM; MLT_EENDED (the loop is being freed).  On failure
 *         @p fn never runs.
 * Thread-safety: any thread (see mlt_evloop_free() for the end of life).
 */
MLT_EXTERN int mlt_evloop_call(mlt_evloop *loop, mlt_context *ctx, const char *span_name, mlt_evloop_fn fn,
                               void *user_data);

/* ==== Bufferevent callbacks ========================================== */

/**
 * bufferevent_setcb() whose callbacks run with @p ctx attached (and, when
 * @p span_name is set, each invocation in a child span of that name with the
 * attribute mltrace.event.kind = "read", "write" or "event").
 * The context is held (the trace stays open) until the callbacks are
 * replaced by another mlt_bufferevent_setcb() or cleared (all three NULL), or
 * the bufferevent is freed with mlt_bufferevent_free(); the trace timeout
 * still applies.  Change the callbacks of @p bev only through these two
 * functions afterwards (a plain bufferevent_setcb() would leak the closure).
 * @param bev the bufferevent (borrowed).
 * @param ctx context (borrowed; a holding reference is taken), or NULL for
 *        this thread's current context.
 * @param span_name NULL or a span name (copied).
 * @param readcb, writecb, eventcb, cbarg as bufferevent_setcb(); all three
 *        NULL clears the callbacks and releases the context.
 * @return MLT_OK; MLT_EINVAL (@p bev NULL); MLT_ENOMEM (the callbacks are left
 *         unchanged).
 * Thread-safety: loop thread only; may be called from inside one of
 * @p bev's callbacks.
 */
MLT_EXTERN int mlt_bufferevent_setcb(struct bufferevent *bev, mlt_context *ctx, const char *span_name,
                                     bufferevent_data_cb readcb, bufferevent_data_cb writecb,
                                     bufferevent_event_cb eventcb, void *cbarg);

/** Release the callbacks' context and bufferevent_free() @p bev.  May be
 *  called from inside one of @p bev's callbacks.  NULL is a no-op.
 *  Thread-safety: loop thread only. */
MLT_EXTERN void mlt_bufferevent_free(struct bufferevent *bev);

/* ==== evhttp server instrumentation ================================== */

/** An instrumented evhttp server. */
typedef struct mlt_evhttp mlt_evhttp;

/** Settings of mlt_evhttp_instrument(). */
typedef struct mlt_evhttp_options mlt_evhttp_options;

/**
 * Called on the loop thread when an instrumented request is over (also with
 * tracing disabled, so that application logic does not depend on tracing).
 * @param req the request, valid only during the call (libevent frees it
 *        after, unless the application still has to end the reply, below).
 *        Do not reply from here.
 * @param disconnected 0 when the reply was sent completely; 1 when the
 *        connection closed first (the client went away, a timeout, or
 *        evhttp_free()): the span ended with status ERROR
 *        (ClientDisconnected, ServerShutdown or ServerClosed, see
 *        mlt_evhttp_instrument()).  The application should then stop
 *        producing the reply.  After a client disconnect libevent still
 *        expects the call that would have ended the reply
 *        (evhttp_send_reply() or evhttp_send_reply_end(), or the mlt_
 *        wrappers), which then only frees the request; after evhttp_free()
 *        the request is already freed: do not touch it.
 * @param request_data the pointer given to mlt_evhttp_request_set_data(), or
 *        NULL.
 * @param user_data the pointer given to mlt_evhttp_options_set_done_cb().
 */
typedef void (*mlt_evhttp_done_fn)(struct evhttp_request *req, int disconnected, void *request_data,
                                   void *user_data);

/** Create options with the defaults: span name "METHOD /path", type CHAIN,
 *  header allow-list content-type, user-agent, accept; bodies recorded up
 *  to 65536 bytes; incoming traceparent continued.
 *  @return MLT_OK; MLT_EINVAL (@p out NULL); MLT_ENOMEM.
 *  Ownership: free with mlt_evhttp_options_free().
 *  Thread-safety: one thread at a time. */
MLT_EXTERN int mlt_evhttp_options_new(mlt_evhttp_options **out);
/** Free options (NULL is a no-op).  mlt_evhttp_instrument() copies them. */
MLT_EXTERN void mlt_evhttp_options_free(mlt_evhttp_options *opts);
/** Fixed span name for every request (copied); NULL restores the default
 *  "METHOD /path" (the path without query, at most 256 bytes).  A handler
 *  may rename its span: mlt_span_set_name(mlt_evhttp_request_span(req), ...).
 *  @return MLT_OK; MLT_EINVAL (@p opts NULL); MLT_ENOMEM. */
MLT_EXTERN int mlt_evhttp_options_set_span_name(mlt_evhttp_options *opts, const char *name);
/** Span type of request spans.  @return MLT_OK; MLT_EINVAL (NULL, out of range). */
MLT_EXTERN int mlt_evhttp_options_set_span_type(mlt_evhttp_options *opts, mlt_span_type type);
/**
 * Add request header @p name (copied, case-insensitive) to the allow-list of
 * headers recorded in the span inputs (under its lowercase name).
 * Authorization, Proxy-Authorization, Cookie and Set-Cookie are never
 * recorded: asking for them gives MLT_EINVAL.
 * @return MLT_OK; MLT_EINVAL; MLT_ENOMEM; MLT_EFULL (64 headers already).
 */
MLT_EXTERN int mlt_evhttp_options_allow_header(mlt_evhttp_options *opts, const char *name);
/** Empty the header allow-list (no header is recorded).  @return MLT_OK; MLT_EINVAL. */
MLT_EXTERN int mlt_evhttp_options_clear_headers(mlt_evhttp_options *opts);
/** Most bytes of the request body recorded in the inputs, and of the reply
 *  body recorded as outputs (0: record no bodies).  Longer bodies are cut and
 *  marked.  @return MLT_OK; MLT_EINVAL (NULL, or over 1 GiB). */
MLT_EXTERN int mlt_evhttp_options_set_max_body_bytes(mlt_evhttp_options *opts, size_t bytes);
/** 1 (default) to continue the caller's trace when a request carries a valid
 *  traceparent header, 0 to start every request as a new trace.  A malformed
 *  header is always ignored.  @return MLT_OK; MLT_EINVAL. */
MLT_EXTERN int mlt_evhttp_options_set_accept_traceparent(mlt_evhttp_options *opts, int accept);
/** Callback run when a request span ends (see mlt_evhttp_done_fn); NULL for
 *  none.  @return MLT_OK; MLT_EINVAL. */
MLT_EXTERN int mlt_evhttp_options_set_done_cb(mlt_evhttp_options *opts, mlt_evhttp_done_fn fn, void *user_data);

/**
 * Instrument @p http: installs a traced generic callback (a traced 404 reply
 * until mlt_evhttp_set_gencb() sets one), and traces every callback
 * registered through mlt_evhttp_set_cb() / mlt_evhttp_set_gencb().
 * Callbacks registered directly with evhttp_set_cb() are not traced.
 *
 * For each traced request, before the handler runs: a span starts (a child of
 * the remote caller when the request carries a valid traceparent, else a
 * root) with inputs {"method", "uri", "headers" (allow-list only), "body"
 * (parsed JSON when the body is JSON, else a string)}, attributes
 * http.request.method, url.path, http.route (per-path callbacks),
 * client.address and client.port.  The handler runs with the span's context
 * attached (mlt_span_start() there makes children; mlt_context_current() or
 * mlt_evhttp_request_context() gives the context to hand on).  The span ends
 * when libevent reports the reply complete (attributes
 * http.response.status_code and http.response.body.size; status ERROR for
 * 5xx), or when the connection closes first (status ERROR, and an exception
 * event naming who closed it, from the kernel's TCP state at that moment:
 * "ClientDisconnected" when the client closed or reset it;
 * "ServerShutdown" when the server closed it after
 * mlt_evhttp_begin_shutdown(), e.g. evhttp_free() at SIGTERM; "ServerClosed"
 * when the server closed it otherwise: an evhttp timeout, or the
 * application freed the connection).  Reply bodies and chunks sent through
 * the mlt_evhttp_send_reply*() wrappers become the span outputs (chunks: one
 * chunk event each, outputs = their concatenation); replies sent with plain
 * evhttp_send_*() still record status and size.
 *
 * When the connection closes before the reply is complete, the span records
 * what reached the socket, not what the application queued: libevent
 * writes a reply from the connection's output buffer, and the wrappers
 * keep track of where each body byte lies in it, so at the close what has
 * left the buffer was written to the socket (handed to the kernel: a
 * client that hung up may have read less of it).  Then
 * http.response.body.size is the number of body bytes written, attribute
 * mltrace.http.reply_unsent_bytes the bytes queued but never written, and
 * the outputs of a chunked reply are the written prefix of the chunks' text
 * (a partly written chunk is cut at the byte).  The chunk events stay as
 * the application sent them.  A reply sent whole with
 * mlt_evhttp_send_reply() keeps the whole body as outputs; the two
 * attributes tell how much of it was written.
 *
 * The instrumentation owns two libevent hooks of each request it handles:
 * the request's on-complete callback and its connection's close callback.
 * Do not set them (evhttp_request_set_on_complete_cb(),
 * evhttp_connection_set_closecb()) on instrumented requests: use the done
 * callback (mlt_evhttp_options_set_done_cb()) instead.  The span starts when
 * the request has been read completely (evhttp calls handlers then).  With
 * tracing disabled or not initialized, handlers, wrappers and the done
 * callback work the same, without spans.
 *
 * @param http the server (borrowed; must outlive the instrumentation until
 *        mlt_evhttp_free()).
 * @param opts options (copied), or NULL for the defaults.
 * @param out receives the instrumentation; NULL on failure.
 * @return MLT_OK; MLT_EINVAL; MLT_ENOMEM.
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_evhttp_instrument(struct evhttp *http, const mlt_evhttp_options *opts, mlt_evhttp **out);

/**
 * Free the instrumentation.  Call it after evhttp_free() of its server
 * (which closes every connection, ending their request spans with ERROR);
 * spans of requests still known here are ended with ERROR too.  NULL is a
 * no-op.  Thread-safety: loop thread only.
 */
MLT_EXTERN void mlt_evhttp_free(mlt_evhttp *inst);

/**
 * Say that the server is shutting down (call it before evhttp_free(), e.g.
 * on SIGTERM): from now on a request whose connection the server closes
 * before its reply is complete ends with ERROR "ServerShutdown" instead of
 * "ServerClosed".  A request whose client closed the connection first is
 * still "ClientDisconnected".  Nothing else changes: requests in flight may
 * still complete.
 * @return MLT_OK; MLT_EINVAL (@p inst NULL).
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_evhttp_begin_shutdown(mlt_evhttp *inst);

/** Traced evhttp_set_cb(): @p cb(@p req, @p arg) handles @p path (copied).
 *  @return MLT_OK; MLT_EINVAL; MLT_EALREADY (a callback for @p path exists);
 *  MLT_ENOMEM.  Thread-safety: loop thread only. */
MLT_EXTERN int mlt_evhttp_set_cb(mlt_evhttp *inst, const char *path, void (*cb)(struct evhttp_request *req, void *arg),
                                 void *arg);
/** Traced evhttp_del_cb().  @return MLT_OK; MLT_EINVAL; MLT_ENOTFOUND.
 *  Thread-safety: loop thread only (may be called from a handler). */
MLT_EXTERN int mlt_evhttp_del_cb(mlt_evhttp *inst, const char *path);
/** Traced evhttp_set_gencb(); @p cb NULL restores the traced 404 reply.
 *  @return MLT_OK; MLT_EINVAL.  Thread-safety: loop thread only. */
MLT_EXTERN int mlt_evhttp_set_gencb(mlt_evhttp *inst, void (*cb)(struct evhttp_request *req, void *arg), void *arg);

/**
 * The context of @p req's span, to hand on to async work (a worker job, a
 * deferred callback, an outgoing request).
 * @return a new reference (release it with mlt_context_release()), or NULL
 *         when @p req is not a traced request in progress (tracing disabled,
 *         or its span already ended).
 * Thread-safety: any thread (the request itself belongs to the loop thread).
 */
MLT_EXTERN mlt_context *mlt_evhttp_request_context(struct evhttp_request *req);

/** The span of @p req (set outputs or attributes on it from the loop thread),
 *  or MLT_SPAN_NONE.  Thread-safety: loop thread only. */
MLT_EXTERN mlt_span mlt_evhttp_request_span(struct evhttp_request *req);

/** Attach the application's pointer to an instrumented request in progress
 *  (libevent 2.1 has no per-request user data); it is handed to the done
 *  callback.  @p data is borrowed: the library never frees it.
 *  @return MLT_OK; MLT_EINVAL (@p req NULL); MLT_ENOTFOUND (@p req is not an
 *  instrumented request in progress).  Thread-safety: loop thread only. */
MLT_EXTERN int mlt_evhttp_request_set_data(struct evhttp_request *req, void *data);
/** The pointer set with mlt_evhttp_request_set_data(), or NULL.
 *  Thread-safety: loop thread only. */
MLT_EXTERN void *mlt_evhttp_request_get_data(struct evhttp_request *req);

/** evhttp_send_reply() that records @p body (borrowed; drained as libevent
 *  does) as the span outputs: JSON when the reply's Content-Type says JSON or
 *  the body starts with '{' or '[', else text.  Thread-safety: loop thread
 *  only.  An untraced @p req is simply forwarded. */
MLT_EXTERN void mlt_evhttp_send_reply(struct evhttp_request *req, int code, const char *reason,
                                      struct evbuffer *body);
/** evhttp_send_reply_start(), for a chunked (streamed) reply.  Thread-safety:
 *  loop thread only. */
MLT_EXTERN void mlt_evhttp_send_reply_start(struct evhttp_request *req, int code, const char *reason);
/** evhttp_send_reply_chunk() that records the chunk (one chunk event; the
 *  outputs are the concatenated chunks).  @p chunk is borrowed and drained as
 *  libevent does.  Thread-safety: loop thread only. */
MLT_EXTERN void mlt_evhttp_send_reply_chunk(struct evhttp_request *req, struct evbuffer *chunk);
/** evhttp_send_reply_end().  The span ends when libevent reports the reply
 *  complete (possibly inside this call).  Thread-safety: loop thread only. */
MLT_EXTERN void mlt_evhttp_send_reply_end(struct evhttp_request *req);

/**
 * Outbound propagation: set the "traceparent" header of an outgoing request
 * (an evhttp client request made with evhttp_request_new()) to @p ctx.
 * @param ctx the context (borrowed), or NULL for this thread's current one.
 * @return MLT_OK; MLT_EINVAL (@p req NULL, or no context / a context without
 *         ids); MLT_ENOMEM.  Other clients use mlt_context_to_traceparent().
 * Thread-safety: one thread at a time per request.
 */
MLT_EXTERN int mlt_evhttp_request_set_traceparent(struct evhttp_request *req, const mlt_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_EVENT_H */
