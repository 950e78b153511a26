/* lib/core/trace.c: trace headers, completion, forced finish (timeout, shutdown,
 * end_trace), the active-trace lists, the id registry, trace-level data.
 *
 * Reference counts on a trace header:
 *   1 for its open counter; when the counter drains to 0 the finishing
 *     thread hands this reference to the export pipeline (dropped once
 *     exported or dropped); after a forced finish (which takes a reference
 *     of its own for the pipeline) it is dropped when the counter drains to
 *     -MLT__OPEN_BIAS;
 *   1 per context that links to it, and 1 per caller that holds it briefly
 *     (mlt__trace_acquire_from_span()).
 * Headers come from a type-stable pool (never unmapped while the library
 * runs), so mlt__trace_acquire_from_span() may test a header's count even
 * when it races with the trace being recycled.  A header goes back to the
 * pool clean (see mlt__trace_unref()): taking one writes only what differs
 * per trace.
 *
 * There is no list of active traces: the reaper (trace timeout, shutdown)
 * finds them through their root spans in the slot table, so starting and
 * finishing a trace touch no shared list.
 *
 * Layer: core -- includes core/ and util/; a finished trace leaves the core
 * through mlt__trace_handoff() only (the sink mlt_init() sets: the export
 * queue).
 */
#include "core/record-internal.h"
#include "core/scope-internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- header pool ----------------------------------------------------- */

/* Headers circulate in chains of up to CHAIN (linked by next_free): a
 * thread's cache is one chain; the global pool is a lock-free stack of
 * chains (mlt__lf_push/pop, one compare-and-swap per chain).  The export
 * thread frees every trace; each time its cache holds CHAIN headers it
 * pushes them as one chain, and an app thread whose cache ran out pops one.
 * Only making new headers takes a mutex. */
#define TPOOL_BLOCK 256
#define TPOOL_MAX_BLOCKS 65536
#define CHAIN 128

static pthread_mutex_t tgrow_mu = PTHREAD_MUTEX_INITIALIZER;
static mlt__trace *_Atomic tblocks[TPOOL_MAX_BLOCKS];
static uint32_t n_tblocks; /* under tgrow_mu */
static _Atomic uint64_t g_chains;

static mlt__trace *th_at(uint32_t num) {
  mlt__trace *blk = atomic_load_explicit(&tblocks[(num - 1) / TPOOL_BLOCK], memory_order_acquire);
  return &blk[(num - 1) % TPOOL_BLOCK];
}
static _Atomic uint32_t *th_next(uint32_t num) { return &th_at(num)->chain_next; }

/* A clean header (see mlt__trace_unref()). */
static void trace_clean(mlt__trace *t) {
  atomic_store_explicit(&t->state, MLT__T_ACTIVE, memory_order_relaxed);
  t->flags = 0;
  t->remote_parent = 0;
  atomic_store_explicit(&t->registered, 0, memory_order_relaxed);
  t->forced_reason = 0;
  atomic_store_explicit(&t->spans, NULL, memory_order_relaxed);
  t->moved = NULL;
  t->moved_rest = NULL;
  t->walked = 0;
  atomic_flag_clear(&t->lock);
  t->info = NULL;
  t->n_info = 0;
  t->export_spans = NULL;
  t->n_export = 0;
}

/* Push the chain |head| (|n| headers linked by next_free). */
static void chain_push(mlt__trace *head, uint32_t n) {
  head->chain_n = n;
  mlt__lf_push(&g_chains, head->pool_num, th_next);
}

/* A new block of headers, pushed as chains.  0 or -1 (out of memory). */
static int tpool_grow(void) {
  pthread_mutex_lock(&tgrow_mu);
  int rc = -1;
  if (n_tblocks < TPOOL_MAX_BLOCKS) {
    mlt__trace *blk = calloc(TPOOL_BLOCK, sizeof *blk);
    if (blk) {
      uint32_t base = n_tblocks * TPOOL_BLOCK;
      for (uint32_t i = 0; i < TPOOL_BLOCK; i++) {
        trace_clean(&blk[i]);
        blk[i].pool_num = base + i + 1;
        blk[i].next_free = (i + 1) % CHAIN ? &blk[i + 1] : NULL;
      }
      atomic_store_explicit(&tblocks[n_tblocks], blk, memory_order_release);
      n_tblocks++;
      for (uint32_t i = 0; i < TPOOL_BLOCK; i += CHAIN) chain_push(&blk[i], CHAIN);
      rc = 0;
    }
  }
  pthread_mutex_unlock(&tgrow_mu);
  return rc;
}

