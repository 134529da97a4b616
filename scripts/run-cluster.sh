#!/usr/bin/env bash
# Starts a local cluster with default ports: nsqlookupd (TCP 4160, HTTP 4161) and nsqd (TCP 4150,
# HTTP 4151, data in ./data/nsqd) registered with it, and nsqadmin (HTTP 4171).
# Ctrl-C stops everything. Extra arguments are passed to nsqd.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins
bin=target/release
mkdir -p data/nsqd

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin/nsqlookupd" --tcp-address=127.0.0.1:4160 --http-address=127.0.0.1:4161 --broadcast-address=127.0.0.1 &
pids+=($!)
"$bin/nsqd" --tcp-address=127.0.0.1:4150 --http-address=127.0.0.1:4151 --broadcast-address=127.0.0.1 \
  --lookupd-tcp-address=127.0.0.1:4160 --data-path=data/nsqd "$@" &
pids+=($!)
if [ -x "$bin/nsqadmin" ]; then
  "$bin/nsqadmin" --http-address=127.0.0.1:4171 --lookupd-http-address=127.0.0.1:4161 &
  pids+=($!)
  echo "nsqadmin: http://127.0.0.1:4171"
fi
echo "nsqd: tcp 127.0.0.1:4150, http http://127.0.0.1:4151 - nsqlookupd: http://127.0.0.1:4161 (Ctrl-C to stop)"
wait -n
