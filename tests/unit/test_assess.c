/* tests/unit/test_assess.c: feedback, expectations and tags after the fact
 * (<mltrace/assessment.h>) and update_current_trace state / model_id, on the
 * memory store (traces in progress) and the JSONL file store (finished
 * traces: update lines).  The real MLflow server side is in
 * tests/parity/test_parity.py. */
#include <pthread.h>

#include "jsonl.h"
#include "testutil.h"

static char g_tmp[256];

/* A file store in a fresh directory; |delay_ms| is the export schedule
 * delay (a long one keeps the export thread asleep until flushed). */
static const char *file_init(uint32_t delay_ms) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/mlt-assess-XXXXXX");
  REQUIRE(mkdtemp(g_tmp) != NULL);
  strcat(g_tmp, "/t.jsonl");
  mlt_options *o = NULL;
  REQUIRE(mlt_options_new(&o) == MLT_OK);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, getenv("TU_LOG") ? MLT_LOG_DEBUG : MLT_LOG_OFF, NULL, NULL);
  mlt_options_set_file_path(o, g_tmp);
  if (delay_ms) mlt_options_set_schedule_delay_ms(o, delay_ms);
  REQUIRE_EQ_INT(mlt_init(o), MLT_OK);
  mlt_options_free(o);
  return g_tmp;
}

static const char *update_kind(cJSON *line) { return tu_meta(line, "mltrace.update"); }

static cJSON *assessment(cJSON *line, int i) {
  return cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(line, "info"), "assessments"), i);
}

static void finished_trace(const char *name, char id[MLT_TRACE_ID_SIZE]) {
  {
    MLT_SPAN_SCOPE(s, name, MLT_SPAN_CHAIN);
    mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("app", "x")));
    mlt_span_set_outputs_json(s, "1");
  }
  REQUIRE_EQ_INT(mlt_get_last_active_trace_id(id, MLT_TRACE_ID_SIZE), MLT_OK);
}

TEST(test_bad_input) {
  const char *id = "tr-0123456789abcdef0123456789abcdef";
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1")), MLT_ENOTINIT);
  CHECK_EQ_INT(mlt_set_trace_tag(id, "k", "v"), MLT_ENOTINIT);
  file_init(0);
  CHECK_EQ_INT(mlt_log_feedback(NULL, MLT_ASSESSMENT(.value_json = "1")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, NULL), MLT_EINVAL);
  static const char *bad_ids[] = {"", "tr-", "tr-0123", "tr-0123456789abcdef0123456789abcdeg",
                                  "tr-00000000000000000000000000000000", "0123456789abcdef0123456789abcdef0",
                                  "01-0123456789abcdef0123456789abcdef", "x-0123456789abcdef0123456789abcdef"};
  for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++)
    CHECK_EQ_INT(mlt_log_feedback(bad_ids[i], MLT_ASSESSMENT(.value_json = "1")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "{bad")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1 2")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "\"\xff\"")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = NULL)), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_expectation(id, MLT_ASSESSMENT(.value_json = "1")), MLT_EINVAL); /* no name */
  CHECK_EQ_INT(mlt_log_expectation(id, MLT_ASSESSMENT(.name = "e", .value_json = "1", .rationale = "r")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_expectation(id, MLT_ASSESSMENT(.name = "e", .value_json = "1", .error_code = "X")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_expectation(id, MLT_ASSESSMENT(.name = "e")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1", .metadata = (const char *const[]){"k", NULL})),
               MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1", .span_id = "xyz")), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1", .source_type = (mlt_source_type)7)), MLT_EINVAL);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1", .name = "")), MLT_EINVAL);
  char longname[300];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1", .name = longname)), MLT_EINVAL);
  mlt_assessment small = {.struct_size = 4, .value_json = "1"};
  CHECK_EQ_INT(mlt_log_feedback(id, &small), MLT_EINVAL);
  CHECK_EQ_INT(mlt_set_trace_tag(id, "", "v"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_set_trace_tag(id, NULL, "v"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_set_trace_tag(id, "k", NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_set_trace_tag(id, "mlflow.artifactLocation", "x"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_delete_trace_tag(id, "mlflow.trace.spansLocation"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_log_feedback(MLT_SPAN_NONE, MLT_ASSESSMENT(.value_json = "1")), MLT_ENOTRECORDING);
  {
    MLT_SPAN_SCOPE(s, "bad_state", MLT_SPAN_CHAIN);
    CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.state = (mlt_trace_state)3)), MLT_EINVAL);
  }
  mlt_stats st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_queued, 0);
  /* Accepted forms of an id: traceparent, bare hex, upper case, blanks. */
  CHECK_EQ_INT(mlt_set_trace_tag("00-0123456789ABCDEF0123456789abcdef-0123456789abcdef-01", "k", "1"), MLT_OK);
  CHECK_EQ_INT(mlt_set_trace_tag(" 0123456789abcdef0123456789abcdef\r\n", "k", "2"), MLT_OK);
  CHECK_EQ_INT(mlt_set_trace_tag("TR-0123456789abcdef0123456789abcdef", "k", "3"), MLT_OK);
  CHECK_EQ_INT(mlt_flush(10000), MLT_OK);
  st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_queued, 3);
  CHECK_EQ_INT((int)st.trace_ops_delivered, 3);
  tu_jsonl js;
  tu_jsonl_read(&js, g_tmp);
  cJSON **lines = js.trace;
  size_t n = (size_t)js.n;
  CHECK_EQ_INT((int)n, 4); /* bad_state, then the three updates */
  for (size_t i = 1; i < n; i++) CHECK_EQ_STR(tu_info(lines[i], "trace_id"), id);
  tu_jsonl_free(&js);
  mlt_shutdown(5000);
}

