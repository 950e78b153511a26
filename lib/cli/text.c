/* lib/cli/text.c: the tool's plumbing for output: glyph sets and options,
 * allocation helpers that exit on failure, growable string buffers, and
 * sanitized terminal text (invalid UTF-8 replaced, control characters
 * escaped, text cut to a number of columns with an ellipsis, so nothing from
 * a trace can inject terminal escapes or break the layout). */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const glyphs g_utf8 = {"\xe2\x94\x9c\xe2\x94\x80 ", "\xe2\x94\x94\xe2\x94\x80 ",
                       "\xe2\x94\x82  ", "   ", "\xe2\x80\xa6", "\xe2\x9c\x97",
                       "\xc2\xb5s", "\xef\xbf\xbd", "\xe2\x9c\x93", "\xc2\xb7"};
const glyphs g_ascii = {"|- ", "`- ", "|  ", "   ", "...", "!", "us", "?", "+", "."};

cli_options g_opt = {&g_utf8, false, false};

/* ---- memory ------------------------------------------------------------ */

void die_oom(void) {
  fputs("mltrace: out of memory\n", stderr);
  exit(2);
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die_oom();
  return p;
}

void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) die_oom();
  return p;
}

void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) die_oom();
  return p;
}

void *xarray(size_t n, size_t sz) {
  if (sz && n > SIZE_MAX / sz) die_oom();
  return xmalloc(n * sz);
}

/* Grows *p (an array of elsz-byte items, capacity *cap) to hold need items. */
void grow(void *pp, size_t *cap, size_t need, size_t elsz) {
  void **p = (void **)pp;
  if (need <= *cap) return;
  size_t nc = *cap ? *cap : 8;
  while (nc < need) {
    if (nc > SIZE_MAX / 2) die_oom();
    nc *= 2;
  }
  if (nc > SIZE_MAX / elsz) die_oom();
  *p = xrealloc(*p, nc * elsz);
  *cap = nc;
}

char *xstrndup(const char *s, size_t n) {
  char *d = xmalloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

/* ---- string buffer ----------------------------------------------------- */

void sb_putn(sbuf *b, const char *s, size_t n) {
  if (n > SIZE_MAX - b->n - 1) die_oom();
  grow(&b->p, &b->cap, b->n + n + 1, 1);
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

void sb_putc(sbuf *b, char c) { sb_putn(b, &c, 1); }

void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if ((size_t)k < sizeof tmp) {
    sb_putn(b, tmp, (size_t)k);
    return;
  }
  char *big = xmalloc((size_t)k + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)k + 1, fmt, ap);
  va_end(ap);
  sb_putn(b, big, (size_t)k);
  free(big);
}

char *sb_steal(sbuf *b) {
  char *p = b->p ? b->p : xstrdup("");
  b->p = NULL;
  b->n = b->cap = 0;
  return p;
}

void sb_color(sbuf *b, const char *code) {
  if (g_opt.color) sb_puts(b, code);
}

/* Writes the buffer as one output line and empties it. */
void sb_emit_line(sbuf *b) {
  sb_putc(b, '\n');
  fwrite(b->p, 1, b->n, stdout);
  b->n = 0;
  b->p[0] = '\0';
}

/* ---- sanitized text ---------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n > 0 bytes available) and its
 * code point, or 0 if the bytes there are not valid UTF-8. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cpout) {
  unsigned c = s[0];
  size_t len;
  uint32_t cp, min;
  if (c < 0x80) {
    *cpout = c;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *cpout = cp;
  return len;
}

/* Display width of a printable code point: 2 for the common wide (East
 * Asian, emoji) blocks, else 1.  An approximation of wcwidth(). */
static size_t cp_width(uint32_t cp) {
  if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF && cp != 0x303F) ||
      (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
      (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
      (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
      (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD))
    return 2;
  return 1;
}

/* Appends s[0..n) to out: invalid UTF-8 bytes are replaced, control
 * characters escaped, and at most maxcols columns are written (never part of
 * a UTF-8 sequence); longer text ends with the ellipsis.  Returns the
 * columns used. */
size_t put_text(sbuf *out, const char *s, size_t n, size_t maxcols, unsigned flags) {
  const unsigned char *u = (const unsigned char *)s;
  const char *ell = g_opt.g->ell;
  size_t ellw = strlen(ell) == 3 && ell[0] == '.' ? 3 : 1;
  size_t reserve = maxcols > ellw ? maxcols - ellw : 0;
  size_t cols = 0, mark_n = SIZE_MAX, mark_cols = 0;
  bool in_str = false, esc = false;
  size_t i = 0;
  while (i < n) {
    unsigned char c = u[i];
    if ((flags & T_MINIFY) && !in_str && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
      i++;
      continue;
    }
    if (flags & T_MINIFY) {
      if (in_str) {
        if (esc) esc = false;
        else if (c == '\\') esc = true;
        else if (c == '"') in_str = false;
      } else if (c == '"') {
        in_str = true;
      }
    }
    char tmp[8];
    const char *unit = tmp;
    size_t ulen, w;
    uint32_t cp = 0;
    size_t L = utf8_seq(u + i, n - i, &cp);
    if (L == 0) {
      unit = g_opt.g->repl, ulen = strlen(unit), w = 1, L = 1;
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
      if (flags & T_SPACE) {
        tmp[0] = ' ', ulen = 1;
      } else if (cp == '\n' || cp == '\t' || cp == '\r') {
        tmp[0] = '\\', tmp[1] = cp == '\n' ? 'n' : cp == '\t' ? 't' : 'r', ulen = 2;
      } else {
        snprintf(tmp, sizeof tmp, "\\x%02x", (unsigned)(cp & 0xFF));
        ulen = 4;
      }
      w = ulen;
    } else {
      unit = s + i, ulen = L, w = cp_width(cp);
    }
    if (mark_n == SIZE_MAX && cols + w > reserve) mark_n = out->n, mark_cols = cols;
    if (cols + w > maxcols) {
      out->n = mark_n;
      if (out->p) out->p[out->n] = '\0';
      sb_puts(out, ell);
      return mark_cols + ellw;
    }
    sb_putn(out, unit, ulen);
    cols += w;
    i += L;
  }
  return cols;
}

size_t put_str(sbuf *out, const char *s, size_t maxcols, unsigned flags) {
  return s ? put_text(out, s, strlen(s), maxcols, flags) : 0;
}

void put_pad(sbuf *out, size_t n) {
  while (n--) sb_putc(out, ' ');
}

/* Appends s, sanitized, in a column of exactly width columns. */
void put_cell(sbuf *out, const char *s, size_t width, bool right) {
  sbuf tmp = {0};
  size_t w = put_str(&tmp, s ? s : "", width, T_SPACE);
  size_t pad = w < width ? width - w : 0;
  if (right) put_pad(out, pad);
  if (tmp.p) sb_putn(out, tmp.p, tmp.n);
  if (!right) put_pad(out, pad);
  free(tmp.p);
}

/* Columns that put_text would use for s (bounded by cap). */
size_t text_cols(const char *s, size_t cap) {
  sbuf tmp = {0};
  size_t w = put_str(&tmp, s ? s : "", cap, T_SPACE);
  free(tmp.p);
  return w;
}

