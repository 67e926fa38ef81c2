//! Settings: defaults, layering and refusals.

use super::*;

#[test]
fn unknown_keyport_variables_are_named_with_the_closest_known_one() {
    let env = [
        "KEYPORT_TOKEN_TTL",
        "KEYPORT_DATABSE_URL",
        "KEYPORT_COLOUR",
        "KEYPORT_TOKEN_TTL_SECONDS",
        "KEYPORT_MASTER_KEY",
        "KEYPORT_CONFIG",
        "PATH",
    ]
    .map(String::from);
    assert_eq!(
        unknown_env_vars(env),
        vec![
            ("KEYPORT_COLOUR".to_owned(), None),
            (
                "KEYPORT_DATABSE_URL".to_owned(),
                Some("KEYPORT_DATABASE_URL".to_owned())
            ),
            (
                "KEYPORT_TOKEN_TTL".to_owned(),
                Some("KEYPORT_TOKEN_TTL_SECONDS".to_owned())
            ),
        ]
    );
    // Every key of default.toml is known, so loading it never warns.
    assert!(known_env_vars().contains(&"KEYPORT_REDIS_URL".to_owned()));
    assert!(known_env_vars().contains(&"KEYPORT_BIND".to_owned()));
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_load_without_any_file_or_environment() {
    let settings = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(settings.bind, "127.0.0.1:8080");
    assert_eq!(settings.database.url, "sqlite://data/keyport.db");
    assert_eq!(settings.tokens.default_ttl, Duration::from_secs(600));
    assert_eq!(settings.tokens.max_ttl, Duration::from_secs(3600));
    assert_eq!(settings.max_active_keys_per_user, 3);
    assert_eq!(settings.tokens.signing_algorithm, SigningAlgorithm::Es256);
    assert_eq!(settings.request_timeout, Duration::from_secs(10));
    assert_eq!(settings.keep_alive, Some(Duration::from_secs(30)));
}

#[test]
fn http_timeouts_are_configurable_and_keep_alive_may_be_off() {
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_REQUEST_TIMEOUT_SECONDS", "2"),
            ("KEYPORT_KEEP_ALIVE_SECONDS", "0"),
        ]),
    )
    .expect("timeouts load");
    assert_eq!(settings.request_timeout, Duration::from_secs(2));
    assert_eq!(settings.keep_alive, None);
    let err = Settings::load_from(None, env(&[("KEYPORT_REQUEST_TIMEOUT_SECONDS", "0")]))
        .expect_err("no request timeout");
    assert!(err.to_string().contains("request_timeout_seconds"), "{err}");
}

#[test]
fn environment_variables_override_the_defaults() {
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_DATABASE_URL", "postgres://root@127.0.0.1/test"),
            ("KEYPORT_BIND", "0.0.0.0:0"),
            ("KEYPORT_TOKEN_TTL_SECONDS", "120"),
            ("KEYPORT_SIGNING_ALGORITHM", "RS256"),
            ("KEYPORT_MAX_ACTIVE_KEYS_PER_USER", "5"),
        ]),
    )
    .expect("overrides load");
    assert_eq!(settings.database.url, "postgres://root@127.0.0.1/test");
    assert_eq!(settings.bind, "0.0.0.0:0");
    assert_eq!(settings.tokens.default_ttl, Duration::from_secs(120));
    assert_eq!(settings.tokens.signing_algorithm, SigningAlgorithm::Rs256);
    assert_eq!(settings.max_active_keys_per_user, 5);
}

#[test]
fn webhook_endpoint_limits_default_to_5_per_user_within_50_per_company() {
    let settings = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(settings.webhooks.max_endpoints_per_owner, 5);
    assert_eq!(settings.webhooks.max_endpoints_per_tenant, 50);
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_OWNER", "2"),
            ("KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_TENANT", "3"),
        ]),
    )
    .expect("overrides load");
    assert_eq!(settings.webhooks.max_endpoints_per_owner, 2);
    assert_eq!(settings.webhooks.max_endpoints_per_tenant, 3);
    // Tried: no endpoint at all, a company limit below the user limit,
    // a negative number.
    for (key, value, named) in [
        (
            "KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_OWNER",
            "0",
            "webhook_max_endpoints_per_owner",
        ),
        (
            "KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_TENANT",
            "4",
            "webhook_max_endpoints_per_tenant",
        ),
        (
            "KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_OWNER",
            "-1",
            "webhook_max_endpoints_per_owner",
        ),
    ] {
        let err = Settings::load_from(None, env(&[(key, value)])).expect_err(value);
        assert!(
            format!("{err} {err:?}").contains(named),
            "{key}={value}: {err:?}"
        );
    }
}

