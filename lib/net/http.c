/* lib/net/http.c: the HTTP transport of the network exporters.
 *
 * One curl multi handle on the export thread: keep-alive connections are
 * reused across requests (the multi's connection cache), at most
 * requests run at once within a congestion window (grown by a success
 * answered quickly, shrunk by one answered slowly -- see base_latency() --
 * and halved on every transient failure: a timeout, a refused or reset
 * connection, 408, 429, 5xx; an overloaded server, SQLite's single writer
 * above all, gets fewer requests, not more retries), up to the
 * max_requests it was opened with (the MLflow exporter passes
 * MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS, default 10).  The window
 * also remembers where it failed: after an overload failure (timeout, 429,
 * 5xx, a transient 400; not a refused connection) it may grow back only up
 * to the size it was halved to, plus one per cooldown (10 s, doubled when
 * the raised size fails again, up to 5 min).  Many processes sharing one
 * server cannot see each other, and some servers fail hard past a
 * concurrency they do not announce: an MLflow server's SQLAlchemy pool
 * (5 + 10 connections per worker) deadlocks for its 30 s pool timeout when
 * 15 StartTraceV3 requests each hold one connection and wait for a second
 * (its start_trace looks the experiment up in a nested session).  Without
 * the memory, eight processes each growing back from 1 to 2 in one round
 * trip re-enter that state every ~30 s; with it they settle below it.
 * Transient failures (connection errors, timeouts, HTTP 408, 429, 500, 502,
 * 503, 504) are retried with exponential
 * backoff and jitter (honouring Retry-After) until the retry budget is spent.
 * A request that timed out is sent again with twice its time (up to
 * MLT__HTTP_TIMEOUT_CAP_MS, or the configured timeout when that is longer):
 * the server got it and is busy, so waiting longer gets the answer, where
 * re-sending it with the same short timeout would only pile up the same work
 * on a server already slower than the timeout.
 * The bytes held are bounded by the exporters' windows (backpressure, see
 * MLT__NET_WINDOW_BYTES), not here.
 * The export thread waits in curl_multi_poll(), and application threads wake
 * it with curl_multi_wakeup() (only on batch thresholds, flush, shutdown).
 * mlt_init() opens the transport and may queue a first request before the
 * export thread starts; after that only the export thread uses it.
 */
#include "net/http-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

struct mlt__http {
  CURLM *multi;
  mlt__http_req *wait_head, *wait_tail; /* queued or waiting for a retry */
  mlt__http_req *run_head;              /* attached to the multi handle */
  size_t running;
  size_t body_bytes; /* bodies of queued + running requests */
  size_t max_running; /* the configured bound */
  double window;      /* requests allowed in flight now (congestion control) */
  double ceiling;     /* the window may not grow past this before ceil_at_ns */
  int64_t ceil_at_ns; /* when the ceiling may rise by one (0: no ceiling) */
  int64_t cooldown_ns; /* current cooldown; doubled while failures repeat */
  int probing;         /* the ceiling was raised and has not failed since */
  struct {              /* answer time of a URL when the server is not queueing */
    uint64_t key;       /* hash of the URL; 0: free */
    int64_t base;       /* least answer time of this epoch and the one before */
    int64_t cur;        /* least of this epoch */
    int64_t epoch_end;
  } lat[4];
  unsigned lat_next;
  CURL *idle[16];
  int n_idle;
  mlt__http_settings s; /* as opened */
};

/* The time budget is the bound on retries; the attempt cap only stops a
 * pathological loop (backoff reaches 5 s after 6 attempts). */
#define MAX_ATTEMPTS 1000
/* The longest a timed-out request's retry may wait: MLflow's default
 * MLFLOW_HTTP_REQUEST_TIMEOUT. */
#define MLT__HTTP_TIMEOUT_CAP_MS 120000L

/* The timeout of |r|'s next attempt: the configured one, doubled for each
 * attempt that timed out, within the cap. */
static long attempt_timeout_ms(const mlt__http_req *r) {
  long t = r->cfg->timeout_ms, cap = MLT_MAX(t, MLT__HTTP_TIMEOUT_CAP_MS);
  for (int i = 0; i < r->timeouts && t < cap; i++) t *= 2;
  return MLT_MIN(t, cap);
}

static mlt__http *g_http;

