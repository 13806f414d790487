//! The one population builder of the benchmarks: [`Population::build`] hands out, in order,
//! the ops that make a population (institutions, persons, bindings, credits, wallets), and each
//! benchmark sends them where it measures: `core` applies them to a `State`, `e2e`, `durable`
//! and `projection_lag` submit them to an `Engine`, `http` posts them to a server.
//!
//! Two shapes, because two kinds of comparison need them: [`Population::Families`] is the
//! national-shaped [`Plan`] (families of employees and residents, wallets, bindings across
//! provinces); [`Population::Triples`] is the PostgreSQL peer's (`../shared/peers/pg`: N
//! employees, every third person bound to the two before it), whose figures are set beside
//! the peer's.

use std::time::Duration;

use gongji_core::certno::certno_with_check;
use gongji_core::command::{ArrayString, CREDIT_ITEMS_MAX};
use gongji_core::time::{parse_period, Period};
use gongji_core::{
    Actor, Body, CreditItem, Fen, InstCode, InstType, Insutype, Msgid, PsnNo, Relation,
};
use gongji_server::{Engine, SubmitError, WriteRequest};

use crate::plan::{self, certno, name, psn_no, Plan};
use crate::SplitMix64;

/// The crediting period of the families' build.
pub(crate) const FAMILIES_CREDIT_PERIOD: &str = "2024-12";

/// One write of the build; the time is the caller's.
pub(crate) struct SetupOp {
    pub msgid: String,
    pub actor: Actor,
    pub body: Body,
}

impl SetupOp {
    /// As a request to the engine, at the engine's clock (`inf_time` none) or at `time`.
    pub(crate) fn request(self, time: Option<i64>) -> WriteRequest {
        WriteRequest {
            msgid: Msgid::from(&self.msgid).expect("short msgid"),
            inf_time: time,
            actor: self.actor,
            body: self.body,
        }
    }
}

/// The peer's shape. Persons are `P{first}` … `P{first + persons - 1}`; every third one
/// (`P{first+2}`, `P{first+5}`, …) is a receiver bound to the two before it, nearest first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Triples {
    pub first: u32,
    pub persons: u32,
    /// The institution every settlement goes to.
    pub inst_code: &'static str,
    pub inst_name: &'static str,
    /// The institution's area, also the area part of every certno.
    pub area: u32,
    /// A person's insured area by index.
    pub admdvs: fn(u32) -> u32,
    pub relation: Relation,
    /// Items per credit op (an HTTP body must stay under 1 MiB).
    pub credit_items: usize,
    pub period: Period,
    /// A person's credit by index.
    pub amount: fn(u32, &mut SplitMix64) -> Fen,
}

impl Triples {
    /// The durable and HTTP benchmarks' population: `P1`…`Pn` in Beijing, bound as children,
    /// balances 500.00 to 5,499.99 yuan (as the peer's `settle.pgbench` setup).
    pub(crate) fn peer(persons: u32, credit_items: usize) -> Triples {
        Triples {
            first: 1,
            persons,
            inst_code: PEER_INST,
            inst_name: "Benchmark hospital",
            area: 110_105,
            admdvs: |i| 110_000 + (i % 31) * 100 + 5,
            relation: Relation::Child,
            credit_items,
            period: parse_period("2025-01").expect("period"),
            amount: |_, rng| Fen(rng.range(50_000, 550_000)),
        }
    }

    /// The rng of the credits: the same seed for every peer-shaped run.
    pub(crate) fn rng() -> SplitMix64 {
        SplitMix64::new(7)
    }
}

/// The peer-shaped population's institution.
pub(crate) const PEER_INST: &str = "H11010500001";

pub(crate) enum Population<'a> {
    Families(&'a Plan),
    Triples(Triples),
}

impl Population<'_> {
    /// Calls `each` with every op that builds the population, in order: institutions, persons,
    /// bindings, credits (amounts drawn from `rng`), wallets.
    pub(crate) fn build(&self, rng: &mut SplitMix64, mut each: impl FnMut(SetupOp)) {
        match self {
            Population::Families(plan) => families(plan, rng, &mut each),
            Population::Triples(t) => triples(t, rng, &mut each),
        }
    }

    /// How many ops [`Population::build`] hands out.
    pub(crate) fn op_count(&self) -> u64 {
        match self {
            Population::Families(plan) => {
                let employees = plan.persons.iter().filter(|p| !p.resident).count();
                let wallets = plan.persons.iter().filter(|p| p.wallet).count();
                (plan.institutions.len()
                    + plan.persons.len()
                    + plan.bindings.len()
                    + employees.div_ceil(CREDIT_ITEMS_MAX)
                    + wallets) as u64
            }
            Population::Triples(t) => {
                let persons = t.persons as usize;
                (1 + persons + persons / 3 * 2 + persons.div_ceil(t.credit_items)) as u64
            }
        }
    }
}

