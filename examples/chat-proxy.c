/* examples/chat-proxy.c: a traced streaming chat proxy.  An evhttp server
 * takes OpenAI-style chat requests, streams each answer from an
 * OpenAI-compatible upstream through curl multi on the same event loop, and
 * relays every token to its client, as soon as it arrives, as one HTTP
 * chunk of plain text.
 *
 *   ./chat-proxy --upstream http://127.0.0.1:PORT [--port 0] [--host 127.0.0.1]
 *                [--quiet]
 *   curl -N http://127.0.0.1:8080/v1/chat/completions \
 *        -d '{"model":"fake-gpt","messages":[{"role":"user","content":"hi"}]}'
 *
 * --upstream is the endpoint's base URL (".../v1" and a full
 * ".../chat/completions" URL work too).  Once bound the proxy prints
 * "listening on ADDR:PORT" on stdout.  SIGTERM or SIGINT: stop accepting,
 * cancel the upstream calls still in flight (their clients get what was
 * relayed so far, or a 503), flush the traces, free everything, exit 0.
 *
 * Each request is one trace:
 *
 *   POST /v1/chat/completions   (CHAIN, the request span, from
 *   |                            libmltrace_event: outputs = the text the
 *   |                            client received, one chunk event per token;
 *   |                            ends when the reply is complete or the
 *   |                            client is gone)
 *   `-- chat.completions        (CHAT_MODEL, the upstream call, from
 *                                libmltrace_curl: inputs = the request sent
 *                                upstream, outputs = the assembled
 *                                chat.completion, token usage, model)
 *
 * and its previews are the last user message and the answer.
 *
 * The pattern: the handler hands its request span's context
 * (mlt_evhttp_request_context()) to mlt_curl_call_new() as the parent of the
 * LLM call, and the call runs on an mlt_curl_loop driven by the server's own
 * event_base.  Nothing relies on a thread's current span: each callback
 * finds its request through its user data.  The client's request is
 * forwarded with "stream": true and "stream_options": {"include_usage":
 * true} forced (model, messages and parameters kept), so the answer streams
 * and its token usage is recorded once, on the LLM span.
 *
 * Outcomes:
 *  - success: 200, chunked, text/plain; both spans OK;
 *  - the upstream fails before the first chunk (HTTP error, refused,
 *    timeout): the client gets the upstream's HTTP status (502/504 when
 *    there is none) and an OpenAI-style error JSON; both spans ERROR;
 *  - the upstream fails mid-stream: the chunked reply ends there (the client
 *    gets a truncated answer); request span ERROR "UpstreamError: ...", LLM
 *    span ERROR with the partial output;
 *  - the client goes away (also before the first token): the upstream call
 *    is cancelled at once (LLM span ERROR "CancelledError: ..."); request
 *    span ERROR "ClientDisconnected: ...".
 * Request headers named X-Fake-* (the fault controls of
 * examples/fake-openai) are forwarded upstream, and so is Authorization
 * (else OPENAI_API_KEY, when set, as a bearer token); headers are never
 * recorded in traces.  Each reply carries the trace id in X-Trace-Id.
 *
 * Traces go where the environment says (MLTRACE_FILE, MLFLOW_TRACKING_URI,
 * OTEL_EXPORTER_OTLP_ENDPOINT, ...; default ./traces.jsonl): show them with
 * `mltrace show traces.jsonl`.  See examples/chat-proxy.md.
 *
 * Not covered, for brevity: backpressure (a client that reads slower than
 * the upstream writes makes its reply buffer grow), tool-call deltas (only
 * text is relayed; the LLM span still records the calls), HTTPS options.
 */
#include <mltrace/curl.h>
#include <mltrace/event.h>
#include <mltrace/mltrace.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define CHAT_PATH "/v1/chat/completions"
#define IDLE_TIMEOUT_S 60           /* client idle / upstream stall timeout */
#define CONNECT_TIMEOUT_MS 10000L   /* upstream connect */
#define MAX_REQUEST_BYTES (8 << 20) /* client request bodies */
#define MAX_RECORDED_BYTES (1 << 20) /* request/reply bytes kept in the span */
#define DRAIN_DEADLINE_S 2          /* SIGTERM: time left to in-flight replies */

