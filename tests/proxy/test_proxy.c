/* tests/proxy/test_proxy.c: the LLM gateway (examples/chat-proxy) end to
 * end.  main() starts examples/fake-openai as the upstream; each test starts
 * its own proxy (port 0, MLTRACE_FILE = a fresh file), drives it with
 * libevent clients that keep the exact bytes they receive (or a raw socket
 * that hangs up mid-reply), stops it with SIGTERM (it flushes its traces and
 * must exit 0), then reads the JSONL store and checks every trace: the
 * request span as root with the LLM span under it, the replies valid
 * OpenAI Chat Completions (strict SSE framing, JSON chunks, [DONE] or an
 * error event), the request span's output equal to what its client
 * assembled, byte for byte, the LLM span's assembled answer equal to it,
 * token usage recorded once, the previews, and the ERROR outcomes of
 * upstream failures, client disconnects and shutdown.  The official openai
 * Python client is tested in tests/proxy/test_openai_client.py.
 *
 * $MLT_PROXY_WRAPPER (e.g. "valgrind -q --error-exitcode=99") runs the
 * proxy under a wrapper; a non-zero exit then fails the test. */
#include <signal.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "evclient.h"
#include "jsonl.h"
#include "net.h"
#include "proc.h"
#include "tap.h"

#define CHAT "/v1/chat/completions"
#define CHECK_MARK "\xE2\x9C\x93" /* U+2713, the end of every fake answer */

static char g_upstream[64];

/* ---- what examples/fake-openai answers (examples/fake-openai.md) ------- */

/* Its answer to a last user message. */
static char *echo_answer(const char *prompt) {
  th_buf b = {0};
  th_buf_str(&b, "Echo: ");
  th_buf_str(&b, prompt);
  th_buf_str(&b, " " CHECK_MARK);
  return b.p;
}

