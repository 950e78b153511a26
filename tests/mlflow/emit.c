/* tests/mlflow/emit.c: the C side of the MLflow server tests.
 *
 * Configured by the environment (MLFLOW_TRACKING_URI, OTEL_EXPORTER_OTLP_*,
 * ...), like any application.  Modes:
 *   emit all              traces at every API level, an error path, a stream
 *   emit steady N MS      N small traces, one every MS milliseconds
 *   emit hot N            time N spans (ns/span), then shut down
 *   emit big N KB MS      N traces with KB KiB of inputs each, one every MS ms
 *   emit values JSON...   one trace "values": a span v<i> per JSON text
 *                         given, set as its inputs, outputs and JSON
 *                         attribute "j" (plus a string attribute "str");
 *                         the root's inputs and outputs are the first
 *   emit api_otlp URL     one trace through an OTLP exporter built in code
 *                         (service name set in the options, headers given
 *                         to mlt_exporter_otlp_new(), one with a 2000-byte key)
 *   emit richrun N MS W   N traces like `rich` below, one every MS ms; then
 *                         up to W s for what went to the spool to be
 *                         delivered; then shutdown; the result line has
 *                         "ids": [...] (make soak)
 *   emit session          commands on stdin, one JSON line out per command:
 *                           rich N    N traces with everything MLflow's
 *                                     TraceInfo holds (tags, metadata,
 *                                     client_request_id, previews, token
 *                                     usage), 3 spans each -> {"ids": [...]}
 *                           flush MS  -> {"rc": rc, "stats": {...}}
 *                           exit MS   shut down -> the result line below
 * Every mode ends with one JSON line on stdout:
 *   {"traces": {name: trace_id, ...}, "stats": {...}, "ns_per_span": x,
 *    "shutdown_ms": y, "shutdown_rc": z}
 */
#include <mltrace/mltrace.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char ids[16][MLT_TRACE_ID_SIZE];
static const char *names[16];
static int n_ids;

static void remember(const char *name) {
  if (n_ids < 16 && mlt_get_last_active_trace_id(ids[n_ids], sizeof ids[n_ids]) == MLT_OK) names[n_ids++] = name;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the calling thread: the cost of the span calls themselves,
 * insensitive to what else the (2-core) machine is running. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int tool(int x) {
  MLT_TRACE_FUNCTION(MLT_SPAN_TOOL);
  mlt_span_set_inputs_fields(mlt_fn_span, (mlt_attr[]){MLT_ATTR_INT("x", x)}, 1);
  if (x < 0) {
    mlt_span_record_error(mlt_fn_span, "ValueError", "negative");
    return -1;
  }
  mlt_span_set_outputs_json(mlt_fn_span, "{\"y\": 42}");
  return 42;
}

static void function_scope(void) {
  MLT_TRACE_FUNCTION_NAMED("fn_root", MLT_SPAN_AGENT);
  mlt_span_set_inputs_json(mlt_fn_span, "{\"question\": \"What is MLflow?\", \"k\": 2}");
  mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("env", "ci", "suite", "c"),
                                            .metadata = MLT_KV("app.version", "9.9"),
                                            .client_request_id = "req-c-1", .session_id = "s-1",
                                            .user_id = "u-1"));
  {
    MLT_SPAN_SCOPE(r, "block_retrieve", MLT_SPAN_RETRIEVER);
    mlt_span_set_inputs_json(r, "{\"query\": \"mlflow\"}");
    mlt_span_set_outputs_json(r, "[{\"id\": \"d1\"}, {\"id\": \"d2\"}]");
    mlt_span_set_attr_str(r, "db", "vec");
    mlt_span_set_attr_int(r, "k", 2);
    mlt_span_set_attr_double(r, "cut", 0.5);
    mlt_span_set_attr_bool(r, "hit", 1);
    mlt_span_add_event(r, "cache_miss", (mlt_attr[]){MLT_ATTR_STR("key", "mlflow"), MLT_ATTR_INT("n", 3)}, 2);
  }
  tool(1);
  {
    MLT_SPAN_SCOPE(l, "llm_stream", MLT_SPAN_CHAT_MODEL);
    mlt_span_set_inputs_json(l, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"model\": \"m\"}");
    mlt_span_add_chunk_text(l, "Hel", 3);
    mlt_span_add_chunk_text(l, "lo", 2);
    mlt_span_set_attr_json(l, "mlflow.chat.tokenUsage", "{\"input_tokens\": 3, \"output_tokens\": 2, \"total_tokens\": 5}");
  }
  mlt_span_set_outputs_json(mlt_fn_span, "{\"answer\": \"Hello\"}");
}

