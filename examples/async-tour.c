/* examples/async-tour.c: the README's "async" tour as one complete program:
 * an evhttp server that hands each question to a worker thread, streams the
 * answer of an OpenAI-compatible LLM back to its client token by token, and
 * takes the user's thumbs-up afterwards.  Built by `make check`.
 *
 *   ./async-tour [--port N] [--llm URL] [--workers N]
 *   curl -N -d '{"question": "What is MLflow?"}' http://127.0.0.1:8080/ask
 *   curl -d '{"trace_id": "tr-...", "thumbs_up": true, "user": "alice"}' \
 *        http://127.0.0.1:8080/feedback
 *
 * --llm is the API base URL (default $OPENAI_BASE_URL, else
 * http://127.0.0.1:8081/v1; examples/fake-openai serves one); the key comes
 * from $OPENAI_API_KEY.  With --port 0 (default 8080) the first line on
 * stdout is "listening on 127.0.0.1:PORT".  Traces go where the environment
 * says (MLFLOW_TRACKING_URI, MLTRACE_FILE; default ./traces.jsonl).
 *
 * Each /ask request is one trace:
 *
 *   POST /ask               CHAIN: the request span (mlt_evhttp), from the
 *   |                       request until the last chunk went out; output =
 *   |                       the text the client received
 *   |-- retrieve            RETRIEVER, on a worker thread (mlt_work_queue)
 *   `-- chat.completions    CHAT_MODEL, the streamed LLM call (mlt_curl_loop):
 *                           one event per chunk, the assembled answer and its
 *                           token usage (stream_options.include_usage)
 *
 * The reply carries the trace id in an X-Trace-Id header; POST /feedback
 * turns the user's verdict into MLflow feedback on that trace
 * (mlt_log_feedback()), whenever it comes.
 *
 * Who owns what, and the order things happen in, is the point of this file:
 *  - everything but the retrieval job runs on the loop thread; the job only
 *    reads the question and writes the context, and hands back to the loop
 *    with mlt_evloop_call();
 *  - an /ask request's state (struct ask) has two owners: the HTTP request
 *    (until evhttp is done with it) and the pipeline (job -> LLM call ->
 *    done); it is freed when both let go;
 *  - a client that hangs up: the request's done callback says so
 *    (disconnected = 1); the LLM call is cancelled on the next loop turn,
 *    its done callback runs, and the reply is "ended" once more (libevent
 *    wants that call to free the request; nothing is sent);
 *  - shutdown (SIGINT/SIGTERM): stop the loop, then free in this order:
 *    evhttp (connections close; their spans end with ERROR), the
 *    instrumentation, the work queue (runs what is queued), the curl loop
 *    (cancels calls), the evloop (cancels pending callbacks), the base, then
 *    mlt_shutdown() (flushes the traces) and curl_global_cleanup().
 */
#include <mltrace/curl.h>
#include <mltrace/event.h>
#include <mltrace/mltrace.h>

#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

typedef struct app {
  struct event_base *base;
  struct evhttp *http;
  mlt_evhttp *inst;
  mlt_evloop *loop;
  mlt_curl_loop *curl;
  mlt_work_queue *workers;
  char llm_url[512]; /* .../chat/completions */
  const char *api_key;
  int stopping; /* evhttp_free() is closing every connection */
} app;

/* One /ask request. */
typedef struct ask {
  app *app;
  struct evhttp_request *req; /* until the reply was ended */
  int owners;                 /* the request, the pipeline */
  int client_gone;            /* the client hung up */
  int reply_started;          /* chunked reply begun */
  char question[1024];
  char context[256]; /* what the worker retrieved */
  CURL *easy;
  mlt_curl_call *call; /* the LLM call while it runs */
} ask;

static void ask_release(ask *a) {
  if (--a->owners == 0) free(a);
}

/* End the reply (also after a hang-up: libevent frees the request then). */
static void end_reply(ask *a, int code, const char *text) {
  if (!a->req) return;
  if (a->reply_started) {
    mlt_evhttp_send_reply_end(a->req);
  } else {
    struct evbuffer *b = evbuffer_new();
    if (b && text) evbuffer_add_printf(b, "%s\n", text);
    mlt_evhttp_send_reply(a->req, code, code == 200 ? "OK" : "Error", b);
    if (b) evbuffer_free(b);
  }
  a->req = NULL;
}

/* ---- the LLM call (loop thread) -------------------------------------- */

/* Each token as it arrives: relay it to the client as one HTTP chunk. */
static int on_delta(mlt_curl_call *call, const char *chunk_json, size_t chunk_len, const char *delta,
                    size_t delta_len, void *user_data) {
  (void)call, (void)chunk_json, (void)chunk_len;
  ask *a = user_data;
  if (a->client_gone || !a->req) return 1; /* abort the transfer */
  if (!delta_len) return 0;                /* role, finish and usage chunks carry no text */
  struct evbuffer *b = evbuffer_new();
  if (!b) return 1;
  evbuffer_add(b, delta, delta_len);
  mlt_evhttp_send_reply_chunk(a->req, b);
  evbuffer_free(b);
  return 0;
}

