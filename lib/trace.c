/* lib/trace.c: trace headers, completion, forced finish (timeout, shutdown,
 * end_trace), the active-trace lists, the id registry, trace-level data.
 *
 * Reference counts on a trace header:
 *   1 for its open counter (dropped when the counter drains: to 0 normally,
 *     to -MLT__OPEN_BIAS after a forced finish);
 *   1 for the export pipeline (dropped once exported or dropped);
 *   1 for the active list (dropped when the reaper prunes it);
 *   1 per context that links to it.
 * Headers come from a type-stable pool (never unmapped while the library
 * runs), so mlt__trace_acquire_from_span() may test a header's count even
 * when it races with the trace being recycled.
 */
#include "span-internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- header pool ----------------------------------------------------- */

#define TPOOL_BLOCK 256
#define TCACHE_MAX 64

typedef struct tblock {
  struct tblock *next;
  mlt__trace t[TPOOL_BLOCK];
} tblock;

static atomic_flag tpool_mu = ATOMIC_FLAG_INIT;
static tblock *tblocks;
static mlt__trace *tpool_free;

void mlt__traces_put_cache(mlt__trace *list, uint32_t n) {
  (void)n;
  if (!list) return;
  mlt__trace *tail = list;
  while (tail->next_free) tail = tail->next_free;
  mlt__spin_lock(&tpool_mu);
  tail->next_free = tpool_free;
  tpool_free = list;
  mlt__spin_unlock(&tpool_mu);
}

static mlt__trace *tpool_get(mlt__tls *tls) {
  if (tls && tls->tfree) {
    mlt__trace *t = tls->tfree;
    tls->tfree = t->next_free;
    tls->n_tfree--;
    return t;
  }
  mlt__spin_lock(&tpool_mu);
  if (!tpool_free) {
    tblock *b = calloc(1, sizeof *b);
    if (!b) {
      mlt__spin_unlock(&tpool_mu);
      return NULL;
    }
    b->next = tblocks;
    tblocks = b;
    for (int i = TPOOL_BLOCK - 1; i >= 0; i--) {
      b->t[i].next_free = tpool_free;
      tpool_free = &b->t[i];
    }
  }
  /* Take a batch for this thread's cache. */
  mlt__trace *t = tpool_free;
  tpool_free = t->next_free;
  for (int i = 0; tls && i < TCACHE_MAX / 2 && tpool_free; i++) {
    mlt__trace *c = tpool_free;
    tpool_free = c->next_free;
    c->next_free = tls->tfree;
    tls->tfree = c;
    tls->n_tfree++;
  }
  mlt__spin_unlock(&tpool_mu);
  return t;
}

static void tpool_put(mlt__trace *t) {
  mlt__tls *tls = mlt__running() || atomic_load(&mlt__g_state) == MLT__G_STOPPING ? mlt__tls_get() : NULL;
  if (tls && tls->n_tfree < TCACHE_MAX) {
    t->next_free = tls->tfree;
    tls->tfree = t;
    tls->n_tfree++;
    return;
  }
  mlt__spin_lock(&tpool_mu);
  t->next_free = tpool_free;
  tpool_free = t;
  mlt__spin_unlock(&tpool_mu);
}

mlt__trace *mlt__trace_new(uint64_t hi, uint64_t lo) {
  mlt__tls *tls = mlt__tls_get();
  mlt__trace *t = tpool_get(tls);
  if (!t) return NULL;
  atomic_store_explicit(&t->refs, 3, memory_order_relaxed);
  atomic_store_explicit(&t->open, 1, memory_order_relaxed);
  atomic_store_explicit(&t->state, MLT__T_ACTIVE, memory_order_relaxed);
  t->flags = 0;
  atomic_store_explicit(&t->registered, 0, memory_order_relaxed);
  t->forced_reason = 0;
  atomic_store_explicit(&t->n_spans, 1, memory_order_relaxed);
  t->id_hi = hi;
  t->id_lo = lo;
  t->remote_parent = 0;
  t->start_ns = 0;
  t->root.id_ = 0;
  t->root_id = 0;
  atomic_store_explicit(&t->spans, NULL, memory_order_relaxed);
  atomic_flag_clear(&t->lock);
  t->info = NULL;
  t->export_spans = NULL;
  t->n_export = 0;
  t->next_active = NULL;
  t->next_free = NULL;
  return t;
}

static void tinfo_free(mlt__tinfo *i) {
  while (i) {
    mlt__tinfo *n = i->next;
    free(i->key);
    free(i->value);
    free(i);
    i = n;
  }
}

