/* lib/otlp-internal.h: OTLP protobuf encoding and the HTTP transport shared
 * by the MLflow and OTLP exporters (export thread only). */
#ifndef MLT_OTLP_INTERNAL_H
#define MLT_OTLP_INTERNAL_H

#include "exporter-internal.h"

#include <curl/curl.h>

typedef struct mlt__otlp_opts {
  const char *service_name; /* resource service.name, or NULL */
} mlt__otlp_opts;

/* Append one ExportTraceServiceRequest holding every span of |traces| (one
 * resource, one scope).  |infos| (may be NULL) adds trace-level data on each
 * root span (mlflow.traceTag.*, session.id, user.id). */
void mlt__otlp_encode(mlt__buf *out, mlt__prepared *const *traces, const mlt__trace_info *const *infos, size_t n,
                      const mlt__otlp_opts *o);
void mlt__otlp_shutdown(void);

/* ---- HTTP transport (curl multi on the export thread) ---------------- */

enum { MLT__HTTP_GET = 0, MLT__HTTP_POST = 1, MLT__HTTP_PUT = 2 };

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
  int max_attempts;
  int insecure_tls;
  char *ca_path;
  char *userpwd;     /* basic auth "user:password", or NULL */
  char *bearer;      /* "Authorization: Bearer ..." header line, or NULL */
  int max_parallel;  /* requests in flight at once */
} mlt__http_cfg;

struct mlt__http_req {
  char *url;                   /* owned */
  struct curl_slist *headers;  /* owned */
  mlt__buf body;               /* owned */
  int method;
  int retry;                   /* retry transient failures */
  mlt__http_done_fn done;
  void *ud;
  const mlt__http_cfg *cfg;    /* borrowed; outlives the request */
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

/* The shared transport, created on first use (export thread).  Becomes the
 * export thread's wait primitive (curl_multi_poll / curl_multi_wakeup). */
mlt__http *mlt__http_get(void);
/* Queue |r| (takes ownership; |r->done| is called exactly once). */
void mlt__http_submit(mlt__http *h, mlt__http_req *r);
/* Drive transfers and due retries; returns when (monotonic ns) it next
 * needs to run, or 0. */
int64_t mlt__http_poll(mlt__http *h, int64_t now_ns);
size_t mlt__http_in_flight(mlt__http *h);
/* Fail every queued and running request with "abandoned". */
void mlt__http_abandon(mlt__http *h, const char *why);
void mlt__http_shutdown(void);

mlt__http_req *mlt__http_req_new(const char *url, int method, const mlt__http_cfg *cfg);
void mlt__http_cfg_from_env(mlt__http_cfg *c, int otlp);
void mlt__http_cfg_free(mlt__http_cfg *c);
/* "scheme://host[:port]" of a URL without user info, path or query: safe to
 * log. */
void mlt__url_for_log(const char *url, char *out, size_t size);

#endif /* MLT_OTLP_INTERNAL_H */
