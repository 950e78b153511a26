/* lib/core/span-stream.c: streamed output -- chunk records (one event per
 * chunk, up to the event cap) and the output reducer that turns a span's
 * chunks into its outputs when it ends.  Core layer: touches the span it was
 * given (its records and chunk counters) and the per-thread counters only.
 */
#include "core/record-internal.h"
#include "core/scope-internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- streaming ------------------------------------------------------- */

/* Bytes a[0,n) and b[0,n) have in common at their start (16 bytes a step
 * with SSE2: a streamed chunk shares ~200 bytes with its reference). */
static size_t common_prefix(const char *a, const char *b, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(a + i));
    __m128i y = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) ^ 0xFFFFu;
    if (m) return i + (size_t)__builtin_ctz(m);
  }
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    if (x != y) return i + (size_t)(__builtin_ctzll(x ^ y) >> 3);
  }
#endif
  while (i < n && a[i] == b[i]) i++;
  return i;
}

/* Bytes the |n| bytes before |a_end| and before |b_end| have in common at
 * their end. */
static size_t common_suffix(const char *a_end, const char *b_end, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(a_end - i - 16));
    __m128i y = _mm_loadu_si128((const __m128i *)(const void *)(b_end - i - 16));
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) ^ 0xFFFFu;
    if (m) return i + (size_t)__builtin_clz(m) - 16; /* (bit 15 is the last byte) */
  }
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    memcpy(&x, a_end - i - 8, 8);
    memcpy(&y, b_end - i - 8, 8);
    if (x != y) return i + (size_t)(__builtin_clzll(x ^ y) >> 3);
  }
#endif
  while (i < n && a_end[-1 - (ptrdiff_t)i] == b_end[-1 - (ptrdiff_t)i]) i++;
  return i;
}

/* One CHUNK record: a delta against the span's reference chunk when that is
 * smaller, else whole (and then the new reference).  See
 * core/trace-view.h.  A chunk past max_value_bytes is stored whole,
 * truncated, and never serves as a reference. */
static int append_chunk(mlt__span *s, int sub, int64_t now, const char *data, size_t len) {
  if (len > mlt__g_cfg.max_value_bytes)
    return mlt__append_value(s, MLT__R_CHUNK, sub, (const char *)&now, 8, data, len, 0);
  const mlt__rec *ref = s->chunk_ref;
  if (ref) {
    const char *rv = mlt__rec_val(ref);
    size_t rl = ref->val_len, n = MLT_MIN(rl, len);
    size_t pre = common_prefix(rv, data, n);
    size_t suf = common_suffix(rv + rl, data + len, n - pre);
    size_t mid = len - pre - suf;
    size_t size = mlt__rec_size(8, MLT__DELTA_HDR + mid);
    if (size < mlt__rec_size(8, len)) {
      /* (in place when the current log chunk has room, as append_rec()) */
      mlt__chunk *c = s->tail;
      uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
      char *w = c->cap - used >= size ? mlt__chunk_data(c) + used : mlt__log_reserve(s, size);
      if (MLT_UNLIKELY(!w)) return MLT_ENOMEM;
      write_rec(w, MLT__R_CHUNK, (unsigned)sub, MLT__RF_DELTA, 0, 8, MLT__DELTA_HDR + mid);
      uint32_t ps[2] = {(uint32_t)pre, (uint32_t)suf};
      memcpy(w + sizeof(mlt__rec), &now, 8);
      memcpy(w + sizeof(mlt__rec) + 8, ps, MLT__DELTA_HDR);
      small_copy(w + sizeof(mlt__rec) + 8 + MLT__DELTA_HDR, data + pre, mid);
      mlt__log_publish(s, size);
      return MLT_OK;
    }
  }
  size_t size = mlt__rec_size(8, len);
  char *w = mlt__log_reserve(s, size);
  if (MLT_UNLIKELY(!w)) return MLT_ENOMEM;
  write_rec(w, MLT__R_CHUNK, (unsigned)sub, 0, 0, 8, len);
  memcpy(w + sizeof(mlt__rec), &now, 8);
  if (len) memcpy(w + sizeof(mlt__rec) + 8, data, len);
  mlt__log_publish(s, size);
  s->chunk_ref = (const mlt__rec *)(const void *)w;
  return MLT_OK;
}

static int add_chunk(mlt_span h, int sub, const char *data, size_t len, const char *what) {
  if (!data && len) return mlt__span_report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  if (len == MLT_NTS) len = data ? strlen(data) : 0;
  int64_t now = mlt__now_ns();
  if (s->n_chunks < mlt__g_cfg.max_events_per_span) {
    if (s->n_events < mlt__g_cfg.max_events_per_span) s->n_events++;
  } else {
    s->n_events_dropped++;
    mlt__tls *tls = mlt__tls_get();
    if (tls) tls->c.events_dropped++;
    /* Past the event cap a chunk is kept only to compute the outputs; with
     * outputs set explicitly (no reducer runs then) it is not needed. */
    if (s->flags & MLT__SF_OUTPUTS) {
      s->n_chunks++;
      return MLT_OK;
    }
  }
  int rc = append_chunk(s, sub, now, data ? data : "", len);
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
  /* Kept as a record in the span's log (rarely used: no slot room for it);
   * the span's end reads the last one. */
  char v[sizeof fn + sizeof user_data];
  memcpy(v, &fn, sizeof fn);
  memcpy(v + sizeof fn, &user_data, sizeof user_data);
  int rc = mlt__append_value(s, MLT__R_REDUCER, MLT__V_NONE, NULL, 0, v, sizeof v, 0);
  if (rc != MLT_OK) return mlt__span_report("mlt_span_set_output_reducer", rc);
  if (fn)
    s->flags |= MLT__SF_REDUCER;
  else
    s->flags &= (uint8_t)~MLT__SF_REDUCER;
  return MLT_OK;
}

