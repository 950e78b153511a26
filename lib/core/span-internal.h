/* lib/core/span-internal.h: the operations on spans, traces, contexts and
 * per-thread state -- the hot path, the slots, the log chunk pool, the
 * writers of the record log, the library's state and configuration.  The
 * layout of a span and a trace and their read-only accessors are in
 * core/trace-view.h (included here), the one header the exporters see.  Only
 * core/ and the export pipeline (export/pipeline.c, options.c, view.c,
 * assess.c) include this file (tests/check-layers.sh).
 *
 * Memory model.  A span lives in a *slot* of the slot table, one reserved
 * address range that only grows (slots are recycled, never unmapped while
 * the library runs): a slot's address is base + index.  A handle is
 * (generation << 32 | index + 1); the slot's atomic word |gs| packs the
 * generation and the span state, so a stale handle is detected by one load
 * and compare, and ending a span is one CAS that also proves the slot was not
 * recycled.  A free slot is clean; starting a span writes only what differs.
 * Span data (name, attributes, inputs, events, ...) is an append-only
 * *record log* (8-byte record headers) written only by the thread that owns
 * the span; each log chunk publishes its length with a release store, so the
 * export thread can read a consistent prefix of an open span (trace timeout)
 * without locks.  Span ids, and the low half of the ids of traces started
 * here, are a keyed bijection of the slot handle, so lookups by id (client
 * API) invert it instead of searching a shared registry.  Traces are
 * reference-counted headers from a type-stable pool; a trace finishes when
 * its counter of open spans and holds drops to zero, and the thread that
 * drops it enqueues the trace on the bounded export queue.  Free slots and
 * trace headers circulate through per-thread caches that refill from and
 * spill to lock-free stacks in batches: start, set, end and finish take no
 * lock shared across traces (only growing a pool takes a mutex).
 */
#ifndef MLT_SPAN_INTERNAL_H
#define MLT_SPAN_INTERNAL_H

#include "core/trace-view.h"

#include <pthread.h>

/* ---- span slot ------------------------------------------------------- */

/* FREE: in the pool.  OPEN: recording.  ENDED: ended by its owner.
 * EXPIRED: ended by a forced finish (timeout, shutdown, end_trace) while its
 * owner still held it, or ended by its owner after a forced finish missed it:
 * the owner frees the slot.  CLAIMED: ended, and taken by a forced finish for
 * export: the exporter frees the slot. */
enum { MLT__S_OPEN = 0, MLT__S_FREE = 1, MLT__S_ENDED = 2, MLT__S_EXPIRED = 3, MLT__S_CLAIMED = 4 };

/* The gs word: generation (high 32 bits), state (bits 28-31), slot index + 1
 * (bits 0-27).  A handle is generation << 32 | index + 1, and OPEN is state
 * 0, so an open span's gs word IS its handle: checking a handle against its
 * slot is one compare (generation, state and index at once). */
#define MLT__GS_STATE_SHIFT 28
#define MLT__GS_STATE_MASK (UINT64_C(0xF) << MLT__GS_STATE_SHIFT)
#define MLT__GS_MAKE(gen, state, index)                                                                        \
  (((uint64_t)(gen) << 32) | ((uint64_t)(state) << MLT__GS_STATE_SHIFT) | (uint64_t)((uint32_t)(index) + 1u))
/* The same slot and generation in another state. */
#define MLT__GS_SET(gs, state) (((gs) & ~MLT__GS_STATE_MASK) | ((uint64_t)(state) << MLT__GS_STATE_SHIFT))
#define MLT__GS_GEN(gs) ((uint32_t)((gs) >> 32))
#define MLT__GS_STATE(gs) ((uint32_t)((gs) >> MLT__GS_STATE_SHIFT) & 0xFu)

/* Handles with special meaning. */
#define MLT__H_NONREC_CUR UINT64_C(0xFFFFFFFFFFFFFFFF)  /* non-recording, current on thread */
#define MLT__H_NONREC_DET UINT64_C(0xFFFFFFFEFFFFFFFF)  /* non-recording, not current */
static inline int mlt__h_is_nonrec(mlt_span h) {
  return h.id_ == MLT__H_NONREC_CUR || h.id_ == MLT__H_NONREC_DET;
}

/* ---- traces ---------------------------------------------------------- */

/* The counter bias applied by a forced finish: |open| goes negative, so no
 * span can join and no late end can finish the trace a second time. */
#define MLT__OPEN_BIAS (1 << 30)

