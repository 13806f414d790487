//! Integration tests for gongji-journal, one binary to keep link time down.

mod anchor;
mod common;
mod damage;
mod faults;
mod fs;
mod roundtrip;
mod snapshots;
