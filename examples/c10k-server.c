/* examples/c10k-server.c: the shape of a traced LLM service at C10k.  An
 * evhttp server fans each request out to worker threads
 * (mlt_work_queue_submit()), gathers their results back on the loop
 * (mlt_evloop_call(), mlt_evloop_defer()), then streams an answer from an
 * OpenAI-compatible upstream over curl multi on the same loop
 * (mlt_curl_loop) and relays the tokens to its client as HTTP chunks: the
 * tokens of one read from the upstream as one chunk (--per-token: one chunk
 * per token).
 *
 *   ./c10k-server --upstream http://127.0.0.1:PORT [--port 0] [--workers 3]
 *                 [--max-pending 32768] [--max-upstream N] [--job-us N]
 *                 [--per-token] [--no-trace] [--discard] [--quiet]
 *   curl -N 'http://127.0.0.1:PORT/ask?id=1&q=hello'
 *
 * GET /ask?id=ID&q=TEXT: ID names the request (the load generator's, echoed
 * in every span so that a checker can tell a span in a foreign trace), TEXT
 * the question ([A-Za-z0-9 ._-], at most 80 bytes).  Request headers named
 * X-Fake-* are forwarded upstream (the timing controls of
 * examples/fake-openai).  The reply is 200, chunked text/plain: the answer's
 * tokens as they stream; 503 when the work queue refuses the request; 502
 * when the upstream fails before the first token; 400 for a bad query.
 *
 * Each request is one trace:
 *
 *   GET /ask              CHAIN, from libmltrace_event: outputs = the text
 *   |                      written to the client; ends when the reply is
 *   |                      complete or the connection closes
 *   |-- retrieve  x3      RETRIEVER, on worker threads (inputs: id, shard)
 *   |-- gather    x3      TASK, on the loop: each worker's result handed back
 *   |-- build_prompt      TASK, on the loop: deferred once all three are back
 *   `-- chat.completions  CHAT_MODEL, from libmltrace_curl: the streamed
 *                          upstream call (inputs carry the id)
 *
 * Nothing relies on a thread's current span across a boundary: the work
 * queue captures the request's context at submission, mlt_evloop_call()
 * carries the worker's context back, the deferred callback gets the
 * request's context explicitly, and the LLM call is given it as its parent.
 *
 * Ends, truthfully:
 *  - the client hangs up: its request span ends ERROR "ClientDisconnected"
 *    with the bytes that reached the socket as outputs; the upstream call is
 *    cancelled at once (LLM span ERROR "CancelledError"), or, before the
 *    call started, never made;
 *  - SIGTERM/SIGINT: the server stops accepting, says it is shutting down
 *    (mlt_evhttp_begin_shutdown()) and closes: requests in flight end ERROR
 *    "ServerShutdown", their upstream calls are cancelled, the traces are
 *    flushed (within the shutdown deadline), and one line of counters goes
 *    to stdout.
 *
 * Sizing (see README "Running at C10k"): a file descriptor per client and
 * one per upstream stream (the server raises its soft RLIMIT_NOFILE to the
 * hard limit; --max-upstream caps the upstream connections, calls beyond
 * wait for one), a listen backlog of 65535 (capped by net.core.somaxconn), and
 * a work queue that holds 3 jobs per request in flight (--max-pending; a
 * refused job is counted in mlt_stats.work_queue_rejected and the request
 * answered 503).  The loop thread never waits for the queue.  --job-us makes
 * every retrieval wait that long (a slow store: the queue fills up).
 */
#include <mltrace/curl.h>
#include <mltrace/event.h>
#include <mltrace/mltrace.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#define ASK_PATH "/ask"
#define N_SHARDS 3
#define MAX_Q 80
#define IDLE_TIMEOUT_S 120
#define UPSTREAM_STALL_S 60
#define MAX_IDLE_EASY 16384 /* easy handles kept for reuse */

