/* lib/thread.c: threads, jobs and worker queues that carry a context. */
#include "span-internal.h"

#include <errno.h>
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

struct mlt_work_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mlt_job *head, *tail;
  unsigned pending, max_pending;
  int stop;
  unsigned n_threads;
  pthread_t *threads;
};

static void *worker_main(void *p) {
  mlt_work_queue *q = p;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->head && !q->stop) pthread_cond_wait(&q->cv, &q->mu);
    mlt_job *j = q->head;
    if (!j) break; /* stop and drained */
    q->head = j->next;
    if (!q->head) q->tail = NULL;
    q->pending--;
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

int mlt_work_queue_submit(mlt_work_queue *q, mlt_context *ctx, void (*fn)(void *), void *arg) {
  if (!q || !fn) return MLT_EINVAL;
  pthread_mutex_lock(&q->mu);
  int full = q->pending >= q->max_pending || q->stop;
  pthread_mutex_unlock(&q->mu);
  if (full) return MLT_EFULL;
  mlt_job *j = mlt_job_new(ctx, fn, arg);
  if (!j) return MLT_ENOMEM;
  pthread_mutex_lock(&q->mu);
  if (q->pending >= q->max_pending || q->stop) {
    pthread_mutex_unlock(&q->mu);
    mlt_job_cancel(j);
    return MLT_EFULL;
  }
  if (q->tail)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  q->pending++;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  return MLT_OK;
}

void mlt_work_queue_free(mlt_work_queue *q) {
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  q->stop = 1;
  pthread_cond_broadcast(&q->cv);
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
  free(q->threads);
  free(q);
}
