//! The hostfw target configuration: raw serde fields parsed once into a validated [`Config`],
//! and kube-restrict-ip's own config file ([`load_kube_restrict_ip`]).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rangekeeper_provider::{ProviderError, TargetConfig};
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
    /// The kube-restrict-ip config the ports came from, if any.
    pub kube_restrict_ip: Option<KubeRestrictIp>,
}

impl Config {
    /// Parse and validate a target's fields.
    pub fn from_target(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawConfig = cfg.parse()?;
        let err = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));

        let kube = match &raw.kube_restrict_ip {
            Some(path) => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    cfg.base_dir.join(path)
                };
                Some(load_kube_restrict_ip(&path)?)
            }
            None => None,
        };

        let ports = match (&raw.ports, &kube) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "give either `ports` or `kubeRestrictIp` (whose restrictedPorts are the ports), not both"
                        .into(),
                ));
            }
            (Some(list), None) => parse_ports(list.iter().copied()).map_err(err)?,
            (None, Some(k)) => k.ports.iter().copied().collect(),
            (None, None) => {
                return Err(err(
                    "`ports` is required: the TCP ports to restrict, e.g. `ports: [6443]`".into(),
                ));
            }
        };

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

/// kube-restrict-ip's config file, read as kube-restrict-ip reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRestrictIp {
    /// The file it was read from.
    pub path: PathBuf,
    /// `restrictedPorts`: the TCP ports to restrict (sorted, unique, non-empty).
    pub ports: Vec<u16>,
    /// `allowedNetworks` exactly as written (addresses or CIDRs), for the strict CIDR parser.
    pub networks: Vec<String>,
    /// `checkInterval` (kube-restrict-ip's default: 10s).
    pub interval: Duration,
    /// `ipChain` (default `KUBE-RESTRICT-IP`): the chain kube-restrict-ip itself used. rangekeeper
    /// never writes it; it is reported so users can remove a leftover chain after switching.
    pub chain: String,
}

/// kube-restrict-ip's default `checkInterval` (its `--check-interval` flag default).
pub const KUBE_RESTRICT_IP_DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// kube-restrict-ip's default `ipChain`.
pub const KUBE_RESTRICT_IP_DEFAULT_CHAIN: &str = "KUBE-RESTRICT-IP";

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IntervalValue {
    Text(String),
    Number(i64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKubeRestrictIp {
    #[serde(default)]
    restricted_ports: Option<Vec<PortValue>>,
    #[serde(default)]
    allowed_networks: Option<Vec<String>>,
    #[serde(default)]
    check_interval: Option<IntervalValue>,
    #[serde(default)]
    ip_chain: Option<String>,
}

/// Read a kube-restrict-ip config file (`restrictedPorts`, `allowedNetworks`, `checkInterval`,
/// `ipChain`). Ports may be numbers or numeric strings, as kube-restrict-ip accepts both.
/// Networks are returned as written; the caller parses them with the strict CIDR parser.
pub fn load_kube_restrict_ip(path: &Path) -> Result<KubeRestrictIp, ProviderError> {
    // A regular file of bounded size: a FIFO or device named here must not hang the loop.
    let bytes = rangekeeper_provider::fs::read_regular(path, 1 << 20, "a kube-restrict-ip config")
        .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other));
    let text = bytes.map_err(|e| {
        let msg = format!("kube-restrict-ip config {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            ProviderError::NotFound(msg)
        } else {
            ProviderError::Config(msg)
        }
    })?;
    parse_kube_restrict_ip(&text, path)
}

