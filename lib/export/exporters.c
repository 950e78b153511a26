/* lib/export/exporters.c: the local JSONL file store, the in-memory store, and the
 * callback exporter. */
#include "export/assess-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- file store ------------------------------------------------------ */

/* The buffer is written out once it holds this much (whole lines), so that
 * a batch of big traces (a burst at shutdown, 512 traces of ~10 KB) does
 * not grow it to many MiB; or once it holds this many lines (two pieces
 * each in one writev(), within IOV_MAX = 1024). */
#define FILE_WRITE_BYTES (256u << 10)
#define FILE_WRITE_LINES 500

/* Each line is serialized in two pieces, neither copied again: the line
 * without its spans (in buf) and the spans (in spans); cut_b[i] is where
 * line i's spans go in buf, cut_s[i] where they end in spans. */
typedef struct file_exp {
  mlt_exporter base;
  char *path;
  int fd;
  mlt__buf buf, spans;
  size_t nlines;
  size_t cut_b[FILE_WRITE_LINES], cut_s[FILE_WRITE_LINES];
} file_exp;

static int writev_all(int fd, struct iovec *iov, int cnt) {
  while (cnt > 0) {
    ssize_t w = writev(fd, iov, cnt);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    size_t left = (size_t)w;
    while (cnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

/* Append the pieces as one unit: under an exclusive advisory lock, with
 * O_APPEND, and cut back to the old end on failure so the file never holds
 * a partial line. */
static int append_locked(int fd, struct iovec *iov, int cnt, int *err) {
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) break; /* no lock support: O_APPEND alone */
  }
  off_t end = lseek(fd, 0, SEEK_END);
  int rc = writev_all(fd, iov, cnt);
  if (rc) {
    *err = errno;
    if (end >= 0 && ftruncate(fd, end) != 0) {
      /* nothing more to do: report the write error */
    }
  }
  flock(fd, LOCK_UN);
  return rc;
}

/* Write the lines held (whole lines) to the file; NULL, or why not. */
static const char *file_write(file_exp *f, char *msg, size_t msg_size) {
  if (f->buf.oom || f->spans.oom) return "out of memory while serializing";
  if (f->fd < 0) {
    f->fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd < 0) {
      snprintf(msg, msg_size, "cannot open %s: %s", f->path, strerror(errno));
      return msg;
    }
  }
  struct iovec iov[2 * FILE_WRITE_LINES + 1];
  int cnt = 0;
  size_t b = 0, sp = 0;
  for (size_t i = 0; i < f->nlines; i++) {
    iov[cnt++] = (struct iovec){f->buf.p + b, f->cut_b[i] - b};
    iov[cnt++] = (struct iovec){f->spans.p ? f->spans.p + sp : NULL, f->cut_s[i] - sp};
    b = f->cut_b[i];
    sp = f->cut_s[i];
  }
  iov[cnt++] = (struct iovec){f->buf.p + b, f->buf.len - b};
  int err = 0;
  mlt__stats_add(MLT__ST_EXPORT_REQUESTS, 1);
  if (append_locked(f->fd, iov, cnt, &err) != 0) {
    snprintf(msg, msg_size, "cannot write %s: %s", f->path, strerror(err));
    close(f->fd);
    f->fd = -1; /* reopen next time (the file may have been rotated) */
    return msg;
  }
  mlt__stats_add(MLT__ST_EXPORT_BYTES, f->buf.len + f->spans.len);
  return NULL;
}

static void file_reset(file_exp *f) {
  mlt__buf_reset(&f->buf);
  mlt__buf_reset(&f->spans);
  f->nlines = 0;
}

static void file_export(mlt_exporter *e, mlt__prepared *const *traces, size_t n) {
  file_exp *f = (file_exp *)e;
  const char *why = NULL;
  char msg[300];
  size_t done = 0; /* traces reported */
  file_reset(f);
  for (size_t i = 0; i < n; i++) {
    f->cut_b[f->nlines] = mlt__json_trace_split(&f->buf, &f->spans, traces[i], mlt__prepared_info(traces[i]));
    f->cut_s[f->nlines++] = f->spans.len;
    if (i + 1 < n && f->buf.len + f->spans.len < FILE_WRITE_BYTES && f->nlines < FILE_WRITE_LINES && !f->buf.oom &&
        !f->spans.oom)
      continue;
    why = file_write(f, msg, sizeof msg);
    file_reset(f);
    for (; done <= i; done++) mlt__export_done(e, traces[done]->ticket, why == NULL, why);
    if (why) break; /* the rest of the batch fails with it */
  }
  for (; done < n; done++) mlt__export_done(e, traces[done]->ticket, 0, why);
  /* do not keep a huge buffer (one huge trace) */
  if (f->buf.cap > (1u << 20)) mlt__buf_free(&f->buf);
  if (f->spans.cap > (1u << 20)) mlt__buf_free(&f->spans);
}

static void file_destroy(mlt_exporter *e) {
  file_exp *f = (file_exp *)e;
  if (f->fd >= 0) close(f->fd);
  mlt__buf_free(&f->buf);
  mlt__buf_free(&f->spans);
  free(f->path);
  free(f);
}

static const mlt__exporter_ops file_ops = {.name = "file", .export_batch = file_export, .destroy = file_destroy};

int mlt__exporter_file_new(const char *path, mlt_exporter **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!path) path = mlt__getenv("MLTRACE_FILE");
  if (!path) path = "traces.jsonl";
  file_exp *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return MLT_ENOMEM;
  }
  f->base.ops = &file_ops;
  f->fd = -1;
  *out = &f->base;
  return MLT_OK;
}

