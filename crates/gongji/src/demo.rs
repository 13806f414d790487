//! `gongji demo`: one family through the engine, step by step, in memory.
//!
//! Identities are printed as the API shows them (masked); the run is deterministic, so the
//! state hash at the end is always the same.

use anyhow::{anyhow, Context, Result};
use gongji_core::certno::certno_with_check;
use gongji_core::time::{cst_day, format_cst, parse_cst, parse_period};
use gongji_core::views::{BindingView, PersonView, SettlementView};
use gongji_core::{
    Actor, Body, Command, CreditItem, Fen, InstCode, InstType, Insutype, Msgid, Op, Params, PsnNo,
    Relation, Reply, State, TransferSource,
};

const HOSPITAL: &str = "H44010600001";
const PHARMACY: &str = "P44010600002";
const WORKER: &str = "P440106000001";
const FATHER: &str = "P440106000002";
const HUSBAND: &str = "P440300000003";
const SISTER: &str = "P110105000004";
const DAY: &str = "2025-05-20";

struct Demo {
    state: State,
    seq: u32,
    step: u32,
}

fn psn(s: &str) -> PsnNo {
    PsnNo::from(s).expect("short psn_no")
}

fn inst(s: &str) -> InstCode {
    InstCode::from(s).expect("short code")
}

fn at(hhmmss: &str) -> Result<i64> {
    parse_cst(&format!("{DAY} {hhmmss}")).context("demo time")
}

fn insutype(t: Insutype) -> &'static str {
    match t {
        Insutype::Employee => "310 employee",
        Insutype::Resident => "390 resident",
    }
}

impl Demo {
    fn step(&mut self, time: i64, title: &str) {
        self.step += 1;
        println!();
        println!("{:>2}. [{}] {title}", self.step, format_cst(time));
    }

    /// Applies a write; a refusal ends the demo with an error.
    fn write(&mut self, time: i64, actor: Actor, body: Body) -> Result<Reply> {
        self.seq += 1;
        // HIS writes carry the national msgid form: code, 14-digit time, sequence.
        let msgid = match &actor {
            Actor::Institution(code) => {
                let stamp = format_cst(time).replace(['-', ' ', ':'], "");
                format!("{code}{stamp}{:04}", self.seq)
            }
            _ => format!("DEMO-{:04}", self.seq),
        };
        let op = Op::Write(Command {
            msgid: Msgid::from(&msgid).map_err(|_| anyhow!("msgid too long"))?,
            time,
            actor,
            body,
        });
        let applied = self
            .state
            .apply(&op)
            .map_err(|r| anyhow!("{msgid} refused: {} ({})", r.code.as_str(), r.message()))?;
        Ok(applied.reply)
    }

    fn person(&self, psn_no: &str) -> Result<PersonView> {
        self.state
            .person(psn_no)
            .map_err(|r| anyhow!("{psn_no}: {}", r.code.as_str()))
    }

    /// `P440106000001 陈**`
    fn who(&self, psn_no: &str) -> String {
        match self.state.person(psn_no) {
            Ok(p) => format!("{} {}", p.psn_no, p.psn_name_masked),
            Err(_) => psn_no.to_owned(),
        }
    }

    fn print_person(&self, p: &PersonView) {
        println!(
            "    {:<14} {:<4} certno {}  {}  admdvs {}  acct_balc {}  wallet {}",
            p.psn_no.as_str(),
            p.psn_name_masked,
            p.certno_masked,
            insutype(p.insutype),
            p.admdvs,
            p.acct_balc,
            if p.wallet_open {
                format!("open, {}", p.wallet_balc)
            } else {
                "none".to_owned()
            }
        );
    }

    fn print_binding(&self, b: &BindingView) {
        println!(
            "    binding {}: giver {} -> receiver {}  relation {}  scope {}  priority {}",
            b.binding_id,
            self.who(&b.giver_psn_no),
            self.who(&b.receiver_psn_no),
            b.relation.as_str(),
            b.scope.as_str(),
            b.priority
        );
    }

