//! Applying federation ops (docs/FEDERATION.md): the sender's hold in flight and its commit or
//! return, the receiver's pending record, accept, decline and 06:00 expiry, and the bus
//! messages that carry them. Like every command family: check first, change state after; a
//! duplicate is answered from the record and changes nothing; a malformed or forged message is
//! refused and changes nothing.

use std::sync::Arc;

use super::counters::Channel;
use super::ledger::{Counterparty, EntryKind, EntryRef, LedgerSide, Memo};
use super::msgids::msgid_key;
use super::State;
use crate::certno::{admdvs_province, province_valid};
use crate::command::{code_valid, msgid_valid, Actor, Body, Op, TransferSource};
use crate::federation::codec::transfer_out_fingerprint;
use crate::federation::{
    AnswerKind, AnswerMsgid, Entry, EntryApplied, EntryReply, Exchange, ExchangeView, FedOp,
    FedOpen, FedReply, FederationConfig, Message, MoneyTotals, Outcome, XStatus, Xid,
};
use crate::reply::{ErrCode, Rejection};
use crate::time::{cst_day, day_start, period_of};
use crate::Fen;

/// What a federation op comes to once judged.
pub(super) enum Step {
    Applied(FedReply, Vec<Message>),
    /// A duplicate: the stored answer, nothing changed.
    Replay(FedReply, Vec<Message>),
}

/// The msgid check of a client's answer to an exchange: a retry's step, or go on (with the
/// msgid's key, if it had one).
enum Answered {
    Retry(Box<Step>),
    New(Option<u128>),
}

pub(super) fn refuse(detail: &'static str) -> Rejection {
    Rejection::with(ErrCode::BadRequest, detail)
}

pub(super) fn admdvs_valid(a: u32) -> bool {
    (100_000..=999_999).contains(&a) && province_valid(admdvs_province(a))
}

impl State {
    /// Makes this state an engine of a federation. Like the province parameters, it is fixed
    /// before the first op, so that replay judges every op under the same configuration.
    pub fn configure_federation(&mut self, config: FederationConfig) -> Result<(), String> {
        config.validate()?;
        if self.fed.is_configured() || self.op_count != 0 {
            return Err("[federation] is fixed before the first op".into());
        }
        self.fed.config = Some(Arc::new(config));
        Ok(())
    }

    pub fn federation_config(&self) -> Option<&FederationConfig> {
        self.fed.config.as_deref()
    }

    /// Applies one op of a federated journal. `Ok` means applied or replayed (see
    /// `replayed`); `Err` means nothing changed. A core op goes through [`State::apply`], after
    /// the federation's guards (no msgid shared with a cross-engine transfer, no person of
    /// another engine's province); every applied op also closes the incoming exchanges due.
    pub fn apply_entry(&mut self, entry: &Entry) -> Result<EntryApplied, Rejection> {
        let op = match entry {
            Entry::Fed(op) => return self.apply_fed(op),
            Entry::Core(op) => op,
        };
        if let (Some(config), Op::Write(command)) = (self.fed.config.clone(), op) {
            self.guard_core_write(&config, &command.actor, &command.msgid, &command.body)?;
        }
        let applied = self.apply(op)?;
        let send = if applied.replayed {
            Vec::new()
        } else {
            self.fed_expire_due(op.time())
        };
        Ok(EntryApplied {
            reply: EntryReply::Core(applied.reply),
            replayed: applied.replayed,
            send,
        })
    }

    fn guard_core_write(
        &self,
        config: &FederationConfig,
        actor: &Actor,
        msgid: &str,
        body: &Body,
    ) -> Result<(), Rejection> {
        let mine = |omsgid: &str| {
            let key = msgid_key(actor.msgid_scope(), omsgid);
            let xid = Xid {
                engine: config.engine,
                key,
            };
            self.fed.index.contains_key(&xid) || self.fed.link_index.contains_key(&xid)
        };
        let key = msgid_key(actor.msgid_scope(), msgid);
        if self.fed.msgid_taken(config.engine, key) {
            return Err(Rejection::new(ErrCode::MsgidConflict));
        }
        match body {
            Body::Enrol { admdvs, .. } if !config.owns(admdvs_province(*admdvs)) => Err(
                Rejection::with(ErrCode::InvalidAdmdvs, "a province another engine owns"),
            ),
            Body::Reverse {
                omsgid,
                fixmedins_code: None,
            } if mine(omsgid) => Err(Rejection::with(
                ErrCode::NotReversible,
                "a cross-engine transfer: reversed by its own path",
            )),
            _ => Ok(()),
        }
    }

