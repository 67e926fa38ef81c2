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
    // One buffer per thread, reused: the access line is written for every
    // request, and building it from owned pieces cost a dozen allocations.
    thread_local! {
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        text_line(line, buf.timestamp_millis(), record);
        buf.write_all(line.as_bytes())
    })
}

/// `record` as one text line (with its newline) appended to `line`.
fn text_line(line: &mut String, timestamp: impl std::fmt::Display, record: &log::Record) {
    use std::fmt::Write as _;
    let _ = write!(
        line,
        "[{timestamp} {:<5} {}] {}",
        record.level(),
        record.target(),
        record.args()
    );
    let mut fields = TextFields {
        line,
        has_request_id: false,
    };
    let _ = record.key_values().visit(&mut fields);
    if !fields.has_request_id
        && let Some(id) = request::current_id()
    {
        fields.push(Key::from_str("request_id"), Value::from_display(&id));
    }
    line.push('\n');
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

/// Key-values as text after the message, ` key=value` each; an empty value
/// means "not known" and is left out; a value with a space or a quote is
/// written as a JSON string.
struct TextFields<'a> {
    line: &'a mut String,
    has_request_id: bool,
}

impl TextFields<'_> {
    fn push(&mut self, key: Key<'_>, value: Value<'_>) {
        use std::fmt::Write as _;
        let before = self.line.len();
        self.line.push(' ');
        self.line.push_str(key.as_str());
        self.line.push('=');
        let start = self.line.len();
        let _ = write!(self.line, "{value}");
        let written = &self.line[start..];
        if written.is_empty() {
            self.line.truncate(before);
            return;
        }
        self.has_request_id |= key.as_str() == "request_id";
        if written.contains(|c: char| c.is_whitespace() || c == '"') {
            let quoted = serde_json::Value::String(written.to_owned()).to_string();
            self.line.truncate(start);
            self.line.push_str(&quoted);
        }
    }
}

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.push(key, value);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(pairs: &[(&str, &str)]) -> String {
        let mut line = String::new();
        let args = format_args!("POST /oauth/token 200");
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("keyport::access")
            .args(args)
            .key_values(&pairs)
            .build();
        text_line(&mut line, "T", &record);
        line
    }

    #[test]
    fn a_text_line_has_its_fields_after_the_message_and_leaves_out_empty_ones() {
        let line = line_of(&[
            ("request_id", "r-1"),
            ("status", "200"),
            ("credential_id", ""),
            ("client_address", "127.0.0.1"),
        ]);
        assert_eq!(
            line,
            "[T INFO  keyport::access] POST /oauth/token 200 request_id=r-1 status=200 \
             client_address=127.0.0.1\n"
        );
    }

    #[test]
    fn a_value_with_a_space_or_a_quote_is_a_json_string() {
        let line = line_of(&[("request_id", "r-2"), ("reason", "bad \"secret\"\tnow")]);
        assert_eq!(
            line,
            "[T INFO  keyport::access] POST /oauth/token 200 request_id=r-2 \
             reason=\"bad \\\"secret\\\"\\tnow\"\n"
        );
    }

    #[test]
    fn a_line_without_a_request_id_field_takes_none_outside_a_request() {
        let line = line_of(&[("status", "200"), ("error", "")]);
        assert_eq!(
            line,
            "[T INFO  keyport::access] POST /oauth/token 200 status=200\n"
        );
    }
}
