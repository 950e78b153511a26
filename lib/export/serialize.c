/* lib/export/serialize.c: span digests and MLflow's Trace JSON (the form of
 * Trace.to_json(), loadable with Trace.from_json(); also traces.json and the
 * StartTraceV3 TraceInfo, with the assessments a trace's updates hold).  Runs
 * on the export thread only. */
#include "export/exporter-internal.h"

#include <cjson/cJSON.h>

/* A JSON value found invalid at export: counted, logged (rate-limited). */
static void count_invalid_json(void) {
  mlt__stats_add(MLT__ST_INVALID_JSON, 1);
  mlt__log(MLT_LOG_WARN, MLT__LOGK_JSON, "a value given as JSON text is not valid JSON; exported as a string");
}

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- digest ---------------------------------------------------------- */

static int grow(const mlt__rec ***arr, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap * 2 : 16;
  while (c < need) c *= 2;
  const mlt__rec **n = realloc((void *)*arr, c * sizeof *n);
  if (!n) return -1;
  *arr = n;
  *cap = c;
  return 0;
}

/* A delta CHUNK record rebuilt as a whole one (core/trace-view.h) in
 * the digest's arena; returns its offset + 1 (a tag: records are 8-byte
 * aligned), or 0 without memory.  mlt__digest_span() turns the tags into
 * pointers once the arena stops moving. */
static uintptr_t rebuild_chunk(mlt__digest *d, const mlt__rec *r, const mlt__rec *ref) {
  /* the reference's address, the original's, then the copy (MLT__RF_COPY:
   * its JSON verdict goes back to the original, see verdict_back(); the
   * reference may give it, see delta_valid()) */
  size_t len = mlt__delta_len(r, ref), size = 2 * sizeof r + mlt__rec_size(8, len);
  if (len > UINT32_MAX) return 0;
  if (d->arena_len + size > d->arena_cap) {
    size_t c = d->arena_cap ? d->arena_cap * 2 : 4096;
    while (c < d->arena_len + size) c *= 2;
    char *n = realloc(d->arena, c);
    if (!n) return 0;
    d->arena = n;
    d->arena_cap = c;
  }
  char *w = d->arena + d->arena_len;
  memcpy(w, &ref, sizeof ref);
  w += sizeof ref;
  memcpy(w, &r, sizeof r);
  w += sizeof r;
  mlt__rec h = {.kind = MLT__R_CHUNK,
                .sub = r->sub,
                .flags = MLT__RF_COPY | (r->flags & (MLT__RF_CHECKED | MLT__RF_INVALID | MLT__RF_BADUTF8)),
                .key_len = 8,
                .val_len = (uint32_t)len};
  memcpy(w, &h, sizeof h);
  memcpy(w + sizeof h, mlt__rec_key(r), 8);
  mlt__delta_rebuild(w + sizeof h + 8, r, ref);
  uintptr_t tag = d->arena_len + 2 * sizeof r + 1;
  d->arena_len += size;
  return tag;
}

static void delta_forget(void);

static int key_eq(const mlt__rec *a, const char *key, size_t klen) {
  return a->key_len == klen && memcmp(mlt__rec_key(a), key, klen) == 0;
}

/* Last value per key, in first-set order; removals applied. */
static void digest_attr(mlt__digest *d, const mlt__rec *r) {
  const char *k = mlt__rec_key(r);
  size_t i;
  for (i = 0; i < d->n_attrs; i++)
    if (key_eq(d->attrs[i], k, r->key_len)) break;
  if (r->kind == MLT__R_REMOVE_ATTR) {
    if (i < d->n_attrs) {
      memmove(&d->attrs[i], &d->attrs[i + 1], (d->n_attrs - i - 1) * sizeof *d->attrs);
      d->n_attrs--;
    }
  } else if (i < d->n_attrs) {
    d->attrs[i] = r;
  } else if (grow(&d->attrs, &d->cap_attrs, d->n_attrs + 1) == 0) {
    d->attrs[d->n_attrs++] = r;
  }
}

/* Function scope records its function name once (a NAME record flagged
 * FUNC, or a FUNC record): the attribute mlflow.spanFunctionName is made
 * here, in scratch memory that lives as long as this digest. */
static void digest_func(mlt__digest *d, const mlt__rec *src) {
  static const char key[] = "mlflow.spanFunctionName";
  if (d->have_func) return; /* one per span (the scratch record must not move) */
  mlt__buf *b = mlt__scratch_buf(3);
  mlt__buf_reset(b);
  size_t klen = sizeof key - 1, size = mlt__rec_size(klen, src->val_len);
  if (mlt__buf_reserve(b, size)) return;
  mlt__rec r = {.kind = MLT__R_ATTR, .sub = MLT__V_STR, .flags = src->flags & MLT__RF_TRUNC, .key_len = klen,
                .val_len = src->val_len};
  memcpy(b->p, &r, sizeof r);
  memcpy(b->p + sizeof r, key, klen);
  memcpy(b->p + sizeof r + klen, mlt__rec_val(src), src->val_len);
  b->len = size;
  d->have_func = 1;
  digest_attr(d, (const mlt__rec *)(const void *)b->p);
}

/* Type names with their lengths and MLflow's log level (info for model and
 * tool types). */
static struct {
  const char *name; /* = buf */
  uint8_t len, level;
  char buf[32]; /* the name, zero-padded (json_span copies 32 bytes) */
} g_types[MLT__SPAN_TYPE_COUNT + 1];
static pthread_once_t g_types_once = PTHREAD_ONCE_INIT;
static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/* Two base64 characters of each 12-bit value (span ids in the JSON). */
static char g_b64pair[4096][2];
static void types_init(void) {
  for (int i = 0; i < 4096; i++) {
    g_b64pair[i][0] = b64tab[i >> 6];
    g_b64pair[i][1] = b64tab[i & 63];
  }
  for (int t = 0; t <= MLT__SPAN_TYPE_COUNT; t++) {
    const char *n = mlt_span_type_name((mlt_span_type)t);
    size_t nl = strlen(n);
    if (nl >= sizeof g_types[t].buf) nl = sizeof g_types[t].buf - 1; /* (none is) */
    memcpy(g_types[t].buf, n, nl);
    g_types[t].name = g_types[t].buf;
    g_types[t].len = (uint8_t)nl;
    g_types[t].level = (uint8_t)mlt__span_log_level(n, strlen(n), 0);
  }
}

static inline void digest_type(mlt__digest *d, unsigned t) {
  if (t > MLT__SPAN_TYPE_COUNT) t = MLT__SPAN_TYPE_COUNT; /* "UNKNOWN" */
  d->type = g_types[t].name;
  d->type_len = g_types[t].len;
  d->type_level = g_types[t].level;
  d->type_custom = 0;
}

void mlt__digest_span(mlt__digest *d, mlt__score *s) {
  pthread_once(&g_types_once, types_init);
  d->name = "span";
  d->name_len = 4;
  digest_type(d, s->type);
  d->inputs = d->outputs = NULL;
  d->n_attrs = d->n_events = d->n_chunks = 0;
  d->chunks_text_only = 1;
  d->status = s->status;
  d->status_msg = NULL;
  d->first_chunk_ns = 0;
  d->have_func = 0;
  d->n_links = 0;
  d->level = -1;
  d->arena_len = 0;
  delta_forget(); /* (a record's address may come again in another span) */
  const mlt__rec *chunk_ref = NULL; /* the reference of delta CHUNK records */
  int rebuilt = 0;
  mlt__log_iter it;
  mlt__log_iter_init(&it, s);
  const mlt__rec *r;
  while ((r = mlt__log_iter_next(&it)) != NULL) {
    switch (r->kind) {
      case MLT__R_NAME:
        d->name = mlt__rec_value(r, &d->name_len, NULL);
        if (r->flags & MLT__RF_FUNC) digest_func(d, r);
        break;
      case MLT__R_FUNC:
        digest_func(d, r);
        break;
      case MLT__R_TYPE:
        digest_type(d, r->aux);
        break;
      case MLT__R_TYPE_NAME:
        d->type = mlt__rec_value(r, &d->type_len, NULL);
        d->type_custom = 1;
        break;
      case MLT__R_ATTR:
      case MLT__R_REMOVE_ATTR:
        digest_attr(d, r);
        if (MLT_UNLIKELY(r->key_len == 19) && key_eq(r, "mlflow.spanLogLevel", 19)) {
          /* LiveSpan.set_log_level(): an integer; 0 or a removal unsets it */
          int64_t v = 0;
          if (r->kind == MLT__R_ATTR && r->sub == MLT__V_I64) memcpy(&v, mlt__rec_val(r), 8);
          d->level = v > 0 && v <= 50 ? (int)v : -1;
        }
        break;
      case MLT__R_INPUTS:
        d->inputs = r->sub == MLT__V_NONE ? NULL : r;
        break;
      case MLT__R_OUTPUTS:
        d->outputs = r->sub == MLT__V_NONE ? NULL : r;
        break;
      case MLT__R_EVENT:
        if (grow(&d->events, &d->cap_events, d->n_events + 1) == 0) d->events[d->n_events++] = r;
        /* MLflow raises a span's level to ERROR with an "exception" event */
        if (r->key_len == 9 && key_eq(r, "exception", 9) && d->level < 40) d->level = 40;
        break;
      case MLT__R_LINK:
        if (grow(&d->links, &d->cap_links, d->n_links + 1) == 0) d->links[d->n_links++] = r;
        break;
      case MLT__R_CHUNK:
        if (d->n_chunks == 0) memcpy(&d->first_chunk_ns, mlt__rec_key(r), 8);
        if (r->sub != MLT__V_STR) d->chunks_text_only = 0;
        if (grow(&d->chunks, &d->cap_chunks, d->n_chunks + 1) == 0) {
          if (r->flags & MLT__RF_DELTA) {
            uintptr_t tag = rebuild_chunk(d, r, chunk_ref);
            if (tag) {
              d->chunks[d->n_chunks++] = (const mlt__rec *)tag;
              rebuilt = 1;
            }
          } else {
            d->chunks[d->n_chunks++] = r;
          }
        }
        mlt__chunk_ref_see(&chunk_ref, r);
        break;
      case MLT__R_STATUS:
        if (r->aux == MLT_STATUS_ERROR || d->status_msg == NULL || d->status_msg->aux != MLT_STATUS_ERROR)
          d->status_msg = r;
        break;
      case MLT__R_DROP_EVENTS:
        d->n_events = 0;
        break;
      default:
        break; /* FIELD children are reached through their header */
    }
  }
  if (rebuilt)
    for (size_t i = 0; i < d->n_chunks; i++)
      if ((uintptr_t)d->chunks[i] & 1)
        d->chunks[i] = (const mlt__rec *)(const void *)(d->arena + ((uintptr_t)d->chunks[i] - 1));
}

void mlt__digest_free(mlt__digest *d) {
  free((void *)d->attrs);
  free((void *)d->events);
  free((void *)d->chunks);
  free((void *)d->links);
  free(d->arena);
  memset(d, 0, sizeof *d);
}

/* ---- values ---------------------------------------------------------- */

/* Copy text, replacing each invalid UTF-8 byte with U+FFFD (no escaping). */
void mlt__utf8_copy(mlt__buf *out, const char *s, size_t n) {
  size_t i = 0, start = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & UINT64_C(0x8080808080808080))) {
        i += 8;
        continue;
      }
    }
    if ((unsigned char)s[i] < 0x80) {
      i++;
      continue;
    }
    size_t l = mlt__utf8_seq((const unsigned char *)s + i, n - i);
    if (l) {
      i += l;
      continue;
    }
    mlt__buf_put(out, s + start, i - start);
    mlt__buf_put(out, "\xEF\xBF\xBD", 3);
    start = ++i;
  }
  mlt__buf_put(out, s + start, n - start);
}

