/* test_sse.c: SSE parser and chat completion stream aggregator. */
#include <mltrace/sse.h>

#include <cjson/cJSON.h>
#include <malloc.h>
#include <sys/stat.h>

#include "buf.h"
#include "tap.h"

static const char *const fixtures[] = {"plain_content",  "content_usage",    "parallel_tool_calls",
                                       "crlf_keepalive", "event_id_fields",  "multiline_data",
                                       "malformed_middle", "error_chunk",    "truncated",
                                       "n2_choices",     "bom_cr_only",
                                       /* Responses API streams (examples/fake-openai) */
                                       "responses_text", "responses_tools",  "responses_error",
                                       "responses_truncated"};
#define NFIXTURES (sizeof fixtures / sizeof fixtures[0])

/* ---- SSE parser: recording events ----------------------------------------- */

typedef struct rec {
  th_buf log; /* one "event|id|data" line per event */
  int n, stop_at, discards;
  size_t discard_bytes;
} rec;

static int rec_event(const char *event, size_t event_len, const char *data, size_t data_len, const char *id,
                     size_t id_len, void *ud) {
  rec *r = ud;
  CHECK(event[event_len] == '\0' && data[data_len] == '\0' && id[id_len] == '\0');
  th_buf_add(&r->log, event, event_len);
  th_buf_add(&r->log, "|", 1);
  th_buf_add(&r->log, id, id_len);
  th_buf_add(&r->log, "|", 1);
  th_buf_add(&r->log, data, data_len);
  th_buf_add(&r->log, "\n", 1);
  return ++r->n == r->stop_at ? 7 : 0;
}

static void rec_discard(size_t bytes, void *ud) {
  rec *r = ud;
  r->discards++;
  r->discard_bytes = bytes;
}

static mlt_sse_parser *new_parser(rec *r, size_t max) {
  mlt_sse_parser *p = NULL;
  REQUIRE_EQ_INT(mlt_sse_parser_new(rec_event, r, max, &p), MLT_OK);
  REQUIRE(p != NULL);
  mlt_sse_parser_set_discard_fn(p, rec_discard);
  return p;
}

/* Feed a copy of @p s in an exact-size buffer (so ASan/valgrind see any read
 * past the end: the input is not NUL-terminated). */
static int feed_exact(mlt_sse_parser *p, const char *s, size_t n) {
  char *copy = malloc(n ? n : 1);
  REQUIRE(copy != NULL);
  memcpy(copy, s, n);
  int rc = mlt_sse_parser_feed(p, copy, n);
  free(copy);
  return rc;
}

static int feed_str(mlt_sse_parser *p, const char *s) { return feed_exact(p, s, strlen(s)); }

/* Parse @p s whole, in two pieces at every position, and byte by byte; all
 * must give the same log; returns it (caller frees). */
static char *parse_all_ways(const char *s, size_t n, size_t max) {
  rec whole = {0};
  mlt_sse_parser *p = new_parser(&whole, max);
  CHECK_EQ_INT(feed_exact(p, s, n), MLT_OK);
  mlt_sse_parser_finish(p);
  mlt_sse_parser_free(p);
  th_buf_add(&whole.log, "", 0);
  for (size_t k = 0; k <= n + 1; k++) {
    rec r = {0};
    p = new_parser(&r, max);
    if (k <= n) {
      CHECK_EQ_INT(feed_exact(p, s, k), MLT_OK);
      CHECK_EQ_INT(feed_exact(p, s + k, n - k), MLT_OK);
    } else {
      for (size_t i = 0; i < n; i++) CHECK_EQ_INT(feed_exact(p, s + i, 1), MLT_OK);
    }
    mlt_sse_parser_finish(p);
    mlt_sse_parser_free(p);
    th_buf_add(&r.log, "", 0);
    if (strcmp(r.log.p, whole.log.p) != 0) {
      tap_diag("split at %zu differs:\n%s--- vs whole:\n%s", k, r.log.p, whole.log.p);
      CHECK(0);
    }
    CHECK_EQ_INT(r.discards, whole.discards);
    free(r.log.p);
  }
  return whole.log.p;
}

static void check_parse(const char *input, const char *expected) {
  char *got = parse_all_ways(input, strlen(input), 0);
  CHECK_EQ_STR(got, expected);
  free(got);
}

/* ---- SSE parser tests ------------------------------------------------------ */

TEST(sse_data_lines_joined) {
  check_parse("data: a\ndata:b\ndata:  c\n\n", "message||a\nb\n c\n");
  check_parse("data\n\n", "message||\n");                 /* no colon: empty value */
  check_parse("data:\ndata:\n\n", "message||\n\n");        /* two empty lines: "\n" */
  check_parse("data: x\n\n\n\ndata: y\n\n", "message||x\nmessage||y\n");
  check_parse("data:x:y: z\n\n", "message||x:y: z\n");     /* only the first colon splits */
}

TEST(sse_event_and_id_fields) {
  check_parse("event: delta\nid: 42\ndata: x\n\ndata: y\n\n", "delta|42|x\nmessage|42|y\n");
  check_parse("id: 1\ndata: a\n\nid\ndata: b\n\n", "message|1|a\nmessage||b\n"); /* "id" alone resets */
  check_parse("event:\ndata: a\n\n", "message||a\n");                             /* empty type: message */
  check_parse("data: a\nevent: first\nevent: second\n\n", "second||a\n");
}

TEST(sse_id_with_nul_ignored) {
  static const char in[] = "id: 5\ndata: a\n\nid: 6\0x\ndata: b\n\n";
  char *got = parse_all_ways(in, sizeof in - 1, 0);
  CHECK_EQ_STR(got, "message|5|a\nmessage|5|b\n");
  free(got);
}

