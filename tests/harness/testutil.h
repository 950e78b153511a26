/* tests/harness/testutil.h: start the library on an in-memory store and
 * read the exported traces back as cJSON (accessors: traces.h). */
#ifndef MLT_TESTS_TESTUTIL_H
#define MLT_TESTS_TESTUTIL_H

#include <cjson/cJSON.h>
#include <mltrace/mltrace.h>

#include "tap.h"
#include "traces.h"

static mlt_memory_store *tu_store;
static cJSON *tu_cache[4096];
static size_t tu_ncache;

/* Options with no environment, an in-memory store, and a quiet log. */
static inline mlt_options *tu_options(void) {
  mlt_options *o = NULL;
  REQUIRE(mlt_options_new(&o) == MLT_OK);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, getenv("TU_LOG") ? MLT_LOG_DEBUG : MLT_LOG_OFF, NULL, NULL);
  tu_store = mlt_memory_store_new();
  mlt_exporter *e = NULL;
  REQUIRE(mlt_exporter_memory_new(tu_store, &e) == MLT_OK);
  mlt_options_add_exporter(o, e);
  return o;
}

static inline void tu_start(mlt_options *o) {
  REQUIRE_EQ_INT(mlt_init(o), MLT_OK);
  mlt_options_free(o);
}

static inline void tu_init(void) { tu_start(tu_options()); }

static inline void tu_free_cache(void) {
  for (size_t i = 0; i < tu_ncache; i++) cJSON_Delete(tu_cache[i]);
  tu_ncache = 0;
}

static inline void tu_done(void) {
  mlt_shutdown(5000);
  tu_free_cache();
  mlt_memory_store_release(tu_store);
  tu_store = NULL;
}

/* Hold |s|'s trace open (mlt_context_hold()) until the returned context is
 * released: a test that checks MLT_EENDED on a span it just ended, the last
 * open one of its trace, must not race the export thread, which may take the
 * finished trace at any moment (the handle is MLT_ESTALE then). */
static inline mlt_context *tu_hold(mlt_span s) {
  mlt_context *c = mlt_context_capture(s), *h = mlt_context_hold(c);
  mlt_context_release(c);
  REQUIRE(h != NULL);
  return h;
}

/* Flush and return the number of exported traces. */
static inline size_t tu_flush_count(void) {
  CHECK_EQ_INT(mlt_flush(10000), MLT_OK);
  return mlt_memory_store_count(tu_store);
}

/* Exported trace |i| parsed (owned by the cache). */
static inline cJSON *tu_trace(size_t i) {
  char *s = mlt_memory_store_get(tu_store, i);
  REQUIRE(s != NULL);
  cJSON *j = cJSON_Parse(s);
  if (!j) tap_diag("not JSON: %.300s", s);
  free(s);
  REQUIRE(j != NULL);
  if (tu_ncache < sizeof tu_cache / sizeof *tu_cache) tu_cache[tu_ncache++] = j;
  return j;
}

/* An attribute decoded one level (owned by the cache). */
static inline cJSON *tu_attr_json(cJSON *span, const char *key) {
  const char *raw = tu_attr(span, key);
  if (!raw) return NULL;
  cJSON *j = cJSON_Parse(raw);
  if (j && tu_ncache < sizeof tu_cache / sizeof *tu_cache) tu_cache[tu_ncache++] = j;
  return j;
}

static inline mlt_stats tu_stats(void) {
  mlt_stats s;
  mlt_get_stats(&s, sizeof s);
  return s;
}

/* Find the exported trace whose root span is named |name|. */
static inline cJSON *tu_trace_named(const char *name) {
  size_t n = mlt_memory_store_count(tu_store);
  for (size_t i = 0; i < n; i++) {
    cJSON *t = tu_trace(i);
    const char *tn = tu_tag(t, "mlflow.traceName");
    if (tn && strcmp(tn, name) == 0) return t;
    /* not this one: freed now (kept, a store of many traces would fill the
     * cache, and what does not fit in it would leak) */
    if (tu_ncache && tu_cache[tu_ncache - 1] == t) tu_ncache--;
    cJSON_Delete(t);
  }
  return NULL;
}

#endif /* MLT_TESTS_TESTUTIL_H */
