//! Reading and changing the managed-cluster JSON. The body stays a `serde_json::Value`
//! (preserve_order) so every field, known or not, goes back as it was read; only
//! `properties.apiServerAccessProfile.authorizedIPRanges` is ever changed.
//!
//! Read-only fields (`provisioningState`, `powerState`, `fqdn`, `currentKubernetesVersion`,
//! `effectiveOutboundIPs`, agent-pool `eTag`s, ...) are NOT stripped before the PUT: ARM
//! resource providers ignore read-only properties in a PUT body (OpenAPI `readOnly`: "SHOULD
//! NOT be sent ... ignored"; Azure's own validator notes such requests are valid,
//! Azure/oav#986), while a client-side strip list would have to track every api-version's
//! schema and would silently drop fields it misclassified. Sending the body back as read is
//! the one choice that cannot reset a setting.

use std::net::IpAddr;

use rangekeeper_provider::cidr::{self, IpNet};
use rangekeeper_provider::{ProviderError, RangeSet, Restriction};
use serde_json::{Map, Value};

/// The special value meaning "only the cluster's own outbound IP".
pub const OWN_OUTBOUND_IP: &str = "0.0.0.0/32";

/// The authorized ranges exactly as stored (`None` when the field is absent or null).
pub fn stored_ranges(body: &Value) -> Result<Option<Vec<String>>, ProviderError> {
    match body.pointer("/properties/apiServerAccessProfile/authorizedIPRanges") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ProviderError::Other(format!(
                        "authorizedIPRanges holds a non-string entry: {v}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(ProviderError::Other(format!(
            "authorizedIPRanges is not a list: {other}"
        ))),
    }
}

/// The restriction the cluster holds: an absent or empty list means unrestricted.
pub fn restriction_of(body: &Value) -> Result<Restriction, ProviderError> {
    let ranges = stored_ranges(body)?.unwrap_or_default();
    if ranges.is_empty() {
        return Ok(Restriction::Unrestricted);
    }
    let mut nets = Vec::with_capacity(ranges.len());
    for r in &ranges {
        let parsed = cidr::parse(r).map_err(|e| {
            ProviderError::Other(format!(
                "the cluster holds a range rangekeeper cannot read: {e}"
            ))
        })?;
        nets.push(parsed.net);
    }
    Ok(Restriction::Ranges(RangeSet::from_nets(nets)))
}

/// Whether a set is exactly the special `0.0.0.0/32`.
pub fn is_own_outbound_only(set: &RangeSet) -> bool {
    let p = set.prefixes();
    p.len() == 1 && p.first().is_some_and(|n| n.to_string() == OWN_OUTBOUND_IP)
}

/// The canonical prefixes of a set as the strings we send.
pub fn range_strings(set: &RangeSet) -> Vec<String> {
    set.prefixes().iter().map(IpNet::to_string).collect()
}

/// Set `properties.apiServerAccessProfile.authorizedIPRanges`, creating the objects on the
/// way if absent (or null); nothing else in the body changes.
pub fn set_ranges(body: &mut Value, ranges: &[String]) -> Result<(), ProviderError> {
    let root = body.as_object_mut().ok_or_else(|| {
        ProviderError::Other("the managed cluster body is not a JSON object".into())
    })?;
    let props = object_entry(root, "properties")?;
    let profile = object_entry(props, "apiServerAccessProfile")?;
    profile.insert(
        "authorizedIPRanges".into(),
        Value::Array(ranges.iter().cloned().map(Value::String).collect()),
    );
    Ok(())
}

fn object_entry<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, ProviderError> {
    let slot = obj
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().ok_or_else(|| {
        ProviderError::Other(format!("`{key}` in the managed cluster is not an object"))
    })
}

fn str_at<'a>(body: &'a Value, pointer: &str) -> Option<&'a str> {
    body.pointer(pointer).and_then(Value::as_str)
}

/// `properties.provisioningState` (a free string).
pub fn provisioning_state(body: &Value) -> Option<&str> {
    str_at(body, "/properties/provisioningState")
}

/// Whether a provisioning state is final (the cluster is not in the middle of an operation).
pub fn is_terminal_state(state: &str) -> bool {
    matches!(
        state.to_ascii_lowercase().as_str(),
        "succeeded" | "failed" | "canceled" | "cancelled"
    )
}

