/* test_chat_scan.c: the chat stream aggregator's chunk scanner
 * (integrations/curl/chat_stream.c) against the cJSON path it stands in
 * for.  The scanner reads the common chat.completion.chunk in one pass and
 * gives up on anything else, which then goes through cJSON; so every input
 * must give the same transcript (every hook call with its arguments, every
 * malformed report, the final result, usage, content, counters) with the
 * scanner on and off.  Built from the sources (the switch is internal), like
 * the fuzz target, which makes the same comparison on random inputs. */
#include "curl-internal.h"

#include <mltrace/sse.h>

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "buf.h"
#include "numlocale.h"
#include "tap.h"

/* ---- transcripts ------------------------------------------------------- */

/* A string with its length, so that bytes after a NUL show too. */
static void sb_val(th_buf *b, const char *s, size_t n) {
  th_buf_printf(b, "[%zu]", n);
  th_buf_add(b, s, n);
}

typedef struct run_state {
  th_buf log;
  size_t scanned; /* chunks the scanner read */
  size_t chunks;
} run_state;

static void on_chunk(const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  run_state *r = ud;
  CHECK(delta[dlen] == '\0');
  th_buf_str(&r->log, "chunk ");
  sb_val(&r->log, json, len);
  th_buf_str(&r->log, " delta ");
  sb_val(&r->log, delta, dlen);
  th_buf_str(&r->log, "\n");
}

static void on_malformed(const char *reason, const char *data, size_t len, void *ud) {
  run_state *r = ud;
  th_buf_printf(&r->log, "malformed %s ", reason);
  sb_val(&r->log, data, len);
  th_buf_str(&r->log, "\n");
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static void log_choice(th_buf *b, int index, const char *role, const char *content, size_t content_len,
                       const char *refusal, size_t refusal_len, const char *finish, size_t ntools) {
  th_buf_printf(b, " {%d role ", index);
  sb_val(b, role, strlen(role));
  th_buf_str(b, " content ");
  sb_val(b, content, content_len);
  th_buf_str(b, " refusal ");
  sb_val(b, refusal, refusal_len);
  th_buf_str(b, " finish ");
  sb_val(b, finish, strlen(finish));
  th_buf_printf(b, " tools %zu}", ntools);
}

/* The internal hook: what call.c's chunk callback view would show (built
 * from the cJSON tree as call.c does, or taken from the scanner). */
static void on_json(const char *event, size_t event_len, const char *data, size_t len, const struct cJSON *chunk,
                    const mlt_curl_choice_delta *choices, size_t n_choices, const char *delta0, void *ud) {
  run_state *r = ud;
  (void)data, (void)len;
  r->chunks++;
  th_buf_str(&r->log, "json ");
  sb_val(&r->log, event, event_len);
  th_buf_str(&r->log, " delta0 ");
  if (delta0)
    sb_val(&r->log, delta0, strlen(delta0));
  else
    th_buf_str(&r->log, "(null)");
  if (!chunk) {
    r->scanned++;
    CHECK(n_choices == 0 || choices != NULL);
    for (size_t i = 0; i < n_choices; i++) {
      const mlt_curl_choice_delta *d = &choices[i];
      CHECK(d->content[d->content_len] == '\0' && d->refusal[d->refusal_len] == '\0');
      log_choice(&r->log, d->index, d->role, d->content, d->content_len, d->refusal, d->refusal_len,
                 d->finish_reason, d->n_tool_calls);
    }
  } else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(chunk, "choices"))) {
    const cJSON *ch;
    int i = 0;
    cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(chunk, "choices")) {
      const cJSON *idx = cJSON_GetObjectItemCaseSensitive(ch, "index");
      const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
      const cJSON *calls = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
      const char *content = jstr(delta, "content"), *refusal = jstr(delta, "refusal");
      log_choice(&r->log, cJSON_IsNumber(idx) ? idx->valueint : i, jstr(delta, "role"), content, strlen(content),
                 refusal, strlen(refusal), jstr(ch, "finish_reason"),
                 cJSON_IsArray(calls) ? (size_t)cJSON_GetArraySize(calls) : 0);
      i++;
    }
  }
  th_buf_str(&r->log, "\n");
}

