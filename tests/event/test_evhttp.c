/* tests/event/test_evhttp.c: evhttp instrumentation over real loopback HTTP:
 * request spans and their inputs, traceparent in and out, async and chunked
 * replies, client disconnects, and 200 concurrent requests fanning out to
 * worker threads and deferred callbacks. */
#include <mltrace/event.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "net.h"
#include "testutil.h"

/* ---- fixture: server and client on one base -------------------------- */

typedef struct fixture {
  struct event_base *base;
  struct evhttp *http;
  mlt_evhttp *inst;
  mlt_evloop *loop;
  mlt_work_queue *pool;
  int port;
  int done_calls, disconnects;
} fixture;

static fixture F;

static void on_done(struct evhttp_request *req, int disconnected, void *request_data, void *arg) {
  fixture *f = arg;
  (void)req;
  (void)request_data;
  f->done_calls++;
  if (disconnected) f->disconnects++;
}

/* Bind 127.0.0.1 port 0 with a deep backlog (200 concurrent connects).
 * |o| NULL: default options; |done| NULL: on_done(). */
static void fixture_start_done(mlt_evhttp_options *o, mlt_evhttp_done_fn done) {
  memset(&F, 0, sizeof F);
  evthread_use_pthreads();
  F.base = event_base_new();
  REQUIRE(F.base != NULL);
  F.http = evhttp_new(F.base);
  int fd = th_listen_loopback(1024, &F.port);
  evutil_make_socket_nonblocking(fd);
  REQUIRE(evhttp_accept_socket_with_handle(F.http, fd) != NULL);
  mlt_evhttp_options *own = NULL;
  if (!o) {
    REQUIRE_EQ_INT(mlt_evhttp_options_new(&own), MLT_OK);
    o = own;
  }
  mlt_evhttp_options_set_done_cb(o, done ? done : on_done, &F);
  REQUIRE_EQ_INT(mlt_evhttp_instrument(F.http, o, &F.inst), MLT_OK);
  mlt_evhttp_options_free(own);
  REQUIRE_EQ_INT(mlt_evloop_new(F.base, &F.loop), MLT_OK);
}

static void fixture_start(mlt_evhttp_options *o) { fixture_start_done(o, NULL); }

static void fixture_stop(void) {
  evhttp_free(F.http);
  if (F.pool) mlt_work_queue_free(F.pool);
  mlt_evloop_free(F.loop);
  mlt_evhttp_free(F.inst);
  event_base_free(F.base);
}

/* Client side. */
typedef struct reply {
  int done;
  int code;
  char *body;
  size_t len;
  struct evhttp_connection *conn;
  int loop_ok; /* no context in the client callback */
} reply;

static int g_replies;

static void client_done(struct evhttp_request *req, void *arg) {
  reply *r = arg;
  mlt_context *c = mlt_context_current();
  r->loop_ok = c == NULL && mlt_span_is_none(mlt_current_span());
  mlt_context_release(c);
  r->done = 1;
  g_replies++;
  if (!req) return;
  r->code = evhttp_request_get_response_code(req);
  struct evbuffer *b = evhttp_request_get_input_buffer(req);
  r->len = evbuffer_get_length(b);
  r->body = malloc(r->len + 1);
  evbuffer_remove(b, r->body, r->len);
  r->body[r->len] = '\0';
}

/* Start a request; |headers| is NULL or "name", "value", ..., NULL. */
static void http_start(const char *method, const char *uri, const char *const *headers, const char *body, reply *r) {
  memset(r, 0, sizeof *r);
  r->conn = evhttp_connection_base_new(F.base, NULL, "127.0.0.1", (ev_uint16_t)F.port);
  REQUIRE(r->conn != NULL);
  struct evhttp_request *req = evhttp_request_new(client_done, r);
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Host", "127.0.0.1");
  for (size_t i = 0; headers && headers[i]; i += 2) evhttp_add_header(h, headers[i], headers[i + 1]);
  if (body) evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
  enum evhttp_cmd_type cmd = strcmp(method, "POST") == 0 ? EVHTTP_REQ_POST : EVHTTP_REQ_GET;
  REQUIRE(evhttp_make_request(r->conn, req, cmd, uri) == 0);
}

static void run_until_replies(int n) {
  while (g_replies < n) event_base_loop(F.base, EVLOOP_ONCE);
}

/* Free the client connection (before the base goes). */
static void reply_close(reply *r) {
  if (r->conn) evhttp_connection_free(r->conn);
  r->conn = NULL;
}

static void reply_free(reply *r) {
  reply_close(r);
  free(r->body);
  memset(r, 0, sizeof *r);
}

/* One synchronous round trip. */
static void http_call(const char *method, const char *uri, const char *const *headers, const char *body, reply *r) {
  int before = g_replies;
  http_start(method, uri, headers, body, r);
  run_until_replies(before + 1);
}

/* The first span named |name| across exported traces (and its trace). */
static cJSON *find_span(const char *name, cJSON **trace_out) {
  size_t n = mlt_memory_store_count(tu_store);
  for (size_t i = 0; i < n; i++) {
    cJSON *t = tu_trace(i);
    cJSON *s = tu_span(t, name);
    if (s) {
      if (trace_out) *trace_out = t;
      return s;
    }
  }
  return NULL;
}

/* ---- handlers --------------------------------------------------------- */

static void h_json(struct evhttp_request *req, void *arg) {
  (void)arg;
  /* The request's context is attached while the handler runs. */
  mlt_context *cur = mlt_context_current(), *mine = mlt_evhttp_request_context(req);
  CHECK(cur != NULL && mine != NULL);
  char a[MLT_SPAN_ID_SIZE] = "", b[MLT_SPAN_ID_SIZE] = "";
  mlt_context_get_span_id(cur, a, sizeof a);
  mlt_context_get_span_id(mine, b, sizeof b);
  CHECK_EQ_STR(a, b);
  mlt_context_release(cur);
  mlt_context_release(mine);
  {
    MLT_SPAN_SCOPE(s, "handler-step", MLT_SPAN_TOOL);
  }
  struct evbuffer *out = evbuffer_new();
  evbuffer_add_printf(out, "{\"answer\": 42}");
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  mlt_evhttp_send_reply(req, HTTP_OK, "OK", out);
  evbuffer_free(out);
}

