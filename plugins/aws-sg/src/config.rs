//! The `aws-sg` target fields of a declaration, parsed once into an [`SgTarget`].

use std::collections::BTreeSet;

use rangekeeper_provider::{ProviderError, TargetConfig};

/// EC2's default quota of inbound rules per security group, counted per IP family.
pub const DEFAULT_MAX_RULES: usize = 60;

/// The highest value the EC2 quota of rules per security group can be raised to.
pub const QUOTA_CEILING: usize = 1000;

/// The API server's port on kubeadm and kops clusters.
pub const DEFAULT_PORT: u16 = 6443;

/// The prefix of the `Description` of every rule the plugin owns.
pub const MARKER_PREFIX: &str = "rangekeeper:";

/// The longest `Description` EC2 stores on a rule.
const MAX_DESCRIPTION: usize = 255;

/// The IP protocol of the rules (the API server speaks TCP; UDP for QUIC front ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The name EC2 uses in `IpProtocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IANA number EC2 may report instead of the name.
    pub fn number(self) -> &'static str {
        match self {
            Protocol::Tcp => "6",
            Protocol::Udp => "17",
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSgTarget {
    group_id: String,
    region: String,
    #[serde(default)]
    ports: Option<Vec<i64>>,
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default)]
    max_rules: Option<i64>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    owner: Option<String>,
}

/// A validated `aws-sg` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgTarget {
    /// The target's name in the declaration.
    pub name: String,
    /// The security group (`sg-0123456789abcdef0`).
    pub group_id: String,
    /// Its AWS region.
    pub region: String,
    /// The ports whose ingress rules are kept, sorted, never empty.
    pub ports: BTreeSet<u16>,
    pub protocol: Protocol,
    /// The account's quota of inbound rules per security group and IP family.
    pub max_rules: usize,
    /// A named profile of the shared AWS config; `None`: the default credential chain.
    pub profile: Option<String>,
    /// The `Description` that marks the rules this target owns: `rangekeeper:<owner>`.
    pub marker: String,
}

impl SgTarget {
    /// Parse and validate the provider-specific fields of a target.
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawSgTarget = cfg.parse()?;
        let bad = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));
        let group_id = raw.group_id.trim().to_owned();
        if !valid_group_id(&group_id) {
            return Err(bad(format!(
                "groupId `{}` is not a security group ID (expected `sg-` and 8 or 17 hex digits, \
                 e.g. `sg-0123456789abcdef0`)",
                raw.group_id
            )));
        }
        let region = raw.region.trim().to_owned();
        if !valid_region(&region) {
            return Err(bad(format!(
                "region `{}` is not an AWS region name (expected something like `eu-west-1`)",
                raw.region
            )));
        }
        let ports = match raw.ports {
            None => BTreeSet::from([DEFAULT_PORT]),
            Some(list) if list.is_empty() => {
                return Err(bad(
                    "`ports` must list at least one port (omit it for 6443)".into(),
                ));
            }
            Some(list) => {
                let mut ports = BTreeSet::new();
                for p in list {
                    match u16::try_from(p) {
                        Ok(port) if port > 0 => {
                            ports.insert(port);
                        }
                        _ => {
                            return Err(bad(format!(
                                "`ports`: {p} is not a port number (1-65535)"
                            )));
                        }
                    }
                }
                ports
            }
        };
        let max_rules = match raw.max_rules {
            None => DEFAULT_MAX_RULES,
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=QUOTA_CEILING).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "`maxRules`: {n} is not a rule quota (1-{QUOTA_CEILING}; EC2's default \
                         is {DEFAULT_MAX_RULES} inbound rules per group and IP family)"
                    )));
                }
            },
        };
        if ports.len() > max_rules {
            return Err(bad(format!(
                "{} ports need at least {} rules per IP family, over `maxRules` {max_rules}",
                ports.len(),
                ports.len()
            )));
        }
        let profile = match raw.profile {
            None => None,
            Some(p) if p.trim().is_empty() => {
                return Err(bad(
                    "profile must not be empty (omit it to use the default chain)".into(),
                ));
            }
            Some(p) => Some(p.trim().to_owned()),
        };
        let owner = match raw.owner {
            None => cfg.name.clone(),
            Some(o) if o.trim().is_empty() => {
                return Err(bad(
                    "owner must not be empty (omit it to use the target's name)".into(),
                ));
            }
            Some(o) => o.trim().to_owned(),
        };
        let marker = format!("{MARKER_PREFIX}{owner}");
        if let Some(c) = marker.chars().find(|c| !description_char(*c)) {
            return Err(bad(format!(
                "the rules' Description `{marker}` would hold {c:?}, which EC2 does not accept \
                 in a rule description (letters, digits, spaces and ._-:/()#,@[]+=&;{{}}!$*); \
                 set `owner:` to a name without it"
            )));
        }
        if marker.len() > MAX_DESCRIPTION {
            return Err(bad(format!(
                "the rules' Description `{marker}` is longer than EC2's {MAX_DESCRIPTION} \
                 characters; set a shorter `owner:`"
            )));
        }
        Ok(SgTarget {
            name: cfg.name.clone(),
            group_id,
            region,
            ports,
            protocol: raw.protocol.unwrap_or(Protocol::Tcp),
            max_rules,
            profile,
            marker,
        })
    }

    /// Which AWS identity the target uses, for messages.
    pub fn identity(&self) -> String {
        match &self.profile {
            Some(p) => format!("region `{}`, profile `{p}`", self.region),
            None => format!("region `{}`, the default credential chain", self.region),
        }
    }

    /// The ports as `tcp 6443` or `tcp 6443,10250`.
    pub fn ports_label(&self) -> String {
        let list: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
        format!("{} {}", self.protocol.as_str(), list.join(","))
    }

    /// The most ranges of one IP family the group can hold for this target: one rule per
    /// range and port.
    pub fn ranges_per_family(&self) -> usize {
        self.max_rules / self.ports.len().max(1)
    }
}

