/* tests/parity/test_scope.c: the scoped context (<mltrace/scope.h>, like
 * mlflow.tracing.context()): tags, metadata, session and user on every trace
 * started in a scope, nesting, enabled=false, and the scope travelling with
 * contexts: worker queues, threads, jobs, mlt_evloop callbacks, and the
 * traces the evhttp and curl integrations start (real HTTP over loopback).
 * Read back from the in-memory store. */
#include <mltrace/curl.h>
#include <mltrace/event.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "net.h"
#include "testutil.h"

static const char *meta(const char *trace_name, const char *key) {
  cJSON *t = tu_trace_named(trace_name);
  return t ? tu_meta(t, key) : NULL;
}
static const char *tag(const char *trace_name, const char *key) {
  cJSON *t = tu_trace_named(trace_name);
  return t ? tu_tag(t, key) : NULL;
}

TEST(scope_tags_metadata_session_user_and_nesting) {
  tu_init();
  mlt_span before = mlt_span_start("before", MLT_SPAN_CHAIN); /* a trace already in progress */
  mlt_attach_token a, b;
  REQUIRE_EQ_INT(mlt_trace_scope_enter(MLT_TRACE_SCOPE(.tags = MLT_KV("project", "demo", "k", "outer"),
                                                       .metadata = MLT_KV("m", "1"), .session_id = "s-1"),
                                       &a),
                 MLT_OK);
  CHECK_EQ_INT(mlt_current_span().id_, before.id_); /* the current span stays */
  mlt_span joined = mlt_span_start("joined", MLT_SPAN_TOOL); /* joins: the trace is not changed */
  mlt_span_end(joined);
  mlt_span r1 = mlt_span_start_in(NULL, "r1", MLT_SPAN_CHAIN);
  mlt_span_end(r1);
  REQUIRE_EQ_INT(mlt_trace_scope_enter(MLT_TRACE_SCOPE(.tags = MLT_KV("k", "inner"), .user = "ann",
                                                       .metadata = MLT_KV("mlflow.trace.session", "s-2")),
                                       &b),
                 MLT_OK);
  mlt_span r2 = mlt_span_start_in(NULL, "r2", MLT_SPAN_CHAIN);
  mlt_span_end(r2);
  mlt_span r3 = mlt_span_start_in(NULL, "r3", MLT_SPAN_CHAIN);
  /* the application's update wins over the scope's */
  mlt_update_trace(r3, MLT_TRACE_UPDATE(.tags = MLT_KV("k", "updated"), .session_id = "s-upd"));
  mlt_span_end(r3);
  mlt_client_span cs;
  CHECK_EQ_INT(mlt_client_start_trace("client", MLT_SPAN_CHAIN, NULL, &cs), MLT_OK);
  mlt_client_end_trace(cs.trace_id, NULL, MLT_STATUS_OK, NULL);
  CHECK_EQ_INT(mlt_context_detach(b), MLT_EMISMATCH); /* a scope is exited, not detached */
  CHECK_EQ_INT(mlt_trace_scope_exit(a), MLT_EMISMATCH); /* not the innermost */
  CHECK_EQ_INT(mlt_trace_scope_exit(b), MLT_OK);
  mlt_span r4 = mlt_span_start_in(NULL, "r4", MLT_SPAN_CHAIN);
  char r4_id[MLT_TRACE_ID_SIZE];
  mlt_span_get_trace_id(r4, r4_id, sizeof r4_id);
  CHECK_EQ_INT(mlt_delete_trace_tag(r4_id, "project"), MLT_OK); /* a scope's tag, deleted in progress */
  CHECK_EQ_INT(mlt_set_trace_tag(r4_id, "k", "set"), MLT_OK);
  mlt_span_end(r4);
  CHECK_EQ_INT(mlt_trace_scope_exit(a), MLT_OK);
  CHECK_EQ_INT(mlt_trace_scope_exit(a), MLT_EMISMATCH);
  CHECK_EQ_INT(mlt_trace_scope_exit((mlt_attach_token){0, 0}), MLT_OK);
  mlt_span r5 = mlt_span_start_in(NULL, "r5", MLT_SPAN_CHAIN);
  mlt_span_end(r5);
  mlt_span_end(before);
  {
    MLT_TRACING_CONTEXT(.tags = MLT_KV("block", "yes"));
    MLT_SPAN_SCOPE(r6, "r6", MLT_SPAN_CHAIN);
  }
  mlt_span r7 = mlt_span_start("r7", MLT_SPAN_CHAIN);
  mlt_span_end(r7);
  /* bad input */
  mlt_attach_token x;
  CHECK_EQ_INT(mlt_trace_scope_enter(MLT_TRACE_SCOPE(.tags = (const char *const[]){"odd", NULL}), &x), MLT_EINVAL);
  CHECK_EQ_INT(mlt_trace_scope_enter(MLT_TRACE_SCOPE(.enabled = (mlt_scope_enabled)7), &x), MLT_EINVAL);
  CHECK_EQ_INT(mlt_trace_scope_enter(&(mlt_trace_scope){.struct_size = 4}, &x), MLT_EINVAL);
  CHECK_EQ_INT(mlt_trace_scope_enter(NULL, &x), MLT_EINVAL);
  CHECK(x.depth_ == 0);

  REQUIRE_EQ_INT(tu_flush_count(), 9);
  CHECK(tag("before", "project") == NULL);
  CHECK_EQ_STR(tag("r1", "project"), "demo");
  CHECK_EQ_STR(tag("r1", "k"), "outer");
  CHECK_EQ_STR(meta("r1", "m"), "1");
  CHECK_EQ_STR(meta("r1", "mlflow.trace.session"), "s-1");
  CHECK(meta("r1", "mlflow.trace.user") == NULL);
  CHECK_EQ_STR(tag("r2", "project"), "demo");
  CHECK_EQ_STR(tag("r2", "k"), "inner");
  CHECK_EQ_STR(meta("r2", "m"), "1");
  CHECK_EQ_STR(meta("r2", "mlflow.trace.session"), "s-2");
  CHECK_EQ_STR(meta("r2", "mlflow.trace.user"), "ann");
  CHECK_EQ_STR(tag("r3", "k"), "updated");
  CHECK_EQ_STR(meta("r3", "mlflow.trace.session"), "s-upd");
  CHECK_EQ_STR(meta("r3", "mlflow.trace.user"), "ann");
  CHECK_EQ_STR(tag("client", "k"), "inner");
  CHECK_EQ_STR(tag("r4", "k"), "set");
  CHECK(tag("r4", "project") == NULL);
  CHECK(meta("r4", "mlflow.trace.user") == NULL);
  CHECK(tag("r5", "project") == NULL);
  CHECK(meta("r5", "mlflow.trace.session") == NULL);
  CHECK_EQ_STR(tag("r6", "block"), "yes");
  CHECK(tag("r7", "block") == NULL);
  tu_done();
}

