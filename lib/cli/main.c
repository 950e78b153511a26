/* lib/cli/main.c: the `mltrace` command line: options, the list / show /
 * merge commands on a JSONL store or (list, show) on an MLflow tracking
 * server, and the exit status. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f) {
  fputs("Usage: mltrace [OPTIONS] list [FILE]\n"
        "       mltrace [OPTIONS] show [FILE] [TRACE_ID]\n"
        "\n"
        "List or show the traces of a JSONL trace store (one MLflow trace JSON per\n"
        "line).  FILE defaults to $MLTRACE_FILE, else traces.jsonl; \"-\" reads stdin.\n"
        "TRACE_ID may be a unique prefix, with or without \"tr-\".\n"
        "\n"
        "Options:\n"
        "  --ascii      draw trees with ASCII characters\n"
        "  --no-color   never color the output (default: color on a terminal\n"
        "               unless NO_COLOR is set)\n"
        "  --ids        show span ids (16 hex digits)\n"
        "  -h, --help   show this help\n"
        "  --version    show the version\n"
        "\n"
        "Exit status: 0 if traces were printed and every line was valid, 1 if some\n"
        "lines were malformed or there was nothing to print, 2 on a usage error, an\n"
        "unreadable file, or a TRACE_ID that is not found or not unique.\n",
        f);
}

static int usage_error(const char *fmt, const char *arg) {
  fputs("mltrace: ", stderr);
  fputs(fmt, stderr);
  if (arg) fputs(arg, stderr);
  fputs("\nTry 'mltrace --help'.\n", stderr);
  return 2;
}

/* show with one argument: a FILE if it exists (or is "-"), else a TRACE_ID
 * if it looks like one. */
static bool looks_like_file(const char *arg) {
  struct stat sb;
  if (strcmp(arg, "-") == 0 || stat(arg, &sb) == 0) return true;
  const char *h = strip_tr(arg);
  if (h != arg) return false;
  return !(h[0] && is_hex(h, strlen(h)));
}

int main(int argc, char **argv) {
  const char *pos[4];
  size_t npos = 0;
  bool no_color = false, ascii = false, opts_done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!opts_done && a[0] == '-' && a[1]) {
      if (strcmp(a, "--") == 0) opts_done = true;
      else if (strcmp(a, "--ascii") == 0) ascii = true;
      else if (strcmp(a, "--no-color") == 0 || strcmp(a, "--no-colour") == 0) no_color = true;
      else if (strcmp(a, "--ids") == 0) g_opt.ids = true;
      else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        usage(stdout);
        return 0;
      } else if (strcmp(a, "--version") == 0) {
        puts("mltrace " MLTRACE_CLI_VERSION);
        return 0;
      } else {
        return usage_error("unknown option: ", a);
      }
      continue;
    }
    if (npos == 4) return usage_error("too many arguments", NULL);
    pos[npos++] = a;
  }
  if (npos == 0) {
    usage(stderr);
    return 2;
  }
  bool list = strcmp(pos[0], "list") == 0, show = strcmp(pos[0], "show") == 0;
  if (!list && !show) return usage_error("unknown command: ", pos[0]);
  if ((list && npos > 2) || (show && npos > 3)) return usage_error("too many arguments", NULL);

  g_opt.g = ascii ? &g_ascii : &g_utf8;
  const char *nc = getenv("NO_COLOR");
  g_opt.color = !no_color && !(nc && nc[0]) && isatty(STDOUT_FILENO);

  const char *file = NULL, *query = NULL;
  if (npos >= 2) {
    if (show && npos == 2 && !looks_like_file(pos[1])) query = pos[1];
    else file = pos[1];
  }
  if (npos == 3) query = pos[2];
  if (!file) {
    const char *e = getenv("MLTRACE_FILE");
    file = e && e[0] ? e : "traces.jsonl";
  }
  if (query && !query[0]) return usage_error("empty TRACE_ID", NULL);

  store st = {0};
  st.details = show;
  st.query = query;
  if (!read_store(&st, file)) {
    store_free(&st);
    return 2;
  }
  int rc = 0;
  if (list) {
    cmd_list(&st);
  } else {
    if (query) {
      /* Every kept trace matches the prefix; an exact id wins. */
      size_t pick = SIZE_MAX;
      for (size_t i = 0; i < st.n && pick == SIZE_MAX; i++)
        if (strcasecmp(strip_tr(st.v[i].id), strip_tr(query)) == 0) pick = i;
      if (pick == SIZE_MAX && st.n == 1) pick = 0;
      if (pick == SIZE_MAX) {
        if (st.n == 0) {
          fprintf(stderr, "mltrace: trace not found: %s (in %s)\n", query, st.fname);
        } else {
          fprintf(stderr, "mltrace: trace id prefix '%s' is ambiguous; %zu traces match:\n", query,
                  st.n);
          for (size_t i = 0; i < st.n && i < 10; i++) fprintf(stderr, "  %s\n", st.v[i].id);
          if (st.n > 10) fputs("  ...\n", stderr);
        }
        store_free(&st);
        return 2;
      }
      if (pick != 0) {
        trace tmp = st.v[0];
        st.v[0] = st.v[pick];
        st.v[pick] = tmp;
      }
      for (size_t i = 1; i < st.n; i++) trace_free(&st.v[i]);
      st.n = 1;
    }
    rc = cmd_show(&st);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "mltrace: write error: %s\n", strerror(errno));
    rc = 2;
  }
  if (rc == 0 && st.malformed) rc = 1;
  if (rc == 0 && st.n == 0) {
    fprintf(stderr, "mltrace: no traces in %s\n", st.fname);
    rc = 1;
  }
  store_free(&st);
  return rc;
}

