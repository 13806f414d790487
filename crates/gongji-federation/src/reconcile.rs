//! Reconciliation between engines (the national platform's 对账, issue 14): per pair of
//! engines and CST day of creation, what the sender counts as sent, committed and returned
//! must equal what the receiver counts as received, accepted and refused. Before quiescence a
//! difference may be an exchange still on the bus; after it, any difference is an error.

use std::collections::BTreeMap;

use gongji_core::federation::{EngineId, FedCounters, Tally};
use gongji_core::time::format_date;

/// One engine's counters, as `State::fed_counters` gives them.
pub type EngineCounters = BTreeMap<(i32, EngineId), FedCounters>;

/// Every difference between the engines given, one line each (empty: they agree). Pairs
/// with an engine not given are not compared.
pub fn reconcile(engines: &[(EngineId, EngineCounters)]) -> Vec<String> {
    let by_id: BTreeMap<EngineId, &EngineCounters> =
        engines.iter().map(|(id, c)| (*id, c)).collect();
    let mut out = Vec::new();
    let none = FedCounters::default();
    for (a, counters_a) in &by_id {
        for (b, counters_b) in &by_id {
            if a == b {
                continue;
            }
            let days = counters_a
                .keys()
                .filter(|(_, peer)| peer == b)
                .chain(counters_b.keys().filter(|(_, peer)| peer == a))
                .map(|(day, _)| *day);
            let days: std::collections::BTreeSet<i32> = days.collect();
            for day in days {
                let s = counters_a.get(&(day, *b)).unwrap_or(&none);
                let r = counters_b.get(&(day, *a)).unwrap_or(&none);
                let pairs: [(&str, Tally, Tally); 3] = [
                    ("sent/received", s.sent, r.received),
                    ("committed/accepted", s.committed, r.accepted),
                    ("returned/refused", s.returned, r.refused),
                ];
                for (what, x, y) in pairs {
                    if x != y {
                        out.push(format!(
                            "{a}→{b} {}: {what} {} ({} fen) vs {} ({} fen)",
                            format_date(day),
                            x.count,
                            x.amount,
                            y.count,
                            y.amount
                        ));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(count: u64, amount: u64) -> Tally {
        Tally { count, amount }
    }

    /// Agreeing counters give nothing; a transfer the receiver accepted but the sender
    /// returned is reported on both lines it touches, with the day and the engines.
    #[test]
    fn differences_are_reported_by_pair_and_day() {
        let (a, b) = (EngineId::from("gd").unwrap(), EngineId::from("bj").unwrap());
        let day = 20_000;
        let sender = FedCounters {
            sent: tally(3, 300),
            committed: tally(2, 200),
            returned: tally(1, 100),
            ..FedCounters::default()
        };
        let receiver = FedCounters {
            received: tally(3, 300),
            accepted: tally(2, 200),
            refused: tally(1, 100),
            ..FedCounters::default()
        };
        let ok = [
            (a, BTreeMap::from([((day, b), sender)])),
            (b, BTreeMap::from([((day, a), receiver)])),
        ];
        assert!(reconcile(&ok).is_empty());
        let wrong = FedCounters {
            accepted: tally(3, 300),
            refused: tally(0, 0),
            ..receiver
        };
        let bad = [
            (a, BTreeMap::from([((day, b), sender)])),
            (b, BTreeMap::from([((day, a), wrong)])),
        ];
        let diffs = reconcile(&bad);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs[0].starts_with("gd→bj 2024-10-04: committed/accepted 2 (200 fen) vs 3"));
    }
}
