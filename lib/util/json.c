/* lib/util/json.c: growable buffer, JSON string escaping, JSON validation.
 *
 * Layer: util -- includes util/ only; knows nothing of spans, exporters or HTTP.
 */
#include "util/json-internal.h"

#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

void mlt__buf_free(mlt__buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
}

int mlt__buf_reserve(mlt__buf *b, size_t extra) {
  if (b->oom) return -1;
  if (b->cap - b->len >= extra) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) {
    if (cap > SIZE_MAX / 2) {
      b->oom = 1;
      return -1;
    }
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

const char mlt__digits2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";
#define digits2 mlt__digits2
#define digits8 mlt__digits8_inline

/* The digits of v < 10^8 without leading zeros at the end of [.., end). */
static inline char *digits_small(uint32_t v, char *end) {
  char *p = end;
  while (v >= 100) {
    p -= 2;
    memcpy(p, digits2 + 2 * (v % 100), 2);
    v /= 100;
  }
  if (v >= 10) {
    p -= 2;
    memcpy(p, digits2 + 2 * v, 2);
  } else {
    *--p = (char)('0' + v);
  }
  return p;
}

/* Decimal digits of v ending at |end| (room for 20); returns where they
 * start.  Timestamps (19 digits) take two 64-bit divisions. */
static inline char *u64_digits(uint64_t v, char *end) {
  if (v < 100000000) return digits_small((uint32_t)v, end);
  uint64_t q = v / 100000000;
  digits8((uint32_t)(v - q * 100000000), end - 8);
  if (q < 100000000) return digits_small((uint32_t)q, end - 8);
  uint64_t q2 = q / 100000000;
  digits8((uint32_t)(q - q2 * 100000000), end - 16);
  return digits_small((uint32_t)q2, end - 16);
}

void mlt__digits8(uint32_t v, char *p) { digits8(v, p); }

char *mlt__wr_u64(char *o, uint64_t v) {
  if (v < 10000) { /* sizes, counts, durations: no loop */
    uint32_t x = (uint32_t)v;
    if (x < 10) {
      *o = (char)('0' + x);
      return o + 1;
    }
    if (x < 100) {
      memcpy(o, digits2 + 2 * x, 2);
      return o + 2;
    }
    if (x < 1000) {
      *o = (char)('0' + x / 100);
      memcpy(o + 1, digits2 + 2 * (x % 100), 2);
      return o + 3;
    }
    memcpy(o, digits2 + 2 * (x / 100), 2);
    memcpy(o + 2, digits2 + 2 * (x % 100), 2);
    return o + 4;
  }
  if (v < 100000000) { /* sizes, counts: the digits straight to their place */
    uint32_t x = (uint32_t)v;
    size_t n = 2u + (x >= 100) + (x >= 1000) + (x >= 10000) + (x >= 100000) + (x >= 1000000) + (x >= 10000000);
    digits_small(x, o + n);
    return o + n;
  }
  char tmp[48] = {0}; /* the digits end at tmp + 24; fixed-size copies (no call) */
  char *p = u64_digits(v, tmp + 24);
  size_t n = (size_t)(tmp + 24 - p);
  memcpy(o, p, 16);
  if (n > 16) memcpy(o + 16, p + 16, 8);
  return o + n;
}

void mlt__buf_u64(mlt__buf *b, uint64_t v) {
  if (MLT_UNLIKELY(b->cap - b->len < 40) && mlt__buf_reserve(b, 40)) return;
  b->len = (size_t)(mlt__wr_u64(b->p + b->len, v) - b->p);
}

void mlt__buf_i64(mlt__buf *b, int64_t v) {
  if (v < 0) {
    mlt__buf_putc(b, '-');
    mlt__buf_u64(b, (uint64_t)0 - (uint64_t)v);
  } else {
    mlt__buf_u64(b, (uint64_t)v);
  }
}

void mlt__buf_f64(mlt__buf *b, double v) {
  if (isnan(v)) {
    mlt__buf_lit(b, "NaN");
    return;
  }
  if (isinf(v)) {
    if (v < 0)
      mlt__buf_lit(b, "-Infinity");
    else
      mlt__buf_lit(b, "Infinity");
    return;
  }
  /* printf and strtod in the "C" locale: JSON wants a dot, whatever
   * decimal point the application's locale has */
  char tmp[40];
  int n = 0;
  locale_t c = mlt__c_numeric(), old = c ? uselocale(c) : (locale_t)0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  if (c) uselocale(old);
  mlt__buf_put(b, tmp, (size_t)n);
  /* Python writes floats with a '.0' or an exponent: keep them floats. */
  if (!memchr(tmp, '.', (size_t)n) && !memchr(tmp, 'e', (size_t)n)) mlt__buf_lit(b, ".0");
}

static locale_t g_c_numeric;
static pthread_once_t g_c_numeric_once = PTHREAD_ONCE_INIT;
static void c_numeric_init(void) { g_c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

locale_t mlt__c_numeric(void) {
  pthread_once(&g_c_numeric_once, c_numeric_init);
  return g_c_numeric;
}

double mlt__json_strtod(const char *s, size_t n) {
  char stack[64], *buf = n < sizeof stack ? stack : malloc(n + 1);
  if (!buf) return 0;
  memcpy(buf, s, n);
  buf[n] = '\0';
  locale_t c = mlt__c_numeric(), old = c ? uselocale(c) : (locale_t)0;
  double v = strtod(buf, NULL);
  if (c) uselocale(old);
  if (buf != stack) free(buf);
  return v;
}

int mlt__json_plain_utf8(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(mlt__special8(w) & UINT64_C(0x8080808080808080))) {
        i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c >= 0x80) {
      size_t l = mlt__utf8_seq(s + i, n - i);
      if (!l) return 0;
      i += l;
    } else if (c < 0x20 || c == '"' || c == '\\') {
      return 0;
    } else {
      i++;
    }
  }
  return 1;
}

/* Length of a valid UTF-8 sequence at s (n bytes available), or 0. */
size_t mlt__utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c >= 0xC2 && c <= 0xDF) {
    if (n >= 2 && (s[1] & 0xC0) == 0x80) return 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    if (n >= 3 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
      if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
      if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
      return 3;
    }
  } else if (c >= 0xF0 && c <= 0xF4) {
    if (n >= 4 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80) {
      if (c == 0xF0 && s[1] < 0x90) return 0;
      if (c == 0xF4 && s[1] >= 0x90) return 0;
      return 4;
    }
  }
  return 0;
}

/* Escape table: 0 copy as is; otherwise the character after the backslash
 * ('u' for \u00XX); 0xFF marks a non-ASCII lead byte. */
static const unsigned char esc_tab[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

/* Length of the run of plain bytes (no '"', '\\', control or non-ASCII
 * byte) at the start of s[0..n).  SSE2 (always there on x86-64) checks 16
 * bytes per step. */
static inline size_t plain_run(const unsigned char *s, size_t n) {
  size_t i = 0;
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x1F);
  while (i + 16 <= n) {
    __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
    /* bytes <= 0x1F or >= 0x80: as signed, v <= 0x1F catches both */
    __m128i ctl = _mm_cmpgt_epi8(_mm_add_epi8(space, _mm_set1_epi8(1)), v);
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)), ctl);
    unsigned mask = (unsigned)_mm_movemask_epi8(m);
    if (mask) return i + (size_t)__builtin_ctz(mask);
    i += 16;
  }
