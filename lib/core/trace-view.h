/* lib/core/trace-view.h: a finished trace as the export layer reads it.
 *
 * The layout of spans, traces and their record logs, and the read-only
 * accessors an exporter or serializer needs: record kinds and value types,
 * the mlt__rec accessors, the log iterator, the trace and span fields, the
 * trace-level update list.  It also declares the counters behind
 * mlt_get_stats() that the export side adds to.  Nothing here starts, ends,
 * writes or frees a span: those operations (hot path, per-thread state,
 * slots, the chunk pool, mutation) are in core/span-internal.h, which
 * includes this file and which only the core and the export pipeline
 * (export/pipeline.c, options.c, view.c, assess.c) may include;
 * tests/check-layers.sh checks that the exporters include only this view.
 *
 * A finished trace handed to the exporters is immutable while they run:
 * every span is ended, its log published (each chunk's |used| is a release
 * store), the span processor has already run.
 */
#ifndef MLT_TRACE_VIEW_H
#define MLT_TRACE_VIEW_H

#include "util/common-internal.h"

/* Process-wide state is hidden: read directly, not through the GOT (the
 * library is built with -fvisibility=hidden, but a declaration alone does
 * not say so). */
#define MLT__HIDDEN __attribute__((visibility("hidden")))

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
  MLT__R_FIELD,         /* child of EVENT / FIELDS: key, sub = value type */
  MLT__R_FUNC,          /* val = function name (mlflow.spanFunctionName) */
  MLT__R_LINK,          /* val = u64 trace hi, lo, span id, n children; FIELD children (lib/core/spanopts.c) */
  MLT__R_REDUCER        /* val = mlt_output_reducer_fn, void * user data (the last one counts; not exported) */
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
#define MLT__RF_FUNC 0x10    /* NAME record: the name is also the function name */
#define MLT__RF_DELTA 0x20   /* CHUNK record stored as a delta (see "delta-encoded chunks" below) */
#define MLT__RF_COPY 0x40    /* export thread: a digest's rebuilt copy of a delta record (export/serialize.c) */

/* An 8-byte record header (one store on the hot path).  Keys are at most
 * 1024 bytes (11 bits); aux holds a span type or a status (< 32). */
typedef struct mlt__rec {
  uint32_t kind : 4;
  uint32_t sub : 4;
  uint32_t flags : 8;
  uint32_t aux : 5; /* kind-specific small value (type enum, status) */
  uint32_t key_len : 11;
  uint32_t val_len;
  /* key bytes, then value bytes, then padding to 8 */
} mlt__rec;
#define MLT__KEY_MAX 1024

#define MLT__REC_ALIGN 8
static inline size_t mlt__rec_size(size_t key_len, size_t val_len) {
  return (sizeof(mlt__rec) + key_len + val_len + (MLT__REC_ALIGN - 1)) & ~(size_t)(MLT__REC_ALIGN - 1);
}
static inline const char *mlt__rec_key(const mlt__rec *r) { return (const char *)(r + 1); }
static inline const char *mlt__rec_val(const mlt__rec *r) { return (const char *)(r + 1) + r->key_len; }
static inline const mlt__rec *mlt__rec_next(const mlt__rec *r) {
  return (const mlt__rec *)((const char *)r + mlt__rec_size(r->key_len, r->val_len));
}

/* Delta-encoded chunks.  A streamed LLM answer arrives as many small JSON
 * records that are almost all alike (an OpenAI chat.completion.chunk repeats
 * its id, object, created, model, system_fingerprint, logprobs and
 * finish_reason in every event: ~95 % of its ~230 bytes), and a span keeps
 * every chunk until its trace is exported.  So a CHUNK record may be stored
 * as a delta against the span's reference chunk:
 *
 *   flags MLT__RF_DELTA, key = i64 time (as every CHUNK record),
 *   val   = u32 prefix, u32 suffix, then the middle bytes;
 *   text  = ref[0, prefix) + middle + ref[ref_len - suffix, ref_len)
 *
 * The reference of a delta record is the latest CHUNK record before it in
 * the span's log that is neither a delta nor truncated (MLT__RF_TRUNC).  The
 * writer (core/span-stream.c, the span's owner) keeps a pointer to it
 * (mlt__span.chunk_ref) and stores a chunk whole -- the new reference --
 * when a delta would not be smaller.  A reader walks the log in order, so it
 * meets the reference before the deltas that use it: mlt__chunk_ref_see()
 * tracks it, mlt__delta_len() / mlt__delta_rebuild() give a delta's text.
 * Readers: the digest (export/serialize.c: the JSON writer, the OTLP encoder
 * and the default output get rebuilt records) and the output reducer
 * (core/span.c).  What is exported is the chunk's bytes, as if stored whole. */
