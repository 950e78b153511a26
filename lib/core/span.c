/* lib/core/span.c: the span hot path: start, set, end, per-thread state.
 *
 * Nothing here takes a lock shared across traces or makes a system call other
 * than reading the clock (the per-thread state is allocated once per thread;
 * the slot magazine refills from a pool once per 64 spans).
 */
#include "core/scope-internal.h"

#include <cjson/cJSON.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

_Static_assert(offsetof(mlt__span, inline_log) == offsetof(mlt__span, head) + sizeof(mlt__chunk),
               "inline log must follow its chunk header");
_Static_assert(sizeof(mlt__rec) % MLT__REC_ALIGN == 0, "record header alignment");

MLT_TLS mlt__tls *mlt__tls_ptr;
MLT_TLS uint32_t mlt__tls_epoch;

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
static MLT_NOINLINE void note_clamped(const char *what) {
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

/* ---- record log ------------------------------------------------------ */

char *mlt__log_reserve(mlt__span *s, size_t size) {
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  if (MLT_LIKELY(c->cap - used >= size)) return mlt__chunk_data(c) + used;
  /* Chunk sizes (each a whole size class): 512 B, then 1 KiB four times,
   * then doubling up to 64 KiB.  Most logs end within a few KiB, and a
   * span holds its chunks until the trace is exported: doubling from the
   * start left up to half of a typical LLM span's log empty (4 KiB taken
   * for ~500 bytes of outputs at the end). */
  size_t cap;
  if (c == &s->head) {
    cap = 512 - sizeof(mlt__chunk);
  } else {
    int k = 0;
    for (const mlt__chunk *x = atomic_load_explicit(&s->head.next, memory_order_relaxed); x && k < 5;
         x = atomic_load_explicit(&x->next, memory_order_relaxed))
      k++;
    cap = k < 5 ? 1024 - sizeof(mlt__chunk) : ((size_t)c->cap + sizeof(mlt__chunk)) * 2 - sizeof(mlt__chunk);
  }
  if (cap > 65536 - sizeof(mlt__chunk)) cap = 65536 - sizeof(mlt__chunk);
  if (cap < size) cap = size;
  if (cap > UINT32_MAX - 64) return NULL;
  mlt__tls *tls = mlt__tls_get();
  int k = mlt__chunk_class(cap);
  mlt__chunk *n;
  if (MLT_LIKELY(tls && k >= 0 && tls->n_chunks[k])) {
    /* this thread's cache (the export thread refills the pool) */
    n = tls->chunks[k][--tls->n_chunks[k]];
    atomic_init(&n->next, NULL);
    atomic_init(&n->used, 0);
  } else if (!(n = mlt__chunk_alloc(tls, cap))) {
    return NULL;
  }
  atomic_store_explicit(&c->next, n, memory_order_release);
  s->tail = n;
  return mlt__chunk_data(n);
}

void mlt__log_publish(mlt__span *s, size_t size) {
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
}

/* One 8-byte store: the compiler folds the constant fields. */
static inline void write_rec(char *p, unsigned kind, unsigned sub, unsigned flags, unsigned aux, size_t key_len,
                             size_t val_len) {
  mlt__rec r = {.kind = kind, .sub = sub, .flags = flags, .aux = aux, .key_len = (uint32_t)key_len,
                .val_len = (uint32_t)val_len};
  memcpy(p, &r, sizeof r);
}

/* Bytes of |val| kept once max_value_bytes is applied (cut at a UTF-8
 * boundary); *trunc tells whether the value was cut.  A truncated value is
 * stored as u64 original length + the kept bytes. */
static size_t value_cut(int sub, const char *val, size_t len, int *trunc) {
  *trunc = 0;
  if ((sub == MLT__V_STR || sub == MLT__V_JSON) && len > mlt__g_cfg.max_value_bytes) {
    *trunc = 1;
    return mlt__utf8_cut(val, mlt__g_cfg.max_value_bytes);
  }
  return len;
}

static void put_value(char *p, int trunc, const char *val, size_t kept, size_t orig_len) {
  if (trunc) {
    uint64_t orig = orig_len;
    memcpy(p, &orig, 8);
    p += 8;
    mlt__tls *tls = mlt__tls_get();
    if (tls) tls->c.values_truncated++;
  }
  if (kept) memcpy(p, val, kept);
}

static MLT_NOINLINE int append_slow(mlt__span *s, int kind, int sub, unsigned flags, const char *key,
                                    size_t key_len, const char *val, size_t val_len, int aux) {
  if (key_len > MLT__KEY_MAX) key_len = mlt__utf8_cut(key, MLT__KEY_MAX);
  int trunc;
  size_t kept = value_cut(sub, val, val_len, &trunc);
  size_t vlen = kept + (trunc ? 8 : 0);
  size_t size = mlt__rec_size(key_len, vlen);
  char *p = mlt__log_reserve(s, size);
  if (MLT_UNLIKELY(!p)) return MLT_ENOMEM;
  write_rec(p, (unsigned)kind, (unsigned)sub, flags | (trunc ? MLT__RF_TRUNC : 0), (unsigned)aux, key_len, vlen);
  if (key_len) memcpy(p + sizeof(mlt__rec), key, key_len);
  put_value(p + sizeof(mlt__rec) + key_len, trunc, val, kept, val_len);
  mlt__log_publish(s, size);
  return MLT_OK;
}

/* Copy n bytes without a libc call for the short keys and values that make
 * up most attributes (overlapping word moves). */
static inline void small_copy(char *dst, const char *src, size_t n) {
  if (n >= 8) {
    if (n <= 16) {
      uint64_t a, b;
      memcpy(&a, src, 8);
      memcpy(&b, src + n - 8, 8);
      memcpy(dst, &a, 8);
      memcpy(dst + n - 8, &b, 8);
    } else if (n <= 32) {
      uint64_t a, b, c, d;
      memcpy(&a, src, 8);
      memcpy(&b, src + 8, 8);
      memcpy(&c, src + n - 16, 8);
      memcpy(&d, src + n - 8, 8);
      memcpy(dst, &a, 8);
      memcpy(dst + 8, &b, 8);
      memcpy(dst + n - 16, &c, 8);
      memcpy(dst + n - 8, &d, 8);
    } else {
      memcpy(dst, src, n);
    }
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, src, 4);
    memcpy(&b, src + n - 4, 4);
    memcpy(dst, &a, 4);
    memcpy(dst + n - 4, &b, 4);
  } else if (n) {
    /* 1..3 bytes: first, middle, last */
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

/* Up to 32 bytes with word moves and no call (the attribute fast paths). */
static MLT_ALWAYS_INLINE void tiny_copy(char *dst, const char *src, size_t n) {
  if (n >= 8) {
    uint64_t a, b;
    if (n > 16) {
      uint64_t c, d;
      memcpy(&a, src, 8);
      memcpy(&b, src + 8, 8);
      memcpy(&c, src + n - 16, 8);
      memcpy(&d, src + n - 8, 8);
      memcpy(dst, &a, 8);
      memcpy(dst + 8, &b, 8);
      memcpy(dst + n - 16, &c, 8);
      memcpy(dst + n - 8, &d, 8);
      return;
    }
    memcpy(&a, src, 8);
    memcpy(&b, src + n - 8, 8);
    memcpy(dst, &a, 8);
    memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, src, 4);
    memcpy(&b, src + n - 4, 4);
    memcpy(dst, &a, 4);
    memcpy(dst + n - 4, &b, 4);
  } else if (n) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}
#define MLT__TINY 32
/* min(MLT__TINY, max_value_bytes): values up to this take the fast paths
 * (0, the general path, until a thread of this library epoch set it). */
_Atomic size_t mlt__g_tiny_value;

/* The hot path: a record that fits the current chunk and needs no
 * truncation is written in place (header, key, value, one release store);
 * everything else takes append_slow(). */
static MLT_ALWAYS_INLINE int append_rec(mlt__span *s, unsigned kind, unsigned sub, unsigned flags,
                                        const char *key, size_t key_len, const void *val, size_t val_len,
                                        unsigned aux) {
  if (MLT_UNLIKELY(key_len > MLT__KEY_MAX || val_len > mlt__g_cfg.max_value_bytes))
    return append_slow(s, (int)kind, (int)sub, flags, key, key_len, val, val_len, (int)aux);
  size_t size = mlt__rec_size(key_len, val_len);
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  if (MLT_UNLIKELY(c->cap - used < size))
    return append_slow(s, (int)kind, (int)sub, flags, key, key_len, val, val_len, (int)aux);
  char *p = mlt__chunk_data(c) + used;
  write_rec(p, kind, sub, flags, aux, key_len, val_len);
  small_copy(p + sizeof(mlt__rec), key, key_len);
  small_copy(p + sizeof(mlt__rec) + key_len, val, val_len);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
  return MLT_OK;
}
#define append_fast(s, kind, sub, key, key_len, val, val_len, aux) \
  append_rec((s), (kind), (sub), 0, (key), (key_len), (val), (val_len), (aux))

int mlt__append_value(mlt__span *s, int kind, int sub, const char *key, size_t key_len, const char *val,
                      size_t val_len, int aux) {
  return append_fast(s, (unsigned)kind, (unsigned)sub, key, key_len, val, val_len, (unsigned)aux);
}

static size_t attr_val_len(const mlt_attr *a) {
  switch (a->type) {
    case MLT_ATTR_STRING:
    case MLT_ATTR_JSON:
      if (!a->v.s) return 0;
      return a->len == MLT_NTS ? strlen(a->v.s) : a->len;
    case MLT_ATTR_BOOL:
      return 0; /* the value is in the header (aux) */
    default:
      return 8;
  }
}

static int attr_sub(const mlt_attr *a) {
  switch (a->type) {
    case MLT_ATTR_STRING:
      return MLT__V_STR;
    case MLT_ATTR_INT:
      return MLT__V_I64;
    case MLT_ATTR_DOUBLE:
      return MLT__V_F64;
    case MLT_ATTR_BOOL:
      return MLT__V_BOOL;
    case MLT_ATTR_JSON:
      return MLT__V_JSON;
  }
  return MLT__V_NONE;
}

/* Stored key length and value length of an attribute record. */
static void attr_lens(const mlt_attr *a, size_t *klen, size_t *kept, int *trunc) {
  *klen = a->key ? strlen(a->key) : 0;
  if (*klen > MLT__KEY_MAX) *klen = mlt__utf8_cut(a->key, MLT__KEY_MAX);
  int sub = attr_sub(a);
  *trunc = 0;
  if (sub == MLT__V_STR || sub == MLT__V_JSON)
    *kept = value_cut(sub, a->v.s ? a->v.s : "", attr_val_len(a), trunc);
  else
    *kept = attr_val_len(a);
}

static size_t attr_rec_size(const mlt_attr *a) {
  size_t klen, kept;
  int trunc;
  attr_lens(a, &klen, &kept, &trunc);
  return mlt__rec_size(klen, kept + (trunc ? 8 : 0));
}

/* Write a typed attribute record (kind ATTR or FIELD) at |p|; returns size. */
static size_t put_attr_rec(char *p, int kind, const mlt_attr *a) {
  size_t klen, kept;
  int trunc;
  attr_lens(a, &klen, &kept, &trunc);
  int sub = attr_sub(a);
  char num[8];
  const char *src = num;
  unsigned aux = 0;
  if (sub == MLT__V_STR || sub == MLT__V_JSON) {
    src = a->v.s ? a->v.s : "";
  } else if (sub == MLT__V_I64) {
    memcpy(num, &a->v.i, 8);
  } else if (sub == MLT__V_F64) {
    memcpy(num, &a->v.d, 8);
  } else if (sub == MLT__V_BOOL) {
    aux = a->v.b ? 1 : 0;
  }
  size_t vlen = kept + (trunc ? 8 : 0);
  write_rec(p, (unsigned)kind, (unsigned)sub, trunc ? MLT__RF_TRUNC : 0, aux, klen, vlen);
  if (klen) memcpy(p + sizeof(mlt__rec), a->key, klen);
  put_value(p + sizeof(mlt__rec) + klen, trunc, src, kept, attr_val_len(a));
  return mlt__rec_size(klen, vlen);
}

/* A header record followed by |n| FIELD children, reserved as one block. */
static int append_group(mlt__span *s, int kind, int sub, const char *key, size_t key_len, const char *hdr_val,
                        size_t hdr_len, const mlt_attr *attrs, size_t n) {
  if (key_len > MLT__KEY_MAX) key_len = mlt__utf8_cut(key, MLT__KEY_MAX);
  size_t size = mlt__rec_size(key_len, hdr_len);
  for (size_t i = 0; i < n; i++) size += attr_rec_size(&attrs[i]);
  char *p = mlt__log_reserve(s, size);
  if (!p) return MLT_ENOMEM;
  write_rec(p, (unsigned)kind, (unsigned)sub, 0, 0, key_len, hdr_len);
  if (key_len) memcpy(p + sizeof(mlt__rec), key, key_len);
  memcpy(p + sizeof(mlt__rec) + key_len, hdr_val, hdr_len);
  size_t off = mlt__rec_size(key_len, hdr_len);
  for (size_t i = 0; i < n; i++) off += put_attr_rec(p + off, MLT__R_FIELD, &attrs[i]);
  mlt__log_publish(s, off);
  return MLT_OK;
}

int mlt__append_event(mlt__span *s, const char *name, int64_t ts, const mlt_attr *attrs, size_t n) {
  char hdr[16];
  uint64_t cnt = n;
  memcpy(hdr, &ts, 8);
  memcpy(hdr + 8, &cnt, 8);
  return append_group(s, MLT__R_EVENT, MLT__V_NONE, name, strlen(name), hdr, 16, attrs, n);
}

int mlt__append_link(mlt__span *s, uint64_t hi, uint64_t lo, uint64_t span_id, const mlt_attr *attrs, size_t n) {
  uint64_t hdr[4] = {hi, lo, span_id, n};
  return append_group(s, MLT__R_LINK, MLT__V_NONE, NULL, 0, (const char *)hdr, sizeof hdr, attrs, n);
}

int mlt__log_copy(mlt__span *dst, mlt__span *src) {
  mlt__log_iter it;
  mlt__log_iter_init(&it, src);
  const mlt__rec *r;
  while ((r = mlt__log_iter_next(&it)) != NULL) {
    size_t size = mlt__rec_size(r->key_len, r->val_len);
    if (r->sub == MLT__V_CJSON && r->kind != MLT__R_FIELD) {
      /* The original keeps ownership of cJSON values: copy it as text. */
      cJSON *v;
      memcpy(&v, mlt__rec_val(r), sizeof v);
      char *txt = v ? cJSON_PrintUnformatted(v) : NULL;
      int rc = mlt__append_value(dst, r->kind, MLT__V_JSON, mlt__rec_key(r), r->key_len, txt ? txt : "null",
                                 txt ? strlen(txt) : 4, r->aux);
      free(txt);
      if (rc) return rc;
      continue;
    }
    char *p = mlt__log_reserve(dst, size);
    if (!p) return MLT_ENOMEM;
    memcpy(p, r, size);
    mlt__log_publish(dst, size);
  }
  return MLT_OK;
}

/* ---- span life cycle ------------------------------------------------- */

/* The fields of a fresh span that differ from a clean slot (see
 * mlt__span in span-internal.h; its state is still FREE). */
static MLT_ALWAYS_INLINE void span_init_fields(mlt__span *s, mlt__trace *t, uint64_t span_id, uint64_t parent_id,
                                               mlt_span_type type, int64_t start_ns) {
  s->type = (uint8_t)type;
  s->span_id = span_id;
  s->parent_id = parent_id;
  s->start_ns = start_ns;
  atomic_store_explicit(&s->trace, t, memory_order_relaxed);
}

/* OPEN, with a release store: the fields and records above are visible to
 * whoever resolves the handle. */
static MLT_ALWAYS_INLINE void span_publish_open(mlt__span *s, uint64_t gs) {
  atomic_store_explicit(&s->gs, MLT__GS(MLT__GS_GEN(gs), MLT__S_OPEN), memory_order_release);
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
  if (parent_span) {
    mlt__trace *pt = atomic_load_explicit(&parent_span->trace, memory_order_relaxed);
    parent_id = parent_span->span_id;
    hi = pt->id_hi;
    lo = pt->id_lo;
    if (mlt__trace_join(pt))
      t = pt;
    else
      tflags = MLT__TF_CONTINUATION;
  } else if (parent) {
    if (MLT_UNLIKELY(!(parent->flags & MLT__CF_SAMPLED))) {
      /* A context that only carries a scope (lib/scope.c): no parent. */
      if (!(parent->flags & MLT__CF_NOSPAN)) return nonrec(tls, make_current, 0);
    } else {
      parent_id = parent->span_id;
      hi = parent->trace_hi;
      lo = parent->trace_lo;
      if (parent->trace && parent->epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed) &&
          mlt__trace_join(parent->trace))
        t = parent->trace;
      else
        tflags = (parent->flags & MLT__CF_REMOTE) ? MLT__TF_REMOTE : MLT__TF_CONTINUATION;
    }
  }
  if (t) {
    if (MLT_UNLIKELY(atomic_fetch_add_explicit(&t->n_spans, 1, memory_order_relaxed) >=
                     mlt__g_cfg.max_spans_per_trace)) {
      tls->c.spans_over_limit++;
      mlt__trace_leave(t);
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
    mlt__trace_leave(t);
    return (mlt_span){0};
  }
  mlt__span *s = mlt__slot_at(tls->mag[--tls->n_mag]);
  /* The clock is read only for spans that are recorded. */
  int64_t now = o->start_ns ? o->start_ns : mlt__now_ns();
  uint64_t gs = atomic_load_explicit(&s->gs, memory_order_relaxed);
  mlt_span h = mlt__span_handle(s, gs);
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
    atomic_store_explicit(&t->spans, s, memory_order_relaxed);
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

/* Start a span current on this thread, under its current span (or the
 * attached context). */
static MLT_ALWAYS_INLINE mlt_span start_here(const char *name, size_t name_len, mlt_span_type type, const char *func,
                                             size_t func_len, unsigned flags) {
  if (MLT_UNLIKELY(!enabled_now())) return (mlt_span){0};
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return (mlt_span){0};
  if (MLT_UNLIKELY(tls->scope != NULL)) { /* a scoped context is in effect (lib/scope.c) */
    mlt__start_opts x = {NULL, NULL, name, name_len, func, func_len, type, flags};
    return mlt__span_start_ex(MLT__SM_HERE, NULL, (mlt_span){0}, &x);
  }
  if (MLT_UNLIKELY(tls->nonrec_depth)) {
    tls->nonrec_depth++;
    if (tls->nonrec_limit) tls->c.spans_over_limit++;
    return (mlt_span){MLT__H_NONREC_CUR};
  }
  mlt__span *p = tls->cur.id_ ? current_parent(tls) : NULL;
  mlt__start_opts o = {p ? NULL : tls->attached, p, name, name_len, func, func_len, type, flags | MLT__SO_CURRENT};
  return start_impl(tls, &o);
}

mlt_span mlt_span_start(const char *name, mlt_span_type type) { return start_here(name, MLT_NTS, type, NULL, 0, 0); }

mlt_span mlt__span_start_n(const char *name, size_t name_len, mlt_span_type type) {
  return start_here(name, name_len, type, NULL, 0, 0);
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
  if (MLT_UNLIKELY(tls->scope != NULL)) { /* a scoped context is in effect (lib/scope.c) */
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
  if (!s) return h.id_ && !mlt__h_is_nonrec(h) ? MLT_ESTALE : MLT_ENOTRECORDING;
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
  return mlt__span_handle(s, atomic_load_explicit(&s->gs, memory_order_relaxed));
}

/* Resolve a handle to an OPEN span, or return the status explaining why not. */
static inline mlt__span *open_span(mlt_span h, int *rc) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (MLT_LIKELY(s && MLT__GS_STATE(gs) == MLT__S_OPEN)) return s;
  if (s)
    *rc = MLT_EENDED;
  else if (h.id_ == 0 || mlt__h_is_nonrec(h))
    *rc = MLT_ENOTRECORDING;
  else
    *rc = MLT_ESTALE;
  return NULL;
}

static int report(const char *what, int rc) {
  if (rc == MLT_ESTALE && !mlt__running()) return MLT_ENOTINIT;
  if (rc == MLT_EENDED || rc == MLT_ESTALE) mlt__count_misuse(what, rc);
  return rc;
}

#define GET_OPEN_OR_RETURN(s, h, what)                                                        \
  int rc_ = MLT_OK;                                                                           \
  mlt__span *s = open_span((h), &rc_);                                                        \
  if (MLT_UNLIKELY(!s)) return report(what, rc_)

static int run_reducer(mlt__span *s) {
  size_t n = s->n_chunks, i = 0;
  const char **ptrs = malloc(n * sizeof *ptrs);
  size_t *lens = malloc(n * sizeof *lens);
  char **owned = calloc(n, sizeof *owned);
  int rc = MLT_ENOMEM;
  if (!ptrs || !lens || !owned) goto out;
  mlt__log_iter it;
  mlt__log_iter_init(&it, s);
  const mlt__rec *r;
  while ((r = mlt__log_iter_next(&it)) != NULL && i < n) {
    if (r->kind != MLT__R_CHUNK) continue;
    const char *v = mlt__rec_val(r);
    size_t len = r->val_len;
    if (r->flags & MLT__RF_TRUNC) {
      v += 8;
      len -= 8;
    }
    if (r->sub == MLT__V_STR) {
      /* Text chunk: hand it over as a JSON string. */
      char *tmp = mlt__strndup(v, len);
      cJSON *js = tmp ? cJSON_CreateString(tmp) : NULL;
      owned[i] = js ? cJSON_PrintUnformatted(js) : NULL;
      cJSON_Delete(js);
      free(tmp);
      ptrs[i] = owned[i] ? owned[i] : "\"\"";
      lens[i] = strlen(ptrs[i]);
    } else {
      ptrs[i] = v;
      lens[i] = len;
    }
    i++;
  }
  size_t out_len = 0;
  char *out = s->reducer(ptrs, lens, i, &out_len, s->reducer_ud);
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
    return report("mlt_span_end", MLT_ESTALE);
  }
  if (MLT__GS_STATE(gs) != MLT__S_EXPIRED) return report("mlt_span_end (already ended)", MLT_EENDED);
  /* The trace timeout (or a forced finish) already ended and exported this
   * span; it is ours to free now. */
  mlt__trace *te = atomic_load_explicit(&s->trace, memory_order_relaxed);
  if (s->flags & MLT__SF_CURRENT && mlt__tls_epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed)) {
    mlt__tls *tls = mlt__tls_ptr;
    if (tls && tls->cur.id_ == h.id_) tls->cur = s->saved_current;
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

/* The end of a span: one compare-and-swap (a forced finish may race), the
 * thread's current span restored, the trace's open counter dropped.  The
 * status stays UNSET when none was set: readers take UNSET as OK once the
 * span ended. */
/* End open span |s| (handle |h|) at |end_ns|; |now|: the clock (the
 * trace's finish time; the same value unless an end time was given). */
static MLT_ALWAYS_INLINE int end_open(mlt_span h, mlt__span *s, int64_t end_ns, int64_t now) {
  uint64_t gs = (h.id_ & UINT64_C(0xFFFFFFFF00000000)) | MLT__S_OPEN;
  if (MLT_UNLIKELY(s->reducer != NULL) && s->n_chunks && !(s->flags & MLT__SF_OUTPUTS)) run_reducer(s);
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_relaxed);
  s->end_ns = end_ns;
  uint64_t expect = gs;
  if (MLT_UNLIKELY(!atomic_compare_exchange_strong_explicit(&s->gs, &expect, MLT__GS(MLT__GS_GEN(gs), MLT__S_ENDED),
                                                            memory_order_acq_rel, memory_order_acquire)))
    return MLT__GS_STATE(expect) == MLT__S_EXPIRED ? end_slow(h, s, expect) : MLT_EENDED;
  if (s->flags & MLT__SF_CURRENT) {
    mlt__tls *tls = mlt__tls_ptr;
    if (mlt__tls_epoch == atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed) && tls && tls->cur.id_ == h.id_)
      tls->cur = s->saved_current;
  }
  /* A forced finish (timeout, shutdown, end_trace) that did not see this span
   * as ended leaves it to us: claim and free it. */
  if (MLT_UNLIKELY(atomic_load_explicit(&t->state, memory_order_acquire) != MLT__T_ACTIVE)) {
    uint64_t e2 = MLT__GS(MLT__GS_GEN(gs), MLT__S_ENDED);
    if (atomic_compare_exchange_strong(&s->gs, &e2, MLT__GS(MLT__GS_GEN(gs), MLT__S_EXPIRED)))
      mlt__slot_release(s, mlt__tls_get());
  }
  mlt__trace_leave_at(t, now);
  return MLT_OK;
}