/// `sg-` and 8 or 17 lowercase hex digits.
fn valid_group_id(s: &str) -> bool {
    s.strip_prefix("sg-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`: lowercase words joined by `-`, ending in a
/// number.
fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && s.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The characters EC2 accepts in a security-group rule's `Description`.
fn description_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(v: serde_json::Value) -> TargetConfig {
        TargetConfig {
            name: "api-sg".into(),
            base_dir: PathBuf::from("."),
            fields: v.as_object().cloned().unwrap(),
        }
    }

    fn parse(v: serde_json::Value) -> Result<SgTarget, ProviderError> {
        SgTarget::from_config(&cfg(v))
    }

    #[test]
    fn defaults_are_tcp_6443_and_60_rules() {
        let t = parse(serde_json::json!({
            "groupId": "sg-0123456789abcdef0", "region": "eu-west-1"
        }))
        .unwrap();
        assert_eq!(
            t,
            SgTarget {
                name: "api-sg".into(),
                group_id: "sg-0123456789abcdef0".into(),
                region: "eu-west-1".into(),
                ports: BTreeSet::from([6443]),
                protocol: Protocol::Tcp,
                max_rules: 60,
                profile: None,
                marker: "rangekeeper:api-sg".into(),
            }
        );
        assert_eq!(t.ports_label(), "tcp 6443");
        assert_eq!(t.ranges_per_family(), 60);
    }

    #[test]
    fn every_field_is_read() {
        let t = parse(serde_json::json!({
            "groupId": "sg-12345678", "region": "us-gov-west-1", "ports": [6443, 443, 6443],
            "protocol": "udp", "maxRules": 200, "profile": "ops", "owner": "prod/api"
        }))
        .unwrap();
        assert_eq!(t.ports, BTreeSet::from([443, 6443]));
        assert_eq!(t.protocol, Protocol::Udp);
        assert_eq!(t.max_rules, 200);
        assert_eq!(t.profile.as_deref(), Some("ops"));
        assert_eq!(t.marker, "rangekeeper:prod/api");
        assert_eq!(t.ports_label(), "udp 443,6443");
        assert_eq!(t.ranges_per_family(), 100);
    }

    #[test]
    fn bad_values_are_errors_naming_the_target_and_the_field() {
        let base = || serde_json::json!({"groupId": "sg-12345678", "region": "eu-west-1"});
        let with = |k: &str, v: serde_json::Value| {
            let mut o = base();
            o[k] = v;
            o
        };
        for (fields, want) in [
            (with("groupId", "sg-123".into()), "groupId `sg-123`"),
            (
                with("groupId", "vpc-12345678".into()),
                "not a security group ID",
            ),
            (with("groupId", "sg-1234567G".into()), "hex digits"),
            (with("region", "EU-WEST-1".into()), "region `EU-WEST-1`"),
            (with("ports", serde_json::json!([])), "at least one port"),
            (with("ports", serde_json::json!([0])), "0 is not a port"),
            (
                with("ports", serde_json::json!([70000])),
                "70000 is not a port",
            ),
            (with("maxRules", 0.into()), "`maxRules`: 0"),
            (with("maxRules", 1001.into()), "`maxRules`: 1001"),
            (
                with("protocol", "icmp".into()),
                "`protocol` must be one of `tcp`, `udp`",
            ),
            (
                with("groupid", "x".into()),
                "unknown field `groupid` (did you mean `groupId`?)",
            ),
            (with("profile", " ".into()), "profile must not be empty"),
            (with("owner", "".into()), "owner must not be empty"),
            (with("owner", "a\"b".into()), "'\"'"),
            (
                with("owner", "x".repeat(250).into()),
                "longer than EC2's 255",
            ),
            (
                with("ports", serde_json::json!([1, 2, 3])),
                "at least 3 rules",
            ),
        ] {
            let mut fields = fields;
            if want == "at least 3 rules" {
                fields["maxRules"] = 2.into();
            }
            let e = parse(fields.clone()).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
            assert!(
                msg.contains("target `api-sg`") && msg.contains(want),
                "{fields}: {msg}"
            );
        }
        let e = parse(serde_json::json!({"region": "eu-west-1"})).unwrap_err();
        assert!(e.to_string().contains("groupId"), "{e}");
    }
}
