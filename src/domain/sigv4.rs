//! AWS Signature Version 4, as AWS specifies it for services other than S3:
//! the request's parts are parsed into a [`SignedRequest`] (who signed it,
//! for which scope and time, over which canonical request) and checked
//! against a [`Sigv4SigningKey`] derived from the key's secret. Pure: no I/O
//! and no clock; the caller passes the time and this server's scope.
//!
//! The canonical request, per AWS:
//!
//! ```text
//! METHOD \n CANONICAL_URI \n CANONICAL_QUERY \n CANONICAL_HEADERS \n SIGNED_HEADERS \n PAYLOAD_HASH
//! ```
//!
//! - the URI: the path as sent, its `.`/`..` segments and repeated slashes
//!   removed, then every byte except `A-Z a-z 0-9 - _ . ~ /` percent-encoded
//!   (so a `%20` sent becomes `%2520`: non-S3 services encode twice);
//! - the query: each name and value percent-decoded (`+` is a space, as
//!   Keyport's own handlers read it), re-encoded with only the unreserved
//!   characters left bare, sorted by name then value, `X-Amz-Signature`
//!   left out of a presigned URL;
//! - the headers named in `SignedHeaders` (lower-case, sorted, `host`
//!   always among them, and `idempotency-key` whenever it is sent), values
//!   trimmed with inner runs of spaces collapsed;
//! - the payload hash: `X-Amz-Content-Sha256` when sent (it must be the
//!   body's digest), otherwise the digest of the body received.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;

use aws_lc_rs::{digest, hmac};
use subtle::ConstantTimeEq;

use super::UnixTime;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const TERMINATOR: &str = "aws4_request";
/// The longest a presigned URL may stay valid: 7 days, as AWS allows.
pub const MAX_PRESIGNED_EXPIRY_SECONDS: i64 = 7 * 24 * 3600;
/// SHA-256 of nothing: the payload hash of a request without a body.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// What a replay digest is computed for ([`SignedRequest::replay_id`]);
/// changing it forgets every signature seen.
const REPLAY_PURPOSE: &[u8] = b"keyport sigv4 replay v1\0";

/// Whether `method` only reads (RFC 9110 §9.2.1): a signature of a safe
/// request may be sent again within its window, any other only once.
pub fn is_safe_method(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS", "TRACE"]
        .iter()
        .any(|safe| method.eq_ignore_ascii_case(safe))
}

/// Why a SigV4 request is refused before any key is looked at. Each has a
/// stable code the HTTP answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sigv4Fault {
    /// The `Authorization` header or the presigned parameters do not parse.
    MalformedAuthorization,
    /// Not `AWS4-HMAC-SHA256`.
    UnsupportedAlgorithm,
    /// No `X-Amz-Date`.
    MissingDate,
    /// `X-Amz-Date` is not `YYYYMMDDTHHMMSSZ`.
    MalformedDate,
    /// Signed too long ago or too far ahead, or a presigned URL past its expiry.
    RequestExpired,
    /// The credential scope names another date, region, service or terminator.
    InvalidCredentialScope,
    /// `host`, `x-amz-date`, `x-amz-content-sha256` or `idempotency-key`
    /// is sent but not signed.
    HeaderNotSigned,
    /// A header named in `SignedHeaders` is not in the request.
    SignedHeaderMissing,
    /// A signed header (or the date, or the authorization) is sent twice.
    DuplicateHeader,
    /// `X-Amz-Expires` is missing, not a number, or above 7 days.
    InvalidExpires,
    /// A presigned URL on anything but GET.
    PresignedNotGet,
    /// `X-Amz-Content-Sha256` is not 64 hexadecimal digits.
    MalformedContentSha256,
    /// `X-Amz-Content-Sha256` is not the digest of the body received.
    ContentSha256Mismatch,
}

impl Sigv4Fault {
    pub fn code(self) -> &'static str {
        match self {
            Sigv4Fault::MalformedAuthorization => "malformed_authorization",
            Sigv4Fault::UnsupportedAlgorithm => "unsupported_algorithm",
            Sigv4Fault::MissingDate => "missing_date",
            Sigv4Fault::MalformedDate => "malformed_date",
            Sigv4Fault::RequestExpired => "request_expired",
            Sigv4Fault::InvalidCredentialScope => "invalid_credential_scope",
            Sigv4Fault::HeaderNotSigned => "header_not_signed",
            Sigv4Fault::SignedHeaderMissing => "signed_header_missing",
            Sigv4Fault::DuplicateHeader => "duplicate_header",
            Sigv4Fault::InvalidExpires => "invalid_expires",
            Sigv4Fault::PresignedNotGet => "presigned_url_get_only",
            Sigv4Fault::MalformedContentSha256 => "malformed_content_sha256",
            Sigv4Fault::ContentSha256Mismatch => "content_sha256_mismatch",
        }
    }
}

/// A refusal: what was wrong, said so an integrator can fix it. Never holds
/// a secret (the request's own parts at most).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Sigv4Error {
    pub fault: Sigv4Fault,
    pub message: String,
}

fn refuse<T>(fault: Sigv4Fault, message: impl Into<String>) -> Result<T, Sigv4Error> {
    Err(Sigv4Error {
        fault,
        message: message.into(),
    })
}

/// The request as HTTP delivered it. Header names are lower-case (as the HTTP
/// server gives them); `path` and `query` are exactly as sent, still encoded.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Lower-case hex SHA-256 of the body received (of nothing without one).
    pub body_sha256: &'a str,
}

impl<'a> RequestParts<'a> {
    fn header_values(self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn has_header(self, name: &str) -> bool {
        self.header_values(name).next().is_some()
    }
}

/// What this server expects of a signature: its scope and its clock.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub now: UnixTime,
    /// How far `X-Amz-Date` may be from `now`, either way.
    pub max_skew_seconds: i64,
}

/// How the signature came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=…` with `X-Amz-Date`.
    Header,
    /// A presigned URL: `X-Amz-Algorithm`, `X-Amz-Credential`, … in the query.
    Query,
}

/// Whether a request carries a SigV4 signature at all, and how; `None`:
/// some other credential, or none.
pub fn presentation(authorization: Option<&[u8]>, query: &str) -> Option<Presentation> {
    if authorization.is_some_and(|value| value.starts_with(b"AWS4-")) {
        return Some(Presentation::Header);
    }
    // Cheap first: most queries carry no X-Amz- parameter at all.
    if query.contains("X-Amz-") || query.contains("x-amz-") {
        let presigned = query.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            name.eq_ignore_ascii_case("X-Amz-Signature")
                || name.eq_ignore_ascii_case("X-Amz-Credential")
                || name.eq_ignore_ascii_case("X-Amz-Algorithm")
        });
        if presigned {
            return Some(Presentation::Query);
        }
    }
    None
}

/// `DATE/REGION/SERVICE/aws4_request`, as the credential names it: slices of
/// the `Authorization` header as sent (a presigned URL's, percent-decoded,
/// are owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope<'a> {
    pub date: Cow<'a, str>,
    pub region: Cow<'a, str>,
    pub service: Cow<'a, str>,
}

impl CredentialScope<'_> {
    pub fn to_scope_string(&self) -> String {
        self.to_scope_string_with(TERMINATOR)
    }

    fn to_scope_string_with(&self, terminator: &str) -> String {
        format!(
            "{}/{}/{}/{terminator}",
            self.date, self.region, self.service
        )
    }

    /// The same scope, holding its own strings (to be kept past the request).
    pub fn into_owned(self) -> CredentialScope<'static> {
        CredentialScope {
            date: Cow::Owned(self.date.into_owned()),
            region: Cow::Owned(self.region.into_owned()),
            service: Cow::Owned(self.service.into_owned()),
        }
    }
}

