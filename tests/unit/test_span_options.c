/* tests/unit/test_span_options.c: MLflow 3.17's span parameters of
 * <mltrace/span_options.h> (explicit start and end times, links, description,
 * log level, per-root sampling; the client API twins), read back from the
 * in-memory store as Span.to_dict() / TraceInfo JSON. */
#include "testutil.h"

#include <inttypes.h>

#define T0 INT64_C(1700000000123456789) /* 2023-11-14T22:13:20.123Z */
#define SEC INT64_C(1000000000)

static int64_t num(cJSON *o, const char *k) {
  cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Nanosecond fields are integers past a double's precision: read them from
 * the exported text.  |key| follows `"name": "<name>", ` in some trace
 * (span names are unique in these tests; events too). */
static int64_t raw_ns(const char *name, const char *key) {
  char pat[256];
  snprintf(pat, sizeof pat, "\"name\": \"%s\", ", name);
  size_t n = mlt_memory_store_count(tu_store);
  for (size_t i = 0; i < n; i++) {
    char *txt = mlt_memory_store_get(tu_store, i);
    char *p = txt ? strstr(txt, pat) : NULL;
    if (p) {
      char k[64];
      snprintf(k, sizeof k, "\"%s\": ", key);
      char *q = strstr(p, k);
      int64_t v = q ? strtoll(q + strlen(k), NULL, 10) : -1;
      free(txt);
      return v;
    }
    free(txt);
  }
  return -1;
}
#define ns_start(name) raw_ns((name), "start_time_unix_nano")
#define ns_end(name) raw_ns((name), "end_time_unix_nano")

static mlt_options *opts_ratio(double ratio) {
  mlt_options *o = tu_options();
  mlt_options_set_sampling_ratio(o, ratio);
  return o;
}

TEST(explicit_start_and_end_times) {
  tu_init();
  mlt_span root = mlt_span_start_with("replayed", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = T0));
  mlt_span child = mlt_span_start_in_with(NULL, "ignored-parent", MLT_SPAN_TOOL, NULL); /* a root of its own */
  mlt_span_end(child);
  mlt_context *rc = mlt_context_capture(root);
  mlt_span c2 = mlt_span_start_in_with(rc, "step", MLT_SPAN_TOOL, MLT_SPAN_OPTIONS(.start_time_ns = T0 + 1000));
  mlt_context_release(rc);
  CHECK_EQ_INT(mlt_span_end_at(c2, T0 + 2 * SEC), MLT_OK);
  CHECK_EQ_INT(mlt_span_end_at(root, -5), MLT_EINVAL); /* refused: still open */
  CHECK(mlt_span_is_recording(root));
  CHECK_EQ_INT(mlt_span_end_at(root, T0 + 3 * SEC + 500000000), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *t = tu_trace_named("replayed");
  REQUIRE(t != NULL);
  CHECK(tu_span(t, "replayed") && tu_span(t, "step"));
  CHECK_EQ_INT(ns_start("replayed"), T0);
  CHECK_EQ_INT(ns_end("replayed"), T0 + 3 * SEC + 500000000);
  CHECK_EQ_INT(ns_start("step"), T0 + 1000);
  CHECK_EQ_INT(ns_end("step"), T0 + 2 * SEC);
  cJSON *info = cJSON_GetObjectItem(t, "info");
  CHECK_EQ_STR(tu_str(info, "request_time"), "2023-11-14T22:13:20.123Z");
  CHECK_EQ_INT(num(info, "execution_duration_ms"), 3500);
  tu_done();
}

TEST(end_before_start_is_clamped) {
  tu_init();
  mlt_span a = mlt_span_start_with("a", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = T0));
  /* Held open, so that the export thread cannot take the trace between the
   * two ends (the second would then be MLT_ESTALE). */
  mlt_context *hold = tu_hold(a);
  CHECK_EQ_INT(mlt_span_end_at(a, T0 - SEC), MLT_ERANGE); /* ended, at its start */
  CHECK(!mlt_span_is_recording(a));
  CHECK_EQ_INT(mlt_span_end_at(a, T0), MLT_EENDED);
  mlt_context_release(hold);
  /* A start in the future ended by the clock: clamped at export. */
  int64_t future = INT64_C(9000000000000000000); /* year 2255 */
  mlt_span b = mlt_span_start_with("b", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = future));
  mlt_span_end(b);
  /* The far past: 1 ns after the epoch. */
  mlt_span c = mlt_span_start_with("c", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = 1));
  mlt_span_end_at(c, 2);
  /* A negative start is ignored (now), reported as misuse. */
  uint64_t misuse = tu_stats().misuse;
  mlt_span d = mlt_span_start_with("d", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = -1));
  CHECK(mlt_span_is_recording(d));
  mlt_span_end(d);
  CHECK(tu_stats().misuse >= misuse + 1);
  REQUIRE_EQ_INT(tu_flush_count(), 4);
  cJSON *ta = tu_trace_named("a"), *tb = tu_trace_named("b"), *tc = tu_trace_named("c"), *td = tu_trace_named("d");
  REQUIRE(ta && tb && tc && td);
  CHECK_EQ_INT(ns_end("a"), T0);
  CHECK_EQ_INT(num(cJSON_GetObjectItem(ta, "info"), "execution_duration_ms"), 0);
  CHECK_EQ_INT(ns_start("b"), future);
  CHECK_EQ_INT(ns_end("b"), future);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tb, "info"), "request_time"), "2255-03-14T16:00:00.000Z");
  CHECK_EQ_INT(ns_start("c"), 1);
  CHECK_EQ_INT(ns_end("c"), 2);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tc, "info"), "request_time"), "1970-01-01T00:00:00.000Z");
  CHECK(ns_start("d") > T0);
  tu_done();
}

