/* <mltrace/span.h>: spans: start, set, end; function and block scopes.
 *
 * Include <mltrace/mltrace.h> rather than this header.
 *
 * Every function here is a hot-path call: it never blocks, never performs
 * I/O, never allocates more than the data it copies, and returns a status the
 * caller may ignore.  A span handle that is MLT_SPAN_NONE, not recording
 * (tracing disabled or sampled out), ended, or stale is accepted everywhere
 * and the call does nothing (returning MLT_ENOTRECORDING, MLT_EENDED or
 * MLT_ESTALE).
 *
 * Thread-safety: calls on one span are made by one thread at a time (hand a
 * span to another thread with proper synchronization, or better, hand over an
 * mlt_context and start a child there).  Calls on different spans, including
 * spans of the same trace, may run concurrently on any threads.
 *
 * Strings: keys, names and values are copied.  A value given with a length
 * may contain any bytes, NUL included; invalid UTF-8 is replaced with U+FFFD
 * at export.  Values longer than the configured max_value_bytes are truncated
 * with a marker (see mlt_options_set_max_value_bytes()).
 */
#ifndef MLTRACE_SPAN_H
#define MLTRACE_SPAN_H

#include <cjson/cJSON.h>
#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_context mlt_context;

/* ---- Starting and ending --------------------------------------------- */

/**
 * Start a span under this thread's current span (or, when none, under the
 * context attached to this thread; when neither, as the root of a new
 * trace).  The new span becomes this thread's current span until it ends.
 * This is the synchronous convenience; async code uses mlt_span_start_in().
 * @param name span name (copied; NULL gives "span").
 * @param type one of the MLflow span types.
 * @return the span; MLT_SPAN_NONE when not initialized or disabled; a
 *         non-recording handle when the trace is sampled out.
 * Thread-safety: any thread.
 */
MLT_EXTERN mlt_span mlt_span_start(const char *name, mlt_span_type type);

/**
 * Start a span under an explicit parent context, on any thread.  The span does
 * not become the thread's current span (see mlt_span_make_current()).
 * @param parent parent context (borrowed), or NULL to start a new trace.  If
 *        the parent's trace already finished, the span starts a continuation
 *        of the same trace id (exported on its own, as MLflow does for spans
 *        of a remote service).
 * Thread-safety: any thread.
 */
MLT_EXTERN mlt_span mlt_span_start_in(const mlt_context *parent, const char *name, mlt_span_type type);

/** Like mlt_span_start_in() with the context of span @p parent.  A stale or
 *  NONE parent starts a new trace. */
MLT_EXTERN mlt_span mlt_span_start_child(mlt_span parent, const char *name, mlt_span_type type);

/**
 * End a span: record its end time, set status OK unless it is ERROR, and
 * restore the thread's previous current span if this span was current here.
 * Ending twice is harmless (MLT_EENDED).  A parent may end before its
 * children; the trace is finished, and queued for export, once its root and
 * every span in it have ended.
 * @return MLT_OK; MLT_EENDED; MLT_ESTALE; MLT_ENOTRECORDING.
 */
MLT_EXTERN int mlt_span_end(mlt_span span);

/** Make @p span this thread's current span until it ends (spans from
 *  mlt_span_start_in() are not current by default).  Restores the previous
 *  current span when @p span ends. */
MLT_EXTERN int mlt_span_make_current(mlt_span span);

/** This thread's current span, or MLT_SPAN_NONE.  Thread-safety: any thread
 *  (each thread has its own). */
MLT_EXTERN mlt_span mlt_current_span(void);

/* ---- Inputs and outputs ---------------------------------------------- */

/** Set the span inputs from JSON text (copied, not parsed here; validated on
 *  the export thread, where text that is not JSON is exported as a JSON
 *  string and counted in mlt_stats.invalid_json).  A later call replaces an
 *  earlier one.  NULL json gives MLT_EINVAL. */
MLT_EXTERN int mlt_span_set_inputs_json(mlt_span span, const char *json);
/** Same, with an explicit length (any bytes). */
MLT_EXTERN int mlt_span_set_inputs_json_n(mlt_span span, const char *json, size_t len);
/** Set the span inputs from a cJSON value.  Takes ownership of @p value (it is
 *  serialized and freed on the export thread; also freed on failure). */