typedef struct server_config {
  const char *upstream; /* base URL of the OpenAI-compatible endpoint */
  int port;
  int workers;
  unsigned max_pending;
  long max_upstream; /* most upstream connections (0: no limit) */
  long job_us;       /* each retrieval waits this long (a slow store) */
  int per_token; /* one HTTP chunk per token (else per upstream read) */
  int trace;   /* 0: libmltrace not initialized */
  int discard; /* traces dropped by the discard exporter (overhead runs) */
  int quiet;
} server_config;

typedef struct ask ask;

typedef struct server {
  server_config cfg;
  char url[512];
  struct event_base *base;
  struct evhttp *http;
  struct evhttp_bound_socket *listener;
  mlt_evhttp *inst;
  mlt_evloop *loop;
  mlt_work_queue *pool;
  mlt_curl_loop *curl;
  mlt_curl_options *curl_opts;
  struct evbuffer *scratch;
  struct event *flush_ev; /* relays the text that came in this loop pass */
  ask **flushq;           /* requests with text to relay */
  size_t n_flush, cap_flush;
  struct event *sigterm, *sigint;
  CURL **idle_easy; /* reusable easy handles */
  size_t n_idle;
  ask *live;
  int stopping; /* the loop is over: evhttp_free() frees the requests */
  unsigned long n_requests, n_ok, n_client_gone, n_shutdown, n_busy, n_upstream_errors, n_bad;
  unsigned long n_live, max_live, max_streams; /* requests in flight; most at once; most LLM calls at once */
} server;

/* One retrieval job: one shard of one request. */
typedef struct shard_job {
  ask *a;
  int shard;
  char doc[48];
} shard_job;

/* One request in flight.  Three things keep it alive: the HTTP side
 * (|http_open|: until libevent is done with the request, or, after the
 * connection closed, until we freed the detached request), the jobs not yet
 * back on the loop (|pending|), and the upstream call (|call|). */
struct ask {
  server *srv;
  ask *prev, *next;
  struct evhttp_request *req; /* NULL once libevent owns or freed it */
  mlt_span span;              /* the request span */
  mlt_context *ctx;           /* its context */
  char id[32];
  char q[MAX_Q + 1];
  struct curl_slist *fwd; /* X-Fake-* headers for the upstream */
  shard_job jobs[N_SHARDS];
  int pending, refused;
  CURL *easy;
  mlt_curl_call *call;
  struct evbuffer *relay; /* tokens not relayed yet */
  int busy;
  int flush_queued;
  unsigned http_open : 1, reply_started : 1, reply_ended : 1, conn_gone : 1;
};

/* ---- helpers -------------------------------------------------------- */

static struct bufferevent *req_bev(struct evhttp_request *req) {
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  return evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
}

/* While a request is worked on its client sends nothing: no read timeout
 * then (a slow answer is not an idle connection); back for keep-alive. */
static void set_read_timeout(struct evhttp_request *req, int on) {
  struct bufferevent *bev = req_bev(req);
  struct timeval tv = {IDLE_TIMEOUT_S, 0};
  if (bev) bufferevent_set_timeouts(bev, on ? &tv : NULL, &tv);
}

static void set_nodelay(struct evhttp_request *req) {
  struct bufferevent *bev = req_bev(req);
  int one = 1;
  if (bev) setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void send_text(struct evhttp_request *req, int code, const char *text) {
  struct evbuffer *b = evbuffer_new();
  if (b) evbuffer_add(b, text, strlen(text));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; charset=utf-8");
  mlt_evhttp_send_reply(req, code, NULL, b); /* completes later, from the loop */
  if (b) evbuffer_free(b);
}

static int query_ok(const char *q) {
  size_t n = strlen(q);
  if (n > MAX_Q) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = q[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(" ._-", c))) return 0;
  }
  return 1;
}

static CURL *easy_get(server *srv) { return srv->n_idle ? srv->idle_easy[--srv->n_idle] : curl_easy_init(); }

static void easy_put(server *srv, CURL *easy) {
  if (!easy) return;
  if (!srv->stopping && srv->n_idle < MAX_IDLE_EASY) {
    srv->idle_easy[srv->n_idle++] = easy;
    return;
  }
  curl_easy_cleanup(easy);
}

