//! A serde serializer for the postcard wire format that writes straight
//! into a `Vec`: every value is a few inlined pushes, with no flavor
//! indirection. Its output is byte-for-byte postcard's (tested against
//! `postcard::to_allocvec`), so `postcard` decodes it.

use super::append;
use serde::ser::{self, Serialize};
use std::fmt;

/// Why a value could not be encoded.
#[derive(Debug)]
pub(crate) struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

pub(crate) struct Serializer<'a> {
    pub out: &'a mut Vec<u8>,
}

type R = Result<(), EncodeError>;

impl Serializer<'_> {
    #[inline]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    #[inline]
    fn varint128(&mut self, mut v: u128) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

impl<'s, 'a> ser::Serializer for &'s mut Serializer<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    #[inline]
    fn serialize_bool(self, v: bool) -> R {
        self.out.push(u8::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> R {
        self.out.push(v as u8);
        Ok(())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> R {
        self.varint(u64::from(((v << 1) ^ (v >> 15)) as u16));
        Ok(())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> R {
        self.varint(u64::from(((v << 1) ^ (v >> 31)) as u32));
        Ok(())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> R {
        self.varint(zigzag(v));
        Ok(())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> R {
        self.varint128(((v << 1) ^ (v >> 127)) as u128);
        Ok(())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> R {
        self.out.push(v);
        Ok(())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> R {
        self.varint(u64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> R {
        self.varint(u64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> R {
        self.varint(v);
        Ok(())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> R {
        self.varint128(v);
        Ok(())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> R {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> R {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> R {
        let mut buf = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> R {
        self.varint(v.len() as u64);
        append(self.out, v.as_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> R {
        self.varint(v.len() as u64);
        append(self.out, v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> R {
        self.out.push(0);
        Ok(())
    }
    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> R {
        self.out.push(1);
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> R {
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> R {
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> R {
        self.varint(u64::from(index));
        Ok(())
    }
    #[inline]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> R {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> R {
        self.varint(u64::from(index));
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, EncodeError> {
        let len = len.ok_or_else(|| {
            EncodeError("sequences of unknown length cannot be encoded; collect them first".into())
        })?;
        self.varint(len as u64);
        Ok(self)
    }
    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, EncodeError> {
        self.varint(u64::from(index));
        Ok(self)
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self, EncodeError> {
        let len = len.ok_or_else(|| {
            EncodeError("maps of unknown length cannot be encoded; collect them first".into())
        })?;
        self.varint(len as u64);
        Ok(self)
    }
    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, EncodeError> {
        self.varint(u64::from(index));
        Ok(self)
    }
    fn collect_str<T: ?Sized + fmt::Display>(self, value: &T) -> R {
        self.serialize_str(&value.to_string())
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for &mut Serializer<'_> {
            type Ok = ();
            type Error = EncodeError;
            #[inline]
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> R {
                value.serialize(&mut **self)
            }
            #[inline]
            fn end(self) -> R {
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl ser::SerializeMap for &mut Serializer<'_> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> R {
        key.serialize(&mut **self)
    }
    #[inline]
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    #[inline]
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Serializer<'_> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _: &'static str, value: &T) -> R {
        value.serialize(&mut **self)
    }
    #[inline]
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Serializer<'_> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _: &'static str, value: &T) -> R {
        value.serialize(&mut **self)
    }
    #[inline]
    fn end(self) -> R {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize as S};
    use std::collections::BTreeMap;

    #[derive(S, Deserialize, Debug, PartialEq)]
    enum Kind {
        Unit,
        New(i32),
        Tuple(u8, String),
        Struct { a: Option<u64>, b: Vec<i16> },
    }

    #[derive(S, Deserialize, Debug, PartialEq)]
    struct Everything {
        b: bool,
        i8: i8,
        i16: i16,
        i32: i32,
        i64: i64,
        i128: i128,
        u8: u8,
        u16: u16,
        u32: u32,
        u64: u64,
        u128: u128,
        f32: f32,
        f64: f64,
        c: char,
        s: String,
        long: String,
        bytes: Vec<u8>,
        none: Option<u8>,
        some: Option<(String, i64)>,
        unit: (),
        kinds: Vec<Kind>,
        map: BTreeMap<String, u32>,
    }

    fn ours<T: S>(v: &T) -> Vec<u8> {
        let mut out = vec![];
        v.serialize(&mut Serializer { out: &mut out }).unwrap();
        out
    }

    #[test]
    fn matches_postcard_byte_for_byte() {
        let v = Everything {
            b: true,
            i8: -5,
            i16: -300,
            i32: i32::MIN,
            i64: -1,
            i128: i128::MAX,
            u8: 200,
            u16: 65535,
            u32: 1 << 30,
            u64: u64::MAX,
            u128: 1 << 100,
            f32: 1.5,
            f64: -2.25,
            c: 'é',
            s: "hello".into(),
            long: "x".repeat(300),
            bytes: vec![1, 2, 3],
            none: None,
            some: Some(("word".into(), 1)),
            unit: (),
            kinds: vec![
                Kind::Unit,
                Kind::New(-7),
                Kind::Tuple(3, "t".into()),
                Kind::Struct {
                    a: Some(9),
                    b: vec![-1, 2],
                },
            ],
            map: [("a".to_string(), 1), ("b".to_string(), 2)].into(),
        };
        let theirs = postcard::to_allocvec(&v).unwrap();
        assert_eq!(ours(&v), theirs);
        let back: Everything = postcard::from_bytes(&ours(&v)).unwrap();
        assert_eq!(back, v);
        for n in [0i64, 1, -1, 63, 64, -64, -65, 1 << 40, i64::MIN, i64::MAX] {
            assert_eq!(ours(&n), postcard::to_allocvec(&n).unwrap(), "{n}");
        }
    }
}
