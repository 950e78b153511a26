/* chat_stream.c: assembles an OpenAI-compatible chat.completion.chunk stream
 * into a chat.completion object, or an OpenAI Responses API event stream
 * into its Response object.  See <mltrace/sse.h>.
 */
#include "curl-internal.h"

#include <mltrace/sse.h>

#include <cjson/cJSON.h>
#include <math.h>
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
    size_t ncap = *cap ? *cap * 2 : 2;
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

static int merge_choice(mlt_chat_stream *s, const cJSON *ch, long dflt_index, int *bad, const char **delta_text) {
  long index;
  if (!cJSON_IsObject(ch) || !get_index(ch, dflt_index, &index)) {
    *bad = 1;
    return MLT_OK;
  }
  int nomem;
  size_t before = s->nchoices;
  void *arr = s->choices;
  long pos = find_or_insert(&arr, &s->nchoices, &s->cap_choices, sizeof *s->choices, CS_MAX_CHOICES, index, &nomem);
  s->choices = arr;
  if (pos < 0) {
    if (nomem) return MLT_ENOMEM;
    *bad = 1;
    return MLT_OK;
  }
  cs_choice *c = &s->choices[pos];
  if (s->nchoices != before) c->last_call = -1;
  int rc = MLT_OK;
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
      if (s->json_hook) s->json_hook(event, event_len, data, len, j, delta, s->user_data);
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
      if (s->json_hook) s->json_hook(event, event_len, data, len, j, delta, s->user_data);
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


static int build_choice(cJSON *arr, const cs_choice *c) {
  cJSON *o = cJSON_CreateObject(), *msg;
  if (!o || !cJSON_AddItemToArray(arr, o)) {
    cJSON_Delete(o);
    return 0;
  }
  if (!cJSON_AddNumberToObject(o, "index", (double)c->index) || !(msg = cJSON_AddObjectToObject(o, "message")))
    return 0;
  if (!cJSON_AddStringToObject(msg, "role", c->role.len ? c->role.p : "assistant")) return 0;
  if (!(c->has_content ? add_str(msg, "content", &c->content) : cJSON_AddNullToObject(msg, "content"))) return 0;
  if (c->has_refusal && !add_str(msg, "refusal", &c->refusal)) return 0;
  if (c->ncalls) {
    cJSON *calls = cJSON_AddArrayToObject(msg, "tool_calls");
    if (!calls) return 0;
    for (size_t i = 0; i < c->ncalls; i++) {
      const cs_tool_call *t = &c->calls[i];
      cJSON *tc = cJSON_CreateObject(), *fn;
      if (!tc || !cJSON_AddItemToArray(calls, tc)) {
        cJSON_Delete(tc);
        return 0;
      }
      if (!add_str(tc, "id", &t->id) ||
          !cJSON_AddStringToObject(tc, "type", t->type.len ? t->type.p : "function") ||
          !(fn = cJSON_AddObjectToObject(tc, "function")) || !add_str(fn, "name", &t->name) ||
          !add_str(fn, "arguments", &t->args))
        return 0;
    }
  }
  return c->finish_reason.len ? add_str(o, "finish_reason", &c->finish_reason) != NULL
                              : cJSON_AddNullToObject(o, "finish_reason") != NULL;
}

char *mlt_chat_stream_result_json(const mlt_chat_stream *s, size_t *len) {
  if (len) *len = 0;
  if (!s) return NULL;
  if (s->responses) return print_and_delete(response_result(s), len);
  cJSON *root = cJSON_CreateObject(), *choices;
  int ok = root && add_str(root, "id", &s->id) &&
           cJSON_AddStringToObject(root, "object", "chat.completion") &&
           cJSON_AddNumberToObject(root, "created", s->created) && add_str(root, "model", &s->model) &&
           (!s->has_fingerprint || add_str(root, "system_fingerprint", &s->fingerprint)) &&
           (choices = cJSON_AddArrayToObject(root, "choices"));
  for (size_t i = 0; ok && i < s->nchoices; i++) ok = build_choice(choices, &s->choices[i]);
  if (ok && s->usage) {
    cJSON *u = cJSON_Duplicate(s->usage, 1);
    ok = u && cJSON_AddItemToObject(root, "usage", u);
    if (!ok) cJSON_Delete(u);
  }
  if (!ok) {
    cJSON_Delete(root);
    return NULL;
  }
  return print_and_delete(root, len);
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

int mlt__chat_stream_is_responses(const mlt_chat_stream *s) { return s && s->responses; }
