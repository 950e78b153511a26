/* tests/unit/test_delivery.c: the export queue and delivery accounting
 * (issue 9): the byte bound, backpressure-free bursts, mlt_flush() results,
 * shutdown deadlines, the counter partition, visible losses, and the option
 * bugs (clamping, overflow).  Network delivery is tested against a real
 * MLflow server in tests/mlflow/test_server.py. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* ---- helpers ---------------------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[65536];
static size_t log_len;

static void capture_log(mlt_log_level level, const char *msg, void *ud) {
  (void)level;
  (void)ud;
  pthread_mutex_lock(&log_mu);
  int n = snprintf(log_text + log_len, sizeof log_text - log_len, "%s\n", msg);
  if (n > 0) { log_len += (size_t)n; if (log_len > sizeof log_text - 1) log_len = sizeof log_text - 1; }
  pthread_mutex_unlock(&log_mu);
}

static int log_has(const char *needle) {
  pthread_mutex_lock(&log_mu);
  int r = strstr(log_text, needle) != NULL;
  pthread_mutex_unlock(&log_mu);
  return r;
}

/* An exporter whose callback waits until released (holds the export
 * thread), then sleeps |g_sleep_us| per trace. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_hold, g_held;
static unsigned g_sleep_us;
static _Atomic long g_seen;

static int gate_cb(const char *json, size_t len, void *ud) {
  (void)json;
  (void)len;
  (void)ud;
  pthread_mutex_lock(&g_mu);
  g_held = 1;
  pthread_cond_broadcast(&g_cv);
  while (g_hold) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  if (g_sleep_us) usleep(g_sleep_us);
  g_seen++;
  return 0;
}

static void gate_close(void) {
  pthread_mutex_lock(&g_mu);
  g_hold = 1;
  g_held = 0;
  pthread_mutex_unlock(&g_mu);
}

static void gate_wait_held(void) {
  pthread_mutex_lock(&g_mu);
  while (!g_held) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
}

static void gate_open(void) {
  pthread_mutex_lock(&g_mu);
  g_hold = 0;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

/* Each test starts from the same state, also when they run in one process
 * (TAP_NOFORK=1, as under valgrind). */
static mlt_options *gate_options(void) {
  g_sleep_us = 0;
  g_hold = 0;
  g_held = 0;
  pthread_mutex_lock(&log_mu);
  log_len = 0;
  log_text[0] = '\0';
  pthread_mutex_unlock(&log_mu);
  mlt_options *o = NULL;
  REQUIRE(mlt_options_new(&o) == MLT_OK);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, MLT_LOG_INFO, capture_log, NULL);
  mlt_exporter *e = NULL;
  REQUIRE(mlt_exporter_callback_new(gate_cb, NULL, &e) == MLT_OK);
  mlt_options_add_exporter(o, e);
  return o;
}

static char big_json[10001];

/* One trace of two spans with ~|kb| KiB of inputs. */
static void make_trace(int kb) {
  if (!big_json[0]) {
    memset(big_json, 'x', sizeof big_json - 1);
    big_json[0] = '"';
  }
  size_t n = (size_t)kb * 1000;
  if (n > sizeof big_json - 2) n = sizeof big_json - 2;
  char save = big_json[n + 1], save2 = big_json[n + 2];
  big_json[n + 1] = '"';
  big_json[n + 2] = '\0';
  {
    MLT_SPAN_SCOPE(s, "root", MLT_SPAN_CHAIN);
    mlt_span_set_inputs_json(s, big_json);
    MLT_SPAN_SCOPE(c, "child", MLT_SPAN_TOOL);
  }
  big_json[n + 1] = save;
  big_json[n + 2] = save2;
}

/* finished = exported + partial + failed + dropped + spooled + pending */
static void check_partition(const mlt_stats *s) {
  uint64_t sum = s->traces_exported + s->traces_partial + s->traces_failed + s->traces_dropped + s->traces_spooled +
                 s->traces_pending;
  if (sum != s->traces_finished)
    tap_diag("finished %llu != exported %llu + partial %llu + failed %llu + dropped %llu + spooled %llu + pending %llu",
             (unsigned long long)s->traces_finished, (unsigned long long)s->traces_exported,
             (unsigned long long)s->traces_partial, (unsigned long long)s->traces_failed,
             (unsigned long long)s->traces_dropped, (unsigned long long)s->traces_spooled,
             (unsigned long long)s->traces_pending);
  CHECK(sum == s->traces_finished);
}

