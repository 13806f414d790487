//! One scenario test per rule of DOMAIN.md (`rule_NN_…`), then edge cases (`edge_…`).
//!
//! Every rejection goes through [`World::apply`], which asserts that the state hash did not
//! move; every test ends with [`World::done`], which runs the engine's full `check`.

use gongji_core::certno::certno_with_check;
use gongji_core::codec::{decode_op, encode_body_for_fingerprint, encode_op};
use gongji_core::params::DrawSource;
use gongji_core::reply::ReversalResult;
use gongji_core::time::{cst_day, parse_cst, parse_date, parse_period, Period};
use gongji_core::views::{
    BindingView, EntryKind as Kind, PersonView, SettlementView, StatsView, TransferView,
};
use gongji_core::{
    Actor, Applied, Body, Command, CreditItem, ErrCode, Fen, InstCode, InstType, Insutype, Msgid,
    MsgidScope, Op, Params, PersonStatus, PsnNo, Rejection, Relation, Reply, Role, State,
    TransferSource,
};

use ErrCode::*;
use TransferSource::{Acct, Wallet};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const T0: &str = "2025-05-20 10:00:00";
const H1: &str = "H44010600001";
const H2: &str = "H44010600002";

fn t(s: &str) -> i64 {
    parse_cst(s).expect("a CST time")
}

fn psn(s: &str) -> PsnNo {
    PsnNo::from(s).expect("psn_no fits")
}

fn code(s: &str) -> InstCode {
    InstCode::from(s).expect("code fits")
}

fn mid(s: &str) -> Msgid {
    Msgid::from(s).expect("msgid fits")
}

fn period(s: &str) -> Period {
    parse_period(s).expect("a period")
}

fn inst_actor(c: &str) -> Actor {
    Actor::Institution(code(c))
}

fn person_actor(p: &str) -> Actor {
    Actor::Person(psn(p))
}

fn certno(n: u32) -> String {
    certno_with_check(&format!("44010619900101{n:03}")).expect("17 digits")
}

fn enrol_body(p: &str, cert: &str, insutype: Insutype, admdvs: u32) -> Body {
    Body::Enrol {
        psn_no: psn(p),
        certno: arrayvec::ArrayString::from(cert).expect("18 chars"),
        psn_name: "张三丰".into(),
        insutype,
        admdvs,
    }
}

fn settle_body(inst: &str, p: &str, medfee: u64, fund: u64) -> Body {
    Body::Settle {
        fixmedins_code: code(inst),
        psn_no: psn(p),
        medfee_sumamt: Fen(medfee),
        fund_pay_sumamt: Fen(fund),
        acct_used: true,
    }
}

fn bind_body(giver: &str, receiver: &str, relation: Relation) -> Body {
    Body::Bind {
        giver_psn_no: psn(giver),
        receiver_psn_no: psn(receiver),
        relation,
    }
}

fn transfer_body(from: &str, to: &str, amount: u64, source: TransferSource) -> Body {
    Body::TransferCreate {
        from_psn_no: psn(from),
        to_psn_no: psn(to),
        amount: Fen(amount),
        source,
    }
}

fn contribute_body(payer: &str, p: &str, year: u16, amount: u64) -> Body {
    Body::Contribute {
        payer_psn_no: psn(payer),
        psn_no: psn(p),
        year,
        amount: Fen(amount),
    }
}

fn credit_body(label: &str, items: &[(&str, u64)]) -> Body {
    Body::Credit {
        period: period(label),
        items: items
            .iter()
            .map(|&(p, a)| CreditItem {
                psn_no: psn(p),
                amount: Fen(a),
            })
            .collect(),
    }
}

fn status_body(p: &str, status: PersonStatus) -> Body {
    Body::SetStatus {
        psn_no: psn(p),
        status,
    }
}

fn reverse_body(omsgid: &str) -> Body {
    Body::Reverse {
        omsgid: mid(omsgid),
        fixmedins_code: None,
    }
}

/// A reversal in the msgid scope of institution `inst` (an admin's, or the institution's own).
fn reverse_in(omsgid: &str, inst: &str) -> Body {
    Body::Reverse {
        omsgid: mid(omsgid),
        fixmedins_code: Some(code(inst)),
    }
}

/// A state, a current time, and counters for msgids, certnos and funding periods.
struct World {
    s: State,
    now: i64,
    seq: u64,
    certs: u32,
    fund_period: u32,
}

impl World {
    fn new() -> World {
        World::with(Params::default())
    }

    fn with(params: Params) -> World {
        World {
            s: State::new(params),
            now: t(T0),
            seq: 0,
            certs: 0,
            fund_period: period("2000-01").0,
        }
    }

    /// Sets the time of the following writes.
    fn at(&mut self, when: &str) -> &mut World {
        self.now = t(when);
        self
    }

    fn hash(&self) -> [u8; 32] {
        self.s.state_hash()
    }

    fn next_msgid(&mut self) -> Msgid {
        self.seq += 1;
        mid(&format!("M{:06}", self.seq))
    }

    fn op(&mut self, actor: Actor, body: Body) -> Op {
        Op::Write(Command {
            msgid: self.next_msgid(),
            time: self.now,
            actor,
            body,
        })
    }

    fn op_with(&self, msgid: &str, actor: Actor, body: Body) -> Op {
        Op::Write(Command {
            msgid: mid(msgid),
            time: self.now,
            actor,
            body,
        })
    }

    /// Applies an op; a rejection must leave the state hash as it was.
    fn apply(&mut self, op: &Op) -> Result<Applied, Rejection> {
        let before = self.hash();
        let result = self.s.apply(op);
        if result.is_err() {
            assert_eq!(before, self.hash(), "a rejection changed the state: {op:?}");
        }
        result
    }

    fn try_as(&mut self, actor: Actor, body: Body) -> Result<Reply, Rejection> {
        let op = self.op(actor, body);
        self.apply(&op).map(|a| {
            assert!(!a.replayed, "a fresh msgid replayed");
            a.reply
        })
    }

    fn ok_as(&mut self, actor: Actor, body: Body) -> Reply {
        let shown = format!("{body:?}");
        self.try_as(actor, body)
            .unwrap_or_else(|r| panic!("{shown} rejected: {r:?}"))
    }

    fn admin(&mut self, body: Body) -> Reply {
        self.ok_as(Actor::Admin, body)
    }

    fn err_as(&mut self, actor: Actor, body: Body) -> ErrCode {
        match self.try_as(actor, body) {
            Ok(reply) => panic!("accepted: {reply:?}"),
            Err(r) => r.code,
        }
    }

    fn err(&mut self, body: Body) -> ErrCode {
        self.err_as(Actor::Admin, body)
    }

    /// The rejection itself (for the item index of a batch).
    fn rejection(&mut self, body: Body) -> Rejection {
        self.try_as(Actor::Admin, body).expect_err("rejected")
    }

    fn tick(&mut self, when: &str) -> u32 {
        self.now = t(when);
        match self.apply(&Op::Tick { time: self.now }) {
            Ok(Applied {
                reply: Reply::Tick { expired },
                ..
            }) => expired,
            other => panic!("tick: {other:?}"),
        }
    }

    fn enrol(&mut self, p: &str, insutype: Insutype, admdvs: u32) -> PersonView {
        self.certs += 1;
        let cert = certno(self.certs);
        match self.admin(enrol_body(p, &cert, insutype, admdvs)) {
            Reply::Enrolled(i) => self.s.enrolled_view(i),
            other => panic!("{other:?}"),
        }
    }

    fn employee(&mut self, p: &str) {
        self.enrol(p, Insutype::Employee, 440106);
    }

    fn employee_at(&mut self, p: &str, admdvs: u32) {
        self.enrol(p, Insutype::Employee, admdvs);
    }

    fn resident(&mut self, p: &str) {
        self.enrol(p, Insutype::Resident, 440106);
    }

    fn inst(&mut self, c: &str) {
        self.admin(Body::RegisterInstitution {
            fixmedins_code: code(c),
            fixmedins_name: "广州市第一人民医院".into(),
            fixmedins_type: InstType::Medical,
            admdvs: 440106,
        });
    }

    /// Credits `amount` fen to a person under a period of its own.
    fn fund(&mut self, p: &str, amount: u64) {
        self.fund_period += 1;
        self.admin(Body::Credit {
            period: Period(self.fund_period),
            items: vec![CreditItem {
                psn_no: psn(p),
                amount: Fen(amount),
            }],
        });
    }

    fn bind(&mut self, giver: &str, receiver: &str) -> u64 {
        match self.admin(bind_body(giver, receiver, Relation::Parent)) {
            Reply::Bound {
                binding,
                priority,
                active,
            } => self.s.bound_view(binding, priority, active).binding_id,
            other => panic!("{other:?}"),
        }
    }

    fn revoke(&mut self, binding_id: u64) {
        self.admin(Body::Revoke { binding_id });
    }

    fn settle(&mut self, inst: &str, p: &str, medfee: u64, fund: u64) -> SettlementView {
        let reply = self.admin(settle_body(inst, p, medfee, fund));
        self.settled(&reply)
    }

    fn settled(&self, reply: &Reply) -> SettlementView {
        match reply {
            Reply::Settled(s) => self.s.settlement(u64::from(*s) + 1).expect("settlement"),
            other => panic!("{other:?}"),
        }
    }

    fn open_wallet(&mut self, p: &str) {
        self.admin(Body::OpenWallet { psn_no: psn(p) });
    }

    fn transfer(&mut self, from: &str, to: &str, amount: u64, source: TransferSource) -> u64 {
        transfer_of(&self.admin(transfer_body(from, to, amount, source))).transfer_id
    }

    fn accept(&mut self, transfer_id: u64) -> TransferView {
        transfer_of(&self.admin(Body::TransferAccept { transfer_id }))
    }

    fn acct(&self, p: &str) -> u64 {
        self.s.person(p).expect("person").acct_balc.0
    }

    fn wallet(&self, p: &str) -> u64 {
        self.s.person(p).expect("person").wallet_balc.0
    }

    fn status(&self, transfer_id: u64) -> &'static str {
        self.s
            .transfer(transfer_id)
            .expect("transfer")
            .status
            .as_str()
    }

    fn stats(&self, from: &str, to: &str, prov: Option<u8>) -> StatsView {
        self.s.stats(period(from), period(to), prov)
    }

    fn entry_kinds(&self, p: &str) -> Vec<(&'static str, i64)> {
        let (entries, _) = self.s.entries(p, None, 1000).expect("entries");
        entries
            .iter()
            .map(|e| (e.kind.as_str(), e.amount))
            .collect()
    }

    fn done(&self) {
        self.s.check().expect("state check");
    }
}

fn transfer_of(reply: &Reply) -> TransferView {
    match reply {
        Reply::Transfer(v) => (**v).clone(),
        other => panic!("{other:?}"),
    }
}

fn cell(count: u64, amount: u64) -> gongji_core::views::StatsCell {
    gongji_core::views::StatsCell {
        count,
        amount: Fen(amount),
    }
}

// ---------------------------------------------------------------------------------------------
// Rules 1–20
// ---------------------------------------------------------------------------------------------

#[test]
fn rule_01_person_identity() {
    // Proves enrolment stores psn_no, certno, insutype, admdvs and status; PERSON_EXISTS on a
    // repeated psn_no or certno; status changes; 400/403/404/409 codes of the person endpoints.
    let mut w = World::new();
    let cert = certno(1);
    let v = match w.admin(enrol_body("P1", &cert, Insutype::Employee, 440106)) {
        Reply::Enrolled(i) => w.s.enrolled_view(i),
        other => panic!("{other:?}"),
    };
    assert_eq!(v.psn_no.as_str(), "P1");
    assert_eq!(v.insutype, Insutype::Employee);
    assert_eq!(v.admdvs, 440106);
    assert_eq!(v.status, PersonStatus::Active);
    assert_eq!(v.acct_balc, Fen::ZERO);
    assert!(!v.wallet_open);
    assert_eq!(w.s.person("P1").unwrap(), v);

    // Same psn_no, another certno; same certno, another psn_no.
    assert_eq!(
        w.err(enrol_body("P1", &certno(2), Insutype::Employee, 440106)),
        PersonExists
    );
    assert_eq!(
        w.err(enrol_body("P2", &cert, Insutype::Resident, 440106)),
        PersonExists
    );
    // Malformed values (400).
    assert_eq!(
        w.err(enrol_body("P-2", &certno(2), Insutype::Employee, 440106)),
        BadRequest
    );
    assert_eq!(
        w.err(enrol_body("", &certno(2), Insutype::Employee, 440106)),
        BadRequest
    );
    assert_eq!(
        w.err(enrol_body(
            "P2",
            "440106199001010020",
            Insutype::Employee,
            440106
        )),
        InvalidCertno
    );
    assert_eq!(
        w.err(enrol_body("P2", &certno(2), Insutype::Employee, 990106)),
        InvalidAdmdvs
    );
    let mut blank = enrol_body("P2", &certno(2), Insutype::Employee, 440106);
    if let Body::Enrol { psn_name, .. } = &mut blank {
        *psn_name = "  ".into();
    }
    assert_eq!(w.err(blank), BadRequest);
    // Only admin enrols (403).
    let body = enrol_body("P2", &certno(2), Insutype::Employee, 440106);
    assert_eq!(w.err_as(inst_actor(H1), body.clone()), Forbidden);
    assert_eq!(w.err_as(person_actor("P1"), body.clone()), Forbidden);
    // A bad msgid is 400.
    let op = w.op_with("bad msgid!", Actor::Admin, body.clone());
    assert_eq!(w.apply(&op).unwrap_err().code, BadRequest);
    // Replay, conflict, and a time before the clock.
    let op = w.op_with("E1", Actor::Admin, body.clone());
    let first = w.apply(&op).unwrap();
    let h = w.hash();
    let again = w.apply(&op).unwrap();
    assert!(again.replayed);
    assert_eq!(again.reply, first.reply);
    assert_eq!(w.hash(), h);
    let op = w.op_with(
        "E1",
        Actor::Admin,
        enrol_body("P3", &certno(3), Insutype::Employee, 440106),
    );
    assert_eq!(w.apply(&op).unwrap_err().code, MsgidConflict);
    w.at("2025-05-20 09:59:59");
    assert_eq!(
        w.err(enrol_body("P3", &certno(3), Insutype::Employee, 440106)),
        InvalidTime
    );
    w.at(T0);

    // Status: suspended and back; 404 for an unknown person.
    match w.admin(status_body("P1", PersonStatus::Suspended)) {
        Reply::Person(v) => assert_eq!(v.status, PersonStatus::Suspended),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.s.person("P1").unwrap().status, PersonStatus::Suspended);
    w.admin(status_body("P1", PersonStatus::Active));
    assert_eq!(w.s.person("P1").unwrap().status, PersonStatus::Active);
    assert_eq!(
        w.err(status_body("NOBODY", PersonStatus::Active)),
        PersonNotFound
    );
    assert_eq!(
        w.err_as(person_actor("P1"), status_body("P1", PersonStatus::Active)),
        Forbidden
    );
    assert_eq!(w.s.person("NOBODY").unwrap_err().code, PersonNotFound);
    assert_eq!(w.s.person_count(), 2);
    w.done();
}