TEST(sse_comments_retry_unknown_ignored) {
  check_parse(": ping\n:\ndata: a\n: mid-event comment\ndata: b\n\n", "message||a\nb\n");
  check_parse("retry: 3000\nfoo: bar\nDATA: no\n data: no\ndata: yes\n\n", "message||yes\n");
  check_parse(": only comments\n\n: more\n\n", "");
}

TEST(sse_empty_data_not_dispatched) {
  check_parse("event: x\n\ndata: y\n\n", "message||y\n"); /* type reset after the empty event */
  check_parse("id: 3\n\ndata: y\n\n", "message|3|y\n");
}

TEST(sse_line_endings) {
  check_parse("data: a\r\rdata: b\r\n\r\ndata: c\n\n", "message||a\nmessage||b\nmessage||c\n");
  check_parse("data: a\rdata: b\n\r", "message||a\nb\n"); /* \n then \r: two endings */
  check_parse("data: a\r\n\n", "message||a\n");
  /* \r at the end of a feed, \n at the start of the next: one line end */
  rec r = {0};
  mlt_sse_parser *p = new_parser(&r, 0);
  CHECK_EQ_INT(feed_str(p, "data: a\r"), MLT_OK);
  CHECK_EQ_INT(feed_str(p, "\ndata: b\r"), MLT_OK);
  CHECK_EQ_INT(feed_str(p, ""), MLT_OK); /* an empty feed keeps the pending \r */
  CHECK_EQ_INT(feed_str(p, "\n\r"), MLT_OK);
  CHECK_EQ_INT(feed_str(p, "\n"), MLT_OK);
  CHECK_EQ_INT(r.n, 1);
  th_buf_add(&r.log, "", 0);
  CHECK_EQ_STR(r.log.p, "message||a\nb\n");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_OK);
  mlt_sse_parser_free(p);
  free(r.log.p);
}

TEST(sse_bom) {
  check_parse("\xEF\xBB\xBF" "data: a\n\n", "message||a\n");
  /* only one BOM is stripped: the second makes the field name unknown */
  check_parse("\xEF\xBB\xBF\xEF\xBB\xBF" "data: a\n\ndata: b\n\n", "message||b\n");
  /* a partial BOM is part of the line */
  check_parse("\xEF\xBB" "data: a\n\ndata: b\n\n", "message||b\n");
  check_parse("\xEF" "\n" "data: b\n\n", "message||b\n");
  /* a BOM after the start of the stream is not stripped */
  check_parse("data: \xEF\xBB\xBFx\n\n", "message||\xEF\xBB\xBFx\n");
  /* BOM split over three feeds, and re-armed by finish */
  rec r = {0};
  mlt_sse_parser *p = new_parser(&r, 0);
  feed_str(p, "\xEF");
  feed_str(p, "\xBB");
  feed_str(p, "\xBF");
  feed_str(p, "data: a\n\n");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_OK);
  feed_str(p, "\xEF\xBB\xBF" "data: b\n\n");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_OK);
  th_buf_add(&r.log, "", 0);
  CHECK_EQ_STR(r.log.p, "message||a\nmessage||b\n");
  mlt_sse_parser_free(p);
  free(r.log.p);
}

TEST(sse_nul_bytes_in_data) {
  static const char in[] = "data: a\0b\n\n";
  rec r = {0};
  mlt_sse_parser *p = new_parser(&r, 0);
  CHECK_EQ_INT(feed_exact(p, in, sizeof in - 1), MLT_OK);
  CHECK_EQ_INT(r.log.len, strlen("message||") + 4);
  CHECK(r.log.p && memcmp(r.log.p, "message||a\0b\n", 13) == 0);
  mlt_sse_parser_free(p);
  free(r.log.p);
}

TEST(sse_max_event_bytes) {
  char big[200];
  memset(big, 'x', sizeof big);
  th_buf in = {0};
  th_buf_str(&in, "data: small\n\ndata: ");
  th_buf_add(&in, big, sizeof big);
  th_buf_str(&in, "\ndata: more\n\n: comment longer than the limit ");
  th_buf_add(&in, big, sizeof big);
  th_buf_str(&in, "\ndata: after\n\nevent: ");
  th_buf_add(&in, big, sizeof big);
  th_buf_str(&in, "\ndata: t\n\ndata: 0123456789\ndata: 0123456789\ndata: 0123456789\n\ndata: end\n\n");
  char *got = parse_all_ways(in.p, in.len, 32);
  CHECK_EQ_STR(got, "message||small\nmessage||after\nmessage||end\n");
  free(got);
  /* the bound applies to the raw line (field name included), however split */
  got = parse_all_ways("data: 0123456789\n\ndata: 01234567890\n\n", 37, 16);
  CHECK_EQ_STR(got, "message||0123456789\n");
  free(got);
  rec r = {0};
  mlt_sse_parser *p = new_parser(&r, 32);
  CHECK_EQ_INT(feed_exact(p, in.p, in.len), MLT_OK);
  CHECK_EQ_INT(mlt_sse_parser_discarded_count(p), 3);
  CHECK_EQ_INT(r.discards, 3);
  CHECK_EQ_INT(mlt_sse_parser_event_count(p), 3);
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_OK);
  /* an oversized unterminated line at the end: discarded by finish */
  feed_str(p, "data: ");
  for (int i = 0; i < 100; i++) feed_exact(p, big, 1);
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_EPARSE);
  CHECK_EQ_INT(mlt_sse_parser_discarded_count(p), 4);
  CHECK_EQ_INT(r.discard_bytes, 106);
  mlt_sse_parser_free(p);
  free(r.log.p);
  free(in.p);
}

