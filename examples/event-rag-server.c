/* examples/event-rag-server.c: a traced evhttp RAG server: the handler fans
 * retrieval out to worker threads, gathers the results back on the loop
 * through deferred callbacks, and streams its answer as a chunked reply.
 *
 *   ./event-rag-server [--port N] [--workers N] [--no-trace] [--discard]
 *                      [--requests N]
 *   curl -N 'http://127.0.0.1:8080/rag?q=what+is+mlflow'
 *
 * Each request is one trace:
 *
 *   GET /rag                      (CHAIN, the request span: ends when the
 *   |                              last chunk has been sent)
 *   |-- retrieve.shard-0..2       (RETRIEVER, each on a worker thread)
 *   `-- generate                  (LLM, streamed: one chunk event per token)
 *
 * The pattern: the handler hands its request's context to the work queue
 * (mlt_work_queue_submit() captures it); each job runs under it, then hands
 * its result back to the loop with mlt_evloop_call(), which carries the same
 * context; the last result starts the chunked reply, and every further
 * token is sent from a deferred callback (mlt_evloop_defer()).  Nothing
 * relies on a thread's current span across a boundary.
 *
 * Traces go where the environment says (MLFLOW_TRACKING_URI, MLTRACE_FILE,
 * default traces.jsonl); --discard drops them (overhead measurements);
 * --no-trace runs without libmltrace initialized.
 */
#include <mltrace/event.h>
#include <mltrace/mltrace.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#define N_SHARDS 3
#define MAX_TOKENS 64

typedef struct rag_server_config {
  int port;           /* 0: any free port */
  int workers;        /* worker threads */
  int trace;          /* 0: libmltrace not initialized */
  int discard;        /* traces are dropped (benchmarks) */
  long max_requests;  /* stop after this many replies (0: run until SIGINT) */
  void (*on_listening)(int port, void *user_data);
  void *user_data;
} rag_server_config;

typedef struct rag_server {
  struct event_base *base;
  struct evhttp *http;
  mlt_evhttp *inst;
  mlt_evloop *loop;
  mlt_work_queue *pool;
  long max_requests, served;
  int stopping; /* evhttp_free() under way: requests are freed by libevent */
} rag_server;

static const char *const corpus[N_SHARDS][2] = {
    {"MLflow is an open source platform for the machine learning lifecycle.", "MLflow Tracing records inputs and outputs."},
    {"Traces are made of spans; each span has a type such as LLM.", "A trace id names a whole request."},
    {"libevent is an event notification library.", "evhttp is libevent's embedded HTTP server."},
};

typedef struct rag_request rag_request;

/* One retrieval job (one shard). */
typedef struct rag_job {
  rag_server *srv;
  rag_request *rr;
  int shard;
  char doc[160];
} rag_job;

/* One request in flight. */
struct rag_request {
  rag_server *srv;
  struct evhttp_request *req;
  mlt_context *ctx; /* the request span's context */
  char query[128];
  rag_job jobs[N_SHARDS];
  int pending;      /* jobs not gathered yet */
  int failed;       /* a job could not be queued */
  int cancelled;    /* the loop went away */
  int disconnected; /* the client went away */
  mlt_span gen;     /* the generate span */
  int next_token, n_tokens;
  char tokens[MAX_TOKENS][24];
};

static void rag_request_free(rag_request *rr) {
  mlt_context_release(rr->ctx);
  free(rr);
}

/* ---- worker side ---------------------------------------------------- */

static void gathered(int status, void *arg);

/* Runs on a worker thread under the request's context. */
static void retrieve_job(void *arg) {
  rag_job *job = arg;
  rag_request *rr = job->rr;
  char name[32];
  snprintf(name, sizeof name, "retrieve.shard-%d", job->shard);
  mlt_span sp = mlt_span_start(name, MLT_SPAN_RETRIEVER); /* child of the request */
  mlt_span_set_inputs_fields(sp, (mlt_attr[]){MLT_ATTR_STR("query", rr->query), MLT_ATTR_INT("shard", job->shard)}, 2);
  const char *best = corpus[job->shard][strlen(rr->query) % 2];
  snprintf(job->doc, sizeof job->doc, "%s", best);
  mlt_span_set_outputs_fields(sp, (mlt_attr[]){MLT_ATTR_STR("doc", job->doc)}, 1);
  mlt_span_end(sp);
  /* Back to the loop, under the context current here: the request's.  The
   * loop outlives the workers (see the teardown), so this cannot fail but
   * for memory; then the request is lost, as a request is when a server
   * runs out of memory. */
  (void)mlt_evloop_call(job->srv->loop, NULL, NULL, gathered, job);
}

/* ---- loop side ------------------------------------------------------ */

static void send_token(int status, void *arg);