typedef struct proxy_config {
  const char *upstream; /* base URL of the OpenAI-compatible endpoint */
  const char *host;     /* address to listen on */
  int port;             /* 0: any free port */
  int quiet;            /* no access log, no summary */
} proxy_config;

typedef struct proxy_req proxy_req;

typedef struct proxy {
  proxy_config cfg;
  char *url; /* the upstream chat completions URL */
  struct event_base *base;
  struct evhttp *http;
  struct evhttp_bound_socket *listener;
  mlt_evhttp *inst;     /* request spans */
  mlt_evloop *evloop;   /* deferred work */
  mlt_curl_loop *curl;  /* upstream calls, on the same base */
  mlt_curl_options *curl_opts;
  struct evbuffer *scratch; /* one relayed token (drained by each send) */
  struct event *sigterm, *sigint, *deadline;
  proxy_req *live; /* requests in flight */
  int draining;    /* SIGTERM seen: refuse new requests, stop when idle */
  int stopping;    /* loop over: evhttp_free() frees the requests */
  unsigned long n_requests, n_ok, n_upstream_errors, n_disconnects, n_rejected;
} proxy;

/* One proxied request.  Two sides keep it alive: the HTTP side (|http_open|:
 * until libevent is done with the request, or, after a client disconnect,
 * until we have freed the detached request) and the upstream side (|call|:
 * until its done callback).  |busy| guards the callbacks that may end
 * either side while they run. */
struct proxy_req {
  proxy *px;
  proxy_req *prev, *next;
  struct evhttp_request *req; /* NULL once libevent owns or freed it */
  mlt_span span;              /* the request span */
  mlt_context *ctx;           /* its context: the LLM call's parent */
  CURL *easy;
  mlt_curl_call *call; /* NULL once its done callback ran */
  char *last_user;     /* the request preview */
  struct timespec t0;
  int code; /* HTTP status sent to the client */
  int busy;
  unsigned http_open : 1, reply_started : 1, reply_ended : 1, client_gone : 1, cancel_sent : 1;
};

/* ---- small helpers -------------------------------------------------- */

static double ms_since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static struct bufferevent *req_bev(struct evhttp_request *req) {
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  return evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
}

/* While a request is in flight its client sends nothing: no read timeout
 * then (a slow answer is not an idle connection); restore it afterwards for
 * keep-alive idling. */
static void set_timeouts(struct evhttp_request *req, int read_timeout) {
  struct bufferevent *bev = req_bev(req);
  struct timeval tv = {IDLE_TIMEOUT_S, 0};
  if (bev) bufferevent_set_timeouts(bev, read_timeout ? &tv : NULL, &tv);
}

/* evhttp stops reading while a handler works on a request, so a client that
 * hangs up before the first token would go unnoticed until we write.  Read
 * again, with no read callback (what evhttp itself does while it writes a
 * reply): EOF reaches evhttp's error callback, which ends the request span
 * and calls our done callback at once, and we cancel the upstream call. */
static void watch_for_close(struct evhttp_request *req) {
  struct bufferevent *bev = req_bev(req);
  bufferevent_data_cb rcb, wcb;
  bufferevent_event_cb ecb;
  void *arg;
  if (!bev) return;
  bufferevent_getcb(bev, &rcb, &wcb, &ecb, &arg);
  bufferevent_setcb(bev, NULL, wcb, ecb, arg);
  bufferevent_enable(bev, EV_READ);
}

/* Tokens are small writes: send each at once (no Nagle delay). */
static void set_nodelay(struct evhttp_request *req) {
  struct bufferevent *bev = req_bev(req);
  int one = 1;
  if (bev) setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Reply with an OpenAI-style error JSON (recorded as the span outputs). */
static void send_error(struct evhttp_request *req, int code, const char *type, const char *message) {
  cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
  cJSON_AddStringToObject(err, "message", message);
  cJSON_AddStringToObject(err, "type", type);
  cJSON_AddNullToObject(err, "param");
  cJSON_AddNullToObject(err, "code");
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  struct evbuffer *b = evbuffer_new();
  if (b && text) evbuffer_add(b, text, strlen(text));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  mlt_evhttp_send_reply(req, code, NULL, b); /* may complete at once */
  if (b) evbuffer_free(b);
  cJSON_free(text);
}

/* The text of a message's "content": a string, or the concatenated "text"
 * of an array of parts (other parts are skipped). */
static char *content_text(const cJSON *content) {
  if (cJSON_IsString(content)) return strdup(content->valuestring);
  if (!cJSON_IsArray(content)) return strdup("");
  size_t len = 0;
  const cJSON *part;
  cJSON_ArrayForEach(part, content) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
    if (cJSON_IsString(t)) len += strlen(t->valuestring);
  }
  char *s = malloc(len + 1);
  if (!s) return NULL;
  s[0] = '\0';
  cJSON_ArrayForEach(part, content) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
    if (cJSON_IsString(t)) strcat(s, t->valuestring);
  }
  return s;
}

