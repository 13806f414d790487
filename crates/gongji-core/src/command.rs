//! Commands: what a client asks the engine to do, already parsed into typed values.
//!
//! The HTTP layer turns JSON into these; the journal stores them (see [`crate::codec`]). Strings
//! that identify things are inline [`ArrayString`]s so that a settlement command carries no heap
//! allocation.

pub use arrayvec::ArrayString;

use crate::money::Fen;
use crate::time::Period;

/// 1 to 64 characters `[0-9A-Za-z_-]`.
pub type Msgid = ArrayString<64>;
/// Platform person number: 1 to 30 characters `[0-9A-Za-z]`.
pub type PsnNo = ArrayString<30>;
/// Designated institution code (`fixmedins_code`): 1 to 30 characters `[0-9A-Za-z]`.
pub type InstCode = ArrayString<30>;

/// Largest byte length of a person's name and of an institution's name.
pub const NAME_BYTES_MAX: usize = 200;
/// Largest number of items in one crediting batch.
pub const CREDIT_ITEMS_MAX: usize = 10_000;

/// One entry of the journal: a client write, or the clock moving on.
// A write is large (inline strings) and a tick small; boxing the write would put an
// allocation on the settle path, which is what the inline strings are there to avoid.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write(Command),
    /// The server's clock passed `time`: pending wallet transfers due by then are returned.
    Tick {
        time: i64,
    },
}

impl Op {
    pub fn time(&self) -> i64 {
        match self {
            Op::Write(command) => command.time,
            Op::Tick { time } => *time,
        }
    }
}

/// A write with its idempotency key, its business time (unix seconds) and who asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub msgid: Msgid,
    pub time: i64,
    pub actor: Actor,
    pub body: Body,
}

/// Who makes a request: the role of the token it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    Admin,
    Institution(InstCode),
    Person(PsnNo),
}

impl Actor {
    /// The msgid scope of this actor's writes (API.md, Idempotency).
    pub fn msgid_scope(&self) -> MsgidScope<'_> {
        match self {
            Actor::Admin => MsgidScope::Admin,
            Actor::Institution(code) => MsgidScope::Institution(code),
            Actor::Person(psn_no) => MsgidScope::Person(psn_no),
        }
    }
}

