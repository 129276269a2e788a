#!/usr/bin/env bash
# Runs the suite; an empty selection (pytest exit 5) is a failure, not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest "$@"
rc=$?
[ "$rc" -eq 5 ] && echo "no tests were collected" >&2 && exit 1
exit "$rc"
