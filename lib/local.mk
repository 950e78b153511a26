# lib/: the core library libmltrace and the mltrace command-line tool.

lib_LTLIBRARIES += lib/libmltrace.la
lib_libmltrace_la_SOURCES = \
  lib/assess.c \
  lib/assess-mlflow.c \
  lib/chunks.c \
  lib/client.c \
  lib/context.c \
  lib/exporters.c \
  lib/http.c \
  lib/json.c \
  lib/mlflow.c \
  lib/options.c \
  lib/otlp.c \
  lib/pipeline.c \
  lib/scope.c \
  lib/serialize.c \
  lib/slots.c \
  lib/span.c \
  lib/spanopts.c \
  lib/spool.c \
  lib/status.c \
  lib/thread.c \
  lib/trace.c \
  lib/util.c \
  lib/view.c
noinst_HEADERS += \
  lib/assess-internal.h \
  lib/common-internal.h \
  lib/exporter-internal.h \
  lib/json-internal.h \
  lib/options-internal.h \
  lib/otlp-internal.h \
  lib/scope-internal.h \
  lib/span-internal.h \
  lib/spool-internal.h
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
