//! The synthetic insured population: persons in households, their places, their monthly
//! crediting, the bindings families make, and the designated institutions.
//!
//! Households are built around employees in service: a spouse (employee or resident),
//! resident children, parents (retired employees or residents, some in another city or
//! province), sometimes a sibling. A share of households binds its relatives (the anchor
//! binds everyone, an employed spouse the children, a retired grandparent some grandchildren),
//! with the eight relation kinds. Persons left over when the in-service employees run out are
//! single households without bindings, as most rural resident families are.

use gongji_core::certno::certno_with_check;
use gongji_core::command::ArrayString;
use gongji_core::{Fen, InstCode, InstType, PsnNo, Relation};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::calib;
use crate::dist;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    InService,
    Retired,
    Resident,
}

#[derive(Clone, Debug)]
pub struct Person {
    pub kind: Kind,
    pub admdvs: u32,
    /// Birth date as `yyyymmdd` and the sequence within the area and date: with `admdvs`,
    /// the identity number ([`Person::certno`]). Kept instead of the strings, which would
    /// more than double the size of a person (13 M of them at scale 0.01).
    pub birth: u32,
    pub seq: u16,
    /// Monthly crediting (0 for residents): 2 % of the contribution base in service, the
    /// province's fixed amount when retired (DOMAIN.md rule 16).
    pub credit: Fen,
    /// The account's balance carried into the first simulated month.
    pub opening: Fen,
}

impl Person {
    /// The identity number: area, birth date, sequence and check character.
    pub fn certno(&self) -> ArrayString<18> {
        let digits = format!("{:06}{}{:03}", self.admdvs, self.birth, self.seq);
        let certno = certno_with_check(&digits).expect("17 digits");
        ArrayString::from(&certno).expect("18 characters")
    }
}

impl Population {
    /// The `psn_no` of person `i`: the area's code and `i`, eight digits.
    pub fn psn_no(&self, i: u32) -> PsnNo {
        psn_no_of(self.persons[i as usize].admdvs, i)
    }
}

/// `{admdvs:06}{i:08}`, without `format!` (the workload asks for one on most events).
fn psn_no_of(admdvs: u32, i: u32) -> PsnNo {
    let mut out = PsnNo::new();
    for (value, width) in [(admdvs, 6u32), (i, 8)] {
        assert!(
            u64::from(value) < 10u64.pow(width),
            "{value} fits {width} digits"
        );
        for k in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u32.pow(k) % 10) as u8));
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedBinding {
    pub giver: u32,
    pub receiver: u32,
    pub relation: Relation,
    /// Made during the simulated months rather than before them (families still adopting).
    pub later: bool,
}

#[derive(Clone, Debug)]
pub struct Institution {
    pub code: InstCode,
    pub inst_type: InstType,
    pub admdvs: u32,
}

/// How the population is drawn.
#[derive(Clone, Debug)]
pub struct PopulationConfig {
    /// Population factor: 0.001 gives 274,900 employees in service.
    pub scale: f64,
    /// Share of households that bind their relatives.
    pub binding_household_share: f64,
    /// Share of those bindings made during the simulated months.
    pub later_binding_share: f64,
}

impl PopulationConfig {
    pub fn new(scale: f64) -> PopulationConfig {
        PopulationConfig {
            scale,
            binding_household_share: 0.22,
            later_binding_share: 0.12,
        }
    }
}

#[derive(Debug)]
pub struct Population {
    pub persons: Vec<Person>,
    pub bindings: Vec<PlannedBinding>,
    pub institutions: Vec<Institution>,
    /// Institutions by pooling area (first four digits of `admdvs`).
    pub insts_by_pool: FxHashMap<u32, Vec<u32>>,
}

/// Real county-level `admdvs` codes, a few per province (the capital first), with the
/// province's weight: its population in millions (2020 census, rounded).
pub const AREAS: &[(f64, &[u32])] = &[
    (21.9, &[110105, 110108]),
    (13.9, &[120101, 120104]),
    (74.6, &[130102, 130202, 130602]),
    (34.9, &[140105, 140202]),
    (24.0, &[150102, 150203]),
    (42.6, &[210102, 210202]),
    (24.1, &[220102, 220202]),
    (31.9, &[230102, 230202]),
    (24.9, &[310101, 310115]),
    (84.7, &[320102, 320505, 320211]),
    (64.6, &[330102, 330203, 330302]),
    (61.0, &[340102, 340202]),
    (41.5, &[350102, 350203]),
    (45.2, &[360102, 360702]),
    (101.5, &[370102, 370202, 370602]),
    (99.4, &[410102, 410302, 411302]),
    (57.8, &[420102, 420502]),
    (66.4, &[430102, 430602]),
    (126.0, &[440106, 440304, 440604, 441900]),
    (50.1, &[450102, 450202]),
    (10.1, &[460105, 460202]),
    (32.1, &[500103, 500112]),
    (83.7, &[510104, 510703, 511302]),
    (38.6, &[520102, 520302]),
    (47.2, &[530102, 530302]),
    (3.6, &[540102]),
    (39.5, &[610102, 610302]),
    (25.0, &[620102, 620502]),
    (5.9, &[630102]),
    (7.2, &[640104]),
    (25.9, &[650102, 650202]),
];

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超",
    "秀", "霞", "平", "刚", "华", "梅", "鑫", "宇",
];

