//! The projection of federated engines' journals (docs/FEDERATION.md): two engines in one
//! process, each journaling to a real data directory as the writer does (`encode_entry`,
//! applied ops only), exchanging bus messages by hand (no NATS): cross-engine transfers
//! accepted, declined, reversed (blocked) and expired, cross-engine bindings made and one
//! revoked, beside core ops. Each journal projects to rows that equal its engine's state,
//! across a restart from the cursor and a rebuild from a snapshot.

use arrayvec::ArrayString;
use gongji_core::certno::certno_with_check;
use gongji_core::federation::codec::encode_entry;
use gongji_core::federation::{
    EngineId, Entry, EntryApplied, EntryReply, FedOp, FedReply, FederationConfig, LinkStatus,
    Message, Outcome, XStatus, Xid,
};
use gongji_core::time::{parse_cst, parse_period};
use gongji_core::{
    Actor, Body, Command, CreditItem, Fen, InstCode, InstType, Insutype, Msgid, Op, Params, PsnNo,
    Relation, State, TransferSource,
};
use gongji_journal::{write_snapshot, FsStorage, Journal};
use gongji_pg::projection::{FileJournalSource, ProjectionError, Projector, ProjectorConfig};
use gongji_pg::testkit::TestDb;

use crate::workload::{journal_config, Run, TempDir};
use crate::{assert_matches_engine, assert_same_tables};

fn eid(s: &str) -> EngineId {
    EngineId::from(s).unwrap()
}

fn psn(s: &str) -> PsnNo {
    PsnNo::from(s).unwrap()
}

fn mid(s: &str) -> Msgid {
    Msgid::from(s).unwrap()
}

fn table(engine: &str, provinces: &[u8], peer: &str, peer_provinces: &[u8]) -> FederationConfig {
    FederationConfig {
        engine: eid(engine),
        provinces: provinces.to_vec(),
        peers: [(eid(peer), peer_provinces.to_vec())].into_iter().collect(),
    }
}

fn gd_table() -> FederationConfig {
    table("gd", &[44], "bj", &[11])
}

fn bj_table() -> FederationConfig {
    table("bj", &[11], "gd", &[44])
}

/// One federated engine and its data directory.
struct FedRun {
    dir: TempDir,
    state: State,
    journal: Journal<FsStorage>,
    snapshots: FsStorage,
    now: i64,
    seq: u32,
}

impl FedRun {
    /// A fresh data directory with the genesis snapshot of a state configured with `table`.
    fn new(label: &str, table: FederationConfig) -> FedRun {
        let dir = TempDir::new(label);
        let mut state = State::new(Params::default());
        state.configure_federation(table).unwrap();
        let (journal, _) =
            Journal::open(FsStorage::open(&dir.0).unwrap(), journal_config(), None).unwrap();
        let snapshots = FsStorage::open(&dir.0).unwrap();
        let mut run = FedRun {
            dir,
            state,
            journal,
            snapshots,
            now: parse_cst("2025-05-20 10:00:00").unwrap(),
            seq: 0,
        };
        run.snapshot();
        run
    }

    fn source(&self) -> FileJournalSource {
        FileJournalSource::new(&self.dir.0).unwrap()
    }

    fn config(&self, chunk_ops_max: usize) -> ProjectorConfig {
        ProjectorConfig {
            chunk_ops_max,
            federation: self.state.federation_config().cloned(),
            ..ProjectorConfig::default()
        }
    }

    fn head(&self) -> u64 {
        self.journal.head().op
    }

    fn snapshot(&mut self) -> u64 {
        self.journal.sync().unwrap();
        let mut bytes = Vec::new();
        self.state.encode_snapshot(&mut bytes);
        let head = self.journal.head();
        write_snapshot(&mut self.snapshots, head, &bytes).unwrap();
        head.op
    }

