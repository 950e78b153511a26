/* tests/proxy/test_proxy.c: the streaming chat proxy (examples/chat-proxy)
 * end to end.  main() starts examples/fake-openai as the upstream; each test
 * starts its own proxy (port 0, MLTRACE_FILE = a fresh file), drives it with
 * libevent clients that keep the exact bytes they receive (or a raw socket
 * that hangs up mid-reply), stops it with SIGTERM (it flushes its traces and
 * must exit 0), then reads the JSONL store and checks every trace: the
 * request span as root with the LLM span under it, the request span's output
 * byte-identical to what its client received, the LLM span's assembled
 * answer equal to it, token usage recorded once, the previews, and the
 * ERROR outcomes of upstream failures, client disconnects and shutdown.
 *
 * $MLT_PROXY_WRAPPER (e.g. "valgrind -q --error-exitcode=99") runs the
 * proxy under a wrapper; a non-zero exit then fails the test. */
#include "proxytest.h"

#define CHAT "/v1/chat/completions"
#define CHECK_MARK "\xE2\x9C\x93" /* U+2713, the end of every fake answer */

static int g_fake_port;
static pid_t g_fake_pid;
static char g_upstream[64];

#define NEED_FAKE()                                                                           \
  do {                                                                                        \
    if (g_fake_port <= 0) TAP_SKIP("examples/fake-openai is not available");                  \
  } while (0)

/* ---- what examples/fake-openai answers (examples/fake-openai.md) ------- */

/* Its answer to a last user message. */
static char *echo_answer(const char *prompt) {
  pt_buf b = {0};
  pt_add_str(&b, "Echo: ");
  pt_add_str(&b, prompt);
  pt_add_str(&b, " " CHECK_MARK);
  return b.p;
}

/* Its answer under X-Fake-Tokens: N. */
static char *tokens_answer(int n) {
  static const char phrase[] = "The quick brown fox jumps over the lazy dog. ";
  pt_buf b = {0};
  for (int i = 0; i < 4 * (n - 1); i++) pt_add(&b, &phrase[i % (sizeof phrase - 1)], 1);
  pt_add_str(&b, " " CHECK_MARK);
  return b.p;
}

/* Length of the token starting at @p s: greedy, at most 4 bytes, never
 * splitting a UTF-8 sequence. */
static size_t token_len(const char *s) {
  size_t take = 0;
  while (s[take]) {
    unsigned char c = (unsigned char)s[take];
    size_t cl = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (take && take + cl > 4) break;
    take += cl;
  }
  return take;
}

static int count_tokens(const char *s) {
  int n = 0;
  for (; *s; s += token_len(s)) n++;
  return n;
}

/* The first @p k tokens of @p s (malloc()ed). */
static char *first_tokens(const char *s, int k) {
  size_t len = 0;
  for (int i = 0; i < k && s[len]; i++) len += token_len(s + len);
  return strndup(s, len);
}

/* ---- requests -------------------------------------------------------- */

#define SYS_MSG "Be brief."
#define EARLIER_Q "earlier question"
#define EARLIER_A "earlier answer"

/* A multi-turn chat request whose last user message is @p prompt.
 * @p variant picks the client's own stream settings (the proxy forces
 * streaming either way) and whether the prompt is sent as content parts. */
