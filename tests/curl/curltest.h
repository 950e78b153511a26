/* tests/curl/curltest.h: helpers of the libmltrace_curl tests: the
 * examples/fake-openai server (one per test program, started by main() on
 * port 0 and stopped at exit; it dies with the test program even when that
 * is killed, through PR_SET_PDEATHSIG), a one-shot raw HTTP server that
 * replays SSE fixtures, byte buffers, request bodies. */
#ifndef MLT_TESTS_CURLTEST_H
#define MLT_TESTS_CURLTEST_H

#include <mltrace/curl.h>
#include <mltrace/sse.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "testutil.h"

/* ---- byte buffers ------------------------------------------------------ */

typedef struct ct_buf {
  char *p;
  size_t len, cap;
} ct_buf;

static void ct_add(ct_buf *b, const char *s, size_t n) {
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

/* A write callback appending to a ct_buf. */
static size_t ct_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  ct_add(ud, ptr, size * nmemb);
  return size * nmemb;
}

/* ---- the fake OpenAI server -------------------------------------------- */

static pid_t ct_fake_pid;
static int ct_fake_port;
static char ct_url[256];

/* Start examples/fake-openai (from $top_builddir) and read its port.
 * Returns 0, or -1 (then the tests skip). */
static int ct_fake_start(void) {
  char path[4096];
  const char *bd = getenv("top_builddir");
  snprintf(path, sizeof path, "%s/examples/fake-openai", bd && *bd ? bd : ".");
  if (access(path, X_OK) != 0) {
    printf("# fake-openai not found at %s (set top_builddir)\n", path);
    return -1;
  }
  int pfd[2];
  if (pipe(pfd) != 0) return -1;
  pid_t parent = getpid();
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* no orphan if the test program dies */
    if (getppid() != parent) _exit(1);
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    execl(path, path, "--host", "127.0.0.1", "--port", "0", "--quiet", (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  ct_fake_pid = pid;
  char line[256];
  size_t n = 0;
  struct pollfd p = {pfd[0], POLLIN, 0};
  while (n < sizeof line - 1 && poll(&p, 1, 10000) > 0) {
    ssize_t r = read(pfd[0], line + n, 1);
    if (r <= 0 || line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  close(pfd[0]);
  const char *colon = strrchr(line, ':');
  ct_fake_port = colon ? atoi(colon + 1) : 0;
  if (ct_fake_port <= 0) {
    printf("# fake-openai did not report a port: \"%s\"\n", line);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ct_fake_pid = 0;
    return -1;
  }
  snprintf(ct_url, sizeof ct_url, "http://127.0.0.1:%d/v1/chat/completions", ct_fake_port);
  return 0;
}

static void ct_fake_stop(void) {
  if (ct_fake_pid <= 0) return;
  kill(ct_fake_pid, SIGTERM);
  int st;
  for (int i = 0; i < 500; i++) { /* 5 s, then SIGKILL */
    if (waitpid(ct_fake_pid, &st, WNOHANG) == ct_fake_pid) {
      ct_fake_pid = 0;
      return;
    }
    usleep(10000);
  }
  kill(ct_fake_pid, SIGKILL);
  waitpid(ct_fake_pid, &st, 0);
  ct_fake_pid = 0;
}

#define NEED_FAKE()                                                                           \
  do {                                                                                        \
    if (ct_fake_port <= 0) TAP_SKIP("examples/fake-openai is not available");                 \
  } while (0)

/* ---- request bodies ---------------------------------------------------- */

/* {"model":"m","stream":S,[stream_options],"messages":[{"role":"user","content":MSG}]} */
static char *ct_body(const char *msg, int stream, int include_usage) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "model", "test-model");
  if (stream) cJSON_AddBoolToObject(req, "stream", 1);
  if (include_usage) cJSON_AddBoolToObject(cJSON_AddObjectToObject(req, "stream_options"), "include_usage", 1);
  cJSON *msgs = cJSON_AddArrayToObject(req, "messages");
  cJSON *sys = cJSON_CreateObject(), *m = cJSON_CreateObject();
  cJSON_AddStringToObject(sys, "role", "system");
  cJSON_AddStringToObject(sys, "content", "Be brief.");
  cJSON_AddStringToObject(m, "role", "user");
  cJSON_AddStringToObject(m, "content", msg);
  cJSON_AddItemToArray(msgs, sys);
  cJSON_AddItemToArray(msgs, m);
  char *t = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  return t;
}

/* An easy handle aimed at the fake server. */
static CURL *ct_easy(void) {
  CURL *h = curl_easy_init();
  REQUIRE(h != NULL);
  curl_easy_setopt(h, CURLOPT_URL, ct_url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
  return h;
}

/* The assembled chat.completion of raw SSE bytes, by a fresh aggregator. */
static char *ct_assemble(const char *bytes, size_t len) {
  mlt_chat_stream *s = NULL;
  REQUIRE(mlt_chat_stream_new(&s) == MLT_OK);
  mlt_chat_stream_feed(s, bytes, len);
  mlt_chat_stream_finish(s);
  char *r = mlt_chat_stream_result_json(s, NULL);
  mlt_chat_stream_free(s);
  return r;
}

/* ---- a raw HTTP server replaying one canned response per connection ---- */

typedef struct ct_raw {
  int fd, port;
  pthread_t th;
  char *response; /* the whole HTTP response */
  size_t response_len;
  int connections; /* how many to serve */
  int delay_ms;    /* between the headers and the body */
  ct_buf last_request;
} ct_raw;

static void *ct_raw_main(void *arg) {
  ct_raw *s = arg;
  for (int i = 0; i < s->connections; i++) {
    int c = accept(s->fd, NULL, NULL);
    if (c < 0) break;
    ct_buf req = {0};
    char tmp[4096];
    size_t need = (size_t)-1;
    while (req.len < need) {
      ssize_t r = read(c, tmp, sizeof tmp);
      if (r <= 0) break;
      ct_add(&req, tmp, (size_t)r);
      char *eoh = strstr(req.p, "\r\n\r\n");
      if (eoh && need == (size_t)-1) {
        const char *cl = strcasestr(req.p, "content-length:");
        need = (size_t)(eoh + 4 - req.p) + (cl && cl < eoh ? (size_t)atol(cl + 15) : 0);
      }
    }
    const char *body = strstr(s->response, "\r\n\r\n");
    size_t hlen = body ? (size_t)(body + 4 - s->response) : s->response_len;
    ssize_t w = write(c, s->response, hlen);
    if (s->delay_ms) usleep((useconds_t)s->delay_ms * 1000);
    if (w >= 0 && hlen < s->response_len) w = write(c, s->response + hlen, s->response_len - hlen);
    (void)w;
    free(s->last_request.p);
    s->last_request = req;
    close(c);
  }
  return NULL;
}

/* Serve @p connections connections with an HTTP response of status line
 * @p status, Content-Type @p ctype and the given body (close-delimited). */
static void ct_raw_start(ct_raw *s, const char *status, const char *ctype, const char *body, size_t body_len,
                         int connections) {
  memset(s, 0, sizeof *s);
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(s->fd >= 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(s->fd, (struct sockaddr *)&a, sizeof a) == 0);
  REQUIRE(listen(s->fd, 16) == 0);
  socklen_t al = sizeof a;
  getsockname(s->fd, (struct sockaddr *)&a, &al);
  s->port = ntohs(a.sin_port);
  ct_buf r = {0};
  char head[512];
  int n = snprintf(head, sizeof head, "HTTP/1.1 %s\r\nContent-Type: %s\r\nConnection: close\r\n\r\n", status, ctype);
  ct_add(&r, head, (size_t)n);
  ct_add(&r, body, body_len);
  s->response = r.p;
  s->response_len = r.len;
  s->connections = connections;
  REQUIRE(pthread_create(&s->th, NULL, ct_raw_main, s) == 0);
}

static void ct_raw_stop(ct_raw *s) {
  shutdown(s->fd, SHUT_RDWR);
  pthread_join(s->th, NULL);
  close(s->fd);
  free(s->response);
  free(s->last_request.p);
}

/* Contents of tests/data/sse/<name> ($MLT_TEST_DATA). */
static char *ct_fixture(const char *name, size_t *len) {
  char path[4096];
  const char *d = getenv("MLT_TEST_DATA");
  snprintf(path, sizeof path, "%s/sse/%s", d && *d ? d : "tests/data", name);
  FILE *f = fopen(path, "rb");
  if (!f) tap_diag("cannot open %s (set MLT_TEST_DATA)", path);
  REQUIRE(f != NULL);
  ct_buf b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) ct_add(&b, tmp, n);
  fclose(f);
  if (!b.p) ct_add(&b, "", 0);
  *len = b.len;
  return b.p;
}

/* ---- trace helpers ----------------------------------------------------- */

static int ct_nevents_named(cJSON *span, const char *prefix) {
  int n = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(span, "events")) {
    const char *name = tu_str(e, "name");
    if (name && strncmp(name, prefix, strlen(prefix)) == 0) n++;
  }
  return n;
}

static cJSON *ct_event(cJSON *span, const char *name) {
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(span, "events")) {
    const char *n = tu_str(e, "name");
    if (n && strcmp(n, name) == 0) return e;
  }
  return NULL;
}

static const char *ct_status_code(cJSON *span) { return tu_str(cJSON_GetObjectItem(span, "status"), "code"); }
static const char *ct_status_msg(cJSON *span) { return tu_str(cJSON_GetObjectItem(span, "status"), "message"); }

#endif /* MLT_TESTS_CURLTEST_H */
