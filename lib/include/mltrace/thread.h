/* <mltrace/thread.h>: hand a trace context to worker threads.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * Each helper captures a context when work is *submitted*, holds the trace
 * open until the work has run (see mlt_context_hold()), and attaches the
 * context on the worker for the length of the work only: spans the work
 * starts with mlt_span_start() or the scope macros are children of the
 * submitting span, and the worker has no current context between jobs.
 */
#ifndef MLTRACE_THREAD_H
#define MLTRACE_THREAD_H

#include <pthread.h>
#include <stdint.h>
#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_context mlt_context;

/**
 * pthread_create() that runs @p fn(@p arg) with @p ctx attached.
 * @param ctx context to run under (borrowed: a holding reference is taken),
 *        or NULL to capture this thread's current context.
 * @return 0, or the error number pthread_create() returned (then @p fn never
 *         runs and the hold is released).
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_thread_create(pthread_t *thread, const pthread_attr_t *attr, mlt_context *ctx,
                                 void *(*fn)(void *arg), void *arg);

/** A unit of work bound to a context, for any executor (a thread pool, an
 *  event loop).  Created by mlt_job_new(); consumed exactly once by
 *  mlt_job_run() or mlt_job_cancel(). */
typedef struct mlt_job mlt_job;

/**
 * Bind @p fn(@p arg) to @p ctx (NULL: this thread's current context), holding
 * the trace open until the job is run or cancelled.
 * @return the job, or NULL when out of memory or @p fn is NULL.
 * Thread-safety: any thread.
 */
MLT_EXTERN mlt_job *mlt_job_new(mlt_context *ctx, void (*fn)(void *arg), void *arg);
/** Run the job on the calling thread with its context attached, then free it.
 *  NULL is a no-op.  Thread-safety: any thread, once per job. */
MLT_EXTERN void mlt_job_run(mlt_job *job);
/** Free a job without running it (releases the context and the hold).  NULL
 *  is a no-op. */
MLT_EXTERN void mlt_job_cancel(mlt_job *job);

/**
 * A fixed pool of worker threads fed by a bounded FIFO queue.
 *
 * Sizing.  A queue holds at most max_pending jobs waiting for a worker
 * (jobs being run do not count).  A job submitted to a full queue is
 * rejected: it never runs, the submitter gets MLT_EFULL (or MLT_ETIMEDOUT
 * from mlt_work_queue_submit_wait()), and the rejection is counted in
 * mlt_stats.work_queue_rejected and per queue (mlt_work_queue_rejected()),
 * with a warning logged at most once a second.  Choose:
 *  - threads: the number of cores for CPU-bound jobs; more (cores x the
 *    ratio of waiting time to CPU time) for jobs that block;
 *  - max_pending: at least the jobs your peak load has in flight at once
 *    (concurrent requests x jobs per request: a server fanning each request
 *    out to 3 jobs at 10,000 concurrent requests needs 30,000 to never
 *    reject), bounded by the queueing delay you accept: a job waits about
 *    max_pending x (mean job time) / threads before it runs.  A waiting job
 *    costs about 48 bytes plus its trace, which stays open until the job
 *    has run (see mlt_context_hold()).
 * Rejecting is the backpressure signal: answer 503 (or shed the request)
 * rather than queue without bound.  Producers that can block (not an event
 * loop) may wait for room with mlt_work_queue_submit_wait() instead.
 */
typedef struct mlt_work_queue mlt_work_queue;

/**
 * Start @p threads workers (1..256) with room for @p max_pending jobs (>= 1).
 * @param out receives the queue (free it with mlt_work_queue_free()); NULL on
 *        failure.
 * @return MLT_OK; MLT_EINVAL; MLT_ENOMEM; MLT_EIO (thread creation failed).
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_work_queue_new(unsigned threads, unsigned max_pending, mlt_work_queue **out);
/**
 * Queue @p fn(@p arg) to run on a worker under @p ctx (NULL: the context
 * current on the submitting thread, captured now).
 * @param ctx borrowed; a holding reference is taken (see mlt_context_hold()).
 * @param arg passed to @p fn; never dereferenced or freed by the queue.
 * @return MLT_OK; MLT_EFULL when max_pending jobs are waiting or the queue is
 *         being freed (the job is not queued, @p fn will not run, and the
 *         rejection is counted in mlt_stats.work_queue_rejected); MLT_EINVAL
 *         (@p q or @p fn NULL); MLT_ENOMEM.
 * Thread-safety: any thread.  Never blocks (one short mutex section shared
 * with the workers of @p q; a full queue is refused before any allocation).
 */
MLT_EXTERN int mlt_work_queue_submit(mlt_work_queue *q, mlt_context *ctx, void (*fn)(void *arg), void *arg);
/**
 * mlt_work_queue_submit() that waits up to @p timeout_ms for room instead of
 * failing at once (backpressure for producers that may block: never call it
 * on an event loop thread, and beware of a worker waiting on its own queue).
 * The context is captured when this is called, before any wait.
 * @param timeout_ms 0: do not wait (as mlt_work_queue_submit()); > 0: the
 *        longest wait, in milliseconds.
 * @return MLT_OK; MLT_ETIMEDOUT (still full at the deadline) and MLT_EFULL
 *         (@p timeout_ms 0 and full, or the queue is being freed): the job is
 *         not queued, @p fn will not run, the rejection is counted as for
 *         mlt_work_queue_submit(); MLT_EINVAL (@p q or @p fn NULL, negative
 *         @p timeout_ms); MLT_ENOMEM.
 * Thread-safety: any thread.  Blocks up to @p timeout_ms.
 */
MLT_EXTERN int mlt_work_queue_submit_wait(mlt_work_queue *q, mlt_context *ctx, void (*fn)(void *arg), void *arg,
                                          int timeout_ms);
/** Jobs of @p q rejected so far (full, timed out, or freed), since it was
 *  created; 0 for NULL.  Thread-safety: any thread (a relaxed read). */
MLT_EXTERN uint64_t mlt_work_queue_rejected(const mlt_work_queue *q);
/** Jobs of @p q waiting for a worker now (a snapshot); 0 for NULL.
 *  Thread-safety: any thread. */
MLT_EXTERN unsigned mlt_work_queue_pending(const mlt_work_queue *q);
/** Run every queued job, stop the workers, join them, free the queue.
 *  Submitters blocked in mlt_work_queue_submit_wait() are woken and get
 *  MLT_EFULL; jobs run meanwhile that submit get MLT_EFULL.  No other call on
 *  @p q may be in progress (but those waits) or start.  NULL is a no-op.
 *  Must not be called from a worker of @p q.  Thread-safety: one thread. */
MLT_EXTERN void mlt_work_queue_free(mlt_work_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_THREAD_H */
