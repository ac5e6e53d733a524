//! kube-restrict-ip's config file, read as kube-restrict-ip reads it (viper over YAML):
//! keys in any letter case, `restrictedPorts` and `allowedNetworks` as lists, single values or
//! strings of several values, unknown keys ignored (with a warning here). Every value keeps
//! its line and column so problems point into the user's file.
//!
//! [`parse_kube_restrict_ip`] is a pure function of the text (no file access, no panics on
//! any input), so a fuzz target can call it directly.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::config::{TableName, parse_go_duration};

/// kube-restrict-ip's default `checkInterval` (its `--check-interval` flag default).
pub const KUBE_RESTRICT_IP_DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// kube-restrict-ip's default `ipChain`.
pub const KUBE_RESTRICT_IP_DEFAULT_CHAIN: &str = "KUBE-RESTRICT-IP";

/// The keys kube-restrict-ip reads, as its README spells them.
const KEYS: [&str; 4] = [
    "restrictedPorts",
    "allowedNetworks",
    "checkInterval",
    "ipChain",
];

/// A 1-based line and column in the config file (0: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct At {
    pub line: u64,
    pub column: u64,
}

impl At {
    fn of<T>(s: &Spanned<T>) -> At {
        At {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }

    /// `(line, column)` as options (`None` when unknown).
    pub fn known(self) -> (Option<u64>, Option<u64>) {
        if self.line == 0 {
            (None, None)
        } else {
            (Some(self.line), Some(self.column))
        }
    }
}

/// A value as written, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written<T> {
    pub value: T,
    pub at: At,
}

/// A problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// An error (the file cannot be used) or a warning (read anyway).
    pub error: bool,
    pub at: At,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.line > 0 {
            write!(f, "line {}:{}: ", self.at.line, self.at.column)?;
        }
        f.write_str(&self.message)
    }
}

/// kube-restrict-ip's config, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRestrictIp {
    /// `restrictedPorts`: the TCP ports to restrict (sorted, unique, non-empty).
    pub ports: Vec<u16>,
    /// `allowedNetworks` exactly as written (addresses or CIDRs, trimmed), for the strict CIDR
    /// parser of the binary.
    pub networks: Vec<Written<String>>,
    /// `checkInterval` (kube-restrict-ip's default: 10s).
    pub interval: Duration,
    /// `ipChain` when written: the name of the chain kube-restrict-ip used, which rangekeeper
    /// takes as its table name (the iptables chain is then `RK-<ipChain>`, so it never collides
    /// with a chain kube-restrict-ip left behind).
    pub chain: Option<Written<TableName>>,
}

impl KubeRestrictIp {
    /// The chain kube-restrict-ip itself wrote (`ipChain`, else its default), to report a
    /// leftover after switching.
    pub fn legacy_chain(&self) -> &str {
        self.chain
            .as_ref()
            .map_or(KUBE_RESTRICT_IP_DEFAULT_CHAIN, |c| c.value.as_str())
    }
}

