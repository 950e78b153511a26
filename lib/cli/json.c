/* lib/cli/json.c: reading JSON the way traces need it: cJSON helpers that
 * keep 64-bit numbers exact (the source text of each number is attached to
 * its node), attribute values shown as text or compact previews, token
 * usage summaries, span ids (base64 or hex) normalized to 16 hex digits, a
 * string -> index hash map, a printer that writes numbers from their
 * source text, and OTLP AnyValue decoding for spans read from a server. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- JSON helpers ------------------------------------------------------ */

/* cJSON keeps numbers as doubles.  This attaches the exact source text of
 * every number node as its valuestring (cJSON_Delete frees it), by pairing
 * the number tokens of the text with the number nodes in document order. */
void attach_number_text(cJSON *root, const char *text, size_t len) {
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

const cJSON *jget(const cJSON *obj, const char *key) {
  return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

const char *jstr(const cJSON *obj, const char *key) {
  const cJSON *v = jget(obj, key);
  return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* Exact 64-bit integer from a JSON number (raw text attached) or a string of
 * digits; doubles as the last resort. */
bool jint64(const cJSON *v, int64_t *out) {
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

char *dup_trunc(const char *s, size_t max) {
  size_t n = strlen(s);
  return xstrndup(s, n < max ? n : max);
}

/* Value of a JSON-encoded attribute as plain text: "\"LLM\"" -> LLM; other
 * JSON is left as text; non-string values are printed.  NULL if absent. */
char *attr_text(const cJSON *v) {
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
char *json_preview(const cJSON *v) {
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
char *token_summary(const char *text) {
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

bool is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return false;
  }
  return true;
}

/* Normalized span id: 16 lowercase hex digits for an 8-byte id given as
 * base64 (or hex), "~<text>" for anything else, NULL if absent or empty. */
char *span_key(const cJSON *v) {
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

static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

bool map_get(const strmap *m, const char *key, size_t *val) {
  if (!m->cap) return false;
  for (size_t i = str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (!m->keys[i]) return false;
    if (strcmp(m->keys[i], key) == 0) {
      *val = m->vals[i];
      return true;
    }
  }
}

void map_insert(strmap *m, const char *key, size_t val);

static void map_rehash(strmap *m, size_t ncap) {
  strmap nm = {xcalloc(ncap, sizeof *nm.keys), xarray(ncap, sizeof *nm.vals), ncap, 0};
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i]) map_insert(&nm, m->keys[i], m->vals[i]);
  free(m->keys);
  free(m->vals);
  *m = nm;
}

/* Inserts key unless present (the first value wins). */
void map_insert(strmap *m, const char *key, size_t val) {
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

void map_free(strmap *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

/* ---- printing ---------------------------------------------------------- */

static void print_string(sbuf *b, const char *s) {
  sb_putc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if (c == '"' || c == '\\') {
      sb_putc(b, '\\');
      sb_putc(b, (char)c);
    } else if (c < 0x20) {
      switch (c) {
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        default: sb_printf(b, "\\u%04x", c);
      }
    } else {
      sb_putc(b, (char)c);
    }
  }
  sb_putc(b, '"');
}

/* cJSON limits nesting to CJSON_NESTING_LIMIT, so the recursion is bounded. */
void print_json(sbuf *b, const cJSON *v) {
  if (!v || cJSON_IsNull(v)) {
    sb_puts(b, "null");
  } else if (cJSON_IsTrue(v)) {
    sb_puts(b, "true");
  } else if (cJSON_IsFalse(v)) {
    sb_puts(b, "false");
  } else if (cJSON_IsNumber(v)) {
    if (v->valuestring) {
      sb_puts(b, v->valuestring);
    } else {
      double d = v->valuedouble;
      if (d == (double)(int64_t)d && d > -9e15 && d < 9e15) {
        sb_printf(b, "%lld", (long long)d);
      } else {
        char tmp[40];
        for (int prec = 15; prec <= 17; prec++) { /* the shortest text that reads back the same */
          snprintf(tmp, sizeof tmp, "%.*g", prec, d);
          if (strtod(tmp, NULL) == d) break;
        }
        sb_puts(b, tmp);
      }
    }
  } else if (cJSON_IsString(v)) {
    print_string(b, v->valuestring ? v->valuestring : "");
  } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
    bool obj = cJSON_IsObject(v);
    sb_putc(b, obj ? '{' : '[');
    const cJSON *c;
    bool first = true;
    cJSON_ArrayForEach(c, v) {
      if (!first) sb_puts(b, ", ");
      first = false;
      if (obj) {
        print_string(b, c->string ? c->string : "");
        sb_puts(b, ": ");
      }
      print_json(b, c);
    }
    sb_putc(b, obj ? '}' : ']');
  } else {
    sb_puts(b, "null");
  }
}

/* ---- OTLP values (spans read from a server) --------------------------- */

cJSON *otlp_value(const cJSON *any) {
  const cJSON *v;
  if ((v = jget(any, "string_value")) && cJSON_IsString(v)) return cJSON_CreateString(v->valuestring);
  if ((v = jget(any, "bool_value"))) return cJSON_CreateBool(cJSON_IsTrue(v));
  if ((v = jget(any, "int_value"))) {
    int64_t x;
    if (!jint64(v, &x)) return cJSON_CreateNull();
    cJSON *n = cJSON_CreateNumber((double)x);
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)x);
    if (n) n->valuestring = xstrdup(tmp); /* exact; freed by cJSON_Delete */
    return n;
  }
  if ((v = jget(any, "double_value"))) {
    if (cJSON_IsNumber(v)) return cJSON_CreateNumber(v->valuedouble);
    if (cJSON_IsString(v)) return cJSON_CreateString(v->valuestring); /* "NaN", "Infinity" */
    return cJSON_CreateNull();
  }
  if ((v = jget(any, "array_value"))) {
    cJSON *arr = cJSON_CreateArray();
    const cJSON *e;
    const cJSON *vals = jget(v, "values");
    if (cJSON_IsArray(vals))
      cJSON_ArrayForEach(e, vals) {
        cJSON *x = otlp_value(e);
        if (x) cJSON_AddItemToArray(arr, x);
      }
    return arr;
  }
  if ((v = jget(any, "kvlist_value"))) {
    cJSON *obj = cJSON_CreateObject();
    const cJSON *e;
    const cJSON *vals = jget(v, "values");
    if (cJSON_IsArray(vals))
      cJSON_ArrayForEach(e, vals) {
        const char *k = jstr(e, "key");
        cJSON *x = otlp_value(jget(e, "value"));
        if (k && x) cJSON_AddItemToObject(obj, k, x);
        else cJSON_Delete(x);
      }
    return obj;
  }
  if ((v = jget(any, "bytes_value")) && cJSON_IsString(v)) return cJSON_CreateString(v->valuestring);
  return cJSON_CreateNull();
}
