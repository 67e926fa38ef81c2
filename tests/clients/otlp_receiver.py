"""An OpenTelemetry trace receiver for tests/api/traces.rs: a real OTLP/HTTP
endpoint that decodes each export with the official protobuf definitions
(PyPI `opentelemetry-proto`), as a collector would.

    otlp_receiver.py DIR [--count-only]

Prints `listening on port N`, then for each span of each POST /v1/traces
appends one JSON line to DIR/spans.jsonl: ids in hex, name, kind, status,
attributes, and the resource's attributes; and for each export one line of
DIR/headers.jsonl with its authorization, x-scope and content-type headers. A request that is not a valid
protobuf export is answered 400 and noted in DIR/errors.jsonl.

With --count-only (benches/logging.sh), each export is decoded and only its
spans counted, in DIR/count: the collector's work stays small beside the
server's, as a collector on another host would.
"""
import gzip
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

DIR = sys.argv[1]
COUNT_ONLY = "--count-only" in sys.argv[2:]
SPANS_SEEN = 0


def value(any_value):
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: value(kv.value) for kv in any_value.kvlist_value.values}
    if which == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, which)


def attributes(key_values):
    return {kv.key: value(kv.value) for kv in key_values}


def note(name, record):
    with open(os.path.join(DIR, name), "a") as out:
        out.write(json.dumps(record) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        content_type = self.headers.get("content-type", "")
        request = ExportTraceServiceRequest()
        try:
            if self.path != "/v1/traces" or content_type != "application/x-protobuf":
                raise ValueError(f"{self.path} with {content_type}")
            request.ParseFromString(body)
        except (DecodeError, ValueError) as err:
            note("errors.jsonl", {"error": str(err)})
            self.send_response(400)
            self.end_headers()
            return
        # What a collector that wants a token sees (tests only; the bench
        # counts).
        if not COUNT_ONLY:
            note(
                "headers.jsonl",
                {
                    name: self.headers.get(name)
                    for name in ("authorization", "x-scope", "content-type")
                },
            )
        if COUNT_ONLY:
            global SPANS_SEEN
            SPANS_SEEN += sum(
                len(scope_spans.spans)
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
            )
            with open(os.path.join(DIR, "count"), "w") as out:
                out.write(str(SPANS_SEEN))
            self.answer()
            return
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    note(
                        "spans.jsonl",
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": Span.SpanKind.Name(span.kind),
                            "status": Status.StatusCode.Name(span.status.code),
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": attributes(span.attributes),
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                        },
                    )
        self.answer()

    def answer(self):
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on port {server.server_address[1]}", flush=True)
server.serve_forever()
