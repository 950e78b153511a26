# docs/: reference documentation generated from the public headers with
# Doxygen (Debian package doxygen).  `make docs` writes docs/api/html in the
# build tree and fails on any Doxygen warning (CI runs it).
DOXYGEN = doxygen
EXTRA_DIST += docs/Doxyfile docs/mainpage.md docs/parity.md

docs:
	@command -v $(DOXYGEN) >/dev/null 2>&1 || { echo "make docs: $(DOXYGEN) not found (apt-get install doxygen)" >&2; exit 1; }
	@rm -rf docs/api && $(MKDIR_P) docs/api
	MLT_SRCDIR='$(abs_top_srcdir)' MLT_BUILDDIR='$(abs_top_builddir)' MLT_DOCDIR='$(abs_top_builddir)/docs/api' \
	  MLT_VERSION='$(VERSION)' $(DOXYGEN) '$(abs_top_srcdir)/docs/Doxyfile'
	@echo "reference: docs/api/html/index.html"

clean-local: mlt-clean-docs
mlt-clean-docs:
	-rm -rf docs/api

.PHONY: docs mlt-clean-docs