/// One scalar as text (numbers and booleans as YAML wrote them).
#[derive(Debug)]
enum Scalar {
    Text(String),
    Number(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other("a boolean"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("nothing"))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("nothing"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("a list"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Other("a map"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A top-level value: one scalar or a list of them.
#[derive(Debug)]
enum Value {
    One(Scalar),
    List(Vec<Spanned<Scalar>>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::One(Scalar::Text(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value::One(Scalar::Number(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::One(Scalar::Number(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::One(Scalar::Number(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
                Ok(Value::One(Scalar::Other("a boolean")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::List(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::List(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Scalar>>()? {
                    out.push(item);
                }
                Ok(Value::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Value::One(Scalar::Other("a map")))
            }
        }
        d.deserialize_any(V)
    }
}

/// The document: keys as written (any case) with their values, in file order.
struct Document(Vec<(Spanned<String>, Spanned<Value>)>);

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Document;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of restrictedPorts, allowedNetworks, checkInterval, ipChain")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    out.push((key, map.next_value::<Spanned<Value>>()?));
                }
                Ok(Document(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The items of a list-valued key (`restrictedPorts`, `allowedNetworks`): a list, a single
/// value, or a string of values separated by spaces or commas. Commas are a doubtful
/// spelling (viper splits a string on spaces only), so they are read with a warning.
fn items(key: &str, value: &Spanned<Value>, problems: &mut Vec<Problem>) -> Vec<Written<String>> {
    let mut out = Vec::new();
    let mut split = |text: &str, at: At, problems: &mut Vec<Problem>| {
        if text.contains(',') {
            problems.push(Problem {
                error: false,
                at,
                message: format!(
                    "`{key}` `{text}` is read as a list separated by commas (kube-restrict-ip separates a string's items with spaces); write a YAML list to be sure"
                ),
            });
        }
        for part in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            out.push(Written {
                value: part.to_owned(),
                at,
            });
        }
    };
    match &value.value {
        Value::One(Scalar::Text(s)) => split(s, At::of(value), problems),
        Value::One(Scalar::Number(n)) => split(n, At::of(value), problems),
        Value::One(Scalar::Other(what)) => problems.push(Problem {
            error: true,
            at: At::of(value),
            message: format!("`{key}` is {what}; write a list"),
        }),
        Value::List(list) => {
            for item in list {
                match &item.value {
                    Scalar::Text(s) => split(s, At::of(item), problems),
                    Scalar::Number(n) => split(n, At::of(item), problems),
                    Scalar::Other(what) => problems.push(Problem {
                        error: true,
                        at: At::of(item),
                        message: format!("an item of `{key}` is {what}; write a single value"),
                    }),
                }
            }
        }
    }
    out
}

/// The text of a single-valued key (`checkInterval`, `ipChain`).
fn single(key: &str, value: &Spanned<Value>, problems: &mut Vec<Problem>) -> Option<String> {
    match &value.value {
        Value::One(Scalar::Text(s)) => Some(s.trim().to_owned()),
        Value::One(Scalar::Number(n)) => Some(n.clone()),
        Value::List(l) if l.is_empty() => None,
        Value::One(Scalar::Other(what)) => {
            problems.push(Problem {
                error: true,
                at: At::of(value),
                message: format!("`{key}` is {what}; write a single value"),
            });
            None
        }
        Value::List(_) => {
            problems.push(Problem {
                error: true,
                at: At::of(value),
                message: format!("`{key}` is a list; write a single value"),
            });
            None
        }
    }
}

/// Read a kube-restrict-ip config's text. Returns what was read (`None` only when the text is
/// not a YAML map at all) and every problem found (errors and warnings), each at its line and
/// column; the config may be used only when no problem is an error. Never panics.
pub fn parse_kube_restrict_ip(text: &str) -> (Option<KubeRestrictIp>, Vec<Problem>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut problems = Vec::new();
    let doc: Document = match serde_saphyr::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            // Every YAML error is somewhere; without a position, at the document's start.
            let at = e.location().map_or(At { line: 1, column: 1 }, |l| At {
                line: l.line(),
                column: l.column(),
            });
            let msg = e.without_snippet().to_string();
            let first = msg.lines().next().unwrap_or_default();
            // The position is reported separately.
            let msg = first
                .rfind(" at line ")
                .map_or(first, |i| &first[..i])
                .to_owned();
            problems.push(Problem {
                error: true,
                at,
                message: format!("not a kube-restrict-ip config: {msg}"),
            });
            return (None, problems);
        }
    };

    // viper folds keys to lower case; the same key twice (in any case) is ambiguous.
    let mut by_key: HashMap<&'static str, Spanned<Value>> = HashMap::new();
    let mut key_at: HashMap<&'static str, At> = HashMap::new();
    for (key, value) in doc.0 {
        let Some(known) = KEYS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(key.value.trim()))
        else {
            let lower = KEYS.map(str::to_ascii_lowercase);
            let hint = rangekeeper_provider::hint::suggest(
                &key.value.to_ascii_lowercase(),
                lower.iter().map(String::as_str),
            )
            .and_then(|l| KEYS.iter().find(|k| k.eq_ignore_ascii_case(l)))
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
            problems.push(Problem {
                error: false,
                at: At::of(&key),
                message: format!(
                    "unknown key `{}` is ignored, as kube-restrict-ip ignores it{hint}",
                    key.value
                ),
            });
            continue;
        };
        if let Some(first) = key_at.get(known) {
            problems.push(Problem {
                error: true,
                at: At::of(&key),
                message: format!(
                    "`{}` is given twice (first at line {}; keys are read regardless of letter case)",
                    key.value, first.line
                ),
            });
            continue;
        }
        key_at.insert(known, At::of(&key));
        by_key.insert(known, value);
    }

    let mut ports = std::collections::BTreeSet::new();
    match by_key.get("restrictedPorts") {
        None => problems.push(Problem {
            error: true,
            at: At::default(),
            message: "no restricted ports defined (add a `restrictedPorts` list)".into(),
        }),
        Some(v) => {
            let list = items("restrictedPorts", v, &mut problems);
            for p in &list {
                match p.value.parse::<u32>() {
                    Ok(n) if (1..=65535).contains(&n) => {
                        ports.insert(u16::try_from(n).unwrap_or(u16::MAX));
                    }
                    Ok(_) => problems.push(Problem {
                        error: true,
                        at: p.at,
                        message: format!("port {} is out of range 1-65535", p.value),
                    }),
                    Err(_) => problems.push(Problem {
                        error: true,
                        at: p.at,
                        message: format!(
                            "invalid port `{}`: write a TCP port number 1-65535",
                            p.value
                        ),
                    }),
                }
            }
            if list.is_empty() {
                problems.push(Problem {
                    error: true,
                    at: At::of(v),
                    message: "no restricted ports defined (`restrictedPorts` is empty)".into(),
                });
            }
        }
    }

    let networks = match by_key.get("allowedNetworks") {
        None => {
            problems.push(Problem {
                error: true,
                at: At::default(),
                message: "no allowed networks defined (add an `allowedNetworks` list)".into(),
            });
            Vec::new()
        }
        Some(v) => {
            let list = items("allowedNetworks", v, &mut problems);
            if list.is_empty() {
                problems.push(Problem {
                    error: true,
                    at: At::of(v),
                    message: "no allowed networks defined (`allowedNetworks` is empty)".into(),
                });
            }
            list
        }
    };

    let mut interval = KUBE_RESTRICT_IP_DEFAULT_INTERVAL;
    if let Some(v) = by_key.get("checkInterval")
        && let Some(text) = single("checkInterval", v, &mut problems)
    {
        let bad = |message: String| Problem {
            error: true,
            at: At::of(v),
            message,
        };
        if matches!(v.value, Value::One(Scalar::Number(_))) && text != "0" {
            problems.push(bad(format!(
                "checkInterval `{text}` has no unit; write a duration such as `60s` or `1m`"
            )));
        } else {
            match parse_go_duration(&text) {
                Ok(d) if d.is_zero() => problems.push(bad("checkInterval can't be 0".into())),
                Ok(d) => interval = d,
                Err(msg) => problems.push(bad(msg)),
            }
        }
    }

    let mut chain = None;
    if let Some(v) = by_key.get("ipChain")
        && let Some(text) = single("ipChain", v, &mut problems)
        && !text.is_empty()
    {
        match TableName::parse(&text) {
            Ok(name) => {
                chain = Some(Written {
                    value: name,
                    at: At::of(v),
                })
            }
            Err(why) => problems.push(Problem {
                error: true,
                at: At::of(v),
                message: format!(
                    "ipChain `{text}` cannot name rangekeeper's table: {}",
                    why.replace("`table` ", "the name ")
                ),
            }),
        }
    }

    problems.sort_by_key(|p| p.at);
    (
        Some(KubeRestrictIp {
            ports: ports.into_iter().collect(),
            networks,
            interval,
            chain,
        }),
        problems,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (KubeRestrictIp, Vec<Problem>) {
        let (k, p) = parse_kube_restrict_ip(text);
        assert!(p.iter().all(|p| !p.error), "{text}: {p:?}");
        (k.unwrap_or_else(|| panic!("{text}: {p:?}")), p)
    }

    fn errors(text: &str) -> Vec<Problem> {
        let (_, p) = parse_kube_restrict_ip(text);
        let errors: Vec<Problem> = p.into_iter().filter(|p| p.error).collect();
        assert!(!errors.is_empty(), "{text} was accepted");
        errors
    }

    fn nets(k: &KubeRestrictIp) -> Vec<&str> {
        k.networks.iter().map(|n| n.value.as_str()).collect()
    }

    #[test]
    fn kube_restrict_ip_file_is_read_as_is() {
        let text = "restrictedPorts:\n  - 9100\n  - \"10254\"\n\nallowedNetworks:\n  - 127.0.0.1\n  - 10.244.0.0/16\n  - 172.17.0.1/16\n\ncheckInterval: 1m30s\n";
        let (k, problems) = ok(text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(k.ports, vec![9100, 10254]);
        assert_eq!(
            nets(&k),
            vec!["127.0.0.1", "10.244.0.0/16", "172.17.0.1/16"]
        );
        assert_eq!(k.networks[1].at, At { line: 7, column: 5 });
        assert_eq!(k.interval, Duration::from_secs(90));
        assert_eq!(k.chain, None);
        assert_eq!(k.legacy_chain(), "KUBE-RESTRICT-IP");

        let (k, _) =
            ok("restrictedPorts: [6443]\nallowedNetworks: [10.0.0.0/8]\nipChain: MY-CHAIN\n");
        assert_eq!(k.interval, KUBE_RESTRICT_IP_DEFAULT_INTERVAL);
        assert_eq!(k.chain.as_ref().map(|c| c.value.as_str()), Some("MY-CHAIN"));
        assert_eq!(k.legacy_chain(), "MY-CHAIN");
    }

    /// #10.21: what viper accepts is accepted: a single port, a string of ports, a single
    /// network, keys in any letter case.
    #[test]
    fn scalars_strings_and_any_key_case_are_accepted() {
        let (k, problems) = ok("restrictedPorts: 6443\nallowedNetworks: 10.0.0.0/8\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(k.ports, vec![6443]);
        assert_eq!(nets(&k), vec!["10.0.0.0/8"]);

        let (k, problems) = ok(
            "RestrictedPorts: \"6443 10250\"\nALLOWEDNETWORKS: \"10.0.0.0/8 192.0.2.1\"\nipchain: X\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(k.ports, vec![6443, 10250]);
        assert_eq!(nets(&k), vec!["10.0.0.0/8", "192.0.2.1"]);
        assert_eq!(k.chain.unwrap().value.as_str(), "X");

        // Commas are split too, with a warning at the value.
        let (k, problems) =
            ok("restrictedPorts: 6443,10250\nallowedNetworks:\n  - 10.0.0.0/8, 192.0.2.1\n");
        assert_eq!(k.ports, vec![6443, 10250]);
        assert_eq!(nets(&k), vec!["10.0.0.0/8", "192.0.2.1"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .all(|p| !p.error && p.message.contains("commas"))
        );
        assert_eq!(problems[1].at, At { line: 3, column: 5 });
    }

    /// #10.21: unknown keys are ignored (as viper ignores them), with a warning at the key.
    #[test]
    fn unknown_keys_are_ignored_with_a_warning() {
        let (k, problems) = ok(
            "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\nrestrictPorts: [1]\nlogLevel: debug\n",
        );
        assert_eq!(k.ports, vec![80]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].at, At { line: 3, column: 1 });
        assert!(
            problems[0]
                .message
                .contains("unknown key `restrictPorts` is ignored")
        );
        assert!(
            problems[0]
                .message
                .contains("did you mean `restrictedPorts`")
        );
        assert!(!problems[1].message.contains("did you mean"));
    }

    #[test]
    fn kube_restrict_ip_errors_are_located() {
        let cases = [
            ("allowedNetworks: [10.0.0.0/8]\n", "no restricted ports", 0),
            ("restrictedPorts: [80]\n", "no allowed networks", 0),
            (
                "restrictedPorts: [80]\nallowedNetworks: []\n",
                "no allowed networks",
                2,
            ),
            (
                "restrictedPorts: [http]\nallowedNetworks: [1.2.3.4]\n",
                "invalid port `http`",
                1,
            ),
            (
                "restrictedPorts:\n  - 80\n  - 70000\nallowedNetworks: [1.2.3.4]\n",
                "out of range",
                3,
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\ncheckInterval: 60\n",
                "has no unit",
                3,
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\ncheckInterval: 0s\n",
                "can't be 0",
                3,
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\ncheckInterval: soon\n",
                "not a duration",
                3,
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\nipChain: \"a b\"\n",
                "cannot name rangekeeper's table",
                3,
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: {a: 1}\n",
                "is a map",
                2,
            ),
            (
                "restrictedPorts: [80]\nrestrictedports: [81]\nallowedNetworks: [1.2.3.4]\n",
                "given twice",
                2,
            ),
            ("restrictedPorts: [80\n", "not a kube-restrict-ip config", 1),
            ("- 1\n", "not a kube-restrict-ip config", 1),
        ];
        for (text, want, line) in cases {
            let errs = errors(text);
            assert!(
                errs.iter().any(|e| e.message.contains(want)),
                "{text}: {errs:?}"
            );
            let e = errs.iter().find(|e| e.message.contains(want)).unwrap();
            assert_eq!(e.at.line, line, "{text}: {e:?}");
        }
    }

    #[test]
    fn any_text_is_read_without_panicking() {
        for text in [
            "",
            "\u{feff}",
            "~",
            "restrictedPorts:",
            ": :",
            "[",
            "restrictedPorts: [[1]]",
            "\0",
            "a: &x 1\nb: *x\n",
        ] {
            let _ = parse_kube_restrict_ip(text);
        }
    }
}
