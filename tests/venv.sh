# tests/venv.sh (sourced): make sure the test virtual environment with the
# pinned MLflow exists, and export MLT_VENV.  Created once in the build tree
# ($top_builddir/tests/.venv) and reused; the stamp records the version.
# MLT_VENV_EXTRAS: the other pinned packages the tests use (the official
# openai client and fakellm, a third-party OpenAI-compatible mock server,
# for tests/proxy/test_openai_client.py); their own stamp makes an existing
# environment install them (or a new pin) once, without a rebuild.
: "${top_builddir:=$(pwd)}"
: "${MLFLOW_VERSION:=3.17.2}"
: "${MLT_VENV_EXTRAS:=openai==3.51.0 fakellm==0.3.5}"
: "${PYTHON3:=python3}"
MLT_VENV="$top_builddir/tests/.venv"
export MLT_VENV
# psycopg2 for the PostgreSQL scale runs (`make soak`, tests/bench/bench_mlflow.py);
# installed into the venv on demand by mlt_venv_pg, not by `make test`.
: "${MLT_PSYCOPG2_VERSION:=2.9.13}"
mlt_venv_pg() {
  "$MLT_VENV/bin/python" -c "import psycopg2" 2>/dev/null ||
    "$MLT_VENV/bin/pip" install -q --disable-pip-version-check "psycopg2-binary==$MLT_PSYCOPG2_VERSION" >&2
}
stamp="$MLT_VENV/.mlflow-$MLFLOW_VERSION"
extras_stamp="$MLT_VENV/.extras-$(printf '%s' "$MLT_VENV_EXTRAS" | tr -c 'A-Za-z0-9.=-' '_')"
if [ ! -f "$stamp" ] || [ ! -f "$extras_stamp" ]; then
  lock="$top_builddir/tests/.venv.lock"
  mkdir -p "$top_builddir/tests"
  # One creator at a time (tests run in parallel).
  exec 9>"$lock"
  flock 9
  if [ ! -f "$stamp" ]; then
    echo "# creating $MLT_VENV with mlflow==$MLFLOW_VERSION $MLT_VENV_EXTRAS (once)" >&2
    rm -rf "$MLT_VENV"
    # shellcheck disable=SC2086 # the extras are a list of pins
    if ! "$PYTHON3" -m venv "$MLT_VENV" >&2 ||
       ! "$MLT_VENV/bin/pip" install -q --disable-pip-version-check "mlflow==$MLFLOW_VERSION" $MLT_VENV_EXTRAS >&2; then
      echo "# could not create the MLflow test environment" >&2
      rm -rf "$MLT_VENV"
      flock -u 9
      return 1
    fi
    touch "$stamp" "$extras_stamp"
  fi
  if [ ! -f "$extras_stamp" ]; then
    echo "# installing $MLT_VENV_EXTRAS into $MLT_VENV (once)" >&2
    # shellcheck disable=SC2086
    if ! "$MLT_VENV/bin/pip" install -q --disable-pip-version-check $MLT_VENV_EXTRAS >&2; then
      echo "# could not install $MLT_VENV_EXTRAS" >&2
      flock -u 9
      return 1
    fi
    touch "$extras_stamp"
  fi
  flock -u 9
fi
return 0
