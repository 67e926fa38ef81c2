//! What the crate adds to a token's validation: `Verifier::verify` with the
//! key already cached, beside `jsonwebtoken::decode` called directly with
//! the same key, the same checks (algorithm, `iss`, `aud`, `exp`/`nbf`,
//! required claims) and the same claims type, side by side in one run. Both
//! for ES256 (Keyport's default). Then allocations per validation, counted
//! by a counting global allocator around the system one.
//!
//! Last, a DPoP proof's check, its key seen before and for the first
//! time, beside the ES256 signature check alone.
//!
//! `cargo bench -p keyport-verify --bench verify`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keyport_verify::{Claims, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "keyport-api";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 key, its JWK (kid `k1`), and a token it signed.
fn key_and_token() -> (serde_json::Value, String) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
    let point = pair.public_key().as_ref();
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "user-1", "aud": AUDIENCE, "iat": now, "exp": now + 3600,
        "jti": "j1", "client_id": "kp_1", "scope": "reports:read webhooks:write",
        "tenant_id": "t1",
    });
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    (jwk, format!("{input}.{}", b64(signature.as_ref())))
}

/// Serves `body` as the JWKS on port 0 (enough HTTP for one fetch per
/// connection); its URL.
async fn serve_jwks(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=3600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    url
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (jwk, token) = key_and_token();
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    // Without the cache of verified tokens: every call checks the
    // signature, as `jsonwebtoken::decode` does. `remembering` is the
    // default verifier, which answers a token seen before from its cache.
    let (verifier, remembering) = runtime.block_on(async {
        let url = serve_jwks(jwks).await;
        let verifier = Verifier::builder(ISSUER, AUDIENCE)
            .jwks_uri(&url)
            .cache_capacity(0)
            .build()
            .await
            .expect("verifier");
        verifier.verify(&token).await.expect("a good token");
        let remembering = Verifier::builder(ISSUER, AUDIENCE)
            .jwks_uri(url)
            .build()
            .await
            .expect("verifier");
        remembering.verify(&token).await.expect("a good token");
        (verifier, remembering)
    });
    let key = DecodingKey::from_jwk(&serde_json::from_value(jwk).expect("jwk")).expect("key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.leeway = 30;
    validation.validate_nbf = true;
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let direct = || jsonwebtoken::decode::<Claims>(&token, &key, &validation).expect("valid");
    let crate_verify = || runtime.block_on(verifier.verify(&token)).expect("valid");
    let remembered = || remembering.verify_now(&token).expect("valid");

    let mut group = c.benchmark_group("validate ES256 token");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("jsonwebtoken::decode (same key, same checks)", |b| {
        b.iter(|| black_box(direct()))
    });
    group.bench_function("Verifier::verify (cached key)", |b| {
        b.iter(|| black_box(crate_verify()))
    });
    group.bench_function("Verifier::verify_now (token seen before)", |b| {
        b.iter(|| black_box(remembered()))
    });
    group.finish();

    // Allocations per validation, averaged over 10,000 after a warm-up.
    let count = |f: &dyn Fn()| {
        for _ in 0..100 {
            f();
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..10_000 {
            f();
        }
        (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 10_000.0
    };
    let direct_allocations = count(&|| {
        black_box(direct());
    });
    let crate_allocations = count(&|| {
        black_box(crate_verify());
    });
    let remembered_allocations = count(&|| {
        black_box(remembered());
    });
    println!(
        "allocations per validation: jsonwebtoken::decode {direct_allocations:.1}, Verifier::verify {crate_allocations:.1}, a token seen before {remembered_allocations:.1}"
    );

    dpop(c, &runtime);
}

/// A DPoP proof (ES256) checked at a resource: its key seen before (the
/// usual case, one key per client) and for the first time, beside the
/// ES256 signature check alone, its floor. Each proof is new (made outside
/// the timing), as the replay check requires.
fn dpop(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    use keyport_verify::{DpopSettings, ProofTarget};
    const URL: &str = "https://api.example.com/protected";
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
    let point = pair.public_key().as_ref().to_vec();
    let header = b64(
        serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {
        "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}})
        .to_string(),
    );
    let token = "an.access.token";
    let ath = b64(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ));
    let counter = AtomicU64::new(0);
    let proof = || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let claims = serde_json::json!({"jti": format!("proof-{n}"), "htm": "GET", "htu": URL,
            "iat": now(), "ath": ath});
        let input = format!("{header}.{}", b64(claims.to_string()));
        let signature = pair.sign(&rng, input.as_bytes()).expect("signature");
        format!("{input}.{}", b64(signature.as_ref()))
    };
    let target = ProofTarget {
        method: "GET",
        url: URL,
        access_token: Some(token),
        jkt: None,
    };
    let warm = DpopSettings::default();
    runtime
        .block_on(warm.check_proof(&[&proof()], &target))
        .expect("a good proof");
    let public = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    )
    .expect("key");

    let mut group = c.benchmark_group("dpop proof ES256");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("check_proof, key seen before", |b| {
        b.iter_batched(
            proof,
            |p| {
                runtime
                    .block_on(warm.check_proof(&[&p], &target))
                    .expect("valid")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("check_proof, key seen for the first time", |b| {
        b.iter_batched(
            || (DpopSettings::default(), proof()),
            |(settings, p)| {
                runtime
                    .block_on(settings.check_proof(&[&p], &target))
                    .expect("valid")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("the ES256 signature alone", |b| {
        b.iter_batched(
            || {
                let p = proof();
                let (input, signature) = p.rsplit_once('.').expect("a JWT");
                let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64");
                (input.to_owned(), signature)
            },
            |(input, signature)| {
                public
                    .verify_sig(input.as_bytes(), &signature)
                    .expect("valid")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