/* The call is over (done, failed or cancelled).  The request's context is
 * attached here, so update_current_trace reaches the request's trace. */
static void on_llm_done(mlt_curl_call *call, int status, void *user_data) {
  ask *a = user_data;
  size_t len = 0;
  const char *answer = mlt_curl_call_content(call, &len);
  if (status == MLT_OK) {
    mlt_update_current_trace(MLT_TRACE_UPDATE(.response_preview = answer));
  } else if (!a->client_gone && a->req) {
    /* The reply is already 200 and partly sent: say so in the body. */
    struct evbuffer *b = evbuffer_new();
    if (b) {
      evbuffer_add_printf(b, "\n[the model failed: %s]\n", mlt_curl_call_error(call));
      mlt_evhttp_send_reply_chunk(a->req, b);
      evbuffer_free(b);
    }
  }
  end_reply(a, 200, NULL);
  mlt_curl_call_free(call); /* inside the done callback: freed when it returns */
  curl_easy_cleanup(a->easy);
  a->easy = NULL;
  a->call = NULL;
  ask_release(a); /* the pipeline's share */
}

/* ---- back on the loop after the retrieval ----------------------------- */

static void on_retrieved(int status, void *user_data) {
  ask *a = user_data;
  app *ap = a->app;
  if (status == MLT_EVENT_CANCELLED || a->client_gone) { /* shutting down, or nobody listens */
    if (a->client_gone) end_reply(a, 503, NULL);
    ask_release(a);
    return;
  }
  /* An OpenAI chat request, streamed; include_usage makes the last chunk
   * carry the token usage, recorded on the span as mlflow.chat.tokenUsage. */
  cJSON *body = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(body, "messages");
  cJSON_AddStringToObject(body, "model", "demo-model");
  cJSON_AddBoolToObject(body, "stream", 1);
  cJSON_AddBoolToObject(cJSON_AddObjectToObject(body, "stream_options"), "include_usage", 1);
  cJSON *sys = cJSON_CreateObject(), *user = cJSON_CreateObject();
  char prompt[400];
  snprintf(prompt, sizeof prompt, "Answer from this context: %s", a->context);
  cJSON_AddStringToObject(sys, "role", "system");
  cJSON_AddStringToObject(sys, "content", prompt);
  cJSON_AddStringToObject(user, "role", "user");
  cJSON_AddStringToObject(user, "content", a->question);
  cJSON_AddItemToArray(msgs, sys);
  cJSON_AddItemToArray(msgs, user);
  char *json = cJSON_PrintUnformatted(body);
  cJSON_Delete(body);

  struct curl_slist *headers = NULL;
  if (ap->api_key) {
    char auth[600];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", ap->api_key);
    headers = curl_slist_append(headers, auth); /* never recorded in the trace */
  }
  a->easy = curl_easy_init();
  int rc = json && a->easy ? MLT_OK : MLT_ENOMEM;
  if (!rc) {
    curl_easy_setopt(a->easy, CURLOPT_URL, ap->llm_url);
    curl_easy_setopt(a->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(a->easy, CURLOPT_TIMEOUT_MS, 120000L);
    /* NULL parent: the current context, i.e. the request's (attached by
     * mlt_evloop_call for the length of this callback). */
    mlt_context *ctx = mlt_context_current();
    rc = mlt_curl_call_new(a->easy, ctx, NULL, json, MLT_NTS, headers, &a->call);
    mlt_context_release(ctx);
  }
  curl_slist_free_all(headers); /* the call copied them */
  cJSON_free(json);
  if (!rc) rc = mlt_curl_call_set_delta_fn(a->call, on_delta, a);
  if (!rc) {
    struct evkeyvalq *out = evhttp_request_get_output_headers(a->req);
    evhttp_add_header(out, "Content-Type", "text/plain; charset=utf-8");
    mlt_evhttp_send_reply_start(a->req, 200, "OK");
    a->reply_started = 1;
    rc = mlt_curl_loop_add(ap->curl, a->call, on_llm_done, a); /* on_llm_done runs once, later */
  }
  if (rc) {
    if (a->call) mlt_curl_call_free(a->call);
    if (a->easy) curl_easy_cleanup(a->easy);
    a->call = NULL;
    a->easy = NULL;
    end_reply(a, 500, "cannot start the model call");
    ask_release(a);
  }
}

/* ---- the worker job --------------------------------------------------- */

/* Runs on a worker thread with the request's context attached: the span
 * started here is a child of the request span. */
static void retrieve_job(void *arg) {
  ask *a = arg;
  {
    MLT_SPAN_SCOPE(s, "retrieve", MLT_SPAN_RETRIEVER);
    mlt_span_set_inputs_fields(s, (mlt_attr[]){MLT_ATTR_STR("query", a->question), MLT_ATTR_INT("k", 1)}, 2);
    snprintf(a->context, sizeof a->context, "%s",
             strstr(a->question, "MLflow") ? "MLflow is an open source platform for the machine learning lifecycle."
                                           : "libmltrace traces C services the way MLflow traces Python.");
    mlt_span_set_outputs_fields(s, (mlt_attr[]){MLT_ATTR_STR("doc", a->context)}, 1);
  } /* the span ends here: what follows is back under the request's context */
  /* Hand the result back to the loop; NULL context: the current one, the
   * request's, which this job runs under (inside the block above it would
   * have been the retrieve span's, and the LLM call its child).  It can only
   * fail once the loop is being freed, and main() frees the work queue
   * first, so the callback always runs (maybe cancelled). */
  if (mlt_evloop_call(a->app->loop, NULL, NULL, on_retrieved, a) != MLT_OK)
    fprintf(stderr, "async-tour: could not hand a result back to the loop\n");
}

/* ---- HTTP handlers (loop thread) --------------------------------------- */

static char *read_body(struct evhttp_request *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(in);
  char *s = malloc(n + 1);
  if (!s) return NULL;
  evbuffer_copyout(in, s, n);
  s[n] = '\0';
  return s;
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text) {
  struct evbuffer *b = evbuffer_new();
  if (b) evbuffer_add_printf(b, "%s\n", text);
  evhttp_send_reply(req, code, reason, b);
  if (b) evbuffer_free(b);
}

/* POST /ask {"question": "..."}: traced by the instrumentation (this runs
 * with the request span's context attached). */
static void on_ask(struct evhttp_request *req, void *arg) {
  app *ap = arg;
  char *text = read_body(req);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "question");
  if (!cJSON_IsString(q) || !q->valuestring[0]) {
    cJSON_Delete(j);
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add_printf(b, "send {\"question\": \"...\"}\n");
    mlt_evhttp_send_reply(req, 400, "Bad Request", b);
    if (b) evbuffer_free(b);
    return;
  }
  ask *a = calloc(1, sizeof *a);
  if (!a) {
    cJSON_Delete(j);
    mlt_evhttp_send_reply(req, 503, "Busy", NULL);
    return;
  }
  a->app = ap;
  a->req = req;
  a->owners = 2; /* the request and the pipeline */
  snprintf(a->question, sizeof a->question, "%s", q->valuestring);
  cJSON_Delete(j);
  mlt_evhttp_request_set_data(req, a); /* handed to on_request_done */

  /* The trace id, for the client's feedback later. */
  char tid[MLT_TRACE_ID_SIZE];
  if (mlt_span_get_trace_id(mlt_evhttp_request_span(req), tid, sizeof tid) == MLT_OK)
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Trace-Id", tid);
  /* The trace's request preview: the question, not the whole request. */
  mlt_update_current_trace(MLT_TRACE_UPDATE(.request_preview = a->question));

  /* NULL context: the current one (the request's), captured now. */
  if (mlt_work_queue_submit(ap->workers, NULL, retrieve_job, a) != MLT_OK) {
    mlt_evhttp_send_reply(req, 503, "Busy", NULL); /* queue full: fail fast */
    a->req = NULL;
    ask_release(a); /* the pipeline never started */
  }
}