static void h_fail(struct evhttp_request *req, void *arg) {
  (void)arg;
  evhttp_send_error(req, HTTP_INTERNAL, NULL); /* plain libevent reply */
}

/* ---- basic request span ---------------------------------------------- */

TEST(request_span_inputs_outputs_and_attributes) {
  tu_init();
  mlt_evhttp_options *o = NULL;
  REQUIRE_EQ_INT(mlt_evhttp_options_new(&o), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_options_allow_header(o, "Authorization"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_evhttp_options_allow_header(o, "cookie"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_evhttp_options_allow_header(o, "X-Custom"), MLT_OK);
  fixture_start(o);
  mlt_evhttp_options_free(o);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_EALREADY);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/fail", h_fail, NULL), MLT_OK);
  reply r;
  const char *hdrs[] = {"User-Agent", "test/1", "Authorization", "Bearer secret", "Cookie", "s=1",
                        "X-Custom", "yes", "X-Other", "no", "Content-Type", "application/json",
                        "x-CUSTOM", "second" /* the first of a name counts */, NULL};
  http_call("POST", "/json?x=1", hdrs, "{\"question\": \"why\", \"k\": [1, 2]}", &r);
  CHECK_EQ_INT(r.code, 200);
  CHECK_EQ_STR(r.body, "{\"answer\": 42}");
  CHECK_EQ_INT(r.loop_ok, 1);
  reply_free(&r);
  http_call("POST", "/json", (const char *[]){"Content-Type", "text/plain", NULL}, "plain {text", &r);
  reply_free(&r);
  http_call("GET", "/fail", NULL, NULL, &r);
  CHECK_EQ_INT(r.code, 500);
  reply_free(&r);
  http_call("GET", "/missing/x?y", NULL, NULL, &r);
  CHECK_EQ_INT(r.code, 404);
  reply_free(&r);
  CHECK_EQ_INT(F.done_calls, 4);
  CHECK_EQ_INT(F.disconnects, 0);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 4);

  cJSON *t = tu_trace(0);
  cJSON *root = tu_span(t, "POST /json");
  REQUIRE(root != NULL);
  CHECK(cJSON_IsNull(cJSON_GetObjectItem(root, "parent_span_id")));
  CHECK_EQ_STR(tu_attr(root, "mlflow.spanType"), "\"CHAIN\"");
  CHECK_EQ_STR(tu_attr(root, "http.request.method"), "\"POST\"");
  CHECK_EQ_STR(tu_attr(root, "url.path"), "\"/json\"");
  CHECK_EQ_STR(tu_attr(root, "http.route"), "\"/json\"");
  CHECK_EQ_STR(tu_attr(root, "client.address"), "\"127.0.0.1\"");
  CHECK_EQ_STR(tu_attr(root, "http.response.status_code"), "200");
  CHECK_EQ_STR(tu_attr(root, "http.response.body.size"), "14");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(root, "status"), "code"), "STATUS_CODE_OK");
  cJSON *in = tu_attr_json(root, "mlflow.spanInputs");
  REQUIRE(in != NULL);
  CHECK_EQ_STR(tu_str(in, "method"), "POST");
  CHECK_EQ_STR(tu_str(in, "uri"), "/json?x=1");
  cJSON *h = cJSON_GetObjectItem(in, "headers");
  CHECK_EQ_STR(tu_str(h, "user-agent"), "test/1");
  CHECK_EQ_STR(tu_str(h, "x-custom"), "yes");
  CHECK_EQ_STR(tu_str(h, "content-type"), "application/json");
  CHECK(cJSON_GetObjectItem(h, "authorization") == NULL);
  CHECK(cJSON_GetObjectItem(h, "cookie") == NULL);
  CHECK(cJSON_GetObjectItem(h, "x-other") == NULL);
  cJSON *body = cJSON_GetObjectItem(in, "body");
  CHECK_EQ_STR(tu_str(body, "question"), "why");
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(body, "k")), 2);
  cJSON *out = tu_attr_json(root, "mlflow.spanOutputs");
  REQUIRE(out != NULL);
  CHECK_EQ_INT(cJSON_GetObjectItem(out, "answer")->valueint, 42);
  cJSON *step = tu_span(t, "handler-step");
  REQUIRE(step != NULL);
  CHECK_EQ_STR(tu_str(step, "parent_span_id"), tu_str(root, "span_id"));
  /* The secret appears nowhere in the trace. */
  char *raw = mlt_memory_store_get(tu_store, 0);
  CHECK(strstr(raw, "secret") == NULL && strstr(raw, "s=1") == NULL);
  free(raw);

  cJSON *t1 = tu_trace(1);
  cJSON *in1 = tu_attr_json(cJSON_GetArrayItem(tu_spans(t1), 0), "mlflow.spanInputs");
  CHECK_EQ_STR(tu_str(in1, "body"), "plain {text"); /* not JSON: a string */

  cJSON *fail = find_span("GET /fail", NULL);
  REQUIRE(fail != NULL);
  CHECK_EQ_STR(tu_attr(fail, "http.response.status_code"), "500");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(fail, "status"), "code"), "STATUS_CODE_ERROR");
  CHECK(atoi(tu_attr(fail, "http.response.body.size")) > 0); /* from Content-Length */
  cJSON *miss = find_span("GET /missing/x", NULL);
  REQUIRE(miss != NULL);
  CHECK_EQ_STR(tu_attr(miss, "http.response.status_code"), "404");
  CHECK(tu_attr(miss, "http.route") == NULL);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(miss, "status"), "code"), "STATUS_CODE_OK");
  tu_done();
}