/* Free a list of entries (borrowed ones go with their TI_SCOPE block). */
void mlt__tinfo_free(mlt__tinfo *i);
/* Prepend the prepared chain head..tail (|n| entries) to trace |t|'s
 * entries if it is in progress and stays within MLT__TINFO_MAX: MLT_OK, or
 * MLT_EENDED / MLT_EFULL (the chain is the caller's again). */
int mlt__trace_info_link(mlt__trace *t, mlt__tinfo *head, mlt__tinfo *tail, uint32_t n);

/* ---- contexts -------------------------------------------------------- */

#define MLT__CF_SAMPLED 0x01
#define MLT__CF_REMOTE 0x02
#define MLT__CF_HOLD 0x04
#define MLT__CF_NOSPAN 0x08 /* no trace or span: only a scope to carry (lib/core/scope.c); spans start new traces */

struct mlt_context {
  _Atomic int32_t refs;
  uint8_t flags;
  uint32_t epoch; /* library epoch: after mlt_shutdown() the trace link is dead */
  uint64_t trace_hi, trace_lo;
  uint64_t span_id;
  mlt__trace *trace; /* ref held; NULL for remote / non-sampled */
  struct mlt__scope *scope; /* scoped context captured with it (ref held), or NULL (lib/core/scope.c) */
};

/* ---- per-thread state ------------------------------------------------ */

#define MLT__TINFO_MAX 4096 /* trace-level entries (tags, metadata, ...) per trace */
#define MLT__MAX_ATTACH 64
#define MLT__MAG_SIZE 256
/* Slots of moved spans (compact.c) wait in a per-thread FIFO this long
 * before reuse, so that an ended span's handle keeps answering for a while
 * (4 KiB of slots per thread: more costs throughput -- with 256, 15% fewer
 * requests/s at C10k, reused slots no longer being in cache). */
#define MLT__MOVED_RING 16
/* A child span ending in a trace younger than this keeps its slot: a short
 * trace is exported soon after anyway, and a move costs a copy, a malloc
 * and a free; a long one (a server request waiting for its LLM call) holds
 * its ended spans for seconds.  Once the slot table has grown past
 * MLT__MOVE_SLOTS (many spans held at once: a loaded server, whose young
 * requests' first spans also end within a millisecond) every child that
 * ends in a trace going on moves. */
#define MLT__MOVE_AFTER_NS 1000000 /* 1 ms */
#define MLT__MOVE_SLOTS 8192u      /* 2 MiB of slots */
#define MLT__CHUNK_CLASSES 10 /* log chunk size classes: 128 B .. 64 KiB */
#define MLT__CHUNK_CACHE 64   /* per class, per thread, at most (see mlt__chunk_cache_max()) */
/* A thread's cache of class k holds up to 64 chunks and 32 KiB worth (at
 * least 4 chunks). */
static inline unsigned mlt__chunk_cache_max(int k) {
  unsigned n = 256u >> k;
  return n > MLT__CHUNK_CACHE ? MLT__CHUNK_CACHE : n < 4 ? 4 : n;
}
/* Smallest log chunk class (128 B << k, header included) whose payload
 * holds |need| bytes, or -1 (larger: a chunk of its own). */
static inline int mlt__chunk_class(size_t need) {
  size_t total = need + 16;
  if (total <= 128) return 0;
  int k = (int)(64 - __builtin_clzll((unsigned long long)(total - 1))) - 7;
  return k < MLT__CHUNK_CLASSES ? k : -1;
}

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
  struct mlt__scope *saved_scope; /* the thread's scope before this frame */
  struct mlt__scope *own_scope;   /* a scope frame (mlt_trace_scope_enter): its scope (ref held) */
} mlt__attach_frame;

/* The last trace this thread finished (mlt_get_last_active_trace_id()):
 * written only by its thread, read by others under a sequence count. */
typedef struct mlt__last_trace {
  _Atomic uint32_t seq; /* odd while being written */
  _Atomic uint64_t hi, lo;
  _Atomic int64_t stamp; /* finish time (ns, realtime); 0: none */
} mlt__last_trace;

/* Sequence-count write without fences (TSan has none): the data stores are
 * releases, so a reader that sees new data (acquire) also sees the odd
 * count and retries; the final even count is a release too. */
static inline void mlt__last_write(mlt__last_trace *l, uint64_t hi, uint64_t lo, int64_t stamp) {
  uint32_t q = atomic_load_explicit(&l->seq, memory_order_relaxed);
  atomic_store_explicit(&l->seq, q + 1, memory_order_relaxed);
  atomic_store_explicit(&l->hi, hi, memory_order_release);
  atomic_store_explicit(&l->lo, lo, memory_order_release);
  atomic_store_explicit(&l->stamp, stamp, memory_order_release);
  atomic_store_explicit(&l->seq, q + 2, memory_order_release);
}

