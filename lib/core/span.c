/* lib/core/span.c: the span hot path -- start (every public start, the
 * client API's start and finish, the one internal start_impl()) and end,
 * the thread's current span, and span and trace ids.  It owns the life cycle
 * of a span slot from FREE to ENDED; records are written through the inline
 * writers of record-internal.h.  Nothing here takes a lock shared across
 * traces or makes a system call other than reading the clock.  Core layer:
 * may touch core/ and util/ (slots, traces, per-thread state, scopes);
 * hands finished traces on through mlt__trace_leave() (trace.c) only.
 */
#include "core/record-internal.h"
#include "core/scope-internal.h"
#include "util/hex-internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

_Static_assert(offsetof(mlt__span, inline_log) == offsetof(mlt__span, head) + sizeof(mlt__chunk),
               "inline log must follow its chunk header");
_Static_assert(sizeof(mlt__rec) % MLT__REC_ALIGN == 0, "record header alignment");

/* min(MLT__TINY, max_value_bytes): values up to this take the fast paths
 * (0, the general path, until a thread of this library epoch set it). */
_Atomic size_t mlt__g_tiny_value;

/* ---- span life cycle ------------------------------------------------- */

/* The fields of a fresh span that differ from a clean slot (see
 * mlt__span in span-internal.h; its state is still FREE). */
static MLT_ALWAYS_INLINE void span_init_fields(mlt__span *s, mlt__trace *t, uint64_t span_id, uint64_t parent_id,
                                               mlt_span_type type, int64_t start_ns) {
  s->type = (uint8_t)type;
  s->span_id = span_id;
  s->parent_id = parent_id;
  s->start_ns = start_ns;
  /* release: mlt__moved_find() may read the trace of a slot being reused */
  atomic_store_explicit(&s->trace, t, memory_order_release);
}

/* OPEN, with a release store: the fields and records above are visible to
 * whoever resolves the handle. */
static MLT_ALWAYS_INLINE void span_publish_open(mlt__span *s, uint64_t gs) {
  atomic_store_explicit(&s->gs, MLT__GS_SET(gs, MLT__S_OPEN), memory_order_release);
}

void mlt__span_init(mlt__span *s, mlt__trace *t, uint64_t span_id, uint64_t parent_id, const char *name,
                    mlt_span_type type, int64_t start_ns) {
  span_init_fields(s, t, span_id, parent_id, type, start_ns);
  s->saved_current.id_ = 0;
  if (!name) name = "span";
  append_fast(s, MLT__R_NAME, MLT__V_STR, NULL, 0, name, strlen(name), 0);
  span_publish_open(s, atomic_load_explicit(&s->gs, memory_order_relaxed));
}

static mlt_span nonrec(mlt__tls *tls, int make_current, int limit) {
  if (make_current) {
    if (tls->nonrec_depth++ == 0) tls->nonrec_limit = (uint32_t)limit;
    return (mlt_span){MLT__H_NONREC_CUR};
  }
  return (mlt_span){MLT__H_NONREC_DET};
}

/* The one span start.  A new trace gets a random high half of its id (one
 * random number, which also decides sampling) and, once the root's slot is
 * known, a low half that encodes the root's handle (see mlt__id_from_handle);
 * a span id encodes the span's handle. */