/* ---- request life cycle --------------------------------------------- */

static void ask_release(ask *a) {
  if (a->busy || a->call || a->http_open || a->pending) return;
  server *srv = a->srv;
  if (a->prev)
    a->prev->next = a->next;
  else
    srv->live = a->next;
  if (a->next) a->next->prev = a->prev;
  srv->n_live--;
  curl_slist_free_all(a->fwd);
  mlt_context_release(a->ctx);
  if (a->relay) evbuffer_free(a->relay);
  free(a);
}

static void start_reply(ask *a) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(a->req);
  evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
  evhttp_add_header(h, "Cache-Control", "no-cache");
  mlt_evhttp_send_reply_start(a->req, HTTP_OK, "OK");
  a->reply_started = 1;
}

static void end_reply(ask *a) {
  a->reply_ended = 1;
  set_read_timeout(a->req, 1);
  mlt_evhttp_send_reply_end(a->req); /* the span ends once it is written */
}

/* Relay the text that came since the last relay as one HTTP chunk (one
 * chunk event on the request span). */
static void relay_pending(ask *a) {
  if (!a->relay || !evbuffer_get_length(a->relay) || a->conn_gone || !a->req) return;
  if (!a->reply_started) start_reply(a);
  mlt_evhttp_send_reply_chunk(a->req, a->relay);
}

/* After the loop pass's callbacks: relay what each request received. */
static void flush_cb(evutil_socket_t fd, short what, void *arg) {
  server *srv = arg;
  (void)fd, (void)what;
  while (srv->n_flush) {
    ask *a = srv->flushq[--srv->n_flush];
    a->flush_queued = 0;
    relay_pending(a);
    a->busy--;
    ask_release(a);
  }
}

/* Delta callback (inside curl's write path).  Tokens that arrive together
 * (one read from the upstream holds several SSE events when it sends fast)
 * go to the client together, at the end of this loop pass: one HTTP chunk,
 * one write, and one 1 KiB libevent buffer until it is written, instead of
 * one per token (--per-token relays each token at once). */
static int on_delta(mlt_curl_call *call, const char *chunk_json, size_t chunk_len, const char *delta,
                    size_t delta_len, void *user_data) {
  ask *a = user_data;
  server *srv = a->srv;
  (void)call, (void)chunk_json, (void)chunk_len;
  if (a->conn_gone || !a->req) return 1; /* nobody to relay to: abort */
  if (!a->reply_started) start_reply(a);
  if (!delta_len) return 0;
  if (srv->cfg.per_token) {
    evbuffer_add(srv->scratch, delta, delta_len);
    mlt_evhttp_send_reply_chunk(a->req, srv->scratch); /* one chunk event */
    return 0;
  }
  if (!a->relay && !(a->relay = evbuffer_new())) return 1;
  if (evbuffer_add(a->relay, delta, delta_len) != 0) return 1;
  if (!a->flush_queued) {
    if (srv->n_flush == srv->cap_flush) {
      size_t cap = srv->cap_flush ? srv->cap_flush * 2 : 1024;
      ask **q = realloc(srv->flushq, cap * sizeof *q);
      if (!q) {
        relay_pending(a); /* no room to wait: relay now */
        return 0;
      }
      srv->flushq = q;
      srv->cap_flush = cap;
    }
    srv->flushq[srv->n_flush++] = a;
    a->flush_queued = 1;
    a->busy++;
    if (srv->n_flush == 1) event_active(srv->flush_ev, EV_TIMEOUT, 0);
  }
  return 0;
}