/* The URI and a text body are recorded as JSON strings with every byte
 * that needs it escaped, wherever it falls (the escaper skips plain bytes a
 * word at a time). */
TEST(inputs_escaped_wherever_the_escapes_fall) {
  tu_init();
  fixture_start(NULL);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_OK);
  static const char *const bodies[] = {
      "plain text, longer than a word or two",
      "\"quoted\" and back\\slash",
      "tab\there, cr\rlf\n, bell\x07, del\x7f, utf-8 \xc3\xa9\xe2\x9c\x93",
      "0123456\n89abcdef01234\"6789abcdef\\",
      "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x1f",
  };
  enum { N = sizeof bodies / sizeof *bodies };
  reply r;
  for (int i = 0; i < N; i++) {
    http_call("POST", "/json?q=%22a%22&x=1", (const char *[]){"Content-Type", "text/plain", NULL}, bodies[i], &r);
    reply_free(&r);
  }
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), N);
  for (int i = 0; i < N; i++) {
    cJSON *in = tu_attr_json(cJSON_GetArrayItem(tu_spans(tu_trace((size_t)i)), 0), "mlflow.spanInputs");
    REQUIRE(in != NULL);
    CHECK_EQ_STR(tu_str(in, "uri"), "/json?q=%22a%22&x=1");
    const char *body = tu_str(in, "body");
    int found = 0; /* (the traces may be stored in any order) */
    for (int k = 0; k < N; k++) found += body && strcmp(body, bodies[k]) == 0;
    CHECK_EQ_INT(found, 1);
  }
  tu_done();
}

TEST(options_name_type_body_limit) {
  tu_init();
  mlt_evhttp_options *o = NULL;
  REQUIRE_EQ_INT(mlt_evhttp_options_new(&o), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_options_set_span_name(o, "http.request"), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_options_set_span_type(o, MLT_SPAN_AGENT), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_options_set_span_type(o, (mlt_span_type)99), MLT_EINVAL);
  CHECK_EQ_INT(mlt_evhttp_options_set_max_body_bytes(o, 8), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_options_clear_headers(o), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_options_new(NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_evhttp_options_set_span_name(NULL, "x"), MLT_EINVAL);
  fixture_start(o);
  mlt_evhttp_options_free(o);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_OK);
  reply r;
  http_call("POST", "/json", (const char *[]){"User-Agent", "ua", NULL}, "0123456789abcdef", &r);
  reply_free(&r);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *root = tu_span(tu_trace(0), "http.request");
  REQUIRE(root != NULL);
  CHECK_EQ_STR(tu_attr(root, "mlflow.spanType"), "\"AGENT\"");
  cJSON *in = tu_attr_json(root, "mlflow.spanInputs");
  CHECK(cJSON_GetObjectItem(in, "headers") == NULL);
  CHECK(strncmp(tu_str(in, "body"), "01234567...[truncated", 21) == 0);
  /* the 14-byte reply over an 8-byte limit: cut text */
  CHECK_EQ_STR(tu_attr(root, "mltrace.http.reply_truncated"), "true");
  tu_done();
}

/* ---- traceparent ------------------------------------------------------ */

/* A request with headers |hdrs| continues the trace of
 * 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01. */
static void check_continued(const char *const *hdrs) {
  tu_init();
  fixture_start(NULL);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_OK);
  reply r;
  http_call("GET", "/json", hdrs, NULL, &r);
  reply_free(&r);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_info(t, "trace_id"), "tr-0af7651916cd43dd8448eb211c80319c");
  cJSON *root = tu_span(t, "GET /json");
  REQUIRE(root != NULL);
  CHECK_EQ_STR(tu_str(root, "parent_span_id"), "t61rcWkgMzE="); /* MLflow: base64 of b7ad6b7169203331 */
  CHECK_EQ_STR(tu_str(tu_span(t, "handler-step"), "parent_span_id"), tu_str(root, "span_id"));
  tu_done();
}

TEST(incoming_traceparent_is_continued) {
  check_continued((const char *[]){"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL});
}

/* Header names are case-insensitive, and of two traceparent headers the
 * first counts (as libevent's own lookup gave). */
TEST(incoming_traceparent_any_case_first_wins) {
  check_continued((const char *[]){"TraceParent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                   "traceparent", "00-11111111111111111111111111111111-2222222222222222-01", NULL});
}

TEST(malformed_traceparent_is_ignored) {
  static const char *const bad[] = {
      "garbage",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
  };
  const size_t n = sizeof bad / sizeof *bad;
  tu_init();
  fixture_start(NULL);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_OK);
  for (size_t i = 0; i < n; i++) {
    reply r;
    http_call("GET", "/json", (const char *[]){"traceparent", bad[i], NULL}, NULL, &r);
    CHECK_EQ_INT(r.code, 200);
    reply_free(&r);
  }
  /* accept_traceparent off: a valid header is ignored too */
  fixture_stop();
  mlt_evhttp_options *o = NULL;
  mlt_evhttp_options_new(&o);
  mlt_evhttp_options_set_accept_traceparent(o, 0);
  fixture_start(o);
  mlt_evhttp_options_free(o);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_OK);
  reply r;
  http_call("GET", "/json", (const char *[]){"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL},
            NULL, &r);
  reply_free(&r);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), n + 1);
  for (size_t i = 0; i < n + 1; i++) {
    cJSON *t = tu_trace(i);
    CHECK(strcmp(tu_info(t, "trace_id"), "tr-0af7651916cd43dd8448eb211c80319c") != 0);
    cJSON *root = tu_span(t, "GET /json");
    REQUIRE(root != NULL);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(root, "parent_span_id")));
  }
  tu_done();
}

/* Outbound: a handler calls another endpoint (of the same server) with its
 * context in traceparent; the callee's span continues the caller's trace. */
