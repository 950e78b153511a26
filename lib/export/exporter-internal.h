/* lib/export/exporter-internal.h: the exporter interface (one ops table), prepared
 * traces, and the serializers every exporter shares.  Of the core it
 * includes only the read-only view of a finished trace (core/trace-view.h);
 * exporters and serializers include nothing more of core/
 * (tests/check-layers.sh). */
#ifndef MLT_EXPORTER_INTERNAL_H
#define MLT_EXPORTER_INTERNAL_H

#include "core/trace-view.h"
#include "export/spool-internal.h"
#include "net/http-internal.h"
#include "util/json-internal.h"

/* Per-trace values the serializers share (previews, token usage, ...). */
typedef struct mlt__trace_info {
  char trace_id[MLT_TRACE_ID_SIZE];
  int64_t start_ns, end_ns;
  int state_error;
  mlt__buf request_preview, response_preview; /* JSON string bodies (escaped, no quotes) */
  int has_request_preview, has_response_preview;
  const char *client_request_id;
  const char *session, *user;
  mlt__buf token_usage; /* summed mlflow.chat.tokenUsage, or empty */
  int usage_ready;      /* token_usage computed (with the spans' JSON) */
  int late_ready;       /* trace_name and the previews computed (same) */
  mlt__tinfo *info;     /* trace-level updates, newest first */
  const char *trace_name;
  size_t trace_name_len;
} mlt__trace_info;

/* A finished trace as exporters see it: spans ordered root first, parents
 * before children, span processor already applied.  Valid only during
 * export_batch(); asynchronous exporters serialize what they need. */
typedef struct mlt__prepared {
  mlt__trace *t;
  mlt__score **spans;
  uint32_t n;
  int root;        /* index of the root span in spans[], or -1 (continuation) */
  int32_t *parent; /* parent index of each span, or -1 */
  uint32_t ticket;
  char trace_id[MLT_TRACE_ID_SIZE];
  const char *experiment_id; /* the configured experiment (trace_location); never NULL */
  /* Computed on first use by mlt__prepared_info(), once for all exporters;
   * its buffers are kept across batches (the pipeline frees them). */
  mlt__trace_info ti;
  int ti_ready;
} mlt__prepared;

/* The trace-level values of |p|, computed the first time they are asked for
 * in a batch (export thread): ids, the trace-level updates, times, state.
 * trace_name, the previews and token_usage are filled in by the JSON
 * serializers (mlt__json_trace, mlt__json_trace_info) after they wrote the
 * spans (which validates their JSON values on the way). */
const mlt__trace_info *mlt__prepared_info(mlt__prepared *p);
void mlt__trace_info_free(mlt__trace_info *ti);

/* The exporter interface: one table per exporter kind.  Every function runs
 * on the export thread unless said otherwise.  Initialize with designated
 * initializers; optional entries may be left NULL. */
/* What mlt_init() gives every exporter when it starts it: the resolved
 * settings an exporter may need and the pipeline's hooks for the transport.
 * Exporters read no global configuration; they keep what they need from
 * here (strings are valid until mlt_shutdown() returns). */
typedef struct mlt__export_env {
  const char *service_name; /* OTLP resource service.name; NULL: the program's name */
  const char *otlp_compression; /* "gzip", "none" or NULL */
  int64_t mlflow_timeout_ms, otlp_timeout_ms, retry_budget_ms;
  int insecure_tls;
  const char *ca_path, *tracking_token, *tracking_user, *tracking_password;
  mlt__spool_settings spool;
  mlt__http_settings http; /* for mlt__http_open() */
} mlt__export_env;

typedef struct mlt__exporter_ops {
  const char *name;
  /* Called once by mlt_init(), on its caller's thread, before the export
   * thread starts, with the settings of this run.  Optional. */
  int (*start)(mlt_exporter *e, const mlt__export_env *env);
  /* Export |n| traces.  Report each one with mlt__export_result(), now
   * (synchronous exporters) or later from poll() (asynchronous ones, which
   * must copy what they need: the traces are freed when this returns). */
  void (*export_batch)(mlt_exporter *e, mlt__prepared *const *traces, size_t n);
  /* Drive asynchronous work.  Returns the monotonic time (ns) at which it
   * wants to run again, or 0 for "no timer".  Optional. */
  int64_t (*poll)(mlt_exporter *e, int64_t now_mono_ns);
  /* Traces accepted but not yet reported.  Optional (0). */
  size_t (*in_flight)(mlt_exporter *e);
  /* Backpressure: 0 while the exporter cannot take another batch (its
   * in-flight window is full); the export thread then stops dequeuing and
   * waits for poll() to make progress.  Optional (always ready). */
  int (*ready)(mlt_exporter *e);
  /* The shutdown deadline passed: report everything still in flight (as
   * spooled when the spool took it, else failed) and stop.  Optional. */
  void (*abandon)(mlt_exporter *e);
  /* Free the exporter (any thread, after the export thread stopped). */
  void (*destroy)(mlt_exporter *e);
} mlt__exporter_ops;