static MLT_ALWAYS_INLINE int end_impl(mlt_span h) {
  if (MLT_UNLIKELY(h.id_ >= MLT__H_NONREC_DET)) return end_slow_get(h);
  /* The clock first: fewer values live across the call. */
  int64_t now = mlt__now_ns();
  mlt__span *s = mlt__span_open_fast(h);
  if (MLT_UNLIKELY(!s)) return end_slow_get(h);
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
    note_clamped("mlt_span_end_at");
    return MLT_ERANGE;
  }
  return rc;
}

/* ---- setters --------------------------------------------------------- */

static int set_json(mlt_span h, int kind, const char *json, size_t len, const char *what) {
  if (MLT_UNLIKELY(!json)) return report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  if (len == MLT_NTS) len = strlen(json);
  if (kind == MLT__R_OUTPUTS) s->flags |= MLT__SF_OUTPUTS;
  return append_fast(s, kind, MLT__V_JSON, NULL, 0, json, len, 0);
}

int mlt_span_set_inputs_json(mlt_span h, const char *json) {
  return set_json(h, MLT__R_INPUTS, json, MLT_NTS, "mlt_span_set_inputs_json");
}
int mlt_span_set_inputs_json_n(mlt_span h, const char *json, size_t len) {
  return set_json(h, MLT__R_INPUTS, json, len, "mlt_span_set_inputs_json_n");
}
int mlt_span_set_outputs_json(mlt_span h, const char *json) {
  return set_json(h, MLT__R_OUTPUTS, json, MLT_NTS, "mlt_span_set_outputs_json");
}
int mlt_span_set_outputs_json_n(mlt_span h, const char *json, size_t len) {
  return set_json(h, MLT__R_OUTPUTS, json, len, "mlt_span_set_outputs_json_n");
}