/* One chain from the pool (NULL: out of memory); *n gets its length. */
static mlt__trace *chain_pop(uint32_t *n) {
  for (;;) {
    uint32_t num = mlt__lf_pop(&g_chains, th_next);
    if (num) {
      mlt__trace *head = th_at(num);
      *n = head->chain_n;
      return head;
    }
    if (tpool_grow() != 0) return NULL;
  }
}

void mlt__traces_put_cache(mlt__trace *list, uint32_t n) {
  if (list && n) chain_push(list, n);
}

/* A clean header: from this thread's cache, else a chain from the pool. */
static mlt__trace *tpool_get(mlt__tls *tls) {
  if (tls && tls->tfree) {
    mlt__trace *t = tls->tfree;
    tls->tfree = t->next_free;
    tls->n_tfree--;
    return t;
  }
  uint32_t n;
  mlt__trace *t = chain_pop(&n);
  if (!t) return NULL;
  if (tls) {
    tls->tfree = t->next_free;
    tls->n_tfree = n - 1;
  } else if (t->next_free) {
    chain_push(t->next_free, n - 1);
  }
  return t;
}

static void tpool_put(mlt__trace *t) {
  mlt__tls *tls = mlt__running() || atomic_load(&mlt__g_state) == MLT__G_STOPPING ? mlt__tls_get() : NULL;
  if (!tls) {
    t->next_free = NULL;
    chain_push(t, 1);
    return;
  }
  t->next_free = tls->tfree;
  tls->tfree = t;
  if (++tls->n_tfree >= 2 * CHAIN) {
    /* Full (the export thread frees every trace): one chain to the pool. */
    mlt__trace *tail = t;
    for (int i = 1; i < CHAIN; i++) tail = tail->next_free;
    mlt__trace *head = tls->tfree;
    tls->tfree = tail->next_free;
    tail->next_free = NULL;
    tls->n_tfree -= CHAIN;
    chain_push(head, CHAIN);
  }
}

mlt__trace *mlt__trace_pool_get(mlt__tls *tls) { return tpool_get(tls); }

static void tinfo_free(mlt__tinfo *i) {
  while (i) {
    mlt__tinfo *n = i->next;
    if (MLT_UNLIKELY(i->kind == MLT__TI_SCOPE)) { /* the block of a scope's entries (lib/core/scope.c) */
      mlt__scope_release(i->scope);
      free(i);
    } else if (MLT_LIKELY(!i->borrowed)) {
      free(i->key);
      free(i->value);
      free(i);
    }
    i = n;
  }
}

void mlt__tinfo_free(mlt__tinfo *i) { tinfo_free(i); }

void mlt__trace_unref(mlt__trace *t) {
  if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) return;
  tinfo_free(t->info);
  if (t->export_spans != mlt__no_spans) free(t->export_spans);
  trace_clean(t);
  tpool_put(t);
}

int mlt__trace_join(mlt__trace *t) {
  int32_t o = atomic_load_explicit(&t->open, memory_order_relaxed);
  do {
    if (o <= 0) return 0;
  } while (!atomic_compare_exchange_weak(&t->open, &o, o + 1));
  return 1;
}

void mlt__trace_unjoin_span(mlt__trace *t) {
  atomic_fetch_sub(&t->n_spans, 1);
  mlt__trace_leave(t);
}

/* Under the trace's lock: a span that ends may take its slot out of the
 * list meanwhile (core/compact.c). */
void mlt__trace_push_span(mlt__trace *t, mlt__span *s) {
  mlt__spin_lock(&t->lock);
  s->next = atomic_load_explicit(&t->spans, memory_order_relaxed);
  atomic_store_explicit(&t->spans, &s->core, memory_order_relaxed);
  mlt__spin_unlock(&t->lock);
}

/* ---- last finished trace id ------------------------------------------ */

/* No lock: each thread remembers the last trace it finished, with the finish
 * time, in its own record (a sequence count lets readers see a consistent
 * copy); mlt_get_last_active_trace_id() returns the newest of all threads'
 * records (tls.c, mlt__tls_last_trace()).  Without thread state (out of
 * memory) a global record under a mutex takes it. */
