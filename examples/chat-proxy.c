/* examples/chat-proxy.c: a traced LLM gateway that OpenAI clients use as
 * their base_url.  An evhttp server speaks OpenAI's API downstream
 * (POST /v1/chat/completions, POST /v1/responses, GET /v1/models), streams
 * each answer from an OpenAI-compatible upstream through curl multi on the
 * same event loop, and relays every event to its client as it arrives.
 *
 *   ./chat-proxy --upstream http://127.0.0.1:PORT [--port 0] [--host 127.0.0.1]
 *                [--quiet]
 *   client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=...)
 *
 * --upstream is the endpoint's base URL ("http://host:port", ".../v1", or
 * a full ".../v1/chat/completions" URL).  Once bound the proxy prints
 * "listening on ADDR:PORT" on stdout.  SIGTERM or SIGINT: stop accepting,
 * cancel the upstream calls still in flight (their clients get an error
 * event, or a 503), flush the traces, free everything, print a summary
 * (requests and the tracing counters), exit 0.
 *
 * Downstream is OpenAI's protocol in both modes:
 *  - "stream": true: text/event-stream; every upstream event is re-framed
 *    and relayed as it arrives ("data: <chunk as received>", the "event:"
 *    line of Responses events), all choices and tool-call deltas as they
 *    came, the usage chunk only when the client asked for it
 *    (stream_options.include_usage), then "data: [DONE]" (Chat Completions;
 *    a Responses stream ends with response.completed);
 *  - otherwise one JSON object: the chat.completion (or the Response)
 *    assembled from the upstream stream.
 * Upstream HTTP errors come back with the upstream's status and error
 * JSON.  A failure after the first event is an SSE "error" event
 * ({"error": {...}}) with no [DONE], so clients raise instead of taking a
 * truncated answer for a complete one.  GET /v1/models is passed through.
 * Authorization (else OPENAI_API_KEY, when set), OpenAI-Organization,
 * OpenAI-Project and the X-Fake-* fault controls of examples/fake-openai
 * are forwarded upstream; headers are never recorded in traces.
 *
 * Each request is one trace:
 *
 *   POST /v1/chat/completions   (CHAIN, the request span, from
 *   |                            libmltrace_event: outputs = what the client
 *   |                            received: the assembled text of a stream
 *   |                            (its chat.completion / Response JSON when
 *   |                            it has several choices or tool calls), the
 *   |                            JSON of a non-streamed reply; one chunk
 *   |                            event per relayed event)
 *   `-- chat.completions        (CHAT_MODEL, the upstream call, from
 *       (or "responses")         libmltrace_curl: inputs = the request sent
 *                                upstream, outputs = the assembled
 *                                chat.completion (one choice per index) or
 *                                the final Response, token usage, model)
 *
 * and its previews are the last user message and the answer.
 *
 * The pattern: the handler hands its request span's context
 * (mlt_evhttp_request_context()) to mlt_curl_call_new() as the parent of the
 * LLM call, and the call runs on an mlt_curl_loop driven by the server's own
 * event_base; its chunk callback (mlt_curl_call_set_chunk_fn()) relays each
 * event.  Nothing relies on a thread's current span: each callback finds
 * its request through its user data.  The client's request is forwarded
 * with "stream": true (and, for chat, "stream_options": {"include_usage":
 * true}) forced, so the answer streams and its token usage is recorded
 * once, on the LLM span.
 *
 * Outcomes: see examples/chat-proxy.md.  Not covered, for brevity:
 * backpressure (a client that reads slower than the upstream writes makes
 * its reply buffer grow), HTTPS options, other endpoints.
 */
#include <mltrace/curl.h>
#include <mltrace/event.h>
#include <mltrace/mltrace.h>
#include <mltrace/sse.h>

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
#define RESPONSES_PATH "/v1/responses"
#define MODELS_PATH "/v1/models"
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
  char *base_url; /* the upstream's ".../v1" */
  struct event_base *base;
  struct evhttp *http;
  struct evhttp_bound_socket *listener;
  mlt_evhttp *inst;     /* request spans */
  mlt_evloop *evloop;   /* deferred work */
  mlt_curl_loop *curl;  /* upstream calls, on the same base */
  mlt_curl_options *curl_opts;   /* LLM calls */
  mlt_curl_options *models_opts; /* GET /v1/models */
  struct evbuffer *scratch; /* one relayed event (drained by each send) */
  struct event *sigterm, *sigint, *deadline;
  proxy_req *live; /* requests in flight */
  int draining;    /* SIGTERM seen: refuse new requests, stop when idle */
  int stopping;    /* loop over: evhttp_free() frees the requests */
  unsigned long n_requests, n_ok, n_upstream_errors, n_disconnects, n_rejected;
} proxy;

