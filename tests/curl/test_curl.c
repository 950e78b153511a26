/* tests/curl/test_curl.c: libmltrace_curl end to end: traced transfers
 * against examples/fake-openai (and a raw server replaying SSE fixtures) on
 * curl_easy_perform(), the application's own multi handle, and the libevent
 * driver; faults (HTTP errors, disconnects, timeouts, refused connections,
 * short writes, malformed events); cancellation; 50 concurrent streams on
 * one loop.  Traces are read back from the in-memory store. */
#include <mltrace/curl.h>
#include <mltrace/sse.h>

#include <signal.h>

#include <event2/event.h>

#include "buf.h"
#include "net.h"
#include "proc.h"
#include "testutil.h"

/* fake-openai's chat completions URL (set by main()). */
static char ct_url[256];

/* ---- request bodies ---------------------------------------------------- */

/* {"model":"m","stream":S,[stream_options],"messages":[{"role":"user","content":MSG}]} */
static char *ct_body(const char *msg, int stream, int include_usage) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "model", "test-model");
  if (stream) cJSON_AddBoolToObject(req, "stream", 1);
  if (include_usage) cJSON_AddBoolToObject(cJSON_AddObjectToObject(req, "stream_options"), "include_usage", 1);
  cJSON *msgs = cJSON_AddArrayToObject(req, "messages");
  cJSON *sys = cJSON_CreateObject(), *m = cJSON_CreateObject();
  cJSON_AddStringToObject(sys, "role", "system");
  cJSON_AddStringToObject(sys, "content", "Be brief.");
  cJSON_AddStringToObject(m, "role", "user");
  cJSON_AddStringToObject(m, "content", msg);
  cJSON_AddItemToArray(msgs, sys);
  cJSON_AddItemToArray(msgs, m);
  char *t = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  return t;
}

/* An easy handle aimed at the fake server. */
static CURL *ct_easy(void) {
  CURL *h = curl_easy_init();
  REQUIRE(h != NULL);
  curl_easy_setopt(h, CURLOPT_URL, ct_url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
  return h;
}

/* The assembled chat.completion of raw SSE bytes, by a fresh aggregator. */
static char *ct_assemble(const char *bytes, size_t len) {
  mlt_chat_stream *s = NULL;
  REQUIRE(mlt_chat_stream_new(&s) == MLT_OK);
  mlt_chat_stream_feed(s, bytes, len);
  mlt_chat_stream_finish(s);
  char *r = mlt_chat_stream_result_json(s, NULL);
  mlt_chat_stream_free(s);
  return r;
}


/* ---- one traced call, synchronously ------------------------------------ */

typedef struct sync_result {
  CURLcode cc;
  int status;
  th_buf bytes; /* what the write callback received */
  char *error;
  char *result_json;
  char *content;
  char *usage;
  long http;
} sync_result;

static void sync_free(sync_result *r) {
  free(r->bytes.p);
  free(r->error);
  free(r->result_json);
  free(r->content);
  free(r->usage);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* Perform one call on a fresh handle with the given extra headers. */
static sync_result run_call(const mlt_context *parent, const mlt_curl_options *opts, const char *body,
                            struct curl_slist *headers, void (*tweak)(CURL *)) {
  sync_result r = {0};
  CURL *h = ct_easy();
  if (tweak) tweak(h);
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, parent, opts, body, MLT_NTS, headers, &call), MLT_OK);
  mlt_curl_call_set_write_fn(call, th_buf_write, &r.bytes);
  r.cc = mlt_curl_perform(call);
  CHECK(mlt_curl_call_is_done(call));
  r.status = mlt_curl_call_status(call);
  r.error = dup_or_null(mlt_curl_call_error(call));
  r.result_json = dup_or_null(mlt_curl_call_result_json(call, NULL));
  r.content = dup_or_null(mlt_curl_call_content(call, NULL));
  r.usage = dup_or_null(mlt_curl_call_usage_json(call));
  r.http = mlt_curl_call_http_status(call);
  CHECK_EQ_INT(mlt_curl_call_curl_result(call), r.cc);
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  return r;
}

/* The only span of the only exported trace. */
static cJSON *only_span(cJSON **trace_out) {
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  REQUIRE_EQ_INT(tu_nspans(t), 1);
  if (trace_out) *trace_out = t;
  return cJSON_GetArrayItem(tu_spans(t), 0);
}

/* ---- easy path --------------------------------------------------------- */

TEST(easy_stream_span_and_previews) {
  NEED_FAKE();
  tu_init();
  char *body = ct_body("hi there", 1, 1);
  sync_result r = run_call(NULL, NULL, body, NULL, NULL);
  CHECK_EQ_INT(r.cc, CURLE_OK);
  CHECK_EQ_INT(r.status, MLT_OK);
  CHECK(r.error == NULL);
  CHECK_EQ_INT(r.http, 200);
  CHECK_EQ_STR(r.content, "Echo: hi there \xE2\x9C\x93");
  cJSON *t;
  cJSON *sp = only_span(&t);
  CHECK_EQ_STR(tu_str(sp, "name"), "chat.completions");
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_OK");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanType"), "\"CHAT_MODEL\"");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.message.format"), "\"openai\"");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.llm.model"), "\"test-model\"");
  CHECK_EQ_STR(tu_attr(sp, "model"), "\"test-model\"");
  CHECK_EQ_STR(tu_attr(sp, "stream"), "true");
  CHECK_EQ_STR(tu_attr(sp, "http.response.status_code"), "200");
  CHECK_EQ_STR(tu_attr(sp, "http.request.method"), "\"POST\"");
  CHECK(tu_attr(sp, "gen_ai.response.time_to_first_chunk") != NULL);
  CHECK(tu_attr(sp, "messages") == NULL);
  /* inputs: the request body */
  cJSON *in = tu_attr_json(sp, "mlflow.spanInputs");
  REQUIRE(in != NULL);
  CHECK_EQ_STR(tu_str(cJSON_GetArrayItem(cJSON_GetObjectItem(in, "messages"), 1), "content"), "hi there");
  /* outputs: the assembled completion, identical to what the write callback got */
  char *assembled = ct_assemble(r.bytes.p, r.bytes.len);
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), assembled);
  CHECK_EQ_STR(r.result_json, assembled);
  free(assembled);
  cJSON *out = tu_attr_json(sp, "mlflow.spanOutputs");
  cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(out, "choices"), 0);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(choice, "message"), "content"), "Echo: hi there \xE2\x9C\x93");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(choice, "message"), "role"), "assistant");
  CHECK_EQ_STR(tu_str(choice, "finish_reason"), "stop");
  /* one chunk event per chunk: role + 4 tokens ("Echo", ": hi", " the", "re ✓"?) + finish + usage */
  int chunks = tu_nevents(sp, "mlflow.chunk.item.");
  CHECK(chunks >= 5);
  char want[32];
  snprintf(want, sizeof want, "%d", chunks);
  CHECK_EQ_STR(tu_attr(sp, "mltrace.sse.chunks"), want);
  CHECK(tu_event(sp, "mlflow.chunk.item.0") != NULL);
  /* usage: from the usage chunk, once; the trace total equals it */
  CHECK(r.usage != NULL);
  CHECK_EQ_STR(tu_attr(sp, "mlflow.chat.tokenUsage"), r.usage);
  CHECK_EQ_STR(tu_meta(t, "mlflow.trace.tokenUsage"), r.usage);
  cJSON *u = tu_attr_json(sp, "mlflow.chat.tokenUsage");
  CHECK_EQ_INT(cJSON_GetObjectItem(u, "output_tokens")->valueint, chunks - 3);
  CHECK_EQ_INT(cJSON_GetObjectItem(u, "total_tokens")->valueint,
               cJSON_GetObjectItem(u, "input_tokens")->valueint + chunks - 3);
  /* previews: last user message and the assembled answer */
  CHECK_EQ_STR(tu_info(t, "request_preview"), "hi there");
  CHECK_EQ_STR(tu_info(t, "response_preview"), "Echo: hi there \xE2\x9C\x93");
  CHECK_EQ_STR(tu_tag(t, "mlflow.traceName"), "chat.completions");
  sync_free(&r);
  cJSON_free(body);
  tu_done();
}

/* Capture the request headers curl sent (CURLOPT_DEBUGFUNCTION). */
static int debug_headers(CURL *h, curl_infotype type, char *data, size_t size, void *ud) {
  (void)h;
  if (type == CURLINFO_HEADER_OUT) th_buf_add(ud, data, size);
  return 0;
}

static th_buf sent_headers;
static void tweak_debug(CURL *h) {
  curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_headers);
  curl_easy_setopt(h, CURLOPT_DEBUGDATA, &sent_headers);
  curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
  /* a query string carrying a key must not reach the trace */
  char url[300];
  snprintf(url, sizeof url, "%s?api-key=QUERYSECRET", ct_url);
  curl_easy_setopt(h, CURLOPT_URL, url);
}