/// Whose msgid namespace a msgid belongs to: an institution's code, a person's `psn_no`, or the
/// one scope all admin tokens share. The same msgid in two scopes is two unrelated requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgidScope<'a> {
    Admin,
    Institution(&'a str),
    Person(&'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Institution,
    Person,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Insutype {
    /// 310: employee basic medical insurance; has a personal account.
    Employee,
    /// 390: resident basic medical insurance; no personal account.
    Resident,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PersonStatus {
    Active,
    Suspended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstType {
    /// "1": designated medical institution.
    Medical,
    /// "2": designated retail pharmacy.
    Pharmacy,
}

/// What the receiver is to the giver. `Other` keeps an ineligible relation as data so that the
/// engine answers it in its place among the business rules (`RELATION_NOT_ELIGIBLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Relation {
    Spouse,
    Parent,
    Child,
    Sibling,
    PaternalGrandparent,
    MaternalGrandparent,
    PaternalGrandchild,
    MaternalGrandchild,
    Other,
}

impl Relation {
    /// The eight close-relative kinds: every variant but `Other`.
    pub const ELIGIBLE: [Relation; 8] = {
        let mut out = [Relation::Other; 8];
        let mut i = 0;
        while i < out.len() {
            out[i] = Relation::ALL[i];
            i += 1;
        }
        out
    };

    /// Every variant in declaration order: the position is the encoded tag (journal and
    /// snapshot formats).
    pub const ALL: [Relation; 9] = [
        Relation::Spouse,
        Relation::Parent,
        Relation::Child,
        Relation::Sibling,
        Relation::PaternalGrandparent,
        Relation::MaternalGrandparent,
        Relation::PaternalGrandchild,
        Relation::MaternalGrandchild,
        Relation::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Spouse => "spouse",
            Relation::Parent => "parent",
            Relation::Child => "child",
            Relation::Sibling => "sibling",
            Relation::PaternalGrandparent => "paternal_grandparent",
            Relation::MaternalGrandparent => "maternal_grandparent",
            Relation::PaternalGrandchild => "paternal_grandchild",
            Relation::MaternalGrandchild => "maternal_grandchild",
            Relation::Other => "other",
        }
    }

    /// Any unknown text maps to `Other`.
    pub fn parse(s: &str) -> Relation {
        Relation::ELIGIBLE
            .into_iter()
            .find(|r| r.as_str() == s)
            .unwrap_or(Relation::Other)
    }
}

/// Where a wallet transfer takes its money from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferSource {
    Acct,
    Wallet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditItem {
    pub psn_no: PsnNo,
    pub amount: Fen,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `token_hash` is the blake3 hash of the raw token, which the engine never sees.
    CreateToken {
        token_hash: [u8; 32],
        role: Role,
        fixmedins_code: Option<InstCode>,
        psn_no: Option<PsnNo>,
    },
    RevokeToken {
        token_id: u64,
    },
    Enrol {
        psn_no: PsnNo,
        certno: ArrayString<18>,
        psn_name: String,
        insutype: Insutype,
        admdvs: u32,
    },
    SetStatus {
        psn_no: PsnNo,
        status: PersonStatus,
    },
    RegisterInstitution {
        fixmedins_code: InstCode,
        fixmedins_name: String,
        fixmedins_type: InstType,
        admdvs: u32,
    },
    Credit {
        period: Period,
        items: Vec<CreditItem>,
    },
    Bind {
        giver_psn_no: PsnNo,
        receiver_psn_no: PsnNo,
        relation: Relation,
    },
    Revoke {
        binding_id: u64,
    },
    Settle {
        fixmedins_code: InstCode,
        psn_no: PsnNo,
        medfee_sumamt: Fen,
        fund_pay_sumamt: Fen,
        acct_used: bool,
    },
    Cancel {
        setl_id: u64,
    },
    /// Reversal of `omsgid`, looked up in the caller's own msgid scope, or (admin only) in
    /// the scope of the institution `fixmedins_code`.
    Reverse {
        omsgid: Msgid,
        fixmedins_code: Option<InstCode>,
    },
    OpenWallet {
        psn_no: PsnNo,
    },
    TransferCreate {
        from_psn_no: PsnNo,
        to_psn_no: PsnNo,
        amount: Fen,
        source: TransferSource,
    },
    TransferAccept {
        transfer_id: u64,
    },
    TransferDecline {
        transfer_id: u64,
    },
    Contribute {
        payer_psn_no: PsnNo,
        psn_no: PsnNo,
        year: u16,
        amount: Fen,
    },
}

/// `[0-9A-Za-z]`, 1 or more characters (the ArrayString bounds the length).
pub fn code_valid(s: &str) -> bool {
    !s.is_empty() && all_words(s.as_bytes(), false)
}

/// `[0-9A-Za-z_-]`, 1 or more characters.
pub fn msgid_valid(s: &str) -> bool {
    !s.is_empty() && all_words(s.as_bytes(), true)
}

// Every write checks a msgid and two or three codes; byte by byte with the standard tests that
// was ~10 instructions a byte and a quarter of a settlement's instructions. Eight bytes at a
// time in a `u64` (SWAR) it is about two.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether every byte is in the class, eight at a time; the last word is padded with `'0'`.
fn all_words(s: &[u8], msgid: bool) -> bool {
    let mut chunks = s.chunks_exact(8);
    let mut ok = true;
    for chunk in &mut chunks {
        ok &= word_in_class(
            u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
            msgid,
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [b'0'; 8];
        last[..rest.len()].copy_from_slice(rest);
        ok &= word_in_class(u64::from_le_bytes(last), msgid);
    }
    ok
}

/// Whether all eight bytes are ASCII letters or digits (or, for a msgid, `_` or `-`).
#[inline]
fn word_in_class(word: u64, msgid: bool) -> bool {
    if word & HIGH != 0 {
        return false;
    }
    let mut class =
        bytes_between(word, b'0', b'9') | bytes_between(word | (ONES * 0x20), b'a', b'z');
    if msgid {
        class |= bytes_between(word, b'_', b'_') | bytes_between(word, b'-', b'-');
    }
    class == HIGH
}

/// The high bit of each byte set where `lo <= byte <= hi`, for a word of bytes below 0x80 (so
/// that no sum carries into the next byte).
#[inline]
fn bytes_between(word: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = word + ONES * u64::from(0x80 - lo);
    let above_hi = word + ONES * u64::from(0x7F - hi);
    at_least_lo & !above_hi & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free byte tests accept exactly the bytes the standard tests accept, for
    /// every byte value, alone and inside longer strings.
    #[test]
    fn code_and_msgid_classes_match_the_standard_tests() {
        for b in 0..=255u8 {
            let alnum = b.is_ascii_alphanumeric();
            let Ok(one) = std::str::from_utf8(std::slice::from_ref(&b)) else {
                continue;
            };
            assert_eq!(code_valid(one), alnum, "byte {b:#04x}");
            assert_eq!(msgid_valid(one), alnum || b == b'_' || b == b'-');
            // At every place of every word of strings 1 to 24 bytes long (whole words and a
            // padded last word), among letters and digits.
            for len in 1..=24 {
                for at in 0..len {
                    let mut s: Vec<u8> = (0..len).map(|k| b"aZ09"[k % 4]).collect();
                    s[at] = b;
                    let s = String::from_utf8(s).expect("ASCII");
                    assert_eq!(code_valid(&s), alnum, "byte {b:#04x} at {at} of {len}");
                    let msgid = alnum || b == b'_' || b == b'-';
                    assert_eq!(msgid_valid(&s), msgid, "byte {b:#04x} at {at} of {len}");
                }
            }
        }
        assert!(!code_valid("") && !msgid_valid(""));
        assert!(!code_valid("P12é") && !msgid_valid("m-1é"));
        assert!(msgid_valid("H44010600001_20250520100000-0001"));
    }
}