/* End the reply (after a client disconnect this only frees the request;
 * during teardown libevent has freed it already) and the request. */
static void finish(rag_request *rr) {
  mlt_span_end(rr->gen);
  if (!rr->srv->stopping) {
    mlt_evhttp_request_set_data(rr->req, NULL); /* on_done() may come later */
    mlt_evhttp_send_reply_end(rr->req);
  }
  rag_request_free(rr);
}

static void send_token(int status, void *arg) {
  rag_request *rr = arg;
  if (status != MLT_OK || rr->disconnected || rr->next_token == rr->n_tokens) {
    /* Generation stops when the client goes: the span says so. */
    if (status != MLT_OK)
      mlt_span_record_error(rr->gen, "CancelledError", "server stopping");
    else if (rr->disconnected && rr->next_token < rr->n_tokens)
      mlt_span_record_error(rr->gen, "CancelledError", "the client went away");
    finish(rr);
    return;
  }
  const char *tok = rr->tokens[rr->next_token++];
  struct evbuffer *b = evbuffer_new();
  evbuffer_add(b, tok, strlen(tok));
  mlt_span_add_chunk_text(rr->gen, tok, strlen(tok));
  mlt_evhttp_send_reply_chunk(rr->req, b);
  evbuffer_free(b);
  /* One token per loop iteration: other requests interleave. */
  if (mlt_evloop_defer(rr->srv->loop, rr->ctx, NULL, send_token, rr, NULL) != MLT_OK) finish(rr);
}

/* A job's result arrives on the loop (the "gather" step). */
static void gathered(int status, void *arg) {
  rag_job *job = arg;
  rag_request *rr = job->rr;
  if (status != MLT_OK) rr->cancelled = 1;
  if (--rr->pending > 0) return;
  if (rr->cancelled || rr->srv->stopping) { /* teardown: the request is gone */
    rag_request_free(rr);
    return;
  }
  if (rr->disconnected) {
    finish(rr);
    return;
  }
  if (rr->failed) {
    mlt_evhttp_request_set_data(rr->req, NULL);
    mlt_evhttp_send_reply(rr->req, HTTP_SERVUNAVAIL, "Busy", NULL);
    rag_request_free(rr);
    return;
  }
  /* Every shard answered: build the answer and stream it. */
  rr->gen = mlt_span_start_in(rr->ctx, "generate", MLT_SPAN_LLM);
  mlt_span_set_inputs_fields(rr->gen, (mlt_attr[]){MLT_ATTR_STR("query", rr->query), MLT_ATTR_STR("context", rr->jobs[0].doc)},
                             2);
  char answer[512];
  snprintf(answer, sizeof answer, "%s %s %s", rr->jobs[0].doc, rr->jobs[1].doc, rr->jobs[2].doc);
  rr->n_tokens = 0;
  char *save = NULL;
  for (char *w = strtok_r(answer, " ", &save); w && rr->n_tokens < MAX_TOKENS; w = strtok_r(NULL, " ", &save))
    snprintf(rr->tokens[rr->n_tokens++], sizeof rr->tokens[0], "%s ", w);
  evhttp_add_header(evhttp_request_get_output_headers(rr->req), "Content-Type", "text/plain; charset=utf-8");
  mlt_evhttp_send_reply_start(rr->req, HTTP_OK, "OK");
  send_token(MLT_OK, rr);
}

static void handle_rag(struct evhttp_request *req, void *arg) {
  rag_server *srv = arg;
  rag_request *rr = calloc(1, sizeof *rr);
  if (!rr) {
    evhttp_send_error(req, HTTP_SERVUNAVAIL, NULL);
    return;
  }
  rr->srv = srv;
  rr->req = req;
  rr->ctx = mlt_evhttp_request_context(req); /* NULL when not traced: fine */
  mlt_evhttp_request_set_data(req, rr);      /* for on_done() */
  struct evkeyvalq q;
  const char *query = NULL;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  if (uri && evhttp_uri_get_query(uri) && evhttp_parse_query_str(evhttp_uri_get_query(uri), &q) == 0) {
    query = evhttp_find_header(&q, "q");
    snprintf(rr->query, sizeof rr->query, "%s", query ? query : "");
    evhttp_clear_headers(&q);
  }
  /* Tokens are small writes: send each at once (no Nagle delay). */
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
  int one = 1;
  if (bev) setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  rr->pending = N_SHARDS;
  for (int i = 0; i < N_SHARDS; i++) {
    rr->jobs[i].srv = srv;
    rr->jobs[i].rr = rr;
    rr->jobs[i].shard = i;
  }
  for (int i = 0; i < N_SHARDS; i++) {
    /* ctx NULL: the context attached now, the request's, is captured. */
    if (mlt_work_queue_submit(srv->pool, NULL, retrieve_job, &rr->jobs[i]) != MLT_OK) {
      rr->failed = 1; /* gathered() answers 503 once the others are back */
      gathered(MLT_OK, &rr->jobs[i]);
    }
  }
}

