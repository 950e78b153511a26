/* lib/export/assess.c: feedback, expectations and tags on traces after the fact
 * (<mltrace/assessment.h>): the public calls, the assessment JSON, the
 * in-memory path for traces still in progress, the bounded queue of
 * operations on finished traces, and its driver on the export thread
 * (ordering, the file store's update lines, counters, flush, shutdown).
 *
 * An application thread validates the call and builds the JSON.  If the
 * trace is in progress in this process, the change is made on the trace
 * itself (under the trace lock, like update_current_trace) and exported with
 * it.  Otherwise the operation is pushed on a lock-free stack (one CAS;
 * bounded by a counter, never blocking) together with a barrier: the number
 * of traces the export queue had accepted.  The export thread moves pushed
 * operations into a FIFO and starts one when the traces before its barrier
 * were exported and no earlier operation on the same trace is unfinished
 * (so a set then a delete of one tag arrive in that order).  The file store
 * gets an update line at once; the MLflow server is handled by
 * lib/export/assess-mlflow.c, which first waits until the server holds the trace.
 * The pipeline drives this file (mlt__ops_*, assess-internal.h); this file
 * reaches the pipeline only through the mlt__ops_host it is started with.
 */
#include "core/span-internal.h"
#include "export/assess-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#define OPS_MAX 4096 /* operations waiting at once; more are refused (MLT_EFULL) */

/* ---- state ------------------------------------------------------------ */

static mlt__op *_Atomic g_stack;   /* pushed by application threads */
static _Atomic uint32_t g_waiting; /* pushed and not yet freed */
static _Atomic uint64_t g_queued, g_delivered, g_failed, g_dropped;
static int g_capable;               /* exporters that take queued trace operations */
static int g_json_capable;          /* exporters that write Trace JSON (assessments of a trace in progress) */
static mlt_exporter *g_exporters;  /* the pipeline's list (export thread) */
/* The pipeline's hooks (mlt__ops_start(); kept after mlt_shutdown(): the
 * table is the pipeline's static one).  Read only while g_capable is set. */
static const mlt__ops_host *g_host;
static mlt__op *g_fifo_head, *g_fifo_tail; /* export thread only */

static pthread_mutex_t g_flush_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_flush_cond = PTHREAD_COND_INITIALIZER;

static void op_free(mlt__op *op) {
  free(op->key);
  free(op->value);
  free(op->json);
  free(op);
}

/* ---- trace ids -------------------------------------------------------- */

/* "tr-<32 hex>", "<32 hex>" or a traceparent, with blanks around. */
static int parse_id(const char *s, uint64_t *hi, uint64_t *lo) {
  if (!s) return -1;
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
  char tmp[40];
  if (n == 55 && s[2] == '-' && s[35] == '-' && s[52] == '-') { /* 00-<32>-<16>-<2> */
    memcpy(tmp, s + 3, 32);
    tmp[32] = '\0';
  } else if (n == 35 && !strncasecmp(s, "tr-", 3)) {
    memcpy(tmp, s + 3, 32);
    tmp[32] = '\0';
  } else if (n == 32) {
    memcpy(tmp, s, 32);
    tmp[32] = '\0';
  } else {
    return -1;
  }
  for (int i = 0; i < 32; i++)
    if (tmp[i] >= 'A' && tmp[i] <= 'F') tmp[i] = (char)(tmp[i] + 32);
  return mlt__parse_trace_id(tmp, hi, lo);
}

/* ---- JSON ------------------------------------------------------------- */

static void put_time(mlt__buf *b, int64_t ns) {
  time_t sec = (time_t)(ns / 1000000000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  char tmp[40];
  int n = snprintf(tmp, sizeof tmp, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)((ns / 1000000) % 1000));
  mlt__buf_put(b, tmp, (size_t)n);
}

static const char *skip_ws(const char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  return s;
}

static const char *source_name(int t) {
  switch (t) {
    case MLT_SOURCE_HUMAN: return "HUMAN";
    case MLT_SOURCE_LLM_JUDGE: return "LLM_JUDGE";
    case MLT_SOURCE_CODE: return "CODE";
    default: return NULL;
  }
}

#define AFIELD(a, f) ((a)->struct_size >= offsetof(mlt_assessment, f) + sizeof((a)->f) ? (a)->f : 0)

