/* tests/unit/test_json.c: the export thread's JSON routines against simple
 * reference versions (built from lib/util/json.c and lib/util/util.c directly: they are
 * internal).  The one-pass escape-and-validate must give the bytes of the
 * plain escaper and the verdict of the validator, on crafted and on random
 * texts (its output matters only when the text is valid), and so must the
 * DOM parser built on the same pass (against a recursive-descent one); integers and hex ids must round-trip. */
#include "util/json-internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "numlocale.h"
#include "tap.h"

/* Reference escaper: byte by byte, as json.dumps(ensure_ascii=False) does,
 * invalid UTF-8 bytes replaced with U+FFFD. */
static void ref_escape(mlt__buf *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    char tmp[8];
    if (c == '"' || c == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)c;
      mlt__buf_put(b, tmp, 2);
    } else if (c < 0x20) {
      const char *named = c == '\b' ? "\\b" : c == '\f' ? "\\f" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
      if (named) {
        mlt__buf_put(b, named, 2);
      } else {
        snprintf(tmp, sizeof tmp, "\\u%04x", c);
        mlt__buf_put(b, tmp, 6);
      }
    } else if (c >= 0x80) {
      size_t l = mlt__utf8_seq(s + i, n - i);
      if (l) {
        mlt__buf_put(b, s + i, l);
        i += l;
        continue;
      }
      mlt__buf_put(b, "\xEF\xBF\xBD", 3);
    } else {
      mlt__buf_putc(b, (char)c);
    }
    i++;
  }
}


/* Reference DOM parser: recursive descent, the node layout of
 * mlt__jparse() (nodes in document order; a member's key in its value's
 * node; string nodes point at the contents, containers at their bracket). */
typedef struct {
  const char *s;
  size_t n, i;
  mlt__jnode nodes[4096];
  uint32_t nn;
  int ok8;
} refp;

