#!/usr/bin/env bash
# End-to-end nsqd throughput and memory benchmark, after NSQ's bench.sh.
#
# Builds release binaries, starts nsqd on loopback ports picked by the OS with a fresh data
# directory, publishes with `nsq-bench writer` for RUNFOR, consumes everything back with
# `nsq-bench reader`, reads nsqd's peak RSS (VmHWM), stops nsqd with SIGTERM and prints msgs/s
# and MiB/s for PUB and SUB plus the peak RSS.
# With NSQD_BASELINE=/path/to/other/nsqd (or --baseline) both binaries run in turn, and the
# ratios candidate/baseline are printed.
#
# Usage: scripts/bench.sh [options] [-- extra nsqd flags]
#
#   option            env               default
#   --nsqd PATH       NSQD              target/release/nsqd       the candidate
#   --baseline PATH   NSQD_BASELINE     (none)                    compare with this nsqd
#   --runfor D        RUNFOR            10s                       writer duration (Go syntax)
#   --size N          SIZE              200                       message body bytes
#   --batch-size N    BATCH_SIZE        200                       messages per MPUB
#   --publishers N    PUBLISHERS        2                         writer connections
#   --pipeline N      PIPELINE          1                         MPUBs in flight per connection
#   --consumers N     CONSUMERS         2                         reader connections
#   --rdy N           RDY               2500                      RDY per reader connection
#   --reader-runfor D READER_RUNFOR     120s                      cap on the reader's duration
#   --mem-queue-size N MEM_QUEUE_SIZE   10000000                  nsqd --mem-queue-size
#   --durable         DURABLE=1                                   nsqd --durable (ack after fsync)
#   --topic NAME      TOPIC             sub_bench
#   --channel NAME    CHANNEL           ch
#   --no-build        NO_BUILD=1                                  use the binaries as they are
#                     NSQD_FLAGS        (none)                    extra nsqd flags (word-split)
#                     BENCH_BIN         target/release/nsq-bench
#                     KEEP_DATA=1                                 keep data dirs and logs
#
# Each run ends with a machine-readable line:
#   BENCH label=<candidate|baseline> nsqd=<path> pub_msgs=… pub_msgs_per_sec=… pub_mib_per_sec=…
#         sub_msgs=… sub_msgs_per_sec=… sub_mib_per_sec=… peak_rss_kib=…
#         pub_cmds_per_sec=… commits_per_sec=… fsyncs_per_sec=…
# (publish commands, group commits and fsync calls per second of the writer phase, from nsqd's
# /metrics; commits and fsyncs are 0 without --durable, and n/a for an nsqd without /metrics).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NSQD=${NSQD:-target/release/nsqd}
NSQD_BASELINE=${NSQD_BASELINE:-}
RUNFOR=${RUNFOR:-10s}
SIZE=${SIZE:-200}
BATCH_SIZE=${BATCH_SIZE:-200}
PUBLISHERS=${PUBLISHERS:-2}
PIPELINE=${PIPELINE:-1}
CONSUMERS=${CONSUMERS:-2}
RDY=${RDY:-2500}
READER_RUNFOR=${READER_RUNFOR:-120s}
MEM_QUEUE_SIZE=${MEM_QUEUE_SIZE:-10000000}
TOPIC=${TOPIC:-sub_bench}
CHANNEL=${CHANNEL:-ch}
NO_BUILD=${NO_BUILD:-}
BENCH_BIN=${BENCH_BIN:-target/release/nsq-bench}
KEEP_DATA=${KEEP_DATA:-}
DURABLE=${DURABLE:-}
read -r -a EXTRA_NSQD_FLAGS <<<"${NSQD_FLAGS:-}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --nsqd) NSQD=$2; shift 2 ;;
        --baseline) NSQD_BASELINE=$2; shift 2 ;;
        --runfor) RUNFOR=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --batch-size) BATCH_SIZE=$2; shift 2 ;;
        --publishers) PUBLISHERS=$2; shift 2 ;;
        --pipeline) PIPELINE=$2; shift 2 ;;
        --consumers) CONSUMERS=$2; shift 2 ;;
        --rdy) RDY=$2; shift 2 ;;
        --reader-runfor) READER_RUNFOR=$2; shift 2 ;;
        --mem-queue-size) MEM_QUEUE_SIZE=$2; shift 2 ;;
        --topic) TOPIC=$2; shift 2 ;;
        --channel) CHANNEL=$2; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        --durable) DURABLE=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; EXTRA_NSQD_FLAGS+=("$@"); break ;;
        *) echo "bench.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done

[[ -n "$DURABLE" ]] && EXTRA_NSQD_FLAGS+=(--durable)

log() { echo "bench.sh: $*" >&2; }
die() { log "$*"; exit 1; }

