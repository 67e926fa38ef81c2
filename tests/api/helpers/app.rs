//! `spawn_app`: the real application on port 0 with a database of its
//! own, and the typed client every test drives it with.

use std::time::Duration;

use keyport::config::Settings;
use keyport::service::Service;
use keyport::startup::Application;
use keyport::storage::Store;

use super::{Backend, TestDatabase, master_key_env};

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub store: Store,
    pub settings: Settings,
    pub db: std::sync::Arc<TestDatabase>,
    /// The running application's (see [`TestApp::service`]).
    pub service: Service,
}

pub fn settings_for(url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("KEYPORT_DATABASE_URL".into(), url.to_owned()),
        ("KEYPORT_BIND".into(), "127.0.0.1:0".into()),
        ("KEYPORT_WORKERS".into(), "1".into()),
        ("KEYPORT_DATABASE_MAX_CONNECTIONS".into(), "5".into()),
    ];
    env.extend(master_key_env(url));
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Settings::load_from(None, env).expect("test settings load")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let db = std::sync::Arc::new(TestDatabase::create(backend).await);
    spawn_app_on(db, overrides).await
}

/// Starts another instance (or a restart) of `app` on its database: it
/// shares `app`'s issuer, as instances of one deployment do.
pub async fn spawn_sibling(app: &TestApp, overrides: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("KEYPORT_ISSUER", app.settings.tokens.issuer.as_str())];
    all.extend_from_slice(overrides);
    spawn_app_on(app.db.clone(), &all).await
}

/// Starts an application on an existing test database.
pub async fn spawn_app_on(db: std::sync::Arc<TestDatabase>, overrides: &[(&str, &str)]) -> TestApp {
    let settings = settings_for(&db.url, overrides);
    let store = Store::connect_and_migrate(&settings.database)
        .await
        .expect("connect to the test database");
    let app = Application::build_with_store(settings.clone(), store.clone())
        .await
        .expect("build the application");
    let port = app.port();
    // The issuer follows the port the OS picked unless a test set one.
    let settings = app.settings().clone();
    let service = app.service();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        store,
        settings,
        db,
        service,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The running application's service layer: what is changed through it
    /// is changed by this instance, whose credential cache forgets it at once
    /// (another process, like the CLI, is heard within a second).
    pub fn service(&self) -> Service {
        self.service.clone()
    }
}

/// The whole error chain of a start on `settings` that must fail (`why`
/// says what would be wrong with starting).
pub async fn startup_error(settings: Settings, why: &str) -> String {
    let store = Store::connect_and_migrate(&settings.database)
        .await
        .expect("the store opens: nothing is read yet");
    let Err(err) = Application::build_with_store(settings, store).await else {
        panic!("started {why}");
    };
    keyport::telemetry::error_chain(&err)
}
