//! Reading the cluster's authorized networks and building the one-field update.
//!
//! The allow-list lives in `controlPlaneEndpointsConfig.ipEndpointsConfig.authorizedNetworksConfig`
//! (`{enabled, cidrBlocks: [{displayName, cidrBlock}], gcpPublicCidrsAccessEnabled,
//! privateEndpointEnforcementEnabled}`); older answers carry only the legacy
//! `masterAuthorizedNetworksConfig` of the same shape. The config stays a JSON object so that
//! every field of it we do not change (the two flags, fields newer than this code) goes back
//! exactly as read.

use std::collections::BTreeMap;

use rangekeeper_provider::cidr::{self, IpNet};
use rangekeeper_provider::{ProviderError, RangeSet, Restriction};
use serde_json::{Map, Value, json};

/// Where the config is read from.
pub const CONFIG_POINTER: &str =
    "/controlPlaneEndpointsConfig/ipEndpointsConfig/authorizedNetworksConfig";
/// The legacy location.
pub const LEGACY_POINTER: &str = "/masterAuthorizedNetworksConfig";

/// Longest `displayName` we send. GKE documents no limit for `CidrBlock.displayName`; the
/// Cloud Console's field and other GKE names stay within 63 characters, so notes are cut
/// there (on a character boundary, with `…`) rather than risk an INVALID_ARGUMENT.
pub const MAX_DISPLAY_NAME: usize = 63;

/// Which field the config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    ControlPlaneEndpoints,
    Legacy,
    /// Neither is present: authorized networks were never configured.
    Absent,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::ControlPlaneEndpoints => {
                "controlPlaneEndpointsConfig.ipEndpointsConfig.authorizedNetworksConfig"
            }
            Origin::Legacy => "masterAuthorizedNetworksConfig (legacy)",
            Origin::Absent => "not configured",
        }
    }
}

/// The authorized networks config as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Networks {
    /// The config object exactly as read (empty when absent).
    pub config: Map<String, Value>,
    pub origin: Origin,
}

/// The config of a cluster body, from the current location or the legacy one.
pub fn networks(body: &Value) -> Result<Networks, ProviderError> {
    for (pointer, origin) in [
        (CONFIG_POINTER, Origin::ControlPlaneEndpoints),
        (LEGACY_POINTER, Origin::Legacy),
    ] {
        match body.pointer(pointer) {
            None | Some(Value::Null) => continue,
            Some(Value::Object(m)) => {
                return Ok(Networks {
                    config: m.clone(),
                    origin,
                });
            }
            Some(other) => {
                return Err(ProviderError::Other(format!(
                    "the cluster's {} is not an object: {other}",
                    origin.describe()
                )));
            }
        }
    }
    Ok(Networks {
        config: Map::new(),
        origin: Origin::Absent,
    })
}

impl Networks {
    pub fn enabled(&self) -> bool {
        self.flag("enabled")
    }

    /// A boolean field (absent means false, as proto3 JSON leaves false out).
    pub fn flag(&self, name: &str) -> bool {
        self.config
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The blocks as stored: `(cidrBlock, displayName)`.
    pub fn blocks(&self) -> Result<Vec<(String, Option<String>)>, ProviderError> {
        let items = match self.config.get("cidrBlocks") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(ProviderError::Other(format!(
                    "cidrBlocks is not a list: {other}"
                )));
            }
        };
        items
            .iter()
            .map(|b| {
                let cidr = b.get("cidrBlock").and_then(Value::as_str).ok_or_else(|| {
                    ProviderError::Other(format!("a cidrBlocks entry has no cidrBlock: {b}"))
                })?;
                let name = b
                    .get("displayName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
                Ok((cidr.to_owned(), name))
            })
            .collect()
    }

