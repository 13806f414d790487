//! From a replica state to rows: which records a run of ops added or changed, and the SQL
//! that writes them (one `INSERT … SELECT FROM unnest(arrays)` per table and batch, upserting
//! where a record can change).

use std::collections::{BTreeMap, BTreeSet};

use gongji_core::certno::{admdvs_pool, admdvs_province};
use gongji_core::federation::{LinkView, XStatus, Xid};
use gongji_core::time::period_of;
use gongji_core::views::{EntryCounterparty, EntryKind, EntryRef, TransferState};
use gongji_core::{ExchangeRow, Fen, InstType, Insutype, PersonStatus, State, TransferSource};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::Transaction;

/// Rows per statement: bounds the size of one bind message on a full rebuild.
const BATCH_ROWS_MAX: usize = 20_000;

/// How many records of each kind the state held: records at or past a mark are new.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub persons: u32,
    pub insts: u32,
    pub bindings: u32,
    pub setls: u32,
    pub transfers: u32,
    pub contributions: u32,
    pub entries: u32,
}

impl Marks {
    pub fn of(state: &State) -> Marks {
        let n = |len: usize| u32::try_from(len).expect("record counts fit in u32");
        Marks {
            persons: n(state.person_count()),
            insts: n(state.institution_count()),
            bindings: n(state.binding_count()),
            setls: n(state.settlement_count()),
            transfers: n(state.transfer_count()),
            contributions: n(state.contribution_count()),
            entries: n(state.entry_count()),
        }
    }
}

/// Older records changed by the ops, as their replies tell. Balances and transfers are found
/// from the new entries instead: every change of either makes an entry.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Status changed or wallet opened.
    pub persons: BTreeSet<u32>,
    /// Made or revoked, or a priority that moved with it.
    pub bindings: BTreeSet<u32>,
    /// Cancelled.
    pub setls: BTreeSet<u32>,
    /// Exchanges made or changed, by number, as they were after the last op that touched
    /// them (a record forgotten since keeps that state).
    pub exchanges: BTreeMap<u64, ExchangeRow>,
    /// Cross-engine bindings made or changed, likewise.
    pub links: BTreeMap<Xid, LinkView>,
}

/// Rows written per table, for the command's output and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub persons: u64,
    pub accounts: u64,
    pub wallets: u64,
    pub institutions: u64,
    pub bindings: u64,
    pub settlements: u64,
    pub settlement_details: u64,
    pub wallet_transfers: u64,
    pub contributions: u64,
    pub entries: u64,
    pub exchanges: u64,
    pub cross_engine_bindings: u64,
}

impl RowCounts {
    pub fn add(&mut self, o: &RowCounts) {
        self.persons += o.persons;
        self.accounts += o.accounts;
        self.wallets += o.wallets;
        self.institutions += o.institutions;
        self.bindings += o.bindings;
        self.settlements += o.settlements;
        self.settlement_details += o.settlement_details;
        self.wallet_transfers += o.wallet_transfers;
        self.contributions += o.contributions;
        self.entries += o.entries;
        self.exchanges += o.exchanges;
        self.cross_engine_bindings += o.cross_engine_bindings;
    }
}

impl std::fmt::Display for RowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "persons {} accounts {} wallets {} institutions {} bindings {} settlements {} \
             settlement_details {} wallet_transfers {} contributions {} entries {} exchanges {} \
             cross_engine_bindings {}",
            self.persons,
            self.accounts,
            self.wallets,
            self.institutions,
            self.bindings,
            self.settlements,
            self.settlement_details,
            self.wallet_transfers,
            self.contributions,
            self.entries,
            self.exchanges,
            self.cross_engine_bindings
        )
    }
}

/// Every table the projector writes, in the order a rebuild empties them.
pub(crate) const TABLES: [&str; 12] = [
    "gongji.persons",
    "gongji.accounts",
    "gongji.wallets",
    "gongji.institutions",
    "gongji.bindings",
    "gongji.settlements",
    "gongji.settlement_details",
    "gongji.wallet_transfers",
    "gongji.contributions",
    "gongji.entries",
    "gongji.exchanges",
    "gongji.cross_engine_bindings",
];

