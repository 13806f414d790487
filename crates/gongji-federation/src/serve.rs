//! The relay of a served engine (`gongji serve` with `[federation]`): the same JetStream
//! streams and consumer as [`crate::relay`], between a real [`Engine`] and the bus.
//!
//! Two tasks, both joined by [`RelayHandle::stop`]:
//!
//! - the *sender* publishes what durable ops released (the writer's sync thread queues a
//!   batch's messages only after the batch's sync: [`Engine::take_fed_sends`]) and resends
//!   the outbox as of a durable op until each exchange's outcome is journaled: an exchange is
//!   resent `resend_first` after the relay first sees it in the outbox, then at doubling
//!   intervals up to `resend_max` (an exchange may wait a day for its receiver: a steady
//!   trickle, not a flood). A resend carries a fresh `Nats-Msg-Id`, so that the server's
//!   duplicate window does not drop it: the first send may have reached an engine that crashed
//!   before its answer left, and only a new delivery makes it answer again;
//! - the *receiver* pulls this engine's messages continuously (a message arrives as soon as
//!   the server stored it), takes a burst of them (what is ready, up to
//!   [`FETCH_MESSAGES_MAX`]), submits them as `Deliver` ops in one submission, and acknowledges each only once the writer answered it, which it does only
//!   after the op is durable. A message that does not decode, or that the engine refuses
//!   (forged, for another engine, contradicting its record), is acknowledged too, so that it is
//!   not redelivered for ever; it is logged and counted and changed nothing.
//!
//! Connection failures (the server is down, restarting, partitioned) are retried every second
//! for ever: the journals and the outbox make up for whatever the bus lost meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gongji_core::federation::codec::decode_message;
use gongji_core::federation::{EngineId, FedOp, FederationConfig, Message};
use gongji_server::{Engine, FedRequest, SubmitError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::relay::{NatsRelay, RelayError, FETCH_MESSAGES_MAX};

/// How a served engine's relay runs.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The server, or a cluster's servers separated by commas.
    pub url: String,
    /// Copies of each stream the relay creates (`[federation] nats_replicas`).
    pub replicas: usize,
    /// How often the outbox is looked at for resends.
    pub resend_every: Duration,
    /// The first resend of an exchange, and the longest interval between two.
    pub resend_first: Duration,
    pub resend_max: Duration,
    /// How often the periodic forgetting step is looked at (docs/FEDERATION.md,
    /// "Forgetting"): a `Forget` op is submitted only when one is due at the engine's clock.
    pub forget_every: Duration,
}

impl RelayOptions {
    pub fn new(url: impl Into<String>) -> RelayOptions {
        RelayOptions {
            url: url.into(),
            replicas: 1,
            resend_every: Duration::from_millis(500),
            resend_first: Duration::from_secs(1),
            resend_max: Duration::from_secs(30),
            forget_every: Duration::from_secs(60),
        }
    }
}

/// The relay's two tasks; [`RelayHandle::stop`] ends and joins them.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RelayHandle {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the relay of `engine` (a federated one) on the current tokio runtime.
pub fn spawn(engine: Arc<Engine>, config: &FederationConfig, opts: RelayOptions) -> RelayHandle {
    let (stop, stopped) = watch::channel(false);
    let peers: Vec<EngineId> = config.peers.keys().copied().collect();
    let me = config.engine;
    let sender = {
        let (engine, opts, peers, stopped) =
            (engine.clone(), opts.clone(), peers.clone(), stopped.clone());
        tokio::spawn(async move { sender(engine, me, peers, opts, stopped).await })
    };
    let receiver = tokio::spawn(async move { receiver(engine, me, peers, opts, stopped).await });
    RelayHandle {
        stop,
        tasks: vec![sender, receiver],
    }
}

/// Connects, retrying every second until connected or stopped.
async fn connect(
    opts: &RelayOptions,
    me: EngineId,
    peers: &[EngineId],
    stopped: &mut watch::Receiver<bool>,
) -> Option<NatsRelay> {
    loop {
        if *stopped.borrow() {
            return None;
        }
        match NatsRelay::connect_with(&opts.url, me, peers, opts.replicas).await {
            Ok(relay) => return Some(relay),
            Err(e) => tracing::warn!(engine = %me, error = %e, "federation relay: no bus yet"),
        }
        if pause(stopped, Duration::from_secs(1)).await {
            return None;
        }
    }
}

