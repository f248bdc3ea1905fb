#!/usr/bin/env python3
"""Checks that several NDJSON outputs agree, as JSON values, line by line.
usage: agree.py REFERENCE OTHER... ; prints one line and exits 1 on the first difference."""
import json
import sys


def main():
    files = [open(p, encoding="utf-8") for p in sys.argv[1:]]
    n = 0
    for lines in zip(*files):
        docs = [json.loads(l) for l in lines]
        for path, doc in zip(sys.argv[2:], docs[1:]):
            if doc != docs[0]:
                keys = sorted(set(doc) | set(docs[0]))
                diff = [k for k in keys if doc.get(k) != docs[0].get(k)]
                print(f"line {n + 1}: {path} differs from {sys.argv[1]} in {diff}: {json.dumps({k: doc.get(k) for k in diff})[:300]} vs {json.dumps({k: docs[0].get(k) for k in diff})[:300]}")
                sys.exit(1)
        n += 1
    rest = [f.readline() for f in files]
    if any(rest):
        print("outputs have different line counts")
        sys.exit(1)
    print(f"agree: {n} documents identical as JSON across {len(files)} outputs")


main()