/* A verdict reached on a digest's copy of a delta record also goes to the
 * original in the span's log, so the next digest of the span (another
 * exporter, the trace's outputs) neither checks nor counts it again. */
static void verdict_back(const mlt__rec *r) {
  if (!(r->flags & MLT__RF_COPY)) return;
  mlt__rec *orig;
  memcpy(&orig, (const char *)r - sizeof orig, sizeof orig);
  orig->flags |= (uint8_t)(r->flags & (MLT__RF_CHECKED | MLT__RF_INVALID | MLT__RF_BADUTF8));
}

static int delta_known_valid(const mlt__rec *c);

/* Validate a JSON-text record once (the export thread owns the span now) and
 * remember the verdict in its flags. */
static int json_rec_ok(const mlt__rec *r, const char *v, size_t len) {
  mlt__rec *w = (mlt__rec *)r;
  if (!(w->flags & MLT__RF_CHECKED)) {
    int utf8_ok = 1;
    if (delta_known_valid(w)) return 1;
    w->flags |= MLT__RF_CHECKED;
    if (!mlt__json_check(v, len, &utf8_ok)) {
      w->flags |= MLT__RF_INVALID;
      count_invalid_json();
    } else if (!utf8_ok) {
      w->flags |= MLT__RF_BADUTF8;
    }
    verdict_back(w);
  }
  return !(w->flags & MLT__RF_INVALID);
}

static inline void trim_ws(const char **v, size_t *len) {
  if (MLT_LIKELY(*len && (unsigned char)(*v)[0] > ' ' && (unsigned char)(*v)[*len - 1] > ' ')) return;
  while (*len && (**v == ' ' || **v == '\n' || **v == '\t' || **v == '\r')) (*v)++, (*len)--;
  while (*len && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\n' || (*v)[*len - 1] == '\t' || (*v)[*len - 1] == '\r'))
    (*len)--;
}

/* ---- a delta's verdict from its difference -------------------------------
 * A delta CHUNK record's text D is its reference's text R with one window
 * replaced: D = R[0,p) + M + R[e,rl) (core/trace-view.h).  When R is valid
 * JSON with valid UTF-8, D's verdict follows from a few bytes instead of a
 * pass over all of D.  Let S_R run in R from the opening quote of the string
 * that holds p to the closing quote of the string that holds e (R's tape
 * finds both), and S_D be the same stretch of D: S_R with the window
 * replaced.  If S_R and S_D are each one JSON string, or each a list of
 * object members ('{' S '}' valid; no bracket in the new bytes M, so that D
 * nests no deeper than R), then D is R with one such piece put in place of
 * another of its kind: valid JSON, and valid UTF-8 when S_D is.  (S_D's
 * bytes before M are read as in R: string contents; those after M are the
 * rest of a string of R, whose only unescaped quote is its last byte, so
 * in a valid S_D that quote closes a string and they are string contents
 * too: a bracket there nests nothing.)  (A streamed OpenAI
 * chunk against the stream's first one: S_R is "role":"assistant",
 * "content":"" and S_D is "content":"Hello".)  Other shapes, and an S_D
 * that fails, take the whole pass, which alone gives invalid verdicts.
 * Export thread only, as the digest. */
static struct {
  const mlt__rec *ref; /* R, whose tape this is (NULL: none since the last digest) */
  int ok;              /* R is valid JSON, valid UTF-8, and the tape complete */
  size_t lead;         /* R's leading whitespace (the tape is of the rest) */
  mlt__jtape tape;
  /* the last window's ends in R (trimmed), and for them: S_R's first byte
   * and last (quotes), and its kind: 1 one string, 2 members, 0 neither */
  size_t wp, we, o1, c2;
  int cat;
  mlt__buf tmp;
  /* delta_str(): R escaped, and where its escaped text of R[0,x) ends for
   * the last two x asked (the window ends of a stream's deltas repeat) */
  mlt__buf esc;
  int have_esc;
  size_t at[2], esc_at[2];
  /* the last copy found valid: its window in R (trimmed) */
  const mlt__rec *last;
  size_t p1, e1;
} g_dv;

static void delta_forget(void) { g_dv.ref = g_dv.last = NULL; }

/* The last token of |t| before byte |at|, or SIZE_MAX. */
static size_t token_before(const mlt__jtape *t, size_t at) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t m = lo + (hi - lo) / 2;
    if (t->pos[m] < at)
      lo = m + 1;
    else
      hi = m;
  }
  return lo ? lo - 1 : SIZE_MAX;
}

/* The closing quote of string token |k|: the last quote before the next
 * token (tokens of valid text). */
static size_t string_close(const mlt__jtape *t, size_t k) {
  size_t e = k + 1 < t->n ? t->pos[k + 1] : t->len;
  while (e > t->pos[k] + 1 && t->src[e - 1] != '"') e--;
  return e - 1;
}

static int has_bracket(const char *s, size_t n) { return memchr(s, '{', n) || memchr(s, '[', n); }

/* Whether a + b + c is one valid JSON value with valid UTF-8; with |members|,
 * the value is '{' a + b + c '}'. */
static int pieces_ok(const char *a, size_t an, const char *b, size_t bn, const char *c, size_t cn, int members) {
  mlt__buf *t = &g_dv.tmp;
  mlt__buf_reset(t);
  if (members) mlt__buf_putc(t, '{');
  mlt__buf_put(t, a, an);
  mlt__buf_put(t, b, bn);
  mlt__buf_put(t, c, cn);
  if (members) mlt__buf_putc(t, '}');
  int utf8_ok = 1;
  return !t->oom && t->p && mlt__json_check(t->p, t->len, &utf8_ok) && utf8_ok;
}

/* 1 when the digest's copy |c| of a delta record is known valid JSON with
 * valid UTF-8 from its reference (above); 0: not known. */
static int delta_valid(const mlt__rec *c) {
  const mlt__rec *ref, *orig;
  memcpy(&ref, (const char *)c - 2 * sizeof ref, sizeof ref);
  memcpy(&orig, (const char *)c - sizeof orig, sizeof orig);
  if (!ref || c->sub != MLT__V_JSON || ref->sub != MLT__V_JSON || (ref->flags & MLT__RF_TRUNC) ||
      orig->val_len < MLT__DELTA_HDR)
    return 0;
  size_t rl;
  const char *rv = mlt__rec_value(ref, &rl, NULL);
  if (g_dv.ref != ref) {
    g_dv.ref = ref;
    g_dv.ok = 0;
    g_dv.wp = g_dv.we = SIZE_MAX;
    g_dv.have_esc = 0;
    g_dv.at[0] = g_dv.at[1] = SIZE_MAX;
    if (json_rec_ok(ref, rv, rl) && !(ref->flags & MLT__RF_BADUTF8)) {
      const char *t = rv;
      size_t tl = rl;
      trim_ws(&t, &tl);
      int utf8_ok = 1;
      g_dv.lead = (size_t)(t - rv);
      g_dv.ok = tl && mlt__json_escape_text_tape(NULL, t, tl, &utf8_ok, &g_dv.tape) && utf8_ok;
    }
  }
  if (!g_dv.ok) return 0;
  const mlt__jtape *tp = &g_dv.tape;
  uint32_t p, s;
  mlt__delta_parts(orig, ref, &p, &s);
  size_t e = rl - s;
  if (p <= g_dv.lead || e <= g_dv.lead || e - g_dv.lead >= tp->len) return 0;
  size_t p1 = p - g_dv.lead, e1 = e - g_dv.lead;
  if (p1 != g_dv.wp || e1 != g_dv.we) {
    /* (a stream's deltas mostly share their window's ends) */
    g_dv.wp = p1;
    g_dv.we = e1;
    g_dv.cat = 0;
    size_t k1 = token_before(tp, p1), k2 = token_before(tp, e1);
    if (k1 == SIZE_MAX || k2 == SIZE_MAX || tp->src[tp->pos[k1]] != '"' || tp->src[tp->pos[k2]] != '"') return 0;
    g_dv.o1 = tp->pos[k1];
    g_dv.c2 = string_close(tp, k2);
    if (p1 > string_close(tp, k1) || e1 > g_dv.c2) return 0; /* p or e past its token's string */
    g_dv.cat = k1 == k2 ? 1 : pieces_ok(tp->src + g_dv.o1, g_dv.c2 + 1 - g_dv.o1, "", 0, "", 0, 1) ? 2 : 0;
  }
  if (!g_dv.cat) return 0;
  const char *a = tp->src + g_dv.o1, *m = mlt__rec_val(orig) + MLT__DELTA_HDR, *b = tp->src + e1;
  size_t an = p1 - g_dv.o1, mn = orig->val_len - MLT__DELTA_HDR, bn = g_dv.c2 + 1 - e1;
  if (g_dv.cat == 2 && has_bracket(m, mn)) return 0;
  if (!pieces_ok(a, an, m, mn, b, bn, g_dv.cat == 2)) return 0;
  g_dv.last = c;
  g_dv.p1 = p1;
  g_dv.e1 = e1;
  return 1;
}

/* For a record not yet checked: when it is a digest's copy of a delta that
 * delta_valid() finds valid, record the verdict (and on the original) and
 * return 1; else 0, and the caller checks the text itself. */
static int delta_known_valid(const mlt__rec *c) {
  if (!(c->flags & MLT__RF_COPY) || !delta_valid(c)) return 0;
  ((mlt__rec *)c)->flags |= MLT__RF_CHECKED;
  verdict_back(c);
  return 1;
}

/* Bytes of R's escaped text that escape R[0,x) (trimmed R; x between two
 * characters), or SIZE_MAX without memory. */
static size_t escaped_at(size_t x) {
  for (int i = 0; i < 2; i++)
    if (g_dv.at[i] == x) return g_dv.esc_at[i];
  mlt__buf_reset(&g_dv.tmp);
  mlt__json_str_body(&g_dv.tmp, g_dv.tape.src, x);
  if (g_dv.tmp.oom) {
    g_dv.tmp.oom = 0;
    return SIZE_MAX;
  }
  g_dv.at[1] = g_dv.at[0];
  g_dv.esc_at[1] = g_dv.esc_at[0];
  g_dv.at[0] = x;
  g_dv.esc_at[0] = g_dv.tmp.len;
  return g_dv.tmp.len;
}

/* The JSON string of the (trimmed) text v[0,len) of copy |c|: when
 * delta_valid() has just found it valid and the window's ends fall between
 * characters of R, R's escaped text around the window's escaped bytes
 * (escaping maps characters one by one); else escaped whole. */
static void delta_str(mlt__buf *out, const mlt__rec *c, const char *v, size_t len) {
  const mlt__jtape *tp = &g_dv.tape;
  const mlt__rec *orig;
  memcpy(&orig, (const char *)c - sizeof orig, sizeof orig);
  size_t p1 = g_dv.p1, e1 = g_dv.e1, mn = orig->val_len - MLT__DELTA_HDR;
  if (g_dv.last != c || ((unsigned char)tp->src[p1] & 0xC0) == 0x80 || ((unsigned char)tp->src[e1] & 0xC0) == 0x80 ||
      p1 + mn + (tp->len - e1) != len) {
    mlt__json_str(out, v, len);
    return;
  }
  if (!g_dv.have_esc) {
    mlt__buf_reset(&g_dv.esc);
    mlt__json_str_body(&g_dv.esc, tp->src, tp->len);
    g_dv.have_esc = !g_dv.esc.oom;
    if (!g_dv.have_esc) {
      mlt__json_str(out, v, len);
      return;
    }
  }
  size_t ep = escaped_at(p1), ee = ep == SIZE_MAX ? SIZE_MAX : escaped_at(e1);
  if (ee == SIZE_MAX) {
    mlt__json_str(out, v, len);
    return;
  }
  mlt__buf_putc(out, '"');
  mlt__buf_put(out, g_dv.esc.p, ep);
  mlt__json_str_body(out, mlt__rec_val(orig) + MLT__DELTA_HDR, mn);
  mlt__buf_put(out, g_dv.esc.p + ee, g_dv.esc.len - ee);
  mlt__buf_putc(out, '"');
}

