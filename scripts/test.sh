#!/usr/bin/env bash
# Run the whole test suite with coverage, in two phases:
#   1. every test that may share the machine, spread over TEST_WORKERS pytest-xdist
#      workers (default: one per core), a test file per worker at a time;
#   2. the end-to-end tests (one browser stack) and the tests that measure latency or
#      timing (marker `serial`), one at a time, alone on the machine.
# Coverage adds up over both phases; the 90 % floor applies to the sum (phase 2).
# Extra arguments go to both pytest runs. Exit code 5 (no tests ran) is an error.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p var
export PYTHONUNBUFFERED=1
RUN=(uv run --frozen pytest)
COV=(--cov --cov-report=term-missing --cov-report=xml:var/coverage.xml)
workers=${TEST_WORKERS:-auto}

run() {
    "${RUN[@]}" "$@"
    local rc=$?
    [ $rc -ne 5 ] || echo "make test: pytest collected no tests ($*)" >&2
    return $rc
}

rm -f .coverage .coverage.*
echo "== phase 1: tests beside each other ($workers workers)"
run -m "not e2e and not serial" -n "$workers" --dist loadfile \
    --cov --cov-report= --cov-fail-under=0 --durations=25 "$@"
rc1=$?
echo "== phase 2: end-to-end and timing tests, one at a time"
run -m "e2e or serial" "${COV[@]}" --cov-append --durations=25 "$@"
rc2=$?
# Both phases always run, so one log shows every failure.
[ $rc1 -eq 0 ] || { echo "make test: phase 1 failed (exit $rc1)" >&2; exit $rc1; }
exit $rc2