#define COOLDOWN_MIN_NS ((int64_t)10 * 1000000000)
#define COOLDOWN_MAX_NS ((int64_t)300 * 1000000000)

/* The answer time of |url| when the server is not queueing: the least seen
 * over the last 30-60 s (a few URLs are tracked: those of requests marked
 * lat_track, the ones every trace goes to; an exporter has one or two).  A
 * success answered within twice that grows the window; one answered
 * in over four times that (the server queues our requests behind each other
 * or behind other clients') shrinks it by as much as a success grows it
 * (delay-based, as TCP Vegas): several processes sharing a server settle
 * where it stops answering faster, before it fails. */
#define LAT_SLACK_NS ((int64_t)5 * 1000000)
#define LAT_EPOCH_NS ((int64_t)30 * 1000000000)
static int64_t base_latency(mlt__http *h, const char *url, int64_t took, int64_t now) {
  uint64_t k = 1469598103934665603u;
  for (const unsigned char *p = (const unsigned char *)url; *p; p++) k = (k ^ *p) * 1099511628211u;
  k |= 1;
  unsigned i = 0;
  while (i < 4 && h->lat[i].key != k) i++;
  if (i == 4) { /* a new URL takes the oldest slot */
    i = h->lat_next++ % 4;
    h->lat[i].key = k;
    h->lat[i].base = h->lat[i].cur = took;
    h->lat[i].epoch_end = now + LAT_EPOCH_NS;
  }
  if (now >= h->lat[i].epoch_end) {
    h->lat[i].base = h->lat[i].cur;
    h->lat[i].cur = took;
    h->lat[i].epoch_end = now + LAT_EPOCH_NS;
  }
  if (took < h->lat[i].cur) h->lat[i].cur = took;
  if (took < h->lat[i].base) h->lat[i].base = took;
  return h->lat[i].base;
}

/* A success: additive increase, within the learned ceiling. */
static void grow_window(mlt__http *h, int64_t now) {
  double max = (double)h->max_running;
  if (h->ceil_at_ns) {
    if (now >= h->ceil_at_ns) { /* a cooldown without failure: one more */
      if (h->probing) h->cooldown_ns = MLT_MAX(h->cooldown_ns / 2, COOLDOWN_MIN_NS);
      h->ceiling += 1.0;
      h->probing = 1;
      h->ceil_at_ns = now + h->cooldown_ns;
      if (h->ceiling >= max) h->ceil_at_ns = 0; /* forgotten */
    }
    if (h->ceil_at_ns) max = MLT_MIN(max, h->ceiling);
  }
  h->window = MLT_MIN(h->window + 1.0 / h->window, max);
}

/* A transient failure: halve the window; when the server answered it
 * (429, 5xx, a transient 400) or timed out -- overload, not a server that is
 * down -- remember the size.  A failure right after the ceiling was raised
 * doubles the cooldown. */
static void shrink_window(mlt__http *h, int64_t now, int overload) {
  h->window = MLT_MAX(h->window / 2, 1.0);
  if (!overload) return;
  if (!h->ceil_at_ns)
    h->cooldown_ns = COOLDOWN_MIN_NS;
  else if (h->probing)
    h->cooldown_ns = MLT_MIN(h->cooldown_ns * 2, COOLDOWN_MAX_NS);
  h->probing = 0;
  h->ceiling = (double)(long)h->window;
  h->ceil_at_ns = now + h->cooldown_ns;
}

static int http_wait(void *ud, int timeout_ms) {
  mlt__http *h = ud;
  int n = 0;
  curl_multi_poll(h->multi, NULL, 0, timeout_ms, &n);
  return n;
}

static void http_wake(void *ud) {
  mlt__http *h = ud;
  curl_multi_wakeup(h->multi);
}

mlt__http *mlt__http_get(void) { return g_http; }

static void count(mlt__http *h, int what, uint64_t n) {
  if (h->s.count) h->s.count(what, n);
}

mlt__http *mlt__http_open(const mlt__http_settings *s) {
  if (g_http) return g_http;
  mlt__http *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->multi = curl_multi_init();
  if (!h->multi) {
    free(h);
    return NULL;
  }
  if (s) h->s = *s;
  h->max_running = h->s.max_requests ? h->s.max_requests : 10;
  h->window = 1.0; /* grows on the first fast answer */
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->max_running + 4);
  g_http = h;
  if (h->s.set_waiter) h->s.set_waiter(http_wait, http_wake, h);
  return h;
}

