/* integrations/event/evhttp.c: evhttp server instrumentation (a span per
 * request, ended on reply completion or disconnect), reply wrappers that
 * record the body or the streamed chunks, and outbound traceparent. */
#include <mltrace/event.h>

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#define MAX_HEADERS 64
#define MAX_NAME_PATH 256
#define DEFAULT_MAX_BODY 65536

/* ==== options ========================================================= */

struct mlt_evhttp_options {
  char *span_name;
  mlt_span_type span_type;
  char *headers[MAX_HEADERS]; /* lowercase */
  size_t header_lens[MAX_HEADERS];
  size_t n_headers;
  size_t max_body;
  int accept_traceparent;
  mlt_evhttp_done_fn done_cb;
  void *done_ud;
};

static const char *const default_headers[] = {"content-type", "user-agent", "accept"};
static const char *const forbidden_headers[] = {"authorization", "proxy-authorization", "cookie", "set-cookie"};

static void options_clear_headers(mlt_evhttp_options *o) {
  for (size_t i = 0; i < o->n_headers; i++) free(o->headers[i]);
  o->n_headers = 0;
}

void mlt_evhttp_options_free(mlt_evhttp_options *o) {
  if (!o) return;
  options_clear_headers(o);
  free(o->span_name);
  free(o);
}

int mlt_evhttp_options_new(mlt_evhttp_options **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  mlt_evhttp_options *o = calloc(1, sizeof *o);
  if (!o) return MLT_ENOMEM;
  o->span_type = MLT_SPAN_CHAIN;
  o->max_body = DEFAULT_MAX_BODY;
  o->accept_traceparent = 1;
  for (size_t i = 0; i < sizeof default_headers / sizeof *default_headers; i++) {
    if (mlt_evhttp_options_allow_header(o, default_headers[i]) != MLT_OK) {
      mlt_evhttp_options_free(o);
      return MLT_ENOMEM;
    }
  }
  *out = o;
  return MLT_OK;
}

int mlt_evhttp_options_set_span_name(mlt_evhttp_options *o, const char *name) {
  if (!o) return MLT_EINVAL;
  char *copy = NULL;
  if (name && !(copy = strdup(name))) return MLT_ENOMEM;
  free(o->span_name);
  o->span_name = copy;
  return MLT_OK;
}

int mlt_evhttp_options_set_span_type(mlt_evhttp_options *o, mlt_span_type type) {
  if (!o || (int)type < 0 || type >= MLT__SPAN_TYPE_COUNT) return MLT_EINVAL;
  o->span_type = type;
  return MLT_OK;
}

int mlt_evhttp_options_allow_header(mlt_evhttp_options *o, const char *name) {
  if (!o || !name || !*name) return MLT_EINVAL;
  for (size_t i = 0; i < sizeof forbidden_headers / sizeof *forbidden_headers; i++)
    if (strcasecmp(name, forbidden_headers[i]) == 0) return MLT_EINVAL;
  for (size_t i = 0; i < o->n_headers; i++)
    if (strcasecmp(name, o->headers[i]) == 0) return MLT_OK;
  if (o->n_headers >= MAX_HEADERS) return MLT_EFULL;
  char *copy = strdup(name);
  if (!copy) return MLT_ENOMEM;
  for (char *p = copy; *p; p++) *p = (char)tolower((unsigned char)*p);
  o->header_lens[o->n_headers] = strlen(copy);
  o->headers[o->n_headers++] = copy;
  return MLT_OK;
}

int mlt_evhttp_options_clear_headers(mlt_evhttp_options *o) {
  if (!o) return MLT_EINVAL;
  options_clear_headers(o);
  return MLT_OK;
}

int mlt_evhttp_options_set_max_body_bytes(mlt_evhttp_options *o, size_t bytes) {
  if (!o || bytes > ((size_t)1 << 30)) return MLT_EINVAL;
  o->max_body = bytes;
  return MLT_OK;
}

int mlt_evhttp_options_set_accept_traceparent(mlt_evhttp_options *o, int accept) {
  if (!o) return MLT_EINVAL;
  o->accept_traceparent = accept ? 1 : 0;
  return MLT_OK;
}

int mlt_evhttp_options_set_done_cb(mlt_evhttp_options *o, mlt_evhttp_done_fn fn, void *user_data) {
  if (!o) return MLT_EINVAL;
  o->done_cb = fn;
  o->done_ud = user_data;
  return MLT_OK;
}

static int options_copy(const mlt_evhttp_options *src, mlt_evhttp_options *dst) {
  memset(dst, 0, sizeof *dst);
  dst->span_type = src->span_type;
  dst->max_body = src->max_body;
  dst->accept_traceparent = src->accept_traceparent;
  dst->done_cb = src->done_cb;
  dst->done_ud = src->done_ud;
  if (src->span_name && !(dst->span_name = strdup(src->span_name))) return MLT_ENOMEM;
  for (size_t i = 0; i < src->n_headers; i++) {
    if (!(dst->headers[i] = strdup(src->headers[i]))) return MLT_ENOMEM;
    dst->header_lens[i] = src->header_lens[i];
    dst->n_headers = i + 1;
  }
  return MLT_OK;
}

/* ==== request state and the request -> state map ===================== */

typedef struct req_state req_state;

struct mlt_evhttp {
  struct evhttp *http;
  mlt_evhttp_options opts;
  struct binding *bindings; /* per-path callbacks */
  struct binding *gen;      /* the generic callback */
  req_state *live;          /* requests whose span is open */
  int shutting_down;        /* mlt_evhttp_begin_shutdown() */
};

