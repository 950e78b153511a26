/* lib/json-internal.h: growable buffers and a streaming JSON writer/validator
 * for the export thread (hand-written: cJSON would cost a tree per span and
 * loses 64-bit integers). */
#ifndef MLT_JSON_INTERNAL_H
#define MLT_JSON_INTERNAL_H

#include "common-internal.h"

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
/* A double as Python's json.dumps writes it (shortest repr that round-trips;
 * NaN, Infinity, -Infinity). */
void mlt__buf_f64(mlt__buf *b, double v);

/* A JSON string literal with quotes.  Escapes ", \ and control characters as
 * json.dumps(ensure_ascii=False) does; non-ASCII UTF-8 is copied; invalid
 * UTF-8 bytes become U+FFFD. */
void mlt__json_str(mlt__buf *b, const char *s, size_t n);
/* Escaped contents only (no quotes). */
void mlt__json_str_body(mlt__buf *b, const char *s, size_t n);

/* Length of the valid UTF-8 sequence starting at s (n bytes available), or
 * 0 when invalid (overlongs and surrogates rejected). */
size_t mlt__utf8_seq(const unsigned char *s, size_t n);

/* 1 if s[0..n) is exactly one JSON value (RFC 8259, surrounding whitespace
 * allowed, nesting depth <= 1000). */
int mlt__json_valid(const char *s, size_t n);

#endif /* MLT_JSON_INTERNAL_H */