/* The last message with role "user" ("" when there is none). */
static char *last_user_message(const cJSON *messages) {
  const cJSON *m, *last = NULL;
  cJSON_ArrayForEach(m, messages) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0) last = m;
  }
  return last ? content_text(cJSON_GetObjectItemCaseSensitive(last, "content")) : strdup("");
}

/* The client's request as sent upstream: "stream": true and
 * "stream_options": {"include_usage": true} forced, everything else kept. */
static char *upstream_body(cJSON *req) {
  cJSON *t = cJSON_CreateTrue();
  if (cJSON_HasObjectItem(req, "stream"))
    cJSON_ReplaceItemInObjectCaseSensitive(req, "stream", t);
  else
    cJSON_AddItemToObject(req, "stream", t);
  cJSON *so = cJSON_GetObjectItemCaseSensitive(req, "stream_options");
  if (!cJSON_IsObject(so)) {
    cJSON_DeleteItemFromObjectCaseSensitive(req, "stream_options");
    so = cJSON_AddObjectToObject(req, "stream_options");
  }
  cJSON_DeleteItemFromObjectCaseSensitive(so, "include_usage");
  cJSON_AddTrueToObject(so, "include_usage");
  return cJSON_PrintUnformatted(req);
}

/* Headers for the upstream: Accept, the client's Authorization (else
 * OPENAI_API_KEY) and its X-Fake-* fault controls.  libmltrace_curl adds
 * traceparent and Content-Type, and never records headers. */
static struct curl_slist *upstream_headers(struct evhttp_request *req) {
  struct curl_slist *h = curl_slist_append(NULL, "Accept: text/event-stream");
  h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
  const char *key = getenv("OPENAI_API_KEY");
  int have_auth = 0;
  char line[8192];
  struct evkeyval *kv;
  for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
    int auth = strcasecmp(kv->key, "Authorization") == 0;
    if (!auth && strncasecmp(kv->key, "X-Fake-", 7) != 0) continue;
    have_auth |= auth;
    snprintf(line, sizeof line, "%s: %s", kv->key, kv->value);
    h = curl_slist_append(h, line);
  }
  if (!have_auth && key && *key) {
    snprintf(line, sizeof line, "Authorization: Bearer %s", key);
    h = curl_slist_append(h, line);
  }
  return h;
}

/* ---- request life cycle --------------------------------------------- */

/* Free |p| once neither side needs it. */
static void preq_release(proxy_req *p) {
  if (p->busy || p->call || p->http_open) return;
  proxy *px = p->px;
  if (p->prev)
    p->prev->next = p->next;
  else
    px->live = p->next;
  if (p->next) p->next->prev = p->prev;
  mlt_context_release(p->ctx);
  free(p->last_user);
  free(p);
  if (px->draining && !px->live) event_base_loopbreak(px->base);
}

/* The answer so far becomes the trace's response preview (the request
 * preview was set by the handler).  The trace is still in progress here:
 * one of its spans is open. */
static void set_response_preview(proxy_req *p, const char *answer) {
  mlt_update_trace(p->span, MLT_TRACE_UPDATE(.response_preview = answer));
}

static void start_reply(proxy_req *p) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(p->req);
  evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
  evhttp_add_header(h, "Cache-Control", "no-cache");
  mlt_evhttp_send_reply_start(p->req, HTTP_OK, "OK");
  p->reply_started = 1;
  p->code = HTTP_OK;
}

/* End the chunked reply: the request span ends when libevent reports it
 * sent (possibly inside this call, which may then release |p|). */
static void end_reply(proxy_req *p) {
  struct evhttp_request *req = p->req;
  p->reply_ended = 1;
  set_timeouts(req, 1);
  mlt_evhttp_send_reply_end(req);
}