#[test]
fn without_an_issuer_the_bind_address_is_the_issuer_until_the_server_binds() {
    let settings =
        Settings::load_from(None, env(&[("KEYPORT_BIND", "127.0.0.1:9999")])).expect("loads");
    assert!(!settings.tokens.issuer_configured);
    assert_eq!(settings.tokens.issuer, "http://127.0.0.1:9999");
    let settings = Settings::load_from(
        None,
        env(&[("KEYPORT_ISSUER", "https://auth.example.com/")]),
    )
    .expect("loads");
    assert!(settings.tokens.issuer_configured);
    assert_eq!(settings.tokens.issuer, "https://auth.example.com");
    let err = Settings::load_from(None, env(&[("KEYPORT_ISSUER", "auth.example.com")]))
        .expect_err("not a URL");
    assert!(err.to_string().contains("issuer"), "{err}");
}

#[test]
fn tls_needs_both_files_and_proxies_are_cidr_ranges() {
    let err = Settings::load_from(None, env(&[("KEYPORT_TLS_CERT_FILE", "cert.pem")]))
        .expect_err("half a TLS setup");
    assert!(err.to_string().contains("tls_key_file"), "{err}");
    let settings = Settings::load_from(
        None,
        env(&[("KEYPORT_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1/128")]),
    )
    .expect("loads");
    assert_eq!(settings.security.trusted_proxies.len(), 3);
    let err = Settings::load_from(None, env(&[("KEYPORT_TRUSTED_PROXIES", "10.0.0.0/33")]))
        .expect_err("bad prefix");
    assert!(err.to_string().contains("trusted_proxies"), "{err}");
}

#[test]
fn the_longest_roll_grace_defaults_to_a_week_and_must_be_positive() {
    let settings = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(settings.max_roll_grace, Duration::from_secs(7 * 24 * 3600));
    let settings = Settings::load_from(None, env(&[("KEYPORT_MAX_ROLL_GRACE_SECONDS", "3600")]))
        .expect("override loads");
    assert_eq!(settings.max_roll_grace, Duration::from_secs(3600));
    let err = Settings::load_from(None, env(&[("KEYPORT_MAX_ROLL_GRACE_SECONDS", "0")]))
        .expect_err("no grace at all");
    assert!(err.to_string().contains("max_roll_grace_seconds"), "{err}");
}

#[test]
fn redis_is_off_by_default_and_its_url_and_timeout_are_checked() {
    let settings = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(settings.rate_limits.redis_url, None);
    assert_eq!(settings.rate_limits.redis_key_prefix, "keyport:");
    assert_eq!(
        settings.rate_limits.redis_timeout,
        Duration::from_millis(100)
    );
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/2"),
            ("KEYPORT_REDIS_KEY_PREFIX", "acme:"),
            ("KEYPORT_REDIS_TIMEOUT_MS", "250"),
        ]),
    )
    .expect("redis settings load");
    assert_eq!(
        settings.rate_limits.redis_url.as_deref(),
        Some("redis://:hunter2@127.0.0.1:6379/2")
    );
    assert_eq!(settings.rate_limits.redis_key_prefix, "acme:");
    assert_eq!(
        settings.rate_limits.redis_timeout,
        Duration::from_millis(250)
    );
    assert!(
        !format!("{settings:?}").contains("hunter2"),
        "the Redis password is not printed"
    );
    let err = Settings::load_from(None, env(&[("KEYPORT_REDIS_URL", "localhost:6379")]))
        .expect_err("not a redis URL");
    assert!(err.to_string().contains("redis_url"), "{err}");
    let err = Settings::load_from(None, env(&[("KEYPORT_REDIS_TIMEOUT_MS", "0")]))
        .expect_err("no time at all");
    assert!(err.to_string().contains("redis_timeout_ms"), "{err}");
}

