//! The federation's decoders (issue 14) against random bytes and mutated valid encodings: a
//! bus message (`decode_message`, bytes from another machine) and a federated journal record
//! (`decode_entry`), cross-engine bindings' messages and ops among them. No panic, allocation bounded like the other targets, and an accepted
//! input re-encodes to itself (both encodings are canonical).

use gongji_core::federation::codec::{decode_entry, decode_message, encode_entry, encode_message};
use gongji_core::federation::{
    BindRefusal, EngineId, Entry, FedOp, LinkStatus, Message, Outcome, Xid,
};
use gongji_core::{Actor, Fen, Msgid, Op, PsnNo, Relation, TransferSource};
use gongji_fuzz::alloc::measured;
use gongji_fuzz::targets::alloc_bytes_max;
use gongji_fuzz::{cases, run, Mutator};

fn xid(key: u128) -> Xid {
    Xid {
        engine: EngineId::from("gd").expect("fits"),
        key,
    }
}

fn messages() -> Vec<Message> {
    let bj = EngineId::from("bj").expect("fits");
    let mut out = vec![
        Message::Prepare {
            xid: xid(1 << 100 | 7),
            to_engine: bj,
            to_psn_no: PsnNo::from("P110105001").expect("fits"),
            to_admdvs: 110_105,
            amount: Fen(20_000),
            from_psn_no: PsnNo::from("P440106001").expect("fits"),
            sender_admdvs: 440_106,
            created: 1_747_700_000,
            expires_at: 1_747_778_400,
        },
        Message::Block {
            xid: xid(9),
            to_engine: bj,
            amount: Fen(1),
            created: 1_747_700_000,
        },
    ];
    for outcome in Outcome::ALL {
        out.push(Message::Outcome {
            xid: xid(u128::MAX),
            from_engine: bj,
            amount: Fen(u64::MAX),
            outcome,
        });
    }
    out.push(Message::Bind {
        bxid: xid(11),
        to_engine: bj,
        giver_psn_no: PsnNo::from("P440106001").expect("fits"),
        giver_admdvs: 440_106,
        receiver_psn_no: PsnNo::from("P110105001").expect("fits"),
        receiver_admdvs: 110_105,
        relation: Relation::MaternalGrandchild,
        created: 1_747_700_000,
    });
    for created in [None, Some(1_747_700_000)] {
        out.push(Message::Unbind {
            bxid: xid(12),
            from_engine: bj,
            to_engine: EngineId::from("gd").expect("fits"),
            created,
        });
    }
    let gd = EngineId::from("gd").expect("fits");
    out.push(Message::ClosedThrough {
        from_engine: bj,
        to_engine: gd,
        exchanges: 20_230,
        bindings: gongji_core::federation::NO_DAY,
    });
    out.push(Message::ForgetThrough {
        from_engine: gd,
        to_engine: bj,
        exchanges: 20_230,
        bindings: 20_100,
    });
    let statuses = [LinkStatus::Active, LinkStatus::Revoked]
        .into_iter()
        .chain(BindRefusal::ALL.map(LinkStatus::Refused));
    for status in statuses {
        out.push(Message::BindStatus {
            bxid: xid(13),
            from_engine: bj,
            to_engine: EngineId::from("gd").expect("fits"),
            status,
        });
    }
    out
}