typedef struct outbound {
  struct evhttp_request *req; /* the incoming request */
  mlt_context *ctx;
  struct evhttp_connection *conn;
} outbound;

static void out_done(struct evhttp_request *creq, void *arg) {
  outbound *ob = arg;
  struct evbuffer *b = evbuffer_new();
  evbuffer_add_printf(b, "upstream said %d", creq ? evhttp_request_get_response_code(creq) : -1);
  mlt_evhttp_send_reply(ob->req, HTTP_OK, "OK", b);
  evbuffer_free(b);
  mlt_context_release(ob->ctx);
  /* the connection is freed by the test (not from its own callback) */
}

static outbound g_ob;

static void h_caller(struct evhttp_request *req, void *arg) {
  (void)arg;
  g_ob.req = req;
  g_ob.ctx = mlt_evhttp_request_context(req);
  g_ob.conn = evhttp_connection_base_new(F.base, NULL, "127.0.0.1", (ev_uint16_t)F.port);
  struct evhttp_request *creq = evhttp_request_new(out_done, &g_ob);
  evhttp_add_header(evhttp_request_get_output_headers(creq), "Host", "127.0.0.1");
  CHECK_EQ_INT(mlt_evhttp_request_set_traceparent(creq, g_ob.ctx), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_request_set_traceparent(creq, NULL), MLT_OK); /* current: the same; replaces */
  evhttp_make_request(g_ob.conn, creq, EVHTTP_REQ_GET, "/json");
}

TEST(outgoing_traceparent_propagates) {
  tu_init();
  fixture_start(NULL);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/json", h_json, NULL), MLT_OK);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/caller", h_caller, NULL), MLT_OK);
  reply r;
  http_call("GET", "/caller", NULL, NULL, &r);
  CHECK_EQ_STR(r.body, "upstream said 200");
  reply_free(&r);
  evhttp_connection_free(g_ob.conn);
  CHECK_EQ_INT(mlt_evhttp_request_set_traceparent(NULL, NULL), MLT_EINVAL);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *tc = NULL, *tj = NULL;
  cJSON *caller = find_span("GET /caller", &tc);
  cJSON *callee = find_span("GET /json", &tj);
  REQUIRE(caller && callee);
  CHECK_EQ_STR(tu_info(tc, "trace_id"), tu_info(tj, "trace_id"));
  CHECK_EQ_STR(tu_str(callee, "parent_span_id"), tu_str(caller, "span_id"));
  tu_done();
}

/* ---- asynchronous chunked reply --------------------------------------- */

typedef struct streamer {
  struct evhttp_request *req;
  mlt_context *ctx;
  int next, n;
  int stop_after; /* 0: all chunks; else wait after this many */
  int disconnected;
} streamer;

static const char *const chunks[] = {"Hello", ", ", "world", "! ", "héllo ünicode", " done."};
static streamer g_st;

static void stream_step(int status, void *arg) {
  streamer *st = arg;
  CHECK_EQ_INT(status, MLT_OK);
  {
    MLT_SPAN_SCOPE(s, "chunk-step", MLT_SPAN_TOOL); /* under the "chunk" task span */
  }
  if (st->next == st->n) {
    mlt_evhttp_send_reply_end(st->req);
    mlt_context_release(st->ctx);
    return;
  }
  struct evbuffer *b = evbuffer_new();
  evbuffer_add(b, chunks[st->next], strlen(chunks[st->next]));
  st->next++;
  mlt_evhttp_send_reply_chunk(st->req, b);
  evbuffer_free(b);
  if (st->stop_after && st->next == st->stop_after) return; /* the test resumes us */
  CHECK_EQ_INT(mlt_evloop_defer(F.loop, st->ctx, "chunk", stream_step, st, NULL), MLT_OK);
}

static void h_stream(struct evhttp_request *req, void *arg) {
  streamer *st = arg;
  st->req = req;
  st->ctx = mlt_evhttp_request_context(req);
  st->next = 0;
  st->n = (int)(sizeof chunks / sizeof *chunks);
  mlt_evhttp_request_set_data(req, st);
  mlt_evhttp_send_reply_start(req, HTTP_OK, "OK");
  /* Continue later, from the loop: the span stays open meanwhile. */
  CHECK_EQ_INT(mlt_evloop_defer(F.loop, NULL, "chunk", stream_step, st, NULL), MLT_OK);
}

TEST(async_chunked_reply_output_equals_what_client_received) {
  tu_init();
  fixture_start(NULL);
  memset(&g_st, 0, sizeof g_st);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/stream", h_stream, &g_st), MLT_OK);
  reply r;
  http_call("GET", "/stream", NULL, NULL, &r);
  CHECK_EQ_INT(r.code, 200);
  CHECK_EQ_STR(r.body, "Hello, world! héllo ünicode done.");
  reply_close(&r);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *root = tu_span(t, "GET /stream");
  REQUIRE(root != NULL);
  cJSON *out = tu_attr_json(root, "mlflow.spanOutputs");
  REQUIRE(cJSON_IsString(out));
  CHECK_EQ_STR(out->valuestring, r.body);
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(root, "events")), 6);
  char size[16];
  snprintf(size, sizeof size, "%zu", r.len);
  CHECK_EQ_STR(tu_attr(root, "http.response.body.size"), size);
  /* every deferred step is a child of the request span */
  const char *root_id = tu_str(root, "span_id");
  cJSON *s;
  int steps = 0;
  cJSON_ArrayForEach(s, tu_spans(t)) {
    if (strcmp(tu_str(s, "name"), "chunk") == 0) {
      steps++;
      CHECK_EQ_STR(tu_str(s, "parent_span_id"), root_id);
    }
  }
  CHECK_EQ_INT(steps, 7);
  CHECK_EQ_INT(tu_nspans(t), 1 + 7 + 7);
  reply_free(&r);
  tu_done();
}

/* ---- client disconnect mid-reply -------------------------------------- */

typedef struct raw_client {
  int fd;
  struct event *ev;
  char buf[4096];
  size_t len;
} raw_client;

