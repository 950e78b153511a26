/* lib/core/slots.c: the span slot table.
 *
 * Slots live in one reserved address range, committed 1024 slots at a time
 * and never released while the library runs, so a stale handle can always be
 * checked against its slot's generation, and a slot's address is the table's
 * base plus its index.
 * Free slot indices circulate through per-thread magazines (no lock, no
 * atomic operation on the hot path) and a global pool of batches of
 * MLT__MAG_SIZE / 2 indices, a lock-free stack that magazines refill from and
 * spill to: one compare-and-swap per 128 spans.  Only growing the table (a
 * new chunk of slots) takes a mutex.
 *
 * Layer: core -- touches the slot table and the per-thread magazines only; includes core/ and util/.
 */
#include "core/span-internal.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

mlt__span *mlt__g_slots;
_Atomic uint32_t mlt__g_slots_n;
static size_t g_slots_reserved; /* slots the reserved range holds */
static size_t g_slots_bytes;    /* its size */

#define BATCH (MLT__MAG_SIZE / 2)
#define SB_BLOCK 64 /* batch nodes per allocation */
#define SB_MAX_BLOCKS (MLT__SLOT_MAX / BATCH / SB_BLOCK * 2)

typedef struct sbatch {
  _Atomic uint32_t next; /* lock-free stack link */
  uint32_t n;
  uint32_t idx[BATCH];
} sbatch;

static pthread_mutex_t grow_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t n_chunks;                     /* under grow_mu */
static sbatch *_Atomic sb_blocks[SB_MAX_BLOCKS];
static uint32_t n_sb;                         /* batch nodes made, under grow_mu */
static _Atomic uint64_t g_full, g_empty;      /* stacks of full and empty batch nodes */

static sbatch *sb_at(uint32_t num) {
  sbatch *blk = atomic_load_explicit(&sb_blocks[(num - 1) / SB_BLOCK], memory_order_acquire);
  return &blk[(num - 1) % SB_BLOCK];
}
static _Atomic uint32_t *sb_next(uint32_t num) { return &sb_at(num)->next; }

/* A new batch node (0: out of memory).  Caller holds grow_mu. */
static uint32_t sb_new_locked(void) {
  if (n_sb % SB_BLOCK == 0) {
    if (n_sb / SB_BLOCK >= SB_MAX_BLOCKS) return 0;
    sbatch *blk = calloc(SB_BLOCK, sizeof *blk);
    if (!blk) return 0;
    atomic_store_explicit(&sb_blocks[n_sb / SB_BLOCK], blk, memory_order_release);
  }
  return ++n_sb;
}

/* A batch node: a recycled one, or a new one (0: out of memory). */
static uint32_t sb_node(int locked) {
  uint32_t num = mlt__lf_pop(&g_empty, sb_next);
  if (num) return num;
  if (!locked) pthread_mutex_lock(&grow_mu);
  num = sb_new_locked();
  if (!locked) pthread_mutex_unlock(&grow_mu);
  return num;
}

/* Hand |n| indices to the pool, in batches.  Returns how many were taken
 * (fewer only when out of memory: those slots stay unused until shutdown). */
static size_t pool_put_ex(const uint32_t *idx, size_t n, int locked) {
  size_t done = 0;
  while (done < n) {
    uint32_t num = sb_node(locked);
    if (!num) break;
    sbatch *b = sb_at(num);
    b->n = (uint32_t)MLT_MIN((size_t)BATCH, n - done);
    memcpy(b->idx, idx + done, b->n * sizeof *idx);
    done += b->n;
    mlt__lf_push(&g_full, num, sb_next);
  }
  return done;
}
static size_t pool_put(const uint32_t *idx, size_t n) { return pool_put_ex(idx, n, 0); }

static uint32_t next_gen(uint32_t gen) {
  gen++;
  if (gen == 0 || gen >= 0xFFFFFFFEu) gen = 1;
  return gen;
}

/* Reserve the table's address range: as large as the address space allows
 * (no memory is committed until used).  Caller holds grow_mu. */
static int reserve(void) {
  for (size_t n = MLT__SLOT_MAX; n >= MLT__SLOT_CHUNK * 16; n /= 4) {
    size_t bytes = n * sizeof(mlt__span);
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
      mlt__g_slots = p;
      g_slots_reserved = n;
      g_slots_bytes = bytes;
      return 0;
    }
  }
  return -1;
}

