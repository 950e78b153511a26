/* integrations/curl/call.c: an LLM call made with libcurl as one span.
 * See <mltrace/curl.h>.
 *
 * The write path (on_write) is the per-chunk hot path: it forwards the bytes
 * to the application's write callback, then feeds exactly the bytes it
 * accepted to the chat stream aggregator, whose chunk hook records the chunk
 * on the span and calls the delta callback.  Everything else (request
 * parsing, header list, outcome) runs once per call.
 */
#include "curl-internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef CURL_WRITEFUNC_ERROR /* libcurl < 7.87: any count but the size fails */
#define CURL_WRITEFUNC_ERROR 0xFFFFFFFF
#endif

#define DEFAULT_SPAN_NAME "chat.completions"
#define RESPONSES_SPAN_NAME "responses"
#define DEFAULT_MAX_BODY ((size_t)1 << 20)
#define MAX_MAX_BODY ((size_t)1 << 30)
#define DEFAULT_MAX_CHUNK_EVENTS 1000u
#define MALFORMED_DATA_BYTES 256

/* ==== options ========================================================= */

struct mlt_curl_options {
  char *span_name;
  char *provider;
  mlt_span_type type;
  mlt_curl_stream_mode stream;
  int send_body, inject, require_done;
  size_t max_body;
  uint32_t max_chunk_events;
};

static const mlt_curl_options default_options = {
    NULL, NULL, MLT_SPAN_CHAT_MODEL, MLT_CURL_STREAM_AUTO, 1, 1, 1, DEFAULT_MAX_BODY, DEFAULT_MAX_CHUNK_EVENTS};

int mlt_curl_options_new(mlt_curl_options **out) {
  if (!out) return MLT_EINVAL;
  *out = malloc(sizeof **out);
  if (!*out) return MLT_ENOMEM;
  **out = default_options;
  return MLT_OK;
}

void mlt_curl_options_free(mlt_curl_options *opts) {
  if (!opts) return;
  free(opts->span_name);
  free(opts->provider);
  free(opts);
}

static int set_string(char **dst, const char *value) {
  char *copy = NULL;
  if (value && !(copy = strdup(value))) return MLT_ENOMEM;
  free(*dst);
  *dst = copy;
  return MLT_OK;
}

int mlt_curl_options_set_span_name(mlt_curl_options *opts, const char *name) {
  return opts ? set_string(&opts->span_name, name) : MLT_EINVAL;
}

int mlt_curl_options_set_span_type(mlt_curl_options *opts, mlt_span_type type) {
  if (!opts || (int)type < 0 || type >= MLT__SPAN_TYPE_COUNT) return MLT_EINVAL;
  opts->type = type;
  return MLT_OK;
}

int mlt_curl_options_set_provider(mlt_curl_options *opts, const char *provider) {
  return opts ? set_string(&opts->provider, provider) : MLT_EINVAL;
}

int mlt_curl_options_set_stream(mlt_curl_options *opts, mlt_curl_stream_mode mode) {
  if (!opts || (mode != MLT_CURL_STREAM_AUTO && mode != MLT_CURL_STREAM_ON && mode != MLT_CURL_STREAM_OFF))
    return MLT_EINVAL;
  opts->stream = mode;
  return MLT_OK;
}

int mlt_curl_options_set_send_body(mlt_curl_options *opts, int send) {
  if (!opts) return MLT_EINVAL;
  opts->send_body = send != 0;
  return MLT_OK;
}

int mlt_curl_options_set_inject_traceparent(mlt_curl_options *opts, int inject) {
  if (!opts) return MLT_EINVAL;
  opts->inject = inject != 0;
  return MLT_OK;
}

int mlt_curl_options_set_require_done(mlt_curl_options *opts, int require) {
  if (!opts) return MLT_EINVAL;
  opts->require_done = require != 0;
  return MLT_OK;
}

int mlt_curl_options_set_max_body_bytes(mlt_curl_options *opts, size_t bytes) {
  if (!opts || bytes > MAX_MAX_BODY) return MLT_EINVAL;
  opts->max_body = bytes;
  return MLT_OK;
}

int mlt_curl_options_set_max_chunk_events(mlt_curl_options *opts, uint32_t max) {
  if (!opts) return MLT_EINVAL;
  opts->max_chunk_events = max;
  return MLT_OK;
}

/* ==== small helpers =================================================== */

static int buf_append(mlt__curl_buf *b, const char *s, size_t n) {
  if (!b->p || b->cap - b->len <= n) {
    if (n > SIZE_MAX / 2 - b->len - 1) return MLT_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return MLT_ENOMEM;
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return MLT_OK;
}

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* cJSON's text (as cJSON_PrintUnformatted() prints it) in a malloc()
 * buffer. */
static char *print_json(const cJSON *j, size_t *len) { return mlt__json_print(j, NULL, 0, len); }

static const char *json_string(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Parse exactly @p len bytes of JSON (whitespace around allowed), or NULL. */
static cJSON *parse_exact(const char *s, size_t len) {
  if (!s || !len) return NULL;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  if (!j) return NULL;
  for (const char *p = end; p < s + len; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
      cJSON_Delete(j);
      return NULL;
    }
  }
  return j;
}

/* An integer member of a usage object: 1 with *out set, 0 when absent. */
static int usage_count(const cJSON *obj, const char *key, long long *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= -9e18 && v->valuedouble <= 9e18)) return 0;
  *out = (long long)v->valuedouble;
  return 1;
}

