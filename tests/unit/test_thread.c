/* tests/unit/test_thread.c: worker queues under overload: every rejection is
 * counted (per queue and in mlt_stats.work_queue_rejected) and logged at
 * most once a second; mlt_work_queue_submit_wait() waits for room up to its
 * deadline; rejected jobs never run and release their trace; freeing a
 * queue wakes blocked submitters. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

/* ---- a gate that holds the workers ------------------------------------ */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_open;
static int g_blocked; /* workers waiting at the gate */
static atomic_int g_ran;

static void gate_reset(void) {
  pthread_mutex_lock(&g_mu);
  g_open = 0;
  g_blocked = 0;
  pthread_mutex_unlock(&g_mu);
  atomic_store(&g_ran, 0);
}

static void gate_open(void) {
  pthread_mutex_lock(&g_mu);
  g_open = 1;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

/* Wait until |n| workers sit at the gate (so the queue holds only what we
 * submit after). */
static void gate_wait_blocked(int n) {
  pthread_mutex_lock(&g_mu);
  while (g_blocked < n) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
}

static void blocking_job(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_mu);
  g_blocked++;
  pthread_cond_broadcast(&g_cv);
  while (!g_open) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  atomic_fetch_add(&g_ran, 1);
}

/* A job that records a span under the context it runs in. */
static void span_job(void *arg) {
  mlt_span sp = mlt_span_start((const char *)arg, MLT_SPAN_TASK);
  mlt_span_end(sp);
  atomic_fetch_add(&g_ran, 1);
}

/* ---- captured warnings ------------------------------------------------- */

static atomic_int g_full_logs;

static void capture_log(mlt_log_level level, const char *msg, void *ud) {
  (void)ud;
  if (level == MLT_LOG_WARN && strstr(msg, "work queue full")) atomic_fetch_add(&g_full_logs, 1);
}

static void init_with_log(void) {
  mlt_options *o = tu_options();
  mlt_options_set_log(o, MLT_LOG_WARN, capture_log, NULL);
  tu_start(o);
  atomic_store(&g_full_logs, 0);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t stats_rejected(void) { return tu_stats().work_queue_rejected; }

TEST(rejections_are_counted_and_logged_once_a_second) {
  init_with_log();
  gate_reset();
  mlt_work_queue *q = NULL;
  REQUIRE_EQ_INT(mlt_work_queue_new(1, 2, &q), MLT_OK);
  REQUIRE_EQ_INT(mlt_work_queue_submit(q, NULL, blocking_job, NULL), MLT_OK);
  gate_wait_blocked(1);
  double t0 = now_s();
  /* The root span's trace stays open while its jobs are held; rejected
   * jobs must release their hold, or the trace would never finish. */
  mlt_span root = mlt_span_start("submitter", MLT_SPAN_CHAIN);
  CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, span_job, "accepted-1"), MLT_OK);
  CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, span_job, "accepted-2"), MLT_OK);
  CHECK_EQ_INT(mlt_work_queue_pending(q), 2);
  for (int i = 0; i < 1000; i++) CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, span_job, "rejected"), MLT_EFULL);
  double elapsed = now_s() - t0;
  mlt_span_end(root);
  CHECK_EQ_INT(mlt_work_queue_rejected(q), 1000);
  CHECK_EQ_INT(stats_rejected(), 1000);
  gate_open();
  mlt_work_queue_free(q);
  CHECK_EQ_INT(atomic_load(&g_ran), 3);
  /* At most one warning per started second. */
  int logs = atomic_load(&g_full_logs);
  CHECK(logs >= 1);
  CHECK(logs <= 1 + (int)elapsed + 1);
  if (logs > 1 + (int)elapsed + 1) tap_diag("%d warnings in %.2f s", logs, elapsed);
  /* One trace: the root and the two accepted jobs, nothing else. */
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_INT(tu_nspans(t), 3);
  CHECK(tu_span(t, "accepted-1") != NULL);
  CHECK(tu_span(t, "accepted-2") != NULL);
  CHECK(tu_span(t, "rejected") == NULL);
  CHECK_EQ_INT(tu_stats().traces_exported, 1);
  tu_done();
}