/* Which upstream endpoint a request goes to. */
typedef enum proxy_api { API_CHAT, API_RESPONSES, API_MODELS } proxy_api;

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
  proxy_api api;
  int code;         /* HTTP status sent to the client */
  int busy;
  unsigned long relayed; /* events relayed to a streaming client */
  unsigned http_open : 1, reply_started : 1, reply_ended : 1, client_gone : 1, cancel_sent : 1;
  unsigned client_stream : 1; /* the client asked for "stream": true */
  unsigned client_usage : 1;  /* ... and for stream_options.include_usage */
};

/* ---- small helpers -------------------------------------------------- */

static double ms_since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static const char *api_path(proxy_api api) {
  return api == API_CHAT ? CHAT_PATH : api == API_RESPONSES ? RESPONSES_PATH : MODELS_PATH;
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

/* An OpenAI-style error object {"error":{"message","type","param","code"}}
 * as JSON text (cJSON_free() it). */
static char *error_json(const char *type, const char *message) {
  cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
  cJSON_AddStringToObject(err, "message", message);
  cJSON_AddStringToObject(err, "type", type);
  cJSON_AddNullToObject(err, "param");
  cJSON_AddNullToObject(err, "code");
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return text;
}

/* Reply with a JSON body (recorded as the span outputs). */
static void send_json(struct evhttp_request *req, int code, const char *json, size_t len) {
  struct evbuffer *b = evbuffer_new();
  if (b && json) evbuffer_add(b, json, len);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  mlt_evhttp_send_reply(req, code, NULL, b); /* may complete at once */
  if (b) evbuffer_free(b);
}

/* Reply with an OpenAI-style error JSON. */
static void send_error(struct evhttp_request *req, int code, const char *type, const char *message) {
  char *text = error_json(type, message);
  send_json(req, code, text, text ? strlen(text) : 0);
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

/* The last message (or Responses input item) with role "user" ("" when
 * there is none); a Responses "input" string is itself the message. */
static char *last_user_message(const cJSON *messages) {
  if (cJSON_IsString(messages)) return strdup(messages->valuestring);
  const cJSON *m, *last = NULL;
  cJSON_ArrayForEach(m, messages) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0) last = m;
  }
  return last ? content_text(cJSON_GetObjectItemCaseSensitive(last, "content")) : strdup("");
}

/* Set member @p key of @p obj to @p item (replacing it). */
static void set_member(cJSON *obj, const char *key, cJSON *item) {
  if (cJSON_HasObjectItem(obj, key))
    cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
  else
    cJSON_AddItemToObject(obj, key, item);
}

/* The client's request as sent upstream: "stream": true forced, and for
 * chat "stream_options": {"include_usage": true}; everything else kept. */
static char *upstream_body(cJSON *req, proxy_api api) {
  set_member(req, "stream", cJSON_CreateTrue());
  if (api == API_CHAT) {
    cJSON *so = cJSON_GetObjectItemCaseSensitive(req, "stream_options");
    if (!cJSON_IsObject(so)) {
      cJSON_DeleteItemFromObjectCaseSensitive(req, "stream_options");
      so = cJSON_AddObjectToObject(req, "stream_options");
    }
    set_member(so, "include_usage", cJSON_CreateTrue());
  }
  return cJSON_PrintUnformatted(req);
}

/* Headers for the upstream: Accept, the client's Authorization (else
 * OPENAI_API_KEY), OpenAI-Organization / OpenAI-Project and its X-Fake-*
 * fault controls.  libmltrace_curl adds traceparent and Content-Type, and
 * never records headers. */
