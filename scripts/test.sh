#!/usr/bin/env bash
# The project's test command: set up (idempotent), lint, run the tests.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --test

echo "test: ruff check ."
.venv/bin/ruff check .

echo "test: pytest -q $*"
rc=0
SEALCAM_NO_SKIP=1 .venv/bin/python -m pytest -q "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test: FAILED: pytest collected no tests (exit code 5)" >&2
fi
exit "$rc"
