//! `external-ips policy`: a ValidatingAdmissionPolicy and its binding that enforce the rules
//! in the API server itself, with CEL's `ip()`/`cidr()` library (Kubernetes 1.30 and later),
//! and the webhook's messages.
//!
//! The set is aggregated first (the canonical [`RangeSet`] prefixes) and written as one list
//! of strings made CIDRs once per evaluation. The API server refuses a CEL expression over
//! [`MAX_EXPRESSION_CHARS`] code points, which bounds the set: about 5,500 IPv4 or 2,000
//! IPv6 prefixes (measured against kube-apiserver 1.37, see `tests/external_ips.rs`). A larger
//! set is refused with that reason. At that size a Service with up to [`COST_IPS`] external
//! IPs evaluates within CEL's runtime cost limit; one with more is refused by the API server
//! for cost (failurePolicy Fail), never let through. An empty set is the deny-all policy
//! (`DenyServiceExternalIPs`' behaviour).

use rangekeeper_cidr::RangeSet;
use serde_json::{Value, json};

use super::{FIELD, NOT_ALLOWED, NOT_VALID, Rules};

/// The longest CEL expression the API server compiles, in code points.
pub const MAX_EXPRESSION_CHARS: usize = 100_000;
/// How many external IPs of one Service a policy of the largest size (5,400 IPv4 prefixes)
/// evaluates within CEL's runtime cost limit, measured against kube-apiserver 1.37 (64 exceed
/// it). The cost grows with prefixes times external IPs.
pub const COST_IPS: usize = 16;
/// Prefixes times external IPs known to evaluate within the cost limit (16 x 5,400).
pub const COST_PAIRS: usize = COST_IPS * 5_400;

/// How many external IPs per Service a policy of `prefixes` prefixes is known to evaluate
/// within CEL's cost limit (a Service with more may be refused for cost, never let through).
pub fn ips_within_cost(prefixes: usize) -> usize {
    COST_PAIRS / prefixes.max(1)
}

/// How the objects are named and who is exempt.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The policy's and the binding's name.
    pub name: String,
    /// Namespaces the policy does not apply to (by name).
    pub exempt_namespaces: Vec<String>,
    /// Namespaces with any of these `key=value` labels are exempt.
    pub exempt_labels: Vec<(String, String)>,
    /// Requests by these users or members of these groups are not checked at all.
    pub exempt_users: Vec<String>,
    pub exempt_groups: Vec<String>,
}

/// Why no policy can be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{origin} aggregates to {count} prefixes, {chars} characters as a CEL list; the API server compiles at most {MAX_EXPRESSION_CHARS} characters per expression (about 5,500 IPv4 or 2,000 IPv6 prefixes). Use the webhook (`rangekeeper external-ips serve`) for this set, or a smaller set"
    )]
    TooLarge {
        origin: String,
        count: usize,
        chars: usize,
    },
}