/* No exporter that takes them: a clear error, nothing queued. */
TEST(test_not_supported) {
  mlt_options *o = NULL;
  REQUIRE(mlt_options_new(&o) == MLT_OK);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, MLT_LOG_OFF, NULL, NULL);
  mlt_exporter *e = NULL;
  REQUIRE(mlt_exporter_discard_new(&e) == MLT_OK);
  mlt_options_add_exporter(o, e);
  tu_start(o);
  char id[MLT_TRACE_ID_SIZE];
  finished_trace("t", id);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1")), MLT_ENOTSUP);
  CHECK_EQ_INT(mlt_set_trace_tag(id, "k", "v"), MLT_ENOTSUP);
  CHECK_EQ_INT(mlt_delete_trace_tag(id, "k"), MLT_ENOTSUP);
  mlt_client_span r;
  REQUIRE_EQ_INT(mlt_client_start_trace("live", MLT_SPAN_CHAIN, NULL, &r), MLT_OK);
  CHECK_EQ_INT(mlt_log_feedback(r.trace_id, MLT_ASSESSMENT(.value_json = "1")), MLT_ENOTSUP);
  CHECK_EQ_INT(mlt_set_trace_tag(r.trace_id, "k", "v"), MLT_OK); /* tags travel over OTLP too */
  mlt_client_end_trace(r.trace_id, NULL, MLT_STATUS_OK, NULL);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_queued, 0);
  mlt_shutdown(5000);
}

