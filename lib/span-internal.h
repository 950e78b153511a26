/* lib/span-internal.h: spans, traces, contexts, per-thread state.
 *
 * Memory model in one paragraph.  A span lives in a *slot* of a global slot
 * table that only grows (slots are recycled, never unmapped while the library
 * runs).  A handle is (generation << 32 | index + 1); the slot's atomic word
 * |gs| packs the generation and the span state, so a stale handle is detected
 * by one load, and ending a span is one CAS that also proves the slot was not
 * recycled.  Span data (name, attributes, inputs, events, ...) is an
 * append-only *record log* written only by the thread that owns the span;
 * each log chunk publishes its length with a release store, so the export
 * thread can read a consistent prefix of an open span (trace timeout) without
 * locks.  Traces are reference-counted headers from a type-stable pool; a
 * trace finishes when its counter of open spans and holds drops to zero, and
 * the thread that drops it enqueues the trace on the bounded export queue.
 */
#ifndef MLT_SPAN_INTERNAL_H
#define MLT_SPAN_INTERNAL_H

#include "common-internal.h"

#include <pthread.h>

/* ---- span record log ------------------------------------------------- */

/* Record kinds. */
enum {
  MLT__R_NAME = 1,      /* val = name */
  MLT__R_TYPE,          /* flags = mlt_span_type */
  MLT__R_TYPE_NAME,     /* val = custom type string */
  MLT__R_ATTR,          /* key = attribute key; sub = value type */
  MLT__R_INPUTS,        /* sub = value type (JSON, CJSON, TEXT, FIELDS, NONE) */
  MLT__R_OUTPUTS,       /* same */
  MLT__R_EVENT,         /* key = event name; val = i64 time, u32 n children */
  MLT__R_CHUNK,         /* sub = TEXT or JSON; val = i64 time + bytes */
  MLT__R_STATUS,        /* flags = status; val = message */
  MLT__R_REMOVE_ATTR,   /* key (span processor) */
  MLT__R_DROP_EVENTS,   /* (span processor) */
  MLT__R_FIELD          /* child of EVENT / FIELDS: key, sub = value type */
};

/* Value types (rec.sub). */
enum {
  MLT__V_NONE = 0,
  MLT__V_STR,   /* bytes */
  MLT__V_I64,   /* 8 bytes */
  MLT__V_F64,   /* 8 bytes */
  MLT__V_BOOL,  /* 8 bytes */
  MLT__V_JSON,  /* JSON text bytes */
  MLT__V_CJSON, /* 8 bytes: cJSON * (owned; freed with the span) */
  MLT__V_FIELDS /* val = u32 count; |count| MLT__R_FIELD records follow */
};

/* rec.flags bits. */
#define MLT__RF_TRUNC 0x01   /* value truncated: val starts with u64 original length */
#define MLT__RF_CHECKED 0x02 /* JSON text validated (export thread) */
#define MLT__RF_INVALID 0x04 /* ... and found invalid */
#define MLT__RF_BADUTF8 0x08 /* ... valid JSON with invalid UTF-8 in strings */

typedef struct mlt__rec {
  uint8_t kind;
  uint8_t sub;
  uint8_t flags;
  uint8_t aux; /* kind-specific small value (type enum, status) */
  uint16_t key_len;
  uint16_t pad_;
  uint32_t val_len;
  uint32_t pad2_;
  /* key bytes, then value bytes, then padding to 8 */
} mlt__rec;

#define MLT__REC_ALIGN 8
static inline size_t mlt__rec_size(size_t key_len, size_t val_len) {
  return (sizeof(mlt__rec) + key_len + val_len + (MLT__REC_ALIGN - 1)) & ~(size_t)(MLT__REC_ALIGN - 1);
}
static inline const char *mlt__rec_key(const mlt__rec *r) { return (const char *)(r + 1); }
static inline const char *mlt__rec_val(const mlt__rec *r) { return (const char *)(r + 1) + r->key_len; }
static inline const mlt__rec *mlt__rec_next(const mlt__rec *r) {
  return (const mlt__rec *)((const char *)r + mlt__rec_size(r->key_len, r->val_len));
}

typedef struct mlt__chunk {
  struct mlt__chunk *_Atomic next;
  uint32_t cap;
  _Atomic uint32_t used; /* published with release by the owner */
  /* aligned data follows */
} mlt__chunk;
static inline char *mlt__chunk_data(mlt__chunk *c) { return (char *)(c + 1); }

/* ---- span slot ------------------------------------------------------- */

