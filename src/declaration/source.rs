//! Validated live-source specs: a named set written as `{url: ...}`, `{dns: ...}` or
//! `{self: true}` in the declaration, parsed once (with located errors) into [`SourceSpec`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::declaration::raw::Pos;

/// The keys that make a map-form set a live source (one of them, exactly).
pub const SOURCE_KIND_KEYS: &[&str] = &["url", "dns", "self"];

/// Every key a source set accepts.
pub const SOURCE_KEYS: &[&str] = &[
    "url",
    "select",
    "where",
    "field",
    "dns",
    "self",
    "refresh",
    "timeout",
    "maxBytes",
    "description",
];

/// Default response-size cap of a `url` source.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Default time one fetch may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The echo endpoints asked for this machine's egress IP when none are configured.
pub const DEFAULT_ECHO: &[&str] = &["https://checkip.amazonaws.com/", "https://api.ipify.org/"];

/// A validated live source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub name: String,
    pub kind: SourceKind,
    /// How often the source is fetched again.
    pub refresh: Duration,
    /// How long one fetch may take.
    pub timeout: Duration,
    /// The most bytes a response may have.
    pub max_bytes: u64,
}

/// Where a source's ranges come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// A JSON document over https.
    Url(UrlSource),
    /// A host name's A and AAAA records, each as a /32 or /128.
    Dns { host: String },
    /// This machine's egress IP, as seen by echo endpoints that must agree. Empty: the
    /// `--self-echo` endpoints, or the defaults.
    Egress { endpoints: Vec<reqwest::Url> },
}

/// A `url` source: where to fetch and how to find the CIDRs in the JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlSource {
    pub url: reqwest::Url,
    /// A JSON pointer to the list (`""`: the document itself).
    pub select: String,
    /// Keep only objects whose fields equal these values.
    pub filter: Vec<(String, Value)>,
    /// Take this field of each object (without it, the items are strings).
    pub field: Option<String>,
}

impl SourceSpec {
    /// A short identity of what is fetched, so a cached value of a different spec (the URL
    /// or filter changed) is never used.
    pub fn identity(&self) -> String {
        match &self.kind {
            SourceKind::Url(u) => {
                let filter: Vec<String> =
                    u.filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "url {} select {} where {} field {}",
                    u.url,
                    u.select,
                    filter.join(","),
                    u.field.as_deref().unwrap_or("-")
                )
            }
            SourceKind::Dns { host } => format!("dns {host}"),
            SourceKind::Egress { endpoints } => {
                let e: Vec<&str> = endpoints.iter().map(reqwest::Url::as_str).collect();
                format!("self {}", e.join(","))
            }
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SourceKind::Url(u) => {
                write!(f, "url {}", redact(&u.url))?;
                if !u.select.is_empty() {
                    write!(f, " select {}", u.select)?;
                }
            }
            SourceKind::Dns { host } => write!(f, "dns {host}")?,
            SourceKind::Egress { .. } => write!(f, "self (egress IP)")?,
        }
        write!(f, ", refresh {}", format_duration(self.refresh))
    }
}

/// Whether a map-form set is a live source (it has `url`, `dns` or `self`).
pub fn is_source<V>(map: &IndexMap<String, V>) -> bool {
    SOURCE_KIND_KEYS.iter().any(|k| map.contains_key(*k))
}

/// A URL as it may be shown or logged: user name and password replaced by `***`, every
/// query value by `***` (keys stay, so `?access_token=***` still says what was sent).
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username("***");
    }
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut q = u.query_pairs_mut();
        q.clear();
        for k in keys {
            q.append_pair(&k, "***");
        }
    }
    u.to_string()
}

/// `text` with every http(s) URL in it redacted like [`redact`] (for error texts of HTTP
/// libraries, which quote the URL they were given).
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let next_url = |t: &str| {
        [t.find("http://"), t.find("https://")]
            .into_iter()
            .flatten()
            .min()
    };
    while let Some(at) = next_url(rest) {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | '`'))
            .map_or(rest.len(), |e| at + e);
        let candidate = &rest[at..end];
        match reqwest::Url::parse(candidate) {
            Ok(u) => out.push_str(&redact(&u)),
            Err(_) => out.push_str(candidate),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a URL may be fetched: https anywhere, plain http only on loopback hosts.
pub fn url_allowed(url: &reqwest::Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "`{}` is plain http: sources must use https (plain http only on loopback hosts)",
            redact(url)
        )),
        other => Err(format!(
            "`{}` has scheme `{other}`: sources must use https",
            redact(url)
        )),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(a) => a.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// Parse a URL of a source or echo endpoint and check its scheme.
