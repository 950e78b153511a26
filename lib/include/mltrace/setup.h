/* <mltrace/setup.h>: process-wide set-up, shutdown, configuration, counters.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * Life cycle: mlt_init() once, trace, mlt_shutdown() once.  Every other call
 * made before mlt_init() or after mlt_shutdown() is a harmless no-op that
 * returns MLT_ENOTINIT (or MLT_SPAN_NONE).  mlt_init() may be called again
 * after mlt_shutdown().  mlt_init() and mlt_shutdown() themselves must not
 * race with each other or with calls on other threads that are still using
 * the library (join your threads, or stop tracing in them, first), as with
 * curl_global_cleanup().
 *
 * fork(): in the child of a process that traces, libmltrace is off (the
 * export thread did not follow; traces in progress stay the parent's, and
 * the child's calls are no-ops).  Call mlt_init() again in the child to trace
 * there — the usual pattern for prefork servers is to fork first and call
 * mlt_init() in each worker.
 */
#ifndef MLTRACE_SETUP_H
#define MLTRACE_SETUP_H

#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_options mlt_options;
typedef struct mlt_exporter mlt_exporter;
typedef struct mlt_span_view mlt_span_view;

/** Log levels of the diagnostics hook. */
typedef enum mlt_log_level {
  MLT_LOG_OFF = 0,
  MLT_LOG_ERROR = 1,
  MLT_LOG_WARN = 2,
  MLT_LOG_INFO = 3,
  MLT_LOG_DEBUG = 4
} mlt_log_level;

/** Diagnostics hook.  @p msg is borrowed for the call.  It may be called from
 *  any thread (most often the export thread) and must not call back into
 *  libmltrace.  Messages never contain credentials. */
typedef void (*mlt_log_fn)(mlt_log_level level, const char *msg, void *user_data);

/** Span processor: called on the export thread for every span of a finished
 *  trace, before any exporter sees it, so that it can redact inputs, outputs
 *  and attributes (see mlt_span_view_* in <mltrace/exporter.h>).  @p span is
 *  valid only during the call.  Must not call back into tracing APIs other
 *  than mlt_span_view_*. */
typedef void (*mlt_span_processor_fn)(mlt_span_view *span, void *user_data);

/* ---- Options --------------------------------------------------------- */

/** Create an options object with every setting at its default.
 *  Environment variables are applied later, by mlt_init(), under the explicit
 *  settings (explicit settings win).
 *  @return MLT_OK, MLT_EINVAL (out NULL), MLT_ENOMEM.
 *  Ownership: *out is the caller's; free it with mlt_options_free().
 *  Thread-safety: an options object is used by one thread at a time. */
MLT_EXTERN int mlt_options_new(mlt_options **out);

/** Free an options object and any exporter still attached to it.  NULL is a
 *  no-op.  mlt_init() copies what it needs, so the object may be freed right
 *  after mlt_init() returns. */
MLT_EXTERN void mlt_options_free(mlt_options *opts);

/* All setters below: @p opts NULL gives MLT_EINVAL; strings are copied; a
 * NULL string resets the setting to its default.  Setters that take a range
 * return MLT_EINVAL for values outside it and leave the setting unchanged. */

/** Service name (resource attribute service.name; default: OTEL_SERVICE_NAME,
 *  else the program name). */
MLT_EXTERN int mlt_options_set_service_name(mlt_options *opts, const char *name);
/** MLflow experiment id for trace_location (default MLFLOW_EXPERIMENT_ID, else "0"). */
MLT_EXTERN int mlt_options_set_experiment_id(mlt_options *opts, const char *experiment_id);
/** MLflow experiment name, looked up (and created when missing) by the MLflow
 *  exporter (default MLFLOW_EXPERIMENT_NAME). */
MLT_EXTERN int mlt_options_set_experiment_name(mlt_options *opts, const char *name);
/** MLflow tracking URI.  "http://..." or "https://..." selects the MLflow
 *  server exporter; "file:PATH" or a plain path selects the local file store;
 *  default MLFLOW_TRACKING_URI, else the local file store. */
MLT_EXTERN int mlt_options_set_tracking_uri(mlt_options *opts, const char *uri);
/** OTLP/HTTP traces endpoint (full URL, e.g. http://host:4318/v1/traces).
 *  Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
 *  OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces", else none. */
