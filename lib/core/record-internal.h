/* lib/core/record-internal.h: the inline writers of a span's record log,
 * shared by the span start/end path (span.c), the record log (span-record.c),
 * the setters (span-set.c) and streaming (span-stream.c).  These are the
 * functions the hot path relies on being inlined, so they live here and not
 * behind a call.  Core layer: includes core/ and util/ headers only.
 */
#ifndef MLT_RECORD_INTERNAL_H
#define MLT_RECORD_INTERNAL_H

#include "core/span-internal.h"

/* One 8-byte store: the compiler folds the constant fields. */
static inline void write_rec(char *p, unsigned kind, unsigned sub, unsigned flags, unsigned aux, size_t key_len,
                             size_t val_len) {
  mlt__rec r = {.kind = kind, .sub = sub, .flags = flags, .aux = aux, .key_len = (uint32_t)key_len,
                .val_len = (uint32_t)val_len};
  memcpy(p, &r, sizeof r);
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

/* The general path of append_rec() (span-record.c): keys or values past the
 * limits, or a record that needs a new chunk. */
int mlt__append_slow_c(mlt__score *s, int kind, int sub, unsigned flags, const char *key, size_t key_len,
                       const char *val, size_t val_len, int aux);
#define mlt__append_slow(s, ...) mlt__append_slow_c(MLT__SC(s), __VA_ARGS__)

/* The hot path: a record that fits the current chunk and needs no
 * truncation is written in place (header, key, value, one release store);
 * everything else takes mlt__append_slow(). */
static MLT_ALWAYS_INLINE int append_rec_c(mlt__score *s, unsigned kind, unsigned sub, unsigned flags,
                                        const char *key, size_t key_len, const void *val, size_t val_len,
                                        unsigned aux) {
  if (MLT_UNLIKELY(key_len > MLT__KEY_MAX || val_len > mlt__g_cfg.max_value_bytes))
    return mlt__append_slow(s, (int)kind, (int)sub, flags, key, key_len, val, val_len, (int)aux);
  size_t size = mlt__rec_size(key_len, val_len);
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  if (MLT_UNLIKELY(c->cap - used < size))
    return mlt__append_slow(s, (int)kind, (int)sub, flags, key, key_len, val, val_len, (int)aux);
  char *p = mlt__chunk_data(c) + used;
  write_rec(p, kind, sub, flags, aux, key_len, val_len);
  small_copy(p + sizeof(mlt__rec), key, key_len);
  small_copy(p + sizeof(mlt__rec) + key_len, val, val_len);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
  return MLT_OK;
}
#define append_rec(s, ...) append_rec_c(MLT__SC(s), __VA_ARGS__)
#define append_fast(s, kind, sub, key, key_len, val, val_len, aux) \
  append_rec((s), (kind), (sub), 0, (key), (key_len), (val), (val_len), (aux))


/* Typed attribute records and grouped records (span-record.c). */
size_t mlt__attr_rec_size(const mlt_attr *a);
size_t mlt__put_attr_rec(char *p, int kind, const mlt_attr *a);
int mlt__append_group(mlt__span *s, int kind, int sub, const char *key, size_t key_len, const char *hdr_val,
                      size_t hdr_len, const mlt_attr *attrs, size_t n);

/* Count a misuse of span |what| (stale or ended handle) and return |rc|
 * (MLT_ENOTINIT for a stale handle once the library is off): tls.c. */
int mlt__span_report(const char *what, int rc);
/* An explicit end time before the span's start: counted, logged (tls.c). */
void mlt__note_clamped(const char *what);

/* Resolve a handle to an OPEN span, or return the status explaining why not. */
static inline mlt__span *open_span(mlt_span h, int *rc) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (MLT_LIKELY(s && MLT__GS_STATE(gs) == MLT__S_OPEN)) return s;
  if (s || mlt__h_moved(h))
    *rc = MLT_EENDED;
  else if (h.id_ == 0 || mlt__h_is_nonrec(h))
    *rc = MLT_ENOTRECORDING;
  else
    *rc = MLT_ESTALE;
  return NULL;
}

#define GET_OPEN_OR_RETURN(s, h, what)                                                        \
  int rc_ = MLT_OK;                                                                           \
  mlt__span *s = open_span((h), &rc_);                                                        \
  if (MLT_UNLIKELY(!s)) return mlt__span_report(what, rc_)


static inline int set_json(mlt_span h, int kind, const char *json, size_t len, const char *what) {
  if (MLT_UNLIKELY(!json)) return mlt__span_report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  if (len == MLT_NTS) len = strlen(json);
  if (kind == MLT__R_OUTPUTS) s->flags |= MLT__SF_OUTPUTS;
  return append_fast(s, kind, MLT__V_JSON, NULL, 0, json, len, 0);
}

/* mlt__trace_finish() (trace.c) with this thread's state |tls|, inline on
 * the span end path: the open counter of |t| reached 0.  Without a thread
 * state (NULL) or a clock value the last finished trace is recorded through
 * mlt__trace_set_last(). */
static MLT_ALWAYS_INLINE void trace_finish_inline(mlt__trace *t, int64_t now, mlt__tls *tls) {
  int cont = (t->flags & MLT__TF_CONTINUATION) != 0; /* read once (the callers may have tested it) */
  atomic_store_explicit(&t->state, MLT__T_FINISHED, memory_order_release);
  if (MLT_LIKELY(!cont)) {
    if (MLT_LIKELY(tls != NULL) && now > 0)
      mlt__last_write(&tls->last, t->id_hi, t->id_lo, now);
    else
      mlt__trace_set_last(t, now);
  }
  mlt__trace_handoff(t);
}

#endif /* MLT_RECORD_INTERNAL_H */
