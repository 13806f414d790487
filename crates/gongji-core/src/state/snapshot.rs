//! A versioned binary snapshot of the whole [`State`] (snapshot format version 2).
//!
//! Hand-written and little-endian, like [`crate::codec`]. The layout:
//!
//! ```text
//! magic "GJSNAPST", version u32 = 2 (1 was before msgid scopes: its msgid keys hash the
//! msgid alone, so it is refused; recovery skips it and needs an older snapshot or the
//! journal from op 1)
//! params        receivers u8, givers u8, wallet_amount_max u64, daily_count u8,
//!               closed_from u32, closed_until u32, expiry_second u32, draw_order 3×u8,
//!               msgid_retention_days u32
//! clock i64, op_count u64
//! ledger        7×u64 (acct, wallet, held, credited, paid_institutions, returned, contributions)
//! persons       n u64; psn_no lengths n×u8, psn_no bytes; name lengths n×u8, name bytes;
//!               then one column per vector: certno u64, admdvs u32, flags u8, acct u64,
//!               wallet u64, given_head u32, received_head u32, entry_head u32, entry_tail u32,
//!               wallet_day u32, credit_last u32, credit_mask u64
//! credit_overflow   n u64; (psn u32, period u32) ascending
//! institutions  n u64; code (u8 len + bytes), name (u8 len + bytes), type u8, admdvs u32
//! tokens        n u64; hash [32], role u8, scope u32, revoked u8
//! bindings      n u64; giver u32, receiver u32, relation u8, scope u8, active u8,
//!               next_given u32, next_received u32
//! settlements   n u64; psn u32, inst u32, time i64, medfee, fund_pay, acct_pay, wallet_pay,
//!               mulaid, cash, acct_balc, wallet_balc (u64 each), details_start u32,
//!               details_len u8, cross_pool u8, cancelled u8
//! details       n u64; giver u32, amount u64
//! transfers     n u64; from u32, to u32, amount u64, source u8, cross_province u8, status u8,
//!               created i64, expires_at i64
//! expiry_queue  n u64; (expires_at i64, transfer u32) in queue order
//! contributions n u64; payer u32, psn u32, year u16, amount u64, time i64, acct_balc u64
//! contributions_paid  n u64; (psn u32, year u16) ascending
//! entries       n u64; psn u32, next u32, wallet u8, kind u8, time i64, amount i64, balc u64,
//!               counterparty tag u8 + u32, reference tag u8 + u64
//! msgids        n u64; (key u128, fingerprint u64, reply) ascending by key;
//!               fifo n u64; (time i64, key u128) in queue order
//! stats         n u64; (period u32, 31 provinces × 4 channels × (count u64, amount u64))
//!               ascending by period
//! recon         n u64; (inst u32, day i32, setl_count u64, 6×u64 amounts) ascending by key
//! ```
//!
//! A reply is a tag and its fields (see `encode_reply`). Enrolment and binding replies are
//! indexes (tags 13, 14); tag 6, the whole binding view an earlier encoder wrote, is still read
//! (checked against the binding) and written back as tag 14.
//!
//! Person data goes column by column, so both directions are bulk loops and decoding allocates
//! one vector per column, never one per person. Hash maps and sets are written sorted by key,
//! so the encoding is canonical: decoding and re-encoding gives back the same bytes. Derived
//! indexes (psn_no, certno, institution code, token hash) are not stored but rebuilt, and the
//! scratch buffers start empty.
//!
//! Decoding trusts nothing: every count is checked against the bytes left before anything is
//! allocated; every index against the vector it points into; enum tags, strings, list links
//! (which must point forward, so no walk can loop) and sums (which must not overflow) are
//! checked; finally [`State::check`] must pass. Corrupt or hostile bytes give a
//! [`SnapshotDecodeError`] with a byte offset, never a panic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use arrayvec::ArrayString;
use hashbrown::hash_table::Entry as TableEntry;
use hashbrown::HashTable;
use rustc_hash::{FxHashMap, FxHashSet};

use super::bindings::{Binding, Scope};
use super::counters::{Cell, ReconTotals, Stats, PROVINCES};
use super::ledger::{Counterparty, Entry, EntryKind, EntryRef, Ledger};
use super::msgids::{MsgRecord, Msgids};
use super::persons::{
    hash_bytes, hash_certno, Hot, Institution, Institutions, Persons, Token, Tokens,
};
use super::settle::{Detail, Settlement};
use super::views::{BindingView, ContributionView, InstitutionView, PersonView, TransferView};
use super::wallet::{Transfer, TransferStatus};
use super::{Contribution, State};
use crate::certno::province_valid;
use crate::command::{
    InstType, Insutype, PersonStatus, Relation, Role, TransferSource, NAME_BYTES_MAX,
};
use crate::params::{DrawSource, Params};
use crate::reply::{Reply, ReversalResult};
use crate::time::Period;
use crate::Fen;

const MAGIC: [u8; 8] = *b"GJSNAPST";
const PSN_NO_MAX: usize = 30;
/// Every flag bit a person may carry (resident, suspended, wallet).
const FLAGS_ALL: u8 = 1 | 2 | 4;
/// Months the per-person credit bitmask covers (see `persons.rs`).
const CREDIT_MASK_MONTHS: u32 = 64;

// Decoding tables: position = tag = the variant's declaration index (`as u8`).
const INSUTYPES: [Insutype; 2] = [Insutype::Employee, Insutype::Resident];
const STATUSES: [PersonStatus; 2] = [PersonStatus::Active, PersonStatus::Suspended];
const INST_TYPES: [InstType; 2] = [InstType::Medical, InstType::Pharmacy];
const ROLES: [Role; 3] = [Role::Admin, Role::Institution, Role::Person];
const RELATIONS: [Relation; 9] = Relation::ALL;
const SCOPES: [Scope; 2] = [Scope::InProvince, Scope::WalletOnly];
const SOURCES: [TransferSource; 2] = [TransferSource::Acct, TransferSource::Wallet];
const TRANSFER_STATUSES: [TransferStatus; 4] = [
    TransferStatus::Pending,
    TransferStatus::Accepted,
    TransferStatus::Declined,
    TransferStatus::Returned,
];
const KINDS: [EntryKind; 8] = [
    EntryKind::Credit,
    EntryKind::Settlement,
    EntryKind::MulaidGiven,
    EntryKind::WalletHold,
    EntryKind::WalletIn,
    EntryKind::WalletReturn,
    EntryKind::Contribution,
    EntryKind::Cancel,
];
const DRAW_SOURCES: [DrawSource; 3] = [
    DrawSource::OwnAcct,
    DrawSource::OwnWallet,
    DrawSource::Givers,
];
const REVERSAL_RESULTS: [ReversalResult; 2] = [ReversalResult::Cancelled, ReversalResult::Blocked];

// Fixed record sizes in bytes.
const TOKEN_BYTES: usize = 32 + 1 + 4 + 1;
const BINDING_BYTES: usize = 4 + 4 + 1 + 1 + 1 + 4 + 4;
const SETTLEMENT_BYTES: usize = 4 + 4 + 8 + 8 * 8 + 4 + 1 + 1 + 1;
const DETAIL_BYTES: usize = 4 + 8;
const TRANSFER_BYTES: usize = 4 + 4 + 8 + 1 + 1 + 1 + 8 + 8;
const QUEUE_BYTES: usize = 8 + 4;
const CONTRIBUTION_BYTES: usize = 4 + 4 + 2 + 8 + 8 + 8;
const PAID_BYTES: usize = 4 + 2;
const ENTRY_BYTES: usize = 4 + 4 + 1 + 1 + 8 + 8 + 8 + 1 + 4 + 1 + 8;
const FIFO_BYTES: usize = 8 + 16;
const MONTH_BYTES: usize = 4 + PROVINCES.len() * 4 * 16;
const RECON_BYTES: usize = 4 + 4 + 8 + 6 * 8;
/// Smallest encoding of one person: two length bytes, one psn_no byte, one name byte and the
/// fixed columns.
const PERSON_MIN_BYTES: usize = 2 + 1 + 1 + 8 + 4 + 1 + 8 + 8 + 4 * 6 + 8;

/// Why a snapshot could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDecodeError {
    /// Byte offset of the offending field or record (the end of the input for whole-state
    /// checks).
    pub offset: usize,
    pub what: &'static str,
    /// The message of a failed [`State::check`].
    pub detail: Option<String>,
}

impl std::fmt::Display for SnapshotDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot decode error at byte {}: {}",
            self.offset, self.what
        )?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SnapshotDecodeError {}

type Res<T> = Result<T, SnapshotDecodeError>;

fn fail<T>(offset: usize, what: &'static str) -> Res<T> {
    Err(SnapshotDecodeError {
        offset,
        what,
        detail: None,
    })
}

/// A fixed-size little-endian value.
trait Le: Copy {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    /// `b` is exactly `SIZE` bytes.
    fn get(b: &[u8]) -> Self;
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}

le!(u8, u16, u32, i32, u64, i64, u128);

impl Le for Fen {
    const SIZE: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        self.0.put(out);
    }
    fn get(b: &[u8]) -> Self {
        Fen(u64::get(b))
    }
}

struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn put<T: Le>(&mut self, v: T) {
        v.put(self.0);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn count(&mut self, n: usize) {
        self.put(n as u64);
    }
    fn col<T: Le>(&mut self, v: &[T]) {
        self.0.reserve(v.len() * T::SIZE);
        for &x in v {
            x.put(self.0);
        }
    }
    fn str8(&mut self, s: &str) {
        self.0
            .push(u8::try_from(s.len()).expect("string of at most 255 bytes"));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn str16(&mut self, s: &str) {
        self.put(u16::try_from(s.len()).expect("string of at most 65535 bytes"));
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.left() < n {
            return fail(self.pos, "truncated");
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }
    fn get<T: Le>(&mut self) -> Res<T> {
        Ok(T::get(self.take(T::SIZE)?))
    }
    fn bool(&mut self) -> Res<bool> {
        let at = self.pos;
        match self.get::<u8>()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => fail(at, "bool"),
        }
    }
    fn tag<T: Copy>(&mut self, table: &[T], what: &'static str) -> Res<T> {
        let at = self.pos;
        let v = self.get::<u8>()?;
        table
            .get(usize::from(v))
            .copied()
            .map_or_else(|| fail(at, what), Ok)
    }
    /// A count of items of at least `min_bytes` each, checked against the bytes left so that
    /// no hostile count makes us allocate.
    fn count(&mut self, min_bytes: usize, what: &'static str) -> Res<usize> {
        let at = self.pos;
        let n = self.get::<u64>()?;
        match usize::try_from(n) {
            Ok(n) if n < u32::MAX as usize && n <= self.left() / min_bytes.max(1) => Ok(n),
            _ => fail(at, what),
        }
    }
    fn col<T: Le>(&mut self, n: usize) -> Res<Vec<T>> {
        let at = self.pos;
        let len = n
            .checked_mul(T::SIZE)
            .map_or_else(|| fail(at, "column too long"), Ok)?;
        let bytes = self.take(len)?;
        Ok(bytes.chunks_exact(T::SIZE).map(T::get).collect())
    }
    /// `n` records of `size` bytes each; `f` gets the record index and a reader.
    fn records<T>(
        &mut self,
        n: usize,
        size: usize,
        mut f: impl FnMut(usize, &mut Rec<'a>) -> Result<T, &'static str>,
    ) -> Res<Vec<T>> {
        let start = self.pos;
        let len = n
            .checked_mul(size)
            .map_or_else(|| fail(start, "section too long"), Ok)?;
        let bytes = self.take(len)?;
        let mut out = Vec::with_capacity(n);
        for (i, chunk) in bytes.chunks_exact(size).enumerate() {
            let mut r = Rec {
                b: chunk,
                p: 0,
                last: 0,
            };
            match f(i, &mut r) {
                Ok(v) => out.push(v),
                Err(what) => return fail(start + i * size + r.last, what),
            }
            debug_assert_eq!(r.p, size, "record layout");
        }
        Ok(out)
    }
    fn str8(&mut self) -> Res<&'a str> {
        let n = usize::from(self.get::<u8>()?);
        self.utf8(n)
    }
    fn str16(&mut self) -> Res<&'a str> {
        let n = usize::from(self.get::<u16>()?);
        self.utf8(n)
    }
    fn utf8(&mut self, n: usize) -> Res<&'a str> {
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_or_else(|_| fail(at, "utf-8"), Ok)
    }
    fn arr<const N: usize>(&mut self) -> Res<ArrayString<N>> {
        let at = self.pos;
        ArrayString::from(self.str8()?).map_or_else(|_| fail(at, "string too long"), Ok)
    }
    fn fen(&mut self) -> Res<Fen> {
        self.get()
    }
}

/// A reader over one fixed-size record. Reads cannot fail: the record has its full size.
struct Rec<'a> {
    b: &'a [u8],
    p: usize,
    /// Start of the latest field read (for error offsets).
    last: usize,
}