static MLT_ALWAYS_INLINE mlt_span start_impl(mlt__tls *tls, const mlt__start_opts *o) {
  mlt_span_type type = (unsigned)o->type < MLT__SPAN_TYPE_COUNT ? o->type : MLT_SPAN_UNKNOWN;
  int make_current = (o->flags & MLT__SO_CURRENT) != 0;
  mlt__span *parent_span = o->parent_span;
  const struct mlt_context *parent = o->parent_ctx;
  mlt__trace *t = NULL;
  uint64_t hi = 0, lo = 0, parent_id = 0;
  int tflags = 0, new_trace = 0, mint = 0;
  int64_t joined = -1; /* spans of the trace before this one, once it joined */
  if (parent_span) {
    mlt__trace *pt = atomic_load_explicit(&parent_span->trace, memory_order_relaxed);
    parent_id = parent_span->span_id;
    hi = pt->id_hi;
    lo = pt->id_lo;
    if ((joined = mlt__trace_join_span(pt)) >= 0)
      t = pt;
    else
      tflags = MLT__TF_CONTINUATION;
  } else if (parent) {
    if (MLT_UNLIKELY(!(parent->flags & MLT__CF_SAMPLED))) {
      /* A context that only carries a scope (lib/core/scope.c): no parent. */
      if (!(parent->flags & MLT__CF_NOSPAN)) return nonrec(tls, make_current, 0);
    } else {
      parent_id = parent->span_id;
      hi = parent->trace_hi;
      lo = parent->trace_lo;
      if (parent->trace && parent->epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed) &&
          (joined = mlt__trace_join_span(parent->trace)) >= 0)
        t = parent->trace;
      else
        tflags = (parent->flags & MLT__CF_REMOTE) ? MLT__TF_REMOTE : MLT__TF_CONTINUATION;
    }
  }
  if (t) {
    if (MLT_UNLIKELY((uint64_t)joined >= mlt__g_cfg.max_spans_per_trace)) {
      tls->c.spans_over_limit++;
      mlt__trace_unjoin_span(t);
      return nonrec(tls, make_current, 1);
    }
  } else {
    if (!parent_id) {
      hi = mlt__tls_rand(tls);
      /* sampling_ratio_override: a constant-folded test on the hot paths */
      uint64_t threshold = (o->flags & MLT__SO_SAMPLE) ? o->sample_threshold : mlt__g_cfg.sample_threshold;
      if (MLT_UNLIKELY((hi >> 11) >= threshold)) {
        tls->c.traces_sampled_out++;
        return nonrec(tls, make_current, 0);
      }
      mint = 1;
    }
    t = tls->tfree;
    if (MLT_LIKELY(t != NULL)) {
      tls->tfree = t->next_free;
      tls->n_tfree--;
    } else if (MLT_UNLIKELY((t = mlt__trace_pool_get(tls)) == NULL)) {
      return (mlt_span){0};
    }
    atomic_store_explicit(&t->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&t->open, 1, memory_order_relaxed);
    atomic_store_explicit(&t->n_spans, 1, memory_order_relaxed);
    t->id_hi = hi;
    t->id_lo = lo;
    t->flags = (uint8_t)tflags;
    t->remote_parent = parent_id;
    new_trace = 1;
    tls->c.traces_started++;
  }
  if (MLT_UNLIKELY(tls->n_mag == 0) && mlt__slot_refill(tls) != 0) {
    if (new_trace)
      mlt__trace_leave(t);
    else
      mlt__trace_unjoin_span(t);
    return (mlt_span){0};
  }
  mlt__span *s = mlt__slot_at(tls->mag[--tls->n_mag]);
  /* The clock is read only for spans that are recorded. */
  int64_t now = o->start_ns ? o->start_ns : mlt__now_ns();
  uint64_t gs = atomic_load_explicit(&s->gs, memory_order_relaxed);
  mlt_span h = mlt__span_handle(gs);
  uint64_t span_id = mlt__id_from_handle(h.id_);
  if (mint) t->id_lo = mlt__trace_lo_from_span_id(span_id);
  span_init_fields(s, t, span_id, parent_id, type, now);
  const char *name = o->name;
  size_t name_len = o->name_len;
  if (MLT_UNLIKELY(!name)) {
    name = "span";
    name_len = 4;
  } else if (name_len == MLT_NTS) {
    name_len = strlen(name);
  }
  unsigned nflags = (o->flags & MLT__SO_FUNC_NAME) ? MLT__RF_FUNC : 0;
  if (MLT_LIKELY(name_len <= atomic_load_explicit(&mlt__g_tiny_value, memory_order_relaxed))) {
    /* The first record of an empty log: it fits the inline area. */
    char *p = s->inline_log;
    write_rec(p, MLT__R_NAME, MLT__V_STR, nflags, 0, 0, name_len);
    tiny_copy(p + sizeof(mlt__rec), name, name_len);
    atomic_store_explicit(&s->head.used, (uint32_t)mlt__rec_size(0, name_len), memory_order_relaxed);
  } else {
    append_rec(s, MLT__R_NAME, MLT__V_STR, nflags, NULL, 0, name, name_len, 0);
  }
  if (MLT_UNLIKELY(o->func != NULL) && !(o->flags & MLT__SO_FUNC_NAME)) {
    size_t fl = o->func_len == MLT_NTS ? strlen(o->func) : o->func_len;
    append_fast(s, MLT__R_FUNC, MLT__V_STR, NULL, 0, o->func, fl, 0);
  }
  if (new_trace) {
    /* The trace timeout counts from now, also for an explicit start time. */
    t->start_ns = MLT_UNLIKELY(o->start_ns != 0) ? mlt__now_ns() : now;
    t->root = h;
    t->root_id = span_id;
    atomic_store_explicit(&s->is_root, 1, memory_order_relaxed);
    /* nobody else knows the trace yet */
    s->next = NULL;
    atomic_store_explicit(&t->spans, &s->core, memory_order_relaxed);
    span_publish_open(s, gs);
  } else {
    span_publish_open(s, gs);
    mlt__trace_push_span(t, s);
  }
  if (make_current) {
    s->saved_current = tls->cur;
    s->flags |= MLT__SF_CURRENT;
    tls->cur = h;
  }
  tls->c.spans_started++;
  return h;
}

mlt_span mlt__span_start_opts(mlt__tls *tls, const mlt__start_opts *o) { return start_impl(tls, o); }

static int enabled_now(void) { return MLT__ENABLED(); }

/* The span to parent a new span under on this thread, or NULL. */
static mlt__span *current_parent(mlt__tls *tls) {
  mlt_span h = tls->cur;
  for (int depth = 0; h.id_ && depth < 16; depth++) {
    uint64_t gs;
    mlt__span *s = mlt__span_get(h, &gs);
    if (!s) return NULL;
    if (MLT__GS_STATE(gs) == MLT__S_OPEN) return s;
    /* Ended elsewhere without restoring this thread: climb. */
    h = s->saved_current;
  }
  return NULL;
}

/* The common start, kept apart from start_impl()'s generality: a new trace
 * rooted on this thread (no current span, no attached context), a name of
 * at most mlt__g_tiny_value bytes, a trace header and a slot in this
 * thread's caches (the caller checked all that).  The same fields as
 * start_impl() writes for a root; the stores that need no clock come first,
 * so that little is live across the clock read.  A clean slot already has
 * parent 0, no next span and no saved current span (mlt__slot_release()); a
 * clean trace header has flags 0 and no remote parent (trace.c). */
/* |ids|: the client API's output (mlt__span_client_start), filled with the
 * new ids while they are at hand (a trace from the free list has no foreign
 * id), or NULL (a constant in the other callers). */
static MLT_ALWAYS_INLINE mlt_span start_root_ex(mlt__tls *tls, const char *name, size_t name_len, mlt_span_type type,
                                                unsigned nflags, int make_current, mlt_client_span *ids) {
  uint64_t hi = mlt__tls_rand(tls);
  if (MLT_UNLIKELY((hi >> 11) >= mlt__g_cfg.sample_threshold)) {
    tls->c.traces_sampled_out++;
    return nonrec(tls, make_current, 0);
  }
  mlt__trace *t = tls->tfree;
  tls->tfree = t->next_free;
  tls->n_tfree--;
  mlt__span *s = mlt__slot_at(tls->mag[--tls->n_mag]);
  uint64_t gs = atomic_load_explicit(&s->gs, memory_order_relaxed);
  mlt_span h = mlt__span_handle(gs);
  uint64_t span_id = mlt__id_from_handle(h.id_);
  atomic_store_explicit(&t->refs, 1, memory_order_relaxed);
  atomic_store_explicit(&t->open, 1, memory_order_relaxed);
  atomic_store_explicit(&t->n_spans, 1, memory_order_relaxed);
  t->id_hi = hi;
  t->id_lo = mlt__trace_lo_from_span_id(span_id);
  t->root = h;
  t->root_id = span_id;
  atomic_store_explicit(&t->spans, &s->core, memory_order_relaxed);
  s->type = (uint8_t)type;
  s->span_id = span_id;
  atomic_store_explicit(&s->trace, t, memory_order_release); /* (see span_init_fields()) */
  atomic_store_explicit(&s->is_root, 1, memory_order_relaxed);
  if (ids) {
    mlt__format_ids_inline(hi, t->id_lo, span_id, ids->trace_id, ids->span_id);
    mlt__g_id_memo.root = h.id_; /* end_trace of this id needs not map it back */
  }
  if (make_current) s->flags = MLT__SF_TEXT_ONLY | MLT__SF_CURRENT; /* a clean slot's flags, made current */
  /* The name: the first record of an empty log, in the inline area. */
  char *p = s->inline_log;
  write_rec(p, MLT__R_NAME, MLT__V_STR, nflags, 0, 0, name_len);
  tiny_copy(p + sizeof(mlt__rec), name, name_len);
  atomic_store_explicit(&s->head.used, (uint32_t)mlt__rec_size(0, name_len), memory_order_relaxed);
  tls->c.traces_started++;
  tls->c.spans_started++;
  if (make_current) tls->cur = h;
  int64_t now = mlt__now_ns();
  s->start_ns = now;
  t->start_ns = now;
  span_publish_open(s, gs);
  return h;
}
static MLT_ALWAYS_INLINE mlt_span start_root_here(mlt__tls *tls, const char *name, size_t name_len, mlt_span_type type,
                                                  unsigned nflags) {
  return start_root_ex(tls, name, name_len, type, nflags, 1, NULL);
}

