/* tests/event/test_evloop.c: callbacks on an event_base under a captured
 * context: deferred, timer, cross-thread, cancellation, loop free,
 * bufferevents; the loop thread keeps no context between callbacks. */
#include <mltrace/event.h>

#include <pthread.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/thread.h>

#include "testutil.h"

/* ---- helpers ---------------------------------------------------------- */

static char *trace_id_of(const mlt_context *c) {
  static char buf[8][MLT_TRACE_ID_SIZE];
  static int i;
  char *b = buf[i++ % 8];
  if (!c || mlt_context_get_trace_id(c, b, MLT_TRACE_ID_SIZE) != MLT_OK) strcpy(b, "(none)");
  return b;
}

/* The trace id of this thread's current context, "(none)" without one. */
static const char *current_trace_id(void) {
  mlt_context *c = mlt_context_current();
  const char *id = trace_id_of(c);
  mlt_context_release(c);
  return id;
}

static void assert_no_context(void) {
  mlt_context *c = mlt_context_current();
  CHECK(c == NULL);
  mlt_context_release(c);
  CHECK(mlt_span_is_none(mlt_current_span()));
}

typedef struct probe {
  int calls;
  int status;
  char trace_id[MLT_TRACE_ID_SIZE];
  int had_current_span;
} probe;

static void probe_cb(int status, void *arg) {
  probe *p = arg;
  p->calls++;
  p->status = status;
  snprintf(p->trace_id, sizeof p->trace_id, "%s", current_trace_id());
  p->had_current_span = !mlt_span_is_none(mlt_current_span());
  if (status == MLT_OK) {
    mlt_span s = mlt_span_start("inside", MLT_SPAN_TOOL); /* child of the context (or of the task span) */
    mlt_span_end(s);
  }
}

/* ---- deferred and timer callbacks ------------------------------------ */

TEST(defer_runs_later_under_context_and_holds_trace) {
  tu_init();
  struct event_base *base = event_base_new();
  mlt_evloop *loop = NULL;
  REQUIRE_EQ_INT(mlt_evloop_new(base, &loop), MLT_OK);
  CHECK(mlt_evloop_get_base(loop) == base);
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  mlt_context *ctx = mlt_context_capture(root);
  char want[MLT_TRACE_ID_SIZE];
  snprintf(want, sizeof want, "%s", trace_id_of(ctx));
  probe p = {0};
  REQUIRE_EQ_INT(mlt_evloop_defer(loop, ctx, NULL, probe_cb, &p, NULL), MLT_OK);
  CHECK_EQ_INT(p.calls, 0); /* never inside the call */
  mlt_context_release(ctx);
  mlt_span_end(root);
  CHECK_EQ_INT(tu_flush_count(), 0); /* held open for the callback */
  assert_no_context();
  event_base_dispatch(base);
  CHECK_EQ_INT(p.calls, 1);
  CHECK_EQ_INT(p.status, MLT_OK);
  CHECK_EQ_STR(p.trace_id, want);
  CHECK_EQ_INT(p.had_current_span, 0);
  assert_no_context();
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_INT(tu_nspans(t), 2);
  CHECK_EQ_STR(tu_str(tu_span(t, "inside"), "parent_span_id"), tu_str(tu_span(t, "root"), "span_id"));
  mlt_evloop_free(loop);
  event_base_free(base);
  tu_done();
}

TEST(defer_captures_current_context_and_child_span) {
  tu_init();
  struct event_base *base = event_base_new();
  mlt_evloop *loop = NULL;
  REQUIRE_EQ_INT(mlt_evloop_new(base, &loop), MLT_OK);
  probe p = {0};
  {
    MLT_SPAN_SCOPE(root, "root", MLT_SPAN_CHAIN);
    REQUIRE_EQ_INT(mlt_evloop_defer(loop, NULL, "step", probe_cb, &p, NULL), MLT_OK);
  }
  event_base_dispatch(base);
  CHECK_EQ_INT(p.calls, 1);
  CHECK_EQ_INT(p.had_current_span, 1);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  REQUIRE_EQ_INT(tu_nspans(t), 3);
  cJSON *step = tu_span(t, "step");
  REQUIRE(step != NULL);
  CHECK_EQ_STR(tu_attr(step, "mlflow.spanType"), "\"TASK\"");
  CHECK_EQ_STR(tu_str(step, "parent_span_id"), tu_str(tu_span(t, "root"), "span_id"));
  CHECK_EQ_STR(tu_str(tu_span(t, "inside"), "parent_span_id"), tu_str(step, "span_id"));
  mlt_evloop_free(loop);
  event_base_free(base);
  tu_done();
}

