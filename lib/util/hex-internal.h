/* lib/util/hex-internal.h: ids to hex digits (SSE2 where there is one,
 * else 8 digits per 64-bit word), inline for the hot path's callers:
 * util.c's mlt__hex64 / mlt__format_* and the client root start
 * (core/span.c).  Every formatted trace id (and span id) is remembered in
 * the thread's mlt__id_memo (common-internal.h). */
#ifndef MLT_UTIL_HEX_INTERNAL_H
#define MLT_UTIL_HEX_INTERNAL_H

#include "util/common-internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MLT__SWAR_HEX 1
#endif
#if defined(__SSE2__) && defined(MLT__SWAR_HEX)
#include <emmintrin.h>
#define MLT__SSE_HEX 1
#endif

#ifdef MLT__SWAR_HEX
/* 8 lowercase hex digits of x, most significant first: each nibble spread
 * to a byte, then turned into a digit, 8 at a time. */
static inline uint64_t hex8(uint32_t x) {
  uint64_t v = x;
  v = (v | v << 16) & UINT64_C(0x0000FFFF0000FFFF);
  v = (v | v << 8) & UINT64_C(0x00FF00FF00FF00FF);
  v = (v | v << 4) & UINT64_C(0x0F0F0F0F0F0F0F0F);
  /* byte i holds nibble i (least significant first): digits, then reverse */
  uint64_t letters = ((v + UINT64_C(0x0606060606060606)) >> 4) & UINT64_C(0x0101010101010101);
  v += UINT64_C(0x3030303030303030) + letters * ('a' - '0' - 10);
  return __builtin_bswap64(v);
}

#ifdef MLT__SSE_HEX
/* 16 digits at once: the bytes most significant first, split into nibbles,
 * interleaved, turned into digits. */
static MLT_ALWAYS_INLINE void hex64(uint64_t v, char out[16]) {
  __m128i b = _mm_cvtsi64_si128((long long)__builtin_bswap64(v));
  __m128i mask = _mm_set1_epi8(0x0F);
  __m128i n = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), mask), _mm_and_si128(b, mask));
  __m128i letters = _mm_and_si128(_mm_cmpgt_epi8(n, _mm_set1_epi8(9)), _mm_set1_epi8('a' - '0' - 10));
  _mm_storeu_si128((__m128i *)(void *)out, _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8('0')), letters));
}
#else
static MLT_ALWAYS_INLINE void hex64(uint64_t v, char out[16]) {
  uint64_t a = hex8((uint32_t)(v >> 32)), b = hex8((uint32_t)v);
  memcpy(out, &a, 8);
  memcpy(out + 8, &b, 8);
}
#endif
#else
static MLT_ALWAYS_INLINE void hex64(uint64_t v, char out[16]) {
  static const char hexd[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--) {
    out[i] = hexd[v & 15];
    v >>= 4;
  }
}
#endif

#ifdef MLT__SSE_HEX
/* The 32 digits of (hi, lo) in two vectors: both halves split into nibbles
 * in one pass. */
static MLT_ALWAYS_INLINE void hex128(uint64_t hi, uint64_t lo, __m128i *d0, __m128i *d1) {
  __m128i b = _mm_set_epi64x((long long)__builtin_bswap64(lo), (long long)__builtin_bswap64(hi));
  __m128i mask = _mm_set1_epi8(0x0F), nine = _mm_set1_epi8(9), adj = _mm_set1_epi8('a' - '0' - 10),
          zero = _mm_set1_epi8('0');
  __m128i h = _mm_and_si128(_mm_srli_epi16(b, 4), mask), l = _mm_and_si128(b, mask);
  __m128i n0 = _mm_unpacklo_epi8(h, l), n1 = _mm_unpackhi_epi8(h, l);
  *d0 = _mm_add_epi8(_mm_add_epi8(n0, zero), _mm_and_si128(_mm_cmpgt_epi8(n0, nine), adj));
  *d1 = _mm_add_epi8(_mm_add_epi8(n1, zero), _mm_and_si128(_mm_cmpgt_epi8(n1, nine), adj));
}
#endif

/* The 32 digits of (hi, lo) at out, remembered in the memo. */
static MLT_ALWAYS_INLINE void trace_hex(uint64_t hi, uint64_t lo, char out[32]) {
  mlt__id_memo *m = &mlt__g_id_memo;
#ifdef MLT__SSE_HEX
  __m128i d0, d1;
  hex128(hi, lo, &d0, &d1);
  _mm_storeu_si128((__m128i *)(void *)out, d0);
  _mm_storeu_si128((__m128i *)(void *)(out + 16), d1);
  memcpy(m->trace, "tr-", 3);
  _mm_storeu_si128((__m128i *)(void *)(m->trace + 3), d0);
  _mm_storeu_si128((__m128i *)(void *)(m->trace + 19), d1);
#else
  hex64(hi, out);
  hex64(lo, out + 16);
  memcpy(m->trace, "tr-", 3);
  memcpy(m->trace + 3, out, 32);
#endif
  m->hi = hi;
  m->lo = lo;
  m->root = 0;
}

/* mlt__format_ids() inlined (the client root start formats from registers). */
static MLT_ALWAYS_INLINE void mlt__format_ids_inline(uint64_t hi, uint64_t lo, uint64_t span_id,
                                                    char trace_out[MLT_TRACE_ID_SIZE], char span_out[MLT_SPAN_ID_SIZE]) {
  memcpy(trace_out, "tr-", 3);
  trace_hex(hi, lo, trace_out + 3);
  trace_out[35] = '\0';
  hex64(span_id, span_out);
  span_out[16] = '\0';
  memcpy(mlt__g_id_memo.span, span_out, 16);
  mlt__g_id_memo.sid = span_id;
}

#endif /* MLT_UTIL_HEX_INTERNAL_H */