/* Start a span current on this thread, under its current span (or the
 * attached context). */
static MLT_ALWAYS_INLINE mlt_span start_here_ex(const char *name, size_t name_len, mlt_span_type type, const char *func,
                                                size_t func_len, unsigned flags, int check_enabled) {
  if (check_enabled && MLT_UNLIKELY(!enabled_now())) return (mlt_span){0};
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return (mlt_span){0};
  if (MLT_UNLIKELY(tls->scope != NULL)) { /* a scoped context is in effect (lib/core/scope.c) */
    mlt__start_opts x = {NULL, NULL, name, name_len, func, func_len, type, flags};
    return mlt__span_start_ex(MLT__SM_HERE, NULL, (mlt_span){0}, &x);
  }
  if (MLT_UNLIKELY(tls->nonrec_depth)) {
    tls->nonrec_depth++;
    if (tls->nonrec_limit) tls->c.spans_over_limit++;
    return (mlt_span){MLT__H_NONREC_CUR};
  }
  if (MLT_LIKELY(!tls->cur.id_ && !tls->attached) && (!func || (flags & MLT__SO_FUNC_NAME)) && MLT_LIKELY(name != NULL)) {
    if (MLT_UNLIKELY(name_len == MLT_NTS)) name_len = strlen(name);
    if (MLT_LIKELY(tls->tfree != NULL && tls->n_mag != 0 &&
                   name_len <= atomic_load_explicit(&mlt__g_tiny_value, memory_order_relaxed)))
      return start_root_here(tls, name, name_len, (unsigned)type < MLT__SPAN_TYPE_COUNT ? type : MLT_SPAN_UNKNOWN,
                             (flags & MLT__SO_FUNC_NAME) ? MLT__RF_FUNC : 0);
  }
  mlt__span *p = tls->cur.id_ ? current_parent(tls) : NULL;
  mlt__start_opts o = {p ? NULL : tls->attached, p, name, name_len, func, func_len, type, flags | MLT__SO_CURRENT};
  return start_impl(tls, &o);
}

static MLT_ALWAYS_INLINE mlt_span start_here(const char *name, size_t name_len, mlt_span_type type, const char *func,
                                             size_t func_len, unsigned flags) {
  return start_here_ex(name, name_len, type, func, func_len, flags, 1);
}

mlt_span mlt_span_start(const char *name, mlt_span_type type) { return start_here(name, MLT_NTS, type, NULL, 0, 0); }

/* Called only by mlt_span_start()'s inline fast path (<mltrace/span.h>),
 * which has just tested the runtime switch. */
mlt_span mlt__span_start_n(const char *name, size_t name_len, mlt_span_type type) {
  return start_here_ex(name, name_len, type, NULL, 0, 0, 0);
}

mlt_span mlt__span_start_fn(const char *func, size_t func_len, const char *name, size_t name_len,
                            mlt_span_type type) {
  if (!func) return start_here(name, name_len, type, NULL, 0, 0);
  if (func_len == MLT_NTS) func_len = strlen(func);
  if (!name) return start_here(func, func_len, type, func, func_len, MLT__SO_FUNC_NAME);
  return start_here(name, name_len, type, func, func_len, 0);
}

mlt_span mlt__span_start_function(const char *func, const char *name, mlt_span_type type) {
  return mlt__span_start_fn(func, MLT_NTS, name, MLT_NTS, type);
}

static MLT_ALWAYS_INLINE mlt_span start_in(const mlt_context *parent, const char *name, size_t name_len,
                                           mlt_span_type type) {
  if (MLT_UNLIKELY(!enabled_now())) return (mlt_span){0};
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return (mlt_span){0};
  if (MLT_UNLIKELY(tls->scope != NULL)) { /* a scoped context is in effect (lib/core/scope.c) */
    mlt__start_opts x = {parent, NULL, name, name_len, NULL, 0, type, 0};
    return mlt__span_start_ex(MLT__SM_IN, parent, (mlt_span){0}, &x);
  }
  mlt__start_opts o = {parent, NULL, name, name_len, NULL, 0, type, 0};
  return start_impl(tls, &o);
}

mlt_span mlt_span_start_in(const mlt_context *parent, const char *name, mlt_span_type type) {
  return start_in(parent, name, MLT_NTS, type);
}

mlt_span mlt__span_start_in_n(const mlt_context *parent, const char *name, size_t name_len, mlt_span_type type) {
  return start_in(parent, name, name_len, type);
}

/* The start of mlt_span_start_child(): under span |parent| per |o|. */
static mlt_span start_child(mlt__tls *tls, mlt_span parent, mlt__start_opts *o);

mlt_span mlt_span_start_child(mlt_span parent, const char *name, mlt_span_type type) {
  if (MLT_UNLIKELY(!enabled_now())) return (mlt_span){0};
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return (mlt_span){0};
  mlt__start_opts o = {NULL, NULL, name, MLT_NTS, NULL, 0, type, 0};
  if (MLT_UNLIKELY(tls->scope != NULL)) return mlt__span_start_ex(MLT__SM_CHILD, NULL, parent, &o);
  return start_child(tls, parent, &o);
}

