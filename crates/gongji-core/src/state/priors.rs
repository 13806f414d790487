//! Person views as of the last durable op, without waiting for the ops applied since.
//!
//! The server's writer applies ops before they are durable (batch k+1 while batch k syncs), and
//! a read must never show what a crash could still undo. Instead of holding a person read's
//! answer until the ops it saw are durable (the rest of a batch and its sync: milliseconds at
//! full load), the state keeps, for the ops not yet durable, each changed person's *prior*: what
//! the person's view was before the first change. [`State::person_as_of`] answers the person
//! as of a durable op from the priors and the current state.
//!
//! The ops not yet known durable are split into *segments* at the points where the server may
//! declare ops durable ([`State::seal_priors`]); a segment `(start, end]` keeps, for each person
//! it changed, the view at `start`: the money and flags ([`Prior::Money`]), or the whole view
//! when a binding the view lists changed ([`Prior::View`]: its priorities move for every giver
//! of the receiver). Segments whose ops are all durable are dropped ([`State::drop_priors`]),
//! so what is kept is bounded by the ops in flight, never by history. Off (and empty) unless
//! the server asks for it ([`State::keep_priors`]): replay, tests and tools pay nothing.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::persons::{FLAG_SUSPENDED, FLAG_WALLET};
use super::State;
use crate::command::PersonStatus;
use crate::money::Fen;
use crate::reply::{ErrCode, Rejection};
use crate::views::{EntriesPage, PersonView, SettlementView};

use super::persons::id_to_index;

/// What a person's view was at the start of a segment. `Copy`, so that emptying a map for
/// reuse is a reset of its control bytes, not a walk of its entries under the writer's lock.
#[derive(Clone, Copy, Debug)]
enum Prior {
    /// Balances and flags; the bindings were not changed in the segment.
    Money { acct: Fen, wallet: Fen, flags: u8 },
    /// The whole view (a binding it lists changed in the segment): its place in the
    /// segment's `views`.
    View(u32),
}

#[derive(Debug)]
struct Segment {
    /// The segment holds the ops after `start` up to `end` (`u64::MAX` while open).
    start: u64,
    end: u64,
    /// Persons enrolled at `start`: a later index was not there.
    persons: u32,
    /// Entries and settlements made by `start` (records never change once written; a later
    /// id is not there yet).
    entries: u32,
    setls: u32,
    priors: FxHashMap<u32, Prior>,
    views: Vec<PersonView>,
    /// Settlements made before the segment and cancelled in it.
    cancelled: Vec<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct Priors {
    /// Oldest first; the last is open. Empty when off.
    segments: VecDeque<Segment>,
    /// The maps of dropped segments, emptied, for the next ones: a segment's map is then
    /// already as large as the writer's batches need, and is neither allocated nor grown
    /// (rehashed a dozen times) on the writer's path.
    spare: Vec<FxHashMap<u32, Prior>>,
}

/// Spare maps kept (a few batches are in flight at once), and the largest kept: a map grown
/// by a bulk load (a credit of a million accounts) is freed rather than kept and cleared.
const SPARE_MAX: usize = 4;
const SPARE_CAPACITY_MAX: usize = 1 << 16;

impl Priors {
    fn open(&mut self) -> Option<&mut Segment> {
        self.segments.back_mut()
    }
}

impl State {
    /// Starts keeping priors from the current op (the server's writer, once recovered).
    pub fn keep_priors(&mut self) {
        if self.priors.segments.is_empty() {
            self.open_segment();
        }
    }

    fn open_segment(&mut self) {
        let priors = self.priors.spare.pop().unwrap_or_default();
        self.priors.segments.push_back(Segment {
            start: self.op_count,
            end: u64::MAX,
            persons: self.persons.len() as u32,
            entries: self.entries.len() as u32,
            setls: self.setls.len() as u32,
            priors,
            views: Vec::new(),
            cancelled: Vec::new(),
        });
    }

    /// Closes the open segment at the current op, so that a person can be answered as of it
    /// once it is durable: called wherever the ops applied so far may become durable together
    /// (a batch or part of one handed to the sync).
    pub fn seal_priors(&mut self) {
        let op = self.op_count;
        match self.priors.open() {
            Some(open) if open.start < op => open.end = op,
            _ => return,
        }
        self.open_segment();
    }

    /// Drops the segments whose ops are all durable (`durable` is the last durable op).
    pub fn drop_priors(&mut self, durable: u64) {
        let Priors { segments, spare } = &mut self.priors;
        while segments.len() > 1 && segments[0].end <= durable {
            let mut dropped = segments.pop_front().expect("more than one").priors;
            if spare.len() < SPARE_MAX && dropped.capacity() <= SPARE_CAPACITY_MAX {
                dropped.clear();
                spare.push(dropped);
            }
        }
    }

    /// Before person `i`'s balances or flags change: keeps them as they were, if this is the
    /// segment's first change of the person.
    #[inline]
    pub(crate) fn prior_money(&mut self, i: u32) {
        let Some(open) = self.priors.segments.back_mut() else {
            return;
        };
        if i >= open.persons {
            return;
        }
        open.priors.entry(i).or_insert_with(|| {
            let hot = &self.persons.hot[i as usize];
            Prior::Money {
                acct: hot.acct,
                wallet: hot.wallet,
                flags: hot.flags,
            }
        });
    }