/// Read kube-restrict-ip config text (as [`load_kube_restrict_ip`] does after reading the
/// file; `path` is used in messages only).
pub fn parse_kube_restrict_ip(text: &str, path: &Path) -> Result<KubeRestrictIp, ProviderError> {
    let err = |msg: String| {
        ProviderError::Config(format!("kube-restrict-ip config {}: {msg}", path.display()))
    };
    let raw: RawKubeRestrictIp = serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?;

    let raw_ports = raw
        .restricted_ports
        .filter(|p| !p.is_empty())
        .ok_or_else(|| err("no restricted ports defined (add a `restrictedPorts` list)".into()))?;
    let mut numbers = Vec::with_capacity(raw_ports.len());
    for p in raw_ports {
        numbers.push(match p {
            PortValue::Number(n) => n,
            PortValue::Text(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| err(format!("invalid port `{s}`")))?,
        });
    }
    let ports = parse_ports(numbers).map_err(err)?.into_iter().collect();

    let networks: Vec<String> = raw
        .allowed_networks
        .unwrap_or_default()
        .into_iter()
        .map(|n| n.trim().to_owned())
        .collect();
    if networks.is_empty() {
        return Err(err(
            "no allowed networks defined (add an `allowedNetworks` list)".into(),
        ));
    }

    let interval = match raw.check_interval {
        None => KUBE_RESTRICT_IP_DEFAULT_INTERVAL,
        Some(IntervalValue::Text(s)) => parse_go_duration(&s).map_err(err)?,
        Some(IntervalValue::Number(n)) => {
            return Err(err(format!(
                "checkInterval `{n}` has no unit; write a duration such as `60s` or `1m`"
            )));
        }
    };
    if interval.is_zero() {
        return Err(err("checkInterval can't be 0".into()));
    }

    let chain = raw
        .ip_chain
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| KUBE_RESTRICT_IP_DEFAULT_CHAIN.to_owned());

    Ok(KubeRestrictIp {
        path: path.to_owned(),
        ports,
        networks,
        interval,
        chain,
    })
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
                "unknown variant",
            ),
            (
                serde_json::json!({"ports": [1], "action": "accept"}),
                "unknown variant",
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
    fn kube_restrict_ip_file_is_read_as_is() {
        let text = "restrictedPorts:\n  - 9100\n  - \"10254\"\n\nallowedNetworks:\n  - 127.0.0.1\n  - 10.244.0.0/16\n  - 172.17.0.1/16\n\ncheckInterval: 1m30s\n";
        let k = parse_kube_restrict_ip(text, Path::new("c.yaml")).unwrap();
        assert_eq!(k.ports, vec![9100, 10254]);
        assert_eq!(
            k.networks,
            vec!["127.0.0.1", "10.244.0.0/16", "172.17.0.1/16"]
        );
        assert_eq!(k.interval, Duration::from_secs(90));
        assert_eq!(k.chain, "KUBE-RESTRICT-IP");

        let k = parse_kube_restrict_ip(
            "restrictedPorts: [6443]\nallowedNetworks: [10.0.0.0/8]\nipChain: MY-CHAIN\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert_eq!(k.interval, KUBE_RESTRICT_IP_DEFAULT_INTERVAL);
        assert_eq!(k.chain, "MY-CHAIN");
    }

    #[test]
    fn kube_restrict_ip_errors() {
        let cases = [
            ("allowedNetworks: [10.0.0.0/8]\n", "no restricted ports"),
            ("restrictedPorts: [80]\n", "no allowed networks"),
            (
                "restrictedPorts: [80]\nallowedNetworks: []\n",
                "no allowed networks",
            ),
            (
                "restrictedPorts: [http]\nallowedNetworks: [1.2.3.4]\n",
                "invalid port `http`",
            ),
            (
                "restrictedPorts: [70000]\nallowedNetworks: [1.2.3.4]\n",
                "out of range",
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\ncheckInterval: 60\n",
                "has no unit",
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\ncheckInterval: 0s\n",
                "can't be 0",
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\ncheckInterval: soon\n",
                "not a duration",
            ),
            (
                "restrictedPorts: [80]\nallowedNetworks: [1.2.3.4]\nrestrictPorts: [1]\n",
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let e = parse_kube_restrict_ip(text, Path::new("k.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains("k.yaml"), "{e}");
        }
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

    #[test]
    fn config_with_kube_restrict_ip_takes_its_ports() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("krip.yaml"),
            "restrictedPorts: [9100, 10254]\nallowedNetworks: [10.0.0.0/8]\n",
        )
        .unwrap();
        let mut t = target(serde_json::json!({"kubeRestrictIp": "krip.yaml"}));
        t.base_dir = dir.path().to_owned();
        let c = Config::from_target(&t).unwrap();
        assert_eq!(c.ports_list(), "9100,10254");
        assert_eq!(
            c.kube_restrict_ip.as_ref().unwrap().networks,
            vec!["10.0.0.0/8"]
        );

        let mut t = target(serde_json::json!({"kubeRestrictIp": "krip.yaml", "ports": [1]}));
        t.base_dir = dir.path().to_owned();
        assert!(
            Config::from_target(&t)
                .unwrap_err()
                .to_string()
                .contains("not both")
        );

        let t = target(serde_json::json!({"kubeRestrictIp": "missing.yaml"}));
        assert_eq!(Config::from_target(&t).unwrap_err().kind(), "not_found");
    }
}