/* Delta callback (inside curl's write path): relay the token. */
static int on_delta(mlt_curl_call *call, const char *chunk_json, size_t chunk_len, const char *delta,
                    size_t delta_len, void *user_data) {
  proxy_req *p = user_data;
  (void)call, (void)chunk_json, (void)chunk_len;
  if (p->client_gone || !p->req) return 1; /* nobody to relay to: abort the transfer */
  /* The first chunk means the upstream answered 200 with a stream. */
  if (!p->reply_started) start_reply(p);
  if (delta_len) {
    evbuffer_add(p->px->scratch, delta, delta_len);
    mlt_evhttp_send_reply_chunk(p->req, p->px->scratch); /* one chunk, one chunk event */
  }
  return 0;
}

/* HTTP status for an upstream failure before the first chunk. */
static int failure_status(mlt_curl_call *call, int status) {
  long http = mlt_curl_call_http_status(call);
  if (status == MLT_EHTTP && http >= 400 && http <= 599) return (int)http;
  if (status == MLT_ETIMEDOUT) return 504;
  if (status == MLT_CURL_CANCELLED) return 503; /* shutting down */
  return 502;
}

/* The upstream call is over (its span has ended); answer the client. */
static void on_upstream_done(mlt_curl_call *call, int status, void *user_data) {
  proxy_req *p = user_data;
  proxy *px = p->px;
  p->busy++;
  p->call = NULL;
  const char *answer = mlt_curl_call_content(call, NULL);
  const char *error = mlt_curl_call_error(call);
  const char *error_type = "UpstreamError";
  if (!error) error = mlt_strerror(status);
  if (status == MLT_CURL_CANCELLED && px->draining) {
    error_type = "ServerShutdown"; /* on_signal() cancelled the call */
    error = "the proxy is shutting down";
  }
  if (status != MLT_OK && !p->client_gone) px->n_upstream_errors++;

  if (p->client_gone || !p->req) {
    /* The client went away (its span ended with ERROR) or the server is
     * closing: nobody to answer. */
  } else if (p->reply_started || status == MLT_OK) {
    /* Streamed (or an empty answer): end the chunked reply.  After a
     * mid-stream failure the client has a truncated answer. */
    if (!p->reply_started) start_reply(p);
    if (status != MLT_OK) mlt_span_record_error(p->span, error_type, error);
    set_response_preview(p, answer);
    end_reply(p);
  } else {
    /* Failed before the first chunk: pass the status on, with the
     * upstream's error JSON when it sent one. */
    mlt_span_record_error(p->span, error_type, error);
    p->code = failure_status(call, status);
    size_t len = 0;
    const char *body = status == MLT_EHTTP ? mlt_curl_call_result_json(call, &len) : NULL;
    cJSON *j = body ? cJSON_ParseWithLength(body, len) : NULL;
    struct evhttp_request *req = p->req;
    p->reply_ended = 1;
    set_timeouts(req, 1);
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "error"))) {
      struct evbuffer *b = evbuffer_new();
      if (b) evbuffer_add(b, body, len);
      evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
      mlt_evhttp_send_reply(req, p->code, NULL, b);
      if (b) evbuffer_free(b);
    } else {
      send_error(req, p->code, "upstream_error", error);
    }
    cJSON_Delete(j);
  }
  mlt_curl_call_free(call); /* freed when this callback returns */
  curl_easy_cleanup(p->easy);
  p->easy = NULL;
  p->busy--;
  preq_release(p);
}

/* After a client disconnect libevent leaves the detached request to us:
 * ending the reply frees it.  Runs on the next loop iteration (or with
 * MLT_EVENT_CANCELLED when the proxy stops first: same work). */
static void finish_detached(int status, void *user_data) {
  proxy_req *p = user_data;
  struct evhttp_request *req = p->req;
  (void)status;
  p->req = NULL;
  p->http_open = 0;
  if (req) mlt_evhttp_send_reply_end(req);
  preq_release(p);
}

/* The request is over: replied (its span ended OK, or ERROR for a 5xx), or
 * its client went away (span ERROR "ClientDisconnected").  Do not reply
 * from here. */