#endif
  while (i < n && esc_tab[s[i]] == 0) i++;
  return i;
}

/* Mask of the bytes of 16 at s that end a plain run (see plain_run()). */
#ifdef __SSE2__
static inline unsigned special16(const unsigned char *s) {
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
  __m128i ctl = _mm_cmpgt_epi8(_mm_set1_epi8(0x20), v); /* < 0x20, and >= 0x80 (negative) */
  __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))), ctl);
  return (unsigned)_mm_movemask_epi8(m);
}
#endif

/* With SSSE3 (checked at run time), a 16-byte block whose only special
 * bytes are '"' and '\\' is escaped without a branch per byte: each 8-byte
 * half goes through a byte shuffle that doubles the special bytes, and the
 * first copy of each becomes the backslash (tables built once, 8 KiB). */
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <tmmintrin.h>
#define MLT__SSSE3_ESC 1
/* esc_shuf[m]: where each output byte comes from (0x80: zero, the slot of
 * a backslash); esc_bs[m]: the backslashes to OR in; esc_len[m]: 8 + the
 * bits of m (the output bytes). */
static unsigned char esc_shuf[256][16], esc_bs[256][16], esc_len[256];
static int esc_ssse3 = -1; /* -1 unknown, 0 no, 1 yes */
static pthread_once_t esc_once = PTHREAD_ONCE_INIT;

static void esc_init(void) {
  for (int m = 0; m < 256; m++) {
    int j = 0;
    for (int i = 0; i < 8; i++) {
      if (m & (1 << i)) {
        esc_shuf[m][j] = 0x80;
        esc_bs[m][j++] = '\\';
      }
      esc_shuf[m][j] = (unsigned char)i;
      esc_bs[m][j++] = 0;
    }
    esc_len[m] = (unsigned char)j;
    for (; j < 16; j++) {
      esc_shuf[m][j] = 0x80;
      esc_bs[m][j] = 0;
    }
  }
  __builtin_cpu_init();
  esc_ssse3 = __builtin_cpu_supports("ssse3") ? 1 : 0;
}

static inline int have_ssse3(void) {
  if (MLT_UNLIKELY(esc_ssse3 < 0)) pthread_once(&esc_once, esc_init);
  return esc_ssse3;
}

static int g_avx2 = -1; /* -1 unknown, 0 no, 1 yes (see have_avx2) */

void mlt__json_use_ssse3(int on) {
  have_ssse3();
  if (!on) esc_ssse3 = 0;
  else if (on > 0) esc_ssse3 = __builtin_cpu_supports("ssse3") ? 1 : 0;
  g_avx2 = on ? -1 : 0; /* (the AVX2 text pass goes with it) */
}

/* Both masks of 16 bytes at s: every special byte (*all) and the '"'/'\\'
 * ones (returned). */
static inline unsigned special16_qb(const unsigned char *s, unsigned *all) {
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
  __m128i qb = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
  __m128i ctl = _mm_cmpgt_epi8(_mm_set1_epi8(0x20), v);
  *all = (unsigned)_mm_movemask_epi8(_mm_or_si128(qb, ctl));
  return (unsigned)_mm_movemask_epi8(qb);
}

/* Mask of the '"' and '\\' bytes of 16 at s. */
static inline unsigned qb16(const unsigned char *s) {
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
  return (unsigned)_mm_movemask_epi8(
      _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
}

/* Escape the 16 bytes at s, whose special bytes are the '"'/'\\' bits of m,
 * to o (room for 32 + 16); returns the bytes written. */
__attribute__((target("ssse3"))) static inline size_t esc16_ssse3(char *o, const unsigned char *s, unsigned m) {
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
  unsigned lo = m & 0xFF, hi = m >> 8;
  __m128i r = _mm_shuffle_epi8(v, _mm_loadu_si128((const __m128i *)(const void *)esc_shuf[lo]));
  r = _mm_or_si128(r, _mm_loadu_si128((const __m128i *)(const void *)esc_bs[lo]));
  _mm_storeu_si128((__m128i *)(void *)o, r);
  size_t n = esc_len[lo];
  /* (the high half's indices + 8; a zero slot stays >= 0x80) */
  __m128i sh = _mm_add_epi8(_mm_loadu_si128((const __m128i *)(const void *)esc_shuf[hi]), _mm_set1_epi8(8));
  r = _mm_or_si128(_mm_shuffle_epi8(v, sh), _mm_loadu_si128((const __m128i *)(const void *)esc_bs[hi]));
  _mm_storeu_si128((__m128i *)(void *)(o + n), r);
  return n + esc_len[hi];
}
#else
void mlt__json_use_ssse3(int on) { (void)on; }
#endif

/* Copy k < 16 bytes, in overlapping words (no call). */
static inline void copy_lt16(char *o, const unsigned char *src, size_t k) {
  if (k >= 8) {
    memcpy(o, src, 8);
    memcpy(o + k - 8, src + k - 8, 8);
  } else if (k >= 4) {
    memcpy(o, src, 4);
    memcpy(o + k - 4, src + k - 4, 4);
  } else {
    for (size_t j = 0; j < k; j++) o[j] = (char)src[j];
  }
}

/* Write one special byte (or UTF-8 sequence) at s[i] escaped to o; returns
 * the bytes of input consumed.  |o| has room for 6 bytes. */
static inline size_t escape_one(char **op, const unsigned char *s, size_t i, size_t n, int *utf8_ok) {
  char *o = *op;
  unsigned c = s[i];
  size_t used = 1;
  if (c >= 0x80) {
    size_t l = mlt__utf8_seq(s + i, n - i);
    if (l) {
      memcpy(o, s + i, l);
      o += l;
      used = l;
    } else {
      memcpy(o, "\xEF\xBF\xBD", 3); /* invalid byte: U+FFFD */
      o += 3;
      if (utf8_ok) *utf8_ok = 0;
    }
  } else {
    unsigned char e = esc_tab[c]; /* '"', '\\' or a control's letter */
    *o++ = '\\';
    *o++ = (char)e;
    if (e == 'u') {
      *o++ = '0';
      *o++ = '0';
      *o++ = "0123456789abcdef"[c >> 4];
      *o++ = "0123456789abcdef"[c & 15];
    }
  }
  *op = o;
  return used;
}

#define special8 mlt__special8
#define plain_short mlt__plain_short /* (json-internal.h) */

int mlt__json_plain(const char *s, size_t n) {
  if (n <= 16) return plain_short(s, n);
  return plain_run((const unsigned char *)s, n) == n;
}

static MLT_ALWAYS_INLINE void str_body_impl(mlt__buf *b, const char *str, size_t n, const int ssse3) {
  const unsigned char *s = (const unsigned char *)str;
  /* Room for every byte doubled plus slack for 16-byte stores; the rare
   * longer escapes (controls: 6 bytes, invalid UTF-8: 3) check again. */
  if (b->cap - b->len < 2 * n + 40 && mlt__buf_reserve(b, 2 * n + 40)) return;
  char *o = b->p + b->len;
  size_t i = 0;
  (void)ssse3;
  while (i < n) {
#ifdef __SSE2__
    if (i + 16 <= n) {
      unsigned m = special16(s + i);
#ifdef MLT__SSSE3_ESC
      if (m && ssse3 && qb16(s + i) == m) {
        o += esc16_ssse3(o, s + i, m);
        i += 16;
        continue;
      }
#endif
      /* store the 16 bytes either way; only the plain prefix counts */
      _mm_storeu_si128((__m128i *)(void *)o, _mm_loadu_si128((const __m128i *)(const void *)(s + i)));
      if (!m) {
        o += 16;
        i += 16;
        continue;
      }
      unsigned k = (unsigned)__builtin_ctz(m);
      o += k;
      i += k;
    } else if (n >= 16) {
      /* the last bytes: the specials of the 16 ending at n, those already
       * done shifted out; the plain run copied in words */
      unsigned rem = (unsigned)(n - i), m = special16(s + n - 16) >> (16 - rem);
      unsigned k = m ? (unsigned)__builtin_ctz(m) : rem;
      copy_lt16(o, s + i, k);
      o += k;
      i += k;
      if (i >= n) break;
    } else {
      while (i < n && esc_tab[s[i]] == 0) *o++ = (char)s[i++];
      if (i >= n) break;
    }
#else
    while (i < n && esc_tab[s[i]] == 0) *o++ = (char)s[i++];
    if (i >= n) break;
#endif
    /* Invariant: room for every remaining byte doubled, one long escape
     * and a 16-byte store (only long escapes can break it). */
    if (MLT_UNLIKELY((size_t)(b->p + b->cap - o) < 2 * (n - i) + 40)) {
      size_t at = (size_t)(o - b->p);
      b->len = at;
      if (mlt__buf_reserve(b, 2 * (n - i) + 40)) return;
      o = b->p + at;
    }
    i += escape_one(&o, s, i, n, NULL);
  }
  b->len = (size_t)(o - b->p);
}

#ifdef MLT__SSSE3_ESC
__attribute__((target("ssse3"))) static void str_body_ssse3(mlt__buf *b, const char *str, size_t n) {
  str_body_impl(b, str, n, 1);
}
#endif
static void str_body_plain(mlt__buf *b, const char *str, size_t n) { str_body_impl(b, str, n, 0); }

void mlt__json_str_body(mlt__buf *b, const char *str, size_t n) {
  if (n <= 16 && plain_short(str, n)) {
    mlt__buf_put(b, str, n);
    return;
  }
#ifdef MLT__SSSE3_ESC
  if (have_ssse3()) {
    str_body_ssse3(b, str, n);
    return;
  }
#endif
  str_body_plain(b, str, n);
}

/* 1 if s holds the literal that starts with c ('t', 'f' or 'n'); s has
 * room for it (5 bytes for false, else 4). */
static inline int lit_at(const unsigned char *s, unsigned char c) {
  uint32_t w, want;
  memcpy(&w, s, 4);
  memcpy(&want, c == 't' ? "true" : c == 'f' ? "fals" : "null", 4);
  return w == want && (c != 'f' || s[4] == 'e');
}

static size_t scan_number(const char *s, size_t n, size_t i) {
  size_t start = i;
  if (i < n && s[i] == '-') i++;
  if (i >= n) return 0;
  if (s[i] == '0') {
    i++;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  } else {
    return 0;
  }
  if (i < n && s[i] == '.') {
    i++;
    size_t d = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == d) return 0;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    size_t d = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == d) return 0;
  }
  return i > start ? i : 0;
}

