//! A scripted workload for tests of stores and recovery: every command kind (institutions,
//! enrolment, credits, bindings, wallets, settlements, transfers with accept/decline/return,
//! cancel, reversals, contribution, revocation, status, tokens), rejected writes and an in-batch
//! replay, over two days. The fault-injection tests of this crate and the PostgreSQL store's
//! tests run the same script, so both stores are held to the same replies.

use crate::WriteRequest;
use gongji_core::certno::certno_with_check;
use gongji_core::time::{parse_cst, parse_period};
use gongji_core::{
    Actor, Body, Command, CreditItem, Fen, InstCode, InstType, Insutype, Msgid, Op, PersonStatus,
    PsnNo, Relation, Role, TransferSource,
};

/// One submission of the script: its requests, and whether each must apply on a clean run.
#[derive(Debug)]
pub struct Sub {
    pub requests: Vec<WriteRequest>,
    pub expect_ok: Vec<bool>,
}

fn psn(s: &str) -> PsnNo {
    PsnNo::from(s).unwrap()
}

fn inst(s: &str) -> InstCode {
    InstCode::from(s).unwrap()
}

fn yuan(y: u64) -> Fen {
    Fen(y * 100)
}

const H1: &str = "H44010600001";
const P1: &str = "P44010600002";

struct Script {
    subs: Vec<Sub>,
    seq: u32,
    t0: i64,
    day2: i64,
}

impl Script {
    /// Appends a submission of admin writes at the next minute (of the first or second day).
    fn add(&mut self, ops: Vec<(Body, bool)>, day2: bool) {
        let i = self.subs.len() as i64;
        let time = if day2 { self.day2 } else { self.t0 } + i * 60;
        let mut requests = Vec::new();
        let mut expect_ok = Vec::new();
        for (body, ok) in ops {
            self.seq += 1;
            requests.push(WriteRequest {
                msgid: Msgid::from(&format!("f-{:04}", self.seq)).unwrap(),
                inf_time: Some(time),
                actor: Actor::Admin,
                body,
            });
            expect_ok.push(ok);
        }
        self.subs.push(Sub {
            requests,
            expect_ok,
        });
    }
}

