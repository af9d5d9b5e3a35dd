//! The RocksDB key layout of keyed state.

use weir_core::KeyGroup;

/// A decoded state key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey<'a> {
    pub group: KeyGroup,
    pub key: &'a [u8],
    pub namespace: &'a [u8],
}

/// Writes `group | len(key) | key | namespace` into `out`.
#[inline]
pub fn encode_state_key(out: &mut Vec<u8>, group: KeyGroup, key: &[u8], namespace: &[u8]) {
    out.clear();
    out.reserve(6 + key.len() + namespace.len());
    out.extend_from_slice(&group.to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(namespace);
}

/// Reads a key written by [`encode_state_key`].
pub fn decode_state_key(raw: &[u8]) -> Option<StateKey<'_>> {
    if raw.len() < 6 {
        return None;
    }
    let group = KeyGroup(u16::from_be_bytes([raw[0], raw[1]]));
    let len = u32::from_be_bytes([raw[2], raw[3], raw[4], raw[5]]) as usize;
    let rest = &raw[6..];
    if rest.len() < len {
        return None;
    }
    Some(StateKey {
        group,
        key: &rest[..len],
        namespace: &rest[len..],
    })
}

/// The key group of any raw key (every layout starts with it).
pub(crate) fn key_group_of(raw: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*raw.first()?, *raw.get(1)?]))
}

/// The smallest raw key of key group `g`.
pub(crate) fn group_start(g: u16) -> [u8; 2] {
    g.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode_state_key(&mut buf, KeyGroup(300), b"key", b"ns");
        let k = decode_state_key(&buf).unwrap();
        assert_eq!(
            k,
            StateKey {
                group: KeyGroup(300),
                key: b"key",
                namespace: b"ns"
            }
        );
        assert!(decode_state_key(&buf[..7]).is_none());
    }

    #[test]
    fn groups_sort_first() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode_state_key(&mut a, KeyGroup(1), b"zzzz", b"");
        encode_state_key(&mut b, KeyGroup(2), b"a", b"");
        assert!(a < b);
    }
}
