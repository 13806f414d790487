//! The snapshot codec's tests: round trips, every truncation, corruption, hostile structure.

use super::bytes::Enc;
use super::msgids::{encode_binding_view, REPLY_BINDING_VIEW, REPLY_BOUND};
use super::*;
use crate::certno::certno_with_check;
use crate::command::{Actor, Body, Command, CreditItem, Msgid, Op, PsnNo};
use crate::state::msgids::msgid_key;
use crate::time::parse_cst;
use std::sync::Arc;

/// A small driver: admin writes with fresh msgids at a moving clock.
struct Builder {
    state: State,
    seq: u64,
    time: i64,
}

fn psn(i: u32) -> PsnNo {
    PsnNo::from(&format!("P{i:07}")).unwrap()
}

/// A certno with a valid province, birth date and check character, unique per `i` below
/// 20 million.
fn certno(i: u32) -> String {
    let (seq, k) = (i % 1000, i / 1000);
    let (year, month, day) = (1950 + k % 60, 1 + (k / 60) % 12, 1 + (k / 720) % 28);
    certno_with_check(&format!("440106{year:04}{month:02}{day:02}{seq:03}")).unwrap()
}

impl Builder {
    fn new() -> Builder {
        Builder {
            state: State::new(Params::default()),
            seq: 0,
            time: parse_cst("2025-05-20 10:00:00").unwrap(),
        }
    }

    fn op(&mut self, body: Body) -> Op {
        self.seq += 1;
        Op::Write(Command {
            msgid: Msgid::from(&format!("m{}", self.seq)).unwrap(),
            time: self.time,
            actor: Actor::Admin,
            body,
        })
    }

    fn ok(&mut self, body: Body) -> Reply {
        let op = self.op(body);
        match self.state.apply(&op) {
            Ok(applied) => applied.reply,
            Err(r) => panic!("{op:?}: {r:?}"),
        }
    }

    fn tick(&mut self, seconds: i64) {
        self.time += seconds;
        let time = self.time;
        self.state.apply(&Op::Tick { time }).unwrap();
    }

    fn enrol(&mut self, i: u32, insutype: Insutype, admdvs: u32) {
        self.ok(Body::Enrol {
            psn_no: psn(i),
            certno: ArrayString::from(&certno(i)).unwrap(),
            psn_name: format!("张{i}"),
            insutype,
            admdvs,
        });
    }

    fn credit(&mut self, period: u32, items: &[(u32, u64)]) {
        let items = items
            .iter()
            .map(|&(i, amount)| CreditItem {
                psn_no: psn(i),
                amount: Fen(amount),
            })
            .collect();
        self.ok(Body::Credit {
            period: Period(period),
            items,
        });
    }

    fn bind(&mut self, giver: u32, receiver: u32) -> u64 {
        match self.ok(Body::Bind {
            giver_psn_no: psn(giver),
            receiver_psn_no: psn(receiver),
            relation: Relation::Child,
        }) {
            Reply::Bound {
                binding,
                priority,
                active,
            } => self.state.bound_view(binding, priority, active).binding_id,
            r => panic!("{r:?}"),
        }
    }

    fn settle(&mut self, i: u32, medfee: u64, fund_pay: u64) -> u64 {
        match self.ok(Body::Settle {
            fixmedins_code: ArrayString::from("H001").unwrap(),
            psn_no: psn(i),
            medfee_sumamt: Fen(medfee),
            fund_pay_sumamt: Fen(fund_pay),
            acct_used: true,
        }) {
            Reply::Settled(s) => u64::from(s) + 1,
            r => panic!("{r:?}"),
        }
    }

    fn transfer(&mut self, from: u32, to: u32, amount: u64) -> u64 {
        match self.ok(Body::TransferCreate {
            from_psn_no: psn(from),
            to_psn_no: psn(to),
            amount: Fen(amount),
            source: TransferSource::Acct,
        }) {
            Reply::Transfer(v) => v.transfer_id,
            r => panic!("{r:?}"),
        }
    }
}

const MAY_2025: u32 = 2025 * 12 + 4;

/// Persons 0..8 employees (0..6 in Guangdong, 6..8 in Beijing), 8..12 residents; every
/// kind of record, including the rare ones.
fn rich_state() -> Builder {
    let mut b = Builder::new();
    for i in 0..12 {
        let insutype = if i < 8 {
            Insutype::Employee
        } else {
            Insutype::Resident
        };
        b.enrol(
            i,
            insutype,
            if (6..8).contains(&i) { 110101 } else { 440106 },
        );
    }
    for (code, kind) in [("H001", InstType::Medical), ("Y002", InstType::Pharmacy)] {
        b.ok(Body::RegisterInstitution {
            fixmedins_code: ArrayString::from(code).unwrap(),
            fixmedins_name: format!("医院{code}"),
            fixmedins_type: kind,
            admdvs: 440106,
        });
    }
    b.ok(Body::CreateToken {
        token_hash: [1; 32],
        role: Role::Admin,
        fixmedins_code: None,
        psn_no: None,
    });
    b.ok(Body::CreateToken {
        token_hash: [2; 32],
        role: Role::Institution,
        fixmedins_code: Some(ArrayString::from("Y002").unwrap()),
        psn_no: None,
    });
    b.ok(Body::CreateToken {
        token_hash: [3; 32],
        role: Role::Person,
        fixmedins_code: None,
        psn_no: Some(psn(9)),
    });
    b.ok(Body::RevokeToken { token_id: 2 });
    // Credits: far-apart periods push old months into the overflow set, both by shifting
    // (a later period) and directly (a much earlier one).
    let all: Vec<(u32, u64)> = (0..8).map(|i| (i, 100_000 + u64::from(i))).collect();
    b.credit(MAY_2025 - 200, &all[..3]);
    b.credit(MAY_2025 - 100, &all[..3]);
    b.credit(MAY_2025, &all);
    b.credit(MAY_2025 - 150, &all[1..2]);
    b.credit(MAY_2025 - 3, &all[4..6]);
    assert!(!b.state.persons.credit_overflow.is_empty());
    // Bindings, some revoked, one cross-province (wallet only).
    b.bind(0, 1);
    let revoked = b.bind(0, 8);
    b.bind(0, 9);
    b.bind(2, 8);
    b.bind(3, 8);
    b.bind(4, 10);
    b.bind(6, 1);
    b.bind(5, 11);
    b.ok(Body::Revoke {
        binding_id: revoked,
    });
    b.bind(0, 8);
    b.ok(Body::Revoke { binding_id: 5 });
    // Settlements drawing on givers; one cancelled, one reversed, one blocked msgid.
    b.settle(8, 50_000, 10_000);
    let cancelled = b.settle(8, 150_000, 20_000);
    b.settle(1, 400_000, 100_000);
    b.settle(11, 20_000, 20_000);
    b.ok(Body::Cancel { setl_id: cancelled });
    b.settle(9, 30_000, 0);
    let settled = format!("m{}", b.seq);
    b.ok(Body::Reverse {
        omsgid: Msgid::from(&settled).unwrap(),
        fixmedins_code: None,
    });
    b.ok(Body::Reverse {
        omsgid: Msgid::from("never-applied").unwrap(),
        fixmedins_code: None,
    });
    // Contributions (resident receivers of in-province givers).
    b.ok(Body::Contribute {
        payer_psn_no: psn(4),
        psn_no: psn(10),
        year: 2025,
        amount: Fen(38_000),
    });
    b.ok(Body::Contribute {
        payer_psn_no: psn(0),
        psn_no: psn(9),
        year: 2026,
        amount: Fen(40_000),
    });
    // Wallets and transfers: accepted, declined, returned on expiry, pending.
    for i in [1, 5, 6, 9] {
        b.ok(Body::OpenWallet { psn_no: psn(i) });
    }
    let accepted = b.transfer(0, 9, 1_000);
    let declined = b.transfer(0, 1, 2_000);
    b.transfer(6, 1, 3_000);
    b.tick(60);
    b.ok(Body::TransferAccept {
        transfer_id: accepted,
    });
    b.ok(Body::TransferDecline {
        transfer_id: declined,
    });
    b.tick(86_400);
    b.transfer(0, 1, 4_000);
    b.ok(Body::SetStatus {
        psn_no: psn(3),
        status: PersonStatus::Suspended,
    });
    b.tick(3_600);
    let s = &b.state;
    let statuses: Vec<_> = s.transfers.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        [
            TransferStatus::Accepted,
            TransferStatus::Declined,
            TransferStatus::Returned,
            TransferStatus::Pending
        ]
    );
    assert!(!s.cancelled.is_empty() && s.details.len() > 0);
    assert!(s.msgids.queued().any(|(_, _, r)| r.reply.is_none()));
    assert!(s.recon.iter().next().is_some() && !s.stats.months.is_empty());
    s.check().unwrap();
    b
}

fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::new();
    state.encode_snapshot(&mut out);
    out
}

#[test]
fn round_trip_is_exact_and_canonical() {
    // Proves: decode(encode(s)) has the same state hash as s, and re-encoding it gives the
    // same bytes (canonical encoding, hash maps sorted).
    let b = rich_state();
    let bytes = encode(&b.state);
    let decoded = State::decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded.state_hash(), b.state.state_hash());
    assert_eq!(encode(&decoded), bytes);
    assert_eq!(decoded.person("P0000008"), b.state.person("P0000008"));
    // Appending to a non-empty buffer works too.
    let mut out = vec![7];
    decoded.encode_snapshot(&mut out);
    assert_eq!(&out[1..], &bytes[..]);
    // An empty state round-trips.
    let empty = State::new(Params::default());
    let bytes = encode(&empty);
    let decoded = State::decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded.state_hash(), empty.state_hash());
}

#[test]
fn decoded_state_keeps_working() {
    // Proves: the decoded state (rebuilt indexes, empty scratch) answers further ops exactly
    // as the original: same replies, same hashes, replays of old msgids included.
    let mut original = rich_state();
    let mut decoded = Builder {
        state: State::decode_snapshot(&encode(&original.state)).unwrap(),
        seq: original.seq,
        time: original.time,
    };
    let replay = Op::Write(Command {
        msgid: Msgid::from("m1").unwrap(),
        time: original.time,
        actor: Actor::Admin,
        body: Body::Enrol {
            psn_no: psn(0),
            certno: ArrayString::from(&certno(0)).unwrap(),
            psn_name: "张0".into(),
            insutype: Insutype::Employee,
            admdvs: 440106,
        },
    });
    let mut ops = vec![replay];
    for b in [&mut original, &mut decoded] {
        b.tick(86_400 * 2);
        let mut next = vec![
            b.op(Body::Enrol {
                psn_no: psn(100),
                certno: ArrayString::from(&certno(100)).unwrap(),
                psn_name: "李四".into(),
                insutype: Insutype::Employee,
                admdvs: 440106,
            }),
            b.op(Body::Credit {
                period: Period(MAY_2025 + 1),
                items: vec![CreditItem {
                    psn_no: psn(100),
                    amount: Fen(5_000),
                }],
            }),
            b.op(Body::Bind {
                giver_psn_no: psn(100),
                receiver_psn_no: psn(8),
                relation: Relation::Spouse,
            }),
            b.op(Body::Settle {
                fixmedins_code: ArrayString::from("Y002").unwrap(),
                psn_no: psn(8),
                medfee_sumamt: Fen(90_000),
                fund_pay_sumamt: Fen(1_000),
                acct_used: true,
            }),
            b.op(Body::Cancel { setl_id: 1 }),
            b.op(Body::Enrol {
                psn_no: psn(0),
                certno: ArrayString::from(&certno(200)).unwrap(),
                psn_name: "重复".into(),
                insutype: Insutype::Employee,
                admdvs: 440106,
            }),
            b.op(Body::TransferCreate {
                from_psn_no: psn(0),
                to_psn_no: psn(9),
                amount: Fen(500),
                source: TransferSource::Acct,
            }),
            Op::Tick {
                time: b.time + 86_400,
            },
        ];
        if ops.len() == 1 {
            ops.append(&mut next);
        }
    }
    for op in &ops {
        let a = original.state.apply(op);
        let b = decoded.state.apply(op);
        assert_eq!(a, b, "{op:?}");
    }
    assert!(matches!(
        original.state.apply(&ops[0]),
        Ok(crate::Applied { replayed: true, .. })
    ));
    assert_eq!(original.state.state_hash(), decoded.state.state_hash());
    decoded.state.check().unwrap();
    assert_eq!(encode(&original.state), encode(&decoded.state));
}