TEST(easy_parent_traceparent_headers_and_secrets) {
  NEED_FAKE();
  tu_init();
  mlt_span root = mlt_span_start("handler", MLT_SPAN_CHAIN);
  mlt_context *ctx = mlt_context_capture(root);
  REQUIRE(ctx != NULL);
  struct curl_slist *hdr = curl_slist_append(NULL, "Authorization: Bearer sk-HEADERSECRET");
  hdr = curl_slist_append(hdr, "X-Custom: yes");
  hdr = curl_slist_append(hdr, "traceparent: 00-11111111111111111111111111111111-2222222222222222-01");
  char *body = ct_body("secrets?", 1, 0);
  sync_result r = run_call(ctx, NULL, body, hdr, tweak_debug);
  /* the caller's list is untouched */
  CHECK_EQ_STR(hdr->data, "Authorization: Bearer sk-HEADERSECRET");
  CHECK_EQ_STR(hdr->next->next->data, "traceparent: 00-11111111111111111111111111111111-2222222222222222-01");
  curl_slist_free_all(hdr);
  CHECK_EQ_INT(r.status, MLT_OK);
  mlt_context_release(ctx);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  REQUIRE_EQ_INT(tu_nspans(t), 2);
  cJSON *llm = tu_span(t, "chat.completions"), *h = tu_span(t, "handler");
  REQUIRE(llm && h);
  CHECK_EQ_STR(tu_str(llm, "parent_span_id"), tu_str(h, "span_id"));
  /* the headers sent: caller's headers, one traceparent naming the LLM span */
  REQUIRE(sent_headers.p != NULL);
  CHECK(strstr(sent_headers.p, "Authorization: Bearer sk-HEADERSECRET") != NULL);
  CHECK(strstr(sent_headers.p, "X-Custom: yes") != NULL);
  CHECK(strstr(sent_headers.p, "Content-Type: application/json") != NULL);
  CHECK(strstr(sent_headers.p, "2222222222222222") == NULL);
  const char *tp = strstr(sent_headers.p, "traceparent: 00-");
  REQUIRE(tp != NULL);
  CHECK(strstr(tp + 1, "traceparent:") == NULL);
  /* 00-<trace hex>-<span hex>-01: trace id = tr-<hex>; span id = the LLM span's */
  char trace_hex[33], span_hex[17];
  REQUIRE(sscanf(tp, "traceparent: 00-%32[0-9a-f]-%16[0-9a-f]-01", trace_hex, span_hex) == 2);
  CHECK_EQ_STR(tu_info(t, "trace_id") + 3, trace_hex);
  /* the exported span id is base64 of the 8 bytes: compare through hex */
  unsigned char raw[8];
  for (int i = 0; i < 8; i++) {
    unsigned v;
    sscanf(span_hex + 2 * i, "%2x", &v);
    raw[i] = (unsigned char)v;
  }
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char enc[13];
  for (int i = 0, o = 0; i < 9; i += 3) {
    unsigned v = (unsigned)raw[i] << 16 | (i + 1 < 8 ? (unsigned)raw[i + 1] << 8 : 0) | (i + 2 < 8 ? raw[i + 2] : 0);
    enc[o++] = b64[(v >> 18) & 63];
    enc[o++] = b64[(v >> 12) & 63];
    enc[o++] = i + 1 < 8 ? b64[(v >> 6) & 63] : '=';
    enc[o++] = i + 2 < 8 ? b64[v & 63] : '=';
    enc[o] = '\0';
  }
  CHECK_EQ_STR(tu_str(llm, "span_id"), enc);
  /* no secret anywhere in the trace; url.full has no query */
  char *raw_trace = mlt_memory_store_get(tu_store, 0);
  REQUIRE(raw_trace != NULL);
  CHECK(strstr(raw_trace, "HEADERSECRET") == NULL);
  CHECK(strstr(raw_trace, "QUERYSECRET") == NULL);
  CHECK(strstr(raw_trace, "Authorization") == NULL);
  free(raw_trace);
  char want[300];
  snprintf(want, sizeof want, "\"%s\"", ct_url);
  CHECK_EQ_STR(tu_attr(llm, "url.full"), want);
  /* a child LLM span: the previews come from the root, not from it */
  CHECK(tu_info(t, "response_preview") == NULL);
  free(sent_headers.p);
  sync_free(&r);
  cJSON_free(body);
  tu_done();
}

TEST(easy_non_streaming_json) {
  NEED_FAKE();
  tu_init();
  mlt_curl_options *o = NULL;
  REQUIRE_EQ_INT(mlt_curl_options_new(&o), MLT_OK);
  CHECK_EQ_INT(mlt_curl_options_set_span_type(o, MLT_SPAN_LLM), MLT_OK);
  CHECK_EQ_INT(mlt_curl_options_set_span_name(o, "llm.call"), MLT_OK);
  CHECK_EQ_INT(mlt_curl_options_set_provider(o, "fake"), MLT_OK);
  char *body = ct_body("plain", 0, 0);
  sync_result r = run_call(NULL, o, body, NULL, NULL);
  mlt_curl_options_free(o);
  CHECK_EQ_INT(r.status, MLT_OK);
  CHECK_EQ_STR(r.content, "Echo: plain \xE2\x9C\x93");
  cJSON *t;
  cJSON *sp = only_span(&t);
  CHECK_EQ_STR(tu_str(sp, "name"), "llm.call");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanType"), "\"LLM\"");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.llm.provider"), "\"fake\"");
  /* outputs: the response body as it came (without the final newline) */
  REQUIRE(r.bytes.len > 0 && r.bytes.p[r.bytes.len - 1] == '\n');
  r.bytes.p[--r.bytes.len] = '\0';
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), r.bytes.p);
  CHECK_EQ_STR(r.result_json, r.bytes.p);
  CHECK_EQ_INT(tu_nevents(sp, "mlflow.chunk.item."), 0);
  CHECK(tu_attr(sp, "gen_ai.response.time_to_first_chunk") == NULL);
  CHECK(tu_attr(sp, "mlflow.chat.tokenUsage") != NULL);
  CHECK_EQ_STR(tu_meta(t, "mlflow.trace.tokenUsage"), tu_attr(sp, "mlflow.chat.tokenUsage"));
  CHECK_EQ_STR(tu_info(t, "response_preview"), "Echo: plain \xE2\x9C\x93");
  sync_free(&r);
  cJSON_free(body);
  tu_done();
}

TEST(easy_tool_calls_assembled) {
  NEED_FAKE();
  tu_init();
  const char *body =
      "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"weather in Paris and London?\"}],"
      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{}}},"
      "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{}}}]}";
  sync_result r = run_call(NULL, NULL, body, NULL, NULL);
  CHECK_EQ_INT(r.status, MLT_OK);
  cJSON *sp = only_span(NULL);
  cJSON *out = tu_attr_json(sp, "mlflow.spanOutputs");
  cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(out, "choices"), 0);
  CHECK_EQ_STR(tu_str(choice, "finish_reason"), "tool_calls");
  cJSON *calls = cJSON_GetObjectItem(cJSON_GetObjectItem(choice, "message"), "tool_calls");
  REQUIRE_EQ_INT(cJSON_GetArraySize(calls), 2);
  cJSON *f0 = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 0), "function");
  cJSON *f1 = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 1), "function");
  CHECK_EQ_STR(tu_str(f0, "name"), "get_weather");
  CHECK_EQ_STR(tu_str(f0, "arguments"), "{\"city\": \"Paris\"}");
  CHECK_EQ_STR(tu_str(f1, "name"), "get_time");
  CHECK_EQ_STR(tu_str(f1, "arguments"), "{\"city\": \"London\"}");
  CHECK_EQ_STR(tu_str(cJSON_GetArrayItem(calls, 0), "id"), "call_0");
  cJSON *tools = tu_attr_json(sp, "mlflow.chat.tools");
  CHECK_EQ_INT(cJSON_GetArraySize(tools), 2);
  sync_free(&r);
  tu_done();
}

static struct curl_slist *one_header(const char *h) { return curl_slist_append(NULL, h); }

TEST(easy_http_error_is_error_with_body) {
  NEED_FAKE();
  tu_init();
  struct curl_slist *hdr = one_header("X-Fake-Status: 500");
  char *body = ct_body("boom", 1, 1);
  sync_result r = run_call(NULL, NULL, body, hdr, NULL);
  curl_slist_free_all(hdr);
  CHECK_EQ_INT(r.cc, CURLE_OK);
  CHECK_EQ_INT(r.status, MLT_EHTTP);
  CHECK_EQ_INT(r.http, 500);
  REQUIRE(r.error != NULL);
  CHECK(strncmp(r.error, "HTTPError: HTTP 500: ", 21) == 0);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_status_msg(sp), r.error);
  CHECK(tu_event(sp, "exception") != NULL);
  CHECK_EQ_STR(tu_attr(sp, "http.response.status_code"), "500");
  /* the error body is the output (JSON: not parsed as a stream) */
  cJSON *out = tu_attr_json(sp, "mlflow.spanOutputs");
  CHECK(cJSON_IsObject(cJSON_GetObjectItem(out, "error")));
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), r.result_json);
  CHECK(strncmp(r.bytes.p, r.result_json, strlen(r.result_json)) == 0);
  sync_free(&r);
  cJSON_free(body);
  tu_done();
}

TEST(easy_disconnect_mid_stream_keeps_partial_output) {
  NEED_FAKE();
  tu_init();
  struct curl_slist *hdr = one_header("X-Fake-Disconnect-After: 3");
  char *body = ct_body("a longer question to cut", 1, 1);
  sync_result r = run_call(NULL, NULL, body, hdr, NULL);
  curl_slist_free_all(hdr);
  CHECK(r.cc != CURLE_OK);
  CHECK_EQ_INT(r.status, MLT_EIO);
  REQUIRE(r.error != NULL);
  CHECK(strncmp(r.error, "CurlError: ", 11) == 0);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  /* partial output: the 3 chunks that arrived (role, "Echo", ": a ") */
  CHECK_EQ_INT(tu_nevents(sp, "mlflow.chunk.item."), 3);
  cJSON *out = tu_attr_json(sp, "mlflow.spanOutputs");
  cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(out, "choices"), 0), "message");
  CHECK_EQ_STR(tu_str(msg, "content"), "Echo: a ");
  CHECK_EQ_STR(r.content, "Echo: a ");
  char *assembled = ct_assemble(r.bytes.p, r.bytes.len);
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), assembled);
  free(assembled);
  sync_free(&r);
  cJSON_free(body);
  tu_done();
}

/* Events every 250 ms, deadline at 600 ms: the role chunk and the first
 * token arrive (at 250 and 500 ms), the second one would come at 750. */
