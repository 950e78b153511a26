/* lib/cli/render.c: the output.  `list` prints one line per trace in fixed
 * columns (a status mark first on every line: errors never shift a column);
 * `show` prints a header, the assessments, and the span tree, walked with an
 * explicit stack (no recursion): indentation is drawn for the first MAX_DRAW
 * levels, deeper spans get a "[… depth N]" prefix; spans whose parent is
 * missing, themselves, or on a cycle are shown at the top with a note. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- formatting -------------------------------------------------------- */

static void fmt_duration(sbuf *b, const span *s) {
  if (!s->has_start || !s->has_end) {
    sb_puts(b, s->has_start ? "(unfinished)" : "?");
    return;
  }
  if (s->end < s->start) {
    sb_puts(b, "?");
    return;
  }
  uint64_t ns = (uint64_t)s->end - (uint64_t)s->start;
  if (ns < 1000) {
    sb_printf(b, "%llu ns", (unsigned long long)ns);
  } else if (ns < 999500) {
    sb_printf(b, "%llu %s", (unsigned long long)((ns + 500) / 1000), g_opt.g->us);
  } else {
    uint64_t tenths = ns / 100000 + (ns % 100000 >= 50000);
    sb_printf(b, "%llu.%llu ms", (unsigned long long)(tenths / 10),
              (unsigned long long)(tenths % 10));
  }
}

/* Trace duration in ms: from the info, else from the span extent. */
static bool trace_duration(const trace *t, int64_t *ms) {
  if (t->has_duration) {
    *ms = t->duration_ms;
    return true;
  }
  bool any = false;
  int64_t lo = 0, hi = 0;
  for (size_t i = 0; i < t->nspans; i++) {
    const span *s = &t->spans[i];
    if (!s->has_start || !s->has_end || s->end < s->start) continue;
    if (!any || s->start < lo) lo = s->start;
    if (!any || s->end > hi) hi = s->end;
    any = true;
  }
  if (any) *ms = (int64_t)(((uint64_t)hi - (uint64_t)lo) / 1000000);
  return any;
}

static bool trace_is_error(const trace *t) { return t->state && strcmp(t->state, "ERROR") == 0; }

/* ---- list -------------------------------------------------------------- */

void cmd_list(const store *st) {
  size_t wid = 0, wtime = 0, wstate = 0, wdur = 0, wspans = 0, wname = 0;
  char (*dur)[32] = xarray(st->n ? st->n : 1, sizeof *dur);
  char (*nsp)[32] = xarray(st->n ? st->n : 1, sizeof *nsp);
  for (size_t i = 0; i < st->n; i++) {
    const trace *t = &st->v[i];
    int64_t ms;
    if (trace_duration(t, &ms)) snprintf(dur[i], sizeof dur[i], "%lld ms", (long long)ms);
    else snprintf(dur[i], sizeof dur[i], "? ms");
    if (t->nspans == 0 && t->span_hint >= 0) /* a server's list: its count of the spans */
      snprintf(nsp[i], sizeof nsp[i], "%ld span%s", t->span_hint, t->span_hint == 1 ? "" : "s");
    else
      snprintf(nsp[i], sizeof nsp[i], "%zu span%s", t->nspans, t->nspans == 1 ? "" : "s");
    size_t w;
    if ((w = text_cols(t->id, 40)) > wid) wid = w;
    if ((w = text_cols(t->request_time ? t->request_time : "?", 30)) > wtime) wtime = w;
    if ((w = text_cols(t->state ? t->state : "?", 12)) > wstate) wstate = w;
    if ((w = strlen(dur[i])) > wdur) wdur = w;
    if ((w = strlen(nsp[i])) > wspans) wspans = w;
    if ((w = text_cols(t->name ? t->name : "-", 24)) > wname) wname = w;
  }
  size_t used = 2 + wid + 2 + wtime + 2 + wstate + 2 + wdur + 2 + wspans + 2 + wname + 2;
  size_t wprev = used + 20 < LIST_WIDTH ? LIST_WIDTH - used : 20;
  sbuf b = {0};
  for (size_t i = 0; i < st->n; i++) {
    const trace *t = &st->v[i];
    bool err = trace_is_error(t);
    /* A mark on every line (not only on errors), so columns never shift. */
    bool ok = t->state && strcmp(t->state, "OK") == 0;
    if (err) sb_color(&b, C_RED);
    sb_puts(&b, err ? g_opt.g->fail : ok ? g_opt.g->ok : g_opt.g->other);
    sb_putc(&b, ' ');
    put_cell(&b, t->id, wid, false);
    sb_puts(&b, "  ");
    put_cell(&b, t->request_time ? t->request_time : "?", wtime, false);
    sb_puts(&b, "  ");
    put_cell(&b, t->state ? t->state : "?", wstate, false);
    sb_puts(&b, "  ");
    put_cell(&b, dur[i], wdur, true);
    sb_puts(&b, "  ");
    put_cell(&b, nsp[i], wspans, true);
    sb_puts(&b, "  ");
    put_cell(&b, t->name ? t->name : "-", wname, false);
    sb_puts(&b, "  ");
    put_str(&b, t->preview ? t->preview : "", wprev, T_SPACE);
    while (b.n && b.p[b.n - 1] == ' ') b.p[--b.n] = '\0';
    if (err) sb_color(&b, C_OFF);
    sb_emit_line(&b);
  }
  free(b.p);
  free(dur);
  free(nsp);
}