/* ---- one pass over JSON text: escape as a string body, and validate ---- */

/* The escape loop below feeds the validator one token at a time: the first
 * byte of each value, key and punctuation mark outside strings (a string is
 * its opening quote).  For 64 bytes at a time it takes masks of the quotes,
 * the spaces and the "special" bytes (backslash, control, non-ASCII); between
 * special bytes -- usually the whole block -- the bytes inside strings are
 * known from the quotes' mask (a prefix XOR), only the tokens' bits are
 * visited, and the output is copied in runs between quotes.  Special bytes
 * go one by one. */

/* The validator: a table-driven automaton over tokens.  The states say what
 * may come next and, for a value, where it is (top, object, array), so that
 * a scalar or string ends in the right AFTER_* state without a look at the
 * stack; only '{', '[', '}' and ']' touch it. */
enum {
  X_VALUE_TOP,      /* the top-level value */
  X_VALUE_O,        /* after ':' */
  X_VALUE_A,        /* after ',' in an array */
  X_VALUE_OR_END_A, /* after '[': a value or ']' */
  X_KEY,            /* after ',' in an object: a key */
  X_KEY_OR_END,     /* after '{': a key or '}' */
  X_COLON,          /* after a key */
  X_AFTER_O,        /* a value ended in an object: ',' or '}' */
  X_AFTER_A,        /* a value ended in an array: ',' or ']' */
  X_AFTER_TOP,      /* the top-level value ended */
  X_BAD,
  X_NSTATES
};
/* Actions (>= 16) for the transitions that touch the stack or scan a token. */
enum { A_PUSH_O = 16, A_PUSH_A, A_POP, A_LIT, A_NUM };

/* Token classes (whitespace never reaches the automaton). */
enum { C_BAD = 0, C_LBRACE, C_RBRACE, C_LBRACK, C_RBRACK, C_COLON, C_COMMA, C_LIT, C_NUM, C_STR, C_NCLASSES };

static const unsigned char jcls[256] = {
    ['{'] = C_LBRACE, ['}'] = C_RBRACE, ['['] = C_LBRACK, [']'] = C_RBRACK, [':'] = C_COLON,
    [','] = C_COMMA,  ['t'] = C_LIT,    ['f'] = C_LIT,    ['n'] = C_LIT,    ['-'] = C_NUM,
    ['0'] = C_NUM,    ['1'] = C_NUM,    ['2'] = C_NUM,    ['3'] = C_NUM,    ['4'] = C_NUM,
    ['5'] = C_NUM,    ['6'] = C_NUM,    ['7'] = C_NUM,    ['8'] = C_NUM,    ['9'] = C_NUM,
    ['"'] = C_STR};

#define B_ X_BAD
#define VALUE_ROW(str_after) {B_, A_PUSH_O, B_, A_PUSH_A, B_, B_, B_, A_LIT, A_NUM, str_after}
static const unsigned char jnext[X_NSTATES][C_NCLASSES] = {
    /*                   BAD {         }      [         ]      :          ,          lit    num    string */
    [X_VALUE_TOP] = VALUE_ROW(X_AFTER_TOP),
    [X_VALUE_O] = VALUE_ROW(X_AFTER_O),
    [X_VALUE_A] = VALUE_ROW(X_AFTER_A),
    [X_VALUE_OR_END_A] = {B_, A_PUSH_O, B_,    A_PUSH_A, A_POP, B_,        B_,        A_LIT, A_NUM, X_AFTER_A},
    [X_KEY] =            {B_, B_,       B_,    B_,       B_,    B_,        B_,        B_,    B_,    X_COLON},
    [X_KEY_OR_END] =     {B_, B_,       A_POP, B_,       B_,    B_,        B_,        B_,    B_,    X_COLON},
    [X_COLON] =          {B_, B_,       B_,    B_,       B_,    X_VALUE_O, B_,        B_,    B_,    B_},
    [X_AFTER_O] =        {B_, B_,       A_POP, B_,       B_,    B_,        X_KEY,     B_,    B_,    B_},
    [X_AFTER_A] =        {B_, B_,       B_,    B_,       A_POP, B_,        X_VALUE_A, B_,    B_,    B_},
    [X_AFTER_TOP] =      {B_, B_,       B_,    B_,       B_,    B_,        B_,        B_,    B_,    B_},
    [X_BAD] =            {B_, B_,       B_,    B_,       B_,    B_,        B_,        B_,    B_,    B_},
};
#undef VALUE_ROW
#undef B_
/* Where a scalar in value state x leaves the automaton. */
static const unsigned char jafter[X_NSTATES] = {[X_VALUE_TOP] = X_AFTER_TOP, [X_VALUE_O] = X_AFTER_O,
                                                [X_VALUE_A] = X_AFTER_A, [X_VALUE_OR_END_A] = X_AFTER_A};