/* Its answer under X-Fake-Tokens: N. */
static char *tokens_answer(int n) {
  static const char phrase[] = "The quick brown fox jumps over the lazy dog. ";
  th_buf b = {0};
  for (int i = 0; i < 4 * (n - 1); i++) th_buf_add(&b, &phrase[i % (sizeof phrase - 1)], 1);
  th_buf_str(&b, " " CHECK_MARK);
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

/* ---- what the client received ---------------------------------------- */

#define MAX_N 4

/* A streamed reply, parsed strictly as OpenAI's protocol: events separated
 * by one blank line, lines ending in LF only, no comments, only "event:"
 * and "data:" fields (one data line per event here), every data a JSON
 * chat.completion.chunk (or an {"error":...} object, or [DONE]). */
typedef struct sse_reply {
  int events;         /* data events (chunks, errors, [DONE]) */
  int chunks;         /* chat.completion.chunk events */
  int done;           /* [DONE] seen (and it was the last event) */
  int error_events;   /* "event: error" with {"error": {...}} */
  char error_msg[512];
  int usage_chunks;   /* chunks with a non-null usage */
  int bad;            /* framing or JSON violations */
  int nchoices;       /* 1 + the largest choice index seen */
  th_buf text[MAX_N]; /* assembled content per choice index */
  int has_text[MAX_N];
  char id[64];
} sse_reply;

static void sse_bad(sse_reply *r, const char *why, const char *at) {
  if (!r->bad) tap_diag("invalid SSE reply: %s at \"%.80s\"", why, at);
  r->bad++;
}

static void parse_sse_reply(const char *body, size_t len, sse_reply *r) {
  memset(r, 0, sizeof *r);
  if (!body) return;
  if (memchr(body, '\r', len)) sse_bad(r, "CR in the stream", body);
  const char *p = body, *end = body + len;
  while (p < end) {
    const char *sep = strstr(p, "\n\n");
    if (!sep) {
      sse_bad(r, "unterminated event", p);
      break;
    }
    char *ev = strndup(p, (size_t)(sep - p));
    p = sep + 2;
    char *event = NULL, *data = NULL, *save = NULL;
    for (char *line = strtok_r(ev, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
      if (strncmp(line, "event: ", 7) == 0 && !event)
        event = line + 7;
      else if (strncmp(line, "data: ", 6) == 0 && !data)
        data = line + 6;
      else
        sse_bad(r, "unexpected line", line);
    }
    if (!data) {
      sse_bad(r, "event without data", ev);
      free(ev);
      continue;
    }
    if (r->done) sse_bad(r, "event after [DONE]", data);
    r->events++;
    if (strcmp(data, "[DONE]") == 0) {
      if (event) sse_bad(r, "[DONE] with an event type", event);
      r->done = 1;
      free(ev);
      continue;
    }
    cJSON *j = cJSON_Parse(data);
    cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (!cJSON_IsObject(j)) {
      sse_bad(r, "data is not a JSON object", data);
    } else if (event && strcmp(event, "error") == 0 && cJSON_IsObject(err)) {
      r->error_events++;
      snprintf(r->error_msg, sizeof r->error_msg, "%s", tu_str(err, "message") ? tu_str(err, "message") : "");
    } else if (event) {
      sse_bad(r, "unexpected event type", event);
    } else if (!tu_str(j, "object") || strcmp(tu_str(j, "object"), "chat.completion.chunk") != 0) {
      sse_bad(r, "not a chat.completion.chunk", data);
    } else {
      r->chunks++;
      snprintf(r->id, sizeof r->id, "%s", tu_str(j, "id") ? tu_str(j, "id") : "");
      cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
      if (cJSON_IsObject(u)) r->usage_chunks++;
      cJSON *ch;
      cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(j, "choices")) {
        cJSON *idx = cJSON_GetObjectItemCaseSensitive(ch, "index");
        int i = cJSON_IsNumber(idx) ? idx->valueint : -1;
        if (i < 0 || i >= MAX_N) {
          sse_bad(r, "choice index", data);
          continue;
        }
        if (i + 1 > r->nchoices) r->nchoices = i + 1;
        const char *c = tu_str(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
        if (c) {
          th_buf_str(&r->text[i], c);
          r->has_text[i] = 1;
        }
      }
    }
    cJSON_Delete(j);
    free(ev);
  }
  for (int i = 0; i < MAX_N; i++) th_buf_add(&r->text[i], "", 0);
}

static void sse_reply_free(sse_reply *r) {
  for (int i = 0; i < MAX_N; i++) th_buf_free(&r->text[i]);
}

/* choices[i].message.content of a chat.completion JSON (NULL if none). */
static const char *completion_content(cJSON *completion, int i) {
  cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(completion, "choices"), i);
  return tu_str(cJSON_GetObjectItemCaseSensitive(c, "message"), "content");
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
  if (th_program("examples/chat-proxy", prog, sizeof prog) != 0) {
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
  return th_spawn(argv, path, 1, port);
}

/* SIGTERM the proxy (unless @p sig is 0: already sent), check that it
 * exits 0, and read the traces it flushed. */
static void stop_proxy(pid_t pid, int sig, const char *path, tu_jsonl *s) {
  CHECK_EQ_INT(th_stop(pid, sig, 20000), 0);
  tu_jsonl_read(s, path);
  unlink(path);
}

/* The trace whose request preview is @p prompt. */
static cJSON *trace_for_prompt(tu_jsonl *s, const char *prompt) {
  for (int i = 0; i < s->n; i++) {
    const char *p = tu_str(tu_info_obj(s->trace[i]), "request_preview");
    if (p && strcmp(p, prompt) == 0) return s->trace[i];
  }
  return NULL;
}

/* The request span and the LLM span of a proxied trace: exactly two spans,
 * the request span the root, the LLM span its child. */
static void proxy_spans(cJSON *t, cJSON **root, cJSON **llm) {
  CHECK_EQ_INT(cJSON_GetArraySize(tu_spans(t)), 2);
  *root = tu_root(t);
  REQUIRE(*root != NULL);
  CHECK_EQ_STR(tu_str(*root, "name"), "POST " CHAT);
  CHECK_EQ_STR(tu_attr(*root, "mlflow.spanType"), "\"CHAIN\"");
  *llm = tu_child(t, *root);
  REQUIRE(*llm != NULL);
  CHECK_EQ_STR(tu_str(*llm, "name"), "chat.completions");
  CHECK_EQ_STR(tu_attr(*llm, "mlflow.spanType"), "\"CHAT_MODEL\"");
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

/* Everything a successful proxied trace must be.  @p streamed: the client
 * asked for a stream (without usage). */
static void check_ok_trace(tu_jsonl *s, cJSON *t, const char *prompt, const th_client *c, int streamed) {
  char *expected = echo_answer(prompt);
  cJSON *info = tu_info_obj(t), *root, *llm;
  CHECK_EQ_STR(tu_str(info, "state"), "OK");
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_OK");
  CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_OK");
  CHECK_EQ_STR(tu_attr(root, "http.response.status_code"), "200");
  CHECK_EQ_INT(c->code, 200);
  CHECK(!c->failed);
  int tokens = count_tokens(expected);
  char *client_text = NULL;
  if (streamed) {
    /* A valid Chat Completions stream: role, one chunk per token, finish,
     * no usage chunk (not asked for), [DONE]. */
    CHECK_EQ_STR(c->content_type, "text/event-stream; charset=utf-8");
    sse_reply r;
    parse_sse_reply(c->body.p, c->body.len, &r);
    CHECK_EQ_INT(r.bad, 0);
    CHECK(r.done);
    CHECK_EQ_INT(r.error_events, 0);
    CHECK_EQ_INT(r.usage_chunks, 0);
    CHECK_EQ_INT(r.chunks, tokens + 2);
    CHECK_EQ_INT(r.nchoices, 1);
    CHECK_EQ_STR(r.text[0].p, expected);
    /* What the client assembled, byte for byte: the request span's output. */
    const char *out = tu_jsonl_output_text(s, root);
    REQUIRE(out != NULL);
    CHECK_EQ_INT(strlen(out), r.text[0].len);
    CHECK(memcmp(out, r.text[0].p, r.text[0].len) == 0);
    /* ... one chunk event per relayed event ([DONE] included). */
    CHECK_EQ_INT(tu_nevents(root, "mlflow.chunk.item."), tokens + 3);
    client_text = strdup(r.text[0].p);
    sse_reply_free(&r);
  } else {
    /* One chat.completion, assembled by the proxy from the stream. */
    CHECK_EQ_STR(c->content_type, "application/json");
    cJSON *body = tu_jsonl_decode(s, c->body.p);
    REQUIRE(body != NULL);
    CHECK_EQ_STR(tu_str(body, "object"), "chat.completion");
    CHECK_EQ_STR(tu_str(body, "system_fingerprint"), "fp_fake");
    CHECK_EQ_STR(completion_content(body, 0), expected);
    CHECK_EQ_INT(usage_field(cJSON_GetObjectItemCaseSensitive(body, "usage"), "completion_tokens"), tokens);
    CHECK(cJSON_Compare(tu_jsonl_decode(s, tu_attr(root, "mlflow.spanOutputs")), body, 1));
    CHECK_EQ_INT(tu_nevents(root, "mlflow.chunk.item."), 0);
    client_text = strdup(completion_content(body, 0) ? completion_content(body, 0) : "");
  }
  /* The LLM span's assembled answer. */
  CHECK_EQ_STR(tu_jsonl_llm_content(s, llm), client_text);

  /* The upstream got the client's request with streaming forced. */
  CHECK_EQ_STR(tu_attr(llm, "stream"), "true");
  cJSON *so = tu_jsonl_decode(s, tu_attr(llm, "stream_options"));
  CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage")));
  CHECK_EQ_STR(tu_attr(llm, "model"), "\"test-model\"");
  CHECK_EQ_STR(tu_attr(llm, "temperature"), "0.5");
  CHECK_EQ_STR(tu_attr(llm, "mlflow.llm.model"), "\"test-model\"");
  cJSON *in = tu_jsonl_decode(s, tu_attr(llm, "mlflow.spanInputs"));
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(in, "messages")), 4);

  /* Token usage: on the LLM span only, and the trace total is the same. */
  CHECK(tu_attr(root, "mlflow.chat.tokenUsage") == NULL);
  cJSON *u = tu_jsonl_decode(s, tu_attr(llm, "mlflow.chat.tokenUsage"));
  cJSON *tu = tu_jsonl_decode(s, tu_meta(t, "mlflow.trace.tokenUsage"));
  REQUIRE(u != NULL && tu != NULL);
  CHECK_EQ_INT(usage_field(u, "input_tokens"), prompt_tokens(prompt));
  CHECK_EQ_INT(usage_field(u, "output_tokens"), tokens);
  CHECK_EQ_INT(usage_field(u, "total_tokens"), prompt_tokens(prompt) + tokens);
  CHECK_EQ_INT(usage_field(tu, "input_tokens"), usage_field(u, "input_tokens"));
  CHECK_EQ_INT(usage_field(tu, "output_tokens"), usage_field(u, "output_tokens"));
  CHECK_EQ_INT(usage_field(tu, "total_tokens"), usage_field(u, "total_tokens"));

  /* Previews: the last user message and the answer. */
  CHECK_EQ_STR(tu_str(info, "request_preview"), prompt);
  CHECK_EQ_STR(tu_str(info, "response_preview"), client_text);
  free(client_text);
  free(expected);
}

TEST(fifty_concurrent_streams_one_trace_each) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  th_batch b = {event_base_new(), 0, 0};
  static th_client c[N_CONCURRENT];
  char *prompts[N_CONCURRENT], *bodies[N_CONCURRENT];
  char secrets[N_CONCURRENT][48];
  for (int i = 0; i < N_CONCURRENT; i++) {
    prompts[i] = make_prompt(i);
    bodies[i] = chat_body(prompts[i], i);
    snprintf(secrets[i], sizeof secrets[i], "Bearer sk-SECRET-%02d", i);
    /* A small per-event delay: the 50 streams interleave on both loops. */
    const char *h[] = {"Authorization", secrets[i], "X-Fake-Delay-Ms", "2", NULL};
    th_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  }
  th_run(&b, 30);
  CHECK_EQ_INT(b.left, 0);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);

  CHECK_EQ_INT(s.n, N_CONCURRENT);
  CHECK(strstr(s.text, "sk-SECRET") == NULL); /* Authorization never recorded */
  int matched[N_CONCURRENT] = {0};
  for (int k = 0; k < s.n; k++) {
    cJSON *t = s.trace[k];
    const char *tid = tu_str(tu_info_obj(t), "trace_id");
    int i = 0;
    while (i < N_CONCURRENT && !(tid && strcmp(c[i].trace_id, tid) == 0)) i++;
    if (i == N_CONCURRENT) {
      tap_diag("trace %s matches no client (X-Trace-Id)", tid ? tid : "(none)");
      CHECK(0);
      continue;
    }
    matched[i]++;
    check_ok_trace(&s, t, prompts[i], &c[i], i % 2);
  }
  for (int i = 0; i < N_CONCURRENT; i++) {
    CHECK_EQ_INT(matched[i], 1);
    th_client_free(&c[i]);
    free(prompts[i]);
    cJSON_free(bodies[i]);
  }
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 2. the upstream drops the stream -------------------------------- */