static void truncated_string(mlt__buf *out, const char *v, size_t len, uint64_t orig) {
  char marker[64];
  int m = snprintf(marker, sizeof marker, "...[truncated by mltrace: %llu bytes]", (unsigned long long)orig);
  mlt__buf_putc(out, '"');
  mlt__json_str_body(out, v, len);
  mlt__json_str_body(out, marker, (size_t)m);
  mlt__buf_putc(out, '"');
}

static void fields_json(mlt__buf *out, const mlt__rec *hdr) {
  uint64_t n;
  memcpy(&n, mlt__rec_val(hdr), 8);
  const mlt__rec *c = mlt__rec_next(hdr);
  mlt__buf_putc(out, '{');
  for (uint64_t i = 0; i < n; i++, c = mlt__rec_next(c)) {
    if (i) mlt__buf_lit(out, ", ");
    mlt__json_str(out, mlt__rec_key(c), c->key_len);
    mlt__buf_lit(out, ": ");
    mlt__value_json(out, c);
  }
  mlt__buf_putc(out, '}');
}

void mlt__value_json(mlt__buf *out, const mlt__rec *r) {
  size_t len;
  uint64_t orig;
  const char *v = mlt__rec_value(r, &len, &orig);
  if (r->flags & MLT__RF_TRUNC) {
    truncated_string(out, v, len, orig);
    return;
  }
  switch (r->sub) {
    case MLT__V_STR:
      mlt__json_str(out, v, len);
      return;
    case MLT__V_I64: {
      int64_t i;
      memcpy(&i, v, 8);
      mlt__buf_i64(out, i);
      return;
    }
    case MLT__V_F64: {
      double d;
      memcpy(&d, v, 8);
      mlt__buf_f64(out, d);
      return;
    }
    case MLT__V_BOOL: {
      if (r->aux)
        mlt__buf_lit(out, "true");
      else
        mlt__buf_lit(out, "false");
      return;
    }
    case MLT__V_JSON:
      if (json_rec_ok(r, v, len)) {
        trim_ws(&v, &len);
        if (r->flags & MLT__RF_BADUTF8)
          mlt__utf8_copy(out, v, len);
        else
          mlt__buf_put(out, v, len);
      } else {
        mlt__json_str(out, v, len);
      }
      return;
    case MLT__V_CJSON: {
      cJSON *j;
      memcpy(&j, v, sizeof j);
      char *txt = j ? cJSON_PrintUnformatted(j) : NULL;
      if (txt) {
        mlt__utf8_copy(out, txt, strlen(txt));
        free(txt);
      } else {
        mlt__buf_lit(out, "null");
      }
      return;
    }
    case MLT__V_FIELDS:
      fields_json(out, r);
      return;
    default:
      mlt__buf_lit(out, "null");
  }
}

void mlt__chunks_output_json(mlt__buf *out, const mlt__digest *d) {
  if (d->chunks_text_only) {
    mlt__buf_putc(out, '"');
    for (size_t i = 0; i < d->n_chunks; i++) {
      size_t len;
      const char *v = mlt__rec_value(d->chunks[i], &len, NULL);
      mlt__json_str_body(out, v, len);
    }
    mlt__buf_putc(out, '"');
    return;
  }
  mlt__buf_putc(out, '[');
  for (size_t i = 0; i < d->n_chunks; i++) {
    if (i) mlt__buf_lit(out, ", ");
    mlt__value_json(out, d->chunks[i]);
  }
  mlt__buf_putc(out, ']');
}

/* ---- trace info ------------------------------------------------------ */

static const char *g_user;
static char g_user_buf[128];

static const char *user_name(void) {
  if (g_user) return g_user;
  const char *u = mlt__getenv("USER");
  struct passwd pw, *res = NULL;
  char buf[1024];
  if (!u && getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res) u = res->pw_name;
  snprintf(g_user_buf, sizeof g_user_buf, "%s", u ? u : "unknown");
  g_user = g_user_buf;
  return g_user;
}

/* Cut to |max| code points: s[:max-3] + "..." when longer. */
static void put_limited(mlt__buf *out, const char *s, size_t n, size_t max, int ellipsis) {
  if (n <= max) { /* n bytes hold at most n code points */
    mlt__buf_put(out, s, n);
    return;
  }
  size_t chars;
  size_t cut = mlt__utf8_prefix_chars(s, n, max + 1, &chars);
  if (chars <= max) {
    mlt__buf_put(out, s, cut);
    return;
  }
  if (ellipsis) {
    mlt__buf_put(out, s, mlt__utf8_prefix_chars(s, n, max - 3, NULL));
    mlt__buf_lit(out, "...");
  } else {
    mlt__buf_put(out, s, mlt__utf8_prefix_chars(s, n, max, NULL));
  }
}

static mlt__buf g_prev_raw, g_prev_content, g_prev_cut; /* export thread */

/* The previews are kept as JSON string bodies (escaped, no quotes): s[0..n)
 * cut to MLflow's 1000 characters, escaped. */
static void preview_put(mlt__buf *out, const char *s, size_t n) {
  if (n <= 1000) { /* (n bytes hold at most n characters) */
    mlt__json_str_body(out, s, n);
    return;
  }
  mlt__buf_reset(&g_prev_cut);
  put_limited(&g_prev_cut, s, n, 1000, 1);
  mlt__json_str_body(out, g_prev_cut.p ? g_prev_cut.p : "", g_prev_cut.len);
}
/* Tapes of the root's inputs and outputs, written by the pass that escaped
 * them for the span JSON (valid for the trace being serialized), and one
 * for anything else. */
static mlt__jtape g_tape[3];
static const mlt__rec *g_tape_rec[2];

/* The preview of valid JSON text with its complete tape: its chat content,
 * or the text itself. */
static void preview_from_tape(mlt__buf *out, const mlt__jtape *t, const char *role) {
  size_t off, len;
  if (t->len && t->src[0] == '{' && mlt__jtape_chat_content(t, role, &off, &len) && len) {
    if (!memchr(t->src + off, '\\', len)) {
      /* the raw contents of a string of valid JSON text without an escape:
       * what it decodes to, and already escaped as it is */
      put_limited(out, t->src + off, len, 1000, 1);
      return;
    }
    mlt__buf_reset(&g_prev_content);
    mlt__junescape(&g_prev_content, t->src + off, len);
    if (g_prev_content.len) {
      preview_put(out, g_prev_content.p, g_prev_content.len);
      return;
    }
  }
  preview_put(out, t->src, t->len);
}

/* After the spans' serialization (which validated the record and, for the
 * root's values, wrote their tapes). */
static void compute_preview(mlt__buf *out, const mlt__rec *r, const char *role, int which) {
  if (g_tape_rec[which] == r && !(r->flags & (MLT__RF_INVALID | MLT__RF_BADUTF8))) {
    preview_from_tape(out, &g_tape[which], role);
    return;
  }
  const char *txt = NULL;
  size_t n = 0;
  if (r->sub == MLT__V_JSON && !(r->flags & MLT__RF_TRUNC) && json_rec_ok(r, (txt = mlt__rec_value(r, &n, NULL)), n) &&
      !(r->flags & MLT__RF_BADUTF8)) {
    trim_ws(&txt, &n);
  } else {
    /* anything else: the value's JSON text (valid) */
    mlt__buf_reset(&g_prev_raw);
    mlt__value_json(&g_prev_raw, r);
    txt = g_prev_raw.p ? g_prev_raw.p : "";
    n = g_prev_raw.len;
  }
  int ok8;
  if (n && txt[0] == '{' && mlt__json_escape_text_tape(NULL, txt, n, &ok8, &g_tape[2]))
    preview_from_tape(out, &g_tape[2], role);
  else
    preview_put(out, txt, n);
}

static const mlt__rec **g_usage; /* export thread: spans_and_stats */
static size_t g_usage_cap;
static mlt__buf g_src_user; /* export thread: json_info_body */
/* The root span's default output from its chunks (json_span keeps it for
 * the trace's metadata and preview). */
static mlt__buf g_root_chunks;
/* One span's token counts: bit k of |present| when member g_usage_keys[k]
 * is a number (its value in v[k]). */
typedef struct usage_vals {
  double v[5];
  unsigned present;
} usage_vals;

static char *g_uflags; /* export thread: trace_usage_compute */
static usage_vals *g_uvals;
static size_t g_ucap;

/* Scratch state of the export thread, reused by the serializers, the OTLP
 * encoder and the span processor's view. */
static mlt__digest g_digest;
static mlt__buf g_scratch[4];
mlt__digest *mlt__scratch_digest(void) { return &g_digest; }
mlt__buf *mlt__scratch_buf(int which) { return &g_scratch[which & 3]; }

void mlt__serialize_atfork_child(void) {
  void *roots[] = {(void *)g_digest.attrs, (void *)g_digest.events, (void *)g_digest.chunks, (void *)g_digest.links,
                   g_digest.arena,         g_scratch[0].p,          g_scratch[1].p,          g_scratch[2].p,
                   g_scratch[3].p,         g_src_user.p,            g_root_chunks.p,         (void *)g_usage,
                   g_uflags,               g_uvals};
  for (size_t i = 0; i < MLT_ARRAY_LEN(roots); i++) mlt__forget(roots[i]);
  memset(&g_digest, 0, sizeof g_digest);
  memset(g_scratch, 0, sizeof g_scratch);
  memset(&g_src_user, 0, sizeof g_src_user);
  memset(&g_root_chunks, 0, sizeof g_root_chunks);
  g_usage = NULL;
  g_usage_cap = 0;
  g_uflags = NULL;
  g_uvals = NULL;
  g_ucap = 0;
}

void mlt__serialize_shutdown(void) {
  mlt__digest_free(&g_digest);
  for (int i = 0; i < 4; i++) mlt__buf_free(&g_scratch[i]);
  mlt__buf_free(&g_src_user);
  mlt__buf_free(&g_root_chunks);
  free((void *)g_usage);
  g_usage = NULL;
  g_usage_cap = 0;
  free(g_uflags);
  free(g_uvals);
  g_uflags = NULL;
  g_uvals = NULL;
  g_ucap = 0;
  for (int i = 0; i < 3; i++) mlt__jtape_free(&g_tape[i]);
  g_tape_rec[0] = g_tape_rec[1] = NULL;
  mlt__jtape_free(&g_dv.tape);
  mlt__buf_free(&g_dv.tmp);
  mlt__buf_free(&g_dv.esc);
  g_dv.ref = g_dv.last = NULL;
  mlt__buf_free(&g_prev_raw);
  mlt__buf_free(&g_prev_content);
  mlt__buf_free(&g_prev_cut);
}

static const char *tinfo_find(mlt__tinfo *i, int kind) {
  for (; i; i = i->next)
    if (i->kind == kind) return i->value;
  return NULL;
}


static int has_ancestor_usage(const mlt__prepared *p, const char *usage_flags, uint32_t i) {
  int32_t par = p->parent ? p->parent[i] : -1;
  int guard = 0;
  while (par >= 0 && guard++ < 100000) {
    if (usage_flags[par]) return 1;
    par = p->parent[par];
  }
  return 0;
}