MLT_EXTERN int mlt_span_set_inputs(mlt_span span, cJSON *value);
/** Set the span outputs from JSON text (copied).  See mlt_span_set_inputs_json(). */
MLT_EXTERN int mlt_span_set_outputs_json(mlt_span span, const char *json);
/** Same, with an explicit length. */
MLT_EXTERN int mlt_span_set_outputs_json_n(mlt_span span, const char *json, size_t len);
/** Set the span outputs from a cJSON value (takes ownership). */
MLT_EXTERN int mlt_span_set_outputs(mlt_span span, cJSON *value);
/** Set the inputs to a JSON object built from @p n fields (keys and values
 *  copied): the C analog of the decorator recording a function's arguments. */
MLT_EXTERN int mlt_span_set_inputs_fields(mlt_span span, const mlt_attr *fields, size_t n);
/** Set the outputs to a JSON object built from @p n fields. */
MLT_EXTERN int mlt_span_set_outputs_fields(mlt_span span, const mlt_attr *fields, size_t n);
/** Set the outputs to a JSON string holding @p len bytes of @p text (copied). */
MLT_EXTERN int mlt_span_set_outputs_text(mlt_span span, const char *text, size_t len);

/* ---- Attributes ------------------------------------------------------ */

/* Attribute keys and values are copied; setting a key again replaces the
 * value.  A NULL key gives MLT_EINVAL.  The keys mlflow.spanInputs,
 * mlflow.spanOutputs and mlflow.spanType are reserved: use the functions
 * above.  Returns: MLT_OK; MLT_EINVAL; MLT_ENOMEM; MLT_EENDED / MLT_ESTALE /
 * MLT_ENOTRECORDING as for every span call. */

/** String attribute; @p value NUL-terminated (NULL gives MLT_EINVAL). */
MLT_EXTERN int mlt_span_set_attr_str(mlt_span span, const char *key, const char *value);
/** String attribute of @p len bytes (any bytes, NUL included; MLT_NTS for
 *  NUL-terminated). */
MLT_EXTERN int mlt_span_set_attr_str_n(mlt_span span, const char *key, const char *value, size_t len);
/** 64-bit integer attribute. */
MLT_EXTERN int mlt_span_set_attr_int(mlt_span span, const char *key, int64_t value);
/** Double attribute (NaN and infinities are written as Python's json does). */
MLT_EXTERN int mlt_span_set_attr_double(mlt_span span, const char *key, double value);
/** Boolean attribute (any non-zero @p value is true). */
MLT_EXTERN int mlt_span_set_attr_bool(mlt_span span, const char *key, int value);
/** JSON-valued attribute from JSON text (copied; e.g. mlflow.chat.tokenUsage). */
MLT_EXTERN int mlt_span_set_attr_json(mlt_span span, const char *key, const char *json);
/** Set @p n attributes at once. */
MLT_EXTERN int mlt_span_set_attrs(mlt_span span, const mlt_attr *attrs, size_t n);

/** Change the span type. */
MLT_EXTERN int mlt_span_set_type(mlt_span span, mlt_span_type type);
/** Set a custom span type string (copied), e.g. "RETRIEVAL_STEP". */
MLT_EXTERN int mlt_span_set_type_name(mlt_span span, const char *type);
/** Rename the span (copied). */
MLT_EXTERN int mlt_span_set_name(mlt_span span, const char *name);

/* ---- Events, status, errors ------------------------------------------ */

/** Add an event named @p name (copied) with @p n attributes (copied), at the
 *  current time.  Over max_events_per_span, the event is counted, not kept. */
MLT_EXTERN int mlt_span_add_event(mlt_span span, const char *name, const mlt_attr *attrs, size_t n);

/** Set the status.  ERROR sticks: a later OK does not clear it.  @p message
 *  (copied, may be NULL) is the status description. */
MLT_EXTERN int mlt_span_set_status(mlt_span span, mlt_span_status status, const char *message);

/**
 * Record an error as MLflow records an exception: status ERROR with the
 * description "<type>: <message>", and an event named "exception" with
 * attributes exception.type and exception.message.
 * @param type error type (copied; NULL gives "Error").
 * @param message error message (copied; NULL gives "").
 */
MLT_EXTERN int mlt_span_record_error(mlt_span span, const char *type, const char *message);

/* ---- Streaming ------------------------------------------------------- */

