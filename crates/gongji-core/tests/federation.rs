//! The federation protocol on two real engines' states (docs/FEDERATION.md): every write path
//! of a cross-engine transfer, its duplicates (replayed, nothing changes), and malformed,
//! forged or replayed bus messages (refused, nothing changes). Every engine journals what it
//! applied, and every test ends by replaying that journal from op 1 into a fresh state, which
//! must give the same state hash and pass the full `check`.

use std::collections::BTreeMap;

use gongji_core::certno::certno_with_check;
use gongji_core::federation::codec::{decode_entry, decode_message, encode_entry, encode_message};
use gongji_core::federation::{
    EngineId, Entry, EntryApplied, FedOp, FederationConfig, Message, Outcome, XStatus, Xid,
};
use gongji_core::time::{parse_cst, parse_period};
use gongji_core::{
    Actor, Body, Command, CreditItem, ErrCode, Fen, Insutype, Msgid, Op, Params, PsnNo, State,
    TransferSource,
};

fn t(s: &str) -> i64 {
    parse_cst(s).expect("a CST time")
}

fn eid(s: &str) -> EngineId {
    EngineId::from(s).expect("engine id fits")
}

fn psn(s: &str) -> PsnNo {
    PsnNo::from(s).expect("psn_no fits")
}

fn mid(s: &str) -> Msgid {
    Msgid::from(s).expect("msgid fits")
}

fn config(engine: &str, provinces: &[u8], peers: &[(&str, &[u8])]) -> FederationConfig {
    FederationConfig {
        engine: eid(engine),
        provinces: provinces.to_vec(),
        peers: peers.iter().map(|(e, p)| (eid(e), p.to_vec())).collect(),
    }
}

/// One engine: its state, its journal (encoded entries) and its clock.
struct Engine {
    state: State,
    config: FederationConfig,
    journal: Vec<Vec<u8>>,
    now: i64,
    seq: u32,
}

impl Engine {
    fn new(config: FederationConfig) -> Engine {
        let mut state = State::new(Params::default());
        state.configure_federation(config.clone()).expect("config");
        Engine {
            state,
            config,
            journal: Vec::new(),
            now: t("2025-05-20 10:00:00"),
            seq: 0,
        }
    }

    fn apply(&mut self, entry: Entry) -> Result<EntryApplied, ErrCode> {
        let before = self.state.state_hash();
        match self.state.apply_entry(&entry) {
            Ok(applied) => {
                if applied.replayed {
                    assert_eq!(
                        self.state.state_hash(),
                        before,
                        "a replay changed the state"
                    );
                } else {
                    let mut bytes = Vec::new();
                    encode_entry(&entry, &mut bytes);
                    assert_eq!(decode_entry(&bytes).expect("decodes"), entry);
                    self.journal.push(bytes);
                }
                Ok(applied)
            }
            Err(rejection) => {
                assert_eq!(
                    self.state.state_hash(),
                    before,
                    "a rejection changed the state"
                );
                Err(rejection.code)
            }
        }
    }

    fn core(&mut self, body: Body) -> Result<EntryApplied, ErrCode> {
        self.seq += 1;
        let op = Op::Write(Command {
            msgid: mid(&format!("m{}", self.seq)),
            time: self.now,
            actor: Actor::Admin,
            body,
        });
        self.apply(Entry::Core(op))
    }

    fn deliver(&mut self, msg: &Message) -> Result<EntryApplied, ErrCode> {
        self.apply(Entry::Fed(FedOp::Deliver {
            time: self.now,
            msg: msg.clone(),
        }))
    }

    fn enrol(&mut self, p: &str, admdvs: u32, credit: u64) {
        let first17 = format!("{admdvs}19900101{:03}", self.seq % 1000);
        let certno = certno_with_check(&first17).expect("17 digits");
        self.core(Body::Enrol {
            psn_no: psn(p),
            certno: arrayvec::ArrayString::from(&certno).expect("18"),
            psn_name: "张三".into(),
            insutype: Insutype::Employee,
            admdvs,
        })
        .expect("enrolled");
        self.core(Body::OpenWallet { psn_no: psn(p) })
            .expect("wallet");
        if credit > 0 {
            self.core(Body::Credit {
                period: parse_period("2025-05").expect("period"),
                items: vec![CreditItem {
                    psn_no: psn(p),
                    amount: Fen(credit),
                }],
            })
            .expect("credited");
        }
    }

