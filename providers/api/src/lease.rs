//! Leases: temporary grants of one address, stored with the target so every runner and the
//! reconciler see them (a CI job's runner for the length of the job).
//!
//! A lease is one address, an id, who asked and an expiry. The desired set of a target is
//! its declared set plus the addresses of its unexpired leases; the binary computes it and
//! hands a provider that [`crate::Capabilities::leases`] the full list of lease records to
//! store with the ranges, in one conditional write ([`crate::Provider::apply_leased`]).
//!
//! This module has the one definition of a lease record and its encodings: JSON (files, the
//! plugin protocol, `-o json`) and a tag (a key and a short value, for AKS and EKS tags).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rangekeeper_cidr::IpNet;

/// The prefix of the tag key (or annotation, or header line) that holds a lease.
pub const TAG_PREFIX: &str = "rangekeeper-lease-";

/// Most characters of a lease id.
pub const MAX_ID_LEN: usize = 32;

/// A lease id: 1 to 32 characters of `a-z`, `0-9` and `-`, so it fits every store's keys
/// (tag keys, annotation keys, nftables comments).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(String);

impl LeaseId {
    /// Parse an id given by a person or read from a store.
    pub fn parse(s: &str) -> Result<LeaseId, String> {
        if s.is_empty() || s.len() > MAX_ID_LEN {
            return Err(format!(
                "a lease id has 1 to {MAX_ID_LEN} characters, not {} (`{}`)",
                s.chars().count(),
                s.escape_debug()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "a lease id has only a-z, 0-9 and `-`, not `{}` (in `{}`)",
                c.escape_debug(),
                s.escape_debug()
            ));
        }
        Ok(LeaseId(s.to_owned()))
    }