TEST(sse_memory_bounded) {
  /* 64 MiB in one line and 64 MiB of data lines, limit 4 KiB: heap stays small */
  rec r = {0};
  mlt_sse_parser *p = new_parser(&r, 4096);
  static char chunk[65536];
  memset(chunk, 'a', sizeof chunk);
  size_t before = mallinfo2().uordblks, peak = 0;
  feed_str(p, "data: ");
  for (int i = 0; i < 1024; i++) {
    CHECK_EQ_INT(mlt_sse_parser_feed(p, chunk, sizeof chunk), MLT_OK);
    size_t now = mallinfo2().uordblks;
    if (now > peak) peak = now;
  }
  feed_str(p, "\n\n");
  for (int i = 0; i < 1024; i++) {
    memcpy(chunk, "data:", 5);
    chunk[sizeof chunk - 1] = '\n';
    CHECK_EQ_INT(mlt_sse_parser_feed(p, chunk, sizeof chunk), MLT_OK);
    size_t now = mallinfo2().uordblks;
    if (now > peak) peak = now;
  }
  feed_str(p, "\ndata: ok\n\n");
  CHECK(peak < before + (1u << 20));
  CHECK_EQ_INT(mlt_sse_parser_discarded_count(p), 2);
  CHECK_EQ_INT(r.n, 1);
  mlt_sse_parser_free(p);
  free(r.log.p);
}

TEST(sse_linear_time) {
  /* Would take hours if any path rescanned the input (quadratic). */
  size_t n = 4u << 20;
  char *s = malloc(n);
  REQUIRE(s != NULL);
  for (size_t i = 0; i < n; i++) s[i] = (i % 8 == 7) ? '\r' : 'a'; /* \r-only lines, no \n at all */
  memcpy(s, "data:", 5);
  rec r = {0};
  mlt_sse_parser *p = new_parser(&r, 0);
  CHECK_EQ_INT(mlt_sse_parser_feed(p, s, n), MLT_OK);
  mlt_sse_parser_free(p);
  memset(s, 'b', n); /* one 4 MiB data line, fed one byte at a time */
  memcpy(s, "data:", 5);
  p = new_parser(&r, 0);
  for (size_t i = 0; i < n; i++) CHECK_EQ_INT(mlt_sse_parser_feed(p, s + i, 1), MLT_OK);
  CHECK_EQ_INT(feed_str(p, "\n\n"), MLT_OK);
  CHECK_EQ_INT(r.n, 1);
  mlt_sse_parser_free(p);
  free(r.log.p);
  free(s);
}

TEST(sse_callback_stops) {
  rec r = {0};
  r.stop_at = 2;
  mlt_sse_parser *p = new_parser(&r, 0);
  CHECK_EQ_INT(feed_str(p, "data: 1\n\ndata: 2\n\ndata: 3\n\n"), 7);
  CHECK_EQ_INT(r.n, 2);
  CHECK_EQ_INT(feed_str(p, "data: 4\n\n"), 7);
  CHECK_EQ_INT(mlt_sse_parser_finish(p), 7);
  CHECK_EQ_INT(r.n, 2);
  mlt_sse_parser_free(p);
  free(r.log.p);
}

TEST(sse_finish_semantics) {
  rec r = {0};
  mlt_sse_parser *p = new_parser(&r, 0);
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_OK); /* empty stream */
  feed_str(p, "id: 9\ndata: a\n\ndata: partial");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_EPARSE);
  CHECK_EQ_INT(r.n, 1);
  feed_str(p, "data: no blank line\n");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_EPARSE);
  feed_str(p, "event: x\n");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_EPARSE);
  feed_str(p, "data: b\n\n: trailing comment, unterminated");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_OK);
  feed_str(p, "data: c\r\n\r\n: ping\r\n");
  CHECK_EQ_INT(mlt_sse_parser_finish(p), MLT_OK);
  CHECK_EQ_INT(r.n, 3);
  size_t len = 0;
  CHECK_EQ_STR(mlt_sse_parser_last_event_id(p, &len), "9"); /* kept across streams */
  CHECK_EQ_INT(len, 1);
  th_buf_add(&r.log, "", 0);
  CHECK_EQ_STR(r.log.p, "message|9|a\nmessage|9|b\nmessage|9|c\n");
  mlt_sse_parser_free(p);
  free(r.log.p);
}

