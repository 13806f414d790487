//! A versioned binary snapshot of the [`State`] (snapshot format version 6): everything but
//! the history chunks that are cold (in the server's history files), which it counts.
//!
//! Hand-written and little-endian, like [`crate::codec`]. The layout:
//!
//! ```text
//! magic "GJSNAPST", version u32 = 6 (1 was before msgid scopes, 2 before history files: entries
//! linked forwards and settlements carried their cancelled mark; both are refused, and recovery
//! skips them and needs an older snapshot or the journal from op 1; 3 and 4 differ only in
//! their msgid section, 3 ordered by key with the queue after it, 4 in queue order with the
//! replies inline; 5 holds every transfer and contribution, with no cold-chunk count; all
//! three are still read)
//! params        receivers u8, givers u8, wallet_amount_max u64, daily_count u8,
//!               closed_from u32, closed_until u32, expiry_second u32, draw_order 3×u8,
//!               msgid_retention_days u32
//! clock i64, op_count u64
//! ledger        7×u64 (acct, wallet, held, credited, paid_institutions, returned, contributions)
//! persons       n u64; psn_no lengths n×u8, psn_no bytes; name lengths n×u8, name bytes;
//!               then one column per vector: certno u64, admdvs u32, flags u8, acct u64,
//!               wallet u64, given_head u32, received_head u32, entry_tail u32,
//!               wallet_day u32, credit_last u32, credit_mask u64
//! credit_overflow   n u64; (psn u32, period u32) ascending
//! institutions  n u64; code (u8 len + bytes), name (u8 len + bytes), type u8, admdvs u32
//! tokens        n u64; hash [32], role u8, scope u32, revoked u8
//! bindings      n u64; giver u32, receiver u32, relation u8, scope u8, active u8,
//!               next_given u32, next_received u32
//! settlements   n u64, cold chunks u32; the hot ones (n − cold × 65,536): psn u32, inst u32,
//!               time i64, medfee, fund_pay, acct_pay, wallet_pay, mulaid, cash, acct_balc,
//!               wallet_balc (u64 each), details_start u32, details_len u8, cross_pool u8
//! cancelled     n u64; settlement index u32 ascending
//! details       n u64, cold chunks u32; the hot ones: giver u32, amount u64
//! transfers     n u64, cold chunks u32; the hot ones: from u32, to u32, amount u64, source u8,
//!               cross_province u8, status u8, created i64, expires_at i64
//! expiry_queue  n u64; (expires_at i64, transfer u32) in queue order, each a hot transfer
//! contributions n u64, cold chunks u32; the hot ones: payer u32, psn u32, year u16,
//!               amount u64, time i64, acct_balc u64
//! contributions_paid  n u64; (psn u32, year u16) ascending
//! entries       n u64, cold chunks u32; the hot ones: psn u32, prev u32, wallet u8, kind u8,
//!               time i64, amount i64, balc u64, counterparty tag u8 + u32, reference tag u8 + u64
//! msgids        n u64; n × (key u128, time i64, fingerprint u64, reply offset u64) ascending
//!               by key; replies length u64; the replies, in the records' order (a state
//!               reads this section where it lies: `state/msgids/sorted.rs`)
//! stats         n u64; (period u32, 31 provinces × 4 channels × (count u64, amount u64))
//!               ascending by period
//! recon         n u64; (inst u32, day i32, setl_count u64, 6×u64 amounts) ascending by key
//! recent        per institution: n u8, settlement index u32 × n, oldest first
//! federation    a federated state's only: "GJFED001" and its section (`federation.rs`)
//! ```
//!
//! A reply is a tag and its fields (see `msgids.rs`). Enrolment and binding replies are
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
//!
//! Each section's encoder sits beside its decoder in a module of its own (`header`, `persons`,
//! `institutions`, `bindings`, `settlements`, `transfers`, `contributions`, `entries`,
//! `msgids`, `counters`); `bytes` holds the reader and writer they share. This module holds
//! the order of the sections and the checks that span them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use arrayvec::ArrayString;
use rustc_hash::{FxHashMap, FxHashSet};

