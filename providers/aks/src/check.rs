//! Offline checks of a desired set against AKS's rules (no network call): IPv4 only,
//! globally routable only, `0.0.0.0/32` only alone.

use rangekeeper_provider::cidr::{self, IpNet};
use rangekeeper_provider::{RangeSet, Violation};

use crate::cluster::OWN_OUTBOUND_IP;

/// Every rule the desired set breaks, one violation per offending range.
pub fn violations(desired: &RangeSet) -> Vec<Violation> {
    let prefixes = desired.prefixes();
    let mut out = Vec::new();
    let own_ip_only = prefixes.len() == 1;
    for net in &prefixes {
        let text = net.to_string();
        if matches!(net, IpNet::V6(_)) {
            out.push(Violation::at(
                text,
                "AKS authorized IP ranges accept IPv4 only",
            ));
            continue;
        }
        if text == OWN_OUTBOUND_IP {
            if !own_ip_only {
                out.push(Violation::at(text, "0.0.0.0/32 (only the cluster's own outbound IP) must be the only range; AKS rejects it together with others"));
            }
            continue;
        }
        if net.prefix_len() == 0 {
            out.push(Violation::at(text, "allowing every address is not a restriction; AKS lifts the restriction with an empty list (`rangekeeper disable`)"));
            continue;
        }
        if let Some((block, why)) = cidr::special_purpose(net) {
            let relation = if block == *net {
                format!("is {why}")
            } else {
                format!("overlaps {block}, {why}")
            };
            out.push(Violation::at(
                text,
                format!("{relation}; AKS accepts only globally routable ranges"),
            ));
        }
    }
    out
}