static char *chat_body(const char *prompt, int variant) {
  cJSON *r = cJSON_CreateObject();
  cJSON_AddStringToObject(r, "model", "test-model");
  cJSON_AddNumberToObject(r, "temperature", 0.5);
  if (variant % 2) {
    cJSON_AddTrueToObject(r, "stream");
    cJSON_AddFalseToObject(cJSON_AddObjectToObject(r, "stream_options"), "include_usage");
  } else {
    cJSON_AddFalseToObject(r, "stream");
  }
  cJSON *msgs = cJSON_AddArrayToObject(r, "messages");
  const char *roles[] = {"system", "user", "assistant"};
  const char *texts[] = {SYS_MSG, EARLIER_Q, EARLIER_A};
  for (int i = 0; i < 3; i++) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", roles[i]);
    cJSON_AddStringToObject(m, "content", texts[i]);
    cJSON_AddItemToArray(msgs, m);
  }
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "role", "user");
  if (variant % 3 == 0 && strlen(prompt) > 5) { /* content parts, split in the ASCII prefix */
    cJSON *parts = cJSON_AddArrayToObject(m, "content");
    char head[6];
    memcpy(head, prompt, 5);
    head[5] = '\0';
    const char *pieces[] = {head, prompt + 5};
    for (int i = 0; i < 2; i++) {
      cJSON *p = cJSON_CreateObject();
      cJSON_AddStringToObject(p, "type", "text");
      cJSON_AddStringToObject(p, "text", pieces[i]);
      cJSON_AddItemToArray(parts, p);
    }
  } else {
    cJSON_AddStringToObject(m, "content", prompt);
  }
  cJSON_AddItemToArray(msgs, m);
  char *t = cJSON_PrintUnformatted(r);
  cJSON_Delete(r);
  return t;
}

/* fake-openai's prompt_tokens for chat_body(prompt). */
static int prompt_tokens(const char *prompt) {
  return (int)((strlen(SYS_MSG) + strlen(EARLIER_Q) + strlen(EARLIER_A) + strlen(prompt)) / 4);
}

/* ---- the proxy ------------------------------------------------------- */

/* Start examples/chat-proxy on @p upstream with a fresh trace file. */
static pid_t start_proxy(const char *upstream, char *path, size_t path_size, int *port) {
  char prog[4096];
  if (pt_program("examples/chat-proxy", prog, sizeof prog) != 0) {
    tap_diag("%s is missing (set top_builddir)", prog);
    return -1;
  }
  snprintf(path, path_size, "/tmp/mlt-proxy-test-XXXXXX");
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  unlink(path); /* the proxy's file store creates it */
  /* PROXY_VERBOSE=1: its access log goes to the test log. */
  const char *argv[] = {prog, "--upstream", upstream, "--host", "127.0.0.1", "--port", "0", NULL, NULL};
  if (!getenv("PROXY_VERBOSE")) argv[7] = "--quiet";
  return pt_spawn(argv, path, 1, port);
}

/* SIGTERM the proxy (unless @p sig is 0: already sent), check that it
 * exits 0, and read the traces it flushed. */
static void stop_proxy(pid_t pid, int sig, const char *path, pt_store *s) {
  CHECK_EQ_INT(pt_stop(pid, sig, 20000), 0);
  pt_store_read(s, path);
  unlink(path);
}

/* The trace whose request preview is @p prompt. */
static cJSON *trace_for_prompt(pt_store *s, const char *prompt) {
  for (int i = 0; i < s->n; i++) {
    const char *p = pt_str(pt_info(s->trace[i]), "request_preview");
    if (p && strcmp(p, prompt) == 0) return s->trace[i];
  }
  return NULL;
}

/* The request span and the LLM span of a proxied trace: exactly two spans,
 * the request span the root, the LLM span its child. */
static void proxy_spans(cJSON *t, cJSON **root, cJSON **llm) {
  CHECK_EQ_INT(cJSON_GetArraySize(pt_spans(t)), 2);
  *root = pt_root(t);
  REQUIRE(*root != NULL);
  CHECK_EQ_STR(pt_str(*root, "name"), "POST " CHAT);
  CHECK_EQ_STR(pt_attr(*root, "mlflow.spanType"), "\"CHAIN\"");
  *llm = pt_child_span(t, *root);
  REQUIRE(*llm != NULL);
  CHECK_EQ_STR(pt_str(*llm, "name"), "chat.completions");
  CHECK_EQ_STR(pt_attr(*llm, "mlflow.spanType"), "\"CHAT_MODEL\"");
}

