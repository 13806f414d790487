//! Federation (issue 14, docs/FEDERATION.md): one engine per province, and wallet transfers
//! between engines in two phases, exactly once.
//!
//! The types here are what crosses engines and what a federated journal holds:
//! [`FederationConfig`] (this engine, the provinces it owns, its peers), [`Xid`] (an exchange's
//! id, derived from the sender engine and the sender's msgid key, never from a clock),
//! [`Message`] (what the bus carries: `Prepare`, `Block`, `Outcome`, the bindings' messages,
//! and forgetting's `ClosedThrough`/`ForgetThrough`), [`Watermark`], [`FedOp`] (the journaled
//! federation ops, a bus message among them) and [`Entry`] (one op of a federated journal: a
//! core [`Op`] or a [`FedOp`]). [`codec`] encodes them; `State::apply_entry` applies them
//! (`state/federation.rs`), so the state stays a pure function of the journal.

pub mod codec;
pub mod links;

pub(crate) use links::Link;
pub use links::{BindRefusal, LinkStatus, LinkView};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrayvec::ArrayString;

use crate::certno::province_valid;
use crate::command::{Actor, Msgid, Op, PsnNo, Relation, TransferSource};
use crate::money::Fen;

/// An engine's id: 1 to 16 characters `[0-9a-z]`.
pub type EngineId = ArrayString<16>;

/// Whether `s` is a valid engine id.
pub fn engine_id_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// An exchange's id: the sender engine and the 128-bit key of the sender's msgid in its scope
/// (the key that makes the write idempotent). A retried write derives the same id; two
/// engines never derive the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xid {
    pub engine: EngineId,
    pub key: u128,
}

impl Xid {
    /// Reads the form [`Xid`]'s `Display` writes: `<engine>-<32 hex digits>`.
    pub fn parse(s: &str) -> Option<Xid> {
        let (engine, key) = s.rsplit_once('-')?;
        let hex = key.len() == 32 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !engine_id_valid(engine) || !hex {
            return None;
        }
        Some(Xid {
            engine: EngineId::from(engine).ok()?,
            key: u128::from_str_radix(key, 16).ok()?,
        })
    }
}

impl std::fmt::Display for Xid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:032x}", self.engine, self.key)
    }
}

/// The `[federation]` table of `--config`: this engine, the province prefixes it owns, and
/// every peer with its provinces. A province is owned by at most one engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationConfig {
    pub engine: EngineId,
    pub provinces: Vec<u8>,
    pub peers: BTreeMap<EngineId, Vec<u8>>,
}

impl FederationConfig {
    pub fn validate(&self) -> Result<(), String> {
        let mut owner: BTreeMap<u8, EngineId> = BTreeMap::new();
        let all = std::iter::once((&self.engine, &self.provinces)).chain(self.peers.iter());
        for (engine, provinces) in all {
            if !engine_id_valid(engine) {
                return Err(format!("engine id {engine:?}: 1 to 16 of [0-9a-z]"));
            }
            for &p in provinces {
                if !province_valid(p) {
                    return Err(format!("engine {engine}: {p} is not a province code"));
                }
                if let Some(other) = owner.insert(p, *engine) {
                    return Err(format!("province {p} owned by both {other} and {engine}"));
                }
            }
        }
        if self.peers.contains_key(&self.engine) {
            return Err(format!("engine {} is listed as its own peer", self.engine));
        }
        if self.provinces.is_empty() {
            return Err("an engine owns at least one province".into());
        }
        Ok(())
    }

    /// Whether this engine owns `province`.
    pub fn owns(&self, province: u8) -> bool {
        self.provinces.contains(&province)
    }

    /// The peer that owns `province`, if any (never this engine).
    pub fn peer_of(&self, province: u8) -> Option<EngineId> {
        self.peers
            .iter()
            .find(|(_, ps)| ps.contains(&province))
            .map(|(e, _)| *e)
    }
}

/// How a receiving engine closed an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Accepted,
    Declined,
    Expired,
    /// The sender reversed it before it arrived (docs/FEDERATION.md, the timeout path).
    Blocked,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Accepted,
        Outcome::Declined,
        Outcome::Expired,
        Outcome::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Declined => "declined",
            Outcome::Expired => "expired",
            Outcome::Blocked => "blocked",
        }
    }
}

