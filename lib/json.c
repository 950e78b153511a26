/* lib/json.c: growable buffer, JSON string escaping, JSON validation. */
#include "json-internal.h"

#include <math.h>
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

void mlt__json_str_body(mlt__buf *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    size_t run = plain_run(s + i, n - i);
    /* Room for the run and one escape (at most 6 bytes: \u00XX). */
    if (b->cap - b->len < run + 6 && mlt__buf_reserve(b, run + 6)) return;
    char *o = b->p + b->len;
    memcpy(o, s + i, run);
    o += run;
    i += run;
    if (i < n) {
      unsigned c = s[i];
      if (c >= 0x80) {
        size_t l = mlt__utf8_seq(s + i, n - i);
        if (l) {
          memcpy(o, s + i, l);
          o += l;
          i += l;
        } else {
          memcpy(o, "\xEF\xBF\xBD", 3); /* invalid byte: U+FFFD */
          o += 3;
          i++;
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
        i++;
      }
    }
    b->len = (size_t)(o - b->p);
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

static uint32_t jnew(mlt__jdoc *d, int type, size_t off) {
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 64;
    mlt__jnode *nn = realloc(d->nodes, cap * sizeof *nn);
    if (!nn) return UINT32_MAX;
    d->nodes = nn;
    d->cap = cap;
  }
  mlt__jnode *x = &d->nodes[d->n];
  memset(x, 0, sizeof *x);
  x->type = (uint8_t)type;
  x->off = (uint32_t)off;
  return (uint32_t)d->n++;
}

/* Scan a string token at s[i] == '"'; fills off/len of its contents. */
static size_t jstring(const char *s, size_t n, size_t i, uint32_t *off, uint32_t *len, uint8_t *esc) {
  int utf8_ok;
  size_t end = scan_string(s, n, i, &utf8_ok);
  if (!end) return 0;
  *off = (uint32_t)(i + 1);
  *len = (uint32_t)(end - i - 2);
  *esc = memchr(s + i + 1, '\\', end - i - 2) != NULL;
  return end;
}

int mlt__jparse(mlt__jdoc *d, const char *s, size_t n) {
  enum { MAXD = 1000 };
  uint32_t stack[MAXD], last[MAXD];
  int depth = 0;
  d->n = 0;
  d->src = s;
  if (n > UINT32_MAX - 2) return -1;
  size_t i = skip_ws(s, n, 0);
  uint32_t pending_key_off = 0, pending_key_len = 0;
  uint8_t pending_key_esc = 0;
  for (;;) {
    if (i >= n) return -1;
    char c = s[i];
    uint32_t x;
    int type;
    if (c == '{' || c == '[') {
      type = c == '{' ? MLT__J_OBJ : MLT__J_ARR;
    } else if (c == '"') {
      type = MLT__J_STR;
    } else if (c == 't') {
      type = MLT__J_TRUE;
    } else if (c == 'f') {
      type = MLT__J_FALSE;
    } else if (c == 'n') {
      type = MLT__J_NULL;
    } else {
      type = MLT__J_NUM;
    }
    if ((x = jnew(d, type, i)) == UINT32_MAX) return -1;
    mlt__jnode *nd = &d->nodes[x];
    nd->key_off = pending_key_off;
    nd->key_len = pending_key_len;
    nd->key_esc = pending_key_esc;
    /* link into the parent */
    if (depth) {
      mlt__jnode *par = &d->nodes[stack[depth - 1]];
      if (par->count++ == 0)
        par->child = x;
      else
        d->nodes[last[depth - 1]].next = x;
      last[depth - 1] = x;
    }
    if (type == MLT__J_OBJ || type == MLT__J_ARR) {
      if (depth >= MAXD) return -1;
      stack[depth++] = x;
      i = skip_ws(s, n, i + 1);
      if (i < n && s[i] == (type == MLT__J_OBJ ? '}' : ']')) {
        d->nodes[x].len = (uint32_t)(i + 1 - d->nodes[x].off);
        depth--;
        i++;
        goto after_value;
      }
      if (type == MLT__J_OBJ) {
        if (i >= n || s[i] != '"') return -1;
        if (!(i = jstring(s, n, i, &pending_key_off, &pending_key_len, &pending_key_esc))) return -1;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ':') return -1;
        i = skip_ws(s, n, i + 1);
      } else {
        pending_key_off = pending_key_len = 0;
        pending_key_esc = 0;
      }
      continue;
    }
    if (type == MLT__J_STR) {
      uint32_t o, l;
      uint8_t e;
      if (!(i = jstring(s, n, i, &o, &l, &e))) return -1;
      nd = &d->nodes[x];
      nd->off = o;
      nd->len = l;
      nd->val_esc = e;
    } else if (type == MLT__J_NUM) {
      size_t e = scan_number(s, n, i);
      if (!e) return -1;
      d->nodes[x].len = (uint32_t)(e - i);
      i = e;
    } else {
      static const char *const lit[] = {"null", "false", "true"};
      const char *w = lit[type == MLT__J_NULL ? 0 : type == MLT__J_FALSE ? 1 : 2];
      size_t wl = strlen(w);
      if (n - i < wl || memcmp(s + i, w, wl)) return -1;
      i += wl;
    }
  after_value:
    i = skip_ws(s, n, i);
    if (depth == 0) return i == n ? 0 : -1;
    if (i >= n) return -1;
    mlt__jnode *cont = &d->nodes[stack[depth - 1]];
    if (s[i] == ',') {
      i = skip_ws(s, n, i + 1);
      if (cont->type == MLT__J_OBJ) {
        if (i >= n || s[i] != '"') return -1;
        if (!(i = jstring(s, n, i, &pending_key_off, &pending_key_len, &pending_key_esc))) return -1;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ':') return -1;
        i = skip_ws(s, n, i + 1);
      }
      continue;
    }
    if (s[i] == (cont->type == MLT__J_OBJ ? '}' : ']')) {
      cont->len = (uint32_t)(i + 1 - cont->off);
      depth--;
      i++;
      goto after_value;
    }
    return -1;
  }
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

uint32_t mlt__jget(const mlt__jdoc *d, uint32_t obj, const char *key) {
  if (obj >= d->n || d->nodes[obj].type != MLT__J_OBJ) return UINT32_MAX;
  size_t kl = strlen(key);
  const mlt__jnode *o = &d->nodes[obj];
  uint32_t c = o->child;
  for (uint32_t k = 0; k < o->count; k++, c = d->nodes[c].next) {
    const mlt__jnode *x = &d->nodes[c];
    /* Keys with escapes are compared raw: MLflow's keys have none. */
    if (x->key_len == kl && !memcmp(d->src + x->key_off, key, kl)) return c;
  }
  return UINT32_MAX;
}
