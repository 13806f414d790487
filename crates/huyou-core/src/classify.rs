//! Classification: text and metadata in, [`Category`] list (code, score, evidence, rules) out.
//!
//! [`Classifier::classify`] normalises the text ([`crate::normalise`]), then:
//! - finds every lexicon term (`data/lexicon.tsv`, one Aho-Corasick automaton, overlapping
//!   matches) and combines a code's term weights as noisy-or;
//! - if the text carries a reporting, education or anti-bias cue (`data/exempt.tsv`), multiplies
//!   the lexicon scores of the text codes by [`EXEMPT_FACTOR`];
//! - scores the text with the n-gram [`Model`]; above its threshold the text is offensive, and
//!   the offence is `incite_discrimination` when a group (`data/targets.tsv`) is named, else
//!   `cyber_violence`;
//! - counts each evasion variant the normaliser replaced as evidence of `bad_slang`;
//! - decides the codes of types 3 and 4 that need metadata through the gates in [`Meta`].
//!
//! A code is reported when its score reaches [`REPORT_SCORE_MIN`]. Evidence spans are byte
//! offsets into the text the caller sent.

use crate::code::{Basis, Code};
use crate::model::Model;
use crate::normalise::{Normalised, Normaliser};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

pub const REPORT_SCORE_MIN: f32 = 0.5;
/// A reporting/education/anti-bias cue keeps a single decisive term (0.9) below the threshold.
pub const EXEMPT_FACTOR: f32 = 0.3;
/// With an exemption cue, the model must clear its threshold plus this fraction of the rest of
/// the way to 1. Chosen on COLD dev with `huyou bench cold --split dev --margin M` (never test).
pub const EXEMPT_MODEL_MARGIN: f32 = 0.5;
/// At most this many evidence spans per code.
pub const EVIDENCE_PER_CODE_MAX: usize = 8;
const MODEL_EVIDENCE_MAX: usize = 3;

/// What the caller knows about what the content shows (MINORS.md types 3 and 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Meta {
    pub minor_appears: bool,
    pub age_under_14: bool,
    pub guardian_consent: bool,
    pub staged: bool,
    pub commercial: bool,
    pub shows_school_or_home: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Category {
    pub code: Code,
    pub score: f32,
    pub evidence: Vec<Evidence>,
    /// The rules that fired, e.g. `lex:傻逼`, `model:offensive`, `meta:minor_info_disclosure`,
    /// `exempt:education:拒绝`, `variant:pinyin_initials`.
    pub rules: Vec<String>,
}

struct LexEntry {
    code: Code,
    weight: f32,
    ascii: bool,
}

/// Lexicons, exemption cues, group targets and the model, built once and shared by threads.
pub struct Classifier {
    normaliser: Normaliser,
    lexicon: AhoCorasick,
    entries: Vec<LexEntry>,
    exempt: AhoCorasick,
    exempt_kinds: Vec<&'static str>,
    targets: AhoCorasick,
    model: Model,
    /// Fraction of the distance from the model's threshold to 1 added when a text is exempt.
    pub exempt_model_margin: f32,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("terms", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn tsv(table: &'static str) -> impl Iterator<Item = (usize, Vec<&'static str>)> {
    table
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(n, l)| (n + 1, l.split('\t').collect()))
}

fn automaton(patterns: &[&str]) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(patterns)
        .expect("lexicon automaton builds")
}

/// The model shipped in the crate, produced by `huyou train` (see `data/model.bin`).
pub const BUILTIN_MODEL: &[u8] = include_bytes!("../data/model.bin");

impl Classifier {
    /// The classifier with the built-in lexicons and model.
    pub fn builtin() -> Classifier {
        Classifier::with_model(Model::from_bytes(BUILTIN_MODEL).expect("built-in model is valid"))
    }