#define MLT__DELTA_HDR 8 /* u32 prefix, u32 suffix */

/* Call for every CHUNK record met, in log order, after using it. */
static inline void mlt__chunk_ref_see(const mlt__rec **ref, const mlt__rec *r) {
  if (!(r->flags & (MLT__RF_DELTA | MLT__RF_TRUNC))) *ref = r;
}

/* A delta record's prefix and suffix lengths, clamped to what |ref| holds
 * (without a reference a delta rebuilds to its middle bytes). */
static inline void mlt__delta_parts(const mlt__rec *r, const mlt__rec *ref, uint32_t *prefix, uint32_t *suffix) {
  uint32_t p = 0, s = 0;
  if (r->val_len >= MLT__DELTA_HDR) {
    memcpy(&p, mlt__rec_val(r), 4);
    memcpy(&s, mlt__rec_val(r) + 4, 4);
  }
  uint32_t rl = ref ? ref->val_len : 0;
  if (p > rl) p = rl;
  if (s > rl - p) s = rl - p;
  *prefix = p;
  *suffix = s;
}

/* Bytes of a delta record's text. */
static inline size_t mlt__delta_len(const mlt__rec *r, const mlt__rec *ref) {
  uint32_t p, s;
  mlt__delta_parts(r, ref, &p, &s);
  return (size_t)p + s + (r->val_len >= MLT__DELTA_HDR ? r->val_len - MLT__DELTA_HDR : 0);
}

/* Write a delta record's text (mlt__delta_len() bytes) to |dst|. */
static inline void mlt__delta_rebuild(char *dst, const mlt__rec *r, const mlt__rec *ref) {
  uint32_t p, s;
  mlt__delta_parts(r, ref, &p, &s);
  size_t mid = r->val_len >= MLT__DELTA_HDR ? r->val_len - MLT__DELTA_HDR : 0;
  if (p) memcpy(dst, mlt__rec_val(ref), p);
  if (mid) memcpy(dst + p, mlt__rec_val(r) + MLT__DELTA_HDR, mid);
  if (s) memcpy(dst + p + mid, mlt__rec_val(ref) + ref->val_len - s, s);
}

typedef struct mlt__chunk {
  struct mlt__chunk *_Atomic next;
  uint32_t cap;
  _Atomic uint32_t used; /* published with release by the owner */
  /* aligned data follows */
} mlt__chunk;
/* The data after a chunk header.  For the inline chunk the data is the
 * slot's inline_log, beyond the |head| member: the empty asm hides that from
 * the compiler's object-size checks. */
static inline char *mlt__chunk_data(mlt__chunk *c) {
  char *p = (char *)(c + 1);
  __asm__("" : "+r"(p));
  return p;
}

/* ---- span slot ------------------------------------------------------- */

/* Span slot flags. */
#define MLT__SF_CURRENT 0x01    /* made current on its owner thread */
#define MLT__SF_ROOT 0x02       /* the local root of its trace */
#define MLT__SF_CLONE 0x04      /* a snapshot made for a forced finish */
#define MLT__SF_HAS_CHUNKS 0x08
#define MLT__SF_OUTPUTS 0x10    /* outputs set explicitly */
#define MLT__SF_TEXT_ONLY 0x20  /* every chunk so far was text */
#define MLT__SF_CJSON 0x40      /* log holds cJSON values to free */
#define MLT__SF_REDUCER 0x80    /* an output reducer is set: the log's last MLT__R_REDUCER record */

#define MLT__INLINE_LOG 128
#define MLT__MAX_LINKS 128 /* links kept per span (OpenTelemetry's default limit) */

typedef struct mlt__trace mlt__trace;

/* A FREE slot is clean (mlt__slot_release() makes it so, on the thread that
 * frees it, usually the export thread): empty log (head.used 0, head.next
 * NULL, tail = &head, chunk_ref NULL), counters 0, no context, status UNSET,
 * flags TEXT_ONLY, end_ns 0.  Starting a span writes only what differs. */
/* What the export side reads of a finished span, and the record log.  A span
 * slot holds it (mlt__span.core below) while the span is open; a child span
 * that ends while its trace goes on is moved out of its slot into a compact
 * copy (an mlt__score followed by the records of its inline log, one
 * exact-size malloc'd block: core/compact.c), and the slot is reused.  Either
 * way the log's first chunk is |head|, its data right after it. */