void mlt__url_for_log(const char *url, char *out, size_t size) {
  const char *p = strstr(url, "://");
  const char *host = p ? p + 3 : url;
  const char *at = strpbrk(host, "@/?#");
  if (at && *at == '@') host = at + 1; /* drop user info */
  size_t hl = strcspn(host, "/?#");
  snprintf(out, size, "%.*s%s%.*s", p ? (int)(p - url) : 0, url, p ? "://" : "", (int)hl, host);
}

/* ---- redaction of what goes to the log ------------------------------ */

static int word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* Keys whose values are secrets, wherever they appear (a header echoed in an
 * error body, a JSON field, a query parameter). */
static const char *const secret_keys[] = {"authorization", "proxy-authorization", "x-api-key", "api-key", "api_key",
                                          "apikey", "token", "password", "passwd", "secret", "cookie",
                                          "credential"};

/* What mlt__redact_configure() added: secret values, "k=v,..." text whose
 * values are secrets, more key names.  Set by mlt_init() before the export
 * thread starts; read-only while it runs. */
#define RED_MAX 8
static struct {
  char *values[RED_MAX];
  char *kv;
  char *keys[RED_MAX];
} g_red;

static void wipe_free(char *p) {
  if (!p) return;
  memset(p, 0, strlen(p));
  free(p);
}

void mlt__redact_configure(const char *const *values, const char *kv_text, const char *const *keys) {
  for (int i = 0; i < RED_MAX; i++) {
    wipe_free(g_red.values[i]);
    free(g_red.keys[i]);
  }
  wipe_free(g_red.kv);
  memset(&g_red, 0, sizeof g_red);
  for (int i = 0, k = 0; values && values[i] && k < RED_MAX; i++)
    if (values[i][0]) g_red.values[k++] = mlt__strdup(values[i]);
  g_red.kv = kv_text ? mlt__strdup(kv_text) : NULL;
  for (int i = 0; keys && keys[i] && i < RED_MAX; i++) g_red.keys[i] = mlt__strdup(keys[i]);
}

static size_t match_ci(const char *s, size_t n, const char *word) {
  size_t l = strlen(word);
  return l <= n && strncasecmp(s, word, l) == 0 ? l : 0;
}

/* Length of a secret value starting at |s| (up to a quote, comma, semicolon,
 * ampersand, whitespace or bracket); an auth scheme word ("Bearer",
 * "Basic", "Token") takes the next word with it. */
static size_t value_len(const char *s, size_t n) {
  size_t i = 0;
  size_t sch = match_ci(s, n, "bearer ");
  if (!sch) sch = match_ci(s, n, "basic ");
  if (!sch) sch = match_ci(s, n, "token ");
  if (!sch) sch = match_ci(s, n, "digest ");
  i = sch;
  while (i < n && s[i] != '"' && s[i] != '\'' && s[i] != ',' && s[i] != ';' && s[i] != '&' && s[i] != ' ' &&
         s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '}' && s[i] != ']' && s[i] != '\\')
    i++;
  return i;
}

/* Secret values configured for this process (token, password, header
 * values; see mlt__redact_configure): redacted wherever they appear
 * verbatim. */
static int known_secret_at(const char *s, size_t n) {
  for (int i = 0; i < RED_MAX && g_red.values[i]; i++) {
    size_t l = strlen(g_red.values[i]);
    if (l >= 4 && l <= n && !memcmp(s, g_red.values[i], l)) return (int)l;
  }
  /* header values: "k=v,k2=v2" (the raw configured text). */
  const char *h = g_red.kv;
  while (h && *h) {
    const char *end = strchr(h, ',');
    if (!end) end = h + strlen(h);
    const char *eq = memchr(h, '=', (size_t)(end - h));
    if (eq) {
      const char *v = eq + 1;
      while (v < end && *v == ' ') v++;
      size_t l = (size_t)(end - v);
      while (l && v[l - 1] == ' ') l--;
      if (l >= 4 && l <= n && !memcmp(s, v, l)) return (int)l;
    }
    h = *end ? end + 1 : end;
  }
  return 0;
}