TEST(upstream_disconnect_mid_stream) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  const char *prompts[2] = {"tell me a story", "tell me a JSON story"};
  char *bodies[2] = {chat_body(prompts[0], 1), chat_body(prompts[1], 0)}; /* streamed, not */
  th_batch b = {event_base_new(), 0, 0};
  th_client c[2] = {{0}};
  /* Three events (role, two tokens), then the upstream hangs up. */
  const char *h[] = {"X-Fake-Disconnect-After", "3", NULL};
  for (int i = 0; i < 2; i++) th_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  REQUIRE_EQ_INT(s.n, 2);

  for (int i = 0; i < 2; i++) {
    char *answer = echo_answer(prompts[i]), *partial = first_tokens(answer, 2);
    cJSON *t = trace_for_prompt(&s, prompts[i]), *root, *llm;
    REQUIRE(t != NULL);
    CHECK_EQ_STR(tu_str(tu_info_obj(t), "state"), "ERROR");
    proxy_spans(t, &root, &llm);
    CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_ERROR");
    CHECK(strncmp(tu_status_msg(root), "UpstreamError: CurlError", 24) == 0);
    CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_ERROR");
    CHECK(strstr(tu_status_msg(llm), "CurlError") != NULL);
    CHECK_EQ_STR(tu_jsonl_llm_content(&s, llm), partial); /* the partial output */
    CHECK(tu_attr(llm, "mlflow.chat.tokenUsage") == NULL); /* no usage chunk came */
    CHECK(tu_meta(t, "mlflow.trace.tokenUsage") == NULL);
    CHECK_EQ_STR(tu_str(tu_info_obj(t), "request_preview"), prompts[i]);
    CHECK_EQ_STR(tu_str(tu_info_obj(t), "response_preview"), partial);
    if (i == 0) {
      /* Streamed: the partial answer, then an error event and no [DONE]:
       * a client cannot take it for a complete answer. */
      CHECK_EQ_INT(c[i].code, 200);
      CHECK(!c[i].failed);
      sse_reply r;
      parse_sse_reply(c[i].body.p, c[i].body.len, &r);
      CHECK_EQ_INT(r.bad, 0);
      CHECK(!r.done);
      CHECK_EQ_INT(r.error_events, 1);
      CHECK(strstr(r.error_msg, "CurlError") != NULL);
      CHECK_EQ_STR(r.text[0].p, partial);
      CHECK_EQ_STR(tu_jsonl_output_text(&s, root), r.text[0].p);
      CHECK_EQ_INT(tu_nevents(root, "mlflow.chunk.item."), 4); /* role, 2 tokens, error */
      sse_reply_free(&r);
    } else {
      /* Not streamed: no answer at all, a 502 and an error JSON. */
      CHECK_EQ_INT(c[i].code, 502);
      CHECK_EQ_STR(c[i].content_type, "application/json");
      cJSON *body = tu_jsonl_decode(&s, c[i].body.p);
      cJSON *err = cJSON_GetObjectItemCaseSensitive(body, "error");
      CHECK(strstr(tu_str(err, "message") ? tu_str(err, "message") : "", "CurlError") != NULL);
      CHECK(cJSON_Compare(tu_jsonl_decode(&s, tu_attr(root, "mlflow.spanOutputs")), body, 1));
    }
    free(answer);
    free(partial);
    cJSON_free(bodies[i]);
    th_client_free(&c[i]);
  }
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

