//! What every HTTP handler may reach, the API's (`routes/`) and the
//! console's alike: built once by `startup`, shared as `web::Data`.

use std::sync::Arc;

use crate::service::Service;
use crate::storage::PushQueue;
use crate::telemetry::Metrics;
use crate::tokens::KeyRing;

pub struct AppState {
    /// The rules, and what they reach (database, settings, throttles).
    pub service: Service,
    pub keys: Arc<KeyRing>,
    pub metrics: Arc<Metrics>,
    pub pushes: PushQueue,
}

/// Marks the app serving `metrics_bind`: with that setting, `/metrics` is
/// answered there only.
pub struct MetricsListener;
