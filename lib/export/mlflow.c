/* lib/export/mlflow.c: the MLflow tracking server exporter and the generic OTLP
 * exporter.
 *
 * MLflow (the two writes the Python SDK makes against a SQL-backed server
 * >= 3.4):
 *   1. per trace with a local root -> POST {uri}/api/3.0/mlflow/traces
 *      (StartTraceV3: previews, metadata, tags, state, duration);
 *   2. then the spans of the whole batch of traces -> POST {uri}/v1/traces
 *      (OTLP protobuf, header x-mlflow-experiment-id).
 * TraceInfo first, unlike the Python SDK (which logs spans as they end): on
 * MLflow's SQL store StartTraceV3 for a trace that does not exist yet is one
 * INSERT, while after the spans it takes the IntegrityError/rollback/merge
 * path; `make bench-mlflow` measured 16-23 ms of server CPU per trace this
 * way, 26-32 ms before (MLflow 3.17.2, SQLite and PostgreSQL).
 * Until the server answered /v1/traces once (mode unknown), one unit goes in
 * the other order -- spans, then TraceInfos -- as a probe, and the others
 * wait for its answer: a FileStore server answers a spans request for a
 * trace it already holds with 500, not with the 404/501 that tells the
 * exporter to switch, for the rest of the process, to StartTraceV3 followed
 * by PUT of the traces.json artifact through the server's artifact proxy.
 * Spans of continuations and of traces continued from a remote traceparent
 * go through OTLP only, as MLflow's
 * distributed tracing does.
 *
 * Everything runs on the export thread through the shared HTTP transport
 * (lib/net/http.c): nothing blocks an application thread.
 */
#include "export/assess-internal.h"
#include "export/otlp-internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <zlib.h>

/* ---- shared pieces --------------------------------------------------- */

/* gzip |in| into |out| (Content-Encoding: gzip). */
static int gzip_buf(const mlt__buf *in, mlt__buf *out) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
  size_t bound = deflateBound(&z, (uLong)in->len) + 32;
  mlt__buf_reset(out);
  if (mlt__buf_reserve(out, bound)) {
    deflateEnd(&z);
    return -1;
  }
  z.next_in = (Bytef *)(in->p ? in->p : "");
  z.avail_in = (uInt)in->len;
  z.next_out = (Bytef *)out->p;
  z.avail_out = (uInt)bound;
  int rc = deflate(&z, Z_FINISH);
  out->len = z.total_out;
  deflateEnd(&z);
  return rc == Z_STREAM_END ? 0 : -1;
}

static char *url_join(const char *base, const char *path) {
  size_t bl = strlen(base);
  while (bl && base[bl - 1] == '/') bl--;
  size_t pl = strlen(path);
  char *u = malloc(bl + pl + 1);
  if (!u) return NULL;
  memcpy(u, base, bl);
  memcpy(u + bl, path, pl + 1);
  return u;
}

/* An error body ({"error_code":..,"message":..} or {"detail":..}) shortened
 * for a log line, with secrets redacted (a server or proxy may echo the
 * request's headers). */
static void describe(char *out, size_t size, long status, const char *err, const char *body, size_t len) {
  if (err && status == 0) {
    mlt__redact(err, strlen(err), out, size);
    return;
  }
  /* Redact the whole body first (a secret may be long, e.g. a JWT), then
   * shorten it. */
  char *tmp = malloc(len + 1), *red = malloc(len + 64);
  char small[8] = "";
  if (tmp && red) {
    for (size_t i = 0; i < len; i++) tmp[i] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
    mlt__redact(tmp, len, red, len + 64);
    if (strlen(red) > 200) memcpy(red + 197, "...", 4);
  }
  const char *shown = tmp && red ? red : small;
  snprintf(out, size, "%s%sHTTP %ld%s%s", err ? err : "", err ? ", " : "", status, shown[0] ? ": " : "", shown);
  free(tmp);
  free(red);
}

/* ---- the MLflow exporter --------------------------------------------- */

/* Delivery.  A trace counts as exported once the server acknowledged its
 * spans (OTLP) and, when it has a local root, its TraceInfo (StartTraceV3):
 * what the Python SDK stores.  A request whose outcome is unknown (timeout,
 * connection reset) is sent again: both writes are idempotent on MLflow's
 * SQL store (spans are upserted on (trace_id, span_id) and trace-level
 * aggregates recomputed, not added; StartTraceV3 on an existing trace
 * merges), so at-least-once delivery stores each trace once.  The spans are
 * sent even when a TraceInfo of the batch was refused: a trace whose spans
 * are stored but whose TraceInfo never is, or (spool off, spans refused)
 * whose TraceInfo is stored without its spans, is counted partial.  With the
 * spool on, whatever fails for a transient reason (server down or too slow
 * past the retry budget, shutdown deadline) is written to the spool -- the
 * whole unit (OTLP request and TraceInfos), or just a TraceInfo -- and
 * delivered later. */

enum { MODE_UNKNOWN = 0, MODE_OTLP, MODE_ARTIFACT };
enum { EXP_READY = 0, EXP_RESOLVING, EXP_UNRESOLVED };
#define NO_TICKET UINT32_MAX
/* Largest OTLP request we build: traces of a batch are split by the memory
 * they held in the queue (a good estimate of their encoded size). */
#define UNIT_MAX_BYTES ((size_t)8 << 20)
#define UNIT_MAX_JOBS 128

typedef struct mlflow_exp mlflow_exp;
typedef struct unit unit;

typedef struct tjob {
  unit *u;
  uint32_t ticket;     /* NO_TICKET: a trace replayed from the spool */
  mlt__buf info_rest;  /* StartTraceV3 trace_info, minus its opening and location; empty: spans only */
  mlt__buf data;       /* traces.json body (artifact mode, or mode unknown) */
  size_t held;         /* bytes counted in the exporter's held_bytes */
  int info;            /* TraceInfo sent before the spans: INFO_* */
  char *info_why;      /* why it failed (INFO_FAIL_*) */
} tjob;

/* A TraceInfo sent ahead of its spans (unit.infos_first): its outcome waits
 * for the spans' request. */
enum { INFO_UNSENT = 0, INFO_OK, INFO_FAIL_TRANSIENT, INFO_FAIL };

/* Traces whose spans travel in one OTLP request (and, when spooled, one
 * spool record). */
struct unit {
  unit *next; /* waiting for the experiment id */
  mlflow_exp *x;
  tjob **jobs;
  size_t n, open;
  mlt__buf otlp;        /* counted in held_bytes until handed to the transport */
  mlt__spool_rec *rec;  /* the spool record this replays, or NULL */
  int probe;            /* sent while the mode was unknown (see the top) */
  int infos_first;      /* its TraceInfos went (or are going) ahead of the spans */
  size_t infos_pending; /* of those, not answered yet */
};