/* MLflow's mlflow.chat.tokenUsage from an OpenAI "usage" object, formatted
 * as Python's json.dumps() formats it (key order of MLflow's
 * _parse_chat_completion_usage). */
static char *usage_text(const cJSON *usage) {
  if (!cJSON_IsObject(usage)) return NULL;
  long long in = 0, out = 0, total = 0, cached = 0, created = 0;
  /* Responses API usage: input_tokens, output_tokens, input_tokens_details */
  int responses = !cJSON_HasObjectItem(usage, "prompt_tokens") && cJSON_HasObjectItem(usage, "input_tokens");
  usage_count(usage, responses ? "input_tokens" : "prompt_tokens", &in);
  usage_count(usage, responses ? "output_tokens" : "completion_tokens", &out);
  if (!usage_count(usage, "total_tokens", &total)) total = in + out;
  int has_cached =
      usage_count(cJSON_GetObjectItemCaseSensitive(usage, responses ? "input_tokens_details" : "prompt_tokens_details"),
                  "cached_tokens", &cached) ||
      usage_count(usage, "cache_read_input_tokens", &cached);
  int has_created = usage_count(usage, "cache_creation_input_tokens", &created);
  char buf[256];
  int n = snprintf(buf, sizeof buf, "{\"input_tokens\": %lld, \"output_tokens\": %lld, \"total_tokens\": %lld", in,
                   out, total);
  if (has_cached) n += snprintf(buf + n, sizeof buf - (size_t)n, ", \"cache_read_input_tokens\": %lld", cached);
  if (has_created) n += snprintf(buf + n, sizeof buf - (size_t)n, ", \"cache_creation_input_tokens\": %lld", created);
  n += snprintf(buf + n, sizeof buf - (size_t)n, "}");
  return n > 0 && (size_t)n < sizeof buf ? dup_n(buf, (size_t)n) : NULL;
}

/* The message of an OpenAI error body: error.message, error (a string),
 * message; NULL when none. */
static const char *error_message(const cJSON *j) {
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
  const char *m = cJSON_IsObject(err) ? json_string(err, "message") : NULL;
  if (!m && cJSON_IsString(err)) m = err->valuestring;
  if (!m) m = json_string(j, "message");
  return m;
}

/* url.full without credentials, query or fragment; NULL on failure. */
static char *sanitized_url(const char *url) {
  if (!url || !*url) return NULL;
  CURLU *u = curl_url();
  char *out = NULL, *txt = NULL;
  if (!u) return NULL;
  if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
    curl_url_set(u, CURLUPART_QUERY, NULL, 0);
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    if (curl_url_get(u, CURLUPART_URL, &txt, 0) == CURLUE_OK && txt) out = strdup(txt);
    curl_free(txt);
  }
  curl_url_cleanup(u);
  return out;
}

/* url.full: the effective URL sanitized.  A service calls the same few
 * endpoints again and again: the last one is kept per thread. */
static void set_url_attr(mlt_span span, const char *url) {
  static _Thread_local char last_raw[256], last_clean[256];
  if (!url || !*url) return;
  size_t n = strlen(url);
  if (n < sizeof last_raw && last_raw[0] && strcmp(last_raw, url) == 0) {
    mlt_span_set_attr_str(span, "url.full", last_clean);
    return;
  }
  char *clean = sanitized_url(url);
  if (!clean) return;
  mlt_span_set_attr_str(span, "url.full", clean);
  size_t cn = strlen(clean);
  if (n < sizeof last_raw && cn < sizeof last_clean) {
    memcpy(last_raw, url, n + 1);
    memcpy(last_clean, clean, cn + 1);
  }
  free(clean);
}

/* ==== request ========================================================= */

/* A Responses API request: "input" and no "messages". */
static int is_responses_request(const cJSON *req) {
  return cJSON_IsObject(req) && cJSON_HasObjectItem(req, "input") && !cJSON_HasObjectItem(req, "messages");
}

/* mlflow.chat.tools: the request's "tools" in the Chat Completions form
 * ({"type":"function","function":{...}}), as MLflow converts Responses API
 * tools ({"type":"function","name":...}; built-in tools become a function
 * named after their type).  NULL when there is nothing to record. */
