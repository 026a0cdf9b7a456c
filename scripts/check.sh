#!/usr/bin/env bash
# The house's checks, then the tests: what .ci/run and the README's test command run.
#   bash scripts/check.sh              # everything
#   bash scripts/check.sh -k pairing   # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
echo "ruff: style and imports" >&2
.venv/bin/ruff check hearth tests scripts
echo "mypy --strict: the hearth package, and the scripts that use it" >&2
.venv/bin/mypy --strict hearth
.venv/bin/mypy --strict scripts/*.py
echo "import-linter: the layer rule of docs/architecture.md" >&2
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