struct mlflow_exp {
  mlt_exporter base;
  char *base_url;
  char *experiment_id;
  char *experiment_name;
  mlt__http_cfg cfg;
  int mode;
  int exp_state;
  int stopping;
  size_t in_flight;   /* traces accepted (or replayed), not yet reported */
  size_t held_bytes;  /* serialized bytes held for them outside the transport */
  unit *pending_head; /* units waiting for the experiment id */
  unit *mode_wait;    /* units waiting for the probe's answer (mode unknown) */
  int probing;        /* a probe unit is in flight */
  mlt__spool *spool;  /* NULL: off */
  mlt__net_health health;
  size_t replaying;     /* units replayed from the spool, in flight */
  size_t replay_traces; /* their traces (counted in in_flight) */
};

/* MLflow's server answers some capacity and concurrency conditions of its
 * database with HTTP 400 (it maps every SQLAlchemy error but OperationalError
 * to BAD_REQUEST): its connection pool exhausted under load, a unique
 * constraint hit by two concurrent writes of the same trace.  Retrying those
 * is right, and safe -- our writes are idempotent.  The transport retries
 * them too (mlt__http_cfg.transient). */
static const char *const transient_400[] = {"QueuePool limit", "connection timed out", "UNIQUE constraint failed",
                                            "duplicate key value violates unique constraint", "database is locked",
                                            "could not serialize access", "deadlock detected"};

static int mlflow_transient_400(long status, const char *body, size_t len) {
  if (status == 400 && body && len)
    for (size_t i = 0; i < MLT_ARRAY_LEN(transient_400); i++)
      if (memmem(body, len, transient_400[i], strlen(transient_400[i]))) return 1;
  return 0;
}

/* Whether a failure (after the transport's retries) is worth keeping in the
 * spool for later: the server did not answer, or answered that it could
 * not cope right now. */
#define transient_failure(status) \
  (mlt__http_transient((status), body, len) || mlflow_transient_400((status), body, len))

/* The transport settings of a request to the MLflow server (|otlp| 0: TLS
 * and credentials too) or to an OTLP endpoint, from |env|. */
static void http_cfg_from_env(mlt__http_cfg *c, const mlt__export_env *env, int otlp) {
  mlt__http_cfg_free(c);
  c->timeout_ms = (long)(otlp ? env->otlp_timeout_ms : env->mlflow_timeout_ms);
  c->connect_timeout_ms = MLT_MIN(c->timeout_ms, 5000L);
  c->retry_budget_ns = env->retry_budget_ms * 1000000;
  c->transient = mlflow_transient_400;
  if (otlp) return;
  c->insecure_tls = env->insecure_tls;
  c->ca_path = mlt__strdup(env->ca_path);
  if (env->tracking_token) {
    size_t n = strlen(env->tracking_token) + 32;
    c->bearer = malloc(n);
    if (c->bearer) snprintf(c->bearer, n, "Authorization: Bearer %s", env->tracking_token);
  } else if (env->tracking_user && env->tracking_password) {
    size_t n = strlen(env->tracking_user) + strlen(env->tracking_password) + 2;
    c->userpwd = malloc(n);
    if (c->userpwd) snprintf(c->userpwd, n, "%s:%s", env->tracking_user, env->tracking_password);
  }
}

static void unit_free(unit *u) {
  u->x->held_bytes -= u->otlp.len;
  mlt__buf_free(&u->otlp);
  free(u->jobs);
  free(u);
}

/* Append |u| to the list at |head| (units wait in arrival order). */
static void unit_append(unit **head, unit *u) {
  while (*head) head = &(*head)->next;
  u->next = NULL;
  *head = u;
}

/* A trace is done at this exporter. */
static void job_end(tjob *j, int outcome, const char *why) {
  unit *u = j->u;
  mlflow_exp *x = u->x;
  if (j->ticket != NO_TICKET) {
    mlt__export_result(&x->base, j->ticket, outcome, why);
  } else {
    mlt__spool_replayed_outcome(x->spool, outcome, why);
    x->replay_traces--;
  }
  x->held_bytes -= j->held;
  mlt__buf_free(&j->info_rest);
  mlt__buf_free(&j->data);
  free(j->info_why);
  free(j);
  x->in_flight--;
  if (--u->open == 0) {
    if (u->rec) {
      mlt__spool_done(x->spool, u->rec);
      x->replaying--;
    }
    u->rec = NULL;
    unit_free(u);
  }
}

/* The spans of |u| could not be delivered (|body|: the OTLP request, or
 * NULL when it was never built): spool the whole unit when the failure is
 * transient and the spool is on, else fail its traces. */
static void unit_fail(unit *u, const mlt__buf *body, int transient, const char *why) {
  mlflow_exp *x = u->x;
  int outcome = MLT__OUT_FAILED;
  if (transient && u->rec) {
    /* A replayed record: it stays where it is, for the next attempt. */
    mlt__spool_release(x->spool, u->rec);
    u->rec = NULL;
    x->replaying--;
    outcome = MLT__OUT_SPOOLED;
  } else if (transient && x->spool) {
    const mlt__buf *infos[UNIT_MAX_JOBS];
    size_t k = 0;
    for (size_t i = 0; i < u->n && k < UNIT_MAX_JOBS; i++) infos[k++] = &u->jobs[i]->info_rest;
    if (mlt__spool_put(x->spool, body ? body->p : NULL, body ? body->len : 0, (uint32_t)u->n, infos, k) == 0)
      outcome = MLT__OUT_SPOOLED;
  }
  for (size_t i = u->n; i-- > 0;) {
    tjob *j = u->jobs[i];
    if (outcome == MLT__OUT_FAILED && j->info == INFO_OK) {
      /* Its TraceInfo went first and is stored: the server holds part of it. */
      char msg[400];
      snprintf(msg, sizeof msg, "TraceInfo stored, spans not: %s", why ? why : "");
      job_end(j, MLT__OUT_PARTIAL, msg);
    } else {
      job_end(j, outcome, why);
    }
  }
}

/* The spans of |j| are stored; its TraceInfo could not be. */
static void job_fail_info(tjob *j, int transient, const char *why) {
  mlflow_exp *x = j->u->x;
  int outcome = MLT__OUT_PARTIAL;
  if (transient && x->spool) {
    const mlt__buf *infos[1] = {&j->info_rest};
    if (mlt__spool_put(x->spool, NULL, 0, 1, infos, 1) == 0) outcome = MLT__OUT_SPOOLED;
  }
  job_end(j, outcome, why);
}