#[test]
fn every_truncation_is_an_error() {
    // Proves: any prefix of a snapshot (every cut point of a rich state) is refused with
    // an error whose offset lies within the prefix, never a panic.
    let bytes = encode(&rich_state().state);
    for cut in 0..bytes.len() {
        let err = State::decode_snapshot(&bytes[..cut]).unwrap_err();
        assert!(err.offset <= cut, "cut {cut}: {err}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        State::decode_snapshot(&longer).unwrap_err().what,
        "trailing bytes"
    );
}

#[test]
fn random_corruption_never_panics() {
    // Proves: single-byte corruptions anywhere in a snapshot (a few thousand, seeded) either
    // give an error or a state that passes check and re-encodes canonically; none panics.
    let bytes = encode(&rich_state().state);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..4_000 {
        let mut corrupt = bytes.clone();
        let at = (next() % bytes.len() as u64) as usize;
        let r = next();
        corrupt[at] = match r % 4 {
            0 => corrupt[at] ^ (1 << ((r >> 8) % 8)),
            1 => corrupt[at].wrapping_add(1),
            2 => 0xff,
            _ => (r >> 16) as u8,
        };
        match State::decode_snapshot(&corrupt) {
            Ok(state) => {
                ok += 1;
                state.check().unwrap();
                let again = encode(&state);
                let decoded = State::decode_snapshot(&again).unwrap();
                assert_eq!(encode(&decoded), again);
            }
            Err(e) => {
                refused += 1;
                assert!(e.offset <= corrupt.len());
            }
        }
    }
    eprintln!("{ok} corruptions decoded to a valid state, {refused} refused");
    assert!(refused > 0 && ok + refused == 4_000);
}

#[test]
fn hostile_structure_is_refused() {
    // Proves: targeted hostile edits (bad magic/version, huge counts, a backward binding
    // link that would make a cycle, an entry link cycle, a bad enum tag, a duplicate
    // psn_no) are refused with errors naming the problem, without allocating or looping.
    let b = rich_state();
    let bytes = encode(&b.state);
    let refuse = |bytes: &[u8]| State::decode_snapshot(bytes).unwrap_err().what;
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(refuse(&bad), "not a gongji snapshot");
    // Version 1 (msgid keys without scopes), 2 (entries linked forwards, settlements with
    // their cancelled mark) and any other version are refused (3 to 5 are read: see below).
    for version in [1, 2, 7] {
        let mut bad = bytes.clone();
        bad[8] = version;
        assert_eq!(refuse(&bad), "unknown snapshot format version");
    }
    // The person count follows the header, params, clock, op count and ledger.
    let persons_at = 8 + 4 + 30 + 8 + 8 + 7 * 8;
    assert_eq!(
        u64::from_le_bytes(bytes[persons_at..persons_at + 8].try_into().unwrap()),
        12
    );
    let mut bad = bytes.clone();
    bad[persons_at..persons_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(refuse(&bad), "person count");
    // Two persons with one psn_no: make person 1's psn_no equal person 0's.
    let mut bad = bytes.clone();
    let arena = persons_at + 8 + 12;
    bad[arena + 8..arena + 16].copy_from_slice(&bytes[arena..arena + 8]);
    assert_eq!(refuse(&bad), "duplicate psn_no");

    // Re-encode states with one field changed, to reach the deeper checks.
    let mutate = |f: &dyn Fn(&mut State)| {
        let mut s = State::decode_snapshot(&bytes).unwrap();
        f(&mut s);
        State::decode_snapshot(&encode(&s)).unwrap_err()
    };
    let e = mutate(&|s| s.bindings[7].next_given = 1);
    assert_eq!(e.what, "binding link");
    let e = mutate(&|s| {
        let last = s.entries.len();
        let entry = s.entries.get(last - 1);
        s.entries.set(
            last - 1,
            Entry {
                prev: last as u32,
                ..entry
            },
        );
    });
    assert_eq!(e.what, "entry link");
    let e = mutate(&|s| s.persons.given_head[0] = 4);
    assert!(e.what.contains("list"), "{e}");
    let e = mutate(&|s| s.persons.hot[0].acct = Fen(u64::MAX));
    assert_eq!(e.what, "amounts overflow");
    let e = mutate(&|s| s.ledger.acct_total += 1);
    assert_eq!(e.what, "ledger does not conserve money");
    let e = mutate(&|s| {
        s.persons.hot[0].acct = Fen(s.persons.hot[0].acct.0 + 1);
        s.ledger.acct_total += 1;
        s.ledger.credited += 1;
    });
    assert_eq!(e.what, "state check failed");
    assert!(e.detail.is_some());
    let e = mutate(&|s| {
        let setl = s.setls.get(0);
        s.setls.set(
            0,
            Settlement {
                details_start: 5,
                ..setl
            },
        );
    });
    assert_eq!(e.what, "settlement details range");
    let e = mutate(&|s| s.expiry_queue.push_back((i64::MAX, 3)));
    assert_eq!(e.what, "expiry queue not in transfer order");
    let e = mutate(&|s| s.expiry_queue.back_mut().unwrap().0 -= 1);
    assert_eq!(e.what, "expiry queue time");

    // Format 4's msgid section (still read) that repeats its first key at the end, and one
    // whose last record is older than the one before. The queue of a state holds neither, so
    // the bytes are patched: the section ends where statistics and recon begin.
    let mut bytes = Vec::new();
    b.state.encode_snapshot_in(4, &mut bytes);
    let s = State::decode_snapshot(&bytes).unwrap();
    let recent: usize = (0..s.insts.list.len() as u32)
        .map(|i| 1 + 4 * s.recent.of(i).count())
        .sum();
    let tail =
        8 + s.stats.months.len() * MONTH_BYTES + 8 + s.recon.iter().count() * RECON_BYTES + recent;
    let end = bytes.len() - tail;
    let sizes: Vec<usize> = s
        .msgids
        .queued()
        .map(|(_, _, r)| {
            let mut v = Vec::new();
            super::msgids::encode_reply(r.reply.as_ref(), &mut Enc::new(&mut v));
            MSGID_BYTES_MIN - 1 + v.len()
        })
        .collect();
    let (last_time, last_key, _) = s.msgids.queued().last().unwrap();
    let first = s.msgids.queued().next().unwrap();
    let count_at = end - sizes.iter().sum::<usize>() - 8;
    let last = end - sizes.last().unwrap();
    assert_eq!(
        &bytes[last + 8..last + 24],
        &last_key.to_le_bytes(),
        "last record found"
    );
    let repeat = |time: i64, key: u128| {
        let mut bad = bytes[..end].to_vec();
        bad[count_at..count_at + 8].copy_from_slice(&(s.msgids.len() as u64 + 1).to_le_bytes());
        bad.extend_from_slice(&time.to_le_bytes());
        bad.extend_from_slice(&key.to_le_bytes());
        bad.extend_from_slice(&bytes[last + 24..end]);
        bad.extend_from_slice(&bytes[end..]);
        bad
    };
    assert_eq!(refuse(&repeat(last_time, first.1)), "msgid recorded twice");
    assert_eq!(
        refuse(&repeat(last_time - 1, 7)),
        "msgids out of time order"
    );
    assert!(
        State::decode_snapshot(&repeat(last_time, 7)).is_ok(),
        "the patch itself is sound"
    );
}

/// Where the msgid section of `state`'s snapshot starts, and the snapshot.
fn msgid_section_at(state: &State) -> (usize, Vec<u8>) {
    let mut bytes = Vec::new();
    let encoded = state.encode_snapshot_streaming(&mut |piece| bytes.extend_from_slice(piece));
    (encoded.at as usize, bytes)
}

#[test]
fn hostile_msgid_sections_are_refused() {
    // Proves: format 5's msgid section is checked record by record: keys out of order or
    // repeated, a reply that does not start where the previous one ended, a replies length
    // that runs past the snapshot or stops short, a count beyond the bytes, a reply naming a
    // settlement that does not exist, and the legacy binding-view tag are each refused with
    // the field named; a patch that keeps every rule is accepted (so the patching is sound).
    let b = rich_state();
    let (at, bytes) = msgid_section_at(&b.state);
    let refuse = |bytes: &[u8]| State::decode_snapshot(bytes).unwrap_err().what;
    let n = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    assert!(n > 10);
    let rec = |i: usize| at + 8 + i * 40;
    let replies_len_at = rec(n);
    let replies_at = replies_len_at + 8;
    let key = |bytes: &[u8], i: usize| {
        u128::from_le_bytes(bytes[rec(i)..rec(i) + 16].try_into().unwrap())
    };
    let patched = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bad = bytes.clone();
        f(&mut bad);
        bad
    };
    // Keys: the second record's key made the first's, then below it.
    let k0 = key(&bytes, 0);
    assert_eq!(
        refuse(&patched(
            &|b| b[rec(1)..rec(1) + 16].copy_from_slice(&k0.to_le_bytes())
        )),
        "msgids not ascending"
    );
    assert_eq!(
        refuse(&patched(
            &|b| b[rec(1)..rec(1) + 16].copy_from_slice(&(k0 - 1).to_le_bytes())
        )),
        "msgids not ascending"
    );
    // A key moved within its gap keeps the order, and is accepted.
    let (k1, k2) = (key(&bytes, 1), key(&bytes, 2));
    assert!(k2 - k1 > 2);
    assert!(State::decode_snapshot(&patched(
        &|b| b[rec(1)..rec(1) + 16].copy_from_slice(&(k1 + 1).to_le_bytes())
    ))
    .is_ok());
    // Reply offsets.
    let e = State::decode_snapshot(&patched(&|b| b[rec(3) + 32] ^= 1)).unwrap_err();
    assert_eq!((e.what, e.offset), ("msgid reply offset", rec(3) + 32));
    // The replies' length: one more than there are (the bytes after are the next section's),
    // one less, and beyond the end.
    let len = u64::from_le_bytes(bytes[replies_len_at..replies_at].try_into().unwrap());
    for (wrong, what) in [
        (len + 1, "msgid replies length"),
        (len - 1, "truncated"),
        (u64::MAX, "msgid replies length"),
    ] {
        let bad = patched(&|b| b[replies_len_at..replies_at].copy_from_slice(&wrong.to_le_bytes()));
        assert_eq!(refuse(&bad), what, "{wrong}");
    }
    let bad = patched(&|b| b[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes()));
    assert_eq!(refuse(&bad), "msgid count");
    // A settlement reply naming a settlement past the last.
    let settled = (0..n)
        .find(|&i| {
            let off = u64::from_le_bytes(bytes[rec(i) + 32..rec(i) + 40].try_into().unwrap());
            bytes[replies_at + off as usize] == super::msgids::REPLY_SETTLED
        })
        .expect("a settlement reply");
    let off = u64::from_le_bytes(
        bytes[rec(settled) + 32..rec(settled) + 40]
            .try_into()
            .unwrap(),
    ) as usize;
    let e = State::decode_snapshot(&patched(&|b| {
        b[replies_at + off + 1..replies_at + off + 5].copy_from_slice(&u32::MAX.to_le_bytes())
    }))
    .unwrap_err();
    assert_eq!(
        (e.what, e.offset),
        ("reply settlement", replies_at + off + 1)
    );
    // The legacy binding-view tag, in place of a reply's tag.
    let bad = patched(&|b| b[replies_at + off] = REPLY_BINDING_VIEW);
    assert_eq!(refuse(&bad), "reply tag");
}

#[test]
fn format_4_snapshots_are_still_read() {
    // Proves: a snapshot in format 4 (msgids in queue order) decodes to the same state as
    // today's format, and encodes to today's bytes.
    let b = rich_state();
    let mut v4 = Vec::new();
    b.state.encode_snapshot_in(4, &mut v4);
    let today = encode(&b.state);
    assert_ne!(v4, today, "the formats differ");
    let decoded = State::decode_snapshot(&v4).unwrap();
    assert!(decoded.msgids.all_queued());
    assert_eq!(decoded.state_hash(), b.state.state_hash());
    assert_eq!(encode(&decoded), today);
}

#[test]
fn format_3_snapshots_are_still_read() {
    // Proves: a snapshot in the previous release's format (msgids ordered by key, the queue
    // after them) decodes to the same state as today's format, and encodes to today's bytes.
    let b = rich_state();
    let mut v3 = Vec::new();
    b.state.encode_snapshot_in(3, &mut v3);
    let today = encode(&b.state);
    assert_ne!(v3, today, "the formats differ");
    let decoded = State::decode_snapshot(&v3).unwrap();
    assert_eq!(decoded.state_hash(), b.state.state_hash());
    assert_eq!(encode(&decoded), today);
}

#[test]
fn legacy_binding_view_replies_are_read_as_bound() {
    // Proves: a binding reply written as a whole view (tag 6, the first encoder's form)
    // decodes to the same `Reply::Bound` as the index form, which re-encodes to the bytes
    // of today's encoder; a view that does not match its binding is refused. Format 4 (the
    // tag is refused in format 5's sections: `hostile_msgid_sections_are_refused`).
    let b = rich_state();
    let mut bytes = Vec::new();
    b.state.encode_snapshot_in(4, &mut bytes);
    // m24 made binding 1 (0 → 1) with priority 1; it has not been revoked.
    let key = super::super::msgids::msgid_key(crate::MsgidScope::Admin, "m24");
    let reply = b.state.msgids.get(key).unwrap().reply.clone().unwrap();
    let Reply::Bound {
        binding,
        priority,
        active,
    } = reply
    else {
        panic!("m24 is not a binding: {reply:?}")
    };
    let view = b.state.bound_view(binding, priority, active);
    let at = bytes
        .windows(16)
        .position(|w| w == key.to_le_bytes())
        .unwrap()
        + 16
        + 8;
    assert_eq!(bytes[at], REPLY_BOUND);
    let legacy = |view: &BindingView| {
        let mut tail = Vec::new();
        let mut e = Enc::new(&mut tail);
        e.put(REPLY_BINDING_VIEW);
        encode_binding_view(view, &mut e);
        let mut out = bytes[..at].to_vec();
        out.extend_from_slice(&tail);
        out.extend_from_slice(&bytes[at + 1 + 4 + 4 + 1..]);
        out
    };
    let decoded = State::decode_snapshot(&legacy(&view)).unwrap();
    assert_eq!(decoded.msgids.get(key).unwrap().reply, Some(reply));
    assert_eq!(encode(&decoded), encode(&b.state));
    let wrong = BindingView {
        relation: Relation::Spouse,
        ..view.clone()
    };
    assert_ne!(wrong.relation, view.relation);
    let e = State::decode_snapshot(&legacy(&wrong)).unwrap_err();
    assert_eq!(e.what, "reply binding");
}

#[test]
fn tag_tables_match_declaration_order() {
    // Proves: each decoding table lists its enum in declaration order, so `as u8` on encode
    // and the table position on decode agree.
    fn same<T: Copy + std::fmt::Debug>(table: &[T], tag: impl Fn(T) -> u8) {
        for (i, &v) in table.iter().enumerate() {
            assert_eq!(usize::from(tag(v)), i, "{v:?}");
        }
    }
    same(&INSUTYPES, |v| v as u8);
    same(&STATUSES, |v| v as u8);
    same(&INST_TYPES, |v| v as u8);
    same(&ROLES, |v| v as u8);
    same(&RELATIONS, |v| v as u8);
    same(&SCOPES, |v| v as u8);
    same(&SOURCES, |v| v as u8);
    same(&TRANSFER_STATUSES, |v| v as u8);
    same(&KINDS, |v| v as u8);
    same(&DRAW_SOURCES, |v| v as u8);
    same(&REVERSAL_RESULTS, |v| v as u8);
}

#[test]
fn a_frozen_copy_encodes_the_moment_it_was_made() {
    // Proves: a frozen copy's snapshot is the live state's snapshot at the moment it was
    // frozen, byte for byte, however the live state changes afterwards (records in shared
    // chunks changed, appended to, msgids forgotten at the queue's front), and the live state
    // goes on exactly as a twin that was never frozen.
    let mut b = rich_state();
    let before = encode(&b.state);
    let frozen = b.state.freeze();
    assert_eq!(frozen.op_count(), b.state.op_count());
    let mut twin = Builder {
        state: State::decode_snapshot(&before).unwrap(),
        seq: b.seq,
        time: b.time,
    };
    for x in [&mut b, &mut twin] {
        x.enrol(50, Insutype::Employee, 440106);
        x.credit(MAY_2025 + 1, &[(50, 90_000), (0, 1_000)]);
        x.bind(50, 8);
        let setl_id = x.settle(8, 80_000, 1_000);
        x.ok(Body::Cancel { setl_id });
        x.transfer(0, 9, 300);
        // Past the msgid window: the oldest records leave the front of the shared queue.
        x.tick(86_400 * 40);
        x.settle(8, 500, 0);
    }
    assert!(b.state.msgids.len() < frozen.0.msgids.len());
    let mut out = Vec::new();
    frozen.encode_snapshot(&mut out);
    assert_eq!(out, before);
    // The snapshot thread's encoding drops the persons and bindings it has written: the
    // same bytes, and the live state's chunks are no longer shared with it.
    let mut frozen = frozen;
    let mut released = Vec::new();
    frozen.encode_snapshot_releasing(&mut |piece| released.extend_from_slice(piece));
    assert_eq!(released, before);
    assert_eq!(frozen.0.persons.len(), 0);
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        frozen.encode_snapshot_streaming(&mut |_| {})
    }));
    assert!(again.is_err(), "a frozen state is encoded once");
    assert_eq!(b.state.state_hash(), twin.state.state_hash());
    assert_eq!(encode(&b.state), encode(&twin.state));
    b.state.check().unwrap();
}