/// Builds the script: enrolment, credits, bindings, wallets, settlements, transfers, accept,
/// decline, cancel, reversals, a contribution, a revocation, rejected writes, an in-batch
/// replay and a day change that returns a pending transfer.
pub fn script() -> Vec<Sub> {
    let mut script = Script {
        subs: Vec::new(),
        seq: 0,
        t0: parse_cst("2030-05-20 09:00:00").unwrap(),
        day2: parse_cst("2030-05-21 10:00:00").unwrap(),
    };
    let institution = |code: &str, t: InstType| Body::RegisterInstitution {
        fixmedins_code: inst(code),
        fixmedins_name: format!("institution {code}"),
        fixmedins_type: t,
        admdvs: 440100,
    };
    let enrol = |p: &str, seq: u32, insutype: Insutype, admdvs: u32| Body::Enrol {
        psn_no: psn(p),
        certno: gongji_core::command::ArrayString::from(
            &certno_with_check(&format!("44010619800101{seq:03}")).unwrap(),
        )
        .unwrap(),
        psn_name: format!("测试{seq}"),
        insutype,
        admdvs,
    };
    let bind = |g: &str, r: &str, relation: Relation| Body::Bind {
        giver_psn_no: psn(g),
        receiver_psn_no: psn(r),
        relation,
    };
    let settle = |code: &str, p: &str, medfee: u64, fund: u64, acct_used: bool| Body::Settle {
        fixmedins_code: inst(code),
        psn_no: psn(p),
        medfee_sumamt: yuan(medfee),
        fund_pay_sumamt: yuan(fund),
        acct_used,
    };
    let transfer =
        |from: &str, to: &str, amount: u64, source: TransferSource| Body::TransferCreate {
            from_psn_no: psn(from),
            to_psn_no: psn(to),
            amount: yuan(amount),
            source,
        };
    let wallet = |p: &str| Body::OpenWallet { psn_no: psn(p) };
    use Insutype::{Employee, Resident};
    use TransferSource::{Acct, Wallet};

    script.add(
        vec![
            (institution(H1, InstType::Medical), true),
            (institution(P1, InstType::Pharmacy), true),
        ],
        false,
    );
    script.add(
        vec![
            (enrol("F01", 1, Employee, 440100), true),
            (enrol("F02", 2, Employee, 440100), true),
            (enrol("F03", 3, Employee, 440100), true),
        ],
        false,
    );
    script.add(vec![(enrol("F04", 4, Employee, 440300), true)], false);
    script.add(
        vec![
            (enrol("F05", 5, Resident, 440100), true),
            (enrol("F06", 6, Employee, 110100), true),
        ],
        false,
    );
    let credit = |period: &str, items: &[(&str, u64)]| Body::Credit {
        period: parse_period(period).unwrap(),
        items: items
            .iter()
            .map(|(p, y)| CreditItem {
                psn_no: psn(p),
                amount: yuan(*y),
            })
            .collect(),
    };
    script.add(
        vec![(
            credit(
                "2030-05",
                &[
                    ("F01", 500),
                    ("F02", 300),
                    ("F03", 50),
                    ("F04", 800),
                    ("F06", 400),
                ],
            ),
            true,
        )],
        false,
    );
    script.add(vec![(bind("F01", "F03", Relation::Child), true)], false);
    script.add(
        vec![
            (bind("F02", "F03", Relation::Child), true),
            (bind("F04", "F03", Relation::Sibling), true),
        ],
        false,
    );
    script.add(
        vec![
            (bind("F01", "F05", Relation::Parent), true),
            (bind("F01", "F06", Relation::Sibling), true),
        ],
        false,
    );
    script.add(
        vec![
            (wallet("F03"), true),
            (wallet("F05"), true),
            (wallet("F06"), true),
        ],
        false,
    );
    // setl 1: 200.00 borne, 50.00 own account, then the givers in priority order.
    script.add(vec![(settle(H1, "F03", 300, 100, true), true)], false);
    // setl 2: a resident, drawn from F01.
    script.add(vec![(settle(H1, "F05", 120, 20, true), true)], false);
    // transfer 1: cross-province, left pending until the next day returns it.
    script.add(vec![(transfer("F01", "F06", 50, Acct), true)], false);
    // transfer 2 and setl 3 (cash only).
    script.add(
        vec![
            (transfer("F01", "F03", 20, Acct), true),
            (settle(P1, "F03", 80, 0, false), true),
        ],
        false,
    );
    script.subs[12].requests[1].msgid = Msgid::from("f-setl3").unwrap();
    script.add(vec![(Body::TransferAccept { transfer_id: 2 }, true)], false);
    script.add(vec![(Body::Cancel { setl_id: 1 }, true)], false);
    // A rejected write, and a replay of setl 2's msgid inside a batch.
    let replay = script.subs[10].requests[0].clone();
    script.add(vec![(settle(H1, "NOPE", 10, 0, true), false)], false);
    let last = script.subs.last_mut().unwrap();
    last.requests.push(replay);
    last.expect_ok.push(true);
    script.add(
        vec![(
            Body::Contribute {
                payer_psn_no: psn("F01"),
                psn_no: psn("F05"),
                year: 2031,
                amount: yuan(30),
            },
            true,
        )],
        false,
    );
    script.add(vec![(Body::Revoke { binding_id: 2 }, true)], false);
    script.add(
        vec![(
            Body::Reverse {
                omsgid: Msgid::from("ghost-1").unwrap(),
                fixmedins_code: None,
            },
            true,
        )],
        false,
    );
    // The next day: the pending transfer 1 is returned before this settlement applies.
    script.add(vec![(settle(H1, "F03", 40, 0, true), true)], true);
    script.add(
        vec![
            (transfer("F03", "F01", 10, Wallet), false),
            (wallet("F01"), true),
            (transfer("F03", "F01", 10, Wallet), true),
        ],
        true,
    );
    script.add(vec![(Body::TransferDecline { transfer_id: 3 }, true)], true);
    script.add(
        vec![(
            Body::SetStatus {
                psn_no: psn("F02"),
                status: PersonStatus::Suspended,
            },
            true,
        )],
        true,
    );
    script.add(
        vec![
            (credit("2030-06", &[("F01", 100), ("F02", 100)]), true),
            (settle(H1, "F03", 500, 100, true), true),
        ],
        true,
    );
    // The reversal of a settlement that was applied cancels it.
    script.add(
        vec![(
            Body::Reverse {
                omsgid: Msgid::from("f-setl3").unwrap(),
                fixmedins_code: None,
            },
            true,
        )],
        true,
    );
    // Tokens: an institution token, a person token, and the revocation of the first.
    script.add(
        vec![
            (
                Body::CreateToken {
                    token_hash: [7; 32],
                    role: Role::Institution,
                    fixmedins_code: Some(inst(H1)),
                    psn_no: None,
                },
                true,
            ),
            (
                Body::CreateToken {
                    token_hash: [8; 32],
                    role: Role::Person,
                    fixmedins_code: None,
                    psn_no: Some(psn("F03")),
                },
                true,
            ),
        ],
        true,
    );
    script.add(vec![(Body::RevokeToken { token_id: 1 }, true)], true);
    script.add(vec![(Body::RevokeToken { token_id: 99 }, false)], true);
    script.subs
}

