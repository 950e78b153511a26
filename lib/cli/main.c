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
        "       mltrace [OPTIONS] merge [FILE]\n"
        "       mltrace [OPTIONS] list --tracking-uri URL [--experiment NAME|ID] [--max N]\n"
        "       mltrace [OPTIONS] show --tracking-uri URL TRACE_ID\n"
        "\n"
        "List or show the traces of a JSONL trace store (one MLflow trace JSON per\n"
        "line), or of an MLflow tracking server.  FILE defaults to $MLTRACE_FILE,\n"
        "else traces.jsonl; \"-\" reads stdin.  In a file, TRACE_ID may be a unique\n"
        "prefix, with or without \"tr-\"; on a server it is the whole id.  `merge`\n"
        "prints the file with one complete trace per line (continuations and the\n"
        "update lines of feedback and tags given later merged in), for readers that\n"
        "load each line with mlflow.entities.Trace.from_json().\n"
        "\n"
        "Options:\n"
        "  --tracking-uri URL    read the MLflow tracking server at URL (auth and TLS\n"
        "                        as the library: MLFLOW_TRACKING_TOKEN, or _USERNAME\n"
        "                        and _PASSWORD; MLFLOW_TRACKING_INSECURE_TLS,\n"
        "                        MLFLOW_TRACKING_SERVER_CERT_PATH)\n"
        "  --experiment NAME|ID  the server's experiment (digits: an id); default\n"
        "                        $MLFLOW_EXPERIMENT_ID, $MLFLOW_EXPERIMENT_NAME, else 0\n"
        "  --max N               list the N most recent traces (default 100)\n"
        "  --ascii               draw trees and marks with ASCII characters\n"
        "  --no-color            never color the output (default: color on a terminal\n"
        "                        unless NO_COLOR is set)\n"
        "  --ids                 show span ids (16 hex digits)\n"
        "  -h, --help            show this help\n"
        "  --version             show the version\n"
        "\n"
        "`list` starts every line with a mark (error, ok, other) so that columns\n"
        "never shift.\n"
        "\n"
        "Exit status: 0 if traces were printed and every line was valid, 1 if some\n"
        "lines were malformed or there was nothing to print, 2 on a usage error, an\n"
        "unreadable file or server, or a TRACE_ID that is not found or not unique.\n",
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
  server_options srv = {NULL, NULL, 100};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!opts_done && a[0] == '-' && a[1]) {
      if (strcmp(a, "--") == 0) opts_done = true;
      else if (strcmp(a, "--ascii") == 0) ascii = true;
      else if (strcmp(a, "--no-color") == 0 || strcmp(a, "--no-colour") == 0) no_color = true;
      else if (strcmp(a, "--ids") == 0) g_opt.ids = true;
      else if (strcmp(a, "--tracking-uri") == 0 || strcmp(a, "--experiment") == 0 || strcmp(a, "--max") == 0) {
        if (i + 1 >= argc) return usage_error("missing value after ", a);
        const char *val = argv[++i];
        if (a[2] == 't') srv.uri = val;
        else if (a[2] == 'e') srv.experiment = val;
        else {
          char *e;
          errno = 0;
          srv.max = strtol(val, &e, 10);
          if (errno || *e || srv.max < 1 || srv.max > 100000) return usage_error("--max wants 1..100000, not ", val);
        }
      }
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
  bool list = strcmp(pos[0], "list") == 0, show = strcmp(pos[0], "show") == 0, merge = strcmp(pos[0], "merge") == 0;
  if (!list && !show && !merge) return usage_error("unknown command: ", pos[0]);
  if (((list || merge) && npos > 2) || (show && npos > 3)) return usage_error("too many arguments", NULL);
  if ((srv.experiment || srv.max != 100) && !srv.uri) return usage_error("--experiment and --max need --tracking-uri", NULL);
  if (srv.uri) {
    if (merge) return usage_error("merge works on a file, not with --tracking-uri", NULL);
    if (list && npos > 1) return usage_error("list --tracking-uri takes no FILE", NULL);
    if (show && npos != 2) return usage_error("show --tracking-uri wants one TRACE_ID", NULL);
    if (strncmp(srv.uri, "http://", 7) && strncmp(srv.uri, "https://", 8))
      return usage_error("--tracking-uri wants an http:// or https:// URL", NULL);
  }

  g_opt.g = ascii ? &g_ascii : &g_utf8;
  const char *nc = getenv("NO_COLOR");
  g_opt.color = !no_color && !(nc && nc[0]) && isatty(STDOUT_FILENO);

  if (merge) {
    const char *e = getenv("MLTRACE_FILE");
    return cmd_merge(npos == 2 ? pos[1] : e && e[0] ? e : "traces.jsonl");
  }
  if (srv.uri) {
    store st = {0};
    st.details = show;
    int rc = 0;
    if (list) rc = server_list(&st, &srv) ? 0 : 2;
    else rc = server_show(&st, &srv, pos[1]);
    if (rc == 0) {
      if (list) cmd_list(&st);
      else rc = cmd_show(&st);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
      fprintf(stderr, "mltrace: write error: %s\n", strerror(errno));
      rc = 2;
    }
    if (rc == 0 && st.n == 0) {
      fprintf(stderr, "mltrace: no traces on the server\n");
      rc = 1;
    }
    store_free(&st);
    return rc;
  }

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

