//! How many bytes a decoded value holds, so that the near tier's memory
//! bound counts the decoded copies it keeps: serde walks the value, each
//! number counts its width, each string or byte buffer its header
//! (`size_of::<String>()`) and its length, each sequence or map its header
//! and its elements. Padding, capacity beyond length, allocator overhead
//! and pointers serde cannot see (a `Box`, an `Arc`) are not counted: the
//! figure is what the value holds, not what the allocator handed out.

use serde::Serialize;
use serde::ser;

/// The bytes `value` holds, inline and on the heap.
pub(crate) fn of<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut total = 0;
    let _ = value.serialize(Counter(&mut total));
    total
}

struct Counter<'a>(&'a mut usize);

/// Never returned: counting cannot fail; serde's traits want a type.
#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Never
    }
}

/// A part of a value: a field, an element, a map's key or value.
fn part<T: Serialize + ?Sized>(total: &mut usize, value: &T) {
    let _ = value.serialize(Counter(total));
}

/// The header of a string, buffer or sequence (pointer, length, capacity).
const VEC: usize = std::mem::size_of::<Vec<u8>>();
/// The header of a map.
const MAP: usize = std::mem::size_of::<std::collections::HashMap<u8, u8>>();

macro_rules! width {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(fn $name(self, _: $ty) -> Result<(), Never> {
            *self.0 += std::mem::size_of::<$ty>();
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for Counter<'a> {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    width!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f32: f32,
        serialize_f64: f64, serialize_char: char,
    );

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Never> {
        *self.0 += VEC + v.len();
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Never> {
        *self.0 += VEC + v.len();
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn serialize_unit(self) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Never> {
        *self.0 += VEC;
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, Never> {
        *self.0 += MAP;
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
}

impl ser::SerializeSeq for Counter<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTuple for Counter<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Counter<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Counter<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeMap for Counter<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        part(self.0, key);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStruct for Counter<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Counter<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        part(self.0, value);
        Ok(())
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::of;

    #[test]
    fn counts_what_numbers_strings_sequences_and_maps_hold() {
        const VEC: usize = std::mem::size_of::<Vec<u8>>();
        assert_eq!(of(&7u64), 8);
        assert_eq!(of(&"hello".to_owned()), VEC + 5);
        assert_eq!(of(&vec![1u32, 2, 3]), VEC + 12);
        assert_eq!(
            of(&vec!["ab".to_owned(), "cde".to_owned()]),
            VEC + 2 * VEC + 5
        );
        assert_eq!(of(&Some("abc".to_owned())), VEC + 3);
        assert_eq!(of(&(1u8, 2u16)), 3);
        let map: std::collections::BTreeMap<u8, String> = [(1, "xy".to_owned())].into();
        assert!(of(&map) >= 1 + VEC + 2);
    }
}
