//! Evaluation against gold labels, and reading COLD.
//!
//! [`Scores`] accumulates, per code, true and false positives and false negatives over items
//! with a gold code set; [`Scores::report`] gives precision, recall and F1 per code, the
//! macro-F1 over codes present in the gold or the predictions, and the false-positive rate on
//! items whose gold set is empty (safe). [`read_cold`] parses a COLD split (`split, topic, label,
//! [fine-grained-label,] TEXT`; RFC 4180 quoting).

use crate::code::Code;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
}

#[derive(Debug, Default)]
pub struct Scores {
    per_code: BTreeMap<Code, Counts>,
    safe_items: u64,
    safe_flagged: u64,
    items: u64,
}

#[derive(Debug, Serialize)]
pub struct CodeReport {
    pub code: Code,
    pub support: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub items: u64,
    pub per_code: Vec<CodeReport>,
    pub macro_f1: f64,
    pub safe_items: u64,
    pub false_positive_rate_on_safe: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Scores {
    pub fn add(&mut self, gold: &BTreeSet<Code>, predicted: &BTreeSet<Code>) {
        self.items += 1;
        for c in gold.union(predicted) {
            let k = self.per_code.entry(*c).or_default();
            match (gold.contains(c), predicted.contains(c)) {
                (true, true) => k.tp += 1,
                (false, true) => k.fp += 1,
                (true, false) => k.fn_ += 1,
                (false, false) => unreachable!("in the union"),
            }
        }
        if gold.is_empty() {
            self.safe_items += 1;
            if !predicted.is_empty() {
                self.safe_flagged += 1;
            }
        }
    }

    pub fn report(&self) -> Report {
        let per_code: Vec<CodeReport> = self
            .per_code
            .iter()
            .map(|(code, k)| {
                let precision = ratio(k.tp, k.tp + k.fp);
                let recall = ratio(k.tp, k.tp + k.fn_);
                let f1 = ratio(2 * k.tp, 2 * k.tp + k.fp + k.fn_);
                CodeReport {
                    code: *code,
                    support: k.tp + k.fn_,
                    precision,
                    recall,
                    f1,
                }
            })
            .collect();
        let macro_f1 = if per_code.is_empty() {
            0.0
        } else {
            per_code.iter().map(|r| r.f1).sum::<f64>() / per_code.len() as f64
        };
        Report {
            items: self.items,
            per_code,
            macro_f1,
            safe_items: self.safe_items,
            false_positive_rate_on_safe: ratio(self.safe_flagged, self.safe_items),
        }
    }
}

/// One COLD row: id, topic, offensive or not, and the fine-grained label on the test split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdRow {
    pub id: String,
    pub topic: String,
    pub offensive: bool,
    pub fine: Option<u8>,
    pub text: String,
}

/// Parses one CSV record starting at `input`; returns the fields and the rest of the input.
fn csv_record(input: &str) -> (Vec<String>, &str) {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = input.char_indices().peekable();
    let mut quoted = false;
    while let Some((i, c)) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek().map(|p| p.1) == Some('"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '\n') => {
                fields.push(field.trim_end_matches('\r').to_string());
                return (fields, &input[i + 1..]);
            }
            (false, c) => field.push(c),
        }
    }
    fields.push(field);
    (fields, "")
}

/// Reads a COLD split. Errors name the record.
pub fn read_cold(csv: &str) -> Result<Vec<ColdRow>, String> {
    let csv = csv.trim_start_matches('\u{FEFF}');
    let (header, mut rest) = csv_record(csv);
    let col = |name: &str| header.iter().position(|h| h == name);
    let (label, text, topic) = match (col("label"), col("TEXT"), col("topic")) {
        (Some(l), Some(t), Some(p)) => (l, t, p),
        _ => return Err(format!("not a COLD file: header {header:?}")),
    };
    let fine = col("fine-grained-label");
    let mut rows = Vec::new();
    while !rest.is_empty() {
        let (fields, next) = csv_record(rest);
        rest = next;
        if fields.len() == 1 && fields[0].is_empty() {
            continue;
        }
        if fields.len() != header.len() {
            return Err(format!(
                "record {}: {} fields, header has {}",
                rows.len() + 1,
                fields.len(),
                header.len()
            ));
        }
        let offensive = match fields[label].as_str() {
            "0" => false,
            "1" => true,
            other => return Err(format!("record {}: label {other:?}", rows.len() + 1)),
        };
        rows.push(ColdRow {
            id: fields[0].clone(),
            topic: fields[topic].clone(),
            offensive,
            fine: fine.and_then(|f| fields[f].parse().ok()),
            text: fields[text].clone(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_and_doubled_quotes() {
        // Proves quoted fields keep commas, newlines and doubled quotes.
        let csv = "\u{FEFF},split,topic,label,TEXT\n1,train,race,0,\"a,b \"\"c\"\"\nd\"\n2,train,region,1,plain\n";
        let rows = read_cold(csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "a,b \"c\"\nd");
        assert!(rows[1].offensive && !rows[0].offensive);
    }

    #[test]
    fn scores_per_code_macro_and_safe_fp_rate() {
        // Proves P/R/F1 arithmetic on a hand-computed case.
        let set = |c: &[Code]| c.iter().copied().collect::<BTreeSet<_>>();
        let mut s = Scores::default();
        s.add(&set(&[Code::CyberViolence]), &set(&[Code::CyberViolence]));
        s.add(&set(&[Code::CyberViolence]), &set(&[]));
        s.add(&set(&[]), &set(&[Code::CyberViolence]));
        s.add(&set(&[]), &set(&[]));
        let r = s.report();
        let cv = &r.per_code[0];
        assert_eq!((cv.precision, cv.recall, cv.f1), (0.5, 0.5, 0.5));
        assert_eq!(r.false_positive_rate_on_safe, 0.5);
        assert_eq!(r.macro_f1, 0.5);
    }
}
