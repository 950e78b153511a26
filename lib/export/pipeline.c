/* lib/export/pipeline.c: life cycle (init, shutdown, flush), counters, the export
 * queue and the export thread.
 *
 * App threads hand finished traces to an intrusive MPSC list (one atomic
 * exchange per trace).  The queue is bounded in bytes -- the memory the
 * queued traces hold -- and, when configured, in traces.  App threads never
 * block: a trace that finds the queue full is dropped and counted.
 * The single export thread wakes when the queue passes a fill threshold (one
 * wake-up per batch, never per span), when flushed, or every
 * schedule_delay_ms; it orders spans, runs the span processor, hands each
 * batch to every exporter, and frees the spans.  Network exporters apply
 * backpressure here: while one cannot take a batch (its in-flight window is
 * full) the export thread stops dequeuing, so traces wait in the queue (or
 * go to the spool) instead of failing.
 *
 * Every finished trace ends in exactly one bucket:
 *   finished = exported + partial + failed + dropped + spooled + pending
 * (pending: queued or in flight; 0 after shutdown).
 *
 * Layer: export (the top) -- may use core/, net/ and util/; exporters are
 * reached through their ops table (exporter-internal.h) only.
 */
#include "core/span-internal.h"
#include "export/assess-internal.h"
#include "export/options-internal.h"
#include "export/spool-internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t life_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- counters -------------------------------------------------------- */

static mlt_stats g_final; /* snapshot kept after shutdown */
static int g_have_final;

/* ---- queue ----------------------------------------------------------- */

/* Vyukov's intrusive MPSC list: producers exchange the push end; the export
 * thread pops from the other end past a stub node. */
static mlt__trace g_qstub;
static mlt__trace *_Atomic g_qpush;
static mlt__trace *g_qpop;
static _Atomic uint64_t g_qbytes;   /* bytes held by queued traces (until freed) */
static _Atomic uint64_t g_qbytes_peak;
static uint64_t g_qmax_bytes;       /* byte bound */
static uint64_t g_qmax_traces;      /* trace bound, 0 for none */
static uint64_t g_wake_bytes;       /* fill at which producers wake the export thread */
static _Atomic uint64_t g_enqueued; /* traces accepted (for flush) */
static _Atomic uint64_t g_dequeued; /* traces taken by the export thread */
static _Atomic uint64_t g_done;     /* traces with a final outcome */

/* ---- export thread state --------------------------------------------- */

static pthread_t g_thread;
static int g_thread_started;
static pthread_mutex_t g_wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake_cond;
static _Atomic int g_sleeping;   /* waiting for queue work (app threads may wake it) */
static _Atomic int g_wake_sent;  /* one wake-up per sleep */
static int g_wake_pending;
static _Atomic int g_stop;
static int64_t g_stop_deadline_mono;
static pthread_mutex_t g_flush_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_flush_cond;
static mlt_exporter *g_exporters;
static int g_n_exporters;
static int g_timed_out_shutdown;
/* Losses and spooled traces as of the previous mlt_flush() (under
 * g_flush_mu): a flush reports what happened since. */
static uint64_t g_flush_mark_loss, g_flush_mark_spool;

static struct {
  int (*wait)(void *ud, int timeout_ms);
  void (*wake)(void *ud);
  void *ud;
} g_waiter;

/* The network wait hook (mlt__http_settings.set_waiter): when set, the export
 * thread waits in it instead of its condition variable, and
 * pipeline_wakeup() calls |wake|. */
static void pipeline_set_waiter(int (*wait)(void *ud, int timeout_ms), void (*wake)(void *ud), void *ud) {
  g_waiter.wait = wait;
  g_waiter.wake = wake;
  g_waiter.ud = ud;
}

/* The export layer's settings (lib/export/options-internal.h); the core's
 * are mlt__g_cfg (core/state.c).  Both are written by mlt_init() and
 * mlt_shutdown() only. */
static mlt__export_config g_xcfg;
/* Both back to zero, the export strings freed (secrets wiped). */
static void config_free(void) {
  mlt__export_config_free(&g_xcfg);
  memset(&mlt__g_cfg, 0, sizeof mlt__g_cfg);
}

static const char *experiment_id(void) { return g_xcfg.experiment_id ? g_xcfg.experiment_id : "0"; }

static void pipeline_wakeup(void) {
  if (g_waiter.wake) {
    g_waiter.wake(g_waiter.ud);
    return;
  }
  pthread_mutex_lock(&g_wake_mu);
  g_wake_pending = 1;
  pthread_cond_signal(&g_wake_cond);
  pthread_mutex_unlock(&g_wake_mu);
}

/* Raise the recorded peak of g_qbytes to |v| (a value it held). */
static void note_peak(uint64_t v) {
  uint64_t peak = atomic_load_explicit(&g_qbytes_peak, memory_order_relaxed);
  while (v > peak && !atomic_compare_exchange_weak_explicit(&g_qbytes_peak, &peak, v, memory_order_relaxed,
                                                            memory_order_relaxed)) {
  }
}

/* Free what a finished trace holds (its spans) and drop the pipeline's
 * reference.  |spans| NULL: walk the trace's own list. */
static void release_trace(mlt__trace *t, mlt__score **spans, uint32_t n) {
  mlt__tls *tls = mlt__tls_get();
  size_t qb = t->qbytes;
  t->qbytes = 0;
  /* (mlt__moved_find() may be reading the moved spans under the lock.)
   * Spliced onto t->spans normally; a forced finish lists them in
   * t->export_spans but those it had no room for (t->moved_rest). */
  mlt__score *rest = NULL;
  if (t->moved) { /* (no writer but this thread now: the test needs no lock) */
    mlt__spin_lock(&t->lock);
    rest = t->moved_rest;
    t->moved = t->moved_rest = NULL;
    mlt__spin_unlock(&t->lock);
  }
  while (rest) {
    mlt__score *next = rest->next;
    mlt__score_release(rest, tls);
    rest = next;
  }
  if (spans) {
    for (uint32_t i = 0; i < n; i++) mlt__score_release(spans[i], tls);
  } else if (t->export_spans) {
    for (uint32_t i = 0; i < t->n_export; i++) mlt__score_release(t->export_spans[i], tls);
  } else {
    mlt__score *s = atomic_load(&t->spans);
    while (s) {
      mlt__score *next = s->next;
      mlt__score_release(s, tls);
      s = next;
    }
  }
  atomic_store(&t->spans, NULL);
  mlt__trace_unref(t);
  if (qb) note_peak(atomic_fetch_sub_explicit(&g_qbytes, qb, memory_order_relaxed));
}

/* The spans of a forced finish: those it listed, or, when it could not list
 * them for lack of memory, all that joined the trace (counted lost). */
static uint32_t forced_spans(mlt__trace *t) {
  return MLT_UNLIKELY(t->flags & MLT__TF_LOST) ? atomic_load(&t->n_spans) : t->n_export;
}

static uint32_t count_spans(mlt__trace *t) {
  if (t->export_spans) return forced_spans(t);
  uint32_t n = 0;
  for (mlt__score *s = atomic_load(&t->spans); s; s = s->next) n++;
  return n;
}

/* Memory a finished trace holds: its header, span slots and their log
 * chunks (what the queue bound counts).  Called once per trace, by the
 * thread that finished it; the spans are immutable by then. */
