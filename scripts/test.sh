#!/usr/bin/env bash
# Install (or reuse) .venv, then run the whole test suite, ruff and mypy. Fails if any of them fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The HTML report is checked in a real browser (tests/report): the system's headless Chromium and its
# driver, installed quietly when missing (Debian/Ubuntu, as root or with passwordless sudo); nothing else
# is downloaded. Where they cannot be installed, the browser tests fail with the command to run.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo_cmd="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing chromium + chromium-driver for the browser test"
    { $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
      || { $sudo_cmd apt-get update -qq >/dev/null 2>&1 && \
           $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }; } \
      || echo "[test] could not install chromium (apt-get install chromium chromium-driver)"
  fi
fi
export DLDEBUG_REQUIRE_BROWSER="${DLDEBUG_REQUIRE_BROWSER:-1}"
export MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=2
# Two pytest workers, one math thread each: the 2-core machine's cores are used without oversubscription.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
status=0
echo "[test] ruff"; .venv/bin/ruff check src tests benchmarks || status=1
echo "[test] mypy"; .venv/bin/mypy || status=1
echo "[test] pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" "$@" || status=1
exit $status
