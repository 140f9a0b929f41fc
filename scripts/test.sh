#!/usr/bin/env bash
# The test suite: lint, then unit and integration tests (integration needs the Docker engine and
# the base image that scripts/install.sh provides). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -ra "$@"