static MLT_ALWAYS_INLINE size_t span_bytes(mlt__score *s) {
  size_t b = mlt__score_moved(s) ? sizeof *s + s->head.cap : sizeof(mlt__span);
  for (mlt__chunk *c = atomic_load_explicit(&s->head.next, memory_order_relaxed); c;
       c = atomic_load_explicit(&c->next, memory_order_relaxed))
    b += sizeof *c + c->cap;
  return b;
}

static MLT_ALWAYS_INLINE size_t trace_bytes(mlt__trace *t, uint32_t *nspans) {
  size_t b = sizeof *t;
  uint32_t n = 0;
  mlt__score *s1 = atomic_load_explicit(&t->spans, memory_order_relaxed);
  if (MLT_LIKELY(!t->export_spans && s1 && !s1->next && !atomic_load_explicit(&s1->head.next, memory_order_relaxed))) {
    *nspans = 1; /* a 1-span trace whose log fits its slot */
    return b + sizeof(mlt__span);
  }
  if (t->export_spans) {
    b += t->n_export * sizeof *t->export_spans;
    for (uint32_t i = 0; i < t->n_export; i++) b += span_bytes(t->export_spans[i]);
    n = forced_spans(t);
  } else {
    for (mlt__score *s = atomic_load(&t->spans); s; s = s->next, n++) b += span_bytes(s);
  }
  *nspans = n;
  return b;
}

size_t mlt__trace_bytes(mlt__trace *t) {
  uint32_t n;
  return trace_bytes(t, &n);
}

static void qpush(mlt__trace *t) {
  atomic_store_explicit(&t->qnext, NULL, memory_order_relaxed);
  mlt__trace *prev = atomic_exchange_explicit(&g_qpush, t, memory_order_acq_rel);
  atomic_store_explicit(&prev->qnext, t, memory_order_release);
}

static uint64_t queue_depth(void) {
  uint64_t e = atomic_load(&g_enqueued), d = atomic_load(&g_dequeued);
  return e > d ? e - d : 0;
}

static void drop_trace(mlt__trace *t, uint32_t n, int over_count) {
  mlt__stats_add(MLT__ST_TRACES_DROPPED, 1);
  mlt__stats_add(MLT__ST_SPANS_DROPPED, n);
  if (over_count)
    mlt__log(MLT_LOG_WARN, MLT__LOGK_DROP,
             "export queue full (%llu traces, MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE): trace dropped",
             (unsigned long long)g_qmax_traces);
  else
    mlt__log(MLT_LOG_WARN, MLT__LOGK_DROP,
             "export queue full (%llu MiB, MLTRACE_QUEUE_MAX_BYTES): trace dropped; the exporters cannot keep up",
             (unsigned long long)(g_qmax_bytes >> 20));
  if (atomic_load(&t->registered)) {
    mlt__registry_del(t->id_hi, t->id_lo, 0);
    if (t->export_spans) {
      for (uint32_t i = 0; i < t->n_export; i++) mlt__registry_del(t->id_hi, t->id_lo, t->export_spans[i]->span_id);
    } else {
      for (mlt__score *s = atomic_load(&t->spans); s; s = s->next) mlt__registry_del(t->id_hi, t->id_lo, s->span_id);
    }
  }
  t->qbytes = 0;
  release_trace(t, NULL, 0);
}

#define WAKE_TRACES 256 /* queued traces at which producers wake the export thread */

/* queue_depth() for the hand-off: relaxed loads, and negative when the
 * export thread took a trace between them. */
static MLT_ALWAYS_INLINE int64_t depth_relaxed(void) {
  uint64_t e = atomic_load_explicit(&g_enqueued, memory_order_relaxed);
  return (int64_t)(e - atomic_load_explicit(&g_dequeued, memory_order_relaxed));
}

/* The app thread's hand-off of a finished trace.  Kept short: the bounds
 * are checked against plain loads; traces_finished is not counted here (it is
 * g_enqueued plus the drops, see snapshot_stats()) and the bytes' peak is
 * kept by release_trace() (every maximum of g_qbytes is the value a later
 * decrement starts from, or the current value). */
void mlt__pipeline_enqueue(mlt__trace *t) {
  uint32_t n;
  size_t b = trace_bytes(t, &n);
  uint64_t cur = atomic_load_explicit(&g_qbytes, memory_order_relaxed);
  /* An empty queue takes any trace, so that one larger than the bound is
   * not lost for good. */
  if (MLT_UNLIKELY(cur && cur + b > g_qmax_bytes)) {
    drop_trace(t, n, 0);
    return;
  }
  /* The trace bound is off unless MLflow's variable sets it: the depth is
   * read only then (and when the export thread sleeps, below). */
  if (MLT_UNLIKELY(g_qmax_traces != 0) && depth_relaxed() >= (int64_t)g_qmax_traces) {
    drop_trace(t, n, 1);
    return;
  }
  t->qbytes = b;
  cur = atomic_fetch_add_explicit(&g_qbytes, b, memory_order_relaxed) + b;
  /* Sequentially consistent, with the export thread's store to g_sleeping
   * and its read of the depth after it: one side sees the other (on x86 the
   * same instructions as weaker orders). */
  atomic_fetch_add(&g_enqueued, 1);
  qpush(t);
  if (MLT_UNLIKELY(atomic_load(&g_sleeping)) &&
      !atomic_load_explicit(&g_wake_sent, memory_order_relaxed) &&
      (depth_relaxed() >= WAKE_TRACES || cur >= g_wake_bytes) && !atomic_exchange(&g_wake_sent, 1))
    pipeline_wakeup();
}

/* Export thread (and mlt_shutdown() after it stopped).  NULL when empty --
 * or, briefly, while a producer is between its two steps. */
static mlt__trace *dequeue(void) {
  mlt__trace *tail = g_qpop;
  mlt__trace *next = atomic_load_explicit(&tail->qnext, memory_order_acquire);
  if (tail == &g_qstub) {
    if (!next) return NULL;
    g_qpop = tail = next;
    next = atomic_load_explicit(&tail->qnext, memory_order_acquire);
  }
  if (!next) {
    if (tail != atomic_load_explicit(&g_qpush, memory_order_acquire)) return NULL;
    qpush(&g_qstub);
    next = atomic_load_explicit(&tail->qnext, memory_order_acquire);
    if (!next) return NULL;
  }
  g_qpop = next;
  atomic_fetch_add(&g_dequeued, 1);
  return tail;
}

static void queue_init(void) {
  atomic_store(&g_qstub.qnext, NULL);
  atomic_store(&g_qpush, &g_qstub);
  g_qpop = &g_qstub;
  atomic_store(&g_qbytes, 0);
  atomic_store(&g_qbytes_peak, 0);
  atomic_store(&g_enqueued, 0);
  atomic_store(&g_dequeued, 0);
  atomic_store(&g_done, 0);
}

/* ---- tickets: completion of a trace across exporters ----------------- */

typedef struct ticket {
  uint32_t remaining;
  uint32_t n_spans;
  uint8_t worst; /* MLT__OUT_*: the worst outcome reported so far */
  uint32_t next_free;
} ticket;

static ticket *g_tickets;
static uint32_t g_n_tickets, g_ticket_free = UINT32_MAX;

__attribute__((noinline)) static uint32_t ticket_new(uint32_t n_spans) {
  if (g_ticket_free == UINT32_MAX) {
    if (g_n_tickets > (1u << 30)) return UINT32_MAX;
    uint32_t n = g_n_tickets ? g_n_tickets * 2 : 256;
    ticket *nt = realloc(g_tickets, (size_t)n * sizeof *nt);
    if (!nt) return UINT32_MAX;
    for (uint32_t i = n; i > g_n_tickets; i--) {
      nt[i - 1].next_free = g_ticket_free;
      g_ticket_free = i - 1;
    }
    g_tickets = nt;
    g_n_tickets = n;
  }
  uint32_t id = g_ticket_free;
  ticket *k = &g_tickets[id];
  g_ticket_free = k->next_free;
  k->remaining = (uint32_t)g_n_exporters;
  k->n_spans = n_spans;
  k->worst = MLT__OUT_OK;
  k->next_free = UINT32_MAX;
  return id;
}