#[test]
fn rule_02_personal_account_and_wallet() {
    // Proves a 310 person has an account and a 390 person none (NO_PERSONAL_ACCOUNT wherever one
    // is needed); any person may open a wallet, which starts empty and reopens as a no-op.
    let mut w = World::new();
    w.employee("E");
    w.resident("R");
    w.fund("E", 10_000);
    assert_eq!(w.acct("E"), 10_000);
    assert_eq!(w.acct("R"), 0);
    assert_eq!(w.s.person("R").unwrap().insutype, Insutype::Resident);
    // Crediting a resident: NO_PERSONAL_ACCOUNT, with the item index.
    let r = w.rejection(credit_body("2025-05", &[("E", 100), ("R", 100)]));
    assert_eq!((r.code, r.item), (NoPersonalAccount, Some(1)));

    // Wallets: closed at first; a transfer to a closed wallet is WALLET_NOT_OPEN.
    assert!(!w.s.person("R").unwrap().wallet_open);
    w.bind("E", "R");
    assert_eq!(w.err(transfer_body("E", "R", 100, Acct)), WalletNotOpen);
    // Only the person or admin opens it.
    let open = Body::OpenWallet { psn_no: psn("R") };
    assert_eq!(w.err_as(person_actor("E"), open.clone()), Forbidden);
    assert_eq!(w.err_as(inst_actor(H1), open.clone()), Forbidden);
    assert_eq!(
        w.err(Body::OpenWallet {
            psn_no: psn("NOBODY")
        }),
        PersonNotFound
    );
    match w.ok_as(person_actor("R"), open.clone()) {
        Reply::Person(v) => {
            assert!(v.wallet_open);
            assert_eq!(v.wallet_balc, Fen::ZERO);
        }
        other => panic!("{other:?}"),
    }
    // Opening an open wallet succeeds and changes no balance or flag.
    let before = w.s.person("R").unwrap();
    w.admin(open);
    assert_eq!(w.s.person("R").unwrap(), before);

    // A resident's wallet receives and sends from the wallet, never from an account.
    let id = w.transfer("E", "R", 500, Acct);
    w.accept(id);
    assert_eq!(w.wallet("R"), 500);
    w.open_wallet("E");
    assert_eq!(w.err(transfer_body("R", "E", 100, Acct)), NoPersonalAccount);
    w.transfer("R", "E", 100, Wallet);
    assert_eq!(w.wallet("R"), 400);
    // A resident cannot pay a contribution from an account it does not have.
    w.resident("R2");
    assert_eq!(
        w.err(contribute_body("R", "R2", 2026, 100)),
        NoPersonalAccount
    );
    w.done();
}

#[test]
fn rule_03_money_conserved() {
    // Proves balances + held = credited − paid to institutions − contributions + returned by
    // cancellations, after every op of a mixed scenario, computed from the public views.
    let mut w = World::new();
    w.inst(H1);
    for p in ["A", "G", "X"] {
        w.employee(p);
    }
    w.resident("R");
    w.bind("G", "A");
    w.bind("G", "R");
    w.open_wallet("A");
    let persons = ["A", "G", "X", "R"];
    let mut credited = 0u64;
    let mut setls: Vec<u64> = Vec::new();
    let mut transfers: Vec<u64> = Vec::new();
    let mut contributed = 0u64;
    let verify = |w: &World, credited: u64, setls: &[u64], transfers: &[u64], contributed: u64| {
        let balances: u64 = persons.iter().map(|p| w.acct(p) + w.wallet(p)).sum();
        let held: u64 = transfers
            .iter()
            .map(|&id| w.s.transfer(id).unwrap())
            .filter(|v| v.status.as_str() == "pending")
            .map(|v| v.amount.0)
            .sum();
        let paid: u64 = setls
            .iter()
            .map(|&id| w.s.settlement(id).unwrap())
            .filter(|v| !v.cancelled)
            .map(|v| v.acct_pay.0 + v.wallet_pay.0 + v.acct_mulaid_pay.0)
            .sum();
        assert_eq!(balances + held + paid + contributed, credited);
        w.done();
    };
    w.admin(credit_body(
        "2025-04",
        &[("A", 3_000), ("G", 50_000), ("X", 7)],
    ));
    credited += 53_007;
    verify(&w, credited, &setls, &transfers, contributed);
    transfers.push(w.transfer("G", "A", 2_000, Acct));
    verify(&w, credited, &setls, &transfers, contributed);
    w.accept(transfers[0]);
    transfers.push(w.transfer("G", "A", 1_000, Acct));
    verify(&w, credited, &setls, &transfers, contributed);
    setls.push(w.settle(H1, "A", 20_000, 1_000).setl_id);
    verify(&w, credited, &setls, &transfers, contributed);
    setls.push(w.settle(H1, "R", 5_000, 0).setl_id);
    verify(&w, credited, &setls, &transfers, contributed);
    w.admin(contribute_body("G", "R", 2026, 3_000));
    contributed += 3_000;
    verify(&w, credited, &setls, &transfers, contributed);
    w.admin(Body::Cancel { setl_id: setls[0] });
    verify(&w, credited, &setls, &transfers, contributed);
    w.tick("2025-05-21 06:00:00");
    assert_eq!(w.status(transfers[1]), "returned");
    verify(&w, credited, &setls, &transfers, contributed);
    // An overdraw is never possible: a transfer above the balance is refused whole.
    let x = w.acct("X");
    w.bind("X", "A");
    assert_eq!(
        w.err(transfer_body("X", "A", x + 1, Acct)),
        InsufficientBalance
    );
    verify(&w, credited, &setls, &transfers, contributed);
}

#[test]
fn rule_04_province_codes() {
    // Proves every one of the 31 province codes is accepted as admdvs, anything else (or a
    // number that is not six digits) is INVALID_ADMDVS, and the province decides the scope.
    let mut w = World::new();
    let provinces = [
        11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51,
        52, 53, 54, 61, 62, 63, 64, 65,
    ];
    for (n, p) in provinces.iter().enumerate() {
        w.employee_at(&format!("P{n}"), p * 10_000 + 101);
    }
    let bad = [
        100101, 160101, 200101, 240101, 300101, 380101, 470101, 550101, 600101, 660101, 710101,
        810101, 990101, 12345, 0, 1100101,
    ];
    for (n, a) in bad.iter().enumerate() {
        let body = enrol_body("BAD", &certno(900 + n as u32), Insutype::Employee, *a);
        assert_eq!(w.err(body), InvalidAdmdvs, "{a}");
        let inst = Body::RegisterInstitution {
            fixmedins_code: code("HBAD"),
            fixmedins_name: "x".into(),
            fixmedins_type: InstType::Pharmacy,
            admdvs: *a,
        };
        assert_eq!(w.err(inst), InvalidAdmdvs, "{a}");
    }
    // Province = first two digits: 440106 and 441900 are one province, 110101 another.
    w.employee_at("GZ", 440106);
    w.employee_at("DG", 441900);
    w.employee_at("BJ", 110101);
    let same = w.bind("GZ", "DG");
    let other = w.bind("GZ", "BJ");
    assert_eq!(w.s.binding(same).unwrap().scope.as_str(), "in_province");
    assert_eq!(w.s.binding(other).unwrap().scope.as_str(), "wallet_only");
    w.done();
}

#[test]
fn rule_05_certno_check_digit() {
    // Proves GB 11643: the right check character (including upper-case X) is accepted; a wrong
    // one, lower-case x, a bad birth date, a bad province or a non-digit is INVALID_CERTNO.
    let mut w = World::new();
    let x = certno_with_check("11010519491231002").unwrap();
    assert_eq!(x, "11010519491231002X");
    w.admin(enrol_body("X1", &x, Insutype::Employee, 110101));
    w.admin(enrol_body(
        "X2",
        "440106199001011235",
        Insutype::Resident,
        440106,
    ));
    let bad = [
        "11010519491231002x".to_owned(),                 // lower-case x
        "440106199001011234".to_owned(),                 // wrong check digit
        certno_with_check("44010619900230123").unwrap(), // 30 February
        certno_with_check("44010619901301123").unwrap(), // month 13
        certno_with_check("99010619900101123").unwrap(), // no province 99
        "44010619900101123A".to_owned(),                 // not a check character
        "4401061990010112 5".to_owned(),                 // a space among the digits
    ];
    for cert in &bad {
        let body = enrol_body("X3", cert, Insutype::Employee, 440106);
        assert_eq!(w.err(body), InvalidCertno, "{cert}");
    }
    w.done();
}

#[test]
fn rule_06_giver_must_be_employee_insured() {
    // Proves binding: a 310 active giver, any enrolled active receiver, not oneself, one of the
    // eight relations, one active binding per pair, at most 7 receivers per giver and 7 givers
    // per receiver; and the codes of the endpoint (403, 404, PERSON_SUSPENDED).
    let mut w = World::new();
    w.employee("G");
    w.employee("E");
    w.resident("R");
    // A binding's reply.
    let reply = w.ok_as(person_actor("G"), bind_body("G", "R", Relation::Child));
    let Reply::Bound {
        binding,
        priority,
        active,
    } = reply
    else {
        panic!("{reply:?}")
    };
    let v = w.s.bound_view(binding, priority, active);
    assert_eq!(
        (v.giver_psn_no.as_str(), v.receiver_psn_no.as_str()),
        ("G", "R")
    );
    assert_eq!(v.relation, Relation::Child);
    assert_eq!(v.scope.as_str(), "in_province");
    assert_eq!((v.priority, v.active), (1, true));
    // A resident giver.
    assert_eq!(
        w.err(bind_body("R", "G", Relation::Parent)),
        GiverNotEmployeeInsured
    );
    assert_eq!(w.err(bind_body("G", "G", Relation::Spouse)), SelfBinding);
    assert_eq!(
        w.err(bind_body("G", "E", Relation::Other)),
        RelationNotEligible
    );
    assert_eq!(w.err(bind_body("G", "R", Relation::Spouse)), BindingExists);
    // The other direction is another pair.
    w.admin(bind_body("E", "G", Relation::Sibling));
    assert_eq!(
        w.err(bind_body("G", "NOBODY", Relation::Spouse)),
        PersonNotFound
    );
    assert_eq!(
        w.err(bind_body("NOBODY", "G", Relation::Spouse)),
        PersonNotFound
    );
    // Suspended giver or receiver: PERSON_SUSPENDED (API.md).
    w.admin(status_body("E", PersonStatus::Suspended));
    assert_eq!(
        w.err(bind_body("E", "R", Relation::Parent)),
        PersonSuspended
    );
    assert_eq!(
        w.err(bind_body("G", "E", Relation::Parent)),
        PersonSuspended
    );
    w.admin(status_body("E", PersonStatus::Active));
    // Roles: a person binds only as giver; an institution never.
    let body = bind_body("G", "E", Relation::Spouse);
    assert_eq!(w.err_as(person_actor("E"), body.clone()), Forbidden);
    assert_eq!(w.err_as(inst_actor(H1), body.clone()), Forbidden);
    // Every eligible relation; the giver's limit of 7 receivers.
    let relations = Relation::ELIGIBLE;
    for (n, rel) in relations.iter().enumerate().take(6) {
        let r = format!("C{n}");
        w.employee(&r);
        w.admin(bind_body("G", &r, *rel));
    }
    assert_eq!(w.s.person("G").unwrap().bindings_given.len(), 7);
    w.employee("C7");
    assert_eq!(
        w.err(bind_body("G", "C7", Relation::MaternalGrandchild)),
        BindingLimit
    );
    // The limits count active bindings: revoke one, bind again.
    let first = w.s.person("G").unwrap().bindings_given[0].binding_id;
    w.revoke(first);
    w.admin(bind_body("G", "C7", Relation::MaternalGrandchild));
    // The receiver's limit of 7 givers.
    for n in 0..7 {
        let g = format!("K{n}");
        w.employee(&g);
        w.bind(&g, "E");
    }
    w.employee("K7");
    assert_eq!(w.err(bind_body("K7", "E", Relation::Parent)), BindingLimit);
    // Limits are province parameters: a place that allows one.
    let mut one = World::with(Params {
        binding_receivers_max: 1,
        binding_givers_max: 1,
        ..Params::default()
    });
    for p in ["A", "B", "C"] {
        one.employee(p);
    }
    one.bind("A", "B");
    assert_eq!(one.err(bind_body("A", "C", Relation::Parent)), BindingLimit);
    assert_eq!(one.err(bind_body("C", "B", Relation::Parent)), BindingLimit);
    one.done();
    w.done();
}

