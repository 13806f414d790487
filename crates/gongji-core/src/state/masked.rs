//! Persons by masked certno (`4401**********123X`): what a service counter or a receipt shows,
//! searchable without scanning persons. Derived state like `recent.rs`: kept by enrolment,
//! rebuilt from the certno column when a snapshot is decoded (no format change), compared with
//! a rebuild by `State::check`. A `HashTable<u32>` of person indexes hashed by the masked key:
//! about 5 bytes a person.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::Chunked;
use crate::certno::masked_key_of_packed;

#[derive(Debug, Default)]
pub(crate) struct MaskedIndex {
    table: HashTable<u32>,
}

fn hash_key(key: u32) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl MaskedIndex {
    /// Indexes person `i`, whose packed certno is `certnos[i]`.
    pub fn insert(&mut self, i: u32, certnos: &Chunked<u64>) {
        let key = masked_key_of_packed(certnos[i as usize]);
        self.table.insert_unique(hash_key(key), i, |&j| {
            hash_key(masked_key_of_packed(certnos[j as usize]))
        });
    }

    /// The persons whose certno masks to `key`, in no particular order.
    pub fn find<'a>(
        &'a self,
        key: u32,
        certnos: &'a Chunked<u64>,
    ) -> impl Iterator<Item = u32> + 'a {
        self.table
            .iter_hash(hash_key(key))
            .copied()
            .filter(move |&i| masked_key_of_packed(certnos[i as usize]) == key)
    }

    /// Every indexed person, in no particular order.
    pub fn persons(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().copied()
    }

    /// Bytes held (the table's slots).
    pub fn memory(&self) -> u64 {
        (self.table.capacity() * 5) as u64
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn rebuild(certnos: &Chunked<u64>) -> MaskedIndex {
        let n = certnos.len();
        u32::try_from(n).expect("person index fits u32");
        MaskedIndex {
            table: super::bulk::multi_index(n, |i| {
                hash_key(masked_key_of_packed(certnos[i as usize]))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certno::{certno_pack, certno_with_check, mask_certno, masked_key};

    #[test]
    fn finds_every_person_by_the_masked_certno_and_only_them() {
        // Proves: each certno is found by its own masked form (as `mask_certno` writes it);
        // persons sharing a masked form are all found; a masked form nobody has finds none;
        // malformed masks have no key.
        let mut certs = Vec::new();
        for area in ["440106", "110101", "440305"] {
            for seq in 0..40u32 {
                // Birth days 1..=28 and few sequences: many persons share a masked form.
                let first17 = format!("{area}198001{:02}{:03}", seq % 28 + 1, seq % 7);
                certs.push(certno_with_check(&first17).unwrap());
            }
        }
        let packed: Chunked<u64> = certs.iter().map(|c| certno_pack(c).unwrap()).collect();
        let index = MaskedIndex::rebuild(&packed);
        assert_eq!(index.len(), certs.len());
        for (i, cert) in certs.iter().enumerate() {
            let key = masked_key(&mask_certno(cert)).expect("a masked certno has a key");
            let found: Vec<u32> = index.find(key, &packed).collect();
            assert!(found.contains(&(i as u32)), "{cert}");
            for j in found {
                assert_eq!(mask_certno(&certs[j as usize]), mask_certno(cert));
            }
        }
        let none = masked_key("9999**********0000").unwrap();
        assert_eq!(index.find(none, &packed).count(), 0);
        for bad in [
            "4401*********0012",
            "4401**********001",
            "44a1**********0012",
            "4401*****a****0012",
            "4401**********001Y",
        ] {
            assert_eq!(masked_key(bad), None, "{bad}");
        }
    }
}
