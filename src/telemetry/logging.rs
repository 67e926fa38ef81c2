//! Log lines through `log` and `env_logger`, as text for people or as one
//! JSON object per line for collectors (`log_format`). A line written while
//! a request is answered carries that request's id. Structured fields are
//! `log`'s key-values (`log::info!(status = 200; "…")`): in text they
//! follow the message as `key=value`, in JSON they are members.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use log::kv::{Key, Value, VisitSource};

use super::request;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Read by every line, set once the settings are known (the logger starts
/// before them, so that loading them can log).
static FORMAT: AtomicU8 = AtomicU8::new(0);

pub fn set_format(format: LogFormat) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

fn format() -> LogFormat {
    match FORMAT.load(Ordering::Relaxed) {
        1 => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Starts the logger: level from `RUST_LOG` (default `info`), format from
/// `KEYPORT_LOG_FORMAT` until the settings say otherwise.
pub fn init() {
    if let Some(format) = std::env::var("KEYPORT_LOG_FORMAT")
        .ok()
        .as_deref()
        .and_then(LogFormat::parse)
    {
        set_format(format);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| match format() {
            LogFormat::Text => write_text(buf, record),
            LogFormat::Json => write_json(buf, record),
        })
        .init();
}

fn write_text(buf: &mut env_logger::fmt::Formatter, record: &log::Record) -> std::io::Result<()> {
    let mut line = format!(
        "[{} {:<5} {}] {}",
        buf.timestamp_millis(),
        record.level(),
        record.target(),
        record.args()
    );
    let mut fields = Fields::default();
    let _ = record.key_values().visit(&mut fields);
    if !fields.has_request_id
        && let Some(id) = request::current_id()
    {
        fields.pairs.push(("request_id".to_owned(), id.to_string()));
    }
    for (key, value) in &fields.pairs {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"') {
            line.push_str(&serde_json::Value::String(value.clone()).to_string());
        } else {
            line.push_str(value);
        }
    }
    writeln!(buf, "{line}")
}

fn write_json(buf: &mut env_logger::fmt::Formatter, record: &log::Record) -> std::io::Result<()> {
    let mut object = serde_json::Map::new();
    object.insert(
        "time".to_owned(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    object.insert("level".to_owned(), record.level().as_str().into());
    object.insert("target".to_owned(), record.target().into());
    object.insert("message".to_owned(), record.args().to_string().into());
    let mut fields = JsonFields(&mut object);
    let _ = record.key_values().visit(&mut fields);
    if !object.contains_key("request_id")
        && let Some(id) = request::current_id()
    {
        object.insert("request_id".to_owned(), id.to_string().into());
    }
    writeln!(buf, "{}", serde_json::Value::Object(object))
}

/// Key-values as text; an empty value means "not known" and is left out.
#[derive(Default)]
struct Fields {
    pairs: Vec<(String, String)>,
    has_request_id: bool,
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let value = value.to_string();
        if !value.is_empty() {
            self.has_request_id |= key.as_str() == "request_id";
            self.pairs.push((key.as_str().to_owned(), value));
        }
        Ok(())
    }
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(x) = value.to_f64() {
            x.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else {
            let text = value.to_string();
            if text.is_empty() {
                return Ok(());
            }
            text.into()
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}
