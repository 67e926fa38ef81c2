//! OpenTelemetry traces, off unless `otlp_endpoint` is set; then exported
//! over OTLP/HTTP (protobuf) from a thread of its own, so a slow or absent
//! collector never holds up an answer (the span processor and exporter are
//! Keyport's own, [`super::otlp`]).
//!
//! The spans: one per request (the observe middleware, [`ServerSpan`]);
//! inside it client authentication, token signing, each storage call and
//! each outbound call; one per webhook delivery, a child of the request
//! that queued it (its `traceparent` is stored with the event). Work
//! outside a traced request or delivery (the background loops) records no
//! span: a poll every second would otherwise bury the requests.
//!
//! `opentelemetry` is used directly rather than through `tracing`: Keyport
//! logs through `log` (the request context in [`super::request`] already
//! carries what the log lines need), and a second instrumentation stack
//! would cost every request its subscriber dispatch whether traces are on
//! or not. Off, each span point is one atomic load.
//!
//! A request's trace id is its request id: a UUIDv7 request id's 128 bits
//! are the trace id, and a trace id accepted from a trusted proxy's
//! `traceparent` becomes the request id when the proxy sent none.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceId, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SamplingResult, SdkTracer,
    SdkTracerProvider, ShouldSample,
};

use super::request::RequestId;

pub use opentelemetry::KeyValue as Attribute;
pub use opentelemetry::trace::SpanKind as Kind;

/// The tracer, set once by [`install`]; unset means traces are off.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Spans per post to the collector, and how many may wait for one.
const EXPORT_BATCH: usize = 2048;
const EXPORT_QUEUE: usize = 16 * 1024;

/// How long spans may wait before they are posted.
const EXPORT_DELAY: Duration = Duration::from_secs(5);

/// How long one export may take before the batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up trace export to {endpoint}: {reason}")]
pub struct TracesError {
    endpoint: String,
    reason: String,
}

/// Installed traces; [`Traces::shutdown`] sends what is still queued.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Sends the spans still queued (waiting at most the export timeout),
    /// then stops the exporter's thread.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let finished = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = finished {
            log::warn!("trace export did not finish cleanly: {err}");
        }
    }
}

/// Starts exporting traces to the collector at `otlp_endpoint`, tracing
/// `sample_ratio` of the requests Keyport starts a trace for; `None` when
/// no collector is named. Once per process: a second call keeps the first
/// exporter.
pub fn install(
    otlp_endpoint: Option<&str>,
    sample_ratio: f64,
) -> Result<Option<Traces>, TracesError> {
    let Some(endpoint) = otlp_endpoint else {
        return Ok(None);
    };
    let failed = |reason: String| TracesError {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("keyport")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(
                "service.instance.id",
                uuid::Uuid::now_v7().hyphenated().to_string(),
            ),
        ])
        .build();
    // Larger batches than the SDK's 512: at thousands of spans a second,
    // fewer and larger posts cost the export thread less per span, and a
    // deeper queue rides out a slow collector without dropping spans. The
    // standard OTEL_BSP_* variables still win.
    let batching = super::otlp::Batching::from_env(super::otlp::Batching {
        schedule_delay: EXPORT_DELAY,
        batch_size: EXPORT_BATCH,
        max_queue: EXPORT_QUEUE,
        timeout: EXPORT_TIMEOUT,
    });
    let processor =
        super::otlp::OtlpProcessor::start(traces_url(endpoint), batching).map_err(failed)?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(ShareOfTraces(sample_ratio))))
        .with_id_generator(RequestTraceIds)
        .with_resource(resource)
        .build();
    if TRACER.set(provider.tracer("keyport")).is_err() {
        log::warn!("traces were already set up in this process; keeping the first exporter");
    } else {
        log::info!(
            "exporting traces to {} (sampling {} of requests)",
            traces_url(endpoint),
            sample_ratio
        );
    }
    Ok(Some(Traces { provider }))
}

/// The collector's base URL gets the OTLP traces path, as the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL that already names it is kept.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

tokio::task_local! {
    /// The span of the traced request or work this task is doing. Keyport's
    /// own rather than the SDK's `Context::current`: entering a task-local
    /// on each poll swaps a pointer, where attaching a `Context` allocates.
    static CURRENT_SPAN: Context;
}