/* print(parse(text)) with cJSON: the text cJSON itself would print. */
static char *cjson_reprint(const char *text) {
  cJSON *j = cJSON_Parse(text);
  if (!j) return NULL;
  char *t = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return t;
}

static void describe(mlt_chat_stream *s, int finish_rc, run_state *r) {
  size_t len = 0, clen = 0;
  char *res = mlt_chat_stream_result_json(s, &len);
  REQUIRE(res != NULL);
  CHECK_EQ_INT(len, strlen(res));
  /* written as cJSON prints it */
  char *again = cjson_reprint(res);
  if (!again || strcmp(again, res) != 0) {
    tap_diag("result is not cJSON's own printing:\n%s\ncJSON:\n%s", res, again ? again : "(does not parse)");
    CHECK(0);
  }
  cJSON_free(again);
  char *usage = mlt_chat_stream_usage_json(s);
  const char *content = mlt_chat_stream_content(s, &clen);
  const char *err = mlt_chat_stream_error_message(s);
  th_buf_printf(&r->log, "finish %d done %d chunks %zu malformed %zu\nresult ", finish_rc, mlt_chat_stream_is_done(s),
            mlt_chat_stream_chunk_count(s), mlt_chat_stream_malformed_count(s));
  th_buf_str(&r->log, res);
  th_buf_str(&r->log, "\nusage ");
  th_buf_str(&r->log, usage ? usage : "(none)");
  th_buf_str(&r->log, "\nmodel ");
  th_buf_str(&r->log, mlt_chat_stream_model(s));
  th_buf_str(&r->log, "\ncontent ");
  sb_val(&r->log, content, clen);
  th_buf_str(&r->log, "\nfinish_reason ");
  th_buf_str(&r->log, mlt_chat_stream_finish_reason(s));
  th_buf_str(&r->log, "\nerror ");
  th_buf_str(&r->log, err ? err : "(none)");
  th_buf_str(&r->log, "\n");
  free(res);
  free(usage);
}

/* Feed a copy in an exact-size buffer (reads past the end show under ASan
 * and valgrind: the input is not NUL-terminated). */
static int feed_exact(mlt_chat_stream *s, const char *p, size_t n, int as_data) {
  char *copy = malloc(n ? n : 1);
  REQUIRE(copy != NULL);
  memcpy(copy, p, n);
  int rc = as_data ? mlt_chat_stream_add_data(s, copy, n) : mlt_chat_stream_feed(s, copy, n);
  free(copy);
  return rc;
}

/* Run events (as_data: each one payload; else one SSE byte stream in
 * pieces[0]) through an aggregator, the scanner on or off. */
static run_state run(const char *const *pieces, const size_t *lens, size_t n, int as_data, int scan) {
  run_state r = {0};
  mlt_chat_stream *s = NULL;
  REQUIRE_EQ_INT(mlt_chat_stream_new(&s), MLT_OK);
  mlt__chat_stream_set_scan(s, scan);
  mlt_chat_stream_set_hooks(s, on_chunk, on_malformed, &r);
  mlt__chat_stream_set_json_hook(s, on_json);
  for (size_t i = 0; i < n; i++) CHECK_EQ_INT(feed_exact(s, pieces[i], lens[i], as_data), MLT_OK);
  int rc = mlt_chat_stream_finish(s);
  describe(s, rc, &r);
  mlt_chat_stream_free(s);
  return r;
}

static size_t g_compared;

