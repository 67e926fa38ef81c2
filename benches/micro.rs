//! Micro costs behind the token endpoint and the protected routes, side by
//! side in one run: signing an access token (ES256, EdDSA, RS256) as the
//! server does (key parsed once) and as `jsonwebtoken::encode` does (key
//! parsed on every call, the server's way before), verifying
//! one (first sight, and a token the verifier has already seen), hashing a
//! client secret, parsing a valid and a malformed secret; the per-key
//! rate-limit check of the report and webhook APIs: a key without a rate
//! (the unlimited path), the check in memory (one key, and spread over
//! 10,000 keys), and the check in Redis (127.0.0.1:6379; skipped, saying
//! so, when no Redis answers there); and checking an AWS Signature Version 4
//! (parse and canonicalise the request, derive the signing key, verify),
//! beside a token's verification.
//! so, when no Redis answers there). The credential cache: what a hit costs
//! beyond the map lookup (the key's standing checked, its scopes parsed,
//! the answer cloned), and one SQLite change poll that finds nothing.
//! Counting one answer for a key's usage.
//!
//! `cargo bench --bench micro` (about 40 s of measuring); `benches/load.sh`
//! runs it after the HTTP load test and copies the means into its report.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::Header;
use jsonwebtoken::jwk::JwkSet;
use keyport::config::RateLimitSettings;
use keyport::domain::sigv4::{
    Expectation, Presentation, RequestParts, SignedRequest, Sigv4SigningKey, format_amz_date,
    sha256_hex, string_to_sign,
};
use keyport::domain::{ClientSecret, Credential, Principal, RateLimit, now};
use keyport::service::rate_limit::RateLimiter;
use keyport::tokens::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, SigningAlgorithm, SigningKey, TokenVerifier,
};

const ISSUER: &str = "http://127.0.0.1:8080";
const AUDIENCE: &str = "keyport-api";
const ALGORITHMS: [SigningAlgorithm; 3] = [
    SigningAlgorithm::Es256,
    SigningAlgorithm::EdDsa,
    SigningAlgorithm::Rs256,
];

/// Claims shaped like the ones `POST /oauth/token` issues.
fn claims() -> AccessTokenClaims {
    let issued_at = now();
    AccessTokenClaims {
        iss: ISSUER.to_owned(),
        sub: "0196f3a0-0000-7000-8000-000000000001".to_owned(),
        aud: AUDIENCE.to_owned(),
        // Valid for the whole run, however slow the machine.
        exp: issued_at + 3600,
        iat: issued_at,
        nbf: issued_at,
        jti: "5f0c2a8e-3a43-4c55-9a57-3f1d2b1c0e7a".to_owned(),
        client_id: "kpc_0123456789ABCDEFGHIJabcd".to_owned(),
        scope: "keys:manage reports:read webhooks:write".to_owned(),
        tenant_id: "0196f3a0-0000-7000-8000-000000000002".to_owned(),
        roles: vec!["admin".to_owned()],
        kp_src: Vec::new(),
        kp_rl: None,
        act: None,
        cnf: None,
    }
}

/// The header `SigningKey::sign` writes: `alg`, `typ: at+jwt`, `kid`.
fn header(key: &SigningKey) -> Header {
    let mut header = Header::new(key.algorithm.jwt_algorithm());
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid.clone());
    header
}

fn sign(key: &SigningKey, claims: &AccessTokenClaims) -> String {
    key.sign(claims).expect("signing succeeds")
}