TEST(past_start_does_not_trip_the_trace_timeout) {
  mlt_options *o = tu_options();
  mlt_options_set_trace_timeout_ms(o, 1000);
  mlt_options_set_schedule_delay_ms(o, 10);
  tu_start(o);
  mlt_span r = mlt_span_start_with("old", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = T0));
  struct timespec ts = {0, 300 * 1000000};
  nanosleep(&ts, NULL); /* several reaper passes */
  CHECK(mlt_span_is_recording(r));
  mlt_span_end_at(r, T0 + SEC);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  CHECK_EQ_INT((int)tu_stats().traces_timed_out, 0);
  CHECK_EQ_STR(tu_info(tu_trace(0), "state"), "OK");
  tu_done();
}

TEST(links_by_ids_and_context) {
  tu_init();
  char tid[MLT_TRACE_ID_SIZE], sid[MLT_SPAN_ID_SIZE];
  mlt_span req = mlt_span_start("request", MLT_SPAN_CHAIN);
  mlt_span_get_trace_id(req, tid, sizeof tid);
  mlt_span_get_span_id(req, sid, sizeof sid);
  mlt_context *rctx = mlt_context_capture(req);
  mlt_span_end(req);
  mlt_attr la[] = {MLT_ATTR_STR("relation", "batch-member"), MLT_ATTR_INT("index", 3),
                   MLT_ATTR_DOUBLE("weight", 0.5), MLT_ATTR_BOOL("retry", 1)};
  mlt_span batch = mlt_span_start_with(
      "batch", MLT_SPAN_CHAIN,
      MLT_SPAN_OPTIONS(MLT_LINKS({.trace_id = tid, .span_id = sid, .attrs = la, .n_attrs = 4},
                                 {.trace_id = "tr-0000", .span_id = sid}, /* invalid: skipped */
                                 {.ctx = rctx})));
  uint64_t misuse = tu_stats().misuse;
  CHECK_EQ_INT(mlt_span_add_link(batch, &(mlt_link){.trace_id = "0123456789abcdef0123456789ABCDEF",
                                                     .span_id = "00000000000000ff"}),
               MLT_OK);
  CHECK_EQ_INT(mlt_span_add_link(batch, &(mlt_link){.trace_id = tid, .span_id = "0000000000000000"}), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_add_link(batch, NULL), MLT_EINVAL);
  mlt_attr bad[] = {{NULL, MLT_ATTR_INT, {.i = 1}, 0}};
  CHECK_EQ_INT(mlt_span_add_link(batch, &(mlt_link){.ctx = rctx, .attrs = bad, .n_attrs = 1}), MLT_EINVAL);
  CHECK_EQ_INT((int)tu_stats().misuse, (int)misuse); /* EINVAL of add_link is the caller's to see */
  mlt_context *hold = tu_hold(batch);
  mlt_span_end(batch);
  CHECK_EQ_INT(mlt_span_add_link(batch, &(mlt_link){.ctx = rctx}), MLT_EENDED);
  mlt_context_release(hold);
  mlt_context_release(rctx);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *t = tu_trace_named("batch");
  cJSON *links = cJSON_GetObjectItem(tu_span(t, "batch"), "links");
  REQUIRE_EQ_INT(cJSON_GetArraySize(links), 3);
  cJSON *l0 = cJSON_GetArrayItem(links, 0), *l1 = cJSON_GetArrayItem(links, 1), *l2 = cJSON_GetArrayItem(links, 2);
  CHECK_EQ_STR(tu_str(l0, "trace_id"), tid);
  CHECK_EQ_STR(tu_str(l0, "span_id"), sid);
  cJSON *a0 = cJSON_GetObjectItem(l0, "attributes");
  CHECK_EQ_STR(tu_str(a0, "relation"), "batch-member");
  CHECK_EQ_INT(num(a0, "index"), 3);
  CHECK(cJSON_GetObjectItem(a0, "weight") && cJSON_GetObjectItem(a0, "weight")->valuedouble == 0.5);
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a0, "retry")));
  CHECK_EQ_STR(tu_str(l1, "trace_id"), tid);
  CHECK(cJSON_IsNull(cJSON_GetObjectItem(l1, "attributes")));
  CHECK_EQ_STR(tu_str(l2, "trace_id"), "tr-0123456789abcdef0123456789abcdef");
  CHECK_EQ_STR(tu_str(l2, "span_id"), "00000000000000ff");
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(tu_span(tu_trace_named("request"), "request"), "links")), 0);
  tu_done();
}

