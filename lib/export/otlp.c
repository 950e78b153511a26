/* lib/export/otlp.c: OTLP/HTTP protobuf encoding of finished traces
 * (opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest).
 *
 * Why our own encoder rather than protobuf-c: we need ten message types and
 * only the writer side.  The writer below is ~150 lines, allocation-free
 * beyond the output buffer, writes straight from the span record logs (no
 * intermediate message structs to build and free per span, which protobuf-c
 * would require).  What it writes is checked by decoding: the real MLflow
 * server parses it with opentelemetry-proto in tests/mlflow/test_server.py,
 * which reads every field back.
 *
 * Attribute values.  Typed values go as native AnyValues (string unquoted,
 * int, double, bool).  JSON values (inputs, outputs, JSON attributes) that
 * are an object, an array or a string go as a string_value holding their
 * JSON text, neither parsed nor rebuilt as kvlist/array values; a JSON
 * number, true, false or null goes natively.  Why this is exact with
 * MLflow 3.17 (mlflow/entities/span.py Span.from_otel_proto and
 * mlflow/tracing/otel/translation sanitize_attributes, checked against a
 * real server and MlflowClient in tests/mlflow/test_server.py section 3b):
 * the server JSON-dumps every decoded attribute value once more, then
 * removes exactly one layer again when the dumped value loads to a str
 * which itself loads to a str, dict or list.  So a string_value holding
 * JSON text T of an object, array or string is stored as T, and reads back
 * as the value T means -- also a JSON string whose contents look like JSON
 * ("[1,2]" stays a string; as a native string it came back a list).  The
 * unwrap excludes numbers and booleans ("42" would stay the string "42"),
 * hence those go natively.  Previews the server computes are then our JSON
 * text, as our other exporters write them, and mlflow.chat.tokenUsage sums
 * into the trace's token usage as before.  Event attributes are not
 * re-dumped by the server; JSON-typed ones go as their text as before.  Any
 * other OTLP backend sees JSON values as strings of JSON text, which is how
 * MLflow's own OpenTelemetry spans carry every attribute (LiveSpan stores
 * json.dumps(value)) and what OpenTelemetry's GenAI conventions do for
 * structured content.  Invalid JSON text goes as the same string, so the
 * text is not validated here (the file store and previews validate it).
 */
#include "export/otlp-internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- protobuf writer ------------------------------------------------- */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Varint bytes of |v| into out[10]; returns their count. */
static inline int varint_bytes(uint64_t v, char *out) {
  int n = 0;
  while (v > 0x7F) {
    out[n++] = (char)((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out[n++] = (char)v;
  return n;
}

/* Room for |n| more bytes (and a varint or two) at the end of b. */
static inline int pb_room(mlt__buf *b, size_t n) {
  return MLT_LIKELY(b->cap - b->len >= n + 24) || !mlt__buf_reserve(b, n + 24);
}

static inline void pb_varint(mlt__buf *b, uint64_t v) {
  if (!pb_room(b, 10)) return;
  b->len += (size_t)varint_bytes(v, b->p + b->len);
}

/* Fields below 16 with wire types below 8: the tag is one byte. */
static inline void pb_tag(mlt__buf *b, unsigned field, unsigned wt) { pb_varint(b, ((uint64_t)field << 3) | wt); }

static inline void pb_fixed64(mlt__buf *b, unsigned field, uint64_t v) {
  if (!pb_room(b, 9)) return;
  char *o = b->p + b->len;
  *o++ = (char)((field << 3) | WT_I64); /* fields below 16 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(o, &v, 8);
#else
  for (int i = 0; i < 8; i++) o[i] = (char)(v >> (8 * i));
#endif
  b->len += 9;
}

/* Bytes of the varint of |v|. */
static inline size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v > 0x7F) v >>= 7, n++;
  return n;
}

/* The tag and length of a length-delimited field at o; returns the end. */
static inline char *pb_hdr(char *o, unsigned field, size_t n) {
  o += varint_bytes(((uint64_t)field << 3) | WT_LEN, o);
  return o + varint_bytes(n, o);
}

static inline void pb_bytes(mlt__buf *b, unsigned field, const void *p, size_t n) {
  if (!pb_room(b, n)) return;
  char *o = b->p + b->len;
  o += varint_bytes(((uint64_t)field << 3) | WT_LEN, o);
  o += varint_bytes(n, o);
  memcpy(o, p, n);
  b->len = (size_t)(o + n - b->p);
}

static inline void pb_uint(mlt__buf *b, unsigned field, uint64_t v) {
  if (!pb_room(b, 0)) return;
  char *o = b->p + b->len;
  o += varint_bytes(((uint64_t)field << 3) | WT_VARINT, o);
  o += varint_bytes(v, o);
  b->len = (size_t)(o - b->p);
}

/* 1 if s[0..n) is all ASCII. */
static inline int all_ascii(const char *s, size_t n) {
  uint64_t a, c;
  if (n >= 8 && n <= 16) { /* two overlapping words */
    memcpy(&a, s, 8);
    memcpy(&c, s + n - 8, 8);
    return !((a | c) & UINT64_C(0x8080808080808080));
  }
  if (n < 8) {
    if (n >= 4) {
      uint32_t x, y;
      memcpy(&x, s, 4);
      memcpy(&y, s + n - 4, 4);
      return !((x | y) & 0x80808080u);
    }
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
  }
#ifdef __SSE2__
  /* 32 bytes a step, the last 16 overlapping */
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m128i x = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(s + i)),
                             _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16)));
    if (_mm_movemask_epi8(x)) return 0;
  }
  if (i + 16 <= n && _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)(s + i)))) return 0;
  return !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)(s + n - 16)));
