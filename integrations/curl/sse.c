/* sse.c: incremental Server-Sent Events parser (WHATWG "Parsing an event
 * stream").  See <mltrace/sse.h>.
 *
 * Bytes are consumed once: a line that lies entirely inside one feed is
 * processed in place; only a line split across feeds is copied into the line
 * buffer.  Line ends are found with memchr, and the positions of the next
 * '\r' and '\n' are remembered for the whole feed, so no byte is scanned
 * twice by the same search (O(n) for any split, including one byte per feed
 * and '\r'-only streams).  Comment lines are never copied.  Memory is bounded
 * by max_event_bytes: an event that would hold more is dropped up to its
 * blank line; between feeds the parser holds only what a split line or event
 * still needs (and the last event id).
 */
#include <mltrace/sse.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Buffers above this capacity are released after each event, so one huge
 * event does not pin memory for the rest of the stream. */
#define SSE_KEEP_CAP ((size_t)1 << 20)

typedef struct sse_buf {
  char *p;
  size_t len, cap; /* p[len] is always NUL when p is non-NULL */
} sse_buf;

struct mlt_sse_parser {
  mlt_sse_event_fn fn;
  mlt_sse_discard_fn discard_fn;
  void *user_data;
  size_t max;
  sse_buf line;       /* bytes of a line split across feeds */
  sse_buf data;       /* data buffer: data lines, each followed by '\n' */
  sse_buf event;      /* event type buffer */
  sse_buf id;         /* last event id buffer (kept across events) */
  size_t line_bytes;  /* bytes of the current partial line (stored or not) */
  size_t ev_bytes;    /* bytes of the lines of the event in progress */
  size_t events, discarded;
  int stop_rc;        /* non-zero once stopped: returned by feed/finish */
  unsigned char bom;  /* BOM bytes matched so far; 3 when the check is over */
  unsigned char pending_cr; /* last feed ended with '\r' */
  unsigned char comment;    /* current partial line is a comment */
  unsigned char overflow;   /* event in progress exceeded max: dropping it */
  unsigned char in_event;   /* a field line was seen since the last blank line */
};

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

static size_t sat_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

