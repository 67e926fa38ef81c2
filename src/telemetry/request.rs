//! The request being answered, as the log and the audit trail see it: its
//! id, and what the layers below learnt while answering (which credential,
//! which company, why a refusal). The observe middleware opens a context
//! per request; everything that runs inside that request reads or notes
//! into it without the value being threaded through every signature.
//! Outside a request (the CLI, background tasks) there is none, and notes
//! go nowhere.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;

/// `X-Request-Id`: the caller's (through a trusted proxy, when well
/// formed) or a new UUIDv7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

/// Longest request id accepted from a proxy; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

impl RequestId {
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    /// A proxy's id, when it is 1 to 128 characters of letters, digits and
    /// `-_.:` (UUIDs, ULIDs, hex and most tracing ids): nothing that could
    /// break a log line, a JSON string or a header.
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = !raw.is_empty()
            && raw.len() <= MAX_REQUEST_ID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        well_formed.then(|| RequestId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What was learnt about a request while answering it, for its log line.
/// Ids only: never a secret, a token or raw request text.
#[derive(Debug, Clone, Default)]
pub struct RequestNotes {
    /// `client_secret`, `api_key`, `access_token`, `session`, `sigv4`…
    pub credential_kind: Option<&'static str>,
    /// The key's client ID, the session's handle: an id, never a secret.
    pub credential_id: Option<String>,
    pub company_id: Option<String>,
    /// Why a credential was refused, for the operator (the answer says
    /// less): `unknown client`, `wrong secret`, `revoked`…
    pub refusal: Option<&'static str>,
}

struct RequestContext {
    id: RequestId,
    notes: RefCell<RequestNotes>,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Runs `answer` as request `id`; returns its output and what was noted.
pub async fn within<F: Future>(id: RequestId, answer: F) -> (F::Output, RequestNotes) {
    let context = RequestContext {
        id,
        notes: RefCell::new(RequestNotes::default()),
    };
    CURRENT
        .scope(context, async move {
            let output = answer.await;
            let notes = CURRENT.with(|c| c.notes.take());
            (output, notes)
        })
        .await
}

/// The id of the request being answered, if any.
pub fn current_id() -> Option<RequestId> {
    CURRENT.try_with(|c| c.id.clone()).ok()
}

fn note(change: impl FnOnce(&mut RequestNotes)) {
    let _ = CURRENT.try_with(|c| change(&mut c.notes.borrow_mut()));
}

/// The credential the request presented (`id`: never a secret).
pub fn note_credential(kind: &'static str, id: Option<&str>) {
    note(|n| {
        n.credential_kind = Some(kind);
        n.credential_id = id.map(str::to_owned);
    });
}

pub fn note_company(company_id: &str) {
    note(|n| n.company_id = Some(company_id.to_owned()));
}

/// Why a credential was refused. The first reason noted stands: the most
/// specific check notes first, a general one after it adds nothing.
pub fn note_refusal(reason: &'static str) {
    note(|n| {
        n.refusal.get_or_insert(reason);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken_from_a_proxy() {
        for good in [
            "0190f1c2-7a3b-7c4d-8e5f-0123456789ab",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "a",
            "trace.1:2_3",
        ] {
            assert_eq!(RequestId::parse(good).unwrap().as_str(), good);
        }
        let too_long = "a".repeat(129);
        for bad in [
            "",
            "has space",
            "new\nline",
            "quote\"d",
            "semi;colon",
            "ünïcode",
            too_long.as_str(),
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?} was accepted");
        }
    }

    #[tokio::test]
    async fn notes_belong_to_their_request_and_the_first_refusal_stands() {
        assert!(current_id().is_none());
        note_refusal("outside any request");
        let id = RequestId::generate();
        let (seen, notes) = within(id.clone(), async {
            note_credential("client_secret", Some("kp_abc"));
            note_refusal("wrong secret");
            note_refusal("throttled");
            current_id()
        })
        .await;
        assert_eq!(seen, Some(id));
        assert_eq!(notes.credential_kind, Some("client_secret"));
        assert_eq!(notes.credential_id.as_deref(), Some("kp_abc"));
        assert_eq!(notes.refusal, Some("wrong secret"));
        assert!(current_id().is_none());
    }
}
