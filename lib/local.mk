# lib/: the core library libmltrace and the mltrace command-line tool.

lib_LTLIBRARIES += lib/libmltrace.la
# Layers (see ARCHITECTURE.md): util/ <- core/ <- export/, util/ <- net/ <- export/.
# Includes name the layer ("core/span-internal.h"); tests/check-layers.sh
# rejects an include that points up.
lib_libmltrace_la_SOURCES = \
  lib/util/json.c \
  lib/util/status.c \
  lib/util/util.c \
  lib/core/chunks.c \
  lib/core/client.c \
  lib/core/compact.c \
  lib/core/context.c \
  lib/core/scope.c \
  lib/core/slots.c \
  lib/core/span.c \
  lib/core/span-record.c \
  lib/core/span-set.c \
  lib/core/span-stream.c \
  lib/core/spanopts.c \
  lib/core/state.c \
  lib/core/thread.c \
  lib/core/tls.c \
  lib/core/trace.c \
  lib/net/http.c \
  lib/export/assess.c \
  lib/export/assess-mlflow.c \
  lib/export/exporters.c \
  lib/export/mlflow.c \
  lib/export/options.c \
  lib/export/otlp.c \
  lib/export/pipeline.c \
  lib/export/serialize.c \
  lib/export/spool.c \
  lib/export/view.c
noinst_HEADERS += \
  lib/util/common-internal.h \
  lib/util/hex-internal.h \
  lib/util/json-internal.h \
  lib/core/record-internal.h \
  lib/core/scope-internal.h \
  lib/core/span-internal.h \
  lib/core/trace-view.h \
  lib/export/assess-internal.h \
  lib/export/exporter-internal.h \
  lib/export/options-internal.h \
  lib/export/otlp-internal.h \
  lib/export/spool-internal.h \
  lib/net/http-internal.h
lib_libmltrace_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/lib
lib_libmltrace_la_CFLAGS = $(AM_CFLAGS) $(MLT_VISIBILITY_CFLAGS) $(CJSON_CFLAGS) $(CURL_CFLAGS) $(ZLIB_CFLAGS)
lib_libmltrace_la_LIBADD = $(CJSON_LIBS) $(CURL_LIBS) $(ZLIB_LIBS) $(PTHREAD_LIBS) -lm
lib_libmltrace_la_LDFLAGS = -no-undefined \
  -version-info $(MLT_LT_CURRENT):$(MLT_LT_REVISION):$(MLT_LT_AGE) \
  -export-symbols-regex '^mlt_'

mltraceincludedir = $(includedir)/mltrace
mltraceinclude_HEADERS = \
  lib/include/mltrace/assessment.h \
  lib/include/mltrace/common.h \
  lib/include/mltrace/context.h \
  lib/include/mltrace/exporter.h \
  lib/include/mltrace/mltrace.h \
  lib/include/mltrace/scope.h \
  lib/include/mltrace/setup.h \
  lib/include/mltrace/span.h \
  lib/include/mltrace/span_options.h \
  lib/include/mltrace/thread.h \
  lib/include/mltrace/trace.h
nodist_mltraceinclude_HEADERS = lib/include/mltrace/version.h
EXTRA_DIST += lib/include/mltrace/version.h.in lib/mltrace.pc.in
pkgconfig_DATA += lib/mltrace.pc

# The mltrace command-line tool: list, show and merge the traces of a JSONL
# file; list and show those of an MLflow tracking server.
bin_PROGRAMS += lib/cli/mltrace
lib_cli_mltrace_SOURCES = lib/cli/cli.h lib/cli/main.c lib/cli/text.c lib/cli/json.c lib/cli/store.c \
  lib/cli/server.c lib/cli/render.c lib/cli/merge.c
lib_cli_mltrace_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS) $(CURL_CFLAGS)
lib_cli_mltrace_LDADD = $(CJSON_LIBS) $(CURL_LIBS)