/// A parsed, checked SigV4 request: everything but the signature itself has
/// been checked against the [`Expectation`]. [`SignedRequest::verify`] takes
/// the signing key of [`SignedRequest::access_key_id`].
///
/// It borrows the request: only the canonical request's digest is kept, and
/// the canonical request and string to sign are written out again only to
/// explain a mismatch ([`SignedRequest::canonical_request`],
/// [`SignedRequest::string_to_sign`]).
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub presentation: Presentation,
    pub access_key_id: Cow<'a, str>,
    pub scope: CredentialScope<'a>,
    /// `X-Amz-Date` as sent.
    pub amz_date: Cow<'a, str>,
    /// The last second this signature is accepted: `X-Amz-Date` plus the
    /// allowed skew, or plus `X-Amz-Expires` for a presigned URL.
    pub valid_until: UnixTime,
    /// Whether the method changes data (anything but GET, HEAD, OPTIONS and
    /// TRACE): such a signature is accepted once ([`SignedRequest::replay_id`]).
    pub changes_data: bool,
    signed_headers: SignedHeaders<'a>,
    /// SHA-256 of the canonical request.
    canonical_sha256: [u8; 32],
    signature: [u8; 32],
    request: RequestParts<'a>,
}

/// The key that signs requests for one secret, date, region and service:
/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
#[derive(Clone)]
pub struct Sigv4SigningKey(hmac::Key);

impl std::fmt::Debug for Sigv4SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sigv4SigningKey(<redacted>)")
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

impl Sigv4SigningKey {
    pub fn derive(secret: &str, scope: &CredentialScope<'_>) -> Self {
        let mut first = Vec::with_capacity(4 + secret.len());
        first.extend_from_slice(b"AWS4");
        first.extend_from_slice(secret.as_bytes());
        let date = hmac_sha256(&first, scope.date.as_bytes());
        let region = hmac_sha256(&date, scope.region.as_bytes());
        let service = hmac_sha256(&region, scope.service.as_bytes());
        let signing = hmac_sha256(&service, TERMINATOR.as_bytes());
        Sigv4SigningKey(hmac::Key::new(hmac::HMAC_SHA256, &signing))
    }

    /// The signature of `string_to_sign`, as lower-case hex.
    pub fn sign(&self, string_to_sign: &str) -> String {
        hex(hmac::sign(&self.0, string_to_sign.as_bytes()).as_ref())
    }
}

impl SignedRequest<'_> {
    /// Whether the signature is this key's, compared in constant time.
    pub fn verify(&self, key: &Sigv4SigningKey) -> bool {
        with_scratch(|string_to_sign| {
            write_string_to_sign(
                string_to_sign,
                &self.amz_date,
                &self.scope,
                &self.canonical_sha256,
            );
            let expected = hmac::sign(&key.0, string_to_sign.as_bytes());
            expected.as_ref().ct_eq(&self.signature).into()
        })
    }

    /// The canonical request this signature was checked over, written out
    /// again (to show an integrator whose signature does not match).
    pub fn canonical_request(&self) -> String {
        let mut out = String::new();
        // It was written once already, so it writes again without a fault.
        let _ = write_canonical_request(
            &mut out,
            &self.request,
            &self.signed_headers,
            self.presentation == Presentation::Query,
        );
        out
    }

    /// The string to sign, written out again (see
    /// [`SignedRequest::canonical_request`]).
    pub fn string_to_sign(&self) -> String {
        let mut out = String::new();
        write_string_to_sign(
            &mut out,
            &self.amz_date,
            &self.scope,
            &self.canonical_sha256,
        );
        out
    }

    /// What the replay cache remembers this signature by, for the key with
    /// id `key_id`: SHA-256 over a purpose label, the key's id and the
    /// signature, so the signature itself is never stored and two keys'
    /// signatures never collide.
    pub fn replay_id(&self, key_id: &str) -> [u8; 32] {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(REPLAY_PURPOSE);
        context.update(key_id.as_bytes());
        context.update(&[0]);
        context.update(&self.signature);
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }
}

impl<'a> SignedRequest<'a> {
    /// Parses and checks a request that [`presentation`] found signed.
    pub fn parse(
        request: &RequestParts<'a>,
        presentation: Presentation,
        expect: &Expectation<'_>,
    ) -> Result<Self, Sigv4Error> {
        let claimed = match presentation {
            Presentation::Header => Claimed::from_header(request)?,
            Presentation::Query => Claimed::from_query(request)?,
        };
        claimed.check(request, expect)
    }
}

/// Runs `write` on this thread's scratch string, emptied: the canonical
/// request and the string to sign of every signed request are written there
/// (then hashed), rather than into two new strings each time.
fn with_scratch<R>(write: impl FnOnce(&mut String) -> R) -> R {
    /// Past this, the scratch string is let go rather than kept for the
    /// thread's lifetime (a request with a long query, say).
    const KEPT_CAPACITY: usize = 16 * 1024;
    thread_local! {
        static SCRATCH: Cell<String> = const { Cell::new(String::new()) };
    }
    // Taken out while in use: a nested call, or one while the thread exits,
    // writes to a string of its own.
    let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
    scratch.clear();
    let written = write(&mut scratch);
    if scratch.capacity() <= KEPT_CAPACITY {
        let _ = SCRATCH.try_with(|cell| cell.set(scratch));
    }
    written
}

/// `SignedHeaders` as sent, checked: lower-case names, sorted, separated by
/// `;`, none twice, at most [`SignedHeaders::MAX`]. Walked, never collected.
#[derive(Debug, Clone)]
struct SignedHeaders<'a>(Cow<'a, str>);

impl<'a> SignedHeaders<'a> {
    const MAX: usize = 64;

    fn parse(raw: Cow<'a, str>) -> Result<Self, Sigv4Error> {
        let mut count = 0;
        let mut previous: Option<&str> = None;
        let mut well_formed = true;
        for name in raw.split(';') {
            count += 1;
            // Strictly increasing: sorted, and so none twice.
            well_formed &= !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                })
                && previous.is_none_or(|previous| previous < name);
            previous = Some(name);
        }
        if !well_formed || count > Self::MAX {
            return refuse(
                Sigv4Fault::MalformedAuthorization,
                "SignedHeaders must be lower-case header names, sorted, separated by ;",
            );
        }
        if raw.split(';').any(|name| name == "authorization") {
            return refuse(
                Sigv4Fault::MalformedAuthorization,
                "the Authorization header cannot sign itself: leave it out of SignedHeaders",
            );
        }
        Ok(SignedHeaders(raw))
    }

    fn names(&self) -> std::str::Split<'_, char> {
        self.0.split(';')
    }

    fn contains(&self, name: &str) -> bool {
        self.names().any(|signed| signed == name)
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the request claims, before any check against this server.
struct Claimed<'a> {
    presentation: Presentation,
    access_key_id: Cow<'a, str>,
    scope: CredentialScope<'a>,
    terminator: Cow<'a, str>,
    amz_date: Cow<'a, str>,
    signed_headers: SignedHeaders<'a>,
    signature: [u8; 32],
    /// Presigned only: seconds the URL stays valid.
    expires: Option<i64>,
}

