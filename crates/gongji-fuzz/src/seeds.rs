//! Valid inputs for the mutator: ops of every body kind, snapshots of states they built, and
//! journals holding prefixes of one fixed record sequence.

use arrayvec::ArrayString;
use gongji_core::certno::certno_with_check;
use gongji_core::codec::encode_op;
use gongji_core::command::{
    Actor, Body, Command, CreditItem, InstType, Insutype, Op, PersonStatus, Relation, Role,
    TransferSource,
};
use gongji_core::time::{parse_cst, Period};
use gongji_core::{Fen, Params, State};
use gongji_journal::{FaultStorage, Journal, JournalConfig, Storage};

fn s<const N: usize>(v: &str) -> ArrayString<N> {
    ArrayString::from(v).expect("short")
}

fn enrol(i: u32, insutype: Insutype) -> Body {
    let certno = certno_with_check(&format!("44010619{:02}0101{i:03}", 50 + i)).expect("certno");
    Body::Enrol {
        psn_no: s(&format!("P{i}")),
        certno: s(&certno),
        psn_name: format!("张{i}"),
        insutype,
        admdvs: 440106,
    }
}

/// Bodies of every kind, in an order that applies (most of them) to an empty state.
fn bodies() -> Vec<(Actor, Body)> {
    let admin = || Actor::Admin;
    let inst = || Actor::Institution(s("H1"));
    let person = Actor::Person(s("P2"));
    vec![
        (admin(), enrol(1, Insutype::Employee)),
        (admin(), enrol(2, Insutype::Employee)),
        (admin(), enrol(3, Insutype::Resident)),
        (
            admin(),
            Body::RegisterInstitution {
                fixmedins_code: s("H1"),
                fixmedins_name: "第一医院".into(),
                fixmedins_type: InstType::Medical,
                admdvs: 440106,
            },
        ),
        (
            admin(),
            Body::CreateToken {
                token_hash: [7; 32],
                role: Role::Institution,
                fixmedins_code: Some(s("H1")),
                psn_no: None,
            },
        ),
        (
            admin(),
            Body::Credit {
                period: Period(2025 * 12 + 4),
                items: vec![
                    CreditItem {
                        psn_no: s("P1"),
                        amount: Fen(50_000),
                    },
                    CreditItem {
                        psn_no: s("P2"),
                        amount: Fen(30_000),
                    },
                ],
            },
        ),
        (
            admin(),
            Body::Bind {
                giver_psn_no: s("P1"),
                receiver_psn_no: s("P3"),
                relation: Relation::Child,
            },
        ),
        (
            inst(),
            Body::Settle {
                fixmedins_code: s("H1"),
                psn_no: s("P3"),
                medfee_sumamt: Fen(12_345),
                fund_pay_sumamt: Fen(2_000),
                acct_used: true,
            },
        ),
        (person, Body::OpenWallet { psn_no: s("P2") }),
        (admin(), Body::OpenWallet { psn_no: s("P1") }),
        (
            admin(),
            Body::TransferCreate {
                from_psn_no: s("P2"),
                to_psn_no: s("P1"),
                amount: Fen(1_000),
                source: TransferSource::Acct,
            },
        ),
        (admin(), Body::TransferAccept { transfer_id: 1 }),
        (
            admin(),
            Body::Contribute {
                payer_psn_no: s("P1"),
                psn_no: s("P3"),
                year: 2026,
                amount: Fen(40_000),
            },
        ),
        (
            inst(),
            Body::Reverse {
                omsgid: s("m8"),
                fixmedins_code: None,
            },
        ),
        (admin(), Body::Cancel { setl_id: 1 }),
        (admin(), Body::TransferDecline { transfer_id: 2 }),
        (admin(), Body::Revoke { binding_id: 1 }),
        (
            admin(),
            Body::SetStatus {
                psn_no: s("P2"),
                status: PersonStatus::Suspended,
            },
        ),
        (admin(), Body::RevokeToken { token_id: 1 }),
    ]
}

/// Ops of every tag and body kind (applied or not).
pub fn ops() -> Vec<Op> {
    let time = parse_cst("2025-05-20 10:00:00").expect("time");
    let mut ops: Vec<Op> = bodies()
        .into_iter()
        .enumerate()
        .map(|(i, (actor, body))| {
            Op::Write(Command {
                msgid: s(&format!("m{}", i + 1)),
                time: time + i as i64,
                actor,
                body,
            })
        })
        .collect();
    ops.push(Op::Tick {
        time: time + 86_400,
    });
    ops
}

pub fn encoded_ops() -> Vec<Vec<u8>> {
    ops()
        .iter()
        .map(|op| {
            let mut out = Vec::new();
            encode_op(op, &mut out);
            out
        })
        .collect()
}

/// Snapshots of the empty state and of the state after every few ops.
pub fn snapshots() -> Vec<Vec<u8>> {
    let mut state = State::new(Params::default());
    let mut out = Vec::new();
    let mut push = |state: &State| {
        let mut bytes = Vec::new();
        state.encode_snapshot(&mut bytes);
        out.push(bytes);
    };
    push(&state);
    for (i, op) in ops().iter().enumerate() {
        let _ = state.apply(op);
        if i % 5 == 4 {
            push(&state);
        }
    }
    push(&state);
    out
}

/// Small segments, so a few dozen records span several files.
pub fn journal_config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 4096,
        body_bytes_max: 512,
        batch_bytes_max: 16 * 1024,
    }
}

/// Record `op` of the fixed sequence every journal seed holds a prefix of: (time, body).
pub fn record(op: u64) -> (i64, Vec<u8>) {
    let mut rng = crate::Rng(op.wrapping_mul(7919));
    let len = rng.below(301);
    (
        op as i64 * 10,
        (0..len).map(|_| rng.next_u64() as u8).collect(),
    )
}

/// Journals of 0, 1, 7 and 40 records: their segment files, in op order, concatenated (every
/// segment is preallocated to `segment_size_bytes`, so the target can split them again).
pub fn journals() -> Vec<Vec<u8>> {
    [0u64, 1, 7, 40]
        .into_iter()
        .map(|n| {
            let storage = FaultStorage::new();
            let (mut journal, _) =
                Journal::open(storage.clone(), journal_config(), None).expect("open");
            for op in 1..=n {
                let (time, body) = record(op);
                journal.append(time, &body).expect("append");
                if op % 3 == 0 {
                    journal.sync().expect("sync");
                }
            }
            journal.sync().expect("sync");
            let mut names: Vec<String> = storage.list().expect("list");
            names.sort();
            names
                .iter()
                .flat_map(|name| storage.read_all(name).expect("read"))
                .collect()
        })
        .collect()
}