void mlt__redact(const char *in, size_t n, char *out, size_t size) {
  static const char mask[] = "[REDACTED]";
  size_t k = 0;
  if (!size) return;
#define PUT(c)                      \
  do {                              \
    if (k + 1 < size) out[k++] = (c); \
  } while (0)
  for (size_t i = 0; i < n;) {
    /* user info in a URL: scheme://user:password@host */
    if (i + 3 <= n && !memcmp(in + i, "://", 3)) {
      size_t j = i + 3;
      while (j < n && in[j] != '@' && in[j] != '/' && in[j] != ' ' && in[j] != '"' && in[j] != '?' && in[j] != '#')
        j++;
      if (j < n && in[j] == '@') {
        for (const char *m = "://"; *m; m++) PUT(*m);
        for (const char *m = mask; *m; m++) PUT(*m);
        PUT('@');
        i = j + 1;
        continue;
      }
    }
    int ks = known_secret_at(in + i, n - i);
    if (ks) {
      for (const char *m = mask; *m; m++) PUT(*m);
      i += (size_t)ks;
      continue;
    }
    size_t kl = 0;
    if (i == 0 || !word_char(in[i - 1]))
      for (size_t w = 0; w < MLT_ARRAY_LEN(secret_keys) && !kl; w++) kl = match_ci(in + i, n - i, secret_keys[w]);
    if (!kl && (i == 0 || !word_char(in[i - 1])))
      for (int w = 0; w < RED_MAX && g_red.keys[w] && !kl; w++) kl = match_ci(in + i, n - i, g_red.keys[w]);
    if (kl && (i + kl == n || !word_char(in[i + kl]))) {
      /* the key, then its separator (quotes, ':', '=', spaces), then the value */
      size_t j = i + kl;
      while (j < n && (in[j] == '"' || in[j] == '\'' || in[j] == ':' || in[j] == '=' || in[j] == ' ' || in[j] == '\\'))
        j++;
      size_t vl = j > i + kl ? value_len(in + j, n - j) : 0;
      for (size_t q = i; q < j; q++) PUT(in[q]);
      if (vl) {
        for (const char *m = mask; *m; m++) PUT(*m);
      }
      i = j + vl;
      continue;
    }
    size_t sch = (i == 0 || !word_char(in[i - 1])) ? match_ci(in + i, n - i, "bearer ") : 0;
    if (!sch && (i == 0 || !word_char(in[i - 1]))) sch = match_ci(in + i, n - i, "basic ");
    if (sch) {
      size_t vl = value_len(in + i, n - i);
      if (vl > sch) {
        for (size_t q = i; q < i + sch; q++) PUT(in[q]);
        for (const char *m = mask; *m; m++) PUT(*m);
        i += vl;
        continue;
      }
    }
    PUT(in[i]);
    i++;
  }
#undef PUT
  out[k] = '\0';
}

mlt__http_req *mlt__http_req_new(const char *url, int method, const mlt__http_cfg *cfg) {
  mlt__http_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->url = strdup(url);
  if (!r->url) {
    free(r);
    return NULL;
  }
  r->method = method;
  r->cfg = cfg;
  return r;
}

void mlt__http_req_free(mlt__http_req *r) {
  free(r->url);
  curl_slist_free_all(r->headers);
  mlt__buf_free(&r->body);
  mlt__buf_free(&r->resp);
  free(r);
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  mlt__http_req *r = ud;
  size_t len = sz * n;
  /* Keep at most 64 KiB of a response: enough for any reply we parse. */
  if (r->resp.len < 65536) mlt__buf_put(&r->resp, p, MLT_MIN(len, 65536 - r->resp.len));
  return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  mlt__http_req *r = ud;
  size_t len = sz * n;
  if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
    long s = strtol(p + 12, NULL, 10);
    if (s > 0) r->retry_after_ms = MLT_MIN(s, 30L) * 1000;
  }
  return len;
}

static CURL *get_easy(mlt__http *h) {
  if (h->n_idle) {
    CURL *e = h->idle[--h->n_idle];
    curl_easy_reset(e);
    return e;
  }
  return curl_easy_init();
}

static void put_easy(mlt__http *h, CURL *e) {
  if (h->n_idle < (int)MLT_ARRAY_LEN(h->idle))
    h->idle[h->n_idle++] = e;
  else
    curl_easy_cleanup(e);
}