static pthread_mutex_t orphan_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t orphan_hi, orphan_lo;
static int64_t orphan_stamp;

void mlt__trace_set_last(const mlt__trace *t, int64_t stamp) {
  if (t->flags & MLT__TF_CONTINUATION) return;
  if (!stamp) stamp = mlt__now_ns();
  if (stamp <= 0) stamp = 1;
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) {
    pthread_mutex_lock(&orphan_mu);
    orphan_hi = t->id_hi;
    orphan_lo = t->id_lo;
    orphan_stamp = stamp;
    pthread_mutex_unlock(&orphan_mu);
    return;
  }
  mlt__last_write(&tls->last, t->id_hi, t->id_lo, stamp);
}

int mlt_get_last_active_trace_id(char *buf, size_t size) {
  if (!buf) return MLT_EINVAL;
  if (size < MLT_TRACE_ID_SIZE) return MLT_ERANGE;
  uint64_t hi = 0, lo = 0;
  int have = mlt__tls_last_trace(&hi, &lo);
  pthread_mutex_lock(&orphan_mu);
  if (orphan_stamp && !have) {
    hi = orphan_hi;
    lo = orphan_lo;
    have = 1;
  }
  pthread_mutex_unlock(&orphan_mu);
  if (!have) {
    buf[0] = '\0';
    return MLT_ENOTFOUND;
  }
  mlt__format_trace_id(hi, lo, buf);
  return MLT_OK;
}

/* ---- completion ------------------------------------------------------ */

/* The open counter reached 0: only this caller can get here (a forced
 * finish needs the counter above 0, and it never rises from 0), so a plain
 * store marks the trace finished; the counter's reference goes with the
 * trace to the pipeline. */
void mlt__trace_finish(mlt__trace *t, int64_t now) { trace_finish_inline(t, now, mlt__tls_get()); }

void mlt__trace_leave_slow(mlt__trace *t, int32_t o, int64_t now) {
  if (o == 1)
    mlt__trace_finish(t, now);
  else if (o == 1 - MLT__OPEN_BIAS)
    mlt__trace_unref(t);
}

void mlt__trace_leave(mlt__trace *t) { mlt__trace_leave_at(t, 0); }

/* Snapshot an open span into a fresh slot, ended with ERROR. */
static mlt__span *clone_expired(mlt__span *s, mlt__trace *t, const char *message, int64_t now, int64_t end_ns) {
  mlt__tls *tls = mlt__tls_get();
  mlt__span *c = mlt__slot_alloc(tls);
  if (!c) return NULL;
  mlt__span_init(c, t, s->span_id, s->parent_id, NULL, (mlt_span_type)s->type, s->start_ns);
  /* mlt__span_init wrote a default name record; the copied log's own NAME
   * record comes later and wins. */
  if (mlt__log_copy(c, s) != 0) {
    mlt__slot_release(c, tls);
    return NULL;
  }
  c->flags |= MLT__SF_CLONE;
  c->end_ns = end_ns ? MLT_MAX(end_ns, s->start_ns) : now;
  c->n_links = s->n_links;
  c->n_links_dropped = s->n_links_dropped;
  c->n_events_dropped = s->n_events_dropped;
  c->status = MLT_STATUS_ERROR;
  mlt__append_value(c, MLT__R_STATUS, MLT__V_STR, NULL, 0, message, strlen(message), MLT_STATUS_ERROR);
  mlt_attr a[2] = {{"exception.type", MLT_ATTR_STRING, {.s = "MlflowTracingException"}, MLT_NTS},
                   {"exception.message", MLT_ATTR_STRING, {.s = message}, MLT_NTS}};
  mlt__append_event(c, "exception", c->end_ns, a, 2);
  uint64_t gs = atomic_load(&c->gs);
  atomic_store(&c->gs, MLT__GS_SET(gs, MLT__S_CLAIMED));
  return c;
}

int mlt__trace_force_finish(mlt__trace *t, int reason, const char *message) {
  return mlt__trace_force_finish_at(t, reason, message, 0);
}

