/* tests/unit/test_core.c: the core API at its three levels, end to end through
 * the in-memory store (the same serializer as the file store). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* ---- life cycle ------------------------------------------------------ */

TEST(calls_before_init_are_noops) {
  mlt_span s = mlt_span_start("x", MLT_SPAN_LLM);
  CHECK(mlt_span_is_none(s));
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "k", "v"), MLT_ENOTRECORDING);
  CHECK_EQ_INT(mlt_span_end(s), MLT_ENOTRECORDING);
  CHECK_EQ_INT(mlt_flush(10), MLT_ENOTINIT);
  CHECK_EQ_INT(mlt_shutdown(10), MLT_ENOTINIT);
  CHECK(mlt_context_capture(s) == NULL);
  mlt_client_span cs;
  CHECK_EQ_INT(mlt_client_start_trace("t", MLT_SPAN_CHAIN, NULL, &cs), MLT_ENOTINIT);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.spans_started, 0);
  CHECK(mlt_is_enabled() == 0);
}

TEST(init_twice_and_reinit) {
  tu_init();
  CHECK_EQ_INT(mlt_init(NULL), MLT_EALREADY);
  mlt_span s = mlt_span_start("a", MLT_SPAN_CHAIN);
  mlt_span_end(s);
  CHECK_EQ_INT(tu_flush_count(), 1);
  tu_done();
  /* the old handle is dead after shutdown: harmless */
  CHECK_EQ_INT(mlt_span_end(s), MLT_ENOTINIT);
  tu_init();
  CHECK_EQ_INT(mlt_span_end(s), MLT_ESTALE);
  mlt_span s2 = mlt_span_start("b", MLT_SPAN_CHAIN);
  CHECK(!mlt_span_is_none(s2));
  mlt_span_end(s2);
  CHECK_EQ_INT(tu_flush_count(), 1);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.traces_exported, 1);
  tu_done();
  st = tu_stats();
  CHECK_EQ_INT(st.traces_exported, 1); /* readable after shutdown */
}

/* ---- function scope / block scope ------------------------------------ */

static int traced_leaf(int x) {
  MLT_TRACE_FUNCTION(MLT_SPAN_TOOL);
  mlt_span_set_inputs_fields(mlt_fn_span, (mlt_attr[]){MLT_ATTR_INT("x", x)}, 1);
  if (x > 5) return -1; /* early return still ends the span */
  mlt_span_set_outputs_json(mlt_fn_span, "42");
  return 42;
}

static void traced_root(void) {
  MLT_TRACE_FUNCTION_NAMED("pipeline", MLT_SPAN_CHAIN);
  mlt_span_set_inputs_json(mlt_fn_span, "{\"question\": \"What is MLflow?\"}");
  {
    MLT_SPAN_SCOPE(sp, "retrieve", MLT_SPAN_RETRIEVER);
    mlt_span_set_inputs_json(sp, "{\"query\": \"mlflow\"}");
    mlt_span_set_outputs_json(sp, "[{\"doc\": \"d1\"}]");
    traced_leaf(1);
  }
  traced_leaf(9);
  mlt_span_set_outputs_json(mlt_fn_span, "\"MLflow is a platform\"");
}

TEST(function_and_block_scopes) {
  tu_init();
  traced_root();
  CHECK(mlt_span_is_none(mlt_current_span()));
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  REQUIRE_EQ_INT(tu_nspans(t), 4);
  cJSON *root = cJSON_GetArrayItem(tu_spans(t), 0);
  CHECK_EQ_STR(tu_str(root, "name"), "pipeline");
  CHECK(cJSON_IsNull(cJSON_GetObjectItem(root, "parent_span_id")));
  CHECK_EQ_STR(tu_attr(root, "mlflow.spanType"), "\"CHAIN\"");
  CHECK_EQ_STR(tu_attr(root, "mlflow.spanFunctionName"), "\"traced_root\"");
  CHECK_EQ_STR(tu_attr(root, "mlflow.spanInputs"), "{\"question\": \"What is MLflow?\"}");
  CHECK_EQ_STR(tu_attr(root, "mlflow.spanOutputs"), "\"MLflow is a platform\"");
  cJSON *ret = tu_span(t, "retrieve");
  REQUIRE(ret != NULL);
  CHECK_EQ_STR(tu_str(ret, "parent_span_id"), tu_str(root, "span_id"));
  CHECK_EQ_STR(tu_attr(ret, "mlflow.spanType"), "\"RETRIEVER\"");
  /* the two traced_leaf spans: one under retrieve, one under the root */
  int under_ret = 0, under_root = 0;
  cJSON *s;
  cJSON_ArrayForEach(s, tu_spans(t)) {
    if (strcmp(tu_str(s, "name"), "traced_leaf") != 0) continue;
    const char *p = tu_str(s, "parent_span_id");
    if (p && strcmp(p, tu_str(ret, "span_id")) == 0) {
      under_ret++;
      CHECK_EQ_STR(tu_attr(s, "mlflow.spanInputs"), "{\"x\": 1}");
      CHECK_EQ_STR(tu_attr(s, "mlflow.spanOutputs"), "42");
    }
    if (p && strcmp(p, tu_str(root, "span_id")) == 0) {
      under_root++;
      CHECK_EQ_STR(tu_attr(s, "mlflow.spanInputs"), "{\"x\": 9}");
      CHECK(tu_attr(s, "mlflow.spanOutputs") == NULL);
    }
    CHECK_EQ_STR(tu_attr(s, "mlflow.spanFunctionName"), "\"traced_leaf\"");
  }
  CHECK_EQ_INT(under_ret, 1);
  CHECK_EQ_INT(under_root, 1);
  /* parents precede children */
  CHECK_EQ_STR(tu_str(cJSON_GetArrayItem(tu_spans(t), 1), "name"), "retrieve");
  /* trace info */
  CHECK_EQ_STR(tu_info(t, "state"), "OK");
  CHECK(strncmp(tu_info(t, "trace_id"), "tr-", 3) == 0);
  CHECK_EQ_INT(strlen(tu_info(t, "trace_id")), 35);
  CHECK_EQ_STR(tu_tag(t, "mlflow.traceName"), "pipeline");
  CHECK_EQ_STR(tu_meta(t, "mlflow.trace_schema.version"), "3");
  CHECK_EQ_STR(tu_info(t, "request_preview"), "{\"question\": \"What is MLflow?\"}");
  CHECK_EQ_STR(tu_info(t, "response_preview"), "\"MLflow is a platform\"");
  const char *rt = tu_info(t, "request_time");
  REQUIRE(rt != NULL);
  CHECK(strlen(rt) == 24 && rt[10] == 'T' && rt[23] == 'Z');
  /* every span carries the trace id attribute */
  char want[64];
  snprintf(want, sizeof want, "\"%s\"", tu_info(t, "trace_id"));
  cJSON_ArrayForEach(s, tu_spans(t)) CHECK_EQ_STR(tu_attr(s, "mlflow.traceRequestId"), want);
  tu_done();
}

TEST(every_span_type_and_custom_type) {
  tu_init();
  mlt_span root = mlt_span_start("root", MLT_SPAN_AGENT);
  for (int i = 0; i < MLT__SPAN_TYPE_COUNT; i++) {
    mlt_span s = mlt_span_start(mlt_span_type_name((mlt_span_type)i), (mlt_span_type)i);
    mlt_span_end(s);
  }
  mlt_span c = mlt_span_start("custom", MLT_SPAN_UNKNOWN);
  CHECK_EQ_INT(mlt_span_set_type_name(c, "MY_STEP"), MLT_OK);
  mlt_span_end(c);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  for (int i = 0; i < MLT__SPAN_TYPE_COUNT; i++) {
    const char *name = mlt_span_type_name((mlt_span_type)i);
    cJSON *s = tu_span(t, name);
    REQUIRE(s != NULL);
    char want[64];
    snprintf(want, sizeof want, "\"%s\"", name);
    CHECK_EQ_STR(tu_attr(s, "mlflow.spanType"), want);
  }
  CHECK_EQ_STR(tu_attr(tu_span(t, "custom"), "mlflow.spanType"), "\"MY_STEP\"");
  CHECK_EQ_STR(mlt_span_type_name((mlt_span_type)99), "UNKNOWN");
  tu_done();
}

/* ---- values ---------------------------------------------------------- */

TEST(inputs_outputs_attributes_events) {
  tu_init();
  mlt_span s = mlt_span_start("v", MLT_SPAN_LLM);
  cJSON *in = cJSON_CreateObject();
  cJSON_AddStringToObject(in, "prompt", "hi");
  CHECK_EQ_INT(mlt_span_set_inputs(s, in), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_outputs_text(s, "hello \"world\"", MLT_NTS), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "model", "gpt-x"), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_int(s, "tokens", 42), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_int(s, "tokens", 43), MLT_OK); /* replaced */
  CHECK_EQ_INT(mlt_span_set_attr_double(s, "temp", 0.7), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_bool(s, "stream", 1), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_json(s, "mlflow.chat.tokenUsage",
                                      "{\"input_tokens\": 3, \"output_tokens\": 4, \"total_tokens\": 7}"),
               MLT_OK);
  mlt_attr ev[] = {MLT_ATTR_STR("k", "v"), MLT_ATTR_INT("n", 5), MLT_ATTR_BOOL("b", 0)};
  CHECK_EQ_INT(mlt_span_add_event(s, "retry", ev, 3), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_str(s, NULL, "x"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_inputs_json(s, NULL), MLT_EINVAL);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *sp = tu_span(t, "v");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanInputs"), "{\"prompt\":\"hi\"}");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), "\"hello \\\"world\\\"\"");
  CHECK_EQ_STR(tu_attr(sp, "model"), "\"gpt-x\"");
  CHECK_EQ_STR(tu_attr(sp, "tokens"), "43");
  CHECK_EQ_STR(tu_attr(sp, "temp"), "0.7");
  CHECK_EQ_STR(tu_attr(sp, "stream"), "true");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanLogLevel"), "20");
  CHECK_EQ_STR(tu_meta(t, "mlflow.trace.tokenUsage"), "{\"input_tokens\": 3, \"output_tokens\": 4, \"total_tokens\": 7}");
  cJSON *evs = cJSON_GetObjectItem(sp, "events");
  REQUIRE_EQ_INT(cJSON_GetArraySize(evs), 1);
  cJSON *e0 = cJSON_GetArrayItem(evs, 0);
  CHECK_EQ_STR(tu_str(e0, "name"), "retry");
  cJSON *ea = cJSON_GetObjectItem(e0, "attributes");
  CHECK_EQ_STR(tu_str(ea, "k"), "v");
  CHECK_EQ_INT(cJSON_GetObjectItem(ea, "n")->valuedouble, 5);
  CHECK(cJSON_IsFalse(cJSON_GetObjectItem(ea, "b")));
  CHECK(cJSON_IsNumber(cJSON_GetObjectItem(e0, "time_unix_nano")));
  tu_done();
}

TEST(record_error_like_mlflow) {
  tu_init();
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  mlt_span s = mlt_span_start("tool", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_record_error(s, "ValueError", "boom"), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_status(s, MLT_STATUS_OK, NULL), MLT_OK); /* ERROR sticks */
  mlt_span_end(s);
  mlt_span_set_status(root, MLT_STATUS_ERROR, "pipeline failed");
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_info(t, "state"), "ERROR");
  cJSON *sp = tu_span(t, "tool");
  cJSON *st = cJSON_GetObjectItem(sp, "status");
  CHECK_EQ_STR(tu_str(st, "code"), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_str(st, "message"), "ValueError: boom");
  cJSON *e0 = cJSON_GetArrayItem(cJSON_GetObjectItem(sp, "events"), 0);
  CHECK_EQ_STR(tu_str(e0, "name"), "exception");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(e0, "attributes"), "exception.type"), "ValueError");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(e0, "attributes"), "exception.message"), "boom");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanLogLevel"), "40");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tu_span(t, "root"), "status"), "message"), "pipeline failed");
  tu_done();
}