/* Validate |a| and write it as MLflow's Assessment JSON (what
 * Assessment.to_dictionary() gives, plus a client-made assessment_id that the
 * server keeps), with |now| as its creation time. */
static int assessment_json(mlt__buf *b, const char *trace_id, int expectation, const mlt_assessment *a,
                           int64_t now) {
  if (!a || a->struct_size < offsetof(mlt_assessment, value_json) + sizeof a->value_json) return MLT_EINVAL;
  const char *name = AFIELD(a, name), *value = AFIELD(a, value_json), *sid = AFIELD(a, source_id);
  const char *rationale = AFIELD(a, rationale), *span = AFIELD(a, span_id), *ecode = AFIELD(a, error_code),
             *emsg = AFIELD(a, error_message);
  const char *const *meta = AFIELD(a, metadata);
  int stype = AFIELD(a, source_type);
  if (!name) {
    if (expectation) return MLT_EINVAL;
    name = "feedback";
  }
  if (!name[0] || strlen(name) > 250) return MLT_EINVAL;
  if (stype < MLT_SOURCE_DEFAULT || stype > MLT_SOURCE_CODE) return MLT_EINVAL;
  if (expectation && (rationale || ecode || emsg)) return MLT_EINVAL;
  if (!value && (expectation || !(ecode || emsg))) return MLT_EINVAL;
  size_t vlen = 0;
  if (value) {
    int utf8_ok = 0;
    vlen = strlen(value);
    if (!mlt__json_check(value, vlen, &utf8_ok) || !utf8_ok) return MLT_EINVAL;
    value = skip_ws(value);
    vlen = strlen(value);
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t' || value[vlen - 1] == '\n' ||
                    value[vlen - 1] == '\r'))
      vlen--;
  }
  uint64_t span_id = 0;
  if (span && mlt__parse_span_id(span, &span_id)) return MLT_EINVAL;
  size_t nmeta = 0;
  while (meta && meta[nmeta]) nmeta++;
  if (nmeta % 2) return MLT_EINVAL;

  char hex[16];
  mlt__buf_lit(b, "{\"assessment_id\": \"a-");
  mlt__hex64(mlt__rand64(), hex);
  mlt__buf_put(b, hex, 16);
  mlt__hex64(mlt__rand64(), hex);
  mlt__buf_put(b, hex, 16);
  mlt__buf_lit(b, "\", \"assessment_name\": ");
  mlt__json_str(b, name, strlen(name));
  mlt__buf_lit(b, ", \"trace_id\": \"");
  mlt__buf_puts(b, trace_id);
  mlt__buf_putc(b, '"');
  if (span_id) {
    mlt__buf_lit(b, ", \"span_id\": \"");
    mlt__hex64(span_id, hex);
    mlt__buf_put(b, hex, 16);
    mlt__buf_putc(b, '"');
  }
  const char *st = source_name(stype);
  if (!st) st = expectation ? "HUMAN" : "CODE";
  mlt__buf_lit(b, ", \"source\": {\"source_type\": \"");
  mlt__buf_puts(b, st);
  mlt__buf_lit(b, "\", \"source_id\": ");
  if (!sid) sid = "default";
  mlt__json_str(b, sid, strlen(sid));
  mlt__buf_lit(b, "}, \"create_time\": ");
  put_time(b, now);
  mlt__buf_lit(b, ", \"last_update_time\": ");
  put_time(b, now);
  if (expectation) {
    /* Scalars travel as a protobuf Value; objects and lists as JSON text
     * (ExpectationValue._need_serialization). */
    if (value[0] == '{' || value[0] == '[') {
      mlt__buf_lit(b, ", \"expectation\": {\"serialized_value\": {\"serialization_format\": \"JSON_FORMAT\", "
                      "\"value\": ");
      mlt__json_str(b, value, vlen);
      mlt__buf_lit(b, "}}");
    } else {
      mlt__buf_lit(b, ", \"expectation\": {\"value\": ");
      mlt__buf_put(b, value, vlen);
      mlt__buf_putc(b, '}');
    }
  } else {
    mlt__buf_lit(b, ", \"feedback\": {\"value\": ");
    if (value)
      mlt__buf_put(b, value, vlen);
    else
      mlt__buf_lit(b, "null");
    if (ecode || emsg) {
      mlt__buf_lit(b, ", \"error\": {\"error_code\": ");
      mlt__json_str(b, ecode ? ecode : "ERROR", strlen(ecode ? ecode : "ERROR"));
      if (emsg) {
        mlt__buf_lit(b, ", \"error_message\": ");
        mlt__json_str(b, emsg, strlen(emsg));
      }
      mlt__buf_putc(b, '}');
    }
    mlt__buf_putc(b, '}');
  }
  if (rationale) {
    mlt__buf_lit(b, ", \"rationale\": ");
    mlt__json_str(b, rationale, strlen(rationale));
  }
  if (nmeta) {
    mlt__buf_lit(b, ", \"metadata\": {");
    for (size_t i = 0; i < nmeta; i += 2) {
      if (i) mlt__buf_lit(b, ", ");
      mlt__json_str(b, meta[i], strlen(meta[i]));
      mlt__buf_lit(b, ": ");
      mlt__json_str(b, meta[i + 1], strlen(meta[i + 1]));
    }
    mlt__buf_putc(b, '}');
  }
  if (!expectation) mlt__buf_lit(b, ", \"valid\": true");
  mlt__buf_putc(b, '}');
  return b->oom ? MLT_ENOMEM : MLT_OK;
}

