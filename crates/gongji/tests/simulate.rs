//! `gongji simulate --engines 3` through the binary: the same seeded workload on one engine
//! and on three federated engines gives the same national table, read back from the data
//! directories by `gongji report`; bad uses are refused before anything runs.

mod common;
use common::{gongji, temp_dir};

const SCALE: &str = "0.00002";
const FROM: &str = "2025-06";
const TO: &str = "2025-12";

/// The table lines of `gongji report`'s output (those after its `count` header).
fn table(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.contains("amount (yuan)"))
        .take(8)
        .map(str::to_owned)
        .collect()
}

/// The number before `what` in the run's summary line (`across engines: 5 transfers (…), …`).
fn count_before(text: &str, what: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains("across engines:"))
        .unwrap_or_else(|| panic!("no summary in {text}"));
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("{what} in {line}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count before {what} in {line}"))
}

#[test]
fn three_engines_give_the_one_engine_national_table() {
    // Proves: the calibrated workload split over three engines, with bindings and transfers
    // across engines carried as exchanges, gives the one engine's national table cell by cell
    // (the command compares and exits zero), and `gongji report` over the three data
    // directories prints the very table it prints for the one engine's directory. The run
    // must have crossed engines, or it would prove nothing.
    let dir = temp_dir("simulate", "engines");
    let run = dir.join("run");
    let (ok, text) = gongji(&[
        "simulate",
        "--engines",
        "3",
        "--scale",
        SCALE,
        "--from",
        FROM,
        "--to",
        TO,
        "--seed",
        "5",
        "--data",
        &run.to_string_lossy(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("equal: the national table"), "{text}");
    assert!(!text.contains("DIFFERENT"), "{text}");
    assert!(count_before(&text, "transfers (") > 0, "{text}");
    assert!(count_before(&text, "bindings,") > 0, "{text}");

    let report = |dirs: &[&str]| {
        let mut args = vec!["report".to_owned()];
        for d in dirs {
            args.push("--data".into());
            args.push(run.join(d).to_string_lossy().into_owned());
        }
        args.extend(["--from", FROM, "--to", TO].map(str::to_owned));
        let (ok, text) = gongji(&args);
        assert!(ok, "{text}");
        text
    };
    let one = table(&report(&["one"]));
    let three = report(&["e1", "e2", "e3"]);
    assert!(
        three.contains("National table of engines e1, e2, e3"),
        "{three}"
    );
    assert_eq!(one.len(), 8, "{one:?}");
    assert_eq!(table(&three), one);
    // Each engine alone holds part of it: the sum is not one engine's table.
    assert_ne!(table(&report(&["e1"])), one);

    // A directory that holds something already is refused, before any run.
    let (ok, text) = gongji(&[
        "simulate",
        "--engines",
        "3",
        "--scale",
        SCALE,
        "--data",
        &run.to_string_lossy(),
    ]);
    assert!(!ok && text.contains("is not empty"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_engine_counts_are_refused() {
    // Proves: --engines outside 2..=31, or with --dst, is refused with a clear error.
    for (args, want) in [
        (vec!["--engines", "1"], "--engines must be 2 to 31"),
        (vec!["--engines", "32"], "--engines must be 2 to 31"),
        (vec!["--engines", "3", "--dst"], "--engines and --dst"),
    ] {
        let mut all = vec!["simulate", "--scale", SCALE];
        all.extend(args);
        let (ok, text) = gongji(&all);
        assert!(!ok && text.contains(want), "{all:?}: {text}");
    }
}