impl<'a> Claimed<'a> {
    fn from_header(request: &RequestParts<'a>) -> Result<Self, Sigv4Error> {
        let mut values = request.header_values("authorization");
        let raw = values.next().unwrap_or_default();
        if values.next().is_some() {
            return refuse(Sigv4Fault::DuplicateHeader, "send one Authorization header");
        }
        let raw = std::str::from_utf8(raw).map_err(|_| Sigv4Error {
            fault: Sigv4Fault::MalformedAuthorization,
            message: "the Authorization header is not ASCII".to_owned(),
        })?;
        let (algorithm, rest) = raw.split_once(' ').unwrap_or((raw, ""));
        if algorithm != ALGORITHM {
            return refuse(
                Sigv4Fault::UnsupportedAlgorithm,
                format!("the algorithm must be {ALGORITHM}"),
            );
        }
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for component in rest.split(',') {
            let component = component.trim();
            let Some((name, value)) = component.split_once('=') else {
                return refuse(
                    Sigv4Fault::MalformedAuthorization,
                    "the Authorization header must be AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…",
                );
            };
            let slot = match name.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => {
                    return refuse(
                        Sigv4Fault::MalformedAuthorization,
                        "the Authorization header holds only Credential, SignedHeaders and Signature",
                    );
                }
            };
            if slot.replace(value.trim()).is_some() {
                return refuse(
                    Sigv4Fault::MalformedAuthorization,
                    format!("{} appears twice in the Authorization header", name.trim()),
                );
            }
        }
        let (Some(credential), Some(signed_headers), Some(signature)) =
            (credential, signed_headers, signature)
        else {
            return refuse(
                Sigv4Fault::MalformedAuthorization,
                "the Authorization header needs Credential, SignedHeaders and Signature",
            );
        };
        let mut dates = request.header_values("x-amz-date");
        let amz_date = dates.next();
        if dates.next().is_some() {
            return refuse(Sigv4Fault::DuplicateHeader, "send one X-Amz-Date header");
        }
        let Some(amz_date) = amz_date else {
            return refuse(
                Sigv4Fault::MissingDate,
                "send the signing time in an X-Amz-Date header (YYYYMMDDTHHMMSSZ)",
            );
        };
        // Not UTF-8 is not a date either: `check` refuses it as one.
        let amz_date = match std::str::from_utf8(amz_date) {
            Ok(text) => Cow::Borrowed(text.trim()),
            Err(_) => Cow::Owned(String::from_utf8_lossy(amz_date).trim().to_owned()),
        };
        let credential = Credential::parse(credential)?;
        Ok(Claimed {
            presentation: Presentation::Header,
            access_key_id: Cow::Borrowed(credential.access_key_id),
            scope: CredentialScope {
                date: Cow::Borrowed(credential.date),
                region: Cow::Borrowed(credential.region),
                service: Cow::Borrowed(credential.service),
            },
            terminator: Cow::Borrowed(credential.terminator),
            amz_date,
            signed_headers: SignedHeaders::parse(Cow::Borrowed(signed_headers))?,
            signature: parse_signature(signature)?,
            expires: None,
        })
    }

    fn from_query(request: &RequestParts<'a>) -> Result<Self, Sigv4Error> {
        let params = decode_query(request.query);
        let one = |name: &str| -> Result<Option<&str>, Sigv4Error> {
            let mut found = params
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str());
            let first = found.next();
            if found.next().is_some() {
                return refuse(
                    Sigv4Fault::MalformedAuthorization,
                    format!("{name} appears twice in the URL"),
                );
            }
            Ok(first)
        };
        let required = |name: &str| -> Result<&str, Sigv4Error> {
            one(name)?.ok_or_else(|| Sigv4Error {
                fault: Sigv4Fault::MalformedAuthorization,
                message: format!(
                    "a presigned URL needs X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, \
                     X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature; {name} is missing"
                ),
            })
        };
        if required("X-Amz-Algorithm")? != ALGORITHM {
            return refuse(
                Sigv4Fault::UnsupportedAlgorithm,
                format!("X-Amz-Algorithm must be {ALGORITHM}"),
            );
        }
        let credential = required("X-Amz-Credential")?;
        let signed_headers = required("X-Amz-SignedHeaders")?;
        let signature = required("X-Amz-Signature")?;
        let Some(amz_date) = one("X-Amz-Date")? else {
            return refuse(
                Sigv4Fault::MissingDate,
                "a presigned URL carries its signing time in X-Amz-Date (YYYYMMDDTHHMMSSZ)",
            );
        };
        let expires = one("X-Amz-Expires")?
            .and_then(|raw| {
                (!raw.is_empty() && raw.len() <= 7 && raw.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| raw.parse::<i64>().ok())
                    .flatten()
            })
            .filter(|seconds| (1..=MAX_PRESIGNED_EXPIRY_SECONDS).contains(seconds))
            .ok_or_else(|| Sigv4Error {
                fault: Sigv4Fault::InvalidExpires,
                message: format!(
                    "X-Amz-Expires must be the seconds the URL stays valid, from 1 to \
                     {MAX_PRESIGNED_EXPIRY_SECONDS} (7 days)"
                ),
            })?;
        if !request.method.eq_ignore_ascii_case("GET") {
            return refuse(
                Sigv4Fault::PresignedNotGet,
                "presigned URLs are for GET requests; sign other requests in the Authorization header",
            );
        }
        let credential = Credential::parse(credential)?;
        let owned = |part: &str| Cow::Owned(part.to_owned());
        Ok(Claimed {
            presentation: Presentation::Query,
            access_key_id: owned(credential.access_key_id),
            scope: CredentialScope {
                date: owned(credential.date),
                region: owned(credential.region),
                service: owned(credential.service),
            },
            terminator: owned(credential.terminator),
            amz_date: owned(amz_date),
            signed_headers: SignedHeaders::parse(owned(signed_headers))?,
            signature: parse_signature(signature)?,
            expires: Some(expires),
        })
    }

    fn check(
        self,
        request: &RequestParts<'a>,
        expect: &Expectation<'_>,
    ) -> Result<SignedRequest<'a>, Sigv4Error> {
        let signed_at = parse_amz_date(&self.amz_date)?;
        // Named only in a refusal: not built for a request that passes.
        let expected_scope = || {
            format!(
                "{}/{}/{}/{TERMINATOR}",
                &self.amz_date[..8],
                expect.region,
                expect.service
            )
        };
        if self.scope.date != self.amz_date[..8] {
            return refuse(
                Sigv4Fault::InvalidCredentialScope,
                format!(
                    "the credential scope's date {} is not the date of X-Amz-Date {}; expected scope {}",
                    self.scope.date,
                    self.amz_date,
                    expected_scope()
                ),
            );
        }
        if self.scope.region != expect.region
            || self.scope.service != expect.service
            || self.terminator != TERMINATOR
        {
            return refuse(
                Sigv4Fault::InvalidCredentialScope,
                format!(
                    "the credential scope is {}; this server expects {} (region {}, service {})",
                    self.scope.to_scope_string_with(&self.terminator),
                    expected_scope(),
                    expect.region,
                    expect.service
                ),
            );
        }
        let skew = expect.max_skew_seconds;
        let valid_until = match self.expires {
            None => signed_at + skew,
            Some(expires) => signed_at + expires,
        };
        match self.expires {
            None if (signed_at - expect.now).abs() > skew => {
                return refuse(
                    Sigv4Fault::RequestExpired,
                    format!(
                        "X-Amz-Date {} is {} seconds from the server's time; at most {skew} are allowed either way",
                        self.amz_date,
                        (signed_at - expect.now).abs()
                    ),
                );
            }
            Some(expires) if expect.now > signed_at + expires => {
                return refuse(
                    Sigv4Fault::RequestExpired,
                    format!(
                        "this presigned URL expired at {} ({expires} seconds after X-Amz-Date {})",
                        format_amz_date(signed_at + expires),
                        self.amz_date
                    ),
                );
            }
            Some(_) if signed_at - expect.now > skew => {
                return refuse(
                    Sigv4Fault::RequestExpired,
                    format!(
                        "X-Amz-Date {} is in the future by more than {skew} seconds",
                        self.amz_date
                    ),
                );
            }
            _ => {}
        }
        // An unsigned Idempotency-Key could be added or changed by whoever
        // holds a copy of the request, so the retry of a write would not be
        // told apart from a new one.
        let must_sign = [
            Some("host"),
            (self.presentation == Presentation::Header).then_some("x-amz-date"),
            request
                .has_header("x-amz-content-sha256")
                .then_some("x-amz-content-sha256"),
            request
                .has_header("idempotency-key")
                .then_some("idempotency-key"),
        ];
        for name in must_sign.into_iter().flatten() {
            if !self.signed_headers.contains(name) {
                let why = if name == "idempotency-key" {
                    "; unsigned, it could be changed by anyone holding a copy of the request, \
                     who could then send it again as a new one"
                } else {
                    ""
                };
                return refuse(
                    Sigv4Fault::HeaderNotSigned,
                    format!("the {name} header must be signed: add it to SignedHeaders{why}"),
                );
            }
        }
        let exclude_signature = self.presentation == Presentation::Query;
        let canonical_sha256 = with_scratch(|canonical_request| {
            write_canonical_request(
                canonical_request,
                request,
                &self.signed_headers,
                exclude_signature,
            )?;
            let mut out = [0u8; 32];
            out.copy_from_slice(
                digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref(),
            );
            Ok::<_, Sigv4Error>(out)
        })?;
        Ok(SignedRequest {
            presentation: self.presentation,
            access_key_id: self.access_key_id,
            scope: self.scope,
            amz_date: self.amz_date,
            valid_until,
            changes_data: !is_safe_method(request.method),
            signed_headers: self.signed_headers,
            canonical_sha256,
            signature: self.signature,
            request: *request,
        })
    }
}