static mlt_span start_child(mlt__tls *tls, mlt_span parent, mlt__start_opts *opts) {
  mlt__start_opts o = *opts;
  if (mlt__h_is_nonrec(parent)) return nonrec(tls, 0, 0);
  uint64_t gs;
  mlt__span *p = mlt__span_get(parent, &gs);
  if (!p) {
    struct mlt_context pc;
    mlt__trace *mt;
    if (mlt__moved_context(parent, &pc, &mt)) { /* an ended parent, moved out of its slot */
      o.parent_ctx = &pc;
      mlt_span h = mlt__span_start_opts(tls, &o);
      mlt__trace_unref(mt);
      return h;
    }
    if (parent.id_) mlt__count_misuse("mlt_span_start_child: parent handle", MLT_ESTALE);
    return mlt__span_start_opts(tls, &o);
  }
  /* Keep the parent's trace alive while joining (the parent may have ended
   * on another thread). */
  mlt__trace *t = mlt__trace_acquire_from_span(p, MLT__GS_GEN(gs));
  if (!t) return mlt__span_start_opts(tls, &o);
  o.parent_span = p;
  mlt_span h = mlt__span_start_opts(tls, &o);
  mlt__trace_unref(t);
  return h;
}

/* The general start (the scoped context, start options): see
 * span-internal.h.  Not a hot path: a thread with no scope in effect never
 * comes here from the plain starts. */
mlt_span mlt__span_start_ex(int mode, const mlt_context *parent_ctx, mlt_span parent, mlt__start_opts *o) {
  if (MLT_UNLIKELY(!enabled_now())) return (mlt_span){0};
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return (mlt_span){0};
  mlt__scope *sc = tls->scope;
  if (sc && mlt__scope_off(sc)) return (mlt_span){0}; /* context(enabled=False): a NoOpSpan */
  mlt_span h;
  o->parent_ctx = NULL;
  o->parent_span = NULL;
  if (mode == MLT__SM_HERE) {
    if (tls->nonrec_depth) {
      tls->nonrec_depth++;
      if (tls->nonrec_limit) tls->c.spans_over_limit++;
      return (mlt_span){MLT__H_NONREC_CUR};
    }
    mlt__span *p = tls->cur.id_ ? current_parent(tls) : NULL;
    o->parent_span = p;
    o->parent_ctx = p ? NULL : tls->attached;
    o->flags |= MLT__SO_CURRENT;
    h = mlt__span_start_opts(tls, o);
  } else if (mode == MLT__SM_IN) {
    o->parent_ctx = parent_ctx;
    h = mlt__span_start_opts(tls, o);
  } else {
    h = start_child(tls, parent, o);
  }
  if (sc) mlt__scope_started(sc, h);
  return h;
}

int mlt_span_make_current(mlt_span h) {
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) return mlt__h_moved(h) ? MLT_EENDED : h.id_ && !mlt__h_is_nonrec(h) ? MLT_ESTALE : MLT_ENOTRECORDING;
  if (MLT__GS_STATE(gs) != MLT__S_OPEN) return MLT_EENDED;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return MLT_ENOMEM;
  if (tls->cur.id_ == h.id_) return MLT_OK;
  s->saved_current = tls->cur;
  s->flags |= MLT__SF_CURRENT;
  tls->cur = h;
  return MLT_OK;
}

mlt_span mlt_current_span(void) {
  if (!mlt__running()) return (mlt_span){0};
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return (mlt_span){0};
  if (tls->nonrec_depth) return (mlt_span){MLT__H_NONREC_CUR};
  mlt__span *s = tls->cur.id_ ? current_parent(tls) : NULL;
  if (!s) return (mlt_span){0};
  return mlt__span_handle(atomic_load_explicit(&s->gs, memory_order_relaxed));
}

/* The output reducer over the span's chunks, at its end (outputs not set
 * explicitly).  The chunks themselves are recorded by span-stream.c. */
static int run_reducer(mlt__span *s) {
  /* the reducer: the log's last MLT__R_REDUCER record (span-stream.c) */
  mlt_output_reducer_fn fn = NULL;
  void *fn_ud = NULL;
  mlt__log_iter it;
  mlt__log_iter_init(&it, s);
  const mlt__rec *r, *ref = NULL;
  while ((r = mlt__log_iter_next(&it)) != NULL)
    if (r->kind == MLT__R_REDUCER && r->val_len == sizeof fn + sizeof fn_ud) {
      memcpy(&fn, mlt__rec_val(r), sizeof fn);
      memcpy(&fn_ud, mlt__rec_val(r) + sizeof fn, sizeof fn_ud);
    }
  if (!fn) return MLT_OK;
  size_t n = s->n_chunks, i = 0;
  const char **ptrs = malloc(n * sizeof *ptrs);
  size_t *lens = malloc(n * sizeof *lens);
  char **owned = calloc(n, sizeof *owned);
  int rc = MLT_ENOMEM;
  if (!ptrs || !lens || !owned) goto out;
  mlt__log_iter_init(&it, s);
  while ((r = mlt__log_iter_next(&it)) != NULL && i < n) {
    if (r->kind != MLT__R_CHUNK) continue;
    const char *v = mlt__rec_val(r);
    size_t len = r->val_len;
    char *rebuilt = NULL;
    if (r->flags & MLT__RF_DELTA) {
      /* delta-encoded: rebuild the text (core/trace-view.h) */
      len = mlt__delta_len(r, ref);
      rebuilt = malloc(len ? len : 1);
      if (!rebuilt) goto out;
      mlt__delta_rebuild(rebuilt, r, ref);
      v = rebuilt;
    } else if (r->flags & MLT__RF_TRUNC) {
      v += 8;
      len -= 8;
    }
    mlt__chunk_ref_see(&ref, r);
    if (r->sub == MLT__V_STR) {
      /* Text chunk: hand it over as a JSON string. */
      char *tmp = mlt__strndup(v, len);
      cJSON *js = tmp ? cJSON_CreateString(tmp) : NULL;
      owned[i] = js ? cJSON_PrintUnformatted(js) : NULL;
      cJSON_Delete(js);
      free(tmp);
      ptrs[i] = owned[i] ? owned[i] : "\"\"";
      lens[i] = strlen(ptrs[i]);
      free(rebuilt);
    } else {
      ptrs[i] = v;
      lens[i] = len;
      owned[i] = rebuilt; /* (freed with the others) */
    }
    i++;
  }
  size_t out_len = 0;
  char *out = fn(ptrs, lens, i, &out_len, fn_ud);
  rc = MLT_OK;
  if (out) {
    rc = mlt__append_value(s, MLT__R_OUTPUTS, MLT__V_JSON, NULL, 0, out, out_len, 0);
    s->flags |= MLT__SF_OUTPUTS;
    free(out);
  }
out:
  if (owned)
    for (size_t k = 0; k < n; k++) free(owned[k]);
  free(owned);
  free(ptrs);
  free(lens);
  return rc;
}