typedef struct binding {
  mlt_evhttp *inst;
  char *path; /* NULL for the generic callback */
  void (*cb)(struct evhttp_request *, void *);
  void *arg;
  struct binding *next;
} binding;

/* Reply body bytes [end - len, end) in the stream of bytes added to the
 * connection's output buffer (see the ledger below). */
typedef struct body_seg {
  uint64_t end, len;
} body_seg;

struct req_state {
  req_state *map_next;
  req_state *prev, *next; /* instance's live list */
  struct evhttp_request *req;
  struct evhttp_connection *evcon;
  mlt_evhttp *inst;
  mlt_span span;
  mlt_context *ctx; /* context of span, or NULL when not traced */
  void *data;       /* mlt_evhttp_request_set_data() */
  int code;         /* status code given to the reply wrappers */
  uint64_t reply_bytes;
  size_t recorded_bytes;
  /* The ledger: what of the reply body reached the socket.  Positions count
   * the bytes added to the connection's output buffer since the first body
   * write; the buffer holds the last evbuffer_get_length() of them, so what
   * lies before that was written to the socket (libevent drains the buffer
   * only as it writes, and evhttp calls the close callback before it drops
   * what is left). */
  uint64_t out_pos;   /* position of the output buffer's tail */
  uint64_t body_sent; /* body bytes of the segments known written */
  uint64_t body_written_at_close;
  body_seg *segs; /* segments possibly still buffered, oldest first */
  size_t seg_head, seg_n, seg_cap;
  unsigned recording : 1;
  unsigned via_wrapper : 1;
  unsigned reply_cut : 1;
  unsigned tracking : 1;       /* the ledger is in use */
  unsigned ledger_broken : 1;  /* the buffer shrank under a wrapper call: unknown */
  unsigned closed_by : 2;      /* CLOSED_BY_* when the connection closed first */
  unsigned te_known : 1;       /* |chunked| is set (the reply's headers are out) */
  unsigned chunked : 1;        /* the reply has Transfer-Encoding: chunked */
};

enum { CLOSED_BY_PEER = 1, CLOSED_BY_SERVER = 2 };

/* Requests are looked up from the reply wrappers, which get only the
 * evhttp_request (libevent 2.1 has no per-request user data).  Several
 * loops may run on several threads, so the map is global, sharded, each
 * shard a chained hash table under its own mutex. */
#define N_SHARDS 16

typedef struct shard {
  pthread_mutex_t mu;
  req_state **buckets;
  size_t n_buckets; /* power of two, or 0 */
  size_t count;
} shard;

static shard g_shards[N_SHARDS] = {
#define S PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0
    {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}, {S}
#undef S
};