/// A deterministic name for person `i` (stored in the engine, masked in every output).
pub fn name_of(i: u32) -> String {
    let s = SURNAMES[i as usize % SURNAMES.len()];
    let g1 = GIVEN[(i as usize / 7) % GIVEN.len()];
    if i.is_multiple_of(3) {
        format!("{s}{g1}")
    } else {
        let g2 = GIVEN[(i as usize / 131) % GIVEN.len()];
        format!("{s}{g1}{g2}")
    }
}

pub fn pool_of(admdvs: u32) -> u32 {
    admdvs / 100
}

fn province_of(admdvs: u32) -> u32 {
    admdvs / 10_000
}

struct Builder<'a> {
    rng: &'a mut ChaCha8Rng,
    persons: Vec<Person>,
    bindings: Vec<PlannedBinding>,
    /// (area, birth date) → next certno sequence number.
    seq: FxHashMap<(u32, u32), u16>,
    province_weights: Vec<f64>,
    /// Fixed monthly credit for retirees, per province slot.
    retiree_credit: Vec<Fen>,
    left_in_service: u64,
    left_retired: u64,
    left_resident: u64,
    cfg: &'a PopulationConfig,
}

impl Builder<'_> {
    fn area(&mut self) -> u32 {
        let p = dist::weighted(self.rng, &self.province_weights);
        let areas = AREAS[p].1;
        areas[self.rng.random_range(0..areas.len())]
    }

    /// Another area in the same province (another city when the province has one).
    fn area_same_province(&mut self, near: u32) -> u32 {
        let slot = AREAS
            .iter()
            .position(|(_, a)| a.contains(&near))
            .expect("known area");
        let areas = AREAS[slot].1;
        areas[self.rng.random_range(0..areas.len())]
    }

    fn area_other_province(&mut self, near: u32) -> u32 {
        loop {
            let a = self.area();
            if province_of(a) != province_of(near) {
                return a;
            }
        }
    }

    /// A birth date as `yyyymmdd` (days 1–28, so every one is a calendar date).
    fn birth_date(&mut self, from_year: u32, to_year: u32) -> u32 {
        let year = self.rng.random_range(from_year..=to_year);
        year * 10_000 + self.rng.random_range(1..=12) * 100 + self.rng.random_range(1..=28)
    }

    fn take(&mut self, kind: Kind) -> bool {
        let left = match kind {
            Kind::InService => &mut self.left_in_service,
            Kind::Retired => &mut self.left_retired,
            Kind::Resident => &mut self.left_resident,
        };
        if *left == 0 {
            return false;
        }
        *left -= 1;
        true
    }

    /// Adds a person of `kind` born in the years given, if any of that kind is left.
    fn person(&mut self, kind: Kind, admdvs: u32, born: (u32, u32)) -> Option<u32> {
        if !self.take(kind) {
            return None;
        }
        let i = self.persons.len() as u32;
        let (date, seq) = loop {
            let date = self.birth_date(born.0, born.1);
            let next = self.seq.entry((admdvs, date)).or_insert(0);
            if *next < 1000 {
                *next += 1;
                break (date, *next - 1);
            }
        };
        let (credit, opening) = match kind {
            Kind::InService => {
                // Contribution base: median 7,000 yuan a month, within the usual 60 %–300 %
                // band around the average wage; the account gets 2 % of it.
                let base = dist::lognormal(self.rng, 7_000.0, 0.45).clamp(4_500.0, 25_000.0);
                let opening = dist::lognormal(self.rng, 2_000.0, 1.0).min(60_000.0);
                (Fen((base * 2.0).round() as u64), dist::fen(opening))
            }
            Kind::Retired => {
                let slot = AREAS
                    .iter()
                    .position(|(_, a)| a.contains(&admdvs))
                    .expect("known area");
                let opening = dist::lognormal(self.rng, 1_200.0, 1.0).min(40_000.0);
                (self.retiree_credit[slot], dist::fen(opening))
            }
            Kind::Resident => (Fen::ZERO, Fen::ZERO),
        };
        self.persons.push(Person {
            kind,
            admdvs,
            birth: date,
            seq,
            credit,
            opening,
        });
        Some(i)
    }

    fn bind(&mut self, giver: u32, receiver: u32, relation: Relation) {
        let later = self.rng.random_bool(self.cfg.later_binding_share);
        self.bindings.push(PlannedBinding {
            giver,
            receiver,
            relation,
            later,
        });
    }

    /// One household around an employee in service; returns false when none is left.
    fn household(&mut self) -> bool {
        let area = self.area();
        let Some(anchor) = self.person(Kind::InService, area, (1966, 2000)) else {
            return false;
        };
        let anchor_male = self.rng.random_bool(0.5);
        let binds = self.rng.random_bool(self.cfg.binding_household_share);
        let mut spouse = None;
        if self.rng.random_bool(0.8) {
            spouse = if self.rng.random_bool(0.55) {
                self.person(Kind::InService, area, (1966, 2000))
            } else {
                None
            }
            .or_else(|| self.person(Kind::Resident, area, (1966, 2000)));
        }
        let children_n = [0usize, 1, 1, 1, 2, 2, 2, 3][self.rng.random_range(0..8)];
        let children: Vec<u32> = (0..children_n)
            .filter_map(|_| {
                // Some children are grown and employed themselves.
                if self.rng.random_bool(0.1) {
                    self.person(Kind::InService, area, (1995, 2003))
                } else {
                    None
                }
                .or_else(|| self.person(Kind::Resident, area, (2003, 2024)))
            })
            .collect();
        let mut parents = Vec::new();
        for _ in 0..2 {
            if !self.rng.random_bool(0.8) {
                continue;
            }
            let x: f64 = self.rng.random();
            let place = if x < 0.7 {
                area
            } else if x < 0.9 {
                self.area_same_province(area)
            } else {
                self.area_other_province(area)
            };
            let parent = if self.rng.random_bool(0.45) {
                self.person(Kind::Retired, place, (1938, 1965))
            } else {
                None
            }
            .or_else(|| self.person(Kind::Resident, place, (1938, 1965)));
            parents.extend(parent);
        }
        let sibling = if self.rng.random_bool(0.08) {
            let place = if self.rng.random_bool(0.3) {
                self.area_other_province(area)
            } else {
                area
            };
            self.person(Kind::Resident, place, (1966, 2000))
        } else {
            None
        };
        if !binds {
            return true;
        }
        if let Some(s) = spouse {
            self.bind(anchor, s, Relation::Spouse);
        }
        for &c in &children {
            self.bind(anchor, c, Relation::Child);
        }
        for &p in &parents {
            self.bind(anchor, p, Relation::Parent);
        }
        if let Some(s) = sibling {
            self.bind(anchor, s, Relation::Sibling);
        }
        if let Some(s) = spouse.filter(|&s| self.persons[s as usize].kind == Kind::InService) {
            for &c in &children {
                if self.rng.random_bool(0.6) {
                    self.bind(s, c, Relation::Child);
                }
            }
        }
        let grandchild = if anchor_male {
            Relation::PaternalGrandchild
        } else {
            Relation::MaternalGrandchild
        };
        let grandparent = if anchor_male {
            Relation::PaternalGrandparent
        } else {
            Relation::MaternalGrandparent
        };
        for &p in &parents {
            let retired = self.persons[p as usize].kind == Kind::Retired;
            for &c in &children {
                if retired && self.rng.random_bool(0.3) {
                    self.bind(p, c, grandchild);
                }
            }
        }
        // An employed grown child looks after a grandparent too.
        for &c in &children {
            if self.persons[c as usize].kind == Kind::InService {
                if let Some(&p) = parents.first() {
                    self.bind(c, p, grandparent);
                }
            }
        }
        true
    }
}