    fn send(&mut self, msgid: &str, from: &str, to: &str, to_admdvs: u32, amount: u64) -> Xid {
        let applied = self
            .apply(transfer_out(msgid, self.now, from, to, to_admdvs, amount))
            .expect("transfer out");
        assert_eq!(applied.send.len(), 1, "the Prepare to send");
        applied.send[0].xid()
    }

    fn acct(&self, p: &str) -> Fen {
        self.state.person(p).expect("person").acct_balc
    }

    fn wallet(&self, p: &str) -> Fen {
        self.state.person(p).expect("person").wallet_balc
    }

    fn status(&self, xid: &Xid) -> XStatus {
        self.state.exchange(xid).expect("exchange").status
    }

    /// The journal replayed from op 1 into a fresh state gives the same state; both pass the
    /// full check.
    fn done(&self) {
        self.state.check().expect("check");
        let mut fresh = State::new(Params::default());
        fresh
            .configure_federation(self.config.clone())
            .expect("config");
        for bytes in &self.journal {
            let entry = decode_entry(bytes).expect("decodes");
            let applied = fresh.apply_entry(&entry).expect("replays");
            assert!(!applied.replayed, "a journaled op applies");
        }
        assert_eq!(
            fresh.state_hash(),
            self.state.state_hash(),
            "replay differs"
        );
        fresh.check().expect("replayed check");
        self.snapshot_round_trip();
    }

