//! Forgetting closed exchanges and bindings (docs/FEDERATION.md, "Forgetting"). Records go
//! by day and peer, behind a watermark both sides agreed, never one by one: a stale copy of a
//! `Prepare` may arrive days later, and an engine that had simply forgotten its xid would
//! judge it anew.
//!
//! - The periodic [`FedOp::Forget`] claims, per peer, the last CST day through which every
//!   exchange (binding) with it is closed here, at most the day before yesterday (a day of
//!   margin for the two clocks), and sends `ClosedThrough` until answered.
//! - The peer takes a claim only if the same holds on its side and the days are past on its
//!   clock; it raises its watermark and answers `ForgetThrough` with the claimed days, which
//!   the claimant takes only for days it claimed. Either refusal changes nothing.
//! - The next `Forget` drops the closed records made with a peer on or before the agreed day
//!   and before the msgid window (so a client's retry is answered as any msgid past the
//!   window is), keeping their reconciliation counters as totals.
//! - A message about an id not recorded whose creation day is on or before the watermark is
//!   refused ("forgotten"), never judged anew.

use super::federation::{refuse, Step};
use super::State;
use crate::federation::{
    EngineId, FedCounters, FedReply, Federation, FederationConfig, Message, Watermark, XStatus,
    NO_DAY,
};
use crate::reply::Rejection;
use crate::time::cst_day;

/// The first day of an open exchange and of an open binding with one peer (`i32::MAX`: none).
#[derive(Clone, Copy, Debug)]
struct FirstOpen {
    exchanges: i32,
    bindings: i32,
}

impl Federation {
    fn watermark(&self, peer: EngineId) -> Watermark {
        self.watermarks.get(&peer).copied().unwrap_or_default()
    }

    /// Whether a message about an exchange made by `peer`'s side or this one at `created`,
    /// not recorded here, is about a forgotten day.
    pub(crate) fn exchange_forgotten(&self, peer: EngineId, created: i64) -> bool {
        cst_day(created) <= self.watermark(peer).exchanges
    }

    /// The same for a binding with `peer`.
    pub(crate) fn link_forgotten(&self, peer: EngineId, created: i64) -> bool {
        cst_day(created) <= self.watermark(peer).bindings
    }

    /// Whether any binding day was agreed with `peer` (an `Unbind` without its day, from a
    /// journal written before forgetting, can no longer be judged).
    pub(crate) fn links_forgetting(&self, peer: EngineId) -> bool {
        self.watermark(peer).bindings != NO_DAY
    }

    /// The earliest creation day of an exchange and of a binding with `peer` still open here
    /// (in flight or pending; proposed, active or revoked unconfirmed). Reads the outbox,
    /// expiry and live sets, not every record.
    fn first_open(&self, peer: EngineId) -> FirstOpen {
        let mut first = FirstOpen {
            exchanges: i32::MAX,
            bindings: i32::MAX,
        };
        let open_x = self
            .in_flight
            .iter()
            .chain(self.expiry.iter().map(|(_, i)| i));
        for &i in open_x {
            let x = &self.exchanges[i as usize];
            if x.peer == peer {
                first.exchanges = first.exchanges.min(cst_day(x.created));
            }
        }
        let open_l = self
            .link_outbox
            .iter()
            .chain(self.live.iter().map(|(_, l)| l));
        for &l in open_l {
            let link = &self.links[l as usize];
            if link.peer == peer {
                first.bindings = first.bindings.min(cst_day(link.created));
            }
        }
        first
    }

    /// Whether `days` (exchanges, bindings) may be agreed with `peer` here on `today`: every
    /// day raised above the watermark is past and closed here.
    fn closed_here(&self, peer: EngineId, days: (i32, i32), today: i32) -> Result<(), Rejection> {
        let wm = self.watermark(peer);
        let first = self.first_open(peer);
        let raised = [
            (days.0, wm.exchanges, first.exchanges),
            (days.1, wm.bindings, first.bindings),
        ];
        for (day, agreed, first_open) in raised {
            if day <= agreed {
                continue;
            }
            if day >= today {
                return Err(refuse("a day not yet past on this engine"));
            }
            if day >= first_open {
                return Err(refuse("exchanges or bindings of that day are open here"));
            }
        }
        Ok(())
    }