static void error_path(void) {
  MLT_TRACE_FUNCTION_NAMED("err_root", MLT_SPAN_CHAIN);
  mlt_span_set_inputs_json(mlt_fn_span, "{\"x\": -1}");
  if (tool(-1) < 0) mlt_span_record_error(mlt_fn_span, "RuntimeError", "tool failed");
}

static void client_api(void) {
  mlt_client_span root, child;
  mlt_client_start_trace("client_root", MLT_SPAN_WORKFLOW, "{\"job\": 7}", &root);
  mlt_client_start_span(root.trace_id, root.span_id, "client_child", MLT_SPAN_TASK, "[1, 2]", &child);
  mlt_span_set_attr_str(child.span, "via", "handle");
  mlt_client_end_span(root.trace_id, child.span_id, "3", MLT_STATUS_OK, NULL);
  mlt_client_end_trace(root.trace_id, "{\"done\": true}", MLT_STATUS_OK, NULL);
}

static void print_stats(void) {
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  printf("\"stats\": {\"traces_started\": %llu, \"traces_exported\": %llu, \"traces_failed\": %llu, "
         "\"traces_dropped\": %llu, \"spans_exported\": %llu, \"spans_failed\": %llu, \"export_retries\": %llu, "
         "\"export_requests\": %llu, \"traces_finished\": %llu, \"traces_partial\": %llu, "
         "\"traces_spooled\": %llu, \"traces_replayed\": %llu, \"traces_evicted\": %llu, \"traces_pending\": %llu}",
         (unsigned long long)st.traces_started, (unsigned long long)st.traces_exported,
         (unsigned long long)st.traces_failed, (unsigned long long)st.traces_dropped,
         (unsigned long long)st.spans_exported, (unsigned long long)st.spans_failed,
         (unsigned long long)st.export_retries, (unsigned long long)st.export_requests,
         (unsigned long long)st.traces_finished, (unsigned long long)st.traces_partial,
         (unsigned long long)st.traces_spooled, (unsigned long long)st.traces_replayed,
         (unsigned long long)st.traces_evicted, (unsigned long long)st.traces_pending);
}

static void print_result(double ns_per_span, double shutdown_ms, int rc) {
  printf("{\"traces\": {");
  for (int i = 0; i < n_ids; i++) printf("%s\"%s\": \"%s\"", i ? ", " : "", names[i], ids[i]);
  printf("}, ");
  print_stats();
  printf(", \"ns_per_span\": %.1f, \"shutdown_ms\": %.1f, \"shutdown_rc\": %d}\n", ns_per_span, shutdown_ms, rc);
  fflush(stdout);
}

/* A trace with everything the TraceInfo holds; |i| makes the request id
 * unique. */