/* FREE: in the pool.  OPEN: recording.  ENDED: ended by its owner.
 * EXPIRED: ended by a forced finish (timeout, shutdown, end_trace) while its
 * owner still held it, or ended by its owner after a forced finish missed it:
 * the owner frees the slot.  CLAIMED: ended, and taken by a forced finish for
 * export: the exporter frees the slot. */
enum { MLT__S_FREE = 0, MLT__S_OPEN = 1, MLT__S_ENDED = 2, MLT__S_EXPIRED = 3, MLT__S_CLAIMED = 4 };

#define MLT__GS(gen, state) (((uint64_t)(gen) << 32) | (uint64_t)(state))
#define MLT__GS_GEN(gs) ((uint32_t)((gs) >> 32))
#define MLT__GS_STATE(gs) ((uint32_t)((gs)&0xff))

/* Handles with special meaning. */
#define MLT__H_NONREC_CUR UINT64_C(0xFFFFFFFFFFFFFFFF)  /* non-recording, current on thread */
#define MLT__H_NONREC_DET UINT64_C(0xFFFFFFFEFFFFFFFF)  /* non-recording, not current */
static inline int mlt__h_is_nonrec(mlt_span h) {
  return h.id_ == MLT__H_NONREC_CUR || h.id_ == MLT__H_NONREC_DET;
}

/* Span slot flags. */
#define MLT__SF_CURRENT 0x01    /* made current on its owner thread */
#define MLT__SF_REGISTERED 0x02 /* reachable by id (client registry) */
#define MLT__SF_CLONE 0x04      /* a snapshot made for a forced finish */
#define MLT__SF_HAS_CHUNKS 0x08
#define MLT__SF_OUTPUTS 0x10    /* outputs set explicitly */
#define MLT__SF_TEXT_ONLY 0x20  /* every chunk so far was text */
#define MLT__SF_CJSON 0x40      /* log holds cJSON values to free */

#define MLT__INLINE_LOG 112

typedef struct mlt__trace mlt__trace;

typedef struct mlt__span {
  _Atomic uint64_t gs;
  uint32_t index;
  uint8_t type; /* start type (later changes are records) */
  uint8_t status;
  uint8_t flags;
  uint8_t pad_;
  uint64_t span_id;
  uint64_t parent_id;
  int64_t start_ns;
  int64_t end_ns;
  mlt__trace *_Atomic trace;
  struct mlt__span *next; /* trace span list (immutable once published) */
  mlt_span saved_current; /* restore on end (owner thread) */
  struct mlt_context *ctx; /* cached captured context (holds a ref) */
  uint32_t n_events;       /* events + chunks recorded */
  uint32_t n_events_dropped;
  uint32_t n_chunks;
  uint32_t pad2_;
  mlt_output_reducer_fn reducer;
  void *reducer_ud;
  mlt__chunk *tail; /* owner: chunk being appended to */
  mlt__chunk head;  /* inline first chunk */
  char inline_log[MLT__INLINE_LOG];
} mlt__span;

/* ---- traces ---------------------------------------------------------- */

enum { MLT__T_ACTIVE = 0, MLT__T_FINISHED = 1 };

#define MLT__TF_CONTINUATION 0x01 /* spans of a trace that already finished */
#define MLT__TF_REMOTE 0x02       /* local root has a remote parent (traceparent) */
#define MLT__TF_FORCED 0x04       /* ended by timeout / shutdown / end_trace */
#define MLT__TF_TIMED_OUT 0x08

/* The counter bias applied by a forced finish: |open| goes negative, so no
 * span can join and no late end can finish the trace a second time. */
#define MLT__OPEN_BIAS (1 << 30)

/* Trace-level update entry (tags, metadata, previews, ...). */
enum {
  MLT__TI_TAG = 1,
  MLT__TI_META,
  MLT__TI_REQ_PREVIEW,
  MLT__TI_RESP_PREVIEW,
  MLT__TI_CLIENT_REQ_ID,
  MLT__TI_SESSION,
  MLT__TI_USER,
  MLT__TI_STATE,     /* value "OK" / "ERROR" (update_current_trace state) */
  MLT__TI_ASSESSMENT /* value: one Assessment JSON object (lib/assess.c) */
};
typedef struct mlt__tinfo {
  struct mlt__tinfo *next;
  uint8_t kind;
  char *key;
  char *value;
} mlt__tinfo;

