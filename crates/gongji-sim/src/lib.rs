//! `gongji-sim`: a seeded synthetic insured population and its year of family mutual aid,
//! calibrated to the national statistics, and deterministic simulation testing.
//!
//! - [`calib`]: the published figures with their sources, and the monthly quotas
//!   ([`calib::MonthPlan`]) derived from them at a population factor.
//! - [`population`]: households of employees (in service and retired) and residents in real
//!   `admdvs` places, their monthly crediting and the bindings they make.
//! - [`workload`]: the [`workload::Generator`] that drives a [`workload::Target`] day by day
//!   (crediting, visits, mutual-aid settlements, contributions, wallet transfers, accept /
//!   decline / expiry, cancellations, reversals), steering each month to its quota.
//! - [`runner`]: `gongji simulate` — the generator against the real engine, then the
//!   engine's own statistics table beside the scaled published figures.
//! - [`federated`]: `gongji simulate --engines K` — the same run over K federated engines
//!   that split the provinces, joined by a reliable in-process bus ([`federated::Hub`]).
//! - [`dst`]: the generator against an engine on fault-injecting storage, crashed and
//!   restarted at random, checked against an independent reference state.

pub mod calib;
pub mod dist;
pub mod dst;
pub mod federated;
pub mod population;
pub mod runner;
pub mod workload;
