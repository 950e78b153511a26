/* <mltrace/span_options.h>: the rest of MLflow 3.17's span parameters:
 * explicit start and end times, span links, description, log level, and a
 * sampling ratio for one root.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * Python's `start_span(..., log_level=, links=, description=)`,
 * `start_span_no_context(..., start_time_ns=)`, `@mlflow.trace(...,
 * sampling_ratio_override=)` and `LiveSpan.end(end_time_ns=)` map to the
 * *_with() starts below, which take an mlt_span_options, and to
 * mlt_span_end_at().  The client API (MlflowClient.start_trace / start_span /
 * end_span / end_trace with start_time_ns, end_time_ns, links) has twins
 * ending in _with / _at.
 *
 * Times are nanoseconds since the Unix epoch (CLOCK_REALTIME), as MLflow
 * takes them: work measured elsewhere or replayed from another system.  Any
 * time > 0 is kept as given (int64 reaches the year 2262).  A span never
 * ends before it starts: an end time earlier than the span's start is
 * recorded as its start (zero duration), and the call that was given that
 * time returns MLT_ERANGE; the same clamp applies at export to any span whose
 * clock went backwards (a start in the future, the system clock stepped).
 * TraceInfo's request_time and execution_duration follow the root span's
 * times.  The trace timeout (MLFLOW_TRACE_TIMEOUT_SECONDS) counts from when
 * the trace started in this process, whatever its start time says.
 */
#ifndef MLTRACE_SPAN_OPTIONS_H
#define MLTRACE_SPAN_OPTIONS_H

#include <mltrace/common.h>
#include <mltrace/span.h>
#include <mltrace/trace.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_context mlt_context;

/** A span's log level (mlflow.entities.SpanLogLevel), written as the span
 *  attribute mlflow.spanLogLevel.  The MLflow UI's verbosity filter reads it. */
typedef enum mlt_span_level {
  /** MLflow's rule: INFO for LLM, CHAT_MODEL, TOOL, RETRIEVER, AGENT and
   *  EMBEDDING spans, DEBUG for the other types; raised to ERROR when an
   *  "exception" event is recorded (mlt_span_record_error()). */
  MLT_SPAN_LEVEL_DEFAULT = 0,
  MLT_SPAN_LEVEL_DEBUG = 10,
  MLT_SPAN_LEVEL_INFO = 20,
  MLT_SPAN_LEVEL_WARNING = 30,
  MLT_SPAN_LEVEL_ERROR = 40,
  MLT_SPAN_LEVEL_CRITICAL = 50
} mlt_span_level;

/**
 * A link from a span to another span, of this trace or another one
 * (mlflow.entities.Link): a batch job fanning in requests, a retry of an
 * earlier trace.  Name the other span by its ids, or by a context.
 */
typedef struct mlt_link {
  const char *trace_id;   /**< "tr-<32 hex>" or the 32 hex digits (either case) */
  const char *span_id;    /**< 16 hex digits */
  const mlt_context *ctx; /**< instead of the ids: this context's trace and span (borrowed) */
  const mlt_attr *attrs;  /**< attributes of the link (copied), or NULL */
  size_t n_attrs;
} mlt_link;

/**
 * Options of a span start.  Every member is optional (zero = default).
 * Build it with MLT_SPAN_OPTIONS(), which fills struct_size.
 */
typedef struct mlt_span_options {
  size_t struct_size;       /**< sizeof(mlt_span_options) */
  int64_t start_time_ns;    /**< start time, ns since the Unix epoch; 0: now */
  const mlt_link *links;    /**< @p n_links links (copied); see MLT_LINKS() */
  size_t n_links;
  const char *description;  /**< attribute mlflow.spanDescription (copied) */
  mlt_span_level log_level; /**< attribute mlflow.spanLogLevel; 0: MLflow's default */
  int sampling_override;    /**< 1: @p sampling_ratio decides whether a new trace is recorded */
  double sampling_ratio;    /**< 0..1, with sampling_override; see MLT_SAMPLING_RATIO() */
} mlt_span_options;

/** Compound literal of an mlt_span_options with struct_size set, e.g.
 *  MLT_SPAN_OPTIONS(.start_time_ns = t0, .log_level = MLT_SPAN_LEVEL_INFO). */
