/* lib/core/chunks.c: memory for span record logs beyond the slot's inline part.
 *
 * App threads allocate log chunks; the export thread frees them.  Passing
 * that traffic through malloc makes the two threads fight over glibc arena
 * locks (futex calls per span under load), so chunks come in power-of-two
 * size classes (128 B .. 64 KiB) from per-thread caches that refill from and
 * spill to global lists in batches: one short lock per CACHE/2 chunks.
 * Larger chunks go straight to malloc.
 *
 * Layer: core -- touches chunk memory and the per-thread caches (mlt__tls)
 * only; includes core/ and util/.
 */
#include "core/span-internal.h"

#include <sched.h>
#include <stdlib.h>

#define MIN_SHIFT 7 /* 128 B */
#define MAX_CLASS MLT__CHUNK_CLASSES
/* Per class, beyond which freed chunks go back to malloc.  The lists fill
 * up to it after any burst and stay there (allocations and frees balance):
 * at 8 MiB, a server with 10,000 requests in flight kept ~22 MiB of free
 * chunks of three classes. */
#define GLOBAL_MAX_BYTES (2u << 20)

typedef struct freelist {
  atomic_flag lock;
  mlt__chunk *head;
  size_t n;
} freelist;

static freelist g_free[MAX_CLASS];

void mlt__spin_lock_slow(atomic_flag *f) {
  int spins = 0;
  while (atomic_flag_test_and_set_explicit(f, memory_order_acquire)) {
    if (++spins > 64) {
      sched_yield();
      spins = 0;
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
}


static size_t class_size(int k) { return (size_t)1 << (MIN_SHIFT + k); }

_Static_assert(sizeof(mlt__chunk) == 16, "chunk header size (mlt__chunk_class)");
static inline int class_for(size_t need) { return mlt__chunk_class(need); }

static inline int class_of(const mlt__chunk *c) {
  size_t total = (size_t)c->cap + sizeof(mlt__chunk);
  if (total & (total - 1)) return -1;
  int k = __builtin_ctzll((unsigned long long)total) - MIN_SHIFT;
  return k >= 0 && k < MAX_CLASS ? k : -1;
}

mlt__chunk *mlt__chunk_alloc(mlt__tls *tls, size_t need) {
  int k = class_for(need);
  mlt__chunk *c = NULL;
  if (MLT_LIKELY(k >= 0 && tls && tls->n_chunks[k])) {
    /* the common case: this thread's cache */
    c = tls->chunks[k][--tls->n_chunks[k]];
    atomic_init(&c->next, NULL);
    atomic_init(&c->used, 0);
    return c;
  }
  if (k >= 0 && tls) {
    if (tls->n_chunks[k] == 0) {
      freelist *fl = &g_free[k];
      mlt__spin_lock(&fl->lock);
      while (fl->head && tls->n_chunks[k] < mlt__chunk_cache_max(k) / 2) {
        mlt__chunk *x = fl->head;
        fl->head = atomic_load_explicit(&x->next, memory_order_relaxed);
        fl->n--;
        tls->chunks[k][tls->n_chunks[k]++] = x;
      }
      mlt__spin_unlock(&fl->lock);
    }
    if (tls->n_chunks[k]) c = tls->chunks[k][--tls->n_chunks[k]];
  }
  if (!c) {
    size_t total = k >= 0 ? class_size(k) : sizeof(mlt__chunk) + need;
    if (total - sizeof(mlt__chunk) > UINT32_MAX) return NULL;
    c = malloc(total);
    if (!c) return NULL;
    c->cap = (uint32_t)(total - sizeof(mlt__chunk));
  }
  atomic_init(&c->next, NULL);
  atomic_init(&c->used, 0);
  return c;
}

void mlt__chunk_free(mlt__tls *tls, mlt__chunk *c) {
  int k = class_of(c);
  if (k < 0) {
    free(c);
    return;
  }
  if (tls) {
    if (tls->n_chunks[k] >= mlt__chunk_cache_max(k)) {
      /* Spill half to the global list (or to malloc past its bound). */
      freelist *fl = &g_free[k];
      mlt__spin_lock(&fl->lock);
      while (tls->n_chunks[k] > mlt__chunk_cache_max(k) / 2) {
        mlt__chunk *x = tls->chunks[k][--tls->n_chunks[k]];
        if (fl->n * class_size(k) >= GLOBAL_MAX_BYTES) {
          mlt__spin_unlock(&fl->lock);
          free(x);
          mlt__spin_lock(&fl->lock);
          continue;
        }
        atomic_store_explicit(&x->next, fl->head, memory_order_relaxed);
        fl->head = x;
        fl->n++;
      }
      mlt__spin_unlock(&fl->lock);
    }
    tls->chunks[k][tls->n_chunks[k]++] = c;
    return;
  }
  freelist *fl = &g_free[k];
  mlt__spin_lock(&fl->lock);
  if (fl->n * class_size(k) < GLOBAL_MAX_BYTES) {
    atomic_store_explicit(&c->next, fl->head, memory_order_relaxed);
    fl->head = c;
    fl->n++;
    c = NULL;
  }
  mlt__spin_unlock(&fl->lock);
  free(c);
}

/* A thread's cache goes back to the global lists (thread exit). */
void mlt__chunks_return_cache(mlt__tls *tls) {
  for (int k = 0; k < MAX_CLASS; k++) {
    while (tls->n_chunks[k]) {
      mlt__chunk *x = tls->chunks[k][--tls->n_chunks[k]];
      mlt__chunk_free(NULL, x);
    }
  }
}

void mlt__chunks_atfork_child(void) {
  for (int k = 0; k < MAX_CLASS; k++) {
    atomic_flag_clear(&g_free[k].lock);
    mlt__forget(g_free[k].head);
    g_free[k].head = NULL;
    g_free[k].n = 0;
  }
}

void mlt__chunks_shutdown(void) {
  for (int k = 0; k < MAX_CLASS; k++) {
    freelist *fl = &g_free[k];
    mlt__spin_lock(&fl->lock);
    mlt__chunk *c = fl->head;
    while (c) {
      mlt__chunk *n = atomic_load_explicit(&c->next, memory_order_relaxed);
      free(c);
      c = n;
    }
    fl->head = NULL;
    fl->n = 0;
    mlt__spin_unlock(&fl->lock);
  }
}