TEST(upstream_error_event_mid_stream) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  const char *prompt = "an error in the stream";
  char *body = chat_body(prompt, 1), *partial = first_tokens("Echo: an error in the stream", 2);
  th_batch b = {event_base_new(), 0, 0};
  th_client c = {0};
  /* Role, two tokens, then the upstream sends an error chunk. */
  const char *h[] = {"X-Fake-Error-After", "3", NULL};
  th_request(&b, &c, port, EVHTTP_REQ_POST, CHAT, body, h);
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  CHECK_EQ_INT(c.code, 200);
  sse_reply r;
  parse_sse_reply(c.body.p, c.body.len, &r);
  CHECK_EQ_INT(r.bad, 0);
  CHECK(!r.done);
  CHECK_EQ_INT(r.error_events, 1);
  CHECK(strstr(r.error_msg, "injected by X-Fake-Error-After") != NULL); /* the upstream's message */
  CHECK_EQ_STR(r.text[0].p, partial);
  REQUIRE_EQ_INT(s.n, 1);
  cJSON *root, *llm;
  proxy_spans(s.trace[0], &root, &llm);
  CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_jsonl_output_text(&s, root), r.text[0].p);
  CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strncmp(tu_status_msg(llm), "APIError: ", 10) == 0);
  CHECK_EQ_STR(tu_jsonl_llm_content(&s, llm), partial);
  sse_reply_free(&r);
  free(partial);
  cJSON_free(body);
  th_client_free(&c);
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 3. the client hangs up ------------------------------------------ */

/* One more request after a hang-up: the proxy still serves. */
static void check_still_serving(int port, const char *prompt) {
  char *body = chat_body(prompt, 0), *answer = echo_answer(prompt);
  th_batch b = {event_base_new(), 0, 0};
  th_client c = {0};
  th_request(&b, &c, port, EVHTTP_REQ_POST, CHAT, body, NULL);
  th_run(&b, 20);
  CHECK_EQ_INT(c.code, 200);
  cJSON *json = cJSON_Parse(c.body.p ? c.body.p : "");
  CHECK_EQ_STR(completion_content(json, 0), answer);
  cJSON_Delete(json);
  th_client_free(&c);
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
  int fd = th_connect_loopback(port);
  const char *h[] = {"X-Fake-Delay-Ms", "50", "X-Fake-Tokens", "40", NULL};
  th_raw_send(fd, "POST", "/v1/chat/completions", body, h);
  th_buf raw = {0};
  /* The headers and the first token ("The "), then hang up. */
  CHECK_EQ_INT(th_raw_read_until(fd, &raw, "\"content\":\"The \"", 10000), 0);
  close(fd);
  th_buf sse = {0};
  th_dechunk(raw.p, raw.len, &sse);
  CHECK(strncmp(raw.p, "HTTP/1.1 200", 12) == 0);
  char *last = sse.p ? strstr(sse.p, "\n\n") : NULL; /* complete events only */
  for (char *q = last; q; q = strstr(q + 2, "\n\n")) last = q;
  sse_reply r;
  parse_sse_reply(sse.p, last ? (size_t)(last + 2 - sse.p) : 0, &r);
  CHECK_EQ_INT(r.bad, 0);
  th_buf got = {0};
  th_buf_str(&got, r.text[0].p);
  sse_reply_free(&r);
  CHECK(tu_prefix_of("The ", got.p) && tu_prefix_of(got.p, full)); /* a slow proxy may send more at once */
  check_still_serving(port, "still there?");
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);

  REQUIRE_EQ_INT(s.n, 2);
  cJSON *t = trace_for_prompt(&s, "slow one"), *root, *llm;
  REQUIRE(t != NULL);
  CHECK_EQ_STR(tu_str(tu_info_obj(t), "state"), "ERROR");
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_ERROR");
  CHECK(strncmp(tu_status_msg(root), "ClientDisconnected", 18) == 0);
  CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strncmp(tu_status_msg(llm), "CancelledError", 14) == 0);
  /* The relayed text: at least what the client read, a strict prefix of
   * the answer, and all the LLM span assembled before the cancel. */
  const char *out = tu_jsonl_output_text(&s, root), *content = tu_jsonl_llm_content(&s, llm);
  CHECK(tu_prefix_of(got.p, out));
  CHECK(tu_prefix_of(out, full) && out && strlen(out) < strlen(full));
  CHECK_EQ_STR(content, out);
  CHECK_EQ_STR(tu_str(tu_info_obj(t), "response_preview"), out);
  /* Cancelled at the hang-up, not at the end of the 2 s stream. */
  double ms = tu_duration_ms(llm);
  if (ms >= 1500) tap_diag("LLM span lasted %.0f ms", ms);
  CHECK(ms >= 0 && ms < 1500);
  cJSON *ok = trace_for_prompt(&s, "still there?");
  REQUIRE(ok != NULL);
  CHECK_EQ_STR(tu_str(tu_info_obj(ok), "state"), "OK");
  free(full);
  cJSON_free(body);
  th_buf_free(&raw);
  th_buf_free(&sse);
  th_buf_free(&got);
  tu_jsonl_free(&s);
}

