//! Reading request bodies with a hard size limit, before any parsing.

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::ApiError;

#[derive(Debug)]
pub enum BodyError {
    TooLarge {
        limit: usize,
    },
    /// The client went away or sent a broken body.
    Unreadable,
}

/// Reads the whole body, refusing as soon as it passes `limit` bytes (a
/// declared Content-Length above the limit is refused without reading).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if let Some(declared) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && declared > limit as u64
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The media type of the request without parameters, lower-cased.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads a JSON request body: 415 unless JSON, 413 past `limit`, 400 for
/// broken JSON. Returns the raw bytes too, for callers that digest them.
pub async fn read_json_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Bytes, serde_json::Value), ApiError> {
    if !media_type(req).is_some_and(|m| m == "application/json" || m.ends_with("+json")) {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    let body = read_limited(req, payload, limit).await?;
    let value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok((body, value))
}

/// Reads a JSON request body into `T`, as [`read_json_body`] does; JSON of
/// the wrong shape is 422. A member named twice in any object is refused
/// (400 `invalid_json`): a plain map would keep the last one silently, so
/// two readers of one body could disagree about what it says.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    if !media_type(req).is_some_and(|m| m == "application/json" || m.ends_with("+json")) {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    let body = read_limited(req, payload, limit).await?;
    let UniqueMembers(value) = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("the body does not have the expected fields: {e}"),
        )
    })
}

/// A JSON value whose objects name each member once.
struct UniqueMembers(serde_json::Value);

impl<'de> serde::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, SeqAccess, Visitor};
        use serde_json::{Map, Number, Value};

        struct UniqueVisitor;

        impl<'de> Visitor<'de> for UniqueVisitor {
            type Value = UniqueMembers;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<UniqueMembers, E> {
                Number::from_f64(v)
                    .map(|n| UniqueMembers(Value::Number(n)))
                    .ok_or_else(|| E::custom("a number is not finite"))
            }
            fn visit_str<E>(self, v: &str) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<UniqueMembers, E> {
                Ok(UniqueMembers(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueMembers, A::Error> {
                let mut items = Vec::new();
                while let Some(UniqueMembers(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(UniqueMembers(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMembers, A::Error> {
                let mut members = Map::new();
                while let Some(name) = map.next_key::<String>()? {
                    let UniqueMembers(value) = map.next_value()?;
                    if members.contains_key(&name) {
                        let shown: String = name.chars().take(64).collect();
                        return Err(de::Error::custom(format!(
                            "member `{shown}` appears more than once"
                        )));
                    }
                    members.insert(name, value);
                }
                Ok(UniqueMembers(Value::Object(members)))
            }
        }

        deserializer.deserialize_any(UniqueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::UniqueMembers;

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        for twice in [
            r#"{"name":"a","name":"b"}"#,
            r#"{"outer":{"x":1,"x":1}}"#,
            r#"[{"k":true,"k":false}]"#,
        ] {
            assert!(
                serde_json::from_str::<UniqueMembers>(twice).is_err(),
                "accepted {twice}"
            );
        }
        let UniqueMembers(value) =
            serde_json::from_str(r#"{"name":"a","scopes":["x","x"],"n":1.5,"z":null}"#).unwrap();
        assert_eq!(value["name"], "a");
        assert_eq!(value["scopes"][1], "x");
    }
}
