/* integrations/curl/loop.c: a curl multi handle driven by a libevent
 * event_base (curl's multi_socket API: one struct event per socket, one
 * timer), running traced calls.  See <mltrace/curl.h>.
 *
 * Each call is found from its easy handle through CURLOPT_PRIVATE, and
 * carries its own span and contexts: nothing here is thread-local.
 *
 * libcurl refuses curl_multi_add_handle() and curl_multi_remove_handle()
 * from inside its own callbacks (CURLM_RECURSIVE_API_CALL), and the write
 * and delta callbacks run inside curl (curl_multi_socket_action(), or
 * curl_easy_pause() called by the application).  in_curl counts both;
 * adds, cancellations and frees requested meanwhile are queued and done by
 * a zero-delay "reap" event right after.  mlt_curl_loop_free() from inside
 * one of our event callbacks is deferred until the outermost one returns
 * (depth counter).
 */
#include "curl-internal.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

typedef struct sock_ev {
  struct event *ev;
  curl_socket_t fd;
  struct sock_ev *prev, *next;
} sock_ev;

struct mlt_curl_loop {
  struct event_base *base;
  CURLM *multi;
  struct event *timer; /* curl's timeout */
  struct event *reap;  /* deferred adds and cancellations */
  mlt_curl_call *calls, *calls_tail; /* calls the loop owns, in order added */
  size_t ncalls;
  sock_ev *socks;
  int depth;   /* >0 inside one of our event callbacks or API calls */
  int in_curl; /* >0 inside curl_multi_socket_action() */
  int closing; /* free requested or in progress */
};

/* ---- bookkeeping ------------------------------------------------------ */

static void link_call(mlt_curl_loop *loop, mlt_curl_call *c) {
  c->loop = loop;
  c->prev = loop->calls_tail;
  c->next = NULL;
  if (loop->calls_tail)
    loop->calls_tail->next = c;
  else
    loop->calls = c;
  loop->calls_tail = c;
  loop->ncalls++;
}

static void unlink_call(mlt_curl_loop *loop, mlt_curl_call *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    loop->calls = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    loop->calls_tail = c->prev;
  c->prev = c->next = NULL;
  loop->ncalls--;
}

static void arm_reap(mlt_curl_loop *loop) {
  static const struct timeval zero = {0, 0};
  event_add(loop->reap, &zero);
}

static void do_free(mlt_curl_loop *loop);

static void enter(mlt_curl_loop *loop) { loop->depth++; }

/* Leave one level; the last one out performs a requested free.  @p loop
 * must not be used after this returns. */
static void leave(mlt_curl_loop *loop) {
  if (--loop->depth == 0 && loop->closing && !loop->in_curl) do_free(loop);
}

void mlt__curl_loop_enter_write(mlt_curl_loop *loop) { loop->in_curl++; }

void mlt__curl_loop_leave_write(mlt_curl_loop *loop) { loop->in_curl--; }

/* Remove @p c from the loop, end it, and hand it to its done callback (with
 * the parent context attached).  Runs outside curl's callbacks. */
static void finish_call(mlt_curl_loop *loop, mlt_curl_call *c, CURLcode result, const char *cancel_msg) {
  unlink_call(loop, c);
  if (c->in_multi) {
    curl_multi_remove_handle(loop->multi, c->easy);
    c->in_multi = 0;
  }
  c->pending_add = c->cancel_pending = 0;
  int status = mlt__curl_call_complete(c, result, cancel_msg);
  c->loop = NULL;
  c->in_done = 1;
  mlt_attach_token tok = mlt_context_attach(c->parent);
  c->done_fn(c, status, c->done_ud);
  if (tok.depth_) mlt_context_detach(tok);
  c->in_done = 0;
  if (c->free_requested) mlt__curl_call_destroy(c);
}

/* Hand every finished transfer to finish_call(). */
static void drain(mlt_curl_loop *loop) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(loop->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURLcode result = msg->data.result; /* msg dies with remove_handle */
    mlt_curl_call *c = mlt_curl_call_from_easy(msg->easy_handle);
    if (c && c->loop == loop && c->in_multi) finish_call(loop, c, result, NULL);
  }
}

/* ---- curl's callbacks ------------------------------------------------- */

static void event_cb(evutil_socket_t fd, short kind, void *arg);

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)easy;
  mlt_curl_loop *loop = userp;
  sock_ev *se = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (se) {
      event_free(se->ev);
      if (se->prev)
        se->prev->next = se->next;
      else
        loop->socks = se->next;
      if (se->next) se->next->prev = se->prev;
      free(se);
      curl_multi_assign(loop->multi, s, NULL);
    }
    return 0;
  }
  short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
  if (!se) {
    se = calloc(1, sizeof *se);
    if (!se) return -1;
    se->ev = event_new(loop->base, s, kind, event_cb, loop);
    if (!se->ev) {
      free(se);
      return -1;
    }
    se->fd = s;
    se->next = loop->socks;
    if (loop->socks) loop->socks->prev = se;
    loop->socks = se;
    curl_multi_assign(loop->multi, s, se);
  } else {
    event_del(se->ev);
    event_assign(se->ev, loop->base, s, kind, event_cb, loop);
  }
  return event_add(se->ev, NULL) == 0 ? 0 : -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  mlt_curl_loop *loop = userp;
  if (timeout_ms < 0) {
    evtimer_del(loop->timer);
    return 0;
  }
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  return evtimer_add(loop->timer, &tv) == 0 ? 0 : -1;
}

