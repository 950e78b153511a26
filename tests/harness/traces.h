/* tests/harness/traces.h: read an exported trace (MLflow's Trace.to_json()
 * shape: {"info": {...}, "data": {"spans": [...]}}) parsed with cJSON,
 * wherever it came from (the in-memory store, testutil.h; a JSONL file
 * store, jsonl.h).  Pure accessors: they return pointers into the cJSON
 * tree (owned by it) or NULL when the member is missing.  Keys are matched
 * case-sensitively.  Header-only. */
#ifndef MLT_TESTS_HARNESS_TRACES_H
#define MLT_TESTS_HARNESS_TRACES_H

#include <string.h>

#include <cjson/cJSON.h>

/* The string member @p key of @p obj, NULL when missing or not a string. */
static inline const char *tu_str(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static inline cJSON *tu_info_obj(const cJSON *trace) { return cJSON_GetObjectItemCaseSensitive(trace, "info"); }

static inline cJSON *tu_spans(const cJSON *trace) {
  return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(trace, "data"), "spans");
}

static inline int tu_nspans(const cJSON *trace) { return cJSON_GetArraySize(tu_spans(trace)); }

/* The first span named @p name. */
static inline cJSON *tu_span(const cJSON *trace, const char *name) {
  cJSON *s;
  cJSON_ArrayForEach(s, tu_spans(trace)) {
    const char *n = tu_str(s, "name");
    if (n && strcmp(n, name) == 0) return s;
  }
  return NULL;
}

/* The root span (parent_span_id null). */
static inline cJSON *tu_root(const cJSON *trace) {
  cJSON *s;
  cJSON_ArrayForEach(s, tu_spans(trace)) {
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "parent_span_id"))) return s;
  }
  return NULL;
}

/* The first span whose parent is @p parent. */
static inline cJSON *tu_child(const cJSON *trace, const cJSON *parent) {
  const char *id = tu_str(parent, "span_id");
  cJSON *s;
  cJSON_ArrayForEach(s, tu_spans(trace)) {
    const char *pid = tu_str(s, "parent_span_id");
    if (id && pid && strcmp(pid, id) == 0) return s;
  }
  return NULL;
}

/* A string member of the trace's info (trace_id, state, request_preview...). */
static inline const char *tu_info(const cJSON *trace, const char *key) { return tu_str(tu_info_obj(trace), key); }

static inline const char *tu_meta(const cJSON *trace, const char *key) {
  return tu_str(cJSON_GetObjectItemCaseSensitive(tu_info_obj(trace), "trace_metadata"), key);
}

static inline const char *tu_tag(const cJSON *trace, const char *key) {
  return tu_str(cJSON_GetObjectItemCaseSensitive(tu_info_obj(trace), "tags"), key);
}

/* The raw (JSON-encoded) attribute string of a span. */
static inline const char *tu_attr(const cJSON *span, const char *key) {
  return tu_str(cJSON_GetObjectItemCaseSensitive(span, "attributes"), key);
}

static inline const char *tu_status_code(const cJSON *span) {
  return tu_str(cJSON_GetObjectItemCaseSensitive(span, "status"), "code");
}

/* The status message, "" when there is none. */
static inline const char *tu_status_msg(const cJSON *span) {
  const char *m = tu_str(cJSON_GetObjectItemCaseSensitive(span, "status"), "message");
  return m ? m : "";
}

/* Number of events of @p span whose name starts with @p prefix. */
static inline int tu_nevents(const cJSON *span, const char *prefix) {
  int n = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(span, "events")) {
    const char *name = tu_str(e, "name");
    if (name && strncmp(name, prefix, strlen(prefix)) == 0) n++;
  }
  return n;
}

/* The first event of @p span named @p name. */
static inline cJSON *tu_event(const cJSON *span, const char *name) {
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(span, "events")) {
    const char *n = tu_str(e, "name");
    if (n && strcmp(n, name) == 0) return e;
  }
  return NULL;
}

/* end - start in milliseconds, -1 when either time is missing. */
static inline double tu_duration_ms(const cJSON *span) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(span, "start_time_unix_nano");
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(span, "end_time_unix_nano");
  return cJSON_IsNumber(a) && cJSON_IsNumber(b) ? (b->valuedouble - a->valuedouble) / 1e6 : -1;
}

static inline int tu_prefix_of(const char *prefix, const char *s) {
  return prefix && s && strncmp(prefix, s, strlen(prefix)) == 0;
}

#endif /* MLT_TESTS_HARNESS_TRACES_H */
