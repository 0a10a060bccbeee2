#!/usr/bin/env bash
# One command on a fresh machine with only Python: install into .venv and start
# everything (Prefect server on SQLite, deployments, intake endpoint, SLA clock).
#   scripts/up.sh            # real time
#   scripts/up.sh --demo     # plus sample tickets with compressed time
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e .
exec aftersales up "$@"