fn tokens(c: &mut Criterion) {
    let claims = claims();
    let keys: Vec<SigningKey> = ALGORITHMS
        .iter()
        .map(|&alg| SigningKey::generate(alg).expect("key generation").0)
        .collect();

    let mut group = c.benchmark_group("sign");
    for key in &keys {
        group.bench_function(key.algorithm.as_str(), |b| {
            b.iter(|| sign(key, black_box(&claims)))
        });
        let header = header(key);
        group.bench_function(format!("{} jsonwebtoken::encode", key.algorithm), |b| {
            b.iter(|| {
                jsonwebtoken::encode(black_box(&header), black_box(&claims), &key.encoding)
                    .expect("signing succeeds")
            })
        });
    }
    group.finish();

    // The verifier (keyport-verify's) remembers tokens it has verified
    // (until they expire), so `verify/<alg>` gives every iteration a fresh verifier: the
    // first sight of a token, signature check included. `verify/cached`
    // is a token the verifier has seen: what a reused token costs.
    let mut group = c.benchmark_group("verify");
    for key in &keys {
        let token = sign(key, &claims);
        let jwks = JwkSet {
            keys: vec![key.jwk.clone()],
        };
        let fresh = || TokenVerifier::from_jwks(&jwks, ISSUER, AUDIENCE, Duration::from_secs(30));
        let verified = fresh().verify(&token).expect("the signed token verifies");
        assert_eq!(
            verified.claims, claims,
            "verification round-trips the claims"
        );
        group.bench_function(key.algorithm.as_str(), |b| {
            b.iter_batched_ref(
                fresh,
                |verifier| verifier.verify(black_box(&token)).expect("verifies"),
                BatchSize::SmallInput,
            )
        });
    }
    let key = &keys[0];
    let token = sign(key, &claims);
    let jwks = JwkSet {
        keys: vec![key.jwk.clone()],
    };
    let verifier = TokenVerifier::from_jwks(&jwks, ISSUER, AUDIENCE, Duration::from_secs(30));
    verifier.verify(&token).expect("verifies");
    group.bench_function("cached", |b| {
        b.iter(|| verifier.verify(black_box(&token)).expect("verifies"))
    });
    group.finish();
}

fn secrets(c: &mut Criterion) {
    let secret = ClientSecret::generate();
    let valid = secret.expose().to_owned();
    // Right shape, one character changed: the checksum has to be computed to
    // refuse it, the most work a malformed secret can cause.
    let mut bad_checksum = valid.clone().into_bytes();
    bad_checksum[10] = if bad_checksum[10] == b'a' { b'b' } else { b'a' };
    let bad_checksum = String::from_utf8(bad_checksum).expect("ASCII");
    // Wrong length: refused by the first comparison.
    let truncated = valid[..valid.len() - 1].to_owned();
    assert!(ClientSecret::parse(&valid).is_ok());
    assert!(ClientSecret::parse(&bad_checksum).is_err());
    assert!(ClientSecret::parse(&truncated).is_err());

    let mut group = c.benchmark_group("secret");
    group.bench_function("generate", |b| b.iter(ClientSecret::generate));
    group.bench_function("digest", |b| b.iter(|| black_box(&secret).digest()));
    group.bench_function("parse_valid", |b| {
        b.iter(|| ClientSecret::parse(black_box(&valid)))
    });
    group.bench_function("parse_bad_checksum", |b| {
        b.iter(|| ClientSecret::parse(black_box(&bad_checksum)))
    });
    group.bench_function("parse_truncated", |b| {
        b.iter(|| ClientSecret::parse(black_box(&truncated)))
    });
    group.finish();
}

/// A caller presenting a token of `client_id`, with the rate its `kp_rl`
/// claim carries.
fn token_caller(client_id: &str, rate_limit: Option<RateLimit>) -> Principal {
    let mut principal = Principal::operator();
    principal.credential = Credential::AccessToken {
        jti: "5f0c2a8e-3a43-4c55-9a57-3f1d2b1c0e7a".to_owned(),
        client_id: client_id.to_owned(),
        expires_at: now() + 3600,
        rate_limit,
    };
    principal
}

fn limiter(redis_url: Option<&str>) -> RateLimiter {
    RateLimiter::new(&RateLimitSettings {
        redis_url: redis_url.map(str::to_owned),
        redis_key_prefix: format!("keyport-bench-{}:", uuid::Uuid::new_v4().simple()),
        redis_timeout: Duration::from_millis(100),
    })
}

