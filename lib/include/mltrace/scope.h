/* <mltrace/scope.h>: scoped trace context, like mlflow.tracing.context():
 * tags, metadata, session and user applied to every trace started in a scope,
 * and tracing switched off for a scope.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 *     {
 *         MLT_TRACING_CONTEXT(.session_id = "s-42", .user = "ann",
 *                             .tags = MLT_KV("project", "demo"));
 *         handle_request();   // every trace it starts carries them
 *     }
 *
 * What a scope applies to: every trace *started* while it is in effect
 * (including the traces the evhttp and curl integrations start, and client
 * API traces), as if mlt_update_trace() had been called on it at its start:
 * an update the application makes later wins over the scope's values.
 * Traces already in progress are not changed.  Scopes nest: an inner scope
 * holds the outer one's tags and metadata with its own on top (the inner
 * value wins for the same key), and `enabled` left INHERIT takes the outer
 * scope's.  With `.enabled = MLT_SCOPE_DISABLED`, every span start in the
 * scope returns MLT_SPAN_NONE (nothing is recorded, as MLflow's NoOpSpan),
 * without touching the global switch (mlt_set_enabled()); a nested scope with
 * MLT_SCOPE_ENABLED turns tracing back on for its extent.
 *
 * Where a scope is in effect: on the thread that entered it, until it is
 * exited, and wherever a context captured inside it is attached.  A context
 * (mlt_context_capture(), mlt_context_current(), mlt_context_hold()) keeps
 * the scope of the thread that captured it, and attaching that context
 * (mlt_context_attach() / mlt_context_run(), hence mlt_thread_create(),
 * mlt_job_*, mlt_work_queue_submit*(), the mlt_evloop_* callbacks and the
 * curl loop's callbacks) brings the scope along for the length of the
 * attach.  Attaching a context that carries no scope (captured outside any,
 * from a traceparent, NULL) leaves the thread's own scope in effect.
 * mlt_context_current() inside a scope but outside any span gives a context
 * that carries only the scope (spans started under it begin new traces).
 * mlt_span_start_in() follows the scope in effect on the calling thread.
 *
 * Cost: a span start on a thread with no scope in effect pays one load and a
 * branch; inside a scope, a new trace copies the scope's entries.
 */
#ifndef MLTRACE_SCOPE_H
#define MLTRACE_SCOPE_H

#include <mltrace/common.h>
#include <mltrace/context.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Tracing inside a scope (context(enabled=None/True/False)). */
typedef enum mlt_scope_enabled {
  MLT_SCOPE_INHERIT = 0,  /**< as the enclosing scope (on, outside any) */
  MLT_SCOPE_ENABLED = 1,  /**< on (unless disabled globally) */
  MLT_SCOPE_DISABLED = 2  /**< off: span starts return MLT_SPAN_NONE */
} mlt_scope_enabled;

/**
 * What a scope applies (mlflow.tracing.context's arguments).  Every member
 * is optional; strings are copied when the scope is entered.  Build it with
 * MLT_TRACE_SCOPE(), which fills struct_size.
 */
typedef struct mlt_trace_scope {
  size_t struct_size;           /**< sizeof(mlt_trace_scope) */
  const char *const *metadata;  /**< key, value, ..., NULL: trace metadata */
  const char *const *tags;      /**< key, value, ..., NULL: trace tags */
  mlt_scope_enabled enabled;    /**< tracing inside the scope */
  const char *session_id;       /**< metadata mlflow.trace.session */
  const char *user;             /**< metadata mlflow.trace.user */
} mlt_trace_scope;

/** Compound literal of an mlt_trace_scope with struct_size set. */
#define MLT_TRACE_SCOPE(...) (&(const mlt_trace_scope){.struct_size = sizeof(mlt_trace_scope), __VA_ARGS__})

/**
 * Enter a scope on this thread: until the matching mlt_trace_scope_exit(),
 * traces started on this thread (and under contexts captured here) get its
 * values.  Scopes and context attaches nest strictly together: exit the
 * innermost first.
 * @param scope what to apply (borrowed; copied).
 * @param token receives the token for mlt_trace_scope_exit(); zeroed on
 *        failure (exiting a zero token does nothing).
 * @return MLT_OK; MLT_EINVAL (NULL arguments, bad struct_size, an odd
 *         key/value list, @p enabled out of range); MLT_ENOTINIT; MLT_ENOMEM;
 *         MLT_EFULL (64 attaches and scopes already nested on this thread).
 *         The metadata keys mlflow.trace.session / mlflow.trace.user are the
 *         same as @p session_id / @p user.
 * Thread-safety: affects only the calling thread.
 */
MLT_EXTERN int mlt_trace_scope_enter(const mlt_trace_scope *scope, mlt_attach_token *token);

/**
 * Leave the scope that returned @p token, restoring the scope in effect
 * before it.
 * @return MLT_OK (also for a zero token: nothing to do); MLT_EMISMATCH when
 *         @p token is not the innermost scope or attach of this thread
 *         (reported and counted as misuse; nothing changes); MLT_ENOTINIT.
 */
MLT_EXTERN int mlt_trace_scope_exit(mlt_attach_token token);

/** @internal The block form's enter (a token even on failure, zeroed). */
MLT_EXTERN mlt_attach_token mlt__trace_scope_begin(const mlt_trace_scope *scope);
/** @internal Cleanup handler of MLT_TRACING_CONTEXT. */
static inline void mlt__trace_scope_cleanup(mlt_attach_token *tok) {
  if (tok->depth_) (void)mlt_trace_scope_exit(*tok);
}

#define MLT__SCOPE_CAT2(a, b) a##b
#define MLT__SCOPE_CAT(a, b) MLT__SCOPE_CAT2(a, b)
/**
 * Block form, like `with mlflow.tracing.context(...):` — the scope is in
 * effect from here to the end of the enclosing block (left by any path).
 * The arguments are designated initializers of mlt_trace_scope.
 */
#define MLT_TRACING_CONTEXT(...)                                                                    \
  mlt_attach_token MLT__SCOPE_CAT(mlt__scope_tok_, __LINE__)                                        \
      __attribute__((cleanup(mlt__trace_scope_cleanup), unused)) =                                  \
          mlt__trace_scope_begin(MLT_TRACE_SCOPE(__VA_ARGS__))

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_SCOPE_H */
