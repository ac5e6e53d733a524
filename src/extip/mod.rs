//! Service `spec.externalIPs` (CVE-2020-8554): who may claim which addresses on the cluster's
//! nodes. One rule set ([`Rules`]) drives the admission webhook (`serve`), the generated
//! ValidatingAdmissionPolicy (`policy`) and the audit of existing Services (`audit`), with
//! kubernetes-sigs/externalip-webhook's behaviour and messages:
//!
//! - a Service without externalIPs is always allowed;
//! - when users or groups are given, only those may set externalIPs
//!   (`user NAME is not alllowed to specify externalIP`, spelt as externalip-webhook spells it,
//!   so alerts and scripts written for it keep matching);
//! - every entry must be an IP address (`spec.externalIPs: Invalid value: "1.2.e.4":
//!   externalIP specified is not valid`) inside an allowed range (`...: externalIP specified
//!   is not allowed to use`); the first bad entry is reported;
//! - an empty set denies every external IP.
//!
//! An address is what Kubernetes' own validation and CEL's `ip()` accept: IPv4 in dotted
//! decimal without leading zeros, or IPv6 without a zone; an IPv4-mapped IPv6 address is not
//! valid (CEL's `ip()` rejects it, so the webhook and the policy agree).

pub mod audit;
pub mod cluster;
pub mod policy;
pub mod review;
pub mod serve;

use std::net::IpAddr;

use rangekeeper_cidr::RangeSet;

/// The field every message names.
pub const FIELD: &str = "spec.externalIPs";
/// The reason of an entry that is not an IP address.
pub const NOT_VALID: &str = "externalIP specified is not valid";
/// The reason of an address outside the allowed ranges.
pub const NOT_ALLOWED: &str = "externalIP specified is not allowed to use";

/// Who may set which external IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The allowed ranges (aggregated).
    pub allowed: RangeSet,
    /// Where they come from, for logs and output: "set `lb` of rangekeeper.yaml" or
    /// "--allowed-external-ip-cidrs".
    pub origin: String,
    /// When this or `groups` is not empty, only these users (or members of `groups`) may
    /// set externalIPs at all.
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

/// Why a request was denied (the label of the denial metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Denial {
    /// The user may not set externalIPs at all.
    User,
    /// An entry is not an IP address.
    NotValid,
    /// An address is outside the allowed ranges.
    NotAllowed,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::User => "user",
            Denial::NotValid => "not-valid",
            Denial::NotAllowed => "not-allowed",
        }
    }

    /// The reason alone (externalip-webhook's `error` audit annotation).
    pub fn reason(self, user: &str) -> String {
        match self {
            Denial::User => user_message(user),
            Denial::NotValid => NOT_VALID.to_owned(),
            Denial::NotAllowed => NOT_ALLOWED.to_owned(),
        }
    }
}

/// What the rules say about one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied {
        why: Denial,
        /// The whole message, as the API server shows it after "denied the request: ".
        message: String,
        /// What the audit annotation says (externalip-webhook's `error` value).
        reason: String,
    },
}

/// `user NAME is not alllowed to specify externalIP` (externalip-webhook's text, typo kept).
pub fn user_message(user: &str) -> String {
    format!("user {user} is not alllowed to specify externalIP")
}

/// `spec.externalIPs: Invalid value: "VALUE": REASON`, the value quoted as Go's `%q` does
/// (Kubernetes' field errors).
pub fn field_message(value: &str, reason: &str) -> String {
    format!("{FIELD}: Invalid value: {}: {reason}", go_quote(value))
}

/// A string quoted as Go's `%q`: `"` and `\` escaped, control characters as `\n`, `\t`,
/// `\xNN` or `\uNNNN`, printable text as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An external IP as Kubernetes and CEL's `ip()` read one: a bare IPv4 or IPv6 address, no
/// prefix length, no surrounding space, no leading zeros, no zone, not IPv4-mapped.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.contains('/') || s.trim() != s {
        return None;
    }
    let p = rangekeeper_cidr::parse(s).ok()?;
    Some(p.net.addr())
}

impl Rules {
    /// Whether `user` (in `groups`) may set externalIPs at all.
    pub fn user_may(&self, user: &str, groups: &[String]) -> bool {
        (self.users.is_empty() && self.groups.is_empty())
            || self.users.iter().any(|u| u == user)
            || groups.iter().any(|g| self.groups.contains(g))
    }

    /// The verdict on a Service with these `spec.externalIPs`, created or updated by `user`.
    pub fn review(&self, external_ips: &[String], user: &str, groups: &[String]) -> Verdict {
        if external_ips.is_empty() {
            return Verdict::Allowed;
        }
        if !self.user_may(user, groups) {
            let m = user_message(user);
            return Verdict::Denied {
                why: Denial::User,
                message: m.clone(),
                reason: m,
            };
        }
        for ip in external_ips {
            let why = match parse_ip(ip) {
                None => Denial::NotValid,
                Some(a) if !self.allowed.contains_addr(a) => Denial::NotAllowed,
                Some(_) => continue,
            };
            let reason = why.reason(user);
            return Verdict::Denied {
                why,
                message: field_message(ip, &reason),
                reason,
            };
        }
        Verdict::Allowed
    }
}

