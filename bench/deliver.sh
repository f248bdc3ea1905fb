#!/usr/bin/env bash
# The delivery paths side by side, on the same rows and the same local servers, in one run:
#
#   file → file        sophos-tac normalize CORPUS -o FILE -j 2
#   topic → topic      sophos-tac normalize --input kafka://…/raw?group=G -o kafka://…/OUT
#                      (one member of the group; again with --kafka-in-flight 1, each
#                      batch acknowledged before the next is submitted)
#   plain copy         a client that consumes raw and produces each message as it is to
#                      another topic (idempotent, acks=all, zstd): examples/kafka_bench.rs
#   file → index       sophos-tac normalize ROWS -o http://…/INDEX --bulk-concurrency C,
#                      for C = 1, 2, 4
#   prebuilt → index   the same rows' documents as prebuilt _bulk bodies of 1,000, sent one
#                      after another over one keep-alive connection (bench/bulk_floor.py)
#
# and the ratios the targets are about. The broker is tansu (memory storage), the index
# osmem-server (an OpenSearch-API server); both on 127.0.0.1, on the same cores as the
# clients. A Kafka run is timed by its output topic: from the first document's producer
# timestamp to the last one's (the group's first join, seconds on tansu, is left out and
# printed apart).
#
# usage: bench/deliver.sh [SIZE] [INDEX_ROWS]   (default 100M of rows, of which the first
#                                                5000 for the index paths)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${1:-100M}
INDEX_ROWS=${2:-5000}
source bench/lib.sh
TANSU=$(tansu_program)
OSMEM=$(osmem_program)

build_for_kafka "$SIZE"
# In memory when it can be (/dev/shm): the disk is no part of any path compared here
# (the broker keeps its topics in memory too).
WORK=$(mktemp -d -p "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)"
ROWS=$(wc -l < "$CORPUS")
echo "rows: $CORPUS, $ROWS rows, $(du -h "$CORPUS" | cut -f1); the first $INDEX_ROWS for the index"

# file → file, from the page cache (the Kafka paths read the rows from the broker's
# memory): the rows are read once first.
cat "$CORPUS" > /dev/null
t0=$(now); "$TAC" normalize -q -j 2 "$CORPUS" -o "$WORK/out.ndjson"; t1=$(now)
FILE_RATE=$(rate "$ROWS" "$t0" "$t1")
echo "file → file (-j 2):                 $FILE_RATE rows/s"

# Kafka: one broker, the rows in a 4-partition topic.
KPORT=19192
B=127.0.0.1:$KPORT
"$TANSU" broker --listener-url tcp://$B --advertised-listener-url tcp://$B >/dev/null 2>&1 &
wait_port $KPORT tansu
for t in raw ecs ecs1 copy; do "$TANSU" topic create $t --partitions 4 --broker tcp://$B >/dev/null; done
IN_TOPIC=$("$KB" produce $B raw "$CORPUS" 2>/dev/null)
[ "$IN_TOPIC" = "$ROWS" ] || { echo "only $IN_TOPIC of $ROWS rows reached the topic" >&2; exit 1; }

# topic RATE-VAR OUT CMD...: runs CMD until OUT holds every row; sets RATE-VAR
topic() {
    local var=$1 out=$2 pid join secs
    shift 2
    "$@" & pid=$!
    read -r join secs < <("$KB" wait $B "$out" "$ROWS")
    kill -TERM $pid; wait $pid 2>/dev/null || true
    printf -v "$var" '%s' "$(awk -v r="$ROWS" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')"
    JOIN=$join
}
topic TAC_RATE ecs "$TAC" normalize -q --input "kafka://$B/raw?group=g-ecs" -o "kafka://$B/ecs"
echo "topic → topic (sophos-tac, 1 member): $TAC_RATE rows/s (join $JOIN s)"
topic TAC1_RATE ecs1 "$TAC" normalize -q --input "kafka://$B/raw?group=g-ecs1" -o "kafka://$B/ecs1" --kafka-in-flight 1
echo "  the same, one batch in flight:     $TAC1_RATE rows/s (join $JOIN s)"
topic COPY_RATE copy "$KB" copy $B raw copy g-copy
echo "topic → topic (plain copy):         $COPY_RATE rows/s (join $JOIN s)"

# The index: the first INDEX_ROWS rows, their documents for the prebuilt bodies.
head -n "$INDEX_ROWS" "$CORPUS" > "$WORK/rows.ndjson"
head -n "$INDEX_ROWS" "$WORK/out.ndjson" > "$WORK/docs.ndjson"
IPORT=19200
"$OSMEM" -addr 127.0.0.1:$IPORT -no-stdin-watch >/dev/null 2>&1 &
wait_port $IPORT osmem-server
FLOOR=$(python3 bench/bulk_floor.py 127.0.0.1:$IPORT floor "$WORK/docs.ndjson" 1000)
echo "prebuilt bulk → index (sequential):  $FLOOR docs/s"
declare -A INDEX
for c in 1 2 4; do
    t0=$(now)
    "$TAC" normalize -q "$WORK/rows.ndjson" -o "http://127.0.0.1:$IPORT/bench-c$c" --allow-http \
        --batch-docs 1000 --bulk-concurrency $c --dead-letter "$WORK/dead-$c.ndjson"
    t1=$(now)
    INDEX[$c]=$(rate "$INDEX_ROWS" "$t0" "$t1")
    echo "file → index (--bulk-concurrency $c):  ${INDEX[$c]} rows/s"
done

echo
echo "ratios:"
echo "  topic → topic / file → file:       $(ratio "$TAC_RATE" "$FILE_RATE")   (target ≥ 0.6)"
echo "  topic → topic / plain copy:        $(ratio "$TAC_RATE" "$COPY_RATE")"
echo "  in flight 4 / in flight 1:         $(ratio "$TAC_RATE" "$TAC1_RATE")"
echo "  plain copy / file → file:          $(ratio "$COPY_RATE" "$FILE_RATE")"
for c in 1 2 4; do
    echo "  file → index c=$c / prebuilt floor: $(ratio "${INDEX[$c]}" "$FLOOR")   (target ≥ 1.0)"
done
