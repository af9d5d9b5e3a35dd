//! Slots: the host's numbering of a keyed operator's (key, namespace)
//! pairs.
//!
//! The guest keeps decoded accumulators in a vector indexed by slot; the
//! host hashes each record's key once, natively, and passes the slot with
//! the batch (see `aggregate` in `wit/weir.wit`). A slot the guest must load
//! from keyed state carries the [`FRESH`] bit. The numbering is bounded: past
//! its capacity the guest writes back and forgets its slots, and numbering
//! starts over.

use hashbrown::HashMap;
use weir_core::Failure;

/// Marks a slot the guest must load from keyed state before use.
pub(crate) const FRESH: u32 = 0x8000_0000;

/// Keys and namespaces of up to this many bytes each are stored inline in
/// the index and compared as machine words, so that a lookup touches one
/// small bucket and never calls `memcmp` or `memcpy`.
const INLINE: usize = 16;

/// A key of up to 16 bytes without a namespace: 24-byte entries.
#[derive(Debug)]
struct Plain {
    key: [u64; 2],
    len: u8,
    id: u32,
}

/// A key and a namespace (a window) of up to 16 bytes each.
#[derive(Debug)]
struct Spaced {
    key: [u64; 2],
    ns: [u64; 2],
    key_len: u8,
    ns_len: u8,
    id: u32,
}