#[test]
fn rule_07_scope_by_province() {
    // Proves a same-province binding is in_province (drawn at settlement, pays contributions,
    // sends wallet money) and a cross-province one wallet_only (never drawn; contributions
    // CROSS_PROVINCE_NOT_ALLOWED; wallet transfers allowed, cross_province).
    let mut w = World::new();
    w.inst(H1);
    w.employee_at("GZ", 440106);
    w.employee_at("BJ", 110101);
    w.employee_at("A", 440106);
    w.resident("R");
    w.fund("GZ", 10_000);
    w.fund("BJ", 10_000);
    let near = w.bind("GZ", "A");
    let far = w.bind("BJ", "A");
    w.bind("BJ", "R");
    w.bind("GZ", "R");
    assert_eq!(w.s.binding(near).unwrap().scope.as_str(), "in_province");
    assert_eq!(w.s.binding(far).unwrap().scope.as_str(), "wallet_only");
    // The wallet-only giver comes second in priority but is never drawn.
    w.revoke(near);
    let s = w.settle(H1, "A", 3_000, 0);
    assert_eq!(s.acct_mulaid_pay, Fen::ZERO);
    assert_eq!(s.psn_cash_pay, Fen(3_000));
    assert_eq!(w.acct("BJ"), 10_000);
    // Contributions need an in_province binding.
    assert_eq!(
        w.err(contribute_body("BJ", "R", 2026, 100)),
        CrossProvinceNotAllowed
    );
    w.admin(contribute_body("GZ", "R", 2026, 100));
    // Wallet transfers work over a wallet_only binding and are cross_province.
    w.open_wallet("A");
    let id = w.transfer("BJ", "A", 1_000, Acct);
    assert!(w.s.transfer(id).unwrap().cross_province);
    w.accept(id);
    assert_eq!(w.wallet("A"), 1_000);
    w.done();
}

#[test]
fn rule_08_either_side_revokes() {
    // Proves the giver or the receiver may revoke (a third person or an institution may not),
    // a revoked binding is never drawn again, ALREADY_REVOKED and BINDING_NOT_FOUND, and a later
    // cancellation still returns money to the giver who paid.
    let mut w = World::new();
    w.inst(H1);
    for p in ["G", "A", "B", "Z"] {
        w.employee(p);
    }
    w.fund("G", 10_000);
    let ga = w.bind("G", "A");
    let gb = w.bind("G", "B");
    let paid = w.settle(H1, "A", 2_000, 0);
    assert_eq!(paid.acct_mulaid_pay, Fen(2_000));
    let revoke = |id| Body::Revoke { binding_id: id };
    assert_eq!(w.err_as(person_actor("Z"), revoke(ga)), Forbidden);
    assert_eq!(w.err_as(inst_actor(H1), revoke(ga)), Forbidden);
    assert_eq!(w.err_as(person_actor("Z"), revoke(99)), BindingNotFound);
    assert_eq!(w.err(revoke(99)), BindingNotFound);
    // The receiver revokes one, the giver the other.
    match w.ok_as(person_actor("A"), revoke(ga)) {
        Reply::Bound {
            binding,
            priority,
            active,
        } => assert!(!w.s.bound_view(binding, priority, active).active),
        other => panic!("{other:?}"),
    }
    w.ok_as(person_actor("G"), revoke(gb));
    assert_eq!(w.err(revoke(ga)), AlreadyRevoked);
    assert_eq!(w.err_as(person_actor("G"), revoke(gb)), AlreadyRevoked);
    assert!(!w.s.binding(ga).unwrap().active);
    assert!(w.s.person("G").unwrap().bindings_given.is_empty());
    assert!(w.s.person("A").unwrap().bindings_received.is_empty());
    // Never drawn again.
    let s = w.settle(H1, "A", 1_000, 0);
    assert_eq!((s.acct_mulaid_pay, s.psn_cash_pay), (Fen::ZERO, Fen(1_000)));
    // What it paid stays paid until cancelled; a cancellation returns it to the giver.
    assert_eq!(w.acct("G"), 8_000);
    w.admin(Body::Cancel {
        setl_id: paid.setl_id,
    });
    assert_eq!(w.acct("G"), 10_000);
    w.done();
}

#[test]
fn rule_09_suspended_person() {
    // Proves a suspended person neither settles (PERSON_SUSPENDED), sends wallet money nor pays
    // contributions, and is skipped as a giver until reactivated.
    let mut w = World::new();
    w.inst(H1);
    for p in ["A", "G1", "G2"] {
        w.employee(p);
    }
    w.resident("R");
    w.fund("G1", 10_000);
    w.fund("G2", 10_000);
    w.bind("G1", "A");
    w.bind("G2", "A");
    w.bind("G1", "R");
    w.open_wallet("A");
    w.admin(status_body("A", PersonStatus::Suspended));
    assert_eq!(w.err(settle_body(H1, "A", 100, 0)), PersonSuspended);
    w.admin(status_body("A", PersonStatus::Active));
    // G1 suspended: skipped, G2 pays.
    w.admin(status_body("G1", PersonStatus::Suspended));
    let s = w.settle(H1, "A", 1_000, 0);
    assert_eq!(s.mulaid_details, vec![(psn("G2"), Fen(1_000))]);
    assert_eq!(w.err(transfer_body("G1", "A", 100, Acct)), PersonSuspended);
    assert_eq!(
        w.err(contribute_body("G1", "R", 2026, 100)),
        PersonSuspended
    );
    // Reactivated: drawn first again.
    w.admin(status_body("G1", PersonStatus::Active));
    let s = w.settle(H1, "A", 1_000, 0);
    assert_eq!(s.mulaid_details, vec![(psn("G1"), Fen(1_000))]);
    w.done();
}

#[test]
fn rule_10_settlement_draw_order() {
    // Proves psn_part = medfee − fund is paid from own account, own wallet, givers in priority
    // order, then cash, each giving what it has; a shortfall is cash, not a rejection;
    // FUND_EXCEEDS_MEDFEE, 403/404/400 codes; and the order is a province parameter.
    let mut w = World::new();
    w.inst(H1);
    w.inst(H2);
    for p in ["A", "G1", "G2"] {
        w.employee(p);
    }
    w.fund("A", 1_000);
    w.fund("G1", 300);
    w.fund("G2", 10_000);
    w.bind("G1", "A");
    w.bind("G2", "A");
    w.open_wallet("A");
    let id = w.transfer("G2", "A", 500, Acct);
    w.accept(id);
    let reply = w.ok_as(inst_actor(H1), settle_body(H1, "A", 20_000, 5_000));
    let s = w.settled(&reply);
    assert_eq!(s.psn_part_amt, Fen(15_000));
    assert_eq!(s.acct_pay, Fen(1_000));
    assert_eq!(s.wallet_pay, Fen(500));
    assert_eq!(s.acct_mulaid_pay, Fen(9_800));
    assert_eq!(
        s.mulaid_details,
        vec![(psn("G1"), Fen(300)), (psn("G2"), Fen(9_500))]
    );
    assert_eq!(s.psn_cash_pay, Fen(3_700));
    assert_eq!((s.acct_balc, s.wallet_balc), (Fen::ZERO, Fen::ZERO));
    assert_eq!((s.fixmedins_code.as_str(), s.setl_time), (H1, t(T0)));
    assert!(!s.cancelled);
    // Entries: the person's own draws and each giver's mulaid_given.
    assert_eq!(
        w.entry_kinds("G1"),
        vec![("credit", 300), ("mulaid_given", -300)]
    );
    // Fund covers everything: nothing is drawn.
    let s = w.settle(H1, "A", 5_000, 5_000);
    assert_eq!(s.psn_part_amt, Fen::ZERO);
    assert_eq!(s.psn_cash_pay, Fen::ZERO);
    assert_eq!(w.err(settle_body(H1, "A", 5_000, 5_001)), FundExceedsMedfee);
    assert_eq!(
        w.err(settle_body("HNONE", "A", 100, 0)),
        InstitutionNotFound
    );
    assert_eq!(w.err(settle_body(H1, "NOBODY", 100, 0)), PersonNotFound);
    assert_eq!(
        w.err(settle_body(H1, "A", 10_000_000_000, 0)),
        InvalidAmount
    );
    assert_eq!(
        w.err(settle_body(H1, "A", 100, 10_000_000_000)),
        InvalidAmount
    );
    assert_eq!(
        w.err_as(inst_actor(H2), settle_body(H1, "A", 100, 0)),
        Forbidden
    );
    assert_eq!(
        w.err_as(person_actor("A"), settle_body(H1, "A", 100, 0)),
        Forbidden
    );
    w.done();

    // Another province's order: givers first, then the wallet, then the account.
    let mut p = World::with(Params {
        draw_order: [
            DrawSource::Givers,
            DrawSource::OwnWallet,
            DrawSource::OwnAcct,
        ],
        ..Params::default()
    });
    p.inst(H1);
    p.employee("A");
    p.employee("G");
    p.fund("A", 1_000);
    p.fund("G", 1_000);
    p.bind("G", "A");
    p.open_wallet("A");
    let id = p.transfer("G", "A", 400, Acct);
    p.accept(id);
    let s = p.settle(H1, "A", 1_500, 0);
    assert_eq!(s.acct_mulaid_pay, Fen(600));
    assert_eq!(s.wallet_pay, Fen(400));
    assert_eq!(s.acct_pay, Fen(500));
    assert_eq!(s.acct_balc, Fen(500));
    p.done();
}

#[test]
fn rule_11_settlement_whole_or_nothing() {
    // Proves a rejected settlement changes nothing (state hash, entries, balances, msgid not
    // consumed), and an applied one changes balances, entries, statistics and reconciliation
    // together.
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    w.employee("G");
    w.fund("A", 100);
    w.fund("G", 10_000);
    w.bind("G", "A");
    let h = w.hash();
    for (msgid, body) in [
        ("S1", settle_body(H1, "A", 1_000, 1_001)),
        ("S1", settle_body("HNONE", "A", 1_000, 0)),
        ("S1", settle_body(H1, "NOBODY", 1_000, 0)),
    ] {
        let op = w.op_with(msgid, Actor::Admin, body);
        assert!(w.apply(&op).is_err());
    }
    w.admin(status_body("A", PersonStatus::Suspended));
    let h2 = w.hash();
    let op = w.op_with("S1", Actor::Admin, settle_body(H1, "A", 1_000, 0));
    assert_eq!(w.apply(&op).unwrap_err().code, PersonSuspended);
    assert_eq!(w.hash(), h2);
    assert_ne!(h, h2);
    w.admin(status_body("A", PersonStatus::Active));
    assert_eq!((w.acct("A"), w.acct("G")), (100, 10_000));
    assert_eq!(w.entry_kinds("G"), vec![("credit", 10_000)]);
    // The same msgid, now well formed, is applied: every part at once.
    let applied = w.apply(&op).unwrap();
    assert!(!applied.replayed);
    let s = w.settled(&applied.reply);
    assert_eq!((s.acct_pay, s.acct_mulaid_pay), (Fen(100), Fen(900)));
    assert_eq!((w.acct("A"), w.acct("G")), (0, 9_100));
    assert_eq!(
        w.stats("2025-05", "2025-05", None).account_draw,
        cell(1, 900)
    );
    let day = cst_day(t(T0));
    assert_eq!(w.s.reconciliation(H1, day).unwrap().setl_count, 1);
    // A replay changes nothing.
    let h3 = w.hash();
    assert!(w.apply(&op).unwrap().replayed);
    assert_eq!(w.hash(), h3);
    w.done();
}

