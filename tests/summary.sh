#!/bin/sh
# tests/summary.sh RC: print one line per failed/skipped test and the final
# "N passed, N failed" line, counting every TAP test point that ran (from
# automake's .trs files).  Exits non-zero if anything failed, if `make check`
# itself failed (RC != 0, e.g. a build error), or if a test was skipped while
# CI=true.
rc=${1:-0}
passed=0 failed=0 skipped=0
trs_files=$(find . -name '*.trs' 2>/dev/null | sort)
for f in $trs_files; do
  p=$(grep -c '^:test-result: PASS' "$f")
  x=$(grep -c '^:test-result: XFAIL' "$f")
  fl=$(grep -c '^:test-result: FAIL' "$f")
  xp=$(grep -c '^:test-result: XPASS' "$f")
  er=$(grep -c '^:test-result: ERROR' "$f")
  sk=$(grep -c '^:test-result: SKIP' "$f")
  passed=$((passed + p + x))
  failed=$((failed + fl + xp + er))
  skipped=$((skipped + sk))
  if [ $((fl + xp + er)) -gt 0 ]; then echo "FAILED: ${f%.trs} ($((fl + xp + er)))"; fi
  if [ "$sk" -gt 0 ]; then echo "skipped: ${f%.trs} ($sk)"; fi
done
if [ "${CI:-}" = "true" ] && [ "$skipped" -gt 0 ]; then
  echo "CI=true: $skipped skipped test(s) count as failures"
  failed=$((failed + skipped))
fi
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "make check exited with status $rc (build or harness error)"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
