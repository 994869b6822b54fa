"""OTLP/gRPC metrics receiver for the e2e tests.

Listens on 127.0.0.1 (port from argv[1], 0 picks one), prints `port <n>` once it serves, then
one JSON line per received data point:
{"name", "kind": "sum"|"gauge"|"histogram", "attributes": {..}, "value" or "count"/"sum"/
"bucket_counts"/"explicit_bounds", "monotonic" (sums)}. Runs until killed.
"""

from serving import emit, serve
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value", "bytes_value"):
        return str(getattr(v, kind))
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind in ("sum", "gauge"):
                        data = getattr(m, kind)
                        for p in data.data_points:
                            record = {
                                "name": m.name,
                                "kind": kind,
                                "attributes": attributes(p.attributes),
                                "value": p.as_int if p.WhichOneof("value") == "as_int" else p.as_double,
                            }
                            if kind == "sum":
                                record["monotonic"] = data.is_monotonic
                            emit(record)
                    elif kind == "histogram":
                        for p in m.histogram.data_points:
                            emit({
                                "name": m.name,
                                "kind": "histogram",
                                "attributes": attributes(p.attributes),
                                "count": p.count,
                                "sum": p.sum,
                                "bucket_counts": list(p.bucket_counts),
                                "explicit_bounds": list(p.explicit_bounds),
                            })
                    else:
                        emit({"name": m.name, "kind": str(kind), "attributes": {}})
        return metrics_service_pb2.ExportMetricsServiceResponse()


def main():
    serve(lambda server: metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server))


if __name__ == "__main__":
    main()