static void socket_action(mlt_curl_loop *loop, curl_socket_t fd, int action) {
  int running = 0;
  loop->in_curl++;
  curl_multi_socket_action(loop->multi, fd, action, &running);
  loop->in_curl--;
  drain(loop);
}

/* ---- libevent's callbacks --------------------------------------------- */

static void event_cb(evutil_socket_t fd, short kind, void *arg) {
  mlt_curl_loop *loop = arg;
  int action = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
  enter(loop);
  socket_action(loop, (curl_socket_t)fd, action);
  leave(loop);
}

static void timer_ev_cb(evutil_socket_t fd, short kind, void *arg) {
  (void)fd, (void)kind;
  mlt_curl_loop *loop = arg;
  enter(loop);
  socket_action(loop, CURL_SOCKET_TIMEOUT, 0);
  leave(loop);
}

/* Deferred work: cancellations, then adds.  The lists change under us
 * (done callbacks add and cancel), so each round rescans from the head. */
static void reap_cb(evutil_socket_t fd, short kind, void *arg) {
  (void)fd, (void)kind;
  mlt_curl_loop *loop = arg;
  enter(loop);
  for (;;) {
    mlt_curl_call *c = loop->calls;
    while (c && !c->cancel_pending) c = c->next;
    if (!c) break;
    finish_call(loop, c, CURLE_ABORTED_BY_CALLBACK, "transfer cancelled");
  }
  for (;;) {
    mlt_curl_call *c = loop->calls;
    while (c && !c->pending_add) c = c->next;
    if (!c || loop->closing) break;
    c->pending_add = 0;
    if (curl_multi_add_handle(loop->multi, c->easy) == CURLM_OK)
      c->in_multi = 1;
    else
      finish_call(loop, c, CURLE_FAILED_INIT, NULL);
  }
  leave(loop);
}

/* ---- public API ------------------------------------------------------- */

int mlt_curl_loop_new(struct event_base *base, mlt_curl_loop **out) {
  if (out) *out = NULL;
  if (!base || !out) return MLT_EINVAL;
  mlt_curl_loop *loop = calloc(1, sizeof *loop);
  if (!loop) return MLT_ENOMEM;
  loop->base = base;
  loop->multi = curl_multi_init();
  loop->timer = evtimer_new(base, timer_ev_cb, loop);
  loop->reap = evtimer_new(base, reap_cb, loop);
  int rc = loop->multi && loop->timer && loop->reap ? MLT_OK : MLT_EIO;
  if (!rc && (curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
              curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, (void *)loop) != CURLM_OK ||
              curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
              curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, (void *)loop) != CURLM_OK))
    rc = MLT_EIO;
  if (rc) {
    if (loop->multi) curl_multi_cleanup(loop->multi);
    if (loop->timer) event_free(loop->timer);
    if (loop->reap) event_free(loop->reap);
    free(loop);
    return rc;
  }
  *out = loop;
  return MLT_OK;
}

static void do_free(mlt_curl_loop *loop) {
  loop->closing = 1;
  loop->depth++; /* done callbacks below must not free again */
  while (loop->calls) finish_call(loop, loop->calls, CURLE_ABORTED_BY_CALLBACK, "loop freed before the transfer completed");
  curl_multi_cleanup(loop->multi); /* may still call socket_cb/timer_cb */
  while (loop->socks) {
    sock_ev *se = loop->socks;
    loop->socks = se->next;
    event_free(se->ev);
    free(se);
  }
  event_free(loop->timer);
  event_free(loop->reap);
  free(loop);
}

void mlt_curl_loop_free(mlt_curl_loop *loop) {
  if (!loop) return;
  loop->closing = 1; /* do_free() runs with depth > 0: no recursion */
  if (loop->depth == 0 && loop->in_curl == 0)
    do_free(loop);
  else if (loop->depth == 0)
    arm_reap(loop); /* inside curl, outside our callbacks: the reap frees */
}

CURLM *mlt_curl_loop_multi(const mlt_curl_loop *loop) { return loop ? loop->multi : NULL; }

size_t mlt_curl_loop_count(const mlt_curl_loop *loop) { return loop ? loop->ncalls : 0; }

int mlt_curl_loop_add(mlt_curl_loop *loop, mlt_curl_call *call, mlt_curl_done_fn done, void *user_data) {
  if (!loop || !call || !done || call->performed || call->done || call->loop || call->in_done) return MLT_EINVAL;
  if (loop->closing) return MLT_EENDED;
  if (!loop->in_curl) {
    if (curl_multi_add_handle(loop->multi, call->easy) != CURLM_OK) return MLT_EIO;
    call->in_multi = 1;
  } else {
    call->pending_add = 1;
    arm_reap(loop);
  }
  call->performed = 1;
  call->done_fn = done;
  call->done_ud = user_data;
  link_call(loop, call);
  return MLT_OK;
}

int mlt_curl_loop_cancel(mlt_curl_call *call) {
  if (!call) return MLT_EINVAL;
  if (call->done || call->in_done || call->cancel_pending) return MLT_EENDED;
  mlt_curl_loop *loop = call->loop;
  if (!loop) return MLT_EINVAL;
  call->cancelled = 1; /* the write path rejects further bytes */
  if (loop->in_curl) {
    call->cancel_pending = 1;
    arm_reap(loop);
    return MLT_OK;
  }
  enter(loop);
  finish_call(loop, call, CURLE_ABORTED_BY_CALLBACK, "transfer cancelled");
  leave(loop);
  return MLT_OK;
}

void mlt__curl_loop_free_call(mlt_curl_call *call) {
  call->free_requested = 1;
  if (call->cancel_pending) return; /* the reap event ends and frees it */
  mlt_curl_loop_cancel(call);
}
