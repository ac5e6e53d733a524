//! Reading and changing the managed-cluster JSON. The body stays a `serde_json::Value`
//! (preserve_order) so every field, known or not, goes back as it was read; only
//! `properties.apiServerAccessProfile.authorizedIPRanges` and the `rangekeeper-lease-*` tags
//! are ever changed.
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
use rangekeeper_provider::lease::{Lease, TAG_PREFIX};
use rangekeeper_provider::{ProviderError, RangeSet, Restriction};
use serde_json::{Map, Value};

/// Azure allows 50 tags per resource.
pub const MAX_TAGS: usize = 50;
/// Azure tag values have at most 256 characters (names 512).
pub const MAX_TAG_VALUE: usize = 256;

/// The leases stored in the cluster's tags (`rangekeeper-lease-<id>`); a lease tag that
/// cannot be read is an error naming it.
pub fn leases_of(body: &Value) -> Result<Vec<Lease>, ProviderError> {
    let Some(tags) = body.get("tags").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (k, v) in tags {
        let value = v.as_str().unwrap_or_default();
        if let Some(l) = Lease::from_tag(k, value) {
            out.push(l.map_err(|e| {
                ProviderError::Other(format!("{e}; fix or remove the tag on the cluster"))
            })?);
        }
    }
    Ok(out)
}

/// Replace the lease tags with `leases`, keeping every other tag; refuses (invalid) when the
/// tags would pass Azure's limit of 50 per resource.
pub fn set_lease_tags(body: &mut Value, leases: &[Lease]) -> Result<(), ProviderError> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ProviderError::Other("the managed cluster is not a JSON object".into()))?;
    let tags = obj
        .entry("tags")
        .or_insert_with(|| Value::Object(Map::new()));
    if tags.is_null() {
        *tags = Value::Object(Map::new());
    }
    let tags = tags
        .as_object_mut()
        .ok_or_else(|| ProviderError::Other("the cluster's `tags` is not an object".into()))?;
    tags.retain(|k, _| !k.starts_with(TAG_PREFIX));
    let others = tags.len();
    if others + leases.len() > MAX_TAGS {
        return Err(ProviderError::Invalid(format!(
            "the lease does not fit: Azure allows {MAX_TAGS} tags per resource, and the cluster has {others} other tag{} and would have {} lease tag{}",
            if others == 1 { "" } else { "s" },
            leases.len(),
            if leases.len() == 1 { "" } else { "s" }
        )));
    }
    for l in leases {
        let v = l.tag_value();
        debug_assert!(v.chars().count() <= MAX_TAG_VALUE);
        tags.insert(l.tag_key(), Value::String(v));
    }
    Ok(())
}

/// Whether the cluster's lease tags are exactly `leases` (as they would be written).
pub fn lease_tags_are(body: &Value, leases: &[Lease]) -> bool {
    let held: std::collections::BTreeMap<&str, &str> = body
        .get("tags")
        .and_then(Value::as_object)
        .map(|t| {
            t.iter()
                .filter(|(k, _)| k.starts_with(TAG_PREFIX))
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<(String, String)> = leases
        .iter()
        .map(|l| (l.tag_key(), l.tag_value()))
        .collect();
    held.len() == want.len()
        && want
            .iter()
            .all(|(k, v)| held.get(k.as_str()) == Some(&v.as_str()))
}

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

    fn lease(id: &str) -> Lease {
        Lease {
            id: rangekeeper_provider::LeaseId::parse(id).unwrap(),
            address: "203.0.113.7".parse().unwrap(),
            expires: rangekeeper_provider::Timestamp::parse("2026-12-07T02:30:00Z").unwrap(),
            requested_by: "ci".into(),
            reason: None,
        }
    }

    #[test]
    fn lease_tags_replace_only_lease_tags_and_read_back() {
        let mut body = fixture();
        body["tags"] = serde_json::json!({"owner": "ops", "rangekeeper-lease-old": "x"});
        set_lease_tags(&mut body, &[lease("a1"), lease("b2")]).unwrap();
        let tags = body["tags"].as_object().unwrap();
        assert_eq!(tags["owner"], "ops");
        assert!(!tags.contains_key("rangekeeper-lease-old"));
        assert_eq!(leases_of(&body).unwrap(), vec![lease("a1"), lease("b2")]);
        assert!(lease_tags_are(&body, &[lease("a1"), lease("b2")]));
        assert!(!lease_tags_are(&body, &[lease("a1")]));
    }

    #[test]
    fn leases_past_the_tag_limit_are_refused_with_the_reason() {
        let mut body = fixture();
        let others: Map<String, Value> = (0..49)
            .map(|i| (format!("t{i}"), Value::String("v".into())))
            .collect();
        body["tags"] = Value::Object(others);
        set_lease_tags(&mut body, &[lease("a1")]).unwrap();
        let err = set_lease_tags(&mut body, &[lease("a1"), lease("b2")]).unwrap_err();
        assert!(matches!(err, ProviderError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("50 tags"), "{err}");
        assert!(err.to_string().contains("49 other tags"), "{err}");
    }

    #[test]
    fn an_unreadable_lease_tag_is_an_error_naming_it() {
        let mut body = fixture();
        body["tags"] = serde_json::json!({"rangekeeper-lease-x1": "garbage"});
        let err = leases_of(&body).unwrap_err().to_string();
        assert!(err.contains("rangekeeper-lease-x1"), "{err}");
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
