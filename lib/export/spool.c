/* lib/export/spool.c: the durable spool of the network exporters.
 *
 * What a network exporter cannot deliver for a transient reason (server
 * down, too slow past the retry budget, shutdown deadline) is appended here
 * and delivered later -- by this process when the server answers again, or
 * by the next process that starts with the same spool directory and
 * destination, also after this one was killed.
 *
 * Layout: <dir>/<kind>-<16 hex of the destination>/ holds append-only
 * segment files "<ns since epoch>-<pid>-<seq>.spool".  A segment starts with
 * a 32-byte header (magic "MLTSPOOL", version, the offset up to which every
 * record was delivered) followed by records:
 *     u32 magic, u32 payload length, u32 CRC-32 of the payload, payload
 *     payload: u32 traces, u64 OTLP length, OTLP bytes,
 *              then per trace: u32 length, StartTraceV3 part
 * A record is written with one write(): after a crash (kill -9 of the
 * application) every completed write() is in the file -- the kernel has it
 * -- and a torn last record fails its length or CRC check and is skipped.
 * fsync policy: fdatasync() of the segment being written at most once a
 * second while records arrive, and when it is closed; the directory is
 * fsync'ed when a segment is created.  A power loss can thus lose the last
 * second of spooled traces; a killed process loses nothing.
 *
 * A process holds an exclusive flock() on every segment it writes or
 * replays; segments nobody holds (their writer exited or was killed) are
 * adopted and replayed.  Delivery is at least once: a record is forgotten
 * (its segment deleted once every record in it is) only after the server
 * acknowledged it, so a crash mid-replay sends some records again -- which
 * MLflow's idempotent writes absorb.
 *
 * Bounded in bytes per destination directory (what this process sees in
 * it): the oldest segments are evicted, their traces counted.  Everything
 * here runs on the export thread; no application thread ever waits for it.
 */
#include "export/spool-internal.h"

#include "export/exporter-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SEG_MAGIC "MLTSPOOL"
#define SEG_VERSION 1u
#define SEG_HDR 32u /* magic 8, version 4, reserved 4, acked-up-to 8, reserved 8 */
#define SEG_ACKED_OFF 16
#define REC_MAGIC 0x4d4c5452u /* "MLTR" */
#define REC_HDR 12u
#define SEG_MAX_BYTES ((uint64_t)16 << 20)
#define REC_MAX_BYTES ((uint64_t)1 << 31)
#define SCAN_INTERVAL_NS (10 * 1000000000LL)
#define SYNC_INTERVAL_NS (1000000000LL)

typedef struct pend {
  uint64_t off, end;
} pend;

typedef struct mlt__spool_seg {
  struct mlt__spool_seg *next;
  char *path;
  int fd;
  int writing;         /* this process appends to it */
  int dirty;           /* written since the last fdatasync */
  uint64_t size;       /* end of the valid records */
  uint64_t read_off;   /* next record to take */
  uint64_t acked;      /* every record before this is done (persisted in the header) */
  pend *pend;          /* taken, not done (in file order) */
  size_t n_pend, cap_pend;
} seg;

struct mlt__spool {
  struct mlt__spool *next_open; /* every open spool (fork) */
  char *dir;
  int dir_made;
  seg *segs;   /* oldest first */
  seg *writer; /* the segment being appended to, or NULL */
  uint64_t max_bytes, seg_max;
  uint64_t bytes;        /* our segments */
  uint64_t others_bytes; /* segments other live processes hold (last scan) */
  uint32_t seq;
  int64_t next_scan_ns, last_sync_ns;
  int broken; /* could not create the directory: off (logged once) */
};

static pthread_mutex_t g_open_mu = PTHREAD_MUTEX_INITIALIZER;
static mlt__spool *g_open;

/* ---- small helpers ---------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off) {
  char *p = buf;
  while (n) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

/* pwritev(), not O_APPEND: on Linux a pwrite() to a file opened with
 * O_APPEND appends, and the header's acked offset is rewritten in place. */
