//! Applying cross-engine bindings (docs/FEDERATION.md, "Cross-engine bindings"): the giver's
//! engine records the proposal (`BindOut`) and sends `Bind`; the receiver's engine judges it
//! under its own rules and limits and answers `BindStatus`; either side's revocation
//! (`Unbind` op) is sent as an `Unbind` message until the other side's `BindStatus(revoked)`
//! (or its own crossing `Unbind`) confirms it. As for exchanges: check first, change after; a
//! duplicate is answered from the record; a forged or contradicting message is refused.

use super::federation::{admdvs_valid, refuse, Step};
use super::msgids::msgid_key;
use super::State;
use crate::certno::admdvs_province;
use crate::command::{code_valid, msgid_valid, Actor, Relation};
use crate::federation::codec::bind_out_fingerprint;
use crate::federation::{
    BindRefusal, EngineId, FedOp, FedReply, FederationConfig, Link, LinkStatus, LinkView, Message,
    Xid,
};
use crate::reply::{ErrCode, Rejection};

impl State {
    /// A client's binding of a local giver to a receiver on a peer engine: DOMAIN.md rule 6's
    /// checks that the giver's engine can make (the receiver's are the receiver engine's).
    pub(super) fn bind_out(
        &mut self,
        config: &FederationConfig,
        op: &FedOp,
    ) -> Result<Step, Rejection> {
        let FedOp::BindOut {
            msgid,
            time,
            actor,
            giver_psn_no,
            receiver_psn_no,
            receiver_admdvs,
            relation,
        } = op
        else {
            unreachable!("a BindOut")
        };
        if !msgid_valid(msgid) || !code_valid(giver_psn_no) || !code_valid(receiver_psn_no) {
            return Err(Rejection::new(ErrCode::BadRequest));
        }
        if !admdvs_valid(*receiver_admdvs) {
            return Err(Rejection::new(ErrCode::InvalidAdmdvs));
        }
        match actor {
            Actor::Admin => {}
            Actor::Person(me) if me == giver_psn_no => {}
            _ => return Err(Rejection::new(ErrCode::Forbidden)),
        }
        let key = msgid_key(actor.msgid_scope(), msgid);
        let bxid = Xid {
            engine: config.engine,
            key,
        };
        let fingerprint = bind_out_fingerprint(op);
        if let Some(&l) = self.fed.link_index.get(&bxid) {
            if self.fed.links[l as usize].fingerprint != fingerprint {
                return Err(Rejection::new(ErrCode::MsgidConflict));
            }
            // The first answer again: proposed, pending.
            let mut view = self.link_view(l);
            view.status = LinkStatus::Pending;
            return Ok(Step::Replay(FedReply::Binding(view), Vec::new()));
        }
        if self.fed.msgid_taken(config.engine, key) || self.msgids.get(key).is_some() {
            return Err(Rejection::new(ErrCode::MsgidConflict));
        }
        self.time_ok(*time)?;
        let province = admdvs_province(*receiver_admdvs);
        if config.owns(province) {
            return Err(Rejection::with(
                ErrCode::InvalidAdmdvs,
                "the receiver's province is this engine's: an in-engine binding",
            ));
        }
        let peer = config.peer_of(province).ok_or(Rejection::with(
            ErrCode::InvalidAdmdvs,
            "no engine owns the receiver's province",
        ))?;
        let giver = self.person_index(giver_psn_no)?;
        self.bind_out_checks(giver, receiver_psn_no, peer, *relation)?;
        // Checked: the change starts here.
        let l = self.fed.push_link(Link {
            bxid,
            giver_here: true,
            peer,
            person: Some(giver),
            giver_psn_no: *giver_psn_no,
            giver_admdvs: self.persons.hot[giver as usize].admdvs,
            receiver_psn_no: *receiver_psn_no,
            receiver_admdvs: *receiver_admdvs,
            relation: *relation,
            created: *time,
            status: LinkStatus::Pending,
            unbind: false,
            fingerprint,
        });
        let send = vec![self.link_message(l)];
        Ok(Step::Applied(FedReply::Binding(self.link_view(l)), send))
    }