#[test]
fn a_frozen_copy_spans_chunks() {
    // Proves: the same across chunk ends (more than 65,536 persons, entries and msgids), with
    // writes to the first and the last chunk after freezing.
    let mut b = Builder::new();
    let n = 70_000;
    for i in 0..n {
        b.enrol(i, Insutype::Employee, 440106);
    }
    let before = encode(&b.state);
    let frozen = b.state.freeze();
    b.credit(MAY_2025, &[(0, 100), (n - 1, 200), (n / 2, 300)]);
    b.enrol(n, Insutype::Employee, 440106);
    let mut out = Vec::new();
    frozen.encode_snapshot(&mut out);
    assert_eq!(out, before);
    drop(frozen);
    b.state.check().unwrap();
    assert_eq!(b.state.person_count(), n as usize + 1);
}

#[test]
fn a_streamed_snapshot_is_the_same_bytes_in_pieces() {
    // Proves: the streaming encoder hands over exactly the bytes of the buffered one, in
    // pieces near the spill size (never one piece of the whole snapshot), for a small state
    // and for one of several mebibytes; and a frozen copy streams the same.
    let small = rich_state();
    let mut large = Builder::new();
    for i in 0..40_000 {
        large.enrol(i, Insutype::Employee, 440106);
    }
    for state in [&small.state, &large.state] {
        let whole = encode(state);
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        state.encode_snapshot_streaming(&mut |piece| pieces.push(piece.to_vec()));
        assert_eq!(pieces.concat(), whole);
        assert!(pieces
            .iter()
            .all(|p| !p.is_empty() && p.len() < 2 * super::bytes::SPILL_BYTES));
        let mut frozen_pieces = Vec::new();
        state
            .freeze()
            .encode_snapshot_streaming(&mut |piece| frozen_pieces.extend_from_slice(piece));
        assert_eq!(frozen_pieces, whole);
    }
    let mut count = 0;
    large.state.encode_snapshot_streaming(&mut |_| count += 1);
    assert!(count >= 3, "{count} pieces");
}

