//! Pulling GGUF models from the Hugging Face hub (or any mirror with the same API:
//! `HF_ENDPOINT`), shared by the `daehwa` binary (`daehwa pull hf:ORG/REPO[:QUANT]`) and the
//! server (the admin pull route), which is why it is a library crate of its own: the server
//! cannot depend on the binary, and the binary should not need the server to pull.
//!
//! - [`HfSpec`]: `hf:ORG/REPO[:QUANT]` parsed.
//! - [`Hub`]: the HTTP client (`HF_ENDPOINT`, `HF_TOKEN`), listing a repository's files
//!   (`GET /api/models/{repo}/tree/{rev}?recursive=true`) and fetching `/{repo}/resolve/{rev}/{path}`
//!   (redirects followed, also to another host, e.g. the CDN).
//! - [`select`]: which GGUF (or split set) of a repository is the asked quantization.
//! - [`download`]: one file into `<file>.partial` with HTTP Range requests on several
//!   connections, resumable after an interruption, checked against the hub's LFS sha256.
//! - [`pull`]: the whole pull into a models directory, with a [`Manifest`] recording the source.
//!
//! The HTTP client is ureq (blocking, rustls + ring, webpki roots): a download is a few
//! threads doing plain blocking reads, which the server runs on a blocking thread.

mod client;
mod disk;
mod download;
mod error;
mod manifest;
mod pull;
mod select;
mod spec;

pub use client::{Hub, HubOptions, RepoFile};
pub use disk::free_bytes;
pub use download::download;
pub use error::HubError;
pub use manifest::{Manifest, ManifestFile, MANIFEST_SUFFIX};
pub use pull::{find_pulled, pull, Progress, Pulled, SilentProgress};
pub use select::{quant_label, select, Candidate, QUANT_PREFERENCE};
pub use spec::HfSpec;
