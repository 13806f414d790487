//! Normalisation: undo the spellings people use to slip past filters, and remember where every
//! character of the result came from in the text the user wrote.
//!
//! [`Normaliser::normalise`] turns the input into a [`Normalised`] text in five steps:
//! 1. zero-width and other invisible format characters are dropped;
//! 2. each character goes through NFKC (full-width `ＳＢ` becomes `SB`, circled and compatibility
//!    forms become plain ones) and ASCII is lower-cased;
//! 3. traditional characters in a curated table become simplified ones (`說` → `说`);
//! 4. anything that is neither a letter nor a digit is dropped, so symbols inserted between the
//!    characters of a term (`傻.逼`, `傻 逼`, `傻😀逼`) no longer break it;
//! 5. homophone (谐音), split-character (拆字), pinyin and pinyin-initial variants from
//!    `data/variants.tsv` are replaced by their canonical lexicon form.
//!
//! Every byte of the normalised text carries the byte range of the original character (or, for
//! a replaced variant, of the whole original variant) it came from, so [`Normalised::origin`]
//! maps any span of the normalised text back to the exact original bytes.
//!
//! Rejected alternative: a full traditional→simplified conversion (OpenCC) and a full pinyin
//! conversion of every text. Both need large tables and produce many false merges; the
//! classifier only needs the lexicon's terms to survive evasion, so the tables stay curated.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use unicode_normalization::UnicodeNormalization;

/// Traditional → simplified pairs for characters that occur in lexicon terms and common text.
/// Curated, not complete: see the module docs for why.
const TRADITIONAL_SIMPLIFIED: &str = "說说話话這这們们個个來来時时為为會会與与對对從从學学習习\
    認认識识讓让還还裡里裏里點点開开關关門门問问間间題题應应該该麼么嗎吗沒没錢钱買买賣卖\
    愛爱戀恋親亲媽妈爸爸兒儿孫孙孩孩鄉乡國国語语讀读書书無无用用敗败殺杀傷伤煙烟酒酒藥药\
    賭赌騙骗網网絡络遊游戲戏陪陪聊聊練练號号費费錄录視视頻频聽听聲声圖图類类罵骂醜丑豬猪\
    狗狗雞鸡蠢蠢傻傻腦脑殘残滾滚癡痴瘋疯歧歧視视黑黑種种族族婦妇權权蝦虾窮穷貴贵豪豪車车\
    樓楼紋纹身身喝喝飲饮暴暴減减肥肥吃吃醫医療疗課课逃逃曠旷抄抄襲袭作作弊弊欺欺淩凌霸霸\
    凌凌辱辱儈侩偷偷搶抢劫劫報报導导教教育育預预防防舉举範范險险危危駕驾駛驶飆飙車车戰战\
    鬥斗偶偶像像飯饭圈圈應应援援刷刷榜榜粉粉絲丝撕撕氪氪充充值值打打賞赏禮礼物物約约炮炮\
    姦奸淫淫蕩荡騷骚內内褲裤誘诱惑惑處处女女男男嫖嫖娼娼妓妓謠谣偽伪科科學学轉转發发氣气\
    災灾難难絕绝對对厭厌世世輕轻生生結结束束跳跳樓楼割割腕腕憂忧鬱郁頹颓廢废佛佛系系躺躺\
    錯错誤误體体態态審审美美瘦瘦骨骨顏颜值值整整容容貸贷款款縣县區区東东蘭兰龍龙歲岁齡龄\
    級级班班校校園园址址庭庭電电紙纸鐘钟萬万億亿張张劉刘陳陈楊杨趙赵黃黄吳吴鄭郑馮冯";

/// Characters with no visible form that people insert to break a term apart.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

/// What kind of evasion a replaced variant was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantKind {
    Homophone,
    Split,
    Pinyin,
    PinyinInitials,
}

/// One variant that step 5 replaced: where it was in the original text and what it stood for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantHit {
    pub kind: VariantKind,
    /// Original byte range of the variant as the user wrote it.
    pub start: usize,
    pub end: usize,
    pub canonical: &'static str,
}

/// A normalised text with, for every byte, the original byte range it came from.
#[derive(Clone, Debug, Default)]
pub struct Normalised {
    pub text: String,
    origin_start: Vec<u32>,
    origin_end: Vec<u32>,
    pub variants: Vec<VariantHit>,
}

impl Normalised {
    /// The original byte range `[start, end)` that the normalised bytes `[start, end)` came from.
    /// `start..end` must be a non-empty range on character boundaries of [`Normalised::text`].
    pub fn origin(&self, start: usize, end: usize) -> (usize, usize) {
        assert!(start < end && end <= self.text.len());
        assert!(self.text.is_char_boundary(start) && self.text.is_char_boundary(end));
        (
            self.origin_start[start] as usize,
            self.origin_end[end - 1] as usize,
        )
    }