static int usage_field(cJSON *u, const char *k) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(u, k);
  return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* ---- 1. fifty concurrent streams ------------------------------------- */

#define N_CONCURRENT 50

static char *make_prompt(int i) {
  static const char filler[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  char p[256];
  snprintf(p, sizeof p, "question %02d: h\xC3\xA9llo w\xC3\xB6rld " CHECK_MARK " %.*s", i, (i * 7) % 37, filler);
  return strdup(p);
}

/* Everything a successful proxied trace must be. */
static void check_ok_trace(pt_store *s, cJSON *t, const char *prompt, const pt_client *c) {
  char *expected = echo_answer(prompt);
  cJSON *info = pt_info(t), *root, *llm;
  CHECK_EQ_STR(pt_str(info, "state"), "OK");
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(pt_status_code(root), "STATUS_CODE_OK");
  CHECK_EQ_STR(pt_status_code(llm), "STATUS_CODE_OK");
  CHECK_EQ_STR(pt_attr(root, "http.response.status_code"), "200");

  /* What the client received, byte for byte: the request span's output. */
  CHECK_EQ_INT(c->code, 200);
  CHECK(!c->failed);
  CHECK_EQ_STR(c->content_type, "text/plain; charset=utf-8");
  CHECK_EQ_STR(c->body.p, expected);
  const char *out = pt_output_text(s, root);
  REQUIRE(out != NULL);
  CHECK_EQ_INT(strlen(out), c->body.len);
  CHECK(memcmp(out, c->body.p, c->body.len) == 0);
  /* ... relayed one token per chunk ... */
  int tokens = count_tokens(expected);
  CHECK_EQ_INT(pt_nevents(root, "mlflow.chunk.item."), tokens);
  /* ... and the LLM span's assembled answer. */
  CHECK_EQ_STR(pt_llm_content(s, llm), c->body.p);

  /* The upstream got the client's request with streaming forced. */
  CHECK_EQ_STR(pt_attr(llm, "stream"), "true");
  cJSON *so = pt_decode(s, pt_attr(llm, "stream_options"));
  CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage")));
  CHECK_EQ_STR(pt_attr(llm, "model"), "\"test-model\"");
  CHECK_EQ_STR(pt_attr(llm, "temperature"), "0.5");
  CHECK_EQ_STR(pt_attr(llm, "mlflow.llm.model"), "\"test-model\"");
  cJSON *in = pt_decode(s, pt_attr(llm, "mlflow.spanInputs"));
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(in, "messages")), 4);

  /* Token usage: on the LLM span only, and the trace total is the same. */
  CHECK(pt_attr(root, "mlflow.chat.tokenUsage") == NULL);
  cJSON *u = pt_decode(s, pt_attr(llm, "mlflow.chat.tokenUsage"));
  cJSON *tu = pt_decode(s, pt_meta(t, "mlflow.trace.tokenUsage"));
  REQUIRE(u != NULL && tu != NULL);
  CHECK_EQ_INT(usage_field(u, "input_tokens"), prompt_tokens(prompt));
  CHECK_EQ_INT(usage_field(u, "output_tokens"), tokens);
  CHECK_EQ_INT(usage_field(u, "total_tokens"), prompt_tokens(prompt) + tokens);
  CHECK_EQ_INT(usage_field(tu, "input_tokens"), usage_field(u, "input_tokens"));
  CHECK_EQ_INT(usage_field(tu, "output_tokens"), usage_field(u, "output_tokens"));
  CHECK_EQ_INT(usage_field(tu, "total_tokens"), usage_field(u, "total_tokens"));

  /* Previews: the last user message and the answer. */
  CHECK_EQ_STR(pt_str(info, "request_preview"), prompt);
  CHECK_EQ_STR(pt_str(info, "response_preview"), c->body.p);
  free(expected);
}

