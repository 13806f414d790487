//! The federation protocol on two real engines' states (docs/FEDERATION.md): every write path
//! of a cross-engine transfer, its duplicates (replayed, nothing changes), and malformed,
//! forged or replayed bus messages (refused, nothing changes). Every engine journals what it
//! applied, and every test ends by replaying that journal from op 1 into a fresh state, which
//! must give the same state hash and pass the full `check`. Cross-engine bindings (rule 7's
//! `wallet_only` across engines) go through the same exchange and the same checks: made,
//! refused under the receiver engine's limits, revoked from either side, required by a
//! transfer (`NOT_BOUND` without one).

use std::collections::BTreeMap;

use gongji_core::certno::certno_with_check;
use gongji_core::federation::codec::{decode_entry, decode_message, encode_entry, encode_message};
use gongji_core::federation::{
    BindRefusal, EngineId, Entry, EntryApplied, EntryReply, FedOp, FedReply, FederationConfig,
    LinkStatus, Message, Outcome, XStatus, Xid, NO_DAY,
};
use gongji_core::time::{parse_cst, parse_period};
use gongji_core::{
    Actor, Body, Command, CreditItem, ErrCode, Fen, Insutype, Msgid, Op, Params, PersonStatus,
    PsnNo, Relation, State, TransferSource,
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
    params: Params,
    config: FederationConfig,
    journal: Vec<Vec<u8>>,
    now: i64,
    seq: u32,
}

impl Engine {
    fn new(config: FederationConfig) -> Engine {
        Engine::with_params(config, Params::default())
    }

