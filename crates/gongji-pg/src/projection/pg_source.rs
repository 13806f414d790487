//! The PostgreSQL store's journal table as an [`OpSource`]: `gongji serve --store postgres://…`
//! with `--projection`, and `gongji project --store postgres://…`. Only committed rows are
//! visible, so everything read is durable.

use postgres::Client;

use super::source::{OpSource, SourceError, SourceSnapshot};
use crate::store::{journal_first_op, journal_head, read_journal, read_snapshot_at_most};

/// Reads `gongji_journal` and `gongji_snapshot` of a PostgreSQL store.
pub struct PgJournalSource {
    url: String,
    client: Option<Client>,
}

impl std::fmt::Debug for PgJournalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournalSource")
            .field("url", &crate::redact(&self.url))
            .finish_non_exhaustive()
    }
}

impl PgJournalSource {
    /// Connects now, so that a bad URL or a database without a store is refused at once.
    pub fn new(url: &str) -> Result<Self, SourceError> {
        let mut source = PgJournalSource {
            url: url.to_owned(),
            client: None,
        };
        let client = source.client()?;
        let has_store: bool = client
            .query_one("SELECT to_regclass('gongji_journal') IS NOT NULL", &[])
            .map_err(|e| SourceError::Io(crate::store::describe(&e)))?
            .get(0);
        if !has_store {
            return Err(SourceError::Io(format!(
                "{} holds no gongji journal (was it served with --store?)",
                crate::redact(url)
            )));
        }
        Ok(source)
    }

    fn client(&mut self) -> Result<&mut Client, SourceError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let client = crate::connect(&self.url).map_err(|e| {
                SourceError::Io(format!(
                    "{}: {}",
                    crate::redact(&self.url),
                    crate::store::describe(&e)
                ))
            })?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected"))
    }

    /// A failed call drops the connection; the next call reconnects.
    fn fail(&mut self, e: gongji_server::ServerError) -> SourceError {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        SourceError::Io(e.to_string())
    }
}

impl OpSource for PgJournalSource {
    fn read(&mut self, after: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, SourceError> {
        let read = read_journal(self.client()?, after, None, max);
        match read {
            Ok(records) => Ok(records.into_iter().map(|r| (r.op, r.body)).collect()),
            Err(e) => {
                let first = journal_first_op(self.client()?).map_err(|e| self.fail(e))?;
                match first {
                    Some(first_op) if first_op > after + 1 => {
                        Err(SourceError::Gone { after, first_op })
                    }
                    _ => match e {
                        gongji_server::ServerError::Corrupt(what) => {
                            Err(SourceError::Damaged(what))
                        }
                        other => Err(self.fail(other)),
                    },
                }
            }
        }
    }

    fn head(&mut self) -> Result<Option<u64>, SourceError> {
        let head = journal_head(self.client()?);
        head.map(|a| a.map(|a| a.op)).map_err(|e| self.fail(e))
    }

    fn snapshot(&mut self, at_most: u64) -> Result<Option<SourceSnapshot>, SourceError> {
        let snapshot = read_snapshot_at_most(self.client()?, at_most);
        match snapshot {
            Ok(found) => Ok(found.map(|(op, chain_hash, body)| SourceSnapshot {
                op,
                chain_hash,
                body,
            })),
            Err(e) => Err(self.fail(e)),
        }
    }
}
