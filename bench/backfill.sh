#!/usr/bin/env bash
# A backfill: `sophos-tac collect --once` reads ROWS rows (default 100,000) from the
# simulator (sophos-central-sim on 127.0.0.1, a partner with 4 tenants, every row in the
# last day) and delivers them to each output in turn: a file, then Kafka (a local tansu
# broker). Prints rows/s and the collector's peak RSS for each. The API limits are raised
# so that the run measures the collector, not Sophos's request budget (with the real one,
# 10 calls a second, a backfill of this size takes at least the calls it needs / 10 s).
#
# usage: bench/backfill.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${1:-100000}
TENANTS=${TENANTS:-4}
source bench/lib.sh
TANSU=$(tansu_program)

cargo build --release --quiet -p sophos-central-sim
cargo build --release --quiet --bin sophos-tac
# TAC=another binary (an earlier build, to compare with) replaces this one.
TAC=${TAC:-target/release/sophos-tac}
SIM=target/release/sophos-central-sim
WORK=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$WORK"' EXIT

SPORT=18787
"$SIM" --addr 127.0.0.1:$SPORT --kind partner --tenants $TENANTS --rows $((ROWS / TENANTS)) \
    --past-secs 80000 --no-id-fraction 0 --run-polls 1 > /dev/null 2>&1 &
wait_port $SPORT sophos-central-sim
KPORT=19292
B=127.0.0.1:$KPORT
"$TANSU" broker --listener-url tcp://$B --advertised-listener-url tcp://$B >/dev/null 2>&1 &
wait_port $KPORT tansu
"$TANSU" topic create detections --partitions 4 --broker tcp://$B >/dev/null

# run NAME OUTPUT-TOML: one collect --once from an empty state into the output
run() {
    local name=$1 output=$2 dir=$WORK/$1
    mkdir -p "$dir"
    cat > "$dir/collect.toml" <<EOF
client_id = "demo-client"
client_secret_env = "BENCH_SIM_SECRET"
auth_url = "http://127.0.0.1:$SPORT/api/v2/oauth2/token"
global_url = "http://127.0.0.1:$SPORT"
state_dir = "$dir/state"
[query]
lookback_secs = 86400
page_size = 2000
max_window_pages = 10
poll_interval_ms = 10
late_horizon_secs = 0
[limits]
concurrency = $TENANTS
per_second = 100000
per_minute = 1000000
per_hour = 10000000
per_day = 100000000
$output
EOF
    local t0 t1
    t0=$(date +%s.%N)
    BENCH_SIM_SECRET=demo-secret /usr/bin/time -f "%M" -o "$dir/rss" \
        "$TAC" collect -c "$dir/collect.toml" --once > "$dir/log" 2>&1 \
        || { echo "$name: collect failed:" >&2; tail -5 "$dir/log" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v n="$ROWS" -v a="$t0" -v b="$t1" -v rss="$(cat "$dir/rss")" -v what="$name" 'BEGIN {
        printf "%-6s %d rows in %.2f s: %.0f rows/s, peak RSS %.0f MB\n", what, n, b - a, n / (b - a), rss / 1024 }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)"
echo "backfill: $ROWS rows, $TENANTS tenants, from sophos-central-sim"
run file "[output]
type = \"file\"
path = \"$WORK/file/out.ndjson\""
run kafka "[output]
type = \"kafka\"
url = \"kafka://$B/detections\""