static char *chat_tools_text(const cJSON *tools) {
  const cJSON *t;
  int convert = 0;
  cJSON_ArrayForEach(t, tools) {
    if (!cJSON_IsObject(t) || !cJSON_HasObjectItem(t, "function")) convert = 1;
  }
  if (!convert) return print_json(tools, NULL);
  cJSON *out = cJSON_CreateArray();
  cJSON_ArrayForEach(t, tools) {
    if (!cJSON_IsObject(t) || !out) continue;
    const char *type = json_string(t, "type");
    cJSON *o = cJSON_CreateObject(), *fn = NULL;
    if (!o || !cJSON_AddItemToArray(out, o)) {
      cJSON_Delete(o);
      break;
    }
    cJSON_AddStringToObject(o, "type", "function");
    if (cJSON_HasObjectItem(t, "function")) {
      cJSON_AddItemToObject(o, "function", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t, "function"), 1));
    } else if (!type || !strcmp(type, "function")) {
      fn = cJSON_AddObjectToObject(o, "function");
      const cJSON *m;
      cJSON_ArrayForEach(m, t) {
        if (fn && m->string && strcmp(m->string, "type") != 0)
          cJSON_AddItemToObject(fn, m->string, cJSON_Duplicate(m, 1));
      }
    } else if ((fn = cJSON_AddObjectToObject(o, "function")) != NULL) {
      cJSON_AddStringToObject(fn, "name", type);
    }
  }
  char *txt = print_json(out, NULL);
  cJSON_Delete(out);
  return txt;
}

/* Record the request: inputs, parameters as attributes (as MLflow's OpenAI
 * autolog does), tools, model; decide whether a stream is expected.
 * @p req: the body parsed (NULL when it is not JSON). */
static void record_request(mlt_curl_call *c, const mlt_curl_options *o, const char *body, size_t len,
                           const cJSON *req) {
  int recording = mlt_span_is_recording(c->span);
  c->streaming = o->stream == MLT_CURL_STREAM_ON;
  if (cJSON_IsObject(req)) {
    if (o->stream == MLT_CURL_STREAM_AUTO) c->streaming = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "stream"));
    const char *model = json_string(req, "model");
    if (model && *model) c->req_model = strdup(model);
  }
  if (!recording) return;
  if (req) {
    mlt_span_set_inputs_json_n(c->span, body, len);
  } else if (body) {
    char *copy = dup_n(body, len);
    if (copy) mlt_span_set_inputs(c->span, cJSON_CreateString(copy));
    free(copy);
  }
  mlt_span_set_attr_str(c->span, "mlflow.message.format", "openai");
  if (o->provider) mlt_span_set_attr_str(c->span, "mlflow.llm.provider", o->provider);
  if (cJSON_IsObject(req)) {
    const cJSON *item;
    cJSON_ArrayForEach(item, req) {
      const char *k = item->string;
      if (!k || (k[0] == 'm' && strcmp(k, "messages") == 0) || (k[0] == 'i' && strcmp(k, "input") == 0)) continue;
      char stack[256];
      char *txt = mlt__json_print(item, stack, sizeof stack, NULL);
      if (txt) mlt_span_set_attr_json(c->span, k, txt);
      if (txt != stack) free(txt);
      if (k[0] == 't' && strcmp(k, "tools") == 0 && cJSON_IsArray(item) && (txt = chat_tools_text(item)) != NULL) {
        mlt_span_set_attr_json(c->span, "mlflow.chat.tools", txt);
        free(txt);
      }
    }
    if (c->req_model) mlt_span_set_attr_str(c->span, "mlflow.llm.model", c->req_model);
  }
}

/* Copy the caller's headers (minus any traceparent when injecting) and add
 * Content-Type when the call sends a JSON body without one. */
static int copy_headers(mlt_curl_call *c, const mlt_curl_options *o, const struct curl_slist *user, int json_body) {
  struct curl_slist *list = NULL, *tmp;
  int has_ct = 0;
  for (const struct curl_slist *h = user; h; h = h->next) {
    if (!h->data) continue;
    if (o->inject && strncasecmp(h->data, "traceparent", 11) == 0 && (h->data[11] == ':' || h->data[11] == ';'))
      continue;
    if (strncasecmp(h->data, "content-type", 12) == 0 && (h->data[12] == ':' || h->data[12] == ';')) has_ct = 1;
    if (!(tmp = curl_slist_append(list, h->data))) goto nomem;
    list = tmp;
  }
  if (json_body && !has_ct) {
    if (!(tmp = curl_slist_append(list, "Content-Type: application/json"))) goto nomem;
    list = tmp;
  }
  c->headers = list;
  return MLT_OK;
nomem:
  curl_slist_free_all(list);
  return MLT_ENOMEM;
}

/* Append "traceparent: ..." for the span (or, tracing off, the parent):
 * a list node inside the call (curl only reads the list; headers_free()
 * unlinks the node before curl's free), which saves two allocations. */
static void add_traceparent(mlt_curl_call *c, const mlt_context *parent) {
  _Static_assert(sizeof c->tp_line >= MLT_TRACEPARENT_SIZE + 13, "room for the header");
  const mlt_context *src = c->ctx ? c->ctx : parent;
  memcpy(c->tp_line, "traceparent: ", 13);
  if (!src || mlt_context_to_traceparent(src, c->tp_line + 13, sizeof c->tp_line - 13) != MLT_OK) return;
  c->tp_node.data = c->tp_line;
  c->tp_node.next = NULL;
  struct curl_slist **tail = &c->headers;
  while (*tail) tail = &(*tail)->next;
  *tail = &c->tp_node;
}

/* Free the header list (the call's own traceparent node unlinked first). */
static void headers_free(mlt_curl_call *c) {
  struct curl_slist **pp = &c->headers;
  while (*pp && *pp != &c->tp_node) pp = &(*pp)->next;
  *pp = NULL;
  curl_slist_free_all(c->headers);
  c->headers = NULL;
}

