#!/bin/sh
# tests/check-layers.sh: the library's layers include downward only (see
# ARCHITECTURE.md).  A quoted #include in lib/ names its layer folder:
#   lib/util/    may include util/
#   lib/core/    may include util/ core/
#   lib/net/     may include util/ net/
#   lib/export/  may include util/ core/ net/ export/
#   lib/cli/     the mltrace tool: its own headers and public ones only
# and integrations/ and examples/ include no internal header of lib/.
# Rules that includes alone do not show: the HTTP transport (lib/net/)
# knows nothing of MLflow (no "mlflow" outside comments); core/ never sees
# the export settings (mlt__export_config: the configuration is split by
# layer), and outside core/ only the pipeline and the options code
# (export/pipeline.c, export/options.c) read the core's configuration
# mlt__g_cfg -- exporters get their settings when they are started; the
# exporters and serializers call nothing of the pipeline but the hooks it
# gave them (mlt__export_host), and see a finished trace through
# core/trace-view.h only (not the span operations of core/span-internal.h).
# Once the library is built, the same holds for calls: no object of a layer
# needs a symbol that only a layer above it defines (nm), an exporter's
# object uses of core/ only what the view declares, and no two files of
# lib/export/ call each other (nor is there any longer call cycle).
# TAP output; each offending line is printed.
: "${top_srcdir:=.}" "${top_builddir:=.}"
bd=$(cd "$top_builddir" && pwd)
cd "$top_srcdir" || exit 1
n=0 fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
show() { [ -n "$1" ] && printf '%s\n' "$1" | sed 's/^/# /' | head -40; }

# allowed LAYER: the layer folders a file of LAYER may include
allowed() {
  case $1 in
    util) echo "util" ;;
    core) echo "util core" ;;
    net) echo "util net" ;;
    export) echo "util core net export" ;;
  esac
}

for layer in util core net export; do
  ok_dirs=$(allowed $layer)
  bad=""
  for f in lib/$layer/*.c lib/$layer/*.h; do
    [ -f "$f" ] || continue
    # Quoted includes; "config.h" (the build's) is allowed everywhere.
    hits=$(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | grep -v '"config.h"')
    [ -z "$hits" ] && continue
    while IFS= read -r line; do
      inc=$(printf '%s\n' "$line" | sed 's/^[^"]*"\([^"]*\)".*/\1/')
      top=${inc%%/*}
      good=0
      if [ "$top" != "$inc" ]; then
        for d in $ok_dirs; do [ "$top" = "$d" ] && good=1; done
      fi
      [ $good = 1 ] || bad="$bad$f:$line
"
    done <<EOF
$hits
EOF
  done
  bad=$(printf '%s' "$bad" | sed '/^$/d')
  [ -z "$bad" ]; ok $? "lib/$layer/ includes only $(echo "$ok_dirs" | sed 's/ /\/, /g')/ (layer named in the path)"
  show "$bad"
done

bad=$(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' lib/cli/*.c lib/cli/*.h | grep -v '"cli.h"\|"config.h"')
[ -z "$bad" ]; ok $? "lib/cli/ includes its own header and public headers only"
show "$bad"

bad=$(grep -rn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(util\|core\|net\|export\)/' integrations examples \
  --include='*.c' --include='*.h' 2>/dev/null)
[ -z "$bad" ]; ok $? "integrations/ and examples/ include no internal header of lib/"
show "$bad"

# Code without its comments (block and line comments; string contents kept).
strip_comments() {
  awk '{
    out = ""; s = $0
    while (s != "") {
      if (inc) { i = index(s, "*/"); if (!i) { s = ""; break } s = substr(s, i + 2); inc = 0; continue }
      i = index(s, "/*"); j = index(s, "//")
      if (j && (!i || j < i)) { out = out substr(s, 1, j - 1); s = ""; break }
      if (!i) { out = out s; s = ""; break }
      out = out substr(s, 1, i - 1); s = substr(s, i + 2); inc = 1
    }
    print FILENAME ":" FNR ":" out
  }' "$@"
}