    fn with_params(config: FederationConfig, params: Params) -> Engine {
        let mut state = State::new(params.clone());
        state.configure_federation(config.clone()).expect("config");
        Engine {
            state,
            params,
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
        self.enrol_without_wallet(p, admdvs);
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

    fn enrol_without_wallet(&mut self, p: &str, admdvs: u32) {
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
    }

    /// A person (or admin) proposes a cross-engine binding; `Err` is the giver engine's
    /// synchronous refusal.
    fn bind_out(
        &mut self,
        msgid: &str,
        giver: &str,
        receiver: &str,
        receiver_admdvs: u32,
    ) -> Result<EntryApplied, ErrCode> {
        self.apply(bind_out(msgid, self.now, giver, receiver, receiver_admdvs))
    }

    /// A client's revocation with a fresh msgid.
    fn unbind(&mut self, bxid: Xid, actor: Actor) -> Result<EntryApplied, ErrCode> {
        self.seq += 1;
        let msgid = format!("u{}", self.seq);
        self.unbind_as(bxid, actor, Some(&msgid))
    }

    /// A revocation with this msgid, or without one (an op of a journal written before).
    fn unbind_as(
        &mut self,
        bxid: Xid,
        actor: Actor,
        msgid: Option<&str>,
    ) -> Result<EntryApplied, ErrCode> {
        let time = self.now;
        let msgid = msgid.map(mid);
        self.apply(Entry::Fed(FedOp::Unbind {
            time,
            actor,
            bxid,
            msgid,
        }))
    }

    fn link(&self, bxid: &Xid) -> LinkStatus {
        self.state.cross_binding(bxid).expect("binding").status
    }

    fn send(&mut self, msgid: &str, from: &str, to: &str, to_admdvs: u32, amount: u64) -> Xid {
        let applied = self
            .apply(transfer_out(msgid, self.now, from, to, to_admdvs, amount))
            .expect("transfer out");
        assert_eq!(applied.send.len(), 1, "the Prepare to send");
        applied.send[0].xid().expect("an id")
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
        let mut fresh = State::new(self.params.clone());
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
        // the whole body. The same holds for a cut exactly before the bindings' section:
        // it reads as the engine without them, a different state.)
        let links = bytes.windows(8).rposition(|w| w == b"GJLNK001");
        let unbinds = bytes.windows(8).rposition(|w| w == b"GJUNB001");
        let answers = bytes.windows(8).rposition(|w| w == b"GJANS001");
        let extras = bytes.windows(8).rposition(|w| w == b"GJXEX001");
        let forgetting = bytes.windows(8).rposition(|w| w == b"GJFGT001");
        for cut in marker + 1..bytes.len() {
            if [links, unbinds, answers, extras, forgetting].contains(&Some(cut)) {
                // Without the forgetting section the entries name exchange numbers it gave:
                // refused; else another state.
                match State::decode_snapshot(&bytes[..cut]) {
                    Err(_) => assert!(self.state.fed_record_counts().2 > 0),
                    Ok(s) => assert_ne!(s.state_hash(), self.state.state_hash()),
                }
                continue;
            }
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
        // With cross-engine bindings, their section follows; its marker damaged: refused.
        assert_eq!(links.is_some(), self.state.links().next().is_some());
        if let Some(at) = links {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(State::decode_snapshot(&bad).is_err(), "damaged link marker");
        }
        // With watermarks, the forgetting section is last; its marker damaged: refused.
        assert_eq!(
            forgetting.is_some(),
            !self.state.fed_watermarks().is_empty()
        );
        if let Some(at) = forgetting {
            let mut bad = bytes.clone();
            bad[at + 7] ^= 1;
            assert!(
                State::decode_snapshot(&bad).is_err(),
                "damaged forget marker"
            );
        }
    }

    fn forget(&mut self) -> Result<EntryApplied, ErrCode> {
        let time = self.now;
        self.apply(Entry::Fed(FedOp::Forget { time }))
    }

    /// `msg` is refused and changes nothing (the harness compares the state hash).
    fn refuses(&mut self, msg: &Message) {
        assert_eq!(
            self.deliver(msg).map(|_| ()),
            Err(ErrCode::BadRequest),
            "{msg:?}"
        );
    }
}

fn bind_out(msgid: &str, time: i64, giver: &str, receiver: &str, receiver_admdvs: u32) -> Entry {
    Entry::Fed(FedOp::BindOut {
        msgid: mid(msgid),
        time,
        actor: Actor::Person(psn(giver)),
        giver_psn_no: psn(giver),
        receiver_psn_no: psn(receiver),
        receiver_admdvs,
        relation: Relation::Parent,
    })
}

/// A binding made through the exchange: proposed on the giver's engine `a`, judged on `b`,
/// the answer back on `a`. Returns its id and `b`'s answer.
fn bind(
    a: &mut Engine,
    b: &mut Engine,
    msgid: &str,
    giver: &str,
    receiver: &str,
    receiver_admdvs: u32,
) -> (Xid, LinkStatus) {
    let proposed = a
        .bind_out(msgid, giver, receiver, receiver_admdvs)
        .expect("proposed");
    let [Message::Bind { bxid, .. }] = proposed.send[..] else {
        panic!("a Bind to send: {:?}", proposed.send)
    };
    assert_eq!(a.link(&bxid), LinkStatus::Pending);
    let judged = b.deliver(&proposed.send[0]).expect("judged");
    let [Message::BindStatus { status, .. }] = judged.send[..] else {
        panic!("a BindStatus answer: {:?}", judged.send)
    };
    a.deliver(&judged.send[0]).expect("answered");
    assert_eq!(a.link(&bxid), status);
    assert_eq!(b.link(&bxid), status);
    assert!(a.state.fed_outbox().is_empty() && b.state.fed_outbox().is_empty());
    (bxid, status)
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
    let (_, status) = bind(&mut gd, &mut bj, "b-S1-R1", "S1", "R1", 110105);
    assert_eq!(status, LinkStatus::Active);
    (gd, bj)
}

fn accept(e: &mut Engine, xid: Xid, actor: Actor) -> Result<EntryApplied, ErrCode> {
    let time = e.now;
    e.apply(Entry::Fed(FedOp::Accept {
        time,
        actor,
        xid,
        msgid: None,
    }))
}

fn decline(e: &mut Engine, xid: Xid) -> Result<EntryApplied, ErrCode> {
    let time = e.now;
    e.apply(Entry::Fed(FedOp::Decline {
        time,
        actor: Actor::Admin,
        xid,
        msgid: None,
    }))
}

/// A client's accept (or decline) carrying its msgid, as API.md's.
fn answer_as(
    e: &mut Engine,
    accept: bool,
    xid: Xid,
    actor: Actor,
    msgid: &str,
) -> Result<EntryApplied, ErrCode> {
    let (time, msgid) = (e.now, Some(mid(msgid)));
    e.apply(Entry::Fed(FedOp::answer(accept, time, actor, xid, msgid)))
}

/// S1's reversal of its transfer `omsgid`, carrying the reversal's own msgid.
fn reverse_as(e: &mut Engine, omsgid: &str, msgid: &str) -> Result<EntryApplied, ErrCode> {
    let time = e.now;
    e.apply(Entry::Fed(FedOp::Reverse {
        time,
        actor: Actor::Person(psn("S1")),
        omsgid: mid(omsgid),
        msgid: Some(mid(msgid)),
    }))
}

/// The status the exchange in an answer shows, and whether it was a replay.
fn shown(applied: EntryApplied) -> (XStatus, bool) {
    match applied.reply {
        EntryReply::Fed(FedReply::Exchange(x)) => (x.status, applied.replayed),
        other => panic!("not an exchange: {other:?}"),
    }
}

#[test]
fn answers_to_an_exchange_are_idempotent_by_their_msgid() {
    let (mut gd, mut bj) = world();
    let r1 = || Actor::Person(psn("R1"));
    let sent = gd
        .apply(transfer_out("tx1", gd.now, "S1", "R1", 110105, 10_000))
        .expect("sent");
    let x1 = sent.send[0].xid().expect("an id");
    let x2 = gd.send("tx2", "S1", "R1", 110105, 2_000);
    for msg in gd.state.fed_outbox() {
        bj.deliver(&msg).expect("pending");
    }
    // A msgid another write of the scope took: bj's first admin write (an enrolment).
    assert_eq!(
        answer_as(&mut bj, true, x1, Actor::Admin, "m1").map(shown),
        Err(ErrCode::MsgidConflict)
    );
    let accepted = answer_as(&mut bj, true, x1, r1(), "a1").expect("accepted");
    assert_eq!(accepted.send.len(), 1, "the outcome");
    gd.deliver(&accepted.send[0]).expect("committed");
    assert_eq!(shown(accepted), (XStatus::Closed(Outcome::Accepted), false));
    assert_eq!(bj.wallet("R1"), Fen(10_000));
    // The retry: the first answer again, nothing sent, nothing changed (the harness checks).
    let again = answer_as(&mut bj, true, x1, r1(), "a1").expect("replayed");
    assert!(again.send.is_empty());
    assert_eq!(shown(again), (XStatus::Closed(Outcome::Accepted), true));
    assert_eq!(bj.wallet("R1"), Fen(10_000));
    // The same msgid with another body: a decline, another exchange.
    assert_eq!(
        answer_as(&mut bj, false, x1, r1(), "a1").map(shown),
        Err(ErrCode::MsgidConflict)
    );
    assert_eq!(
        answer_as(&mut bj, true, x2, r1(), "a1").map(shown),
        Err(ErrCode::MsgidConflict)
    );
    // A new msgid for a closed exchange: API.md's NOT_PENDING (an op without a msgid, of a
    // journal written before, is still answered as it is).
    assert_eq!(
        answer_as(&mut bj, true, x1, r1(), "a2").map(shown),
        Err(ErrCode::NotPending)
    );
    assert_eq!(
        accept(&mut bj, x1, r1()).map(shown),
        Ok((XStatus::Closed(Outcome::Accepted), true))
    );
    // No other write of R1's scope may take "a1": a core write, a cross-engine transfer, a
    // cross-engine binding. The msgid check answers before anything else is looked at.
    let core = Entry::Core(Op::Write(Command {
        msgid: mid("a1"),
        time: bj.now,
        actor: r1(),
        body: Body::OpenWallet { psn_no: psn("R1") },
    }));
    assert_eq!(bj.apply(core).map(shown), Err(ErrCode::MsgidConflict));
    let out = transfer_out("a1", bj.now, "R1", "S1", 440106, 100);
    assert_eq!(bj.apply(out).map(shown), Err(ErrCode::MsgidConflict));
    let bind = Entry::Fed(FedOp::BindOut {
        msgid: mid("a1"),
        time: bj.now,
        actor: r1(),
        giver_psn_no: psn("R1"),
        receiver_psn_no: psn("S1"),
        receiver_admdvs: 440106,
        relation: Relation::Parent,
    });
    assert_eq!(bj.apply(bind).map(|_| ()), Err(ErrCode::MsgidConflict));
    // The admin's decline of the other, and its retry.
    let declined = answer_as(&mut bj, false, x2, Actor::Admin, "d1").expect("declined");
    assert_eq!(shown(declined), (XStatus::Closed(Outcome::Declined), false));
    assert_eq!(
        answer_as(&mut bj, false, x2, Actor::Admin, "d1").map(shown),
        Ok((XStatus::Closed(Outcome::Declined), true))
    );
    // The sender's reversal: its retry shows what the first answer showed (in flight), also
    // once the exchange has closed since.
    let x3 = gd.send("tx3", "S1", "R1", 110105, 1_000);
    let reversed = reverse_as(&mut gd, "tx3", "rv1").expect("reversed");
    let block = reversed.send[0].clone();
    assert!(matches!(block, Message::Block { .. }));
    assert_eq!(shown(reversed), (XStatus::InFlight, false));
    let blocked = bj.deliver(&block).expect("blocked").send[0].clone();
    gd.deliver(&blocked).expect("returned");
    assert_eq!(gd.status(&x3), XStatus::Closed(Outcome::Blocked));
    assert_eq!(
        reverse_as(&mut gd, "tx3", "rv1").map(shown),
        Ok((XStatus::InFlight, true))
    );
    // A reversal with a new msgid of a closed transfer takes its msgid and answers it as it
    // is; so do its retries. The msgid with another transfer is a conflict.
    let late = reverse_as(&mut gd, "tx3", "rv2").expect("kept");
    assert!(late.send.is_empty());
    assert_eq!(shown(late), (XStatus::Closed(Outcome::Blocked), false));
    assert_eq!(
        reverse_as(&mut gd, "tx3", "rv2").map(shown),
        Ok((XStatus::Closed(Outcome::Blocked), true))
    );
    assert_eq!(
        reverse_as(&mut gd, "tx1", "rv1").map(shown),
        Err(ErrCode::MsgidConflict)
    );
    assert_eq!(
        gd.apply(transfer_out("rv1", gd.now, "S1", "R1", 110105, 100))
            .map(shown),
        Err(ErrCode::MsgidConflict)
    );
    // The transfer's and the binding's retries answer their first answers too, though both
    // moved on since: in flight with the sender's balances after the hold; pending.
    assert_eq!(gd.status(&x1), XStatus::Closed(Outcome::Accepted));
    assert_ne!(gd.acct("S1"), Fen(90_000));
    let again = gd
        .apply(transfer_out("tx1", gd.now, "S1", "R1", 110105, 10_000))
        .expect("replayed");
    assert!(again.replayed);
    assert_eq!(again.reply, sent.reply);
    let EntryReply::Fed(FedReply::Exchange(first)) = &sent.reply else {
        panic!("an exchange")
    };
    assert_eq!(
        (first.status, first.answered_balances),
        (XStatus::InFlight, Some((Fen(90_000), Fen::ZERO)))
    );
    let bound = gd
        .bind_out("b-S1-R1", "S1", "R1", 110105)
        .expect("replayed");
    let EntryReply::Fed(FedReply::Binding(link)) = &bound.reply else {
        panic!("a binding")
    };
    assert!(bound.replayed);
    assert_eq!(link.status, LinkStatus::Pending);
    // The msgids are in the snapshot, in their own section.
    for e in [&gd, &bj] {
        let mut bytes = Vec::new();
        e.state.encode_snapshot(&mut bytes);
        assert!(bytes.windows(8).any(|w| w == b"GJANS001"));
    }
    gd.done();
    bj.done();
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
    // The receiver's engine keeps the sender's psn_no: a copy naming another is refused.
    assert_eq!(
        bj.state.exchange(&xid).expect("pending").from_psn_no,
        Some(psn("S1"))
    );
    let mut other = prepare.clone();
    if let Message::Prepare { from_psn_no, .. } = &mut other {
        *from_psn_no = psn("S2");
    }
    bj.refuses(&other);
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
        from_psn_no,
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
        from_psn_no,
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
    bj.enrol_without_wallet("R3", 110106);
    bind(&mut gd, &mut bj, "b2", "S1", "R2", 110106);
    bind(&mut gd, &mut bj, "b3", "S1", "R3", 110106);
    let x1 = gd.send("tx1", "S1", "R1", 110105, 10_000);
    let x2 = gd.send("tx2", "S1", "R2", 110106, 5_000);
    // A receiver unknown on bj has no binding to anyone: NOT_BOUND on the sender's engine.
    assert_eq!(
        gd.apply(transfer_out("tx0", gd.now, "S1", "NOBODY", 110105, 1_000))
            .map(|_| ()),
        Err(ErrCode::NotBound)
    );
    // A receiver whose wallet is not open: declined at once, answered with the Prepare.
    let x3 = gd.send("tx3", "S1", "R3", 110106, 1_000);
    assert_eq!(gd.acct("S1"), Fen(84_000));
    for m in gd.state.fed_outbox() {
        let answer = bj.deliver(&m).expect("prepared");
        if m.xid() == Some(x3) {
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
            msgid: None,
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
    let (mut gd, mut bj) = world();
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
    bind(&mut gd, &mut bj, "b-P2-R1", "P2", "R1", 110105);
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
    bj.done();
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

fn reply_link(applied: &EntryApplied) -> LinkStatus {
    match &applied.reply {
        EntryReply::Fed(FedReply::Binding(view)) => view.status,
        other => panic!("a binding reply: {other:?}"),
    }
}

#[test]
fn a_cross_engine_binding_is_made_by_the_exchange_and_a_transfer_needs_it() {
    let mut gd = Engine::new(config("gd", &[44], &[("bj", &[11])]));
    let mut bj = Engine::new(config("bj", &[11], &[("gd", &[44])]));
    gd.enrol("S1", 440106, 100_000);
    bj.enrol("R1", 110105, 50_000);
    // No binding: NOT_BOUND on the sender's engine, nothing held, nothing sent.
    let unbound = transfer_out("tx0", gd.now, "S1", "R1", 110105, 1_000);
    assert_eq!(gd.apply(unbound).map(|_| ()), Err(ErrCode::NotBound));
    // Proposed: pending on gd; a transfer is still NOT_BOUND; the Bind is in the outbox.
    let proposed = gd.bind_out("b1", "S1", "R1", 110105).expect("proposed");
    assert_eq!(reply_link(&proposed), LinkStatus::Pending);
    let bxid = proposed.send[0].xid().expect("an id");
    assert_eq!(gd.state.fed_outbox(), proposed.send);
    let early = transfer_out("tx1", gd.now, "S1", "R1", 110105, 1_000);
    assert_eq!(gd.apply(early).map(|_| ()), Err(ErrCode::NotBound));
    // bj records it active under the same id, and answers.
    let judged = bj.deliver(&proposed.send[0]).expect("judged");
    assert_eq!(bj.link(&bxid), LinkStatus::Active);
    let view = bj.state.cross_binding(&bxid).expect("recorded");
    assert_eq!(
        (view.giver_psn_no, view.receiver_psn_no, view.giver_here),
        (psn("S1"), psn("R1"), false)
    );
    gd.deliver(&judged.send[0]).expect("active");
    assert_eq!(gd.link(&bxid), LinkStatus::Active);
    assert!(gd.state.fed_outbox().is_empty());
    // The binding tells gd where R1 lives.
    assert_eq!(gd.state.bound_remote_admdvs("S1", "R1"), Some(110105));
    assert_eq!(bj.state.bound_remote_admdvs("R1", "S1"), Some(440106));
    // Transfers now go through, in either direction (rule 14: a binding either way).
    let x1 = gd.send("tx2", "S1", "R1", 110105, 1_000);
    let back = transfer_out("tx3", bj.now, "R1", "S1", 440106, 2_000);
    let back = bj.apply(back).expect("sent back").send[0].clone();
    gd.deliver(&back).expect("pending on gd");
    let x2 = back.xid().expect("an id");
    let accepted = accept(&mut gd, x2, Actor::Person(psn("S1"))).expect("accepted");
    bj.deliver(&accepted.send[0]).expect("committed");
    assert_eq!(gd.wallet("S1"), Fen(2_000));
    // The receiver revokes on its own engine; the Unbind travels to gd.
    let revoked = bj
        .unbind_as(bxid, Actor::Person(psn("R1")), Some("rv1"))
        .expect("revoked");
    assert_eq!(reply_link(&revoked), LinkStatus::Revoked);
    assert_eq!(bj.state.fed_outbox(), revoked.send);
    let refused = transfer_out("tx4", bj.now, "R1", "S1", 440106, 100);
    assert_eq!(bj.apply(refused).map(|_| ()), Err(ErrCode::NotBound));
    let confirmed = gd.deliver(&revoked.send[0]).expect("revoked on gd");
    assert_eq!(gd.link(&bxid), LinkStatus::Revoked);
    bj.deliver(&confirmed.send[0]).expect("confirmed");
    assert!(bj.state.fed_outbox().is_empty());
    let after = transfer_out("tx5", gd.now, "S1", "R1", 110105, 100);
    assert_eq!(gd.apply(after).map(|_| ()), Err(ErrCode::NotBound));
    // A transfer made before the revocation that reaches bj after it: bj declines it at
    // once (its binding is revoked there) and the money returns.
    let prepare = gd.state.fed_outbox().pop().expect("x1 in flight");
    let declined = bj.deliver(&prepare).expect("judged").send[0].clone();
    assert_eq!(bj.status(&x1), XStatus::Closed(Outcome::Declined));
    gd.deliver(&declined).expect("returned");
    assert_eq!(gd.acct("S1"), Fen(100_000));
    // Another person may not revoke it; a revoked binding revoked again is ALREADY_REVOKED,
    // on either engine, and changes nothing (API.md's revoke).
    assert_eq!(
        gd.unbind(bxid, Actor::Person(psn("X1"))).map(|_| ()),
        Err(ErrCode::Forbidden)
    );
    let (hash_gd, hash_bj) = (gd.state.state_hash(), bj.state.state_hash());
    assert_eq!(
        gd.unbind(bxid, Actor::Admin).map(|_| ()),
        Err(ErrCode::AlreadyRevoked)
    );
    assert_eq!(
        bj.unbind(bxid, Actor::Person(psn("R1"))).map(|_| ()),
        Err(ErrCode::AlreadyRevoked)
    );
    // The first revocation's retry (same msgid, same binding) is answered as the first time.
    let again = bj
        .unbind_as(bxid, Actor::Person(psn("R1")), Some("rv1"))
        .expect("replayed");
    assert!(again.replayed && again.send.is_empty());
    let shown = |reply: &EntryReply| match reply {
        EntryReply::Fed(FedReply::Binding(l)) => (l.bxid, l.status, l.psn_no),
        other => panic!("{other:?}"),
    };
    assert_eq!(shown(&again.reply), shown(&revoked.reply));
    // Its msgid may name nothing else in R1's scope: another binding, a transfer.
    let other = Xid {
        engine: bxid.engine,
        key: bxid.key ^ 1,
    };
    assert_eq!(
        bj.unbind_as(other, Actor::Person(psn("R1")), Some("rv1"))
            .map(|_| ()),
        Err(ErrCode::MsgidConflict)
    );
    let reused = transfer_out("rv1", bj.now, "R1", "S1", 440106, 100);
    assert_eq!(bj.apply(reused).map(|_| ()), Err(ErrCode::MsgidConflict));
    let core = Op::Write(Command {
        msgid: mid("rv1"),
        time: bj.now,
        actor: Actor::Person(psn("R1")),
        body: Body::OpenWallet { psn_no: psn("R1") },
    });
    assert_eq!(
        bj.apply(Entry::Core(core)).map(|_| ()),
        Err(ErrCode::MsgidConflict)
    );
    // Malformed msgids are refused.
    for bad in ["", "a b", &"x".repeat(65)] {
        let op = Entry::Fed(FedOp::Unbind {
            time: bj.now,
            actor: Actor::Admin,
            bxid,
            msgid: Some(Msgid::from(bad).unwrap_or_default()),
        });
        assert_eq!(
            bj.apply(op).map(|_| ()),
            Err(ErrCode::BadRequest),
            "{bad:?}"
        );
    }
    // An op without a msgid (a journal written before they were kept) answers it as it is.
    assert!(
        gd.unbind_as(bxid, Actor::Admin, None)
            .expect("as is")
            .replayed
    );
    assert_eq!(
        (gd.state.state_hash(), bj.state.state_hash()),
        (hash_gd, hash_bj)
    );
    gd.done();
    bj.done();
}

#[test]
fn duplicates_of_every_binding_step_are_answered_from_the_record_and_change_nothing() {
    let mut gd = Engine::new(config("gd", &[44], &[("bj", &[11])]));
    let mut bj = Engine::new(config("bj", &[11], &[("gd", &[44])]));
    gd.enrol("S1", 440106, 100_000);
    bj.enrol("R1", 110105, 0);
    let proposed = gd.bind_out("b1", "S1", "R1", 110105).expect("proposed");
    let bxid = proposed.send[0].xid().expect("an id");
    // The client's retry: the same binding; another body under the msgid: a conflict; the
    // pair again under a new msgid: BINDING_EXISTS.
    assert!(
        gd.bind_out("b1", "S1", "R1", 110105)
            .expect("again")
            .replayed
    );
    assert_eq!(
        gd.bind_out("b1", "S1", "R2", 110105).map(|_| ()),
        Err(ErrCode::MsgidConflict)
    );
    assert_eq!(
        gd.bind_out("b2", "S1", "R1", 110105).map(|_| ()),
        Err(ErrCode::BindingExists)
    );
    // The binding's msgid is not a transfer's, nor a core write's.
    let reuse = transfer_out("b1", gd.now, "S1", "R1", 110105, 100);
    assert_eq!(gd.apply(reuse).map(|_| ()), Err(ErrCode::MsgidConflict));
    let core = Op::Write(Command {
        msgid: mid("b1"),
        time: gd.now,
        actor: Actor::Person(psn("S1")),
        body: Body::OpenWallet { psn_no: psn("S1") },
    });
    assert_eq!(
        gd.apply(Entry::Core(core)).map(|_| ()),
        Err(ErrCode::MsgidConflict)
    );
    let judged = bj.deliver(&proposed.send[0]).expect("judged");
    let again = bj.deliver(&proposed.send[0]).expect("duplicate Bind");
    assert_eq!((again.replayed, &again.send), (true, &judged.send));
    gd.deliver(&judged.send[0]).expect("active");
    assert!(gd.deliver(&judged.send[0]).expect("duplicate").replayed);
    // The revocation, its message and its confirmation, each twice.
    let revoked = gd.unbind(bxid, Actor::Person(psn("S1"))).expect("revoked");
    let unbind = revoked.send[0].clone();
    let confirm = bj.deliver(&unbind).expect("revoked on bj").send[0].clone();
    let again = bj.deliver(&unbind).expect("duplicate Unbind");
    assert_eq!(
        (again.replayed, &again.send),
        (true, &vec![confirm.clone()])
    );
    gd.deliver(&confirm).expect("confirmed");
    assert!(gd.deliver(&confirm).expect("duplicate").replayed);
    // A late duplicate of the first answer (active) changes nothing now.
    assert!(gd.deliver(&judged.send[0]).expect("stale").replayed);
    assert_eq!(
        (gd.link(&bxid), bj.link(&bxid)),
        (LinkStatus::Revoked, LinkStatus::Revoked)
    );
    assert!(gd.state.fed_outbox().is_empty() && bj.state.fed_outbox().is_empty());
    gd.done();
    bj.done();
}

#[test]
fn forged_malformed_and_contradicting_binding_messages_are_refused_and_change_nothing() {
    let mut gd = Engine::new(config("gd", &[44], &[("bj", &[11]), ("sh", &[31])]));
    let mut bj = Engine::new(config("bj", &[11], &[("gd", &[44]), ("sh", &[31])]));
    gd.enrol("S1", 440106, 100_000);
    bj.enrol("R1", 110105, 0);
    let proposed = gd.bind_out("b1", "S1", "R1", 110105).expect("proposed");
    let bind_msg = proposed.send[0].clone();
    let bxid = bind_msg.xid().expect("an id");
    let with = |f: &dyn Fn(&mut Message)| {
        let mut m = bind_msg.clone();
        f(&mut m);
        m
    };
    let forged = [
        with(&|m| {
            if let Message::Bind { to_engine, .. } = m {
                *to_engine = eid("sh");
            }
        }),
        with(&|m| {
            if let Message::Bind { bxid, .. } = m {
                bxid.engine = eid("xz");
            }
        }),
        // A giver province the sending engine does not own; a receiver province bj does not.
        with(&|m| {
            if let Message::Bind { giver_admdvs, .. } = m {
                *giver_admdvs = 310101;
            }
        }),
        with(&|m| {
            if let Message::Bind {
                receiver_admdvs, ..
            } = m
            {
                *receiver_admdvs = 440106;
            }
        }),
        with(&|m| {
            if let Message::Bind { relation, .. } = m {
                *relation = Relation::Other;
            }
        }),
    ];
    for m in &forged {
        assert_eq!(bj.deliver(m).map(|_| ()), Err(ErrCode::BadRequest), "{m:?}");
    }
    assert!(bj.state.cross_binding(&bxid).is_none());
    let judged = bj.deliver(&bind_msg).expect("the real one").send[0].clone();
    // The same id with another receiver: refused, the record stands.
    let changed = with(&|m| {
        if let Message::Bind {
            receiver_psn_no, ..
        } = m
        {
            *receiver_psn_no = psn("R2");
        }
    });
    assert_eq!(bj.deliver(&changed).map(|_| ()), Err(ErrCode::BadRequest));
    let status = |from: &str, to: &str, bxid: Xid, status: LinkStatus| Message::BindStatus {
        bxid,
        from_engine: eid(from),
        to_engine: eid(to),
        status,
    };
    let unknown = Xid {
        engine: eid("gd"),
        key: 7,
    };
    for m in [
        status("bj", "gd", unknown, LinkStatus::Active),
        status("sh", "gd", bxid, LinkStatus::Active),
        status("bj", "gd", bxid, LinkStatus::Pending),
        Message::Unbind {
            bxid: unknown,
            from_engine: eid("bj"),
            to_engine: eid("gd"),
            created: None,
        },
        Message::Unbind {
            bxid,
            from_engine: eid("sh"),
            to_engine: eid("gd"),
            created: None,
        },
    ] {
        assert_eq!(
            gd.deliver(&m).map(|_| ()),
            Err(ErrCode::BadRequest),
            "{m:?}"
        );
    }
    // bj may not be told the binding's state by an engine other than its giver's, nor by gd
    // that it is active (only bj decides that); sh cannot unbind a binding it never saw.
    assert_eq!(
        bj.deliver(&status("gd", "bj", bxid, LinkStatus::Active))
            .map(|_| ()),
        Err(ErrCode::BadRequest)
    );
    let mut sh = Engine::new(config("sh", &[31], &[("gd", &[44]), ("bj", &[11])]));
    let from_bj = Message::Unbind {
        bxid,
        from_engine: eid("bj"),
        to_engine: eid("sh"),
        created: Some(1_747_700_000),
    };
    assert_eq!(sh.deliver(&from_bj).map(|_| ()), Err(ErrCode::BadRequest));
    gd.deliver(&judged).expect("active");
    // Once active, a refusal contradicts it.
    let contradicting = status(
        "bj",
        "gd",
        bxid,
        LinkStatus::Refused(BindRefusal::BindingLimit),
    );
    assert_eq!(
        gd.deliver(&contradicting).map(|_| ()),
        Err(ErrCode::BadRequest)
    );
    assert_eq!(gd.link(&bxid), LinkStatus::Active);
    // Bytes: every new message round-trips; cut, extended, or an unknown status: refused.
    for m in [bind_msg.clone(), judged.clone(), from_bj.clone()] {
        let mut bytes = Vec::new();
        encode_message(&m, &mut bytes);
        assert_eq!(decode_message(&bytes), Ok(m));
        assert!(decode_message(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_message(&[bytes.as_slice(), &[0]].concat()).is_err());
    }
    gd.done();
    bj.done();
    sh.done();
}

#[test]
fn the_receivers_engine_enforces_its_own_limits_and_rules() {
    let mut gd = Engine::with_params(
        config("gd", &[44], &[("bj", &[11])]),
        Params {
            binding_receivers_max: 2,
            ..Params::default()
        },
    );
    // bj's province lets a receiver have one giver.
    let mut bj = Engine::with_params(
        config("bj", &[11], &[("gd", &[44])]),
        Params {
            binding_givers_max: 1,
            ..Params::default()
        },
    );
    for p in ["S1", "S2", "S3"] {
        gd.enrol(p, 440106, 100_000);
    }
    for p in ["R1", "R2", "R3", "R4"] {
        bj.enrol(p, 110105, 0);
    }
    let (b1, ok) = bind(&mut gd, &mut bj, "b1", "S1", "R1", 110105);
    assert_eq!(ok, LinkStatus::Active);
    // R1 has its one giver: bj refuses a second, from gd or from bj itself.
    let (b2, limit) = bind(&mut gd, &mut bj, "b2", "S2", "R1", 110105);
    assert_eq!(limit, LinkStatus::Refused(BindRefusal::BindingLimit));
    let in_engine = bj.core(Body::Bind {
        giver_psn_no: psn("R2"),
        receiver_psn_no: psn("R1"),
        relation: Relation::Spouse,
    });
    assert_eq!(in_engine.map(|_| ()), Err(ErrCode::BindingLimit));
    // A refused binding carries no transfer and cannot be revoked.
    let refused = transfer_out("t1", gd.now, "S2", "R1", 110105, 100);
    assert_eq!(gd.apply(refused).map(|_| ()), Err(ErrCode::NotBound));
    assert_eq!(
        gd.unbind(b2, Actor::Admin).map(|_| ()),
        Err(ErrCode::AlreadyRevoked)
    );
    // Unknown and suspended receivers are refused by bj.
    let (_, unknown) = bind(&mut gd, &mut bj, "b3", "S2", "NOBODY", 110105);
    assert_eq!(unknown, LinkStatus::Refused(BindRefusal::PersonNotFound));
    bj.core(Body::SetStatus {
        psn_no: psn("R3"),
        status: PersonStatus::Suspended,
    })
    .expect("suspended");
    let (_, suspended) = bind(&mut gd, &mut bj, "b4", "S2", "R3", 110105);
    assert_eq!(suspended, LinkStatus::Refused(BindRefusal::PersonSuspended));
    // gd's limit counts its givers' live cross-engine bindings: S1 has one of two.
    let (_, ok) = bind(&mut gd, &mut bj, "b5", "S1", "R2", 110105);
    assert_eq!(ok, LinkStatus::Active);
    assert_eq!(
        gd.bind_out("b6", "S1", "R4", 110105).map(|_| ()),
        Err(ErrCode::BindingLimit)
    );
    // gd's own checks of the giver: a resident, a province gd owns, one nobody owns.
    assert_eq!(
        gd.bind_out("b7", "S3", "R4", 440105).map(|_| ()),
        Err(ErrCode::InvalidAdmdvs)
    );
    assert_eq!(
        gd.bind_out("b8", "S3", "R4", 510105).map(|_| ()),
        Err(ErrCode::InvalidAdmdvs)
    );
    assert_eq!(
        gd.bind_out("b9", "NOBODY", "R4", 110105).map(|_| ()),
        Err(ErrCode::PersonNotFound)
    );
    // Revoked, R1's place is free again, on bj, for an in-engine giver.
    let revoked = gd.unbind(b1, Actor::Person(psn("S1"))).expect("revoked");
    let confirm = bj.deliver(&revoked.send[0]).expect("revoked on bj");
    gd.deliver(&confirm.send[0]).expect("confirmed");
    bj.core(Body::Bind {
        giver_psn_no: psn("R2"),
        receiver_psn_no: psn("R1"),
        relation: Relation::Spouse,
    })
    .expect("an in-engine giver now");
    gd.done();
    bj.done();
}

#[test]
fn revocations_that_cross_or_outrun_the_binding_leave_both_sides_revoked() {
    let mut gd = Engine::new(config("gd", &[44], &[("bj", &[11])]));
    let mut bj = Engine::new(config("bj", &[11], &[("gd", &[44])]));
    gd.enrol("S1", 440106, 100_000);
    bj.enrol("R1", 110105, 0);
    bj.enrol("R2", 110105, 0);
    // Revoked while pending, the Unbind arriving before the Bind: bj records it revoked and
    // answers the late Bind so; nothing becomes active.
    let proposed = gd.bind_out("b1", "S1", "R1", 110105).expect("proposed");
    let bxid = proposed.send[0].xid().expect("an id");
    let unbind = gd.unbind(bxid, Actor::Admin).expect("revoked").send[0].clone();
    assert_eq!(gd.state.fed_outbox(), vec![unbind.clone()]);
    let confirm = bj.deliver(&unbind).expect("recorded revoked").send[0].clone();
    let late = bj.deliver(&proposed.send[0]).expect("late Bind");
    assert_eq!((late.replayed, &late.send), (true, &vec![confirm.clone()]));
    gd.deliver(&confirm).expect("confirmed");
    assert_eq!(
        (gd.link(&bxid), bj.link(&bxid)),
        (LinkStatus::Revoked, LinkStatus::Revoked)
    );
    // Both sides revoke at once: each Unbind confirms the other's.
    let (b2, _) = bind(&mut gd, &mut bj, "b2", "S1", "R2", 110105);
    let from_gd = gd.unbind(b2, Actor::Admin).expect("gd revokes").send[0].clone();
    let from_bj = bj.unbind(b2, Actor::Admin).expect("bj revokes").send[0].clone();
    let to_bj = gd.deliver(&from_bj).expect("crossing").send[0].clone();
    let to_gd = bj.deliver(&from_gd).expect("crossing").send[0].clone();
    assert!(gd.state.fed_outbox().is_empty() && bj.state.fed_outbox().is_empty());
    assert!(gd.deliver(&to_gd).expect("dup").replayed);
    assert!(bj.deliver(&to_bj).expect("dup").replayed);
    // Revoked while pending and refused by bj meanwhile: the refusal stands on both sides.
    let proposed = gd.bind_out("b3", "S1", "NOBODY", 110105).expect("proposed");
    let b3 = proposed.send[0].xid().expect("an id");
    bj.deliver(&proposed.send[0]).expect("refused");
    let unbind = gd.unbind(b3, Actor::Admin).expect("revoked").send[0].clone();
    let answer = bj.deliver(&unbind).expect("answered");
    assert!(answer.replayed);
    gd.deliver(&answer.send[0]).expect("refused on gd");
    let refused = LinkStatus::Refused(BindRefusal::PersonNotFound);
    assert_eq!((gd.link(&b3), bj.link(&b3)), (refused, refused));
    assert!(gd.state.fed_outbox().is_empty());
    gd.done();
    bj.done();
}

#[test]
fn a_transfer_that_reaches_an_engine_where_the_binding_was_revoked_is_declined() {
    let (mut gd, mut bj) = world();
    let bxid = gd.state.links().next().expect("S1-R1").bxid;
    // R1 revokes on bj; gd has not heard yet and takes a transfer over the binding it holds.
    let unbind = bj
        .unbind(bxid, Actor::Person(psn("R1")))
        .expect("revoked")
        .send[0]
        .clone();
    let xid = gd.send("tx1", "S1", "R1", 110105, 3_000);
    let prepare = gd.state.fed_outbox().pop().expect("in flight");
    assert!(matches!(&prepare, Message::Prepare { from_psn_no, .. } if *from_psn_no == psn("S1")));
    // bj judges it by its own record of the binding: declined at once, nothing pending.
    let answer = bj.deliver(&prepare).expect("judged");
    assert_eq!(bj.status(&xid), XStatus::Closed(Outcome::Declined));
    gd.deliver(&answer.send[0]).expect("returned");
    assert_eq!(gd.acct("S1"), Fen(100_000));
    let confirm = gd.deliver(&unbind).expect("revoked on gd").send[0].clone();
    bj.deliver(&confirm).expect("confirmed");
    // A Prepare naming a sender who holds no binding to the receiver here: declined too.
    let mut other = Engine::new(config("gd", &[44], &[("bj", &[11])]));
    other.enrol("S1", 440106, 100_000);
    other.enrol("S2", 440106, 100_000);
    let mut bj2 = Engine::new(config("bj", &[11], &[("gd", &[44])]));
    bj2.enrol("R1", 110105, 0);
    bind(&mut other, &mut bj2, "b1", "S1", "R1", 110105);
    let x = other.send("tx1", "S1", "R1", 110105, 1_000);
    let Message::Prepare { .. } = other.state.fed_outbox()[0].clone() else {
        panic!("a Prepare")
    };
    let mut forged = other.state.fed_outbox()[0].clone();
    if let Message::Prepare { from_psn_no, .. } = &mut forged {
        *from_psn_no = psn("S2");
    }
    bj2.deliver(&forged).expect("judged");
    assert_eq!(bj2.status(&x), XStatus::Closed(Outcome::Declined));
    gd.done();
    bj.done();
    bj2.done();
}

/// gd and bj, two days of history: on 05-19 S1 binds R2 and revokes it (closed); on 05-20
/// S1 binds R1 (active, so binding days from 05-20 on stay), sends tx1 (accepted) and tx2
/// (declined). Returns (gd, bj, [tx1, tx2], the revoked binding's Bind and Unbind messages,
/// every message the exchanges put on the bus).
fn two_days() -> (Engine, Engine, [Xid; 2], [Message; 2], Vec<Message>) {
    let mut gd = Engine::new(config("gd", &[44], &[("bj", &[11])]));
    let mut bj = Engine::new(config("bj", &[11], &[("gd", &[44])]));
    gd.now = t("2025-05-19 10:00:00");
    bj.now = gd.now;
    gd.enrol("S1", 440106, 100_000);
    bj.enrol("R1", 110105, 0);
    bj.enrol("R2", 110105, 0);
    let proposed = gd.bind_out("b-R2", "S1", "R2", 110105).expect("proposed");
    let bind_msg = proposed.send[0].clone();
    let bxid = bind_msg.xid().expect("an id");
    let judged = bj.deliver(&bind_msg).expect("judged");
    gd.deliver(&judged.send[0]).expect("active");
    let revoked = gd.unbind(bxid, Actor::Admin).expect("revoked");
    let unbind_msg = revoked.send[0].clone();
    let confirmed = bj.deliver(&unbind_msg).expect("revoked on bj");
    gd.deliver(&confirmed.send[0]).expect("confirmed");
    gd.now = t("2025-05-20 10:00:00");
    bj.now = gd.now;
    bind(&mut gd, &mut bj, "b-R1", "S1", "R1", 110105);
    let mut bus = Vec::new();
    let tx1 = gd.send("tx1", "S1", "R1", 110105, 20_000);
    let tx2 = gd.send("tx2", "S1", "R1", 110105, 5_000);
    for msg in gd.state.fed_outbox() {
        bus.push(msg.clone());
        bj.deliver(&msg).expect("pending");
    }
    // With their msgids (kept until the exchanges are forgotten).
    let accepted = answer_as(&mut bj, true, tx1, Actor::Admin, "acc-1").expect("accepted");
    let declined = answer_as(&mut bj, false, tx2, Actor::Admin, "dec-2").expect("declined");
    for msg in accepted.send.iter().chain(&declined.send) {
        bus.push(msg.clone());
        gd.deliver(msg).expect("closed");
    }
    (gd, bj, [tx1, tx2], [bind_msg, unbind_msg], bus)
}

/// Both engines' figures as `reconcile` and `report` read them.
fn figures(e: &Engine) -> impl PartialEq + std::fmt::Debug {
    let may = parse_period("2025-05").expect("period");
    (
        e.state.fed_counters(),
        e.state.money_totals(),
        e.state.stats(may, may, None),
        e.state.stats(may, may, Some(44)),
    )
}

#[test]
fn forgetting_drops_closed_records_behind_an_agreed_watermark_past_the_msgid_window() {
    let (mut gd, mut bj, [tx1, tx2], _, _) = two_days();
    let (gd_before, bj_before) = (format!("{:?}", figures(&gd)), format!("{:?}", figures(&bj)));
    assert_eq!(gd.state.fed_record_counts(), (2, 2, 0, 0));
    // Two days on, gd claims: exchanges through 05-20 (nothing open), bindings through 05-19
    // (S1-R1 of 05-20 is active). Nothing goes yet: nothing is agreed.
    gd.now = t("2025-05-22 09:00:00");
    bj.now = gd.now;
    let claimed = gd.forget().expect("claims");
    let day19 = gongji_core::time::cst_day(t("2025-05-19 12:00:00"));
    let claim = Message::ClosedThrough {
        from_engine: eid("gd"),
        to_engine: eid("bj"),
        exchanges: day19 + 1,
        bindings: day19,
    };
    assert_eq!(claimed.send, vec![claim.clone()]);
    assert_eq!(
        gd.state.fed_outbox(),
        vec![claim.clone()],
        "resent until answered"
    );
    assert_eq!(gd.state.fed_record_counts(), (2, 2, 0, 0));
    assert_eq!(
        gd.forget().map(|_| ()),
        Err(ErrCode::BadRequest),
        "nothing new"
    );
    // bj agrees (its side is closed too) and answers with the claimed days; gd takes them.
    let answer = bj.deliver(&claim).expect("agreed");
    let reply = Message::ForgetThrough {
        from_engine: eid("bj"),
        to_engine: eid("gd"),
        exchanges: day19 + 1,
        bindings: day19,
    };
    assert_eq!(answer.send, vec![reply.clone()]);
    gd.deliver(&reply).expect("agreed");
    assert!(gd.state.fed_outbox().is_empty());
    let wm = gd.state.fed_watermarks()[&eid("bj")];
    assert_eq!((wm.exchanges, wm.bindings), (day19 + 1, day19));
    assert_eq!(bj.state.fed_watermarks()[&eid("gd")].exchanges, day19 + 1);
    // The state hash covers the watermark: a snapshot whose agreed day is one earlier
    // decodes (a valid state) to another hash.
    let mut bytes = Vec::new();
    gd.state.encode_snapshot(&mut bytes);
    let at = bytes
        .windows(8)
        .rposition(|w| w == b"GJFGT001")
        .expect("section");
    let day_at = at + 8 + 8 + 1 + "bj".len();
    let day = i32::from_le_bytes(bytes[day_at..day_at + 4].try_into().expect("4"));
    assert_eq!(day, day19 + 1);
    bytes[day_at..day_at + 4].copy_from_slice(&(day - 1).to_le_bytes());
    let earlier = State::decode_snapshot(&bytes).expect("a valid state");
    assert_eq!(earlier.fed_watermarks()[&eid("bj")].exchanges, day19);
    assert_ne!(earlier.state_hash(), gd.state.state_hash());
    // Duplicates of either: replayed, nothing changes.
    assert!(bj.deliver(&claim).expect("replayed").replayed);
    assert!(gd.deliver(&reply).expect("replayed").replayed);
    // Agreed, but inside the 30-day msgid window: still held.
    assert_eq!(gd.forget().map(|_| ()), Err(ErrCode::BadRequest));
    assert_eq!(
        bj.forget().map(|_| ()),
        Err(ErrCode::BadRequest),
        "agreed already"
    );
    assert_eq!(bj.state.fed_record_counts(), (2, 2, 0, 0));
    // Past the window: the closed records of the agreed days go, the active binding stays.
    gd.now = t("2025-06-25 09:00:00");
    bj.now = gd.now;
    let forgot = gd.forget().expect("forgets");
    assert!(matches!(
        forgot.reply,
        EntryReply::Fed(FedReply::Forgot {
            exchanges: 2,
            bindings: 1
        })
    ));
    bj.forget().expect("forgets");
    // The msgids of the answers went with their exchanges (past the window, as any msgid).
    let mut bytes = Vec::new();
    bj.state.encode_snapshot(&mut bytes);
    assert!(!bytes.windows(8).any(|w| w == b"GJANS001"));
    assert_eq!(
        answer_as(&mut bj, true, tx1, Actor::Admin, "acc-1").map(shown),
        Err(ErrCode::NotFound)
    );
    assert_eq!(gd.state.fed_record_counts(), (0, 1, 2, 1));
    assert_eq!(bj.state.fed_record_counts(), (0, 1, 2, 1));
    assert!(gd.state.exchange(&tx1).is_none() && bj.state.exchange(&tx2).is_none());
    // The counters, the money and the statistics answer as before.
    assert_eq!(format!("{:?}", figures(&gd)), gd_before);
    assert_eq!(format!("{:?}", figures(&bj)), bj_before);
    // The person's entries still name the exchange, by its number.
    let (entries, _) = gd.state.entries("S1", None, 100).expect("entries");
    assert!(entries.iter().any(|e| e.reference == "forgotten-1"));
    // A new exchange after forgetting gets the next number and lives as any other.
    let tx3 = gd.send("tx3", "S1", "R1", 110105, 1_000);
    let prepare = gd.state.fed_outbox()[0].clone();
    assert!(matches!(prepare, Message::Prepare { .. }), "{prepare:?}");
    bj.deliver(&prepare).expect("pending");
    let accepted = accept(&mut bj, tx3, Actor::Admin).expect("accepted");
    gd.deliver(&accepted.send[0]).expect("committed");
    let (entries, _) = gd.state.entries("S1", None, 100).expect("entries");
    assert!(entries.iter().any(|e| e.reference == tx3.to_string()));
    gd.done();
    bj.done();
}

#[test]
fn late_copies_of_forgotten_messages_are_refused_never_judged_anew() {
    let (mut gd, mut bj, _, [bind_msg, unbind_msg], bus) = two_days();
    gd.now = t("2025-05-22 09:00:00");
    bj.now = gd.now;
    let claim = gd.forget().expect("claims").send[0].clone();
    let reply = bj.deliver(&claim).expect("agreed").send[0].clone();
    gd.deliver(&reply).expect("agreed");
    gd.now = t("2025-06-25 09:00:00");
    bj.now = gd.now;
    gd.forget().expect("forgets");
    bj.forget().expect("forgets");
    // Every message about the forgotten days, delivered again: refused, nothing changes
    // (the harness compares the state hash); without the watermark bj would take the
    // Prepares in as new pending transfers.
    for msg in &bus {
        if msg.to() == eid("bj") {
            bj.refuses(msg);
        } else {
            gd.refuses(msg);
        }
    }
    bj.refuses(&bind_msg);
    bj.refuses(&unbind_msg);
    // An Unbind from a journal written before forgetting (no day) can no longer be judged.
    let Message::Unbind {
        bxid,
        from_engine,
        to_engine,
        ..
    } = unbind_msg
    else {
        panic!("an Unbind")
    };
    bj.refuses(&Message::Unbind {
        bxid,
        from_engine,
        to_engine,
        created: None,
    });
    // A Block of a forgotten day, even one never seen: refused.
    if let Some(Message::Prepare {
        xid,
        amount,
        created,
        ..
    }) = bus.first().cloned()
    {
        bj.refuses(&Message::Block {
            xid: Xid {
                key: xid.key ^ 1,
                ..xid
            },
            to_engine: eid("bj"),
            amount,
            created,
        });
    }
    // A stale claim is answered again (replayed), not refused.
    assert!(bj.deliver(&claim).expect("replayed").replayed);
    assert_eq!(gd.state.fed_record_counts().0, 0);
    assert_eq!(bj.state.fed_record_counts().0, 0);
    gd.done();
    bj.done();
}

#[test]
fn hostile_watermark_messages_are_refused_and_change_nothing() {
    let (mut gd, mut bj, _, _, _) = two_days();
    let mut sh = Engine::new(config("sh", &[31], &[("gd", &[44]), ("bj", &[11])]));
    bj.now = t("2025-05-20 12:00:00");
    // A transfer of 05-20 still pending on bj.
    let tx3 = gd.send("tx3", "S1", "R1", 110105, 1_000);
    let prepare = gd.state.fed_outbox().pop().expect("in flight");
    bj.deliver(&prepare).expect("pending");
    // gd two days on; bj before 06:00 of 05-21, when tx3 would expire.
    gd.now = t("2025-05-22 09:00:00");
    bj.now = t("2025-05-21 05:00:00");
    let day20 = gongji_core::time::cst_day(t("2025-05-20 12:00:00"));
    let closed = |from: &str, to: &str, x: i32, b: i32| Message::ClosedThrough {
        from_engine: eid(from),
        to_engine: eid(to),
        exchanges: x,
        bindings: b,
    };
    let forget = |from: &str, to: &str, x: i32, b: i32| Message::ForgetThrough {
        from_engine: eid(from),
        to_engine: eid(to),
        exchanges: x,
        bindings: b,
    };
    let today = gongji_core::time::cst_day(bj.now);
    for m in [
        // A day with an exchange open on bj (tx3 pending).
        closed("gd", "bj", day20, NO_DAY),
        // A day with a binding live on bj.
        closed("gd", "bj", NO_DAY, day20),
        // A day not yet past on bj.
        closed("gd", "bj", today, NO_DAY),
        // Claims nothing; a negative day.
        closed("gd", "bj", NO_DAY, NO_DAY),
        closed("gd", "bj", -5, NO_DAY),
        // For another engine; from an engine that is no peer.
        closed("gd", "sh", day20 - 1, NO_DAY),
        closed("xx", "bj", day20 - 1, NO_DAY),
        // An agreement bj never asked for (it claimed nothing).
        forget("gd", "bj", day20 - 1, NO_DAY),
    ] {
        bj.refuses(&m);
    }
    // gd claims through 05-19 (tx3 of 05-20 is in flight there); a forged answer for more
    // than it claimed, or from an engine it did not claim to: refused.
    let claim = gd.forget().expect("claims").send;
    assert_eq!(
        claim,
        vec![closed("gd", "bj", day20 - 1, day20 - 1)],
        "exchanges through 05-19, bindings through 05-19"
    );
    gd.refuses(&forget("bj", "gd", day20, NO_DAY));
    gd.refuses(&forget("bj", "gd", NO_DAY, day20));
    gd.refuses(&forget("sh", "gd", day20 - 1, NO_DAY));
    gd.refuses(&forget("bj", "gd", NO_DAY, NO_DAY));
    sh.refuses(&claim[0]);
    // The honest claim is taken; the pending transfer of 05-20 is untouched.
    let reply = bj.deliver(&claim[0]).expect("agreed").send[0].clone();
    gd.deliver(&reply).expect("agreed");
    assert_eq!(bj.status(&tx3), XStatus::Pending);
    gd.done();
    bj.done();
}