TEST(fifty_concurrent_streams_one_trace_each) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  pt_batch b = {event_base_new(), 0, 0};
  static pt_client c[N_CONCURRENT];
  char *prompts[N_CONCURRENT], *bodies[N_CONCURRENT];
  char secrets[N_CONCURRENT][48];
  for (int i = 0; i < N_CONCURRENT; i++) {
    prompts[i] = make_prompt(i);
    bodies[i] = chat_body(prompts[i], i);
    snprintf(secrets[i], sizeof secrets[i], "Bearer sk-SECRET-%02d", i);
    /* A small per-event delay: the 50 streams interleave on both loops. */
    const char *h[] = {"Authorization", secrets[i], "X-Fake-Delay-Ms", "2", NULL};
    pt_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  }
  pt_run(&b, 30);
  CHECK_EQ_INT(b.left, 0);
  pt_store s;
  stop_proxy(px, SIGTERM, path, &s);

  CHECK_EQ_INT(s.n, N_CONCURRENT);
  CHECK(strstr(s.text, "sk-SECRET") == NULL); /* Authorization never recorded */
  int matched[N_CONCURRENT] = {0};
  for (int k = 0; k < s.n; k++) {
    cJSON *t = s.trace[k];
    const char *tid = pt_str(pt_info(t), "trace_id");
    int i = 0;
    while (i < N_CONCURRENT && !(tid && strcmp(c[i].trace_id, tid) == 0)) i++;
    if (i == N_CONCURRENT) {
      tap_diag("trace %s matches no client (X-Trace-Id)", tid ? tid : "(none)");
      CHECK(0);
      continue;
    }
    matched[i]++;
    check_ok_trace(&s, t, prompts[i], &c[i]);
  }
  for (int i = 0; i < N_CONCURRENT; i++) {
    CHECK_EQ_INT(matched[i], 1);
    pt_client_free(&c[i]);
    free(prompts[i]);
    cJSON_free(bodies[i]);
  }
  event_base_free(b.base);
  pt_store_free(&s);
}

/* ---- 2. the upstream drops the stream -------------------------------- */

TEST(upstream_disconnect_mid_stream) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  const char *prompt = "tell me a story";
  char *body = chat_body(prompt, 1);
  pt_batch b = {event_base_new(), 0, 0};
  pt_client c = {0};
  /* Three events (role, two tokens), then the upstream hangs up. */
  const char *h[] = {"X-Fake-Disconnect-After", "3", NULL};
  pt_request(&b, &c, port, EVHTTP_REQ_POST, CHAT, body, h);
  pt_run(&b, 20);
  pt_store s;
  stop_proxy(px, SIGTERM, path, &s);

  /* The client got a complete 200 reply with the truncated answer. */
  char *answer = echo_answer(prompt), *partial = first_tokens(answer, 2);
  CHECK_EQ_INT(c.code, 200);
  CHECK(!c.failed);
  CHECK_EQ_STR(c.body.p, partial);

  REQUIRE_EQ_INT(s.n, 1);
  cJSON *t = s.trace[0], *root, *llm;
  CHECK_EQ_STR(pt_str(pt_info(t), "state"), "ERROR");
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(pt_status_code(root), "STATUS_CODE_ERROR");
  CHECK(strncmp(pt_status_msg(root), "UpstreamError: CurlError", 24) == 0);
  CHECK_EQ_STR(pt_output_text(&s, root), c.body.p);
  CHECK_EQ_STR(pt_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strstr(pt_status_msg(llm), "CurlError") != NULL);
  CHECK_EQ_STR(pt_llm_content(&s, llm), c.body.p); /* the partial output */
  CHECK(pt_attr(llm, "mlflow.chat.tokenUsage") == NULL); /* no usage chunk came */
  CHECK(pt_meta(t, "mlflow.trace.tokenUsage") == NULL);
  CHECK_EQ_STR(pt_str(pt_info(t), "request_preview"), prompt);
  CHECK_EQ_STR(pt_str(pt_info(t), "response_preview"), c.body.p);
  free(answer);
  free(partial);
  cJSON_free(body);
  pt_client_free(&c);
  event_base_free(b.base);
  pt_store_free(&s);
}

