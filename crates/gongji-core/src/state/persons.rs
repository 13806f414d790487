//! Persons in flat arrays indexed by a dense `u32`, institutions and tokens.
//!
//! A person's resident state is about a hundred bytes: the psn_no and name in shared byte
//! arenas, the certno packed into a `u64`, and the fields a settlement touches (balances, flags,
//! area, list ends) together in one 32-byte [`Hot`] record; the rest in parallel vectors. The
//! psn_no and certno indexes are `hashbrown::HashTable<u32>`s whose keys live in the arena and
//! the certno vector, so each costs a few bytes a person instead of a heap string or a copy.

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::chunked::{Arena, Chunked};
use super::views::{InstitutionView, PersonView};
use super::State;
use crate::certno::{certno_pack, certno_unpack, mask_certno, mask_name};
use crate::command::{InstCode, InstType, Insutype, PersonStatus, PsnNo, Role};
use crate::reply::{ErrCode, Rejection, Reply};
use crate::time::Period;
use crate::Fen;

pub(crate) const FLAG_RESIDENT: u8 = 1;
pub(crate) const FLAG_SUSPENDED: u8 = 2;
pub(crate) const FLAG_WALLET: u8 = 4;

/// Months before the latest credited period that the per-person bitmask remembers; older
/// periods go to an exact overflow set.
const CREDIT_MASK_MONTHS: u32 = 64;

#[derive(Debug, Default)]
pub(crate) struct Persons {
    pub(crate) index: HashTable<u32>,
    pub(crate) psn_nos: Arena,
    pub(crate) names: Arena,
    /// Person indexes hashed by packed certno (the certno itself is in `certno`): 5 bytes a
    /// slot where a map of certno to index would take 17.
    pub certno_index: HashTable<u32>,
    pub certno: Chunked<u64>,
    /// What a settlement reads and writes of each person it touches, in one cache line.
    pub hot: Chunked<Hot>,
    /// Head of the list of bindings the person gives (binding index + 1; 0: none).
    pub given_head: Chunked<u32>,
    /// CST day of the latest wallet transfer sent, shifted left 8, ORed with that day's count.
    pub wallet_day: Chunked<u32>,
    /// Latest credited period (0: none) and a bitmask of the 64 months before it.
    pub credit_last: Chunked<u32>,
    pub credit_mask: Chunked<u64>,
    pub credit_overflow: BTreeSet<(u32, u32)>,
}

/// A person's balances, flags, area and list ends: the fields a settlement touches for the
/// person and for each giver, kept together (32 bytes, aligned) so that each person costs one
/// cache miss rather than one per field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(align(32))]
pub(crate) struct Hot {
    pub acct: Fen,
    pub wallet: Fen,
    pub admdvs: u32,
    /// Head of the list of bindings the person receives, in the order they were made.
    pub received_head: u32,
    /// Last entry of the person (entry index + 1; 0: none).
    pub entry_tail: u32,
    pub flags: u8,
}

/// Byte equality without a call to `memcmp` for the short keys of the psn_no index (8 to 16
/// bytes: two overlapping 8-byte words).
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word =
            |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    FxBuildHasher.hash_one(bytes)
}

pub(crate) fn hash_certno(packed: u64) -> u64 {
    FxBuildHasher.hash_one(packed)
}

