//! `external-ips audit`: which existing Services hold addresses outside the allowed set.
//!
//! Services come from `kubectl get services -A -o json` (a `List` or `ServiceList`, or one
//! Service) or from the cluster ([`super::cluster`]); each is read into a [`Service`] with
//! only what is judged. Every finding names the Service, the field, the address and which
//! other set of the declaration would admit it, if one does.

use std::fmt::Write as _;

use rangekeeper_cidr::{IpNet, RangeSet};
use serde::{Deserialize, Serialize};

use super::parse_ip;

/// What the audit looks at in one Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub external_ips: Vec<String>,
    /// `status.loadBalancer.ingress[].ip`.
    pub ingress_ips: Vec<String>,
    /// `spec.loadBalancerSourceRanges`.
    pub source_ranges: Vec<String>,
}

#[derive(Deserialize)]
struct RawList {
    #[serde(default)]
    items: Vec<RawService>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawService {
    #[serde(default)]
    metadata: RawMeta,
    #[serde(default)]
    spec: RawSpec,
    #[serde(default)]
    status: RawStatus,
}

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(default, rename = "externalIPs")]
    external_ips: Option<Vec<String>>,
    #[serde(default)]
    load_balancer_source_ranges: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    #[serde(default)]
    load_balancer: RawLb,
}

#[derive(Deserialize, Default)]
struct RawLb {
    #[serde(default)]
    ingress: Option<Vec<RawIngress>>,
}

#[derive(Deserialize, Default)]
struct RawIngress {
    #[serde(default)]
    ip: Option<String>,
}

impl From<RawService> for Service {
    fn from(s: RawService) -> Service {
        Service {
            namespace: s.metadata.namespace.unwrap_or_else(|| "default".into()),
            name: s.metadata.name,
            external_ips: s.spec.external_ips.unwrap_or_default(),
            ingress_ips: s
                .status
                .load_balancer
                .ingress
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip)
                .collect(),
            source_ranges: s.spec.load_balancer_source_ranges.unwrap_or_default(),
        }
    }
}

/// Read `kubectl get services -A -o json` output (or one Service). The error names the JSON
/// path of what is wrong.
pub fn parse_services(text: &str) -> Result<Vec<Service>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("not JSON (line {}, column {}): {e}", e.line(), e.column()))?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    let services: Vec<RawService> = match kind.as_str() {
        "Service" => vec![serde_path_to_error::deserialize(value).map_err(|e| path_error(&e))?],
        "List" | "ServiceList" => {
            let list: RawList =
                serde_path_to_error::deserialize(value).map_err(|e| path_error(&e))?;
            list.items
        }
        "" => {
            return Err(
                "no `kind`: expected the output of `kubectl get services -A -o json`".into(),
            );
        }
        other => {
            return Err(format!(
                "a {other}, not a Service list: expected the output of `kubectl get services -A -o json`"
            ));
        }
    };
    Ok(services.into_iter().map(Service::from).collect())
}

fn path_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    format!("at `{}`: {}", e.path(), e.inner())
}

/// Which field an address was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Field {
    #[serde(rename = "spec.externalIPs")]
    ExternalIps,
    #[serde(rename = "status.loadBalancer.ingress")]
    Ingress,
    #[serde(rename = "spec.loadBalancerSourceRanges")]
    SourceRanges,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::ExternalIps => "spec.externalIPs",
            Field::Ingress => "status.loadBalancer.ingress",
            Field::SourceRanges => "spec.loadBalancerSourceRanges",
        }
    }
}

/// One address of one Service outside the allowed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub namespace: String,
    pub name: String,
    pub field: Field,
    pub address: String,
    /// Why it does not comply: `not-allowed` or `not-valid`.
    pub problem: &'static str,
    /// Other sets of the declaration whose entries would admit it, as `set: entry`.
    pub admitted_by: Vec<String>,
}

/// The audit of a list of Services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Where the allowed ranges come from.
    pub allowed_from: String,
    pub allowed: RangeSet,
    pub services: usize,
    /// Services with at least one finding.
    pub non_compliant: usize,
    pub findings: Vec<Finding>,
}

/// The other sets a finding is compared with: `(name, ranges)`.
pub type OtherSets<'a> = Vec<(&'a str, &'a RangeSet)>;

