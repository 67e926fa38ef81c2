//! What the tests share: `spawn_app` (the real application on port 0 with
//! a database of its own, a fresh SQLite file or PostgreSQL database), the
//! people and keys tests act as, HTTP calls, the `keyport` binary as the
//! operator runs it, and waiting for what another process changes.

mod app;
mod certificates;
mod cli;
mod clients;
mod database;
mod http;
mod jwt;
mod management;
mod people;
mod served;
mod wait;
mod webhooks;

pub use app::*;
pub use certificates::*;
pub use cli::*;
pub use clients::*;
pub use database::*;
pub use http::*;
pub use jwt::*;
pub use management::*;
pub use people::*;
pub use served::*;
pub use wait::*;
pub use webhooks::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` once per backend, as
/// `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}