static void disconnect_done(struct evhttp_request *req, int disconnected, void *request_data, void *arg) {
  streamer *st = request_data;
  (void)req;
  on_done(req, disconnected, request_data, arg);
  if (disconnected && st) st->disconnected = 1;
  event_base_loopbreak(F.base);
}

static void raw_readable(evutil_socket_t fd, short what, void *arg) {
  raw_client *c = arg;
  (void)what;
  ssize_t n = recv(fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
  if (n > 0) c->len += (size_t)n;
  c->buf[c->len] = '\0';
  /* Headers and the first two chunks ("Hello", ", ") arrived: hang up. */
  if (strstr(c->buf, "\r\n\r\n") && strstr(c->buf, "2\r\n, \r\n")) {
    event_del(c->ev);
    close(c->fd);
    c->fd = -1;
  }
}

TEST(client_disconnect_mid_reply_ends_span_with_error) {
  tu_init();
  fixture_start_done(NULL, disconnect_done);
  memset(&g_st, 0, sizeof g_st);
  g_st.stop_after = 2;
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/stream", h_stream, &g_st), MLT_OK);

  raw_client c = {0};
  c.fd = th_connect_loopback(F.port);
  const char *rq = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(send(c.fd, rq, strlen(rq), 0) == (ssize_t)strlen(rq));
  c.ev = event_new(F.base, c.fd, EV_READ | EV_PERSIST, raw_readable, &c);
  event_add(c.ev, NULL);
  event_base_dispatch(F.base); /* until disconnect_done breaks the loop */
  CHECK_EQ_INT(g_st.disconnected, 1);
  CHECK_EQ_INT(F.disconnects, 1);
  CHECK(mlt_evhttp_request_context(g_st.req) == NULL); /* the span is over */
  /* The application finishes its reply as libevent expects: the chunk is
   * dropped, the end frees the detached request. */
  struct evbuffer *late = evbuffer_new();
  evbuffer_add(late, "late", 4);
  mlt_evhttp_send_reply_chunk(g_st.req, late);
  evbuffer_free(late);
  mlt_evhttp_send_reply_end(g_st.req);
  mlt_context_release(g_st.ctx);
  event_free(c.ev);
  if (c.fd >= 0) close(c.fd);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *root = tu_span(t, "GET /stream");
  REQUIRE(root != NULL);
  cJSON *status = cJSON_GetObjectItem(root, "status");
  CHECK_EQ_STR(tu_str(status, "code"), "STATUS_CODE_ERROR");
  CHECK(strstr(tu_str(status, "message"), "ClientDisconnected") != NULL);
  cJSON *out = tu_attr_json(root, "mlflow.spanOutputs");
  REQUIRE(cJSON_IsString(out));
  CHECK_EQ_STR(out->valuestring, "Hello, "); /* what was sent before the disconnect */
  CHECK_EQ_STR(tu_attr(root, "http.response.status_code"), "200");
  tu_done();
}

/* ---- a client that leaves before the reply starts --------------------- */

static struct evhttp_request *g_parked;

static void h_park(struct evhttp_request *req, void *arg) {
  (void)arg;
  g_parked = req; /* answer later (never, here) */
}

static void early_hangup(evutil_socket_t fd, short what, void *arg) {
  (void)fd; /* -1 for a pure timer */
  (void)what;
  close(*(int *)arg); /* the handler has run and returned without replying */
}

static void park_done(struct evhttp_request *req, int disconnected, void *request_data, void *arg) {
  on_done(req, disconnected, request_data, arg);
  event_base_loopbreak(F.base);
}

static void give_up(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  event_base_loopbreak(arg);
}

TEST(client_leaving_before_the_reply_is_noticed_at_once) {
  tu_init();
  fixture_start_done(NULL, park_done);
  g_parked = NULL;
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/park", h_park, NULL), MLT_OK);
  int fd = th_connect_loopback(F.port);
  const char *rq = "GET /park HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(send(fd, rq, strlen(rq), 0) == (ssize_t)strlen(rq));
  struct timeval hang = {0, 200000}, limit = {5, 0};
  event_base_once(F.base, -1, EV_TIMEOUT, early_hangup, &fd, &hang);
  struct event *guard = evtimer_new(F.base, give_up, F.base);
  evtimer_add(guard, &limit);
  event_base_dispatch(F.base); /* until park_done (or the 5 s guard) */
  event_free(guard);
  CHECK(g_parked != NULL);
  CHECK_EQ_INT(F.disconnects, 1); /* noticed without any reply being written */
  /* The application ends the reply as libevent expects: this only frees. */
  if (g_parked) evhttp_send_reply(g_parked, 200, "OK", NULL);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *root = tu_span(tu_trace(0), "GET /park");
  REQUIRE(root != NULL);
  cJSON *status = cJSON_GetObjectItem(root, "status");
  CHECK_EQ_STR(tu_str(status, "code"), "STATUS_CODE_ERROR");
  CHECK(strstr(tu_str(status, "message"), "ClientDisconnected") != NULL);
  tu_done();
}

/* ---- who closed the connection ---------------------------------------- */

/* Connect a raw client, send GET |path|, run the loop until the handler has
 * parked the request. */
static int park_client(const char *path) {
  int fd = th_connect_loopback(F.port);
  char rq[128];
  snprintf(rq, sizeof rq, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
  REQUIRE(send(fd, rq, strlen(rq), 0) == (ssize_t)strlen(rq));
  g_parked = NULL;
  while (!g_parked) event_base_loop(F.base, EVLOOP_ONCE);
  return fd;
}

static void stream_parked_then_free(int shutdown) {
  tu_init();
  fixture_start(NULL);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/park", h_park, NULL), MLT_OK);
  int fd = park_client("/park");
  /* The reply is under way (headers and one chunk out) when the server
   * goes; the client is still there, reading nothing. */
  mlt_evhttp_send_reply_start(g_parked, HTTP_OK, "OK");
  struct evbuffer *b = evbuffer_new();
  evbuffer_add(b, "partial", 7);
  mlt_evhttp_send_reply_chunk(g_parked, b);
  evbuffer_free(b);
  for (int i = 0; i < 5; i++) event_base_loop(F.base, EVLOOP_NONBLOCK);
  if (shutdown) CHECK_EQ_INT(mlt_evhttp_begin_shutdown(F.inst), MLT_OK);
  evhttp_free(F.http); /* closes the connection: the span ends here */
  F.http = NULL;
  CHECK_EQ_INT(F.disconnects, 1);
  mlt_evloop_free(F.loop);
  mlt_evhttp_free(F.inst);
  event_base_free(F.base);
  close(fd);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *root = tu_span(tu_trace(0), "GET /park");
  REQUIRE(root != NULL);
  cJSON *status = cJSON_GetObjectItem(root, "status");
  CHECK_EQ_STR(tu_str(status, "code"), "STATUS_CODE_ERROR");
  const char *msg = tu_str(status, "message");
  CHECK(strstr(msg, shutdown ? "ServerShutdown: " : "ServerClosed: ") == msg);
  CHECK(strstr(msg, "ClientDisconnected") == NULL);
  cJSON *out = tu_attr_json(root, "mlflow.spanOutputs");
  REQUIRE(cJSON_IsString(out));
  CHECK_EQ_STR(out->valuestring, "partial"); /* written before the close */
  CHECK_EQ_STR(tu_attr(root, "http.response.body.size"), "7");
  tu_done();
}

TEST(server_shutdown_is_not_a_client_disconnect) { stream_parked_then_free(1); }
TEST(server_closing_without_shutdown_is_server_closed) { stream_parked_then_free(0); }

/* ---- a client that hangs up with the reply backed up ------------------- */

#define BIG_CHUNKS 64
#define BIG_CHUNK 16384

static void fill_chunk(char *buf, int i) {
  for (int k = 0; k < BIG_CHUNK; k++) buf[k] = (char)('a' + (i + k / 1000) % 26);
}

TEST(hangup_output_is_what_reached_the_socket) {
  tu_init();
  mlt_evhttp_options *o = NULL;
  REQUIRE_EQ_INT(mlt_evhttp_options_new(&o), MLT_OK);
  REQUIRE_EQ_INT(mlt_evhttp_options_set_max_body_bytes(o, 4 << 20), MLT_OK);
  fixture_start_done(o, park_done);
  mlt_evhttp_options_free(o);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/park", h_park, NULL), MLT_OK);
  /* Small socket buffers on both ends: most of the reply stays queued in
   * the server's output buffer. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                           .sin_port = htons((uint16_t)F.port)};
  REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  const char *rq = "GET /park HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(send(fd, rq, strlen(rq), 0) == (ssize_t)strlen(rq));
  g_parked = NULL;
  while (!g_parked) event_base_loop(F.base, EVLOOP_ONCE);
  struct evhttp_connection *evcon = evhttp_request_get_connection(g_parked);
  setsockopt(bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)), SOL_SOCKET, SO_SNDBUF, &small,
             sizeof small);
  mlt_evhttp_send_reply_start(g_parked, HTTP_OK, "OK");
  static char chunk[BIG_CHUNK];
  for (int i = 0; i < BIG_CHUNKS; i++) {
    fill_chunk(chunk, i);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, chunk, BIG_CHUNK);
    mlt_evhttp_send_reply_chunk(g_parked, b);
    evbuffer_free(b);
  }
  /* Let the server write what the socket takes, then read a little and hang
   * up with unread data (a reset). */
  for (int i = 0; i < 20; i++) event_base_loop(F.base, EVLOOP_NONBLOCK);
  char got[2048];
  ssize_t n = recv(fd, got, sizeof got, 0);
  CHECK(n > 0);
  for (int i = 0; i < 20; i++) event_base_loop(F.base, EVLOOP_NONBLOCK);
  close(fd);
  struct timeval limit = {10, 0};
  struct event *guard = evtimer_new(F.base, give_up, F.base);
  evtimer_add(guard, &limit);
  event_base_dispatch(F.base); /* until park_done */
  event_free(guard);
  CHECK_EQ_INT(F.disconnects, 1);
  evhttp_send_reply_end(g_parked); /* frees the detached request */
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *root = tu_span(tu_trace(0), "GET /park");
  REQUIRE(root != NULL);
  CHECK(strstr(tu_str(cJSON_GetObjectItem(root, "status"), "message"), "ClientDisconnected: ") != NULL);
  cJSON *out = tu_attr_json(root, "mlflow.spanOutputs");
  REQUIRE(cJSON_IsString(out));
  size_t written = strlen(out->valuestring);
  const char *unsent = tu_attr(root, "mltrace.http.reply_unsent_bytes");
  REQUIRE(unsent != NULL);
  tap_diag("queued %d bytes, written %zu, unsent %s", BIG_CHUNKS * BIG_CHUNK, written, unsent);
  CHECK(written > 0);
  CHECK(written < (size_t)BIG_CHUNKS * BIG_CHUNK);
  CHECK_EQ_INT((long long)written + atoll(unsent), BIG_CHUNKS * BIG_CHUNK);
  char size[24];
  snprintf(size, sizeof size, "%zu", written);
  CHECK_EQ_STR(tu_attr(root, "http.response.body.size"), size);
  /* The outputs are exactly the first |written| bytes of the reply. */
  int prefix_ok = 1;
  for (size_t off = 0; off < written && prefix_ok; off += BIG_CHUNK) {
    fill_chunk(chunk, (int)(off / BIG_CHUNK));
    size_t take = written - off < BIG_CHUNK ? written - off : BIG_CHUNK;
    prefix_ok = memcmp(out->valuestring + off, chunk, take) == 0;
  }
  CHECK(prefix_ok);
  /* Every chunk the application sent is still an event. */
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(root, "events")), BIG_CHUNKS + 1 /* exception */);
  tu_done();
}