/* A new chunk of slots, its indices in the pool.  Caller holds grow_mu. */
static int add_chunk(void) {
  if (!mlt__g_slots && reserve() != 0) return -1;
  if ((size_t)n_chunks * MLT__SLOT_CHUNK + MLT__SLOT_CHUNK > g_slots_reserved) return -1;
  mlt__span *c = mlt__g_slots + (size_t)n_chunks * MLT__SLOT_CHUNK;
  /* Commit the pages of this chunk (fresh anonymous memory: zeroed). */
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t lo = (uintptr_t)c & ~(uintptr_t)(page - 1);
  uintptr_t hi = ((uintptr_t)(c + MLT__SLOT_CHUNK) + page - 1) & ~(uintptr_t)(page - 1);
  if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) != 0) return -1;
  /* Generations start from an epoch-dependent base, so handles kept across
   * mlt_shutdown() + mlt_init() do not match new spans. */
  uint32_t base = (atomic_load(&mlt__g_epoch) * 0x10001u) & 0x7FFFFFFFu;
  if (base == 0) base = 1;
  uint32_t first = n_chunks * MLT__SLOT_CHUNK;
  uint32_t idx[MLT__SLOT_CHUNK];
  for (uint32_t i = 0; i < MLT__SLOT_CHUNK; i++) {
    c[i].index = first + i;
    c[i].head.cap = MLT__INLINE_LOG;
    c[i].tail = &c[i].head;
    c[i].flags = MLT__SF_TEXT_ONLY;
    atomic_init(&c[i].gs, MLT__GS_MAKE(base, MLT__S_FREE, first + i));
    /* reversed, so that low indices are handed out first */
    idx[i] = first + MLT__SLOT_CHUNK - 1 - i;
  }
  n_chunks++;
  atomic_store_explicit(&mlt__g_slots_n, n_chunks * MLT__SLOT_CHUNK, memory_order_release);
  pool_put_ex(idx, MLT__SLOT_CHUNK, 1);
  return 0;
}

/* Move one batch of indices to |out| (room for BATCH), growing the table
 * when the pool is empty; returns how many (0: out of memory). */
static uint32_t take_batch(uint32_t *out) {
  uint32_t num = mlt__lf_pop(&g_full, sb_next);
  while (!num) {
    pthread_mutex_lock(&grow_mu);
    num = mlt__lf_pop(&g_full, sb_next);
    int rc = num ? 0 : add_chunk();
    pthread_mutex_unlock(&grow_mu);
    if (rc) return 0;
    if (!num) num = mlt__lf_pop(&g_full, sb_next);
  }
  sbatch *b = sb_at(num);
  uint32_t n = b->n;
  memcpy(out, b->idx, n * sizeof *b->idx);
  mlt__lf_push(&g_empty, num, sb_next);
  return n;
}

/* Fill an empty magazine from the pool. */
static int refill(mlt__tls *tls) {
  uint32_t n = take_batch(tls->mag + tls->n_mag);
  tls->n_mag += n;
  return n ? 0 : -1;
}

int mlt__slot_refill(mlt__tls *tls) { return refill(tls); }

mlt__span *mlt__slot_alloc(mlt__tls *tls) {
  uint32_t idx;
  if (MLT_LIKELY(tls != NULL)) {
    if (MLT_UNLIKELY(tls->n_mag == 0) && refill(tls) != 0) return NULL;
    idx = tls->mag[--tls->n_mag];
  } else {
    /* No thread state: take one batch, return the rest. */
    uint32_t tmp[BATCH];
    uint32_t n = take_batch(tmp);
    if (!n) return NULL;
    idx = tmp[--n];
    if (n) pool_put(tmp, n);
  }
  return mlt__slot_at(idx);
}

void mlt__slots_put_indices(const uint32_t *idx, size_t n) { pool_put(idx, n); }

