//! The hostfw target configuration: raw serde fields parsed once into a validated [`Config`].
//! (kube-restrict-ip's own config file is read by `crate::kube_restrict_ip` through the import
//! hook, which hands its ports to this config as `ports`.)

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rangekeeper_provider::{ProviderError, TargetConfig};

use crate::kube_restrict_ip::KUBE_RESTRICT_IP_DEFAULT_CHAIN;
use serde::Deserialize;

/// Longest accepted `table` name: the iptables chain is `RK-<table>` and iptables chain names
/// hold at most 28 characters.
pub const MAX_TABLE_LEN: usize = 25;

/// The default nftables table / iptables chain suffix.
pub const DEFAULT_TABLE: &str = "rangekeeper";

/// Which firewall tool writes the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// nftables when `nft` is usable, else iptables.
    #[default]
    Auto,
    Nftables,
    Iptables,
}

/// What happens to a new connection from a source outside the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Answer with a TCP reset: clients fail fast with "connection refused".
    #[default]
    Reject,
    /// Drop silently: clients time out.
    Drop,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Reject => "reject",
            Action::Drop => "drop",
        })
    }
}

/// Which iptables flavour to run when the iptables backend is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IptablesVariant {
    /// `iptables-legacy-restore` etc. (the x_tables kernel interface).
    Legacy,
    /// `iptables-nft-restore` etc. (iptables rules stored in nf_tables).
    Nft,
}

/// Whether the restricted ports are closed to IPv6 sources outside the allow-list too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6Mode {
    /// IPv6 clients are held to the allow-list like IPv4 clients (the safe default).
    #[default]
    Restrict,
    /// IPv6 clients are not restricted at all (kube-restrict-ip's behaviour: it writes
    /// iptables rules only). The allow-list's IPv6 prefixes are kept but enforce nothing.
    Open,
}

impl fmt::Display for Ipv6Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ipv6Mode::Restrict => "restrict",
            Ipv6Mode::Open => "open",
        })
    }
}

/// A validated table name: 1..=25 of `[A-Za-z0-9_-]`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName(String);

impl TableName {
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("`table` must not be empty".into());
        }
        if name.len() > MAX_TABLE_LEN {
            return Err(format!(
                "`table` `{name}` is longer than {MAX_TABLE_LEN} characters (the iptables chain `RK-{name}` would exceed iptables' 28-character limit)"
            ));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(format!("`table` `{name}` must start with a letter"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(format!(
                "`table` `{name}` contains `{bad}`; use only letters, digits, `_` and `-`"
            ));
        }
        Ok(TableName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The iptables/ip6tables chain this table maps to.
    pub fn chain(&self) -> String {
        format!("RK-{}", self.0)
    }

    /// The comment that marks our jumps from INPUT.
    pub fn comment(&self) -> String {
        format!("rangekeeper:{}", self.0)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The target's fields exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    ports: Option<Vec<i64>>,
    #[serde(default)]
    backend: BackendChoice,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    kube_restrict_ip: Option<PathBuf>,
    /// Set by the import hook from the kube-restrict-ip file (never written by users): the
    /// chain kube-restrict-ip itself used, reported while it is left behind.
    #[serde(default)]
    kube_restrict_ip_chain: Option<String>,
    #[serde(default)]
    ipv6: Ipv6Mode,
    /// Run nft/iptables inside this network namespace (`ip netns exec <netns> ...`).
    #[serde(default)]
    netns: Option<String>,
    /// `legacy` or `nft`: run `iptables-legacy-*` / `iptables-nft-*` instead of the default
    /// `iptables-*` on PATH (match what the host's other iptables users, e.g. kube-proxy, use).
    #[serde(default)]
    iptables_variant: Option<IptablesVariant>,
}

/// A validated hostfw target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The target's name in the declaration (for messages).
    pub target: String,
    /// The TCP ports to restrict, sorted and de-duplicated, never empty.
    pub ports: BTreeSet<u16>,
    pub backend: BackendChoice,
    pub table: TableName,
    pub action: Action,
    /// A named network namespace to run the firewall tools in.
    pub netns: Option<String>,
    /// The iptables flavour (`None`: whatever `iptables-restore` is on PATH).
    pub iptables_variant: Option<IptablesVariant>,
    /// IPv6 restricted like IPv4, or left open.
    pub ipv6: Ipv6Mode,
    /// The kube-restrict-ip config the ports came from, if any, and the chain
    /// kube-restrict-ip itself wrote (to report it while it is left behind).
    pub kube_restrict_ip: Option<(PathBuf, String)>,
}

impl Config {
    /// Parse and validate a target's fields.
    pub fn from_target(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawConfig = cfg.parse()?;
        let err = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));

        // The import hook reads the kube-restrict-ip file and hands its ports over as `ports`
        // (and refuses a declaration that writes both).
        let ports = match (&raw.ports, &raw.kube_restrict_ip) {
            (Some(list), _) => parse_ports(list.iter().copied()).map_err(err)?,
            (None, Some(path)) => {
                return Err(err(format!(
                    "the ports of the kube-restrict-ip config {} were not imported (call the provider's import hook before building it)",
                    path.display()
                )));
            }
            (None, None) => {
                return Err(err(
                    "`ports` is required: the TCP ports to restrict, e.g. `ports: [6443]`".into(),
                ));
            }
        };
        let kube = raw.kube_restrict_ip.as_ref().map(|path| {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                cfg.base_dir.join(path)
            };
            let chain = raw
                .kube_restrict_ip_chain
                .clone()
                .unwrap_or_else(|| KUBE_RESTRICT_IP_DEFAULT_CHAIN.to_owned());
            (path, chain)
        });

        let table = TableName::parse(raw.table.as_deref().unwrap_or(DEFAULT_TABLE)).map_err(err)?;

        let netns = match raw.netns {
            Some(ns) => Some(validate_netns(&ns).map_err(err)?),
            None => None,
        };

        Ok(Config {
            target: cfg.name.clone(),
            ports,
            backend: raw.backend,
            table,
            action: raw.action,
            netns,
            iptables_variant: raw.iptables_variant,
            ipv6: raw.ipv6,
            kube_restrict_ip: kube,
        })
    }

    /// The ports as `6443,10254`.
    pub fn ports_list(&self) -> String {
        join_ports(&self.ports)
    }
}