    /// Rule 6 on the giver's side, in `bind`'s order; the giver's limit counts its in-engine
    /// bindings and its live cross-engine ones.
    fn bind_out_checks(
        &self,
        giver: u32,
        receiver_psn_no: &str,
        peer: EngineId,
        relation: Relation,
    ) -> Result<(), Rejection> {
        let p = &self.persons;
        if p.is_resident(giver) {
            return Err(ErrCode::GiverNotEmployeeInsured.into());
        }
        if p.is_suspended(giver) {
            return Err(ErrCode::PersonSuspended.into());
        }
        if relation == Relation::Other {
            return Err(ErrCode::RelationNotEligible.into());
        }
        let exists = self
            .fed
            .live
            .range((giver, 0)..=(giver, u32::MAX))
            .any(|&(_, l)| {
                let link = &self.fed.links[l as usize];
                link.giver_here
                    && link.peer == peer
                    && link.receiver_psn_no.as_str() == receiver_psn_no
            });
        if exists {
            return Err(ErrCode::BindingExists.into());
        }
        let given = self.given(giver).count() + self.fed.live_count(giver, true);
        if given >= usize::from(self.params.binding_receivers_max) {
            return Err(Rejection::with(
                ErrCode::BindingLimit,
                "giver has the most receivers",
            ));
        }
        Ok(())
    }

    /// Either person (or an admin) revokes a cross-engine binding; the peer learns it by
    /// `Unbind`. With the client's msgid, as API.md's revoke: a retry is answered as the first
    /// time, the msgid with another binding is `MSGID_CONFLICT`, and a revoke of a binding
    /// revoked already (here, by the peer, or refused there) is `ALREADY_REVOKED`. An op
    /// without a msgid (written before they were kept) answers a revoked binding as it is.
    pub(super) fn unbind(
        &mut self,
        config: &FederationConfig,
        actor: &Actor,
        bxid: &Xid,
        msgid: Option<&crate::command::Msgid>,
        time: i64,
    ) -> Result<Step, Rejection> {
        let not_found = Rejection::new(ErrCode::BindingNotFound);
        let key = match msgid {
            Some(m) if !msgid_valid(m) => return Err(Rejection::new(ErrCode::BadRequest)),
            Some(m) => Some(msgid_key(actor.msgid_scope(), m)),
            None => None,
        };
        if let Some(key) = key {
            if let Some(&l) = self.fed.unbind_msgids.get(&key) {
                if self.fed.links[l as usize].bxid != *bxid {
                    return Err(Rejection::new(ErrCode::MsgidConflict));
                }
                // The first answer again: revoked (whatever a refusal crossing it made it).
                let mut view = self.link_view(l);
                view.status = LinkStatus::Revoked;
                return Ok(Step::Replay(FedReply::Binding(view), Vec::new()));
            }
            if self.fed.msgid_taken(config.engine, key) || self.msgids.get(key).is_some() {
                return Err(Rejection::new(ErrCode::MsgidConflict));
            }
        }
        let l = *self.fed.link_index.get(bxid).ok_or(not_found)?;
        let link = &self.fed.links[l as usize];
        let person = link.person.ok_or(not_found)?;
        match actor {
            Actor::Admin => {}
            Actor::Person(me) if self.persons.find(me) == Some(person) => {}
            _ => return Err(Rejection::new(ErrCode::Forbidden)),
        }
        match link.status {
            LinkStatus::Revoked if key.is_none() => {
                return Ok(Step::Replay(
                    FedReply::Binding(self.link_view(l)),
                    Vec::new(),
                ))
            }
            LinkStatus::Revoked => return Err(ErrCode::AlreadyRevoked.into()),
            LinkStatus::Refused(_) => {
                return Err(Rejection::with(
                    ErrCode::AlreadyRevoked,
                    "refused by the receiver's engine",
                ))
            }
            LinkStatus::Pending | LinkStatus::Active => {}
        }
        self.time_ok(time)?;
        let link = &mut self.fed.links[l as usize];
        link.status = LinkStatus::Revoked;
        link.unbind = true;
        self.fed.resync_link(l);
        if let Some(key) = key {
            self.fed.unbind_msgids.insert(key, l);
        }
        let send = vec![self.link_message(l)];
        Ok(Step::Applied(FedReply::Binding(self.link_view(l)), send))
    }