    /// Applies one federation op.
    pub fn apply_fed(&mut self, op: &FedOp) -> Result<EntryApplied, Rejection> {
        let Some(config) = self.fed.config.clone() else {
            return Err(refuse("this engine has no [federation]"));
        };
        let time = op.time();
        // Time passes first, as for a core write: in-engine transfers due by now return.
        // Undone below unless the op applies.
        self.expire_due(time.max(self.clock));
        let step = match op {
            FedOp::TransferOut { .. } => self.transfer_out(&config, op),
            FedOp::Reverse {
                actor,
                omsgid,
                time,
                msgid,
            } => self.transfer_out_reverse(&config, actor, omsgid, msgid.as_ref(), *time),
            FedOp::Accept {
                actor,
                xid,
                time,
                msgid,
            } => self.incoming_answer(&config, actor, xid, msgid.as_ref(), *time, true),
            FedOp::Decline {
                actor,
                xid,
                time,
                msgid,
            } => self.incoming_answer(&config, actor, xid, msgid.as_ref(), *time, false),
            FedOp::Deliver { msg, time } => self.deliver(&config, msg, *time),
            FedOp::BindOut { .. } => self.bind_out(&config, op),
            FedOp::Unbind {
                actor,
                bxid,
                time,
                msgid,
            } => self.unbind(&config, actor, bxid, msgid.as_ref(), *time),
            FedOp::Forget { time } => self.forget(&config, *time),
        };
        match step {
            Ok(Step::Applied(reply, mut send)) => {
                self.expired_scratch.clear();
                self.clock = time;
                self.recon.forget_before(self.recon_first_day());
                send.extend(self.fed_expire_due(time));
                self.op_count += 1;
                self.ledger.assert_conserved();
                Ok(EntryApplied {
                    reply: EntryReply::Fed(reply),
                    replayed: false,
                    send,
                })
            }
            Ok(Step::Replay(reply, send)) => {
                self.unexpire();
                Ok(EntryApplied {
                    reply: EntryReply::Fed(reply),
                    replayed: true,
                    send,
                })
            }
            Err(rejection) => {
                self.unexpire();
                Err(rejection)
            }
        }
    }

    pub(super) fn time_ok(&self, time: i64) -> Result<(), Rejection> {
        if time < self.clock {
            return Err(Rejection::with(
                ErrCode::InvalidTime,
                "earlier than the engine clock",
            ));
        }
        Ok(())
    }

