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
use crate::money::Fen;
use crate::reply::{ErrCode, Rejection};
use crate::command::PersonStatus;
use crate::views::PersonView;

/// What a person's view was at the start of a segment.
#[derive(Debug)]
enum Prior {
    /// Balances and flags; the bindings were not changed in the segment.
    Money { acct: Fen, wallet: Fen, flags: u8 },
    /// The whole view (a binding it lists changed in the segment).
    View(Box<PersonView>),
}

#[derive(Debug)]
struct Segment {
    /// The segment holds the ops after `start` up to `end` (`u64::MAX` while open).
    start: u64,
    end: u64,
    /// Persons enrolled at `start`: a later index was not there.
    persons: u32,
    priors: FxHashMap<u32, Prior>,
}

#[derive(Debug, Default)]
pub(crate) struct Priors {
    /// Oldest first; the last is open. Empty when off.
    segments: VecDeque<Segment>,
}

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
        self.priors.segments.push_back(Segment {
            start: self.op_count,
            end: u64::MAX,
            persons: self.persons.len() as u32,
            priors: FxHashMap::default(),
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
        let segments = &mut self.priors.segments;
        while segments.len() > 1 && segments[0].end <= durable {
            segments.pop_front();
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
            open.priors.insert(i, Prior::View(Box::new(view)));
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
        let segments = &self.priors.segments;
        let first = segments.iter().position(|s| s.end > durable)?;
        let at = &segments[first];
        if at.start != durable {
            return None;
        }
        let i = match self.person_index(psn_no) {
            Ok(i) if i < at.persons => i,
            Ok(_) => return Some(Err(Rejection::new(ErrCode::PersonNotFound))),
            Err(e) => return Some(Err(e)),
        };
        let mut money = None;
        for segment in segments.range(first..) {
            match segment.priors.get(&i) {
                Some(Prior::View(view)) => {
                    let view = (**view).clone();
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

    /// Priors kept (for the memory figures and tests).
    pub fn prior_count(&self) -> usize {
        self.priors.segments.iter().map(|s| s.priors.len()).sum()
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
