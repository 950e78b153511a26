/* lib/json.c: growable buffer, JSON string escaping, JSON validation. */
#include "json-internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

void mlt__buf_u64(mlt__buf *b, uint64_t v) {
  char tmp[24];
  int i = 24;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  mlt__buf_put(b, tmp + i, (size_t)(24 - i));
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
  char tmp[40];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  mlt__buf_put(b, tmp, (size_t)n);
  /* Python writes floats with a '.0' or an exponent: keep them floats. */
  if (!memchr(tmp, '.', (size_t)n) && !memchr(tmp, 'e', (size_t)n)) mlt__buf_lit(b, ".0");
}

/* 0: copy; 1: escape; 2: non-ASCII lead. */
static const uint8_t cls[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};

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

void mlt__json_str_body(mlt__buf *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  /* Worst case 6 bytes per input byte; reserve lazily per run. */
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && cls[s[run]] == 0) run++;
    if (run > i) {
      mlt__buf_put(b, s + i, run - i);
      i = run;
      if (i >= n) break;
    }
    unsigned c = s[i];
    if (cls[c] == 1) {
      char esc[8];
      size_t el = 2;
      esc[0] = '\\';
      switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
          esc[1] = 'u';
          esc[2] = '0';
          esc[3] = '0';
          esc[4] = "0123456789abcdef"[c >> 4];
          esc[5] = "0123456789abcdef"[c & 15];
          el = 6;
      }
      mlt__buf_put(b, esc, el);
      i++;
    } else {
      size_t l = mlt__utf8_seq(s + i, n - i);
      if (l) {
        mlt__buf_put(b, s + i, l);
        i += l;
      } else {
        mlt__buf_put(b, "\xEF\xBF\xBD", 3);
        i++;
      }
    }
  }
}

void mlt__json_str(mlt__buf *b, const char *s, size_t n) {
  mlt__buf_putc(b, '"');
  mlt__json_str_body(b, s, n);
  mlt__buf_putc(b, '"');
}

/* ---- validation ------------------------------------------------------ */

static size_t skip_ws(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

/* Parses a string starting at s[i] == '"'; returns index after it or 0. */
static size_t scan_string(const char *s, size_t n, size_t i) {
  i++;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') return i + 1;
    if (c < 0x20) return 0;
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

int mlt__json_valid(const char *s, size_t n) {
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
        if (!(i = scan_string(s, n, i))) return 0;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ':') return 0;
        i = skip_ws(s, n, i + 1);
      }
      continue;
    } else if (c == '"') {
      if (!(i = scan_string(s, n, i))) return 0;
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
        if (!(i = scan_string(s, n, i))) return 0;
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