TEST(invalid_utf8_and_embedded_nul) {
  tu_init();
  mlt_span s = mlt_span_start("bad\xff" "name", MLT_SPAN_PARSER);
  const char raw[] = "a\0b\xc3\x28 \xe2\x82 ok \xf0\x9f\x8e\x89";
  CHECK_EQ_INT(mlt_span_set_attr_str_n(s, "bytes", raw, sizeof raw - 1), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_inputs_json(s, "{\"q\": \"caf\xe9\"}"), MLT_OK); /* latin-1 byte in JSON */
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0); /* parses: valid JSON */
  cJSON *sp = cJSON_GetArrayItem(tu_spans(t), 0);
  CHECK_EQ_STR(tu_str(sp, "name"), "bad\xef\xbf\xbdname");
  cJSON *v = tu_attr_json(sp, "bytes");
  REQUIRE(cJSON_IsString(v));
  /* cJSON stops at the NUL; the raw attribute keeps the escaped \u0000 */
  CHECK(strstr(tu_attr(sp, "bytes"), "\\u0000") != NULL);
  cJSON *in = tu_attr_json(sp, "mlflow.spanInputs");
  REQUIRE(cJSON_IsObject(in));
  CHECK_EQ_STR(tu_str(in, "q"), "caf\xef\xbf\xbd");
  tu_done();
}

TEST(huge_payload_truncated_with_marker) {
  mlt_options *o = tu_options();
  mlt_options_set_max_value_bytes(o, 1000);
  tu_start(o);
  size_t n = 5 * 1000 * 1000;
  char *big = malloc(n + 1);
  for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
  big[n] = '\0';
  big[0] = '[';
  big[1] = '"'; /* JSON-ish text, cut: exported as a string */
  mlt_span s = mlt_span_start("big", MLT_SPAN_CHAIN);
  CHECK_EQ_INT(mlt_span_set_inputs_json(s, big), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "blob", big), MLT_OK);
  mlt_span_end(s);
  free(big);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *sp = tu_span(t, "big");
  cJSON *in = tu_attr_json(sp, "mlflow.spanInputs");
  REQUIRE(cJSON_IsString(in));
  CHECK(strstr(in->valuestring, "...[truncated by mltrace: 5000000 bytes]") != NULL);
  CHECK(strlen(in->valuestring) < 1100);
  cJSON *blob = tu_attr_json(sp, "blob");
  REQUIRE(cJSON_IsString(blob));
  CHECK(strstr(blob->valuestring, "[truncated by mltrace: 5000000 bytes]") != NULL);
  CHECK_EQ_INT(tu_stats().values_truncated, 2);
  tu_done();
}

TEST(truncation_keeps_utf8_whole) {
  mlt_options *o = tu_options();
  mlt_options_set_max_value_bytes(o, 64);
  tu_start(o);
  char txt[400] = "";
  for (int i = 0; i < 100; i++) strcat(txt, "\xc3\xa9"); /* é x100 = 200 bytes */
  mlt_span s = mlt_span_start("u", MLT_SPAN_CHAIN);
  mlt_span_set_attr_str(s, "t", txt);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *v = tu_attr_json(tu_span(tu_trace(0), "u"), "t");
  REQUIRE(cJSON_IsString(v));
  CHECK(strstr(v->valuestring, "\xef\xbf\xbd") == NULL); /* no broken sequence */
  CHECK(strncmp(v->valuestring, "\xc3\xa9\xc3\xa9", 4) == 0);
  tu_done();
}

TEST(invalid_json_text_exported_as_string) {
  tu_init();
  mlt_span s = mlt_span_start("j", MLT_SPAN_CHAIN);
  mlt_span_set_inputs_json(s, "{not json");
  mlt_span_set_outputs_json(s, "  {\"ok\": [1, 2.5e3, true, null]}  ");
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *sp = tu_span(tu_trace(0), "j");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanInputs"), "\"{not json\"");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), "{\"ok\": [1, 2.5e3, true, null]}");
  CHECK_EQ_INT(tu_stats().invalid_json, 1);
  tu_done();
}

/* An invalid stream chunk stored as a delta (like the chunk before it) is
 * counted once, however often its span is digested (a root span: for its
 * JSON, the trace's outputs and the preview), and exported as its text. */
TEST(invalid_delta_chunk_counted_once) {
  mlt_options *o = tu_options();
  mlt_memory_store *second = mlt_memory_store_new();
  mlt_exporter *e = NULL;
  REQUIRE_EQ_INT(mlt_exporter_memory_new(second, &e), MLT_OK);
  mlt_options_add_exporter(o, e); /* a second exporter digests the span again */
  tu_start(o);
  mlt_span s = mlt_span_start("d", MLT_SPAN_LLM);
  static const char a[] = "{\"id\":\"abcdefghijklmnopqrstuvwxyz\",\"d\":\"a\"}";
  static const char b[] = "{\"id\":\"abcdefghijklmnopqrstuvwxyz\",\"d\":\"b\"";
  static const char c[] = "{\"id\":\"abcdefghijklmnopqrstuvwxyz\",\"d\":\"\xff\"}";
  mlt_span_add_chunk_json(s, a, sizeof a - 1);
  mlt_span_add_chunk_json(s, b, sizeof b - 1);
  mlt_span_add_chunk_json(s, c, sizeof c - 1);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *ev = cJSON_GetObjectItem(tu_span(tu_trace(0), "d"), "events");
  REQUIRE_EQ_INT(cJSON_GetArraySize(ev), 3);
  const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(ev, 1), "attributes"), "mlflow.chunk.value");
  cJSON *inner = cJSON_Parse(cJSON_GetStringValue(v)); /* the JSON string of its text */
  CHECK(cJSON_IsString(inner) && strcmp(inner->valuestring, b) == 0);
  cJSON_Delete(inner);
  CHECK_EQ_INT(tu_stats().invalid_json, 1);
  CHECK_EQ_INT((int)mlt_memory_store_count(second), 1);
  tu_done();
  mlt_memory_store_release(second);
}

/* ---- misuse ---------------------------------------------------------- */

TEST(double_end_and_stale_handles) {
  tu_init();
  mlt_span s = mlt_span_start("once", MLT_SPAN_CHAIN);
  mlt_context *hold = tu_hold(s);
  CHECK_EQ_INT(mlt_span_end(s), MLT_OK);
  CHECK_EQ_INT(mlt_span_end(s), MLT_EENDED);
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "late", "x"), MLT_EENDED);
  mlt_context_release(hold);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  /* trace exported: the handle is stale, and stays harmless */
  CHECK_EQ_INT(mlt_span_end(s), MLT_ESTALE);
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "late", "x"), MLT_ESTALE);
  CHECK(mlt_context_capture(s) == NULL);
  /* a new span reusing the slot is not touched by the stale handle */
  mlt_span s2 = mlt_span_start("second", MLT_SPAN_CHAIN);
  CHECK_EQ_INT(mlt_span_end(s), MLT_ESTALE);
  CHECK_EQ_INT(mlt_span_is_recording(s2), 1);
  mlt_span_end(s2);
  /* made-up and NONE handles */
  mlt_span bogus = {0x1234567800000042ull};
  CHECK_EQ_INT(mlt_span_end(bogus), MLT_ESTALE);
  CHECK_EQ_INT(mlt_span_end(MLT_SPAN_NONE), MLT_ENOTRECORDING);
  CHECK_EQ_INT(mlt_span_add_event(MLT_SPAN_NONE, "e", NULL, 0), MLT_ENOTRECORDING);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  CHECK(tu_stats().misuse >= 4);
  CHECK(tu_attr(tu_span(tu_trace(0), "once"), "late") == NULL);
  tu_done();
}

TEST(parent_ended_before_children) {
  tu_init();
  mlt_span root = mlt_span_start_in(NULL, "root", MLT_SPAN_AGENT);
  mlt_span child = mlt_span_start_child(root, "child", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_end(root), MLT_OK);
  CHECK_EQ_INT(tu_flush_count(), 0); /* trace waits for the child */
  mlt_span grandchild = mlt_span_start_child(child, "grandchild", MLT_SPAN_LLM);
  CHECK_EQ_INT(mlt_span_end(child), MLT_OK);
  CHECK_EQ_INT(mlt_span_end(grandchild), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_INT(tu_nspans(t), 3);
  CHECK_EQ_STR(tu_str(tu_span(t, "grandchild"), "parent_span_id"), tu_str(tu_span(t, "child"), "span_id"));
  tu_done();
}

/* A child span that ends while its trace goes on leaves its slot for a
 * compact copy (lib/core/compact.c).  Its handle still answers while the
 * trace is in memory -- MLT_EENDED, its ids and status, children by handle,
 * by context and by id -- and the exported trace is the same as ever. */
TEST(ended_children_moved_out_of_their_slots) {
  tu_init();
  mlt_client_span root;
  REQUIRE_EQ_INT(mlt_client_start_trace("root", MLT_SPAN_CHAIN, NULL, &root), MLT_OK);
  mlt_span a = mlt_span_start_child(root.span, "a", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_set_inputs_json(a, "{\"q\": 1}"), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_str(a, "k", "a value long enough to need a heap chunk of the log, beyond the slot"),
               MLT_OK);
  CHECK_EQ_INT(mlt_span_set_status(a, MLT_STATUS_ERROR, "bad"), MLT_OK);
  char sid[MLT_SPAN_ID_SIZE], tid[MLT_TRACE_ID_SIZE], buf[MLT_TRACE_ID_SIZE];
  REQUIRE_EQ_INT(mlt_span_get_span_id(a, sid, sizeof sid), MLT_OK);
  REQUIRE_EQ_INT(mlt_span_get_trace_id(a, tid, sizeof tid), MLT_OK);
  usleep(2000); /* a trace younger than 1 ms keeps its ended spans in their slots */
  CHECK_EQ_INT(mlt_span_end(a), MLT_OK);
  /* spans of other traces started and ended meanwhile (slots are reused
   * last-in first-out, but a moved span's slot waits its turn) */
  for (int i = 0; i < 8; i++) {
    mlt_span other = mlt_span_start_in(NULL, "other", MLT_SPAN_CHAIN);
    mlt_span oc = mlt_span_start_child(other, "other child", MLT_SPAN_TOOL);
    mlt_span_end(oc);
    mlt_span_end(other);
  }
  /* the ended span, as before its move */
  CHECK_EQ_INT(mlt_span_end(a), MLT_EENDED);
  CHECK_EQ_INT(mlt_span_set_attr_str(a, "late", "x"), MLT_EENDED);
  CHECK_EQ_INT(mlt_span_make_current(a), MLT_EENDED);
  CHECK_EQ_INT(mlt_span_is_recording(a), 0);
  CHECK_EQ_INT(mlt_span_get_status(a), MLT_STATUS_ERROR);
  CHECK_EQ_INT(mlt_span_get_span_id(a, buf, sizeof buf), MLT_OK);
  CHECK_EQ_STR(buf, sid);
  CHECK_EQ_INT(mlt_span_get_trace_id(a, buf, sizeof buf), MLT_OK);
  CHECK_EQ_STR(buf, tid);
  CHECK_EQ_STR(buf, root.trace_id);
  /* children of the ended span: by handle, by context, by id */
  mlt_span b = mlt_span_start_child(a, "b", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_is_recording(b), 1);
  CHECK_EQ_INT(mlt_span_end(b), MLT_OK);
  mlt_context *ca = mlt_context_capture(a);
  REQUIRE(ca != NULL);
  mlt_span c = mlt_span_start_in(ca, "c", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_end(c), MLT_OK);
  mlt_context_release(ca);
  mlt_client_span d;
  REQUIRE_EQ_INT(mlt_client_start_span(root.trace_id, sid, "d", MLT_SPAN_TOOL, "{\"x\": 2}", &d), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, d.span_id, "{\"y\": 3}", MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, d.span_id, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, sid, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
  CHECK_EQ_INT(mlt_update_trace(a, MLT_TRACE_UPDATE(.tags = MLT_KV("via", "ended child"))), MLT_OK);
  CHECK_EQ_INT(tu_flush_count(), 8); /* the other traces */
  CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 9);
  cJSON *t = tu_trace_named("root");
  REQUIRE(t != NULL);
  CHECK_EQ_INT(tu_nspans(t), 5);
  cJSON *sa = tu_span(t, "a");
  REQUIRE(sa != NULL);
  REQUIRE(tu_root(t) != NULL);
  CHECK_EQ_STR(tu_str(sa, "parent_span_id"), tu_str(tu_root(t), "span_id"));
  CHECK_EQ_STR(tu_attr(sa, "mlflow.spanInputs"), "{\"q\": 1}");
  CHECK_EQ_STR(tu_attr(sa, "k"), "\"a value long enough to need a heap chunk of the log, beyond the slot\"");
  CHECK(tu_attr(sa, "late") == NULL);
  CHECK_EQ_STR(tu_status_code(sa), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_status_msg(sa), "bad");
  for (const char *n = "bcd"; *n; n++) {
    char name[2] = {*n, 0};
    cJSON *x = tu_span(t, name);
    REQUIRE(x != NULL);
    CHECK_EQ_STR(tu_str(x, "parent_span_id"), tu_str(sa, "span_id"));
  }
  CHECK_EQ_STR(tu_attr(tu_span(t, "d"), "mlflow.spanOutputs"), "{\"y\": 3}");
  CHECK_EQ_STR(tu_tag(t, "via"), "ended child");
  /* exported: stale now */
  CHECK_EQ_INT(mlt_span_end(a), MLT_ESTALE);
  CHECK_EQ_INT(mlt_span_get_status(a), MLT_ESTALE);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, sid, NULL, MLT_STATUS_OK, NULL), MLT_ENOTFOUND);
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  CHECK_EQ_INT((int)st.spans_exported, 5 + 16);
  tu_done();
}