TEST(links_are_bounded) {
  tu_init();
  mlt_span s = mlt_span_start("many", MLT_SPAN_CHAIN);
  mlt_context *c = mlt_context_capture(s);
  int ok = 0, full = 0;
  for (int i = 0; i < 130; i++) {
    int rc = mlt_span_add_link(s, &(mlt_link){.ctx = c});
    ok += rc == MLT_OK;
    full += rc == MLT_EFULL;
  }
  mlt_context_release(c);
  CHECK_EQ_INT(ok, 128);
  CHECK_EQ_INT(full, 2);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *sp = tu_span(tu_trace(0), "many");
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(sp, "links")), 128);
  CHECK_EQ_STR(tu_attr(sp, "mltrace.droppedLinks"), "2");
  tu_done();
}

TEST(description_and_log_level_like_mlflow) {
  tu_init();
  mlt_span root = mlt_span_start_with("root", MLT_SPAN_CHAIN,
                                      MLT_SPAN_OPTIONS(.description = "the whole request",
                                                       .log_level = MLT_SPAN_LEVEL_WARNING));
  mlt_span llm = mlt_span_start("llm", MLT_SPAN_LLM);
  mlt_span_set_status(llm, MLT_STATUS_ERROR, "rate limited"); /* no exception event: level stays INFO */
  mlt_span_end(llm);
  mlt_span tool = mlt_span_start("tool", MLT_SPAN_TOOL);
  mlt_span_record_error(tool, "ValueError", "bad"); /* exception event: ERROR */
  mlt_span_end(tool);
  mlt_span crit = mlt_span_start("crit", MLT_SPAN_CHAIN);
  mlt_span_set_log_level(crit, MLT_SPAN_LEVEL_CRITICAL);
  mlt_span_record_error(crit, "Boom", "x"); /* CRITICAL is kept */
  mlt_span_end(crit);
  mlt_span after = mlt_span_start("after", MLT_SPAN_CHAIN);
  mlt_span_record_error(after, "E", "x");
  mlt_span_set_log_level(after, MLT_SPAN_LEVEL_DEBUG); /* set after the exception: wins */
  CHECK_EQ_INT(mlt_span_set_log_level(after, (mlt_span_level)25), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_description(after, NULL), MLT_EINVAL);
  mlt_span_end(after);
  mlt_span dflt = mlt_span_start("dflt", MLT_SPAN_CHAIN);
  mlt_span_set_log_level(dflt, MLT_SPAN_LEVEL_ERROR);
  mlt_span_set_log_level(dflt, MLT_SPAN_LEVEL_DEFAULT); /* back to the type's: DEBUG */
  mlt_span_end(dflt);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_attr(tu_span(t, "root"), "mlflow.spanDescription"), "\"the whole request\"");
  CHECK_EQ_STR(tu_attr(tu_span(t, "root"), "mlflow.spanLogLevel"), "30");
  CHECK_EQ_STR(tu_attr(tu_span(t, "llm"), "mlflow.spanLogLevel"), "20");
  CHECK_EQ_STR(tu_attr(tu_span(t, "tool"), "mlflow.spanLogLevel"), "40");
  CHECK_EQ_STR(tu_attr(tu_span(t, "crit"), "mlflow.spanLogLevel"), "50");
  CHECK_EQ_STR(tu_attr(tu_span(t, "after"), "mlflow.spanLogLevel"), "10");
  CHECK_EQ_STR(tu_attr(tu_span(t, "dflt"), "mlflow.spanLogLevel"), "10");
  tu_done();
}