TEST(disabled_scope) {
  tu_init();
  mlt_span outer = mlt_span_start("outer", MLT_SPAN_CHAIN);
  {
    MLT_TRACING_CONTEXT(.enabled = MLT_SCOPE_DISABLED, .tags = MLT_KV("t", "x"));
    CHECK(mlt_span_is_none(mlt_span_start("a", MLT_SPAN_TOOL)));
    CHECK(mlt_span_is_none(mlt_span_start_in(NULL, "b", MLT_SPAN_TOOL)));
    CHECK(mlt_span_is_none(mlt_span_start_child(outer, "c", MLT_SPAN_TOOL)));
    CHECK(mlt_span_is_none(mlt_span_start_with("d", MLT_SPAN_TOOL, MLT_SPAN_OPTIONS(.description = "x"))));
    mlt_client_span cs;
    CHECK_EQ_INT(mlt_client_start_trace("e", MLT_SPAN_CHAIN, NULL, &cs), MLT_ENOTRECORDING);
    CHECK_EQ_INT(mlt_span_end(mlt_span_start("f", MLT_SPAN_TOOL)), MLT_ENOTRECORDING);
    {
      MLT_TRACING_CONTEXT(.enabled = MLT_SCOPE_ENABLED);
      MLT_SPAN_SCOPE(on, "back-on", MLT_SPAN_CHAIN); /* a child of outer, recorded */
      CHECK(mlt_span_is_recording(on));
      {
        MLT_TRACING_CONTEXT(.metadata = MLT_KV("inherit", "1")); /* enabled inherited: on */
        mlt_span r = mlt_span_start_in(NULL, "inherited-on", MLT_SPAN_CHAIN);
        CHECK(mlt_span_is_recording(r));
        mlt_span_end(r);
      }
    }
    CHECK(mlt_span_is_recording(outer)); /* the span in progress is not touched */
  }
  mlt_span after = mlt_span_start("after", MLT_SPAN_TOOL);
  CHECK(mlt_span_is_recording(after));
  mlt_span_end(after);
  mlt_span_end(outer);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *t = tu_trace_named("outer");
  REQUIRE(t != NULL);
  CHECK_EQ_INT(tu_nspans(t), 3); /* outer, back-on, after */
  CHECK(tu_span(t, "back-on") && tu_span(t, "after"));
  CHECK_EQ_STR(tag("inherited-on", "t"), "x");
  CHECK_EQ_STR(meta("inherited-on", "inherit"), "1");
  tu_done();
}

