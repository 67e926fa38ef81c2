//! What the server tells its operators: log lines, the request each line
//! belongs to, and metrics.

mod logging;
mod metrics;
mod otlp;
pub mod request;
pub mod traces;

pub use logging::{LogFormat, init as init_logging, set_format as set_log_format};
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
