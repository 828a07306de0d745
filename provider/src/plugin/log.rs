//! Logging in the format Terraform re-logs (TERRAFORM-PROTOCOL.md §5): one JSON object per line
//! on **stderr** with `@level`, `@message`, `@timestamp` (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, exactly
//! six fractional digits, UTC) and `@module`; every event field becomes an extra key. Terraform
//! then shows the line at its level under `TF_LOG` / `TF_LOG_PROVIDER`. stdout is never used: it
//! belongs to the handshake.
//!
//! Never log secrets: TF_LOG output ends up in bug reports.

use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer;

/// The `@module` of every line: Terraform shows it next to the message.
pub const MODULE: &str = "provider.blockstor";

/// Installs the global subscriber (JSON lines on stderr, level from the environment) and a panic
/// hook that logs panics as errors before the default hook prints them.
pub fn init() {
    let level = level_from_env(
        std::env::var("TF_LOG_PROVIDER").ok().as_deref(),
        std::env::var("TF_LOG").ok().as_deref(),
    );
    let _ = tracing_subscriber::registry()
        .with(JsonLines::new(std::io::stderr).with_filter(targets(level)))
        .try_init();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "the provider panicked");
        default_hook(info);
    }));
}

/// The level filter for `TF_LOG_PROVIDER`, else `TF_LOG`, as Terraform reads them: a level name
/// (any case), `off`, or any other non-empty value (e.g. `1`, `JSON`) meaning TRACE. Unset or
/// empty: INFO.
pub fn level_from_env(tf_log_provider: Option<&str>, tf_log: Option<&str>) -> LevelFilter {
    let value = [tf_log_provider, tf_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty());
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => LevelFilter::INFO,
        Some("off") => LevelFilter::OFF,
        Some("error") => LevelFilter::ERROR,
        Some("warn") => LevelFilter::WARN,
        Some("info") => LevelFilter::INFO,
        Some("debug") => LevelFilter::DEBUG,
        Some(_) => LevelFilter::TRACE,
    }
}

/// Our own events at `level`; the libraries underneath (h2, hyper, rustls, tonic) at WARN at
/// most: their TRACE output is per HTTP/2 frame and would bury the provider's own lines.
pub fn targets(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_target(env!("CARGO_CRATE_NAME"), level)
        .with_target("blockstor_proto", level)
}

/// A `tracing` layer writing each event as one Terraform-compatible JSON line.
pub struct JsonLines<W> {
    make_writer: W,
}

impl<W> JsonLines<W> {
    /// Writes lines to the writers `make_writer` hands out (stderr in production).
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = FieldsVisitor::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.extra));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldsVisitor::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            if let Some(stored) = span.extensions_mut().get_mut::<SpanFields>() {
                stored.0.extend(fields.extra);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Fields of the enclosing spans (innermost first) tag every line logged inside them,
        // e.g. the resource name of an apply.
        let mut span_fields = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(stored) = span.extensions().get::<SpanFields>() {
                    span_fields.extend(stored.0.iter().cloned());
                }
            }
        }
        let mut line = render(event, &span_fields, SystemTime::now()).into_bytes();
        line.push(b'\n');
        // One write per line, so concurrent events never interleave inside a line.
        let _ = self.make_writer.make_writer().write_all(&line);
    }
}

/// The fields recorded on a span, kept in the span's extensions.
struct SpanFields(Vec<(String, Value)>);

/// Renders one event as a JSON object (no trailing newline). Event fields win over span fields,
/// inner spans over outer ones, and nothing overrides the `@` keys.
fn render(event: &Event<'_>, span_fields: &[(String, Value)], now: SystemTime) -> String {
    let mut fields = FieldsVisitor::default();
    event.record(&mut fields);
    let mut object = Map::new();
    object.insert(
        "@level".into(),
        Value::from(level_name(event.metadata().level())),
    );
    // Terraform type-asserts @message to a string: always emit one, even if empty.
    object.insert(
        "@message".into(),
        Value::from(fields.message.unwrap_or_default()),
    );
    object.insert("@timestamp".into(), Value::from(timestamp(now)));
    object.insert("@module".into(), Value::from(MODULE));
    for (key, value) in fields.extra.into_iter().chain(span_fields.iter().cloned()) {
        object.entry(key).or_insert(value);
    }
    Value::Object(object).to_string()
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC: the only format Terraform parses (other formats make
/// it log the whole line verbatim at DEBUG).
fn timestamp(now: SystemTime) -> String {
    humantime::format_rfc3339_micros(now).to_string()
}

#[derive(Default)]
struct FieldsVisitor {
    message: Option<String>,
    extra: Vec<(String, Value)>,
}

impl FieldsVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.extra.push((field.name().to_owned(), value));
        }
    }
}