/// Reads up to 16 bytes as two little-endian words, zero-padded, with
/// overlapping fixed-size loads rather than a variable-length copy.
#[inline]
fn load16(src: &[u8]) -> [u64; 2] {
    let n = src.len();
    debug_assert!(n <= INLINE);
    let u64_at = |i: usize| u64::from_le_bytes(src[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| {
        u64::from(u32::from_le_bytes(
            src[i..i + 4].try_into().expect("4 bytes"),
        ))
    };
    match n {
        0 => [0, 0],
        1..=3 => {
            let mut w = 0u64;
            for (i, b) in src.iter().enumerate() {
                w |= u64::from(*b) << (8 * i);
            }
            [w, 0]
        }
        4 => [u32_at(0), 0],
        5..=7 => [u32_at(0) | (u32_at(n - 4) >> (8 * (8 - n))) << 32, 0],
        8 => [u64_at(0), 0],
        _ => [u64_at(0), u64_at(n - 8) >> (8 * (16 - n))],
    }
}

#[derive(Debug, Default)]
pub(crate) struct SlotIndex {
    seed: u64,
    plain: hashbrown::HashTable<Plain>,
    spaced: hashbrown::HashTable<Spaced>,
    /// Longer keys, as length-prefixed key then namespace.
    long: HashMap<Box<[u8]>, u32>,
    free: Vec<u32>,
    next: u32,
    scratch: Vec<u8>,
}

const M: u64 = 0x9e37_79b9_7f4a_7c15;

/// Multiply-xorshift rounds over a few words, seeded per index so that
/// keys cannot be chosen to collide.
#[inline]
fn mix(mut h: u64, words: &[u64]) -> u64 {
    for &w in words {
        h = (h ^ w).wrapping_mul(M);
        h ^= h >> 32;
    }
    h.wrapping_mul(M) ^ (h >> 29)
}

#[inline]
fn hash_plain(seed: u64, key: &[u64; 2], len: u8) -> u64 {
    mix(seed ^ u64::from(len), key)
}

#[inline]
fn hash_spaced(seed: u64, key: &[u64; 2], ns: &[u64; 2], key_len: u8, ns_len: u8) -> u64 {
    mix(
        seed ^ (u64::from(key_len) << 8 | u64::from(ns_len)) ^ 0x5555,
        &[key[0], key[1], ns[0], ns[1]],
    )
}

impl SlotIndex {
    fn new_id(&mut self) -> u32 {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    fn seed(&mut self) -> u64 {
        if self.seed == 0 {
            self.seed = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                0u64,
            ) | 1;
        }
        self.seed
    }

    fn long_key(&mut self, key: &[u8], ns: &[u8]) {
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.scratch.extend_from_slice(key);
        self.scratch.extend_from_slice(ns);
    }

    /// The slot of (key, namespace), with [`FRESH`] when newly assigned.
    #[inline]
    pub fn slot(&mut self, key: &[u8], ns: &[u8]) -> u32 {
        let seed = self.seed();
        if key.len() <= INLINE && ns.is_empty() {
            let (k, len) = (load16(key), key.len() as u8);
            let h = hash_plain(seed, &k, len);
            if let Some(e) = self.plain.find(h, |e| e.key == k && e.len == len) {
                return e.id;
            }
            let id = self.new_id();
            self.plain.insert_unique(h, Plain { key: k, len, id }, |e| {
                hash_plain(seed, &e.key, e.len)
            });
            return id | FRESH;
        }
        if key.len() <= INLINE && ns.len() <= INLINE {
            let (k, n) = (load16(key), load16(ns));
            let (kl, nl) = (key.len() as u8, ns.len() as u8);
            let h = hash_spaced(seed, &k, &n, kl, nl);
            if let Some(e) = self.spaced.find(h, |e| {
                e.key == k && e.ns == n && e.key_len == kl && e.ns_len == nl
            }) {
                return e.id;
            }
            let id = self.new_id();
            let entry = Spaced {
                key: k,
                ns: n,
                key_len: kl,
                ns_len: nl,
                id,
            };
            self.spaced.insert_unique(h, entry, |e| {
                hash_spaced(seed, &e.key, &e.ns, e.key_len, e.ns_len)
            });
            return id | FRESH;
        }
        self.long_key(key, ns);
        if let Some(&id) = self.long.get(&self.scratch[..]) {
            return id;
        }
        let id = self.new_id();
        self.long
            .insert(self.scratch.clone().into_boxed_slice(), id);
        id | FRESH
    }

    /// Whether (key, namespace) has a slot.
    pub fn contains(&mut self, key: &[u8], ns: &[u8]) -> bool {
        let seed = self.seed();
        if key.len() <= INLINE && ns.is_empty() {
            let (k, len) = (load16(key), key.len() as u8);
            self.plain
                .find(hash_plain(seed, &k, len), |e| e.key == k && e.len == len)
                .is_some()
        } else if key.len() <= INLINE && ns.len() <= INLINE {
            let (k, n) = (load16(key), load16(ns));
            let (kl, nl) = (key.len() as u8, ns.len() as u8);
            self.spaced
                .find(hash_spaced(seed, &k, &n, kl, nl), |e| {
                    e.key == k && e.ns == n && e.key_len == kl && e.ns_len == nl
                })
                .is_some()
        } else {
            self.long_key(key, ns);
            self.long.contains_key(&self.scratch[..])
        }
    }

    /// Frees the slot of (key, namespace) (its accumulator was purged).
    #[allow(dead_code, reason = "purging window operators release slots")]
    pub fn release(&mut self, key: &[u8], ns: &[u8]) {
        let seed = self.seed();
        let removed = if key.len() <= INLINE && ns.is_empty() {
            let (k, len) = (load16(key), key.len() as u8);
            self.plain
                .find_entry(hash_plain(seed, &k, len), |e| e.key == k && e.len == len)
                .ok()
                .map(|e| e.remove().0.id)
        } else if key.len() <= INLINE && ns.len() <= INLINE {
            let (k, n) = (load16(key), load16(ns));
            let (kl, nl) = (key.len() as u8, ns.len() as u8);
            self.spaced
                .find_entry(hash_spaced(seed, &k, &n, kl, nl), |e| {
                    e.key == k && e.ns == n && e.key_len == kl && e.ns_len == nl
                })
                .ok()
                .map(|e| e.remove().0.id)
        } else {
            self.long_key(key, ns);
            self.long.remove(&self.scratch[..])
        };
        if let Some(id) = removed {
            self.free.push(id);
        }
    }

    /// The slots of a batch's records, in order.
    pub fn for_batch(&mut self, batch: &[u8], out: &mut Vec<u32>) -> Result<(), Failure> {
        out.clear();
        let mut keyless = false;
        weir_frame::for_each_key(batch, |key, ns| match key {
            Some(key) => out.push(self.slot(key, ns.unwrap_or_default())),
            None => keyless = true,
        })
        .map_err(|e| Failure::user(format!("malformed batch: {e}")))?;
        if keyless {
            return Err(Failure::internal(
                "a record without a key reached a keyed operator",
            ));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.plain.len() + self.spaced.len() + self.long.len()
    }

    /// Forgets every slot (the guest forgot them too).
    pub fn clear(&mut self) {
        self.plain.clear();
        self.spaced.clear();
        self.long.clear();
        self.free.clear();
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_and_reused() {
        let mut s = SlotIndex::default();
        assert_eq!(s.slot(b"a", b""), FRESH);
        assert_eq!(s.slot(b"b", b""), 1 | FRESH);
        assert_eq!(s.slot(b"a", b""), 0);
        assert_eq!(s.slot(b"a", b"w1"), 2 | FRESH, "namespaces are distinct");
        // "ab" + "" must not collide with "a" + "b".
        assert_eq!(s.slot(b"ab", b""), 3 | FRESH);
        assert_eq!(s.slot(b"a", b"b"), 4 | FRESH);
        s.release(b"b", b"");
        assert_eq!(
            s.slot(b"c", b""),
            1 | FRESH,
            "freed slot reused, marked fresh"
        );
        assert_eq!(s.len(), 5);
        for n in 0..=16 {
            let bytes: Vec<u8> = (1..=n as u8).collect();
            let mut padded = [0u8; 16];
            padded[..n].copy_from_slice(&bytes);
            let want = [
                u64::from_le_bytes(padded[..8].try_into().unwrap()),
                u64::from_le_bytes(padded[8..].try_into().unwrap()),
            ];
            assert_eq!(load16(&bytes), want, "length {n}");
        }
        let long = [7u8; 40];
        assert_eq!(s.slot(&long, b""), 5 | FRESH);
        assert_eq!(s.slot(&long, b""), 5);
        assert_eq!(s.slot(&long, b"x"), 6 | FRESH);
        s.release(&long, b"");
        assert_eq!(s.slot(b"d", b""), 5 | FRESH);
        s.clear();
        assert_eq!(s.slot(b"a", b""), FRESH);
    }
}