static struct curl_slist *upstream_headers(struct evhttp_request *req, int sse) {
  struct curl_slist *h = curl_slist_append(NULL, sse ? "Accept: text/event-stream" : "Accept: application/json");
  h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
  const char *key = getenv("OPENAI_API_KEY");
  int have_auth = 0;
  char line[8192];
  struct evkeyval *kv;
  for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
    int auth = strcasecmp(kv->key, "Authorization") == 0;
    if (!auth && strncasecmp(kv->key, "X-Fake-", 7) != 0 && strcasecmp(kv->key, "OpenAI-Organization") != 0 &&
        strcasecmp(kv->key, "OpenAI-Project") != 0)
      continue;
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

/* ---- the request span's output -------------------------------------- */

/* Output reducer of a streamed reply's request span: its chunks are the
 * SSE text sent to the client; parse it back as a client would and return
 * what the client assembled: the text, as a JSON string, when the reply is
 * one choice of plain text (Responses: message output only), else the
 * assembled chat.completion / Response.  A pure function of the chunks (no
 * user data): it runs when the span ends, whoever ends it. */
static char *assemble_sse_reply(const char *const *chunks, const size_t *lens, size_t n, size_t *out_len,
                                void *user_data) {
  (void)user_data;
  mlt_chat_stream *s = NULL;
  char *out = NULL;
  if (mlt_chat_stream_new(&s) != MLT_OK) return NULL;
  for (size_t i = 0; i < n; i++) {
    cJSON *text = cJSON_ParseWithLength(chunks[i], lens[i]); /* a JSON string */
    if (cJSON_IsString(text)) mlt_chat_stream_feed(s, text->valuestring, strlen(text->valuestring));
    cJSON_Delete(text);
  }
  mlt_chat_stream_finish(s);
  size_t len = 0;
  char *result = mlt_chat_stream_result_json(s, &len);
  cJSON *r = result ? cJSON_ParseWithLength(result, len) : NULL;
  const cJSON *choices = cJSON_GetObjectItemCaseSensitive(r, "choices"), *output = cJSON_GetObjectItemCaseSensitive(r, "output");
  int plain = 1;
  const cJSON *c;
  if (cJSON_IsArray(choices)) {
    plain = cJSON_GetArraySize(choices) <= 1;
    cJSON_ArrayForEach(c, choices) {
      const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c, "message");
      if (cJSON_HasObjectItem(msg, "tool_calls") || cJSON_HasObjectItem(msg, "refusal")) plain = 0;
    }
  } else {
    cJSON_ArrayForEach(c, output) {
      const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
      if (!cJSON_IsString(type) || strcmp(type->valuestring, "message") != 0) plain = 0;
    }
  }
  if (plain) {
    size_t tlen = 0;
    const char *t = mlt_chat_stream_content(s, &tlen);
    cJSON *js = cJSON_CreateString(t);
    char *txt = js ? cJSON_PrintUnformatted(js) : NULL;
    cJSON_Delete(js);
    if (txt) {
      *out_len = strlen(txt);
      out = malloc(*out_len + 1);
      if (out) memcpy(out, txt, *out_len + 1);
      cJSON_free(txt);
    }
    free(result);
  } else {
    out = result;
    *out_len = len;
  }
  cJSON_Delete(r);
  mlt_chat_stream_free(s);
  return out;
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
 * preview was set by the handler): the text, else (tool calls) the
 * assembled JSON.  The trace is still in progress here: one of its spans
 * is open. */
static void set_response_preview(proxy_req *p, mlt_curl_call *call) {
  size_t len = 0;
  const char *answer = mlt_curl_call_content(call, &len);
  if (!len && mlt_curl_call_is_done(call) && mlt_curl_call_result_json(call, NULL) &&
      mlt_curl_call_chunk_count(call) > 0)
    answer = mlt_curl_call_result_json(call, NULL);
  mlt_update_trace(p->span, MLT_TRACE_UPDATE(.response_preview = answer));
}

/* Start the event stream: the request span's output is then what the
 * client assembles from it (assemble_sse_reply()). */
static void start_sse_reply(proxy_req *p) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(p->req);
  evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
  evhttp_add_header(h, "Cache-Control", "no-cache");
  mlt_span_set_output_reducer(p->span, assemble_sse_reply, NULL);
  mlt_evhttp_send_reply_start(p->req, HTTP_OK, "OK");
  p->reply_started = 1;
  p->code = HTTP_OK;
}

/* Send one SSE event: "event: <event>" (unless "message"), the data, one
 * "data:" line per line of it, a blank line.  One HTTP chunk, recorded as
 * one chunk event of the request span. */
static void send_event(proxy_req *p, const char *event, const char *data, size_t len) {
  struct evbuffer *b = p->px->scratch;
  if (event && strcmp(event, "message") != 0) evbuffer_add_printf(b, "event: %s\n", event);
  size_t i = 0;
  do {
    const char *nl = memchr(data + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - data) : len;
    evbuffer_add(b, "data: ", 6);
    evbuffer_add(b, data + i, end - i);
    evbuffer_add(b, "\n", 1);
    i = end + 1;
  } while (i < len);
  evbuffer_add(b, "\n", 1);
  mlt_evhttp_send_reply_chunk(p->req, b);
  p->relayed++;
}