#[test]
fn memory_counts_each_part_by_its_records() {
    // Proves: every part is reported, and a settlement grows the settlements, entries and
    // msgids parts (by at least its record's size) and leaves bindings and transfers alone.
    let mut b = rich_state();
    let before: BTreeMap<&str, u64> = b.state.memory().into_iter().collect();
    b.settle(8, 9_000, 1_000);
    let after: BTreeMap<&str, u64> = b.state.memory().into_iter().collect();
    let parts = [
        "persons",
        "bindings",
        "settlements",
        "transfers",
        "contributions",
        "entries",
        "msgids",
        "reconciliation",
    ];
    for part in parts {
        assert!(after.contains_key(part), "{part}");
    }
    assert_eq!(after.len(), parts.len());
    assert!(
        after["settlements"] >= before["settlements"] + std::mem::size_of::<Settlement>() as u64
    );
    assert!(after["entries"] > before["entries"]);
    assert!(after["msgids"] >= before["msgids"]);
    assert!(after["persons"] > 0);
    assert_eq!(after["bindings"], before["bindings"]);
    assert_eq!(after["transfers"], before["transfers"]);
}

/// Makes every full hot chunk of `state` cold from its own encoding, as the server does from
/// history files; returns the bytes by chunk.
fn make_all_cold(state: &mut State) -> Vec<(crate::Column, usize, Vec<u8>)> {
    let mut made = Vec::new();
    for (column, k) in state.cold_candidates() {
        let mut bytes = Vec::new();
        state.encode_chunk(column, k, &mut bytes);
        assert_eq!(bytes.len(), column.chunk_bytes());
        state
            .make_cold(column, k, std::sync::Arc::new(bytes.clone()))
            .unwrap();
        made.push((column, k, bytes));
    }
    made
}