typedef struct order_log {
  char seq[16];
  int n;
} order_log;

static void log_a(int status, void *arg) {
  order_log *l = arg;
  (void)status;
  l->seq[l->n++] = 'A';
}
static void log_b(int status, void *arg) {
  order_log *l = arg;
  (void)status;
  l->seq[l->n++] = 'B';
}
static void log_t(int status, void *arg) {
  order_log *l = arg;
  CHECK_EQ_INT(status, MLT_OK);
  l->seq[l->n++] = 'T';
}

TEST(timer_fires_after_deferred_and_without_context) {
  tu_init();
  struct event_base *base = event_base_new();
  mlt_evloop *loop = NULL;
  REQUIRE_EQ_INT(mlt_evloop_new(base, &loop), MLT_OK);
  order_log l = {{0}, 0};
  struct timeval d = {0, 20000};
  REQUIRE_EQ_INT(mlt_evloop_after(loop, NULL, &d, NULL, log_t, &l, NULL), MLT_OK);
  REQUIRE_EQ_INT(mlt_evloop_defer(loop, NULL, NULL, log_a, &l, NULL), MLT_OK);
  REQUIRE_EQ_INT(mlt_evloop_defer(loop, NULL, NULL, log_b, &l, NULL), MLT_OK);
  struct timeval neg = {-1, 0};
  CHECK_EQ_INT(mlt_evloop_after(loop, NULL, &neg, NULL, log_t, &l, NULL), MLT_EINVAL);
  event_base_dispatch(base);
  CHECK_EQ_INT(l.n, 3);
  CHECK(l.seq[2] == 'T'); /* the deferred ones first (same iteration, any order) */
  mlt_evloop_free(loop);
  event_base_free(base);
  CHECK_EQ_INT(tu_flush_count(), 0);
  tu_done();
}

/* ---- cancellation and loop free -------------------------------------- */

static mlt_evtask *g_self;
static int g_self_cancel_rc = 1;
static void cancel_self(int status, void *arg) {
  (void)arg;
  (void)status;
  g_self_cancel_rc = mlt_evtask_cancel(g_self);
}

TEST(cancel_runs_callback_once_with_cancelled_and_releases_hold) {
  tu_init();
  struct event_base *base = event_base_new();
  mlt_evloop *loop = NULL;
  REQUIRE_EQ_INT(mlt_evloop_new(base, &loop), MLT_OK);
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  mlt_context *ctx = mlt_context_capture(root);
  probe p = {0};
  mlt_evtask *task = NULL;
  struct timeval d = {30, 0};
  REQUIRE_EQ_INT(mlt_evloop_after(loop, ctx, &d, "never", probe_cb, &p, &task), MLT_OK);
  REQUIRE(task != NULL);
  mlt_span_end(root);
  mlt_context_release(ctx);
  CHECK_EQ_INT(tu_flush_count(), 0);
  /* Cancelled from inside another span's attach: the callback sees none. */
  mlt_span other = mlt_span_start("other", MLT_SPAN_CHAIN);
  CHECK_EQ_INT(mlt_evtask_cancel(task), MLT_OK);
  mlt_span_end(other);
  CHECK_EQ_INT(p.calls, 1);
  CHECK_EQ_INT(p.status, MLT_EVENT_CANCELLED);
  CHECK_EQ_STR(p.trace_id, "(none)");
  CHECK_EQ_INT(p.had_current_span, 0);
  CHECK_EQ_INT(tu_flush_count(), 2); /* hold released: root's trace done */
  CHECK_EQ_INT(mlt_evtask_cancel(NULL), MLT_EINVAL);
  /* Cancelling a task from its own callback is refused harmlessly. */
  REQUIRE_EQ_INT(mlt_evloop_defer(loop, NULL, NULL, cancel_self, NULL, &g_self), MLT_OK);
  event_base_dispatch(base); /* nothing else pending: returns */
  CHECK_EQ_INT(g_self_cancel_rc, MLT_EENDED);
  mlt_evloop_free(loop);
  event_base_free(base);
  tu_done();
}