    /// Drops the closed exchange records made with each peer on or before `cutoff(peer)`,
    /// counting them into the forgotten totals; rebuilds the index and derived sets.
    /// Returns how many went.
    fn drop_exchanges(&mut self, cutoff: &dyn Fn(EngineId) -> i32) -> u64 {
        let goes = |x: &crate::federation::Exchange| cst_day(x.created) <= cutoff(x.peer);
        if !self.exchanges.iter().any(goes) {
            return 0;
        }
        let old = std::mem::take(&mut self.exchanges);
        let old_slots: Vec<u32> = (0..old.len() as u32).map(|i| self.slot(i)).collect();
        let (mut kept, mut slots, mut dropped) = (Vec::new(), Vec::new(), 0);
        for (x, slot) in old.into_iter().zip(old_slots) {
            if !goes(&x) {
                kept.push(x);
                slots.push(slot);
                continue;
            }
            assert!(
                matches!(x.status, XStatus::Closed(_)),
                "exchange {} open on or before an agreed day",
                x.xid
            );
            let key = (cst_day(x.created), x.peer);
            self.forgotten.entry(key).or_default().count(&x);
            dropped += 1;
        }
        self.exchanges_dropped += dropped;
        self.slots = slots;
        self.exchanges = kept;
        self.index.clear();
        self.in_flight.clear();
        self.expiry.clear();
        self.person_exchanges.clear();
        for i in 0..self.exchanges.len() as u32 {
            let x = &self.exchanges[i as usize];
            self.index.insert(x.xid, i);
            if let Some(p) = x.person {
                self.person_exchanges.insert((p, i));
            }
            self.index_open(i);
        }
        // The msgids of answers to the records that went go with them (past the window).
        let index = &self.index;
        self.answer_msgids
            .retain(|_, answer| index.contains_key(&answer.xid));
        dropped
    }

    /// Drops the closed binding records made with each peer on or before `cutoff(peer)`,
    /// and the revocation msgids kept with them; the rest are renumbered (no entry names a
    /// binding) and the derived sets rebuilt. Returns how many went.
    fn drop_links(&mut self, cutoff: &dyn Fn(EngineId) -> i32) -> u64 {
        let goes = |l: &crate::federation::Link| cst_day(l.created) <= cutoff(l.peer);
        if !self.links.iter().any(goes) {
            return 0;
        }
        let old = std::mem::take(&mut self.links);
        let mut renumber = vec![None; old.len()];
        self.link_index.clear();
        self.link_outbox.clear();
        self.live.clear();
        self.person_links.clear();
        let mut dropped = 0;
        for (l, link) in old.into_iter().enumerate() {
            if goes(&link) {
                assert!(
                    !link.status.is_live() && !link.unbind,
                    "binding {} open on or before an agreed day",
                    link.bxid
                );
                dropped += 1;
                continue;
            }
            renumber[l] = Some(self.push_link(link));
        }
        self.unbind_msgids = std::mem::take(&mut self.unbind_msgids)
            .into_iter()
            .filter_map(|(key, l)| Some((key, renumber[l as usize]?)))
            .collect();
        self.links_dropped += dropped;
        dropped
    }

    /// The `ClosedThrough` of every unconfirmed claim (the outbox's part).
    pub(crate) fn claims(&self) -> Vec<Message> {
        let me = self.config.as_ref().expect("federated").engine;
        self.watermarks
            .iter()
            .filter(|(_, wm)| wm.unconfirmed())
            .map(|(&peer, wm)| Message::ClosedThrough {
                from_engine: me,
                to_engine: peer,
                exchanges: wm.claimed_exchanges,
                bindings: wm.claimed_bindings,
            })
            .collect()
    }