/* ---- threads, queues, jobs ------------------------------------------- */

typedef struct job_out {
  const char *name;
  int none; /* the job's span was MLT_SPAN_NONE */
} job_out;

static void job_root(void *arg) {
  job_out *o = arg;
  mlt_span s = mlt_span_start_in(NULL, o->name, MLT_SPAN_TASK); /* a new trace on the worker */
  o->none = mlt_span_is_none(s);
  mlt_span_end(s);
}

static void job_here(void *arg) {
  job_out *o = arg;
  mlt_span s = mlt_span_start(o->name, MLT_SPAN_TASK); /* under the job's context */
  o->none = mlt_span_is_none(s);
  mlt_span_end(s);
}

static void *thread_fn(void *arg) {
  job_here(arg);
  return NULL;
}

TEST(scope_travels_to_workers_threads_and_jobs) {
  tu_init();
  mlt_work_queue *q = NULL;
  REQUIRE_EQ_INT(mlt_work_queue_new(1, 16, &q), MLT_OK);
  job_out o1 = {"q-root"}, o2 = {"q-here"}, o3 = {"thr"}, o4 = {"job"}, o5 = {"q-child"}, o6 = {"q-after"},
          o7 = {"q-off"}, o8 = {"q-side"};
  pthread_t th;
  {
    MLT_TRACING_CONTEXT(.tags = MLT_KV("carried", "yes"), .user = "u1");
    /* no span: the context carries only the scope */
    mlt_context *cur = mlt_context_current();
    REQUIRE(cur != NULL);
    char buf[MLT_TRACE_ID_SIZE];
    CHECK_EQ_INT(mlt_context_get_trace_id(cur, buf, sizeof buf), MLT_EINVAL);
    CHECK_EQ_INT(mlt_update_trace_ctx(cur, MLT_TRACE_UPDATE(.tags = MLT_KV("a", "b"))), MLT_ENOTFOUND);
    mlt_context_release(cur);
    CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, job_root, &o1), MLT_OK);
    CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, job_here, &o2), MLT_OK);
    REQUIRE(mlt_thread_create(&th, NULL, NULL, thread_fn, &o3) == 0);
    mlt_job *j = mlt_job_new(NULL, job_here, &o4);
    pthread_join(th, NULL);
    mlt_job_run(j); /* on this thread, attached: same scope */
    MLT_SPAN_SCOPE(root, "parent", MLT_SPAN_CHAIN);
    CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, job_here, &o5), MLT_OK); /* joins "parent" */
    CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, job_root, &o8), MLT_OK); /* a new trace, in the scope */
  }
  CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, job_root, &o6), MLT_OK); /* outside: no scope */
  {
    MLT_TRACING_CONTEXT(.enabled = MLT_SCOPE_DISABLED);
    CHECK_EQ_INT(mlt_work_queue_submit(q, NULL, job_root, &o7), MLT_OK); /* off on the worker too */
  }
  mlt_work_queue_free(q); /* runs every queued job */
  CHECK(!o1.none && !o2.none && !o3.none && !o4.none && !o5.none && !o6.none && !o8.none);
  CHECK(o7.none);
  REQUIRE_EQ_INT(tu_flush_count(), 7);
  const char *in_scope[] = {"q-root", "q-here", "thr", "job", "parent", "q-side"};
  for (size_t i = 0; i < sizeof in_scope / sizeof *in_scope; i++) {
    CHECK_EQ_STR(tag(in_scope[i], "carried"), "yes");
    CHECK_EQ_STR(meta(in_scope[i], "mlflow.trace.user"), "u1");
  }
  CHECK(tu_span(tu_trace_named("parent"), "q-child") != NULL);
  CHECK(tag("q-after", "carried") == NULL);
  tu_done();
}