TEST(client_disconnect_before_first_token_cancels_upstream) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  /* The first event comes after 1.5 s; the client leaves after 0.2 s. */
  char *body = chat_body("impatient", 0);
  int fd = th_connect_loopback(port);
  const char *h[] = {"X-Fake-Delay-Ms", "1500", NULL};
  double t0 = th_now_ms();
  th_raw_send(fd, "POST", "/v1/chat/completions", body, h);
  usleep(200 * 1000);
  close(fd);
  /* Let the first event come due: a proxy that had not noticed would
   * only find out when it writes. */
  double left = 1700 - (th_now_ms() - t0);
  if (left > 0) usleep((useconds_t)(left * 1000));
  check_still_serving(port, "next");
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);

  REQUIRE_EQ_INT(s.n, 2);
  cJSON *t = trace_for_prompt(&s, "impatient"), *root, *llm;
  REQUIRE(t != NULL);
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_ERROR");
  CHECK(strncmp(tu_status_msg(root), "ClientDisconnected", 18) == 0);
  CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strncmp(tu_status_msg(llm), "CancelledError", 14) == 0);
  double ms = tu_duration_ms(llm);
  if (ms >= 1000) tap_diag("LLM span lasted %.0f ms", ms);
  CHECK(ms >= 0 && ms < 1000);
  CHECK_EQ_INT(tu_nevents(root, "mlflow.chunk.item."), 0);
  cJSON_free(body);
  tu_jsonl_free(&s);
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
  th_batch b = {event_base_new(), 0, 0};
  th_client c[2] = {{0}};
  for (int i = 0; i < 2; i++) {
    char prompt[32];
    snprintf(prompt, sizeof prompt, "fail with %s", statuses[i]);
    bodies[i] = chat_body(prompt, i);
    const char *h[] = {"X-Fake-Status", statuses[i], NULL};
    th_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  }
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);

  REQUIRE_EQ_INT(s.n, 2);
  for (int i = 0; i < 2; i++) {
    /* The client gets the upstream's status and error JSON. */
    CHECK_EQ_INT(c[i].code, atoi(statuses[i]));
    CHECK_EQ_STR(c[i].content_type, "application/json");
    cJSON *err = cJSON_GetObjectItemCaseSensitive(tu_jsonl_decode(&s, c[i].body.p), "error");
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message")));
    if (i == 1) CHECK_EQ_STR(tu_str(err, "code"), "rate_limit_exceeded");

    char prompt[32];
    snprintf(prompt, sizeof prompt, "fail with %s", statuses[i]);
    cJSON *t = trace_for_prompt(&s, prompt), *root, *llm;
    REQUIRE(t != NULL);
    CHECK_EQ_STR(tu_str(tu_info_obj(t), "state"), "ERROR");
    proxy_spans(t, &root, &llm);
    CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_ERROR");
    CHECK_EQ_INT(tu_nevents(root, "exception"), 1); /* UpstreamError */
    CHECK_EQ_STR(tu_attr(root, "http.response.status_code"), statuses[i]);
    CHECK_EQ_INT(tu_nevents(root, "mlflow.chunk.item."), 0);
    CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_ERROR");
    char want[32];
    snprintf(want, sizeof want, "HTTPError: HTTP %s", statuses[i]);
    CHECK(strncmp(tu_status_msg(llm), want, strlen(want)) == 0);
    CHECK_EQ_STR(tu_attr(llm, "http.response.status_code"), statuses[i]);
    if (i == 1) CHECK(strncmp(tu_status_msg(root), "UpstreamError: HTTPError: HTTP 429", 34) == 0);
    th_client_free(&c[i]);
    cJSON_free(bodies[i]);
  }
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