/**
 * Output reducer: computes a streaming span's outputs from its chunks, the
 * analog of MLflow's output_reducer.  Called once, when the span ends, on the
 * thread that ends it -- not when the span has no chunks, when its outputs
 * were set explicitly, or when a trace timeout or forced finish ends it (it
 * then gets the default output).  @p chunks[i] is JSON text of @p lens[i] bytes (text
 * chunks arrive as JSON strings).  Return malloc()ed JSON text (the library
 * frees it) and its length in *out_len, or NULL to keep the default output.
 */
typedef char *(*mlt_output_reducer_fn)(const char *const *chunks, const size_t *lens, size_t n,
                                       size_t *out_len, void *user_data);

/**
 * Add a streamed chunk given as JSON text (copied).  Each chunk becomes an
 * event "mlflow.chunk.item.<i>" with attribute "mlflow.chunk.value" (the
 * chunk's JSON), as MLflow records generator output, up to
 * max_events_per_span events (the rest are counted).  At end, unless outputs
 * were set explicitly, the span's outputs are the reducer's result, by default
 * the list of all chunks.  The first chunk records the time to first chunk
 * (attribute gen_ai.response.time_to_first_chunk, seconds).
 */
MLT_EXTERN int mlt_span_add_chunk_json(mlt_span span, const char *json, size_t len);
/** Add a streamed text chunk (copied).  When every chunk of a span is text,
 *  the default output is the concatenated text. */
MLT_EXTERN int mlt_span_add_chunk_text(mlt_span span, const char *text, size_t len);
/** Set the reducer used when the span ends (NULL restores the default); the
 *  last one set counts.  Each call adds a small record (24 bytes) to the
 *  span's log: set it once, not per chunk.  @p user_data is passed to it as is (not owned).
 *  @return MLT_OK; MLT_ENOMEM (not recorded: the reducer set before, if any,
 *  stays); MLT_EENDED / MLT_ESTALE / MLT_ENOTRECORDING as above. */
MLT_EXTERN int mlt_span_set_output_reducer(mlt_span span, mlt_output_reducer_fn fn, void *user_data);

/* ---- Ids ------------------------------------------------------------- */

/** Write the span's trace id "tr-<32 hex>" into @p buf (at least
 *  MLT_TRACE_ID_SIZE bytes).  The trace becomes reachable by id through the
 *  client API.  @return MLT_OK, MLT_ERANGE, MLT_ESTALE, MLT_ENOTRECORDING. */
MLT_EXTERN int mlt_span_get_trace_id(mlt_span span, char *buf, size_t size);
/** Write the span id (16 hex digits) into @p buf (at least MLT_SPAN_ID_SIZE
 *  bytes); the span becomes reachable by id through the client API. */
MLT_EXTERN int mlt_span_get_span_id(mlt_span span, char *buf, size_t size);
/** The span's status so far (MLT_STATUS_UNSET, _OK or _ERROR) while it is
 *  in memory (open, or ended and not yet exported; an ended span's UNSET
 *  reads as _OK); a negative status (MLT_ESTALE, MLT_ENOTRECORDING)
 *  otherwise -- MLT_ESTALE also for an ended child span whose handle went
 *  stale early (see mlt_span in <mltrace/common.h>).  Thread-safety: one
 *  thread at a time, with the span's other calls. */
MLT_EXTERN int mlt_span_get_status(mlt_span span);
/** 1 if the span is recording (live, sampled, not ended). */
MLT_EXTERN int mlt_span_is_recording(mlt_span span);

/* ---- Inline fast paths ----------------------------------------------- */

/** @internal Non-zero while tracing is initialized and enabled.  Read by the
 *  inline fast paths below so that a disabled or NONE call costs a load and
 *  a branch, not a function call.  Never write it. */
MLT_EXTERN extern int mlt__enabled_flag;

/** @internal mlt_span_start() with the byte length of @p name (MLT_NTS: NUL-
 *  terminated); the inline fast path passes it when the compiler knows it.
 *  Same contract as mlt_span_start(). */
MLT_EXTERN mlt_span mlt__span_start_n(const char *name, size_t name_len, mlt_span_type type);
/** @internal mlt_span_start_in() with the byte length of @p name (or MLT_NTS).
 *  Same contract as mlt_span_start_in(). */
