//! Building a large `HashTable<u32>` at once, as a snapshot's decoder does for tens of millions
//! of items (persons by psn_no and by certno, masked certnos, msgid keys).
//!
//! Inserting items in their own order puts each one at a random place in a table far larger
//! than the caches: a cache miss per item, most of a start's time at 50 M msgid records. Here
//! the items are first put in the order of the bucket their probe starts at (a counting sort on
//! the top bits of `hash & bucket_mask`, which is where hashbrown starts probing: `h1(hash) &
//! bucket_mask`, `h1` being the hash itself on 64-bit targets), so that the inserts walk the
//! table from one end to the other. If hashbrown ever starts probing elsewhere, the table is
//! still right, only slower to build.

use hashbrown::HashTable;

/// Below this many items the table fits the caches and is built in item order.
const SORT_MIN: usize = 1 << 15;

/// Radix buckets of the counting sort: few enough that the sort's write positions stay in the
/// caches, many enough that one radix bucket covers a cache-sized stretch of the table.
const RADIX_BITS_MAX: u32 = 12;

/// The items `0..n` in the order their probes start in a table sized for `n`, each with its
/// hash (computed twice per item, in item order).
fn in_bucket_order(n: usize, capacity: usize, hash_of: &impl Fn(u32) -> u64) -> Vec<(u64, u32)> {
    // hashbrown's capacity is 7/8 of its power-of-two bucket count.
    let buckets = (capacity / 7 * 8).next_power_of_two().max(1);
    let bits = buckets.trailing_zeros();
    let radix_bits = bits.min(RADIX_BITS_MAX);
    let shift = bits - radix_bits;
    let mask = (buckets - 1) as u64;
    let radix = |h: u64| ((h & mask) >> shift) as usize;
    let mut starts = vec![0usize; (1 << radix_bits) + 1];
    for i in 0..n as u32 {
        starts[radix(hash_of(i)) + 1] += 1;
    }
    for r in 1..starts.len() {
        starts[r] += starts[r - 1];
    }
    let mut sorted = vec![(0u64, 0u32); n];
    for i in 0..n as u32 {
        let h = hash_of(i);
        let at = &mut starts[radix(h)];
        sorted[*at] = (h, i);
        *at += 1;
    }
    sorted
}

/// A table of `0..n` hashed by `hash_of`, refusing equal items: `Err(i)` names the later of
/// two items that `eq` finds equal (the first such pair met, not necessarily the lowest `i`).
pub(crate) fn unique_index(
    n: usize,
    hash_of: impl Fn(u32) -> u64,
    eq: impl Fn(u32, u32) -> bool,
) -> Result<HashTable<u32>, u32> {
    let mut table = HashTable::with_capacity(n);
    let insert = |table: &mut HashTable<u32>, h: u64, i: u32| match table.entry(
        h,
        |&j| eq(i, j),
        |&j| hash_of(j),
    ) {
        hashbrown::hash_table::Entry::Occupied(o) => Err(i.max(*o.get())),
        hashbrown::hash_table::Entry::Vacant(v) => {
            v.insert(i);
            Ok(())
        }
    };
    if n < SORT_MIN {
        for i in 0..n as u32 {
            insert(&mut table, hash_of(i), i)?;
        }
    } else {
        for (h, i) in in_bucket_order(n, table.capacity(), &hash_of) {
            insert(&mut table, h, i)?;
        }
    }
    Ok(table)
}

/// A table of `0..n` hashed by `hash_of`, where several items may share a key (a multi-map,
/// as the masked-certno index is).
pub(crate) fn multi_index(n: usize, hash_of: impl Fn(u32) -> u64) -> HashTable<u32> {
    let mut table = HashTable::with_capacity(n);
    let order: Box<dyn Iterator<Item = (u64, u32)>> = if n < SORT_MIN {
        Box::new((0..n as u32).map(|i| (hash_of(i), i)))
    } else {
        Box::new(in_bucket_order(n, table.capacity(), &hash_of).into_iter())
    };
    for (h, i) in order {
        table.insert_unique(h, i, |&j| hash_of(j));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(i: u32) -> u64 {
        u64::from(i)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
            ^ 0x5555
    }

    #[test]
    fn the_bulk_index_finds_every_item_and_refuses_duplicates() {
        // Proves: above and below the sorting threshold, every item is found by its key and
        // nothing else is; a repeated key is refused naming the later item; the multi-map
        // keeps every item of a shared key.
        for n in [0usize, 1, 1000, SORT_MIN + 12_345] {
            let keys: Vec<u64> = (0..n as u32).map(mix).collect();
            let t = unique_index(
                n,
                |i| keys[i as usize],
                |a, b| keys[a as usize] == keys[b as usize],
            )
            .expect("unique keys");
            assert_eq!(t.len(), n);
            for (i, &k) in keys.iter().enumerate() {
                assert_eq!(t.find(k, |&j| keys[j as usize] == k), Some(&(i as u32)));
            }
            assert_eq!(t.find(7, |&j| keys[j as usize] == 7), None);
            if n > 10 {
                let mut dup = keys.clone();
                dup[n - 3] = dup[5];
                let e = unique_index(
                    n,
                    |i| dup[i as usize],
                    |a, b| dup[a as usize] == dup[b as usize],
                );
                assert_eq!(e.err(), Some(n as u32 - 3));
            }
            // Every key shared by four items.
            let shared: Vec<u64> = (0..n as u32).map(|i| mix(i / 4)).collect();
            let m = multi_index(n, |i| shared[i as usize]);
            assert_eq!(m.len(), n);
            for i in (0..n as u32).step_by(97) {
                let k = shared[i as usize];
                let mut found: Vec<u32> = m
                    .iter_hash(k)
                    .copied()
                    .filter(|&j| shared[j as usize] == k)
                    .collect();
                found.sort_unstable();
                let want: Vec<u32> = (i / 4 * 4..(i / 4 * 4 + 4).min(n as u32)).collect();
                assert_eq!(found, want);
            }
        }
    }
}