/// What the bus carries between two engines. Each message names its exchange and carries all
/// a receiver needs, so order does not matter and a duplicate is answered from the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Sender → receiver: hold this transfer pending for `to_psn_no`.
    Prepare {
        xid: Xid,
        to_engine: EngineId,
        to_psn_no: PsnNo,
        to_admdvs: u32,
        amount: Fen,
        /// The sender (the receiver's engine checks their binding to the receiver).
        from_psn_no: PsnNo,
        sender_admdvs: u32,
        created: i64,
        expires_at: i64,
    },
    /// Sender → receiver: the sender reversed the transfer; block it if it never arrived.
    Block {
        xid: Xid,
        to_engine: EngineId,
        amount: Fen,
        /// When the sender made the exchange (the day reconciliation counts it under).
        created: i64,
    },
    /// Receiver → sender: how the receiver closed the exchange.
    Outcome {
        xid: Xid,
        from_engine: EngineId,
        amount: Fen,
        outcome: Outcome,
    },
    /// Giver's engine → receiver's engine: record this binding if your rules allow it.
    Bind {
        bxid: Xid,
        to_engine: EngineId,
        giver_psn_no: PsnNo,
        giver_admdvs: u32,
        receiver_psn_no: PsnNo,
        receiver_admdvs: u32,
        relation: Relation,
        created: i64,
    },
    /// Either side → the other: this binding is revoked here. `created` is the binding's
    /// creation time (message tag 9), so that a late copy about a forgotten binding is
    /// refused; `None` only in journals written before forgetting was built (tag 5).
    Unbind {
        bxid: Xid,
        from_engine: EngineId,
        to_engine: EngineId,
        created: Option<i64>,
    },
    /// Either side → the other, answering `Bind` or `Unbind`: the binding as recorded here
    /// (active, refused or revoked; never pending).
    BindStatus {
        bxid: Xid,
        from_engine: EngineId,
        to_engine: EngineId,
        status: LinkStatus,
    },
    /// Either side → the other (forgetting, docs/FEDERATION.md): every exchange between the
    /// two made on or before CST day `exchanges`, and every binding made on or before day
    /// `bindings`, is closed here ([`NO_DAY`]: none claimed). Sent until answered.
    ClosedThrough {
        from_engine: EngineId,
        to_engine: EngineId,
        exchanges: i32,
        bindings: i32,
    },
    /// The answer to `ClosedThrough`: closed on this side too; both may forget through
    /// these days (the claim's days, echoed).
    ForgetThrough {
        from_engine: EngineId,
        to_engine: EngineId,
        exchanges: i32,
        bindings: i32,
    },
}

/// A CST day that is no day: no watermark, nothing claimed.
pub const NO_DAY: i32 = i32::MIN;

impl Message {
    /// The exchange's xid, or the binding's bxid (none for the watermark messages).
    pub fn xid(&self) -> Option<Xid> {
        match self {
            Message::Prepare { xid, .. }
            | Message::Block { xid, .. }
            | Message::Outcome { xid, .. } => Some(*xid),
            Message::Bind { bxid, .. }
            | Message::Unbind { bxid, .. }
            | Message::BindStatus { bxid, .. } => Some(*bxid),
            Message::ClosedThrough { .. } | Message::ForgetThrough { .. } => None,
        }
    }

    /// What names this message on the bus (the relay's `Nats-Msg-Id`, before any resend
    /// suffix): `<xid>.<kind>`, or `<from>-<to>.<kind>.<days>` for the watermark messages.
    pub fn bus_id(&self) -> String {
        match self {
            Message::ClosedThrough {
                exchanges,
                bindings,
                ..
            }
            | Message::ForgetThrough {
                exchanges,
                bindings,
                ..
            } => format!(
                "{}-{}.{}.{exchanges}.{bindings}",
                self.from(),
                self.to(),
                self.kind()
            ),
            _ => format!("{}.{}", self.xid().expect("an id"), self.kind()),
        }
    }

    /// The engine that sends it.
    pub fn from(&self) -> EngineId {
        match self {
            Message::Prepare { xid, .. } | Message::Block { xid, .. } => xid.engine,
            Message::Bind { bxid, .. } => bxid.engine,
            Message::Outcome { from_engine, .. }
            | Message::Unbind { from_engine, .. }
            | Message::BindStatus { from_engine, .. }
            | Message::ClosedThrough { from_engine, .. }
            | Message::ForgetThrough { from_engine, .. } => *from_engine,
        }
    }

