//! `huyou classify`, `huyou eval` and `huyou verify` as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};

fn huyou(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_huyou"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn classify_reads_json_lines_and_decides_every_surface() {
    // Proves JSON lines in and out from stdin, evidence offsets into the original text, and
    // that --decide gives one decision per surface (deny on prominent ones, notice elsewhere).
    let input = "{\"id\":\"1\",\"text\":\"今晚约 炮吗\",\"medium\":\"video\"}\n{\"id\":\"2\",\"text\":\"你好\"}\n";
    let (ok, out, err) = huyou(&["classify", "--decide", "--audience", "adult"], input);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let ev = &lines[0]["categories"][0]["evidence"][0];
    assert_eq!(
        (
            ev["start"].as_u64(),
            ev["end"].as_u64(),
            ev["text"].as_str()
        ),
        (Some(6), Some(13), Some("约 炮"))
    );
    let decisions = lines[0]["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 9);
    assert_eq!(decisions[0]["surface"], "home_first_screen");
    assert_eq!(decisions[0]["action"], "deny");
    let feed = decisions.iter().find(|d| d["surface"] == "feed").unwrap();
    assert_eq!(feed["action"], "allow_with_notice");
    assert_eq!(feed["notice"]["position"][0], "opening_frame");
    assert!(lines[1]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["action"] == "allow"));
}

#[test]
fn classify_names_the_bad_line() {
    // Proves a malformed line is refused with its line number and the unknown field.
    let (ok, _, err) = huyou(
        &["classify"],
        "{\"id\":\"1\",\"text\":\"a\"}\n{\"id\":\"2\",\"txt\":\"b\"}\n",
    );
    assert!(!ok);
    assert!(err.contains("line 2") && err.contains("txt"), "{err}");
}

#[test]
fn classify_audit_then_verify_and_a_bad_policy_is_refused() {
    // Proves --audit writes a chain that `huyou verify` accepts, and that --policy with an
    // unknown surface fails naming the line.
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let audit_arg = audit.to_str().unwrap();
    let (ok, _, err) = huyou(
        &["classify", "--decide", "--audit", audit_arg],
        "{\"id\":\"1\",\"text\":\"逃课\"}\n",
    );
    assert!(ok, "{err}");
    let (ok, out, _) = huyou(&["verify", audit_arg], "");
    assert!(ok && out.contains("1 records, chain intact"), "{out}");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = \"x\"\n[[rule]]\nid = \"a\"\nsurface = [\"sidebar\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let (ok, _, err) = huyou(&["classify", "--policy", policy.to_str().unwrap()], "");
    assert!(
        !ok && err.contains("line 4") && err.contains("sidebar"),
        "{err}"
    );
}