    fn push(&mut self, c: char, start: usize, end: usize) {
        let n = c.len_utf8();
        self.text.push(c);
        for _ in 0..n {
            self.origin_start.push(start as u32);
            self.origin_end.push(end as u32);
        }
    }
}

struct Variant {
    kind: VariantKind,
    canonical: &'static str,
}

/// The normalisation tables, built once and shared.
#[derive(Debug)]
pub struct Normaliser {
    simplified: std::collections::HashMap<char, char>,
    variants: AhoCorasick,
    variant_info: Vec<VariantInfo>,
}

#[derive(Debug)]
struct VariantInfo {
    kind: VariantKind,
    canonical: &'static str,
    ascii: bool,
}

impl Default for Normaliser {
    fn default() -> Self {
        Self::new()
    }
}

/// Texts longer than this are refused by callers; offsets are stored as `u32`.
pub const TEXT_BYTES_MAX: usize = 1 << 20;

impl Normaliser {
    pub fn new() -> Normaliser {
        let mut simplified = std::collections::HashMap::new();
        let chars: Vec<char> = TRADITIONAL_SIMPLIFIED
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(
            chars.len().is_multiple_of(2),
            "traditional/simplified table must be pairs"
        );
        for pair in chars.chunks(2) {
            if pair[0] != pair[1] {
                simplified.insert(pair[0], pair[1]);
            }
        }
        let (patterns, variant_info) = variant_table();
        let variants = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("variant table builds");
        Normaliser {
            simplified,
            variants,
            variant_info,
        }
    }

    /// Steps 1–4 for one original character; `push` receives each resulting character.
    fn fold_char(&self, c: char, mut push: impl FnMut(char)) {
        if is_invisible(c) {
            return;
        }
        for d in std::iter::once(c).nfkc() {
            let d = d.to_ascii_lowercase();
            let d = self.simplified.get(&d).copied().unwrap_or(d);
            if d.is_alphanumeric() {
                push(d);
            }
        }
    }

    pub fn normalise(&self, input: &str) -> Normalised {
        assert!(
            input.len() <= TEXT_BYTES_MAX,
            "caller must refuse texts over TEXT_BYTES_MAX"
        );
        let mut folded = Normalised::default();
        for (i, c) in input.char_indices() {
            let end = i + c.len_utf8();
            self.fold_char(c, |d| folded.push(d, i, end));
        }
        self.replace_variants(folded)
    }

    fn replace_variants(&self, folded: Normalised) -> Normalised {
        let mut out = Normalised {
            text: String::with_capacity(folded.text.len()),
            origin_start: Vec::with_capacity(folded.text.len()),
            origin_end: Vec::with_capacity(folded.text.len()),
            variants: Vec::new(),
        };
        let bytes = folded.text.as_bytes();
        let mut copied_to = 0;
        for m in self.variants.find_iter(&folded.text) {
            let info = &self.variant_info[m.pattern().as_usize()];
            // An ASCII variant (pinyin, initials) must stand alone: `sb` inside `usb` is not one.
            if info.ascii {
                let before = m.start() > 0 && bytes[m.start() - 1].is_ascii_alphanumeric();
                let after = m.end() < bytes.len() && bytes[m.end()].is_ascii_alphanumeric();
                if before || after {
                    continue;
                }
            }
            copy_range(&folded, &mut out, copied_to, m.start());
            let (start, end) = folded.origin(m.start(), m.end());
            for c in info.canonical.chars() {
                out.push(c, start, end);
            }
            out.variants.push(VariantHit {
                kind: info.kind,
                start,
                end,
                canonical: info.canonical,
            });
            copied_to = m.end();
        }
        copy_range(&folded, &mut out, copied_to, folded.text.len());
        out
    }
}

fn copy_range(from: &Normalised, to: &mut Normalised, start: usize, end: usize) {
    to.text.push_str(&from.text[start..end]);
    to.origin_start
        .extend_from_slice(&from.origin_start[start..end]);
    to.origin_end
        .extend_from_slice(&from.origin_end[start..end]);
}