pub(crate) fn join_ports(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_ports(list: impl IntoIterator<Item = i64>) -> Result<BTreeSet<u16>, String> {
    let mut out = BTreeSet::new();
    for p in list {
        match u16::try_from(p) {
            Ok(port) if port > 0 => {
                out.insert(port);
            }
            _ => return Err(format!("port {p} is out of range 1-65535")),
        }
    }
    if out.is_empty() {
        return Err("`ports` must list at least one TCP port".into());
    }
    Ok(out)
}

fn validate_netns(ns: &str) -> Result<String, String> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && !ns.starts_with(['-', '.'])
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(ns.to_owned())
    } else {
        Err(format!(
            "`netns` `{ns}` is not a network namespace name (letters, digits, `_`, `-`, `.`)"
        ))
    }
}

/// Parse a Go `time.Duration` string such as `60s`, `1m30s`, `1.5h`, `500ms`.
pub(crate) fn parse_go_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let bad =
        || format!("checkInterval `{input}` is not a duration such as `60s`, `1m30s` or `500ms`");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total_nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_nanos += value * scale;
    }
    if !total_nanos.is_finite() || total_nanos > 1e18 {
        return Err(bad());
    }
    // Truncation to whole nanoseconds is what Go does too.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Duration::from_nanos(total_nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(fields: serde_json::Value) -> TargetConfig {
        TargetConfig {
            name: "cp".into(),
            base_dir: PathBuf::from("/nonexistent"),
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_target(&target(serde_json::json!({"ports": [6443, 10254, 6443]})))
            .unwrap();
        assert_eq!(
            c.ports.iter().copied().collect::<Vec<_>>(),
            vec![6443, 10254]
        );
        assert_eq!(c.backend, BackendChoice::Auto);
        assert_eq!(c.table.as_str(), "rangekeeper");
        assert_eq!(c.table.chain(), "RK-rangekeeper");
        assert_eq!(c.action, Action::Reject);
        assert_eq!(c.netns, None);
        assert_eq!(c.ports_list(), "6443,10254");
    }

    #[test]
    fn full_config_parses() {
        let c = Config::from_target(&target(serde_json::json!({
            "ports": [22], "backend": "iptables", "table": "cp_fw-2", "action": "drop", "netns": "ns-1",
            "iptablesVariant": "legacy"
        })))
        .unwrap();
        assert_eq!(c.backend, BackendChoice::Iptables);
        assert_eq!(c.action, Action::Drop);
        assert_eq!(c.table.as_str(), "cp_fw-2");
        assert_eq!(c.netns.as_deref(), Some("ns-1"));
        assert_eq!(c.iptables_variant, Some(IptablesVariant::Legacy));
    }

    #[test]
    fn bad_configs_are_rejected_with_reasons() {
        let cases = [
            (serde_json::json!({}), "`ports` is required"),
            (serde_json::json!({"ports": []}), "at least one"),
            (serde_json::json!({"ports": [0]}), "out of range"),
            (serde_json::json!({"ports": [65536]}), "out of range"),
            (serde_json::json!({"ports": [-1]}), "out of range"),
            (
                serde_json::json!({"ports": [1], "prots": [2]}),
                "unknown field",
            ),
            (
                serde_json::json!({"ports": [1], "backend": "pf"}),
                "`backend` must be one of `auto`, `nftables`, `iptables`, not `pf`",
            ),
            (
                serde_json::json!({"ports": [1], "action": "accept"}),
                "`action` must be one of",
            ),
            (
                serde_json::json!({"ports": [1], "table": ""}),
                "must not be empty",
            ),
            (
                serde_json::json!({"ports": [1], "table": "a b"}),
                "contains ` `",
            ),
            (
                serde_json::json!({"ports": [1], "table": "1abc"}),
                "start with a letter",
            ),
            (
                serde_json::json!({"ports": [1], "table": "a".repeat(26)}),
                "longer than 25",
            ),
            (
                serde_json::json!({"ports": [1], "netns": "../x"}),
                "not a network namespace",
            ),
        ];
        for (fields, want) in cases {
            let e = Config::from_target(&target(fields.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{fields}: {e}");
            assert!(e.contains("cp"), "{e}");
        }
        assert!(TableName::parse(&"a".repeat(25)).is_ok());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(
            parse_go_duration("1h2m3s").unwrap(),
            Duration::from_secs(3723)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "s", "10", "10x", "-1s", "1s2"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