thread_local! {
    /// The trace id the next root span takes: set just before that span is
    /// built, on the same thread, by [`ServerSpan::start`].
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Root spans take the request's id as their trace id; everything else is
/// random, as the SDK's own generator makes it.
#[derive(Debug)]
struct RequestTraceIds;

impl IdGenerator for RequestTraceIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .take()
            .unwrap_or_else(|| RandomIdGenerator::default().new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        RandomIdGenerator::default().new_span_id()
    }
}

/// Keeps `0.0`–`1.0` of the traces Keyport starts, by the random bits of
/// the trace id. Not the SDK's ratio sampler: that reads the id's last 8
/// bytes as they are, and in a UUIDv7 (a request id) their top two bits
/// are the variant, `10`, so it kept every trace or none below a half.
#[derive(Debug, Clone)]
struct ShareOfTraces(f64);

impl ShareOfTraces {
    fn keeps(&self, trace_id: TraceId) -> bool {
        let low: [u8; 8] = trace_id.to_bytes()[8..]
            .try_into()
            .expect("a trace id has 16 bytes");
        // The 62 random bits of a UUIDv7, at the top; random in any other id.
        let random = u64::from_be_bytes(low) << 2;
        (random as f64) < self.0 * u64::MAX as f64
    }
}

impl ShouldSample for ShareOfTraces {
    fn should_sample(
        &self,
        _parent: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        SamplingResult {
            decision: if self.keeps(trace_id) {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: Default::default(),
        }
    }
}

/// A trace begun elsewhere (a trusted proxy's, or the request that queued
/// a delivery) that a span here continues.
#[derive(Clone)]
pub struct RemoteParent(Context);

/// The trace a `traceparent` header names, when well formed.
pub fn remote_parent(traceparent: &str) -> Option<RemoteParent> {
    struct One<'a>(&'a str);
    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    let context = TraceContextPropagator::new().extract(&One(traceparent));
    context
        .span()
        .span_context()
        .is_valid()
        .then_some(RemoteParent(context))
}

/// The request id a proxied trace gives a request the proxy did not name.
pub fn request_id_of(parent: &RemoteParent) -> Option<RequestId> {
    let trace_id = parent.0.span().span_context().trace_id();
    let id = uuid::Uuid::from_bytes(trace_id.to_bytes());
    RequestId::parse(&id.hyphenated().to_string())
}

/// The trace id a request id stands for: its 128 bits when it is a UUID
/// (a Keyport id, or a proxy's UUID), else none (a random one is drawn).
fn trace_id_of(id: &RequestId) -> Option<TraceId> {
    let uuid = uuid::Uuid::parse_str(id.as_str()).ok()?;
    (!uuid.is_nil()).then(|| TraceId::from_bytes(*uuid.as_bytes()))
}

/// The span of one request: started before routing, named by the route
/// template once routing has chosen one.
pub struct ServerSpan(Option<Context>);

