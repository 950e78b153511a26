/* lib/export/assess-mlflow.c: delivery of trace operations (feedback,
 * expectations, tags set or deleted after the fact) to an MLflow tracking
 * server, on the export thread, through the exporters' HTTP transport with
 * the MLflow exporter's settings (URL, credentials, TLS, timeouts, retry
 * budget).
 *
 * An operation may be queued while its trace is still on its way to the
 * server (in the export queue, or between StartTraceV3 and the OTLP spans).
 * Sent then, it would fail (unknown trace) or be undone (StartTraceV3 merges
 * the trace's own tags over a tag set in between).  So each job first asks
 * the server for the trace (GetTraceInfoV3) and sends the operation once the
 * trace is there and finalized (metadata mlflow.trace.infoFinalized, which
 * StartTraceV3 sets); a trace that exists but is never finalized (spans of
 * a remote trace) is taken as it is after a grace period.  A trace the
 * server still does not know when the retry budget is spent fails the
 * operation.  Requests, as MLflow's Python client sends them:
 *   POST   /api/3.0/mlflow/traces/{id}/assessments  {"assessment": {...}}
 *   PATCH  /api/2.0/mlflow/traces/{id}/tags         {"key": k, "value": v}
 *   DELETE /api/2.0/mlflow/traces/{id}/tags         {"key": k}
 * Each outcome goes back through the callback assess.c passes with the
 * operation (it calls nothing of assess.c by name).
 */
#include "export/assess-internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* A trace that exists but has no StartTraceV3 yet is taken after this. */
#define UNFINALIZED_GRACE_NS (10 * INT64_C(1000000000))
#define CHECK_MIN_NS (250 * INT64_C(1000000))
#define CHECK_MAX_NS (2000 * INT64_C(1000000))

typedef struct mjob {
  struct mjob *next; /* waiting for its next check */
  mlt__op *op;
  mlt__op_done_fn done; /* reports the outcome (assess.c) */
  const char *base;
  const mlt__http_cfg *cfg;
  int64_t first_ns, exists_ns, next_ns; /* monotonic */
  int checks;
} mjob;

static mjob *g_wait;

int mlt__op_mlflow_accepts(mlt_exporter *e) {
  const char *b;
  const mlt__http_cfg *c;
  return mlt__exporter_mlflow_target(e, &b, &c) == 0;
}

static void job_finish(mjob *j, int ok, const char *why) {
  j->done(j->op, ok, why);
  free(j);
}

/* "HTTP 404: {...}" shortened for a log line (no secrets: bodies come from
 * the server). */
static void describe(char *out, size_t size, long status, const char *err, const char *body, size_t len) {
  if (status == 0) {
    snprintf(out, size, "%s", err ? err : "no answer");
    return;
  }
  char tmp[200];
  size_t k = 0;
  for (size_t i = 0; i < len && i < 160 && k + 1 < sizeof tmp; i++)
    tmp[k++] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
  tmp[k] = '\0';
  snprintf(out, size, "HTTP %ld%s%s", status, k ? ": " : "", tmp);
}

static char *url_for(const mjob *j, const char *version, const char *suffix) {
  size_t n = strlen(j->base) + strlen(suffix) + 64;
  char *u = malloc(n);
  if (u) snprintf(u, n, "%s/api/%s/mlflow/traces/%s%s", j->base, version, j->op->trace_id, suffix);
  return u;
}

static mlt__http_req *req_new(const mjob *j, char *url, int method) {
  mlt__http_req *r = url ? mlt__http_req_new(url, method, j->cfg) : NULL;
  free(url);
  if (!r) return NULL;
  if (method != MLT__HTTP_GET) r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
  r->headers = curl_slist_append(r->headers, "Expect:");
  if (j->cfg->bearer) r->headers = curl_slist_append(r->headers, j->cfg->bearer);
  return r;
}

static void on_sent(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err, void *ud) {
  (void)r;
  mjob *j = ud;
  char why[300];
  if (!ok) describe(why, sizeof why, status, err, body, len);
  job_finish(j, ok, ok ? NULL : why);
}