    /// Watermarks and forgotten counters agree with the records: nothing open on or before
    /// an agreed day, no forgotten tally still open, the numbering consistent.
    pub(crate) fn check_forgetting(&self) -> Result<(), String> {
        let config = self.config.as_ref();
        for (peer, wm) in &self.watermarks {
            if !config.is_some_and(|c| c.peers.contains_key(peer)) {
                return Err(format!("watermark for {peer}, not a peer"));
            }
            let first = self.first_open(*peer);
            if wm.exchanges >= first.exchanges || wm.bindings >= first.bindings {
                return Err(format!("{peer}: open records on or before the watermark"));
            }
            if *wm == Watermark::default() {
                return Err(format!("{peer}: an empty watermark"));
            }
        }
        for ((_, peer), c) in &self.forgotten {
            let open = c.in_flight.count + c.pending.count;
            if open != 0 || !self.watermarks.contains_key(peer) {
                return Err(format!(
                    "forgotten counters of {peer}: open, or no watermark"
                ));
            }
        }
        let numbered = self.exchanges_dropped == 0 && self.slots.is_empty()
            || self.slots.len() == self.exchanges.len()
                && self.slots.windows(2).all(|w| w[0] < w[1])
                && self
                    .slots
                    .last()
                    .is_none_or(|&s| u64::from(s) < self.numbers());
        if !numbered {
            return Err("exchange numbers".into());
        }
        Ok(())
    }
}

/// What a periodic step would do with one peer.
struct Plan {
    peer: EngineId,
    claim: Option<(i32, i32)>,
    cutoff: (i32, i32),
}

impl State {
    /// The peers a forgetting step at `time` would act on (a claim to raise, or records to
    /// drop), for the relay's periodic step: it submits [`FedOp::Forget`] only then.
    pub fn fed_forget_due(&self, time: i64) -> bool {
        let Some(config) = self.fed.config.clone() else {
            return false;
        };
        time >= self.clock() && !self.forget_plans(&config, time).is_empty()
    }

    fn forget_plans(&self, config: &FederationConfig, time: i64) -> Vec<Plan> {
        let today = cst_day(time);
        let window = cst_day(time - i64::from(self.params.msgid_retention_days) * 86_400) - 1;
        let mut plans = Vec::new();
        for &peer in config.peers.keys() {
            let wm = self.fed.watermark(peer);
            let first = self.fed.first_open(peer);
            let can = |first_open: i32| (first_open.saturating_sub(1)).min(today - 2);
            let (cx, cb) = (can(first.exchanges), can(first.bindings));
            let raise = cx > wm.claimed_exchanges.max(wm.exchanges)
                || cb > wm.claimed_bindings.max(wm.bindings);
            let claim = raise.then_some((
                cx.max(wm.claimed_exchanges).max(wm.exchanges),
                cb.max(wm.claimed_bindings).max(wm.bindings),
            ));
            let cutoff = (wm.exchanges.min(window), wm.bindings.min(window));
            let drops = self
                .fed
                .exchanges
                .iter()
                .any(|x| x.peer == peer && cst_day(x.created) <= cutoff.0)
                || self
                    .fed
                    .links
                    .iter()
                    .any(|l| l.peer == peer && cst_day(l.created) <= cutoff.1);
            if claim.is_some() || drops {
                plans.push(Plan {
                    peer,
                    claim,
                    cutoff,
                });
            }
        }
        plans
    }

    /// The periodic step: raises the claims and drops what the agreed days allow.
    pub(super) fn forget(
        &mut self,
        config: &FederationConfig,
        time: i64,
    ) -> Result<Step, Rejection> {
        self.time_ok(time)?;
        let plans = self.forget_plans(config, time);
        if plans.is_empty() {
            return Err(refuse("nothing to forget"));
        }
        let mut send = Vec::new();
        for plan in &plans {
            if let Some((exchanges, bindings)) = plan.claim {
                let wm = self.fed.watermarks.entry(plan.peer).or_default();
                wm.claimed_exchanges = exchanges;
                wm.claimed_bindings = bindings;
                send.push(Message::ClosedThrough {
                    from_engine: config.engine,
                    to_engine: plan.peer,
                    exchanges,
                    bindings,
                });
            }
        }
        let cutoff_of = |which: fn(&Plan) -> i32| {
            let cut: Vec<(EngineId, i32)> = plans.iter().map(|p| (p.peer, which(p))).collect();
            move |peer: EngineId| {
                cut.iter()
                    .find(|(p, _)| *p == peer)
                    .map_or(NO_DAY, |&(_, d)| d)
            }
        };
        let exchanges = self.fed.drop_exchanges(&cutoff_of(|p| p.cutoff.0));
        let bindings = self.fed.drop_links(&cutoff_of(|p| p.cutoff.1));
        Ok(Step::Applied(
            FedReply::Forgot {
                exchanges,
                bindings,
            },
            send,
        ))
    }

