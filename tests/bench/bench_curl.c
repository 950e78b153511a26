/* bench_curl.c: cost of the traced write path on the application thread.
 *
 * A realistic OpenAI stream (role chunk, N content chunks, finish, usage,
 * [DONE]; every chunk with "usage":null) is written to a temporary file and
 * read with curl_easy_perform() over file:// (no network: curl reads the
 * file and calls the write callback, as it would with socket data), either
 * plainly (a counting write callback) or through an mlt_curl_call:
 *   - off:     tracing disabled (mlt_set_enabled(0)): the stream is still
 *              assembled, no span;
 *   - traced:  tracing on, discard exporter, every chunk recorded as an event;
 *   - nochunk: tracing on, max_chunk_events 0 (assembled output only);
 *   - delta:   traced plus a trivial delta callback.
 * Time is the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so the
 * export thread's work is not counted.  The per-chunk overhead of a mode is
 * its extra time over the plain transfer on a 4000-token stream divided by
 * the chunks (the per-call part adds under 10 ns to it); the per-call
 * overhead is its extra time on a 1-token stream (4 chunks: request
 * parsing, span start and end, header list, result building).  The modes are measured
 * round-robin within each run, so drift affects them alike.  One "name
 * value unit" line per figure, each the median of RUNS runs.
 */
#include <mltrace/curl.h>
#include <mltrace/mltrace.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUNS 9
#define MIN_RUN_S 0.1

static const char *const words[] = {" the", " caf\\u00e9", " model", " na\xC3\xAFve", " \xE6\x97\xA5\xE6\x9C\xAC",
                                    " \xF0\x9F\x8E\x89", ",", " stream", " tokens", "."};

static void chunk(FILE *f, const char *choices, const char *usage) {
  fprintf(f,
          "data: {\"id\":\"chatcmpl-B1xQ7mZkL2vR9tYpN4cWdE8aFgH3j\",\"object\":\"chat.completion.chunk\","
          "\"created\":1739812345,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\","
          "\"system_fingerprint\":\"fp_13eed4fce1\",\"choices\":[%s],\"usage\":%s}\n\n",
          choices, usage);
}

/* Write a stream of @p n content chunks to a new temporary file. */
static char *make_stream_file(int n, size_t *bytes) {
  char *path = strdup("/tmp/bench_curl_XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) abort();
  FILE *f = fdopen(fd, "w");
  chunk(f, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,"
           "\"finish_reason\":null}", "null");
  char c[256];
  for (int i = 0; i < n; i++) {
    snprintf(c, sizeof c, "{\"index\":0,\"delta\":{\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":null}",
             words[i % 10]);
    chunk(f, c, "null");
  }
  chunk(f, "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}", "null");
  chunk(f, "", "{\"prompt_tokens\":19,\"completion_tokens\":2000,\"total_tokens\":2019}");
  fputs("data: [DONE]\n\n", f);
  *bytes = (size_t)ftell(f);
  fclose(f);
  return path;
}

static const char *request =
    "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"temperature\":0.2,"
    "\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant. Answer in one paragraph.\"},"
    "{\"role\":\"user\",\"content\":\"Explain what MLflow tracing records for a streamed chat completion, and why "
    "the time to first token matters for users of a chat proxy.\"}]}";

static volatile size_t sink;

static size_t count_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  (void)ptr;
  *(size_t *)ud += size * nmemb;
  return size * nmemb;
}

static int count_delta(mlt_curl_call *call, const char *json, size_t len, const char *delta, size_t dlen, void *ud) {
  (void)call, (void)json, (void)len, (void)delta;
  *(size_t *)ud += dlen;
  return 0;
}

enum { PLAIN, OFF, TRACED, NOCHUNK, DELTA, NMODES };
static const char *const mode_names[NMODES] = {"plain", "off", "traced", "nochunk", "delta"};

static CURL *easy;
static char url[512];
static mlt_curl_options *opts_all, *opts_none;