impl ServerSpan {
    pub fn start(
        method: &str,
        id: &RequestId,
        parent: Option<RemoteParent>,
        client_address: Option<IpAddr>,
    ) -> ServerSpan {
        let Some(tracer) = tracer() else {
            return ServerSpan(None);
        };
        let parent = parent.map(|p| p.0).unwrap_or_default();
        if !parent.span().span_context().is_valid() {
            NEXT_TRACE_ID.set(trace_id_of(id));
        }
        let method = known_method(method);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("keyport.request_id", id.as_str().to_owned()),
        ];
        if let Some(address) = client_address {
            attributes.push(KeyValue::new("client.address", address.to_string()));
        }
        let span = tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        NEXT_TRACE_ID.set(None);
        ServerSpan(Some(parent.with_span(span)))
    }

    /// Runs the answer with this span as the current one.
    pub async fn run<F: Future>(&self, answer: F) -> F::Output {
        match &self.0 {
            Some(context) => CURRENT_SPAN.scope(context.clone(), answer).await,
            None => answer.await,
        }
    }

    /// Names the span `METHOD /route/{template}` and ends it.
    pub fn finish(self, method: &str, route: &str, status: u16, error_code: Option<&str>) {
        let Some(context) = self.0 else {
            return;
        };
        let span = context.span();
        let (name, route) = route_names(method, route);
        span.update_name(name);
        span.set_attribute(KeyValue::new("http.route", route));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(code) = error_code {
            span.set_attribute(KeyValue::new("error.type", code.to_owned()));
        }
        if status >= 500 {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// The methods Keyport serves.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Route templates seen, at most; past it names are made per request.
const ROUTE_NAMES_KEPT: usize = 1024;

/// A request span's name (`METHOD /route/{template}`) and route, made once
/// per method and template and kept: every request's span would otherwise
/// format both anew. Route templates are the server's own (`unmatched`
/// for the rest), so what is kept is bounded by the routes Keyport serves,
/// and [`ROUTE_NAMES_KEPT`] caps it besides.
fn route_names(method: &str, route: &str) -> (Cow<'static, str>, Cow<'static, str>) {
    /// Per route template: the template, and the span name per method.
    type Kept = HashMap<String, (&'static str, [Option<&'static str>; METHODS.len()])>;
    static KEPT: OnceLock<RwLock<Kept>> = OnceLock::new();
    let Some(index) = METHODS.iter().position(|known| *known == method) else {
        return (
            Cow::Owned(format!("{method} {route}")),
            Cow::Owned(route.to_owned()),
        );
    };
    let kept = KEPT.get_or_init(Default::default);
    if let Some((route, names)) = kept.read().unwrap_or_else(|e| e.into_inner()).get(route)
        && let Some(name) = names[index]
    {
        return (Cow::Borrowed(name), Cow::Borrowed(route));
    }
    let mut kept = kept.write().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= ROUTE_NAMES_KEPT && !kept.contains_key(route) {
        return (
            Cow::Owned(format!("{method} {route}")),
            Cow::Owned(route.to_owned()),
        );
    }
    let (route, names) = kept
        .entry(route.to_owned())
        .or_insert_with(|| (Box::leak(route.into()), [None; METHODS.len()]));
    let name = *names[index]
        .get_or_insert_with(|| Box::leak(format!("{} {route}", METHODS[index]).into()));
    (Cow::Borrowed(name), Cow::Borrowed(*route))
}

/// The HTTP method, borrowed for the methods Keyport serves: no copy per
/// request.
fn known_method(method: &str) -> Cow<'static, str> {
    match METHODS.iter().find(|known| **known == method) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(method.to_owned()),
    }
}

/// Whether the current task is inside a traced request or delivery.
fn current_parent() -> Option<(&'static SdkTracer, Context)> {
    let tracer = tracer()?;
    let context = CURRENT_SPAN.try_with(Context::clone).ok()?;
    context
        .span()
        .span_context()
        .is_valid()
        .then_some((tracer, context))
}

/// A span with no spans below it: started as a child of the current span,
/// ended when dropped. Records nothing outside a traced request.
pub struct Leaf(Option<opentelemetry_sdk::trace::Span>);

impl Leaf {
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Leaf {
        let Some((tracer, parent)) = current_parent() else {
            return Leaf(None);
        };
        Leaf::under(tracer, &parent, name.into(), kind, attributes())
    }

    /// One database call: `storage.<operation>`, as a client span.
    /// Nothing is formatted unless a span is recorded: this runs on every
    /// database call.
    pub fn database(system: &'static str, operation: &'static str) -> Leaf {
        let Some((tracer, parent)) = current_parent() else {
            return Leaf(None);
        };
        let attributes = vec![
            KeyValue::new("db.system.name", system),
            KeyValue::new("db.operation.name", operation),
        ];
        let name = format!("storage.{operation}").into();
        Leaf::under(tracer, &parent, name, SpanKind::Client, attributes)
    }

    /// A delivery's span: a child of the request that queued it (its stored
    /// `traceparent`), or the root of its own trace.
    pub fn start_detached(
        name: &'static str,
        kind: SpanKind,
        traceparent: Option<&str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Leaf {
        let Some(tracer) = tracer() else {
            return Leaf(None);
        };
        let parent = traceparent
            .and_then(remote_parent)
            .map(|p| p.0)
            .unwrap_or_default();
        Leaf::under(tracer, &parent, name.into(), kind, attributes())
    }

    fn under(
        tracer: &SdkTracer,
        parent: &Context,
        name: Cow<'static, str>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Leaf {
        Leaf(Some(
            tracer
                .span_builder(name)
                .with_kind(kind)
                .with_attributes(attributes)
                .start_with_context(tracer, parent),
        ))
    }

    pub fn set(&mut self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(attribute());
        }
    }

    /// Marks the span failed; `what` is a code or a short phrase, never a
    /// secret or raw request text.
    pub fn fail(&mut self, what: &'static str) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(what));
        }
    }

    /// The `traceparent` header that makes the callee's spans children of
    /// this one.
    pub fn traceparent(&self) -> Option<String> {
        self.0.as_ref().map(|span| header_of(span.span_context()))
    }
}