    pub fn with_model(model: Model) -> Classifier {
        let mut terms = Vec::new();
        let mut entries = Vec::new();
        for (n, cols) in tsv(include_str!("../data/lexicon.tsv")) {
            assert_eq!(cols.len(), 3, "lexicon.tsv line {n}: three columns");
            let code: Code = cols[0]
                .parse()
                .unwrap_or_else(|e| panic!("lexicon.tsv line {n}: {e}"));
            let weight: f32 = cols[1].parse().expect("lexicon weight");
            assert!(
                weight > 0.0 && weight < 1.0,
                "lexicon.tsv line {n}: weight in (0, 1)"
            );
            terms.push(cols[2]);
            entries.push(LexEntry {
                code,
                weight,
                ascii: cols[2].is_ascii(),
            });
        }
        let mut cues = Vec::new();
        let mut exempt_kinds = Vec::new();
        for (n, cols) in tsv(include_str!("../data/exempt.tsv")) {
            assert_eq!(cols.len(), 2, "exempt.tsv line {n}: two columns");
            exempt_kinds.push(cols[0]);
            cues.push(cols[1]);
        }
        let targets: Vec<&str> = tsv(include_str!("../data/targets.tsv"))
            .map(|(_, c)| c[0])
            .collect();
        Classifier {
            normaliser: Normaliser::new(),
            lexicon: automaton(&terms),
            entries,
            exempt: automaton(&cues),
            exempt_kinds,
            targets: automaton(&targets),
            model,
            exempt_model_margin: EXEMPT_MODEL_MARGIN,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn normaliser(&self) -> &Normaliser {
        &self.normaliser
    }

    /// The categories `text` falls under, strongest first; empty when it is safe.
    pub fn classify(&self, text: &str, meta: &Meta) -> Vec<Category> {
        let norm = self.normaliser.normalise(text);
        let mut acc = Accumulator::new(text, &norm);
        self.lexicon_hits(&norm, &mut acc);
        self.exemptions(&norm, &mut acc);
        self.model_hits(&norm, &mut acc);
        for v in &norm.variants {
            acc.add_span(
                Code::BadSlang,
                0.6,
                v.start,
                v.end,
                format!("variant:{:?}", v.kind),
            );
        }
        apply_meta_gates(meta, &mut acc);
        acc.finish()
    }

    fn lexicon_hits(&self, norm: &Normalised, acc: &mut Accumulator) {
        let bytes = norm.text.as_bytes();
        for m in self.lexicon.find_overlapping_iter(&norm.text) {
            let e = &self.entries[m.pattern().as_usize()];
            if e.ascii {
                let before = m.start() > 0 && bytes[m.start() - 1].is_ascii_alphanumeric();
                let after = m.end() < bytes.len() && bytes[m.end()].is_ascii_alphanumeric();
                if before || after {
                    continue;
                }
            }
            let rule = format!("lex:{}", &norm.text[m.start()..m.end()]);
            acc.add(e.code, e.weight, m.start(), m.end(), rule);
        }
    }

    fn exemptions(&self, norm: &Normalised, acc: &mut Accumulator) {
        if let Some(m) = self.exempt.find(&norm.text) {
            let kind = self.exempt_kinds[m.pattern().as_usize()];
            acc.exempt = Some(format!("exempt:{kind}:{}", &norm.text[m.start()..m.end()]));
        }
    }

    fn model_hits(&self, norm: &Normalised, acc: &mut Accumulator) {
        let (p, top) = self.model.score(&norm.text, MODEL_EVIDENCE_MAX);
        let mut t = self.model.threshold;
        if acc.exempt.is_some() {
            // A reporting, education or anti-bias cue raises the bar for the model as well.
            t += (1.0 - t) * self.exempt_model_margin;
        }
        if p < t {
            return;
        }
        let score = REPORT_SCORE_MIN + (1.0 - REPORT_SCORE_MIN) * (p - t) / (1.0 - t).max(1e-6);
        let target = self.targets.find(&norm.text);
        let code = if target.is_some() {
            Code::InciteDiscrimination
        } else {
            Code::CyberViolence
        };
        let slot = acc.slot(code);
        slot.model = slot.model.max(score);
        slot.rules.push(format!("model:offensive:p={p:.3}"));
        if let Some(m) = target {
            acc.evidence(code, m.start(), m.end());
            acc.slot(code)
                .rules
                .push(format!("target:{}", &norm.text[m.start()..m.end()]));
        }
        for c in top {
            acc.evidence(code, c.start, c.end);
        }
    }
}

/// Types 3 and 4: what the caller says the content shows decides whether the code applies;
/// the text's cue terms are evidence (and, where MINORS.md names a kind of content, required).
fn apply_meta_gates(meta: &Meta, acc: &mut Accumulator) {
    let has_text_code = acc
        .slots
        .iter()
        .any(|(c, s)| c.basis() == Basis::Text && s.score() >= 0.5);
    let gates = [
        // 未经监护人同意展示不满十四周岁未成年人的学习、生活等信息: no text cue needed.
        (
            Code::MinorInfoDisclosure,
            meta.minor_appears
                && meta.age_under_14
                && !meta.guardian_consent
                && meta.shows_school_or_home,
            false,
        ),
        // 利用未成年人摆拍演绎不良剧情: staged, and a plot cue or harmful content in the text.
        (
            Code::MinorStagedPlot,
            meta.minor_appears && meta.staged,
            !has_text_code,
        ),
        // 利用未成年人营销不适宜的产品 / 打造争议人设: commercial, and a product or persona cue.
        (
            Code::MinorPersonaProfit,
            meta.minor_appears && meta.commercial,
            true,
        ),
        (Code::MinorMockery, meta.minor_appears, true),
        (Code::MinorMoralTest, meta.minor_appears, true),
    ];
    for (code, gate, needs_cue) in gates {
        let cue = acc.slots.iter().any(|(c, s)| *c == code && s.lexicon > 0.0);
        let fires = gate && (cue || !needs_cue);
        let slot = acc.slot(code);
        if fires {
            slot.meta = 0.9;
            slot.rules.push(format!("meta:{code}"));
        } else {
            slot.lexicon = 0.0;
        }
    }
}

#[derive(Default)]
struct Slot {
    lexicon: f32,
    model: f32,
    meta: f32,
    evidence: Vec<(usize, usize)>,
    rules: Vec<String>,
}

impl Slot {
    fn score(&self) -> f32 {
        self.lexicon.max(self.model).max(self.meta)
    }
}

struct Accumulator<'a> {
    text: &'a str,
    norm: &'a Normalised,
    slots: Vec<(Code, Slot)>,
    exempt: Option<String>,
}

impl<'a> Accumulator<'a> {
    fn new(text: &'a str, norm: &'a Normalised) -> Self {
        Accumulator {
            text,
            norm,
            slots: Vec::new(),
            exempt: None,
        }
    }

