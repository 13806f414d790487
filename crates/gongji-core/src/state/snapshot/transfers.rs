//! The wallet transfers section (hot records; final chunks are in history files) and the
//! expiry queue over it.

use super::bytes::{Dec, Enc};
use super::*;

/// (expires_at, transfer) in queue order.
type ExpiryQueue = VecDeque<(i64, u32)>;

/// Format 6 writes the count of cold chunks and the hot records; earlier formats every
/// record (they are written for tests only, from a state with every chunk readable).
pub(super) fn encode_transfers(
    transfers: &History<Transfer>,
    expiry_queue: &VecDeque<(i64, u32)>,
    version: u32,
    e: &mut Enc<'_>,
) {
    let records = if version >= 6 {
        e.history(transfers);
        transfers.hot_iter()
    } else {
        e.count(transfers.len());
        transfers.iter()
    };
    for t in records {
        e.spill();
        e.put(t.from);
        e.put(t.to);
        e.put(t.amount);
        e.put(t.source as u8);
        e.bool(t.cross_province);
        e.put(t.status as u8);
        e.put(t.created);
        e.put(t.expires_at);
    }
    e.count(expiry_queue.len());
    for &(time, t) in expiry_queue {
        e.put(time);
        e.put(t);
    }
}

pub(super) fn decode_transfers(
    d: &mut Dec<'_>,
    n: usize,
    version: u32,
) -> Res<(History<Transfer>, ExpiryQueue)> {
    let (cold, count) = if version >= 6 {
        d.history(TRANSFER_BYTES, "transfer count")?
    } else {
        (0, d.count(TRANSFER_BYTES, "transfer count")?)
    };
    let hot = d.records(count, TRANSFER_BYTES, |_, r| {
        Ok(Transfer {
            from: r.index(n, "transfer sender")?,
            to: r.index(n, "transfer receiver")?,
            amount: r.get(),
            source: r.tag(&SOURCES, "transfer source")?,
            cross_province: r.bool()?,
            status: r.tag(&TRANSFER_STATUSES, "transfer status")?,
            created: r.get(),
            expires_at: r.get(),
        })
    })?;
    let transfers = History::from_parts(cold, hot);
    let first = transfers.cold_len();
    let count = d.count(QUEUE_BYTES, "expiry queue count")?;
    // Transfers are queued as they are made: by time, and by id without repeats; every
    // queued transfer is hot (a chunk goes cold only once none of its transfers is queued).
    let (mut prev_time, mut prev_t) = (i64::MIN, None);
    let queue = d.records(count, QUEUE_BYTES, |_, r| {
        let time: i64 = r.get();
        let t = r.index(transfers.len(), "queued transfer")?;
        if (t as usize) < first {
            return Err("queued transfer in a cold chunk");
        }
        if prev_t.is_some_and(|prev| prev >= t) {
            return Err("expiry queue not in transfer order");
        }
        if time < prev_time || time != transfers.get(t as usize).expires_at {
            return Err("expiry queue time");
        }
        (prev_time, prev_t) = (time, Some(t));
        Ok((time, t))
    })?;
    let expiry_queue = VecDeque::from(queue);
    Ok((transfers, expiry_queue))
}
