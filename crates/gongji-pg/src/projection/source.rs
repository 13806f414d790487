//! Where the projector reads the journal: a small trait, so that the file journal of a data
//! directory and the PostgreSQL store both feed it.

/// A snapshot: the op it reflects, the journal's chain hash after that op, and the bytes of
/// [`gongji_core::State::encode_snapshot`].
#[derive(Clone, Debug)]
pub struct SourceSnapshot {
    pub op: u64,
    pub chain_hash: [u8; 32],
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum SourceError {
    /// Op `after + 1` is no longer held (the journal was trimmed after a snapshot); the oldest
    /// op held is `first_op`.
    Gone {
        after: u64,
        first_op: u64,
    },
    /// The source holds bytes that do not verify.
    Damaged(String),
    Io(String),
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Gone { after, first_op } => write!(
                f,
                "the journal no longer holds op {} (its oldest op is {first_op})",
                after + 1
            ),
            SourceError::Damaged(what) => write!(f, "journal damaged: {what}"),
            SourceError::Io(what) => write!(f, "journal read: {what}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// The journal as the projector reads it. The projector checks op continuity and computes
/// the chain hash itself (`gongji_journal::format::chain_next` over op, the op's time and
/// its bytes), so a source only hands out what it stores.
pub trait OpSource: Send {
    /// Up to `max` ops after `after`, in order, as `(op, encode_op bytes)`: fewer or none when
    /// the source holds no more yet. Only durable ops.
    fn read(&mut self, after: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, SourceError>;

    /// The newest durable op, when the source knows it cheaply (for the lag metric).
    fn head(&mut self) -> Result<Option<u64>, SourceError>;

    /// The newest snapshot with op ≤ `at_most`, if the source has one.
    fn snapshot(&mut self, at_most: u64) -> Result<Option<SourceSnapshot>, SourceError>;

    /// Attaches the history files a decoded snapshot's cold chunks are in
    /// (`gongji_server::HistoryDir`). A source without history files refuses a snapshot that
    /// needs them.
    fn attach_history(&mut self, state: &mut gongji_core::State) -> Result<(), SourceError> {
        match state.cold_missing().is_empty() {
            true => Ok(()),
            false => Err(SourceError::Damaged(
                "the snapshot's history is in files this source cannot read".into(),
            )),
        }
    }
}

/// A boxed source is a source, so that a command picks the journal's store at run time.
impl<S: OpSource + ?Sized> OpSource for Box<S> {
    fn read(&mut self, after: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, SourceError> {
        (**self).read(after, max)
    }

    fn head(&mut self) -> Result<Option<u64>, SourceError> {
        (**self).head()
    }

    fn snapshot(&mut self, at_most: u64) -> Result<Option<SourceSnapshot>, SourceError> {
        (**self).snapshot(at_most)
    }

    fn attach_history(&mut self, state: &mut gongji_core::State) -> Result<(), SourceError> {
        (**self).attach_history(state)
    }
}
