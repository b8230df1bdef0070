#!/usr/bin/env bash
# Install (or reuse) .venv, then run the whole test suite, ruff and mypy. Fails if any of them fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=2
# Two pytest workers, one math thread each: the 2-core machine's cores are used without oversubscription.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
status=0
echo "[test] ruff"; .venv/bin/ruff check src tests benchmarks || status=1
echo "[test] mypy"; .venv/bin/mypy || status=1
echo "[test] pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" "$@" || status=1
exit $status