    /// The receiver's engine judges a proposed binding (or answers one it has recorded).
    pub(super) fn deliver_bind(
        &mut self,
        config: &FederationConfig,
        msg: &Message,
        time: i64,
    ) -> Result<Step, Rejection> {
        let &Message::Bind {
            bxid,
            giver_psn_no,
            giver_admdvs,
            receiver_psn_no,
            receiver_admdvs,
            relation,
            created,
            ..
        } = msg
        else {
            unreachable!("a Bind")
        };
        let giver_owned = config.peers[&bxid.engine].contains(&admdvs_province(giver_admdvs));
        if !admdvs_valid(giver_admdvs) || !giver_owned {
            return Err(refuse("the giver's province is not the sending engine's"));
        }
        if !admdvs_valid(receiver_admdvs) || !config.owns(admdvs_province(receiver_admdvs)) {
            return Err(refuse("a province this engine does not own"));
        }
        if relation == Relation::Other {
            return Err(refuse("a malformed Bind"));
        }
        if let Some(&l) = self.fed.link_index.get(&bxid) {
            return self.bind_again(l, msg);
        }
        if self.fed.link_forgotten(bxid.engine, created) {
            return Err(refuse("forgotten: a Bind of a day both engines closed"));
        }
        self.time_ok(time)?;
        let receiver = self.persons.find(&receiver_psn_no).filter(|&r| {
            admdvs_province(self.persons.hot[r as usize].admdvs) == admdvs_province(receiver_admdvs)
        });
        let status = match receiver {
            None => LinkStatus::Refused(BindRefusal::PersonNotFound),
            Some(r) => self.bind_in_checks(r, &giver_psn_no, bxid.engine),
        };
        let l = self.fed.push_link(Link {
            bxid,
            giver_here: false,
            peer: bxid.engine,
            person: receiver,
            giver_psn_no,
            giver_admdvs,
            receiver_psn_no,
            receiver_admdvs,
            relation,
            created,
            status,
            unbind: false,
            fingerprint: 0,
        });
        Ok(Step::Applied(
            FedReply::Delivered,
            vec![self.status_message(l)],
        ))
    }

    /// A `Bind` for a binding recorded here: answered from the record if it is the same (or
    /// the record is of an `Unbind` that came first), refused if it differs.
    fn bind_again(&self, l: u32, msg: &Message) -> Result<Step, Rejection> {
        let &Message::Bind {
            giver_psn_no,
            giver_admdvs,
            receiver_psn_no,
            receiver_admdvs,
            relation,
            created,
            ..
        } = msg
        else {
            unreachable!("a Bind")
        };
        let link = &self.fed.links[l as usize];
        let unbound_first = link.person.is_none() && link.receiver_psn_no.is_empty();
        let same = (
            link.giver_psn_no,
            link.giver_admdvs,
            link.receiver_psn_no,
            link.receiver_admdvs,
            link.relation,
            link.created,
        ) == (
            giver_psn_no,
            giver_admdvs,
            receiver_psn_no,
            receiver_admdvs,
            relation,
            created,
        );
        if link.giver_here || !(same || unbound_first) {
            return Err(refuse("a Bind that differs from the one recorded"));
        }
        Ok(Step::Replay(
            FedReply::Delivered,
            vec![self.status_message(l)],
        ))
    }

    /// Rule 6 on the receiver's side, with this engine's limits: the receiver's givers are
    /// its in-engine ones and its active cross-engine ones.
    fn bind_in_checks(&self, receiver: u32, giver_psn_no: &str, peer: EngineId) -> LinkStatus {
        if self.persons.is_suspended(receiver) {
            return LinkStatus::Refused(BindRefusal::PersonSuspended);
        }
        let exists = self
            .fed
            .live
            .range((receiver, 0)..=(receiver, u32::MAX))
            .any(|&(_, l)| {
                let link = &self.fed.links[l as usize];
                !link.giver_here && link.peer == peer && link.giver_psn_no.as_str() == giver_psn_no
            });
        if exists {
            return LinkStatus::Refused(BindRefusal::BindingExists);
        }
        let givers = self.received(receiver).count() + self.fed.live_count(receiver, false);
        if givers >= usize::from(self.params.binding_givers_max) {
            return LinkStatus::Refused(BindRefusal::BindingLimit);
        }
        LinkStatus::Active
    }

