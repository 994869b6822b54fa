"""Parses Prometheus text exposition from stdin with the Prometheus project's own Python
parser (`prometheus_client`) and prints one JSON line per sample:
{"family", "type", "name", "labels", "value"}. Invalid text is an error (exit status 1).
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                sys.stdout.write(json.dumps({
                    "family": family.name,
                    "type": family.type,
                    "name": s.name,
                    "labels": dict(s.labels),
                    "value": s.value,
                }, sort_keys=True) + "\n")
    except Exception as e:  # the parser raises ValueError and others on bad input
        sys.stderr.write("invalid Prometheus text: %r\n" % (e,))
        sys.exit(1)


if __name__ == "__main__":
    main()