static int write_all(int fd, struct iovec *iov, int n, uint64_t off) {
  while (n) {
    ssize_t w = pwritev(fd, iov, n, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    size_t left = (size_t)w;
    off += (uint64_t)w;
    while (n && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      n--;
    }
    if (n) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (; *s; s++) h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
  return h;
}

static int mkdir_p(const char *path) {
  char *p = strdup(path);
  if (!p) return -1;
  for (char *q = p + 1; *q; q++) {
    if (*q != '/') continue;
    *q = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      free(p);
      return -1;
    }
    *q = '/';
  }
  int rc = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
  free(p);
  return rc;
}

static void fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* The default directory: $XDG_STATE_HOME/mltrace/spool, else
 * ~/.local/state/mltrace/spool, else /tmp/mltrace-spool-<uid>. */
static char *default_dir(void) {
  const char *xdg = mlt__getenv("XDG_STATE_HOME"), *home = mlt__getenv("HOME");
  char buf[4096];
  if (xdg && xdg[0] == '/')
    snprintf(buf, sizeof buf, "%s/mltrace/spool", xdg);
  else if (home && home[0] == '/')
    snprintf(buf, sizeof buf, "%s/.local/state/mltrace/spool", home);
  else
    snprintf(buf, sizeof buf, "/tmp/mltrace-spool-%lu", (unsigned long)getuid());
  return strdup(buf);
}

/* ---- open / close ----------------------------------------------------- */

mlt__spool *mlt__spool_open(const char *kind, const char *target, const mlt__spool_settings *c) {
  if (!c || !c->enabled) return NULL;
  char *base = c->dir && c->dir[0] ? strdup(c->dir) : default_dir();
  mlt__spool *s = base ? calloc(1, sizeof *s) : NULL;
  if (s) {
    size_t n = strlen(base) + strlen(kind) + 24;
    s->dir = malloc(n);
    if (s->dir) snprintf(s->dir, n, "%s/%s-%016llx", base, kind, (unsigned long long)fnv1a(target));
  }
  free(base);
  if (!s || !s->dir) {
    free(s);
    return NULL;
  }
  s->max_bytes = c->max_bytes ? c->max_bytes : ((uint64_t)1 << 30);
  s->seg_max = MLT_MIN(SEG_MAX_BYTES, MLT_MAX(s->max_bytes / 8, (uint64_t)65536));
  pthread_mutex_lock(&g_open_mu);
  s->next_open = g_open;
  g_open = s;
  pthread_mutex_unlock(&g_open_mu);
  return s;
}

static void seg_close(seg *g, int unlink_it) {
  if (g->fd >= 0) {
    if (g->dirty) fdatasync(g->fd);
    if (unlink_it) unlink(g->path); /* while still locked: nobody adopts it meanwhile */
    close(g->fd);                   /* releases the lock */
  }
  free(g->path);
  free(g->pend);
  free(g);
}

void mlt__spool_close(mlt__spool *s) {
  if (!s) return;
  pthread_mutex_lock(&g_open_mu);
  for (mlt__spool **pp = &g_open; *pp; pp = &(*pp)->next_open)
    if (*pp == s) {
      *pp = s->next_open;
      break;
    }
  pthread_mutex_unlock(&g_open_mu);
  seg *g;
  while ((g = s->segs) != NULL) {
    s->segs = g->next;
    /* A segment whose every record was delivered goes; the rest stays for
     * a later run. */
    seg_close(g, g->read_off >= g->size && g->n_pend == 0 && g->acked >= g->size);
  }
  free(s->dir);
  free(s);
}

void mlt__spool_atfork_child(void) {
  /* The child must not touch the parent's files (the parent may still be
   * writing them): close its copies of the descriptors and forget the
   * rest.  Closing a copy does not release the parent's flock. */
  pthread_mutex_init(&g_open_mu, NULL);
  for (mlt__spool *s = g_open; s; s = s->next_open)
    for (seg *g = s->segs; g; g = g->next)
      if (g->fd >= 0) {
        close(g->fd);
        g->fd = -1;
      }
  g_open = NULL;
}

/* ---- segments --------------------------------------------------------- */

static void seg_insert(mlt__spool *s, seg *g) {
  /* Names start with the creation time: keep the list oldest first. */
  const char *gn = strrchr(g->path, '/');
  seg **pp = &s->segs;
  while (*pp && strcmp(strrchr((*pp)->path, '/'), gn) < 0) pp = &(*pp)->next;
  g->next = *pp;
  *pp = g;
}

static void seg_unlink_from(mlt__spool *s, seg *g) {
  for (seg **pp = &s->segs; *pp; pp = &(*pp)->next)
    if (*pp == g) {
      *pp = g->next;
      break;
    }
  if (s->writer == g) s->writer = NULL;
  s->bytes -= MLT_MIN(s->bytes, g->size);
}

static int ensure_dir(mlt__spool *s) {
  if (s->dir_made) return 0;
  if (s->broken) return -1;
  if (mkdir_p(s->dir) != 0) {
    s->broken = 1;
    mlt__log(MLT_LOG_ERROR, MLT__LOGK_SPOOL, "cannot create the spool directory %s: %s; spool off", s->dir,
             strerror(errno));
    return -1;
  }
  s->dir_made = 1;
  return 0;
}

static seg *seg_new_writer(mlt__spool *s) {
  if (ensure_dir(s) != 0) return NULL;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  size_t n = strlen(s->dir) + 80;
  char *path = malloc(n);
  if (!path) return NULL;
  snprintf(path, n, "%s/%lld%09ld-%ld-%u.spool", s->dir, (long long)ts.tv_sec, ts.tv_nsec, (long)getpid(), s->seq++);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    mlt__log(MLT_LOG_ERROR, MLT__LOGK_SPOOL, "cannot create spool file %s: %s", path, strerror(errno));
    free(path);
    return NULL;
  }
  flock(fd, LOCK_EX); /* new and ours: never contended */
  unsigned char hdr[SEG_HDR];
  memset(hdr, 0, sizeof hdr);
  memcpy(hdr, SEG_MAGIC, 8);
  put32(hdr + 8, SEG_VERSION);
  put64(hdr + SEG_ACKED_OFF, SEG_HDR);
  struct iovec iov = {hdr, sizeof hdr};
  seg *g = calloc(1, sizeof *g);
  if (!g || write_all(fd, &iov, 1, 0) != 0) {
    mlt__log(MLT_LOG_ERROR, MLT__LOGK_SPOOL, "cannot write spool file %s: %s", path, strerror(errno));
    free(g);
    unlink(path);
    close(fd);
    free(path);
    return NULL;
  }
  fsync_dir(s->dir);
  g->path = path;
  g->fd = fd;
  g->writing = 1;
  g->size = g->read_off = g->acked = SEG_HDR;
  s->bytes += SEG_HDR;
  seg_insert(s, g);
  return g;
}

