/* lib/core/tls.c: per-thread state -- creation on a thread's first span,
 * the registry of live threads, retirement at thread exit (its counters and
 * last finished trace folded into the process totals), the per-library-epoch
 * reset, and the misuse counters and warnings.  It owns mlt__tls and the
 * thread-local pointers to it.  Core layer: touches slots, chunks and trace
 * caches (to give a retiring thread's back) and util/ logging.
 */
#include "core/record-internal.h"
#include "core/scope-internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

MLT_TLS mlt__tls_ref mlt__tls_here;

/* ---- per-thread state ------------------------------------------------ */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static mlt__tls *reg_head;
static pthread_key_t tls_key;
static int tls_key_ok;
static mlt__tls_counters dead_counters; /* folded from exited threads */
static uint64_t dead_last_hi, dead_last_lo;   /* newest last trace of exited threads */
static int64_t dead_last_stamp;

static void add_counters(mlt__tls_counters *dst, const mlt__tls_counters *src) {
  dst->spans_started += src->spans_started;
  dst->traces_started += src->traces_started;
  dst->traces_sampled_out += src->traces_sampled_out;
  dst->spans_over_limit += src->spans_over_limit;
  dst->events_dropped += src->events_dropped;
  dst->values_truncated += src->values_truncated;
  dst->misuse += src->misuse;
}

/* Read a thread's last-trace record (any thread). */
static int64_t last_read(mlt__last_trace *l, uint64_t *hi, uint64_t *lo) {
  for (;;) {
    uint32_t s1 = atomic_load_explicit(&l->seq, memory_order_acquire);
    uint64_t h = atomic_load_explicit(&l->hi, memory_order_acquire);
    uint64_t o = atomic_load_explicit(&l->lo, memory_order_acquire);
    int64_t st = atomic_load_explicit(&l->stamp, memory_order_acquire);
    if (!(s1 & 1) && atomic_load_explicit(&l->seq, memory_order_relaxed) == s1) {
      *hi = h;
      *lo = o;
      return st;
    }
    sched_yield();
  }
}

/* Caller holds reg_mu. */
static void fold_last(uint64_t hi, uint64_t lo, int64_t stamp) {
  if (stamp && stamp >= dead_last_stamp) {
    dead_last_hi = hi;
    dead_last_lo = lo;
    dead_last_stamp = stamp;
  }
}

/* Caller holds reg_mu; |t| is registered. */
static void tls_retire(mlt__tls *t) {
  add_counters(&dead_counters, &t->c);
  uint64_t hi, lo;
  int64_t st = last_read(&t->last, &hi, &lo);
  fold_last(hi, lo, st);
  mlt__chunks_return_cache(t);
  for (uint32_t i = 0; i < t->depth && i < MLT__MAX_ATTACH; i++) {
    if (t->frames[i].ctx) mlt_context_release(t->frames[i].ctx);
    mlt__scope_release(t->frames[i].own_scope);
  }
  if (t->prev_reg)
    t->prev_reg->next_reg = t->next_reg;
  else
    reg_head = t->next_reg;
  if (t->next_reg) t->next_reg->prev_reg = t->prev_reg;
}


static void tls_destructor(void *p) {
  mlt__tls *t = p;
  pthread_mutex_lock(&reg_mu);
  mlt__tls *it = reg_head;
  while (it && it != t) it = it->next_reg;
  if (it) {
    tls_retire(t);
    if (t->n_mag) mlt__slots_put_indices(t->mag, t->n_mag);
    mlt__slots_put_ring(t);
    if (t->n_tfree) mlt__traces_put_cache(t->tfree, t->n_tfree);
    free(t);
  }
  pthread_mutex_unlock(&reg_mu);
  mlt__tls_ptr = NULL;
  mlt__tls_epoch = 0;
}

static uint64_t seed_rng(mlt__tls *t) {
  uint64_t seed = 0;
#ifdef HAVE_GETRANDOM
  if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) seed = 0;
#endif
  seed ^= (uint64_t)mlt__now_ns() * UINT64_C(0x9E3779B97F4A7C15);
  seed ^= (uint64_t)(uintptr_t)t;
  seed ^= (uint64_t)getpid() << 32;
  return seed;
}