TEST(sse_null_arguments) {
  rec r = {0};
  mlt_sse_parser *p = (mlt_sse_parser *)&r;
  CHECK_EQ_INT(mlt_sse_parser_new(NULL, NULL, 0, &p), MLT_EINVAL);
  CHECK(p == NULL);
  CHECK_EQ_INT(mlt_sse_parser_new(rec_event, NULL, 0, NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_sse_parser_feed(NULL, "x", 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_sse_parser_finish(NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_sse_parser_set_discard_fn(NULL, NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_sse_parser_set_max_event_bytes(NULL, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_sse_parser_event_count(NULL), 0);
  CHECK_EQ_INT(mlt_sse_parser_discarded_count(NULL), 0);
  size_t len = 5;
  CHECK_EQ_STR(mlt_sse_parser_last_event_id(NULL, &len), "");
  CHECK_EQ_INT(len, 0);
  mlt_sse_parser_free(NULL);
  p = new_parser(&r, 0);
  CHECK_EQ_INT(mlt_sse_parser_feed(p, NULL, 3), MLT_EINVAL);
  CHECK_EQ_INT(mlt_sse_parser_feed(p, NULL, 0), MLT_OK);
  CHECK_EQ_INT(mlt_sse_parser_set_discard_fn(p, NULL), MLT_OK);
  mlt_sse_parser_free(p);
}

/* ---- chat stream: transcripts ------------------------------------------------ */

static void tr_chunk(const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  th_buf *b = ud;
  th_buf_printf(b, "chunk %zu ", len);
  th_buf_add(b, json, len);
  th_buf_printf(b, "\ndelta %zu ", dlen);
  th_buf_add(b, delta, dlen);
  th_buf_add(b, "\n", 1);
}

static void tr_malformed(const char *reason, const char *data, size_t len, void *ud) {
  th_buf *b = ud;
  th_buf_printf(b, "malformed %s %zu ", reason, len);
  th_buf_add(b, data, len);
  th_buf_add(b, "\n", 1);
}

static mlt_chat_stream *new_chat(th_buf *log) {
  mlt_chat_stream *s = NULL;
  REQUIRE_EQ_INT(mlt_chat_stream_new(&s), MLT_OK);
  REQUIRE(s != NULL);
  if (log) mlt_chat_stream_set_hooks(s, tr_chunk, tr_malformed, log);
  return s;
}

static int chat_feed_exact(mlt_chat_stream *s, const char *p, size_t n) {
  char *copy = malloc(n ? n : 1);
  REQUIRE(copy != NULL);
  memcpy(copy, p, n);
  int rc = mlt_chat_stream_feed(s, copy, n);
  free(copy);
  return rc;
}

/* Append everything observable about a finished stream to the transcript. */
static void describe(mlt_chat_stream *s, int finish_rc, th_buf *log) {
  size_t len = 0, clen = 0;
  char *res = mlt_chat_stream_result_json(s, &len);
  char *usage = mlt_chat_stream_usage_json(s);
  REQUIRE(res != NULL);
  CHECK_EQ_INT(len, strlen(res));
  const char *content = mlt_chat_stream_content(s, &clen);
  const char *err = mlt_chat_stream_error_message(s);
  th_buf_printf(log, "finish %d done %d chunks %zu malformed %zu\nresult ", finish_rc, mlt_chat_stream_is_done(s),
            mlt_chat_stream_chunk_count(s), mlt_chat_stream_malformed_count(s));
  th_buf_str(log, res);
  th_buf_str(log, "\nusage ");
  th_buf_str(log, usage ? usage : "(none)");
  th_buf_str(log, "\nmodel ");
  th_buf_str(log, mlt_chat_stream_model(s));
  th_buf_printf(log, "\ncontent %zu ", clen);
  th_buf_add(log, content, clen);
  th_buf_str(log, "\nfinish_reason ");
  th_buf_str(log, mlt_chat_stream_finish_reason(s));
  th_buf_str(log, "\nerror ");
  th_buf_str(log, err ? err : "(none)");
  free(res);
  free(usage);
}

/* Run @p in through a new aggregator, fed in pieces ending at @p cuts
 * (ncuts positions, increasing), or byte by byte when cuts is NULL and
 * ncuts is 1; returns the transcript. */
static char *run_chat(const char *in, size_t n, const size_t *cuts, size_t ncuts) {
  th_buf log = {0};
  mlt_chat_stream *s = new_chat(&log);
  if (!cuts && ncuts == 1) {
    for (size_t i = 0; i < n; i++) CHECK_EQ_INT(chat_feed_exact(s, in + i, 1), MLT_OK);
  } else {
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
      size_t to = i < ncuts ? cuts[i] : n;
      CHECK_EQ_INT(chat_feed_exact(s, in + at, to - at), MLT_OK);
      at = to;
    }
  }
  int rc = mlt_chat_stream_finish(s);
  describe(s, rc, &log);
  mlt_chat_stream_free(s);
  return log.p;
}

/* ---- chat stream: fixtures -------------------------------------------------- */

static const cJSON *member(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static void check_fixture(const char *name) {
  size_t n = 0, en = 0;
  char *in = th_fixture("sse", name, ".sse", &n);
  char *exp_txt = th_fixture("sse", name, ".json", &en);
  cJSON *exp = cJSON_ParseWithLength(exp_txt, en);
  REQUIRE(exp != NULL);
  tap_diag("fixture %s (%zu bytes)", name, n);

  mlt_chat_stream *s = new_chat(NULL);
  CHECK_EQ_INT(chat_feed_exact(s, in, n), MLT_OK);
  int rc = mlt_chat_stream_finish(s);
  CHECK_EQ_INT(rc, member(exp, "finish_rc")->valuedouble);
  CHECK_EQ_INT(mlt_chat_stream_is_done(s), cJSON_IsTrue(member(exp, "done")));
  CHECK_EQ_INT(mlt_chat_stream_chunk_count(s), member(exp, "chunks")->valuedouble);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), member(exp, "malformed")->valuedouble);

  size_t len = 0;
  char *res = mlt_chat_stream_result_json(s, &len);
  REQUIRE(res != NULL);
  cJSON *got = cJSON_Parse(res);
  REQUIRE(got != NULL);
  if (!cJSON_Compare(got, member(exp, "result"), 1)) {
    char *e = cJSON_PrintUnformatted(member(exp, "result"));
    tap_diag("%s result:\n%s\nexpected:\n%s", name, res, e);
    cJSON_free(e);
    CHECK(0);
  }
  char *usage = mlt_chat_stream_usage_json(s);
  const cJSON *eu = member(exp, "usage");
  if (cJSON_IsNull(eu)) {
    CHECK(usage == NULL);
  } else {
    cJSON *gu = usage ? cJSON_Parse(usage) : NULL;
    CHECK(gu && cJSON_Compare(gu, eu, 1));
    cJSON_Delete(gu);
  }
  size_t clen = 0;
  const char *content = mlt_chat_stream_content(s, &clen);
  CHECK_EQ_STR(content, member(exp, "content")->valuestring);
  CHECK_EQ_INT(clen, strlen(member(exp, "content")->valuestring));
  CHECK_EQ_STR(mlt_chat_stream_finish_reason(s), member(exp, "finish_reason")->valuestring);
  CHECK_EQ_STR(mlt_chat_stream_model(s), member(member(exp, "result"), "model")->valuestring);
  const cJSON *ee = member(exp, "error");
  if (cJSON_IsNull(ee))
    CHECK(mlt_chat_stream_error_message(s) == NULL);
  else
    CHECK_EQ_STR(mlt_chat_stream_error_message(s), ee->valuestring);
  free(usage);
  free(res);
  cJSON_Delete(got);
  cJSON_Delete(exp);
  mlt_chat_stream_free(s);
  free(exp_txt);
  free(in);
}

TEST(chat_fixtures_expected_results) {
  for (size_t i = 0; i < NFIXTURES; i++) check_fixture(fixtures[i]);
}

TEST(chat_fixtures_any_split_same_result) {
  for (size_t f = 0; f < NFIXTURES; f++) {
    size_t n = 0;
    char *in = th_fixture("sse", fixtures[f], ".sse", &n);
    char *whole = run_chat(in, n, NULL, 0);
    int bad = 0;
    for (size_t k = 0; k <= n && bad < 3; k++) {
      char *t = run_chat(in, n, &k, 1);
      if (strcmp(t, whole) != 0) {
        tap_diag("%s: split at %zu differs:\n%s\n--- whole:\n%s", fixtures[f], k, t, whole);
        bad++;
      }
      free(t);
    }
    char *t = run_chat(in, n, NULL, 1); /* byte by byte */
    if (strcmp(t, whole) != 0) {
      tap_diag("%s: byte-by-byte differs", fixtures[f]);
      bad++;
    }
    free(t);
    CHECK_EQ_INT(bad, 0);
    free(whole);
    free(in);
  }
}

/* Explicit checks of the main fixtures (beyond the .json expectations). */
static mlt_chat_stream *run_fixture(const char *name, int *rc) {
  size_t n = 0;
  char *in = th_fixture("sse", name, ".sse", &n);
  mlt_chat_stream *s = new_chat(NULL);
  CHECK_EQ_INT(chat_feed_exact(s, in, n), MLT_OK);
  *rc = mlt_chat_stream_finish(s);
  free(in);
  return s;
}

TEST(chat_plain_content_utf8) {
  int rc;
  mlt_chat_stream *s = run_fixture("plain_content", &rc);
  CHECK_EQ_INT(rc, MLT_OK);
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "Sure! Here: na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
                                                 "\xF0\x9F\x8E\x89\n\nEnjoy.");
  CHECK_EQ_STR(mlt_chat_stream_finish_reason(s), "stop");
  CHECK_EQ_STR(mlt_chat_stream_model(s), "gpt-4o-mini-2024-07-18");
  CHECK(mlt_chat_stream_usage_json(s) == NULL);
  CHECK_EQ_INT(mlt_chat_stream_chunk_count(s), 14);
  mlt_chat_stream_free(s);
}

TEST(chat_content_and_usage_chunk) {
  int rc;
  mlt_chat_stream *s = run_fixture("content_usage", &rc);
  CHECK_EQ_INT(rc, MLT_OK);
  char *u = mlt_chat_stream_usage_json(s);
  CHECK_EQ_STR(u, "{\"input_tokens\":14,\"output_tokens\":7,\"total_tokens\":21}");
  free(u);
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "The capital of France is Paris.");
  char *res = mlt_chat_stream_result_json(s, NULL);
  CHECK(res && strstr(res, "\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":7,\"total_tokens\":21,"));
  free(res);
  mlt_chat_stream_free(s);
}

TEST(chat_parallel_tool_calls) {
  int rc;
  mlt_chat_stream *s = run_fixture("parallel_tool_calls", &rc);
  CHECK_EQ_INT(rc, MLT_OK);
  CHECK_EQ_STR(mlt_chat_stream_finish_reason(s), "tool_calls");
  char *res = mlt_chat_stream_result_json(s, NULL);
  cJSON *j = cJSON_Parse(res);
  const cJSON *msg = member(cJSON_GetArrayItem(member(j, "choices"), 0), "message");
  CHECK(cJSON_IsNull(member(msg, "content")));
  const cJSON *calls = member(msg, "tool_calls");
  REQUIRE_EQ_INT(cJSON_GetArraySize(calls), 2);
  const cJSON *c0 = cJSON_GetArrayItem(calls, 0), *c1 = cJSON_GetArrayItem(calls, 1);
  CHECK_EQ_STR(cJSON_GetStringValue(member(c0, "id")), "call_k3JdV9mQp2LwXz8RtYb4NcEf");
  CHECK_EQ_STR(cJSON_GetStringValue(member(c0, "type")), "function");
  CHECK_EQ_STR(cJSON_GetStringValue(member(member(c0, "function"), "name")), "get_weather");
  CHECK_EQ_STR(cJSON_GetStringValue(member(member(c0, "function"), "arguments")),
               "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}");
  CHECK_EQ_STR(cJSON_GetStringValue(member(c1, "id")), "call_Wq7ZnB2xYc5VfT1gHs9LpDk0");
  CHECK_EQ_STR(cJSON_GetStringValue(member(member(c1, "function"), "arguments")),
               "{\"location\": \"Tokyo, Japan\", \"unit\": \"celsius\"}");
  cJSON_Delete(j);
  free(res);
  mlt_chat_stream_free(s);
}

TEST(chat_n2_choices) {
  int rc;
  mlt_chat_stream *s = run_fixture("n2_choices", &rc);
  CHECK_EQ_INT(rc, MLT_OK);
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "Red and blue.");
  CHECK_EQ_STR(mlt_chat_stream_finish_reason(s), "length");
  char *res = mlt_chat_stream_result_json(s, NULL);
  cJSON *j = cJSON_Parse(res);
  const cJSON *c1 = cJSON_GetArrayItem(member(j, "choices"), 1);
  CHECK_EQ_INT(member(c1, "index")->valuedouble, 1);
  CHECK_EQ_STR(cJSON_GetStringValue(member(member(c1, "message"), "content")), "Green or \xE9\xBB\x84\xE8\x89\xB2!");
  CHECK_EQ_STR(cJSON_GetStringValue(member(c1, "finish_reason")), "stop");
  cJSON_Delete(j);
  free(res);
  mlt_chat_stream_free(s);
}