#define MLT__SCORE_FIELDS                                                                                              \
  uint64_t span_id;                                                                                                    \
  uint64_t parent_id;                                                                                                  \
  int64_t start_ns;                                                                                                    \
  int64_t end_ns;                                                                                                      \
  struct mlt__score *next; /* the trace's list: open slots (t->spans) or moved spans (t->moved) */                      \
  mlt__chunk *tail;        /* owner: chunk being appended to */                                                        \
  uint32_t n_events;       /* events + chunks recorded */                                                              \
  uint32_t n_events_dropped;                                                                                           \
  uint32_t n_chunks;                                                                                                   \
  uint16_t n_links;         /* LINK records (lib/core/spanopts.c) */                                                   \
  uint16_t n_links_dropped; /* links over MLT__MAX_LINKS, counted only */                                              \
  uint32_t index;           /* the slot's index; MLT__MOVED_INDEX in a moved copy */                                   \
  uint8_t type;             /* start type (later changes are records) */                                               \
  uint8_t status;                                                                                                      \
  uint8_t flags;                                                                                                       \
  _Atomic uint8_t is_root; /* the trace's root (set at start; read by the reaper) */                                   \
  mlt__chunk head;         /* inline first chunk; the log's data follows */

typedef struct mlt__score {
  MLT__SCORE_FIELDS
} mlt__score;
#define MLT__MOVED_INDEX UINT32_MAX

typedef struct mlt__span {
  union {
    mlt__score core; /* the same members, as the export side sees them (first: &s->core == s) */
    struct {
      MLT__SCORE_FIELDS
    };
  };
  char inline_log[MLT__INLINE_LOG];
  _Atomic uint64_t gs;
  mlt__trace *_Atomic trace;
  mlt_span saved_current;      /* restore on end (owner thread) */
  struct mlt_context *ctx;     /* cached captured context (holds a ref) */
  const mlt__rec *chunk_ref;   /* owner: the reference of delta CHUNK records (above); NULL in a FREE slot */
} mlt__span;
_Static_assert(sizeof(mlt__span) == 256, "a span slot is 256 bytes, four cache lines (memory per open span)");
_Static_assert(offsetof(mlt__score, head) + sizeof(mlt__chunk) == sizeof(mlt__score), "a log's data follows its head");
_Static_assert(sizeof(mlt__score) % MLT__REC_ALIGN == 0, "a moved copy's records start aligned");
_Static_assert(offsetof(mlt__span, inline_log) == offsetof(mlt__span, core) + sizeof(mlt__score),
               "the inline log follows the slot's core");
/* The slot of an mlt__score that is not a moved copy. */
static inline mlt__span *mlt__score_slot(mlt__score *c) {
  return (mlt__span *)(void *)((char *)c - offsetof(mlt__span, core));
}
static inline int mlt__score_moved(const mlt__score *c) { return c->index == MLT__MOVED_INDEX; }
/* The core of a slot or an mlt__score itself: the log writers take either. */
#define MLT__SC(p) _Generic((p), mlt__span *: &((mlt__span *)(void *)(p))->core, mlt__score *: (mlt__score *)(void *)(p))

/* ---- traces ---------------------------------------------------------- */

enum { MLT__T_ACTIVE = 0, MLT__T_FINISHED = 1 };

#define MLT__TF_CONTINUATION 0x01 /* spans of a trace that already finished */
#define MLT__TF_REMOTE 0x02       /* local root has a remote parent (traceparent) */
#define MLT__TF_FORCED 0x04       /* ended by timeout / shutdown / end_trace */
#define MLT__TF_TIMED_OUT 0x08
#define MLT__TF_LOST 0x10 /* a forced finish ran out of memory: spans missing, the trace is counted failed */