typedef struct free_probe {
  mlt_evloop *loop;
  int calls, cancelled, resched_rc;
} free_probe;

static void on_free_cancel(int status, void *arg) {
  free_probe *f = arg;
  f->calls++;
  if (status == MLT_EVENT_CANCELLED) f->cancelled++;
  f->resched_rc = mlt_evloop_defer(f->loop, NULL, NULL, on_free_cancel, f, NULL);
}

static void *call_from_thread(void *arg) {
  free_probe *f = arg;
  CHECK_EQ_INT(mlt_evloop_call(f->loop, NULL, NULL, on_free_cancel, f), MLT_OK);
  return NULL;
}

TEST(loop_free_cancels_everything_pending_exactly_once) {
  tu_init();
  evthread_use_pthreads();
  struct event_base *base = event_base_new();
  mlt_evloop *loop = NULL;
  REQUIRE_EQ_INT(mlt_evloop_new(base, &loop), MLT_OK);
  free_probe f = {loop, 0, 0, 0};
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  struct timeval d = {60, 0};
  for (int i = 0; i < 5; i++) REQUIRE_EQ_INT(mlt_evloop_after(loop, NULL, &d, NULL, on_free_cancel, &f, NULL), MLT_OK);
  for (int i = 0; i < 5; i++) REQUIRE_EQ_INT(mlt_evloop_defer(loop, NULL, "x", on_free_cancel, &f, NULL), MLT_OK);
  pthread_t th;
  REQUIRE_EQ_INT(mlt_thread_create(&th, NULL, NULL, call_from_thread, &f), 0);
  pthread_join(th, NULL);
  mlt_span_end(root);
  CHECK_EQ_INT(tu_flush_count(), 0); /* 11 holds */
  mlt_evloop_free(loop); /* the loop never ran */
  CHECK_EQ_INT(f.calls, 11);
  CHECK_EQ_INT(f.cancelled, 11);
  CHECK_EQ_INT(f.resched_rc, MLT_EENDED);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  CHECK_EQ_INT(tu_nspans(tu_trace(0)), 1); /* no span from cancelled callbacks */
  event_base_free(base);
  mlt_evloop_free(NULL);
  tu_done();
}