MLT_EXTERN mlt_span mlt__span_start_in_n(const mlt_context *parent, const char *name, size_t name_len,
                                         mlt_span_type type);
/** @internal Function scope (MLT_TRACE_FUNCTION): start a span current on this
 *  thread, named @p name (@p name_len bytes or MLT_NTS) or, when @p name is
 *  NULL, @p func (@p func_len bytes or MLT_NTS), recording
 *  mlflow.spanFunctionName = @p func.  Strings copied.  Same contract as
 *  mlt_span_start(). */
MLT_EXTERN mlt_span mlt__span_start_fn(const char *func, size_t func_len, const char *name, size_t name_len,
                                       mlt_span_type type);
/** @internal mlt_span_set_attr_str() with the byte lengths of @p key and
 *  @p value (each may be MLT_NTS).  Same contract and return codes. */
MLT_EXTERN int mlt__attr_str(mlt_span span, const char *key, size_t key_len, const char *value, size_t len);
/** @internal mlt_span_set_attr_int() with the byte length of @p key (or
 *  MLT_NTS).  Same contract and return codes. */
MLT_EXTERN int mlt__attr_i64(mlt_span span, const char *key, size_t key_len, int64_t value);
/** @internal mlt_span_set_attr_double() with the byte length of @p key (or
 *  MLT_NTS).  Same contract and return codes. */
MLT_EXTERN int mlt__attr_f64(mlt_span span, const char *key, size_t key_len, double value);
/** @internal mlt_span_set_attr_bool() with the byte length of @p key (or
 *  MLT_NTS).  Same contract and return codes. */
MLT_EXTERN int mlt__attr_bool(mlt_span span, const char *key, size_t key_len, int value);

/** @internal mlt_span_set_attr_str() for a key of 1 to 8 bytes packed into
 *  @p key8 (its @p key_len bytes in memory order, the other bytes zero; the
 *  inline fast paths pack a string literal at compile time).  @p value: @p len
 *  bytes or MLT_NTS.  A @p key_len outside 1..8 is reported as a NULL key.
 *  Same contract and return codes as mlt_span_set_attr_str(). */
MLT_EXTERN int mlt__attr_str_k(mlt_span span, uint64_t key8, size_t key_len, const char *value, size_t len);
/** @internal mlt_span_set_attr_int() with a packed key (see mlt__attr_str_k()).
 *  Same contract and return codes. */
MLT_EXTERN int mlt__attr_i64_k(mlt_span span, uint64_t key8, size_t key_len, int64_t value);
/** @internal mlt_span_set_attr_double() with a packed key (see
 *  mlt__attr_str_k()).  Same contract and return codes. */
MLT_EXTERN int mlt__attr_f64_k(mlt_span span, uint64_t key8, size_t key_len, double value);
/** @internal mlt_span_set_attr_bool() with a packed key (see
 *  mlt__attr_str_k()).  Same contract and return codes. */
MLT_EXTERN int mlt__attr_bool_k(mlt_span span, uint64_t key8, size_t key_len, int value);
#if defined(__GNUC__) && !defined(MLT__BUILDING_LIB) && !defined(MLT_NO_INLINE_FAST_PATHS)
#define MLT__FAST_PATHS 1
/* Function-like macros with the functions' own names: `mlt_span_end(s)`
 * checks for a NONE handle inline; `(mlt_span_end)(s)` and function pointers
 * reach the exported functions.  Names and keys given as string literals
 * have their length computed by the compiler (MLT__SLEN), so the library
 * does not call strlen for them; anything else (and a NULL pointer, which
 * the library then reports) passes MLT_NTS.  The NULL test is folded by the
 * compiler and keeps UBSan's nonnull check away from strlen. */
#define MLT__SLEN(str)                                                                                   \
  (__extension__({                                                                                     \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wnonnull\"")                  \
        _Pragma("GCC diagnostic ignored \"-Waddress\"") size_t mlt__slen_ =                            \
            __builtin_constant_p(__builtin_strlen((str) ? (str) : ""))                                  \
                ? ((str) ? __builtin_strlen((str) ? (str) : "") : MLT_NTS)                              \
                : MLT_NTS;                                                                              \
    _Pragma("GCC diagnostic pop") mlt__slen_;                                                          \
  }))
