//! Decoding objects tagged by a field (`{"type": "ack", ...}`) without serde's buffering.
//!
//! serde's derived internally tagged, untagged and flattened representations accept the tag
//! anywhere in the object, so they first buffer the whole object into an intermediate tree and
//! then decode every field again from it. That machinery, instantiated for every type inside a
//! frame, was an eighth of the widget's wasm. Tally's encoders (serde's derived `Serialize`)
//! always write the tag first, and an event's `offset` right before its `type`, so the decoders
//! here read exactly that: the leading keys, then the rest of the object, streamed straight into
//! the derived decoder of an externally tagged twin enum (the tag naming the variant).
//! `docs/protocol.md` states the order; objects that break it are refused with a clear error.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, VariantAccess, Visitor,
};

use crate::ids::Offset;

/// What an object of a tagged type starts with.
pub(crate) struct Lead {
    /// The `offset` before the tag, if there was one (events).
    pub offset: Option<Offset>,
    /// The tag's value.
    pub tag: String,
}

/// Reads an object's leading keys: optionally `offset`, then `tag_key` and its value.
pub(crate) fn lead<'de, A: MapAccess<'de>>(map: &mut A, tag_key: &'static str) -> Result<Lead, A::Error> {
    let mut offset = None;
    loop {
        match map.next_key_seed(KeySeed(tag_key))? {
            Some(Key::Tag) => {
                let tag = map.next_value()?;
                return Ok(Lead { offset, tag });
            }
            Some(Key::Offset) if offset.is_none() => offset = Some(map.next_value()?),
            Some(_) => {
                return Err(de::Error::custom(format_args!(
                    "`{tag_key}` must be the first field (after `offset` for events)"
                )));
            }
            None => return Err(de::Error::missing_field(tag_key)),
        }
    }
}

enum Key {
    Tag,
    Offset,
    Other,
}

struct KeySeed(&'static str);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(if v == self.0 {
            Key::Tag
        } else if v == "offset" {
            Key::Offset
        } else {
            Key::Other
        })
    }
}

/// The rest of an object whose tag has been read, presented as an externally tagged enum value
/// (`{tag: rest}`), so that a twin enum's derived `Deserialize` decodes it without buffering.
pub(crate) struct Rest<A> {
    tag: String,
    map: A,
}

impl<A> Rest<A> {
    pub(crate) fn new(tag: String, map: A) -> Self {
        Rest { tag, map }
    }
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Rest<A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

impl<'de, A: MapAccess<'de>> EnumAccess<'de> for Rest<A> {
    type Error = A::Error;
    type Variant = Fields<A>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Fields<A>), A::Error> {
        let tag: de::value::StringDeserializer<A::Error> = self.tag.into_deserializer();
        Ok((seed.deserialize(tag)?, Fields(self.map)))
    }
}

/// The variant's content: the object's remaining fields.
pub(crate) struct Fields<A>(A);

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for Fields<A> {
    type Error = A::Error;

    fn unit_variant(mut self) -> Result<(), A::Error> {
        while self.0.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        seed.deserialize(de::value::MapAccessDeserializer::new(self.0))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, A::Error> {
        Err(de::Error::custom("a tagged object has no tuple variants"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.0)
    }
}

/// Declares a tagged enum with struct variants (`#[serde(tag = ...)]` among its attributes, for
/// `Serialize`) and, from the same tokens, its externally tagged twin `$twin` (the same variants,
/// fields and field attributes, deriving only `Deserialize`) with the conversion into the real
/// enum. One definition, so the two cannot drift.
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident, decoded as $twin:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant { $( $(#[$fmeta])* $field: $ty ),* } ),*
        }

        #[derive(serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum $twin {
            $( $variant { $( $(#[$fmeta])* $field: $ty ),* } ),*
        }

        impl From<$twin> for $name {
            fn from(t: $twin) -> $name {
                match t {
                    $( $twin::$variant { $($field),* } => $name::$variant { $($field),* } ),*
                }
            }
        }
    };
}

pub(crate) use tagged_enum;

/// Declares a `Deserialize` that reads a map with `visit_map`.
macro_rules! map_deserialize {
    ($ty:ty, $expecting:literal, |$map:ident| $body:expr) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut $map: A) -> Result<$ty, A::Error> {
                        $body
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

pub(crate) use map_deserialize;