MLT_EXTERN int mlt_options_set_otlp_endpoint(mlt_options *opts, const char *url);
/** Path of the local JSONL file store.  Setting it adds the file store even
 *  when a server exporter is configured.  Default: MLTRACE_FILE, else
 *  "traces.jsonl" in the working directory when no other exporter is set. */
MLT_EXTERN int mlt_options_set_file_path(mlt_options *opts, const char *path);
/** Trace sampling ratio in [0, 1], decided once per trace (default
 *  MLFLOW_TRACE_SAMPLING_RATIO, else 1). */
MLT_EXTERN int mlt_options_set_sampling_ratio(mlt_options *opts, double ratio);
/** 1 to trace (default, or MLFLOW_TRACING_ENABLED), 0 for the disabled mode in
 *  which span calls cost a few nanoseconds and record nothing. */
MLT_EXTERN int mlt_options_set_enabled(mlt_options *opts, int enabled);
/** Trace timeout in milliseconds; 0 = none (default MLFLOW_TRACE_TIMEOUT_SECONDS).
 *  Spans still open that long after their trace started are ended with status
 *  ERROR and a message, and the trace is exported. */
MLT_EXTERN int mlt_options_set_trace_timeout_ms(mlt_options *opts, int64_t ms);
/** Most finished traces waiting for export, 16..1048576 (default: no limit
 *  in traces, only the byte bound of mlt_options_set_queue_max_bytes();
 *  MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE sets it from the environment).
 *  A trace that finds the queue full is dropped and counted
 *  (mlt_stats.traces_dropped); the application thread never waits. */
MLT_EXTERN int mlt_options_set_queue_size(mlt_options *opts, uint32_t traces);
/** Bound of the export queue in bytes: the memory finished traces hold while
 *  they wait for the export thread (spans, their values and events),
 *  1 MiB..1 TiB (default 256 MiB, or MLTRACE_QUEUE_MAX_BYTES).  It is a cap,
 *  not a reservation: memory is used only while traces wait.  A trace that
 *  would pass it is dropped and counted. */
MLT_EXTERN int mlt_options_set_queue_max_bytes(mlt_options *opts, uint64_t bytes);
/** Durable spool of the network exporters (MLflow, OTLP): finished traces
 *  they cannot deliver (server down or too slow, shutdown deadline) are
 *  written to append-only files under @p dir and delivered when the server
 *  is back, by this process or by the next one that starts with the same
 *  directory and destination.  @p dir NULL: the default (MLTRACE_SPOOL_DIR,
 *  else $XDG_STATE_HOME/mltrace/spool, else ~/.local/state/mltrace/spool).
 *  The directory is created when first needed. */
MLT_EXTERN int mlt_options_set_spool_dir(mlt_options *opts, const char *dir);
/** 1 (default, or MLTRACE_SPOOL=on) to use the spool with network
 *  exporters, 0 to turn it off (undeliverable traces are then counted as
 *  failed). */
MLT_EXTERN int mlt_options_set_spool_enabled(mlt_options *opts, int enabled);
/** Most bytes the spool keeps per destination, 1 MiB..1 TiB (default 1 GiB,
 *  or MLTRACE_SPOOL_MAX_BYTES); past it the oldest records are evicted and
 *  counted (mlt_stats.traces_evicted). */
MLT_EXTERN int mlt_options_set_spool_max_bytes(mlt_options *opts, uint64_t bytes);
/** Longest time a finished trace waits before the export thread picks it up,
 *  1..60000 ms (default 200). */
MLT_EXTERN int mlt_options_set_schedule_delay_ms(mlt_options *opts, uint32_t ms);
/** Deadline used by mlt_shutdown(-1), 0..600000 ms (default 5000, or
 *  MLTRACE_SHUTDOWN_TIMEOUT_MS). */
MLT_EXTERN int mlt_options_set_shutdown_timeout_ms(mlt_options *opts, uint32_t ms);
/** Largest stored size of one value (inputs, outputs, an attribute, a chunk),
 *  in bytes, 64..1073741824 (default 1 MiB, or MLTRACE_MAX_VALUE_BYTES).
 *  Larger values are truncated at a UTF-8 boundary and exported as a string
 *  ending in "...[truncated by mltrace: N bytes]"; the truncation is counted. */
MLT_EXTERN int mlt_options_set_max_value_bytes(mlt_options *opts, uint32_t bytes);
/** Most spans recorded per trace, 1..1000000 (default 10000).  Further spans
 *  are not recorded; they are counted in mlt_stats.spans_over_limit. */