    fn print_settlement(&self, s: &SettlementView) {
        println!(
            "    setl_id {} at {}  medfee_sumamt {}  fund_pay_sumamt {}  psn_part_amt {}",
            s.setl_id, s.fixmedins_code, s.medfee_sumamt, s.fund_pay_sumamt, s.psn_part_amt
        );
        println!(
            "    acct_pay {}  wallet_pay {}  acct_mulaid_pay {}  psn_cash_pay {}",
            s.acct_pay, s.wallet_pay, s.acct_mulaid_pay, s.psn_cash_pay
        );
        println!("    mulaid_details (givers in priority order):");
        if s.mulaid_details.is_empty() {
            println!("      none");
        }
        for (n, (giver, amount)) in s.mulaid_details.iter().enumerate() {
            println!("      {}. {}  {amount}", n + 1, self.who(giver));
        }
        println!(
            "    the patient's own balances after: acct_balc {}  wallet_balc {}",
            s.acct_balc, s.wallet_balc
        );
    }

    fn settle(&mut self, time: i64, code: &str, who: &str, medfee: u64, fund: u64) -> Result<u64> {
        let reply = self.write(
            time,
            Actor::Institution(inst(code)),
            Body::Settle {
                fixmedins_code: inst(code),
                psn_no: psn(who),
                medfee_sumamt: Fen(medfee),
                fund_pay_sumamt: Fen(fund),
                acct_used: true,
            },
        )?;
        let Reply::Settled(s) = reply else {
            return Err(anyhow!("unexpected reply {reply:?}"));
        };
        let view = self.state.settlement_view(s);
        self.print_settlement(&view);
        Ok(view.setl_id)
    }

    fn balances(&self, who: &[&str]) -> Result<()> {
        for w in who {
            let p = self.person(w)?;
            println!(
                "    {} acct_balc {}  wallet_balc {}",
                self.who(w),
                p.acct_balc,
                p.wallet_balc
            );
        }
        Ok(())
    }
}

struct Member {
    psn_no: &'static str,
    name: &'static str,
    first17: &'static str,
    insutype: Insutype,
    admdvs: u32,
    role: &'static str,
}

const FAMILY: [Member; 4] = [
    Member {
        psn_no: WORKER,
        name: "陈晓梅",
        first17: "44010619880315262",
        insutype: Insutype::Employee,
        admdvs: 440106,
        role: "the worker, Guangzhou Tianhe",
    },
    Member {
        psn_no: FATHER,
        name: "陈国强",
        first17: "44010619580702153",
        insutype: Insutype::Resident,
        admdvs: 440106,
        role: "her retired father, resident scheme, Guangzhou Tianhe",
    },
    Member {
        psn_no: HUSBAND,
        name: "林志远",
        first17: "44030419860921075",
        insutype: Insutype::Employee,
        admdvs: 440300,
        role: "her husband, Shenzhen (same province, another pooling area)",
    },
    Member {
        psn_no: SISTER,
        name: "陈晓兰",
        first17: "44010619920811284",
        insutype: Insutype::Employee,
        admdvs: 110105,
        role: "her sister, Beijing Chaoyang (another province)",
    },
];

