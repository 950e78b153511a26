/* bench_sse.c: throughput of the SSE parser and the chat stream aggregator.
 *
 * Prints one "name value unit" line per figure, each the median of several
 * runs.  The input is a synthetic but realistic OpenAI stream: a role chunk,
 * CHUNKS content chunks of a few bytes of text each (some multi-byte UTF-8),
 * a finish chunk, a usage chunk and [DONE], every chunk carrying
 * "usage":null as with stream_options.include_usage.
 */
#include <mltrace/sse.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNKS 2000
#define RUNS 7
#define MIN_RUN_S 0.1

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static void add(buf *b, const char *s) {
  size_t n = strlen(s);
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->len, s, n + 1);
  b->len += n;
}

static void add_chunk(buf *b, const char *choices, const char *usage, const char *nl) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp,
           "data: {\"id\":\"chatcmpl-B1xQ7mZkL2vR9tYpN4cWdE8aFgH3j\",\"object\":\"chat.completion.chunk\","
           "\"created\":1739812345,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\","
           "\"system_fingerprint\":\"fp_13eed4fce1\",\"choices\":[%s],\"usage\":%s}%s%s",
           choices, usage, nl, nl);
  add(b, tmp);
}

static buf make_stream(const char *nl) {
  static const char *const words[] = {" the", " caf\\u00e9", " model", " na\xC3\xAFve", " \xE6\x97\xA5\xE6\x9C\xAC",
                                      " \xF0\x9F\x8E\x89", ",", " stream", " tokens", "."};
  buf b = {0};
  char choice[256];
  add_chunk(&b, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,"
                "\"finish_reason\":null}", "null", nl);
  for (int i = 0; i < CHUNKS; i++) {
    snprintf(choice, sizeof choice,
             "{\"index\":0,\"delta\":{\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":null}", words[i % 10]);
    add_chunk(&b, choice, "null", nl);
  }
  add_chunk(&b, "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}", "null", nl);
  add_chunk(&b, "",
            "{\"prompt_tokens\":19,\"completion_tokens\":2000,\"total_tokens\":2019,\"prompt_tokens_details\":"
            "{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,"
            "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
            nl);
  add(&b, "data: [DONE]");
  add(&b, nl);
  add(&b, nl);
  return b;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static volatile size_t sink;

static int count_event(const char *event, size_t event_len, const char *data, size_t data_len, const char *id,
                       size_t id_len, void *ud) {
  (void)event, (void)event_len, (void)data, (void)id, (void)id_len;
  *(size_t *)ud += data_len;
  return 0;
}

/* One pass of the parser over the stream, fed in @p piece-byte writes. */
static void parse_once(const buf *in, size_t piece) {
  size_t total = 0;
  mlt_sse_parser *p = NULL;
  if (mlt_sse_parser_new(count_event, &total, 0, &p) != MLT_OK) abort();
  for (size_t at = 0; at < in->len; at += piece)
    mlt_sse_parser_feed(p, in->p + at, in->len - at < piece ? in->len - at : piece);
  if (mlt_sse_parser_finish(p) != MLT_OK) abort();
  mlt_sse_parser_free(p);
  sink += total;
}

/* One pass of the aggregator over the stream. */
static void chat_once(const buf *in, size_t piece) {
  mlt_chat_stream *s = NULL;
  if (mlt_chat_stream_new(&s) != MLT_OK) abort();
  for (size_t at = 0; at < in->len; at += piece)
    mlt_chat_stream_feed(s, in->p + at, in->len - at < piece ? in->len - at : piece);
  if (mlt_chat_stream_finish(s) != MLT_OK || mlt_chat_stream_chunk_count(s) != CHUNKS + 3) abort();
  mlt_chat_stream_free(s);
}

/* Build the result and usage JSON of an assembled stream. */
static void result_once(const mlt_chat_stream *s) {
  size_t len = 0;
  char *r = mlt_chat_stream_result_json(s, &len);
  char *u = mlt_chat_stream_usage_json(s);
  if (!r || !u) abort();
  sink += len;
  free(r);
  free(u);
}

enum { PARSE, CHAT, RESULT };

static void pass(int what, const buf *in, size_t piece, const mlt_chat_stream *done) {
  if (what == PARSE)
    parse_once(in, piece);
  else if (what == CHAT)
    chat_once(in, piece);
  else
    result_once(done);
}

/* Median over RUNS runs of the seconds one pass takes. */
static double median_pass_s(int what, const buf *in, size_t piece, const mlt_chat_stream *done) {
  double t[RUNS];
  int iters = 1;
  for (;;) { /* calibrate: one run lasts at least MIN_RUN_S */
    double t0 = now_s();
    for (int i = 0; i < iters; i++) pass(what, in, piece, done);
    if (now_s() - t0 >= MIN_RUN_S) break;
    iters *= 2;
  }
  for (int r = 0; r < RUNS; r++) {
    double t0 = now_s();
    for (int i = 0; i < iters; i++) pass(what, in, piece, done);
    t[r] = (now_s() - t0) / iters;
  }
  qsort(t, RUNS, sizeof t[0], cmp_double);
  return t[RUNS / 2];
}

int main(void) {
  buf lf = make_stream("\n"), crlf = make_stream("\r\n");
  double mb = (double)lf.len / 1e6;
  printf("sse_stream_bytes %zu bytes\n", lf.len);
  printf("sse_parse_throughput %.1f MB/s\n", mb / median_pass_s(PARSE, &lf, 16384, NULL));
  printf("sse_parse_throughput_crlf %.1f MB/s\n", (double)crlf.len / 1e6 / median_pass_s(PARSE, &crlf, 16384, NULL));
  printf("sse_parse_throughput_64b_writes %.1f MB/s\n", mb / median_pass_s(PARSE, &lf, 64, NULL));
  printf("sse_parse_throughput_1b_writes %.1f MB/s\n", mb / median_pass_s(PARSE, &lf, 1, NULL));
  double chat = median_pass_s(CHAT, &lf, 16384, NULL);
  printf("chat_stream_ns_per_chunk %.0f ns\n", chat * 1e9 / (CHUNKS + 3));
  printf("chat_stream_throughput %.1f MB/s\n", mb / chat);
  mlt_chat_stream *s = NULL;
  if (mlt_chat_stream_new(&s) != MLT_OK || mlt_chat_stream_feed(s, lf.p, lf.len) != MLT_OK) abort();
  printf("chat_stream_result_json_us %.1f us\n", median_pass_s(RESULT, NULL, 0, s) * 1e6);
  mlt_chat_stream_free(s);
  free(lf.p);
  free(crlf.p);
  return sink == 0;
}
