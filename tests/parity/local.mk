# tests/parity/: MLflow 3.17 parity (feedback, expectations, tags on finished
# traces, update_current_trace state/model_id), read back from a real MLflow
# server with MLflow's client and from the file store with Trace.from_json.
check_PROGRAMS += tests/parity/parity_emit
tests_parity_parity_emit_SOURCES = tests/parity/parity_emit.c
tests_parity_parity_emit_CFLAGS = $(TEST_CFLAGS)
tests_parity_parity_emit_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/unit/test_assess
tests_unit_test_assess_SOURCES = tests/unit/test_assess.c
tests_unit_test_assess_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_assess_LDADD = $(TEST_LDADD)
TESTS += tests/unit/test_assess

TESTS += tests/parity/test_parity.py
EXTRA_DIST += tests/parity/test_parity.py