static void on_llm_done(mlt_curl_call *call, int status, void *user_data) {
  ask *a = user_data;
  server *srv = a->srv;
  a->busy++;
  a->call = NULL;
  if (a->conn_gone || !a->req) {
    /* Cancelled because the connection closed: nobody to answer. */
  } else if (a->reply_started || status == MLT_OK) {
    relay_pending(a); /* the last tokens first */
    if (!a->reply_started) start_reply(a);
    if (status != MLT_OK) {
      srv->n_upstream_errors++;
      mlt_span_record_error(a->span, "UpstreamError", mlt_curl_call_error(call));
    }
    end_reply(a);
  } else {
    srv->n_upstream_errors++;
    mlt_span_record_error(a->span, "UpstreamError", mlt_curl_call_error(call));
    a->reply_ended = 1;
    set_read_timeout(a->req, 1);
    send_text(a->req, status == MLT_ETIMEDOUT ? 504 : 502, "upstream failed\n");
  }
  mlt_curl_call_free(call); /* when this callback returns */
  easy_put(srv, a->easy);
  a->easy = NULL;
  a->busy--;
  ask_release(a);
}

/* Deferred once every shard is back, under the request's context, in a
 * "build_prompt" span: build the upstream request and start the call. */
static void build_prompt(int status, void *user_data) {
  ask *a = user_data;
  server *srv = a->srv;
  a->pending--;
  if (status == MLT_OK) mlt_span_set_attr_str(mlt_current_span(), "ask.id", a->id);
  if (status != MLT_OK || a->conn_gone || !a->req) { /* stopping, or the client left */
    ask_release(a);
    return;
  }
  char context[3 * sizeof a->jobs[0].doc + 16], user[sizeof a->id + MAX_Q + 16];
  snprintf(context, sizeof context, "Context: %s %s %s", a->jobs[0].doc, a->jobs[1].doc, a->jobs[2].doc);
  snprintf(user, sizeof user, "id=%s q=%s", a->id, a->q);
  cJSON *root = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(root, "messages");
  cJSON *sys = cJSON_CreateObject(), *usr = cJSON_CreateObject();
  cJSON_AddStringToObject(sys, "role", "system");
  cJSON_AddStringToObject(sys, "content", context);
  cJSON_AddStringToObject(usr, "role", "user");
  cJSON_AddStringToObject(usr, "content", user);
  cJSON_AddItemToArray(msgs, sys);
  cJSON_AddItemToArray(msgs, usr);
  cJSON_AddStringToObject(root, "model", "fake-gpt");
  cJSON_AddTrueToObject(root, "stream");
  cJSON_AddTrueToObject(cJSON_AddObjectToObject(root, "stream_options"), "include_usage");
  char *body = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);

  int rc = MLT_ENOMEM;
  a->easy = body ? easy_get(srv) : NULL;
  if (a->easy) {
    curl_easy_setopt(a->easy, CURLOPT_URL, srv->url);
    curl_easy_setopt(a->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(a->easy, CURLOPT_BUFFERSIZE, 1024L); /* curl's minimum: SSE events are small, and each stream holds one */
    curl_easy_setopt(a->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(a->easy, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled stream times out */
    curl_easy_setopt(a->easy, CURLOPT_LOW_SPEED_TIME, (long)UPSTREAM_STALL_S);
    /* The LLM span: a child of the request span, given explicitly. */
    rc = mlt_curl_call_new(a->easy, a->ctx, srv->curl_opts, body, MLT_NTS, a->fwd, &a->call);
  }
  cJSON_free(body);
  if (rc == MLT_OK) {
    mlt_curl_call_set_delta_fn(a->call, on_delta, a);
    rc = mlt_curl_loop_add(srv->curl, a->call, on_llm_done, a);
    size_t streams = mlt_curl_loop_count(srv->curl);
    if (streams > srv->max_streams) srv->max_streams = streams;
  }
  if (rc != MLT_OK) {
    mlt_curl_call_free(a->call); /* never started: its span ends cancelled */
    a->call = NULL;
    easy_put(srv, a->easy);
    a->easy = NULL;
    mlt_span_record_error(a->span, "InternalError", mlt_strerror(rc));
    a->reply_ended = 1;
    send_text(a->req, 500, "cannot start the upstream call\n");
  }
  ask_release(a);
}

/* Every shard is back on the loop (or was refused). */
static void all_gathered(ask *a, int status) {
  server *srv = a->srv;
  if (status != MLT_OK || a->conn_gone || !a->req || srv->stopping) {
    ask_release(a); /* the loop is going, or the client left: nothing to answer */
    return;
  }
  if (a->refused) {
    /* Backpressure: the queue refused a job (counted in
     * mlt_stats.work_queue_rejected); shed the request. */
    srv->n_busy++;
    mlt_span_record_error(a->span, "Overloaded", "work queue full");
    a->reply_ended = 1;
    evhttp_add_header(evhttp_request_get_output_headers(a->req), "Retry-After", "1");
    send_text(a->req, 503, "busy\n");
    ask_release(a);
    return;
  }
  a->pending = 1; /* the deferred step */
  if (mlt_evloop_defer(srv->loop, a->ctx, "build_prompt", build_prompt, a, NULL) != MLT_OK) {
    a->pending = 0;
    a->reply_ended = 1;
    send_text(a->req, 500, "out of memory\n");
    ask_release(a);
  }
}

/* On the loop, in a "gather" span (the worker's context: the request's). */
static void gathered(int status, void *user_data) {
  shard_job *job = user_data;
  ask *a = job->a;
  if (status == MLT_OK) mlt_span_set_attr_str(mlt_current_span(), "ask.id", a->id);
  if (--a->pending > 0) return;
  all_gathered(a, status);
}

/* On a worker thread, under the request's context (captured at submit). */
static void retrieve_job(void *arg) {
  shard_job *job = arg;
  ask *a = job->a;
  mlt_span sp = mlt_span_start("retrieve", MLT_SPAN_RETRIEVER);
  mlt_span_set_inputs_fields(sp, (mlt_attr[]){MLT_ATTR_STR("id", a->id), MLT_ATTR_INT("shard", job->shard)}, 2);
  /* Stand-in for a lookup: a few microseconds of hashing (and, with
   * --job-us, a wait for a slow store). */
  if (a->srv->cfg.job_us > 0) {
    struct timespec ts = {a->srv->cfg.job_us / 1000000, a->srv->cfg.job_us % 1000000 * 1000};
    nanosleep(&ts, NULL);
  }
  uint32_t h = 2166136261u ^ (uint32_t)job->shard;
  for (int round = 0; round < 64; round++)
    for (const char *p = a->q; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  snprintf(job->doc, sizeof job->doc, "doc-%d-%08x", job->shard, h);
  mlt_span_set_outputs_fields(sp, (mlt_attr[]){MLT_ATTR_STR("doc", job->doc)}, 1);
  mlt_span_end(sp);
  /* Back to the loop under the context current here (the request's).  The
   * loop outlives the workers (see the teardown): this fails only for lack
   * of memory, and then the request is lost as under any allocation failure. */
  (void)mlt_evloop_call(a->srv->loop, NULL, "gather", gathered, job);
}

/* After the connection closed, libevent leaves the detached request to us:
 * ending the reply frees it. */
static void finish_detached(int status, void *user_data) {
  ask *a = user_data;
  struct evhttp_request *req = a->req;
  (void)status;
  a->req = NULL;
  a->http_open = 0;
  if (req) mlt_evhttp_send_reply_end(req);
  ask_release(a);
}

/* The request is over: replied, or its connection closed (the client left,
 * or the server is shutting down).  Do not reply from here. */
static void on_request_done(struct evhttp_request *req, int disconnected, void *request_data, void *user_data) {
  server *srv = user_data;
  ask *a = request_data;
  (void)req;
  if (!a) return; /* a reply the handler sent itself (400, 503) */
  a->busy++;
  if (!disconnected) {
    srv->n_ok += !a->refused;
    a->req = NULL;
    a->http_open = 0;
  } else {
    if (srv->stopping)
      srv->n_shutdown++;
    else
      srv->n_client_gone++;
    a->conn_gone = 1;
    /* Stop the upstream at once: the LLM span ends ERROR "CancelledError"
     * with the partial answer; on_llm_done() runs before this returns. */
    if (a->call) mlt_curl_loop_cancel(a->call);
    if (srv->stopping || a->reply_ended) {
      a->req = NULL; /* evhttp_free(), or an ended reply: libevent frees it */
      a->http_open = 0;
    } else if (mlt_evloop_defer(srv->loop, NULL, NULL, finish_detached, a, NULL) != MLT_OK) {
      struct evhttp_request *detached = a->req;
      a->req = NULL;
      a->http_open = 0;
      mlt_evhttp_send_reply_end(detached);
    }
  }
  a->busy--;
  ask_release(a);
}

/* GET /ask?id=..&q=..: runs with the request span's context attached. */
static void handle_ask(struct evhttp_request *req, void *arg) {
  server *srv = arg;
  srv->n_requests++;
  struct evkeyvalq qs;
  const char *id = NULL, *q = NULL;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
  int parsed = query && evhttp_parse_query_str(query, &qs) == 0;
  if (parsed) {
    id = evhttp_find_header(&qs, "id");
    q = evhttp_find_header(&qs, "q");
  }
  ask *a = NULL;
  if (id && q && *id && strlen(id) < sizeof a->id && query_ok(q)) a = calloc(1, sizeof *a);
  if (!a) {
    if (parsed) evhttp_clear_headers(&qs);
    srv->n_bad++;
    send_text(req, id && q ? 503 : 400, id && q ? "out of memory\n" : "want /ask?id=ID&q=TEXT\n");
    return;
  }
  snprintf(a->id, sizeof a->id, "%s", id);
  snprintf(a->q, sizeof a->q, "%s", q);
  evhttp_clear_headers(&qs);
  a->srv = srv;
  a->req = req;
  a->http_open = 1;
  a->span = mlt_evhttp_request_span(req);
  a->ctx = mlt_evhttp_request_context(req); /* NULL when not traced: fine */
  struct evkeyval *kv;
  char line[256];
  for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
    if (strncasecmp(kv->key, "X-Fake-", 7) != 0) continue;
    snprintf(line, sizeof line, "%s: %s", kv->key, kv->value);
    a->fwd = curl_slist_append(a->fwd, line);
  }
  a->next = srv->live;
  if (a->next) a->next->prev = a;
  srv->live = a;
  if (++srv->n_live > srv->max_live) srv->max_live = srv->n_live;
  mlt_evhttp_request_set_data(req, a); /* for on_request_done() */
  set_nodelay(req);
  set_read_timeout(req, 0);
  /* Fan out.  The queue captures the context attached now: the request's. */
  a->pending = N_SHARDS;
  a->busy++;
  for (int i = 0; i < N_SHARDS; i++) {
    a->jobs[i].a = a;
    a->jobs[i].shard = i;
    if (mlt_work_queue_submit(srv->pool, NULL, retrieve_job, &a->jobs[i]) != MLT_OK) {
      a->refused++;
      a->pending--;
    }
  }
  a->busy--;
  if (a->pending == 0) all_gathered(a, MLT_OK); /* every job refused */
}

/* ---- shutdown ------------------------------------------------------- */

static void on_signal(evutil_socket_t fd, short what, void *arg) {
  server *srv = arg;
  (void)fd, (void)what;
  /* Spans of requests the server closes from now on end "ServerShutdown". */
  mlt_evhttp_begin_shutdown(srv->inst);
  if (srv->listener) evhttp_del_accept_socket(srv->http, srv->listener);
  srv->listener = NULL;
  event_base_loopbreak(srv->base);
}

/* ---- set-up --------------------------------------------------------- */

static void raise_nofile(int quiet) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (!quiet) fprintf(stderr, "c10k-server: RLIMIT_NOFILE %llu\n", (unsigned long long)rl.rlim_cur);
}

static struct evhttp_bound_socket *listen_on(struct evhttp *http, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return NULL;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                           .sin_port = htons((uint16_t)port)};
  /* evhttp_bind_socket() listens with a backlog of 128: far too short for
   * thousands of clients connecting at once. */
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 65535) != 0 ||
      evutil_make_socket_nonblocking(fd) != 0) {
    close(fd);
    return NULL;
  }
  struct evhttp_bound_socket *b = evhttp_accept_socket_with_handle(http, fd);
  if (!b) close(fd);
  return b;
}