/* jnext folded with the byte classes, one load per token (built once): a
 * state is kept as its row's offset (state * 256), an action as 0x8000 + A_*. */
#define JROW(state) ((unsigned)(state) << 8)
#define JACT(action) (0x8000u + (unsigned)(action))
static uint16_t jtab[X_NSTATES * 256];
/* Built when the library is loaded (no check per call); jbyte_once covers a
 * static link where constructors could run late. */
static pthread_once_t jbyte_once = PTHREAD_ONCE_INIT;
static int jbyte_ready;
static void jbyte_fill(void) {
  for (int x = 0; x < X_NSTATES; x++)
    for (int c = 0; c < 256; c++) {
      unsigned a = jnext[x][jcls[c]];
      jtab[x * 256 + c] = (uint16_t)(a >= A_PUSH_O ? JACT(a) : JROW(a));
    }
  __atomic_store_n(&jbyte_ready, 1, __ATOMIC_RELEASE);
}
__attribute__((constructor)) static void jbyte_init(void) { pthread_once(&jbyte_once, jbyte_fill); }

enum { JV_DEPTH = 1000 };

/* The masks of 64 bytes at p: quotes, spaces, special bytes. */
static inline void masks64(const unsigned char *p, uint64_t *q, uint64_t *sp, uint64_t *spec) {
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), space = _mm_set1_epi8(' '), bsl = _mm_set1_epi8('\\'),
                lim = _mm_set1_epi8(0x20);
#define LANE(k)                                                                                              \
  __m128i v##k = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));                             \
  uint64_t q##k = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v##k, quote));                                \
  uint64_t s##k = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v##k, space));                                \
  /* a backslash, a byte < 0x20, or one >= 0x80 (negative as signed) */                                    \
  uint64_t x##k = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v##k, bsl), _mm_cmpgt_epi8(lim, v##k)));
  LANE(0)
  LANE(1)
  LANE(2)
  LANE(3)
#undef LANE
  *q = q0 | q1 << 16 | q2 << 32 | q3 << 48;
  *sp = s0 | s1 << 16 | s2 << 32 | s3 << 48;
  *spec = x0 | x1 << 16 | x2 << 32 | x3 << 48;
#else
  uint64_t mq = 0, ms = 0, mx = 0;
  for (int k = 0; k < 64; k++) {
    unsigned c = p[k];
    mq |= (uint64_t)(c == '"') << k;
    ms |= (uint64_t)(c == ' ') << k;
    mx |= (uint64_t)(c == '\\' || c < 0x20 || c >= 0x80) << k;
  }
  *q = mq;
  *sp = ms;
  *spec = mx;
#endif
}

#if defined(MLT__SSSE3_ESC) && defined(__x86_64__)
#include <immintrin.h>
#define MLT__AVX2_JSON 1
/* The same masks with 32-byte lanes (AVX2, checked at run time). */
__attribute__((target("avx2"))) static inline void masks64_avx2(const unsigned char *p, uint64_t *q, uint64_t *sp,
                                                                   uint64_t *spec) {
  const __m256i quote = _mm256_set1_epi8('"'), space = _mm256_set1_epi8(' '), bsl = _mm256_set1_epi8('\\'),
                lim = _mm256_set1_epi8(0x20);
  __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)p);
  __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
  *q = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, quote)) |
       (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, quote)) << 32;
  *sp = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, space)) |
        (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, space)) << 32;
  __m256i xa = _mm256_or_si256(_mm256_cmpeq_epi8(a, bsl), _mm256_cmpgt_epi8(lim, a));
  __m256i xb = _mm256_or_si256(_mm256_cmpeq_epi8(b, bsl), _mm256_cmpgt_epi8(lim, b));
  *spec = (uint32_t)_mm256_movemask_epi8(xa) | (uint64_t)(uint32_t)_mm256_movemask_epi8(xb) << 32;
}
static inline int have_avx2(void) {
  if (MLT_UNLIKELY(g_avx2 < 0)) {
    __builtin_cpu_init();
    g_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") ? 1 : 0;
  }
  return g_avx2;
}
#endif

/* Copy n (<= 64) bytes to dst (room for 64), reading none past src + n. */
static inline void pad_copy(unsigned char *dst, const unsigned char *src, size_t n) {
  if (n >= 16) {
    size_t j = 0;
    for (; j + 16 <= n; j += 16) memcpy(dst + j, src + j, 16);
    if (j < n) memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    memcpy(dst, src, 8);
    memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    memcpy(dst, src, 4);
    memcpy(dst + n - 4, src + n - 4, 4);
  } else {
    for (size_t j = 0; j < n; j++) dst[j] = src[j];
  }
}

/* Copy len (<= 64) bytes; reads and writes up to 15 bytes past both ends. */
static inline void copy_run(char *o, const unsigned char *src, size_t len) {
  size_t j = 0;
  do {
    memcpy(o + j, src + j, 16);
    j += 16;
  } while (j < len);
}

static inline void tape_add(mlt__jtape *t, size_t at) { t->pos[t->n++] = (uint32_t)at; }

static int jgrow(mlt__jdoc *d) {
  size_t cap = d->cap ? d->cap * 2 : 64;
  mlt__jnode *nn = realloc(d->nodes, cap * sizeof *nn);
  if (!nn) return -1;
  d->nodes = nn;
  d->cap = cap;
  return 0;
}

/* One pass over JSON text str[0..n): validates it and, with OUT, appends it
 * escaped as a JSON string body to b; with DOM, builds the nodes of d (as
 * mlt__jparse documents them).  Returns 1 when the text is one JSON value. */
