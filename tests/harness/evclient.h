/* tests/harness/evclient.h: libevent HTTP/1.1 clients for the tests, one
 * connection each, run as a batch on one event_base: every body byte kept
 * in order as it arrives (chunked replies too), the status, X-Trace-Id and
 * Content-Type headers, whether the connection failed before the reply was
 * complete, and an optional hook per chunk (to hang up mid-stream, say).
 * Header-only. */
#ifndef MLT_TESTS_HARNESS_EVCLIENT_H
#define MLT_TESTS_HARNESS_EVCLIENT_H

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "buf.h"
#include "tap.h"

typedef struct th_client th_client;

typedef struct th_batch {
  struct event_base *base;
  int left;     /* requests not finished */
  int timed_out;
} th_batch;

struct th_client {
  th_batch *batch;
  struct evhttp_connection *conn;
  int code;         /* HTTP status; 0 when none arrived */
  int failed;       /* the connection failed before the reply was complete */
  int finished;     /* the done callback ran */
  int chunk_calls;  /* chunk callbacks so far */
  th_buf body;      /* every body byte received, in order */
  char trace_id[64];
  char content_type[64];
  void (*on_chunk)(th_client *c, void *arg); /* optional hook */
  void *hook_arg;
};

static inline void th__capture_headers(th_client *c, struct evhttp_request *req) {
  if (c->code) return;
  c->code = evhttp_request_get_response_code(req);
  struct evkeyvalq *h = evhttp_request_get_input_headers(req);
  const char *tid = evhttp_find_header(h, "X-Trace-Id");
  const char *ct = evhttp_find_header(h, "Content-Type");
  snprintf(c->trace_id, sizeof c->trace_id, "%s", tid ? tid : "");
  snprintf(c->content_type, sizeof c->content_type, "%s", ct ? ct : "");
}

static inline int th__on_headers(struct evhttp_request *req, void *arg) {
  th__capture_headers(arg, req);
  return 0;
}

static inline void th__drain_into(th_client *c, struct evhttp_request *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(in);
  if (!n) return;
  th_buf_add(&c->body, evbuffer_pullup(in, (ev_ssize_t)n), n);
  evbuffer_drain(in, n);
}

static inline void th__on_chunk(struct evhttp_request *req, void *arg) {
  th_client *c = arg;
  th__capture_headers(c, req);
  th__drain_into(c, req);
  c->chunk_calls++;
  if (c->on_chunk) c->on_chunk(c, c->hook_arg);
}

static inline void th__on_done(struct evhttp_request *req, void *arg) {
  th_client *c = arg;
  if (c->finished) return;
  c->finished = 1;
  if (req && evhttp_request_get_response_code(req) > 0) {
    th__capture_headers(c, req);
    th__drain_into(c, req);
  } else {
    c->failed = 1;
  }
  if (--c->batch->left == 0) event_base_loopbreak(c->batch->base);
}

static inline void th__on_error(enum evhttp_request_error err, void *arg) {
  th_client *c = arg;
  (void)err;
  c->failed = 1;
}

/**
 * Start one request on a connection of its own.  @p headers: "Name",
 * "value", ..., NULL.  @p body may be NULL.
 */
static inline void th_request(th_batch *b, th_client *c, int port, enum evhttp_cmd_type method, const char *path,
                       const char *body, const char *const *headers) {
  c->batch = b;
  c->conn = evhttp_connection_base_new(b->base, NULL, "127.0.0.1", (ev_uint16_t)port);
  REQUIRE(c->conn != NULL);
  evhttp_connection_set_timeout(c->conn, 30 * tap_multiplier());
  struct evhttp_request *req = evhttp_request_new(th__on_done, c);
  REQUIRE(req != NULL);
  evhttp_request_set_header_cb(req, th__on_headers);
  evhttp_request_set_chunked_cb(req, th__on_chunk);
  evhttp_request_set_error_cb(req, th__on_error);
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

static inline void th__on_batch_timeout(evutil_socket_t fd, short what, void *arg) {
  th_batch *b = arg;
  (void)fd, (void)what;
  b->timed_out = 1;
  event_base_loopbreak(b->base);
}

/* Run the loop until every request of @p b finished (or @p timeout_s). */
static inline void th_run(th_batch *b, int timeout_s) {
  struct timeval tv = {timeout_s * tap_multiplier(), 0};
  struct event *t = evtimer_new(b->base, th__on_batch_timeout, b);
  evtimer_add(t, &tv);
  if (b->left > 0) event_base_dispatch(b->base);
  event_free(t);
  if (b->timed_out) tap_diag("%d request(s) still unfinished after %d s", b->left, timeout_s);
}

static inline void th_client_free(th_client *c) {
  if (c->conn) evhttp_connection_free(c->conn);
  c->conn = NULL;
  th_buf_free(&c->body);
}

#endif /* MLT_TESTS_HARNESS_EVCLIENT_H */
