//! Energy per answer: every step's energy is measured and shared among the step's sequences by
//! their share of its tokens.
//!
//! A step's energy comes from the CPU's RAPL counters where the machine exposes them (the
//! package domains under `/sys/class/powercap/intel-rapl*`, which AMD CPUs report through the
//! same interface; the counter covers the whole package, so other work on the machine during a
//! step is counted too), otherwise it is estimated: the CPU time the engine's threads used in
//! the step (the kernel's per-thread clocks, spinning included) times a per-core power figure
//! (`--watts-per-core`, by default one for the CPU model, see [`default_watts_per_core`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kernels::pool::ThreadPool;

/// How joules were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    /// Measured by the CPU's RAPL energy counters.
    Rapl,
    /// CPU time times a per-core power figure.
    Estimate,
}

impl EnergyMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::Rapl => "rapl",
            EnergyMethod::Estimate => "estimate",
        }
    }
}

/// How energy is measured.
#[derive(Clone, Debug, Default)]
pub struct EnergyConfig {
    /// Watts one busy core draws; `None`: [`default_watts_per_core`]. Setting it also turns
    /// RAPL off (the operator asked for this figure).
    pub watts_per_core: Option<f64>,
    /// Where the powercap tree is (`/sys/class/powercap`); tests point it elsewhere.
    pub powercap_root: Option<PathBuf>,
}

/// One RAPL package domain: its counter file and the counter's range (it wraps).
#[derive(Clone, Debug)]
struct Domain {
    energy_uj: PathBuf,
    max_uj: u64,
}

/// The meter of one engine thread.
#[derive(Clone, Debug)]
pub struct EnergyMeter {
    domains: Vec<Domain>,
    watts_per_core: f64,
}

/// A reading at a step boundary.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    cpu: Duration,
    rapl_uj: Vec<u64>,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The package domains (`intel-rapl:N`, not their `:N:M` subzones) whose counters can be read.
fn rapl_domains(root: &Path) -> Vec<Domain> {
    let Ok(dir) = std::fs::read_dir(root) else { return Vec::new() };
    let mut out: Vec<(String, Domain)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("intel-rapl:")?;
            if rest.contains(':') || rest.parse::<u32>().is_err() {
                return None;
            }
            let p = e.path();
            let energy_uj = p.join("energy_uj");
            read_u64(&energy_uj)?;
            let max_uj = read_u64(&p.join("max_energy_range_uj")).filter(|&m| m > 0).unwrap_or(u64::MAX);
            Some((name, Domain { energy_uj, max_uj }))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, d)| d).collect()
}

/// Watts per busy core for the CPU named in `/proc/cpuinfo`: the family's typical package power
/// divided by its cores (server parts draw less per core than desktop ones). An estimate, and
/// reported as one.
pub fn default_watts_per_core() -> f64 {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_lowercase()))
        .unwrap_or_default();
    watts_for_model(&model)
}

fn watts_for_model(model: &str) -> f64 {
    const TABLE: &[(&str, f64)] = &[
        // EPYC 9004/9005: 200-400 W over 32-128 cores.
        ("epyc", 3.5),
        // Xeon Scalable 4th-6th gen: 250-350 W over 32-64 cores.
        ("xeon", 5.0),
        ("threadripper", 5.0),
        // Apple and other laptop/mobile parts.
        ("apple", 2.0),
        ("ryzen", 8.0),
        ("core(tm) i", 10.0),
        ("core i", 10.0),
        ("core ultra", 8.0),
    ];
    TABLE.iter().find(|(k, _)| model.contains(k)).map_or(5.0, |&(_, w)| w)
}

impl EnergyMeter {
    pub fn new(cfg: &EnergyConfig) -> Self {
        let domains = match cfg.watts_per_core {
            Some(_) => Vec::new(),
            None => rapl_domains(cfg.powercap_root.as_deref().unwrap_or(Path::new("/sys/class/powercap"))),
        };
        let watts_per_core = cfg.watts_per_core.filter(|w| w.is_finite() && *w > 0.0).unwrap_or_else(default_watts_per_core);
        EnergyMeter { domains, watts_per_core }
    }

    pub fn method(&self) -> EnergyMethod {
        if self.domains.is_empty() {
            EnergyMethod::Estimate
        } else {
            EnergyMethod::Rapl
        }
    }

    pub fn watts_per_core(&self) -> f64 {
        self.watts_per_core
    }