/// What `RateLimiter::admit` costs a report or webhook request, the way
/// the handlers call it (async, on a Tokio runtime), side by side: the
/// unlimited path first, so the others read as its multiples.
fn rate_limits(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    // Fast enough that most checks are allowed; a refusal costs the same
    // work, less one write.
    let rate = RateLimit::new(1_000_000, 1, Some(10_000)).expect("a valid rate");
    let unlimited = token_caller("kpc_0123456789ABCDEFGHIJabcd", None);
    let limited = token_caller("kpc_0123456789ABCDEFGHIJabcd", Some(rate));
    let many: Vec<Principal> = (0..10_000)
        .map(|n| token_caller(&format!("kpc_{n:024}"), Some(rate)))
        .collect();
    let memory = limiter(None);
    let redis = limiter(Some("redis://127.0.0.1:6379"));

    let mut group = c.benchmark_group("rate_limit");
    // Many awaits per sample: timing each one alone would measure the clock.
    let mut bench = |name: &str, limiter: &RateLimiter, callers: &[Principal]| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for n in 0..iters as usize {
                        let caller = &callers[n % callers.len()];
                        let _ = black_box(limiter.admit(black_box(caller)).await);
                    }
                    started.elapsed()
                })
            })
        });
    };
    bench("unlimited", &memory, std::slice::from_ref(&unlimited));
    bench("memory", &memory, std::slice::from_ref(&limited));
    bench("memory_10000_keys", &memory, &many);
    let redis_answers = runtime.block_on(async {
        redis.check("kpc_probe", rate).await;
        redis.counters().fallbacks.get() == 0
    });
    if redis_answers {
        bench("redis", &redis, std::slice::from_ref(&limited));
    } else {
        eprintln!("rate_limit/redis skipped: no Redis answers at 127.0.0.1:6379");
    }
    group.finish();
}

/// A SigV4-signed `GET /api/v1/whoami` as curl sends it, and the secret.
fn signed_whoami() -> (Vec<(String, Vec<u8>)>, String, UnixSeconds) {
    let secret = ClientSecret::generate().expose().to_owned();
    let at = now();
    let date = format_amz_date(at);
    let scope = keyport::domain::sigv4::CredentialScope {
        date: date[..8].to_owned().into(),
        region: "us-east-1".into(),
        service: "keyport".into(),
    };
    let canonical = format!(
        "GET\n/api/v1/whoami\n\nhost:127.0.0.1:8080\nx-amz-date:{date}\n\nhost;x-amz-date\n{}",
        sha256_hex(b"")
    );
    let signature =
        Sigv4SigningKey::derive(&secret, &scope).sign(&string_to_sign(&date, &scope, &canonical));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=kpc_0123456789ABCDEFGHIJabcd/{}/us-east-1/keyport/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={signature}",
        &date[..8]
    );
    let headers = vec![
        ("host".to_owned(), b"127.0.0.1:8080".to_vec()),
        ("user-agent".to_owned(), b"curl/7.88.1".to_vec()),
        ("accept".to_owned(), b"*/*".to_vec()),
        ("authorization".to_owned(), authorization.into_bytes()),
        ("x-amz-date".to_owned(), date.into_bytes()),
    ];
    (headers, secret, at)
}

type UnixSeconds = i64;

fn sigv4(c: &mut Criterion) {
    let (headers, secret, at) = signed_whoami();
    let borrowed: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let empty = sha256_hex(b"");
    let parts = RequestParts {
        method: "GET",
        path: "/api/v1/whoami",
        query: "",
        headers: &borrowed,
        body_sha256: &empty,
    };
    let expect = Expectation {
        region: "us-east-1",
        service: "keyport",
        now: at,
        max_skew_seconds: 900,
    };
    let parse = || SignedRequest::parse(&parts, Presentation::Header, &expect).expect("parses");
    let signed = parse();
    let key = Sigv4SigningKey::derive(&secret, &signed.scope);
    assert!(signed.verify(&key), "the benchmark's signature verifies");

    let mut group = c.benchmark_group("sigv4");
    // What the server does per request with the derived key cached: parse,
    // canonicalise, hash the canonical request, one HMAC, compare.
    group.bench_function("verify (key cached)", |b| {
        b.iter(|| {
            let signed = SignedRequest::parse(black_box(&parts), Presentation::Header, &expect)
                .expect("parses");
            assert!(signed.verify(&key));
        })
    });
    group.bench_function("parse and canonicalise", |b| b.iter(|| black_box(parse())));
    // Once per key and day: four HMACs.
    group.bench_function("derive signing key", |b| {
        b.iter(|| Sigv4SigningKey::derive(black_box(&secret), &signed.scope))
    });
    group.finish();
}