TEST(invalid_arguments_and_no_init) {
  /* Without mlt_init(): callbacks run, without contexts. */
  struct event_base *base = event_base_new();
  mlt_evloop *loop = (mlt_evloop *)1;
  CHECK_EQ_INT(mlt_evloop_new(NULL, &loop), MLT_EINVAL);
  CHECK(loop == NULL);
  CHECK_EQ_INT(mlt_evloop_new(base, NULL), MLT_EINVAL);
  REQUIRE_EQ_INT(mlt_evloop_new(base, &loop), MLT_OK);
  probe p = {0};
  mlt_evtask *t = (mlt_evtask *)1;
  CHECK_EQ_INT(mlt_evloop_defer(NULL, NULL, NULL, probe_cb, &p, &t), MLT_EINVAL);
  CHECK(t == NULL);
  CHECK_EQ_INT(mlt_evloop_defer(loop, NULL, NULL, NULL, &p, NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_evloop_call(NULL, NULL, NULL, probe_cb, &p), MLT_EINVAL);
  CHECK_EQ_INT(mlt_evloop_call(loop, NULL, NULL, NULL, &p), MLT_EINVAL);
  CHECK(mlt_evloop_get_base(NULL) == NULL);
  REQUIRE_EQ_INT(mlt_evloop_defer(loop, NULL, "span", probe_cb, &p, NULL), MLT_OK);
  REQUIRE_EQ_INT(mlt_evloop_call(loop, NULL, "span", probe_cb, &p), MLT_OK);
  event_base_dispatch(base);
  CHECK_EQ_INT(p.calls, 2);
  CHECK_EQ_INT(p.status, MLT_OK);
  CHECK_EQ_STR(p.trace_id, "(none)");
  CHECK_EQ_INT(mlt_bufferevent_setcb(NULL, NULL, NULL, NULL, NULL, NULL, NULL), MLT_EINVAL);
  mlt_bufferevent_free(NULL);
  mlt_evloop_free(loop);
  event_base_free(base);
}

/* ---- cross-thread calls ---------------------------------------------- */

#define N_THREADS 4
#define N_CALLS 250

typedef struct xt_shared {
  mlt_evloop *loop;
  struct event_base *base;
  int done, mismatches, outside_checks_failed;
  struct event *keepalive;
} xt_shared;

typedef struct xt_thread {
  xt_shared *sh;
  char want[MLT_TRACE_ID_SIZE];
} xt_thread;

static void xt_cb(int status, void *arg) {
  xt_thread *t = arg;
  if (status != MLT_OK || strcmp(current_trace_id(), t->want) != 0) t->sh->mismatches++;
  mlt_span s = mlt_span_start("work", MLT_SPAN_TOOL); /* under the "call" task span */
  mlt_span_end(s);
  if (++t->sh->done == N_THREADS * N_CALLS) event_base_loopbreak(t->sh->base);
}

static void *xt_main(void *arg) {
  xt_thread *t = arg;
  /* Runs under the context given to mlt_thread_create(). */
  for (int i = 0; i < N_CALLS; i++)
    if (mlt_evloop_call(t->sh->loop, NULL, "call", xt_cb, t) != MLT_OK) t->sh->mismatches++;
  return NULL;
}

/* A plain libevent callback between ours: the loop thread has no context. */
static void xt_watch(evutil_socket_t fd, short what, void *arg) {
  xt_shared *sh = arg;
  (void)fd;
  (void)what;
  mlt_context *c = mlt_context_current();
  if (c || !mlt_span_is_none(mlt_current_span())) sh->outside_checks_failed++;
  mlt_context_release(c);
}

TEST(call_from_worker_threads_keeps_each_threads_context) {
  tu_init();
  evthread_use_pthreads();
  xt_shared sh = {0};
  sh.base = event_base_new();
  REQUIRE_EQ_INT(mlt_evloop_new(sh.base, &sh.loop), MLT_OK);
  struct timeval tick = {0, 1000};
  sh.keepalive = event_new(sh.base, -1, EV_PERSIST, xt_watch, &sh);
  event_add(sh.keepalive, &tick);
  xt_thread th[N_THREADS];
  pthread_t tid[N_THREADS];
  mlt_span roots[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) {
    char name[16];
    snprintf(name, sizeof name, "root-%d", i);
    roots[i] = mlt_span_start_in(NULL, name, MLT_SPAN_CHAIN);
    mlt_context *c = mlt_context_capture(roots[i]);
    th[i].sh = &sh;
    snprintf(th[i].want, sizeof th[i].want, "%s", trace_id_of(c));
    REQUIRE_EQ_INT(mlt_thread_create(&tid[i], NULL, c, xt_main, &th[i]), 0);
    mlt_context_release(c);
    mlt_span_end(roots[i]); /* the calls hold the traces open */
  }
  event_base_dispatch(sh.base);
  for (int i = 0; i < N_THREADS; i++) pthread_join(tid[i], NULL);
  CHECK_EQ_INT(sh.done, N_THREADS * N_CALLS);
  CHECK_EQ_INT(sh.mismatches, 0);
  CHECK_EQ_INT(sh.outside_checks_failed, 0);
  assert_no_context();
  event_free(sh.keepalive);
  mlt_evloop_free(sh.loop);
  event_base_free(sh.base);
  REQUIRE_EQ_INT(tu_flush_count(), N_THREADS);
  for (int i = 0; i < N_THREADS; i++) {
    char name[16];
    snprintf(name, sizeof name, "root-%d", i);
    cJSON *t = tu_trace_named(name);
    REQUIRE(t != NULL);
    CHECK_EQ_INT(tu_nspans(t), 1 + 2 * N_CALLS);
    const char *root_id = tu_str(tu_span(t, name), "span_id");
    cJSON *s;
    int calls = 0, works = 0;
    cJSON_ArrayForEach(s, tu_spans(t)) {
      const char *n = tu_str(s, "name");
      if (strcmp(n, "call") == 0) {
        calls++;
        CHECK_EQ_STR(tu_str(s, "parent_span_id"), root_id);
      } else if (strcmp(n, "work") == 0) {
        works++;
      }
    }
    CHECK_EQ_INT(calls, N_CALLS);
    CHECK_EQ_INT(works, N_CALLS);
  }
  tu_done();
}

/* ---- no context leaks between callbacks ------------------------------ */

static void leaky_cb(int status, void *arg) {
  (void)status;
  (void)arg;
  /* Leaves a span open and current: detaching must restore the loop. */
  (void)mlt_span_start("left-open", MLT_SPAN_TOOL);
}

static int g_plain_ok = -1;
static void plain_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
  mlt_context *c = mlt_context_current();
  g_plain_ok = c == NULL && mlt_span_is_none(mlt_current_span());
  mlt_context_release(c);
}