static void tweak_timeout(CURL *h) { curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 600L); }

TEST(easy_timeout_is_error) {
  NEED_FAKE();
  tu_init();
  struct curl_slist *hdr = one_header("X-Fake-Delay-Ms: 250");
  char *body = ct_body("slow one", 1, 0);
  sync_result r = run_call(NULL, NULL, body, hdr, tweak_timeout);
  curl_slist_free_all(hdr);
  CHECK_EQ_INT(r.cc, CURLE_OPERATION_TIMEDOUT);
  CHECK_EQ_INT(r.status, MLT_ETIMEDOUT);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  CHECK(strstr(tu_status_msg(sp), "curl error 28") != NULL);
  /* the chunks that arrived: a partial output */
  CHECK(tu_nevents(sp, "mlflow.chunk.item.") >= 1);
  CHECK(tu_attr(sp, "mlflow.spanOutputs") != NULL);
  sync_free(&r);
  cJSON_free(body);
  tu_done();
}

static void tweak_refused(CURL *h) {
  char url[128]; /* a port nobody listens on */
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", th_unused_port());
  curl_easy_setopt(h, CURLOPT_URL, url);
}

TEST(easy_connection_refused) {
  tu_init();
  char *body = ct_body("nobody home", 1, 0);
  sync_result r = run_call(NULL, NULL, body, NULL, tweak_refused);
  CHECK_EQ_INT(r.cc, CURLE_COULDNT_CONNECT);
  CHECK_EQ_INT(r.status, MLT_EIO);
  CHECK_EQ_INT(r.http, 0);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  CHECK(tu_attr(sp, "mlflow.spanOutputs") == NULL);
  CHECK(tu_attr(sp, "http.response.status_code") == NULL);
  CHECK(tu_attr(sp, "mlflow.spanInputs") != NULL);
  sync_free(&r);
  cJSON_free(body);
  tu_done();
}

/* A write callback that accepts the first 40 bytes, then a short count. */
static size_t short_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  th_buf *b = ud;
  size_t n = size * nmemb;
  if (b->len >= 40) return 0;
  size_t take = b->len + n > 40 ? 40 - b->len : n;
  th_buf_add(b, ptr, take);
  return take;
}

TEST(easy_short_write_propagates) {
  NEED_FAKE();
  tu_init();
  CURL *h = ct_easy();
  char *body = ct_body("short", 1, 0);
  th_buf got = {0};
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, body, MLT_NTS, NULL, &call), MLT_OK);
  mlt_curl_call_set_write_fn(call, short_write, &got);
  CHECK_EQ_INT(mlt_curl_perform(call), CURLE_WRITE_ERROR);
  CHECK_EQ_INT(mlt_curl_call_status(call), MLT_EIO);
  CHECK_EQ_INT(got.len, 40);
  /* the handle has the application's write callback back */
  CHECK(mlt_curl_call_from_easy(h) == NULL);
  mlt_curl_call_free(call);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_attr(sp, "http.response.body.size"), "40");
  /* reuse the handle without tracing: nothing of the call remains on it */
  th_buf again = {0};
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, th_buf_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &again);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  CHECK_EQ_INT(curl_easy_perform(h), CURLE_OK);
  CHECK(again.len > 0);
  curl_easy_cleanup(h);
  free(got.p);
  free(again.p);
  cJSON_free(body);
  tu_done();
}

typedef struct delta_log {
  th_buf text;
  int calls, with_text, stop_after;
  mlt_curl_call *call;
} delta_log;

static int on_delta(mlt_curl_call *call, const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  delta_log *d = ud;
  CHECK(call == d->call || d->call == NULL);
  CHECK(len > 0 && json[0] == '{');
  CHECK(delta[dlen] == '\0');
  d->calls++;
  if (dlen) d->with_text++;
  th_buf_add(&d->text, delta, dlen);
  CHECK(mlt_span_is_none(mlt_current_span())); /* nothing thread-local */
  return d->stop_after && d->calls >= d->stop_after;
}

TEST(easy_delta_hook_relays_tokens) {
  NEED_FAKE();
  tu_init();
  CURL *h = ct_easy();
  struct curl_slist *hdr = one_header("X-Fake-Tokens: 50");
  char *body = ct_body("count", 1, 1);
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, body, MLT_NTS, hdr, &call), MLT_OK);
  curl_slist_free_all(hdr);
  delta_log d = {0};
  d.call = call;
  mlt_curl_call_set_delta_fn(call, on_delta, &d);
  CHECK(mlt_curl_call_is_streaming(call));
  CHECK_EQ_INT(mlt_curl_perform(call), CURLE_OK);
  CHECK_EQ_INT(mlt_curl_call_status(call), MLT_OK);
  size_t len;
  const char *content = mlt_curl_call_content(call, &len);
  CHECK_EQ_INT(d.text.len, len);
  CHECK_EQ_STR(d.text.p, content);
  CHECK_EQ_INT(d.with_text, 50);
  CHECK_EQ_INT(d.calls, 53); /* role, 50 tokens, finish, usage */
  CHECK_EQ_INT(mlt_curl_call_chunk_count(call), 53);
  CHECK_EQ_STR(mlt_curl_call_finish_reason(call), "stop");
  CHECK_EQ_STR(mlt_curl_call_model(call), "test-model");
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  free(d.text.p);
  cJSON_free(body);
  tu_done();
}

TEST(easy_delta_hook_abort_is_cancel) {
  NEED_FAKE();
  tu_init();
  CURL *h = ct_easy();
  struct curl_slist *hdr = one_header("X-Fake-Tokens: 50");
  char *body = ct_body("abort", 1, 0);
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, body, MLT_NTS, hdr, &call), MLT_OK);
  curl_slist_free_all(hdr);
  delta_log d = {0};
  d.stop_after = 3;
  mlt_curl_call_set_delta_fn(call, on_delta, &d);
  CHECK_EQ_INT(mlt_curl_perform(call), CURLE_WRITE_ERROR);
  CHECK_EQ_INT(mlt_curl_call_status(call), MLT_CURL_CANCELLED);
  CHECK_EQ_INT(d.calls, 3); /* none after the non-zero return */
  CHECK_EQ_STR(mlt_curl_call_error(call), "CancelledError: aborted by the delta callback");
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  CHECK(tu_attr(sp, "mlflow.spanOutputs") != NULL);
  free(d.text.p);
  cJSON_free(body);
  tu_done();
}

TEST(easy_max_chunk_events_and_body_limit) {
  NEED_FAKE();
  mlt_options *mo = tu_options();
  mlt_options_set_max_value_bytes(mo, 4096);
  tu_start(mo);
  mlt_curl_options *o = NULL;
  REQUIRE_EQ_INT(mlt_curl_options_new(&o), MLT_OK);
  CHECK_EQ_INT(mlt_curl_options_set_max_chunk_events(o, 10), MLT_OK);
  CHECK_EQ_INT(mlt_curl_options_set_max_body_bytes(o, 100), MLT_OK);
  CHECK_EQ_INT(mlt_curl_options_set_max_body_bytes(o, ((size_t)1 << 30) + 1), MLT_EINVAL);
  struct curl_slist *hdr = one_header("X-Fake-Tokens: 2000");
  char *body = ct_body("long", 1, 0);
  sync_result r = run_call(NULL, o, body, hdr, NULL);
  CHECK_EQ_INT(r.status, MLT_OK);
  CHECK_EQ_INT(strlen(r.content), 8000);
  /* non-streamed: only max_body_bytes kept, marked */
  char *body2 = ct_body("long", 0, 0);
  sync_result r2 = run_call(NULL, o, body2, hdr, NULL);
  curl_slist_free_all(hdr);
  mlt_curl_options_free(o);
  CHECK_EQ_INT(r2.status, MLT_OK);
  CHECK(r2.bytes.len > 8000);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *s1 = cJSON_GetArrayItem(tu_spans(tu_trace(0)), 0), *s2 = cJSON_GetArrayItem(tu_spans(tu_trace(1)), 0);
  if (tu_attr(s1, "stream") == NULL) {
    cJSON *x = s1;
    s1 = s2;
    s2 = x;
  }
  CHECK_EQ_INT(tu_nevents(s1, "mlflow.chunk.item."), 10);
  CHECK_EQ_STR(tu_attr(s1, "mltrace.sse.chunks"), "2002");
  /* the 8 KB answer is cut by the core's max_value_bytes */
  CHECK(strstr(tu_attr(s1, "mlflow.spanOutputs"), "truncated") != NULL);
  const char *out2 = tu_attr(s2, "mlflow.spanOutputs");
  CHECK(strstr(out2, "[truncated by mltrace_curl: ") != NULL);
  CHECK(strlen(out2) < 400);
  sync_free(&r);
  sync_free(&r2);
  cJSON_free(body);
  cJSON_free(body2);
  tu_done();
}

/* ---- the chunk callback: choices and tool calls kept apart -------------- */

typedef struct chunk_log {
  th_buf text[4];         /* content per choice index */
  th_buf args[2][4];      /* tool-call arguments per (choice 0..1, call 0..3) */
  char ids[4][32], names[4][32];
  int chunks, usage_chunks, empty_chunks, finish[4];
  th_buf events;          /* event types, one per line */
  int api;
  th_buf delta0;          /* what the old delta callback got */
} chunk_log;