/* Both ways: the same transcript.  Returns the chunks the scanner read. */
static size_t same_both_ways(const char *const *pieces, const size_t *lens, size_t n, int as_data) {
  run_state a = run(pieces, lens, n, as_data, 1), b = run(pieces, lens, n, as_data, 0);
  CHECK_EQ_INT(b.scanned, 0);
  if (strcmp(a.log.p, b.log.p) != 0) {
    tap_diag("scanner and cJSON differ; input:");
    for (size_t i = 0; i < n; i++) tap_diag("  [%zu] %.*s", i, (int)lens[i], pieces[i]);
    tap_diag("scanner:\n%s\ncJSON:\n%s", a.log.p, b.log.p);
    CHECK(0);
  }
  g_compared++;
  free(a.log.p);
  free(b.log.p);
  return a.scanned;
}

/* One payload P between a role chunk and a content chunk, then [DONE]. */
static size_t check_between(const char *p, size_t n) {
  static const char role[] =
      "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
      "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}";
  static const char after[] = "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" end\"}}]}";
  const char *pieces[] = {role, p, after, "[DONE]"};
  size_t lens[] = {sizeof role - 1, n, sizeof after - 1, 6};
  return same_both_ways(pieces, lens, 4, 1);
}

static size_t check_str(const char *p) { return check_between(p, strlen(p)); }

/* ---- fixtures ------------------------------------------------------------ */

static const char *const fixtures[] = {
    "plain_content",  "content_usage",    "parallel_tool_calls", "crlf_keepalive", "event_id_fields",
    "multiline_data", "malformed_middle", "error_chunk",         "truncated",      "n2_choices",
    "bom_cr_only",    "responses_text",   "responses_tools",     "responses_error", "responses_truncated"};

TEST(fixtures_same_both_ways) {
  for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
    size_t n = 0;
    char *in = th_fixture("sse", fixtures[i], ".sse", &n);
    const char *pieces[] = {in};
    size_t scanned = same_both_ways(pieces, &n, 1, 0);
    tap_diag("%s: %zu chunks read by the scanner", fixtures[i], scanned);
    free(in);
  }
}

/* The chunk as examples/fake-openai and OpenAI send it: the scanner's case. */
static const char fake_chunk[] =
    "{\"id\":\"chatcmpl-fake-1952\",\"object\":\"chat.completion.chunk\",\"created\":1796634726,\"model\":\"fake-gpt\","
    "\"system_fingerprint\":\"fp_fake\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Echo \\u2713\\n\\\"q\\\"\"},"
    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}";
static const char openai_chunk[] =
    "{\"id\":\"chatcmpl-AbC\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":\"gpt-4o-mini\","
    "\"service_tier\":\"default\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"content\":\" world\"},\"logprobs\":null,\"finish_reason\":null}],\"obfuscation\":\"x9Y\"}";

TEST(scanner_reads_the_common_chunks) {
  CHECK_EQ_INT(check_str(fake_chunk), 3);
  CHECK_EQ_INT(check_str(openai_chunk), 3);
  size_t n = 0;
  char *in = th_fixture("sse", "plain_content", ".sse", &n);
  const char *pieces[] = {in};
  run_state r = run(pieces, &n, 1, 0, 1);
  CHECK(r.chunks > 0);
  CHECK_EQ_INT(r.scanned, r.chunks);
  free(r.log.p);
  free(in);
}