/// Writes the canonical request (see the module's documentation) to `out`;
/// refused if a signed header is missing or sent twice, or
/// `X-Amz-Content-Sha256` is not the body's digest.
fn write_canonical_request(
    out: &mut String,
    request: &RequestParts<'_>,
    signed_headers: &SignedHeaders<'_>,
    exclude_signature: bool,
) -> Result<(), Sigv4Error> {
    if request.method.bytes().any(|b| b.is_ascii_lowercase()) {
        out.extend(request.method.chars().map(|c| c.to_ascii_uppercase()));
    } else {
        out.push_str(request.method);
    }
    out.push('\n');
    push_canonical_uri(out, request.path);
    out.push('\n');
    if !request.query.is_empty() {
        out.push_str(&canonical_query(request.query, exclude_signature));
    }
    out.push('\n');
    for name in signed_headers.names() {
        let mut values = request.header_values(name);
        let Some(value) = values.next() else {
            return refuse(
                Sigv4Fault::SignedHeaderMissing,
                format!("SignedHeaders names {name}, which the request does not carry"),
            );
        };
        if values.next().is_some() {
            return refuse(
                Sigv4Fault::DuplicateHeader,
                format!("the signed header {name} is sent more than once; send it once"),
            );
        }
        out.push_str(name);
        out.push(':');
        push_trimmed(out, &String::from_utf8_lossy(value));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers.as_str());
    out.push('\n');
    match request.header_values("x-amz-content-sha256").next() {
        None => out.push_str(request.body_sha256),
        Some(claimed) => {
            let claimed = std::str::from_utf8(claimed).unwrap_or_default().trim();
            if claimed.len() != 64 || !claimed.bytes().all(|b| b.is_ascii_hexdigit()) {
                return refuse(
                    Sigv4Fault::MalformedContentSha256,
                    "X-Amz-Content-Sha256 must be the hex SHA-256 of the body; Keyport checks \
                     every payload, so UNSIGNED-PAYLOAD and streaming are not accepted",
                );
            }
            if !claimed.eq_ignore_ascii_case(request.body_sha256) {
                return refuse(
                    Sigv4Fault::ContentSha256Mismatch,
                    format!(
                        "X-Amz-Content-Sha256 is {claimed}, but the body received hashes to {}",
                        request.body_sha256
                    ),
                );
            }
            out.push_str(claimed);
        }
    }
    Ok(())
}

/// `AWS4-HMAC-SHA256 \n X-Amz-Date \n scope \n hex(SHA-256(canonical request))`.
pub fn string_to_sign(
    amz_date: &str,
    scope: &CredentialScope<'_>,
    canonical_request: &str,
) -> String {
    let mut out = String::new();
    let mut canonical_sha256 = [0u8; 32];
    canonical_sha256
        .copy_from_slice(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref());
    write_string_to_sign(&mut out, amz_date, scope, &canonical_sha256);
    out
}

fn write_string_to_sign(
    out: &mut String,
    amz_date: &str,
    scope: &CredentialScope<'_>,
    canonical_sha256: &[u8; 32],
) {
    for part in [
        ALGORITHM,
        "\n",
        amz_date,
        "\n",
        &scope.date,
        "/",
        &scope.region,
        "/",
        &scope.service,
        "/",
        TERMINATOR,
        "\n",
    ] {
        out.push_str(part);
    }
    push_hex(out, canonical_sha256);
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// Lower-case hex, by table: `write!` with `{:02x}` per byte was a tenth
/// of a signed request's parse in a profile of the SigV4 whoami.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Lower-case hex of `bytes`, appended: written 32 bytes at a time to the
/// stack and pushed as one string (a digest is one push).
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.chunks(32) {
        let mut digits = [0u8; 64];
        for (pair, b) in digits.chunks_exact_mut(2).zip(chunk) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
        // Always ASCII digits, so always UTF-8.
        out.push_str(std::str::from_utf8(&digits[..2 * chunk.len()]).unwrap_or_default());
    }
}

/// `ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request`, split in place.
#[derive(Debug)]
struct Credential<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
}

impl<'a> Credential<'a> {
    /// The longest access key ID taken.
    const MAX_ACCESS_KEY_ID: usize = 128;

    fn parse(raw: &'a str) -> Result<Self, Sigv4Error> {
        let malformed = || Sigv4Error {
            fault: Sigv4Fault::MalformedAuthorization,
            message: "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request"
                .to_owned(),
        };
        let mut parts = raw.split('/');
        let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        if access_key_id.is_empty()
            || access_key_id.len() > Self::MAX_ACCESS_KEY_ID
            || region.is_empty()
            || service.is_empty()
        {
            return Err(malformed());
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return refuse(
                Sigv4Fault::InvalidCredentialScope,
                "the credential scope's date must be YYYYMMDD",
            );
        }
        Ok(Credential {
            access_key_id,
            date,
            region,
            service,
            terminator,
        })
    }
}

