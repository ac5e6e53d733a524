//! The `netpol` provider: a Kubernetes NetworkPolicy (networking.k8s.io/v1) whose ingress
//! `ipBlock` peers are the declared set, for the pods a selector picks in one namespace.

use rangekeeper_provider::{ProviderError, RangeSet, TargetConfig};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::connection::{Connection, RawConnection};
use crate::ipblock::{self, Block};
use crate::kube::Resource;
use crate::objects::Obj;
use crate::selector::{self, LabelSelector};

pub const NAME: &str = "netpol";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    namespace: String,
    pod_selector: LabelSelector,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    default_deny: bool,
    #[serde(default)]
    allow_in_cluster: Vec<Peer>,
    // The connection (the same keys on every Kubernetes provider).
    #[serde(default)]
    kubeconfig: Option<std::path::PathBuf>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    in_cluster: bool,
    #[serde(default)]
    force: bool,
}

/// A port as written: `443`, `https` (a named port), or `{port, protocol, endPort}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPort {
    Number(u32),
    Named(String),
    Full(FullPort),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FullPort {
    port: PortValue,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    end_port: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(u32),
    Named(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
    SCTP,
}

/// An in-cluster peer that keeps reaching the selected pods.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Peer {
    #[serde(default)]
    namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pod_selector: Option<LabelSelector>,
}

/// A validated `netpol` target.
#[derive(Debug, Clone)]
pub struct Netpol {
    pub target: String,
    pub namespace: String,
    pub name: String,
    pod_selector: Value,
    ports: Vec<Value>,
    pub default_deny: bool,
    peers: Vec<Value>,
    pub connection: Connection,
}

pub fn resource() -> Resource {
    Resource {
        group: "networking.k8s.io".into(),
        version: "v1".into(),
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        namespaced: true,
    }
}

impl Netpol {
    pub fn from_config(cfg: &TargetConfig) -> Result<Netpol, ProviderError> {
        let raw: Raw = cfg.parse()?;
        let t = &cfg.name;
        let bad = |m: String| ProviderError::Config(format!("target `{t}`: {m}"));
        selector::dns_label(&raw.namespace)
            .map_err(|e| bad(format!("`namespace` `{}` {e}", raw.namespace)))?;
        raw.pod_selector.validate("podSelector").map_err(bad)?;
        let name = match raw.name {
            Some(n) => {
                selector::dns_subdomain(&n).map_err(|e| bad(format!("`name` `{n}` {e}")))?;
                n
            }
            None => {
                let n = selector::object_name("rangekeeper-", t);
                selector::dns_subdomain(&n).map_err(|e| {
                    bad(format!(
                        "the policy name `{n}` made from the target's name {e}; set `name:`"
                    ))
                })?;
                n
            }
        };
        if raw.default_deny && name.len() > 253 - "-default-deny".len() {
            return Err(bad(format!(
                "`name` `{name}` is too long to add `-default-deny` for the default-deny policy; set a shorter `name:`"
            )));
        }
        let mut ports = Vec::new();
        for (i, p) in raw.ports.iter().enumerate() {
            ports.push(port(p).map_err(|e| bad(format!("`ports[{i}]`: {e}")))?);
        }
        let mut peers = Vec::new();
        for (i, p) in raw.allow_in_cluster.iter().enumerate() {
            let at = format!("allowInCluster[{i}]");
            if p.namespace_selector.is_none() && p.pod_selector.is_none() {
                return Err(bad(format!(
                    "`{at}` needs `namespaceSelector`, `podSelector` or both (`namespaceSelector: {{}}` is every namespace)"
                )));
            }
            let mut peer = serde_json::Map::new();
            if let Some(s) = &p.namespace_selector {
                s.validate(&format!("{at}.namespaceSelector"))
                    .map_err(bad)?;
                peer.insert("namespaceSelector".into(), s.to_json());
            }
            if let Some(s) = &p.pod_selector {
                s.validate(&format!("{at}.podSelector")).map_err(bad)?;
                peer.insert("podSelector".into(), s.to_json());
            }
            peers.push(Value::Object(peer));
        }
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
        Ok(Netpol {
            target: t.clone(),
            namespace: raw.namespace,
            name,
            pod_selector: raw.pod_selector.to_json(),
            ports,
            default_deny: raw.default_deny,
            peers,
            connection,
        })
    }