static MLT_ALWAYS_INLINE int json_pass(mlt__buf *b, const char *str, size_t n, int *utf8_ok, mlt__jdoc *d,
                                       const int OUT, const int DOM, const int AVX2, const int TAPE,
                                       mlt__jtape *tp) {
  const unsigned char *s = (const unsigned char *)str;
  unsigned xo = JROW(X_VALUE_TOP); /* the automaton's state (its row) */
  int depth = 0;
  uint64_t in_str = 0; /* 0 or all ones */
  char stack[JV_DEPTH]; /* '{' or '[' */
  size_t skip = 0;      /* the bytes before this belong to a number or literal already checked */
  /* The last bytes, padded with spaces, so that a block's loads and the runs'
   * copies stay inside. */
  unsigned char pad[64 + 16];
  /* DOM: containers open (node, its last child), the key for the next
   * value, the string open (a value node, or UINT32_MAX for a key) */
  uint32_t nstack[JV_DEPTH], nlast[JV_DEPTH];
  uint32_t pk_off = 0, pk_len = 0, str_node = 0, str_off = 0;
  uint8_t pk_esc = 0, str_esc = 0;
  int ok8 = 1;
  if (MLT_UNLIKELY(!__atomic_load_n(&jbyte_ready, __ATOMIC_ACQUIRE))) jbyte_init();
  if (n > UINT32_MAX - 2) return 0;
  char *o = NULL;
  if (OUT) {
    if (b->cap - b->len < 2 * n + 128 && mlt__buf_reserve(b, 2 * n + 128)) return 0;
    o = b->p + b->len;
  }
  if (TAPE) {
    if (tp->cap < n + 1) {
      size_t cap = n + 1 > 2 * tp->cap ? n + 1 : 2 * tp->cap;
      uint32_t *np = realloc(tp->pos, cap * sizeof *np), *nm = np ? realloc(tp->match, cap * sizeof *nm) : NULL;
      if (np) tp->pos = np;
      if (!nm) return 0;
      tp->match = nm;
      tp->cap = cap;
    }
    tp->n = 0;
    tp->src = str;
    tp->len = n;
  }
  if (DOM) {
    d->n = 0;
    d->src = str;
  }
  size_t i = 0;
/* A new node at the current place (linked to its container, with the key). */
#define NODE(var, type_, off_)                                                 \
  do {                                                                         \
    if (MLT_UNLIKELY(d->n == d->cap) && jgrow(d)) goto bad;                    \
    var = (uint32_t)d->n++;                                                    \
    mlt__jnode *nd_ = &d->nodes[var];                                          \
    *nd_ = (mlt__jnode){.type = (uint8_t)(type_), .key_esc = pk_esc, .key_off = pk_off, .key_len = pk_len, \
                        .off = (uint32_t)(off_)};                              \
    pk_off = pk_len = 0;                                                       \
    pk_esc = 0;                                                                \
    if (depth) {                                                               \
      mlt__jnode *par_ = &d->nodes[nstack[depth - 1]];                         \
      if (par_->count++ == 0)                                                  \
        par_->child = var;                                                     \
      else                                                                     \
        d->nodes[nlast[depth - 1]].next = var;                                 \
      nlast[depth - 1] = var;                                                  \
    }                                                                          \
  } while (0)
/* A string closes at s[pos]. */
#define CLOSE_STR(pos)                                                         \
  do {                                                                         \
    uint32_t l_ = (uint32_t)((pos)-str_off);                                   \
    if (str_node == UINT32_MAX) {                                              \
      pk_off = str_off;                                                        \
      pk_len = l_;                                                             \
      pk_esc = str_esc;                                                        \
    } else {                                                                   \
      d->nodes[str_node].len = l_;                                             \
      d->nodes[str_node].val_esc = str_esc;                                    \
    }                                                                          \
  } while (0)
/* Feed the token c at s[pos] to the automaton. */
#define TOKEN(c, pos)                                                                         \
  do {                                                                                        \
    if (TAPE) tape_add(tp, (pos));                                                            \
    unsigned a_ = jtab[xo + (c)];                                                             \
    if (MLT_LIKELY(a_ < JROW(X_BAD))) {                                                       \
      if (DOM && (c) == '"') { /* a key when a colon must follow */                          \
        str_off = (uint32_t)(pos) + 1;                                                        \
        str_esc = 0;                                                                          \
        if (a_ == JROW(X_COLON))                                                              \
          str_node = UINT32_MAX;                                                              \
        else                                                                                  \
          NODE(str_node, MLT__J_STR, str_off);                                                \
      }                                                                                       \
      xo = a_;                                                                                \
      break;                                                                                  \
    }                                                                                         \
    size_t p_ = (pos);                                                                        \
    switch (a_) {                                                                             \
      case JACT(A_PUSH_O):                                                                    \
      case JACT(A_PUSH_A):                                                                    \
        if (depth >= JV_DEPTH) goto bad;                                                      \
        if (DOM) {                                                                            \
          uint32_t x_;                                                                        \
          NODE(x_, a_ == JACT(A_PUSH_O) ? MLT__J_OBJ : MLT__J_ARR, p_);                       \
          nstack[depth] = x_;                                                                 \
        }                                                                                     \
        stack[depth++] = a_ == JACT(A_PUSH_O) ? '{' : '[';                                    \
        if (TAPE) nstack[depth - 1] = (uint32_t)tp->n - 1;                                    \
        xo = a_ == JACT(A_PUSH_O) ? JROW(X_KEY_OR_END) : JROW(X_VALUE_OR_END_A);              \
        break;                                                                                \
      case JACT(A_POP): /* the states let through only the right closer */                  \
        depth--;                                                                              \
        if (TAPE) tp->match[nstack[depth]] = (uint32_t)tp->n - 1;                             \
        if (DOM) d->nodes[nstack[depth]].len = (uint32_t)(p_ + 1 - d->nodes[nstack[depth]].off); \
        xo = depth == 0 ? JROW(X_AFTER_TOP) : stack[depth - 1] == '{' ? JROW(X_AFTER_O) : JROW(X_AFTER_A); \
        break;                                                                                \
      case JACT(A_LIT): {                                                                     \
        unsigned char c_ = s[p_];                                                             \
        size_t wl_ = c_ == 'f' ? 5 : 4;                                                       \
        if (n - p_ < wl_ || !lit_at(s + p_, c_)) goto bad;                                    \
        if (DOM) {                                                                            \
          uint32_t x_;                                                                        \
          NODE(x_, c_ == 't' ? MLT__J_TRUE : c_ == 'f' ? MLT__J_FALSE : MLT__J_NULL, p_);     \
          (void)x_;                                                                           \
        }                                                                                     \
        skip = p_ + wl_;                                                                      \
        xo = JROW(jafter[xo >> 8]);                                                           \
        SKIPPED();                                                                            \
        break;                                                                                \
      }                                                                                       \
      case JACT(A_NUM): {                                                                     \
        size_t e_ = scan_number(str, n, p_);                                                  \
        if (!e_) goto bad;                                                                    \
        if (DOM) {                                                                            \
          uint32_t x_;                                                                        \
          NODE(x_, MLT__J_NUM, p_);                                                           \
          d->nodes[x_].len = (uint32_t)(e_ - p_);                                             \
        }                                                                                     \
        skip = e_;                                                                            \
        xo = JROW(jafter[xo >> 8]);                                                           \
        SKIPPED();                                                                            \
        break;                                                                                \
      }                                                                                       \
      default:                                                                                \
        goto bad;                                                                             \
    }                                                                                         \
  } while (0)
  while (i < n) {
    const unsigned char *blk = s + i;
    size_t blen = 64;
    if (MLT_UNLIKELY(n - i < 64 + 16)) {
      blen = n - i < 64 ? n - i : 64;
      memset(pad, ' ', sizeof pad);
      pad_copy(pad, s + i, blen);
      blk = pad;
    }
    uint64_t q, sp, spec;
#ifdef MLT__AVX2_JSON
    if (AVX2)
      masks64_avx2(blk, &q, &sp, &spec);
    else
#endif
      masks64(blk, &q, &sp, &spec);
    if (blen < 64) spec &= (UINT64_C(1) << blen) - 1;
    /* bit k of ins: byte k is in a string (its opening quote included, its
     * closing quote not), if none was open at the block's start */
    uint64_t ins = q ^ (q << 1);
    ins ^= ins << 2;
    ins ^= ins << 4;
    ins ^= ins << 8;
    ins ^= ins << 16;
    ins ^= ins << 32;
    size_t pos = 0;
    while (pos < blen) {
      uint64_t rest = pos ? spec & (~UINT64_C(0) << pos) : spec;
      size_t f = rest ? (size_t)__builtin_ctzll(rest) : blen;
      if (f > pos) {
        /* bytes pos..f-1: no special byte */
        uint64_t range = (f == 64 ? ~UINT64_C(0) : (UINT64_C(1) << f) - 1) & (~UINT64_C(0) << pos);
        uint64_t flip = in_str ^ (pos ? (uint64_t)0 - ((ins >> (pos - 1)) & 1) : 0);
        uint64_t in = ins ^ flip;
        uint64_t tok = ((~in & ~sp & ~q) | (q & in)) & range;
        /* DOM: the closing quotes too, in order */
        uint64_t closing = DOM ? q & ~in & range : 0;
        tok |= closing;
/* a number or literal: its other bytes are not tokens */
#define SKIPPED() (tok &= skip - i >= 64 ? 0 : ~UINT64_C(0) << (skip - i))
        if (MLT_UNLIKELY(skip > i + pos)) SKIPPED();
        const unsigned char *bs = s + i;
        while (tok) {
          size_t k = (size_t)__builtin_ctzll(tok);
          tok &= tok - 1;
          if (DOM && ((closing >> k) & 1)) {
            CLOSE_STR(i + k);
            continue;
          }
          TOKEN(bs[k], i + k);
        }
#undef SKIPPED
        in_str = (uint64_t)0 - ((in >> (f - 1)) & 1);
        if (OUT) {
          /* the output: runs between quotes, each quote after a backslash */
          uint64_t qr = q & range;
          size_t from = pos;
          while (qr) {
            size_t k = (size_t)__builtin_ctzll(qr);
            qr &= qr - 1;
            copy_run(o, blk + from, k - from);
            o += k - from;
            *o++ = '\\';
            from = k;
          }
          copy_run(o, blk + from, f - from);
          o += f - from;
        }
        pos = f;
        if (pos >= blen) break;
      }
      /* Special bytes, one by one, to the end of their 16-byte lane (an
       * escape or UTF-8 sequence may run past it, and past the block). */
      if (OUT && MLT_UNLIKELY((size_t)(b->p + b->cap - o) < 2 * (n - i - pos) + 256)) {
        size_t at = (size_t)(o - b->p);
        b->len = at;
        if (mlt__buf_reserve(b, 2 * (n - i - pos) + 256)) return 0;
        o = b->p + at;
      }
      size_t j = i + pos, end = i + ((pos + 16) & ~(size_t)15);
      if (end > i + blen) end = i + blen;
      while (j < end) {
        unsigned c = s[j];
        if (in_str) {
          if (c == '"') {
            in_str = 0;
            if (DOM) CLOSE_STR(j);
            if (OUT) {
              *o++ = '\\';
              *o++ = '"';
            }
            j++;
          } else if (c == '\\') {
            /* an escape: both bytes escaped as they are */
            if (OUT) {
              *o++ = '\\';
              *o++ = '\\';
            }
            str_esc = 1;
            if (++j >= n) goto bad;
            c = s[j];
            if (c == 'u') {
              if (n - j < 5 || !isxdigit(s[j + 1]) || !isxdigit(s[j + 2]) || !isxdigit(s[j + 3]) ||
                  !isxdigit(s[j + 4]))
                goto bad;
            } else if (!(c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
                         c == 't')) {
              goto bad;
            }
            if (OUT) {
              if (c == '"' || c == '\\') *o++ = '\\';
              *o++ = (char)c;
            }
            j++;
          } else if (c < 0x20) {
            goto bad; /* a raw control character in a string */
          } else if (c >= 0x80) {
            if (OUT) {
              j += escape_one(&o, s, j, n, &ok8);
            } else {
              size_t l = mlt__utf8_seq(s + j, n - j);
              if (!l) ok8 = 0;
              j += l ? l : 1;
            }
          } else {
            if (OUT) *o++ = (char)c;
            j++;
          }
        } else if (c == ' ') {
          if (OUT) *o++ = ' ';
          j++;
        } else if (c == '\t' || c == '\n' || c == '\r') {
          if (OUT)
            j += escape_one(&o, s, j, n, &ok8);
          else
            j++;
        } else {
          /* a token (anything else outside strings is refused there), or a
           * byte of the number or literal before */
#define SKIPPED() ((void)0)
          if (j >= skip) TOKEN(c, j);
#undef SKIPPED
          if (c == '"') {
            in_str = ~UINT64_C(0);
            if (OUT) *o++ = '\\';
          }
          if (OUT) *o++ = (char)c;
          j++;
        }
      }
      if (j - i >= blen) { /* past the block: the next one starts there */
        pos = j - i;
        break;
      }
      /* back to the block's masks: the quotes' parity is taken from here */
      pos = j - i;
    }
    i += pos;
  }
#undef TOKEN
#undef NODE
#undef CLOSE_STR
  if (OUT) b->len = (size_t)(o - b->p);
  *utf8_ok = ok8;
  return !in_str && xo == JROW(X_AFTER_TOP);
bad:
  if (OUT) b->len = (size_t)(o - b->p);
  *utf8_ok = ok8;
  return 0;
}

