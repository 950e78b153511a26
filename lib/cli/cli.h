/* lib/cli/cli.h: what the parts of the `mltrace` command-line tool share.
 *
 * The tool is self-contained (cJSON and libcurl, not libmltrace):
 *   main.c    arguments, commands, exit status
 *   text.c    memory helpers, string buffers, sanitized terminal text
 *   json.c    cJSON helpers (exact 64-bit numbers), span ids, a string map,
 *             a JSON printer that keeps number text
 *   store.c   the trace model: MLflow Trace JSON lines merged per trace id
 *             (continuations, update lines, assessments)
 *   server.c  reading an MLflow tracking server (REST search / get)
 *   render.c  the `list` table and the `show` trees
 *   merge.c   `mltrace merge`: one complete Trace JSON line per trace
 */
#ifndef MLTRACE_CLI_H
#define MLTRACE_CLI_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MLTRACE_CLI_VERSION "0.1.0"

enum {
  MAX_DRAW = 24,      /* tree levels drawn with connectors */
  PREVIEW_COLS = 100, /* in:/out: previews */
  NAME_COLS = 80,     /* span names */
  MSG_COLS = 160,     /* status and exception messages */
  MAX_EVENTS = 20,    /* non-chunk events listed per span */
  STORE_BYTES = 4096, /* info strings kept per trace */
  LIST_WIDTH = 120,   /* target width of `list` lines */
};

/* ---- options and glyphs (text.c) -------------------------------------- */

typedef struct {
  const char *tee, *elbow, *pipe, *blank, *ell, *fail, *us, *repl, *ok, *other;
} glyphs;

extern const glyphs g_utf8, g_ascii;

typedef struct {
  const glyphs *g;
  bool color;
  bool ids;
} cli_options;
extern cli_options g_opt;

#define C_RED "\033[31m"
#define C_DIM "\033[2m"
#define C_BOLD "\033[1m"
#define C_OFF "\033[0m"

/* ---- memory (text.c): every allocation failure exits with status 2 ---- */

void die_oom(void) __attribute__((noreturn));
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
void *xarray(size_t n, size_t sz);
/* Grows *p (an array of elsz-byte items, capacity *cap) to hold need items. */
void grow(void *pp, size_t *cap, size_t need, size_t elsz);
char *xstrndup(const char *s, size_t n);
char *xstrdup(const char *s);

/* ---- string buffer (text.c) ------------------------------------------- */

typedef struct {
  char *p;
  size_t n, cap;
} sbuf;