int mlt_exporter_file_new(const char *path, mlt_exporter **out) { return mlt__exporter_file_new(path, out); }

/* For lib/export/assess.c (update lines of trace operations). */
const char *mlt__exporter_file_path(const mlt_exporter *e) {
  return e->ops == &file_ops ? ((const file_exp *)e)->path : NULL;
}

/* ---- in-memory store ------------------------------------------------- */

struct mlt_memory_store {
  _Atomic int refs;
  pthread_mutex_t mu;
  char **items;
  size_t n, cap;
};

mlt_memory_store *mlt_memory_store_new(void) {
  mlt_memory_store *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->mu, NULL);
  return s;
}

void mlt_memory_store_clear(mlt_memory_store *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n; i++) free(s->items[i]);
  s->n = 0;
  pthread_mutex_unlock(&s->mu);
}

void mlt_memory_store_release(mlt_memory_store *s) {
  if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
  mlt_memory_store_clear(s);
  free(s->items);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

size_t mlt_memory_store_count(mlt_memory_store *s) {
  if (!s) return 0;
  pthread_mutex_lock(&s->mu);
  size_t n = s->n;
  pthread_mutex_unlock(&s->mu);
  return n;
}

char *mlt_memory_store_get(mlt_memory_store *s, size_t i) {
  if (!s) return NULL;
  pthread_mutex_lock(&s->mu);
  char *c = i < s->n ? strdup(s->items[i]) : NULL;
  pthread_mutex_unlock(&s->mu);
  return c;
}

static int store_add(mlt_memory_store *s, const char *json, size_t len) {
  char *c = mlt__strndup(json, len);
  if (!c) return MLT_ENOMEM;
  pthread_mutex_lock(&s->mu);
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    char **ni = realloc(s->items, cap * sizeof *ni);
    if (!ni) {
      pthread_mutex_unlock(&s->mu);
      free(c);
      return MLT_ENOMEM;
    }
    s->items = ni;
    s->cap = cap;
  }
  s->items[s->n++] = c;
  pthread_mutex_unlock(&s->mu);
  return MLT_OK;
}

/* ---- callback exporter (the memory store is one) --------------------- */

typedef struct cb_exp {
  mlt_exporter base;
  mlt_export_fn fn;
  void *ud;
  mlt_memory_store *store;
  mlt__buf buf;
} cb_exp;

static void cb_export(mlt_exporter *e, mlt__prepared *const *traces, size_t n) {
  cb_exp *c = (cb_exp *)e;
  for (size_t i = 0; i < n; i++) {
    if (mlt__export_deadline_passed(e)) {
      mlt__export_done(e, traces[i]->ticket, 0, MLT__DEADLINE_REASON);
      continue;
    }
    mlt__buf_reset(&c->buf);
    mlt__json_trace(&c->buf, traces[i], mlt__prepared_info(traces[i]));
    if (c->buf.oom) {
      mlt__export_done(e, traces[i]->ticket, 0, "out of memory while serializing");
      continue;
    }
    /* Drop the trailing newline: callbacks get one JSON document. */
    size_t len = c->buf.len;
    if (len && c->buf.p[len - 1] == '\n') len--;
    c->buf.p[len] = '\0';
    int rc = c->store ? store_add(c->store, c->buf.p, len) : c->fn(c->buf.p, len, c->ud);
    mlt__export_done(e, traces[i]->ticket, rc == 0, rc ? mlt_strerror(rc) : NULL);
  }
}

static void cb_destroy(mlt_exporter *e) {
  cb_exp *c = (cb_exp *)e;
  mlt_memory_store_release(c->store);
  mlt__buf_free(&c->buf);
  free(c);
}

static const mlt__exporter_ops cb_ops = {.name = "callback", .export_batch = cb_export, .destroy = cb_destroy};
static const mlt__exporter_ops mem_ops = {.name = "memory", .export_batch = cb_export, .destroy = cb_destroy};

int mlt_exporter_callback_new(mlt_export_fn fn, void *ud, mlt_exporter **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!fn) return MLT_EINVAL;
  cb_exp *c = calloc(1, sizeof *c);
  if (!c) return MLT_ENOMEM;
  c->base.ops = &cb_ops;
  c->fn = fn;
  c->ud = ud;
  *out = &c->base;
  return MLT_OK;
}

int mlt_exporter_memory_new(mlt_memory_store *store, mlt_exporter **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!store) return MLT_EINVAL;
  cb_exp *c = calloc(1, sizeof *c);
  if (!c) return MLT_ENOMEM;
  c->base.ops = &mem_ops;
  atomic_fetch_add(&store->refs, 1);
  c->store = store;
  *out = &c->base;
  return MLT_OK;
}

/* ---- discard --------------------------------------------------------- */

static void discard_export(mlt_exporter *e, mlt__prepared *const *traces, size_t n) {
  for (size_t i = 0; i < n; i++) mlt__export_done(e, traces[i]->ticket, 1, NULL);
}

static void discard_destroy(mlt_exporter *e) { free(e); }

static const mlt__exporter_ops discard_ops = {
    .name = "discard", .export_batch = discard_export, .destroy = discard_destroy};

int mlt_exporter_discard_new(mlt_exporter **out) {
  if (!out) return MLT_EINVAL;
  mlt_exporter *e = calloc(1, sizeof *e);
  *out = e;
  if (!e) return MLT_ENOMEM;
  e->ops = &discard_ops;
  return MLT_OK;
}
