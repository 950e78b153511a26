/* lib/slots.c: the span slot table.
 *
 * Slots live in chunks of 1024 that are never freed while the library runs,
 * so a stale handle can always be checked against its slot's generation.
 * Free slot indices circulate through per-thread magazines (no lock on the
 * hot path) and a global pool that magazines refill from and spill to in
 * batches of MLT__MAG_SIZE / 2 (one lock per 64 spans at most).
 */
#include "span-internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

mlt__span *_Atomic mlt__g_slot_chunks[MLT__SLOT_MAX_CHUNKS];

static atomic_flag pool_mu = ATOMIC_FLAG_INIT;
static uint32_t *pool;
static size_t pool_n, pool_cap;
static uint32_t n_chunks;
static _Atomic int64_t in_use;

#define BATCH (MLT__MAG_SIZE / 2)

static uint32_t next_gen(uint32_t gen) {
  gen++;
  if (gen == 0 || gen >= 0xFFFFFFFEu) gen = 1;
  return gen;
}

static int pool_reserve(size_t need) {
  if (need <= pool_cap) return 0;
  size_t cap = pool_cap ? pool_cap * 2 : 4096;
  while (cap < need) cap *= 2;
  uint32_t *p = realloc(pool, cap * sizeof *p);
  if (!p) return -1;
  pool = p;
  pool_cap = cap;
  return 0;
}

/* Caller holds pool_mu. */
static int add_chunk(void) {
  if (n_chunks >= MLT__SLOT_MAX_CHUNKS) return -1;
  if (pool_reserve(pool_n + MLT__SLOT_CHUNK)) return -1;
  mlt__span *c = calloc(MLT__SLOT_CHUNK, sizeof *c);
  if (!c) return -1;
  /* Generations start from an epoch-dependent base, so handles kept across
   * mlt_shutdown() + mlt_init() do not match new spans. */
  uint32_t base = (atomic_load(&mlt__g_epoch) * 0x10001u) & 0x7FFFFFFFu;
  if (base == 0) base = 1;
  uint32_t first = n_chunks * MLT__SLOT_CHUNK;
  for (uint32_t i = 0; i < MLT__SLOT_CHUNK; i++) {
    c[i].index = first + i;
    atomic_init(&c[i].gs, MLT__GS(base, MLT__S_FREE));
  }
  atomic_store_explicit(&mlt__g_slot_chunks[n_chunks], c, memory_order_release);
  n_chunks++;
  /* Push in reverse so that low indices are handed out first. */
  for (uint32_t i = MLT__SLOT_CHUNK; i > 0; i--) pool[pool_n++] = first + i - 1;
  return 0;
}

static int refill(mlt__tls *tls) {
  mlt__spin_lock(&pool_mu);
  if (pool_n == 0 && add_chunk() != 0) {
    mlt__spin_unlock(&pool_mu);
    return -1;
  }
  uint32_t take = (uint32_t)MLT_MIN((size_t)BATCH, pool_n);
  for (uint32_t i = 0; i < take; i++) tls->mag[tls->n_mag++] = pool[--pool_n];
  mlt__spin_unlock(&pool_mu);
  return 0;
}

mlt__span *mlt__slot_alloc(mlt__tls *tls) {
  uint32_t idx;
  if (MLT_LIKELY(tls != NULL)) {
    if (MLT_UNLIKELY(tls->n_mag == 0) && refill(tls) != 0) return NULL;
    idx = tls->mag[--tls->n_mag];
  } else {
    mlt__spin_lock(&pool_mu);
    if (pool_n == 0 && add_chunk() != 0) {
      mlt__spin_unlock(&pool_mu);
      return NULL;
    }
    idx = pool[--pool_n];
    mlt__spin_unlock(&pool_mu);
  }
  atomic_fetch_add_explicit(&in_use, 1, memory_order_relaxed);
  return mlt__slot_at(idx);
}

static void pool_put(const uint32_t *idx, size_t n) {
  mlt__spin_lock(&pool_mu);
  if (pool_reserve(pool_n + n) == 0) {
    memcpy(pool + pool_n, idx, n * sizeof *idx);
    pool_n += n;
  } /* else: the slots leak until shutdown; never reached in practice */
  mlt__spin_unlock(&pool_mu);
}

