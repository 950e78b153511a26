/* <mltrace/exporter.h>: where finished traces go, and the span processor view.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * Exporters run on the single export thread.  Create them, then hand them to
 * mlt_options_add_exporter() (which takes ownership); they are destroyed by
 * mlt_shutdown().  Without explicit exporters, mlt_init() builds them from the
 * environment (see mlt_options_set_tracking_uri()).
 */
#ifndef MLTRACE_EXPORTER_H
#define MLTRACE_EXPORTER_H

#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_exporter mlt_exporter;
typedef struct mlt_span_view mlt_span_view;
typedef struct mlt_memory_store mlt_memory_store;

/** Free an exporter that was never handed to mlt_options_add_exporter().
 *  NULL is a no-op. */
MLT_EXTERN void mlt_exporter_free(mlt_exporter *exporter);

/* ---- Local file store (the embedded default) ------------------------- */

/**
 * Exporter appending one trace per line to @p path, in MLflow's Trace JSON
 * ({"info": ..., "data": {"spans": [...]}}), loadable line by line with
 * mlflow.entities.Trace.from_json().  Lines are whole even when several
 * processes append to the same file (O_APPEND, one write per batch under an
 * advisory lock).  The file is created (0644) on first write.
 * @param path file path (copied); NULL gives MLTRACE_FILE or "traces.jsonl".
 * @return MLT_OK; MLT_EINVAL (out NULL); MLT_ENOMEM.
 */
MLT_EXTERN int mlt_exporter_file_new(const char *path, mlt_exporter **out);

/* ---- MLflow tracking server ------------------------------------------ */

/**
 * Exporter sending traces to an MLflow tracking server with the two writes
 * the Python SDK makes: each trace's TraceInfo (previews, metadata, tags,
 * state, duration) to {uri}/api/3.0/mlflow/traces (StartTraceV3), and the
 * spans of a batch of traces over OTLP/HTTP protobuf to {uri}/v1/traces
 * (header x-mlflow-experiment-id) -- TraceInfos first, which costs MLflow's
 * SQL store less (README, "Sending traces to an MLflow server").  When the server has no
 * OTLP endpoint (404/501: FileStore backend, MLflow < 3.4) it switches to
 * StartTraceV3 plus the traces.json artifact upload.
 * Retries connection errors, timeouts and HTTP 408, 429, 500, 502, 503, 504
 * with exponential backoff and jitter within a budget
 * (MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT, in seconds, default 500; request
 * timeout MLFLOW_HTTP_REQUEST_TIMEOUT, default 120 s: MLflow's defaults).
 * While 8192 traces or 64 MiB of serialized traces wait for the server, the
 * export thread stops taking traces from the queue (backpressure; the queue,
 * bounded in bytes, absorbs the rest); what cannot be delivered goes to the
 * spool (MLTRACE_SPOOL_DIR) or is counted (see mlt_stats).  Authentication
 * from MLFLOW_TRACKING_TOKEN (bearer) or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (basic);
 * TLS verified unless MLFLOW_TRACKING_INSECURE_TLS is true; CA file from
 * MLFLOW_TRACKING_SERVER_CERT_PATH.  These settings are read by mlt_init()
 * (not when mlt_options_use_env(opts, 0) said to ignore the environment).
 * Credentials never appear in logs.
 * @param tracking_uri "http(s)://host:port[/prefix]" (copied).
 * @param experiment_id experiment id (copied), or NULL.
 * @param experiment_name experiment name (copied), looked up — and created
 *        when missing — on the export thread when no id is given, or NULL.
 *        Neither: experiment "0".
 * @return MLT_OK; MLT_EINVAL (out NULL, or not an http(s) URI); MLT_EIO
 *         (curl_global_init failed); MLT_ENOMEM.
 * libcurl: calls curl_global_init() here and curl_global_cleanup() when the
 * exporter is destroyed (libcurl counts them).
 */
MLT_EXTERN int mlt_exporter_mlflow_new(const char *tracking_uri, const char *experiment_id,
                                       const char *experiment_name, mlt_exporter **out);

/* ---- OTLP/HTTP for any OpenTelemetry backend ------------------------- */

