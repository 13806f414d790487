//! Reads answered at once as of the last durable op, never showing an op a crash could undo.
//!
//! The writer applies ops before they are durable (batch k+1 while batch k syncs). A read of a
//! person, a person's entries, a settlement, a binding or the statistics is answered from the
//! live state as of [`Marks`]: the state's marks after the last durable op, which whichever
//! thread commits a batch publishes just before `durable_op` moves there. Records made since
//! the marks are left out by their position (persons, entries, settlements and bindings only
//! grow), balances are walked back over the person's entries made since (every balance change
//! is an entry), and the statistics are the marks' own copy (a pointer per month). What else a
//! not yet durable op changes in place, a person's status, wallet opening and bindings, and a
//! settlement's cancellation, the writer remembers in the [`Overlay`] before the op changes it,
//! only for the ops that change it (a settlement, nine in ten ops, records nothing); it is
//! forgotten once durable. No second copy of the state.
//!
//! A federated engine's federation ops are not overlaid: its reads of persons, entries,
//! settlements and bindings wait for durability as before (`Engine::read_durable`); its
//! statistics, a copy taken between batches, are answered as of the marks too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gongji_core::reply::ReversalResult;
use gongji_core::time::Period;
use gongji_core::views::{BindingView, EntryView, Marks, PersonView, SettlementView, StatsView};
use gongji_core::{Actor, Body, MsgidScope, PersonStatus, PsnNo, Rejection, Reply, State};

/// What reads need to answer as of the last durable op.
pub(crate) struct Reads {
    /// The marks of the last durable op.
    marks: Mutex<Arc<Marks>>,
    overlay: Mutex<Overlay>,
}

/// What ops not yet durable changed in place, before they changed it, by op number.
#[derive(Default)]
struct Overlay {
    /// Persons' status, wallet and bindings before each op that changed them, oldest first.
    persons: HashMap<PsnNo, Vec<(u64, Structure)>>,
    /// Bindings before each op that changed them (or another binding of their receiver),
    /// oldest first.
    bindings: HashMap<u64, Vec<(u64, BindingView)>>,
    /// Settlements (by index) cancelled, with the op that cancelled them.
    cancelled: HashMap<u32, u64>,
}

/// The fields of a person view that only the status, wallet and binding ops change.
#[derive(Clone)]
struct Structure {
    status: PersonStatus,
    wallet_open: bool,
    given: Vec<BindingView>,
    received: Vec<BindingView>,
}

/// What an op is about to change that the overlay must remember, taken before it is applied
/// ([`Pre::of`]); nothing for the common ops.
#[derive(Default)]
pub(crate) struct Pre {
    persons: Vec<(PsnNo, Structure)>,
    bindings: Vec<BindingView>,
    /// A reversal's settlement, when it is not cancelled yet.
    reversed: Option<u32>,
}

impl Pre {
    /// The persons whose status, wallet or bindings `body` may change (for a binding made or
    /// revoked: both parties and every giver of the receiver, whose bindings' priorities may
    /// move), as they are now; a reversal's settlement.
    pub(crate) fn of(state: &State, body: &Body, actor: &Actor) -> Pre {
        let mut pre = Pre::default();
        let mut psn_nos: Vec<PsnNo> = Vec::new();
        match body {
            Body::SetStatus { psn_no, .. } | Body::OpenWallet { psn_no } => psn_nos.push(*psn_no),
            Body::Bind {
                giver_psn_no,
                receiver_psn_no,
                ..
            } => {
                psn_nos.push(*giver_psn_no);
                psn_nos.push(*receiver_psn_no);
            }
            Body::Revoke { binding_id } => {
                if let Ok(b) = state.binding(*binding_id) {
                    psn_nos.push(b.giver_psn_no);
                    psn_nos.push(b.receiver_psn_no);
                    pre.bindings.push(b);
                }
            }
            Body::Reverse {
                omsgid,
                fixmedins_code,
            } => {
                let scope = match fixmedins_code {
                    Some(code) => MsgidScope::Institution(code),
                    None => actor.msgid_scope(),
                };
                if let Some(Reply::Settled(s)) = state.reply_of(scope, omsgid) {
                    if (s as usize) < state.settlement_count()
                        && !state.settlement_view(s).cancelled
                    {
                        pre.reversed = Some(s);
                    }
                }
                return pre;
            }
            _ => return pre,
        }
        // A binding's receiver is second (none when a revocation names no binding).
        if let (Body::Bind { .. } | Body::Revoke { .. }, Some(receiver)) = (body, psn_nos.get(1)) {
            if let Ok(view) = state.person(receiver) {
                psn_nos.extend(view.bindings_received.iter().map(|b| b.giver_psn_no));
            }
        }
        psn_nos.sort_unstable();
        psn_nos.dedup();
        for psn_no in psn_nos {
            if let Ok(view) = state.person(&psn_no) {
                let structure = Structure::of(view);
                pre.bindings.extend(structure.given.iter().cloned());
                pre.bindings.extend(structure.received.iter().cloned());
                pre.persons.push((psn_no, structure));
            }
        }
        pre
    }