static struct curl_slist *base_headers(mlflow_exp *x, const char *content_type) {
  struct curl_slist *h = NULL;
  if (content_type) h = curl_slist_append(h, content_type);
  h = curl_slist_append(h, "Expect:");
  if (x->cfg.bearer) h = curl_slist_append(h, x->cfg.bearer);
  return h;
}

static void send_start(tjob *j);
static void send_otlp(unit *u);
static void start_result(tjob *j, int ok, int transient, const char *why);

/* ---- experiment resolution ---- */

static void resolve_experiment(mlflow_exp *x);

/* Units waiting for the experiment id: send them, or (|ok| 0) spool them
 * when |transient| (server unreachable) or fail them. */
static void flush_pending(mlflow_exp *x, int ok, int transient, const char *why) {
  unit *u;
  while ((u = x->pending_head) != NULL) {
    x->pending_head = u->next;
    if (ok)
      send_otlp(u);
    else
      unit_fail(u, u->otlp.len ? &u->otlp : NULL, transient, why);
  }
}

static void on_created(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err, void *ud) {
  (void)r;
  mlflow_exp *x = ud;
  char why[300];
  if (ok) {
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "experiment_id");
    if (cJSON_IsString(id) && id->valuestring[0]) {
      free(x->experiment_id);
      x->experiment_id = strdup(id->valuestring);
      x->exp_state = x->experiment_id ? EXP_READY : EXP_UNRESOLVED;
      mlt__log(MLT_LOG_INFO, MLT__LOGK_EXPORT2, "created MLflow experiment '%s' (id %s)", x->experiment_name,
               id->valuestring);
      cJSON_Delete(j);
      flush_pending(x, x->exp_state == EXP_READY, 0, "out of memory");
      return;
    }
    cJSON_Delete(j);
  }
  if (status == 400 && len && memmem(body, len, "RESOURCE_ALREADY_EXISTS", 23)) {
    resolve_experiment(x); /* created concurrently by someone else */
    return;
  }
  describe(why, sizeof why, status, err, body, len);
  x->exp_state = EXP_UNRESOLVED;
  mlt__log(MLT_LOG_ERROR, MLT__LOGK_EXPORT, "cannot create MLflow experiment '%s': %s", x->experiment_name, why);
  char msg[480];
  snprintf(msg, sizeof msg, "cannot create MLflow experiment '%.80s': %s", x->experiment_name, why);
  if (!ok && transient_failure(status)) mlt__net_failure(&x->health);
  flush_pending(x, 0, !ok && transient_failure(status), msg);
}

static void on_lookup(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err, void *ud) {
  (void)r;
  mlflow_exp *x = ud;
  char why[300];
  if (ok) {
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "experiment");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "experiment_id");
    const cJSON *stage = cJSON_GetObjectItemCaseSensitive(e, "lifecycle_stage");
    if (cJSON_IsString(stage) && !strcmp(stage->valuestring, "deleted")) {
      cJSON_Delete(j);
      x->exp_state = EXP_UNRESOLVED;
      mlt__log(MLT_LOG_ERROR, MLT__LOGK_EXPORT, "MLflow experiment '%s' is deleted; restore it or pick another",
               x->experiment_name);
      flush_pending(x, 0, 0, "MLflow experiment is deleted");
      return;
    }
    if (cJSON_IsString(id) && id->valuestring[0]) {
      free(x->experiment_id);
      x->experiment_id = strdup(id->valuestring);
      x->exp_state = x->experiment_id ? EXP_READY : EXP_UNRESOLVED;
      cJSON_Delete(j);
      flush_pending(x, x->exp_state == EXP_READY, 0, "out of memory");
      return;
    }
    cJSON_Delete(j);
  }
  if (status == 404) {
    /* Missing: create it. */
    char *url = url_join(x->base_url, "/api/2.0/mlflow/experiments/create");
    mlt__http_req *c = url ? mlt__http_req_new(url, MLT__HTTP_POST, &x->cfg) : NULL;
    free(url);
    if (c) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "name", x->experiment_name);
      char *txt = cJSON_PrintUnformatted(o);
      cJSON_Delete(o);
      if (txt) {
        mlt__buf_puts(&c->body, txt);
        free(txt);
      }
      c->headers = base_headers(x, "Content-Type: application/json");
      c->done = on_created;
      c->ud = x;
      mlt__http_submit(mlt__http_get(), c);
      return;
    }
  }
  describe(why, sizeof why, status, err, body, len);
  x->exp_state = EXP_UNRESOLVED;
  mlt__log(MLT_LOG_ERROR, MLT__LOGK_EXPORT, "cannot look up MLflow experiment '%s': %s", x->experiment_name, why);
  char msg[480];
  snprintf(msg, sizeof msg, "cannot look up MLflow experiment '%.80s': %s", x->experiment_name, why);
  if (!ok && transient_failure(status)) mlt__net_failure(&x->health);
  flush_pending(x, 0, !ok && transient_failure(status), msg);
}