fn families(plan: &Plan, rng: &mut SplitMix64, each: &mut impl FnMut(SetupOp)) {
    let mut n = 0u64;
    let mut op = |actor, body| {
        n += 1;
        let msgid = format!("SETUP{n:012}");
        each(SetupOp { msgid, actor, body })
    };
    for (i, &(admdvs, pharmacy)) in plan.institutions.iter().enumerate() {
        let kind = if pharmacy { "药店" } else { "医院" };
        let body = Body::RegisterInstitution {
            fixmedins_code: plan::inst_code(i as u32, admdvs, pharmacy),
            fixmedins_name: format!("定点{kind}{}", i + 1),
            fixmedins_type: if pharmacy {
                InstType::Pharmacy
            } else {
                InstType::Medical
            },
            admdvs,
        };
        op(Actor::Admin, body);
    }
    for (i, p) in plan.persons.iter().enumerate() {
        let body = Body::Enrol {
            psn_no: psn_no(i as u32),
            certno: certno(i as u32, p)
                .as_str()
                .try_into()
                .expect("18 characters"),
            psn_name: name(p),
            insutype: if p.resident {
                Insutype::Resident
            } else {
                Insutype::Employee
            },
            admdvs: plan::AREAS[usize::from(p.area)].0,
        };
        op(Actor::Admin, body);
    }
    for b in &plan.bindings {
        let body = Body::Bind {
            giver_psn_no: psn_no(b.giver),
            receiver_psn_no: psn_no(b.receiver),
            relation: b.relation,
        };
        op(Actor::Person(psn_no(b.giver)), body);
    }
    let period = parse_period(FAMILIES_CREDIT_PERIOD).expect("valid period");
    let employees: Vec<u32> = (0..plan.persons.len() as u32)
        .filter(|&i| !plan.persons[i as usize].resident)
        .collect();
    for chunk in employees.chunks(CREDIT_ITEMS_MAX) {
        // Balances brought in: 1,000 to 6,000 yuan (the national average is about 3,500).
        let items = chunk
            .iter()
            .map(|&i| CreditItem {
                psn_no: psn_no(i),
                amount: Fen(rng.range(1_000, 6_000) * 100),
            })
            .collect();
        op(Actor::Admin, Body::Credit { period, items });
    }
    for (i, p) in plan.persons.iter().enumerate() {
        if p.wallet {
            let psn = psn_no(i as u32);
            op(Actor::Person(psn), Body::OpenWallet { psn_no: psn });
        }
    }
}

fn triples(t: &Triples, rng: &mut SplitMix64, each: &mut impl FnMut(SetupOp)) {
    let admin = |msgid: String, body| SetupOp {
        msgid,
        actor: Actor::Admin,
        body,
    };
    let inst = Body::RegisterInstitution {
        fixmedins_code: InstCode::from(t.inst_code).expect("short"),
        fixmedins_name: t.inst_name.into(),
        fixmedins_type: InstType::Medical,
        admdvs: t.area,
    };
    each(admin("setup-inst".into(), inst));
    let last = t.first + t.persons; // exclusive
    for i in t.first..last {
        let body = Body::Enrol {
            psn_no: psn(i),
            certno: unique_certno(t.area, i),
            psn_name: "张三".into(),
            insutype: Insutype::Employee,
            admdvs: (t.admdvs)(i),
        };
        each(admin(format!("setup-e{i}"), body));
    }
    for r in (t.first + 2..last).step_by(3) {
        for (k, giver) in [r - 1, r - 2].into_iter().enumerate() {
            let body = Body::Bind {
                giver_psn_no: psn(giver),
                receiver_psn_no: psn(r),
                relation: t.relation,
            };
            each(admin(format!("setup-b{r}-{k}"), body));
        }
    }
    let ids: Vec<u32> = (t.first..last).collect();
    for (n, chunk) in ids.chunks(t.credit_items).enumerate() {
        let items = chunk
            .iter()
            .map(|&i| CreditItem {
                psn_no: psn(i),
                amount: (t.amount)(i, rng),
            })
            .collect();
        let body = Body::Credit {
            period: t.period,
            items,
        };
        each(admin(format!("setup-c{n}"), body));
    }
}

/// `P{i}`: the peer-shaped population's person numbers.
pub(crate) fn psn(i: u32) -> PsnNo {
    PsnNo::from(&format!("P{i}")).expect("short")
}

/// 18-character IDs that differ for every index below 10^7: `area`, birth 1950-01-01 on (a
/// 336-day calendar of 28-day months), a 3-digit sequence, the check character.
pub(crate) fn unique_certno(area: u32, i: u32) -> ArrayString<18> {
    let day = i / 1000;
    let (y, rest) = (1950 + day / 336, day % 336);
    let (m, d) = (1 + rest / 28, 1 + rest % 28);
    let first17 = format!("{area:06}{y:04}{m:02}{d:02}{:03}", i % 1000);
    ArrayString::from(&certno_with_check(&first17).expect("17 digits")).expect("18")
}

/// Submits the build to the engine in submissions of `chunk` ops, each waited for, retrying
/// while the queue is full; a refused op is an error (a bug in the builder).
pub(crate) fn submit(
    engine: &Engine,
    population: &Population,
    rng: &mut SplitMix64,
    chunk: usize,
) -> Result<(), String> {
    let mut requests = Vec::with_capacity(chunk);
    let mut result = Ok(());
    population.build(rng, |op| {
        requests.push(op.request(None));
        if requests.len() == chunk && result.is_ok() {
            result = submit_wait(engine, std::mem::take(&mut requests));
        }
    });
    result?;
    submit_wait(engine, requests)
}

/// One submission, waited for, retried while the queue is full; a refused op is an error.
pub(crate) fn submit_wait(engine: &Engine, requests: Vec<WriteRequest>) -> Result<(), String> {
    if requests.is_empty() {
        return Ok(());
    }
    let results = loop {
        match engine.submit_wait(requests.clone()) {
            Ok(r) => break r,
            Err(SubmitError::Overloaded) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("writer: {e:?}")),
        }
    };
    match results.iter().find(|r| r.is_err()) {
        Some(bad) => Err(format!("setup op refused: {bad:?}")),
        None => Ok(()),
    }
}
