#!/usr/bin/env bash
# Times `sophos-tac normalize` (1 thread, all threads) against two baselines on the same
# generated corpus, in one run: the documented mapping as a jq program
# (bench/documented.jq) and as a plain Python 3 script (bench/baseline.py). Prints rows/s,
# MB/s, the ratios and peak RSS, checks that all outputs agree on a sample of rows, then
# runs sophos-tac alone on a 10x larger corpus to show that time grows linearly and memory
# stays flat.
#
# usage: bench/compare.sh [SIZE] [BIG_SIZE]     (defaults: 100M 1G; K, M, G suffixes)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${1:-100M}
BIG=${2:-1G}
DATA=bench/data
mkdir -p "$DATA"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need jq || [ ! -x /usr/bin/time ]; then
    echo "installing jq and time (apt-get)" >&2
    apt-get update -qq && apt-get install -y -qq jq time >/dev/null
fi

# The examples first, then the binary alone: built with examples (or tests), the binary
# would carry the crash tests' fault-injection feature.
cargo build --release --quiet --example gen_corpus
cargo build --release --quiet --bin sophos-tac
TAC=target/release/sophos-tac
GEN=target/release/examples/gen_corpus
THREADS=$(nproc)

corpus() { # size -> path (generated once; deterministic)
    local f="$DATA/corpus-$1.ndjson"
    [ -s "$f" ] || "$GEN" --bytes "$1" --seed 1 > "$f"
    echo "$f"
}

# measure NAME CMD... : runs CMD (stdout to /dev/null) under /usr/bin/time; sets SECS, RSS_KB
measure() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$DATA/time.$name" "$@" > /dev/null 2>"$DATA/stderr.$name" || {
        echo "$name failed:" >&2; cat "$DATA/stderr.$name" >&2; exit 1; }
    read -r SECS RSS_KB < "$DATA/time.$name"
}

C=$(corpus "$SIZE")
ROWS=$(wc -l < "$C")
BYTES=$(stat -L -c %s "$C")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "corpus:  $C ($ROWS rows, $BYTES bytes)"
echo

# 1. Agreement on a sample of rows (every 17th line, ~2000 rows).
awk 'NR % 17 == 1 && ++n <= 2000' "$C" > "$DATA/sample.ndjson"
"$TAC" normalize -q -j 1 "$DATA/sample.ndjson" > "$DATA/sample.tac1"
"$TAC" normalize -q -j "$THREADS" "$DATA/sample.ndjson" > "$DATA/sample.tacN"
jq -R -c -f bench/documented.jq "$DATA/sample.ndjson" > "$DATA/sample.jq"
python3 bench/baseline.py < "$DATA/sample.ndjson" > "$DATA/sample.py"
cmp -s "$DATA/sample.tac1" "$DATA/sample.tacN" || { echo "1-thread and $THREADS-thread outputs differ" >&2; exit 1; }
python3 bench/agree.py "$DATA/sample.tac1" "$DATA/sample.tacN" "$DATA/sample.jq" "$DATA/sample.py"
echo

# 2. Timings, all on the same corpus, in one run.
row() { # name secs rss
    awk -v n="$1" -v s="$2" -v r="$3" -v rows="$ROWS" -v bytes="$BYTES" \
        'BEGIN { printf "%-22s %8.2f s %12.0f rows/s %9.1f MB/s %8.1f MiB RSS\n", n, s, rows / s, bytes / s / 1e6, r / 1024 }'
}
measure tac1 "$TAC" normalize -q -j 1 "$C";           T1=$SECS; R1=$RSS_KB
measure tacN "$TAC" normalize -q -j "$THREADS" "$C";  TN=$SECS; RN=$RSS_KB
measure py python3 bench/baseline.py < "$C";        TP=$SECS; RP=$RSS_KB
measure jq jq -R -c -f bench/documented.jq "$C";      TJ=$SECS; RJ=$RSS_KB
row "sophos-tac -j 1" "$T1" "$R1"
row "sophos-tac -j $THREADS" "$TN" "$RN"
row "python3 baseline.py" "$TP" "$RP"
row "jq -f documented.jq" "$TJ" "$RJ"
echo
awk -v t1="$T1" -v tn="$TN" -v tp="$TP" -v tj="$TJ" -v n="$THREADS" 'BEGIN {
    printf "ratios: 1 thread = %.0fx jq, %.1fx Python; %d threads = %.2fx 1 thread\n", tj / t1, tp / t1, n, t1 / tn }'
echo

# 3. Scaling: sophos-tac alone on the big corpus.
CB=$(corpus "$BIG")
BROWS=$(wc -l < "$CB")
BBYTES=$(stat -L -c %s "$CB")
measure big1 "$TAC" normalize -q -j 1 "$CB"; B1=$SECS; BR1=$RSS_KB
measure bigN "$TAC" normalize -q -j "$THREADS" "$CB"; BN=$SECS; BRN=$RSS_KB
SBYTES=$BYTES
ROWS=$BROWS BYTES=$BBYTES
row "sophos-tac -j 1 ($BIG)" "$B1" "$BR1"
row "sophos-tac -j $THREADS ($BIG)" "$BN" "$BRN"
awk -v s="$SBYTES" -v b="$BBYTES" -v t1="$T1" -v b1="$B1" -v tn="$TN" -v bn="$BN" -v r1="$R1" -v br1="$BR1" -v rn="$RN" -v brn="$BRN" -v n="$THREADS" 'BEGIN {
    printf "scaling: input x%.2f; time x%.2f (1 thread), x%.2f (%d threads)\n", b / s, b1 / t1, bn / tn, n
    printf "peak RSS: %.1f -> %.1f MiB (1 thread), %.1f -> %.1f MiB (%d threads)\n", r1 / 1024, br1 / 1024, rn / 1024, brn / 1024, n }'
