//! The population plan: who is in which family, where they are insured, who binds whom and who
//! has a wallet. Made before the baseline RSS is read, so that the bytes per person measured
//! while building are the engine's and not the plan's.

use std::fmt::Write as _;

use gongji_core::certno::certno_with_check;
use gongji_core::{InstCode, PsnNo, Relation};

use splitmix::SplitMix64;

/// Insured places (admdvs) with a weight: several pooling areas in several provinces,
/// Guangdong heaviest (the engine serves one large province; relatives live elsewhere too).
pub(crate) const AREAS: [(u32, u32); 18] = [
    (440106, 14), // Guangzhou Tianhe
    (440104, 8),  // Guangzhou Yuexiu
    (440305, 10), // Shenzhen Nanshan
    (440306, 8),  // Shenzhen Bao'an
    (440604, 6),  // Foshan Chancheng
    (441900, 6),  // Dongguan
    (445102, 3),  // Chaozhou Xiangqiao
    (110105, 5),  // Beijing Chaoyang
    (110108, 4),  // Beijing Haidian
    (310115, 5),  // Shanghai Pudong
    (320102, 3),  // Nanjing Xuanwu
    (320506, 3),  // Suzhou Wuzhong
    (330106, 4),  // Hangzhou Xihu
    (330203, 2),  // Ningbo Haishu
    (510107, 4),  // Chengdu Wuhou
    (420106, 3),  // Wuhan Wuchang
    (430104, 3),  // Changsha Yuelu
    (450103, 3),  // Nanning Qingxiu
];

pub(crate) fn area_province(area: u8) -> u32 {
    AREAS[usize::from(area)].0 / 10_000
}

pub(crate) fn area_pool(area: u8) -> u32 {
    AREAS[usize::from(area)].0 / 100
}