    /// A peer claims everything between us closed through its days: agreed if it holds here
    /// too; answered with the claimed days.
    pub(super) fn deliver_closed_through(
        &mut self,
        config: &FederationConfig,
        from: EngineId,
        days: (i32, i32),
        time: i64,
    ) -> Result<Step, Rejection> {
        if days.0 < 0 && days.0 != NO_DAY || days.1 < 0 && days.1 != NO_DAY {
            return Err(refuse("a malformed ClosedThrough"));
        }
        if days == (NO_DAY, NO_DAY) {
            return Err(refuse("a ClosedThrough that claims nothing"));
        }
        let answer = Message::ForgetThrough {
            from_engine: config.engine,
            to_engine: from,
            exchanges: days.0,
            bindings: days.1,
        };
        let wm = self.fed.watermark(from);
        if days.0 <= wm.exchanges && days.1 <= wm.bindings {
            return Ok(Step::Replay(FedReply::Delivered, vec![answer]));
        }
        self.fed.closed_here(from, days, cst_day(time))?;
        self.time_ok(time)?;
        let wm = self.fed.watermarks.entry(from).or_default();
        wm.exchanges = wm.exchanges.max(days.0);
        wm.bindings = wm.bindings.max(days.1);
        Ok(Step::Applied(FedReply::Delivered, vec![answer]))
    }

    /// The peer agreed to a claim of ours: the watermark rises to the claimed days. Only days
    /// this engine claimed are taken (an unsolicited or inflated answer is refused).
    pub(super) fn deliver_forget_through(
        &mut self,
        from: EngineId,
        days: (i32, i32),
        time: i64,
    ) -> Result<Step, Rejection> {
        let wm = self.fed.watermark(from);
        if days == (NO_DAY, NO_DAY) {
            return Err(refuse("a ForgetThrough that agrees nothing"));
        }
        if days.0 > wm.claimed_exchanges.max(wm.exchanges)
            || days.1 > wm.claimed_bindings.max(wm.bindings)
        {
            return Err(refuse("a ForgetThrough for days this engine never claimed"));
        }
        if days.0 <= wm.exchanges && days.1 <= wm.bindings {
            return Ok(Step::Replay(FedReply::Delivered, Vec::new()));
        }
        self.fed.closed_here(from, days, cst_day(time))?;
        self.time_ok(time)?;
        let wm = self.fed.watermarks.entry(from).or_default();
        wm.exchanges = wm.exchanges.max(days.0);
        wm.bindings = wm.bindings.max(days.1);
        Ok(Step::Applied(FedReply::Delivered, Vec::new()))
    }

    /// Per peer, the watermark (days agreed and claimed), for views and checkers.
    pub fn fed_watermarks(&self) -> std::collections::BTreeMap<EngineId, Watermark> {
        self.fed.watermarks.clone()
    }

    /// The counters of forgotten exchanges by (CST day made, peer).
    pub fn fed_forgotten_counters(
        &self,
    ) -> std::collections::BTreeMap<(i32, EngineId), FedCounters> {
        self.fed.forgotten.clone()
    }

    /// (exchange records held, binding records held, exchanges dropped, bindings dropped).
    pub fn fed_record_counts(&self) -> (u64, u64, u64, u64) {
        (
            self.fed.exchanges.len() as u64,
            self.fed.links.len() as u64,
            self.fed.exchanges_dropped,
            self.fed.links_dropped,
        )
    }
}
