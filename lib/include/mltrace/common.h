/* <mltrace/common.h>: types shared by every part of libmltrace.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * Conventions used throughout the API documentation:
 *  - "copied": the library copies the data before returning; the caller keeps
 *    ownership and may free or reuse it immediately.
 *  - "borrowed": the library only reads it during the call.
 *  - "takes ownership": the library frees it (the caller must not touch it
 *    after the call, whatever the call returns).
 *  - Thread-safety phrases: "any thread" (safe to call concurrently from any
 *    thread), "one thread at a time" (calls on the same object must not
 *    overlap; different objects are independent), "loop thread only".
 *  - Status codes: 0 (MLT_OK) on success, a negative mlt_status on failure.
 *    Hot-path calls (span start/set/end) return a status the caller may
 *    ignore: they never block, never abort, and report misuse through the
 *    return value and the log hook.
 */
#ifndef MLTRACE_COMMON_H
#define MLTRACE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define MLT_EXTERN __attribute__((visibility("default")))
#else
#define MLT_EXTERN
#endif

/* X-macro of every status code: name, value, message.  Values are never
 * renumbered; new codes are added at the end. */
#define MLT_STATUS_MAP(X)                                                      \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ENOTINIT, -3, "libmltrace is not initialized (or was shut down)")          \
  X(ESTALE, -4, "stale span handle: its trace was already exported")           \
  X(EENDED, -5, "span or trace already ended")                                 \
  X(ENOTFOUND, -6, "unknown trace id or span id")                              \
  X(ETIMEDOUT, -7, "deadline passed before the operation completed")           \
  X(EIO, -8, "I/O error")                                                      \
  X(EALREADY, -9, "already initialized")                                       \
  X(EMISMATCH, -10, "detach does not match the innermost attach")              \
  X(EFULL, -11, "queue full: item dropped and counted")                        \
  X(ENOTSUP, -12, "not supported")                                             \
  X(ENOTRECORDING, -13, "span is not recording (tracing disabled or sampled out)") \
  X(EPARSE, -14, "malformed input")                                            \
  X(ERANGE, -15, "output buffer too small")                                    \
  X(EHTTP, -16, "the server answered with an error")                          \
  X(ECANCELED, -17, "operation cancelled")                                     \
  X(EPENDING, -18, "not delivered yet: kept in the durable spool for a later attempt")

/** Status codes returned by libmltrace functions. */
typedef enum mlt_status {
#define MLT__STATUS_ENUM(name, value, msg) MLT_##name = value,
  MLT_STATUS_MAP(MLT__STATUS_ENUM)
#undef MLT__STATUS_ENUM
  MLT__STATUS_LAST = -19
} mlt_status;

/** Human-readable message for a status code (e.g. "invalid argument").
 *  Never returns NULL: unknown codes give "unknown status".
 *  Thread-safety: any thread.  The string is static. */
MLT_EXTERN const char *mlt_strerror(int status);

/** Name of a status code (e.g. "MLT_EINVAL"), or "MLT_UNKNOWN".
 *  Thread-safety: any thread.  The string is static. */
MLT_EXTERN const char *mlt_status_name(int status);

/** Runtime version string of the linked library (e.g. "0.1.0"); compare with
 *  MLT_VERSION_STRING from <mltrace/version.h>.  Thread-safety: any thread. */
MLT_EXTERN const char *mlt_version(void);

/** Runtime version as 0xMMmmpp (see MLT_VERSION_HEX). */
MLT_EXTERN unsigned mlt_version_hex(void);

/**
 * A span handle.
 *
 * A small value (copy it freely) naming one span.  The zero value
 * (MLT_SPAN_NONE) names no span.  A handle is *generational*: once the span's
 * trace has been exported, the handle goes stale and every call given it
 * returns MLT_ESTALE (or MLT_EENDED while the span is ended but its trace is
 * still in memory) and does nothing.  Using a handle after it went stale is
 * therefore safe: it can never reach another span.  A child span that ends
 * while its trace goes on gives its 256-byte slot back at once (its data is
 * kept, compactly, for the export); its handle still answers as an ended
 * span's -- MLT_EENDED, its ids and status, children started under it --
 * until its slot is taken by a span of another trace: the slot waits until
 * 16 more child spans have ended that way on the same thread, so a busy
 * thread's handle can go stale (MLT_ESTALE) before its trace is exported.
 * Read what you need of a span before ending it, and parent later work with
 * an mlt_context captured from it (contexts never go stale this way).
 *
 * The field is private: compare handles only with mlt_span_is_none().
 */
