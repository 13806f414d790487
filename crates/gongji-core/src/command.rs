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
    Reverse {
        omsgid: Msgid,
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
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `[0-9A-Za-z_-]`, 1 or more characters.
pub fn msgid_valid(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