/* End a span that is not (or no longer) plain OPEN: not recording, stale,
 * already ended, or expired by a forced finish. */
static MLT_NOINLINE int end_slow(mlt_span h, mlt__span *s, uint64_t gs) {
  if (!s) {
    if (h.id_ == MLT__H_NONREC_CUR) {
      if (mlt__tls_epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed) && mlt__tls_ptr &&
          mlt__tls_ptr->nonrec_depth)
        mlt__tls_ptr->nonrec_depth--;
      return MLT_ENOTRECORDING;
    }
    if (h.id_ == 0 || h.id_ == MLT__H_NONREC_DET) return MLT_ENOTRECORDING;
    if (mlt__h_moved(h)) return mlt__span_report("mlt_span_end (already ended)", MLT_EENDED);
    return mlt__span_report("mlt_span_end", MLT_ESTALE);
  }
  if (MLT__GS_STATE(gs) != MLT__S_EXPIRED) return mlt__span_report("mlt_span_end (already ended)", MLT_EENDED);
  /* The trace timeout (or a forced finish) already ended and exported this
   * span; it is ours to free now. */
  mlt__trace *te = atomic_load_explicit(&s->trace, memory_order_relaxed);
  if (s->flags & MLT__SF_CURRENT && mlt__tls_epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed)) {
    mlt__tls *tls = mlt__tls_ptr;
    if (tls && tls->cur.id_ == h.id_) tls->cur = s->saved_current;
  }
  /* The forced finish walks the trace's slots under its lock and reads this
   * one's link after expiring it: free the slot once the walk is over. */
  if (te) {
    mlt__spin_lock(&te->lock);
    mlt__spin_unlock(&te->lock);
  }
  mlt__slot_release(s, mlt__tls_get());
  if (te) mlt__trace_leave(te);
  return MLT_EENDED;
}

static MLT_NOINLINE int end_slow_get(mlt_span h) {
  uint64_t gs = 0;
  mlt__span *s = mlt__span_get(h, &gs);
  return end_slow(h, s, gs);
}

/* The open counter's drop and, at zero, the trace's finish.  The common
 * finish (this thread's state at hand, a clock value, a trace started here)
 * is inline and ends in the hand-off; anything else takes
 * mlt__trace_finish() / mlt__trace_leave_slow(). */
static MLT_ALWAYS_INLINE void end_leave(mlt__trace *t, int64_t now, mlt__tls *tls) {
  int32_t o = atomic_fetch_sub_explicit(&t->open, 1, memory_order_acq_rel);
  if (MLT_LIKELY(o == 1)) {
    if (MLT_LIKELY(tls != NULL && now > 0 && !(t->flags & MLT__TF_CONTINUATION)))
      trace_finish_inline(t, now, tls); /* the last span out */
    else
      mlt__trace_finish(t, now);
  } else if (MLT_UNLIKELY(o == 1 - MLT__OPEN_BIAS)) {
    mlt__trace_leave_slow(t, o, now);
  }
}

/* Span |s| (gs word |gs|) ended while a forced finish (timeout, shutdown,
 * end_trace) of its trace was under way.  The forced finish walks the
 * trace's slots under the trace's lock, after every span that joined the
 * trace is in them, and claims each ENDED one for the export: before its
 * walk, ours is left to it.  After the walk (it cannot have missed ours, but
 * should it have) we claim and free it.  Then the trace's counter as usual. */
static MLT_NOINLINE void end_after_forced(mlt__span *s, uint64_t gs, mlt__trace *t, int64_t now, mlt__tls *tls) {
  uint64_t e2 = MLT__GS_SET(gs, MLT__S_ENDED);
  mlt__spin_lock(&t->lock);
  int mine = t->walked && atomic_compare_exchange_strong(&s->gs, &e2, MLT__GS_SET(gs, MLT__S_EXPIRED));
  mlt__spin_unlock(&t->lock);
  if (mine) mlt__slot_release(s, mlt__tls_get());
  end_leave(t, now, tls);
}

static MLT_NOINLINE int end_reduced(mlt_span h, mlt__span *s, int64_t end_ns, int64_t now);

/* The end of a child span (not a root): one that ends while others of its
 * trace are open leaves its slot (compact.c) when the trace has lasted long
 * enough for the slot to matter -- not one still current on a thread that
 * was not restored (that thread climbs through its saved_current).  Then
 * the trace's counter. */
static MLT_NOINLINE void end_child(mlt__span *s, mlt__trace *t, int64_t now, mlt__tls *tls, int restored) {
  if (tls && (now - t->start_ns >= MLT__MOVE_AFTER_NS ||
              atomic_load_explicit(&mlt__g_slots_n, memory_order_relaxed) >= MLT__MOVE_SLOTS) &&
      (restored || !(s->flags & MLT__SF_CURRENT)))
    mlt__span_move(s, t, tls);
  end_leave(t, now, tls);
}

/* The end of a span: one compare-and-swap (a forced finish may race), the
 * thread's current span restored, the trace's open counter dropped.  The
 * status stays UNSET when none was set: readers take UNSET as OK once the
 * span ended.
 * End open span |s| (handle |h|) at |end_ns|; |now|: the clock (the
 * trace's finish time; the same value unless an end time was given).  The
 * rare cases (an output reducer to run, a forced finish under way) leave
 * through out-of-line functions, so that few values stay live across calls. */
