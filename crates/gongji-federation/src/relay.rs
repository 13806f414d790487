//! The relay over NATS JetStream (issue 14): a stream per destination engine
//! (`GJFED_<engine>`, subject `gongji.fed.<engine>`, file storage), a durable pull consumer
//! per engine with explicit acks, and `Nats-Msg-Id` set from the exchange id and the message
//! kind, so that the server drops a resend inside its duplicate window.
//!
//! The bus is allowed to lose, duplicate, reorder and delay: [`pump`] acknowledges a message
//! only after the op it became is durable on the receiving engine (a crash before that leaves
//! it to be redelivered), and the sending engine resends its durable outbox
//! ([`resend_outbox`]) until the outcome is journaled. A message that does not decode, or that
//! the engine refuses (forged, for another engine), is acknowledged so that it is not
//! redelivered for ever, and counted; it changed nothing.
//!
//! Built and tested against a real `nats-server` with in-process engines ([`Node`]); the
//! federated `gongji serve` runs it through [`crate::serve`].

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use futures_util::StreamExt;
use gongji_core::federation::codec::{decode_message, encode_message};
use gongji_core::federation::{EngineId, Entry, FedOp, Message};

use crate::node::{Node, Submitted};

/// Messages fetched per pump at most.
pub const FETCH_MESSAGES_MAX: usize = 256;

/// Publishes sent before their acknowledgements are awaited, at most. async-nats lets a
/// JetStream context have 5,000 publishes unacknowledged and makes the next one wait for a
/// permit, without a timeout, until an acknowledgement is awaited: a [`NatsRelay::publish_many`]
/// of more messages than that, which awaited its acknowledgements only after sending them
/// all, waited for ever. That was the three-node `chaos` run's "not quiescent" (a resend of
/// 6,404 exchanges in flight, after the bus had been slow; every relay stuck, no error).
pub const PUBLISH_ACKS_PENDING_MAX: usize = 1_024;

/// How long a JetStream API request (a stream's or the consumer's info or creation, which
/// [`NatsRelay::connect_with`] makes) waits for its answer; async-nats's default is 10 s.
/// A request sent while a cluster has no leader (its quorum lost, or a node just back) is
/// never answered, and every such wait held the relay that long after the cluster was whole
/// again (three-engine `chaos` runs with `--nats-quorum-loss`: `stream: jetstream request
/// timed out` 10 s after the connect began, the quorum back for 9 s of them).
/// A connect that fails is tried again a second later.
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A failure of the transport (not of an engine): the caller retries later.
#[derive(Debug)]
pub struct RelayError(pub String);

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "relay: {}", self.0)
    }
}

impl std::error::Error for RelayError {}

fn err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> RelayError + '_ {
    move |e| RelayError(format!("{what}: {e}"))
}

pub fn subject(engine: EngineId) -> String {
    format!("gongji.fed.{engine}")
}

/// `Nats-Msg-Id`: the same message gets the same id, whoever sends it and however often
/// (`<xid>.prepare`, `.block`, `.<outcome>`; a binding's `<bxid>.bind`, `.unbind`,
/// `.bind-active`, `.bind-refused`, `.bind-revoked`; the duplicate window is per destination
/// stream, so the two sides' `unbind` of one binding do not meet; a forgetting claim's
/// `<from>-<to>.closed-through.<days>` and its answer's `.forget-through.`).
pub fn message_id(m: &Message) -> String {
    m.bus_id()
}

/// One engine's connection: it publishes to any engine's stream and consumes its own.
#[derive(Debug)]
pub struct NatsRelay {
    engine: EngineId,
    js: jetstream::Context,
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

/// What a pump did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PumpStats {
    pub delivered: u64,
    pub damaged: u64,
    pub refused: u64,
    pub published: u64,
    /// Publishes the server recognised as duplicates (`Nats-Msg-Id`).
    pub deduplicated: u64,
}

impl NatsRelay {
    /// Connects and makes sure `engine`'s stream and consumer exist (and the peers' streams,
    /// so that a publish never waits for a stream that is not there).
    pub async fn connect(
        url: &str,
        engine: EngineId,
        peers: &[EngineId],
    ) -> Result<NatsRelay, RelayError> {
        NatsRelay::connect_with(url, engine, peers, 1).await
    }