fn variant_table() -> (Vec<String>, Vec<VariantInfo>) {
    const TABLE: &str = include_str!("../data/variants.tsv");
    let mut patterns = Vec::new();
    let mut infos = Vec::new();
    let mut add = |pattern: String, v: Variant| {
        assert_ne!(pattern, v.canonical, "identity variant in variants.tsv");
        let ascii = pattern.is_ascii();
        patterns.push(pattern);
        infos.push(VariantInfo {
            kind: v.kind,
            canonical: v.canonical,
            ascii,
        });
    };
    for (n, line) in TABLE.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&'static str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "variants.tsv line {}: three columns", n + 1);
        let (kind, variant, canonical) = (cols[0], cols[1], cols[2]);
        match kind {
            "homophone" => add(
                variant.into(),
                Variant {
                    kind: VariantKind::Homophone,
                    canonical,
                },
            ),
            "split" => add(
                variant.into(),
                Variant {
                    kind: VariantKind::Split,
                    canonical,
                },
            ),
            "pinyin" | "pinyin+initials" => {
                let syllables: Vec<&str> = variant.split(' ').collect();
                add(
                    syllables.concat(),
                    Variant {
                        kind: VariantKind::Pinyin,
                        canonical,
                    },
                );
                if kind == "pinyin+initials" {
                    assert!(
                        syllables.len() >= 2,
                        "variants.tsv line {}: initials need 2+",
                        n + 1
                    );
                    let initials: String = syllables.iter().map(|s| initial(s)).collect();
                    add(
                        initials,
                        Variant {
                            kind: VariantKind::PinyinInitials,
                            canonical,
                        },
                    );
                }
            }
            other => panic!("variants.tsv line {}: unknown kind {other}", n + 1),
        }
    }
    generated_pinyin(&mut patterns, &mut infos);
    (patterns, infos)
}

/// A generated full pinyin shorter than this (letters) is too likely to be an ordinary word.
const GENERATED_PINYIN_LETTERS_MIN: usize = 5;
/// Initials are generated only for terms of this many syllables or more: two letters collide
/// with too much ordinary text (`cp`, `dl`).
const GENERATED_INITIALS_SYLLABLES_MIN: usize = 3;

/// Full pinyin and initials for every lexicon term, from `data/lexicon_pinyin.tsv` (generated by
/// `data/lexicon_pinyin.py`). Explicit entries of `variants.tsv` come first and win.
fn generated_pinyin(patterns: &mut Vec<String>, infos: &mut Vec<VariantInfo>) {
    const TABLE: &str = include_str!("../data/lexicon_pinyin.tsv");
    let mut known: std::collections::HashSet<String> = patterns.iter().cloned().collect();
    for (n, line) in TABLE.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (term, pinyin) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("lexicon_pinyin.tsv line {}: two columns", n + 1));
        let syllables: Vec<&str> = pinyin.split(' ').collect();
        let joined = syllables.concat();
        let initials: String = syllables.iter().map(|s| initial(s)).collect();
        let mut add = |pattern: String, kind: VariantKind| {
            if known.insert(pattern.clone()) {
                patterns.push(pattern);
                infos.push(VariantInfo {
                    kind,
                    canonical: term,
                    ascii: true,
                });
            }
        };
        if joined.len() >= GENERATED_PINYIN_LETTERS_MIN {
            add(joined, VariantKind::Pinyin);
        }
        if syllables.len() >= GENERATED_INITIALS_SYLLABLES_MIN {
            add(initials, VariantKind::PinyinInitials);
        }
    }
}

