/* tests/proxy/proxytest.h: helpers of the chat proxy test: child processes
 * (examples/fake-openai and examples/chat-proxy, started on port 0; they
 * die with the process that started them, through PR_SET_PDEATHSIG, and are
 * killed at exit()), libevent HTTP clients that keep the exact bytes they
 * receive, a raw socket client that can hang up mid-reply, and the JSONL
 * trace store read back with cJSON. */
#ifndef MLT_TESTS_PROXYTEST_H
#define MLT_TESTS_PROXYTEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "tap.h"

/* ---- byte buffers ------------------------------------------------------ */

typedef struct pt_buf {
  char *p;
  size_t len, cap;
} pt_buf;

static void pt_add(pt_buf *b, const void *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void pt_add_str(pt_buf *b, const char *s) { pt_add(b, s, strlen(s)); }

static void pt_buf_free(pt_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* The test's time limit scaled as tap.h scales it (valgrind runs). */
static int pt_mult(void) {
  const char *e = getenv("TAP_TIMEOUT_MULTIPLIER");
  return e && atoi(e) > 0 ? atoi(e) : 1;
}

static double pt_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---- child processes --------------------------------------------------- */

/* Children to kill at exit(), each with the pid of the process that
 * started it (the registration is inherited by tap.h's forked tests). */
typedef struct pt_child {
  pid_t pid, owner;
} pt_child;
static pt_child pt_children[16];

static void pt_kill_children(void) {
  for (size_t i = 0; i < sizeof pt_children / sizeof *pt_children; i++) {
    if (pt_children[i].pid > 0 && pt_children[i].owner == getpid()) {
      kill(pt_children[i].pid, SIGKILL);
      waitpid(pt_children[i].pid, NULL, 0);
      pt_children[i].pid = 0;
    }
  }
}

static void pt_track(pid_t pid, int on) {
  for (size_t i = 0; i < sizeof pt_children / sizeof *pt_children; i++) {
    if (on && pt_children[i].pid <= 0) {
      pt_children[i].pid = pid;
      pt_children[i].owner = getpid();
      return;
    }
    if (!on && pt_children[i].pid == pid) {
      pt_children[i].pid = 0;
      return;
    }
  }
}

/* "$top_builddir/<rel>" into @p out; 0 if it is executable. */
static int pt_program(const char *rel, char *out, size_t size) {
  const char *bd = getenv("top_builddir");
  snprintf(out, size, "%s/%s", bd && *bd ? bd : ".", rel);
  return access(out, X_OK);
}

/**
 * Start @p argv (argv[0] the program's path) with stdout on a pipe, and
 * wait for its "listening on ADDR:PORT" line.  The environment is the
 * test's without any exporter setting, plus MLTRACE_FILE=@p trace_file when
 * given.  With @p wrap, $MLT_PROXY_WRAPPER (e.g. "valgrind -q
 * --error-exitcode=99") is put in front.
 * @return the pid (port in *port), or -1.
 */
static pid_t pt_spawn(const char *const *argv, const char *trace_file, int wrap, int *port) {
  int pfd[2];
  *port = 0;
  if (pipe(pfd) != 0) return -1;
  pid_t parent = getpid();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan if the test dies */
    if (getppid() != parent) _exit(1);
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    static const char *const drop[] = {"MLFLOW_TRACKING_URI", "OTEL_EXPORTER_OTLP_ENDPOINT",
                                       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "MLFLOW_TRACING_ENABLED",
                                       "MLFLOW_TRACE_SAMPLING_RATIO", "OPENAI_API_KEY", "MLTRACE_FILE"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) unsetenv(drop[i]);
    if (trace_file) setenv("MLTRACE_FILE", trace_file, 1);
    const char *args[64];
    size_t n = 0;
    char *wrapper = wrap && getenv("MLT_PROXY_WRAPPER") ? strdup(getenv("MLT_PROXY_WRAPPER")) : NULL;
    char *save = NULL;
    for (char *w = wrapper ? strtok_r(wrapper, " ", &save) : NULL; w && n < 32; w = strtok_r(NULL, " ", &save))
      args[n++] = w;
    for (size_t i = 0; argv[i] && n < 63; i++) args[n++] = argv[i];
    args[n] = NULL;
    execvp(args[0], (char *const *)args);
    _exit(127);
  }
  close(pfd[1]);
  pt_track(pid, 1);
  char line[256];
  size_t n = 0;
  double deadline = pt_now_ms() + 20000.0 * pt_mult();
  struct pollfd p = {pfd[0], POLLIN, 0};
  while (n < sizeof line - 1 && pt_now_ms() < deadline) {
    int r = poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t k = read(pfd[0], line + n, 1);
    if (k <= 0 || line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  close(pfd[0]);
  const char *colon = strrchr(line, ':');
  if (strncmp(line, "listening on ", 13) != 0 || !colon || atoi(colon + 1) <= 0) {
    tap_diag("%s did not report a port: \"%s\"", argv[0], line);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pt_track(pid, 0);
    return -1;
  }
  *port = atoi(colon + 1);
  return pid;
}

/* Send @p sig (0: none) to @p pid and wait up to @p timeout_ms for it to
 * exit (then SIGKILL it).
 * @return its exit status, 128+signal when killed, or -1 on timeout. */
static int pt_stop(pid_t pid, int sig, int timeout_ms) {
  if (pid <= 0) return -1;
  if (sig) kill(pid, sig);
  int st = 0;
  double deadline = pt_now_ms() + (double)timeout_ms * pt_mult();
  while (pt_now_ms() < deadline) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      pt_track(pid, 0);
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    usleep(5000);
  }
  tap_diag("pid %d did not stop within %d ms", (int)pid, timeout_ms);
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  pt_track(pid, 0);
  return -1;
}

/* ---- libevent clients -------------------------------------------------- */

typedef struct pt_client pt_client;

typedef struct pt_batch {
  struct event_base *base;
  int left;     /* requests not finished */
  int timed_out;
} pt_batch;

struct pt_client {
  pt_batch *batch;
  struct evhttp_connection *conn;
  int code;         /* HTTP status; 0 when none arrived */
  int failed;       /* the connection failed before the reply was complete */
  int finished;     /* the done callback ran */
  int chunk_calls;  /* chunk callbacks so far */
  pt_buf body;      /* every body byte received, in order */
  char trace_id[64];
  char content_type[64];
  void (*on_chunk)(pt_client *c, void *arg); /* optional hook */
  void *hook_arg;
};

static void pt_capture_headers(pt_client *c, struct evhttp_request *req) {
  if (c->code) return;
  c->code = evhttp_request_get_response_code(req);
  struct evkeyvalq *h = evhttp_request_get_input_headers(req);
  const char *tid = evhttp_find_header(h, "X-Trace-Id");
  const char *ct = evhttp_find_header(h, "Content-Type");
  snprintf(c->trace_id, sizeof c->trace_id, "%s", tid ? tid : "");
  snprintf(c->content_type, sizeof c->content_type, "%s", ct ? ct : "");
}

static int pt_on_headers(struct evhttp_request *req, void *arg) {
  pt_capture_headers(arg, req);
  return 0;
}

static void pt_drain_into(pt_client *c, struct evhttp_request *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(in);
  if (!n) return;
  pt_add(&c->body, evbuffer_pullup(in, (ev_ssize_t)n), n);
  evbuffer_drain(in, n);
}

static void pt_on_chunk(struct evhttp_request *req, void *arg) {
  pt_client *c = arg;
  pt_capture_headers(c, req);
  pt_drain_into(c, req);
  c->chunk_calls++;
  if (c->on_chunk) c->on_chunk(c, c->hook_arg);
}

static void pt_on_done(struct evhttp_request *req, void *arg) {
  pt_client *c = arg;
  if (c->finished) return;
  c->finished = 1;
  if (req && evhttp_request_get_response_code(req) > 0) {
    pt_capture_headers(c, req);
    pt_drain_into(c, req);
  } else {
    c->failed = 1;
  }
  if (--c->batch->left == 0) event_base_loopbreak(c->batch->base);
}

static void pt_on_error(enum evhttp_request_error err, void *arg) {
  pt_client *c = arg;
  (void)err;
  c->failed = 1;
}

/**
 * Start one request on a connection of its own.  @p headers: "Name",
 * "value", ..., NULL.  @p body may be NULL.
 */
static void pt_request(pt_batch *b, pt_client *c, int port, enum evhttp_cmd_type method, const char *path,
                       const char *body, const char *const *headers) {
  c->batch = b;
  c->conn = evhttp_connection_base_new(b->base, NULL, "127.0.0.1", (ev_uint16_t)port);
  REQUIRE(c->conn != NULL);
  evhttp_connection_set_timeout(c->conn, 30 * pt_mult());
  struct evhttp_request *req = evhttp_request_new(pt_on_done, c);
  REQUIRE(req != NULL);
  evhttp_request_set_header_cb(req, pt_on_headers);
  evhttp_request_set_chunked_cb(req, pt_on_chunk);
  evhttp_request_set_error_cb(req, pt_on_error);
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  evhttp_add_header(out, "Host", "127.0.0.1");
  for (size_t i = 0; headers && headers[i]; i += 2) evhttp_add_header(out, headers[i], headers[i + 1]);
  if (body) {
    evhttp_add_header(out, "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
  }
  REQUIRE(evhttp_make_request(c->conn, req, method, path) == 0);
  b->left++;
}

static void pt_on_batch_timeout(evutil_socket_t fd, short what, void *arg) {
  pt_batch *b = arg;
  (void)fd, (void)what;
  b->timed_out = 1;
  event_base_loopbreak(b->base);
}

/* Run the loop until every request of @p b finished (or @p timeout_s). */
static void pt_run(pt_batch *b, int timeout_s) {
  struct timeval tv = {timeout_s * pt_mult(), 0};
  struct event *t = evtimer_new(b->base, pt_on_batch_timeout, b);
  evtimer_add(t, &tv);
  if (b->left > 0) event_base_dispatch(b->base);
  event_free(t);
  if (b->timed_out) tap_diag("%d request(s) still unfinished after %d s", b->left, timeout_s);
}

static void pt_client_free(pt_client *c) {
  if (c->conn) evhttp_connection_free(c->conn);
  c->conn = NULL;
  pt_buf_free(&c->body);
}

/* ---- a raw client that hangs up when it wants ------------------------- */

static int pt_raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                           .sin_port = htons((uint16_t)port)};
  REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  return fd;
}

/* POST @p body to /v1/chat/completions with extra @p headers ("Name",
 * "value", ..., NULL). */
static void pt_raw_post(int fd, const char *body, const char *const *headers) {
  pt_buf r = {0};
  char line[512];
  snprintf(line, sizeof line,
           "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\n",
           strlen(body));
  pt_add_str(&r, line);
  for (size_t i = 0; headers && headers[i]; i += 2) {
    snprintf(line, sizeof line, "%s: %s\r\n", headers[i], headers[i + 1]);
    pt_add_str(&r, line);
  }
  pt_add_str(&r, "\r\n");
  pt_add_str(&r, body);
  REQUIRE(send(fd, r.p, r.len, 0) == (ssize_t)r.len);
  pt_buf_free(&r);
}

/* Read into @p b until it contains @p needle.  @return 0, or -1 on EOF or
 * after @p timeout_ms. */
static int pt_raw_read_until(int fd, pt_buf *b, const char *needle, int timeout_ms) {
  double deadline = pt_now_ms() + (double)timeout_ms * pt_mult();
  while (!(b->p && strstr(b->p, needle))) {
    int left = (int)(deadline - pt_now_ms());
    if (left <= 0) return -1;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    char tmp[4096];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return -1;
    pt_add(b, tmp, (size_t)n);
  }
  return 0;
}

/* The body bytes of a (possibly unfinished) chunked HTTP response. */
static void pt_dechunk(const char *raw, size_t len, pt_buf *out) {
  const char *p = raw ? strstr(raw, "\r\n\r\n") : NULL;
  const char *end = raw + len;
  if (!p) return;
  p += 4;
  while (p < end) {
    char *after;
    unsigned long n = strtoul(p, &after, 16);
    const char *data = strstr(after, "\r\n");
    if (!data || n == 0) return;
    data += 2;
    if (data + n > end) n = (unsigned long)(end - data);
    pt_add(out, data, n);
    p = data + n + 2;
  }
}

/* ---- the JSONL trace store -------------------------------------------- */

typedef struct pt_store {
  char *text;      /* the whole file */
  cJSON *trace[256];
  int n;
  cJSON *keep[4096]; /* decoded attributes, freed with the store */
  int nkeep;
} pt_store;

static void pt_store_read(pt_store *s, const char *path) {
  memset(s, 0, sizeof *s);
  FILE *f = fopen(path, "rb");
  pt_buf b = {0};
  if (f) {
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) pt_add(&b, tmp, n);
    fclose(f);
  }
  pt_add(&b, "", 0);
  s->text = b.p;
  char *copy = strdup(s->text), *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    cJSON *t = cJSON_Parse(line);
    if (!t) tap_diag("not JSON: %.200s", line);
    REQUIRE(t != NULL);
    REQUIRE(s->n < (int)(sizeof s->trace / sizeof *s->trace));
    s->trace[s->n++] = t;
  }
  free(copy);
}