    /// Applies an entry like the writer: journaled when it applied as new. Panics when refused.
    fn apply(&mut self, entry: Entry) -> EntryApplied {
        let applied = self.state.apply_entry(&entry).unwrap();
        if !applied.replayed {
            let mut bytes = Vec::new();
            encode_entry(&entry, &mut bytes);
            if self.journal.append(entry.time(), &bytes).is_err() {
                self.journal.sync().unwrap();
                self.journal.append(entry.time(), &bytes).unwrap();
            }
        }
        self.journal.sync().unwrap();
        applied
    }

    fn core(&mut self, body: Body) -> EntryApplied {
        self.seq += 1;
        self.apply(Entry::Core(Op::Write(Command {
            msgid: mid(&format!("m{}", self.seq)),
            time: self.now,
            actor: Actor::Admin,
            body,
        })))
    }

    fn deliver(&mut self, msg: &Message) -> EntryApplied {
        self.apply(Entry::Fed(FedOp::Deliver {
            time: self.now,
            msg: msg.clone(),
        }))
    }

    fn enrol(&mut self, p: &str, admdvs: u32, credit: u64) {
        let first17 = format!("{admdvs}19800101{:03}", self.seq % 1000);
        self.core(Body::Enrol {
            psn_no: psn(p),
            certno: ArrayString::from(&certno_with_check(&first17).unwrap()).unwrap(),
            psn_name: "李小红".into(),
            insutype: Insutype::Employee,
            admdvs,
        });
        self.core(Body::OpenWallet { psn_no: psn(p) });
        if credit > 0 {
            self.core(Body::Credit {
                period: parse_period("2025-05").unwrap(),
                items: vec![CreditItem {
                    psn_no: psn(p),
                    amount: Fen(credit),
                }],
            });
        }
    }

    /// A cross-engine transfer from the account; returns its id and the Prepare.
    fn send(&mut self, msgid: &str, from: &str, to: &str, to_admdvs: u32, amount: u64) -> Xid {
        let applied = self.apply(Entry::Fed(FedOp::TransferOut {
            msgid: mid(msgid),
            time: self.now,
            actor: Actor::Person(psn(from)),
            from_psn_no: psn(from),
            to_psn_no: psn(to),
            to_admdvs,
            amount: Fen(amount),
            source: TransferSource::Acct,
        }));
        let EntryReply::Fed(FedReply::Exchange(x)) = applied.reply else {
            panic!("an exchange: {:?}", applied.reply)
        };
        x.xid
    }

    /// The message the outbox holds for exchange `xid` (Prepare, or Block once reversed).
    fn outbox(&self, xid: Xid) -> Message {
        self.state
            .fed_outbox()
            .into_iter()
            .find(|m| m.xid() == Some(xid))
            .expect("in the outbox")
    }

    fn answer(&mut self, xid: Xid, accept: bool) -> Vec<Message> {
        let (time, actor) = (self.now, Actor::Admin);
        self.seq += 1;
        let msgid = Some(mid(&format!("ans{}", self.seq)));
        let op = FedOp::answer(accept, time, actor, xid, msgid);
        self.apply(Entry::Fed(op)).send
    }
}

/// A binding proposed on `a` (the giver's engine), judged on `b`, answered back on `a`.
fn bind(a: &mut FedRun, b: &mut FedRun, msgid: &str, giver: &str, receiver: &str) -> Xid {
    let proposed = a.apply(Entry::Fed(FedOp::BindOut {
        msgid: mid(msgid),
        time: a.now,
        actor: Actor::Person(psn(giver)),
        giver_psn_no: psn(giver),
        receiver_psn_no: psn(receiver),
        receiver_admdvs: 110105,
        relation: Relation::Child,
    }));
    let judged = b.deliver(&proposed.send[0]);
    a.deliver(&judged.send[0]);
    let bxid = proposed.send[0].xid().unwrap();
    assert_eq!(
        a.state.cross_binding(&bxid).unwrap().status,
        LinkStatus::Active
    );
    bxid
}