static uint64_t ptr_hash(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static shard *shard_of(uint64_t h) { return &g_shards[h >> 60 & (N_SHARDS - 1)]; }

/* Live mlt_evhttp instances; the tables are freed with the last one so that
 * nothing stays allocated once every server is gone. */
static pthread_mutex_t g_inst_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned g_instances;

static void shards_release_tables(void) {
  for (int i = 0; i < N_SHARDS; i++) {
    shard *sh = &g_shards[i];
    pthread_mutex_lock(&sh->mu);
    if (sh->count == 0) {
      free(sh->buckets);
      sh->buckets = NULL;
      sh->n_buckets = 0;
    }
    pthread_mutex_unlock(&sh->mu);
  }
}

/* Caller holds sh->mu. */
static int shard_grow(shard *sh) {
  size_t n = sh->n_buckets ? sh->n_buckets * 2 : 64;
  req_state **b = calloc(n, sizeof *b);
  if (!b) return -1;
  for (size_t i = 0; i < sh->n_buckets; i++) {
    req_state *s = sh->buckets[i];
    while (s) {
      req_state *next = s->map_next;
      size_t k = ptr_hash(s->req) & (n - 1);
      s->map_next = b[k];
      b[k] = s;
      s = next;
    }
  }
  free(sh->buckets);
  sh->buckets = b;
  sh->n_buckets = n;
  return 0;
}

static int map_insert(req_state *st) {
  uint64_t h = ptr_hash(st->req);
  shard *sh = shard_of(h);
  pthread_mutex_lock(&sh->mu);
  if (sh->count >= sh->n_buckets && shard_grow(sh) != 0 && !sh->n_buckets) {
    pthread_mutex_unlock(&sh->mu);
    return -1;
  }
  size_t k = h & (sh->n_buckets - 1);
  st->map_next = sh->buckets[k];
  sh->buckets[k] = st;
  sh->count++;
  pthread_mutex_unlock(&sh->mu);
  return 0;
}

static void map_remove(req_state *st) {
  uint64_t h = ptr_hash(st->req);
  shard *sh = shard_of(h);
  pthread_mutex_lock(&sh->mu);
  if (sh->n_buckets) {
    req_state **pp = &sh->buckets[h & (sh->n_buckets - 1)];
    while (*pp && *pp != st) pp = &(*pp)->map_next;
    if (*pp) {
      *pp = st->map_next;
      sh->count--;
    }
  }
  pthread_mutex_unlock(&sh->mu);
}

/* Caller holds the shard's mutex. */
static req_state *map_find_locked(shard *sh, uint64_t h, const struct evhttp_request *req) {
  if (!sh->n_buckets) return NULL;
  for (req_state *s = sh->buckets[h & (sh->n_buckets - 1)]; s; s = s->map_next)
    if (s->req == req) return s;
  return NULL;
}

/* The state of |req| (loop thread: it cannot go away under the caller). */
static req_state *map_find(const struct evhttp_request *req) {
  if (!req) return NULL;
  uint64_t h = ptr_hash(req);
  shard *sh = shard_of(h);
  pthread_mutex_lock(&sh->mu);
  req_state *s = map_find_locked(sh, h, req);
  pthread_mutex_unlock(&sh->mu);
  return s;
}

/* ==== span start ====================================================== */

static const char *method_name(enum evhttp_cmd_type t) {
  switch (t) {
  case EVHTTP_REQ_GET: return "GET";
  case EVHTTP_REQ_POST: return "POST";
  case EVHTTP_REQ_HEAD: return "HEAD";
  case EVHTTP_REQ_PUT: return "PUT";
  case EVHTTP_REQ_DELETE: return "DELETE";
  case EVHTTP_REQ_OPTIONS: return "OPTIONS";
  case EVHTTP_REQ_TRACE: return "TRACE";
  case EVHTTP_REQ_CONNECT: return "CONNECT";
  case EVHTTP_REQ_PATCH: return "PATCH";
  }
  return "UNKNOWN";
}

static int looks_like_json(const char *p, size_t n) {
  while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++, n--;
  return n && (*p == '{' || *p == '[');
}

static int content_type_json(const char *ct) { return ct && strstr(ct, "json") != NULL; }

/* |len| bytes that are one JSON value (whitespace around allowed), parsed. */
static cJSON *parse_json_exact(const char *data, size_t len) {
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(data, len, &end, 0);
  if (!j) return NULL;
  const char *stop = data + len;
  while (end && end < stop && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
  if (end != stop) {
    cJSON_Delete(j);
    return NULL;
  }
  return j;
}

/* ---- inputs as JSON text ---- */

/* A growable text buffer that starts on the caller's stack. */
typedef struct tbuf {
  char *p;
  size_t len, cap;
  int heap, oom;
} tbuf;

static void tb_put(tbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->cap - b->len < n) {
    size_t cap = b->cap * 2;
    while (cap - b->len < n) cap *= 2;
    char *q = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    if (!b->heap) memcpy(q, b->p, b->len);
    b->p = q;
    b->cap = cap;
    b->heap = 1;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

#define TB_LIT(b, lit) tb_put((b), (lit), sizeof(lit) - 1)

/* @p n bytes escaped for a JSON string, up to an embedded NUL (as a C
 * string would be): quote, backslash and control characters escaped, other
 * bytes as they are (the library escapes invalid UTF-8 when it exports). */
#define TB_ONES 0x0101010101010101ULL
/* Whether any of the 8 bytes of |x| needs escaping (below 0x20, a quote, a
 * backslash). */
static inline int tb_word_esc(uint64_t x) {
  uint64_t q = x ^ (TB_ONES * '"'), k = x ^ (TB_ONES * '\\');
  uint64_t t = ((x - TB_ONES * 0x20) & ~x) | ((q - TB_ONES) & ~q) | ((k - TB_ONES) & ~k);
  return (t & (TB_ONES * 0x80)) != 0;
}

static void tb_esc(tbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0, i = 0;
  for (;;) {
    /* the plain run: 8 bytes a step, then a byte a step up to the escape */
    while (i + 8 <= n) {
      uint64_t x;
      memcpy(&x, s + i, 8);
      if (tb_word_esc(x)) break;
      i += 8;
    }
    while (i < n && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\') i++;
    if (i == n) break;
    unsigned char c = (unsigned char)s[i];
    tb_put(b, s + run, i - run);
    run = ++i;
    if (!c) return;
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    switch (c) {
    case '"': tb_put(b, "\\\"", 2); break;
    case '\\': tb_put(b, "\\\\", 2); break;
    case '\n': tb_put(b, "\\n", 2); break;
    case '\r': tb_put(b, "\\r", 2); break;
    case '\t': tb_put(b, "\\t", 2); break;
    default: tb_put(b, esc, 6); break;
    }
  }
  tb_put(b, s + run, n - run);
}

static void tb_cstr(tbuf *b, const char *s) {
  TB_LIT(b, "\"");
  tb_esc(b, s, strlen(s));
  TB_LIT(b, "\"");
}

/* The body as a JSON value: its text when it is one JSON value, else a
 * string, cut at |max| bytes with a marker.  Nothing when empty. */
static void tb_body(tbuf *b, struct evbuffer *buf, size_t max, const char *content_type) {
  size_t len = buf ? evbuffer_get_length(buf) : 0;
  if (!len || !max) return;
  size_t take = len < max ? len : max;
  const char *data = (const char *)evbuffer_pullup(buf, (ev_ssize_t)take);
  if (!data) return;
  TB_LIT(b, ",\"body\":");
  if (take == len && (content_type_json(content_type) || looks_like_json(data, len))) {
    cJSON *j = parse_json_exact(data, len); /* (checks it is one JSON value) */
    if (j) {
      cJSON_Delete(j);
      const char *p = data, *e = data + len;
      while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
      while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
      tb_put(b, p, (size_t)(e - p));
      return;
    }
  }
  TB_LIT(b, "\"");
  tb_esc(b, data, take);
  if (take < len && memchr(data, '\0', take) == NULL) {
    char mark[64];
    int m = snprintf(mark, sizeof mark, "...[truncated by mltrace: %zu bytes]", len - take);
    tb_put(b, mark, (size_t)m);
  }
  TB_LIT(b, "\"");
}

/* |hv|: the value of each allowed header (o->headers), NULL when absent. */
static void record_inputs(req_state *st, struct evhttp_request *req, const char *method, size_t method_len,
                          const char *const *hv) {
  const mlt_evhttp_options *o = &st->inst->opts;
  struct evkeyvalq *in = evhttp_request_get_input_headers(req);
  char stack[1024];
  tbuf b = {stack, 0, sizeof stack, 0, 0};
  TB_LIT(&b, "{\"method\":\"");
  tb_put(&b, method, method_len); /* (a constant: nothing to escape) */
  TB_LIT(&b, "\",\"uri\":");
  const char *uri = evhttp_request_get_uri(req);
  tb_cstr(&b, uri ? uri : "");
  int headers = 0;
  for (size_t i = 0; i < o->n_headers; i++) {
    const char *v = hv[i];
    if (!v) continue;
    if (!headers++)
      TB_LIT(&b, ",\"headers\":{");
    else
      TB_LIT(&b, ",");
    tb_cstr(&b, o->headers[i]);
    TB_LIT(&b, ":");
    tb_cstr(&b, v);
  }
  if (headers) TB_LIT(&b, "}");
  struct evbuffer *body = evhttp_request_get_input_buffer(req);
  if (body && evbuffer_get_length(body)) tb_body(&b, body, o->max_body, evhttp_find_header(in, "Content-Type"));
  TB_LIT(&b, "}");
  if (!b.oom) mlt_span_set_inputs_json_n(st->span, b.p, b.len);
  if (b.heap) free(b.p);
}

static void on_complete(struct evhttp_request *req, void *arg);
static void on_close(struct evhttp_connection *evcon, void *arg);

static void state_free(req_state *st) {
  mlt_context_release(st->ctx);
  free(st->segs);
  free(st);
}

/* ==== the ledger of written reply bytes =============================== */

static struct evbuffer *conn_output(struct evhttp_connection *evcon) {
  struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
  return bev ? bufferevent_get_output(bev) : NULL;
}

/* Before a wrapper adds body bytes: the output buffer's length now, after
 * moving the segments already written to body_sent. */
static size_t ledger_before(req_state *st, struct evbuffer *out) {
  size_t len = evbuffer_get_length(out);
  if (!st->tracking) {
    st->tracking = 1;
    st->out_pos = len;
    return len;
  }
  uint64_t written = st->out_pos > len ? st->out_pos - len : 0;
  while (st->seg_head < st->seg_n && st->segs[st->seg_head].end <= written) st->body_sent += st->segs[st->seg_head++].len;
  if (st->seg_head == st->seg_n) st->seg_head = st->seg_n = 0;
  return len;
}

/* After the wrapper's libevent call: |body_len| body bytes were added,
 * followed by |trail| framing bytes (the CRLF closing an HTTP chunk). */
static void ledger_after(req_state *st, struct evbuffer *out, size_t before, size_t body_len, size_t trail) {
  size_t after = evbuffer_get_length(out);
  if (after < before + body_len + trail) {
    st->ledger_broken = 1; /* not a socket bufferevent that writes later */
    return;
  }
  st->out_pos += after - before;
  if (st->seg_n == st->seg_cap) {
    if (st->seg_head > 0) {
      memmove(st->segs, st->segs + st->seg_head, (st->seg_n - st->seg_head) * sizeof *st->segs);
      st->seg_n -= st->seg_head;
      st->seg_head = 0;
    } else {
      size_t cap = st->seg_cap ? st->seg_cap * 2 : 8;
      body_seg *n = realloc(st->segs, cap * sizeof *n);
      if (!n) {
        st->ledger_broken = 1;
        return;
      }
      st->segs = n;
      st->seg_cap = cap;
    }
  }
  st->segs[st->seg_n++] = (body_seg){st->out_pos - trail, body_len};
}

/* Body bytes written to the socket, the output buffer holding the rest. */
static uint64_t ledger_written(const req_state *st, struct evbuffer *out) {
  size_t len = out ? evbuffer_get_length(out) : 0;
  uint64_t written = st->out_pos > len ? st->out_pos - len : 0;
  uint64_t total = st->body_sent;
  for (size_t i = st->seg_head; i < st->seg_n; i++) {
    uint64_t end = st->segs[i].end, start = end - st->segs[i].len;
    if (written >= end)
      total += st->segs[i].len;
    else if (written > start)
      total += written - start;
  }
  return total;
}

/* Who closed the connection: the peer (it sent FIN or RST: the kernel's TCP
 * state is no longer ESTABLISHED), or this server (still established: a
 * timeout, evhttp_free(), a connection freed by the application). */
static int closed_by(struct evhttp_connection *evcon) {
  struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
  evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
  if (fd < 0) return CLOSED_BY_PEER;
#ifdef TCP_INFO
  struct tcp_info ti;
  socklen_t tl = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && tl >= sizeof ti.tcpi_state)
    return ti.tcpi_state == 1 /* TCP_ESTABLISHED */ ? CLOSED_BY_SERVER : CLOSED_BY_PEER;
#endif
  /* Not TCP (a UNIX socket): EOF or a reset shows when peeking. */
  char c;
  ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return CLOSED_BY_PEER;
  return CLOSED_BY_SERVER;
}

/* Output reducer of a request span whose client went away: the text of its
 * chunks cut to the body bytes that reached the socket. */
static char *cut_reducer(const char *const *chunks, const size_t *lens, size_t n, size_t *out_len, void *ud) {
  uint64_t keep = *(const uint64_t *)ud;
  size_t have = 0, cap = 256;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (size_t i = 0; i < n && have < keep; i++) {
    cJSON *j = cJSON_ParseWithLength(chunks[i], lens[i]);
    if (!cJSON_IsString(j)) { /* not a text chunk of ours: keep the default */
      cJSON_Delete(j);
      free(buf);
      return NULL;
    }
    size_t len = strlen(j->valuestring);
    if (len > keep - have) len = (size_t)(keep - have);
    if (have + len + 1 > cap) {
      while (have + len + 1 > cap) cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb) {
        cJSON_Delete(j);
        free(buf);
        return NULL;
      }
      buf = nb;
    }
    memcpy(buf + have, j->valuestring, len);
    have += len;
    cJSON_Delete(j);
  }
  buf[have] = '\0';
  cJSON *str = cJSON_CreateString(buf);
  free(buf);
  char *text = str ? cJSON_PrintUnformatted(str) : NULL;
  cJSON_Delete(str);
  if (!text) return NULL;
  char *out = strdup(text); /* the library frees with free() */
  cJSON_free(text);
  if (out) *out_len = strlen(out);
  return out;
}

static void live_unlink(req_state *st) {
  mlt_evhttp *inst = st->inst;
  if (st->prev)
    st->prev->next = st->next;
  else
    inst->live = st->next;
  if (st->next) st->next->prev = st->prev;
  st->prev = st->next = NULL;
}

/* Header name |key| (|klen| bytes) equals |lower| (|len| bytes, lowercase),
 * ASCII case folded (as evhttp_find_header() compares). */
static int name_is(const char *key, size_t klen, const char *lower, size_t len) {
  if (klen != len) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
    if (c != (unsigned char)lower[i]) return 0;
  }
  return 1;
}

/* evhttp_find_header() for a lowercase |lower| of |len| bytes: the lengths
 * compared first (libevent compares every header's name a character at a
 * time through a function call per character). */
static const char *find_header(const struct evkeyvalq *h, const char *lower, size_t len) {
  for (const struct evkeyval *kv = h ? h->tqh_first : NULL; kv; kv = kv->next.tqe_next) {
    unsigned char c = (unsigned char)kv->key[0];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
    if (c == (unsigned char)lower[0] && name_is(kv->key, strlen(kv->key), lower, len)) return kv->value;
  }
  return NULL;
}

/* Start the span of |req| (none when tracing is off, but the request is
 * still followed for the done callback); NULL when out of memory. */
static req_state *request_start(mlt_evhttp *inst, struct evhttp_request *req, const char *route) {
  const mlt_evhttp_options *o = &inst->opts;
  mlt_context *parent = NULL;
  int enabled = mlt_is_enabled();
  /* One pass over the request's headers: traceparent and the allowed ones
   * (the first of each name, as evhttp_find_header() would find). */
  const char *hv[MAX_HEADERS];
  for (size_t i = 0; i < o->n_headers; i++) hv[i] = NULL;
  if (enabled) {
    const char *tp = NULL;
    size_t want = o->n_headers + (o->accept_traceparent ? 1 : 0);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    for (const struct evkeyval *kv = in ? in->tqh_first : NULL; kv && want; kv = kv->next.tqe_next) {
      size_t klen = strlen(kv->key);
      if (o->accept_traceparent && !tp && name_is(kv->key, klen, "traceparent", 11)) {
        tp = kv->value;
        want--;
      }
      for (size_t i = 0; i < o->n_headers; i++) {
        if (!hv[i] && name_is(kv->key, klen, o->headers[i], o->header_lens[i])) {
          hv[i] = kv->value;
          want--;
          break;
        }
      }
    }
    if (tp && mlt_context_from_traceparent(tp, &parent) != MLT_OK) parent = NULL; /* never trusted */
  }
  const char *method = method_name(evhttp_request_get_command(req));
  size_t method_len = strlen(method);
  const char *uri = evhttp_request_get_uri(req);
  if (!uri) uri = "";
  size_t path_len = strcspn(uri, "?#");
  char name[MAX_NAME_PATH + 16];
  const char *span_name = o->span_name ? o->span_name : ""; /* (no span when disabled) */
  if (!o->span_name && enabled) { /* "METHOD /path" */
    size_t plen = path_len > MAX_NAME_PATH ? MAX_NAME_PATH : path_len;
    memcpy(name, method, method_len);
    name[method_len] = ' ';
    memcpy(name + method_len + 1, uri, plen);
    name[method_len + 1 + plen] = '\0';
    span_name = name;
  }
  mlt_span span = mlt_span_start_in(parent, span_name, o->span_type);
  mlt_context_release(parent);
  req_state *st = calloc(1, sizeof *st);
  if (!st) goto fail;
  st->req = req;
  st->evcon = evhttp_request_get_connection(req);
  st->inst = inst;
  st->span = span;
  st->ctx = mlt_span_is_none(span) ? NULL : mlt_context_capture(span);
  st->recording = mlt_span_is_recording(span) ? 1 : 0;
  if ((!st->ctx && !mlt_span_is_none(span)) || map_insert(st) != 0) {
    mlt_context_release(st->ctx);
    free(st);
    goto fail;
  }
  if (st->recording) {
    mlt_span_set_attr_str_n(span, "http.request.method", method, method_len);
    mlt_span_set_attr_str_n(span, "url.path", uri, path_len);
    if (route) mlt_span_set_attr_str_n(span, "http.route", route, strlen(route));
    if (st->evcon) {
      char *addr = NULL;
      ev_uint16_t port = 0;
      evhttp_connection_get_peer(st->evcon, &addr, &port);
      if (addr) {
        mlt_span_set_attr_str_n(span, "client.address", addr, strlen(addr));
        mlt_span_set_attr_int(span, "client.port", port);
      }
    }
    record_inputs(st, req, method, method_len, hv);
  }
  st->next = inst->live;
  if (st->next) st->next->prev = st;
  inst->live = st;
  evhttp_request_set_on_complete_cb(req, on_complete, st);
  if (st->evcon) evhttp_connection_set_closecb(st->evcon, on_close, st);
  return st;
fail:
  mlt_span_record_error(span, "InternalError", "mltrace_event: out of memory");
  mlt_span_end(span);
  return NULL;
}

/* ==== span end ======================================================== */

/* End the span of |st|, unregister it, tell the application, free it.
 * |disconnected|: 0, or CLOSED_BY_* when the connection closed first. */
static void request_end(req_state *st, struct evhttp_request *req, int disconnected) {
  mlt_evhttp *inst = st->inst;
  uint64_t written = 0; /* read by cut_reducer() inside mlt_span_end() below */
  map_remove(st);
  live_unlink(st);
  if (st->recording) {
    /* After a disconnect libevent has overwritten the code (400): report
     * the one the application sent, when it went through a wrapper. */
    int code = disconnected ? st->code : req ? evhttp_request_get_response_code(req) : 0;
    uint64_t size = st->reply_bytes;
    if (req && !st->via_wrapper) {
      const char *cl = evhttp_find_header(evhttp_request_get_output_headers(req), "Content-Length");
      if (cl) size = strtoull(cl, NULL, 10);
    }
    /* The connection closed first: what reached the socket is the reply. */
    written = size;
    int cut = disconnected && st->tracking && !st->ledger_broken && st->body_written_at_close < st->reply_bytes;
    if (cut) written = st->body_written_at_close;
    if (code) mlt_span_set_attr_int(st->span, "http.response.status_code", code);
    mlt_span_set_attr_int(st->span, "http.response.body.size", (int64_t)written);
    if (cut) mlt_span_set_attr_int(st->span, "mltrace.http.reply_unsent_bytes", (int64_t)(st->reply_bytes - written));
    if (st->reply_cut) mlt_span_set_attr_bool(st->span, "mltrace.http.reply_truncated", 1);
    if (cut && written < st->recorded_bytes) mlt_span_set_output_reducer(st->span, cut_reducer, &written);
    if (disconnected == CLOSED_BY_PEER) {
      mlt_span_record_error(st->span, "ClientDisconnected", "the client closed the connection before the reply was complete");
    } else if (disconnected && st->inst->shutting_down) {
      mlt_span_record_error(st->span, "ServerShutdown", "the server shut down before the reply was complete");
    } else if (disconnected) {
      mlt_span_record_error(st->span, "ServerClosed",
                            "the server closed the connection before the reply was complete (a timeout, or the "
                            "connection was freed)");
    } else if (code >= 500 && mlt_span_get_status(st->span) != MLT_STATUS_ERROR) {
      /* (An error the application recorded keeps its description.) */
      char msg[32];
      snprintf(msg, sizeof msg, "HTTP %d", code);
      mlt_span_set_status(st->span, MLT_STATUS_ERROR, msg);
    }
  }
  mlt_span_end(st->span); /* (runs cut_reducer, which reads |written|) */
  if (req && inst->opts.done_cb) inst->opts.done_cb(req, disconnected ? 1 : 0, st->data, inst->opts.done_ud);
  state_free(st);
}

static void on_complete(struct evhttp_request *req, void *arg) {
  req_state *st = arg;
  /* The connection may carry the next request: stop watching it for us. */
  if (st->evcon) evhttp_connection_set_closecb(st->evcon, NULL, NULL);
  request_end(st, req, 0);
}

static void on_close(struct evhttp_connection *evcon, void *arg) {
  req_state *st = arg;
  /* The request outlives its connection here (the application still owns
   * it until it ends the reply); it can no longer complete.  The socket and
   * the unsent output are still there: evhttp drops them after this. */
  evhttp_request_set_on_complete_cb(st->req, NULL, NULL);
  evhttp_connection_set_closecb(evcon, NULL, NULL);
  if (st->recording && st->tracking) st->body_written_at_close = ledger_written(st, conn_output(evcon));
  request_end(st, st->req, closed_by(evcon));
}

/* ==== handlers ======================================================== */

static void default_404(struct evhttp_request *req) { evhttp_send_error(req, HTTP_NOTFOUND, NULL); }

/* evhttp stops reading a connection while its handler works, so a client
 * that hangs up before the reply starts would go unnoticed until the reply
 * is written.  When a handler returns without replying, read again with no
 * read callback (what evhttp itself does while it writes a reply): EOF then
 * reaches evhttp's error callback, the connection's close callback ends the
 * span with ERROR at once, and the done callback tells the application.  A
 * read high-water mark bounds what a client can pile up meanwhile; evhttp
 * takes the connection back (its own callbacks) when the reply is written. */
static void watch_for_close(struct evhttp_request *req) {
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
  if (!bev) return;
  bufferevent_data_cb rcb, wcb;
  bufferevent_event_cb ecb;
  void *arg;
  bufferevent_getcb(bev, &rcb, &wcb, &ecb, &arg);
  bufferevent_setcb(bev, NULL, wcb, ecb, arg);
  bufferevent_setwatermark(bev, EV_READ, 0, 65536);
  bufferevent_enable(bev, EV_READ);
}

static void handle(struct evhttp_request *req, void *arg) {
  binding *b = arg;
  void (*cb)(struct evhttp_request *, void *) = b->cb;
  void *cb_arg = b->arg;
  req_state *st = request_start(b->inst, req, b->path);
  /* Attach even without a state: the handler never inherits a context. */
  mlt_attach_token tok = mlt_context_attach(st ? st->ctx : NULL);
  /* |st| may be gone once the handler returns (a synchronous reply that
   * completes at once): only the token is used after the call. */
  if (cb)
    cb(req, cb_arg);
  else
    default_404(req);
  if (tok.depth_) mlt_context_detach(tok);
  /* Still waiting for its reply (the request is alive only then)? */
  req_state *pending = st ? map_find(req) : NULL;
  if (pending && !pending->via_wrapper && evhttp_request_get_response_code(req) == 0) watch_for_close(req);
}

int mlt_evhttp_instrument(struct evhttp *http, const mlt_evhttp_options *opts, mlt_evhttp **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!http) return MLT_EINVAL;
  mlt_evhttp *inst = calloc(1, sizeof *inst);
  if (!inst) return MLT_ENOMEM;
  inst->http = http;
  int rc;
  if (opts) {
    rc = options_copy(opts, &inst->opts);
  } else {
    mlt_evhttp_options *def = NULL;
    rc = mlt_evhttp_options_new(&def);
    if (rc == MLT_OK) rc = options_copy(def, &inst->opts);
    mlt_evhttp_options_free(def);
  }
  inst->gen = calloc(1, sizeof *inst->gen);
  if (rc != MLT_OK || !inst->gen) {
    options_clear_headers(&inst->opts);
    free(inst->opts.span_name);
    free(inst->gen);
    free(inst);
    return MLT_ENOMEM;
  }
  inst->gen->inst = inst;
  evhttp_set_gencb(http, handle, inst->gen);
  pthread_mutex_lock(&g_inst_mu);
  g_instances++;
  pthread_mutex_unlock(&g_inst_mu);
  *out = inst;
  return MLT_OK;
}