    /// Phase 1 on the sender's engine: DOMAIN.md rule 14's checks, then the amount leaves the
    /// sender's source into the in-flight account and the exchange enters the outbox.
    fn transfer_out(&mut self, config: &FederationConfig, op: &FedOp) -> Result<Step, Rejection> {
        let FedOp::TransferOut {
            msgid,
            time,
            actor,
            from_psn_no,
            to_psn_no,
            to_admdvs,
            amount,
            source,
        } = op
        else {
            unreachable!("a TransferOut")
        };
        let (time, amount, source) = (*time, *amount, *source);
        if !msgid_valid(msgid) || !code_valid(from_psn_no) || !code_valid(to_psn_no) {
            return Err(Rejection::new(ErrCode::BadRequest));
        }
        if amount.is_zero() {
            return Err(Rejection::new(ErrCode::InvalidAmount));
        }
        if !admdvs_valid(*to_admdvs) {
            return Err(Rejection::new(ErrCode::InvalidAdmdvs));
        }
        match actor {
            Actor::Admin => {}
            Actor::Person(me) if me == from_psn_no => {}
            _ => return Err(Rejection::new(ErrCode::Forbidden)),
        }
        let key = msgid_key(actor.msgid_scope(), msgid);
        let xid = Xid {
            engine: config.engine,
            key,
        };
        let fingerprint = transfer_out_fingerprint(op);
        if let Some(&i) = self.fed.index.get(&xid) {
            if self.fed.exchanges[i as usize].fingerprint != fingerprint {
                return Err(Rejection::new(ErrCode::MsgidConflict));
            }
            // The first answer again: in flight, with the balances it showed.
            let mut view = self.exchange_view(i);
            view.status = XStatus::InFlight;
            return Ok(Step::Replay(FedReply::Exchange(view), Vec::new()));
        }
        self.msgid_free(config, key)?;
        self.time_ok(time)?;
        let to_province = admdvs_province(*to_admdvs);
        if config.owns(to_province) {
            return Err(Rejection::with(
                ErrCode::InvalidAdmdvs,
                "the receiver's province is this engine's: an in-engine transfer",
            ));
        }
        let peer = config.peer_of(to_province).ok_or(Rejection::with(
            ErrCode::InvalidAdmdvs,
            "no engine owns the receiver's province",
        ))?;
        let from = self.person_index(from_psn_no)?;
        let day_count = self.transfer_out_checks(from, to_psn_no, peer, amount, source, time)?;
        // Checked: the change starts here.
        let day = cst_day(time) as u32;
        self.persons.wallet_day[from as usize] = (day << 8) | (day_count + 1);
        let expires_at = day_start(cst_day(time) + 1) + i64::from(self.params.wallet_expiry_second);
        let sender_admdvs = self.persons.hot[from as usize].admdvs;
        let i = self.fed.push_exchange(Exchange {
            xid,
            outgoing: true,
            peer,
            person: Some(from),
            to_psn_no: *to_psn_no,
            to_admdvs: *to_admdvs,
            sender_admdvs,
            amount,
            source,
            created: time,
            expires_at,
            status: XStatus::InFlight,
            reversed: false,
            fingerprint,
            answered_balances: None,
            from_psn_no: None,
        });
        self.fed.in_flight.insert(i);
        let memo = exchange_memo(EntryKind::WalletHold, time, self.fed.slot(i));
        self.post(
            source_side(source, from),
            LedgerSide::InFlight,
            amount,
            memo,
        );
        let hot = &self.persons.hot[from as usize];
        self.fed.exchanges[i as usize].answered_balances = Some((hot.acct, hot.wallet));
        let send = vec![self.outbox_message(i)];
        Ok(Step::Applied(
            FedReply::Exchange(self.exchange_view(i)),
            send,
        ))
    }

    /// The sender's side of rule 14's checks, in its order; `NOT_BOUND` unless the two have an
    /// active cross-engine binding (either way) with the receiver on that peer. Returns
    /// today's transfer count.
    fn transfer_out_checks(
        &self,
        from: u32,
        to_psn_no: &str,
        peer: crate::federation::EngineId,
        amount: Fen,
        source: TransferSource,
        time: i64,
    ) -> Result<u32, Rejection> {
        let p = &self.persons;
        if p.is_suspended(from) {
            return Err(ErrCode::PersonSuspended.into());
        }
        if source == TransferSource::Acct && p.is_resident(from) {
            return Err(ErrCode::NoPersonalAccount.into());
        }
        if source == TransferSource::Wallet && !p.wallet_open(from) {
            return Err(Rejection::with(
                ErrCode::WalletNotOpen,
                "the sender has no wallet",
            ));
        }
        if self.fed.active_link(from, to_psn_no, peer).is_none() {
            return Err(Rejection::with(
                ErrCode::NotBound,
                "no active cross-engine binding between the two",
            ));
        }
        self.sender_limits(from, amount, source, time)
    }