    fn is_empty(&self) -> bool {
        self.persons.is_empty() && self.bindings.is_empty() && self.reversed.is_none()
    }
}

impl Structure {
    fn of(view: PersonView) -> Structure {
        Structure {
            status: view.status,
            wallet_open: view.wallet_open,
            given: view.bindings_given,
            received: view.bindings_received,
        }
    }

    fn apply_to(&self, view: &mut PersonView) {
        view.status = self.status;
        view.wallet_open = self.wallet_open;
        view.bindings_given.clone_from(&self.given);
        view.bindings_received.clone_from(&self.received);
    }
}

/// The first change made after `op` in a list of changes, oldest first: what stood at `op`.
fn before<T>(changes: Option<&Vec<(u64, T)>>, op: u64) -> Option<&T> {
    changes?.iter().find(|(at, _)| *at > op).map(|(_, t)| t)
}

impl Reads {
    pub(crate) fn new(marks: Marks) -> Reads {
        Reads {
            marks: Mutex::new(Arc::new(marks)),
            overlay: Mutex::new(Overlay::default()),
        }
    }

    /// The marks of the last durable op.
    pub(crate) fn marks(&self) -> Arc<Marks> {
        self.marks.lock().expect("marks lock").clone()
    }

    /// Every op up to `marks.op` is durable: called just before `durable_op` moves there, so
    /// that the marks a read finds are never older than a durable op the writer has seen
    /// (which is what [`Reads::prune`] forgets up to).
    pub(crate) fn publish(&self, marks: Arc<Marks>) {
        let mut held = self.marks.lock().expect("marks lock");
        if marks.op > held.op {
            *held = marks;
        }
    }

    /// The writer, under the state's write lock, after applying op `op` (not a replay) whose
    /// reply is `reply`: remembers what `pre` took before it.
    pub(crate) fn record(&self, pre: Pre, reply: &Reply, op: u64) {
        let cancelled = match reply {
            Reply::Cancelled(s) => Some(*s),
            Reply::Reversal {
                result: ReversalResult::Cancelled,
                ..
            } => pre.reversed,
            _ => None,
        };
        if pre.is_empty() && cancelled.is_none() {
            return;
        }
        let mut overlay = self.overlay.lock().expect("overlay lock");
        if let Some(s) = cancelled {
            overlay.cancelled.insert(s, op);
        }
        for (psn_no, structure) in pre.persons {
            overlay
                .persons
                .entry(psn_no)
                .or_default()
                .push((op, structure));
        }
        for binding in pre.bindings {
            overlay
                .bindings
                .entry(binding.binding_id)
                .or_default()
                .push((op, binding));
        }
    }

    /// The writer, under the state's write lock: forgets the changes of ops up to `durable`.
    pub(crate) fn prune(&self, durable: u64) {
        let mut overlay = self.overlay.lock().expect("overlay lock");
        let o = &mut *overlay;
        if o.persons.is_empty() && o.bindings.is_empty() && o.cancelled.is_empty() {
            return;
        }
        o.cancelled.retain(|_, op| *op > durable);
        o.persons.retain(|_, changes| {
            changes.retain(|(op, _)| *op > durable);
            !changes.is_empty()
        });
        o.bindings.retain(|_, changes| {
            changes.retain(|(op, _)| *op > durable);
            !changes.is_empty()
        });
    }