/// A write that applies after the script (or any time after the institution `H1` exists): an
/// institution token, distinct for each `i`, at the writer's own time.
pub fn filler(i: u32) -> WriteRequest {
    let mut token_hash = [0xA5; 32];
    token_hash[..4].copy_from_slice(&i.to_le_bytes());
    WriteRequest {
        msgid: Msgid::from(&format!("fill-{i}")).unwrap(),
        inf_time: None,
        actor: Actor::Admin,
        body: Body::CreateToken {
            token_hash,
            role: Role::Institution,
            fixmedins_code: Some(inst(H1)),
            psn_no: None,
        },
    }
}

/// The op the writer makes of a scripted request (every scripted write carries its time).
pub fn op_of(request: &WriteRequest) -> Op {
    Op::Write(Command {
        msgid: request.msgid,
        time: request.inf_time.expect("every scripted write has a time"),
        actor: request.actor.clone(),
        body: request.body.clone(),
    })
}

/// Person `i` of a wallet world ([`wallet_world`]): `{prefix}0000`, `{prefix}0001`, ….
pub fn wallet_psn(prefix: char, i: u32) -> PsnNo {
    PsnNo::from(&format!("{prefix}{i:04}")).expect("a short psn_no")
}

/// The history tests' wallet world: senders 0..40 (employees, each credited 100,000 yuan for
/// 2031-01), residents 40..50 with wallets, each sender bound to resident `40 + i % 10`;
/// certificate numbers of people born on `birth` (`YYYYMMDD`), distinct per `prefix`.
pub fn wallet_world(prefix: char, birth: &str) -> Vec<Body> {
    let mut bodies = Vec::new();
    for i in 0..50u32 {
        let certno = certno_with_check(&format!("440106{birth}{i:03}")).expect("a certno");
        bodies.push(Body::Enrol {
            psn_no: wallet_psn(prefix, i),
            certno: gongji_core::command::ArrayString::from(&certno).expect("18 bytes"),
            psn_name: format!("钱包{i}"),
            insutype: if i < 40 {
                Insutype::Employee
            } else {
                Insutype::Resident
            },
            admdvs: 440106,
        });
    }
    bodies.push(Body::Credit {
        period: parse_period("2031-01").expect("a period"),
        items: (0..40)
            .map(|i| CreditItem {
                psn_no: wallet_psn(prefix, i),
                amount: Fen(10_000_000),
            })
            .collect(),
    });
    for i in 40..50 {
        bodies.push(Body::OpenWallet {
            psn_no: wallet_psn(prefix, i),
        });
    }
    for i in 0..40 {
        bodies.push(Body::Bind {
            giver_psn_no: wallet_psn(prefix, i),
            receiver_psn_no: wallet_psn(prefix, 40 + i % 10),
            relation: Relation::Child,
        });
    }
    bodies
}

/// A day of the wallet world's transfers: three from each sender to its resident (120, the
/// first with id `first`), the first of them accepted and the second declined; the rest are
/// returned at 06:00 the next day.
pub fn wallet_day(prefix: char, first: u64) -> Vec<Body> {
    let mut bodies = Vec::new();
    for i in 0..40u32 {
        for amount in [1 + u64::from(i), 7, 9] {
            bodies.push(Body::TransferCreate {
                from_psn_no: wallet_psn(prefix, i),
                to_psn_no: wallet_psn(prefix, 40 + i % 10),
                amount: Fen(amount),
                source: TransferSource::Acct,
            });
        }
    }
    bodies.push(Body::TransferAccept { transfer_id: first });
    bodies.push(Body::TransferDecline {
        transfer_id: first + 1,
    });
    bodies
}
