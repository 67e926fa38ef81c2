//! Span export over OTLP/HTTP (protobuf): Keyport's own span processor
//! and exporter in one.
//!
//! A span is encoded to its protobuf bytes on the thread that ends it and
//! appended to a shared queue of bytes; a thread of its own frames what is
//! queued into one request and posts it to the collector, when a batch is
//! full or the schedule delay has passed. The SDK's batch processor would
//! instead move each span's record (some 400 bytes) through a channel to
//! its thread, which gathers them, hands them to an exporter that encodes
//! them, then frees each record's strings away from the thread that made
//! them: copies and cross-thread frees that, at the token endpoint's rate,
//! cost more than the encoding itself. Here each record is read once and
//! dropped where it was made.
//!
//! Why not the `opentelemetry-otlp` exporter: it first converts every span
//! into the generated protobuf structs (a `String` per attribute key and
//! value, a `Vec` per id), then encodes and drops them; encoding the same
//! messages directly leaves the bytes on the wire unchanged (a unit test in
//! [`protobuf`] decodes both and compares) and skips the copies.
//!
//! The standard batch settings are read as the SDK reads them:
//! `OTEL_BSP_SCHEDULE_DELAY` (milliseconds), `OTEL_BSP_MAX_QUEUE_SIZE` and
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (spans); `OTEL_EXPORTER_OTLP_HEADERS`
//! (or `…_TRACES_HEADERS`) adds headers to every post.

mod protobuf;

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use protobuf::ScopeBatch;

/// How often an unreachable collector, or a full queue, is mentioned in
/// the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// When spans are posted, and how many may wait.
#[derive(Debug, Clone, Copy)]
pub(super) struct Batching {
    /// A post at least this often while spans wait.
    pub schedule_delay: Duration,
    /// A post as soon as this many spans wait.
    pub batch_size: usize,
    /// Spans past this many waiting are dropped (and counted in the log).
    pub max_queue: usize,
    /// How long one post may take.
    pub timeout: Duration,
}

impl Batching {
    /// `defaults`, with the standard `OTEL_BSP_*` variables where set and
    /// valid (a bad value is named in the log and the default kept).
    pub(super) fn from_env(defaults: Batching) -> Batching {
        Batching::from_variables(defaults, |name| std::env::var(name).ok())
    }

    fn from_variables(defaults: Batching, variable: impl Fn(&str) -> Option<String>) -> Batching {
        let read = |name: &str, default: u64| match variable(name) {
            Some(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
                log::warn!("{name} is not a whole number; using {default}");
                default
            }),
            None => default,
        };
        let batch_size = read("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", defaults.batch_size as u64).max(1);
        let max_queue = read("OTEL_BSP_MAX_QUEUE_SIZE", defaults.max_queue as u64).max(1);
        Batching {
            schedule_delay: Duration::from_millis(read(
                "OTEL_BSP_SCHEDULE_DELAY",
                defaults.schedule_delay.as_millis() as u64,
            )),
            batch_size: batch_size.min(max_queue) as usize,
            max_queue: max_queue as usize,
            timeout: defaults.timeout,
        }
    }
}

/// Encodes ended spans and posts them to a collector's `/v1/traces` from a
/// thread of its own. A post the collector does not take is dropped and
/// said in the log (at most once a minute: a collector that is down would
/// otherwise fill the log); answers never wait for it.
pub(super) struct OtlpProcessor {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for OtlpProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpProcessor").finish_non_exhaustive()
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// The export thread waits on it for a full batch, a flush or the end.
    wake_exporter: Condvar,
    /// Flushes wait on it for the export thread's round to finish.
    round_done: Condvar,
    batching: Batching,
    /// The encoded `Resource` message, the same in every request.
    resource: Mutex<Vec<u8>>,
}

#[derive(Default)]
struct Queue {
    /// Encoded spans, per instrumentation scope (Keyport has one).
    scopes: Vec<(InstrumentationScope, Vec<u8>)>,
    spans: usize,
    dropped: u64,
    last_drop_warning: Option<Instant>,
    /// Flushes asked for, and the last one the export thread has done.
    flushes_asked: u64,
    flushes_done: u64,
    stopping: bool,
    stopped: bool,
}

thread_local! {
    /// Where a span is encoded before it joins the queue: the queue's lock
    /// is held only for a copy of its bytes.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl OtlpProcessor {
    /// Starts the export thread, posting to `url`.
    pub(super) fn start(url: String, batching: Batching) -> Result<OtlpProcessor, String> {
        // The blocking client runs a runtime of its own, which may be
        // neither built nor dropped inside Tokio's: it is built, used and
        // dropped on the export thread, which is a plain one.
        let timeout = batching.timeout;
        let shared = Arc::new(Shared::new(batching));
        let (built, client) = std::sync::mpsc::sync_channel(1);
        let exporter = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("keyport-otlp".to_owned())
            .spawn(move || {
                let client = match reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .build()
                {
                    Ok(client) => {
                        let _ = built.send(Ok(()));
                        client
                    }
                    Err(err) => {
                        let _ = built.send(Err(err.to_string()));
                        return;
                    }
                };
                export_loop(&exporter, &Collector::new(client, url));
            })
            .map_err(|err| format!("the export thread could not start: {err}"))?;
        match client.recv() {
            Ok(Ok(())) => Ok(OtlpProcessor {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err("the HTTP client could not be built".to_owned()),
        }
    }
}

impl SpanProcessor for OtlpProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            protobuf::encode_scope_span(&span, scratch);
            self.shared.enqueue(&span.instrumentation_scope, scratch);
        });
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.shared.flush(false)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        let outcome = self.shared.flush(true);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        outcome
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        let mut encoded = self
            .shared
            .resource
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        encoded.clear();
        protobuf::encode_resource(resource, &mut encoded);
    }
}