struct mlt__trace {
  _Atomic int32_t refs;
  _Atomic int32_t open;
  _Atomic uint8_t state;
  uint8_t flags;
  _Atomic uint8_t registered;
  uint8_t forced_reason; /* 1 timeout, 2 shutdown, 3 end_trace */
  _Atomic uint32_t n_spans;
  uint64_t id_hi, id_lo;
  uint64_t remote_parent;
  int64_t start_ns;
  mlt_span root;
  uint64_t root_id; /* span id of the (local) root */
  mlt__span *_Atomic spans; /* push-stack of every span of the trace */
  /* trace-level data, under |lock| */
  atomic_flag lock;
  mlt__tinfo *info;
  uint32_t n_info; /* entries in |info| (capped at MLT__TINFO_MAX) */
  /* filled for export */
  mlt__span **export_spans;
  uint32_t n_export;
  /* linkage */
  mlt__trace *next_active; /* active shard list (owned by the list) */
  mlt__trace *next_free;   /* pool free list */
};

/* ---- contexts -------------------------------------------------------- */

#define MLT__CF_SAMPLED 0x01
#define MLT__CF_REMOTE 0x02
#define MLT__CF_HOLD 0x04

struct mlt_context {
  _Atomic int32_t refs;
  uint8_t flags;
  uint32_t epoch; /* library epoch: after mlt_shutdown() the trace link is dead */
  uint64_t trace_hi, trace_lo;
  uint64_t span_id;
  mlt__trace *trace; /* ref held; NULL for remote / non-sampled */
};

/* ---- per-thread state ------------------------------------------------ */

#define MLT__TINFO_MAX 4096 /* trace-level entries (tags, metadata, ...) per trace */
#define MLT__MAX_ATTACH 64
#define MLT__MAG_SIZE 128
#define MLT__CHUNK_CLASSES 8 /* log chunk size classes: 512 B .. 64 KiB */
#define MLT__CHUNK_CACHE 16  /* per class, per thread */

typedef struct mlt__tls_counters {
  uint64_t spans_started;
  uint64_t traces_started;
  uint64_t traces_sampled_out;
  uint64_t spans_over_limit;
  uint64_t events_dropped;
  uint64_t values_truncated;
  uint64_t misuse;
} mlt__tls_counters;

typedef struct mlt__attach_frame {
  struct mlt_context *ctx;
  mlt_span saved_cur;
  uint32_t saved_nonrec;
  uint32_t serial;
} mlt__attach_frame;

typedef struct mlt__tls {
  mlt_span cur;
  uint32_t nonrec_depth;
  uint32_t nonrec_limit; /* the non-recording run is due to max_spans_per_trace */
  uint32_t depth;        /* attach depth */
  uint32_t serial;
  uint32_t n_mag;
  struct mlt_context *attached; /* frames[depth-1].ctx, or NULL */
  uint64_t rng;
  uint32_t mag[MLT__MAG_SIZE]; /* free slot indices */
  mlt__tls_counters c;
  mlt__attach_frame frames[MLT__MAX_ATTACH];
  uint32_t overflow_attach; /* attaches past MLT__MAX_ATTACH (not tracked) */
  mlt__trace *tfree;        /* cache of free trace headers */
  uint32_t n_tfree;
  uint8_t n_chunks[MLT__CHUNK_CLASSES];
  mlt__chunk *chunks[MLT__CHUNK_CLASSES][MLT__CHUNK_CACHE]; /* free log chunks */
  struct mlt__tls *next_reg;
  struct mlt__tls *prev_reg;
} mlt__tls;

/* ---- library state --------------------------------------------------- */

enum { MLT__G_OFF = 0, MLT__G_RUNNING = 1, MLT__G_STOPPING = 2 };

typedef struct mlt__config {
  double sampling_ratio;
  uint64_t sample_threshold; /* compare against rand >> 11 */
  int enabled;
  int64_t trace_timeout_ns;
  uint32_t queue_size;
  uint32_t schedule_delay_ms;
  uint32_t shutdown_timeout_ms;
  uint32_t max_value_bytes;
  uint32_t max_spans_per_trace;
  uint32_t max_events_per_span;
  char *service_name;
  char *experiment_id;
  char *experiment_name;
  char *tracking_uri;
  char *otlp_endpoint;
  char *file_path;
  mlt_span_processor_fn processor;
  void *processor_ud;
  /* network exporters (lib/http.c, lib/mlflow.c) */
  int64_t mlflow_timeout_ms, otlp_timeout_ms, retry_budget_ms;
  int insecure_tls;
  char *ca_path, *tracking_token, *tracking_user, *tracking_password; /* secrets wiped on free */
  char *otlp_headers, *otlp_compression;
} mlt__config;

extern _Atomic int mlt__g_state;   /* MLT__G_* */
/* The runtime switch (mlt__enabled_flag, declared in <mltrace/span.h> for
 * the inline fast paths) is accessed with __atomic builtins. */