/* ---- 3. the client hangs up ------------------------------------------ */

/* One more request after a hang-up: the proxy still serves. */
static void check_still_serving(int port, const char *prompt) {
  char *body = chat_body(prompt, 0), *answer = echo_answer(prompt);
  pt_batch b = {event_base_new(), 0, 0};
  pt_client c = {0};
  pt_request(&b, &c, port, EVHTTP_REQ_POST, CHAT, body, NULL);
  pt_run(&b, 20);
  CHECK_EQ_INT(c.code, 200);
  CHECK_EQ_STR(c.body.p, answer);
  pt_client_free(&c);
  event_base_free(b.base);
  free(answer);
  cJSON_free(body);
}

TEST(client_disconnect_mid_stream_cancels_upstream) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  /* A slow stream: 40 tokens, 50 ms before each event (over 2 s). */
  char *body = chat_body("slow one", 1), *full = tokens_answer(40);
  int fd = pt_raw_connect(port);
  const char *h[] = {"X-Fake-Delay-Ms", "50", "X-Fake-Tokens", "40", NULL};
  pt_raw_post(fd, body, h);
  pt_buf raw = {0};
  /* The headers and the first token ("The "), then hang up. */
  CHECK_EQ_INT(pt_raw_read_until(fd, &raw, "\r\n\r\n4\r\nThe \r\n", 10000), 0);
  close(fd);
  pt_buf got = {0};
  pt_dechunk(raw.p, raw.len, &got);
  CHECK(strncmp(raw.p, "HTTP/1.1 200", 12) == 0);
  CHECK(pt_prefix_of("The ", got.p) && pt_prefix_of(got.p, full)); /* a slow proxy may send more at once */
  check_still_serving(port, "still there?");
  pt_store s;
  stop_proxy(px, SIGTERM, path, &s);

  REQUIRE_EQ_INT(s.n, 2);
  cJSON *t = trace_for_prompt(&s, "slow one"), *root, *llm;
  REQUIRE(t != NULL);
  CHECK_EQ_STR(pt_str(pt_info(t), "state"), "ERROR");
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(pt_status_code(root), "STATUS_CODE_ERROR");
  CHECK(strncmp(pt_status_msg(root), "ClientDisconnected", 18) == 0);
  CHECK_EQ_STR(pt_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strncmp(pt_status_msg(llm), "CancelledError", 14) == 0);
  /* The relayed text: at least what the client read, a strict prefix of
   * the answer, and all the LLM span assembled before the cancel. */
  const char *out = pt_output_text(&s, root), *content = pt_llm_content(&s, llm);
  CHECK(pt_prefix_of(got.p, out));
  CHECK(pt_prefix_of(out, full) && out && strlen(out) < strlen(full));
  CHECK_EQ_STR(content, out);
  CHECK_EQ_STR(pt_str(pt_info(t), "response_preview"), out);
  /* Cancelled at the hang-up, not at the end of the 2 s stream. */
  double ms = pt_duration_ms(llm);
  if (ms >= 1500) tap_diag("LLM span lasted %.0f ms", ms);
  CHECK(ms >= 0 && ms < 1500);
  cJSON *ok = trace_for_prompt(&s, "still there?");
  REQUIRE(ok != NULL);
  CHECK_EQ_STR(pt_str(pt_info(ok), "state"), "OK");
  free(full);
  cJSON_free(body);
  pt_buf_free(&raw);
  pt_buf_free(&got);
  pt_store_free(&s);
}

