//! The federation's decoders (issue 14) against random bytes and mutated valid encodings: a
//! bus message (`decode_message`, bytes from another machine) and a federated journal record
//! (`decode_entry`). No panic, allocation bounded like the other targets, and an accepted
//! input re-encodes to itself (both encodings are canonical).

use gongji_core::federation::codec::{decode_entry, decode_message, encode_entry, encode_message};
use gongji_core::federation::{EngineId, Entry, FedOp, Message, Outcome, Xid};
use gongji_core::{Actor, Fen, Msgid, Op, PsnNo, TransferSource};
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
    out.push(Entry::Fed(FedOp::Reverse {
        time: 1,
        actor: Actor::Admin,
        omsgid: Msgid::from("m-1").expect("fits"),
    }));
    out.push(Entry::Fed(FedOp::Accept {
        time: 2,
        actor: Actor::Institution(gongji_core::InstCode::from("H1").expect("fits")),
        xid: xid(3),
    }));
    out.push(Entry::Fed(FedOp::Decline {
        time: 3,
        actor: Actor::Admin,
        xid: xid(4),
    }));
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
