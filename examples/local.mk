# examples/: built by `make check` (check_PROGRAMS) so they always compile.
EXAMPLE_LDADD = lib/libmltrace.la $(CJSON_LIBS)
EXAMPLE_CFLAGS = $(AM_CFLAGS) $(CJSON_CFLAGS)

check_PROGRAMS += examples/rag-demo
examples_rag_demo_SOURCES = examples/rag-demo.c
examples_rag_demo_CFLAGS = $(EXAMPLE_CFLAGS)
examples_rag_demo_LDADD = $(EXAMPLE_LDADD)