fn entries() -> Vec<Entry> {
    let mut out: Vec<Entry> = messages()
        .into_iter()
        .map(|msg| Entry::Fed(FedOp::Deliver { time: 5, msg }))
        .collect();
    out.push(Entry::Fed(FedOp::TransferOut {
        msgid: Msgid::from("H44010600001_20250520100000-0001").expect("fits"),
        time: 1_747_700_000,
        actor: Actor::Person(PsnNo::from("P1").expect("fits")),
        from_psn_no: PsnNo::from("P1").expect("fits"),
        to_psn_no: PsnNo::from("R1").expect("fits"),
        to_admdvs: 110_105,
        amount: Fen(20_000),
        source: TransferSource::Wallet,
    }));
    for msgid in [None, Some(Msgid::from("answer-1").expect("fits"))] {
        out.push(Entry::Fed(FedOp::Reverse {
            time: 1,
            actor: Actor::Admin,
            omsgid: Msgid::from("m-1").expect("fits"),
            msgid,
        }));
        out.push(Entry::Fed(FedOp::Accept {
            time: 2,
            actor: Actor::Institution(gongji_core::InstCode::from("H1").expect("fits")),
            xid: xid(3),
            msgid,
        }));
        out.push(Entry::Fed(FedOp::Decline {
            time: 3,
            actor: Actor::Admin,
            xid: xid(4),
            msgid,
        }));
    }
    out.push(Entry::Fed(FedOp::BindOut {
        msgid: Msgid::from("bind-0001").expect("fits"),
        time: 4,
        actor: Actor::Person(PsnNo::from("P1").expect("fits")),
        giver_psn_no: PsnNo::from("P1").expect("fits"),
        receiver_psn_no: PsnNo::from("R1").expect("fits"),
        receiver_admdvs: 110_105,
        relation: Relation::Spouse,
    }));
    out.push(Entry::Fed(FedOp::Unbind {
        time: 5,
        actor: Actor::Admin,
        bxid: xid(6),
        msgid: None,
    }));
    out.push(Entry::Fed(FedOp::Unbind {
        time: 6,
        actor: Actor::Admin,
        bxid: xid(7),
        msgid: Some(Msgid::from("rv1").expect("fits")),
    }));
    out.push(Entry::Fed(FedOp::Forget { time: 8 }));
    out.push(Entry::Core(Op::Tick { time: 9 }));
    out
}

#[test]
fn decode_message_survives_random_and_mutated_bytes() {
    // Proves decode_message never panics or over-allocates, and accepts only canonical bytes.
    let seeds: Vec<Vec<u8>> = messages()
        .iter()
        .map(|m| {
            let mut b = Vec::new();
            encode_message(m, &mut b);
            b
        })
        .collect();
    // The seeds themselves decode: the target is not refusing everything.
    for s in &seeds {
        assert!(decode_message(s).is_ok());
    }
    let mutator = Mutator {
        seeds: &seeds,
        random_len_max: 200,
    };
    run("decode_message", cases(1_000_000), &mutator, |input| {
        let (decoded, stats) = measured(|| decode_message(input));
        assert!(
            stats.bytes_total <= alloc_bytes_max(input.len()),
            "{stats:?}"
        );
        let Ok(m) = decoded else { return false };
        let mut again = Vec::new();
        encode_message(&m, &mut again);
        assert_eq!(again, input, "non-canonical message {m:?}");
        true
    });
}

#[test]
fn decode_entry_survives_random_and_mutated_bytes() {
    // Proves decode_entry never panics or over-allocates, and accepts only canonical bytes.
    let seeds: Vec<Vec<u8>> = entries()
        .iter()
        .map(|e| {
            let mut b = Vec::new();
            encode_entry(e, &mut b);
            assert_eq!(decode_entry(&b).as_ref(), Ok(e));
            b
        })
        .collect();
    let mutator = Mutator {
        seeds: &seeds,
        random_len_max: 200,
    };
    let outcome = run("decode_entry", cases(1_000_000), &mutator, |input| {
        let (decoded, stats) = measured(|| decode_entry(input));
        assert!(
            stats.bytes_total <= alloc_bytes_max(input.len()),
            "{stats:?}"
        );
        let Ok(e) = decoded else { return false };
        let mut again = Vec::new();
        encode_entry(&e, &mut again);
        assert_eq!(again, input, "non-canonical entry {e:?}");
        true
    });
    // A control: mutations get past the version and tag checks.
    assert!(
        outcome.accepted > 0,
        "no mutated entry decoded: {outcome:?}"
    );
}