/* Children ending on several threads while the trace is ended from another:
 * whether each one moved out of its slot, was still open (a snapshot), or
 * ended after the trace did, the trace goes out whole, once, and the counts
 * add up. */
typedef struct {
  mlt_context *ctx;
  int n;
  _Atomic int *go;
} move_race_arg;

static void *move_race_worker(void *p) {
  move_race_arg *a = p;
  while (!atomic_load(a->go)) sched_yield();
  for (int i = 0; i < a->n; i++) {
    mlt_span s = mlt_span_start_in(a->ctx, "w", MLT_SPAN_TOOL);
    mlt_span_set_attr_int(s, "i", i);
    if (i % 3 == 0) mlt_span_set_inputs_json(s, "{\"a long enough input\": \"to spill past the inline log of the slot\", \"n\": 1}");
    mlt_span_end(s);
    mlt_span_end(s);
  }
  return NULL;
}

TEST(moves_race_a_forced_finish) {
  tu_init();
  enum { ROUNDS = 40, THREADS = 3, PER = 40 };
  uint64_t started = 0;
  for (int r = 0; r < ROUNDS; r++) {
    mlt_client_span root;
    REQUIRE_EQ_INT(mlt_client_start_trace("race", MLT_SPAN_CHAIN, NULL, &root), MLT_OK);
    mlt_context *ctx = mlt_context_capture(root.span);
    REQUIRE(ctx != NULL);
    if (r % 2) usleep(2000); /* old enough for ended spans to move out of their slots */
    _Atomic int go = 0;
    move_race_arg arg = {ctx, PER, &go};
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, move_race_worker, &arg);
    atomic_store(&go, 1);
    for (int spin = 0; spin < r * 50; spin++) sched_yield();
    CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    mlt_context_release(ctx);
    started += 1;
  }
  /* spans started after their trace ended make continuation traces */
  int ntraces = tu_flush_count();
  REQUIRE(ntraces >= ROUNDS);
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  uint64_t spans = 0;
  int roots = 0;
  for (int i = 0; i < ntraces; i++) {
    cJSON *t = tu_trace((size_t)i);
    REQUIRE(t != NULL);
    spans += (uint64_t)tu_nspans(t);
    /* every other span is a child of the round's root */
    cJSON *root = tu_span(t, "race");
    const char *parent = NULL;
    cJSON *s;
    cJSON_ArrayForEach(s, tu_spans(t)) {
      if (s == root) continue;
      if (!parent) parent = tu_str(s, "parent_span_id");
      CHECK_EQ_STR(tu_str(s, "parent_span_id"), parent);
      CHECK_EQ_STR(tu_str(s, "name"), "w");
    }
    if (root) {
      roots++;
      if (parent) CHECK_EQ_STR(parent, tu_str(root, "span_id"));
    }
  }
  CHECK_EQ_INT((int)started, ROUNDS);
  if (roots != ROUNDS || (int)spans != ROUNDS * (1 + THREADS * PER)) {
    fprintf(stderr, "# traces %d failed %llu dropped %llu partial %llu timed_out spans %llu\n", ntraces,
            (unsigned long long)st.traces_failed, (unsigned long long)st.traces_dropped,
            (unsigned long long)st.traces_partial, (unsigned long long)st.spans_timed_out);
    for (int i = 0; i < ntraces; i++) {
      cJSON *t = tu_trace((size_t)i);
      fprintf(stderr, "#  trace %d: %d spans, root %s\n", i, tu_nspans(t), tu_span(t, "race") ? "yes" : "no");
    }
  }
  CHECK_EQ_INT(roots, ROUNDS);
  CHECK_EQ_INT((int)spans, ROUNDS * (1 + THREADS * PER));
  CHECK_EQ_INT((int)st.traces_exported, ntraces);
  CHECK_EQ_INT((int)st.spans_exported, (int)spans);
  tu_done();
}

/* ---- client API ------------------------------------------------------ */

TEST(client_api) {
  tu_init();
  mlt_client_span root, child, child2;
  REQUIRE_EQ_INT(mlt_client_start_trace("chat", MLT_SPAN_AGENT, "{\"q\": \"hi\"}", &root), MLT_OK);
  CHECK_EQ_INT(strlen(root.trace_id), 35);
  CHECK_EQ_INT(strlen(root.span_id), 16);
  REQUIRE_EQ_INT(mlt_client_start_span(root.trace_id, root.span_id, "llm", MLT_SPAN_LLM, "{\"m\": 1}", &child), MLT_OK);
  CHECK_EQ_STR(child.trace_id, root.trace_id);
  REQUIRE_EQ_INT(mlt_client_start_span(root.trace_id, child.span_id, "nested", MLT_SPAN_TOOL, NULL, &child2), MLT_OK);
  mlt_span_set_attr_str(child2.span, "via", "handle");
  mlt_client_span bad;
  CHECK_EQ_INT(mlt_client_start_span(root.trace_id, "0123456789abcdef", "x", MLT_SPAN_LLM, NULL, &bad), MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_client_start_span("tr-00000000000000000000000000000001", root.span_id, "x", MLT_SPAN_LLM, NULL, &bad),
               MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_client_start_span("garbage", root.span_id, "x", MLT_SPAN_LLM, NULL, &bad), MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, child2.span_id, "\"done\"", MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, child2.span_id, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, child.span_id, NULL, MLT_STATUS_ERROR, "rate limited"), MLT_OK);
  mlt_span h;
  CHECK_EQ_INT(mlt_client_get_span(root.trace_id, root.span_id, &h), MLT_OK);
  CHECK_EQ_INT(mlt_update_trace_by_id(root.trace_id, MLT_TRACE_UPDATE(.tags = MLT_KV("env", "test"))), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, "{\"a\": \"hello\"}", MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_ENOTFOUND);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_info(t, "trace_id"), root.trace_id);
  CHECK_EQ_INT(tu_nspans(t), 3);
  CHECK_EQ_STR(tu_attr(tu_span(t, "nested"), "mlflow.spanOutputs"), "\"done\"");
  CHECK_EQ_STR(tu_attr(tu_span(t, "nested"), "via"), "\"handle\"");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tu_span(t, "llm"), "status"), "message"), "rate limited");
  CHECK_EQ_STR(tu_attr(tu_span(t, "chat"), "mlflow.spanOutputs"), "{\"a\": \"hello\"}");
  CHECK_EQ_STR(tu_tag(t, "env"), "test");
  tu_done();
}

TEST(client_end_trace_ends_open_children) {
  tu_init();
  mlt_client_span root, child;
  REQUIRE_EQ_INT(mlt_client_start_trace("t", MLT_SPAN_CHAIN, NULL, &root), MLT_OK);
  REQUIRE_EQ_INT(mlt_client_start_span(root.trace_id, root.span_id, "open", MLT_SPAN_TOOL, "{\"x\": 1}", &child),
                 MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *open = tu_span(t, "open");
  REQUIRE(open != NULL);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(open, "status"), "code"), "STATUS_CODE_ERROR");
  CHECK(strstr(tu_str(cJSON_GetObjectItem(open, "status"), "message"), "still open") != NULL);
  CHECK_EQ_STR(tu_attr(open, "mlflow.spanInputs"), "{\"x\": 1}");
  /* the late end of the expired child is harmless */
  CHECK_EQ_INT(mlt_span_end(child.span), MLT_EENDED);
  CHECK_EQ_INT(mlt_span_end(child.span), MLT_ESTALE);
  tu_done();
}

/* A child still open when its trace is ended is exported from a snapshot
 * that keeps what the child had counted: its dropped events too. */
TEST(open_child_snapshot_keeps_dropped_events) {
  mlt_options *o = tu_options();
  mlt_options_set_max_events_per_span(o, 2);
  tu_start(o);
  mlt_client_span root, child;
  REQUIRE_EQ_INT(mlt_client_start_trace("t", MLT_SPAN_CHAIN, NULL, &root), MLT_OK);
  REQUIRE_EQ_INT(mlt_client_start_span(root.trace_id, root.span_id, "open", MLT_SPAN_TOOL, NULL, &child), MLT_OK);
  for (int i = 0; i < 5; i++) mlt_span_add_event(child.span, "e", NULL, 0);
  CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *open = tu_span(tu_trace(0), "open");
  REQUIRE(open != NULL);
  CHECK_EQ_STR(tu_attr(open, "mltrace.droppedEvents"), "3");
  tu_done();
}

/* end_trace's one-pass path (mlt__span_client_end_root) and the general
 * path it falls back to give the same answers. */
TEST(client_end_trace_fast_and_general_agree) {
  tu_init();
  mlt_client_span a, b, bc, c;
  /* a status set earlier (ERROR) is kept by a plain end_trace(OK) */
  REQUIRE_EQ_INT(mlt_client_start_trace("a", MLT_SPAN_CHAIN, NULL, &a), MLT_OK);
  REQUIRE_EQ_INT(mlt_span_set_status(a.span, MLT_STATUS_ERROR, "failed"), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(a.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(a.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
  /* the root ended through its handle, a child still open: the trace is
   * ended by id all the same (the child force-ended) */
  REQUIRE_EQ_INT(mlt_client_start_trace("b", MLT_SPAN_CHAIN, NULL, &b), MLT_OK);
  REQUIRE_EQ_INT(mlt_client_start_span(b.trace_id, b.span_id, "bc", MLT_SPAN_TOOL, NULL, &bc), MLT_OK);
  CHECK_EQ_INT(mlt_span_end(b.span), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(b.trace_id, NULL, MLT_STATUS_UNSET, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_span(bc.trace_id, bc.span_id, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
  /* status UNSET, and an id whose low half is the root's span id: no trace */
  REQUIRE_EQ_INT(mlt_client_start_trace("c", MLT_SPAN_CHAIN, NULL, &c), MLT_OK);
  char fake[MLT_TRACE_ID_SIZE];
  snprintf(fake, sizeof fake, "tr-%.16s%s", c.trace_id + 3, c.span_id);
  int rc = mlt_client_end_trace(fake, NULL, MLT_STATUS_OK, NULL);
  CHECK(rc == MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_client_end_trace(c.trace_id, NULL, MLT_STATUS_UNSET, NULL), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 3);
  cJSON *ta = NULL, *tb = NULL, *tc = NULL;
  for (int i = 0; i < 3; i++) {
    cJSON *t = tu_trace(i);
    if (tu_span(t, "a")) ta = t;
    if (tu_span(t, "b")) tb = t;
    if (tu_span(t, "c")) tc = t;
  }
  REQUIRE(ta && tb && tc);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tu_span(ta, "a"), "status"), "code"), "STATUS_CODE_ERROR");
  CHECK_EQ_INT(tu_nspans(tb), 2);
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tu_span(tb, "bc"), "status"), "code"), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tu_span(tc, "c"), "status"), "code"), "STATUS_CODE_OK");
  tu_done();
}

/* ---- trace-level data ------------------------------------------------ */