static void rich_trace(int i, char *id_out) {
  char req[32];
  snprintf(req, sizeof req, "req-%d", i);
  MLT_SPAN_SCOPE(root, "rich_root", MLT_SPAN_AGENT);
  mlt_span_set_inputs_json(root, "{\"question\": \"What is MLflow?\"}");
  mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("suite", "fault"), .metadata = MLT_KV("app.version", "9.9"),
                                            .client_request_id = req, .session_id = "s-1", .user_id = "u-1"));
  {
    MLT_SPAN_SCOPE(r, "retrieve", MLT_SPAN_RETRIEVER);
    mlt_span_set_outputs_json(r, "[{\"id\": \"d1\"}]");
  }
  {
    MLT_SPAN_SCOPE(l, "llm", MLT_SPAN_CHAT_MODEL);
    mlt_span_set_attr_json(l, "mlflow.chat.tokenUsage", "{\"input_tokens\": 3, \"output_tokens\": 2, \"total_tokens\": 5}");
    mlt_span_set_outputs_json(l, "\"Hello\"");
  }
  mlt_span_set_outputs_json(root, "{\"answer\": \"Hello\"}");
  mlt_span_get_trace_id(root, id_out, MLT_TRACE_ID_SIZE);
}

static int richrun(int n, int ms, int wait_s) {
  char (*tids)[MLT_TRACE_ID_SIZE] = calloc((size_t)n, MLT_TRACE_ID_SIZE);
  if (!tids) return 1;
  for (int i = 0; i < n; i++) {
    rich_trace(i, tids[i]);
    if (ms) usleep((useconds_t)ms * 1000);
  }
  /* What the spool took is delivered in the background once the server
   * answers: give it time before shutting down. */
  double end = now_s() + wait_s;
  for (;;) {
    mlt_flush(2000);
    mlt_stats st;
    mlt_get_stats(&st, sizeof st);
    if (st.traces_replayed >= st.traces_spooled || now_s() >= end) break;
    usleep(500000);
  }
  int timeout = getenv("EMIT_SHUTDOWN_MS") ? atoi(getenv("EMIT_SHUTDOWN_MS")) : 30000;
  double t0 = now_s();
  int rc = mlt_shutdown(timeout);
  double sd = (now_s() - t0) * 1000;
  printf("{\"ids\": [");
  for (int i = 0; i < n; i++) printf("%s\"%s\"", i ? ", " : "", tids[i]);
  printf("], ");
  print_stats();
  printf(", \"shutdown_ms\": %.1f, \"shutdown_rc\": %d}\n", sd, rc);
  fflush(stdout);
  free(tids);
  return 0;
}

static int session(void) {
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    int n = 0;
    if (sscanf(line, "rich %d", &n) == 1) {
      static int seq;
      printf("{\"ids\": [");
      for (int i = 0; i < n; i++) {
        char id[MLT_TRACE_ID_SIZE] = "";
        rich_trace(seq++, id);
        printf("%s\"%s\"", i ? ", " : "", id);
      }
      printf("]}\n");
    } else if (sscanf(line, "flush %d", &n) == 1) {
      int rc = mlt_flush(n);
      printf("{\"rc\": %d, ", rc);
      print_stats();
      printf("}\n");
    } else if (sscanf(line, "exit %d", &n) == 1) {
      double t0 = now_s();
      int rc = mlt_shutdown(n);
      print_result(0, (now_s() - t0) * 1000, rc);
      return 0;
    } else {
      printf("{\"error\": \"bad command\"}\n");
    }
    fflush(stdout);
  }
  return 0;
}