/// Facts for `show`, in display order.
pub fn details(body: &Value) -> Vec<(String, String)> {
    let mut d = Vec::new();
    let mut push = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            d.push((k.to_owned(), v.to_owned()));
        }
    };
    push("provisioningState", provisioning_state(body));
    push("powerState", str_at(body, "/properties/powerState/code"));
    push("fqdn", str_at(body, "/properties/fqdn"));
    push("privateFQDN", str_at(body, "/properties/privateFQDN"));
    push("location", str_at(body, "/location"));
    push(
        "kubernetesVersion",
        str_at(body, "/properties/currentKubernetesVersion"),
    );
    push("outboundType", outbound_type(body));
    d
}

/// Whether the cluster's API server is private (authorized ranges do not apply to it).
pub fn is_private_cluster(body: &Value) -> bool {
    body.pointer("/properties/apiServerAccessProfile/enablePrivateCluster")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `properties.networkProfile.outboundType`.
pub fn outbound_type(body: &Value) -> Option<&str> {
    str_at(body, "/properties/networkProfile/outboundType")
}

/// Resource ids of the public IPs the nodes leave through: the load balancer's and the
/// managed NAT gateway's `effectiveOutboundIPs`.
pub fn outbound_ip_ids(body: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    for p in [
        "/properties/networkProfile/loadBalancerProfile/effectiveOutboundIPs",
        "/properties/networkProfile/natGatewayProfile/effectiveOutboundIPs",
    ] {
        if let Some(Value::Array(items)) = body.pointer(p) {
            for it in items {
                if let Some(id) = it.get("id").and_then(Value::as_str)
                    && !ids.iter().any(|x: &String| x.eq_ignore_ascii_case(id))
                {
                    ids.push(id.to_owned());
                }
            }
        }
    }
    ids
}

/// The egress addresses not covered by `desired`.
pub fn missing_egress(desired: &RangeSet, egress: &[IpAddr]) -> Vec<IpAddr> {
    egress
        .iter()
        .copied()
        .filter(|ip| !desired.contains_addr(*ip))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let v: Value = serde_json::from_str(include_str!(
            "../tests/data/ManagedClustersGet.2026-08-01.json"
        ))
        .unwrap();
        v["responses"]["200"]["body"].clone()
    }

    #[test]
    fn set_ranges_creates_profile_and_changes_nothing_else() {
        let before = fixture();
        let mut after = before.clone();
        set_ranges(&mut after, &["198.51.100.0/24".into()]).unwrap();
        assert_eq!(
            after["properties"]["apiServerAccessProfile"],
            serde_json::json!({"authorizedIPRanges": ["198.51.100.0/24"]})
        );
        after["properties"]
            .as_object_mut()
            .unwrap()
            .remove("apiServerAccessProfile");
        assert_eq!(
            serde_json::to_string(&after).unwrap(),
            serde_json::to_string(&before).unwrap()
        );
    }

    #[test]
    fn set_ranges_keeps_other_profile_fields() {
        let mut v = fixture();
        v["properties"]["apiServerAccessProfile"] = serde_json::json!({"enableVnetIntegration": false, "authorizedIPRanges": ["1.2.3.4/32"], "zz": 1});
        set_ranges(&mut v, &[]).unwrap();
        assert_eq!(
            serde_json::to_string(&v["properties"]["apiServerAccessProfile"]).unwrap(),
            r#"{"enableVnetIntegration":false,"authorizedIPRanges":[],"zz":1}"#
        );
    }

    #[test]
    fn reads_fixture_facts() {
        let v = fixture();
        assert_eq!(stored_ranges(&v).unwrap(), None);
        assert_eq!(provisioning_state(&v), Some("Succeeded"));
        let ids = outbound_ip_ids(&v);
        assert_eq!(ids.len(), 2);
        assert!(ids[0].ends_with("/publicIPAddresses/mgdoutboundip1"));
        let d = details(&v);
        assert_eq!(d[0], ("provisioningState".into(), "Succeeded".into()));
        assert!(
            d.iter()
                .any(|(k, v)| k == "fqdn" && v == "dnsprefix1-abcd1234.hcp.eastus.azmk8s.io")
        );
        assert!(d.iter().any(|(k, v)| k == "location" && v == "location1"));
    }

    #[test]
    fn non_string_ranges_are_errors() {
        let mut v = fixture();
        v["properties"]["apiServerAccessProfile"] = serde_json::json!({"authorizedIPRanges": [1]});
        assert!(stored_ranges(&v).is_err());
        v["properties"]["apiServerAccessProfile"] = serde_json::json!({"authorizedIPRanges": null});
        assert_eq!(stored_ranges(&v).unwrap(), None);
    }
}
