/* lib/export/otlp-internal.h: OTLP protobuf encoding and the HTTP transport shared
 * by the MLflow and OTLP exporters (export thread only). */
#ifndef MLT_OTLP_INTERNAL_H
#define MLT_OTLP_INTERNAL_H

#include "export/exporter-internal.h"
#include "export/spool-internal.h"

#include <curl/curl.h>

/* Append one ExportTraceServiceRequest holding every span of |traces| (one
 * resource with |service_name| if not NULL, one scope), with trace-level
 * data on each root span (mlflow.traceTag.*, session.id, user.id). */
void mlt__otlp_encode(mlt__buf *out, mlt__prepared *const *traces, size_t n, const char *service_name);

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
  /* transport state */
  CURL *easy;
  mlt__buf resp;
  int attempts;
  int64_t first_ns, next_ns;
  long retry_after_ms;
  char errbuf[CURL_ERROR_SIZE];
  mlt__http_req *next;
};

typedef struct mlt__http mlt__http;

/* The shared transport: created by the network exporters' start() in
 * mlt_init() (before the export thread exists), used by the export thread
 * only, freed by mlt__http_shutdown().  Becomes the export thread's wait
 * primitive (curl_multi_poll / curl_multi_wakeup).  NULL on failure. */
mlt__http *mlt__http_open(void);
/* The transport opened by mlt__http_open(), or NULL. */
mlt__http *mlt__http_get(void);
/* The in-flight window of a network exporter: traces accepted and not yet
 * reported, and request bytes held (queued, running or waiting for a
 * retry).  While it is full the exporter is not ready() and the export
 * thread stops dequeuing (backpressure): nothing fails for lack of room. */
#define MLT__NET_WINDOW_TRACES ((size_t)8192)
#define MLT__NET_WINDOW_BYTES ((size_t)64 << 20)
/* Queue |r| (takes ownership; |r->done| is called exactly once: at once,
 * with an error, when |h| is NULL). */
void mlt__http_submit(mlt__http *h, mlt__http_req *r);
/* Bytes of request bodies held now (0 for NULL). */
size_t mlt__http_backlog_bytes(const mlt__http *h);
/* Drive transfers and due retries; returns when (monotonic ns) it next
 * needs to run, or 0. */
int64_t mlt__http_poll(mlt__http *h, int64_t now_ns);
/* 1 when a failed request may succeed if sent again: no answer (status
 * 0), 408, 429, 5xx (but 501), and MLflow's 400s for database capacity or
 * concurrency conditions (|body|: the response). */
int mlt__http_transient(long status, const char *body, size_t len);
/* Fail every queued and running request with |why|. */
void mlt__http_abandon(mlt__http *h, const char *why);

mlt__http_req *mlt__http_req_new(const char *url, int method, const mlt__http_cfg *cfg);
/* Free a request that was never submitted. */
void mlt__http_req_free(mlt__http_req *r);
/* Fill |c| (freed first) from the resolved configuration: timeouts, retry
 * budget, and for the MLflow server (|otlp| 0) TLS and credentials.  Called
 * from the exporters' start(), once mlt_init() resolved the options. */
void mlt__http_cfg_init(mlt__http_cfg *c, int otlp);
void mlt__http_cfg_free(mlt__http_cfg *c);
/* Copy |n| bytes of |in| to |out| (NUL-terminated, cut to |size|) with
 * secrets replaced by "[REDACTED]": the configured token, password and OTLP
 * header values wherever they appear, the values of authorization / token /
 * password / api-key / cookie fields (as headers, JSON or query text), the
 * word after "Bearer" or "Basic", and the user info of URLs.  For anything
 * a server sent back that goes to the log. */
void mlt__redact(const char *in, size_t n, char *out, size_t size);
/* "scheme://host[:port]" of a URL without user info, path or query: safe to
 * log. */
void mlt__url_for_log(const char *url, char *out, size_t size);

#endif /* MLT_OTLP_INTERNAL_H */