int mlt__trace_force_finish_at(mlt__trace *t, int reason, const char *message, int64_t end_ns) {
  int32_t o = atomic_load(&t->open);
  do {
    if (o <= 0) return 0; /* finished (or finishing) already */
  } while (!atomic_compare_exchange_weak(&t->open, &o, o - MLT__OPEN_BIAS));
  atomic_store(&t->state, MLT__T_FINISHED);
  t->flags |= MLT__TF_FORCED;
  t->forced_reason = (uint8_t)reason;
  if (reason == 1) t->flags |= MLT__TF_TIMED_OUT;

  size_t n = 0;
  mlt__score **arr = NULL;
  int lost = 0; /* out of memory: a span could not be listed */
  int64_t now = mlt__now_ns();
  uint64_t expired = 0;
  /* Under the lock: a span ending meanwhile either moved out of its slot
   * already (it is in t->moved) or, seeing the counter biased, keeps it.
   * A span that joined the trace before the counter was biased may not be
   * in the list yet (its start pushes it last): wait until every span
   * counted is there, so that none is left out of the export. */
  mlt__spin_lock(&t->lock);
  for (;;) {
    size_t have = 0;
    for (mlt__score *x = atomic_load_explicit(&t->spans, memory_order_relaxed); x; x = x->next) have++;
    for (mlt__score *x = t->moved; x; x = x->next) have++;
    if (have >= atomic_load(&t->n_spans)) {
      /* room for every span (a snapshot replaces an open span one for one) */
      arr = malloc((have ? have : 1) * sizeof *arr);
      break;
    }
    mlt__spin_unlock(&t->lock);
    sched_yield();
    mlt__spin_lock(&t->lock);
  }
  /* Without the array the walk still takes every span from its owner (an
   * ENDED one stays claimed, an open one expires), lists none, and the
   * trace is counted lost (MLT__TF_LOST): nothing is freed twice or under
   * an owner. */
  if (!arr) lost = 1;
  for (mlt__score *sc = atomic_load_explicit(&t->spans, memory_order_relaxed); sc; sc = sc->next) {
    mlt__span *s = mlt__score_slot(sc);
    for (;;) {
      uint64_t gs = atomic_load(&s->gs);
      uint32_t st = MLT__GS_STATE(gs);
      if (st == MLT__S_ENDED) {
        if (!atomic_compare_exchange_strong(&s->gs, &gs, MLT__GS_SET(gs, MLT__S_CLAIMED)))
          continue; /* the owner moved it: look again */
        if (arr) arr[n++] = &s->core;
      } else if (st == MLT__S_OPEN) {
        mlt__span *c = arr ? clone_expired(s, t, message, now, end_ns) : NULL;
        if (atomic_compare_exchange_strong(&s->gs, &gs, MLT__GS_SET(gs, MLT__S_EXPIRED))) {
          if (c)
            arr[n++] = &c->core;
          else
            lost = 1;
          expired++;
        } else {
          if (c) mlt__slot_release(c, mlt__tls_get());
          continue;
        }
      }
      break;
    }
  }
  if (arr)
    for (mlt__score *m = t->moved; m; m = m->next) arr[n++] = m;
  else
    t->moved_rest = t->moved; /* freed with the trace (pipeline.c release_trace()) */
  if (lost) t->flags |= MLT__TF_LOST;
  t->walked = 1;
  mlt__spin_unlock(&t->lock);
  t->export_spans = arr ? arr : mlt__no_spans;
  t->n_export = (uint32_t)n;
  if (expired) {
    mlt__stats_add(MLT__ST_SPANS_TIMED_OUT, expired);
    mlt__log(MLT_LOG_WARN, MLT__LOGK_TIMEOUT, "%llu span(s) still open when their trace was ended (%s)",
             (unsigned long long)expired, message);
  }
  if (reason == 1) mlt__stats_add(MLT__ST_TRACES_TIMED_OUT, 1);
  mlt__trace_set_last(t, now);
  mlt__trace_ref(t); /* the pipeline's (the open counter keeps its own) */
  mlt__trace_handoff(t);
  return 1;
}

/* ---- reaper ---------------------------------------------------------- */

/* Every trace in progress has its root span's slot allocated (a root's
 * slot is freed only after its trace finished; ended child spans may have
 * moved out of theirs, compact.c), so walking the slot table's roots finds
 * them all.  Only done when a trace timeout is set, and at shutdown. */
