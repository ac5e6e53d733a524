//! What rangekeeper reads from a DescribeCluster answer: endpoint access, the public access
//! CIDRs as a canonical set, and the cluster's IP family.

use aws_sdk_eks::types::{Cluster, IpFamily};
use rangekeeper_provider::cidr::{self, IpNet};
use rangekeeper_provider::{ProviderError, RangeSet, Restriction, State};

/// The warning shown when the public endpoint is off.
pub(crate) const PUBLIC_OFF_WARNING: &str = "public endpoint access is off: the list has no effect";

/// `0.0.0.0/0`.
pub(crate) fn all_v4() -> IpNet {
    IpNet::V4(cidr::Ipv4Net::default())
}

/// `::/0`.
pub(crate) fn all_v6() -> IpNet {
    IpNet::V6(cidr::Ipv6Net::default())
}

/// The parts of a cluster that matter for its API-server allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterView {
    pub name: String,
    pub status: Option<String>,
    pub ipv6: bool,
    pub ip_family: String,
    pub public: bool,
    pub private: bool,
    /// `publicAccessCidrs` as the server returned them.
    pub raw_cidrs: Vec<String>,
    /// The effective set: the parsed list, or `0.0.0.0/0` when the server returned none
    /// (EKS's default).
    pub set: RangeSet,
    /// Entries the server stored with host bits set (kept at their network boundary).
    pub host_bits: Vec<String>,
    /// The cluster's ARN (for TagResource), when returned.
    pub arn: Option<String>,
    /// The API server's URL (`https://<id>.<region>.eks.amazonaws.com`), when returned.
    pub endpoint: Option<String>,
    /// The cluster's tags, sorted by key.
    pub tags: std::collections::BTreeMap<String, String>,
}

