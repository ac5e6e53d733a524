//! Reading an allow-list file back as what it *enforces*: the addresses a proxy consuming it
//! admits, format by format (nginx's first-match `allow`/`deny` rules with their default
//! allow, the plain and HAProxy lists, the JSON document with its `disabled` switch), so a
//! missing, moved or extra rule shows up as a different set, never as "in sync".

use rangekeeper_provider::RangeSet;
use rangekeeper_provider::cidr::{self, IpNet};

use crate::Format;

/// What a file enforces, and what was odd about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    /// The addresses admitted.
    pub admitted: RangeSet,
    /// Things that change or may change the meaning (unknown JSON keys, an explicit
    /// `disabled`), for the state's warnings.
    pub notes: Vec<String>,
}

/// Why a file cannot be read back; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: usize,
    pub message: String,
}

fn bad(line: usize, message: impl Into<String>) -> Unreadable {
    Unreadable {
        line,
        message: message.into(),
    }
}

/// Every IPv4 and IPv6 address.
pub fn everything() -> RangeSet {
    RangeSet::from_nets([
        IpNet::V4(cidr::Ipv4Net::default()),
        IpNet::V6(cidr::Ipv6Net::default()),
    ])
}

/// What `text` in `format` enforces.
pub fn read(format: Format, text: &str) -> Result<Enforced, Unreadable> {
    match format {
        Format::Plain | Format::Haproxy => list(text),
        Format::Nginx => nginx(text),
        Format::Json => json(text),
    }
}

/// One CIDR or address per line, `#` comments: the list is the set admitted (the proxy's ACL
/// matches a client against every entry).
fn list(text: &str) -> Result<Enforced, Unreadable> {
    let mut nets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        nets.push(
            cidr::parse(line)
                .map_err(|e| bad(i + 1, e.to_string()))?
                .net,
        );
    }
    Ok(Enforced {
        admitted: RangeSet::from_nets(nets),
        notes: Vec::new(),
    })
}

/// nginx `ngx_http_access_module` semantics: the rules are checked in order, the first one
/// that matches the client decides, and a client no rule matches is admitted. So an include
/// with only `allow` lines admits everyone, and a `deny all;` moved above the `allow` lines
/// admits no one.
fn nginx(text: &str) -> Result<Enforced, Unreadable> {
    let mut admitted = RangeSet::new();
    let mut undecided = everything();
    let mut statement = String::new();
    let mut start_line = 1;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut rest = line;
        while let Some(pos) = rest.find(';') {
            if statement.trim().is_empty() {
                start_line = i + 1;
            }
            statement.push(' ');
            statement.push_str(&rest[..pos]);
            let words: Vec<&str> = statement.split_whitespace().collect();
            let rule = match words.as_slice() {
                ["allow", what] => (true, *what),
                ["deny", what] => (false, *what),
                _ => {
                    return Err(bad(
                        start_line,
                        format!(
                            "expected `allow CIDR;` or `deny all;`, found `{};`",
                            words.join(" ")
                        ),
                    ));
                }
            };
            let matched = if rule.1 == "all" {
                undecided.clone()
            } else {
                let net = cidr::parse(rule.1)
                    .map_err(|e| bad(start_line, e.to_string()))?
                    .net;
                undecided.intersection(&RangeSet::from_nets([net]))
            };
            undecided = undecided.difference(&matched);
            if rule.0 {
                admitted = admitted.union(&matched);
            }
            statement.clear();
            rest = &rest[pos + 1..];
        }
        if !rest.trim().is_empty() {
            if statement.trim().is_empty() {
                start_line = i + 1;
            }
            statement.push(' ');
            statement.push_str(rest);
        }
    }
    if !statement.trim().is_empty() {
        return Err(bad(
            start_line,
            format!("`{}` is not ended by `;`", statement.trim()),
        ));
    }
    // Whoever no rule matched is admitted.
    Ok(Enforced {
        admitted: admitted.union(&undecided),
        notes: Vec::new(),
    })
}

/// `{"managedBy", "target", "disabled", "ranges"}`: `disabled: true` admits everyone
/// whatever the ranges say; unknown keys are reported, since a consumer may read them.
fn json(text: &str) -> Result<Enforced, Unreadable> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(e.line(), format!("not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad(1, "expected an object with a `ranges` list"))?;
    let mut notes = Vec::new();
    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| {
            !matches!(
                *k,
                "managedBy" | "target" | "disabled" | "ranges" | "leases"
            )
        })
        .collect();
    if !unknown.is_empty() {
        notes.push(format!(
            "unknown keys {} (not written by rangekeeper; a consumer may read them)",
            unknown.join(", ")
        ));
    }
    let disabled = match obj.get("disabled") {
        None | Some(serde_json::Value::Bool(false)) => false,
        Some(serde_json::Value::Bool(true)) => true,
        Some(other) => return Err(bad(1, format!("`disabled` is {other}, not a boolean"))),
    };
    let ranges = obj
        .get("ranges")
        .and_then(|r| r.as_array())
        .ok_or_else(|| bad(1, "expected an object with a `ranges` list"))?;
    let mut nets = Vec::new();
    for r in ranges {
        let s = r
            .as_str()
            .ok_or_else(|| bad(1, format!("range {r} is not a string")))?;
        nets.push(cidr::parse(s).map_err(|e| bad(1, e.to_string()))?.net);
    }
    if disabled {
        notes.push("`disabled: true`: every address is admitted".into());
        return Ok(Enforced {
            admitted: everything(),
            notes,
        });
    }
    Ok(Enforced {
        admitted: RangeSet::from_nets(nets),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
    }

    fn nginx_admits(text: &str) -> RangeSet {
        read(Format::Nginx, text).unwrap().admitted
    }

    #[test]
    fn nginx_first_match_with_default_allow() {
        assert_eq!(
            nginx_admits("allow 192.0.2.0/24;\ndeny all;\n"),
            set(&["192.0.2.0/24"])
        );
        assert_eq!(nginx_admits("allow 192.0.2.0/24;\n"), everything());
        assert_eq!(
            nginx_admits("deny all;\nallow 192.0.2.0/24;\n"),
            RangeSet::new()
        );
        assert_eq!(
            nginx_admits("deny 192.0.2.7;\nallow 192.0.2.0/24;\ndeny all;\n"),
            set(&["192.0.2.0/24"]).difference(&set(&["192.0.2.7"]))
        );
        assert_eq!(
            nginx_admits("allow 192.0.2.0/24; deny\n all;"),
            set(&["192.0.2.0/24"])
        );
        let e = read(Format::Nginx, "allow 192.0.2.0/24;\nreturn 403;\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = read(Format::Nginx, "allow 192.0.2.0/24;\ndeny all").unwrap_err();
        assert!(e.message.contains("not ended"), "{e:?}");
    }

    #[test]
    fn json_disabled_admits_everyone_and_unknown_keys_are_noted() {
        let e = read(
            Format::Json,
            r#"{"ranges": ["192.0.2.0/24"], "disabled": true}"#,
        )
        .unwrap();
        assert_eq!(e.admitted, everything());
        let e = read(
            Format::Json,
            r#"{"ranges": ["192.0.2.0/24"], "allowAll": 1}"#,
        )
        .unwrap();
        assert_eq!(e.admitted, set(&["192.0.2.0/24"]));
        assert!(e.notes[0].contains("allowAll"));
    }
}
