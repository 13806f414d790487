//! Decisions: where an item with harmful codes may be shown, from a versioned TOML policy.
//!
//! [`Policy::parse`] reads a policy file (`data/policy.toml` is the built-in one, MINORS.md as
//! data); unknown codes, surfaces, audiences, services, media, actions or keys are refused with
//! an error that names the line. [`Policy::decide`] gives the [`Decision`] for one item on one
//! [`Surface`], for one [`Audience`] and [`Service`], with the [`Notice`] for its [`Medium`]
//! when the action is `allow_with_notice`.

use crate::code::Code;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant,)* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $s,)* } }
        }
    };
}

wire_enum!(
    /// Where in a product an item would be shown.
    Surface {
        HomeFirstScreen = "home_first_screen",
        Popup = "popup",
        HotSearch = "hot_search",
        Ranking = "ranking",
        Recommendation = "recommendation",
        Curated = "curated",
        Feed = "feed",
        Search = "search",
        Detail = "detail",
    }
);
wire_enum!(
    /// Who the item would be shown to, as far as the platform knows.
    Audience { Minor = "minor", Adult = "adult", Unknown = "unknown", }
);
wire_enum!(
    /// What kind of service shows it.
    Service {
        Ordinary = "ordinary",
        AlgorithmicPush = "algorithmic_push",
        GenerativeAi = "generative_ai",
        MinorProduct = "minor_product",
    }
);
wire_enum!(
    /// The item's medium, which decides the notice's form and position.
    Medium {
        Text = "text",
        Image = "image",
        Audio = "audio",
        Video = "video",
        VirtualScene = "virtual_scene",
    }
);
wire_enum!(
    /// Ordered from least to most strict, so `max` is the strictest.
    Action { Allow = "allow", AllowWithNotice = "allow_with_notice", Deny = "deny", }
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub form: String,
    pub position: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub code: Option<Vec<Code>>,
    pub surface: Option<Vec<Surface>>,
    pub audience: Option<Vec<Audience>>,
    pub service: Option<Vec<Service>>,
    pub action: Action,
}

impl Rule {
    fn matches(&self, code: Code, surface: Surface, audience: Audience, service: Service) -> bool {
        fn any<T: PartialEq>(list: &Option<Vec<T>>, x: T) -> bool {
            list.as_ref().is_none_or(|l| l.contains(&x))
        }
        any(&self.code, code)
            && any(&self.surface, surface)
            && any(&self.audience, audience)
            && any(&self.service, service)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: String,
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
    pub notice: BTreeMap<Medium, Notice>,
}

/// The decision for one item on one surface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub surface: Surface,
    pub action: Action,
    /// The ids of the rules that decided, one per harmful code, deduplicated.
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

pub const BUILTIN_POLICY: &str = include_str!("../data/policy.toml");

impl Policy {
    pub fn builtin() -> Policy {
        Policy::parse(BUILTIN_POLICY).expect("built-in policy is valid")
    }

    /// Parses and checks a policy: every medium has a notice, and every combination of code,
    /// surface, audience and service is decided by some rule.
    pub fn parse(source: &str) -> Result<Policy, PolicyError> {
        let policy: Policy =
            toml::from_str(source).map_err(|e| PolicyError(line_error(source, &e)))?;
        for m in Medium::ALL {
            if !policy.notice.contains_key(m) {
                return Err(PolicyError(format!(
                    "policy has no [notice.{}]",
                    m.as_str()
                )));
            }
        }
        for &code in Code::ALL {
            for &surface in Surface::ALL {
                for &audience in Audience::ALL {
                    for &service in Service::ALL {
                        if policy.rule_for(code, surface, audience, service).is_none() {
                            return Err(PolicyError(format!(
                                "policy leaves {code} on {} for {} via {} undecided: add a last \
                                 rule without lists",
                                surface.as_str(),
                                audience.as_str(),
                                service.as_str()
                            )));
                        }
                    }
                }
            }
        }
        Ok(policy)
    }

    fn rule_for(&self, code: Code, s: Surface, a: Audience, v: Service) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(code, s, a, v))
    }

    pub fn decide(
        &self,
        codes: &[Code],
        medium: Medium,
        surface: Surface,
        audience: Audience,
        service: Service,
    ) -> Decision {
        let mut action = Action::Allow;
        let mut rules: Vec<String> = Vec::new();
        for &code in codes {
            let rule = self
                .rule_for(code, surface, audience, service)
                .expect("checked by parse");
            action = action.max(rule.action);
            if !rules.contains(&rule.id) {
                rules.push(rule.id.clone());
            }
        }
        let notice = (action == Action::AllowWithNotice).then(|| self.notice[&medium].clone());
        Decision {
            surface,
            action,
            rules,
            notice,
        }
    }
}

