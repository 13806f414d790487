//! Properties of normalisation and classification over arbitrary text: no panic, and every
//! offset a valid span of the input.

use huyou_core::{Classifier, Meta, Normaliser};
use proptest::prelude::*;
use std::sync::OnceLock;

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(Classifier::builtin)
}

/// Text mixing lexicon characters, evasion material (zero-width, full-width, pinyin letters,
/// punctuation, emoji, traditional characters) and any other character.
fn text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("傻".to_string()),
        Just("逼".to_string()),
        Just("\u{200B}".to_string()),
        Just("ＳＢ".to_string()),
        Just("sb".to_string()),
        Just("讀書無用".to_string()),
        Just("弓虽女干".to_string()),
        Just("😀".to_string()),
        Just(" .,!".to_string()),
        Just("e\u{301}".to_string()),
        Just("\u{FDFA}".to_string()), // NFKC expands this one character to eighteen
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_normalised_span_maps_to_a_span_of_the_input(input in text()) {
        // Proves origin() gives in-bounds, char-aligned, ordered spans for every character.
        let n = Normaliser::new().normalise(&input);
        let mut last_start = 0;
        for (i, c) in n.text.char_indices() {
            let (start, end) = n.origin(i, i + c.len_utf8());
            prop_assert!(start < end && end <= input.len());
            prop_assert!(input.is_char_boundary(start) && input.is_char_boundary(end));
            prop_assert!(start >= last_start);
            last_start = start;
        }
    }

    #[test]
    fn classification_evidence_slices_the_input(input in text()) {
        // Proves every evidence span of every category is the input's text at those offsets
        // and every score is within [0.5, 1].
        for cat in classifier().classify(&input, &Meta::default()) {
            prop_assert!((0.5..=1.0).contains(&cat.score));
            for ev in &cat.evidence {
                prop_assert_eq!(input.get(ev.start..ev.end), Some(ev.text.as_str()));
            }
        }
    }
}