#define MLT__ENABLED() __atomic_load_n(&mlt__enabled_flag, __ATOMIC_RELAXED)
#define MLT__SET_ENABLED(v) __atomic_store_n(&mlt__enabled_flag, (v), __ATOMIC_RELAXED)
extern mlt__config mlt__g_cfg;
extern _Atomic uint32_t mlt__g_epoch;

static inline int mlt__running(void) {
  return atomic_load_explicit(&mlt__g_state, memory_order_acquire) == MLT__G_RUNNING;
}

/* ---- slots (slots.c) ---- */
#define MLT__SLOT_CHUNK_SHIFT 10
#define MLT__SLOT_CHUNK (1u << MLT__SLOT_CHUNK_SHIFT)
#define MLT__SLOT_MAX_CHUNKS 65536u
extern mlt__span *_Atomic mlt__g_slot_chunks[MLT__SLOT_MAX_CHUNKS];

static inline mlt__span *mlt__slot_at(uint32_t index) {
  mlt__span *c = atomic_load_explicit(&mlt__g_slot_chunks[index >> MLT__SLOT_CHUNK_SHIFT], memory_order_acquire);
  return c ? &c[index & (MLT__SLOT_CHUNK - 1)] : NULL;
}
/* Resolve a handle: returns the slot if the generation matches (any state
 * but FREE), with *gs_out = the current gs word. */
static inline mlt__span *mlt__span_get(mlt_span h, uint64_t *gs_out) {
  uint32_t idx1 = (uint32_t)h.id_;
  if (MLT_UNLIKELY(idx1 == 0 || h.id_ >= MLT__H_NONREC_DET)) return NULL;
  uint32_t idx = idx1 - 1;
  if (MLT_UNLIKELY(idx >= MLT__SLOT_MAX_CHUNKS * MLT__SLOT_CHUNK)) return NULL;
  mlt__span *s = mlt__slot_at(idx);
  if (MLT_UNLIKELY(!s)) return NULL;
  uint64_t gs = atomic_load_explicit(&s->gs, memory_order_acquire);
  if (MLT_UNLIKELY(MLT__GS_GEN(gs) != (uint32_t)(h.id_ >> 32) || MLT__GS_STATE(gs) == MLT__S_FREE)) return NULL;
  *gs_out = gs;
  return s;
}
static inline mlt_span mlt__span_handle(const mlt__span *s, uint64_t gs) {
  mlt_span h = {((uint64_t)MLT__GS_GEN(gs) << 32) | (uint64_t)(s->index + 1)};
  return h;
}

mlt__span *mlt__slot_alloc(mlt__tls *tls);
/* Free the span's log chunks and cJSON values, bump the generation and give
 * the slot back (to the caller's magazine when |tls| is not NULL, else to a
 * batch that mlt__slot_free_flush() returns to the pool). */
void mlt__slot_release(mlt__span *s, mlt__tls *tls);
void mlt__slots_put_indices(const uint32_t *idx, size_t n);
/* Free what a span's log owns (heap chunks, cJSON values). */
void mlt__span_free_payload(mlt__span *s, mlt__tls *tls);

/* ---- log chunk pool (chunks.c) ---- */
mlt__chunk *mlt__chunk_alloc(mlt__tls *tls, size_t need);
void mlt__chunk_free(mlt__tls *tls, mlt__chunk *c);
void mlt__chunks_return_cache(mlt__tls *tls);
void mlt__chunks_shutdown(void);
/* Short critical sections shared by threads: spin, then yield. */
void mlt__spin_lock(atomic_flag *f);
void mlt__spin_unlock(atomic_flag *f);
void mlt__slots_shutdown(void);
size_t mlt__slots_in_use(void);

/* ---- per-thread state (span.c) ---- */
mlt__tls *mlt__tls_get_slow(void);
/* The pointer is only trusted when the thread's epoch matches the library's:
 * mlt_shutdown() frees every thread's state and bumps the epoch. */
extern MLT_TLS mlt__tls *mlt__tls_ptr;
extern MLT_TLS uint32_t mlt__tls_epoch;
static inline mlt__tls *mlt__tls_get(void) {
  if (MLT_LIKELY(mlt__tls_epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed))) return mlt__tls_ptr;
  return mlt__tls_get_slow();
}
void mlt__tls_sum_counters(mlt__tls_counters *out);
void mlt__tls_shutdown(void);

/* ---- span log (span.c) ---- */
/* Reserve |size| contiguous bytes at the end of the span's log (owner only);
 * returns NULL on allocation failure.  Publish with mlt__log_publish(). */