typedef struct mlt__tls {
  mlt_span cur;
  uint32_t nonrec_depth;
  uint32_t nonrec_limit; /* the non-recording run is due to max_spans_per_trace */
  uint32_t depth;        /* attach depth */
  uint32_t serial;
  uint32_t n_mag;
  struct mlt_context *attached; /* frames[depth-1].ctx, or NULL */
  struct mlt__scope *scope;     /* scoped context in effect, or NULL (borrowed from a frame) */
  uint64_t rng;                 /* wyrand state (seeded with the thread state) */
  uint32_t mag[MLT__MAG_SIZE]; /* free slot indices */
  uint32_t moved_ring[MLT__MOVED_RING]; /* free slots of moved spans, oldest first from moved_head */
  uint32_t moved_head, moved_n;
  mlt__tls_counters c;
  mlt__last_trace last;
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

/* The core's settings (mlt__g_cfg), read by the core on its hot paths;
 * mlt_init() fills them (lib/export/options.c resolves them) and nothing
 * changes them while the library runs.  The export settings (exporters,
 * endpoints, timeouts, queue, spool, span processor) are the export layer's
 * own (mlt__export_config, lib/export/options-internal.h): the core never
 * sees them (tests/check-layers.sh). */
typedef struct mlt__config {
  double sampling_ratio;
  uint64_t sample_threshold; /* compare against rand >> 11 */
  int64_t trace_timeout_ns;
  uint32_t max_value_bytes;
  uint32_t max_spans_per_trace;
  uint32_t max_events_per_span;
} mlt__config;

/* The process-wide state, defined in core/state.c.  Hidden (MLT__HIDDEN,
 * core/trace-view.h): read directly, not through the GOT. */
extern _Atomic int mlt__g_state MLT__HIDDEN; /* MLT__G_* */
/* The runtime switch (mlt__enabled_flag, declared in <mltrace/span.h> for
 * the inline fast paths) is accessed with __atomic builtins. */
#define MLT__ENABLED() __atomic_load_n(&mlt__enabled_flag, __ATOMIC_RELAXED)
#define MLT__SET_ENABLED(v) __atomic_store_n(&mlt__enabled_flag, (v), __ATOMIC_RELAXED)
extern mlt__config mlt__g_cfg MLT__HIDDEN;
/* min(32, max_value_bytes), set when a thread makes its state (tls.c). */
/* hidden: the setters in other files read it directly, not through the GOT */
extern _Atomic size_t mlt__g_tiny_value MLT__HIDDEN;
extern _Atomic uint32_t mlt__g_epoch MLT__HIDDEN;

static inline int mlt__running(void) {
  return atomic_load_explicit(&mlt__g_state, memory_order_acquire) == MLT__G_RUNNING;
}

/* ---- lock-free stacks of numbered nodes (slots.c, trace.c) ----------- */
/* The pools' global free lists: a Treiber stack whose top word packs a
 * change count (the ABA guard: it would have to wrap 2^32 times between a
 * read and the compare-and-swap) with the top node's number (1-based; 0 =
 * empty).  Nodes are type-stable (never freed while the library runs) and
 * keep the number of the next node in an atomic field, found by |next_of|. */
typedef _Atomic uint32_t *(*mlt__lf_next_fn)(uint32_t num);
static inline void mlt__lf_push(_Atomic uint64_t *top, uint32_t num, mlt__lf_next_fn next_of) {
  _Atomic uint32_t *nx = next_of(num);
  uint64_t old = atomic_load_explicit(top, memory_order_relaxed);
  do {
    atomic_store_explicit(nx, (uint32_t)old, memory_order_relaxed);
  } while (!atomic_compare_exchange_weak_explicit(top, &old, (((old >> 32) + 1) << 32) | num, memory_order_release,
                                                  memory_order_relaxed));
}
static inline uint32_t mlt__lf_pop(_Atomic uint64_t *top, mlt__lf_next_fn next_of) {
  uint64_t old = atomic_load_explicit(top, memory_order_acquire);
  for (;;) {
    uint32_t num = (uint32_t)old;
    if (!num) return 0;
    uint32_t next = atomic_load_explicit(next_of(num), memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(top, &old, (((old >> 32) + 1) << 32) | next, memory_order_acquire,
                                              memory_order_acquire))
      return num;
  }
}

/* ---- slots (slots.c) ---- */
/* The slot table is one reserved address range (never moved or unmapped
 * while the library runs), committed in chunks of MLT__SLOT_CHUNK slots as it
 * grows: a slot's address is base + index, one multiply.  mlt__g_slots_n
 * (release-stored after a chunk is committed) bounds every index taken from
 * a handle. */
#define MLT__SLOT_CHUNK 1024u
#define MLT__SLOT_MAX (1u << 26) /* slots reserved at most (fewer when the address space is short) */
_Static_assert(MLT__SLOT_MAX < (1u << MLT__GS_STATE_SHIFT), "a slot index + 1 must fit below the gs word's state bits");
extern mlt__span *mlt__g_slots MLT__HIDDEN;
extern _Atomic uint32_t mlt__g_slots_n MLT__HIDDEN;

/* Slot |index| (taken from a magazine: always committed). */
static inline mlt__span *mlt__slot_at(uint32_t index) { return &mlt__g_slots[index]; }
/* Resolve a handle: returns the slot if the generation matches (any state
 * but FREE), with *gs_out = the current gs word. */
static inline mlt__span *mlt__span_get(mlt_span h, uint64_t *gs_out) {
  uint32_t idx = (uint32_t)h.id_ - 1; /* NONE and non-recording handles give an index past the table */
  if (MLT_UNLIKELY(idx >= atomic_load_explicit(&mlt__g_slots_n, memory_order_acquire))) return NULL;
  mlt__span *s = &mlt__g_slots[idx];
  uint64_t gs = atomic_load_explicit(&s->gs, memory_order_acquire);
  if (MLT_UNLIKELY(MLT__GS_GEN(gs) != (uint32_t)(h.id_ >> 32) || MLT__GS_STATE(gs) == MLT__S_FREE)) return NULL;
  *gs_out = gs;
  return s;
}
/* Resolve a handle to an OPEN span in a few instructions: *out gets the
 * span (1), or 0 -- not open, stale, NONE or non-recording.  One compare
 * checks generation, state and slot: an open span's gs word is its handle.
 * The slot address is never NULL, so the callers test one condition. */
static MLT_ALWAYS_INLINE int mlt__span_open_try(mlt_span h, mlt__span **out) {
  uint32_t idx = (uint32_t)h.id_ - 1;
  if (MLT_UNLIKELY(idx >= atomic_load_explicit(&mlt__g_slots_n, memory_order_acquire))) return 0;
  mlt__span *s = &mlt__g_slots[idx];
  if (MLT_UNLIKELY(atomic_load_explicit(&s->gs, memory_order_acquire) != h.id_)) return 0;
  *out = s;
  return 1;
}
/* The same as a pointer (NULL: not open). */
static inline mlt__span *mlt__span_open_fast(mlt_span h) {
  mlt__span *s;
  return mlt__span_open_try(h, &s) ? s : NULL;
}
/* The handle of the span whose gs word is |gs| (any state). */
static inline mlt_span mlt__span_handle(uint64_t gs) {
  mlt_span h = {MLT__GS_SET(gs, MLT__S_OPEN)};
  return h;
}

mlt__span *mlt__slot_alloc(mlt__tls *tls);
/* Refill this thread's slot magazine from the pool (0, or -1: no memory). */
int mlt__slot_refill(mlt__tls *tls);
/* Free the span's log chunks and cJSON values, bump the generation and give
 * the slot back (to the caller's magazine when |tls| is not NULL, else to a
 * batch that mlt__slot_free_flush() returns to the pool). */
void mlt__slot_release(mlt__span *s, mlt__tls *tls);
/* The same for the slot of a span just moved (compact.c): it is reused
 * only after MLT__MOVED_RING later ones of this thread. */
void mlt__slot_release_moved(mlt__span *s, mlt__tls *tls);
/* Give a thread's delayed slots back to the pool (thread exit). */
void mlt__slots_put_ring(mlt__tls *tls);
void mlt__slots_put_indices(const uint32_t *idx, size_t n);
/* Free what a span's log owns (heap chunks, cJSON values). */
void mlt__score_free_payload(mlt__score *s, mlt__tls *tls);
#define mlt__span_free_payload(s, tls) mlt__score_free_payload(&(s)->core, (tls))

/* ---- ended spans moved out of their slots (compact.c) ---- */
/* Span |s| (not a root), just ended under trace |t| by this thread: move it
 * to |t|'s list of moved spans and free its slot (1), or leave it (0). */
int mlt__span_move(mlt__span *s, mlt__trace *t, mlt__tls *tls);
/* Export thread: free a finished span, moved or in its slot. */
void mlt__score_release(mlt__score *c, mlt__tls *tls);
/* The moved span of handle |h|, while its trace is in memory: 1 with its
 * status in *status (may be NULL) and its trace referenced in *tp (NULL:
 * not kept), else 0.  (Its span id is mlt__id_from_handle(h.id_).) */
int mlt__moved_find(mlt_span h, mlt__trace **tp, uint8_t *status);
/* A handle that no slot holds any more: is it a moved (ended) span's? */
static inline int mlt__h_moved(mlt_span h) { return h.id_ && !mlt__h_is_nonrec(h) && mlt__moved_find(h, NULL, NULL); }
/* Fill |c| (on the caller's stack) as a context of moved span |h|: 1 with
 * its trace referenced in *tp (the caller unrefs it after use), else 0. */
int mlt__moved_context(mlt_span h, struct mlt_context *c, mlt__trace **tp);
/* Fill |c| (on the caller's stack) as a context of span |span_id| of trace
 * |t| (referenced by the caller for as long as |c| is used). */
void mlt__context_on_stack(struct mlt_context *c, mlt__trace *t, uint64_t span_id);
/* The trace of span |h| -- in its slot, or ended and moved out of it --
 * while it is in memory, referenced (the caller unrefs it); else NULL. */
mlt__trace *mlt__handle_trace(mlt_span h);

/* ---- log chunk pool (chunks.c) ---- */
mlt__chunk *mlt__chunk_alloc(mlt__tls *tls, size_t need);
void mlt__chunk_free(mlt__tls *tls, mlt__chunk *c);
void mlt__chunks_return_cache(mlt__tls *tls);
void mlt__chunks_shutdown(void);
/* Short critical sections shared by threads: spin, then yield. */
void mlt__spin_lock_slow(atomic_flag *f);
/* Uncontended: one exchange, inline (a trace's lock guards its span list on
 * every child start). */
static inline void mlt__spin_lock(atomic_flag *f) {
  if (MLT_LIKELY(!atomic_flag_test_and_set_explicit(f, memory_order_acquire))) return;
  mlt__spin_lock_slow(f);
}
static inline void mlt__spin_unlock(atomic_flag *f) { atomic_flag_clear_explicit(f, memory_order_release); }
void mlt__slots_shutdown(void);

/* ---- per-thread state (tls.c) ---- */
mlt__tls *mlt__tls_get_slow(void);
/* The pointer is only trusted when the thread's epoch matches the library's:
 * mlt_shutdown() frees every thread's state and bumps the epoch. */
/* One thread-local object for both, so that a function finds them from one
 * thread-pointer offset. */
typedef struct mlt__tls_ref {
  mlt__tls *ptr;
  uint32_t epoch;
} mlt__tls_ref;
extern MLT_TLS mlt__tls_ref mlt__tls_here MLT__HIDDEN;
#define mlt__tls_ptr (mlt__tls_here.ptr)
#define mlt__tls_epoch (mlt__tls_here.epoch)
static inline mlt__tls *mlt__tls_get(void) {
  if (MLT_LIKELY(mlt__tls_epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed))) return mlt__tls_ptr;
  return mlt__tls_get_slow();
}
void mlt__tls_sum_counters(mlt__tls_counters *out);
/* The newest last-finished trace over all threads (1 when there is one). */
int mlt__tls_last_trace(uint64_t *hi, uint64_t *lo);
void mlt__tls_last_reset(void);
void mlt__tls_shutdown(void);