#else
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    memcpy(&a, s + i, 8);
    memcpy(&c, s + i + 8, 8);
    if ((a | c) & UINT64_C(0x8080808080808080)) return 0;
  }
  memcpy(&a, s + n - 16, 8);
  memcpy(&c, s + n - 8, 8);
  return !((a | c) & UINT64_C(0x8080808080808080));
#endif
}

/* Make s[0..n) valid UTF-8 (protobuf strings must be): invalid bytes
 * replaced by U+FFFD in |fix|, then *s, *n point there. */
static inline void utf8_clean(const char **s, size_t *n, mlt__buf *fix) {
  if (MLT_LIKELY(all_ascii(*s, *n))) return;
  const char *p = *s;
  for (size_t i = 0; i < *n;) {
    size_t l = (unsigned char)p[i] < 0x80 ? 1 : mlt__utf8_seq((const unsigned char *)p + i, *n - i);
    if (!l) {
      mlt__buf_reset(fix);
      mlt__utf8_copy(fix, p, *n);
      *s = fix->p ? fix->p : "";
      *n = fix->len;
      return;
    }
    i += l;
  }
}

static mlt__buf g_fix, g_fix_key; /* export thread: UTF-8 repairs */

/* A string field; invalid UTF-8 replaced (protobuf strings must be UTF-8). */
static void pb_string(mlt__buf *b, unsigned field, const char *s, size_t n) {
  utf8_clean(&s, &n, &g_fix);
  pb_bytes(b, field, s, n);
}

/* KeyValue{key, AnyValue{string_value}} written with its lengths computed
 * first: no length placeholder to fix up, no move of the value. */
static void kv_string(mlt__buf *b, unsigned field, const char *key, size_t klen, const char *val, size_t vlen) {
  utf8_clean(&key, &klen, &g_fix_key);
  utf8_clean(&val, &vlen, &g_fix);
  size_t any = 1 + varint_len(vlen) + vlen;
  size_t body = 1 + varint_len(klen) + klen + 1 + varint_len(any) + any;
  if (!pb_room(b, body)) return;
  char *o = pb_hdr(b->p + b->len, field, body);
  o = pb_hdr(o, 1, klen);
  memcpy(o, key, klen);
  o = pb_hdr(o + klen, 2, any);
  o = pb_hdr(o, 1, vlen);
  memcpy(o, val, vlen);
  b->len = (size_t)(o + vlen - b->p);
}

