/* lib/core/compact.c: ended child spans moved out of their slots.
 *
 * A trace keeps every span until it is exported, and a span slot is 256
 * bytes.  In a server most of a request's spans have ended while its root
 * and one or two others are still open (at 10,000 requests in flight, ~6 of
 * every 8 slots held ended spans).  So when a child span ends while other
 * spans of its trace are open, its exported part -- the mlt__score fields
 * and the records of its inline log (its heap chunks are handed over as they
 * are) -- is copied into an exact-size block on the trace's list of moved
 * spans, and its slot goes back to this thread's magazine after a short
 * wait (MLT__MOVED_RING later moves: slots/mlt__slot_release_moved()).
 *
 * The trace's list of slots (t->spans) changes under the trace's lock once
 * the trace is known to others: pushes of new children (trace.c), the
 * unlink here, and the walk of a forced finish (trace.c), which takes the
 * moved spans as they are.  A span stays in its slot when it is a root, a
 * snapshot, current on a thread that has not been restored, the last open
 * span of its trace (its trace goes out now), in a trace younger than
 * MLT__MOVE_AFTER_NS while the slot table is small (span.c end_child()), or
 * when a forced finish has begun (the open counter is biased), or when no
 * memory is left.
 *
 * The handle of a moved span is stale for the slot; mlt__moved_find() finds
 * the span again from the handle while its trace is in memory, so that an
 * ended span's ids, status and children work as before.
 *
 * Layer: core -- includes core/ and util/ only.
 */
#include "core/span-internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* Slots a move looks through for its span.  The ending span is usually
 * near the head (the latest started); past this it stays in its slot. */
#define MOVE_SCAN 64

int mlt__span_move(mlt__span *s, mlt__trace *t, mlt__tls *tls) {
  /* the last span out: its trace is exported now */
  if (atomic_load_explicit(&t->open, memory_order_relaxed) <= 1) return 0;
  uint32_t used = atomic_load_explicit(&s->head.used, memory_order_relaxed);
  mlt__score *c = malloc(sizeof *c + used);
  if (MLT_UNLIKELY(!c)) return 0;
  int moved = 0;
  mlt__spin_lock(&t->lock);
  if (atomic_load_explicit(&t->open, memory_order_relaxed) > 1) {
    mlt__score *prev = NULL, *x = atomic_load_explicit(&t->spans, memory_order_relaxed);
    for (int n = 0; x && x != &s->core && n < MOVE_SCAN; n++) {
      prev = x;
      x = x->next;
    }
    if (x == &s->core) {
      if (prev)
        prev->next = x->next;
      else
        atomic_store_explicit(&t->spans, x->next, memory_order_relaxed);
      memcpy(c, &s->core, sizeof *c);
      if (used) memcpy(mlt__chunk_data(&c->head), s->inline_log, used);
      c->head.cap = used;
      if (s->tail == &s->head) c->tail = &c->head;
      c->index = MLT__MOVED_INDEX;
      c->next = t->moved;
      t->moved = c;
      moved = 1;
    }
  }
  mlt__spin_unlock(&t->lock);
  if (!moved) {
    free(c);
    return 0;
  }
  /* The heap chunks and cJSON values are the copy's now. */
  atomic_store_explicit(&s->head.next, NULL, memory_order_relaxed);
  s->flags &= (uint8_t)~MLT__SF_CJSON;
  mlt__slot_release_moved(s, tls);
  return 1;
}

void mlt__trace_splice_moved(mlt__trace *t) {
  mlt__spin_lock(&t->lock);
  mlt__score *x = atomic_load_explicit(&t->spans, memory_order_relaxed);
  if (!x) {
    atomic_store_explicit(&t->spans, t->moved, memory_order_relaxed);
  } else {
    while (x->next) x = x->next;
    x->next = t->moved; /* t->moved stays for mlt__moved_find() */
  }
  mlt__spin_unlock(&t->lock);
}

void mlt__score_release(mlt__score *c, mlt__tls *tls) {
  if (mlt__score_moved(c)) {
    mlt__score_free_payload(c, tls);
    free(c);
  } else {
    mlt__slot_release(mlt__score_slot(c), tls);
  }
}

int mlt__moved_find(mlt_span h, mlt__trace **tp, uint8_t *status) {
  uint32_t idx = (uint32_t)h.id_ - 1u; /* as mlt__span_get() */
  if (idx >= atomic_load_explicit(&mlt__g_slots_n, memory_order_acquire)) return 0;
  mlt__span *s = mlt__slot_at(idx);
  /* The slot's trace is the moved span's until the slot is used again;
   * headers are type-stable, and span ids are unique, so finding the id in
   * the referenced trace's moved list is the proof. */
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_acquire);
  if (!t) return 0;
  int32_t r = atomic_load_explicit(&t->refs, memory_order_relaxed);
  do {
    if (r <= 0) return 0;
  } while (!atomic_compare_exchange_weak(&t->refs, &r, r + 1));
  uint64_t sid = mlt__id_from_handle(h.id_);
  int found = 0;
  mlt__spin_lock(&t->lock);
  for (mlt__score *m = t->moved; m; m = m->next)
    if (m->span_id == sid) {
      /* (the span id is immutable; the status is read atomically: the span
       * processor may run on the copy before the trace is released) */
      if (status) *status = __atomic_load_n(&m->status, __ATOMIC_RELAXED);
      found = 1;
      break;
    }
  mlt__spin_unlock(&t->lock);
  if (!found) {
    mlt__trace_unref(t);
    return 0;
  }
  if (tp)
    *tp = t;
  else
    mlt__trace_unref(t);
  return 1;
}

void mlt__context_on_stack(struct mlt_context *c, mlt__trace *t, uint64_t span_id) {
  memset(c, 0, sizeof *c);
  atomic_init(&c->refs, 1);
  c->flags = MLT__CF_SAMPLED;
  c->epoch = atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed);
  c->trace_hi = t->id_hi;
  c->trace_lo = t->id_lo;
  c->span_id = span_id;
  c->trace = t;
}

int mlt__moved_context(mlt_span h, struct mlt_context *c, mlt__trace **tp) {
  mlt__trace *t;
  if (!mlt__moved_find(h, &t, NULL)) return 0;
  mlt__context_on_stack(c, t, mlt__id_from_handle(h.id_));
  *tp = t;
  return 1;
}

mlt__trace *mlt__handle_trace(mlt_span h) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (s) return mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  mlt__trace *t;
  return mlt__moved_find(h, &t, NULL) ? t : NULL;
}