static void on_request_done(struct evhttp_request *req, int disconnected, void *request_data, void *user_data) {
  proxy *px = user_data;
  proxy_req *p = request_data;
  (void)req;
  if (!p) return; /* a reply the handler sent itself (400, 405, 503) */
  p->busy++;
  if (!px->cfg.quiet) {
    char tid[MLT_TRACE_ID_SIZE] = "-";
    if (p->ctx) mlt_context_get_trace_id(p->ctx, tid, sizeof tid);
    fprintf(stderr, "chat-proxy: POST " CHAT_PATH " %d%s %.1f ms %s\n", p->code ? p->code : 499,
            disconnected ? " (client gone)" : "", ms_since(&p->t0), tid);
  }
  if (!disconnected) {
    px->n_ok += p->code == HTTP_OK;
    p->req = NULL;
    p->http_open = 0;
  } else {
    px->n_disconnects += !px->stopping;
    p->client_gone = 1;
    if (p->call) {
      /* Stop the upstream now: the LLM span ends with ERROR
       * "CancelledError", keeping the partial answer, and its done callback
       * runs before this returns (and leaves the request alone). */
      set_response_preview(p, mlt_curl_call_content(p->call, NULL));
      mlt_curl_loop_cancel(p->call);
    }
    if (px->stopping || p->reply_ended) {
      /* evhttp_free(), or a reply already ended: libevent frees it. */
      p->req = NULL;
      p->http_open = 0;
    } else if (mlt_evloop_defer(px->evloop, NULL, NULL, finish_detached, p, NULL) != MLT_OK) {
      struct evhttp_request *detached = p->req;
      p->req = NULL;
      p->http_open = 0;
      mlt_evhttp_send_reply_end(detached); /* out of memory: free it now */
    }
  }
  p->busy--;
  preq_release(p);
}

/* POST /v1/chat/completions: validate, start the upstream call, return.
 * Runs with the request span's context attached. */
static void handle_chat(struct evhttp_request *req, void *arg) {
  proxy *px = arg;
  px->n_requests++;
  if (px->draining) {
    px->n_rejected++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    send_error(req, 503, "server_error", "the proxy is shutting down");
    return;
  }
  if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
    px->n_rejected++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
    send_error(req, 405, "invalid_request_error", "use POST");
    return;
  }
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t in_len = evbuffer_get_length(in);
  const char *in_data = (const char *)evbuffer_pullup(in, -1);
  cJSON *body = in_data ? cJSON_ParseWithLength(in_data, in_len) : NULL;
  cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
  if (!cJSON_IsObject(body) || !cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
    px->n_rejected++;
    cJSON_Delete(body);
    send_error(req, 400, "invalid_request_error", "expected a JSON object with a non-empty \"messages\" array");
    return;
  }

  proxy_req *p = calloc(1, sizeof *p);
  char *up_body = NULL;
  if (p) {
    p->last_user = last_user_message(messages);
    up_body = upstream_body(body);
  }
  cJSON_Delete(body);
  if (!p || !p->last_user || !up_body) {
    if (p) free(p->last_user);
    free(p);
    cJSON_free(up_body);
    send_error(req, 500, "server_error", "out of memory");
    return;
  }
  p->px = px;
  clock_gettime(CLOCK_MONOTONIC, &p->t0);
  p->span = mlt_evhttp_request_span(req);
  p->ctx = mlt_evhttp_request_context(req); /* NULL when not traced: fine */
  mlt_update_trace(p->span, MLT_TRACE_UPDATE(.request_preview = p->last_user));

  /* The upstream call: a CHAT_MODEL span under the request span. */
  int rc = MLT_ENOMEM;
  p->easy = curl_easy_init();
  if (p->easy) {
    curl_easy_setopt(p->easy, CURLOPT_URL, px->url);
    curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->easy, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(p->easy, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled stream times out */
    curl_easy_setopt(p->easy, CURLOPT_LOW_SPEED_TIME, (long)IDLE_TIMEOUT_S);
    struct curl_slist *headers = upstream_headers(req);
    rc = mlt_curl_call_new(p->easy, p->ctx, px->curl_opts, up_body, MLT_NTS, headers, &p->call);
    curl_slist_free_all(headers); /* copied by the call */
  }
  cJSON_free(up_body);
  if (rc == MLT_OK) {
    mlt_curl_call_set_delta_fn(p->call, on_delta, p);
    rc = mlt_curl_loop_add(px->curl, p->call, on_upstream_done, p); /* done runs later, once */
  }
  if (rc != MLT_OK) {
    mlt_curl_call_free(p->call); /* never started: its span ends as cancelled */
    if (p->easy) curl_easy_cleanup(p->easy);
    mlt_span_record_error(p->span, "InternalError", mlt_strerror(rc));
    mlt_context_release(p->ctx);
    free(p->last_user);
    free(p);
    send_error(req, 500, "server_error", "cannot start the upstream call");
    return;
  }

  p->req = req;
  p->http_open = 1;
  p->next = px->live;
  if (p->next) p->next->prev = p;
  px->live = p;
  mlt_evhttp_request_set_data(req, p); /* for on_request_done() */
  char tid[MLT_TRACE_ID_SIZE];
  if (p->ctx && mlt_context_get_trace_id(p->ctx, tid, sizeof tid) == MLT_OK)
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Trace-Id", tid);
  set_nodelay(req);
  set_timeouts(req, 0);
  watch_for_close(req);
}