#define MLT_SPAN_OPTIONS(...) (&(const mlt_span_options){.struct_size = sizeof(mlt_span_options), __VA_ARGS__})
/** Inside MLT_SPAN_OPTIONS(): the links given as mlt_link initializers, e.g.
 *  MLT_LINKS({.trace_id = id, .span_id = sid}, {.ctx = other}). */
#define MLT_LINKS(...)                                                                             \
  .links = (const mlt_link[]){__VA_ARGS__}, .n_links = sizeof((const mlt_link[]){__VA_ARGS__}) / sizeof(mlt_link)
/** Inside MLT_SPAN_OPTIONS(): sampling_ratio_override (0..1). */
#define MLT_SAMPLING_RATIO(r) .sampling_override = 1, .sampling_ratio = (r)

/* ---- Starting with options -------------------------------------------- */

/* The three starts behave as mlt_span_start(), mlt_span_start_in() and
 * mlt_span_start_child() (same parents, same return values), with:
 *  - start_time_ns: the span's start time (< 0 is ignored: now);
 *  - links: each valid link is recorded (up to 128 per span, as
 *    OpenTelemetry keeps; more are counted in mltrace.droppedLinks); an
 *    invalid one (bad or zero ids, NULL attribute key) is skipped;
 *  - description, log_level: as mlt_span_set_description() and
 *    mlt_span_set_log_level() (an invalid level is ignored);
 *  - sampling_ratio_override: when this span starts a new trace, the trace
 *    is recorded with this probability instead of MLFLOW_TRACE_SAMPLING_RATIO
 *    (decided once, for the whole trace); ignored for a span that joins a
 *    trace (children follow their root), and when outside 0..1.
 * Whatever is ignored or skipped is reported through the log hook and
 * counted in mlt_stats.misuse; the span starts all the same.  A NULL
 * @p opts is no options.  Strings and arrays are copied.
 * Thread-safety: any thread (as the plain starts). */

/** mlt_span_start() with options (current on this thread until it ends). */
MLT_EXTERN mlt_span mlt_span_start_with(const char *name, mlt_span_type type, const mlt_span_options *opts);
/** mlt_span_start_in() with options (not current). */
MLT_EXTERN mlt_span mlt_span_start_in_with(const mlt_context *parent, const char *name, mlt_span_type type,
                                           const mlt_span_options *opts);
/** mlt_span_start_child() with options (not current). */
MLT_EXTERN mlt_span mlt_span_start_child_with(mlt_span parent, const char *name, mlt_span_type type,
                                              const mlt_span_options *opts);
/** @internal Function scope with options (MLT_TRACE_FUNCTION_WITH): as
 *  mlt__span_start_fn() of <mltrace/span.h>, with @p opts. */
MLT_EXTERN mlt_span mlt__span_start_fn_with(const char *func, size_t func_len, const char *name, size_t name_len,
                                            mlt_span_type type, const mlt_span_options *opts);

/**
 * Block scope with options, like `with mlflow.start_span(name, span_type,
 * log_level=..., links=..., description=...) as var:`; the options are the
 * designated initializers of mlt_span_options, e.g.
 *     MLT_SPAN_SCOPE_WITH(sp, "merge", MLT_SPAN_CHAIN, MLT_LINKS({.ctx = req_ctx}),
 *                         .description = "fan-in of the batch");
 */
#define MLT_SPAN_SCOPE_WITH(var, name, type, ...)                                                     \
  mlt_span var __attribute__((cleanup(mlt__scope_end))) =                                             \
      mlt_span_start_with((name), (type), MLT_SPAN_OPTIONS(__VA_ARGS__))

/** MLT_TRACE_FUNCTION with options, like `@mlflow.trace(span_type=...,
 *  sampling_ratio_override=..., log_level=...)`, e.g.
 *  MLT_TRACE_FUNCTION_WITH(MLT_SPAN_CHAIN, MLT_SAMPLING_RATIO(0.01)); */
#define MLT_TRACE_FUNCTION_WITH(type, ...)                                                            \
  mlt_span mlt_fn_span __attribute__((cleanup(mlt__scope_end), unused)) =                             \
      mlt__span_start_fn_with(__func__, sizeof(__func__) - 1, NULL, 0, (type), MLT_SPAN_OPTIONS(__VA_ARGS__))

/* ---- Setting them later (LiveSpan) ------------------------------------- */