fn fen(f: Fen) -> i64 {
    i64::try_from(f.0).expect("amounts fit in i64")
}

fn id(index: u32) -> i64 {
    i64::from(index) + 1
}

fn id32(index: u32) -> i32 {
    i32::try_from(index + 1).expect("dense indexes fit in i32")
}

fn insutype_str(t: Insutype) -> &'static str {
    match t {
        Insutype::Employee => "310",
        Insutype::Resident => "390",
    }
}

fn status_str(s: PersonStatus) -> &'static str {
    match s {
        PersonStatus::Active => "active",
        PersonStatus::Suspended => "suspended",
    }
}

fn inst_type_str(t: InstType) -> &'static str {
    match t {
        InstType::Medical => "1",
        InstType::Pharmacy => "2",
    }
}

fn source_str(s: TransferSource) -> &'static str {
    match s {
        TransferSource::Acct => "acct",
        TransferSource::Wallet => "wallet",
    }
}

fn province(admdvs: u32) -> i16 {
    i16::from(admdvs_province(admdvs))
}

fn pool(admdvs: u32) -> i16 {
    i16::try_from(admdvs_pool(admdvs)).expect("pools have four digits")
}

fn admdvs_i32(admdvs: u32) -> i32 {
    i32::try_from(admdvs).expect("admdvs has six digits")
}

/// One parameter of an `unnest` statement: the column `f` makes of every row.
fn col<R, T: ToSql + Sync + 'static>(rows: &[R], f: impl Fn(&R) -> T) -> Box<dyn ToSql + Sync> {
    Box::new(rows.iter().map(f).collect::<Vec<T>>())
}

/// Runs `sql` once per batch of `items`, with the parameters `build` makes of the batch.
fn exec<T>(
    tx: &mut Transaction<'_>,
    sql: &str,
    items: &[T],
    build: impl Fn(&[T]) -> Vec<Box<dyn ToSql + Sync>>,
) -> Result<u64, postgres::Error> {
    if items.is_empty() {
        return Ok(0);
    }
    let statement = tx.prepare(sql)?;
    let mut rows = 0;
    for batch in items.chunks(BATCH_ROWS_MAX) {
        let params = build(batch);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        rows += tx.execute(&statement, &refs)?;
    }
    Ok(rows)
}

/// `(start..end)` followed by the members of `extra` below `start`.
fn new_and_changed(start: u32, end: u32, extra: &BTreeSet<u32>) -> Vec<u32> {
    let mut out: Vec<u32> = extra.range(..start).copied().collect();
    out.extend(start..end);
    out
}