impl Shared {
    fn new(batching: Batching) -> Shared {
        Shared {
            queue: Mutex::new(Queue::default()),
            wake_exporter: Condvar::new(),
            round_done: Condvar::new(),
            batching,
            resource: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, scope: &InstrumentationScope, span: &[u8]) {
        let mut queue = self.lock();
        if queue.stopped {
            return;
        }
        if queue.spans >= self.batching.max_queue {
            queue.dropped += 1;
            if queue
                .last_drop_warning
                .is_none_or(|at| at.elapsed() >= WARN_EVERY)
            {
                queue.last_drop_warning = Some(Instant::now());
                log::warn!(
                    "the trace queue is full ({} spans): spans are dropped until the collector \
                     catches up ({} so far)",
                    self.batching.max_queue,
                    queue.dropped
                );
            }
            return;
        }
        match queue.scopes.iter_mut().find(|(known, _)| known == scope) {
            Some((_, spans)) => spans.extend_from_slice(span),
            None => queue.scopes.push((scope.clone(), span.to_vec())),
        }
        queue.spans += 1;
        if queue.spans == self.batching.batch_size {
            self.wake_exporter.notify_one();
        }
    }

    /// Has the export thread post what is queued, and waits for it (at
    /// most the post's timeout and a schedule delay); with `stop`, the
    /// thread ends after it.
    fn flush(&self, stop: bool) -> OTelSdkResult {
        let mut queue = self.lock();
        if queue.stopped {
            return Ok(());
        }
        queue.flushes_asked += 1;
        queue.stopping |= stop;
        let asked = queue.flushes_asked;
        self.wake_exporter.notify_one();
        let deadline = Instant::now() + self.batching.timeout + self.batching.schedule_delay;
        while queue.flushes_done < asked && !queue.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OTelSdkError::Timeout(
                    self.batching.timeout + self.batching.schedule_delay,
                ));
            }
            queue = self
                .round_done
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }
}