/* What needs no look at the spans' values: ids, the trace-level updates,
 * times and state. */
static void trace_info_head(mlt__trace_info *ti, const mlt__prepared *p) {
  memcpy(ti->trace_id, p->trace_id, sizeof ti->trace_id);
  mlt__buf_reset(&ti->request_preview);
  mlt__buf_reset(&ti->response_preview);
  mlt__buf_reset(&ti->token_usage);
  ti->has_request_preview = ti->has_response_preview = 0;
  ti->usage_ready = ti->late_ready = 0;
  ti->info = mlt__trace_take_info(p->t);
  ti->client_request_id = tinfo_find(ti->info, MLT__TI_CLIENT_REQ_ID);
  ti->session = tinfo_find(ti->info, MLT__TI_SESSION);
  ti->user = tinfo_find(ti->info, MLT__TI_USER);
  mlt__score *root = p->root >= 0 ? p->spans[p->root] : NULL;
  ti->trace_name = NULL;
  ti->trace_name_len = 0;
  ti->state_error = 0;
  if (root) {
    ti->start_ns = root->start_ns;
    ti->end_ns = root->end_ns;
    ti->state_error = root->status == MLT_STATUS_ERROR;
  } else {
    ti->start_ns = INT64_MAX;
    ti->end_ns = 0;
    for (uint32_t i = 0; i < p->n; i++) {
      ti->start_ns = MLT_MIN(ti->start_ns, p->spans[i]->start_ns);
      ti->end_ns = MLT_MAX(ti->end_ns, p->spans[i]->end_ns);
    }
    if (!p->n) ti->start_ns = ti->end_ns = 0;
  }
  const char *state = tinfo_find(ti->info, MLT__TI_STATE); /* update_current_trace(state=) wins */
  if (state) ti->state_error = state[0] == 'E';
}

/* The rest: the trace's name and previews, once the spans were serialized
 * (their JSON values validated on the way), and token usage from the
 * digests the serialization saw (json_info_body). */
/* What the serialization saw of the root span (its digest is gone then). */
typedef struct root_seen {
  int have;
  const char *name;
  size_t name_len;
  const mlt__rec *inputs, *outputs;
  size_t n_chunks;
  const mlt__buf *chunks_out; /* the chunks' default output, as the span's attribute had it, or NULL */
} root_seen;

static void trace_info_compute(mlt__trace_info *ti, const mlt__prepared *p, const root_seen *rs) {
  ti->late_ready = 1;
  mlt__score *root = p->root >= 0 ? p->spans[p->root] : NULL;
  mlt__digest *d = mlt__scratch_digest();
  if (root && rs && rs->have && (rs->outputs || !rs->n_chunks || rs->chunks_out)) {
    /* (the chunks' default output needs the digest, unless it was kept) */
    d->name = rs->name;
    d->name_len = rs->name_len;
    d->inputs = rs->inputs;
    d->outputs = rs->outputs;
    d->n_chunks = rs->n_chunks;
  } else if (root) {
    mlt__digest_span(d, root);
  }
  if (root) {
    ti->trace_name = d->name;
    ti->trace_name_len = d->name_len;
    const char *up = tinfo_find(ti->info, MLT__TI_REQ_PREVIEW);
    ti->has_request_preview = 1;
    if (up && *up)
      preview_put(&ti->request_preview, up, strlen(up));
    else if (d->inputs)
      compute_preview(&ti->request_preview, d->inputs, "user", 0);
    else
      ti->has_request_preview = 0;
    up = tinfo_find(ti->info, MLT__TI_RESP_PREVIEW);
    ti->has_response_preview = 1;
    if (up && *up) {
      preview_put(&ti->response_preview, up, strlen(up));
    } else if (d->outputs) {
      compute_preview(&ti->response_preview, d->outputs, "assistant", 1);
    } else if (d->n_chunks && rs && rs->have && rs->chunks_out) {
      preview_put(&ti->response_preview, rs->chunks_out->p ? rs->chunks_out->p : "", rs->chunks_out->len);
    } else if (d->n_chunks) {
      mlt__buf tmp = {0};
      mlt__chunks_output_json(&tmp, d);
      preview_put(&ti->response_preview, tmp.p ? tmp.p : "", tmp.len);
      mlt__buf_free(&tmp);
    } else {
      ti->has_response_preview = 0;
    }
  }
}

/* The mlflow.chat.tokenUsage attribute of a digested span, or NULL. */
static const mlt__rec *digest_usage(const mlt__digest *d) {
  for (size_t a = 0; a < d->n_attrs; a++)
    if (d->attrs[a]->key_len == 22 && key_eq(d->attrs[a], "mlflow.chat.tokenUsage", 22)) return d->attrs[a];
  return NULL;
}

static const char *const g_usage_keys[5] = {"input_tokens", "output_tokens", "total_tokens",
                                            "cache_read_input_tokens", "cache_creation_input_tokens"};


/* A JSON number's token as a double, as cJSON (1.7) reads it: strtod of
 * the text with '.' as the locale's decimal point; short integers exactly
 * (what strtod gives them) without strtod. */
static double usage_number(const char *s, size_t n) {
  int neg = s[0] == '-';
  if (n - (size_t)neg <= 15) {
    uint64_t x = 0;
    size_t i = (size_t)neg;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) x = x * 10 + (uint64_t)(s[i] - '0');
    if (i == n) return neg ? -(double)x : (double)x;
  }
  return mlt__json_strtod(s, n);
}

static inline int usage_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* The counts of a flat object from its JSON text s[0..n) (valid JSON,
 * trimmed, s[0] == '{'): 1 when read; 0 when a member is an object or
 * array, a key or string has an escape, or a number is longer than 63
 * bytes (uv->present is then meaningless). */
static int usage_flat(const char *s, size_t n, usage_vals *uv) {
  unsigned seen = 0;
  size_t i = 1;
  uv->present = 0;
  for (;;) {
    while (i < n && (usage_ws(s[i]) || s[i] == ',')) i++;
    if (i >= n || s[i] != '"') return i < n && s[i] == '}';
    size_t k0 = ++i;
    while (i < n && s[i] != '"' && s[i] != '\\') i++;
    if (i >= n || s[i] != '"') return 0;
    size_t kl = i - k0;
    i++;
    while (i < n && (usage_ws(s[i]) || s[i] == ':')) i++;
    if (i >= n) return 0;
    size_t v0 = i;
    int num = 0;
    char c = s[i];
    if (c == '{' || c == '[') return 0;
    if (c == '"') {
      i++;
      while (i < n && s[i] != '"' && s[i] != '\\') i++;
      if (i >= n || s[i] != '"') return 0;
      i++;
    } else {
      num = c == '-' || (c >= '0' && c <= '9');
      while (i < n && !usage_ws(s[i]) && s[i] != ',' && s[i] != '}') i++;
      if (num && i - v0 > 63) return 0;
    }
    for (int j = 0; j < 5; j++) {
      if (seen & (1u << j) || kl != strlen(g_usage_keys[j]) || memcmp(s + k0, g_usage_keys[j], kl)) continue;
      seen |= 1u << j; /* the first member of the name counts */
      if (num) {
        uv->v[j] = usage_number(s + v0, i - v0);
        uv->present |= 1u << j;
      }
      break;
    }
  }
}

/* The token counts of a tokenUsage value; 1 when the value's JSON text
 * (mlt__value_json()) is an object.  The common case -- JSON text holding
 * one flat object whose keys and strings have no escapes and whose numbers
 * are short -- is read from the record's text (usage_flat()); anything
 * else is given to cJSON, as all of them were (the same sums: cJSON reads
 * the first member of each name, and fails on some escapes). */
static int usage_read(const mlt__rec *u, usage_vals *uv) {
  uv->present = 0;
  if (u->sub == MLT__V_JSON && !(u->flags & MLT__RF_TRUNC)) {
    size_t n;
    const char *txt = mlt__rec_value(u, &n, NULL);
    if (!json_rec_ok(u, txt, n)) return 0; /* (exported as a JSON string) */
    trim_ws(&txt, &n);
    if (!n || txt[0] != '{') return 0; /* valid JSON, not an object */
    if (!(u->flags & MLT__RF_BADUTF8) && usage_flat(txt, n, uv)) return 1;
  }
  uv->present = 0;
  mlt__buf tmp = {0};
  mlt__value_json(&tmp, u);
  cJSON *j = cJSON_ParseWithLength(tmp.p ? tmp.p : "", tmp.len);
  mlt__buf_free(&tmp);
  int obj = cJSON_IsObject(j);
  for (int k = 0; obj && k < 5; k++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, g_usage_keys[k]);
    if (cJSON_IsNumber(v)) {
      uv->v[k] = v->valuedouble;
      uv->present |= 1u << k;
    }
  }
  cJSON_Delete(j);
  return obj;
}

/* Token usage: tree-aware sum of mlflow.chat.tokenUsage, as MLflow does.
 * |found|: each span's attribute (last value, a span processor's removal
 * applied), as the serialization of the spans saw them; NULL: look. */
static void trace_usage_compute(mlt__trace_info *ti, const mlt__prepared *p, const mlt__rec *const *found) {
  ti->usage_ready = 1;
  int any = 0, have = 0;
  for (uint32_t i = 0; i < p->n; i++) {
    const mlt__rec *u;
    if (found) {
      u = found[i];
    } else {
      mlt__digest *d = mlt__scratch_digest();
      mlt__digest_span(d, p->spans[i]);
      u = digest_usage(d);
    }
    if (!u) continue;
    if (!have) {
      if (g_ucap < p->n) {
        size_t cap = p->n > 2 * g_ucap ? p->n : 2 * g_ucap;
        char *f = realloc(g_uflags, cap);
        if (f) g_uflags = f;
        usage_vals *v = f ? realloc(g_uvals, cap * sizeof *v) : NULL;
        if (!v) {
          ti->token_usage.oom = 1; /* no room to sum: the trace is not complete */
          break;
        }
        g_uvals = v;
        g_ucap = cap;
      }
      memset(g_uflags, 0, p->n);
      have = 1;
    }
    if (usage_read(u, &g_uvals[i])) {
      g_uflags[i] = 1;
      any = 1;
    }
  }
  if (any) {
    double sum[5] = {0};
    int present[5] = {0};
    for (uint32_t i = 0; i < p->n; i++) {
      if (!g_uflags[i] || has_ancestor_usage(p, g_uflags, i)) continue;
      for (int k = 0; k < 5; k++) {
        if (g_uvals[i].present & (1u << k)) {
          sum[k] += g_uvals[i].v[k];
          present[k] = 1;
        }
      }
    }
    mlt__buf_putc(&ti->token_usage, '{');
    int first = 1;
    for (int k = 0; k < 5; k++) {
      if (k >= 3 && !present[k]) continue;
      if (!first) mlt__buf_lit(&ti->token_usage, ", ");
      first = 0;
      mlt__buf_putc(&ti->token_usage, '"');
      mlt__buf_puts(&ti->token_usage, g_usage_keys[k]);
      mlt__buf_lit(&ti->token_usage, "\": ");
      /* (in int64's range: converting a double outside it is undefined) */
      double v = sum[k];
      mlt__buf_i64(&ti->token_usage, v != v ? 0 : v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v);
    }
    mlt__buf_putc(&ti->token_usage, '}');
  }
}

const mlt__trace_info *mlt__prepared_info(mlt__prepared *p) {
  if (!p->ti_ready) {
    trace_info_head(&p->ti, p);
    p->ti_ready = 1;
  }
  return &p->ti;
}

