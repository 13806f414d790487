//! Wire types shared by `classify` (JSON lines) and `serve` (HTTP JSON), and the glue from an
//! item to its categories, decisions and audit entry.

use huyou_core::audit::Entry;
use huyou_core::{
    Audience, Category, Classifier, Code, Decision, Medium, Meta, Policy, Service, Surface,
};
use serde::{Deserialize, Serialize};

/// Texts longer than this are refused (bytes).
pub const TEXT_BYTES_MAX: usize = 64 * 1024;
pub const ID_BYTES_MAX: usize = 256;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub text: String,
    #[serde(default = "default_medium")]
    pub medium: Medium,
    #[serde(default)]
    pub meta: Meta,
}

fn default_medium() -> Medium {
    Medium::Text
}

impl Item {
    pub fn check(&self) -> Result<(), String> {
        if self.text.len() > TEXT_BYTES_MAX {
            return Err(format!(
                "item {:?}: text is {} bytes, text_bytes_max is {TEXT_BYTES_MAX}",
                self.id,
                self.text.len()
            ));
        }
        if self.id.len() > ID_BYTES_MAX {
            return Err(format!(
                "id is {} bytes, id_bytes_max is {ID_BYTES_MAX}",
                self.id.len()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldItem {
    #[allow(dead_code)]
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub meta: Meta,
    pub codes: Vec<Code>,
    #[serde(default)]
    #[allow(dead_code)]
    pub source: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub note: String,
    /// Codes the item is a hard negative for (checked by the tests; eval counts them as safe).
    #[serde(default)]
    #[allow(dead_code)]
    pub not: Vec<Code>,
    #[serde(default)]
    #[allow(dead_code)]
    pub known_miss: bool,
}

#[derive(Debug, Serialize)]
pub struct Classified {
    pub id: String,
    pub categories: Vec<Category>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
}

pub fn classify_item(
    classifier: &Classifier,
    policy: &Policy,
    item: &Item,
    context: Option<(Audience, Service)>,
) -> Classified {
    let categories = classifier.classify(&item.text, &item.meta);
    let mut decisions = Vec::new();
    if let Some((audience, service)) = context {
        let codes: Vec<Code> = categories.iter().map(|c| c.code).collect();
        for &surface in Surface::ALL {
            decisions.push(policy.decide(&codes, item.medium, surface, audience, service));
        }
    }
    Classified {
        id: item.id.clone(),
        categories,
        audience: context.map(|c| c.0),
        service: context.map(|c| c.1),
        decisions,
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn audit_entry(policy: &Policy, item: &Item, c: &Classified) -> Entry {
    let mut rules: Vec<String> = Vec::new();
    for cat in &c.categories {
        for r in &cat.rules {
            rules.push(format!("{}:{r}", cat.code));
        }
    }
    let decisions = c
        .decisions
        .iter()
        .map(|d| {
            format!(
                "{}/{}/{}={}",
                d.surface.as_str(),
                c.audience.map(|a| a.as_str()).unwrap_or("-"),
                c.service.map(|s| s.as_str()).unwrap_or("-"),
                d.action.as_str()
            )
        })
        .collect();
    Entry {
        time_ms: now_ms(),
        policy_version: policy.version.clone(),
        item_id: item.id.clone(),
        text_blake3: huyou_core::audit::text_hash(&item.text),
        codes: c
            .categories
            .iter()
            .map(|x| x.code.as_str().to_string())
            .collect(),
        rules,
        decisions,
    }
}
