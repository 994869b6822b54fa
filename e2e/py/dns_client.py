"""A real DNS client for the e2e tests: sends each query with dnspython over UDP and prints
what came back, one JSON object per query.

Usage: dns_client.py PORT NAME:TYPE [NAME:TYPE ...]
Each result: {"name", "type", "rcode", "aa", "answers": [{"name", "ttl", "address"}]}, or
{"name", "type", "error"} when no valid answer came within 2 s.
"""
import json
import sys

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def ask(port, name, rdtype):
    q = dns.message.make_query(name, rdtype)
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
    except Exception as e:  # timeouts and answers dnspython refuses alike
        return {"name": name, "type": rdtype, "error": type(e).__name__ + ": " + str(e)}
    answers = []
    for rrset in r.answer:
        for rd in rrset:
            answers.append({
                "name": rrset.name.to_text(),
                "ttl": rrset.ttl,
                "address": rd.to_text(),
            })
    return {
        "name": name,
        "type": rdtype,
        "rcode": dns.rcode.to_text(r.rcode()),
        "aa": bool(r.flags & dns.flags.AA),
        "answers": answers,
    }


def main():
    port = int(sys.argv[1])
    out = []
    for spec in sys.argv[2:]:
        name, rdtype = spec.rsplit(":", 1)
        out.append(ask(port, name, rdtype))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