    /// [`NatsRelay::connect`] to `url`, which may list the servers of a cluster separated by
    /// commas (the client fails over between them), creating missing streams with `replicas`
    /// copies (3 on a three-node JetStream cluster, so that a node's loss loses nothing and
    /// stops nothing). A stream that exists is used as it is.
    pub async fn connect_with(
        url: &str,
        engine: EngineId,
        peers: &[EngineId],
        replicas: usize,
    ) -> Result<NatsRelay, RelayError> {
        let urls: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(API_REQUEST_TIMEOUT))
            .retry_on_initial_connect()
            .connect(urls)
            .await
            .map_err(|e| err("connect")(&e))?;
        let js = jetstream::new(client);
        for &e in std::iter::once(&engine).chain(peers) {
            js.get_or_create_stream(stream::Config {
                name: format!("GJFED_{e}"),
                subjects: vec![subject(e)],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                num_replicas: replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| err("stream")(&e))?;
        }
        let own = js
            .get_stream(format!("GJFED_{engine}"))
            .await
            .map_err(|e| err("stream")(&e))?;
        let consumer = own
            .get_or_create_consumer(
                &format!("engine-{engine}"),
                pull::Config {
                    durable_name: Some(format!("engine-{engine}")),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(2),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err("consumer")(&e))?;
        Ok(NatsRelay {
            engine,
            js,
            consumer,
        })
    }

    /// Publishes one message and waits for the server's acknowledgement (stored). Returns
    /// whether the server found it a duplicate.
    pub async fn publish(&self, m: &Message) -> Result<bool, RelayError> {
        let mut bytes = Vec::new();
        encode_message(m, &mut bytes);
        self.publish_bytes(m.to(), &message_id(m), bytes).await
    }

    /// Publishes several messages, up to [`PUBLISH_ACKS_PENDING_MAX`] sent before their
    /// acknowledgements are awaited (the server's fsync of one overlaps the next's send).
    /// Returns how many were duplicates.
    ///
    /// With `resend`, each `Nats-Msg-Id` gets it as a suffix: a resend must not be dropped by
    /// the server's duplicate window (the first send may have been taken in by an engine that
    /// then crashed before its answer left); the receiving engine answers it from its record.
    pub async fn publish_many(
        &self,
        ms: &[Message],
        resend: Option<&str>,
    ) -> Result<u64, RelayError> {
        let mut duplicates = 0;
        for chunk in ms.chunks(PUBLISH_ACKS_PENDING_MAX) {
            let mut acks = Vec::with_capacity(chunk.len());
            for m in chunk {
                let mut bytes = Vec::new();
                encode_message(m, &mut bytes);
                let id = match resend {
                    None => message_id(m),
                    Some(suffix) => format!("{}.{suffix}", message_id(m)),
                };
                let publish = jetstream::message::PublishMessage::build()
                    .payload(bytes.into())
                    .message_id(id);
                let ack = self
                    .js
                    .send_publish(subject(m.to()), publish)
                    .await
                    .map_err(|e| err("publish")(&e))?;
                acks.push(ack);
            }
            for ack in acks {
                let ack = ack.await.map_err(|e| err("publish ack")(&e))?;
                duplicates += u64::from(ack.duplicate);
            }
        }
        Ok(duplicates)
    }

    /// Fetches up to `max` messages for this engine, waiting at most `wait` for the first.
    pub async fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<jetstream::Message>, RelayError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| err("fetch")(&e))?;
        let mut out = Vec::new();
        while let Some(message) = batch.next().await {
            out.push(message.map_err(|e| err("fetch")(&e))?);
        }
        Ok(out)
    }

    /// This engine's messages as a continuous pull (the client keeps requests outstanding, so
    /// a message arrives as soon as it is stored).
    pub async fn messages(&self) -> Result<pull::Stream, RelayError> {
        self.consumer
            .messages()
            .await
            .map_err(|e| err("messages")(&e))
    }

    pub fn engine(&self) -> EngineId {
        self.engine
    }

    /// Publishes raw bytes (tests send damaged and forged ones through the real bus).
    pub async fn publish_bytes(
        &self,
        to: EngineId,
        id: &str,
        bytes: Vec<u8>,
    ) -> Result<bool, RelayError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(bytes.into())
            .message_id(id);
        let ack = self
            .js
            .send_publish(subject(to), publish)
            .await
            .map_err(|e| err("publish")(&e))?
            .await
            .map_err(|e| err("publish ack")(&e))?;
        Ok(ack.duplicate)
    }
}

/// One round of an engine's relay: fetch what the bus holds for it, journal each message as
/// an op, sync, then (only then) acknowledge them and publish what the batch released.
pub async fn pump<T>(
    node: &mut Node<T>,
    relay: &NatsRelay,
    time: i64,
) -> Result<PumpStats, RelayError> {
    assert_eq!(node.id, relay.engine, "a relay serves its own engine");
    let mut stats = PumpStats::default();
    let mut batch = relay
        .consumer
        .fetch()
        .max_messages(FETCH_MESSAGES_MAX)
        .expires(Duration::from_millis(100))
        .messages()
        .await
        .map_err(|e| err("fetch")(&e))?;
    let mut to_ack = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.map_err(|e| err("fetch")(&e))?;
        let msg = match decode_message(&message.payload) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!(engine = %node.id, "damaged federation message refused: {e}");
                stats.damaged += 1;
                message.ack().await.map_err(|e| err("ack")(&e))?;
                continue;
            }
        };
        let time = time.max(node.state.clock());
        let entry = Entry::Fed(FedOp::Deliver { time, msg });
        match node.submit(&entry, None).map_err(RelayError)? {
            Submitted::Queued => {
                stats.delivered += 1;
                to_ack.push(message);
            }
            Submitted::Refused(r) => {
                tracing::warn!(engine = %node.id, "federation message refused: {r:?}");
                stats.refused += 1;
                message.ack().await.map_err(|e| err("ack")(&e))?;
            }
            // The engine restarted: unacknowledged messages come back after `ack_wait`.
            Submitted::Crashed => return Ok(stats),
        }
    }
    let Some((sends, _answers)) = node
        .sync(gongji_journal::CrashMode::DropUnsynced)
        .map_err(RelayError)?
    else {
        return Ok(stats);
    };
    for message in to_ack {
        message.ack().await.map_err(|e| err("ack")(&e))?;
    }
    for m in &sends {
        stats.published += 1;
        stats.deduplicated += u64::from(relay.publish(m).await?);
    }
    Ok(stats)
}

/// The resend: every exchange in flight as of the last durable op, until answered.
pub async fn resend_outbox<T>(node: &Node<T>, relay: &NatsRelay) -> Result<PumpStats, RelayError> {
    let mut stats = PumpStats::default();
    for m in node.durable_outbox() {
        stats.published += 1;
        stats.deduplicated += u64::from(relay.publish(m).await?);
    }
    Ok(stats)
}
