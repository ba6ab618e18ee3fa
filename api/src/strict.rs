//! Decoding of request bodies that takes a struct only as a JSON object.
//!
//! serde's derived `Deserialize` for a struct also accepts its sequence
//! form, the field values in declaration order: `["id", {…}, {…}, false]`
//! decodes as a [`CreateActorRequest`](crate::CreateActorRequest). That form
//! names no fields, so `deny_unknown_fields` has nothing to check and a
//! positional guess is taken as meant. [`from_json_slice`] wraps the JSON
//! deserializer so that wherever a type asks for a struct, only an object
//! is accepted. The wrapper hands itself down through every sequence, map,
//! option, newtype and enum, so every nested struct is covered, including
//! ones added later, with no attribute to forget on a field; everything
//! else (unknown and duplicate fields, positions in error messages) is
//! serde_json's own.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde::Deserialize;

/// Decodes a request body: `serde_json::from_slice`, except that a struct
/// must be a JSON object at every level.
pub fn from_json_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(Strict(&mut de))?;
    de.end()?;
    Ok(value)
}

/// A deserializer that passes every request on, wrapping the visitor.
struct Strict<D>(D);

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.0.$method(Wrap::new(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, Wrap::new(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_newtype_struct(name, Wrap::new(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, Wrap::new(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0
            .deserialize_tuple_struct(name, len, Wrap::new(visitor))
    }

    /// The one change: a struct's visitor refuses the sequence form.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0
            .deserialize_struct(name, fields, Wrap::object_only(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, Wrap::new(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor that wraps whatever it is handed to go deeper, and refuses a
/// sequence when it visits a struct.
struct Wrap<V> {
    inner: V,
    object_only: bool,
}

impl<V> Wrap<V> {
    fn new(inner: V) -> Self {
        Wrap {
            inner,
            object_only: false,
        }
    }

    fn object_only(inner: V) -> Self {
        Wrap {
            inner,
            object_only: true,
        }
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.object_only {
            f.write_str("a JSON object (")?;
            self.inner.expecting(f)?;
            f.write_str(")")
        } else {
            self.inner.expecting(f)
        }
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.object_only {
            return Err(de::Error::invalid_type(Unexpected::Seq, &self));
        }
        self.inner.visit_seq(StrictSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(StrictMap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(StrictEnum(data))
    }
}

/// A seed whose deserializer is wrapped.
struct StrictSeed<T>(T);

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

struct StrictSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct StrictMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(StrictSeed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct StrictEnum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for StrictEnum<A> {
    type Error = A::Error;
    type Variant = StrictVariant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(StrictSeed(seed))?;
        Ok((value, StrictVariant(variant)))
    }
}

struct StrictVariant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for StrictVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(StrictSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::new(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap::object_only(visitor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use serde_json::{json, Value};

    fn full() -> Value {
        json!({
            "id": "a1",
            "template": {"namespace": "default", "name": "t"},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "dir:/srv/rootfs",
                    "command": ["/bin/sh", "-c", "true"],
                    "env": [{"name": "A", "value": "b"}],
                    "workingDir": "/",
                    "securityContext": {
                        "capabilities": {"add": ["SETUID"], "drop": ["KILL"]},
                        "runAsUser": 1000,
                        "runAsGroup": 1000
                    },
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}]
                }],
                "volumes": [{"name": "data", "durableDir": {}}]
            },
            "start": false
        })
    }

    fn decode(v: &Value) -> Result<CreateActorRequest, String> {
        from_json_slice(&serde_json::to_vec(v).unwrap()).map_err(|e| e.to_string())
    }

    /// The object at `path` (keys and indexes) replaced by its values in
    /// field order: serde's sequence form of that struct.
    fn as_array(path: &[&str], fields: &[&str]) -> Value {
        let mut v = full();
        let mut cur = &mut v;
        for p in path {
            cur = match p.parse::<usize>() {
                Ok(i) => &mut cur[i],
                Err(_) => &mut cur[*p],
            };
        }
        let seq: Vec<Value> = fields.iter().map(|f| cur[*f].clone()).collect();
        *cur = Value::Array(seq);
        v
    }

    #[test]
    fn objects_decode_as_serde_json_decodes_them() {
        let want: CreateActorRequest = serde_json::from_value(full()).unwrap();
        assert_eq!(decode(&full()).unwrap(), want);
    }

    #[test]
    fn the_sequence_form_of_a_struct_is_refused_at_every_level() {
        let c = ["spec", "containers", "0"];
        let sc = ["spec", "containers", "0", "securityContext"];
        let cases: Vec<(Vec<&str>, &[&str])> = vec![
            (vec![], &["id", "template", "spec", "start"]),
            (vec!["template"], &["namespace", "name"]),
            (vec!["spec"], &["containers", "volumes"]),
            (
                c.to_vec(),
                &[
                    "name",
                    "image",
                    "command",
                    "env",
                    "workingDir",
                    "securityContext",
                    "volumeMounts",
                ],
            ),
            ([&c[..], &["env", "0"]].concat(), &["name", "value"]),
            (sc.to_vec(), &["capabilities", "runAsUser", "runAsGroup"]),
            ([&sc[..], &["capabilities"]].concat(), &["add", "drop"]),
            (
                [&c[..], &["volumeMounts", "0"]].concat(),
                &["name", "mountPath", "readOnly"],
            ),
            (vec!["spec", "volumes", "0"], &["name", "durableDir"]),
            (vec!["spec", "volumes", "0", "durableDir"], &[]),
        ];
        for (path, fields) in cases {
            let v = as_array(&path, fields);
            // Without the guard, serde would take it (the test's premise).
            assert!(
                serde_json::from_value::<CreateActorRequest>(v.clone()).is_ok(),
                "{path:?}: {v}"
            );
            let err = decode(&v).unwrap_err();
            assert!(
                err.contains("invalid type: sequence, expected a JSON object"),
                "{path:?}: {err}"
            );
        }
    }

    #[test]
    fn structs_inside_options_newtypes_and_enums_are_objects_too() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Inner {
            a: u8,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Newtype(Inner);
        #[derive(Debug, PartialEq, Deserialize)]
        enum E {
            Unit,
            New(Inner),
            Tuple(u8, u8),
            Struct { a: u8 },
        }
        let all: Vec<E> = from_json_slice(
            br#"["Unit", {"New": {"a": 1}}, {"Tuple": [1, 2]}, {"Struct": {"a": 3}}]"#,
        )
        .unwrap();
        assert_eq!(
            all,
            [
                E::Unit,
                E::New(Inner { a: 1 }),
                E::Tuple(1, 2),
                E::Struct { a: 3 }
            ]
        );
        for bad in [&br#"{"New": [1]}"#[..], br#"{"Struct": [3]}"#] {
            let err = from_json_slice::<E>(bad).unwrap_err().to_string();
            assert!(err.contains("invalid type: sequence"), "{err}");
        }
        assert!(from_json_slice::<Option<Inner>>(b"[1]").is_err());
        assert_eq!(
            from_json_slice::<Option<Inner>>(br#"{"a": 1}"#).unwrap(),
            Some(Inner { a: 1 })
        );
        assert!(from_json_slice::<Newtype>(b"[1]").is_err());
        assert!(from_json_slice::<Vec<Newtype>>(b"[[1]]").is_err());
        assert_eq!(
            from_json_slice::<Newtype>(br#"{"a": 1}"#).unwrap(),
            Newtype(Inner { a: 1 })
        );
    }

    #[test]
    fn the_message_says_an_object_is_expected() {
        let err = from_json_slice::<CreateActorRequest>(br#"["a1"]"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid type: sequence, expected a JSON object (struct CreateActorRequest) at line 1 column 1"
        );
    }

    #[test]
    fn what_serde_json_refuses_stays_refused_with_its_position() {
        let err = from_json_slice::<CreateActorRequest>(br#"{"id": "a", "id": "b"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate field `id`"), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
        let mut v = full();
        v["spec"]["containers"][0]["privileged"] = json!(true);
        let err = decode(&v).unwrap_err();
        assert!(err.contains("unknown field `privileged`"), "{err}");
        let mut bytes = serde_json::to_vec(&full()).unwrap();
        bytes.extend_from_slice(b" []");
        let err = from_json_slice::<CreateActorRequest>(&bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("trailing characters"), "{err}");
        let mut v = full();
        v["template"] = json!(5);
        let err = decode(&v).unwrap_err();
        assert!(err.contains("invalid type: integer `5`"), "{err}");
        // Arrays where the schema has lists are still lists.
        let mut v = full();
        v["spec"]["containers"][0]["command"] = json!({"0": "/bin/sh"});
        assert!(decode(&v).is_err());
    }
}