TEST(chat_malformed_error_truncated_fixtures) {
  int rc;
  mlt_chat_stream *s = run_fixture("malformed_middle", &rc);
  CHECK_EQ_INT(rc, MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 1);
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "One, two, three.");
  CHECK(mlt_chat_stream_error_message(s) == NULL);
  mlt_chat_stream_free(s);

  s = run_fixture("error_chunk", &rc);
  CHECK_EQ_INT(rc, MLT_EPARSE);
  CHECK_EQ_STR(mlt_chat_stream_error_message(s),
               "The server had an error while processing your request. Sorry about that!");
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "Let me think");
  CHECK_EQ_STR(mlt_chat_stream_finish_reason(s), "");
  mlt_chat_stream_free(s);

  s = run_fixture("truncated", &rc);
  CHECK_EQ_INT(rc, MLT_EPARSE);
  CHECK_EQ_INT(mlt_chat_stream_is_done(s), 0);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 0);
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "Once upon a time");
  mlt_chat_stream_free(s);
}

TEST(chat_transport_variants) {
  static const char *const names[] = {"crlf_keepalive", "event_id_fields", "multiline_data", "bom_cr_only"};
  static const char *const contents[] = {"Bonjour \xC3\xA0 tous \xE2\x80\x94 \xC3\xA7" "a va?",
                                         "Event fields are fine.", "Multi-line caf\xC3\xA9 \xF0\x9F\x8E\x89",
                                         "Carriage returns only"};
  for (int i = 0; i < 4; i++) {
    int rc;
    mlt_chat_stream *s = run_fixture(names[i], &rc);
    CHECK_EQ_INT(rc, MLT_OK);
    CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), contents[i]);
    CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 0);
    CHECK_EQ_STR(mlt_chat_stream_finish_reason(s), "stop");
    mlt_chat_stream_free(s);
  }
}