    /// The restriction: disabled (or never configured) is unrestricted; enabled holds the
    /// blocks' canonical set (possibly empty: then only Google's own ranges get in).
    pub fn restriction(&self) -> Result<Restriction, ProviderError> {
        if !self.enabled() {
            return Ok(Restriction::Unrestricted);
        }
        let mut nets = Vec::new();
        for (text, _) in self.blocks()? {
            let parsed = cidr::parse(&text).map_err(|e| {
                ProviderError::Other(format!(
                    "the cluster holds a CIDR block rangekeeper cannot read: {e}"
                ))
            })?;
            nets.push(parsed.net);
        }
        Ok(Restriction::Ranges(RangeSet::from_nets(nets)))
    }
}

/// What an apply or disable should leave on the cluster.
#[derive(Debug, Clone, Copy)]
pub enum Goal<'a> {
    Ranges(&'a RangeSet),
    Unrestricted,
}

impl Goal<'_> {
    /// Canonical comparison: `1.2.3.4` and `1.2.3.4/32` are the same; names do not count.
    pub fn is_met_by(&self, r: &Restriction) -> bool {
        match (self, r) {
            (Goal::Unrestricted, Restriction::Unrestricted) => true,
            (Goal::Ranges(d), Restriction::Ranges(c)) => *d == c,
            _ => false,
        }
    }
}

/// The new config: the one read with `enabled` and `cidrBlocks` replaced and every other
/// field (`gcpPublicCidrsAccessEnabled`, `privateEndpointEnforcementEnabled`, anything newer)
/// kept as read. Disabling sends `enabled: false` and no blocks.
pub fn desired_config(
    read: &Networks,
    goal: Goal<'_>,
    notes: &BTreeMap<IpNet, String>,
) -> Map<String, Value> {
    let mut config = read.config.clone();
    match goal {
        Goal::Ranges(set) => {
            let blocks: Vec<Value> = set
                .prefixes()
                .iter()
                .map(|net| {
                    let mut b = Map::new();
                    if let Some(name) = display_name(net, notes) {
                        b.insert("displayName".into(), Value::String(name));
                    }
                    b.insert("cidrBlock".into(), Value::String(net.to_string()));
                    Value::Object(b)
                })
                .collect();
            config.insert("enabled".into(), Value::Bool(true));
            config.insert("cidrBlocks".into(), Value::Array(blocks));
        }
        Goal::Unrestricted => {
            config.insert("enabled".into(), Value::Bool(false));
            config.remove("cidrBlocks");
        }
    }
    config
}

/// The `clusters.update` body: exactly one field,
/// `desiredControlPlaneEndpointsConfig.ipEndpointsConfig.authorizedNetworksConfig`, plus the
/// etag the cluster had when read (GKE answers ABORTED if it changed since).
pub fn update_body(name: &str, config: Map<String, Value>, etag: Option<&str>) -> Value {
    let mut update = Map::new();
    update.insert(
        "desiredControlPlaneEndpointsConfig".into(),
        json!({"ipEndpointsConfig": {"authorizedNetworksConfig": Value::Object(config)}}),
    );
    if let Some(etag) = etag {
        update.insert("etag".into(), Value::String(etag.to_owned()));
    }
    json!({"name": name, "update": Value::Object(update)})
}

