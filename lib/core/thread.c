/* lib/core/thread.c: threads, jobs and worker queues that carry a context.
 *
 * Layer: core -- carries contexts (context.c) to other threads; includes core/ and util/.
 */
#include "core/span-internal.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

struct mlt_job {
  mlt_context *ctx; /* holding reference, or NULL */
  void (*fn)(void *);
  void *arg;
  struct mlt_job *next;
};

static mlt_context *hold_for(mlt_context *ctx) {
  if (ctx) return mlt_context_hold(ctx);
  mlt_context *cur = mlt_context_current();
  mlt_context *h = mlt_context_hold(cur);
  mlt_context_release(cur);
  return h;
}

mlt_job *mlt_job_new(mlt_context *ctx, void (*fn)(void *), void *arg) {
  if (!fn) return NULL;
  mlt_job *j = malloc(sizeof *j);
  if (!j) return NULL;
  j->ctx = hold_for(ctx);
  j->fn = fn;
  j->arg = arg;
  j->next = NULL;
  return j;
}

void mlt_job_run(mlt_job *j) {
  if (!j) return;
  mlt_context_run(j->ctx, j->fn, j->arg);
  mlt_context_release(j->ctx);
  free(j);
}

void mlt_job_cancel(mlt_job *j) {
  if (!j) return;
  mlt_context_release(j->ctx);
  free(j);
}

/* ---- threads --------------------------------------------------------- */

typedef struct thread_start {
  mlt_context *ctx;
  void *(*fn)(void *);
  void *arg;
} thread_start;

static void *thread_main(void *p) {
  thread_start st = *(thread_start *)p;
  free(p);
  mlt_attach_token tok = mlt_context_attach(st.ctx);
  void *ret = st.fn(st.arg);
  if (tok.depth_) mlt_context_detach(tok);
  mlt_context_release(st.ctx);
  return ret;
}

int mlt_thread_create(pthread_t *thread, const pthread_attr_t *attr, mlt_context *ctx, void *(*fn)(void *),
                      void *arg) {
  if (!thread || !fn) return EINVAL;
  thread_start *st = malloc(sizeof *st);
  if (!st) return ENOMEM;
  st->ctx = hold_for(ctx);
  st->fn = fn;
  st->arg = arg;
  int rc = pthread_create(thread, attr, thread_main, st);
  if (rc) {
    mlt_context_release(st->ctx);
    free(st);
  }
  return rc;
}

/* ---- work queue ------------------------------------------------------ */

/* Rejections, process-wide (mlt_stats.work_queue_rejected; zeroed by
 * mlt_init()).  Only the rejection path touches these: an accepted job costs
 * nothing here. */
static _Atomic uint64_t g_rejected;
static _Atomic int64_t g_reject_logged_ns; /* monotonic time of the last warning */

uint64_t mlt__workq_rejected(void) { return atomic_load_explicit(&g_rejected, memory_order_relaxed); }
void mlt__workq_reset_counters(void) { atomic_store_explicit(&g_rejected, 0, memory_order_relaxed); }

struct mlt_work_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;       /* workers: a job is queued, or stop */
  pthread_cond_t not_full; /* mlt_work_queue_submit_wait(): room, or stop */
  mlt_job *head, *tail;
  _Atomic unsigned pending; /* written under mu; read without it for a fast refusal */
  unsigned max_pending;
  unsigned waiters; /* submitters blocked in mlt_work_queue_submit_wait() */
  int stop;
  unsigned n_threads;
  pthread_t *threads;
  _Atomic uint64_t rejected;
};

/* Count a rejected job process-wide (and warn at most once a second, process-wide: a full
 * queue under overload rejects thousands a second). */
static void count_rejection(unsigned pending, int stopping) {
  uint64_t total = atomic_fetch_add_explicit(&g_rejected, 1, memory_order_relaxed) + 1;
  int64_t now = mlt__mono_ns();
  int64_t last = atomic_load_explicit(&g_reject_logged_ns, memory_order_relaxed);
  if (last && now - last < 1000000000) return;
  if (!atomic_compare_exchange_strong_explicit(&g_reject_logged_ns, &last, now, memory_order_relaxed,
                                               memory_order_relaxed))
    return; /* another thread logs this second */
  if (stopping)
    mlt__log(MLT_LOG_WARN, MLT__LOGK_WORKQ,
             "work queue stopping: job rejected (%llu rejected since mlt_init, see mlt_stats.work_queue_rejected)",
             (unsigned long long)total);
  else
    mlt__log(MLT_LOG_WARN, MLT__LOGK_WORKQ,
             "work queue full (%u jobs pending): job rejected (%llu rejected since mlt_init, see "
             "mlt_stats.work_queue_rejected); raise max_pending or add workers",
             pending, (unsigned long long)total);
}

