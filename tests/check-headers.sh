#!/bin/sh
# tests/check-headers.sh: every public function is documented (a comment
# right before its declaration), every exported symbol is declared in a
# public header, and the library exports nothing else.  TAP output.
: "${top_srcdir:=.}" "${top_builddir:=.}"
. "$(dirname "$0")/harness/tap.sh"
headers=$(ls "$top_srcdir"/lib/include/mltrace/*.h "$top_srcdir"/integrations/*/include/mltrace/*.h 2>/dev/null)
undoc=$(awk '
  FNR == 1 { prev = "" }
  /^MLT_EXTERN/ && $0 !~ /extern int mlt__enabled_flag/ {
    if (prev !~ /\*\/[ \t]*$/) print FILENAME ":" FNR ": " $0
  }
  { if ($0 !~ /^[ \t]*$/) prev = $0 }' $headers)
[ -z "$undoc" ]; tap_ok $? "every MLT_EXTERN declaration has a doc comment right before it"
[ -n "$undoc" ] && echo "$undoc" | sed 's/^/# /' | head -40
declared=$(cat $headers | grep -o 'mlt_[a-z0-9_]*(' | tr -d '(' | sort -u)
for lib in lib/.libs/libmltrace.so integrations/event/.libs/libmltrace_event.so integrations/curl/.libs/libmltrace_curl.so; do
  so="$top_builddir/$lib"
  [ -f "$so" ] || continue
  exported=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^_' | sort -u)
  extra=$(printf '%s\n' "$exported" | grep -v -x -F "$declared" | grep -v -x -e mlt__enabled_flag -e mlt__span_start_function)
  [ -z "$extra" ]; tap_ok $? "$lib exports only declared mlt_ symbols"
  [ -n "$extra" ] && echo "$extra" | sed 's/^/# extra: /' | head -20
done
tap_done