static inline mlt_span mlt__fast_start(const char *name, size_t len, mlt_span_type type) {
  if (!__atomic_load_n(&mlt__enabled_flag, __ATOMIC_RELAXED)) {
    mlt_span none = {0};
    return none;
  }
  return mlt__span_start_n(name, len, type);
}
static inline mlt_span mlt__fast_start_in(const mlt_context *parent, const char *name, size_t len,
                                          mlt_span_type type) {
  if (!__atomic_load_n(&mlt__enabled_flag, __ATOMIC_RELAXED)) {
    mlt_span none = {0};
    return none;
  }
  return mlt__span_start_in_n(parent, name, len, type);
}
static inline mlt_span mlt__fast_start_fn(const char *func, size_t func_len, const char *name, size_t len,
                                          mlt_span_type type) {
  if (!__atomic_load_n(&mlt__enabled_flag, __ATOMIC_RELAXED)) {
    mlt_span none = {0};
    return none;
  }
  return mlt__span_start_fn(func, func_len, name, len, type);
}
static inline int mlt__fast_end(mlt_span s) { return s.id_ ? (mlt_span_end)(s) : MLT_ENOTRECORDING; }
/* A key of |n| (1..8) bytes packed into a 64-bit word, its bytes in memory
 * order, the rest zero: folded to a constant for a string literal (bytes
 * past |n| are never read). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define MLT__K8B(k, n, i) ((n) > (i) ? (uint64_t)(unsigned char)(k)[i] << (56 - 8 * (i)) : 0)
#else
#define MLT__K8B(k, n, i) ((n) > (i) ? (uint64_t)(unsigned char)(k)[i] << (8 * (i)) : 0)
#endif
static inline uint64_t mlt__k8(const char *k, size_t n) {
  return MLT__K8B(k, n, 0) | MLT__K8B(k, n, 1) | MLT__K8B(k, n, 2) | MLT__K8B(k, n, 3) | MLT__K8B(k, n, 4) |
         MLT__K8B(k, n, 5) | MLT__K8B(k, n, 6) | MLT__K8B(k, n, 7);
}
/* A key the compiler knows, 1..8 bytes (a string literal), goes packed. */
#define MLT__K8_OK(k, kl) \
  (__builtin_constant_p(kl) && (kl) - 1 < 8 && __builtin_constant_p((k)[0]) && __builtin_constant_p((k)[(kl) - 1]))
static inline int mlt__fast_attr_str(mlt_span s, const char *k, size_t kl, const char *v, size_t vl) {
  if (!s.id_) return MLT_ENOTRECORDING;
  if (MLT__K8_OK(k, kl)) return mlt__attr_str_k(s, mlt__k8(k, kl), kl, v, vl);
  return mlt__attr_str(s, k, kl, v, vl);
}
static inline int mlt__fast_attr_int(mlt_span s, const char *k, size_t kl, int64_t v) {
  if (!s.id_) return MLT_ENOTRECORDING;
  if (MLT__K8_OK(k, kl)) return mlt__attr_i64_k(s, mlt__k8(k, kl), kl, v);
  return mlt__attr_i64(s, k, kl, v);
}
static inline int mlt__fast_attr_double(mlt_span s, const char *k, size_t kl, double v) {
  if (!s.id_) return MLT_ENOTRECORDING;
  if (MLT__K8_OK(k, kl)) return mlt__attr_f64_k(s, mlt__k8(k, kl), kl, v);
  return mlt__attr_f64(s, k, kl, v);
}
static inline int mlt__fast_attr_bool(mlt_span s, const char *k, size_t kl, int v) {
  if (!s.id_) return MLT_ENOTRECORDING;
  if (MLT__K8_OK(k, kl)) return mlt__attr_bool_k(s, mlt__k8(k, kl), kl, v);
  return mlt__attr_bool(s, k, kl, v);
}
static inline int mlt__fast_inputs_json(mlt_span s, const char *j) {
  return s.id_ ? (mlt_span_set_inputs_json)(s, j) : MLT_ENOTRECORDING;
}
static inline int mlt__fast_outputs_json(mlt_span s, const char *j) {
  return s.id_ ? (mlt_span_set_outputs_json)(s, j) : MLT_ENOTRECORDING;
}
#define mlt_span_start(name, type) mlt__fast_start((name), MLT__SLEN(name), (type))
#define mlt_span_start_in(parent, name, type) mlt__fast_start_in((parent), (name), MLT__SLEN(name), (type))
#define mlt_span_end(s) mlt__fast_end(s)
#define mlt_span_set_attr_str(s, k, v) mlt__fast_attr_str((s), (k), MLT__SLEN(k), (v), MLT__SLEN(v))
#define mlt_span_set_attr_int(s, k, v) mlt__fast_attr_int((s), (k), MLT__SLEN(k), (v))
#define mlt_span_set_attr_double(s, k, v) mlt__fast_attr_double((s), (k), MLT__SLEN(k), (v))
#define mlt_span_set_attr_bool(s, k, v) mlt__fast_attr_bool((s), (k), MLT__SLEN(k), (v))
#define mlt_span_set_inputs_json(s, j) mlt__fast_inputs_json((s), (j))
#define mlt_span_set_outputs_json(s, j) mlt__fast_outputs_json((s), (j))
#endif