/* While a batch is being exported, completions are counted here and only
 * published (g_done, flush waiters) once the batch's spans are released, so
 * that a flush never returns while the exported spans are still in memory. */
static int g_in_batch;
static uint64_t g_batch_done;

static void publish_done(uint64_t n) {
  atomic_fetch_add(&g_done, n);
  pthread_mutex_lock(&g_flush_mu);
  pthread_cond_broadcast(&g_flush_cond);
  pthread_mutex_unlock(&g_flush_mu);
}

static void count_done(uint64_t n) {
  if (g_in_batch)
    g_batch_done += n;
  else
    publish_done(n);
}

/* Why traces were lost, for the shutdown summary: a few distinct reasons
 * with their counts (export thread, then mlt_shutdown() after it stopped). */
#define N_REASONS 8
static struct {
  char text[160];
  uint64_t n;
} g_reasons[N_REASONS];

static void note_reason(const char *why) {
  if (!why) why = "unknown error";
  size_t cmp = MLT_MIN(strlen(why), (size_t)40); /* messages differ in their details */
  int free_i = -1, min_i = 0;
  for (int i = 0; i < N_REASONS; i++) {
    if (!g_reasons[i].n) {
      if (free_i < 0) free_i = i;
      continue;
    }
    if (!strncmp(g_reasons[i].text, why, cmp)) {
      g_reasons[i].n++;
      return;
    }
    if (g_reasons[i].n < g_reasons[min_i].n) min_i = i;
  }
  int i = free_i >= 0 ? free_i : min_i;
  snprintf(g_reasons[i].text, sizeof g_reasons[i].text, "%s", why);
  g_reasons[i].n = 1;
}

static const char *main_reason(void) {
  int best = -1;
  for (int i = 0; i < N_REASONS; i++)
    if (g_reasons[i].n && (best < 0 || g_reasons[i].n > g_reasons[best].n)) best = i;
  return best >= 0 ? g_reasons[best].text : NULL;
}

static void ticket_complete(uint32_t id) {
  ticket *k = &g_tickets[id];
  switch (k->worst) {
    case MLT__OUT_FAILED:
      mlt__stats_add(MLT__ST_TRACES_FAILED, 1);
      mlt__stats_add(MLT__ST_SPANS_FAILED, k->n_spans);
      break;
    case MLT__OUT_PARTIAL:
      mlt__stats_add(MLT__ST_TRACES_PARTIAL, 1);
      mlt__stats_add(MLT__ST_SPANS_PARTIAL, k->n_spans);
      break;
    case MLT__OUT_SPOOLED:
      mlt__stats_add(MLT__ST_TRACES_SPOOLED, 1);
      break;
    default:
      mlt__stats_add(MLT__ST_TRACES_EXPORTED, 1);
      mlt__stats_add(MLT__ST_SPANS_EXPORTED, k->n_spans);
  }
  k->next_free = g_ticket_free;
  g_ticket_free = id;
  count_done(1);
}

/* mlt__export_host.result */
static void host_result(mlt_exporter *e, uint32_t id, int outcome, const char *why) {
  if (id >= g_n_tickets) return;
  ticket *k = &g_tickets[id];
  if (outcome == MLT__OUT_FAILED || outcome == MLT__OUT_PARTIAL) {
    note_reason(why);
    mlt__log(MLT_LOG_WARN, MLT__LOGK_EXPORT, "exporter %s could not export a trace%s: %s", e->ops->name,
             outcome == MLT__OUT_PARTIAL ? " completely (its spans are stored, its TraceInfo is not)" : "",
             why ? why : "unknown error");
  } else if (outcome == MLT__OUT_SPOOLED) {
    note_reason(why);
  }
  if (outcome > k->worst) k->worst = (uint8_t)outcome;
  if (--k->remaining == 0) ticket_complete(id);
}


/* ---- preparing a batch ----------------------------------------------- */

static int cmp_start(const void *a, const void *b) {
  const mlt__score *x = *(mlt__score *const *)a, *y = *(mlt__score *const *)b;
  if (x->start_ns != y->start_ns) return x->start_ns < y->start_ns ? -1 : 1;
  return x->span_id < y->span_id ? -1 : x->span_id > y->span_id;
}

/* Scratch arrays for ordering (export thread only; sized to the largest
 * trace seen). */
static struct {
  size_t cap, hcap;
  int32_t *hmap, *first, *next, *stack, *newpos;
  mlt__score **out;
  char *seen;
} g_ord;

static int ord_reserve(size_t n) {
  size_t hcap = 16;
  while (hcap < n * 2) hcap <<= 1;
  if (n <= g_ord.cap && hcap <= g_ord.hcap) return 0;
  size_t cap = MLT_MAX(n, g_ord.cap * 2);
  hcap = MLT_MAX(hcap, g_ord.hcap);
  while (hcap < cap * 2) hcap <<= 1;
  int32_t *hmap = realloc(g_ord.hmap, hcap * sizeof *hmap);
  if (hmap) g_ord.hmap = hmap;
  int32_t *first = realloc(g_ord.first, cap * sizeof *first);
  if (first) g_ord.first = first;
  int32_t *next = realloc(g_ord.next, cap * sizeof *next);
  if (next) g_ord.next = next;
  int32_t *stack = realloc(g_ord.stack, cap * sizeof *stack);
  if (stack) g_ord.stack = stack;
  int32_t *newpos = realloc(g_ord.newpos, cap * sizeof *newpos);
  if (newpos) g_ord.newpos = newpos;
  mlt__score **out = realloc(g_ord.out, cap * sizeof *out);
  if (out) g_ord.out = out;
  char *seen = realloc(g_ord.seen, cap);
  if (seen) g_ord.seen = seen;
  if (!hmap || !first || !next || !stack || !newpos || !out || !seen) return -1;
  g_ord.cap = cap;
  g_ord.hcap = hcap;
  return 0;
}

static void ord_free(void) {
  free(g_ord.hmap);
  free(g_ord.first);
  free(g_ord.next);
  free(g_ord.stack);
  free(g_ord.newpos);
  free(g_ord.out);
  free(g_ord.seen);
  memset(&g_ord, 0, sizeof g_ord);
}

static size_t hslot(uint64_t id, size_t mask) { return (size_t)(id * UINT64_C(0x9E3779B97F4A7C15) >> 32) & mask; }

/* Order spans: root first, then depth-first with siblings by start time, so
 * parents always precede children (what MLflow's copy/import expects), and
 * fill p->parent (caller-provided, n entries). */