/* ---- span log (span-record.c; inline writers in record-internal.h) ---- */
/* Reserve |size| contiguous bytes at the end of the span's log (owner only);
 * returns NULL on allocation failure.  Publish with mlt__log_publish(). */
char *mlt__log_reserve_c(mlt__score *s, size_t size);
void mlt__log_publish_c(mlt__score *s, size_t size);
#define mlt__log_reserve(s, size) mlt__log_reserve_c(MLT__SC(s), (size))
#define mlt__log_publish(s, size) mlt__log_publish_c(MLT__SC(s), (size))
/* Copy the published log of |src| into |dst| (a fresh slot). */
int mlt__log_copy(mlt__span *dst, mlt__span *src);
/* Append helpers (span-record.c) used by the span files and view.c. */
int mlt__append_value_c(mlt__score *s, int kind, int sub, const char *key, size_t key_len, const char *val,
                        size_t val_len, int aux);
#define mlt__append_value(s, ...) mlt__append_value_c(MLT__SC(s), __VA_ARGS__)
int mlt__append_event(mlt__span *s, const char *name, int64_t ts, const mlt_attr *attrs, size_t n);
/* A LINK record (trace hi, lo, span id, count) with |n| FIELD children. */
int mlt__append_link(mlt__span *s, uint64_t hi, uint64_t lo, uint64_t span_id, const mlt_attr *attrs, size_t n);
void mlt__span_init(mlt__span *s, mlt__trace *t, uint64_t span_id, uint64_t parent_id, const char *name,
                    mlt_span_type type, int64_t start_ns);

