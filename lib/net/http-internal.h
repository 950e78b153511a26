/* lib/net/http-internal.h: the HTTP transport (curl multi on the export
 * thread) and the redaction of what servers send back before it is logged.
 * Layer: net -- includes util/ only; knows no exporter, no MLflow and no
 * global configuration: whoever opens it passes its settings and hooks. */
#ifndef MLT_HTTP_INTERNAL_H
#define MLT_HTTP_INTERNAL_H

#include "util/json-internal.h"

#include <curl/curl.h>

/* ---- server health (both network exporters) --------------------------- */

/* Whether the destination answers: a request that gave up on a transient
 * error (unreachable, timeouts, 5xx past the retry budget) marks it down;
 * any success marks it up.  While it is down and the spool is on, new
 * traces go to the spool at once instead of waiting in memory. */
typedef struct mlt__net_health {
  int down;
  int64_t down_since_ns;
  uint64_t successes;
} mlt__net_health;
void mlt__net_failure(mlt__net_health *h);
void mlt__net_success(mlt__net_health *h);

/* ---- HTTP transport (curl multi on the export thread) ---------------- */

enum { MLT__HTTP_GET = 0, MLT__HTTP_POST = 1, MLT__HTTP_PUT = 2, MLT__HTTP_PATCH = 3, MLT__HTTP_DELETE = 4 };

typedef struct mlt__http_req mlt__http_req;
/* Completion: |ok| when a 2xx arrived; otherwise |status| is the last HTTP
 * status (0 when none) and |err| says why (no secrets in it).  The request
 * is freed after the callback returns. */
typedef void (*mlt__http_done_fn)(mlt__http_req *r, int ok, long status, const char *body, size_t len,
                                  const char *err, void *ud);

typedef struct mlt__http_cfg {
  long timeout_ms;         /* whole request */
  long connect_timeout_ms; /* TCP/TLS connect */
  int64_t retry_budget_ns; /* retries stop once this much time has passed */
  int insecure_tls;
  char *ca_path;
  char *userpwd;     /* basic auth "user:password", or NULL */
  char *bearer;      /* "Authorization: Bearer ..." header line, or NULL */
  /* More failed answers that may succeed when sent again, beyond
   * mlt__http_transient()'s (a server's own capacity errors), or NULL. */
  int (*transient)(long status, const char *body, size_t len);
} mlt__http_cfg;

struct mlt__http_req {
  char *url;                   /* owned */
  struct curl_slist *headers;  /* owned */
  mlt__buf body;               /* owned */
  int method;
  mlt__http_done_fn done;
  void *ud;
  const mlt__http_cfg *cfg;    /* borrowed; outlives the request */
  struct mlt__net_health *health; /* borrowed or NULL: told of every attempt's outcome */
  int lat_track;               /* 1: a URL every request of its kind goes to (the window learns its answer
                                  time); 0 (default): a URL of one trace (artifact PUT, assessment), whose
                                  success leaves the window as it is */
  /* transport state */
  CURL *easy;
  mlt__buf resp;
  int attempts;
  int timeouts;                /* attempts that timed out: each doubles the next one's timeout */
  int64_t first_ns, next_ns;
  int64_t sent_ns;             /* when the current attempt started */
  long retry_after_ms;
  char errbuf[CURL_ERROR_SIZE];
  mlt__http_req *next;
};

typedef struct mlt__http mlt__http;

/* What the transport is told when it is opened (by whoever opens it first:
 * the network exporters' start(), from the settings the pipeline gave them).
 * The transport reads no global configuration and calls nothing above it
 * but these hooks. */
typedef struct mlt__http_settings {
  uint32_t max_requests; /* concurrent requests at most (0: 10) */
  /* The transport becomes the caller's wait primitive (curl_multi_poll /
   * curl_multi_wakeup): set_waiter(wait, wake, h) at open, set_waiter(NULL,
   * NULL, NULL) at shutdown.  Optional. */
  void (*set_waiter)(int (*wait)(void *ud, int timeout_ms), void (*wake)(void *ud), void *ud);
  /* Counters: MLT__HTTP_N_* |what|, |n| to add.  Optional. */
  void (*count)(int what, uint64_t n);
} mlt__http_settings;
enum {
  MLT__HTTP_N_REQUESTS = 0, /* an attempt sent */
  MLT__HTTP_N_RETRIES = 1,  /* ... that was a retry */
  MLT__HTTP_N_BYTES = 2     /* request body bytes a 2xx answered */
};

/* The shared transport: created by the network exporters' start() in
 * mlt_init() (before the export thread exists), used by the export thread
 * only, freed by mlt__http_shutdown().  |s| is copied.  NULL on failure. */
mlt__http *mlt__http_open(const mlt__http_settings *s);
/* Fail what is pending, close the transport (mlt_shutdown, mlt_init's
 * failure path). */
void mlt__http_shutdown(void);
/* In the child of fork(): forget the parent's transport. */
void mlt__http_atfork_child(void);
/* The transport opened by mlt__http_open(), or NULL. */
mlt__http *mlt__http_get(void);
/* Queue |r| (takes ownership; |r->done| is called exactly once: at once,
 * with an error, when |h| is NULL). */
void mlt__http_submit(mlt__http *h, mlt__http_req *r);
/* Bytes of request bodies held now (0 for NULL). */
size_t mlt__http_backlog_bytes(const mlt__http *h);
/* Drive transfers and due retries; returns when (monotonic ns) it next
 * needs to run, or 0. */
int64_t mlt__http_poll(mlt__http *h, int64_t now_ns);
/* 1 when a failed request may succeed if sent again: no answer (status
 * 0), 408, 429, 5xx (but 501); a request's cfg->transient adds the
 * destination's own cases (|body|: the response). */
int mlt__http_transient(long status, const char *body, size_t len);
/* Fail every queued and running request with |why|. */
void mlt__http_abandon(mlt__http *h, const char *why);

mlt__http_req *mlt__http_req_new(const char *url, int method, const mlt__http_cfg *cfg);
/* Free a request that was never submitted. */
void mlt__http_req_free(mlt__http_req *r);
/* Free what |c| holds (secrets wiped) and zero it. */
void mlt__http_cfg_free(mlt__http_cfg *c);
/* What mlt__redact() hides besides its built-in rules: secret values
 * (NULL-terminated list; token, password), "k=v,k2=v2" header text whose
 * values are secrets, more field names whose values are secrets.  Copied;
 * NULL lists clear.  Called by mlt_init() (before the export thread). */
void mlt__redact_configure(const char *const *values, const char *kv_text, const char *const *keys);
/* Copy |n| bytes of |in| to |out| (NUL-terminated, cut to |size|) with
 * secrets replaced by "[REDACTED]": the configured secret values (see
 * mlt__redact_configure) wherever they appear, the values of authorization
 * / token / password / api-key / cookie fields and configured field names
 * (as headers, JSON or query text), the word after "Bearer" or "Basic", and
 * the user info of URLs.  For anything a server sent back that goes to the
 * log. */
void mlt__redact(const char *in, size_t n, char *out, size_t size);
/* "scheme://host[:port]" of a URL without user info, path or query: safe to
 * log. */
void mlt__url_for_log(const char *url, char *out, size_t size);

#endif /* MLT_HTTP_INTERNAL_H */