#[test]
fn sigv4_defaults_to_us_east_1_keyport_and_fifteen_minutes() {
    let settings = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(settings.sigv4.region, "us-east-1");
    assert_eq!(settings.sigv4.service, "keyport");
    assert_eq!(settings.sigv4.max_skew, Duration::from_secs(900));
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_SIGV4_REGION", "ap-southeast-1"),
            ("KEYPORT_SIGV4_SERVICE", "sqlaccount"),
            ("KEYPORT_SIGV4_MAX_SKEW_SECONDS", "300"),
        ]),
    )
    .expect("overrides load");
    assert_eq!(settings.sigv4.region, "ap-southeast-1");
    assert_eq!(settings.sigv4.service, "sqlaccount");
    assert_eq!(settings.sigv4.max_skew, Duration::from_secs(300));
    for (key, value) in [
        ("KEYPORT_SIGV4_REGION", "us/east"),
        ("KEYPORT_SIGV4_SERVICE", ""),
        ("KEYPORT_SIGV4_MAX_SKEW_SECONDS", "0"),
    ] {
        let err = Settings::load_from(None, env(&[(key, value)])).expect_err(key);
        assert!(
            err.to_string()
                .contains(&key.trim_start_matches("KEYPORT_").to_lowercase()),
            "{err}"
        );
    }
}

#[test]
fn dpop_defaults_to_five_minutes_without_nonces_and_is_checked() {
    let settings = Settings::load_from(None, Vec::new()).unwrap();
    assert_eq!(settings.dpop.max_age, Duration::from_secs(300));
    assert_eq!(settings.dpop.leeway, Duration::from_secs(10));
    assert!(!settings.dpop.require_nonce);
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_DPOP_REQUIRE_NONCE", "true"),
            ("KEYPORT_DPOP_MAX_AGE_SECONDS", "60"),
        ]),
    )
    .unwrap();
    assert!(settings.dpop.require_nonce);
    assert_eq!(settings.dpop.max_age, Duration::from_secs(60));
    let err = Settings::load_from(None, env(&[("KEYPORT_DPOP_MAX_AGE_SECONDS", "0")])).unwrap_err();
    assert!(err.to_string().contains("dpop_max_age_seconds"), "{err}");
}

#[test]
fn a_default_ttl_above_the_maximum_is_refused() {
    let err = Settings::load_from(None, env(&[("KEYPORT_TOKEN_TTL_SECONDS", "7200")]))
        .expect_err("ttl above max");
    assert!(err.to_string().contains("token_ttl_seconds"), "{err}");
}

#[test]
fn an_unknown_algorithm_is_refused_with_the_allowed_list() {
    let err = Settings::load_from(None, env(&[("KEYPORT_SIGNING_ALGORITHM", "HS256")]))
        .expect_err("hmac refused");
    assert!(err.to_string().contains("ES256"), "{err}");
}

#[test]
fn a_non_numeric_ttl_is_a_clear_error() {
    let err = Settings::load_from(None, env(&[("KEYPORT_TOKEN_TTL_SECONDS", "ten")]))
        .expect_err("not a number");
    let message = crate::telemetry::error_chain(&err);
    assert!(message.contains("token_ttl_seconds"), "{message}");
}

#[test]
fn logs_and_metrics_settings_are_parsed_and_wrong_ones_refused() {
    let settings = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(settings.observability.log_format, LogFormat::Text);
    assert_eq!(settings.observability.metrics_bind, None);
    assert_eq!(
        settings.observability.metrics_refresh,
        Duration::from_secs(15)
    );
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_LOG_FORMAT", "JSON"),
            ("KEYPORT_METRICS_BIND", "127.0.0.1:9090"),
            ("KEYPORT_METRICS_REFRESH_SECONDS", "60"),
        ]),
    )
    .expect("loads");
    assert_eq!(settings.observability.log_format, LogFormat::Json);
    assert_eq!(
        settings.observability.metrics_bind.as_deref(),
        Some("127.0.0.1:9090")
    );
    assert_eq!(
        settings.observability.metrics_refresh,
        Duration::from_secs(60)
    );
    // Tried: a format that does not exist, an address without a port, a
    // refresh of zero and one of more than an hour.
    for (key, value, named) in [
        ("KEYPORT_LOG_FORMAT", "yaml", "log_format"),
        ("KEYPORT_METRICS_BIND", "localhost", "metrics_bind"),
        (
            "KEYPORT_METRICS_REFRESH_SECONDS",
            "0",
            "metrics_refresh_seconds",
        ),
        (
            "KEYPORT_METRICS_REFRESH_SECONDS",
            "3601",
            "metrics_refresh_seconds",
        ),
    ] {
        let err = Settings::load_from(None, env(&[(key, value)])).expect_err(value);
        assert!(err.to_string().contains(named), "{value}: {err}");
    }
}