impl Rec<'_> {
    fn get<T: Le>(&mut self) -> T {
        self.last = self.p;
        let v = T::get(&self.b[self.p..self.p + T::SIZE]);
        self.p += T::SIZE;
        v
    }
    fn bool(&mut self) -> Result<bool, &'static str> {
        match self.get::<u8>() {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bool"),
        }
    }
    fn tag<T: Copy>(&mut self, table: &[T], what: &'static str) -> Result<T, &'static str> {
        let v = self.get::<u8>();
        table.get(usize::from(v)).copied().ok_or(what)
    }
    /// An index that must be below `len`.
    fn index(&mut self, len: usize, what: &'static str) -> Result<u32, &'static str> {
        let v = self.get::<u32>();
        if (v as usize) < len {
            Ok(v)
        } else {
            Err(what)
        }
    }
}

fn admdvs_valid(a: u32) -> bool {
    (100_000..=999_999).contains(&a) && province_valid((a / 10_000) as u8)
}

fn code_bytes_valid(s: &[u8]) -> bool {
    (1..=PSN_NO_MAX).contains(&s.len()) && s.iter().all(u8::is_ascii_alphanumeric)
}

impl State {
    /// The snapshot format version [`State::encode_snapshot`] writes.
    pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

    /// Appends a snapshot of the whole state to `out` (see `state/snapshot.rs` for the
    /// format). Canonical: the same state gives the same bytes.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        let p = &self.persons;
        out.reserve(
            256 + p.len() * 80
                + p.psn_no_bytes.len()
                + p.name_bytes.len()
                + self.bindings.len() * BINDING_BYTES
                + self.setls.len() * SETTLEMENT_BYTES
                + self.transfers.len() * TRANSFER_BYTES
                + self.entries.len() * ENTRY_BYTES
                + self.msgids.len() * 64,
        );
        let mut e = Enc(out);
        e.0.extend_from_slice(&MAGIC);
        e.put(Self::SNAPSHOT_FORMAT_VERSION);
        encode_params(&self.params, &mut e);
        e.put(self.clock);
        e.put(self.op_count);
        let l = &self.ledger;
        for v in [
            l.acct_total,
            l.wallet_total,
            l.held,
            l.credited,
            l.paid_institutions,
            l.returned_by_cancellations,
            l.paid_contributions,
        ] {
            e.put(v);
        }
        self.encode_persons(&mut e);
        e.count(p.credit_overflow.len());
        for &(i, period) in &p.credit_overflow {
            e.put(i);
            e.put(period);
        }
        e.count(self.insts.list.len());
        for inst in &self.insts.list {
            e.str8(&inst.code);
            e.str8(&inst.name);
            e.put(inst.kind as u8);
            e.put(inst.admdvs);
        }
        e.count(self.tokens.list.len());
        for t in &self.tokens.list {
            e.0.extend_from_slice(&t.hash);
            e.put(t.role as u8);
            e.put(t.scope);
            e.bool(t.revoked);
        }
        e.count(self.bindings.len());
        for b in &self.bindings {
            e.put(b.giver);
            e.put(b.receiver);
            e.put(b.relation as u8);
            e.put(b.scope as u8);
            e.bool(b.active);
            e.put(b.next_given);
            e.put(b.next_received);
        }
        e.count(self.setls.len());
        for s in &self.setls {
            e.put(s.psn);
            e.put(s.inst);
            e.put(s.time);
            for v in [
                s.medfee,
                s.fund_pay,
                s.acct_pay,
                s.wallet_pay,
                s.mulaid,
                s.cash,
                s.acct_balc,
                s.wallet_balc,
            ] {
                e.put(v);
            }
            e.put(s.details_start);
            e.put(s.details_len);
            e.bool(s.cross_pool);
            e.bool(s.cancelled);
        }
        e.count(self.details.len());
        for d in &self.details {
            e.put(d.giver);
            e.put(d.amount);
        }
        e.count(self.transfers.len());
        for t in &self.transfers {
            e.put(t.from);
            e.put(t.to);
            e.put(t.amount);
            e.put(t.source as u8);
            e.bool(t.cross_province);
            e.put(t.status as u8);
            e.put(t.created);
            e.put(t.expires_at);
        }
        e.count(self.expiry_queue.len());
        for &(time, t) in &self.expiry_queue {
            e.put(time);
            e.put(t);
        }
        e.count(self.contributions.len());
        for c in &self.contributions {
            e.put(c.payer);
            e.put(c.psn);
            e.put(c.year);
            e.put(c.amount);
            e.put(c.time);
            e.put(c.acct_balc);
        }
        let mut paid: Vec<(u32, u16)> = self.contributions_paid.iter().copied().collect();
        paid.sort_unstable();
        e.count(paid.len());
        for (psn, year) in paid {
            e.put(psn);
            e.put(year);
        }
        e.count(self.entries.len());
        for entry in &self.entries {
            encode_entry(entry, &mut e);
        }
        let msgids = self.msgids.sorted_by_key();
        e.count(msgids.len());
        for (key, record) in msgids {
            e.put(key);
            e.put(record.fingerprint);
            encode_reply(record.reply.as_ref(), &mut e);
        }
        e.count(self.msgids.len());
        for (time, key, _) in self.msgids.iter() {
            e.put(time);
            e.put(key);
        }
        e.count(self.stats.months.len());
        for (period, month) in &self.stats.months {
            e.put(period.0);
            for cells in month.iter() {
                for cell in cells {
                    e.put(cell.count);
                    e.put(cell.amount);
                }
            }
        }
        let mut recon: Vec<(&(u32, i32), &ReconTotals)> = self.recon.iter().collect();
        recon.sort_unstable_by_key(|(k, _)| **k);
        e.count(recon.len());
        for (&(inst, day), t) in recon {
            e.put(inst);
            e.put(day);
            e.put(t.setl_count);
            for v in [
                t.medfee_sumamt,
                t.fund_pay_sumamt,
                t.acct_pay,
                t.wallet_pay,
                t.acct_mulaid_pay,
                t.psn_cash_pay,
            ] {
                e.put(v);
            }
        }
    }

    fn encode_persons(&self, e: &mut Enc<'_>) {
        let p = &self.persons;
        e.count(p.len());
        for (ends, bytes) in [
            (&p.psn_no_end, &p.psn_no_bytes),
            (&p.name_end, &p.name_bytes),
        ] {
            e.0.reserve(ends.len() + bytes.len());
            let mut prev = 0;
            for &end in ends.iter() {
                e.0.push(u8::try_from(end - prev).expect("psn_no and name fit 255 bytes"));
                prev = end;
            }
            e.0.extend_from_slice(bytes);
        }
        e.col(&p.certno);
        let hot = &p.hot;
        e.col(&hot.iter().map(|h| h.admdvs).collect::<Vec<u32>>());
        e.col(&hot.iter().map(|h| h.flags).collect::<Vec<u8>>());
        e.col(&hot.iter().map(|h| h.acct).collect::<Vec<Fen>>());
        e.col(&hot.iter().map(|h| h.wallet).collect::<Vec<Fen>>());
        e.col(&p.given_head);
        e.col(&hot.iter().map(|h| h.received_head).collect::<Vec<u32>>());
        e.col(&p.entry_head);
        e.col(&hot.iter().map(|h| h.entry_tail).collect::<Vec<u32>>());
        e.col(&p.wallet_day);
        e.col(&p.credit_last);
        e.col(&p.credit_mask);
    }

    /// Decodes a snapshot made by [`State::encode_snapshot`], validating everything (see the
    /// module documentation) and finally running [`State::check`].
    pub fn decode_snapshot(bytes: &[u8]) -> Result<State, SnapshotDecodeError> {
        let mut d = Dec { buf: bytes, pos: 0 };
        if d.take(MAGIC.len())? != MAGIC {
            return fail(0, "not a gongji snapshot");
        }
        if d.get::<u32>()? != Self::SNAPSHOT_FORMAT_VERSION {
            return fail(MAGIC.len(), "unknown snapshot format version");
        }
        let params = decode_params(&mut d)?;
        let clock = d.get()?;
        let op_count = d.get()?;
        let ledger = Ledger {
            acct_total: d.get()?,
            wallet_total: d.get()?,
            held: d.get()?,
            credited: d.get()?,
            paid_institutions: d.get()?,
            returned_by_cancellations: d.get()?,
            paid_contributions: d.get()?,
        };
        let (mut persons, heads) = decode_persons(&mut d)?;
        let n = persons.len();

        let count = d.count(8, "credit overflow count")?;
        let mut prev = None;
        let overflow = d.records(count, 8, |_, r| {
            let i = r.index(n, "credit overflow person")?;
            let period = r.get::<u32>();
            if prev.is_some_and(|prev| prev >= (i, period)) {
                return Err("credit overflow not ascending");
            }
            prev = Some((i, period));
            let last = persons.credit_last[i as usize];
            if period == 0 || last <= period || last - period <= CREDIT_MASK_MONTHS {
                return Err("credit overflow period");
            }
            Ok((i, period))
        })?;
        persons.credit_overflow = overflow.into_iter().collect::<BTreeSet<_>>();

        let insts = decode_institutions(&mut d)?;
        let tokens = decode_tokens(&mut d, n, insts.list.len())?;

        let count = d.count(BINDING_BYTES, "binding count")?;
        let bindings = d.records(count, BINDING_BYTES, |i, r| {
            let giver = r.index(n, "binding giver")?;
            let receiver = r.index(n, "binding receiver")?;
            let relation = r.tag(&RELATIONS, "relation")?;
            let scope = r.tag(&SCOPES, "scope")?;
            let active = r.bool()?;
            let id = i as u32 + 1;
            let link = |r: &mut Rec<'_>| {
                let next = r.get::<u32>();
                let ok = if active {
                    next == 0 || (next > id && next as usize <= count)
                } else {
                    next == 0
                };
                if ok {
                    Ok(next)
                } else {
                    Err("binding link")
                }
            };
            Ok(Binding {
                giver,
                receiver,
                relation,
                scope,
                active,
                next_given: link(r)?,
                next_received: link(r)?,
            })
        })?;
        check_binding_lists(&persons, &bindings, &heads)?;

        let setls_at = d.pos + 8;
        let count = d.count(SETTLEMENT_BYTES, "settlement count")?;
        let n_insts = insts.list.len();
        let setls = d.records(count, SETTLEMENT_BYTES, |_, r| {
            let psn = r.index(n, "settlement person")?;
            let inst = r.index(n_insts, "settlement institution")?;
            let time = r.get();
            let medfee = r.get();
            let fund_pay: Fen = r.get();
            if fund_pay > medfee {
                return Err("fund exceeds medfee");
            }
            Ok(Settlement {
                psn,
                inst,
                time,
                medfee,
                fund_pay,
                acct_pay: r.get(),
                wallet_pay: r.get(),
                mulaid: r.get(),
                cash: r.get(),
                acct_balc: r.get(),
                wallet_balc: r.get(),
                details_start: r.get(),
                details_len: r.get(),
                cross_pool: r.bool()?,
                cancelled: r.bool()?,
            })
        })?;
        let count = d.count(DETAIL_BYTES, "detail count")?;
        let details = d.records(count, DETAIL_BYTES, |_, r| {
            Ok(Detail {
                giver: r.index(n, "detail giver")?,
                amount: r.get(),
            })
        })?;
        // Details are appended settlement by settlement: the ranges tile the vector.
        let mut next_detail = 0u64;
        for (s, setl) in setls.iter().enumerate() {
            if u64::from(setl.details_start) != next_detail {
                return fail(setls_at + s * SETTLEMENT_BYTES, "settlement details range");
            }
            next_detail += u64::from(setl.details_len);
        }
        if next_detail != details.len() as u64 {
            return fail(setls_at, "settlement details do not cover the details");
        }

        let count = d.count(TRANSFER_BYTES, "transfer count")?;
        let transfers = d.records(count, TRANSFER_BYTES, |_, r| {
            Ok(Transfer {
                from: r.index(n, "transfer sender")?,
                to: r.index(n, "transfer receiver")?,
                amount: r.get(),
                source: r.tag(&SOURCES, "transfer source")?,
                cross_province: r.bool()?,
                status: r.tag(&TRANSFER_STATUSES, "transfer status")?,
                created: r.get(),
                expires_at: r.get(),
            })
        })?;
        let count = d.count(QUEUE_BYTES, "expiry queue count")?;
        // Transfers are queued as they are made: by time, and by id without repeats.
        let (mut prev_time, mut prev_t) = (i64::MIN, None);
        let queue = d.records(count, QUEUE_BYTES, |_, r| {
            let time: i64 = r.get();
            let t = r.index(transfers.len(), "queued transfer")?;
            if prev_t.is_some_and(|prev| prev >= t) {
                return Err("expiry queue not in transfer order");
            }
            if time < prev_time || time != transfers[t as usize].expires_at {
                return Err("expiry queue time");
            }
            (prev_time, prev_t) = (time, Some(t));
            Ok((time, t))
        })?;
        let expiry_queue = VecDeque::from(queue);

        let count = d.count(CONTRIBUTION_BYTES, "contribution count")?;
        let contributions = d.records(count, CONTRIBUTION_BYTES, |_, r| {
            Ok(Contribution {
                payer: r.index(n, "contribution payer")?,
                psn: r.index(n, "contribution person")?,
                year: r.get(),
                amount: r.get(),
                time: r.get(),
                acct_balc: r.get(),
            })
        })?;
        let count = d.count(PAID_BYTES, "contributions paid count")?;
        let mut contributions_paid = FxHashSet::with_capacity_and_hasher(count, Default::default());
        let mut prev = None;
        d.records(count, PAID_BYTES, |_, r| {
            let key = (r.index(n, "contribution paid person")?, r.get::<u16>());
            if prev.is_some_and(|prev| prev >= key) {
                return Err("contributions paid not ascending");
            }
            prev = Some(key);
            contributions_paid.insert(key);
            Ok(())
        })?;

        let entries_at = d.pos + 8;
        let count = d.count(ENTRY_BYTES, "entry count")?;
        let limits = RefLimits {
            persons: n,
            insts: n_insts,
            setls: setls.len() as u64,
            transfers: transfers.len() as u64,
            contributions: contributions.len() as u64,
        };
        let entries = d.records(count, ENTRY_BYTES, |i, r| {
            decode_entry(i as u32 + 1, count, &limits, r)
        })?;
        check_entry_lists(&persons, &entries, &heads, entries_at)?;

        let limits = ReplyLimits {
            persons: &persons,
            bindings: &bindings,
            setls: setls.len(),
        };
        let msgids = decode_msgids(&mut d, &limits)?;
        let stats = decode_stats(&mut d)?;
        let recon = decode_recon(&mut d, n_insts)?;
        if d.pos != bytes.len() {
            return fail(d.pos, "trailing bytes");
        }

        let recent = super::recent::Recent::rebuild(setls.iter().map(|s| s.inst));
        let masked = super::masked::MaskedIndex::rebuild(&persons.certno);
        let state = State {
            params,
            clock,
            persons,
            insts,
            tokens,
            bindings,
            setls: setls.into(),
            details,
            transfers,
            expiry_queue,
            contributions,
            contributions_paid,
            entries: entries.into(),
            msgids,
            recent,
            masked,
            stats,
            recon,
            ledger,
            op_count,
            scratch: Vec::with_capacity(256),
            expired_scratch: Vec::new(),
        };
        state.check_sums().or_else(|what| fail(bytes.len(), what))?;
        state.check().map_err(|detail| SnapshotDecodeError {
            offset: bytes.len(),
            what: "state check failed",
            detail: Some(detail),
        })?;
        Ok(state)
    }

    /// Checks that every sum [`State::check`] and later writes compute fits in a u64 and that
    /// the stored ledger conserves money, so that neither can panic on a decoded state.
    fn check_sums(&self) -> Result<(), &'static str> {
        fn add(a: u64, b: u64) -> Result<u64, &'static str> {
            a.checked_add(b).ok_or("amounts overflow")
        }
        let hot = &self.persons.hot;
        hot.iter().try_fold(0, |a, h| add(a, h.acct.0))?;
        hot.iter().try_fold(0, |a, h| add(a, h.wallet.0))?;
        let mut held = 0;
        for t in &self.transfers {
            if t.status == TransferStatus::Pending {
                held = add(held, t.amount.0)?;
            }
        }
        // Statistics cells: mutual aid, contributions and accepted transfers.
        let mut counted = 0;
        let mut credited = 0;
        for e in &self.entries {
            match (e.kind, e.reference) {
                (EntryKind::Credit, _) => credited = add(credited, e.amount as u64)?,
                (EntryKind::WalletIn, EntryRef::Transfer(id)) => {
                    counted = add(counted, self.transfers[id as usize - 1].amount.0)?;
                }
                _ => {}
            }
        }
        let (mut paid, mut returned) = (0, 0);
        let mut totals = [0u64; 4];
        for s in &self.setls {
            let p = add(add(s.acct_pay.0, s.wallet_pay.0)?, s.mulaid.0)?;
            paid = add(paid, p)?;
            // Reconciliation sums these per institution and day.
            for (t, v) in totals
                .iter_mut()
                .zip([s.medfee.0, s.fund_pay.0, s.cash.0, p])
            {
                *t = add(*t, v)?;
            }
            if s.cancelled {
                returned = add(returned, p)?;
            } else {
                counted = add(counted, s.mulaid.0)?;
            }
        }
        for c in &self.contributions {
            counted = add(counted, c.amount.0)?;
        }
        let l = &self.ledger;
        let inside = u128::from(l.acct_total) + u128::from(l.wallet_total) + u128::from(l.held);
        let flows = i128::from(l.credited)
            - i128::from(l.paid_institutions)
            - i128::from(l.paid_contributions)
            + i128::from(l.returned_by_cancellations);
        if inside as i128 != flows {
            return Err("ledger does not conserve money");
        }
        Ok(())
    }
}

