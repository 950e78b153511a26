/* tests/bench/otlp-sink.c: a minimal HTTP sink for export benchmarks.
 *
 * Answers every POST/PUT with 200 and an empty body after reading it, and
 * counts requests and bytes: what our exporters cost with a receiver that
 * costs nothing.  `--delay-ms D` answers each request D ms late (a slow
 * server); `--port P` binds port P (default: any free port).  Prints
 * `listening on 127.0.0.1:PORT` once bound; on SIGTERM or SIGINT prints
 * `requests N bytes N` and exits.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long g_requests, g_bytes;
static int g_delay_ms;

static void reply(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct evhttp_request *req = arg;
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/x-protobuf");
  evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_request(struct evhttp_request *req, void *arg) {
  struct event_base *base = arg;
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  g_requests++;
  g_bytes += evbuffer_get_length(in);
  evbuffer_drain(in, evbuffer_get_length(in));
  if (g_delay_ms > 0) {
    struct timeval tv = {g_delay_ms / 1000, (g_delay_ms % 1000) * 1000};
    event_base_once(base, -1, EV_TIMEOUT, reply, req, &tv);
  } else {
    reply(-1, 0, req);
  }
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig;
  (void)what;
  event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i++) {
    if (!strcmp(argv[i], "--delay-ms")) g_delay_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[++i]);
  }
  struct event_base *base = event_base_new();
  struct evhttp *http = evhttp_new(base);
  evhttp_set_gencb(http, on_request, base);
  evhttp_set_max_body_size(http, 256u << 20);
  struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port);
  if (!s) {
    fprintf(stderr, "otlp-sink: cannot bind\n");
    return 1;
  }
  struct sockaddr_storage ss;
  ev_socklen_t len = sizeof ss;
  getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &len);
  printf("listening on 127.0.0.1:%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
  struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
  event_add(sigterm, NULL);
  event_add(sigint, NULL);
  event_base_dispatch(base);
  printf("requests %llu bytes %llu\n", g_requests, g_bytes);
  event_free(sigterm);
  event_free(sigint);
  evhttp_free(http);
  event_base_free(base);
  return 0;
}
