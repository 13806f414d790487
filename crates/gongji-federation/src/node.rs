//! One simulated engine: a federated [`State`] whose ops go through the real journal
//! ([`Journal`]) on [`FaultStorage`], under the server's rule that nothing leaves (a bus
//! message, a client's reply) before the ops it follows are durable. A crash loses, keeps or
//! tears the unsynced tail ([`CrashMode`]); the restart replays the journal from op 1 (a
//! federated engine has no snapshots yet) and must pass the state's full check.

use gongji_core::federation::codec::{decode_entry, encode_entry};
use gongji_core::federation::{EngineId, Entry, EntryApplied, FederationConfig, Message};
use gongji_core::{Params, Rejection, State};
use gongji_journal::{CrashMode, FaultStorage, Journal, JournalConfig};

/// The journal's sizes in the simulation: small segments, so that runs cross segment files.
fn journal_config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 256 * 1024,
        body_bytes_max: 64 * 1024,
        batch_bytes_max: 1024 * 1024,
    }
}

/// What a submission came to.
#[derive(Debug)]
pub enum Submitted {
    /// Applied or replayed; its answer waits for the next sync.
    Queued,
    /// Refused: nothing changed, nothing journaled.
    Refused(Rejection),
    /// The storage failed under the append: the engine crashed and restarted.
    Crashed,
}

#[derive(Debug)]
pub struct Node<T> {
    pub id: EngineId,
    pub config: FederationConfig,
    journal: Journal<FaultStorage>,
    pub state: State,
    /// Released by the next successful sync: messages for the bus, answers for clients.
    sends: Vec<Message>,
    answers: Vec<(T, EntryApplied)>,
    /// The outbox as of the last durable op: the relay resends from this, never from the
    /// live state, which may hold exchanges a crash would take back (seed 21 found it).
    outbox: Vec<Message>,
    pub crashes: u64,
    pub ops_journaled: u64,
}

impl<T> Node<T> {
    pub fn new(config: FederationConfig) -> Result<Node<T>, String> {
        let (journal, state) = Self::start(FaultStorage::new(), &config)?;
        Ok(Node {
            id: config.engine,
            config,
            journal,
            outbox: state.fed_outbox(),
            state,
            sends: Vec::new(),
            answers: Vec::new(),
            crashes: 0,
            ops_journaled: 0,
        })
    }

    /// Opens the journal (cutting a torn tail) and replays it from op 1 into a fresh state.
    fn start(
        storage: FaultStorage,
        config: &FederationConfig,
    ) -> Result<(Journal<FaultStorage>, State), String> {
        let (journal, _recovery) = Journal::open(storage, journal_config(), None)
            .map_err(|e| format!("engine {}: journal open: {e}", config.engine))?;
        let mut state = State::new(Params::default());
        state.configure_federation(config.clone())?;
        journal
            .replay(0, |record| {
                let entry = decode_entry(record.body).map_err(|e| e.to_string())?;
                match state.apply_entry(&entry) {
                    Ok(applied) if !applied.replayed => Ok(()),
                    Ok(_) => Err(format!("op {} replayed instead of applying", record.op)),
                    Err(r) => Err(format!("op {} refused on replay: {r:?}", record.op)),
                }
            })
            .map_err(|e| format!("engine {}: replay: {e}", config.engine))?;
        state
            .check()
            .map_err(|e| format!("engine {}: check after replay: {e}", config.engine))?;
        Ok((journal, state))
    }

    /// Applies one entry; an applied op is appended to the journal (not yet synced).
    pub fn submit(&mut self, entry: &Entry, tag: Option<T>) -> Result<Submitted, String> {
        let applied = match self.state.apply_entry(entry) {
            Ok(applied) => applied,
            Err(rejection) => return Ok(Submitted::Refused(rejection)),
        };
        if !applied.replayed {
            let mut bytes = Vec::new();
            encode_entry(entry, &mut bytes);
            if self.journal.append(entry.time(), &bytes).is_err() {
                self.crash(CrashMode::DropUnsynced)?;
                return Ok(Submitted::Crashed);
            }
            self.ops_journaled += 1;
        }
        // A replay's answer waits too: it may show ops not yet durable.
        self.sends.extend(applied.send.iter().cloned());
        if let Some(tag) = tag {
            self.answers.push((tag, applied));
        }
        Ok(Submitted::Queued)
    }

    /// One group commit: makes the batch durable, then releases its messages and answers.
    /// `Ok(None)`: the sync failed and the engine crashed and restarted.
    #[allow(clippy::type_complexity)]
    pub fn sync(
        &mut self,
        crash_mode: CrashMode,
    ) -> Result<Option<(Vec<Message>, Vec<(T, EntryApplied)>)>, String> {
        if self.journal.sync().is_err() {
            self.crash(crash_mode)?;
            return Ok(None);
        }
        // Every applied op is in the journal and now durable: the state is the durable one.
        self.outbox = self.state.fed_outbox();
        let sends = std::mem::take(&mut self.sends);
        let answers = std::mem::take(&mut self.answers);
        Ok(Some((sends, answers)))
    }

    /// What the relay may (re)send now: the exchanges in flight as of the last durable op.
    pub fn durable_outbox(&self) -> &[Message] {
        &self.outbox
    }

    /// The next `writes`-th write or `syncs`-th sync of the storage fails (a crash there).
    pub fn arm_crash(&self, writes: u64, syncs: u64) {
        let storage = self.journal.storage();
        if writes > 0 {
            storage.set_crash_at_write(storage.writes_total() + writes);
        }
        if syncs > 0 {
            storage.set_crash_at_sync(storage.syncs_total() + syncs);
        }
    }

    /// The process dies now: unanswered work is lost, the storage keeps what `mode` says of
    /// its unsynced writes, and the engine restarts from its journal.
    pub fn crash(&mut self, mode: CrashMode) -> Result<(), String> {
        self.sends.clear();
        self.answers.clear();
        let storage = self.journal.storage().after_crash(mode);
        let (journal, state) = Self::start(storage, &self.config)?;
        self.journal = journal;
        self.outbox = state.fed_outbox();
        self.state = state;
        self.crashes += 1;
        Ok(())
    }

    /// A restart from the durable journal must give the live state, byte for byte.
    pub fn check_replay_equals_live(&self) -> Result<(), String> {
        if !self.sends.is_empty() || !self.answers.is_empty() {
            return Err(format!("engine {}: unsynced work at the end", self.id));
        }
        let storage = self.journal.storage().after_crash(CrashMode::DropUnsynced);
        let (_, replayed) = Self::start(storage, &self.config)?;
        if replayed.state_hash() != self.state.state_hash() {
            return Err(format!(
                "engine {}: replay differs from live state",
                self.id
            ));
        }
        Ok(())
    }
}