TEST(counter_restarts_at_init) {
  init_with_log();
  gate_reset();
  mlt_work_queue *q = NULL;
  REQUIRE_EQ_INT(mlt_work_queue_new(1, 1, &q), MLT_OK);
  REQUIRE_EQ_INT(mlt_work_queue_submit(q, NULL, blocking_job, NULL), MLT_OK);
  gate_wait_blocked(1);
  CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, span_job, "a"), MLT_OK);
  CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, span_job, "b"), MLT_EFULL);
  CHECK_EQ_INT(stats_rejected(), 1);
  tu_done();
  CHECK_EQ_INT(stats_rejected(), 1); /* readable after shutdown */
  init_with_log();
  CHECK_EQ_INT(stats_rejected(), 0);
  CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, span_job, "c"), MLT_EFULL);
  CHECK_EQ_INT(stats_rejected(), 1);
  CHECK_EQ_INT(mlt_work_queue_rejected(q), 2); /* per queue: since it was created */
  gate_open();
  mlt_work_queue_free(q);
  tu_done();
}

TEST(bad_arguments) {
  mlt_work_queue *q = NULL;
  REQUIRE_EQ_INT(mlt_work_queue_new(1, 4, &q), MLT_OK);
  CHECK_EQ_INT(mlt_work_queue_submit_wait(q, NULL, span_job, "x", -1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_work_queue_submit_wait(q, NULL, NULL, NULL, 10), MLT_EINVAL);
  CHECK_EQ_INT(mlt_work_queue_submit_wait(NULL, NULL, span_job, "x", 10), MLT_EINVAL);
  CHECK_EQ_INT(mlt_work_queue_submit(NULL, NULL, span_job, "x"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_work_queue_rejected(NULL), 0);
  CHECK_EQ_INT(mlt_work_queue_pending(NULL), 0);
  CHECK_EQ_INT(mlt_work_queue_rejected(q), 0); /* invalid calls are not rejections */
  mlt_work_queue_free(q);
}

/* ---- waiting for room -------------------------------------------------- */

typedef struct waiter {
  mlt_work_queue *q;
  mlt_context *ctx; /* context to submit under */
  int timeout_ms;
  int rc;
  atomic_int started;
} waiter;

static void *waiter_main(void *p) {
  waiter *w = p;
  atomic_store(&w->started, 1);
  w->rc = mlt_work_queue_submit_wait(w->q, w->ctx, span_job, "waited", w->timeout_ms);
  return NULL;
}

TEST(submit_wait_times_out_then_gets_room) {
  init_with_log();
  gate_reset();
  mlt_work_queue *q = NULL;
  REQUIRE_EQ_INT(mlt_work_queue_new(1, 1, &q), MLT_OK);
  REQUIRE_EQ_INT(mlt_work_queue_submit(q, NULL, blocking_job, NULL), MLT_OK);
  gate_wait_blocked(1);
  mlt_span root = mlt_span_start("request", MLT_SPAN_CHAIN);
  mlt_context *ctx = mlt_context_capture(root);
  CHECK_EQ_INT(mlt_work_queue_submit(q, ctx, span_job, "queued"), MLT_OK);
  /* Full: a wait that ends at its deadline is a counted rejection. */
  CHECK_EQ_INT(mlt_work_queue_submit_wait(q, ctx, span_job, "timed-out", 30), MLT_ETIMEDOUT);
  CHECK_EQ_INT(mlt_work_queue_submit_wait(q, ctx, span_job, "no-wait", 0), MLT_EFULL);
  CHECK_EQ_INT(mlt_work_queue_rejected(q), 2);
  CHECK_EQ_INT(stats_rejected(), 2);
  /* A long wait gets the room the worker makes once the gate opens. */
  waiter w = {.q = q, .ctx = ctx, .timeout_ms = 60000, .rc = 99};
  pthread_t th;
  REQUIRE_EQ_INT(pthread_create(&th, NULL, waiter_main, &w), 0);
  while (!atomic_load(&w.started)) sched_yield();
  gate_open();
  pthread_join(th, NULL);
  CHECK_EQ_INT(w.rc, MLT_OK);
  mlt_work_queue_free(q);
  CHECK_EQ_INT(atomic_load(&g_ran), 3); /* blocking, queued, waited */
  mlt_context_release(ctx);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_INT(tu_nspans(t), 3);
  cJSON *r = tu_span(t, "request"), *waited = tu_span(t, "waited"), *queued = tu_span(t, "queued");
  REQUIRE(r && waited && queued);
  /* Jobs run under the context captured at submission. */
  CHECK_EQ_STR(tu_str(waited, "parent_span_id"), tu_str(r, "span_id"));
  CHECK_EQ_STR(tu_str(queued, "parent_span_id"), tu_str(r, "span_id"));
  CHECK(tu_span(t, "timed-out") == NULL);
  CHECK_EQ_INT(stats_rejected(), 2);
  tu_done();
}

typedef struct freer {
  mlt_work_queue *q;
} freer;

static void *freer_main(void *p) {
  mlt_work_queue_free(((freer *)p)->q);
  return NULL;
}

TEST(free_wakes_blocked_submitters) {
  gate_reset();
  mlt_work_queue *q = NULL;
  REQUIRE_EQ_INT(mlt_work_queue_new(1, 1, &q), MLT_OK);
  REQUIRE_EQ_INT(mlt_work_queue_submit(q, NULL, blocking_job, NULL), MLT_OK);
  gate_wait_blocked(1);
  REQUIRE_EQ_INT(mlt_work_queue_submit(q, NULL, span_job, "queued"), MLT_OK);
  waiter w = {.q = q, .timeout_ms = 600000, .rc = 99};
  pthread_t wt, ft;
  REQUIRE_EQ_INT(pthread_create(&wt, NULL, waiter_main, &w), 0);
  while (!atomic_load(&w.started)) sched_yield();
  /* Let the waiter block (or not yet: then it finds the queue stopping). */
  struct timespec ts = {0, 20 * 1000000};
  nanosleep(&ts, NULL);
  freer f = {q};
  REQUIRE_EQ_INT(pthread_create(&ft, NULL, freer_main, &f), 0);
  pthread_join(wt, NULL); /* returns long before its 10 minutes */
  CHECK_EQ_INT(w.rc, MLT_EFULL);
  gate_open();
  pthread_join(ft, NULL);
  CHECK_EQ_INT(atomic_load(&g_ran), 2); /* queued jobs still run at free */
}

/* ---- many producers ---------------------------------------------------- */

#define N_PRODUCERS 4
#define N_PER_PRODUCER 5000

typedef struct producer {
  mlt_work_queue *q;
  int wait;
  long ok, rejected;
} producer;

static void count_job(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ran, 1);
}

static void *producer_main(void *p) {
  producer *pr = p;
  for (int i = 0; i < N_PER_PRODUCER; i++) {
    int rc = pr->wait && i % 2 ? mlt_work_queue_submit_wait(pr->q, NULL, count_job, NULL, 1)
                               : mlt_work_queue_submit(pr->q, NULL, count_job, NULL);
    if (rc == MLT_OK)
      pr->ok++;
    else if (rc == MLT_EFULL || rc == MLT_ETIMEDOUT)
      pr->rejected++;
  }
  return NULL;
}

TEST(producers_every_job_ran_or_was_counted) {
  init_with_log();
  gate_reset();
  mlt_work_queue *q = NULL;
  REQUIRE_EQ_INT(mlt_work_queue_new(2, 8, &q), MLT_OK);
  producer pr[N_PRODUCERS];
  pthread_t th[N_PRODUCERS];
  for (int i = 0; i < N_PRODUCERS; i++) {
    pr[i] = (producer){.q = q, .wait = i % 2};
    REQUIRE_EQ_INT(pthread_create(&th[i], NULL, producer_main, &pr[i]), 0);
  }
  long ok = 0, rejected = 0;
  for (int i = 0; i < N_PRODUCERS; i++) {
    pthread_join(th[i], NULL);
    ok += pr[i].ok;
    rejected += pr[i].rejected;
  }
  mlt_work_queue_free(q);
  CHECK_EQ_INT(ok + rejected, N_PRODUCERS * N_PER_PRODUCER);
  CHECK_EQ_INT(atomic_load(&g_ran), ok);
  CHECK_EQ_INT(stats_rejected(), (uint64_t)rejected);
  tap_diag("%ld accepted, %ld rejected", ok, rejected);
  tu_done();
}

static const tap_test tests[] = {
    TAP_ENTRY(rejections_are_counted_and_logged_once_a_second),
    TAP_ENTRY(counter_restarts_at_init),
    TAP_ENTRY(bad_arguments),
    TAP_ENTRY(submit_wait_times_out_then_gets_room),
    TAP_ENTRY(free_wakes_blocked_submitters),
    TAP_ENTRY(producers_every_job_ran_or_was_counted),
    TAP_END,
};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