static void resolve_experiment(mlflow_exp *x) {
  x->exp_state = EXP_RESOLVING;
  char *name = curl_easy_escape(NULL, x->experiment_name, 0);
  char *path = name ? malloc(strlen(name) + 64) : NULL;
  if (path) sprintf(path, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=%s", name);
  char *url = path ? url_join(x->base_url, path) : NULL;
  curl_free(name);
  free(path);
  mlt__http_req *r = url ? mlt__http_req_new(url, MLT__HTTP_GET, &x->cfg) : NULL;
  free(url);
  if (!r) {
    x->exp_state = EXP_UNRESOLVED;
    flush_pending(x, 0, 0, "out of memory");
    return;
  }
  r->headers = base_headers(x, NULL);
  r->health = &x->health;
  r->done = on_lookup;
  r->ud = x;
  mlt__http_submit(mlt__http_get(), r);
}

/* ---- artifact upload (fallback) ---- */

static void on_put(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err, void *ud) {
  (void)r;
  tjob *j = ud;
  char why[300];
  if (!ok) describe(why, sizeof why, status, err, body, len);
  job_end(j, ok ? MLT__OUT_OK : MLT__OUT_FAILED, ok ? NULL : why);
}

/* The HTTP URL of a trace's traces.json from its mlflow.artifactLocation. */
static char *artifact_url(mlflow_exp *x, const char *loc) {
  const char *path = NULL;
  if (!strncmp(loc, "mlflow-artifacts:", 17)) {
    path = loc + 17;
    if (!strncmp(path, "//", 2)) { /* mlflow-artifacts://host:port/path */
      path = strchr(path + 2, '/');
      if (!path) return NULL;
    }
    size_t n = strlen(x->base_url) + strlen(path) + 64;
    char *u = malloc(n);
    if (!u) return NULL;
    size_t bl = strlen(x->base_url);
    while (bl && x->base_url[bl - 1] == '/') bl--;
    snprintf(u, n, "%.*s/api/2.0/mlflow-artifacts/artifacts%s%s/traces.json", (int)bl, x->base_url,
             path[0] == '/' ? "" : "/", path);
    return u;
  }
  if ((!strncmp(loc, "http://", 7) || !strncmp(loc, "https://", 8)) && strstr(loc, "/mlflow-artifacts/artifacts/")) {
    size_t n = strlen(loc) + 16;
    char *u = malloc(n);
    if (u) snprintf(u, n, "%s/traces.json", loc);
    return u;
  }
  return NULL;
}

/* The answer to |j|'s StartTraceV3 (OTLP mode).  Sent after the spans: the
 * trace is done.  Sent ahead of them: remember it; once every TraceInfo of
 * the unit is answered, the spans follow, and the outcome is decided when
 * they are stored (spans_stored) or not (unit_fail). */
static void start_result(tjob *j, int ok, int transient, const char *why) {
  unit *u = j->u;
  if (!u->infos_first) {
    if (ok)
      job_end(j, MLT__OUT_OK, NULL);
    else
      job_fail_info(j, transient, why);
    return;
  }
  j->info = ok ? INFO_OK : transient ? INFO_FAIL_TRANSIENT : INFO_FAIL;
  if (!ok && why && !j->info_why) j->info_why = strdup(why);
  if (--u->infos_pending == 0) send_otlp(u);
}

static void on_start(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err, void *ud) {
  (void)r;
  tjob *j = ud;
  mlflow_exp *x = j->u->x;
  char why[300];
  if (!ok) {
    describe(why, sizeof why, status, err, body, len);
    if (transient_failure(status)) mlt__net_failure(&x->health);
    if (x->mode == MODE_ARTIFACT)
      job_end(j, MLT__OUT_FAILED, why); /* nothing stored yet */
    else
      start_result(j, 0, transient_failure(status), why);
    return;
  }
  mlt__net_success(&x->health);
  if (x->mode != MODE_ARTIFACT) {
    start_result(j, 1, 0, NULL);
    return;
  }
  /* Fallback: upload the spans as the traces.json artifact. */
  cJSON *resp = cJSON_ParseWithLength(body, len);
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "trace"), "trace_info"), "tags");
  const cJSON *loc = cJSON_GetObjectItemCaseSensitive(tags, "mlflow.artifactLocation");
  char *url = cJSON_IsString(loc) ? artifact_url(x, loc->valuestring) : NULL;
  if (!url) {
    snprintf(why, sizeof why, "the server gave no usable artifact location (%s); spans not uploaded",
             cJSON_IsString(loc) ? loc->valuestring : "none");
    cJSON_Delete(resp);
    job_end(j, MLT__OUT_FAILED, why);
    return;
  }
  cJSON_Delete(resp);
  mlt__http_req *p = mlt__http_req_new(url, MLT__HTTP_PUT, &x->cfg);
  free(url);
  if (!p) {
    job_end(j, MLT__OUT_FAILED, "out of memory");
    return;
  }
  x->held_bytes -= j->data.len;
  j->held -= j->data.len;
  p->body = j->data;
  memset(&j->data, 0, sizeof j->data);
  p->headers = base_headers(x, "Content-Type: application/json");
  p->done = on_put;
  p->ud = j;
  mlt__http_submit(mlt__http_get(), p);
}

static void send_start(tjob *j) {
  mlflow_exp *x = j->u->x;
  char *url = url_join(x->base_url, "/api/3.0/mlflow/traces");
  mlt__http_req *r = url ? mlt__http_req_new(url, MLT__HTTP_POST, &x->cfg) : NULL;
  free(url);
  if (!r) {
    start_result(j, 0, 0, "out of memory");
    return;
  }
  r->lat_track = 1;
  mlt__buf_lit(&r->body, "{\"trace\": {\"trace_info\": {\"trace_location\": {\"type\": \"MLFLOW_EXPERIMENT\", "
                         "\"mlflow_experiment\": {\"experiment_id\": ");
  mlt__json_str(&r->body, x->experiment_id, strlen(x->experiment_id));
  mlt__buf_lit(&r->body, "}}, ");
  mlt__buf_put(&r->body, j->info_rest.p ? j->info_rest.p : "}", j->info_rest.len ? j->info_rest.len : 1);
  mlt__buf_lit(&r->body, "}}");
  if (r->body.oom) {
    mlt__http_req_free(r);
    start_result(j, 0, 0, "out of memory");
    return;
  }
  r->headers = base_headers(x, "Content-Type: application/json");
  r->health = &x->health;
  r->done = on_start;
  r->ud = j;
  mlt__http_submit(mlt__http_get(), r);
}

/* The spans of |u| are stored: each job ends with its TraceInfo's outcome
 * (sent before the spans, in OTLP mode), or its TraceInfo follows now (the
 * probe unit, a spooled unit). */
static void spans_stored(unit *u) {
  mlflow_exp *x = u->x;
  for (size_t i = u->n; i-- > 0;) {
    tjob *j = u->jobs[i];
    x->held_bytes -= j->data.len; /* not needed on the OTLP path */
    j->held -= j->data.len;
    mlt__buf_free(&j->data);
    if (!j->info_rest.len || j->info == INFO_OK)
      job_end(j, MLT__OUT_OK, NULL);
    else if (j->info != INFO_UNSENT)
      job_fail_info(j, j->info == INFO_FAIL_TRANSIENT, j->info_why ? j->info_why : "TraceInfo not stored");
    else if (x->stopping)
      job_fail_info(j, 1, "shutdown deadline reached before the TraceInfo was sent");
    else
      send_start(j);
  }
}

/* The probe was answered (or failed): the units waiting for it go. */
static void probe_answered(mlflow_exp *x) {
  x->probing = 0;
  unit *w = x->mode_wait;
  x->mode_wait = NULL;
  while (w) {
    unit *next = w->next;
    if (x->stopping)
      unit_fail(w, &w->otlp, 1, MLT__DEADLINE_REASON);
    else
      send_otlp(w);
    w = next;
  }
}