fn credential_cache(c: &mut Criterion) {
    use keyport::service::credential_cache::CachedKey;
    use keyport::storage::{ChangeCounter, KeyAuthRow, Store};

    let secret = ClientSecret::generate();
    let row = KeyAuthRow {
        id: "0196f3a0-0000-7000-8000-000000000003".to_owned(),
        tenant_id: "0196f3a0-0000-7000-8000-000000000002".to_owned(),
        owner_id: "0196f3a0-0000-7000-8000-000000000001".to_owned(),
        client_id: "kpc_0123456789ABCDEFGHIJabcd".to_owned(),
        secret_digest: secret.digest().to_hex(),
        scopes: None,
        token_ttl_seconds: None,
        expires_at: Some(now() + 86_400),
        revoked_at: None,
        owner_role: "member".to_owned(),
        owner_permissions: "reports:read webhooks:write".to_owned(),
        owner_status: "active".to_owned(),
        disabled_at: None,
        allowed_sources: None,
        rate_limit_requests: None,
        rate_limit_per_seconds: None,
        rate_limit_burst: None,
        default_rate_limit_requests: Some(600),
        default_rate_limit_per_seconds: Some(60),
        default_rate_limit_burst: Some(100),
        require_dpop: 0,
        tls_client_auth: None,
        tls_client_certificates: None,
    };
    let cached = CachedKey::from_row(row).expect("a readable row");
    assert!(cached.check(now()).is_ok());

    let dir = std::env::temp_dir().join(format!("keyport-micro-{}", uuid::Uuid::new_v4()));
    let settings = keyport::config::Settings::load_from(
        None,
        [(
            "KEYPORT_DATABASE_URL".to_owned(),
            format!("sqlite://{}/poll.db", dir.display()),
        )],
    )
    .expect("settings");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        Store::connect_and_migrate(&settings.database)
            .await
            .expect("a migrated SQLite file")
            .close()
            .await;
    });
    let mut counter = ChangeCounter::open(&dir.join("poll.db")).expect("opens");
    counter.read().expect("reads");

    let mut group = c.benchmark_group("credential_cache");
    group.bench_function("hit_check", |b| b.iter(|| black_box(&cached).check(now())));
    group.bench_function("sqlite_poll_unchanged", |b| {
        b.iter(|| counter.read().expect("reads"))
    });
    group.finish();
    std::fs::remove_dir_all(dir).ok();
}

/// Counting one answer for a key's usage (`service::key_usage`), what every
/// request with a key, secret or token pays: one key counted over and over
/// (a hit in its shard), and 200 keys in turn.
fn usage_counting(c: &mut Criterion) {
    use keyport::service::key_usage::{Outcome, UsageCounter};
    let address = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    let mut group = c.benchmark_group("usage");
    let counter = UsageCounter::new(true);
    group.bench_function("count (one key)", |b| {
        b.iter(|| {
            counter.count(
                black_box("kpc_0123456789abcdefghijklmn"),
                Outcome::TokenIssued,
                now(),
                address,
            )
        })
    });
    let counter = UsageCounter::new(true);
    let keys: Vec<String> = (0..200).map(|n| format!("kpc_{n:024}")).collect();
    let mut next = 0;
    group.bench_function("count (200 keys)", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            counter.count(black_box(&keys[next]), Outcome::TokenIssued, now(), address)
        })
    });
    let off = UsageCounter::new(false);
    group.bench_function("count (counting off)", |b| {
        b.iter(|| {
            off.count(
                black_box("kpc_0123456789abcdefghijklmn"),
                Outcome::TokenIssued,
                now(),
                address,
            )
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = micro;
    config = config();
    targets = tokens, secrets, rate_limits, sigv4, credential_cache, usage_counting
}
criterion_main!(micro);