/// A CEL string literal (single-quoted; backslash and quote escaped).
fn cel_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn cel_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| cel_str(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The CEL list of allowed prefixes: strings made CIDRs once (shorter than a `cidr()` call
/// per entry, so more prefixes fit the expression limit).
fn allowed_list(set: &RangeSet) -> String {
    let items: Vec<String> = set
        .prefixes()
        .iter()
        .map(|p| cel_str(&p.to_string()))
        .collect();
    format!("[{}].map(c, cidr(c))", items.join(", "))
}

/// The policy and its binding, in that order.
pub fn generate(rules: &Rules, opts: &Options) -> Result<(Value, Value), PolicyError> {
    let allowed = allowed_list(&rules.allowed);
    let chars = allowed.chars().count();
    if chars > MAX_EXPRESSION_CHARS {
        return Err(PolicyError::TooLarge {
            origin: rules.origin.clone(),
            count: rules.allowed.len(),
            chars,
        });
    }
    let labels = json!({ "app.kubernetes.io/managed-by": "rangekeeper" });
    let annotations = json!({ "rangekeeper.io/allowed-from": rules.origin });

    let mut variables = vec![json!({
        "name": "ips",
        "expression": "has(object.spec.externalIPs) ? object.spec.externalIPs : []",
    })];
    // The first entry that is not an address or not allowed, in order, as the webhook
    // reports it.
    let bad = if rules.allowed.is_empty() {
        "variables.ips".to_owned()
    } else {
        variables.push(json!({ "name": "allowed", "expression": allowed }));
        "variables.ips.filter(i, !isIP(i) || !variables.allowed.exists(c, c.containsIP(i)))"
            .to_owned()
    };
    variables.push(json!({ "name": "bad", "expression": bad }));
    let reason = format!(
        "isIP(variables.bad[0]) ? {} : {}",
        cel_str(NOT_ALLOWED),
        cel_str(NOT_VALID)
    );
    let mut validations = Vec::new();
    if !rules.users.is_empty() || !rules.groups.is_empty() {
        validations.push(json!({
            "expression": format!(
                "size(variables.ips) == 0 || request.userInfo.username in {} || request.userInfo.groups.exists(g, g in {})",
                cel_list(&rules.users),
                cel_list(&rules.groups)
            ),
            "messageExpression": "'user ' + request.userInfo.username + ' is not alllowed to specify externalIP'",
            "reason": "Forbidden",
        }));
    }
    validations.push(json!({
        "expression": "size(variables.bad) == 0",
        "messageExpression": format!(
            "{} + variables.bad[0] + '\": ' + ({reason})",
            cel_str(&format!("{FIELD}: Invalid value: \""))
        ),
        "reason": "Forbidden",
    }));
    let mut spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["services"],
            }],
        },
        "variables": variables,
        "validations": validations,
        "auditAnnotations": [{
            "key": "error",
            // An empty value leaves the annotation out (a `null` branch does not type-check).
            "valueExpression": format!("size(variables.bad) > 0 ? ({reason}) : ''"),
        }],
    });
    if !opts.exempt_users.is_empty() || !opts.exempt_groups.is_empty() {
        spec["matchConditions"] = json!([{
            "name": "not-exempt",
            "expression": format!(
                "!(request.userInfo.username in {}) && !request.userInfo.groups.exists(g, g in {})",
                cel_list(&opts.exempt_users),
                cel_list(&opts.exempt_groups)
            ),
        }]);
    }
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": opts.name, "labels": labels, "annotations": annotations },
        "spec": spec,
    });

    let mut binding_spec = json!({
        "policyName": opts.name,
        "validationActions": ["Deny"],
    });
    let mut exprs = Vec::new();
    if !opts.exempt_namespaces.is_empty() {
        exprs.push(json!({
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": opts.exempt_namespaces,
        }));
    }
    for (k, v) in &opts.exempt_labels {
        exprs.push(json!({ "key": k, "operator": "NotIn", "values": [v] }));
    }
    if !exprs.is_empty() {
        binding_spec["matchResources"] = json!({
            "namespaceSelector": { "matchExpressions": exprs },
        });
    }
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": opts.name, "labels": labels, "annotations": annotations },
        "spec": binding_spec,
    });
    Ok((policy, binding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_strings_are_escaped() {
        assert_eq!(cel_str("a'b\\c"), "'a\\'b\\\\c'");
    }

    #[test]
    fn too_large_a_set_is_refused_with_the_reason() {
        let set = RangeSet::from_nets((0..6000u32).map(|i| {
            rangekeeper_cidr::IpNet::new(std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i).into(), 32)
                .unwrap()
        }));
        let rules = Rules {
            allowed: set,
            origin: "set `big`".into(),
            users: vec![],
            groups: vec![],
        };
        let e = generate(
            &rules,
            &Options {
                name: "x".into(),
                ..Options::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("at most 100000 characters"), "{e}");
    }
}