    /// The sender's timeout path (API.md's reversal): from now on the relay sends Block, and
    /// the receiving engine blocks the exchange if its Prepare never arrived.
    fn transfer_out_reverse(
        &mut self,
        config: &FederationConfig,
        actor: &Actor,
        omsgid: &str,
        msgid: Option<&crate::command::Msgid>,
        time: i64,
    ) -> Result<Step, Rejection> {
        if !msgid_valid(omsgid) {
            return Err(Rejection::new(ErrCode::BadRequest));
        }
        let xid = Xid {
            engine: config.engine,
            key: msgid_key(actor.msgid_scope(), omsgid),
        };
        let key = match self.answer_msgid(config, actor, msgid, xid, AnswerKind::Reverse)? {
            Answered::Retry(step) => return Ok(*step),
            Answered::New(key) => key,
        };
        let not_found = Rejection::with(ErrCode::NotFound, "no cross-engine transfer");
        let i = *self.fed.index.get(&xid).ok_or(not_found)?;
        let x = &self.fed.exchanges[i as usize];
        if !x.outgoing {
            return Err(not_found);
        }
        let (shown, first) = (x.status, !x.reversed && x.status == XStatus::InFlight);
        if !first && key.is_none() {
            return Ok(Step::Replay(
                FedReply::Exchange(self.exchange_view(i)),
                Vec::new(),
            ));
        }
        self.time_ok(time)?;
        // With its msgid a reversal of a reversed or closed transfer is kept too, answered
        // as the transfer is (the msgid is taken, its retry answers the same).
        let mut send = Vec::new();
        if first {
            self.fed.exchanges[i as usize].reversed = true;
            send.push(self.outbox_message(i));
        }
        if let Some(key) = key {
            let kind = AnswerKind::Reverse;
            let answer = AnswerMsgid { xid, kind, shown };
            self.fed.answer_msgids.insert(key, answer);
        }
        Ok(Step::Applied(
            FedReply::Exchange(self.exchange_view(i)),
            send,
        ))
    }

    /// A new client write of this engine may take msgid `key`: no core write took it
    /// (`REVERSED` if a reversal blocked it, else `MSGID_CONFLICT`), nor a cross-engine one.
    fn msgid_free(&self, config: &FederationConfig, key: u128) -> Result<(), Rejection> {
        if let Some(record) = self.msgids.get(key) {
            return Err(match &record.reply {
                None => Rejection::with(ErrCode::Reversed, "msgid was reversed"),
                Some(_) => Rejection::new(ErrCode::MsgidConflict),
            });
        }
        if self.fed.msgid_taken(config.engine, key) {
            return Err(Rejection::new(ErrCode::MsgidConflict));
        }
        Ok(())
    }

    /// API.md's msgid check of a client's accept, decline or reversal of exchange `xid` that
    /// carried its msgid: a retry (the same msgid, exchange and kind) is answered as the
    /// first time; the msgid taken by any other write is `MSGID_CONFLICT` (`REVERSED` when
    /// a reversal blocked it). `New(None)`: an op without a msgid (journals written before).
    fn answer_msgid(
        &self,
        config: &FederationConfig,
        actor: &Actor,
        msgid: Option<&crate::command::Msgid>,
        xid: Xid,
        kind: AnswerKind,
    ) -> Result<Answered, Rejection> {
        let Some(msgid) = msgid else {
            return Ok(Answered::New(None));
        };
        if !msgid_valid(msgid) {
            return Err(Rejection::new(ErrCode::BadRequest));
        }
        let key = msgid_key(actor.msgid_scope(), msgid);
        if let Some(answer) = self.fed.answer_msgids.get(&key) {
            if answer.xid != xid || answer.kind != kind {
                return Err(Rejection::new(ErrCode::MsgidConflict));
            }
            let i = self.fed.index[&xid];
            let mut view = self.exchange_view(i);
            view.status = answer.shown;
            let step = Step::Replay(FedReply::Exchange(view), Vec::new());
            return Ok(Answered::Retry(Box::new(step)));
        }
        self.msgid_free(config, key)?;
        Ok(Answered::New(Some(key)))
    }