static int order_spans(mlt__prepared *p) {
  uint32_t n = p->n;
  p->root = -1;
  if (n == 0) return 0;
  /* The span list is newest-first: reversed it is usually sorted already. */
  for (uint32_t i = 0, j = n - 1; i < j; i++, j--) {
    mlt__score *t = p->spans[i];
    p->spans[i] = p->spans[j];
    p->spans[j] = t;
  }
  for (uint32_t i = 1; i < n; i++)
    if (cmp_start(&p->spans[i - 1], &p->spans[i]) > 0) {
      qsort(p->spans, n, sizeof *p->spans, cmp_start);
      break;
    }
  if (n == 1) {
    p->parent[0] = -1;
    p->root = p->spans[0]->span_id == p->t->root_id ? 0 : -1;
    return 0;
  }
  if (ord_reserve(n) != 0) return -1;
  /* A table sized for this trace (ord_reserve() made room for it), so that
   * one huge trace does not make every later one clear a huge table. */
  size_t hn = 16;
  while (hn < (size_t)n * 2) hn <<= 1;
  size_t mask = hn - 1;
  int32_t *hmap = g_ord.hmap, *parent = p->parent, *first = g_ord.first, *next = g_ord.next;
  int32_t *stack = g_ord.stack, *newpos = g_ord.newpos;
  char *seen = g_ord.seen;
  mlt__score **out = g_ord.out;
  memset(hmap, -1, hn * sizeof *hmap);
  memset(seen, 0, n);
  for (uint32_t i = 0; i < n; i++) {
    size_t h = hslot(p->spans[i]->span_id, mask);
    while (hmap[h] >= 0) h = (h + 1) & mask;
    hmap[h] = (int32_t)i;
  }
  int32_t root_i = -1;
  for (uint32_t i = 0; i < n; i++) {
    parent[i] = -1;
    first[i] = next[i] = -1;
    uint64_t pid = p->spans[i]->parent_id;
    if (pid) {
      for (size_t h = hslot(pid, mask); hmap[h] >= 0; h = (h + 1) & mask)
        if (p->spans[hmap[h]]->span_id == pid && (uint32_t)hmap[h] != i) {
          parent[i] = hmap[h];
          break;
        }
    }
    if (parent[i] < 0 && p->spans[i]->span_id == p->t->root_id) root_i = (int32_t)i;
  }
  /* Usually the start order is already the order wanted (one tree, each
   * span after its parent and after the whole subtree of every earlier
   * sibling): check that with a stack of the current span's ancestors. */
  if (root_i == 0 || (root_i < 0 && parent[0] < 0)) {
    int sp = 0;
    uint32_t i = 1;
    stack[sp++] = 0;
    for (; i < n; i++) {
      int32_t pi = parent[i];
      if (pi < 0) break;
      while (sp && stack[sp - 1] != pi) sp--;
      if (!sp) break;
      stack[sp++] = (int32_t)i;
    }
    if (i == n) {
      p->root = root_i >= 0 ? 0 : -1;
      return 0;
    }
  }
  for (uint32_t i = n; i-- > 0;) {
    if (parent[i] >= 0) {
      next[i] = first[parent[i]];
      first[parent[i]] = (int32_t)i;
    }
  }
  /* Roots: the trace's root first, then other parentless spans, then
   * leftovers (only with duplicate ids forming cycles); each depth-first. */
  uint32_t k = 0;
  for (int pass = 0; pass < 3; pass++) {
    for (uint32_t i = 0; i < n; i++) {
      if (seen[i]) continue;
      if (pass == 0 && (int32_t)i != root_i) continue;
      if (pass == 1 && parent[i] >= 0) continue;
      int sp = 0;
      stack[sp++] = (int32_t)i;
      while (sp) {
        int32_t x = stack[--sp];
        if (seen[x]) continue;
        seen[x] = 1;
        newpos[x] = (int32_t)k;
        out[k++] = p->spans[x];
        int32_t cnt = 0;
        for (int32_t c = first[x]; c >= 0; c = next[c]) cnt++;
        sp += cnt;
        int32_t j = sp;
        for (int32_t c = first[x]; c >= 0; c = next[c]) stack[--j] = c;
      }
    }
  }
  for (uint32_t i = 0; i < n; i++) next[newpos[i]] = parent[i] >= 0 ? newpos[parent[i]] : -1;
  memcpy(p->spans, out, n * sizeof *out);
  memcpy(parent, next, n * sizeof *parent);
  p->root = (root_i >= 0) ? 0 : -1;
  return 0;
}

static void run_processor(mlt__prepared *p) {
  if (!g_xcfg.processor) return;
  for (uint32_t i = 0; i < p->n; i++) {
    struct mlt_span_view v = {p->spans[i], {0}};
    g_xcfg.processor(&v, g_xcfg.processor_ud);
    mlt__buf_free(&v.tmp);
  }
}

/* Fill |p| for trace |t|; spans[] and parent[] point into batch arrays
 * with room for the trace's spans. */
static int prepare(mlt__prepared *p, mlt__trace *t, mlt__score **spans, int32_t *parent, uint32_t n) {
  mlt__trace_info ti = p->ti; /* keep its buffers */
  memset(p, 0, sizeof *p);
  p->ti = ti;
  p->t = t;
  p->root = -1;
  p->spans = spans;
  p->parent = parent;
  mlt__format_trace_id(t->id_hi, t->id_lo, p->trace_id);
  p->experiment_id = experiment_id();
  if (MLT_UNLIKELY(t->flags & MLT__TF_LOST)) return -1; /* spans missing: failed, counted */
  if (t->export_spans) {
    memcpy(p->spans, t->export_spans, n * sizeof *p->spans);
  } else {
    uint32_t i = 0;
    for (mlt__score *s = atomic_load(&t->spans); s && i < n; s = s->next) p->spans[i++] = s;
    n = i;
  }
  p->n = n;
  if (order_spans(p) != 0) return -1;
  if (atomic_load(&t->registered)) {
    mlt__registry_del(t->id_hi, t->id_lo, 0);
    for (uint32_t i = 0; i < n; i++) mlt__registry_del(t->id_hi, t->id_lo, p->spans[i]->span_id);
  }
  run_processor(p);
  return 0;
}

static struct {
  mlt__prepared *preps;
  mlt__prepared **ptrs;
  uint32_t *counts;
  size_t cap;
  mlt__score **spans;
  int32_t *parent;
  size_t scap;
} g_batch;

static void batch_free(void) {
  for (size_t i = 0; i < g_batch.cap; i++) mlt__trace_info_free(&g_batch.preps[i].ti);
  free(g_batch.preps);
  free(g_batch.ptrs);
  free(g_batch.counts);
  free(g_batch.spans);
  free(g_batch.parent);
  memset(&g_batch, 0, sizeof g_batch);
}

static void fail_trace(mlt__trace *t, uint32_t ns) {
  mlt__stats_add(MLT__ST_TRACES_FAILED, 1);
  mlt__stats_add(MLT__ST_SPANS_FAILED, ns);
  mlt__log(MLT_LOG_ERROR, MLT__LOGK_EXPORT, "out of memory preparing a trace for export: trace lost");
  note_reason("out of memory preparing a trace for export");
  release_trace(t, NULL, 0);
  count_done(1);
}

static void process_batch_inner(mlt__trace **batch, size_t n);
static void process_batch(mlt__trace **batch, size_t n) {
  g_in_batch = 1;
  g_batch_done = 0;
  process_batch_inner(batch, n);
  g_in_batch = 0;
  if (g_batch_done) publish_done(g_batch_done);
}