bad=$(strip_comments lib/net/*.c lib/net/*.h | grep -i 'mlflow' | grep -v ':[0-9]*:[[:space:]]*$')
[ -z "$bad" ]; ok $? "lib/net/ knows nothing of MLflow (no mlflow in its code)"
show "$bad"

others=$(ls lib/net/*.c lib/net/*.h lib/export/*.c lib/export/*.h lib/util/*.c lib/util/*.h 2>/dev/null |
  grep -v -x -e lib/export/pipeline.c -e lib/export/options.c -e lib/export/options-internal.h)
bad=$(strip_comments $others | grep 'mlt__g_cfg')
[ -z "$bad" ]; ok $? "outside core/ only export/pipeline.c and export/options.c read mlt__g_cfg"
show "$bad"

# The configuration is split by layer: the core's settings (mlt__config,
# mlt__g_cfg: span caps, sampling, trace timeout) and the export layer's
# (mlt__export_config in export/options-internal.h: exporters, endpoints,
# timeouts, queue, spool, processor), which no file of core/ names and no
# field of the core's struct repeats.
fields() { # STRUCT FILE: the member names of typedef struct STRUCT in FILE
  strip_comments "$2" | sed 's/^[^:]*:[0-9]*://' |
    awk -v s="$1" '$0 ~ "typedef struct " s " *[{]" {f = 1; next} f && /^}/ {f = 0} f' |
    grep -o '[A-Za-z_][A-Za-z0-9_]*[;,]' | tr -d ';,' | sort -u
}
bad=$(strip_comments lib/core/*.c lib/core/*.h | grep 'mlt__export_config\|options-internal')
core_f=$(fields mlt__config lib/core/span-internal.h)
export_f=$(fields mlt__export_config lib/export/options-internal.h)
[ -n "$core_f" ] && [ -n "$export_f" ] || bad="$bad
lib/core/span-internal.h or lib/export/options-internal.h: mlt__config / mlt__export_config not found"
for f in $core_f; do
  printf '%s\n' "$export_f" | grep -qx "$f" && bad="$bad
lib/core/span-internal.h: mlt__config.$f is also an export setting (mlt__export_config)"
done
bad=$(printf '%s' "$bad" | sed '/^$/d')
[ -z "$bad" ]; ok $? "core/ never sees the export settings (mlt__export_config; mlt__config holds core settings only)"
show "$bad"

exporters="lib/export/exporters.c lib/export/mlflow.c lib/export/otlp.c lib/export/serialize.c lib/export/spool.c
  lib/export/view.c"
bad=$(strip_comments $exporters | grep 'mlt__pipeline_')
[ -z "$bad" ]; ok $? "exporters and serializers reach the pipeline only through their host (mlt__export_host)"
show "$bad"

# The exporters and serializers see a finished trace through one read-only
# view, core/trace-view.h; the operations on spans (core/span-internal.h and
# the headers built on it) are for the core and the pipeline (the export
# queue and thread, its options, the span processor's view.c, the
# assessment queue in assess.c).  Followed through the export headers they
# include.
pipeline_side="lib/export/pipeline.c lib/export/options.c lib/export/options-internal.h lib/export/view.c
  lib/export/assess.c"
# incs FILE: the lib/ files FILE includes, directly or through them.
incs() {
  todo=$1 seen=""
  while [ -n "$todo" ]; do
    set -- $todo
    f=$1
    shift
    todo="$*"
    for i in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z]*\/[^"]*\)".*/\1/p' "$f"); do
      case " $seen " in *" lib/$i "*) continue ;; esac
      seen="$seen lib/$i"
      [ -f "lib/$i" ] && todo="$todo lib/$i"
    done
  done
  echo $seen
}
bad=""
for f in lib/export/*.c lib/export/*.h; do
  case " $(echo $pipeline_side) " in *" $f "*) continue ;; esac
  for i in $(incs "$f"); do
    case $i in lib/core/*) [ "$i" = lib/core/trace-view.h ] || bad="$bad$f: includes $i
" ;; esac
  done
done
bad=$(printf '%s' "$bad" | sed '/^$/d')
[ -z "$bad" ]; ok $? "exporters and serializers include of core/ only the read-only view core/trace-view.h"
show "$bad"

# Calls: what each layer's objects need (nm -u) from the layers it may not use.
objs() { ls "$bd"/lib/"$1"/.libs/*.o 2>/dev/null || ls "$bd"/lib/"$1"/*.o 2>/dev/null; }
defined() { for o in $(objs "$1"); do nm --defined-only "$o" | awk '$2 ~ /^[A-Z]$/ && $2 != "U" {print $3}'; done | sort -u; }
if [ -n "$(objs core)" ] && command -v nm > /dev/null; then
  for pair in "util:core net export" "core:net export" "net:core export"; do
    layer=${pair%%:*}
    above=$(for l in ${pair#*:}; do defined "$l"; done | sort -u)
    bad=""
    for o in $(objs "$layer"); do
      for sym in $(nm -u "$o" | awk '{print $2}'); do
        printf '%s\n' "$above" | grep -qx "$sym" && bad="$bad$(basename "$o"): $sym
"
      done
    done
    bad=$(printf '%s' "$bad" | sed '/^$/d')
    [ -z "$bad" ]; ok $? "lib/$layer/ objects call nothing defined only in lib/{$(echo ${pair#*:} | sed 's/ /,/g')}/"
    show "$bad"
  done
fi

# ... and the same for calls: of what core/ defines, an exporter's object
# needs only what the view declares.
if [ -n "$(objs core)" ] && [ -n "$(objs export)" ] && command -v nm > /dev/null; then
  core_syms=$(defined core)
  view_syms=$(strip_comments lib/core/trace-view.h | grep -o 'mlt__[a-z0-9_]*' | sort -u)
  bad=""
  for o in $(objs export); do
    case $(basename "$o" .o) in *-pipeline | *-options | *-view | *-assess | pipeline | options | view | assess) continue ;; esac
    for sym in $(nm -u "$o" | awk '{print $2}'); do
      printf '%s\n' "$core_syms" | grep -qx "$sym" || continue
      printf '%s\n' "$view_syms" | grep -qx "$sym" || bad="$bad$(basename "$o"): $sym
"
    done
  done
  bad=$(printf '%s' "$bad" | sed '/^$/d')
  [ -z "$bad" ]; ok $? "exporter objects use of core/ only what core/trace-view.h declares"
  show "$bad"
fi

# Within export/, calls between files point one way: the pipeline calls the
# exporters, the serializers and the trace operations (assess.c), which reach
# it only through the hooks it gives them.  No call cycle between the
# objects of lib/export/ (a mutual call is the shortest): tsort finds one.
if [ -n "$(objs export)" ] && command -v nm > /dev/null && command -v tsort > /dev/null; then
  # "symbol file" for what each file defines, then for what each needs.
  syms() { for o in $(objs export); do nm $1 "$o" | awk -v f="$(basename "$o" .o)" "$2"; done; }
  edges=$({
    syms --defined-only '$2 ~ /^[A-Z]$/ {print "D", $3, f}'
    syms -u '{print "U", $2, f}'
  } | awk '$1 == "D" {def[$2] = $3; next} ($2 in def) && def[$2] != $3 {print $3, def[$2], "#", $2}')
  loop=$(printf '%s' "$edges" | sed 's/ #.*//' | tsort 2>&1 > /dev/null)
  [ -z "$loop" ]; ok $? "no call cycle between the files of lib/export/ (no two call each other)"
  if [ -n "$loop" ]; then
    show "$loop"
    show "$(printf '%s' "$edges" | sed 's/^/calls: /')"
  fi
fi

echo "1..$n"
exit $fail