TEST(update_current_trace_and_limits) {
  tu_init();
  char longv[6000];
  memset(longv, 'x', sizeof longv - 1);
  longv[sizeof longv - 1] = '\0';
  {
    MLT_SPAN_SCOPE(root, "chat", MLT_SPAN_CHAT_MODEL);
    mlt_span_set_inputs_json(root, "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, "
                                   "{\"role\": \"user\", \"content\": \"What is MLflow?\"}]}");
    {
      MLT_SPAN_SCOPE(inner, "inner", MLT_SPAN_TOOL);
      CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("env", "dev", "big", longv),
                                                             .metadata = MLT_KV("app.version", "1.2", "long", longv),
                                                             .client_request_id = "req-1", .session_id = "s-42",
                                                             .user_id = "u-7")),
                   MLT_OK);
      CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("env", "prod"))), MLT_OK);
      CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = (const char *const[]){"odd", NULL})),
                   MLT_EINVAL);
    }
    mlt_span_set_outputs_json(root, "{\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": \"A platform.\"}}]}");
  }
  CHECK_EQ_INT(mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("late", "x"))), MLT_ENOTFOUND);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_tag(t, "env"), "prod");
  CHECK_EQ_INT(strlen(tu_tag(t, "big")), 4096);
  CHECK_EQ_STR(tu_meta(t, "app.version"), "1.2");
  CHECK_EQ_INT(strlen(tu_meta(t, "long")), 250);
  CHECK_EQ_STR(tu_meta(t, "mlflow.trace.session"), "s-42");
  CHECK_EQ_STR(tu_meta(t, "mlflow.trace.user"), "u-7");
  CHECK_EQ_STR(tu_info(t, "client_request_id"), "req-1");
  CHECK_EQ_STR(tu_info(t, "request_preview"), "What is MLflow?");
  CHECK_EQ_STR(tu_info(t, "response_preview"), "A platform.");
  tu_done();
}

/* A trace holds at most 4096 trace-level entries; past that an update is
 * refused whole with MLT_EFULL and the trace still exports. */
TEST(update_trace_entries_are_capped) {
  tu_init();
  mlt_span s = mlt_span_start("capped", MLT_SPAN_CHAIN);
  int ok = 0, full = 0;
  for (int i = 0; i < 5000; i++) {
    int rc = mlt_update_trace(s, MLT_TRACE_UPDATE(.tags = MLT_KV("k", "v")));
    if (rc == MLT_OK) ok++;
    if (rc == MLT_EFULL) full++;
  }
  CHECK_EQ_INT(ok, 4096);
  CHECK_EQ_INT(full, 5000 - 4096);
  CHECK_EQ_INT(mlt_update_trace(s, MLT_TRACE_UPDATE(.tags = MLT_KV("a", "1", "b", "2"))), MLT_EFULL);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  CHECK_EQ_STR(tu_tag(tu_trace(0), "k"), "v");
  tu_done();
}

TEST(previews_truncated_to_1000_chars) {
  tu_init();
  mlt_span s = mlt_span_start("p", MLT_SPAN_CHAIN);
  char txt[5000] = "\"";
  for (int i = 0; i < 1200; i++) strcat(txt, "\xc3\xa9");
  strcat(txt, "\"");
  mlt_span_set_inputs_json(s, txt);
  mlt_update_trace(s, MLT_TRACE_UPDATE(.response_preview = "custom"));
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  const char *rp = tu_info(t, "request_preview");
  REQUIRE(rp != NULL);
  size_t chars = 0;
  for (const char *p = rp; *p; p++)
    if (((unsigned char)*p & 0xC0) != 0x80) chars++;
  CHECK_EQ_INT(chars, 1000);
  CHECK(strcmp(rp + strlen(rp) - 3, "...") == 0);
  CHECK_EQ_STR(tu_info(t, "response_preview"), "custom");
  const char *ti = tu_meta(t, "mlflow.traceInputs");
  REQUIRE(ti != NULL);
  chars = 0;
  for (const char *p = ti; *p; p++)
    if (((unsigned char)*p & 0xC0) != 0x80) chars++;
  CHECK_EQ_INT(chars, 250);
  CHECK(strcmp(ti + strlen(ti) - 3, "...") == 0);
  tu_done();
}

TEST(last_active_trace_id) {
  tu_init();
  char buf[MLT_TRACE_ID_SIZE];
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, sizeof buf), MLT_ENOTFOUND);
  mlt_span s = mlt_span_start("a", MLT_SPAN_CHAIN);
  char id[MLT_TRACE_ID_SIZE];
  CHECK_EQ_INT(mlt_span_get_trace_id(s, id, sizeof id), MLT_OK);
  mlt_span_end(s);
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, sizeof buf), MLT_OK);
  CHECK_EQ_STR(buf, id);
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, 10), MLT_ERANGE);
  tu_done();
}

/* ---- contexts -------------------------------------------------------- */

typedef struct worker_arg {
  mlt_context *ctx;
} worker_arg;

static void *worker(void *p) {
  worker_arg *a = p;
  mlt_span s = mlt_span_start_in(a->ctx, "async-child", MLT_SPAN_TOOL);
  mlt_span_set_attr_int(s, "thread", 1);
  mlt_span_end(s);
  mlt_context_release(a->ctx);
  return NULL;
}

TEST(context_carries_parent_across_threads_after_parent_end) {
  tu_init();
  mlt_span root = mlt_span_start("root", MLT_SPAN_AGENT);
  mlt_context *c = mlt_context_capture(root);
  REQUIRE(c != NULL);
  worker_arg a = {mlt_context_hold(c)}; /* keeps the trace open for the worker */
  mlt_context_release(c);
  mlt_span_end(root);
  CHECK_EQ_INT(tu_flush_count(), 0);
  pthread_t th;
  pthread_create(&th, NULL, worker, &a);
  pthread_join(th, NULL);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_INT(tu_nspans(t), 2);
  CHECK_EQ_STR(tu_str(tu_span(t, "async-child"), "parent_span_id"), tu_str(tu_span(t, "root"), "span_id"));
  tu_done();
}

TEST(context_after_trace_finished_gives_continuation) {
  tu_init();
  mlt_span root = mlt_span_start("root", MLT_SPAN_AGENT);
  mlt_context *c = mlt_context_capture(root);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  mlt_span late = mlt_span_start_in(c, "late", MLT_SPAN_TOOL);
  mlt_span_end(late);
  mlt_context_release(c);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *t0 = tu_trace(0), *t1 = tu_trace(1);
  CHECK_EQ_STR(tu_info(t0, "trace_id"), tu_info(t1, "trace_id"));
  CHECK_EQ_STR(tu_str(tu_span(t1, "late"), "parent_span_id"), tu_str(tu_span(t0, "root"), "span_id"));
  CHECK_EQ_STR(tu_meta(t1, "mltrace.continuation"), "true");
  tu_done();
}

TEST(attach_detach_nesting_and_mismatch) {
  tu_init();
  mlt_span a = mlt_span_start_in(NULL, "A", MLT_SPAN_CHAIN);
  mlt_span b = mlt_span_start_in(NULL, "B", MLT_SPAN_CHAIN);
  mlt_context *ca = mlt_context_capture(a), *cb = mlt_context_capture(b);
  CHECK(mlt_span_is_none(mlt_current_span()));
  mlt_attach_token t1 = mlt_context_attach(ca);
  {
    MLT_SPAN_SCOPE(x, "under-A", MLT_SPAN_TOOL);
    mlt_attach_token t2 = mlt_context_attach(cb);
    {
      MLT_SPAN_SCOPE(y, "under-B", MLT_SPAN_TOOL);
    }
    CHECK_EQ_INT(mlt_context_detach(t1), MLT_EMISMATCH); /* not innermost: refused */
    CHECK_EQ_INT(mlt_context_detach(t2), MLT_OK);
    CHECK_EQ_INT(mlt_context_detach(t2), MLT_EMISMATCH);
    /* restored: the current span is under-A again */
    mlt_span cur = mlt_current_span();
    char id1[17], id2[17];
    mlt_span_get_span_id(cur, id1, sizeof id1);
    mlt_span_get_span_id(x, id2, sizeof id2);
    CHECK_EQ_STR(id1, id2);
  }
  CHECK_EQ_INT(mlt_context_detach(t1), MLT_OK);
  CHECK(mlt_span_is_none(mlt_current_span()));
  mlt_context *none = mlt_context_current();
  CHECK(none == NULL);
  mlt_context_release(ca);
  mlt_context_release(cb);
  mlt_span_end(a);
  mlt_span_end(b);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *ta = tu_trace_named("A"), *tb = tu_trace_named("B");
  REQUIRE(ta && tb);
  CHECK(tu_span(ta, "under-A") != NULL);
  CHECK(tu_span(tb, "under-B") != NULL);
  CHECK(tu_span(ta, "under-B") == NULL);
  tu_done();
}

TEST(traceparent_roundtrip_and_rejects) {
  tu_init();
  mlt_span s = mlt_span_start("caller", MLT_SPAN_CHAIN);
  mlt_context *c = mlt_context_capture(s);
  char tp[MLT_TRACEPARENT_SIZE], tid[MLT_TRACE_ID_SIZE], sid[MLT_SPAN_ID_SIZE];
  REQUIRE_EQ_INT(mlt_context_to_traceparent(c, tp, sizeof tp), MLT_OK);
  mlt_context_get_trace_id(c, tid, sizeof tid);
  mlt_context_get_span_id(c, sid, sizeof sid);
  CHECK_EQ_INT(strlen(tp), 55);
  CHECK(strncmp(tp, "00-", 3) == 0 && strncmp(tp + 3, tid + 3, 32) == 0 && strncmp(tp + 36, sid, 16) == 0);
  CHECK_EQ_STR(tp + 52, "-01");
  mlt_context *r = NULL;
  REQUIRE_EQ_INT(mlt_context_from_traceparent(tp, &r), MLT_OK);
  mlt_span callee = mlt_span_start_in(r, "callee", MLT_SPAN_TOOL);
  mlt_span_end(callee);
  mlt_context_release(r);
  mlt_span_end(s);
  mlt_context_release(c);
  static const char *const bad[] = {
      "",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
      "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    mlt_context *x = (mlt_context *)1;
    CHECK_EQ_INT(mlt_context_from_traceparent(bad[i], &x), MLT_EPARSE);
    CHECK(x == NULL);
  }
  mlt_context *fut = NULL;
  CHECK_EQ_INT(mlt_context_from_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what", &fut),
               MLT_OK);
  mlt_context_release(fut);
  mlt_context *unsampled = NULL;
  CHECK_EQ_INT(mlt_context_from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", &unsampled),
               MLT_OK);
  CHECK_EQ_INT(mlt_context_is_sampled(unsampled), 0);
  mlt_span ns = mlt_span_start_in(unsampled, "not-recorded", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_is_recording(ns), 0);
  mlt_span_end(ns);
  mlt_context_release(unsampled);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *callee_t = tu_trace_named("callee");
  REQUIRE(callee_t != NULL);
  CHECK_EQ_STR(tu_info(callee_t, "trace_id"), tid);
  tu_done();
}

/* ---- sampling, disabled mode ----------------------------------------- */

TEST(sampling_ratio_zero_and_disabled) {
  mlt_options *o = tu_options();
  mlt_options_set_sampling_ratio(o, 0.0);
  CHECK_EQ_INT(mlt_options_set_sampling_ratio(o, 1.5), MLT_EINVAL);
  tu_start(o);
  for (int i = 0; i < 100; i++) {
    MLT_SPAN_SCOPE(s, "root", MLT_SPAN_CHAIN);
    MLT_SPAN_SCOPE(c, "child", MLT_SPAN_CHAIN);
    CHECK_EQ_INT(mlt_span_is_recording(c), 0);
    CHECK_EQ_INT(mlt_span_set_attr_int(c, "i", i), MLT_ENOTRECORDING);
  }
  CHECK(mlt_span_is_none(mlt_current_span()));
  /* the client API: no ids, a handle that records nothing */
  for (int i = 0; i < 10; i++) {
    mlt_client_span cs;
    CHECK_EQ_INT(mlt_client_start_trace("c", MLT_SPAN_CHAIN, NULL, &cs), MLT_ENOTRECORDING);
    CHECK_EQ_STR(cs.trace_id, "");
    CHECK_EQ_STR(cs.span_id, "");
    CHECK_EQ_INT(mlt_span_is_recording(cs.span), 0);
    CHECK_EQ_INT(mlt_span_set_attr_int(cs.span, "i", i), MLT_ENOTRECORDING);
  }
  CHECK_EQ_INT(tu_flush_count(), 0);
  CHECK_EQ_INT(tu_stats().traces_sampled_out, 110);
  tu_done();

  o = tu_options();
  mlt_options_set_enabled(o, 0);
  tu_start(o);
  CHECK_EQ_INT(mlt_is_enabled(), 0);
  mlt_span s = mlt_span_start("off", MLT_SPAN_CHAIN);
  CHECK(mlt_span_is_none(s));
  mlt_set_enabled(1);
  s = mlt_span_start("on", MLT_SPAN_CHAIN);
  CHECK(!mlt_span_is_none(s));
  mlt_set_enabled(0);
  CHECK_EQ_INT(mlt_span_end(s), MLT_OK); /* open spans finish normally */
  CHECK_EQ_INT(tu_flush_count(), 1);
  tu_done();
}

