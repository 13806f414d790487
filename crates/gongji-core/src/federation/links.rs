//! Cross-engine bindings (DOMAIN.md rule 7's `wallet_only` across engines, docs/FEDERATION.md):
//! a giver on one engine, a receiver on another. Both engines hold a [`Link`] record under
//! the binding's id, the **bxid** (made like an exchange's xid, from the giver's engine and the
//! msgid key of the client's write). The giver's engine proposes it (`Bind`), the receiver's
//! engine alone decides it (active, or refused under its own limits), and either side's
//! revocation travels as `Unbind` until the other side confirms it (`BindStatus`).

use crate::command::{PsnNo, Relation};
use crate::reply::ErrCode;

use super::{EngineId, Xid};

/// Why the receiver's engine refused a binding (API.md's codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindRefusal {
    PersonNotFound,
    PersonSuspended,
    BindingExists,
    BindingLimit,
}

impl BindRefusal {
    /// Position = encoded tag (messages and snapshots).
    pub const ALL: [BindRefusal; 4] = [
        BindRefusal::PersonNotFound,
        BindRefusal::PersonSuspended,
        BindRefusal::BindingExists,
        BindRefusal::BindingLimit,
    ];

    pub fn code(self) -> ErrCode {
        match self {
            BindRefusal::PersonNotFound => ErrCode::PersonNotFound,
            BindRefusal::PersonSuspended => ErrCode::PersonSuspended,
            BindRefusal::BindingExists => ErrCode::BindingExists,
            BindRefusal::BindingLimit => ErrCode::BindingLimit,
        }
    }

    pub(crate) fn tag(self) -> u8 {
        BindRefusal::ALL
            .iter()
            .position(|&r| r == self)
            .expect("listed") as u8
    }
}

/// Where a cross-engine binding stands on one engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkStatus {
    /// Giver's engine only: proposed, the receiver's engine has not answered.
    Pending,
    Active,
    /// The receiver's engine refused it (closed; never active).
    Refused(BindRefusal),
    /// Revoked by either side (closed).
    Revoked,
}

impl LinkStatus {
    /// Encoded tag: 0 pending, 1 active, 2 revoked, 3 + the refusal's tag.
    pub(crate) fn tag(self) -> u8 {
        match self {
            LinkStatus::Pending => 0,
            LinkStatus::Active => 1,
            LinkStatus::Revoked => 2,
            LinkStatus::Refused(r) => 3 + r.tag(),
        }
    }

    pub(crate) fn from_tag(t: u8) -> Option<LinkStatus> {
        Some(match t {
            0 => LinkStatus::Pending,
            1 => LinkStatus::Active,
            2 => LinkStatus::Revoked,
            _ => LinkStatus::Refused(*BindRefusal::ALL.get(usize::from(t.checked_sub(3)?))?),
        })
    }

    /// Pending or active: counts toward the persons' binding limits.
    pub fn is_live(self) -> bool {
        matches!(self, LinkStatus::Pending | LinkStatus::Active)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Pending => "pending",
            LinkStatus::Active => "active",
            LinkStatus::Refused(_) => "refused",
            LinkStatus::Revoked => "revoked",
        }
    }
}

/// One cross-engine binding as this engine knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub bxid: Xid,
    /// This engine holds the giver (and proposed the binding).
    pub giver_here: bool,
    /// The other engine.
    pub peer: EngineId,
    /// The local person (giver or receiver); None for a record of an `Unbind` that arrived
    /// before its `Bind`, or of a `Bind` whose receiver is unknown here.
    pub person: Option<u32>,
    pub giver_psn_no: PsnNo,
    pub giver_admdvs: u32,
    /// Empty (and the rest zero) in the record of an `Unbind` that came first.
    pub receiver_psn_no: PsnNo,
    pub receiver_admdvs: u32,
    pub relation: Relation,
    pub created: i64,
    pub status: LinkStatus,
    /// Revoked here and not yet confirmed by the peer: the relay sends `Unbind`.
    pub unbind: bool,
    /// Giver's side: the fingerprint of the client's request (a retry must match it).
    pub fingerprint: u64,
}

impl Link {
    /// The person on the other engine.
    pub fn remote_psn_no(&self) -> PsnNo {
        if self.giver_here {
            self.receiver_psn_no
        } else {
            self.giver_psn_no
        }
    }

    pub fn remote_admdvs(&self) -> u32 {
        if self.giver_here {
            self.receiver_admdvs
        } else {
            self.giver_admdvs
        }
    }

    /// In the outbox: a proposal not answered, or a revocation not confirmed.
    pub fn outgoing(&self) -> bool {
        self.unbind || (self.giver_here && self.status == LinkStatus::Pending)
    }
}