static int server_run(const server_config *cfg) {
  server srv;
  memset(&srv, 0, sizeof srv);
  srv.cfg = *cfg;
  int status = 1;
  signal(SIGPIPE, SIG_IGN);
  raise_nofile(cfg->quiet);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
  if (cfg->trace) {
    mlt_options *o = NULL;
    mlt_options_new(&o);
    if (cfg->discard) {
      mlt_exporter *e = NULL;
      mlt_exporter_discard_new(&e);
      mlt_options_add_exporter(o, e);
    }
    int rc = mlt_init(o); /* else the environment decides (default ./traces.jsonl) */
    mlt_options_free(o);
    if (rc != MLT_OK) fprintf(stderr, "c10k-server: tracing off: mlt_init: %s\n", mlt_strerror(rc));
  }
  size_t n = strlen(cfg->upstream);
  while (n && cfg->upstream[n - 1] == '/') n--;
  snprintf(srv.url, sizeof srv.url, "%.*s/v1/chat/completions", (int)n, cfg->upstream);

  evthread_use_pthreads(); /* before the base: workers wake the loop */
  srv.base = event_base_new();
  srv.http = srv.base ? evhttp_new(srv.base) : NULL;
  srv.scratch = evbuffer_new();
  srv.flush_ev = srv.base ? event_new(srv.base, -1, 0, flush_cb, &srv) : NULL;
  srv.idle_easy = calloc(MAX_IDLE_EASY, sizeof *srv.idle_easy);
  if (!srv.http || !srv.scratch || !srv.flush_ev || !srv.idle_easy) goto out;
  evhttp_set_timeout(srv.http, IDLE_TIMEOUT_S);
  evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET);
  srv.listener = listen_on(srv.http, cfg->port);
  if (!srv.listener) {
    fprintf(stderr, "c10k-server: cannot listen on 127.0.0.1:%d: %s\n", cfg->port, strerror(errno));
    goto out;
  }
  mlt_evhttp_options *ho = NULL;
  int rc = mlt_evhttp_options_new(&ho);
  if (rc == MLT_OK) rc = mlt_evhttp_options_set_done_cb(ho, on_request_done, &srv);
  if (rc == MLT_OK) rc = mlt_evhttp_instrument(srv.http, ho, &srv.inst);
  mlt_evhttp_options_free(ho);
  if (rc == MLT_OK) rc = mlt_evhttp_set_cb(srv.inst, ASK_PATH, handle_ask, &srv);
  if (rc == MLT_OK) rc = mlt_evloop_new(srv.base, &srv.loop);
  if (rc == MLT_OK) rc = mlt_work_queue_new((unsigned)cfg->workers, cfg->max_pending, &srv.pool);
  if (rc == MLT_OK) rc = mlt_curl_loop_new(srv.base, &srv.curl);
  if (rc == MLT_OK) rc = mlt_curl_options_new(&srv.curl_opts);
  /* Past this many upstream connections, calls wait for one (their LLM
   * spans are open meanwhile: the wait is part of the call). */
  if (rc == MLT_OK && cfg->max_upstream > 0)
    curl_multi_setopt(mlt_curl_loop_multi(srv.curl), CURLMOPT_MAX_TOTAL_CONNECTIONS, cfg->max_upstream);
  if (rc != MLT_OK) {
    fprintf(stderr, "c10k-server: set-up failed: %s\n", mlt_strerror(rc));
    goto out;
  }
  srv.sigterm = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
  srv.sigint = evsignal_new(srv.base, SIGINT, on_signal, &srv);
  if (!srv.sigterm || !srv.sigint || event_add(srv.sigterm, NULL) != 0 || event_add(srv.sigint, NULL) != 0) goto out;
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  getsockname(evhttp_bound_socket_get_fd(srv.listener), (struct sockaddr *)&sa, &len);
  printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  fflush(stdout);

  event_base_dispatch(srv.base);
  status = 0;

