#!/usr/bin/env bash
# The project's test command: set up, start what the tests need, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
# Browser tests use Debian's Chromium (never a downloaded browser). setup.sh installed the CJK font the
# OCR test draws Chinese with (without it that check is skipped).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will skip"
fi
# A real PostgreSQL server on loopback for the annotation store tests.
# Stopped on exit when this script started it (a server that was already running is left alone).
if pg_env=$(bash .ci/postgres.sh 2>/dev/null); then
  eval "$pg_env"
  if [ "${ANNOT_PG_STARTED:-0}" = 1 ]; then trap 'ANNOT_PG_STOP=1 bash .ci/postgres.sh 2>/dev/null || true' EXIT; fi
else
  echo "PostgreSQL not started: its tests will skip"
fi
.venv/bin/python -m pytest "$@"
