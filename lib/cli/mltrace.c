/* lib/cli/mltrace.c: the `mltrace` command-line tool.
 *
 * Reads a JSONL trace store (one MLflow Trace.to_json() object per line) and
 * lists its traces or prints them as span trees.  Self-contained: it needs
 * only cJSON, not libmltrace.
 *
 *   mltrace [OPTIONS] list [FILE]
 *   mltrace [OPTIONS] show [FILE] [TRACE_ID]
 *
 * Design notes:
 * - Lines are read with getline (any length).  A line that is not a JSON
 *   object with info.trace_id is reported on stderr and skipped; every other
 *   missing key or wrong type is tolerated and shown as "?".
 * - Lines with the same info.trace_id are merged into one trace (a trace and
 *   its continuations); traces keep the order of their first line.
 * - cJSON parses numbers as doubles, which cannot hold 19-digit nanosecond
 *   times exactly; the raw number text is attached to each number node so
 *   times are read as exact 64-bit integers.
 * - Span ids are decoded from base64 (or 16 hex digits) to 8 bytes, kept as
 *   16 lowercase hex digits, and parents are linked through a hash map.
 * - The tree is walked with an explicit stack (no recursion); indentation is
 *   drawn for the first MAX_DRAW levels, deeper spans get a "[… depth N]"
 *   prefix.
 * - Every string from the file is printed through put_text(), which replaces
 *   invalid UTF-8 and escapes control characters (no terminal escapes leak).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MLTRACE_CLI_VERSION "0.1.0"

enum {
  MAX_DRAW = 24,        /* tree levels drawn with connectors */
  PREVIEW_COLS = 100,   /* in:/out: previews */
  NAME_COLS = 80,       /* span names */
  MSG_COLS = 160,       /* status and exception messages */
  MAX_EVENTS = 20,      /* non-chunk events listed per span */
  STORE_BYTES = 4096,   /* info strings kept per trace */
  LIST_WIDTH = 120,     /* target width of `list` lines */
};

/* ---- options and glyphs ------------------------------------------------ */

typedef struct {
  const char *tee, *elbow, *pipe, *blank, *ell, *fail, *us, *repl;
} glyphs;

static const glyphs g_utf8 = {"\xe2\x94\x9c\xe2\x94\x80 ", "\xe2\x94\x94\xe2\x94\x80 ",
                              "\xe2\x94\x82  ", "   ", "\xe2\x80\xa6", "\xe2\x9c\x97",
                              "\xc2\xb5s", "\xef\xbf\xbd"};
static const glyphs g_ascii = {"|- ", "`- ", "|  ", "   ", "...", "!", "us", "?"};

static struct {
  const glyphs *g;
  bool color;
  bool ids;
} g_opt = {&g_utf8, false, false};

#define C_RED "\033[31m"
#define C_DIM "\033[2m"
#define C_BOLD "\033[1m"
#define C_OFF "\033[0m"

/* ---- memory ------------------------------------------------------------ */

static void die_oom(void) {
  fputs("mltrace: out of memory\n", stderr);
  exit(2);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die_oom();
  return p;
}

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) die_oom();
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) die_oom();
  return p;
}

static void *xarray(size_t n, size_t sz) {
  if (sz && n > SIZE_MAX / sz) die_oom();
  return xmalloc(n * sz);
}