/* ---- Scopes: the decorator and the context manager ------------------- */

/** @internal Used by MLT_TRACE_FUNCTION in earlier releases: start a span
 *  named @p name (or @p func when NULL) recording mlflow.spanFunctionName =
 *  @p func.  Kept for binary compatibility; see mlt__span_start_fn(). */
MLT_EXTERN mlt_span mlt__span_start_function(const char *func, const char *name, mlt_span_type type);
/** @internal Cleanup handler of the scope macros. */
static inline void mlt__scope_end(mlt_span *s) { (void)mlt_span_end(*s); }

/**
 * Trace the enclosing function, like the \@mlflow.trace decorator of MLflow: starts
 * a span named after the function (type @p type, attribute
 * mlflow.spanFunctionName), current on this thread, and ends it on every exit
 * from the function, early return included (GCC/Clang cleanup attribute).
 * Place it at the top of the function body.  The span is reachable as
 * `mlt_fn_span`.
 */
#ifdef MLT__FAST_PATHS
#define MLT_TRACE_FUNCTION(type)                                                              \
  mlt_span mlt_fn_span __attribute__((cleanup(mlt__scope_end), unused)) =                     \
      mlt__fast_start_fn(__func__, sizeof(__func__) - 1, NULL, 0, (type))
#else
#define MLT_TRACE_FUNCTION(type)                                                              \
  mlt_span mlt_fn_span __attribute__((cleanup(mlt__scope_end), unused)) =                     \
      mlt__span_start_fn(__func__, sizeof(__func__) - 1, NULL, 0, (type))
#endif

/** MLT_TRACE_FUNCTION with an explicit span name. */
#ifdef MLT__FAST_PATHS
#define MLT_TRACE_FUNCTION_NAMED(name, type)                                                  \
  mlt_span mlt_fn_span __attribute__((cleanup(mlt__scope_end), unused)) =                     \
      mlt__fast_start_fn(__func__, sizeof(__func__) - 1, (name), MLT__SLEN(name), (type))
#else
#define MLT_TRACE_FUNCTION_NAMED(name, type)                                                  \
  mlt_span mlt_fn_span __attribute__((cleanup(mlt__scope_end), unused)) =                     \
      mlt__span_start_fn(__func__, sizeof(__func__) - 1, (name), MLT_NTS, (type))
#endif

/**
 * Block scope, like `with mlflow.start_span(name, span_type) as var:` — declares
 * span handle @p var, current on this thread, ended when the enclosing block
 * is left by any path (end of block, return, break, goto).  Nested scopes on
 * the same thread become children automatically.
 *
 *     {
 *         MLT_SPAN_SCOPE(sp, "retrieve", MLT_SPAN_RETRIEVER);
 *         mlt_span_set_inputs_json(sp, "{\"query\": \"...\"}");
 *         ...
 *         mlt_span_set_outputs_json(sp, docs_json);
 *     }
 */
#define MLT_SPAN_SCOPE(var, name, type)                                                       \
  mlt_span var __attribute__((cleanup(mlt__scope_end))) = mlt_span_start((name), (type))

/** Block scope under an explicit parent context (not current on the thread
 *  unless made so with mlt_span_make_current()). */
#define MLT_SPAN_SCOPE_IN(var, parent_ctx, name, type)                                        \
  mlt_span var __attribute__((cleanup(mlt__scope_end))) = mlt_span_start_in((parent_ctx), (name), (type))

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_SPAN_H */