/// The export thread: waits for a full batch, a flush, the end or the
/// schedule delay, then posts everything queued in one request.
fn export_loop(shared: &Shared, collector: &Collector) {
    let mut capacity = 0;
    loop {
        let mut queue = shared.lock();
        let deadline = Instant::now() + shared.batching.schedule_delay;
        loop {
            let asked = queue.flushes_asked > queue.flushes_done || queue.stopping;
            if asked || queue.spans >= shared.batching.batch_size {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = shared
                .wake_exporter
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let scopes = std::mem::take(&mut queue.scopes);
        let spans = std::mem::replace(&mut queue.spans, 0);
        let flush = queue.flushes_asked;
        let stopping = queue.stopping;
        drop(queue);

        if spans > 0 {
            let mut body = Vec::with_capacity(capacity);
            let batches: Vec<ScopeBatch<'_>> = scopes
                .iter()
                .map(|(scope, spans)| ScopeBatch { scope, spans })
                .collect();
            let resource = shared.resource.lock().unwrap_or_else(|e| e.into_inner());
            protobuf::encode_request(&resource, &batches, &mut body);
            drop(resource);
            capacity = capacity.max(body.len());
            collector.post(body, spans);
        }

        let mut queue = shared.lock();
        queue.flushes_done = flush;
        if stopping {
            queue.stopped = true;
            if queue.dropped > 0 {
                log::warn!(
                    "{} spans were dropped: the trace queue was full",
                    queue.dropped
                );
            }
        }
        shared.round_done.notify_all();
        if stopping {
            return;
        }
    }
}

/// Where spans are posted.
struct Collector {
    client: reqwest::blocking::Client,
    url: String,
    headers: HeaderMap,
    last_warning: Mutex<Option<Instant>>,
}

impl Collector {
    fn new(client: reqwest::blocking::Client, url: String) -> Collector {
        Collector {
            client,
            url,
            headers: headers_from_env(),
            last_warning: Mutex::new(None),
        }
    }

    fn post(&self, body: Vec<u8>, spans: usize) {
        let sent = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .map_err(|err| crate::telemetry::error_chain(&err))
            .and_then(|answer| {
                let status = answer.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the collector answered {status}"))
                }
            });
        if let Err(reason) = sent {
            let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                *last = Some(Instant::now());
                log::warn!("the trace collector did not take {spans} spans (dropped): {reason}");
            }
        }
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`:
/// `name=value,name=value`, values percent-encoded. A pair that is not a
/// valid header is left out and named in the log (its name only: values
/// are often tokens).
fn headers_from_env() -> HeaderMap {
    let text = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    parse_headers(&text)
}

fn parse_headers(text: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            log::warn!("OTEL_EXPORTER_OTLP_HEADERS: an entry has no `=`; left out");
            continue;
        };
        let name = name.trim();
        let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
        match (
            HeaderName::try_from(name),
            HeaderValue::try_from(value.as_ref()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => log::warn!("OTEL_EXPORTER_OTLP_HEADERS: header {name:?} is not valid; left out"),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use prost::Message as _;

    use super::*;

    /// A collector on a port the OS picks: every post's decoded body goes
    /// to the receiver.
    fn collector() -> (String, mpsc::Receiver<ExportTraceServiceRequest>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let (posted, received) = mpsc::channel();
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(mut connection) = connection else {
                    return;
                };
                let posted = posted.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(connection.try_clone().unwrap());
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':')
                                && name.eq_ignore_ascii_case("content-length")
                            {
                                length = value.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let request = ExportTraceServiceRequest::decode(body.as_slice())
                            .expect("a valid export request");
                        let _ = posted.send(request);
                        connection
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                    }
                });
            }
        });
        (url, received)
    }

    fn span_names(request: &ExportTraceServiceRequest) -> Vec<String> {
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|span| span.name.clone())
            .collect()
    }

    fn provider(url: String, batching: Batching) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_span_processor(OtlpProcessor::start(url, batching).unwrap())
            .build()
    }

    const AN_HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_full_batch_is_posted_without_waiting_for_the_delay() {
        let (url, posts) = collector();
        let batching = Batching {
            schedule_delay: AN_HOUR,
            batch_size: 3,
            max_queue: 100,
            timeout: Duration::from_secs(10),
        };
        let provider = provider(url, batching);
        let tracer = provider.tracer("keyport");
        for name in ["one", "two", "three"] {
            tracer.start(name).end();
        }
        let post = posts.recv_timeout(Duration::from_secs(30)).expect("a post");
        assert_eq!(span_names(&post), ["one", "two", "three"]);
        let scope = &post.resource_spans[0].scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "keyport");
        provider.shutdown().unwrap();
    }

    #[test]
    fn a_flush_posts_what_waits_and_shutdown_posts_the_rest() {
        let (url, posts) = collector();
        let batching = Batching {
            schedule_delay: AN_HOUR,
            batch_size: 100,
            max_queue: 100,
            timeout: Duration::from_secs(10),
        };
        let provider = provider(url, batching);
        let tracer = provider.tracer("keyport");
        tracer.start("before the flush").end();
        provider.force_flush().unwrap();
        let post = posts
            .try_recv()
            .expect("posted before force_flush returned");
        assert_eq!(span_names(&post), ["before the flush"]);

        tracer.start("before the shutdown").end();
        provider.shutdown().unwrap();
        let post = posts.try_recv().expect("posted before shutdown returned");
        assert_eq!(span_names(&post), ["before the shutdown"]);
        // Nothing is taken after the shutdown.
        tracer.start("after").end();
        assert!(posts.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn spans_past_the_queue_are_dropped_and_counted() {
        let shared = Shared::new(Batching {
            schedule_delay: AN_HOUR,
            batch_size: 5,
            max_queue: 5,
            timeout: Duration::from_secs(1),
        });
        let scope = InstrumentationScope::builder("keyport").build();
        for _ in 0..7 {
            shared.enqueue(&scope, b"span");
        }
        let queue = shared.lock();
        assert_eq!((queue.spans, queue.dropped), (5, 2));
        assert_eq!(queue.scopes[0].1, b"span".repeat(5));
    }

    #[test]
    fn the_standard_variables_set_the_batching_and_bad_values_keep_the_defaults() {
        let defaults = Batching {
            schedule_delay: Duration::from_secs(5),
            batch_size: 2048,
            max_queue: 16384,
            timeout: Duration::from_secs(10),
        };
        let read = Batching::from_variables(defaults, |name| {
            match name {
                "OTEL_BSP_SCHEDULE_DELAY" => Some("250"),
                "OTEL_BSP_MAX_QUEUE_SIZE" => Some(" 1000 "),
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some("lots"),
                _ => None,
            }
            .map(str::to_owned)
        });
        assert_eq!(read.schedule_delay, Duration::from_millis(250));
        assert_eq!(read.max_queue, 1000);
        // The batch keeps its default, and is no larger than the queue.
        assert_eq!(read.batch_size, 1000);
    }

    #[test]
    fn headers_come_from_the_standard_variable_and_bad_ones_are_left_out() {
        let headers = parse_headers(
            "authorization=Bearer%20abc%3D%3D, x-tenant = one ,bad name=x,novalue,,x-empty=",
        );
        assert_eq!(headers["authorization"], "Bearer abc==");
        assert_eq!(headers["x-tenant"], "one");
        assert_eq!(headers["x-empty"], "");
        assert_eq!(headers.len(), 3);
    }
}