/* ---- chat stream: behaviour --------------------------------------------------- */

static int add(mlt_chat_stream *s, const char *data) { return mlt_chat_stream_add_data(s, data, strlen(data)); }

TEST(chat_add_data_direct) {
  th_buf log = {0};
  mlt_chat_stream *s = new_chat(&log);
  CHECK_EQ_INT(add(s, "{\"id\":\"c1\",\"model\":\"m\",\"created\":5,\"choices\":[{\"index\":0,"
                      "\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}"),
               MLT_OK);
  CHECK_EQ_INT(add(s, "   "), MLT_OK); /* ignored */
  CHECK_EQ_INT(mlt_chat_stream_add_data(s, "", 0), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_add_data(s, NULL, 0), MLT_OK);
  CHECK_EQ_INT(add(s, "{\"choices\":[{\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}"), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_is_done(s), 0);
  CHECK_EQ_INT(add(s, " [DONE]\n"), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_is_done(s), 1);
  CHECK_EQ_INT(mlt_chat_stream_finish(s), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_chunk_count(s), 2);
  char *res = mlt_chat_stream_result_json(s, NULL);
  CHECK_EQ_STR(res, "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,"
                    "\"message\":{\"role\":\"assistant\",\"content\":\"Hi there\"},\"finish_reason\":\"stop\"}]}");
  free(res);
  CHECK_EQ_STR(log.p, "chunk 103 {\"id\":\"c1\",\"model\":\"m\",\"created\":5,\"choices\":[{\"index\":0,"
                      "\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\ndelta 2 Hi\n"
                      "chunk 67 {\"choices\":[{\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n"
                      "delta 6  there\n");
  free(log.p);
  mlt_chat_stream_free(s);
}

TEST(chat_usage_last_wins) {
  mlt_chat_stream *s = new_chat(NULL);
  add(s, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}");
  add(s, "{\"choices\":[],\"usage\":null}");
  char *u = mlt_chat_stream_usage_json(s);
  CHECK_EQ_STR(u, "{\"input_tokens\":3,\"output_tokens\":1,\"total_tokens\":4}");
  free(u);
  add(s, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9,\"total_tokens\":12}}");
  u = mlt_chat_stream_usage_json(s);
  CHECK_EQ_STR(u, "{\"input_tokens\":3,\"output_tokens\":9,\"total_tokens\":12}");
  free(u);
  add(s, "{\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":5}}"); /* no total: sum */
  u = mlt_chat_stream_usage_json(s);
  CHECK_EQ_STR(u, "{\"input_tokens\":2,\"output_tokens\":5,\"total_tokens\":7}");
  free(u);
  mlt_chat_stream_free(s);
}

TEST(chat_tool_calls_interleaved_and_without_index) {
  mlt_chat_stream *s = new_chat(NULL);
  add(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"b\",\"type\":\"function\","
         "\"function\":{\"name\":\"g\",\"arguments\":\"[1\"}}]}}]}");
  add(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\"}}]}}]}");
  add(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\",2]\"}},"
         "{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}");
  /* no index: new id starts a call, a delta without id continues the latest */
  add(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"h\",\"arguments\":\"x\"}}]}}]}");
  add(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"y\"}}]}}]}");
  add(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"arguments\":\"!\"}}]},"
         "\"finish_reason\":\"tool_calls\"}]}");
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 0);
  char *res = mlt_chat_stream_result_json(s, NULL);
  CHECK_EQ_STR(res, "{\"id\":\"\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"\",\"choices\":[{\"index\":0,"
                    "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
                    "{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}!\"}},"
                    "{\"id\":\"b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"[1,2]\"}},"
                    "{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"h\",\"arguments\":\"xy\"}}]},"
                    "\"finish_reason\":\"tool_calls\"}]}");
  free(res);
  mlt_chat_stream_free(s);
}

