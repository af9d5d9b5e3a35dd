//! Sparse encoding of linear memory images: only chunks that are not all
//! zero are stored, so a large, mostly empty memory costs little.

const MAGIC: &[u8; 4] = b"WMEM";
const CHUNK: usize = 64 * 1024;

/// Encodes a memory image.
pub fn encode(memory: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(memory.len() as u64).to_le_bytes());
    for (i, chunk) in memory.chunks(CHUNK).enumerate() {
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        out.extend_from_slice(&((i * CHUNK) as u64).to_le_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// Decodes an image written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "the memory image is malformed".to_owned();
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return Err(bad());
    }
    let len = u64::from_le_bytes(bytes[4..12].try_into().map_err(|_| bad())?) as usize;
    let mut mem = vec![0u8; len];
    let mut pos = 12;
    while pos < bytes.len() {
        let head = bytes.get(pos..pos + 12).ok_or_else(bad)?;
        let off = u64::from_le_bytes(head[..8].try_into().map_err(|_| bad())?) as usize;
        let n = u32::from_le_bytes(head[8..].try_into().map_err(|_| bad())?) as usize;
        pos += 12;
        let data = bytes.get(pos..pos + n).ok_or_else(bad)?;
        mem.get_mut(off..off + n)
            .ok_or_else(bad)?
            .copy_from_slice(data);
        pos += n;
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_round_trip() {
        let mut m = vec![0u8; 10 * CHUNK + 123];
        m[5] = 1;
        m[3 * CHUNK + 7] = 9;
        m[10 * CHUNK + 100] = 4;
        let e = encode(&m);
        assert!(
            e.len() < 4 * CHUNK,
            "only non-zero chunks stored: {}",
            e.len()
        );
        assert_eq!(decode(&e).unwrap(), m);
        assert!(decode(&e[..e.len() - 1]).is_err());
        assert!(decode(b"nope").is_err());
    }
}