/* ---- shutdown ------------------------------------------------------- */

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
  proxy *px = arg;
  (void)fd, (void)what;
  event_base_loopbreak(px->base);
}

/* First SIGTERM/SIGINT: stop accepting and cancel every upstream call (each
 * client gets its reply ended: what was relayed so far, or a 503); the loop
 * stops once every reply is out, or after DRAIN_DEADLINE_S.  A second
 * signal stops it at once. */
static void on_signal(evutil_socket_t fd, short what, void *arg) {
  proxy *px = arg;
  (void)fd, (void)what;
  if (px->draining) {
    event_base_loopbreak(px->base);
    return;
  }
  px->draining = 1;
  if (px->listener) evhttp_del_accept_socket(px->http, px->listener);
  px->listener = NULL;
  for (;;) {
    proxy_req *p = px->live;
    while (p && (!p->call || p->cancel_sent)) p = p->next;
    if (!p) break;
    p->cancel_sent = 1;
    mlt_curl_loop_cancel(p->call); /* on_upstream_done() runs now */
  }
  if (!px->live) {
    event_base_loopbreak(px->base);
    return;
  }
  struct timeval tv = {DRAIN_DEADLINE_S, 0};
  px->deadline = evtimer_new(px->base, on_deadline, px);
  if (!px->deadline || evtimer_add(px->deadline, &tv) != 0) event_base_loopbreak(px->base);
}

/* ---- set-up --------------------------------------------------------- */

/* The chat completions URL of an upstream base URL. */
static char *chat_url(const char *upstream) {
  size_t n = strlen(upstream);
  while (n && upstream[n - 1] == '/') n--;
  const char *suffix = "/v1/chat/completions";
  if (n >= 17 && strncmp(upstream + n - 17, "/chat/completions", 17) == 0)
    suffix = "";
  else if (n >= 3 && strncmp(upstream + n - 3, "/v1", 3) == 0)
    suffix = "/chat/completions";
  char *url = malloc(n + strlen(suffix) + 1);
  if (url) {
    memcpy(url, upstream, n);
    strcpy(url + n, suffix);
  }
  return url;
}

static int print_listening(proxy *px) {
  struct sockaddr_storage ss;
  ev_socklen_t len = sizeof ss;
  char addr[INET6_ADDRSTRLEN + 2], tmp[INET6_ADDRSTRLEN];
  if (getsockname(evhttp_bound_socket_get_fd(px->listener), (struct sockaddr *)&ss, &len) != 0) return -1;
  int port;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, tmp, sizeof tmp);
    snprintf(addr, sizeof addr, "[%s]", tmp);
    port = ntohs(s6->sin6_port);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof addr);
    port = ntohs(s4->sin_port);
  }
  printf("listening on %s:%d\n", addr, port);
  fflush(stdout);
  return 0;
}

