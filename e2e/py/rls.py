"""A recording rate-limit service (Envoy's `envoy.service.ratelimit.v3.RateLimitService`) for
the e2e tests.

Listens on 127.0.0.1 (port from argv[1], 0 picks one), prints `port <n>` once it serves, then
one JSON line per `ShouldRateLimit` call: {"domain", "hits_addend", "descriptors": [{"entries":
{key: value}, "hits_addend": n or null}]}. Every call is answered OK: the test reads what Envoy
charged, not a decision.

The request and response messages are built at start-up from their field numbers with
protobuf's descriptor API (Envoy's .proto files are not on PyPI).
"""

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from google.protobuf import message_factory
from serving import emit, serve

FD = descriptor_pb2.FieldDescriptorProto


def field(msg, name, number, kind, label=FD.LABEL_OPTIONAL, type_name=None):
    f = msg.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        f.type_name = type_name


def messages():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="jisr_e2e_rls.proto",
        package="jisr.e2e.rls",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    descriptor = fdp.message_type.add(name="Descriptor")
    entry = descriptor.nested_type.add(name="Entry")
    field(entry, "key", 1, FD.TYPE_STRING)
    field(entry, "value", 2, FD.TYPE_STRING)
    field(descriptor, "entries", 1, FD.TYPE_MESSAGE, FD.LABEL_REPEATED,
          ".jisr.e2e.rls.Descriptor.Entry")
    field(descriptor, "hits_addend", 3, FD.TYPE_MESSAGE, type_name=".google.protobuf.UInt64Value")
    request = fdp.message_type.add(name="Request")
    field(request, "domain", 1, FD.TYPE_STRING)
    field(request, "descriptors", 2, FD.TYPE_MESSAGE, FD.LABEL_REPEATED,
          ".jisr.e2e.rls.Descriptor")
    field(request, "hits_addend", 3, FD.TYPE_UINT32)
    response = fdp.message_type.add(name="Response")
    field(response, "overall_code", 1, FD.TYPE_INT32)  # an enum on the wire: 1 = OK
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fdp)
    get = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    return get("jisr.e2e.rls.Request"), get("jisr.e2e.rls.Response")


Request, Response = messages()


def should_rate_limit(request, context):
    emit({
        "domain": request.domain,
        "hits_addend": request.hits_addend,
        "descriptors": [
            {
                "entries": {e.key: e.value for e in d.entries},
                "hits_addend": d.hits_addend.value if d.HasField("hits_addend") else None,
            }
            for d in request.descriptors
        ],
    })
    return Response(overall_code=1)


def main():
    handler = grpc.method_handlers_generic_handler(
        "envoy.service.ratelimit.v3.RateLimitService",
        {
            "ShouldRateLimit": grpc.unary_unary_rpc_method_handler(
                should_rate_limit,
                request_deserializer=Request.FromString,
                response_serializer=Response.SerializeToString,
            )
        },
    )
    serve(lambda server: server.add_generic_rpc_handlers((handler,)))


if __name__ == "__main__":
    main()
