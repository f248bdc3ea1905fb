#!/usr/bin/env bash
# Rows per second from a Kafka topic to a Kafka topic through `sophos-tac normalize
# --input kafka://…?group=G -o kafka://…`, with one consumer and then two in the group,
# on a local tansu broker (memory storage, 127.0.0.1). The raw rows are the generated
# corpus of bench/compare.sh, put in a 4-partition topic by examples/kafka_bench.rs. Each
# run is timed by its output topic, from the first document's producer timestamp to the
# last one's (the group's first join, up to 20 s on tansu, is left out and printed
# apart). bench/deliver.sh compares this path with the others in one run.
#
# usage: bench/kafka.sh [SIZE]     (default 100M; K, M, G suffixes)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${1:-100M}
source bench/lib.sh
TANSU=$(tansu_program)

build_for_kafka "$SIZE"
ROWS=$(wc -l < "$CORPUS")

PORT=19092
B=127.0.0.1:$PORT
"$TANSU" broker --listener-url tcp://$B --advertised-listener-url tcp://$B >/dev/null 2>&1 & BROKER=$!
trap 'kill $BROKER 2>/dev/null; jobs -p | xargs -r kill 2>/dev/null' EXIT
wait_port $PORT tansu
for t in raw ecs1 ecs2; do "$TANSU" topic create $t --partitions 4 --broker tcp://$B >/dev/null; done
ROWS=$("$KB" produce $B raw "$CORPUS")

# run N OUT: N members of group g-OUT read raw into OUT; prints the timings
run() {
    local n=$1 out=$2 pids=() join secs
    for i in $(seq "$n"); do
        "$TAC" normalize -q --input "kafka://$B/raw?group=g-$out" -o "kafka://$B/$out" & pids+=($!)
    done
    read -r join secs < <("$KB" wait $B "$out" "$ROWS")
    kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
    awk -v n="$n" -v rows="$ROWS" -v j="$join" -v s="$secs" 'BEGIN {
        printf "%d consumer(s): %d rows in %.2f s after the first document: %.0f rows/s (join: %.1f s)\n",
            n, rows, s, rows / s, j }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "corpus: $CORPUS, $(wc -l < "$CORPUS") rows, $(du -h "$CORPUS" | cut -f1); $ROWS of them in the topic"
run 1 ecs1
run 2 ecs2