/* ---- show -------------------------------------------------------------- */

static const span *g_sort_spans;

static int cmp_span(const void *pa, const void *pb) {
  const span *a = &g_sort_spans[*(const size_t *)pa], *b = &g_sort_spans[*(const size_t *)pb];
  if (a->has_start != b->has_start) return a->has_start ? -1 : 1;
  if (a->has_start && a->start != b->start) return a->start < b->start ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void print_header(const trace *t, sbuf *b) {
  bool err = trace_is_error(t);
  if (err) {
    sb_color(b, C_RED);
    sb_puts(b, g_opt.g->fail);
    sb_putc(b, ' ');
  }
  sb_color(b, C_BOLD);
  put_str(b, t->id, 80, 0);
  sb_color(b, C_OFF);
  sb_puts(b, "  ");
  put_str(b, t->name ? t->name : "-", NAME_COLS, 0);
  sb_puts(b, "  ");
  if (err) sb_color(b, C_RED);
  put_str(b, t->state ? t->state : "?", 16, 0);
  if (err) sb_color(b, C_OFF);
  int64_t ms;
  if (trace_duration(t, &ms)) sb_printf(b, "  %lld ms", (long long)ms);
  sb_puts(b, "  ");
  put_str(b, t->request_time ? t->request_time : "?", 40, 0);
  sb_printf(b, "  %zu span%s", t->nspans, t->nspans == 1 ? "" : "s");
  if (t->session) sb_puts(b, "  session="), put_str(b, t->session, 64, 0);
  if (t->user) sb_puts(b, "  user="), put_str(b, t->user, 64, 0);
  if (t->tokens) sb_puts(b, "  tokens: "), put_str(b, t->tokens, 80, 0);
  for (size_t i = 0; i < t->ntags && i < 8; i++) {
    sb_puts(b, i ? ", " : "  tags: ");
    put_str(b, t->tags[i].key, 40, 0);
    sb_putc(b, '=');
    put_str(b, t->tags[i].val, 60, 0);
  }
  if (t->ntags > 8) sb_printf(b, ", %s", g_opt.g->ell);
  sb_emit_line(b);
  if (t->link) {
    sb_puts(b, "  ui: ");
    put_str(b, t->link, 400, T_SPACE);
    sb_emit_line(b);
  }
}

/* "thumbs = true (HUMAN alice): quick and right" */
static char *assessment_text(const assessment *a) {
  sbuf b = {0};
  sb_puts(&b, a->expectation ? "expectation " : "feedback ");
  sb_puts(&b, a->name);
  if (a->error) sb_puts(&b, ": error ");
  else sb_puts(&b, " = ");
  sb_puts(&b, a->value ? a->value : "null");
  if (a->source) sb_puts(&b, " ("), sb_puts(&b, a->source), sb_putc(&b, ')');
  if (a->rationale) sb_puts(&b, ": "), sb_puts(&b, a->rationale);
  return sb_steal(&b);
}

static bool has_span(const trace *t, const char *id) {
  for (size_t i = 0; i < t->nspans; i++)
    if (t->spans[i].id && strcmp(t->spans[i].id, id) == 0) return true;
  return false;
}

/* The assessments of the whole trace (or of a span not in it), under the
 * header. */
static void print_trace_assessments(const trace *t, sbuf *b) {
  for (size_t i = 0; i < t->nas; i++) {
    const assessment *a = &t->as[i];
    if (a->span && has_span(t, a->span)) continue;
    char *txt = assessment_text(a);
    sb_puts(b, "  ");
    sb_color(b, a->error ? C_RED : C_DIM);
    put_str(b, txt, MSG_COLS, 0);
    if (a->span) sb_puts(b, " [span "), put_str(b, a->span, 40, 0), sb_putc(b, ']');
    sb_color(b, C_OFF);
    sb_emit_line(b);
    free(txt);
  }
}

/* The indentation of a line at depth (levels 1..depth of lastf). */
static void put_indent(sbuf *b, const unsigned char *lastf, size_t depth) {
  if (depth > MAX_DRAW) {
    sb_printf(b, "[%s depth %zu] ", g_opt.g->ell, depth);
    sb_puts(b, lastf[MAX_DRAW + 1] ? g_opt.g->blank : g_opt.g->pipe);
    return;
  }
  for (size_t l = 1; l <= depth; l++) sb_puts(b, lastf[l] ? g_opt.g->blank : g_opt.g->pipe);
}

static void print_detail(sbuf *b, const unsigned char *lastf, size_t depth, bool kids,
                         const char *label, const char *text, bool red) {
  put_indent(b, lastf, depth);
  sb_puts(b, kids ? g_opt.g->pipe : g_opt.g->blank);
  sb_color(b, red ? C_RED : C_DIM);
  if (label) sb_puts(b, label);
  put_str(b, text, red ? MSG_COLS : PREVIEW_COLS + 8, 0);
  sb_color(b, C_OFF);
  sb_emit_line(b);
}

static void print_span(sbuf *b, const span *s, unsigned char *lastf, size_t depth, bool last,
                       bool kids, const char *note) {
  /* lastf[l] for l < depth describes the ancestors; record this level. */
  size_t lv = depth > MAX_DRAW ? MAX_DRAW + 1 : depth;
  if (depth) {
    if (depth > MAX_DRAW) {
      sb_printf(b, "[%s depth %zu] ", g_opt.g->ell, depth);
    } else {
      for (size_t l = 1; l < depth; l++) sb_puts(b, lastf[l] ? g_opt.g->blank : g_opt.g->pipe);
    }
    sb_puts(b, last ? g_opt.g->elbow : g_opt.g->tee);
  }
  lastf[lv] = last;
  if (s->status == ST_ERROR) sb_color(b, C_RED);
  put_str(b, s->name && s->name[0] ? s->name : "(unnamed)", NAME_COLS, 0);
  if (s->type && s->type[0]) {
    sb_puts(b, " [");
    put_str(b, s->type, 32, 0);
    sb_putc(b, ']');
  }
  sb_putc(b, ' ');
  fmt_duration(b, s);
  sb_putc(b, ' ');
  if (s->status == ST_ERROR) {
    sb_puts(b, g_opt.g->fail);
    sb_puts(b, " ERROR");
    if (s->status_msg) sb_puts(b, ": "), put_str(b, s->status_msg, MSG_COLS, 0);
  } else if (s->status == ST_OK) {
    sb_puts(b, "ok");
  } else if (s->status == ST_OTHER) {
    put_str(b, s->status_raw, 32, 0);
  } else {
    sb_puts(b, "unset");
  }
  if (s->status == ST_ERROR) sb_color(b, C_OFF);
  if (s->nchunks) sb_printf(b, " (%zu chunk%s)", s->nchunks, s->nchunks == 1 ? "" : "s");
  if (s->tokens) sb_puts(b, " tokens: "), put_str(b, s->tokens, 60, 0);
  if (g_opt.ids || note) sb_color(b, C_DIM);
  if (g_opt.ids) sb_puts(b, " id="), put_str(b, s->id ? s->id : "-", 40, 0);
  if (note) {
    sb_puts(b, " (parent ");
    put_str(b, s->parent, 40, 0);
    sb_puts(b, note);
  }
  if (g_opt.ids || note) sb_color(b, C_OFF);
  sb_emit_line(b);
  if (s->in) print_detail(b, lastf, depth, kids, "in: ", s->in, false);
  if (s->out) print_detail(b, lastf, depth, kids, "out: ", s->out, false);
  for (size_t i = 0; i < s->nevs; i++) {
    if (!s->evs[i].exc) {
      print_detail(b, lastf, depth, kids, NULL, s->evs[i].text, false);
      continue;
    }
    sbuf tmp = {0};
    sb_puts(&tmp, g_opt.g->fail);
    sb_putc(&tmp, ' ');
    print_detail(b, lastf, depth, kids, tmp.p, s->evs[i].text, true);
    free(tmp.p);
  }
  if (s->nevents_more) {
    char more[64];
    snprintf(more, sizeof more, "%s %zu more events", g_opt.g->ell, s->nevents_more);
    print_detail(b, lastf, depth, kids, NULL, more, false);
  }
}

typedef struct {
  size_t idx, depth;
  bool last;
} frame;

static void print_tree(const trace *t, sbuf *b) {
  size_t n = t->nspans;
  if (!n) {
    sb_puts(b, "  (no spans)");
    sb_emit_line(b);
    return;
  }
  strmap ids = {0};
  for (size_t i = 0; i < n; i++)
    if (t->spans[i].id) map_insert(&ids, t->spans[i].id, i);
  size_t *par = xarray(n, sizeof *par), *cnt = xcalloc(n + 1, sizeof *cnt);
  size_t nroots = 0;
  for (size_t i = 0; i < n; i++) {
    size_t p;
    par[i] = SIZE_MAX;
    if (t->spans[i].parent && map_get(&ids, t->spans[i].parent, &p) && p != i) {
      par[i] = p;
      cnt[p + 1]++;
    } else {
      nroots++;
    }
  }
  map_free(&ids);
  for (size_t i = 0; i < n; i++) cnt[i + 1] += cnt[i]; /* cnt[i] = offset of i's children */
  size_t *kids = xarray(n, sizeof *kids), *fill = xarray(n, sizeof *fill);
  size_t *roots = xarray(nroots ? nroots : 1, sizeof *roots), r = 0;
  memcpy(fill, cnt, n * sizeof *fill);
  for (size_t i = 0; i < n; i++) {
    if (par[i] == SIZE_MAX) roots[r++] = i;
    else kids[fill[par[i]]++] = i;
  }
  free(fill);
  g_sort_spans = t->spans;
  qsort(roots, nroots, sizeof *roots, cmp_span);
  for (size_t i = 0; i < n; i++)
    if (cnt[i + 1] - cnt[i] > 1) qsort(kids + cnt[i], cnt[i + 1] - cnt[i], sizeof *kids, cmp_span);

  bool *seen = xcalloc(n, sizeof *seen);
  frame *stack = xarray(n, sizeof *stack);
  unsigned char lastf[MAX_DRAW + 2] = {0};
  /* Roots first, then spans on parent cycles (never reached from a root). */
  for (size_t pass = 0; pass < 2; pass++) {
    size_t lim = pass ? n : nroots;
    for (size_t k = 0; k < lim; k++) {
      size_t start = pass ? k : roots[k];
      if (seen[start]) continue;
      size_t sp = 0;
      stack[sp++] = (frame){start, 0, true};
      seen[start] = true;
      while (sp) {
        frame f = stack[--sp];
        size_t lo = cnt[f.idx], hi = cnt[f.idx + 1], nk = 0, lastk = 0;
        for (size_t j = lo; j < hi; j++)
          if (!seen[kids[j]]) nk++, lastk = j;
        /* A top-level span that names a parent: a continuation (parent
         * not in the store), its own parent, or a member of a cycle. */
        const span *s = &t->spans[f.idx];
        const char *note = NULL;
        if (f.depth == 0 && s->parent) {
          note = pass ? " is on a cycle)"
                      : s->id && strcmp(s->id, s->parent) == 0 ? " is itself)" : " not found)";
        }
        print_span(b, s, lastf, f.depth, f.last, nk > 0, note);
        for (size_t ai = 0; s->id && ai < t->nas; ai++) {
          if (!t->as[ai].span || strcmp(t->as[ai].span, s->id) != 0) continue;
          char *txt = assessment_text(&t->as[ai]);
          print_detail(b, lastf, f.depth, nk > 0, NULL, txt, t->as[ai].error);
          free(txt);
        }
        for (size_t j = hi; j-- > lo;) {
          if (seen[kids[j]]) continue;
          seen[kids[j]] = true;
          stack[sp++] = (frame){kids[j], f.depth + 1, j == lastk};
        }
      }
    }
  }
  free(stack);
  free(seen);
  free(roots);
  free(kids);
  free(cnt);
  free(par);
}

int cmd_show(const store *st) {
  sbuf b = {0};
  for (size_t i = 0; i < st->n; i++) {
    if (i) {
      sb_puts(&b, "");
      sb_emit_line(&b);
    }
    print_header(&st->v[i], &b);
    print_trace_assessments(&st->v[i], &b);
    print_tree(&st->v[i], &b);
  }
  free(b.p);
  return 0;
}