/// gd (province 44) and bj (11), with money, bindings across them and one inside gd, and a
/// settlement drawing on the in-engine binding (so both engines have statistics).
fn world() -> (FedRun, FedRun) {
    let mut gd = FedRun::new("fed-gd", gd_table());
    let mut bj = FedRun::new("fed-bj", bj_table());
    gd.enrol("S1", 440106, 100_000);
    gd.enrol("S2", 440305, 50_000);
    gd.enrol("S3", 440106, 0);
    for p in ["R1", "R2", "R3"] {
        bj.enrol(p, 110105, 0);
    }
    gd.core(Body::Bind {
        giver_psn_no: psn("S2"),
        receiver_psn_no: psn("S3"),
        relation: Relation::Parent,
    });
    gd.core(Body::RegisterInstitution {
        fixmedins_code: InstCode::from("H44010600001").unwrap(),
        fixmedins_name: "广州医院".into(),
        fixmedins_type: InstType::Medical,
        admdvs: 440106,
    });
    gd.core(Body::Settle {
        fixmedins_code: InstCode::from("H44010600001").unwrap(),
        psn_no: psn("S3"),
        medfee_sumamt: Fen(10_000),
        fund_pay_sumamt: Fen(2_000),
        acct_used: true,
    });
    for (msgid, giver, receiver) in [
        ("b1", "S1", "R1"),
        ("b2", "S1", "R2"),
        ("b3", "S1", "R3"),
        ("b4", "S2", "R2"),
    ] {
        bind(&mut gd, &mut bj, msgid, giver, receiver);
    }
    (gd, bj)
}

/// The first half: transfers accepted, declined, reversed before arriving (blocked), and one
/// left pending on bj (in flight on gd).
fn first_half(gd: &mut FedRun, bj: &mut FedRun) -> Xid {
    let accepted = gd.send("t1", "S1", "R1", 110105, 20_000);
    bj.deliver(&gd.outbox(accepted));
    let outcome = bj.answer(accepted, true);
    gd.deliver(&outcome[0]);

    let declined = gd.send("t2", "S1", "R2", 110105, 5_000);
    bj.deliver(&gd.outbox(declined));
    let outcome = bj.answer(declined, false);
    gd.deliver(&outcome[0]);

    let reversed = gd.send("t3", "S1", "R1", 110105, 3_000);
    gd.apply(Entry::Fed(FedOp::Reverse {
        time: gd.now,
        actor: Actor::Person(psn("S1")),
        omsgid: mid("t3"),
        msgid: Some(mid("rev-t3")),
    }));
    let blocked = bj.deliver(&gd.outbox(reversed));
    gd.deliver(&blocked.send[0]);

    // S1's fourth today would pass rule 14's daily count: S2 sends it.
    let open = gd.send("t4", "S2", "R2", 110105, 7_000);
    bj.deliver(&gd.outbox(open));
    open
}

/// The second half: the binding S1–R3 revoked by bj, the open transfer expired at 06:00 on
/// bj (closed by a core op: a tick) and returned on gd, one more accepted the next day.
fn second_half(gd: &mut FedRun, bj: &mut FedRun, open: Xid) {
    let bxid = gd
        .state
        .links()
        .find(|l| l.receiver_psn_no.as_str() == "R3")
        .unwrap()
        .bxid;
    let revoked = bj.apply(Entry::Fed(FedOp::Unbind {
        time: bj.now,
        actor: Actor::Person(psn("R3")),
        bxid,
        msgid: Some(mid("u1")),
    }));
    let confirmed = gd.deliver(&revoked.send[0]);
    bj.deliver(&confirmed.send[0]);
    assert_eq!(
        gd.state.cross_binding(&bxid).unwrap().status,
        LinkStatus::Revoked
    );

    bj.now = parse_cst("2025-05-21 06:00:00").unwrap();
    gd.now = bj.now;
    let tick = bj.apply(Entry::Core(Op::Tick { time: bj.now }));
    assert!(matches!(
        tick.send[..],
        [Message::Outcome {
            outcome: Outcome::Expired,
            ..
        }]
    ));
    gd.deliver(&tick.send[0]);
    assert_eq!(
        gd.state.exchange(&open).unwrap().status,
        XStatus::Closed(Outcome::Expired)
    );

    bj.now = parse_cst("2025-05-21 09:00:00").unwrap();
    gd.now = bj.now;
    let late = gd.send("t5", "S1", "R1", 110105, 1_000);
    bj.deliver(&gd.outbox(late));
    let outcome = bj.answer(late, true);
    gd.deliver(&outcome[0]);
}

