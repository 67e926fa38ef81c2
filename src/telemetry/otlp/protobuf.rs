//! OTLP's protobuf messages, written straight from the SDK's span records:
//! each span is encoded once, when it ends, and a request is the spans'
//! bytes framed by Keyport's resource and the scope they share.
//!
//! The messages, from `opentelemetry/proto/trace/v1/trace.proto` and
//! `common/v1/common.proto`: a request holds one `ResourceSpans` (Keyport's
//! resource), holding one `ScopeSpans` per instrumentation scope, holding
//! the spans.

use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// One scope's spans, each already encoded as `ScopeSpans.spans`
/// ([`encode_scope_span`]).
pub(super) struct ScopeBatch<'a> {
    pub scope: &'a InstrumentationScope,
    pub spans: &'a [u8],
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }`
/// with one `ResourceSpans { Resource resource = 1; repeated ScopeSpans
/// scope_spans = 2; }` and one `ScopeSpans { InstrumentationScope scope =
/// 1; repeated Span spans = 2; string schema_url = 3; }` per scope.
pub(super) fn encode_request(resource: &[u8], scopes: &[ScopeBatch<'_>], out: &mut Vec<u8>) {
    nested(out, 1, |out| {
        key(out, 1, LEN);
        varint(out, resource.len() as u64);
        out.extend_from_slice(resource);
        for batch in scopes {
            nested(out, 2, |out| {
                nested(out, 1, |out| encode_scope(batch.scope, out));
                out.extend_from_slice(batch.spans);
                string(out, 3, batch.scope.schema_url().unwrap_or_default());
            });
        }
    });
}

/// One span as a member of `ScopeSpans.spans` (field 2), to be placed
/// between a scope and its schema URL by [`encode_request`].
pub(super) fn encode_scope_span(span: &SpanData, out: &mut Vec<u8>) {
    nested(out, 2, |out| encode_span(span, out));
}

/// `Resource { repeated KeyValue attributes = 1; }`
pub(super) fn encode_resource(resource: &opentelemetry_sdk::Resource, out: &mut Vec<u8>) {
    for (name, value) in resource.iter() {
        nested(out, 1, |out| {
            string(out, 1, name.as_str());
            nested(out, 2, |out| any_value(value, out));
        });
    }
}

/// `InstrumentationScope { string name = 1; string version = 2;
/// repeated KeyValue attributes = 3; }`
fn encode_scope(scope: &InstrumentationScope, out: &mut Vec<u8>) {
    string(out, 1, scope.name());
    string(out, 2, scope.version().unwrap_or_default());
    attributes(out, 3, scope.attributes());
}

/// `Span` (trace.proto): ids, name, kind, times, attributes, events,
/// links, status, flags.
fn encode_span(span: &SpanData, out: &mut Vec<u8>) {
    let context = &span.span_context;
    bytes(out, 1, &context.trace_id().to_bytes());
    bytes(out, 2, &context.span_id().to_bytes());
    string(out, 3, &context.trace_state().header());
    if span.parent_span_id != SpanId::INVALID {
        bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    uint(out, 6, kind_number(&span.span_kind));
    fixed64(out, 7, unix_nanos(span.start_time));
    fixed64(out, 8, unix_nanos(span.end_time));
    attributes(out, 9, &span.attributes);
    uint(out, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        nested(out, 11, |out| {
            fixed64(out, 1, unix_nanos(event.timestamp));
            string(out, 2, &event.name);
            attributes(out, 3, &event.attributes);
            uint(out, 4, u64::from(event.dropped_attributes_count));
        });
    }
    uint(out, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        nested(out, 13, |out| {
            bytes(out, 1, &link.span_context.trace_id().to_bytes());
            bytes(out, 2, &link.span_context.span_id().to_bytes());
            string(out, 3, &link.span_context.trace_state().header());
            attributes(out, 4, &link.attributes);
            uint(out, 5, u64::from(link.dropped_attributes_count));
            fixed32(
                out,
                6,
                flags(&link.span_context, link.span_context.is_remote()),
            );
        });
    }
    uint(out, 14, u64::from(span.links.dropped_count));
    // `Status { string message = 2; StatusCode code = 3; }`, always sent.
    nested(out, 15, |out| {
        let (code, message) = match &span.status {
            Status::Unset => (0, ""),
            Status::Ok => (1, ""),
            Status::Error { description } => (2, description.as_ref()),
        };
        string(out, 2, message);
        uint(out, 3, code);
    });
    fixed32(out, 16, flags(context, span.parent_span_is_remote));
}

/// The span's trace flags, and whether its parent is remote (OTLP's
/// `SpanFlags`: bit 8 says the bit 9 is known).
fn flags(context: &SpanContext, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    let mut flags = u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE;
    if remote {
        flags |= IS_REMOTE;
    }
    flags
}

fn kind_number(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// `repeated KeyValue` at `field`: `KeyValue { string key = 1; AnyValue value = 2; }`.
fn attributes<'a>(out: &mut Vec<u8>, field: u32, list: impl IntoIterator<Item = &'a KeyValue>) {
    for attribute in list {
        nested(out, field, |out| {
            string(out, 1, attribute.key.as_str());
            nested(out, 2, |out| any_value(&attribute.value, out));
        });
    }
}

/// `AnyValue { oneof: string 1, bool 2, int64 3, double 4, ArrayValue 5 }`
fn any_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(text) => {
            // A oneof member is sent even when empty.
            key(out, 1, LEN);
            varint(out, text.as_str().len() as u64);
            out.extend_from_slice(text.as_str().as_bytes());
        }
        Value::Bool(flag) => {
            key(out, 2, VARINT);
            varint(out, u64::from(*flag));
        }
        Value::I64(number) => {
            key(out, 3, VARINT);
            varint(out, *number as u64);
        }
        Value::F64(number) => {
            key(out, 4, FIXED64);
            out.extend_from_slice(&number.to_le_bytes());
        }
        Value::Array(array) => nested(out, 5, |out| match array {
            Array::Bool(items) => array_of(out, items, |v| Value::Bool(*v)),
            Array::I64(items) => array_of(out, items, |v| Value::I64(*v)),
            Array::F64(items) => array_of(out, items, |v| Value::F64(*v)),
            Array::String(items) => array_of(out, items, |v| Value::String(v.clone())),
            _ => {}
        }),
        _ => {}
    }
}

/// `ArrayValue { repeated AnyValue values = 1; }`
fn array_of<T>(out: &mut Vec<u8>, items: &[T], value: impl Fn(&T) -> Value) {
    for item in items {
        nested(out, 1, |out| any_value(&value(item), out));
    }
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(out, u64::from((field << 3) | wire_type));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field whose content `write` appends. The length goes
/// first on the wire but is known last: one byte is held for it, and the
/// content moved along in place when the length needs more.
fn nested(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.push(0);
    write(out);
    let end = out.len();
    let length = end - at - 1;
    if length < 0x80 {
        out[at] = length as u8;
        return;
    }
    let mut prefix = [0u8; 10];
    let mut used = 0;
    let mut rest = length as u64;
    while rest >= 0x80 {
        prefix[used] = (rest as u8) | 0x80;
        rest >>= 7;
        used += 1;
    }
    prefix[used] = rest as u8;
    used += 1;
    out.resize(end + used - 1, 0);
    out.copy_within(at + 1..end, at + used);
    out[at..at + used].copy_from_slice(&prefix[..used]);
}

fn string(out: &mut Vec<u8>, field: u32, text: &str) {
    bytes(out, field, text.as_bytes());
}

/// A `string` or `bytes` field; empty ones are not sent (proto3 defaults).
fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    key(out, field, LEN);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// An integer or enum field; zero is not sent.
fn uint(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, VARINT);
        varint(out, value);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        key(out, field, FIXED32);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;

    fn span(n: u8, scope: &InstrumentationScope) -> SpanData {
        let long_name = "n".repeat(300);
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "retry",
            SystemTime::UNIX_EPOCH + Duration::from_nanos(1_790_000_000_123_456_789),
            vec![KeyValue::new("attempt", 2_i64)],
            1,
        ));
        let mut links = SpanLinks::default();
        links.links.push(Link::new(
            SpanContext::new(
                TraceId::from_bytes([9; 16]),
                SpanId::from_bytes([8; 8]),
                TraceFlags::SAMPLED,
                true,
                TraceState::from_key_value([("vendor", "v1")]).unwrap(),
            ),
            vec![KeyValue::new("why", "follows")],
            0,
        ));
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes([n; 16]),
                SpanId::from_bytes([n + 1; 8]),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: if n.is_multiple_of(2) {
                SpanId::INVALID
            } else {
                SpanId::from_bytes([7; 8])
            },
            parent_span_is_remote: n.is_multiple_of(3),
            span_kind: [SpanKind::Server, SpanKind::Client, SpanKind::Internal][usize::from(n % 3)]
                .clone(),
            name: if n == 1 {
                Cow::Owned(long_name)
            } else {
                Cow::Borrowed("POST /oauth/token")
            },
            start_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_790_000_000_000_000_001),
            end_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_790_000_000_200_000_002),
            attributes: vec![
                KeyValue::new("http.route", "/oauth/token"),
                KeyValue::new("http.response.status_code", 200_i64),
                KeyValue::new("empty", ""),
                KeyValue::new("flag", true),
                KeyValue::new("negative", -5_i64),
                KeyValue::new("ratio", 0.25_f64),
                KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec![StringValue::from("a"), "b".into()])),
                ),
                KeyValue::new("numbers", Value::Array(Array::I64(vec![1, -2]))),
            ],
            dropped_attributes_count: u32::from(n),
            events,
            links,
            status: match n % 3 {
                0 => Status::Unset,
                1 => Status::Ok,
                _ => Status::error("signing failed"),
            },
            instrumentation_scope: scope.clone(),
        }
    }

    #[test]
    fn the_bytes_decode_to_what_the_official_conversion_makes() {
        let keyport = InstrumentationScope::builder("keyport").build();
        let other = InstrumentationScope::builder("other")
            .with_version("1.2")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", "x")])
            .build();
        let spans: Vec<SpanData> = (0..6)
            .map(|n| span(n, if n == 2 || n == 4 { &other } else { &keyport }))
            .collect();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "keyport"),
                KeyValue::new("service.instance.id", "0190-…"),
            ])
            .build();

        let mut encoded_resource = Vec::new();
        encode_resource(&resource, &mut encoded_resource);
        // As the processor queues them: each span encoded when it ends,
        // kept with the spans of its scope.
        let mut keyport_spans = Vec::new();
        let mut other_spans = Vec::new();
        for span in &spans {
            let queue = if span.instrumentation_scope == other {
                &mut other_spans
            } else {
                &mut keyport_spans
            };
            encode_scope_span(span, queue);
        }
        let mut ours = Vec::new();
        encode_request(
            &encoded_resource,
            &[
                ScopeBatch {
                    scope: &keyport,
                    spans: &keyport_spans,
                },
                ScopeBatch {
                    scope: &other,
                    spans: &other_spans,
                },
            ],
            &mut ours,
        );

        let official = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(&resource),
            ),
        };
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("valid protobuf");
        assert_eq!(decoded, official);
        assert_eq!(decoded.resource_spans[0].scope_spans.len(), 2);
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 4);
    }

    #[test]
    fn a_long_length_prefix_moves_the_content_along() {
        for size in [0, 1, 127, 128, 16_383, 16_384, 2_097_152] {
            let mut out = vec![0xAA];
            nested(&mut out, 3, |out| out.resize(out.len() + size, 0x55));
            let mut expected = vec![0xAA, 3 << 3 | LEN as u8];
            varint(&mut expected, size as u64);
            expected.resize(expected.len() + size, 0x55);
            assert_eq!(out, expected, "content of {size} bytes");
        }
    }
}