/* ==== response: the write path ======================================== */

/* Room for @p n choices and @p ntools tool deltas in the call's scratch. */
static int reserve_scratch(mlt_curl_call *c, size_t n, size_t ntools) {
  if (n > c->sc_choices_cap) {
    void *q = realloc(c->sc_choices, n * sizeof *c->sc_choices);
    if (!q) return MLT_ENOMEM;
    c->sc_choices = q;
    c->sc_choices_cap = n;
  }
  if (ntools > c->sc_tools_cap) {
    void *q = realloc(c->sc_tools, ntools * sizeof *c->sc_tools);
    if (!q) return MLT_ENOMEM;
    c->sc_tools = q;
    c->sc_tools_cap = ntools;
  }
  return MLT_OK;
}

static const char *str_or_empty(const cJSON *obj, const char *key, size_t *len) {
  const char *v = json_string(obj, key);
  if (len) *len = v ? strlen(v) : 0;
  return v ? v : "";
}

static void tool_delta_from(mlt_curl_tool_delta *t, const cJSON *tc, int dflt_index) {
  const cJSON *idx = cJSON_GetObjectItemCaseSensitive(tc, "index");
  const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
  t->index = cJSON_IsNumber(idx) ? idx->valueint : dflt_index;
  t->id = str_or_empty(tc, "id", NULL);
  t->name = str_or_empty(fn, "name", NULL);
  t->arguments = str_or_empty(fn, "arguments", &t->arguments_len);
}

/* The chunk callback's view of a chat.completion.chunk. */
static int chat_chunk_view(mlt_curl_call *c, const cJSON *j, mlt_curl_chunk *out) {
  const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices"), *ch;
  size_t n = 0, ntools = 0;
  cJSON_ArrayForEach(ch, choices) {
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "tool_calls");
    n++;
    if (cJSON_IsArray(calls)) ntools += (size_t)cJSON_GetArraySize(calls);
  }
  if (reserve_scratch(c, n, ntools) != MLT_OK) return MLT_ENOMEM;
  size_t i = 0, k = 0;
  cJSON_ArrayForEach(ch, choices) {
    mlt_curl_choice_delta *d = &c->sc_choices[i];
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(ch, "index");
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls"), *tc;
    d->index = cJSON_IsNumber(idx) ? idx->valueint : (int)i;
    d->role = str_or_empty(delta, "role", NULL);
    d->content = str_or_empty(delta, "content", &d->content_len);
    d->refusal = str_or_empty(delta, "refusal", &d->refusal_len);
    d->finish_reason = str_or_empty(ch, "finish_reason", NULL);
    d->tool_calls = NULL;
    d->n_tool_calls = 0;
    if (cJSON_IsArray(calls)) {
      d->tool_calls = c->sc_tools + k;
      int pos = 0;
      cJSON_ArrayForEach(tc, calls) { tool_delta_from(&c->sc_tools[k++], tc, pos++); }
      d->n_tool_calls = (size_t)pos;
      if (!pos) d->tool_calls = NULL;
    }
    i++;
  }
  const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
  out->api = MLT_CURL_API_CHAT;
  out->choices = n ? c->sc_choices : NULL;
  out->n_choices = n;
  out->has_usage = cJSON_IsObject(usage);
  return MLT_OK;
}

/* The chunk callback's view of a Responses API event: text and function
 * call data as one choice (index 0), function calls by output_index. */
static int responses_chunk_view(mlt_curl_call *c, const cJSON *j, mlt_curl_chunk *out) {
  const char *type = json_string(j, "type");
  const cJSON *oi = cJSON_GetObjectItemCaseSensitive(j, "output_index");
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(j, "item");
  const char *item_type = json_string(item, "type");
  int index = cJSON_IsNumber(oi) ? oi->valueint : 0;
  out->api = MLT_CURL_API_RESPONSES;
  out->choices = NULL;
  out->n_choices = 0;
  out->has_usage = 0;
  if (!type) return MLT_OK;
  if (!strcmp(type, "response.completed") || !strcmp(type, "response.incomplete"))
    out->has_usage = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "response"), "usage"));
  int text = !strcmp(type, "response.output_text.delta");
  int args = !strcmp(type, "response.function_call_arguments.delta");
  int call = !strcmp(type, "response.output_item.added") && item_type && !strcmp(item_type, "function_call");
  if (!text && !args && !call) return MLT_OK;
  if (reserve_scratch(c, 1, 1) != MLT_OK) return MLT_ENOMEM;
  mlt_curl_choice_delta *d = c->sc_choices;
  memset(d, 0, sizeof *d);
  d->role = d->refusal = d->finish_reason = d->content = "";
  if (text) {
    d->content = str_or_empty(j, "delta", &d->content_len);
  } else {
    mlt_curl_tool_delta *t = c->sc_tools;
    t->index = index;
    if (args) {
      t->id = t->name = "";
      t->arguments = str_or_empty(j, "delta", &t->arguments_len);
    } else {
      t->id = str_or_empty(item, "call_id", NULL);
      t->name = str_or_empty(item, "name", NULL);
      t->arguments = str_or_empty(item, "arguments", &t->arguments_len);
    }
    d->tool_calls = t;
    d->n_tool_calls = 1;
  }
  out->choices = d;
  out->n_choices = 1;
  return MLT_OK;
}

