#!/usr/bin/env bash
# nsqlookupd /lookup benchmark.
#
# Builds release binaries, starts nsqlookupd on loopback ports picked by the OS, registers NODES
# fake nsqds with TOPICS topics each over the TCP protocol, then runs `nsq-bench lookupd`: for
# DURATION, CONNECTIONS keep-alive HTTP connections ask GET /lookup?topic=<random topic>.
# Prints requests/s, latency percentiles and nsqlookupd's peak RSS; stops nsqlookupd by PID.
#
# Usage: scripts/bench-lookupd.sh [options]
#
#   option              env              default
#   --nsqlookupd PATH   NSQLOOKUPD       target/release/nsqlookupd
#   --topics N          TOPICS           1000
#   --nodes N           NODES            3
#   --duration D        DURATION         10s
#   --connections N     CONNECTIONS      8
#   --no-build          NO_BUILD=1       use the binaries as they are
#                       BENCH_BIN        target/release/nsq-bench
#
# The last line is machine-readable:
#   BENCH nsqlookupd=<path> requests_per_sec=… p50_us=… p99_us=… peak_rss_kib=…
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NSQLOOKUPD=${NSQLOOKUPD:-target/release/nsqlookupd}
TOPICS=${TOPICS:-1000}
NODES=${NODES:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
NO_BUILD=${NO_BUILD:-}
BENCH_BIN=${BENCH_BIN:-target/release/nsq-bench}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --nsqlookupd) NSQLOOKUPD=$2; shift 2 ;;
        --topics) TOPICS=$2; shift 2 ;;
        --nodes) NODES=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench-lookupd.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done

log() { echo "bench-lookupd.sh: $*" >&2; }
die() { log "$*"; exit 1; }

if [[ -z "$NO_BUILD" ]]; then
    log "building release binaries"
    cargo build --release -p nsqlookupd -p nsq-bench >&2
fi
[[ -x "$NSQLOOKUPD" ]] || die "no nsqlookupd binary at $NSQLOOKUPD"
[[ -x "$BENCH_BIN" ]] || die "no nsq-bench binary at $BENCH_BIN"

LOOKUPD_PID=
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nsq-bench-lookupd.XXXXXX")
cleanup() {
    if [[ -n "$LOOKUPD_PID" ]] && kill -0 "$LOOKUPD_PID" 2>/dev/null; then
        kill -KILL "$LOOKUPD_PID" 2>/dev/null || true
        wait "$LOOKUPD_PID" 2>/dev/null || true
    fi
    rm -rf "$LOG_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lookupd_log="$LOG_DIR/nsqlookupd.log"
"$NSQLOOKUPD" --tcp-address=127.0.0.1:0 --http-address=127.0.0.1:0 \
    --broadcast-address=127.0.0.1 >"$lookupd_log" 2>&1 &
LOOKUPD_PID=$!

tcp_address=
http_address=
for _ in $(seq 100); do
    tcp_address=$(grep -o 'TCP: listening on 127\.0\.0\.1:[0-9]\+' "$lookupd_log" | head -n 1 |
        sed 's/^TCP: listening on //') || true
    http_address=$(grep -o 'HTTP: listening on 127\.0\.0\.1:[0-9]\+' "$lookupd_log" | head -n 1 |
        sed 's/^HTTP: listening on //') || true
    [[ -n "$tcp_address" && -n "$http_address" ]] && break
    kill -0 "$LOOKUPD_PID" 2>/dev/null || { cat "$lookupd_log" >&2; die "nsqlookupd exited at startup"; }
    sleep 0.1
done
[[ -n "$tcp_address" && -n "$http_address" ]] ||
    { cat "$lookupd_log" >&2; die "nsqlookupd did not report its addresses"; }
log "nsqlookupd (pid $LOOKUPD_PID) on tcp $tcp_address http $http_address"

cmd=("$BENCH_BIN" lookupd --lookupd-tcp-address "$tcp_address"
    --lookupd-http-address "$http_address" --topics "$TOPICS" --nodes "$NODES"
    --duration "$DURATION" --connections "$CONNECTIONS")
log "${cmd[*]}"
output=$("${cmd[@]}") || { echo "$output"; die "nsq-bench lookupd failed"; }
echo "$output"

rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$LOOKUPD_PID/status" 2>/dev/null || echo 0)
kill -TERM "$LOOKUPD_PID" 2>/dev/null || true
for _ in $(seq 100); do
    kill -0 "$LOOKUPD_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$LOOKUPD_PID" 2>/dev/null; then
    log "nsqlookupd $LOOKUPD_PID did not exit after SIGTERM, killing it"
    kill -KILL "$LOOKUPD_PID" 2>/dev/null || true
fi
wait "$LOOKUPD_PID" 2>/dev/null || true
LOOKUPD_PID=

result=$(grep '^RESULT lookupd ' <<<"$output" | tail -n 1)
value() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $result"; }
printf 'nsqlookupd peak RSS: %s MiB\n' "$(awk -v kib="$rss_kib" 'BEGIN { printf "%.1f", kib / 1024 }')"
echo "BENCH nsqlookupd=$NSQLOOKUPD requests_per_sec=$(value requests_per_sec)" \
    "p50_us=$(value p50_us) p99_us=$(value p99_us) peak_rss_kib=$rss_kib"