    /// The engine it is for.
    pub fn to(&self) -> EngineId {
        match self {
            Message::Prepare { to_engine, .. }
            | Message::Block { to_engine, .. }
            | Message::Bind { to_engine, .. }
            | Message::Unbind { to_engine, .. }
            | Message::BindStatus { to_engine, .. }
            | Message::ClosedThrough { to_engine, .. }
            | Message::ForgetThrough { to_engine, .. } => *to_engine,
            Message::Outcome { xid, .. } => xid.engine,
        }
    }

    /// A short name of its kind (the relay's `Nats-Msg-Id` suffix).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Block { .. } => "block",
            Message::Outcome { outcome, .. } => outcome.as_str(),
            Message::Bind { .. } => "bind",
            Message::Unbind { .. } => "unbind",
            Message::BindStatus { status, .. } => match status {
                LinkStatus::Active => "bind-active",
                LinkStatus::Revoked => "bind-revoked",
                _ => "bind-refused",
            },
            Message::ClosedThrough { .. } => "closed-through",
            Message::ForgetThrough { .. } => "forget-through",
        }
    }
}

/// A journaled federation op. Each carries its time (the engine clock moves to it, as a core
/// write's does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FedOp {
    /// A client's wallet transfer to a receiver in a peer's province (sender side, phase 1):
    /// idempotent by `msgid` in the actor's scope, which also gives the exchange id.
    TransferOut {
        msgid: Msgid,
        time: i64,
        actor: Actor,
        from_psn_no: PsnNo,
        to_psn_no: PsnNo,
        to_admdvs: u32,
        amount: Fen,
        source: TransferSource,
    },
    /// The sender's reversal of its transfer `omsgid` (its timeout path): the relay sends
    /// `Block` instead of `Prepare` from now on. With the client's own `msgid` (op tag 10)
    /// the reversal is idempotent by it, as API.md's writes (`Federation::answer_msgids`);
    /// without it (tag 2, journals written before), answered as it is.
    Reverse {
        time: i64,
        actor: Actor,
        omsgid: Msgid,
        msgid: Option<Msgid>,
    },
    /// The receiver (or an admin) accepts a pending incoming transfer. With the client's
    /// `msgid` (op tag 11) idempotent by it, and a closed exchange is `NOT_PENDING` as
    /// API.md's accept; without it (tag 3), an accepted one is answered as it is.
    Accept {
        time: i64,
        actor: Actor,
        xid: Xid,
        msgid: Option<Msgid>,
    },
    /// The receiver (or an admin) declines it (op tags 12 and 4, as `Accept`).
    Decline {
        time: i64,
        actor: Actor,
        xid: Xid,
        msgid: Option<Msgid>,
    },
    /// A message the bus delivered to this engine.
    Deliver { time: i64, msg: Message },
    /// A client's binding of a local giver to a receiver in a peer's province (giver's
    /// side): idempotent by `msgid` in the actor's scope, which also gives the bxid.
    BindOut {
        msgid: Msgid,
        time: i64,
        actor: Actor,
        giver_psn_no: PsnNo,
        receiver_psn_no: PsnNo,
        receiver_admdvs: u32,
        relation: Relation,
    },
    /// Either person (or an admin) revokes a cross-engine binding on their own engine. With
    /// the client's `msgid` (op tag 8) the revocation is idempotent by it, as API.md's revoke:
    /// a retry answers the first time's answer, another revoke of a revoked binding is
    /// `ALREADY_REVOKED`. Without it (op tag 7, journals written before): answered as it is.
    Unbind {
        time: i64,
        actor: Actor,
        bxid: Xid,
        msgid: Option<Msgid>,
    },
    /// The periodic forgetting step (docs/FEDERATION.md, "Forgetting"): claims, per peer,
    /// the days through which everything with it is closed here (`ClosedThrough`), and drops
    /// the closed records made with a peer on or before the day both sides agreed, once the
    /// day is also past the msgid window. Refused when it would change nothing.
    Forget { time: i64 },
}