/// Every exchange and cross-engine binding the engine holds has its row, as the engine has
/// it; the engine's rows conserve money: the exchanges' entries net to what left (the sender)
/// or arrived (the receiver), as the ledger's federation sides say.
fn assert_federation_rows(db: &TestDb, state: &State) {
    let mut c = db.client();
    let mut want = Vec::new();
    for x in state.exchange_rows() {
        let status = match x.status {
            XStatus::InFlight => "in_flight",
            XStatus::Pending => "pending",
            XStatus::Closed(o) => o.as_str(),
        };
        want.push(format!(
            "{} {} {} {:?} {} {} {} {:?}",
            x.number,
            x.xid,
            x.outgoing,
            x.person.map(|p| p as i32 + 1),
            x.amount.0,
            status,
            x.reversed,
            x.from_psn_no.map(|p| p.to_string())
        ));
        // The receiver's engine knows the sender; the sender's side names it by psn_id.
        if x.outgoing || x.person.is_some() {
            assert_eq!(x.from_psn_no.is_some(), !x.outgoing, "{x:?}");
        }
    }
    let got: Vec<String> = c
        .query(
            "SELECT exchange_no, xid, outgoing, psn_id, amount_fen, status, reversed, from_psn_no
             FROM gongji.exchanges ORDER BY exchange_no",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?} {} {} {} {:?}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, bool>(2),
                r.get::<_, Option<i32>>(3),
                r.get::<_, i64>(4),
                r.get::<_, String>(5),
                r.get::<_, bool>(6),
                r.get::<_, Option<String>>(7)
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "exchanges");

    let mut want: Vec<String> = state
        .links()
        .map(|l| {
            let person = l.psn_no.and_then(|p| state.person_index_of(&p));
            format!(
                "{} {} {:?} {}",
                l.bxid,
                l.giver_here,
                person.map(|p| p as i32 + 1),
                l.status.as_str()
            )
        })
        .collect();
    want.sort();
    let got: Vec<String> = c
        .query(
            "SELECT bxid, giver_here, psn_id, status FROM gongji.cross_engine_bindings
             ORDER BY bxid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {}",
                r.get::<_, String>(0),
                r.get::<_, bool>(1),
                r.get::<_, Option<i32>>(2),
                r.get::<_, String>(3)
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "cross-engine bindings");

    // Money: the exchanges' entries net to −(in flight + sent) on a sender, + received on a
    // receiver; wallets are the sums of their entries as accounts are.
    let totals = state.money_totals();
    let net: i64 = c
        .query_one(
            "SELECT coalesce(sum(amount_fen), 0)::bigint FROM gongji.entries
             WHERE ref_kind = 'exchange'",
            &[],
        )
        .unwrap()
        .get(0);
    let want_net = totals.fed_received as i64 - totals.fed_sent as i64 - totals.in_flight as i64;
    assert_eq!(net, want_net, "exchange entries");
    let rows_net: i64 = c
        .query_one(
            "SELECT coalesce(sum(CASE WHEN NOT outgoing THEN amount_fen ELSE -amount_fen END),
                             0)::bigint
             FROM gongji.exchanges
             WHERE status = 'in_flight' OR status = 'accepted'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows_net, want_net, "exchange rows");
    let off: i64 = c
        .query_one(
            "SELECT count(*) FROM gongji.wallets w
             WHERE w.balc_fen <> (SELECT coalesce(sum(amount_fen), 0) FROM gongji.entries e
                                  WHERE e.psn_id = w.psn_id AND e.wallet)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(off, 0);
    let inside: i64 = c
        .query_one(
            "SELECT (SELECT coalesce(sum(balc_fen), 0) FROM gongji.accounts)::bigint
                  + (SELECT coalesce(sum(balc_fen), 0) FROM gongji.wallets)::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        inside, totals.inside as i64,
        "balances (no in-engine transfer held)"
    );
}