/**
 * End @p span at @p end_time_ns (LiveSpan.end(end_time_ns=...)), otherwise as
 * mlt_span_end().
 * @return MLT_OK; MLT_ERANGE when @p end_time_ns is before the span's start
 *         (it ended at its start: zero duration; logged and counted in
 *         mlt_stats.misuse); MLT_EINVAL when
 *         @p end_time_ns < 0 (nothing done; 0 means now); MLT_EENDED;
 *         MLT_ESTALE; MLT_ENOTRECORDING (as mlt_span_end()).
 * Thread-safety: as mlt_span_end().
 */
MLT_EXTERN int mlt_span_end_at(mlt_span span, int64_t end_time_ns);

/**
 * Add a link to @p span (LiveSpan.add_link()).  Exported in the span's
 * "links" (Span.to_dict(): trace id "tr-...", span id in hex, attributes) and
 * as OTLP Span.links, which the MLflow server keeps.
 * @return MLT_OK; MLT_EINVAL (NULL @p link, no valid ids: a trace id that is
 *         not 32 hex digits, a span id that is not 16, zero ids, a context
 *         without ids, a NULL attribute key); MLT_EFULL (128 links already:
 *         counted in mltrace.droppedLinks); MLT_ENOMEM; MLT_EENDED /
 *         MLT_ESTALE / MLT_ENOTRECORDING as every span call.
 */
MLT_EXTERN int mlt_span_add_link(mlt_span span, const mlt_link *link);

/** Set the span's description (LiveSpan.set_description(), attribute
 *  mlflow.spanDescription; copied).  NULL gives MLT_EINVAL. */
MLT_EXTERN int mlt_span_set_description(mlt_span span, const char *description);

/** Set the span's log level (LiveSpan.set_log_level()): one of the
 *  MLT_SPAN_LEVEL_* values, DEFAULT restoring MLflow's rule.  As in MLflow,
 *  an "exception" event recorded after it raises a lower level to ERROR.
 *  @return MLT_OK; MLT_EINVAL (another value); as every span call. */
MLT_EXTERN int mlt_span_set_log_level(mlt_span span, mlt_span_level level);

/* ---- Client API twins (MlflowClient) ----------------------------------- */

/**
 * mlt_client_start_trace() with options (start_time_ns, links,
 * description, log_level, sampling_ratio_override).  Unlike the span starts,
 * the client API checks the options first: an invalid one gives MLT_EINVAL
 * and starts nothing (a negative start time, a sampling ratio outside 0..1,
 * bad struct_size, an unknown log level, a link without valid ids).
 * @return as mlt_client_start_trace(), plus MLT_EINVAL for bad options.
 */
MLT_EXTERN int mlt_client_start_trace_with(const char *name, mlt_span_type type, const char *inputs_json,
                                           const mlt_span_options *opts, mlt_client_span *out);
/** mlt_client_start_span() with options (sampling does not apply: the span
 *  joins its trace).  @return as mlt_client_start_span(), plus MLT_EINVAL for
 *  bad options. */
MLT_EXTERN int mlt_client_start_span_with(const char *trace_id, const char *parent_span_id, const char *name,
                                          mlt_span_type type, const char *inputs_json, const mlt_span_options *opts,
                                          mlt_client_span *out);
/** mlt_client_end_span() at @p end_time_ns (0: now).
 *  @return as mlt_client_end_span(); MLT_ERANGE when the time was before the
 *  span's start (ended at its start); MLT_EINVAL when < 0 (nothing done). */
MLT_EXTERN int mlt_client_end_span_at(const char *trace_id, const char *span_id, const char *outputs_json,
                                      mlt_span_status status, const char *status_message, int64_t end_time_ns);
/** mlt_client_end_trace() at @p end_time_ns (0: now): the root ends then,
 *  and spans of the trace still open end at that time too (or at their own
 *  start when later), with status ERROR as mlt_client_end_trace() does.
 *  @return as mlt_client_end_trace(); MLT_ERANGE (root clamped to its
 *  start); MLT_EINVAL when < 0 (nothing done). */
MLT_EXTERN int mlt_client_end_trace_at(const char *trace_id, const char *outputs_json, mlt_span_status status,
                                       const char *status_message, int64_t end_time_ns);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_SPAN_OPTIONS_H */