/* Outcome of one trace at one exporter, from best to worst; a trace's
 * outcome is the worst its exporters report. */
enum {
  MLT__OUT_OK = 0,      /* delivered completely */
  MLT__OUT_SPOOLED = 1, /* written to the durable spool for a later attempt */
  MLT__OUT_PARTIAL = 2, /* MLflow: spans stored, TraceInfo not */
  MLT__OUT_FAILED = 3   /* not delivered (as far as the exporter knows) */
};

/* The pipeline as an exporter sees it: the only way back from an exporter
 * to the pipeline (lib/export/pipeline.c fills it; mlt_init() sets e->host
 * before start()).  Export thread only. */
typedef struct mlt__export_host {
  /* Completion of one trace by one exporter, with an MLT__OUT_* outcome.
   * |why| is logged (rate-limited) for PARTIAL and FAILED, and kept for the
   * shutdown summary. */
  void (*result)(mlt_exporter *e, uint32_t ticket, int outcome, const char *why);
  /* 1 once mlt_shutdown() began (exporters start no new optional work). */
  int (*stopping)(void);
  /* 1 once mlt_shutdown()'s deadline has passed: synchronous exporters stop
   * in the middle of a batch and report the rest as failed. */
  int (*deadline_passed)(void);
} mlt__export_host;

struct mlt_exporter {
  const mlt__exporter_ops *ops;
  mlt_exporter *next;
  int failed_start;
  int spooling; /* keeps what it cannot deliver in the durable spool */
  const mlt__export_host *host; /* set by mlt_init() */
};

/* The exporter's side of mlt__export_host. */
static inline void mlt__export_result(mlt_exporter *e, uint32_t ticket, int outcome, const char *why) {
  e->host->result(e, ticket, outcome, why);
}
/* The same with ok = MLT__OUT_OK, !ok = MLT__OUT_FAILED. */
static inline void mlt__export_done(mlt_exporter *e, uint32_t ticket, int ok, const char *why) {
  e->host->result(e, ticket, ok ? MLT__OUT_OK : MLT__OUT_FAILED, why);
}
static inline int mlt__export_stopping(const mlt_exporter *e) { return e->host->stopping(); }
static inline int mlt__export_deadline_passed(const mlt_exporter *e) { return e->host->deadline_passed(); }

/* The in-flight window of a network exporter: traces accepted and not yet
 * reported, and request bytes held (queued, running or waiting for a
 * retry).  While it is full the exporter is not ready() and the export
 * thread stops dequeuing (backpressure): nothing fails for lack of room. */
#define MLT__NET_WINDOW_TRACES ((size_t)8192)
#define MLT__NET_WINDOW_BYTES ((size_t)64 << 20)

#define MLT__DEADLINE_REASON "shutdown deadline reached before the trace was exported"

/* ---- span digest: one pass over a span's records --------------------- */

typedef struct mlt__digest {
  const char *name;
  size_t name_len;
  const char *type; /* static name or custom string */
  size_t type_len;
  const mlt__rec *inputs, *outputs; /* last set, or NULL */
  const mlt__rec **attrs;           /* last value per key, removals applied */
  size_t n_attrs;
  const mlt__rec **events; /* EVENT records (children follow each) */
  size_t n_events;
  const mlt__rec **chunks; /* CHUNK records, in order */
  size_t n_chunks;
  int chunks_text_only;
  int status;         /* from the span (ended) */
  const mlt__rec *status_msg;
  int64_t first_chunk_ns;
  int have_func; /* mlflow.spanFunctionName made (in scratch buffer 3) */
  int type_custom; /* type is a custom string (may need escaping) */
  int type_level;  /* MLflow's spanLogLevel of a table type */
  /* scratch capacity */
  size_t cap_attrs, cap_events, cap_chunks;
  /* issue 12 part B (lib/core/spanopts.c) */
  const mlt__rec **links; /* LINK records (children follow each) */
  size_t n_links, cap_links;
  int level; /* mlflow.spanLogLevel as MLflow resolves it from the records so far; -1: not set */
  /* delta-encoded CHUNK records rebuilt as whole ones (core/trace-view.h):
   * |chunks| may point here; valid until the next mlt__digest_span() */
  char *arena;
  size_t arena_len, arena_cap;
} mlt__digest;