#[test]
fn cold_history_reads_and_snapshots_as_hot_history_did() {
    // Proves: with full chunks of entries, settlements and details made cold (their records
    // held as bytes outside the heap), the state hashes, checks and answers reads exactly as
    // before; a snapshot leaves the cold chunks out (it shrinks), decodes with them missing,
    // and after they are attached is the same state; a cancellation of a settlement in a cold
    // chunk and more writes keep it in step with a twin that never went cold.
    let mut b = rich_state();
    b.credit(MAY_2025 + 3, &[(0, 100_000_000), (1, 100_000_000)]);
    let mut first = 0;
    // Each settlement draws from the person's account: an entry each.
    for k in 0..(crate::HISTORY_CHUNK as u32 + 10) {
        let id = b.settle(k % 2, 2_000, 100);
        if k == 3 {
            first = id;
        }
    }
    let mut twin = Builder {
        state: State::decode_snapshot(&encode(&b.state)).unwrap(),
        seq: b.seq,
        time: b.time,
    };
    let hot_bytes = encode(&b.state);
    let hash = b.state.state_hash();
    let made = make_all_cold(&mut b.state);
    let columns: Vec<_> = made.iter().map(|(c, k, _)| (*c, *k)).collect();
    assert!(
        columns.contains(&(crate::Column::Entries, 0)),
        "{columns:?}"
    );
    assert!(
        columns.contains(&(crate::Column::Settlements, 0)),
        "{columns:?}"
    );
    assert_eq!(b.state.state_hash(), hash);
    b.state.check().unwrap();
    assert_eq!(b.state.settlement(first), twin.state.settlement(first));
    assert_eq!(
        b.state.entries("P0000001", None, 1000),
        twin.state.entries("P0000001", None, 1000)
    );
    assert!(
        b.state
            .memory()
            .iter()
            .find(|(p, _)| *p == "entries")
            .unwrap()
            .1
            < 1 << 20
    );

    let cold_bytes = encode(&b.state);
    assert!(cold_bytes.len() + crate::HISTORY_CHUNK * 40 < hot_bytes.len());
    let mut decoded = State::decode_snapshot(&cold_bytes).unwrap();
    assert_eq!(decoded.cold_missing(), columns);
    for (column, k, bytes) in &made {
        decoded
            .make_cold(*column, *k, std::sync::Arc::new(bytes.clone()))
            .unwrap();
    }
    assert!(decoded.cold_missing().is_empty());
    assert_eq!(decoded.state_hash(), hash);
    decoded.check().unwrap();
    let mut cold = Builder {
        state: decoded,
        seq: b.seq,
        time: b.time,
    };
    for x in [&mut cold, &mut twin] {
        x.ok(Body::Cancel { setl_id: first });
        x.settle(1, 3_000, 0);
        x.credit(MAY_2025 + 1, &[(2, 500)]);
    }
    assert_eq!(cold.state.state_hash(), twin.state.state_hash());
    cold.state.check().unwrap();
    assert!(cold.state.settlement(first).unwrap().cancelled);
    // A chunk's bytes of the wrong length are refused.
    let mut again = State::decode_snapshot(&cold_bytes).unwrap();
    let (column, k) = columns[0];
    assert!(again
        .make_cold(column, k, std::sync::Arc::new(vec![0u8; 10]))
        .is_err());
}

#[test]
fn a_large_state_builds_its_indexes_beside_the_decode() {
    // Proves: above the threshold where a decoder builds the person indexes on a thread of
    // their own and the indexes in bucket order, the decoded state is the same (hash, every
    // person found by psn_no and certno), and a duplicate psn_no or certno far into the
    // columns is still refused, naming its offset.
    let n = super::INDEX_THREAD_PERSONS_MIN as u32 + 10;
    let mut b = Builder::new();
    for i in 0..n {
        b.enrol(i, Insutype::Employee, 440106);
    }
    b.credit(MAY_2025, &[(7, 10_000), (n - 1, 20_000)]);
    let bytes = encode(&b.state);
    let decoded = State::decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded.state_hash(), b.state.state_hash());
    for i in (0..n).step_by(997).chain([n - 1]) {
        let view = decoded.person(psn(i).as_str()).unwrap();
        assert_eq!(view.psn_no, psn(i));
        let packed = crate::certno::certno_pack(&certno(i)).unwrap();
        assert_eq!(decoded.persons.find_certno(packed), Some(i));
    }
    let refuse = |bytes: &[u8]| {
        let e = State::decode_snapshot(bytes).unwrap_err();
        (e.what, e.offset)
    };
    // psn_nos are 8 bytes each ("P" and 7 digits), after the count and n lengths.
    let persons_at = 8 + 4 + 30 + 8 + 8 + 7 * 8;
    let arena = persons_at + 8 + n as usize;
    let last = arena + 8 * (n as usize - 1);
    let mut bad = bytes.clone();
    bad.copy_within(arena + 8 * 5..arena + 8 * 6, last);
    assert_eq!(refuse(&bad), ("duplicate psn_no", last));
    // The certno column follows the names (n lengths and their bytes).
    let names_at = arena + 8 * n as usize;
    let names_len: usize = (0..n).map(|i| format!("张{i}").len()).sum();
    let certnos = names_at + n as usize + names_len;
    let last = certnos + 8 * (n as usize - 1);
    let mut bad = bytes;
    bad.copy_within(certnos + 8 * 3..certnos + 8 * 4, last);
    assert_eq!(refuse(&bad), ("duplicate certno", last));
}

#[test]
fn the_full_check_finds_persons_indexed_under_another_masked_form() {
    // Proves: an index that holds every person once, but two of them under each other's
    // masked form, passes the hot check (which counts) and fails the full check (which looks
    // every form up).
    let mut b = rich_state();
    b.state.check().unwrap();
    let mut certnos: Vec<u64> = (0..b.state.persons.len())
        .map(|i| b.state.persons.certno[i])
        .collect();
    let key = |c: u64| crate::certno::masked_key_of_packed(c);
    let j = (1..certnos.len())
        .find(|&j| key(certnos[j]) != key(certnos[0]))
        .expect("two masked forms");
    certnos.swap(0, j);
    b.state.masked = crate::state::masked::MaskedIndex::rebuild(&certnos.into());
    b.state.check_hot().unwrap();
    assert_eq!(
        b.state.check().unwrap_err(),
        "the masked-certno index does not match the persons"
    );
}