void mlt__trace_unref(mlt__trace *t) {
  if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) return;
  tinfo_free(t->info);
  t->info = NULL;
  t->n_info = 0;
  free(t->export_spans);
  t->export_spans = NULL;
  t->n_export = 0;
  tpool_put(t);
}

mlt__trace *mlt__trace_acquire_from_span(mlt__span *s, uint32_t gen) {
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_acquire);
  if (!t) return NULL;
  int32_t r = atomic_load_explicit(&t->refs, memory_order_relaxed);
  do {
    if (r <= 0) return NULL;
  } while (!atomic_compare_exchange_weak(&t->refs, &r, r + 1));
  uint64_t gs = atomic_load(&s->gs);
  if (MLT__GS_GEN(gs) != gen || MLT__GS_STATE(gs) == MLT__S_FREE || atomic_load(&s->trace) != t) {
    mlt__trace_unref(t);
    return NULL;
  }
  return t;
}

int mlt__trace_join(mlt__trace *t) {
  int32_t o = atomic_load_explicit(&t->open, memory_order_relaxed);
  do {
    if (o <= 0) return 0;
  } while (!atomic_compare_exchange_weak(&t->open, &o, o + 1));
  return 1;
}

void mlt__trace_push_span(mlt__trace *t, mlt__span *s) {
  mlt__span *head = atomic_load_explicit(&t->spans, memory_order_relaxed);
  do {
    s->next = head;
  } while (!atomic_compare_exchange_weak(&t->spans, &head, s));
}

/* ---- last finished trace id ------------------------------------------ */

static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_hi, last_lo;
static int have_last;

void mlt__trace_set_last(const mlt__trace *t) {
  if (t->flags & MLT__TF_CONTINUATION) return;
  pthread_mutex_lock(&last_mu);
  last_hi = t->id_hi;
  last_lo = t->id_lo;
  have_last = 1;
  pthread_mutex_unlock(&last_mu);
}

int mlt_get_last_active_trace_id(char *buf, size_t size) {
  if (!buf) return MLT_EINVAL;
  if (size < MLT_TRACE_ID_SIZE) return MLT_ERANGE;
  pthread_mutex_lock(&last_mu);
  int have = have_last;
  uint64_t hi = last_hi, lo = last_lo;
  pthread_mutex_unlock(&last_mu);
  if (!have) {
    buf[0] = '\0';
    return MLT_ENOTFOUND;
  }
  mlt__format_trace_id(hi, lo, buf);
  return MLT_OK;
}

/* ---- completion ------------------------------------------------------ */

static void finish_normal(mlt__trace *t) {
  uint8_t expect = MLT__T_ACTIVE;
  if (!atomic_compare_exchange_strong(&t->state, &expect, MLT__T_FINISHED)) return;
  mlt__trace_set_last(t);
  mlt__pipeline_enqueue(t);
}

void mlt__trace_leave(mlt__trace *t) {
  int32_t o = atomic_fetch_sub(&t->open, 1);
  if (o == 1) {
    finish_normal(t);
    mlt__trace_unref(t);
  } else if (o == 1 - MLT__OPEN_BIAS) {
    mlt__trace_unref(t);
  }
}

/* Snapshot an open span into a fresh slot, ended with ERROR. */
static mlt__span *clone_expired(mlt__span *s, mlt__trace *t, const char *message, int64_t now) {
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
  c->end_ns = now;
  c->status = MLT_STATUS_ERROR;
  mlt__append_value(c, MLT__R_STATUS, MLT__V_STR, NULL, 0, message, strlen(message), MLT_STATUS_ERROR);
  mlt_attr a[2] = {{"exception.type", MLT_ATTR_STRING, {.s = "MlflowTracingException"}, MLT_NTS},
                   {"exception.message", MLT_ATTR_STRING, {.s = message}, MLT_NTS}};
  mlt__append_event(c, "exception", now, a, 2);
  uint64_t gs = atomic_load(&c->gs);
  atomic_store(&c->gs, MLT__GS(MLT__GS_GEN(gs), MLT__S_CLAIMED));
  return c;
}

