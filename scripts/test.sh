#!/usr/bin/env bash
# The test command: installs what the tests need, starts the real Elasticsearch in the background
# (the ES tests wait for it), runs pytest, and says where the time went.
#   scripts/test.sh            the whole default suite (everything but `slow`)
#   scripts/test.sh ARGS...    pytest ARGS (e.g. tests/rules -k spike)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FAULTWARDEN_VENV:-$HOME/.cache/faultwarden/venv}"
export FAULTWARDEN_TIMINGS="$(mktemp)"

bash scripts/install-test-deps.sh

es_dir=""
if [ -z "${FAULTWARDEN_TEST_ES_URL:-}" ]; then
    es_dir="$(mktemp -d /tmp/faultwarden-test-es.XXXXXX)"
    python3 scripts/es.py start --workdir "$es_dir" --timeout 900 >/dev/null 2>"$es_dir/start.err" &
    es_starter=$!
    export FAULTWARDEN_TEST_ES_STARTING="$es_dir"
    stop_es() {
        # Under `set -e` a failing command here (the starter is long gone) would turn the run's
        # exit status into 1: nothing in this trap may fail.
        kill "$es_starter" 2>/dev/null || true
        wait "$es_starter" 2>/dev/null || true
        python3 scripts/es.py stop --workdir "$es_dir" || true
    }
    trap stop_es EXIT
fi

t=$(date +%s)
status=0
if [ $# -eq 0 ]; then
    "$VENV/bin/python" -m pytest -m "not slow" --durations=15 || status=$?
else
    "$VENV/bin/python" -m pytest "$@" || status=$?
fi
echo "pytest: $(( $(date +%s) - t )) s" >> "$FAULTWARDEN_TIMINGS"

echo "scripts/test.sh: where the time went:"
sed 's/^/  /' "$FAULTWARDEN_TIMINGS"
rm -f "$FAULTWARDEN_TIMINGS"
# pytest's 5 means no test ran: that is a failure of the test command, not a pass.
if [ "$status" -eq 5 ]; then status=1; fi
exit "$status"