#ifdef MLT__AVX2_JSON
__attribute__((target("avx2,bmi"))) static int escape_text_avx2(mlt__buf *b, const char *str, size_t n, int *utf8_ok) {
  return json_pass(b, str, n, utf8_ok, NULL, 1, 0, 1, 0, NULL);
}
__attribute__((target("avx2,bmi"))) static int escape_tape_avx2(mlt__buf *b, const char *str, size_t n, int *utf8_ok,
                                                               mlt__jtape *t) {
  return json_pass(b, str, n, utf8_ok, NULL, 1, 0, 1, 1, t);
}
__attribute__((target("avx2,bmi"))) static int tape_only_avx2(const char *str, size_t n, int *utf8_ok, mlt__jtape *t) {
  return json_pass(NULL, str, n, utf8_ok, NULL, 0, 0, 1, 1, t);
}
#endif
static int escape_tape(mlt__buf *b, const char *str, size_t n, int *utf8_ok, mlt__jtape *t) {
  if (b) return json_pass(b, str, n, utf8_ok, NULL, 1, 0, 0, 1, t);
  return json_pass(NULL, str, n, utf8_ok, NULL, 0, 0, 0, 1, t);
}

int mlt__json_escape_text(mlt__buf *b, const char *str, size_t n, int *utf8_ok) {
#ifdef MLT__AVX2_JSON
  if (have_avx2()) return escape_text_avx2(b, str, n, utf8_ok);
#endif
  return json_pass(b, str, n, utf8_ok, NULL, 1, 0, 0, 0, NULL);
}

int mlt__json_escape_text_tape(mlt__buf *b, const char *str, size_t n, int *utf8_ok, mlt__jtape *t) {
  t->n = 0;
#ifdef MLT__AVX2_JSON
  if (have_avx2()) return b ? escape_tape_avx2(b, str, n, utf8_ok, t) : tape_only_avx2(str, n, utf8_ok, t);
#endif
  return escape_tape(b, str, n, utf8_ok, t);
}

void mlt__jtape_free(mlt__jtape *t) {
  free(t->pos);
  free(t->match);
  memset(t, 0, sizeof *t);
}

/* ---- navigation over a tape --------------------------------------------
 * A value is the index of its first token; the tokens of a container run to
 * its closer (match); a member is a key (its opening quote), ':', the
 * value; members and elements are separated by ','. */

static inline char tk_c(const mlt__jtape *t, size_t k) { return k < t->n ? t->src[t->pos[k]] : '\0'; }