void sb_putn(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_putc(sbuf *b, char c);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *sb_steal(sbuf *b);
void sb_color(sbuf *b, const char *code);
/* Writes the buffer as one output line and empties it. */
void sb_emit_line(sbuf *b);

/* ---- sanitized text (text.c) ------------------------------------------ */

enum {
  T_SPACE = 1,  /* control characters become a space (else \n, \t, \xNN) */
  T_MINIFY = 2, /* drop whitespace outside JSON strings */
};

/* Appends s[0..n) to out: invalid UTF-8 bytes are replaced, control
 * characters escaped, and at most maxcols columns are written; longer text
 * ends with the ellipsis.  Returns the columns used. */
size_t put_text(sbuf *out, const char *s, size_t n, size_t maxcols, unsigned flags);
size_t put_str(sbuf *out, const char *s, size_t maxcols, unsigned flags);
void put_pad(sbuf *out, size_t n);
/* Appends s, sanitized, in a column of exactly width columns. */
void put_cell(sbuf *out, const char *s, size_t width, bool right);
/* Columns that put_text would use for s (bounded by cap). */
size_t text_cols(const char *s, size_t cap);

/* ---- JSON helpers (json.c) -------------------------------------------- */

/* Attaches the exact source text of every number node as its valuestring. */
void attach_number_text(cJSON *root, const char *text, size_t len);
const cJSON *jget(const cJSON *obj, const char *key);
const char *jstr(const cJSON *obj, const char *key);
/* Exact 64-bit integer from a JSON number (raw text attached) or a string
 * of digits; doubles as the last resort. */
bool jint64(const cJSON *v, int64_t *out);
char *dup_trunc(const char *s, size_t max);
/* Value of a JSON-encoded attribute as plain text ("\"LLM\"" -> LLM). */
char *attr_text(const cJSON *v);
/* Compact preview of an attribute value, at most PREVIEW_COLS columns. */
char *json_preview(const cJSON *v);
/* "3 in / 4 out / 7 total" from a tokenUsage JSON text (NULL if unusable). */
char *token_summary(const char *text);
bool is_hex(const char *s, size_t n);
/* Normalized span id: 16 lowercase hex digits, "~<text>", or NULL. */
char *span_key(const cJSON *v);
/* JSON text of |v| (compact, ", " and ": " separators as Python's
 * json.dumps), numbers from their attached source text when present. */
void print_json(sbuf *b, const cJSON *v);
/* An OTLP AnyValue ({"string_value": ..} etc.) as a native cJSON value
 * (new tree), or NULL. */
cJSON *otlp_value(const cJSON *any);

/* ---- string -> index map (json.c) ------------------------------------- */

typedef struct {
  const char **keys; /* not owned */
  size_t *vals;
  size_t cap, n;
} strmap;

bool map_get(const strmap *m, const char *key, size_t *val);
/* Inserts key unless present (the first value wins). */
void map_insert(strmap *m, const char *key, size_t val);
void map_free(strmap *m);

/* ---- the trace model (store.c) ---------------------------------------- */

enum { ST_UNSET, ST_OK, ST_ERROR, ST_OTHER };

typedef struct {
  bool exc;
  char *text;
} event;

typedef struct {
  char *name, *type, *id, *parent, *status_msg, *status_raw, *in, *out, *tokens;
  int64_t start, end;
  bool has_start, has_end;
  int status;
  size_t nchunks, nevents_more;
  event *evs;
  size_t nevs, evcap;
  size_t seq;
} span;

typedef struct {
  char *key, *val;
} tag;

/* One assessment, ready to print. */
typedef struct {
  bool expectation, error;
  char *name, *value, *source, *span, *rationale;
} assessment;

typedef struct {
  char *id, *request_time, *state, *name, *preview, *session, *user, *tokens;
  int64_t duration_ms;
  bool has_duration;
  long span_hint; /* span count from the server's sizeStats, or -1 */
  char *link;     /* the MLflow UI's page of the trace (server only), or NULL */
  tag *tags;
  size_t ntags, tagcap;
  span *spans;
  size_t nspans, spancap;
  assessment *as;
  size_t nas, ascap;
} trace;

typedef struct {
  trace *v;
  size_t n, cap;
  strmap idx;
  size_t malformed, lines;
  bool details;      /* extract previews and events (show) */
  const char *query; /* show TRACE_ID: keep only matching traces */
  const char *fname;
} store;

void trace_free(trace *t);
void store_free(store *st);
/* Case-insensitive "tr-" prefix stripped. */
const char *strip_tr(const char *s);
/* The trace with id |tid|, added (empty) when missing. */
trace *store_trace(store *st, const char *tid);
/* Merge a TraceInfo (file or REST form); update lines (metadata
 * "mltrace.update") only apply their tags, deletion or assessments. */
void merge_info(trace *t, const cJSON *info);
/* Add the spans of array |spans| (MLflow span dicts) to |t|. */
void add_spans(trace *t, const cJSON *spans, bool details);
/* Reads a JSONL store; returns false (after a message) if it cannot be read. */
bool read_store(store *st, const char *path);

/* ---- an MLflow tracking server (server.c) ----------------------------- */

typedef struct {
  const char *uri;        /* --tracking-uri */
  const char *experiment; /* --experiment NAME|ID, or NULL */
  long max;               /* --max: most recent traces listed */
} server_options;

/* Fill |st| with the TraceInfos of the most recent traces (oldest first).
 * Returns false after a message on stderr. */
bool server_list(store *st, const server_options *o);
/* Fill |st| with one trace, info and spans.  Returns 0, or 2 after a
 * message (not found: 2 too, as for a file). */
int server_show(store *st, const server_options *o, const char *trace_id);

/* ---- output (render.c, merge.c) --------------------------------------- */

void cmd_list(const store *st);
int cmd_show(const store *st);
/* Print the JSONL store at |path| with one complete Trace JSON per trace
 * (continuations and update lines merged).  Returns the exit status. */
int cmd_merge(const char *path);

#endif /* MLTRACE_CLI_H */