int mlt__trace_force_finish(mlt__trace *t, int reason, const char *message) {
  int32_t o = atomic_load(&t->open);
  do {
    if (o <= 0) return 0; /* finished (or finishing) already */
  } while (!atomic_compare_exchange_weak(&t->open, &o, o - MLT__OPEN_BIAS));
  atomic_store(&t->state, MLT__T_FINISHED);
  t->flags |= MLT__TF_FORCED;
  t->forced_reason = (uint8_t)reason;
  if (reason == 1) t->flags |= MLT__TF_TIMED_OUT;

  size_t n = 0, cap = 0;
  mlt__span **arr = NULL;
  int64_t now = mlt__now_ns();
  uint64_t expired = 0;
  for (mlt__span *s = atomic_load(&t->spans); s; s = s->next) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      mlt__span **na = realloc(arr, cap * sizeof *na);
      if (!na) break;
      arr = na;
    }
    for (;;) {
      uint64_t gs = atomic_load(&s->gs);
      uint32_t st = MLT__GS_STATE(gs);
      if (st == MLT__S_ENDED) {
        if (atomic_compare_exchange_strong(&s->gs, &gs, MLT__GS(MLT__GS_GEN(gs), MLT__S_CLAIMED))) arr[n++] = s;
        else continue; /* the owner moved it: look again */
      } else if (st == MLT__S_OPEN) {
        mlt__span *c = clone_expired(s, t, message, now);
        if (atomic_compare_exchange_strong(&s->gs, &gs, MLT__GS(MLT__GS_GEN(gs), MLT__S_EXPIRED))) {
          if (c) arr[n++] = c;
          expired++;
        } else {
          if (c) mlt__slot_release(c, mlt__tls_get());
          continue;
        }
      }
      break;
    }
  }
  t->export_spans = arr;
  t->n_export = (uint32_t)n;
  if (expired) {
    mlt__stats_add(MLT__ST_SPANS_TIMED_OUT, expired);
    mlt__log(MLT_LOG_WARN, MLT__LOGK_TIMEOUT, "%llu span(s) still open when their trace was ended (%s)",
             (unsigned long long)expired, message);
  }
  if (reason == 1) mlt__stats_add(MLT__ST_TRACES_TIMED_OUT, 1);
  mlt__trace_set_last(t);
  mlt__pipeline_enqueue(t);
  return 1;
}

/* ---- active lists ---------------------------------------------------- */

#define ASHARDS 64
static mlt__trace *_Atomic g_active[ASHARDS];

void mlt__traces_active_add(mlt__trace *t) {
  unsigned shard = (unsigned)(((uintptr_t)mlt__tls_ptr >> 6) & (ASHARDS - 1));
  mlt__trace *head = atomic_load_explicit(&g_active[shard], memory_order_relaxed);
  do {
    t->next_active = head;
  } while (!atomic_compare_exchange_weak(&g_active[shard], &head, t));
}

void mlt__traces_reap(int64_t now_ns, int all) {
  int64_t timeout = mlt__g_cfg.trace_timeout_ns;
  char msg[200];
  for (int i = 0; i < ASHARDS; i++) {
    mlt__trace *list = atomic_exchange(&g_active[i], NULL);
    mlt__trace *keep = NULL, *keep_tail = NULL;
    while (list) {
      mlt__trace *t = list;
      list = t->next_active;
      if (atomic_load(&t->state) != MLT__T_ACTIVE) {
        mlt__trace_unref(t);
        continue;
      }
      if (all) {
        mlt__trace_force_finish(t, 2, "span still open at shutdown");
        mlt__trace_unref(t);
        continue;
      }
      if (timeout > 0 && now_ns - t->start_ns > timeout) {
        snprintf(msg, sizeof msg,
                 "span still open when its trace timed out after %.3f s (MLFLOW_TRACE_TIMEOUT_SECONDS)",
                 (double)timeout / 1e9);
        mlt__trace_force_finish(t, 1, msg);
        mlt__trace_unref(t);
        continue;
      }
      t->next_active = keep;
      if (!keep) keep_tail = t;
      keep = t;
    }
    if (keep) {
      mlt__trace *head = atomic_load(&g_active[i]);
      do {
        keep_tail->next_active = head;
      } while (!atomic_compare_exchange_weak(&g_active[i], &head, keep));
    }
  }
}

void mlt__traces_atfork_child(void) {
  atomic_flag_clear(&tpool_mu);
  mlt__forget(tblocks);
  tblocks = NULL;
  tpool_free = NULL;
  for (int i = 0; i < ASHARDS; i++) atomic_store(&g_active[i], NULL);
  pthread_mutex_init(&last_mu, NULL);
  have_last = 0;
}

void mlt__traces_shutdown(void) {
  for (int i = 0; i < ASHARDS; i++) atomic_store(&g_active[i], NULL);
  mlt__spin_lock(&tpool_mu);
  while (tblocks) {
    tblock *b = tblocks;
    tblocks = b->next;
    for (int k = 0; k < TPOOL_BLOCK; k++) {
      tinfo_free(b->t[k].info);
      free(b->t[k].export_spans);
    }
    free(b);
  }
  tpool_free = NULL;
  mlt__spin_unlock(&tpool_mu);
  pthread_mutex_lock(&last_mu);
  have_last = 0;
  pthread_mutex_unlock(&last_mu);
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