static void ref_ws(refp *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

/* A string at p->i (the quote): its contents' offset, length, escapes. */
static int ref_str(refp *p, uint32_t *off, uint32_t *len, uint8_t *esc) {
  const unsigned char *u = (const unsigned char *)p->s;
  if (p->i >= p->n || u[p->i] != '"') return 0;
  size_t j = p->i + 1;
  *esc = 0;
  while (j < p->n && u[j] != '"') {
    if (u[j] < 0x20) return 0;
    if (u[j] == '\\') {
      *esc = 1;
      if (j + 1 >= p->n) return 0;
      unsigned char e = u[j + 1];
      if (e == 'u') {
        if (j + 6 > p->n) return 0;
        for (int k = 2; k < 6; k++)
          if (!isxdigit(u[j + k])) return 0;
        j += 6;
      } else if (strchr("\"\\/bfnrt", e) && e) {
        j += 2;
      } else {
        return 0;
      }
      continue;
    }
    if (u[j] >= 0x80) {
      size_t l = mlt__utf8_seq(u + j, p->n - j);
      if (!l) p->ok8 = 0;
      j += l ? l : 1;
      continue;
    }
    j++;
  }
  if (j >= p->n) return 0;
  *off = (uint32_t)(p->i + 1);
  *len = (uint32_t)(j - p->i - 1);
  p->i = j + 1;
  return 1;
}

static int ref_value(refp *p, uint32_t koff, uint32_t klen, uint8_t kesc, uint32_t *out, int depth) {
  ref_ws(p);
  if (p->i >= p->n || p->nn >= 4096 || depth >= 1000) return 0;
  uint32_t x = p->nn++;
  mlt__jnode *nd = &p->nodes[x];
  memset(nd, 0, sizeof *nd);
  nd->key_off = koff;
  nd->key_len = klen;
  nd->key_esc = kesc;
  nd->off = (uint32_t)p->i;
  char c = p->s[p->i];
  *out = x;
  if (c == '{' || c == '[') {
    nd->type = c == '{' ? MLT__J_OBJ : MLT__J_ARR;
    p->i++;
    ref_ws(p);
    uint32_t last = 0;
    if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) {
      p->i++;
      p->nodes[x].len = (uint32_t)(p->i - p->nodes[x].off);
      return 1;
    }
    for (;;) {
      uint32_t ko = 0, kl = 0, child;
      uint8_t ke = 0;
      if (c == '{') {
        ref_ws(p);
        if (!ref_str(p, &ko, &kl, &ke)) return 0;
        ref_ws(p);
        if (p->i >= p->n || p->s[p->i] != ':') return 0;
        p->i++;
      }
      if (!ref_value(p, ko, kl, ke, &child, depth + 1)) return 0;
      if (p->nodes[x].count++ == 0)
        p->nodes[x].child = child;
      else
        p->nodes[last].next = child;
      last = child;
      ref_ws(p);
      if (p->i < p->n && p->s[p->i] == ',') {
        p->i++;
        continue;
      }
      if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) {
        p->i++;
        p->nodes[x].len = (uint32_t)(p->i - p->nodes[x].off);
        return 1;
      }
      return 0;
    }
  }
  if (c == '"') {
    nd->type = MLT__J_STR;
    return ref_str(p, &p->nodes[x].off, &p->nodes[x].len, &p->nodes[x].val_esc);
  }
  static const char *const lits[] = {"true", "false", "null"};
  static const int types[] = {MLT__J_TRUE, MLT__J_FALSE, MLT__J_NULL};
  for (int k = 0; k < 3; k++) {
    size_t l = strlen(lits[k]);
    if (p->n - p->i >= l && !memcmp(p->s + p->i, lits[k], l)) {
      nd->type = (uint8_t)types[k];
      p->i += l;
      return 1;
    }
  }
  /* a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
  size_t j = p->i;
  if (j < p->n && p->s[j] == '-') j++;
  if (j >= p->n || !isdigit((unsigned char)p->s[j])) return 0;
  if (p->s[j] == '0')
    j++;
  else
    while (j < p->n && isdigit((unsigned char)p->s[j])) j++;
  if (j < p->n && p->s[j] == '.') {
    j++;
    if (j >= p->n || !isdigit((unsigned char)p->s[j])) return 0;
    while (j < p->n && isdigit((unsigned char)p->s[j])) j++;
  }
  if (j < p->n && (p->s[j] == 'e' || p->s[j] == 'E')) {
    j++;
    if (j < p->n && (p->s[j] == '+' || p->s[j] == '-')) j++;
    if (j >= p->n || !isdigit((unsigned char)p->s[j])) return 0;
    while (j < p->n && isdigit((unsigned char)p->s[j])) j++;
  }
  nd->type = MLT__J_NUM;
  nd->len = (uint32_t)(j - p->i);
  p->i = j;
  return 1;
}

/* mlt__jparse() against the reference: same verdict, same nodes. */
static int check_dom(const char *s, size_t n) {
  static refp p;
  p.s = s;
  p.n = n;
  p.i = 0;
  p.nn = 0;
  p.ok8 = 1;
  uint32_t root;
  int rv = ref_value(&p, 0, 0, 0, &root, 0);
  if (rv) {
    ref_ws(&p);
    rv = p.i == n;
  }
  static mlt__jdoc d;
  int v = mlt__jparse(&d, s, n) == 0;
  int ok = v == rv;
  if (ok && v) {
    ok = d.n == p.nn && d.utf8_ok == p.ok8;
    for (uint32_t k = 0; ok && k < p.nn; k++) {
      const mlt__jnode *a = &d.nodes[k], *b = &p.nodes[k];
      ok = a->type == b->type && a->key_esc == b->key_esc && a->val_esc == b->val_esc && a->key_off == b->key_off &&
           a->key_len == b->key_len && a->off == b->off && a->len == b->len && a->count == b->count &&
           (!b->count || a->child == b->child) && a->next == b->next;
      if (!ok) tap_diag("node %u differs", k);
    }
  }
  if (!ok) tap_diag("jparse %d (%zu nodes), reference %d (%u nodes) on %.*s", v, v ? d.n : 0, rv, p.nn,
                    (int)(n > 120 ? 120 : n), s);
  return ok;
}

static int check_one_mode(const char *s, size_t n, int want_valid);

/* Both with and without the SSSE3 block path. */
static int check_one(const char *s, size_t n, int want_valid) {
  mlt__json_use_ssse3(0);
  int a = check_one_mode(s, n, want_valid);
  mlt__json_use_ssse3(1);
  int b = check_one_mode(s, n, want_valid);
  return a && b && check_dom(s, n);
}

/* Reference tape of valid JSON text: every token outside strings (an
 * opening quote, a structural character, a scalar's first byte), and each
 * container's closer. */
