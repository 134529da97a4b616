#!/usr/bin/env bash
# Installs the official NSQ client libraries the black-box suite drives (tests/suite/pynsq.rs)
# into tests/peers/.venv (git-ignored). Idempotent: a venv that already has the pinned versions is
# left alone. PIP_FIND_LINKS (e.g. a local wheel folder) is honoured when set.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
PEERS_DIR="$(pwd)"
VENV="$PEERS_DIR/.venv"
PYTHON="${PYTHON:-python3}"

# pynsq 0.9.1 (the current release) works with tornado 6 on Python 3.11; pinned so CI is stable.
REQUIREMENTS=(
  "pynsq==0.9.1"
  "tornado==6.5.2"
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
import nsq, tornado  # noqa: F401  (importable, not just installed)
PY
then
  echo "peers: pynsq venv up to date ($VENV)"
  exit 0
fi

echo "peers: creating $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
"$VENV/bin/python" -c 'import nsq, tornado; print("peers: pynsq", nsq.__version__, "tornado", tornado.version)'
