/* lib/util/json-internal.h: growable buffers and a streaming JSON writer/validator
 * for the export thread (hand-written: cJSON would cost a tree per span and
 * loses 64-bit integers). */
#ifndef MLT_JSON_INTERNAL_H
#define MLT_JSON_INTERNAL_H

#include "util/common-internal.h"

#include <locale.h>

typedef struct mlt__buf {
  char *p;
  size_t len, cap;
  int oom; /* an allocation failed: contents are incomplete */
} mlt__buf;

void mlt__buf_free(mlt__buf *b);
int mlt__buf_reserve(mlt__buf *b, size_t extra);
static inline void mlt__buf_reset(mlt__buf *b) {
  b->len = 0;
  b->oom = 0;
}
static inline void mlt__buf_put(mlt__buf *b, const void *s, size_t n) {
  if (MLT_UNLIKELY(b->cap - b->len < n + 1) && mlt__buf_reserve(b, n + 1)) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}
static inline void mlt__buf_putc(mlt__buf *b, char c) {
  if (MLT_UNLIKELY(b->cap - b->len < 2) && mlt__buf_reserve(b, 2)) return;
  b->p[b->len++] = c;
}
#define mlt__buf_lit(b, lit) mlt__buf_put((b), (lit), sizeof(lit) - 1)
static inline void mlt__buf_puts(mlt__buf *b, const char *s) { mlt__buf_put(b, s, strlen(s)); }
/* NUL-terminate without counting the NUL. */
static inline const char *mlt__buf_cstr(mlt__buf *b) {
  if (mlt__buf_reserve(b, 1)) return "";
  b->p[b->len] = '\0';
  return b->p;
}
void mlt__buf_i64(mlt__buf *b, int64_t v);
void mlt__buf_u64(mlt__buf *b, uint64_t v);
/* The decimal digits of v at o (room: 24 bytes, some written past the
 * digits); returns the end of the digits. */
char *mlt__wr_u64(char *o, uint64_t v);
/* Exactly 8 decimal digits of v < 10^8 at p (leading zeros kept). */
void mlt__digits8(uint32_t v, char *p);
extern const char mlt__digits2[201] MLT_INTERNAL_VAR; /* "00" "01" .. "99" */
static inline void mlt__digits8_inline(uint32_t v, char *p) {
  uint32_t a = v / 10000, b = v % 10000;
  memcpy(p, mlt__digits2 + 2 * (a / 100), 2);
  memcpy(p + 2, mlt__digits2 + 2 * (a % 100), 2);
  memcpy(p + 4, mlt__digits2 + 2 * (b / 100), 2);
  memcpy(p + 6, mlt__digits2 + 2 * (b % 100), 2);
}
/* A double as Python's json.dumps writes it (shortest repr that round-trips;
 * NaN, Infinity, -Infinity). */
void mlt__buf_f64(mlt__buf *b, double v);

/* A JSON string literal with quotes.  Escapes ", \ and control characters as
 * json.dumps(ensure_ascii=False) does; non-ASCII UTF-8 is copied; invalid
 * UTF-8 bytes become U+FFFD. */
void mlt__json_str(mlt__buf *b, const char *s, size_t n);
/* Escaped contents only (no quotes). */
void mlt__json_str_body(mlt__buf *b, const char *s, size_t n);
/* 1 if s[0..n) is copied as it is by the escaper (no '"', '\\', control or
 * non-ASCII byte). */
int mlt__json_plain(const char *s, size_t n);
/* 1 if s[0..n) is copied as it is by the escaper: no '"', '\\' or control
 * character, and every non-ASCII byte part of valid UTF-8. */