static MLT_ALWAYS_INLINE int end_open_ex(mlt_span h, mlt__span *s, int64_t end_ns, int64_t now, int reduce) {
  uint64_t gs = h.id_; /* the gs word of the open span */
  if (reduce && MLT_UNLIKELY((s->flags & (MLT__SF_REDUCER | MLT__SF_OUTPUTS)) == MLT__SF_REDUCER) && s->n_chunks)
    return end_reduced(h, s, end_ns, now);
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_relaxed);
  s->end_ns = end_ns;
  uint64_t expect = gs;
  if (MLT_UNLIKELY(!atomic_compare_exchange_strong_explicit(&s->gs, &expect, MLT__GS_SET(gs, MLT__S_ENDED),
                                                            memory_order_acq_rel, memory_order_acquire)))
    return MLT__GS_STATE(expect) == MLT__S_EXPIRED ? end_slow(h, s, expect) : MLT_EENDED;
  /* This thread's state, when it is of this library epoch (else NULL). */
  mlt__tls *tls = mlt__tls_epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed) ? mlt__tls_ptr : NULL;
  int restored = 0;
  if ((s->flags & MLT__SF_CURRENT) && tls && tls->cur.id_ == h.id_) {
    tls->cur = s->saved_current;
    restored = 1;
  }
  if (MLT_UNLIKELY(atomic_load_explicit(&t->state, memory_order_acquire) != MLT__T_ACTIVE))
    end_after_forced(s, gs, t, now, tls);
  else if (MLT_UNLIKELY(!atomic_load_explicit(&s->is_root, memory_order_relaxed)))
    end_child(s, t, now, tls, restored);
  else
    end_leave(t, now, tls);
  return MLT_OK;
}

static MLT_NOINLINE int end_reduced(mlt_span h, mlt__span *s, int64_t end_ns, int64_t now) {
  run_reducer(s);
  return end_open_ex(h, s, end_ns, now, 0);
}

static MLT_ALWAYS_INLINE int end_open(mlt_span h, mlt__span *s, int64_t end_ns, int64_t now) {
  return end_open_ex(h, s, end_ns, now, 1);
}

static MLT_ALWAYS_INLINE int end_impl(mlt_span h) {
  if (MLT_UNLIKELY(h.id_ >= MLT__H_NONREC_DET)) return end_slow_get(h);
  /* The clock first: fewer values live across the call. */
  int64_t now = mlt__now_ns();
  mlt__span *s;
  if (MLT_UNLIKELY(!mlt__span_open_try(h, &s))) return end_slow_get(h);
  return end_open(h, s, now, now);
}

int mlt_span_end(mlt_span h) { return end_impl(h); }

int mlt__span_end_at(mlt_span h, int64_t end_ns) {
  if (end_ns < 0) return MLT_EINVAL;
  if (end_ns == 0) return end_impl(h);
  if (MLT_UNLIKELY(h.id_ >= MLT__H_NONREC_DET)) return end_slow_get(h);
  int64_t now = mlt__now_ns();
  mlt__span *s = mlt__span_open_fast(h);
  if (MLT_UNLIKELY(!s)) return end_slow_get(h);
  int clamped = end_ns < s->start_ns;
  int rc = end_open(h, s, clamped ? s->start_ns : end_ns, now);
  if (clamped && rc == MLT_OK) {
    mlt__note_clamped("mlt_span_end_at");
    return MLT_ERANGE;
  }
  return rc;
}

/* ---- ids ------------------------------------------------------------- */

/* The ids of spans and of traces started here map back to their slots (see
 * mlt__id_from_handle), so a lookup by id needs no registry.  A trace whose
 * id came from elsewhere (a remote parent, or a continuation of a finished
 * trace) is entered in the registry once its id is handed out. */
static int register_foreign(mlt__trace *t) {
  if (!(t->flags & (MLT__TF_CONTINUATION | MLT__TF_REMOTE))) return MLT_OK;
  if (atomic_load_explicit(&t->registered, memory_order_relaxed) || atomic_exchange(&t->registered, 1)) return MLT_OK;
  return mlt__registry_put(t->id_hi, t->id_lo, 0, t->root) != 0 ? MLT_ENOMEM : MLT_OK;
}

int mlt__span_ids(mlt__span *s, uint64_t gs, mlt__trace *t, char *trace_id, char *span_id) {
  if (trace_id && span_id) {
    mlt__format_ids(t->id_hi, t->id_lo, s->span_id, trace_id, span_id);
  } else if (trace_id) {
    mlt__format_trace_id(t->id_hi, t->id_lo, trace_id);
  } else if (span_id) {
    mlt__hex64(s->span_id, span_id);
    span_id[16] = '\0';
  }
  if (MLT__GS_STATE(gs) == MLT__S_OPEN && atomic_load_explicit(&t->state, memory_order_acquire) == MLT__T_ACTIVE)
    return register_foreign(t);
  return MLT_OK;
}

int mlt_span_get_trace_id(mlt_span h, char *buf, size_t size) {
  if (!buf) return MLT_EINVAL;
  if (size < MLT_TRACE_ID_SIZE) return MLT_ERANGE;
  buf[0] = '\0';
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  mlt__trace *t = s ? mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs)) : NULL;
  if (!t) {
    if (h.id_ && !mlt__h_is_nonrec(h) && mlt__moved_find(h, &t, NULL)) {
      mlt__format_trace_id(t->id_hi, t->id_lo, buf);
      mlt__trace_unref(t);
      return MLT_OK;
    }
    return h.id_ && !mlt__h_is_nonrec(h) ? MLT_ESTALE : MLT_ENOTRECORDING;
  }
  int rc = mlt__span_ids(s, gs, t, buf, NULL);
  mlt__trace_unref(t);
  return rc;
}

int mlt_span_get_span_id(mlt_span h, char *buf, size_t size) {
  if (!buf) return MLT_EINVAL;
  if (size < MLT_SPAN_ID_SIZE) return MLT_ERANGE;
  buf[0] = '\0';
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) {
    if (h.id_ && !mlt__h_is_nonrec(h) && mlt__moved_find(h, NULL, NULL)) {
      mlt__hex64(mlt__id_from_handle(h.id_), buf);
      buf[16] = '\0';
      return MLT_OK;
    }
    return h.id_ && !mlt__h_is_nonrec(h) ? MLT_ESTALE : MLT_ENOTRECORDING;
  }
  /* The id from the handle, not the slot: an ended span's slot may be
   * taken by another span meanwhile (compact.c). */
  mlt__hex64(mlt__id_from_handle(h.id_), buf);
  buf[16] = '\0';
  if (MLT__GS_STATE(gs) != MLT__S_OPEN) return MLT_OK;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return MLT_OK;
  int rc = mlt__span_ids(s, gs, t, NULL, NULL);
  mlt__trace_unref(t);
  return rc;
}

