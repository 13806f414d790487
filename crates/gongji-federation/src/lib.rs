//! `gongji-federation`: engines that own provinces, and cross-engine wallet transfers
//! exactly once (issue 14, docs/FEDERATION.md).
//!
//! The protocol itself is journaled state in `gongji-core` (`gongji_core::federation`,
//! `State::apply_entry`). This crate tests it as a whole: [`dst::run`] simulates K engines,
//! each a [`node::Node`] whose journal lives on `gongji_journal::FaultStorage` and crashes at
//! random, and a [`bus::Bus`] that drops, duplicates, reorders, delays, damages and
//! partitions; after healing, every exchange must be closed the same way on both sides and
//! money conserved per engine and nationally. [`relay`] carries the same messages over NATS
//! JetStream (tested against a real `nats-server`); [`reconcile`] compares engines' counters
//! per pair and day; [`serve`] runs the relay of a served engine (`gongji serve` with
//! `[federation]`) between its writer and the bus.

pub mod bus;
pub mod dst;
pub mod nats_server;
pub mod node;
pub mod reconcile;
pub mod relay;
pub mod serve;