TEST(chat_malformed_kinds) {
  th_buf log = {0};
  mlt_chat_stream *s = new_chat(&log);
  static const char *const bad[] = {"{\"id\":", "[1,2]", "42", "\"str\"", "null", "{\"a\":1} trailing",
                                    "{\"error\":\"boom\"}", "{\"choices\":[{\"index\":-1,\"delta\":{}}]}",
                                    "{\"choices\":[{\"index\":\"0\"}]}", "{\"choices\":[7]}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_EQ_INT(add(s, bad[i]), MLT_OK);
  CHECK_EQ_INT(add(s, "{\"error\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]} \r\n"), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 10);
  CHECK_EQ_INT(mlt_chat_stream_chunk_count(s), 1);
  CHECK_EQ_STR(mlt_chat_stream_error_message(s), "boom");
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "ok");
  /* "event: error" events, JSON or not */
  static const char json_err[] = "event: error\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n";
  CHECK_EQ_INT(mlt_chat_stream_feed(s, json_err, sizeof json_err - 1), MLT_OK);
  CHECK_EQ_STR(mlt_chat_stream_error_message(s), "overloaded");
  static const char plain[] = "event: error\ndata: upstream timeout\n\n";
  CHECK_EQ_INT(mlt_chat_stream_feed(s, plain, sizeof plain - 1), MLT_OK);
  CHECK_EQ_STR(mlt_chat_stream_error_message(s), "upstream timeout");
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 12);
  CHECK(strstr(log.p, "malformed invalid JSON 6 {\"id\":\n"));
  CHECK(strstr(log.p, "malformed not a JSON object 5 [1,2]\n"));
  CHECK(strstr(log.p, "malformed invalid JSON 16 {\"a\":1} trailing\n"));
  CHECK(strstr(log.p, "malformed error object 16 {\"error\":\"boom\"}\n"));
  CHECK(strstr(log.p, "malformed invalid chunk"));
  CHECK(strstr(log.p, "malformed error event 16 upstream timeout\n"));
  free(log.p);
  mlt_chat_stream_free(s);
}

TEST(chat_invalid_utf8_passes_through) {
  mlt_chat_stream *s = new_chat(NULL);
  static const char in[] = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\xff\xfe\xc3(b\xed\xa0\x80\"}}]}\n\n";
  CHECK_EQ_INT(chat_feed_exact(s, in, sizeof in - 1), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 0);
  size_t len = 0;
  CHECK(memcmp(mlt_chat_stream_content(s, &len), "a\xff\xfe\xc3(b\xed\xa0\x80", 9) == 0);
  CHECK_EQ_INT(len, 9);
  char *res = mlt_chat_stream_result_json(s, NULL);
  CHECK(res && strstr(res, "a\xff\xfe\xc3(b\xed\xa0\x80"));
  free(res);
  mlt_chat_stream_free(s);
}

TEST(chat_max_event_bytes) {
  th_buf log = {0};
  mlt_chat_stream *s = new_chat(&log);
  CHECK_EQ_INT(mlt_chat_stream_set_max_event_bytes(s, 128), MLT_OK);
  th_buf in = {0};
  th_buf_str(&in, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
  for (int i = 0; i < 100; i++) th_buf_str(&in, "long ");
  th_buf_str(&in, "\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"short\"}}]}\n\ndata: [DONE]\n\n");
  CHECK_EQ_INT(chat_feed_exact(s, in.p, in.len), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_finish(s), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 1);
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "short");
  CHECK(strncmp(log.p, "malformed event exceeds max_event_bytes 0 \n", 43) == 0);
  free(in.p);
  free(log.p);
  mlt_chat_stream_free(s);
}

TEST(chat_finish_semantics) {
  mlt_chat_stream *s = new_chat(NULL);
  static const char in[] = "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n";
  CHECK_EQ_INT(chat_feed_exact(s, in, sizeof in - 1), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_finish(s), MLT_EPARSE); /* no [DONE] */
  CHECK_EQ_INT(mlt_chat_stream_finish(s), MLT_EPARSE); /* same again */
  CHECK_EQ_INT(mlt_chat_stream_feed(s, "data: [DONE]\n\n", 14), MLT_EINVAL);
  CHECK_EQ_INT(mlt_chat_stream_add_data(s, "[DONE]", 6), MLT_EINVAL);
  CHECK_EQ_STR(mlt_chat_stream_content(s, NULL), "a"); /* result still there */
  CHECK_EQ_STR(mlt_chat_stream_model(s), "m");
  mlt_chat_stream_free(s);

  s = new_chat(NULL); /* [DONE] then an unterminated event */
  static const char in2[] = "data: [DONE]\n\ndata: {}";
  CHECK_EQ_INT(chat_feed_exact(s, in2, sizeof in2 - 1), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_finish(s), MLT_EPARSE);
  CHECK_EQ_INT(mlt_chat_stream_is_done(s), 1);
  mlt_chat_stream_free(s);

  s = new_chat(NULL); /* [DONE] without the final blank line: not dispatched */
  CHECK_EQ_INT(chat_feed_exact(s, "data: [DONE]\n", 13), MLT_OK);
  CHECK_EQ_INT(mlt_chat_stream_finish(s), MLT_EPARSE);
  CHECK_EQ_INT(mlt_chat_stream_is_done(s), 0);
  mlt_chat_stream_free(s);
}

TEST(chat_empty_stream) {
  mlt_chat_stream *s = new_chat(NULL);
  CHECK_EQ_INT(mlt_chat_stream_finish(s), MLT_EPARSE);
  size_t len = 1;
  char *res = mlt_chat_stream_result_json(s, &len);
  CHECK_EQ_STR(res, "{\"id\":\"\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"\",\"choices\":[]}");
  CHECK_EQ_INT(len, res ? strlen(res) : 0);
  free(res);
  CHECK(mlt_chat_stream_usage_json(s) == NULL);
  CHECK_EQ_STR(mlt_chat_stream_content(s, &len), "");
  CHECK_EQ_INT(len, 0);
  CHECK_EQ_STR(mlt_chat_stream_finish_reason(s), "");
  CHECK_EQ_STR(mlt_chat_stream_model(s), "");
  CHECK(mlt_chat_stream_error_message(s) == NULL);
  mlt_chat_stream_free(s);
}

TEST(chat_limits) {
  mlt_chat_stream *s = new_chat(NULL);
  char buf[128];
  for (int i = 0; i < 300; i++) {
    snprintf(buf, sizeof buf, "{\"choices\":[{\"index\":%d,\"delta\":{\"content\":\"x\",\"tool_calls\":[{\"index\":%d}]}}]}",
             i, i);
    add(s, buf);
  }
  CHECK_EQ_INT(mlt_chat_stream_chunk_count(s), 256);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 44);
  for (int i = 0; i < 300; i++) {
    snprintf(buf, sizeof buf, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%d}]}}]}", i);
    add(s, buf);
  }
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(s), 44 + 44);
  char *res = mlt_chat_stream_result_json(s, NULL);
  cJSON *j = cJSON_Parse(res);
  CHECK_EQ_INT(cJSON_GetArraySize(member(j, "choices")), 256);
  CHECK_EQ_INT(cJSON_GetArraySize(member(member(cJSON_GetArrayItem(member(j, "choices"), 0), "message"), "tool_calls")),
               256);
  cJSON_Delete(j);
  free(res);
  mlt_chat_stream_free(s);
}