/* Inputs at the scanner's edges: each must give cJSON's outcome. */
static const char *const edge_cases[] = {
    /* strings and escapes */
    "{\"choices\":[{\"delta\":{\"content\":\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"\\u00e9\\u2713\\ud83d\\ude00\\u0041\\u007f\\u0080\\u07ff\\u0800\\uffff\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"lone \\ud83d high\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"lone \\ude00 low\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"pair \\ud83d\\u0041 bad\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"nul \\u0000 in\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"bad \\x escape\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"short \\u12\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"hex \\uZZZZ\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"raw \x01 control\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"tab\tin\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"bad utf8 \xff\xfe \xc3\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":null,\"refusal\":\"no\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":5,\"role\":7,\"refusal\":[1]}}]}",
    "{\"choices\":[{\"delta\":{\"role\":\"\"}}]}",
    /* member names */
    "{\"\\u0069d\":\"escaped-key\",\"choices\":[]}",
    "{\"i\\\"d\":\"quote-key\",\"choices\":[]}",
    "{\"\":1,\"choices\":[]}",
    "{\"id\":\"a\",\"id\":\"b\",\"choices\":[]}",
    "{\"id\":1,\"id\":\"b\",\"choices\":[]}",
    "{\"model\":\"a\",\"model\":\"b\"}",
    "{\"choices\":[],\"choices\":[{\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"b\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"a\"},\"delta\":{\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":0,\"index\":1}]}",
    "{\"choices\":[{\"finish_reason\":\"stop\",\"finish_reason\":\"length\"}]}",
    "{\"created\":1,\"created\":2}",
    "{\"system_fingerprint\":\"a\",\"system_fingerprint\":\"b\"}",
    /* index */
    "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"one\"}}]}",
    "{\"choices\":[{\"index\":01,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":-1,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":-0,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":1.0,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":1.5,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":1e0,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":2147483647,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":2147483648,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":99999999999,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":\"0\",\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":null,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":true,\"delta\":{\"content\":\"x\"}}]}",
    "{\"choices\":[{\"index\":1-2,\"delta\":{\"content\":\"x\"}}]}",
    /* choices and deltas */
    "{\"choices\":[]}",
    "{\"choices\":{}}",
    "{\"choices\":\"x\"}",
    "{\"choices\":null}",
    "{\"choices\":[1]}",
    "{\"choices\":[null]}",
    "{\"choices\":[[]]}",
    "{\"choices\":[{}]}",
    "{\"choices\":[{\"delta\":\"text\"}]}",
    "{\"choices\":[{\"delta\":null}]}",
    "{\"choices\":[{\"delta\":[]}]}",
    "{\"choices\":[{\"delta\":{}}]}",
    "{\"choices\":[{\"delta\":{\"tool_calls\":null,\"content\":\"t\"}}]}",
    "{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}",
    "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}",
    "{\"choices\":[{\"delta\":{\"tool_calls\":{}}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}},{\"index\":1,\"delta\":{\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"}},{\"index\":0,\"delta\":{\"content\":\"a\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"a\"}},{\"delta\":{\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}},{\"index\":0,\"delta\":{\"content\":\"b\"}}]}",
    "{\"choices\":[{},{},{},{},{},{},{},{}]}",
    "{\"choices\":[{},{},{},{},{},{},{},{},{}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}",
    "{\"choices\":[{\"finish_reason\":\"\"}]}",
    "{\"choices\":[{\"finish_reason\":3}]}",
    "{\"choices\":[{\"logprobs\":{\"content\":[{\"token\":\"a\",\"logprob\":-0.1,\"bytes\":[97]}]},"
    "\"delta\":{\"content\":\"a\"}}]}",
    /* top-level members */
    "{\"usage\":null,\"choices\":[]}",
    "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5},\"choices\":[]}",
    "{\"usage\":5}",
    "{\"usage\":\"x\"}",
    "{\"error\":null,\"choices\":[]}",
    "{\"error\":{\"message\":\"boom\"}}",
    "{\"error\":\"boom\"}",
    "{\"type\":\"x\",\"choices\":[]}",
    "{\"type\":\"response.created\",\"response\":{\"id\":\"r\"}}",
    "{\"type\":\"error\",\"message\":\"m\"}",
    "{\"created\":1.5}",
    "{\"created\":-1}",
    "{\"created\":1e400}",
    "{\"created\":-1e400}",
    "{\"created\":\"x\"}",
    "{\"created\":12345678901234567890}",
    "{\"created\":0.1}",
    "{\"created\":1E2}",
    "{\"created\":1e-2}",
    "{\"created\":-0}",
    "{\"created\":1234567890123456789012345678901234567890123}",
    "{\"id\":\"\",\"model\":\"\",\"system_fingerprint\":\"\"}",
    "{\"system_fingerprint\":null}",
    "{\"id\":\"x\\n\\u0001y\",\"model\":\"m\\u001f\"}",
    /* grammar */
    "{}",
    "  {\"choices\":[]}  \r\n\t",
    "{ \"choices\" : [ { \"delta\" : { \"content\" : \"sp\" } } ] }",
    "{\"choices\":[]} x",
    "{\"choices\":[]}}",
    "{\"choices\":[]},",
    "{\"choices\":[]}\x01",
    "\x01{\"choices\":[]}",
    "\xef\xbb\xbf{\"choices\":[]}",
    "{\"choices\":[],}",
    "{\"choices\":[,]}",
    "{\"choices\":[{},]}",
    "{\"a\":[1,2,]}",
    "{\"a\" 1}",
    "{\"a\":}",
    "{a:1}",
    "{'a':1}",
    "{\"a\":1 \"b\":2}",
    "{\"a\":tru}",
    "{\"a\":nul}",
    "{\"a\":falsey}",
    "{\"a\":true,\"b\":false,\"c\":null}",
    "{\"a\":01}",
    "{\"a\":1.}",
    "{\"a\":.5}",
    "{\"a\":-}",
    "{\"a\":+1}",
    "{\"a\":1e}",
    "{\"a\":1e+}",
    "{\"a\":-0.0e-0}",
    "{\"a\":Infinity}",
    "{\"a\":NaN}",
    "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    "{\"a\":{\"b\":{\"c\":[{\"d\":\"e\\\"}\"}]}}}",
    "[1,2]",
    "\"text\"",
    "42",
    "null",
    "{",
    "{\"",
    "{\"choices\":[{\"delta\":{\"content\":\"unterminated",
    "{\"choices\":[{\"delta\":{\"content\":\"x\"}}",
    "{\"a\":\"\\",
    "{\"a\":\"\\u",
    "{\"a\":\"\\ud83d\\u",
};

TEST(edge_cases_same_both_ways) {
  for (size_t i = 0; i < sizeof edge_cases / sizeof *edge_cases; i++) check_str(edge_cases[i]);
  /* with a NUL byte inside and after the object */
  static const char nul_in[] = "{\"choices\":[{\"delta\":{\"content\":\"a\0b\"}}]}";
  static const char nul_after[] = "{\"choices\":[]}\0";
  check_between(nul_in, sizeof nul_in - 1);
  check_between(nul_after, sizeof nul_after - 1);
  /* events larger than the scanner's stack buffer (1 KiB), twice (the heap
   * buffer is kept) */
  for (size_t size = 1000; size <= 9000; size += 4000) {
    th_buf big = {0};
    th_buf_str(&big, "{\"id\":\"big\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    for (size_t i = 0; i < size / 10; i++) th_buf_str(&big, "ab\\n\\u2713c");
    th_buf_str(&big, "\"}}]}");
    const char *pieces[] = {big.p, big.p, "[DONE]"};
    size_t lens[] = {big.len, big.len, 6};
    CHECK_EQ_INT(same_both_ways(pieces, lens, 3, 1), 2);
    free(big.p);
  }
  tap_diag("%zu inputs compared", g_compared);
}

/* Every prefix of the common chunks, every byte deleted, replaced or
 * preceded by each of a few bytes that matter to the grammar. */
TEST(mutations_same_both_ways) {
  static const char subst[] = "\"\\{}[],: x0-.e\x01\xc3nu";
  const char *bases[] = {fake_chunk, openai_chunk};
  for (size_t b = 0; b < 2; b++) {
    const char *base = bases[b];
    size_t n = strlen(base);
    char *buf = malloc(n + 2);
    REQUIRE(buf != NULL);
    for (size_t i = 0; i <= n; i++) check_between(base, i); /* prefixes */
    for (size_t i = 0; i < n; i++) {
      memcpy(buf, base, i); /* byte i deleted */
      memcpy(buf + i, base + i + 1, n - i - 1);
      check_between(buf, n - 1);
      for (size_t k = 0; k < sizeof subst - 1; k++) {
        memcpy(buf, base, n); /* replaced */
        buf[i] = subst[k];
        check_between(buf, n);
        memcpy(buf, base, i); /* inserted */
        buf[i] = subst[k];
        memcpy(buf + i + 1, base + i, n - i);
        check_between(buf, n + 1);
      }
    }
    free(buf);
  }
  tap_diag("%zu inputs compared", g_compared);
}

/* mlt__json_print() (the writer call.c prints request members with, and
 * the result is written with) against cJSON_PrintUnformatted(): the same
 * text for every value, written into a caller's buffer of every size
 * (moving to the heap at every point) or straight to the heap. */
static void check_print(const cJSON *v, int every_cap) {
  char *want = cJSON_PrintUnformatted(v);
  REQUIRE(want != NULL);
  size_t n = strlen(want), len = 0;
  char *got = mlt__json_print(v, NULL, 0, &len);
  if (!got || strcmp(got, want) != 0 || len != n) {
    tap_diag("mlt__json_print: %s\ncJSON: %s", got ? got : "(NULL)", want);
    CHECK(0);
  }
  free(got);
  char *stack = malloc(n + 2);
  REQUIRE(stack != NULL);
  size_t step = !every_cap ? n / 2 + 1 : n > 64 ? n / 16 : 1;
  for (size_t cap = 0; cap <= n + 1; cap += step) {
    got = mlt__json_print(v, stack, cap, &len);
    int ok = got && strcmp(got, want) == 0 && len == n;
    if (!ok) {
      tap_diag("cap %zu: %s", cap, got ? got : "(NULL)");
      CHECK(0);
    }
    if (got != stack) free(got);
    if (step > 1 && cap < n && cap + step > n) cap = n - step; /* n and n + 1 too */
  }
  free(stack);
  cJSON_free(want);
  g_compared++;
}

TEST(json_print_is_cjsons) {
  static const char *const texts[] = {
      "{}", "[]", "{\"a\":[]}", "[{},[],{\"b\":{}}]", "null", "true", "false", "0", "-0", "-0.0", "1e15", "-1e15",
      "999999999999999", "-999999999999999", "123456789012345678", "0.1", "1.5e-7", "1e300", "-2.5e-300",
      "3.141592653589793", "2147483648", "-2147483649", "\"\"", "\"plain text\"",
      "\"quote \\\" backslash \\\\ slash \\/ nl \\n cr \\r tab \\t bs \\b ff \\f\"",
      "\"ctl \\u0001\\u001f\\u007f end\"", "\"utf8 \\u00e9 \\u2713 \\ud83d\\ude00\"",
      "{\"model\":\"fake-gpt\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"temperature\":0.7,"
      "\"max_tokens\":256,\"stop\":[\"\\n\",\"END\"],\"n\":null,\"tools\":[{\"type\":\"function\",\"function\":"
      "{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]}",
      "{\"k\\\"ey\":1,\"\":2,\"\\u0000x\":3}",
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    cJSON *j = cJSON_Parse(texts[i]);
    if (!j) {
      tap_diag("does not parse: %s", texts[i]);
      CHECK(0);
      continue;
    }
    check_print(j, 1);
    cJSON_Delete(j);
  }
  /* integers of every digit count, both signs (the writer prints them itself) */
  double p10 = 1;
  for (int k = 0; k <= 16; k++, p10 *= 10) {
    const double vals[] = {p10 - 1, p10, p10 + 1, -p10, -(p10 - 1), 7 * p10, 99 * p10};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
      cJSON *num = cJSON_CreateNumber(vals[i]);
      REQUIRE(num != NULL);
      check_print(num, 0);
      cJSON_Delete(num);
    }
  }
  /* every byte value, at every position within a machine word, in strings
   * of several lengths (the writer copies 8 bytes at a time) */
  char s[64];
  for (int c = 1; c < 256; c++) {
    static const size_t lens[] = {1, 7, 8, 9, 12, 16, 17, 23};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
      size_t len = lens[li];
      for (size_t at = 0; at < len; at++) {
        memset(s, 'x', len);
        s[len] = '\0';
        s[at] = (char)c;
        cJSON *str = cJSON_CreateString(s);
        REQUIRE(str != NULL);
        check_print(str, 0);
        cJSON_Delete(str);
      }
    }
  }
  /* a long string with an escape every few bytes, and a long key */
  th_buf big = {0};
  for (int i = 0; i < 500; i++) th_buf_str(&big, i % 3 ? "abcdefg\"" : "\x01xyz\\");
  cJSON *o = cJSON_CreateObject();
  REQUIRE(o != NULL);
  cJSON_AddStringToObject(o, big.p, big.p);
  cJSON_AddNumberToObject(o, "n", 1.0 / 3.0);
  check_print(o, 1);
  cJSON_Delete(o);
  free(big.p);
  /* what cJSON cannot print, neither does the writer */
  cJSON *raw = cJSON_CreateRaw("[1, 2]");
  REQUIRE(raw != NULL);
  check_print(raw, 1);
  cJSON_free(raw->valuestring);
  raw->valuestring = NULL;
  CHECK(cJSON_PrintUnformatted(raw) == NULL);
  CHECK(mlt__json_print(raw, NULL, 0, NULL) == NULL);
  cJSON_Delete(raw);
  cJSON *arr = cJSON_CreateArray(), *bad = cJSON_CreateNull();
  REQUIRE(arr != NULL && bad != NULL);
  bad->type = cJSON_Invalid;
  cJSON_AddItemToArray(arr, bad);
  CHECK(cJSON_PrintUnformatted(arr) == NULL);
  char stack[8];
  CHECK(mlt__json_print(arr, stack, sizeof stack, NULL) == NULL);
  cJSON_Delete(arr);
  CHECK(mlt__json_print(NULL, NULL, 0, NULL) == NULL);
  tap_diag("%zu values compared", g_compared);
}