fn parse_signature(raw: &str) -> Result<[u8; 32], Sigv4Error> {
    /// Each byte's value as a lower-case hex digit; `INVALID` if it is not one.
    const INVALID: u8 = 0xff;
    const NIBBLES: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    let mut out = [0u8; 32];
    let mut invalid = raw.len() != 64;
    if !invalid {
        for (pair, byte) in raw.as_bytes().chunks_exact(2).zip(out.iter_mut()) {
            let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
            invalid |= high == INVALID || low == INVALID;
            *byte = high << 4 | (low & 0x0f);
        }
    }
    let valid = !invalid;
    if !valid {
        return refuse(
            Sigv4Fault::MalformedAuthorization,
            "Signature must be 64 lower-case hexadecimal digits",
        );
    }
    Ok(out)
}

/// `YYYYMMDDTHHMMSSZ` to Unix seconds.
fn parse_amz_date(raw: &str) -> Result<UnixTime, Sigv4Error> {
    let malformed = || Sigv4Error {
        fault: Sigv4Fault::MalformedDate,
        message: format!(
            "X-Amz-Date must be YYYYMMDDTHHMMSSZ in UTC (e.g. {}), not {:?}",
            format_amz_date(1_767_225_600),
            raw.chars().take(40).collect::<String>()
        ),
    };
    if raw.len() != 16 || !raw.is_ascii() {
        return Err(malformed());
    }
    // By hand rather than with a strftime pattern, which is parsed anew on
    // every call: the same digits, the same calendar checks.
    let bytes = raw.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range].iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let parsed = (|| {
        if bytes[8] != b'T' || bytes[15] != b'Z' {
            return None;
        }
        let year = i32::try_from(number(0..4)?).ok()?;
        let date = chrono::NaiveDate::from_ymd_opt(year, number(4..6)?, number(6..8)?)?;
        let time =
            chrono::NaiveTime::from_hms_opt(number(9..11)?, number(11..13)?, number(13..15)?)?;
        Some(date.and_time(time).and_utc().timestamp())
    })();
    parsed.ok_or_else(malformed)
}

/// Unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(at: UnixTime) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// A header value trimmed, with inner runs of spaces and tabs made one space:
/// its words, one space between them.
fn push_trimmed(out: &mut String, value: &str) {
    let mut words = value.split([' ', '\t']).filter(|word| !word.is_empty());
    if let Some(first) = words.next() {
        out.push_str(first);
        for word in words {
            out.push(' ');
            out.push_str(word);
        }
    }
}

/// AWS's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`
/// (upper-case hex); `/` too unless `keep_slash`.
fn uri_encode(out: &mut String, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The path as sent, dot segments and empty segments removed (RFC 3986
/// §5.2.4, and AWS's collapsing of `//`), then encoded.
pub fn canonical_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    push_canonical_uri(&mut out, path);
    out
}

/// [`canonical_uri`], appended to `out`. A path that is already canonical
/// (it starts with `/`, has no empty, `.` or `..` segment and nothing to
/// encode), as most are, is copied as it is.
fn push_canonical_uri(out: &mut String, path: &str) {
    let inner = path.strip_prefix('/').unwrap_or_default();
    let plain = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/'))
        && inner
            .strip_suffix('/')
            .unwrap_or(inner)
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."));
    if plain || path == "/" {
        out.push_str(path);
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(path.len() + 1);
    normalized.push('/');
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(out, normalized.as_bytes(), true);
}

/// Percent-decodes `raw` (`+` is a space); a `%` not followed by two hex
/// digits is kept as is.
fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let decoded = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match decoded {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The query's pairs, decoded (as text; invalid UTF-8 replaced).
fn decode_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                String::from_utf8_lossy(&percent_decode(name)).into_owned(),
                String::from_utf8_lossy(&percent_decode(value)).into_owned(),
            )
        })
        .collect()
}