static void process_batch_inner(mlt__trace **batch, size_t n) {
  if (n > g_batch.cap) {
    mlt__prepared *pr = realloc(g_batch.preps, n * sizeof *pr);
    if (pr) {
      memset(pr + g_batch.cap, 0, (n - g_batch.cap) * sizeof *pr);
      g_batch.preps = pr;
    }
    mlt__prepared **pt = realloc(g_batch.ptrs, n * sizeof *pt);
    if (pt) g_batch.ptrs = pt;
    uint32_t *ct = realloc(g_batch.counts, n * sizeof *ct);
    if (ct) g_batch.counts = ct;
    if (!pr || !pt || !ct) {
      for (size_t i = 0; i < n; i++) fail_trace(batch[i], count_spans(batch[i]));
      return;
    }
    g_batch.cap = n;
  }
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    g_batch.counts[i] = count_spans(batch[i]);
    total += g_batch.counts[i];
  }
  if (total > g_batch.scap) {
    size_t cap = MLT_MAX(total, g_batch.scap * 2);
    mlt__score **sp = realloc(g_batch.spans, cap * sizeof *sp);
    if (sp) g_batch.spans = sp;
    int32_t *pa = realloc(g_batch.parent, cap * sizeof *pa);
    if (pa) g_batch.parent = pa;
    if (!sp || !pa) {
      for (size_t i = 0; i < n; i++) fail_trace(batch[i], g_batch.counts[i]);
      return;
    }
    g_batch.scap = cap;
  }
  size_t k = 0, off = 0;
  for (size_t i = 0; i < n; i++) {
    mlt__prepared *p = &g_batch.preps[k];
    if (prepare(p, batch[i], g_batch.spans + off, g_batch.parent + off, g_batch.counts[i]) != 0) {
      fail_trace(batch[i], g_batch.counts[i]);
      continue;
    }
    p->ticket = ticket_new(p->n);
    if (p->ticket == UINT32_MAX) {
      fail_trace(batch[i], g_batch.counts[i]);
      continue;
    }
    off += g_batch.counts[i];
    g_batch.ptrs[k++] = p;
  }
  for (mlt_exporter *e = g_exporters; e && k; e = e->next) {
    if (e->failed_start) {
      for (size_t i = 0; i < k; i++) mlt__export_done(e, g_batch.ptrs[i]->ticket, 0, "exporter failed to start");
      continue;
    }
    e->ops->export_batch(e, g_batch.ptrs, k);
  }
  for (size_t i = 0; i < k; i++) release_trace(g_batch.ptrs[i]->t, g_batch.ptrs[i]->spans, g_batch.ptrs[i]->n);
}

/* ---- export thread --------------------------------------------------- */

#define BATCH_MAX 512
#define REAP_INTERVAL_NS (100 * 1000000LL)

static size_t exporters_in_flight(void) {
  size_t n = 0;
  for (mlt_exporter *e = g_exporters; e; e = e->next)
    if (e->ops->in_flight) n += e->ops->in_flight(e);
  return n;
}

static int pipeline_stopping(void) { return atomic_load(&g_stop); }

static int pipeline_deadline_passed(void) {
  if (!atomic_load(&g_stop) || mlt__mono_ns() < g_stop_deadline_mono) return 0;
  g_timed_out_shutdown = 1; /* the caller cuts its work short */
  return 1;
}

/* What exporters call back (e->host): ticket completion, shutdown state. */
static const mlt__export_host g_host = {
    .result = host_result, .stopping = pipeline_stopping, .deadline_passed = pipeline_deadline_passed};

/* What the trace operations (lib/export/assess.c) call back: an operation
 * on a finished trace waits for the traces accepted before it. */
static uint64_t pipeline_enqueued(void) { return atomic_load(&g_enqueued); }
static uint64_t pipeline_done(void) { return atomic_load(&g_done); }
static const mlt__ops_host g_ops_host = {.enqueued = pipeline_enqueued,
                                         .done = pipeline_done,
                                         .wakeup = pipeline_wakeup,
                                         .experiment_id = experiment_id};

/* Backpressure: 0 while some exporter cannot take another batch (its
 * in-flight window is full). */
static int exporters_ready(void) {
  for (mlt_exporter *e = g_exporters; e; e = e->next)
    if (!e->failed_start && e->ops->ready && !e->ops->ready(e)) return 0;
  return 1;
}

/* The shutdown deadline passed: exporters give up what they hold (spooled
 * when the spool is on, else failed).  What is still queued goes through
 * the exporters once more when one of them spools (it writes them to the
 * spool, local exporters write them out), else it is counted as failed. */
static void process_batch(mlt__trace **batch, size_t n);
static void finish_at_deadline(void) {
  int spooling = 0;
  for (mlt_exporter *e = g_exporters; e; e = e->next) {
    if (e->ops->abandon) e->ops->abandon(e);
    spooling |= e->spooling;
  }
  g_timed_out_shutdown = 1;
  mlt__trace *t;
  uint64_t lost = 0;
  if (spooling) {
    mlt__trace *batch[BATCH_MAX];
    for (;;) {
      size_t n = 0;
      while (n < BATCH_MAX && queue_depth() && (batch[n] = dequeue()) != NULL) n++;
      if (!n) break;
      process_batch(batch, n);
    }
  }
  while (queue_depth() && (t = dequeue()) != NULL) {
    uint32_t n = count_spans(t);
    mlt__stats_add(MLT__ST_TRACES_FAILED, 1);
    mlt__stats_add(MLT__ST_SPANS_FAILED, n);
    note_reason(MLT__DEADLINE_REASON);
    release_trace(t, NULL, 0);
    lost++;
  }
  if (lost) publish_done(lost);
}

static void *export_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
#ifdef HAVE_PTHREAD_SETNAME_NP
  pthread_setname_np(pthread_self(), "mltrace-export");
#endif
  mlt__trace *batch[BATCH_MAX];
  int64_t next_reap = mlt__mono_ns() + REAP_INTERVAL_NS;
  int final_reap_done = 0;
  for (;;) {
    size_t n = 0;
    int ready = exporters_ready();
    if (ready)
      while (n < BATCH_MAX && (batch[n] = dequeue()) != NULL) n++;
    if (n) process_batch(batch, n);
    int64_t now = mlt__mono_ns();
    int stopping = atomic_load(&g_stop);
    if (stopping && !final_reap_done) {
      /* Shutdown: end every trace still in progress, then drain. */
      mlt__traces_reap(mlt__now_ns(), 1);
      final_reap_done = 1;
      continue;
    }
    if (now >= next_reap) {
      mlt__traces_reap(mlt__now_ns(), 0);
      next_reap = now + REAP_INTERVAL_NS;
    }
    int64_t wake_at = now + (int64_t)g_xcfg.schedule_delay_ms * 1000000;
    for (mlt_exporter *e = g_exporters; e; e = e->next) {
      if (!e->ops->poll) continue;
      int64_t w = e->ops->poll(e, now);
      if (w > 0 && w < wake_at) wake_at = w;
    }
    int64_t ow = mlt__ops_poll(now); /* feedback and tags on finished traces (assess.c) */
    if (ow > 0 && ow < wake_at) wake_at = ow;
    if (n == BATCH_MAX) continue;
    if (stopping) {
      /* Drain for as long as the deadline allows. */
      if (queue_depth() == 0 && exporters_in_flight() == 0 && mlt__ops_idle()) break;
      if (mlt__mono_ns() >= g_stop_deadline_mono) {
        finish_at_deadline();
        mlt__ops_abandon();
        break;
      }
      if (wake_at > g_stop_deadline_mono) wake_at = g_stop_deadline_mono;
    }
    if (next_reap < wake_at) wake_at = next_reap;
    int64_t wait_ns = wake_at - mlt__mono_ns();
    if (wait_ns <= 0) continue;
    ready = exporters_ready();
    if (ready && queue_depth()) {
      if (!n) sched_yield(); /* a producer is between its two steps */
      continue;
    }
    /* App threads wake the thread only when it waits for queue work; while
     * backpressure holds it, only the exporters' progress wakes it. */
    if (ready) {
      atomic_store(&g_sleeping, 1);
      atomic_store(&g_wake_sent, 0);
    }
    int work = ready && queue_depth();
    if (g_waiter.wait) {
      if (!work && !atomic_load(&g_stop)) g_waiter.wait(g_waiter.ud, (int)(wait_ns / 1000000) + 1);
    } else {
      pthread_mutex_lock(&g_wake_mu);
      if (!g_wake_pending && !work && !atomic_load(&g_stop)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t abs = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + wait_ns;
        ts.tv_sec = (time_t)(abs / 1000000000);
        ts.tv_nsec = (long)(abs % 1000000000);
        pthread_cond_timedwait(&g_wake_cond, &g_wake_mu, &ts);
      }
      g_wake_pending = 0;
      pthread_mutex_unlock(&g_wake_mu);
    }
    atomic_store(&g_sleeping, 0);
  }
  return NULL;
}