TEST(upstream_down_is_502) {
  char upstream[64];
  snprintf(upstream, sizeof upstream, "http://127.0.0.1:%d/v1", th_unused_port()); /* nobody listens */
  char path[64];
  int port;
  pid_t px = start_proxy(upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  char *body = chat_body("anyone?", 0);
  th_batch b = {event_base_new(), 0, 0};
  th_client c = {0};
  th_request(&b, &c, port, EVHTTP_REQ_POST, CHAT, body, NULL);
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  CHECK_EQ_INT(c.code, 502);
  cJSON *err = cJSON_GetObjectItemCaseSensitive(tu_jsonl_decode(&s, c.body.p), "error");
  CHECK(strstr(tu_str(err, "message") ? tu_str(err, "message") : "", "CurlError") != NULL);
  REQUIRE_EQ_INT(s.n, 1);
  cJSON *root, *llm;
  proxy_spans(s.trace[0], &root, &llm);
  CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_ERROR");
  CHECK(strncmp(tu_status_msg(llm), "CurlError", 9) == 0);
  CHECK_EQ_STR(tu_str(tu_info_obj(s.trace[0]), "request_preview"), "anyone?");
  cJSON_free(body);
  th_client_free(&c);
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 5. requests the proxy refuses ----------------------------------- */

TEST(bad_requests_are_refused_without_llm_call) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  th_batch b = {event_base_new(), 0, 0};
  th_client c[4] = {{0}};
  th_request(&b, &c[0], port, EVHTTP_REQ_POST, CHAT, "{not json", NULL);
  th_request(&b, &c[1], port, EVHTTP_REQ_POST, CHAT, "{\"model\":\"m\",\"messages\":[]}", NULL);
  th_request(&b, &c[2], port, EVHTTP_REQ_GET, CHAT, NULL, NULL);
  th_request(&b, &c[3], port, EVHTTP_REQ_POST, "/v1/other", "{}", NULL);
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  CHECK_EQ_INT(c[0].code, 400);
  CHECK_EQ_INT(c[1].code, 400);
  CHECK_EQ_INT(c[2].code, 405);
  CHECK_EQ_INT(c[3].code, 404);
  CHECK_EQ_INT(s.n, 4);
  for (int i = 0; i < s.n; i++) CHECK_EQ_INT(cJSON_GetArraySize(tu_spans(s.trace[i])), 1); /* no LLM call */
  for (int i = 0; i < 4; i++) th_client_free(&c[i]);
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 6. SIGTERM with streams in flight ------------------------------- */

#define N_INFLIGHT 5

typedef struct inflight {
  th_client *c;
  pid_t proxy;
  int signalled;
} inflight;

/* Once every client has a first token, SIGTERM the proxy. */
static void term_when_all_streaming(th_client *unused, void *arg) {
  inflight *f = arg;
  (void)unused;
  if (f->signalled) return;
  for (int i = 0; i < N_INFLIGHT; i++) /* the first token, not just the role chunk */
    if (!f->c[i].body.p || !strstr(f->c[i].body.p, "\"content\":\"The \"")) return;
  f->signalled = 1;
  kill(f->proxy, SIGTERM);
}

TEST(sigterm_cancels_streams_in_flight_and_flushes) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  th_batch b = {event_base_new(), 0, 0};
  th_client c[N_INFLIGHT] = {{0}};
  char *bodies[N_INFLIGHT];
  inflight f = {c, px, 0};
  /* 50 tokens, 100 ms apart: these streams would last over 5 s. */
  const char *h[] = {"X-Fake-Delay-Ms", "100", "X-Fake-Tokens", "50", NULL};
  for (int i = 0; i < N_INFLIGHT; i++) {
    char prompt[32];
    snprintf(prompt, sizeof prompt, "long %d", i);
    bodies[i] = chat_body(prompt, 1); /* streamed */
    c[i].on_chunk = term_when_all_streaming;
    c[i].hook_arg = &f;
    th_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  }
  double t0 = th_now_ms();
  th_run(&b, 20);
  CHECK(f.signalled);
  tu_jsonl s;
  stop_proxy(px, 0, path, &s);
  double ms = th_now_ms() - t0;
  if (ms >= 4000) tap_diag("shutdown took %.0f ms", ms);
  CHECK(ms < 4000.0 * tap_multiplier());

  char *full = tokens_answer(50);
  REQUIRE_EQ_INT(s.n, N_INFLIGHT);
  for (int i = 0; i < N_INFLIGHT; i++) {
    /* Each client got its reply ended after a truncated answer and an
     * error event. */
    CHECK_EQ_INT(c[i].code, 200);
    CHECK(!c[i].failed);
    sse_reply r;
    parse_sse_reply(c[i].body.p, c[i].body.len, &r);
    CHECK_EQ_INT(r.bad, 0);
    CHECK(!r.done);
    CHECK_EQ_INT(r.error_events, 1);
    CHECK(strstr(r.error_msg, "shutting down") != NULL);
    CHECK(r.text[0].len > 0 && r.text[0].len < strlen(full) && tu_prefix_of(r.text[0].p, full));
    char prompt[32];
    snprintf(prompt, sizeof prompt, "long %d", i);
    cJSON *t = trace_for_prompt(&s, prompt), *root, *llm;
    REQUIRE(t != NULL);
    proxy_spans(t, &root, &llm);
    CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_ERROR");
    CHECK(strncmp(tu_status_msg(root), "ServerShutdown", 14) == 0);
    CHECK_EQ_STR(tu_jsonl_output_text(&s, root), r.text[0].p);
    CHECK_EQ_STR(tu_status_code(llm), "STATUS_CODE_ERROR");
    CHECK(strncmp(tu_status_msg(llm), "CancelledError", 14) == 0);
    CHECK_EQ_STR(tu_jsonl_llm_content(&s, llm), r.text[0].p);
    sse_reply_free(&r);
    th_client_free(&c[i]);
    cJSON_free(bodies[i]);
  }
  free(full);
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 7. several choices, usage on request ---------------------------- */

/* A request for @p n choices, streamed (with usage) or not. */
static char *n_body(const char *prompt, int n, int stream) {
  cJSON *r = cJSON_CreateObject();
  cJSON_AddStringToObject(r, "model", "test-model");
  cJSON_AddNumberToObject(r, "n", n);
  if (stream) {
    cJSON_AddTrueToObject(r, "stream");
    cJSON_AddTrueToObject(cJSON_AddObjectToObject(r, "stream_options"), "include_usage");
  }
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "role", "user");
  cJSON_AddStringToObject(m, "content", prompt);
  cJSON_AddItemToArray(cJSON_AddArrayToObject(r, "messages"), m);
  char *t = cJSON_PrintUnformatted(r);
  cJSON_Delete(r);
  return t;
}

TEST(two_choices_kept_apart_and_usage_on_request) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  const char *prompt = "h\xC3\xA9llo w\xC3\xB6rld";
  char want[2][64];
  snprintf(want[0], sizeof want[0], "Echo: %s " CHECK_MARK, prompt);
  snprintf(want[1], sizeof want[1], "Echo #2: %s " CHECK_MARK, prompt);
  char *bodies[2] = {n_body(prompt, 2, 1), n_body(prompt, 2, 0)};
  th_batch b = {event_base_new(), 0, 0};
  th_client c[2] = {{0}};
  for (int i = 0; i < 2; i++) th_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], NULL);
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  REQUIRE_EQ_INT(s.n, 2);

  /* Streamed: each choice's tokens under its own index, one usage chunk. */
  sse_reply r;
  parse_sse_reply(c[0].body.p, c[0].body.len, &r);
  CHECK_EQ_INT(c[0].code, 200);
  CHECK_EQ_INT(r.bad, 0);
  CHECK(r.done);
  CHECK_EQ_INT(r.nchoices, 2);
  CHECK_EQ_STR(r.text[0].p, want[0]);
  CHECK_EQ_STR(r.text[1].p, want[1]);
  CHECK_EQ_INT(r.usage_chunks, 1);
  /* Not streamed: one chat.completion with both choices. */
  cJSON *json = tu_jsonl_decode(&s, c[1].body.p);
  CHECK_EQ_INT(c[1].code, 200);
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(json, "choices")), 2);
  CHECK_EQ_STR(completion_content(json, 0), want[0]);
  CHECK_EQ_STR(completion_content(json, 1), want[1]);

  for (int i = 0; i < 2; i++) {
    const char *tid = c[i].trace_id;
    cJSON *t = NULL, *root, *llm;
    for (int k = 0; k < s.n; k++)
      if (strcmp(tu_str(tu_info_obj(s.trace[k]), "trace_id"), tid) == 0) t = s.trace[k];
    REQUIRE(t != NULL);
    proxy_spans(t, &root, &llm);
    /* The request span: what the client assembled (several choices: the
     * chat.completion); the LLM span: one assembled choice per index. */
    cJSON *out = tu_jsonl_decode(&s, tu_attr(root, "mlflow.spanOutputs"));
    cJSON *llm_out = tu_jsonl_decode(&s, tu_attr(llm, "mlflow.spanOutputs"));
    for (int k = 0; k < 2; k++) {
      CHECK_EQ_STR(completion_content(out, k), want[k]);
      CHECK_EQ_STR(completion_content(llm_out, k), want[k]);
    }
    if (i == 1) CHECK(cJSON_Compare(out, json, 1));
    CHECK_EQ_INT(tu_nevents(root, "mlflow.chunk.item."), i == 0 ? r.events : 0);
    cJSON *u = tu_jsonl_decode(&s, tu_attr(llm, "mlflow.chat.tokenUsage"));
    CHECK_EQ_INT(usage_field(u, "output_tokens"), count_tokens(want[0]) + count_tokens(want[1]));
    th_client_free(&c[i]);
    cJSON_free(bodies[i]);
  }
  sse_reply_free(&r);
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 8. upstream framing quirks -------------------------------------- */