static int start(mlt__http *h, mlt__http_req *r) {
  CURL *e = get_easy(h);
  if (!e) return -1;
  const mlt__http_cfg *c = r->cfg;
  r->easy = e;
  r->errbuf[0] = '\0';
  r->retry_after_ms = 0;
  mlt__buf_reset(&r->resp);
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, attempt_timeout_ms(r));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_USERAGENT, "mltrace/" MLT_VERSION_STRING);
  if (c->insecure_tls) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (c->ca_path) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_path);
  if (c->userpwd) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERPWD, c->userpwd);
  }
  if (r->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  if (r->method != MLT__HTTP_GET) { /* POST, PUT, PATCH, DELETE: all with a body */
    static const char *const verb[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.p ? r->body.p : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
    if (r->method >= MLT__HTTP_PUT) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, verb[r->method]);
  } else {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
    put_easy(h, e);
    r->easy = NULL;
    return -1;
  }
  r->attempts++;
  r->sent_ns = mlt__mono_ns();
  h->running++;
  r->next = h->run_head;
  h->run_head = r;
  count(h, MLT__HTTP_N_REQUESTS, 1);
  if (r->attempts > 1) count(h, MLT__HTTP_N_RETRIES, 1);
  return 0;
}

static void enqueue_wait(mlt__http *h, mlt__http_req *r) {
  r->next = NULL;
  if (h->wait_tail)
    h->wait_tail->next = r;
  else
    h->wait_head = r;
  h->wait_tail = r;
}

void mlt__http_submit(mlt__http *h, mlt__http_req *r) {
  if (!h) {
    r->done(r, 0, 0, "", 0, "no HTTP transport (not started, or shut down)", r->ud);
    mlt__http_req_free(r);
    return;
  }
  r->first_ns = mlt__mono_ns();
  r->next_ns = 0;
  h->body_bytes += r->body.len;
  enqueue_wait(h, r);
}

size_t mlt__http_backlog_bytes(const mlt__http *h) { return h ? h->body_bytes : 0; }

static int transient_curl(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return 1;
    default:
      return 0;
  }
}

static int transient_http(long s) { return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504; }

int mlt__http_transient(long status, const char *body, size_t len) {
  (void)body;
  (void)len;
  return status == 0 || transient_http(status) || (status >= 500 && status != 501);
}

static void finish(mlt__http *h, mlt__http_req *r, int ok, long status, const char *err) {
  h->body_bytes -= r->body.len;
  r->done(r, ok, status, r->resp.p ? r->resp.p : "", r->resp.len, err, r->ud);
  mlt__http_req_free(r);
}