use super::bindings::{Binding, Scope};
use super::chunked::Chunked;
use super::counters::{Cell, Recon, ReconTotals, Stats, PROVINCES};
use super::history::History;
use super::ledger::{Counterparty, Entry, EntryKind, EntryRef, Ledger};
use super::msgids::{MsgRecord, Msgids, SharedBytes};
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

mod bindings;
mod bytes;
mod contributions;
mod counters;
mod entries;
mod federation;
mod header;
mod institutions;
mod msgids;
mod persons;
mod recent;
mod settlements;
mod transfers;

#[cfg(test)]
mod tests;

use bindings::{decode_bindings, encode_bindings};
use bytes::{Dec, Enc};
use contributions::{decode_contributions, encode_contributions};
use counters::{decode_recon, decode_stats, encode_recon, encode_stats};
use entries::{decode_entries, encode_entries, RefLimits};
use federation::{decode_federation, encode_federation};
use header::{decode_ledger, decode_params, encode_ledger, encode_params};
use institutions::{decode_institutions, decode_tokens, encode_institutions, encode_tokens};
pub(crate) use msgids::{decode_checked_reply, encode_reply_into};
use msgids::{
    decode_msgids, decode_msgids_v3, decode_msgids_v4, encode_msgids, Owner, ReplyLimits,
};
use persons::{
    decode_credit_overflow, decode_persons, encode_credit_overflow, encode_persons, person_indexes,
    HeadsAt,
};
use recent::{decode_recent, encode_recent};
use settlements::{decode_settlements, encode_settlements};
use transfers::{decode_transfers, encode_transfers};

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
const SOURCES: [TransferSource; 2] = super::wallet::SOURCES;
const TRANSFER_STATUSES: [TransferStatus; 4] = super::wallet::STATUSES;
const KINDS: [EntryKind; 8] = super::ledger::ENTRY_KINDS;
const DRAW_SOURCES: [DrawSource; 3] = [
    DrawSource::OwnAcct,
    DrawSource::OwnWallet,
    DrawSource::Givers,
];
const REVERSAL_RESULTS: [ReversalResult; 2] = [ReversalResult::Cancelled, ReversalResult::Blocked];

// Fixed record sizes in bytes.
const TOKEN_BYTES: usize = 32 + 1 + 4 + 1;
const BINDING_BYTES: usize = 4 + 4 + 1 + 1 + 1 + 4 + 4;
const SETTLEMENT_BYTES: usize = 4 + 4 + 8 + 8 * 8 + 4 + 1 + 1;
const DETAIL_BYTES: usize = 4 + 8;
const TRANSFER_BYTES: usize = 4 + 4 + 8 + 1 + 1 + 1 + 8 + 8;
const QUEUE_BYTES: usize = 8 + 4;
const CONTRIBUTION_BYTES: usize = 4 + 4 + 2 + 8 + 8 + 8;
const PAID_BYTES: usize = 4 + 2;
const ENTRY_BYTES: usize = 4 + 4 + 1 + 1 + 8 + 8 + 8 + 1 + 4 + 1 + 8;
/// The shortest msgid record: time, key, fingerprint and a reply tag.
const MSGID_BYTES_MIN: usize = 8 + 16 + 8 + 1;
/// A queue item of format 3: time and key.
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

/// A snapshot's msgid section, checked: what [`State::adopt_msgids`] takes.
#[derive(Debug)]
pub struct MsgidSection {
    msgids: Msgids,
    /// The queue's next sequence number when the state was frozen.
    end: u32,
}

/// Where a snapshot's msgid section lies and what its encoder saw of it: the count, the
/// replies' length and the directory of its keys, built as they were written.
#[derive(Debug)]
pub struct EncodedMsgids {
    at: u64,
    count: usize,
    replies_len: u64,
    dir: super::msgids::SortedBuilder,
}