static void send_op(mjob *j) {
  mlt__op *op = j->op;
  mlt__http_req *r;
  if (op->kind == MLT__OP_ASSESSMENT) {
    r = req_new(j, url_for(j, "3.0", "/assessments"), MLT__HTTP_POST);
    if (r) {
      mlt__buf_lit(&r->body, "{\"assessment\": ");
      mlt__buf_puts(&r->body, op->json);
      mlt__buf_putc(&r->body, '}');
    }
  } else {
    r = req_new(j, url_for(j, "2.0", "/tags"), op->kind == MLT__OP_SET_TAG ? MLT__HTTP_PATCH : MLT__HTTP_DELETE);
    if (r) {
      mlt__buf_lit(&r->body, "{\"key\": ");
      mlt__json_str(&r->body, op->key, strlen(op->key));
      if (op->value) {
        mlt__buf_lit(&r->body, ", \"value\": ");
        mlt__json_str(&r->body, op->value, strlen(op->value));
      }
      mlt__buf_putc(&r->body, '}');
    }
  }
  if (!r || r->body.oom) {
    if (r) mlt__http_req_free(r);
    job_finish(j, 0, "out of memory");
    return;
  }
  r->done = on_sent;
  r->ud = j;
  mlt__http_submit(mlt__http_get(), r);
}

static void wait_again(mjob *j, int64_t now) {
  int64_t d = CHECK_MIN_NS << MLT_MIN(j->checks, 4);
  j->next_ns = now + MLT_MIN(d, CHECK_MAX_NS);
  j->next = g_wait;
  g_wait = j;
}

static void on_checked(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err,
                       void *ud) {
  (void)r;
  mjob *j = ud;
  int64_t now = mlt__mono_ns();
  char why[300];
  j->checks++;
  if (ok) {
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "trace"), "trace_info"),
        "trace_metadata");
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(md, "mlflow.trace.infoFinalized");
    int finalized = cJSON_IsString(fin) && !strcmp(fin->valuestring, "true");
    cJSON_Delete(doc);
    if (!j->exists_ns) j->exists_ns = now;
    if (finalized || now - j->exists_ns >= UNFINALIZED_GRACE_NS) {
      send_op(j);
      return;
    }
    wait_again(j, now);
    return;
  }
  if (status == 404) {
    if (now - j->first_ns < j->cfg->retry_budget_ns) {
      wait_again(j, now);
      return;
    }
    snprintf(why, sizeof why, "the server has no trace %s (waited %.1f s for it)", j->op->trace_id,
             (double)(now - j->first_ns) / 1e9);
    job_finish(j, 0, why);
    return;
  }
  describe(why, sizeof why, status, err, body, len);
  job_finish(j, 0, why);
}

static void check(mjob *j) {
  mlt__http_req *r = req_new(j, url_for(j, "3.0", ""), MLT__HTTP_GET);
  if (!r) {
    job_finish(j, 0, "out of memory");
    return;
  }
  r->done = on_checked;
  r->ud = j;
  mlt__http_submit(mlt__http_get(), r);
}

int mlt__op_mlflow_start(mlt__op *op, mlt_exporter *e, mlt__op_done_fn done) {
  const char *base;
  const mlt__http_cfg *cfg;
  if (mlt__exporter_mlflow_target(e, &base, &cfg) != 0) return -1;
  mjob *j = calloc(1, sizeof *j);
  if (!j) {
    done(op, 0, "out of memory");
    return 0;
  }
  j->op = op;
  j->done = done;
  j->base = base;
  j->cfg = cfg;
  j->first_ns = mlt__mono_ns();
  check(j);
  return 0;
}

int64_t mlt__op_mlflow_poll(int64_t now) {
  int64_t next = 0;
  mjob *due = NULL;
  for (mjob **pp = &g_wait; *pp;) {
    mjob *j = *pp;
    if (j->next_ns <= now) {
      *pp = j->next;
      j->next = due;
      due = j;
    } else {
      if (!next || j->next_ns < next) next = j->next_ns;
      pp = &j->next;
    }
  }
  while (due) {
    mjob *j = due;
    due = j->next;
    check(j);
  }
  return next;
}

void mlt__op_mlflow_abandon(const char *why) {
  while (g_wait) {
    mjob *j = g_wait;
    g_wait = j->next;
    job_finish(j, 0, why);
  }
}

void mlt__op_mlflow_atfork_child(void) {
  mlt__forget(g_wait);
  g_wait = NULL;
}