out:
  /* Teardown, in dependency order: the server (closes the connections in
   * flight: their spans end "ServerShutdown", on_request_done() cancels
   * their upstream calls), the workers (their last results queue on the
   * loop), the upstream calls left, the deferred work (cancelled: frees
   * the requests), the instrumentation; then tracing, which exports what is
   * queued within its deadline. */
  srv.stopping = 1;
  if (srv.http) evhttp_free(srv.http);
  mlt_work_queue_free(srv.pool);
  mlt_curl_loop_free(srv.curl);
  mlt_evloop_free(srv.loop);
  flush_cb(-1, 0, &srv); /* text still waiting: nobody to relay it to */
  mlt_evhttp_free(srv.inst);
  mlt_curl_options_free(srv.curl_opts);
  while (srv.n_idle) curl_easy_cleanup(srv.idle_easy[--srv.n_idle]);
  free(srv.idle_easy);
  if (srv.sigterm) event_free(srv.sigterm);
  if (srv.sigint) event_free(srv.sigint);
  if (srv.scratch) evbuffer_free(srv.scratch);
  if (srv.flush_ev) event_free(srv.flush_ev);
  free(srv.flushq);
  if (srv.base) event_base_free(srv.base);
  int flushed = cfg->trace ? mlt_shutdown(-1) : MLT_OK;
  curl_global_cleanup();
  libevent_global_shutdown();
  if (status == 0) {
    mlt_stats st;
    mlt_get_stats(&st, sizeof st);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* One line of counters, "name=value" (the C10k harness reads it). */
    printf("c10k-server: requests=%lu ok=%lu client_gone=%lu shutdown=%lu busy=%lu upstream_errors=%lu bad=%lu "
           "max_live=%lu max_streams=%lu work_queue_rejected=%llu traces_exported=%llu spans_exported=%llu traces_dropped=%llu "
           "traces_failed=%llu flush=%s maxrss_kb=%ld cpu_user_s=%.3f cpu_sys_s=%.3f queue_peak_kb=%llu\n",
           srv.n_requests, srv.n_ok, srv.n_client_gone, srv.n_shutdown, srv.n_busy, srv.n_upstream_errors, srv.n_bad,
           srv.max_live, srv.max_streams, (unsigned long long)st.work_queue_rejected, (unsigned long long)st.traces_exported,
           (unsigned long long)st.spans_exported, (unsigned long long)st.traces_dropped,
           (unsigned long long)st.traces_failed, flushed == MLT_OK ? "ok" : mlt_status_name(flushed), ru.ru_maxrss,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
           (unsigned long long)(st.queue_bytes_peak / 1024));
    fflush(stdout);
  }
  return status;
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --upstream URL [--port N] [--workers N] [--max-pending N] [--max-upstream N] [--job-us N] "
          "[--per-token] [--no-trace] [--discard] [--quiet]\n",
          argv0);
}