/// A cross-engine binding as views, replies and checkers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkView {
    pub bxid: Xid,
    pub giver_here: bool,
    pub peer: EngineId,
    /// The local person's psn_no, if known here.
    pub psn_no: Option<PsnNo>,
    pub giver_psn_no: PsnNo,
    pub giver_admdvs: u32,
    pub receiver_psn_no: PsnNo,
    pub receiver_admdvs: u32,
    pub relation: Relation,
    pub created: i64,
    pub status: LinkStatus,
    pub unbind: bool,
}

impl LinkView {
    pub(crate) fn of(link: &Link, psn_no: Option<PsnNo>) -> LinkView {
        LinkView {
            bxid: link.bxid,
            giver_here: link.giver_here,
            peer: link.peer,
            psn_no,
            giver_psn_no: link.giver_psn_no,
            giver_admdvs: link.giver_admdvs,
            receiver_psn_no: link.receiver_psn_no,
            receiver_admdvs: link.receiver_admdvs,
            relation: link.relation,
            created: link.created,
            status: link.status,
            unbind: link.unbind,
        }
    }
}

impl super::Federation {
    /// The live (pending or active) links of local person `p` as giver, or as receiver.
    pub(crate) fn live_count(&self, p: u32, as_giver: bool) -> usize {
        self.live
            .range((p, 0)..=(p, u32::MAX))
            .filter(|&&(_, l)| self.links[l as usize].giver_here == as_giver)
            .count()
    }

    /// The active link between local person `p` and `remote` on engine `peer`, either way.
    pub(crate) fn active_link(&self, p: u32, remote: &str, peer: EngineId) -> Option<u32> {
        self.live
            .range((p, 0)..=(p, u32::MAX))
            .map(|&(_, l)| l)
            .find(|&l| {
                let link = &self.links[l as usize];
                link.status == LinkStatus::Active
                    && link.peer == peer
                    && link.remote_psn_no().as_str() == remote
            })
    }

    /// Appends a link record and enters it in the derived sets.
    pub(crate) fn push_link(&mut self, link: Link) -> u32 {
        let l = self.links.len() as u32;
        self.link_index.insert(link.bxid, l);
        if let Some(p) = link.person {
            self.person_links.insert((p, l));
        }
        self.links.push(link);
        self.resync_link(l);
        l
    }

    /// Brings the derived sets in line with link `l`'s record after it changed.
    pub(crate) fn resync_link(&mut self, l: u32) {
        let link = &self.links[l as usize];
        let (outgoing, live, person) = (link.outgoing(), link.status.is_live(), link.person);
        if outgoing {
            self.link_outbox.insert(l);
        } else {
            self.link_outbox.remove(&l);
        }
        if let Some(p) = person {
            if live {
                self.live.insert((p, l));
            } else {
                self.live.remove(&(p, l));
            }
        }
    }

    /// The derived link sets and index agree with the records.
    pub(crate) fn check_links(&self, person_count: usize) -> Result<(), String> {
        if self.link_index.len() != self.links.len() {
            return Err("link index size differs".into());
        }
        let mut live = 0;
        for (l, link) in self.links.iter().enumerate() {
            let l = l as u32;
            if self.link_index.get(&link.bxid) != Some(&l) {
                return Err(format!("binding {} not indexed", link.bxid));
            }
            if link.person.is_some_and(|p| p as usize >= person_count) {
                return Err(format!("binding {}: person", link.bxid));
            }
            if link.outgoing() != self.link_outbox.contains(&l) {
                return Err(format!("binding {}: outbox differs", link.bxid));
            }
            let is_live = link.status.is_live() && link.person.is_some();
            if is_live != link.person.is_some_and(|p| self.live.contains(&(p, l))) {
                return Err(format!("binding {}: live set differs", link.bxid));
            }
            live += usize::from(is_live);
            if link
                .person
                .is_some_and(|p| !self.person_links.contains(&(p, l)))
            {
                return Err(format!("binding {}: not in its person's set", link.bxid));
            }
            let pending_ok = link.giver_here || link.status != LinkStatus::Pending;
            let giver_ok = !link.giver_here || link.person.is_some();
            let unbind_ok = !link.unbind || link.status == LinkStatus::Revoked;
            let live_ok = !link.status.is_live() || link.person.is_some();
            if !(pending_ok && giver_ok && unbind_ok && live_ok) {
                return Err(format!("binding {}: {:?}", link.bxid, link.status));
            }
        }
        let with_person = self.links.iter().filter(|l| l.person.is_some()).count();
        if live != self.live.len()
            || with_person != self.person_links.len()
            || self
                .link_outbox
                .iter()
                .any(|&l| l as usize >= self.links.len())
        {
            return Err("live set or link outbox names an unknown binding".into());
        }
        Ok(())
    }
}