/// Writes every record the state gained or changed since `before`. With `before` all zero
/// (a rebuild) that is every record.
pub(crate) fn write_changes(
    tx: &mut Transaction<'_>,
    state: &State,
    before: &Marks,
    dirty: &Dirty,
) -> Result<RowCounts, postgres::Error> {
    let now = Marks::of(state);
    // Balances and transfers changed by the new entries; when a transfer was resolved.
    let mut balances = BTreeSet::new();
    let mut transfers = BTreeSet::new();
    let mut resolved: BTreeMap<u32, i64> = BTreeMap::new();
    // An exchange's close moves money here by a WalletIn (the receiver's credit) or a
    // WalletReturn (the sender's return) entry; its WalletHold entries are the hold.
    let mut exchanges_resolved: BTreeMap<u64, i64> = BTreeMap::new();
    for e in before.entries..now.entries {
        let entry = state.entry_row(e);
        balances.insert(entry.psn);
        let closing = matches!(entry.kind, EntryKind::WalletIn | EntryKind::WalletReturn);
        match entry.reference {
            EntryRef::Transfer(tid) => {
                let t = u32::try_from(tid - 1).expect("transfer ids fit in u32");
                transfers.insert(t);
                if closing {
                    resolved.insert(t, entry.time);
                }
            }
            EntryRef::Exchange(number) if closing => {
                // The op that closed it named it (`touched_ids`), unless it was forgotten
                // before this state (a rebuild from a snapshot: it has no row to close).
                assert!(
                    dirty.exchanges.contains_key(&number)
                        || state.exchange_row_numbered(number).is_none(),
                    "exchange {number} closed by an op that did not name it"
                );
                exchanges_resolved.insert(number, entry.time);
            }
            _ => {}
        }
    }
    let mut counts = RowCounts::default();
    let persons = new_and_changed(before.persons, now.persons, &dirty.persons);
    counts.persons = write_persons(tx, state, &persons)?;
    let mut touched: BTreeSet<u32> = balances.range(..before.persons).copied().collect();
    touched.extend(dirty.persons.range(..before.persons));
    let touched = new_and_changed(before.persons, now.persons, &touched);
    counts.accounts = write_accounts(tx, state, &touched)?;
    counts.wallets = write_wallets(tx, state, &touched)?;
    let insts: Vec<u32> = (before.insts..now.insts).collect();
    counts.institutions = write_institutions(tx, state, &insts)?;
    let bindings = new_and_changed(before.bindings, now.bindings, &dirty.bindings);
    counts.bindings = write_bindings(tx, state, &bindings)?;
    counts.settlements = write_settlements(tx, state, before.setls..now.setls, &dirty.setls)?;
    counts.settlement_details = write_details(tx, state, before.setls..now.setls)?;
    let transfers = new_and_changed(before.transfers, now.transfers, &transfers);
    counts.wallet_transfers = write_transfers(tx, state, &transfers, &resolved)?;
    let contributions: Vec<u32> = (before.contributions..now.contributions).collect();
    counts.contributions = write_contributions(tx, state, &contributions)?;
    counts.entries = write_entries(tx, state, before.entries..now.entries)?;
    counts.exchanges = write_exchanges(tx, &dirty.exchanges, &exchanges_resolved)?;
    counts.cross_engine_bindings = write_links(tx, state, &dirty.links)?;
    Ok(counts)
}

fn write_persons(
    tx: &mut Transaction<'_>,
    state: &State,
    persons: &[u32],
) -> Result<u64, postgres::Error> {
    exec(
        tx,
        "INSERT INTO gongji.persons (psn_id, psn_no, certno_masked, psn_name_masked, insutype,
             admdvs, province, pool, status)
         SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::text[],
             $6::int4[], $7::int2[], $8::int2[], $9::text[])
         ON CONFLICT (psn_id) DO UPDATE SET status = EXCLUDED.status",
        persons,
        |batch| {
            let rows: Vec<_> = batch.iter().map(|&i| (i, state.person_row(i))).collect();
            vec![
                col(&rows, |(i, _)| id32(*i)),
                col(&rows, |(_, r)| r.psn_no.clone()),
                col(&rows, |(_, r)| r.certno_masked.clone()),
                col(&rows, |(_, r)| r.psn_name_masked.clone()),
                col(&rows, |(_, r)| insutype_str(r.insutype)),
                col(&rows, |(_, r)| admdvs_i32(r.admdvs)),
                col(&rows, |(_, r)| province(r.admdvs)),
                col(&rows, |(_, r)| pool(r.admdvs)),
                col(&rows, |(_, r)| status_str(r.status)),
            ]
        },
    )
}

fn write_accounts(
    tx: &mut Transaction<'_>,
    state: &State,
    persons: &[u32],
) -> Result<u64, postgres::Error> {
    let rows: Vec<(i32, i64)> = persons
        .iter()
        .map(|&i| (i, state.person_money(i)))
        .filter(|(_, r)| r.insutype == Insutype::Employee)
        .map(|(i, r)| (id32(i), fen(r.acct_balc)))
        .collect();
    upsert_balances(tx, "gongji.accounts", &rows)
}

fn write_wallets(
    tx: &mut Transaction<'_>,
    state: &State,
    persons: &[u32],
) -> Result<u64, postgres::Error> {
    let rows: Vec<(i32, i64)> = persons
        .iter()
        .map(|&i| (i, state.person_money(i)))
        .filter(|(_, r)| r.wallet_open)
        .map(|(i, r)| (id32(i), fen(r.wallet_balc)))
        .collect();
    upsert_balances(tx, "gongji.wallets", &rows)
}