void mlt_evhttp_free(mlt_evhttp *inst) {
  if (!inst) return;
  /* The server is gone: its requests and connections too.  Do not touch
   * them; end what is still open. */
  while (inst->live) {
    req_state *st = inst->live;
    st->recording = 0; /* no attributes from the freed request */
    map_remove(st);
    live_unlink(st);
    if (inst->shutting_down)
      mlt_span_record_error(st->span, "ServerShutdown", "the server shut down before the reply was complete");
    else
      mlt_span_record_error(st->span, "ServerClosed", "server freed before the reply was complete");
    mlt_span_end(st->span);
    state_free(st);
  }
  binding *b = inst->bindings;
  while (b) {
    binding *next = b->next;
    free(b->path);
    free(b);
    b = next;
  }
  free(inst->gen);
  options_clear_headers(&inst->opts);
  free(inst->opts.span_name);
  free(inst);
  pthread_mutex_lock(&g_inst_mu);
  if (--g_instances == 0) shards_release_tables();
  pthread_mutex_unlock(&g_inst_mu);
}

int mlt_evhttp_begin_shutdown(mlt_evhttp *inst) {
  if (!inst) return MLT_EINVAL;
  inst->shutting_down = 1;
  return MLT_OK;
}

int mlt_evhttp_set_cb(mlt_evhttp *inst, const char *path, void (*cb)(struct evhttp_request *, void *), void *arg) {
  if (!inst || !path || !cb) return MLT_EINVAL;
  binding *b = calloc(1, sizeof *b);
  if (!b || !(b->path = strdup(path))) {
    free(b);
    return MLT_ENOMEM;
  }
  b->inst = inst;
  b->cb = cb;
  b->arg = arg;
  int rc = evhttp_set_cb(inst->http, path, handle, b);
  if (rc != 0) {
    free(b->path);
    free(b);
    return rc == -1 ? MLT_EALREADY : MLT_ENOMEM;
  }
  b->next = inst->bindings;
  inst->bindings = b;
  return MLT_OK;
}