    /// Reads the counters (on the engine thread, which also runs kernel tasks).
    pub fn read(&self, pool: &ThreadPool) -> Reading {
        if !self.domains.is_empty() {
            return Reading { cpu: Duration::ZERO, rapl_uj: self.domains.iter().map(|d| read_u64(&d.energy_uj).unwrap_or(0)).collect() };
        }
        Reading { cpu: pool.workers_cpu_time() + kernels::cputime::thread_cpu_time(), rapl_uj: Vec::new() }
    }

    /// Microjoules between two readings (a wrapped counter counts across its range).
    pub fn microjoules(&self, a: &Reading, b: &Reading) -> u64 {
        if self.domains.is_empty() {
            let cpu = b.cpu.saturating_sub(a.cpu);
            return (cpu.as_secs_f64() * self.watts_per_core * 1e6) as u64;
        }
        self.domains
            .iter()
            .zip(a.rapl_uj.iter().zip(&b.rapl_uj))
            .map(|(d, (&x, &y))| if y >= x { y - x } else { (d.max_uj - x).saturating_add(y) })
            .sum()
    }
}

/// Shares `uj` among items by their token counts (the remainder to the largest, so nothing is
/// lost to rounding).
pub fn share(uj: u64, tokens: &[usize], out: &mut Vec<u64>) {
    out.clear();
    let total: usize = tokens.iter().sum();
    if total == 0 {
        out.extend(tokens.iter().map(|_| 0));
        return;
    }
    out.extend(tokens.iter().map(|&t| (u128::from(uj) * t as u128 / total as u128) as u64));
    let rest = uj - out.iter().sum::<u64>();
    if let Some(i) = (0..tokens.len()).max_by_key(|&i| tokens[i]) {
        out[i] += rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_tokens_and_add_up() {
        let mut out = Vec::new();
        share(1000, &[1, 1, 2], &mut out);
        assert_eq!(out, [250, 250, 500]);
        share(10, &[1, 1, 1], &mut out);
        assert_eq!(out.iter().sum::<u64>(), 10);
        share(7, &[0, 0], &mut out);
        assert_eq!(out, [0, 0]);
    }

    #[test]
    fn rapl_counters_are_read_and_wrap() {
        let root = std::env::temp_dir().join(format!("daehwa-rapl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (name, e, max) in [("intel-rapl:0", "1000", "5000"), ("intel-rapl:0:0", "7", "9"), ("intel-rapl:1", "4000", "5000")] {
            std::fs::create_dir_all(root.join(name)).unwrap();
            std::fs::write(root.join(name).join("energy_uj"), e).unwrap();
            std::fs::write(root.join(name).join("max_energy_range_uj"), max).unwrap();
        }
        let m = EnergyMeter::new(&EnergyConfig { watts_per_core: None, powercap_root: Some(root.clone()) });
        assert_eq!(m.method(), EnergyMethod::Rapl);
        let pool = ThreadPool::new(1);
        let a = m.read(&pool);
        assert_eq!(a.rapl_uj, [1000, 4000], "subzones are not counted twice");
        std::fs::write(root.join("intel-rapl:0/energy_uj"), "1500").unwrap();
        std::fs::write(root.join("intel-rapl:1/energy_uj"), "200").unwrap();
        let b = m.read(&pool);
        assert_eq!(m.microjoules(&a, &b), 500 + (1000 + 200));
        // An operator's figure wins over the counters; no counters: an estimate.
        let m = EnergyMeter::new(&EnergyConfig { watts_per_core: Some(4.0), powercap_root: Some(root.clone()) });
        assert_eq!((m.method(), m.watts_per_core()), (EnergyMethod::Estimate, 4.0));
        let m = EnergyMeter::new(&EnergyConfig { watts_per_core: None, powercap_root: Some(root.join("none")) });
        assert_eq!(m.method(), EnergyMethod::Estimate);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn estimate_is_cpu_time_times_watts() {
        let m = EnergyMeter::new(&EnergyConfig { watts_per_core: Some(10.0), powercap_root: None });
        let a = Reading { cpu: Duration::from_millis(100), rapl_uj: Vec::new() };
        let b = Reading { cpu: Duration::from_millis(350), rapl_uj: Vec::new() };
        assert_eq!(m.microjoules(&a, &b), 2_500_000);
        assert_eq!(watts_for_model("model name : amd epyc 9654"), 3.5);
        assert_eq!(watts_for_model("unknown"), 5.0);
    }
}