    /// A person as of `m.op`, from the live state (which holds every op the overlay has).
    pub(crate) fn person(
        &self,
        state: &State,
        m: &Marks,
        psn_no: &str,
    ) -> Result<PersonView, Rejection> {
        let mut view = state.person_as_of(psn_no, m)?;
        let overlay = self.overlay.lock().expect("overlay lock");
        if let Some(structure) = before(overlay.persons.get(&view.psn_no), m.op) {
            structure.apply_to(&mut view);
        }
        Ok(view)
    }

    /// A settlement as of `m.op`.
    pub(crate) fn settlement(
        &self,
        state: &State,
        m: &Marks,
        setl_id: u64,
    ) -> Result<SettlementView, Rejection> {
        let mut view = state.settlement_as_of(setl_id, m)?;
        if view.cancelled {
            let overlay = self.overlay.lock().expect("overlay lock");
            let index = u32::try_from(setl_id - 1).expect("a settlement index fits u32");
            if overlay.cancelled.get(&index).is_some_and(|&op| op > m.op) {
                view.cancelled = false;
            }
        }
        Ok(view)
    }

    /// A binding as of `m.op`.
    pub(crate) fn binding(
        &self,
        state: &State,
        m: &Marks,
        binding_id: u64,
    ) -> Result<BindingView, Rejection> {
        let view = state.binding_as_of(binding_id, m)?;
        let overlay = self.overlay.lock().expect("overlay lock");
        Ok(before(overlay.bindings.get(&binding_id), m.op)
            .cloned()
            .unwrap_or(view))
    }
}

/// A page of entries and the `after` of the next page, if any.
pub type EntriesPage = (Vec<EntryView>, Option<u64>);

/// The reads of [`crate::Engine`] answered as of the last durable op.
impl crate::Engine {
    /// Person `psn_no` as of the last durable op: answered at once, never showing an op a
    /// crash could still undo. `None` on a federated engine (use [`crate::Engine::read_durable`]).
    pub fn person_durable(&self, psn_no: &str) -> Option<Result<PersonView, Rejection>> {
        let reads = self.durable_reads()?;
        let state = self.shared.state.read();
        let marks = reads.marks();
        Some(reads.person(&state, &marks, psn_no))
    }

    /// [`State::entries`] as of the last durable op, at once (`None`: federated).
    pub fn entries_durable(
        &self,
        psn_no: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Option<Result<EntriesPage, Rejection>> {
        let reads = self.durable_reads()?;
        let state = self.shared.state.read();
        let marks = reads.marks();
        Some(state.entries_as_of(psn_no, after, limit, &marks))
    }

    /// [`State::settlement`] as of the last durable op, at once (`None`: federated).
    pub fn settlement_durable(&self, setl_id: u64) -> Option<Result<SettlementView, Rejection>> {
        let reads = self.durable_reads()?;
        let state = self.shared.state.read();
        let marks = reads.marks();
        Some(reads.settlement(&state, &marks, setl_id))
    }

    /// [`State::binding`] as of the last durable op, at once (`None`: federated).
    pub fn binding_durable(&self, binding_id: u64) -> Option<Result<BindingView, Rejection>> {
        let reads = self.durable_reads()?;
        let state = self.shared.state.read();
        let marks = reads.marks();
        Some(reads.binding(&state, &marks, binding_id))
    }

    /// The marks of the last durable op (counts of what the durable reads can find).
    pub fn marks_durable(&self) -> Arc<Marks> {
        self.shared.reads.marks()
    }

    /// [`State::stats`] as of the last durable op: no lock, never waits for the writer.
    pub fn stats_durable(&self, from: Period, to: Period, province: Option<u8>) -> StatsView {
        self.shared.reads.marks().stats(from, to, province)
    }

    /// The reads with an overlay: not on a federated engine, whose federation ops change
    /// persons without one.
    fn durable_reads(&self) -> Option<&Reads> {
        (!self.shared.federated).then_some(&self.shared.reads)
    }
}