/* ---- the trace in memory ---------------------------------------------- */

/* The trace in progress named by |hi, lo|, referenced, or NULL. */
static mlt__trace *find_live(uint64_t hi, uint64_t lo) { return mlt__trace_find(hi, lo); }

/* Add entry |e| to trace |t| if still in progress.  MLT_OK (taken),
 * MLT_EENDED (not taken), MLT_EFULL. */
static int attach_entry(mlt__trace *t, mlt__tinfo *e) {
  mlt__spin_lock(&t->lock);
  if (atomic_load(&t->state) != MLT__T_ACTIVE) {
    mlt__spin_unlock(&t->lock);
    return MLT_EENDED;
  }
  if (t->n_info + 1 > MLT__TINFO_MAX) {
    mlt__spin_unlock(&t->lock);
    return MLT_EFULL;
  }
  e->next = t->info;
  t->info = e;
  t->n_info++;
  mlt__spin_unlock(&t->lock);
  return MLT_OK;
}

/* Remove the tags named |key| from trace |t| in progress: MLT_OK,
 * MLT_ENOTFOUND, MLT_EENDED. */
static int remove_tag(mlt__trace *t, const char *key) {
  mlt__tinfo *gone = NULL;
  mlt__spin_lock(&t->lock);
  if (atomic_load(&t->state) != MLT__T_ACTIVE) {
    mlt__spin_unlock(&t->lock);
    return MLT_EENDED;
  }
  for (mlt__tinfo **pp = &t->info; *pp;) {
    mlt__tinfo *i = *pp;
    if (i->kind == MLT__TI_TAG && i->key && !strcmp(i->key, key)) {
      *pp = i->next;
      i->next = gone;
      gone = i;
      t->n_info--;
    } else {
      pp = &i->next;
    }
  }
  mlt__spin_unlock(&t->lock);
  int rc = gone ? MLT_OK : MLT_ENOTFOUND;
  mlt__tinfo_free(gone); /* a scope's tag stays in its block until the trace goes */
  return rc;
}

/* ---- the queue -------------------------------------------------------- */

/* Queue |op| (taken in every case). */
static int submit(mlt__op *op) {
  if (!g_capable) {
    op_free(op);
    return MLT_ENOTSUP;
  }
  if (atomic_fetch_add(&g_waiting, 1) >= OPS_MAX) {
    atomic_fetch_sub(&g_waiting, 1);
    atomic_fetch_add(&g_dropped, 1);
    mlt__log(MLT_LOG_WARN, MLT__LOGK_DROP, "%d trace operations already wait for the export thread: %s on %s dropped",
             OPS_MAX, op->kind == MLT__OP_ASSESSMENT ? "assessment" : "tag change", op->trace_id);
    op_free(op);
    return MLT_EFULL;
  }
  op->barrier = g_host->enqueued();
  atomic_fetch_add(&g_queued, 1);
  mlt__op *head = atomic_load_explicit(&g_stack, memory_order_relaxed);
  do {
    op->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&g_stack, &head, op, memory_order_release, memory_order_relaxed));
  return MLT_OK;
}