static void h_app_error(struct evhttp_request *req, void *arg) {
  (void)arg;
  mlt_span_record_error(mlt_evhttp_request_span(req), "UpstreamError", "model server refused");
  struct evbuffer *b = evbuffer_new();
  evbuffer_add_printf(b, "{\"error\": \"upstream\"}");
  mlt_evhttp_send_reply(req, 502, "Bad Gateway", b);
  evbuffer_free(b);
}

TEST(application_error_keeps_its_description_on_5xx) {
  tu_init();
  fixture_start(NULL);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/fail", h_app_error, NULL), MLT_OK);
  reply r;
  http_call("GET", "/fail", NULL, NULL, &r);
  CHECK_EQ_INT(r.code, 502);
  reply_free(&r);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *root = tu_span(tu_trace(0), "GET /fail");
  REQUIRE(root != NULL);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(root, "status"), "message"), "UpstreamError: model server refused");
  CHECK_EQ_STR(tu_attr(root, "http.response.status_code"), "502");
  tu_done();
}

/* ---- tracing disabled -------------------------------------------------- */

TEST(untraced_when_not_initialized) {
  fixture_start(NULL);
  memset(&g_st, 0, sizeof g_st);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/stream", h_stream, &g_st), MLT_OK);
  REQUIRE_EQ_INT(mlt_evhttp_set_gencb(F.inst, h_fail, NULL), MLT_OK);
  reply r;
  http_call("GET", "/stream", NULL, NULL, &r);
  CHECK_EQ_STR(r.body, "Hello, world! héllo ünicode done.");
  reply_free(&r);
  http_call("GET", "/other", NULL, NULL, &r);
  CHECK_EQ_INT(r.code, 500);
  reply_free(&r);
  CHECK_EQ_INT(mlt_evhttp_del_cb(F.inst, "/stream"), MLT_OK);
  CHECK_EQ_INT(mlt_evhttp_del_cb(F.inst, "/stream"), MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_evhttp_set_gencb(F.inst, NULL, NULL), MLT_OK);
  http_call("GET", "/stream", NULL, NULL, &r);
  CHECK_EQ_INT(r.code, 404);
  reply_free(&r);
  CHECK_EQ_INT(F.done_calls, 3);
  fixture_stop();
  mlt_evhttp_free(NULL);
}