TEST(sampling_ratio_override_for_one_root) {
  tu_start(opts_ratio(0.0)); /* nothing sampled ... */
  mlt_span a = mlt_span_start_with("kept", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(MLT_SAMPLING_RATIO(1.0)));
  CHECK(mlt_span_is_recording(a));
  mlt_span child = mlt_span_start("child", MLT_SPAN_TOOL); /* follows its root */
  CHECK(mlt_span_is_recording(child));
  mlt_span_end(child);
  mlt_span_end(a);
  mlt_span b = mlt_span_start("dropped", MLT_SPAN_CHAIN);
  CHECK(!mlt_span_is_recording(b));
  mlt_span_end(b);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  CHECK_EQ_INT(tu_nspans(tu_trace(0)), 2);
  tu_done();

  tu_start(opts_ratio(1.0)); /* ... everything sampled */
  mlt_span r = mlt_span_start_with("never", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(MLT_SAMPLING_RATIO(0.0)));
  CHECK(!mlt_span_is_recording(r));
  mlt_span under = mlt_span_start("under", MLT_SPAN_TOOL); /* decided once for the trace */
  CHECK(!mlt_span_is_recording(under));
  mlt_span_end(under);
  mlt_span_end(r);
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  mlt_span c = mlt_span_start_with("c", MLT_SPAN_TOOL, MLT_SPAN_OPTIONS(MLT_SAMPLING_RATIO(0.0))); /* joins */
  CHECK(mlt_span_is_recording(c));
  mlt_span_end(c);
  uint64_t misuse = tu_stats().misuse;
  mlt_span bad = mlt_span_start_with("bad", MLT_SPAN_TOOL, MLT_SPAN_OPTIONS(MLT_SAMPLING_RATIO(1.5)));
  CHECK(mlt_span_is_recording(bad)); /* ignored, reported */
  CHECK(tu_stats().misuse > misuse);
  mlt_span_end(bad);
  mlt_span_end(root);
  /* About half of 2000 roots at 0.5 (binomial: 6 sigma is 134). */
  int kept = 0;
  for (int i = 0; i < 2000; i++) {
    mlt_span s = mlt_span_start_with("half", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(MLT_SAMPLING_RATIO(0.5)));
    kept += mlt_span_is_recording(s);
    mlt_span_end(s);
  }
  CHECK(kept > 1000 - 134 && kept < 1000 + 134);
  tu_done();
}

static char *reduce_last(const char *const *chunks, const size_t *lens, size_t n, size_t *out_len, void *ud) {
  (void)ud;
  if (!n) return NULL;
  char *o = malloc(lens[n - 1] + 1);
  memcpy(o, chunks[n - 1], lens[n - 1]);
  *out_len = lens[n - 1];
  return o;
}

static int traced_fn(void) {
  MLT_TRACE_FUNCTION_WITH(MLT_SPAN_PARSER, .description = "parses", .log_level = MLT_SPAN_LEVEL_INFO);
  mlt_span_set_output_reducer(mlt_fn_span, reduce_last, NULL);
  mlt_span_add_chunk_json(mlt_fn_span, "1", 1);
  return 7;
}

TEST(scope_macros_with_options) {
  tu_init();
  {
    MLT_SPAN_SCOPE_WITH(sp, "block", MLT_SPAN_CHAIN, .description = "a block", .start_time_ns = T0);
    CHECK_EQ_INT(traced_fn(), 7);
  }
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *b = tu_span(t, "block"), *f = tu_span(t, "traced_fn");
  REQUIRE(b && f);
  CHECK_EQ_INT(ns_start("block"), T0);
  CHECK_EQ_STR(tu_attr(b, "mlflow.spanDescription"), "\"a block\"");
  CHECK_EQ_STR(tu_attr(f, "mlflow.spanFunctionName"), "\"traced_fn\"");
  CHECK_EQ_STR(tu_attr(f, "mlflow.spanLogLevel"), "20");
  CHECK_EQ_STR(tu_attr(f, "mlflow.spanDescription"), "\"parses\"");
  CHECK_EQ_STR(tu_attr(f, "mlflow.spanOutputs"), "1");
  tu_done();
}