/**
 * Exporter sending traces as OTLP/HTTP protobuf (ExportTraceServiceRequest)
 * to @p endpoint, e.g. "http://collector:4318/v1/traces".  Span attributes
 * keep MLflow's keys (mlflow.spanType, mlflow.spanInputs, ...), so an MLflow
 * server fed through an OpenTelemetry Collector shows the same trace.
 * Resource attribute service.name from mlt_options_set_service_name(), else
 * OTEL_SERVICE_NAME, else the program name; gzip when
 * OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION=gzip; request timeout
 * OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT (ms, default 10000); same retry policy
 * and backlog bound as the MLflow exporter.  Settings are read by
 * mlt_init(), as for the MLflow exporter.
 * @param endpoint full URL (copied).
 * @param headers extra headers as in OTEL_EXPORTER_OTLP_HEADERS,
 *        "key1=value1,key2=value2" with URL-encoded values (copied), or NULL.
 * @return MLT_OK; MLT_EINVAL; MLT_EIO; MLT_ENOMEM.
 */
MLT_EXTERN int mlt_exporter_otlp_new(const char *endpoint, const char *headers, mlt_exporter **out);

/* ---- In-memory store (tests) ----------------------------------------- */

/** Create an empty, reference-counted store of exported traces.
 *  Thread-safety: every mlt_memory_store_* call is thread-safe. */
MLT_EXTERN mlt_memory_store *mlt_memory_store_new(void);
/** Drop a reference (NULL is a no-op). */
MLT_EXTERN void mlt_memory_store_release(mlt_memory_store *store);
/** Number of traces stored. */
MLT_EXTERN size_t mlt_memory_store_count(mlt_memory_store *store);
/** Copy of trace @p i as Trace JSON (same text as a file store line), or NULL
 *  when out of range.  Free it with free(). */
MLT_EXTERN char *mlt_memory_store_get(mlt_memory_store *store, size_t i);
/** Remove every stored trace. */
MLT_EXTERN void mlt_memory_store_clear(mlt_memory_store *store);
/** Exporter writing into @p store (which it retains). */
MLT_EXTERN int mlt_exporter_memory_new(mlt_memory_store *store, mlt_exporter **out);

/* ---- Callback (custom sinks) ----------------------------------------- */

/** Receives each finished trace as Trace JSON (@p json borrowed for the call,
 *  NUL-terminated, @p len bytes).  Runs on the export thread; return 0 on
 *  success or a negative mlt_status to count the trace as failed. */
typedef int (*mlt_export_fn)(const char *json, size_t len, void *user_data);
/** Exporter calling @p fn for every trace. */
MLT_EXTERN int mlt_exporter_callback_new(mlt_export_fn fn, void *user_data, mlt_exporter **out);

/* ---- Discard (overhead measurements) --------------------------------- */

/** Exporter that accepts every trace and writes nothing (the span processor
 *  still runs).  For measuring tracing overhead, or for keeping counters
 *  without output. */
MLT_EXTERN int mlt_exporter_discard_new(mlt_exporter **out);

/* ---- Span processor view (see mlt_options_set_span_processor()) ------ */

/* All view functions: thread-safety "export thread only, during the
 * processor call"; returned pointers are borrowed until the next call on the
 * same view; setters copy their arguments. */

/** Span name. */
MLT_EXTERN const char *mlt_span_view_name(const mlt_span_view *v);
/** Span type string ("LLM", a custom type, ...). */
MLT_EXTERN const char *mlt_span_view_type(const mlt_span_view *v);
/** Inputs as JSON text (length in *len), or NULL when unset. */
MLT_EXTERN const char *mlt_span_view_inputs(mlt_span_view *v, size_t *len);
/** Outputs as JSON text (length in *len), or NULL when unset. */
MLT_EXTERN const char *mlt_span_view_outputs(mlt_span_view *v, size_t *len);
/** Value of attribute @p key as JSON text (a string attribute comes back
 *  quoted), or NULL when unset. */
MLT_EXTERN const char *mlt_span_view_attr(mlt_span_view *v, const char *key, size_t *len);
/** Replace the inputs with JSON text (NULL removes them). */
MLT_EXTERN int mlt_span_view_set_inputs_json(mlt_span_view *v, const char *json);
/** Replace the outputs with JSON text (NULL removes them). */
MLT_EXTERN int mlt_span_view_set_outputs_json(mlt_span_view *v, const char *json);
/** Replace attribute @p key with a string value. */
MLT_EXTERN int mlt_span_view_set_attr_str(mlt_span_view *v, const char *key, const char *value);
/** Remove attribute @p key. */
MLT_EXTERN int mlt_span_view_remove_attr(mlt_span_view *v, const char *key);
/** Remove every event of the span (stream chunks and exceptions included). */
MLT_EXTERN int mlt_span_view_drop_events(mlt_span_view *v);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_EXPORTER_H */