/* End the reply: the request span ends when libevent reports it sent
 * (possibly inside this call, which may then release |p|). */
static void end_reply(proxy_req *p) {
  struct evhttp_request *req = p->req;
  p->reply_ended = 1;
  set_timeouts(req, 1);
  mlt_evhttp_send_reply_end(req);
}

/* Chunk callback (inside curl's write path): relay the event to a
 * streaming client, as received. */
static int on_chunk(mlt_curl_call *call, const mlt_curl_chunk *ch, void *user_data) {
  proxy_req *p = user_data;
  (void)call;
  if (p->client_gone || !p->req) return 1; /* nobody to relay to: abort the transfer */
  if (!p->client_stream) return 0;         /* assembled, sent at the end */
  /* The usage chunk the proxy asked for on its own behalf. */
  if (p->api == API_CHAT && !p->client_usage && ch->has_usage && ch->n_choices == 0) return 0;
  /* The first chunk means the upstream answered 200 with a stream. */
  if (!p->reply_started) start_sse_reply(p);
  send_event(p, ch->event, ch->data, ch->data_len);
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

/* Reply to a streaming client whose upstream ended: "data: [DONE]" after a
 * complete Chat Completions stream (a Responses stream ends with its
 * response.completed event, relayed already), an "error" event (and no
 * [DONE]) after a failure. */
static void end_sse_reply(proxy_req *p, int status, const char *error) {
  if (status == MLT_OK) {
    if (p->api == API_CHAT) send_event(p, NULL, "[DONE]", 6);
  } else {
    char *e = error_json(status == MLT_CURL_CANCELLED && p->px->draining ? "server_error" : "upstream_error", error);
    if (e) send_event(p, "error", e, strlen(e));
    cJSON_free(e);
  }
  end_reply(p);
}

/* Reply to a client that failed before any event reached it: the
 * upstream's status and error JSON when it sent one, else 502/503/504 and
 * an error JSON.  After a mid-stream failure (a non-streaming client) the
 * status is 502. */
static void send_failure(proxy_req *p, mlt_curl_call *call, int status, const char *error) {
  struct evhttp_request *req = p->req;
  size_t len = 0;
  const char *body = status == MLT_EHTTP && !mlt_curl_call_chunk_count(call) ? mlt_curl_call_result_json(call, &len) : NULL;
  cJSON *j = body ? cJSON_ParseWithLength(body, len) : NULL;
  p->code = mlt_curl_call_chunk_count(call) && status != MLT_CURL_CANCELLED ? 502 : failure_status(call, status);
  p->reply_ended = 1;
  set_timeouts(req, 1);
  if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "error")))
    send_json(req, p->code, body, len);
  else
    send_error(req, p->code, p->code == 503 ? "server_error" : "upstream_error", error);
  cJSON_Delete(j);
}