    /// The receiver (or an admin) accepts or declines a pending incoming exchange.
    fn incoming_answer(
        &mut self,
        config: &FederationConfig,
        actor: &Actor,
        xid: &Xid,
        msgid: Option<&crate::command::Msgid>,
        time: i64,
        accept: bool,
    ) -> Result<Step, Rejection> {
        let kind = if accept {
            AnswerKind::Accept
        } else {
            AnswerKind::Decline
        };
        let key = match self.answer_msgid(config, actor, msgid, *xid, kind)? {
            Answered::Retry(step) => return Ok(*step),
            Answered::New(key) => key,
        };
        let not_found = Rejection::with(ErrCode::NotFound, "no incoming transfer");
        let i = *self.fed.index.get(xid).ok_or(not_found)?;
        let x = self.fed.exchanges[i as usize].clone();
        if x.outgoing {
            return Err(not_found);
        }
        match actor {
            Actor::Admin => {}
            Actor::Person(me) if x.person.is_some() && self.persons.find(me) == x.person => {}
            _ => return Err(Rejection::new(ErrCode::Forbidden)),
        }
        let wanted = if accept {
            Outcome::Accepted
        } else {
            Outcome::Declined
        };
        match x.status {
            // Without a msgid (journals written before): answered as it is.
            XStatus::Closed(o) if o == wanted && key.is_none() => {
                let view = FedReply::Exchange(self.exchange_view(i));
                return Ok(Step::Replay(view, Vec::new()));
            }
            XStatus::Pending if x.expires_at > time => {}
            _ => return Err(ErrCode::NotPending.into()),
        }
        self.time_ok(time)?;
        let to = x.person.expect("a pending exchange has its receiver");
        if accept {
            let memo = exchange_memo(EntryKind::WalletIn, time, self.fed.slot(i));
            self.post(LedgerSide::Remote, LedgerSide::Wallet(to), x.amount, memo);
            let province = admdvs_province(x.sender_admdvs);
            let channel = Channel::WalletCrossProvince;
            self.stats.add(period_of(time), province, channel, x.amount);
        }
        let send = vec![self.close_incoming(i, wanted)];
        if let Some(key) = key {
            let shown = XStatus::Closed(wanted);
            let answer = AnswerMsgid {
                xid: *xid,
                kind,
                shown,
            };
            self.fed.answer_msgids.insert(key, answer);
        }
        Ok(Step::Applied(
            FedReply::Exchange(self.exchange_view(i)),
            send,
        ))
    }

    /// Closes a pending incoming exchange; returns the Outcome for its sender.
    fn close_incoming(&mut self, i: u32, outcome: Outcome) -> Message {
        let x = &mut self.fed.exchanges[i as usize];
        assert_eq!(x.status, XStatus::Pending);
        x.status = XStatus::Closed(outcome);
        let removed = self.fed.expiry.remove(&(x.expires_at, i));
        assert!(removed, "a pending exchange is in the expiry set");
        self.outcome_message(i)
    }

    /// Closes every pending incoming exchange due by `time` (06:00 CST the day after it was
    /// made, as rule 14). Moves no money: it was never on this engine.
    fn fed_expire_due(&mut self, time: i64) -> Vec<Message> {
        let mut send = Vec::new();
        while let Some(&(expires_at, i)) = self.fed.expiry.first() {
            if expires_at > time {
                break;
            }
            send.push(self.close_incoming(i, Outcome::Expired));
        }
        send
    }

    fn deliver(
        &mut self,
        config: &FederationConfig,
        msg: &Message,
        time: i64,
    ) -> Result<Step, Rejection> {
        if msg.to() != config.engine {
            return Err(refuse("a message for another engine"));
        }
        let from = msg.from();
        if !config.peers.contains_key(&from) {
            return Err(refuse("a message from an engine that is not a peer"));
        }
        match msg {
            Message::Prepare { .. } => self.deliver_prepare(config, msg, time),
            Message::Block {
                xid,
                amount,
                created,
                ..
            } => self.deliver_block(xid, *amount, *created, time),
            Message::Outcome {
                xid,
                from_engine,
                amount,
                outcome,
            } => self.deliver_outcome(xid, from_engine, *amount, *outcome, time),
            Message::Bind { .. } => self.deliver_bind(config, msg, time),
            Message::Unbind {
                bxid,
                from_engine,
                created,
                ..
            } => self.deliver_unbind(config, bxid, *from_engine, *created, time),
            Message::BindStatus {
                bxid,
                from_engine,
                status,
                ..
            } => self.deliver_bind_status(bxid, *from_engine, *status, time),
            Message::ClosedThrough {
                exchanges,
                bindings,
                ..
            } => self.deliver_closed_through(config, from, (*exchanges, *bindings), time),
            Message::ForgetThrough {
                exchanges,
                bindings,
                ..
            } => self.deliver_forget_through(from, (*exchanges, *bindings), time),
        }
    }