/* ---- life cycle ------------------------------------------------------ */

static mlt_exporter *build_exporters(mlt_options *opts, int *rc) {
  *rc = MLT_OK;
  mlt_exporter *list = NULL, **tail = &list;
  if (opts && opts->exporters) {
    list = opts->exporters;
    opts->exporters = NULL;
    while (*tail) tail = &(*tail)->next;
    if (!(opts->set & MLT__O_FILE)) return list;
  }
  const mlt__export_config *c = &g_xcfg;
  int network = 0;
  if (!list) {
    if (c->tracking_uri) {
      if (!strncmp(c->tracking_uri, "http://", 7) || !strncmp(c->tracking_uri, "https://", 8)) {
        mlt_exporter *e = NULL;
        /* An experiment id given (option or MLFLOW_EXPERIMENT_ID) wins over
         * a name; with neither, the exporter uses "0". */
        int r = mlt_exporter_mlflow_new(c->tracking_uri, c->experiment_id, c->experiment_name, &e);
        if (r) {
          *rc = r;
          return list;
        }
        *tail = e;
        tail = &e->next;
        network = 1;
      } else {
        mlt__log(MLT_LOG_WARN, MLT__LOGK_ENV,
                 "MLFLOW_TRACKING_URI='%.*s' is not an http(s) tracking server; traces go to the local file store",
                 (int)strcspn(c->tracking_uri, "@?"), c->tracking_uri);
      }
    }
    if (c->otlp_endpoint) {
      mlt_exporter *e = NULL;
      int r = mlt_exporter_otlp_new(c->otlp_endpoint, c->otlp_headers, &e);
      if (r) {
        *rc = r;
        return list;
      }
      *tail = e;
      tail = &e->next;
      network = 1;
    }
  }
  if (c->file_path || (!list && !network)) {
    mlt_exporter *e = NULL;
    int r = mlt__exporter_file_new(c->file_path, &e);
    if (r) {
      *rc = r;
      return list;
    }
    *tail = e;
  }
  return list;
}

/* Counters of the HTTP transport (mlt__http_settings.count). */
static void http_count(int what, uint64_t n) {
  static const int st[] = {MLT__ST_EXPORT_REQUESTS, MLT__ST_EXPORT_RETRIES, MLT__ST_EXPORT_BYTES};
  if (what >= 0 && what < (int)MLT_ARRAY_LEN(st)) mlt__stats_add(st[what], n);
}

/* What the exporters are started with (valid until mlt_shutdown()): the
 * resolved settings they need, and the pipeline's hooks for the transport.
 * Also tells the log redaction which values are secrets. */
static mlt__export_env g_env;
static void env_init(const mlt__export_config *c) {
  memset(&g_env, 0, sizeof g_env);
  g_env.service_name = c->service_name;
  g_env.otlp_compression = c->otlp_compression;
  g_env.mlflow_timeout_ms = c->mlflow_timeout_ms;
  g_env.otlp_timeout_ms = c->otlp_timeout_ms;
  g_env.retry_budget_ms = c->retry_budget_ms;
  g_env.insecure_tls = c->insecure_tls;
  g_env.ca_path = c->ca_path;
  g_env.tracking_token = c->tracking_token;
  g_env.tracking_user = c->tracking_user;
  g_env.tracking_password = c->tracking_password;
  g_env.spool.enabled = c->spool_enabled;
  g_env.spool.dir = c->spool_dir;
  g_env.spool.max_bytes = c->spool_max_bytes;
  g_env.http.max_requests = c->max_requests;
  g_env.http.set_waiter = pipeline_set_waiter;
  g_env.http.count = http_count;
  const char *secrets[] = {c->tracking_token, c->tracking_password, NULL};
  if (!secrets[0]) {
    secrets[0] = secrets[1];
    secrets[1] = NULL;
  }
  static const char *const keys[] = {"x-mlflow-token", NULL};
  mlt__redact_configure(secrets, c->otlp_headers, keys);
}

static void free_exporters(mlt_exporter *e) {
  while (e) {
    mlt_exporter *n = e->next;
    e->ops->destroy(e);
    e = n;
  }
}

/* ---- fork ------------------------------------------------------------ */

/* In the child of fork() the export thread does not exist and locks may
 * have been held by threads that did not follow: the library turns itself
 * off there (the parent's traces stay the parent's) and forgets its state
 * without freeing it, so that the child can call mlt_init() afresh. */
static void atfork_child(void) {
  mlt__log_atfork_child();
  pthread_mutex_init(&life_mu, NULL);
  pthread_mutex_init(&g_wake_mu, NULL);
  pthread_mutex_init(&g_flush_mu, NULL);
  if (atomic_load(&mlt__g_state) == MLT__G_OFF) return;
  MLT__SET_ENABLED(0);
  atomic_store(&mlt__g_state, MLT__G_OFF);
  atomic_store(&mlt__g_epoch, atomic_load(&mlt__g_epoch) + 1);
  g_thread_started = 0;
  void *roots[] = {g_exporters, g_tickets, g_batch.preps, g_batch.ptrs, g_batch.counts, g_batch.spans,
                   g_batch.parent, g_ord.hmap, g_ord.first, g_ord.next, g_ord.stack, g_ord.newpos, g_ord.out,
                   g_ord.seen, g_xcfg.service_name,
                   g_xcfg.experiment_id, g_xcfg.experiment_name, g_xcfg.tracking_uri,
                   g_xcfg.otlp_endpoint, g_xcfg.file_path, g_xcfg.ca_path, g_xcfg.tracking_token,
                   g_xcfg.tracking_user, g_xcfg.tracking_password, g_xcfg.otlp_headers,
                   g_xcfg.otlp_compression, g_xcfg.spool_dir};
  for (size_t i = 0; i < MLT_ARRAY_LEN(roots); i++) mlt__forget(roots[i]);
  queue_init(); /* queued traces are the parent's */
  g_exporters = NULL;
  g_n_exporters = 0;
  g_tickets = NULL;
  g_n_tickets = 0;
  g_ticket_free = UINT32_MAX;
  memset(&g_batch, 0, sizeof g_batch);
  memset(&g_ord, 0, sizeof g_ord);
  mlt__serialize_atfork_child();
  memset(&g_waiter, 0, sizeof g_waiter);
  memset(&mlt__g_cfg, 0, sizeof mlt__g_cfg);
  memset(&g_xcfg, 0, sizeof g_xcfg);
  g_have_final = 0;
  mlt__http_atfork_child();
  mlt__spool_atfork_child();
  mlt__slots_atfork_child();
  mlt__traces_atfork_child();
  mlt__registry_atfork_child();
  mlt__chunks_atfork_child();
  mlt__tls_atfork_child();
  mlt__ops_atfork_child();
}