mlt__tls *mlt__tls_get_slow(void) {
  uint32_t ep = atomic_load(&mlt__g_epoch);
  if (ep == 0 || atomic_load(&mlt__g_state) == MLT__G_OFF) return NULL;
  mlt__idkeys_init();
  /* Every span is started after some thread made its state in this epoch,
   * when the configuration is final. */
  atomic_store_explicit(&mlt__g_tiny_value, MLT_MIN((size_t)32, (size_t)mlt__g_cfg.max_value_bytes),
                        memory_order_relaxed);
  mlt__tls *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->rng = seed_rng(t);
  pthread_mutex_lock(&reg_mu);
  if (!tls_key_ok) {
    if (pthread_key_create(&tls_key, tls_destructor) != 0) {
      pthread_mutex_unlock(&reg_mu);
      free(t);
      return NULL;
    }
    tls_key_ok = 1;
  }
  t->next_reg = reg_head;
  if (reg_head) reg_head->prev_reg = t;
  reg_head = t;
  pthread_setspecific(tls_key, t);
  pthread_mutex_unlock(&reg_mu);
  mlt__tls_ptr = t;
  mlt__tls_epoch = ep;
  return t;
}

void mlt__tls_sum_counters(mlt__tls_counters *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&reg_mu);
  add_counters(out, &dead_counters);
  for (mlt__tls *t = reg_head; t; t = t->next_reg) add_counters(out, &t->c);
  pthread_mutex_unlock(&reg_mu);
}

/* Called by mlt_shutdown() after the epoch was bumped: every thread's state
 * is freed; threads notice the epoch change and never touch it again.  The
 * counters are kept (readable after shutdown) until mlt__tls_reset(). */
void mlt__tls_shutdown(void) {
  pthread_mutex_lock(&reg_mu);
  while (reg_head) {
    mlt__tls *t = reg_head;
    tls_retire(t);
    free(t);
  }
  if (tls_key_ok) {
    pthread_key_delete(tls_key);
    tls_key_ok = 0;
  }
  pthread_mutex_unlock(&reg_mu);
}

void mlt__tls_atfork_child(void) {
  pthread_mutex_init(&reg_mu, NULL);
  mlt__forget(reg_head);
  reg_head = NULL;
  memset(&dead_counters, 0, sizeof dead_counters);
  dead_last_stamp = 0;
}

/* The newest of every thread's last finished trace. */
int mlt__tls_last_trace(uint64_t *hi, uint64_t *lo) {
  pthread_mutex_lock(&reg_mu);
  uint64_t bh = dead_last_hi, bl = dead_last_lo;
  int64_t best = dead_last_stamp;
  for (mlt__tls *t = reg_head; t; t = t->next_reg) {
    uint64_t h, l;
    int64_t st = last_read(&t->last, &h, &l);
    if (st && st >= best) {
      best = st;
      bh = h;
      bl = l;
    }
  }
  pthread_mutex_unlock(&reg_mu);
  *hi = bh;
  *lo = bl;
  return best != 0;
}

void mlt__tls_last_reset(void) {
  pthread_mutex_lock(&reg_mu);
  dead_last_stamp = 0; /* called after mlt__tls_shutdown(): no live records left */
  pthread_mutex_unlock(&reg_mu);
}

void mlt__tls_reset_counters(void) {
  pthread_mutex_lock(&reg_mu);
  memset(&dead_counters, 0, sizeof dead_counters);
  pthread_mutex_unlock(&reg_mu);
}

/* An explicit end time before the span's start (the span ended at its
 * start): counted as misuse, logged. */
MLT_NOINLINE void mlt__note_clamped(const char *what) {
  mlt__tls *tls = mlt__tls_get();
  if (tls) tls->c.misuse++;
  mlt__log(MLT_LOG_WARN, MLT__LOGK_MISUSE, "%s: end time before the span's start; the span ended at its start",
           what);
}

void mlt__count_misuse(const char *what, int status) {
  if (!mlt__running()) return;
  mlt__tls *tls = mlt__tls_get();
  if (tls) tls->c.misuse++;
  mlt__log(MLT_LOG_WARN, MLT__LOGK_MISUSE, "%s: %s", what, mlt_strerror(status));
}

int mlt__span_report(const char *what, int rc) {
  if (rc == MLT_ESTALE && !mlt__running()) return MLT_ENOTINIT;
  if (rc == MLT_EENDED || rc == MLT_ESTALE) mlt__count_misuse(what, rc);
  return rc;
}