static void transfer(int mode) {
  size_t got = 0, deltas = 0;
  mlt_set_enabled(mode != OFF);
  curl_easy_setopt(easy, CURLOPT_URL, url);
  if (mode == PLAIN) {
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, count_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &got);
    if (curl_easy_perform(easy) != CURLE_OK) abort();
  } else {
    mlt_curl_call *call = NULL;
    if (mlt_curl_call_new(easy, NULL, mode == NOCHUNK ? opts_none : opts_all, request, MLT_NTS, NULL, &call) != MLT_OK)
      abort();
    mlt_curl_call_set_write_fn(call, count_write, &got);
    if (mode == DELTA) mlt_curl_call_set_delta_fn(call, count_delta, &deltas);
    if (mlt_curl_perform(call) != CURLE_OK || mlt_curl_call_status(call) != MLT_OK) {
      fprintf(stderr, "transfer failed: %s\n", mlt_curl_call_error(call));
      abort();
    }
    mlt_curl_call_free(call);
  }
  sink += got + deltas;
}

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median over RUNS of the CPU seconds one transfer takes, per mode. */
static void median_s(double out[NMODES]) {
  double t[NMODES][RUNS];
  int iters[NMODES];
  for (int m = 0; m < NMODES; m++) { /* calibrate: one run lasts MIN_RUN_S */
    iters[m] = 1;
    for (;;) {
      double t0 = thread_cpu_s();
      for (int i = 0; i < iters[m]; i++) transfer(m);
      if (thread_cpu_s() - t0 >= MIN_RUN_S) break;
      iters[m] *= 2;
    }
  }
  for (int r = 0; r < RUNS; r++)
    for (int m = 0; m < NMODES; m++) {
      double t0 = thread_cpu_s();
      for (int i = 0; i < iters[m]; i++) transfer(m);
      t[m][r] = (thread_cpu_s() - t0) / iters[m];
    }
  for (int m = 0; m < NMODES; m++) {
    qsort(t[m], RUNS, sizeof t[m][0], cmp_double);
    out[m] = t[m][RUNS / 2];
  }
}

int main(void) {
  static const int sizes[2] = {1, 4000};
  double t[2][NMODES];
  size_t bytes[2];
  curl_global_init(CURL_GLOBAL_DEFAULT);
  easy = curl_easy_init();
  mlt_curl_options_new(&opts_all);
  mlt_curl_options_set_max_chunk_events(opts_all, UINT32_MAX);
  mlt_curl_options_new(&opts_none);
  mlt_curl_options_set_max_chunk_events(opts_none, 0);
  for (int s = 0; s < 2; s++) {
    char *path = make_stream_file(sizes[s], &bytes[s]);
    snprintf(url, sizeof url, "file://%s", path);
    mlt_options *o = NULL;
    mlt_exporter *e = NULL;
    mlt_options_new(&o);
    mlt_options_use_env(o, 0);
    mlt_options_set_log(o, MLT_LOG_OFF, NULL, NULL);
    mlt_options_set_max_events_per_span(o, 1000000);
    mlt_options_set_queue_size(o, 1 << 16);
    mlt_exporter_discard_new(&e);
    mlt_options_add_exporter(o, e);
    if (mlt_init(o) != MLT_OK) abort();
    mlt_options_free(o);
    median_s(t[s]);
    mlt_stats st;
    mlt_get_stats(&st, sizeof st);
    mlt_shutdown(10000);
    if (st.traces_dropped) fprintf(stderr, "note: %llu traces dropped\n", (unsigned long long)st.traces_dropped);
    unlink(path);
    free(path);
  }
  int n0 = sizes[0] + 3, n1 = sizes[1] + 3; /* chunks: + role, finish, usage */
  printf("curl_stream_bytes %zu bytes (%d chunks)\n", bytes[1], n1);
  for (int m = 0; m < NMODES; m++)
    printf("curl_%s_throughput %.1f MB/s\n", mode_names[m], (double)bytes[1] / 1e6 / t[1][m]);
  printf("curl_plain_ns_per_chunk %.0f ns\n", t[1][PLAIN] * 1e9 / n1);
  for (int m = OFF; m < NMODES; m++) {
    printf("curl_%s_overhead_ns_per_chunk %.0f ns\n", mode_names[m], (t[1][m] - t[1][PLAIN]) * 1e9 / n1);
    printf("curl_%s_overhead_us_per_call %.1f us\n", mode_names[m], (t[0][m] - t[0][PLAIN]) * 1e6);
  }
  (void)n0;
  mlt_curl_options_free(opts_all);
  mlt_curl_options_free(opts_none);
  curl_easy_cleanup(easy);
  curl_global_cleanup();
  return sink == 0;
}