/* ---- traces (trace.c) ---- */
/* A clean header from this thread's cache or the pool (NULL: out of
 * memory); the caller sets refs (2), open (1), n_spans and the ids. */
mlt__trace *mlt__trace_pool_get(mlt__tls *tls);
static inline void mlt__trace_ref(mlt__trace *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }
void mlt__trace_unref(mlt__trace *t);
/* Ref the trace of span |s| (handle generation |gen|) if both still live.
 * The header is type-stable: its count is tested even if it is being
 * recycled, and the span is checked again once the reference is held. */
static inline mlt__trace *mlt__trace_acquire_from_span(mlt__span *s, uint32_t gen) {
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_acquire);
  if (!t) return NULL;
  int32_t r = atomic_load_explicit(&t->refs, memory_order_relaxed);
  do {
    if (r <= 0) return NULL;
  } while (!atomic_compare_exchange_weak(&t->refs, &r, r + 1));
  uint64_t gs = atomic_load(&s->gs);
  if (MLT_UNLIKELY(MLT__GS_GEN(gs) != gen || MLT__GS_STATE(gs) == MLT__S_FREE || atomic_load(&s->trace) != t)) {
    mlt__trace_unref(t);
    return NULL;
  }
  return t;
}
/* mlt__trace_acquire_from_span() for a span seen OPEN under handle |h|:
 * after the reference is taken, the span must still be open under |h| (its
 * gs word is the handle), and an open span's trace pointer does not change
 * (NULL: it ended or moved on; the caller's general path decides). */