    /// Phase 2 on the receiver's engine: records the exchange pending (or closes it at once).
    fn deliver_prepare(
        &mut self,
        config: &FederationConfig,
        msg: &Message,
        time: i64,
    ) -> Result<Step, Rejection> {
        let &Message::Prepare {
            xid,
            to_psn_no,
            to_admdvs,
            amount,
            from_psn_no,
            sender_admdvs,
            created,
            expires_at,
            ..
        } = msg
        else {
            unreachable!("a Prepare")
        };
        let sender_owns = config.peers[&xid.engine].contains(&admdvs_province(sender_admdvs));
        if !admdvs_valid(sender_admdvs) || !sender_owns {
            return Err(refuse("the sender's province is not the sending engine's"));
        }
        if !admdvs_valid(to_admdvs) || !config.owns(admdvs_province(to_admdvs)) {
            return Err(refuse("a province this engine does not own"));
        }
        if amount.is_zero() || expires_at <= created {
            return Err(refuse("a malformed Prepare"));
        }
        if let Some(&i) = self.fed.index.get(&xid) {
            let x = &self.fed.exchanges[i as usize];
            let blocked_before =
                x.status == XStatus::Closed(Outcome::Blocked) && x.person.is_none();
            let same = (
                x.to_psn_no,
                x.to_admdvs,
                x.sender_admdvs,
                x.created,
                x.expires_at,
            ) == (to_psn_no, to_admdvs, sender_admdvs, created, expires_at)
                && x.from_psn_no.is_none_or(|f| f == from_psn_no);
            if x.outgoing || x.amount != amount || !(same || blocked_before) {
                return Err(refuse("a Prepare that differs from the one recorded"));
            }
            let send = self.answer_of(i).into_iter().collect();
            return Ok(Step::Replay(FedReply::Delivered, send));
        }
        if self.fed.exchange_forgotten(xid.engine, created) {
            return Err(refuse("forgotten: a Prepare of a day both engines closed"));
        }
        self.time_ok(time)?;
        let receiver = self.persons.find(&to_psn_no).filter(|&r| {
            admdvs_province(self.persons.hot[r as usize].admdvs) == admdvs_province(to_admdvs)
        });
        // This engine's own record of the binding: one revoked here (the sender's engine may
        // not know it yet) carries no transfer.
        let bound = |r: u32| self.fed.active_link(r, &from_psn_no, xid.engine).is_some();
        let status = match receiver {
            _ if time >= expires_at => XStatus::Closed(Outcome::Expired),
            Some(r) if self.persons.wallet_open(r) && bound(r) => XStatus::Pending,
            _ => XStatus::Closed(Outcome::Declined),
        };
        let i = self.fed.push_exchange(Exchange {
            xid,
            outgoing: false,
            peer: xid.engine,
            person: receiver,
            to_psn_no,
            to_admdvs,
            sender_admdvs,
            amount,
            source: TransferSource::Wallet,
            created,
            expires_at,
            status,
            reversed: false,
            fingerprint: 0,
            answered_balances: None,
            from_psn_no: Some(from_psn_no),
        });
        if status == XStatus::Pending {
            self.fed.expiry.insert((expires_at, i));
        }
        let send = self.answer_of(i).into_iter().collect();
        Ok(Step::Applied(FedReply::Delivered, send))
    }

    /// The sender reversed: an exchange never seen here is blocked; one seen carries on.
    fn deliver_block(
        &mut self,
        xid: &Xid,
        amount: Fen,
        created: i64,
        time: i64,
    ) -> Result<Step, Rejection> {
        if amount.is_zero() {
            return Err(refuse("a malformed Block"));
        }
        if let Some(&i) = self.fed.index.get(xid) {
            let x = &self.fed.exchanges[i as usize];
            if x.outgoing || x.amount != amount || x.created != created {
                return Err(refuse("a Block that differs from the exchange recorded"));
            }
            let send = self.answer_of(i).into_iter().collect();
            return Ok(Step::Replay(FedReply::Delivered, send));
        }
        if self.fed.exchange_forgotten(xid.engine, created) {
            return Err(refuse("forgotten: a Block of a day both engines closed"));
        }
        self.time_ok(time)?;
        let i = self.fed.push_exchange(Exchange {
            xid: *xid,
            outgoing: false,
            peer: xid.engine,
            person: None,
            to_psn_no: Default::default(),
            to_admdvs: 0,
            sender_admdvs: 0,
            amount,
            source: TransferSource::Wallet,
            created,
            expires_at: time,
            status: XStatus::Closed(Outcome::Blocked),
            reversed: false,
            fingerprint: 0,
            answered_balances: None,
            from_psn_no: None,
        });
        Ok(Step::Applied(
            FedReply::Delivered,
            vec![self.outcome_message(i)],
        ))
    }