/* Next loop turn after a hang-up: cancel the LLM call (its done callback
 * ends the reply); if the call has not started yet, on_retrieved sees
 * client_gone and ends it. */
static void on_hangup(int status, void *user_data) {
  (void)status; /* cancelled at shutdown: the curl loop is freed anyway */
  ask *a = user_data;
  if (a->call) mlt_curl_loop_cancel(a->call);
  ask_release(a);
}

/* The request is over: sent completely, or the connection closed first. */
static void on_request_done(struct evhttp_request *req, int disconnected, void *request_data, void *user_data) {
  (void)req;
  app *ap = user_data;
  ask *a = request_data;
  if (!a) return; /* not an /ask that got this far */
  if (!disconnected || ap->stopping) {
    a->req = NULL; /* complete, or freed by evhttp_free(): do not touch it */
  } else {
    /* The client hung up: stop the work on the next loop turn (no reply
     * from inside this callback); the reply is ended there. */
    a->client_gone = 1;
    a->owners++; /* for on_hangup */
    if (mlt_evloop_defer(ap->loop, NULL, NULL, on_hangup, a, NULL) != MLT_OK) a->owners--;
  }
  ask_release(a); /* the request's share */
}

/* POST /feedback {"trace_id": "tr-...", "thumbs_up": true, "user": "...",
 * "comment": "..."}: not traced (plain evhttp_set_cb). */