/// Runs `encode` on an encoder that hands `sink` its bytes in pieces of about a mebibyte;
/// returns where the msgid section lies (the current format has one).
fn stream(
    sink: &mut dyn FnMut(&[u8]),
    encode: impl FnOnce(&mut Enc<'_>) -> Option<EncodedMsgids>,
) -> EncodedMsgids {
    let mut buf = Vec::with_capacity(bytes::SPILL_BYTES + (64 << 10));
    let mut e = Enc::streaming(&mut buf, sink);
    let encoded = encode(&mut e);
    e.finish();
    encoded.expect("the current format")
}

impl crate::Frozen {
    /// [`crate::Frozen::encode_snapshot_streaming`]'s bytes, dropping the frozen persons and
    /// bindings as soon as they are encoded. The writer changes person records all the time,
    /// and each change to a chunk still shared with a frozen copy copies the chunk: with the
    /// frozen ones gone, the writer's copies are the only ones for the rest of the write
    /// (the msgid section, the longest part, and the fsync). Encodes once: the frozen state
    /// is then incomplete, and only [`crate::Frozen::msgid_section`] may be asked of it.
    pub fn encode_snapshot_releasing(&mut self, sink: &mut dyn FnMut(&[u8])) -> EncodedMsgids {
        assert!(!self.1, "a frozen state is encoded once");
        stream(sink, |e| {
            self.0.encode_front(e, State::SNAPSHOT_FORMAT_VERSION);
            self.1 = true;
            self.0.persons = Persons::default();
            self.0.bindings = Default::default();
            self.0.encode_back(e, State::SNAPSHOT_FORMAT_VERSION)
        })
    }

    /// The msgid section of this state's snapshot in `bytes` (the written file, mapped), whose
    /// body starts at `body_at`; `encoded` is what
    /// [`crate::Frozen::encode_snapshot_streaming`] returned. The records are not read again
    /// (this process wrote them a moment ago, and reading them would fault in every page):
    /// the count and the replies' length in the file must be the encoder's.
    pub fn msgid_section(
        &self,
        bytes: SharedBytes,
        body_at: usize,
        encoded: EncodedMsgids,
    ) -> Result<MsgidSection, SnapshotDecodeError> {
        let b = (*bytes).as_ref();
        let at = body_at + encoded.at as usize;
        let word = |at: usize| {
            b.get(at..at + 8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        };
        let records = at + 8;
        let replies_len_at = records + encoded.count * super::msgids::SORTED_RECORD_BYTES;
        let replies = replies_len_at + 8;
        let fits = word(at) == Some(encoded.count as u64)
            && word(replies_len_at) == Some(encoded.replies_len)
            && b.len() as u64 >= replies as u64 + encoded.replies_len;
        if !fits {
            return fail(at, "msgid section is not the one encoded");
        }
        let end = replies + encoded.replies_len as usize;
        let sorted = encoded.dir.finish(bytes, records, replies..end);
        Ok(MsgidSection {
            msgids: Msgids::with_sorted(sorted),
            end: self.0.msgids.end(),
        })
    }
}

impl State {
    /// Reads the msgid records of `section` (this state's own, frozen earlier) where they
    /// lie, in place of the queued records it holds; see `Msgids::adopt`. Nothing a lookup,
    /// a snapshot or the state hash sees changes.
    pub fn adopt_msgids(&mut self, section: MsgidSection) {
        self.msgids.adopt(section.msgids, section.end);
    }

    /// Drops at most `max` of the queued msgid records that an adopted section holds too
    /// (call between batches until it returns 0); returns how many are left.
    pub fn drain_adopted_msgids(&mut self, max: usize) -> usize {
        self.msgids.drain(max)
    }
}

/// Persons from which a decoder builds their indexes on a thread of its own.
const INDEX_THREAD_PERSONS_MIN: usize = 1 << 16;

/// What [`State::decode_after_persons`] decodes.
struct Rest {
    insts: Institutions,
    tokens: Tokens,
    bindings: Vec<Binding>,
    setls: History<Settlement>,
    cancelled: FxHashSet<u32>,
    details: History<Detail>,
    transfers: History<Transfer>,
    expiry_queue: VecDeque<(i64, u32)>,
    contributions: History<Contribution>,
    contributions_paid: FxHashSet<(u32, u16)>,
    entries: History<Entry>,
    msgids: Msgids,
    stats: Stats,
    recon: Recon,
    recent: super::recent::Recent,
    /// The federation section's records and the ledger's (in flight, sent, received).
    fed: crate::federation::Federation,
    fed_sides: (u64, u64, u64),
}

fn fail<T>(offset: usize, what: &'static str) -> Res<T> {
    Err(SnapshotDecodeError {
        offset,
        what,
        detail: None,
    })
}

fn admdvs_valid(a: u32) -> bool {
    (100_000..=999_999).contains(&a) && province_valid((a / 10_000) as u8)
}

fn code_bytes_valid(s: &[u8]) -> bool {
    (1..=PSN_NO_MAX).contains(&s.len()) && s.iter().all(u8::is_ascii_alphanumeric)
}

impl State {
    /// The snapshot format version [`State::encode_snapshot`] writes.
    pub const SNAPSHOT_FORMAT_VERSION: u32 = 6;

    /// Appends a snapshot of the whole state to `out` (see `state/snapshot/mod.rs` for the
    /// format). Canonical: the same state gives the same bytes.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        let p = &self.persons;
        out.reserve(
            256 + p.len() * 80
                + p.psn_nos.byte_len()
                + p.names.byte_len()
                + self.bindings.len() * BINDING_BYTES
                + self.setls.len() * SETTLEMENT_BYTES
                + self.transfers.len() * TRANSFER_BYTES
                + self.entries.len() * ENTRY_BYTES
                + self.msgids.len() * 48,
        );
        self.encode_sections(&mut Enc::new(out), Self::SNAPSHOT_FORMAT_VERSION);
    }

    /// The bytes of [`State::encode_snapshot`], handed to `sink` in pieces of about a
    /// mebibyte as they are encoded: a snapshot never needs its own size in memory. Returns
    /// where its msgid section lies (for [`crate::Frozen::msgid_section`]).
    pub fn encode_snapshot_streaming(&self, sink: &mut dyn FnMut(&[u8])) -> EncodedMsgids {
        stream(sink, |e| {
            self.encode_sections(e, Self::SNAPSHOT_FORMAT_VERSION)
        })
    }

    /// The snapshot in an earlier format (3 or 4, which differ in their msgid section; 5,
    /// which holds every transfer and contribution): for the tests that the previous
    /// releases' snapshots are still read.
    #[cfg(test)]
    pub(crate) fn encode_snapshot_in(&self, version: u32, out: &mut Vec<u8>) {
        self.encode_sections(&mut Enc::new(out), version);
    }

    /// Returns where the msgid section lies (in the current format).
    fn encode_sections(&self, e: &mut Enc<'_>, version: u32) -> Option<EncodedMsgids> {
        self.encode_front(e, version);
        self.encode_back(e, version)
    }

    /// The sections up to the bindings: the columns every write changes, which a frozen
    /// copy drops once they are encoded (`Frozen::encode_snapshot_releasing`).
    fn encode_front(&self, e: &mut Enc<'_>, version: u32) {
        let p = &self.persons;
        e.raw(&MAGIC);
        e.put(version);
        encode_params(&self.params, e);
        e.put(self.clock);
        e.put(self.op_count);
        encode_ledger(&self.ledger, e);
        encode_persons(p, e);
        encode_credit_overflow(p, e);
        encode_institutions(&self.insts, e);
        encode_tokens(&self.tokens, e);
        encode_bindings(&self.bindings, e);
    }

    /// The sections after [`State::encode_front`]'s, which read neither persons nor
    /// bindings; returns where the msgid section lies (in the current format).
    fn encode_back(&self, e: &mut Enc<'_>, version: u32) -> Option<EncodedMsgids> {
        encode_settlements(&self.setls, &self.cancelled, &self.details, e);
        encode_transfers(&self.transfers, &self.expiry_queue, version, e);
        encode_contributions(&self.contributions, &self.contributions_paid, version, e);
        encode_entries(&self.entries, e);
        let msgids_at = e.position();
        let encoded = match version {
            #[cfg(test)]
            3 => {
                msgids::encode_msgids_v3(&self.msgids, e);
                None
            }
            #[cfg(test)]
            4 => {
                msgids::encode_msgids_v4(&self.msgids, e);
                None
            }
            _ => {
                let (count, replies_len, dir) = encode_msgids(&self.msgids, e);
                Some(EncodedMsgids {
                    at: msgids_at,
                    count,
                    replies_len,
                    dir,
                })
            }
        };
        encode_stats(&self.stats, e);
        encode_recon(&self.recon, e);
        encode_recent(&self.recent, self.insts.list.len(), e);
        // Last, and only for a federated state (`federation.rs`).
        encode_federation(&self.fed, &self.ledger, e);
        encoded
    }

    /// Decodes a snapshot made by [`State::encode_snapshot`], validating everything (see the
    /// module documentation) and finally running [`State::check`]. The msgid section is
    /// copied (see [`State::decode_snapshot_shared`]).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<State, SnapshotDecodeError> {
        Self::decode_snapshot_in(bytes, None)
    }

    /// [`State::decode_snapshot`] of `bytes[at..]`, whose msgid section the state goes on
    /// reading where it lies (a mapped snapshot file: a start does not copy the window).
    pub fn decode_snapshot_shared(
        bytes: SharedBytes,
        at: usize,
    ) -> Result<State, SnapshotDecodeError> {
        let owner = Owner { bytes, at };
        Self::decode_snapshot_in(&(*owner.bytes).as_ref()[at..], Some(&owner))
    }

    fn decode_snapshot_in(
        bytes: &[u8],
        owner: Option<&Owner>,
    ) -> Result<State, SnapshotDecodeError> {
        let mut d = Dec { buf: bytes, pos: 0 };
        if d.take(MAGIC.len())? != MAGIC {
            return fail(0, "not a gongji snapshot");
        }
        let version = d.get::<u32>()?;
        if !(3..=Self::SNAPSHOT_FORMAT_VERSION).contains(&version) {
            return fail(MAGIC.len(), "unknown snapshot format version");
        }
        let params = decode_params(&mut d)?;
        let clock = d.get()?;
        let op_count = d.get()?;
        let mut ledger = decode_ledger(&mut d)?;
        let (mut persons, heads, keys_at) = decode_persons(&mut d)?;
        decode_credit_overflow(&mut d, &mut persons)?;
        // The person indexes (and the masked-certno one) are built on a thread of their own
        // while the later sections, the msgid window above all, are decoded on this one; a
        // small state (the tests', the fuzzer's) does without the thread.
        let recon_first_day = super::counters::recon_first_day(clock);
        let build_indexes = |p: &Persons| {
            let indexes = person_indexes(p, &keys_at);
            (indexes, super::masked::MaskedIndex::rebuild(&p.certno))
        };
        let (indexes, rest) = if persons.len() < INDEX_THREAD_PERSONS_MIN {
            let rest = Self::decode_after_persons(
                &mut d,
                &persons,
                &heads,
                version,
                recon_first_day,
                owner,
            );
            (build_indexes(&persons), rest)
        } else {
            std::thread::scope(|s| {
                let p = &persons;
                let indexes = s.spawn(move || build_indexes(p));
                let rest =
                    Self::decode_after_persons(&mut d, p, &heads, version, recon_first_day, owner);
                (indexes.join().expect("the person index thread"), rest)
            })
        };
        let ((index, certno_index), masked) = (indexes.0?, indexes.1);
        persons.index = index;
        persons.certno_index = certno_index;
        let rest = rest?;
        (ledger.in_flight, ledger.fed_sent, ledger.fed_received) = rest.fed_sides;
        // Entries name exchanges by number (index + 1 when recorded): only numbers given.
        let exchanges = rest.fed.numbers();
        let names_none = |e: &Entry| match e.reference {
            EntryRef::Exchange(id) => !(1..=exchanges).contains(&id),
            _ => false,
        };
        if rest.entries.hot_iter().any(|e| names_none(&e)) {
            return fail(bytes.len(), "an entry names no exchange");
        }
        let state = State {
            params,
            clock,
            persons,
            insts: rest.insts,
            tokens: rest.tokens,
            bindings: rest.bindings.into(),
            setls: rest.setls,
            cancelled: rest.cancelled,
            details: rest.details,
            transfers: rest.transfers,
            expiry_queue: rest.expiry_queue,
            contributions: rest.contributions,
            contributions_paid: rest.contributions_paid,
            entries: rest.entries,
            msgids: rest.msgids,
            recent: rest.recent,
            masked,
            stats: rest.stats,
            recon: rest.recon,
            ledger,
            op_count,
            fed: rest.fed,
            scratch: Vec::with_capacity(256),
            expired_scratch: Vec::new(),
            priors: Default::default(),
        };
        // With cold chunks, the records the checks read are in history files: the server runs
        // the full check once they are attached (`gongji verify`).
        if state.cold_missing().is_empty() {
            state.check_sums().or_else(|what| fail(bytes.len(), what))?;
            state.check().map_err(|detail| SnapshotDecodeError {
                offset: bytes.len(),
                what: "state check failed",
                detail: Some(detail),
            })?;
        }
        Ok(state)
    }

    /// The sections after the persons', to the end of the snapshot.
    fn decode_after_persons(
        d: &mut Dec<'_>,
        persons: &Persons,
        heads: &HeadsAt,
        version: u32,
        recon_first_day: i32,
        owner: Option<&Owner>,
    ) -> Res<Rest> {
        let n = persons.len();
        let insts = decode_institutions(d)?;
        let tokens = decode_tokens(d, n, insts.list.len())?;
        let bindings = decode_bindings(d, persons, heads)?;
        let n_insts = insts.list.len();
        let (setls, cancelled, details) = decode_settlements(d, n, n_insts)?;
        let (transfers, expiry_queue) = decode_transfers(d, n, version)?;
        let (contributions, contributions_paid) = decode_contributions(d, n, version)?;
        let limits = RefLimits {
            persons: n,
            insts: n_insts,
            setls: setls.len() as u64,
            transfers: transfers.len() as u64,
            contributions: contributions.len() as u64,
        };
        let entries = decode_entries(d, persons, heads, &limits)?;
        let mut limits = ReplyLimits {
            persons: persons.len(),
            bindings: bindings.len(),
            setls: setls.len(),
            views: Some((persons, &bindings)),
        };
        let msgids = match version {
            3 => decode_msgids_v3(d, &limits)?,
            4 => decode_msgids_v4(d, &limits)?,
            _ => {
                limits.views = None;
                decode_msgids(d, &limits, owner)?
            }
        };
        let stats = decode_stats(d)?;
        let recon = decode_recon(d, n_insts, recon_first_day)?;
        let recent = decode_recent(d, &setls, n_insts)?;
        // Last, and only in a federated state's snapshot (`federation.rs`).
        let mut sides = Ledger::default();
        let fed = decode_federation(d, n, &mut sides)?;
        let fed_sides = (sides.in_flight, sides.fed_sent, sides.fed_received);
        if d.pos != d.buf.len() {
            return fail(d.pos, "trailing bytes");
        }
        Ok(Rest {
            insts,
            tokens,
            bindings,
            setls,
            cancelled,
            details,
            transfers,
            expiry_queue,
            contributions,
            contributions_paid,
            entries,
            msgids,
            stats,
            recon,
            recent,
            fed,
            fed_sides,
        })
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
        for t in self.transfers.iter() {
            if t.status == TransferStatus::Pending {
                held = add(held, t.amount.0)?;
            }
        }
        // Statistics cells: mutual aid, contributions and accepted transfers.
        let mut counted = 0;
        let mut credited = 0;
        for e in self.entries.iter() {
            match (e.kind, e.reference) {
                (EntryKind::Credit, _) => credited = add(credited, e.amount as u64)?,
                (EntryKind::WalletIn, EntryRef::Transfer(id)) => {
                    counted = add(counted, self.transfers.get(id as usize - 1).amount.0)?;
                }
                _ => {}
            }
        }
        let (mut paid, mut returned) = (0, 0);
        let mut totals = [0u64; 4];
        for s in self.all_setls() {
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
        for c in self.contributions.iter() {
            counted = add(counted, c.amount.0)?;
        }
        let l = &self.ledger;
        let inside = u128::from(l.acct_total)
            + u128::from(l.wallet_total)
            + u128::from(l.held)
            + u128::from(l.in_flight);
        let flows = i128::from(l.credited)
            - i128::from(l.paid_institutions)
            - i128::from(l.paid_contributions)
            + i128::from(l.returned_by_cancellations)
            + i128::from(l.fed_received)
            - i128::from(l.fed_sent);
        if inside as i128 != flows {
            return Err("ledger does not conserve money");
        }
        Ok(())
    }
}