    /// Before settlement `s` is marked cancelled.
    pub(crate) fn prior_cancel(&mut self, s: u32) {
        if let Some(open) = self.priors.segments.back_mut() {
            if s < open.setls {
                open.cancelled.push(s);
            }
        }
    }

    /// Before binding `b` is linked, unlinked or revoked: keeps the whole view of every
    /// person whose view lists a binding whose priority or presence may change: its giver,
    /// its receiver and the receiver's other givers.
    pub(crate) fn prior_bindings(&mut self, b: u32) {
        let Some(open) = self.priors.segments.back() else {
            return;
        };
        let persons = open.persons;
        let binding = &self.bindings[b as usize];
        let (giver, receiver) = (binding.giver, binding.receiver);
        let mut touched: Vec<u32> = self
            .received(receiver)
            .map(|x| self.bindings[x as usize].giver)
            .collect();
        touched.extend([giver, receiver]);
        let mut views = Vec::new();
        for i in touched {
            if i >= persons {
                continue;
            }
            let view = match open.priors.get(&i) {
                Some(Prior::View(_)) => continue,
                Some(&Prior::Money {
                    acct,
                    wallet,
                    flags,
                }) => with_money(self.person_view(i), acct, wallet, flags),
                None => self.person_view(i),
            };
            views.push((i, view));
        }
        let open = self.priors.segments.back_mut().expect("checked above");
        for (i, view) in views {
            open.priors.insert(i, Prior::View(open.views.len() as u32));
            open.views.push(view);
        }
    }

    /// The first segment not durable at op `durable`, if it starts there: what the as-of
    /// reads below need. `None` when priors are not kept or `durable` is inside a segment.
    fn durable_segment(&self, durable: u64) -> Option<usize> {
        let segments = &self.priors.segments;
        let first = segments.iter().position(|s| s.end > durable)?;
        (segments[first].start == durable).then_some(first)
    }

    /// Person `psn_no`'s index, if the person was enrolled by the start of segment `first`.
    fn person_at(&self, psn_no: &str, first: usize) -> Result<u32, Rejection> {
        match self.person_index(psn_no)? {
            i if i < self.priors.segments[first].persons => Ok(i),
            _ => Err(Rejection::new(ErrCode::PersonNotFound)),
        }
    }

    /// The person as of op `durable`, which must be durable and at most the current op:
    /// `None` when the priors cannot tell (not kept, or `durable` is not a segment's start:
    /// the caller then answers the current view once it is durable).
    pub fn person_as_of(
        &self,
        psn_no: &str,
        durable: u64,
    ) -> Option<Result<PersonView, Rejection>> {
        let first = self.durable_segment(durable)?;
        let segments = &self.priors.segments;
        let i = match self.person_at(psn_no, first) {
            Ok(i) => i,
            Err(e) => return Some(Err(e)),
        };
        let mut money = None;
        for segment in segments.range(first..) {
            match segment.priors.get(&i) {
                Some(&Prior::View(v)) => {
                    let view = segment.views[v as usize].clone();
                    return Some(Ok(match money {
                        Some((acct, wallet, flags)) => with_money(view, acct, wallet, flags),
                        None => view,
                    }));
                }
                Some(&Prior::Money {
                    acct,
                    wallet,
                    flags,
                }) if money.is_none() => money = Some((acct, wallet, flags)),
                _ => {}
            }
        }
        let view = self.person_view(i);
        Some(Ok(match money {
            Some((acct, wallet, flags)) => with_money(view, acct, wallet, flags),
            None => view,
        }))
    }

    /// [`State::settlement`] as of op `durable` (as [`State::person_as_of`]): a settlement
    /// made later is not found, one cancelled later is not cancelled yet.
    pub fn settlement_as_of(
        &self,
        setl_id: u64,
        durable: u64,
    ) -> Option<Result<SettlementView, Rejection>> {
        let first = self.durable_segment(durable)?;
        let segments = &self.priors.segments;
        let Some(s) = id_to_index(setl_id, segments[first].setls as usize) else {
            return Some(Err(Rejection::new(ErrCode::SettlementNotFound)));
        };
        let mut view = self.settlement_view(s as u32);
        if view.cancelled
            && segments
                .range(first..)
                .any(|g| g.cancelled.contains(&(s as u32)))
        {
            view.cancelled = false;
        }
        Some(Ok(view))
    }

    /// Settlements made by op `durable` (as [`State::person_as_of`]).
    pub fn settlement_count_as_of(&self, durable: u64) -> Option<usize> {
        let first = self.durable_segment(durable)?;
        Some(self.priors.segments[first].setls as usize)
    }

    /// [`State::entries`] as of op `durable` (as [`State::person_as_of`]): the entries made
    /// by then.
    pub fn entries_as_of(
        &self,
        psn_no: &str,
        after: Option<u64>,
        limit: u32,
        durable: u64,
    ) -> Option<EntriesPage> {
        let first = self.durable_segment(durable)?;
        Some(self.person_at(psn_no, first).and_then(|psn| {
            self.entries_upto(psn, after, limit, self.priors.segments[first].entries)
        }))
    }
}

/// `view` with the balances and flags of a [`Prior::Money`].
fn with_money(view: PersonView, acct: Fen, wallet: Fen, flags: u8) -> PersonView {
    PersonView {
        status: if flags & FLAG_SUSPENDED != 0 {
            PersonStatus::Suspended
        } else {
            PersonStatus::Active
        },
        acct_balc: acct,
        wallet_open: flags & FLAG_WALLET != 0,
        wallet_balc: wallet,
        ..view
    }
}