void mlt__traces_reap(int64_t now_ns, int all) {
  int64_t timeout = mlt__g_cfg.trace_timeout_ns;
  if (!all && timeout <= 0) return;
  char msg[200];
  snprintf(msg, sizeof msg, "span still open when its trace timed out after %.3f s (MLFLOW_TRACE_TIMEOUT_SECONDS)",
           (double)timeout / 1e9);
  uint32_t n = atomic_load_explicit(&mlt__g_slots_n, memory_order_acquire);
  for (uint32_t k = 0; k < n; k++) {
    mlt__span *s = mlt__slot_at(k);
    uint64_t gs = atomic_load_explicit(&s->gs, memory_order_acquire);
    uint32_t st = MLT__GS_STATE(gs);
    if (st != MLT__S_OPEN && st != MLT__S_ENDED) continue;
    if (!atomic_load_explicit(&s->is_root, memory_order_relaxed)) continue;
    mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
    if (!t) continue;
    if (atomic_load(&t->state) == MLT__T_ACTIVE && t->root.id_ == mlt__span_handle(gs).id_) {
      if (all)
        mlt__trace_force_finish(t, 2, "span still open at shutdown");
      else if (now_ns - t->start_ns > timeout)
        mlt__trace_force_finish(t, 1, msg);
    }
    mlt__trace_unref(t);
  }
}

void mlt__traces_atfork_child(void) {
  pthread_mutex_init(&tgrow_mu, NULL);
  for (uint32_t i = 0; i < n_tblocks; i++) {
    mlt__forget(atomic_load_explicit(&tblocks[i], memory_order_relaxed));
    atomic_store_explicit(&tblocks[i], NULL, memory_order_relaxed);
  }
  n_tblocks = 0;
  atomic_store(&g_chains, 0);
  pthread_mutex_init(&orphan_mu, NULL);
  orphan_stamp = 0;
}

void mlt__traces_shutdown(void) {
  pthread_mutex_lock(&tgrow_mu);
  for (uint32_t i = 0; i < n_tblocks; i++) {
    mlt__trace *b = atomic_load_explicit(&tblocks[i], memory_order_relaxed);
    for (int k = 0; k < TPOOL_BLOCK; k++) {
      tinfo_free(b[k].info);
      if (b[k].export_spans != mlt__no_spans) free(b[k].export_spans);
      /* moved spans of a trace never exported (abandoned) */
      for (mlt__score *m = b[k].moved, *next; m; m = next) {
        next = m->next;
        mlt__score_free_payload(m, NULL);
        free(m);
      }
    }
    free(b);
    atomic_store_explicit(&tblocks[i], NULL, memory_order_relaxed);
  }
  n_tblocks = 0;
  atomic_store(&g_chains, 0);
  pthread_mutex_unlock(&tgrow_mu);
  mlt__tls_last_reset();
  pthread_mutex_lock(&orphan_mu);
  orphan_stamp = 0;
  pthread_mutex_unlock(&orphan_mu);
}

/* ---- id registry (client API) ---------------------------------------- */

#define RSHARDS 64
typedef struct rent {
  struct rent *next;
  uint64_t hi, lo, sid;
  mlt_span h;
} rent;
typedef struct rshard {
  pthread_mutex_t mu;
  rent **tab;
  size_t cap, n;
} rshard;
static rshard g_reg[RSHARDS];
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_init(void) {
  for (int i = 0; i < RSHARDS; i++) pthread_mutex_init(&g_reg[i].mu, NULL);
}

static uint64_t rhash(uint64_t hi, uint64_t lo, uint64_t sid) {
  uint64_t h = hi * UINT64_C(0x9E3779B97F4A7C15) ^ lo * UINT64_C(0xC2B2AE3D27D4EB4F) ^ sid;
  h ^= h >> 31;
  h *= UINT64_C(0xBF58476D1CE4E5B9);
  return h ^ (h >> 29);
}

static int rgrow(rshard *sh) {
  size_t cap = sh->cap ? sh->cap * 2 : 64;
  rent **tab = calloc(cap, sizeof *tab);
  if (!tab) return -1;
  for (size_t i = 0; i < sh->cap; i++) {
    rent *e = sh->tab[i];
    while (e) {
      rent *n = e->next;
      size_t b = rhash(e->hi, e->lo, e->sid) / RSHARDS & (cap - 1);
      e->next = tab[b];
      tab[b] = e;
      e = n;
    }
  }
  free(sh->tab);
  sh->tab = tab;
  sh->cap = cap;
  return 0;
}