static void on_otlp(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err, void *ud) {
  unit *u = ud;
  mlflow_exp *x = u->x;
  char why[300];
  int probe = u->probe;
  u->probe = 0;
  if (ok) {
    if (x->mode == MODE_UNKNOWN) x->mode = MODE_OTLP;
    mlt__net_success(&x->health);
    spans_stored(u);
    if (probe) probe_answered(x);
    return;
  }
  if ((status == 404 || status == 501) && x->mode != MODE_OTLP) {
    /* No OTLP ingestion here (FileStore backend or server < 3.4): use
     * StartTraceV3 + the traces.json artifact from now on. */
    x->mode = MODE_ARTIFACT;
    mlt__log(MLT_LOG_INFO, MLT__LOGK_EXPORT2,
             "MLflow server has no OTLP span ingestion (HTTP %ld): uploading traces.json artifacts instead", status);
    for (size_t i = u->n; i-- > 0;) {
      tjob *j = u->jobs[i];
      if (j->info_rest.len && j->data.len && !x->stopping)
        send_start(j);
      else
        job_end(j, MLT__OUT_FAILED,
                j->info_rest.len ? "server has no OTLP endpoint"
                                 : "spans of a continued or remote trace need the server's OTLP endpoint (/v1/traces)");
    }
    if (probe) probe_answered(x);
    return;
  }
  describe(why, sizeof why, status, err, body, len);
  int transient = transient_failure(status);
  if (transient) mlt__net_failure(&x->health);
  unit_fail(u, &r->body, transient, why);
  if (probe) probe_answered(x);
}

static void send_otlp(unit *u) {
  mlflow_exp *x = u->x;
  if (x->mode == MODE_ARTIFACT) {
    /* No OTLP: straight to StartTraceV3 + artifact. */
    for (size_t i = u->n; i-- > 0;) {
      tjob *j = u->jobs[i];
      if (j->info_rest.len && j->data.len)
        send_start(j);
      else
        job_end(j, MLT__OUT_FAILED, "spans of a continued or remote trace need the server's OTLP endpoint (/v1/traces)");
    }
    return;
  }
  if (!u->otlp.len) { /* a spooled TraceInfo whose spans are stored already */
    spans_stored(u);
    return;
  }
  if (x->mode == MODE_UNKNOWN && !u->probe) {
    if (x->probing) { /* wait for the probe's answer */
      unit_append(&x->mode_wait, u);
      return;
    }
    x->probing = u->probe = 1; /* spans first */
  }
  if (x->mode == MODE_OTLP && !u->infos_first) {
    /* TraceInfos first (see the top of this file).  One count is held
     * until every request is submitted (an answer may come at once). */
    u->infos_pending = 1;
    for (size_t i = 0; i < u->n; i++)
      if (u->jobs[i]->info_rest.len) {
        u->infos_first = 1;
        u->infos_pending++;
        send_start(u->jobs[i]);
      }
    if (--u->infos_pending) return;
  }
  if (u->infos_first && (x->stopping || (x->spool && x->health.down))) {
    /* Past the shutdown deadline, or the server stopped answering while the
     * TraceInfos were sent: the spans go to the spool (or are counted). */
    unit_fail(u, &u->otlp, 1, x->stopping ? MLT__DEADLINE_REASON : "the MLflow server does not answer (spooled for later delivery)");
    return;
  }
  char *url = url_join(x->base_url, "/v1/traces");
  mlt__http_req *r = url ? mlt__http_req_new(url, MLT__HTTP_POST, &x->cfg) : NULL;
  free(url);
  if (!r) {
    int probe = u->probe;
    u->probe = 0;
    unit_fail(u, &u->otlp, 0, "out of memory");
    if (probe) probe_answered(x); /* no answer will come: the units waiting for it go on */
    return;
  }
  x->held_bytes -= u->otlp.len; /* the transport counts it from here */
  r->lat_track = 1;
  r->body = u->otlp;
  memset(&u->otlp, 0, sizeof u->otlp);
  r->headers = base_headers(x, "Content-Type: application/x-protobuf");
  char hdr[300];
  snprintf(hdr, sizeof hdr, "x-mlflow-experiment-id: %s", x->experiment_id);
  r->headers = curl_slist_append(r->headers, hdr);
  r->health = &x->health;
  r->done = on_otlp;
  r->ud = u;
  mlt__http_submit(mlt__http_get(), r);
}

/* Send |u| now, or queue it until the experiment id is known. */
static void dispatch(unit *u) {
  mlflow_exp *x = u->x;
  if (x->exp_state != EXP_READY) {
    if (x->exp_state == EXP_UNRESOLVED && x->experiment_name) resolve_experiment(x);
    unit_append(&x->pending_head, u);
    return;
  }
  send_otlp(u);
}

static unit *unit_new(mlflow_exp *x, size_t cap) {
  unit *u = calloc(1, sizeof *u);
  if (u) u->jobs = calloc(cap ? cap : 1, sizeof *u->jobs);
  if (!u || !u->jobs) {
    free(u);
    return NULL;
  }
  u->x = x;
  return u;
}

/* Encode the spans of |ps| (the traces of |u|, in order) and send. */
static void unit_go(unit *u, mlt__prepared **ps) {
  mlflow_exp *x = u->x;
  if (x->mode != MODE_ARTIFACT && u->n) {
    mlt__otlp_encode(&u->otlp, ps, u->n, NULL);
    x->held_bytes += u->otlp.len;
    if (u->otlp.oom) {
      unit_fail(u, NULL, 0, "out of memory while encoding spans");
      return;
    }
  }
  u->open = u->n;
  if (x->stopping) { /* past the shutdown deadline: what is left goes to the spool */
    unit_fail(u, &u->otlp, 1, MLT__DEADLINE_REASON);
    return;
  }
  if (x->spool && x->health.down && x->mode != MODE_ARTIFACT) {
    /* The server does not answer: straight to the spool (a replayed record
     * probes it, see replay()). */
    unit_fail(u, &u->otlp, 1, "the MLflow server does not answer (spooled for later delivery)");
    return;
  }
  dispatch(u);
}

static void mlflow_export(mlt_exporter *e, mlt__prepared *const *traces, size_t n) {
  mlflow_exp *x = (mlflow_exp *)e;
  if (x->stopping && !x->spool) {
    for (size_t i = 0; i < n; i++) mlt__export_done(e, traces[i]->ticket, 0, MLT__DEADLINE_REASON);
    return;
  }
  mlt__prepared **ps = calloc(n ? n : 1, sizeof *ps);
  unit *u = ps ? unit_new(x, MLT_MIN(n, (size_t)UNIT_MAX_JOBS)) : NULL;
  if (!u) {
    free(ps);
    for (size_t i = 0; i < n; i++) mlt__export_done(e, traces[i]->ticket, 0, "out of memory");
    return;
  }
  size_t est = 0;
  for (size_t i = 0; i < n; i++) {
    mlt__prepared *p = traces[i];
    size_t sz = p->t->qbytes;
    if (u->n && (u->n == UNIT_MAX_JOBS || est + sz > UNIT_MAX_BYTES)) {
      /* This request is full: send it and start the next one. */
      unit *nu = unit_new(x, MLT_MIN(n - i, (size_t)UNIT_MAX_JOBS));
      if (!nu) {
        for (size_t k = i; k < n; k++) mlt__export_done(e, traces[k]->ticket, 0, "out of memory");
        break;
      }
      unit_go(u, ps);
      u = nu;
      est = 0;
    }
    tjob *j = calloc(1, sizeof *j);
    if (!j) {
      mlt__export_done(e, p->ticket, 0, "out of memory");
      continue;
    }
    j->u = u;
    j->ticket = p->ticket;
    int needs_start = p->root >= 0 && !(p->t->flags & (MLT__TF_CONTINUATION | MLT__TF_REMOTE));
    if (needs_start)
      mlt__json_trace_info(&j->info_rest, x->mode != MODE_OTLP ? &j->data : NULL, p, mlt__prepared_info(p));
    if (j->info_rest.oom || j->data.oom) {
      mlt__buf_free(&j->info_rest);
      mlt__buf_free(&j->data);
      free(j);
      mlt__export_done(e, p->ticket, 0, "out of memory while serializing");
      continue;
    }
    j->held = j->info_rest.len + j->data.len;
    x->held_bytes += j->held;
    x->in_flight++;
    ps[u->n] = p;
    u->jobs[u->n++] = j;
    est += sz;
  }
  if (u->n)
    unit_go(u, ps);
  else
    unit_free(u);
  free(ps);
}