/// toml's error names line and column; keep its message whole and make sure the line is there.
fn line_error(source: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| source[..s.start.min(source.len())].lines().count().max(1));
    match line {
        Some(line) => format!("policy line {line}: {}", e.message()),
        None => format!("policy: {}", e.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MINORS.md's placement rules written independently of the policy file, as the oracle.
    fn oracle(surface: Surface, audience: Audience, service: Service) -> Action {
        let prominent = matches!(
            surface,
            Surface::HomeFirstScreen
                | Surface::Popup
                | Surface::HotSearch
                | Surface::Ranking
                | Surface::Recommendation
                | Surface::Curated
        );
        let pushes = matches!(service, Service::AlgorithmicPush | Service::GenerativeAi);
        let maybe_minor = audience != Audience::Adult;
        if service == Service::MinorProduct || prominent || (pushes && maybe_minor) {
            Action::Deny
        } else {
            Action::AllowWithNotice
        }
    }

    #[test]
    fn builtin_policy_matches_minors_md_for_every_combination() {
        // Proves, for every code × surface × audience × service × medium, that the built-in
        // policy gives MINORS.md's action, the medium's notice exactly when it allows with a
        // notice, and allows an item with no code.
        let policy = Policy::builtin();
        let mut seen = std::collections::BTreeSet::new();
        for &code in Code::ALL {
            for &surface in Surface::ALL {
                for &audience in Audience::ALL {
                    for &service in Service::ALL {
                        for &medium in Medium::ALL {
                            let d = policy.decide(&[code], medium, surface, audience, service);
                            let want = oracle(surface, audience, service);
                            assert_eq!(
                                d.action, want,
                                "{code} {surface:?} {audience:?} {service:?}"
                            );
                            assert_eq!(d.notice.is_some(), want == Action::AllowWithNotice);
                            if let Some(n) = &d.notice {
                                assert_eq!(n, &policy.notice[&medium]);
                            }
                            seen.insert(d.action);
                            let safe = policy.decide(&[], medium, surface, audience, service);
                            assert_eq!(safe.action, Action::Allow);
                        }
                    }
                }
            }
        }
        assert_eq!(seen.len(), 2, "both deny and allow_with_notice occur");
    }

    #[test]
    fn notices_follow_the_medium_table() {
        // Proves the text notice is at the beginning and video's on the opening frame.
        let p = Policy::builtin();
        assert_eq!(p.notice[&Medium::Text].position, ["beginning"]);
        assert!(p.notice[&Medium::Video]
            .position
            .contains(&"opening_frame".to_string()));
        assert!(p.notice[&Medium::VirtualScene]
            .position
            .contains(&"during_session".to_string()));
    }

    #[test]
    fn strictest_code_wins_and_rules_are_named() {
        // Proves a code-specific deny beats the general notice for an item with two codes.
        let src = BUILTIN_POLICY.replace(
            "# 4. Elsewhere",
            "[[rule]]\nid = \"no_sex_in_search\"\ncode = [\"sexual_suggestion\"]\n\
             surface = [\"search\"]\naction = \"deny\"\n\n# 4. Elsewhere",
        );
        let p = Policy::parse(&src).unwrap();
        let codes = [Code::BadHabits, Code::SexualSuggestion];
        let d = p.decide(
            &codes,
            Medium::Text,
            Surface::Search,
            Audience::Adult,
            Service::Ordinary,
        );
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.rules, ["notice_elsewhere", "no_sex_in_search"]);
    }

    fn error_of(needle: &str, replacement: &str) -> String {
        assert!(BUILTIN_POLICY.contains(needle));
        Policy::parse(&BUILTIN_POLICY.replacen(needle, replacement, 1))
            .unwrap_err()
            .0
    }

    fn line_of(needle: &str) -> usize {
        BUILTIN_POLICY
            .lines()
            .position(|l| l.contains(needle))
            .unwrap()
            + 1
    }

    #[test]
    fn unknown_surface_is_refused_naming_the_line() {
        // Proves a misspelt surface is an error that names its line and the bad value.
        let e = error_of("\"popup\",", "\"pop_up\",");
        let line = line_of("\"popup\",");
        assert!(
            e.contains(&format!("line {line}")) && e.contains("pop_up"),
            "{e}"
        );
    }

    #[test]
    fn unknown_code_is_refused_naming_the_line() {
        // Proves a rule with an unknown code is refused, naming the line.
        let e = error_of(
            "id = \"minor_product\"\n",
            "id = \"minor_product\"\ncode = [\"gore\"]\n",
        );
        let line = line_of("id = \"minor_product\"") + 1;
        assert!(
            e.contains(&format!("line {line}")) && e.contains("gore"),
            "{e}"
        );
    }

    #[test]
    fn unknown_medium_is_refused_naming_the_line() {
        // Proves a notice for an unknown medium is refused, naming the line.
        let e = error_of("[notice.audio]", "[notice.smell]");
        assert!(e.contains(&format!("line {}", line_of("[notice.audio]"))) && e.contains("smell"));
    }

    #[test]
    fn unknown_key_and_missing_catch_all_are_refused() {
        // Proves a misspelt key is refused with its line, and a policy that leaves some
        // combination undecided is refused.
        let e = error_of("action = \"deny\"", "acton = \"deny\"");
        assert!(e.contains("acton") && e.contains("line "), "{e}");
        let e = error_of(
            "id = \"notice_elsewhere\"\naction",
            "id = \"x\"\nservice = [\"ordinary\"]\naction",
        );
        assert!(e.contains("undecided"), "{e}");
        let e = error_of("[notice.image]", "[notice.video2]");
        assert!(e.contains("video2"), "{e}");
    }
}
