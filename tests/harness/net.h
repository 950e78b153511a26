/* tests/harness/net.h: loopback sockets for the tests (127.0.0.1 only):
 * a listening socket on a free port, a connected client, a port nobody
 * listens on, a one-shot raw HTTP server replaying a canned response on a
 * thread of its own, and a raw HTTP client that can hang up whenever the
 * test wants (send a request, read until a marker, de-chunk a reply).
 * Header-only; failures to set a socket up end the test (REQUIRE). */
#ifndef MLT_TESTS_HARNESS_NET_H
#define MLT_TESTS_HARNESS_NET_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "tap.h"

/* A socket listening on 127.0.0.1, port chosen by the kernel (in *port),
 * blocking, with the given accept backlog. */
static inline int th_listen_loopback(int backlog, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
  REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  REQUIRE(listen(fd, backlog) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

/* A blocking TCP connection to 127.0.0.1:@p port. */
static inline int th_connect_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                           .sin_port = htons((uint16_t)port)};
  REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  return fd;
}

/* A port of 127.0.0.1 nobody listens on (bound, read and closed again). */
static inline int th_unused_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
  close(fd);
  return ntohs(sa.sin_port);
}

/* ---- a raw HTTP server replaying one canned response per connection ---- */

typedef struct th_raw_server {
  int fd, port;
  pthread_t th;
  char *response; /* the whole HTTP response */
  size_t response_len;
  int connections; /* how many to serve */
  int delay_ms;    /* between the headers and the body */
  th_buf last_request;
} th_raw_server;

static inline void *th_raw_server__main(void *arg) {
  th_raw_server *s = arg;
  for (int i = 0; i < s->connections; i++) {
    int c = accept(s->fd, NULL, NULL);
    if (c < 0) break;
    th_buf req = {0};
    char tmp[4096];
    size_t need = (size_t)-1;
    while (req.len < need) {
      ssize_t r = read(c, tmp, sizeof tmp);
      if (r <= 0) break;
      th_buf_add(&req, tmp, (size_t)r);
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
 * @p status, Content-Type @p ctype and the given body (close-delimited).
 * Set s->delay_ms after this call to pause between headers and body. */
static inline void th_raw_server_start(th_raw_server *s, const char *status, const char *ctype, const char *body,
                                       size_t body_len, int connections) {
  memset(s, 0, sizeof *s);
  s->fd = th_listen_loopback(16, &s->port);
  th_buf r = {0};
  char head[512];
  int n = snprintf(head, sizeof head, "HTTP/1.1 %s\r\nContent-Type: %s\r\nConnection: close\r\n\r\n", status, ctype);
  th_buf_add(&r, head, (size_t)n);
  th_buf_add(&r, body, body_len);
  s->response = r.p;
  s->response_len = r.len;
  s->connections = connections;
  REQUIRE(pthread_create(&s->th, NULL, th_raw_server__main, s) == 0);
}

static inline void th_raw_server_stop(th_raw_server *s) {
  shutdown(s->fd, SHUT_RDWR);
  pthread_join(s->th, NULL);
  close(s->fd);
  free(s->response);
  free(s->last_request.p);
}

/* ---- a raw client that hangs up when it wants ------------------------- */

/* Send "@p method @p path HTTP/1.1" with Host, a JSON @p body (may be NULL)
 * and the extra @p headers ("Name", "value", ..., NULL) on @p fd. */
static inline void th_raw_send(int fd, const char *method, const char *path, const char *body,
                               const char *const *headers) {
  th_buf r = {0};
  th_buf_printf(&r, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, path);
  if (body) th_buf_printf(&r, "Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body));
  for (size_t i = 0; headers && headers[i]; i += 2) th_buf_printf(&r, "%s: %s\r\n", headers[i], headers[i + 1]);
  th_buf_str(&r, "\r\n");
  if (body) th_buf_str(&r, body);
  REQUIRE(send(fd, r.p, r.len, 0) == (ssize_t)r.len);
  th_buf_free(&r);
}

/* Read from @p fd into @p b until it contains @p needle.  @return 0, or -1
 * on EOF or after @p timeout_ms (scaled by tap_multiplier()). */
static inline int th_raw_read_until(int fd, th_buf *b, const char *needle, int timeout_ms) {
  double deadline = th_now_ms() + (double)timeout_ms * tap_multiplier();
  while (!(b->p && strstr(b->p, needle))) {
    int left = (int)(deadline - th_now_ms());
    if (left <= 0) return -1;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    char tmp[4096];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return -1;
    th_buf_add(b, tmp, (size_t)n);
  }
  return 0;
}

/* The body bytes of a (possibly unfinished) chunked HTTP response. */
static inline void th_dechunk(const char *raw, size_t len, th_buf *out) {
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
    th_buf_add(out, data, n);
    p = data + n + 2;
  }
}

#endif /* MLT_TESTS_HARNESS_NET_H */