fn encode_params(p: &Params, e: &mut Enc<'_>) {
    e.put(p.binding_receivers_max);
    e.put(p.binding_givers_max);
    e.put(p.wallet_amount_max);
    e.put(p.wallet_daily_count_max);
    e.put(p.wallet_closed_from_second);
    e.put(p.wallet_closed_until_second);
    e.put(p.wallet_expiry_second);
    for s in p.draw_order {
        e.put(s as u8);
    }
    e.put(p.msgid_retention_days);
}

fn decode_params(d: &mut Dec<'_>) -> Res<Params> {
    let at = d.pos;
    let params = Params {
        binding_receivers_max: d.get()?,
        binding_givers_max: d.get()?,
        wallet_amount_max: d.get()?,
        wallet_daily_count_max: d.get()?,
        wallet_closed_from_second: d.get()?,
        wallet_closed_until_second: d.get()?,
        wallet_expiry_second: d.get()?,
        draw_order: [
            d.tag(&DRAW_SOURCES, "draw source")?,
            d.tag(&DRAW_SOURCES, "draw source")?,
            d.tag(&DRAW_SOURCES, "draw source")?,
        ],
        msgid_retention_days: d.get()?,
    };
    params.validate().or_else(|what| fail(at, what))?;
    Ok(params)
}

/// Where the person columns that later sections point into start, for error offsets.
struct HeadsAt {
    given: usize,
    received: usize,
    entry_head: usize,
    entry_tail: usize,
}

/// A string arena from per-item u8 lengths: (ends, bytes, offset of the bytes).
fn decode_arena(d: &mut Dec<'_>, n: usize) -> Res<(Vec<u32>, Vec<u8>, usize)> {
    let lens = d.take(n)?;
    let mut ends = Vec::with_capacity(n);
    let mut end = 0u64;
    for &len in lens {
        end += u64::from(len);
        ends.push(end as u32);
    }
    if end > u64::from(u32::MAX) {
        return fail(d.pos, "string arena too long");
    }
    let at = d.pos;
    let bytes = d.take(end as usize)?.to_vec();
    Ok((ends, bytes, at))
}

fn decode_persons(d: &mut Dec<'_>) -> Res<(Persons, HeadsAt)> {
    let n = d.count(PERSON_MIN_BYTES, "person count")?;
    let (psn_no_end, psn_no_bytes, psn_no_at) = decode_arena(d, n)?;
    let mut start = 0;
    for &end in &psn_no_end {
        if !code_bytes_valid(&psn_no_bytes[start..end as usize]) {
            return fail(psn_no_at + start, "psn_no");
        }
        start = end as usize;
    }
    let (name_end, name_bytes, at) = decode_arena(d, n)?;
    let names = match std::str::from_utf8(&name_bytes) {
        Ok(names) => names,
        Err(e) => return fail(at + e.valid_up_to(), "utf-8"),
    };
    let mut start = 0;
    for &end in &name_end {
        let end = end as usize;
        if end == start || end - start > NAME_BYTES_MAX || !names.is_char_boundary(end) {
            return fail(at + start, "name");
        }
        start = end;
    }
    let certno_at = d.pos;
    let certno: Vec<u64> = d.col(n)?;
    let at = d.pos;
    let admdvs: Vec<u32> = d.col(n)?;
    if let Some(i) = admdvs.iter().position(|&a| !admdvs_valid(a)) {
        return fail(at + i * 4, "person admdvs");
    }
    let at = d.pos;
    let flags: Vec<u8> = d.col(n)?;
    if let Some(i) = flags.iter().position(|&f| f & !FLAGS_ALL != 0) {
        return fail(at + i, "person flags");
    }
    let acct: Vec<Fen> = d.col(n)?;
    let wallet: Vec<Fen> = d.col(n)?;
    let heads_at = d.pos;
    let given_head = d.col(n)?;
    let received_head: Vec<u32> = d.col(n)?;
    let entry_head = d.col(n)?;
    let entry_tail: Vec<u32> = d.col(n)?;
    let hot = (0..n)
        .map(|i| Hot {
            acct: acct[i],
            wallet: wallet[i],
            admdvs: admdvs[i],
            received_head: received_head[i],
            entry_tail: entry_tail[i],
            flags: flags[i],
        })
        .collect();
    let wallet_day = d.col(n)?;
    let credit_last: Vec<u32> = d.col(n)?;
    let at = d.pos;
    let credit_mask: Vec<u64> = d.col(n)?;
    for (i, (&last, &mask)) in credit_last.iter().zip(&credit_mask).enumerate() {
        // Bit k marks period last-1-k, which must be a period (>= 1).
        let allowed = match last {
            0 => 0,
            l if l > CREDIT_MASK_MONTHS => u64::MAX,
            l => (1u64 << (l - 1)) - 1,
        };
        if mask & !allowed != 0 {
            return fail(at + i * 8, "credit mask");
        }
    }

    let mut index = HashTable::with_capacity(n);
    let psn_no = |i: u32| {
        let end = psn_no_end[i as usize] as usize;
        let start = if i == 0 {
            0
        } else {
            psn_no_end[i as usize - 1] as usize
        };
        &psn_no_bytes[start..end]
    };
    let mut start = 0;
    for i in 0..n as u32 {
        let key = psn_no(i);
        let hash = hash_bytes(key);
        match index.entry(hash, |&j| psn_no(j) == key, |&j| hash_bytes(psn_no(j))) {
            TableEntry::Occupied(_) => return fail(psn_no_at + start, "duplicate psn_no"),
            TableEntry::Vacant(v) => {
                v.insert(i);
            }
        }
        start += key.len();
    }
    let mut certno_index = HashTable::with_capacity(n);
    for (i, &c) in certno.iter().enumerate() {
        let found = certno_index.entry(
            hash_certno(c),
            |&j: &u32| certno[j as usize] == c,
            |&j: &u32| hash_certno(certno[j as usize]),
        );
        match found {
            TableEntry::Occupied(_) => return fail(certno_at + i * 8, "duplicate certno"),
            TableEntry::Vacant(v) => {
                v.insert(i as u32);
            }
        }
    }
    let heads = HeadsAt {
        given: heads_at,
        received: heads_at + n * 4,
        entry_head: heads_at + n * 8,
        entry_tail: heads_at + n * 12,
    };
    let persons = Persons {
        index,
        psn_no_bytes,
        psn_no_end,
        name_bytes,
        name_end,
        certno_index,
        certno,
        hot,
        given_head,
        entry_head,
        wallet_day,
        credit_last,
        credit_mask,
        credit_overflow: BTreeSet::new(),
    };
    Ok((persons, heads))
}

fn decode_institutions(d: &mut Dec<'_>) -> Res<Institutions> {
    let count = d.count(1 + 1 + 1 + 1 + 1 + 4, "institution count")?;
    let mut insts = Institutions {
        index: FxHashMap::with_capacity_and_hasher(count, Default::default()),
        list: Vec::with_capacity(count),
    };
    for i in 0..count {
        let at = d.pos;
        let code = d.arr::<30>()?;
        if !code_bytes_valid(code.as_bytes()) {
            return fail(at, "fixmedins_code");
        }
        let at_name = d.pos;
        let name = d.str8()?;
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return fail(at_name, "institution name");
        }
        let kind = d.tag(&INST_TYPES, "institution type")?;
        let at_admdvs = d.pos;
        let admdvs = d.get()?;
        if !admdvs_valid(admdvs) {
            return fail(at_admdvs, "institution admdvs");
        }
        if insts.index.insert(code, i as u32).is_some() {
            return fail(at, "duplicate fixmedins_code");
        }
        insts.list.push(Institution {
            code,
            name: name.to_owned(),
            kind,
            admdvs,
        });
    }
    Ok(insts)
}

fn decode_tokens(d: &mut Dec<'_>, persons: usize, insts: usize) -> Res<Tokens> {
    let count = d.count(TOKEN_BYTES, "token count")?;
    let mut index = FxHashMap::with_capacity_and_hasher(count, Default::default());
    let list = d.records(count, TOKEN_BYTES, |i, r| {
        let mut hash = [0u8; 32];
        for b in &mut hash {
            *b = r.get();
        }
        let role = r.tag(&ROLES, "role")?;
        let scope = r.get::<u32>();
        let in_scope = match role {
            Role::Admin => scope == 0,
            Role::Institution => (scope as usize) < insts,
            Role::Person => (scope as usize) < persons,
        };
        if !in_scope {
            return Err("token scope");
        }
        if index.insert(hash, i as u32).is_some() {
            return Err("duplicate token hash");
        }
        Ok(Token {
            hash,
            role,
            scope,
            revoked: r.bool()?,
        })
    })?;
    Ok(Tokens { index, list })
}