pub fn run() -> Result<()> {
    let mut d = Demo {
        state: State::new(Params::default()),
        seq: 0,
        step: 0,
    };
    println!("gongji demo: one family, family mutual aid of personal accounts (个人账户家庭共济)");
    println!("amounts in yuan; identities masked as the API shows them");

    let t = at("09:00:00")?;
    d.step(t, "Enrol the family (admin)");
    for m in &FAMILY {
        let certno = certno_with_check(m.first17).context("certno")?;
        d.write(
            t,
            Actor::Admin,
            Body::Enrol {
                psn_no: psn(m.psn_no),
                certno: certno
                    .as_str()
                    .try_into()
                    .map_err(|_| anyhow!("certno length"))?,
                psn_name: m.name.to_owned(),
                insutype: m.insutype,
                admdvs: m.admdvs,
            },
        )?;
        println!("    -- {}", m.role);
        let p = d.person(m.psn_no)?;
        d.print_person(&p);
    }

    let t = at("09:01:00")?;
    d.step(t, "Register a hospital and a pharmacy (admin)");
    for (code, name, kind) in [
        (HOSPITAL, "天河区第一人民医院", InstType::Medical),
        (PHARMACY, "天河康民大药房", InstType::Pharmacy),
    ] {
        d.write(
            t,
            Actor::Admin,
            Body::RegisterInstitution {
                fixmedins_code: inst(code),
                fixmedins_name: name.to_owned(),
                fixmedins_type: kind,
                admdvs: 440106,
            },
        )?;
        let v = d
            .state
            .institution(code)
            .map_err(|r| anyhow!("{}", r.code.as_str()))?;
        let kind = match v.fixmedins_type {
            InstType::Medical => "1 designated medical institution",
            InstType::Pharmacy => "2 designated retail pharmacy",
        };
        println!(
            "    {} {}  type {kind}  admdvs {}",
            v.fixmedins_code, v.fixmedins_name, v.admdvs
        );
    }

    let t = at("09:02:00")?;
    d.step(
        t,
        "Credit the personal accounts for 2025-05 (one atomic batch)",
    );
    let items = [(WORKER, 23_600), (HUSBAND, 31_000), (SISTER, 28_000)];
    let reply = d.write(
        t,
        Actor::Admin,
        Body::Credit {
            period: parse_period("2025-05").context("period")?,
            items: items
                .iter()
                .map(|&(p, amount)| CreditItem {
                    psn_no: psn(p),
                    amount: Fen(amount),
                })
                .collect(),
        },
    )?;
    if let Reply::Credited { count, sum } = reply {
        println!("    credited_count {count}  credited_sumamt {sum}");
    }
    println!("    (the father is in the resident scheme: no personal account to credit)");
    d.balances(&[WORKER, HUSBAND, SISTER])?;

    let t = at("09:05:00")?;
    d.step(t, "Bind relatives (each giver in the app)");
    let bindings = [
        (WORKER, FATHER, Relation::Parent),
        (HUSBAND, FATHER, Relation::Parent),
        (WORKER, SISTER, Relation::Sibling),
    ];
    for (giver, receiver, relation) in bindings {
        let reply = d.write(
            t,
            Actor::Person(psn(giver)),
            Body::Bind {
                giver_psn_no: psn(giver),
                receiver_psn_no: psn(receiver),
                relation,
            },
        )?;
        if let Reply::Bound {
            binding,
            priority,
            active,
        } = reply
        {
            d.print_binding(&d.state.bound_view(binding, priority, active));
        }
    }
    println!(
        "    (the engine records the relation the giver declares; it does not verify kinship)"
    );
    println!(
        "    (the sister is insured in Beijing: wallet_only, no instant call across provinces)"
    );

    let t = at("09:10:00")?;
    d.step(
        t,
        "The sister opens her medical-insurance wallet (医保钱包)",
    );
    d.write(
        t,
        Actor::Person(psn(SISTER)),
        Body::OpenWallet {
            psn_no: psn(SISTER),
        },
    )?;
    let p = d.person(SISTER)?;
    d.print_person(&p);

    let t = at("09:20:00")?;
    d.step(
        t,
        "The worker sends 100.00 from her account to her sister's wallet",
    );
    let reply = d.write(
        t,
        Actor::Person(psn(WORKER)),
        Body::TransferCreate {
            from_psn_no: psn(WORKER),
            to_psn_no: psn(SISTER),
            amount: Fen(10_000),
            source: TransferSource::Acct,
        },
    )?;
    let Reply::Transfer(tr) = reply else {
        return Err(anyhow!("unexpected reply {reply:?}"));
    };
    let transfer_id = tr.transfer_id;
    println!(
        "    transfer {}: {} -> {}  amount {}  source acct  scope {}  status {}",
        tr.transfer_id,
        d.who(&tr.from_psn_no),
        d.who(&tr.to_psn_no),
        tr.amount,
        if tr.cross_province {
            "cross_province"
        } else {
            "in_province"
        },
        tr.status.as_str()
    );
    println!(
        "    expires_at {} if not accepted",
        format_cst(tr.expires_at)
    );
    if let Some((acct, wallet)) = tr.sender_balances {
        println!(
            "    the worker's balances after the hold: acct_balc {acct}  wallet_balc {wallet}"
        );
    }

    let t = at("09:25:00")?;
    d.step(t, "The sister accepts the transfer");
    d.write(
        t,
        Actor::Person(psn(SISTER)),
        Body::TransferAccept { transfer_id },
    )?;
    let tr = d
        .state
        .transfer(transfer_id)
        .map_err(|r| anyhow!("{}", r.code.as_str()))?;
    println!("    transfer {transfer_id} status {}", tr.status.as_str());
    d.balances(&[WORKER, SISTER])?;

    let t = at("10:30:00")?;
    d.step(
        t,
        "The father settles a 500.00 visit at the hospital; the fund pays 300.00",
    );
    println!(
        "    order: his own account, his own wallet, his in-province givers by priority, cash"
    );
    d.settle(t, HOSPITAL, FATHER, 50_000, 30_000)?;
    d.balances(&[WORKER, HUSBAND])?;

    let t = at("15:40:00")?;
    d.step(
        t,
        "The father buys medicine for 80.00 at the pharmacy (no fund share)",
    );
    let second = d.settle(t, PHARMACY, FATHER, 8_000, 0)?;
    d.balances(&[HUSBAND])?;

    let t = at("15:45:00")?;
    d.step(
        t,
        "The pharmacy cancels that sale (撤销): every source gets back what it gave",
    );
    let reply = d.write(
        t,
        Actor::Institution(inst(PHARMACY)),
        Body::Cancel { setl_id: second },
    )?;
    if let Reply::Cancelled(s) = reply {
        let v = d.state.cancel_view(s);
        println!(
            "    setl_id {} status {}  returned: acct_pay {}  wallet_pay {}  acct_mulaid_pay {}  \
             psn_cash_pay {}",
            v.setl_id,
            if v.cancelled { "cancelled" } else { "settled" },
            v.acct_pay,
            v.wallet_pay,
            v.acct_mulaid_pay,
            v.psn_cash_pay
        );
        for (giver, amount) in &v.mulaid_details {
            println!("      back to {}  {amount}", d.who(giver));
        }
    }
    d.balances(&[HUSBAND])?;

    d.step(
        t,
        "The husband's entries: who drew from his account, and when",
    );
    let (entries, _) = d
        .state
        .entries(HUSBAND, None, 100)
        .map_err(|r| anyhow!("{}", r.code.as_str()))?;
    for e in entries {
        println!(
            "    #{:<3} {}  {:<13} {:>8}  balc {:>7}  counterparty {:<13}  ref {}",
            e.entry_id,
            format_cst(e.time),
            e.kind.as_str(),
            gongji_core::money::format_signed_fen(e.amount),
            e.balc.to_string(),
            e.counterparty.as_deref().unwrap_or("-"),
            e.reference
        );
    }

    d.step(
        t,
        "Statistics of family mutual aid, 2025-05, national-table form",
    );
    let may = parse_period("2025-05").context("period")?;
    let s = d.state.stats(may, may, None);
    println!("    {:<58} {:>6} {:>10}", "", "count", "amount");
    for (label, c) in [
        ("all family mutual aid (total)", s.total),
        (
            "instant call of a bound giver's account (account_draw)",
            s.account_draw,
        ),
        ("  same pooling area (same_pool)", s.same_pool),
        (
            "  another pooling area of the province (cross_pool)",
            s.cross_pool,
        ),
        (
            "medical-insurance wallet transfers (wallet_transfer)",
            s.wallet_transfer,
        ),
        ("  in province (in_province)", s.in_province),
        ("  across provinces (cross_province)", s.cross_province),
    ] {
        println!(
            "    {label:<58} {:>6} {:>10}",
            c.count,
            c.amount.to_string()
        );
    }
    println!("    (the cancelled pharmacy sale no longer counts; the husband's share makes the");
    println!("     hospital settlement cross_pool: Shenzhen is another pooling area)");

    d.step(
        t,
        &format!("Reconciliation of {HOSPITAL} for {DAY} (3201 total check)"),
    );
    let day = cst_day(t);
    for code in [HOSPITAL, PHARMACY] {
        let r = d
            .state
            .reconciliation(code, day)
            .map_err(|r| anyhow!("{}", r.code.as_str()))?;
        println!(
            "    {code}  setl_count {}  medfee_sumamt {}  fund_pay_sumamt {}  acct_pay {}  \
             wallet_pay {}  acct_mulaid_pay {}  psn_cash_pay {}",
            r.setl_count,
            r.medfee_sumamt,
            r.fund_pay_sumamt,
            r.acct_pay,
            r.wallet_pay,
            r.acct_mulaid_pay,
            r.psn_cash_pay
        );
    }

    d.step(t, "Check the whole state");
    d.state
        .check()
        .map_err(|e| anyhow!("state check failed: {e}"))?;
    let hash: String = d
        .state
        .state_hash()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("    check() OK: ledger, statistics and reconciliation recomputed from the records");
    println!("    {} ops applied; state hash {hash}", d.state.op_count());
    Ok(())
}