/* Every valid chunk: record it on the span, then the application's chunk
 * and delta callbacks. */
static void on_chunk_json(const char *event, size_t event_len, const char *json, size_t len,
                          const struct cJSON *chunk, const mlt_curl_choice_delta *choices, size_t n_choices,
                          const char *delta, void *ud) {
  mlt_curl_call *c = ud;
  if (c->chunk_events < c->max_chunk_events && !mlt_span_is_none(c->span)) {
    c->chunk_events++;
    mlt_span_add_chunk_json(c->span, json, len);
  }
  if (!c->in_write || c->hook_stop || c->cancelled) return;
  if (c->chunk_fn) {
    mlt_curl_chunk view = {json, len, event, event_len, MLT_CURL_API_CHAT, NULL, 0, 0};
    int rc = MLT_OK;
    if (!chunk) { /* read by the chunk scanner */
      view.choices = n_choices ? choices : NULL;
      view.n_choices = n_choices;
    } else {
      rc = mlt__chat_stream_is_responses(c->stream) ? responses_chunk_view(c, chunk, &view)
                                                    : chat_chunk_view(c, chunk, &view);
    }
    if (rc == MLT_OK && c->chunk_fn(c, &view, c->chunk_ud) != 0) {
      c->hook_stop = 1;
      return;
    }
  }
  if (c->delta_fn) {
    if (c->delta_fn(c, json, len, delta ? delta : "", delta ? strlen(delta) : 0, c->delta_ud) != 0) c->hook_stop = 1;
  }
}

static void on_malformed(const char *reason, const char *data, size_t len, void *ud) {
  mlt_curl_call *c = ud;
  if (!mlt_span_is_recording(c->span)) return;
  size_t n = len < MALFORMED_DATA_BYTES ? len : MALFORMED_DATA_BYTES;
  mlt_attr a[2] = {{"mltrace.sse.reason", MLT_ATTR_STRING, {.s = reason}, MLT_NTS},
                   {"mltrace.sse.data", MLT_ATTR_STRING, {.s = data}, n}};
  mlt_span_add_event(c->span, "mltrace.sse.malformed", a, 2);
}

/* Choose how to read the response, at its first body byte. */
static void decide_mode(mlt_curl_call *c) {
  c->mode = MLT__CURL_BODY;
  if (!c->streaming) return;
  long code = 0;
  char *ct = NULL;
  curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct);
  int sse;
  if (ct && strncasecmp(ct, "text/event-stream", 17) == 0)
    sse = 1;
  else if (ct && strstr(ct, "json"))
    sse = 0;
  else
    sse = code < 400;
  if (sse) c->mode = MLT__CURL_SSE;
}

static size_t write_path(mlt_curl_call *c, char *ptr, size_t size, size_t nmemb);

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  mlt_curl_call *c = ud;
  mlt_curl_loop *loop = c->loop;
  if (!loop) return write_path(c, ptr, size, nmemb);
  mlt__curl_loop_enter_write(loop);
  size_t ret = write_path(c, ptr, size, nmemb);
  mlt__curl_loop_leave_write(loop);
  return ret;
}

static size_t write_path(mlt_curl_call *c, char *ptr, size_t size, size_t nmemb) {
  size_t total = size * nmemb;
  if (c->cancelled || c->hook_stop || c->done) return CURL_WRITEFUNC_ERROR;
  size_t ret = total;
  if (c->user_write) {
    ret = c->user_write(ptr, size, nmemb, c->user_wd);
    if (ret == CURL_WRITEFUNC_PAUSE) return ret; /* the same bytes come back */
  }
  size_t n = ret < total ? ret : total;
  if (n) {
    c->body_bytes += n;
    if (c->mode == MLT__CURL_UNDECIDED) decide_mode(c);
    if (c->mode == MLT__CURL_SSE) {
      c->in_write = 1;
      mlt_chat_stream_feed(c->stream, ptr, n);
      c->in_write = 0;
    } else if (c->body.len < c->max_body) {
      size_t room = c->max_body - c->body.len;
      buf_append(&c->body, ptr, n < room ? n : room);
    }
  }
  if (c->hook_stop || c->cancelled) return CURL_WRITEFUNC_ERROR;
  return ret;
}

/* ==== the call ======================================================== */

/* Give the handle's options back (see <mltrace/curl.h>). */
static void detach(mlt_curl_call *c) {
  if (!c->attached) return;
  c->attached = 0;
  curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  if (c->user_write) {
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, c->user_write);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c->user_wd);
  } else {
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, (curl_write_callback)NULL);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, (void *)stdout);
  }
  curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c->prev_private);
  headers_free(c);
}