int mlt_evhttp_del_cb(mlt_evhttp *inst, const char *path) {
  if (!inst || !path) return MLT_EINVAL;
  for (binding **pp = &inst->bindings; *pp; pp = &(*pp)->next) {
    binding *b = *pp;
    if (strcmp(b->path, path) != 0) continue;
    evhttp_del_cb(inst->http, path);
    *pp = b->next;
    free(b->path);
    free(b);
    return MLT_OK;
  }
  return MLT_ENOTFOUND;
}

int mlt_evhttp_set_gencb(mlt_evhttp *inst, void (*cb)(struct evhttp_request *, void *), void *arg) {
  if (!inst) return MLT_EINVAL;
  inst->gen->cb = cb;
  inst->gen->arg = cb ? arg : NULL;
  return MLT_OK;
}

/* ==== request access ================================================== */

mlt_context *mlt_evhttp_request_context(struct evhttp_request *req) {
  if (!req) return NULL;
  uint64_t h = ptr_hash(req);
  shard *sh = shard_of(h);
  pthread_mutex_lock(&sh->mu);
  req_state *st = map_find_locked(sh, h, req);
  mlt_context *c = st ? mlt_context_retain(st->ctx) : NULL;
  pthread_mutex_unlock(&sh->mu);
  return c;
}