static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, atfork_child); }

int mlt_init(mlt_options *opts) {
  pthread_once(&g_atfork_once, register_atfork);
  pthread_mutex_lock(&life_mu);
  if (atomic_load(&mlt__g_state) != MLT__G_OFF) {
    pthread_mutex_unlock(&life_mu);
    return MLT_EALREADY;
  }
  /* The caller's log settings first, so that warnings about the environment
   * go where the caller asked. */
  if (opts && (opts->set & MLT__O_LOG))
    mlt__log_configure(opts->log_level, opts->log_fn, opts->log_ud);
  else
    mlt__log_configure(mlt__log_level_from_env(MLT_LOG_WARN), NULL, NULL);
  mlt__resolved r;
  int rc = mlt__options_resolve(opts, &r);
  if (rc) {
    mlt__export_config_free(&r.xcfg);
    pthread_mutex_unlock(&life_mu);
    return rc;
  }
  mlt__log_configure(r.log_level, r.log_fn, r.log_ud);
  mlt__g_cfg = r.cfg;
  g_xcfg = r.xcfg;
  env_init(&g_xcfg);
  g_exporters = build_exporters(opts, &rc);
  if (rc) {
    free_exporters(g_exporters);
    g_exporters = NULL;
    config_free();
    pthread_mutex_unlock(&life_mu);
    return rc;
  }
  g_n_exporters = 0;
  for (mlt_exporter *e = g_exporters; e; e = e->next) g_n_exporters++;
  /* The core hands finished traces here.  Written once (before any span of
   * the process can start), never changed: later mlt_init() calls find it
   * set and do not write, so no app thread ever sees a store to it. */
  if (mlt__g_trace_sink != mlt__pipeline_enqueue) mlt__g_trace_sink = mlt__pipeline_enqueue;
  queue_init();
  g_qmax_bytes = g_xcfg.queue_max_bytes;
  g_qmax_traces = g_xcfg.queue_size;
  g_wake_bytes = MLT_MAX(g_qmax_bytes / 16, (uint64_t)1);
  memset(g_reasons, 0, sizeof g_reasons);
  g_flush_mark_loss = g_flush_mark_spool = 0;
  for (int i = 0; i < MLT__ST_COUNT; i++) atomic_store(&mlt__g_stats[i], 0);
  mlt__tls_reset_counters();
  mlt__workq_reset_counters();
  g_have_final = 0;
  g_timed_out_shutdown = 0;
  atomic_store(&g_stop, 0);
  g_wake_pending = 0;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g_wake_cond, &ca);
  pthread_cond_init(&g_flush_cond, NULL);
  pthread_condattr_destroy(&ca);
  /* Exporters start here, before the export thread exists, so that what
   * they set up (the network transport's wake-up hook) is in place before
   * any application thread can look at it. */
  for (mlt_exporter *e = g_exporters; e; e = e->next) {
    e->host = &g_host;
    if (e->ops->start && e->ops->start(e, &g_env) != 0) e->failed_start = 1;
  }
  mlt__ops_start(g_exporters, &g_ops_host);
  uint32_t ep = atomic_load(&mlt__g_epoch) + 1;
  if (ep == 0) ep = 1;
  atomic_store(&mlt__g_epoch, ep);
  atomic_store(&mlt__g_state, MLT__G_RUNNING);
  MLT__SET_ENABLED(g_xcfg.enabled);
  if (pthread_create(&g_thread, NULL, export_main, NULL) != 0) {
    MLT__SET_ENABLED(0);
    atomic_store(&mlt__g_state, MLT__G_OFF);
    mlt__http_shutdown(); /* its requests point at the exporters */
    free_exporters(g_exporters);
    g_exporters = NULL;
    config_free();
    pthread_mutex_unlock(&life_mu);
    return MLT_EIO;
  }
  g_thread_started = 1;
  pthread_mutex_unlock(&life_mu);
  return MLT_OK;
}

static void snapshot_stats(mlt_stats *s) {
  memset(s, 0, sizeof *s);
  mlt__tls_counters c;
  mlt__tls_sum_counters(&c);
  s->traces_started = c.traces_started;
  s->spans_started = c.spans_started;
  s->traces_sampled_out = c.traces_sampled_out;
  s->spans_over_limit = c.spans_over_limit;
  s->events_dropped = c.events_dropped;
  s->values_truncated = c.values_truncated;
  s->misuse = c.misuse;
#define G(x) atomic_load_explicit(&mlt__g_stats[x], memory_order_relaxed)
  /* one read of g_enqueued for traces_finished and traces_pending */
  uint64_t acc = atomic_load(&g_enqueued), done = atomic_load(&g_done);
  /* the drops at the queue (all of traces_dropped) + the traces it took */
  s->traces_dropped = G(MLT__ST_TRACES_DROPPED);
  s->traces_finished = s->traces_dropped + acc;
  s->traces_exported = G(MLT__ST_TRACES_EXPORTED);
  s->spans_exported = G(MLT__ST_SPANS_EXPORTED);
  s->spans_dropped = G(MLT__ST_SPANS_DROPPED);
  s->traces_failed = G(MLT__ST_TRACES_FAILED);
  s->spans_failed = G(MLT__ST_SPANS_FAILED);
  s->traces_timed_out = G(MLT__ST_TRACES_TIMED_OUT);
  s->spans_timed_out = G(MLT__ST_SPANS_TIMED_OUT);
  s->invalid_json = G(MLT__ST_INVALID_JSON);
  s->export_requests = G(MLT__ST_EXPORT_REQUESTS);
  s->export_retries = G(MLT__ST_EXPORT_RETRIES);
  s->export_bytes = G(MLT__ST_EXPORT_BYTES);
  s->traces_partial = G(MLT__ST_TRACES_PARTIAL);
  s->spans_partial = G(MLT__ST_SPANS_PARTIAL);
  s->traces_spooled = G(MLT__ST_TRACES_SPOOLED);
  s->traces_replayed = G(MLT__ST_TRACES_REPLAYED);
  s->traces_evicted = G(MLT__ST_TRACES_EVICTED);
  s->queue_capacity = g_qmax_traces;
  s->queue_depth = queue_depth();
  s->queue_bytes = atomic_load(&g_qbytes);
  s->queue_max_bytes = g_qmax_bytes;
  s->queue_bytes_peak = MLT_MAX(atomic_load(&g_qbytes_peak), s->queue_bytes);
#undef G
  s->traces_pending = acc > done ? acc - done : 0;
  s->work_queue_rejected = mlt__workq_rejected();
  mlt__ops_stats(s);
}

int mlt_get_stats(mlt_stats *out, size_t size) {
  if (!out || size == 0) return MLT_EINVAL;
  mlt_stats s;
  pthread_mutex_lock(&life_mu);
  if (atomic_load(&mlt__g_state) == MLT__G_OFF) {
    if (g_have_final)
      s = g_final;
    else
      memset(&s, 0, sizeof s);
  } else {
    snapshot_stats(&s);
  }
  pthread_mutex_unlock(&life_mu);
  memcpy(out, &s, MLT_MIN(size, sizeof s));
  if (size > sizeof s) memset((char *)out + sizeof s, 0, size - sizeof s);
  return MLT_OK;
}

static int64_t deadline_after(int timeout_ms) { return mlt__mono_ns() + (int64_t)timeout_ms * 1000000; }