static mlt__op *op_new(int kind, uint64_t hi, uint64_t lo) {
  mlt__op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->kind = kind;
  op->hi = hi;
  op->lo = lo;
  mlt__format_trace_id(hi, lo, op->trace_id);
  op->submit_ns = mlt__now_ns();
  return op;
}

/* Both assessment calls.  |t| is the referenced trace of a handle, or NULL
 * (looked up by id). */
static int log_assessment(uint64_t hi, uint64_t lo, mlt__trace *t, int expectation, const mlt_assessment *a) {
  char tid[MLT_TRACE_ID_SIZE];
  mlt__format_trace_id(hi, lo, tid);
  mlt__buf b = {0};
  int64_t now = mlt__now_ns();
  int rc = assessment_json(&b, tid, expectation, a, now);
  if (!rc && !g_json_capable) rc = MLT_ENOTSUP;
  if (rc) {
    mlt__buf_free(&b);
    return rc;
  }
  char *json = mlt__strndup(b.p, b.len);
  mlt__buf_free(&b);
  if (!json) return MLT_ENOMEM;
  mlt__trace *live = t ? t : find_live(hi, lo);
  if (live) {
    mlt__tinfo *e = calloc(1, sizeof *e);
    if (!e) {
      free(json);
      if (!t) mlt__trace_unref(live);
      return MLT_ENOMEM;
    }
    e->kind = MLT__TI_ASSESSMENT;
    e->value = json;
    rc = attach_entry(live, e);
    if (!t) mlt__trace_unref(live);
    if (rc != MLT_EENDED) {
      if (rc) free(e->value), free(e);
      return rc;
    }
    e->value = NULL;
    free(e);
  }
  if (!g_capable) {
    free(json);
    return MLT_ENOTSUP;
  }
  mlt__op *op = op_new(MLT__OP_ASSESSMENT, hi, lo);
  if (!op) {
    free(json);
    return MLT_ENOMEM;
  }
  op->json = json;
  return submit(op);
}

static int by_id(const char *trace_id, int expectation, const mlt_assessment *a) {
  uint64_t hi, lo;
  if (!trace_id || !a || parse_id(trace_id, &hi, &lo)) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  return log_assessment(hi, lo, NULL, expectation, a);
}

int mlt_log_feedback(const char *trace_id, const mlt_assessment *a) { return by_id(trace_id, 0, a); }
int mlt_log_expectation(const char *trace_id, const mlt_assessment *a) { return by_id(trace_id, 1, a); }

static int by_span(mlt_span h, int expectation, const mlt_assessment *a) {
  if (!a) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  if (mlt_span_is_none(h) || mlt__h_is_nonrec(h)) return MLT_ENOTRECORDING;
  mlt__trace *t = mlt__handle_trace(h);
  if (!t) return MLT_ESTALE;
  int rc = log_assessment(t->id_hi, t->id_lo, t, expectation, a);
  mlt__trace_unref(t);
  return rc;
}

int mlt_span_log_feedback(mlt_span span, const mlt_assessment *a) { return by_span(span, 0, a); }
int mlt_span_log_expectation(mlt_span span, const mlt_assessment *a) { return by_span(span, 1, a); }

static int tag_key_ok(const char *key) {
  return key && key[0] && strcmp(key, "mlflow.artifactLocation") && strcmp(key, "mlflow.trace.spansLocation");
}

static char *cut_dup(const char *s, size_t max) {
  size_t chars;
  return mlt__strndup(s, mlt__utf8_prefix_chars(s, strlen(s), max, &chars));
}

int mlt_set_trace_tag(const char *trace_id, const char *key, const char *value) {
  uint64_t hi, lo;
  if (!trace_id || !value || !tag_key_ok(key) || parse_id(trace_id, &hi, &lo)) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt__trace *t = find_live(hi, lo);
  if (t) {
    const char *kv[] = {key, value, NULL};
    mlt_trace_update u = {.struct_size = sizeof u, .tags = kv};
    int rc = mlt__trace_update(t, &u);
    mlt__trace_unref(t);
    if (rc != MLT_EENDED) return rc;
  }
  if (!g_capable) return MLT_ENOTSUP;
  mlt__op *op = op_new(MLT__OP_SET_TAG, hi, lo);
  if (!op) return MLT_ENOMEM;
  op->key = cut_dup(key, 250);
  op->value = cut_dup(value, 4096);
  if (!op->key || !op->value) {
    op_free(op);
    return MLT_ENOMEM;
  }
  return submit(op);
}

