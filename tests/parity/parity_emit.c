/* tests/parity/parity_emit.c: the C side of tests/parity/test_parity.py.
 *
 * Configured by the environment like any application (MLFLOW_TRACKING_URI,
 * MLTRACE_FILE, ...).  One run logs, in order:
 *   done   a finished trace, then feedback / expectations / tag changes on
 *          it by id (the queue path): the id comes from
 *          mlt_get_last_active_trace_id();
 *   live   a trace in progress (client API) that gets feedback, an
 *          expectation and tag changes before it ends (the in-memory path);
 *   state  update_current_trace(state=ERROR, model_id=...) on a trace whose
 *          root ends OK, and state=OK on one whose root ends with ERROR;
 *   ghost  (argument "ghost") feedback on a trace id nobody made.
 * It prints one JSON line: {"traces": {...}, "rc": {...}, "stats": {...}}.
 */
#include <mltrace/mltrace.h>

#include <stdio.h>
#include <string.h>

static char out_rc[4096];
static size_t out_len;

static void rc_note(const char *what, int rc) {
  out_len += (size_t)snprintf(out_rc + out_len, sizeof out_rc - out_len, "%s\"%s\": \"%s\"", out_len ? ", " : "",
                              what, mlt_status_name(rc));
}

int main(int argc, char **argv) {
  int ghost = argc > 1 && !strcmp(argv[1], "ghost");
  int rc = mlt_init(NULL);
  if (rc) {
    fprintf(stderr, "mlt_init: %s\n", mlt_strerror(rc));
    return 1;
  }
  char done_id[MLT_TRACE_ID_SIZE], live_id[MLT_TRACE_ID_SIZE], err_id[MLT_TRACE_ID_SIZE], ok_id[MLT_TRACE_ID_SIZE];
  char child_sid[MLT_SPAN_ID_SIZE] = "";

  /* done: a finished trace, operated on by id afterwards. */
  {
    MLT_SPAN_SCOPE(root, "answer", MLT_SPAN_CHAIN);
    mlt_span_set_inputs_json(root, "{\"question\": \"capital of France?\"}");
    mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("app", "parity", "env", "dev")));
    {
      MLT_SPAN_SCOPE(llm, "llm", MLT_SPAN_LLM);
      mlt_span_get_span_id(llm, child_sid, sizeof child_sid);
      mlt_span_set_outputs_json(llm, "\"Paris\"");
    }
    mlt_span_set_outputs_json(root, "\"Paris\"");
  }
  mlt_get_last_active_trace_id(done_id, sizeof done_id);
  rc_note("done_feedback",
          mlt_log_feedback(done_id, MLT_ASSESSMENT(.name = "thumbs", .value_json = "true",
                                                   .source_type = MLT_SOURCE_HUMAN, .source_id = "alice",
                                                   .rationale = "quick and right",
                                                   .metadata = MLT_KV("channel", "web"), .span_id = child_sid)));
  rc_note("done_expectation_obj",
          mlt_log_expectation(done_id, MLT_ASSESSMENT(.name = "facts", .value_json = "{\"city\": \"Paris\", "
                                                                                     "\"alts\": [1, 2.5, null]}",
                                                      .source_type = MLT_SOURCE_CODE, .source_id = "ci")));
  rc_note("done_expectation_str",
          mlt_log_expectation(done_id, MLT_ASSESSMENT(.name = "expected_answer", .value_json = " \"Paris\" ")));
  rc_note("done_feedback_error",
          mlt_log_feedback(done_id, MLT_ASSESSMENT(.name = "judge", .source_type = MLT_SOURCE_LLM_JUDGE,
                                                   .source_id = "gpt-judge", .error_code = "TIMEOUT",
                                                   .error_message = "judge timed out")));
  rc_note("done_feedback_default", mlt_log_feedback(done_id, MLT_ASSESSMENT(.value_json = "0.75")));
  rc_note("done_set_tag", mlt_set_trace_tag(done_id, "reviewed", "yes"));
  rc_note("done_set_tag_again", mlt_set_trace_tag(done_id, "env", "prod"));
  rc_note("done_set_then_delete", mlt_set_trace_tag(done_id, "tmp", "x"));
  rc_note("done_delete_tmp", mlt_delete_trace_tag(done_id, "tmp"));
  rc_note("done_delete_app", mlt_delete_trace_tag(done_id, "app"));

  /* live: operations while the trace is in progress. */
  mlt_client_span r, c;
  mlt_client_start_trace("live_root", MLT_SPAN_AGENT, "{\"q\": 1}", &r);
  memcpy(live_id, r.trace_id, sizeof live_id);
  mlt_client_start_span(r.trace_id, r.span_id, "live_child", MLT_SPAN_TOOL, NULL, &c);
  mlt_update_trace_by_id(r.trace_id, MLT_TRACE_UPDATE(.tags = MLT_KV("gone", "soon", "kept", "1")));
  rc_note("live_feedback", mlt_log_feedback(r.trace_id, MLT_ASSESSMENT(.name = "live_thumbs", .value_json = "false",
                                                                       .source_type = MLT_SOURCE_HUMAN,
                                                                       .source_id = "bob")));
  rc_note("live_expectation_span", mlt_span_log_expectation(c.span, MLT_ASSESSMENT(.name = "live_expected",
                                                                                   .value_json = "[\"a\", \"b\"]",
                                                                                   .span_id = c.span_id)));
  rc_note("live_set_tag", mlt_set_trace_tag(r.trace_id, "live", "1"));
  rc_note("live_delete_tag", mlt_delete_trace_tag(r.trace_id, "gone"));
  rc_note("live_delete_missing", mlt_delete_trace_tag(r.trace_id, "nope"));
  mlt_client_end_span(r.trace_id, c.span_id, "{\"ok\": true}", MLT_STATUS_OK, NULL);
  mlt_client_end_trace(r.trace_id, "{\"a\": 2}", MLT_STATUS_OK, NULL);

  /* state / model_id */
  {
    MLT_SPAN_SCOPE(s, "state_error", MLT_SPAN_CHAIN);
    rc_note("state_error", mlt_update_current_trace(MLT_TRACE_UPDATE(.state = MLT_TRACE_STATE_ERROR,
                                                                     .model_id = "m-0123456789")));
    mlt_span_set_outputs_json(s, "1");
  }
  mlt_get_last_active_trace_id(err_id, sizeof err_id);
  {
    MLT_SPAN_SCOPE(s, "state_ok", MLT_SPAN_CHAIN);
    mlt_update_current_trace(MLT_TRACE_UPDATE(.state = MLT_TRACE_STATE_OK));
    mlt_span_record_error(s, "ValueError", "handled upstream");
  }
  mlt_get_last_active_trace_id(ok_id, sizeof ok_id);

  char ghost_id[MLT_TRACE_ID_SIZE] = "tr-00000000000000000000000000c0ffee";
  if (ghost) rc_note("ghost_feedback", mlt_log_feedback(ghost_id, MLT_ASSESSMENT(.value_json = "1")));

  int flush_rc = mlt_flush(120000);
  int shut_rc = mlt_shutdown(30000);
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  printf("{\"traces\": {\"done\": \"%s\", \"live\": \"%s\", \"state_error\": \"%s\", \"state_ok\": \"%s\", "
         "\"ghost\": \"%s\", \"child_span\": \"%s\", \"live_child_span\": \"%s\"}, \"rc\": {%s}, "
         "\"flush\": \"%s\", \"shutdown\": \"%s\", \"stats\": {\"traces_exported\": %llu, \"traces_failed\": %llu, "
         "\"ops_queued\": %llu, \"ops_delivered\": %llu, \"ops_failed\": %llu, \"ops_dropped\": %llu}}\n",
         done_id, live_id, err_id, ok_id, ghost_id, child_sid, c.span_id, out_rc, mlt_status_name(flush_rc),
         mlt_status_name(shut_rc), (unsigned long long)st.traces_exported, (unsigned long long)st.traces_failed,
         (unsigned long long)st.trace_ops_queued, (unsigned long long)st.trace_ops_delivered,
         (unsigned long long)st.trace_ops_failed, (unsigned long long)st.trace_ops_dropped);
  return 0;
}