TEST(sampling_half_is_per_trace) {
  mlt_options *o = tu_options();
  mlt_options_set_sampling_ratio(o, 0.5);
  tu_start(o);
  for (int i = 0; i < 2000; i++) {
    MLT_SPAN_SCOPE(s, "root", MLT_SPAN_CHAIN);
    MLT_SPAN_SCOPE(c, "child", MLT_SPAN_CHAIN);
  }
  size_t n = tu_flush_count();
  CHECK(n > 800 && n < 1200);
  for (size_t i = 0; i < n; i += 97) CHECK_EQ_INT(tu_nspans(tu_trace(i)), 2); /* whole traces */
  tu_done();
}

/* ---- threads --------------------------------------------------------- */

#define NTHREADS 8
#define PER_THREAD 300

static void *make_traces(void *p) {
  long id = (long)(intptr_t)p;
  char name[32];
  snprintf(name, sizeof name, "thread-%ld", id);
  for (int i = 0; i < PER_THREAD; i++) {
    MLT_SPAN_SCOPE(root, name, MLT_SPAN_CHAIN);
    mlt_span_set_attr_int(root, "i", i);
    for (int k = 0; k < 3; k++) {
      MLT_SPAN_SCOPE(c, name, MLT_SPAN_TOOL);
      mlt_span_set_attr_int(c, "thread", id);
    }
  }
  return NULL;
}

TEST(threads_never_mix_traces) {
  tu_init();
  pthread_t th[NTHREADS];
  for (long i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, make_traces, (void *)(intptr_t)i);
  for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  size_t n = tu_flush_count();
  REQUIRE_EQ_INT(n, NTHREADS * PER_THREAD);
  for (size_t i = 0; i < n; i++) {
    char *s = mlt_memory_store_get(tu_store, i);
    cJSON *t = cJSON_Parse(s);
    free(s);
    REQUIRE(t != NULL);
    REQUIRE_EQ_INT(tu_nspans(t), 4);
    const char *tn = tu_tag(t, "mlflow.traceName");
    cJSON *sp;
    cJSON_ArrayForEach(sp, tu_spans(t)) CHECK_EQ_STR(tu_str(sp, "name"), tn);
    cJSON_Delete(t);
  }
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.spans_started, NTHREADS * PER_THREAD * 4);
  CHECK_EQ_INT(st.traces_dropped, 0);
  tu_done();
}

/* ---- timeout --------------------------------------------------------- */

TEST(trace_timeout_ends_open_spans) {
  mlt_options *o = tu_options();
  mlt_options_set_trace_timeout_ms(o, 200);
  tu_start(o);
  mlt_span root = mlt_span_start_in(NULL, "stuck", MLT_SPAN_AGENT);
  mlt_span_set_inputs_json(root, "{\"prompt\": \"hang\"}");
  mlt_span done = mlt_span_start_child(root, "done", MLT_SPAN_TOOL);
  mlt_span_end(done);
  mlt_span hung = mlt_span_start_child(root, "hung", MLT_SPAN_LLM);
  mlt_span_set_attr_str(hung, "model", "m");
  usleep(800 * 1000);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_INT(tu_nspans(t), 3);
  CHECK_EQ_STR(tu_info(t, "state"), "ERROR");
  cJSON *h = tu_span(t, "hung");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(h, "status"), "code"), "STATUS_CODE_ERROR");
  CHECK(strstr(tu_str(cJSON_GetObjectItem(h, "status"), "message"), "timed out") != NULL);
  CHECK_EQ_STR(tu_attr(h, "model"), "\"m\"");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tu_span(t, "done"), "status"), "code"), "STATUS_CODE_OK");
  CHECK_EQ_STR(tu_attr(tu_span(t, "stuck"), "mlflow.spanInputs"), "{\"prompt\": \"hang\"}");
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.traces_timed_out, 1);
  CHECK_EQ_INT(st.spans_timed_out, 2);
  /* the owners end them later: harmless */
  CHECK_EQ_INT(mlt_span_set_attr_str(hung, "late", "x"), MLT_EENDED);
  CHECK_EQ_INT(mlt_span_end(hung), MLT_EENDED);
  CHECK_EQ_INT(mlt_span_end(root), MLT_EENDED);
  CHECK_EQ_INT(tu_flush_count(), 1);
  tu_done();
}

/* ---- JSON text, byte for byte ----------------------------------------- */

/* The JSON string token after |needle| in |raw| (malloc()ed), or NULL. */
static char *raw_token_after(const char *raw, const char *needle) {
  const char *p = strstr(raw, needle);
  if (!p) return NULL;
  p += strlen(needle);
  if (*p != '"') return NULL;
  const char *e = p + 1;
  while (*e && *e != '"') e += *e == '\\' && e[1] ? 2 : 1;
  if (!*e) return NULL;
  size_t n = (size_t)(e + 1 - p);
  char *r = malloc(n + 1);
  memcpy(r, p, n);
  r[n] = '\0';
  return r;
}

static void check_raw(const char *raw, const char *needle, const char *want, const char *what) {
  char *got = raw_token_after(raw, needle);
  if (!want) {
    CHECK(got == NULL);
    if (got) tap_diag("%s: %s was %s (none expected)", what, needle, got);
  } else {
    CHECK(got && strcmp(got, want) == 0);
    if (!got || strcmp(got, want)) tap_diag("%s: %s was %s, want %s", what, needle, got ? got : "(none)", want);
  }
  free(got);
}

/* JSON text given as a chunk, a JSON event attribute and a span attribute:
 * exported exactly so (trimmed; invalid JSON as the JSON string of its text;
 * invalid UTF-8 as U+FFFD; past the value limit cut with the marker). */
TEST(json_text_values_byte_for_byte) {
  mlt_options *o = tu_options();
  mlt_options_set_max_value_bytes(o, 64);
  tu_start(o);
  static const struct {
    const char *text, *want, *want_ev; /* want_ev: the event attribute's, when not want */
  } cases[] = {
      {"{\"a\": [1, 2.5, \"x\\n\\u00e9\"], \"b\": {}}",
       "\"{\\\"a\\\": [1, 2.5, \\\"x\\\\n\\\\u00e9\\\"], \\\"b\\\": {}}\""},
      {" \n\t{\"k\": \"v\"}\r\n ", "\"{\\\"k\\\": \\\"v\\\"}\""},
      {"{\"k\": ", "\"\\\"{\\\\\\\"k\\\\\\\": \\\"\""},
      {" not json ", "\"\\\" not json \\\"\""},
      {"{\"k\": \"a\xff" "b\"}", "\"{\\\"k\\\": \\\"a\xef\xbf\xbd" "b\\\"}\""},
      {"{\"k\": \"a\xff" "b\"", "\"\\\"{\\\\\\\"k\\\\\\\": \\\\\\\"a\xef\xbf\xbd" "b\\\\\\\"\\\"\""},
      {"\"plain\"", "\"\\\"plain\\\"\""},
      {"[\"\xc3\xa9\", null, true, -0.5e3]", "\"[\\\"\xc3\xa9\\\", null, true, -0.5e3]\""},
      {"{\"long\": \"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
       "\"\\\"{\\\\\\\"long\\\\\\\": \\\\\\\"012345678901234567890123456789012345678901234567890123...[truncated by "
       "mltrace: 82 bytes]\\\"\"",
       "\"{\\\"long\\\": \\\"012345678901234567890123456789012345678901234567890123...[truncated by mltrace: 82 bytes]\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char name[32];
    snprintf(name, sizeof name, "json-%zu", i);
    mlt_span s = mlt_span_start(name, MLT_SPAN_LLM);
    CHECK_EQ_INT(mlt_span_add_chunk_json(s, cases[i].text, MLT_NTS), MLT_OK);
    mlt_attr ev[] = {MLT_ATTR_JSON("j", cases[i].text)};
    CHECK_EQ_INT(mlt_span_add_event(s, "ev", ev, 1), MLT_OK);
    CHECK_EQ_INT(mlt_span_set_attr_json(s, "attr.j", cases[i].text), MLT_OK);
    mlt_span_end(s);
    REQUIRE_EQ_INT(tu_flush_count(), i + 1);
    char *raw = mlt_memory_store_get(tu_store, i);
    REQUIRE(raw != NULL);
    check_raw(raw, "\"mlflow.chunk.value\": ", cases[i].want, name);
    check_raw(raw, "\"j\": ", cases[i].want_ev ? cases[i].want_ev : cases[i].want, name);
    check_raw(raw, "\"attr.j\": ", cases[i].want, name);
    free(raw);
  }
  /* text as a chunk and as a span attribute: the JSON string of its JSON
   * string (ASCII, valid and invalid UTF-8, characters to escape) */
  static const struct {
    const char *text, *want;
  } texts[] = {
      {"plain text", "\"\\\"plain text\\\"\""},
      {"check \xe2\x9c\x93 done, \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80",
       "\"\\\"check \xe2" "\x9c" "\x93" " done, \xc3" "\xa9" "t\xc3" "\xa9" " \xf0" "\x9f" "\x98" "\x80" "\\\"\""},
      {"bad \xff byte, cut \xe2\x9c",
       "\"\\\"bad \xef" "\xbf" "\xbd" " byte, cut \xef" "\xbf" "\xbd" "\xef" "\xbf" "\xbd" "\\\"\""},
      {"quote \" and \\ and \t tab \xc3\xa9", "\"\\\"quote \\\\\\\" and \\\\\\\\ and \\\\t tab \xc3" "\xa9" "\\\"\""},
      {"0123456789abcdef\xe2\x9c\x93 longer than sixteen bytes \xce\xbb",
       "\"\\\"0123456789abcdef\xe2" "\x9c" "\x93" " longer than sixteen bytes \xce" "\xbb" "\\\"\""},
      {"\xed\xa0\x80 surrogate, \xc0\xaf overlong, \x7f del",
       "\"\\\"\xef" "\xbf" "\xbd" "\xef" "\xbf" "\xbd" "\xef" "\xbf" "\xbd" " surrogate, \xef" "\xbf" "\xbd" "\xef"
       "\xbf" "\xbd" " overlong, \x7f" " del\\\"\""},
  };
  size_t n0 = sizeof cases / sizeof *cases;
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    char name[32];
    snprintf(name, sizeof name, "text-%zu", i);
    mlt_span s = mlt_span_start(name, MLT_SPAN_LLM);
    CHECK_EQ_INT(mlt_span_add_chunk_text(s, texts[i].text, MLT_NTS), MLT_OK);
    CHECK_EQ_INT(mlt_span_set_attr_str(s, "attr.s", texts[i].text), MLT_OK);
    mlt_span_end(s);
    REQUIRE_EQ_INT(tu_flush_count(), n0 + i + 1);
    char *raw = mlt_memory_store_get(tu_store, n0 + i);
    REQUIRE(raw != NULL);
    check_raw(raw, "\"mlflow.chunk.value\": ", texts[i].want, name);
    check_raw(raw, "\"attr.s\": ", texts[i].want, name);
    free(raw);
  }
  n0 += sizeof texts / sizeof *texts;
  /* fields as inputs and outputs: the JSON string of their JSON object */
  static const struct {
    mlt_attr f[4];
    const char *want;
  } fields[] = {
      {{MLT_ATTR_STR("id", "req-1"), MLT_ATTR_INT("shard", -2), MLT_ATTR_DOUBLE("w", 0.5), MLT_ATTR_BOOL("ok", 0)},
       "\"{\\\"id\\\": \\\"req-1\\\", \\\"shard\\\": -2, \\\"w\\\": 0.5, \\\"ok\\\": false}\""},
      {{MLT_ATTR_STR("doc", "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93"), MLT_ATTR_STR("k\xc3\xa9y", ""), MLT_ATTR_INT("n", 0),
        MLT_ATTR_BOOL("b", 1)},
       "\"{\\\"doc\\\": \\\"\xc3" "\xa9" "t\xc3" "\xa9" " \xe2" "\x9c" "\x93" "\\\", \\\"k\xc3" "\xa9"
       "y\\\": \\\"\\\", \\\"n\\\": 0, \\\"b\\\": true}\""},
      {{MLT_ATTR_STR("q", "say \"hi\""), MLT_ATTR_INT("n", 1), MLT_ATTR_INT("m", 2), MLT_ATTR_INT("o", 3)},
       "\"{\\\"q\\\": \\\"say \\\\\\\"hi\\\\\\\"\\\", \\\"n\\\": 1, \\\"m\\\": 2, \\\"o\\\": 3}\""},
      {{MLT_ATTR_STR("bad", "\xff"), MLT_ATTR_INT("n", 1), MLT_ATTR_INT("m", 2), MLT_ATTR_INT("o", 3)},
       "\"{\\\"bad\\\": \\\"\xef" "\xbf" "\xbd" "\\\", \\\"n\\\": 1, \\\"m\\\": 2, \\\"o\\\": 3}\""},
      {{MLT_ATTR_JSON("j", "{\"a\": [1]}"), MLT_ATTR_INT("n", 1), MLT_ATTR_INT("m", 2), MLT_ATTR_INT("o", 3)},
       "\"{\\\"j\\\": {\\\"a\\\": [1]}, \\\"n\\\": 1, \\\"m\\\": 2, \\\"o\\\": 3}\""},
      {{MLT_ATTR_STR("k\"q", "v"), MLT_ATTR_INT("n", 1), MLT_ATTR_INT("m", 2), MLT_ATTR_INT("o", 3)},
       "\"{\\\"k\\\\\\\"q\\\": \\\"v\\\", \\\"n\\\": 1, \\\"m\\\": 2, \\\"o\\\": 3}\""},
  };
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    char name[32];
    snprintf(name, sizeof name, "fields-%zu", i);
    mlt_span s = mlt_span_start(name, MLT_SPAN_CHAIN);
    CHECK_EQ_INT(mlt_span_set_inputs_fields(s, fields[i].f, 4), MLT_OK);
    CHECK_EQ_INT(mlt_span_set_outputs_fields(s, fields[i].f, i == 0 ? 0 : 4), MLT_OK);
    mlt_span_end(s);
    REQUIRE_EQ_INT(tu_flush_count(), n0 + i + 1);
    char *raw = mlt_memory_store_get(tu_store, n0 + i);
    REQUIRE(raw != NULL);
    check_raw(raw, "\"mlflow.spanInputs\": ", fields[i].want, name);
    check_raw(raw, "\"mlflow.spanOutputs\": ", i == 0 ? "\"{}\"" : fields[i].want, name);
    free(raw);
  }
  n0 += sizeof fields / sizeof *fields;
  /* numbers and booleans as span attributes: the JSON string of their text */
  mlt_span s = mlt_span_start("scalars", MLT_SPAN_CHAIN);
  mlt_span_set_attr_int(s, "a.i", -9223372036854775807 - 1);
  mlt_span_set_attr_double(s, "a.d", -0.1);
  mlt_span_set_attr_double(s, "a.big", 1e300);
  mlt_span_set_attr_double(s, "a.nan", 0.0 / 0.0);
  mlt_span_set_attr_bool(s, "a.b", 1);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), n0 + 1);
  char *raw = mlt_memory_store_get(tu_store, n0);
  REQUIRE(raw != NULL);
  check_raw(raw, "\"a.i\": ", "\"-9223372036854775808\"", "scalars");
  check_raw(raw, "\"a.d\": ", "\"-0.1\"", "scalars");
  check_raw(raw, "\"a.big\": ", "\"1e+300\"", "scalars");
  check_raw(raw, "\"a.nan\": ", "\"NaN\"", "scalars");
  check_raw(raw, "\"a.b\": ", "\"true\"", "scalars");
  free(raw);
  tu_done();
}

