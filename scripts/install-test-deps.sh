#!/usr/bin/env bash
# Everything the tests need, installed by the project's own files (idempotent, cheap when done):
# the JDK/Maven check, a venv with faultwarden[torch,test], the Elasticsearch distribution.
# The venv lives in ~/.cache/faultwarden/venv so that torch (several GB) installs once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FAULTWARDEN_VENV:-$HOME/.cache/faultwarden/venv}"
EXTRAS="${FAULTWARDEN_EXTRAS:-torch,test}"

took() { # took LABEL START: one line for the closing summary of scripts/test.sh
    [ -n "${FAULTWARDEN_TIMINGS:-}" ] && echo "install: $1: $(( $(date +%s) - $2 )) s" >> "$FAULTWARDEN_TIMINGS"
    return 0
}

t=$(date +%s)
missing=()
command -v mvn >/dev/null || missing+=(maven)
command -v java >/dev/null || missing+=(default-jdk-headless)
command -v useradd >/dev/null || missing+=(passwd)
# TLS + basic auth in front of the test node (tests/ship/test_tls.py)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)  # the HTML report is opened in a real browser
command -v /lib/systemd/systemd-journal-remote >/dev/null || missing+=(systemd-journal-remote)  # real journal files for the journald source tests
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
took "Debian packages" "$t"

t=$(date +%s)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
stamp="$VENV/.faultwarden-deps-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS//,/-}"
if [ ! -e "$stamp" ]; then
    "$VENV/bin/pip" install -q --no-compile -e ".[$EXTRAS]"
    touch "$stamp"
else
    # Same dependencies: only point the editable install at this checkout.
    "$VENV/bin/pip" install -q --no-compile --no-deps --no-build-isolation -e .
fi
took "Python packages" "$t"

t=$(date +%s)
python3 scripts/es.py fetch >/dev/null
python3 scripts/es.py fetch --version 8.19.21 >/dev/null  # the shipping tests run on 8.x too
took "Elasticsearch distribution" "$t"