static int buf_append(sse_buf *b, const char *s, size_t n) {
  if (b->cap - b->len <= n || !b->p) {
    if (n > SIZE_MAX / 2 - b->len - 1) return MLT_ENOMEM;
    size_t need = b->len + n + 1, cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return MLT_ENOMEM;
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return MLT_OK;
}

/* An empty buffer's memory goes back to malloc (between feeds: a stream
 * waiting for its next read holds none; see mlt_sse_parser_feed()). */
static void buf_release_empty(sse_buf *b) {
  if (b->len || !b->p) return;
  free(b->p);
  b->p = NULL;
  b->cap = 0;
}

static void buf_trim(sse_buf *b) {
  b->len = 0;
  if (b->cap > SSE_KEEP_CAP) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

/* Would holding @p extra more bytes for this event stay within max? */
static int fits(const mlt_sse_parser *p, size_t extra) {
  size_t held = p->line.len + p->data.len + p->event.len;
  return held <= p->max && extra <= p->max - held;
}

static void start_overflow(mlt_sse_parser *p) {
  p->overflow = 1;
  p->line.len = p->data.len = p->event.len = 0;
}

static void reset_event(mlt_sse_parser *p) {
  buf_trim(&p->data);
  buf_trim(&p->event);
  buf_trim(&p->line);
  p->overflow = p->in_event = 0;
  p->ev_bytes = 0;
}

static void report_discard(mlt_sse_parser *p) {
  p->discarded++;
  if (p->discard_fn) p->discard_fn(p->ev_bytes, p->user_data);
}

static int dispatch(mlt_sse_parser *p) {
  int rc = 0;
  if (p->overflow) {
    report_discard(p);
  } else if (p->data.len) {
    p->data.p[--p->data.len] = '\0'; /* drop the last '\n' */
    p->events++;
    const char *ev = p->event.len ? p->event.p : "message";
    size_t ev_len = p->event.len ? p->event.len : 7;
    rc = p->fn(ev, ev_len, p->data.p, p->data.len, p->id.p ? p->id.p : "", p->id.len, p->user_data);
  }
  reset_event(p);
  return rc;
}

/* Process one complete, non-blank, non-comment line (not NUL-terminated). */
static int field_line(mlt_sse_parser *p, const char *l, size_t n) {
  const char *colon = memchr(l, ':', n);
  size_t name_len = colon ? (size_t)(colon - l) : n;
  const char *v = colon ? colon + 1 : l + n;
  size_t vlen = n - (size_t)(v - l);
  if (vlen && *v == ' ') v++, vlen--;
  p->in_event = 1;
  if (name_len == 4 && memcmp(l, "data", 4) == 0) {
    if (!fits(p, sat_add(vlen, 1))) {
      start_overflow(p);
      return 0;
    }
    int rc = buf_append(&p->data, v, vlen);
    return rc ? rc : buf_append(&p->data, "\n", 1);
  }
  if (name_len == 5 && memcmp(l, "event", 5) == 0) {
    p->event.len = 0;
    if (!fits(p, vlen)) {
      start_overflow(p);
      return 0;
    }
    return buf_append(&p->event, v, vlen);
  }
  if (name_len == 2 && memcmp(l, "id", 2) == 0 && !memchr(v, '\0', vlen)) {
    p->id.len = 0;
    return buf_append(&p->id, v, vlen);
  }
  return 0; /* "retry" and unknown fields are ignored */
}

/* Store bytes of the current (unterminated) line. */
static int take(mlt_sse_parser *p, const char *s, size_t n) {
  if (n == 0) return 0;
  if (p->line_bytes == 0 && s[0] == ':') p->comment = 1;
  p->line_bytes = sat_add(p->line_bytes, n);
  if (p->comment || p->overflow) return 0;
  if (!fits(p, n)) {
    start_overflow(p);
    return 0;
  }
  return buf_append(&p->line, s, n);
}

/* A line ends after the @p n bytes at @p s (which follow any stored ones). */
static int end_line(mlt_sse_parser *p, const char *s, size_t n) {
  if (p->line_bytes == 0) { /* whole line is in this feed: no copy */
    if (n == 0) return dispatch(p);
    p->ev_bytes = sat_add(p->ev_bytes, n);
    if (p->overflow || s[0] == ':') return 0;
    if (!fits(p, n)) { /* the same bound take() applies to a stored line */
      start_overflow(p);
      return 0;
    }
    return field_line(p, s, n);
  }
  int rc = take(p, s, n);
  if (rc) return rc;
  p->ev_bytes = sat_add(p->ev_bytes, p->line_bytes);
  int skip = p->comment || p->overflow;
  size_t len = p->line.len;
  p->line.len = p->line_bytes = 0;
  p->comment = 0;
  return skip ? 0 : field_line(p, p->line.p, len);
}

static int stop(mlt_sse_parser *p, int rc) {
  p->stop_rc = rc;
  return rc;
}

int mlt_sse_parser_new(mlt_sse_event_fn fn, void *user_data, size_t max_event_bytes, mlt_sse_parser **out) {
  if (out) *out = NULL;
  if (!fn || !out) return MLT_EINVAL;
  mlt_sse_parser *p = calloc(1, sizeof *p);
  if (!p) return MLT_ENOMEM;
  p->fn = fn;
  p->user_data = user_data;
  p->max = max_event_bytes ? max_event_bytes : MLT_SSE_DEFAULT_MAX_EVENT_BYTES;
  *out = p;
  return MLT_OK;
}

void mlt_sse_parser_free(mlt_sse_parser *p) {
  if (!p) return;
  free(p->line.p);
  free(p->data.p);
  free(p->event.p);
  free(p->id.p);
  free(p);
}

int mlt_sse_parser_feed(mlt_sse_parser *p, const char *bytes, size_t len) {
  if (!p || (!bytes && len)) return MLT_EINVAL;
  if (p->stop_rc) return p->stop_rc;
  if (len == 0) return MLT_OK;
  size_t i = 0;
  if (p->pending_cr) { /* "\r" | "\n" split across feeds: one line end */
    p->pending_cr = 0;
    if (bytes[0] == '\n') i = 1;
  }
  while (p->bom < 3 && i < len) {
    if ((unsigned char)bytes[i] == sse_bom[p->bom]) {
      p->bom++;
      i++;
    } else { /* not a BOM: the bytes matched so far are line bytes */
      size_t k = p->bom;
      p->bom = 3;
      int rc = take(p, (const char *)sse_bom, k);
      if (rc) return stop(p, rc);
    }
  }
  size_t cr = 0, lf = 0;
  int have_cr = 0, have_lf = 0;
  while (i < len) {
    if (!have_cr || cr < i) {
      const char *q = memchr(bytes + i, '\r', len - i);
      cr = q ? (size_t)(q - bytes) : len;
      have_cr = 1;
    }
    if (!have_lf || lf < i) {
      const char *q = memchr(bytes + i, '\n', len - i);
      lf = q ? (size_t)(q - bytes) : len;
      have_lf = 1;
    }
    size_t eol = cr < lf ? cr : lf;
    int rc;
    if (eol == len) { /* partial line: keep it for the next feed */
      rc = take(p, bytes + i, len - i);
      if (rc) return stop(p, rc);
      break;
    }
    rc = end_line(p, bytes + i, eol - i);
    i = eol + 1;
    if (bytes[eol] == '\r') {
      if (i == len)
        p->pending_cr = 1;
      else if (bytes[i] == '\n')
        i++;
    }
    if (rc) return stop(p, rc);
  }
  /* Between reads a stream usually has no partial line or event: release
   * the buffers then (a server relaying thousands of streams would otherwise
   * hold a few hundred bytes per idle stream; one malloc per read with
   * events costs far less than the read). */
  buf_release_empty(&p->line);
  buf_release_empty(&p->data);
  buf_release_empty(&p->event);
  return MLT_OK;
}

int mlt_sse_parser_finish(mlt_sse_parser *p) {
  if (!p) return MLT_EINVAL;
  if (p->stop_rc) return p->stop_rc;
  int incomplete = p->in_event || p->overflow || (p->line_bytes && !p->comment) || (p->bom > 0 && p->bom < 3);
  if (p->overflow) {
    p->ev_bytes = sat_add(p->ev_bytes, p->line_bytes);
    report_discard(p);
  }
  reset_event(p);
  p->line_bytes = 0;
  p->comment = p->pending_cr = p->bom = 0;
  return incomplete ? MLT_EPARSE : MLT_OK;
}

int mlt_sse_parser_set_discard_fn(mlt_sse_parser *p, mlt_sse_discard_fn fn) {
  if (!p) return MLT_EINVAL;
  p->discard_fn = fn;
  return MLT_OK;
}

int mlt_sse_parser_set_max_event_bytes(mlt_sse_parser *p, size_t max_event_bytes) {
  if (!p) return MLT_EINVAL;
  p->max = max_event_bytes ? max_event_bytes : MLT_SSE_DEFAULT_MAX_EVENT_BYTES;
  return MLT_OK;
}

size_t mlt_sse_parser_event_count(const mlt_sse_parser *p) { return p ? p->events : 0; }

size_t mlt_sse_parser_discarded_count(const mlt_sse_parser *p) { return p ? p->discarded : 0; }

const char *mlt_sse_parser_last_event_id(const mlt_sse_parser *p, size_t *len) {
  const char *id = p && p->id.p ? p->id.p : "";
  if (len) *len = p ? p->id.len : 0;
  return id;
}