fn upsert_balances(
    tx: &mut Transaction<'_>,
    table: &str,
    rows: &[(i32, i64)],
) -> Result<u64, postgres::Error> {
    let sql = format!(
        "INSERT INTO {table} (psn_id, balc_fen) SELECT * FROM unnest($1::int4[], $2::int8[])
         ON CONFLICT (psn_id) DO UPDATE SET balc_fen = EXCLUDED.balc_fen"
    );
    exec(tx, &sql, rows, |batch| {
        vec![col(batch, |r| r.0), col(batch, |r| r.1)]
    })
}

fn write_institutions(
    tx: &mut Transaction<'_>,
    state: &State,
    insts: &[u32],
) -> Result<u64, postgres::Error> {
    exec(
        tx,
        "INSERT INTO gongji.institutions (inst_id, fixmedins_code, fixmedins_name,
             fixmedins_type, admdvs)
         SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::int4[])",
        insts,
        |batch| {
            let rows: Vec<_> = batch
                .iter()
                .map(|&i| (i, state.institution_row(i)))
                .collect();
            vec![
                col(&rows, |(i, _)| id32(*i)),
                col(&rows, |(_, r)| r.fixmedins_code.clone()),
                col(&rows, |(_, r)| r.fixmedins_name.clone()),
                col(&rows, |(_, r)| inst_type_str(r.fixmedins_type)),
                col(&rows, |(_, r)| admdvs_i32(r.admdvs)),
            ]
        },
    )
}

fn write_bindings(
    tx: &mut Transaction<'_>,
    state: &State,
    bindings: &[u32],
) -> Result<u64, postgres::Error> {
    exec(
        tx,
        "INSERT INTO gongji.bindings (binding_id, giver_psn_id, receiver_psn_id, relation,
             scope, priority, active)
         SELECT * FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::text[], $5::text[],
             $6::int4[], $7::bool[])
         ON CONFLICT (binding_id) DO UPDATE
             SET priority = EXCLUDED.priority, active = EXCLUDED.active",
        bindings,
        |batch| {
            let rows: Vec<_> = batch.iter().map(|&b| (b, state.binding_row(b))).collect();
            vec![
                col(&rows, |(b, _)| id(*b)),
                col(&rows, |(_, r)| id32(r.giver)),
                col(&rows, |(_, r)| id32(r.receiver)),
                col(&rows, |(_, r)| r.relation.as_str()),
                col(&rows, |(_, r)| r.scope.as_str()),
                col(&rows, |(_, r)| {
                    i32::try_from(r.priority).expect("small priority")
                }),
                col(&rows, |(_, r)| r.active),
            ]
        },
    )
}

fn write_settlements(
    tx: &mut Transaction<'_>,
    state: &State,
    new: std::ops::Range<u32>,
    cancelled: &BTreeSet<u32>,
) -> Result<u64, postgres::Error> {
    // Older settlements change only by cancellation.
    let old: Vec<i64> = cancelled.range(..new.start).map(|&s| id(s)).collect();
    let mut rows = 0;
    if !old.is_empty() {
        rows += tx.execute(
            "UPDATE gongji.settlements SET cancelled = true WHERE setl_id = ANY($1)",
            &[&old],
        )?;
    }
    if new.is_empty() {
        return Ok(rows);
    }
    let sink = tx.copy_in(
        "COPY gongji.settlements (setl_id, psn_id, inst_id, setl_time, period, province,
             medfee_sumamt, fund_pay_sumamt, psn_part_amt, acct_pay, wallet_pay,
             acct_mulaid_pay, psn_cash_pay, acct_balc, wallet_balc, cross_pool, cancelled)
         FROM STDIN BINARY",
    )?;
    let (i8_, i4, i2, text, b) = (Type::INT8, Type::INT4, Type::INT2, Type::TEXT, Type::BOOL);
    let types = [
        i8_.clone(),
        i4.clone(),
        i4,
        i8_.clone(),
        text,
        i2,
        i8_.clone(),
        i8_.clone(),
        i8_.clone(),
        i8_.clone(),
        i8_.clone(),
        i8_.clone(),
        i8_.clone(),
        i8_.clone(),
        i8_,
        b.clone(),
        b,
    ];
    let mut w = BinaryCopyInWriter::new(sink, &types);
    for s in new {
        let r = state.settlement_row(s).settlement;
        let province = province(state.person_money(r.psn).admdvs);
        let part = r.medfee.checked_sub(r.fund_pay).expect("fund ≤ medfee");
        w.write(&[
            &id(s),
            &id32(r.psn),
            &id32(r.inst),
            &r.time,
            &period_of(r.time).to_string(),
            &province,
            &fen(r.medfee),
            &fen(r.fund_pay),
            &fen(part),
            &fen(r.acct_pay),
            &fen(r.wallet_pay),
            &fen(r.mulaid),
            &fen(r.cash),
            &fen(r.acct_balc),
            &fen(r.wallet_balc),
            &r.cross_pool,
            &r.cancelled,
        ])?;
    }
    Ok(rows + w.finish()?)
}