impl FedOp {
    /// A receiver's (or an admin's) `Accept` when `accept`, else its `Decline`.
    pub fn answer(accept: bool, time: i64, actor: Actor, xid: Xid, msgid: Option<Msgid>) -> FedOp {
        if accept {
            FedOp::Accept {
                time,
                actor,
                xid,
                msgid,
            }
        } else {
            FedOp::Decline {
                time,
                actor,
                xid,
                msgid,
            }
        }
    }

    pub fn time(&self) -> i64 {
        match self {
            FedOp::TransferOut { time, .. }
            | FedOp::Reverse { time, .. }
            | FedOp::Accept { time, .. }
            | FedOp::Decline { time, .. }
            | FedOp::Deliver { time, .. }
            | FedOp::BindOut { time, .. }
            | FedOp::Unbind { time, .. }
            | FedOp::Forget { time } => *time,
        }
    }

    /// The same op at `time` (the writer chooses the time of an op it is handed).
    pub fn set_time(&mut self, to: i64) {
        match self {
            FedOp::TransferOut { time, .. }
            | FedOp::Reverse { time, .. }
            | FedOp::Accept { time, .. }
            | FedOp::Decline { time, .. }
            | FedOp::Deliver { time, .. }
            | FedOp::BindOut { time, .. }
            | FedOp::Unbind { time, .. }
            | FedOp::Forget { time } => *time = to,
        }
    }
}

/// One op of a federated engine's journal.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Core(Op),
    Fed(FedOp),
}

impl Entry {
    pub fn time(&self) -> i64 {
        match self {
            Entry::Core(op) => op.time(),
            Entry::Fed(op) => op.time(),
        }
    }
}

/// Where an exchange stands on this engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XStatus {
    /// Sender side: held in flight, waiting for the receiver's outcome.
    InFlight,
    /// Receiver side: waiting for the receiver's accept or decline, or 06:00.
    Pending,
    /// Closed with this outcome (sender: committed when accepted, else returned).
    Closed(Outcome),
}

/// A client's accept, decline or reversal of an exchange, kept by its msgid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AnswerMsgid {
    pub xid: Xid,
    pub kind: AnswerKind,
    /// The exchange's status its answer showed (a retry shows it again, whatever since).
    pub shown: XStatus,
}

impl AnswerMsgid {
    /// Whether exchange `x` can be the one this answer was made to: its side, and for an
    /// accept or decline the status it closed with (a closed exchange stays so).
    pub(crate) fn fits(&self, x: &Exchange) -> bool {
        let closed = |o| self.shown == XStatus::Closed(o) && x.status == self.shown;
        x.xid == self.xid
            && x.outgoing == self.kind.outgoing()
            && match self.kind {
                AnswerKind::Accept => closed(Outcome::Accepted),
                AnswerKind::Decline => closed(Outcome::Declined),
                AnswerKind::Reverse => self.shown != XStatus::Pending,
            }
    }
}

/// What a client's answer to an exchange was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    Accept,
    Decline,
    Reverse,
}

impl AnswerKind {
    pub(crate) const ALL: [AnswerKind; 3] =
        [AnswerKind::Accept, AnswerKind::Decline, AnswerKind::Reverse];

    /// The side of the exchange it answers: the receiver's, or the sender's (a reversal).
    pub(crate) fn outgoing(self) -> bool {
        self == AnswerKind::Reverse
    }
}

/// One exchange as this engine knows it: sent (`outgoing`) or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exchange {
    pub xid: Xid,
    pub outgoing: bool,
    /// The other engine.
    pub peer: EngineId,
    /// The local person: the sender, or the receiver (None when the receiver is unknown here,
    /// or the exchange was blocked before its Prepare arrived).
    pub person: Option<u32>,
    /// The receiver's psn_no as the sender named it.
    pub to_psn_no: PsnNo,
    pub to_admdvs: u32,
    pub sender_admdvs: u32,
    pub amount: Fen,
    pub source: TransferSource,
    pub created: i64,
    pub expires_at: i64,
    pub status: XStatus,
    /// Sender side: the sender reversed it (the relay sends Block).
    pub reversed: bool,
    /// Sender side: the fingerprint of the client's request (a retry must match it).
    pub fingerprint: u64,
    /// Sender side: the sender's account and wallet balances its first answer showed (after
    /// the hold), for the retry's answer; None for exchanges recorded before they were kept.
    pub answered_balances: Option<(Fen, Fen)>,
    /// Receiver side: the sender's psn_no, as its Prepare named it; None for records made
    /// before it was kept, and for one blocked before its Prepare arrived.
    pub from_psn_no: Option<PsnNo>,
}