/* ---- 200 concurrent requests, fan-out to workers ----------------------- */

#define N_REQ 200
#define N_FAN 3
#define N_CHUNKS 4

typedef struct load_req {
  int i;
  struct evhttp_request *req;
  mlt_context *ctx;
  char trace_id[MLT_TRACE_ID_SIZE];
  int gathered, sent;
  int results[N_FAN];
} load_req;

typedef struct load_job {
  load_req *lr;
  int k;
} load_job;

static load_req g_lr[N_REQ];
static load_job g_jobs[N_REQ][N_FAN];
static int g_wrong_context; /* callbacks that saw another request's context */
static int g_worker_errors; /* failures seen on worker threads */
static int g_leaks;         /* plain callbacks that saw any context */

static void check_context(load_req *lr) {
  mlt_context *c = mlt_context_current();
  char id[MLT_TRACE_ID_SIZE] = "";
  if (c) mlt_context_get_trace_id(c, id, sizeof id);
  mlt_context_release(c);
  if (strcmp(id, lr->trace_id) != 0) __atomic_add_fetch(&g_wrong_context, 1, __ATOMIC_RELAXED);
}

static void load_send(int status, void *arg);

static void load_gather(int status, void *arg) {
  load_job *j = arg;
  load_req *lr = j->lr;
  CHECK_EQ_INT(status, MLT_OK);
  check_context(lr);
  if (++lr->gathered < N_FAN) return;
  /* All results are back on the loop: reply from a deferred callback, under
   * the request's context given explicitly (NULL would capture the current
   * one: this callback's "gather" span). */
  CHECK_EQ_INT(mlt_evloop_defer(F.loop, lr->ctx, "reply", load_send, lr, NULL), MLT_OK);
}

static void load_work(void *arg) {
  load_job *j = arg;
  load_req *lr = j->lr;
  check_context(lr);
  mlt_span s = mlt_span_start("work", MLT_SPAN_RETRIEVER);
  mlt_span_set_attr_int(s, "req", lr->i);
  mlt_span_set_attr_int(s, "k", j->k);
  lr->results[j->k] = lr->i * 10 + j->k;
  mlt_span_end(s);
  if (mlt_evloop_call(F.loop, NULL, "gather", load_gather, j) != MLT_OK)
    __atomic_add_fetch(&g_worker_errors, 1, __ATOMIC_RELAXED);
}

static void load_send(int status, void *arg) {
  load_req *lr = arg;
  CHECK_EQ_INT(status, MLT_OK);
  check_context(lr);
  if (lr->sent == 0) {
    evhttp_add_header(evhttp_request_get_output_headers(lr->req), "Content-Type", "text/plain");
    mlt_evhttp_send_reply_start(lr->req, HTTP_OK, "OK");
  }
  if (lr->sent == N_CHUNKS) {
    mlt_evhttp_send_reply_end(lr->req);
    mlt_context_release(lr->ctx);
    lr->ctx = NULL;
    return;
  }
  struct evbuffer *b = evbuffer_new();
  evbuffer_add_printf(b, "r%d.c%d=%d;", lr->i, lr->sent, lr->results[lr->sent % N_FAN]);
  mlt_evhttp_send_reply_chunk(lr->req, b);
  evbuffer_free(b);
  lr->sent++;
  CHECK_EQ_INT(mlt_evloop_defer(F.loop, NULL, NULL, load_send, lr, NULL), MLT_OK);
}