static int check_tape(const char *s, size_t n, const mlt__jtape *t) {
  uint32_t pos[4096], match[4096], stack[1024];
  size_t k = 0, depth = 0, i = 0;
  while (i < n && k < 4096) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      i++;
    } else if (c == '"') {
      pos[k++] = (uint32_t)i++;
      while (i < n && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
      i++;
    } else if (c == '{' || c == '[') {
      if (depth < 1024) stack[depth++] = (uint32_t)k;
      pos[k++] = (uint32_t)i++;
    } else if (c == '}' || c == ']') {
      if (depth) match[stack[--depth]] = (uint32_t)k;
      pos[k++] = (uint32_t)i++;
    } else if (c == ',' || c == ':') {
      pos[k++] = (uint32_t)i++;
    } else {
      pos[k++] = (uint32_t)i;
      while (i < n && !strchr(" \t\n\r,]}:", s[i])) i++;
    }
  }
  if (k >= 4096) return 1; /* too long for the reference: not compared */
  if (t->n != k || t->src != s || t->len != n) return 0;
  for (size_t j = 0; j < k; j++) {
    if (t->pos[j] != pos[j]) return 0;
    if ((s[pos[j]] == '{' || s[pos[j]] == '[') && t->match[j] != match[j]) return 0;
  }
  return 1;
}

static int check_one_mode(const char *s, size_t n, int want_valid) {
  mlt__buf a = {0}, b = {0}, c = {0};
  mlt__buf_lit(&a, "x");
  mlt__buf_lit(&b, "x");
  ref_escape(&a, s, n);
  mlt__json_str_body(&b, s, n);
  int u1 = 1, u2 = 1;
  mlt__buf_lit(&c, "x");
  int v1 = mlt__json_check(s, n, &u1);
  int v2 = mlt__json_escape_text(&c, s, n, &u2);
  mlt__buf d = {0}, d2 = {0};
  mlt__json_str(&d, s, n);
  /* the inline short-string path gives the same bytes */
  mlt__json_str_inline(&d2, s, n);
  int inline_ok = d2.len == d.len && !memcmp(d2.p, d.p, d.len);
  mlt__buf_free(&d2);
  if (!inline_ok) tap_diag("mlt__json_str_inline differs");
  /* with the tape: the same bytes and verdict, and the reference tape */
  static mlt__jtape tape;
  mlt__buf e = {0};
  mlt__buf_lit(&e, "x");
  int u3 = 1, v3 = mlt__json_escape_text_tape(&e, s, n, &u3, &tape);
  int tape_ok = v3 == v2 && (!v3 || (e.len == c.len && !memcmp(e.p, c.p, c.len) && u3 == u2 && check_tape(s, n, &tape)));
  int u4 = 1, v4 = mlt__json_escape_text_tape(NULL, s, n, &u4, &tape);
  tape_ok = tape_ok && v4 == v2 && (!v4 || check_tape(s, n, &tape));
  mlt__buf_free(&e);
  /* the text's escape is kept only when it is valid JSON */
  int ok = a.len == b.len && !memcmp(a.p, b.p, a.len) && (!v2 || (a.len == c.len && !memcmp(a.p, c.p, a.len))) && v1 == v2 &&
           (!v1 || u1 == u2) && (want_valid < 0 || v1 == want_valid) && d.len == a.len + 1 && d.p[0] == '"' &&
           d.p[d.len - 1] == '"' && !memcmp(d.p + 1, a.p + 1, a.len - 1);
  mlt__buf_free(&d);
  if (!tape_ok) tap_diag("tape differs (escape_text_tape %d / %d)", v3, v4);
  ok = ok && tape_ok && inline_ok;
  if (!ok) {
    tap_diag("mismatch on %zu bytes: %.*s", n, (int)(n > 120 ? 120 : n), s);
    for (size_t k = 0; k < n && k < 64; k++) fprintf(stderr, "%02x ", (unsigned char)s[k]);
    fprintf(stderr, "\n");
    tap_diag("  check=%d escape_text=%d (want %d) utf8 %d/%d; ref %zu body %zu text %zu bytes", v1, v2, want_valid, u1,
             u2, a.len, b.len, c.len);
  }
  mlt__buf_free(&a);
  mlt__buf_free(&b);
  mlt__buf_free(&c);
  return ok;
}