/* Trace-level update entry (tags, metadata, previews, ...). */
enum {
  MLT__TI_TAG = 1,
  MLT__TI_META,
  MLT__TI_REQ_PREVIEW,
  MLT__TI_RESP_PREVIEW,
  MLT__TI_CLIENT_REQ_ID,
  MLT__TI_SESSION,
  MLT__TI_USER,
  MLT__TI_STATE,      /* value "OK" / "ERROR" (update_current_trace state) */
  MLT__TI_ASSESSMENT, /* value: one Assessment JSON object (lib/export/assess.c) */
  MLT__TI_SCOPE       /* owns the block of a scope's entries (lib/core/scope.c); no data */
};
typedef struct mlt__tinfo {
  struct mlt__tinfo *next;
  uint8_t kind;
  uint8_t borrowed; /* key/value are a scope's strings and the entry is in its TI_SCOPE entry's block */
  char *key;
  char *value;
  struct mlt__scope *scope; /* TI_SCOPE: the scope the block borrows from (reference held) */
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
  mlt__score *_Atomic spans; /* the spans in slots: open ones, ended roots, ended spans not moved (a root's
                                 * alone until its trace is known; then changed under |lock|) */
  mlt__score *moved;          /* ended child spans moved out of their slots (under |lock|; core/compact.c) */
  mlt__score *moved_rest;     /* a forced finish out of memory: the part of |moved| not in export_spans */
  /* trace-level data, under |lock| */
  atomic_flag lock;
  uint8_t walked; /* a forced finish has taken the trace's spans (under |lock|) */
  mlt__tinfo *info;
  uint32_t n_info; /* entries in |info| (capped at MLT__TINFO_MAX) */
  /* filled for export */
  mlt__score **export_spans; /* mlt__no_spans when none could be listed (MLT__TF_LOST) */
  uint32_t n_export;
  /* pool linkage */
  mlt__trace *next_free;      /* next in a chain of free headers */
  _Atomic uint32_t chain_next; /* chain heads: the next chain in the pool's stack */
  uint32_t chain_n;           /* chain heads: headers in the chain */
  uint32_t pool_num;          /* this header's number (1-based, fixed) */
  /* export queue (pipeline.c): link while queued, bytes it holds */
  mlt__trace *_Atomic qnext;
  size_t qbytes;
};

/* The export_spans of a forced finish that had no memory for its array. */
extern mlt__score *mlt__no_spans[1] MLT__HIDDEN;

/* ---- reading a finished span ----------------------------------------- */

/* Iterate published records: chunk by chunk. */
typedef struct mlt__log_iter {
  mlt__chunk *c;
  uint32_t off, used;
} mlt__log_iter;
#define mlt__log_iter_init(it, s) mlt__log_iter_init_c((it), MLT__SC(s))
static inline void mlt__log_iter_init_c(mlt__log_iter *it, mlt__score *s) {
  it->c = &s->head;
  it->off = 0;
  it->used = atomic_load_explicit(&s->head.used, memory_order_acquire);
}
static inline const mlt__rec *mlt__log_iter_next(mlt__log_iter *it) {
  if (MLT_LIKELY(it->off < it->used)) {
    const mlt__rec *r = (const mlt__rec *)(mlt__chunk_data(it->c) + it->off);
    it->off += (uint32_t)mlt__rec_size(r->key_len, r->val_len);
    return r;
  }
  while (it->c) {
    mlt__chunk *n = atomic_load_explicit(&it->c->next, memory_order_acquire);
    if (!n) return NULL;
    it->c = n;
    it->off = 0;
    it->used = atomic_load_explicit(&n->used, memory_order_acquire);
    if (it->off < it->used) {
      const mlt__rec *r = (const mlt__rec *)(mlt__chunk_data(it->c) + it->off);
      it->off += (uint32_t)mlt__rec_size(r->key_len, r->val_len);
      return r;
    }
  }
  return NULL;
}
/* The trace-level list, read under the trace lock (export thread). */
mlt__tinfo *mlt__trace_take_info(mlt__trace *t);
/* Of a finished span's |n_chunks| chunk records, how many are exported as
 * events: the first max_events_per_span (the setter counts the rest as
 * dropped events; core/state.c reads the core configuration). */
size_t mlt__chunk_events(size_t n_chunks);

/* ---- counters -------------------------------------------------------- */

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
  MLT__ST_TRACES_PARTIAL,  /* spans stored, TraceInfo not (pipeline.c) */
  MLT__ST_SPANS_PARTIAL,
  MLT__ST_TRACES_SPOOLED,  /* handed to the durable spool instead */
  MLT__ST_TRACES_REPLAYED, /* delivered from the spool (spool.c) */
  MLT__ST_TRACES_EVICTED,  /* removed from a full spool unsent */
  MLT__ST_COUNT
};
/* The counters behind mlt_get_stats() that are not per thread (core/state.c;
 * read and reset by lib/export/pipeline.c). */
extern _Atomic uint64_t mlt__g_stats[MLT__ST_COUNT] MLT__HIDDEN;
static inline void mlt__stats_add(int which, uint64_t n) {
  atomic_fetch_add_explicit(&mlt__g_stats[which], n, memory_order_relaxed);
}

#endif /* MLT_TRACE_VIEW_H */