int mlt_curl_call_new(CURL *easy, const mlt_context *parent, const mlt_curl_options *opts, const char *body,
                      size_t body_len, const struct curl_slist *headers, mlt_curl_call **out) {
  if (out) *out = NULL;
  if (!easy || !out) return MLT_EINVAL;
  const mlt_curl_options *o = opts ? opts : &default_options;
  if (body && body_len == MLT_NTS) body_len = strlen(body);
  if (!body) body_len = 0;
  mlt_curl_call *c = calloc(1, sizeof *c);
  if (!c) return MLT_ENOMEM;
  c->easy = easy;
  c->max_chunk_events = o->max_chunk_events;
  c->max_body = o->max_body;
  c->require_done = o->require_done;
  int send = o->send_body && body;
  /* Everything that can fail comes before the span starts. */
  int rc = mlt_chat_stream_new(&c->stream);
  if (!rc) rc = copy_headers(c, o, headers, send);
  if (!rc && send &&
      (curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) != CURLE_OK ||
       curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK))
    rc = MLT_ENOMEM;
  if (rc) {
    c->done = 1;
    mlt__curl_call_destroy(c);
    return rc;
  }
  mlt_chat_stream_set_hooks(c->stream, NULL, on_malformed, c);
  mlt__chat_stream_set_json_hook(c->stream, on_chunk_json);

  cJSON *req = parse_exact(body, body_len);
  const char *name = o->span_name ? o->span_name : is_responses_request(req) ? RESPONSES_SPAN_NAME : DEFAULT_SPAN_NAME;
  c->span = mlt_span_start_in(parent, name, o->type);
  c->ctx = mlt_context_capture(c->span);
  c->parent = mlt_context_retain((mlt_context *)parent);
  if (o->inject) add_traceparent(c, parent);
  record_request(c, o, body, body_len, req);
  cJSON_Delete(req);

  char *prev = NULL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, &prev);
  c->prev_private = prev;
  /* Plain pointer options: curl_easy_setopt() cannot fail on them. */
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, c->headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, (void *)c);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)c);
  c->attached = 1;
  *out = c;
  return MLT_OK;
}

int mlt_curl_call_set_write_fn(mlt_curl_call *call, curl_write_callback fn, void *user_data) {
  if (!call) return MLT_EINVAL;
  if (call->done) return MLT_EENDED;
  call->user_write = fn;
  call->user_wd = user_data;
  return MLT_OK;
}

int mlt_curl_call_set_delta_fn(mlt_curl_call *call, mlt_curl_delta_fn fn, void *user_data) {
  if (!call) return MLT_EINVAL;
  if (call->done) return MLT_EENDED;
  call->delta_fn = fn;
  call->delta_ud = user_data;
  return MLT_OK;
}

int mlt_curl_call_set_chunk_fn(mlt_curl_call *call, mlt_curl_chunk_fn fn, void *user_data) {
  if (!call) return MLT_EINVAL;
  if (call->done) return MLT_EENDED;
  call->chunk_fn = fn;
  call->chunk_ud = user_data;
  return MLT_OK;
}

/* The output text of a Responses API Response: the "text" of every
 * output_text part of its message items, concatenated (malloc'ed). */
static char *response_output_text(const cJSON *resp, size_t *len) {
  mlt__curl_buf b = {0};
  const cJSON *item, *part;
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(resp, "output")) {
    const char *type = json_string(item, "type");
    if (!type || strcmp(type, "message") != 0) continue;
    cJSON_ArrayForEach(part, cJSON_GetObjectItemCaseSensitive(item, "content")) {
      const char *pt = json_string(part, "type"), *text = json_string(part, "text");
      if (pt && !strcmp(pt, "output_text") && text) buf_append(&b, text, strlen(text));
    }
  }
  if (!b.p) buf_append(&b, "", 0);
  *len = b.p ? b.len : 0;
  return b.p;
}

/* The non-streamed body as outputs; model, usage, content from it. */
static cJSON *finish_body(mlt_curl_call *c) {
  if (!c->body.len) return NULL;
  cJSON *j = parse_exact(c->body.p, c->body.len);
  if (j) { /* the JSON text without the whitespace around it */
    const char *p = c->body.p, *e = c->body.p + c->body.len;
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
    c->result_len = (size_t)(e - p);
    c->result_json = dup_n(p, c->result_len);
    if (c->result_json) mlt_span_set_outputs_json_n(c->span, c->result_json, c->result_len);
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(choice, "message");
    const char *content = json_string(msg, "content");
    if (!content) content = json_string(choice, "text"); /* completions API */
    if (content) {
      c->content_len = strlen(content);
      c->content = dup_n(content, c->content_len);
    } else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "output"))) {
      c->content = response_output_text(j, &c->content_len); /* Responses API */
    }
    const char *fr = json_string(choice, "finish_reason");
    if (!fr && !choice) fr = json_string(j, "status"); /* Responses API */
    if (fr) c->finish_reason = strdup(fr);
    const char *model = json_string(j, "model");
    if (model && *model) c->model = strdup(model);
    c->usage_json = usage_text(cJSON_GetObjectItemCaseSensitive(j, "usage"));
    return j;
  }
  /* Not JSON (or cut at max_body): record it as a string. */
  if (c->body_bytes > c->body.len) {
    char mark[80];
    snprintf(mark, sizeof mark, "...[truncated by mltrace_curl: %" PRIu64 " bytes]", c->body_bytes);
    buf_append(&c->body, mark, strlen(mark));
  }
  cJSON *s = cJSON_CreateString(c->body.p);
  c->result_json = print_json(s, &c->result_len);
  cJSON_Delete(s);
  mlt_span_set_outputs_text(c->span, c->body.p, c->body.len);
  return NULL;
}

