//! `huyou-core`: Huyou (护幼), the classification of online information that may harm minors
//! (`../shared/MINORS.md`, copied in `data/MINORS.md`), and where it may be shown.
//!
//! - [`normalise`]: [`Normaliser`] undoes evasion spellings and keeps a map to original offsets.
//! - [`classify`]: [`Classifier`] gives each text its [`Category`] list: [`Code`], score,
//!   evidence spans, rules that fired. Lexicons and rules plus the n-gram [`model`].
//! - [`policy`]: [`Policy`] decides allow / deny / allow-with-notice per surface, audience and
//!   service from a versioned TOML file.
//! - [`audit`]: [`AuditLog`], a hash-chained JSON-lines log, synced per batch; [`audit::verify`].
//! - [`eval`]: precision, recall, F1 per code, macro-F1, false-positive rate on safe items;
//!   COLD CSV reading.
//!
//! No network, no async, no clock (time comes in with each audit entry).

#![forbid(unsafe_code)]

pub mod audit;
pub mod classify;
pub mod code;
pub mod eval;
pub mod model;
pub mod normalise;
pub mod policy;

pub use audit::{AuditLog, SyncHandle};
pub use classify::{Category, Classifier, Evidence, Meta};
pub use code::Code;
pub use normalise::{Normalised, Normaliser};
pub use policy::{Action, Audience, Decision, Medium, Policy, Service, Surface};
