/* integrations/event/evloop.c: callbacks on an event_base under a captured
 * context (deferred, timer, cross-thread), and bufferevent callbacks. */
#include <mltrace/event.h>

#include <pthread.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <event2/thread.h>

/* Run |fn| the way every callback here runs: |ctx| attached (NULL attaches
 * "no context", masking anything an outer caller left), optionally inside a
 * child span that is current for the call, detached afterwards. */
static void run_attached(mlt_context *ctx, const char *span_name, void (*fn)(void *), void *arg) {
  mlt_attach_token tok = mlt_context_attach(ctx);
  mlt_span sp = MLT_SPAN_NONE;
  if (span_name) sp = mlt_span_start(span_name, MLT_SPAN_TASK);
  fn(arg);
  mlt_span_end(sp);
  if (tok.depth_) mlt_context_detach(tok);
}

/* A holding reference on |ctx|, or on this thread's current context. */
static mlt_context *hold_for(mlt_context *ctx) {
  if (ctx) return mlt_context_hold(ctx);
  mlt_context *cur = mlt_context_current();
  if (!cur) return NULL;
  mlt_context *h = mlt_context_hold(cur);
  mlt_context_release(cur);
  return h;
}

/* ==== mlt_evloop ====================================================== */

enum { TASK_PENDING = 0, TASK_RUNNING = 1 };

struct mlt_evtask {
  mlt_evloop *loop;
  mlt_context *ctx; /* holding reference, or NULL */
  const char *span_name;
  mlt_evloop_fn fn;
  void *user_data;
  struct mlt_evtask *prev, *next; /* timer tasks: the loop's pending list;
                                     calls: the queue (next only) */
  struct event *ev;               /* timer tasks: storage after the struct */
  int state;
  int status; /* for run_task() */
};

struct mlt_evloop {
  struct event_base *base;
  struct event *wake; /* user event activated by mlt_evloop_call() */
  mlt_evtask *timers; /* pending deferred/timer tasks (loop thread only) */
  int closing;        /* loop thread: mlt_evloop_free() in progress */
  pthread_mutex_t mu; /* guards the fields below */
  mlt_evtask *q_head, *q_tail;
  int wake_pending;
  int q_closed;
};

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* One allocation: the task, the struct event (timers), the span name. */
static mlt_evtask *task_new(mlt_evloop *loop, mlt_context *ctx, const char *span_name, mlt_evloop_fn fn,
                            void *user_data, int with_event) {
  size_t off_ev = round_up(sizeof(mlt_evtask), alignof(max_align_t));
  size_t ev_size = with_event ? round_up(event_get_struct_event_size(), alignof(max_align_t)) : 0;
  size_t name_len = span_name ? strlen(span_name) + 1 : 0;
  char *mem = malloc(off_ev + ev_size + name_len);
  if (!mem) return NULL;
  mlt_evtask *t = (mlt_evtask *)mem;
  memset(t, 0, sizeof *t);
  t->loop = loop;
  t->fn = fn;
  t->user_data = user_data;
  t->ev = with_event ? (struct event *)(mem + off_ev) : NULL;
  if (span_name) {
    char *name = mem + off_ev + ev_size;
    memcpy(name, span_name, name_len);
    t->span_name = name;
  }
  t->ctx = hold_for(ctx);
  return t;
}

static void task_call(void *p) {
  mlt_evtask *t = p;
  t->fn(t->status, t->user_data);
}

/* Run a task once with |status|, release its context, free it. */
static void task_finish(mlt_evtask *t, int status) {
  t->state = TASK_RUNNING;
  t->status = status;
  if (status == MLT_OK)
    run_attached(t->ctx, t->span_name, task_call, t);
  else
    run_attached(NULL, NULL, task_call, t);
  mlt_context_release(t->ctx);
  free(t);
}

static void timers_unlink(mlt_evloop *loop, mlt_evtask *t) {
  if (t->prev)
    t->prev->next = t->next;
  else
    loop->timers = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

static void timer_fired(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  mlt_evtask *t = arg;
  timers_unlink(t->loop, t);
  task_finish(t, MLT_OK);
}

/* Loop thread: run every queued cross-thread call. */
static void drain_calls(mlt_evloop *loop, int status) {
  pthread_mutex_lock(&loop->mu);
  mlt_evtask *t = loop->q_head;
  loop->q_head = loop->q_tail = NULL;
  loop->wake_pending = 0;
  pthread_mutex_unlock(&loop->mu);
  while (t) {
    mlt_evtask *next = t->next;
    task_finish(t, status);
    t = next;
  }
}

static void wake_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  drain_calls(arg, MLT_OK);
}