/// Two federated engines' states holding cross-engine bindings in every status (made over
/// the exchange: gd proposes, bj judges, the answers go back), and one exchange.
fn federated_snapshots() -> Vec<Vec<u8>> {
    use gongji_core::federation::FederationConfig;
    use gongji_core::{Body, Command, Insutype, Params, State};
    let config = |me: &str, mine: u8, peer: &str, theirs: u8| FederationConfig {
        engine: EngineId::from(me).expect("fits"),
        provinces: vec![mine],
        peers: [(EngineId::from(peer).expect("fits"), vec![theirs])]
            .into_iter()
            .collect(),
    };
    let mut gd = State::new(Params::default());
    gd.configure_federation(config("gd", 44, "bj", 11))
        .expect("config");
    let mut bj = State::new(Params::default());
    bj.configure_federation(config("bj", 11, "gd", 44))
        .expect("config");
    let psn = |s: &str| PsnNo::from(s).expect("fits");
    let mut seq = 0;
    let mut core = |state: &mut State, body: Body| {
        seq += 1;
        let op = Op::Write(Command {
            msgid: Msgid::from(&format!("m{seq}")).expect("fits"),
            time: 1_747_700_000,
            actor: Actor::Admin,
            body,
        });
        state.apply_entry(&Entry::Core(op)).expect("applies");
    };
    for (state, p, admdvs) in [(&mut gd, "S1", 440_106u32), (&mut bj, "R1", 110_105)] {
        let first17 = format!("{admdvs}19900101001");
        let certno = gongji_core::certno::certno_with_check(&first17).expect("certno");
        core(
            state,
            Body::Enrol {
                psn_no: psn(p),
                certno: gongji_core::command::ArrayString::from(&certno).expect("18"),
                psn_name: "张三".into(),
                insutype: Insutype::Employee,
                admdvs,
            },
        );
        core(state, Body::OpenWallet { psn_no: psn(p) });
    }
    core(
        &mut gd,
        Body::Credit {
            period: gongji_core::time::parse_period("2025-05").expect("period"),
            items: vec![gongji_core::CreditItem {
                psn_no: psn("S1"),
                amount: Fen(10_000),
            }],
        },
    );
    let fed = |state: &mut State, op: FedOp| state.apply_fed(&op).expect("applies").send;
    let mut out = Vec::new();
    for (i, receiver) in ["R1", "NOBODY", "R1"].into_iter().enumerate() {
        let bind = FedOp::BindOut {
            msgid: Msgid::from(&format!("b{i}")).expect("fits"),
            time: 1_747_700_000,
            actor: Actor::Admin,
            giver_psn_no: psn("S1"),
            receiver_psn_no: psn(receiver),
            receiver_admdvs: 110_105,
            relation: Relation::Parent,
        };
        // The third, a duplicate pair while the first is active, is refused synchronously.
        let Ok(applied) = gd.apply_fed(&bind) else {
            continue;
        };
        let sent = applied.send;
        let time = 1_747_700_001;
        for m in sent {
            for a in fed(&mut bj, FedOp::Deliver { time, msg: m }) {
                fed(&mut gd, FedOp::Deliver { time, msg: a });
            }
        }
        for s in [&gd, &bj] {
            let mut bytes = Vec::new();
            s.encode_snapshot(&mut bytes);
            out.push(bytes);
        }
    }
    // Two exchanges over the active binding: one accepted and one reversed, each by its
    // msgid (the GJXEX001 and GJANS001 sections).
    let time = 1_747_700_001;
    let transfer = |m: &str| FedOp::TransferOut {
        msgid: Msgid::from(m).expect("fits"),
        time,
        actor: Actor::Admin,
        from_psn_no: psn("S1"),
        to_psn_no: psn("R1"),
        to_admdvs: 110_105,
        amount: Fen(100),
        source: TransferSource::Acct,
    };
    let prepare = fed(&mut gd, transfer("x1")).remove(0);
    let xid = prepare.xid().expect("an id");
    fed(&mut bj, FedOp::Deliver { time, msg: prepare });
    let msgid = Some(Msgid::from("acc1").expect("fits"));
    let actor = Actor::Admin;
    for a in fed(
        &mut bj,
        FedOp::Accept {
            time,
            actor,
            xid,
            msgid,
        },
    ) {
        fed(&mut gd, FedOp::Deliver { time, msg: a });
    }
    fed(&mut gd, transfer("x2"));
    let omsgid = Msgid::from("x2").expect("fits");
    let msgid = Some(Msgid::from("rev1").expect("fits"));
    let actor = Actor::Admin;
    fed(
        &mut gd,
        FedOp::Reverse {
            time,
            actor,
            omsgid,
            msgid,
        },
    );
    for s in [&gd, &bj] {
        let mut bytes = Vec::new();
        s.encode_snapshot(&mut bytes);
        assert!(bytes.windows(8).any(|w| w == b"GJANS001"));
        assert!(bytes.windows(8).any(|w| w == b"GJXEX001"));
        out.push(bytes);
    }
    // One revoked by bj, its Unbind not yet delivered (unconfirmed on bj).
    let bxid = bj.links().next().expect("a binding").bxid;
    fed(
        &mut bj,
        FedOp::Unbind {
            time: 1_747_700_002,
            actor: Actor::Admin,
            bxid,
            msgid: Some(Msgid::from("rv1").expect("fits")),
        },
    );
    let mut bytes = Vec::new();
    bj.encode_snapshot(&mut bytes);
    out.push(bytes);
    // The revocation confirmed; then both forget (docs/FEDERATION.md, "Forgetting"): claims
    // agreed two days on, and forty days on the closed bindings go (a GJFGT001 section).
    let time = 1_747_700_003;
    for m in bj.fed_outbox() {
        for a in fed(&mut gd, FedOp::Deliver { time, msg: m }) {
            fed(&mut bj, FedOp::Deliver { time, msg: a });
        }
    }
    for days in [2, 40] {
        let time = time + days * 86_400;
        for a in fed(&mut gd, FedOp::Forget { time }) {
            for b in fed(&mut bj, FedOp::Deliver { time, msg: a }) {
                fed(&mut gd, FedOp::Deliver { time, msg: b });
            }
        }
        let _ = bj.apply_fed(&FedOp::Forget { time });
        for s in [&gd, &bj] {
            let mut bytes = Vec::new();
            s.encode_snapshot(&mut bytes);
            assert!(bytes.windows(8).any(|w| w == b"GJFGT001"));
            out.push(bytes);
        }
    }
    assert!(gd.fed_record_counts().3 > 0, "bindings forgotten");
    out
}

#[test]
fn decode_snapshot_of_a_federated_state_with_bindings_survives_mutation() {
    // Proves the snapshot decoder's federation and bindings sections never panic or
    // over-allocate and accept only canonical bytes (targets::snapshot asserts both).
    let seeds = federated_snapshots();
    for s in &seeds {
        assert!(gongji_fuzz::targets::snapshot(s), "a seed is refused");
        assert!(
            s.windows(8).any(|w| w == b"GJLNK001" || w == b"GJFGT001"),
            "a seed without bindings or forgetting"
        );
    }
    let mutator = Mutator {
        seeds: &seeds,
        random_len_max: 200,
    };
    let outcome = run(
        "decode_snapshot (federated)",
        cases(100_000),
        &mutator,
        gongji_fuzz::targets::snapshot,
    );
    // A control: some mutations decode (the target is not refusing everything).
    assert!(
        outcome.accepted > 0,
        "no mutated snapshot decoded: {outcome:?}"
    );
}
