#!/usr/bin/env python3
"""Compares an agent's normalized transcript with upparat's (the fixture).

What the service sees must be the same; these differences are allowed,
each one a documented improvement of otalite over upparat 1.12:

- `qos` of the agent's publishes: otalite sends updates with QoS 1 (they
  survive a broken connection) where upparat uses QoS 0;
- the first artifact request: upparat always sends `Range: bytes=0-`
  (answered 206), otalite a plain GET (answered 200) when it has no bytes.

Usage: compare.py <fixture.json> <transcript.json>; exit 1 with a unified
diff on any other difference.
"""
import difflib
import json
import sys


def relaxed(transcript):
    t = json.loads(json.dumps(transcript))
    for message in t.get("published", []):
        message.pop("qos", None)
    for request in t.get("http", []):
        if request.get("range") in (None, "bytes=0-"):
            request["range"] = "bytes=0-"
            if request.get("status") in (200, 206):
                request["status"] = "200/206"
    return t


def main():
    with open(sys.argv[1]) as f:
        expected = relaxed(json.load(f))
    with open(sys.argv[2]) as f:
        actual = relaxed(json.load(f))
    a = json.dumps(expected, indent=1, sort_keys=True).splitlines()
    b = json.dumps(actual, indent=1, sort_keys=True).splitlines()
    if a == b:
        return 0
    sys.stdout.writelines(
        line + "\n" for line in difflib.unified_diff(a, b, "upparat", "agent", lineterm="")
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