static inline mlt__trace *mlt__trace_acquire_open(mlt__span *s, mlt_span h) {
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_acquire);
  if (MLT_UNLIKELY(!t)) return NULL;
  int32_t r = atomic_load_explicit(&t->refs, memory_order_relaxed);
  do {
    if (r <= 0) return NULL;
  } while (!atomic_compare_exchange_weak(&t->refs, &r, r + 1));
  if (MLT_UNLIKELY(atomic_load(&s->gs) != h.id_)) {
    mlt__trace_unref(t);
    return NULL;
  }
  return t;
}
/* Try to add one to the open counter (joining a span or a hold). */
int mlt__trace_join(mlt__trace *t);
/* Join |t| with a new span: count it in n_spans, then the open counter
 * (a forced finish waits until every span it counts is in the trace's
 * lists).  The spans counted before it (>= 0), or -1 when the trace has
 * finished (nothing counted).  A joined span that is not pushed after all
 * takes itself out with mlt__trace_unjoin_span(). */
static inline int64_t mlt__trace_join_span(mlt__trace *t) {
  /* Sequentially consistent, against the forced finish's bias of the open
   * counter and its read of n_spans: a span that joined is counted. */
  uint32_t n = atomic_fetch_add(&t->n_spans, 1);
  if (MLT_LIKELY(mlt__trace_join(t))) return n;
  atomic_fetch_sub(&t->n_spans, 1);
  return -1;
}
void mlt__trace_unjoin_span(mlt__trace *t);
/* Drop one from the open counter; finishes the trace at zero (|now|: the
 * finish time when the caller has read the clock, else 0). */
void mlt__trace_leave(mlt__trace *t);
void mlt__trace_finish(mlt__trace *t, int64_t now);
void mlt__trace_leave_slow(mlt__trace *t, int32_t o, int64_t now);
static inline void mlt__trace_leave_at(mlt__trace *t, int64_t now) {
  int32_t o = atomic_fetch_sub_explicit(&t->open, 1, memory_order_acq_rel);
  if (o == 1)
    mlt__trace_finish(t, now);
  else if (MLT_UNLIKELY(o == 1 - MLT__OPEN_BIAS))
    mlt__trace_leave_slow(t, o, now);
}
/* Force-finish: end open spans with ERROR and |message|, queue the trace.
 * Returns 1 if this call finished it. */
int mlt__trace_force_finish(mlt__trace *t, int reason, const char *message);
/* The same, ending the open spans at |end_ns| (or at their start when later;
 * 0: now): mlt_client_end_trace_at(). */
