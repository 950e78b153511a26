/* tests/harness/proc.h: the project's programs as child processes of a
 * test: found under $top_builddir, started on port 0 with stdout on a pipe
 * until they print "listening on ADDR:PORT" (examples/fake-openai,
 * examples/chat-proxy, ...), stopped by signal with a bounded wait.  A child
 * dies with the process that started it (PR_SET_PDEATHSIG), and the
 * children still running at exit() are killed (registered with atexit() by
 * the first th_spawn(); tap.h's forked tests inherit the registration but
 * kill only the children they started themselves).  Header-only. */
#ifndef MLT_TESTS_HARNESS_PROC_H
#define MLT_TESTS_HARNESS_PROC_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "tap.h"

/* Children to kill at exit(), each with the pid of the process that
 * started it. */
typedef struct th_child {
  pid_t pid, owner;
} th_child;
static th_child th_children[16];

static inline void th_kill_children(void) {
  for (size_t i = 0; i < sizeof th_children / sizeof *th_children; i++) {
    if (th_children[i].pid > 0 && th_children[i].owner == getpid()) {
      kill(th_children[i].pid, SIGKILL);
      waitpid(th_children[i].pid, NULL, 0);
      th_children[i].pid = 0;
    }
  }
}

static inline void th__track(pid_t pid, int on) {
  static int registered;
  if (on && !registered) {
    atexit(th_kill_children);
    registered = 1;
  }
  for (size_t i = 0; i < sizeof th_children / sizeof *th_children; i++) {
    if (on && th_children[i].pid <= 0) {
      th_children[i].pid = pid;
      th_children[i].owner = getpid();
      return;
    }
    if (!on && th_children[i].pid == pid) {
      th_children[i].pid = 0;
      return;
    }
  }
}

/* "$top_builddir/<rel>" into @p out; 0 if it is executable. */
static inline int th_program(const char *rel, char *out, size_t size) {
  const char *bd = getenv("top_builddir");
  snprintf(out, size, "%s/%s", bd && *bd ? bd : ".", rel);
  return access(out, X_OK);
}

/**
 * Start @p argv (argv[0] the program's path) with stdout on a pipe, and
 * wait for its "listening on ADDR:PORT" line (20 s, scaled by
 * tap_multiplier()).  The environment is the test's without any exporter
 * setting (MLFLOW_*, OTEL_EXPORTER_OTLP_*, MLTRACE_FILE, OPENAI_API_KEY),
 * plus MLTRACE_FILE=@p trace_file when given.  With @p wrap,
 * $MLT_PROXY_WRAPPER (e.g. "valgrind -q --error-exitcode=99") is put in
 * front.
 * @return the pid (port in *port), or -1 (after a diagnostic).
 */
static inline pid_t th_spawn(const char *const *argv, const char *trace_file, int wrap, int *port) {
  int pfd[2];
  *port = 0;
  if (pipe(pfd) != 0) return -1;
  pid_t parent = getpid();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan if the test dies */
    if (getppid() != parent) _exit(1);
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    static const char *const drop[] = {"MLFLOW_TRACKING_URI", "OTEL_EXPORTER_OTLP_ENDPOINT",
                                       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "MLFLOW_TRACING_ENABLED",
                                       "MLFLOW_TRACE_SAMPLING_RATIO", "OPENAI_API_KEY", "MLTRACE_FILE"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) unsetenv(drop[i]);
    if (trace_file) setenv("MLTRACE_FILE", trace_file, 1);
    const char *args[64];
    size_t n = 0;
    char *wrapper = wrap && getenv("MLT_PROXY_WRAPPER") ? strdup(getenv("MLT_PROXY_WRAPPER")) : NULL;
    char *save = NULL;
    for (char *w = wrapper ? strtok_r(wrapper, " ", &save) : NULL; w && n < 32; w = strtok_r(NULL, " ", &save))
      args[n++] = w;
    for (size_t i = 0; argv[i] && n < 63; i++) args[n++] = argv[i];
    args[n] = NULL;
    execvp(args[0], (char *const *)args);
    _exit(127);
  }
  close(pfd[1]);
  th__track(pid, 1);
  char line[256];
  size_t n = 0;
  double deadline = th_now_ms() + 20000.0 * tap_multiplier();
  struct pollfd p = {pfd[0], POLLIN, 0};
  while (n < sizeof line - 1 && th_now_ms() < deadline) {
    int r = poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t k = read(pfd[0], line + n, 1);
    if (k <= 0 || line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  close(pfd[0]);
  const char *colon = strrchr(line, ':');
  if (strncmp(line, "listening on ", 13) != 0 || !colon || atoi(colon + 1) <= 0) {
    tap_diag("%s did not report a port: \"%s\"", argv[0], line);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    th__track(pid, 0);
    return -1;
  }
  *port = atoi(colon + 1);
  return pid;
}

/* Send @p sig (0: none) to @p pid and wait up to @p timeout_ms (scaled by
 * tap_multiplier()) for it to exit, then SIGKILL it.
 * @return its exit status, 128+signal when killed, or -1 on timeout. */
static inline int th_stop(pid_t pid, int sig, int timeout_ms) {
  if (pid <= 0) return -1;
  if (sig) kill(pid, sig);
  int st = 0;
  double deadline = th_now_ms() + (double)timeout_ms * tap_multiplier();
  while (th_now_ms() < deadline) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      th__track(pid, 0);
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    usleep(5000);
  }
  tap_diag("pid %d did not stop within %d ms", (int)pid, timeout_ms);
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  th__track(pid, 0);
  return -1;
}

/* examples/fake-openai (an OpenAI-compatible LLM server, see its --help)
 * on 127.0.0.1.  Started once by a test program's main(), before
 * tap_main() (its forked tests share it: th_fake_port, or 0 when it could
 * not start, then NEED_FAKE() skips the test); th_fake_openai_stop() after
 * tap_main().  @return 0, or -1 (after a diagnostic). */
static pid_t th_fake_pid;
static int th_fake_port;

static inline int th_fake_openai_start(void) {
  char prog[4096];
  th_fake_port = 0;
  if (th_program("examples/fake-openai", prog, sizeof prog) != 0) {
    printf("# %s is missing (set top_builddir)\n", prog);
    return -1;
  }
  const char *args[] = {prog, "--host", "127.0.0.1", "--port", "0", "--quiet", NULL};
  th_fake_pid = th_spawn(args, NULL, 0, &th_fake_port);
  if (th_fake_pid <= 0) th_fake_port = 0;
  return th_fake_pid > 0 ? 0 : -1;
}

static inline void th_fake_openai_stop(void) {
  if (th_fake_pid > 0) th_stop(th_fake_pid, SIGTERM, 5000);
  th_fake_pid = 0;
}

#define NEED_FAKE()                                                                           \
  do {                                                                                        \
    if (th_fake_port <= 0) TAP_SKIP("examples/fake-openai is not available");                 \
  } while (0)

#endif /* MLT_TESTS_HARNESS_PROC_H */