typedef struct mlt_span {
  uint64_t id_;
} mlt_span;

/** The "no span" handle.  Every function accepts it and does nothing. */
#ifdef __cplusplus
#define MLT_SPAN_NONE (mlt_span{0})
#else
#define MLT_SPAN_NONE ((mlt_span){0})
#endif

/** 1 if @p s is the "no span" handle. */
static inline int mlt_span_is_none(mlt_span s) { return s.id_ == 0; }

/**
 * Span types: every type MLflow defines (mlflow.entities.SpanType).  Custom
 * type strings are set with mlt_span_set_type_name().
 */
typedef enum mlt_span_type {
  MLT_SPAN_UNKNOWN = 0,
  MLT_SPAN_LLM,
  MLT_SPAN_CHAIN,
  MLT_SPAN_AGENT,
  MLT_SPAN_TOOL,
  MLT_SPAN_CHAT_MODEL,
  MLT_SPAN_RETRIEVER,
  MLT_SPAN_PARSER,
  MLT_SPAN_EMBEDDING,
  MLT_SPAN_RERANKER,
  MLT_SPAN_MEMORY,
  MLT_SPAN_WORKFLOW,
  MLT_SPAN_TASK,
  MLT_SPAN_GUARDRAIL,
  MLT_SPAN_EVALUATOR,
  MLT__SPAN_TYPE_COUNT
} mlt_span_type;

/** MLflow's name for a span type ("LLM", "CHAT_MODEL", ...); "UNKNOWN" for
 *  out-of-range values.  The string is static.  Thread-safety: any thread. */
MLT_EXTERN const char *mlt_span_type_name(mlt_span_type type);

/** Span status, as in OpenTelemetry and MLflow.  UNSET becomes OK when the
 *  span ends. */
typedef enum mlt_span_status {
  MLT_STATUS_UNSET = 0,
  MLT_STATUS_OK = 1,
  MLT_STATUS_ERROR = 2
} mlt_span_status;

/** Value types of attributes passed in arrays (events). */
typedef enum mlt_attr_type {
  MLT_ATTR_STRING = 0, /* v.s, len bytes (or NUL-terminated if MLT_NTS) */
  MLT_ATTR_INT = 1,    /* v.i */
  MLT_ATTR_DOUBLE = 2, /* v.d */
  MLT_ATTR_BOOL = 3,   /* v.b (0 or 1) */
  MLT_ATTR_JSON = 4    /* v.s holds JSON text, len bytes (or MLT_NTS) */
} mlt_attr_type;

/** Length value meaning "NUL-terminated string". */
#define MLT_NTS ((size_t)-1)

/** One attribute, for calls that take an array of them.  Only read during
 *  the call (borrowed); the library copies what it keeps. */
typedef struct mlt_attr {
  const char *key;
  mlt_attr_type type;
  union {
    const char *s;
    int64_t i;
    double d;
    int b;
  } v;
  size_t len; /* byte length of v.s for STRING/JSON, or MLT_NTS */
} mlt_attr;

#ifndef __cplusplus
#define MLT_ATTR_STR(k, val) ((mlt_attr){.key = (k), .type = MLT_ATTR_STRING, .v.s = (val), .len = MLT_NTS})
#define MLT_ATTR_INT(k, val) ((mlt_attr){.key = (k), .type = MLT_ATTR_INT, .v.i = (val), .len = 0})
#define MLT_ATTR_DOUBLE(k, val) ((mlt_attr){.key = (k), .type = MLT_ATTR_DOUBLE, .v.d = (val), .len = 0})
#define MLT_ATTR_BOOL(k, val) ((mlt_attr){.key = (k), .type = MLT_ATTR_BOOL, .v.b = (val), .len = 0})
#define MLT_ATTR_JSON(k, val) ((mlt_attr){.key = (k), .type = MLT_ATTR_JSON, .v.s = (val), .len = MLT_NTS})
#endif

/** Size of a buffer that holds an MLflow trace id "tr-<32 hex>" and its NUL. */
#define MLT_TRACE_ID_SIZE 36
/** Size of a buffer that holds a span id (16 hex digits) and its NUL. */
#define MLT_SPAN_ID_SIZE 17
/** Size of a buffer that holds a W3C traceparent header value and its NUL. */
#define MLT_TRACEPARENT_SIZE 56

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_COMMON_H */