static int on_chunk_cb(mlt_curl_call *call, const mlt_curl_chunk *ch, void *ud) {
  chunk_log *l = ud;
  (void)call;
  CHECK(ch->data_len > 0 && ch->data[0] == '{');
  CHECK(ch->event[ch->event_len] == '\0');
  l->chunks++;
  l->api = ch->api;
  th_buf_add(&l->events, ch->event, ch->event_len);
  th_buf_add(&l->events, "\n", 1);
  if (ch->has_usage) l->usage_chunks++;
  if (!ch->n_choices) l->empty_chunks++;
  for (size_t i = 0; i < ch->n_choices; i++) {
    const mlt_curl_choice_delta *d = &ch->choices[i];
    REQUIRE(d->index >= 0 && d->index < 4);
    th_buf_add(&l->text[d->index], d->content, d->content_len);
    if (*d->finish_reason) l->finish[d->index]++;
    for (size_t k = 0; k < d->n_tool_calls; k++) {
      const mlt_curl_tool_delta *t = &d->tool_calls[k];
      REQUIRE(t->index >= 0 && t->index < 4 && d->index < 2);
      th_buf_add(&l->args[d->index][t->index], t->arguments, t->arguments_len);
      if (*t->id) snprintf(l->ids[t->index], sizeof l->ids[0], "%s", t->id);
      if (*t->name) snprintf(l->names[t->index], sizeof l->names[0], "%s", t->name);
    }
  }
  return 0;
}

static int on_delta0(mlt_curl_call *call, const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  chunk_log *l = ud;
  (void)call, (void)json, (void)len;
  th_buf_add(&l->delta0, delta, dlen);
  return 0;
}

static void chunk_log_free(chunk_log *l) {
  for (int i = 0; i < 4; i++) {
    free(l->text[i].p);
    free(l->args[0][i].p);
    free(l->args[1][i].p);
  }
  free(l->events.p);
  free(l->delta0.p);
}

/* One streamed call to @p path with both callbacks logging. */
static int logged_call(const char *path, const char *body, const char *header, chunk_log *l, char **result) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", th_fake_port, path);
  CURL *h = ct_easy();
  curl_easy_setopt(h, CURLOPT_URL, url);
  struct curl_slist *hdr = header ? curl_slist_append(NULL, header) : NULL;
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, body, MLT_NTS, hdr, &call), MLT_OK);
  curl_slist_free_all(hdr);
  CHECK_EQ_INT(mlt_curl_call_set_chunk_fn(call, on_chunk_cb, l), MLT_OK);
  CHECK_EQ_INT(mlt_curl_call_set_delta_fn(call, on_delta0, l), MLT_OK);
  mlt_curl_perform(call);
  int status = mlt_curl_call_status(call);
  if (result) *result = dup_or_null(mlt_curl_call_result_json(call, NULL));
  CHECK_EQ_INT(mlt_curl_call_set_chunk_fn(call, NULL, NULL), MLT_EENDED);
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  return status;
}

TEST(chunk_callback_keeps_choices_apart) {
  NEED_FAKE();
  tu_init();
  const char *body = "{\"model\":\"m\",\"stream\":true,\"n\":2,\"stream_options\":{\"include_usage\":true},"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"h\xC3\xA9 w\xC3\xB6\"}]}";
  chunk_log l = {0};
  CHECK_EQ_INT(logged_call("/v1/chat/completions", body, NULL, &l, NULL), MLT_OK);
  CHECK_EQ_INT(l.api, MLT_CURL_API_CHAT);
  CHECK_EQ_STR(l.text[0].p, "Echo: h\xC3\xA9 w\xC3\xB6 \xE2\x9C\x93");
  CHECK_EQ_STR(l.text[1].p, "Echo #2: h\xC3\xA9 w\xC3\xB6 \xE2\x9C\x93");
  CHECK_EQ_INT(l.finish[0], 1);
  CHECK_EQ_INT(l.finish[1], 1);
  CHECK_EQ_INT(l.usage_chunks, 1);
  CHECK_EQ_INT(l.empty_chunks, 1); /* the usage chunk has no choices */
  CHECK(l.events.p && strstr(l.events.p, "message\n") == l.events.p && !strstr(l.events.p, "response."));
  /* The old delta callback: choice 0 only, no longer interleaved. */
  CHECK_EQ_STR(l.delta0.p, l.text[0].p);
  /* The span: one assembled choice per index. */
  cJSON *sp = only_span(NULL);
  cJSON *choices = cJSON_GetObjectItem(tu_attr_json(sp, "mlflow.spanOutputs"), "choices");
  REQUIRE_EQ_INT(cJSON_GetArraySize(choices), 2);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(cJSON_GetArrayItem(choices, 1), "message"), "content"), l.text[1].p);
  CHECK_EQ_INT(tu_nevents(sp, "mlflow.chunk.item."), l.chunks);
  chunk_log_free(&l);
  tu_done();
}

TEST(chunk_callback_reports_tool_call_deltas) {
  NEED_FAKE();
  tu_init();
  const char *body =
      "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],"
      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
      "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]}";
  chunk_log l = {0};
  CHECK_EQ_INT(logged_call("/v1/chat/completions", body, NULL, &l, NULL), MLT_OK);
  CHECK_EQ_STR(l.ids[0], "call_0");
  CHECK_EQ_STR(l.names[0], "get_weather");
  CHECK_EQ_STR(l.args[0][0].p, "{\"city\": \"Paris\"}");
  CHECK_EQ_STR(l.ids[1], "call_1");
  CHECK_EQ_STR(l.names[1], "get_time");
  CHECK_EQ_STR(l.args[0][1].p, "{\"city\": \"London\"}");
  CHECK(l.text[0].p == NULL || !*l.text[0].p);
  CHECK_EQ_INT(l.finish[0], 1);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_OK");
  chunk_log_free(&l);
  tu_done();
}

/* ---- the Responses API ------------------------------------------------- */

TEST(responses_stream_recorded_as_mlflow_autolog_does) {
  NEED_FAKE();
  tu_init();
  const char *body = "{\"model\":\"m\",\"stream\":true,\"input\":\"h\xC3\xA9llo\","
                     "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"parameters\":{}},"
                     "{\"type\":\"web_search_preview\"}]}";
  chunk_log l = {0};
  char *result = NULL;
  CHECK_EQ_INT(logged_call("/v1/responses", body, NULL, &l, &result), MLT_OK); /* no [DONE] needed */
  CHECK_EQ_INT(l.api, MLT_CURL_API_RESPONSES);
  CHECK_EQ_STR(l.text[0].p, "Echo: h\xC3\xA9llo \xE2\x9C\x93");
  CHECK_EQ_STR(l.delta0.p, l.text[0].p);
  CHECK(l.events.p && strncmp(l.events.p, "response.created\n", 17) == 0);
  CHECK(l.events.p && strstr(l.events.p, "response.completed\n") != NULL);
  CHECK_EQ_INT(l.usage_chunks, 1);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_str(sp, "name"), "responses");
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_OK");
  /* Outputs: the final Response object (what response.completed carried). */
  cJSON *out = tu_attr_json(sp, "mlflow.spanOutputs");
  CHECK_EQ_STR(tu_str(out, "object"), "response");
  CHECK_EQ_STR(tu_str(out, "status"), "completed");
  cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(out, "output"), 0), "content"), 0);
  CHECK_EQ_STR(tu_str(part, "text"), l.text[0].p);
  cJSON *res = result ? cJSON_Parse(result) : NULL;
  CHECK(cJSON_Compare(res, out, 1));
  cJSON_Delete(res);
  /* Usage as MLflow records a Response's (cached tokens included). */
  CHECK_EQ_STR(tu_attr(sp, "mlflow.chat.tokenUsage"),
               "{\"input_tokens\": 1, \"output_tokens\": 5, \"total_tokens\": 6, \"cache_read_input_tokens\": 0}");
  /* Tools in the Chat Completions form MLflow converts them to. */
  cJSON *tools = tu_attr_json(sp, "mlflow.chat.tools");
  REQUIRE_EQ_INT(cJSON_GetArraySize(tools), 2);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(cJSON_GetArrayItem(tools, 0), "function"), "name"), "get_weather");
  CHECK(cJSON_IsObject(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(tools, 0), "function"), "parameters")));
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(cJSON_GetArrayItem(tools, 1), "function"), "name"), "web_search_preview");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.llm.model"), "\"m\"");
  CHECK_EQ_INT(tu_nevents(sp, "mlflow.chunk.item."), l.chunks);
  free(result);
  chunk_log_free(&l);
  tu_done();
}

TEST(responses_function_calls_cuts_and_errors) {
  NEED_FAKE();
  tu_init();
  /* Function calls: reported by output_index, with call id and name. */
  chunk_log l = {0};
  const char *tools = "{\"model\":\"m\",\"stream\":true,\"input\":\"weather?\","
                      "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\"}]}";
  CHECK_EQ_INT(logged_call("/v1/responses", tools, NULL, &l, NULL), MLT_OK);
  CHECK_EQ_STR(l.ids[0], "call_0");
  CHECK_EQ_STR(l.ids[1], "call_1");
  CHECK_EQ_STR(l.names[1], "get_weather");
  CHECK_EQ_STR(l.args[0][0].p, "{\"city\": \"Paris\"}");
  CHECK_EQ_STR(l.args[0][1].p, "{\"city\": \"London\"}");
  chunk_log_free(&l);
  /* Cut mid-stream: ERROR, the Response assembled so far as outputs. */
  memset(&l, 0, sizeof l);
  const char *text = "{\"model\":\"m\",\"stream\":true,\"input\":\"a story\"}";
  CHECK_EQ_INT(logged_call("/v1/responses", text, "X-Fake-Disconnect-After: 6", &l, NULL), MLT_EIO);
  chunk_log_free(&l);
  /* An error event: APIError with the upstream's message. */
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(logged_call("/v1/responses", text, "X-Fake-Error-After: 6", &l, NULL), MLT_EHTTP);
  chunk_log_free(&l);
  /* Not streamed: the Response as outputs, its text as the content. */
  sync_result r = {0};
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/responses", th_fake_port);
  CURL *h = ct_easy();
  curl_easy_setopt(h, CURLOPT_URL, url);
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, "{\"model\":\"m\",\"input\":\"hi\"}", MLT_NTS, NULL, &call), MLT_OK);
  mlt_curl_call_set_write_fn(call, th_buf_write, &r.bytes);
  CHECK_EQ_INT(mlt_curl_perform(call), CURLE_OK);
  CHECK_EQ_STR(mlt_curl_call_content(call, NULL), "Echo: hi \xE2\x9C\x93");
  CHECK_EQ_STR(mlt_curl_call_finish_reason(call), "completed");
  CHECK_EQ_STR(mlt_curl_call_usage_json(call),
               "{\"input_tokens\": 0, \"output_tokens\": 3, \"total_tokens\": 3, \"cache_read_input_tokens\": 0}");
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  sync_free(&r);

  REQUIRE_EQ_INT(tu_flush_count(), 4);
  for (int i = 0; i < 4; i++) {
    cJSON *sp = cJSON_GetArrayItem(tu_spans(tu_trace(i)), 0);
    CHECK_EQ_STR(tu_str(sp, "name"), "responses");
    cJSON *out = tu_attr_json(sp, "mlflow.spanOutputs");
    const char *msg = tu_str(cJSON_GetObjectItem(sp, "status"), "message");
    if (i == 1) {
      CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
      CHECK(msg && strncmp(msg, "CurlError", 9) == 0);
      CHECK_EQ_STR(tu_str(out, "status"), "in_progress");
      cJSON *part = cJSON_GetArrayItem(
          cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(out, "output"), 0), "content"), 0);
      CHECK_EQ_STR(tu_str(part, "text"), "Echo: a "); /* the partial text */
    } else if (i == 2) {
      CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
      CHECK(msg && strstr(msg, "APIError: ") && strstr(msg, "injected by X-Fake-Error-After"));
    } else {
      CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_OK");
      CHECK_EQ_STR(tu_str(out, "status"), "completed");
    }
  }
  tu_done();
}