    /// A new random id of 12 characters (60 bits).
    pub fn random(rng: &mut impl FnMut() -> u64) -> LeaseId {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
        let mut bits = rng();
        let id = (0..12)
            .map(|_| {
                let c = ALPHABET[(bits & 31) as usize] as char;
                bits >>= 5;
                c
            })
            .collect();
        LeaseId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for LeaseId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for LeaseId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LeaseId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A point in time with whole seconds, written as RFC 3339 UTC (`2026-12-07T02:30:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub fn from_unix(secs: u64) -> Timestamp {
        Timestamp(secs)
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        Timestamp(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    pub fn unix(self) -> u64 {
        self.0
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_secs()))
    }

    /// How long from `now` until this time (zero when past).
    pub fn remaining(self, now: Timestamp) -> Duration {
        Duration::from_secs(self.0.saturating_sub(now.0))
    }

    /// Parse RFC 3339 UTC with whole seconds, as [`fmt::Display`] writes it (`Z` only).
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        let bad = || {
            format!(
                "`{}` is not a time like 2026-12-07T02:30:00Z",
                s.escape_debug()
            )
        };
        let b = s.as_bytes();
        if b.len() != 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'Z'
        {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u64, String> {
            let part = s.get(r).ok_or_else(bad)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u64>().map_err(|_| bad())
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if y < 1970 || !(1..=12).contains(&mo) || h > 23 || mi > 59 || se > 59 {
            return Err(bad());
        }
        let days_in_month = match mo {
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if d < 1 || d > days_in_month {
            return Err(bad());
        }
        let days = days_from_civil(y as i64, mo as u32, d as u32);
        let days = u64::try_from(days).map_err(|_| bad())?;
        Ok(Timestamp(days * 86_400 + h * 3600 + mi * 60 + se))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (Howard Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01 (the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One temporary grant of one address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lease {
    pub id: LeaseId,
    /// One address, never a range.
    pub address: IpAddr,
    pub expires: Timestamp,
    /// Who asked: a CI run (`alice@github:org/repo/actions/runs/123`) or `user@host`.
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Most characters of `requestedBy` and `reason` together in a stored lease: what fits a
/// 256-character tag value (EKS, Azure) beside the address and the expiry.
pub const MAX_TEXT_LEN: usize = 256 - 39 - 1 - 20 - 1 - 1;

impl Lease {
    /// The address as a one-address prefix (`/32` or `/128`).
    pub fn net(&self) -> IpNet {
        IpNet::from(self.address)
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires <= now
    }

    /// The tag key of this lease: `rangekeeper-lease-<id>`.
    pub fn tag_key(&self) -> String {
        format!("{TAG_PREFIX}{}", self.id)
    }

    /// The tag value: `<address> <expires> <requestedBy>[ <reason>]`, at most 256
    /// characters of the characters AWS and Azure allow in tag values (letters, digits,
    /// spaces and `+-=._:/@`; anything else becomes `_`; `requestedBy` has no spaces).
    pub fn tag_value(&self) -> String {
        let clean = |s: &str, spaces: bool| -> String {
            s.chars()
                .map(|c| {
                    if c.is_alphanumeric() || "+-=._:/@".contains(c) || (spaces && c == ' ') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let mut by = clean(&self.requested_by, false);
        if by.is_empty() {
            by.push('_');
        }
        let mut v = format!("{} {} {by}", self.address, self.expires);
        if let Some(r) = self.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            v.push(' ');
            v.push_str(&clean(r.trim(), true));
        }
        truncate_chars(&v, 256)
    }

    /// Read a tag written by [`Lease::tag_value`]: `None` when `key` is not a lease's, an
    /// error naming the tag when it is and cannot be read.
    pub fn from_tag(key: &str, value: &str) -> Option<Result<Lease, String>> {
        let id = key.strip_prefix(TAG_PREFIX)?;
        let what = || format!("the lease tag `{key}` = `{}`", value.escape_debug());
        let parse = || -> Result<Lease, String> {
            let id = LeaseId::parse(id).map_err(|e| format!("{}: {e}", what()))?;
            let mut parts = value.splitn(4, ' ');
            let (Some(addr), Some(expires), Some(by)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "{}: expected `<address> <expires> <requestedBy>[ <reason>]`",
                    what()
                ));
            };
            let address: IpAddr = addr
                .parse()
                .map_err(|_| format!("{}: `{addr}` is not an address", what()))?;
            let expires = Timestamp::parse(expires).map_err(|e| format!("{}: {e}", what()))?;
            Ok(Lease {
                id,
                address,
                expires,
                requested_by: by.to_owned(),
                reason: parts.next().map(str::to_owned),
            })
        };
        Some(parse())
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// The leases of a target split at `now`: those still running, and those past their expiry
/// (to be removed with their addresses by the next write).
pub fn split_expired(leases: &[Lease], now: Timestamp) -> (Vec<Lease>, Vec<Lease>) {
    leases.iter().cloned().partition(|l| !l.is_expired(now))
}

/// The check at the top of every [`crate::Provider::apply_leased`]: each lease's address is in
/// `desired` (the binary puts it there), so a lease record is never written without the
/// address it admits.
pub fn refuse_unheld(
    desired: &rangekeeper_cidr::RangeSet,
    leases: &[Lease],
) -> Result<(), crate::ProviderError> {
    match leases.iter().find(|l| !desired.contains_net(&l.net())) {
        Some(l) => Err(crate::ProviderError::Invalid(format!(
            "lease {} is for {}, which the desired set does not hold",
            l.id, l.address
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            id: LeaseId::parse("abc123").unwrap(),
            address: "203.0.113.7".parse().unwrap(),
            expires: Timestamp::parse("2026-12-07T02:30:00Z").unwrap(),
            requested_by: "alice@github:org/repo/actions/runs/123".into(),
            reason: Some("deploy (prod)".into()),
        }
    }

    #[test]
    fn timestamps_read_back_and_bad_ones_are_refused() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "2026-12-07T02:30:00Z",
            "2399-12-31T00:00:01Z",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Timestamp::parse("2026-11-22T13:20:05Z").unwrap().unix(),
            1_795_353_605
        );
        for s in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07 02:30:00Z",
            "2026-12-07T02:30:00+01:00",
            "+026-12-07T02:30:00Z",
            "",
        ] {
            assert!(Timestamp::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn ids_are_short_lowercase_words() {
        assert!(LeaseId::parse("a-1").is_ok());
        assert!(LeaseId::parse("").is_err());
        assert!(LeaseId::parse("A").is_err());
        assert!(LeaseId::parse("a/b").is_err());
        assert!(LeaseId::parse(&"a".repeat(33)).is_err());
        let mut n = 0u64;
        let id = LeaseId::random(&mut || {
            n += 0x9e37_79b9_7f4a_7c15;
            n
        });
        assert_eq!(id.as_str().len(), 12);
        assert!(LeaseId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn a_lease_reads_back_from_its_tag_with_unsafe_characters_replaced() {
        let l = lease();
        assert_eq!(l.tag_key(), "rangekeeper-lease-abc123");
        let v = l.tag_value();
        assert_eq!(
            v,
            "203.0.113.7 2026-12-07T02:30:00Z alice@github:org/repo/actions/runs/123 deploy _prod_"
        );
        let back = Lease::from_tag(&l.tag_key(), &v).unwrap().unwrap();
        assert_eq!(back.address, l.address);
        assert_eq!(back.expires, l.expires);
        assert_eq!(back.requested_by, l.requested_by);
        assert_eq!(back.reason.as_deref(), Some("deploy _prod_"));
        assert!(Lease::from_tag("owner", "x").is_none());
        let bad = Lease::from_tag("rangekeeper-lease-x", "nonsense").unwrap();
        assert!(bad.unwrap_err().contains("rangekeeper-lease-x"));
    }

    #[test]
    fn a_tag_value_never_exceeds_256_characters() {
        let mut l = lease();
        l.address = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        l.requested_by = "é".repeat(300);
        l.reason = Some("x".repeat(300));
        let v = l.tag_value();
        assert_eq!(v.chars().count(), 256);
        assert!(Lease::from_tag("rangekeeper-lease-a", &v).unwrap().is_ok());
    }

    #[test]
    fn json_uses_rfc3339_and_camel_case() {
        let j = serde_json::to_string(&lease()).unwrap();
        assert_eq!(
            j,
            r#"{"id":"abc123","address":"203.0.113.7","expires":"2026-12-07T02:30:00Z","requestedBy":"alice@github:org/repo/actions/runs/123","reason":"deploy (prod)"}"#
        );
        let back: Lease = serde_json::from_str(&j).unwrap();
        assert_eq!(back, lease());
    }

    #[test]
    fn a_lease_whose_address_is_not_desired_is_refused_by_name() {
        let l = lease();
        let held = rangekeeper_cidr::RangeSet::from_nets([l.net()]);
        assert!(refuse_unheld(&held, std::slice::from_ref(&l)).is_ok());
        let other =
            rangekeeper_cidr::RangeSet::from_nets([rangekeeper_cidr::parse("192.0.2.0/24")
                .unwrap()
                .net]);
        let err = refuse_unheld(&other, std::slice::from_ref(&l))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&l.id.to_string()) && err.contains("does not hold"),
            "{err}"
        );
    }

    #[test]
    fn expired_leases_are_split_off() {
        let l = lease();
        let (live, gone) = split_expired(std::slice::from_ref(&l), l.expires);
        assert!(live.is_empty() && gone.len() == 1);
        let before = Timestamp::from_unix(l.expires.unix() - 1);
        let (live, gone) = split_expired(std::slice::from_ref(&l), before);
        assert!(live.len() == 1 && gone.is_empty());
    }
}