    pub fn deny_name(&self) -> String {
        format!("{}-default-deny", self.name)
    }

    /// The policies that hold `ranges`, in the order they are applied: the allow policy,
    /// then the default-deny one when asked for.
    pub fn render(&self, ranges: &RangeSet) -> Vec<Obj> {
        let from: Vec<Value> = ipblock::blocks(ranges).iter().map(block_json).collect();
        let mut rule = json!({"from": from});
        if !self.ports.is_empty() {
            rule["ports"] = Value::Array(self.ports.clone());
        }
        let mut ingress = vec![rule];
        if !self.peers.is_empty() {
            ingress.push(json!({"from": self.peers}));
        }
        let ns = Some(self.namespace.as_str());
        let mut out = vec![Obj::new(
            resource(),
            ns,
            &self.name,
            &self.target,
            &[],
            json!({
                "podSelector": self.pod_selector,
                "policyTypes": ["Ingress"],
                "ingress": ingress,
            }),
        )];
        if self.default_deny {
            out.push(Obj::new(
                resource(),
                ns,
                &self.deny_name(),
                &self.target,
                &[],
                json!({"podSelector": self.pod_selector, "policyTypes": ["Ingress"]}),
            ));
        }
        out
    }
}

fn block_json(b: &Block) -> Value {
    let mut ip = json!({"cidr": b.cidr.to_string()});
    if !b.except.is_empty() {
        ip["except"] = b.except.iter().map(ToString::to_string).collect();
    }
    json!({"ipBlock": ip})
}

/// The set the `ipBlock` peers of a live policy's ingress rules hold.
pub fn ranges_of(policy: &Value) -> Result<RangeSet, String> {
    let mut blocks = Vec::new();
    for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
        for peer in rule["from"].as_array().into_iter().flatten() {
            let ip = &peer["ipBlock"];
            if ip.is_null() {
                continue;
            }
            let cidr = net(&ip["cidr"])?;
            let mut except = Vec::new();
            for e in ip["except"].as_array().into_iter().flatten() {
                except.push(net(e)?);
            }
            blocks.push(Block { cidr, except });
        }
    }
    Ok(ipblock::set_of(&blocks))
}

fn net(v: &Value) -> Result<rangekeeper_provider::cidr::IpNet, String> {
    let s = v.as_str().unwrap_or_default();
    rangekeeper_provider::cidr::parse(s)
        .map(|p| p.net.trunc())
        .map_err(|e| format!("the live ipBlock `{s}` does not parse: {e}"))
}

fn port(p: &RawPort) -> Result<Value, String> {
    let check = |n: u32| {
        if (1..=65535).contains(&n) {
            Ok(n)
        } else {
            Err(format!("port {n} is not between 1 and 65535"))
        }
    };
    let named = |s: &str| {
        if s.is_empty()
            || s.len() > 15
            || !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || !s.chars().any(|c| c.is_ascii_lowercase())
        {
            Err(format!(
                "`{s}` is not a port number or a port name (at most 15 lowercase letters, digits and `-`)"
            ))
        } else {
            Ok(())
        }
    };
    Ok(match p {
        RawPort::Number(n) => json!({"protocol": "TCP", "port": check(*n)?}),
        RawPort::Named(s) => {
            if let Ok(n) = s.parse::<u32>() {
                json!({"protocol": "TCP", "port": check(n)?})
            } else {
                named(s)?;
                json!({"protocol": "TCP", "port": s})
            }
        }
        RawPort::Full(f) => {
            let mut v = json!({"protocol": f.protocol});
            match &f.port {
                PortValue::Number(n) => v["port"] = json!(check(*n)?),
                PortValue::Named(s) => {
                    if f.end_port.is_some() {
                        return Err("`endPort` needs a numeric `port`, not a port name".into());
                    }
                    named(s)?;
                    v["port"] = json!(s);
                }
            }
            if let Some(e) = f.end_port {
                let start = v["port"].as_u64().unwrap_or_default();
                if u64::from(check(e)?) < start {
                    return Err(format!("`endPort` {e} is below `port` {start}"));
                }
                v["endPort"] = json!(e);
            }
            v
        }
    })
}
