/* tests/roundtrip/gen_traces.c: writes a JSONL store covering the whole API,
 * for tests/roundtrip/test_jsonl.py to load with MLflow's Trace.from_json.
 * Usage: gen_traces FILE.  Prints the ids it made as `name=trace_id` lines. */
#include <mltrace/mltrace.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int leaf(int x) {
  MLT_TRACE_FUNCTION(MLT_SPAN_TOOL);
  mlt_span_set_inputs_fields(mlt_fn_span, (mlt_attr[]){MLT_ATTR_INT("x", x)}, 1);
  if (x < 0) {
    mlt_span_record_error(mlt_fn_span, "ValueError", "negative input");
    return -1;
  }
  mlt_span_set_outputs_json(mlt_fn_span, "{\"doubled\": 8}");
  return 2 * x;
}

static void function_scope(void) {
  MLT_TRACE_FUNCTION_NAMED("function_scope", MLT_SPAN_AGENT);
  mlt_span_set_inputs_json(mlt_fn_span, "{\"question\": \"Qu'est-ce que MLflow ? \\u2713\", \"n\": 3}");
  mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("env", "test", "team", "c"),
                                            .metadata = MLT_KV("app.version", "1.2.3"),
                                            .client_request_id = "req-42", .session_id = "sess-1",
                                            .user_id = "alice"));
  {
    MLT_SPAN_SCOPE(r, "retrieve", MLT_SPAN_RETRIEVER);
    mlt_span_set_inputs_json(r, "{\"query\": \"mlflow\"}");
    mlt_span_set_outputs_json(r, "[{\"id\": \"d1\", \"score\": 0.9}, {\"id\": \"d2\", \"score\": 0.5}]");
    mlt_span_set_attr_str(r, "db", "vectors");
    mlt_span_set_attr_int(r, "k", 2);
    mlt_span_set_attr_double(r, "threshold", 0.25);
    mlt_span_set_attr_bool(r, "cached", 0);
    mlt_span_add_event(r, "cache_miss", (mlt_attr[]){MLT_ATTR_STR("key", "mlflow"), MLT_ATTR_INT("shard", 3)}, 2);
  }
  leaf(4);
  {
    MLT_SPAN_SCOPE(llm, "llm", MLT_SPAN_CHAT_MODEL);
    mlt_span_set_inputs_json(llm, "{\"messages\": [{\"role\": \"user\", \"content\": \"Say hi\"}], \"model\": \"m\"}");
    const char *toks[] = {"Hel", "lo", " wor", "ld"};
    for (int i = 0; i < 4; i++) mlt_span_add_chunk_text(llm, toks[i], strlen(toks[i]));
    mlt_span_set_attr_json(llm, "mlflow.chat.tokenUsage",
                           "{\"input_tokens\": 5, \"output_tokens\": 4, \"total_tokens\": 9}");
    mlt_span_set_attr_str(llm, "mlflow.message.format", "openai");
  }
  mlt_span_set_outputs_json(mlt_fn_span, "{\"answer\": \"Hello world\"}");
}

static void error_path(void) {
  MLT_TRACE_FUNCTION_NAMED("error_path", MLT_SPAN_CHAIN);
  mlt_span_set_inputs_json(mlt_fn_span, "{\"x\": -1}");
  if (leaf(-1) < 0) mlt_span_record_error(mlt_fn_span, "RuntimeError", "leaf failed");
}

static void client_api(void) {
  mlt_client_span root, child;
  mlt_client_start_trace("client_root", MLT_SPAN_WORKFLOW, "{\"job\": 7}", &root);
  mlt_client_start_span(root.trace_id, root.span_id, "client_child", MLT_SPAN_TASK, "[1, 2, 3]", &child);
  mlt_client_end_span(root.trace_id, child.span_id, "6", MLT_STATUS_OK, NULL);
  mlt_client_end_trace(root.trace_id, "{\"status\": \"done\"}", MLT_STATUS_OK, NULL);
}

static void odd_values(void) {
  MLT_SPAN_SCOPE(s, "odd_values", MLT_SPAN_PARSER);
  const char raw[] = "nul\0byte \xff\xfe bad utf8";
  mlt_span_set_attr_str_n(s, "raw", raw, sizeof raw - 1);
  mlt_span_set_inputs_json(s, "this is not json");
  mlt_span_set_outputs_text(s, "\"quoted\" \\ text\n", MLT_NTS);
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  mlt_span_set_attr_str(s, "big", big);
  mlt_span_set_type_name(s, "MY_PARSER");
}

static void continuation(void) {
  mlt_span r = mlt_span_start("cont_root", MLT_SPAN_CHAIN);
  mlt_context *c = mlt_context_capture(r);
  mlt_span_end(r);
  mlt_flush(5000);
  mlt_span late = mlt_span_start_in(c, "cont_late", MLT_SPAN_TOOL);
  mlt_span_end(late);
  mlt_context_release(c);
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  mlt_options *o;
  mlt_options_new(&o);
  mlt_options_use_env(o, 0);
  mlt_options_set_file_path(o, argv[1]);
  mlt_options_set_max_value_bytes(o, 1000);
  mlt_options_set_experiment_id(o, "7");
  if (mlt_init(o) != MLT_OK) return 1;
  mlt_options_free(o);
  function_scope();
  error_path();
  client_api();
  odd_values();
  continuation();
  int rc = mlt_shutdown(10000);
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  printf("exported=%llu failed=%llu dropped=%llu\n", (unsigned long long)st.traces_exported,
         (unsigned long long)st.traces_failed, (unsigned long long)st.traces_dropped);
  return rc == MLT_OK ? 0 : 1;
}
