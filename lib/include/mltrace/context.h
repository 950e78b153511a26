/* <mltrace/context.h>: explicit trace context for async work and threads.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * An mlt_context is an immutable, reference-counted snapshot of "where we
 * are" in a trace: trace id, span id, sampling flag, and a link to the live
 * trace.  Capture one from a span, copy the pointer into any closure (retain
 * it per copy), keep it after the span ended, use it from any thread, start
 * child spans under it with mlt_span_start_in(), and release it when done.
 * Nothing in libmltrace relies on thread-local state for async work: the
 * thread-local current span only serves synchronous code, and attaching a
 * context makes it "current" for the length of a callback.
 *
 * A context also keeps the scoped context (<mltrace/scope.h>) in effect on
 * the thread that captured it, and attaching it brings that scope back.
 */
#ifndef MLTRACE_CONTEXT_H
#define MLTRACE_CONTEXT_H

#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_context mlt_context;

/**
 * Capture the context of @p span.
 * @return a new reference (release with mlt_context_release()), or NULL when
 *         @p span is NONE or stale, or the library is not initialized.  A
 *         non-recording (sampled-out) span gives a non-sampled context, under
 *         which every span is non-recording too.
 * Thread-safety: any thread (the span itself: one thread at a time).
 */
MLT_EXTERN mlt_context *mlt_context_capture(mlt_span span);

/** Capture this thread's current context: the current span's, else the
 *  attached context (retained), else, inside a scope (<mltrace/scope.h>), a
 *  context that carries only the scope (no ids: spans started under it begin
 *  new traces; mlt_context_get_trace_id() gives MLT_EINVAL), else NULL.
 *  Thread-safety: any thread. */
MLT_EXTERN mlt_context *mlt_context_current(void);

/** Take another reference to @p ctx and return it.  NULL gives NULL.
 *  Thread-safety: any thread. */
MLT_EXTERN mlt_context *mlt_context_retain(mlt_context *ctx);

/** Drop a reference.  NULL is a no-op.  Releasing the last reference of a
 *  holding context (mlt_context_hold()) releases its hold on the trace.
 *  Thread-safety: any thread. */
MLT_EXTERN void mlt_context_release(mlt_context *ctx);

/**
 * Hold the trace of @p ctx open for pending async work.  A trace is finished
 * when its root and all its spans have ended *and* no hold remains, so work
 * scheduled for later (a deferred callback, a job on a worker thread) still
 * lands in the same trace even when every span that scheduled it has ended.
 * The trace timeout applies regardless, so a leaked hold cannot keep a trace
 * forever.
 * @return a new context reference (same ids as @p ctx) that holds the trace
 *         until its last reference is released; when the trace already
 *         finished, a plain reference (no hold).  NULL for NULL.
 * Thread-safety: any thread.
 */
MLT_EXTERN mlt_context *mlt_context_hold(mlt_context *ctx);

/** Write the trace id ("tr-<32 hex>") of @p ctx into @p buf (at least
 *  MLT_TRACE_ID_SIZE bytes).  @return MLT_OK, MLT_EINVAL, MLT_ERANGE. */
MLT_EXTERN int mlt_context_get_trace_id(const mlt_context *ctx, char *buf, size_t size);
/** Write the span id (16 hex digits) of @p ctx into @p buf (at least
 *  MLT_SPAN_ID_SIZE bytes).  @return MLT_OK, MLT_EINVAL, MLT_ERANGE. */
MLT_EXTERN int mlt_context_get_span_id(const mlt_context *ctx, char *buf, size_t size);
/** 1 if spans under @p ctx are recorded (sampled), 0 otherwise or for NULL. */
MLT_EXTERN int mlt_context_is_sampled(const mlt_context *ctx);

/* ---- Attaching a context to a thread for the length of a callback ---- */

/** Opaque token returned by mlt_context_attach(); give it back to
 *  mlt_context_detach().  The fields are private. */
typedef struct mlt_attach_token {
  uint32_t depth_;
  uint32_t serial_;
} mlt_attach_token;

/**
 * Make @p ctx this thread's current context (retained while attached):
 * mlt_span_start() and the scope macros then create children of it.  Attaches
 * nest strictly: each attach is undone by one detach, innermost first.
 * @p ctx NULL attaches "no context" (spans then start new traces), which is
 * how a loop thread masks an outer context.  A context that carries a scope
 * (<mltrace/scope.h>) makes that scope current too; one without leaves the
 * thread's scope as it is.
 * @return the token for mlt_context_detach().
 * Thread-safety: affects only the calling thread.
 */
MLT_EXTERN mlt_attach_token mlt_context_attach(mlt_context *ctx);

/**
 * Undo the attach that returned @p token: restore the context and current
 * span that were current before it, and release the attached context.
 * @return MLT_OK; MLT_EMISMATCH when @p token is not the innermost attach of
 *         this thread (reported through the log hook and counted as misuse;
 *         the call is not obeyed and nothing changes).
 */
MLT_EXTERN int mlt_context_detach(mlt_attach_token token);

/** Run @p fn(@p arg) with @p ctx attached, then detach.  @p ctx may be NULL. */
MLT_EXTERN void mlt_context_run(mlt_context *ctx, void (*fn)(void *arg), void *arg);

/* ---- W3C trace context propagation ---------------------------------- */

/**
 * Format the W3C traceparent header value of @p ctx,
 * "00-<32 hex trace id>-<16 hex span id>-<01|00>", into @p buf (at least
 * MLT_TRACEPARENT_SIZE bytes).
 * @return MLT_OK; MLT_EINVAL (NULL ctx or buf, or a context without ids);
 *         MLT_ERANGE.
 */
MLT_EXTERN int mlt_context_to_traceparent(const mlt_context *ctx, char *buf, size_t size);

/**
 * Parse a W3C traceparent header value into a remote context: spans started
 * under it continue the caller's trace (same trace id, parent = the caller's
 * span) in a trace of their own, as MLflow's distributed tracing does.
 * Validation follows the W3C spec (version 00 exact length, lowercase hex,
 * non-zero ids, version ff rejected); anything else is rejected.
 * @param header the header value (borrowed), NUL-terminated.
 * @param out receives a new reference on success; left NULL on failure.
 * @return MLT_OK; MLT_EPARSE (malformed, never trusted); MLT_EINVAL.
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_context_from_traceparent(const char *header, mlt_context **out);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_CONTEXT_H */
