#!/bin/sh
# Run a Python test script with the test virtual environment (pinned MLflow),
# creating it on first use.  Used as the LOG_COMPILER of *.py tests.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/venv.sh" || exit 99
exec "$MLT_VENV/bin/python" "$@"