#define N_QUIRKS 6

TEST(upstream_framing_quirks_reach_client_as_valid_sse) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  /* Multi-byte UTF-8 of every length, split across writes by the quirks. */
  const char *prompt = "h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9D\x84\x9E w\xC3\xB6rld";
  static const char *const quirks[N_QUIRKS][4] = {
      {"X-Fake-Framing", "crlf", NULL, NULL},
      {"X-Fake-Framing", "comments", NULL, NULL},
      {"X-Fake-Framing", "split-utf8", NULL, NULL},
      {"X-Fake-Write-Bytes", "1", NULL, NULL},
      {"X-Fake-Write-Bytes", "3", "X-Fake-Framing", "crlf,comments"},
      {"X-Fake-Write-Bytes", "1", "X-Fake-Framing", "crlf,comments,split-utf8"},
  };
  char *body = chat_body(prompt, 1), *expected = echo_answer(prompt);
  th_batch b = {event_base_new(), 0, 0};
  th_client c[N_QUIRKS] = {{0}};
  for (int i = 0; i < N_QUIRKS; i++) {
    const char *h[] = {quirks[i][0], quirks[i][1], quirks[i][2], quirks[i][3], NULL};
    th_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, body, h);
  }
  th_run(&b, 30);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  REQUIRE_EQ_INT(s.n, N_QUIRKS);
  for (int i = 0; i < N_QUIRKS; i++) {
    sse_reply r;
    parse_sse_reply(c[i].body.p, c[i].body.len, &r);
    if (r.bad) tap_diag("quirk %s: %s", quirks[i][1], quirks[i][3] ? quirks[i][3] : "");
    CHECK_EQ_INT(c[i].code, 200);
    CHECK_EQ_INT(r.bad, 0); /* LF only, no comments, one data line per event */
    CHECK(r.done);
    CHECK_EQ_INT(r.chunks, count_tokens(expected) + 2);
    CHECK_EQ_STR(r.text[0].p, expected); /* byte-exact */
    cJSON *t = NULL, *root, *llm;
    for (int k = 0; k < s.n; k++)
      if (strcmp(tu_str(tu_info_obj(s.trace[k]), "trace_id"), c[i].trace_id) == 0) t = s.trace[k];
    REQUIRE(t != NULL);
    proxy_spans(t, &root, &llm);
    CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_OK");
    CHECK_EQ_STR(tu_jsonl_output_text(&s, root), expected);
    CHECK_EQ_STR(tu_jsonl_llm_content(&s, llm), expected);
    CHECK(tu_attr(llm, "mltrace.sse.malformed") == NULL);
    sse_reply_free(&r);
    th_client_free(&c[i]);
  }
  free(expected);
  cJSON_free(body);
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 9. an empty answer; the model list ------------------------------ */

