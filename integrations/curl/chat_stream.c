/* chat_stream.c: assembles an OpenAI-compatible chat.completion.chunk stream
 * into a chat.completion object, or an OpenAI Responses API event stream
 * into its Response object.  See <mltrace/sse.h>.
 */
#include "curl-internal.h"

#include <mltrace/sse.h>

#include <cjson/cJSON.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CS_MAX_CHOICES 256
#define CS_MAX_TOOL_CALLS 256

typedef struct cs_str {
  char *p;
  size_t len, cap; /* p[len] is NUL when p is non-NULL */
} cs_str;

typedef struct cs_tool_call {
  long index;
  cs_str id, type, name, args;
} cs_tool_call;

typedef struct cs_choice {
  long index;
  cs_str role, content, refusal, finish_reason;
  int has_content, has_refusal;
  cs_tool_call *calls; /* sorted by index */
  size_t ncalls, cap_calls;
  long last_call; /* index of the call a delta without "index" continues */
} cs_choice;

/* One output item of a Responses stream, by output_index. */
typedef struct rs_item {
  long index;
  cJSON *item;    /* the item as last announced (added, then done) */
  int done;       /* response.output_item.done seen */
  cs_str text;    /* output_text deltas (message items) */
  cs_str args;    /* function call argument deltas */
  int has_args;
} rs_item;

struct mlt_chat_stream {
  mlt_sse_parser *parser;
  mlt_chat_chunk_fn on_chunk;
  mlt_chat_malformed_fn on_malformed;
  void *user_data;
  mlt__chat_json_hook json_hook;
  /* Responses API mode (the first event was a "response.*" event) */
  int responses;
  cJSON *response;     /* the Response object of the latest response.* event */
  int terminal;        /* response.completed / incomplete / failed seen */
  rs_item *items;      /* sorted by output_index */
  size_t nitems, cap_items;
  cs_str rtext;        /* output_text deltas, all items, in stream order */
  cs_str id, model, fingerprint, error;
  int has_fingerprint, has_error, done, finished, finish_rc;
  double created;
  cJSON *usage;
  cs_choice *choices; /* sorted by index */
  size_t nchoices, cap_choices;
  size_t chunks, malformed;
  /* the chunk scanner (see below): its decoded strings (on the stack for
   * small events, else scan_heap), and a switch */
  char *scan_buf, *scan_heap;
  size_t scan_cap;
  int no_scan;
};

/* ---- small helpers ----------------------------------------------------- */

static int str_append(cs_str *s, const char *b, size_t n) {
  if (s->cap - s->len <= n || !s->p) {
    if (n > ((size_t)-1) / 2 - s->len - 1) return MLT_ENOMEM;
    size_t need = s->len + n + 1, cap = s->cap ? s->cap : 32;
    while (cap < need) cap *= 2;
    char *q = realloc(s->p, cap);
    if (!q) return MLT_ENOMEM;
    s->p = q;
    s->cap = cap;
  }
  if (n) memcpy(s->p + s->len, b, n);
  s->len += n;
  s->p[s->len] = '\0';
  return MLT_OK;
}

static int str_set(cs_str *s, const char *b, size_t n) {
  s->len = 0;
  return str_append(s, b, n);
}

static const char *str_get(const cs_str *s) { return s->p ? s->p : ""; }

static cJSON *add_str(cJSON *obj, const char *key, const cs_str *v) {
  return cJSON_AddStringToObject(obj, key, str_get(v));
}

/* The string value of member @p key of @p obj, or NULL. */
static const char *get_string(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Set @p dst to member @p key when it is a non-empty string. */
static int set_nonempty(cs_str *dst, const cJSON *obj, const char *key) {
  const char *v = get_string(obj, key);
  return v && *v ? str_set(dst, v, strlen(v)) : MLT_OK;
}

static int append_string(cs_str *dst, const cJSON *obj, const char *key, int *seen) {
  const char *v = get_string(obj, key);
  if (!v) return MLT_OK;
  *seen = 1;
  return str_append(dst, v, strlen(v));
}

/* Member "index" of @p obj: 1 with *out set when absent (*out = dflt) or a
 * usable integer, 0 when present but unusable. */
static int get_index(const cJSON *obj, long dflt, long *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "index");
  if (!v) {
    *out = dflt;
    return 1;
  }
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= 2147483647.0) || d != (double)(long)d) return 0;
  *out = (long)d;
  return 1;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void free_choice(cs_choice *c) {
  for (size_t i = 0; i < c->ncalls; i++) {
    free(c->calls[i].id.p);
    free(c->calls[i].type.p);
    free(c->calls[i].name.p);
    free(c->calls[i].args.p);
  }
  free(c->calls);
  free(c->role.p);
  free(c->content.p);
  free(c->refusal.p);
  free(c->finish_reason.p);
}

/* find_or_insert() reads the index of an element as its first member. */
_Static_assert(offsetof(cs_choice, index) == 0, "index first");
_Static_assert(offsetof(cs_tool_call, index) == 0, "index first");
_Static_assert(offsetof(rs_item, index) == 0, "index first");

/* Find or insert (keeping the array sorted by index) the element of
 * @p *arr with index @p index.  Returns its position, -1 when the array is
 * full (*nomem = 0) or out of memory (*nomem = 1). */
static long find_or_insert(void **arr, size_t *n, size_t *cap, size_t elem, size_t max, long index,
                           int *nomem) {
  size_t pos = 0;
  *nomem = 0;
  while (pos < *n && *(const long *)((char *)*arr + pos * elem) < index) pos++;
  if (pos < *n && *(const long *)((char *)*arr + pos * elem) == index) return (long)pos;
  if (*n >= max) return -1;
  if (*n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 1; /* most streams have one choice */
    void *q = realloc(*arr, ncap * elem);
    if (!q) {
      *nomem = 1;
      return -1;
    }
    *arr = q;
    *cap = ncap;
  }
  char *base = *arr;
  memmove(base + (pos + 1) * elem, base + pos * elem, (*n - pos) * elem);
  memset(base + pos * elem, 0, elem);
  *(long *)(base + pos * elem) = index;
  (*n)++;
  return (long)pos;
}

static const cs_choice *find_choice(const mlt_chat_stream *s, long index) {
  for (size_t i = 0; s && i < s->nchoices; i++)
    if (s->choices[i].index == index) return &s->choices[i];
  return NULL;
}

/* ---- merging a chunk --------------------------------------------------- */

static int merge_tool_call(cs_choice *c, const cJSON *tc, int *bad) {
  if (!cJSON_IsObject(tc)) {
    *bad = 1;
    return MLT_OK;
  }
  const char *id = get_string(tc, "id");
  long index = -1;
  if (cJSON_GetObjectItemCaseSensitive(tc, "index")) {
    if (!get_index(tc, 0, &index)) {
      *bad = 1;
      return MLT_OK;
    }
  } else if (id && *id) { /* no index: the call with this id, or a new one */
    for (size_t i = 0; i < c->ncalls && index < 0; i++)
      if (strcmp(str_get(&c->calls[i].id), id) == 0) index = c->calls[i].index;
    if (index < 0) index = c->ncalls ? c->calls[c->ncalls - 1].index + 1 : 0;
  } else {
    index = c->last_call >= 0 ? c->last_call : 0;
  }
  int nomem;
  void *arr = c->calls;
  long pos = find_or_insert(&arr, &c->ncalls, &c->cap_calls, sizeof *c->calls, CS_MAX_TOOL_CALLS, index, &nomem);
  c->calls = arr;
  if (pos < 0) {
    if (nomem) return MLT_ENOMEM;
    *bad = 1;
    return MLT_OK;
  }
  cs_tool_call *t = &c->calls[pos];
  c->last_call = index;
  int rc = set_nonempty(&t->id, tc, "id");
  if (!rc) rc = set_nonempty(&t->type, tc, "type");
  const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
  if (!rc && cJSON_IsObject(fn)) {
    int seen = 0;
    rc = set_nonempty(&t->name, fn, "name");
    if (!rc) rc = append_string(&t->args, fn, "arguments", &seen);
  }
  return rc;
}

