//! The wallet transfers section and the expiry queue over it.

use super::bytes::{Dec, Enc};
use super::*;

/// (expires_at, transfer) in queue order.
type ExpiryQueue = VecDeque<(i64, u32)>;

pub(super) fn encode_transfers(
    transfers: &Chunked<Transfer>,
    expiry_queue: &VecDeque<(i64, u32)>,
    e: &mut Enc<'_>,
) {
    e.count(transfers.len());
    for t in transfers {
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

pub(super) fn decode_transfers(d: &mut Dec<'_>, n: usize) -> Res<(Vec<Transfer>, ExpiryQueue)> {
    let count = d.count(TRANSFER_BYTES, "transfer count")?;
    let transfers = d.records(count, TRANSFER_BYTES, |_, r| {
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
    let count = d.count(QUEUE_BYTES, "expiry queue count")?;
    // Transfers are queued as they are made: by time, and by id without repeats.
    let (mut prev_time, mut prev_t) = (i64::MIN, None);
    let queue = d.records(count, QUEUE_BYTES, |_, r| {
        let time: i64 = r.get();
        let t = r.index(transfers.len(), "queued transfer")?;
        if prev_t.is_some_and(|prev| prev >= t) {
            return Err("expiry queue not in transfer order");
        }
        if time < prev_time || time != transfers[t as usize].expires_at {
            return Err("expiry queue time");
        }
        (prev_time, prev_t) = (time, Some(t));
        Ok((time, t))
    })?;
    let expiry_queue = VecDeque::from(queue);
    Ok((transfers, expiry_queue))
}