int main(int argc, char **argv) {
  server_config cfg = {.upstream = NULL, .port = 0, .workers = 3, .max_pending = 32768, .trace = 1};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--upstream") && i + 1 < argc)
      cfg.upstream = argv[++i];
    else if (!strcmp(argv[i], "--port") && i + 1 < argc)
      cfg.port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
      cfg.workers = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-pending") && i + 1 < argc)
      cfg.max_pending = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--max-upstream") && i + 1 < argc)
      cfg.max_upstream = atol(argv[++i]);
    else if (!strcmp(argv[i], "--job-us") && i + 1 < argc)
      cfg.job_us = atol(argv[++i]);
    else if (!strcmp(argv[i], "--per-token"))
      cfg.per_token = 1;
    else if (!strcmp(argv[i], "--no-trace"))
      cfg.trace = 0;
    else if (!strcmp(argv[i], "--discard"))
      cfg.discard = 1;
    else if (!strcmp(argv[i], "--quiet"))
      cfg.quiet = 1;
    else {
      usage(argv[0]);
      return 2;
    }
  }
  if (!cfg.upstream || strncmp(cfg.upstream, "http://", 7) != 0 || cfg.workers < 1 || cfg.workers > 256 ||
      cfg.max_pending < 1 || cfg.port < 0 || cfg.port > 65535) {
    usage(argv[0]);
    return 2;
  }
  return server_run(&cfg);
}