int mlt_delete_trace_tag(const char *trace_id, const char *key) {
  uint64_t hi, lo;
  if (!trace_id || !tag_key_ok(key) || parse_id(trace_id, &hi, &lo)) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt__trace *t = find_live(hi, lo);
  if (t) {
    int rc = remove_tag(t, key);
    mlt__trace_unref(t);
    if (rc != MLT_EENDED) return rc;
  }
  if (!g_capable) return MLT_ENOTSUP;
  mlt__op *op = op_new(MLT__OP_DEL_TAG, hi, lo);
  if (!op) return MLT_ENOMEM;
  op->key = cut_dup(key, 250);
  if (!op->key) {
    op_free(op);
    return MLT_ENOMEM;
  }
  return submit(op);
}

/* ---- the file store's update line ------------------------------------- */

static void update_line(mlt__buf *b, const mlt__op *op) {
  static const char *const what[] = {"", "assessment", "set_tag", "delete_tag"};
  mlt__buf_lit(b, "{\"info\": {\"trace_id\": \"");
  mlt__buf_puts(b, op->trace_id);
  mlt__buf_lit(b, "\", \"trace_location\": {\"type\": \"MLFLOW_EXPERIMENT\", \"mlflow_experiment\": "
                  "{\"experiment_id\": ");
  const char *exp = g_host->experiment_id();
  mlt__json_str(b, exp, strlen(exp));
  mlt__buf_lit(b, "}}, \"request_time\": ");
  put_time(b, op->submit_ns);
  mlt__buf_lit(b, ", \"state\": \"STATE_UNSPECIFIED\", \"trace_metadata\": {\"mltrace.update\": \"");
  mlt__buf_puts(b, what[op->kind]);
  mlt__buf_putc(b, '"');
  if (op->kind == MLT__OP_DEL_TAG) {
    mlt__buf_lit(b, ", \"mltrace.deletedTag\": ");
    mlt__json_str(b, op->key, strlen(op->key));
  }
  mlt__buf_lit(b, "}, \"tags\": {");
  if (op->kind == MLT__OP_SET_TAG) {
    mlt__json_str(b, op->key, strlen(op->key));
    mlt__buf_lit(b, ": ");
    mlt__json_str(b, op->value, strlen(op->value));
  }
  mlt__buf_putc(b, '}');
  if (op->kind == MLT__OP_ASSESSMENT) {
    mlt__buf_lit(b, ", \"assessments\": [");
    mlt__buf_puts(b, op->json);
    mlt__buf_putc(b, ']');
  }
  mlt__buf_lit(b, "}, \"data\": {\"spans\": []}}\n");
}

/* Append the update line as the file store does (O_APPEND, one write under
 * an exclusive advisory lock, cut back on failure). */
static int file_append(const char *path, const mlt__op *op, char *why, size_t why_size) {
  mlt__buf b = {0};
  update_line(&b, op);
  if (b.oom) {
    mlt__buf_free(&b);
    snprintf(why, why_size, "out of memory");
    return -1;
  }
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(why, why_size, "cannot open %s: %s", path, strerror(errno));
    mlt__buf_free(&b);
    return -1;
  }
  while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  off_t end = lseek(fd, 0, SEEK_END);
  const char *p = b.p;
  size_t n = b.len;
  int rc = 0;
  mlt__stats_add(MLT__ST_EXPORT_REQUESTS, 1);
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      snprintf(why, why_size, "cannot write %s: %s", path, strerror(errno));
      if (end >= 0 && ftruncate(fd, end) != 0) {
        /* the write error is what gets reported */
      }
      rc = -1;
      break;
    }
    p += w;
    n -= (size_t)w;
  }
  if (!rc) mlt__stats_add(MLT__ST_EXPORT_BYTES, b.len);
  flock(fd, LOCK_UN);
  close(fd);
  mlt__buf_free(&b);
  return rc;
}