/* KeyValue{key, AnyValue{int_value}} (a key known to be valid UTF-8). */
static void kv_int_n(mlt__buf *b, unsigned field, const char *key, size_t klen, int64_t val) {
  size_t any = 1 + varint_len((uint64_t)val);
  size_t body = 1 + varint_len(klen) + klen + 1 + 1 + any;
  if (!pb_room(b, body)) return;
  char *o = pb_hdr(b->p + b->len, field, body);
  o = pb_hdr(o, 1, klen);
  memcpy(o, key, klen);
  o = pb_hdr(o + klen, 2, any);
  *o++ = (char)((3 << 3) | WT_VARINT);
  o += varint_bytes((uint64_t)val, o);
  b->len = (size_t)(o - b->p);
}

/* Nested messages: open writes the tag and reserves |width| length bytes;
 * close writes the length, moving the body when it needs another width
 * (pb_open: 1 byte; pb_open2: 2 bytes, for spans, which are mostly 128 B to
 * 16 KiB).  pb_open_big reserves 5 bytes and close pads the varint to them
 * (0x80 continuation bytes, which every protobuf parser reads): no move of
 * a whole batch. */
static inline size_t pb_open_w(mlt__buf *b, unsigned field, unsigned width) {
  if (!pb_room(b, 8)) return b->len;
  pb_tag(b, field, WT_LEN);
  memset(b->p + b->len, 0, width);
  b->len += width;
  return b->len;
}
static inline size_t pb_open(mlt__buf *b, unsigned field) { return pb_open_w(b, field, 1); }
static inline size_t pb_open2(mlt__buf *b, unsigned field) { return pb_open_w(b, field, 2); }
static inline size_t pb_open_big(mlt__buf *b, unsigned field) { return pb_open_w(b, field, 5); }

static void pb_close_w(mlt__buf *b, size_t start, unsigned width) {
  if (b->oom) return;
  size_t len = b->len - start;
  char v[10];
  int n = varint_bytes(len, v);
  if ((unsigned)n != width) {
    if ((unsigned)n > width && mlt__buf_reserve(b, (size_t)n - width)) return;
    memmove(b->p + start + n - width, b->p + start, len);
    b->len = b->len + (size_t)n - width;
  }
  memcpy(b->p + start - width, v, (size_t)n);
}
static inline void pb_close(mlt__buf *b, size_t start) {
  /* the common case inline: a body shorter than 128 bytes */
  if (MLT_LIKELY(!b->oom && b->len - start < 0x80)) {
    b->p[start - 1] = (char)(b->len - start);
    return;
  }
  pb_close_w(b, start, 1);
}
static inline void pb_close2(mlt__buf *b, size_t start) {
  size_t len = b->len - start;
  if (MLT_LIKELY(!b->oom && len >= 0x80 && len < 0x4000)) {
    b->p[start - 2] = (char)((len & 0x7F) | 0x80);
    b->p[start - 1] = (char)(len >> 7);
    return;
  }
  pb_close_w(b, start, 2);
}
static void pb_close_big(mlt__buf *b, size_t start) {
  if (b->oom) return;
  uint64_t len = b->len - start;
  if (len >> 35) { /* not padded to 5 bytes: a batch over 32 GiB */
    pb_close_w(b, start, 5);
    return;
  }
  for (int i = 0; i < 5; i++, len >>= 7) b->p[start - 5 + i] = (char)((len & 0x7F) | (i < 4 ? 0x80 : 0));
}

/* ---- AnyValue -------------------------------------------------------- */

static void any_string(mlt__buf *b, const char *s, size_t n) { pb_string(b, 1, s, n); }

static mlt__jdoc g_doc; /* export thread */