/* Adopt the segments nobody holds (left by a process that exited or was
 * killed), and measure what live processes hold. */
static void scan(mlt__spool *s) {
  s->next_scan_ns = mlt__mono_ns() + SCAN_INTERVAL_NS;
  DIR *d = opendir(s->dir);
  if (!d) return;
  s->dir_made = 1;
  uint64_t others = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l < 7 || strcmp(e->d_name + l - 6, ".spool")) continue;
    int known = 0;
    for (seg *g = s->segs; g && !known; g = g->next) known = !strcmp(strrchr(g->path, '/') + 1, e->d_name);
    if (known) continue;
    size_t n = strlen(s->dir) + l + 2;
    char *path = malloc(n);
    if (!path) break;
    snprintf(path, n, "%s/%s", s->dir, e->d_name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
      if (fd >= 0) close(fd);
      free(path);
      continue;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) { /* a live process holds it */
      others += (uint64_t)st.st_size;
      close(fd);
      free(path);
      continue;
    }
    /* Ours now.  It may have been deleted by its last replayer between our
     * readdir() and flock(): then it is gone from the directory. */
    struct stat st2;
    unsigned char hdr[SEG_HDR];
    if (stat(path, &st2) != 0 || st2.st_ino != st.st_ino || (uint64_t)st.st_size < SEG_HDR ||
        pread_all(fd, hdr, SEG_HDR, 0) != 0 || memcmp(hdr, SEG_MAGIC, 8) != 0 || get32(hdr + 8) != SEG_VERSION) {
      if (stat(path, &st2) == 0 && st2.st_ino == st.st_ino && (uint64_t)st.st_size < SEG_HDR) unlink(path);
      close(fd);
      free(path);
      continue;
    }
    seg *g = calloc(1, sizeof *g);
    if (!g) {
      close(fd);
      free(path);
      break;
    }
    g->path = path;
    g->fd = fd;
    g->size = (uint64_t)st.st_size;
    uint64_t acked = get64(hdr + SEG_ACKED_OFF);
    g->acked = g->read_off = acked >= SEG_HDR && acked <= g->size ? acked : SEG_HDR;
    s->bytes += g->size;
    seg_insert(s, g);
    mlt__log(MLT_LOG_INFO, MLT__LOGK_SPOOL, "spool: adopted %s (%llu bytes to deliver)", path,
             (unsigned long long)(g->size - g->read_off));
  }
  closedir(d);
  s->others_bytes = others;
}