/// Sleeps `d`; true when stopped meanwhile.
async fn pause(stopped: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

async fn sender(
    engine: Arc<Engine>,
    me: EngineId,
    peers: Vec<EngineId>,
    opts: RelayOptions,
    mut stopped: watch::Receiver<bool>,
) {
    let mut unsent: Vec<Message> = Vec::new();
    let mut backoff = Backoff::default();
    'connect: while let Some(relay) = connect(&opts, me, &peers, &mut stopped).await {
        let mut resend = tokio::time::interval(opts.resend_every);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first step one period after connecting, not at once.
        let first = tokio::time::Instant::now() + opts.forget_every;
        let mut forget = tokio::time::interval_at(first, opts.forget_every);
        forget.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            unsent.extend(engine.take_fed_sends());
            if !unsent.is_empty() {
                match relay.publish_many(&unsent, None).await {
                    Ok(_) => {
                        metrics::counter!("gongji_fed_published_total")
                            .increment(unsent.len() as u64);
                        unsent.clear();
                    }
                    Err(e) => {
                        // Kept, and sent again once connected (or recovered by the resend).
                        tracing::warn!(engine = %me, error = %e, "federation relay: publish failed");
                        if pause(&mut stopped, Duration::from_secs(1)).await {
                            return;
                        }
                        continue 'connect;
                    }
                }
            }
            tokio::select! {
                () = engine.fed_sends_ready() => {}
                _ = resend.tick() => {
                    match resend_outbox(&engine, &relay, &mut backoff, &opts).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(engine = %me, error = %e, "federation relay: resend failed");
                            continue 'connect;
                        }
                    }
                }
                _ = forget.tick() => {
                    if !forget_step(&engine, me).await {
                        return;
                    }
                }
                _ = stopped.changed() => return,
            }
        }
    }
}

/// The periodic forgetting step, beside the resend as the idle tick is beside the writer
/// (it closes 06:00 expiries while idle): when one is due at the engine's clock (which the
/// idle tick keeps current), one `Forget` op through the writer; the `ClosedThrough` claims
/// it makes leave as any op's messages do, once durable, and are resent from the outbox
/// until answered. False when the engine stopped.
async fn forget_step(engine: &Engine, me: EngineId) -> bool {
    if !engine.read(|s| s.fed_forget_due(s.clock())) {
        return true;
    }
    let request = FedRequest {
        inf_time: None,
        op: FedOp::Forget { time: 0 },
    };
    let rx = match engine.submit_fed(vec![request]) {
        Ok(rx) => rx,
        // Full: the next tick tries again.
        Err(SubmitError::Overloaded) => return true,
        Err(SubmitError::Stopped) => return false,
    };
    let Ok(results) = rx.await else {
        return false;
    };
    for result in results {
        match result {
            Ok(applied) => {
                tracing::info!(engine = %me, reply = ?applied.reply, "federation: forgetting step")
            }
            // The writer's time moved on past what was due (nothing left to do): harmless.
            Err(r) => tracing::debug!(engine = %me, "federation: forgetting step refused: {r:?}"),
        }
    }
    true
}

/// When each exchange in the outbox is resent next (relay memory: a restart starts afresh,
/// which only resends sooner).
#[derive(Default)]
struct Backoff {
    /// Per exchange and message kind (a reversal turns Prepare into Block): the next resend
    /// and the interval after it.
    next: BTreeMap<String, (Instant, Duration)>,
    /// Resend rounds published, for unique `Nats-Msg-Id`s within this process.
    round: u64,
}

/// Publishes the outbox messages due (the outbox as of an op that is durable). False when the
/// engine stopped.
async fn resend_outbox(
    engine: &Engine,
    relay: &NatsRelay,
    backoff: &mut Backoff,
    opts: &RelayOptions,
) -> Result<bool, RelayError> {
    let (outbox, seen) = engine.read(|s| (s.fed_outbox(), s.op_count()));
    if engine.durable(seen).await.is_err() {
        return Ok(false);
    }
    let now = Instant::now();
    let mut next = BTreeMap::new();
    let mut due = Vec::new();
    for m in outbox {
        let id = crate::relay::message_id(&m);
        let (at, step) = backoff
            .next
            .remove(&id)
            .unwrap_or((now + opts.resend_first, opts.resend_first));
        if at <= now {
            let step = (step * 2).min(opts.resend_max);
            next.insert(id, (now + step, step));
            due.push(m);
        } else {
            next.insert(id, (at, step));
        }
    }
    // Closed exchanges leave the outbox and the schedule.
    backoff.next = next;
    if !due.is_empty() {
        backoff.round += 1;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let suffix = format!("r{stamp:x}{}", backoff.round);
        relay.publish_many(&due, Some(&suffix)).await?;
        for m in &due {
            metrics::counter!("gongji_fed_resends_total", "peer" => m.to().to_string())
                .increment(1);
        }
    }
    Ok(true)
}