void mlt__trace_info_free(mlt__trace_info *ti) {
  mlt__buf_free(&ti->request_preview);
  mlt__buf_free(&ti->response_preview);
  mlt__buf_free(&ti->token_usage);
}

/* ---- JSON writers ---------------------------------------------------- */

/* ', "assessments": [...]' for the MLT__TI_ASSESSMENT entries of a trace's
 * update list (newest first; each entry one Assessment JSON object made by
 * lib/export/assess.c), oldest first; nothing when none. */
static void assessments_json(mlt__buf *out, const mlt__tinfo *info) {
  size_t n = 0;
  for (const mlt__tinfo *i = info; i; i = i->next)
    if (i->kind == MLT__TI_ASSESSMENT) n++;
  if (!n) return;
  /* The list is newest first; write oldest first (a small array of them). */
  const mlt__tinfo *stack[64], **v = n <= 64 ? stack : malloc(n * sizeof *v);
  if (!v) return;
  size_t k = n;
  for (const mlt__tinfo *i = info; i; i = i->next)
    if (i->kind == MLT__TI_ASSESSMENT) v[--k] = i;
  mlt__buf_lit(out, ", \"assessments\": [");
  for (size_t j = 0; j < n; j++) {
    if (j) mlt__buf_lit(out, ", ");
    mlt__buf_puts(out, v[j]->value);
  }
  mlt__buf_putc(out, ']');
  if (v != stack) free(v);
}



/* Unchecked writes at a pointer into a buffer whose room the caller
 * reserved (wr_begin); wr_end sets the length.  A failed reserve (the
 * buffer is marked oom) returns NULL and the caller stops writing. */
static inline char *wr_begin(mlt__buf *b, size_t room) {
  if (MLT_UNLIKELY(b->cap - b->len < room) && mlt__buf_reserve(b, room)) return NULL;
  return b->p + b->len;
}
static inline void wr_end(mlt__buf *b, const char *o) { b->len = (size_t)(o - b->p); }
#define WR_LIT(o, lit)                            \
  do {                                            \
    memcpy((o), "" lit, sizeof(lit) - 1);         \
    (o) += sizeof(lit) - 1;                       \
  } while (0)

/* A span id (8 bytes, big-endian) in base64 as a JSON string: 14 bytes. */
static inline char *wr_b64_id8(char *t, uint64_t v) {
  uint32_t g1 = (uint32_t)(v >> 40), g2 = (uint32_t)(v >> 16) & 0xFFFFFF, g3 = (uint32_t)(v & 0xFFFF) << 2;
  t[0] = '"';
  memcpy(t + 1, g_b64pair[g1 >> 12], 2);
  memcpy(t + 3, g_b64pair[g1 & 0xFFF], 2);
  memcpy(t + 5, g_b64pair[g2 >> 12], 2);
  memcpy(t + 7, g_b64pair[g2 & 0xFFF], 2);
  memcpy(t + 9, g_b64pair[g3 >> 6], 2);
  t[11] = b64tab[g3 & 63];
  t[12] = '=';
  t[13] = '"';
  return t + 14;
}

/* A nanosecond timestamp (room: 24 bytes): the seconds' digits come from a
 * cache (spans of a batch share their second), the 9 fraction digits are
 * formatted. */
static int64_t g_ts_sec = -1;
static char g_ts_digits[24];
static size_t g_ts_len;

static MLT_NOINLINE char *wr_ts_slow(char *o, int64_t ns) {
  mlt__buf tmp = {0};
  if (ns < 1000000000) {
    mlt__buf_i64(&tmp, ns);
  } else { /* a new second */
    mlt__buf_u64(&tmp, (uint64_t)(ns / 1000000000));
    if (!tmp.oom && tmp.len <= 20) {
      memcpy(g_ts_digits, tmp.p, tmp.len);
      g_ts_len = tmp.len;
      g_ts_sec = ns / 1000000000;
    }
    mlt__buf_reset(&tmp);
    mlt__buf_i64(&tmp, ns);
  }
  if (!tmp.oom && tmp.len <= 24) {
    memcpy(o, tmp.p, tmp.len);
    o += tmp.len;
  }
  mlt__buf_free(&tmp);
  return o;
}

static inline char *wr_ts(char *o, int64_t ns) {
  int64_t sec = ns / 1000000000;
  if (MLT_UNLIKELY(sec != g_ts_sec || ns < 1000000000)) return wr_ts_slow(o, ns);
  uint32_t frac = (uint32_t)(ns - sec * 1000000000);
  memcpy(o, g_ts_digits, 24); /* (24: a fixed size, no call) */
  o += g_ts_len;
  *o++ = (char)('0' + frac / 100000000);
  mlt__digits8_inline(frac % 100000000, o);
  return o + 8;
}

/* ns as seconds with 6 decimals (microseconds, rounded to nearest with
 * ties to even: "%.6f" of ns / 1e9 but for a tie's last digit; no printf;
 * room: 32 bytes). */
static char *wr_secs6(char *o, int64_t ns) {
  uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
  uint64_t us = a / 1000, r = a % 1000;
  if (r > 500 || (r == 500 && (us & 1))) us++;
  if (ns < 0 && us) *o++ = '-';
  o = mlt__wr_u64(o, us / 1000000);
  *o++ = '.';
  uint32_t f = (uint32_t)(us % 1000000);
  char d8[8];
  mlt__digits8_inline(f, d8); /* "00ffffff" */
  memcpy(o, d8 + 2, 6);
  return o + 6;
}

/* Two decimal digits of v (0..99). */
static inline void put2(char *p, int v) {
  p[0] = (char)('0' + v / 10);
  p[1] = (char)('0' + v % 10);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" with the quotes (days from the civil calendar,
 * no libc formatting; the date of the last day written is kept). */
static int64_t g_day = INT64_MIN;
static char g_day_txt[12]; /* "\"YYYY-MM-DDT" */
static void rfc3339_full(char *t, int64_t ns);
static char *wr_rfc3339_ms(char *o, int64_t ns) { /* room: 26 bytes */
  int64_t sec = ns / 1000000000;
  if (MLT_LIKELY(ns >= 0 && sec / 86400 == g_day)) {
    int ms = (int)((ns / 1000000) % 1000), rem = (int)(sec % 86400);
    memcpy(o, g_day_txt, 12);
    put2(o + 12, rem / 3600);
    o[14] = ':';
    put2(o + 15, rem / 60 % 60);
    o[17] = ':';
    put2(o + 18, rem % 60);
    o[20] = '.';
    o[21] = (char)('0' + ms / 100);
    put2(o + 22, ms % 100);
    o[24] = 'Z';
    o[25] = '"';
    return o + 26;
  }
  rfc3339_full(o, ns);
  if (ns >= 0) {
    memcpy(g_day_txt, o, 12);
    g_day = sec / 86400;
  }
  return o + 26;
}
static void rfc3339_full(char *t, int64_t ns) {
  int64_t sec = ns / 1000000000;
  int ms = (int)((ns / 1000000) % 1000);
  if (ms < 0) {
    ms += 1000;
    sec--;
  }
  int64_t days = sec / 86400, rem = sec % 86400;
  if (rem < 0) {
    rem += 86400;
    days--;
  }
  /* H. Hinnant's civil_from_days */
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
  int d = (int)(doy - (153 * mp + 2) / 5 + 1), m = (int)(mp < 10 ? mp + 3 : mp - 9);
  if (m <= 2) y++;
  if (y < 0 || y > 9999) y = 0;
  t[0] = '"';
  put2(t + 1, (int)(y / 100));
  put2(t + 3, (int)(y % 100));
  t[5] = '-';
  put2(t + 6, m);
  t[8] = '-';
  put2(t + 9, d);
  t[11] = 'T';
  put2(t + 12, (int)(rem / 3600));
  t[14] = ':';
  put2(t + 15, (int)(rem / 60 % 60));
  t[17] = ':';
  put2(t + 18, (int)(rem % 60));
  t[20] = '.';
  t[21] = (char)('0' + ms / 100);
  put2(t + 22, ms % 100);
  t[24] = 'Z';
  t[25] = '"';
}

/* "key": "<json string of value>" — an attribute value as MLflow stores it
 * (the JSON text of the value, as a string). */
/* Where the value of the last put_value_encoded() is in |out| when it was
 * the escaped JSON text itself (start, length with the quotes), and how long
 * that text was; 0 otherwise.  The trace's metadata copies the root's. */
typedef struct enc_range {
  size_t off, len, text_len;
} enc_range;

static void put_value_encoded(mlt__buf *out, mlt__buf *tmp, const mlt__rec *r, enc_range *rg, int tape);

static int copied_as_is(const char *s, size_t n) { return mlt__json_plain_inline(s, n) || mlt__json_plain_utf8(s, n); }

/* The JSON string of a FIELDS value's JSON text (fields_json()), written
 * straight when every key and string value is one the escaper copies as it
 * is and every other value a number or boolean (their text needs no
 * escaping either); 0, with nothing written, otherwise. */
static int fields_encoded(mlt__buf *out, const mlt__rec *hdr) {
  uint64_t n;
  memcpy(&n, mlt__rec_val(hdr), 8);
  const mlt__rec *c = mlt__rec_next(hdr);
  for (uint64_t i = 0; i < n; i++, c = mlt__rec_next(c)) {
    if ((c->flags & MLT__RF_TRUNC) || !copied_as_is(mlt__rec_key(c), c->key_len)) return 0;
    if (c->sub == MLT__V_STR) {
      size_t len;
      const char *v = mlt__rec_value(c, &len, NULL);
      if (!copied_as_is(v, len)) return 0;
    } else if (c->sub != MLT__V_I64 && c->sub != MLT__V_F64 && c->sub != MLT__V_BOOL) {
      return 0;
    }
  }
  mlt__buf_lit(out, "\"{");
  c = mlt__rec_next(hdr);
  for (uint64_t i = 0; i < n; i++, c = mlt__rec_next(c)) {
    if (i) mlt__buf_lit(out, ", ");
    mlt__buf_lit(out, "\\\"");
    mlt__buf_put(out, mlt__rec_key(c), c->key_len);
    mlt__buf_lit(out, "\\\": ");
    if (c->sub == MLT__V_STR) {
      size_t len;
      const char *v = mlt__rec_value(c, &len, NULL);
      mlt__buf_lit(out, "\\\"");
      mlt__buf_put(out, v, len);
      mlt__buf_lit(out, "\\\"");
    } else {
      mlt__value_json(out, c);
    }
  }
  mlt__buf_lit(out, "}\"");
  return 1;
}

/* ", " "key": value */
static void put_attr_encoded(mlt__buf *out, mlt__buf *tmp, const char *key, size_t klen, const mlt__rec *r) {
  char *o;
  if (klen <= 16 && mlt__plain_short(key, klen) && (o = wr_begin(out, 32))) {
    *o++ = ',';
    *o++ = ' ';
    *o++ = '"';
    memcpy(o, key, klen);
    o += klen;
    WR_LIT(o, "\": ");
    wr_end(out, o);
  } else {
    mlt__buf_lit(out, ", ");
    mlt__json_str(out, key, klen);
    mlt__buf_lit(out, ": ");
  }
  put_value_encoded(out, tmp, r, NULL, -1);
}

/* |tape|: 0 or 1, the root's inputs or outputs (their tape is kept for the
 * previews), else -1. */