/* Traces in the records of |g| from |off| to its end (reading headers
 * only). */
static uint64_t count_traces(seg *g, uint64_t off) {
  uint64_t n = 0;
  while (off + REC_HDR + 4 <= g->size) {
    unsigned char h[REC_HDR + 4];
    if (pread_all(g->fd, h, sizeof h, off) != 0 || get32(h) != REC_MAGIC) break;
    n += get32(h + REC_HDR);
    off += REC_HDR + get32(h + 4);
  }
  return n;
}

/* Make room for |need| more bytes: evict the oldest segments that no
 * record is being delivered from. */
static void make_room(mlt__spool *s, uint64_t need) {
  while (s->bytes + s->others_bytes + need > s->max_bytes) {
    seg *victim = NULL;
    for (seg *g = s->segs; g && !victim; g = g->next)
      if (g->n_pend == 0 && g != s->writer) victim = g;
    if (!victim) return;
    uint64_t lost = count_traces(victim, victim->read_off);
    mlt__stats_add(MLT__ST_TRACES_EVICTED, lost);
    mlt__log(MLT_LOG_WARN, MLT__LOGK_SPOOL,
             "spool full (MLTRACE_SPOOL_MAX_BYTES=%llu): evicted %llu undelivered trace(s), the oldest",
             (unsigned long long)s->max_bytes, (unsigned long long)lost);
    seg_unlink_from(s, victim);
    seg_close(victim, 1);
  }
}

/* ---- writing ---------------------------------------------------------- */