/* A trace in progress gets the change in memory: exported with it. */
TEST(test_live_trace) {
  tu_init();
  mlt_client_span r, c;
  REQUIRE_EQ_INT(mlt_client_start_trace("live", MLT_SPAN_AGENT, "{\"q\": 1}", &r), MLT_OK);
  REQUIRE_EQ_INT(mlt_client_start_span(r.trace_id, r.span_id, "child", MLT_SPAN_TOOL, NULL, &c), MLT_OK);
  mlt_update_trace_by_id(r.trace_id, MLT_TRACE_UPDATE(.tags = MLT_KV("gone", "1", "kept", "2", "gone", "3")));
  CHECK_EQ_INT(mlt_log_feedback(r.trace_id, MLT_ASSESSMENT(.name = "first", .value_json = "true",
                                                           .source_type = MLT_SOURCE_HUMAN, .source_id = "u1",
                                                           .rationale = "why", .metadata = MLT_KV("a", "b"))),
               MLT_OK);
  CHECK_EQ_INT(mlt_span_log_expectation(c.span, MLT_ASSESSMENT(.name = "second", .value_json = " {\"x\": [1]} ",
                                                               .span_id = c.span_id)),
               MLT_OK);
  CHECK_EQ_INT(mlt_span_log_feedback(c.span, MLT_ASSESSMENT(.name = "third", .value_json = "\"meh\"",
                                                            .source_type = MLT_SOURCE_LLM_JUDGE)),
               MLT_OK);
  CHECK_EQ_INT(mlt_set_trace_tag(r.trace_id, "added", "yes"), MLT_OK);
  CHECK_EQ_INT(mlt_delete_trace_tag(r.trace_id, "gone"), MLT_OK);
  CHECK_EQ_INT(mlt_delete_trace_tag(r.trace_id, "gone"), MLT_ENOTFOUND);
  mlt_client_end_span(r.trace_id, c.span_id, NULL, MLT_STATUS_OK, NULL);
  mlt_client_end_trace(r.trace_id, NULL, MLT_STATUS_OK, NULL);
  REQUIRE_EQ_INT((int)tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_tag(t, "added"), "yes");
  CHECK_EQ_STR(tu_tag(t, "kept"), "2");
  CHECK(tu_tag(t, "gone") == NULL);
  cJSON *a0 = assessment(t, 0), *a1 = assessment(t, 1), *a2 = assessment(t, 2);
  REQUIRE(a0 && a1 && a2 && !assessment(t, 3));
  CHECK_EQ_STR(tu_str(a0, "assessment_name"), "first");
  CHECK_EQ_STR(tu_str(a0, "trace_id"), r.trace_id);
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(a0, "feedback"), "value")));
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(a0, "source"), "source_type"), "HUMAN");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(a0, "source"), "source_id"), "u1");
  CHECK_EQ_STR(tu_str(a0, "rationale"), "why");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(a0, "metadata"), "a"), "b");
  CHECK(strncmp(tu_str(a0, "assessment_id"), "a-", 2) == 0 && strlen(tu_str(a0, "assessment_id")) == 34);
  CHECK_EQ_STR(tu_str(a1, "assessment_name"), "second");
  CHECK_EQ_STR(tu_str(a1, "span_id"), c.span_id);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(a1, "source"), "source_type"), "HUMAN"); /* expectation default */
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(cJSON_GetObjectItem(a1, "expectation"), "serialized_value"), "value"),
               "{\"x\": [1]}");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(a2, "source"), "source_type"), "LLM_JUDGE");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(a2, "feedback"), "value"), "meh");
  /* The trace was exported: its handle is stale now. */
  CHECK_EQ_INT(mlt_span_log_feedback(c.span, MLT_ASSESSMENT(.value_json = "1")), MLT_ESTALE);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_queued, 0); /* travelled with the trace */
  tu_done();
}

TEST(test_state_and_model_id) {
  tu_init();
  {
    MLT_SPAN_SCOPE(s, "forced_error", MLT_SPAN_CHAIN);
    CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.state = MLT_TRACE_STATE_ERROR, .model_id = "m-7")),
                 MLT_OK);
  }
  {
    MLT_SPAN_SCOPE(s, "forced_ok", MLT_SPAN_CHAIN);
    mlt_span_record_error(s, "E", "handled");
    CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.state = MLT_TRACE_STATE_OK)), MLT_OK);
  }
  {
    MLT_SPAN_SCOPE(s, "derived_error", MLT_SPAN_CHAIN);
    mlt_span_record_error(s, "E", "boom");
    CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.session_id = "s")), MLT_OK);
  }
  REQUIRE_EQ_INT((int)tu_flush_count(), 3);
  CHECK_EQ_STR(tu_info(tu_trace_named("forced_error"), "state"), "ERROR");
  CHECK_EQ_STR(tu_meta(tu_trace_named("forced_error"), "mlflow.modelId"), "m-7");
  CHECK_EQ_STR(tu_info(tu_trace_named("forced_ok"), "state"), "OK");
  CHECK_EQ_STR(tu_info(tu_trace_named("derived_error"), "state"), "ERROR");
  /* An older caller's struct (without the new fields) still works. */
  mlt_trace_update old = {.struct_size = offsetof(mlt_trace_update, model_id), .tags = MLT_KV("k", "v")};
  {
    MLT_SPAN_SCOPE(s, "old_struct", MLT_SPAN_CHAIN);
    CHECK_EQ_INT(mlt_update_current_trace(&old), MLT_OK);
  }
  tu_done();
}