static void on_feedback(struct evhttp_request *req, void *arg) {
  (void)arg;
  char *text = read_body(req);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  const char *tid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "trace_id"));
  const cJSON *up = cJSON_GetObjectItemCaseSensitive(j, "thumbs_up");
  const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "user"));
  const char *comment = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "comment"));
  int rc = !tid || !cJSON_IsBool(up) ? MLT_EINVAL
                                     : mlt_log_feedback(tid, MLT_ASSESSMENT(.name = "user_thumbs_up",
                                                                            .value_json = cJSON_IsTrue(up) ? "true" : "false",
                                                                            .source_type = MLT_SOURCE_HUMAN,
                                                                            .source_id = user, .rationale = comment));
  cJSON_Delete(j);
  if (rc == MLT_OK) reply_text(req, 202, "Accepted", "thanks");
  else reply_text(req, 400, "Bad Request", mlt_strerror(rc));
}

/* ---- main -------------------------------------------------------------- */

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig, (void)what;
  event_base_loopbreak(arg);
}

int main(int argc, char **argv) {
  int port = 8080;
  unsigned n_workers = 4;
  const char *llm = getenv("OPENAI_BASE_URL");
  if (!llm || !llm[0]) llm = "http://127.0.0.1:8081/v1";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--llm") && i + 1 < argc) llm = argv[++i];
    else if (!strcmp(argv[i], "--workers") && i + 1 < argc) n_workers = (unsigned)atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: async-tour [--port N] [--llm URL] [--workers N]\n");
      return 2;
    }
  }
  app ap;
  memset(&ap, 0, sizeof ap);
  snprintf(ap.llm_url, sizeof ap.llm_url, "%s%s/chat/completions", llm,
           llm[0] && llm[strlen(llm) - 1] == '/' ? "." : "");
  ap.api_key = getenv("OPENAI_API_KEY");

  /* Order matters: tracing first; libevent's locking before the base exists
   * (mlt_evloop_call() is called from worker threads); curl's globals are
   * the application's. */
  if (mlt_init(NULL) != MLT_OK) fprintf(stderr, "async-tour: tracing is off\n");
  if (evthread_use_pthreads() != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
  ap.base = event_base_new();
  ap.http = ap.base ? evhttp_new(ap.base) : NULL;
  if (!ap.http || mlt_evloop_new(ap.base, &ap.loop) != MLT_OK || mlt_curl_loop_new(ap.base, &ap.curl) != MLT_OK ||
      mlt_work_queue_new(n_workers, 1024, &ap.workers) != MLT_OK) {
    fprintf(stderr, "async-tour: set-up failed\n");
    return 1;
  }
  mlt_evhttp_options *o = NULL;
  mlt_evhttp_options_new(&o);
  mlt_evhttp_options_set_done_cb(o, on_request_done, &ap);
  int rc = mlt_evhttp_instrument(ap.http, o, &ap.inst);
  mlt_evhttp_options_free(o);
  if (rc != MLT_OK) return 1;
  mlt_evhttp_set_cb(ap.inst, "/ask", on_ask, &ap);
  evhttp_set_cb(ap.http, "/feedback", on_feedback, &ap);
  struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(ap.http, "127.0.0.1", (ev_uint16_t)port);
  if (!bound) {
    fprintf(stderr, "async-tour: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &len) == 0) port = ntohs(sin.sin_port);
  printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  struct event *sigint = evsignal_new(ap.base, SIGINT, on_signal, ap.base);
  struct event *sigterm = evsignal_new(ap.base, SIGTERM, on_signal, ap.base);
  event_add(sigint, NULL);
  event_add(sigterm, NULL);

  event_base_dispatch(ap.base);

  /* Teardown, in this order (see the header comment). */
  ap.stopping = 1;
  evhttp_free(ap.http);
  mlt_evhttp_free(ap.inst);
  mlt_work_queue_free(ap.workers);
  mlt_curl_loop_free(ap.curl);
  mlt_evloop_free(ap.loop);
  event_free(sigint);
  event_free(sigterm);
  event_base_free(ap.base);
  mlt_stats st;
  int shut = mlt_shutdown(5000);
  mlt_get_stats(&st, sizeof st);
  fprintf(stderr, "async-tour: %llu traces exported, %llu failed, %llu dropped; feedback %llu delivered, %llu failed%s\n",
          (unsigned long long)st.traces_exported, (unsigned long long)st.traces_failed,
          (unsigned long long)st.traces_dropped, (unsigned long long)st.trace_ops_delivered,
          (unsigned long long)st.trace_ops_failed, shut == MLT_ETIMEDOUT ? " (shutdown deadline hit)" : "");
  curl_global_cleanup();
  return 0;
}