impl Visit for FieldsVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(level: LevelFilter, emit: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLines::new(move || writer.clone()).with_filter(level));
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn event_becomes_one_terraform_json_line_with_fields_as_keys() {
        let lines = capture(LevelFilter::TRACE, || {
            tracing::warn!(
                node = "n1",
                attempt = 3_u64,
                ok = false,
                "agent unreachable"
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["@level"], "warn");
        assert_eq!(line["@message"], "agent unreachable");
        assert_eq!(line["@module"], "provider.blockstor");
        assert_eq!(line["node"], "n1");
        assert_eq!(line["attempt"], 3);
        assert_eq!(line["ok"], false);
        let ts = line["@timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-28T18:06:47.123456Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    }

    #[test]
    fn span_fields_tag_the_lines_logged_inside_the_span() {
        let lines = capture(LevelFilter::TRACE, || {
            let outer = tracing::info_span!("apply", resource = "r1", node = "outer");
            let _outer = outer.enter();
            let inner = tracing::info_span!("agent", node = "n2");
            let _inner = inner.enter();
            tracing::info!(step = "luks", "applied");
            tracing::info!(resource = "event wins", "override");
        });
        assert_eq!(lines[0]["resource"], "r1");
        assert_eq!(lines[0]["node"], "n2", "the inner span wins");
        assert_eq!(lines[0]["step"], "luks");
        assert_eq!(lines[1]["resource"], "event wins");
    }

    #[test]
    fn every_level_uses_terraforms_name() {
        let lines = capture(LevelFilter::TRACE, || {
            tracing::trace!("t");
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        });
        let levels: Vec<_> = lines.iter().map(|l| l["@level"].clone()).collect();
        assert_eq!(levels, ["trace", "debug", "info", "warn", "error"]);
    }

    #[test]
    fn message_is_always_a_string() {
        let lines = capture(LevelFilter::TRACE, || tracing::info!(k = 1));
        assert_eq!(lines[0]["@message"], "");
    }

    #[test]
    fn timestamp_has_exactly_six_fractional_digits_in_utc() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5_000);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.000005Z");
        let whole = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(timestamp(whole), "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn events_below_the_level_are_dropped() {
        let lines = capture(LevelFilter::INFO, || {
            tracing::debug!("hidden");
            tracing::info!("shown");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["@message"], "shown");
    }

    #[test]
    fn library_events_are_capped_at_warn() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLines::new(move || writer.clone()).with_filter(targets(LevelFilter::TRACE)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "h2::codec", "frame");
            tracing::warn!(target: "h2::codec", "library warning");
            tracing::trace!("ours");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("\"frame\""), "{text}");
        assert!(text.contains("library warning"), "{text}");
        assert!(text.contains("\"ours\""), "{text}");
    }

    #[test]
    fn level_comes_from_tf_log_provider_then_tf_log() {
        assert_eq!(level_from_env(None, None), LevelFilter::INFO);
        assert_eq!(level_from_env(None, Some("DEBUG")), LevelFilter::DEBUG);
        assert_eq!(
            level_from_env(Some("error"), Some("TRACE")),
            LevelFilter::ERROR
        );
        assert_eq!(level_from_env(Some(""), Some("warn")), LevelFilter::WARN);
        assert_eq!(level_from_env(None, Some("JSON")), LevelFilter::TRACE);
        assert_eq!(level_from_env(None, Some("off")), LevelFilter::OFF);
    }
}