fn assert_projects(db: &TestDb, run: &FedRun) {
    assert_matches_engine(db, &run.state);
    assert_federation_rows(db, &run.state);
}

/// Both engines' journals project to rows equal to their states, with a restart of each
/// projector from its cursor in the middle; a rebuild from a snapshot taken in the middle
/// gives the same tables; money crossed once: what gd sent is what bj received, in rows.
#[test]
fn a_federated_journal_projects_to_its_state_across_restart_and_rebuild() {
    let (mut gd, mut bj) = world();
    let open = first_half(&mut gd, &mut bj);
    let (gd_db, bj_db) = (TestDb::new(), TestDb::new());
    for (run, db) in [(&gd, &gd_db), (&bj, &bj_db)] {
        let mut p = Projector::open(&db.url, run.source(), run.config(3), false).unwrap();
        assert_eq!(p.stats().rebuilt_from, Some(0));
        assert_eq!(p.catch_up().unwrap(), run.head());
        assert_eq!(p.replica().state_hash(), run.state.state_hash());
        assert_projects(db, run);
    }
    let in_flight: i64 = gd_db
        .client()
        .query_one(
            "SELECT count(*) FROM gongji.exchanges WHERE status = 'in_flight'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(in_flight, 1);
    let snaps = [gd.snapshot(), bj.snapshot()];
    second_half(&mut gd, &mut bj, open);
    assert!(gd.state.fed_outbox().is_empty() && bj.state.fed_outbox().is_empty());

    for ((run, db), snap) in [(&gd, &gd_db), (&bj, &bj_db)].into_iter().zip(snaps) {
        // Restarted from the cursor: the replica is rebuilt from the snapshot at it.
        let mut p = Projector::open(&db.url, run.source(), run.config(2), false).unwrap();
        assert_eq!(p.stats().rebuilt_from, None);
        assert_eq!(p.cursor().op, snap);
        assert_eq!(p.catch_up().unwrap(), run.head() - snap);
        assert_eq!(p.replica().state_hash(), run.state.state_hash());
        assert_projects(db, run);

        // A fresh database loads the middle snapshot and follows: the same tables.
        let rebuilt = TestDb::new();
        let mut q = Projector::open(&rebuilt.url, run.source(), run.config(5), false).unwrap();
        assert_eq!(q.stats().rebuilt_from, Some(snap));
        q.catch_up().unwrap();
        assert_same_tables(db, &rebuilt);
    }
    // Money crossed once: committed on gd, accepted on bj, alike in the rows.
    let sum = |db: &TestDb, sql: &str| -> i64 { db.client().query_one(sql, &[]).unwrap().get(0) };
    let sent = sum(
        &gd_db,
        "SELECT sum(amount_fen)::bigint FROM gongji.exchanges WHERE outgoing AND status = 'accepted'",
    );
    let received = sum(
        &bj_db,
        "SELECT sum(amount_fen)::bigint FROM gongji.exchanges
         WHERE NOT outgoing AND status = 'accepted'",
    );
    assert_eq!((sent, received), (21_000, 21_000));
    assert_eq!(gd.state.money_totals().fed_sent, 21_000);
    // The receiver's statistics count them under the sender's province (44).
    let cross: i64 = sum(
        &bj_db,
        "SELECT sum(cross_province_amount_fen)::bigint FROM gongji.stats_monthly
         WHERE province = 44",
    );
    assert_eq!(cross, 21_000);
}

/// A projector's `[federation]` table must be its journal's: a federated journal without it,
/// an unfederated one with one, and another engine's table are refused with a clear error
/// before anything is written.
#[test]
fn a_journal_and_a_projector_of_different_federation_are_refused() {
    let (gd, _bj) = world();
    let mut plain = Run::new("unfederated", 3);
    plain.drive(50);
    let cases = [
        (
            gd.source(),
            None,
            "no [federation] but the journal's snapshot has [federation]",
        ),
        (gd.source(), Some(bj_table()), "[federation] engine bj"),
        (
            FileJournalSource::new(plain.journal_dir()).unwrap(),
            Some(gd_table()),
            "the journal's snapshot has no [federation]",
        ),
    ];
    for (source, federation, says) in cases {
        let db = TestDb::new();
        let config = ProjectorConfig {
            federation,
            ..ProjectorConfig::default()
        };
        let err = Projector::open(&db.url, source, config, false).unwrap_err();
        assert!(matches!(err, ProjectionError::Federation { .. }), "{err}");
        assert!(err.to_string().contains(says), "{err}");
        let written: i64 = db
            .client()
            .query_one(
                "SELECT (SELECT count(*) FROM gongji.projection_cursor)
                      + (SELECT count(*) FROM gongji.persons)
                      + (SELECT count(*) FROM gongji.exchanges)",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(written, 0, "{err}");
    }
}

/// The rows of `gongji.exchanges`, as text, by number.
fn exchange_rows(db: &TestDb) -> Vec<String> {
    db.client()
        .query(
            "SELECT t::text FROM gongji.exchanges t ORDER BY exchange_no",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Forgetting (docs/FEDERATION.md) drops closed exchange records from the engine; their rows
/// stay as they were, and an exchange made after it projects as any other. The whole journal
/// projected in one chunk, in which records are made and forgotten, gives the same tables as
/// small chunks.
#[test]
fn forgotten_exchanges_keep_their_rows() {
    let (mut gd, mut bj) = world();
    let open = first_half(&mut gd, &mut bj);
    second_half(&mut gd, &mut bj, open);
    let small = TestDb::new();
    let mut p = Projector::open(&small.url, gd.source(), gd.config(4), false).unwrap();
    p.catch_up().unwrap();
    let before = exchange_rows(&small);
    assert_eq!(before.len(), 5);

    // Two days on, gd claims the days closed and bj agrees; past the msgid window both forget.
    for (run, when) in [
        (&mut gd, "2025-05-23 09:00:00"),
        (&mut bj, "2025-05-23 09:00:00"),
    ] {
        run.now = parse_cst(when).unwrap();
    }
    let claim = gd.apply(Entry::Fed(FedOp::Forget { time: gd.now })).send;
    let answer = bj.deliver(&claim[0]).send;
    gd.deliver(&answer[0]);
    for run in [&mut gd, &mut bj] {
        run.now = parse_cst("2025-06-25 09:00:00").unwrap();
        run.apply(Entry::Fed(FedOp::Forget { time: run.now }));
    }
    assert_eq!(
        gd.state.exchange_rows().count(),
        0,
        "every exchange forgotten"
    );
    let late = gd.send("t6", "S1", "R1", 110105, 1_000);
    bj.deliver(&gd.outbox(late));
    let outcome = bj.answer(late, true);
    gd.deliver(&outcome[0]);

    p.catch_up().unwrap();
    assert_eq!(p.replica().state_hash(), gd.state.state_hash());
    assert_matches_engine(&small, &gd.state);
    let after = exchange_rows(&small);
    assert_eq!(after[..5], before[..], "forgotten rows as they were");
    assert_eq!(after.len(), 6);
    assert!(after[5].contains(&late.to_string()) && after[5].contains("accepted"));

    let one_chunk = TestDb::new();
    let mut q = Projector::open(&one_chunk.url, gd.source(), gd.config(100_000), false).unwrap();
    assert_eq!(q.catch_up().unwrap(), gd.head());
    assert_same_tables(&small, &one_chunk);
}