async fn receiver(
    engine: Arc<Engine>,
    me: EngineId,
    peers: Vec<EngineId>,
    opts: RelayOptions,
    mut stopped: watch::Receiver<bool>,
) {
    use futures_util::{FutureExt, StreamExt};
    'connect: while let Some(relay) = connect(&opts, me, &peers, &mut stopped).await {
        let mut stream = match relay.messages().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(engine = %me, error = %e, "federation relay: no consumer");
                if pause(&mut stopped, Duration::from_secs(1)).await {
                    return;
                }
                continue 'connect;
            }
        };
        loop {
            // Wait for one message, then take what else is ready (up to a batch) without
            // waiting: one submission, one sync, for a burst.
            let first = tokio::select! {
                next = stream.next() => next,
                _ = stopped.changed() => return,
            };
            let mut messages = Vec::new();
            let mut next = first;
            loop {
                match next {
                    Some(Ok(message)) => messages.push(message),
                    Some(Err(e)) => {
                        tracing::warn!(engine = %me, error = %e, "federation relay: pull failed");
                        break;
                    }
                    None => break,
                }
                if messages.len() == FETCH_MESSAGES_MAX {
                    break;
                }
                match stream.next().now_or_never() {
                    Some(n) => next = n,
                    None => break,
                }
            }
            if messages.is_empty() {
                // The pull ended or failed: connect again.
                if pause(&mut stopped, Duration::from_secs(1)).await {
                    return;
                }
                continue 'connect;
            }
            match deliver(&engine, me, messages).await {
                Ok(()) => {}
                Err(Stop::Engine) => return,
                Err(Stop::Bus(e)) => {
                    tracing::warn!(engine = %me, error = %e, "federation relay: ack failed");
                    continue 'connect;
                }
                Err(Stop::Busy) => {
                    // Not acknowledged: the bus redelivers after its ack wait.
                    if pause(&mut stopped, Duration::from_millis(200)).await {
                        return;
                    }
                }
            }
        }
    }
}

enum Stop {
    Engine,
    Busy,
    Bus(String),
}

/// Journals a fetched batch as `Deliver` ops, then acknowledges each message.
async fn deliver(
    engine: &Engine,
    me: EngineId,
    messages: Vec<async_nats::jetstream::Message>,
) -> Result<(), Stop> {
    let mut requests = Vec::with_capacity(messages.len());
    let mut taken = Vec::with_capacity(messages.len());
    let mut damaged = Vec::new();
    for message in messages {
        match decode_message(&message.payload) {
            Ok(msg) => {
                requests.push(FedRequest {
                    inf_time: None,
                    op: FedOp::Deliver { time: 0, msg },
                });
                taken.push(message);
            }
            Err(e) => {
                tracing::warn!(engine = %me, "damaged federation message refused: {e}");
                metrics::counter!("gongji_fed_refused_total", "why" => "damaged").increment(1);
                damaged.push(message);
            }
        }
    }
    if !requests.is_empty() {
        let rx = engine.submit_fed(requests).map_err(|e| match e {
            SubmitError::Overloaded => Stop::Busy,
            SubmitError::Stopped => Stop::Engine,
        })?;
        let results = rx.await.map_err(|_| Stop::Engine)?;
        for result in &results {
            match result {
                Ok(_) => metrics::counter!("gongji_fed_delivered_total").increment(1),
                Err(r) => {
                    tracing::warn!(engine = %me, "federation message refused: {r:?}");
                    metrics::counter!("gongji_fed_refused_total", "why" => "refused").increment(1);
                }
            }
        }
    }
    // Every op is durable (the writer answered): acknowledge, refused and damaged ones too.
    for message in taken.iter().chain(&damaged) {
        message.ack().await.map_err(|e| Stop::Bus(e.to_string()))?;
    }
    Ok(())
}