MLT_EXTERN int mlt_options_set_max_spans_per_trace(mlt_options *opts, uint32_t spans);
/** Most events recorded per span (stream chunks included), 0..1000000
 *  (default 1000).  Further events are counted on the span
 *  (attribute mltrace.droppedEvents) and in mlt_stats.events_dropped. */
MLT_EXTERN int mlt_options_set_max_events_per_span(mlt_options *opts, uint32_t events);
/** Diagnostics hook and level (default: WARN and ERROR to stderr, at most
 *  one line per second per message kind; level from MLTRACE_LOG_LEVEL =
 *  off|error|warn|info|debug).  @p fn NULL restores the default sink. */
MLT_EXTERN int mlt_options_set_log(mlt_options *opts, mlt_log_level level, mlt_log_fn fn, void *user_data);
/** Span processor run on the export thread before export (redaction). */
MLT_EXTERN int mlt_options_set_span_processor(mlt_options *opts, mlt_span_processor_fn fn, void *user_data);
/** Add an exporter.  Takes ownership of @p exporter (also on failure).  When
 *  any exporter is added explicitly, the environment does not add others. */
MLT_EXTERN int mlt_options_add_exporter(mlt_options *opts, mlt_exporter *exporter);
/** 0 to ignore the environment entirely (tests), 1 (default) to read it. */
MLT_EXTERN int mlt_options_use_env(mlt_options *opts, int use_env);

/* ---- Life cycle ------------------------------------------------------ */

/**
 * Initialize the library: read the environment, start the export thread,
 * create the exporters.
 * @param opts options, or NULL for environment and defaults only.  The
 *             object stays the caller's, but the exporters attached to it
 *             move into the library (the object is left without exporters).
 * @return MLT_OK; MLT_EALREADY if already initialized (nothing changes);
 *         MLT_EINVAL for unusable settings (e.g. an unsupported tracking URI);
 *         MLT_ENOMEM; MLT_EIO when the export thread cannot be started.
 *         Invalid environment values are logged and replaced by defaults.
 * Thread-safety: see the header comment (not concurrently with other calls).
 */
MLT_EXTERN int mlt_init(mlt_options *opts);

/**
 * Shut down: traces still in progress are ended (open spans get status ERROR
 * with the message "span still open at shutdown"), everything queued is
 * exported until @p timeout_ms elapses, then the export thread stops and all
 * memory is released.  What could not be exported by the deadline is counted
 * in mlt_stats.traces_failed.  Never hangs past the deadline (plus the time of
 * one in-flight write to a local file).
 * @param timeout_ms deadline in ms, or -1 for the configured shutdown timeout.
 * @return MLT_OK when everything was exported; MLT_ETIMEDOUT when the deadline
 *         cut the export short; MLT_ENOTINIT when not initialized.
 * The counters stay readable with mlt_get_stats() after shutdown, until the
 * next mlt_init().
 */
MLT_EXTERN int mlt_shutdown(int timeout_ms);

/**
 * Export everything finished so far and wait until it is written/sent or
 * @p timeout_ms passes.  Traces still in progress are not touched.
 * @return MLT_OK when every trace finished since the previous mlt_flush()
 *         (or mlt_init()) was delivered; MLT_EIO when any of them was
 *         dropped, failed, or stored only partially (see mlt_get_stats());
 *         MLT_ETIMEDOUT when the deadline came first; MLT_EPENDING when
 *         some went to the durable spool instead (delivered later);
 *         MLT_ENOTINIT.
 * Thread-safety: any thread (blocks the caller; never call it from a
 * latency-sensitive loop).
 */
MLT_EXTERN int mlt_flush(int timeout_ms);

/** Turn tracing on or off at run time (an atomic flag; no pipeline rebuild).
 *  Spans started while off are not recorded; spans already open finish
 *  normally.  No-op before init.  Thread-safety: any thread. */
MLT_EXTERN void mlt_set_enabled(int enabled);

/** 1 if initialized and enabled.  Thread-safety: any thread. */
MLT_EXTERN int mlt_is_enabled(void);

/* ---- Counters -------------------------------------------------------- */