/* ---- tests ------------------------------------------------------------ */

TEST(queue_is_bounded_in_bytes) {
  mlt_options *o = gate_options();
  REQUIRE_EQ_INT(mlt_options_set_queue_max_bytes(o, 1u << 20), MLT_OK);
  CHECK_EQ_INT(mlt_options_set_queue_max_bytes(o, 1000), MLT_EINVAL);
  gate_close();
  tu_start(o);
  make_trace(1);
  gate_wait_held(); /* the export thread now waits inside the exporter */
  for (int i = 0; i < 400; i++) make_trace(8);
  mlt_stats st = tu_stats();
  CHECK(st.traces_dropped > 0);
  CHECK(st.traces_dropped < 400);
  CHECK_EQ_INT(st.spans_dropped, st.traces_dropped * 2);
  CHECK(st.queue_bytes <= st.queue_max_bytes);
  CHECK(st.queue_bytes_peak <= st.queue_max_bytes + 16384);
  CHECK_EQ_INT(st.queue_max_bytes, 1u << 20);
  CHECK_EQ_INT(st.queue_capacity, 0); /* no bound in traces unless asked */
  CHECK_EQ_INT(st.traces_finished, 401);
  check_partition(&st);
  gate_open();
  CHECK_EQ_INT(mlt_flush(30000), MLT_EIO); /* some of what it waited for was dropped */
  CHECK_EQ_INT(mlt_flush(30000), MLT_OK);  /* nothing lost since */
  st = tu_stats();
  CHECK_EQ_INT(st.traces_exported + st.traces_dropped, 401);
  CHECK_EQ_INT(st.traces_pending, 0);
  CHECK_EQ_INT(st.queue_bytes, 0);
  check_partition(&st);
  CHECK(log_has("export queue full"));
  mlt_shutdown(5000);
}

TEST(burst_is_absorbed_while_the_exporter_is_busy) {
  mlt_options *o = gate_options();
  gate_close();
  tu_start(o);
  make_trace(1);
  gate_wait_held();
  for (int i = 0; i < 20000; i++) make_trace(0);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.traces_dropped, 0);
  CHECK_EQ_INT(st.queue_depth, 20000);
  CHECK(st.queue_bytes > 20000u * 500);
  gate_open();
  CHECK_EQ_INT(mlt_flush(60000), MLT_OK);
  st = tu_stats();
  CHECK_EQ_INT(st.traces_exported, 20001);
  check_partition(&st);
  mlt_shutdown(5000);
}

TEST(count_bound_from_mlflow_variable) {
  setenv("MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE", "32", 1);
  mlt_options *o = gate_options();
  mlt_options_use_env(o, 1);
  gate_close();
  tu_start(o);
  make_trace(0);
  gate_wait_held();
  for (int i = 0; i < 100; i++) make_trace(0);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.queue_capacity, 32);
  CHECK_EQ_INT(st.traces_dropped, 100 - 32);
  CHECK(log_has("MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE"));
  gate_open();
  mlt_shutdown(10000);
  unsetenv("MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE");
  st = tu_stats();
  CHECK_EQ_INT(st.traces_exported, 33);
  check_partition(&st);
}

TEST(shutdown_uses_its_deadline_to_drain) {
  mlt_options *o = gate_options();
  g_sleep_us = 200;
  tu_start(o);
  for (int i = 0; i < 3000; i++) make_trace(0);
  CHECK_EQ_INT(mlt_shutdown(60000), MLT_OK);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.traces_exported, 3000);
  CHECK_EQ_INT(st.traces_dropped + st.traces_failed, 0);
  CHECK_EQ_INT(st.traces_pending, 0);
  check_partition(&st);
  CHECK(!log_has("not delivered"));
}

TEST(shutdown_deadline_counts_what_is_left_and_warns_once) {
  mlt_options *o = gate_options();
  g_sleep_us = 20000;
  tu_start(o);
  for (int i = 0; i < 200; i++) make_trace(0);
  CHECK_EQ_INT(mlt_shutdown(300), MLT_ETIMEDOUT);
  mlt_stats st = tu_stats();
  CHECK(st.traces_exported > 0);
  CHECK(st.traces_failed > 0);
  CHECK_EQ_INT(st.traces_exported + st.traces_failed, 200);
  CHECK_EQ_INT(st.traces_pending, 0);
  check_partition(&st);
  CHECK(log_has("not delivered:"));
  CHECK(log_has("main reason: shutdown deadline reached"));
}