TEST(client_disconnect_before_first_token_cancels_upstream) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  /* The first event comes after 1.5 s; the client leaves after 0.2 s. */
  char *body = chat_body("impatient", 0);
  int fd = pt_raw_connect(port);
  const char *h[] = {"X-Fake-Delay-Ms", "1500", NULL};
  double t0 = pt_now_ms();
  pt_raw_post(fd, body, h);
  usleep(200 * 1000);
  close(fd);
  /* Let the first event come due: a proxy that had not noticed would
   * only find out when it writes. */
  double left = 1700 - (pt_now_ms() - t0);
  if (left > 0) usleep((useconds_t)(left * 1000));
  check_still_serving(port, "next");
  pt_store s;
  stop_proxy(px, SIGTERM, path, &s);

  REQUIRE_EQ_INT(s.n, 2);
  cJSON *t = trace_for_prompt(&s, "impatient"), *root, *llm;
  REQUIRE(t != NULL);
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(pt_status_code(root), "STATUS_CODE_ERROR");
  CHECK(strncmp(pt_status_msg(root), "ClientDisconnected", 18) == 0);
  CHECK_EQ_STR(pt_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strncmp(pt_status_msg(llm), "CancelledError", 14) == 0);
  double ms = pt_duration_ms(llm);
  if (ms >= 1000) tap_diag("LLM span lasted %.0f ms", ms);
  CHECK(ms >= 0 && ms < 1000);
  CHECK_EQ_INT(pt_nevents(root, "mlflow.chunk.item."), 0);
  cJSON_free(body);
  pt_store_free(&s);
}

/* ---- 4. upstream HTTP errors ----------------------------------------- */

TEST(upstream_http_error_before_first_token) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  const char *statuses[] = {"500", "429"};
  char *bodies[2];
  pt_batch b = {event_base_new(), 0, 0};
  pt_client c[2] = {{0}};
  for (int i = 0; i < 2; i++) {
    char prompt[32];
    snprintf(prompt, sizeof prompt, "fail with %s", statuses[i]);
    bodies[i] = chat_body(prompt, i);
    const char *h[] = {"X-Fake-Status", statuses[i], NULL};
    pt_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  }
  pt_run(&b, 20);
  pt_store s;
  stop_proxy(px, SIGTERM, path, &s);

  REQUIRE_EQ_INT(s.n, 2);
  for (int i = 0; i < 2; i++) {
    /* The client gets the upstream's status and error JSON. */
    CHECK_EQ_INT(c[i].code, atoi(statuses[i]));
    CHECK_EQ_STR(c[i].content_type, "application/json");
    cJSON *err = cJSON_GetObjectItemCaseSensitive(pt_decode(&s, c[i].body.p), "error");
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message")));
    if (i == 1) CHECK_EQ_STR(pt_str(err, "code"), "rate_limit_exceeded");

    char prompt[32];
    snprintf(prompt, sizeof prompt, "fail with %s", statuses[i]);
    cJSON *t = trace_for_prompt(&s, prompt), *root, *llm;
    REQUIRE(t != NULL);
    CHECK_EQ_STR(pt_str(pt_info(t), "state"), "ERROR");
    proxy_spans(t, &root, &llm);
    CHECK_EQ_STR(pt_status_code(root), "STATUS_CODE_ERROR");
    CHECK_EQ_INT(pt_nevents(root, "exception"), 1); /* UpstreamError */
    CHECK_EQ_STR(pt_attr(root, "http.response.status_code"), statuses[i]);
    CHECK_EQ_INT(pt_nevents(root, "mlflow.chunk.item."), 0);
    CHECK_EQ_STR(pt_status_code(llm), "STATUS_CODE_ERROR");
    char want[32];
    snprintf(want, sizeof want, "HTTPError: HTTP %s", statuses[i]);
    CHECK(strncmp(pt_status_msg(llm), want, strlen(want)) == 0);
    CHECK_EQ_STR(pt_attr(llm, "http.response.status_code"), statuses[i]);
    if (i == 1) CHECK(strncmp(pt_status_msg(root), "UpstreamError: HTTPError: HTTP 429", 34) == 0);
    pt_client_free(&c[i]);
    cJSON_free(bodies[i]);
  }
  event_base_free(b.base);
  pt_store_free(&s);
}