    /// The other side revoked the binding.
    pub(super) fn deliver_unbind(
        &mut self,
        config: &FederationConfig,
        bxid: &Xid,
        from_engine: EngineId,
        created: Option<i64>,
        time: i64,
    ) -> Result<Step, Rejection> {
        let Some(&l) = self.fed.link_index.get(bxid) else {
            // Only the giver's engine may revoke a binding this engine never saw (it was
            // revoked while pending): recorded revoked, so that a late Bind is answered so.
            if bxid.engine != from_engine || bxid.engine == config.engine {
                return Err(refuse("an Unbind for an unknown binding"));
            }
            let forgotten = match created {
                Some(created) => self.fed.link_forgotten(from_engine, created),
                None => self.fed.links_forgetting(from_engine),
            };
            if forgotten {
                return Err(refuse("forgotten: an Unbind of a day both engines closed"));
            }
            self.time_ok(time)?;
            let l = self.fed.push_link(Link {
                bxid: *bxid,
                giver_here: false,
                peer: from_engine,
                person: None,
                giver_psn_no: Default::default(),
                giver_admdvs: 0,
                receiver_psn_no: Default::default(),
                receiver_admdvs: 0,
                relation: Relation::Other,
                created: created.unwrap_or(time),
                status: LinkStatus::Revoked,
                unbind: false,
                fingerprint: 0,
            });
            return Ok(Step::Applied(
                FedReply::Delivered,
                vec![self.status_message(l)],
            ));
        };
        let link = &self.fed.links[l as usize];
        if link.peer != from_engine {
            return Err(refuse("an Unbind from an engine that is not the binding's"));
        }
        match (link.status, link.unbind) {
            (LinkStatus::Pending | LinkStatus::Active, _) | (LinkStatus::Revoked, true) => {}
            (LinkStatus::Revoked, false) => {
                return Ok(Step::Replay(
                    FedReply::Delivered,
                    vec![self.status_message(l)],
                ))
            }
            // The giver's engine revoked a binding this engine had refused: the refusal stands.
            (LinkStatus::Refused(_), _) if !link.giver_here => {
                return Ok(Step::Replay(
                    FedReply::Delivered,
                    vec![self.status_message(l)],
                ))
            }
            (LinkStatus::Refused(_), _) => {
                return Err(refuse("an Unbind of a binding its engine refused"))
            }
        }
        self.time_ok(time)?;
        // Revoked there: revoked here too; a revocation of ours crossing it is confirmed.
        let link = &mut self.fed.links[l as usize];
        link.status = LinkStatus::Revoked;
        link.unbind = false;
        self.fed.resync_link(l);
        Ok(Step::Applied(
            FedReply::Delivered,
            vec![self.status_message(l)],
        ))
    }

