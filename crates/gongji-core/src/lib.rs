//! `gongji-core`: the deterministic state machine of family mutual aid (个人账户家庭共济).
//!
//! [`State`] owns every person, account, wallet, binding, settlement, wallet transfer,
//! contribution, token, idempotency record and statistics counter. [`State::apply`] takes one
//! [`Op`] (a [`Command`] with its msgid, time and actor, or a clock [`Op::Tick`]) and returns a
//! [`Reply`] or a [`Rejection`]. A rejection changes nothing. Queries ([`State::person`],
//! [`State::entries`], [`State::stats`], …) read the state and return plain views that the HTTP
//! layer renders.
//!
//! The crate does no IO, reads no clock and uses no randomness: time arrives with each op, so
//! the same ops from the same starting state give the same state, byte for byte
//! ([`State::state_hash`]). Money is [`Fen`]: integer fen with checked arithmetic.

pub mod certno;
pub mod codec;
pub mod command;
pub mod federation;
pub mod money;
pub mod params;
pub mod reply;
mod state;
pub mod time;

pub use command::{
    Actor, Body, Command, CreditItem, InstCode, InstType, Insutype, Msgid, MsgidScope, Op,
    PersonStatus, PsnNo, Relation, Role, TransferSource,
};
pub use money::Fen;
pub use params::Params;
pub use reply::{ErrCode, Rejection, Reply};
pub use state::views;
pub use state::{
    validate as validate_command, Applied, ColdBytes, Column, EncodedMsgids, Frozen, MsgidSection,
    SectionBytes, SharedBytes, SnapshotDecodeError, State, HISTORY_CHUNK,
};
pub use state::{
    BindingRow, ContributionRow, EntryRow, ExchangeRow, InstitutionRow, PersonMoney, PersonRow,
    Settlement, SettlementRow, TransferRow,
};