static void pt_store_free(pt_store *s) {
  for (int i = 0; i < s->n; i++) cJSON_Delete(s->trace[i]);
  for (int i = 0; i < s->nkeep; i++) cJSON_Delete(s->keep[i]);
  free(s->text);
  memset(s, 0, sizeof *s);
}

static const char *pt_str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *pt_info(cJSON *trace) { return cJSON_GetObjectItemCaseSensitive(trace, "info"); }
static cJSON *pt_spans(cJSON *trace) {
  return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(trace, "data"), "spans");
}
static const char *pt_meta(cJSON *trace, const char *key) {
  return pt_str(cJSON_GetObjectItemCaseSensitive(pt_info(trace), "trace_metadata"), key);
}

/* The raw (JSON-encoded) attribute of a span. */
static const char *pt_attr(const cJSON *span, const char *key) {
  return pt_str(cJSON_GetObjectItemCaseSensitive(span, "attributes"), key);
}

/* A JSON text decoded (kept until pt_store_free()); NULL for NULL. */
static cJSON *pt_decode(pt_store *s, const char *json) {
  if (!json) return NULL;
  cJSON *j = cJSON_Parse(json);
  if (j && s->nkeep < (int)(sizeof s->keep / sizeof *s->keep)) s->keep[s->nkeep++] = j;
  return j;
}