#[test]
fn rule_12_cancellation_returns_each_source() {
    // Proves a cancellation returns to own account, wallet and each giver exactly what they
    // gave (cash is the remainder), whatever happened to the binding; at most once
    // (ALREADY_CANCELLED); SETTLEMENT_NOT_FOUND; an institution cancels only its own.
    let mut w = World::new();
    w.inst(H1);
    w.inst(H2);
    for p in ["A", "G1", "G2"] {
        w.employee(p);
    }
    w.fund("A", 1_000);
    w.fund("G1", 2_000);
    w.fund("G2", 3_000);
    let b1 = w.bind("G1", "A");
    w.bind("G2", "A");
    w.open_wallet("A");
    let id = w.transfer("G2", "A", 500, Acct);
    w.accept(id);
    let s = w.settle(H1, "A", 10_000, 1_000);
    assert_eq!(
        (s.acct_pay, s.wallet_pay, s.acct_mulaid_pay, s.psn_cash_pay),
        (Fen(1_000), Fen(500), Fen(4_500), Fen(3_000))
    );
    // Things happen in between: a revoke, a suspension, a new credit.
    w.revoke(b1);
    w.admin(status_body("G2", PersonStatus::Suspended));
    w.fund("A", 50);
    let cancel = Body::Cancel { setl_id: s.setl_id };
    assert_eq!(w.err_as(inst_actor(H2), cancel.clone()), Forbidden);
    assert_eq!(w.err_as(person_actor("A"), cancel.clone()), Forbidden);
    assert_eq!(w.err(Body::Cancel { setl_id: 99 }), SettlementNotFound);
    assert_eq!(
        w.err_as(inst_actor(H1), Body::Cancel { setl_id: 99 }),
        SettlementNotFound
    );
    match w.ok_as(inst_actor(H1), cancel.clone()) {
        Reply::Cancelled(i) => {
            let v = w.s.settlement(u64::from(i) + 1).unwrap();
            assert!(v.cancelled);
            assert_eq!(v.acct_mulaid_pay, Fen(4_500));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((w.acct("A"), w.wallet("A")), (1_050, 500));
    assert_eq!((w.acct("G1"), w.acct("G2")), (2_000, 2_500));
    assert_eq!(
        w.entry_kinds("G1"),
        vec![
            ("credit", 2_000),
            ("mulaid_given", -2_000),
            ("cancel", 2_000)
        ]
    );
    assert_eq!(w.err(cancel), AlreadyCancelled);
    assert!(w.s.settlement(s.setl_id).unwrap().cancelled);
    w.done();
}

#[test]
fn rule_13_reversal() {
    // Proves reversal by original msgid cancels an applied settlement (again: still cancelled,
    // nothing returned twice), blocks an unknown msgid so its late copy is REVERSED, refuses
    // other kinds (NOT_REVERSIBLE), and looks omsgid up in the caller's own msgid scope.
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    w.fund("A", 10_000);
    let m1 = format!("{H1}202505201000000001");
    let op = w.op_with(&m1, inst_actor(H1), settle_body(H1, "A", 3_000, 0));
    w.apply(&op).unwrap();
    assert_eq!(w.acct("A"), 7_000);
    let r1 = format!("{H1}202505201000000002");
    let rev = w.op_with(&r1, inst_actor(H1), reverse_body(&m1));
    let reply = w.apply(&rev).unwrap().reply;
    assert_eq!(
        reply,
        Reply::Reversal {
            omsgid: Box::new(mid(&m1)),
            result: ReversalResult::Cancelled
        }
    );
    assert_eq!(w.acct("A"), 10_000);
    assert!(w.s.settlement(1).unwrap().cancelled);
    // Reversing again: still "cancelled", nothing moves.
    match w.ok_as(inst_actor(H1), reverse_body(&m1)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Cancelled),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.acct("A"), 10_000);
    // The reversal's own replay answers the same.
    let again = w.apply(&rev).unwrap();
    assert!(again.replayed);
    assert_eq!(again.reply, reply);
    // A msgid never seen: blocked; its late copy is REVERSED, whatever the body.
    let m2 = format!("{H1}202505201000000003");
    match w.ok_as(inst_actor(H1), reverse_body(&m2)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Blocked),
        other => panic!("{other:?}"),
    }
    let late = w.op_with(&m2, inst_actor(H1), settle_body(H1, "A", 3_000, 0));
    assert_eq!(w.apply(&late).unwrap_err().code, Reversed);
    let late = w.op_with(&m2, inst_actor(H1), settle_body(H1, "A", 10, 0));
    assert_eq!(w.apply(&late).unwrap_err().code, Reversed);
    // In the admin scope the same text is another msgid.
    let admin = w.op_with(&m2, Actor::Admin, status_body("A", PersonStatus::Active));
    assert!(!w.apply(&admin).unwrap().replayed);
    match w.ok_as(Actor::Admin, reverse_in(&m2, H1)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Blocked),
        other => panic!("{other:?}"),
    }
    // Other kinds of writes are not reversible.
    w.employee("G");
    let bind = w.op_with("BIND1", Actor::Admin, bind_body("G", "A", Relation::Parent));
    w.apply(&bind).unwrap();
    assert_eq!(w.err(reverse_body("BIND1")), NotReversible);
    let cancel = w.op_with("CANCEL1", Actor::Admin, Body::Cancel { setl_id: 1 });
    assert_eq!(w.apply(&cancel).unwrap_err().code, AlreadyCancelled);
    let s2 = w.settle(H1, "A", 100, 0);
    let cancel = w.op_with(
        "CANCEL1",
        Actor::Admin,
        Body::Cancel {
            setl_id: s2.setl_id,
        },
    );
    w.apply(&cancel).unwrap();
    assert_eq!(w.err(reverse_body("CANCEL1")), NotReversible);
    // Roles: an institution reverses only in its own scope; a person never reverses.
    assert_eq!(
        w.err_as(
            inst_actor(H1),
            reverse_in("H44010600002202505201000000001", H2)
        ),
        Forbidden
    );
    assert_eq!(w.err_as(person_actor("A"), reverse_body(&m1)), Forbidden);
    // A reversal may not name itself.
    let own = w.op_with("SELF1", Actor::Admin, reverse_body("SELF1"));
    assert_eq!(w.apply(&own).unwrap_err().code, BadRequest);
    w.done();
}

#[test]
fn rule_14_wallet_transfer() {
    // Proves wallet transfers: hold, accept, decline; either-direction binding; sender source
    // acct or wallet; the codes in DOMAIN.md's order (WALLET_NOT_OPEN, NOT_BOUND,
    // WALLET_AMOUNT_LIMIT, WALLET_CLOSED_HOURS, WALLET_DAILY_LIMIT, INSUFFICIENT_BALANCE);
    // PERSON_SUSPENDED, NO_PERSONAL_ACCOUNT, INVALID_AMOUNT, FORBIDDEN, NOT_FOUND, NOT_PENDING.
    let mut w = World::new();
    w.inst(H1);
    for p in ["S", "R", "N"] {
        w.employee(p);
    }
    w.employee_at("X", 110101);
    w.resident("Res");
    w.fund("S", 500_000);
    w.fund("X", 10_000);
    w.bind("S", "R");
    w.bind("X", "R");
    w.bind("R", "Res");
    // WALLET_NOT_OPEN comes first, then NOT_BOUND, then the amount limit.
    assert_eq!(w.err(transfer_body("S", "R", 1_000, Acct)), WalletNotOpen);
    assert_eq!(w.err(transfer_body("S", "N", 200_001, Acct)), WalletNotOpen);
    w.open_wallet("R");
    w.open_wallet("N");
    assert_eq!(w.err(transfer_body("S", "N", 200_001, Acct)), NotBound);
    assert_eq!(
        w.err(transfer_body("S", "R", 200_001, Acct)),
        WalletAmountLimit
    );
    assert_eq!(w.err(transfer_body("S", "R", 0, Acct)), InvalidAmount);
    assert_eq!(
        w.err(transfer_body("NOBODY", "R", 100, Acct)),
        PersonNotFound
    );
    assert_eq!(
        w.err_as(person_actor("N"), transfer_body("S", "R", 100, Acct)),
        Forbidden
    );
    assert_eq!(
        w.err_as(inst_actor(H1), transfer_body("S", "R", 100, Acct)),
        Forbidden
    );
    // 2000.00 exactly: held, in neither balance.
    let v = transfer_of(&w.ok_as(person_actor("S"), transfer_body("S", "R", 200_000, Acct)));
    assert_eq!(v.status.as_str(), "pending");
    assert!(!v.cross_province);
    assert_eq!(v.expires_at, t("2025-05-21 06:00:00"));
    assert_eq!(v.sender_balances, Some((Fen(300_000), Fen::ZERO)));
    assert_eq!((w.acct("S"), w.wallet("R")), (300_000, 0));
    let t1 = v.transfer_id;
    let accept = |id| Body::TransferAccept { transfer_id: id };
    let decline = |id| Body::TransferDecline { transfer_id: id };
    assert_eq!(w.err_as(person_actor("N"), accept(t1)), Forbidden);
    assert_eq!(w.err_as(person_actor("S"), accept(t1)), Forbidden);
    assert_eq!(w.err_as(person_actor("S"), decline(t1)), Forbidden);
    assert_eq!(w.err(accept(99)), NotFound);
    assert_eq!(w.err_as(person_actor("R"), accept(99)), NotFound);
    let v = transfer_of(&w.ok_as(person_actor("R"), accept(t1)));
    assert_eq!(v.status.as_str(), "accepted");
    assert_eq!(w.wallet("R"), 200_000);
    assert_eq!(w.err(accept(t1)), NotPending);
    assert_eq!(w.err(decline(t1)), NotPending);
    // The other direction of the binding, from the wallet; the sender needs a wallet too.
    assert_eq!(
        w.err(transfer_body("R", "S", 10_000, Wallet)),
        WalletNotOpen
    );
    w.open_wallet("S");
    let t2 = w.transfer("R", "S", 10_000, Wallet);
    assert_eq!(w.wallet("R"), 190_000);
    let v = transfer_of(&w.ok_as(person_actor("S"), decline(t2)));
    assert_eq!(v.status.as_str(), "declined");
    assert_eq!(w.wallet("R"), 200_000);
    assert_eq!(w.wallet("S"), 0);
    // S's second and third of the day; then the daily limit, before the balance.
    w.transfer("S", "R", 1_000, Acct);
    w.transfer("S", "R", 1_000, Acct);
    assert_eq!(
        w.err(transfer_body("S", "R", 1_000, Wallet)),
        WalletDailyLimit
    );
    assert_eq!(
        w.err(transfer_body("S", "R", 200_001, Acct)),
        WalletAmountLimit
    );
    // Insufficient balance: whole or nothing.
    assert_eq!(w.err(transfer_body("R", "S", 1, Acct)), InsufficientBalance);
    assert_eq!(
        w.err(transfer_body("R", "S", 200_001, Wallet)),
        WalletAmountLimit
    );
    // Suspended sender; a resident's account.
    w.admin(status_body("X", PersonStatus::Suspended));
    assert_eq!(w.err(transfer_body("X", "R", 100, Acct)), PersonSuspended);
    w.admin(status_body("X", PersonStatus::Active));
    w.open_wallet("Res");
    let t3 = w.transfer("R", "Res", 5_000, Wallet);
    w.accept(t3);
    assert_eq!(
        w.err(transfer_body("Res", "R", 100, Acct)),
        NoPersonalAccount
    );
    let t4 = w.transfer("Res", "R", 2_000, Wallet);
    w.accept(t4);
    assert_eq!((w.wallet("Res"), w.wallet("R")), (3_000, 197_000));
    // Cross-province over a wallet_only binding.
    let t5 = w.transfer("X", "R", 1_000, Acct);
    assert!(w.s.transfer(t5).unwrap().cross_province);
    // Closed hours come before the daily limit, after the amount limit.
    w.at("2025-05-20 22:00:00");
    assert_eq!(
        w.err(transfer_body("S", "R", 1_000, Acct)),
        WalletClosedHours
    );
    assert_eq!(
        w.err(transfer_body("S", "R", 200_001, Acct)),
        WalletAmountLimit
    );
    // Wallet money pays the holder's settlement.
    let s = w.settle(H1, "R", 3_000, 0);
    assert_eq!((s.acct_pay, s.wallet_pay), (Fen::ZERO, Fen(3_000)));
    w.done();
}

#[test]
fn rule_15_contribution() {
    // Proves a contribution pays a 390 person's year from a bound 310 payer's account, whole
    // or nothing, once per person and year, and each of its codes.
    let mut w = World::new();
    for p in ["P", "Q", "N", "E"] {
        w.employee(p);
    }
    w.employee_at("BJ", 110101);
    w.resident("Res");
    w.resident("Res3");
    w.fund("P", 50_000);
    w.fund("Q", 50_000);
    w.fund("N", 50_000);
    w.fund("BJ", 50_000);
    w.bind("P", "Res");
    w.bind("Q", "Res");
    w.bind("P", "E");
    w.bind("BJ", "Res");
    let reply = w.ok_as(person_actor("P"), contribute_body("P", "Res", 2026, 38_000));
    let Reply::Contribution(v) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(
        (
            v.contribution_id,
            v.payer_psn_no.as_str(),
            v.psn_no.as_str()
        ),
        (1, "P", "Res")
    );
    assert_eq!(
        (v.year, v.amount, v.acct_balc),
        (2026, Fen(38_000), Fen(12_000))
    );
    assert_eq!(w.acct("Res"), 0);
    let (entries, _) = w.s.entries("P", None, 10).unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.kind, Kind::Contribution);
    assert_eq!(last.amount, -38_000);
    assert_eq!(last.counterparty.as_deref(), Some("Res"));
    assert_eq!(last.reference, "1");
    // Once per person and year, whoever pays.
    assert_eq!(w.err(contribute_body("P", "Res", 2026, 100)), AlreadyPaid);
    assert_eq!(w.err(contribute_body("Q", "Res", 2026, 100)), AlreadyPaid);
    assert_eq!(
        w.err(contribute_body("P", "Res", 2027, 12_001)),
        InsufficientBalance
    );
    w.admin(contribute_body("P", "Res", 2027, 12_000));
    assert_eq!(w.acct("P"), 0);
    assert_eq!(
        w.err(contribute_body("P", "E", 2026, 100)),
        NotResidentInsured
    );
    assert_eq!(
        w.err(contribute_body("Res", "Res3", 2026, 100)),
        NoPersonalAccount
    );
    assert_eq!(w.err(contribute_body("N", "Res", 2028, 100)), NotBound);
    assert_eq!(
        w.err(contribute_body("BJ", "Res", 2028, 100)),
        CrossProvinceNotAllowed
    );
    w.admin(status_body("Q", PersonStatus::Suspended));
    assert_eq!(
        w.err(contribute_body("Q", "Res", 2028, 100)),
        PersonSuspended
    );
    w.admin(status_body("Q", PersonStatus::Active));
    assert_eq!(w.err(contribute_body("Q", "Res", 2028, 0)), InvalidAmount);
    assert_eq!(w.err(contribute_body("Q", "Res", 1969, 100)), BadRequest);
    assert_eq!(
        w.err(contribute_body("NOBODY", "Res", 2028, 100)),
        PersonNotFound
    );
    assert_eq!(
        w.err(contribute_body("Q", "NOBODY", 2028, 100)),
        PersonNotFound
    );
    assert_eq!(
        w.err_as(person_actor("N"), contribute_body("Q", "Res", 2028, 100)),
        Forbidden
    );
    assert_eq!(
        w.err_as(inst_actor(H1), contribute_body("Q", "Res", 2028, 100)),
        Forbidden
    );
    w.done();
}