/// The person's place in the family; decides age, scheme and relations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The family's working employee (always 310).
    Anchor,
    Spouse,
    Parent,
    Child,
    Sibling,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct PlannedPerson {
    pub area: u8,
    pub resident: bool,
    pub wallet: bool,
    pub role: Role,
    pub surname: u8,
    pub given: u16,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct PlannedBinding {
    pub giver: u32,
    pub receiver: u32,
    pub relation: Relation,
    pub in_province: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub persons: Vec<PlannedPerson>,
    pub bindings: Vec<PlannedBinding>,
    pub families: u32,
    pub institutions: Vec<(u32, bool)>,
}

/// Family shapes after the anchor, with weights.
const SHAPES: [(&[Role], u32); 12] = [
    (&[Role::Spouse], 14),
    (&[Role::Parent], 6),
    (&[Role::Child], 4),
    (&[Role::Sibling], 3),
    (&[Role::Spouse, Role::Child], 20),
    (&[Role::Parent, Role::Parent], 6),
    (&[Role::Spouse, Role::Parent], 6),
    (&[Role::Spouse, Role::Child, Role::Parent], 12),
    (&[Role::Spouse, Role::Child, Role::Child], 9),
    (&[Role::Spouse, Role::Child, Role::Sibling], 5),
    (&[Role::Spouse, Role::Child, Role::Parent, Role::Parent], 8),
    (&[Role::Spouse, Role::Child, Role::Child, Role::Sibling], 4),
];

/// Per role: ‰ resident scheme (390); ‰ same area, ‰ same province elsewhere (rest: another
/// province).
fn role_profile(role: Role) -> (u64, u64, u64) {
    match role {
        Role::Anchor => (0, 1000, 0),
        Role::Spouse => (200, 760, 210),
        Role::Parent => (450, 600, 300),
        Role::Child => (850, 950, 50),
        Role::Sibling => (150, 300, 300),
    }
}

/// What `r` is to `g` (the binding's relation), if it is one of the eligible kinds.
fn relation(g: Role, r: Role, rng: &mut SplitMix64) -> Option<Relation> {
    use Role::*;
    let grand = |rng: &mut SplitMix64, paternal, maternal| {
        Some(if rng.below(2) == 0 {
            paternal
        } else {
            maternal
        })
    };
    match (g, r) {
        (Anchor, Spouse) | (Spouse, Anchor) | (Parent, Parent) => Some(Relation::Spouse),
        (Anchor, Child) | (Spouse, Child) | (Parent, Anchor) | (Parent, Sibling) => {
            Some(Relation::Child)
        }
        (Anchor, Parent) | (Sibling, Parent) | (Child, Anchor) | (Child, Spouse) => {
            Some(Relation::Parent)
        }
        (Anchor, Sibling) | (Sibling, Anchor) | (Child, Child) => Some(Relation::Sibling),
        (Parent, Child) => grand(
            rng,
            Relation::PaternalGrandchild,
            Relation::MaternalGrandchild,
        ),
        (Child, Parent) => grand(
            rng,
            Relation::PaternalGrandparent,
            Relation::MaternalGrandparent,
        ),
        _ => None,
    }
}

fn pick_area(rng: &mut SplitMix64) -> u8 {
    let weights: Vec<u32> = AREAS.iter().map(|a| a.1).collect();
    rng.weighted(&weights) as u8
}

/// An area in the same province as `home` other than `home` when there is one.
fn other_area_same_province(home: u8, rng: &mut SplitMix64) -> u8 {
    let prov = area_province(home);
    let same: Vec<u8> = (0..AREAS.len() as u8)
        .filter(|&a| a != home && area_province(a) == prov)
        .collect();
    if same.is_empty() {
        home
    } else {
        same[rng.below(same.len() as u64) as usize]
    }
}

fn other_province(home: u8, rng: &mut SplitMix64) -> u8 {
    loop {
        let a = pick_area(rng);
        if area_province(a) != area_province(home) {
            return a;
        }
    }
}

impl Plan {
    pub fn make(persons: u32, institutions: u32, rng: &mut SplitMix64) -> Plan {
        let mut plan = Plan {
            persons: Vec::with_capacity(persons as usize),
            ..Plan::default()
        };
        let shape_weights: Vec<u32> = SHAPES.iter().map(|s| s.1).collect();
        let mut family: Vec<(u32, Role)> = Vec::with_capacity(5);
        while plan.persons.len() < persons as usize {
            let room = persons as usize - plan.persons.len();
            let shape = SHAPES[rng.weighted(&shape_weights)].0;
            let shape = &shape[..shape.len().min(room - 1)];
            let home = pick_area(rng);
            let surname = rng.below(SURNAMES.len() as u64) as u8;
            family.clear();
            for &role in std::iter::once(&Role::Anchor).chain(shape) {
                let (resident, same_area, same_prov) = role_profile(role);
                let x = rng.below(1000);
                let area = if x < same_area {
                    home
                } else if x < same_area + same_prov {
                    other_area_same_province(home, rng)
                } else {
                    other_province(home, rng)
                };
                let i = plan.persons.len() as u32;
                plan.persons.push(PlannedPerson {
                    area,
                    resident: rng.below(1000) < resident,
                    wallet: rng.chance(150),
                    role,
                    surname: if role == Role::Spouse || role == Role::Parent && rng.chance(500) {
                        rng.below(SURNAMES.len() as u64) as u8
                    } else {
                        surname
                    },
                    given: rng.below(GIVEN.len() as u64 * GIVEN.len() as u64) as u16,
                });
                family.push((i, role));
            }
            // The anchor binds everyone; other employees bind their own close relatives
            // half of the time. The anchor's bindings come first: priority 1.
            for &(g, g_role) in &family {
                if plan.persons[g as usize].resident || (g_role != Role::Anchor && rng.chance(500))
                {
                    continue;
                }
                for &(r, r_role) in &family {
                    if r == g {
                        continue;
                    }
                    let Some(relation) = relation(g_role, r_role, rng) else {
                        continue;
                    };
                    let (ga, ra) = (plan.persons[g as usize].area, plan.persons[r as usize].area);
                    let in_province = area_province(ga) == area_province(ra);
                    if !in_province {
                        // Money crosses provinces only by wallet: the relative opens one.
                        plan.persons[r as usize].wallet = true;
                    }
                    plan.bindings.push(PlannedBinding {
                        giver: g,
                        receiver: r,
                        relation,
                        in_province,
                    });
                }
            }
            plan.families += 1;
        }
        for _ in 0..institutions {
            plan.institutions
                .push((AREAS[usize::from(pick_area(rng))].0, rng.chance(400)));
        }
        plan
    }
}

const SURNAMES: [&str; 24] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "郑", "梁", "谢", "宋",
];
const GIVEN: [&str; 24] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华",
];