static int set_cjson(mlt_span h, int kind, cJSON *value, const char *what) {
  int rc = MLT_OK;
  mlt__span *s = open_span(h, &rc);
  if (!s || !value) {
    cJSON_Delete(value);
    return report(what, s ? MLT_EINVAL : rc);
  }
  char p[8];
  memcpy(p, &value, sizeof value);
  rc = mlt__append_value(s, kind, MLT__V_CJSON, NULL, 0, p, 8, 0);
  if (rc) {
    cJSON_Delete(value);
    return rc;
  }
  s->flags |= MLT__SF_CJSON;
  if (kind == MLT__R_OUTPUTS) s->flags |= MLT__SF_OUTPUTS;
  return MLT_OK;
}

int mlt_span_set_inputs(mlt_span h, cJSON *value) { return set_cjson(h, MLT__R_INPUTS, value, "mlt_span_set_inputs"); }
int mlt_span_set_outputs(mlt_span h, cJSON *value) {
  return set_cjson(h, MLT__R_OUTPUTS, value, "mlt_span_set_outputs");
}

static int set_fields(mlt_span h, int kind, const mlt_attr *fields, size_t n, const char *what) {
  if (n && !fields) return report(what, MLT_EINVAL);
  for (size_t i = 0; i < n; i++)
    if (!fields[i].key) return report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  uint64_t cnt = n;
  if (kind == MLT__R_OUTPUTS) s->flags |= MLT__SF_OUTPUTS;
  return append_group(s, kind, MLT__V_FIELDS, NULL, 0, (const char *)&cnt, 8, fields, n);
}