int mlt__trace_force_finish_at(mlt__trace *t, int reason, const char *message, int64_t end_ns);
void mlt__trace_push_span(mlt__trace *t, mlt__span *s);
/* Force-finish the traces in progress that timed out, or (when |all| is
 * set) every one still in progress. */
void mlt__traces_reap(int64_t now_mono_ns, int all);
void mlt__traces_shutdown(void);
/* Give a thread's cached trace headers back to the pool. */
void mlt__traces_put_cache(mlt__trace *list, uint32_t n);
/* Remember |t| as this thread's last finished trace (|stamp|: finish time,
 * 0 reads the clock). */
void mlt__trace_set_last(const mlt__trace *t, int64_t stamp);
/* Registry (client API by id). */
int mlt__registry_put(uint64_t hi, uint64_t lo, uint64_t span_id, mlt_span h);
int mlt__registry_get(uint64_t hi, uint64_t lo, uint64_t span_id, mlt_span *out);
void mlt__registry_del(uint64_t hi, uint64_t lo, uint64_t span_id);
void mlt__registry_shutdown(void);
/* Record trace-level data; |t| referenced by the caller. */
int mlt__trace_update(mlt__trace *t, const mlt_trace_update *u);

/* ---- span start (span.c) ---- */
/* Everything a span start can be told; zero-initialize and set what
 * applies.  One internal start function takes it, so that new start
 * options (explicit start time, links, ...) extend this struct. */
typedef struct mlt__start_opts {
  const struct mlt_context *parent_ctx; /* parent context, or NULL */
  mlt__span *parent_span;               /* parent span (trace already referenced by the caller), or NULL */
  const char *name;                     /* NULL: "span" */
  size_t name_len;                      /* MLT_NTS: NUL-terminated */
  const char *func;                     /* function scope: mlflow.spanFunctionName, or NULL */
  size_t func_len;
  mlt_span_type type;
  unsigned flags;   /* MLT__SO_* */
  int64_t start_ns; /* start time (ns since the epoch, realtime); 0: now */
  uint64_t sample_threshold; /* with MLT__SO_SAMPLE: a new trace's sampling threshold (see mlt__config) */
} mlt__start_opts;
#define MLT__SO_CURRENT 0x01   /* becomes this thread's current span */
#define MLT__SO_FUNC_NAME 0x02 /* |func| is also the name (one record for both) */
#define MLT__SO_SAMPLE 0x04    /* sample_threshold overrides the configured one (a new trace only) */
mlt_span mlt__span_start_opts(mlt__tls *tls, const mlt__start_opts *o);
/* A start as the public functions do it (enabled check, this thread's
 * state, non-recording runs, the scoped context), per |mode|: HERE under
 * this thread's current span or attached context, made current (as
 * mlt_span_start()); IN under |parent_ctx| (as mlt_span_start_in()); CHILD
 * under span |parent| (as mlt_span_start_child()).  |o| gives the name, type,
 * function name, start time and sampling; its parent fields are set here. */
enum { MLT__SM_HERE = 0, MLT__SM_IN = 1, MLT__SM_CHILD = 2 };
mlt_span mlt__span_start_ex(int mode, const struct mlt_context *parent_ctx, mlt_span parent, mlt__start_opts *o);
/* End open span |h| at |end_ns| (explicit end time; clamped to the start:
 * MLT_ERANGE then, the span ended all the same). */
int mlt__span_end_at(mlt_span h, int64_t end_ns);

/* ---- spans (span.c) ---- */
/* Client API (client.c): start a span named |name| under |parent| (or a
 * new trace) and fill the ids and handle of |out|; MLT_OK,
 * MLT_ENOTRECORDING (disabled, sampled out, no slot), MLT_ENOMEM (the ids
 * of a span in a foreign trace not registered for lookups). */
int mlt__span_client_start(const char *name, mlt_span_type type, mlt__span *parent, mlt_client_span *out);
/* mlt_client_start_trace() itself: the common root start (no inputs, no
 * scoped context, a name that fits the slot) with the ids formatted in the
 * same frame; anything else goes to mlt__client_start_trace_general()
 * (client.c). */
int mlt__span_client_start_trace(const char *name, mlt_span_type type, const char *inputs_json,
                                 mlt_client_span *out);
int mlt__client_start_trace_general(const char *name, mlt_span_type type, const char *inputs_json,
                                    mlt_client_span *out);
/* The same with |x|'s start time and sampling (lib/core/spanopts.c). */
int mlt__span_client_start_with(const char *name, mlt_span_type type, mlt__span *parent, mlt_client_span *out,
                                const mlt__start_opts *x);