static int mlflow_start(mlt_exporter *e, const mlt__export_env *env) {
  mlflow_exp *x = (mlflow_exp *)e;
  http_cfg_from_env(&x->cfg, env, 0);
  if (!mlt__http_open(&env->http)) return -1;
  if (!x->spool) {
    size_t n = strlen(x->base_url) + (x->experiment_name ? strlen(x->experiment_name) : 0) +
               (x->experiment_id ? strlen(x->experiment_id) : 0) + 32;
    char *target = malloc(n);
    if (target) {
      if (x->exp_state == EXP_READY)
        snprintf(target, n, "%s|id:%s", x->base_url, x->experiment_id);
      else
        snprintf(target, n, "%s|name:%s", x->base_url, x->experiment_name);
      x->spool = mlt__spool_open("mlflow", target, &env->spool);
      x->base.spooling = x->spool != NULL;
      free(target);
    }
  }
  if (x->exp_state == EXP_RESOLVING) resolve_experiment(x);
  return 0;
}

/* The transport is shared by both network exporters: either one's abandon()
 * fails every request, so the reason names no particular server. */
#define ABANDONED "shutdown deadline reached before the server answered"

/* Replayed records are safe on disk: shutdown does not wait for them. */
static size_t mlflow_in_flight(mlt_exporter *e) {
  mlflow_exp *x = (mlflow_exp *)e;
  return mlt__export_stopping(e) ? x->in_flight - x->replay_traces : x->in_flight;
}

static int window_open(mlflow_exp *x) {
  return x->in_flight < MLT__NET_WINDOW_TRACES &&
         x->held_bytes + mlt__http_backlog_bytes(mlt__http_get()) < MLT__NET_WINDOW_BYTES;
}

/* Backpressure: a new batch waits while this exporter holds a full window
 * of traces or bytes (its own buffers plus the shared transport's) --
 * except while the server is down and the spool takes new traces. */
static int mlflow_ready(mlt_exporter *e) {
  mlflow_exp *x = (mlflow_exp *)e;
  return window_open(x) || (x->spool && x->health.down && !x->stopping);
}

/* Deliver spooled records: while the server answers, as many as the
 * window allows (a few requests at a time, so live traces keep flowing);
 * while it is down, one at a time -- that request probes the server, and
 * its success turns delivery back on. */
#define REPLAY_MAX 4
static void replay(mlflow_exp *x) {
  if (!x->spool || x->stopping || mlt__export_stopping(&x->base) || x->mode == MODE_ARTIFACT || x->exp_state != EXP_READY)
    return;
  size_t max = x->health.down ? 1 : REPLAY_MAX;
  while (x->replaying < max && window_open(x)) {
    mlt__spool_rec *rec = NULL;
    if (!mlt__spool_take(x->spool, &rec)) return;
    if (!rec->n_traces) {
      mlt__spool_done(x->spool, rec);
      continue;
    }
    unit *u = unit_new(x, rec->n_traces);
    tjob **jobs = u ? u->jobs : NULL;
    size_t k = 0;
    for (uint32_t i = 0; jobs && i < rec->n_traces; i++) {
      tjob *j = calloc(1, sizeof *j);
      if (!j) break;
      j->u = u;
      j->ticket = NO_TICKET;
      j->info_rest = rec->infos[i];
      memset(&rec->infos[i], 0, sizeof rec->infos[i]);
      j->held = j->info_rest.len;
      x->held_bytes += j->held;
      x->in_flight++;
      jobs[k++] = j;
    }
    if (!u || k < rec->n_traces) {
      /* Out of memory: leave the record for later. */
      for (size_t i = 0; i < k; i++) {
        x->held_bytes -= jobs[i]->held;
        x->in_flight--;
        mlt__buf_free(&jobs[i]->info_rest);
        free(jobs[i]);
      }
      if (u) {
        free(u->jobs);
        free(u);
      }
      mlt__spool_release(x->spool, rec);
      return;
    }
    u->n = u->open = k;
    u->otlp = rec->otlp;
    memset(&rec->otlp, 0, sizeof rec->otlp);
    x->held_bytes += u->otlp.len;
    u->rec = rec;
    x->replaying++;
    x->replay_traces += k;
    send_otlp(u);
  }
}

static int64_t mlflow_poll(mlt_exporter *e, int64_t now) {
  replay((mlflow_exp *)e);
  return mlt__http_poll(mlt__http_get(), now);
}

static void mlflow_abandon(mlt_exporter *e) {
  mlflow_exp *x = (mlflow_exp *)e;
  x->stopping = 1;
  mlt__http_abandon(mlt__http_get(), ABANDONED);
  flush_pending(x, 0, 1, "shutdown deadline reached while resolving the MLflow experiment");
  probe_answered(x); /* x->stopping: the waiting units are spooled or counted */
}

static void mlflow_destroy(mlt_exporter *e) {
  mlflow_exp *x = (mlflow_exp *)e;
  flush_pending(x, 0, 0, "exporter destroyed");
  for (unit *w = x->mode_wait, *next; w; w = next) {
    next = w->next;
    unit_fail(w, &w->otlp, 0, "exporter destroyed");
  }
  x->mode_wait = NULL;
  mlt__spool_close(x->spool);
  free(x->base_url);
  free(x->experiment_id);
  free(x->experiment_name);
  mlt__http_cfg_free(&x->cfg);
  free(x);
  curl_global_cleanup();
}

