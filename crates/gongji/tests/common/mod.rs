//! Support shared by the command's tests: temporary data directories, a scripted enrolment,
//! and running the `gongji` binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use gongji_core::certno::certno_with_check;
use gongji_core::{Actor, Body, Insutype, Msgid, PsnNo};
use gongji_server::WriteRequest;

/// A fresh (removed) path under the temporary directory, unique to this test process.
pub fn temp_dir(suite: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gongji-{suite}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The enrolment of employee `P{i}` in 440106, at a fixed time in 2030.
pub fn enrol(i: u32) -> WriteRequest {
    let certno = certno_with_check(&format!("44010619900101{i:03}")).expect("17 digits");
    WriteRequest {
        msgid: Msgid::from(&format!("e{i}")).expect("short"),
        inf_time: Some(1_900_000_000 + i64::from(i)),
        actor: Actor::Admin,
        body: Body::Enrol {
            psn_no: PsnNo::from(&format!("P{i}")).expect("short"),
            certno: gongji_core::command::ArrayString::from(&certno).expect("18"),
            psn_name: "张三".into(),
            insutype: Insutype::Employee,
            admdvs: 440_106,
        },
    }
}

/// Runs `gongji` with `args`: whether it succeeded, and its stdout and stderr.
pub fn gongji<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gongji"))
        .args(args)
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
