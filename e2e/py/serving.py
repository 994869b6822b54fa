"""What the e2e gRPC services share: serving on 127.0.0.1 and printing records.

A service listens on the port given as argv[1] (0 picks one), prints `port <n>` once it
serves, then one JSON line per record; the harness (`e2e/src/telemetry.rs`) reads them.
"""

import json
import sys
from concurrent import futures

import grpc


def emit(record):
    """Prints one record as a JSON line."""
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def serve(add_to):
    """Runs a gRPC server whose services `add_to(server)` adds, until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_to(server)
    port = server.add_insecure_port("127.0.0.1:%d" % int(sys.argv[1] if len(sys.argv) > 1 else 0))
    server.start()
    sys.stdout.write("port %d\n" % port)
    sys.stdout.flush()
    server.wait_for_termination()