/* ---- the export thread ------------------------------------------------ */

void mlt__op_done(mlt__op *op, int ok, const char *why) {
  if (!ok) {
    op->failed = 1;
    mlt__log(MLT_LOG_WARN, MLT__LOGK_EXPORT, "%s on trace %s not applied: %s",
             op->kind == MLT__OP_ASSESSMENT ? "assessment"
             : op->kind == MLT__OP_SET_TAG  ? "set_trace_tag"
                                            : "delete_trace_tag",
             op->trace_id, why ? why : "unknown error");
  }
  if (--op->remaining > 0) return;
  op->finished = 1;
  atomic_fetch_add(op->failed ? &g_failed : &g_delivered, 1);
  pthread_mutex_lock(&g_flush_mu);
  pthread_cond_broadcast(&g_flush_cond);
  pthread_mutex_unlock(&g_flush_mu);
}

static void start_op(mlt__op *op) {
  op->started = 1;
  op->remaining = 1; /* held while starting, so no exporter finishes it early */
  char why[400];
  for (mlt_exporter *e = g_exporters; e; e = e->next) {
    if (e->failed_start) continue;
    const char *path = mlt__exporter_file_path(e);
    if (path) {
      op->remaining++;
      int ok = file_append(path, op, why, sizeof why) == 0;
      mlt__op_done(op, ok, ok ? NULL : why);
    } else if (mlt__op_mlflow_accepts(e)) {
      op->remaining++;
      mlt__op_mlflow_start(op, e, mlt__op_done);
    }
  }
  mlt__op_done(op, 1, NULL);
}

/* Small open-addressing set of the trace ids with an unfinished operation
 * earlier in the FIFO (rebuilt on each pass). */
#define SEEN_CAP (OPS_MAX * 2)
static struct seen {
  uint64_t hi, lo;
  uint32_t gen;
} *g_seen;
static uint32_t g_seen_gen;

/* Find |hi, lo| in the set; add it when |add|.  1 if it was there. */
static int seen_find(uint64_t hi, uint64_t lo, int add) {
  size_t h = (size_t)((hi ^ (lo * UINT64_C(0x9E3779B97F4A7C15))) >> 17) & (SEEN_CAP - 1);
  for (;; h = (h + 1) & (SEEN_CAP - 1)) {
    struct seen *s = &g_seen[h];
    if (s->gen != g_seen_gen) {
      if (add) *s = (struct seen){hi, lo, g_seen_gen};
      return 0;
    }
    if (s->hi == hi && s->lo == lo) return 1;
  }
}

/* Move what application threads pushed to the end of the FIFO. */
static void take_pushed(void) {
  mlt__op *got = atomic_exchange_explicit(&g_stack, NULL, memory_order_acquire);
  if (!got) return;
  mlt__op *rev = NULL; /* the stack is newest first */
  while (got) {
    mlt__op *n = got->next;
    got->next = rev;
    rev = got;
    got = n;
  }
  if (g_fifo_tail)
    g_fifo_tail->next = rev;
  else
    g_fifo_head = rev;
  while (rev->next) rev = rev->next;
  g_fifo_tail = rev;
}

int64_t mlt__ops_poll(int64_t now) {
  take_pushed();
  if (g_fifo_head) {
    if (!g_seen) g_seen = calloc(SEEN_CAP, sizeof *g_seen);
    if (++g_seen_gen == 0 && g_seen) {
      memset(g_seen, 0, SEEN_CAP * sizeof *g_seen);
      g_seen_gen = 1;
    }
    uint64_t done = g_host->done();
    mlt__op **pp = &g_fifo_head, *prev = NULL;
    while (*pp) {
      mlt__op *op = *pp;
      if (op->finished) {
        *pp = op->next;
        if (g_fifo_tail == op) g_fifo_tail = prev;
        op_free(op);
        atomic_fetch_sub(&g_waiting, 1);
        continue;
      }
      /* One operation per trace at a time, in submission order. */
      int blocked = g_seen ? seen_find(op->hi, op->lo, 0) : op != g_fifo_head;
      if (!op->started && !blocked && done >= op->barrier) start_op(op);
      if (op->finished) continue; /* removed on the next turn of this loop */
      if (g_seen) seen_find(op->hi, op->lo, 1);
      prev = op;
      pp = &op->next;
    }
  }
  return mlt__op_mlflow_poll(now);
}