int mlt__span_client_inputs(mlt_span h, const char *inputs_json);
int mlt__span_client_finish(mlt_span h, const char *outputs_json, mlt_span_status status, const char *message);
/* The same at |end_ns| (explicit end time; 0: now; clamped to the start:
 * MLT_ERANGE then). */
int mlt__span_client_finish_at(mlt_span h, const char *outputs_json, mlt_span_status status, const char *message,
                               int64_t end_ns);
/* mlt_client_end_trace()'s common case (no outputs, no message, status not
 * ERROR, end time now) in one pass: the root's slot from the trace id, the
 * trace referenced and checked as client.c's find_root() does (ids, root,
 * active), the root ended, spans still open force-ended.  MLT__CLIENT_SLOW
 * (having changed nothing) when the general path must answer: a foreign id,
 * the root not open, the trace not active. */
#define MLT__CLIENT_SLOW 1
int mlt__span_client_end_root(uint64_t hi, uint64_t lo, mlt_span_status status);
/* mlt_client_end_trace() itself: the case above for the id this thread
 * formatted last (mlt__trace_id_memo), with no frame in between; anything
 * else goes to mlt__client_end_trace_general() (client.c: the full checks,
 * parse and lookup). */
int mlt__span_client_end_trace(const char *trace_id, const char *outputs_json, mlt_span_status status,
                               const char *message);
int mlt__client_end_trace_general(const char *trace_id, const char *outputs_json, mlt_span_status status,
                                  const char *message);
void mlt__count_misuse(const char *what, int status);
/* Format the trace id ("tr-...", MLT_TRACE_ID_SIZE) and/or the span id (16
 * hex + NUL) of open or ended span |s| (handle state |gs|) in trace |t|, and
 * make a trace with a foreign id reachable by id.  Returns MLT_OK or
 * MLT_ENOMEM. */
int mlt__span_ids(mlt__span *s, uint64_t gs, mlt__trace *t, char *trace_id, char *span_id);

/* ---- per-thread random numbers and ids (tls.c / util.c) ---- */
/* wyrand on the thread's state: one call per random id. */
static inline uint64_t mlt__tls_rand(mlt__tls *tls) {
  tls->rng += UINT64_C(0xa0761d6478bd642f);
  __uint128_t m = (__uint128_t)tls->rng * (tls->rng ^ UINT64_C(0xe7037ed1a0b428db));
  return (uint64_t)(m >> 64) ^ (uint64_t)m;
}
/* ---- the hand-off of finished traces ---- */
/* Who takes a finished trace, with the reference its open counter held:
 * the export queue (lib/export/pipeline.c, mlt__pipeline_enqueue: drops
 * and counts when full), set by mlt_init() before any span can start.  The
 * core calls it only through this pointer, so it links to nothing of the
 * export layer. */
typedef void (*mlt__trace_sink_fn)(mlt__trace *t);
extern mlt__trace_sink_fn mlt__g_trace_sink MLT__HIDDEN;
/* The moved spans (compact.c) join the end of the list of slots. */
void mlt__trace_splice_moved(mlt__trace *t);
static inline void mlt__trace_handoff(mlt__trace *t) {
  if (t->moved && !t->export_spans) mlt__trace_splice_moved(t);
  mlt__g_trace_sink(t);
}

/* ---- lookups by id (client.c) ---- */
/* The trace (hi, lo) while it is in memory (in progress, or finished and
 * not yet exported), referenced; NULL when unknown. */
mlt__trace *mlt__trace_find(uint64_t hi, uint64_t lo);

/* ---- fork and counters (called by lib/export/pipeline.c) ---- */
/* Each module's state reset in the child of fork(). */
void mlt__slots_atfork_child(void);    /* slots.c */
void mlt__traces_atfork_child(void);   /* trace.c */
void mlt__registry_atfork_child(void); /* trace.c */
void mlt__chunks_atfork_child(void);   /* chunks.c */
void mlt__tls_atfork_child(void);      /* tls.c */
void mlt__tls_reset_counters(void);    /* tls.c: zero the counters of retired threads */
/* Work queue rejections since mlt_init() (thread.c; mlt_stats.work_queue_rejected). */
uint64_t mlt__workq_rejected(void);
void mlt__workq_reset_counters(void);

/* ---- contexts (context.c) ---- */
struct mlt_context *mlt__context_new(mlt__trace *t, uint64_t hi, uint64_t lo, uint64_t span_id, int flags);

#endif /* MLT_SPAN_INTERNAL_H */