TEST(escape_text_crafted) {
  static const struct {
    const char *s;
    int valid;
  } cases[] = {
      {"{}", 1},
      {"[]", 1},
      {"0", 1},
      {"-12.5e+3", 1},
      {"true", 1},
      {"null", 1},
      {"\"\"", 1},
      {"\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\"", 1},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"What does the Q3 report say?\"}], \"temperature\": 0.2}", 1},
      {"{\"a\":1,\"b\":[true,false,null,{\"c\":\"d\"}]}", 1},
      {"{\n\t\"a\" :\r\n 1 }", 1},
      {"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]", 1},
      {"{\"caf\xC3\xA9\": \"\xE2\x9C\x93 \xF0\x9F\x98\x80\"}", 1},
      {"\"bad \xFF utf8\"", 1},
      {"{", 0},
      {"}", 0},
      {"[1,]", 0},
      {"{\"a\" 1}", 0},
      {"{\"a\":}", 0},
      {"{1:2}", 0},
      {"tru", 0},
      {"truex", 0},
      {"false", 1},
      {"fals", 0},
      {"falsE", 0},
      {"falsee", 0},
      {"nul", 0},
      {"nulL", 0},
      {"nulltrue", 0},
      {"[true,false,null,fals]", 0},
      {"[null,true,false]", 1},
      {"{\"a\":false}", 1},
      {"{\"a\":fals}", 0},
      {"{\"a\":nu", 0},
      {"\"unterminated", 0},
      {"\"raw\ncontrol\"", 0},
      {"\"bad \\x escape\"", 0},
      {"\"bad \\u12 escape\"", 0},
      {"01", 0},
      {"1.", 0},
      {"-", 0},
      {"[1 2]", 0},
      {"{\"a\":1}{", 0},
      {"\xC3\xA9", 0},
      {"[\"a\"\"b\"]", 0},
      {"{\"a\":1,}", 0},
      {"[}", 0},
      {"{]", 0},
      {"\x01", 0},
      {"\"a\\", 0},
      {"", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) CHECK(check_one(cases[i].s, strlen(cases[i].s), cases[i].valid));
  /* every prefix and every suffix of a valid text, at every alignment */
  const char *t = "{\"k\": [\"v\\\"q\", 12, -0.5e2, true, null, {\"n\": \"\xC3\xA9\\u0041\"}], \"z\": \"tail of text\"}";
  size_t tn = strlen(t);
  for (size_t i = 0; i <= tn; i++) {
    CHECK(check_one(t, i, i == tn ? 1 : -1));
    CHECK(check_one(t + i, tn - i, i == 0 ? 1 : -1));
  }
  /* escape sequences across 16-byte blocks at every offset */
  for (int pad = 0; pad < 20; pad++) {
    char buf[256];
    size_t k = 0;
    buf[k++] = '[';
    buf[k++] = '"';
    for (int j = 0; j < pad; j++) buf[k++] = 'a';
    for (int j = 0; j < 12; j++) {
      const char *e = j % 3 == 0 ? "\\\"" : j % 3 == 1 ? "\\\\" : "\\n";
      memcpy(buf + k, e, 2);
      k += 2;
      buf[k++] = 'x';
    }
    buf[k++] = '"';
    buf[k++] = ']';
    CHECK(check_one(buf, k, 1));
    buf[k - 2] = '\\'; /* the closing quote escaped: not JSON */
    CHECK(check_one(buf, k, 0));
  }
  /* nesting limit */
  char deep[2100];
  memset(deep, '[', 1000);
  memset(deep + 1000, ']', 1000);
  CHECK(check_one(deep, 2000, 1));
  memset(deep, '[', 1001);
  memset(deep + 1001, ']', 1001);
  CHECK(check_one(deep, 2002, 0));
}

/* A random valid JSON value at buf+*n (recursive; it stays 400 bytes short
 * of |room|, more than the closing bytes need). */