/* The request is over: replied, or its client went away (then the work in
 * flight stops at its next step and ends the reply). */
static void on_done(struct evhttp_request *req, int disconnected, void *request_data, void *arg) {
  rag_server *srv = arg;
  rag_request *rr = request_data;
  (void)req;
  if (disconnected && rr) rr->disconnected = 1;
  if (srv->max_requests && ++srv->served >= srv->max_requests) event_base_loopexit(srv->base, NULL);
}

static void on_sigint(evutil_socket_t fd, short what, void *arg) {
  rag_server *srv = arg;
  (void)fd;
  (void)what;
  /* Requests still in flight when the server closes them end
   * "ServerShutdown", not "ClientDisconnected". */
  mlt_evhttp_begin_shutdown(srv->inst);
  event_base_loopexit(srv->base, NULL);
}

static int rag_server_run(const rag_server_config *cfg) {
  rag_server srv;
  memset(&srv, 0, sizeof srv);
  srv.max_requests = cfg->max_requests;
  if (cfg->trace) {
    mlt_options *o = NULL;
    mlt_options_new(&o);
    if (cfg->discard) {
      mlt_exporter *e = NULL;
      mlt_exporter_discard_new(&e);
      mlt_options_add_exporter(o, e);
    }
    int rc = mlt_init(o);
    mlt_options_free(o);
    if (rc != MLT_OK) {
      fprintf(stderr, "mlt_init: %s\n", mlt_strerror(rc));
      return 1;
    }
  }
  evthread_use_pthreads(); /* before the base: workers wake the loop */
  srv.base = event_base_new();
  srv.http = srv.base ? evhttp_new(srv.base) : NULL;
  if (!srv.http) return 1;
  struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(srv.http, "127.0.0.1", (ev_uint16_t)cfg->port);
  if (!bound) {
    fprintf(stderr, "cannot bind 127.0.0.1:%d\n", cfg->port);
    return 1;
  }
  mlt_evhttp_options *ho = NULL;
  mlt_evhttp_options_new(&ho);
  mlt_evhttp_options_set_done_cb(ho, on_done, &srv);
  int rc = mlt_evhttp_instrument(srv.http, ho, &srv.inst);
  mlt_evhttp_options_free(ho);
  if (rc == MLT_OK) rc = mlt_evhttp_set_cb(srv.inst, "/rag", handle_rag, &srv);
  if (rc == MLT_OK) rc = mlt_evloop_new(srv.base, &srv.loop);
  if (rc == MLT_OK) rc = mlt_work_queue_new((unsigned)cfg->workers, 4096, &srv.pool);
  if (rc != MLT_OK) {
    fprintf(stderr, "set-up failed: %s\n", mlt_strerror(rc));
    return 1;
  }
  struct event *sig = evsignal_new(srv.base, SIGINT, on_sigint, &srv);
  event_add(sig, NULL);

  struct sockaddr_storage ss;
  ev_socklen_t len = sizeof ss;
  int port = cfg->port;
  if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &len) == 0)
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (cfg->on_listening)
    cfg->on_listening(port, cfg->user_data);
  else
    printf("listening on http://127.0.0.1:%d/rag?q=...\n", port), fflush(stdout);

  event_base_dispatch(srv.base);

  /* Teardown, in dependency order: the server (its connections and
   * requests), the workers (their last calls queue on the loop), the
   * scheduler (cancels what never ran), then the rest. */
  srv.stopping = 1;
  evhttp_free(srv.http);
  mlt_work_queue_free(srv.pool);
  mlt_evloop_free(srv.loop);
  mlt_evhttp_free(srv.inst);
  event_free(sig);
  event_base_free(srv.base);
  if (cfg->trace) mlt_shutdown(-1);
  return 0;
}

#ifndef RAG_SERVER_NO_MAIN
int main(int argc, char **argv) {
  rag_server_config cfg = {.port = 8080, .workers = 3, .trace = 1};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      cfg.port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
      cfg.workers = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--requests") && i + 1 < argc)
      cfg.max_requests = atol(argv[++i]);
    else if (!strcmp(argv[i], "--no-trace"))
      cfg.trace = 0;
    else if (!strcmp(argv[i], "--discard"))
      cfg.discard = 1;
    else {
      fprintf(stderr, "usage: %s [--port N] [--workers N] [--requests N] [--no-trace] [--discard]\n", argv[0]);
      return 2;
    }
  }
  if (cfg.workers < 1) cfg.workers = 1;
  return rag_server_run(&cfg);
}
#endif
