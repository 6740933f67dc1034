//! The registry's series in `/metrics`: each model's state, loads, load time, failures and
//! unloads, and the memory accounted against `--model-memory`.

use std::fmt::Write as _;

use super::{ModelState, Models, Slot};

/// A Prometheus label value, escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Models {
    /// Appends the per-model series to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        let inner = self.lock();
        out.push_str("# HELP daehwa_model_state Each served model's state (1 for the current one).\n# TYPE daehwa_model_state gauge\n");
        for e in &inner.entries {
            let m = label(&e.spec.id);
            for st in ModelState::ALL {
                let _ = writeln!(out, "daehwa_model_state{{model=\"{m}\",state=\"{}\"}} {}", st.as_str(), u8::from(e.state() == st));
            }
        }
        type Series = (&'static str, &'static str, &'static str, fn(&super::Entry) -> String);
        let series: [Series; 5] = [
            ("daehwa_model_loads_total", "counter", "Times each model was loaded.", |e| e.counts.loads.to_string()),
            ("daehwa_model_load_failures_total", "counter", "Loads that failed.", |e| e.counts.load_failures.to_string()),
            ("daehwa_model_unloads_total", "counter", "Times each model was unloaded to make room under --model-memory.", |e| {
                e.counts.unloads.to_string()
            }),
            ("daehwa_model_load_seconds_total", "counter", "Seconds spent loading each model, all loads together.", |e| {
                e.counts.load_seconds.to_string()
            }),
            ("daehwa_model_last_load_seconds", "gauge", "Seconds the last load of each model took.", |e| e.counts.last_load_seconds.to_string()),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for e in &inner.entries {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", label(&e.spec.id), value(e));
            }
        }
        out.push_str("# HELP daehwa_model_memory_bytes Estimated memory each model holds (engine::memory::estimate: file, repacked weights, KV cache, scratch; 0 when unloaded).\n");
        out.push_str("# TYPE daehwa_model_memory_bytes gauge\n");
        for e in &inner.entries {
            let held = if matches!(e.slot, Slot::Unloaded) { 0 } else { e.memory };
            let _ = writeln!(out, "daehwa_model_memory_bytes{{model=\"{}\"}} {held}", label(&e.spec.id));
        }
        if let Some(b) = self.budget {
            let _ = writeln!(
                out,
                "# HELP daehwa_model_memory_budget_bytes --model-memory.\n# TYPE daehwa_model_memory_budget_bytes gauge\ndaehwa_model_memory_budget_bytes {b}"
            );
        }
    }
}