TEST(empty_answer_is_empty_string_and_models_pass_through) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  char *bodies[2] = {chat_body("say nothing", 1), chat_body("say nothing", 0)};
  th_batch b = {event_base_new(), 0, 0};
  th_client c[3] = {{0}};
  const char *h[] = {"X-Fake-Tokens", "0", NULL};
  for (int i = 0; i < 2; i++) th_request(&b, &c[i], port, EVHTTP_REQ_POST, CHAT, bodies[i], h);
  th_request(&b, &c[2], port, EVHTTP_REQ_GET, "/v1/models", NULL, NULL);
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  REQUIRE_EQ_INT(s.n, 3);
  for (int i = 0; i < 3; i++) {
    cJSON *t = NULL, *root, *llm;
    for (int k = 0; k < s.n; k++)
      if (strcmp(tu_str(tu_info_obj(s.trace[k]), "trace_id"), c[i].trace_id) == 0) t = s.trace[k];
    REQUIRE(t != NULL);
    CHECK_EQ_INT(c[i].code, 200);
    CHECK_EQ_STR(tu_str(tu_info_obj(t), "state"), "OK");
    if (i == 0) {
      /* Streamed: role and finish chunks, [DONE]; the output is "". */
      sse_reply r;
      parse_sse_reply(c[i].body.p, c[i].body.len, &r);
      CHECK_EQ_INT(r.bad, 0);
      CHECK(r.done);
      CHECK_EQ_STR(r.text[0].p, "");
      proxy_spans(t, &root, &llm);
      const char *out = tu_jsonl_output_text(&s, root);
      CHECK(out != NULL && *out == '\0');
      sse_reply_free(&r);
    } else if (i == 1) {
      proxy_spans(t, &root, &llm);
      cJSON *json = tu_jsonl_decode(&s, c[i].body.p);
      CHECK_EQ_STR(completion_content(json, 0), "");
      CHECK(cJSON_Compare(tu_jsonl_decode(&s, tu_attr(root, "mlflow.spanOutputs")), json, 1));
    } else {
      /* GET /v1/models: the upstream's list, as it is. */
      cJSON *json = tu_jsonl_decode(&s, c[i].body.p);
      cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json, "data"), 0);
      CHECK_EQ_STR(tu_str(json, "object"), "list");
      CHECK_EQ_STR(tu_str(m0, "id"), "fake-gpt");
      root = tu_root(t);
      REQUIRE(root != NULL);
      CHECK_EQ_STR(tu_str(root, "name"), "GET /v1/models");
      CHECK(cJSON_Compare(tu_jsonl_decode(&s, tu_attr(root, "mlflow.spanOutputs")), json, 1));
    }
    th_client_free(&c[i]);
    if (i < 2) cJSON_free(bodies[i]);
  }
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

/* ---- 10. an upstream that cannot stream ------------------------------ */

TEST(upstream_json_reply_relayed_to_streaming_client) {
  NEED_FAKE();
  char path[64];
  int port;
  pid_t px = start_proxy(g_upstream, path, sizeof path, &port);
  REQUIRE(px > 0);
  const char *prompt = "no stream here";
  char *body = chat_body(prompt, 1), *expected = echo_answer(prompt);
  th_batch b = {event_base_new(), 0, 0};
  th_client c[2] = {{0}};
  const char *h[] = {"X-Fake-Ignore-Stream", "1", NULL};
  th_request(&b, &c[0], port, EVHTTP_REQ_POST, CHAT, body, h);
  th_request(&b, &c[1], port, EVHTTP_REQ_POST, "/v1/responses", "{\"model\":\"m\",\"stream\":true,\"input\":\"hi\"}", h);
  th_run(&b, 20);
  tu_jsonl s;
  stop_proxy(px, SIGTERM, path, &s);
  REQUIRE_EQ_INT(s.n, 2);
  /* Chat: one chunk carrying the whole message, then [DONE]. */
  sse_reply r;
  parse_sse_reply(c[0].body.p, c[0].body.len, &r);
  CHECK_EQ_INT(c[0].code, 200);
  CHECK_EQ_INT(r.bad, 0);
  CHECK(r.done);
  CHECK_EQ_INT(r.chunks, 1);
  CHECK_EQ_INT(r.usage_chunks, 0); /* not asked for */
  CHECK_EQ_STR(r.text[0].p, expected);
  cJSON *t = trace_for_prompt(&s, prompt), *root, *llm;
  REQUIRE(t != NULL);
  proxy_spans(t, &root, &llm);
  CHECK_EQ_STR(tu_status_code(root), "STATUS_CODE_OK");
  CHECK_EQ_STR(tu_jsonl_output_text(&s, root), expected);
  CHECK_EQ_STR(tu_jsonl_llm_content(&s, llm), expected);
  /* Responses: one response.completed event carrying the Response. */
  CHECK_EQ_INT(c[1].code, 200);
  CHECK(c[1].body.p && strncmp(c[1].body.p, "event: response.completed\ndata: {", 33) == 0);
  cJSON *rt = trace_for_prompt(&s, "hi");
  REQUIRE(rt != NULL);
  CHECK_EQ_STR(tu_jsonl_output_text(&s, tu_root(rt)), "Echo: hi " CHECK_MARK);
  sse_reply_free(&r);
  for (int i = 0; i < 2; i++) th_client_free(&c[i]);
  free(expected);
  cJSON_free(body);
  event_base_free(b.base);
  tu_jsonl_free(&s);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (th_fake_openai_start() != 0) printf("# fake-openai unavailable: the tests skip\n");
  snprintf(g_upstream, sizeof g_upstream, "http://127.0.0.1:%d", th_fake_port);
  static const tap_test tests[] = {
      TAP_ENTRY(fifty_concurrent_streams_one_trace_each),
      TAP_ENTRY(upstream_disconnect_mid_stream),
      TAP_ENTRY(upstream_error_event_mid_stream),
      TAP_ENTRY(client_disconnect_mid_stream_cancels_upstream),
      TAP_ENTRY(client_disconnect_before_first_token_cancels_upstream),
      TAP_ENTRY(upstream_http_error_before_first_token),
      TAP_ENTRY(upstream_down_is_502),
      TAP_ENTRY(bad_requests_are_refused_without_llm_call),
      TAP_ENTRY(sigterm_cancels_streams_in_flight_and_flushes),
      TAP_ENTRY(two_choices_kept_apart_and_usage_on_request),
      TAP_ENTRY(upstream_framing_quirks_reach_client_as_valid_sse),
      TAP_ENTRY(empty_answer_is_empty_string_and_models_pass_through),
      TAP_ENTRY(upstream_json_reply_relayed_to_streaming_client),
      TAP_END,
  };
  int rc = tap_main(argc, argv, tests);
  th_fake_openai_stop();
  return rc;
}
