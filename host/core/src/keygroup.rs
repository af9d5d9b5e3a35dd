//! Key groups: the unit in which keyed state is partitioned and rescaled.
//!
//! A key's group is a hash of its bytes modulo the maximum parallelism; each
//! subtask of a keyed operator owns a contiguous range of groups, computed
//! as Flink does, so state moves between parallelisms in whole groups.

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// A key group, `0..max_parallelism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyGroup(pub u16);

/// The largest supported maximum parallelism (Flink's limit as well).
pub const MAX_MAX_PARALLELISM: u32 = 32_768;

impl KeyGroup {
    /// The group of a key. The hash is part of the state format and must
    /// never change: state written by one version is read by the next.
    #[inline]
    pub fn of(key: &[u8], max_parallelism: u32) -> KeyGroup {
        let h = xxhash_rust::xxh3::xxh3_64(key);
        KeyGroup((h % u64::from(max_parallelism)) as u16)
    }

    /// The subtask that owns this group.
    #[inline]
    pub fn subtask(self, max_parallelism: u32, parallelism: u32) -> u32 {
        (u32::from(self.0) * parallelism) / max_parallelism
    }

    pub fn to_be_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

/// A contiguous range of key groups `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    pub start: u16,
    pub end: u16,
}

impl KeyGroupRange {
    /// The groups subtask `index` of `parallelism` owns.
    pub fn for_subtask(max_parallelism: u32, parallelism: u32, index: u32) -> KeyGroupRange {
        // Inverse of `KeyGroup::subtask`: the smallest g with g*p/m >= index.
        let start = (index * max_parallelism).div_ceil(parallelism);
        let end = ((index + 1) * max_parallelism).div_ceil(parallelism);
        KeyGroupRange {
            start: start as u16,
            end: end as u16,
        }
    }

    pub fn contains(&self, g: KeyGroup) -> bool {
        (self.start..self.end).contains(&g.0)
    }

    pub fn overlaps(&self, other: &KeyGroupRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    pub fn groups(&self) -> Range<u16> {
        self.start..self.end
    }

    pub fn len(&self) -> usize {
        usize::from(self.end - self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_groups_and_agree_with_subtask() {
        for max in [1u32, 7, 128, 1000] {
            for p in 1..=max.min(13) {
                let mut next = 0u16;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(max, p, i);
                    assert_eq!(r.start, next, "max {max} p {p} i {i}");
                    for g in r.groups() {
                        assert_eq!(KeyGroup(g).subtask(max, p), i);
                    }
                    next = r.end;
                }
                assert_eq!(u32::from(next), max);
            }
        }
    }

    #[test]
    fn key_groups_are_stable() {
        // The hash is part of the state format: these values must not change.
        assert_eq!(KeyGroup::of(b"hello", 128), KeyGroup::of(b"hello", 128));
        let spread: std::collections::HashSet<_> = (0..1000)
            .map(|i| KeyGroup::of(format!("k{i}").as_bytes(), 128))
            .collect();
        assert!(
            spread.len() > 120,
            "keys spread over groups: {}",
            spread.len()
        );
    }
}
