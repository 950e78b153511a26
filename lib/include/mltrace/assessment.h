/* <mltrace/assessment.h>: feedback and expectations on traces, and tags set or
 * deleted on a trace after it finished (mlflow.log_feedback,
 * mlflow.log_expectation, mlflow.set_trace_tag, mlflow.delete_trace_tag).
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * A C service typically gets a thumbs-up from its user after the answer was
 * streamed, when the trace has finished and may already be on its way to the
 * backend.  These calls take the trace id (from mlt_get_last_active_trace_id(),
 * from a header such as X-Trace-Id that the service handed to its client,
 * from mlt_span_get_trace_id() / mlt_context_get_trace_id()), or a span
 * handle, and never block:
 *
 *  - a trace still in progress in this process (found by its handle, or by
 *    an id the library handed out) gets the change in memory, as Python's
 *    SDK does: the feedback or tag is exported with the trace itself
 *    (TraceInfo.assessments / tags of the file store line and of the
 *    MLflow server's StartTraceV3);
 *  - otherwise the operation goes on a small bounded queue that the export
 *    thread delivers after the traces finished before it: to the MLflow
 *    server (POST /api/3.0/mlflow/traces/{id}/assessments, PATCH / DELETE
 *    /api/2.0/mlflow/traces/{id}/tags, once the server holds the trace) and
 *    to the JSONL file store (an update line, see below).  Other exporters
 *    (OTLP, callback, memory, discard) have no place for them.
 *
 * File store update lines.  A line already written is never rewritten: an
 * operation on a trace whose line was written appends one more line, itself
 * valid Trace JSON (Trace.from_json() loads it), with the same
 * info.trace_id, no spans, state STATE_UNSPECIFIED and the metadata key
 * "mltrace.update" ("assessment", "set_tag" or "delete_tag").  It carries
 * the new assessment in info.assessments, the tag in info.tags, or the
 * deleted key in metadata "mltrace.deletedTag".  Readers merge a trace's
 * update lines into it in file order (`mltrace show` and `mltrace merge` do;
 * see docs/parity.md for a Python reader).
 *
 * Counters (mlt_get_stats()): trace_ops_queued / _delivered / _failed /
 * _dropped count the operations that went through the queue; after
 * mlt_shutdown() queued == delivered + failed.  Changes made in memory on a
 * trace in progress travel with that trace and are counted with it.
 */
#ifndef MLTRACE_ASSESSMENT_H
#define MLTRACE_ASSESSMENT_H

#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Who produced an assessment (mlflow.entities.AssessmentSourceType). */
typedef enum mlt_source_type {
  MLT_SOURCE_DEFAULT = 0,   /* MLflow's default: CODE for feedback, HUMAN for expectations */
  MLT_SOURCE_HUMAN = 1,     /* a person: a user's thumbs-up, an annotator */
  MLT_SOURCE_LLM_JUDGE = 2, /* an LLM grading the answer */
  MLT_SOURCE_CODE = 3       /* a program: a heuristic, a test */
} mlt_source_type;

/**
 * One assessment (Feedback or Expectation).  Every string is copied by the
 * call; every member but the value is optional.  Build it with
 * MLT_ASSESSMENT(), which fills struct_size.
 */
typedef struct mlt_assessment {
  size_t struct_size;           /* sizeof(mlt_assessment) */
  const char *name;             /* at most 250 bytes; feedback default "feedback", required for expectations */
  const char *value_json;       /* the value as JSON text: any JSON (true, 4.5, "good", {"a": [1]}).
                                   NULL is JSON null, allowed only for feedback that carries an error */
  mlt_source_type source_type;  /* see mlt_source_type */
  const char *source_id;        /* e.g. a user id or judge model; NULL gives "default" */
  const char *rationale;        /* feedback only: why */
  const char *const *metadata;  /* key, value, key, value, ..., NULL (MLT_KV()); values are strings */
  const char *span_id;          /* 16 hex digits: the span it is about, or NULL for the whole trace */
  const char *error_code;       /* feedback only: the assessment could not be made (AssessmentError) */
  const char *error_message;    /* feedback only: with error_code */
} mlt_assessment;