/// A syllable's initial as people abbreviate it: the first letter (`zhi` → `z`).
fn initial(syllable: &str) -> &str {
    &syllable[..1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Normalises `input` and returns the normalised text and the original text under `term`.
    fn find(input: &str, term: &str) -> (String, String) {
        let n = Normaliser::new().normalise(input);
        let at = n
            .text
            .find(term)
            .unwrap_or_else(|| panic!("{term} not in {:?}", n.text));
        let (start, end) = n.origin(at, at + term.len());
        (n.text.clone(), input[start..end].to_string())
    }

    #[test]
    fn zero_width_characters_are_removed_and_offsets_span_them() {
        // Proves a zero-width space inside a term is dropped and the span covers it exactly.
        let input = "你是傻\u{200B}逼吧";
        let (text, original) = find(input, "傻逼");
        assert_eq!(text, "你是傻逼吧");
        assert_eq!(original, "傻\u{200B}逼");
        let n = Normaliser::new().normalise(input);
        assert_eq!(n.origin(6, 12), (6, 15));
    }

    #[test]
    fn full_width_ascii_folds_and_pinyin_initials_map_back() {
        // Proves full-width `ＳＢ` goes through NFKC and lower-casing to `sb`, then to 傻逼,
        // with the evidence covering the six original bytes.
        let input = "你就是个ＳＢ";
        let n = Normaliser::new().normalise(input);
        assert_eq!(n.text, "你就是个傻逼");
        assert_eq!(n.origin(12, 18), (12, 18));
        assert_eq!(n.variants[0].kind, VariantKind::PinyinInitials);
    }

    #[test]
    fn initials_inside_a_word_are_not_variants() {
        // Proves `sb` inside `usb` is left alone: ASCII variants need a boundary.
        let n = Normaliser::new().normalise("买了个usb线");
        assert_eq!(n.text, "买了个usb线");
        assert!(n.variants.is_empty());
    }

    #[test]
    fn traditional_characters_become_simplified() {
        // Proves 讀書無用 is read as 读书无用 and maps back to the traditional original.
        let (text, original) = find("都說讀書無用啊", "读书无用");
        assert_eq!(text, "都说读书无用啊");
        assert_eq!(original, "讀書無用");
    }

    #[test]
    fn inserted_symbols_and_spaces_are_removed() {
        // Proves punctuation, spaces and emoji inserted into a term are dropped, and the span
        // runs from the first to the last original character of the term.
        let input = "他就是个傻 . 😀逼!";
        let (text, original) = find(input, "傻逼");
        assert_eq!(text, "他就是个傻逼");
        assert_eq!(original, "傻 . 😀逼");
    }

    #[test]
    fn homophones_map_to_the_canonical_term() {
        // Proves 草泥马 becomes 操你妈 and the evidence is the three original characters.
        let input = "草泥马的";
        let n = Normaliser::new().normalise(input);
        assert_eq!(n.text, "操你妈的");
        assert_eq!(n.origin(0, 9), (0, 9));
        assert_eq!(n.variants[0].kind, VariantKind::Homophone);
    }

    #[test]
    fn split_characters_are_joined() {
        // Proves 弓虽女干 (强奸 written as components) becomes 强奸; each canonical character maps
        // to the whole original variant, 12 bytes.
        let input = "说要弓虽女干她";
        let n = Normaliser::new().normalise(input);
        assert_eq!(n.text, "说要强奸她");
        let at = n.text.find("强奸").unwrap();
        assert_eq!(n.origin(at, at + 6), (6, 18));
        assert_eq!(n.origin(at + 3, at + 6), (6, 18));
        assert_eq!(n.variants[0].kind, VariantKind::Split);
    }

    #[test]
    fn full_pinyin_with_spaces_maps_back() {
        // Proves `Cao Ni Ma` (spaces removed, lower-cased) becomes 操你妈 spanning all 9 bytes.
        let input = "Cao Ni Ma!";
        let (text, original) = find(input, "操你妈");
        assert_eq!(text, "操你妈");
        assert_eq!(original, "Cao Ni Ma");
    }

    #[test]
    fn generated_pinyin_and_initials_of_lexicon_terms_map_back() {
        // Proves a lexicon term written in full pinyin, or in initials when it has three or more
        // syllables, comes back as the term with the span of what was written.
        let (text, original) = find("今天一起 Chou Yan 吧", "抽烟");
        assert_eq!(text, "今天一起抽烟吧");
        assert_eq!(original, "Chou Yan");
        let (text, original) = find("真的HZMYS啊", "活着没意思");
        assert_eq!(text, "真的活着没意思啊");
        assert_eq!(original, "HZMYS");
    }

    #[test]
    fn every_lexicon_text_term_has_its_pinyin_line() {
        // Proves lexicon_pinyin.tsv was regenerated after lexicon.tsv changed.
        let pinyin = include_str!("../data/lexicon_pinyin.tsv");
        let meta = ["minor_staged_plot", "minor_mockery", "minor_persona_profit"];
        let meta = [&meta[..], &["minor_moral_test", "minor_info_disclosure"]].concat();
        for line in include_str!("../data/lexicon.tsv").lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if line.starts_with('#') || cols.len() != 3 || meta.contains(&cols[0]) {
                continue;
            }
            let term = cols[2];
            if term.chars().count() >= 2
                && term.chars().all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
            {
                assert!(
                    pinyin.contains(&format!("\n{term}\t")),
                    "{term}: run data/lexicon_pinyin.py"
                );
            }
        }
    }

    #[test]
    fn circled_and_compatibility_forms_fold() {
        // Proves NFKC folds compatibility forms (㊙ is kept as 秘, ① as 1).
        let n = Normaliser::new().normalise("①㊙");
        assert_eq!(n.text, "1秘");
        assert_eq!(n.origin(0, 1), (0, 3));
    }

    #[test]
    fn every_table_entry_normalises_to_its_canonical_form() {
        // Proves no table entry is shadowed by another: each variant, alone, yields its canonical.
        let norm = Normaliser::new();
        let (patterns, infos) = variant_table();
        for (p, info) in patterns.iter().zip(&infos) {
            assert_eq!(norm.normalise(p).text, info.canonical, "variant {p}");
        }
    }
}
