//! Where logs and traces go: text lines (the default) or JSON lines (`--log-format json`) on
//! stderr, filtered by `DAEHWA_LOG` (tracing's env-filter syntax), and optionally every span
//! exported over OTLP/HTTP (protobuf) to a collector (`--otlp-endpoint URL`).
//!
//! Every log line written while a request is handled is inside its `request` span, whose
//! `request_id` field is the `X-Request-Id` of the response: in JSON lines it is in `span` and
//! `spans`; in text lines it is in the span prefix.

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The format of the log lines on stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields, the current span and its parents
    Json,
}

/// Flushes and stops the span export when dropped (at the end of `main`).
pub struct Guard(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("daehwa: exporting the last spans failed: {e}");
            }
        }
    }
}

/// `URL` as given, or with OTLP's `/v1/traces` path added when it names only the collector
/// (`http://127.0.0.1:4318`, as OTEL_EXPORTER_OTLP_ENDPOINT does).
pub fn traces_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.ends_with("/v1/traces") {
        e.to_string()
    } else {
        format!("{e}/v1/traces")
    }
}

/// Installs the global subscriber.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Guard> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DAEHWA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,server=info,daehwa=info"));
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
    });
    let provider = match otlp_endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        None => None,
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(traces_url(endpoint))
                .build()
                .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint}: {e}"))?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("daehwa").build();
            Some(opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("daehwa")));
    tracing_subscriber::registry().with(filter).with(text).with(json).with(otel).try_init()?;
    Ok(Guard(provider))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(super::traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(super::traces_url("http://127.0.0.1:4318/"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