impl Persons {
    /// The columns, sharing their chunks (copy on write), without the two indexes: what a
    /// snapshot encodes (decoding rebuilds the indexes).
    pub(super) fn frozen(&self) -> Persons {
        Persons {
            index: HashTable::new(),
            psn_nos: self.psn_nos.clone(),
            names: self.names.clone(),
            certno_index: HashTable::new(),
            certno: self.certno.clone(),
            hot: self.hot.clone(),
            given_head: self.given_head.clone(),
            wallet_day: self.wallet_day.clone(),
            credit_last: self.credit_last.clone(),
            credit_mask: self.credit_mask.clone(),
            credit_overflow: self.credit_overflow.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.hot.len()
    }

    /// The person with this packed certno, if any.
    pub fn find_certno(&self, packed: u64) -> Option<u32> {
        self.certno_index
            .find(hash_certno(packed), |&i| self.certno[i as usize] == packed)
            .copied()
    }

    pub fn find(&self, psn_no: &str) -> Option<u32> {
        let psn_no = psn_no.as_bytes();
        let hash = hash_bytes(psn_no);
        // Bytes, not `str`: the comparison needs no UTF-8 check of the arena's slice.
        self.index
            .find(hash, |&i| bytes_eq(self.psn_nos.get(i), psn_no))
            .copied()
    }

    pub fn psn_no(&self, i: u32) -> &str {
        arena_str(&self.psn_nos, i)
    }

    pub fn name(&self, i: u32) -> &str {
        arena_str(&self.names, i)
    }

    pub fn psn_no_array(&self, i: u32) -> PsnNo {
        PsnNo::from(self.psn_no(i)).expect("psn_no fits")
    }

    pub fn is_resident(&self, i: u32) -> bool {
        self.hot[i as usize].flags & FLAG_RESIDENT != 0
    }

    pub fn is_suspended(&self, i: u32) -> bool {
        self.hot[i as usize].flags & FLAG_SUSPENDED != 0
    }

    pub fn wallet_open(&self, i: u32) -> bool {
        self.hot[i as usize].flags & FLAG_WALLET != 0
    }

    pub fn insutype(&self, i: u32) -> Insutype {
        if self.is_resident(i) {
            Insutype::Resident
        } else {
            Insutype::Employee
        }
    }

    fn push(&mut self, psn_no: &str, certno: u64, name: &str, insutype: Insutype, admdvs: u32) {
        let i = self.len() as u32;
        self.psn_nos.push(psn_no.as_bytes());
        self.names.push(name.as_bytes());
        let hash = hash_bytes(psn_no.as_bytes());
        let psn_nos = &self.psn_nos;
        self.index
            .insert_unique(hash, i, |&j| hash_bytes(psn_nos.get(j)));
        let certnos = &self.certno;
        self.certno_index
            .insert_unique(hash_certno(certno), i, |&j| {
                hash_certno(certnos[j as usize])
            });
        self.certno.push(certno);
        self.hot.push(Hot {
            acct: Fen::ZERO,
            wallet: Fen::ZERO,
            admdvs,
            received_head: 0,
            entry_tail: 0,
            flags: if insutype == Insutype::Resident {
                FLAG_RESIDENT
            } else {
                0
            },
        });
        self.given_head.push(0);
        self.wallet_day.push(0);
        self.credit_last.push(0);
        self.credit_mask.push(0);
    }

    pub fn credited(&self, i: u32, period: Period) -> bool {
        let (last, p) = (self.credit_last[i as usize], period.0);
        if last == 0 || p > last {
            false
        } else if p == last {
            true
        } else if last - p <= CREDIT_MASK_MONTHS {
            self.credit_mask[i as usize] & (1u64 << (last - p - 1)) != 0
        } else {
            self.credit_overflow.contains(&(i, p))
        }
    }

    pub fn mark_credited(&mut self, i: u32, period: Period) {
        let (last, p) = (self.credit_last[i as usize], period.0);
        let mask = self.credit_mask[i as usize];
        if last == 0 {
            self.credit_last[i as usize] = p;
        } else if p > last {
            let shift = p - last;
            // Bits that fall off the mask are kept exactly in the overflow set.
            for k in 0..CREDIT_MASK_MONTHS {
                if mask & (1u64 << k) != 0 && k + shift >= CREDIT_MASK_MONTHS {
                    self.credit_overflow.insert((i, last - 1 - k));
                }
            }
            let shifted = if shift >= 64 { 0 } else { mask << shift };
            let old_last_bit = if shift <= 64 { 1u64 << (shift - 1) } else { 0 };
            if shift > 64 {
                self.credit_overflow.insert((i, last));
            }
            self.credit_mask[i as usize] = shifted | old_last_bit;
            self.credit_last[i as usize] = p;
        } else if last - p <= CREDIT_MASK_MONTHS {
            self.credit_mask[i as usize] = mask | (1u64 << (last - p - 1));
        } else {
            self.credit_overflow.insert((i, p));
        }
    }
}

fn arena_str(arena: &Arena, i: u32) -> &str {
    std::str::from_utf8(arena.get(i)).expect("arena holds UTF-8")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Institution {
    pub code: InstCode,
    pub name: String,
    pub kind: InstType,
    pub admdvs: u32,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Institutions {
    pub index: FxHashMap<InstCode, u32>,
    pub list: Chunked<Institution>,
}

impl Institutions {
    /// The list, sharing its chunks, without the index (decoding rebuilds it).
    pub(super) fn frozen(&self) -> Institutions {
        Institutions {
            index: FxHashMap::default(),
            list: self.list.clone(),
        }
    }

    pub fn find(&self, code: &str) -> Option<u32> {
        InstCode::from(code)
            .ok()
            .and_then(|c| self.index.get(&c).copied())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub hash: [u8; 32],
    pub role: Role,
    /// Institution index or person index for scoped roles.
    pub scope: u32,
    pub revoked: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Tokens {
    pub index: FxHashMap<[u8; 32], u32>,
    pub list: Chunked<Token>,
    /// The op that last created or revoked a token (0 after a decode: every op a decoded
    /// state holds is durable). Not state: a server answers a read whose authorisation is
    /// older than its durable op without waiting for the ops applied since.
    pub changed_op: u64,
}

impl Tokens {
    /// The list, sharing its chunks, without the index (decoding rebuilds it).
    pub(super) fn frozen(&self) -> Tokens {
        Tokens {
            index: FxHashMap::default(),
            list: self.list.clone(),
            changed_op: self.changed_op,
        }
    }
}

impl State {
    pub(crate) fn person_index(&self, psn_no: &str) -> Result<u32, Rejection> {
        self.persons
            .find(psn_no)
            .ok_or(Rejection::new(ErrCode::PersonNotFound))
    }

    /// [`State::institution_index`] for a code already parsed (a settlement's): no copy
    /// into a new `InstCode` before the lookup.
    pub(crate) fn institution_of_code(&self, code: &InstCode) -> Result<u32, Rejection> {
        self.insts
            .index
            .get(code)
            .copied()
            .ok_or(Rejection::new(ErrCode::InstitutionNotFound))
    }

    pub(crate) fn institution_index(&self, code: &str) -> Result<u32, Rejection> {
        self.insts
            .find(code)
            .ok_or(Rejection::new(ErrCode::InstitutionNotFound))
    }

    pub(super) fn enrol(
        &mut self,
        psn_no: &PsnNo,
        certno: &str,
        name: &str,
        insutype: Insutype,
        admdvs: u32,
    ) -> Result<Reply, Rejection> {
        let packed = certno_pack(certno).ok_or(Rejection::new(ErrCode::InvalidCertno))?;
        if self.persons.find(psn_no).is_some() {
            return Err(Rejection::with(ErrCode::PersonExists, "psn_no is enrolled"));
        }
        if self.persons.find_certno(packed).is_some() {
            return Err(Rejection::with(ErrCode::PersonExists, "certno is enrolled"));
        }
        self.persons.push(psn_no, packed, name, insutype, admdvs);
        let i = self.persons.len() as u32 - 1;
        self.masked.insert(i, &self.persons.certno);
        Ok(Reply::Enrolled(i))
    }

    pub(super) fn set_status(
        &mut self,
        psn_no: &PsnNo,
        status: PersonStatus,
    ) -> Result<Reply, Rejection> {
        let i = self.person_index(psn_no)?;
        self.prior_money(i);
        let flags = &mut self.persons.hot[i as usize].flags;
        match status {
            PersonStatus::Active => *flags &= !FLAG_SUSPENDED,
            PersonStatus::Suspended => *flags |= FLAG_SUSPENDED,
        }
        Ok(Reply::Person(Box::new(self.person_view(i))))
    }

    pub(super) fn open_wallet(&mut self, psn_no: &PsnNo) -> Result<Reply, Rejection> {
        let i = self.person_index(psn_no)?;
        self.prior_money(i);
        self.persons.hot[i as usize].flags |= FLAG_WALLET;
        Ok(Reply::Person(Box::new(self.person_view(i))))
    }

    pub(super) fn register_institution(
        &mut self,
        code: &InstCode,
        name: &str,
        kind: InstType,
        admdvs: u32,
    ) -> Result<Reply, Rejection> {
        if self.insts.index.contains_key(code) {
            return Err(Rejection::new(ErrCode::InstitutionExists));
        }
        let i = self.insts.list.len() as u32;
        self.insts.index.insert(*code, i);
        self.insts.list.push(Institution {
            code: *code,
            name: name.to_owned(),
            kind,
            admdvs,
        });
        Ok(Reply::Institution(Box::new(self.institution_view(i))))
    }

    pub(super) fn create_token(
        &mut self,
        hash: [u8; 32],
        role: Role,
        fixmedins_code: &Option<InstCode>,
        psn_no: &Option<PsnNo>,
    ) -> Result<Reply, Rejection> {
        let scope = match role {
            Role::Admin => 0,
            Role::Institution => {
                self.institution_index(fixmedins_code.as_deref().unwrap_or_default())?
            }
            Role::Person => self.person_index(psn_no.as_deref().unwrap_or_default())?,
        };
        if self.tokens.index.contains_key(&hash) {
            // Two raw tokens with one blake3 hash: not a thing that happens; refuse anyway.
            return Err(Rejection::with(ErrCode::BadRequest, "token already exists"));
        }
        let i = self.tokens.list.len() as u32;
        self.tokens.index.insert(hash, i);
        self.tokens.list.push(Token {
            hash,
            role,
            scope,
            revoked: false,
        });
        self.tokens.changed_op = self.op_count + 1;
        Ok(Reply::TokenCreated {
            token_id: u64::from(i) + 1,
        })
    }

    pub(super) fn revoke_token(&mut self, token_id: u64) -> Result<Reply, Rejection> {
        let i = id_to_index(token_id, self.tokens.list.len()).ok_or(ErrCode::NotFound)?;
        self.tokens.list[i].revoked = true;
        self.tokens.changed_op = self.op_count + 1;
        Ok(Reply::TokenRevoked { token_id })
    }

    /// The person as the API shows it: identity masked, balances, active bindings.
    pub fn person_view(&self, i: u32) -> PersonView {
        let p = &self.persons;
        PersonView {
            status: if p.is_suspended(i) {
                PersonStatus::Suspended
            } else {
                PersonStatus::Active
            },
            acct_balc: p.hot[i as usize].acct,
            wallet_open: p.wallet_open(i),
            wallet_balc: p.hot[i as usize].wallet,
            bindings_given: self.given_views(i),
            bindings_received: self.received_views(i),
            // The identity fields never change: the enrolment view is their one source.
            ..self.enrolled_view(i)
        }
    }

    /// The reply of person `i`'s enrolment: the person as enrolled, from the fields that never
    /// change (identity, insutype, admdvs), active, with zero balances, no wallet and no
    /// bindings: what [`State::person_view`] showed right after the enrolment.
    pub fn enrolled_view(&self, i: u32) -> PersonView {
        let p = &self.persons;
        PersonView {
            psn_no: p.psn_no_array(i),
            certno_masked: mask_certno(&certno_unpack(p.certno[i as usize])),
            psn_name_masked: mask_name(p.name(i)),
            insutype: p.insutype(i),
            admdvs: p.hot[i as usize].admdvs,
            status: PersonStatus::Active,
            acct_balc: Fen::ZERO,
            wallet_open: false,
            wallet_balc: Fen::ZERO,
            bindings_given: Vec::new(),
            bindings_received: Vec::new(),
        }
    }

    pub(crate) fn institution_view(&self, i: u32) -> InstitutionView {
        let inst = &self.insts.list[i as usize];
        InstitutionView {
            fixmedins_code: inst.code,
            fixmedins_name: inst.name.clone(),
            fixmedins_type: inst.kind,
            admdvs: inst.admdvs,
        }
    }
}

/// Wire ids are 1-based; record indexes 0-based.
pub(crate) fn id_to_index(id: u64, len: usize) -> Option<usize> {
    let i = usize::try_from(id.checked_sub(1)?).ok()?;
    (i < len).then_some(i)
}

#[cfg(test)]
mod tests {
    /// The word-wise comparison agrees with `==` for equal and unequal slices of every length
    /// up to 20, differing at every position, and for slices of different lengths.
    #[test]
    fn bytes_eq_agrees_with_slice_equality() {
        for len in 0..=20usize {
            let a: Vec<u8> = (0..len as u8).map(|k| b'0' + k).collect();
            assert!(super::bytes_eq(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!super::bytes_eq(&a, &b), "len {len} at {at}");
            }
            if len > 0 {
                assert!(!super::bytes_eq(&a, &a[..len - 1]), "len {len}");
            }
        }
    }
}