/// The federation part of the state. Empty and unconfigured on an engine without
/// `[federation]`, where it costs nothing and changes nothing.
#[derive(Clone, Debug, Default)]
pub struct Federation {
    pub(crate) config: Option<Arc<FederationConfig>>,
    pub(crate) exchanges: Vec<Exchange>,
    /// Exchange index by xid (sorted: nothing of hash order reaches a result).
    pub(crate) index: BTreeMap<Xid, u32>,
    /// Sender side: the exchanges in flight, i.e. the outbox.
    pub(crate) in_flight: BTreeSet<u32>,
    /// Receiver side: pending exchanges by expiry.
    pub(crate) expiry: BTreeSet<(i64, u32)>,
    /// Cross-engine bindings (`links.rs`), in the order this engine first recorded them.
    pub(crate) links: Vec<Link>,
    /// Link index by bxid.
    pub(crate) link_index: BTreeMap<Xid, u32>,
    /// Links whose message the relay sends until answered (`Link::outgoing`).
    pub(crate) link_outbox: BTreeSet<u32>,
    /// (local person, link) of every pending or active link: the persons' binding limits.
    pub(crate) live: BTreeSet<(u32, u32)>,
    /// (local person, exchange) of every exchange with a person here: the person's view.
    pub(crate) person_exchanges: BTreeSet<(u32, u32)>,
    /// (local person, link) of every link with a person here, whatever its status.
    pub(crate) person_links: BTreeSet<(u32, u32)>,
    /// The msgid key (in the client's scope) of each revocation made here by a client write
    /// that carried its msgid, and the link it revoked: a retry is answered from it, and no
    /// other write may take the msgid.
    pub(crate) unbind_msgids: BTreeMap<u128, u32>,
    /// The msgid key (in the client's scope) of each accept, decline and reversal of an
    /// exchange made here by a client write that carried its msgid: a retry is answered as
    /// the first time, and no other write may take the msgid. Kept while the exchange is.
    pub(crate) answer_msgids: BTreeMap<u128, AnswerMsgid>,
    /// Forgetting (docs/FEDERATION.md): per peer, the days agreed with it and claimed here.
    /// An entry exists once this engine claimed or agreed a day with the peer.
    pub(crate) watermarks: BTreeMap<EngineId, Watermark>,
    /// The reconciliation counters of forgotten exchanges, by (CST day made, peer): kept as
    /// totals so that `reconcile` and `report` answer as before the records went.
    pub(crate) forgotten: BTreeMap<(i32, EngineId), FedCounters>,
    /// Exchange records dropped so far. Entries name an exchange by its number (its position
    /// when recorded, + 1), which does not change when records before it go.
    pub(crate) exchanges_dropped: u64,
    /// Once any exchange was dropped: each record's number − 1, ascending (empty before, when
    /// record `i` is number `i + 1`).
    pub(crate) slots: Vec<u32>,
    /// Binding records dropped so far (no entry names a binding: the rest are renumbered).
    pub(crate) links_dropped: u64,
}

/// Forgetting with one peer: the CST days through which both sides agreed that every
/// exchange (binding) between them is closed, and the days this engine claimed and the peer
/// has not yet confirmed ([`NO_DAY`]: none). A claim above the agreed day is in the outbox
/// (`ClosedThrough`) until the peer's `ForgetThrough` answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub exchanges: i32,
    pub bindings: i32,
    pub claimed_exchanges: i32,
    pub claimed_bindings: i32,
}

impl Default for Watermark {
    fn default() -> Watermark {
        Watermark {
            exchanges: NO_DAY,
            bindings: NO_DAY,
            claimed_exchanges: NO_DAY,
            claimed_bindings: NO_DAY,
        }
    }
}

impl Watermark {
    /// A claim the peer has not yet confirmed.
    pub fn unconfirmed(&self) -> bool {
        self.claimed_exchanges > self.exchanges || self.claimed_bindings > self.bindings
    }
}

impl Federation {
    pub fn is_configured(&self) -> bool {
        self.config.is_some()
    }

