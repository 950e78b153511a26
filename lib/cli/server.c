/* lib/cli/server.c: reading traces from an MLflow tracking server for
 * `mltrace list --tracking-uri URL` and `mltrace show --tracking-uri URL ID`.
 *
 * The same settings as the library's exporter: MLFLOW_TRACKING_TOKEN
 * (bearer) or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (basic),
 * MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH,
 * MLFLOW_HTTP_REQUEST_TIMEOUT (seconds); the experiment from --experiment,
 * else MLFLOW_EXPERIMENT_ID, else MLFLOW_EXPERIMENT_NAME, else "0".
 * Requests, as MLflow's own client makes them:
 *   GET  /api/2.0/mlflow/experiments/get-by-name?experiment_name=...
 *   POST /api/3.0/mlflow/traces/search       (newest first, paged)
 *   GET  /api/3.0/mlflow/traces/{id}         (TraceInfo, with assessments)
 *   GET  /api/3.0/mlflow/traces/get?trace_id=...&allow_partial=true
 *        (spans stored in the tracking store, as OTLP JSON)
 *   GET  /api/2.0/mlflow-artifacts/artifacts/<location>/traces.json
 *        (spans stored as an artifact: FileStore servers)
 * Spans read as OTLP JSON are turned into the MLflow span dicts of a file
 * store line, so both go through the same model and views.  Credentials
 * never appear in messages (URLs are printed without user info).
 */
#include "cli.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
  char *base;
  long timeout_s;
  char *bearer; /* header line */
  const char *user, *password, *ca;
  bool insecure;
} conn;

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && v[0] ? v : NULL;
}

static bool truthy(const char *v) {
  return v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"));
}

static void conn_init(conn *c, const char *uri) {
  memset(c, 0, sizeof *c);
  size_t n = strlen(uri);
  while (n && uri[n - 1] == '/') n--;
  c->base = xstrndup(uri, n);
  const char *to = env("MLFLOW_HTTP_REQUEST_TIMEOUT");
  c->timeout_s = to ? strtol(to, NULL, 10) : 120;
  if (c->timeout_s <= 0) c->timeout_s = 120;
  const char *tok = env("MLFLOW_TRACKING_TOKEN");
  if (tok) {
    sbuf b = {0};
    sb_puts(&b, "Authorization: Bearer ");
    sb_puts(&b, tok);
    c->bearer = sb_steal(&b);
  }
  c->user = env("MLFLOW_TRACKING_USERNAME");
  c->password = env("MLFLOW_TRACKING_PASSWORD");
  c->ca = env("MLFLOW_TRACKING_SERVER_CERT_PATH");
  c->insecure = truthy(env("MLFLOW_TRACKING_INSECURE_TLS"));
}

static void conn_free(conn *c) {
  if (c->bearer) memset(c->bearer, 0, strlen(c->bearer));
  free(c->bearer);
  free(c->base);
}

/* "scheme://host:port" of a URL, without user info or path: safe to print. */
static void where(const char *url, char *out, size_t size) {
  const char *p = strstr(url, "://");
  const char *host = p ? p + 3 : url;
  const char *at = strpbrk(host, "@/?#");
  if (at && *at == '@') host = at + 1;
  snprintf(out, size, "%.*s%s%.*s", p ? (int)(p - url) : 0, url, p ? "://" : "", (int)strcspn(host, "/?#"), host);
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  sbuf *b = ud;
  if (b->n > ((size_t)256 << 20)) return 0; /* a trace larger than 256 MiB: give up */
  sb_putn(b, p, sz * n);
  return sz * n;
}

/* One request.  Returns the HTTP status (0 when none; *err says why), the
 * body in *body. */