#[test]
fn rule_16_crediting() {
    // Proves crediting adds to accounts once per person and period in atomic batches, with
    // ALREADY_CREDITED, DUPLICATE_ITEM, TOO_LARGE (>10000 items), PERSON_NOT_FOUND,
    // NO_PERSONAL_ACCOUNT, INVALID_AMOUNT, INVALID_PERIOD, BAD_REQUEST and FORBIDDEN.
    let mut w = World::new();
    w.employee("A");
    w.employee("B");
    w.resident("R");
    match w.admin(credit_body("2025-05", &[("A", 12_345), ("B", 1)])) {
        Reply::Credited { count, sum } => assert_eq!((count, sum), (2, Fen(12_346))),
        other => panic!("{other:?}"),
    }
    let (entries, _) = w.s.entries("A", None, 10).unwrap();
    assert_eq!(entries[0].kind, Kind::Credit);
    assert_eq!(entries[0].reference, "2025-05");
    assert_eq!(entries[0].counterparty, None);
    // Atomic: a bad item anywhere refuses the whole batch, naming the item.
    let r = w.rejection(credit_body("2025-06", &[("A", 100), ("B", 100), ("A", 5)]));
    assert_eq!((r.code, r.item), (DuplicateItem, Some(2)));
    let r = w.rejection(credit_body("2025-06", &[("A", 100), ("NOBODY", 100)]));
    assert_eq!((r.code, r.item), (PersonNotFound, Some(1)));
    let r = w.rejection(credit_body("2025-06", &[("A", 100), ("R", 100)]));
    assert_eq!((r.code, r.item), (NoPersonalAccount, Some(1)));
    let r = w.rejection(credit_body("2025-06", &[("A", 100), ("B", 0)]));
    assert_eq!((r.code, r.item), (InvalidAmount, Some(1)));
    let r = w.rejection(credit_body("2025-06", &[("A", 10_000_000_000)]));
    assert_eq!((r.code, r.item), (InvalidAmount, Some(0)));
    let r = w.rejection(credit_body("2025-06", &[("A", 100), ("B", 7), ("B2", 1)]));
    assert_eq!((r.code, r.item), (PersonNotFound, Some(2)));
    let r = w.rejection(credit_body("2025-05", &[("B", 100)]));
    assert_eq!((r.code, r.item), (AlreadyCredited, Some(0)));
    let r = w.rejection(credit_body("2025-06", &[("A", 100), ("B", 100), ("A", 1)]));
    assert_eq!(r.code, DuplicateItem);
    assert_eq!((w.acct("A"), w.acct("B")), (12_345, 1));
    assert_eq!(w.err(credit_body("2025-05", &[])), BadRequest);
    // A period outside 1970-01..=9999-12.
    assert_eq!(
        w.err(Body::Credit {
            period: Period(1969 * 12 + 11),
            items: vec![CreditItem {
                psn_no: psn("A"),
                amount: Fen(1),
            }],
        }),
        InvalidPeriod
    );
    // 10,000 items is the most; 10,001 is TOO_LARGE (checked before any lookup).
    let items: Vec<(String, u64)> = (0..10_001).map(|n| (format!("Q{n}"), 1)).collect();
    let refs: Vec<(&str, u64)> = items.iter().map(|(p, a)| (p.as_str(), *a)).collect();
    assert_eq!(w.err(credit_body("2025-06", &refs)), TooLarge);
    let r = w.rejection(credit_body("2025-06", &refs[..10_000]));
    assert_eq!((r.code, r.item), (PersonNotFound, Some(0)));
    let body = credit_body("2025-06", &[("A", 1)]);
    assert_eq!(w.err_as(person_actor("A"), body.clone()), Forbidden);
    assert_eq!(w.err_as(inst_actor(H1), body.clone()), Forbidden);
    // The next month, in a batch of its own.
    w.admin(credit_body("2025-06", &[("A", 55)]));
    assert_eq!(w.acct("A"), 12_400);
    w.done();
}

#[test]
fn rule_17_statistics() {
    // Proves the statistics: each settlement with acct_mulaid_pay > 0 and each contribution is
    // one person-time, same_pool or cross_pool; each accepted transfer one 笔 in the month it
    // was accepted, in/cross province; pending/declined/returned ones not; a cancellation takes
    // a settlement out of its own month; prov filters by receiver / sender.
    let mut w = World::new();
    w.inst(H1);
    w.resident("R");
    w.enrol("R2", Insutype::Resident, 441900);
    w.employee_at("G1", 440106);
    w.employee_at("G2", 441900);
    w.employee_at("X", 110101);
    w.fund("G1", 20_000);
    w.fund("G2", 10_000);
    w.fund("X", 10_000);
    w.bind("G1", "R");
    w.bind("G2", "R");
    w.bind("X", "R");
    w.bind("G2", "R2");
    let s1 = w.settle(H1, "R", 3_000, 0);
    assert_eq!(s1.mulaid_details, vec![(psn("G1"), Fen(3_000))]);
    w.at("2025-05-21 10:00:00");
    let s2 = w.settle(H1, "R", 20_000, 0);
    assert_eq!(
        s2.mulaid_details,
        vec![(psn("G1"), Fen(17_000)), (psn("G2"), Fen(3_000))]
    );
    // A settlement no giver paid counts nowhere.
    let s3 = w.settle(H1, "R", 100_000, 0);
    assert_eq!(s3.acct_mulaid_pay, Fen(7_000));
    let s4 = w.settle(H1, "R", 100, 0);
    assert_eq!(s4.acct_mulaid_pay, Fen::ZERO);
    w.fund("G2", 6_000);
    w.admin(contribute_body("G2", "R", 2026, 5_000));
    w.admin(contribute_body("G2", "R2", 2026, 1_000));
    w.at("2025-05-22 10:00:00");
    w.open_wallet("R");
    w.fund("G2", 2_000);
    let a = w.transfer("G2", "R", 500, Acct);
    w.accept(a);
    let d = w.transfer("G2", "R", 600, Acct);
    w.admin(Body::TransferDecline { transfer_id: d });
    let b = w.transfer("X", "R", 2_000, Acct);
    w.accept(b);
    let pending = w.transfer("X", "R", 100, Acct);
    let may = w.stats("2025-05", "2025-05", None);
    assert_eq!(may.same_pool, cell(2, 4_000));
    assert_eq!(may.cross_pool, cell(3, 32_000));
    assert_eq!(may.account_draw, cell(5, 36_000));
    assert_eq!(may.in_province, cell(1, 500));
    assert_eq!(may.cross_province, cell(1, 2_000));
    assert_eq!(may.wallet_transfer, cell(2, 2_500));
    assert_eq!(may.total, cell(7, 38_500));
    // A cancellation in June takes S1 out of May.
    w.at("2025-06-02 10:00:00");
    w.admin(Body::Cancel {
        setl_id: s1.setl_id,
    });
    assert_eq!(w.status(pending), "returned");
    let may = w.stats("2025-05", "2025-05", None);
    assert_eq!(may.same_pool, cell(1, 1_000));
    assert_eq!(may.account_draw, cell(4, 33_000));
    assert_eq!(may.total, cell(6, 35_500));
    assert_eq!(w.stats("2025-06", "2025-06", None), StatsView::default());
    assert_eq!(w.stats("2025-01", "2025-12", None), may);
    assert_eq!(w.stats("2025-01", "2025-04", None), StatsView::default());
    // Province filter: draws by the receiver's province, transfers by the sender's.
    let gd = w.stats("2025-05", "2025-05", Some(44));
    assert_eq!(gd.account_draw, cell(4, 33_000));
    assert_eq!(gd.wallet_transfer, cell(1, 500));
    assert_eq!(gd.cross_province, cell(0, 0));
    let bj = w.stats("2025-05", "2025-05", Some(11));
    assert_eq!(bj.account_draw, cell(0, 0));
    assert_eq!(bj.cross_province, cell(1, 2_000));
    assert_eq!(bj.total, cell(1, 2_000));
    w.done();
}

#[test]
fn rule_18_reconciliation() {
    // Proves the per-institution per-day totals of settlements not cancelled, a later
    // cancellation taking a settlement out of its own day, and INSTITUTION_NOT_FOUND.
    let mut w = World::new();
    w.inst(H1);
    w.inst(H2);
    w.employee("A");
    w.employee("G");
    w.fund("A", 5_000);
    w.fund("G", 10_000);
    w.bind("G", "A");
    w.settle(H1, "A", 10_000, 6_000);
    w.at("2025-05-20 11:00:00");
    let s2 = w.settle(H1, "A", 5_000, 0);
    w.settle(H2, "A", 700, 0);
    w.at("2025-05-20 23:59:59");
    w.settle(H1, "A", 10_000, 0);
    let day = parse_date("2025-05-20").unwrap();
    let r = w.s.reconciliation(H1, day).unwrap();
    assert_eq!(r.setl_count, 3);
    assert_eq!(
        (r.medfee_sumamt, r.fund_pay_sumamt, r.acct_pay),
        (Fen(25_000), Fen(6_000), Fen(5_000))
    );
    assert_eq!(
        (r.wallet_pay, r.acct_mulaid_pay, r.psn_cash_pay),
        (Fen::ZERO, Fen(9_300), Fen(4_700))
    );
    assert_eq!(
        w.s.reconciliation(H2, day).unwrap().acct_mulaid_pay,
        Fen(700)
    );
    w.at("2025-05-21 00:00:00");
    let s5 = w.settle(H1, "A", 300, 0);
    w.admin(Body::Cancel {
        setl_id: s2.setl_id,
    });
    let r = w.s.reconciliation(H1, day).unwrap();
    assert_eq!(r.setl_count, 2);
    assert_eq!((r.medfee_sumamt, r.acct_pay), (Fen(20_000), Fen(4_000)));
    assert_eq!(r.acct_mulaid_pay, Fen(5_300));
    let next = w.s.reconciliation(H1, day + 1).unwrap();
    assert_eq!((next.setl_count, next.medfee_sumamt), (1, Fen(300)));
    w.admin(Body::Cancel {
        setl_id: s5.setl_id,
    });
    assert_eq!(w.s.reconciliation(H1, day + 1).unwrap(), Default::default());
    assert_eq!(w.s.reconciliation(H1, day - 1).unwrap().setl_count, 0);
    assert_eq!(
        w.s.reconciliation("HNONE", day).unwrap_err().code,
        InstitutionNotFound
    );
    w.done();
}

#[test]
fn rule_18_reconciliation_of_days_no_longer_kept() {
    // Proves: once the clock is more than 400 CST days past a day, that day's counters leave
    // memory and the day is answered from the settlements themselves, with the same totals
    // (cancellations included); a cancellation made after that is reflected too; the state
    // checks, re-encodes to a snapshot with the same hash, and a replay reaches the same state.
    let mut w = World::new();
    w.inst(H1);
    w.inst(H2);
    w.employee("A");
    w.employee("G");
    w.fund("A", 50_000);
    w.fund("G", 100_000);
    w.bind("G", "A");
    w.at("2025-05-20 12:00:00");
    let s1 = w.settle(H1, "A", 10_000, 6_000);
    w.at("2025-05-20 23:59:59");
    let s2 = w.settle(H1, "A", 5_000, 0);
    w.settle(H2, "A", 700, 0);
    w.at("2025-05-21 00:00:00");
    w.settle(H1, "A", 300, 0);
    w.admin(Body::Cancel {
        setl_id: s1.setl_id,
    });
    let day = parse_date("2025-05-20").unwrap();
    let days = [day - 1, day, day + 1];
    let before: Vec<_> = [H1, H2]
        .iter()
        .flat_map(|i| days.map(|d| w.s.reconciliation(i, d).unwrap()))
        .collect();
    let recon_bytes = |w: &World| {
        w.s.memory()
            .into_iter()
            .find(|(part, _)| *part == "reconciliation")
            .unwrap()
            .1
    };
    assert!(recon_bytes(&w) > 0);
    // On 2026-06-23 the 20th is the oldest of the 400 days kept; on the 25th, neither the
    // 20th nor the 21st is.
    w.tick("2026-06-23 12:00:00");
    assert_eq!(parse_date("2026-06-23").unwrap() - (day + 1), 398);
    assert!(recon_bytes(&w) > 0);
    w.tick("2026-06-25 12:00:00");
    assert_eq!(
        recon_bytes(&w),
        0,
        "every day of counters is older than 400 days"
    );
    let after: Vec<_> = [H1, H2]
        .iter()
        .flat_map(|i| days.map(|d| w.s.reconciliation(i, d).unwrap()))
        .collect();
    assert_eq!(after, before);
    assert_eq!(after[1].setl_count, 1, "s2 only: s1 was cancelled");
    // A cancellation of a settlement on a day no longer kept.
    w.at("2026-06-25 13:00:00");
    w.admin(Body::Cancel {
        setl_id: s2.setl_id,
    });
    assert_eq!(w.s.reconciliation(H1, day).unwrap(), Default::default());
    assert_eq!(w.s.reconciliation(H2, day).unwrap().setl_count, 1);
    // Today's counters are kept as always.
    w.settle(H2, "A", 900, 0);
    let today = parse_date("2026-06-25").unwrap();
    assert_eq!(w.s.reconciliation(H2, today).unwrap().setl_count, 1);
    let mut bytes = Vec::new();
    w.s.encode_snapshot(&mut bytes);
    let decoded = State::decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded.state_hash(), w.hash());
    w.done();
}

