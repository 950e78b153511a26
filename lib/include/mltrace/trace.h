/* <mltrace/trace.h>: trace-level data (update_current_trace) and the client
 * API (MLflow's MlflowClient level: explicit trace and span ids).
 *
 * Include <mltrace/mltrace.h> rather than this header.
 */
#ifndef MLTRACE_TRACE_H
#define MLTRACE_TRACE_H

#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_context mlt_context;

/* ---- update_current_trace -------------------------------------------- */

/** Trace state set by update_current_trace (mlflow.entities.TraceState). */
typedef enum mlt_trace_state {
  MLT_TRACE_STATE_UNSET = 0, /* leave it: ERROR when the root span ended with ERROR, else OK */
  MLT_TRACE_STATE_OK = 1,
  MLT_TRACE_STATE_ERROR = 2
} mlt_trace_state;

/**
 * Trace-level data, as in mlflow.update_current_trace().  Every member is
 * optional (NULL = leave unchanged); strings are copied.  MLflow's limits are
 * applied: tag keys 250 and values 4096 characters, metadata keys and values
 * 250, previews 1000 (longer text is cut and ends in "...").
 * Build it with MLT_TRACE_UPDATE(), which fills struct_size.
 */
typedef struct mlt_trace_update {
  size_t struct_size;            /* sizeof(mlt_trace_update) */
  const char *const *tags;       /* key, value, key, value, ..., NULL */
  const char *const *metadata;   /* key, value, ..., NULL */
  const char *request_preview;   /* overrides the preview computed from the root inputs */
  const char *response_preview;  /* overrides the preview computed from the root outputs */
  const char *client_request_id; /* TraceInfo.client_request_id */
  const char *session_id;        /* metadata mlflow.trace.session, root attribute session.id */
  const char *user_id;           /* metadata mlflow.trace.user, root attribute user.id */
  const char *model_id;          /* metadata mlflow.modelId (a LoggedModel id, "m-...") */
  mlt_trace_state state;         /* overrides the state derived from the root span */
} mlt_trace_update;

/** Compound literal of an mlt_trace_update with struct_size set, e.g.
 *  mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("env", "dev"),
 *                                            .session_id = "s-1")); */
#define MLT_TRACE_UPDATE(...)                                                  \
  (&(const mlt_trace_update){.struct_size = sizeof(mlt_trace_update), __VA_ARGS__})
/** NULL-terminated key/value list for mlt_trace_update.tags / .metadata. */
#define MLT_KV(...) ((const char *const[]){__VA_ARGS__, NULL})

/**
 * Update the trace of this thread's current span (or attached context).
 * @return MLT_OK; MLT_ENOTFOUND when there is no current trace; MLT_EENDED
 *         when it already finished; MLT_EINVAL (NULL @p u, bad struct_size,
 *         odd key/value list, state out of range); MLT_ENOTRECORDING when sampled out;
 *         MLT_EFULL when the update would take the trace past 4096 entries
 *         (each tag, metadata pair, preview or id counts one; a repeated
 *         key counts again): the whole update is refused, the trace keeps
 *         what it had.
 * Thread-safety: any thread; updates of one trace are serialized internally.
 */
MLT_EXTERN int mlt_update_current_trace(const mlt_trace_update *u);
/** Update the trace that @p span_in_trace belongs to (any of its spans, even
 *  an ended one, while the trace is in progress). */
MLT_EXTERN int mlt_update_trace(mlt_span span_in_trace, const mlt_trace_update *u);
/** Update the trace of context @p ctx (while the trace is in progress). */
MLT_EXTERN int mlt_update_trace_ctx(const mlt_context *ctx, const mlt_trace_update *u);
/** Update a trace in progress by its id ("tr-<32 hex>", hex digits in
 *  either case).  Traces started in this process are found by their id; a
 *  trace whose id came from elsewhere (a remote traceparent, or a
 *  continuation of a finished trace) once its id was handed out (client API,
 *  mlt_span_get_trace_id()). */
MLT_EXTERN int mlt_update_trace_by_id(const char *trace_id, const mlt_trace_update *u);