fn write_details(
    tx: &mut Transaction<'_>,
    state: &State,
    setls: std::ops::Range<u32>,
) -> Result<u64, postgres::Error> {
    if setls.is_empty() {
        return Ok(0);
    }
    let sink = tx.copy_in(
        "COPY gongji.settlement_details (setl_id, seq, giver_psn_id, amount_fen) FROM STDIN BINARY",
    )?;
    let mut w = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT2, Type::INT4, Type::INT8]);
    for s in setls {
        for (seq, (giver, amount)) in state.settlement_row(s).details.into_iter().enumerate() {
            let seq = i16::try_from(seq + 1).expect("givers fit in i16");
            w.write(&[&id(s), &seq, &id32(giver), &fen(amount)])?;
        }
    }
    w.finish()
}

fn write_transfers(
    tx: &mut Transaction<'_>,
    state: &State,
    transfers: &[u32],
    resolved: &BTreeMap<u32, i64>,
) -> Result<u64, postgres::Error> {
    exec(
        tx,
        "INSERT INTO gongji.wallet_transfers (transfer_id, from_psn_id, to_psn_id, amount_fen,
             source, cross_province, province, status, created, expires_at, resolved_at,
             resolved_period)
         SELECT * FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::int8[], $5::text[],
             $6::bool[], $7::int2[], $8::text[], $9::int8[], $10::int8[], $11::int8[],
             $12::text[])
         ON CONFLICT (transfer_id) DO UPDATE SET status = EXCLUDED.status,
             resolved_at = coalesce(EXCLUDED.resolved_at, wallet_transfers.resolved_at),
             resolved_period = coalesce(EXCLUDED.resolved_period,
                 wallet_transfers.resolved_period)",
        transfers,
        |batch| {
            let rows: Vec<_> = batch
                .iter()
                .map(|&t| {
                    let r = state.transfer_row(t);
                    let admdvs = state.person_money(r.from).admdvs;
                    let at = resolved.get(&t).copied();
                    debug_assert_eq!(at.is_some(), r.status != TransferState::Pending);
                    (t, r, admdvs, at)
                })
                .collect();
            vec![
                col(&rows, |(t, ..)| id(*t)),
                col(&rows, |(_, r, ..)| id32(r.from)),
                col(&rows, |(_, r, ..)| id32(r.to)),
                col(&rows, |(_, r, ..)| fen(r.amount)),
                col(&rows, |(_, r, ..)| source_str(r.source)),
                col(&rows, |(_, r, ..)| r.cross_province),
                col(&rows, |(_, _, a, _)| province(*a)),
                col(&rows, |(_, r, ..)| r.status.as_str()),
                col(&rows, |(_, r, ..)| r.created),
                col(&rows, |(_, r, ..)| r.expires_at),
                col(&rows, |(.., at)| *at),
                col(&rows, |(.., at)| at.map(|t| period_of(t).to_string())),
            ]
        },
    )
}