/* The choice with |index|, added when new; NULL when it cannot be: *rc is
 * MLT_ENOMEM, or stays MLT_OK with *bad set (past CS_MAX_CHOICES). */
static cs_choice *choice_at(mlt_chat_stream *s, long index, int *bad, int *rc) {
  int nomem;
  size_t before = s->nchoices;
  void *arr = s->choices;
  long pos = find_or_insert(&arr, &s->nchoices, &s->cap_choices, sizeof *s->choices, CS_MAX_CHOICES, index, &nomem);
  s->choices = arr;
  if (pos < 0) {
    if (nomem)
      *rc = MLT_ENOMEM;
    else
      *bad = 1;
    return NULL;
  }
  cs_choice *c = &s->choices[pos];
  if (s->nchoices != before) c->last_call = -1;
  return c;
}

static int merge_choice(mlt_chat_stream *s, const cJSON *ch, long dflt_index, int *bad, const char **delta_text) {
  long index;
  if (!cJSON_IsObject(ch) || !get_index(ch, dflt_index, &index)) {
    *bad = 1;
    return MLT_OK;
  }
  int rc = MLT_OK;
  cs_choice *c = choice_at(s, index, bad, &rc);
  if (!c) return rc;
  const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
  if (cJSON_IsObject(delta)) {
    const char *content = get_string(delta, "content");
    if (content && delta_text && index == 0) *delta_text = content;
    rc = set_nonempty(&c->role, delta, "role");
    if (!rc) rc = append_string(&c->content, delta, "content", &c->has_content);
    if (!rc) rc = append_string(&c->refusal, delta, "refusal", &c->has_refusal);
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
    const cJSON *tc;
    if (cJSON_IsArray(calls))
      cJSON_ArrayForEach(tc, calls) {
        if (rc) break;
        rc = merge_tool_call(c, tc, bad);
      }
  }
  if (!rc) rc = set_nonempty(&c->finish_reason, ch, "finish_reason");
  return rc;
}

static int merge_chunk(mlt_chat_stream *s, const cJSON *j, int *bad, const char **delta_text) {
  int rc = set_nonempty(&s->id, j, "id");
  if (!rc) rc = set_nonempty(&s->model, j, "model");
  const char *fp = get_string(j, "system_fingerprint");
  if (!rc && fp && *fp) {
    s->has_fingerprint = 1;
    rc = str_set(&s->fingerprint, fp, strlen(fp));
  }
  if (rc) return rc;
  const cJSON *created = cJSON_GetObjectItemCaseSensitive(j, "created");
  if (cJSON_IsNumber(created) && isfinite(created->valuedouble)) s->created = created->valuedouble;
  const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
  if (cJSON_IsObject(usage)) {
    cJSON *copy = cJSON_Duplicate(usage, 1);
    if (!copy) return MLT_ENOMEM;
    cJSON_Delete(s->usage);
    s->usage = copy;
  }
  const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
  long i = 0;
  const cJSON *ch;
  if (cJSON_IsArray(choices))
    cJSON_ArrayForEach(ch, choices) {
      rc = merge_choice(s, ch, i, bad, delta_text);
      if (rc) return rc;
      i++;
    }
  return MLT_OK;
}

/* ---- Responses API events --------------------------------------------- */

static void free_items(mlt_chat_stream *s) {
  for (size_t i = 0; i < s->nitems; i++) {
    cJSON_Delete(s->items[i].item);
    free(s->items[i].text.p);
    free(s->items[i].args.p);
  }
  free(s->items);
}

/* The item with output_index @p index (created when new), or NULL with
 * *rc set (MLT_ENOMEM) or *bad set (unusable index, too many items). */
static rs_item *get_item(mlt_chat_stream *s, const cJSON *ev, int *bad, int *rc) {
  const cJSON *oi = cJSON_GetObjectItemCaseSensitive(ev, "output_index");
  long index;
  if (!cJSON_IsNumber(oi) || !(oi->valuedouble >= 0 && oi->valuedouble <= 2147483647.0) ||
      oi->valuedouble != (double)(long)oi->valuedouble) {
    *bad = 1;
    return NULL;
  }
  index = (long)oi->valuedouble;
  int nomem;
  void *arr = s->items;
  long pos = find_or_insert(&arr, &s->nitems, &s->cap_items, sizeof *s->items, CS_MAX_CHOICES, index, &nomem);
  s->items = arr;
  if (pos < 0) {
    if (nomem)
      *rc = MLT_ENOMEM;
    else
      *bad = 1;
    return NULL;
  }
  return &s->items[pos];
}

/* Keep a copy of member @p key of @p ev in *dst (replacing the old one). */
static int keep_object(cJSON **dst, const cJSON *ev, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, key);
  if (!cJSON_IsObject(v)) return MLT_OK;
  cJSON *copy = cJSON_Duplicate(v, 1);
  if (!copy) return MLT_ENOMEM;
  cJSON_Delete(*dst);
  *dst = copy;
  return MLT_OK;
}

/* Merge one Responses API event (a JSON object whose "type" is
 * "response.*").  *delta_text: the text an output_text delta carried. */
static int merge_response_event(mlt_chat_stream *s, const cJSON *j, const char *type, int *bad,
                                const char **delta_text) {
  int rc = MLT_OK;
  const char *name = type + 9; /* after "response." */
  if (!strcmp(name, "created") || !strcmp(name, "in_progress") || !strcmp(name, "queued") ||
      !strcmp(name, "completed") || !strcmp(name, "incomplete") || !strcmp(name, "failed")) {
    rc = keep_object(&s->response, j, "response");
    const cJSON *r = s->response;
    if (!rc) rc = set_nonempty(&s->id, r, "id");
    if (!rc) rc = set_nonempty(&s->model, r, "model");
    if (!rc && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r, "usage")))
      rc = keep_object(&s->usage, r, "usage");
    if (!strcmp(name, "completed") || !strcmp(name, "incomplete")) {
      s->terminal = 1;
      s->done = 1;
      /* No text deltas came (a stream of the final event only): the text
       * of the Response's output_text parts. */
      const cJSON *item, *part;
      if (!rc && !s->rtext.len)
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(r, "output")) {
          const char *it = get_string(item, "type");
          if (!it || strcmp(it, "message") != 0) continue;
          cJSON_ArrayForEach(part, cJSON_GetObjectItemCaseSensitive(item, "content")) {
            const char *pt = get_string(part, "type"), *text = get_string(part, "text");
            if (!rc && pt && !strcmp(pt, "output_text") && text) rc = str_append(&s->rtext, text, strlen(text));
          }
        }
    } else if (!strcmp(name, "failed")) {
      const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
      const char *msg = cJSON_IsObject(err) ? get_string(err, "message") : NULL;
      if (!msg) msg = "response failed";
      s->terminal = 1;
      s->has_error = 1;
      if (!rc) rc = str_set(&s->error, msg, strlen(msg));
    }
    return rc;
  }
  int is_added = !strcmp(name, "output_item.added"), is_done = !strcmp(name, "output_item.done");
  int is_text = !strcmp(name, "output_text.delta"), is_args = !strcmp(name, "function_call_arguments.delta");
  if (!is_added && !is_done && !is_text && !is_args) return MLT_OK; /* other events: nothing to assemble */
  rs_item *it = get_item(s, j, bad, &rc);
  if (!it) return rc;
  const char *delta = get_string(j, "delta");
  if (is_added || is_done) {
    rc = keep_object(&it->item, j, "item");
    if (is_done) it->done = 1;
  } else if (is_text && delta) {
    rc = str_append(&it->text, delta, strlen(delta));
    if (!rc) rc = str_append(&s->rtext, delta, strlen(delta));
    *delta_text = delta;
  } else if (is_args && delta) {
    it->has_args = 1;
    rc = str_append(&it->args, delta, strlen(delta));
  }
  return rc;
}