void mlt__digest_span(mlt__digest *d, mlt__score *s);
/* The span's mlflow.spanLogLevel: set explicitly or raised by an "exception"
 * event, else MLflow's default for its type. */
int mlt__digest_level(const mlt__digest *d);
void mlt__digest_free(mlt__digest *d);

/* Value bytes of a record, skipping the truncation header; *orig gets the
 * original length (== *len unless truncated). */
static inline const char *mlt__rec_value(const mlt__rec *r, size_t *len, uint64_t *orig) {
  const char *v = mlt__rec_val(r);
  size_t l = r->val_len;
  uint64_t o = l;
  if (r->flags & MLT__RF_TRUNC) {
    memcpy(&o, v, 8);
    v += 8;
    l -= 8;
  }
  *len = l;
  if (orig) *orig = o;
  return v;
}

/* JSON text of a value record (ATTR, FIELD, INPUTS, OUTPUTS, CHUNK): what
 * json.dumps(value) gives in Python.  Invalid JSON text becomes a JSON
 * string (counted); truncated values become strings ending in the marker. */
void mlt__value_json(mlt__buf *out, const mlt__rec *r);
/* Default outputs of a streaming span from its chunks (concatenated text, or
 * the list of chunk values). */
void mlt__chunks_output_json(mlt__buf *out, const mlt__digest *d);
/* Append |s|, replacing each invalid UTF-8 byte with U+FFFD (no escaping). */
void mlt__utf8_copy(mlt__buf *out, const char *s, size_t n);
/* 1 for the attribute keys the serializers write themselves
 * (mlflow.spanType, mlflow.spanInputs, ...): a user's value is skipped. */
int mlt__reserved_attr_key(const mlt__rec *r);
/* mlflow.spanLogLevel for a span type (MLflow's rule: ERROR 40, model and
 * tool types 20, others 10). */
int mlt__span_log_level(const char *type, size_t n, int error);

/* ---- MLflow trace JSON (file store, memory store, callbacks, artifact) */


/* Append one trace as one line of Trace JSON ({"info":..,"data":..}) and a
 * '\n'. */
void mlt__json_trace(mlt__buf *out, const mlt__prepared *p, const mlt__trace_info *ti);
/* The same line in two buffers, with no copy of the spans: appends to
 * |out| the line without the spans array's contents (its tail "]}}\n"
 * included) and to |spans| those contents (offsets within |spans| stay
 * valid across calls: it is appended to, never reset).  Returns the offset
 * in |out| where the contents belong (before the tail). */
size_t mlt__json_trace_split(mlt__buf *out, mlt__buf *spans, const mlt__prepared *p, const mlt__trace_info *ti);
/* The StartTraceV3 TraceInfo without its opening brace and without
 * trace_location (the caller prepends both: the experiment may not be known
 * yet), with execution_duration as "<s>s".  When |data| is not NULL, the
 * {"spans": [...]} object (traces.json artifact) goes there, from the same
 * serialization that sizeStats measures. */
void mlt__json_trace_info(mlt__buf *out, mlt__buf *data, const mlt__prepared *p, const mlt__trace_info *ti);

/* Scratch state for the export thread (serializers reuse it; serialize.c). */
mlt__digest *mlt__scratch_digest(void);
mlt__buf *mlt__scratch_buf(int which);

/* The span processor's view of one span (export thread). */
struct mlt_span_view {
  mlt__score *s;
  mlt__buf tmp;
};

/* Built-in exporters. */
int mlt__exporter_file_new(const char *path, mlt_exporter **out);
/* Free the OTLP encoder's scratch state (otlp.c). */
void mlt__otlp_shutdown(void);
/* Free the serializer's scratch state, also the scratch digest and buffers
 * (serialize.c). */
void mlt__serialize_shutdown(void);
/* In the child of fork(): forget that state without freeing it. */
void mlt__serialize_atfork_child(void);


#endif /* MLT_EXPORTER_INTERNAL_H */