/** Compound literal of an mlt_assessment with struct_size set, e.g.
 *  mlt_log_feedback(id, MLT_ASSESSMENT(.name = "thumbs", .value_json = "true",
 *                                      .source_type = MLT_SOURCE_HUMAN, .source_id = "alice")); */
#define MLT_ASSESSMENT(...) (&(const mlt_assessment){.struct_size = sizeof(mlt_assessment), __VA_ARGS__})

/**
 * Log feedback on trace @p trace_id, like mlflow.log_feedback().
 * @param trace_id "tr-<32 hex>", the 32 hex digits alone, or a W3C
 *        traceparent ("00-<32 hex>-<16 hex>-<2 hex>"); surrounding blanks
 *        are ignored (copied).
 * @param a the feedback (copied); its value_json is checked to be JSON.
 * @return MLT_OK (recorded on the trace in progress, or queued for the
 *         export thread); MLT_EINVAL (NULL, bad id, bad struct_size, value
 *         not JSON, name too long, bad span id, odd metadata list, rationale
 *         or error on an expectation); MLT_ENOTINIT; MLT_ENOTSUP (no
 *         exporter takes assessments: configure the file store or an MLflow
 *         server); MLT_EFULL (4096 operations already wait: dropped and
 *         counted); MLT_ENOMEM.
 * Never blocks on I/O.  Thread-safety: any thread.
 */
MLT_EXTERN int mlt_log_feedback(const char *trace_id, const mlt_assessment *a);

/** Log an expectation (a ground truth: the expected answer, the facts it
 *  must contain) on trace @p trace_id, like mlflow.log_expectation().
 *  @p a->name is required; rationale and error are not allowed.  Returns and
 *  thread-safety as mlt_log_feedback(). */
MLT_EXTERN int mlt_log_expectation(const char *trace_id, const mlt_assessment *a);

/** Log feedback on the trace that @p span_in_trace belongs to (any of its
 *  spans, even one that ended, while the trace is in memory).  The span is
 *  not implied: set a->span_id to attach it to a span.
 *  @return as mlt_log_feedback(), plus MLT_ESTALE when the trace was already
 *  exported (use its id instead) and MLT_ENOTRECORDING for a non-recording
 *  span.  Thread-safety: any thread. */
MLT_EXTERN int mlt_span_log_feedback(mlt_span span_in_trace, const mlt_assessment *a);

/** Expectation twin of mlt_span_log_feedback(). */
MLT_EXTERN int mlt_span_log_expectation(mlt_span span_in_trace, const mlt_assessment *a);

/**
 * Set tag @p key to @p value on trace @p trace_id, like
 * mlflow.set_trace_tag(): in memory while the trace is in progress here,
 * else through the export thread (PATCH .../traces/{id}/tags; a file store
 * update line).  Keys are cut to 250 characters and values to 4096, as for
 * mlt_update_current_trace().
 * @return MLT_OK; MLT_EINVAL (NULL, empty key, bad id, a key the server
 *         owns: mlflow.artifactLocation, mlflow.trace.spansLocation);
 *         MLT_ENOTINIT; MLT_ENOTSUP (the trace finished and no exporter
 *         takes trace operations); MLT_EFULL; MLT_ENOMEM.
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_set_trace_tag(const char *trace_id, const char *key, const char *value);

/**
 * Delete tag @p key of trace @p trace_id, like mlflow.delete_trace_tag().
 * @return as mlt_set_trace_tag(), plus MLT_ENOTFOUND when the trace is in
 *         progress here and has no such tag.  For a finished trace the
 *         server answers; an absent tag makes the operation fail (counted in
 *         trace_ops_failed, logged).
 */
MLT_EXTERN int mlt_delete_trace_tag(const char *trace_id, const char *key);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_ASSESSMENT_H */