fn count(national: f64, scale: f64) -> u64 {
    (national * scale).round() as u64
}

/// Draws the population; the same `seed` and config give the same population.
pub fn generate(cfg: &PopulationConfig, rng: &mut ChaCha8Rng) -> Population {
    let retiree_credit = (0..AREAS.len())
        .map(|_| {
            // 2 % of the province's average pension (about 3,000–4,800 yuan).
            let pension = rng.random_range(3_000.0..4_800.0_f64);
            Fen((pension * 2.0).round() as u64)
        })
        .collect();
    let mut b = Builder {
        rng,
        persons: Vec::new(),
        bindings: Vec::new(),
        seq: FxHashMap::default(),
        province_weights: AREAS.iter().map(|(w, _)| *w).collect(),
        retiree_credit,
        left_in_service: count(calib::INSURED_IN_SERVICE_2024, cfg.scale),
        left_retired: count(calib::INSURED_RETIRED_2024, cfg.scale),
        left_resident: count(calib::INSURED_RESIDENT_2024, cfg.scale),
        cfg,
    };
    while b.household() {}
    // Those left live alone or in households without an employee in service.
    while b.left_retired > 0 {
        let area = b.area();
        b.person(Kind::Retired, area, (1938, 1965));
    }
    while b.left_resident > 0 {
        let area = b.area();
        let born = if b.rng.random_bool(0.3) {
            (1938, 1965)
        } else {
            (1966, 2024)
        };
        b.person(Kind::Resident, area, born);
    }
    let institutions = institutions(cfg.scale, b.rng);
    let mut insts_by_pool: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for (i, inst) in institutions.iter().enumerate() {
        insts_by_pool
            .entry(pool_of(inst.admdvs))
            .or_default()
            .push(i as u32);
    }
    Population {
        persons: b.persons,
        bindings: b.bindings,
        institutions,
        insts_by_pool,
    }
}

