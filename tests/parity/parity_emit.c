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
 *
 * With the argument "b" (issue 12 part B) it logs instead: a trace replayed
 * with explicit start / end times (root, a child ended before its start:
 * clamped), a span with links (by context, by ids, with attributes), a
 * description and a log level, the client API with explicit times and a
 * link, a root dropped by sampling_ratio_override 0, the far past and the far
 * future, and traces started in a scoped context (on this thread and on a
 * thread that carries it), and prints {"traces": {...}, "rc": {...}, ...}.
 */
#include <mltrace/mltrace.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static char out_rc[4096];
static size_t out_len;

static void rc_note(const char *what, int rc) {
  out_len += (size_t)snprintf(out_rc + out_len, sizeof out_rc - out_len, "%s\"%s\": \"%s\"", out_len ? ", " : "",
                              what, mlt_status_name(rc));
}

/* ---- part B ------------------------------------------------------------ */

#define T0 INT64_C(1700000000123456789) /* 2023-11-14T22:13:20.123456789Z */
#define SEC INT64_C(1000000000)

static char b_ids[8][MLT_TRACE_ID_SIZE];
static void *scoped_thread(void *arg) {
  (void)arg;
  MLT_SPAN_SCOPE(s, "scoped_worker", MLT_SPAN_TASK); /* under the carried scope-only context: a new trace */
  mlt_span_get_trace_id(s, b_ids[7], sizeof b_ids[7]);
  return NULL;
}

static int part_b(void) {
  char replay_id[MLT_TRACE_ID_SIZE], link_id[MLT_TRACE_ID_SIZE], client_id[MLT_TRACE_ID_SIZE];
  char past_id[MLT_TRACE_ID_SIZE], future_id[MLT_TRACE_ID_SIZE], scoped_id[MLT_TRACE_ID_SIZE];
  char replay_sid[MLT_SPAN_ID_SIZE];
  /* replayed: explicit times */
  mlt_span root = mlt_span_start_with("replayed", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = T0));
  mlt_span_get_trace_id(root, replay_id, sizeof replay_id);
  mlt_span_get_span_id(root, replay_sid, sizeof replay_sid);
  mlt_context *rctx = mlt_context_capture(root);
  mlt_span step = mlt_span_start_in_with(rctx, "step", MLT_SPAN_TOOL, MLT_SPAN_OPTIONS(.start_time_ns = T0 + SEC));
  rc_note("end_before_start", mlt_span_end_at(step, T0));
  rc_note("replayed_end", mlt_span_end_at(root, T0 + 3 * SEC + 500000000));
  /* links, description, log level */
  mlt_attr la[] = {MLT_ATTR_STR("relation", "fan-in"), MLT_ATTR_INT("index", 2), MLT_ATTR_BOOL("retry", 0)};
  {
    MLT_SPAN_SCOPE_WITH(b, "linker", MLT_SPAN_CHAIN,
                        MLT_LINKS({.ctx = rctx, .attrs = la, .n_attrs = 3},
                                  {.trace_id = "tr-0123456789abcdef0123456789abcdef", .span_id = "00000000000000ff"}),
                        .description = "joins the batch", .log_level = MLT_SPAN_LEVEL_WARNING);
    mlt_span_get_trace_id(b, link_id, sizeof link_id);
    MLT_SPAN_SCOPE(tool, "tool", MLT_SPAN_TOOL);
    mlt_span_record_error(tool, "ValueError", "bad input"); /* level ERROR, from the exception event */
  }
  mlt_context_release(rctx);
  /* client API with explicit times and a link */
  mlt_client_span r, c;
  rc_note("client_start", mlt_client_start_trace_with("client_replay", MLT_SPAN_AGENT, "{\"q\": 1}",
                                                      MLT_SPAN_OPTIONS(.start_time_ns = T0 + 10 * SEC,
                                                                       MLT_LINKS({.trace_id = replay_id,
                                                                                  .span_id = replay_sid})),
                                                      &r));
  memcpy(client_id, r.trace_id, sizeof client_id);
  rc_note("client_span", mlt_client_start_span_with(r.trace_id, r.span_id, "client_step", MLT_SPAN_TOOL, NULL,
                                                     MLT_SPAN_OPTIONS(.start_time_ns = T0 + 11 * SEC), &c));
  rc_note("client_end_span", mlt_client_end_span_at(r.trace_id, c.span_id, "{\"ok\": true}", MLT_STATUS_OK, NULL,
                                                    T0 + 12 * SEC));
  rc_note("client_end_trace", mlt_client_end_trace_at(r.trace_id, "{\"a\": 1}", MLT_STATUS_OK, NULL, T0 + 13 * SEC));
  /* sampling_ratio_override 0: never recorded */
  {
    MLT_SPAN_SCOPE_WITH(d, "dropped_by_override", MLT_SPAN_CHAIN, MLT_SAMPLING_RATIO(0.0));
    rc_note("dropped_recording", mlt_span_is_recording(d) ? MLT_EINVAL : MLT_OK);
  }
  /* the far past (1970) and the far future (2255) */
  mlt_span p = mlt_span_start_with("far_past", MLT_SPAN_CHAIN, MLT_SPAN_OPTIONS(.start_time_ns = 1000));
  mlt_span_get_trace_id(p, past_id, sizeof past_id);
  mlt_span_end_at(p, 2000000);
  mlt_span f = mlt_span_start_with("far_future", MLT_SPAN_CHAIN,
                                   MLT_SPAN_OPTIONS(.start_time_ns = INT64_C(9000000000000000000)));
  mlt_span_get_trace_id(f, future_id, sizeof future_id);
  mlt_span_end(f); /* now: before its start, clamped at export */
  /* scoped context */
  {
    MLT_TRACING_CONTEXT(.session_id = "sess-b", .user = "ann", .tags = MLT_KV("team", "core"),
                        .metadata = MLT_KV("tier", "gold"));
    {
      MLT_SPAN_SCOPE(s, "scoped", MLT_SPAN_CHAIN);
      mlt_span_get_trace_id(s, scoped_id, sizeof scoped_id);
    }
    pthread_t th;
    if (mlt_thread_create(&th, NULL, NULL, scoped_thread, NULL) == 0) pthread_join(th, NULL);
  }
  int flush_rc = mlt_flush(120000);
  int shut_rc = mlt_shutdown(30000);
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  printf("{\"traces\": {\"replayed\": \"%s\", \"replayed_root_span\": \"%s\", \"linker\": \"%s\", "
         "\"client\": \"%s\", \"far_past\": \"%s\", \"far_future\": \"%s\", \"scoped\": \"%s\", "
         "\"scoped_worker\": \"%s\"}, \"rc\": {%s}, \"flush\": \"%s\", \"shutdown\": \"%s\", "
         "\"stats\": {\"traces_exported\": %llu, \"traces_failed\": %llu, \"traces_sampled_out\": %llu}}\n",
         replay_id, replay_sid, link_id, client_id, past_id, future_id, scoped_id, b_ids[7], out_rc,
         mlt_status_name(flush_rc), mlt_status_name(shut_rc), (unsigned long long)st.traces_exported,
         (unsigned long long)st.traces_failed, (unsigned long long)st.traces_sampled_out);
  return 0;
}

int main(int argc, char **argv) {
  int ghost = argc > 1 && !strcmp(argv[1], "ghost");
  int b = argc > 1 && !strcmp(argv[1], "b");
  int rc = mlt_init(NULL);
  if (rc) {
    fprintf(stderr, "mlt_init: %s\n", mlt_strerror(rc));
    return 1;
  }
  if (b) return part_b();
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
