//! Runs the built `gongji demo` and checks what it prints.

use std::process::Command;

fn demo_output() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gongji"))
        .arg("demo")
        .output()
        .expect("run gongji demo");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn demo_walks_the_family_through() {
    let out = demo_output();
    // The father's visit: 200.00 borne personally, his own account and wallet empty, then the
    // worker's and the husband's accounts in priority order.
    assert!(out.contains("psn_part_amt 200.00"), "{out}");
    assert!(
        out.contains("acct_pay 0.00  wallet_pay 0.00  acct_mulaid_pay 200.00  psn_cash_pay 0.00"),
        "{out}"
    );
    assert!(out.contains("1. P440106000001 陈**  136.00"), "{out}");
    assert!(out.contains("2. P440300000003 林**  64.00"), "{out}");
    // Identities are masked.
    assert!(out.contains("4401**********"), "{out}");
    assert!(!out.contains("陈晓梅"), "{out}");
    // The wallet transfer to Beijing and the cancellation.
    assert!(
        out.contains("scope cross_province  status pending"),
        "{out}"
    );
    assert!(out.contains("status cancelled"), "{out}");
    // The statistics table.
    for line in [
        "all family mutual aid (total)",
        "instant call of a bound giver's account (account_draw)",
        "  another pooling area of the province (cross_pool)",
        "  across provinces (cross_province)",
    ] {
        assert!(out.contains(line), "missing {line:?}\n{out}");
    }
    let total = out
        .lines()
        .find(|l| l.contains("(total)"))
        .expect("total line");
    assert!(total.ends_with("     2     300.00"), "{total:?}");
    assert!(
        out.contains("H44010600001  setl_count 1  medfee_sumamt 500.00"),
        "{out}"
    );
    assert!(out.contains("check() OK"), "{out}");
}

#[test]
fn demo_is_deterministic() {
    assert_eq!(demo_output(), demo_output());
}
