//! Prometheus metrics, served as text at `GET /metrics`: tokens issued and
//! refused (by RFC 6749 error code), request latency per route, active keys
//! and database pool use, and the per-key rate limiter's series (refusals,
//! checks made in memory because Redis failed, whether Redis answers), the
//! build (`keyport_build_info`) and the process (CPU, memory, open files,
//! start time). A scrape reads no database: the gauges that need one are
//! set by a background task ([`Metrics::set_active_keys`]).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub tokens_issued: IntCounter,
    pub tokens_refused: IntCounterVec,
    pub request_duration: HistogramVec,
    active_keys: IntGaugeVec,
    pool_connections: IntGaugeVec,
    /// Webhook delivery attempts by outcome: delivered, retry, failed.
    pub webhook_deliveries: IntCounterVec,
    pub webhook_queue_depth: IntGauge,
    pub webhook_oldest_pending_seconds: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let tokens_issued = IntCounter::new("keyport_tokens_issued_total", "Access tokens issued")?;
        let tokens_refused = IntCounterVec::new(
            Opts::new(
                "keyport_tokens_refused_total",
                "Token requests refused, by OAuth error code",
            ),
            &["reason"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "keyport_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method", "status"],
        )?;
        let active_keys = IntGaugeVec::new(
            Opts::new(
                "keyport_active_keys",
                "Keys that are neither revoked nor expired",
            ),
            &[],
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "keyport_db_pool_connections",
                "Database pool connections by state",
            ),
            &["state"],
        )?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "keyport_webhook_deliveries_total",
                "Webhook delivery attempts, by outcome (delivered, retry, failed)",
            ),
            &["outcome"],
        )?;
        let webhook_queue_depth = IntGauge::new(
            "keyport_webhook_queue_depth",
            "Webhook deliveries pending (due now or waiting for a retry)",
        )?;
        let webhook_oldest_pending_seconds = IntGauge::new(
            "keyport_webhook_oldest_pending_seconds",
            "Age of the oldest pending webhook delivery",
        )?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        registry.register(Box::new(webhook_queue_depth.clone()))?;
        registry.register(Box::new(webhook_oldest_pending_seconds.clone()))?;
        registry.register(Box::new(tokens_issued.clone()))?;
        registry.register(Box::new(tokens_refused.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(active_keys.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "keyport_build_info",
                "Always 1; its labels say which build of Keyport runs",
            ),
            &["version", "commit"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("KEYPORT_COMMIT")])
            .set(1);
        registry.register(Box::new(build_info))?;
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, process_max_fds, process_start_time_seconds…,
        // read from /proc at each scrape.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            tokens_issued,
            tokens_refused,
            request_duration,
            active_keys,
            pool_connections,
            webhook_deliveries,
            webhook_queue_depth,
            webhook_oldest_pending_seconds,
        })
    }

    /// Serves series kept elsewhere (the rate limiter owns its counters,
    /// so the service layer needs no handle on this registry).
    pub fn register_rate_limits(
        &self,
        refused: &IntCounter,
        fallbacks: &IntCounter,
        redis_available: &IntGauge,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(Box::new(refused.clone()))?;
        self.registry.register(Box::new(fallbacks.clone()))?;
        self.registry.register(Box::new(redis_available.clone()))?;
        Ok(())
    }

    /// Serves the series a collector computes when scraped (the
    /// credential cache reads its gauges then).
    pub fn register_collector(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// Records one request. `route` is the matched pattern (never the raw
    /// path, so ids do not explode the label set).
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.request_duration
            .with_label_values(&[route, method, &status.to_string()])
            .observe(seconds);
    }

    /// Set by the background refresher, never by a scrape.
    pub fn set_active_keys(&self, active: i64) {
        self.active_keys
            .with_label_values(&[] as &[&str])
            .set(active);
    }

    /// The text exposition. The pool gauges are read from the pool itself,
    /// not from the database.
    pub fn render(&self, pool_size: u32, pool_idle: usize) -> String {
        let idle = i64::try_from(pool_idle).unwrap_or(i64::MAX);
        self.pool_connections.with_label_values(&["idle"]).set(idle);
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(i64::from(pool_size) - idle);
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
