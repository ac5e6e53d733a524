//! The `calico` provider: a Calico GlobalNetworkPolicy on host endpoints that lets only the
//! declared sources reach the given destinations (cluster IPs, node ports), applied before
//! DNAT (`preDNAT` + `applyOnForward`, as Calico's documentation requires for cluster IPs
//! and node ports); optionally the companion policies that keep normal traffic flowing and a
//! HostEndpoint per node.

use std::collections::BTreeMap;

use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::{ProviderError, RangeSet, TargetConfig, Violation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::connection::{Connection, RawConnection};
use crate::ipblock::{self, Block};
use crate::kube::Resource;
use crate::objects::{Obj, number};
use crate::selector;

pub const NAME: &str = "calico";
/// The host-endpoint selector when none is given (Calico's cluster-IP example).
pub const DEFAULT_SELECTOR: &str = "k8s-role == 'node'";
/// Felix's default `failsafeInboundHostPorts` (Calico's failsafe documentation).
pub const DEFAULT_FAILSAFE: &[(&str, u16)] = &[
    ("tcp", 22),
    ("udp", 68),
    ("tcp", 179),
    ("tcp", 2379),
    ("tcp", 2380),
    ("tcp", 5473),
    ("tcp", 6443),
    ("tcp", 6666),
    ("tcp", 6667),
];
/// kubelet's port, which the API server must keep reaching (logs, exec, port-forward).
pub const KUBELET_PORT: u16 = 10250;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum ApiGroup {
    /// The Calico API server's group.
    #[default]
    #[serde(rename = "projectcalico.org/v3")]
    V3,
    /// Calico's CRDs, for clusters without the Calico API server.
    #[serde(rename = "crd.projectcalico.org/v1")]
    CrdV1,
}

impl ApiGroup {
    fn group_version(self) -> (&'static str, &'static str) {
        match self {
            ApiGroup::V3 => ("projectcalico.org", "v3"),
            ApiGroup::CrdV1 => ("crd.projectcalico.org", "v1"),
        }
    }

    fn res(self, plural: &'static str, kind: &'static str) -> Resource {
        let (g, v) = self.group_version();
        Resource {
            group: g.into(),
            version: v.into(),
            plural,
            kind,
            namespaced: false,
        }
    }

    pub fn policies(self) -> Resource {
        self.res("globalnetworkpolicies", "GlobalNetworkPolicy")
    }

    pub fn host_endpoints(self) -> Resource {
        self.res("hostendpoints", "HostEndpoint")
    }

    pub fn felix(self) -> Resource {
        self.res("felixconfigurations", "FelixConfiguration")
    }
}

pub fn nodes() -> Resource {
    Resource {
        group: String::new(),
        version: "v1".into(),
        plural: "nodes",
        kind: "Node",
        namespaced: false,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    api_group: ApiGroup,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    destination: RawDestination,
    #[serde(default)]
    order: Option<f64>,
    #[serde(default = "yes", rename = "preDNAT")]
    pre_dnat: bool,
    #[serde(default = "yes")]
    apply_on_forward: bool,
    #[serde(default)]
    companions: Option<RawCompanions>,
    #[serde(default)]
    host_endpoints: Option<RawHostEndpoints>,
    #[serde(default)]
    kubeconfig: Option<std::path::PathBuf>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    in_cluster: bool,
    #[serde(default)]
    force: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDestination {
    #[serde(default)]
    nets: Vec<String>,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    protocol: Option<Proto>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPort {
    Number(u32),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Proto {
    TCP,
    UDP,
    SCTP,
}

impl Proto {
    fn lower(self) -> &'static str {
        match self {
            Proto::TCP => "tcp",
            Proto::UDP => "udp",
            Proto::SCTP => "sctp",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCompanions {
    cluster_nets: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHostEndpoints {
    #[serde(default)]
    interface_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    node_selector: Option<String>,
}

/// A port or port range of the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    Range(u16, u16),
    Named(String),
}

impl Port {
    fn json(&self) -> Value {
        match self {
            Port::Range(a, b) if a == b => json!(a),
            Port::Range(a, b) => json!(format!("{a}:{b}")),
            Port::Named(n) => json!(n),
        }
    }

    fn covers(&self, port: u16) -> bool {
        matches!(self, Port::Range(a, b) if *a <= port && port <= *b)
    }
}

/// Per-node HostEndpoints to make.
#[derive(Debug, Clone)]
pub struct HostEndpoints {
    pub interface_name: String,
    pub labels: Vec<(String, String)>,
    pub node_selector: String,
}

/// A validated `calico` target.
#[derive(Debug, Clone)]
pub struct Calico {
    pub target: String,
    pub group: ApiGroup,
    pub name: String,
    pub selector: String,
    pub dest_nets: RangeSet,
    pub ports: Vec<Port>,
    pub protocol: Option<Proto>,
    pub order: f64,
    pub pre_dnat: bool,
    pub apply_on_forward: bool,
    pub cluster_nets: Option<RangeSet>,
    pub host_endpoints: Option<HostEndpoints>,
    pub connection: Connection,
}

impl Calico {
    pub fn from_config(cfg: &TargetConfig) -> Result<Calico, ProviderError> {
        let raw: Raw = cfg.parse()?;
        let t = &cfg.name;
        let bad = |m: String| ProviderError::Config(format!("target `{t}`: {m}"));
        let selector = raw.selector.unwrap_or_else(|| DEFAULT_SELECTOR.to_owned());
        selector::calico(&selector).map_err(|e| bad(format!("`selector` `{selector}` {e}")))?;
        let name = match raw.name {
            Some(n) => {
                selector::dns_subdomain(&n).map_err(|e| bad(format!("`name` `{n}` {e}")))?;
                n
            }
            None => selector::object_name("rangekeeper-", t),
        };
        selector::dns_subdomain(&name)
            .map_err(|e| bad(format!("the policy name `{name}` {e}; set `name:`")))?;
        if raw.pre_dnat && !raw.apply_on_forward {
            return Err(bad(
                "`preDNAT: true` needs `applyOnForward: true` (Calico refuses a pre-DNAT policy that does not apply to forwarded traffic)".into(),
            ));
        }
        let dest_nets = nets(&raw.destination.nets, "destination.nets").map_err(bad)?;
        let mut ports = Vec::new();
        for (i, p) in raw.destination.ports.iter().enumerate() {
            ports.push(port(p).map_err(|e| bad(format!("`destination.ports[{i}]`: {e}")))?);
        }
        let protocol = match (raw.destination.protocol, ports.is_empty()) {
            (Some(p), _) => Some(p),
            // Calico needs a protocol with ports; TCP is what API servers and node ports speak.
            (None, false) => Some(Proto::TCP),
            (None, true) => None,
        };
        let order = raw.order.unwrap_or(20.0);
        if !order.is_finite() {
            return Err(bad(format!("`order` {order} is not a number")));
        }
        let cluster_nets = match raw.companions {
            Some(c) => {
                if c.cluster_nets.is_empty() {
                    return Err(bad("`companions.clusterNets` is empty: list the pod CIDR and the nodes' network, whose traffic the companion policies keep flowing".into()));
                }
                Some(nets(&c.cluster_nets, "companions.clusterNets").map_err(bad)?)
            }
            None => None,
        };
        let host_endpoints = match raw.host_endpoints {
            Some(h) => {
                let labels: Vec<(String, String)> = if h.labels.is_empty() {
                    if selector != DEFAULT_SELECTOR {
                        return Err(bad(format!(
                            "`hostEndpoints.labels` is needed with a `selector` of your own (`{selector}`): give the labels the generated HostEndpoints carry so that the selector matches them"
                        )));
                    }
                    vec![("k8s-role".into(), "node".into())]
                } else {
                    h.labels.into_iter().collect()
                };
                for (k, v) in &labels {
                    selector::label_key(k)
                        .map_err(|e| bad(format!("`hostEndpoints.labels`: key `{k}` {e}")))?;
                    selector::label_value(v).map_err(|e| {
                        bad(format!("`hostEndpoints.labels`: value `{v}` of `{k}` {e}"))
                    })?;
                }
                let interface_name = h.interface_name.unwrap_or_else(|| "*".into());
                if interface_name.len() > 15 || interface_name.contains(['/', ' ']) {
                    return Err(bad(format!(
                        "`hostEndpoints.interfaceName` `{interface_name}` is not `*` or an interface name (at most 15 characters)"
                    )));
                }
                let node_selector = h.node_selector.unwrap_or_default();
                Some(HostEndpoints {
                    interface_name,
                    labels,
                    node_selector,
                })
            }
            None => None,
        };
        let connection = Connection::from_raw(
            t,
            RawConnection {
                kubeconfig: raw.kubeconfig,
                context: raw.context,
                in_cluster: raw.in_cluster,
                force: raw.force,
            },
            &cfg.base_dir,
        )?;
        Ok(Calico {
            target: t.clone(),
            group: raw.api_group,
            name,
            selector,
            dest_nets,
            ports,
            protocol,
            order,
            pre_dnat: raw.pre_dnat,
            apply_on_forward: raw.apply_on_forward,
            cluster_nets,
            host_endpoints,
            connection,
        })
    }

    /// Offline checks of a desired set: every address family of the sources needs a
    /// destination of that family when destinations are given.
    pub fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.dest_nets.is_empty() {
            return out;
        }
        for (fam, has_src, has_dst) in [
            (4, desired.v4_len() > 0, self.dest_nets.v4_len() > 0),
            (6, desired.v6_len() > 0, self.dest_nets.v6_len() > 0),
        ] {
            if has_src && !has_dst {
                out.push(Violation::new(format!(
                    "target `{}`: the set has IPv{fam} sources but `destination.nets` has no IPv{fam} net, so they could reach nothing; add the IPv{fam} cluster IPs or drop those sources",
                    self.target
                )));
            }
        }
        out
    }

    fn companion_names(&self) -> [String; 3] {
        [
            format!("{}-allow-cluster-internal", self.name),
            format!("{}-allow-host", self.name),
            format!("{}-allow-outbound", self.name),
        ]
    }

    /// A rule's destination for one address family (`None` when destinations are given but
    /// none is of that family).
    fn destination(&self, family: u8) -> Option<Value> {
        let mut d = serde_json::Map::new();
        if !self.dest_nets.is_empty() {
            let nets: Vec<String> = self
                .dest_nets
                .prefixes()
                .into_iter()
                .filter(|n| family_of(n) == family)
                .map(|n| n.to_string())
                .collect();
            if nets.is_empty() {
                return None;
            }
            d.insert("nets".into(), json!(nets));
        }
        if !self.ports.is_empty() {
            d.insert(
                "ports".into(),
                Value::Array(self.ports.iter().map(Port::json).collect()),
            );
        }
        Some(Value::Object(d))
    }

    fn rule(&self, action: &str, family: u8, source: Option<Value>, dest: &Value) -> Value {
        let mut r = json!({"action": action, "ipVersion": family});
        if let Some(p) = self.protocol {
            r["protocol"] = json!(p);
        }
        if let Some(s) = source {
            r["source"] = s;
        }
        if dest.as_object().is_some_and(|m| !m.is_empty()) {
            r["destination"] = dest.clone();
        }
        r
    }

    /// The objects that hold `ranges`, in apply order: HostEndpoints (from `nodes`, the
    /// Node objects), companions, then the policy itself.
    pub fn render(&self, ranges: &RangeSet, nodes: &[Value]) -> Result<Vec<Obj>, ProviderError> {
        let mut ingress = Vec::new();
        for family in [4u8, 6] {
            let Some(dest) = self.destination(family) else {
                continue;
            };
            let fam_set = family_set(ranges, family);
            let blocks = ipblock::blocks(&fam_set);
            let plain: Vec<String> = blocks
                .iter()
                .filter(|b| b.except.is_empty())
                .map(|b| b.cidr.to_string())
                .collect();
            if !plain.is_empty() {
                ingress.push(self.rule("Allow", family, Some(json!({"nets": plain})), &dest));
            }
            for b in blocks.iter().filter(|b| !b.except.is_empty()) {
                let except: Vec<String> = b.except.iter().map(ToString::to_string).collect();
                ingress.push(self.rule(
                    "Allow",
                    family,
                    Some(json!({"nets": [b.cidr.to_string()], "notNets": except})),
                    &dest,
                ));
            }
            // Pre-DNAT policies have no default drop: deny the rest explicitly, for the
            // restricted destinations only.
            ingress.push(self.rule("Deny", family, None, &dest));
        }
        let mut spec = json!({
            "tier": "default",
            "order": number(self.order),
            "selector": self.selector,
            "types": ["Ingress"],
            "ingress": ingress,
        });
        if self.pre_dnat {
            spec["preDNAT"] = json!(true);
        }
        if self.apply_on_forward {
            spec["applyOnForward"] = json!(true);
        }
        let gnp = self.group.policies();
        let mut out = Vec::new();
        if let Some(h) = &self.host_endpoints {
            for node in nodes {
                out.push(self.host_endpoint(h, node)?);
            }
        }
        if let Some(cluster) = &self.cluster_nets {
            let [internal, host, outbound] = self.companion_names();
            let mut allow_internal = Vec::new();
            for family in [4u8, 6] {
                let nets: Vec<String> = family_set(cluster, family)
                    .prefixes()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                if !nets.is_empty() {
                    allow_internal.push(
                        json!({"action": "Allow", "ipVersion": family, "source": {"nets": nets}}),
                    );
                }
            }
            out.push(Obj::new(
                gnp.clone(),
                None,
                &internal,
                &self.target,
                &[],
                json!({
                    "tier": "default",
                    "order": number(self.order - 1.0),
                    "selector": self.selector,
                    "preDNAT": true,
                    "applyOnForward": true,
                    "types": ["Ingress"],
                    "ingress": allow_internal,
                }),
            ));
            out.push(Obj::new(
                gnp.clone(),
                None,
                &host,
                &self.target,
                &[],
                json!({
                    "tier": "default",
                    "order": number(self.order + 10.0),
                    "selector": self.selector,
                    "applyOnForward": true,
                    "types": ["Ingress"],
                    "ingress": [{"action": "Allow"}],
                }),
            ));
            out.push(Obj::new(
                gnp.clone(),
                None,
                &outbound,
                &self.target,
                &[],
                json!({
                    "tier": "default",
                    "order": number(self.order - 1.0),
                    "selector": self.selector,
                    "types": ["Egress"],
                    "egress": [{"action": "Allow"}],
                }),
            ));
        }
        out.push(Obj::new(gnp, None, &self.name, &self.target, &[], spec));
        Ok(out)
    }

    fn host_endpoint(&self, h: &HostEndpoints, node: &Value) -> Result<Obj, ProviderError> {
        let node_name = node["metadata"]["name"].as_str().unwrap_or_default();
        let name = format!("{}-{node_name}", self.name);
        selector::dns_subdomain(&name).map_err(|e| {
            ProviderError::Config(format!(
                "target `{}`: the HostEndpoint name `{name}` for node `{node_name}` {e}; set a shorter `name:`",
                self.target
            ))
        })?;
        let mut ips: Vec<String> = node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| matches!(a["type"].as_str(), Some("InternalIP" | "ExternalIP")))
            .filter_map(|a| a["address"].as_str().map(str::to_owned))
            .collect();
        ips.sort();
        ips.dedup();
        let mut spec = json!({"node": node_name, "interfaceName": h.interface_name});
        if !ips.is_empty() {
            spec["expectedIPs"] = json!(ips);
        } else if h.interface_name.is_empty() {
            return Err(ProviderError::Config(format!(
                "target `{}`: node `{node_name}` reports no InternalIP or ExternalIP, so a HostEndpoint without `interfaceName` cannot find its interface; set `hostEndpoints.interfaceName`",
                self.target
            )));
        }
        Ok(Obj::new(
            self.group.host_endpoints(),
            None,
            &name,
            &self.target,
            &h.labels,
            spec,
        ))
    }

    /// Every address a node reports (InternalIP, ExternalIP).
    pub fn node_addresses(nodes: &[Value]) -> Vec<(String, std::net::IpAddr)> {
        let mut out = Vec::new();
        for n in nodes {
            let name = n["metadata"]["name"].as_str().unwrap_or_default();
            for a in n["status"]["addresses"].as_array().into_iter().flatten() {
                if matches!(a["type"].as_str(), Some("InternalIP" | "ExternalIP"))
                    && let Some(ip) = a["address"].as_str().and_then(|s| s.parse().ok())
                {
                    out.push((name.to_owned(), ip));
                }
            }
        }
        out
    }

    /// The restricted ports of `protocol` (lowercase), or `None` when every port is.
    fn restricts(&self, proto: &str, port: u16) -> bool {
        match self.protocol {
            // No protocol and no ports: every port of every protocol.
            None => true,
            Some(p) if p.lower() == proto => {
                self.ports.is_empty() || self.ports.iter().any(|x| x.covers(port))
            }
            Some(_) => false,
        }
    }

    /// The Calico lock-outs and no-ops found before applying (warnings: refused only for a
    /// strict target). `felix` is the FelixConfiguration `default` (`None`: none, so Felix's
    /// defaults hold; `Err`: it could not be read), `nodes` the Node objects (`Err`: could not
    /// be listed).
    pub fn lockout_checks(
        &self,
        desired: &RangeSet,
        felix: Result<Option<&Value>, &str>,
        nodes: Result<&[Value], &str>,
    ) -> Vec<Violation> {
        let t = &self.target;
        let mut out = Vec::new();
        // 1. Failsafe ports: Felix always lets them through, so restricting one does nothing.
        let (failsafe, from): (Vec<(String, u16)>, String) = match felix {
            Ok(Some(f)) if f["spec"]["failsafeInboundHostPorts"].is_array() => (
                f["spec"]["failsafeInboundHostPorts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let port = u16::try_from(p["port"].as_u64()?).ok()?;
                        let proto = p["protocol"].as_str().unwrap_or("tcp").to_ascii_lowercase();
                        Some((proto, port))
                    })
                    .collect(),
                "as set in FelixConfiguration `default`".to_owned(),
            ),
            Ok(f) => (
                DEFAULT_FAILSAFE
                    .iter()
                    .map(|(p, n)| ((*p).to_owned(), *n))
                    .collect(),
                if f.is_some() {
                    "Felix's defaults: FelixConfiguration `default` does not set `failsafeInboundHostPorts`"
                } else {
                    "Felix's defaults: there is no FelixConfiguration `default`"
                }
                .to_owned(),
            ),
            Err(e) => (
                DEFAULT_FAILSAFE
                    .iter()
                    .map(|(p, n)| ((*p).to_owned(), *n))
                    .collect(),
                format!("Felix's defaults, assumed: FelixConfiguration `default` could not be read: {e}"),
            ),
        };
        let hit: Vec<String> = failsafe
            .iter()
            .filter(|(proto, port)| self.restricts(proto, *port))
            .map(|(proto, port)| format!("{port}/{proto}"))
            .collect();
        if !hit.is_empty() {
            let keep: Vec<Value> = failsafe
                .iter()
                .filter(|(proto, port)| !self.restricts(proto, *port))
                .map(|(proto, port)| json!({"protocol": proto, "port": port}))
                .collect();
            out.push(Violation::warn(format!(
                "target `{t}`: {} {} Felix failsafe inbound host port{} ({from}): Calico always lets {} through, so this policy does not restrict {}. To restrict {}, take {} out of the failsafe ports: kubectl patch felixconfiguration default --type merge -p '{{\"spec\":{{\"failsafeInboundHostPorts\":{}}}}}' (first make sure you keep another way in to the nodes)",
                hit.join(", "),
                if hit.len() == 1 { "is a" } else { "are" },
                if hit.len() == 1 { "" } else { "s" },
                if hit.len() == 1 { "it" } else { "them" },
                if hit.len() == 1 { "it" } else { "them" },
                if hit.len() == 1 { "it" } else { "them" },
                if hit.len() == 1 { "it" } else { "them" },
                Value::Array(keep),
            )));
        }
        // 2. A pre-DNAT restriction of kubelet's port that leaves out the nodes: the API
        //    server stops reaching kubelets (kubectl logs/exec/port-forward break).
        if self.pre_dnat && self.restricts("tcp", KUBELET_PORT) {
            match nodes {
                Ok(nodes) => {
                    let addrs = Self::node_addresses(nodes);
                    // Does the policy restrict kubelet on some node at all?
                    let on_nodes = self.dest_nets.is_empty()
                        || addrs.iter().any(|(_, ip)| self.dest_nets.contains_addr(*ip));
                    let allowed = match &self.cluster_nets {
                        Some(c) => desired.union(c),
                        None => desired.clone(),
                    };
                    let mut cut: Vec<String> = addrs
                        .iter()
                        .filter(|(_, ip)| !allowed.contains_addr(*ip))
                        .map(|(n, ip)| format!("{ip} ({n})"))
                        .collect();
                    cut.dedup();
                    if on_nodes && !cut.is_empty() {
                        out.push(Violation::warn(format!(
                            "target `{t}`: the pre-DNAT policy restricts kubelet's port {KUBELET_PORT}/tcp on the nodes, and these node addresses are not allowed: {}; the API server reaches kubelets from them (kubectl logs/exec/port-forward would break). Allow the nodes' network (`companions.clusterNets`), or list `destination.ports` without {KUBELET_PORT}",
                            cut.join(", ")
                        )));
                    }
                }
                Err(e) => out.push(Violation::warn(format!(
                    "target `{t}`: the policy restricts kubelet's port {KUBELET_PORT}/tcp, and the nodes could not be listed to check that the API server keeps reaching kubelets: {e}"
                ))),
            }
        }
        // 3. A policy on every endpoint: with automatic host endpoints this has cut clusters
        //    off their API server.
        if selector::calico_selects_all(&self.selector) {
            out.push(Violation::warn(format!(
                "target `{t}`: `selector: all()` puts the policy on every host endpoint, including Calico's automatic host endpoints of control-plane nodes; such a selector-less policy has made API servers unreachable. Select the nodes meant (the default `{DEFAULT_SELECTOR}` with `hostEndpoints`)"
            )));
        }
        out
    }

    /// The names this target's objects have, besides HostEndpoints.
    pub fn policy_names(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        if self.cluster_nets.is_some() {
            names.extend(self.companion_names());
        }
        names
    }
}

fn family_of(n: &IpNet) -> u8 {
    match n {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

fn family_set(set: &RangeSet, family: u8) -> RangeSet {
    RangeSet::from_nets(
        set.prefixes()
            .into_iter()
            .filter(|n| family_of(n) == family),
    )
}

/// The declared sources a live policy's Allow rules hold (`nets` minus `notNets`).
pub fn ranges_of(policy: &Value) -> Result<RangeSet, String> {
    let mut blocks = Vec::new();
    for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
        if rule["action"].as_str() != Some("Allow") {
            continue;
        }
        let src = &rule["source"];
        let mut except = Vec::new();
        for e in src["notNets"].as_array().into_iter().flatten() {
            except.push(parse_net(e)?);
        }
        for n in src["nets"].as_array().into_iter().flatten() {
            blocks.push(Block {
                cidr: parse_net(n)?,
                except: except.clone(),
            });
        }
    }
    Ok(ipblock::set_of(&blocks))
}

fn parse_net(v: &Value) -> Result<IpNet, String> {
    let s = v.as_str().unwrap_or_default();
    rangekeeper_provider::cidr::parse(s)
        .map(|p| p.net.trunc())
        .map_err(|e| format!("the live net `{s}` does not parse: {e}"))
}

fn nets(items: &[String], field: &str) -> Result<RangeSet, String> {
    let mut out = Vec::new();
    for s in items {
        let p =
            rangekeeper_provider::cidr::parse(s).map_err(|e| format!("`{field}`: `{s}` {e}"))?;
        out.push(p.net.trunc());
    }
    Ok(RangeSet::from_nets(out))
}

fn port(p: &RawPort) -> Result<Port, String> {
    let num = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("`{s}` is not a port between 1 and 65535"))
    };
    match p {
        RawPort::Number(n) => {
            let n = u16::try_from(*n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{n} is not a port between 1 and 65535"))?;
            Ok(Port::Range(n, n))
        }
        RawPort::Text(s) => {
            if let Some((a, b)) = s.split_once(':') {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(format!("the range `{s}` ends below its start"));
                }
                Ok(Port::Range(a, b))
            } else if s.chars().all(|c| c.is_ascii_digit()) {
                let n = num(s)?;
                Ok(Port::Range(n, n))
            } else if !s.is_empty()
                && s.len() <= 15
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                Ok(Port::Named(s.clone()))
            } else {
                Err(format!(
                    "`{s}` is not a port, a range `from:to` or a port name"
                ))
            }
        }
    }
}