/// Every active binding is in its giver's and its receiver's list exactly once; nothing else
/// is. Links point forward (checked on decode), so the walks end.
fn check_binding_lists(persons: &Persons, bindings: &[Binding], at: &HeadsAt) -> Res<()> {
    let count = bindings.len();
    let (mut given, mut received) = (0usize, 0usize);
    for p in 0..persons.len() {
        let mut b = persons.given_head[p];
        if b as usize > count {
            return fail(at.given + p * 4, "given list head");
        }
        while b != 0 {
            let binding = &bindings[b as usize - 1];
            if binding.giver as usize != p || !binding.active {
                return fail(at.given + p * 4, "given list");
            }
            given += 1;
            b = binding.next_given;
        }
        let mut b = persons.hot[p].received_head;
        if b as usize > count {
            return fail(at.received + p * 4, "received list head");
        }
        while b != 0 {
            let binding = &bindings[b as usize - 1];
            if binding.receiver as usize != p || !binding.active {
                return fail(at.received + p * 4, "received list");
            }
            received += 1;
            b = binding.next_received;
        }
    }
    let active = bindings.iter().filter(|b| b.active).count();
    if given != active || received != active {
        return fail(at.given, "active bindings not all linked");
    }
    Ok(())
}

struct RefLimits {
    persons: usize,
    insts: usize,
    setls: u64,
    transfers: u64,
    contributions: u64,
}

fn encode_entry(entry: &Entry, e: &mut Enc<'_>) {
    e.put(entry.psn);
    e.put(entry.next);
    e.bool(entry.wallet);
    e.put(entry.kind as u8);
    e.put(entry.time);
    e.put(entry.amount);
    e.put(entry.balc);
    let (tag, v) = match entry.counterparty {
        Counterparty::None => (0u8, 0),
        Counterparty::Person(p) => (1, p),
        Counterparty::Institution(i) => (2, i),
    };
    e.put(tag);
    e.put(v);
    let (tag, v) = match entry.reference {
        EntryRef::Settlement(id) => (0u8, id),
        EntryRef::Transfer(id) => (1, id),
        EntryRef::Contribution(id) => (2, id),
        EntryRef::Period(p) => (3, u64::from(p)),
    };
    e.put(tag);
    e.put(v);
}

fn decode_entry(
    id: u32,
    count: usize,
    limits: &RefLimits,
    r: &mut Rec<'_>,
) -> Result<Entry, &'static str> {
    let psn = r.index(limits.persons, "entry person")?;
    let next: u32 = r.get();
    if next != 0 && (next <= id || next as usize > count) {
        return Err("entry link");
    }
    let wallet = r.bool()?;
    let kind = r.tag(&KINDS, "entry kind")?;
    let time = r.get();
    let amount = r.get();
    let balc = r.get();
    let tag: u8 = r.get();
    let v: u32 = r.get();
    let counterparty = match tag {
        0 if v == 0 => Counterparty::None,
        1 if (v as usize) < limits.persons => Counterparty::Person(v),
        2 if (v as usize) < limits.insts => Counterparty::Institution(v),
        _ => return Err("entry counterparty"),
    };
    let tag: u8 = r.get();
    let v: u64 = r.get();
    let reference = match tag {
        0 if (1..=limits.setls).contains(&v) => EntryRef::Settlement(v),
        1 if (1..=limits.transfers).contains(&v) => EntryRef::Transfer(v),
        2 if (1..=limits.contributions).contains(&v) => EntryRef::Contribution(v),
        3 if v <= u64::from(u32::MAX) => EntryRef::Period(v as u32),
        _ => return Err("entry reference"),
    };
    Ok(Entry {
        psn,
        next,
        wallet,
        kind,
        time,
        amount,
        balc,
        counterparty,
        reference,
    })
}

/// A person's entry list holds exactly the person's entries in order: entries are only ever
/// appended to the tail (and the newest popped). One pass checks every link, head and tail.
fn check_entry_lists(
    persons: &Persons,
    entries: &[Entry],
    heads: &HeadsAt,
    entries_at: usize,
) -> Res<()> {
    let mut tail = vec![0u32; persons.len()];
    for (e, entry) in entries.iter().enumerate() {
        let id = e as u32 + 1;
        let p = entry.psn as usize;
        let linked = match tail[p] {
            0 => persons.entry_head[p] == id,
            t => entries[t as usize - 1].next == id,
        };
        if !linked {
            return fail(entries_at + e * ENTRY_BYTES, "entry not linked");
        }
        tail[p] = id;
    }
    for (p, &t) in tail.iter().enumerate() {
        if t == 0 && persons.entry_head[p] != 0 {
            return fail(heads.entry_head + p * 4, "entry list head");
        }
        if persons.hot[p].entry_tail != t {
            return fail(heads.entry_tail + p * 4, "entry list tail");
        }
        if t != 0 && entries[t as usize - 1].next != 0 {
            return fail(
                entries_at + (t as usize - 1) * ENTRY_BYTES,
                "entry after tail",
            );
        }
    }
    Ok(())
}

fn decode_msgids(d: &mut Dec<'_>, limits: &ReplyLimits<'_>) -> Res<Msgids> {
    let count = d.count(16 + 8 + 1, "msgid count")?;
    // Ascending by key, so the fifo finds its records by binary search; each is taken once.
    let mut records: Vec<(u128, Option<MsgRecord>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = d.pos;
        let key: u128 = d.get()?;
        if records.last().is_some_and(|&(prev, _)| prev >= key) {
            return fail(at, "msgids not ascending");
        }
        let fingerprint = d.get()?;
        let reply = decode_reply(d, limits)?;
        records.push((key, Some(MsgRecord { fingerprint, reply })));
    }
    let fifo_at = d.pos + 8;
    let count = d.count(FIFO_BYTES, "msgid fifo count")?;
    let mut prev = i64::MIN;
    let mut msgids = Msgids::default();
    let mut repeated = false;
    d.records(count, FIFO_BYTES, |_, r| {
        let time: i64 = r.get();
        if time < prev {
            return Err("msgid fifo out of order");
        }
        prev = time;
        let key: u128 = r.get();
        let Ok(at) = records.binary_search_by_key(&key, |&(k, _)| k) else {
            return Err("msgid fifo key not recorded");
        };
        match records[at].1.take() {
            Some(MsgRecord { fingerprint, reply }) => msgids.insert(key, fingerprint, reply, time),
            None => repeated = true,
        }
        Ok(())
    })?;
    // Every recorded msgid is in the fifo exactly once.
    if repeated || count != records.len() {
        return fail(fifo_at, "msgid fifo does not match the records");
    }
    Ok(msgids)
}

