#!/usr/bin/env bash
# Installs the real NSQ client libraries the black-box suite drives (tests/suite/pynsq.rs and
# tests/suite/peers.rs): pynsq and gnsq into tests/peers/.venv, nsqjs into tests/peers/node/
# node_modules (both git-ignored). Idempotent: a venv that already has the pinned versions and an
# up-to-date node_modules are left alone. PIP_FIND_LINKS (e.g. a local wheel folder) is honoured.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
PEERS_DIR="$(pwd)"
VENV="$PEERS_DIR/.venv"
PYTHON="${PYTHON:-python3}"

# pynsq 0.9.1 (the current release) works with tornado 6 on Python 3.11; pinned so CI is stable.
# python-snappy gives pynsq and gnsq snappy; gnsq 1.0.2 (the current release) runs on gevent 24.
REQUIREMENTS=(
  "pynsq==0.9.1"
  "tornado==6.5.2"
  "python-snappy==0.7.3"
  "gnsq==1.0.2"
  "gevent==24.11.1"
)

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "install.sh: $PYTHON not found; install Python 3 (with venv and pip)" >&2
  exit 1
fi

if [ -x "$VENV/bin/python" ] \
  && "$VENV/bin/python" - "${REQUIREMENTS[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for requirement in sys.argv[1:]:
    name, wanted = requirement.split("==")
    if version(name) != wanted:
        sys.exit(1)
import nsq, tornado, snappy, gevent, gnsq  # noqa: F401  (importable, not just installed)
PY
then
  echo "peers: python venv up to date ($VENV)"
else
  echo "peers: creating $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  "$VENV/bin/python" -c 'import nsq, tornado, gnsq, gevent, snappy; print("peers: pynsq", nsq.__version__, "tornado", tornado.version, "gnsq", gnsq.__version__, "gevent", gevent.__version__)'
fi

# nsqjs, pinned in node/package.json and node/package-lock.json; `npm ci` only when the lock file
# changed since the last install (npm records it in node_modules/.package-lock.json).
NODE_DIR="$PEERS_DIR/node"
if ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: npm not found; install Node.js (18 or later) with npm" >&2
  exit 1
fi
if [ -f "$NODE_DIR/node_modules/.package-lock.json" ] \
  && [ -f "$NODE_DIR/node_modules/nsqjs/package.json" ] \
  && [ ! "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
  echo "peers: nsqjs node_modules up to date ($NODE_DIR/node_modules)"
else
  echo "peers: npm ci in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  node -e 'console.log("peers: nsqjs", require(process.argv[1]).version)' \
    "$NODE_DIR/node_modules/nsqjs/package.json"
fi