/* Grows *p (an array of elsz-byte items, capacity *cap) to hold need items. */
static void grow(void *pp, size_t *cap, size_t need, size_t elsz) {
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

static char *xstrndup(const char *s, size_t n) {
  char *d = xmalloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

/* ---- string buffer ----------------------------------------------------- */

typedef struct {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
  if (n > SIZE_MAX - b->n - 1) die_oom();
  grow(&b->p, &b->cap, b->n + n + 1, 1);
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_putc(sbuf *b, char c) { sb_putn(b, &c, 1); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
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

static char *sb_steal(sbuf *b) {
  char *p = b->p ? b->p : xstrdup("");
  b->p = NULL;
  b->n = b->cap = 0;
  return p;
}

static void sb_color(sbuf *b, const char *code) {
  if (g_opt.color) sb_puts(b, code);
}

/* Writes the buffer as one output line and empties it. */
static void sb_emit_line(sbuf *b) {
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

enum {
  T_SPACE = 1,  /* control characters become a space (else \n, \t, \xNN) */
  T_MINIFY = 2, /* drop whitespace outside JSON strings */
};

/* Appends s[0..n) to out: invalid UTF-8 bytes are replaced, control
 * characters escaped, and at most maxcols columns are written (never part of
 * a UTF-8 sequence); longer text ends with the ellipsis.  Returns the
 * columns used. */
static size_t put_text(sbuf *out, const char *s, size_t n, size_t maxcols, unsigned flags) {
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

static size_t put_str(sbuf *out, const char *s, size_t maxcols, unsigned flags) {
  return s ? put_text(out, s, strlen(s), maxcols, flags) : 0;
}

static void put_pad(sbuf *out, size_t n) {
  while (n--) sb_putc(out, ' ');
}

/* Appends s, sanitized, in a column of exactly width columns. */
static void put_cell(sbuf *out, const char *s, size_t width, bool right) {
  sbuf tmp = {0};
  size_t w = put_str(&tmp, s ? s : "", width, T_SPACE);
  size_t pad = w < width ? width - w : 0;
  if (right) put_pad(out, pad);
  if (tmp.p) sb_putn(out, tmp.p, tmp.n);
  if (!right) put_pad(out, pad);
  free(tmp.p);
}

/* Columns that put_text would use for s (bounded by cap). */
static size_t text_cols(const char *s, size_t cap) {
  sbuf tmp = {0};
  size_t w = put_str(&tmp, s ? s : "", cap, T_SPACE);
  free(tmp.p);
  return w;
}

/* ---- JSON helpers ------------------------------------------------------ */

/* cJSON keeps numbers as doubles.  This attaches the exact source text of
 * every number node as its valuestring (cJSON_Delete frees it), by pairing
 * the number tokens of the text with the number nodes in document order. */
static void attach_number_text(cJSON *root, const char *text, size_t len) {
  cJSON **nodes = NULL, **stack = NULL;
  size_t nn = 0, ncap = 0, sn = 0, scap = 0;
  grow(&stack, &scap, 1, sizeof *stack);
  stack[sn++] = root;
  while (sn) {
    cJSON *n = stack[--sn];
    if (n != root && n->next) {
      grow(&stack, &scap, sn + 1, sizeof *stack);
      stack[sn++] = n->next;
    }
    if (cJSON_IsNumber(n)) {
      grow(&nodes, &ncap, nn + 1, sizeof *nodes);
      nodes[nn++] = n;
    }
    if ((cJSON_IsObject(n) || cJSON_IsArray(n)) && n->child) {
      grow(&stack, &scap, sn + 1, sizeof *stack);
      stack[sn++] = n->child;
    }
  }
  free(stack);
  if (nn == 0) return;
  size_t *off = xarray(nn, sizeof *off), *olen = xarray(nn, sizeof *olen);
  size_t k = 0, i = 0;
  while (i < len && k <= nn) {
    char c = text[i];
    if (c == '"') {
      for (i++; i < len; i++) {
        if (text[i] == '\\') i++;
        else if (text[i] == '"') break;
      }
      i++;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t st = i;
      while (i < len && text[i] && strchr("+-0123456789.eE", text[i])) i++;
      if (k < nn) off[k] = st, olen[k] = i - st;
      k++;
    } else {
      i++;
    }
  }
  if (k == nn) {
    for (k = 0; k < nn; k++) {
      if (!nodes[k]->valuestring) nodes[k]->valuestring = xstrndup(text + off[k], olen[k]);
    }
  }
  free(off);
  free(olen);
  free(nodes);
}

static const cJSON *jget(const cJSON *obj, const char *key) {
  return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

static const char *jstr(const cJSON *obj, const char *key) {
  const cJSON *v = jget(obj, key);
  return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* Exact 64-bit integer from a JSON number (raw text attached) or a string of
 * digits; doubles as the last resort. */
static bool jint64(const cJSON *v, int64_t *out) {
  const char *s = NULL;
  if (cJSON_IsString(v) || cJSON_IsNumber(v)) s = v->valuestring;
  if (s) {
    char *e;
    errno = 0;
    long long x = strtoll(s, &e, 10);
    while (e != s && (*e == ' ' || *e == '\t')) e++;
    if (e != s && *e == '\0' && errno == 0) {
      *out = (int64_t)x;
      return true;
    }
  }
  if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    if (d >= -9.2e18 && d <= 9.2e18) { /* false for NaN and infinities */
      *out = (int64_t)d;
      return true;
    }
  }
  return false;
}

static char *dup_trunc(const char *s, size_t max) {
  size_t n = strlen(s);
  return xstrndup(s, n < max ? n : max);
}

/* Value of a JSON-encoded attribute as plain text: "\"LLM\"" -> LLM; other
 * JSON is left as text; non-string values are printed.  NULL if absent. */
static char *attr_text(const cJSON *v) {
  if (!v) return NULL;
  if (cJSON_IsString(v) && v->valuestring) {
    const char *s = v->valuestring;
    if (s[0] == '"') {
      cJSON *d = cJSON_ParseWithOpts(s, NULL, 1);
      char *r = NULL;
      if (cJSON_IsString(d) && d->valuestring) r = dup_trunc(d->valuestring, STORE_BYTES);
      cJSON_Delete(d);
      if (r) return r;
    }
    return dup_trunc(s, STORE_BYTES);
  }
  if (cJSON_IsNumber(v) && v->valuestring) return xstrdup(v->valuestring);
  if (cJSON_IsTrue(v)) return xstrdup("true");
  if (cJSON_IsFalse(v)) return xstrdup("false");
  if (cJSON_IsNull(v)) return xstrdup("null");
  char *p = cJSON_PrintUnformatted(v);
  if (!p) return NULL;
  char *r = dup_trunc(p, STORE_BYTES);
  cJSON_free(p);
  return r;
}

static bool looks_like_json(const char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  return *s && strchr("{[\"-0123456789tfn", *s);
}

/* Compact preview of an attribute value: its JSON text minified, or the raw
 * text if it is not JSON, at most PREVIEW_COLS columns. */
static char *json_preview(const cJSON *v) {
  sbuf b = {0};
  if (cJSON_IsString(v) && v->valuestring) {
    const char *s = v->valuestring;
    bool json = false;
    if (looks_like_json(s)) {
      cJSON *d = cJSON_ParseWithOpts(s, NULL, 1);
      json = d != NULL;
      cJSON_Delete(d);
    }
    put_text(&b, s, strlen(s), PREVIEW_COLS, json ? T_MINIFY : 0);
  } else if (cJSON_IsNumber(v) && v->valuestring) {
    put_str(&b, v->valuestring, PREVIEW_COLS, 0);
  } else if (v) {
    char *p = cJSON_PrintUnformatted(v);
    if (p) put_str(&b, p, PREVIEW_COLS, T_MINIFY);
    cJSON_free(p);
  }
  return sb_steal(&b);
}

/* "3 in / 4 out / 7 total" from a tokenUsage JSON text (NULL if unusable). */
static char *token_summary(const char *text) {
  if (!text) return NULL;
  cJSON *d = cJSON_Parse(text);
  sbuf b = {0};
  static const char *const keys[3] = {"input_tokens", "output_tokens", "total_tokens"};
  static const char *const labels[3] = {"in", "out", "total"};
  for (int i = 0; i < 3; i++) {
    int64_t x;
    if (jint64(jget(d, keys[i]), &x)) {
      if (b.n) sb_puts(&b, " / ");
      sb_printf(&b, "%lld %s", (long long)x, labels[i]);
    }
  }
  cJSON_Delete(d);
  if (!b.n) {
    free(b.p);
    return dup_trunc(text, 200);
  }
  return sb_steal(&b);
}

/* ---- ids --------------------------------------------------------------- */

static int b64val(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* Decodes base64 that must yield exactly 8 bytes. */
static bool b64_decode8(const char *s, unsigned char out[8]) {
  size_t n = strlen(s), k = 0;
  while (n && s[n - 1] == '=') n--;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val((unsigned char)s[i]);
    if (v < 0) return false;
    acc = ((acc << 6) | (unsigned)v) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (k == 8) return false;
      out[k++] = (unsigned char)(acc >> bits);
    }
  }
  return k == 8;
}

static bool is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return false;
  }
  return true;
}

/* Normalized span id: 16 lowercase hex digits for an 8-byte id given as
 * base64 (or hex), "~<text>" for anything else, NULL if absent or empty. */
static char *span_key(const cJSON *v) {
  if (!cJSON_IsString(v) || !v->valuestring || !v->valuestring[0]) return NULL;
  const char *s = v->valuestring;
  size_t n = strlen(s);
  char *r = xmalloc(17);
  if (n == 16 && is_hex(s, 16)) {
    for (size_t i = 0; i < 16; i++) r[i] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i]);
    r[16] = '\0';
    return r;
  }
  unsigned char b[8];
  if (b64_decode8(s, b)) {
    for (size_t i = 0; i < 8; i++) snprintf(r + 2 * i, 3, "%02x", b[i]);
    return r;
  }
  free(r);
  size_t m = n < 256 ? n : 256;
  r = xmalloc(m + 2);
  r[0] = '~';
  memcpy(r + 1, s, m);
  r[m + 1] = '\0';
  return r;
}

/* ---- hash map: string -> index ---------------------------------------- */

typedef struct {
  const char **keys; /* not owned */
  size_t *vals;
  size_t cap, n;
} strmap;

static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static bool map_get(const strmap *m, const char *key, size_t *val) {
  if (!m->cap) return false;
  for (size_t i = str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (!m->keys[i]) return false;
    if (strcmp(m->keys[i], key) == 0) {
      *val = m->vals[i];
      return true;
    }
  }
}

static void map_insert(strmap *m, const char *key, size_t val);

static void map_rehash(strmap *m, size_t ncap) {
  strmap nm = {xcalloc(ncap, sizeof *nm.keys), xarray(ncap, sizeof *nm.vals), ncap, 0};
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i]) map_insert(&nm, m->keys[i], m->vals[i]);
  free(m->keys);
  free(m->vals);
  *m = nm;
}