fn decode_stats(d: &mut Dec<'_>) -> Res<Stats> {
    let count = d.count(MONTH_BYTES, "statistics month count")?;
    let mut months = Vec::with_capacity(count);
    let mut prev = None;
    for _ in 0..count {
        let at = d.pos;
        let period = Period(d.get()?);
        if prev.is_some_and(|prev| prev >= period) {
            return fail(at, "statistics months not ascending");
        }
        prev = Some(period);
        let mut month = Box::new([[Cell::default(); 4]; PROVINCES.len()]);
        for cells in month.iter_mut() {
            for cell in cells {
                cell.count = d.get()?;
                cell.amount = d.get()?;
            }
        }
        months.push((period, month));
    }
    Ok(Stats {
        months: months.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

fn decode_recon(d: &mut Dec<'_>, insts: usize) -> Res<FxHashMap<(u32, i32), ReconTotals>> {
    let count = d.count(RECON_BYTES, "reconciliation count")?;
    let mut recon = FxHashMap::with_capacity_and_hasher(count, Default::default());
    let mut prev = None;
    d.records(count, RECON_BYTES, |_, r| {
        let key = (
            r.index(insts, "reconciliation institution")?,
            r.get::<i32>(),
        );
        if prev.is_some_and(|prev| prev >= key) {
            return Err("reconciliation not ascending");
        }
        prev = Some(key);
        let totals = ReconTotals {
            setl_count: r.get(),
            medfee_sumamt: r.get(),
            fund_pay_sumamt: r.get(),
            acct_pay: r.get(),
            wallet_pay: r.get(),
            acct_mulaid_pay: r.get(),
            psn_cash_pay: r.get(),
        };
        recon.insert(key, totals);
        Ok(())
    })?;
    Ok(recon)
}

// Reply tags. 0 is a msgid blocked by a reversal (no reply).
const REPLY_NONE: u8 = 0;
const REPLY_TOKEN_CREATED: u8 = 1;
const REPLY_TOKEN_REVOKED: u8 = 2;
const REPLY_PERSON: u8 = 3;
const REPLY_INSTITUTION: u8 = 4;
const REPLY_CREDITED: u8 = 5;
/// A whole binding view, as the first encoder wrote binding replies. No longer written;
/// decoded into [`Reply::Bound`] after checking that its immutable fields are the binding's.
const REPLY_BINDING_VIEW: u8 = 6;
const REPLY_SETTLED: u8 = 7;
const REPLY_CANCELLED: u8 = 8;
const REPLY_REVERSAL: u8 = 9;
const REPLY_TRANSFER: u8 = 10;
const REPLY_CONTRIBUTION: u8 = 11;
const REPLY_TICK: u8 = 12;
const REPLY_ENROLLED: u8 = 13;
const REPLY_BOUND: u8 = 14;

/// What a decoded reply may refer to.
struct ReplyLimits<'a> {
    persons: &'a Persons,
    bindings: &'a [Binding],
    setls: usize,
}

fn encode_reply(reply: Option<&Reply>, e: &mut Enc<'_>) {
    let Some(reply) = reply else {
        e.put(REPLY_NONE);
        return;
    };
    match reply {
        Reply::TokenCreated { token_id } => {
            e.put(REPLY_TOKEN_CREATED);
            e.put(*token_id);
        }
        Reply::TokenRevoked { token_id } => {
            e.put(REPLY_TOKEN_REVOKED);
            e.put(*token_id);
        }
        Reply::Enrolled(i) => {
            e.put(REPLY_ENROLLED);
            e.put(*i);
        }
        Reply::Person(v) => {
            e.put(REPLY_PERSON);
            e.str8(&v.psn_no);
            e.str16(&v.certno_masked);
            e.str16(&v.psn_name_masked);
            e.put(v.insutype as u8);
            e.put(v.admdvs);
            e.put(v.status as u8);
            e.put(v.acct_balc);
            e.bool(v.wallet_open);
            e.put(v.wallet_balc);
            for list in [&v.bindings_given, &v.bindings_received] {
                e.put(u16::try_from(list.len()).expect("a person's bindings fit u16"));
                for b in list {
                    encode_binding_view(b, e);
                }
            }
        }
        Reply::Institution(v) => {
            e.put(REPLY_INSTITUTION);
            e.str8(&v.fixmedins_code);
            e.str16(&v.fixmedins_name);
            e.put(v.fixmedins_type as u8);
            e.put(v.admdvs);
        }
        Reply::Credited { count, sum } => {
            e.put(REPLY_CREDITED);
            e.put(*count);
            e.put(*sum);
        }
        Reply::Bound {
            binding,
            priority,
            active,
        } => {
            e.put(REPLY_BOUND);
            e.put(*binding);
            e.put(*priority);
            e.bool(*active);
        }
        Reply::Settled(s) => {
            e.put(REPLY_SETTLED);
            e.put(*s);
        }
        Reply::Cancelled(s) => {
            e.put(REPLY_CANCELLED);
            e.put(*s);
        }
        Reply::Reversal { omsgid, result } => {
            e.put(REPLY_REVERSAL);
            e.str8(omsgid);
            e.put(*result as u8);
        }
        Reply::Transfer(v) => {
            e.put(REPLY_TRANSFER);
            e.put(v.transfer_id);
            e.str8(&v.from_psn_no);
            e.str8(&v.to_psn_no);
            e.put(v.amount);
            e.put(v.source as u8);
            e.bool(v.cross_province);
            e.put(v.status as u8);
            e.put(v.created);
            e.put(v.expires_at);
            match v.sender_balances {
                None => e.bool(false),
                Some((acct, wallet)) => {
                    e.bool(true);
                    e.put(acct);
                    e.put(wallet);
                }
            }
        }
        Reply::Contribution(v) => {
            e.put(REPLY_CONTRIBUTION);
            e.put(v.contribution_id);
            e.str8(&v.payer_psn_no);
            e.str8(&v.psn_no);
            e.put(v.year);
            e.put(v.amount);
            e.put(v.acct_balc);
        }
        Reply::Tick { expired } => {
            e.put(REPLY_TICK);
            e.put(*expired);
        }
    }
}

fn encode_binding_view(v: &BindingView, e: &mut Enc<'_>) {
    e.put(v.binding_id);
    e.str8(&v.giver_psn_no);
    e.str8(&v.receiver_psn_no);
    e.put(v.relation as u8);
    e.put(v.scope as u8);
    e.put(v.priority);
    e.bool(v.active);
}

fn decode_binding_view(d: &mut Dec<'_>) -> Res<BindingView> {
    Ok(BindingView {
        binding_id: d.get()?,
        giver_psn_no: d.arr()?,
        receiver_psn_no: d.arr()?,
        relation: d.tag(&RELATIONS, "relation")?,
        scope: d.tag(&SCOPES, "scope")?,
        priority: d.get()?,
        active: d.bool()?,
    })
}

fn decode_reply(d: &mut Dec<'_>, limits: &ReplyLimits<'_>) -> Res<Option<Reply>> {
    let at = d.pos;
    let index = |d: &mut Dec<'_>, len: usize, what: &'static str| {
        let at = d.pos;
        let i: u32 = d.get()?;
        if (i as usize) < len {
            Ok(i)
        } else {
            fail(at, what)
        }
    };
    let settlement = |d: &mut Dec<'_>| index(d, limits.setls, "reply settlement");
    Ok(Some(match d.get::<u8>()? {
        REPLY_NONE => return Ok(None),
        REPLY_TOKEN_CREATED => Reply::TokenCreated { token_id: d.get()? },
        REPLY_TOKEN_REVOKED => Reply::TokenRevoked { token_id: d.get()? },
        REPLY_PERSON => {
            let mut v = PersonView {
                psn_no: d.arr()?,
                certno_masked: d.str16()?.to_owned(),
                psn_name_masked: d.str16()?.to_owned(),
                insutype: d.tag(&INSUTYPES, "insutype")?,
                admdvs: d.get()?,
                status: d.tag(&STATUSES, "person status")?,
                acct_balc: d.fen()?,
                wallet_open: d.bool()?,
                wallet_balc: d.fen()?,
                bindings_given: Vec::new(),
                bindings_received: Vec::new(),
            };
            for list in [&mut v.bindings_given, &mut v.bindings_received] {
                let at = d.pos;
                let len = usize::from(d.get::<u16>()?);
                // A binding view is at least 19 bytes.
                if len > d.left() / 19 {
                    return fail(at, "binding view count");
                }
                list.reserve_exact(len);
                for _ in 0..len {
                    list.push(decode_binding_view(d)?);
                }
            }
            Reply::Person(Box::new(v))
        }
        REPLY_INSTITUTION => Reply::Institution(Box::new(InstitutionView {
            fixmedins_code: d.arr()?,
            fixmedins_name: d.str16()?.to_owned(),
            fixmedins_type: d.tag(&INST_TYPES, "institution type")?,
            admdvs: d.get()?,
        })),
        REPLY_CREDITED => Reply::Credited {
            count: d.get()?,
            sum: d.fen()?,
        },
        REPLY_ENROLLED => Reply::Enrolled(index(d, limits.persons.len(), "reply person")?),
        REPLY_BOUND => Reply::Bound {
            binding: index(d, limits.bindings.len(), "reply binding")?,
            priority: d.get()?,
            active: d.bool()?,
        },
        REPLY_BINDING_VIEW => {
            let v = decode_binding_view(d)?;
            let b = v.binding_id.wrapping_sub(1);
            let p = limits.persons;
            let same = limits.bindings.get(b as usize).is_some_and(|binding| {
                p.psn_no(binding.giver) == v.giver_psn_no.as_str()
                    && p.psn_no(binding.receiver) == v.receiver_psn_no.as_str()
                    && binding.relation == v.relation
                    && binding.scope == v.scope
            });
            if !same {
                return fail(at, "reply binding");
            }
            Reply::Bound {
                binding: b as u32,
                priority: v.priority,
                active: v.active,
            }
        }
        REPLY_SETTLED => Reply::Settled(settlement(d)?),
        REPLY_CANCELLED => Reply::Cancelled(settlement(d)?),
        REPLY_REVERSAL => Reply::Reversal {
            omsgid: Box::new(d.arr()?),
            result: d.tag(&REVERSAL_RESULTS, "reversal result")?,
        },
        REPLY_TRANSFER => Reply::Transfer(Box::new(TransferView {
            transfer_id: d.get()?,
            from_psn_no: d.arr()?,
            to_psn_no: d.arr()?,
            amount: d.fen()?,
            source: d.tag(&SOURCES, "transfer source")?,
            cross_province: d.bool()?,
            status: d.tag(&TRANSFER_STATUSES, "transfer status")?,
            created: d.get()?,
            expires_at: d.get()?,
            sender_balances: if d.bool()? {
                Some((d.fen()?, d.fen()?))
            } else {
                None
            },
        })),
        REPLY_CONTRIBUTION => Reply::Contribution(Box::new(ContributionView {
            contribution_id: d.get()?,
            payer_psn_no: d.arr()?,
            psn_no: d.arr()?,
            year: d.get()?,
            amount: d.fen()?,
            acct_balc: d.fen()?,
        })),
        REPLY_TICK => Reply::Tick { expired: d.get()? },
        _ => return fail(at, "reply tag"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certno::certno_with_check;
    use crate::command::{Actor, Body, Command, CreditItem, Msgid, Op, PsnNo};
    use crate::time::parse_cst;

    /// A small driver: admin writes with fresh msgids at a moving clock.
    struct Builder {
        state: State,
        seq: u64,
        time: i64,
    }

    fn psn(i: u32) -> PsnNo {
        PsnNo::from(&format!("P{i:07}")).unwrap()
    }

    /// A certno with a valid province, birth date and check character, unique per `i` below
    /// 20 million.
    fn certno(i: u32) -> String {
        let (seq, k) = (i % 1000, i / 1000);
        let (year, month, day) = (1950 + k % 60, 1 + (k / 60) % 12, 1 + (k / 720) % 28);
        certno_with_check(&format!("440106{year:04}{month:02}{day:02}{seq:03}")).unwrap()
    }

    impl Builder {
        fn new() -> Builder {
            Builder {
                state: State::new(Params::default()),
                seq: 0,
                time: parse_cst("2025-05-20 10:00:00").unwrap(),
            }
        }

        fn op(&mut self, body: Body) -> Op {
            self.seq += 1;
            Op::Write(Command {
                msgid: Msgid::from(&format!("m{}", self.seq)).unwrap(),
                time: self.time,
                actor: Actor::Admin,
                body,
            })
        }

        fn ok(&mut self, body: Body) -> Reply {
            let op = self.op(body);
            match self.state.apply(&op) {
                Ok(applied) => applied.reply,
                Err(r) => panic!("{op:?}: {r:?}"),
            }
        }

        fn tick(&mut self, seconds: i64) {
            self.time += seconds;
            let time = self.time;
            self.state.apply(&Op::Tick { time }).unwrap();
        }

        fn enrol(&mut self, i: u32, insutype: Insutype, admdvs: u32) {
            self.ok(Body::Enrol {
                psn_no: psn(i),
                certno: ArrayString::from(&certno(i)).unwrap(),
                psn_name: format!("张{i}"),
                insutype,
                admdvs,
            });
        }

        fn credit(&mut self, period: u32, items: &[(u32, u64)]) {
            let items = items
                .iter()
                .map(|&(i, amount)| CreditItem {
                    psn_no: psn(i),
                    amount: Fen(amount),
                })
                .collect();
            self.ok(Body::Credit {
                period: Period(period),
                items,
            });
        }

        fn bind(&mut self, giver: u32, receiver: u32) -> u64 {
            match self.ok(Body::Bind {
                giver_psn_no: psn(giver),
                receiver_psn_no: psn(receiver),
                relation: Relation::Child,
            }) {
                Reply::Bound {
                    binding,
                    priority,
                    active,
                } => self.state.bound_view(binding, priority, active).binding_id,
                r => panic!("{r:?}"),
            }
        }

        fn settle(&mut self, i: u32, medfee: u64, fund_pay: u64) -> u64 {
            match self.ok(Body::Settle {
                fixmedins_code: ArrayString::from("H001").unwrap(),
                psn_no: psn(i),
                medfee_sumamt: Fen(medfee),
                fund_pay_sumamt: Fen(fund_pay),
                acct_used: true,
            }) {
                Reply::Settled(s) => u64::from(s) + 1,
                r => panic!("{r:?}"),
            }
        }

        fn transfer(&mut self, from: u32, to: u32, amount: u64) -> u64 {
            match self.ok(Body::TransferCreate {
                from_psn_no: psn(from),
                to_psn_no: psn(to),
                amount: Fen(amount),
                source: TransferSource::Acct,
            }) {
                Reply::Transfer(v) => v.transfer_id,
                r => panic!("{r:?}"),
            }
        }
    }

    const MAY_2025: u32 = 2025 * 12 + 4;

    /// Persons 0..8 employees (0..6 in Guangdong, 6..8 in Beijing), 8..12 residents; every
    /// kind of record, including the rare ones.
    fn rich_state() -> Builder {
        let mut b = Builder::new();
        for i in 0..12 {
            let insutype = if i < 8 {
                Insutype::Employee
            } else {
                Insutype::Resident
            };
            b.enrol(
                i,
                insutype,
                if (6..8).contains(&i) { 110101 } else { 440106 },
            );
        }
        for (code, kind) in [("H001", InstType::Medical), ("Y002", InstType::Pharmacy)] {
            b.ok(Body::RegisterInstitution {
                fixmedins_code: ArrayString::from(code).unwrap(),
                fixmedins_name: format!("医院{code}"),
                fixmedins_type: kind,
                admdvs: 440106,
            });
        }
        b.ok(Body::CreateToken {
            token_hash: [1; 32],
            role: Role::Admin,
            fixmedins_code: None,
            psn_no: None,
        });
        b.ok(Body::CreateToken {
            token_hash: [2; 32],
            role: Role::Institution,
            fixmedins_code: Some(ArrayString::from("Y002").unwrap()),
            psn_no: None,
        });
        b.ok(Body::CreateToken {
            token_hash: [3; 32],
            role: Role::Person,
            fixmedins_code: None,
            psn_no: Some(psn(9)),
        });
        b.ok(Body::RevokeToken { token_id: 2 });
        // Credits: far-apart periods push old months into the overflow set, both by shifting
        // (a later period) and directly (a much earlier one).
        let all: Vec<(u32, u64)> = (0..8).map(|i| (i, 100_000 + u64::from(i))).collect();
        b.credit(MAY_2025 - 200, &all[..3]);
        b.credit(MAY_2025 - 100, &all[..3]);
        b.credit(MAY_2025, &all);
        b.credit(MAY_2025 - 150, &all[1..2]);
        b.credit(MAY_2025 - 3, &all[4..6]);
        assert!(!b.state.persons.credit_overflow.is_empty());
        // Bindings, some revoked, one cross-province (wallet only).
        b.bind(0, 1);
        let revoked = b.bind(0, 8);
        b.bind(0, 9);
        b.bind(2, 8);
        b.bind(3, 8);
        b.bind(4, 10);
        b.bind(6, 1);
        b.bind(5, 11);
        b.ok(Body::Revoke {
            binding_id: revoked,
        });
        b.bind(0, 8);
        b.ok(Body::Revoke { binding_id: 5 });
        // Settlements drawing on givers; one cancelled, one reversed, one blocked msgid.
        b.settle(8, 50_000, 10_000);
        let cancelled = b.settle(8, 150_000, 20_000);
        b.settle(1, 400_000, 100_000);
        b.settle(11, 20_000, 20_000);
        b.ok(Body::Cancel { setl_id: cancelled });
        b.settle(9, 30_000, 0);
        let settled = format!("m{}", b.seq);
        b.ok(Body::Reverse {
            omsgid: Msgid::from(&settled).unwrap(),
            fixmedins_code: None,
        });
        b.ok(Body::Reverse {
            omsgid: Msgid::from("never-applied").unwrap(),
            fixmedins_code: None,
        });
        // Contributions (resident receivers of in-province givers).
        b.ok(Body::Contribute {
            payer_psn_no: psn(4),
            psn_no: psn(10),
            year: 2025,
            amount: Fen(38_000),
        });
        b.ok(Body::Contribute {
            payer_psn_no: psn(0),
            psn_no: psn(9),
            year: 2026,
            amount: Fen(40_000),
        });
        // Wallets and transfers: accepted, declined, returned on expiry, pending.
        for i in [1, 5, 6, 9] {
            b.ok(Body::OpenWallet { psn_no: psn(i) });
        }
        let accepted = b.transfer(0, 9, 1_000);
        let declined = b.transfer(0, 1, 2_000);
        b.transfer(6, 1, 3_000);
        b.tick(60);
        b.ok(Body::TransferAccept {
            transfer_id: accepted,
        });
        b.ok(Body::TransferDecline {
            transfer_id: declined,
        });
        b.tick(86_400);
        b.transfer(0, 1, 4_000);
        b.ok(Body::SetStatus {
            psn_no: psn(3),
            status: PersonStatus::Suspended,
        });
        b.tick(3_600);
        let s = &b.state;
        let statuses: Vec<_> = s.transfers.iter().map(|t| t.status).collect();
        assert_eq!(
            statuses,
            [
                TransferStatus::Accepted,
                TransferStatus::Declined,
                TransferStatus::Returned,
                TransferStatus::Pending
            ]
        );
        assert!(s.setls.iter().any(|s| s.cancelled) && !s.details.is_empty());
        assert!(s.msgids.iter().any(|(_, _, r)| r.reply.is_none()));
        assert!(!s.recon.is_empty() && !s.stats.months.is_empty());
        s.check().unwrap();
        b
    }

    fn encode(state: &State) -> Vec<u8> {
        let mut out = Vec::new();
        state.encode_snapshot(&mut out);
        out
    }

    #[test]
    fn round_trip_is_exact_and_canonical() {
        // Proves: decode(encode(s)) has the same state hash as s, and re-encoding it gives the
        // same bytes (canonical encoding, hash maps sorted).
        let b = rich_state();
        let bytes = encode(&b.state);
        let decoded = State::decode_snapshot(&bytes).unwrap();
        assert_eq!(decoded.state_hash(), b.state.state_hash());
        assert_eq!(encode(&decoded), bytes);
        assert_eq!(decoded.person("P0000008"), b.state.person("P0000008"));
        // Appending to a non-empty buffer works too.
        let mut out = vec![7];
        decoded.encode_snapshot(&mut out);
        assert_eq!(&out[1..], &bytes[..]);
        // An empty state round-trips.
        let empty = State::new(Params::default());
        let bytes = encode(&empty);
        let decoded = State::decode_snapshot(&bytes).unwrap();
        assert_eq!(decoded.state_hash(), empty.state_hash());
    }

    #[test]
    fn decoded_state_keeps_working() {
        // Proves: the decoded state (rebuilt indexes, empty scratch) answers further ops exactly
        // as the original: same replies, same hashes, replays of old msgids included.
        let mut original = rich_state();
        let mut decoded = Builder {
            state: State::decode_snapshot(&encode(&original.state)).unwrap(),
            seq: original.seq,
            time: original.time,
        };
        let replay = Op::Write(Command {
            msgid: Msgid::from("m1").unwrap(),
            time: original.time,
            actor: Actor::Admin,
            body: Body::Enrol {
                psn_no: psn(0),
                certno: ArrayString::from(&certno(0)).unwrap(),
                psn_name: "张0".into(),
                insutype: Insutype::Employee,
                admdvs: 440106,
            },
        });
        let mut ops = vec![replay];
        for b in [&mut original, &mut decoded] {
            b.tick(86_400 * 2);
            let mut next = vec![
                b.op(Body::Enrol {
                    psn_no: psn(100),
                    certno: ArrayString::from(&certno(100)).unwrap(),
                    psn_name: "李四".into(),
                    insutype: Insutype::Employee,
                    admdvs: 440106,
                }),
                b.op(Body::Credit {
                    period: Period(MAY_2025 + 1),
                    items: vec![CreditItem {
                        psn_no: psn(100),
                        amount: Fen(5_000),
                    }],
                }),
                b.op(Body::Bind {
                    giver_psn_no: psn(100),
                    receiver_psn_no: psn(8),
                    relation: Relation::Spouse,
                }),
                b.op(Body::Settle {
                    fixmedins_code: ArrayString::from("Y002").unwrap(),
                    psn_no: psn(8),
                    medfee_sumamt: Fen(90_000),
                    fund_pay_sumamt: Fen(1_000),
                    acct_used: true,
                }),
                b.op(Body::Cancel { setl_id: 1 }),
                b.op(Body::Enrol {
                    psn_no: psn(0),
                    certno: ArrayString::from(&certno(200)).unwrap(),
                    psn_name: "重复".into(),
                    insutype: Insutype::Employee,
                    admdvs: 440106,
                }),
                b.op(Body::TransferCreate {
                    from_psn_no: psn(0),
                    to_psn_no: psn(9),
                    amount: Fen(500),
                    source: TransferSource::Acct,
                }),
                Op::Tick {
                    time: b.time + 86_400,
                },
            ];
            if ops.len() == 1 {
                ops.append(&mut next);
            }
        }
        for op in &ops {
            let a = original.state.apply(op);
            let b = decoded.state.apply(op);
            assert_eq!(a, b, "{op:?}");
        }
        assert!(matches!(
            original.state.apply(&ops[0]),
            Ok(crate::Applied { replayed: true, .. })
        ));
        assert_eq!(original.state.state_hash(), decoded.state.state_hash());
        decoded.state.check().unwrap();
        assert_eq!(encode(&original.state), encode(&decoded.state));
    }

    #[test]
    fn every_truncation_is_an_error() {
        // Proves: any prefix of a snapshot (every cut point of a rich state) is refused with
        // an error whose offset lies within the prefix, never a panic.
        let bytes = encode(&rich_state().state);
        for cut in 0..bytes.len() {
            let err = State::decode_snapshot(&bytes[..cut]).unwrap_err();
            assert!(err.offset <= cut, "cut {cut}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            State::decode_snapshot(&longer).unwrap_err().what,
            "trailing bytes"
        );
    }

    #[test]
    fn random_corruption_never_panics() {
        // Proves: single-byte corruptions anywhere in a snapshot (a few thousand, seeded) either
        // give an error or a state that passes check and re-encodes canonically; none panics.
        let bytes = encode(&rich_state().state);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..4_000 {
            let mut corrupt = bytes.clone();
            let at = (next() % bytes.len() as u64) as usize;
            let r = next();
            corrupt[at] = match r % 4 {
                0 => corrupt[at] ^ (1 << ((r >> 8) % 8)),
                1 => corrupt[at].wrapping_add(1),
                2 => 0xff,
                _ => (r >> 16) as u8,
            };
            match State::decode_snapshot(&corrupt) {
                Ok(state) => {
                    ok += 1;
                    state.check().unwrap();
                    let again = encode(&state);
                    let decoded = State::decode_snapshot(&again).unwrap();
                    assert_eq!(encode(&decoded), again);
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.offset <= corrupt.len());
                }
            }
        }
        eprintln!("{ok} corruptions decoded to a valid state, {refused} refused");
        assert!(refused > 0 && ok + refused == 4_000);
    }

    #[test]
    fn hostile_structure_is_refused() {
        // Proves: targeted hostile edits (bad magic/version, huge counts, a backward binding
        // link that would make a cycle, an entry link cycle, a bad enum tag, a duplicate
        // psn_no) are refused with errors naming the problem, without allocating or looping.
        let b = rich_state();
        let bytes = encode(&b.state);
        let refuse = |bytes: &[u8]| State::decode_snapshot(bytes).unwrap_err().what;
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(refuse(&bad), "not a gongji snapshot");
        // Version 1 (msgid keys without scopes) and any other version are refused.
        for version in [1, 3] {
            let mut bad = bytes.clone();
            bad[8] = version;
            assert_eq!(refuse(&bad), "unknown snapshot format version");
        }
        // The person count follows the header, params, clock, op count and ledger.
        let persons_at = 8 + 4 + 30 + 8 + 8 + 7 * 8;
        assert_eq!(
            u64::from_le_bytes(bytes[persons_at..persons_at + 8].try_into().unwrap()),
            12
        );
        let mut bad = bytes.clone();
        bad[persons_at..persons_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(refuse(&bad), "person count");
        // Two persons with one psn_no: make person 1's psn_no equal person 0's.
        let mut bad = bytes.clone();
        let arena = persons_at + 8 + 12;
        bad[arena + 8..arena + 16].copy_from_slice(&bytes[arena..arena + 8]);
        assert_eq!(refuse(&bad), "duplicate psn_no");

        // Re-encode states with one field changed, to reach the deeper checks.
        let mutate = |f: &dyn Fn(&mut State)| {
            let mut s = State::decode_snapshot(&bytes).unwrap();
            f(&mut s);
            State::decode_snapshot(&encode(&s)).unwrap_err()
        };
        let e = mutate(&|s| s.bindings[7].next_given = 1);
        assert_eq!(e.what, "binding link");
        let e = mutate(&|s| {
            let last = s.entries.len() as u32;
            s.entries[last as usize - 1].next = 1;
        });
        assert_eq!(e.what, "entry link");
        let e = mutate(&|s| s.persons.given_head[0] = 4);
        assert!(e.what.contains("list"), "{e}");
        let e = mutate(&|s| s.persons.hot[0].acct = Fen(u64::MAX));
        assert_eq!(e.what, "amounts overflow");
        let e = mutate(&|s| s.ledger.acct_total += 1);
        assert_eq!(e.what, "ledger does not conserve money");
        let e = mutate(&|s| {
            s.persons.hot[0].acct = Fen(s.persons.hot[0].acct.0 + 1);
            s.ledger.acct_total += 1;
            s.ledger.credited += 1;
        });
        assert_eq!(e.what, "state check failed");
        assert!(e.detail.is_some());
        let e = mutate(&|s| s.setls[0].details_start = 5);
        assert_eq!(e.what, "settlement details range");
        let e = mutate(&|s| s.expiry_queue.push_back((i64::MAX, 3)));
        assert_eq!(e.what, "expiry queue not in transfer order");
        let e = mutate(&|s| s.expiry_queue.back_mut().unwrap().0 -= 1);
        assert_eq!(e.what, "expiry queue time");

        // A fifo that repeats its first msgid at the end. The queue of a state cannot hold a
        // repeat, so the bytes are patched: the fifo ends where statistics and recon begin.
        let s = State::decode_snapshot(&bytes).unwrap();
        let tail = 8 + s.stats.months.len() * MONTH_BYTES + 8 + s.recon.len() * RECON_BYTES;
        let fifo_end = bytes.len() - tail;
        let fifo_at = fifo_end - s.msgids.len() * FIFO_BYTES - 8;
        let first_key = &bytes[fifo_at + 8 + 8..fifo_at + 8 + FIFO_BYTES];
        let last_time = &bytes[fifo_end - FIFO_BYTES..fifo_end - 16];
        let mut bad = bytes[..fifo_end].to_vec();
        bad[fifo_at..fifo_at + 8].copy_from_slice(&(s.msgids.len() as u64 + 1).to_le_bytes());
        bad.extend_from_slice(last_time);
        bad.extend_from_slice(first_key);
        bad.extend_from_slice(&bytes[fifo_end..]);
        assert_eq!(refuse(&bad), "msgid fifo does not match the records");
    }

    #[test]
    fn legacy_binding_view_replies_are_read_as_bound() {
        // Proves: a binding reply written as a whole view (tag 6, the first encoder's form)
        // decodes to the same `Reply::Bound` as the index form, which re-encodes to the bytes
        // of today's encoder; a view that does not match its binding is refused.
        let b = rich_state();
        let mut bytes = Vec::new();
        b.state.encode_snapshot(&mut bytes);
        // m24 made binding 1 (0 → 1) with priority 1; it has not been revoked.
        let key = super::super::msgids::msgid_key(crate::MsgidScope::Admin, "m24");
        let reply = b.state.msgids.get(key).unwrap().reply.clone().unwrap();
        let Reply::Bound {
            binding,
            priority,
            active,
        } = reply
        else {
            panic!("m24 is not a binding: {reply:?}")
        };
        let view = b.state.bound_view(binding, priority, active);
        let at = bytes
            .windows(16)
            .position(|w| w == key.to_le_bytes())
            .unwrap()
            + 16
            + 8;
        assert_eq!(bytes[at], REPLY_BOUND);
        let legacy = |view: &BindingView| {
            let mut tail = Vec::new();
            let mut e = Enc(&mut tail);
            e.put(REPLY_BINDING_VIEW);
            encode_binding_view(view, &mut e);
            let mut out = bytes[..at].to_vec();
            out.extend_from_slice(&tail);
            out.extend_from_slice(&bytes[at + 1 + 4 + 4 + 1..]);
            out
        };
        let decoded = State::decode_snapshot(&legacy(&view)).unwrap();
        assert_eq!(decoded.msgids.get(key).unwrap().reply, Some(reply));
        let mut again = Vec::new();
        decoded.encode_snapshot(&mut again);
        assert_eq!(again, bytes);
        let wrong = BindingView {
            relation: Relation::Spouse,
            ..view.clone()
        };
        assert_ne!(wrong.relation, view.relation);
        let e = State::decode_snapshot(&legacy(&wrong)).unwrap_err();
        assert_eq!(e.what, "reply binding");
    }

    #[test]
    fn tag_tables_match_declaration_order() {
        // Proves: each decoding table lists its enum in declaration order, so `as u8` on encode
        // and the table position on decode agree.
        fn same<T: Copy + std::fmt::Debug>(table: &[T], tag: impl Fn(T) -> u8) {
            for (i, &v) in table.iter().enumerate() {
                assert_eq!(usize::from(tag(v)), i, "{v:?}");
            }
        }
        same(&INSUTYPES, |v| v as u8);
        same(&STATUSES, |v| v as u8);
        same(&INST_TYPES, |v| v as u8);
        same(&ROLES, |v| v as u8);
        same(&RELATIONS, |v| v as u8);
        same(&SCOPES, |v| v as u8);
        same(&SOURCES, |v| v as u8);
        same(&TRANSFER_STATUSES, |v| v as u8);
        same(&KINDS, |v| v as u8);
        same(&DRAW_SOURCES, |v| v as u8);
        same(&REVERSAL_RESULTS, |v| v as u8);
    }
}