TEST(upstream_down_is_502) {
  /* A port nobody listens on. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
  char upstream[64];
  snprintf(upstream, sizeof upstream, "http://127.0.0.1:%d/v1", ntohs(sa.sin_port));
  close(fd);
  char path[64];
  int port;
  pid_t px = start_proxy(upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  char *body = chat_body("anyone?", 0);
  pt_batch b = {event_base_new(), 0, 0};
  pt_client c = {0};
  pt_request(&b, &c, port, EVHTTP_REQ_POST, CHAT, body, NULL);
  pt_run(&b, 20);
  pt_store s;
  stop_proxy(px, SIGTERM, path, &s);
  CHECK_EQ_INT(c.code, 502);
  cJSON *err = cJSON_GetObjectItemCaseSensitive(pt_decode(&s, c.body.p), "error");
  CHECK(strstr(pt_str(err, "message") ? pt_str(err, "message") : "", "CurlError") != NULL);
  REQUIRE_EQ_INT(s.n, 1);
  cJSON *root, *llm;
  proxy_spans(s.trace[0], &root, &llm);
  CHECK_EQ_STR(pt_status_code(root), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(pt_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strncmp(pt_status_msg(llm), "CurlError", 9) == 0);
  CHECK_EQ_STR(pt_str(pt_info(s.trace[0]), "request_preview"), "anyone?");
  cJSON_free(body);
  pt_client_free(&c);
  event_base_free(b.base);
  pt_store_free(&s);
}

/* ---- 5. requests the proxy refuses ----------------------------------- */

TEST(bad_requests_are_refused_without_llm_call) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  pt_batch b = {event_base_new(), 0, 0};
  pt_client c[4] = {{0}};
  pt_request(&b, &c[0], port, EVHTTP_REQ_POST, CHAT, "{not json", NULL);
  pt_request(&b, &c[1], port, EVHTTP_REQ_POST, CHAT, "{\"model\":\"m\",\"messages\":[]}", NULL);
  pt_request(&b, &c[2], port, EVHTTP_REQ_GET, CHAT, NULL, NULL);
  pt_request(&b, &c[3], port, EVHTTP_REQ_POST, "/v1/other", "{}", NULL);
  pt_run(&b, 20);
  pt_store s;
  stop_proxy(px, SIGTERM, path, &s);
  CHECK_EQ_INT(c[0].code, 400);
  CHECK_EQ_INT(c[1].code, 400);
  CHECK_EQ_INT(c[2].code, 405);
  CHECK_EQ_INT(c[3].code, 404);
  CHECK_EQ_INT(s.n, 4);
  for (int i = 0; i < s.n; i++) CHECK_EQ_INT(cJSON_GetArraySize(pt_spans(s.trace[i])), 1); /* no LLM call */
  for (int i = 0; i < 4; i++) pt_client_free(&c[i]);
  event_base_free(b.base);
  pt_store_free(&s);
}

/* ---- 6. SIGTERM with streams in flight ------------------------------- */

#define N_INFLIGHT 5

typedef struct inflight {
  pt_client *c;
  pid_t proxy;
  int signalled;
} inflight;

/* Once every client has a first token, SIGTERM the proxy. */
static void term_when_all_streaming(pt_client *unused, void *arg) {
  inflight *f = arg;
  (void)unused;
  if (f->signalled) return;
  for (int i = 0; i < N_INFLIGHT; i++)
    if (f->c[i].body.len == 0) return;
  f->signalled = 1;
  kill(f->proxy, SIGTERM);
}