/// Judge every Service: externalIPs always; with `load_balancer`, the load balancer's
/// ingress IPs and `loadBalancerSourceRanges` too (a source range complies when the whole
/// range is inside the set).
pub fn audit(
    services: &[Service],
    allowed: &RangeSet,
    allowed_from: &str,
    others: &OtherSets<'_>,
    load_balancer: bool,
) -> Report {
    let mut findings = Vec::new();
    let mut non_compliant = 0;
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for s in sorted {
        let before = findings.len();
        let mut judge = |field: Field, value: &str| {
            let net = match field {
                Field::SourceRanges => parse_range(value),
                _ => parse_ip(value)
                    .and_then(|a| IpNet::new(a, if a.is_ipv4() { 32 } else { 128 }).ok()),
            };
            let problem = match net {
                None => "not-valid",
                Some(n) if allowed.contains_net(&n) => return,
                Some(_) => "not-allowed",
            };
            findings.push(Finding {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                field,
                address: value.to_owned(),
                problem,
                admitted_by: net.map(|n| admitted_by(&n, others)).unwrap_or_default(),
            });
        };
        for ip in &s.external_ips {
            judge(Field::ExternalIps, ip);
        }
        if load_balancer {
            for ip in &s.ingress_ips {
                judge(Field::Ingress, ip);
            }
            for r in &s.source_ranges {
                judge(Field::SourceRanges, r);
            }
        }
        if findings.len() > before {
            non_compliant += 1;
        }
    }
    Report {
        allowed_from: allowed_from.to_owned(),
        allowed: allowed.clone(),
        services: services.len(),
        non_compliant,
        findings,
    }
}

/// A `loadBalancerSourceRanges` entry: a CIDR (Kubernetes accepts host bits and spaces
/// around it here).
fn parse_range(s: &str) -> Option<IpNet> {
    if s.trim().is_empty() {
        return None;
    }
    rangekeeper_cidr::parse(s).ok().map(|p| p.net)
}

fn admitted_by(net: &IpNet, others: &OtherSets<'_>) -> Vec<String> {
    others
        .iter()
        .filter_map(|(name, set)| {
            set.prefixes()
                .into_iter()
                .find(|p| p.contains(net))
                .map(|p| format!("{name}: {p}"))
        })
        .collect()
}

/// The audit for people: one row per address outside the set, then a summary.
pub fn human(r: &Report) -> String {
    let mut s = String::new();
    if !r.findings.is_empty() {
        let rows: Vec<Vec<String>> = r
            .findings
            .iter()
            .map(|f| {
                vec![
                    f.namespace.clone(),
                    f.name.clone(),
                    f.field.as_str().to_owned(),
                    f.address.clone(),
                    f.problem.to_owned(),
                    if f.admitted_by.is_empty() {
                        "-".to_owned()
                    } else {
                        f.admitted_by.join(", ")
                    },
                ]
            })
            .collect();
        s.push_str(&crate::output::table(
            &[
                "NAMESPACE",
                "NAME",
                "FIELD",
                "ADDRESS",
                "PROBLEM",
                "ADMITTED BY",
            ],
            &rows,
        ));
    }
    let what = format!(
        "{} ({})",
        r.allowed_from,
        crate::output::count(r.allowed.len(), "range")
    );
    if r.non_compliant == 0 {
        let _ = writeln!(
            s,
            "{}",
            crate::output::paint(
                crate::output::GREEN,
                &format!(
                    "all {} comply with {what}",
                    crate::output::count(r.services, "Service")
                )
            )
        );
    } else {
        let _ = writeln!(
            s,
            "{}",
            crate::output::paint(
                crate::output::RED,
                &format!(
                    "{} of {} {} addresses outside {what}",
                    r.non_compliant,
                    crate::output::count(r.services, "Service"),
                    if r.non_compliant == 1 { "has" } else { "have" }
                )
            )
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(
            items
                .iter()
                .map(|s| rangekeeper_cidr::parse(s).unwrap().net),
        )
    }

    #[test]
    fn findings_name_service_field_address_and_other_sets() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
          {"metadata":{"namespace":"b","name":"web"},"spec":{"externalIPs":["10.0.0.5","11.0.0.1","x"]}},
          {"metadata":{"namespace":"a","name":"lb"},"spec":{"loadBalancerSourceRanges":["10.1.0.0/16","0.0.0.0/0"]},
           "status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.9"},{"hostname":"h"}]}}},
          {"metadata":{"namespace":"a","name":"plain"},"spec":{}}]}"#;
        let services = parse_services(text).unwrap();
        let allowed = set(&["10.0.0.0/8"]);
        let office = set(&["11.0.0.0/8"]);
        let others: OtherSets<'_> = vec![("office", &office)];
        let r = audit(&services, &allowed, "t", &others, false);
        assert_eq!(r.non_compliant, 1);
        assert_eq!(r.findings.len(), 2);
        assert_eq!(
            r.findings[0].admitted_by,
            vec!["office: 11.0.0.0/8".to_string()]
        );
        assert_eq!(r.findings[1].problem, "not-valid");
        let r = audit(&services, &allowed, "t", &others, true);
        assert_eq!(r.non_compliant, 2);
        assert_eq!(r.findings[0].name, "lb");
        assert_eq!(r.findings.len(), 4);
    }

    #[test]
    fn bad_input_is_located() {
        let e = parse_services(r#"{"kind":"List","items":[{"spec":{"externalIPs":[1]}}]}"#)
            .unwrap_err();
        assert!(e.contains("items[0].spec.externalIPs[0]"), "{e}");
        assert!(parse_services(r#"{"kind":"Pod"}"#).is_err());
        assert!(parse_services("[").is_err());
    }
}
