/* lib/export/assess-internal.h: trace operations (feedback, expectations, tags on a
 * finished trace) between the public API (lib/export/assess.c), their delivery to
 * an MLflow server (lib/export/assess-mlflow.c), the export pipeline
 * (pipeline.c) and the exporters (exporters.c, mlflow.c).  Calls point one
 * way: the pipeline calls the operations (mlt__ops_*), which reach the
 * pipeline only through the mlt__ops_host it gives them; assess.c calls
 * assess-mlflow.c, which reports back through the callback it is given
 * (tests/check-layers.sh: no call cycle between the files of export/). */
#ifndef MLT_ASSESS_INTERNAL_H
#define MLT_ASSESS_INTERNAL_H

#include "export/exporter-internal.h"

/* ---- one operation ---------------------------------------------------- */

enum { MLT__OP_ASSESSMENT = 1, MLT__OP_SET_TAG, MLT__OP_DEL_TAG };

typedef struct mlt__op {
  struct mlt__op *next; /* submission stack, then the export thread's FIFO */
  int kind;             /* MLT__OP_* */
  char trace_id[MLT_TRACE_ID_SIZE];
  uint64_t hi, lo;
  char *key, *value; /* tag key and value (value NULL for a deletion) */
  char *json;        /* MLT__OP_ASSESSMENT: one Assessment JSON object */
  int64_t submit_ns; /* wall clock, for the file store's update line */
  uint64_t barrier;  /* traces enqueued before it: delivered after those */
  /* export thread */
  int started, finished;
  int remaining; /* exporters still working on it */
  int failed;
} mlt__op;

/* An exporter reports its part of |op| (export thread).  |why| is logged
 * (rate-limited) when !ok.  assess.c's mlt__op_done() is the one. */
typedef void (*mlt__op_done_fn)(mlt__op *op, int ok, const char *why);
void mlt__op_done(mlt__op *op, int ok, const char *why);

/* ---- delivery to an MLflow server (assess-mlflow.c) ------------------ */

/* Start delivering |op| to MLflow exporter |e|: wait until the server holds
 * the trace (and StartTraceV3 finalized it), then send the request; calls
 * |done| once.  Returns -1 (nothing done) if |e| is not an MLflow
 * exporter. */
int mlt__op_mlflow_start(mlt__op *op, mlt_exporter *e, mlt__op_done_fn done);
/* 1 if |e| is an MLflow exporter. */
int mlt__op_mlflow_accepts(mlt_exporter *e);
/* Start what is due; returns when (monotonic ns) it next needs to run, or 0. */
int64_t mlt__op_mlflow_poll(int64_t now_mono_ns);
/* Fail every job still waiting (shutdown deadline). */
void mlt__op_mlflow_abandon(const char *why);
void mlt__op_mlflow_atfork_child(void);

/* ---- accessors added to the exporters -------------------------------- */

/* Path of a file store exporter, or NULL if |e| is another kind
 * (exporters.c). */
const char *mlt__exporter_file_path(const mlt_exporter *e);
/* Server URL (no trailing '/') and HTTP settings (auth, TLS, timeouts) of
 * an MLflow exporter; -1 if |e| is another kind (mlflow.c).  Valid while
 * the exporter lives. */
int mlt__exporter_mlflow_target(const mlt_exporter *e, const char **base_url, const mlt__http_cfg **cfg);

/* ---- the pipeline (pipeline.c) --------------------------------------- */

/* Hand a finished trace to the export queue (drops and counts when full);
 * the core reaches it through mlt__g_trace_sink (pipeline.c). */
void mlt__pipeline_enqueue(mlt__trace *t);
/* Memory a finished trace holds (what the export queue's bound counts;
 * pipeline.c). */
size_t mlt__trace_bytes(mlt__trace *t);

/* ---- hooks called by the pipeline (assess.c) ------------------------- */

/* What the pipeline gives the trace operations: the only way they reach it.
 * The functions are thread-safe; the table lives as long as the library. */
typedef struct mlt__ops_host {
  /* Traces accepted by the export queue, and traces fully exported or
   * failed, since mlt_init(): an operation waits for the traces accepted
   * before it. */
  uint64_t (*enqueued)(void);
  uint64_t (*done)(void);
  void (*wakeup)(void);              /* wake the export thread */
  const char *(*experiment_id)(void); /* the configured experiment id, "0" when none */
} mlt__ops_host;

/* mlt_init(), before the export thread starts: which exporters take trace
 * operations, the pipeline's hooks (|host|, kept); counters reset. */
void mlt__ops_start(mlt_exporter *exporters, const mlt__ops_host *host);
/* Export thread, every loop: deliver what is due.  Returns when
 * (monotonic ns) it next needs to run, or 0. */
int64_t mlt__ops_poll(int64_t now_mono_ns);
/* 1 when no operation waits or is in flight. */
int mlt__ops_idle(void);
/* Shutdown deadline reached (export thread): fail what is left. */
void mlt__ops_abandon(void);
/* mlt_flush(): wait until the operations submitted before the call were
 * delivered or failed, or |deadline_mono_ns| passes.  MLT_OK; MLT_ETIMEDOUT;
 * MLT_EIO when an operation failed or was dropped since the previous flush. */
int mlt__ops_flush(int64_t deadline_mono_ns);
/* mlt_shutdown(), after the export thread stopped: count what is left as
 * failed and free everything. */
void mlt__ops_stop(void);
/* Fill the trace_ops_* counters of |s|. */
void mlt__ops_stats(mlt_stats *s);
/* Child of fork(): forget the state without freeing it. */
void mlt__ops_atfork_child(void);

#endif /* MLT_ASSESS_INTERNAL_H */