TEST(no_context_leaks_into_plain_callbacks) {
  tu_init();
  struct event_base *base = event_base_new();
  mlt_evloop *loop = NULL;
  REQUIRE_EQ_INT(mlt_evloop_new(base, &loop), MLT_OK);
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  REQUIRE_EQ_INT(mlt_evloop_defer(loop, NULL, NULL, leaky_cb, NULL, NULL), MLT_OK);
  mlt_span_end(root);
  event_base_dispatch(base);
  struct timeval zero = {0, 0};
  REQUIRE_EQ_INT(event_base_once(base, -1, EV_TIMEOUT, plain_cb, NULL, &zero), 0);
  event_base_dispatch(base);
  CHECK_EQ_INT(g_plain_ok, 1);
  assert_no_context();
  mlt_evloop_free(loop);
  event_base_free(base);
  tu_done();
}

/* ---- bufferevents ---------------------------------------------------- */

typedef struct bev_probe {
  struct event_base *base;
  char want[MLT_TRACE_ID_SIZE];
  int reads, events, wrong_context;
  char got[64];
  size_t got_len;
} bev_probe;

static void bev_readcb(struct bufferevent *bev, void *arg) {
  bev_probe *p = arg;
  p->reads++;
  if (strcmp(current_trace_id(), p->want) != 0) p->wrong_context++;
  p->got_len += bufferevent_read(bev, p->got + p->got_len, sizeof p->got - 1 - p->got_len);
}

static void bev_eventcb(struct bufferevent *bev, short what, void *arg) {
  bev_probe *p = arg;
  p->events++;
  if (strcmp(current_trace_id(), p->want) != 0) p->wrong_context++;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) mlt_bufferevent_free(bev); /* from inside the callback */
}