static void gen_value(char *buf, size_t *n, size_t room, unsigned *seed, int depth) {
  static const char *const ws[] = {"", "", " ", "  ", "\n", "\t", "\r\n  "};
  static const char *const str_parts[] = {"a", "hello world ", "\\\"", "\\\\", "\\n", "\\u00e9", "\xC3\xA9", "\xE2\x9C\x93",
                                          "/", "{[,:]}", "0123456789abcdef", "\\/", "\\t"};
  static const char *const scalars[] = {"0", "-0", "12", "-1.5", "1e9", "2.5E-3", "123456789012345678", "true",
                                        "false", "null", "0.2"};
#define PUT(str)                                              \
  do {                                                        \
    const char *s_ = (str); /* evaluated once: it may draw */ \
    size_t l_ = strlen(s_);                                   \
    if (*n + l_ < room) memcpy(buf + *n, s_, l_), *n += l_;   \
  } while (0)
  PUT(ws[rand_r(seed) % 7]);
  int kind = depth > 6 || *n > room - 400 ? rand_r(seed) % 2 : rand_r(seed) % 4;
  if (kind == 0) {
    PUT(scalars[rand_r(seed) % 11]);
  } else if (kind == 1) {
    PUT("\"");
    for (int k = rand_r(seed) % 8; k > 0; k--) PUT(str_parts[rand_r(seed) % 13]);
    PUT("\"");
  } else {
    int obj = kind == 2;
    PUT(obj ? "{" : "[");
    int m = rand_r(seed) % 5;
    for (int j = 0; j < m && *n < room - 400; j++) {
      if (j) PUT(",");
      if (obj) {
        PUT(ws[rand_r(seed) % 7]);
        PUT("\"k\\u0041y\"");
        PUT(ws[rand_r(seed) % 7]);
        PUT(":");
      }
      gen_value(buf, n, room, seed, depth + 1);
    }
    PUT(ws[rand_r(seed) % 7]);
    PUT(obj ? "}" : "]");
  }
  PUT(ws[rand_r(seed) % 7]);
#undef PUT
}

TEST(escape_text_random) {
  unsigned seed = 12345;
  static const char *const parts[] = {"{", "}", "[", "]", ":", ",", " ", "\n", "\t", "\"", "\\", "\\\"", "\\n",
                                      "\\u00e9", "true", "false", "null", "0", "-1.5", "1e9", "abc", "\xC3\xA9",
                                      "\xE2\x9C\x93", "\xFF", "\x01", "\"key\": ", "\"value\"", "0123456789abcdef"};
  char buf[600];
  int bad = 0;
  for (int round = 0; round < 20000 && !bad; round++) {
    size_t n = 0;
    int k = rand_r(&seed) % 40;
    for (int j = 0; j < k; j++) {
      const char *p = parts[rand_r(&seed) % (sizeof parts / sizeof *parts)];
      size_t l = strlen(p);
      if (n + l >= sizeof buf) break;
      memcpy(buf + n, p, l);
      n += l;
    }
    if (!check_one(buf, n, -1)) bad = 1;
  }
  CHECK(!bad);
  /* valid documents built from the parts, so that the valid side is tried */
  for (int round = 0; round < 2000 && !bad; round++) {
    int m = 1 + rand_r(&seed) % 30;
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "{");
    for (int j = 0; j < m && n < 500; j++)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"k%d\":%s[\"v\\\"%d\", %d, true, {\"x\": null}]", j ? "," : "", j,
                            j % 2 ? " " : "\n", j, rand_r(&seed) % 1000);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "}");
    if (n < sizeof buf && !check_one(buf, n, 1)) bad = 1;
  }
  CHECK(!bad);
  /* random nested documents: every one valid, then cut or with one byte
   * changed (mostly not) */
  static char big[2048];
  for (int round = 0; round < 20000 && !bad; round++) {
    size_t n = 0;
    gen_value(big, &n, sizeof big, &seed, 0);
    if (!check_one(big, n, 1)) bad = 1;
    size_t cut = n ? (size_t)rand_r(&seed) % n : 0;
    if (!check_one(big, cut, -1)) bad = 1;
    if (n) {
      char save = big[cut];
      big[cut] = "\\\"{}[],:a0 \x01\xC3"[rand_r(&seed) % 13];
      if (!check_one(big, n, -1)) bad = 1;
      big[cut] = save;
    }
  }
  CHECK(!bad);
}