static void h_load(struct evhttp_request *req, void *arg) {
  (void)arg;
  const char *uri = evhttp_request_get_uri(req);
  const char *p = strstr(uri, "i=");
  REQUIRE(p != NULL);
  load_req *lr = &g_lr[atoi(p + 2)];
  lr->req = req;
  lr->ctx = mlt_evhttp_request_context(req);
  REQUIRE(lr->ctx != NULL);
  mlt_context_get_trace_id(lr->ctx, lr->trace_id, sizeof lr->trace_id);
  for (int k = 0; k < N_FAN; k++) {
    g_jobs[lr->i][k] = (load_job){lr, k};
    CHECK_EQ_INT(mlt_work_queue_submit(F.pool, NULL, load_work, &g_jobs[lr->i][k]), MLT_OK);
  }
}

static void leak_watch(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
  mlt_context *c = mlt_context_current();
  if (c || !mlt_span_is_none(mlt_current_span())) g_leaks++;
  mlt_context_release(c);
}

TEST(concurrent_requests_fan_out_each_in_its_own_trace) {
  tu_init();
  fixture_start(NULL);
  REQUIRE_EQ_INT(mlt_work_queue_new(4, 4096, &F.pool), MLT_OK);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(F.inst, "/rag", h_load, NULL), MLT_OK);
  struct timeval tick = {0, 500};
  struct event *watch = event_new(F.base, -1, EV_PERSIST, leak_watch, NULL);
  event_add(watch, &tick);
  static reply r[N_REQ];
  g_replies = 0;
  for (int i = 0; i < N_REQ; i++) {
    char uri[32];
    g_lr[i].i = i;
    snprintf(uri, sizeof uri, "/rag?i=%d", i);
    http_start("GET", uri, NULL, NULL, &r[i]);
  }
  run_until_replies(N_REQ);
  event_free(watch);
  int ok = 0, loop_ok = 0;
  for (int i = 0; i < N_REQ; i++) {
    ok += r[i].code == 200;
    loop_ok += r[i].loop_ok;
  }
  CHECK_EQ_INT(ok, N_REQ);
  CHECK_EQ_INT(loop_ok, N_REQ);
  CHECK_EQ_INT(g_wrong_context, 0);
  CHECK_EQ_INT(g_worker_errors, 0);
  CHECK_EQ_INT(g_leaks, 0);
  CHECK_EQ_INT(F.done_calls, N_REQ);
  for (int i = 0; i < N_REQ; i++) reply_close(&r[i]);
  fixture_stop();
  REQUIRE_EQ_INT(tu_flush_count(), N_REQ);
  int seen[N_REQ] = {0};
  for (size_t n = 0; n < N_REQ; n++) {
    cJSON *t = tu_trace(n);
    cJSON *root = tu_span(t, "GET /rag");
    REQUIRE(root != NULL);
    cJSON *in = tu_attr_json(root, "mlflow.spanInputs");
    int i = atoi(strstr(tu_str(in, "uri"), "i=") + 2);
    REQUIRE(i >= 0 && i < N_REQ);
    seen[i]++;
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(root, "parent_span_id")));
    CHECK_EQ_STR(tu_info(t, "trace_id"), g_lr[i].trace_id);
    const char *root_id = tu_str(root, "span_id");
    int works = 0, gathers = 0, replies = 0;
    cJSON *s;
    cJSON_ArrayForEach(s, tu_spans(t)) {
      const char *name = tu_str(s, "name");
      if (strcmp(name, "work") == 0) {
        works++;
        CHECK_EQ_INT(atoi(tu_attr(s, "req")), i);
        CHECK_EQ_STR(tu_str(s, "parent_span_id"), root_id);
      } else if (strcmp(name, "gather") == 0) {
        gathers++;
        CHECK_EQ_STR(tu_str(s, "parent_span_id"), root_id);
      } else if (strcmp(name, "reply") == 0) {
        replies++;
        CHECK_EQ_STR(tu_str(s, "parent_span_id"), root_id);
      }
    }
    CHECK_EQ_INT(works, N_FAN);
    CHECK_EQ_INT(gathers, N_FAN);
    CHECK_EQ_INT(replies, 1);
    CHECK_EQ_INT(tu_nspans(t), 1 + 2 * N_FAN + 1);
    cJSON *out = tu_attr_json(root, "mlflow.spanOutputs");
    REQUIRE(cJSON_IsString(out));
    CHECK_EQ_STR(out->valuestring, r[i].body); /* the aggregated output is what the client got */
    tu_free_cache();
  }
  for (int i = 0; i < N_REQ; i++) CHECK_EQ_INT(seen[i], 1);
  for (int i = 0; i < N_REQ; i++) reply_free(&r[i]);
  tu_done();
}

static const tap_test tests[] = {
    TAP_ENTRY(request_span_inputs_outputs_and_attributes),
    TAP_ENTRY(options_name_type_body_limit),
    TAP_ENTRY(incoming_traceparent_is_continued),
    TAP_ENTRY(incoming_traceparent_any_case_first_wins),
    TAP_ENTRY(malformed_traceparent_is_ignored),
    TAP_ENTRY(outgoing_traceparent_propagates),
    TAP_ENTRY(async_chunked_reply_output_equals_what_client_received), TAP_ENTRY(inputs_escaped_wherever_the_escapes_fall),
    TAP_ENTRY(client_disconnect_mid_reply_ends_span_with_error),
    TAP_ENTRY(client_leaving_before_the_reply_is_noticed_at_once),
    TAP_ENTRY(server_shutdown_is_not_a_client_disconnect),
    TAP_ENTRY(server_closing_without_shutdown_is_server_closed),
    TAP_ENTRY(hangup_output_is_what_reached_the_socket),
    TAP_ENTRY(application_error_keeps_its_description_on_5xx),
    TAP_ENTRY(untraced_when_not_initialized),
    TAP_ENTRY_TIMEOUT(concurrent_requests_fan_out_each_in_its_own_trace, 120),
    TAP_END,
};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
