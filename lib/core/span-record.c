/* lib/core/span-record.c: a span's record log -- chunk reservation and
 * publication, the general (slow) record writer with value truncation, the
 * typed attribute, event and link records, and copying a log for a forced
 * finish.  It owns the byte layout of the log (mlt__rec, see
 * span-internal.h); the inline fast writers are in record-internal.h.  Core
 * layer: touches spans, chunks (chunks.c) and the per-thread state only.
 */
#include "core/record-internal.h"
#include "core/scope-internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- record log ------------------------------------------------------ */

char *mlt__log_reserve_c(mlt__score *s, size_t size) {
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  if (MLT_LIKELY(c->cap - used >= size)) return mlt__chunk_data(c) + used;
  /* Chunk sizes (each a whole size class): 128 B, 256 B twice, then 512 B
   * four times, then doubling up to 64 KiB.  Most logs end within a few
   * KiB, and a span holds its chunks until the trace is exported, the last
   * one partly empty: many small spans outgrow the slot's inline log by a few
   * records (a 512 B first chunk once held 8 B of a C10k retrieval span,
   * whose 120 B of records now fit the 128 B inline log), and a
   * streamed LLM span's log (~1.8 KB of records: inputs, then ~40 B per
   * chunk event) took 3 KiB of chunks with 1 KiB steps, ~2.2 KiB now; an
   * evhttp request span's (~350 B: its written chunks) 848 B, now 592 B. */
  size_t cap;
  int first = c == &s->head;
  if (first) {
    cap = 128 - sizeof(mlt__chunk);
  } else {
    int k = 0; /* heap chunks so far: at least 1 (the tail is one) */
    for (const mlt__chunk *x = atomic_load_explicit(&s->head.next, memory_order_relaxed); x && k < 7;
         x = atomic_load_explicit(&x->next, memory_order_relaxed))
      k++;
    cap = k < 3 ? 256 - sizeof(mlt__chunk)
                : k < 7 ? 512 - sizeof(mlt__chunk) : ((size_t)c->cap + sizeof(mlt__chunk)) * 2 - sizeof(mlt__chunk);
  }
  if (cap > 65536 - sizeof(mlt__chunk)) cap = 65536 - sizeof(mlt__chunk);
  /* A record larger than the step.  In the first heap chunk: room for about
   * as much again (a GenAI span's ~370 B inputs then share one chunk with
   * its outputs instead of taking three), up to 1 KiB; later (a log that
   * keeps growing, like a stream's chunk events): a chunk of its size class,
   * whose slack the next records fill.  A bigger value gets a chunk of its
   * size. */
  if (cap < size) cap = first && size <= 512 ? MLT_MIN(2 * size, (size_t)1024 - sizeof(mlt__chunk)) : size;
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

void mlt__log_publish_c(mlt__score *s, size_t size) {
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
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

MLT_NOINLINE int mlt__append_slow_c(mlt__score *s, int kind, int sub, unsigned flags, const char *key,
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

int mlt__append_value_c(mlt__score *s, int kind, int sub, const char *key, size_t key_len, const char *val,
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

size_t mlt__attr_rec_size(const mlt_attr *a) {
  size_t klen, kept;
  int trunc;
  attr_lens(a, &klen, &kept, &trunc);
  return mlt__rec_size(klen, kept + (trunc ? 8 : 0));
}

/* Write a typed attribute record (kind ATTR or FIELD) at |p|; returns size. */
size_t mlt__put_attr_rec(char *p, int kind, const mlt_attr *a) {
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
int mlt__append_group(mlt__span *s, int kind, int sub, const char *key, size_t key_len, const char *hdr_val,
                        size_t hdr_len, const mlt_attr *attrs, size_t n) {
  if (key_len > MLT__KEY_MAX) key_len = mlt__utf8_cut(key, MLT__KEY_MAX);
  size_t size = mlt__rec_size(key_len, hdr_len);
  for (size_t i = 0; i < n; i++) size += mlt__attr_rec_size(&attrs[i]);
  char *p = mlt__log_reserve(s, size);
  if (!p) return MLT_ENOMEM;
  write_rec(p, (unsigned)kind, (unsigned)sub, 0, 0, key_len, hdr_len);
  if (key_len) memcpy(p + sizeof(mlt__rec), key, key_len);
  memcpy(p + sizeof(mlt__rec) + key_len, hdr_val, hdr_len);
  size_t off = mlt__rec_size(key_len, hdr_len);
  for (size_t i = 0; i < n; i++) off += mlt__put_attr_rec(p + off, MLT__R_FIELD, &attrs[i]);
  mlt__log_publish(s, off);
  return MLT_OK;
}

int mlt__append_event(mlt__span *s, const char *name, int64_t ts, const mlt_attr *attrs, size_t n) {
  char hdr[16];
  uint64_t cnt = n;
  memcpy(hdr, &ts, 8);
  memcpy(hdr + 8, &cnt, 8);
  return mlt__append_group(s, MLT__R_EVENT, MLT__V_NONE, name, strlen(name), hdr, 16, attrs, n);
}

int mlt__append_link(mlt__span *s, uint64_t hi, uint64_t lo, uint64_t span_id, const mlt_attr *attrs, size_t n) {
  uint64_t hdr[4] = {hi, lo, span_id, n};
  return mlt__append_group(s, MLT__R_LINK, MLT__V_NONE, NULL, 0, (const char *)hdr, sizeof hdr, attrs, n);
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