    /// The `ref` of an entry naming exchange number `id`: its xid, or `forgotten-<id>` once
    /// the record was dropped (docs/FEDERATION.md, "Forgetting").
    pub(crate) fn exchange_ref(&self, id: u64) -> String {
        match self.record_of(id) {
            Some(i) => self.exchanges[i as usize].xid.to_string(),
            None => format!("forgotten-{id}"),
        }
    }

    /// Record `i`'s number − 1 (what entries name, + 1).
    pub(crate) fn slot(&self, i: u32) -> u32 {
        if self.exchanges_dropped == 0 {
            i
        } else {
            self.slots[i as usize]
        }
    }

    /// The exchange numbers given so far (numbers are `1..=numbers()`).
    pub(crate) fn numbers(&self) -> u64 {
        self.exchanges.len() as u64 + self.exchanges_dropped
    }

    /// The record of exchange number `id`, if it is still held.
    pub(crate) fn record_of(&self, id: u64) -> Option<u32> {
        let slot = u32::try_from(id.checked_sub(1)?).ok()?;
        if self.exchanges_dropped == 0 {
            return ((slot as usize) < self.exchanges.len()).then_some(slot);
        }
        self.slots.binary_search(&slot).ok().map(|i| i as u32)
    }

    /// (in flight, sent, received) recomputed from the records and the forgotten totals.
    pub(crate) fn recompute_ledger(&self) -> (u64, u64, u64) {
        let (mut in_flight, mut sent, mut received) = (0, 0, 0);
        for c in self.forgotten.values() {
            sent += c.committed.amount;
            received += c.accepted.amount;
        }
        for x in &self.exchanges {
            match (x.outgoing, x.status) {
                (true, XStatus::InFlight) => in_flight += x.amount.0,
                (true, XStatus::Closed(Outcome::Accepted)) => sent += x.amount.0,
                (false, XStatus::Closed(Outcome::Accepted)) => received += x.amount.0,
                _ => {}
            }
        }
        (in_flight, sent, received)
    }

    /// The statistics cell of an accepted incoming exchange: the sender's province and the
    /// amount (DOMAIN.md rule 17 counts a transfer by its sender's province); `None` when its
    /// record was forgotten.
    pub(crate) fn accepted_cell(&self, id: u64) -> Result<Option<(u8, Fen)>, String> {
        if (1..=self.numbers()).contains(&id) && self.record_of(id).is_none() {
            return Ok(None);
        }
        let x = self
            .record_of(id)
            .map(|i| &self.exchanges[i as usize])
            .ok_or_else(|| format!("wallet_in entry names no exchange {id}"))?;
        if x.outgoing || x.status != XStatus::Closed(Outcome::Accepted) {
            return Err(format!(
                "wallet_in entry names exchange {} not accepted",
                x.xid
            ));
        }
        Ok(Some((
            crate::certno::admdvs_province(x.sender_admdvs),
            x.amount,
        )))
    }

    /// Appends an exchange record and enters it in the index and the person's set (the
    /// outbox and expiry set are the caller's: they depend on the side and status).
    pub(crate) fn push_exchange(&mut self, x: Exchange) -> u32 {
        let i = self.exchanges.len() as u32;
        let fresh = self.index.insert(x.xid, i).is_none();
        assert!(fresh, "exchange {} recorded twice", x.xid);
        if self.exchanges_dropped > 0 {
            let number = u32::try_from(self.numbers()).expect("at most u32::MAX exchanges");
            self.slots.push(number);
        }
        if let Some(p) = x.person {
            self.person_exchanges.insert((p, i));
        }
        self.exchanges.push(x);
        i
    }

    /// Whether a client's write here took msgid `key` (in its scope) as a cross-engine
    /// transfer or binding (their ids are made from it), a revocation, or an answer to an
    /// exchange. The core writes' msgids are the state's msgid records.
    pub(crate) fn msgid_taken(&self, engine: EngineId, key: u128) -> bool {
        let xid = Xid { engine, key };
        self.index.contains_key(&xid)
            || self.link_index.contains_key(&xid)
            || self.unbind_msgids.contains_key(&key)
            || self.answer_msgids.contains_key(&key)
    }