TEST(suppressed_warnings_are_reported_at_shutdown) {
  mlt_options *o = gate_options();
  mlt_options_set_queue_max_bytes(o, 1u << 20);
  gate_close();
  tu_start(o);
  make_trace(1);
  gate_wait_held();
  for (int i = 0; i < 400; i++) make_trace(8); /* many drops: one warning a second */
  gate_open();
  mlt_shutdown(10000);
  CHECK(log_has("more message(s) like this one were suppressed: export queue full"));
  CHECK(log_has("dropped"));
}

TEST(shutdown_timeout_env_above_max_clamps) {
  setenv("MLTRACE_SHUTDOWN_TIMEOUT_MS", "99999999", 1);
  mlt_options *o = gate_options();
  mlt_options_use_env(o, 1);
  tu_start(o);
  CHECK(log_has("MLTRACE_SHUTDOWN_TIMEOUT_MS='99999999' is outside [0, 600000]; using 600000"));
  mlt_shutdown(1000);
  setenv("MLTRACE_SHUTDOWN_TIMEOUT_MS", "soon", 1);
  o = gate_options();
  mlt_options_use_env(o, 1);
  tu_start(o);
  CHECK(log_has("MLTRACE_SHUTDOWN_TIMEOUT_MS='soon' is not a number; using 5000"));
  mlt_shutdown(1000);
  unsetenv("MLTRACE_SHUTDOWN_TIMEOUT_MS");
}

TEST(trace_timeout_ms_overflow_is_rejected) {
  mlt_options *o = gate_options();
  CHECK_EQ_INT(mlt_options_set_trace_timeout_ms(o, INT64_MAX), MLT_EINVAL);
  CHECK_EQ_INT(mlt_options_set_trace_timeout_ms(o, INT64_MAX / 1000000 + 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_options_set_trace_timeout_ms(o, -1), MLT_EINVAL);
  /* The largest accepted value means "never" in practice: a trace open for a
   * while is not timed out (it used to overflow to a 0.45 ms timeout). */
  REQUIRE_EQ_INT(mlt_options_set_trace_timeout_ms(o, INT64_MAX / 1000000), MLT_OK);
  tu_start(o);
  {
    MLT_SPAN_SCOPE(s, "slow", MLT_SPAN_CHAIN);
    usleep(300000); /* the reaper runs every 100 ms */
  }
  CHECK_EQ_INT(mlt_flush(10000), MLT_OK);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.traces_timed_out, 0);
  CHECK_EQ_INT(st.traces_exported, 1);
  mlt_shutdown(1000);
}

TEST(stats_format_is_one_line) {
  mlt_stats s;
  memset(&s, 0, sizeof s);
  s.traces_finished = 10;
  s.traces_exported = 7;
  s.traces_failed = 1;
  s.traces_dropped = 2;
  char buf[256];
  int n = mlt_stats_format(&s, buf, sizeof buf);
  CHECK_EQ_INT(n, (int)strlen(buf));
  CHECK_EQ_STR(buf,
               "finished=10 exported=7 partial=0 failed=1 dropped=2 spooled=0 pending=0 replayed=0 evicted=0 "
               "retries=0");
  char small[12];
  CHECK_EQ_INT(mlt_stats_format(&s, small, sizeof small), n);
  CHECK_EQ_STR(small, "finished=10");
  CHECK_EQ_INT(mlt_stats_format(&s, NULL, 0), n);
  CHECK_EQ_INT(mlt_stats_format(&s, NULL, 5), MLT_EINVAL);
  CHECK(mlt_stats_format(NULL, buf, sizeof buf) > 0); /* the current counters */
  CHECK(strchr(buf, '\n') == NULL);
}

static const tap_test tests[] = {TAP_ENTRY(queue_is_bounded_in_bytes),
                                 TAP_ENTRY(burst_is_absorbed_while_the_exporter_is_busy),
                                 TAP_ENTRY(count_bound_from_mlflow_variable),
                                 TAP_ENTRY(shutdown_uses_its_deadline_to_drain),
                                 TAP_ENTRY(shutdown_deadline_counts_what_is_left_and_warns_once),
                                 TAP_ENTRY(suppressed_warnings_are_reported_at_shutdown),
                                 TAP_ENTRY(shutdown_timeout_env_above_max_clamps),
                                 TAP_ENTRY(trace_timeout_ms_overflow_is_rejected),
                                 TAP_ENTRY(stats_format_is_one_line),
                                 TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