/**
 * The id of the last trace that finished in this process, like
 * mlflow.get_last_active_trace_id().
 *
 * Finishing a trace takes no lock shared across traces: each thread keeps
 * the id and finish time of the last trace it finished in its own record,
 * written under a per-thread sequence count (a reader retries while a write
 * is in progress, so it never sees half of one id); a thread that exits
 * leaves its record behind.  This call returns the id with the latest
 * finish time over all threads' records, so it is exactly the last trace to
 * finish (of two finishing in the same nanosecond, either).  Continuations
 * of finished traces do not count.  mlt_shutdown() forgets it.
 * @return MLT_OK; MLT_ENOTFOUND when none finished yet; MLT_ERANGE when
 *         @p size < MLT_TRACE_ID_SIZE; MLT_EINVAL.
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_get_last_active_trace_id(char *buf, size_t size);

/* ---- Client API (MlflowClient) --------------------------------------- */

/** Ids of a span started through the client API. */
typedef struct mlt_client_span {
  char trace_id[MLT_TRACE_ID_SIZE]; /* "tr-<32 hex>" */
  char span_id[MLT_SPAN_ID_SIZE];   /* 16 hex digits */
  mlt_span span;                    /* handle, for attributes and events */
} mlt_client_span;

/**
 * Start a trace: create its root span, like MlflowClient.start_trace().
 * @param name root span name (copied; NULL gives "trace").
 * @param inputs_json root inputs as JSON text (copied), or NULL.
 * @param out receives the ids and handle.  Must not be NULL.
 * @return MLT_OK; MLT_EINVAL; MLT_ENOTINIT; MLT_ENOTRECORDING (disabled or
 *         sampled out: out->span is non-recording and the ids are empty).
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_client_start_trace(const char *name, mlt_span_type type, const char *inputs_json,
                                      mlt_client_span *out);

/**
 * Start a span in trace @p trace_id under span @p parent_span_id, like
 * MlflowClient.start_span().
 * @return MLT_OK; MLT_ENOTFOUND for an unknown trace or parent id (or one
 *         whose trace already finished); MLT_EINVAL (NULL or malformed ids,
 *         bad options); MLT_ENOTINIT; MLT_ENOTRECORDING (tracing disabled,
 *         or no memory for a span);
 *         MLT_ENOMEM (the span started, but its ids could not be
 *         registered for later lookups).
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_client_start_span(const char *trace_id, const char *parent_span_id, const char *name,
                                     mlt_span_type type, const char *inputs_json, mlt_client_span *out);

/**
 * End span @p span_id of trace @p trace_id, like MlflowClient.end_span().
 * @param outputs_json outputs as JSON text (copied), or NULL.
 * @param status MLT_STATUS_OK/ERROR, or UNSET (becomes OK).
 * @param status_message description for ERROR (copied), or NULL.
 * @return MLT_OK; MLT_ENOTFOUND (unknown ids); MLT_EENDED (already ended);
 *         MLT_EINVAL (NULL or malformed ids, a status above ERROR);
 *         MLT_ENOTINIT.
 */
MLT_EXTERN int mlt_client_end_span(const char *trace_id, const char *span_id, const char *outputs_json,
                                   mlt_span_status status, const char *status_message);

/**
 * End trace @p trace_id: end its root span with @p outputs_json and
 * @p status, like MlflowClient.end_trace().  Spans of the trace still open
 * are ended with status ERROR ("span was still open when its trace ended"),
 * and the trace is queued for export.
 * @return MLT_OK; MLT_ENOTFOUND; MLT_EENDED; MLT_EINVAL (NULL or malformed
 *         id, a status above ERROR); MLT_ENOTINIT (also after mlt_shutdown(),
 *         for an id this thread was given before).
 */
MLT_EXTERN int mlt_client_end_trace(const char *trace_id, const char *outputs_json, mlt_span_status status,
                                    const char *status_message);

/** Look up the handle of span @p span_id in trace @p trace_id (to set
 *  attributes or events on it).  @return MLT_OK, MLT_ENOTFOUND, MLT_EINVAL,
 *  MLT_ENOTINIT. */
MLT_EXTERN int mlt_client_get_span(const char *trace_id, const char *span_id, mlt_span *out);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_TRACE_H */