/// The note for one canonical prefix: the note of the declared entry that is exactly this
/// prefix; else of the noted entry that contains it (split by `except`); else the notes of
/// the entries aggregated into it, joined. Cut to [`MAX_DISPLAY_NAME`] characters.
pub fn display_name(net: &IpNet, notes: &BTreeMap<IpNet, String>) -> Option<String> {
    let text = if let Some(n) = notes.get(net) {
        n.clone()
    } else if let Some((_, n)) = notes
        .iter()
        .filter(|(k, _)| k.contains(net))
        .max_by_key(|(k, _)| k.prefix_len())
    {
        n.clone()
    } else {
        let inner: Vec<&str> = notes
            .iter()
            .filter(|(k, _)| net.contains(*k))
            .map(|(_, n)| n.as_str())
            .collect();
        if inner.is_empty() {
            return None;
        }
        let mut uniq: Vec<&str> = Vec::new();
        for n in inner {
            if !uniq.contains(&n) {
                uniq.push(n);
            }
        }
        uniq.join("; ")
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    Some(truncate(&text, MAX_DISPLAY_NAME))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Facts for `show`, in display order.
pub fn details(body: &Value, nets: &Networks) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(s) = body.get("status").and_then(Value::as_str) {
        out.push(("status".into(), s.to_owned()));
    }
    out.push(("authorizedNetworks".into(), nets.origin.describe().into()));
    out.push(("enabled".into(), nets.enabled().to_string()));
    for flag in [
        "gcpPublicCidrsAccessEnabled",
        "privateEndpointEnforcementEnabled",
    ] {
        out.push((flag.into(), nets.flag(flag).to_string()));
    }
    if let Ok(blocks) = nets.blocks() {
        for (cidr, name) in blocks {
            if let Some(name) = name {
                out.push((format!("displayName {cidr}"), name));
            }
        }
    }
    out
}

/// Whether the cluster's IP endpoints or its public endpoint are off (the list then only
/// guards the private endpoint, or nothing).
pub fn endpoint_warnings(body: &Value, nets: &Networks) -> Vec<String> {
    let mut out = Vec::new();
    let ip = body.pointer("/controlPlaneEndpointsConfig/ipEndpointsConfig");
    if ip.and_then(|v| v.get("enabled")).and_then(Value::as_bool) == Some(false) {
        out.push(
            "the cluster's IP-based control plane endpoints are disabled (DNS endpoint only): authorized networks have no effect".into(),
        );
    } else if ip
        .and_then(|v| v.get("enablePublicEndpoint"))
        .and_then(Value::as_bool)
        == Some(false)
        || body
            .pointer("/privateClusterConfig/enablePrivateEndpoint")
            .and_then(Value::as_bool)
            == Some(true)
    {
        out.push(
            "the cluster has no public endpoint: authorized networks restrict access to its private endpoint only".into(),
        );
    }
    if nets.enabled() && nets.flag("gcpPublicCidrsAccessEnabled") {
        out.push(
            "gcpPublicCidrsAccessEnabled is true: any Google Cloud public IP can also reach the control plane".into(),
        );
    }
    if !nets.enabled() {
        out.push(
            "authorized networks are disabled: the control plane endpoint is open to every address"
                .into(),
        );
    }
    if let Some(s) = body.get("status").and_then(Value::as_str)
        && s != "RUNNING"
    {
        out.push(format!("the cluster's status is {s}"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        cidr::parse(s).unwrap().net
    }

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(items.iter().map(|s| net(s)))
    }

    #[test]
    fn reads_the_current_location_before_the_legacy_one() {
        let body = json!({
            "controlPlaneEndpointsConfig": {"ipEndpointsConfig": {"authorizedNetworksConfig": {
                "enabled": true, "cidrBlocks": [{"cidrBlock": "203.0.113.0/24"}]}}},
            "masterAuthorizedNetworksConfig": {"enabled": true, "cidrBlocks": [{"cidrBlock": "198.51.100.0/24"}]},
        });
        let n = networks(&body).unwrap();
        assert_eq!(n.origin, Origin::ControlPlaneEndpoints);
        assert_eq!(
            n.restriction().unwrap(),
            Restriction::Ranges(set(&["203.0.113.0/24"]))
        );

        let legacy = json!({"masterAuthorizedNetworksConfig": {"enabled": true,
            "cidrBlocks": [{"cidrBlock": "198.51.100.7"}, {"cidrBlock": "2001:db8::/32", "displayName": "v6"}]}});
        let n = networks(&legacy).unwrap();
        assert_eq!(n.origin, Origin::Legacy);
        assert_eq!(
            n.restriction().unwrap(),
            Restriction::Ranges(set(&["198.51.100.7/32", "2001:db8::/32"]))
        );

        let none = networks(&json!({"name": "c"})).unwrap();
        assert_eq!(none.origin, Origin::Absent);
        assert_eq!(none.restriction().unwrap(), Restriction::Unrestricted);
        let disabled = json!({"masterAuthorizedNetworksConfig": {"cidrBlocks": [{"cidrBlock": "198.51.100.7/32"}]}});
        assert_eq!(
            networks(&disabled).unwrap().restriction().unwrap(),
            Restriction::Unrestricted
        );
        let enabled_empty = json!({"masterAuthorizedNetworksConfig": {"enabled": true}});
        assert_eq!(
            networks(&enabled_empty).unwrap().restriction().unwrap(),
            Restriction::Ranges(RangeSet::new())
        );
    }

    #[test]
    fn the_update_keeps_the_other_fields_and_has_one_field() {
        let read = networks(&json!({"controlPlaneEndpointsConfig": {"ipEndpointsConfig": {"authorizedNetworksConfig": {
            "enabled": true, "gcpPublicCidrsAccessEnabled": true, "privateEndpointEnforcementEnabled": true,
            "someNewerField": {"x": 1}, "cidrBlocks": [{"cidrBlock": "1.2.3.0/24"}]}}}}))
        .unwrap();
        let mut notes = BTreeMap::new();
        notes.insert(net("192.0.2.0/24"), "office".to_owned());
        let desired = set(&["192.0.2.0/24", "2001:db8::/48"]);
        let body = update_body(
            "projects/p/locations/l/clusters/c",
            desired_config(&read, Goal::Ranges(&desired), &notes),
            Some("e1"),
        );
        assert_eq!(
            body,
            json!({"name": "projects/p/locations/l/clusters/c", "update": {
                "desiredControlPlaneEndpointsConfig": {"ipEndpointsConfig": {"authorizedNetworksConfig": {
                    "enabled": true, "gcpPublicCidrsAccessEnabled": true, "privateEndpointEnforcementEnabled": true,
                    "someNewerField": {"x": 1},
                    "cidrBlocks": [{"displayName": "office", "cidrBlock": "192.0.2.0/24"}, {"cidrBlock": "2001:db8::/48"}]}}},
                "etag": "e1"}})
        );
        let off = desired_config(&read, Goal::Unrestricted, &notes);
        assert_eq!(off.get("enabled"), Some(&Value::Bool(false)));
        assert!(!off.contains_key("cidrBlocks"));
        assert_eq!(
            off.get("gcpPublicCidrsAccessEnabled"),
            Some(&Value::Bool(true))
        );
    }

    #[test]
    fn display_names_come_from_notes() {
        let mut notes = BTreeMap::new();
        notes.insert(net("192.0.2.0/25"), "office A".to_owned());
        notes.insert(net("192.0.2.128/25"), "office B".to_owned());
        notes.insert(net("198.51.100.0/24"), "  vpn\n gateway ".to_owned());
        notes.insert(net("203.0.113.0/24"), "x".repeat(100));
        // Exact, aggregated, contained, cut.
        assert_eq!(
            display_name(&net("198.51.100.0/24"), &notes).as_deref(),
            Some("vpn gateway")
        );
        assert_eq!(
            display_name(&net("192.0.2.0/24"), &notes).as_deref(),
            Some("office A; office B")
        );
        assert_eq!(
            display_name(&net("198.51.100.0/25"), &notes).as_deref(),
            Some("vpn gateway")
        );
        let cut = display_name(&net("203.0.113.0/24"), &notes).unwrap();
        assert_eq!(cut.chars().count(), MAX_DISPLAY_NAME);
        assert!(cut.ends_with('…'));
        assert_eq!(display_name(&net("8.8.8.8/32"), &notes), None);
    }
}