/* The assembled stream as outputs (built here only when the span records
 * them; otherwise on the first mlt_curl_call_result_json()); model and
 * usage from the aggregator. */
static void finish_stream(mlt_curl_call *c) {
  if (!mlt_chat_stream_chunk_count(c->stream)) return;
  c->result_lazy = 1;
  if (mlt_span_is_recording(c->span)) {
    c->result_lazy = 0;
    c->result_json = mlt_chat_stream_result_json(c->stream, &c->result_len);
    if (c->result_json) mlt_span_set_outputs_json_n(c->span, c->result_json, c->result_len);
  }
  const char *model = mlt_chat_stream_model(c->stream);
  if (*model) c->model = strdup(model);
  c->usage_json = usage_text(mlt__chat_stream_usage(c->stream)); /* the raw object: cache counts too */
}

static void record_error(mlt_curl_call *c, const char *type, const char *msg) {
  size_t n = strlen(type) + strlen(msg) + 3;
  c->error = malloc(n);
  if (c->error) snprintf(c->error, n, "%s: %s", type, msg);
  mlt_span_record_error(c->span, type, msg);
}

int mlt__curl_call_complete(mlt_curl_call *c, CURLcode result, const char *cancel_msg) {
  if (c->done) return c->status;
  c->done = 1;
  c->result = result;
  if (c->cancelled && !cancel_msg) cancel_msg = "transfer cancelled";
  if (c->hook_stop && !cancel_msg) cancel_msg = "aborted by the delta callback";
  int stream_rc = MLT_OK;
  if (c->mode == MLT__CURL_SSE) stream_rc = mlt_chat_stream_finish(c->stream);
  long code = 0;
  if (c->performed) curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
  c->http_status = code;
  int recording = mlt_span_is_recording(c->span);

  cJSON *body_json = NULL;
  if (c->mode == MLT__CURL_SSE)
    finish_stream(c);
  else if (c->mode == MLT__CURL_BODY)
    body_json = finish_body(c);
  if (!c->model && c->req_model) c->model = strdup(c->req_model);

  if (recording) {
    if (c->performed) {
      char *url = NULL;
      curl_easy_getinfo(c->easy, CURLINFO_EFFECTIVE_URL, &url);
      set_url_attr(c->span, url);
#if LIBCURL_VERSION_NUM >= 0x074800
      char *method = NULL;
      curl_easy_getinfo(c->easy, CURLINFO_EFFECTIVE_METHOD, &method);
      if (method && *method) mlt_span_set_attr_str(c->span, "http.request.method", method);
#endif
    }
    if (code > 0) mlt_span_set_attr_int(c->span, "http.response.status_code", code);
    if (c->mode != MLT__CURL_UNDECIDED)
      mlt_span_set_attr_int(c->span, "http.response.body.size", (int64_t)c->body_bytes);
    /* (recorded at the start from the request: again only when the answer
     * names another model) */
    if (c->model && !(c->req_model && strcmp(c->model, c->req_model) == 0))
      mlt_span_set_attr_str(c->span, "mlflow.llm.model", c->model);
    if (c->usage_json) mlt_span_set_attr_json(c->span, "mlflow.chat.tokenUsage", c->usage_json);
    if (c->mode == MLT__CURL_SSE) {
      mlt_span_set_attr_int(c->span, "mltrace.sse.chunks", (int64_t)mlt_chat_stream_chunk_count(c->stream));
      size_t bad = mlt_chat_stream_malformed_count(c->stream);
      if (bad) mlt_span_set_attr_int(c->span, "mltrace.sse.malformed", (int64_t)bad);
    }
  }

  char msg[512];
  if (cancel_msg) {
    c->status = MLT_CURL_CANCELLED;
    record_error(c, "CancelledError", cancel_msg);
  } else if (result != CURLE_OK) {
    c->status = result == CURLE_OPERATION_TIMEDOUT ? MLT_ETIMEDOUT : MLT_EIO;
    snprintf(msg, sizeof msg, "%s (curl error %d)", curl_easy_strerror(result), (int)result);
    record_error(c, "CurlError", msg);
  } else if (code >= 400) {
    c->status = MLT_EHTTP;
    const char *em = body_json ? error_message(body_json) : NULL;
    if (!em && c->mode == MLT__CURL_SSE) em = mlt_chat_stream_error_message(c->stream);
    if (em)
      snprintf(msg, sizeof msg, "HTTP %ld: %.400s", code, em);
    else
      snprintf(msg, sizeof msg, "HTTP %ld", code);
    record_error(c, "HTTPError", msg);
  } else if (c->mode == MLT__CURL_SSE && mlt_chat_stream_error_message(c->stream)) {
    c->status = MLT_EHTTP;
    snprintf(msg, sizeof msg, "%.480s", mlt_chat_stream_error_message(c->stream));
    record_error(c, "APIError", msg);
  } else if (c->streaming && c->require_done && c->mode == MLT__CURL_SSE && stream_rc != MLT_OK) {
    c->status = MLT_EPARSE;
    record_error(c, "StreamError",
                 mlt_chat_stream_is_done(c->stream)           ? "stream ended inside an event"
                 : mlt__chat_stream_is_responses(c->stream) ? "stream ended without response.completed"
                                                              : "stream ended without [DONE]");
  } else {
    c->status = MLT_OK;
  }
  cJSON_Delete(body_json);
  mlt_span_end(c->span);
  detach(c);
  return c->status;
}

