#!/usr/bin/env bash
# Installs what the nsqadmin browser tests need, idempotently:
#   * Debian's chromium at /usr/bin/chromium (apt; needs root or sudo), plus a font so pages render;
#   * playwright-core from npm, exactly as pinned in package-lock.json (`npm ci`).
# playwright-core never downloads a browser; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD is set anyway.
# Usage: bash admin-ui/tests/browser/install.sh   (from anywhere)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "install.sh: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

if [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-dejavu-core >/dev/null 2>&1; then
    echo "install.sh: installing chromium from Debian" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium fonts-dejavu-core
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1 >&2 || true

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install.sh: installing node and npm from Debian" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi

wanted="$(node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' "$here/package-lock.json")"
have=""
if [ -f "$here/node_modules/playwright-core/package.json" ]; then
    have="$(node -e 'console.log(require(process.argv[1]).version)' "$here/node_modules/playwright-core/package.json")"
fi
if [ "$have" != "$wanted" ]; then
    echo "install.sh: npm ci (playwright-core $wanted)" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "install.sh: ready (chromium + playwright-core $wanted)" >&2