TEST(client_api_twins) {
  tu_init();
  mlt_client_span r, c, c2;
  mlt_link lk = {.trace_id = "tr-00000000000000000000000000000abc", .span_id = "0000000000000def"};
  REQUIRE_EQ_INT(mlt_client_start_trace_with("replay", MLT_SPAN_AGENT, "{\"q\": 1}",
                                             MLT_SPAN_OPTIONS(.start_time_ns = T0, .links = &lk, .n_links = 1,
                                                              .description = "from the log"),
                                             &r),
                 MLT_OK);
  REQUIRE_EQ_INT(mlt_client_start_span_with(r.trace_id, r.span_id, "step", MLT_SPAN_TOOL, NULL,
                                            MLT_SPAN_OPTIONS(.start_time_ns = T0 + SEC), &c),
                 MLT_OK);
  REQUIRE_EQ_INT(mlt_client_start_span_with(r.trace_id, r.span_id, "open", MLT_SPAN_TOOL, NULL,
                                            MLT_SPAN_OPTIONS(.start_time_ns = T0 + SEC), &c2),
                 MLT_OK);
  /* strict validation: nothing started */
  mlt_client_span x;
  CHECK_EQ_INT(mlt_client_start_trace_with("x", MLT_SPAN_CHAIN, NULL, MLT_SPAN_OPTIONS(.start_time_ns = -1), &x),
               MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_start_trace_with("x", MLT_SPAN_CHAIN, NULL, MLT_SPAN_OPTIONS(MLT_SAMPLING_RATIO(-0.5)), &x),
               MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_start_trace_with("x", MLT_SPAN_CHAIN, NULL, MLT_SPAN_OPTIONS(.log_level = 7), &x),
               MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_start_trace_with("x", MLT_SPAN_CHAIN, NULL,
                                           MLT_SPAN_OPTIONS(MLT_LINKS({.trace_id = "nope", .span_id = "x"})), &x),
               MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_start_trace_with("x", MLT_SPAN_CHAIN, NULL, &(mlt_span_options){.struct_size = 8}, &x),
               MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_end_span_at(r.trace_id, c.span_id, NULL, MLT_STATUS_OK, NULL, -1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_end_span_at(r.trace_id, c.span_id, "{\"ok\": 1}", MLT_STATUS_OK, NULL, T0), MLT_ERANGE);
  CHECK_EQ_INT(mlt_client_end_span_at(r.trace_id, c.span_id, NULL, MLT_STATUS_OK, NULL, T0 + 5 * SEC), MLT_EENDED);
  CHECK_EQ_INT(mlt_client_end_trace_at(r.trace_id, "{\"a\": 2}", MLT_STATUS_OK, NULL, T0 + 4 * SEC), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *root = tu_span(t, "replay"), *step = tu_span(t, "step"), *open = tu_span(t, "open");
  REQUIRE(root && step && open);
  CHECK_EQ_INT(ns_start("replay"), T0);
  CHECK_EQ_INT(ns_end("replay"), T0 + 4 * SEC);
  CHECK_EQ_INT(ns_start("step"), T0 + SEC);
  CHECK_EQ_INT(ns_end("step"), T0 + SEC); /* clamped to its start */
  /* still open at end_trace: ended at the trace's end time, with ERROR */
  CHECK_EQ_INT(ns_end("open"), T0 + 4 * SEC);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(open, "status"), "code"), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_str(cJSON_GetArrayItem(cJSON_GetObjectItem(open, "events"), 0), "name"), "exception");
  CHECK_EQ_INT(raw_ns("exception", "time_unix_nano"), T0 + 4 * SEC);
  CHECK_EQ_STR(tu_attr(root, "mlflow.spanDescription"), "\"from the log\"");
  cJSON *l = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "links"), 0);
  CHECK_EQ_STR(tu_str(l, "trace_id"), "tr-00000000000000000000000000000abc");
  CHECK_EQ_INT(num(cJSON_GetObjectItem(t, "info"), "execution_duration_ms"), 4000);
  tu_done();
}

static const tap_test tests[] = {TAP_ENTRY(explicit_start_and_end_times),
                                 TAP_ENTRY(end_before_start_is_clamped),
                                 TAP_ENTRY(past_start_does_not_trip_the_trace_timeout),
                                 TAP_ENTRY(links_by_ids_and_context),
                                 TAP_ENTRY(links_are_bounded),
                                 TAP_ENTRY(description_and_log_level_like_mlflow),
                                 TAP_ENTRY(sampling_ratio_override_for_one_root),
                                 TAP_ENTRY(scope_macros_with_options),
                                 TAP_ENTRY(client_api_twins),
                                 TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