int mlt__spool_put(mlt__spool *s, const char *otlp, size_t otlp_len, uint32_t n, const mlt__buf *const *infos,
                   size_t n_infos) {
  if (!s || s->broken) return -1;
  if (!s->dir_made || mlt__mono_ns() >= s->next_scan_ns) scan(s);
  /* payload head: traces, OTLP length; then per-trace lengths */
  size_t n_iov = 3 + (size_t)n * 2;
  struct iovec *iov = calloc(n_iov, sizeof *iov);
  unsigned char *lens = calloc((size_t)n + 1, 4);
  if (!iov || !lens) {
    free(iov);
    free(lens);
    return -1;
  }
  unsigned char rec[REC_HDR], head[12];
  put32(head, n);
  put64(head + 4, otlp_len);
  uint64_t plen = sizeof head + otlp_len;
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, head, sizeof head);
  if (otlp_len) crc = crc32(crc, (const Bytef *)otlp, (uInt)otlp_len);
  iov[0] = (struct iovec){rec, sizeof rec};
  iov[1] = (struct iovec){head, sizeof head};
  iov[2] = (struct iovec){(void *)otlp, otlp_len};
  for (uint32_t i = 0; i < n; i++) {
    const mlt__buf *b = i < n_infos && infos ? infos[i] : NULL;
    size_t l = b ? b->len : 0;
    put32(lens + 4 * i, (uint32_t)l);
    iov[3 + 2 * i] = (struct iovec){lens + 4 * i, 4};
    iov[4 + 2 * i] = (struct iovec){b && l ? b->p : NULL, l};
    crc = crc32(crc, lens + 4 * i, 4);
    if (l) crc = crc32(crc, (const Bytef *)b->p, (uInt)l);
    plen += 4 + l;
  }
  int rc = -1;
  if (plen + REC_HDR > REC_MAX_BYTES) goto out;
  put32(rec, REC_MAGIC);
  put32(rec + 4, (uint32_t)plen);
  put32(rec + 8, (uint32_t)crc);
  make_room(s, plen + REC_HDR);
  if (s->bytes + s->others_bytes + plen + REC_HDR > s->max_bytes && s->bytes > SEG_HDR) {
    mlt__log(MLT_LOG_WARN, MLT__LOGK_SPOOL, "spool full (MLTRACE_SPOOL_MAX_BYTES=%llu): %u trace(s) not spooled",
             (unsigned long long)s->max_bytes, n);
    goto out;
  }
  if (s->writer && s->writer->size + plen + REC_HDR > s->seg_max && s->writer->size > SEG_HDR) {
    if (s->writer->dirty) fdatasync(s->writer->fd);
    s->writer->dirty = 0;
    s->writer->writing = 0;
    s->writer = NULL;
  }
  if (!s->writer) s->writer = seg_new_writer(s);
  seg *g = s->writer;
  if (!g) goto out;
  if (write_all(g->fd, iov, (int)n_iov, g->size) != 0) {
    mlt__log(MLT_LOG_ERROR, MLT__LOGK_SPOOL, "cannot write spool file %s: %s", g->path, strerror(errno));
    /* Cut a partial record off, so that the file stays valid. */
    if (ftruncate(g->fd, (off_t)g->size) != 0) {
      /* the CRC check skips it at replay */
    }
    goto out;
  }
  g->size += REC_HDR + plen;
  s->bytes += REC_HDR + plen;
  g->dirty = 1;
  int64_t now = mlt__mono_ns();
  if (now - s->last_sync_ns >= SYNC_INTERVAL_NS) {
    fdatasync(g->fd);
    g->dirty = 0;
    s->last_sync_ns = now;
  }
  rc = 0;
out:
  free(iov);
  free(lens);
  return rc;
}

/* ---- replay ----------------------------------------------------------- */

static void rec_free(mlt__spool_rec *r) {
  if (!r) return;
  mlt__buf_free(&r->otlp);
  if (r->infos)
    for (uint32_t i = 0; i < r->n_traces; i++) mlt__buf_free(&r->infos[i]);
  free(r->infos);
  free(r);
}

/* Read the record at g->read_off; NULL at the end or at a damaged record
 * (then the segment ends there). */
static mlt__spool_rec *read_rec(seg *g) {
  unsigned char h[REC_HDR];
  uint64_t off = g->read_off;
  if (off + REC_HDR > g->size) return NULL;
  if (pread_all(g->fd, h, REC_HDR, off) != 0 || get32(h) != REC_MAGIC) goto bad;
  uint64_t plen = get32(h + 4);
  if (plen < 12 || off + REC_HDR + plen > g->size) goto bad;
  unsigned char *p = malloc(plen);
  if (!p) return NULL;
  if (pread_all(g->fd, p, plen, off + REC_HDR) != 0 || (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)plen) != get32(h + 8)) {
    free(p);
    goto bad;
  }
  mlt__spool_rec *r = calloc(1, sizeof *r);
  uint32_t n = get32(p);
  uint64_t olen = get64(p + 4);
  if (!r || olen > plen - 12 || n > (plen - 12 - olen) / 4) {
    free(r);
    free(p);
    goto bad;
  }
  r->n_traces = n;
  r->infos = calloc(n ? n : 1, sizeof *r->infos);
  if (olen) mlt__buf_put(&r->otlp, (const char *)p + 12, olen);
  if (!r->infos || r->otlp.oom) {
    free(p);
    rec_free(r);
    return NULL;
  }
  uint64_t q = 12 + olen;
  for (uint32_t i = 0; i < n; i++) {
    if (q + 4 > plen) break;
    uint32_t l = get32(p + q);
    q += 4;
    if (q + l > plen) break;
    if (l) mlt__buf_put(&r->infos[i], (const char *)p + q, l);
    q += l;
  }
  free(p);
  r->seg = g;
  r->off = off;
  g->read_off = off + REC_HDR + plen;
  return r;