static void *worker_main(void *p) {
  mlt_work_queue *q = p;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->head && !q->stop) pthread_cond_wait(&q->cv, &q->mu);
    mlt_job *j = q->head;
    if (!j) break; /* stop and drained */
    q->head = j->next;
    if (!q->head) q->tail = NULL;
    atomic_store_explicit(&q->pending, atomic_load_explicit(&q->pending, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    if (q->waiters) pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    mlt_job_run(j);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int mlt_work_queue_new(unsigned threads, unsigned max_pending, mlt_work_queue **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (threads < 1 || threads > 256 || max_pending < 1) return MLT_EINVAL;
  mlt_work_queue *q = calloc(1, sizeof *q);
  if (!q) return MLT_ENOMEM;
  q->threads = calloc(threads, sizeof *q->threads);
  if (!q->threads) {
    free(q);
    return MLT_ENOMEM;
  }
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->not_full, &ca);
  pthread_condattr_destroy(&ca);
  q->max_pending = max_pending;
  for (unsigned i = 0; i < threads; i++) {
    if (pthread_create(&q->threads[i], NULL, worker_main, q) != 0) {
      q->n_threads = i;
      mlt_work_queue_free(q);
      return MLT_EIO;
    }
    q->n_threads = i + 1;
  }
  *out = q;
  return MLT_OK;
}

/* Caller holds q->mu and checked that there is room. */
static void enqueue_locked(mlt_work_queue *q, mlt_job *j) {
  if (q->tail)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  atomic_store_explicit(&q->pending, atomic_load_explicit(&q->pending, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  pthread_cond_signal(&q->cv);
}

/* Add |j| waiting until |deadline_ns| (monotonic; 0: do not wait) for room.
 * Consumes |j| in every case. */
static int submit_job(mlt_work_queue *q, mlt_job *j, int64_t deadline_ns) {
  pthread_mutex_lock(&q->mu);
  int rc = MLT_OK;
  while (!q->stop && atomic_load_explicit(&q->pending, memory_order_relaxed) >= q->max_pending) {
    int64_t left = deadline_ns ? deadline_ns - mlt__mono_ns() : 0;
    if (left <= 0) {
      rc = deadline_ns ? MLT_ETIMEDOUT : MLT_EFULL;
      break;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t abs = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + left;
    ts.tv_sec = (time_t)(abs / 1000000000);
    ts.tv_nsec = (long)(abs % 1000000000);
    q->waiters++;
    pthread_cond_timedwait(&q->not_full, &q->mu, &ts);
    q->waiters--;
  }
  if (rc == MLT_OK && q->stop) rc = MLT_EFULL;
  unsigned pending = atomic_load_explicit(&q->pending, memory_order_relaxed);
  int stopping = q->stop;
  if (rc == MLT_OK)
    enqueue_locked(q, j);
  else
    atomic_fetch_add_explicit(&q->rejected, 1, memory_order_relaxed);
  pthread_mutex_unlock(&q->mu); /* |q| is not touched after this */
  if (rc != MLT_OK) {
    mlt_job_cancel(j);
    count_rejection(pending, stopping);
  }
  return rc;
}

int mlt_work_queue_submit(mlt_work_queue *q, mlt_context *ctx, void (*fn)(void *), void *arg) {
  if (!q || !fn) return MLT_EINVAL;
  /* Refuse a full queue before allocating (the answer is rechecked under
   * the lock: a job may have been taken meanwhile). */
  unsigned pending = atomic_load_explicit(&q->pending, memory_order_relaxed);
  if (pending >= q->max_pending) {
    atomic_fetch_add_explicit(&q->rejected, 1, memory_order_relaxed);
    count_rejection(pending, 0);
    return MLT_EFULL;
  }
  mlt_job *j = mlt_job_new(ctx, fn, arg);
  if (!j) return MLT_ENOMEM;
  return submit_job(q, j, 0);
}

int mlt_work_queue_submit_wait(mlt_work_queue *q, mlt_context *ctx, void (*fn)(void *), void *arg,
                               int timeout_ms) {
  if (!q || !fn || timeout_ms < 0) return MLT_EINVAL;
  mlt_job *j = mlt_job_new(ctx, fn, arg);
  if (!j) return MLT_ENOMEM;
  return submit_job(q, j, timeout_ms ? mlt__mono_ns() + (int64_t)timeout_ms * 1000000 : 0);
}

uint64_t mlt_work_queue_rejected(const mlt_work_queue *q) {
  return q ? atomic_load_explicit(&((mlt_work_queue *)q)->rejected, memory_order_relaxed) : 0;
}

unsigned mlt_work_queue_pending(const mlt_work_queue *q) {
  return q ? atomic_load_explicit(&((mlt_work_queue *)q)->pending, memory_order_relaxed) : 0;
}

void mlt_work_queue_free(mlt_work_queue *q) {
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  q->stop = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_cond_broadcast(&q->not_full);
  /* Submitters blocked in mlt_work_queue_submit_wait() wake, fail and leave
   * the queue alone before it goes. */
  while (q->waiters) {
    pthread_mutex_unlock(&q->mu);
    sched_yield();
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  for (unsigned i = 0; i < q->n_threads; i++) pthread_join(q->threads[i], NULL);
  /* Workers drain before exiting; anything left (no workers) is cancelled. */
  mlt_job *j = q->head;
  while (j) {
    mlt_job *n = j->next;
    mlt_job_cancel(j);
    j = n;
  }
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  pthread_cond_destroy(&q->not_full);
  free(q->threads);
  free(q);
}
