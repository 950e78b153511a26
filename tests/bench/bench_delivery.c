/* tests/bench/bench_delivery.c: figures of the export queue (issue 9).
 *
 * Prints `name value unit` lines.  Modes:
 *   bench_delivery --trace-bytes N   memory one GenAI trace (root + 4
 *                                    children, ~750 B of payload per span)
 *                                    holds while it waits in the export
 *                                    queue: N traces queued behind a blocked
 *                                    exporter, measured by the queue's own
 *                                    accounting and by the RSS growth
 *   bench_delivery --burst N PATH    N GenAI traces as fast as one thread
 *                                    makes them, to the JSONL file store at
 *                                    PATH with DEFAULT settings (no queue
 *                                    option, no environment): traces
 *                                    dropped (must be 0), peak queue bytes,
 *                                    time to produce and to drain
 *   bench_delivery --env N           N GenAI traces through the exporters
 *                                    the environment configures (MLflow,
 *                                    OTLP), then wait until every one is
 *                                    delivered; one JSON line: elapsed
 *                                    seconds (first span to last
 *                                    acknowledgement) and the counters
 *   bench_delivery                   both (N = 20000 and 100000, file in
 *                                    the working directory)
 * Wall-clock figures are noisy on a shared machine; the drop count and the
 * byte figures are not.
 */
#include <mltrace/mltrace.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb;
}

/* The GenAI trace shape of the performance targets (same as bench_core). */
static char g_in[400], g_out[400];
static void genai_payloads(void) {
  snprintf(g_in, sizeof g_in,
           "{\"messages\": [{\"role\": \"user\", \"content\": \"What does the Q3 report say about EMEA "
           "revenue?\"}], \"temperature\": 0.2}");
  snprintf(g_out, sizeof g_out,
           "{\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": \"EMEA revenue grew 12%% "
           "quarter over quarter.\"}}]}");
}

static void genai_trace(long i) {
  mlt_span root = mlt_span_start("rag.pipeline", MLT_SPAN_CHAIN);
  mlt_span_set_inputs_json(root, g_in);
  mlt_span_set_attr_int(root, "request", i);
  static const mlt_span_type types[4] = {MLT_SPAN_RETRIEVER, MLT_SPAN_RERANKER, MLT_SPAN_CHAT_MODEL,
                                         MLT_SPAN_PARSER};
  static const char *const names[4] = {"retrieve", "rerank", "generate", "parse"};
  for (int k = 0; k < 4; k++) {
    mlt_span c = mlt_span_start(names[k], types[k]);
    mlt_span_set_inputs_json(c, g_in);
    mlt_span_set_outputs_json(c, g_out);
    mlt_span_set_attr_str(c, "model", "gpt-4o-mini");
    mlt_span_end(c);
  }
  mlt_span_set_outputs_json(root, g_out);
  mlt_span_end(root);
}

/* An exporter that holds the export thread until released. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_blocked, g_release;

static int blocking_cb(const char *json, size_t len, void *ud) {
  (void)json;
  (void)len;
  (void)ud;
  pthread_mutex_lock(&g_mu);
  g_blocked = 1;
  pthread_cond_broadcast(&g_cv);
  while (!g_release) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  return 0;
}

static void trace_bytes(long n) {
  genai_payloads();
  mlt_options *o = NULL;
  mlt_exporter *e = NULL;
  mlt_options_new(&o);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, MLT_LOG_ERROR, NULL, NULL);
  mlt_options_set_queue_max_bytes(o, (uint64_t)4 << 30);
  mlt_exporter_callback_new(blocking_cb, NULL, &e);
  mlt_options_add_exporter(o, e);
  if (mlt_init(o) != MLT_OK) exit(1);
  mlt_options_free(o);
  /* Warm up the pools, then block the export thread on one trace. */
  for (long i = 0; i < 2000; i++) genai_trace(i);
  mlt_flush(30000);
  genai_trace(0);
  mlt_flush(0);
  pthread_mutex_lock(&g_mu);
  while (!g_blocked) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  mlt_stats a, b;
  mlt_get_stats(&a, sizeof a);
  long rss0 = rss_kb();
  for (long i = 0; i < n; i++) genai_trace(i);
  long rss1 = rss_kb();
  mlt_get_stats(&b, sizeof b);
  printf("queue_genai_trace_bytes %.0f bytes/trace\n", (double)(b.queue_bytes - a.queue_bytes) / (double)n);
  printf("queue_genai_trace_rss_bytes %.0f bytes/trace\n", (double)(rss1 - rss0) * 1024.0 / (double)n);
  printf("queue_genai_traces_per_256mib %.0f traces\n",
         (double)(256u << 20) / ((double)(b.queue_bytes - a.queue_bytes) / (double)n));
  pthread_mutex_lock(&g_mu);
  g_release = 1;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  mlt_shutdown(60000);
}