/* Inserts key unless present (the first value wins). */
static void map_insert(strmap *m, const char *key, size_t val) {
  if ((m->n + 1) * 2 > m->cap) {
    if (m->cap > SIZE_MAX / 4) die_oom();
    map_rehash(m, m->cap ? m->cap * 2 : 16);
  }
  size_t i = str_hash(key) & (m->cap - 1);
  for (; m->keys[i]; i = (i + 1) & (m->cap - 1))
    if (strcmp(m->keys[i], key) == 0) return;
  m->keys[i] = key;
  m->vals[i] = val;
  m->n++;
}

static void map_free(strmap *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

/* ---- the store --------------------------------------------------------- */

enum { ST_UNSET, ST_OK, ST_ERROR, ST_OTHER };

typedef struct {
  bool exc;
  char *text;
} event;

typedef struct {
  char *name, *type, *id, *parent, *status_msg, *status_raw, *in, *out, *tokens;
  int64_t start, end;
  bool has_start, has_end;
  int status;
  size_t nchunks, nevents_more;
  event *evs;
  size_t nevs, evcap;
  size_t seq;
} span;

typedef struct {
  char *key, *val;
} tag;

typedef struct {
  char *id, *request_time, *state, *name, *preview, *session, *user, *tokens;
  int64_t duration_ms;
  bool has_duration;
  tag *tags;
  size_t ntags, tagcap;
  span *spans;
  size_t nspans, spancap;
} trace;

typedef struct {
  trace *v;
  size_t n, cap;
  strmap idx;
  size_t malformed, lines;
  bool details;      /* extract previews and events (show) */
  const char *query; /* show TRACE_ID: keep only matching traces */
  const char *fname;
} store;

static void span_free(span *s) {
  free(s->name);
  free(s->type);
  free(s->id);
  free(s->parent);
  free(s->status_msg);
  free(s->status_raw);
  free(s->in);
  free(s->out);
  free(s->tokens);
  for (size_t i = 0; i < s->nevs; i++) free(s->evs[i].text);
  free(s->evs);
}

static void trace_free(trace *t) {
  free(t->id);
  free(t->request_time);
  free(t->state);
  free(t->name);
  free(t->preview);
  free(t->session);
  free(t->user);
  free(t->tokens);
  for (size_t i = 0; i < t->ntags; i++) {
    free(t->tags[i].key);
    free(t->tags[i].val);
  }
  free(t->tags);
  for (size_t i = 0; i < t->nspans; i++) span_free(&t->spans[i]);
  free(t->spans);
}

static void store_free(store *st) {
  for (size_t i = 0; i < st->n; i++) trace_free(&st->v[i]);
  free(st->v);
  map_free(&st->idx);
}

/* Case-insensitive "tr-" prefix stripped. */
static const char *strip_tr(const char *s) {
  return strncasecmp(s, "tr-", 3) == 0 ? s + 3 : s;
}

static bool id_matches(const char *id, const char *query) {
  const char *a = strip_tr(id), *q = strip_tr(query);
  return strncasecmp(a, q, strlen(q)) == 0;
}

static void set_once(char **dst, const char *src) {
  if (!*dst && src && src[0]) *dst = dup_trunc(src, STORE_BYTES);
}

static int state_rank(const char *s) {
  if (!s) return -1;
  if (strcmp(s, "ERROR") == 0) return 3;
  if (strcmp(s, "OK") == 0) return 2;
  if (strcmp(s, "IN_PROGRESS") == 0) return 1;
  return 0;
}

static void merge_info(trace *t, const cJSON *info) {
  set_once(&t->request_time, jstr(info, "request_time"));
  const char *state = jstr(info, "state");
  if (state && state_rank(state) > state_rank(t->state)) {
    free(t->state);
    t->state = dup_trunc(state, 64);
  }
  int64_t d;
  const cJSON *dv = jget(info, "execution_duration_ms");
  if (jint64(dv, &d) && (!t->has_duration || d > t->duration_ms)) {
    t->duration_ms = d;
    t->has_duration = true;
  }
  const cJSON *md = jget(info, "trace_metadata"), *tags = jget(info, "tags");
  set_once(&t->name, jstr(tags, "mlflow.traceName"));
  set_once(&t->preview, jstr(info, "request_preview"));
  set_once(&t->preview, jstr(md, "mlflow.traceInputs"));
  set_once(&t->session, jstr(md, "mlflow.trace.session"));
  set_once(&t->session, jstr(tags, "mlflow.trace.session"));
  set_once(&t->user, jstr(md, "mlflow.trace.user"));
  set_once(&t->user, jstr(tags, "mlflow.trace.user"));
  if (!t->tokens) t->tokens = token_summary(jstr(md, "mlflow.trace.tokenUsage"));
  const cJSON *it, *tagobj = cJSON_IsObject(tags) ? tags : NULL;
  cJSON_ArrayForEach(it, tagobj) {
    if (!it->string || strncmp(it->string, "mlflow.", 7) == 0) continue;
    if (!cJSON_IsString(it) || !it->valuestring) continue;
    bool dup = false;
    for (size_t i = 0; i < t->ntags && !dup; i++) dup = strcmp(t->tags[i].key, it->string) == 0;
    if (dup || t->ntags >= 64) continue;
    grow(&t->tags, &t->tagcap, t->ntags + 1, sizeof *t->tags);
    t->tags[t->ntags].key = dup_trunc(it->string, 256);
    t->tags[t->ntags].val = dup_trunc(it->valuestring, 256);
    t->ntags++;
  }
}

static void add_event(span *s, bool exc, char *text) {
  if (s->nevs >= MAX_EVENTS) {
    s->nevents_more++;
    free(text);
    return;
  }
  grow(&s->evs, &s->evcap, s->nevs + 1, sizeof *s->evs);
  s->evs[s->nevs].exc = exc;
  s->evs[s->nevs].text = text;
  s->nevs++;
}

static void extract_span(span *s, const cJSON *js, bool details) {
  const char *name = jstr(js, "name");
  s->name = name ? dup_trunc(name, STORE_BYTES) : NULL;
  s->id = span_key(jget(js, "span_id"));
  s->parent = span_key(jget(js, "parent_span_id"));
  s->has_start = jint64(jget(js, "start_time_unix_nano"), &s->start);
  s->has_end = jint64(jget(js, "end_time_unix_nano"), &s->end);
  if (s->has_end && s->end == 0) s->has_end = false; /* MLflow: 0 means none */

  const cJSON *status = jget(js, "status");
  const cJSON *code = jget(status, "code");
  s->status = ST_UNSET;
  if (cJSON_IsString(code) && code->valuestring) {
    const char *c = code->valuestring;
    if (strncmp(c, "STATUS_CODE_", 12) == 0) c += 12;
    if (strcmp(c, "OK") == 0) s->status = ST_OK;
    else if (strcmp(c, "ERROR") == 0) s->status = ST_ERROR;
    else if (strcmp(c, "UNSET") == 0) s->status = ST_UNSET;
    else s->status = ST_OTHER, s->status_raw = dup_trunc(code->valuestring, 64);
  } else if (cJSON_IsNumber(code)) {
    int64_t c = -1;
    jint64(code, &c);
    s->status = c == 1 ? ST_OK : c == 2 ? ST_ERROR : ST_UNSET;
  }
  const char *msg = jstr(status, "message");
  if (msg && msg[0]) s->status_msg = dup_trunc(msg, STORE_BYTES);

  const cJSON *attrs = jget(js, "attributes");
  s->type = attr_text(jget(attrs, "mlflow.spanType"));
  if (!details) return;
  const cJSON *in = jget(attrs, "mlflow.spanInputs"), *out = jget(attrs, "mlflow.spanOutputs");
  if (in) s->in = json_preview(in);
  if (out) s->out = json_preview(out);
  const char *usage = jstr(attrs, "mlflow.chat.tokenUsage");
  if (usage) s->tokens = token_summary(usage);

  const cJSON *ev, *events = jget(js, "events");
  if (!cJSON_IsArray(events)) events = NULL;
  cJSON_ArrayForEach(ev, events) {
    const char *en = jstr(ev, "name");
    if (!cJSON_IsObject(ev)) continue;
    if (en && strncmp(en, "mlflow.chunk.item.", 18) == 0) {
      s->nchunks++;
      continue;
    }
    sbuf b = {0};
    if (en && strcmp(en, "exception") == 0) {
      const cJSON *ea = jget(ev, "attributes");
      char *ty = attr_text(jget(ea, "exception.type"));
      const char *em = jstr(ea, "exception.message");
      sb_puts(&b, "exception");
      if (ty) sb_puts(&b, ": "), sb_puts(&b, ty);
      if (em) sb_puts(&b, ": "), sb_putn(&b, em, strnlen(em, STORE_BYTES));
      free(ty);
      add_event(s, true, sb_steal(&b));
    } else {
      sb_puts(&b, "event: ");
      if (en) sb_putn(&b, en, strnlen(en, STORE_BYTES));
      else sb_putc(&b, '?');
      add_event(s, false, sb_steal(&b));
    }
  }
}

static void report_malformed(store *st, size_t lineno, const char *why, const char *near,
                             size_t nearlen) {
  st->malformed++;
  sbuf b = {0};
  sb_printf(&b, "mltrace: %s: line %zu: not valid trace JSON: %s", st->fname, lineno, why);
  if (near) {
    sb_puts(&b, " near \"");
    put_text(&b, near, nearlen, 24, 0);
    sb_putc(&b, '"');
  }
  sb_putc(&b, '\n');
  fflush(stdout);
  fputs(b.p, stderr);
  free(b.p);
}

static void process_line(store *st, char *line, size_t len, size_t lineno) {
  if (memchr(line, '\0', len)) {
    report_malformed(st, lineno, "contains a NUL byte", NULL, 0);
    return;
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithOpts(line, &end, 1);
  if (!root) {
    char why[64];
    size_t col = end && end >= line && end <= line + len ? (size_t)(end - line) : 0;
    snprintf(why, sizeof why, "parse error at column %zu", col + 1);
    report_malformed(st, lineno, why, line + col, len - col);
    return;
  }
  const cJSON *info = jget(root, "info");
  const char *tid = jstr(info, "trace_id");
  if (!tid) tid = jstr(info, "request_id"); /* V2 layout */
  if (!cJSON_IsObject(root)) {
    report_malformed(st, lineno, "not a JSON object", NULL, 0);
  } else if (!cJSON_IsObject(info)) {
    report_malformed(st, lineno, "missing \"info\" object", NULL, 0);
  } else if (!tid || !tid[0]) {
    report_malformed(st, lineno, "missing info.trace_id", NULL, 0);
  } else if (!st->query || id_matches(tid, st->query)) {
    attach_number_text(root, line, len);
    size_t ti;
    if (!map_get(&st->idx, tid, &ti)) {
      grow(&st->v, &st->cap, st->n + 1, sizeof *st->v);
      ti = st->n++;
      memset(&st->v[ti], 0, sizeof st->v[ti]);
      st->v[ti].id = xstrdup(tid);
      map_insert(&st->idx, st->v[ti].id, ti);
    }
    trace *t = &st->v[ti];
    merge_info(t, info);
    const cJSON *spans = jget(jget(root, "data"), "spans"), *js;
    if (!cJSON_IsArray(spans)) spans = NULL;
    cJSON_ArrayForEach(js, spans) {
      if (!cJSON_IsObject(js)) continue;
      grow(&t->spans, &t->spancap, t->nspans + 1, sizeof *t->spans);
      span *s = &t->spans[t->nspans];
      memset(s, 0, sizeof *s);
      s->seq = t->nspans++;
      extract_span(s, js, st->details);
    }
  }
  cJSON_Delete(root);
}

/* Reads the store; returns false (after a message) if it cannot be read. */
static bool read_store(store *st, const char *path) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  st->fname = strcmp(path, "-") == 0 ? "<stdin>" : path;
  if (!f) {
    fprintf(stderr, "mltrace: cannot open %s: %s\n", path, strerror(errno));
    return false;
  }
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t got;
  errno = 0;
  while ((got = getline(&line, &cap, f)) >= 0) {
    size_t len = (size_t)got;
    lineno++;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    line[len] = '\0';
    char *p = line;
    if (lineno == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3, len -= 3;
    size_t k = 0;
    while (k < len && (p[k] == ' ' || p[k] == '\t')) k++;
    if (k == len) continue; /* blank line */
    process_line(st, p, len, lineno);
  }
  bool ok = !ferror(f);
  int err = errno;
  free(line);
  if (f != stdin) fclose(f);
  if (!ok) {
    fprintf(stderr, "mltrace: cannot read %s: %s\n", st->fname, strerror(err ? err : EIO));
    return false;
  }
  st->lines = lineno;
  return true;
}

/* ---- formatting -------------------------------------------------------- */

static void fmt_duration(sbuf *b, const span *s) {
  if (!s->has_start || !s->has_end) {
    sb_puts(b, s->has_start ? "(unfinished)" : "?");
    return;
  }
  if (s->end < s->start) {
    sb_puts(b, "?");
    return;
  }
  uint64_t ns = (uint64_t)s->end - (uint64_t)s->start;
  if (ns < 1000) {
    sb_printf(b, "%llu ns", (unsigned long long)ns);
  } else if (ns < 999500) {
    sb_printf(b, "%llu %s", (unsigned long long)((ns + 500) / 1000), g_opt.g->us);
  } else {
    uint64_t tenths = ns / 100000 + (ns % 100000 >= 50000);
    sb_printf(b, "%llu.%llu ms", (unsigned long long)(tenths / 10),
              (unsigned long long)(tenths % 10));
  }
}

/* Trace duration in ms: from the info, else from the span extent. */
static bool trace_duration(const trace *t, int64_t *ms) {
  if (t->has_duration) {
    *ms = t->duration_ms;
    return true;
  }
  bool any = false;
  int64_t lo = 0, hi = 0;
  for (size_t i = 0; i < t->nspans; i++) {
    const span *s = &t->spans[i];
    if (!s->has_start || !s->has_end || s->end < s->start) continue;
    if (!any || s->start < lo) lo = s->start;
    if (!any || s->end > hi) hi = s->end;
    any = true;
  }
  if (any) *ms = (int64_t)(((uint64_t)hi - (uint64_t)lo) / 1000000);
  return any;
}

static bool trace_is_error(const trace *t) { return t->state && strcmp(t->state, "ERROR") == 0; }

/* ---- list -------------------------------------------------------------- */

static void cmd_list(const store *st) {
  size_t wid = 0, wtime = 0, wstate = 0, wdur = 0, wspans = 0, wname = 0;
  char (*dur)[32] = xarray(st->n ? st->n : 1, sizeof *dur);
  char (*nsp)[32] = xarray(st->n ? st->n : 1, sizeof *nsp);
  for (size_t i = 0; i < st->n; i++) {
    const trace *t = &st->v[i];
    int64_t ms;
    if (trace_duration(t, &ms)) snprintf(dur[i], sizeof dur[i], "%lld ms", (long long)ms);
    else snprintf(dur[i], sizeof dur[i], "? ms");
    snprintf(nsp[i], sizeof nsp[i], "%zu span%s", t->nspans, t->nspans == 1 ? "" : "s");
    size_t w;
    if ((w = text_cols(t->id, 40)) > wid) wid = w;
    if ((w = text_cols(t->request_time ? t->request_time : "?", 30)) > wtime) wtime = w;
    if ((w = text_cols(t->state ? t->state : "?", 12)) > wstate) wstate = w;
    if ((w = strlen(dur[i])) > wdur) wdur = w;
    if ((w = strlen(nsp[i])) > wspans) wspans = w;
    if ((w = text_cols(t->name ? t->name : "-", 24)) > wname) wname = w;
  }
  size_t used = 2 + wid + 2 + wtime + 2 + wstate + 2 + wdur + 2 + wspans + 2 + wname + 2;
  size_t wprev = used + 20 < LIST_WIDTH ? LIST_WIDTH - used : 20;
  sbuf b = {0};
  for (size_t i = 0; i < st->n; i++) {
    const trace *t = &st->v[i];
    bool err = trace_is_error(t);
    if (err) sb_color(&b, C_RED);
    sb_puts(&b, err ? "! " : "  ");
    put_cell(&b, t->id, wid, false);
    sb_puts(&b, "  ");
    put_cell(&b, t->request_time ? t->request_time : "?", wtime, false);
    sb_puts(&b, "  ");
    put_cell(&b, t->state ? t->state : "?", wstate, false);
    sb_puts(&b, "  ");
    put_cell(&b, dur[i], wdur, true);
    sb_puts(&b, "  ");
    put_cell(&b, nsp[i], wspans, true);
    sb_puts(&b, "  ");
    put_cell(&b, t->name ? t->name : "-", wname, false);
    sb_puts(&b, "  ");
    put_str(&b, t->preview ? t->preview : "", wprev, T_SPACE);
    while (b.n && b.p[b.n - 1] == ' ') b.p[--b.n] = '\0';
    if (err) sb_color(&b, C_OFF);
    sb_emit_line(&b);
  }
  free(b.p);
  free(dur);
  free(nsp);
}

/* ---- show -------------------------------------------------------------- */

static const span *g_sort_spans;

static int cmp_span(const void *pa, const void *pb) {
  const span *a = &g_sort_spans[*(const size_t *)pa], *b = &g_sort_spans[*(const size_t *)pb];
  if (a->has_start != b->has_start) return a->has_start ? -1 : 1;
  if (a->has_start && a->start != b->start) return a->start < b->start ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void print_header(const trace *t, sbuf *b) {
  bool err = trace_is_error(t);
  if (err) {
    sb_color(b, C_RED);
    sb_puts(b, g_opt.g->fail);
    sb_putc(b, ' ');
  }
  sb_color(b, C_BOLD);
  put_str(b, t->id, 80, 0);
  sb_color(b, C_OFF);
  sb_puts(b, "  ");
  put_str(b, t->name ? t->name : "-", NAME_COLS, 0);
  sb_puts(b, "  ");
  if (err) sb_color(b, C_RED);
  put_str(b, t->state ? t->state : "?", 16, 0);
  if (err) sb_color(b, C_OFF);
  int64_t ms;
  if (trace_duration(t, &ms)) sb_printf(b, "  %lld ms", (long long)ms);
  sb_puts(b, "  ");
  put_str(b, t->request_time ? t->request_time : "?", 40, 0);
  sb_printf(b, "  %zu span%s", t->nspans, t->nspans == 1 ? "" : "s");
  if (t->session) sb_puts(b, "  session="), put_str(b, t->session, 64, 0);
  if (t->user) sb_puts(b, "  user="), put_str(b, t->user, 64, 0);
  if (t->tokens) sb_puts(b, "  tokens: "), put_str(b, t->tokens, 80, 0);
  for (size_t i = 0; i < t->ntags && i < 8; i++) {
    sb_puts(b, i ? ", " : "  tags: ");
    put_str(b, t->tags[i].key, 40, 0);
    sb_putc(b, '=');
    put_str(b, t->tags[i].val, 60, 0);
  }
  if (t->ntags > 8) sb_printf(b, ", %s", g_opt.g->ell);
  sb_emit_line(b);
}

/* The indentation of a line at depth (levels 1..depth of lastf). */
static void put_indent(sbuf *b, const unsigned char *lastf, size_t depth) {
  if (depth > MAX_DRAW) {
    sb_printf(b, "[%s depth %zu] ", g_opt.g->ell, depth);
    sb_puts(b, lastf[MAX_DRAW + 1] ? g_opt.g->blank : g_opt.g->pipe);
    return;
  }
  for (size_t l = 1; l <= depth; l++) sb_puts(b, lastf[l] ? g_opt.g->blank : g_opt.g->pipe);
}

static void print_detail(sbuf *b, const unsigned char *lastf, size_t depth, bool kids,
                         const char *label, const char *text, bool red) {
  put_indent(b, lastf, depth);
  sb_puts(b, kids ? g_opt.g->pipe : g_opt.g->blank);
  sb_color(b, red ? C_RED : C_DIM);
  if (label) sb_puts(b, label);
  put_str(b, text, red ? MSG_COLS : PREVIEW_COLS + 8, 0);
  sb_color(b, C_OFF);
  sb_emit_line(b);
}

static void print_span(sbuf *b, const span *s, unsigned char *lastf, size_t depth, bool last,
                       bool kids, const char *note) {
  /* lastf[l] for l < depth describes the ancestors; record this level. */
  size_t lv = depth > MAX_DRAW ? MAX_DRAW + 1 : depth;
  if (depth) {
    if (depth > MAX_DRAW) {
      sb_printf(b, "[%s depth %zu] ", g_opt.g->ell, depth);
    } else {
      for (size_t l = 1; l < depth; l++) sb_puts(b, lastf[l] ? g_opt.g->blank : g_opt.g->pipe);
    }
    sb_puts(b, last ? g_opt.g->elbow : g_opt.g->tee);
  }
  lastf[lv] = last;
  if (s->status == ST_ERROR) sb_color(b, C_RED);
  put_str(b, s->name && s->name[0] ? s->name : "(unnamed)", NAME_COLS, 0);
  if (s->type && s->type[0]) {
    sb_puts(b, " [");
    put_str(b, s->type, 32, 0);
    sb_putc(b, ']');
  }
  sb_putc(b, ' ');
  fmt_duration(b, s);
  sb_putc(b, ' ');
  if (s->status == ST_ERROR) {
    sb_puts(b, g_opt.g->fail);
    sb_puts(b, " ERROR");
    if (s->status_msg) sb_puts(b, ": "), put_str(b, s->status_msg, MSG_COLS, 0);
  } else if (s->status == ST_OK) {
    sb_puts(b, "ok");
  } else if (s->status == ST_OTHER) {
    put_str(b, s->status_raw, 32, 0);
  } else {
    sb_puts(b, "unset");
  }
  if (s->status == ST_ERROR) sb_color(b, C_OFF);
  if (s->nchunks) sb_printf(b, " (%zu chunk%s)", s->nchunks, s->nchunks == 1 ? "" : "s");
  if (s->tokens) sb_puts(b, " tokens: "), put_str(b, s->tokens, 60, 0);
  if (g_opt.ids || note) sb_color(b, C_DIM);
  if (g_opt.ids) sb_puts(b, " id="), put_str(b, s->id ? s->id : "-", 40, 0);
  if (note) {
    sb_puts(b, " (parent ");
    put_str(b, s->parent, 40, 0);
    sb_puts(b, note);
  }
  if (g_opt.ids || note) sb_color(b, C_OFF);
  sb_emit_line(b);
  if (s->in) print_detail(b, lastf, depth, kids, "in: ", s->in, false);
  if (s->out) print_detail(b, lastf, depth, kids, "out: ", s->out, false);
  for (size_t i = 0; i < s->nevs; i++) {
    if (!s->evs[i].exc) {
      print_detail(b, lastf, depth, kids, NULL, s->evs[i].text, false);
      continue;
    }
    sbuf tmp = {0};
    sb_puts(&tmp, g_opt.g->fail);
    sb_putc(&tmp, ' ');
    print_detail(b, lastf, depth, kids, tmp.p, s->evs[i].text, true);
    free(tmp.p);
  }
  if (s->nevents_more) {
    char more[64];
    snprintf(more, sizeof more, "%s %zu more events", g_opt.g->ell, s->nevents_more);
    print_detail(b, lastf, depth, kids, NULL, more, false);
  }
}

typedef struct {
  size_t idx, depth;
  bool last;
} frame;

static void print_tree(const trace *t, sbuf *b) {
  size_t n = t->nspans;
  if (!n) {
    sb_puts(b, "  (no spans)");
    sb_emit_line(b);
    return;
  }
  strmap ids = {0};
  for (size_t i = 0; i < n; i++)
    if (t->spans[i].id) map_insert(&ids, t->spans[i].id, i);
  size_t *par = xarray(n, sizeof *par), *cnt = xcalloc(n + 1, sizeof *cnt);
  size_t nroots = 0;
  for (size_t i = 0; i < n; i++) {
    size_t p;
    par[i] = SIZE_MAX;
    if (t->spans[i].parent && map_get(&ids, t->spans[i].parent, &p) && p != i) {
      par[i] = p;
      cnt[p + 1]++;
    } else {
      nroots++;
    }
  }
  map_free(&ids);
  for (size_t i = 0; i < n; i++) cnt[i + 1] += cnt[i]; /* cnt[i] = offset of i's children */
  size_t *kids = xarray(n, sizeof *kids), *fill = xarray(n, sizeof *fill);
  size_t *roots = xarray(nroots ? nroots : 1, sizeof *roots), r = 0;
  memcpy(fill, cnt, n * sizeof *fill);
  for (size_t i = 0; i < n; i++) {
    if (par[i] == SIZE_MAX) roots[r++] = i;
    else kids[fill[par[i]]++] = i;
  }
  free(fill);
  g_sort_spans = t->spans;
  qsort(roots, nroots, sizeof *roots, cmp_span);
  for (size_t i = 0; i < n; i++)
    if (cnt[i + 1] - cnt[i] > 1) qsort(kids + cnt[i], cnt[i + 1] - cnt[i], sizeof *kids, cmp_span);

  bool *seen = xcalloc(n, sizeof *seen);
  frame *stack = xarray(n, sizeof *stack);
  unsigned char lastf[MAX_DRAW + 2] = {0};
  /* Roots first, then spans on parent cycles (never reached from a root). */
  for (size_t pass = 0; pass < 2; pass++) {
    size_t lim = pass ? n : nroots;
    for (size_t k = 0; k < lim; k++) {
      size_t start = pass ? k : roots[k];
      if (seen[start]) continue;
      size_t sp = 0;
      stack[sp++] = (frame){start, 0, true};
      seen[start] = true;
      while (sp) {
        frame f = stack[--sp];
        size_t lo = cnt[f.idx], hi = cnt[f.idx + 1], nk = 0, lastk = 0;
        for (size_t j = lo; j < hi; j++)
          if (!seen[kids[j]]) nk++, lastk = j;
        /* A top-level span that names a parent: a continuation (parent
         * not in the store), its own parent, or a member of a cycle. */
        const span *s = &t->spans[f.idx];
        const char *note = NULL;
        if (f.depth == 0 && s->parent) {
          note = pass ? " is on a cycle)"
                      : s->id && strcmp(s->id, s->parent) == 0 ? " is itself)" : " not found)";
        }
        print_span(b, s, lastf, f.depth, f.last, nk > 0, note);
        for (size_t j = hi; j-- > lo;) {
          if (seen[kids[j]]) continue;
          seen[kids[j]] = true;
          stack[sp++] = (frame){kids[j], f.depth + 1, j == lastk};
        }
      }
    }
  }
  free(stack);
  free(seen);
  free(roots);
  free(kids);
  free(cnt);
  free(par);
}

static int cmd_show(const store *st) {
  sbuf b = {0};
  for (size_t i = 0; i < st->n; i++) {
    if (i) {
      sb_puts(&b, "");
      sb_emit_line(&b);
    }
    print_header(&st->v[i], &b);
    print_tree(&st->v[i], &b);
  }
  free(b.p);
  return 0;
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f) {
  fputs("Usage: mltrace [OPTIONS] list [FILE]\n"
        "       mltrace [OPTIONS] show [FILE] [TRACE_ID]\n"
        "\n"
        "List or show the traces of a JSONL trace store (one MLflow trace JSON per\n"
        "line).  FILE defaults to $MLTRACE_FILE, else traces.jsonl; \"-\" reads stdin.\n"
        "TRACE_ID may be a unique prefix, with or without \"tr-\".\n"
        "\n"
        "Options:\n"
        "  --ascii      draw trees with ASCII characters\n"
        "  --no-color   never color the output (default: color on a terminal\n"
        "               unless NO_COLOR is set)\n"
        "  --ids        show span ids (16 hex digits)\n"
        "  -h, --help   show this help\n"
        "  --version    show the version\n"
        "\n"
        "Exit status: 0 if traces were printed and every line was valid, 1 if some\n"
        "lines were malformed or there was nothing to print, 2 on a usage error, an\n"
        "unreadable file, or a TRACE_ID that is not found or not unique.\n",
        f);
}

static int usage_error(const char *fmt, const char *arg) {
  fputs("mltrace: ", stderr);
  fputs(fmt, stderr);
  if (arg) fputs(arg, stderr);
  fputs("\nTry 'mltrace --help'.\n", stderr);
  return 2;
}

/* show with one argument: a FILE if it exists (or is "-"), else a TRACE_ID
 * if it looks like one. */
static bool looks_like_file(const char *arg) {
  struct stat sb;
  if (strcmp(arg, "-") == 0 || stat(arg, &sb) == 0) return true;
  const char *h = strip_tr(arg);
  if (h != arg) return false;
  return !(h[0] && is_hex(h, strlen(h)));
}

int main(int argc, char **argv) {
  const char *pos[4];
  size_t npos = 0;
  bool no_color = false, ascii = false, opts_done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!opts_done && a[0] == '-' && a[1]) {
      if (strcmp(a, "--") == 0) opts_done = true;
      else if (strcmp(a, "--ascii") == 0) ascii = true;
      else if (strcmp(a, "--no-color") == 0 || strcmp(a, "--no-colour") == 0) no_color = true;
      else if (strcmp(a, "--ids") == 0) g_opt.ids = true;
      else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        usage(stdout);
        return 0;
      } else if (strcmp(a, "--version") == 0) {
        puts("mltrace " MLTRACE_CLI_VERSION);
        return 0;
      } else {
        return usage_error("unknown option: ", a);
      }
      continue;
    }
    if (npos == 4) return usage_error("too many arguments", NULL);
    pos[npos++] = a;
  }
  if (npos == 0) {
    usage(stderr);
    return 2;
  }
  bool list = strcmp(pos[0], "list") == 0, show = strcmp(pos[0], "show") == 0;
  if (!list && !show) return usage_error("unknown command: ", pos[0]);
  if ((list && npos > 2) || (show && npos > 3)) return usage_error("too many arguments", NULL);

  g_opt.g = ascii ? &g_ascii : &g_utf8;
  const char *nc = getenv("NO_COLOR");
  g_opt.color = !no_color && !(nc && nc[0]) && isatty(STDOUT_FILENO);

  const char *file = NULL, *query = NULL;
  if (npos >= 2) {
    if (show && npos == 2 && !looks_like_file(pos[1])) query = pos[1];
    else file = pos[1];
  }
  if (npos == 3) query = pos[2];
  if (!file) {
    const char *e = getenv("MLTRACE_FILE");
    file = e && e[0] ? e : "traces.jsonl";
  }
  if (query && !query[0]) return usage_error("empty TRACE_ID", NULL);

  store st = {0};
  st.details = show;
  st.query = query;
  if (!read_store(&st, file)) {
    store_free(&st);
    return 2;
  }
  int rc = 0;
  if (list) {
    cmd_list(&st);
  } else {
    if (query) {
      /* Every kept trace matches the prefix; an exact id wins. */
      size_t pick = SIZE_MAX;
      for (size_t i = 0; i < st.n && pick == SIZE_MAX; i++)
        if (strcasecmp(strip_tr(st.v[i].id), strip_tr(query)) == 0) pick = i;
      if (pick == SIZE_MAX && st.n == 1) pick = 0;
      if (pick == SIZE_MAX) {
        if (st.n == 0) {
          fprintf(stderr, "mltrace: trace not found: %s (in %s)\n", query, st.fname);
        } else {
          fprintf(stderr, "mltrace: trace id prefix '%s' is ambiguous; %zu traces match:\n", query,
                  st.n);
          for (size_t i = 0; i < st.n && i < 10; i++) fprintf(stderr, "  %s\n", st.v[i].id);
          if (st.n > 10) fputs("  ...\n", stderr);
        }
        store_free(&st);
        return 2;
      }
      if (pick != 0) {
        trace tmp = st.v[0];
        st.v[0] = st.v[pick];
        st.v[pick] = tmp;
      }
      for (size_t i = 1; i < st.n; i++) trace_free(&st.v[i]);
      st.n = 1;
    }
    rc = cmd_show(&st);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "mltrace: write error: %s\n", strerror(errno));
    rc = 2;
  }
  if (rc == 0 && st.malformed) rc = 1;
  if (rc == 0 && st.n == 0) {
    fprintf(stderr, "mltrace: no traces in %s\n", st.fname);
    rc = 1;
  }
  store_free(&st);
  return rc;
}