static MLT_NOINLINE int status_moved(mlt_span h) {
  uint8_t st;
  if (h.id_ && !mlt__h_is_nonrec(h) && mlt__moved_find(h, NULL, &st))
    return st == MLT_STATUS_UNSET ? MLT_STATUS_OK : st;
  return h.id_ && !mlt__h_is_nonrec(h) ? (mlt__running() ? MLT_ESTALE : MLT_ENOTINIT) : MLT_ENOTRECORDING;
}

int mlt_span_get_status(mlt_span h) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) return status_moved(h);
  /* An ended span's slot may be freed by the export thread meanwhile: read
   * the status, then check the slot still holds this span (else stale). */
  uint8_t st = __atomic_load_n(&s->status, __ATOMIC_RELAXED);
  atomic_thread_fence(memory_order_acquire);
  if (MLT_UNLIKELY(atomic_load_explicit(&s->gs, memory_order_relaxed) != gs)) return status_moved(h);
  /* UNSET becomes OK when the span ends (left to the readers). */
  if (st == MLT_STATUS_UNSET && MLT__GS_STATE(gs) != MLT__S_OPEN) return MLT_STATUS_OK;
  return st;
}

int mlt_span_is_recording(mlt_span h) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  return s && MLT__GS_STATE(gs) == MLT__S_OPEN;
}

/* ---- client API helpers (client.c) ----------------------------------- */

/* |end_ns|: 0 for now (a constant in mlt__span_client_finish()). */
static MLT_ALWAYS_INLINE int client_finish(mlt_span h, const char *outputs_json, mlt_span_status status,
                                           const char *message, int64_t end_ns) {
  int64_t now = mlt__now_ns();
  mlt__span *s = mlt__span_open_fast(h);
  if (MLT_UNLIKELY(!s)) {
    uint64_t gs;
    return mlt__span_get(h, &gs) || mlt__h_moved(h) ? MLT_EENDED : MLT_ENOTFOUND;
  }
  int clamped = end_ns && end_ns < s->start_ns;
  if (!end_ns) end_ns = now;
  if (clamped) end_ns = s->start_ns;
  if (outputs_json) set_json(h, MLT__R_OUTPUTS, outputs_json, MLT_NTS, "mlt_client_end_span");
  if (status != MLT_STATUS_UNSET || message) {
    if (!(s->status == MLT_STATUS_ERROR && status != MLT_STATUS_ERROR)) {
      s->status = (uint8_t)status;
      if (status == MLT_STATUS_ERROR) {
        if (!message) message = "";
        mlt__append_value(s, MLT__R_STATUS, MLT__V_STR, NULL, 0, message, strlen(message), (int)status);
      }
    }
  }
  int rc = end_open(h, s, end_ns, now);
  if (clamped && rc == MLT_OK) {
    mlt__note_clamped("mlt_client_end_span_at / mlt_client_end_trace_at");
    return MLT_ERANGE;
  }
  return rc;
}

static MLT_NOINLINE int client_finish_general(mlt_span h, const char *outputs_json, mlt_span_status status,
                                              const char *message) {
  return client_finish(h, outputs_json, status, message, 0);
}

static MLT_NOINLINE int client_not_open(mlt_span h) {
  uint64_t gs;
  return mlt__span_get(h, &gs) || mlt__h_moved(h) ? MLT_EENDED : MLT_ENOTFOUND;
}

/* The common finish (no outputs, no message, status OK or UNSET) is the
 * plain end, with the status kept when it is ERROR already. */
int mlt__span_client_finish(mlt_span h, const char *outputs_json, mlt_span_status status, const char *message) {
  if (MLT_UNLIKELY(outputs_json != NULL || message != NULL || status == MLT_STATUS_ERROR))
    return client_finish_general(h, outputs_json, status, message);
  int64_t now = mlt__now_ns();
  mlt__span *s;
  if (MLT_UNLIKELY(!mlt__span_open_try(h, &s))) return client_not_open(h);
  if (status != MLT_STATUS_UNSET && s->status != MLT_STATUS_ERROR) s->status = (uint8_t)status;
  return end_open(h, s, now, now);
}

int mlt__span_client_finish_at(mlt_span h, const char *outputs_json, mlt_span_status status, const char *message,
                               int64_t end_ns) {
  return client_finish(h, outputs_json, status, message, end_ns);
}

static MLT_ALWAYS_INLINE int client_end_root(uint64_t hi, uint64_t lo, uint64_t root_hint, mlt_span_status status) {
  mlt_span h = {root_hint ? root_hint : mlt__handle_from_id(mlt__span_id_from_trace_lo(lo))};
  int64_t now = mlt__now_ns();
  mlt__span *s;
  if (MLT_UNLIKELY(!mlt__span_open_try(h, &s))) return MLT__CLIENT_SLOW;
  mlt__trace *t = mlt__trace_acquire_open(s, h);
  if (MLT_UNLIKELY(!t)) return MLT__CLIENT_SLOW;
  if (MLT_UNLIKELY(t->id_hi != hi || t->id_lo != lo || t->root.id_ != h.id_ ||
                   atomic_load_explicit(&t->state, memory_order_acquire) != MLT__T_ACTIVE)) {
    mlt__trace_unref(t);
    return MLT__CLIENT_SLOW;
  }
  if (status != MLT_STATUS_UNSET && s->status != MLT_STATUS_ERROR) s->status = (uint8_t)status;
  int rc = end_open(h, s, now, now);
  /* Children still open are ended now: the trace is complete. */
  if (MLT_UNLIKELY(atomic_load_explicit(&t->state, memory_order_acquire) == MLT__T_ACTIVE)) {
    mlt__trace_force_finish_at(t, 3, "span was still open when its trace ended (end_trace)", 0);
    if (rc == MLT_EENDED) rc = MLT_OK; /* root had ended; the trace is ended now */
  }
  mlt__trace_unref(t);
  return rc;
}

int mlt__span_client_end_root(uint64_t hi, uint64_t lo, mlt_span_status status) {
  return client_end_root(hi, lo, 0, status);
}