/* Under a locale whose decimal point is a comma: the writer prints
 * numbers as cJSON does (with a dot), and the scanner reads them as
 * cJSON's parser does. */
TEST(comma_locale_same_as_cjson) {
  if (!tl_comma_locale()) TAP_SKIP("no locale with a comma decimal point (localedef failed)");
  static const char *const texts[] = {"0.1", "-2.5e-300", "1.5e-7", "3.141592653589793", "1e300", "0.7",
                                      "{\"temperature\":0.7,\"top_p\":0.95,\"n\":1}"};
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    cJSON *j = cJSON_Parse(texts[i]);
    REQUIRE(j != NULL);
    check_print(j, 0);
    char *got = mlt__json_print(j, NULL, 0, NULL);
    CHECK(got != NULL && strchr(got, ',') == NULL ? 1 : strchr(texts[i], ',') != NULL);
    free(got);
    cJSON_Delete(j);
  }
  check_str("{\"id\":\"c\",\"created\":1.5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}");
  check_str("{\"id\":\"c\",\"created\":1677664795.25,\"choices\":[]}");
  tl_c_locale();
}

static const tap_test tests[] = {TAP_ENTRY(fixtures_same_both_ways), TAP_ENTRY(scanner_reads_the_common_chunks),
                                 TAP_ENTRY(edge_cases_same_both_ways), TAP_ENTRY(mutations_same_both_ways),
                                 TAP_ENTRY(json_print_is_cjsons), TAP_ENTRY(comma_locale_same_as_cjson), TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