int mlt__registry_put(uint64_t hi, uint64_t lo, uint64_t sid, mlt_span h) {
  pthread_once(&reg_once, reg_init);
  uint64_t hv = rhash(hi, lo, sid);
  rshard *sh = &g_reg[hv % RSHARDS];
  pthread_mutex_lock(&sh->mu);
  if (sh->n + 1 > sh->cap && rgrow(sh) != 0) {
    pthread_mutex_unlock(&sh->mu);
    return -1;
  }
  size_t b = hv / RSHARDS & (sh->cap - 1);
  for (rent *e = sh->tab[b]; e; e = e->next)
    if (e->hi == hi && e->lo == lo && e->sid == sid) {
      e->h = h;
      pthread_mutex_unlock(&sh->mu);
      return 0;
    }
  rent *e = malloc(sizeof *e);
  if (!e) {
    pthread_mutex_unlock(&sh->mu);
    return -1;
  }
  *e = (rent){sh->tab[b], hi, lo, sid, h};
  sh->tab[b] = e;
  sh->n++;
  pthread_mutex_unlock(&sh->mu);
  return 0;
}

int mlt__registry_get(uint64_t hi, uint64_t lo, uint64_t sid, mlt_span *out) {
  pthread_once(&reg_once, reg_init);
  uint64_t hv = rhash(hi, lo, sid);
  rshard *sh = &g_reg[hv % RSHARDS];
  int rc = -1;
  pthread_mutex_lock(&sh->mu);
  if (sh->cap) {
    for (rent *e = sh->tab[hv / RSHARDS & (sh->cap - 1)]; e; e = e->next)
      if (e->hi == hi && e->lo == lo && e->sid == sid) {
        *out = e->h;
        rc = 0;
        break;
      }
  }
  pthread_mutex_unlock(&sh->mu);
  return rc;
}

void mlt__registry_del(uint64_t hi, uint64_t lo, uint64_t sid) {
  pthread_once(&reg_once, reg_init);
  uint64_t hv = rhash(hi, lo, sid);
  rshard *sh = &g_reg[hv % RSHARDS];
  pthread_mutex_lock(&sh->mu);
  if (sh->cap) {
    rent **pp = &sh->tab[hv / RSHARDS & (sh->cap - 1)];
    while (*pp) {
      rent *e = *pp;
      if (e->hi == hi && e->lo == lo && e->sid == sid) {
        *pp = e->next;
        free(e);
        sh->n--;
        break;
      }
      pp = &e->next;
    }
  }
  pthread_mutex_unlock(&sh->mu);
}

void mlt__registry_atfork_child(void) {
  for (int i = 0; i < RSHARDS; i++) {
    pthread_mutex_init(&g_reg[i].mu, NULL);
    mlt__forget(g_reg[i].tab);
    g_reg[i].tab = NULL;
    g_reg[i].cap = g_reg[i].n = 0;
  }
}

void mlt__registry_shutdown(void) {
  pthread_once(&reg_once, reg_init);
  for (int i = 0; i < RSHARDS; i++) {
    rshard *sh = &g_reg[i];
    pthread_mutex_lock(&sh->mu);
    for (size_t b = 0; b < sh->cap; b++) {
      rent *e = sh->tab[b];
      while (e) {
        rent *n = e->next;
        free(e);
        e = n;
      }
    }
    free(sh->tab);
    sh->tab = NULL;
    sh->cap = sh->n = 0;
    pthread_mutex_unlock(&sh->mu);
  }
}

/* ---- trace-level data ------------------------------------------------ */

static void tlock(mlt__trace *t) {
  while (atomic_flag_test_and_set_explicit(&t->lock, memory_order_acquire)) {
  }
}
static void tunlock(mlt__trace *t) { atomic_flag_clear_explicit(&t->lock, memory_order_release); }

static int tinfo_add(mlt__tinfo **head, int kind, const char *key, const char *value) {
  mlt__tinfo *i = calloc(1, sizeof *i);
  if (!i) return MLT_ENOMEM;
  i->kind = (uint8_t)kind;
  i->key = key ? strdup(key) : NULL;
  i->value = strdup(value);
  if ((key && !i->key) || !i->value) {
    free(i->key);
    free(i->value);
    free(i);
    return MLT_ENOMEM;
  }
  i->next = *head;
  *head = i;
  return MLT_OK;
}