static inline size_t tk_skip(const mlt__jtape *t, size_t k) {
  char c = tk_c(t, k);
  return c == '{' || c == '[' ? (size_t)t->match[k] + 1 : k + 1;
}

/* a[0..n) == b[0..n) for short keys (overlapping words, no call). */
static inline int key_eq(const char *a, const char *b, size_t n) {
  if (n >= 8) {
    uint64_t x, y, u, v;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    memcpy(&u, a + n - 8, 8);
    memcpy(&v, b + n - 8, 8);
    return x == y && u == v && (n <= 16 || !memcmp(a + 8, b + 8, n - 16));
  }
  if (n >= 4) {
    uint32_t x, y, u, v;
    memcpy(&x, a, 4);
    memcpy(&y, b, 4);
    memcpy(&u, a + n - 4, 4);
    memcpy(&v, b + n - 4, 4);
    return x == y && u == v;
  }
  for (size_t k = 0; k < n; k++)
    if (a[k] != b[k]) return 0;
  return 1;
}

/* The raw contents of the string at token k: from its opening quote to
 * the closing one, which is the last byte before the next token (or the
 * text's end) that is not whitespace. */
static inline size_t tk_str_len(const mlt__jtape *t, size_t k) {
  size_t a = t->pos[k] + 1, e = k + 1 < t->n ? t->pos[k + 1] : t->len;
  while (e > a && t->src[e - 1] != '"') e--;
  return e > a ? e - 1 - a : 0;
}

static inline int tk_str_is(const mlt__jtape *t, size_t k, const char *want, size_t wl) {
  return tk_c(t, k) == '"' && tk_str_len(t, k) == wl && key_eq(t->src + t->pos[k] + 1, want, wl);
}

/* The values of members keys[0..nk) of the object at k (the first of each;
 * SIZE_MAX where absent); stops early when key 0 is found and stop0. */
static void tk_members(const mlt__jtape *t, size_t k, const char *const *keys, const uint8_t *kls, size_t nk,
                       size_t *vals, int stop0) {
  for (size_t i = 0; i < nk; i++) vals[i] = SIZE_MAX;
  if (tk_c(t, k) != '{') return;
  size_t end = t->match[k], found = 0;
  for (size_t j = k + 1; j + 2 < end && tk_c(t, j) == '"';) {
    /* the key's length: its closing quote is usually right before the ':' */
    size_t a = t->pos[j] + 1, c = t->pos[j + 1];
    size_t kl = c > a && t->src[c - 1] == '"' ? c - 1 - a : tk_str_len(t, j);
    const char *key = t->src + a;
    for (size_t i = 0; i < nk; i++)
      if (kls[i] == kl && vals[i] == SIZE_MAX && key[0] == keys[i][0] && key_eq(key, keys[i], kl)) {
        vals[i] = j + 2;
        if (++found == nk || (i == 0 && stop0)) return;
        break;
      }
    j = tk_skip(t, j + 2);
    if (tk_c(t, j) != ',') break;
    j++;
  }
}

static inline size_t tk_first(const mlt__jtape *t, size_t k) {
  return tk_c(t, k) == '[' && t->match[k] > k + 1 ? k + 1 : SIZE_MAX;
}

static inline size_t tk_next(const mlt__jtape *t, size_t e) {
  size_t j = tk_skip(t, e);
  return tk_c(t, j) == ',' ? j + 1 : SIZE_MAX;
}

/* m is a message: an object with "role" and "content" (their values). */
static int tk_message(const mlt__jtape *t, size_t m, size_t *role, size_t *content) {
  static const char *const keys[] = {"role", "content"};
  static const uint8_t kls[] = {4, 7};
  size_t v[2];
  tk_members(t, m, keys, kls, 2, v, 0);
  *role = v[0];
  *content = v[1];
  return v[0] != SIZE_MAX && v[1] != SIZE_MAX;
}

/* The text string of a message's "content" (a string, or the first text
 * part of a list), or SIZE_MAX. */
static size_t tk_content_text(const mlt__jtape *t, size_t c) {
  static const char *const keys[] = {"type", "text"};
  static const uint8_t kls[] = {4, 4};
  if (tk_c(t, c) == '"') return c;
  for (size_t part = tk_first(t, c); part != SIZE_MAX; part = tk_next(t, part)) {
    if (tk_c(t, part) == '"') return part;
    size_t v[2];
    tk_members(t, part, keys, kls, 2, v, 0);
    if (tk_str_is(t, v[0], "text", 4) || tk_str_is(t, v[0], "output_text", 11))
      return tk_c(t, v[1]) == '"' ? v[1] : SIZE_MAX; /* (MLflow takes that part's text, whatever it is) */
  }
  return SIZE_MAX;
}

static size_t tk_chat_content(const mlt__jtape *t, size_t obj, const char *role, int depth) {
  static const char *const keys[] = {"messages", "choices", "input", "output", "request"};
  static const uint8_t kls[] = {8, 7, 5, 6, 7};
  static const char *const kmsg[] = {"message"};
  static const uint8_t klmsg[] = {7};
  if (tk_c(t, obj) != '{' || depth > 4) return SIZE_MAX;
  size_t v[5], r, c;
  /* a usable "messages" wins whatever follows it */
  tk_members(t, obj, keys, kls, 5, v, 1);
  size_t list = tk_first(t, v[0]) != SIZE_MAX ? v[0] : SIZE_MAX;
  if (list == SIZE_MAX && v[0] != SIZE_MAX) tk_members(t, obj, keys + 1, kls + 1, 4, v + 1, 0);
  if (list == SIZE_MAX) {
    size_t first = tk_first(t, v[1]), msg;
    if (first != SIZE_MAX) {
      tk_members(t, first, kmsg, klmsg, 1, &msg, 0);
      if (tk_message(t, msg, &r, &c)) return tk_content_text(t, c);
    }
    if (tk_first(t, v[2]) != SIZE_MAX) /* a non-empty list (an empty one is falsy) */
      list = v[2];
    else if (tk_first(t, v[3]) != SIZE_MAX)
      list = v[3];
    else
      return v[4] != SIZE_MAX ? tk_chat_content(t, v[4], role, depth + 1) : SIZE_MAX;
  }
  size_t last = SIZE_MAX, last_role = SIZE_MAX, rl = strlen(role);
  for (size_t it = tk_first(t, list); it != SIZE_MAX; it = tk_next(t, it)) {
    if (!tk_message(t, it, &r, &c)) continue;
    last = c;
    if (tk_str_is(t, r, role, rl)) last_role = c;
  }
  size_t pick = last_role != SIZE_MAX ? last_role : last;
  return pick != SIZE_MAX ? tk_content_text(t, pick) : SIZE_MAX;
}

int mlt__jtape_chat_content(const mlt__jtape *t, const char *role, size_t *off, size_t *len) {
  size_t k = tk_chat_content(t, 0, role, 0);
  if (k == SIZE_MAX) return 0;
  *off = t->pos[k] + 1;
  *len = tk_str_len(t, k);
  return 1;
}