int mlt__ops_idle(void) { return !g_fifo_head && !atomic_load(&g_stack); }

static void fail_all(const char *why) {
  for (mlt__op *op = g_fifo_head; op; op = op->next) {
    if (op->finished) continue;
    if (!op->started) {
      op->started = 1;
      op->remaining = 1;
      mlt__op_done(op, 0, why);
    }
  }
}

void mlt__ops_abandon(void) {
  take_pushed();
  mlt__op_mlflow_abandon("shutdown deadline reached before the server answered");
  fail_all("shutdown deadline reached");
}

static uint64_t g_flush_mark; /* failed + dropped at the previous flush (under g_flush_mu) */

int mlt__ops_flush(int64_t deadline) {
  uint64_t target = atomic_load(&g_queued);
  int rc = MLT_OK;
  pthread_mutex_lock(&g_flush_mu);
  while (atomic_load(&g_delivered) + atomic_load(&g_failed) < target) {
    int64_t left = deadline - mlt__mono_ns();
    if (left <= 0) {
      rc = MLT_ETIMEDOUT;
      break;
    }
    struct timespec ts = mlt__realtime_after(MLT_MIN(left, (int64_t)50000000));
    pthread_mutex_unlock(&g_flush_mu);
    g_host->wakeup();
    pthread_mutex_lock(&g_flush_mu);
    if (atomic_load(&g_delivered) + atomic_load(&g_failed) < target)
      pthread_cond_timedwait(&g_flush_cond, &g_flush_mu, &ts);
  }
  /* As for traces: MLT_EIO when something was lost since the last flush. */
  uint64_t lost = atomic_load(&g_failed) + atomic_load(&g_dropped);
  if (lost > g_flush_mark) {
    if (rc == MLT_OK) rc = MLT_EIO;
    g_flush_mark = lost;
  }
  pthread_mutex_unlock(&g_flush_mu);
  return rc;
}

void mlt__ops_start(mlt_exporter *exporters, const mlt__ops_host *host) {
  g_host = host;
  g_exporters = exporters;
  g_capable = g_json_capable = 0;
  for (mlt_exporter *e = exporters; e; e = e->next) {
    if (mlt__exporter_file_path(e) || mlt__op_mlflow_accepts(e)) g_capable++;
    /* Every exporter but these two writes the trace's TraceInfo. */
    if (strcmp(e->ops->name, "otlp") && strcmp(e->ops->name, "discard")) g_json_capable++;
  }
  atomic_store(&g_queued, 0);
  atomic_store(&g_delivered, 0);
  atomic_store(&g_failed, 0);
  atomic_store(&g_dropped, 0);
  atomic_store(&g_waiting, 0);
  g_flush_mark = 0;
}

void mlt__ops_stop(void) {
  take_pushed();
  mlt__op_mlflow_abandon("shutting down");
  fail_all("shutting down before it could be delivered");
  while (g_fifo_head) {
    mlt__op *n = g_fifo_head->next;
    op_free(g_fifo_head);
    g_fifo_head = n;
  }
  g_fifo_tail = NULL;
  free(g_seen);
  g_seen = NULL;
  g_exporters = NULL;
  g_capable = g_json_capable = 0;
  atomic_store(&g_waiting, 0);
}

void mlt__ops_stats(mlt_stats *s) {
  s->trace_ops_queued = atomic_load(&g_queued);
  s->trace_ops_delivered = atomic_load(&g_delivered);
  s->trace_ops_failed = atomic_load(&g_failed);
  s->trace_ops_dropped = atomic_load(&g_dropped);
}

void mlt__ops_atfork_child(void) {
  mlt__op_mlflow_atfork_child();
  mlt__forget(atomic_load(&g_stack));
  mlt__forget(g_fifo_head);
  mlt__forget(g_seen);
  atomic_store(&g_stack, NULL);
  g_fifo_head = g_fifo_tail = NULL;
  g_seen = NULL;
  g_exporters = NULL;
  g_capable = g_json_capable = 0;
  pthread_mutex_init(&g_flush_mu, NULL);
  pthread_cond_init(&g_flush_cond, NULL);
}