int mlt__trace_info_link(mlt__trace *t, mlt__tinfo *head, mlt__tinfo *tail, uint32_t n) {
  tlock(t);
  if (atomic_load(&t->state) != MLT__T_ACTIVE) {
    tunlock(t);
    return MLT_EENDED;
  }
  if (t->n_info + n > MLT__TINFO_MAX) {
    tunlock(t);
    return MLT_EFULL;
  }
  tail->next = t->info;
  t->info = head;
  t->n_info += n;
  tunlock(t);
  return MLT_OK;
}

/* Read the trace-level list under the lock (export thread). */
mlt__tinfo *mlt__trace_take_info(mlt__trace *t) {
  tlock(t);
  mlt__tinfo *i = t->info;
  tunlock(t);
  return i;
}

static int kv_len(const char *const *kv, size_t *n) {
  size_t k = 0;
  if (kv)
    while (kv[k]) k++;
  *n = k;
  return (k % 2) ? -1 : 0;
}

int mlt__trace_update(mlt__trace *t, const mlt_trace_update *u) {
  if (!u || u->struct_size < offsetof(mlt_trace_update, metadata)) return MLT_EINVAL;
  size_t ntag, nmeta;
  const char *const *tags = u->tags;
  const char *const *meta = u->struct_size >= offsetof(mlt_trace_update, request_preview) ? u->metadata : NULL;
  if (kv_len(tags, &ntag) || kv_len(meta, &nmeta)) return MLT_EINVAL;
#define UFIELD(f) (u->struct_size >= offsetof(mlt_trace_update, f) + sizeof(u->f) ? u->f : NULL)
  const char *req = UFIELD(request_preview), *resp = UFIELD(response_preview), *crid = UFIELD(client_request_id),
             *sess = UFIELD(session_id), *user = UFIELD(user_id), *model = UFIELD(model_id);
#undef UFIELD
  int state = u->struct_size >= offsetof(mlt_trace_update, state) + sizeof(u->state) ? (int)u->state : 0;
  if (state < MLT_TRACE_STATE_UNSET || state > MLT_TRACE_STATE_ERROR) return MLT_EINVAL;
  mlt__tinfo *add = NULL;
  int rc = MLT_OK;
  for (size_t i = 0; i + 1 < ntag && !rc; i += 2) rc = tinfo_add(&add, MLT__TI_TAG, tags[i], tags[i + 1]);
  for (size_t i = 0; i + 1 < nmeta && !rc; i += 2) rc = tinfo_add(&add, MLT__TI_META, meta[i], meta[i + 1]);
  if (req && !rc) rc = tinfo_add(&add, MLT__TI_REQ_PREVIEW, NULL, req);
  if (resp && !rc) rc = tinfo_add(&add, MLT__TI_RESP_PREVIEW, NULL, resp);
  if (crid && !rc) rc = tinfo_add(&add, MLT__TI_CLIENT_REQ_ID, NULL, crid);
  if (sess && !rc) rc = tinfo_add(&add, MLT__TI_SESSION, NULL, sess);
  if (user && !rc) rc = tinfo_add(&add, MLT__TI_USER, NULL, user);
  if (model && !rc) rc = tinfo_add(&add, MLT__TI_META, "mlflow.modelId", model);
  if (state && !rc) rc = tinfo_add(&add, MLT__TI_STATE, NULL, state == MLT_TRACE_STATE_ERROR ? "ERROR" : "OK");
  if (rc) {
    tinfo_free(add);
    return rc;
  }
  if (!add) return MLT_OK;
  /* |add| is newest-first within this update; the list is newest-first. */
  mlt__tinfo *tail = add;
  uint32_t n_add = 1;
  for (; tail->next; tail = tail->next) n_add++;
  tlock(t);
  if (atomic_load(&t->state) != MLT__T_ACTIVE) {
    tunlock(t);
    tinfo_free(add);
    return MLT_EENDED;
  }
  if (t->n_info + n_add > MLT__TINFO_MAX) {
    /* Bounded: a runaway caller cannot grow a trace without end. */
    tunlock(t);
    tinfo_free(add);
    return MLT_EFULL;
  }
  tail->next = t->info;
  t->info = add;
  t->n_info += n_add;
  tunlock(t);
  return MLT_OK;
}