static const mlt__exporter_ops mlflow_ops = {.name = "mlflow",
                                             .start = mlflow_start,
                                             .export_batch = mlflow_export,
                                             .poll = mlflow_poll,
                                             .in_flight = mlflow_in_flight,
                                             .ready = mlflow_ready,
                                             .abandon = mlflow_abandon,
                                             .destroy = mlflow_destroy};

int mlt_exporter_mlflow_new(const char *tracking_uri, const char *experiment_id, const char *experiment_name,
                            mlt_exporter **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!tracking_uri || (strncmp(tracking_uri, "http://", 7) && strncmp(tracking_uri, "https://", 8)))
    return MLT_EINVAL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return MLT_EIO;
  mlflow_exp *x = calloc(1, sizeof *x);
  if (!x) {
    curl_global_cleanup();
    return MLT_ENOMEM;
  }
  x->base.ops = &mlflow_ops;
  x->base_url = strdup(tracking_uri);
  size_t bl = x->base_url ? strlen(x->base_url) : 0;
  while (bl && x->base_url[bl - 1] == '/') x->base_url[--bl] = '\0';
  x->experiment_id = mlt__strdup(experiment_id);
  x->experiment_name = mlt__strdup(experiment_name);
  if (!x->base_url || (experiment_id && !x->experiment_id) || (experiment_name && !x->experiment_name)) {
    mlflow_destroy(&x->base);
    return MLT_ENOMEM;
  }
  if (x->experiment_id)
    x->exp_state = EXP_READY;
  else if (x->experiment_name)
    x->exp_state = EXP_RESOLVING;
  else {
    x->experiment_id = strdup("0");
    x->exp_state = EXP_READY;
  }
  *out = &x->base;
  return MLT_OK;
}

/* For lib/export/assess-mlflow.c (trace operations go to the same server, with the
 * same credentials). */
int mlt__exporter_mlflow_target(const mlt_exporter *e, const char **base_url, const mlt__http_cfg **cfg) {
  if (e->ops != &mlflow_ops) return -1;
  const mlflow_exp *x = (const mlflow_exp *)e;
  *base_url = x->base_url;
  *cfg = &x->cfg;
  return 0;
}

/* ---- the OTLP exporter ----------------------------------------------- */

typedef struct otlp_exp {
  mlt_exporter base;
  char *endpoint;
  char *service_name;
  struct curl_slist *headers;
  int gzip;
  mlt__http_cfg cfg;
  size_t in_flight;
  int stopping;
  mlt__spool *spool; /* NULL: off */
  mlt__net_health health;
  size_t replaying, replay_traces;
} otlp_exp;

/* The traces of one request. */
typedef struct obatch {
  otlp_exp *x;
  uint32_t *tickets; /* NULL for a record replayed from the spool */
  size_t n;
  mlt__spool_rec *rec;
} obatch;

static void obatch_end(obatch *b, int outcome, const char *why) {
  otlp_exp *x = b->x;
  if (b->rec && outcome == MLT__OUT_SPOOLED) {
    /* A replayed record that failed again: it stays for the next attempt. */
    mlt__spool_release(x->spool, b->rec);
    b->rec = NULL;
    x->replaying--;
    x->replay_traces -= b->n;
  }
  for (size_t i = 0; i < b->n; i++) {
    if (b->tickets)
      mlt__export_result(&x->base, b->tickets[i], outcome, why);
    else
      mlt__spool_replayed_outcome(x->spool, outcome, why);
  }
  if (b->rec) {
    mlt__spool_done(x->spool, b->rec);
    x->replaying--;
    x->replay_traces -= b->n;
  }
  x->in_flight -= b->n;
  free(b->tickets);
  free(b);
}

static void on_otlp_generic(mlt__http_req *r, int ok, long status, const char *body, size_t len, const char *err,
                            void *ud) {
  obatch *b = ud;
  otlp_exp *x = b->x;
  char why[300];
  if (ok) {
    mlt__net_success(&x->health);
    obatch_end(b, MLT__OUT_OK, NULL);
    return;
  }
  describe(why, sizeof why, status, err, body, len);
  int outcome = MLT__OUT_FAILED;
  if (transient_failure(status)) {
    mlt__net_failure(&x->health);
    /* The body as sent (gzip or not: replay tells them apart). */
    if (b->rec || (x->spool && mlt__spool_put(x->spool, r->body.p, r->body.len, (uint32_t)b->n, NULL, 0) == 0))
      outcome = MLT__OUT_SPOOLED;
  }
  obatch_end(b, outcome, why);
}

static void otlp_send(otlp_exp *x, obatch *b, mlt__buf *body) {
  mlt__http_req *r = mlt__http_req_new(x->endpoint, MLT__HTTP_POST, &x->cfg);
  if (!r) {
    mlt__buf_free(body);
    obatch_end(b, MLT__OUT_FAILED, "out of memory");
    return;
  }
  r->lat_track = 1;
  for (struct curl_slist *h = x->headers; h; h = h->next) r->headers = curl_slist_append(r->headers, h->data);
  r->headers = curl_slist_append(r->headers, "Content-Type: application/x-protobuf");
  r->headers = curl_slist_append(r->headers, "Expect:");
  int gz = body->len >= 2 && (unsigned char)body->p[0] == 0x1f && (unsigned char)body->p[1] == 0x8b;
  if (!gz && x->gzip && gzip_buf(body, &r->body) == 0) {
    mlt__buf_free(body);
    gz = 1;
  } else {
    mlt__buf_free(&r->body);
    r->body = *body;
    memset(body, 0, sizeof *body);
  }
  if (gz) r->headers = curl_slist_append(r->headers, "Content-Encoding: gzip");
  r->health = &x->health;
  r->done = on_otlp_generic;
  r->ud = b;
  mlt__http_submit(mlt__http_get(), r);
}