static const char *pt_status_code(const cJSON *span) {
  return pt_str(cJSON_GetObjectItemCaseSensitive(span, "status"), "code");
}
static const char *pt_status_msg(const cJSON *span) {
  const char *m = pt_str(cJSON_GetObjectItemCaseSensitive(span, "status"), "message");
  return m ? m : "";
}

/* The root span (parent_span_id null) of a trace. */
static cJSON *pt_root(cJSON *trace) {
  cJSON *s;
  cJSON_ArrayForEach(s, pt_spans(trace)) {
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "parent_span_id"))) return s;
  }
  return NULL;
}

/* The first span whose parent is @p parent. */
static cJSON *pt_child_span(cJSON *trace, const cJSON *parent) {
  const char *id = pt_str(parent, "span_id");
  cJSON *s;
  cJSON_ArrayForEach(s, pt_spans(trace)) {
    const char *pid = pt_str(s, "parent_span_id");
    if (id && pid && strcmp(pid, id) == 0) return s;
  }
  return NULL;
}

/* Number of events of @p span whose name starts with @p prefix. */
static int pt_nevents(const cJSON *span, const char *prefix) {
  int n = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(span, "events")) {
    const char *name = pt_str(e, "name");
    if (name && strncmp(name, prefix, strlen(prefix)) == 0) n++;
  }
  return n;
}

static double pt_duration_ms(const cJSON *span) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(span, "start_time_unix_nano");
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(span, "end_time_unix_nano");
  return cJSON_IsNumber(a) && cJSON_IsNumber(b) ? (b->valuedouble - a->valuedouble) / 1e6 : -1;
}

/* The decoded outputs of a span when they are a string, else NULL. */
static const char *pt_output_text(pt_store *s, const cJSON *span) {
  cJSON *o = pt_decode(s, pt_attr(span, "mlflow.spanOutputs"));
  return cJSON_IsString(o) ? o->valuestring : NULL;
}

/* choices[0].message.content of the LLM span's outputs (a chat.completion). */
static const char *pt_llm_content(pt_store *s, const cJSON *span) {
  cJSON *o = pt_decode(s, pt_attr(span, "mlflow.spanOutputs"));
  cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
  return pt_str(cJSON_GetObjectItemCaseSensitive(c0, "message"), "content");
}

static int pt_prefix_of(const char *prefix, const char *s) {
  return prefix && s && strncmp(prefix, s, strlen(prefix)) == 0;
}

#endif /* MLT_TESTS_PROXYTEST_H */