/* A root span whose output is its chunks: the trace's outputs and response
 * preview are those of the span attribute, byte for byte (short, long,
 * text, JSON, invalid JSON, invalid UTF-8). */
TEST(root_chunk_outputs_byte_for_byte) {
  tu_init();
  static char longtext[700];
  for (size_t k = 0; k + 1 < sizeof longtext; k++) longtext[k] = (char)('a' + k % 26);
  static const struct {
    int json[3];
    const char *chunk[3];
  } cases[] = {
      {{0, 0, 0}, {"Hel", "lo \"w\"", "\xff!"}},
      {{1, 1, 1}, {"{\"d\": \"a\"}", " [1, 2] ", "{\"d\": "}},
      {{0, 1, 0}, {"text ", "{\"k\": \"\xc3\xa9\"}", "more"}},
      {{0, 0, 0}, {longtext, longtext, "end"}},
      {{1, 0, 0}, {"{\"a\": 1}", longtext, NULL}},
  };
  /* spanOutputs, traceOutputs, response_preview (as the library before
   * json_span kept the root's chunk output wrote them); the long ones cut
   * with "..." */
  static char text3[1500], t3[1510], t3_trace[300], t3_preview[1100], t4[800], t4_trace[300];
  snprintf(text3, sizeof text3, "%s%send", longtext, longtext);
  snprintf(t3, sizeof t3, "\"\\\"%s\\\"\"", text3);
  snprintf(t3_trace, sizeof t3_trace, "\"\\\"%.246s...\"", text3);
  snprintf(t3_preview, sizeof t3_preview, "\"\\\"%.996s...\"", text3);
  snprintf(t4, sizeof t4, "\"[{\\\"a\\\": 1}, \\\"%s\\\"]\"", longtext);
  snprintf(t4_trace, sizeof t4_trace, "\"[{\\\"a\\\": 1}, \\\"%.235s...\"", longtext);
  const char *const want[][3] = {
      {
          "\"\\\"Hello \\\\\\\"w\\\\\\\"\xef" "\xbf" "\xbd" "!\\\"\"",
          "\"\\\"Hello \\\\\\\"w\\\\\\\"\xef" "\xbf" "\xbd" "!\\\"\"",
          "\"\\\"Hello \\\\\\\"w\\\\\\\"\xef" "\xbf" "\xbd" "!\\\"\"",
      },
      {
          "\"[{\\\"d\\\": \\\"a\\\"}, [1, 2], \\\"{\\\\\\\"d\\\\\\\": \\\"]\"",
          "\"[{\\\"d\\\": \\\"a\\\"}, [1, 2], \\\"{\\\\\\\"d\\\\\\\": \\\"]\"",
          "\"[{\\\"d\\\": \\\"a\\\"}, [1, 2], \\\"{\\\\\\\"d\\\\\\\": \\\"]\"",
      },
      {
          "\"[\\\"text \\\", {\\\"k\\\": \\\"\xc3" "\xa9" "\\\"}, \\\"more\\\"]\"",
          "\"[\\\"text \\\", {\\\"k\\\": \\\"\xc3" "\xa9" "\\\"}, \\\"more\\\"]\"",
          "\"[\\\"text \\\", {\\\"k\\\": \\\"\xc3" "\xa9" "\\\"}, \\\"more\\\"]\"",
      },
      {t3, t3_trace, t3_preview},
      {t4, t4_trace, t4},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char name[32];
    snprintf(name, sizeof name, "chunks-%zu", i);
    mlt_span s = mlt_span_start(name, MLT_SPAN_LLM);
    for (int k = 0; k < 3 && cases[i].chunk[k]; k++) {
      if (cases[i].json[k])
        CHECK_EQ_INT(mlt_span_add_chunk_json(s, cases[i].chunk[k], MLT_NTS), MLT_OK);
      else
        CHECK_EQ_INT(mlt_span_add_chunk_text(s, cases[i].chunk[k], MLT_NTS), MLT_OK);
    }
    mlt_span_end(s);
    REQUIRE_EQ_INT(tu_flush_count(), i + 1);
    char *raw = mlt_memory_store_get(tu_store, i);
    REQUIRE(raw != NULL);
    check_raw(raw, "\"mlflow.spanOutputs\": ", want[i][0], name);
    check_raw(raw, "\"mlflow.traceOutputs\": ", want[i][1], name);
    check_raw(raw, "\"response_preview\": ", want[i][2], name);
    free(raw);
  }
  tu_done();
}

/* mlflow.trace.tokenUsage: the sums of the five counts over the spans with
 * no ancestor holding one, whatever shape each span's value has. */
TEST(token_usage_odd_values) {
  tu_init();
  static const struct {
    const char *usage[2]; /* root's, child's */
  } cases[] = {
      /* the first member of a name counts; numbers as doubles */
      {{"{\"input_tokens\": 1, \"input_tokens\": 5, \"output_tokens\": 2.7, \"total_tokens\": -0, "
        "\"cache_read_input_tokens\": 1e2}",
        NULL}},
      /* members that are not numbers; an escaped key */
      {{" {\"input_tokens\": \"3\", \"output_tokens\": null, \"total_tokens\": true, \"input\\u005ftokens\": 9} ", NULL}},
      {{"{\"input\\u005ftokens\": 4, \"output_tokens\": 123456789012345678, \"total_tokens\": 1.5E1}", NULL}},
      /* nested values, strings with escapes and invalid UTF-8 around */
      {{"{\"x\": {\"input_tokens\": 100}, \"input_tokens\": 7, \"s\": \"a\\\"b\", \"total_tokens\": 3}", NULL}},
      {{"{\"s\": \"\xff\", \"input_tokens\": 2, \"output_tokens\": 2, \"total_tokens\": 4}", NULL}},
      {{"{\"s\": \"\\ud800\", \"input_tokens\": 2, \"output_tokens\": 2, \"total_tokens\": 4}", NULL}},
      /* numbers longer than 63 bytes, and as long */
      {{"{\"input_tokens\": 1, \"output_tokens\": "
        "1.000000000000000000000000000000000000000000000000000000000000000000000001}",
        NULL}},
      {{"{\"input_tokens\": 1, \"output_tokens\": 10000000000000000000000000000000000000000000000000000000000000}",
        NULL}},
      /* not objects */
      {{"[1, 2]", NULL}},
      {{"{\"input_tokens\": 1", NULL}},
      {{"{}", NULL}},
      /* the child's usage counts only when the root has none that is an object */
      {{"{\"input_tokens\": 5, \"output_tokens\": 6, \"total_tokens\": 11}",
        "{\"input_tokens\": 50, \"output_tokens\": 60, \"total_tokens\": 110}"}},
      {{"\"text\"", "{\"input_tokens\": 50, \"output_tokens\": 60, \"cache_creation_input_tokens\": 8}"}},
      /* spacing, strings holding the object's punctuation, literals, signs */
      {{"{ \"input_tokens\" :3 ,\n\t\"output_tokens\":\r\n-4.5e1,\"total_tokens\" : 1E2 }", NULL}},
      {{"{\"note\": \"a, b: } {\\\"\", \"input_tokens\": 2, \"n\": null, \"t\": true, \"output_tokens\": 0.25}", NULL}},
      {{"{\"note\": \"a, \\\"input_tokens\\\": 9, b: }\", \"f\": false, \"input_tokens\": 2, \"total_tokens\": -0.0}", NULL}},
      {{"{\"input_tokens\": 3, \"k\u00e9y\": \"\u00e9\", \"output_tokens\": 1}", NULL}},
      {{"{\"input_tokens\": 3, \"k\xc3\xa9y\": \"\xc3\xa9\", \"output_tokens\": 1}", NULL}},
  };
  static const char *const want[] = {
      "\"{\\\"input_tokens\\\": 1, \\\"output_tokens\\\": 2, \\\"total_tokens\\\": 0, \\\"cache_read_input_tokens\\\": 100}\"",
      "\"{\\\"input_tokens\\\": 0, \\\"output_tokens\\\": 0, \\\"total_tokens\\\": 0}\"",
      "\"{\\\"input_tokens\\\": 4, \\\"output_tokens\\\": 123456789012345680, \\\"total_tokens\\\": 15}\"",
      "\"{\\\"input_tokens\\\": 7, \\\"output_tokens\\\": 0, \\\"total_tokens\\\": 3}\"",
      "\"{\\\"input_tokens\\\": 2, \\\"output_tokens\\\": 2, \\\"total_tokens\\\": 4}\"",
      NULL,
      "\"{\\\"input_tokens\\\": 1, \\\"output_tokens\\\": 1, \\\"total_tokens\\\": 0}\"",
      "\"{\\\"input_tokens\\\": 1, \\\"output_tokens\\\": 9223372036854775807, \\\"total_tokens\\\": 0}\"",
      NULL,
      NULL,
      "\"{\\\"input_tokens\\\": 0, \\\"output_tokens\\\": 0, \\\"total_tokens\\\": 0}\"",
      "\"{\\\"input_tokens\\\": 5, \\\"output_tokens\\\": 6, \\\"total_tokens\\\": 11}\"",
      "\"{\\\"input_tokens\\\": 50, \\\"output_tokens\\\": 60, \\\"total_tokens\\\": 0, \\\"cache_creation_input_tokens\\\": 8}\"",
      "\"{\\\"input_tokens\\\": 3, \\\"output_tokens\\\": -45, \\\"total_tokens\\\": 100}\"",
      "\"{\\\"input_tokens\\\": 2, \\\"output_tokens\\\": 0, \\\"total_tokens\\\": 0}\"",
      "\"{\\\"input_tokens\\\": 2, \\\"output_tokens\\\": 0, \\\"total_tokens\\\": 0}\"",
      "\"{\\\"input_tokens\\\": 3, \\\"output_tokens\\\": 1, \\\"total_tokens\\\": 0}\"",
      "\"{\\\"input_tokens\\\": 3, \\\"output_tokens\\\": 1, \\\"total_tokens\\\": 0}\"",
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char name[32];
    snprintf(name, sizeof name, "usage-%zu", i);
    mlt_span r = mlt_span_start(name, MLT_SPAN_CHAIN);
    CHECK_EQ_INT(mlt_span_set_attr_json(r, "mlflow.chat.tokenUsage", cases[i].usage[0]), MLT_OK);
    mlt_span c = mlt_span_start("llm", MLT_SPAN_LLM);
    if (cases[i].usage[1]) CHECK_EQ_INT(mlt_span_set_attr_json(c, "mlflow.chat.tokenUsage", cases[i].usage[1]), MLT_OK);
    mlt_span_end(c);
    mlt_span_end(r);
    REQUIRE_EQ_INT(tu_flush_count(), i + 1);
    char *raw = mlt_memory_store_get(tu_store, i);
    REQUIRE(raw != NULL);
    check_raw(raw, "\"mlflow.trace.tokenUsage\": ", want[i], name);
    free(raw);
  }
  tu_done();
}