fn write_contributions(
    tx: &mut Transaction<'_>,
    state: &State,
    contributions: &[u32],
) -> Result<u64, postgres::Error> {
    exec(
        tx,
        "INSERT INTO gongji.contributions (contribution_id, payer_psn_id, psn_id, year,
             amount_fen, paid_at, period, province, cross_pool, acct_balc)
         SELECT * FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::int2[], $5::int8[],
             $6::int8[], $7::text[], $8::int2[], $9::bool[], $10::int8[])",
        contributions,
        |batch| {
            let rows: Vec<_> = batch
                .iter()
                .map(|&c| {
                    let r = state.contribution_row(c);
                    let payer = state.person_money(r.payer).admdvs;
                    let psn = state.person_money(r.psn).admdvs;
                    (c, r, psn, admdvs_pool(payer) != admdvs_pool(psn))
                })
                .collect();
            vec![
                col(&rows, |(c, ..)| id(*c)),
                col(&rows, |(_, r, ..)| id32(r.payer)),
                col(&rows, |(_, r, ..)| id32(r.psn)),
                col(&rows, |(_, r, ..)| {
                    i16::try_from(r.year).expect("years fit in i16")
                }),
                col(&rows, |(_, r, ..)| fen(r.amount)),
                col(&rows, |(_, r, ..)| r.time),
                col(&rows, |(_, r, ..)| period_of(r.time).to_string()),
                col(&rows, |(_, _, a, _)| province(*a)),
                col(&rows, |(.., cross)| *cross),
                col(&rows, |(_, r, ..)| fen(r.acct_balc)),
            ]
        },
    )
}

fn write_entries(
    tx: &mut Transaction<'_>,
    state: &State,
    entries: std::ops::Range<u32>,
) -> Result<u64, postgres::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let sink = tx.copy_in(
        "COPY gongji.entries (entry_id, psn_id, wallet, kind, entry_time, amount_fen, balc_fen,
             counterparty_psn_id, counterparty_inst_id, ref_kind, ref_id) FROM STDIN BINARY",
    )?;
    let types = [
        Type::INT8,
        Type::INT4,
        Type::BOOL,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::INT4,
        Type::TEXT,
        Type::INT8,
    ];
    let mut w = BinaryCopyInWriter::new(sink, &types);
    for e in entries {
        let r = state.entry_row(e);
        let (ref_kind, ref_id) = match r.reference {
            EntryRef::Settlement(i) => ("settlement", i as i64),
            EntryRef::Transfer(i) => ("transfer", i as i64),
            EntryRef::Contribution(i) => ("contribution", i as i64),
            EntryRef::Period(p) => ("period", i64::from(p)),
            // A cross-engine transfer's number: `gongji.exchanges.exchange_no`.
            EntryRef::Exchange(i) => ("exchange", i as i64),
        };
        let (cp_psn, cp_inst) = match r.counterparty {
            EntryCounterparty::Person(p) => (Some(id32(p)), None),
            EntryCounterparty::Institution(i) => (None, Some(id32(i))),
            EntryCounterparty::None => (None, None),
        };
        w.write(&[
            &id(e),
            &id32(r.psn),
            &r.wallet,
            &r.kind.as_str(),
            &r.time,
            &r.amount,
            &fen(r.balc),
            &cp_psn,
            &cp_inst,
            &ref_kind,
            &ref_id,
        ])?;
    }
    w.finish()
}

fn exchange_status_str(s: XStatus) -> &'static str {
    match s {
        XStatus::InFlight => "in_flight",
        XStatus::Pending => "pending",
        XStatus::Closed(outcome) => outcome.as_str(),
    }
}