mlt_span mlt_evhttp_request_span(struct evhttp_request *req) {
  req_state *st = map_find(req);
  return st ? st->span : MLT_SPAN_NONE;
}

int mlt_evhttp_request_set_data(struct evhttp_request *req, void *data) {
  if (!req) return MLT_EINVAL;
  req_state *st = map_find(req);
  if (!st) return MLT_ENOTFOUND;
  st->data = data;
  return MLT_OK;
}

void *mlt_evhttp_request_get_data(struct evhttp_request *req) {
  req_state *st = map_find(req);
  return st ? st->data : NULL;
}

/* ==== reply wrappers ================================================== */

/* Whether the reply started with evhttp_send_reply_start() is chunked:
 * its headers are fixed once it started, so they are read once. */
static int reply_chunked(req_state *st, struct evhttp_request *req) {
  if (!st->te_known) {
    const char *te = find_header(evhttp_request_get_output_headers(req), "transfer-encoding", 17);
    st->chunked = te && strstr(te, "chunked") ? 1 : 0;
    st->te_known = 1;
  }
  return st->chunked;
}

static int reply_is_json(struct evhttp_request *req, const char *data, size_t len) {
  const char *ct = evhttp_find_header(evhttp_request_get_output_headers(req), "Content-Type");
  if (ct) return content_type_json(ct);
  return looks_like_json(data, len);
}