pub(crate) fn psn_no(i: u32) -> PsnNo {
    // By hand rather than `write!("P{i:010}")`: the load generator makes millions a second
    // on the cores the engine runs on.
    let mut bytes = *b"P0000000000";
    put_digits(&mut bytes[1..], u64::from(i));
    PsnNo::from(std::str::from_utf8(&bytes).expect("ASCII")).expect("fits")
}

/// Writes `v` as decimal digits right-aligned in `out`, zero-padded; the high digits of a
/// `v` too large for `out` are dropped.
pub(crate) fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

pub(crate) fn name(p: &PlannedPerson) -> String {
    let n = GIVEN.len();
    let g = usize::from(p.given);
    let mut s = String::with_capacity(9);
    s.push_str(SURNAMES[usize::from(p.surname)]);
    s.push_str(GIVEN[g / n]);
    if g % 3 != 0 {
        s.push_str(GIVEN[g % n]);
    }
    s
}

/// A valid, unique resident ID for person `i`: area (the insured place's city, the district
/// digits carrying the high part of `i`), a birth date fitting the role, a sequence number.
pub(crate) fn certno(i: u32, p: &PlannedPerson) -> String {
    // Birth-date ranges (days since 1970-01-01) by generation; disjoint, so IDs of different
    // generations never collide.
    let (start, span) = match p.role {
        Role::Parent => (-11_323, 8_000), // 1939-01-01 ..
        Role::Child => (12_784, 6_500),   // 2005-01-01 ..
        _ => (0, 11_000),                 // 1970-01-01 ..
    };
    let seq = i % 1000;
    let k = i / 1000;
    let day = start + (k % span) as i64;
    let district = (k / span) % 100;
    let city = AREAS[usize::from(p.area)].0 / 100;
    let (y, m, d) = civil_from_days(day);
    let first17 = format!("{city:04}{district:02}{y:04}{m:02}{d:02}{seq:03}");
    certno_with_check(&first17).expect("17 digits")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn inst_code(i: u32, admdvs: u32, pharmacy: bool) -> InstCode {
    let mut s = InstCode::new();
    let kind = if pharmacy { 'P' } else { 'H' };
    write!(s, "{kind}{admdvs:06}{:05}", i + 1).expect("fits");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use gongji_core::certno::certno_valid;
    use std::collections::HashSet;

    /// The hand-made psn_no is the one `format!` would make.
    #[test]
    fn psn_no_digits() {
        for i in [0, 7, 1_234, 99_999_999, u32::MAX] {
            assert_eq!(psn_no(i).as_str(), format!("P{i:010}"));
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-11_323), (1939, 1, 1));
        assert_eq!(civil_from_days(12_784), (2005, 1, 1));
    }

    #[test]
    fn certnos_valid_and_unique() {
        let mut rng = SplitMix64::new(3);
        let plan = Plan::make(20_000, 10, &mut rng);
        let mut seen = HashSet::new();
        for (i, p) in plan.persons.iter().enumerate() {
            let c = certno(i as u32, p);
            assert!(certno_valid(&c), "{c}");
            assert!(seen.insert(c));
        }
        assert!(plan.bindings.iter().any(|b| !b.in_province));
    }
}