/// Runs `work` in a span of its own, the current one while it runs, so the
/// spans started inside are its children; an `Err` marks it failed.
pub async fn in_span<T, E>(
    name: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Some((tracer, parent)) = current_parent() else {
        return work.await;
    };
    let span = tracer.start_with_context(name, &parent);
    let context = parent.with_span(span);
    let outcome = CURRENT_SPAN.scope(context.clone(), work).await;
    let span = context.span();
    if outcome.is_err() {
        span.set_status(Status::error(""));
    }
    span.end();
    outcome
}

/// The current span as a `traceparent` header value, to store with work
/// that another task picks up later (a webhook event).
pub fn current_traceparent() -> Option<String> {
    let (_, context) = current_parent()?;
    Some(header_of(context.span().span_context()))
}

fn header_of(span_context: &SpanContext) -> String {
    struct Header(Option<String>);
    impl Injector for Header {
        fn set(&mut self, key: &str, value: String) {
            if key == "traceparent" {
                self.0 = Some(value);
            }
        }
    }
    let mut header = Header(None);
    let context = Context::new().with_remote_span_context(span_context.clone());
    TraceContextPropagator::new().inject_context(&context, &mut header);
    header.0.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_url_gets_the_traces_path_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c.example/otlp/v1/traces"),
            "https://c.example/otlp/v1/traces"
        );
    }

    #[test]
    fn a_proxied_trace_names_the_request_and_a_request_id_names_the_trace() {
        let parent =
            remote_parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        let id = request_id_of(&parent).unwrap();
        assert_eq!(id.as_str(), "0af76519-16cd-43dd-8448-eb211c80319c");
        assert_eq!(
            trace_id_of(&id).unwrap().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        ] {
            assert!(remote_parent(bad).is_none(), "{bad:?} was accepted");
        }
        assert!(trace_id_of(&RequestId::parse("not-a-uuid").unwrap()).is_none());
    }

    #[test]
    fn a_share_of_request_traces_is_kept_as_configured() {
        // Request ids made from a fixed sequence, so the counts are the same
        // every run: 20,000 UUIDv7s one millisecond apart.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let ids: Vec<TraceId> = (0..20_000u64)
            .map(|n| {
                let mut random = [0u8; 10];
                for byte in &mut random {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *byte = state as u8;
                }
                let id = uuid::Builder::from_unix_timestamp_millis(1_790_000_000_000 + n, &random)
                    .into_uuid();
                TraceId::from_bytes(*id.as_bytes())
            })
            .collect();
        for (ratio, low, high) in [(0.0, 0, 0), (0.1, 1_800, 2_200), (0.5, 9_600, 10_400)] {
            let kept = ids
                .iter()
                .filter(|id| ShareOfTraces(ratio).keeps(**id))
                .count();
            assert!((low..=high).contains(&kept), "{ratio}: kept {kept}");
        }
        assert!(ids.iter().all(|id| ShareOfTraces(1.0).keeps(*id)));
    }

    #[test]
    fn span_names_are_made_once_per_method_and_route() {
        let (name, route) = route_names("PATCH", "/api/v1/test-only/{id}");
        assert_eq!(
            (&*name, &*route),
            ("PATCH /api/v1/test-only/{id}", "/api/v1/test-only/{id}")
        );
        let (again, _) = route_names("PATCH", "/api/v1/test-only/{id}");
        assert!(
            matches!(again, Cow::Borrowed(_)),
            "the kept name was not used"
        );
        assert!(std::ptr::eq(&*name, &*again), "the name was made twice");
        let (other, _) = route_names("DELETE", "/api/v1/test-only/{id}");
        assert_eq!(other, "DELETE /api/v1/test-only/{id}");
        // A method Keyport does not serve is named, and not kept.
        let (odd, route) = route_names("BREW", "/api/v1/test-only/{id}");
        assert_eq!(
            (&*odd, &*route),
            ("BREW /api/v1/test-only/{id}", "/api/v1/test-only/{id}")
        );
        assert!(matches!(odd, Cow::Owned(_)));
    }

    #[test]
    fn with_traces_off_spans_record_nothing_and_cost_no_header() {
        let leaf = Leaf::start("storage.x", SpanKind::Client, Vec::new);
        assert!(leaf.traceparent().is_none());
        assert!(current_traceparent().is_none());
    }
}