/* ---- evloop, evhttp, curl -------------------------------------------- */

static struct event_base *g_base;
static mlt_evloop *g_loop;
static int g_port;
static volatile int g_client_done;

static void cb_root(int status, void *arg) {
  if (status != MLT_OK) return;
  mlt_span s = mlt_span_start_in(NULL, (const char *)arg, MLT_SPAN_TASK);
  mlt_span_end(s);
}

static void cb_wake(int status, void *arg) {
  (void)status;
  (void)arg;
  g_client_done++;
}

static void h_chat(struct evhttp_request *req, void *arg) {
  (void)arg;
  struct evbuffer *b = evbuffer_new();
  evbuffer_add_printf(b, "{\"id\": \"c1\", \"object\": \"chat.completion\", \"model\": \"m\", \"choices\": "
                         "[{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"hi\"}, "
                         "\"finish_reason\": \"stop\"}]}");
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  mlt_evhttp_send_reply(req, 200, "OK", b);
  evbuffer_free(b);
}

typedef struct client_job {
  const char *scope_tag; /* NULL: no scope on the client thread */
  const char *span_name;
} client_job;

static void *client_thread(void *arg) {
  client_job *cj = arg;
  mlt_attach_token tok = {0, 0};
  if (cj->scope_tag)
    mlt_trace_scope_enter(MLT_TRACE_SCOPE(.tags = MLT_KV("side", cj->scope_tag), .session_id = "s-client"), &tok);
  CURL *h = curl_easy_init();
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", g_port);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
  mlt_curl_options *co = NULL;
  mlt_curl_options_new(&co);
  mlt_curl_options_set_span_name(co, cj->span_name);
  mlt_curl_call *call = NULL;
  const char *body = "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hello\"}]}";
  if (mlt_curl_call_new(h, NULL, co, body, MLT_NTS, NULL, &call) == MLT_OK) {
    mlt_curl_perform(call);
    mlt_curl_call_free(call);
  }
  mlt_curl_options_free(co);
  curl_easy_cleanup(h);
  /* a callback on the loop under this thread's context (its scope) */
  mlt_evloop_call(g_loop, NULL, NULL, cb_root, cj->scope_tag ? "cb-client-scope" : "cb-no-scope");
  mlt_evloop_call(g_loop, NULL, NULL, cb_wake, NULL);
  if (tok.depth_) mlt_trace_scope_exit(tok);
  return NULL;
}

static void run_client(client_job *cj) {
  g_client_done = 0;
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, client_thread, cj) == 0);
  while (!g_client_done) event_base_loop(g_base, EVLOOP_ONCE);
  pthread_join(th, NULL);
}