static void trim_ws(const char **v, size_t *len) {
  while (*len && (**v == ' ' || **v == '\n' || **v == '\t' || **v == '\r')) (*v)++, (*len)--;
  while (*len && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\n' || (*v)[*len - 1] == '\t' || (*v)[*len - 1] == '\r'))
    (*len)--;
}

/* JSON text of a number, true, false or null as the native AnyValue (null:
 * an empty one, which reads back as None); 0 if it is not one. */
static int any_scalar(mlt__buf *b, const char *txt, size_t n) {
  if (!n || *txt == '{' || *txt == '[' || *txt == '"' || mlt__jparse(&g_doc, txt, n) != 0) return 0;
  const mlt__jnode *nd = &g_doc.nodes[0];
  switch (nd->type) {
    case MLT__J_NULL:
      return 1;
    case MLT__J_TRUE:
    case MLT__J_FALSE:
      pb_uint(b, 2, nd->type == MLT__J_TRUE);
      return 1;
    case MLT__J_NUM: {
      char num[64];
      size_t l = MLT_MIN((size_t)nd->len, sizeof num - 1);
      memcpy(num, txt + nd->off, l);
      num[l] = '\0';
      long long iv = 0;
      if (!strpbrk(num, ".eE")) {
        errno = 0;
        iv = strtoll(num, NULL, 10);
      }
      if (!strpbrk(num, ".eE") && errno != ERANGE) { /* an integer that fits an int64 */
        pb_uint(b, 3, (uint64_t)iv);
      } else {
        double v = mlt__json_strtod(num, l);
        uint64_t bits;
        memcpy(&bits, &v, 8);
        pb_fixed64(b, 4, bits);
      }
      return 1;
    }
    default:
      return 0;
  }
}

/* AnyValue of JSON text we wrote ourselves (valid, no surrounding space):
 * a number, true, false or null natively, anything else as the text. */
static void json_text_any(mlt__buf *b, const char *txt, size_t n) {
  if (!any_scalar(b, txt, n)) any_string(b, txt, n);
}

/* AnyValue body for a value record (ATTR, FIELD, INPUTS, OUTPUTS, CHUNK). */
static void any_from_rec(mlt__buf *b, const mlt__rec *r, mlt__buf *tmp) {
  size_t len;
  uint64_t orig;
  const char *v = mlt__rec_value(r, &len, &orig);
  if (r->flags & MLT__RF_TRUNC) {
    mlt__buf_reset(tmp);
    mlt__value_json(tmp, r); /* a JSON string with the marker */
    mlt__buf t2 = {0};
    mlt__junescape(&t2, tmp->p + 1, tmp->len - 2);
    any_string(b, t2.p ? t2.p : "", t2.len);
    mlt__buf_free(&t2);
    return;
  }
  switch (r->sub) {
    case MLT__V_STR:
      any_string(b, v, len);
      return;
    case MLT__V_I64: {
      int64_t i;
      memcpy(&i, v, 8);
      pb_uint(b, 3, (uint64_t)i);
      return;
    }
    case MLT__V_F64: {
      uint64_t bits;
      memcpy(&bits, v, 8);
      pb_fixed64(b, 4, bits);
      return;
    }
    case MLT__V_BOOL:
      pb_uint(b, 2, r->aux != 0);
      return;
    case MLT__V_JSON: {
      /* (objects, arrays and strings go as their text: rec_string) */
      if (!(r->flags & MLT__RF_INVALID)) {
        const char *txt = v;
        size_t n = len;
        trim_ws(&txt, &n);
        if (any_scalar(b, txt, n)) return;
      }
      any_string(b, v, len); /* not JSON: the text itself */
      return;
    }
    default:
      /* cJSON, fields: through their JSON text */
      mlt__buf_reset(tmp);
      mlt__value_json(tmp, r);
      json_text_any(b, tmp->p ? tmp->p : "", tmp->len);
  }
}

/* The string an AnyValue of record |r| carries, when it is one: a string
 * value, or JSON text of an object, array or string (sent as its text, see
 * the top of the file). */
static inline int rec_string(const mlt__rec *r, const char **s, size_t *n) {
  if (MLT_UNLIKELY(r->flags & MLT__RF_TRUNC)) return 0;
  size_t len;
  const char *v = mlt__rec_value(r, &len, NULL);
  if (r->sub == MLT__V_STR) {
    *s = v, *n = len;
    return 1;
  }
  if (r->sub != MLT__V_JSON || (r->flags & MLT__RF_INVALID)) return 0;
  trim_ws(&v, &len);
  if (!len || (*v != '{' && *v != '[' && *v != '"')) return 0;
  *s = v, *n = len;
  return 1;
}

static void kv_rec(mlt__buf *b, unsigned field, const char *key, size_t klen, const mlt__rec *r, mlt__buf *tmp) {
  const char *sv;
  size_t sn;
  if (rec_string(r, &sv, &sn)) {
    kv_string(b, field, key, klen, sv, sn);
    return;
  }
  size_t kv = pb_open(b, field);
  pb_string(b, 1, key, klen);
  size_t v = pb_open(b, 2);
  any_from_rec(b, r, tmp);
  pb_close(b, v);
  pb_close(b, kv);
}

static inline void kv_str(mlt__buf *b, unsigned field, const char *key, const char *val, size_t vlen) {
  kv_string(b, field, key, strlen(key), val, vlen);
}

static inline void kv_str_n(mlt__buf *b, unsigned field, const char *key, size_t klen, const char *val, size_t vlen) {
  kv_string(b, field, key, klen, val, vlen);
}

static inline void kv_int(mlt__buf *b, unsigned field, const char *key, int64_t val) {
  kv_int_n(b, field, key, strlen(key), val);
}

static void kv_double(mlt__buf *b, unsigned field, const char *key, double val) {
  size_t kv = pb_open(b, field);
  pb_string(b, 1, key, strlen(key));
  size_t v = pb_open(b, 2);
  uint64_t bits;
  memcpy(&bits, &val, 8);
  pb_fixed64(b, 4, bits);
  pb_close(b, v);
  pb_close(b, kv);
}

/* The JSON text of the chunks' default output as an AnyValue. */
static void kv_chunks_output(mlt__buf *b, const mlt__digest *d, mlt__buf *tmp) {
  mlt__buf_reset(tmp);
  mlt__chunks_output_json(tmp, d);
  size_t kv = pb_open(b, 9);
  pb_string(b, 1, "mlflow.spanOutputs", 18);
  size_t v = pb_open(b, 2);
  json_text_any(b, tmp->p ? tmp->p : "", tmp->len);
  pb_close(b, v);
  pb_close(b, kv);
}

static void encode_span(mlt__buf *b, mlt__prepared *p, uint32_t idx, mlt__buf *tmp) {
  mlt__score *s = p->spans[idx];
  mlt__digest *d = mlt__scratch_digest();
  mlt__digest_span(d, s);
  size_t sp = pb_open2(b, 2); /* ScopeSpans.spans */
  if (pb_room(b, 64)) { /* trace_id, span_id, parent_span_id */
    uint8_t *o = (uint8_t *)b->p + b->len;
    o[0] = (1 << 3) | WT_LEN, o[1] = 16;
    mlt__be64(p->t->id_hi, o + 2);
    mlt__be64(p->t->id_lo, o + 10);
    o[18] = (2 << 3) | WT_LEN, o[19] = 8;
    mlt__be64(s->span_id, o + 20);
    o += 28;
    if (s->parent_id) {
      o[0] = (4 << 3) | WT_LEN, o[1] = 8;
      mlt__be64(s->parent_id, o + 2);
      o += 10;
    }
    b->len = (size_t)((char *)o - b->p);
  }
  pb_string(b, 5, d->name, d->name_len);
  pb_uint(b, 6, 1); /* SPAN_KIND_INTERNAL */
  pb_fixed64(b, 7, (uint64_t)s->start_ns);
  pb_fixed64(b, 8, (uint64_t)(MLT_UNLIKELY(s->end_ns < s->start_ns) ? s->start_ns : s->end_ns));
  /* attributes */
  kv_string(b, 9, "mlflow.spanType", 15, d->type, d->type_len);
  if (d->inputs) kv_rec(b, 9, "mlflow.spanInputs", 17, d->inputs, tmp);
  if (d->outputs)
    kv_rec(b, 9, "mlflow.spanOutputs", 18, d->outputs, tmp);
  else if (d->n_chunks)
    kv_chunks_output(b, d, tmp);
  for (size_t a = 0; a < d->n_attrs; a++) {
    const mlt__rec *r = d->attrs[a];
    if (!mlt__reserved_attr_key(r)) kv_rec(b, 9, mlt__rec_key(r), r->key_len, r, tmp);
  }
  if (d->n_chunks) kv_double(b, 9, "gen_ai.response.time_to_first_chunk", (double)(d->first_chunk_ns - s->start_ns) / 1e9);
  if (s->n_events_dropped) kv_int(b, 9, "mltrace.droppedEvents", s->n_events_dropped);
  int status = s->status == MLT_STATUS_UNSET ? MLT_STATUS_OK : s->status;
  if (MLT_UNLIKELY(s->n_links_dropped)) kv_int(b, 9, "mltrace.droppedLinks", s->n_links_dropped);
  kv_int_n(b, 9, "mlflow.spanLogLevel", 19, mlt__digest_level(d));
  if ((int)idx == p->root) {
    const mlt__trace_info *ti = mlt__prepared_info(p); /* (no previews needed here) */
    /* Trace-level data an OTLP-only consumer can map: MLflow turns
     * mlflow.traceTag.<k> into tags and session.id / user.id into metadata.
     * The trace's name is the root's. */
    kv_string(b, 9, "mlflow.traceTag.mlflow.traceName", 32, d->name, d->name_len);
    for (mlt__tinfo *i = ti->info; i; i = i->next) {
      if (i->kind != MLT__TI_TAG) continue;
      int seen = 0;
      for (mlt__tinfo *j = ti->info; j != i; j = j->next)
        if (j->kind == MLT__TI_TAG && !strcmp(j->key, i->key)) seen = 1;
      if (seen || !strcmp(i->key, "mlflow.artifactLocation") || !strcmp(i->key, "mlflow.trace.spansLocation"))
        continue;
      char key[300];
      snprintf(key, sizeof key, "mlflow.traceTag.%.250s", i->key);
      size_t vl = strlen(i->value);
      size_t cut = mlt__utf8_prefix_chars(i->value, vl, 4096, NULL);
      kv_str(b, 9, key, i->value, cut);
    }
    if (ti->session)
      kv_str(b, 9, "session.id", ti->session, mlt__utf8_prefix_chars(ti->session, strlen(ti->session), 250, NULL));
    if (ti->user) kv_str(b, 9, "user.id", ti->user, mlt__utf8_prefix_chars(ti->user, strlen(ti->user), 250, NULL));
  }
  /* events */
  for (size_t e = 0; e < d->n_events; e++) {
    const mlt__rec *r = d->events[e];
    int64_t ts;
    uint64_t n;
    memcpy(&ts, mlt__rec_val(r), 8);
    memcpy(&n, mlt__rec_val(r) + 8, 8);
    size_t ev = pb_open(b, 11);
    pb_fixed64(b, 1, (uint64_t)ts);
    pb_string(b, 2, mlt__rec_key(r), r->key_len);
    const mlt__rec *c = mlt__rec_next(r);
    for (uint64_t k = 0; k < n; k++, c = mlt__rec_next(c)) {
      if (c->sub == MLT__V_JSON && !(c->flags & MLT__RF_TRUNC)) {
        /* JSON-typed event attributes travel as their JSON text */
        mlt__buf_reset(tmp);
        mlt__value_json(tmp, c);
        size_t kv = pb_open(b, 3);
        pb_string(b, 1, mlt__rec_key(c), c->key_len);
        size_t v = pb_open(b, 2);
        any_string(b, tmp->p ? tmp->p : "", tmp->len);
        pb_close(b, v);
        pb_close(b, kv);
      } else {
        kv_rec(b, 3, mlt__rec_key(c), c->key_len, c, tmp);
      }
    }
    pb_close(b, ev);
  }
  size_t chunk_events = mlt__chunk_events(d->n_chunks);
  for (size_t i = 0; i < chunk_events; i++) {
    const mlt__rec *r = d->chunks[i];
    int64_t ts;
    memcpy(&ts, mlt__rec_key(r), 8);
    size_t ev = pb_open(b, 11);
    pb_fixed64(b, 1, (uint64_t)ts);
    char name[48];
    int nl = snprintf(name, sizeof name, "mlflow.chunk.item.%zu", i);
    pb_string(b, 2, name, (size_t)nl);
    mlt__buf_reset(tmp);
    mlt__value_json(tmp, r);
    size_t kv = pb_open(b, 3);
    pb_string(b, 1, "mlflow.chunk.value", 18);
    size_t v = pb_open(b, 2);
    any_string(b, tmp->p ? tmp->p : "", tmp->len);
    pb_close(b, v);
    pb_close(b, kv);
    pb_close(b, ev);
  }
  if (s->n_events_dropped) pb_uint(b, 12, s->n_events_dropped);
  /* links (Span.links: the MLflow server keeps them, Link.from_otel_proto) */
  for (size_t i = 0; i < d->n_links; i++) {
    const mlt__rec *r = d->links[i];
    uint64_t v[4];
    memcpy(v, mlt__rec_val(r), sizeof v);
    size_t lk = pb_open(b, 13);
    uint8_t lid[16];
    mlt__be64(v[0], lid);
    mlt__be64(v[1], lid + 8);
    pb_bytes(b, 1, lid, 16);
    mlt__be64(v[2], lid);
    pb_bytes(b, 2, lid, 8);
    const mlt__rec *c = mlt__rec_next(r);
    for (uint64_t k = 0; k < v[3]; k++, c = mlt__rec_next(c)) {
      if (c->sub == MLT__V_JSON && !(c->flags & MLT__RF_TRUNC)) { /* as event attributes: the JSON text */
        mlt__buf_reset(tmp);
        mlt__value_json(tmp, c);
        kv_str_n(b, 4, mlt__rec_key(c), c->key_len, tmp->p ? tmp->p : "", tmp->len);
      } else {
        kv_rec(b, 4, mlt__rec_key(c), c->key_len, c, tmp);
      }
    }
    pb_close(b, lk);
  }
  if (s->n_links_dropped) pb_uint(b, 14, s->n_links_dropped);
  /* status */
  size_t st = pb_open(b, 15);
  if (status == MLT_STATUS_ERROR && d->status_msg) {
    size_t ml;
    const char *m = mlt__rec_value(d->status_msg, &ml, NULL);
    pb_string(b, 2, m, ml);
  }
  pb_uint(b, 3, status == MLT_STATUS_ERROR ? 2 : 1);
  pb_close(b, st);
  pb_close2(b, sp);
}

void mlt__otlp_encode(mlt__buf *out, mlt__prepared *const *traces, size_t n, const char *service_name) {
  mlt__buf tmp = {0};
  size_t rs = pb_open_big(out, 1); /* resource_spans */
  size_t res = pb_open(out, 1);
  if (service_name) kv_str(out, 1, "service.name", service_name, strlen(service_name));
  kv_str(out, 1, "telemetry.sdk.name", "mltrace", 7);
  kv_str(out, 1, "telemetry.sdk.language", "c", 1);
  kv_str(out, 1, "telemetry.sdk.version", MLT_VERSION_STRING, strlen(MLT_VERSION_STRING));
  pb_close(out, res);
  size_t ss = pb_open_big(out, 2); /* scope_spans */
  size_t sc = pb_open(out, 1);
  pb_string(out, 1, "mltrace", 7);
  pb_string(out, 2, MLT_VERSION_STRING, strlen(MLT_VERSION_STRING));
  pb_close(out, sc);
  for (size_t t = 0; t < n; t++)
    for (uint32_t i = 0; i < traces[t]->n; i++) encode_span(out, traces[t], i, &tmp);
  pb_close_big(out, ss);
  pb_close_big(out, rs);
  mlt__buf_free(&tmp);
}

void mlt__otlp_shutdown(void) {
  mlt__jdoc_free(&g_doc);
  mlt__buf_free(&g_fix);
  mlt__buf_free(&g_fix_key);
}