char *mlt__log_reserve(mlt__span *s, size_t size);
void mlt__log_publish(mlt__span *s, size_t size);
/* Iterate published records: chunk by chunk. */
typedef struct mlt__log_iter {
  mlt__chunk *c;
  uint32_t off, used;
} mlt__log_iter;
void mlt__log_iter_init(mlt__log_iter *it, mlt__span *s);
const mlt__rec *mlt__log_iter_next(mlt__log_iter *it);
/* Copy the published log of |src| into |dst| (a fresh slot). */
int mlt__log_copy(mlt__span *dst, mlt__span *src);
/* Append helpers used by span.c and view.c. */
int mlt__append_value(mlt__span *s, int kind, int sub, const char *key, size_t key_len, const char *val,
                      size_t val_len, int aux);
int mlt__append_event(mlt__span *s, const char *name, int64_t ts, const mlt_attr *attrs, size_t n);
void mlt__span_init(mlt__span *s, mlt__trace *t, uint64_t span_id, uint64_t parent_id, const char *name,
                    mlt_span_type type, int64_t start_ns);

/* ---- traces (trace.c) ---- */
mlt__trace *mlt__trace_new(uint64_t hi, uint64_t lo);
static inline void mlt__trace_ref(mlt__trace *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }
void mlt__trace_unref(mlt__trace *t);
/* Ref the trace of span |s| (handle generation |gen|) if both still live. */
mlt__trace *mlt__trace_acquire_from_span(mlt__span *s, uint32_t gen);
/* Try to add one to the open counter (joining a span or a hold). */
int mlt__trace_join(mlt__trace *t);
/* Drop one from the open counter; finishes the trace at zero. */
void mlt__trace_leave(mlt__trace *t);
/* Force-finish: end open spans with ERROR and |message|, queue the trace.
 * Returns 1 if this call finished it. */
int mlt__trace_force_finish(mlt__trace *t, int reason, const char *message);
void mlt__trace_push_span(mlt__trace *t, mlt__span *s);
void mlt__traces_active_add(mlt__trace *t);
/* Walk active traces: prune finished ones, expire timed-out ones, or (when
 * |all| is set) force-finish every trace still active. */
void mlt__traces_reap(int64_t now_mono_ns, int all);
void mlt__traces_shutdown(void);
/* Give a thread's cached trace headers back to the pool. */
void mlt__traces_put_cache(mlt__trace *list, uint32_t n);
void mlt__trace_set_last(const mlt__trace *t);
/* Registry (client API by id). */
int mlt__registry_put(uint64_t hi, uint64_t lo, uint64_t span_id, mlt_span h);
int mlt__registry_get(uint64_t hi, uint64_t lo, uint64_t span_id, mlt_span *out);
void mlt__registry_del(uint64_t hi, uint64_t lo, uint64_t span_id);
void mlt__registry_shutdown(void);
/* Record trace-level data; |t| referenced by the caller. */
int mlt__trace_update(mlt__trace *t, const mlt_trace_update *u);
/* The trace-level list, read under the trace lock (export thread). */
mlt__tinfo *mlt__trace_take_info(mlt__trace *t);

/* ---- spans (span.c) ---- */
/* Start a span in trace |t| (already joined: open counter includes it) or a
 * new trace when t is NULL (ids from |ctx_hi/lo|, or random). */
mlt_span mlt__span_start_common(mlt__tls *tls, const struct mlt_context *parent, mlt__span *parent_span,
                                const char *name, mlt_span_type type, int make_current);
void mlt__count_misuse(const char *what, int status);

/* ---- pipeline (pipeline.c) ---- */
/* Hand a finished trace to the export queue (drops and counts when full). */
void mlt__pipeline_enqueue(mlt__trace *t);
void mlt__stats_add(int which, uint64_t n);
enum {
  MLT__ST_TRACES_EXPORTED,
  MLT__ST_SPANS_EXPORTED,
  MLT__ST_TRACES_DROPPED,
  MLT__ST_SPANS_DROPPED,
  MLT__ST_TRACES_FAILED,
  MLT__ST_SPANS_FAILED,
  MLT__ST_TRACES_TIMED_OUT,
  MLT__ST_SPANS_TIMED_OUT,
  MLT__ST_INVALID_JSON,
  MLT__ST_EXPORT_REQUESTS,
  MLT__ST_EXPORT_RETRIES,
  MLT__ST_EXPORT_BYTES,
  MLT__ST_TRACES_FINISHED,
  MLT__ST_COUNT
};

/* ---- contexts (context.c) ---- */
struct mlt_context *mlt__context_new(mlt__trace *t, uint64_t hi, uint64_t lo, uint64_t span_id, int flags);

#endif /* MLT_SPAN_INTERNAL_H */
