/* tests/bench/bench_event.c: requests/s of the example server
 * (examples/event-rag-server.c: fan-out to 3 worker threads, gather on the
 * loop, chunked reply of ~30 chunks) with and without tracing, driven by a
 * loopback keep-alive client, and the tracing overhead per request.
 *
 * The server runs in a child process (its own loop, workers and export
 * thread); the client runs here.  Prints one "name value unit" line per
 * figure.  BENCH_EVENT_REQUESTS (default 20000) and BENCH_EVENT_CONNS
 * (default 32) size the run.
 */
#define RAG_SERVER_NO_MAIN
#include "../../examples/event-rag-server.c"

#include <errno.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
  struct event_base *base;
  long remaining; /* requests not started yet */
  long inflight;
  long errors;
  int port;
} client;

typedef struct conn {
  client *cl;
  struct evhttp_connection *evcon;
} conn;

static void issue(conn *c);

static void on_reply(struct evhttp_request *req, void *arg) {
  conn *c = arg;
  client *cl = c->cl;
  cl->inflight--;
  if (!req || evhttp_request_get_response_code(req) != 200) cl->errors++;
  if (cl->remaining > 0)
    issue(c);
  else if (cl->inflight == 0)
    event_base_loopbreak(cl->base);
}

static void issue(conn *c) {
  client *cl = c->cl;
  struct evhttp_request *req = evhttp_request_new(on_reply, c);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
  cl->remaining--;
  cl->inflight++;
  if (evhttp_make_request(c->evcon, req, EVHTTP_REQ_GET, "/rag?q=what+is+mlflow") != 0) {
    cl->inflight--;
    cl->errors++;
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run |n| requests over |nconn| keep-alive connections; seconds taken. */
static double drive(int port, long n, int nconn, long *errors) {
  client cl = {.base = event_base_new(), .remaining = n, .port = port};
  conn *cs = calloc((size_t)nconn, sizeof *cs);
  double t0 = now_s();
  for (int i = 0; i < nconn && cl.remaining > 0; i++) {
    cs[i].cl = &cl;
    cs[i].evcon = evhttp_connection_base_new(cl.base, NULL, "127.0.0.1", (ev_uint16_t)port);
    issue(&cs[i]);
  }
  event_base_dispatch(cl.base);
  double dt = now_s() - t0;
  for (int i = 0; i < nconn; i++)
    if (cs[i].evcon) evhttp_connection_free(cs[i].evcon);
  free(cs);
  event_base_free(cl.base);
  *errors += cl.errors;
  return dt;
}

static void report_port(int port, void *arg) {
  int fd = *(int *)arg;
  if (write(fd, &port, sizeof port) != (ssize_t)sizeof port) _exit(3);
  close(fd);
}

/* requests/s of the example server in one mode. */
static double run_mode(int trace, long warmup, long n, int nconn) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    rag_server_config cfg = {.port = 0, .workers = 3, .trace = trace, .discard = 1,
                             .max_requests = warmup + n, .on_listening = report_port, .user_data = &p[1]};
    _exit(rag_server_run(&cfg));
  }
  close(p[1]);
  int port = 0;
  ssize_t got;
  do got = read(p[0], &port, sizeof port);
  while (got < 0 && errno == EINTR);
  close(p[0]);
  if (got != (ssize_t)sizeof port) return -1;
  long errors = 0;
  drive(port, warmup, nconn, &errors);
  double dt = drive(port, n, nconn, &errors);
  int status = 0;
  waitpid(pid, &status, 0);
  if (errors) fprintf(stderr, "bench_event: %ld failed requests\n", errors);
  return errors ? -1 : (double)n / dt;
}

int main(void) {
  long n = getenv("BENCH_EVENT_REQUESTS") ? atol(getenv("BENCH_EVENT_REQUESTS")) : 20000;
  int nconn = getenv("BENCH_EVENT_CONNS") ? atoi(getenv("BENCH_EVENT_CONNS")) : 32;
  if (n < 100) n = 100;
  if (nconn < 1) nconn = 1;
  long warmup = n / 10;
  signal(SIGPIPE, SIG_IGN);
  /* Interleave the modes and keep the best of each, against noise. */
  double plain = 0, traced = 0;
  for (int round = 0; round < 2; round++) {
    double a = run_mode(0, warmup, n, nconn), b = run_mode(1, warmup, n, nconn);
    if (a < 0 || b < 0) return 1;
    if (a > plain) plain = a;
    if (b > traced) traced = b;
  }
  printf("event_server_rps_plain %.0f req/s\n", plain);
  printf("event_server_rps_traced %.0f req/s\n", traced);
  printf("event_overhead_us_per_request %.1f us\n", 1e6 / traced - 1e6 / plain);
  printf("event_overhead_percent %.1f %%\n", 100.0 * (plain - traced) / plain);
  return 0;
}