static void otlp_export(mlt_exporter *e, mlt__prepared *const *traces, size_t n) {
  otlp_exp *x = (otlp_exp *)e;
  if (x->stopping && !x->spool) {
    for (size_t i = 0; i < n; i++) mlt__export_done(e, traces[i]->ticket, 0, MLT__DEADLINE_REASON);
    return;
  }
  obatch *b = calloc(1, sizeof *b);
  if (b) b->tickets = calloc(n, sizeof *b->tickets);
  mlt__buf raw = {0};
  if (b && b->tickets) mlt__otlp_encode(&raw, traces, n, x->service_name);
  if (!b || !b->tickets || raw.oom) {
    if (b) free(b->tickets);
    free(b);
    mlt__buf_free(&raw);
    for (size_t i = 0; i < n; i++) mlt__export_done(e, traces[i]->ticket, 0, "out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++) b->tickets[i] = traces[i]->ticket;
  b->n = n;
  b->x = x;
  x->in_flight += n;
  if (x->stopping || (x->spool && x->health.down)) {
    /* Past the shutdown deadline, or the receiver does not answer: to the
     * spool (a replayed record probes the receiver). */
    int ok = x->spool && mlt__spool_put(x->spool, raw.p, raw.len, (uint32_t)n, NULL, 0) == 0;
    mlt__buf_free(&raw);
    obatch_end(b, ok ? MLT__OUT_SPOOLED : MLT__OUT_FAILED,
               x->stopping ? MLT__DEADLINE_REASON : "the OTLP receiver does not answer (spooled for later delivery)");
    return;
  }
  otlp_send(x, b, &raw);
}

static int otlp_window_open(otlp_exp *x) {
  return x->in_flight < MLT__NET_WINDOW_TRACES && mlt__http_backlog_bytes(mlt__http_get()) < MLT__NET_WINDOW_BYTES;
}

static void otlp_replay(otlp_exp *x) {
  if (!x->spool || x->stopping || mlt__export_stopping(&x->base)) return;
  size_t max = x->health.down ? 1 : REPLAY_MAX;
  while (x->replaying < max && otlp_window_open(x)) {
    mlt__spool_rec *rec = NULL;
    if (!mlt__spool_take(x->spool, &rec)) return;
    obatch *b = calloc(1, sizeof *b);
    if (!b) {
      mlt__spool_release(x->spool, rec);
      return;
    }
    b->x = x;
    b->n = rec->n_traces;
    b->rec = rec;
    x->in_flight += b->n;
    x->replaying++;
    x->replay_traces += b->n;
    otlp_send(x, b, &rec->otlp);
  }
}

static int64_t otlp_poll(mlt_exporter *e, int64_t now) {
  otlp_replay((otlp_exp *)e);
  return mlt__http_poll(mlt__http_get(), now);
}

static int otlp_start(mlt_exporter *e, const mlt__export_env *env) {
  otlp_exp *x = (otlp_exp *)e;
  /* Resolved here, not at creation: an exporter made with
   * mlt_exporter_otlp_new() before mlt_init() sees the configuration. */
  if (!x->service_name) x->service_name = mlt__strdup(env->service_name ? env->service_name : mlt__program_name());
  const char *comp = env->otlp_compression;
  if (comp && !strcasecmp(comp, "gzip"))
    x->gzip = 1;
  else if (comp && strcasecmp(comp, "none"))
    mlt__log(MLT_LOG_WARN, MLT__LOGK_ENV, "OTEL_EXPORTER_OTLP_COMPRESSION='%s' is not supported; sending uncompressed",
             comp);
  http_cfg_from_env(&x->cfg, env, 1);
  if (!x->spool) {
    size_t n = strlen(x->endpoint) + 8;
    char *target = malloc(n);
    if (target) {
      snprintf(target, n, "%s", x->endpoint);
      x->spool = mlt__spool_open("otlp", target, &env->spool);
      x->base.spooling = x->spool != NULL;
      free(target);
    }
  }
  return mlt__http_open(&env->http) ? 0 : -1;
}

static size_t otlp_in_flight(mlt_exporter *e) {
  otlp_exp *x = (otlp_exp *)e;
  return mlt__export_stopping(e) ? x->in_flight - x->replay_traces : x->in_flight;
}

static int otlp_ready(mlt_exporter *e) {
  otlp_exp *x = (otlp_exp *)e;
  return otlp_window_open(x) || (x->spool && x->health.down && !x->stopping);
}

static void otlp_abandon(mlt_exporter *e) {
  otlp_exp *x = (otlp_exp *)e;
  x->stopping = 1;
  mlt__http_abandon(mlt__http_get(), ABANDONED);
}

static void otlp_destroy(mlt_exporter *e) {
  otlp_exp *x = (otlp_exp *)e;
  mlt__spool_close(x->spool);
  free(x->endpoint);
  free(x->service_name);
  curl_slist_free_all(x->headers);
  mlt__http_cfg_free(&x->cfg);
  free(x);
  curl_global_cleanup();
}

static const mlt__exporter_ops otlp_ops = {.name = "otlp",
                                           .start = otlp_start,
                                           .export_batch = otlp_export,
                                           .poll = otlp_poll,
                                           .in_flight = otlp_in_flight,
                                           .ready = otlp_ready,
                                           .abandon = otlp_abandon,
                                           .destroy = otlp_destroy};

/* OTEL_EXPORTER_OTLP_HEADERS: "k1=v1,k2=v2" with URL-encoded values.  An
 * entry without '=' or a key, or whose decoded value holds CR, LF or NUL,
 * is counted in *bad and skipped. */
static struct curl_slist *parse_headers(const char *spec, int *bad) {
  struct curl_slist *list = NULL;
  *bad = 0;
  if (!spec) return NULL;
  mlt__buf line = {0};
  const char *p = spec;
  while (*p) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    const char *ke = eq, *v = eq ? eq + 1 : end, *ve = end;
    while (p < ke && (*p == ' ' || *p == '\t')) p++;
    while (ke > p && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    int ok = eq && ke > p;
    mlt__buf_reset(&line);
    if (ok) {
      mlt__buf_put(&line, p, (size_t)(ke - p));
      mlt__buf_lit(&line, ": ");
    }
    for (const char *q = v; ok && q < ve; q++) {
      char c = *q;
      uint64_t hv;
      if (c == '%' && q + 2 < ve && !mlt__parse_hex(q + 1, 2, &hv)) {
        c = (char)hv;
        q += 2;
      }
      if (c == '\r' || c == '\n' || c == '\0') ok = 0;
      mlt__buf_putc(&line, c);
    }
    for (const char *q = p; ok && q < ke; q++)
      if (*q == '\r' || *q == '\n') ok = 0;
    if (ok && !line.oom)
      list = curl_slist_append(list, mlt__buf_cstr(&line));
    else
      (*bad)++;
    p = *end ? end + 1 : end;
  }
  mlt__buf_free(&line);
  return list;
}

int mlt_exporter_otlp_new(const char *endpoint, const char *headers, mlt_exporter **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!endpoint || (strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8))) return MLT_EINVAL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return MLT_EIO;
  otlp_exp *x = calloc(1, sizeof *x);
  if (!x) {
    curl_global_cleanup();
    return MLT_ENOMEM;
  }
  x->base.ops = &otlp_ops;
  x->endpoint = strdup(endpoint);
  int bad = 0;
  x->headers = parse_headers(headers, &bad);
  if (bad)
    mlt__log(MLT_LOG_WARN, MLT__LOGK_ENV, "OTLP headers: %d malformed entr%s ignored (expected key=value,...)", bad,
             bad == 1 ? "y" : "ies");
  if (!x->endpoint) {
    otlp_destroy(&x->base);
    return MLT_ENOMEM;
  }
  *out = &x->base;
  return MLT_OK;
}