/* ---- raw fixtures: malformed events, error events, truncation ---------- */

static void run_fixture(const char *name, sync_result *r, int *port_out) {
  size_t len;
  char *fx = th_fixture("sse", name, "", &len);
  th_raw_server srv;
  th_raw_server_start(&srv, "200 OK", "text/event-stream", fx, len, 1);
  free(fx);
  CURL *h = curl_easy_init();
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", srv.port);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  char *body = ct_body("fixture", 1, 0);
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, body, MLT_NTS, NULL, &call), MLT_OK);
  mlt_curl_call_set_write_fn(call, th_buf_write, &r->bytes);
  r->cc = mlt_curl_perform(call);
  r->status = mlt_curl_call_status(call);
  r->error = dup_or_null(mlt_curl_call_error(call));
  r->content = dup_or_null(mlt_curl_call_content(call, NULL));
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  th_raw_server_stop(&srv);
  cJSON_free(body);
  if (port_out) *port_out = srv.port;
}

TEST(fixture_malformed_event_is_event_and_skipped) {
  tu_init();
  sync_result r = {0};
  run_fixture("malformed_middle.sse", &r, NULL);
  CHECK_EQ_INT(r.cc, CURLE_OK);
  CHECK_EQ_INT(r.status, MLT_OK);
  CHECK_EQ_STR(r.content, "One, two, three.");
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_OK");
  cJSON *ev = tu_event(sp, "mltrace.sse.malformed");
  REQUIRE(ev != NULL);
  cJSON *a = cJSON_GetObjectItem(ev, "attributes");
  CHECK_EQ_STR(tu_str(a, "mltrace.sse.reason"), "invalid JSON");
  CHECK(strncmp(tu_str(a, "mltrace.sse.data"), "{\"id\":", 6) == 0);
  CHECK_EQ_STR(tu_attr(sp, "mltrace.sse.malformed"), "1");
  CHECK_EQ_INT(tu_nevents(sp, "mlflow.chunk.item."), 8);
  sync_free(&r);
  tu_done();
}

TEST(fixture_error_event_is_error) {
  tu_init();
  sync_result r = {0};
  run_fixture("error_chunk.sse", &r, NULL);
  CHECK_EQ_INT(r.cc, CURLE_OK);
  CHECK_EQ_INT(r.status, MLT_EHTTP);
  CHECK_EQ_STR(r.error, "APIError: The server had an error while processing your request. Sorry about that!");
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  cJSON *out = tu_attr_json(sp, "mlflow.spanOutputs");
  cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(out, "choices"), 0), "message");
  CHECK_EQ_STR(tu_str(msg, "content"), "Let me think");
  sync_free(&r);
  tu_done();
}

TEST(fixture_truncated_stream_is_error) {
  tu_init();
  sync_result r = {0};
  run_fixture("truncated.sse", &r, NULL);
  CHECK_EQ_INT(r.cc, CURLE_OK); /* close-delimited: curl sees a clean end */
  CHECK_EQ_INT(r.status, MLT_EPARSE);
  CHECK_EQ_STR(r.error, "StreamError: stream ended without [DONE]");
  CHECK_EQ_STR(r.content, "Once upon a time");
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_ERROR");
  sync_free(&r);
  tu_done();
}

TEST(fixture_every_file_never_crashes) {
  tu_init();
  static const char *const names[] = {"bom_cr_only.sse",   "content_usage.sse",       "crlf_keepalive.sse",
                                      "error_chunk.sse",   "event_id_fields.sse",     "malformed_middle.sse",
                                      "multiline_data.sse", "n2_choices.sse",         "parallel_tool_calls.sse",
                                      "plain_content.sse", "truncated.sse"};
  size_t n = sizeof names / sizeof *names;
  for (size_t i = 0; i < n; i++) {
    sync_result r = {0};
    run_fixture(names[i], &r, NULL);
    CHECK_EQ_INT(r.cc, CURLE_OK);
    sync_free(&r);
  }
  CHECK_EQ_INT(tu_flush_count(), n);
  tu_done();
}

TEST(fixture_usage_counted_once_under_parent) {
  tu_init();
  /* content_usage.sse carries usage; the root has none: the trace total is
   * the LLM span's, counted once */
  mlt_span root = mlt_span_start("agent", MLT_SPAN_AGENT);
  mlt_context *ctx = mlt_context_capture(root);
  size_t len;
  char *fx = th_fixture("sse", "content_usage.sse", "", &len);
  th_raw_server srv;
  th_raw_server_start(&srv, "200 OK", "text/event-stream", fx, len, 1);
  free(fx);
  CURL *h = curl_easy_init();
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/x", srv.port);
  curl_easy_setopt(h, CURLOPT_URL, url);
  char *body = ct_body("usage", 1, 1);
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, ctx, NULL, body, MLT_NTS, NULL, &call), MLT_OK);
  CHECK_EQ_INT(mlt_curl_perform(call), CURLE_OK);
  const char *usage = mlt_curl_call_usage_json(call);
  REQUIRE(usage != NULL);
  char *want = strdup(usage);
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  th_raw_server_stop(&srv);
  mlt_context_release(ctx);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_meta(t, "mlflow.trace.tokenUsage"), want);
  CHECK_EQ_STR(tu_attr(tu_span(t, "chat.completions"), "mlflow.chat.tokenUsage"), want);
  tap_diag("usage %s", want);
  free(want);
  cJSON_free(body);
  tu_done();
}

/* ---- tracing off -------------------------------------------------------- */

TEST(works_without_tracing) {
  NEED_FAKE();
  /* not initialized: no span, same behaviour */
  char *body = ct_body("untraced", 1, 1);
  struct curl_slist *hdr = NULL;
  sent_headers.len = 0;
  sync_result r = run_call(NULL, NULL, body, hdr, tweak_debug);
  CHECK_EQ_INT(r.status, MLT_OK);
  CHECK_EQ_STR(r.content, "Echo: untraced \xE2\x9C\x93");
  CHECK(r.usage != NULL);
  CHECK(sent_headers.p && strstr(sent_headers.p, "traceparent") == NULL);
  free(sent_headers.p);
  sent_headers.p = NULL;
  sync_free(&r);
  /* initialized but disabled */
  tu_init();
  mlt_set_enabled(0);
  CURL *h = ct_easy();
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, body, MLT_NTS, NULL, &call), MLT_OK);
  CHECK(mlt_span_is_none(mlt_curl_call_span(call)));
  CHECK(mlt_curl_call_context(call) == NULL);
  CHECK_EQ_INT(mlt_curl_perform(call), CURLE_OK);
  CHECK_EQ_STR(mlt_curl_call_content(call, NULL), "Echo: untraced \xE2\x9C\x93");
  mlt_curl_call_free(call);
  curl_easy_cleanup(h);
  CHECK_EQ_INT(tu_flush_count(), 0);
  cJSON_free(body);
  tu_done();
}

