//! [`Code`]: the categories of MINORS.md, with their stable snake_case names.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident = $name:literal, $kind:ident;)*) => {
        /// A category of information that may harm minors (MINORS.md). The names are stable.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// How the code is decided: from text alone, or gated by the caller's metadata.
            pub fn basis(self) -> Basis {
                match self { $(Code::$variant => Basis::$kind,)* }
            }
        }

        impl std::str::FromStr for Code {
            type Err = String;
            fn from_str(s: &str) -> Result<Code, String> {
                match s { $($name => Ok(Code::$variant),)* _ => Err(format!("unknown code `{s}`")) }
            }
        }
    };
}

/// Whether a code is decided from the text, or needs what the content shows (types 3 and 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    Text,
    Meta,
}

codes! {
    SexualSuggestion = "sexual_suggestion", Text;
    CyberViolence = "cyber_violence", Text;
    InciteDiscrimination = "incite_discrimination", Text;
    ExtremeEmotion = "extreme_emotion", Text;
    UnsafeImitation = "unsafe_imitation", Text;
    BadHabits = "bad_habits", Text;
    SchoolMisconduct = "school_misconduct", Text;
    InducedSpending = "induced_spending", Text;
    PaidCompanionship = "paid_companionship", Text;
    BadSlang = "bad_slang", Text;
    FanFrenzy = "fan_frenzy", Text;
    BadFriendship = "bad_friendship", Text;
    MoneyWorship = "money_worship", Text;
    DistortedAesthetics = "distorted_aesthetics", Text;
    Nihilism = "nihilism", Text;
    Pseudoscience = "pseudoscience", Text;
    Vulgarity = "vulgarity", Text;
    MinorCrimeHype = "minor_crime_hype", Text;
    StudyUseless = "study_useless", Text;
    MinorStagedPlot = "minor_staged_plot", Meta;
    MinorMockery = "minor_mockery", Meta;
    MinorPersonaProfit = "minor_persona_profit", Meta;
    MinorVoice = "minor_voice", Text;
    MinorMoralTest = "minor_moral_test", Meta;
    MinorInfoDisclosure = "minor_info_disclosure", Meta;
    MinorInfoInduced = "minor_info_induced", Text;
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_in_minors_md_is_known_and_names_round_trip() {
        // Proves the code list matches the copy of ../shared/MINORS.md in data/'s tables (26 codes) and names parse back.
        let contract = include_str!("../data/MINORS.md");
        let in_contract: Vec<&str> = contract
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let ours: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(in_contract, ours);
        for c in Code::ALL {
            assert_eq!(c.as_str().parse::<Code>(), Ok(*c));
        }
    }
}