/* Finished traces: update lines after the trace line, in order, even when
 * the trace is still waiting in the export queue when the call is made. */
TEST(test_file_updates_after_trace) {
  file_init(60000);
  char id[MLT_TRACE_ID_SIZE];
  finished_trace("answer", id); /* queued, not exported: the export thread sleeps */
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.name = "thumbs", .value_json = "{\"score\": 5}",
                                                   .source_type = MLT_SOURCE_HUMAN, .source_id = "alice")),
               MLT_OK);
  CHECK_EQ_INT(mlt_log_expectation(id, MLT_ASSESSMENT(.name = "truth", .value_json = "42")), MLT_OK);
  CHECK_EQ_INT(mlt_set_trace_tag(id, "k", "v1"), MLT_OK);
  CHECK_EQ_INT(mlt_set_trace_tag(id, "k", "v2"), MLT_OK);
  CHECK_EQ_INT(mlt_delete_trace_tag(id, "app"), MLT_OK);
  CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.name = "judge", .error_code = "TIMEOUT",
                                                   .error_message = "slow")),
               MLT_OK);
  CHECK_EQ_INT(mlt_flush(10000), MLT_OK);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT((int)st.traces_exported, 1);
  CHECK_EQ_INT((int)st.trace_ops_queued, 6);
  CHECK_EQ_INT((int)st.trace_ops_delivered, 6);
  tu_jsonl js;
  tu_jsonl_read(&js, g_tmp);
  cJSON **l = js.trace;
  size_t n = (size_t)js.n;
  REQUIRE_EQ_INT((int)n, 7);
  CHECK(update_kind(l[0]) == NULL); /* the trace itself first */
  CHECK_EQ_STR(tu_tag(l[0], "app"), "x");
  static const char *const kinds[] = {"assessment", "assessment", "set_tag", "set_tag", "delete_tag", "assessment"};
  for (int i = 1; i < 7; i++) {
    CHECK_EQ_STR(update_kind(l[i]), kinds[i - 1]);
    CHECK_EQ_STR(tu_info(l[i], "trace_id"), id);
    CHECK_EQ_STR(tu_info(l[i], "state"), "STATE_UNSPECIFIED");
    CHECK_EQ_INT(tu_nspans(l[i]), 0);
  }
  CHECK_EQ_STR(tu_str(assessment(l[1], 0), "assessment_name"), "thumbs");
  CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(assessment(l[1], 0), "feedback"), "value"),
                            "score") != NULL);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(assessment(l[2], 0), "source"), "source_type"), "HUMAN");
  CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(assessment(l[2], 0), "expectation"), "value")->valueint == 42);
  CHECK_EQ_STR(tu_tag(l[3], "k"), "v1");
  CHECK_EQ_STR(tu_tag(l[4], "k"), "v2");
  CHECK_EQ_STR(tu_meta(l[5], "mltrace.deletedTag"), "app");
  cJSON *err = cJSON_GetObjectItem(cJSON_GetObjectItem(assessment(l[6], 0), "feedback"), "error");
  CHECK_EQ_STR(tu_str(err, "error_code"), "TIMEOUT");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(assessment(l[6], 0), "source"), "source_type"), "CODE");
  tu_jsonl_free(&js);
  CHECK_EQ_INT(mlt_shutdown(5000), MLT_OK);
  st = tu_stats();
  CHECK_EQ_INT((int)(st.trace_ops_delivered + st.trace_ops_failed), (int)st.trace_ops_queued);
}

/* Bounded: with the export thread asleep, the 4097th waiting operation is
 * refused and counted; nothing blocks. */