impl ClusterView {
    /// Parse a DescribeCluster answer. A `publicAccessCidrs` entry that is not a CIDR is an
    /// error naming it: a list we cannot read is a list we must not overwrite blindly.
    pub fn from_cluster(cluster_name: &str, c: &Cluster) -> Result<Self, ProviderError> {
        let vpc = c.resources_vpc_config().ok_or_else(|| {
            ProviderError::Other(format!(
                "EKS DescribeCluster on cluster `{cluster_name}` returned no resourcesVpcConfig"
            ))
        })?;
        let (ipv6, ip_family) = match c.kubernetes_network_config().and_then(|k| k.ip_family()) {
            Some(IpFamily::Ipv6) => (true, "ipv6".to_owned()),
            Some(other) => (false, other.as_str().to_owned()),
            // EKS's default family, and what clusters created before IPv6 support report.
            None => (false, "ipv4".to_owned()),
        };
        let raw_cidrs: Vec<String> = vpc.public_access_cidrs().to_vec();
        let mut nets = Vec::with_capacity(raw_cidrs.len());
        let mut host_bits = Vec::new();
        for raw in &raw_cidrs {
            let parsed = cidr::parse(raw).map_err(|e| {
                ProviderError::Other(format!(
                    "cluster `{cluster_name}`: EKS returned a publicAccessCidrs entry that is not a valid \
                     CIDR: {e}"
                ))
            })?;
            if parsed.host_bits {
                host_bits.push(raw.clone());
            }
            nets.push(parsed.net);
        }
        if nets.is_empty() {
            nets.push(all_v4());
        }
        Ok(ClusterView {
            name: c.name().unwrap_or(cluster_name).to_owned(),
            status: c.status().map(|s| s.as_str().to_owned()),
            ipv6,
            ip_family,
            public: vpc.endpoint_public_access(),
            private: vpc.endpoint_private_access(),
            raw_cidrs,
            set: RangeSet::from_nets(nets),
            host_bits,
            arn: c.arn().map(str::to_owned),
            endpoint: c.endpoint().map(str::to_owned),
            tags: c
                .tags()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
    }

    /// The leases stored in the cluster's tags; a lease tag that cannot be read is an error
    /// naming it.
    pub fn leases(&self) -> Result<Vec<rangekeeper_provider::Lease>, ProviderError> {
        let mut out = Vec::new();
        for (k, v) in &self.tags {
            if let Some(l) = rangekeeper_provider::Lease::from_tag(k, v) {
                out.push(l.map_err(|e| {
                    ProviderError::Other(format!(
                        "cluster `{}`: {e}; fix or remove the tag",
                        self.name
                    ))
                })?);
            }
        }
        Ok(out)
    }

    /// What the cluster's list and lease tags are, as a digest: EKS has no eTag, so a lease
    /// change compares this before writing and reads back after.
    pub fn version(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for c in self.set.prefixes() {
            h.update(c.to_string().as_bytes());
            h.update(b"\n");
        }
        for (k, v) in self
            .tags
            .iter()
            .filter(|(k, _)| k.starts_with(rangekeeper_provider::lease::TAG_PREFIX))
        {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
            h.update(b"\n");
        }
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The set that lifts the restriction on this cluster: `0.0.0.0/0`, plus `::/0` on IPv6
    /// clusters.
    pub fn unrestricted_set(&self) -> RangeSet {
        if self.ipv6 {
            RangeSet::from_nets([all_v4(), all_v6()])
        } else {
            RangeSet::from_nets([all_v4()])
        }
    }

    /// `Unrestricted` when every address of the cluster's families may connect.
    pub fn restriction(&self) -> Restriction {
        if self.set.is_superset(&self.unrestricted_set()) {
            Restriction::Unrestricted
        } else {
            Restriction::Ranges(self.set.clone())
        }
    }

    /// The state for `show`/`plan`: restriction, details and warnings.
    pub fn state(&self) -> Result<State, ProviderError> {
        let mut state =
            State::new(self.restriction()).with_leases(self.leases()?, Some(self.version()));
        let d = &mut state.details;
        if let Some(status) = &self.status {
            d.push(("status".into(), status.clone()));
        }
        d.push(("ipFamily".into(), self.ip_family.clone()));
        if let Some(e) = &self.endpoint {
            d.push(("endpoint".into(), e.clone()));
        }
        d.push(("endpointPublicAccess".into(), self.public.to_string()));
        d.push(("endpointPrivateAccess".into(), self.private.to_string()));
        d.push((
            "publicAccessCidrs".into(),
            if self.raw_cidrs.is_empty() {
                "(none returned: EKS default 0.0.0.0/0)".into()
            } else {
                self.raw_cidrs.join(", ")
            },
        ));
        let w = &mut state.warnings;
        if !self.public {
            w.push(PUBLIC_OFF_WARNING.into());
        } else if !self.private {
            w.push(
                "private endpoint access is off: nodes reach the API server through the public endpoint, \
                 so their NAT/egress IPs must be in the list (declare them in `protect`)"
                    .into(),
            );
        }
        if let Some(status) = &self.status
            && status != "ACTIVE"
        {
            w.push(format!(
                "cluster status is {status}: updates are refused until it is ACTIVE"
            ));
        }
        for raw in &self.host_bits {
            w.push(format!("publicAccessCidrs entry {raw} has host bits set; it is read at its network boundary"));
        }
        if self.ipv6 && self.set.contains_net(&all_v4()) && !self.set.contains_net(&all_v6()) {
            w.push("every IPv4 address may connect (0.0.0.0/0 is in the list); only IPv6 is restricted".into());
        }
        Ok(state)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_sdk_eks::types::{KubernetesNetworkConfigResponse, VpcConfigResponse};

    pub(crate) fn cluster(public: bool, private: bool, cidrs: &[&str], ipv6: bool) -> Cluster {
        let mut vpc = VpcConfigResponse::builder()
            .endpoint_public_access(public)
            .endpoint_private_access(private);
        for c in cidrs {
            vpc = vpc.public_access_cidrs(*c);
        }
        let mut b = Cluster::builder()
            .name("prod")
            .status(aws_sdk_eks::types::ClusterStatus::Active)
            .resources_vpc_config(vpc.build());
        if ipv6 {
            b = b.kubernetes_network_config(
                KubernetesNetworkConfigResponse::builder()
                    .ip_family(IpFamily::Ipv6)
                    .build(),
            );
        }
        b.build()
    }

    fn set(s: &[&str]) -> RangeSet {
        RangeSet::from_nets(s.iter().map(|c| cidr::parse(c).unwrap().net))
    }

    #[test]
    fn all_ipv4_is_unrestricted_on_ipv4_clusters() {
        let v =
            ClusterView::from_cluster("prod", &cluster(true, true, &["0.0.0.0/0"], false)).unwrap();
        assert_eq!(v.restriction(), Restriction::Unrestricted);
        assert_eq!(v.ip_family, "ipv4");
        let st = v.state().unwrap();
        assert!(st.warnings.is_empty(), "{:?}", st.warnings);
        assert!(
            st.details
                .contains(&("publicAccessCidrs".into(), "0.0.0.0/0".into()))
        );
    }

    #[test]
    fn ipv6_clusters_need_both_families_for_unrestricted() {
        let v =
            ClusterView::from_cluster("prod", &cluster(true, true, &["0.0.0.0/0"], true)).unwrap();
        assert_eq!(v.restriction(), Restriction::Ranges(set(&["0.0.0.0/0"])));
        assert!(
            v.state()
                .unwrap()
                .warnings
                .iter()
                .any(|w| w.contains("only IPv6 is restricted"))
        );
        let v =
            ClusterView::from_cluster("prod", &cluster(true, true, &["0.0.0.0/0", "::/0"], true))
                .unwrap();
        assert_eq!(v.restriction(), Restriction::Unrestricted);
    }

    #[test]
    fn ranges_are_canonical_and_bare_addresses_are_hosts() {
        let v = ClusterView::from_cluster(
            "prod",
            &cluster(
                true,
                true,
                &["203.0.113.128/25", "203.0.113.0/25", "198.51.100.7"],
                false,
            ),
        )
        .unwrap();
        assert_eq!(
            v.restriction(),
            Restriction::Ranges(set(&["203.0.113.0/24", "198.51.100.7/32"]))
        );
    }

    #[test]
    fn a_bad_cidr_from_the_server_is_an_error_naming_it() {
        let e = ClusterView::from_cluster("prod", &cluster(true, true, &["1.2.3.4/24x"], false))
            .unwrap_err();
        assert!(e.to_string().contains("1.2.3.4/24x"), "{e}");
        assert!(e.to_string().contains("prod"), "{e}");
    }

    #[test]
    fn public_off_and_private_off_warn() {
        let v =
            ClusterView::from_cluster("prod", &cluster(false, true, &["198.51.100.0/24"], false))
                .unwrap();
        assert_eq!(
            v.state().unwrap().warnings,
            vec![PUBLIC_OFF_WARNING.to_string()]
        );
        let v =
            ClusterView::from_cluster("prod", &cluster(true, false, &["198.51.100.0/24"], false))
                .unwrap();
        let w = v.state().unwrap().warnings;
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("private endpoint access is off") && w[0].contains("protect"),
            "{w:?}"
        );
    }

    #[test]
    fn no_list_means_the_eks_default() {
        let v = ClusterView::from_cluster("prod", &cluster(true, true, &[], false)).unwrap();
        assert_eq!(v.restriction(), Restriction::Unrestricted);
    }
}