int mlt__json_plain_utf8(const char *s, size_t n);
/* Non-zero when one of the 8 bytes of w is '"', '\\', < 0x20 or >= 0x80. */
static inline uint64_t mlt__special8(uint64_t w) {
  const uint64_t ones = UINT64_C(0x0101010101010101);
  uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
  return ((q - ones) & ~q) | ((bs - ones) & ~bs) | ((w - ones * 0x20) & ~w) | w;
}
/* mlt__json_plain() of n <= 16 bytes, inline (two overlapping words). */
static inline int mlt__plain_short(const char *s, size_t n) {
  uint64_t a, z;
  if (n >= 8) {
    memcpy(&a, s, 8);
    memcpy(&z, s + n - 8, 8);
    return !((mlt__special8(a) | mlt__special8(z)) & UINT64_C(0x8080808080808080));
  }
  if (n >= 4) {
    uint32_t x, y;
    memcpy(&x, s, 4);
    memcpy(&y, s + n - 4, 4);
    a = (uint64_t)x | (uint64_t)y << 32;
    return !(mlt__special8(a) & UINT64_C(0x8080808080808080));
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') return 0;
  }
  return 1;
}
static inline int mlt__json_plain_inline(const char *s, size_t n) {
  return n <= 16 ? mlt__plain_short(s, n) : mlt__json_plain(s, n);
}
/* mlt__json_str() with the short plain case inline. */
static inline void mlt__json_str_inline(mlt__buf *b, const char *s, size_t n) {
  if (n <= 16 && mlt__plain_short(s, n) && (b->cap - b->len >= 24 || !mlt__buf_reserve(b, 24))) {
    char *o = b->p + b->len;
    o[0] = '"';
    if (n >= 8) {
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
  mlt__json_str(b, s, n);
}
/* One pass over JSON text s[0..n): append it escaped as a JSON string body
 * (exactly what mlt__json_str_body() gives) and validate it as one JSON value
 * (RFC 8259, nesting <= 1000, no surrounding whitespace: trim first).
 * Returns 1 when valid; *utf8_ok tells whether every byte was valid UTF-8. */
int mlt__json_escape_text(mlt__buf *b, const char *s, size_t n, int *utf8_ok);
/* Tests: 0 turns the SSSE3 escaping and the AVX2 text pass off, 1 on
 * again (when the CPU has them). */
void mlt__json_use_ssse3(int on);

/* Length of the valid UTF-8 sequence starting at s (n bytes available), or
 * 0 when invalid (overlongs and surrogates rejected). */
size_t mlt__utf8_seq(const unsigned char *s, size_t n);

/* The "C" numeric locale (created once; (locale_t)0 without memory): for
 * printf/strtod of JSON numbers whatever the application's locale (its
 * decimal point may be a comma, or several bytes). */
locale_t mlt__c_numeric(void);
/* A JSON number's text s[0..n) as a double, as strtod reads it in the "C"
 * locale (uselocale, POSIX) (0 without memory for a number of 64 bytes or more). */
double mlt__json_strtod(const char *s, size_t n);

/* 1 if s[0..n) is exactly one JSON value (RFC 8259, surrounding whitespace
 * allowed, nesting depth <= 1000); *utf8_ok tells whether every string in
 * it is valid UTF-8. */
int mlt__json_check(const char *s, size_t n, int *utf8_ok);

/* A DOM over validated JSON text: nodes point into the source (no copies).
 * Node 0 is the root; children are linked by index. */
enum { MLT__J_NULL = 1, MLT__J_FALSE, MLT__J_TRUE, MLT__J_NUM, MLT__J_STR, MLT__J_ARR, MLT__J_OBJ };
typedef struct mlt__jnode {
  uint8_t type;
  uint8_t key_esc, val_esc; /* key / string value contains escapes */
  uint32_t key_off, key_len; /* member key (raw, without quotes) */
  uint32_t off, len;         /* value: string contents (raw) or token text */
  uint32_t child, next, count;
} mlt__jnode;
typedef struct mlt__jdoc {
  const char *src;
  mlt__jnode *nodes;
  size_t n, cap;
  int utf8_ok; /* after mlt__jparse(): every string was valid UTF-8 */
} mlt__jdoc;
/* Parse s[0..n) (nesting <= 1000); 0 on success.  The doc is reusable. */
int mlt__jparse(mlt__jdoc *d, const char *s, size_t n);
void mlt__jdoc_free(mlt__jdoc *d);
/* Member |key| of object node |obj|, or UINT32_MAX. */
uint32_t mlt__jget(const mlt__jdoc *d, uint32_t obj, const char *key);
/* The same with the key's length given (kl > 0); MLT__JGET for a literal. */
uint32_t mlt__jget_n(const mlt__jdoc *d, uint32_t obj, const char *key, size_t kl);
#define MLT__JGET(d, obj, lit) mlt__jget_n((d), (obj), "" lit, sizeof(lit) - 1)
/* A tape of valid JSON text: the offset of each token (every structural
 * character and the first byte of each scalar; a string is its opening
 * quote), and for a container's opening token the index of its closer. */
typedef struct mlt__jtape {
  uint32_t *pos, *match;
  size_t n, cap;
  const char *src;
  size_t len;
} mlt__jtape;
/* mlt__json_escape_text() that also writes the tape of the text (which must
 * stay where it is while the tape is used); with b NULL, only validates and
 * writes the tape.  Returns 1 when valid (the tape is complete only then). */
int mlt__json_escape_text_tape(mlt__buf *b, const char *s, size_t n, int *utf8_ok, mlt__jtape *t);
void mlt__jtape_free(mlt__jtape *t);
/* MLflow's chat-aware preview (mlflow/tracing/utils/truncation.py) over a
 * complete tape: the raw contents (t->src[*off, *off + *len)) of the text
 * of the last message of |role| (else the last message) of an OpenAI-style
 * chat request or response; 0 when there is none. */
int mlt__jtape_chat_content(const mlt__jtape *t, const char *role, size_t *off, size_t *len);
/* Append the decoded (unescaped) form of a JSON string's raw contents. */
void mlt__junescape(mlt__buf *out, const char *s, size_t n);

#endif /* MLT_JSON_INTERNAL_H */