TEST(test_queue_bound) {
  file_init(60000);
  char id[MLT_TRACE_ID_SIZE];
  finished_trace("t", id);
  int ok = 0, full = 0, other = 0;
  for (int i = 0; i < 10000; i++) {
    int rc = mlt_set_trace_tag(id, "n", "v");
    if (rc == MLT_OK) ok++;
    else if (rc == MLT_EFULL) full++;
    else other++;
  }
  CHECK_EQ_INT(other, 0);
  CHECK(full >= 10000 - 2 * 4096);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_dropped, full);
  CHECK_EQ_INT((int)st.trace_ops_queued, ok);
  CHECK_EQ_INT(mlt_flush(30000), MLT_EIO); /* some were dropped */
  st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_delivered, ok);
  CHECK_EQ_INT(mlt_flush(30000), MLT_OK); /* nothing lost since */
  mlt_shutdown(5000);
}

/* An unwritable store: every operation fails, counted; shutdown keeps
 * queued == delivered + failed. */
TEST(test_failures_counted) {
  mlt_options *o = NULL;
  REQUIRE(mlt_options_new(&o) == MLT_OK);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, MLT_LOG_OFF, NULL, NULL);
  mlt_options_set_file_path(o, "/nonexistent-dir/mlt/t.jsonl");
  tu_start(o);
  char id[MLT_TRACE_ID_SIZE];
  finished_trace("t", id);
  for (int i = 0; i < 5; i++) CHECK_EQ_INT(mlt_log_feedback(id, MLT_ASSESSMENT(.value_json = "1")), MLT_OK);
  /* The trace itself could not be written either: the flush says so. */
  CHECK_EQ_INT(mlt_flush(10000), MLT_EIO);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_failed, 5);
  CHECK_EQ_INT((int)st.trace_ops_delivered, 0);
  mlt_shutdown(5000);
  st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_queued, 5);
}

/* Threads submitting at once (TSan): every operation accounted for, and the
 * operations of one thread on one trace arrive in its order. */
#define NTHREADS 4
#define PER_THREAD 200
static char g_ids[NTHREADS][MLT_TRACE_ID_SIZE];

static void *submitter(void *arg) {
  int k = (int)(intptr_t)arg;
  char v[16];
  for (int i = 0; i < PER_THREAD; i++) {
    snprintf(v, sizeof v, "%d", i);
    if (mlt_set_trace_tag(g_ids[k], "seq", v) != MLT_OK) abort();
  }
  return NULL;
}

TEST(test_threads) {
  file_init(0);
  for (int k = 0; k < NTHREADS; k++) finished_trace("t", g_ids[k]);
  pthread_t th[NTHREADS];
  for (int k = 0; k < NTHREADS; k++) pthread_create(&th[k], NULL, submitter, (void *)(intptr_t)k);
  for (int k = 0; k < NTHREADS; k++) pthread_join(th[k], NULL);
  CHECK_EQ_INT(mlt_shutdown(30000), MLT_OK);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT((int)st.trace_ops_queued, NTHREADS * PER_THREAD);
  CHECK_EQ_INT((int)st.trace_ops_delivered, NTHREADS * PER_THREAD);
  tu_jsonl js;
  tu_jsonl_read(&js, g_tmp);
  cJSON **l = js.trace;
  size_t n = (size_t)js.n;
  CHECK_EQ_INT((int)n, NTHREADS * PER_THREAD + NTHREADS);
  int next[NTHREADS] = {0};
  for (size_t i = 0; i < n; i++) {
    if (!update_kind(l[i])) continue;
    for (int k = 0; k < NTHREADS; k++)
      if (!strcmp(tu_info(l[i], "trace_id"), g_ids[k])) {
        CHECK_EQ_INT(atoi(tu_tag(l[i], "seq")), next[k]);
        next[k]++;
      }
  }
  for (int k = 0; k < NTHREADS; k++) CHECK_EQ_INT(next[k], PER_THREAD);
  tu_jsonl_free(&js);
}

static const tap_test tests[] = {TAP_ENTRY(test_bad_input),
                                 TAP_ENTRY(test_not_supported),
                                 TAP_ENTRY(test_live_trace),
                                 TAP_ENTRY(test_state_and_model_id),
                                 TAP_ENTRY(test_file_updates_after_trace),
                                 TAP_ENTRY(test_queue_bound),
                                 TAP_ENTRY(test_failures_counted),
                                 TAP_ENTRY(test_threads),
                                 TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
