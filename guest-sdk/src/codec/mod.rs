//! How values and keys are encoded on the wire: postcard.

mod ser;

use crate::Error;
use serde::{Serialize, de::DeserializeOwned};

/// Compares short byte strings without a call to `memcmp`.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        if u64::from_ne_bytes(x.try_into().expect("8"))
            != u64::from_ne_bytes(y.try_into().expect("8"))
        {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

/// A short byte string kept inline (longer ones on the heap).
pub(crate) enum SmallBytes {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<[u8]>),
}

impl SmallBytes {
    pub fn new(b: &[u8]) -> Self {
        if b.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..b.len()].copy_from_slice(b);
            SmallBytes::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            SmallBytes::Heap(b.into())
        }
    }

    #[inline]
    pub fn is(&self, b: &[u8]) -> bool {
        match self {
            SmallBytes::Inline { len, bytes } => same_bytes(&bytes[..*len as usize], b),
            SmallBytes::Heap(h) => same_bytes(h, b),
        }
    }
}

/// Appends `data` to `out`. Short slices (words, small keys) are copied
/// with two word-sized moves instead of a call to `memcpy`, which in a
/// component is a call out of guest code.
#[inline]
pub(crate) fn append(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len();
    match n {
        0 => return,
        1 => return out.push(data[0]),
        2 | 3 => {
            out.push(data[0]);
            out.push(data[1]);
            if n == 3 {
                out.push(data[2]);
            }
            return;
        }
        4..=16 => {}
        _ => return out.extend_from_slice(data),
    }
    out.reserve(16);
    let len = out.len();
    // SAFETY: `reserve(16)` leaves room for 16 bytes after `len`; the two
    // overlapping unaligned moves write exactly `data[..n]` there (bytes
    // between `n` and 16 are not initialized as far as `out` is concerned,
    // since the length only grows by `n`).
    unsafe {
        let dst = out.as_mut_ptr().add(len);
        let src = data.as_ptr();
        if n >= 8 {
            let a = std::ptr::read_unaligned(src as *const u64);
            let b = std::ptr::read_unaligned(src.add(n - 8) as *const u64);
            std::ptr::write_unaligned(dst as *mut u64, a);
            std::ptr::write_unaligned(dst.add(n - 8) as *mut u64, b);
        } else {
            let a = std::ptr::read_unaligned(src as *const u32);
            let b = std::ptr::read_unaligned(src.add(n - 4) as *const u32);
            std::ptr::write_unaligned(dst as *mut u32, a);
            std::ptr::write_unaligned(dst.add(n - 4) as *mut u32, b);
        }
        out.set_len(len + n);
    }
}

/// Appends the encoding of `value` to `out`.
#[inline]
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // A type whose Serialize impl fails (a sequence of unknown length, a
    // custom error) is a bug in that type, not in the data.
    if let Err(e) = value.serialize(&mut ser::Serializer { out }) {
        panic!(
            "failed to encode a value of type {}: {e}",
            std::any::type_name::<T>()
        );
    }
}

/// Decodes a value of type `T`.
#[inline]
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::new(format!(
            "cannot decode a value of type {}: {e}; the record was written by a \
             different type (did the job's types change without a new uid?)",
            std::any::type_name::<T>()
        ))
    })
}

/// Decodes into an existing value, reusing its allocations where the type
/// supports it (strings, vectors, tuples of them).
#[inline]
pub(crate) fn decode_in_place<T: DeserializeOwned>(
    bytes: &[u8],
    place: &mut T,
) -> Result<(), Error> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    T::deserialize_in_place(&mut de, place).map_err(|e| {
        Error::new(format!(
            "cannot decode a value of type {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// The bytes of `value` as a standalone encoding.
#[cfg(test)]
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut v = Vec::new();
    encode(value, &mut v);
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn append_copies_every_length() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(7)).collect();
            let mut out = vec![1, 2, 3];
            super::append(&mut out, &data);
            assert_eq!(&out[..3], &[1, 2, 3]);
            assert_eq!(&out[3..], &data[..], "length {n}");
        }
    }
}