static void put_value_encoded(mlt__buf *out, mlt__buf *tmp, const mlt__rec *r, enc_range *rg, int tape) {
  if (rg) rg->len = 0;
  if (r->sub == MLT__V_STR && !(r->flags & MLT__RF_TRUNC)) {
    /* a string: the JSON string of its JSON string; text the escaper
     * copies as it is (ASCII or valid UTF-8) is quoted twice and copied */
    size_t len;
    const char *v = mlt__rec_value(r, &len, NULL);
    if (copied_as_is(v, len)) {
      mlt__buf_lit(out, "\"\\\"");
      mlt__buf_put(out, v, len);
      mlt__buf_lit(out, "\\\"\"");
      return;
    }
  }
  if ((r->sub == MLT__V_I64 || r->sub == MLT__V_F64 || r->sub == MLT__V_BOOL) && !(r->flags & MLT__RF_TRUNC)) {
    /* a number or boolean: its JSON text needs no escaping, the JSON
     * string of it is that text quoted */
    mlt__buf_putc(out, '"');
    mlt__value_json(out, r);
    mlt__buf_putc(out, '"');
    return;
  }
  if (r->sub == MLT__V_JSON && !(r->flags & MLT__RF_TRUNC)) {
    /* JSON text: escaped straight from the record.  The first time, one pass
     * both escapes and validates it (the verdict is kept in the record); if
     * it is not JSON after all, what was written is taken back. */
    size_t len;
    const char *v = mlt__rec_value(r, &len, NULL);
    trim_ws(&v, &len);
    if (!(r->flags & MLT__RF_CHECKED) && tape < 0 && delta_known_valid(r)) {
      /* a delta known valid from its reference: its reference's escaped
       * text around the window's */
      size_t mark = out->len;
      delta_str(out, r, v, len);
      if (rg) *rg = (enc_range){mark, out->len - mark, len};
      return;
    }
    if (!(r->flags & MLT__RF_CHECKED)) {
      mlt__rec *w = (mlt__rec *)r;
      size_t mark = out->len;
      int utf8_ok = 1;
      mlt__buf_putc(out, '"');
      w->flags |= MLT__RF_CHECKED;
      int ok = tape >= 0 ? mlt__json_escape_text_tape(out, v, len, &utf8_ok, &g_tape[tape])
                         : mlt__json_escape_text(out, v, len, &utf8_ok);
      if (ok) {
        if (tape >= 0) g_tape_rec[tape] = r;
        if (!utf8_ok) w->flags |= MLT__RF_BADUTF8;
        verdict_back(w);
        mlt__buf_putc(out, '"');
        if (rg) *rg = (enc_range){mark, out->len - mark, len};
        return;
      }
      out->len = mark;
      if (MLT_UNLIKELY(out->oom)) {
        w->flags &= (uint8_t)~MLT__RF_CHECKED; /* no room to say: no verdict */
      } else {
        w->flags |= MLT__RF_INVALID;
        count_invalid_json();
        verdict_back(w);
      }
    } else if (!(r->flags & MLT__RF_INVALID)) {
      size_t mark = out->len;
      mlt__json_str(out, v, len);
      if (rg) *rg = (enc_range){mark, out->len - mark, len};
      return;
    }
  }
  if (r->sub == MLT__V_FIELDS && !(r->flags & MLT__RF_TRUNC) && fields_encoded(out, r)) return;
  mlt__buf_reset(tmp);
  mlt__value_json(tmp, r);
  mlt__json_str(out, tmp->p ? tmp->p : "", tmp->len);
  if (tmp->oom) out->oom = 1; /* the value is cut short: the trace is not complete */
}

static void put_attr_text(mlt__buf *out, const char *key, const char *json_text, size_t n) {
  mlt__buf_putc(out, '"');
  mlt__buf_puts(out, key);
  mlt__buf_lit(out, "\": ");
  mlt__json_str(out, json_text, n);
}

int mlt__reserved_attr_key(const mlt__rec *r) {
  /* all begin "mlflow." and are 15..21 bytes long */
  if (r->key_len < 15 || r->key_len > 21 || memcmp(mlt__rec_key(r), "mlflow.", 7) != 0) return 0;
  static const struct {
    const char *k;
    size_t n;
  } keys[] = {{"mlflow.traceRequestId", 21},
              {"mlflow.spanType", 15},
              {"mlflow.spanInputs", 17},
              {"mlflow.spanOutputs", 18},
              {"mlflow.spanLogLevel", 19}};
  for (size_t i = 0; i < MLT_ARRAY_LEN(keys); i++)
    if (key_eq(r, keys[i].k, keys[i].n)) return 1;
  return 0;
}

/* Event attributes are raw values (not JSON-encoded again).  |tmp|: scratch
 * (its contents are lost). */
static void put_event_attr(mlt__buf *out, mlt__buf *tmp, const mlt__rec *c) {
  mlt__json_str(out, mlt__rec_key(c), c->key_len);
  mlt__buf_lit(out, ": ");
  if (c->sub == MLT__V_JSON && !(c->flags & MLT__RF_TRUNC)) {
    /* A JSON-typed event attribute is carried as its JSON text: the JSON
     * string of mlt__value_json(), as put_value_encoded() writes it. */
    put_value_encoded(out, tmp, c, NULL, -1);
  } else {
    mlt__value_json(out, c);
  }
}

int mlt__span_log_level(const char *type, size_t n, int error) {
  if (error) return 40;
  static const char *const info[] = {"LLM", "CHAT_MODEL", "TOOL", "RETRIEVER", "AGENT", "EMBEDDING"};
  for (size_t i = 0; i < MLT_ARRAY_LEN(info); i++)
    if (strlen(info[i]) == n && !memcmp(info[i], type, n)) return 20;
  return 10;
}

/* What every span of a trace shares, formatted once per trace; and where
 * the root's inputs and outputs went (the trace metadata repeats them). */
typedef struct span_ctx {
  enc_range root_in, root_out;
  char head[64]; /* {"trace_id": "<base64>", "span_id": */
  size_t head_len;
  char rid[96]; /* "mlflow.traceRequestId": "\"tr-...\"" */
  size_t rid_len;
  const mlt__rec **usage; /* each span's mlflow.chat.tokenUsage (or NULL) */
  root_seen root;
  int root_chunks; /* g_root_chunks holds the root's default output */
} span_ctx;

static void span_ctx_init(span_ctx *c, const mlt__prepared *p) {
  pthread_once(&g_types_once, types_init); /* g_b64pair: before any span is digested */
  c->root_in.len = c->root_out.len = 0;
  c->root_chunks = 0;
  memset(c->head, 0, sizeof c->head); /* (json_span copies them whole) */
  memset(c->rid, 0, sizeof c->rid);
  uint8_t idb[16];
  mlt__be64(p->t->id_hi, idb);
  mlt__be64(p->t->id_lo, idb + 8);
  static const char h1[] = "{\"trace_id\": \"", h2[] = "\", \"span_id\": ";
  char *o = c->head;
  memcpy(o, h1, sizeof h1 - 1);
  o += sizeof h1 - 1;
  for (int k = 0; k < 15; k += 3) { /* 16 bytes: 5 groups of 3, then 1 */
    uint32_t v = (uint32_t)idb[k] << 16 | (uint32_t)idb[k + 1] << 8 | idb[k + 2];
    memcpy(o, g_b64pair[v >> 12], 2);
    memcpy(o + 2, g_b64pair[v & 0xFFF], 2);
    o += 4;
  }
  memcpy(o, g_b64pair[(uint32_t)idb[15] << 4], 2);
  o[2] = o[3] = '=';
  o += 4;
  memcpy(o, h2, sizeof h2 - 1);
  o += sizeof h2 - 1;
  c->head_len = (size_t)(o - c->head);
  static const char r1[] = "{\"mlflow.traceRequestId\": \"\\\"", r2[] = "\\\"\"";
  o = c->rid;
  memcpy(o, r1, sizeof r1 - 1);
  o += sizeof r1 - 1;
  memcpy(o, p->trace_id, MLT_TRACE_ID_SIZE - 1);
  o += MLT_TRACE_ID_SIZE - 1;
  memcpy(o, r2, sizeof r2 - 1);
  o += sizeof r2 - 1;
  c->rid_len = (size_t)(o - c->rid);
  _Static_assert(sizeof c->rid >= sizeof r1 + MLT_TRACE_ID_SIZE + sizeof r2, "rid room");
}

/* The spanType attribute and spanLogLevel of the MLflow span types (the
 * type names need no escaping). */
int mlt__digest_level(const mlt__digest *d) {
  if (d->level >= 0) return d->level;
  return d->type_custom ? mlt__span_log_level(d->type, d->type_len, 0) : d->type_level;
}

/* A link's attributes (FIELD children of |r|), raw as Span.to_dict() has
 * them, or null. */
static void json_links(mlt__buf *out, mlt__buf *tmp, const mlt__digest *d) {
  mlt__buf_putc(out, '[');
  for (size_t i = 0; i < d->n_links; i++) {
    const mlt__rec *r = d->links[i];
    uint64_t v[4];
    memcpy(v, mlt__rec_val(r), sizeof v);
    char tid[MLT_TRACE_ID_SIZE], sid[MLT_SPAN_ID_SIZE];
    mlt__format_ids(v[0], v[1], v[2], tid, sid);
    if (i) mlt__buf_lit(out, ", ");
    mlt__buf_lit(out, "{\"trace_id\": \"");
    mlt__buf_put(out, tid, MLT_TRACE_ID_SIZE - 1);
    mlt__buf_lit(out, "\", \"span_id\": \"");
    mlt__buf_put(out, sid, MLT_SPAN_ID_SIZE - 1);
    mlt__buf_lit(out, "\", \"attributes\": ");
    if (!v[3]) {
      mlt__buf_lit(out, "null}");
      continue;
    }
    mlt__buf_putc(out, '{');
    const mlt__rec *c = mlt__rec_next(r);
    for (uint64_t k = 0; k < v[3]; k++, c = mlt__rec_next(c)) {
      if (k) mlt__buf_lit(out, ", ");
      put_event_attr(out, tmp, c);
    }
    mlt__buf_lit(out, "}}");
  }
  mlt__buf_putc(out, ']');
}