/// One op of every body kind, and a tick.
fn every_op() -> Vec<Op> {
    let write = |n: u32, actor: Actor, body: Body| {
        Op::Write(Command {
            msgid: mid(&format!("RT{n}")),
            time: t(T0) + i64::from(n),
            actor,
            body,
        })
    };
    let bodies = vec![
        Body::CreateToken {
            token_hash: [7; 32],
            role: Role::Institution,
            fixmedins_code: Some(code(H1)),
            psn_no: None,
        },
        Body::CreateToken {
            token_hash: [8; 32],
            role: Role::Person,
            fixmedins_code: None,
            psn_no: Some(psn("A")),
        },
        Body::RevokeToken { token_id: 3 },
        enrol_body("A", "11010519491231002X", Insutype::Resident, 110101),
        status_body("A", PersonStatus::Suspended),
        Body::RegisterInstitution {
            fixmedins_code: code(H1),
            fixmedins_name: "药店".into(),
            fixmedins_type: InstType::Pharmacy,
            admdvs: 440106,
        },
        credit_body("2025-05", &[("A", 1), ("B", 9_999_999_999)]),
        bind_body("A", "B", Relation::MaternalGrandchild),
        bind_body("A", "B", Relation::Other),
        Body::Revoke { binding_id: 9 },
        Body::Settle {
            fixmedins_code: code(H1),
            psn_no: psn("A"),
            medfee_sumamt: Fen(1_230),
            fund_pay_sumamt: Fen(230),
            acct_used: false,
        },
        Body::Cancel { setl_id: 4 },
        reverse_body("H44010600001202505201000000001"),
        Body::OpenWallet { psn_no: psn("A") },
        transfer_body("A", "B", 200_000, Wallet),
        Body::TransferAccept { transfer_id: 1 },
        Body::TransferDecline {
            transfer_id: u64::MAX,
        },
        contribute_body("A", "B", 2026, 38_000),
    ];
    let actors = [Actor::Admin, inst_actor(H1), person_actor("A")];
    let mut ops: Vec<Op> = bodies
        .into_iter()
        .enumerate()
        .map(|(n, b)| write(n as u32, actors[n % 3].clone(), b))
        .collect();
    ops.push(Op::Tick { time: -1 });
    ops.push(Op::Tick { time: i64::MAX });
    ops
}

#[test]
fn rule_19_journal_codec_and_fingerprint() {
    // Proves the journal codec round-trips every op kind byte-exactly, and the idempotency
    // fingerprint covers the body alone: not time, actor, or a token's hash.
    for op in every_op() {
        let mut buf = Vec::new();
        encode_op(&op, &mut buf);
        assert_eq!(decode_op(&buf).as_ref(), Ok(&op), "{op:?}");
        let mut again = Vec::new();
        encode_op(&decode_op(&buf).unwrap(), &mut again);
        assert_eq!(again, buf);
    }
    let fp = |b: &Body| {
        let mut v = Vec::new();
        encode_body_for_fingerprint(b, &mut v);
        v
    };
    let token = |hash: u8| Body::CreateToken {
        token_hash: [hash; 32],
        role: Role::Admin,
        fixmedins_code: None,
        psn_no: None,
    };
    assert_eq!(fp(&token(1)), fp(&token(2)));
    assert_ne!(
        fp(&settle_body(H1, "A", 100, 0)),
        fp(&settle_body(H1, "A", 101, 0))
    );

    // In the engine: the same msgid and body in the same scope (another token of the same
    // institution is the same actor) at another time replays.
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    w.fund("A", 1_000);
    let m = format!("{H1}202505201000000001");
    let op = w.op_with(&m, inst_actor(H1), settle_body(H1, "A", 300, 0));
    let first = w.apply(&op).unwrap();
    w.at("2025-05-25 10:00:00");
    w.fund("A", 1);
    let h = w.hash();
    let later = Op::Write(Command {
        msgid: mid(&m),
        time: t("2025-05-20 09:00:00"),
        actor: inst_actor(H1),
        body: settle_body(H1, "A", 300, 0),
    });
    let replay = w.apply(&later).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.reply, first.reply);
    assert_eq!(w.hash(), h);
    // A different body under the msgid is MSGID_CONFLICT.
    let other = w.op_with(&m, inst_actor(H1), settle_body(H1, "A", 301, 0));
    assert_eq!(w.apply(&other).unwrap_err().code, MsgidConflict);
    // A token's replay with another hash (a new random token) returns the first token_id.
    let tok = w.op_with("TOK1", Actor::Admin, token(1));
    let first = w.apply(&tok).unwrap();
    let tok2 = w.op_with("TOK1", Actor::Admin, token(2));
    let replay = w.apply(&tok2).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.reply, first.reply);
    assert!(w.s.token_actor(&[1; 32]).is_some());
    assert!(w.s.token_actor(&[2; 32]).is_none());
    w.done();
}

#[test]
fn rule_20_identity_masked() {
    // Proves the resident ID keeps only its first and last 4 characters and the name its first
    // character in every view and reply, and neither appears whole in any output or message.
    let mut w = World::new();
    w.inst(H1);
    let cert = "440106199001011235";
    let reply = w.admin(enrol_body("P1", cert, Insutype::Employee, 440106));
    w.employee("G");
    w.fund("P1", 100);
    w.bind("G", "P1");
    let v = w.s.person("P1").unwrap();
    assert_eq!(v.certno_masked, "4401**********1235");
    assert_eq!(v.psn_name_masked, "张**");
    let x = w.admin(enrol_body(
        "P2",
        "11010519491231002X",
        Insutype::Resident,
        110101,
    ));
    match &x {
        Reply::Enrolled(i) => assert_eq!(w.s.enrolled_view(*i).certno_masked, "1101**********002X"),
        other => panic!("{other:?}"),
    }
    let dup = w.rejection(enrol_body("P3", cert, Insutype::Employee, 440106));
    let s = w.settle(H1, "P1", 500, 0);
    let outputs = [
        format!("{reply:?}"),
        format!("{x:?}"),
        format!("{v:?}"),
        format!("{:?}", w.s.person("G").unwrap()),
        format!("{s:?}"),
        format!("{:?}", w.s.entries("P1", None, 100).unwrap()),
        format!("{dup:?} {}", dup.message()),
    ];
    for out in &outputs {
        assert!(!out.contains(cert), "{out}");
        assert!(!out.contains("11010519491231002X"), "{out}");
        assert!(!out.contains("张三丰"), "{out}");
        assert!(!out.contains("199001011"), "{out}");
    }
    w.done();
}

// ---------------------------------------------------------------------------------------------
// Edge cases
// ---------------------------------------------------------------------------------------------

#[test]
fn edge_amount_bounds() {
    // Proves 0.00 is a valid settlement amount but not a moving amount, 0.01 and 99999999.99
    // are accepted everywhere, and one fen more than 99999999.99 is INVALID_AMOUNT.
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    w.employee("G");
    let s = w.settle(H1, "A", 0, 0);
    assert_eq!(
        (s.medfee_sumamt, s.psn_part_amt, s.psn_cash_pay),
        (Fen::ZERO, Fen::ZERO, Fen::ZERO)
    );
    assert!(s.mulaid_details.is_empty());
    let s = w.settle(H1, "A", 1, 0);
    assert_eq!(s.psn_cash_pay, Fen(1));
    assert_eq!(w.err(credit_body("2025-05", &[("A", 0)])), InvalidAmount);
    assert_eq!(
        w.err(credit_body("2025-05", &[("A", 10_000_000_000)])),
        InvalidAmount
    );
    w.admin(credit_body("2025-05", &[("A", 9_999_999_999), ("G", 1)]));
    assert_eq!(w.acct("A"), 9_999_999_999);
    let s = w.settle(H1, "A", 9_999_999_999, 0);
    assert_eq!((s.acct_pay, s.acct_balc), (Fen(9_999_999_999), Fen::ZERO));
    let s = w.settle(H1, "A", 9_999_999_999, 9_999_999_999);
    assert_eq!(s.psn_part_amt, Fen::ZERO);
    assert_eq!(
        w.err(settle_body(H1, "A", 10_000_000_000, 0)),
        InvalidAmount
    );
    // A transfer of one fen; of zero.
    w.bind("G", "A");
    w.open_wallet("A");
    let id = w.transfer("G", "A", 1, Acct);
    w.accept(id);
    assert_eq!(w.wallet("A"), 1);
    assert_eq!(w.err(transfer_body("G", "A", 0, Acct)), InvalidAmount);
    w.done();
}

#[test]
fn edge_cash_only_settlement() {
    // Proves acct_used false pays everything in cash with balances and givers untouched and no
    // entries, and a person with no money at all is paid in cash (never a rejection).
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    w.employee("G");
    w.fund("A", 1_000);
    w.fund("G", 1_000);
    w.bind("G", "A");
    let mut body = settle_body(H1, "A", 800, 100);
    if let Body::Settle { acct_used, .. } = &mut body {
        *acct_used = false;
    }
    let reply = w.admin(body);
    let s = w.settled(&reply);
    assert_eq!(s.psn_cash_pay, Fen(700));
    assert_eq!(
        (s.acct_pay, s.wallet_pay, s.acct_mulaid_pay),
        (Fen::ZERO, Fen::ZERO, Fen::ZERO)
    );
    assert_eq!((s.acct_balc, w.acct("G")), (Fen(1_000), 1_000));
    assert_eq!(w.entry_kinds("A"), vec![("credit", 1_000)]);
    w.employee("Poor");
    let s = w.settle(H1, "Poor", 800, 100);
    assert_eq!(s.psn_cash_pay, Fen(700));
    assert!(w.s.entries("Poor", None, 10).unwrap().0.is_empty());
    w.done();
}

#[test]
fn edge_zero_balance_giver_skipped() {
    // Proves a giver with nothing is skipped and absent from mulaid_details.
    let mut w = World::new();
    w.inst(H1);
    for p in ["A", "G1", "G2", "G3"] {
        w.employee(p);
    }
    w.fund("G2", 300);
    w.bind("G1", "A");
    w.bind("G2", "A");
    w.bind("G3", "A");
    let s = w.settle(H1, "A", 1_000, 0);
    assert_eq!(s.mulaid_details, vec![(psn("G2"), Fen(300))]);
    assert_eq!((s.acct_mulaid_pay, s.psn_cash_pay), (Fen(300), Fen(700)));
    assert!(w.entry_kinds("G1").is_empty());
    w.done();
}

#[test]
fn edge_seven_givers() {
    // Proves seven givers are all drawn in priority order and an eighth binding to the receiver
    // is BINDING_LIMIT.
    let mut w = World::new();
    w.inst(H1);
    w.resident("R");
    let mut want = Vec::new();
    for n in 1..=7u64 {
        let g = format!("G{n}");
        w.employee(&g);
        w.fund(&g, n * 100);
        w.bind(&g, "R");
        want.push((psn(&g), Fen(n * 100)));
    }
    let priorities: Vec<u32> =
        w.s.person("R")
            .unwrap()
            .bindings_received
            .iter()
            .map(|b| b.priority)
            .collect();
    assert_eq!(priorities, vec![1, 2, 3, 4, 5, 6, 7]);
    w.employee("G8");
    assert_eq!(w.err(bind_body("G8", "R", Relation::Sibling)), BindingLimit);
    let s = w.settle(H1, "R", 3_000, 0);
    assert_eq!(s.mulaid_details, want);
    assert_eq!((s.acct_mulaid_pay, s.psn_cash_pay), (Fen(2_800), Fen(200)));
    w.admin(Body::Cancel { setl_id: s.setl_id });
    for n in 1..=7u64 {
        assert_eq!(w.acct(&format!("G{n}")), n * 100);
    }
    w.done();
}