/* The upstream call is over (its span has ended); answer the client. */
static void on_upstream_done(mlt_curl_call *call, int status, void *user_data) {
  proxy_req *p = user_data;
  proxy *px = p->px;
  p->busy++;
  p->call = NULL;
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
  } else if (p->api == API_MODELS) {
    size_t len = 0;
    const char *body = mlt_curl_call_result_json(call, &len);
    long http = mlt_curl_call_http_status(call);
    if (status != MLT_OK && status != MLT_EHTTP) {
      mlt_span_record_error(p->span, error_type, error);
      send_failure(p, call, status, error);
    } else {
      if (status != MLT_OK) mlt_span_record_error(p->span, error_type, error);
      p->code = (int)http;
      p->reply_ended = 1;
      set_timeouts(p->req, 1);
      send_json(p->req, p->code, body, len);
    }
  } else {
    set_response_preview(p, call);
    if (status != MLT_OK) mlt_span_record_error(p->span, error_type, error);
    if (p->client_stream && (p->reply_started || status == MLT_OK)) {
      /* Streamed (or an empty stream): end it, with [DONE] or an error
       * event. */
      if (!p->reply_started) start_sse_reply(p);
      end_sse_reply(p, status, error);
    } else if (status == MLT_OK) {
      /* Not streaming: the assembled chat.completion / Response. */
      size_t len = 0;
      const char *json = mlt_curl_call_result_json(call, &len);
      p->code = HTTP_OK;
      p->reply_ended = 1;
      set_timeouts(p->req, 1);
      send_json(p->req, HTTP_OK, json, len);
    } else {
      send_failure(p, call, status, error);
    }
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
    fprintf(stderr, "chat-proxy: %s %s %d%s %.1f ms %s\n", p->api == API_MODELS ? "GET" : "POST", api_path(p->api),
            p->code ? p->code : 499, disconnected ? " (client gone)" : "", ms_since(&p->t0), tid);
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
      set_response_preview(p, p->call);
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

/* Start the upstream call of |p| (a CHAT_MODEL span under the request
 * span, or a plain span for GET /v1/models) and register the request. */
static void start_upstream(proxy *px, proxy_req *p, struct evhttp_request *req, const char *up_body) {
  char url[4096];
  snprintf(url, sizeof url, "%s%s", px->base_url, api_path(p->api) + 3 /* after "/v1" */);
  int rc = MLT_ENOMEM;
  p->easy = curl_easy_init();
  if (p->easy) {
    curl_easy_setopt(p->easy, CURLOPT_URL, url);
    curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->easy, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(p->easy, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled stream times out */
    curl_easy_setopt(p->easy, CURLOPT_LOW_SPEED_TIME, (long)IDLE_TIMEOUT_S);
    struct curl_slist *headers = upstream_headers(req, p->api != API_MODELS);
    rc = mlt_curl_call_new(p->easy, p->ctx, p->api == API_MODELS ? px->models_opts : px->curl_opts, up_body,
                           MLT_NTS, headers, &p->call);
    curl_slist_free_all(headers); /* copied by the call */
  }
  if (rc == MLT_OK && p->api != API_MODELS) rc = mlt_curl_call_set_chunk_fn(p->call, on_chunk, p);
  if (rc == MLT_OK) rc = mlt_curl_loop_add(px->curl, p->call, on_upstream_done, p); /* done runs later, once */
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

static proxy_req *preq_new(proxy *px, struct evhttp_request *req, proxy_api api) {
  proxy_req *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->px = px;
  p->api = api;
  clock_gettime(CLOCK_MONOTONIC, &p->t0);
  p->span = mlt_evhttp_request_span(req);
  p->ctx = mlt_evhttp_request_context(req); /* NULL when not traced: fine */
  return p;
}

/* Refuse requests while shutting down, and other methods than @p method. */
static int refuse(proxy *px, struct evhttp_request *req, enum evhttp_cmd_type method) {
  px->n_requests++;
  if (px->draining) {
    px->n_rejected++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    send_error(req, 503, "server_error", "the proxy is shutting down");
    return 1;
  }
  if (evhttp_request_get_command(req) != method) {
    px->n_rejected++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", method == EVHTTP_REQ_GET ? "GET" : "POST");
    send_error(req, 405, "invalid_request_error", method == EVHTTP_REQ_GET ? "use GET" : "use POST");
    return 1;
  }
  return 0;
}

/* POST /v1/chat/completions and POST /v1/responses: validate, start the
 * upstream call, return.  Runs with the request span's context attached. */
static void handle_llm(struct evhttp_request *req, proxy *px, proxy_api api) {
  if (refuse(px, req, EVHTTP_REQ_POST)) return;
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t in_len = evbuffer_get_length(in);
  const char *in_data = (const char *)evbuffer_pullup(in, -1);
  cJSON *body = in_data ? cJSON_ParseWithLength(in_data, in_len) : NULL;
  const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, api == API_CHAT ? "messages" : "input");
  int valid = api == API_CHAT ? cJSON_IsArray(messages) && cJSON_GetArraySize(messages) > 0
                              : (cJSON_IsString(messages) || (cJSON_IsArray(messages) && cJSON_GetArraySize(messages) > 0));
  if (!cJSON_IsObject(body) || !valid) {
    px->n_rejected++;
    cJSON_Delete(body);
    send_error(req, 400, "invalid_request_error",
               api == API_CHAT ? "expected a JSON object with a non-empty \"messages\" array"
                               : "expected a JSON object with an \"input\" string or non-empty array");
    return;
  }
  proxy_req *p = preq_new(px, req, api);
  char *up_body = NULL;
  if (p) {
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    p->client_stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream"));
    p->client_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    p->last_user = last_user_message(messages);
    up_body = upstream_body(body, api);
  }
  cJSON_Delete(body);
  if (!p || !p->last_user || !up_body) {
    if (p) {
      mlt_context_release(p->ctx);
      free(p->last_user);
    }
    free(p);
    cJSON_free(up_body);
    send_error(req, 500, "server_error", "out of memory");
    return;
  }
  mlt_update_trace(p->span, MLT_TRACE_UPDATE(.request_preview = p->last_user));
  start_upstream(px, p, req, up_body);
  cJSON_free(up_body);
}

static void handle_chat(struct evhttp_request *req, void *arg) { handle_llm(req, arg, API_CHAT); }

static void handle_responses(struct evhttp_request *req, void *arg) { handle_llm(req, arg, API_RESPONSES); }

/* GET /v1/models: passed through (status and body). */
static void handle_models(struct evhttp_request *req, void *arg) {
  proxy *px = arg;
  if (refuse(px, req, EVHTTP_REQ_GET)) return;
  proxy_req *p = preq_new(px, req, API_MODELS);
  if (!p) {
    send_error(req, 500, "server_error", "out of memory");
    return;
  }
  start_upstream(px, p, req, NULL);
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

/* The API root of an upstream base URL: "http://h:p" gives
 * "http://h:p/v1"; ".../v1" stays; a full ".../chat/completions" URL loses
 * that suffix.  Endpoints are then the root + "/chat/completions",
 * "/responses", "/models". */
static char *api_root(const char *upstream) {
  size_t n = strlen(upstream);
  while (n && upstream[n - 1] == '/') n--;
  const char *suffix = "/v1";
  if (n >= 17 && strncmp(upstream + n - 17, "/chat/completions", 17) == 0) {
    n -= 17;
    suffix = "";
  } else if (n >= 3 && strncmp(upstream + n - 3, "/v1", 3) == 0) {
    suffix = "";
  }
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

  px.base_url = api_root(cfg->upstream);
  px.base = event_base_new();
  px.http = px.base ? evhttp_new(px.base) : NULL;
  px.scratch = evbuffer_new();
  if (!px.base_url || !px.http || !px.scratch) goto out;
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
  if (rc == MLT_OK) rc = mlt_evhttp_set_cb(px.inst, RESPONSES_PATH, handle_responses, &px);
  if (rc == MLT_OK) rc = mlt_evhttp_set_cb(px.inst, MODELS_PATH, handle_models, &px);
  if (rc == MLT_OK) rc = mlt_evloop_new(px.base, &px.evloop);
  if (rc == MLT_OK) rc = mlt_curl_loop_new(px.base, &px.curl);
  if (rc == MLT_OK) rc = mlt_curl_options_new(&px.curl_opts);
  if (rc == MLT_OK) rc = mlt_curl_options_new(&px.models_opts);
  /* The model listing is no LLM call: a plain span, the body as outputs. */
  if (rc == MLT_OK) rc = mlt_curl_options_set_span_name(px.models_opts, "models.list");
  if (rc == MLT_OK) rc = mlt_curl_options_set_span_type(px.models_opts, MLT_SPAN_UNKNOWN);
  if (rc == MLT_OK) rc = mlt_curl_options_set_stream(px.models_opts, MLT_CURL_STREAM_OFF);
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
  mlt_curl_options_free(px.models_opts);
  if (px.sigterm) event_free(px.sigterm);
  if (px.sigint) event_free(px.sigint);
  if (px.deadline) event_free(px.deadline);
  if (px.scratch) evbuffer_free(px.scratch);
  if (px.base) event_base_free(px.base);
  free(px.base_url);
  mlt_shutdown(-1);
  curl_global_cleanup();
  libevent_global_shutdown();
  if (!cfg->quiet && status == 0) {
    mlt_stats st;
    memset(&st, 0, sizeof st);
    mlt_get_stats(&st, sizeof st); /* readable after mlt_shutdown() */
    fprintf(stderr, "chat-proxy: %lu requests: %lu ok, %lu upstream errors, %lu client disconnects, %lu rejected\n",
            px.n_requests, px.n_ok, px.n_upstream_errors, px.n_disconnects, px.n_rejected);
    fprintf(stderr,
            "chat-proxy: traces: %llu started, %llu exported, %llu dropped (queue full), %llu failed, "
            "%llu timed out; %llu spans exported, %llu events dropped, %llu values truncated\n",
            (unsigned long long)st.traces_started, (unsigned long long)st.traces_exported,
            (unsigned long long)st.traces_dropped, (unsigned long long)st.traces_failed,
            (unsigned long long)st.traces_timed_out, (unsigned long long)st.spans_exported,
            (unsigned long long)st.events_dropped, (unsigned long long)st.values_truncated);
  }
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