/// Upserts the exchanges given; `resolved` holds the times the new entries closed some. The
/// row keeps the time it had when this batch has none (an exchange closes once).
fn write_exchanges(
    tx: &mut Transaction<'_>,
    exchanges: &BTreeMap<u64, ExchangeRow>,
    resolved: &BTreeMap<u64, i64>,
) -> Result<u64, postgres::Error> {
    let rows: Vec<(ExchangeRow, Option<i64>)> = exchanges
        .values()
        .map(|x| (*x, resolved.get(&x.number).copied()))
        .collect();
    exec(
        tx,
        "INSERT INTO gongji.exchanges (exchange_no, xid, outgoing, peer_engine, psn_id,
             to_psn_no, to_admdvs, province, amount_fen, source, status, reversed, created,
             expires_at, resolved_at, resolved_period, from_psn_no)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::bool[], $4::text[], $5::int4[],
             $6::text[], $7::int4[], $8::int2[], $9::int8[], $10::text[], $11::text[],
             $12::bool[], $13::int8[], $14::int8[], $15::int8[], $16::text[], $17::text[])
         ON CONFLICT (exchange_no) DO UPDATE SET psn_id = EXCLUDED.psn_id,
             status = EXCLUDED.status, reversed = EXCLUDED.reversed,
             resolved_at = coalesce(EXCLUDED.resolved_at, exchanges.resolved_at),
             resolved_period = coalesce(EXCLUDED.resolved_period, exchanges.resolved_period)",
        &rows,
        |batch| {
            vec![
                col(batch, |(x, _)| {
                    i64::try_from(x.number).expect("exchange numbers fit in i64")
                }),
                col(batch, |(x, _)| x.xid.to_string()),
                col(batch, |(x, _)| x.outgoing),
                col(batch, |(x, _)| x.peer.to_string()),
                col(batch, |(x, _)| x.person.map(id32)),
                col(batch, |(x, _)| x.to_psn_no.to_string()),
                col(batch, |(x, _)| admdvs_i32(x.to_admdvs)),
                col(batch, |(x, _)| province(x.sender_admdvs)),
                col(batch, |(x, _)| fen(x.amount)),
                col(batch, |(x, _)| source_str(x.source)),
                col(batch, |(x, _)| exchange_status_str(x.status)),
                col(batch, |(x, _)| x.reversed),
                col(batch, |(x, _)| x.created),
                col(batch, |(x, _)| x.expires_at),
                col(batch, |(_, at)| *at),
                col(batch, |(_, at)| at.map(|t| period_of(t).to_string())),
                col(batch, |(x, _)| x.from_psn_no.map(|p| p.to_string())),
            ]
        },
    )
}

/// Upserts the cross-engine bindings given (a binding's persons never change; its status
/// does).
fn write_links(
    tx: &mut Transaction<'_>,
    state: &State,
    links: &BTreeMap<Xid, LinkView>,
) -> Result<u64, postgres::Error> {
    let rows: Vec<(&LinkView, Option<i32>)> = links
        .values()
        .map(|l| {
            let psn = l.psn_no.and_then(|p| state.person_index_of(&p)).map(id32);
            (l, psn)
        })
        .collect();
    exec(
        tx,
        "INSERT INTO gongji.cross_engine_bindings (bxid, giver_here, peer_engine, psn_id,
             remote_psn_no, remote_admdvs, relation, created, status)
         SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::int4[], $5::text[],
             $6::int4[], $7::text[], $8::int8[], $9::text[])
         ON CONFLICT (bxid) DO UPDATE SET psn_id = EXCLUDED.psn_id,
             remote_psn_no = EXCLUDED.remote_psn_no, remote_admdvs = EXCLUDED.remote_admdvs,
             relation = EXCLUDED.relation, created = EXCLUDED.created,
             status = EXCLUDED.status",
        &rows,
        |batch| {
            let remote = |l: &LinkView| {
                if l.giver_here {
                    (l.receiver_psn_no, l.receiver_admdvs)
                } else {
                    (l.giver_psn_no, l.giver_admdvs)
                }
            };
            vec![
                col(batch, |(l, _)| l.bxid.to_string()),
                col(batch, |(l, _)| l.giver_here),
                col(batch, |(l, _)| l.peer.to_string()),
                col(batch, |(_, p)| *p),
                col(batch, |(l, _)| remote(l).0.to_string()),
                col(batch, |(l, _)| {
                    i32::try_from(remote(l).1).expect("admdvs fits in i32")
                }),
                col(batch, |(l, _)| l.relation.as_str()),
                col(batch, |(l, _)| l.created),
                col(batch, |(l, _)| l.status.as_str()),
            ]
        },
    )
}