/// Every pair decoded, re-encoded AWS's way, sorted by name then value.
pub fn canonical_query(query: &str, exclude_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name);
            if exclude_signature && name == b"X-Amz-Signature" {
                return None;
            }
            let mut encoded_name = String::new();
            uri_encode(&mut encoded_name, &name, false);
            let mut encoded_value = String::new();
            uri_encode(&mut encoded_value, &percent_decode(value), false);
            Some((encoded_name, encoded_value))
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse_to_the_second_and_malformed_ones_are_refused() {
        assert_eq!(parse_amz_date("20260101T000000Z").ok(), Some(1_767_225_600));
        assert_eq!(parse_amz_date("20240229T235959Z").ok(), Some(1_709_251_199));
        for (at, date) in [
            (0, "19700101T000000Z"),
            (1_767_225_600 + 45_296, "20260101T123456Z"),
        ] {
            assert_eq!(format_amz_date(at), date);
            assert_eq!(parse_amz_date(date).ok(), Some(at));
        }
        for bad in [
            "20260101 000000Z",
            "20260101T000000z",
            "20261301T000000Z",
            "20250229T000000Z",
            "20260132T000000Z",
            "20260101T240000Z",
            "20260101T006000Z",
            "2026-1-1T000000Z",
            "+0260101T000000Z",
            "20260101T000000",
            "20260101T0000000Z",
        ] {
            let refused = parse_amz_date(bad).err().map(|e| e.fault);
            assert_eq!(refused, Some(Sigv4Fault::MalformedDate), "{bad}");
        }
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        assert_eq!(hex(&[]), "");
    }

    /// AWS's published SigV4 test suite (aws-sig-v4-test-suite): its key,
    /// time and scope.
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SUITE_DATE: &str = "20150830T123600Z";
    const SUITE_NOW: UnixTime = 1_440_938_160;

    fn suite_expectation() -> Expectation<'static> {
        Expectation {
            region: "us-east-1",
            service: "service",
            now: SUITE_NOW,
            max_skew_seconds: 900,
        }
    }

    fn authorization(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    /// What a suite request was checked over.
    struct Checked {
        canonical_request: String,
        string_to_sign: String,
    }

    /// Parses a suite request and checks it against the suite's key.
    fn check(
        method: &str,
        target: &str,
        extra_headers: &[(&str, &str)],
        body: &[u8],
        signed_headers: &str,
        signature: &str,
    ) -> Checked {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let authorization = authorization(signed_headers, signature);
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE.as_bytes()),
            ("authorization", authorization.as_bytes()),
        ];
        headers.extend(extra_headers.iter().map(|(n, v)| (*n, v.as_bytes())));
        let body_sha256 = sha256_hex(body);
        let parts = RequestParts {
            method,
            path,
            query,
            headers: &headers,
            body_sha256: &body_sha256,
        };
        let presentation =
            presentation(Some(authorization.as_bytes()), query).expect("signed request");
        let signed = SignedRequest::parse(&parts, presentation, &suite_expectation())
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        let key = Sigv4SigningKey::derive(SUITE_SECRET, &signed.scope);
        assert!(
            signed.verify(&key),
            "{target}: the suite's signature does not verify\n{}\n--\n{}",
            signed.canonical_request(),
            signed.string_to_sign()
        );
        Checked {
            canonical_request: signed.canonical_request(),
            string_to_sign: signed.string_to_sign(),
        }
    }

    #[test]
    fn the_suites_get_vanilla_verifies() {
        let signed = check(
            "GET",
            "/",
            &[],
            b"",
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        assert_eq!(
            signed.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
    }

    #[test]
    fn the_suites_query_vectors_sort_by_name_then_value() {
        let signed = check(
            "GET",
            "/?Param2=value2&Param1=value1",
            &[],
            b"",
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        assert_eq!(
            signed.canonical_request.lines().nth(2),
            Some("Param1=value1&Param2=value2")
        );
        assert!(
            signed
                .string_to_sign
                .ends_with("816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0")
        );
        check(
            "GET",
            "/?Param1=value2&Param1=value1",
            &[],
            b"",
            "host;x-amz-date",
            "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        );
    }

    #[test]
    fn the_suites_unreserved_characters_and_repeated_slashes_verify() {
        check(
            "GET",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            &[],
            b"",
            "host;x-amz-date",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        );
        let signed = check(
            "GET",
            "//example//",
            &[],
            b"",
            "host;x-amz-date",
            "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        );
        assert_eq!(signed.canonical_request.lines().nth(1), Some("/example/"));
    }

    #[test]
    fn the_suites_form_post_signs_its_content_type_and_body() {
        let signed = check(
            "POST",
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"Param1=value1",
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
        assert!(
            signed
                .string_to_sign
                .ends_with("42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281")
        );
    }

    #[test]
    fn a_changed_body_or_a_wrong_key_does_not_verify() {
        let authorization = authorization(
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
        let headers: Vec<(&str, &[u8])> = vec![
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE.as_bytes()),
            ("content-type", b"application/x-www-form-urlencoded"),
            ("authorization", authorization.as_bytes()),
        ];
        let changed = sha256_hex(b"Param1=value2");
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body_sha256: &changed,
        };
        let signed =
            SignedRequest::parse(&parts, Presentation::Header, &suite_expectation()).unwrap();
        assert!(!signed.verify(&Sigv4SigningKey::derive(SUITE_SECRET, &signed.scope)));
        let right = sha256_hex(b"Param1=value1");
        let parts = RequestParts {
            body_sha256: &right,
            ..parts
        };
        let signed =
            SignedRequest::parse(&parts, Presentation::Header, &suite_expectation()).unwrap();
        assert!(!signed.verify(&Sigv4SigningKey::derive("another secret", &signed.scope)));
    }

    #[test]
    fn query_values_are_decoded_then_encoded_the_aws_way() {
        assert_eq!(
            canonical_query("b=a%20b&a=1&c=x+y&d=%2f%7e&e&%zz=1", false),
            "%25zz=1&a=1&b=a%20b&c=x%20y&d=%2F~&e="
        );
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&X-Amz-Date=1", true),
            "X-Amz-Date=1"
        );
        assert_eq!(canonical_uri("/a b/%20/./c/../d"), "/a%20b/%2520/d");
        assert_eq!(canonical_uri(""), "/");
        // Paths copied as they are and paths normalised give what the
        // general rule gives.
        for (path, canonical) in [
            ("/", "/"),
            ("/api/v1/whoami", "/api/v1/whoami"),
            ("/a/", "/a/"),
            ("//", "/"),
            ("/a//b/", "/a/b/"),
            ("/a//", "/a/"),
            ("/a/./b", "/a/b"),
            ("/a/../b/", "/b/"),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/a~b_c-d.e", "/a~b_c-d.e"),
            ("a/b", "/a/b"),
            ("/a b", "/a%20b"),
        ] {
            assert_eq!(canonical_uri(path), canonical, "{path:?}");
        }
    }

    fn refusal(method: &str, target: &str, headers: &[(&str, &str)], now: UnixTime) -> Sigv4Fault {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let parts = RequestParts {
            method,
            path,
            query,
            headers: &headers,
            body_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let authorization = parts.header_values("authorization").next();
        let presentation = presentation(authorization, query).expect("signed");
        let expect = Expectation {
            now,
            ..suite_expectation()
        };
        SignedRequest::parse(&parts, presentation, &expect)
            .expect_err(target)
            .fault
    }

    #[test]
    fn each_malformed_part_is_refused_with_its_own_fault() {
        let good = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let auth =
            |signed: &str, signature: &str| ("authorization", authorization(signed, signature));
        let scoped = |scope: &str| {
            (
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope}/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature={good}"
                ),
            )
        };
        let host = ("host", "example.amazonaws.com".to_owned());
        let date = ("x-amz-date", SUITE_DATE.to_owned());
        let plain = auth("host;x-amz-date", good);
        let with_sha = auth("host;x-amz-content-sha256;x-amz-date", good);
        let sha = |value: &str| ("x-amz-content-sha256", value.to_owned());
        type Case<'a> = (Vec<(&'a str, String)>, UnixTime, Sigv4Fault);
        let cases: Vec<Case<'_>> = vec![
            (vec![host.clone(), plain.clone()], SUITE_NOW, Sigv4Fault::MissingDate),
            (
                vec![host.clone(), ("x-amz-date", "2015-08-30T12:36:00Z".to_owned()), plain.clone()],
                SUITE_NOW,
                Sigv4Fault::MalformedDate,
            ),
            (vec![host.clone(), date.clone(), plain.clone()], SUITE_NOW + 16 * 60, Sigv4Fault::RequestExpired),
            (vec![host.clone(), date.clone(), plain.clone()], SUITE_NOW - 16 * 60, Sigv4Fault::RequestExpired),
            (vec![host.clone(), date.clone(), scoped("20150831/us-east-1/service")], SUITE_NOW, Sigv4Fault::InvalidCredentialScope),
            (vec![host.clone(), date.clone(), scoped("20150830/eu-west-1/service")], SUITE_NOW, Sigv4Fault::InvalidCredentialScope),
            (vec![host.clone(), date.clone(), scoped("20150830/us-east-1/s3")], SUITE_NOW, Sigv4Fault::InvalidCredentialScope),
            (vec![host.clone(), date.clone(), auth("x-amz-date", good)], SUITE_NOW, Sigv4Fault::HeaderNotSigned),
            (vec![host.clone(), date.clone(), auth("host", good)], SUITE_NOW, Sigv4Fault::HeaderNotSigned),
            (vec![host.clone(), date.clone(), auth("host;my-header;x-amz-date", good)], SUITE_NOW, Sigv4Fault::SignedHeaderMissing),
            (vec![host.clone(), host.clone(), date.clone(), plain.clone()], SUITE_NOW, Sigv4Fault::DuplicateHeader),
            (vec![host.clone(), date.clone(), date.clone(), plain.clone()], SUITE_NOW, Sigv4Fault::DuplicateHeader),
            (vec![host.clone(), date.clone(), auth("host;x-amz-date", "zz")], SUITE_NOW, Sigv4Fault::MalformedAuthorization),
            (vec![host.clone(), date.clone(), auth("host;x-amz-date", &good[..63])], SUITE_NOW, Sigv4Fault::MalformedAuthorization),
            (vec![host.clone(), date.clone(), auth("host;x-amz-date", &good.to_uppercase())], SUITE_NOW, Sigv4Fault::MalformedAuthorization),
            (vec![host.clone(), date.clone(), auth("x-amz-date;host", good)], SUITE_NOW, Sigv4Fault::MalformedAuthorization),
            (
                vec![host.clone(), date.clone(), ("authorization", "AWS4-HMAC-SHA512 Credential=a/b/c/d/e".to_owned())],
                SUITE_NOW,
                Sigv4Fault::UnsupportedAlgorithm,
            ),
            (
                vec![host.clone(), date.clone(), ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request".to_owned())],
                SUITE_NOW,
                Sigv4Fault::MalformedAuthorization,
            ),
            (vec![host.clone(), date.clone(), sha("UNSIGNED-PAYLOAD"), with_sha.clone()], SUITE_NOW, Sigv4Fault::MalformedContentSha256),
            (vec![host.clone(), date.clone(), sha(EMPTY_PAYLOAD_SHA256), plain.clone()], SUITE_NOW, Sigv4Fault::HeaderNotSigned),
            (vec![host.clone(), date.clone(), ("idempotency-key", "order-1".to_owned()), plain.clone()], SUITE_NOW, Sigv4Fault::HeaderNotSigned),
            (vec![host.clone(), date.clone(), sha(&"0".repeat(64)), with_sha.clone()], SUITE_NOW, Sigv4Fault::ContentSha256Mismatch),
        ];
        for (headers, now, expected) in cases {
            let borrowed: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(refusal("GET", "/", &borrowed, now), expected, "{headers:?}");
        }
    }

    #[test]
    fn presigned_urls_are_checked_for_expiry_lifetime_and_method() {
        let host = [("host", "example.amazonaws.com")];
        let url = |date: &str, expires: &str| {
            format!(
                "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request\
                 &X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
                "a".repeat(64)
            )
        };
        let good = url(SUITE_DATE, "300");
        let (path, query) = good.split_once('?').unwrap();
        let parts = RequestParts {
            method: "GET",
            path,
            query,
            headers: &[("host", b"example.amazonaws.com")],
            body_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let signed = SignedRequest::parse(&parts, Presentation::Query, &suite_expectation())
            .expect("a valid presigned URL");
        assert!(!signed.canonical_request().contains("X-Amz-Signature"));
        assert!(signed.canonical_request().contains("X-Amz-Expires=300"));
        assert_eq!(
            refusal("GET", &good, &host, SUITE_NOW + 301),
            Sigv4Fault::RequestExpired
        );
        assert_eq!(
            refusal("GET", &url(SUITE_DATE, "604801"), &host, SUITE_NOW),
            Sigv4Fault::InvalidExpires
        );
        assert_eq!(
            refusal("GET", &url(SUITE_DATE, "soon"), &host, SUITE_NOW),
            Sigv4Fault::InvalidExpires
        );
        assert_eq!(
            refusal("POST", &good, &host, SUITE_NOW),
            Sigv4Fault::PresignedNotGet
        );
        assert_eq!(
            refusal("GET", &url("20150830", "300"), &host, SUITE_NOW),
            Sigv4Fault::MalformedDate
        );
        // A week is allowed: signed six days ago, valid for seven.
        let week = url(SUITE_DATE, "604800");
        let (path, query) = week.split_once('?').unwrap();
        let parts = RequestParts {
            path,
            query,
            ..parts
        };
        let later = Expectation {
            now: SUITE_NOW + 6 * 86_400,
            ..suite_expectation()
        };
        SignedRequest::parse(&parts, Presentation::Query, &later).expect("within a week");
    }

    #[test]
    fn only_sigv4_requests_are_taken_for_signed_ones() {
        assert_eq!(presentation(Some(b"Bearer kps_x"), ""), None);
        assert_eq!(presentation(None, "limit=5&x-amz-meta=1"), None);
        assert_eq!(
            presentation(Some(b"AWS4-HMAC-SHA256 Credential=x"), ""),
            Some(Presentation::Header)
        );
        assert_eq!(
            presentation(None, "a=1&X-Amz-Signature=00"),
            Some(Presentation::Query)
        );
    }

    #[test]
    fn a_signed_idempotency_key_is_part_of_the_canonical_request() {
        let authorization = authorization(
            "host;idempotency-key;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        let headers: Vec<(&str, &[u8])> = vec![
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE.as_bytes()),
            ("idempotency-key", b"order-1"),
            ("authorization", authorization.as_bytes()),
        ];
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let signed = SignedRequest::parse(&parts, Presentation::Header, &suite_expectation())
            .expect("a signed Idempotency-Key");
        assert!(
            signed
                .canonical_request()
                .contains("\nidempotency-key:order-1\n"),
            "{}",
            signed.canonical_request()
        );
    }

    #[test]
    fn writes_are_one_time_and_remembered_for_their_window_by_key() {
        let authorization = authorization(
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        let headers: Vec<(&str, &[u8])> = vec![
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE.as_bytes()),
            ("authorization", authorization.as_bytes()),
        ];
        let parts = |method| RequestParts {
            method,
            path: "/",
            query: "",
            headers: &headers,
            body_sha256: EMPTY_PAYLOAD_SHA256,
        };
        for (method, one_time) in [
            ("GET", false),
            ("head", false),
            ("OPTIONS", false),
            ("POST", true),
            ("PUT", true),
            ("PATCH", true),
            ("DELETE", true),
            ("PROPFIND", true),
        ] {
            let signed =
                SignedRequest::parse(&parts(method), Presentation::Header, &suite_expectation())
                    .expect(method);
            assert_eq!(signed.changes_data, one_time, "{method}");
            assert_eq!(signed.valid_until, SUITE_NOW + 900, "{method}");
        }
        let signed =
            SignedRequest::parse(&parts("POST"), Presentation::Header, &suite_expectation())
                .unwrap();
        let id = signed.replay_id("key-a");
        assert_eq!(id, signed.replay_id("key-a"));
        assert_ne!(id, signed.replay_id("key-b"), "scoped per key");
        assert_ne!(id, signed.signature, "a digest, not the signature");
    }

    #[test]
    fn a_signing_key_never_prints() {
        let scope = CredentialScope {
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
        };
        let key = Sigv4SigningKey::derive(SUITE_SECRET, &scope);
        assert_eq!(format!("{key:?}"), "Sigv4SigningKey(<redacted>)");
    }

    fn fault<T: std::fmt::Debug>(result: Result<T, Sigv4Error>) -> Sigv4Fault {
        result.expect_err("refused").fault
    }

    #[test]
    fn signed_headers_are_checked_where_they_stand_and_bad_lists_refused() {
        let signed = SignedHeaders::parse(Cow::Borrowed("content-type;host;x-amz-date")).unwrap();
        assert_eq!(
            signed.names().collect::<Vec<_>>(),
            ["content-type", "host", "x-amz-date"]
        );
        assert!(signed.contains("host"));
        assert!(!signed.contains("hos"));
        assert!(!signed.contains("host;x-amz-date"));
        let sixty_five = (0..65)
            .map(|i| format!("h{i:03}"))
            .collect::<Vec<_>>()
            .join(";");
        let sixty_four = (0..64)
            .map(|i| format!("h{i:03}"))
            .collect::<Vec<_>>()
            .join(";");
        assert!(SignedHeaders::parse(Cow::Owned(sixty_four)).is_ok());
        for bad in [
            "",
            ";",
            "host;",
            ";host",
            "host;;x-amz-date",
            "host;host",
            "host;host;x-amz-date",
            "host;x-amz-date;x-amz-date",
            "x-amz-date;host",
            "Host;x-amz-date",
            "host x-amz-date",
            "host,x-amz-date",
            "hôst;x-amz-date",
            "host;x-amz-date\u{0}",
            "authorization;host;x-amz-date",
            &sixty_five,
        ] {
            assert_eq!(
                fault(SignedHeaders::parse(Cow::Borrowed(bad))),
                Sigv4Fault::MalformedAuthorization,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_credential_splits_where_it_stands_and_malformed_ones_are_refused() {
        let credential = Credential::parse("AKID/20150830/us-east-1/service/aws4_request").unwrap();
        assert_eq!(
            [
                credential.access_key_id,
                credential.date,
                credential.region,
                credential.service,
                credential.terminator
            ],
            ["AKID", "20150830", "us-east-1", "service", "aws4_request"]
        );
        let long_id = format!(
            "{}/20150830/us-east-1/service/aws4_request",
            "A".repeat(129)
        );
        let longest_id = format!(
            "{}/20150830/us-east-1/service/aws4_request",
            "A".repeat(128)
        );
        assert!(Credential::parse(&longest_id).is_ok());
        for (bad, expected) in [
            ("", Sigv4Fault::MalformedAuthorization),
            ("AKID", Sigv4Fault::MalformedAuthorization),
            (
                "AKID/20150830/us-east-1/service",
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                "AKID/20150830/us-east-1/service/aws4_request/x",
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                "/20150830/us-east-1/service/aws4_request",
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                "AKID/20150830//service/aws4_request",
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                "AKID/20150830/us-east-1//aws4_request",
                Sigv4Fault::MalformedAuthorization,
            ),
            (&long_id, Sigv4Fault::MalformedAuthorization),
            (
                "AKID/2015083/us-east-1/service/aws4_request",
                Sigv4Fault::InvalidCredentialScope,
            ),
            (
                "AKID/201508300/us-east-1/service/aws4_request",
                Sigv4Fault::InvalidCredentialScope,
            ),
            (
                "AKID/2015083a/us-east-1/service/aws4_request",
                Sigv4Fault::InvalidCredentialScope,
            ),
            (
                "AKID/２０１５0830/us-east-1/service/aws4_request",
                Sigv4Fault::InvalidCredentialScope,
            ),
        ] {
            assert_eq!(fault(Credential::parse(bad)), expected, "{bad:?}");
        }
    }

    #[test]
    fn a_signature_is_64_lower_case_hex_digits_and_nothing_else() {
        let good = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        assert_eq!(hex(&parse_signature(good).unwrap()), good);
        let accented = "é".repeat(32);
        for bad in [
            "",
            &good[..63],
            &format!("{good}0"),
            &good.to_uppercase(),
            &format!("{}g", &good[..63]),
            &format!(" {}", &good[..63]),
            accented.as_str(),
        ] {
            assert_eq!(
                fault(parse_signature(bad)),
                Sigv4Fault::MalformedAuthorization,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn header_values_are_trimmed_and_their_inner_blanks_collapsed() {
        for (value, canonical) in [
            ("a", "a"),
            ("  a b  ", "a b"),
            ("\ta \t  b\t", "a b"),
            ("a  b   c", "a b c"),
            ("", ""),
            (" \t ", ""),
            ("é  ü", "é ü"),
        ] {
            let mut out = String::new();
            push_trimmed(&mut out, value);
            assert_eq!(out, canonical, "{value:?}");
        }
    }

    #[test]
    fn the_scratch_string_is_lent_once_at_a_time_and_let_go_when_large() {
        with_scratch(|outer| {
            outer.push_str("outer");
            with_scratch(|inner| {
                assert!(inner.is_empty(), "a string of its own");
                inner.push_str("inner");
            });
            assert_eq!(outer, "outer");
        });
        with_scratch(|scratch| {
            assert!(scratch.is_empty(), "emptied before each use");
            scratch.push_str(&"x".repeat(1 << 20));
        });
        with_scratch(|scratch| assert!(scratch.capacity() < 1 << 20));
    }

    /// Parses a request signed for the suite's key whose headers are `headers`
    /// (the Authorization header among them, as bytes).
    fn parse_raw(headers: &[(&str, &[u8])]) -> Result<(), Sigv4Error> {
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query: "",
            headers,
            body_sha256: EMPTY_PAYLOAD_SHA256,
        };
        SignedRequest::parse(&parts, Presentation::Header, &suite_expectation()).map(|_| ())
    }

    #[test]
    fn non_ascii_and_overlong_parts_are_refused_with_their_fault_never_a_panic() {
        let good = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let host: (&str, &[u8]) = ("host", b"example.amazonaws.com");
        let date: (&str, &[u8]) = ("x-amz-date", SUITE_DATE.as_bytes());
        let long_header = "a".repeat(100_000);
        let long_scope = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/{}/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={good}",
            "r".repeat(100_000)
        );
        // Sorted between host and x-amz-date, and not sent.
        let long_signed = authorization(&format!("host;i{long_header};x-amz-date"), good);
        let twice = |name: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, {name}, Signature={good}"
            )
        };
        let signed_twice = twice("SignedHeaders=host;x-amz-date");
        let credential_twice =
            twice("Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request");
        let accented = authorization("host;x-amz-date", &"é".repeat(32));
        let non_ascii_scope = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-éast-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let missing_signature = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date";
        let plain = authorization("host;x-amz-date", good);
        type Case<'a> = (Vec<(&'a str, &'a [u8])>, Sigv4Fault);
        let cases: Vec<Case<'_>> = vec![
            (
                vec![
                    host,
                    date,
                    ("authorization", b"AWS4-HMAC-SHA256 Credential=\xff\xfe"),
                ],
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                vec![host, date, ("authorization", accented.as_bytes())],
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                vec![host, date, ("authorization", non_ascii_scope.as_bytes())],
                Sigv4Fault::InvalidCredentialScope,
            ),
            (
                vec![host, date, ("authorization", missing_signature.as_bytes())],
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                vec![host, date, ("authorization", signed_twice.as_bytes())],
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                vec![host, date, ("authorization", credential_twice.as_bytes())],
                Sigv4Fault::MalformedAuthorization,
            ),
            (
                vec![host, date, ("authorization", long_scope.as_bytes())],
                Sigv4Fault::InvalidCredentialScope,
            ),
            (
                vec![host, date, ("authorization", long_signed.as_bytes())],
                Sigv4Fault::SignedHeaderMissing,
            ),
            (
                vec![
                    host,
                    ("x-amz-date", b"20150830T12360\xc3\xa9"),
                    ("authorization", plain.as_bytes()),
                ],
                Sigv4Fault::MalformedDate,
            ),
            (
                vec![
                    host,
                    ("x-amz-date", "20150830T12360é".as_bytes()),
                    ("authorization", plain.as_bytes()),
                ],
                Sigv4Fault::MalformedDate,
            ),
            (
                vec![
                    host,
                    ("x-amz-date", b"\xff\xfe"),
                    ("authorization", plain.as_bytes()),
                ],
                Sigv4Fault::MalformedDate,
            ),
            (
                vec![
                    host,
                    ("x-amz-date", long_header.as_bytes()),
                    ("authorization", plain.as_bytes()),
                ],
                Sigv4Fault::MalformedDate,
            ),
        ];
        for (headers, expected) in cases {
            let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
            assert_eq!(fault(parse_raw(&headers)), expected, "{names:?}");
        }
        // A signed value that is not UTF-8 is canonicalised with U+FFFD in
        // place of the bad bytes: parsed, and the suite's signature does not
        // match it.
        assert!(
            parse_raw(&[
                ("host", b"\xffexample"),
                date,
                ("authorization", plain.as_bytes())
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_mismatch_is_explained_with_what_was_signed() {
        let authorization = authorization("host;x-amz-date", &"0".repeat(64));
        let headers: Vec<(&str, &[u8])> = vec![
            ("host", b"example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE.as_bytes()),
            ("authorization", authorization.as_bytes()),
        ];
        let parts = RequestParts {
            method: "get",
            path: "/",
            query: "",
            headers: &headers,
            body_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let signed = SignedRequest::parse(&parts, Presentation::Header, &suite_expectation())
            .expect("well formed");
        assert!(!signed.verify(&Sigv4SigningKey::derive(SUITE_SECRET, &signed.scope)));
        assert_eq!(
            signed.canonical_request(),
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed.string_to_sign(),
            string_to_sign(SUITE_DATE, &signed.scope, &signed.canonical_request())
        );
        assert!(
            signed
                .string_to_sign()
                .ends_with("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        );
    }
}