/* An item as the result shows it: as done, or as assembled so far. */
static cJSON *item_result(const rs_item *it) {
  cJSON *o = it->item ? cJSON_Duplicate(it->item, 1) : cJSON_CreateObject();
  if (!o || it->done) return o;
  const char *type = get_string(o, "type");
  if (type && !strcmp(type, "function_call")) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, "arguments");
    if (!cJSON_AddStringToObject(o, "arguments", str_get(&it->args))) goto fail;
  } else if (it->text.len || !type || !strcmp(type, "message")) {
    if (!type && !cJSON_AddStringToObject(o, "type", "message")) goto fail;
    cJSON_DeleteItemFromObjectCaseSensitive(o, "content");
    cJSON *content = cJSON_AddArrayToObject(o, "content"), *part = cJSON_CreateObject();
    if (!content || !part || !cJSON_AddItemToArray(content, part)) {
      cJSON_Delete(part);
      goto fail;
    }
    if (!cJSON_AddStringToObject(part, "type", "output_text") || !add_str(part, "text", &it->text) ||
        !cJSON_AddArrayToObject(part, "annotations"))
      goto fail;
  }
  return o;
fail:
  cJSON_Delete(o);
  return NULL;
}

/* The Response object: the final one when the stream reached it, else the
 * latest one announced with the items assembled so far as its output. */
static cJSON *response_result(const mlt_chat_stream *s) {
  if (s->terminal && s->response) return cJSON_Duplicate(s->response, 1);
  cJSON *r = s->response ? cJSON_Duplicate(s->response, 1) : cJSON_CreateObject();
  if (!r) return NULL;
  if (!s->response &&
      (!add_str(r, "id", &s->id) || !cJSON_AddStringToObject(r, "object", "response") || !add_str(r, "model", &s->model)))
    goto fail;
  cJSON_DeleteItemFromObjectCaseSensitive(r, "output");
  cJSON *out = cJSON_AddArrayToObject(r, "output");
  if (!out) goto fail;
  for (size_t i = 0; i < s->nitems; i++) {
    cJSON *o = item_result(&s->items[i]);
    if (!o || !cJSON_AddItemToArray(out, o)) {
      cJSON_Delete(o);
      goto fail;
    }
  }
  return r;
fail:
  cJSON_Delete(r);
  return NULL;
}


/* The "C" numeric locale, created once ((locale_t)0 without memory): JSON
 * numbers are read and printed with a dot whatever the application's locale
 * (its decimal point may be a comma, or several bytes). */
static locale_t g_c_numeric;
static pthread_once_t g_c_numeric_once = PTHREAD_ONCE_INIT;
static void c_numeric_init(void) { g_c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }
static locale_t c_numeric(void) {
  pthread_once(&g_c_numeric_once, c_numeric_init);
  return g_c_numeric;
}

/* ---- the chunk scanner ------------------------------------------------- */

/* Nearly every event of a Chat Completions stream is a small
 * chat.completion.chunk object of which the aggregator reads a few members.
 * A cJSON tree per event (a node and a string for every member, then all of
 * it freed) was most of the aggregator's cost, with tracing on or off.  The
 * scanner reads those members in one pass over the text, decodes only the
 * strings it keeps, and checks the rest.
 *
 * It takes a strict subset of JSON and of the chunk's shape, and gives up
 * (SCAN_BAIL) on anything else: tool calls, a usage object, an error member,
 * a "type" member (Responses API), escapes in member names, a member the
 * aggregator reads appearing twice, an "index" that is not a plain integer,
 * control characters, \u0000, unpaired surrogates, deep nesting, bytes after
 * the object, more than SCAN_MAX_CHOICES choices.  The event then goes
 * through cJSON exactly as before, so every outcome (the merged result, the
 * events reported malformed and why) is the one cJSON gives; the fuzz target
 * and tests/unit/test_chat_scan.c compare the two paths. */

static void malformed(mlt_chat_stream *s, const char *reason, const char *data, size_t len);

#define SCAN_BAIL (-1)
#define SCAN_MAX_CHOICES 8
#define SCAN_MAX_DEPTH 32

typedef struct scan_str {
  size_t off, len; /* in mlt_chat_stream.scan_buf (NUL-terminated there) */
  int set;         /* the member is a string */
} scan_str;

typedef struct scan_choice {
  long index;
  int has_index, delta_obj;
  unsigned seen; /* members read, to refuse duplicates */
  scan_str role, content, refusal, finish;
} scan_choice;

typedef struct scan_chunk {
  scan_str id, model, fingerprint;
  int has_created;
  double created;
  unsigned seen;
  size_t n;
  scan_choice ch[SCAN_MAX_CHOICES];
} scan_chunk;

typedef struct scanner {
  const char *p, *end;
  char *out; /* decoded strings */
  size_t out_len;
} scanner;

static void sc_ws(scanner *sc) {
  while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\n' || *sc->p == '\r' || *sc->p == '\t')) sc->p++;
}