void mlt_evhttp_send_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body) {
  req_state *st = map_find(req);
  size_t len = body ? evbuffer_get_length(body) : 0;
  struct evbuffer *out = NULL;
  size_t before = 0;
  if (st) {
    st->via_wrapper = 1;
    st->code = code;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) st->reply_bytes += len;
    if (st->recording && len && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD && (out = conn_output(st->evcon)))
      before = ledger_before(st, out);
    size_t max = st->inst->opts.max_body;
    if (st->recording && len && max) {
      size_t take = len < max ? len : max;
      const char *data = (const char *)evbuffer_pullup(body, (ev_ssize_t)take);
      if (data && take == len && reply_is_json(req, data, len)) {
        mlt_span_set_outputs_json_n(st->span, data, len);
      } else if (data) {
        mlt_span_set_outputs_text(st->span, data, take);
        if (take < len) st->reply_cut = 1;
      }
    }
  }
  if (!out) {
    evhttp_send_reply(req, code, reason, body); /* may complete: |st| is gone */
    return;
  }
  /* Headers, then the body (the request cannot complete inside this call:
   * the socket is written from the loop). */
  evhttp_send_reply(req, code, reason, body);
  if (map_find(req) == st) ledger_after(st, out, before, len, 0);
}

void mlt_evhttp_send_reply_start(struct evhttp_request *req, int code, const char *reason) {
  req_state *st = map_find(req);
  if (st) {
    st->via_wrapper = 1;
    st->code = code;
  }
  evhttp_send_reply_start(req, code, reason);
}