TEST(bufferevent_callbacks_run_under_context) {
  tu_init();
  struct event_base *base = event_base_new();
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  struct bufferevent *a = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
  REQUIRE(a != NULL);
  bev_probe p = {.base = base};
  mlt_span root = mlt_span_start("conn", MLT_SPAN_CHAIN);
  mlt_context *ctx = mlt_context_capture(root);
  snprintf(p.want, sizeof p.want, "%s", trace_id_of(ctx));
  /* Set twice: the second call replaces (and releases) the first closure. */
  REQUIRE_EQ_INT(mlt_bufferevent_setcb(a, ctx, NULL, bev_readcb, NULL, NULL, &p), MLT_OK);
  REQUIRE_EQ_INT(mlt_bufferevent_setcb(a, ctx, "bev", bev_readcb, NULL, bev_eventcb, &p), MLT_OK);
  mlt_context_release(ctx);
  mlt_span_end(root);
  bufferevent_enable(a, EV_READ);
  REQUIRE(write(sv[1], "hello", 5) == 5);
  close(sv[1]); /* EOF after the data: the event callback frees |a| */
  event_base_dispatch(base);
  CHECK(p.reads >= 1);
  CHECK_EQ_INT(p.got_len, 5);
  CHECK_EQ_INT(p.events, 1);
  CHECK_EQ_INT(p.wrong_context, 0);
  assert_no_context();
  event_base_free(base);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *s;
  int events = 0;
  cJSON_ArrayForEach(s, tu_spans(t)) {
    if (strcmp(tu_str(s, "name"), "bev") != 0) continue;
    const char *kind = tu_attr(s, "mltrace.event.kind");
    if (kind && strcmp(kind, "\"event\"") == 0) events++;
    CHECK_EQ_STR(tu_str(s, "parent_span_id"), tu_str(tu_span(t, "conn"), "span_id"));
  }
  CHECK_EQ_INT(events, 1);
  tu_done();
}

static void count_read(struct bufferevent *bev, void *arg) {
  bev_probe *p = arg;
  p->reads++;
  p->got_len += bufferevent_read(bev, p->got + p->got_len, sizeof p->got - 1 - p->got_len);
  if (strcmp(current_trace_id(), p->want) != 0) p->wrong_context++;
  if (p->got_len >= 5) event_base_loopbreak(p->base);
}

TEST(bufferevent_read_and_clear) {
  tu_init();
  struct event_base *base = event_base_new();
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  struct bufferevent *a = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
  bev_probe p = {.base = base};
  mlt_span root = mlt_span_start("conn", MLT_SPAN_CHAIN);
  mlt_context *ctx = mlt_context_capture(root);
  snprintf(p.want, sizeof p.want, "%s", trace_id_of(ctx));
  REQUIRE_EQ_INT(mlt_bufferevent_setcb(a, ctx, NULL, count_read, NULL, NULL, &p), MLT_OK);
  mlt_context_release(ctx);
  mlt_span_end(root);
  bufferevent_enable(a, EV_READ);
  REQUIRE(write(sv[1], "hello", 5) == 5);
  event_base_dispatch(base);
  CHECK_EQ_INT(p.got_len, 5);
  CHECK(memcmp(p.got, "hello", 5) == 0);
  CHECK_EQ_INT(p.wrong_context, 0);
  CHECK_EQ_INT(tu_flush_count(), 0); /* the callbacks hold the trace */
  REQUIRE_EQ_INT(mlt_bufferevent_setcb(a, NULL, NULL, NULL, NULL, NULL, NULL), MLT_OK); /* clear: release */
  CHECK_EQ_INT(tu_flush_count(), 1);
  mlt_bufferevent_free(a);
  close(sv[1]);
  event_base_free(base);
  tu_done();
}

static const tap_test tests[] = {
    TAP_ENTRY(defer_runs_later_under_context_and_holds_trace),
    TAP_ENTRY(defer_captures_current_context_and_child_span),
    TAP_ENTRY(timer_fires_after_deferred_and_without_context),
    TAP_ENTRY(cancel_runs_callback_once_with_cancelled_and_releases_hold),
    TAP_ENTRY(loop_free_cancels_everything_pending_exactly_once),
    TAP_ENTRY(invalid_arguments_and_no_init),
    TAP_ENTRY(call_from_worker_threads_keeps_each_threads_context),
    TAP_ENTRY(no_context_leaks_into_plain_callbacks),
    TAP_ENTRY(bufferevent_callbacks_run_under_context),
    TAP_ENTRY(bufferevent_read_and_clear),
    TAP_END,
};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
