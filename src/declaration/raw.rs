//! Raw serde structs of the declaration file, with source locations kept for every value.
//!
//! These types only mirror the file's shape. `super::resolve` turns them into the validated
//! `super::Declaration` once; nothing else in the program reads them.

use std::fmt;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column in the declaration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub fn of<T>(s: &Spanned<T>) -> Pos {
        Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// The top-level keys of a declaration file.
#[cfg(test)]
pub const TOP_KEYS: &[&str] = &["version", "sets", "targets", "discover"];

/// The target keys handled by rangekeeper itself; every other key is provider-specific.
pub const TARGET_COMMON_KEYS: &[&str] = &[
    "provider",
    "description",
    "allow",
    "protect",
    "strict",
    "maxRanges",
    "allowPrivate",
    "allowBroad",
    "onExceed",
    "maxExtra",
    "maxLeaseTtl",
];

/// The keys of a composite set.
pub const SET_KEYS: &[&str] = &["include", "except", "description"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeclaration {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub sets: IndexMap<String, Spanned<RawSet>>,
    #[serde(default)]
    pub targets: IndexMap<String, Spanned<RawTarget>>,
    /// Templates that providers expand into targets.
    #[serde(default)]
    pub discover: Option<Spanned<RawDiscover>>,
}

/// The keys of the `discover:` section.
#[cfg(test)]
pub const DISCOVER_KEYS: &[&str] = &["interval", "templates"];

/// The `discover:` section: how often to list again, and the templates by name. Each
/// template is written like a target (provider, allow, protect, policy) whose provider
/// fields say what to list (an AKS subscription, EKS regions, tag filters).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscover {
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub templates: IndexMap<String, Spanned<RawTarget>>,
}

/// One item of a list: a CIDR, a bare address or a set name, optionally with a note.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub value: Spanned<String>,
}

/// What one list item holds before its location is attached.
enum EntryShape {
    Plain(String),
    /// `{cidr, note}`: the note is for people reading the file.
    WithNote(Spanned<String>),
}

impl<'de> Deserialize<'de> for EntryShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EntryShape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CIDR, an address, a set name, or {cidr, note}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EntryShape, E> {
                Ok(EntryShape::Plain(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EntryShape, E> {
                Ok(EntryShape::Plain(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EntryShape, E> {
                Ok(EntryShape::Plain(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EntryShape, E> {
                Ok(EntryShape::Plain(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<EntryShape, E> {
                Ok(EntryShape::Plain(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EntryShape, A::Error> {
                let mut cidr = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "cidr" => cidr = Some(map.next_value::<Spanned<String>>()?),
                        "note" => {
                            map.next_value::<String>()?;
                        }
                        other => return Err(de::Error::unknown_field(other, &["cidr", "note"])),
                    }
                }
                match cidr {
                    Some(c) => Ok(EntryShape::WithNote(c)),
                    None => Err(de::Error::missing_field("cidr")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned: Spanned<EntryShape> = Spanned::deserialize(d)?;
        Ok(match spanned.value {
            EntryShape::Plain(s) => RawEntry {
                value: Spanned::new(s, spanned.referenced, spanned.defined),
            },
            EntryShape::WithNote(value) => RawEntry { value },
        })
    }
}

/// A named set: a plain list, or a map (`include`/`except`, or a live source's fields).
#[derive(Debug)]
pub enum RawSet {
    List(Vec<RawEntry>),
    Map(IndexMap<String, Spanned<serde_json::Value>>),
}

impl<'de> Deserialize<'de> for RawSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of CIDRs/set names, or a map with include/except")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSet, A::Error> {
                let mut out = Vec::new();
                while let Some(e) = seq.next_element::<RawEntry>()? {
                    out.push(e);
                }
                Ok(RawSet::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSet, A::Error> {
                let mut out = IndexMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let v = map.next_value::<Spanned<serde_json::Value>>()?;
                    if out.insert(key.clone(), v).is_some() {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                }
                Ok(RawSet::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list field that keeps per-item locations (`allow`, `protect`, `include`, `except`).
#[derive(Debug, Default)]
pub struct RawList(pub Vec<RawEntry>);

impl<'de> Deserialize<'de> for RawList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<RawEntry>::deserialize(d).map(RawList)
    }
}

/// A target: common keys typed, every other key kept as JSON for the provider.
#[derive(Debug, Default)]
pub struct RawTarget {
    pub provider: Option<Spanned<String>>,
    pub description: Option<String>,
    pub allow: Option<Spanned<RawList>>,
    pub protect: Option<Spanned<RawList>>,
    pub strict: Option<Spanned<bool>>,
    pub max_ranges: Option<Spanned<u64>>,
    pub allow_private: Option<Spanned<bool>>,
    pub allow_broad: Option<Spanned<bool>>,
    pub on_exceed: Option<Spanned<String>>,
    pub max_extra: Option<Spanned<serde_json::Value>>,
    pub max_lease_ttl: Option<Spanned<String>>,
    /// Provider-specific fields, in file order.
    pub fields: IndexMap<String, Spanned<serde_json::Value>>,
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a target map with `provider` and `allow`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTarget, A::Error> {
                let mut t = RawTarget::default();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    match key.as_str() {
                        "provider" => t.provider = Some(map.next_value()?),
                        "description" => t.description = Some(map.next_value()?),
                        "allow" => t.allow = Some(map.next_value()?),
                        "protect" => t.protect = Some(map.next_value()?),
                        "strict" => t.strict = Some(map.next_value()?),
                        "maxRanges" => t.max_ranges = Some(map.next_value()?),
                        "allowPrivate" => t.allow_private = Some(map.next_value()?),
                        "allowBroad" => t.allow_broad = Some(map.next_value()?),
                        "onExceed" => t.on_exceed = Some(map.next_value()?),
                        "maxExtra" => t.max_extra = Some(map.next_value()?),
                        "maxLeaseTtl" => t.max_lease_ttl = Some(map.next_value()?),
                        _ => {
                            let v = map.next_value::<Spanned<serde_json::Value>>()?;
                            t.fields.insert(key, v);
                        }
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}
