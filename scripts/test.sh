#!/usr/bin/env bash
# Install into .venv (with the dev extras) and run the whole test suite.
# PostgreSQL tests run when AFTERSALES_TEST_POSTGRES_URL (default
# postgresql://root@127.0.0.1:5432/test) is reachable and skip with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e ".[dev]"
python -m pytest -q "$@"