static void burst(long n, const char *path) {
  genai_payloads();
  unlink(path);
  mlt_options *o = NULL;
  mlt_options_new(&o);
  mlt_options_use_env(o, 0); /* defaults, whatever the environment says */
  mlt_options_set_log(o, MLT_LOG_ERROR, NULL, NULL);
  mlt_options_set_file_path(o, path);
  if (mlt_init(o) != MLT_OK) exit(1);
  mlt_options_free(o);
  double t0 = now_s();
  for (long i = 0; i < n; i++) genai_trace(i);
  double made = now_s() - t0;
  int rc = mlt_flush(600000);
  double drained = now_s() - t0;
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  mlt_shutdown(60000);
  printf("burst_genai_traces %ld traces\n", n);
  printf("burst_genai_dropped %llu traces\n", (unsigned long long)st.traces_dropped);
  printf("burst_genai_failed %llu traces\n", (unsigned long long)st.traces_failed);
  printf("burst_genai_exported %llu traces\n", (unsigned long long)st.traces_exported);
  printf("burst_genai_queue_peak %.1f MiB\n", (double)st.queue_bytes_peak / 1048576.0);
  printf("burst_genai_queue_bound %.0f MiB\n", (double)st.queue_max_bytes / 1048576.0);
  printf("burst_genai_produce_traces_per_sec %.0f traces/s\n", (double)n / made);
  printf("burst_genai_drain_s %.2f s\n", drained);
  printf("burst_genai_flush_rc %d\n", rc);
  unlink(path);
}

static void env_run(long n) {
  genai_payloads();
  if (mlt_init(NULL) != MLT_OK) exit(1);
  double t0 = now_s();
  for (long i = 0; i < n; i++) genai_trace(i);
  double made = now_s() - t0;
  int rc = mlt_flush(3600000);
  double el = now_s() - t0;
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  mlt_shutdown(10000);
  printf("{\"traces\": %ld, \"elapsed_s\": %.3f, \"produce_s\": %.3f, \"flush_rc\": %d, \"exported\": %llu, "
         "\"failed\": %llu, \"partial\": %llu, \"dropped\": %llu, \"spooled\": %llu, \"requests\": %llu, "
         "\"retries\": %llu}\n",
         n, el, made, rc, (unsigned long long)st.traces_exported, (unsigned long long)st.traces_failed,
         (unsigned long long)st.traces_partial, (unsigned long long)st.traces_dropped,
         (unsigned long long)st.traces_spooled, (unsigned long long)st.export_requests,
         (unsigned long long)st.export_retries);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--env")) {
    env_run(atol(argv[2]));
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "--trace-bytes")) {
    trace_bytes(atol(argv[2]));
    return 0;
  }
  if (argc == 4 && !strcmp(argv[1], "--burst")) {
    burst(atol(argv[2]), argv[3]);
    return 0;
  }
  if (argc != 1) {
    fprintf(stderr, "usage: bench_delivery [--trace-bytes N | --burst N PATH]\n");
    return 2;
  }
  trace_bytes(20000);
  burst(100000, "bench-burst.jsonl");
  return 0;
}
