/* tests/event/test_example.c: run the example server
 * (examples/event-rag-server.c) in a child process with the file store, send
 * it requests over loopback, and check the traces it wrote: one per request,
 * retrieval spans from the workers and the generate span under the request
 * span, and the streamed output equal to what the client received. */
#define RAG_SERVER_NO_MAIN
#include "../../examples/event-rag-server.c"

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jsonl.h"
#include "tap.h"

#define N_CLIENT 8

typedef struct got {
  int code;
  char body[2048];
} got;

static int g_left;
static struct event_base *g_base;

static void on_reply(struct evhttp_request *req, void *arg) {
  got *g = arg;
  if (req) {
    g->code = evhttp_request_get_response_code(req);
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(b);
    if (n >= sizeof g->body) n = sizeof g->body - 1;
    evbuffer_remove(b, g->body, n);
    g->body[n] = '\0';
  }
  if (--g_left == 0) event_base_loopbreak(g_base);
}

static void report_port(int port, void *arg) {
  int fd = *(int *)arg;
  if (write(fd, &port, sizeof port) != (ssize_t)sizeof port) _exit(3);
  close(fd);
}

TEST(example_server_traces_each_request) {
  char path[] = "/tmp/mlt-event-example-XXXXXX";
  int tmp = mkstemp(path);
  REQUIRE(tmp >= 0);
  close(tmp);
  unlink(path);
  int p[2];
  REQUIRE(pipe(p) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    setenv("MLTRACE_FILE", path, 1);
    unsetenv("MLFLOW_TRACKING_URI");
    unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    rag_server_config cfg = {.port = 0, .workers = 2, .trace = 1, .max_requests = N_CLIENT,
                             .on_listening = report_port, .user_data = &p[1]};
    _exit(rag_server_run(&cfg));
  }
  close(p[1]);
  int port = 0;
  ssize_t n;
  do n = read(p[0], &port, sizeof port);
  while (n < 0 && errno == EINTR);
  close(p[0]);
  REQUIRE(n == (ssize_t)sizeof port);

  g_base = event_base_new();
  static got g[N_CLIENT];
  struct evhttp_connection *conns[N_CLIENT];
  g_left = N_CLIENT;
  for (int i = 0; i < N_CLIENT; i++) {
    conns[i] = evhttp_connection_base_new(g_base, NULL, "127.0.0.1", (ev_uint16_t)port);
    struct evhttp_request *req = evhttp_request_new(on_reply, &g[i]);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    char uri[64];
    snprintf(uri, sizeof uri, "/rag?q=question+%d%s", i, i % 2 ? "+x" : "");
    REQUIRE(evhttp_make_request(conns[i], req, EVHTTP_REQ_GET, uri) == 0);
  }
  event_base_dispatch(g_base);
  for (int i = 0; i < N_CLIENT; i++) evhttp_connection_free(conns[i]);
  event_base_free(g_base);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid); /* it stops after N_CLIENT replies */
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  tu_jsonl st;
  tu_jsonl_read(&st, path);
  unlink(path);
  int traces = 0, matched = 0;
  for (int k = 0; k < st.n; k++) {
    cJSON *t = st.trace[k];
    traces++;
    cJSON *spans = tu_spans(t);
    CHECK_EQ_INT(cJSON_GetArraySize(spans), 5);
    cJSON *root = NULL, *s;
    cJSON_ArrayForEach(s, spans) if (strcmp(tu_str(s, "name"), "GET /rag") == 0) root = s;
    REQUIRE(root != NULL);
    int retrieves = 0, generates = 0;
    cJSON_ArrayForEach(s, spans) {
      const char *name = tu_str(s, "name");
      if (strncmp(name, "retrieve.shard-", 15) == 0) retrieves++;
      if (strcmp(name, "generate") == 0) generates++;
      if (s != root) CHECK_EQ_STR(tu_str(s, "parent_span_id"), tu_str(root, "span_id"));
    }
    CHECK_EQ_INT(retrieves, 3);
    CHECK_EQ_INT(generates, 1);
    cJSON *out = tu_jsonl_decode(&st, tu_attr(root, "mlflow.spanOutputs"));
    cJSON *in = tu_jsonl_decode(&st, tu_attr(root, "mlflow.spanInputs"));
    REQUIRE(cJSON_IsString(out) && in != NULL);
    for (int i = 0; i < N_CLIENT; i++) {
      char uri[64];
      snprintf(uri, sizeof uri, "/rag?q=question+%d%s", i, i % 2 ? "+x" : "");
      if (strcmp(tu_str(in, "uri"), uri) != 0) continue;
      CHECK_EQ_INT(g[i].code, 200);
      CHECK_EQ_STR(out->valuestring, g[i].body);
      matched++;
    }
  }
  CHECK_EQ_INT(traces, N_CLIENT);
  CHECK_EQ_INT(matched, N_CLIENT);
  tu_jsonl_free(&st);
}

static const tap_test tests[] = {
    TAP_ENTRY(example_server_traces_each_request),
    TAP_END,
};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
