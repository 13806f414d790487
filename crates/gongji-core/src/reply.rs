//! What `apply` answers: a [`Reply`] (kept for idempotent replay) or a [`Rejection`].

use crate::state::views::{ContributionView, InstitutionView, PersonView, TransferView};
use crate::Fen;

/// The stable `err_code`s of the API. A closed set: rejections are data, not errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrCode {
    BadRequest,
    InvalidAmount,
    InvalidCertno,
    InvalidAdmdvs,
    InvalidInsutype,
    InvalidPeriod,
    InvalidTime,
    Unauthorized,
    Forbidden,
    PersonNotFound,
    InstitutionNotFound,
    SettlementNotFound,
    BindingNotFound,
    NotFound,
    MsgidConflict,
    PersonExists,
    InstitutionExists,
    BindingExists,
    AlreadyCredited,
    AlreadyCancelled,
    AlreadyRevoked,
    AlreadyPaid,
    Reversed,
    NotPending,
    TooLarge,
    RelationNotEligible,
    GiverNotEmployeeInsured,
    SelfBinding,
    BindingLimit,
    NotBound,
    CrossProvinceNotAllowed,
    InsufficientBalance,
    FundExceedsMedfee,
    PersonSuspended,
    NotResidentInsured,
    NoPersonalAccount,
    WalletNotOpen,
    WalletAmountLimit,
    WalletDailyLimit,
    WalletClosedHours,
    NotReversible,
    DuplicateItem,
    Overloaded,
}

impl ErrCode {
    pub fn as_str(self) -> &'static str {
        use ErrCode::*;
        match self {
            BadRequest => "BAD_REQUEST",
            InvalidAmount => "INVALID_AMOUNT",
            InvalidCertno => "INVALID_CERTNO",
            InvalidAdmdvs => "INVALID_ADMDVS",
            InvalidInsutype => "INVALID_INSUTYPE",
            InvalidPeriod => "INVALID_PERIOD",
            InvalidTime => "INVALID_TIME",
            Unauthorized => "UNAUTHORIZED",
            Forbidden => "FORBIDDEN",
            PersonNotFound => "PERSON_NOT_FOUND",
            InstitutionNotFound => "INSTITUTION_NOT_FOUND",
            SettlementNotFound => "SETTLEMENT_NOT_FOUND",
            BindingNotFound => "BINDING_NOT_FOUND",
            NotFound => "NOT_FOUND",
            MsgidConflict => "MSGID_CONFLICT",
            PersonExists => "PERSON_EXISTS",
            InstitutionExists => "INSTITUTION_EXISTS",
            BindingExists => "BINDING_EXISTS",
            AlreadyCredited => "ALREADY_CREDITED",
            AlreadyCancelled => "ALREADY_CANCELLED",
            AlreadyRevoked => "ALREADY_REVOKED",
            AlreadyPaid => "ALREADY_PAID",
            Reversed => "REVERSED",
            NotPending => "NOT_PENDING",
            TooLarge => "TOO_LARGE",
            RelationNotEligible => "RELATION_NOT_ELIGIBLE",
            GiverNotEmployeeInsured => "GIVER_NOT_EMPLOYEE_INSURED",
            SelfBinding => "SELF_BINDING",
            BindingLimit => "BINDING_LIMIT",
            NotBound => "NOT_BOUND",
            CrossProvinceNotAllowed => "CROSS_PROVINCE_NOT_ALLOWED",
            InsufficientBalance => "INSUFFICIENT_BALANCE",
            FundExceedsMedfee => "FUND_EXCEEDS_MEDFEE",
            PersonSuspended => "PERSON_SUSPENDED",
            NotResidentInsured => "NOT_RESIDENT_INSURED",
            NoPersonalAccount => "NO_PERSONAL_ACCOUNT",
            WalletNotOpen => "WALLET_NOT_OPEN",
            WalletAmountLimit => "WALLET_AMOUNT_LIMIT",
            WalletDailyLimit => "WALLET_DAILY_LIMIT",
            WalletClosedHours => "WALLET_CLOSED_HOURS",
            NotReversible => "NOT_REVERSIBLE",
            DuplicateItem => "DUPLICATE_ITEM",
            Overloaded => "OVERLOADED",
        }
    }

    pub fn http_status(self) -> u16 {
        use ErrCode::*;
        match self {
            BadRequest | InvalidAmount | InvalidCertno | InvalidAdmdvs | InvalidInsutype
            | InvalidPeriod | InvalidTime => 400,
            Unauthorized => 401,
            Forbidden => 403,
            PersonNotFound | InstitutionNotFound | SettlementNotFound | BindingNotFound
            | NotFound => 404,
            MsgidConflict | PersonExists | InstitutionExists | BindingExists | AlreadyCredited
            | AlreadyCancelled | AlreadyRevoked | AlreadyPaid | Reversed | NotPending => 409,
            TooLarge => 413,
            Overloaded => 503,
            _ => 422,
        }
    }
}

/// A refused command: the code, and for batch items the index of the item that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrCode,
    pub item: Option<u32>,
    /// A short English hint for `err_msg` (which field, which rule).
    pub detail: &'static str,
}

impl Rejection {
    pub fn new(code: ErrCode) -> Rejection {
        Rejection {
            code,
            item: None,
            detail: "",
        }
    }

    pub fn with(code: ErrCode, detail: &'static str) -> Rejection {
        Rejection {
            code,
            item: None,
            detail,
        }
    }

    pub fn at_item(mut self, index: usize) -> Rejection {
        self.item = Some(index as u32);
        self
    }

    /// Human text for `err_msg`.
    pub fn message(&self) -> String {
        let mut msg = self.code.as_str().to_ascii_lowercase().replace('_', " ");
        if !self.detail.is_empty() {
            msg.push_str(": ");
            msg.push_str(self.detail);
        }
        if let Some(item) = self.item {
            msg.push_str(&format!(" (item {item})"));
        }
        msg
    }
}

impl From<ErrCode> for Rejection {
    fn from(code: ErrCode) -> Rejection {
        Rejection::new(code)
    }
}

/// Result of a reversal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReversalResult {
    Cancelled,
    Blocked,
}

/// The reply of an applied write, remembered under its msgid so that a replay answers the same
/// bytes. Hot variants refer to immutable records by index (no allocation); rare ones keep a
/// boxed copy of the view as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    TokenCreated {
        token_id: u64,
    },
    TokenRevoked {
        token_id: u64,
    },
    /// An enrolment: the index of the person enrolled. The reply is the person as enrolled
    /// (active, zero balances, no wallet, no bindings), which the person's immutable fields
    /// determine: see [`crate::State::enrolled_view`].
    Enrolled(u32),
    /// A status change or a wallet opening: the person as it was right after.
    Person(Box<PersonView>),
    Institution(Box<InstitutionView>),
    Credited {
        count: u32,
        sum: Fen,
    },
    /// A binding made or revoked: the binding's index, its priority at that moment and whether
    /// it is active. The other fields are immutable: see [`crate::State::bound_view`].
    Bound {
        binding: u32,
        priority: u32,
        active: bool,
    },
    /// Index of the settlement record (setl_id − 1).
    Settled(u32),
    /// Index of the cancelled settlement record.
    Cancelled(u32),
    Reversal {
        omsgid: Box<crate::Msgid>,
        result: ReversalResult,
    },
    Transfer(Box<TransferView>),
    Contribution(Box<ContributionView>),
    /// A clock tick; `expired` transfers were returned.
    Tick {
        expired: u32,
    },
}