    /// The other side's record of the binding, answering our Bind or Unbind.
    pub(super) fn deliver_bind_status(
        &mut self,
        bxid: &Xid,
        from_engine: EngineId,
        status: LinkStatus,
        time: i64,
    ) -> Result<Step, Rejection> {
        let Some(&l) = self.fed.link_index.get(bxid) else {
            return Err(refuse("a binding status for an unknown binding"));
        };
        let link = &self.fed.links[l as usize];
        if link.peer != from_engine || link.person.is_none() {
            return Err(refuse(
                "a binding status from an engine that is not the binding's",
            ));
        }
        use LinkStatus::{Active, Pending, Refused, Revoked};
        // Only the receiver's engine decides active or refused.
        let from_decider = link.giver_here;
        if !from_decider && status != Revoked {
            return Err(refuse("only the receiver's engine decides a binding"));
        }
        let next = match (link.status, link.unbind, status) {
            (_, _, Pending) => return Err(refuse("a binding status of pending")),
            (Pending, _, Active) if from_decider => Active,
            (Pending, _, Refused(r)) if from_decider => Refused(r),
            (Revoked, true, Refused(r)) if from_decider => Refused(r),
            (Pending | Active, _, Revoked) => Revoked,
            (Revoked, true, Revoked) => Revoked,
            // A late answer to a Bind this side has since revoked, or a repeat.
            (Revoked, _, Active) if from_decider => {
                return Ok(Step::Replay(FedReply::Delivered, Vec::new()))
            }
            (a, false, b) if a == b => return Ok(Step::Replay(FedReply::Delivered, Vec::new())),
            _ => return Err(refuse("a binding status that contradicts the one recorded")),
        };
        self.time_ok(time)?;
        let link = &mut self.fed.links[l as usize];
        link.status = next;
        link.unbind = false;
        self.fed.resync_link(l);
        Ok(Step::Applied(FedReply::Delivered, Vec::new()))
    }

    /// What the relay sends for a link in the outbox: `Unbind`, or the giver's `Bind`.
    pub(super) fn link_message(&self, l: u32) -> Message {
        let link = &self.fed.links[l as usize];
        let me = self.fed.config.as_ref().expect("federated").engine;
        if link.unbind {
            return Message::Unbind {
                bxid: link.bxid,
                from_engine: me,
                to_engine: link.peer,
                created: Some(link.created),
            };
        }
        Message::Bind {
            bxid: link.bxid,
            to_engine: link.peer,
            giver_psn_no: link.giver_psn_no,
            giver_admdvs: link.giver_admdvs,
            receiver_psn_no: link.receiver_psn_no,
            receiver_admdvs: link.receiver_admdvs,
            relation: link.relation,
            created: link.created,
        }
    }

    /// This engine's record of link `l`, as an answer to the peer.
    fn status_message(&self, l: u32) -> Message {
        let link = &self.fed.links[l as usize];
        Message::BindStatus {
            bxid: link.bxid,
            from_engine: self.fed.config.as_ref().expect("federated").engine,
            to_engine: link.peer,
            status: link.status,
        }
    }

    fn link_view(&self, l: u32) -> LinkView {
        let link = &self.fed.links[l as usize];
        LinkView::of(link, link.person.map(|p| self.persons.psn_no_array(p)))
    }

    /// One cross-engine binding by id.
    pub fn cross_binding(&self, bxid: &Xid) -> Option<LinkView> {
        self.fed.link_index.get(bxid).map(|&l| self.link_view(l))
    }

    /// Every cross-engine binding this engine holds, in the order recorded (checkers, tests).
    pub fn links(&self) -> impl Iterator<Item = LinkView> + '_ {
        (0..self.fed.links.len() as u32).map(|l| self.link_view(l))
    }

    /// The cross-engine bindings of one person here, newest first, at most `limit` (the
    /// person's set: no scan of the records).
    pub fn person_links(&self, psn_no: &str, limit: usize) -> Vec<LinkView> {
        let Some(p) = self.persons.find(psn_no) else {
            return Vec::new();
        };
        self.fed
            .person_links
            .range((p, 0)..=(p, u32::MAX))
            .rev()
            .take(limit)
            .map(|&(_, l)| self.link_view(l))
            .collect()
    }

    /// Where the receiver of a transfer from `from_psn_no` to `to_psn_no` lives, when the two
    /// have an active cross-engine binding: the remote person's admdvs. A transfer names its
    /// receiver by psn_no alone (API.md); this is how the engine knows it is cross-engine.
    pub fn bound_remote_admdvs(&self, from_psn_no: &str, to_psn_no: &str) -> Option<u32> {
        let p = self.persons.find(from_psn_no)?;
        self.fed
            .live
            .range((p, 0)..=(p, u32::MAX))
            .map(|&(_, l)| &self.fed.links[l as usize])
            .find(|link| {
                link.status == LinkStatus::Active && link.remote_psn_no().as_str() == to_psn_no
            })
            .map(|link| link.remote_admdvs())
    }
}