/// The allowed ranges from `--allowed-external-ip-cidrs` entries (each may hold several,
/// comma-separated, as externalip-webhook reads the flag). Host bits are masked with a
/// warning (an error with `strict`), as elsewhere.
pub fn parse_cidr_flags(values: &[String], strict: bool) -> Result<RangeSet, String> {
    let mut set = RangeSet::new();
    for item in values.iter().flat_map(|v| v.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let p = rangekeeper_cidr::parse(item)
            .map_err(|e| format!("--allowed-external-ip-cidrs: {e}"))?;
        if p.host_bits {
            let m = rangekeeper_cidr::host_bits_message(item, &p.net, strict);
            if strict {
                return Err(format!("--allowed-external-ip-cidrs: {m}"));
            }
            tracing::warn!("--allowed-external-ip-cidrs: {m}");
        }
        set.insert(p.net);
    }
    Ok(set)
}

/// Comma-separated flag values as a list (`--allowed-usernames a,b --allowed-usernames c`).
pub fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(cidrs: &[&str], users: &[&str], groups: &[&str]) -> Rules {
        Rules {
            allowed: parse_cidr_flags(&[cidrs.join(",")], false).unwrap(),
            origin: "test".into(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn v(ips: &[&str]) -> Vec<String> {
        ips.iter().map(|s| s.to_string()).collect()
    }

    fn message(verdict: Verdict) -> Option<String> {
        match verdict {
            Verdict::Allowed => None,
            Verdict::Denied { message, .. } => Some(message),
        }
    }

    // The cases of externalip-webhook's own tests.
    #[test]
    fn externalip_webhook_reference_cases() {
        let r = rules(&["10.0.0.0/8"], &[], &[]);
        assert_eq!(r.review(&v(&["10.0.0.5"]), "u", &[]), Verdict::Allowed);
        let r2 = rules(&["10.0.0.0/8", "11.0.0.0/8"], &[], &[]);
        assert_eq!(r2.review(&v(&["11.0.0.5"]), "u", &[]), Verdict::Allowed);
        assert_eq!(
            message(r.review(&v(&["1.2.e.4"]), "u", &[])).as_deref(),
            Some("spec.externalIPs: Invalid value: \"1.2.e.4\": externalIP specified is not valid")
        );
        assert_eq!(
            message(r.review(&v(&["10.0.0.5", "11.0.0.1"]), "u", &[])).as_deref(),
            Some(
                "spec.externalIPs: Invalid value: \"11.0.0.1\": externalIP specified is not allowed to use"
            )
        );
    }

    #[test]
    fn users_and_groups_as_externalip_webhook() {
        let g = |users: &[&str], groups: &[&str], user: &str, member: &[&str]| {
            rules(&["10.0.0.0/8"], users, groups).user_may(user, &v(member))
        };
        assert!(g(&[], &[], "user1", &["group1"]));
        assert!(!g(&[], &["group2"], "user1", &["group1"]));
        assert!(g(&[], &["group1"], "user1", &["group1"]));
        assert!(!g(&["user2"], &[], "user1", &["group1"]));
        assert!(g(&["user1"], &[], "user1", &["group1"]));
        assert!(g(&["user2", "user1"], &["group2"], "user1", &["group1"]));
        assert!(g(&["user2"], &["group2", "group1"], "user1", &["group1"]));
        assert!(!g(&["user2"], &["group2"], "user1", &["group1"]));
        // A Service without externalIPs is allowed for anyone; with them, a user not listed
        // is denied even for an allowed address, and a listed one still for a denied address.
        let r = rules(&["10.0.0.0/8"], &["user2"], &["group2"]);
        assert_eq!(r.review(&[], "user1", &[]), Verdict::Allowed);
        assert_eq!(
            message(r.review(&v(&["10.0.0.1"]), "user1", &[])).as_deref(),
            Some("user user1 is not alllowed to specify externalIP")
        );
        let r = rules(&["10.0.0.0/8"], &["user1"], &["group1"]);
        assert!(message(r.review(&v(&["80.11.12.10"]), "user1", &v(&["group1"]))).is_some());
    }

    #[test]
    fn an_empty_set_denies_every_external_ip_and_ipv6_works() {
        let none = rules(&[], &[], &[]);
        assert!(message(none.review(&v(&["10.0.0.1"]), "u", &[])).is_some());
        assert_eq!(none.review(&[], "u", &[]), Verdict::Allowed);
        let r = rules(&["2001:db8::/32"], &[], &[]);
        assert_eq!(r.review(&v(&["2001:db8::5"]), "u", &[]), Verdict::Allowed);
        assert_eq!(
            message(r.review(&v(&["2001:db9::1"]), "u", &[])).as_deref(),
            Some(
                "spec.externalIPs: Invalid value: \"2001:db9::1\": externalIP specified is not allowed to use"
            )
        );
    }

    #[test]
    fn what_is_not_an_address() {
        for bad in [
            "",
            " 10.0.0.1",
            "10.0.0.1 ",
            "10.0.0.0/8",
            "010.0.0.1",
            "fe80::1%eth0",
            "::ffff:10.0.0.5",
            "1.2.3",
            "256.1.1.1",
            "host.example",
        ] {
            assert_eq!(parse_ip(bad), None, "{bad:?}");
        }
        assert!(parse_ip("10.0.0.1").is_some());
        assert!(parse_ip("2001:db8::1").is_some());
        assert_eq!(
            field_message("a\"b\\c\n\u{1}", NOT_VALID),
            "spec.externalIPs: Invalid value: \"a\\\"b\\\\c\\n\\x01\": externalIP specified is not valid"
        );
    }
}
