#!/usr/bin/env bash
# One command on a fresh machine with only Python: install into .venv (only when needed)
# and start everything (Prefect server on SQLite, deployments, intake endpoint, SLA clock).
#   scripts/up.sh            # real time
#   scripts/up.sh --demo     # plus sample tickets with compressed time
#   scripts/up.sh --scale-out  # the distributed topology on this machine (docs/SCALE.md)
#
# It installs only when .venv is missing or pyproject.toml changed since the last install
# (a hash stamp in .venv), so an installed machine starts offline. While it installs it
# shows pip's progress; setuptools' deprecation warnings are silenced.
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
stamp=.venv/.aftersales-installed
want=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')
if [ ! -x .venv/bin/aftersales ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing into .venv (pyproject.toml is new or changed) ..."
    [ -d .venv ] || python3 -m venv .venv
    # setuptools' deprecation warnings (the build runs in pip's subprocesses) are noise here
    PYTHONWARNINGS=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        .venv/bin/python -m pip install --progress-bar on -e . \
        || { echo "install failed (see above); nothing was started" >&2; exit 1; }
    echo "$want" > "$stamp"
    echo "installed."
fi
if [ "${1:-}" = "--scale-out" ]; then
    shift
    # the distributed topology (docs/SCALE.md) needs prefect-redis (the `scale` extra)
    .venv/bin/python -c 'import prefect_redis' 2>/dev/null \
        || PYTHONWARNINGS=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q -e ".[scale]"
    exec .venv/bin/aftersales scale-out "$@"
fi
exec .venv/bin/aftersales up "$@"
