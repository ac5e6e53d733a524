//! Test peers for rangekeeper's own tests, kept out of the shipped crates: fake servers that
//! honour the real cloud APIs' contracts (status codes, headers, long-running operations,
//! error bodies), a real kube-apiserver + etcd control plane for the Kubernetes providers, and
//! probes for the host-firewall tests. Used only as a dev-dependency; never published.

pub mod fake_arm;
pub mod fake_eks;
#[cfg(feature = "gke")]
pub mod gke;
#[cfg(feature = "haproxy")]
pub mod haproxy;
#[cfg(feature = "kube")]
pub mod interpose;
#[cfg(feature = "kube")]
pub mod kube;
pub mod netns_probe;
pub mod quota;
