#!/usr/bin/env bash
# Creates .venv (Python >= 3.10) with nerfstudio and this package, pinned by constraints.txt.
# Idempotent: a second run only re-installs this package (editable) if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.nerfcompress-deps
want="$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
    echo "$want" > "$stamp"
else
    echo "setup_env: .venv is up to date"
fi
