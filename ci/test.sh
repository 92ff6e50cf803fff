#!/bin/sh
# Set up (idempotently) and run the whole test suite; extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
. ci/setup.sh
exec .venv/bin/pytest "$@"