TEST(argument_checks_and_free_before_perform) {
  tu_init();
  mlt_curl_call *call = (mlt_curl_call *)1;
  CHECK_EQ_INT(mlt_curl_call_new(NULL, NULL, NULL, "{}", MLT_NTS, NULL, &call), MLT_EINVAL);
  CHECK(call == NULL);
  CURL *h = curl_easy_init();
  CHECK_EQ_INT(mlt_curl_call_new(h, NULL, NULL, "{}", MLT_NTS, NULL, NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_perform(NULL), CURLE_BAD_FUNCTION_ARGUMENT);
  CHECK_EQ_INT(mlt_curl_call_done(NULL, CURLE_OK), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_call_set_write_fn(NULL, NULL, NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_loop_add(NULL, NULL, NULL, NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_loop_cancel(NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_loop_new(NULL, NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_options_new(NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_options_set_stream(NULL, MLT_CURL_STREAM_ON), MLT_EINVAL);
  mlt_curl_options *o = NULL;
  REQUIRE_EQ_INT(mlt_curl_options_new(&o), MLT_OK);
  CHECK_EQ_INT(mlt_curl_options_set_stream(o, (mlt_curl_stream_mode)7), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_options_set_span_type(o, (mlt_span_type)99), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_options_set_span_name(o, NULL), MLT_OK);
  mlt_curl_options_free(o);
  mlt_curl_options_free(NULL);
  mlt_curl_call_free(NULL);
  mlt_curl_loop_free(NULL);
  CHECK(mlt_curl_call_from_easy(NULL) == NULL);
  CHECK_EQ_STR(mlt_curl_call_content(NULL, NULL), "");
  CHECK_EQ_INT(mlt_curl_call_status(NULL), MLT_EINVAL);
  /* the application's CURLOPT_PRIVATE comes back */
  int mine = 0;
  curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)&mine);
  /* not JSON: recorded as a string; freed before perform: cancelled */
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, "not json", MLT_NTS, NULL, &call), MLT_OK);
  CHECK(mlt_curl_call_from_easy(h) == call);
  CHECK(!mlt_curl_call_is_streaming(call));
  mlt_curl_call_free(call);
  char *p = NULL;
  curl_easy_getinfo(h, CURLINFO_PRIVATE, &p);
  CHECK(p == (char *)&mine);
  curl_easy_cleanup(h);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanInputs"), "\"not json\"");
  CHECK_EQ_STR(tu_status_msg(sp), "CancelledError: call freed before the transfer completed");
  CHECK(tu_attr(sp, "url.full") == NULL);
  tu_done();
}

/* ---- the application's own multi handle -------------------------------- */

TEST(own_multi_handle) {
  NEED_FAKE();
  tu_init();
  CURLM *m = curl_multi_init();
  enum { N = 4 };
  CURL *h[N];
  th_buf got[N];
  char *bodies[N];
  memset(got, 0, sizeof got);
  for (int i = 0; i < N; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "multi-%d", i);
    bodies[i] = ct_body(msg, 1, 1);
    h[i] = ct_easy();
    mlt_curl_call *call = NULL;
    REQUIRE_EQ_INT(mlt_curl_call_new(h[i], NULL, NULL, bodies[i], MLT_NTS, NULL, &call), MLT_OK);
    mlt_curl_call_set_write_fn(call, th_buf_write, &got[i]);
    curl_multi_add_handle(m, h[i]);
  }
  int running = 1, finished = 0;
  while (finished < N) {
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *e = msg->easy_handle;
      mlt_curl_call *call = mlt_curl_call_from_easy(e);
      REQUIRE(call != NULL);
      CHECK_EQ_INT(mlt_curl_call_done(call, msg->data.result), MLT_OK);
      CHECK_EQ_INT(mlt_curl_call_done(call, CURLE_OK), MLT_EENDED);
      curl_multi_remove_handle(m, e);
      mlt_curl_call_free(call);
      finished++;
    }
    if (finished < N) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  for (int i = 0; i < N; i++) {
    curl_easy_cleanup(h[i]);
    cJSON_free(bodies[i]);
  }
  curl_multi_cleanup(m);
  REQUIRE_EQ_INT(tu_flush_count(), N);
  for (int i = 0; i < N; i++) {
    char want[64];
    snprintf(want, sizeof want, "Echo: multi-%d \xE2\x9C\x93", i);
    cJSON *t = NULL;
    for (int k = 0; k < N; k++) {
      cJSON *x = tu_trace((size_t)k);
      if (strcmp(tu_info(x, "response_preview"), want) == 0) t = x;
    }
    REQUIRE(t != NULL);
    char *assembled = ct_assemble(got[i].p, got[i].len);
    CHECK_EQ_STR(tu_attr(cJSON_GetArrayItem(tu_spans(t), 0), "mlflow.spanOutputs"), assembled);
    free(assembled);
    free(got[i].p);
  }
  tu_done();
}

/* ---- the libevent driver ------------------------------------------------ */

typedef struct xfer {
  int index;
  CURL *easy;
  mlt_curl_call *call;
  char *body;
  th_buf bytes;
  th_buf deltas;
  int done_calls, status;
  mlt_span root;
  mlt_context *parent;
  char parent_trace[MLT_TRACE_ID_SIZE];
  int context_ok;
  char *result;
  char *content;
  struct lctx *lc;
} xfer;

typedef struct lctx {
  struct event_base *base;
  mlt_curl_loop *loop;
  int remaining;
  int cancel_index;   /* cancel this transfer from its delta hook (-1: none) */
  int cancel_other;   /* from that hook, cancel this other one too (-1) */
  int chain;          /* transfers to start from done callbacks */
  xfer *x;
  int nx;
} lctx;

static int loop_delta(mlt_curl_call *call, const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  (void)json, (void)len;
  xfer *x = ud;
  CHECK(x->call == call);
  th_buf_add(&x->deltas, delta, dlen);
  CHECK(mlt_span_is_none(mlt_current_span()));
  lctx *lc = x->lc;
  if (lc->cancel_index == x->index && x->deltas.len > 0) {
    CHECK_EQ_INT(mlt_curl_loop_cancel(call), MLT_OK);
    CHECK_EQ_INT(mlt_curl_loop_cancel(call), MLT_EENDED);
    if (lc->cancel_other >= 0) CHECK_EQ_INT(mlt_curl_loop_cancel(lc->x[lc->cancel_other].call), MLT_OK);
    lc->cancel_index = -1;
  }
  return 0;
}

static void start_xfer(lctx *lc, xfer *x, const char *extra_header);

static void loop_done(mlt_curl_call *call, int status, void *ud) {
  xfer *x = ud;
  CHECK(x->call == call);
  x->done_calls++;
  x->status = status;
  x->result = dup_or_null(mlt_curl_call_result_json(call, NULL));
  x->content = dup_or_null(mlt_curl_call_content(call, NULL));
  CHECK(mlt_curl_call_is_done(call));
  /* the parent context is attached during the callback */
  mlt_context *cur = mlt_context_current();
  if (x->parent) {
    char tid[MLT_TRACE_ID_SIZE] = "";
    mlt_context_get_trace_id(cur, tid, sizeof tid);
    x->context_ok = strcmp(tid, x->parent_trace) == 0;
  } else {
    x->context_ok = cur == NULL;
  }
  mlt_context_release(cur);
  /* the handle is the application's again: clean it up before freeing */
  CHECK(mlt_curl_call_from_easy(x->easy) == NULL);
  curl_easy_cleanup(x->easy);
  x->easy = NULL;
  mlt_curl_call_free(call);
  mlt_curl_call_free(call); /* a second free inside the callback is harmless */
  lctx *lc = x->lc;
  if (lc->chain > 0 && x->index + 1 < lc->nx) {
    lc->chain--;
    start_xfer(lc, &lc->x[x->index + 1], NULL);
  }
  if (--lc->remaining == 0) event_base_loopexit(lc->base, NULL);
}

static void start_xfer(lctx *lc, xfer *x, const char *extra_header) {
  char msg[32];
  snprintf(msg, sizeof msg, "msg-%d", x->index);
  x->lc = lc;
  x->body = ct_body(msg, 1, 1);
  x->easy = ct_easy();
  struct curl_slist *hdr = NULL;
  if (!extra_header || strncmp(extra_header, "X-Fake-Delay-Ms", 15) != 0)
    hdr = curl_slist_append(hdr, "X-Fake-Delay-Ms: 2");
  if (extra_header) hdr = curl_slist_append(hdr, extra_header);
  REQUIRE_EQ_INT(mlt_curl_call_new(x->easy, x->parent, NULL, x->body, MLT_NTS, hdr, &x->call), MLT_OK);
  curl_slist_free_all(hdr);
  mlt_curl_call_set_write_fn(x->call, th_buf_write, &x->bytes);
  mlt_curl_call_set_delta_fn(x->call, loop_delta, x);
  REQUIRE_EQ_INT(mlt_curl_loop_add(lc->loop, x->call, loop_done, x), MLT_OK);
  CHECK_EQ_INT(mlt_curl_loop_add(lc->loop, x->call, loop_done, x), MLT_EINVAL);
  CHECK_EQ_INT(mlt_curl_perform(x->call), CURLE_BAD_FUNCTION_ARGUMENT);
}

static void safety_timeout(evutil_socket_t fd, short kind, void *arg) {
  (void)fd, (void)kind;
  tap_diag("loop safety timeout");
  event_base_loopbreak(arg);
}

static void lctx_init(lctx *lc, int n) {
  memset(lc, 0, sizeof *lc);
  lc->base = event_base_new();
  REQUIRE(lc->base != NULL);
  REQUIRE_EQ_INT(mlt_curl_loop_new(lc->base, &lc->loop), MLT_OK);
  lc->x = calloc((size_t)n, sizeof *lc->x);
  lc->nx = n;
  lc->cancel_index = lc->cancel_other = -1;
  for (int i = 0; i < n; i++) lc->x[i].index = i;
}

static void lctx_run(lctx *lc, int seconds) {
  struct event *t = evtimer_new(lc->base, safety_timeout, lc->base);
  struct timeval tv = {seconds, 0};
  evtimer_add(t, &tv);
  event_base_dispatch(lc->base);
  event_free(t);
}

static void lctx_free(lctx *lc) {
  mlt_curl_loop_free(lc->loop);
  event_base_free(lc->base);
  for (int i = 0; i < lc->nx; i++) {
    xfer *x = &lc->x[i];
    if (x->easy) curl_easy_cleanup(x->easy);
    cJSON_free(x->body);
    free(x->bytes.p);
    free(x->deltas.p);
    free(x->result);
    free(x->content);
    mlt_context_release(x->parent);
  }
  free(lc->x);
}