void mlt_evhttp_send_reply_chunk(struct evhttp_request *req, struct evbuffer *chunk) {
  req_state *st = map_find(req);
  struct evbuffer *out = NULL;
  size_t before = 0, len = 0, trail = 0;
  if (st && chunk) {
    len = evbuffer_get_length(chunk);
    st->via_wrapper = 1;
    /* libevent sends nothing for an empty chunk or a HEAD request */
    if (len && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
      if (st->recording && (out = conn_output(st->evcon))) {
        /* A chunked reply frames each chunk "<hex length>\r\n<data>\r\n";
         * an HTTP/1.0 one (or one with a Content-Length) sends data only. */
        trail = reply_chunked(st, req) ? 2 : 0;
        before = ledger_before(st, out);
      }
      st->reply_bytes += len;
      size_t max = st->inst->opts.max_body;
      size_t room = max > st->recorded_bytes ? max - st->recorded_bytes : 0;
      size_t take = len < room ? len : room;
      if (take < len) st->reply_cut = 1;
      if (st->recording && take) {
        const char *data = (const char *)evbuffer_pullup(chunk, (ev_ssize_t)take);
        if (data) {
          mlt_span_add_chunk_text(st->span, data, take);
          st->recorded_bytes += take;
        }
      }
    }
  }
  evhttp_send_reply_chunk(req, chunk);
  if (out) ledger_after(st, out, before, len, trail);
}

void mlt_evhttp_send_reply_end(struct evhttp_request *req) {
  req_state *st = map_find(req);
  struct evbuffer *out = st && st->tracking && !st->ledger_broken ? conn_output(st->evcon) : NULL;
  if (!out || !reply_chunked(st, req)) {
    evhttp_send_reply_end(req); /* may complete (and free the state) at once */
    return;
  }
  /* A chunked reply ends with "0\r\n\r\n" (written later, from the loop):
   * the ledger counts those bytes too, or a close before they are written
   * would seem to cut the last chunk. */
  size_t before = evbuffer_get_length(out);
  evhttp_send_reply_end(req);
  size_t after = evbuffer_get_length(out);
  if (after >= before)
    st->out_pos += after - before;
  else
    st->ledger_broken = 1;
}

/* ==== outbound ======================================================== */

int mlt_evhttp_request_set_traceparent(struct evhttp_request *req, const mlt_context *ctx) {
  if (!req) return MLT_EINVAL;
  mlt_context *cur = NULL;
  if (!ctx) ctx = cur = mlt_context_current();
  char tp[MLT_TRACEPARENT_SIZE];
  int rc = ctx ? mlt_context_to_traceparent(ctx, tp, sizeof tp) : MLT_EINVAL;
  mlt_context_release(cur);
  if (rc != MLT_OK) return rc == MLT_ERANGE ? MLT_EINVAL : rc;
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_remove_header(h, "traceparent");
  return evhttp_add_header(h, "traceparent", tp) == 0 ? MLT_OK : MLT_ENOMEM;
}