int mlt__span_client_end_trace(const char *trace_id, const char *outputs_json, mlt_span_status status,
                               const char *message) {
  uint64_t hi, lo, root;
  int rc;
  /* No check of the library's state: after mlt_shutdown() the slot table is
   * empty (its bound is 0), so client_end_root() finds no span and the
   * general path answers. */
  if (MLT_LIKELY(!outputs_json && !message && (unsigned)status < MLT_STATUS_ERROR &&
                 mlt__trace_id_memo(trace_id, &hi, &lo, &root)) &&
      MLT_LIKELY((rc = client_end_root(hi, lo, root, status)) != MLT__CLIENT_SLOW))
    return rc;
  return mlt__client_end_trace_general(trace_id, outputs_json, status, message);
}

int mlt__span_client_inputs(mlt_span h, const char *inputs_json) {
  return set_json(h, MLT__R_INPUTS, inputs_json, MLT_NTS, "mlt_client_start_span");
}

static MLT_ALWAYS_INLINE int client_ids(mlt_span h, mlt_client_span *out) {
  out->span = h;
  if (h.id_ == 0 || mlt__h_is_nonrec(h)) return MLT_ENOTRECORDING;
  /* Just started here: open, and nobody else has the handle yet. */
  mlt__span *s = mlt__slot_at((uint32_t)h.id_ - 1);
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_relaxed);
  if (MLT_UNLIKELY(t->flags & (MLT__TF_CONTINUATION | MLT__TF_REMOTE))) /* a foreign id: made reachable */
    return mlt__span_ids(s, h.id_ /* open: gs == handle */, t, out->trace_id, out->span_id);
  mlt__format_ids(t->id_hi, t->id_lo, s->span_id, out->trace_id, out->span_id);
  return MLT_OK;
}

/* With start options (lib/core/spanopts.c) or under a scoped context (lib/core/scope.c). */
static MLT_NOINLINE int client_start_slow(mlt__tls *tls, const char *name, mlt_span_type type, mlt__span *parent,
                                          const mlt__start_opts *x, mlt_client_span *out) {
  mlt__scope *sc = tls->scope;
  if (sc && mlt__scope_off(sc)) return MLT_ENOTRECORDING;
  mlt__start_opts o = {NULL, parent, name, MLT_NTS, NULL, 0, type, 0};
  if (x && x->parent_ctx) o.parent_ctx = x->parent_ctx; /* a moved parent (client.c) */
  if (x) {
    o.start_ns = x->start_ns;
    o.flags |= x->flags & MLT__SO_SAMPLE;
    o.sample_threshold = x->sample_threshold;
  }
  mlt_span h = mlt__span_start_opts(tls, &o);
  if (sc) mlt__scope_started(sc, h);
  return client_ids(h, out);
}

/* The client API's common root start: a new trace, not made current, its
 * ids formatted into |out| in the same frame.  MLT_OK or MLT_ENOTRECORDING
 * (sampled out: the ids empty); MLT__CLIENT_SLOW (nothing done) when the
 * name does not fit the slot or this thread's caches are empty. */
static MLT_ALWAYS_INLINE int client_root_start(mlt__tls *tls, const char *name, mlt_span_type type,
                                               mlt_client_span *out) {
  if (MLT_UNLIKELY(tls->tfree == NULL || tls->n_mag == 0)) return MLT__CLIENT_SLOW;
  size_t name_len = strlen(name);
  if (MLT_UNLIKELY(name_len > atomic_load_explicit(&mlt__g_tiny_value, memory_order_relaxed))) return MLT__CLIENT_SLOW;
  mlt_span h =
      start_root_ex(tls, name, name_len, (unsigned)type < MLT__SPAN_TYPE_COUNT ? type : MLT_SPAN_UNKNOWN, 0, 0, out);
  out->span = h;
  if (MLT_LIKELY(h.id_ != 0 && !mlt__h_is_nonrec(h))) return MLT_OK;
  out->trace_id[0] = '\0';
  out->span_id[0] = '\0';
  return MLT_ENOTRECORDING;
}

int mlt__span_client_start(const char *name, mlt_span_type type, mlt__span *parent, mlt_client_span *out) {
  if (MLT_UNLIKELY(!enabled_now())) return MLT_ENOTRECORDING;
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return MLT_ENOTRECORDING;
  if (MLT_UNLIKELY(tls->scope != NULL)) return client_start_slow(tls, name, type, parent, NULL, out);
  if (!parent && name) {
    int rc = client_root_start(tls, name, type, out);
    if (MLT_LIKELY(rc != MLT__CLIENT_SLOW)) return rc;
  }
  mlt__start_opts o = {NULL, parent, name, MLT_NTS, NULL, 0, type, 0};
  return client_ids(start_impl(tls, &o), out);
}

int mlt__span_client_start_trace(const char *name, mlt_span_type type, const char *inputs_json,
                                 mlt_client_span *out) {
  if (MLT_UNLIKELY(inputs_json != NULL)) return mlt__client_start_trace_general(name, type, inputs_json, out);
  /* The enabled flag is set only while the library runs (pipeline.c), so it
   * stands for both, as in the block scope's start. */
  if (MLT_LIKELY(out && name && enabled_now())) {
    mlt__tls *tls = mlt__tls_get();
    if (MLT_LIKELY(tls && !tls->scope)) {
      int rc = client_root_start(tls, name, type, out);
      if (MLT_LIKELY(rc != MLT__CLIENT_SLOW)) return rc;
    }
  }
  return mlt__client_start_trace_general(name, type, inputs_json, out);
}

/* The public client API's trace start and end are these functions under
 * their public names (<mltrace/trace.h>): no extra call between them. */
int mlt_client_start_trace(const char *name, mlt_span_type type, const char *inputs_json, mlt_client_span *out)
    __attribute__((alias("mlt__span_client_start_trace")));
int mlt_client_end_trace(const char *trace_id, const char *outputs_json, mlt_span_status status,
                         const char *status_message) __attribute__((alias("mlt__span_client_end_trace")));

int mlt__span_client_start_with(const char *name, mlt_span_type type, mlt__span *parent, mlt_client_span *out,
                                const mlt__start_opts *x) {
  if (MLT_UNLIKELY(!enabled_now())) return MLT_ENOTRECORDING;
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return MLT_ENOTRECORDING;
  return client_start_slow(tls, name, type, parent, x, out);
}