#[test]
fn adopted_msgid_sections_answer_as_the_queue_did() {
    // Proves: a state that adopts the msgid section of its own frozen snapshots (read from the
    // snapshot's bytes, as a server reads the file it wrote) answers every msgid lookup and
    // every replayed or conflicting msgid, encodes and hashes exactly as a twin that never
    // adopted: through writes made between the freeze and the adoption, records forgotten
    // before and after it, and adoptions on top of adoptions; its queue then holds only the
    // records made since the freeze.
    let mut b = rich_state();
    let mut twin = rich_state();
    for round in 0..4u32 {
        let frozen = b.state.freeze();
        let mut bytes = Vec::new();
        let encoded = frozen.encode_snapshot_streaming(&mut |p| bytes.extend_from_slice(p));
        if round == 0 {
            // Bytes that are not the snapshot just encoded (its msgid section shifted, then
            // cut short) are refused.
            let e = |bytes: Vec<u8>| {
                let again = frozen.encode_snapshot_streaming(&mut |_| {});
                frozen
                    .msgid_section(Arc::new(bytes), 0, again)
                    .unwrap_err()
                    .what
            };
            assert_eq!(
                e([&[0][..], &bytes].concat()),
                "msgid section is not the one encoded"
            );
            let end = encoded.at as usize + 16 + encoded.count * 40 + encoded.replies_len as usize;
            assert_eq!(
                e(bytes[..end - 1].to_vec()),
                "msgid section is not the one encoded"
            );
            assert!(frozen
                .msgid_section(
                    Arc::new(bytes[..end].to_vec()),
                    0,
                    frozen.encode_snapshot_streaming(&mut |_| {})
                )
                .is_ok());
        }
        let mut since = 0;
        for x in [&mut b, &mut twin] {
            let n = 100 + round;
            x.enrol(n, Insutype::Employee, 440106);
            x.credit(MAY_2025 + 1 + round, &[(n, 90_000)]);
            x.settle(n, 50_000, 1_000);
            // Round 1 passes the window: every record made before it is forgotten, those of
            // the adopted section among them.
            x.tick(if round == 1 { 86_400 * 40 } else { 3_600 });
            x.settle(n, 700, 0);
            since = x.seq;
        }
        let section = frozen.msgid_section(Arc::new(bytes), 0, encoded).unwrap();
        drop(frozen);
        b.state.adopt_msgids(section);
        // The adopted records leave the queue a slice at a time: none, some or all of them
        // are dropped before the comparisons (round 3 adopts on top of records round 2 left).
        let (held, adopted) = (b.state.msgids.held(), b.state.msgids.adopted());
        // (Round 1 passed the window: the queue's front had passed the freeze.)
        assert_eq!(adopted > 0, round != 1, "round {round}");
        let max = [0, 2, 0, usize::MAX][round as usize];
        let left = b.state.drain_adopted_msgids(max);
        assert_eq!(left, adopted - adopted.min(max));
        assert_eq!(b.state.msgids.held(), held - adopted.min(max));
        assert_eq!(
            b.state.state_hash(),
            twin.state.state_hash(),
            "round {round}"
        );
        assert_eq!(encode(&b.state), encode(&twin.state), "round {round}");
        b.state.check().unwrap();
        // Only the ops since the freeze are queued (those of this round).
        assert!(b.state.msgids.queued().count() <= 5, "round {round}");
        for seq in 1..=since {
            let key = msgid_key(crate::MsgidScope::Admin, &format!("m{seq}"));
            let got = |s: &State| s.msgids.get(key).map(|r| r.into_owned());
            assert_eq!(got(&b.state), got(&twin.state), "round {round} m{seq}");
        }
        // A msgid already used, with another body: replayed or refused alike.
        for seq in [1, since - 3, since] {
            let op = Op::Write(Command {
                msgid: Msgid::from(&format!("m{seq}")).unwrap(),
                time: b.time,
                actor: Actor::Admin,
                body: Body::Cancel { setl_id: 1 },
            });
            let a = format!("{:?}", b.state.apply(&op));
            assert_eq!(a, format!("{:?}", twin.state.apply(&op)), "m{seq}");
        }
    }
    // Round 1 forgot the records made before it (m1 was made again since, by a replay).
    let m2 = msgid_key(crate::MsgidScope::Admin, "m2");
    assert!(b.state.msgids.get(m2).is_none() && twin.state.msgids.get(m2).is_none());
}

/// Senders 0..40 (employees, credited), residents 40..50 with wallets, each sender bound to
/// resident `40 + i % 10`; then days of three transfers from each sender (the first of each
/// day accepted, the second declined, the rest returned at 06:00 the next day) until more
/// than a chunk of transfers is made, and contributions of senders 0..10 to their residents
/// for years from 1970 until more than a chunk of contributions is paid. Checks on the way
/// that a chunk holding a transfer still queued to expire is not final.
fn transfers_and_contributions() -> Builder {
    let mut b = Builder::new();
    for i in 0..50 {
        let insutype = if i < 40 {
            Insutype::Employee
        } else {
            Insutype::Resident
        };
        b.enrol(i, insutype, 440106);
    }
    let senders: Vec<(u32, u64)> = (0..40).map(|i| (i, 10_000_000)).collect();
    b.credit(MAY_2025, &senders);
    for i in 40..50 {
        b.ok(Body::OpenWallet { psn_no: psn(i) });
    }
    for i in 0..40 {
        b.bind(i, 40 + i % 10);
    }
    let chunk = crate::HISTORY_CHUNK;
    let mut seen_open_full_chunk = false;
    while b.state.transfers.len() <= chunk {
        for i in 0..40 {
            let first = b.transfer(i, 40 + i % 10, 1 + u64::from(i));
            b.transfer(i, 40 + i % 10, 7);
            b.transfer(i, 40 + i % 10, 9);
            if i == 0 {
                b.ok(Body::TransferAccept { transfer_id: first });
                b.ok(Body::TransferDecline {
                    transfer_id: first + 1,
                });
            }
        }
        if b.state.transfers.len() > chunk && !seen_open_full_chunk {
            // Chunk 0 is full, but some of its transfers (made today) are queued.
            seen_open_full_chunk = true;
            let candidates = b.state.cold_candidates();
            assert!(
                !candidates.contains(&(crate::Column::Transfers, 0)),
                "{candidates:?}"
            );
            let mut bytes = Vec::new();
            b.state
                .encode_chunk(crate::Column::Transfers, 0, &mut bytes);
            let e = b
                .state
                .make_cold(crate::Column::Transfers, 0, Arc::new(bytes))
                .unwrap_err();
            assert!(e.contains("not final"), "{e}");
        }
        b.tick(86_400);
    }
    assert!(seen_open_full_chunk);
    let mut year = 1970;
    while b.state.contributions.len() <= chunk {
        for i in 0..10 {
            b.ok(Body::Contribute {
                payer_psn_no: psn(i),
                psn_no: psn(40 + i),
                year,
                amount: Fen(1 + u64::from(year % 3)),
            });
        }
        year += 1;
    }
    b
}