    /// Phase 3 on the sender's engine: commit (the money leaves for the other engine) or
    /// return (to the sender's source).
    fn deliver_outcome(
        &mut self,
        xid: &Xid,
        from_engine: &crate::federation::EngineId,
        amount: Fen,
        outcome: Outcome,
        time: i64,
    ) -> Result<Step, Rejection> {
        let Some(&i) = self.fed.index.get(xid) else {
            return Err(refuse("an outcome for an unknown exchange"));
        };
        let x = self.fed.exchanges[i as usize].clone();
        if !x.outgoing || x.peer != *from_engine {
            return Err(refuse(
                "an outcome from an engine the transfer was not sent to",
            ));
        }
        if x.amount != amount {
            return Err(refuse("an outcome whose amount differs"));
        }
        if outcome == Outcome::Blocked && !x.reversed {
            return Err(refuse("blocked, but the sender never reversed it"));
        }
        match x.status {
            XStatus::Closed(o) if o == outcome => {
                return Ok(Step::Replay(FedReply::Delivered, Vec::new()));
            }
            XStatus::InFlight => {}
            _ => return Err(refuse("an outcome that contradicts the one recorded")),
        }
        self.time_ok(time)?;
        let sender = x.person.expect("an outgoing exchange has its sender");
        if outcome == Outcome::Accepted {
            let memo = exchange_memo(EntryKind::WalletHold, time, self.fed.slot(i));
            self.post(LedgerSide::InFlight, LedgerSide::Remote, amount, memo);
        } else {
            let memo = exchange_memo(EntryKind::WalletReturn, time, self.fed.slot(i));
            let to = source_side(x.source, sender);
            self.post(LedgerSide::InFlight, to, amount, memo);
        }
        self.fed.exchanges[i as usize].status = XStatus::Closed(outcome);
        self.fed.in_flight.remove(&i);
        Ok(Step::Applied(FedReply::Delivered, Vec::new()))
    }

    /// The message a closed incoming exchange answers with (none while pending).
    fn answer_of(&self, i: u32) -> Option<Message> {
        match self.fed.exchanges[i as usize].status {
            XStatus::Closed(_) => Some(self.outcome_message(i)),
            _ => None,
        }
    }

    fn outcome_message(&self, i: u32) -> Message {
        let x = &self.fed.exchanges[i as usize];
        let XStatus::Closed(outcome) = x.status else {
            unreachable!("a closed exchange")
        };
        let config = self.fed.config.as_ref().expect("federated");
        Message::Outcome {
            xid: x.xid,
            from_engine: config.engine,
            amount: x.amount,
            outcome,
        }
    }

    /// What the relay sends for an exchange in flight: Prepare, or Block once reversed.
    fn outbox_message(&self, i: u32) -> Message {
        let x = &self.fed.exchanges[i as usize];
        if x.reversed {
            return Message::Block {
                xid: x.xid,
                to_engine: x.peer,
                amount: x.amount,
                created: x.created,
            };
        }
        let sender = x.person.expect("an outgoing exchange has its sender");
        Message::Prepare {
            xid: x.xid,
            to_engine: x.peer,
            to_psn_no: x.to_psn_no,
            to_admdvs: x.to_admdvs,
            amount: x.amount,
            from_psn_no: self.persons.psn_no_array(sender),
            sender_admdvs: x.sender_admdvs,
            created: x.created,
            expires_at: x.expires_at,
        }
    }

    /// The outbox: one message per exchange in flight, per binding proposed or revoked
    /// here and not yet answered, and per unconfirmed forgetting claim (`ClosedThrough`), for the relay to (re)send until the
    /// outcome is journaled. Derived from the records, so a restart rebuilds it.
    pub fn fed_outbox(&self) -> Vec<Message> {
        let exchanges = self.fed.in_flight.iter().map(|&i| self.outbox_message(i));
        let links = self.fed.link_outbox.iter().map(|&l| self.link_message(l));
        let claims = self.fed.claims();
        exchanges.chain(links).chain(claims).collect()
    }

