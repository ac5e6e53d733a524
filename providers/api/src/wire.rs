//! The JSON forms of the contract types that cannot simply be derived: typed errors with an
//! open set of kinds, and restrictions whose ranges are untrusted text parsed strictly.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ProviderError, RangeSet, Restriction, cidr};

/// Parse ranges that came over a wire: each must be a canonical CIDR string (network
/// boundary, explicit prefix length, the canonical text form), as the strict parser reads it.
/// The error names the first offending entry and what to write instead.
pub fn parse_wire_ranges<S: AsRef<str>>(items: &[S]) -> Result<RangeSet, String> {
    let mut nets = Vec::with_capacity(items.len());
    for item in items {
        let text = item.as_ref();
        let parsed = cidr::parse(text).map_err(|e| format!("invalid range {e}"))?;
        let canonical = parsed.net.to_string();
        if parsed.host_bits || canonical != text {
            return Err(format!(
                "range `{}` is not a canonical CIDR string; send `{canonical}`",
                text.escape_debug()
            ));
        }
        nets.push(parsed.net);
    }
    Ok(RangeSet::from_nets(nets))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorWire {
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

impl Serialize for ProviderError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, retry_after_ms) = match self {
            ProviderError::Unknown { kind, .. } => (kind.clone(), None),
            ProviderError::Throttled { retry_after, .. } => (
                self.kind().to_owned(),
                retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ),
            _ => (self.kind().to_owned(), None),
        };
        ErrorWire {
            kind,
            message: self.message().to_owned(),
            retry_after_ms,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProviderError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ErrorWire::deserialize(d)?;
        let m = w.message;
        Ok(match w.kind.as_str() {
            "not_found" => ProviderError::NotFound(m),
            "conflict" => ProviderError::Conflict(m),
            "throttled" => ProviderError::Throttled {
                message: m,
                retry_after: w.retry_after_ms.map(Duration::from_millis),
            },
            "invalid" => ProviderError::Invalid(m),
            "auth" => ProviderError::Auth(m),
            "transient" => ProviderError::Transient(m),
            "config" => ProviderError::Config(m),
            "other" => ProviderError::Other(m),
            _ => ProviderError::Unknown {
                kind: w.kind,
                message: m,
            },
        })
    }
}

#[derive(Serialize, Deserialize)]
struct RestrictionWire {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ranges: Option<Vec<String>>,
}

impl Serialize for Restriction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = match self {
            Restriction::Unrestricted => RestrictionWire {
                kind: "unrestricted".into(),
                ranges: None,
            },
            Restriction::Ranges(set) => RestrictionWire {
                kind: "ranges".into(),
                ranges: Some(set.prefixes().iter().map(ToString::to_string).collect()),
            },
            Restriction::Unknown(kind) => RestrictionWire {
                kind: kind.clone(),
                ranges: None,
            },
        };
        w.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Restriction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = RestrictionWire::deserialize(d)?;
        match w.kind.as_str() {
            "unrestricted" => Ok(Restriction::Unrestricted),
            "ranges" => {
                let items = w
                    .ranges
                    .ok_or_else(|| serde::de::Error::missing_field("ranges"))?;
                parse_wire_ranges(&items)
                    .map(Restriction::Ranges)
                    .map_err(serde::de::Error::custom)
            }
            _ => Ok(Restriction::Unknown(w.kind)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Applied, Capabilities, State, UnrestrictedForm, Violation};

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: &T) {
        let text = serde_json::to_string(v).unwrap();
        let back: T = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, v, "{text}");
    }

    #[test]
    fn every_error_kind_round_trips() {
        for e in [
            ProviderError::NotFound("cluster x".into()),
            ProviderError::Conflict("etag".into()),
            ProviderError::Throttled {
                message: "slow down".into(),
                retry_after: Some(Duration::from_millis(1500)),
            },
            ProviderError::Throttled {
                message: "slow down".into(),
                retry_after: None,
            },
            ProviderError::Invalid("bad".into()),
            ProviderError::Auth("no".into()),
            ProviderError::Transient("503".into()),
            ProviderError::Config("field".into()),
            ProviderError::Other("else".into()),
            ProviderError::Unknown {
                kind: "quota".into(),
                message: "too many".into(),
            },
        ] {
            round_trip(&e);
        }
    }

    #[test]
    fn an_unknown_error_kind_is_kept_with_its_message() {
        let e: ProviderError =
            serde_json::from_str(r#"{"kind":"quota_exceeded","message":"5 of 5","extra":1}"#)
                .unwrap();
        assert_eq!(e.kind(), "unknown");
        assert_eq!(e.to_string(), "quota_exceeded: 5 of 5");
        assert!(!e.is_retryable());
    }

    #[test]
    fn restrictions_round_trip_and_unknown_kinds_are_kept() {
        let set = parse_wire_ranges(&["192.0.2.0/24", "2001:db8::/32"]).unwrap();
        round_trip(&Restriction::Ranges(set));
        round_trip(&Restriction::Unrestricted);
        let r: Restriction = serde_json::from_str(r#"{"kind":"schedule"}"#).unwrap();
        assert_eq!(r, Restriction::Unknown("schedule".into()));
        assert!(r.known().is_err());
    }

    #[test]
    fn wire_ranges_must_be_canonical() {
        for (bad, want) in [
            ("10.0.0.1/8", "send `10.0.0.0/8`"),
            ("192.0.2.1", "send `192.0.2.1/32`"),
            ("2001:DB8::/32", "send `2001:db8::/32`"),
            ("010.0.0.0/8", "invalid range"),
            ("not a range", "invalid range"),
        ] {
            let err = parse_wire_ranges(&[bad]).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        let r: Result<Restriction, _> =
            serde_json::from_str(r#"{"kind":"ranges","ranges":["10.0.0.1/8"]}"#);
        assert!(r.unwrap_err().to_string().contains("10.0.0.0/8"));
    }

    #[test]
    fn the_other_types_round_trip_and_read_with_defaults() {
        let caps = Capabilities::new("x", "y")
            .with_max_ranges(Some(5))
            .with_ipv6(true)
            .with_ipv6_depends_on_target(true)
            .with_unrestricted(UnrestrictedForm::EmptyList)
            .with_stores_metadata(true);
        round_trip(&caps);
        let old: Capabilities =
            serde_json::from_str(r#"{"name":"x","description":"y","unrestricted":"teleport"}"#)
                .unwrap();
        assert_eq!(old.unrestricted, UnrestrictedForm::Unknown);
        assert!(old.ipv4 && !old.ipv6 && old.max_ranges.is_none());
        round_trip(&Applied::pending().with_note("n"));
        round_trip(&Violation::at("10.0.0.0/8", "private"));
        round_trip(&Violation::new("too many"));
        round_trip(
            &State::new(Restriction::Unrestricted)
                .with_detail("k", "v")
                .with_warning("w"),
        );
    }

    #[test]
    fn error_chain_keeps_every_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("request failed")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("connection reset"));
        assert_eq!(crate::error_chain(&e), "request failed: connection reset");
    }
}