static int sc_peek(const scanner *sc) { return sc->p < sc->end ? (unsigned char)*sc->p : -1; }

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (unsigned)(c - 'A' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

/* A string at sc->p (the opening quote); decoded into sc->out when @p keep
 * is non-NULL, else only checked. */
static int sc_string(scanner *sc, scan_str *keep) {
  const char *p = sc->p + 1, *end = sc->end;
  char *o = keep ? sc->out + sc->out_len : NULL;
  char *o0 = o;
  for (;;) {
    /* the plain run up to a quote, a backslash or a control character */
    const char *q = p;
    while (q < end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    if (o) {
      memcpy(o, p, (size_t)(q - p));
      o += q - p;
    }
    p = q;
    if (p >= end || (unsigned char)*p < 0x20) return SCAN_BAIL;
    if (*p == '"') break;
    if (end - p < 2) return SCAN_BAIL;
    char c = p[1], e;
    p += 2;
    switch (c) {
    case '"': e = '"'; break;
    case '\\': e = '\\'; break;
    case '/': e = '/'; break;
    case 'b': e = '\b'; break;
    case 'f': e = '\f'; break;
    case 'n': e = '\n'; break;
    case 'r': e = '\r'; break;
    case 't': e = '\t'; break;
    case 'u': {
      unsigned cp, lo;
      if (end - p < 4 || hex4(p, &cp) != 0 || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return SCAN_BAIL;
      p += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
          return SCAN_BAIL;
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      if (o) {
        if (cp < 0x80) {
          *o++ = (char)cp;
        } else if (cp < 0x800) {
          *o++ = (char)(0xC0 | (cp >> 6));
          *o++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          *o++ = (char)(0xE0 | (cp >> 12));
          *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
          *o++ = (char)(0x80 | (cp & 0x3F));
        } else {
          *o++ = (char)(0xF0 | (cp >> 18));
          *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
          *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
          *o++ = (char)(0x80 | (cp & 0x3F));
        }
      }
      continue;
    }
    default: return SCAN_BAIL;
    }
    if (o) *o++ = e;
  }
  sc->p = p + 1;
  if (keep) {
    keep->off = sc->out_len;
    keep->len = (size_t)(o - o0);
    keep->set = 1;
    *o = '\0';
    sc->out_len += keep->len + 1;
  }
  return 0;
}

/* A member name without escapes: its text in *name, *len. */
static int sc_key(scanner *sc, const char **name, size_t *len) {
  if (sc_peek(sc) != '"') return SCAN_BAIL;
  const char *p = sc->p + 1, *q = p;
  while (q < sc->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
  if (q >= sc->end || *q != '"') return SCAN_BAIL;
  *name = p;
  *len = (size_t)(q - p);
  sc->p = q + 1;
  sc_ws(sc);
  if (sc_peek(sc) != ':') return SCAN_BAIL;
  sc->p++;
  sc_ws(sc);
  return 0;
}

#define KEY_IS(name, len, lit) ((len) == sizeof(lit) - 1 && memcmp((name), (lit), sizeof(lit) - 1) == 0)

/* A number (JSON's grammar, at most 40 characters); its value in *out when
 * @p out is non-NULL. */
static int sc_number(scanner *sc, double *out) {
  const char *p = sc->p, *end = sc->end, *start = p;
  if (p < end && *p == '-') p++;
  if (p >= end) return SCAN_BAIL;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < end && *p >= '0' && *p <= '9') p++;
  } else {
    return SCAN_BAIL;
  }
  int plain = *start != '-';
  if (p < end && *p == '.') {
    plain = 0;
    if (++p >= end || *p < '0' || *p > '9') return SCAN_BAIL;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    plain = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return SCAN_BAIL;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  size_t n = (size_t)(p - start);
  if (n > 40) return SCAN_BAIL;
  if (out) {
    if (plain && n <= 15) {
      uint64_t v = 0;
      for (const char *d = start; d < p; d++) v = v * 10 + (uint64_t)(*d - '0');
      *out = (double)v;
    } else {
      char tmp[48];
      memcpy(tmp, start, n);
      tmp[n] = '\0';
      /* JSON's dot, whatever the application's locale (uselocale: POSIX,
       * unlike strtod_l) */
      locale_t c = c_numeric(), old = c ? uselocale(c) : (locale_t)0;
      *out = strtod(tmp, NULL);
      if (c) uselocale(old);
    }
  }
  sc->p = p;
  return 0;
}

/* An "index": a plain non-negative integer that fits in an int. */
static int sc_index(scanner *sc, long *out) {
  const char *p = sc->p, *end = sc->end;
  long v = 0;
  int digits = 0;
  while (p < end && *p >= '0' && *p <= '9' && digits < 11) v = v * 10 + (*p++ - '0'), digits++;
  if (!digits || (digits > 1 && *sc->p == '0') || v > 2147483647L) return SCAN_BAIL;
  if (p < end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9'))) return SCAN_BAIL;
  *out = v;
  sc->p = p;
  return 0;
}

static int sc_literal(scanner *sc, const char *lit, size_t n) {
  if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, lit, n) != 0) return SCAN_BAIL;
  sc->p += n;
  return 0;
}

/* Any value, checked and skipped. */
static int sc_skip(scanner *sc, int depth) {
  switch (sc_peek(sc)) {
  case '"': return sc_string(sc, NULL);
  case 't': return sc_literal(sc, "true", 4);
  case 'f': return sc_literal(sc, "false", 5);
  case 'n': return sc_literal(sc, "null", 4);
  case '{':
  case '[': {
    char close = *sc->p == '{' ? '}' : ']';
    if (depth >= SCAN_MAX_DEPTH) return SCAN_BAIL;
    sc->p++;
    sc_ws(sc);
    if (sc_peek(sc) == close) {
      sc->p++;
      return 0;
    }
    for (;;) {
      if (close == '}') {
        const char *name;
        size_t len;
        if (sc_key(sc, &name, &len) != 0) return SCAN_BAIL;
      }
      if (sc_skip(sc, depth + 1) != 0) return SCAN_BAIL;
      sc_ws(sc);
      int c = sc_peek(sc);
      sc->p++;
      if (c == close) return 0;
      if (c != ',') return SCAN_BAIL;
      sc_ws(sc);
    }
  }
  default: return sc_number(sc, NULL);
  }
}

/* Member @p bit of an object: SCAN_BAIL when it was seen already. */
static int sc_once(unsigned *seen, unsigned bit) {
  if (*seen & bit) return SCAN_BAIL;
  *seen |= bit;
  return 0;
}

/* A string member to keep (when it is a string), else any value. */
static int sc_str_member(scanner *sc, unsigned *seen, unsigned bit, scan_str *keep) {
  if (sc_once(seen, bit) != 0) return SCAN_BAIL;
  return sc_peek(sc) == '"' ? sc_string(sc, keep) : sc_skip(sc, 3);
}

/* Walk the members of the object at sc->p, calling @p member for each (at
 * its value).  */
static int sc_object(scanner *sc, int (*member)(scanner *, const char *, size_t, void *), void *ud) {
  if (sc_peek(sc) != '{') return SCAN_BAIL;
  sc->p++;
  sc_ws(sc);
  if (sc_peek(sc) == '}') {
    sc->p++;
    return 0;
  }
  for (;;) {
    const char *name;
    size_t len;
    if (sc_key(sc, &name, &len) != 0 || member(sc, name, len, ud) != 0) return SCAN_BAIL;
    sc_ws(sc);
    int c = sc_peek(sc);
    sc->p++;
    if (c == '}') return 0;
    if (c != ',') return SCAN_BAIL;
    sc_ws(sc);
  }
}

static int sc_delta_member(scanner *sc, const char *name, size_t len, void *ud) {
  scan_choice *ch = ud;
  if (KEY_IS(name, len, "content")) return sc_str_member(sc, &ch->seen, 1u << 0, &ch->content);
  if (KEY_IS(name, len, "role")) return sc_str_member(sc, &ch->seen, 1u << 1, &ch->role);
  if (KEY_IS(name, len, "refusal")) return sc_str_member(sc, &ch->seen, 1u << 2, &ch->refusal);
  if (KEY_IS(name, len, "tool_calls")) {
    if (sc_once(&ch->seen, 1u << 3) != 0 || sc_peek(sc) == '[') return SCAN_BAIL;
    return sc_skip(sc, 3);
  }
  return sc_skip(sc, 3);
}

static int sc_choice_member(scanner *sc, const char *name, size_t len, void *ud) {
  scan_choice *ch = ud;
  if (KEY_IS(name, len, "delta")) {
    if (sc_once(&ch->seen, 1u << 8) != 0) return SCAN_BAIL;
    if (sc_peek(sc) != '{') return sc_skip(sc, 2);
    ch->delta_obj = 1;
    return sc_object(sc, sc_delta_member, ch);
  }
  if (KEY_IS(name, len, "index")) {
    if (sc_once(&ch->seen, 1u << 9) != 0) return SCAN_BAIL;
    ch->has_index = 1;
    return sc_index(sc, &ch->index);
  }
  if (KEY_IS(name, len, "finish_reason")) return sc_str_member(sc, &ch->seen, 1u << 10, &ch->finish);
  return sc_skip(sc, 2);
}

static int sc_top_member(scanner *sc, const char *name, size_t len, void *ud) {
  scan_chunk *c = ud;
  if (KEY_IS(name, len, "choices")) {
    if (sc_once(&c->seen, 1u << 0) != 0) return SCAN_BAIL;
    if (sc_peek(sc) != '[') return sc_skip(sc, 1);
    sc->p++;
    sc_ws(sc);
    if (sc_peek(sc) == ']') {
      sc->p++;
      return 0;
    }
    for (;;) {
      if (c->n == SCAN_MAX_CHOICES) return SCAN_BAIL;
      scan_choice *ch = &c->ch[c->n++];
      memset(ch, 0, sizeof *ch);
      if (sc_object(sc, sc_choice_member, ch) != 0) return SCAN_BAIL;
      sc_ws(sc);
      int k = sc_peek(sc);
      sc->p++;
      if (k == ']') return 0;
      if (k != ',') return SCAN_BAIL;
      sc_ws(sc);
    }
  }
  if (KEY_IS(name, len, "id")) return sc_str_member(sc, &c->seen, 1u << 1, &c->id);
  if (KEY_IS(name, len, "model")) return sc_str_member(sc, &c->seen, 1u << 2, &c->model);
  if (KEY_IS(name, len, "system_fingerprint")) return sc_str_member(sc, &c->seen, 1u << 3, &c->fingerprint);
  if (KEY_IS(name, len, "created")) {
    if (sc_once(&c->seen, 1u << 4) != 0) return SCAN_BAIL;
    int k = sc_peek(sc);
    if (k == '-' || (k >= '0' && k <= '9')) {
      c->has_created = 1;
      return sc_number(sc, &c->created);
    }
    return sc_skip(sc, 1);
  }
  if (KEY_IS(name, len, "usage") || KEY_IS(name, len, "error")) {
    /* a usage object (once per stream), or an error: cJSON's path */
    if (sc_once(&c->seen, KEY_IS(name, len, "usage") ? 1u << 5 : 1u << 6) != 0) return SCAN_BAIL;
    if (sc_literal(sc, "null", 4) == 0) return 0;
    if (name[0] == 'e' || sc_peek(sc) == '{') return SCAN_BAIL;
    return sc_skip(sc, 1);
  }
  if (KEY_IS(name, len, "type")) return SCAN_BAIL; /* Responses API events, error objects */
  return sc_skip(sc, 1);
}

#define SC_S(s, x) ((s)->scan_buf + (x).off)

/* merge_choice() for a scanned choice (no tool calls). */
static int merge_scanned_choice(mlt_chat_stream *s, const scan_choice *ch, long dflt_index, int *bad,
                                const char **delta_text) {
  long index = ch->has_index ? ch->index : dflt_index;
  int rc = MLT_OK;
  cs_choice *c = choice_at(s, index, bad, &rc);
  if (!c) return rc;
  if (ch->delta_obj) {
    if (ch->content.set && delta_text && index == 0) *delta_text = SC_S(s, ch->content);
    if (ch->role.set && ch->role.len) rc = str_set(&c->role, SC_S(s, ch->role), ch->role.len);
    if (!rc && ch->content.set) {
      c->has_content = 1;
      rc = str_append(&c->content, SC_S(s, ch->content), ch->content.len);
    }
    if (!rc && ch->refusal.set) {
      c->has_refusal = 1;
      rc = str_append(&c->refusal, SC_S(s, ch->refusal), ch->refusal.len);
    }
  }
  if (!rc && ch->finish.set && ch->finish.len) rc = str_set(&c->finish_reason, SC_S(s, ch->finish), ch->finish.len);
  return rc;
}

static const char *scan_str_or_empty(const mlt_chat_stream *s, const scan_str *v, size_t *len) {
  if (len) *len = v->set ? v->len : 0;
  return v->set ? SC_S(s, *v) : "";
}

static int scan_event_in(mlt_chat_stream *s, const char *event, size_t event_len, const char *data, size_t len);

/* An event through the scanner: merged, hooks called; SCAN_BAIL when the
 * scanner gave up (nothing was changed then), else the status. */
static int scan_event(mlt_chat_stream *s, const char *event, size_t event_len, const char *data, size_t len) {
  /* Decoded strings take at most the text's bytes plus a NUL each (at most
   * 3 + 4 * SCAN_MAX_CHOICES of them).  A stream in flight keeps no buffer
   * for the usual small event (10,000 streams, 10,000 buffers otherwise). */
  char stack[1024];
  if (len + 64 <= sizeof stack) {
    s->scan_buf = stack;
  } else {
    if (s->scan_cap < len + 64) {
      size_t cap = s->scan_cap ? s->scan_cap : 2048;
      while (cap < len + 64) cap *= 2;
      char *q = malloc(cap);
      if (!q) return SCAN_BAIL;
      free(s->scan_heap);
      s->scan_heap = q;
      s->scan_cap = cap;
    }
    s->scan_buf = s->scan_heap;
  }
  int rc = scan_event_in(s, event, event_len, data, len);
  s->scan_buf = NULL;
  return rc;
}

static int scan_event_in(mlt_chat_stream *s, const char *event, size_t event_len, const char *data, size_t len) {
  scan_chunk c;
  c.seen = 0;
  c.n = 0;
  c.has_created = 0;
  c.id.set = c.model.set = c.fingerprint.set = 0;
  scanner sc = {data, data + len, s->scan_buf, 0};
  sc_ws(&sc);
  if (sc_object(&sc, sc_top_member, &c) != 0) return SCAN_BAIL;
  while (sc.p < sc.end && is_ws(*sc.p)) sc.p++;
  if (sc.p != sc.end) return SCAN_BAIL;

  /* merge_chunk(), in its order */
  int bad = 0, rc = MLT_OK;
  const char *delta = NULL;
  if (c.id.set && c.id.len) rc = str_set(&s->id, SC_S(s, c.id), c.id.len);
  if (!rc && c.model.set && c.model.len) rc = str_set(&s->model, SC_S(s, c.model), c.model.len);
  if (!rc && c.fingerprint.set && c.fingerprint.len) {
    s->has_fingerprint = 1;
    rc = str_set(&s->fingerprint, SC_S(s, c.fingerprint), c.fingerprint.len);
  }
  if (rc) return rc;
  if (c.has_created && isfinite(c.created)) s->created = c.created;
  for (size_t i = 0; i < c.n; i++) {
    rc = merge_scanned_choice(s, &c.ch[i], (long)i, &bad, &delta);
    if (rc) return rc;
  }
  if (bad) {
    malformed(s, "invalid chunk", data, len);
    return MLT_OK;
  }
  s->chunks++;
  if (s->json_hook) {
    mlt_curl_choice_delta view[SCAN_MAX_CHOICES];
    for (size_t i = 0; i < c.n; i++) {
      const scan_choice *ch = &c.ch[i];
      mlt_curl_choice_delta *d = &view[i];
      d->index = ch->has_index ? (int)ch->index : (int)i;
      d->role = scan_str_or_empty(s, &ch->role, NULL);
      d->content = scan_str_or_empty(s, &ch->content, &d->content_len);
      d->refusal = scan_str_or_empty(s, &ch->refusal, &d->refusal_len);
      d->finish_reason = scan_str_or_empty(s, &ch->finish, NULL);
      d->tool_calls = NULL;
      d->n_tool_calls = 0;
    }
    s->json_hook(event, event_len, data, len, NULL, view, c.n, delta, s->user_data);
  }
  if (s->on_chunk) s->on_chunk(data, len, delta ? delta : "", delta ? strlen(delta) : 0, s->user_data);
  return MLT_OK;
}

/* ---- events ------------------------------------------------------------ */

static void malformed(mlt_chat_stream *s, const char *reason, const char *data, size_t len) {
  s->malformed++;
  if (s->on_malformed) s->on_malformed(reason, data, len, s->user_data);
}

/* Keep the message of an error payload: error.message, error (a string),
 * message, else the raw data. */
static int keep_error(mlt_chat_stream *s, const cJSON *j, const char *data, size_t len) {
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
  const char *msg = cJSON_IsObject(err) ? get_string(err, "message") : NULL;
  if (!msg && cJSON_IsString(err)) msg = err->valuestring;
  if (!msg && cJSON_IsObject(j)) msg = get_string(j, "message");
  s->has_error = 1;
  return msg ? str_set(&s->error, msg, strlen(msg)) : str_set(&s->error, data, len);
}

static int handle_event(mlt_chat_stream *s, const char *event, size_t event_len, const char *data, size_t len) {
  int error_event = event_len == 5 && memcmp(event, "error", 5) == 0;
  size_t a = 0, b = len;
  while (a < b && is_ws(data[a])) a++;
  while (b > a && is_ws(data[b - 1])) b--;
  if (a == b) return MLT_OK;
  if (!error_event && b - a == 6 && memcmp(data + a, "[DONE]", 6) == 0) {
    if (!s->responses) s->done = 1; /* (a Responses stream ends with response.completed) */
    return MLT_OK;
  }
  if (!error_event && !s->responses && !s->no_scan) {
    int r = scan_event(s, event, event_len, data, len);
    if (r != SCAN_BAIL) return r;
  }
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(data, len, &end, 0);
  if (j && (size_t)(end - data) < b) { /* bytes after the JSON value */
    cJSON_Delete(j);
    j = NULL;
  }
  int rc = MLT_OK;
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
  /* A Responses API event: "type": "response.*" (or "error"), no choices. */
  const char *type = cJSON_IsObject(j) && !cJSON_GetObjectItemCaseSensitive(j, "choices") ? get_string(j, "type") : NULL;
  int resp_event = type && strncmp(type, "response.", 9) == 0;
  if (resp_event) s->responses = 1;
  if (type && !strcmp(type, "error") && !error_event) {
    /* {"type":"error","code":...,"message":...} */
    rc = keep_error(s, j, data + a, b - a);
    malformed(s, "error object", data, len);
  } else if (resp_event && (!err || cJSON_IsNull(err) || !strcmp(type, "response.failed"))) {
    int bad = 0;
    const char *delta = NULL;
    rc = merge_response_event(s, j, type, &bad, &delta);
    if (!rc && bad) {
      malformed(s, "invalid chunk", data, len);
    } else if (!rc) {
      s->chunks++;
      if (s->json_hook) s->json_hook(event, event_len, data, len, j, NULL, 0, delta, s->user_data);
      if (s->on_chunk) s->on_chunk(data, len, delta ? delta : "", delta ? strlen(delta) : 0, s->user_data);
    }
  } else if (error_event) {
    rc = keep_error(s, j, data + a, b - a);
    malformed(s, "error event", data, len);
  } else if (!j) {
    malformed(s, "invalid JSON", data, len);
  } else if (!cJSON_IsObject(j)) {
    malformed(s, "not a JSON object", data, len);
  } else if (err && !cJSON_IsNull(err)) {
    rc = keep_error(s, j, data + a, b - a);
    malformed(s, "error object", data, len);
  } else {
    int bad = 0;
    const char *delta = NULL;
    rc = merge_chunk(s, j, &bad, &delta);
    if (!rc && bad) {
      malformed(s, "invalid chunk", data, len);
    } else if (!rc) {
      s->chunks++;
      if (s->json_hook) s->json_hook(event, event_len, data, len, j, NULL, 0, delta, s->user_data);
      if (s->on_chunk) s->on_chunk(data, len, delta ? delta : "", delta ? strlen(delta) : 0, s->user_data);
    }
  }
  cJSON_Delete(j);
  return rc;
}

static int on_sse_event(const char *event, size_t event_len, const char *data, size_t data_len, const char *id,
                        size_t id_len, void *user_data) {
  (void)id;
  (void)id_len;
  return handle_event(user_data, event, event_len, data, data_len);
}

static void on_sse_discard(size_t event_bytes, void *user_data) {
  (void)event_bytes;
  malformed(user_data, "event exceeds max_event_bytes", "", 0);
}

/* ---- public API -------------------------------------------------------- */

int mlt_chat_stream_new(mlt_chat_stream **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  mlt_chat_stream *s = calloc(1, sizeof *s);
  if (!s) return MLT_ENOMEM;
  int rc = mlt_sse_parser_new(on_sse_event, s, 0, &s->parser);
  if (rc) {
    free(s);
    return rc;
  }
  mlt_sse_parser_set_discard_fn(s->parser, on_sse_discard);
  *out = s;
  return MLT_OK;
}

void mlt_chat_stream_free(mlt_chat_stream *s) {
  if (!s) return;
  mlt_sse_parser_free(s->parser);
  for (size_t i = 0; i < s->nchoices; i++) free_choice(&s->choices[i]);
  free(s->choices);
  free_items(s);
  cJSON_Delete(s->response);
  free(s->rtext.p);
  free(s->id.p);
  free(s->model.p);
  free(s->fingerprint.p);
  free(s->error.p);
  cJSON_Delete(s->usage);
  free(s->scan_heap);
  free(s);
}

int mlt_chat_stream_feed(mlt_chat_stream *s, const char *bytes, size_t len) {
  if (!s || (!bytes && len) || s->finished) return MLT_EINVAL;
  return mlt_sse_parser_feed(s->parser, bytes, len);
}

int mlt_chat_stream_add_data(mlt_chat_stream *s, const char *data, size_t len) {
  if (!s || (!data && len) || s->finished) return MLT_EINVAL;
  return len ? handle_event(s, "message", 7, data, len) : MLT_OK;
}

int mlt_chat_stream_finish(mlt_chat_stream *s) {
  if (!s) return MLT_EINVAL;
  if (s->finished) return s->finish_rc;
  int rc = mlt_sse_parser_finish(s->parser);
  if (rc == MLT_OK && !s->done) rc = MLT_EPARSE;
  s->finished = 1;
  s->finish_rc = rc;
  return rc;
}

void mlt_chat_stream_set_hooks(mlt_chat_stream *s, mlt_chat_chunk_fn on_chunk, mlt_chat_malformed_fn on_malformed,
                               void *user_data) {
  if (!s) return;
  s->on_chunk = on_chunk;
  s->on_malformed = on_malformed;
  s->user_data = user_data;
}

int mlt_chat_stream_set_max_event_bytes(mlt_chat_stream *s, size_t max_event_bytes) {
  return s ? mlt_sse_parser_set_max_event_bytes(s->parser, max_event_bytes) : MLT_EINVAL;
}

int mlt_chat_stream_is_done(const mlt_chat_stream *s) { return s && s->done; }

/* Copy cJSON's output into a buffer from malloc() (cJSON may use other
 * allocation hooks) and free the tree. */
static char *print_and_delete(cJSON *root, size_t *len) {
  char *txt = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (!txt) return NULL;
  size_t n = strlen(txt);
  char *out = malloc(n + 1);
  if (out) memcpy(out, txt, n + 1);
  cJSON_free(txt);
  if (out && len) *len = n;
  return out;
}


/* ---- the assembled chat.completion ------------------------------------ */

/* Written directly, byte for byte as cJSON_PrintUnformatted() prints the
 * same object (tests/unit/test_chat_scan.c checks print(parse(x)) == x):
 * building a cJSON tree to print it once cost ~20 allocations per call. */
typedef struct jw {
  char *p;
  size_t len, cap; /* cap - len > 0 always: room for the closing NUL */
  int heap;        /* p is from malloc() (else the caller's buffer) */
  int oom;
} jw;

/* Room for @p n more bytes (and the NUL): the write position, or NULL once
 * out of memory (then cap == len, so every later request comes here). */
static __attribute__((noinline)) char *jw_grow(jw *w, size_t n) {
  if (w->oom) return NULL;
  if (n > ((size_t)-1) / 4 - w->len) goto oom;
  size_t cap = w->cap ? w->cap : 256;
  while (cap - w->len <= n) cap *= 2;
  char *q = w->heap ? realloc(w->p, cap) : malloc(cap);
  if (!q) goto oom;
  if (!w->heap && w->len) memcpy(q, w->p, w->len);
  w->p = q;
  w->cap = cap;
  w->heap = 1;
  return w->p + w->len;
oom:
  w->oom = 1;
  w->cap = w->len;
  return NULL;
}

static inline char *jw_room(jw *w, size_t n) { return w->cap - w->len > n ? w->p + w->len : jw_grow(w, n); }

static inline void jw_put(jw *w, const char *b, size_t n) {
  char *o = jw_room(w, n);
  if (!o) return;
  memcpy(o, b, n);
  w->len += n;
}

#define JW_LIT(w, lit) jw_put((w), (lit), sizeof(lit) - 1)

/* Bytes a JSON string must escape as cJSON does: ", \ and the control
 * characters (NUL included: it ends the string). */
static const unsigned char jw_esc[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};

#define JW_ONES 0x0101010101010101ULL
/* Whether any of the 8 bytes of @p x is one jw_esc[] marks (exact as a
 * whole: a byte below 0x20, a quote, a backslash). */
static inline int jw_word_esc(uint64_t x) {
  uint64_t q = x ^ (JW_ONES * '"'), b = x ^ (JW_ONES * '\\');
  uint64_t t = ((x - JW_ONES * 0x20) & ~x) | ((q - JW_ONES) & ~q) | ((b - JW_ONES) & ~b);
  return (t & (JW_ONES * 0x80)) != 0;
}

/* @p n bytes of @p v as a JSON string, as cJSON prints one: ", \ and the
 * control characters escaped (\b \f \n \r \t, else \u00xx), every other byte
 * as it is; an embedded NUL ends the string (as a C string's end would). */
static void jw_strn(jw *w, const char *v, size_t n) {
  char *o = jw_room(w, n + 2);
  if (!o) return;
  *o++ = '"';
  size_t i = 0, seg = 0; /* v[seg, i) went out as it is, to o - (i - seg) */
  for (;;) {
    while (i + 8 <= n) {
      uint64_t x;
      memcpy(&x, v + i, 8);
      if (jw_word_esc(x)) break;
      memcpy(o, &x, 8);
      o += 8;
      i += 8;
    }
    if (i < n && i + 8 > n && n >= 8 && n - 8 >= seg) {
      /* the last 1..7 bytes: the string's last word, overlapping bytes
       * already written the same */
      uint64_t x;
      memcpy(&x, v + n - 8, 8);
      if (!jw_word_esc(x)) {
        memcpy(o - (i - (n - 8)), &x, 8);
        o += n - i;
        i = n;
      }
    }
    while (i < n && !jw_esc[(unsigned char)v[i]]) *o++ = v[i++];
    if (i == n) break;
    unsigned char c = (unsigned char)v[i++];
    if (!c) break;
    /* an escape takes up to 6 bytes where the room counted 1 */
    w->len = (size_t)(o - w->p);
    if (!(o = jw_room(w, n - i + 7))) return;
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    default:
      *o++ = 'u';
      *o++ = '0';
      *o++ = '0';
      *o++ = "0123456789abcdef"[c >> 4];
      *o++ = "0123456789abcdef"[c & 15];
      break;
    }
    seg = i;
  }
  *o++ = '"';
  w->len = (size_t)(o - w->p);
}

static void jw_str(jw *w, const char *v) { jw_strn(w, v, strlen(v)); }

static void jw_cs(jw *w, const cs_str *v) { jw_strn(w, str_get(v), v->len); }

/* A number as cJSON (1.7) prints one: %1.15g, or %1.17g when that does not
 * read back; NaN and infinities as null. */
static void jw_num(jw *w, double d) {
  char b[32];
  int n;
  /* (the range first: converting a double outside long long's is undefined) */
  if (d > -1e15 && d < 1e15 && d == (double)(long long)d && !(d == 0 && signbit(d))) {
    /* an integer of at most 15 digits: %1.15g prints its digits */
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    long long v = (long long)d;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    char *p = b + sizeof b;
    while (u >= 100) { /* two digits a step */
      unsigned r = (unsigned)(u % 100);
      u /= 100;
      p -= 2;
      memcpy(p, pairs + 2 * r, 2);
    }
    if (u >= 10) {
      p -= 2;
      memcpy(p, pairs + 2 * u, 2);
    } else {
      *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    jw_put(w, p, (size_t)(b + sizeof b - p));
    return;
  }
  if (isnan(d) || isinf(d)) {
    n = snprintf(b, sizeof b, "null");
  } else {
    /* in the "C" locale: JSON wants a dot, as cJSON's printer gives */
    locale_t c = c_numeric(), old = c ? uselocale(c) : (locale_t)0;
    n = snprintf(b, sizeof b, "%1.15g", d);
    double back = 0;
    if (sscanf(b, "%lg", &back) != 1 || !(fabs(back - d) <= (fabs(back) > fabs(d) ? fabs(back) : fabs(d)) * DBL_EPSILON))
      n = snprintf(b, sizeof b, "%1.17g", d);
    if (c) uselocale(old);
  }
  jw_put(w, b, (size_t)n);
}

/* A parsed value, as cJSON prints it (its type read directly: the
 * cJSON_Is*() tests are calls into the library). */
static void jw_cjson(jw *w, const cJSON *v) {
  switch (v ? v->type & 0xFF : cJSON_Invalid) {
  case cJSON_Object:
  case cJSON_Array: {
    int obj = (v->type & 0xFF) == cJSON_Object;
    jw_put(w, obj ? "{" : "[", 1);
    for (const cJSON *c = v->child; c; c = c->next) {
      if (c != v->child) JW_LIT(w, ",");
      if (obj) {
        jw_str(w, c->string ? c->string : "");
        JW_LIT(w, ":");
      }
      jw_cjson(w, c);
    }
    jw_put(w, obj ? "}" : "]", 1);
    return;
  }
  case cJSON_String: jw_str(w, v->valuestring ? v->valuestring : ""); return;
  case cJSON_Number: jw_num(w, v->valuedouble); return;
  case cJSON_True: JW_LIT(w, "true"); return;
  case cJSON_False: JW_LIT(w, "false"); return;
  case cJSON_NULL: JW_LIT(w, "null"); return;
  case cJSON_Raw:
    if (v->valuestring) {
      jw_put(w, v->valuestring, strlen(v->valuestring));
      return;
    }
    break;
  default: break;
  }
  /* an invalid item, a raw one without text: cJSON prints nothing */
  if (!w->oom) {
    if (w->heap) free(w->p);
    w->p = NULL;
    w->heap = 0;
    w->oom = 1;
    w->cap = w->len;
  }
}

/* Ends the text (NUL); its buffer, or NULL (freed) when out of memory. */
static char *jw_finish(jw *w, size_t *len) {
  if (w->oom) {
    if (w->heap) free(w->p);
    w->p = NULL;
    return NULL;
  }
  w->p[w->len] = '\0';
  if (len) *len = w->len;
  return w->p;
}

char *mlt__json_print(const cJSON *v, char *buf, size_t cap, size_t *len) {
  if (len) *len = 0;
  if (!v) return NULL;
  jw w = {buf && cap ? buf : NULL, 0, buf ? cap : 0, 0, 0};
  if (!w.p) w.cap = 0;
  jw_cjson(&w, v);
  return jw_finish(&w, len);
}

static void put_choice(jw *w, const cs_choice *c) {
  JW_LIT(w, "{\"index\":");
  jw_num(w, (double)c->index);
  JW_LIT(w, ",\"message\":{\"role\":");
  jw_str(w, c->role.len ? c->role.p : "assistant");
  JW_LIT(w, ",\"content\":");
  if (c->has_content)
    jw_cs(w, &c->content);
  else
    JW_LIT(w, "null");
  if (c->has_refusal) {
    JW_LIT(w, ",\"refusal\":");
    jw_cs(w, &c->refusal);
  }
  if (c->ncalls) {
    JW_LIT(w, ",\"tool_calls\":[");
    for (size_t i = 0; i < c->ncalls; i++) {
      const cs_tool_call *t = &c->calls[i];
      if (i) JW_LIT(w, ",");
      JW_LIT(w, "{\"id\":");
      jw_cs(w, &t->id);
      JW_LIT(w, ",\"type\":");
      jw_str(w, t->type.len ? t->type.p : "function");
      JW_LIT(w, ",\"function\":{\"name\":");
      jw_cs(w, &t->name);
      JW_LIT(w, ",\"arguments\":");
      jw_cs(w, &t->args);
      JW_LIT(w, "}}");
    }
    JW_LIT(w, "]");
  }
  JW_LIT(w, "},\"finish_reason\":");
  if (c->finish_reason.len)
    jw_cs(w, &c->finish_reason);
  else
    JW_LIT(w, "null");
  JW_LIT(w, "}");
}

char *mlt_chat_stream_result_json(const mlt_chat_stream *s, size_t *len) {
  if (len) *len = 0;
  if (!s) return NULL;
  if (s->responses) return print_and_delete(response_result(s), len);
  /* One buffer of about the right size: the strings, the members' names
   * and punctuation, the usage object's few dozen bytes (escapes may grow
   * it). */
  size_t est = 192 + s->id.len + s->model.len + s->fingerprint.len + (s->usage ? 256 : 0);
  for (size_t i = 0; i < s->nchoices; i++) {
    const cs_choice *c = &s->choices[i];
    est += 112 + c->role.len + c->content.len + c->refusal.len + c->finish_reason.len;
    for (size_t k = 0; k < c->ncalls; k++)
      est += 80 + c->calls[k].id.len + c->calls[k].type.len + c->calls[k].name.len + c->calls[k].args.len;
  }
  jw w = {malloc(est), 0, est, 1, 0};
  if (!w.p) return NULL;
  JW_LIT(&w, "{\"id\":");
  jw_cs(&w, &s->id);
  JW_LIT(&w, ",\"object\":\"chat.completion\",\"created\":");
  jw_num(&w, s->created);
  JW_LIT(&w, ",\"model\":");
  jw_cs(&w, &s->model);
  if (s->has_fingerprint) {
    JW_LIT(&w, ",\"system_fingerprint\":");
    jw_cs(&w, &s->fingerprint);
  }
  JW_LIT(&w, ",\"choices\":[");
  for (size_t i = 0; i < s->nchoices; i++) {
    if (i) JW_LIT(&w, ",");
    put_choice(&w, &s->choices[i]);
  }
  JW_LIT(&w, "]");
  if (s->usage) {
    JW_LIT(&w, ",\"usage\":");
    jw_cjson(&w, s->usage);
  }
  JW_LIT(&w, "}");
  return jw_finish(&w, len);
}

/* A token count member as an integer (0 when absent or unusable). */
static long long token_count(const cJSON *usage, const char *key, int *found) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, key);
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= -9e18 && v->valuedouble <= 9e18)) return 0;
  *found = 1;
  return (long long)v->valuedouble;
}