static uint64_t losses_now(void) {
  return atomic_load(&mlt__g_stats[MLT__ST_TRACES_FAILED]) + atomic_load(&mlt__g_stats[MLT__ST_TRACES_DROPPED]) +
         atomic_load(&mlt__g_stats[MLT__ST_TRACES_PARTIAL]);
}

int mlt_flush(int timeout_ms) {
  if (!mlt__running()) return MLT_ENOTINIT;
  if (timeout_ms < 0) timeout_ms = (int)g_xcfg.shutdown_timeout_ms;
  uint64_t target = atomic_load(&g_enqueued);
  int64_t deadline = deadline_after(timeout_ms);
  pipeline_wakeup();
  pthread_mutex_lock(&g_flush_mu);
  int rc = MLT_OK;
  while (atomic_load(&g_done) < target) {
    int64_t left = deadline - mlt__mono_ns();
    if (left <= 0) {
      rc = MLT_ETIMEDOUT;
      break;
    }
    struct timespec ts = mlt__realtime_after(MLT_MIN(left, (int64_t)50000000));
    pthread_cond_timedwait(&g_flush_cond, &g_flush_mu, &ts);
    pipeline_wakeup();
  }
  uint64_t loss = losses_now(), spool = atomic_load(&mlt__g_stats[MLT__ST_TRACES_SPOOLED]);
  if (loss > g_flush_mark_loss)
    rc = MLT_EIO;
  else if (rc == MLT_OK && spool > g_flush_mark_spool)
    rc = MLT_EPENDING;
  if (loss > g_flush_mark_loss) g_flush_mark_loss = loss;
  if (spool > g_flush_mark_spool) g_flush_mark_spool = spool;
  pthread_mutex_unlock(&g_flush_mu);
  /* Operations queued before the flush (assess.c), within the same deadline. */
  int orc = mlt__ops_flush(deadline);
  if (orc != MLT_OK && (rc == MLT_OK || rc == MLT_EPENDING)) rc = orc;
  return rc;
}

/* One warning line when anything was not delivered, with the counts and the
 * main reason (mlt_shutdown(), after the export thread stopped). */
static void report_losses(const mlt_stats *s) {
  uint64_t bad = s->traces_dropped + s->traces_failed + s->traces_partial + s->traces_spooled;
  if (!bad) return;
  char why[200];
  const char *top = main_reason();
  if (s->traces_dropped > s->traces_failed + s->traces_partial + s->traces_spooled || !top)
    snprintf(why, sizeof why, "export queue full (MLTRACE_QUEUE_MAX_BYTES=%llu)",
             (unsigned long long)s->queue_max_bytes);
  else
    snprintf(why, sizeof why, "%s", top);
  mlt__log(MLT_LOG_WARN, MLT__LOGK_SUMMARY,
           "%llu of %llu finished trace(s) not delivered: %llu dropped, %llu failed, %llu partial (spans stored, "
           "TraceInfo not), %llu spooled (kept on disk until the server answers; %llu delivered from the spool in "
           "this run); main reason: %s",
           (unsigned long long)bad, (unsigned long long)s->traces_finished, (unsigned long long)s->traces_dropped,
           (unsigned long long)s->traces_failed, (unsigned long long)s->traces_partial,
           (unsigned long long)s->traces_spooled, (unsigned long long)s->traces_replayed, why);
}

int mlt_shutdown(int timeout_ms) {
  pthread_mutex_lock(&life_mu);
  int expect = MLT__G_RUNNING;
  if (!atomic_compare_exchange_strong(&mlt__g_state, &expect, MLT__G_STOPPING)) {
    pthread_mutex_unlock(&life_mu);
    return MLT_ENOTINIT;
  }
  MLT__SET_ENABLED(0);
  if (timeout_ms < 0) timeout_ms = (int)g_xcfg.shutdown_timeout_ms;
  g_stop_deadline_mono = deadline_after(timeout_ms);
  atomic_store(&g_stop, 1);
  pipeline_wakeup();
  if (g_thread_started) pthread_join(g_thread, NULL);
  g_thread_started = 0;
  int rc = g_timed_out_shutdown ? MLT_ETIMEDOUT : MLT_OK;
  /* Only when the export thread never ran: what is queued was not exported. */
  mlt__trace *t;
  uint64_t lost = 0;
  while (queue_depth() && (t = dequeue()) != NULL) {
    uint32_t n = count_spans(t);
    mlt__stats_add(MLT__ST_TRACES_FAILED, 1);
    mlt__stats_add(MLT__ST_SPANS_FAILED, n);
    note_reason("shutdown before the trace was exported");
    release_trace(t, NULL, 0);
    lost++;
    rc = MLT_ETIMEDOUT;
  }
  if (lost) publish_done(lost);
  mlt__ops_stop(); /* trace operations still waiting are counted failed (assess.c) */
  snapshot_stats(&g_final);
  g_have_final = 1;
  report_losses(&g_final);
  mlt__log_flush_suppressed();
  /* Everything below frees memory that other threads' stale handles and
   * thread-local pointers may still name: the epoch bump makes them dead. */
  atomic_store(&mlt__g_epoch, atomic_load(&mlt__g_epoch) + 1);
  /* The transport first: its requests point at the exporters' settings. */
  mlt__http_shutdown();
  free_exporters(g_exporters);
  g_exporters = NULL;
  g_n_exporters = 0;
  g_xcfg.processor = NULL;
  mlt__tls_shutdown();
  mlt__registry_shutdown();
  mlt__traces_shutdown();
  mlt__slots_shutdown();
  mlt__chunks_shutdown();
  queue_init();
  free(g_tickets);
  g_tickets = NULL;
  g_n_tickets = 0;
  g_ticket_free = UINT32_MAX;
  ord_free();
  batch_free();
  mlt__serialize_shutdown();
  mlt__otlp_shutdown();
  pipeline_set_waiter(NULL, NULL, NULL);
  pthread_cond_destroy(&g_wake_cond);
  pthread_cond_destroy(&g_flush_cond);
  mlt__redact_configure(NULL, NULL, NULL); /* wipes its copies of the secrets */
  config_free();
  atomic_store(&mlt__g_state, MLT__G_OFF);
  pthread_mutex_unlock(&life_mu);
  return rc;
}

void mlt_set_enabled(int enabled) {
  if (!mlt__running()) return;
  g_xcfg.enabled = enabled ? 1 : 0;
  MLT__SET_ENABLED(enabled ? 1 : 0);
}

int mlt_is_enabled(void) { return mlt__running() && MLT__ENABLED(); }

int mlt_stats_format(const mlt_stats *stats, char *buf, size_t size) {
  if (!buf && size) return MLT_EINVAL;
  mlt_stats cur;
  if (!stats) {
    mlt_get_stats(&cur, sizeof cur);
    stats = &cur;
  }
  const mlt_stats *s = stats;
  int n = snprintf(buf, size,
                   "finished=%llu exported=%llu partial=%llu failed=%llu dropped=%llu spooled=%llu pending=%llu "
                   "replayed=%llu evicted=%llu retries=%llu",
                   (unsigned long long)s->traces_finished, (unsigned long long)s->traces_exported,
                   (unsigned long long)s->traces_partial, (unsigned long long)s->traces_failed,
                   (unsigned long long)s->traces_dropped, (unsigned long long)s->traces_spooled,
                   (unsigned long long)s->traces_pending, (unsigned long long)s->traces_replayed,
                   (unsigned long long)s->traces_evicted, (unsigned long long)s->export_retries);
  return n < 0 ? MLT_EINVAL : n;
}