TEST(loop_fifty_concurrent_streams) {
  NEED_FAKE();
  tu_init();
  enum { N = 50 };
  lctx lc;
  lctx_init(&lc, N);
  lc.remaining = N;
  for (int i = 0; i < N; i++) start_xfer(&lc, &lc.x[i], NULL);
  CHECK_EQ_INT(mlt_curl_loop_count(lc.loop), N);
  CHECK(mlt_curl_loop_multi(lc.loop) != NULL);
  lctx_run(&lc, 60);
  CHECK_EQ_INT(lc.remaining, 0);
  CHECK_EQ_INT(mlt_curl_loop_count(lc.loop), 0);
  REQUIRE_EQ_INT(tu_flush_count(), N);
  int matched = 0;
  for (size_t k = 0; k < N; k++) {
    cJSON *t = tu_trace(k);
    const char *req = tu_info(t, "request_preview");
    REQUIRE(req != NULL && strncmp(req, "msg-", 4) == 0);
    int i = atoi(req + 4);
    REQUIRE(i >= 0 && i < N);
    xfer *x = &lc.x[i];
    CHECK_EQ_INT(x->done_calls, 1);
    CHECK_EQ_INT(x->status, MLT_OK);
    CHECK(x->context_ok);
    char want[64];
    snprintf(want, sizeof want, "Echo: msg-%d \xE2\x9C\x93", i);
    CHECK_EQ_STR(tu_info(t, "response_preview"), want);
    CHECK_EQ_STR(x->content, want);
    CHECK_EQ_STR(x->deltas.p, want);
    cJSON *sp = cJSON_GetArrayItem(tu_spans(t), 0);
    /* byte-identical: the recorded output is what the write callback got */
    char *assembled = ct_assemble(x->bytes.p, x->bytes.len);
    if (assembled && x->result && strcmp(tu_attr(sp, "mlflow.spanOutputs"), assembled) == 0 &&
        strcmp(x->result, assembled) == 0)
      matched++;
    free(assembled);
    CHECK_EQ_STR(tu_status_code(sp), "STATUS_CODE_OK");
    CHECK_EQ_STR(tu_meta(t, "mlflow.trace.tokenUsage"), tu_attr(sp, "mlflow.chat.tokenUsage"));
  }
  CHECK_EQ_INT(matched, N);
  lctx_free(&lc);
  tu_done();
}

TEST(loop_parent_contexts_and_chained_adds) {
  NEED_FAKE();
  tu_init();
  enum { N = 3 };
  lctx lc;
  lctx_init(&lc, N);
  lc.remaining = N;
  lc.chain = N - 1; /* each done callback starts the next transfer */
  mlt_span roots[N];
  for (int i = 0; i < N; i++) {
    char name[16];
    snprintf(name, sizeof name, "req-%d", i);
    roots[i] = mlt_span_start_in(NULL, name, MLT_SPAN_CHAIN);
    lc.x[i].parent = mlt_context_capture(roots[i]);
    mlt_context_get_trace_id(lc.x[i].parent, lc.x[i].parent_trace, sizeof lc.x[i].parent_trace);
  }
  start_xfer(&lc, &lc.x[0], NULL);
  lctx_run(&lc, 30);
  CHECK_EQ_INT(lc.remaining, 0);
  for (int i = 0; i < N; i++) {
    CHECK_EQ_INT(lc.x[i].done_calls, 1);
    CHECK(lc.x[i].context_ok);
    mlt_span_end(roots[i]);
  }
  REQUIRE_EQ_INT(tu_flush_count(), N);
  for (int i = 0; i < N; i++) {
    char name[16];
    snprintf(name, sizeof name, "req-%d", i);
    cJSON *t = tu_trace_named(name);
    REQUIRE(t != NULL);
    REQUIRE_EQ_INT(tu_nspans(t), 2);
    CHECK_EQ_STR(tu_str(tu_span(t, "chat.completions"), "parent_span_id"), tu_str(tu_span(t, name), "span_id"));
  }
  lctx_free(&lc);
  tu_done();
}

static void cancel_later(evutil_socket_t fd, short kind, void *arg) {
  (void)fd, (void)kind;
  xfer *x = arg;
  CHECK_EQ_INT(mlt_curl_loop_cancel(x->call), MLT_OK);
  CHECK_EQ_INT(x->done_calls, 1); /* synchronously */
}

TEST(loop_cancel_hanging_transfer) {
  NEED_FAKE();
  tu_init();
  lctx lc;
  lctx_init(&lc, 1);
  lc.remaining = 1;
  start_xfer(&lc, &lc.x[0], "X-Fake-Hang: 1");
  struct event *t = evtimer_new(lc.base, cancel_later, &lc.x[0]);
  struct timeval tv = {0, 200000};
  evtimer_add(t, &tv);
  lctx_run(&lc, 20);
  event_free(t);
  CHECK_EQ_INT(lc.x[0].done_calls, 1);
  CHECK_EQ_INT(lc.x[0].status, MLT_CURL_CANCELLED);
  cJSON *sp = only_span(NULL);
  CHECK_EQ_STR(tu_status_msg(sp), "CancelledError: transfer cancelled");
  lctx_free(&lc);
  tu_done();
}

TEST(loop_cancel_from_delta_hook_is_deferred) {
  NEED_FAKE();
  tu_init();
  lctx lc;
  lctx_init(&lc, 2);
  lc.remaining = 2;
  lc.cancel_index = 0;
  lc.cancel_other = 1; /* also cancel the other (idle: slow) transfer */
  start_xfer(&lc, &lc.x[0], "X-Fake-Tokens: 200");
  start_xfer(&lc, &lc.x[1], "X-Fake-Hang: 1");
  lctx_run(&lc, 20);
  for (int i = 0; i < 2; i++) {
    CHECK_EQ_INT(lc.x[i].done_calls, 1);
    CHECK_EQ_INT(lc.x[i].status, MLT_CURL_CANCELLED);
  }
  /* no delta reached the cancelled call after the cancel */
  CHECK(lc.x[0].deltas.len <= 4);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  for (size_t k = 0; k < 2; k++) {
    cJSON *sp = cJSON_GetArrayItem(tu_spans(tu_trace(k)), 0);
    CHECK_EQ_STR(tu_status_msg(sp), "CancelledError: transfer cancelled");
  }
  lctx_free(&lc);
  tu_done();
}

TEST(loop_free_with_transfers_in_flight) {
  NEED_FAKE();
  tu_init();
  enum { N = 5 };
  lctx lc;
  lctx_init(&lc, N);
  lc.remaining = N + 100; /* never reaches 0: the timer below stops the loop */
  for (int i = 0; i < N; i++) start_xfer(&lc, &lc.x[i], i % 2 ? "X-Fake-Hang: 1" : "X-Fake-Delay-Ms: 100");
  struct timeval tv = {0, 250000};
  event_base_loopexit(lc.base, &tv);
  event_base_dispatch(lc.base);
  mlt_curl_loop_free(lc.loop);
  lc.loop = NULL;
  for (int i = 0; i < N; i++) {
    CHECK_EQ_INT(lc.x[i].done_calls, 1);
    CHECK_EQ_INT(lc.x[i].status, MLT_CURL_CANCELLED);
  }
  REQUIRE_EQ_INT(tu_flush_count(), N);
  for (size_t k = 0; k < N; k++) {
    cJSON *sp = cJSON_GetArrayItem(tu_spans(tu_trace(k)), 0);
    CHECK_EQ_STR(tu_status_msg(sp), "CancelledError: loop freed before the transfer completed");
  }
  lctx_free(&lc);
  tu_done();
}

static void free_loop_in_done(mlt_curl_call *call, int status, void *ud) {
  lctx *lc = ud;
  (void)status;
  lc->remaining++;
  curl_easy_cleanup(mlt_curl_call_easy(call));
  mlt_curl_call_free(call);
  mlt_curl_loop_free(lc->loop); /* deferred until the callback returns */
  /* adding is refused from now on */
  CURL *h = ct_easy();
  mlt_curl_call *c2 = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, "{}", MLT_NTS, NULL, &c2), MLT_OK);
  CHECK_EQ_INT(mlt_curl_loop_add(lc->loop, c2, free_loop_in_done, lc), MLT_EENDED);
  mlt_curl_call_free(c2);
  curl_easy_cleanup(h);
  event_base_loopexit(lc->base, NULL);
}

TEST(loop_free_from_done_callback_and_disconnect) {
  NEED_FAKE();
  tu_init();
  lctx lc;
  lctx_init(&lc, 0);
  char *body = ct_body("cut", 1, 1);
  CURL *h = ct_easy();
  struct curl_slist *hdr = one_header("X-Fake-Disconnect-After: 2");
  mlt_curl_call *call = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h, NULL, NULL, body, MLT_NTS, hdr, &call), MLT_OK);
  curl_slist_free_all(hdr);
  /* a second, hanging transfer: cancelled by the deferred free */
  CURL *h2 = ct_easy();
  struct curl_slist *hdr2 = one_header("X-Fake-Hang: 1");
  mlt_curl_call *call2 = NULL;
  REQUIRE_EQ_INT(mlt_curl_call_new(h2, NULL, NULL, body, MLT_NTS, hdr2, &call2), MLT_OK);
  curl_slist_free_all(hdr2);
  REQUIRE_EQ_INT(mlt_curl_loop_add(lc.loop, call, free_loop_in_done, &lc), MLT_OK);
  REQUIRE_EQ_INT(mlt_curl_loop_add(lc.loop, call2, free_loop_in_done, &lc), MLT_OK);
  lctx_run(&lc, 20);
  lc.loop = NULL; /* freed when the first done callback returned */
  CHECK_EQ_INT(lc.remaining, 2); /* both done callbacks ran */
  /* 4 traces: the two transfers, and the two calls the callbacks made and
   * freed without performing them */
  REQUIRE_EQ_INT(tu_flush_count(), 4);
  int disconnect = 0, cancelled = 0, freed = 0;
  for (size_t k = 0; k < 4; k++) {
    cJSON *sp = cJSON_GetArrayItem(tu_spans(tu_trace(k)), 0);
    const char *m = tu_status_msg(sp);
    if (strncmp(m, "CurlError", 9) == 0) {
      disconnect++;
      CHECK_EQ_INT(tu_nevents(sp, "mlflow.chunk.item."), 2);
      CHECK(tu_attr(sp, "mlflow.spanOutputs") != NULL);
    }
    if (strcmp(m, "CancelledError: loop freed before the transfer completed") == 0) cancelled++;
    if (strcmp(m, "CancelledError: call freed before the transfer completed") == 0) freed++;
  }
  CHECK_EQ_INT(disconnect, 1);
  CHECK_EQ_INT(cancelled, 1);
  CHECK_EQ_INT(freed, 2);
  cJSON_free(body);
  event_base_free(lc.base);
  free(lc.x);
  tu_done();
}