/* One span in Span.to_dict() form. */
static void json_span(mlt__buf *out, const mlt__prepared *p, mlt__score *s, span_ctx *sc) {
  mlt__digest *d = mlt__scratch_digest();
  mlt__buf *tmp = mlt__scratch_buf(2);
  mlt__digest_span(d, s);
  /* the fixed parts: one reserve each (sc->head: < 64 bytes) */
  char *o = wr_begin(out, 160);
  if (!o) return;
  memcpy(o, sc->head, sizeof sc->head);
  o += sc->head_len;
  o = wr_b64_id8(o, s->span_id);
  WR_LIT(o, ", \"parent_span_id\": ");
  if (s->parent_id)
    o = wr_b64_id8(o, s->parent_id);
  else
    WR_LIT(o, "null");
  WR_LIT(o, ", \"name\": ");
  wr_end(out, o);
  mlt__json_str_inline(out, d->name, d->name_len);
  if (!(o = wr_begin(out, 128))) return;
  WR_LIT(o, ", \"start_time_unix_nano\": ");
  o = wr_ts(o, s->start_ns);
  WR_LIT(o, ", \"end_time_unix_nano\": ");
  o = wr_ts(o, MLT_UNLIKELY(s->end_ns < s->start_ns) ? s->start_ns : s->end_ns); /* never before the start */
  WR_LIT(o, ", \"events\": [");
  wr_end(out, o);
  int first = 1;
  for (size_t e = 0; e < d->n_events; e++) {
    const mlt__rec *r = d->events[e];
    int64_t ts;
    uint64_t n;
    memcpy(&ts, mlt__rec_val(r), 8);
    memcpy(&n, mlt__rec_val(r) + 8, 8);
    if (!first) mlt__buf_lit(out, ", ");
    first = 0;
    mlt__buf_lit(out, "{\"name\": ");
    mlt__json_str(out, mlt__rec_key(r), r->key_len);
    mlt__buf_lit(out, ", \"time_unix_nano\": ");
    mlt__buf_i64(out, ts);
    mlt__buf_lit(out, ", \"attributes\": {");
    const mlt__rec *c = mlt__rec_next(r);
    for (uint64_t k = 0; k < n; k++, c = mlt__rec_next(c)) {
      if (k) mlt__buf_lit(out, ", ");
      put_event_attr(out, tmp, c);
    }
    mlt__buf_lit(out, "}}");
  }
  /* Stream chunks: one event each (up to the cap), as MLflow records
   * generator output. */
  size_t chunk_events = mlt__chunk_events(d->n_chunks);
  for (size_t i = 0; i < chunk_events; i++) {
    const mlt__rec *r = d->chunks[i];
    int64_t ts;
    memcpy(&ts, mlt__rec_key(r), 8);
    /* the event's head in one reserve (< 2 + 29 + 24 + 21 + 25 + 39 bytes) */
    if (!(o = wr_begin(out, 160))) return;
    if (!first) WR_LIT(o, ", ");
    first = 0;
    WR_LIT(o, "{\"name\": \"mlflow.chunk.item.");
    o = mlt__wr_u64(o, i);
    WR_LIT(o, "\", \"time_unix_nano\": ");
    if (MLT_UNLIKELY(ts < 0)) {
      *o++ = '-';
      o = mlt__wr_u64(o, (uint64_t)0 - (uint64_t)ts);
    } else {
      o = mlt__wr_u64(o, (uint64_t)ts);
    }
    WR_LIT(o, ", \"attributes\": {\"mlflow.chunk.value\": ");
    wr_end(out, o);
    /* the JSON string of the chunk's JSON text: JSON text in one pass
     * (escaped and validated at once, the verdict kept in the record) */
    put_value_encoded(out, tmp, r, NULL, -1);
    mlt__buf_lit(out, "}}");
  }
  int status = s->status == MLT_STATUS_UNSET ? MLT_STATUS_OK : s->status;
  if (MLT_UNLIKELY(status == MLT_STATUS_ERROR)) {
    mlt__buf_lit(out, "], \"status\": {\"code\": \"STATUS_CODE_ERROR\", \"message\": ");
    if (d->status_msg) {
      size_t ml;
      const char *m = mlt__rec_value(d->status_msg, &ml, NULL);
      mlt__json_str(out, m, ml);
    } else {
      mlt__buf_lit(out, "\"\"");
    }
    if (!(o = wr_begin(out, 320))) return;
    WR_LIT(o, "}, \"attributes\": ");
  } else {
    if (!(o = wr_begin(out, 320))) return;
    WR_LIT(o, "], \"status\": {\"code\": \"STATUS_CODE_OK\", \"message\": \"\"}, \"attributes\": ");
  }
  memcpy(o, sc->rid, sizeof sc->rid);
  o += sc->rid_len;
  if (!d->type_custom) {
    /* a type name from the table (< 32 bytes): nothing to escape */
    WR_LIT(o, ", \"mlflow.spanType\": \"\\\"");
    memcpy(o, d->type, 32);
    o += d->type_len;
    WR_LIT(o, "\\\"\"");
    wr_end(out, o);
  } else {
    wr_end(out, o);
    mlt__buf_lit(out, ", ");
    mlt__buf_reset(tmp);
    mlt__json_str(tmp, d->type, d->type_len);
    put_attr_text(out, "mlflow.spanType", tmp->p, tmp->len);
  }
  int root = s == p->spans[p->root >= 0 ? p->root : 0] && p->root >= 0;
  if (d->inputs) {
    if (!(o = wr_begin(out, 32))) return;
    WR_LIT(o, ", \"mlflow.spanInputs\": ");
    wr_end(out, o);
    put_value_encoded(out, tmp, d->inputs, root ? &sc->root_in : NULL, root ? 0 : -1);
  }
  if (d->outputs) {
    if (!(o = wr_begin(out, 32))) return;
    WR_LIT(o, ", \"mlflow.spanOutputs\": ");
    wr_end(out, o);
    put_value_encoded(out, tmp, d->outputs, root ? &sc->root_out : NULL, root ? 1 : -1);
  } else if (d->n_chunks) {
    mlt__buf_reset(tmp);
    mlt__chunks_output_json(tmp, d);
    mlt__buf_lit(out, ", \"mlflow.spanOutputs\": ");
    size_t mark = out->len;
    mlt__json_str(out, tmp->p ? tmp->p : "", tmp->len);
    if (tmp->oom) out->oom = 1; /* cut short: the trace is not complete */
    if (root) {
      /* the trace's outputs and response preview are this text */
      sc->root_out = (enc_range){mark, out->len - mark, tmp->len};
      if (g_root_chunks.cap > (1u << 20)) mlt__buf_free(&g_root_chunks); /* not kept at a long stream's size */
      mlt__buf_reset(&g_root_chunks);
      mlt__buf_put(&g_root_chunks, tmp->p ? tmp->p : "", tmp->len);
      sc->root_chunks = !tmp->oom && !g_root_chunks.oom;
    }
  }
  for (size_t a = 0; a < d->n_attrs; a++) {
    if (mlt__reserved_attr_key(d->attrs[a])) continue;
    put_attr_encoded(out, tmp, mlt__rec_key(d->attrs[a]), d->attrs[a]->key_len, d->attrs[a]);
  }
  if (d->n_chunks) {
    /* seconds with 6 decimals (as "%.6f" of the seconds; no printf) */
    if (!(o = wr_begin(out, 96))) return;
    WR_LIT(o, ", \"gen_ai.response.time_to_first_chunk\": \"");
    o = wr_secs6(o, d->first_chunk_ns - s->start_ns);
    *o++ = '"';
    wr_end(out, o);
  }
  uint32_t dropped = s->n_events_dropped;
  if (dropped) {
    mlt__buf_lit(out, ", \"mltrace.droppedEvents\": \"");
    mlt__buf_u64(out, dropped);
    mlt__buf_putc(out, '"');
  }
  if (MLT_UNLIKELY(s->n_links_dropped)) {
    mlt__buf_lit(out, ", \"mltrace.droppedLinks\": \"");
    mlt__buf_u64(out, s->n_links_dropped);
    mlt__buf_putc(out, '"');
  }
  int lvl = mlt__digest_level(d); /* 0..50 */
  if (!(o = wr_begin(out, 96))) return;
  WR_LIT(o, ", \"mlflow.spanLogLevel\": \"");
  if (lvl >= 10 && lvl < 100) { /* (always) */
    memcpy(o, mlt__digits2 + 2 * lvl, 2);
    o += 2;
  } else {
    o = mlt__wr_u64(o, (uint64_t)lvl);
  }
  if (MLT_UNLIKELY(d->n_links)) {
    WR_LIT(o, "\"}, \"links\": ");
    wr_end(out, o);
    json_links(out, tmp, d);
    mlt__buf_putc(out, '}');
  } else {
    WR_LIT(o, "\"}, \"links\": []}");
    wr_end(out, o);
  }
}

/* "key": "value" with MLflow's limits (hard cut, no ellipsis). */
static void put_kv_limited(mlt__buf *out, const char *k, size_t kn, const char *v, size_t vn, size_t vmax) {
  mlt__buf tmp = {0};
  put_limited(&tmp, k, kn, 250, 0);
  mlt__json_str(out, tmp.p ? tmp.p : "", tmp.len);
  mlt__buf_lit(out, ": ");
  mlt__buf_reset(&tmp);
  put_limited(&tmp, v, vn, vmax, 0);
  mlt__json_str(out, tmp.p ? tmp.p : "", tmp.len);
  mlt__buf_free(&tmp);
}

static int seen_key(mlt__tinfo *from, mlt__tinfo *upto, int kind, const char *key) {
  for (mlt__tinfo *i = from; i && i != upto; i = i->next)
    if (i->kind == kind && i->key && !strcmp(i->key, key)) return 1;
  return 0;
}

static void put_root_attr_raw(mlt__buf *out, const char *key, const mlt__prepared *p, int is_inputs,
                              const mlt__buf *spans, const enc_range *rg) {
  if (p->root < 0) return;
  if (spans && rg && rg->len && rg->text_len <= 250) {
    /* the JSON text fits MLflow's 250 characters: what the root span's
     * attribute holds, already escaped */
    mlt__buf_lit(out, ", \"");
    mlt__buf_puts(out, key); /* (ours: nothing to escape) */
    mlt__buf_lit(out, "\": ");
    mlt__buf_put(out, spans->p + rg->off, rg->len);
    return;
  }
  mlt__digest *d = mlt__scratch_digest();
  mlt__digest_span(d, p->spans[p->root]);
  const mlt__rec *r = is_inputs ? d->inputs : d->outputs;
  mlt__buf tmp = {0};
  if (r)
    mlt__value_json(&tmp, r);
  else if (!is_inputs && d->n_chunks)
    mlt__chunks_output_json(&tmp, d);
  mlt__buf_lit(out, ", ");
  mlt__buf tmp2 = {0};
  put_limited(&tmp2, tmp.p ? tmp.p : "", tmp.len, 250, 1);
  mlt__json_str(out, key, strlen(key));
  mlt__buf_lit(out, ": ");
  mlt__json_str(out, tmp2.p ? tmp2.p : "", tmp2.len);
  mlt__buf_free(&tmp);
  mlt__buf_free(&tmp2);
}

/* MLflow's sizeStats of a trace's span JSONs. */
typedef struct size_stats {
  int have;
  size_t total, max, p25, p50, p75;
  uint32_t n;
} size_stats;

/* The sizeStats JSON text as a JSON string (escaped as it is written). */
static void put_size_stats(mlt__buf *out, const size_stats *st, size_t size_bytes) {
  char *o = wr_begin(out, 384);
  if (!o) return;
  WR_LIT(o, ", \"mlflow.trace.sizeStats\": \"{\\\"total_size_bytes\\\": ");
  o = mlt__wr_u64(o, st->total);
  WR_LIT(o, ", \\\"num_spans\\\": ");
  o = mlt__wr_u64(o, st->n);
  WR_LIT(o, ", \\\"max\\\": ");
  o = mlt__wr_u64(o, st->max);
  WR_LIT(o, ", \\\"p25\\\": ");
  o = mlt__wr_u64(o, st->p25);
  WR_LIT(o, ", \\\"p50\\\": ");
  o = mlt__wr_u64(o, st->p50);
  WR_LIT(o, ", \\\"p75\\\": ");
  o = mlt__wr_u64(o, st->p75);
  WR_LIT(o, "}\", \"mlflow.trace.sizeBytes\": \"");
  o = mlt__wr_u64(o, size_bytes);
  *o++ = '"';
  wr_end(out, o);
}

