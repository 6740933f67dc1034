//! `hf:ORG/REPO[:QUANT]`.

use crate::HubError;

/// A model on the hub: a repository and, optionally, the quantization asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfSpec {
    /// `ORG/REPO`.
    pub repo: String,
    /// As given (`q4_k_m` and `Q4_K_M` mean the same: quant names compare case-insensitively).
    pub quant: Option<String>,
    /// The branch, tag or commit (`main` unless `hf:ORG/REPO@REV[:QUANT]`).
    pub revision: String,
}

impl HfSpec {
    /// Whether `s` is meant as a hub model (`hf:...`).
    pub fn is_hf(s: &str) -> bool {
        s.starts_with("hf:")
    }

    pub fn parse(s: &str) -> Result<Self, HubError> {
        let bad = || HubError::BadSpec(s.to_string());
        let rest = s.strip_prefix("hf:").ok_or_else(bad)?;
        let (repo_rev, quant) = match rest.split_once(':') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, v)) => (r, v),
            None => (repo_rev, "main"),
        };
        let ok_part = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        let (org, name) = repo.split_once('/').ok_or_else(bad)?;
        if !ok_part(org) || !ok_part(name) || !ok_part(revision) {
            return Err(bad());
        }
        let quant = match quant {
            None => None,
            Some(q) if ok_part(q) => Some(q.to_string()),
            Some(_) => return Err(bad()),
        };
        Ok(HfSpec { repo: repo.to_string(), quant, revision: revision.to_string() })
    }
}

impl std::fmt::Display for HfSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hf:{}", self.repo)?;
        if self.revision != "main" {
            write!(f, "@{}", self.revision)?;
        }
        if let Some(q) = &self.quant {
            write!(f, ":{q}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repo_quant_and_revision() {
        let s = HfSpec::parse("hf:Qwen/Qwen3-8B-GGUF:q4_k_m").expect("valid");
        assert_eq!((s.repo.as_str(), s.quant.as_deref(), s.revision.as_str()), ("Qwen/Qwen3-8B-GGUF", Some("q4_k_m"), "main"));
        let s = HfSpec::parse("hf:unsloth/gpt-oss-20b-GGUF").expect("valid");
        assert_eq!(s.quant, None);
        assert_eq!(s.to_string(), "hf:unsloth/gpt-oss-20b-GGUF");
        let s = HfSpec::parse("hf:a/b@v1.0:Q8_0").expect("valid");
        assert_eq!((s.revision.as_str(), s.to_string().as_str()), ("v1.0", "hf:a/b@v1.0:Q8_0"));
        for bad in ["Qwen/Qwen3", "hf:", "hf:noslash", "hf:a/b/c", "hf:../b", "hf:a/b:", "hf:a/b:x/y", "hf:a/ b"] {
            assert!(HfSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
