//! `gongji-drill`: drills that run the real `gongji` binary as a separate process and check it
//! from outside, as a client would.
//!
//! [`crashtest`] is `gongji crash-test`: concurrent HTTP load against `gongji serve`, `kill -9`
//! at a seeded moment, restart, and a check of the restarted server against a model built from
//! the acknowledged replies ([`crashtest::CrashTestArgs`], [`crashtest::run`]). The binary only
//! parses the flags and calls it; the drill starts the binary it runs in
//! (`std::env::current_exe`). A drill is a command's body, so its errors are `anyhow` reports
//! for a person to read, like the binary's.

pub mod crashtest;