bad:
  mlt__log(MLT_LOG_WARN, MLT__LOGK_SPOOL, "spool file %s: damaged record at offset %llu (an interrupted write?): "
           "the rest of the file is skipped", g->path, (unsigned long long)off);
  g->size = off;
  return NULL;
}

int mlt__spool_take(mlt__spool *s, mlt__spool_rec **out) {
  *out = NULL;
  if (!s || s->broken) return 0;
  if (mlt__mono_ns() >= s->next_scan_ns) scan(s);
  for (seg *g = s->segs; g; g = g->next) {
    if (g->read_off >= g->size) continue;
    if (g->n_pend == g->cap_pend) {
      size_t cap = g->cap_pend ? g->cap_pend * 2 : 8;
      pend *np = realloc(g->pend, cap * sizeof *np);
      if (!np) return 0;
      g->pend = np;
      g->cap_pend = cap;
    }
    mlt__spool_rec *r = read_rec(g);
    if (!r) continue;
    g->pend[g->n_pend++] = (pend){r->off, g->read_off};
    *out = r;
    return 1;
  }
  return 0;
}

/* |off| is no longer being delivered (acknowledged, or handed back). */
static void pend_remove(seg *g, uint64_t off) {
  for (size_t i = 0; i < g->n_pend; i++)
    if (g->pend[i].off == off) {
      memmove(g->pend + i, g->pend + i + 1, (g->n_pend - i - 1) * sizeof *g->pend);
      g->n_pend--;
      return;
    }
}

void mlt__spool_done(mlt__spool *s, mlt__spool_rec *r) {
  if (!s || !r) {
    rec_free(r);
    return;
  }
  seg *g = r->seg;
  pend_remove(g, r->off);
  rec_free(r);
  /* Everything before the oldest record still being delivered is done:
   * persist that, so that a later run does not send it again. */
  uint64_t acked = g->n_pend ? g->pend[0].off : g->read_off;
  if (acked > g->acked) {
    unsigned char b[8];
    put64(b, acked);
    if (pwrite(g->fd, b, 8, SEG_ACKED_OFF) == 8) g->acked = acked;
  }
  if (g->n_pend == 0 && g->read_off >= g->size) {
    /* Fully delivered: the file goes (the writer starts a new one). */
    seg_unlink_from(s, g);
    seg_close(g, 1);
  }
}

void mlt__spool_release(mlt__spool *s, mlt__spool_rec *r) {
  if (!s || !r) {
    rec_free(r);
    return;
  }
  seg *g = r->seg;
  pend_remove(g, r->off);
  if (r->off < g->read_off) g->read_off = r->off;
  rec_free(r);
}

void mlt__spool_replayed_outcome(mlt__spool *s, int outcome, const char *why) {
  (void)s;
  if (outcome == MLT__OUT_OK) {
    mlt__stats_add(MLT__ST_TRACES_REPLAYED, 1);
  } else if (outcome != MLT__OUT_SPOOLED) {
    mlt__stats_add(MLT__ST_TRACES_EVICTED, 1);
    mlt__log(MLT_LOG_WARN, MLT__LOGK_SPOOL, "a spooled trace was refused by the server and removed from the spool: %s",
             why ? why : "unknown error");
  }
}

uint64_t mlt__spool_waiting(const mlt__spool *s) {
  uint64_t n = 0;
  if (!s) return 0;
  for (const seg *g = s->segs; g; g = g->next) n += g->size > g->read_off ? g->size - g->read_off : 0;
  return n;
}
