#!/bin/sh
# tests/c10k/test_c10k.sh: the short C10k run of `make test` (TAP): 1,000
# connections (200 under the sanitizers; C10K_* in tests/c10k/run-c10k.sh
# change it), every trace checked.
exec "${SHELL:-/bin/sh}" "${top_srcdir:-.}/tests/c10k/run-c10k.sh" --tap