void mlt__slots_put_indices(const uint32_t *idx, size_t n) { pool_put(idx, n); }

void mlt__span_free_payload(mlt__span *s, mlt__tls *tls) {
  if (s->flags & MLT__SF_CJSON) {
    mlt__log_iter it;
    mlt__log_iter_init(&it, s);
    const mlt__rec *r;
    while ((r = mlt__log_iter_next(&it)) != NULL) {
      if (r->sub == MLT__V_CJSON && r->kind != MLT__R_FIELD) {
        cJSON *v;
        memcpy(&v, mlt__rec_val(r), sizeof v);
        cJSON_Delete(v);
      }
    }
  }
  mlt__chunk *c = atomic_load_explicit(&s->head.next, memory_order_relaxed);
  while (c) {
    mlt__chunk *n = atomic_load_explicit(&c->next, memory_order_relaxed);
    mlt__chunk_free(tls, c);
    c = n;
  }
  atomic_store_explicit(&s->head.next, NULL, memory_order_relaxed);
  s->flags &= (uint8_t)~MLT__SF_CJSON;
}

void mlt__slot_release(mlt__span *s, mlt__tls *tls) {
  mlt__span_free_payload(s, tls);
  if (s->ctx) {
    mlt_context_release(s->ctx);
    s->ctx = NULL;
  }
  uint64_t gs = atomic_load_explicit(&s->gs, memory_order_relaxed);
  atomic_store_explicit(&s->gs, MLT__GS(next_gen(MLT__GS_GEN(gs)), MLT__S_FREE), memory_order_release);
  atomic_fetch_sub_explicit(&in_use, 1, memory_order_relaxed);
  if (tls) {
    if (tls->n_mag == MLT__MAG_SIZE) {
      pool_put(tls->mag + BATCH, BATCH);
      tls->n_mag = BATCH;
    }
    tls->mag[tls->n_mag++] = s->index;
  } else {
    pool_put(&s->index, 1);
  }
}

size_t mlt__slots_in_use(void) {
  int64_t v = atomic_load_explicit(&in_use, memory_order_relaxed);
  return v > 0 ? (size_t)v : 0;
}

/* In the child of fork(): forget the parent's slots (not freed: the memory
 * is the parent's copy-on-write image) so that mlt_init() starts afresh. */
void mlt__slots_atfork_child(void) {
  atomic_flag_clear(&pool_mu);
  mlt__forget(pool);
  for (uint32_t i = 0; i < n_chunks; i++) mlt__forget(atomic_load_explicit(&mlt__g_slot_chunks[i], memory_order_relaxed));
  pool = NULL;
  pool_n = pool_cap = 0;
  n_chunks = 0;
  for (uint32_t i = 0; i < MLT__SLOT_MAX_CHUNKS; i++) atomic_store_explicit(&mlt__g_slot_chunks[i], NULL, memory_order_relaxed);
  atomic_store(&in_use, 0);
}

void mlt__slots_shutdown(void) {
  mlt__spin_lock(&pool_mu);
  for (uint32_t i = 0; i < n_chunks; i++) {
    mlt__span *c = atomic_load(&mlt__g_slot_chunks[i]);
    atomic_store(&mlt__g_slot_chunks[i], NULL);
    /* Spans still allocated here were abandoned (e.g. expired and never
     * ended by their owner): free their log chunks too. */
    for (uint32_t k = 0; c && k < MLT__SLOT_CHUNK; k++) {
      if (MLT__GS_STATE(atomic_load(&c[k].gs)) == MLT__S_FREE) continue;
      mlt__span_free_payload(&c[k], NULL);
      if (c[k].ctx) mlt_context_release(c[k].ctx);
    }
    free(c);
  }
  n_chunks = 0;
  free(pool);
  pool = NULL;
  pool_n = pool_cap = 0;
  atomic_store(&in_use, 0);
  mlt__spin_unlock(&pool_mu);
}