/* ---- streaming ------------------------------------------------------- */

TEST(stream_chunks_events_and_output) {
  tu_init();
  mlt_span s = mlt_span_start("stream", MLT_SPAN_LLM);
  const char *toks[] = {"Hel", "lo, ", "w\xc3\xb6rld"};
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(mlt_span_add_chunk_text(s, toks[i], strlen(toks[i])), MLT_OK);
  mlt_span_end(s);
  mlt_span j = mlt_span_start("json-stream", MLT_SPAN_LLM);
  mlt_span_add_chunk_json(j, "{\"delta\": \"a\"}", MLT_NTS);
  mlt_span_add_chunk_json(j, "{\"delta\": \"b\"}", MLT_NTS);
  mlt_span_end(j);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *sp = tu_span(tu_trace_named("stream"), "stream");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), "\"Hello, w\xc3\xb6rld\"");
  cJSON *evs = cJSON_GetObjectItem(sp, "events");
  REQUIRE_EQ_INT(cJSON_GetArraySize(evs), 3);
  CHECK_EQ_STR(tu_str(cJSON_GetArrayItem(evs, 0), "name"), "mlflow.chunk.item.0");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(cJSON_GetArrayItem(evs, 1), "attributes"), "mlflow.chunk.value"),
               "\"lo, \"");
  CHECK(tu_attr(sp, "gen_ai.response.time_to_first_chunk") != NULL);
  cJSON *js = tu_span(tu_trace_named("json-stream"), "json-stream");
  CHECK_EQ_STR(tu_attr(js, "mlflow.spanOutputs"), "[{\"delta\": \"a\"}, {\"delta\": \"b\"}]");
  tu_done();
}

static char *join_reducer(const char *const *chunks, const size_t *lens, size_t n, size_t *out_len, void *ud) {
  (void)ud;
  char *out = malloc(64);
  int len = snprintf(out, 64, "{\"n\": %zu, \"first_len\": %zu}", n, n ? lens[0] : 0);
  (void)chunks;
  *out_len = (size_t)len;
  return out;
}

TEST(stream_reducer_and_event_cap) {
  mlt_options *o = tu_options();
  mlt_options_set_max_events_per_span(o, 10);
  tu_start(o);
  mlt_span s = mlt_span_start("many", MLT_SPAN_LLM);
  mlt_span_set_output_reducer(s, join_reducer, NULL);
  for (int i = 0; i < 25; i++) mlt_span_add_chunk_text(s, "tok", 3);
  mlt_span_end(s);
  mlt_span s2 = mlt_span_start("many-default", MLT_SPAN_LLM);
  for (int i = 0; i < 25; i++) mlt_span_add_chunk_text(s2, "x", 1);
  mlt_span_end(s2);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *sp = tu_span(tu_trace_named("many"), "many");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanOutputs"), "{\"n\": 25, \"first_len\": 5}");
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(sp, "events")), 10);
  CHECK_EQ_STR(tu_attr(sp, "mltrace.droppedEvents"), "15");
  cJSON *sp2 = tu_span(tu_trace_named("many-default"), "many-default");
  CHECK_EQ_STR(tu_attr(sp2, "mlflow.spanOutputs"), "\"xxxxxxxxxxxxxxxxxxxxxxxxx\""); /* all 25 chunks */
  CHECK_EQ_INT(tu_stats().events_dropped, 30);
  tu_done();
}

static char *tag_reducer(const char *const *chunks, const size_t *lens, size_t n, size_t *out_len, void *ud) {
  (void)chunks, (void)lens;
  char *out = malloc(64);
  *out_len = (size_t)snprintf(out, 64, "{\"tag\": \"%s\", \"n\": %zu}", (const char *)ud, n);
  return out;
}

/* The reducer is kept in the span's log: the last one set counts, NULL
 * restores the default, its user data is passed as given, and nothing of it
 * is exported. */
TEST(stream_reducer_last_wins_and_reset) {
  tu_start(tu_options());
  mlt_span a = mlt_span_start("last-wins", MLT_SPAN_LLM);
  CHECK_EQ_INT(mlt_span_set_output_reducer(a, tag_reducer, "first"), MLT_OK);
  mlt_span_add_chunk_text(a, "x", 1);
  CHECK_EQ_INT(mlt_span_set_output_reducer(a, tag_reducer, "second"), MLT_OK);
  mlt_span_add_chunk_text(a, "y", 1);
  mlt_span_end(a);
  mlt_span b = mlt_span_start("reset", MLT_SPAN_LLM);
  mlt_span_set_output_reducer(b, tag_reducer, "unused");
  CHECK_EQ_INT(mlt_span_set_output_reducer(b, NULL, NULL), MLT_OK);
  mlt_span_add_chunk_text(b, "ab", 2);
  mlt_span_add_chunk_text(b, "cd", 2);
  mlt_span_end(b);
  CHECK_EQ_INT(mlt_span_set_output_reducer(b, tag_reducer, "late"), MLT_EENDED);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *sa = tu_span(tu_trace_named("last-wins"), "last-wins");
  CHECK_EQ_STR(tu_attr(sa, "mlflow.spanOutputs"), "{\"tag\": \"second\", \"n\": 2}");
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(sa, "events")), 2);
  cJSON *sb = tu_span(tu_trace_named("reset"), "reset");
  CHECK_EQ_STR(tu_attr(sb, "mlflow.spanOutputs"), "\"abcd\"");
  int n_attrs = 0;
  for (cJSON *x = cJSON_GetObjectItem(sa, "attributes")->child; x; x = x->next) n_attrs++;
  cJSON *plain_attrs = cJSON_GetObjectItem(sb, "attributes");
  int n_plain = 0;
  for (cJSON *x = plain_attrs->child; x; x = x->next) n_plain++;
  CHECK_EQ_INT(n_attrs, n_plain); /* the reducer records add no attribute */
  tu_done();
}

/* ---- processor, limits, queue ---------------------------------------- */

static void redact(mlt_span_view *v, void *ud) {
  (void)ud;
  size_t n;
  const char *in = mlt_span_view_inputs(v, &n);
  if (in && strstr(in, "secret")) mlt_span_view_set_inputs_json(v, "\"[REDACTED]\"");
  mlt_span_view_remove_attr(v, "api_key");
  if (mlt_span_view_attr(v, "user", &n)) mlt_span_view_set_attr_str(v, "user", "***");
  if (strcmp(mlt_span_view_name(v), "noisy") == 0) mlt_span_view_drop_events(v);
}

TEST(span_processor_redacts) {
  mlt_options *o = tu_options();
  mlt_options_set_span_processor(o, redact, NULL);
  tu_start(o);
  mlt_span s = mlt_span_start("call", MLT_SPAN_LLM);
  mlt_span_set_inputs_json(s, "{\"password\": \"secret\"}");
  mlt_span_set_attr_str(s, "api_key", "sk-123");
  mlt_span_set_attr_str(s, "user", "alice");
  mlt_span n = mlt_span_start("noisy", MLT_SPAN_TOOL);
  mlt_span_add_event(n, "e", NULL, 0);
  mlt_span_end(n);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *sp = tu_span(t, "call");
  CHECK_EQ_STR(tu_attr(sp, "mlflow.spanInputs"), "\"[REDACTED]\"");
  CHECK(tu_attr(sp, "api_key") == NULL);
  CHECK_EQ_STR(tu_attr(sp, "user"), "\"***\"");
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(tu_span(t, "noisy"), "events")), 0);
  CHECK(strstr(tu_info(t, "request_preview"), "secret") == NULL);
  tu_done();
}

TEST(max_spans_per_trace) {
  mlt_options *o = tu_options();
  mlt_options_set_max_spans_per_trace(o, 5);
  tu_start(o);
  {
    MLT_SPAN_SCOPE(root, "root", MLT_SPAN_CHAIN);
    for (int i = 0; i < 10; i++) {
      MLT_SPAN_SCOPE(c, "c", MLT_SPAN_TOOL);
      MLT_SPAN_SCOPE(g, "g", MLT_SPAN_TOOL);
    }
  }
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  CHECK_EQ_INT(tu_nspans(tu_trace(0)), 5);
  CHECK_EQ_INT(tu_stats().spans_over_limit, 16);
  tu_done();
}

static int slow_export(const char *json, size_t len, void *ud) {
  (void)json;
  (void)len;
  (void)ud;
  usleep(20000);
  return 0;
}

TEST(full_queue_drops_and_counts) {
  mlt_options *o = NULL;
  mlt_options_new(&o);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, MLT_LOG_OFF, NULL, NULL);
  mlt_options_set_queue_size(o, 16);
  mlt_exporter *e;
  mlt_exporter_callback_new(slow_export, NULL, &e);
  mlt_options_add_exporter(o, e);
  REQUIRE_EQ_INT(mlt_init(o), MLT_OK);
  mlt_options_free(o);
  for (int i = 0; i < 500; i++) {
    MLT_SPAN_SCOPE(s, "t", MLT_SPAN_CHAIN);
    MLT_SPAN_SCOPE(c, "c", MLT_SPAN_CHAIN);
  }
  mlt_stats st = tu_stats();
  CHECK(st.traces_dropped > 0);
  CHECK_EQ_INT(st.spans_dropped, st.traces_dropped * 2);
  mlt_shutdown(30000);
  st = tu_stats();
  CHECK_EQ_INT(st.traces_exported + st.traces_dropped + st.traces_failed, 500);
  CHECK_EQ_INT(st.traces_failed, 0);
}

/* ---- file store ------------------------------------------------------ */

/* The file store writes each line in two pieces (the line without its spans,
 * the spans); the bytes are the memory store's, line for line, across the
 * writes a batch is cut into (256 KiB, 500 lines). */
/* The file store when the file cannot grow (RLIMIT_FSIZE: a write is cut
 * short, the next fails with EFBIG): the file keeps only whole lines, each
 * one a trace counted exported, and every other trace is counted failed. */