/// Designated institutions spread over the areas by population, at least one hospital and
/// one pharmacy per area; codes in the national form (`H` or `P`, `admdvs`, five digits).
fn institutions(scale: f64, rng: &mut ChaCha8Rng) -> Vec<Institution> {
    let total = count(calib::INSTITUTIONS_NATIONAL, scale).max(1);
    let weight_sum: f64 = AREAS.iter().map(|(w, _)| w).sum();
    let mut out = Vec::new();
    for (w, areas) in AREAS {
        for &admdvs in *areas {
            let n = ((total as f64 * w / weight_sum / areas.len() as f64).round() as u64).max(2);
            for k in 0..n {
                // Retail pharmacies are nearly half of the designated institutions.
                let pharmacy = k == 1 || (k > 1 && rng.random_bool(0.45));
                let (letter, inst_type) = if pharmacy {
                    ('P', InstType::Pharmacy)
                } else {
                    ('H', InstType::Medical)
                };
                out.push(Institution {
                    code: InstCode::from(&format!("{letter}{admdvs:06}{k:05}")).expect("code"),
                    inst_type,
                    admdvs,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn population_has_the_published_proportions_and_valid_identities() {
        // Proves the counts by kind follow the scaled 2024 figures, every certno and admdvs is
        // valid, identities are unique, and bindings use eligible kinds between distinct persons.
        let cfg = PopulationConfig::new(0.00002);
        let pop = generate(&cfg, &mut ChaCha8Rng::seed_from_u64(7));
        let n = |k| pop.persons.iter().filter(|p| p.kind == k).count() as u64;
        assert_eq!(n(Kind::InService), 5_498);
        assert_eq!(n(Kind::Retired), 2_092);
        assert_eq!(n(Kind::Resident), 18_938);
        let mut certnos = rustc_hash::FxHashSet::default();
        let mut psn_nos = rustc_hash::FxHashSet::default();
        for (i, p) in pop.persons.iter().enumerate() {
            let certno = p.certno();
            assert!(gongji_core::certno::certno_valid(&certno), "{certno}");
            assert!(gongji_core::certno::province_valid(
                (p.admdvs / 10_000) as u8
            ));
            assert!(certnos.insert(certno));
            let psn_no = pop.psn_no(i as u32);
            assert_eq!(psn_no.as_str(), format!("{:06}{i:08}", p.admdvs));
            assert!(psn_nos.insert(psn_no));
            assert_eq!(p.kind == Kind::Resident, p.credit.is_zero());
        }
        assert!(pop.bindings.len() > 1_000, "{}", pop.bindings.len());
        for b in &pop.bindings {
            assert_ne!(b.giver, b.receiver);
            assert_ne!(pop.persons[b.giver as usize].kind, Kind::Resident);
            assert!(Relation::ELIGIBLE.contains(&b.relation));
        }
        let kinds: rustc_hash::FxHashSet<_> = pop.bindings.iter().map(|b| b.relation).collect();
        assert!(kinds.len() >= 6, "{kinds:?}");
        let cross = pop
            .bindings
            .iter()
            .filter(|b| {
                province_of(pop.persons[b.giver as usize].admdvs)
                    != province_of(pop.persons[b.receiver as usize].admdvs)
            })
            .count();
        assert!(cross > 0);
    }
}