TEST(sigterm_cancels_streams_in_flight_and_flushes) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  pt_batch b = {event_base_new(), 0, 0};
  pt_client c[N_INFLIGHT] = {{0}};
  char *bodies[N_INFLIGHT];
  inflight f = {c, px, 0};
  /* 50 tokens, 100 ms apart: these streams would last over 5 s. */
  const char *h[] = {"X-Fake-Delay-Ms", "100", "X-Fake-Tokens", "50", NULL};
  for (int i = 0; i < N_INFLIGHT; i++) {
    char prompt[32];
    snprintf(prompt, sizeof prompt, "long %d", i);
    bodies[i] = chat_body(prompt, i);
    c[i].on_chunk = term_when_all_streaming;
    c[i].hook_arg = &f;
    pt_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  }
  double t0 = pt_now_ms();
  pt_run(&b, 20);
  CHECK(f.signalled);
  pt_store s;
  stop_proxy(px, 0, path, &s);
  double ms = pt_now_ms() - t0;
  if (ms >= 4000) tap_diag("shutdown took %.0f ms", ms);
  CHECK(ms < 4000.0 * pt_mult());

  char *full = tokens_answer(50);
  REQUIRE_EQ_INT(s.n, N_INFLIGHT);
  for (int i = 0; i < N_INFLIGHT; i++) {
    /* Each client got its reply ended after a truncated answer. */
    CHECK_EQ_INT(c[i].code, 200);
    CHECK(!c[i].failed);
    CHECK(c[i].body.len > 0 && c[i].body.len < strlen(full) && pt_prefix_of(c[i].body.p, full));
    char prompt[32];
    snprintf(prompt, sizeof prompt, "long %d", i);
    cJSON *t = trace_for_prompt(&s, prompt), *root, *llm;
    REQUIRE(t != NULL);
    proxy_spans(t, &root, &llm);
    CHECK_EQ_STR(pt_status_code(root), "STATUS_CODE_ERROR");
    CHECK(strncmp(pt_status_msg(root), "ServerShutdown", 14) == 0);
    CHECK_EQ_STR(pt_output_text(&s, root), c[i].body.p);
    CHECK_EQ_STR(pt_status_code(llm), "STATUS_CODE_ERROR");
    CHECK(strncmp(pt_status_msg(llm), "CancelledError", 14) == 0);
    CHECK_EQ_STR(pt_llm_content(&s, llm), c[i].body.p);
    pt_client_free(&c[i]);
    cJSON_free(bodies[i]);
  }
  free(full);
  event_base_free(b.base);
  pt_store_free(&s);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  atexit(pt_kill_children); /* inherited by each forked test */
  char prog[4096];
  if (pt_program("examples/fake-openai", prog, sizeof prog) == 0) {
    const char *args[] = {prog, "--host", "127.0.0.1", "--port", "0", "--quiet", NULL};
    g_fake_pid = pt_spawn(args, NULL, 0, &g_fake_port);
    if (g_fake_pid <= 0) g_fake_port = 0;
  } else {
    printf("# %s is missing (set top_builddir): the tests skip\n", prog);
  }
  snprintf(g_upstream, sizeof g_upstream, "http://127.0.0.1:%d", g_fake_port);
  static const tap_test tests[] = {
      TAP_ENTRY(fifty_concurrent_streams_one_trace_each),
      TAP_ENTRY(upstream_disconnect_mid_stream),
      TAP_ENTRY(client_disconnect_mid_stream_cancels_upstream),
      TAP_ENTRY(client_disconnect_before_first_token_cancels_upstream),
      TAP_ENTRY(upstream_http_error_before_first_token),
      TAP_ENTRY(upstream_down_is_502),
      TAP_ENTRY(bad_requests_are_refused_without_llm_call),
      TAP_ENTRY(sigterm_cancels_streams_in_flight_and_flushes),
      TAP_END,
  };
  int rc = tap_main(argc, argv, tests);
  if (g_fake_pid > 0) pt_stop(g_fake_pid, SIGTERM, 5000);
  return rc;
}