    fn slot(&mut self, code: Code) -> &mut Slot {
        let i = match self.slots.iter().position(|(c, _)| *c == code) {
            Some(i) => i,
            None => {
                self.slots.push((code, Slot::default()));
                self.slots.len() - 1
            }
        };
        &mut self.slots[i].1
    }

    /// Evidence at a span of the normalised text.
    fn evidence(&mut self, code: Code, start: usize, end: usize) {
        let (start, end) = self.norm.origin(start, end);
        let slot = self.slot(code);
        if !slot.evidence.contains(&(start, end)) {
            slot.evidence.push((start, end));
        }
    }

    fn add(&mut self, code: Code, weight: f32, start: usize, end: usize, rule: String) {
        let (start, end) = self.norm.origin(start, end);
        self.add_span(code, weight, start, end, rule);
    }

    /// A weighted hit at a span of the original text.
    fn add_span(&mut self, code: Code, weight: f32, start: usize, end: usize, rule: String) {
        let slot = self.slot(code);
        slot.lexicon = 1.0 - (1.0 - slot.lexicon) * (1.0 - weight);
        if !slot.evidence.contains(&(start, end)) {
            slot.evidence.push((start, end));
        }
        if !slot.rules.contains(&rule) {
            slot.rules.push(rule);
        }
    }

    fn finish(mut self) -> Vec<Category> {
        if let Some(rule) = self.exempt.take() {
            for (code, slot) in &mut self.slots {
                if code.basis() == Basis::Text && slot.lexicon > 0.0 {
                    slot.lexicon *= EXEMPT_FACTOR;
                    slot.rules.push(rule.clone());
                }
            }
        }
        let text = self.text;
        let mut out: Vec<Category> = self
            .slots
            .into_iter()
            .filter(|(_, s)| s.score() >= REPORT_SCORE_MIN)
            .map(|(code, mut s)| {
                s.evidence.sort_unstable();
                // A span inside another span of the same code adds nothing for a reader.
                let all = s.evidence.clone();
                s.evidence.retain(|&(a, b)| {
                    !all.iter()
                        .any(|&(c, d)| c <= a && b <= d && (c, d) != (a, b))
                });
                s.evidence.truncate(EVIDENCE_PER_CODE_MAX);
                let evidence = s
                    .evidence
                    .iter()
                    .map(|&(start, end)| Evidence {
                        start,
                        end,
                        text: text[start..end].to_string(),
                    })
                    .collect();
                let score = (s.score() * 1000.0).round() / 1000.0;
                Category {
                    code,
                    score,
                    evidence,
                    rules: s.rules,
                }
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.code.cmp(&b.code)));
        out
    }
}