static int init_api_otlp(const char *url) {
  static char headers[2100];
  memset(headers, 'k', 2000);
  snprintf(headers + 2000, sizeof headers - 2000, "=v,x-ok=yes");
  mlt_options *o = NULL;
  mlt_exporter *e = NULL;
  int rc = mlt_options_new(&o);
  if (!rc) rc = mlt_exporter_otlp_new(url, headers, &e);
  if (!rc) rc = mlt_options_add_exporter(o, e);
  if (!rc) rc = mlt_options_set_service_name(o, "svc-from-options");
  if (!rc) rc = mlt_init(o);
  mlt_options_free(o);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  int rc = !strcmp(argv[1], "api_otlp") && argc == 3 ? init_api_otlp(argv[2]) : mlt_init(NULL);
  if (rc != MLT_OK) {
    fprintf(stderr, "mlt_init: %s\n", mlt_strerror(rc));
    return 1;
  }
  double ns = 0;
  if (!strcmp(argv[1], "session")) return session();
  if (!strcmp(argv[1], "richrun") && argc == 5) return richrun(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
  if (!strcmp(argv[1], "all")) {
    function_scope();
    remember("fn_root");
    error_path();
    remember("err_root");
    client_api();
    remember("client_root");
  } else if (!strcmp(argv[1], "steady") && argc == 4) {
    int n = atoi(argv[2]), ms = atoi(argv[3]);
    for (int i = 0; i < n; i++) {
      MLT_SPAN_SCOPE(s, "steady", MLT_SPAN_CHAIN);
      mlt_span_set_attr_int(s, "i", i);
      MLT_SPAN_SCOPE(c, "steady_child", MLT_SPAN_TOOL);
      mlt_span_set_inputs_json(c, "{\"i\": 1}");
      if (ms) usleep((useconds_t)ms * 1000);
    }
  } else if (!strcmp(argv[1], "values") && argc >= 3) {
    {
      MLT_SPAN_SCOPE(root, "values", MLT_SPAN_CHAIN);
      mlt_span_set_inputs_json(root, argv[2]);
      mlt_span_set_outputs_json(root, argv[2]);
      for (int i = 2; i < argc; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", i - 2);
        MLT_SPAN_SCOPE(s, name, MLT_SPAN_TOOL);
        mlt_span_set_inputs_json(s, argv[i]);
        mlt_span_set_outputs_json(s, argv[i]);
        mlt_span_set_attr_json(s, "j", argv[i]);
        mlt_span_set_attr_str(s, "str", "plain");
      }
    }
    remember("values");
  } else if (!strcmp(argv[1], "api_otlp")) {
    MLT_SPAN_SCOPE(s, "api_root", MLT_SPAN_CHAIN);
    mlt_span_set_attr_int(s, "n", 1);
  } else if (!strcmp(argv[1], "big") && argc == 5) {
    int n = atoi(argv[2]), ms = atoi(argv[4]);
    size_t kb = (size_t)atoi(argv[3]);
    char *text = malloc(kb * 1024 + 3); /* a JSON string of KB KiB */
    if (!text) return 1;
    memset(text, 'x', kb * 1024 + 2);
    text[0] = text[kb * 1024 + 1] = '"';
    text[kb * 1024 + 2] = '\0';
    for (int i = 0; i < n; i++) {
      MLT_SPAN_SCOPE(s, "big", MLT_SPAN_CHAIN);
      mlt_span_set_inputs_json(s, text);
      if (ms) usleep((useconds_t)ms * 1000);
    }
    free(text);
  } else if (!strcmp(argv[1], "hot") && argc == 3) {
    long n = atol(argv[2]);
    double t0 = cpu_s();
    for (long i = 0; i < n; i += 5) {
      mlt_span r = mlt_span_start("hot", MLT_SPAN_CHAIN);
      mlt_span_set_attr_str(r, "model", "gpt-x");
      mlt_span_set_attr_int(r, "tokens", 42);
      for (int k = 0; k < 4; k++) {
        mlt_span c = mlt_span_start("hot_child", MLT_SPAN_LLM);
        mlt_span_set_attr_str(c, "model", "gpt-x");
        mlt_span_set_attr_int(c, "tokens", 42);
        mlt_span_end(c);
      }
      mlt_span_end(r);
    }
    ns = (cpu_s() - t0) * 1e9 / (double)n;
  } else {
    return 2;
  }
  int timeout = getenv("EMIT_SHUTDOWN_MS") ? atoi(getenv("EMIT_SHUTDOWN_MS")) : 30000;
  double t0 = now_s();
  rc = mlt_shutdown(timeout);
  print_result(ns, (now_s() - t0) * 1000, rc);
  return 0;
}