TEST(scope_in_evhttp_curl_and_evloop) {
  tu_init();
  curl_global_init(CURL_GLOBAL_DEFAULT);
  evthread_use_pthreads();
  g_base = event_base_new();
  struct evhttp *http = evhttp_new(g_base);
  int fd = th_listen_loopback(16, &g_port);
  evutil_make_socket_nonblocking(fd);
  REQUIRE(evhttp_accept_socket_with_handle(http, fd) != NULL);
  mlt_evhttp *inst = NULL;
  REQUIRE_EQ_INT(mlt_evhttp_instrument(http, NULL, &inst), MLT_OK);
  REQUIRE_EQ_INT(mlt_evhttp_set_cb(inst, "/v1/chat/completions", h_chat, NULL), MLT_OK);
  REQUIRE_EQ_INT(mlt_evloop_new(g_base, &g_loop), MLT_OK);

  /* The loop thread's own scope: every request trace gets it. */
  mlt_attach_token loop_tok;
  REQUIRE_EQ_INT(mlt_trace_scope_enter(MLT_TRACE_SCOPE(.tags = MLT_KV("side", "server", "loop", "1")), &loop_tok),
                 MLT_OK);
  /* a deferred callback scheduled inside another scope runs in that one */
  mlt_attach_token dtok;
  REQUIRE_EQ_INT(mlt_trace_scope_enter(MLT_TRACE_SCOPE(.tags = MLT_KV("side", "deferred")), &dtok), MLT_OK);
  REQUIRE_EQ_INT(mlt_evloop_defer(g_loop, NULL, NULL, cb_root, "cb-deferred", NULL), MLT_OK);
  CHECK_EQ_INT(mlt_trace_scope_exit(dtok), MLT_OK);
  client_job c1 = {"client", "call-1"};
  run_client(&c1); /* client thread in its own scope */
  client_job c2 = {NULL, "call-2"};
  run_client(&c2); /* client thread without a scope */
  mlt_attach_token off;
  REQUIRE_EQ_INT(mlt_trace_scope_enter(MLT_TRACE_SCOPE(.enabled = MLT_SCOPE_DISABLED), &off), MLT_OK);
  client_job c3 = {NULL, "call-3"};
  run_client(&c3); /* the loop thread's scope is off: the request is not traced */
  CHECK_EQ_INT(mlt_trace_scope_exit(off), MLT_OK);
  CHECK_EQ_INT(mlt_trace_scope_exit(loop_tok), MLT_OK);

  mlt_evloop_free(g_loop);
  evhttp_free(http);
  mlt_evhttp_free(inst);
  event_base_free(g_base);
  curl_global_cleanup();

  /* cb-deferred, call-1, server 1, cb-client-scope, call-2, server 2,
   * cb-no-scope, call-3, cb-no-scope (off on the loop: nothing) */
  REQUIRE_EQ_INT(tu_flush_count(), 8);
  CHECK_EQ_STR(tag("cb-deferred", "side"), "deferred");
  CHECK_EQ_STR(tag("call-1", "side"), "client");
  CHECK_EQ_STR(meta("call-1", "mlflow.trace.session"), "s-client");
  CHECK(tag("call-2", "side") == NULL);
  CHECK(tag("call-3", "side") == NULL);
  int servers = 0, cb_scope = 0, cb_plain = 0;
  size_t n = mlt_memory_store_count(tu_store);
  for (size_t i = 0; i < n; i++) {
    cJSON *t = tu_trace(i);
    const char *name = tu_tag(t, "mlflow.traceName");
    if (!name) continue;
    const char *side = tu_tag(t, "side");
    if (!strcmp(name, "POST /v1/chat/completions")) {
      servers++;
      CHECK_EQ_STR(side, "server"); /* a continued (remote-parent) trace gets the scope too */
      CHECK_EQ_STR(tu_tag(t, "loop"), "1");
      CHECK(tu_meta(t, "mlflow.trace.session") == NULL);
    } else if (!strcmp(name, "cb-client-scope")) {
      cb_scope++;
      CHECK_EQ_STR(side, "client"); /* the caller's scope came with the callback */
      CHECK_EQ_STR(tu_meta(t, "mlflow.trace.session"), "s-client");
    } else if (!strcmp(name, "cb-no-scope")) {
      cb_plain++;
      CHECK_EQ_STR(side, "server"); /* a context without a scope: the loop thread's own */
    }
  }
  CHECK_EQ_INT(servers, 2);
  CHECK_EQ_INT(cb_scope, 1);
  CHECK_EQ_INT(cb_plain, 1);
  tu_done();
}

static const tap_test tests[] = {TAP_ENTRY(scope_tags_metadata_session_user_and_nesting), TAP_ENTRY(disabled_scope),
                                 TAP_ENTRY(scope_travels_to_workers_threads_and_jobs),
                                 TAP_ENTRY(scope_in_evhttp_curl_and_evloop), TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