static void json_info_body(mlt__buf *out, const mlt__prepared *p, const mlt__trace_info *ti, int for_rest,
                           const size_stats *stats, size_t size_bytes, const mlt__buf *spans, const span_ctx *sc) {
  if (!ti->late_ready) trace_info_compute((mlt__trace_info *)ti, p, sc ? &sc->root : NULL);
  if (!for_rest) mlt__buf_putc(out, '{');
  mlt__buf_lit(out, "\"trace_id\": \"");
  mlt__buf_put(out, ti->trace_id, MLT_TRACE_ID_SIZE - 1);
  mlt__buf_lit(out, "\"");
  if (ti->client_request_id) {
    mlt__buf_lit(out, ", \"client_request_id\": ");
    mlt__buf tmp = {0};
    put_limited(&tmp, ti->client_request_id, strlen(ti->client_request_id), 50, 0);
    mlt__json_str(out, tmp.p ? tmp.p : "", tmp.len);
    mlt__buf_free(&tmp);
  }
  if (!for_rest) {
    mlt__buf_lit(out, ", \"trace_location\": {\"type\": \"MLFLOW_EXPERIMENT\", \"mlflow_experiment\": {\"experiment_id\": ");
    const char *exp = p->experiment_id ? p->experiment_id : "0";
    mlt__json_str(out, exp, strlen(exp));
    mlt__buf_lit(out, "}}");
  }
  char *o = wr_begin(out, 256);
  if (!o) return;
  WR_LIT(o, ", \"request_time\": ");
  o = wr_rfc3339_ms(o, ti->start_ns);
  if (ti->state_error)
    WR_LIT(o, ", \"state\": \"ERROR\"");
  else
    WR_LIT(o, ", \"state\": \"OK\"");
  /* metadata */
  WR_LIT(o, ", \"trace_metadata\": {\"mlflow.trace_schema.version\": \"3\", \"mlflow.source.type\": \"LOCAL\"");
  wr_end(out, o);
  /* ", "mlflow.source.name": <program>, "mlflow.user": <user>", escaped once */
  if (!g_src_user.len || g_src_user.oom) {
    mlt__buf_reset(&g_src_user);
    mlt__buf_lit(&g_src_user, ", \"mlflow.source.name\": ");
    const char *prog = mlt__program_name();
    mlt__json_str(&g_src_user, prog, strlen(prog));
    mlt__buf_lit(&g_src_user, ", \"mlflow.user\": ");
    const char *user = user_name();
    mlt__json_str(&g_src_user, user, strlen(user));
  }
  mlt__buf_put(out, g_src_user.p, g_src_user.len);
  if (p->root >= 0) {
    put_root_attr_raw(out, "mlflow.traceInputs", p, 1, spans, sc ? &sc->root_in : NULL);
    put_root_attr_raw(out, "mlflow.traceOutputs", p, 0, spans, sc ? &sc->root_out : NULL);
  }
  if (p->t->flags & MLT__TF_CONTINUATION) mlt__buf_lit(out, ", \"mltrace.continuation\": \"true\"");
  if (p->t->flags & MLT__TF_REMOTE) mlt__buf_lit(out, ", \"mltrace.remoteParent\": \"true\"");
  if (!ti->usage_ready) trace_usage_compute((mlt__trace_info *)ti, p, sc ? sc->usage : NULL);
  if (ti->token_usage.oom) out->oom = 1; /* the sums could not be made: not sent as complete */
  if (ti->token_usage.len) {
    mlt__buf_lit(out, ", \"mlflow.trace.tokenUsage\": ");
    mlt__json_str(out, ti->token_usage.p, ti->token_usage.len);
  }
  if (ti->session) {
    mlt__buf_lit(out, ", ");
    put_kv_limited(out, "mlflow.trace.session", 20, ti->session, strlen(ti->session), 250);
  }
  if (ti->user) {
    mlt__buf_lit(out, ", ");
    put_kv_limited(out, "mlflow.trace.user", 17, ti->user, strlen(ti->user), 250);
  }
  if (stats) put_size_stats(out, stats, size_bytes);
  for (mlt__tinfo *i = ti->info; i; i = i->next) {
    if (i->kind != MLT__TI_META || seen_key(ti->info, i, MLT__TI_META, i->key)) continue;
    if (!strcmp(i->key, "mlflow.trace_schema.version")) continue;
    mlt__buf_lit(out, ", ");
    put_kv_limited(out, i->key, strlen(i->key), i->value, strlen(i->value), 250);
  }
  mlt__buf_lit(out, "}, \"tags\": {\"mlflow.traceName\": ");
  if (!ti->trace_name) {
    mlt__buf_lit(out, "\"continuation\"");
  } else if (ti->trace_name_len <= 4096) { /* (bytes: no more characters) */
    mlt__json_str_inline(out, ti->trace_name, ti->trace_name_len);
  } else {
    mlt__buf tmp = {0};
    put_limited(&tmp, ti->trace_name, ti->trace_name_len, 4096, 0);
    mlt__json_str(out, tmp.p ? tmp.p : "", tmp.len);
    mlt__buf_free(&tmp);
  }
  for (mlt__tinfo *i = ti->info; i; i = i->next) {
    if (i->kind != MLT__TI_TAG || seen_key(ti->info, i, MLT__TI_TAG, i->key)) continue;
    /* The server owns these. */
    if (!strcmp(i->key, "mlflow.artifactLocation") || !strcmp(i->key, "mlflow.trace.spansLocation") ||
        !strcmp(i->key, "mlflow.traceName"))
      continue;
    mlt__buf_lit(out, ", ");
    put_kv_limited(out, i->key, strlen(i->key), i->value, strlen(i->value), 4096);
  }
  mlt__buf_putc(out, '}');
  if (ti->has_request_preview) {
    mlt__buf_lit(out, ", \"request_preview\": \"");
    mlt__buf_put(out, ti->request_preview.p ? ti->request_preview.p : "", ti->request_preview.len);
    mlt__buf_putc(out, '"');
  }
  if (ti->has_response_preview) {
    mlt__buf_lit(out, ", \"response_preview\": \"");
    mlt__buf_put(out, ti->response_preview.p ? ti->response_preview.p : "", ti->response_preview.len);
    mlt__buf_putc(out, '"');
  }
  assessments_json(out, ti->info);
  int64_t dur_ms = ti->end_ns > ti->start_ns ? (ti->end_ns - ti->start_ns) / 1000000 : 0;
  if (for_rest) {
    char d[48];
    int n = snprintf(d, sizeof d, ", \"execution_duration\": \"%lld.%03llds\"", (long long)(dur_ms / 1000),
                     (long long)(dur_ms % 1000));
    mlt__buf_put(out, d, (size_t)n);
  } else {
    mlt__buf_lit(out, ", \"execution_duration_ms\": ");
    mlt__buf_i64(out, dur_ms);
  }
  mlt__buf_putc(out, '}');
}

static size_t spans_and_stats(mlt__buf *spans, const mlt__prepared *p, const mlt__trace_info *ti,
                              size_stats *stats, span_ctx *sc);

void mlt__json_trace_info(mlt__buf *out, mlt__buf *data, const mlt__prepared *p, const mlt__trace_info *ti) {
  /* sizeStats.num_spans doubles as the server's completeness check (a trace
   * with fewer stored spans is hidden from search until they arrive): it is
   * exact here.  The MLflow exporter sends this before the spans (after them
   * for a process's first batch, its probe of the server). */
  size_stats stats;
  mlt__buf *spans = mlt__scratch_buf(1);
  span_ctx sc;
  mlt__buf_reset(spans);
  size_t total = spans_and_stats(spans, p, ti, &stats, &sc);
  json_info_body(out, p, ti, 1, p->root >= 0 && stats.have ? &stats : NULL, total, spans, &sc);
  if (data) {
    mlt__buf_lit(data, "{\"spans\": [");
    mlt__buf_put(data, spans->p ? spans->p : "", spans->len);
    mlt__buf_lit(data, "]}");
  }
  if (spans->oom) { /* spans left out: the trace must not go as complete */
    out->oom = 1;
    if (data) data->oom = 1;
  }
}

static size_t percentile(const size_t *sorted, size_t n, double q) {
  if (!n) return 0;
  double idx = q * (double)(n - 1);
  size_t lo = (size_t)idx;
  size_t hi = lo + 1 < n ? lo + 1 : lo;
  double f = idx - (double)lo;
  return (size_t)((double)sorted[lo] + f * ((double)sorted[hi] - (double)sorted[lo]));
}

/* Serialize the spans of |p| as the "spans" array contents into |spans|
 * and compute MLflow's sizeStats over them (MLflow's formula: sizes of the
 * span JSONs, plus the separators).  Returns that total. */
static size_t spans_and_stats(mlt__buf *spans, const mlt__prepared *p, const mlt__trace_info *ti,
                              size_stats *stats, span_ctx *sc) {
  (void)ti;
  /* (appended to what |spans| holds: offsets in sc are from spans->p) */
  span_ctx_init(sc, p);
  size_t sizes_stack[64];
  size_t *sizes = p->n <= 64 ? sizes_stack : malloc(p->n * sizeof *sizes);
  size_t total = 0, max = 0;
  if (p->n > g_usage_cap) {
    size_t cap = MLT_MAX(p->n, 2 * g_usage_cap);
    const mlt__rec **nu = realloc((void *)g_usage, cap * sizeof *nu);
    if (nu) g_usage = nu, g_usage_cap = cap;
  }
  sc->usage = p->n <= g_usage_cap ? g_usage : NULL;
  g_tape_rec[0] = g_tape_rec[1] = NULL; /* (tapes of this trace only) */
  sc->root.have = 0;
  for (uint32_t i = 0; i < p->n; i++) {
    if (i) mlt__buf_lit(spans, ", ");
    size_t start = spans->len;
    json_span(spans, p, p->spans[i], sc);
    const mlt__digest *d = mlt__scratch_digest();
    if (sc->usage) sc->usage[i] = digest_usage(d);
    if ((int)i == p->root)
      sc->root = (root_seen){1, d->name, d->name_len, d->inputs, d->outputs, d->n_chunks,
                             sc->root_chunks ? &g_root_chunks : NULL};
    size_t sz = spans->len - start;
    if (sizes) sizes[i] = sz;
    total += sz;
    max = MLT_MAX(max, sz);
  }
  stats->have = 0;
  if (p->n) total += (p->n - 1) * 2;
  if (sizes && p->n) {
    /* insertion sort: traces are small, and qsort's calls cost more */
    for (uint32_t i = 1; i < p->n; i++) {
      size_t x = sizes[i];
      uint32_t j = i;
      for (; j > 0 && sizes[j - 1] > x; j--) sizes[j] = sizes[j - 1];
      sizes[j] = x;
    }
    stats->have = 1;
    stats->total = total;
    stats->n = p->n;
    stats->max = max;
    stats->p25 = percentile(sizes, p->n, 0.25);
    stats->p50 = percentile(sizes, p->n, 0.5);
    stats->p75 = percentile(sizes, p->n, 0.75);
  }
  if (sizes != sizes_stack) free(sizes);
  return total;
}

size_t mlt__json_trace_split(mlt__buf *out, mlt__buf *spans, const mlt__prepared *p, const mlt__trace_info *ti) {
  /* Spans first, so that sizeStats is exact for our bytes. */
  size_stats stats;
  span_ctx sc;
  size_t total = spans_and_stats(spans, p, ti, &stats, &sc);
  mlt__buf_lit(out, "{\"info\": ");
  json_info_body(out, p, ti, 0, p->root >= 0 && stats.have ? &stats : NULL, total, spans, &sc);
  mlt__buf_lit(out, ", \"data\": {\"spans\": [");
  size_t at = out->len;
  mlt__buf_lit(out, "]}}\n");
  return at;
}

void mlt__json_trace(mlt__buf *out, const mlt__prepared *p, const mlt__trace_info *ti) {
  mlt__buf *spans = mlt__scratch_buf(1);
  mlt__buf_reset(spans);
  size_t at = mlt__json_trace_split(out, spans, p, ti);
  /* the spans go before the tail (4 bytes) */
  if (spans->oom) out->oom = 1;
  if (mlt__buf_reserve(out, spans->len)) return;
  memmove(out->p + at + spans->len, out->p + at, out->len - at);
  memcpy(out->p + at, spans->p ? spans->p : "", spans->len);
  out->len += spans->len;
}