    /// A snapshot of the federated state decodes to the same state (hash) and re-encodes to
    /// the same bytes; every cut of it, and a damaged federation section, is refused.
    fn snapshot_round_trip(&self) {
        let mut bytes = Vec::new();
        self.state.encode_snapshot(&mut bytes);
        let back = State::decode_snapshot(&bytes).expect("decodes");
        assert_eq!(
            back.state_hash(),
            self.state.state_hash(),
            "snapshot differs"
        );
        let mut again = Vec::new();
        back.encode_snapshot(&mut again);
        assert_eq!(again, bytes, "not canonical");
        assert_eq!(back.federation_config(), Some(&self.config));
        let marker = bytes
            .windows(8)
            .rposition(|w| w == b"GJFED001")
            .expect("a federation section");
        // (A cut exactly before the section reads as an unfederated state; the server refuses
        // to open it under its `[federation]` table, and the snapshot file's checksum covers
        // the whole body.)
        for cut in marker + 1..bytes.len() {
            assert!(
                State::decode_snapshot(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // The marker damaged, or an exchange's person out of range: refused.
        let mut bad = bytes.clone();
        bad[marker + 7] ^= 1;
        assert!(State::decode_snapshot(&bad).is_err());
        let mut bad = bytes.clone();
        bad.extend_from_slice(b"x");
        assert!(State::decode_snapshot(&bad).is_err(), "trailing bytes");
    }
}

fn transfer_out(
    msgid: &str,
    time: i64,
    from: &str,
    to: &str,
    to_admdvs: u32,
    amount: u64,
) -> Entry {
    Entry::Fed(FedOp::TransferOut {
        msgid: mid(msgid),
        time,
        actor: Actor::Person(psn(from)),
        from_psn_no: psn(from),
        to_psn_no: psn(to),
        to_admdvs,
        amount: Fen(amount),
        source: TransferSource::Acct,
    })
}

/// gd owns 44, bj owns 11, sh owns 31. S1 (gd) has 1,000.00 in the account; R1 (bj) an open
/// wallet.
fn world() -> (Engine, Engine) {
    let mut gd = Engine::new(config("gd", &[44], &[("bj", &[11]), ("sh", &[31])]));
    let mut bj = Engine::new(config("bj", &[11], &[("gd", &[44]), ("sh", &[31])]));
    gd.enrol("S1", 440106, 100_000);
    bj.enrol("R1", 110105, 0);
    (gd, bj)
}

fn accept(e: &mut Engine, xid: Xid, actor: Actor) -> Result<EntryApplied, ErrCode> {
    let time = e.now;
    e.apply(Entry::Fed(FedOp::Accept { time, actor, xid }))
}

fn decline(e: &mut Engine, xid: Xid) -> Result<EntryApplied, ErrCode> {
    let time = e.now;
    e.apply(Entry::Fed(FedOp::Decline {
        time,
        actor: Actor::Admin,
        xid,
    }))
}

#[test]
fn a_cross_engine_transfer_is_held_in_flight_then_committed_once_accepted() {
    let (mut gd, mut bj) = world();
    let xid = gd.send("tx1", "S1", "R1", 110105, 20_000);
    assert_eq!(xid.engine, eid("gd"));
    assert_eq!(gd.acct("S1"), Fen(80_000));
    assert_eq!(gd.status(&xid), XStatus::InFlight);
    assert_eq!(gd.state.money_totals().in_flight, 20_000);
    let prepare = gd.state.fed_outbox().pop().expect("in the outbox");
    // The Prepare makes the exchange pending on bj, with the same id; no money moves there.
    let answered = bj.deliver(&prepare).expect("prepared");
    assert!(answered.send.is_empty(), "nothing to answer while pending");
    assert_eq!(bj.status(&xid), XStatus::Pending);
    assert_eq!(bj.wallet("R1"), Fen::ZERO);
    // Only the receiver (or an admin) may accept.
    assert_eq!(
        accept(&mut bj, xid, Actor::Person(psn("S1"))),
        Err(ErrCode::Forbidden)
    );
    let accepted = accept(&mut bj, xid, Actor::Person(psn("R1"))).expect("accepted");
    assert_eq!(bj.wallet("R1"), Fen(20_000));
    let outcome = accepted.send[0].clone();
    assert!(matches!(
        outcome,
        Message::Outcome {
            outcome: Outcome::Accepted,
            ..
        }
    ));
    gd.deliver(&outcome).expect("committed");
    assert_eq!(gd.status(&xid), XStatus::Closed(Outcome::Accepted));
    assert!(gd.state.fed_outbox().is_empty());
    let (a, b) = (gd.state.money_totals(), bj.state.money_totals());
    assert_eq!(
        (a.in_flight, a.fed_sent, b.fed_received),
        (0, 20_000, 20_000)
    );
    // Counted once, on the receiving engine, by the sender's province (rule 17).
    let may = parse_period("2025-05").expect("period");
    let stats = bj.state.stats(may, may, Some(44));
    assert_eq!(
        (stats.cross_province.count, stats.cross_province.amount),
        (1, Fen(20_000))
    );
    assert_eq!(gd.state.stats(may, may, None).cross_province.count, 0);
    gd.done();
    bj.done();
}

#[test]
fn duplicates_of_every_step_are_answered_from_the_record_and_change_nothing() {
    let (mut gd, mut bj) = world();
    let xid = gd.send("tx1", "S1", "R1", 110105, 20_000);
    // The client's retry: the same exchange, no second hold.
    let again = gd
        .apply(transfer_out("tx1", gd.now, "S1", "R1", 110105, 20_000))
        .expect("replayed");
    assert!(again.replayed);
    assert_eq!(gd.acct("S1"), Fen(80_000));
    // The same msgid with another amount: a conflict.
    let changed = transfer_out("tx1", gd.now, "S1", "R1", 110105, 30_000);
    assert_eq!(gd.apply(changed), Err(ErrCode::MsgidConflict));
    let prepare = gd.state.fed_outbox().pop().expect("outbox");
    bj.deliver(&prepare).expect("prepared");
    assert!(bj.deliver(&prepare).expect("duplicate").replayed);
    let outcome = decline(&mut bj, xid).expect("declined").send[0].clone();
    assert_eq!(decline(&mut bj, xid).map(|a| a.replayed), Ok(true));
    assert_eq!(accept(&mut bj, xid, Actor::Admin), Err(ErrCode::NotPending));
    // A Prepare resent after the outcome was lost is answered with the stored outcome.
    let answer = bj.deliver(&prepare).expect("duplicate");
    assert_eq!(
        (answer.replayed, answer.send),
        (true, vec![outcome.clone()])
    );
    gd.deliver(&outcome).expect("returned");
    assert_eq!(gd.acct("S1"), Fen(100_000));
    assert!(gd.deliver(&outcome).expect("duplicate").replayed);
    assert_eq!(gd.acct("S1"), Fen(100_000));
    gd.done();
    bj.done();
}

#[test]
fn malformed_forged_and_contradicting_messages_are_refused_and_change_nothing() {
    let (mut gd, mut bj) = world();
    let mut sh = Engine::new(config("sh", &[31], &[("gd", &[44]), ("bj", &[11])]));
    let xid = gd.send("tx1", "S1", "R1", 110105, 20_000);
    let prepare = gd.state.fed_outbox().pop().expect("outbox");
    let Message::Prepare {
        to_psn_no,
        to_admdvs,
        amount,
        sender_admdvs,
        created,
        expires_at,
        ..
    } = prepare.clone()
    else {
        panic!("a Prepare")
    };
    let with = |f: &dyn Fn(&mut Message)| {
        let mut m = prepare.clone();
        f(&mut m);
        m
    };
    let forged = [
        // For another engine.
        with(&|m| {
            if let Message::Prepare { to_engine, .. } = m {
                *to_engine = eid("sh");
            }
        }),
        // From an engine that is not a peer.
        with(&|m| {
            if let Message::Prepare { xid, .. } = m {
                xid.engine = eid("xz");
            }
        }),
        // A sender province the sending engine does not own.
        with(&|m| {
            if let Message::Prepare { sender_admdvs, .. } = m {
                *sender_admdvs = 310101;
            }
        }),
        // A receiver in a province this engine does not own.
        with(&|m| {
            if let Message::Prepare { to_admdvs, .. } = m {
                *to_admdvs = 440106;
            }
        }),
        // No money, or expiring before it was made.
        with(&|m| {
            if let Message::Prepare { amount, .. } = m {
                *amount = Fen::ZERO;
            }
        }),
        with(&|m| {
            if let Message::Prepare { expires_at, .. } = m {
                *expires_at = created;
            }
        }),
    ];
    for m in &forged {
        assert_eq!(bj.deliver(m).map(|_| ()), Err(ErrCode::BadRequest), "{m:?}");
    }
    assert!(bj.state.exchange(&xid).is_none());
    bj.deliver(&prepare).expect("the real one");
    // The same id with the amount changed: refused, the record stands.
    let changed = Message::Prepare {
        xid,
        to_engine: eid("bj"),
        to_psn_no,
        to_admdvs,
        amount: Fen(amount.0 + 1),
        sender_admdvs,
        created,
        expires_at,
    };
    assert_eq!(bj.deliver(&changed).map(|_| ()), Err(ErrCode::BadRequest));
    // Outcomes: unknown id, from an engine it was not sent to, another amount, blocked though
    // never reversed, and (once closed) a contradicting one.
    let outcome = |engine: &str, amount: u64, outcome: Outcome, xid: Xid| Message::Outcome {
        xid,
        from_engine: eid(engine),
        amount: Fen(amount),
        outcome,
    };
    let unknown = Xid {
        engine: eid("gd"),
        key: 7,
    };
    for m in [
        outcome("bj", 20_000, Outcome::Accepted, unknown),
        outcome("sh", 20_000, Outcome::Accepted, xid),
        outcome("bj", 20_001, Outcome::Accepted, xid),
        outcome("bj", 20_000, Outcome::Blocked, xid),
    ] {
        assert_eq!(
            gd.deliver(&m).map(|_| ()),
            Err(ErrCode::BadRequest),
            "{m:?}"
        );
    }
    // sh never saw this exchange: an outcome to sh's own engine id for it is not sh's.
    let misrouted = outcome("bj", 20_000, Outcome::Accepted, xid);
    assert_eq!(sh.deliver(&misrouted).map(|_| ()), Err(ErrCode::BadRequest));
    let accepted = accept(&mut bj, xid, Actor::Admin).expect("accepted").send[0].clone();
    gd.deliver(&accepted).expect("committed");
    let contradicting = outcome("bj", 20_000, Outcome::Declined, xid);
    assert_eq!(
        gd.deliver(&contradicting).map(|_| ()),
        Err(ErrCode::BadRequest)
    );
    assert_eq!(gd.acct("S1"), Fen(80_000));
    // Bytes from the bus: truncated, trailing, unknown version or tag, bad engine id.
    let mut bytes = Vec::new();
    encode_message(&prepare, &mut bytes);
    assert_eq!(decode_message(&bytes), Ok(prepare.clone()));
    for bad in [
        bytes[..bytes.len() - 1].to_vec(),
        [bytes.as_slice(), &[0]].concat(),
        [&[2u8], &bytes[1..]].concat(),
        [&bytes[..1], &[9u8], &bytes[2..]].concat(),
        [&bytes[..3], b"G", &bytes[4..]].concat(),
    ] {
        assert!(decode_message(&bad).is_err(), "{bad:?} decoded");
    }
    gd.done();
    bj.done();
    sh.done();
}

#[test]
fn declined_and_expired_transfers_return_to_the_sender() {
    let (mut gd, mut bj) = world();
    bj.enrol("R2", 110106, 0);
    let x1 = gd.send("tx1", "S1", "R1", 110105, 10_000);
    let x2 = gd.send("tx2", "S1", "R2", 110106, 5_000);
    // A receiver unknown on bj: declined at once, answered with the Prepare.
    let x3 = gd.send("tx3", "S1", "NOBODY", 110105, 1_000);
    assert_eq!(gd.acct("S1"), Fen(84_000));
    for m in gd.state.fed_outbox() {
        let answer = bj.deliver(&m).expect("prepared");
        if m.xid() == x3 {
            assert!(matches!(
                answer.send[..],
                [Message::Outcome {
                    outcome: Outcome::Declined,
                    ..
                }]
            ));
        }
    }
    let declined = decline(&mut bj, x1).expect("declined").send;
    // 06:00 CST the next day: x2 expires with the next op on bj (here a clock tick).
    bj.now = t("2025-05-21 06:00:00");
    let tick = bj
        .apply(Entry::Core(Op::Tick { time: bj.now }))
        .expect("tick");
    assert!(matches!(
        tick.send[..],
        [Message::Outcome {
            outcome: Outcome::Expired,
            ..
        }]
    ));
    assert_eq!(accept(&mut bj, x2, Actor::Admin), Err(ErrCode::NotPending));
    for m in declined.into_iter().chain(tick.send) {
        gd.deliver(&m).expect("returned");
    }
    let stored = bj
        .deliver(&gd.state.fed_outbox().pop().expect("x3 in flight"))
        .expect("dup");
    gd.deliver(&stored.send[0]).expect("returned");
    assert_eq!(gd.acct("S1"), Fen(100_000));
    assert!(gd.state.fed_outbox().is_empty());
    assert_eq!(bj.wallet("R1"), Fen::ZERO);
    assert_eq!(gd.status(&x2), XStatus::Closed(Outcome::Expired));
    // A Prepare that arrives after its expiry is closed expired at once.
    gd.now = t("2025-05-22 10:00:00");
    let x4 = gd.send("tx4", "S1", "R1", 110105, 1_000);
    let late = gd.state.fed_outbox().pop().expect("outbox");
    bj.now = t("2025-05-23 09:00:00");
    let answer = bj.deliver(&late).expect("late");
    assert_eq!(bj.status(&x4), XStatus::Closed(Outcome::Expired));
    gd.deliver(&answer.send[0]).expect("returned");
    assert_eq!(gd.acct("S1"), Fen(100_000));
    gd.done();
    bj.done();
}

#[test]
fn a_reversal_blocks_a_transfer_that_never_arrived_and_lets_one_that_did_carry_on() {
    let (mut gd, mut bj) = world();
    let reverse = |e: &mut Engine, omsgid: &str| {
        let time = e.now;
        e.apply(Entry::Fed(FedOp::Reverse {
            time,
            actor: Actor::Person(psn("S1")),
            omsgid: mid(omsgid),
        }))
    };
    let x1 = gd.send("tx1", "S1", "R1", 110105, 10_000);
    let lost_prepare = gd.state.fed_outbox().pop().expect("outbox");
    let block = reverse(&mut gd, "tx1").expect("reversed").send[0].clone();
    assert!(matches!(block, Message::Block { .. }));
    assert_eq!(gd.state.fed_outbox(), vec![block.clone()]);
    assert!(reverse(&mut gd, "tx1").expect("again").replayed);
    let blocked = bj.deliver(&block).expect("blocked").send[0].clone();
    // The Prepare arrives late: it is answered blocked, nothing pending.
    let late = bj.deliver(&lost_prepare).expect("late");
    assert_eq!((late.replayed, late.send), (true, vec![blocked.clone()]));
    gd.deliver(&blocked).expect("returned");
    assert_eq!(gd.acct("S1"), Fen(100_000));
    assert_eq!(bj.status(&x1), XStatus::Closed(Outcome::Blocked));
    // Reversed after it arrived: the Block changes nothing on bj and the transfer carries on.
    let x2 = gd.send("tx2", "S1", "R1", 110105, 10_000);
    bj.deliver(&gd.state.fed_outbox().pop().expect("outbox"))
        .expect("pending");
    let block = reverse(&mut gd, "tx2").expect("reversed").send[0].clone();
    let answer = bj.deliver(&block).expect("carries on");
    assert!(answer.replayed && answer.send.is_empty());
    let accepted = accept(&mut bj, x2, Actor::Admin).expect("accepted").send[0].clone();
    gd.deliver(&accepted).expect("committed");
    assert_eq!(gd.status(&x2), XStatus::Closed(Outcome::Accepted));
    // Nothing to reverse by a msgid that sent nothing.
    assert_eq!(
        reverse(&mut gd, "nothing").map(|_| ()),
        Err(ErrCode::NotFound)
    );
    gd.done();
    bj.done();
}

#[test]
fn the_sender_side_checks_rule_14_and_owns_its_provinces() {
    let (mut gd, _bj) = world();
    let now = gd.now;
    let to = |amount: u64, to_admdvs: u32, msgid: &str| {
        transfer_out(msgid, now, "S1", "R1", to_admdvs, amount)
    };
    // An in-engine receiver's province, a province nobody owns, too much, too little money.
    assert_eq!(
        gd.apply(to(100, 440106, "a")).map(|_| ()),
        Err(ErrCode::InvalidAdmdvs)
    );
    assert_eq!(
        gd.apply(to(100, 510105, "b")).map(|_| ()),
        Err(ErrCode::InvalidAdmdvs)
    );
    assert_eq!(
        gd.apply(to(200_001, 110105, "c")).map(|_| ()),
        Err(ErrCode::WalletAmountLimit)
    );
    assert_eq!(
        gd.apply(to(0, 110105, "d")).map(|_| ()),
        Err(ErrCode::InvalidAmount)
    );
    gd.core(Body::Enrol {
        psn_no: psn("P2"),
        certno: arrayvec::ArrayString::from(&certno_with_check("44010619900101777").unwrap())
            .unwrap(),
        psn_name: "李四".into(),
        insutype: Insutype::Employee,
        admdvs: 440106,
    })
    .expect("enrolled");
    let poor = Entry::Fed(FedOp::TransferOut {
        msgid: mid("e"),
        time: now,
        actor: Actor::Admin,
        from_psn_no: psn("P2"),
        to_psn_no: psn("R1"),
        to_admdvs: 110105,
        amount: Fen(100),
        source: TransferSource::Acct,
    });
    assert_eq!(
        gd.apply(poor).map(|_| ()),
        Err(ErrCode::InsufficientBalance)
    );
    // Someone else's money: forbidden.
    let theirs = Entry::Fed(FedOp::TransferOut {
        msgid: mid("f"),
        time: now,
        actor: Actor::Person(psn("P2")),
        from_psn_no: psn("S1"),
        to_psn_no: psn("R1"),
        to_admdvs: 110105,
        amount: Fen(100),
        source: TransferSource::Acct,
    });
    assert_eq!(gd.apply(theirs).map(|_| ()), Err(ErrCode::Forbidden));
    // Three a day, whatever becomes of them.
    for k in 0..3 {
        gd.send(&format!("ok{k}"), "S1", "R1", 110105, 100);
    }
    assert_eq!(
        gd.apply(to(100, 110105, "g")).map(|_| ()),
        Err(ErrCode::WalletDailyLimit)
    );
    // A person of another engine's province is not enrolled here.
    let foreign = Body::Enrol {
        psn_no: psn("B9"),
        certno: arrayvec::ArrayString::from(&certno_with_check("11010519900101001").unwrap())
            .unwrap(),
        psn_name: "王五".into(),
        insutype: Insutype::Employee,
        admdvs: 110105,
    };
    assert_eq!(gd.core(foreign).map(|_| ()), Err(ErrCode::InvalidAdmdvs));
    // A core write may not reuse a cross-engine transfer's msgid, nor reverse it the core way.
    let reuse = Op::Write(Command {
        msgid: mid("ok0"),
        time: now,
        actor: Actor::Person(psn("S1")),
        body: Body::OpenWallet { psn_no: psn("S1") },
    });
    assert_eq!(
        gd.apply(Entry::Core(reuse)).map(|_| ()),
        Err(ErrCode::MsgidConflict)
    );
    let core_reverse = Op::Write(Command {
        msgid: mid("rv"),
        time: now,
        actor: Actor::Person(psn("S1")),
        body: Body::Reverse {
            omsgid: mid("ok0"),
            fixmedins_code: None,
        },
    });
    assert_eq!(
        gd.apply(Entry::Core(core_reverse)).map(|_| ()),
        Err(ErrCode::NotReversible)
    );
    gd.done();
}

#[test]
fn an_engine_without_federation_refuses_federation_ops_and_config_is_checked() {
    let mut plain = State::new(Params::default());
    let before = plain.state_hash();
    let op = FedOp::Deliver {
        time: 0,
        msg: Message::Block {
            xid: Xid {
                engine: eid("gd"),
                key: 1,
            },
            to_engine: eid("bj"),
            amount: Fen(1),
            created: 0,
        },
    };
    assert_eq!(
        plain.apply_fed(&op).map(|_| ()).map_err(|r| r.code),
        Err(ErrCode::BadRequest)
    );
    assert_eq!(plain.state_hash(), before);
    // A federation op is not a core op: the core decoder refuses its record.
    let mut bytes = Vec::new();
    encode_entry(&Entry::Fed(op), &mut bytes);
    assert!(gongji_core::codec::decode_op(&bytes).is_err());
    let bad: BTreeMap<_, _> = [(eid("bj"), vec![44u8])].into_iter().collect();
    let overlapping = FederationConfig {
        engine: eid("gd"),
        provinces: vec![44],
        peers: bad,
    };
    assert!(plain.configure_federation(overlapping).is_err());
    assert!(plain
        .configure_federation(config("gd", &[44], &[("gd", &[11])]))
        .is_err());
    assert!(plain
        .configure_federation(config("GD", &[44], &[]))
        .is_err());
    assert!(plain
        .configure_federation(config("gd", &[99], &[]))
        .is_err());
    plain
        .configure_federation(config("gd", &[44], &[]))
        .expect("valid");
}