pub fn parse_url(s: &str) -> Result<reqwest::Url, String> {
    let url =
        reqwest::Url::parse(s).map_err(|e| format!("`{}` is not a URL: {e}", redact_urls_in(s)))?;
    url_allowed(&url)?;
    if url.host().is_none() {
        return Err(format!("`{}` has no host", redact(&url)));
    }
    Ok(url)
}

/// Parse a duration like `90s`, `5m`, `6h`, `1d`, `1h30m` or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("a duration must not be empty (e.g. 60s, 5m, 6h, 1d)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{s}` is not a duration like 60s, 5m, 6h or 1d"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = |mult: u64| {
            n.checked_mul(mult)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("`{s}` is too long"))
        };
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => secs(1)?,
            "m" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86_400)?,
            "" => {
                return Err(format!("`{s}` needs a unit: ms, s, m, h or d (e.g. {n}s)"));
            }
            other => {
                return Err(format!(
                    "`{s}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = total
            .checked_add(d)
            .ok_or_else(|| format!("`{s}` is too long"))?;
    }
    Ok(total)
}

/// `1h30m`, `45s`, `500ms`: the inverse of [`parse_duration`] for whole units.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// Parse a source set. Errors carry the location of the offending value.
pub fn parse(
    name: &str,
    set_pos: Pos,
    map: &IndexMap<String, Spanned<Value>>,
) -> Result<SourceSpec, Vec<(Pos, String)>> {
    let mut errors: Vec<(Pos, String)> = Vec::new();
    let at = |k: &str| map.get(k).map(Pos::of).unwrap_or(set_pos);
    for (key, value) in map {
        if !SOURCE_KEYS.contains(&key.as_str()) {
            let hint = crate::declaration::did_you_mean(key, SOURCE_KEYS.iter().copied());
            let extra = if key == "include" || key == "except" {
                "; a live source cannot also have include/except: make a separate set that includes it".to_owned()
            } else {
                String::new()
            };
            errors.push((
                Pos::of(value),
                format!(
                    "set `{name}`: unknown key `{key}` for a live source{hint}{extra} (keys: {})",
                    SOURCE_KEYS.join(", ")
                ),
            ));
        }
    }
    let kinds: Vec<&str> = SOURCE_KIND_KEYS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    if kinds.len() > 1 {
        errors.push((
            at(kinds[1]),
            format!(
                "set `{name}`: a source has exactly one of url, dns or self, not {}",
                kinds.join(" and ")
            ),
        ));
        return Err(errors);
    }
    let str_of = |k: &str, errors: &mut Vec<(Pos, String)>| -> Option<String> {
        let v = map.get(k)?;
        match &v.value {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => {
                errors.push((
                    Pos::of(v),
                    format!("set `{name}`: `{k}` must be a non-empty string"),
                ));
                None
            }
        }
    };
    let duration_of = |k: &str, default: Duration, errors: &mut Vec<(Pos, String)>| -> Duration {
        let Some(v) = map.get(k) else { return default };
        let parsed = match &v.value {
            Value::String(s) => parse_duration(s),
            Value::Number(n) => Err(format!("{n} needs a unit, e.g. {n}s")),
            other => Err(format!("{other} is not a duration")),
        };
        match parsed {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                errors.push((
                    Pos::of(v),
                    format!("set `{name}`: `{k}` must be at least 1s"),
                ));
                default
            }
            Err(e) => {
                errors.push((Pos::of(v), format!("set `{name}`: `{k}`: {e}")));
                default
            }
        }
    };
    let kind = kinds.first().copied().unwrap_or("url");
    let only_url = ["select", "where", "field", "maxBytes"];
    if kind != "url" {
        for k in only_url {
            if let Some(v) = map.get(k) {
                errors.push((
                    Pos::of(v),
                    format!("set `{name}`: `{k}` is only for `url` sources"),
                ));
            }
        }
    }
    let default_refresh = match kind {
        "url" => Duration::from_secs(3600),
        "dns" => Duration::from_secs(300),
        _ => Duration::from_secs(600),
    };
    let refresh = duration_of("refresh", default_refresh, &mut errors);
    let timeout = duration_of("timeout", DEFAULT_TIMEOUT, &mut errors);
    let max_bytes = match map.get("maxBytes") {
        None => DEFAULT_MAX_BYTES,
        Some(v) => match v.value.as_u64() {
            Some(n) if n > 0 => n,
            _ => {
                errors.push((
                    Pos::of(v),
                    format!("set `{name}`: `maxBytes` must be a positive whole number of bytes"),
                ));
                DEFAULT_MAX_BYTES
            }
        },
    };
    let kind = match kind {
        "url" => {
            let url = str_of("url", &mut errors).and_then(|s| match parse_url(&s) {
                Ok(u) => Some(u),
                Err(e) => {
                    errors.push((at("url"), format!("set `{name}`: {e}")));
                    None
                }
            });
            let select = match map.get("select") {
                None => String::new(),
                Some(v) => match &v.value {
                    Value::String(s) if s.is_empty() || s.starts_with('/') => s.clone(),
                    _ => {
                        errors.push((
                            Pos::of(v),
                            format!(
                                "set `{name}`: `select` must be a JSON pointer like `/actions` or `/prefixes`"
                            ),
                        ));
                        String::new()
                    }
                },
            };
            let mut filter = Vec::new();
            if let Some(v) = map.get("where") {
                match &v.value {
                    Value::Object(o) if !o.is_empty() => {
                        for (k, fv) in o {
                            if fv.is_object() || fv.is_array() {
                                errors.push((
                                    Pos::of(v),
                                    format!("set `{name}`: `where.{k}` must be a plain value to compare with"),
                                ));
                            } else {
                                filter.push((k.clone(), fv.clone()));
                            }
                        }
                    }
                    _ => errors.push((
                        Pos::of(v),
                        format!(
                            "set `{name}`: `where` must be a map of field: value, e.g. {{service: EC2, region: eu-west-1}}"
                        ),
                    )),
                }
            }
            let field = str_of("field", &mut errors);
            if !filter.is_empty() && field.is_none() && !map.contains_key("field") {
                errors.push((
                    at("where"),
                    format!(
                        "set `{name}`: `where` filters objects, so `field` must say which field holds the CIDR (e.g. field: ip_prefix)"
                    ),
                ));
            }
            url.map(|url| {
                SourceKind::Url(UrlSource {
                    url,
                    select,
                    filter,
                    field,
                })
            })
        }
        "dns" => str_of("dns", &mut errors).and_then(|host| {
            let valid = host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if valid {
                Some(SourceKind::Dns { host })
            } else {
                errors.push((
                    at("dns"),
                    format!("set `{name}`: `{host}` is not a host name"),
                ));
                None
            }
        }),
        _ => {
            let v = map.get("self");
            match v.map(|v| &v.value) {
                Some(Value::Bool(true)) => Some(SourceKind::Egress {
                    endpoints: Vec::new(),
                }),
                Some(Value::Object(o)) => {
                    let mut endpoints = Vec::new();
                    let mut ok = true;
                    for (k, ev) in o {
                        if k != "endpoints" {
                            ok = false;
                            errors.push((
                                at("self"),
                                format!("set `{name}`: unknown key `self.{k}` (only `endpoints`)"),
                            ));
                            continue;
                        }
                        match ev.as_array() {
                            Some(items) if !items.is_empty() => {
                                for item in items {
                                    match item.as_str().map(parse_url) {
                                        Some(Ok(u)) => endpoints.push(u),
                                        Some(Err(e)) => {
                                            ok = false;
                                            errors.push((
                                                at("self"),
                                                format!("set `{name}`: `self.endpoints`: {e}"),
                                            ));
                                        }
                                        None => {
                                            ok = false;
                                            errors.push((at("self"), format!("set `{name}`: `self.endpoints` must be a list of URLs")));
                                        }
                                    }
                                }
                            }
                            _ => {
                                ok = false;
                                errors.push((at("self"), format!("set `{name}`: `self.endpoints` must be a non-empty list of URLs")));
                            }
                        }
                    }
                    ok.then_some(SourceKind::Egress { endpoints })
                }
                _ => {
                    errors.push((
                        at("self"),
                        format!("set `{name}`: `self` must be `true` or {{endpoints: [URL, ...]}}"),
                    ));
                    None
                }
            }
        }
    };
    match kind {
        Some(kind) if errors.is_empty() => Ok(SourceSpec {
            name: name.to_owned(),
            kind,
            refresh,
            timeout,
            max_bytes,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        let u =
            reqwest::Url::parse("http://user:pw@127.0.0.1:8080/list?access_token=X&a=1").unwrap();
        assert_eq!(
            redact(&u),
            "http://***@127.0.0.1:8080/list?access_token=***&a=***"
        );
        assert_eq!(
            redact_urls_in("error sending request for url (https://u:p@h.example/x?k=v): refused"),
            "error sending request for url (https://***@h.example/x?k=***): refused"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("60").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn urls() {
        assert!(parse_url("https://api.github.com/meta").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/x").is_ok());
        assert!(parse_url("http://[::1]:8080/x").is_ok());
        assert!(parse_url("http://localhost/x").is_ok());
        assert!(
            parse_url("http://example.com/x")
                .unwrap_err()
                .contains("plain http")
        );
        assert!(parse_url("http://127.0.0.1.example.com/x").is_err());
        assert!(
            parse_url("ftp://example.com/x")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(parse_url("file:///etc/passwd").is_err());
    }
}