TEST(chat_null_arguments) {
  mlt_chat_stream *s = NULL;
  CHECK_EQ_INT(mlt_chat_stream_new(NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_chat_stream_feed(NULL, "x", 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_chat_stream_add_data(NULL, "x", 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_chat_stream_finish(NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_chat_stream_set_max_event_bytes(NULL, 1), MLT_EINVAL);
  mlt_chat_stream_set_hooks(NULL, NULL, NULL, NULL);
  CHECK_EQ_INT(mlt_chat_stream_is_done(NULL), 0);
  size_t len = 3;
  CHECK(mlt_chat_stream_result_json(NULL, &len) == NULL);
  CHECK_EQ_INT(len, 0);
  CHECK(mlt_chat_stream_usage_json(NULL) == NULL);
  CHECK_EQ_STR(mlt_chat_stream_model(NULL), "");
  CHECK_EQ_STR(mlt_chat_stream_content(NULL, &len), "");
  CHECK_EQ_STR(mlt_chat_stream_finish_reason(NULL), "");
  CHECK_EQ_INT(mlt_chat_stream_chunk_count(NULL), 0);
  CHECK_EQ_INT(mlt_chat_stream_malformed_count(NULL), 0);
  CHECK(mlt_chat_stream_error_message(NULL) == NULL);
  mlt_chat_stream_free(NULL);
  s = new_chat(NULL);
  CHECK_EQ_INT(mlt_chat_stream_feed(s, NULL, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_chat_stream_add_data(s, NULL, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_chat_stream_feed(s, NULL, 0), MLT_OK);
  char *res = mlt_chat_stream_result_json(s, NULL);
  CHECK(res != NULL);
  free(res);
  mlt_chat_stream_set_hooks(s, NULL, NULL, NULL);
  mlt_chat_stream_free(s);
}

static const tap_test tests[] = {
    TAP_ENTRY(sse_data_lines_joined),
    TAP_ENTRY(sse_event_and_id_fields),
    TAP_ENTRY(sse_id_with_nul_ignored),
    TAP_ENTRY(sse_comments_retry_unknown_ignored),
    TAP_ENTRY(sse_empty_data_not_dispatched),
    TAP_ENTRY(sse_line_endings),
    TAP_ENTRY(sse_bom),
    TAP_ENTRY(sse_nul_bytes_in_data),
    TAP_ENTRY(sse_max_event_bytes),
    TAP_ENTRY_TIMEOUT(sse_memory_bounded, 120),
    TAP_ENTRY_TIMEOUT(sse_linear_time, 120),
    TAP_ENTRY(sse_callback_stops),
    TAP_ENTRY(sse_finish_semantics),
    TAP_ENTRY(sse_null_arguments),
    TAP_ENTRY(chat_fixtures_expected_results),
    TAP_ENTRY_TIMEOUT(chat_fixtures_any_split_same_result, 300),
    TAP_ENTRY(chat_plain_content_utf8),
    TAP_ENTRY(chat_content_and_usage_chunk),
    TAP_ENTRY(chat_parallel_tool_calls),
    TAP_ENTRY(chat_n2_choices),
    TAP_ENTRY(chat_malformed_error_truncated_fixtures),
    TAP_ENTRY(chat_transport_variants),
    TAP_ENTRY(chat_add_data_direct),
    TAP_ENTRY(chat_usage_last_wins),
    TAP_ENTRY(chat_tool_calls_interleaved_and_without_index),
    TAP_ENTRY(chat_malformed_kinds),
    TAP_ENTRY(chat_invalid_utf8_passes_through),
    TAP_ENTRY(chat_max_event_bytes),
    TAP_ENTRY(chat_finish_semantics),
    TAP_ENTRY(chat_empty_stream),
    TAP_ENTRY(chat_limits),
    TAP_ENTRY(chat_null_arguments),
    TAP_END,
};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