void mlt__score_free_payload(mlt__score *s, mlt__tls *tls) {
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

/* Clean, FREE, next generation. */
static void slot_clean(mlt__span *s, mlt__tls *tls) {
  mlt__span_free_payload(s, tls);
  if (s->ctx) {
    mlt_context_release(s->ctx);
    s->ctx = NULL;
  }
  /* Clean, so that the next start writes only what differs. */
  __atomic_store_n(&s->status, (uint8_t)MLT_STATUS_UNSET, __ATOMIC_RELAXED); /* (mlt_span_get_status() may read it) */
  s->flags = MLT__SF_TEXT_ONLY;
  atomic_store_explicit(&s->is_root, 0, memory_order_relaxed);
  s->end_ns = 0;
  s->n_events = s->n_events_dropped = s->n_chunks = 0;
  s->n_links = s->n_links_dropped = 0;
  s->parent_id = 0;
  s->next = NULL;
  s->saved_current.id_ = 0;
  atomic_store_explicit(&s->head.used, 0, memory_order_relaxed);
  s->tail = &s->head;
  s->chunk_ref = NULL;
  uint64_t gs = atomic_load_explicit(&s->gs, memory_order_relaxed);
  atomic_store_explicit(&s->gs, MLT__GS_MAKE(next_gen(MLT__GS_GEN(gs)), MLT__S_FREE, s->index), memory_order_release);
}

static void slot_put(uint32_t index, mlt__tls *tls) {
  if (tls) {
    if (tls->n_mag == MLT__MAG_SIZE) tls->n_mag -= (uint32_t)pool_put(tls->mag + BATCH, BATCH);
    if (MLT_LIKELY(tls->n_mag < MLT__MAG_SIZE)) tls->mag[tls->n_mag++] = index;
  } else {
    pool_put(&index, 1);
  }
}

void mlt__slot_release(mlt__span *s, mlt__tls *tls) {
  slot_clean(s, tls);
  slot_put(s->index, tls);
}

void mlt__slot_release_moved(mlt__span *s, mlt__tls *tls) {
  slot_clean(s, tls);
  uint32_t idx = s->index;
  if (tls->moved_n == MLT__MOVED_RING) {
    uint32_t old = tls->moved_ring[tls->moved_head];
    tls->moved_ring[tls->moved_head] = idx;
    tls->moved_head = (tls->moved_head + 1) % MLT__MOVED_RING;
    slot_put(old, tls);
  } else {
    tls->moved_ring[(tls->moved_head + tls->moved_n++) % MLT__MOVED_RING] = idx;
  }
}

void mlt__slots_put_ring(mlt__tls *tls) {
  for (; tls->moved_n; tls->moved_n--) {
    pool_put(&tls->moved_ring[tls->moved_head], 1);
    tls->moved_head = (tls->moved_head + 1) % MLT__MOVED_RING;
  }
}

/* In the child of fork(): forget the parent's slots (not freed: the memory
 * is the parent's copy-on-write image) so that mlt_init() starts afresh. */
void mlt__slots_atfork_child(void) {
  pthread_mutex_init(&grow_mu, NULL);
  /* the slot range stays mapped (the parent's image); forgotten */
  mlt__g_slots = NULL;
  g_slots_reserved = g_slots_bytes = 0;
  atomic_store(&mlt__g_slots_n, 0);
  for (uint32_t i = 0; i < SB_MAX_BLOCKS; i++) {
    mlt__forget(atomic_load_explicit(&sb_blocks[i], memory_order_relaxed));
    atomic_store_explicit(&sb_blocks[i], NULL, memory_order_relaxed);
  }
  n_chunks = n_sb = 0;
  atomic_store(&g_full, 0);
  atomic_store(&g_empty, 0);
}

void mlt__slots_shutdown(void) {
  pthread_mutex_lock(&grow_mu);
  atomic_store(&mlt__g_slots_n, 0);
  for (size_t i = 0; i < (size_t)n_chunks * MLT__SLOT_CHUNK; i++) {
    /* Spans still allocated were abandoned (e.g. expired and never ended by
     * their owner): free their log chunks too. */
    mlt__span *c = &mlt__g_slots[i];
    if (MLT__GS_STATE(atomic_load(&c->gs)) == MLT__S_FREE) continue;
    mlt__span_free_payload(c, NULL);
    if (c->ctx) mlt_context_release(c->ctx);
  }
  if (mlt__g_slots) munmap(mlt__g_slots, g_slots_bytes);
  mlt__g_slots = NULL;
  g_slots_reserved = g_slots_bytes = 0;
  for (uint32_t i = 0; i < SB_MAX_BLOCKS; i++) {
    sbatch *blk = atomic_load_explicit(&sb_blocks[i], memory_order_relaxed);
    if (!blk) break;
    free(blk);
    atomic_store_explicit(&sb_blocks[i], NULL, memory_order_relaxed);
  }
  n_chunks = n_sb = 0;
  atomic_store(&g_full, 0);
  atomic_store(&g_empty, 0);
  pthread_mutex_unlock(&grow_mu);
}