static long request(const conn *c, const char *url, const char *post, sbuf *body, char *err, size_t errsize) {
  CURL *h = curl_easy_init();
  if (!h) die_oom();
  char ebuf[CURL_ERROR_SIZE] = "";
  struct curl_slist *hd = NULL;
  body->n = 0;
  if (body->p) body->p[0] = '\0';
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_USERAGENT, "mltrace/" MLTRACE_CLI_VERSION);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
  if (c->insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (c->ca) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
  if (c->bearer) {
    hd = curl_slist_append(hd, c->bearer);
  } else if (c->user && c->password) {
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
    curl_easy_setopt(h, CURLOPT_PASSWORD, c->password);
  }
  if (post) {
    hd = curl_slist_append(hd, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
  }
  if (hd) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
  CURLcode rc = curl_easy_perform(h);
  long status = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  else snprintf(err, errsize, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
  curl_slist_free_all(hd);
  curl_easy_cleanup(h);
  return status;
}

/* GET or POST |url|; a JSON reply on 2xx, else NULL after a message (or,
 * with |quiet_404|, NULL and *status 404 without one). */
static cJSON *call(const conn *c, const char *url, const char *post, long *status_out, bool quiet_404) {
  sbuf body = {0};
  char err[CURL_ERROR_SIZE + 64] = "", host[256];
  long status = request(c, url, post, &body, err, sizeof err);
  if (status_out) *status_out = status;
  where(url, host, sizeof host);
  cJSON *doc = NULL;
  if (status >= 200 && status < 300) {
    doc = cJSON_ParseWithLength(body.p ? body.p : "", body.n);
    if (doc) attach_number_text(doc, body.p, body.n);
    else fprintf(stderr, "mltrace: %s: the answer is not JSON\n", host);
  } else if (!(quiet_404 && status == 404)) {
    if (status == 0) {
      fprintf(stderr, "mltrace: cannot reach %s: %s\n", host, err);
    } else {
      /* {"error_code": ..., "message": ...} when MLflow answered. */
      cJSON *e = cJSON_ParseWithLength(body.p ? body.p : "", body.n);
      const char *msg = jstr(e, "message");
      sbuf m = {0};
      put_str(&m, msg ? msg : body.p ? body.p : "", 300, T_SPACE);
      fprintf(stderr, "mltrace: %s answered HTTP %ld%s%s\n", host, status, m.n ? ": " : "", m.n ? m.p : "");
      if (status == 401 || status == 403)
        fputs("mltrace: set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD\n",
              stderr);
      free(m.p);
      cJSON_Delete(e);
    }
  }
  free(body.p);
  return doc;
}

static char *url_of(const conn *c, const char *path) {
  sbuf b = {0};
  sb_puts(&b, c->base);
  sb_puts(&b, path);
  return sb_steal(&b);
}

static bool all_digits(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

/* The experiment id: digits are an id, anything else a name looked up. */
static char *experiment_id(const conn *c, const char *exp) {
  if (!exp) exp = env("MLFLOW_EXPERIMENT_ID");
  if (!exp) exp = env("MLFLOW_EXPERIMENT_NAME");
  if (!exp) exp = "0";
  if (all_digits(exp)) return xstrdup(exp);
  CURL *h = curl_easy_init();
  if (!h) die_oom();
  char *esc = curl_easy_escape(h, exp, 0);
  curl_easy_cleanup(h);
  if (!esc) die_oom();
  sbuf p = {0};
  sb_puts(&p, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=");
  sb_puts(&p, esc);
  curl_free(esc);
  char *url = url_of(c, p.p);
  free(p.p);
  long status = 0;
  cJSON *doc = call(c, url, NULL, &status, true);
  free(url);
  const char *id = jstr(jget(doc, "experiment"), "experiment_id");
  char *r = id ? xstrdup(id) : NULL;
  if (!r && status == 404) {
    sbuf m = {0};
    put_str(&m, exp, 200, T_SPACE);
    fprintf(stderr, "mltrace: no experiment named '%s' on the server\n", m.p);
    free(m.p);
  }
  cJSON_Delete(doc);
  return r;
}

bool server_list(store *st, const server_options *o) {
  conn c;
  conn_init(&c, o->uri);
  st->fname = "the server";
  char *exp = experiment_id(&c, o->experiment);
  bool ok = exp != NULL;
  char *url = url_of(&c, "/api/3.0/mlflow/traces/search");
  char *token = NULL;
  cJSON *pages = cJSON_CreateArray(); /* keep every page: the traces print oldest first */
  long got = 0;
  while (ok && got < o->max) {
    cJSON *req = cJSON_CreateObject();
    cJSON *loc = cJSON_CreateObject(), *me = cJSON_CreateObject(), *locs = cJSON_CreateArray();
    cJSON_AddStringToObject(me, "experiment_id", exp);
    cJSON_AddStringToObject(loc, "type", "MLFLOW_EXPERIMENT");
    cJSON_AddItemToObject(loc, "mlflow_experiment", me);
    cJSON_AddItemToArray(locs, loc);
    cJSON_AddItemToObject(req, "locations", locs);
    cJSON_AddNumberToObject(req, "max_results", (double)(o->max - got < 500 ? o->max - got : 500));
    cJSON *order = cJSON_CreateArray();
    cJSON_AddItemToArray(order, cJSON_CreateString("timestamp_ms DESC"));
    cJSON_AddItemToObject(req, "order_by", order);
    if (token) cJSON_AddStringToObject(req, "page_token", token);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) die_oom();
    cJSON *doc = call(&c, url, body, NULL, false);
    cJSON_free(body);
    free(token);
    token = NULL;
    if (!doc) {
      ok = false;
      break;
    }
    const cJSON *traces = jget(doc, "traces");
    got += cJSON_IsArray(traces) ? cJSON_GetArraySize(traces) : 0;
    const char *next = jstr(doc, "next_page_token");
    if (next && next[0]) token = xstrdup(next);
    cJSON_AddItemToArray(pages, doc);
    if (!token || !cJSON_IsArray(traces) || cJSON_GetArraySize(traces) == 0) break;
  }
  if (ok) {
    /* Newest first from the server: print oldest first, like a file. */
    for (int p = cJSON_GetArraySize(pages) - 1; p >= 0; p--) {
      const cJSON *traces = jget(cJSON_GetArrayItem(pages, p), "traces");
      for (int i = cJSON_GetArraySize(traces) - 1; i >= 0; i--) {
        const cJSON *info = cJSON_GetArrayItem(traces, i);
        const char *tid = jstr(info, "trace_id");
        if (tid && tid[0]) merge_info(store_trace(st, tid), info);
      }
    }
  }
  cJSON_Delete(pages);
  free(token);
  free(url);
  free(exp);
  conn_free(&c);
  return ok;
}

/* An OTLP JSON span (as GetTrace returns it) as the MLflow span dict of a
 * file store line. */
static cJSON *mlflow_span(const cJSON *o) {
  cJSON *s = cJSON_CreateObject();
  static const char *const copy[] = {"name", "span_id", "parent_span_id", "start_time_unix_nano",
                                     "end_time_unix_nano"};
  for (size_t i = 0; i < sizeof copy / sizeof *copy; i++) {
    const cJSON *v = jget(o, copy[i]);
    if (v) cJSON_AddItemToObject(s, copy[i], cJSON_Duplicate(v, 1));
  }
  const cJSON *st = jget(o, "status");
  if (st) cJSON_AddItemToObject(s, "status", cJSON_Duplicate(st, 1));
  /* Attribute values become JSON text, as MLflow stores them in a span dict. */
  cJSON *attrs = cJSON_CreateObject();
  const cJSON *a, *list = jget(o, "attributes");
  if (cJSON_IsArray(list))
    cJSON_ArrayForEach(a, list) {
      const char *k = jstr(a, "key");
      if (!k) continue;
      cJSON *v = otlp_value(jget(a, "value"));
      sbuf b = {0};
      print_json(&b, v);
      cJSON_Delete(v);
      cJSON_AddItemToObject(attrs, k, cJSON_CreateString(b.p ? b.p : "null"));
      free(b.p);
    }
  cJSON_AddItemToObject(s, "attributes", attrs);
  cJSON *events = cJSON_CreateArray();
  const cJSON *e, *evs = jget(o, "events");
  if (cJSON_IsArray(evs))
    cJSON_ArrayForEach(e, evs) {
      cJSON *ne = cJSON_CreateObject();
      const char *n = jstr(e, "name");
      cJSON_AddStringToObject(ne, "name", n ? n : "");
      cJSON *ea = cJSON_CreateObject();
      const cJSON *x, *el = jget(e, "attributes");
      if (cJSON_IsArray(el))
        cJSON_ArrayForEach(x, el) {
          const char *k = jstr(x, "key");
          cJSON *v = otlp_value(jget(x, "value"));
          if (k && v) cJSON_AddItemToObject(ea, k, v);
          else cJSON_Delete(v);
        }
      cJSON_AddItemToObject(ne, "attributes", ea);
      cJSON_AddItemToArray(events, ne);
    }
  cJSON_AddItemToObject(s, "events", events);
  return s;
}

/* The URL of traces.json from a trace's mlflow.artifactLocation. */
static char *artifact_url(const conn *c, const char *loc) {
  sbuf b = {0};
  if (!strncmp(loc, "mlflow-artifacts:", 17)) {
    const char *path = loc + 17;
    if (!strncmp(path, "//", 2)) { /* mlflow-artifacts://host:port/path */
      path = strchr(path + 2, '/');
      if (!path) return NULL;
    }
    sb_puts(&b, c->base);
    sb_puts(&b, "/api/2.0/mlflow-artifacts/artifacts");
    if (path[0] != '/') sb_putc(&b, '/');
    sb_puts(&b, path);
    sb_puts(&b, "/traces.json");
    return sb_steal(&b);
  }
  if ((!strncmp(loc, "http://", 7) || !strncmp(loc, "https://", 8)) && strstr(loc, "/mlflow-artifacts/artifacts/")) {
    sb_puts(&b, loc);
    sb_puts(&b, "/traces.json");
    return sb_steal(&b);
  }
  return NULL;
}

int server_show(store *st, const server_options *o, const char *query) {
  conn c;
  conn_init(&c, o->uri);
  st->fname = "the server";
  const char *hex = strip_tr(query);
  if (strlen(hex) != 32 || !is_hex(hex, 32)) {
    sbuf m = {0};
    put_str(&m, query, 80, T_SPACE);
    fprintf(stderr, "mltrace: '%s' is not a trace id (tr- and 32 hex digits; prefixes work on files only)\n", m.p);
    free(m.p);
    conn_free(&c);
    return 2;
  }
  char tid[40];
  snprintf(tid, sizeof tid, "tr-%s", hex);
  for (char *p = tid; *p; p++)
    if (*p >= 'A' && *p <= 'F') *p = (char)(*p + 32);
  sbuf p = {0};
  sb_printf(&p, "/api/3.0/mlflow/traces/%s", tid);
  char *url = url_of(&c, p.p);
  free(p.p);
  long status = 0;
  cJSON *doc = call(&c, url, NULL, &status, true);
  free(url);
  const cJSON *info = jget(jget(doc, "trace"), "trace_info");
  if (!info) {
    if (status == 404) fprintf(stderr, "mltrace: trace not found: %s (on the server)\n", tid);
    cJSON_Delete(doc);
    conn_free(&c);
    return 2;
  }
  trace *t = store_trace(st, tid);
  merge_info(t, info);
  /* The UI's page of the trace: what its own "share" link holds. */
  const char *exp = jstr(jget(jget(info, "trace_location"), "mlflow_experiment"), "experiment_id");
  if (exp) {
    const char *host = strstr(c.base, "://");
    const char *at = host ? strpbrk(host + 3, "@/") : NULL;
    sbuf l = {0};
    if (at && *at == '@') { /* no user info in what we print */
      sb_putn(&l, c.base, (size_t)(host + 3 - c.base));
      sb_puts(&l, at + 1);
    } else {
      sb_puts(&l, c.base);
    }
    sb_printf(&l, "/#/experiments/%s/traces?selectedEvaluationId=%s&traceId=%s", exp, tid, tid);
    t->link = sb_steal(&l);
  }
  const cJSON *tags = jget(info, "tags");
  const char *where_spans = jstr(tags, "mlflow.trace.spansLocation");
  const char *loc = jstr(tags, "mlflow.artifactLocation");
  bool done = false;
  if (!where_spans || !strcmp(where_spans, "TRACKING_STORE")) {
    p = (sbuf){0};
    sb_printf(&p, "/api/3.0/mlflow/traces/get?trace_id=%s&allow_partial=true", tid);
    url = url_of(&c, p.p);
    free(p.p);
    cJSON *full = call(&c, url, NULL, NULL, !!loc);
    free(url);
    const cJSON *sp, *spans = jget(jget(full, "trace"), "spans");
    if (cJSON_IsArray(spans)) {
      cJSON *arr = cJSON_CreateArray();
      cJSON_ArrayForEach(sp, spans) cJSON_AddItemToArray(arr, mlflow_span(sp));
      add_spans(t, arr, st->details);
      cJSON_Delete(arr);
      done = true;
    }
    cJSON_Delete(full);
  }
  if (!done && loc) {
    /* Spans kept as the traces.json artifact ({"spans": [span dicts]}). */
    url = artifact_url(&c, loc);
    cJSON *data = url ? call(&c, url, NULL, NULL, false) : NULL;
    free(url);
    add_spans(t, jget(data, "spans"), st->details);
    cJSON_Delete(data);
  }
  cJSON_Delete(doc);
  conn_free(&c);
  return 0;
}
