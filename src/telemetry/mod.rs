//! What the server tells its operators: log lines and metrics.

mod metrics;

pub use metrics::Metrics;

/// `err: cause: cause…`, for log lines.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
