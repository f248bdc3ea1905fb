"""The index path's floor: prebuilt `_bulk` bodies of N documents (create actions with
ids), sent one after another over one keep-alive connection; prints documents/s.

    python3 bench/bulk_floor.py HOST:PORT INDEX DOCS.ndjson [BATCH]
"""
import http.client
import json
import sys
import time


def main():
    addr, index, path = sys.argv[1], sys.argv[2], sys.argv[3]
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    host, port = addr.split(":")
    with open(path, "rb") as f:
        docs = [line.rstrip(b"\n") for line in f if line.strip()]
    bodies = []
    for start in range(0, len(docs), batch):
        body = bytearray()
        for i, doc in enumerate(docs[start:start + batch], start):
            action = {"create": {"_index": index, "_id": f"floor-{i}"}}
            body += json.dumps(action).encode() + b"\n" + doc + b"\n"
        bodies.append(bytes(body))
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    began = time.monotonic()
    for body in bodies:
        conn.request("POST", "/_bulk", body, {"Content-Type": "application/x-ndjson"})
        answer = conn.getresponse()
        text = answer.read()
        if answer.status != 200 or b'"errors":true' in text[:200]:
            sys.exit(f"bulk answered {answer.status}: {text[:300]!r}")
    took = time.monotonic() - began
    print(f"{len(docs) / took:.0f}")


if __name__ == "__main__":
    main()
