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

/** A fixed pool of worker threads fed by a bounded FIFO queue. */
typedef struct mlt_work_queue mlt_work_queue;

/**
 * Start @p threads workers (1..256) with room for @p max_pending jobs (>= 1).
 * @return MLT_OK; MLT_EINVAL; MLT_ENOMEM; MLT_EIO (thread creation failed).
 */
MLT_EXTERN int mlt_work_queue_new(unsigned threads, unsigned max_pending, mlt_work_queue **out);
/**
 * Queue @p fn(@p arg) to run on a worker under @p ctx (NULL: the context
 * current on the submitting thread, captured now).
 * @return MLT_OK; MLT_EFULL when max_pending jobs are waiting (the job is not
 *         queued; @p fn will not run); MLT_EINVAL; MLT_ENOMEM.
 * Thread-safety: any thread.  Never blocks.
 */
MLT_EXTERN int mlt_work_queue_submit(mlt_work_queue *q, mlt_context *ctx, void (*fn)(void *arg), void *arg);
/** Run every queued job, stop the workers, join them, free the queue.  NULL
 *  is a no-op.  Must not be called from a worker of @p q. */
MLT_EXTERN void mlt_work_queue_free(mlt_work_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_THREAD_H */