    fn exchange_view(&self, i: u32) -> ExchangeView {
        let x = &self.fed.exchanges[i as usize];
        ExchangeView {
            xid: x.xid,
            outgoing: x.outgoing,
            peer: x.peer,
            psn_no: x.person.map(|p| self.persons.psn_no_array(p)),
            to_psn_no: x.to_psn_no,
            amount: x.amount,
            source: x.source,
            status: x.status,
            reversed: x.reversed,
            created: x.created,
            expires_at: x.expires_at,
            answered_balances: x.answered_balances,
            from_psn_no: if x.outgoing {
                x.person.map(|p| self.persons.psn_no_array(p))
            } else {
                x.from_psn_no
            },
        }
    }

    /// One exchange by id.
    pub fn exchange(&self, xid: &Xid) -> Option<ExchangeView> {
        self.fed.index.get(xid).map(|&i| self.exchange_view(i))
    }

    /// The outgoing exchange a write `omsgid` of `actor` made on this engine, if it made one
    /// (the reversal of a cross-engine transfer goes to [`FedOp::Reverse`]).
    pub fn outgoing_xid(&self, actor: &Actor, omsgid: &str) -> Option<Xid> {
        let config = self.fed.config.as_ref()?;
        let xid = Xid {
            engine: config.engine,
            key: msgid_key(actor.msgid_scope(), omsgid),
        };
        let &i = self.fed.index.get(&xid)?;
        self.fed.exchanges[i as usize].outgoing.then_some(xid)
    }

    /// The exchanges of one person here (sent or received), newest first, at most `limit`
    /// (the person's set: no scan of the records).
    pub fn person_exchanges(&self, psn_no: &str, limit: usize) -> Vec<ExchangeView> {
        let Some(p) = self.persons.find(psn_no) else {
            return Vec::new();
        };
        self.fed
            .person_exchanges
            .range((p, 0)..=(p, u32::MAX))
            .rev()
            .take(limit)
            .map(|&(_, i)| self.exchange_view(i))
            .collect()
    }

    /// For `/metrics`: exchanges in flight (sender side) per peer, with the creation time of
    /// the oldest, and pending ones (receiver side).
    pub fn fed_open(&self) -> FedOpen {
        let mut open = FedOpen {
            pending: self.fed.expiry.len() as u64,
            bindings_unanswered: self.fed.link_outbox.len() as u64,
            ..FedOpen::default()
        };
        for &i in &self.fed.in_flight {
            let x = &self.fed.exchanges[i as usize];
            let (count, oldest) = open.in_flight.entry(x.peer).or_insert((0, i64::MAX));
            *count += 1;
            *oldest = (*oldest).min(x.created);
        }
        open
    }

    /// Every exchange this engine holds, in the order they were made (checkers and tests).
    pub fn exchanges(&self) -> impl Iterator<Item = ExchangeView> + '_ {
        (0..self.fed.exchanges.len() as u32).map(|i| self.exchange_view(i))
    }

    /// Reconciliation counters by (CST day the exchange was made, peer engine), computed from
    /// the exchange records (a few hundred thousand a year nationally).
    pub fn fed_counters(
        &self,
    ) -> std::collections::BTreeMap<
        (i32, crate::federation::EngineId),
        crate::federation::FedCounters,
    > {
        self.fed.counters()
    }

    /// The ledger's totals (docs/FEDERATION.md's conservation equations).
    pub fn money_totals(&self) -> MoneyTotals {
        let l = &self.ledger;
        MoneyTotals {
            inside: l.acct_total + l.wallet_total + l.held,
            in_flight: l.in_flight,
            external_net: i128::from(l.credited)
                - i128::from(l.paid_institutions)
                - i128::from(l.paid_contributions)
                + i128::from(l.returned_by_cancellations),
            fed_sent: l.fed_sent,
            fed_received: l.fed_received,
        }
    }
}

fn source_side(source: TransferSource, psn: u32) -> LedgerSide {
    match source {
        TransferSource::Acct => LedgerSide::Acct(psn),
        TransferSource::Wallet => LedgerSide::Wallet(psn),
    }
}

/// An entry's memo naming exchange number `slot + 1` (`Federation::slot`: stable when
/// records before it are forgotten).
fn exchange_memo(kind: EntryKind, time: i64, slot: u32) -> Memo {
    Memo {
        kind,
        time,
        counterparty: Counterparty::None,
        reference: EntryRef::Exchange(u64::from(slot) + 1),
    }
}