void mlt__curl_call_destroy(mlt_curl_call *c) {
  mlt_chat_stream_free(c->stream);
  mlt_context_release(c->ctx);
  mlt_context_release(c->parent);
  headers_free(c);
  free(c->sc_choices);
  free(c->sc_tools);
  free(c->req_model);
  free(c->body.p);
  free(c->error);
  free(c->result_json);
  free(c->usage_json);
  free(c->model);
  free(c->content);
  free(c->finish_reason);
  free(c);
}

CURLcode mlt_curl_perform(mlt_curl_call *call) {
  if (!call || call->performed || call->done || call->loop) return CURLE_BAD_FUNCTION_ARGUMENT;
  call->performed = 1;
  CURLcode rc = curl_easy_perform(call->easy);
  mlt__curl_call_complete(call, rc, NULL);
  return rc;
}

int mlt_curl_call_done(mlt_curl_call *call, CURLcode result) {
  if (!call || call->loop) return MLT_EINVAL;
  if (call->done) return MLT_EENDED;
  call->performed = 1;
  return mlt__curl_call_complete(call, result, NULL);
}

mlt_curl_call *mlt_curl_call_from_easy(CURL *easy) {
  char *p = NULL;
  if (!easy || curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK) return NULL;
  return (mlt_curl_call *)(void *)p;
}

void mlt_curl_call_free(mlt_curl_call *call) {
  if (!call) return;
  if (call->in_done) {
    call->free_requested = 1;
    return;
  }
  if (call->loop) {
    mlt__curl_loop_free_call(call);
    return;
  }
  if (!call->done) mlt__curl_call_complete(call, CURLE_ABORTED_BY_CALLBACK, "call freed before the transfer completed");
  mlt__curl_call_destroy(call);
}

/* ==== accessors ======================================================= */

CURL *mlt_curl_call_easy(const mlt_curl_call *call) { return call ? call->easy : NULL; }

mlt_span mlt_curl_call_span(const mlt_curl_call *call) { return call ? call->span : MLT_SPAN_NONE; }

mlt_context *mlt_curl_call_context(const mlt_curl_call *call) { return call ? mlt_context_retain(call->ctx) : NULL; }

int mlt_curl_call_is_streaming(const mlt_curl_call *call) { return call ? call->streaming : 0; }

int mlt_curl_call_is_done(const mlt_curl_call *call) { return call ? call->done : 0; }

int mlt_curl_call_status(const mlt_curl_call *call) { return call ? call->status : MLT_EINVAL; }

const char *mlt_curl_call_error(const mlt_curl_call *call) { return call ? call->error : NULL; }

CURLcode mlt_curl_call_curl_result(const mlt_curl_call *call) { return call ? call->result : CURLE_OK; }

long mlt_curl_call_http_status(const mlt_curl_call *call) {
  if (!call) return 0;
  if (call->done) return call->http_status;
  long code = 0;
  if (call->performed) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

const char *mlt_curl_call_content(const mlt_curl_call *call, size_t *len) {
  if (len) *len = 0;
  if (!call) return "";
  if (call->mode == MLT__CURL_SSE) return mlt_chat_stream_content(call->stream, len);
  if (call->content) {
    if (len) *len = call->content_len;
    return call->content;
  }
  return "";
}

const char *mlt_curl_call_result_json(const mlt_curl_call *call, size_t *len) {
  if (call && call->result_lazy) { /* built on first use (not recording) */
    mlt_curl_call *c = (mlt_curl_call *)call;
    c->result_lazy = 0;
    c->result_json = mlt_chat_stream_result_json(c->stream, &c->result_len);
  }
  if (len) *len = call && call->result_json ? call->result_len : 0;
  return call ? call->result_json : NULL;
}

const char *mlt_curl_call_usage_json(const mlt_curl_call *call) { return call ? call->usage_json : NULL; }

const char *mlt_curl_call_model(const mlt_curl_call *call) {
  if (!call) return "";
  if (call->model) return call->model;
  if (call->mode == MLT__CURL_SSE && *mlt_chat_stream_model(call->stream)) return mlt_chat_stream_model(call->stream);
  return call->req_model ? call->req_model : "";
}

const char *mlt_curl_call_finish_reason(const mlt_curl_call *call) {
  if (!call) return "";
  if (call->mode == MLT__CURL_SSE) return mlt_chat_stream_finish_reason(call->stream);
  return call->finish_reason ? call->finish_reason : "";
}

size_t mlt_curl_call_chunk_count(const mlt_curl_call *call) {
  return call ? mlt_chat_stream_chunk_count(call->stream) : 0;
}

size_t mlt_curl_call_malformed_count(const mlt_curl_call *call) {
  return call ? mlt_chat_stream_malformed_count(call->stream) : 0;
}