int mlt_evloop_new(struct event_base *base, mlt_evloop **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!base) return MLT_EINVAL;
  mlt_evloop *loop = calloc(1, sizeof *loop);
  if (!loop) return MLT_ENOMEM;
  loop->base = base;
  if (pthread_mutex_init(&loop->mu, NULL) != 0) {
    free(loop);
    return MLT_ENOMEM;
  }
  /* Harmless when threads are not enabled (then only loop-thread calls
   * are safe, which the documentation says). */
  (void)evthread_make_base_notifiable(base);
  loop->wake = event_new(base, -1, 0, wake_cb, loop);
  if (!loop->wake) {
    pthread_mutex_destroy(&loop->mu);
    free(loop);
    return MLT_EIO;
  }
  *out = loop;
  return MLT_OK;
}

void mlt_evloop_free(mlt_evloop *loop) {
  if (!loop) return;
  loop->closing = 1;
  /* Refuse new cross-thread calls; a call in progress finishes its push and
   * event_active() under the mutex before we get it. */
  pthread_mutex_lock(&loop->mu);
  loop->q_closed = 1;
  pthread_mutex_unlock(&loop->mu);
  while (loop->timers) {
    mlt_evtask *t = loop->timers;
    timers_unlink(loop, t);
    event_del(t->ev);
    task_finish(t, MLT_EVENT_CANCELLED);
  }
  drain_calls(loop, MLT_EVENT_CANCELLED);
  event_free(loop->wake);
  pthread_mutex_destroy(&loop->mu);
  free(loop);
}

struct event_base *mlt_evloop_get_base(const mlt_evloop *loop) { return loop ? loop->base : NULL; }

int mlt_evloop_after(mlt_evloop *loop, mlt_context *ctx, const struct timeval *delay, const char *span_name,
                     mlt_evloop_fn fn, void *user_data, mlt_evtask **task) {
  if (task) *task = NULL;
  if (!loop || !fn) return MLT_EINVAL;
  if (delay && (delay->tv_sec < 0 || delay->tv_usec < 0)) return MLT_EINVAL;
  if (loop->closing) return MLT_EENDED;
  mlt_evtask *t = task_new(loop, ctx, span_name, fn, user_data, 1);
  if (!t) return MLT_ENOMEM;
  static const struct timeval zero = {0, 0};
  if (event_assign(t->ev, loop->base, -1, 0, timer_fired, t) != 0 || event_add(t->ev, delay ? delay : &zero) != 0) {
    mlt_context_release(t->ctx);
    free(t);
    return MLT_EIO;
  }
  t->next = loop->timers;
  if (t->next) t->next->prev = t;
  loop->timers = t;
  if (task) *task = t;
  return MLT_OK;
}

int mlt_evloop_defer(mlt_evloop *loop, mlt_context *ctx, const char *span_name, mlt_evloop_fn fn, void *user_data,
                     mlt_evtask **task) {
  return mlt_evloop_after(loop, ctx, NULL, span_name, fn, user_data, task);
}

int mlt_evtask_cancel(mlt_evtask *t) {
  if (!t) return MLT_EINVAL;
  if (t->state == TASK_RUNNING) return MLT_EENDED;
  timers_unlink(t->loop, t);
  event_del(t->ev);
  task_finish(t, MLT_EVENT_CANCELLED);
  return MLT_OK;
}

int mlt_evloop_call(mlt_evloop *loop, mlt_context *ctx, const char *span_name, mlt_evloop_fn fn, void *user_data) {
  if (!loop || !fn) return MLT_EINVAL;
  mlt_evtask *t = task_new(loop, ctx, span_name, fn, user_data, 0);
  if (!t) return MLT_ENOMEM;
  pthread_mutex_lock(&loop->mu);
  if (loop->q_closed) {
    pthread_mutex_unlock(&loop->mu);
    mlt_context_release(t->ctx);
    free(t);
    return MLT_EENDED;
  }
  if (loop->q_tail)
    loop->q_tail->next = t;
  else
    loop->q_head = t;
  loop->q_tail = t;
  /* One wake-up per batch.  event_active() stays under the mutex so that
   * mlt_evloop_free(), which takes it first, never frees the event under a
   * caller still using it. */
  if (!loop->wake_pending) {
    loop->wake_pending = 1;
    event_active(loop->wake, EV_READ, 1);
  }
  pthread_mutex_unlock(&loop->mu);
  return MLT_OK;
}

