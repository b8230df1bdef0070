#!/usr/bin/env bash
# Install (or reuse) .venv, then run the main job: `dldebug demo` on the embedded digits scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dldebug demo "$@"