TEST(loop_free_call_cancels_it) {
  NEED_FAKE();
  tu_init();
  lctx lc;
  lctx_init(&lc, 1);
  lc.remaining = 1;
  start_xfer(&lc, &lc.x[0], "X-Fake-Hang: 1");
  /* mlt_curl_call_free() on a call in a loop: cancelled, done runs once
   * (and its own free there is absorbed) */
  mlt_curl_call_free(lc.x[0].call);
  CHECK_EQ_INT(lc.x[0].done_calls, 1);
  CHECK_EQ_INT(lc.x[0].status, MLT_CURL_CANCELLED);
  CHECK_EQ_INT(mlt_curl_loop_count(lc.loop), 0);
  lctx_free(&lc);
  CHECK_EQ_INT(tu_flush_count(), 1);
  tu_done();
}

/* ---- pause, and calls into the loop from inside curl -------------------- */

typedef struct pause_state {
  lctx *lc;
  xfer *x;
  int paused_once, resumed;
  int free_loop_in_delta; /* mlt_curl_loop_free() from the resumed delta */
  int add_in_delta;       /* start transfer 1 from transfer 0's first delta */
  int deltas;
  int in_pause, freed_in_pause;
} pause_state;

static pause_state *g_pause;

/* Pause at the first write that carries an event (the keep-alive comment
 * comes alone, with the headers), then accept. */
static size_t pausing_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  xfer *x = ud;
  if (!g_pause->paused_once && memmem(ptr, size * nmemb, "data:", 5)) {
    g_pause->paused_once = 1;
    return CURL_WRITEFUNC_PAUSE;
  }
  th_buf_add(&x->bytes, ptr, size * nmemb);
  return size * nmemb;
}

static void resume(evutil_socket_t fd, short kind, void *arg) {
  (void)fd, (void)kind;
  pause_state *ps = arg;
  ps->resumed = 1;
  /* curl delivers the held bytes from inside curl_easy_pause(): the write
   * and delta callbacks run here, outside the loop's own events */
  ps->in_pause = 1;
  curl_easy_pause(ps->x->easy, CURLPAUSE_CONT);
  ps->in_pause = 0;
}

static int pause_delta(mlt_curl_call *call, const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  (void)call, (void)json, (void)len;
  pause_state *ps = ud;
  th_buf_add(&ps->x->deltas, delta, dlen);
  ps->deltas++;
  if (ps->add_in_delta && dlen) {
    ps->add_in_delta = 0;
    start_xfer(ps->lc, &ps->lc->x[1], NULL); /* queued: curl is running */
  }
  if (ps->free_loop_in_delta && ps->resumed) {
    ps->free_loop_in_delta = 0;
    ps->freed_in_pause = ps->in_pause;
    mlt_curl_loop_free(ps->lc->loop); /* deferred to the loop */
    mlt_curl_loop_free(ps->lc->loop); /* a second call is ignored */
    CHECK_EQ_INT(ps->x->done_calls, 0);
  }
  return 0;
}

static void setup_pause_xfer(lctx *lc, pause_state *ps) {
  xfer *x = &lc->x[0];
  x->lc = lc;
  x->body = ct_body("pause me", 1, 1);
  x->easy = ct_easy();
  struct curl_slist *hdr = curl_slist_append(NULL, "X-Fake-Delay-Ms: 20");
  REQUIRE_EQ_INT(mlt_curl_call_new(x->easy, NULL, NULL, x->body, MLT_NTS, hdr, &x->call), MLT_OK);
  curl_slist_free_all(hdr);
  mlt_curl_call_set_write_fn(x->call, pausing_write, x);
  mlt_curl_call_set_delta_fn(x->call, pause_delta, ps);
  REQUIRE_EQ_INT(mlt_curl_loop_add(lc->loop, x->call, loop_done, x), MLT_OK);
  ps->lc = lc;
  ps->x = x;
  g_pause = ps;
}

TEST(loop_write_pause_resume_and_add_from_delta) {
  NEED_FAKE();
  tu_init();
  lctx lc;
  lctx_init(&lc, 2);
  lc.remaining = 2;
  pause_state ps = {0};
  ps.add_in_delta = 1;
  setup_pause_xfer(&lc, &ps);
  struct event *t = evtimer_new(lc.base, resume, &ps);
  struct timeval tv = {0, 150000};
  evtimer_add(t, &tv);
  lctx_run(&lc, 20);
  event_free(t);
  CHECK(ps.paused_once && ps.resumed);
  for (int i = 0; i < 2; i++) {
    CHECK_EQ_INT(lc.x[i].done_calls, 1);
    CHECK_EQ_INT(lc.x[i].status, MLT_OK);
  }
  CHECK_EQ_STR(lc.x[0].content, "Echo: pause me \xE2\x9C\x93");
  CHECK_EQ_STR(lc.x[0].deltas.p, "Echo: pause me \xE2\x9C\x93");
  /* the paused bytes came once: the output is what the write callback kept */
  char *assembled = ct_assemble(lc.x[0].bytes.p, lc.x[0].bytes.len);
  CHECK_EQ_STR(lc.x[0].result, assembled);
  free(assembled);
  CHECK_EQ_STR(lc.x[1].content, "Echo: msg-1 \xE2\x9C\x93");
  CHECK_EQ_INT(tu_flush_count(), 2);
  lctx_free(&lc);
  tu_done();
}

TEST(loop_free_from_delta_inside_curl_easy_pause) {
  NEED_FAKE();
  tu_init();
  lctx lc;
  lctx_init(&lc, 1);
  lc.remaining = 1;
  pause_state ps = {0};
  ps.free_loop_in_delta = 1;
  setup_pause_xfer(&lc, &ps);
  struct event *t = evtimer_new(lc.base, resume, &ps);
  struct timeval tv = {0, 150000};
  evtimer_add(t, &tv);
  lctx_run(&lc, 20);
  event_free(t);
  /* the loop was freed by the reap event after curl_easy_pause() returned:
   * the transfer was cancelled, its done callback ran once */
  lc.loop = NULL;
  CHECK(ps.freed_in_pause);
  CHECK_EQ_INT(lc.x[0].done_calls, 1);
  CHECK_EQ_INT(lc.x[0].status, MLT_CURL_CANCELLED);
  CHECK_EQ_INT(tu_flush_count(), 1);
  lctx_free(&lc);
  tu_done();
}

int main(int argc, char **argv) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  signal(SIGPIPE, SIG_IGN);
  if (th_fake_openai_start() != 0) printf("# fake-openai unavailable: its tests skip\n");
  snprintf(ct_url, sizeof ct_url, "http://127.0.0.1:%d/v1/chat/completions", th_fake_port);
  static const tap_test tests[] = {
      TAP_ENTRY(easy_stream_span_and_previews),
      TAP_ENTRY(easy_parent_traceparent_headers_and_secrets),
      TAP_ENTRY(easy_non_streaming_json),
      TAP_ENTRY(easy_tool_calls_assembled),
      TAP_ENTRY(easy_http_error_is_error_with_body),
      TAP_ENTRY(easy_disconnect_mid_stream_keeps_partial_output),
      TAP_ENTRY(easy_timeout_is_error),
      TAP_ENTRY(easy_connection_refused),
      TAP_ENTRY(easy_short_write_propagates),
      TAP_ENTRY(easy_delta_hook_relays_tokens),
      TAP_ENTRY(easy_delta_hook_abort_is_cancel),
      TAP_ENTRY(easy_max_chunk_events_and_body_limit),
      TAP_ENTRY(chunk_callback_keeps_choices_apart),
      TAP_ENTRY(chunk_callback_reports_tool_call_deltas),
      TAP_ENTRY(responses_stream_recorded_as_mlflow_autolog_does),
      TAP_ENTRY(responses_function_calls_cuts_and_errors),
      TAP_ENTRY(fixture_malformed_event_is_event_and_skipped),
      TAP_ENTRY(fixture_error_event_is_error),
      TAP_ENTRY(fixture_truncated_stream_is_error),
      TAP_ENTRY(fixture_every_file_never_crashes),
      TAP_ENTRY(fixture_usage_counted_once_under_parent),
      TAP_ENTRY(works_without_tracing),
      TAP_ENTRY(argument_checks_and_free_before_perform),
      TAP_ENTRY(own_multi_handle),
      TAP_ENTRY(loop_fifty_concurrent_streams),
      TAP_ENTRY(loop_parent_contexts_and_chained_adds),
      TAP_ENTRY(loop_cancel_hanging_transfer),
      TAP_ENTRY(loop_cancel_from_delta_hook_is_deferred),
      TAP_ENTRY(loop_free_with_transfers_in_flight),
      TAP_ENTRY(loop_free_from_done_callback_and_disconnect),
      TAP_ENTRY(loop_free_call_cancels_it),
      TAP_ENTRY(loop_write_pause_resume_and_add_from_delta),
      TAP_ENTRY(loop_free_from_delta_inside_curl_easy_pause),
      TAP_END,
  };
  int rc = tap_main(argc, argv, tests);
  th_fake_openai_stop();
  curl_global_cleanup();
  return rc;
}