/* ==== bufferevent callbacks ========================================== */

typedef struct bev_closure {
  mlt_context *ctx; /* holding reference, or NULL */
  char *span_name;
  bufferevent_data_cb readcb, writecb;
  bufferevent_event_cb eventcb;
  void *arg;
  int entered; /* callbacks in progress */
  int dead;    /* released while entered: freed when the last returns */
} bev_closure;

typedef struct bev_call {
  bev_closure *c;
  struct bufferevent *bev;
  int kind; /* 0 read, 1 write, 2 event */
  short what;
  bufferevent_data_cb data_cb;
  bufferevent_event_cb event_cb;
  void *arg;
} bev_call;

static const char *const kind_names[] = {"read", "write", "event"};

static void closure_free(bev_closure *c) {
  mlt_context_release(c->ctx);
  free(c->span_name);
  free(c);
}

static void bev_invoke(void *p) {
  bev_call *call = p;
  mlt_span cur = call->c->span_name ? mlt_current_span() : MLT_SPAN_NONE;
  if (!mlt_span_is_none(cur)) mlt_span_set_attr_str(cur, "mltrace.event.kind", kind_names[call->kind]);
  if (call->kind == 2)
    call->event_cb(call->bev, call->what, call->arg);
  else
    call->data_cb(call->bev, call->arg);
}

static void bev_dispatch(bev_closure *c, struct bufferevent *bev, int kind, short what) {
  bev_call call = {c, bev, kind, what, kind == 0 ? c->readcb : c->writecb, c->eventcb, c->arg};
  if (kind == 2 ? !call.event_cb : !call.data_cb) return;
  c->entered++;
  run_attached(c->ctx, c->span_name, bev_invoke, &call);
  if (--c->entered == 0 && c->dead) closure_free(c);
}

static void bev_read_tramp(struct bufferevent *bev, void *p) { bev_dispatch(p, bev, 0, 0); }
static void bev_write_tramp(struct bufferevent *bev, void *p) { bev_dispatch(p, bev, 1, 0); }
static void bev_event_tramp(struct bufferevent *bev, short what, void *p) { bev_dispatch(p, bev, 2, what); }

/* Our closure on |bev|, or NULL. */
static bev_closure *closure_of(struct bufferevent *bev) {
  bufferevent_data_cb r = NULL, w = NULL;
  bufferevent_event_cb e = NULL;
  void *arg = NULL;
  bufferevent_getcb(bev, &r, &w, &e, &arg);
  if (r == bev_read_tramp || w == bev_write_tramp || e == bev_event_tramp) return arg;
  return NULL;
}

static void closure_release(bev_closure *c) {
  if (!c) return;
  if (c->entered)
    c->dead = 1;
  else
    closure_free(c);
}

int mlt_bufferevent_setcb(struct bufferevent *bev, mlt_context *ctx, const char *span_name,
                          bufferevent_data_cb readcb, bufferevent_data_cb writecb, bufferevent_event_cb eventcb,
                          void *cbarg) {
  if (!bev) return MLT_EINVAL;
  bev_closure *old = closure_of(bev);
  if (!readcb && !writecb && !eventcb) {
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    closure_release(old);
    return MLT_OK;
  }
  bev_closure *c = calloc(1, sizeof *c);
  if (!c) return MLT_ENOMEM;
  if (span_name && !(c->span_name = strdup(span_name))) {
    free(c);
    return MLT_ENOMEM;
  }
  c->ctx = hold_for(ctx);
  c->readcb = readcb;
  c->writecb = writecb;
  c->eventcb = eventcb;
  c->arg = cbarg;
  bufferevent_setcb(bev, readcb ? bev_read_tramp : NULL, writecb ? bev_write_tramp : NULL,
                    eventcb ? bev_event_tramp : NULL, c);
  closure_release(old);
  return MLT_OK;
}

void mlt_bufferevent_free(struct bufferevent *bev) {
  if (!bev) return;
  bev_closure *c = closure_of(bev);
  bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
  closure_release(c);
  bufferevent_free(bev);
}