char *mlt_chat_stream_usage_json(const mlt_chat_stream *s) {
  if (!s || !s->usage) return NULL;
  int has_total = 0, unused = 0, responses = !cJSON_HasObjectItem(s->usage, "prompt_tokens") &&
                                           cJSON_HasObjectItem(s->usage, "input_tokens");
  long long in = token_count(s->usage, responses ? "input_tokens" : "prompt_tokens", &unused);
  long long out = token_count(s->usage, responses ? "output_tokens" : "completion_tokens", &unused);
  long long total = token_count(s->usage, "total_tokens", &has_total);
  if (!has_total) total = in + out;
  char buf[128];
  int n = snprintf(buf, sizeof buf, "{\"input_tokens\":%lld,\"output_tokens\":%lld,\"total_tokens\":%lld}", in, out,
                   total);
  char *txt = n > 0 && (size_t)n < sizeof buf ? malloc((size_t)n + 1) : NULL;
  if (txt) memcpy(txt, buf, (size_t)n + 1);
  return txt;
}

const char *mlt_chat_stream_model(const mlt_chat_stream *s) { return s ? str_get(&s->model) : ""; }

const char *mlt_chat_stream_content(const mlt_chat_stream *s, size_t *len) {
  if (s && s->responses) {
    if (len) *len = s->rtext.len;
    return str_get(&s->rtext);
  }
  const cs_choice *c = find_choice(s, 0);
  if (len) *len = c ? c->content.len : 0;
  return c ? str_get(&c->content) : "";
}