if [[ -z "$NO_BUILD" ]]; then
    log "building release binaries"
    cargo build --release -p nsqd -p nsq-bench >&2
fi
[[ -x "$NSQD" ]] || die "no nsqd binary at $NSQD"
[[ -x "$BENCH_BIN" ]] || die "no nsq-bench binary at $BENCH_BIN"
[[ -z "$NSQD_BASELINE" || -x "$NSQD_BASELINE" ]] || die "no baseline nsqd at $NSQD_BASELINE"

# The nsqd currently running and its data directory, so that a failed or interrupted run does
# not leave them behind.
NSQD_PID=
DATA_DIR=
cleanup() {
    if [[ -n "$NSQD_PID" ]] && kill -0 "$NSQD_PID" 2>/dev/null; then
        kill -KILL "$NSQD_PID" 2>/dev/null || true
        wait "$NSQD_PID" 2>/dev/null || true
    fi
    if [[ -n "$DATA_DIR" && -z "$KEEP_DATA" ]]; then
        rm -rf "$DATA_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# value KEY LINE: the value of KEY=value in a RESULT/BENCH line.
value() {
    local key=$1 line=$2
    sed -n "s/.*[[:space:]]$key=\([^[:space:]]*\).*/\1/p" <<<" $line"
}

# peak_rss_kib PID: VmHWM of a live process, in KiB.
peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# metric HTTP_ADDRESS NAME: a counter from nsqd's /metrics ("" if unavailable).
metric() {
    curl -fsS "http://$1/metrics" 2>/dev/null | awk -v name="$2" '$1 == name { print $2 }' || true
}

# per_sec AFTER BEFORE SECS: (AFTER - BEFORE) / SECS, "n/a" when a value is missing.
per_sec() {
    awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN { if (a == "" || b == "" || s + 0 == 0) print "n/a"; else printf "%.1f\n", (a - b) / s }'
}

# stop_nsqd PID: SIGTERM, wait up to 60 s (nsqd flushes queues on exit), then SIGKILL.
stop_nsqd() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "nsqd $pid did not exit after SIGTERM, killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# run_one LABEL NSQD_BINARY: one full run; prints the summary and the BENCH line on stdout and
# keeps the BENCH line in LAST_BENCH. (Not called in a subshell: the EXIT trap must see NSQD_PID.)
LAST_BENCH=
run_one() {
    local label=$1 binary=$2
    local data_dir
    data_dir=$(mktemp -d "${TMPDIR:-/tmp}/nsq-bench.XXXXXX")
    DATA_DIR=$data_dir
    local nsqd_log="$data_dir/nsqd.log"

    "$binary" --tcp-address=127.0.0.1:0 --http-address=127.0.0.1:0 --data-path="$data_dir" \
        --mem-queue-size="$MEM_QUEUE_SIZE" "${EXTRA_NSQD_FLAGS[@]}" >"$nsqd_log" 2>&1 &
    NSQD_PID=$!

    local address=
    for _ in $(seq 100); do
        address=$(grep -o 'TCP: listening on 127\.0\.0\.1:[0-9]\+' "$nsqd_log" | head -n 1 |
            sed 's/^TCP: listening on //') || true
        [[ -n "$address" ]] && break
        kill -0 "$NSQD_PID" 2>/dev/null || { cat "$nsqd_log" >&2; die "$binary exited at startup"; }
        sleep 0.1
    done
    [[ -n "$address" ]] || { cat "$nsqd_log" >&2; die "$binary did not report its TCP address"; }
    log "$label: $binary (pid $NSQD_PID) on $address"
    local http_address
    http_address=$(grep -o 'HTTP: listening on 127\.0\.0\.1:[0-9]\+' "$nsqd_log" | head -n 1 |
        sed 's/^HTTP: listening on //') || true
    local rounds_before fsyncs_before
    rounds_before=$(metric "$http_address" nsqd_durable_commit_rounds_total)
    fsyncs_before=$(metric "$http_address" nsqd_durable_fsyncs_total)

    local writer_out reader_out
    writer_out=$("$BENCH_BIN" writer --nsqd-tcp-address "$address" --topic "$TOPIC" \
        --size "$SIZE" --batch-size "$BATCH_SIZE" --runfor "$RUNFOR" \
        --publishers "$PUBLISHERS" --pipeline "$PIPELINE") || die "writer failed"
    echo "$writer_out" >&2
    local writer_result pub_msgs
    writer_result=$(grep '^RESULT writer ' <<<"$writer_out" | tail -n 1)
    pub_msgs=$(value msgs "$writer_result")
    [[ -n "$pub_msgs" ]] || die "no RESULT line from the writer"
    local writer_secs commits_per_sec fsyncs_per_sec pub_cmds_per_sec
    writer_secs=$(value secs "$writer_result")
    commits_per_sec=$(per_sec "$(metric "$http_address" nsqd_durable_commit_rounds_total)" "$rounds_before" "$writer_secs")
    fsyncs_per_sec=$(per_sec "$(metric "$http_address" nsqd_durable_fsyncs_total)" "$fsyncs_before" "$writer_secs")
    pub_cmds_per_sec=$(awk -v m="$pub_msgs" -v b="$BATCH_SIZE" -v s="$writer_secs" 'BEGIN { if (s + 0 == 0 || b + 0 == 0) print "n/a"; else printf "%.1f\n", m / b / s }')

    reader_out=$("$BENCH_BIN" reader --nsqd-tcp-address "$address" --topic "$TOPIC" \
        --channel "$CHANNEL" --rdy "$RDY" --runfor "$READER_RUNFOR" \
        --consumers "$CONSUMERS" --limit "$pub_msgs") || die "reader failed"
    echo "$reader_out" >&2
    local reader_result
    reader_result=$(grep '^RESULT reader ' <<<"$reader_out" | tail -n 1)
    [[ -n "$reader_result" ]] || die "no RESULT line from the reader"

    local rss_kib
    rss_kib=$(peak_rss_kib "$NSQD_PID")
    stop_nsqd "$NSQD_PID"
    NSQD_PID=

    local sub_msgs
    sub_msgs=$(value msgs "$reader_result")
    if [[ "$sub_msgs" != "$pub_msgs" ]]; then
        log "warning: published $pub_msgs messages but consumed $sub_msgs"
    fi
    if [[ -n "$KEEP_DATA" ]]; then
        log "kept $data_dir"
    else
        rm -rf "$data_dir"
    fi
    DATA_DIR=

    printf '%s (%s)\n' "$label" "$binary"
    printf '  PUB: %12s msgs/s %10s MiB/s  (%s msgs in %s s)\n' \
        "$(value msgs_per_sec "$writer_result")" "$(value mib_per_sec "$writer_result")" \
        "$pub_msgs" "$(value secs "$writer_result")"
    printf '  SUB: %12s msgs/s %10s MiB/s  (%s msgs in %s s)\n' \
        "$(value msgs_per_sec "$reader_result")" "$(value mib_per_sec "$reader_result")" \
        "$sub_msgs" "$(value secs "$reader_result")"
    printf '  writer phase: %s MPUB commands/s, %s group commits/s, %s fsyncs/s\n' \
        "$pub_cmds_per_sec" "$commits_per_sec" "$fsyncs_per_sec"
    printf '  peak RSS: %s MiB\n' "$(awk -v kib="$rss_kib" 'BEGIN { printf "%.1f", kib / 1024 }')"
    LAST_BENCH="BENCH label=$label nsqd=$binary pub_msgs=$pub_msgs"
    LAST_BENCH+=" pub_msgs_per_sec=$(value msgs_per_sec "$writer_result")"
    LAST_BENCH+=" pub_mib_per_sec=$(value mib_per_sec "$writer_result")"
    LAST_BENCH+=" sub_msgs=$sub_msgs"
    LAST_BENCH+=" sub_msgs_per_sec=$(value msgs_per_sec "$reader_result")"
    LAST_BENCH+=" sub_mib_per_sec=$(value mib_per_sec "$reader_result")"
    LAST_BENCH+=" peak_rss_kib=$rss_kib"
    LAST_BENCH+=" pub_cmds_per_sec=$pub_cmds_per_sec commits_per_sec=$commits_per_sec fsyncs_per_sec=$fsyncs_per_sec"
    echo "$LAST_BENCH"
}

# ratio A B: A / B with two decimals ("n/a" when B is 0 or empty).
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2fx\n", a / b }'
}

log "runfor=$RUNFOR size=$SIZE batch=$BATCH_SIZE publishers=$PUBLISHERS pipeline=$PIPELINE" \
    "consumers=$CONSUMERS rdy=$RDY mem-queue-size=$MEM_QUEUE_SIZE ${EXTRA_NSQD_FLAGS[*]}"
run_one candidate "$NSQD"
candidate=$LAST_BENCH
if [[ -n "$NSQD_BASELINE" ]]; then
    run_one baseline "$NSQD_BASELINE"
    baseline=$LAST_BENCH
    echo "candidate / baseline"
    for key in pub_msgs_per_sec pub_mib_per_sec sub_msgs_per_sec sub_mib_per_sec peak_rss_kib; do
        printf '  %-17s %s\n' "$key" "$(ratio "$(value "$key" "$candidate")" "$(value "$key" "$baseline")")"
    done
fi
