# tests/harness/tap.sh (sourced, POSIX sh): TAP output for the shell tests.
#
#   . "$(dirname "$0")/../harness/tap.sh"     (from tests/<dir>/x.sh)
#   tap_ok $? "what was checked"               # ok / not ok, from a status
#   tap_check "what" cmd args...               # runs the command
#   tap_skip "what" "why"                      # counted a failure under CI=true
#   tap_diag "text"; tap_diag_file FILE [N]    # "# " lines
#   tap_done                                   # "1..N", exit 1 on failure
#
# tap_fail_hook, when defined, runs after every failed check (to print the
# last command's output, say).  tap_valgrind PROG LOG [TEST]: run a TAP test
# program under valgrind memcheck in-process (TAP_NOFORK; one test with
# TEST), failing on any memory error or definite leak.  tap_wait_port FILE:
# the port a server started in the background printed to FILE.

tap_n=0
tap_failed=0

tap_ok() { # status description
  tap_n=$((tap_n + 1))
  if [ "$1" -eq 0 ]; then
    echo "ok $tap_n - $2"
  else
    tap_failed=$((tap_failed + 1))
    echo "not ok $tap_n - $2"
    if command -v tap_fail_hook >/dev/null 2>&1; then tap_fail_hook; fi
  fi
}

tap_check() { # description command...
  tap_desc=$1
  shift
  "$@"
  tap_ok $? "$tap_desc"
}

tap_skip() { # description why (tests/summary.sh fails a skip under CI=true)
  tap_n=$((tap_n + 1))
  echo "ok $tap_n - $1 # SKIP $2"
}

tap_diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

tap_diag_file() { # file [lines]
  [ -f "$1" ] && sed -n "1,${2:-15}s/^/# /p" "$1"
  return 0
}

tap_done() {
  echo "1..$tap_n"
  [ "$tap_failed" -eq 0 ]
  exit $?
}

# tap_wait_port FILE: wait (30 s at most) until FILE, the stdout of a server
# started in the background, has its "listening on ADDR:PORT" line; print
# PORT.  Status 1 when it never came.
tap_wait_port() {
  tap__i=0
  while [ $tap__i -lt 600 ]; do
    tap__p=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$1" 2>/dev/null | head -1)
    if [ -n "$tap__p" ]; then echo "$tap__p"; return 0; fi
    tap__i=$((tap__i + 1))
    sleep 0.05
  done
  return 1
}

tap__vg_args="-q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9 --child-silent-after-fork=yes"

tap_valgrind() { # program log [test]
  if [ -n "${3:-}" ]; then
    # shellcheck disable=SC2086 # the arguments are a list
    TAP_ONLY=$3 TAP_NOFORK=1 TAP_TIMEOUT_MULTIPLIER=20 "${top_builddir:-.}/libtool" --mode=execute "$VALGRIND" \
      $tap__vg_args "${top_builddir:-.}/$1" >"$2" 2>&1 && ! grep -q '^not ok' "$2" && grep -q "^ok 1 - $3" "$2"
  else
    # shellcheck disable=SC2086
    TAP_NOFORK=1 TAP_TIMEOUT_MULTIPLIER=20 "${top_builddir:-.}/libtool" --mode=execute "$VALGRIND" \
      $tap__vg_args "${top_builddir:-.}/$1" >"$2" 2>&1 && ! grep -q '^not ok' "$2"
  fi
}
