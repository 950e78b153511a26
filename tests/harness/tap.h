/* tests/harness/tap.h: the project's tiny test runner (TAP output).
 *
 * A test program lists its tests in a table and calls tap_main():
 *
 *     TEST(test_something) { CHECK_EQ_INT(1 + 1, 2); }
 *     static const tap_test tests[] = { TAP_ENTRY(test_something), TAP_END };
 *     int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
 *
 * Every test runs in a child process (fork) with a timeout, so a crash, an
 * abort or a hang fails that test only.  Output is TAP ("ok 1 - name"), read
 * by automake's tap-driver.sh.  A test may skip itself with TAP_SKIP("why");
 * under CI=true a skipped test counts as a failure.
 *
 * Environment: TAP_NOFORK=1 runs tests in-process (for gdb); TAP_TIMEOUT=s
 * overrides the per-test timeout (default 60 s, multiplied by
 * TAP_TIMEOUT_MULTIPLIER, e.g. for valgrind); TAP_ONLY=name runs one test.
 */
#ifndef MLT_TESTS_TAP_H
#define MLT_TESTS_TAP_H

#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct tap_test {
  const char *name;
  void (*fn)(void);
  int timeout_s; /* 0 = default */
} tap_test;

#define TEST(name) static void name(void)
#define TAP_ENTRY(fn) {#fn, fn, 0}
#define TAP_ENTRY_TIMEOUT(fn, s) {#fn, fn, (s)}
#define TAP_END {NULL, NULL, 0}

/* Exit codes of a child test process. */
#define TAP__PASS 0
#define TAP__FAIL 1
#define TAP__SKIP 77

static int tap__failed;
static jmp_buf tap__jmp;
static int tap__injmp;

static inline void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tap_diag(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("# ", stdout);
  vprintf(fmt, ap);
  fputc('\n', stdout);
  fflush(stdout);
  va_end(ap);
}

static inline void tap__fail_here(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void tap__fail_here(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("# FAIL %s:%d: ", file, line);
  vprintf(fmt, ap);
  putchar('\n');
  fflush(stdout);
  va_end(ap);
  tap__failed = 1;
}

/* Soft check: records the failure and continues. */
#define CHECK(cond)                                                                           \
  do {                                                                                        \
    if (!(cond)) tap__fail_here(__FILE__, __LINE__, "CHECK(%s)", #cond);                     \
  } while (0)
#define CHECK_EQ_INT(a, b)                                                                    \
  do {                                                                                        \
    long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);                               \
    if (tap_a_ != tap_b_)                                                                     \
      tap__fail_here(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, tap_a_, tap_b_);   \
  } while (0)
#define CHECK_EQ_STR(a, b)                                                                    \
  do {                                                                                        \
    const char *tap_a_ = (a), *tap_b_ = (b);                                                  \
    if (!tap_a_ || !tap_b_ || strcmp(tap_a_, tap_b_) != 0)                                    \
      tap__fail_here(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,                \
                     tap_a_ ? tap_a_ : "(null)", tap_b_ ? tap_b_ : "(null)");                 \
  } while (0)
/* Hard check: fails and ends the test. */
#define REQUIRE(cond)                                                                         \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      tap__fail_here(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                               \
      if (tap__injmp) longjmp(tap__jmp, 1);                                                   \
      exit(TAP__FAIL);                                                                        \
    }                                                                                         \
  } while (0)
#define REQUIRE_EQ_INT(a, b)                                                                  \
  do {                                                                                        \
    long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);                               \
    if (tap_a_ != tap_b_) {                                                                   \
      tap__fail_here(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, tap_a_, tap_b_);   \
      if (tap__injmp) longjmp(tap__jmp, 1);                                                   \
      exit(TAP__FAIL);                                                                        \
    }                                                                                         \
  } while (0)
#define TAP_SKIP(why)                                                                         \
  do {                                                                                        \
    printf("# SKIP %s\n", (why));                                                             \
    fflush(stdout);                                                                           \
    exit(TAP__SKIP);                                                                          \
  } while (0)

/* $TAP_TIMEOUT_MULTIPLIER (e.g. 10 under valgrind), else 1: tests scale
 * their own waits for a child process or a reply by it. */
static inline int tap_multiplier(void) {
  const char *e = getenv("TAP_TIMEOUT_MULTIPLIER");
  return e && atoi(e) > 0 ? atoi(e) : 1;
}

static inline int tap__timeout(const tap_test *t) {
  int s = t->timeout_s > 0 ? t->timeout_s : 60;
  const char *e = getenv("TAP_TIMEOUT");
  if (e && atoi(e) > 0) s = atoi(e);
  return s * tap_multiplier();
}

static inline int tap__run_child(const tap_test *t) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return TAP__FAIL;
  }
  if (pid == 0) {
    alarm((unsigned)tap__timeout(t));
    tap__failed = 0;
    t->fn();
    fflush(stdout);
    _exit(tap__failed ? TAP__FAIL : TAP__PASS);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    printf("# test %s killed by signal %d%s\n", t->name, WTERMSIG(status),
           WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
  }
  return TAP__FAIL;
}

static inline int tap_main(int argc, char **argv, const tap_test *tests) {
  (void)argc;
  (void)argv;
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *only = getenv("TAP_ONLY");
  int nofork = getenv("TAP_NOFORK") != NULL;
  int ci = getenv("CI") && strcmp(getenv("CI"), "true") == 0;
  int n = 0;
  volatile int failed = 0;
  for (const tap_test *t = tests; t->name; t++)
    if (!only || strcmp(only, t->name) == 0) n++;
  printf("1..%d\n", n);
  volatile int i = 0;
  for (const tap_test *volatile t = tests; t->name; t++) {
    if (only && strcmp(only, t->name) != 0) continue;
    i++;
    volatile int rc;
    if (nofork) {
      tap__failed = 0;
      tap__injmp = 1;
      if (setjmp(tap__jmp) == 0) t->fn();
      tap__injmp = 0;
      rc = tap__failed ? TAP__FAIL : TAP__PASS;
    } else {
      rc = tap__run_child(t);
    }
    if (rc == TAP__PASS) {
      printf("ok %d - %s\n", i, t->name);
    } else if (rc == TAP__SKIP && !ci) {
      printf("ok %d - %s # SKIP\n", i, t->name);
    } else {
      printf("not ok %d - %s%s\n", i, t->name, rc == TAP__SKIP ? " (skipped under CI=true)" : "");
      failed++;
    }
  }
  return failed ? 1 : 0;
}

#endif /* MLT_TESTS_TAP_H */
