//! [`Metrics`]: counters and histograms for `GET /metrics`, written in Prometheus' text
//! exposition format (version 0.0.4) by hand: a dozen series do not need a metrics framework.
//!
//! Updated lock-free from the request tasks (atomics); only the labelled request counter takes a
//! short mutex, once per HTTP request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::backend::Stats;

/// A cumulative histogram with fixed bucket bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    /// `counts[i]`: observations <= `bounds[i]` (not cumulative; summed when rendered).
    counts: Vec<AtomicU64>,
    overflow: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            overflow: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        match self.bounds.iter().position(|&b| s <= b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>() + self.overflow.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

const TTFT_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const ITL_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Why a request or connection was turned away (`daehwa_rejections_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The request queue was full (429).
    QueueFull,
    /// Over the connection cap (503).
    Connections,
    /// The body was over the limit (413).
    BodyTooLarge,
    /// The prompt did not fit in the context (400 `context_length_exceeded`).
    PromptTooLong,
    /// A malformed or out-of-range request (400).
    Invalid,
    /// A request head or body that did not arrive in time (connection closed, or 408).
    Timeout,
}

impl Rejection {
    pub const ALL: [Rejection; 6] = [
        Rejection::QueueFull,
        Rejection::Connections,
        Rejection::BodyTooLarge,
        Rejection::PromptTooLong,
        Rejection::Invalid,
        Rejection::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::Connections => "connections",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::PromptTooLong => "prompt_too_long",
            Rejection::Invalid => "invalid",
            Rejection::Timeout => "timeout",
        }
    }
}

/// Everything `/metrics` reports besides the engine's live [`Stats`].
pub struct Metrics {
    /// Counts per [`Rejection`], in [`Rejection::ALL`]'s order.
    rejections: [AtomicU64; 6],
    /// (route, status) -> count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Energy of finished sequences, in microjoules.
    pub energy_uj: AtomicU64,
    /// Time from submitting a sequence to its first token.
    pub ttft: Histogram,
    /// Time between consecutive tokens of one sequence.
    pub itl: Histogram,
    /// What the memory trimmer gave back (crate::memory).
    pub memory: crate::memory::TrimStats,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            rejections: Default::default(),
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            energy_uj: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BOUNDS),
            itl: Histogram::new(ITL_BOUNDS),
            memory: crate::memory::TrimStats::default(),
        }
    }
}

impl Metrics {
    pub fn reject(&self, why: Rejection) {
        self.rejections[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejections(&self, why: Rejection) -> u64 {
        self.rejections[why as usize].load(Ordering::Relaxed)
    }

    pub fn count_request(&self, route: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    /// Requests served so far, every route and status together.
    pub fn requests_total(&self) -> u64 {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    pub fn requests(&self, route: &str, status: u16) -> u64 {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(route.to_string(), status)).copied().unwrap_or(0)
    }

    /// The exposition text.
    pub fn render(&self, s: &Stats) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP daehwa_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE daehwa_requests_total counter\n");
        {
            let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for ((route, status), n) in m.iter() {
                let route = route.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(out, "daehwa_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        out.push_str("# HELP daehwa_rejections_total Requests and connections turned away, by reason.\n");
        out.push_str("# TYPE daehwa_rejections_total counter\n");
        for r in Rejection::ALL {
            let _ = writeln!(out, "daehwa_rejections_total{{reason=\"{}\"}} {}", r.label(), self.rejections(r));
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(&mut out, "daehwa_prompt_tokens_total", "Prompt tokens of finished sequences.", self.prompt_tokens.load(Ordering::Relaxed));
        counter(&mut out, "daehwa_cached_prompt_tokens_total", "Prompt tokens served from the prefix cache.", self.cached_tokens.load(Ordering::Relaxed));
        counter(&mut out, "daehwa_generated_tokens_total", "Generated tokens.", self.generated_tokens.load(Ordering::Relaxed));
        let joules = self.energy_uj.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "# HELP daehwa_energy_joules_total Energy of finished sequences (RAPL counters where readable, else CPU time times watts per core).\n# TYPE daehwa_energy_joules_total counter\ndaehwa_energy_joules_total {joules}");
        gauge(&mut out, "daehwa_queue_depth", "Sequences waiting to start.", s.queue_depth);
        gauge(&mut out, "daehwa_running_sequences", "Sequences being generated.", s.running);
        gauge(&mut out, "daehwa_kv_blocks_total", "KV cache blocks in the pool (all layer groups).", s.kv_blocks_total);
        gauge(&mut out, "daehwa_kv_blocks_used", "KV cache blocks held by running sequences (all layer groups).", s.kv_blocks_used);
        gauge(&mut out, "daehwa_kv_blocks_cached", "Unreferenced KV blocks kept for prefix reuse (all layer groups).", s.kv_blocks_cached);
        gauge(&mut out, "daehwa_kv_window_blocks_total", "Blocks of the sliding-window layers' group (part of daehwa_kv_blocks_total).", s.kv_window_blocks_total);
        gauge(&mut out, "daehwa_kv_window_blocks_used", "Window-group blocks held by running sequences.", s.kv_window_blocks_used);
        gauge(&mut out, "daehwa_kv_window_blocks_cached", "Unreferenced window-group blocks kept for prefix reuse.", s.kv_window_blocks_cached);
        self.ttft.render(&mut out, "daehwa_time_to_first_token_seconds", "Time from submission to the first token.");
        self.itl.render(&mut out, "daehwa_inter_token_latency_seconds", "Time between consecutive tokens of a sequence.");
        if let Some(rss) = crate::memory::resident_bytes() {
            gauge(&mut out, "daehwa_resident_memory_bytes", "Resident memory of the server process.", rss as usize);
        }
        counter(&mut out, "daehwa_memory_trims_total", "Times free heap memory was handed back to the system.", self.memory.trims.load(Ordering::Relaxed));
        counter(&mut out, "daehwa_memory_released_bytes_total", "Resident bytes the trims gave back.", self.memory.released_bytes.load(Ordering::Relaxed));
        out
    }
}

/// The engine's supervision figures: state (one gauge per state, 1 for the current one), panics,
/// preemptions and rejections by reason.
pub fn render_engine(out: &mut String, s: &Stats, state: crate::backend::EngineState) {
    use crate::backend::EngineState as E;
    out.push_str("# HELP daehwa_engine_state The engine's state (1 for the current one).\n# TYPE daehwa_engine_state gauge\n");
    for st in [E::Loading, E::Ok, E::Degraded, E::Stopping, E::Dead] {
        let _ = writeln!(out, "daehwa_engine_state{{state=\"{}\"}} {}", st.as_str(), u8::from(st == state));
    }
    let _ = writeln!(out, "# HELP daehwa_engine_panics_total Engine steps that panicked (their requests failed).");
    let _ = writeln!(out, "# TYPE daehwa_engine_panics_total counter\ndaehwa_engine_panics_total {}", s.panics_total);
    let _ = writeln!(out, "# HELP daehwa_engine_preemptions_total Sequences preempted for lack of KV blocks.");
    let _ = writeln!(out, "# TYPE daehwa_engine_preemptions_total counter\ndaehwa_engine_preemptions_total {}", s.preemptions_total);
    let _ = writeln!(out, "# HELP daehwa_engine_rejections_total Requests the engine refused, by reason.");
    let _ = writeln!(out, "# TYPE daehwa_engine_rejections_total counter");
    let _ = writeln!(out, "daehwa_engine_rejections_total{{reason=\"queue_full\"}} {}", s.rejected_queue_full_total);
    let _ = writeln!(out, "daehwa_engine_rejections_total{{reason=\"too_large\"}} {}", s.rejected_too_large_total);
}

/// The KV disk tier's figures (`--kv-disk`; all 0 when it is off).
pub fn render_kv_disk(out: &mut String, s: &Stats) {
    let d = &s.kv_disk;
    for (name, kind, help, v) in [
        ("daehwa_kv_disk_hits_total", "counter", "KV blocks read back from the disk tier (restart or RAM eviction).", d.hits),
        ("daehwa_kv_disk_misses_total", "counter", "Admissions whose next prefix block was in neither RAM nor the disk tier.", d.misses),
        ("daehwa_kv_disk_refused_total", "counter", "Disk tier block files refused as corrupt, truncated or foreign (deleted).", d.refused),
        ("daehwa_kv_disk_read_bytes_total", "counter", "Bytes of block files read back.", d.read_bytes),
        ("daehwa_kv_disk_written_bytes_total", "counter", "Bytes of block files written.", d.written_bytes),
        ("daehwa_kv_disk_writes_total", "counter", "Block files written.", d.writes),
        ("daehwa_kv_disk_writes_dropped_total", "counter", "Block writes dropped because the writer's queue was full.", d.writes_dropped),
        ("daehwa_kv_disk_evictions_total", "counter", "Block files deleted to stay within --kv-disk.", d.evicted),
        ("daehwa_kv_disk_bytes", "gauge", "Bytes of block files in the disk tier's directory.", d.bytes),
        ("daehwa_kv_disk_files", "gauge", "This model's block files in the disk tier.", d.files),
        ("daehwa_kv_disk_max_bytes", "gauge", "The disk tier's bound (--kv-disk; 0: off).", d.max_bytes),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    let secs = d.read_micros as f64 / 1e6;
    let _ = writeln!(out, "# HELP daehwa_kv_disk_read_seconds_total Engine-thread time spent reading blocks back.\n# TYPE daehwa_kv_disk_read_seconds_total counter\ndaehwa_kv_disk_read_seconds_total {secs}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_buckets() {
        let m = Metrics::default();
        m.count_request("/v1/chat/completions", 200);
        m.count_request("/v1/chat/completions", 200);
        m.count_request("/v1/models", 401);
        m.reject(Rejection::QueueFull);
        m.reject(Rejection::QueueFull);
        m.reject(Rejection::Timeout);
        m.ttft.observe(Duration::from_millis(20));
        m.ttft.observe(Duration::from_millis(70));
        m.ttft.observe(Duration::from_secs(100));
        let s = Stats {
            queue_depth: 3,
            running: 2,
            kv_blocks_total: 100,
            kv_blocks_used: 7,
            kv_blocks_cached: 5,
            kv_window_blocks_total: 40,
            kv_window_blocks_used: 4,
            kv_window_blocks_cached: 1,
            ..Stats::default()
        };
        let text = m.render(&s);
        for line in [
            "daehwa_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2",
            "daehwa_requests_total{route=\"/v1/models\",status=\"401\"} 1",
            "daehwa_queue_depth 3",
            "daehwa_rejections_total{reason=\"queue_full\"} 2",
            "daehwa_rejections_total{reason=\"timeout\"} 1",
            "daehwa_rejections_total{reason=\"connections\"} 0",
            "daehwa_kv_blocks_used 7",
            "daehwa_kv_blocks_cached 5",
            "daehwa_kv_window_blocks_total 40",
            "daehwa_kv_window_blocks_used 4",
            "daehwa_kv_window_blocks_cached 1",
            "daehwa_time_to_first_token_seconds_bucket{le=\"0.01\"} 0",
            "daehwa_time_to_first_token_seconds_bucket{le=\"0.025\"} 1",
            "daehwa_time_to_first_token_seconds_bucket{le=\"0.1\"} 2",
            "daehwa_time_to_first_token_seconds_bucket{le=\"60\"} 2",
            "daehwa_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3",
            "daehwa_time_to_first_token_seconds_count 3",
            "daehwa_time_to_first_token_seconds_sum 100.09",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        assert_eq!(m.requests("/v1/chat/completions", 200), 2);
    }
}