static int proxy_run(const proxy_config *cfg) {
  proxy px;
  memset(&px, 0, sizeof px);
  px.cfg = *cfg;
  int status = 1;
  signal(SIGPIPE, SIG_IGN);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
  int rc = mlt_init(NULL); /* the environment decides; tracing failures never stop the proxy */
  if (rc != MLT_OK) fprintf(stderr, "chat-proxy: tracing off: mlt_init: %s\n", mlt_strerror(rc));

  px.url = chat_url(cfg->upstream);
  px.base = event_base_new();
  px.http = px.base ? evhttp_new(px.base) : NULL;
  px.scratch = evbuffer_new();
  if (!px.url || !px.http || !px.scratch) goto out;
  evhttp_set_timeout(px.http, IDLE_TIMEOUT_S);
  evhttp_set_max_body_size(px.http, MAX_REQUEST_BYTES);
  px.listener = evhttp_bind_socket_with_handle(px.http, cfg->host, (ev_uint16_t)cfg->port);
  if (!px.listener) {
    fprintf(stderr, "chat-proxy: cannot listen on %s:%d\n", cfg->host, cfg->port);
    goto out;
  }

  mlt_evhttp_options *ho = NULL;
  rc = mlt_evhttp_options_new(&ho);
  if (rc == MLT_OK) rc = mlt_evhttp_options_set_span_type(ho, MLT_SPAN_CHAIN);
  if (rc == MLT_OK) rc = mlt_evhttp_options_set_max_body_bytes(ho, MAX_RECORDED_BYTES);
  if (rc == MLT_OK) rc = mlt_evhttp_options_set_done_cb(ho, on_request_done, &px);
  if (rc == MLT_OK) rc = mlt_evhttp_instrument(px.http, ho, &px.inst);
  mlt_evhttp_options_free(ho);
  if (rc == MLT_OK) rc = mlt_evhttp_set_cb(px.inst, CHAT_PATH, handle_chat, &px);
  if (rc == MLT_OK) rc = mlt_evloop_new(px.base, &px.evloop);
  if (rc == MLT_OK) rc = mlt_curl_loop_new(px.base, &px.curl);
  if (rc == MLT_OK) rc = mlt_curl_options_new(&px.curl_opts);
  if (rc != MLT_OK) {
    fprintf(stderr, "chat-proxy: set-up failed: %s\n", mlt_strerror(rc));
    goto out;
  }
  px.sigterm = evsignal_new(px.base, SIGTERM, on_signal, &px);
  px.sigint = evsignal_new(px.base, SIGINT, on_signal, &px);
  if (!px.sigterm || !px.sigint || event_add(px.sigterm, NULL) != 0 || event_add(px.sigint, NULL) != 0) goto out;
  if (print_listening(&px) != 0) goto out;

  event_base_dispatch(px.base);
  status = 0;

out:
  /* Teardown, in dependency order: the server (closes the connections
   * left: their spans end with ERROR, on_request_done() cancels their
   * upstream calls), the upstream calls still in flight, the deferred work
   * (frees detached requests), the instrumentation; then tracing, which
   * exports what is queued within its deadline. */
  px.stopping = 1;
  if (px.http) evhttp_free(px.http);
  mlt_curl_loop_free(px.curl);
  mlt_evloop_free(px.evloop);
  mlt_evhttp_free(px.inst);
  mlt_curl_options_free(px.curl_opts);
  if (px.sigterm) event_free(px.sigterm);
  if (px.sigint) event_free(px.sigint);
  if (px.deadline) event_free(px.deadline);
  if (px.scratch) evbuffer_free(px.scratch);
  if (px.base) event_base_free(px.base);
  free(px.url);
  mlt_shutdown(-1);
  curl_global_cleanup();
  libevent_global_shutdown();
  if (!cfg->quiet && status == 0)
    fprintf(stderr, "chat-proxy: %lu requests: %lu ok, %lu upstream errors, %lu client disconnects, %lu rejected\n",
            px.n_requests, px.n_ok, px.n_upstream_errors, px.n_disconnects, px.n_rejected);
  return status;
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s --upstream URL [--port N] [--host ADDR] [--quiet]\n", argv0);
}

int main(int argc, char **argv) {
  proxy_config cfg = {.upstream = NULL, .host = "127.0.0.1", .port = 0, .quiet = 0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--upstream") && i + 1 < argc) {
      cfg.upstream = argv[++i];
    } else if (!strcmp(argv[i], "--host") && i + 1 < argc) {
      cfg.host = argv[++i];
    } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      char *end;
      long port = strtol(argv[++i], &end, 10);
      if (*end || port < 0 || port > 65535) {
        usage(argv[0]);
        return 2;
      }
      cfg.port = (int)port;
    } else if (!strcmp(argv[i], "--quiet")) {
      cfg.quiet = 1;
    } else {
      usage(argv[0]);
      return 2;
    }
  }
  if (!cfg.upstream || strncmp(cfg.upstream, "http", 4) != 0) {
    usage(argv[0]);
    return 2;
  }
  return proxy_run(&cfg);
}