    /// Puts exchange `i` into the open set its record says it is in: the outbox (sent, in
    /// flight) or the expiry queue (received, pending); a closed one into neither.
    pub(crate) fn index_open(&mut self, i: u32) {
        let x = &self.exchanges[i as usize];
        match (x.outgoing, x.status) {
            (true, XStatus::InFlight) => {
                self.in_flight.insert(i);
            }
            (false, XStatus::Pending) => {
                self.expiry.insert((x.expires_at, i));
            }
            _ => {}
        }
    }

    /// The derived sets and the index agree with the records.
    pub(crate) fn check(&self, person_count: usize) -> Result<(), String> {
        if self.config.is_none() && !(self.exchanges.is_empty() && self.links.is_empty()) {
            return Err("exchanges without [federation]".into());
        }
        self.check_links(person_count)?;
        self.check_forgetting()?;
        for (&key, &l) in &self.unbind_msgids {
            // Revoked here; a refusal crossing the revocation may have closed it since.
            let closed = self
                .links
                .get(l as usize)
                .is_some_and(|link| !link.status.is_live() && link.person.is_some());
            if !closed || key == 0 {
                return Err(format!(
                    "revocation msgid {key:x}: link {l} is not closed here"
                ));
            }
        }
        for (&key, answer) in &self.answer_msgids {
            let x = self
                .index
                .get(&answer.xid)
                .map(|&i| &self.exchanges[i as usize]);
            if key == 0 || !x.is_some_and(|x| answer.fits(x)) {
                return Err(format!(
                    "answer msgid {key:x}: exchange {} differs",
                    answer.xid
                ));
            }
        }
        if self.index.len() != self.exchanges.len() {
            return Err("exchange index size differs".into());
        }
        for (i, x) in self.exchanges.iter().enumerate() {
            let i = i as u32;
            if self.index.get(&x.xid) != Some(&i) {
                return Err(format!("exchange {} not indexed", x.xid));
            }
            if x.person.is_some_and(|p| p as usize >= person_count) || x.amount.is_zero() {
                return Err(format!("exchange {}: person or amount", x.xid));
            }
            let flying = x.outgoing && x.status == XStatus::InFlight;
            if flying != self.in_flight.contains(&i) {
                return Err(format!("exchange {}: outbox differs", x.xid));
            }
            let pending = !x.outgoing && x.status == XStatus::Pending;
            if pending != self.expiry.contains(&(x.expires_at, i)) {
                return Err(format!("exchange {}: expiry set differs", x.xid));
            }
            if x.outgoing && (x.person.is_none() || x.status == XStatus::Pending) {
                return Err(format!("exchange {}: sender side", x.xid));
            }
            let sides = if x.outgoing {
                x.from_psn_no.is_some()
            } else {
                x.answered_balances.is_some() || x.status == XStatus::InFlight
            };
            if sides {
                return Err(format!("exchange {}: receiver side", x.xid));
            }
            if x.person
                .is_some_and(|p| !self.person_exchanges.contains(&(p, i)))
            {
                return Err(format!("exchange {}: not in its person's set", x.xid));
            }
        }
        let with_person = self.exchanges.iter().filter(|x| x.person.is_some()).count();
        if with_person != self.person_exchanges.len() {
            return Err("the persons' exchange set names an unknown exchange".into());
        }
        // Every record was checked against both sets above; what is left is an entry naming
        // no record.
        let len = self.exchanges.len();
        if self.in_flight.iter().any(|&i| i as usize >= len)
            || self.expiry.iter().any(|&(_, i)| i as usize >= len)
        {
            return Err("outbox or expiry set names an unknown exchange".into());
        }
        Ok(())
    }
}

/// An exchange as views and checkers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeView {
    pub xid: Xid,
    pub outgoing: bool,
    pub peer: EngineId,
    /// The local person's psn_no (sender or receiver), if known here.
    pub psn_no: Option<PsnNo>,
    pub to_psn_no: PsnNo,
    pub amount: Fen,
    pub source: TransferSource,
    pub status: XStatus,
    pub reversed: bool,
    pub created: i64,
    pub expires_at: i64,
    /// Sender side: the sender's (account, wallet) balances the first answer to the transfer
    /// showed, if kept.
    pub answered_balances: Option<(Fen, Fen)>,
    /// The sender's psn_no: the local person's on the sender side; on the receiver's, as the
    /// Prepare named it (None for a record made before it was kept).
    pub from_psn_no: Option<PsnNo>,
}