#[test]
fn edge_cancel_after_revoke() {
    // Proves a cancellation after the binding was revoked (and another made) returns the money
    // to the giver who paid, not to the new one.
    let mut w = World::new();
    w.inst(H1);
    for p in ["A", "G", "H"] {
        w.employee(p);
    }
    w.fund("G", 1_000);
    w.fund("H", 1_000);
    let b = w.bind("G", "A");
    let s = w.settle(H1, "A", 600, 0);
    w.revoke(b);
    w.bind("H", "A");
    let reply = w.admin(Body::Cancel { setl_id: s.setl_id });
    assert_eq!(reply, Reply::Cancelled(s.setl_id as u32 - 1));
    assert_eq!((w.acct("G"), w.acct("H")), (1_000, 1_000));
    // Bound again later: drawn as a new binding, last in priority.
    w.bind("G", "A");
    let s = w.settle(H1, "A", 1_500, 0);
    assert_eq!(
        s.mulaid_details,
        vec![(psn("H"), Fen(1_000)), (psn("G"), Fen(500))]
    );
    w.done();
}

#[test]
fn edge_transfer_expires_at_0600_next_day() {
    // Proves a pending transfer is still pending at 05:59:59 the next day and returned by a
    // tick at exactly 06:00:00, status returned, money back at its source, the return dated
    // at the expiry.
    let mut w = World::new();
    for p in ["S", "R"] {
        w.employee(p);
    }
    w.fund("S", 10_000);
    w.bind("S", "R");
    w.open_wallet("R");
    w.open_wallet("S");
    w.at("2025-05-20 21:59:59");
    let a = w.transfer("S", "R", 1_000, Acct);
    assert_eq!(
        w.s.transfer(a).unwrap().expires_at,
        t("2025-05-21 06:00:00")
    );
    assert_eq!(w.tick("2025-05-21 05:59:59"), 0);
    assert_eq!(w.status(a), "pending");
    assert_eq!(w.acct("S"), 9_000);
    assert_eq!(w.tick("2025-05-21 06:00:00"), 1);
    assert_eq!(w.status(a), "returned");
    assert_eq!((w.acct("S"), w.wallet("R")), (10_000, 0));
    let (entries, _) = w.s.entries("S", None, 10).unwrap();
    let last = entries.last().unwrap();
    assert_eq!((last.kind, last.amount), (Kind::WalletReturn, 1_000));
    assert_eq!(last.time, t("2025-05-21 06:00:00"));
    assert_eq!(w.err(Body::TransferAccept { transfer_id: a }), NotPending);
    // A transfer from the wallet returns to the wallet; one made at 06:00:00 lives a day.
    let id = w.transfer("S", "R", 2_000, Acct);
    w.accept(id);
    let b = w.transfer("R", "S", 500, Wallet);
    assert_eq!(
        w.s.transfer(b).unwrap().expires_at,
        t("2025-05-22 06:00:00")
    );
    assert_eq!(w.tick("2025-05-22 06:00:01"), 1);
    assert_eq!((w.status(b), w.wallet("R")), ("returned", 2_000));
    assert_eq!(
        w.stats("2025-05", "2025-05", None).wallet_transfer,
        cell(1, 2_000)
    );
    w.done();
}

#[test]
fn edge_accept_at_0559_next_day() {
    // Proves accepting is allowed in closed hours (creating is not): a transfer made on the
    // last day of May and accepted at 05:59:59 on 1 June succeeds and counts in June.
    let mut w = World::new();
    w.employee("S");
    w.employee("R");
    w.fund("S", 10_000);
    w.bind("S", "R");
    w.open_wallet("R");
    w.at("2025-05-31 21:00:00");
    let id = w.transfer("S", "R", 1_000, Acct);
    w.at("2025-06-01 05:59:59");
    assert_eq!(w.err(transfer_body("S", "R", 1, Acct)), WalletClosedHours);
    let v = transfer_of(&w.ok_as(person_actor("R"), Body::TransferAccept { transfer_id: id }));
    assert_eq!(v.status.as_str(), "accepted");
    assert_eq!(w.wallet("R"), 1_000);
    assert_eq!(
        w.stats("2025-05", "2025-05", None).wallet_transfer,
        cell(0, 0)
    );
    assert_eq!(
        w.stats("2025-06", "2025-06", None).in_province,
        cell(1, 1_000)
    );
    // The 06:00 expiry finds it accepted and leaves it.
    assert_eq!(w.tick("2025-06-01 06:00:00"), 0);
    assert_eq!(w.status(id), "accepted");
    w.done();
}

#[test]
fn edge_daily_limit_counts_every_created_transfer() {
    // Proves the fourth transfer of a CST day is WALLET_DAILY_LIMIT even when earlier ones were
    // declined or returned, refused ones do not count, and the next day starts afresh.
    let mut w = World::new();
    for p in ["S", "R", "Q"] {
        w.employee(p);
    }
    w.fund("S", 100_000);
    w.bind("S", "R");
    w.bind("S", "Q");
    w.open_wallet("R");
    w.open_wallet("Q");
    assert_eq!(
        w.err(transfer_body("S", "R", 200_001, Acct)),
        WalletAmountLimit
    );
    let a = w.transfer("S", "R", 100, Acct);
    w.admin(Body::TransferDecline { transfer_id: a });
    let b = w.transfer("S", "Q", 100, Acct);
    w.admin(Body::TransferDecline { transfer_id: b });
    w.transfer("S", "R", 100, Acct);
    assert_eq!(w.err(transfer_body("S", "Q", 100, Acct)), WalletDailyLimit);
    // Other senders are not affected.
    w.fund("R", 100);
    w.open_wallet("S");
    w.transfer("R", "S", 100, Acct);
    w.at("2025-05-21 06:00:00");
    w.transfer("S", "Q", 100, Acct);
    w.done();
}

#[test]
fn edge_closed_hours_boundaries() {
    // Proves 21:59:59 and 06:00:00 are open, 22:00:00 and 05:59:59 WALLET_CLOSED_HOURS.
    let mut w = World::new();
    w.employee("S");
    w.employee("R");
    w.fund("S", 10_000);
    w.bind("S", "R");
    w.open_wallet("R");
    w.at("2025-05-20 21:59:59");
    w.transfer("S", "R", 100, Acct);
    w.at("2025-05-20 22:00:00");
    assert_eq!(w.err(transfer_body("S", "R", 100, Acct)), WalletClosedHours);
    w.at("2025-05-21 00:00:00");
    assert_eq!(w.err(transfer_body("S", "R", 100, Acct)), WalletClosedHours);
    w.at("2025-05-21 05:59:59");
    assert_eq!(w.err(transfer_body("S", "R", 100, Acct)), WalletClosedHours);
    w.at("2025-05-21 06:00:00");
    w.transfer("S", "R", 100, Acct);
    w.done();
}

#[test]
fn edge_priority_renumbering_after_revoke() {
    // Proves that when a binding is revoked the receiver's remaining givers are renumbered
    // 1, 2, … in the order their bindings were made, and drawn in that order.
    let mut w = World::new();
    w.inst(H1);
    w.resident("R");
    let mut ids = Vec::new();
    for g in ["G1", "G2", "G3", "G4"] {
        w.employee(g);
        w.fund(g, 100);
        ids.push(w.bind(g, "R"));
    }
    let prio = |w: &World| -> Vec<(String, u32)> {
        w.s.person("R")
            .unwrap()
            .bindings_received
            .iter()
            .map(|b| (b.giver_psn_no.to_string(), b.priority))
            .collect()
    };
    w.revoke(ids[1]);
    assert_eq!(
        prio(&w),
        vec![("G1".into(), 1), ("G3".into(), 2), ("G4".into(), 3)]
    );
    assert_eq!(w.s.binding(ids[2]).unwrap().priority, 2);
    assert_eq!(w.s.binding(ids[1]).unwrap().priority, 0);
    w.revoke(ids[0]);
    w.bind("G1", "R");
    assert_eq!(
        prio(&w),
        vec![("G3".into(), 1), ("G4".into(), 2), ("G1".into(), 3)]
    );
    let s = w.settle(H1, "R", 250, 0);
    assert_eq!(
        s.mulaid_details,
        vec![
            (psn("G3"), Fen(100)),
            (psn("G4"), Fen(100)),
            (psn("G1"), Fen(50))
        ]
    );
    w.done();
}

#[test]
fn edge_reversal_before_and_after_settlement() {
    // Proves a reversal that arrives before its settlement blocks it (late copy REVERSED, no
    // money moves), one after it cancels it, and reversing a settlement cancelled by a cancel
    // request answers cancelled without returning anything twice.
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    w.fund("A", 1_000);
    let early = format!("{H1}202505201000000001");
    match w.ok_as(inst_actor(H1), reverse_body(&early)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Blocked),
        other => panic!("{other:?}"),
    }
    let late = w.op_with(&early, inst_actor(H1), settle_body(H1, "A", 100, 0));
    assert_eq!(w.apply(&late).unwrap_err().code, Reversed);
    assert_eq!(w.acct("A"), 1_000);
    // After: cancelled.
    let m = format!("{H1}202505201000000002");
    let op = w.op_with(&m, inst_actor(H1), settle_body(H1, "A", 100, 0));
    w.apply(&op).unwrap();
    w.ok_as(inst_actor(H1), reverse_body(&m));
    assert_eq!(w.acct("A"), 1_000);
    // Cancelled by a cancel request first, then reversed.
    let m3 = format!("{H1}202505201000000003");
    let op = w.op_with(&m3, inst_actor(H1), settle_body(H1, "A", 400, 0));
    let reply = w.apply(&op).unwrap().reply;
    let s = w.settled(&reply);
    w.admin(Body::Cancel { setl_id: s.setl_id });
    assert_eq!(w.acct("A"), 1_000);
    match w.ok_as(inst_actor(H1), reverse_body(&m3)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Cancelled),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.acct("A"), 1_000);
    assert_eq!(w.err(Body::Cancel { setl_id: s.setl_id }), AlreadyCancelled);
    // Not reversible: a credit. An institution naming the admin's msgid, or another
    // institution's, finds nothing in its own scope: it blocks that text there and touches
    // nothing else.
    let c = w.op_with("CREDIT1", Actor::Admin, credit_body("2025-05", &[("A", 1)]));
    w.apply(&c).unwrap();
    assert_eq!(w.err(reverse_body("CREDIT1")), NotReversible);
    for (actor, omsgid) in [(inst_actor(H1), "CREDIT1"), (inst_actor(H2), m3.as_str())] {
        match w.ok_as(actor, reverse_body(omsgid)) {
            Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Blocked),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(w.acct("A"), 1_001);
    assert_eq!(w.err(reverse_body("CREDIT1")), NotReversible);
    w.done();
}

#[test]
fn msgid_scopes() {
    // Proves API.md's msgid scopes: an institution whose code is a prefix of another's can
    // neither cancel nor block the other's settlements; a person's msgid does not use up an
    // institution's; two institutions may use the same msgid; replays and MSGID_CONFLICT hold
    // within a scope; an admin reverses in an institution's scope by naming it (an unknown code
    // is 404), and an institution may not name another's.
    let mut w = World::new();
    const SHORT: &str = "H4401";
    for c in [SHORT, H1, H2] {
        w.inst(c);
    }
    w.employee("A");
    w.fund("A", 10_000);
    let m1 = format!("{H1}202612070800000099");
    let settle = w.op_with(&m1, inst_actor(H1), settle_body(H1, "A", 1_000, 0));
    let first = w.apply(&settle).unwrap().reply;
    assert_eq!(w.acct("A"), 9_000);
    // The prefix-coded institution reverses "the same" msgid: only its own scope is touched.
    match w.ok_as(inst_actor(SHORT), reverse_body(&m1)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Blocked),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.acct("A"), 9_000);
    assert!(!w.s.settlement(1).unwrap().cancelled);
    // …and blocking an unseen msgid of H1's in its own scope does not block H1.
    let m2 = format!("{H1}202612070800000100");
    w.ok_as(inst_actor(SHORT), reverse_body(&m2));
    let next = w.op_with(&m2, inst_actor(H1), settle_body(H1, "A", 500, 0));
    assert!(!w.apply(&next).unwrap().replayed);
    assert_eq!(w.acct("A"), 8_500);
    // A person's write with an institution's msgid is another request.
    let m3 = format!("{H1}202612070900000078");
    let wallet = w.op_with(
        &m3,
        person_actor("A"),
        Body::OpenWallet { psn_no: psn("A") },
    );
    w.apply(&wallet).unwrap();
    let his = w.op_with(&m3, inst_actor(H1), settle_body(H1, "A", 100, 0));
    assert!(!w.apply(&his).unwrap().replayed);
    assert!(w.s.msgid_known(MsgidScope::Person("A"), &m3));
    assert!(w.s.msgid_known(MsgidScope::Institution(H1), &m3));
    assert!(!w.s.msgid_known(MsgidScope::Admin, &m3));
    // Two institutions, one msgid, two settlements; each replays its own.
    let h2 = w.op_with(&m1, inst_actor(H2), settle_body(H2, "A", 200, 0));
    let h2_first = w.apply(&h2).unwrap();
    assert!(!h2_first.replayed);
    assert_ne!(h2_first.reply, first);
    let again = w.apply(&settle).unwrap();
    assert!(again.replayed);
    assert_eq!(again.reply, first);
    // Within a scope, another body under the same msgid is a conflict.
    let other = w.op_with(&m1, inst_actor(H1), settle_body(H1, "A", 999, 0));
    assert_eq!(w.apply(&other).unwrap_err().code, MsgidConflict);
    // An admin cancels H1's settlement by naming H1; its own scope does not hold m1.
    match w.ok_as(Actor::Admin, reverse_body(&m1)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Blocked),
        other => panic!("{other:?}"),
    }
    assert!(!w.s.settlement(1).unwrap().cancelled);
    match w.ok_as(Actor::Admin, reverse_in(&m1, H1)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Cancelled),
        other => panic!("{other:?}"),
    }
    assert!(w.s.settlement(1).unwrap().cancelled);
    // H2's settlement under the same msgid stands.
    assert!(!w.s.settlement(4).unwrap().cancelled);
    assert_eq!(
        w.err_as(Actor::Admin, reverse_in(&m1, "H9")),
        InstitutionNotFound
    );
    assert_eq!(w.err_as(inst_actor(H2), reverse_in(&m1, H1)), Forbidden);
    assert_eq!(w.err_as(Actor::Admin, reverse_in(&m1, "H-1")), BadRequest);
    // An institution may name its own scope; the reversal may then not name itself.
    match w.ok_as(inst_actor(H2), reverse_in(&m1, H2)) {
        Reply::Reversal { result, .. } => assert_eq!(result, ReversalResult::Cancelled),
        other => panic!("{other:?}"),
    }
    let own = w.op_with("SELF2", inst_actor(H2), reverse_in("SELF2", H2));
    assert_eq!(w.apply(&own).unwrap_err().code, BadRequest);
    // An admin naming H2 may reuse the text of its own msgid: another scope, another msgid.
    let cross = w.op_with("SELF3", Actor::Admin, reverse_in("SELF3", H2));
    assert!(!w.apply(&cross).unwrap().replayed);
    w.done();
}