void mlt__json_str(mlt__buf *b, const char *s, size_t n) {
  if (n <= 16 && plain_short(s, n)) {
    if (MLT_UNLIKELY(b->cap - b->len < 24) && mlt__buf_reserve(b, 24)) return;
    char *o = b->p + b->len;
    o[0] = '"';
    if (n >= 8) { /* two overlapping words (no call) */
      memcpy(o + 1, s, 8);
      memcpy(o + 1 + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
      memcpy(o + 1, s, 4);
      memcpy(o + 1 + n - 4, s + n - 4, 4);
    } else {
      for (size_t k = 0; k < n; k++) o[1 + k] = s[k];
    }
    o[n + 1] = '"';
    b->len += n + 2;
    return;
  }
  mlt__buf_putc(b, '"');
  mlt__json_str_body(b, s, n);
  mlt__buf_putc(b, '"');
}

/* ---- validation ------------------------------------------------------ */

static size_t skip_ws(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

/* Parses a string starting at s[i] == '"'; returns the index after it, or 0.
 * Invalid UTF-8 inside clears *utf8_ok (the text stays valid JSON). */
static size_t scan_string(const char *s, size_t n, size_t i, int *utf8_ok) {
  const unsigned char *u = (const unsigned char *)s;
  i++;
  while (i < n) {
    i += plain_run(u + i, n - i);
    if (i >= n) return 0;
    unsigned char c = u[i];
    if (c == '"') return i + 1;
    if (c < 0x20) return 0;
    if (c >= 0x80) {
      size_t l = mlt__utf8_seq(u + i, n - i);
      if (!l) {
        *utf8_ok = 0;
        l = 1;
      }
      i += l;
      continue;
    }
    if (c == '\\') {
      if (++i >= n) return 0;
      switch (s[i]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          i++;
          break;
        case 'u':
          if (i + 4 >= n) return 0;
          for (int k = 1; k <= 4; k++) {
            char h = s[i + k];
            if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) return 0;
          }
          i += 5;
          break;
        default:
          return 0;
      }
      continue;
    }
    i++;
  }
  return 0;
}

int mlt__json_check(const char *s, size_t n, int *utf8_ok) {
  *utf8_ok = 1;
  enum { MAXD = 1000 };
  char stack[MAXD]; /* '{' or '[' */
  int depth = 0;
  size_t i = skip_ws(s, n, 0);
  /* state: 0 expect value; after a value: pop logic */
  for (;;) {
    /* parse a value at i */
    if (i >= n) return 0;
    char c = s[i];
    if (c == '{' || c == '[') {
      if (depth >= MAXD) return 0;
      stack[depth++] = c;
      i = skip_ws(s, n, i + 1);
      if (i < n && s[i] == (c == '{' ? '}' : ']')) {
        depth--;
        i++;
        goto after_value;
      }
      if (c == '{') {
        if (i >= n || s[i] != '"') return 0;
        if (!(i = scan_string(s, n, i, utf8_ok))) return 0;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ':') return 0;
        i = skip_ws(s, n, i + 1);
      }
      continue;
    } else if (c == '"') {
      if (!(i = scan_string(s, n, i, utf8_ok))) return 0;
    } else if (c == 't') {
      if (n - i < 4 || memcmp(s + i, "true", 4)) return 0;
      i += 4;
    } else if (c == 'f') {
      if (n - i < 5 || memcmp(s + i, "false", 5)) return 0;
      i += 5;
    } else if (c == 'n') {
      if (n - i < 4 || memcmp(s + i, "null", 4)) return 0;
      i += 4;
    } else {
      if (!(i = scan_number(s, n, i))) return 0;
    }
  after_value:
    i = skip_ws(s, n, i);
    if (depth == 0) return i == n;
    if (i >= n) return 0;
    if (s[i] == ',') {
      i = skip_ws(s, n, i + 1);
      if (stack[depth - 1] == '{') {
        if (i >= n || s[i] != '"') return 0;
        if (!(i = scan_string(s, n, i, utf8_ok))) return 0;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ':') return 0;
        i = skip_ws(s, n, i + 1);
      }
      continue;
    }
    if (s[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
      depth--;
      i++;
      goto after_value;
    }
    return 0;
  }
}

/* ---- a small DOM over the source text -------------------------------- */

void mlt__jdoc_free(mlt__jdoc *d) {
  free(d->nodes);
  memset(d, 0, sizeof *d);
}

int mlt__jparse(mlt__jdoc *d, const char *s, size_t n) {
  int ok8 = 1;
  int r = json_pass(NULL, s, n, &ok8, d, 0, 1, 0, 0, NULL);
  d->utf8_ok = ok8;
  return r ? 0 : -1;
}

/* Decode JSON string escapes of s[0..n) into out (UTF-8). */
void mlt__junescape(mlt__buf *out, const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const char *bs = memchr(s + i, '\\', n - i);
    size_t run = bs ? (size_t)(bs - (s + i)) : n - i;
    mlt__buf_put(out, s + i, run);
    i += run;
    if (i >= n) break;
    i++; /* the backslash */
    if (i >= n) break;
    char c = s[i++];
    switch (c) {
      case 'b': mlt__buf_putc(out, '\b'); break;
      case 'f': mlt__buf_putc(out, '\f'); break;
      case 'n': mlt__buf_putc(out, '\n'); break;
      case 'r': mlt__buf_putc(out, '\r'); break;
      case 't': mlt__buf_putc(out, '\t'); break;
      case 'u': {
        uint64_t cp = 0;
        if (i + 4 > n || mlt__parse_hex(s + i, 4, &cp)) return;
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u') {
          uint64_t lo = 0;
          if (!mlt__parse_hex(s + i + 2, 4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* lone surrogate */
        char u[4];
        size_t ul;
        if (cp < 0x80) {
          u[0] = (char)cp;
          ul = 1;
        } else if (cp < 0x800) {
          u[0] = (char)(0xC0 | (cp >> 6));
          u[1] = (char)(0x80 | (cp & 0x3F));
          ul = 2;
        } else if (cp < 0x10000) {
          u[0] = (char)(0xE0 | (cp >> 12));
          u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
          u[2] = (char)(0x80 | (cp & 0x3F));
          ul = 3;
        } else {
          u[0] = (char)(0xF0 | (cp >> 18));
          u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
          u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
          u[3] = (char)(0x80 | (cp & 0x3F));
          ul = 4;
        }
        mlt__buf_put(out, u, ul);
        break;
      }
      default: mlt__buf_putc(out, c); break; /* " \ / */
    }
  }
}

uint32_t mlt__jget_n(const mlt__jdoc *d, uint32_t obj, const char *key, size_t kl) {
  if (obj >= d->n || d->nodes[obj].type != MLT__J_OBJ || !kl) return UINT32_MAX;
  const mlt__jnode *o = &d->nodes[obj];
  uint32_t c = o->child;
  for (uint32_t k = 0; k < o->count; k++, c = d->nodes[c].next) {
    const mlt__jnode *x = &d->nodes[c];
    /* Keys with escapes are compared raw: MLflow's keys have none. */
    const char *xk = d->src + x->key_off;
    if (x->key_len == kl && xk[0] == key[0] && !memcmp(xk, key, kl)) return c;
  }
  return UINT32_MAX;
}

uint32_t mlt__jget(const mlt__jdoc *d, uint32_t obj, const char *key) {
  size_t kl = strlen(key);
  if (!kl) { /* the empty key */
    if (obj >= d->n || d->nodes[obj].type != MLT__J_OBJ) return UINT32_MAX;
    uint32_t c = d->nodes[obj].child;
    for (uint32_t k = 0; k < d->nodes[obj].count; k++, c = d->nodes[c].next)
      if (d->nodes[c].key_len == 0) return c;
    return UINT32_MAX;
  }
  return mlt__jget_n(d, obj, key, kl);
}