/// What is open on a federated engine (`State::fed_open`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FedOpen {
    /// Per peer: exchanges in flight toward it, and the oldest one's creation time.
    pub in_flight: std::collections::BTreeMap<crate::federation::EngineId, (u64, i64)>,
    /// Incoming exchanges waiting for the receiver.
    pub pending: u64,
    /// Cross-engine bindings proposed or revoked here and not yet answered by the peer.
    pub bindings_unanswered: u64,
}

/// The ledger's totals, for checks across engines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoneyTotals {
    /// Accounts + wallets + held (pending in-engine transfers).
    pub inside: u64,
    pub in_flight: u64,
    /// Credited − paid to institutions − contributions + returned by cancellations.
    pub external_net: i128,
    pub fed_sent: u64,
    pub fed_received: u64,
}

/// What a federation op answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FedReply {
    /// The exchange after the op (a transfer, a reversal, an accept or decline).
    Exchange(ExchangeView),
    /// A bus message was taken in (or recognised as a duplicate).
    Delivered,
    /// The cross-engine binding after the op (a bind or a revocation).
    Binding(LinkView),
    /// A forgetting step: the exchange and binding records it dropped.
    Forgot { exchanges: u64, bindings: u64 },
}

/// What `State::apply_entry` answered.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryReply {
    Core(crate::Reply),
    Fed(FedReply),
}

/// An applied (or replayed) entry, with the messages it gives the relay to send once the op
/// is durable (outcomes of exchanges closed here, or the stored outcome a duplicate asks for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryApplied {
    pub reply: EntryReply,
    /// True when nothing changed: a duplicate answered from the record (not journaled).
    pub replayed: bool,
    pub send: Vec<Message>,
}

/// A count and an amount in fen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub amount: u64,
}

impl Tally {
    fn add(&mut self, amount: Fen) {
        self.count += 1;
        self.amount += amount.0;
    }
}

/// Reconciliation counters of one engine toward one peer, for the exchanges made on one CST
/// day (the sender's creation time, which both sides know): the national platform's 对账
/// between engines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FedCounters {
    /// Sender side: made, committed (accepted by the peer), returned (declined, expired,
    /// blocked), still in flight.
    pub sent: Tally,
    pub committed: Tally,
    pub returned: Tally,
    pub in_flight: Tally,
    /// Receiver side: taken in, accepted, closed otherwise (declined, expired, blocked),
    /// still pending.
    pub received: Tally,
    pub accepted: Tally,
    pub refused: Tally,
    pub pending: Tally,
}

impl Federation {
    /// The reconciliation counters by (CST day of creation, peer): the records', plus the
    /// totals of the forgotten ones.
    pub(crate) fn counters(&self) -> BTreeMap<(i32, EngineId), FedCounters> {
        let mut out = self.forgotten.clone();
        for x in &self.exchanges {
            let c = out
                .entry((crate::time::cst_day(x.created), x.peer))
                .or_default();
            c.count(x);
        }
        out
    }
}

impl FedCounters {
    /// Counts exchange `x` in its side's tallies.
    pub(crate) fn count(&mut self, x: &Exchange) {
        let closed_accepted = x.status == XStatus::Closed(Outcome::Accepted);
        let open = matches!(x.status, XStatus::InFlight | XStatus::Pending);
        let (all, accepted, other, still) = if x.outgoing {
            (
                &mut self.sent,
                &mut self.committed,
                &mut self.returned,
                &mut self.in_flight,
            )
        } else {
            (
                &mut self.received,
                &mut self.accepted,
                &mut self.refused,
                &mut self.pending,
            )
        };
        all.add(x.amount);
        if closed_accepted {
            accepted.add(x.amount);
        } else if open {
            still.add(x.amount);
        } else {
            other.add(x.amount);
        }
    }

    /// Every tally, in a fixed order (snapshots).
    pub(crate) fn tallies(&self) -> [Tally; 8] {
        [
            self.sent,
            self.committed,
            self.returned,
            self.in_flight,
            self.received,
            self.accepted,
            self.refused,
            self.pending,
        ]
    }

    pub(crate) fn from_tallies(t: [Tally; 8]) -> FedCounters {
        FedCounters {
            sent: t[0],
            committed: t[1],
            returned: t[2],
            in_flight: t[3],
            received: t[4],
            accepted: t[5],
            refused: t[6],
            pending: t[7],
        }
    }
}