int mlt_span_set_inputs_fields(mlt_span h, const mlt_attr *fields, size_t n) {
  return set_fields(h, MLT__R_INPUTS, fields, n, "mlt_span_set_inputs_fields");
}
int mlt_span_set_outputs_fields(mlt_span h, const mlt_attr *fields, size_t n) {
  return set_fields(h, MLT__R_OUTPUTS, fields, n, "mlt_span_set_outputs_fields");
}

int mlt_span_set_outputs_text(mlt_span h, const char *text, size_t len) {
  if (!text) return report("mlt_span_set_outputs_text", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_outputs_text");
  if (len == MLT_NTS) len = strlen(text);
  s->flags |= MLT__SF_OUTPUTS;
  return mlt__append_value(s, MLT__R_OUTPUTS, MLT__V_STR, NULL, 0, text, len, 0);
}

/* An attribute record; |key_len| may be MLT_NTS (the inline fast paths of
 * <mltrace/span.h> pass the length when the compiler knows it). */
static MLT_ALWAYS_INLINE int set_attr(mlt_span h, const char *key, size_t key_len, unsigned sub, const void *val,
                                      size_t val_len, unsigned aux, const char *what) {
  if (MLT_UNLIKELY(!key)) return report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  if (key_len == MLT_NTS) key_len = strlen(key);
  return append_rec(s, MLT__R_ATTR, sub, 0, key, key_len, val, val_len, aux);
}

/* The attribute fast paths below handle the common case (open span, short
 * key of known length, room in the current log chunk) with no call and no
 * stack frame; anything else is a tail call to the general path. */
static MLT_NOINLINE int attr_str_slow(mlt_span h, const char *key, size_t key_len, const char *value, size_t len) {
  if (MLT_UNLIKELY(!value)) return report("mlt_span_set_attr_str", MLT_EINVAL);
  if (len == MLT_NTS) len = strlen(value);
  return set_attr(h, key, key_len, MLT__V_STR, value, len, 0, "mlt_span_set_attr_str");
}
static MLT_NOINLINE int attr_i64_slow(mlt_span h, const char *key, size_t key_len, int64_t value) {
  return set_attr(h, key, key_len, MLT__V_I64, &value, 8, 0, "mlt_span_set_attr_int");
}
static MLT_NOINLINE int attr_f64_slow(mlt_span h, const char *key, size_t key_len, double value) {
  return set_attr(h, key, key_len, MLT__V_F64, &value, 8, 0, "mlt_span_set_attr_double");
}
static MLT_NOINLINE int attr_bool_slow(mlt_span h, const char *key, size_t key_len, int value) {
  return set_attr(h, key, key_len, MLT__V_BOOL, NULL, 0, value != 0, "mlt_span_set_attr_bool");
}

/* The current log chunk of open span |h| when it has room for |size|
 * bytes and the key is short (NULL: take the general path). */
static MLT_ALWAYS_INLINE mlt__chunk *attr_room(mlt_span h, size_t key_len, size_t size, uint32_t *usedp) {
  /* key_len is MLT_NTS when the caller did not know it (a NULL key
   * included): the general path checks and measures. */
  mlt__span *s = mlt__span_open_fast(h);
  if (MLT_UNLIKELY(!s || key_len > MLT__TINY)) return NULL;
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  if (MLT_UNLIKELY(c->cap - used < size)) return NULL;
  *usedp = used;
  return c;
}

/* A string value longer than the fast path takes, of known length: one
 * copy, into the current chunk or a new one (no step at the inline area's
 * end but a chunk from this thread's cache). */
static MLT_NOINLINE int attr_str_big(mlt_span h, const char *key, size_t key_len, const char *value, size_t len) {
  if (MLT_UNLIKELY(!value || !key)) return attr_str_slow(h, key, key_len, value, len);
  if (len == MLT_NTS) len = strlen(value);
  if (MLT_UNLIKELY(key_len > MLT__KEY_MAX || len > mlt__g_cfg.max_value_bytes))
    return attr_str_slow(h, key, key_len, value, len);
  mlt__span *s = mlt__span_open_fast(h);
  if (MLT_UNLIKELY(!s)) return attr_str_slow(h, key, key_len, value, len);
  if (key_len == MLT_NTS && (key_len = strlen(key)) > MLT__KEY_MAX) return attr_str_slow(h, key, key_len, value, len);
  size_t size = mlt__rec_size(key_len, len);
  char *p = mlt__log_reserve(s, size);
  if (MLT_UNLIKELY(!p)) return MLT_ENOMEM;
  write_rec(p, MLT__R_ATTR, MLT__V_STR, 0, 0, key_len, len);
  memcpy(p + sizeof(mlt__rec), key, key_len);
  memcpy(p + sizeof(mlt__rec) + key_len, value, len);
  mlt__log_publish(s, size);
  return MLT_OK;
}

int mlt__attr_str(mlt_span h, const char *key, size_t key_len, const char *value, size_t len) {
  /* len is MLT_NTS for a NULL value: the general path reports it */
  if (MLT_UNLIKELY(len > atomic_load_explicit(&mlt__g_tiny_value, memory_order_relaxed)))
    return attr_str_big(h, key, key_len, value, len);
  uint32_t used;
  size_t size = mlt__rec_size(key_len, len);
  mlt__chunk *c = attr_room(h, key_len, size, &used);
  if (MLT_UNLIKELY(!c)) return attr_str_slow(h, key, key_len, value, len);
  char *p = mlt__chunk_data(c) + used;
  write_rec(p, MLT__R_ATTR, MLT__V_STR, 0, 0, key_len, len);
  tiny_copy(p + sizeof(mlt__rec), key, key_len);
  tiny_copy(p + sizeof(mlt__rec) + key_len, value, len);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
  return MLT_OK;
}

static MLT_ALWAYS_INLINE int attr_word(mlt_span h, const char *key, size_t key_len, unsigned sub, uint64_t bits,
                                       int has_value, unsigned aux) {
  uint32_t used;
  size_t size = mlt__rec_size(key_len, has_value ? 8 : 0);
  mlt__chunk *c = attr_room(h, key_len, size, &used);
  if (MLT_UNLIKELY(!c)) return 1;
  char *p = mlt__chunk_data(c) + used;
  write_rec(p, MLT__R_ATTR, sub, 0, aux, key_len, has_value ? 8 : 0);
  tiny_copy(p + sizeof(mlt__rec), key, key_len);
  if (has_value) memcpy(p + sizeof(mlt__rec) + key_len, &bits, 8);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
  return 0;
}

int mlt__attr_i64(mlt_span h, const char *key, size_t key_len, int64_t value) {
  if (MLT_UNLIKELY(attr_word(h, key, key_len, MLT__V_I64, (uint64_t)value, 1, 0)))
    return attr_i64_slow(h, key, key_len, value);
  return MLT_OK;
}

int mlt__attr_f64(mlt_span h, const char *key, size_t key_len, double value) {
  uint64_t bits;
  memcpy(&bits, &value, 8);
  if (MLT_UNLIKELY(attr_word(h, key, key_len, MLT__V_F64, bits, 1, 0))) return attr_f64_slow(h, key, key_len, value);
  return MLT_OK;
}

/* A bool is all header: the value is in aux. */
int mlt__attr_bool(mlt_span h, const char *key, size_t key_len, int value) {
  if (MLT_UNLIKELY(attr_word(h, key, key_len, MLT__V_BOOL, 0, 0, value != 0)))
    return attr_bool_slow(h, key, key_len, value);
  return MLT_OK;
}

int mlt_span_set_attr_str(mlt_span h, const char *key, const char *value) {
  return mlt__attr_str(h, key, MLT_NTS, value, MLT_NTS);
}
int mlt_span_set_attr_str_n(mlt_span h, const char *key, const char *value, size_t len) {
  if (!value && len) return report("mlt_span_set_attr_str_n", MLT_EINVAL);
  if (!value) value = "";
  if (len == MLT_NTS) len = strlen(value);
  return set_attr(h, key, MLT_NTS, MLT__V_STR, value, len, 0, "mlt_span_set_attr_str_n");
}
int mlt_span_set_attr_int(mlt_span h, const char *key, int64_t value) {
  return mlt__attr_i64(h, key, MLT_NTS, value);
}
int mlt_span_set_attr_double(mlt_span h, const char *key, double value) {
  return mlt__attr_f64(h, key, MLT_NTS, value);
}
int mlt_span_set_attr_bool(mlt_span h, const char *key, int value) {
  return mlt__attr_bool(h, key, MLT_NTS, value);
}
int mlt_span_set_attr_json(mlt_span h, const char *key, const char *json) {
  if (!json) return report("mlt_span_set_attr_json", MLT_EINVAL);
  return set_attr(h, key, MLT_NTS, MLT__V_JSON, json, strlen(json), 0, "mlt_span_set_attr_json");
}

int mlt_span_set_attrs(mlt_span h, const mlt_attr *attrs, size_t n) {
  if (n && !attrs) return report("mlt_span_set_attrs", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_attrs");
  for (size_t i = 0; i < n; i++) {
    if (!attrs[i].key) return report("mlt_span_set_attrs", MLT_EINVAL);
    size_t size = attr_rec_size(&attrs[i]);
    char *p = mlt__log_reserve(s, size);
    if (!p) return MLT_ENOMEM;
    size = put_attr_rec(p, MLT__R_ATTR, &attrs[i]);
    mlt__log_publish(s, size);
  }
  return MLT_OK;
}

int mlt_span_set_type(mlt_span h, mlt_span_type type) {
  if ((unsigned)type >= MLT__SPAN_TYPE_COUNT) return report("mlt_span_set_type", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_type");
  return mlt__append_value(s, MLT__R_TYPE, MLT__V_NONE, NULL, 0, NULL, 0, (int)type);
}

int mlt_span_set_type_name(mlt_span h, const char *type) {
  if (!type || !*type) return report("mlt_span_set_type_name", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_type_name");
  return mlt__append_value(s, MLT__R_TYPE_NAME, MLT__V_STR, NULL, 0, type, strlen(type), 0);
}

int mlt_span_set_name(mlt_span h, const char *name) {
  if (!name) return report("mlt_span_set_name", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_name");
  return mlt__append_value(s, MLT__R_NAME, MLT__V_STR, NULL, 0, name, strlen(name), 0);
}

static int count_event(mlt__span *s) {
  if (s->n_events >= mlt__g_cfg.max_events_per_span) {
    s->n_events_dropped++;
    mlt__tls *tls = mlt__tls_get();
    if (tls) tls->c.events_dropped++;
    return 0;
  }
  s->n_events++;
  return 1;
}

int mlt_span_add_event(mlt_span h, const char *name, const mlt_attr *attrs, size_t n) {
  if (!name || (n && !attrs)) return report("mlt_span_add_event", MLT_EINVAL);
  for (size_t i = 0; i < n; i++)
    if (!attrs[i].key) return report("mlt_span_add_event", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_add_event");
  if (!count_event(s)) return MLT_OK;
  return mlt__append_event(s, name, mlt__now_ns(), attrs, n);
}

int mlt_span_set_status(mlt_span h, mlt_span_status status, const char *message) {
  if ((unsigned)status > MLT_STATUS_ERROR) return report("mlt_span_set_status", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_status");
  if (s->status == MLT_STATUS_ERROR && status != MLT_STATUS_ERROR) return MLT_OK;
  s->status = (uint8_t)status;
  /* Only an ERROR's description is exported (OTel drops it otherwise). */
  if (status != MLT_STATUS_ERROR) return MLT_OK;
  if (!message) message = "";
  return mlt__append_value(s, MLT__R_STATUS, MLT__V_STR, NULL, 0, message, strlen(message), (int)status);
}

int mlt_span_record_error(mlt_span h, const char *type, const char *message) {
  GET_OPEN_OR_RETURN(s, h, "mlt_span_record_error");
  if (!type || !*type) type = "Error";
  if (!message) message = "";
  size_t tl = strlen(type), ml = strlen(message);
  char stackbuf[512];
  char *desc = tl + ml + 3 <= sizeof stackbuf ? stackbuf : malloc(tl + ml + 3);
  if (!desc) return MLT_ENOMEM;
  memcpy(desc, type, tl);
  memcpy(desc + tl, ": ", 2);
  memcpy(desc + tl + 2, message, ml + 1);
  s->status = MLT_STATUS_ERROR;
  int rc = mlt__append_value(s, MLT__R_STATUS, MLT__V_STR, NULL, 0, desc, tl + ml + 2, MLT_STATUS_ERROR);
  if (desc != stackbuf) free(desc);
  if (rc) return rc;
  if (!count_event(s)) return MLT_OK;
  mlt_attr a[2] = {{"exception.type", MLT_ATTR_STRING, {.s = type}, tl},
                   {"exception.message", MLT_ATTR_STRING, {.s = message}, ml}};
  return mlt__append_event(s, "exception", mlt__now_ns(), a, 2);
}

/* ---- streaming ------------------------------------------------------- */

static int add_chunk(mlt_span h, int sub, const char *data, size_t len, const char *what) {
  if (!data && len) return report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  if (len == MLT_NTS) len = data ? strlen(data) : 0;
  int64_t now = mlt__now_ns();
  if (s->n_chunks < mlt__g_cfg.max_events_per_span) {
    if (s->n_events < mlt__g_cfg.max_events_per_span) s->n_events++;
  } else {
    s->n_events_dropped++;
    mlt__tls *tls = mlt__tls_get();
    if (tls) tls->c.events_dropped++;
    /* Past the event cap a chunk is kept only to compute the default
     * output; with outputs set explicitly (and no reducer) it is not needed. */
    if ((s->flags & MLT__SF_OUTPUTS) && !s->reducer) {
      s->n_chunks++;
      return MLT_OK;
    }
  }
  int rc = mlt__append_value(s, MLT__R_CHUNK, sub, (const char *)&now, 8, data ? data : "", len, 0);
  if (rc) return rc;
  s->n_chunks++;
  s->flags |= MLT__SF_HAS_CHUNKS;
  if (sub != MLT__V_STR) s->flags &= (uint8_t)~MLT__SF_TEXT_ONLY;
  return MLT_OK;
}

int mlt_span_add_chunk_json(mlt_span h, const char *json, size_t len) {
  return add_chunk(h, MLT__V_JSON, json, len, "mlt_span_add_chunk_json");
}
int mlt_span_add_chunk_text(mlt_span h, const char *text, size_t len) {
  return add_chunk(h, MLT__V_STR, text, len, "mlt_span_add_chunk_text");
}

int mlt_span_set_output_reducer(mlt_span h, mlt_output_reducer_fn fn, void *user_data) {
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_output_reducer");
  s->reducer = fn;
  s->reducer_ud = user_data;
  return MLT_OK;
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
  if (!s) return h.id_ && !mlt__h_is_nonrec(h) ? MLT_ESTALE : MLT_ENOTRECORDING;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return MLT_ESTALE;
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
  if (!s) return h.id_ && !mlt__h_is_nonrec(h) ? MLT_ESTALE : MLT_ENOTRECORDING;
  mlt__hex64(s->span_id, buf);
  buf[16] = '\0';
  if (MLT__GS_STATE(gs) != MLT__S_OPEN) return MLT_OK;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return MLT_OK;
  int rc = mlt__span_ids(s, gs, t, NULL, NULL);
  mlt__trace_unref(t);
  return rc;
}

int mlt_span_get_status(mlt_span h) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) return h.id_ && !mlt__h_is_nonrec(h) ? (mlt__running() ? MLT_ESTALE : MLT_ENOTINIT) : MLT_ENOTRECORDING;
  /* UNSET becomes OK when the span ends (left to the readers). */
  if (s->status == MLT_STATUS_UNSET && MLT__GS_STATE(gs) != MLT__S_OPEN) return MLT_STATUS_OK;
  return s->status;
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
    return mlt__span_get(h, &gs) ? MLT_EENDED : MLT_ENOTFOUND;
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
    note_clamped("mlt_client_end_span_at / mlt_client_end_trace_at");
    return MLT_ERANGE;
  }
  return rc;
}

int mlt__span_client_finish(mlt_span h, const char *outputs_json, mlt_span_status status, const char *message) {
  return client_finish(h, outputs_json, status, message, 0);
}

int mlt__span_client_finish_at(mlt_span h, const char *outputs_json, mlt_span_status status, const char *message,
                               int64_t end_ns) {
  return client_finish(h, outputs_json, status, message, end_ns);
}

int mlt__span_client_inputs(mlt_span h, const char *inputs_json) {
  return set_json(h, MLT__R_INPUTS, inputs_json, MLT_NTS, "mlt_client_start_span");
}

static MLT_ALWAYS_INLINE int client_ids(mlt_span h, mlt_client_span *out) {
  out->span = h;
  if (h.id_ == 0 || mlt__h_is_nonrec(h)) return MLT_ENOTRECORDING;
  /* Just started here: open, and nobody else has the handle yet. */
  mlt__span *s = mlt__slot_at((uint32_t)h.id_ - 1);
  return mlt__span_ids(s, MLT__GS(h.id_ >> 32, MLT__S_OPEN), atomic_load_explicit(&s->trace, memory_order_relaxed),
                       out->trace_id, out->span_id);
}

/* With start options (lib/spanopts.c) or under a scoped context (lib/scope.c). */
static MLT_NOINLINE int client_start_slow(mlt__tls *tls, const char *name, mlt_span_type type, mlt__span *parent,
                                          const mlt__start_opts *x, mlt_client_span *out) {
  mlt__scope *sc = tls->scope;
  if (sc && mlt__scope_off(sc)) return MLT_ENOTRECORDING;
  mlt__start_opts o = {NULL, parent, name, MLT_NTS, NULL, 0, type, 0};
  if (x) {
    o.start_ns = x->start_ns;
    o.flags |= x->flags & MLT__SO_SAMPLE;
    o.sample_threshold = x->sample_threshold;
  }
  mlt_span h = mlt__span_start_opts(tls, &o);
  if (sc) mlt__scope_started(sc, h);
  return client_ids(h, out);
}

int mlt__span_client_start(const char *name, mlt_span_type type, mlt__span *parent, mlt_client_span *out) {
  if (MLT_UNLIKELY(!enabled_now())) return MLT_ENOTRECORDING;
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return MLT_ENOTRECORDING;
  if (MLT_UNLIKELY(tls->scope != NULL)) return client_start_slow(tls, name, type, parent, NULL, out);
  mlt__start_opts o = {NULL, parent, name, MLT_NTS, NULL, 0, type, 0};
  return client_ids(start_impl(tls, &o), out);
}

int mlt__span_client_start_with(const char *name, mlt_span_type type, mlt__span *parent, mlt_client_span *out,
                                const mlt__start_opts *x) {
  if (MLT_UNLIKELY(!enabled_now())) return MLT_ENOTRECORDING;
  mlt__tls *tls = mlt__tls_get();
  if (MLT_UNLIKELY(!tls)) return MLT_ENOTRECORDING;
  return client_start_slow(tls, name, type, parent, x, out);
}