TEST(integers_and_hex) {
  /* (each length's first and last value: mlt__wr_u64 branches on them) */
  static const int64_t vals[] = {0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 12345, 99999, 100000, 9999999,
                                 10000000, 99999999, 100000000, -1, -10, INT64_MAX, INT64_MIN, 1796629624219538959LL,
                                 1000000000000000000LL, 999999999999999999LL};
  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
    mlt__buf b = {0};
    mlt__buf_i64(&b, vals[i]);
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)vals[i]);
    CHECK(b.len == strlen(want) && !memcmp(b.p, want, b.len));
    mlt__buf_free(&b);
  }
  unsigned seed = 99;
  for (int i = 0; i < 100000; i++) {
    uint64_t v = ((uint64_t)rand_r(&seed) << 33) ^ ((uint64_t)rand_r(&seed) << 11) ^ (uint64_t)rand_r(&seed);
    v >>= rand_r(&seed) % 64;
    mlt__buf b = {0};
    mlt__buf_u64(&b, v);
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)v);
    if (!(b.len == strlen(want) && !memcmp(b.p, want, b.len))) {
      CHECK(0);
      tap_diag("u64 %s", want);
      mlt__buf_free(&b);
      break;
    }
    mlt__buf_free(&b);
    char hex[17], ref[17];
    mlt__hex64(v, hex);
    hex[16] = '\0';
    snprintf(ref, sizeof ref, "%016llx", (unsigned long long)v);
    uint64_t back = 0;
    if (strcmp(hex, ref) || mlt__parse_hex(hex, 16, &back) || back != v) {
      CHECK(0);
      tap_diag("hex %s vs %s", hex, ref);
      break;
    }
    for (int k = 0; k < 16; k++)
      if (hex[k] >= 'a') hex[k] = (char)(hex[k] - 'a' + 'A');
    CHECK(!mlt__parse_hex(hex, 16, &back) && back == v);
  }
  uint64_t x;
  CHECK(mlt__parse_hex("0123456789abcdeg", 16, &x) != 0);
  CHECK(mlt__parse_hex("0123456789abcde/", 16, &x) != 0);
  CHECK(mlt__parse_hex("0123456789abcde:", 16, &x) != 0);
  CHECK(mlt__parse_hex("@123456789abcdef", 16, &x) != 0);
  CHECK(mlt__parse_hex("0123456789\xC1" "bcdef", 16, &x) != 0);
}

/* mlt__json_plain_utf8(): 1 exactly when the escaper copies the text as
 * it is (random text of ASCII, control characters, valid and invalid
 * UTF-8, quotes and backslashes; lengths around the 8-byte words). */
TEST(plain_utf8_is_what_the_escaper_copies) {
  unsigned seed = 777;
  static const char *const parts[] = {"a",   "bc d",     "\xC3\xA9",     "\xE2\x9C\x93", "\xF0\x9F\x98\x80", "\xFF",
                                      "\xC3", "\xE2\x9C", "\xED\xA0\x80", "\xC0\xAF",     "\x7F",             "\x01",
                                      "\t",   "\"",       "\\",           "0123456789abcdef"};
  char buf[200];
  mlt__buf b = {0};
  int bad = 0, plain = 0;
  for (int round = 0; round < 20000 && !bad; round++) {
    size_t n = 0;
    int k = rand_r(&seed) % 12;
    for (int j = 0; j < k; j++) {
      /* mostly copied bytes, so that both answers come up */
      const char *p = parts[rand_r(&seed) % 4 ? rand_r(&seed) % 5 : rand_r(&seed) % 16];
      size_t l = strlen(p);
      if (n + l >= sizeof buf) break;
      memcpy(buf + n, p, l);
      n += l;
    }
    mlt__buf_reset(&b);
    mlt__json_str_body(&b, buf, n);
    int want = b.len == n && !memcmp(b.p ? b.p : "", buf, n);
    int got = mlt__json_plain_utf8(buf, n);
    plain += want;
    if (got != want) {
      bad = 1;
      tap_diag("round %d: plain_utf8 %d, escaper copies %d (%zu bytes)", round, got, want, n);
    }
  }
  mlt__buf_free(&b);
  CHECK(!bad);
  CHECK(plain > 1000 && plain < 19000);
}

/* Doubles are written with a dot whatever the application's locale. */
TEST(f64_dot_under_a_comma_locale) {
  static const double vals[] = {0.5, -2.5, 3.141592653589793, 1.5e-7, 1e300, 0.1, 42};
  mlt__buf c = {0}, d = {0};
  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
    mlt__buf_f64(&c, vals[i]);
    mlt__buf_putc(&c, ' ');
  }
  if (!tl_comma_locale()) TAP_SKIP("no locale with a comma decimal point (localedef failed)");
  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
    mlt__buf_f64(&d, vals[i]);
    mlt__buf_putc(&d, ' ');
  }
  tl_c_locale();
  CHECK_EQ_INT((int)d.len, (int)c.len);
  CHECK(c.len == d.len && memcmp(c.p, d.p, c.len) == 0);
  CHECK(memchr(d.p, ',', d.len) == NULL);
  mlt__buf_free(&c);
  mlt__buf_free(&d);
}

static const tap_test tests[] = {TAP_ENTRY(f64_dot_under_a_comma_locale), TAP_ENTRY(escape_text_crafted), TAP_ENTRY(escape_text_random),
                                 TAP_ENTRY(integers_and_hex), TAP_ENTRY(plain_utf8_is_what_the_escaper_copies),
                                 TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