/** Process-wide counters since mlt_init().  Fields are only ever appended. */
typedef struct mlt_stats {
  uint64_t traces_started;     /* recording traces created */
  uint64_t spans_started;      /* recording spans created */
  uint64_t traces_sampled_out; /* traces not recorded because of sampling */
  uint64_t traces_finished;    /* traces handed to the export queue or dropped */
  uint64_t traces_exported;    /* traces every exporter accepted */
  uint64_t spans_exported;     /* spans of those traces */
  uint64_t traces_dropped;     /* traces dropped because the queue was full */
  uint64_t spans_dropped;      /* spans of those traces */
  uint64_t traces_failed;      /* traces at least one exporter gave up on */
  uint64_t spans_failed;       /* spans of those traces */
  uint64_t traces_timed_out;   /* traces ended by the trace timeout */
  uint64_t spans_timed_out;    /* open spans ended by the timeout or shutdown */
  uint64_t spans_over_limit;   /* spans not recorded: max_spans_per_trace */
  uint64_t events_dropped;     /* events not recorded: max_events_per_span */
  uint64_t values_truncated;   /* values cut to max_value_bytes */
  uint64_t invalid_json;       /* JSON texts that did not parse (exported as strings) */
  uint64_t misuse;             /* API misuse reported with an error code */
  uint64_t queue_capacity;     /* most traces the export queue holds; 0: bounded in bytes only */
  uint64_t queue_depth;        /* traces waiting in the queue now */
  uint64_t export_requests;    /* writes/requests made by exporters */
  uint64_t export_retries;     /* retried requests */
  uint64_t export_bytes;       /* bytes written/sent by exporters */
  /* Delivery (appended).  Every finished trace ends in exactly one of
   *   traces_exported + traces_partial + traces_failed + traces_dropped
   *   + traces_spooled + traces_pending  (= traces_finished)
   * exactly so once quiescent (after mlt_flush() returned MLT_OK or after
   * mlt_shutdown()); traces_pending is 0 after mlt_shutdown(). */
  uint64_t traces_partial;     /* MLflow: part of the trace stored -- spans without TraceInfo (tags,
                                  metadata, previews), or (spool off, spans refused after the
                                  TraceInfo went first) the TraceInfo without spans */
  uint64_t spans_partial;      /* spans of those traces */
  uint64_t traces_spooled;     /* not delivered yet: written to the durable spool instead */
  uint64_t traces_replayed;    /* traces delivered from the spool (this run's or an earlier run's) */
  uint64_t traces_evicted;     /* traces removed unsent from a full spool (oldest first) */
  uint64_t traces_pending;     /* queued or in flight now */
  uint64_t queue_bytes;        /* memory held by the queued traces now */
  uint64_t queue_max_bytes;    /* the queue's byte bound */
  uint64_t queue_bytes_peak;   /* highest queue_bytes since mlt_init() */
  uint64_t work_queue_rejected; /* jobs mlt_work_queue_submit*() refused (full, timed out, stopping) */
  /* Operations on finished traces (<mltrace/assessment.h>: feedback,
   * expectations, tags set or deleted); after mlt_shutdown(),
   * trace_ops_queued == trace_ops_delivered + trace_ops_failed. */
  uint64_t trace_ops_queued;    /* accepted for the export thread */
  uint64_t trace_ops_delivered; /* applied by every exporter that takes them */
  uint64_t trace_ops_failed;    /* not applied: unknown trace, server error, shutdown deadline */
  uint64_t trace_ops_dropped;   /* refused with MLT_EFULL: too many were waiting */
} mlt_stats;

/** Format @p stats as one line of "name=value" pairs for a log or an exit
 *  summary, e.g. "finished=10 exported=9 partial=0 failed=1 dropped=0
 *  spooled=0 pending=0 replayed=0 evicted=0 retries=3".  Counters that are
 *  0 are written too, so the line always has the same fields.
 *  @p stats NULL: the current counters (mlt_get_stats()).
 *  @return the length of the full line (like snprintf; the output is cut
 *  to @p size - 1 bytes and NUL-terminated when @p size > 0), or MLT_EINVAL
 *  when @p buf is NULL with @p size > 0.  Thread-safety: any thread. */
MLT_EXTERN int mlt_stats_format(const mlt_stats *stats, char *buf, size_t size);

/** Read the counters into @p out.  @p size must be sizeof(mlt_stats) as the
 *  caller knows it (older callers get a prefix).
 *  @return MLT_OK; MLT_EINVAL if out is NULL or size is 0.  Before the first
 *  mlt_init() every counter is 0.  Thread-safety: any thread. */
MLT_EXTERN int mlt_get_stats(mlt_stats *out, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_SETUP_H */
