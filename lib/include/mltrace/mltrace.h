/* <mltrace/mltrace.h>: libmltrace, MLflow-compatible manual tracing for C.
 *
 * The umbrella header: include this one.  Link with `pkg-config --libs mltrace`.
 *
 *   setup.h     mlt_init / mlt_shutdown / mlt_flush, options, counters
 *   span.h      spans; MLT_TRACE_FUNCTION and MLT_SPAN_SCOPE
 *   context.h   explicit context for async code and threads, traceparent
 *   trace.h     update_current_trace, last trace id, client API by ids
 *   assessment.h  feedback, expectations and tags on finished traces
 *   exporter.h  file store, in-memory store, callbacks, span processor view
 *   thread.h    threads and worker queues that carry a context
 *   span_options.h  start/end times, links, description, log level, per-root sampling
 *   scope.h     scoped trace context (mlflow.tracing.context)
 *
 * Public names start with mlt_ / MLT_; names with a double underscore
 * (mlt__) are internal even when they appear in a header.
 */
#ifndef MLTRACE_MLTRACE_H
#define MLTRACE_MLTRACE_H

#include <mltrace/version.h>
#include <mltrace/common.h>
#include <mltrace/setup.h>
#include <mltrace/span.h>
#include <mltrace/context.h>
#include <mltrace/trace.h>
#include <mltrace/assessment.h>
#include <mltrace/exporter.h>
#include <mltrace/thread.h>
#include <mltrace/span_options.h>
#include <mltrace/scope.h>

#endif /* MLTRACE_MLTRACE_H */
