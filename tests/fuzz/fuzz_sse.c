/* fuzz_sse.c: libFuzzer target for the SSE parser and chat stream aggregator.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I lib/include \
 *     -I integrations/curl/include tests/fuzz/fuzz_sse.c \
 *     integrations/curl/sse.c integrations/curl/chat_stream.c -lcjson
 *
 * Input layout: 2 bytes split position, 1 byte mode, then the stream body.
 * The body is fed in two pieces (each in its own exact-size allocation, so a
 * read past a piece is caught), and also whole; both runs must give the same
 * observable result (else abort).  Mode bit 0 lowers max_event_bytes to
 * exercise the oversized-event path; bit 7 passes the two pieces to
 * mlt_chat_stream_add_data() as two payloads instead.  Every input also
 * runs with the aggregator's chunk scanner off (cJSON alone): the result
 * must be the same (else abort).
 *
 * Built with -DMLT_FUZZ_STANDALONE it gets a main() that runs the files named
 * on the command line (for gcc/valgrind regression runs).
 */
#include <mltrace/sse.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* integrations/curl/curl-internal.h (compiled with chat_stream.c) */
void mlt__chat_stream_set_scan(mlt_chat_stream *s, int on);

static int g_scan = 1;

typedef struct digest {
  uint64_t h; /* FNV-1a over every hook call */
} digest;

static void mix(digest *d, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) d->h = (d->h ^ b[i]) * 1099511628211u;
}

static void on_chunk(const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  mix(ud, "C", 1);
  mix(ud, json, len); /* reads every byte: ASan checks the ranges */
  mix(ud, delta, dlen);
  if (delta[dlen] != '\0') abort();
}

static void on_malformed(const char *reason, const char *raw, size_t len, void *ud) {
  mix(ud, "M", 1);
  mix(ud, reason, strlen(reason));
  mix(ud, raw, len);
}

static void feed_copy(mlt_chat_stream *s, const uint8_t *p, size_t n, int as_data) {
  char *copy = malloc(n ? n : 1);
  if (!copy) abort();
  if (n) memcpy(copy, p, n);
  int rc = as_data ? mlt_chat_stream_add_data(s, copy, n) : mlt_chat_stream_feed(s, copy, n);
  if (rc != MLT_OK && rc != MLT_ENOMEM) abort();
  free(copy);
}

/* Run the body through a new aggregator, cut at @p cut (n = no cut), and
 * return a digest of everything observable. */
static uint64_t run(const uint8_t *body, size_t n, size_t cut, unsigned mode) {
  mlt_chat_stream *s = NULL;
  if (mlt_chat_stream_new(&s) != MLT_OK) abort();
  mlt__chat_stream_set_scan(s, g_scan);
  digest d = {14695981039346656037u};
  mlt_chat_stream_set_hooks(s, on_chunk, on_malformed, &d);
  if (mode & 1) mlt_chat_stream_set_max_event_bytes(s, 16 + ((mode >> 1) & 15) * 16);
  int as_data = (mode & 0x80) != 0;
  if (cut < n) {
    feed_copy(s, body, cut, as_data);
    feed_copy(s, body + cut, n - cut, as_data);
  } else {
    feed_copy(s, body, n, as_data);
  }
  int rc = mlt_chat_stream_finish(s);
  mix(&d, &rc, sizeof rc);
  size_t len = 0, clen = 0;
  char *res = mlt_chat_stream_result_json(s, &len);
  char *usage = mlt_chat_stream_usage_json(s);
  if (!res || strlen(res) != len) abort();
  const char *content = mlt_chat_stream_content(s, &clen);
  const char *err = mlt_chat_stream_error_message(s);
  size_t counts[3] = {mlt_chat_stream_chunk_count(s), mlt_chat_stream_malformed_count(s),
                      (size_t)mlt_chat_stream_is_done(s)};
  mix(&d, res, len);
  mix(&d, usage ? usage : "-", usage ? strlen(usage) : 1);
  mix(&d, content, clen);
  mix(&d, err ? err : "-", err ? strlen(err) : 1);
  mix(&d, counts, sizeof counts);
  mix(&d, mlt_chat_stream_model(s), strlen(mlt_chat_stream_model(s)));
  mix(&d, mlt_chat_stream_finish_reason(s), strlen(mlt_chat_stream_finish_reason(s)));
  free(res);
  free(usage);
  mlt_chat_stream_free(s);
  return d.h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3 || size > (1u << 20)) return 0;
  const uint8_t *body = data + 3;
  size_t n = size - 3;
  size_t cut = (((size_t)data[0] << 8) | data[1]) % (n + 1);
  unsigned mode = data[2];
  uint64_t split = run(body, n, cut, mode);
  /* With add_data, the cut changes the payloads, so only SSE runs compare. */
  if (!(mode & 0x80) && run(body, n, n, mode) != split) {
    fprintf(stderr, "split at %zu changed the result\n", cut);
    abort();
  }
  g_scan = 0;
  uint64_t plain = run(body, n, cut, mode);
  g_scan = 1;
  if (plain != split) {
    fprintf(stderr, "the chunk scanner and cJSON differ\n");
    abort();
  }
  return 0;
}

#ifdef MLT_FUZZ_STANDALONE
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (!f) {
      perror(argv[i]);
      return 1;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
  }
  return 0;
}
#endif