#[test]
fn cold_transfers_and_contributions_answer_as_a_twin_that_kept_them() {
    // Proves: once no transfer of a full chunk is queued to expire, the chunk (and a full chunk
    // of contributions) goes cold and the state hashes, checks and answers every read of a
    // transfer or a contribution (view, projection row) exactly as a twin that kept them on
    // the heap; the writes that read an old transfer or an old contribution (an answer to a
    // closed transfer, a second contribution for a paid year) are refused alike and change
    // nothing; a prefetch reads the cold transfer; a snapshot leaves the chunks out and,
    // decoded and attached, is the same state; further writes keep both in step.
    let mut b = transfers_and_contributions();
    let mut twin = Builder {
        state: State::decode_snapshot(&encode(&b.state)).unwrap(),
        seq: b.seq,
        time: b.time,
    };
    let hash = b.state.state_hash();
    let hot_bytes = encode(&b.state);
    let made = make_all_cold(&mut b.state);
    let columns: Vec<_> = made.iter().map(|(c, k, _)| (*c, *k)).collect();
    for c in [crate::Column::Transfers, crate::Column::Contributions] {
        assert!(columns.contains(&(c, 0)), "{columns:?}");
        assert_eq!(b.state.cold_chunk_count(c), 1);
    }
    assert_eq!(b.state.state_hash(), hash);
    b.state.check().unwrap();
    let reads = |s: &State| {
        let transfers: Vec<_> = [1, 2, 3, 4, 50_000, 65_536, 65_537]
            .iter()
            .map(|&id| s.transfer(id))
            .collect();
        let rows: Vec<_> = [0, 1, 40_000, 65_535, 65_536]
            .iter()
            .map(|&c| (s.transfer_row(c), s.contribution_row(c)))
            .collect();
        let entries = s.entries("P0000040", None, 1000);
        format!("{transfers:?}{rows:?}{entries:?}")
    };
    assert_eq!(reads(&b.state), reads(&twin.state));
    assert!(format!("{:?}", b.state.transfer(1)).contains("Accepted"));
    let memory = |s: &State, part: &str| s.memory().iter().find(|(p, _)| *p == part).unwrap().1;
    assert!(memory(&b.state, "transfers") + 60_000 * 40 < memory(&twin.state, "transfers"));
    assert!(memory(&b.state, "contributions") + 60_000 * 30 < memory(&twin.state, "contributions"));

    // The writes that read cold records, refused alike by both; a prefetch reads the record.
    let (actor, accept) = (Actor::Admin, Body::TransferAccept { transfer_id: 3 });
    assert_eq!(b.state.prefetch(&actor, &accept), 1);
    let paid = Body::Contribute {
        payer_psn_no: psn(0),
        psn_no: psn(40),
        year: 1971,
        amount: Fen(1),
    };
    for x in [&mut b, &mut twin] {
        for body in [accept.clone(), paid.clone()] {
            let op = x.op(body);
            let code = x.state.apply(&op).unwrap_err().code;
            assert!(
                matches!(
                    code,
                    crate::ErrCode::NotPending | crate::ErrCode::AlreadyPaid
                ),
                "{code:?}"
            );
        }
    }
    assert_eq!(b.state.state_hash(), hash);

    let cold_bytes = encode(&b.state);
    assert!(cold_bytes.len() + crate::HISTORY_CHUNK * (35 + 34) < hot_bytes.len());
    let mut decoded = State::decode_snapshot(&cold_bytes).unwrap();
    assert_eq!(decoded.cold_missing(), columns);
    for (column, k, bytes) in &made {
        decoded
            .make_cold(*column, *k, Arc::new(bytes.clone()))
            .unwrap();
    }
    assert_eq!(decoded.state_hash(), hash);
    decoded.check().unwrap();
    assert_eq!(reads(&decoded), reads(&twin.state));
    assert_eq!(encode(&decoded), cold_bytes);
    let mut cold = Builder {
        state: decoded,
        seq: b.seq,
        time: b.time,
    };
    for x in [&mut cold, &mut twin] {
        let t = x.transfer(3, 43, 11);
        x.ok(Body::TransferAccept { transfer_id: t });
        x.transfer(4, 44, 12);
        x.ok(Body::Contribute {
            payer_psn_no: psn(1),
            psn_no: psn(41),
            year: 9_000,
            amount: Fen(5),
        });
        x.tick(86_400);
    }
    assert_eq!(cold.state.state_hash(), twin.state.state_hash());
    cold.state.check().unwrap();
    assert_eq!(reads(&cold.state), reads(&twin.state));

    // A snapshot whose expiry queue names a transfer in a cold chunk is refused.
    let t = cold.transfer(5, 45, 13) as u32 - 1;
    let expires_at = cold.state.transfers.get(t as usize).expires_at;
    let mut item = expires_at.to_le_bytes().to_vec();
    item.extend_from_slice(&t.to_le_bytes());
    let mut bytes = encode(&cold.state);
    let at = bytes.windows(12).position(|w| w == item).unwrap() + 8;
    State::decode_snapshot(&bytes).unwrap();
    bytes[at..at + 4].copy_from_slice(&5u32.to_le_bytes());
    let e = State::decode_snapshot(&bytes).unwrap_err();
    assert_eq!(e.what, "queued transfer in a cold chunk");
}

#[test]
fn format_5_snapshots_are_still_read() {
    // Proves: a snapshot in format 5 (every transfer and contribution, no cold-chunk counts)
    // decodes to the same state as today's format, and encodes to today's bytes; a format-6
    // snapshot differs from it.
    let b = rich_state();
    let mut v5 = Vec::new();
    b.state.encode_snapshot_in(5, &mut v5);
    assert_eq!(v5[8..12], 5u32.to_le_bytes());
    let today = encode(&b.state);
    assert_ne!(v5, today, "the formats differ");
    let decoded = State::decode_snapshot(&v5).unwrap();
    assert_eq!(decoded.state_hash(), b.state.state_hash());
    assert_eq!(encode(&decoded), today);
}