TEST(file_store_cut_short_keeps_whole_lines) {
  char path[] = "/tmp/mlt-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  int pfd[2];
  REQUIRE(pipe(pfd) == 0);
  const int ntraces = 600;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) { /* child: the limit applies to this process only */
    close(pfd[0]);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {200000, 200000};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(2);
    mlt_options *o = NULL;
    mlt_exporter *fe = NULL;
    if (mlt_options_new(&o) != MLT_OK || mlt_exporter_file_new(path, &fe) != MLT_OK) _exit(2);
    mlt_options_use_env(o, 0);
    mlt_options_set_log(o, MLT_LOG_OFF, NULL, NULL);
    mlt_options_add_exporter(o, fe);
    mlt_options_set_queue_size(o, 4096);
    if (mlt_init(o) != MLT_OK) _exit(2);
    mlt_options_free(o);
    for (int i = 0; i < ntraces; i++) {
      mlt_span r = mlt_span_start("root", MLT_SPAN_CHAIN);
      mlt_span_set_inputs_json(r, "{\"messages\": [{\"role\": \"user\", \"content\": \"a question of some length\"}]}");
      mlt_span c = mlt_span_start("llm", MLT_SPAN_LLM);
      mlt_span_add_chunk_json(c, "{\"delta\": \"a\"}", MLT_NTS);
      mlt_span_end(c);
      mlt_span_set_outputs_text(r, "done", MLT_NTS);
      mlt_span_end(r);
      if (i % 50 == 49) mlt_flush(10000); /* several writes, some past the limit */
    }
    mlt_flush(10000);
    mlt_stats st;
    mlt_get_stats(&st, sizeof st);
    unsigned long long v[2] = {st.traces_exported, st.traces_failed};
    if (write(pfd[1], v, sizeof v) != (ssize_t)sizeof v) _exit(2);
    mlt_shutdown(5000);
    _exit(0);
  }
  close(pfd[1]);
  unsigned long long v[2] = {0, 0};
  ssize_t got = read(pfd[0], v, sizeof v);
  close(pfd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == (ssize_t)sizeof v);
  CHECK(v[1] > 0);                          /* the limit was reached */
  CHECK_EQ_INT((int)(v[0] + v[1]), ntraces); /* every trace counted once */
  FILE *f = fopen(path, "r");
  REQUIRE(f != NULL);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lines = 0, whole = 0;
  while ((len = getline(&line, &cap, f)) > 0) {
    lines++;
    cJSON *j = line[len - 1] == '\n' ? cJSON_Parse(line) : NULL;
    if (j && cJSON_GetObjectItem(j, "info")) whole++;
    cJSON_Delete(j);
  }
  free(line);
  fclose(f);
  unlink(path);
  CHECK_EQ_INT(whole, lines);
  CHECK_EQ_INT(lines, (int)v[0]); /* what was counted exported is in the file */
  tap_diag("%d lines written, %llu traces failed", lines, v[1]);
}

TEST(file_store_same_bytes_as_memory_store) {
  char path[] = "/tmp/mlt-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  mlt_options *o = tu_options();
  mlt_exporter *fe = NULL;
  REQUIRE(mlt_exporter_file_new(path, &fe) == MLT_OK);
  mlt_options_add_exporter(o, fe);
  mlt_options_set_queue_size(o, 4096);
  tu_start(o);
  static char big[60000];
  memset(big, 'q', sizeof big - 1);
  int ntraces = 1200;
  for (int i = 0; i < ntraces; i++) {
    mlt_span r = mlt_span_start("root", MLT_SPAN_CHAIN);
    mlt_span_set_inputs_json(r, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi \\u00e9\"}]}");
    if (i % 100 == 7) mlt_span_set_attr_str(r, "big", big);
    if (i % 3 == 0) {
      mlt_span c = mlt_span_start("llm", MLT_SPAN_LLM);
      mlt_span_add_chunk_json(c, "{\"delta\": \"a\"}", MLT_NTS);
      mlt_span_add_chunk_json(c, "{\"delta\": ", MLT_NTS);
      mlt_span_add_chunk_text(c, "t\xffxt", MLT_NTS);
      mlt_span_set_attr_json(c, "mlflow.chat.tokenUsage", "{\"input_tokens\": 1, \"output_tokens\": 2, \"total_tokens\": 3}");
      mlt_span_end(c);
    }
    mlt_span_set_outputs_text(r, "done", MLT_NTS);
    mlt_span_end(r);
  }
  REQUIRE_EQ_INT(tu_flush_count(), (size_t)ntraces);
  FILE *f = fopen(path, "r");
  REQUIRE(f != NULL);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lines = 0, same = 0;
  while ((len = getline(&line, &cap, f)) > 0) {
    char *m = lines < ntraces ? mlt_memory_store_get(tu_store, (size_t)lines) : NULL;
    if (m && line[len - 1] == '\n' && strlen(m) == (size_t)len - 1 && !memcmp(m, line, (size_t)len - 1))
      same++;
    else if (same == lines)
      tap_diag("line %d differs: %.200s", lines + 1, line);
    free(m);
    lines++;
  }
  free(line);
  fclose(f);
  unlink(path);
  CHECK_EQ_INT(lines, ntraces);
  CHECK_EQ_INT(same, ntraces);
  tu_done();
}

TEST(file_store_lines_whole_across_processes) {
  char path[] = "/tmp/mlt-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  unlink(path);
  int nproc = 4, per = 200;
  for (int p = 0; p < nproc; p++) {
    pid_t pid = fork();
    if (pid == 0) {
      mlt_options *o = NULL;
      mlt_options_new(&o);
      mlt_options_use_env(o, 0);
      mlt_options_set_file_path(o, path);
      mlt_options_set_queue_size(o, 1024);
      if (mlt_init(o) != MLT_OK) _exit(3);
      mlt_options_free(o);
      char big[3000];
      memset(big, 'z', sizeof big - 1);
      big[sizeof big - 1] = 0;
      for (int i = 0; i < per; i++) {
        MLT_SPAN_SCOPE(s, "proc", MLT_SPAN_CHAIN);
        mlt_span_set_attr_str(s, "pad", big);
        mlt_span_set_attr_int(s, "pid", p);
        if (i % 50 == 0) mlt_flush(5000);
      }
      _exit(mlt_shutdown(10000) == MLT_OK ? 0 : 4);
    }
  }
  for (int p = 0; p < nproc; p++) {
    int st;
    wait(&st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  FILE *f = fopen(path, "r");
  REQUIRE(f != NULL);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lines = 0, good = 0;
  while ((len = getline(&line, &cap, f)) > 0) {
    lines++;
    cJSON *j = cJSON_Parse(line);
    if (j && tu_nspans(j) == 1) good++;
    cJSON_Delete(j);
  }
  free(line);
  fclose(f);
  unlink(path);
  CHECK_EQ_INT(lines, nproc * per);
  CHECK_EQ_INT(good, nproc * per);
}

TEST(file_store_unwritable_path_counts_failures) {
  mlt_options *o = NULL;
  mlt_options_new(&o);
  mlt_options_use_env(o, 0);
  mlt_options_set_log(o, MLT_LOG_OFF, NULL, NULL);
  mlt_options_set_file_path(o, "/nonexistent-dir/x/traces.jsonl");
  REQUIRE_EQ_INT(mlt_init(o), MLT_OK);
  mlt_options_free(o);
  for (int i = 0; i < 3; i++) {
    MLT_SPAN_SCOPE(s, "t", MLT_SPAN_CHAIN);
  }
  CHECK_EQ_INT(mlt_flush(5000), MLT_EIO); /* what it waited for failed */
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.traces_failed, 3);
  CHECK_EQ_INT(st.traces_exported, 0);
  mlt_shutdown(1000);
}

TEST(shutdown_exports_open_traces) {
  tu_init();
  mlt_span root = mlt_span_start_in(NULL, "unfinished", MLT_SPAN_AGENT);
  mlt_span_start_child(root, "child", MLT_SPAN_TOOL);
  mlt_memory_store *keep = tu_store;
  tu_store = NULL;
  CHECK_EQ_INT(mlt_shutdown(5000), MLT_OK);
  REQUIRE_EQ_INT(mlt_memory_store_count(keep), 1);
  char *s = mlt_memory_store_get(keep, 0);
  CHECK(strstr(s, "span still open at shutdown") != NULL);
  free(s);
  mlt_memory_store_release(keep);
  mlt_stats st = tu_stats();
  CHECK_EQ_INT(st.spans_timed_out, 2);
}

#ifdef __has_feature
#define T_ASAN __has_feature(address_sanitizer)
#else
#define T_ASAN 0
#endif
TEST(fork_child_is_off_and_can_reinit) {
  tu_init();
  mlt_span open_in_parent = mlt_span_start("parent-open", MLT_SPAN_CHAIN);
  pid_t pid = fork();
  if (pid == 0) {
    /* child: off, harmless, and can start again */
    int bad = 0;
    mlt_span s = mlt_span_start("child", MLT_SPAN_CHAIN);
    bad |= !mlt_span_is_none(s);
    bad |= mlt_span_end(open_in_parent) != MLT_ENOTINIT;
    bad |= mlt_flush(100) != MLT_ENOTINIT;
#ifdef __SANITIZE_THREAD__
    /* TSan cannot start threads after a multi-threaded fork: stop here. */
    _exit(bad ? 1 : 0);
#endif
#if defined(__SANITIZE_ADDRESS__) || T_ASAN
    /* Nor can ASan's allocator of GCC 12 / LLVM < 17 be trusted after one:
     * it has no fork handler, so a lock another thread of the parent held at
     * the fork (the export thread allocating) stays locked in the child, and
     * the child's new export thread would wait for it forever. */
    _exit(bad ? 1 : 0);
#endif
    alarm(60); /* a hang fails the test instead of holding the TAP pipe */
    mlt_memory_store *st = mlt_memory_store_new();
    mlt_options *o;
    mlt_options_new(&o);
    mlt_options_use_env(o, 0);
    mlt_exporter *e;
    mlt_exporter_memory_new(st, &e);
    mlt_options_add_exporter(o, e);
    bad |= mlt_init(o) != MLT_OK;
    mlt_options_free(o);
    mlt_span c = mlt_span_start("child-after-init", MLT_SPAN_CHAIN);
    mlt_span_end(c);
    bad |= mlt_shutdown(5000) != MLT_OK;
    bad |= mlt_memory_store_count(st) != 1;
    mlt_memory_store_release(st);
    _exit(bad ? 1 : 0);
  }
  int status;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  mlt_span_end(open_in_parent);
  CHECK_EQ_INT(tu_flush_count(), 1); /* the parent is unaffected */
  tu_done();
}

static const tap_test tests[] = {
    TAP_ENTRY(calls_before_init_are_noops),
    TAP_ENTRY(init_twice_and_reinit),
    TAP_ENTRY(function_and_block_scopes),
    TAP_ENTRY(every_span_type_and_custom_type),
    TAP_ENTRY(inputs_outputs_attributes_events),
    TAP_ENTRY(record_error_like_mlflow),
    TAP_ENTRY(invalid_utf8_and_embedded_nul),
    TAP_ENTRY(huge_payload_truncated_with_marker),
    TAP_ENTRY(truncation_keeps_utf8_whole),
    TAP_ENTRY(invalid_json_text_exported_as_string),
    TAP_ENTRY(invalid_delta_chunk_counted_once),
    TAP_ENTRY(double_end_and_stale_handles),
    TAP_ENTRY(parent_ended_before_children),
    TAP_ENTRY(ended_children_moved_out_of_their_slots),
    TAP_ENTRY(moves_race_a_forced_finish),
    TAP_ENTRY(client_api),
    TAP_ENTRY(client_end_trace_ends_open_children),
    TAP_ENTRY(open_child_snapshot_keeps_dropped_events),
    TAP_ENTRY(client_end_trace_fast_and_general_agree),
    TAP_ENTRY(update_current_trace_and_limits),
    TAP_ENTRY(update_trace_entries_are_capped),
    TAP_ENTRY(previews_truncated_to_1000_chars),
    TAP_ENTRY(last_active_trace_id),
    TAP_ENTRY(context_carries_parent_across_threads_after_parent_end),
    TAP_ENTRY(context_after_trace_finished_gives_continuation),
    TAP_ENTRY(attach_detach_nesting_and_mismatch),
    TAP_ENTRY(traceparent_roundtrip_and_rejects),
    TAP_ENTRY(sampling_ratio_zero_and_disabled),
    TAP_ENTRY(sampling_half_is_per_trace),
    TAP_ENTRY(threads_never_mix_traces),
    TAP_ENTRY(trace_timeout_ends_open_spans),
    TAP_ENTRY(json_text_values_byte_for_byte),
    TAP_ENTRY(token_usage_odd_values),
    TAP_ENTRY(root_chunk_outputs_byte_for_byte),
    TAP_ENTRY(stream_chunks_events_and_output),
    TAP_ENTRY(stream_reducer_and_event_cap),
    TAP_ENTRY(stream_reducer_last_wins_and_reset),
    TAP_ENTRY(span_processor_redacts),
    TAP_ENTRY(max_spans_per_trace),
    TAP_ENTRY(full_queue_drops_and_counts),
    TAP_ENTRY(file_store_cut_short_keeps_whole_lines),
    TAP_ENTRY(file_store_same_bytes_as_memory_store),
    TAP_ENTRY(file_store_lines_whole_across_processes),
    TAP_ENTRY(file_store_unwritable_path_counts_failures),
    TAP_ENTRY(shutdown_exports_open_traces),
    TAP_ENTRY(fork_child_is_off_and_can_reinit),
    TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