#[test]
fn edge_replay_after_state_change() {
    // Proves a msgid replay answers `replayed: true` and the first reply even after the state
    // changed: a settlement after its cancellation, a binding after its revocation, a transfer
    // after acceptance; and a rejected write's msgid may be reused.
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    w.employee("G");
    w.fund("A", 1_000);
    w.fund("G", 1_000);
    let setl = w.op_with("SETL1", Actor::Admin, settle_body(H1, "A", 1_500, 0));
    let first = w.apply(&setl).unwrap();
    let view = w.settled(&first.reply);
    assert_eq!(view.acct_pay, Fen(1_000));
    w.admin(Body::Cancel {
        setl_id: view.setl_id,
    });
    let h = w.hash();
    let again = w.apply(&setl).unwrap();
    assert!(again.replayed);
    assert_eq!(again.reply, first.reply);
    assert_eq!(w.hash(), h);
    let replayed = w.settled(&again.reply);
    assert_eq!(
        (replayed.acct_pay, replayed.acct_balc, replayed.psn_cash_pay),
        (Fen(1_000), Fen::ZERO, Fen(500))
    );
    // A binding replayed after its revocation: the reply as it was (active, priority 1).
    let bind = w.op_with("BIND1", Actor::Admin, bind_body("G", "A", Relation::Spouse));
    let first = w.apply(&bind).unwrap();
    w.revoke(1);
    let again = w.apply(&bind).unwrap();
    assert!(again.replayed);
    assert_eq!(again.reply, first.reply);
    match &again.reply {
        Reply::Bound {
            binding,
            priority,
            active,
        } => {
            let v = w.s.bound_view(*binding, *priority, *active);
            assert_eq!((v.active, v.priority), (true, 1));
        }
        other => panic!("{other:?}"),
    }
    // A transfer replayed after acceptance: still the creation's reply.
    w.bind("G", "A");
    w.open_wallet("A");
    let tr = w.op_with("TR1", Actor::Admin, transfer_body("G", "A", 100, Acct));
    let first = w.apply(&tr).unwrap();
    let id = transfer_of(&first.reply).transfer_id;
    w.accept(id);
    let again = w.apply(&tr).unwrap();
    assert!(again.replayed);
    assert_eq!(transfer_of(&again.reply).status.as_str(), "pending");
    assert_eq!(w.wallet("A"), 100);
    // A rejected write does not consume its msgid: the corrected request reuses it.
    let bad = w.op_with("FIX1", Actor::Admin, settle_body(H1, "A", 100, 200));
    assert_eq!(w.apply(&bad).unwrap_err().code, FundExceedsMedfee);
    assert!(!w.s.msgid_known(MsgidScope::Admin, "FIX1"));
    let good = w.op_with("FIX1", Actor::Admin, settle_body(H1, "A", 200, 100));
    assert!(!w.apply(&good).unwrap().replayed);
    assert!(w.s.msgid_known(MsgidScope::Admin, "FIX1"));
    // …and the rejected body under it is now a conflict.
    assert_eq!(w.apply(&bad).unwrap_err().code, MsgidConflict);
    w.done();
}

#[test]
fn edge_expiry_undone_by_rejected_write() {
    // Proves an expiry that falls due during a write that is then rejected is undone with it:
    // the state hash is unchanged (also with an already accepted transfer due in the queue)
    // and the transfer stays pending until a later applied op returns it, dated at its expiry.
    let mut w = World::new();
    w.inst(H1);
    w.employee("S");
    w.employee("R");
    w.fund("S", 10_000);
    w.bind("S", "R");
    w.open_wallet("R");
    let done = w.transfer("S", "R", 300, Acct);
    w.accept(done);
    let id = w.transfer("S", "R", 1_000, Acct);
    w.at("2025-05-21 07:00:00");
    // Rejections of several kinds, each after the expiry point (World::apply checks the hash).
    assert_eq!(w.err(settle_body(H1, "NOBODY", 100, 0)), PersonNotFound);
    assert_eq!(
        w.err(transfer_body("S", "R", 9_701, Acct)),
        InsufficientBalance
    );
    assert_eq!(w.err(Body::TransferAccept { transfer_id: id }), NotPending);
    assert_eq!(w.status(id), "pending");
    assert_eq!(w.acct("S"), 8_700);
    assert_eq!(w.s.clock(), t(T0));
    w.done();
    // The next applied write sees the money returned first.
    let v = transfer_of(&w.admin(transfer_body("S", "R", 9_700, Acct)));
    assert_eq!(v.sender_balances, Some((Fen::ZERO, Fen::ZERO)));
    assert_eq!(w.status(id), "returned");
    let (entries, _) = w.s.entries("S", None, 100).unwrap();
    let ret = entries
        .iter()
        .find(|e| e.kind == Kind::WalletReturn)
        .unwrap();
    assert_eq!(ret.time, t("2025-05-21 06:00:00"));
    w.done();
}

#[test]
fn edge_crediting_periods() {
    // Proves crediting a period twice is ALREADY_CREDITED, and periods far apart (more than 64
    // months) and out of order, back-filled afterwards, are remembered exactly.
    let mut w = World::new();
    w.employee("A");
    let credit =
        |w: &mut World, label: &str| w.try_as(Actor::Admin, credit_body(label, &[("A", 1)]));
    let mut done: Vec<&str> = Vec::new();
    let order = [
        "2000-01", "2025-05", "2000-02", "2010-06", "2025-04", "2020-01", "2019-12", "2019-11",
        "2030-09", "2025-06", "2036-02", "1970-01", "9999-12", "2030-08",
    ];
    for label in order {
        credit(&mut w, label).unwrap_or_else(|r| panic!("{label}: {r:?}"));
        done.push(label);
        for d in &done {
            assert_eq!(credit(&mut w, d).unwrap_err().code, AlreadyCredited, "{d}");
        }
    }
    assert_eq!(w.acct("A"), order.len() as u64);
    // Neighbours of every credited period are still free (checked without applying).
    let mut probe = 0;
    for label in order {
        let p = period(label).0;
        for q in [p.saturating_sub(1), p + 1] {
            let free = Period(q);
            if done.iter().any(|d| period(d) == free) || q < period("1970-01").0 {
                continue;
            }
            if q > period("9999-12").0 {
                continue;
            }
            let before = w.hash();
            let r = w.s.apply(&Op::Write(Command {
                msgid: mid(&format!("PROBE{probe}")),
                time: w.now,
                actor: Actor::Admin,
                body: Body::Credit {
                    period: free,
                    items: vec![CreditItem {
                        psn_no: psn("A"),
                        amount: Fen(1),
                    }],
                },
            }));
            probe += 1;
            assert!(r.is_ok(), "{free:?} should be free: {r:?}");
            assert_ne!(before, w.hash());
            done.push(Box::leak(free.to_string().into_boxed_str()));
        }
    }
    for d in &done {
        assert_eq!(credit(&mut w, d).unwrap_err().code, AlreadyCredited, "{d}");
    }
    w.done();
}

#[test]
fn edge_tokens_roles_and_clock() {
    // Proves the token endpoints (create per role, 404 for a missing scope, BAD_REQUEST for a
    // wrong combination, FORBIDDEN for non-admins, revoke and NOT_FOUND), and that a tick or a
    // write before the engine clock is INVALID_TIME while an equal time is fine.
    let mut w = World::new();
    w.inst(H1);
    w.employee("A");
    let token = |role: Role, inst: Option<&str>, p: Option<&str>, h: u8| Body::CreateToken {
        token_hash: [h; 32],
        role,
        fixmedins_code: inst.map(code),
        psn_no: p.map(psn),
    };
    assert_eq!(
        w.admin(token(Role::Institution, Some(H1), None, 1)),
        Reply::TokenCreated { token_id: 1 }
    );
    w.admin(token(Role::Person, None, Some("A"), 2));
    w.admin(token(Role::Admin, None, None, 3));
    assert_eq!(w.s.token_actor(&[1; 32]), Some((1, inst_actor(H1))));
    assert_eq!(w.s.token_actor(&[2; 32]), Some((2, person_actor("A"))));
    assert_eq!(w.s.token_actor(&[3; 32]), Some((3, Actor::Admin)));
    assert_eq!(
        w.err(token(Role::Institution, Some("HNONE"), None, 4)),
        InstitutionNotFound
    );
    assert_eq!(
        w.err(token(Role::Person, None, Some("NOBODY"), 4)),
        PersonNotFound
    );
    assert_eq!(w.err(token(Role::Person, Some(H1), None, 4)), BadRequest);
    assert_eq!(w.err(token(Role::Admin, None, Some("A"), 4)), BadRequest);
    assert_eq!(
        w.err_as(inst_actor(H1), token(Role::Admin, None, None, 4)),
        Forbidden
    );
    assert_eq!(
        w.err_as(person_actor("A"), Body::RevokeToken { token_id: 1 }),
        Forbidden
    );
    w.admin(Body::RevokeToken { token_id: 1 });
    assert_eq!(w.s.token_actor(&[1; 32]), None);
    assert_eq!(w.err(Body::RevokeToken { token_id: 9 }), NotFound);
    // The clock: an earlier tick or write is INVALID_TIME; the same second is accepted.
    let early = Op::Tick { time: t(T0) - 1 };
    assert_eq!(w.apply(&early).unwrap_err().code, InvalidTime);
    assert_eq!(w.tick(T0), 0);
    w.at("2025-05-20 09:59:59");
    assert_eq!(w.err(status_body("A", PersonStatus::Active)), InvalidTime);
    w.at(T0);
    w.admin(status_body("A", PersonStatus::Active));
    w.done();
}

#[test]
fn compact_replies_are_the_views_of_their_moment() {
    // Proves: an enrolment's reply (`Reply::Enrolled`) renders the person exactly as
    // `person_view` showed it right after the enrolment, and stays so after the person's
    // balances, wallet, status and bindings change; a binding's and a revocation's reply
    // (`Reply::Bound`) render the binding as it was at that moment, whatever happens later.
    let mut w = World::new();
    w.inst(H1);
    for (p, insutype, admdvs) in [
        ("G", Insutype::Employee, 440106),
        ("A", Insutype::Employee, 440106),
        ("R", Insutype::Resident, 110101),
    ] {
        w.certs += 1;
        let cert = certno(w.certs);
        let Reply::Enrolled(i) = w.admin(enrol_body(p, &cert, insutype, admdvs)) else {
            panic!("enrolment reply")
        };
        let enrolled = w.s.enrolled_view(i);
        assert_eq!(enrolled, w.s.person(p).unwrap(), "{p}");
    }
    let views: Vec<PersonView> = ["G", "A", "R"]
        .iter()
        .map(|p| w.s.person(p).unwrap())
        .collect();
    let bound = |w: &World, reply: &Reply| match *reply {
        Reply::Bound {
            binding,
            priority,
            active,
        } => w.s.bound_view(binding, priority, active),
        ref other => panic!("{other:?}"),
    };
    let r1 = w.admin(bind_body("G", "R", Relation::Child));
    assert_eq!(bound(&w, &r1), w.s.binding(1).unwrap());
    let r2 = w.admin(bind_body("A", "R", Relation::Child));
    assert_eq!(bound(&w, &r2), w.s.binding(2).unwrap());
    assert_eq!(bound(&w, &r2).priority, 2);
    let before_revoke = w.s.binding(1).unwrap();
    let r3 = w.admin(Body::Revoke { binding_id: 1 });
    assert_eq!(
        bound(&w, &r3),
        BindingView {
            active: false,
            ..before_revoke.clone()
        }
    );
    // Later changes leave the remembered replies as they were.
    w.fund("G", 10_000);
    w.open_wallet("R");
    w.admin(status_body("A", PersonStatus::Suspended));
    assert_eq!(bound(&w, &r1), before_revoke);
    assert_eq!(bound(&w, &r2).priority, 2);
    assert_eq!(w.s.binding(2).unwrap().priority, 1);
    for (i, v) in views.iter().enumerate() {
        assert_eq!(&w.s.enrolled_view(i as u32), v);
    }
    w.done();
}