#[test]
fn traces_are_off_by_default_and_a_wrong_collector_or_ratio_is_refused() {
    let settings = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(settings.observability.traces.otlp_endpoint, None);
    assert_eq!(settings.observability.traces.sample_ratio, 1.0);
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_OTLP_ENDPOINT", "http://collector:4318"),
            ("KEYPORT_TRACE_SAMPLE_RATIO", "0.25"),
        ]),
    )
    .expect("loads");
    assert_eq!(
        settings.observability.traces.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    assert_eq!(settings.observability.traces.sample_ratio, 0.25);
    // Tried: not a URL, another scheme, no host, credentials in the URL (they
    // would reach the logs), a query, a ratio above 1, a negative one and a
    // word.
    for (key, value, named) in [
        ("KEYPORT_OTLP_ENDPOINT", "collector:4318", "otlp_endpoint"),
        (
            "KEYPORT_OTLP_ENDPOINT",
            "grpc://collector:4317",
            "otlp_endpoint",
        ),
        ("KEYPORT_OTLP_ENDPOINT", "http://", "otlp_endpoint"),
        (
            "KEYPORT_OTLP_ENDPOINT",
            "https://user:hunter2@collector:4318",
            "otlp_endpoint",
        ),
        (
            "KEYPORT_OTLP_ENDPOINT",
            "https://collector:4318/?token=x",
            "otlp_endpoint",
        ),
        ("KEYPORT_TRACE_SAMPLE_RATIO", "1.5", "trace_sample_ratio"),
        ("KEYPORT_TRACE_SAMPLE_RATIO", "-0.1", "trace_sample_ratio"),
        ("KEYPORT_TRACE_SAMPLE_RATIO", "half", "trace_sample_ratio"),
    ] {
        let err = Settings::load_from(None, env(&[(key, value)])).expect_err(value);
        let message = crate::telemetry::error_chain(&err);
        assert!(message.contains(named), "{value}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[test]
fn serving_stale_keys_through_an_outage_defaults_to_30_seconds_and_is_checked() {
    let settings = Settings::load_from(None, Vec::new()).unwrap();
    assert_eq!(
        settings.credential_cache.serve_stale,
        Duration::from_secs(30)
    );
    let settings = Settings::load_from(
        None,
        env(&[("KEYPORT_CREDENTIAL_CACHE_SERVE_STALE_SECONDS", "0")]),
    )
    .unwrap();
    assert_eq!(settings.credential_cache.serve_stale, Duration::ZERO);
    let err = Settings::load_from(
        None,
        env(&[("KEYPORT_CREDENTIAL_CACHE_SERVE_STALE_SECONDS", "3601")]),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("credential_cache_serve_stale_seconds"),
        "{err}"
    );
}

#[test]
fn the_dpop_replay_store_is_auto_by_default_and_redis_needs_a_url() {
    use crate::config::DpopReplayStore;
    let settings = Settings::load_from(None, Vec::new()).unwrap();
    assert_eq!(settings.dpop.replay_store, DpopReplayStore::Auto);
    for (value, want) in [
        ("memory", DpopReplayStore::Memory),
        ("database", DpopReplayStore::Database),
    ] {
        let settings =
            Settings::load_from(None, env(&[("KEYPORT_DPOP_REPLAY_STORE", value)])).unwrap();
        assert_eq!(settings.dpop.replay_store, want);
    }
    let settings = Settings::load_from(
        None,
        env(&[
            ("KEYPORT_DPOP_REPLAY_STORE", "redis"),
            ("KEYPORT_REDIS_URL", "redis://127.0.0.1:6379"),
        ]),
    )
    .unwrap();
    assert_eq!(settings.dpop.replay_store, DpopReplayStore::Redis);
    let err =
        Settings::load_from(None, env(&[("KEYPORT_DPOP_REPLAY_STORE", "redis")])).unwrap_err();
    assert!(err.to_string().contains("redis_url"), "{err}");
    let err = Settings::load_from(None, env(&[("KEYPORT_DPOP_REPLAY_STORE", "disk")])).unwrap_err();
    assert!(err.to_string().contains("dpop_replay_store"), "{err}");
}