const char *mlt_chat_stream_finish_reason(const mlt_chat_stream *s) {
  if (s && s->responses) {
    const char *st = s->terminal ? get_string(s->response, "status") : NULL;
    return st ? st : "";
  }
  const cs_choice *c = find_choice(s, 0);
  return c ? str_get(&c->finish_reason) : "";
}

size_t mlt_chat_stream_chunk_count(const mlt_chat_stream *s) { return s ? s->chunks : 0; }

size_t mlt_chat_stream_malformed_count(const mlt_chat_stream *s) { return s ? s->malformed : 0; }

const char *mlt_chat_stream_error_message(const mlt_chat_stream *s) {
  return s && s->has_error ? str_get(&s->error) : NULL;
}

/* ---- internal (curl-internal.h) ---------------------------------------- */

void mlt__chat_stream_set_json_hook(mlt_chat_stream *s, mlt__chat_json_hook fn) {
  if (s) s->json_hook = fn;
}

void mlt__chat_stream_set_scan(mlt_chat_stream *s, int on) {
  if (s) s->no_scan = !on;
}

int mlt__chat_stream_is_responses(const mlt_chat_stream *s) { return s && s->responses; }

const struct cJSON *mlt__chat_stream_usage(const mlt_chat_stream *s) { return s ? s->usage : NULL; }