static void complete(mlt__http *h, CURL *e, CURLcode code) {
  mlt__http_req *r = NULL;
  curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(h->multi, e);
  put_easy(h, e);
  h->running--;
  r->easy = NULL;
  for (mlt__http_req **pp = &h->run_head; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  if (code == CURLE_OK && status >= 200 && status < 300) {
    if (r->health) mlt__net_success(r->health);
    if (r->lat_track) { /* a URL of one trace would take a slot with no history and always grow */
      int64_t now = mlt__mono_ns(), took = now - r->sent_ns, base = base_latency(h, r->url, took, now);
      if (took <= 2 * base + LAT_SLACK_NS)
        grow_window(h, now);
      else if (took > 4 * base + 10 * LAT_SLACK_NS) /* the server queues: fewer at once */
        h->window = MLT_MAX(h->window - 1.0 / h->window, 1.0);
    }
    count(h, MLT__HTTP_N_BYTES, r->body.len);
    finish(h, r, 1, status, NULL);
    return;
  }
  char why[CURL_ERROR_SIZE + 96];
  if (code == CURLE_OPERATION_TIMEDOUT) r->timeouts++;
  if (code != CURLE_OK) {
    const char *m = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
    mlt__redact(m, strlen(m), why, sizeof why);
  } else
    snprintf(why, sizeof why, "HTTP %ld", status);
  int transient =
      code != CURLE_OK ? transient_curl(code)
                       : mlt__http_transient(status, r->resp.p, r->resp.len) ||
                             (r->cfg->transient && r->cfg->transient(status, r->resp.p, r->resp.len));
  int64_t now = mlt__mono_ns();
  if (transient && r->health) mlt__net_failure(r->health);
  if (transient) shrink_window(h, now, code == CURLE_OK || code == CURLE_OPERATION_TIMEDOUT);
  if (transient) {
    /* Exponential backoff with full jitter around the nominal delay. */
    int64_t base = (int64_t)200 * 1000000 << MLT_MIN(r->attempts - 1, 5);
    if (base > (int64_t)5000 * 1000000) base = (int64_t)5000 * 1000000;
    int64_t delay = base / 2 + (int64_t)(mlt__rand64() % (uint64_t)base);
    if (r->retry_after_ms) delay = MLT_MAX(delay, (int64_t)r->retry_after_ms * 1000000);
    if (r->attempts < MAX_ATTEMPTS && now + delay - r->first_ns <= r->cfg->retry_budget_ns) {
      r->next_ns = now + delay;
      enqueue_wait(h, r);
      char where[160];
      mlt__url_for_log(r->url, where, sizeof where);
      mlt__log(MLT_LOG_INFO, MLT__LOGK_EXPORT2, "request to %s failed (%s); retrying in %lld ms", where, why,
               (long long)(delay / 1000000));
      return;
    }
    size_t l = strlen(why);
    snprintf(why + l, sizeof why - l, " (gave up after %d attempts in %.1f s)", r->attempts,
             (double)(now - r->first_ns) / 1e9);
  }
  finish(h, r, 0, status, why);
}

int64_t mlt__http_poll(mlt__http *h, int64_t now) {
  if (!h) return 0;
  int n = 0;
  /* Start what is due, up to the parallel limit, in FIFO order. */
  int64_t next = 0;
  mlt__http_req **pp = &h->wait_head, *prev = NULL;
  while (*pp) {
    mlt__http_req *r = *pp;
    if (r->next_ns > now || (double)h->running >= h->window) {
      if (r->next_ns > now && (!next || r->next_ns < next)) next = r->next_ns;
      prev = r;
      pp = &r->next;
      continue;
    }
    *pp = r->next;
    if (h->wait_tail == r) h->wait_tail = prev;
    if (start(h, r) != 0) finish(h, r, 0, 0, "could not start the request (out of memory)");
  }
  curl_multi_perform(h->multi, &n);
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left)) != NULL)
    if (m->msg == CURLMSG_DONE) complete(h, m->easy_handle, m->data.result);
  if (h->running) {
    /* Let curl's timers (and our poll) drive the transfers. */
    int64_t soon = now + 50 * 1000000LL;
    if (!next || soon < next) next = soon;
  }
  return next;
}

void mlt__http_abandon(mlt__http *h, const char *why) {
  if (!h) return;
  mlt__http_req *r;
  while ((r = h->run_head) != NULL) {
    h->run_head = r->next;
    curl_multi_remove_handle(h->multi, r->easy);
    put_easy(h, r->easy);
    r->easy = NULL;
    h->running--;
    finish(h, r, 0, 0, why);
  }
  while ((r = h->wait_head) != NULL) {
    h->wait_head = r->next;
    finish(h, r, 0, 0, why);
  }
  h->wait_tail = NULL;
}

void mlt__http_atfork_child(void) {
  mlt__forget(g_http); /* curl handles cannot cross fork */
  g_http = NULL;
}

void mlt__http_shutdown(void) {
  mlt__http *h = g_http;
  if (!h) return;
  /* Requests nobody waited for (an experiment lookup still retrying) fail
   * now; what their callbacks submit fails at once (no transport). */
  g_http = NULL;
  mlt__http_abandon(h, "shutting down");
  if (h->s.set_waiter) h->s.set_waiter(NULL, NULL, NULL);
  while (h->n_idle) curl_easy_cleanup(h->idle[--h->n_idle]);
  curl_multi_cleanup(h->multi);
  free(h);
}

/* ---- health ---------------------------------------------------------- */

void mlt__net_failure(mlt__net_health *h) {
  if (!h->down) h->down_since_ns = mlt__mono_ns();
  h->down = 1;
}

void mlt__net_success(mlt__net_health *h) {
  h->down = 0;
  h->successes++;
}

/* ---- configuration --------------------------------------------------- */

void mlt__http_cfg_free(mlt__http_cfg *c) {
  free(c->ca_path);
  if (c->userpwd) {
    memset(c->userpwd, 0, strlen(c->userpwd));
    free(c->userpwd);
  }
  if (c->bearer) {
    memset(c->bearer, 0, strlen(c->bearer));
    free(c->bearer);
  }
  memset(c, 0, sizeof *c);
}
