//! Kubernetes in-cluster controls as rangekeeper targets: the `netpol` provider (a
//! NetworkPolicy whose `ipBlock` peers are the declared set) and the `calico` provider (a
//! Calico GlobalNetworkPolicy on host endpoints, pre-DNAT, with optional companion policies
//! and per-node HostEndpoints).
//!
//! Every write is a server-side apply with field manager `rangekeeper`; every object carries
//! the label `app.kubernetes.io/managed-by: rangekeeper` and the annotation
//! `rangekeeper.dev/target` naming its target, and objects without them are never touched.
//! `current` reads the objects back and compares canonical sets; anything else that differs
//! from what the target declares (a hand edit, a deleted companion) is reported as drift,
//! which `apply` repairs. A field another *applier* owns (Argo CD, Flux, `kubectl apply
//! --server-side`) is a conflict that refuses the change unless the target says `force:
//! true`; fields changed by hand (`kubectl edit`, an update rather than an apply) are drift
//! and are taken back. One attempt per call; errors are typed.
//!
//! Both providers store leases (temporary grants of one address, [`leases`]) as annotations
//! on the object that holds the ranges, written in the same server-side apply as the ranges
//! with that object's `metadata.resourceVersion`: the API server refuses the write with 409
//! Conflict when the object changed since it was read, and the binary plans again.

pub mod calico;
pub mod connection;
pub mod ipblock;
pub mod kube;
pub mod leases;
pub mod netpol;
pub mod objects;
pub mod selector;

use std::collections::BTreeMap;

use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Lease, Provider, ProviderError, RangeSet, Restriction,
    State, TargetConfig, UnrestrictedForm, Violation, refuse_empty,
};
use serde_json::Value;

use crate::calico::Calico;
use crate::kube::{Cluster, MANAGED_BY, MANAGED_BY_VALUE, Resource, TARGET_ANNOTATION};
use crate::netpol::Netpol;
use crate::objects::Obj;

/// The capabilities of the `netpol` provider.
pub fn netpol_capabilities() -> Capabilities {
    Capabilities::new(
        netpol::NAME,
        "Kubernetes NetworkPolicy: ingress ipBlock peers for the selected pods (server-side apply)",
    )
    .with_ipv6(true)
    .with_ipv6_depends_on_target(true)
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::Removed)
    .with_stores_metadata(true)
    .with_leases(true)
}

/// The capabilities of the `calico` provider.
pub fn calico_capabilities() -> Capabilities {
    Capabilities::new(
        calico::NAME,
        "Calico GlobalNetworkPolicy on host endpoints, pre-DNAT: who reaches cluster IPs and node ports",
    )
    .with_ipv6(true)
    .with_ipv6_depends_on_target(true)
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::Removed)
    .with_stores_metadata(true)
    .with_leases(true)
}

/// Build a `netpol` provider for one target (no network call, no file read).
pub fn netpol_factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let np = Netpol::from_config(cfg)?;
    let cluster = Cluster::new(&cfg.name, np.connection.source.clone());
    Ok(Box::new(KubeProvider::new(
        Kind::Netpol(Box::new(np)),
        cluster,
    )))
}

/// Build a `calico` provider for one target (no network call, no file read).
pub fn calico_factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let c = Calico::from_config(cfg)?;
    let cluster = Cluster::new(&cfg.name, c.connection.source.clone());
    Ok(Box::new(KubeProvider::new(
        Kind::Calico(Box::new(c)),
        cluster,
    )))
}

/// The [`State::version`] of a target whose object that holds the ranges does not exist.
///
/// The version of a target is the `metadata.resourceVersion` of that one object (the
/// NetworkPolicy of `netpol`, the GlobalNetworkPolicy named by `name:` of `calico`), not a
/// combination with the other objects a target keeps (a default-deny policy, companion
/// policies, HostEndpoints): only that object holds ranges and leases, which is what two
/// writers can disagree on, while the others are made from the declaration and the nodes
/// alone, so concurrent writers write the same thing there. A version over several objects
/// could not be checked in one write anyway: the API server compares one object's
/// resourceVersion per request. Drift in the other objects is found by `current` and
/// repaired by every apply.
pub const ABSENT: &str = "absent";

/// What a target keeps in the cluster.
#[derive(Debug, Clone)]
pub enum Kind {
    Netpol(Box<Netpol>),
    Calico(Box<Calico>),
}

/// A `netpol` or `calico` target bound to its cluster.
pub struct KubeProvider {
    kind: Kind,
    cluster: Cluster,
}

/// An object of this target found in the cluster.
struct Live {
    res: Resource,
    namespace: Option<String>,
    name: String,
    body: Value,
}

impl Live {
    fn uid(&self) -> &str {
        self.body["metadata"]["uid"].as_str().unwrap_or_default()
    }

    fn describe(&self) -> String {
        self.res.describe(self.namespace.as_deref(), &self.name)
    }

    fn is(&self, o: &Obj) -> bool {
        self.res == o.res && self.namespace == o.namespace && self.name == o.name
    }
}

impl KubeProvider {
    pub fn new(kind: Kind, cluster: Cluster) -> Self {
        KubeProvider { kind, cluster }
    }

    fn target(&self) -> &str {
        self.cluster.target()
    }

    fn force(&self) -> bool {
        match &self.kind {
            Kind::Netpol(n) => n.connection.force,
            Kind::Calico(c) => c.connection.force,
        }
    }

    /// The object that holds the ranges.
    fn primary(&self) -> (Resource, Option<String>, String) {
        match &self.kind {
            Kind::Netpol(n) => (
                netpol::resource(),
                Some(n.namespace.clone()),
                n.name.clone(),
            ),
            Kind::Calico(c) => (c.group.policies(), None, c.name.clone()),
        }
    }

    /// The types (and namespace) where this target's objects can be.
    fn owned_types(&self) -> Vec<(Resource, Option<String>)> {
        match &self.kind {
            Kind::Netpol(n) => vec![(netpol::resource(), Some(n.namespace.clone()))],
            Kind::Calico(c) => vec![(c.group.host_endpoints(), None), (c.group.policies(), None)],
        }
    }

    /// The Node objects HostEndpoints are made for (none when the target makes none).
    async fn nodes(&self) -> Result<Vec<Value>, ProviderError> {
        match &self.kind {
            Kind::Calico(c) => match &c.host_endpoints {
                Some(h) => {
                    let mut nodes = self
                        .cluster
                        .list(&calico::nodes(), None, &h.node_selector)
                        .await?;
                    nodes.sort_by(|a, b| {
                        a["metadata"]["name"]
                            .as_str()
                            .cmp(&b["metadata"]["name"].as_str())
                    });
                    Ok(nodes)
                }
                None => Ok(Vec::new()),
            },
            Kind::Netpol(_) => Ok(Vec::new()),
        }
    }

    /// The objects that make the target hold `ranges`, in apply order.
    async fn render(&self, ranges: &RangeSet) -> Result<Vec<Obj>, ProviderError> {
        match &self.kind {
            Kind::Netpol(n) => Ok(n.render(ranges)),
            Kind::Calico(c) => {
                let nodes = self.nodes().await?;
                c.render(ranges, &nodes)
            }
        }
    }

    fn ranges_of(&self, live: &Value) -> Result<RangeSet, ProviderError> {
        match &self.kind {
            Kind::Netpol(_) => netpol::ranges_of(live),
            Kind::Calico(_) => calico::ranges_of(live),
        }
        .map_err(|e| ProviderError::Other(format!("target `{}`: {e}", self.target())))
    }

    /// This target's objects in the cluster (by label and annotation).
    async fn owned(&self) -> Result<Vec<Live>, ProviderError> {
        let mut out = Vec::new();
        let selector = format!("{MANAGED_BY}={MANAGED_BY_VALUE}");
        for (res, ns) in self.owned_types() {
            for body in self.cluster.list(&res, ns.as_deref(), &selector).await? {
                let (_, target) = kube::ownership(&body);
                if target.as_deref() != Some(self.target()) {
                    continue;
                }
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                out.push(Live {
                    res: res.clone(),
                    namespace: ns.clone(),
                    name,
                    body,
                });
            }
        }
        Ok(out)
    }

    /// Refuse an object of the same name that rangekeeper does not manage for this target.
    fn ours(&self, what: &str, body: &Value) -> Result<(), ProviderError> {
        let t = self.target();
        match kube::ownership(body) {
            (true, Some(owner)) if owner == t => Ok(()),
            (true, Some(owner)) => Err(ProviderError::Config(format!(
                "target `{t}`: {what} belongs to target `{owner}` (annotation `{TARGET_ANNOTATION}`); give one of the targets another `name:`"
            ))),
            _ => Err(ProviderError::Config(format!(
                "target `{t}`: {what} exists and is not managed by rangekeeper (no label `{MANAGED_BY}: {MANAGED_BY_VALUE}` and annotation `{TARGET_ANNOTATION}: {t}`); rangekeeper never touches it. Set `name:` on the target to another name, or delete that object if it is a leftover"
            ))),
        }
    }

    /// The live objects of `rendered` (each checked to be ours), in the same order.
    async fn live_of(&self, rendered: &[Obj]) -> Result<Vec<Option<Value>>, ProviderError> {
        let mut out = Vec::new();
        for o in rendered {
            let live = self.cluster.get(&o.res, o.ns(), &o.name).await?;
            if let Some(l) = &live {
                self.ours(&o.describe(), l)?;
            }
            out.push(live);
        }
        Ok(out)
    }

    /// Apply one object; a conflict with fields changed by hand is drift and is taken back,
    /// a conflict with another applier refuses unless `force`.
    async fn apply_one(
        &self,
        o: &Obj,
        live: Option<&Value>,
        dry_run: bool,
    ) -> Result<Value, ProviderError> {
        let force = self.force();
        match self
            .cluster
            .apply(&o.res, o.ns(), &o.name, &o.body, force, dry_run)
            .await?
        {
            kube::Applied::Object(v) => Ok(v),
            kube::Applied::Conflicts(c) => {
                let managers = live.map(kube::managers).unwrap_or_default();
                let appliers: Vec<String> = c
                    .managers()
                    .into_iter()
                    .filter(|m| {
                        managers.iter().any(|(name, op)| name == m && op == "Apply")
                            || !managers.iter().any(|(name, _)| name == m)
                    })
                    .collect();
                if appliers.is_empty() {
                    // Hand edits (updates): drift, taken back.
                    match self
                        .cluster
                        .apply(&o.res, o.ns(), &o.name, &o.body, true, dry_run)
                        .await?
                    {
                        kube::Applied::Object(v) => Ok(v),
                        kube::Applied::Conflicts(c) => Err(self.conflict(o, &c)),
                    }
                } else {
                    Err(self.conflict(o, &c))
                }
            }
        }
    }

    /// The leases an object's annotations hold (`what` names it in errors).
    fn leases_of(&self, what: &str, obj: &Value) -> Result<Vec<Lease>, ProviderError> {
        leases::leases_of(obj).map_err(|e| {
            ProviderError::Other(format!(
                "target `{}`: {what}: {e}; fix or remove the annotation",
                self.target()
            ))
        })
    }

    /// Make the target hold `desired` and exactly the lease records `leases` (as annotations
    /// of the object that holds the ranges, in the same server-side apply), only while that
    /// object is at `version` (`None`: at what this call reads). Nothing is sent for objects
    /// that already hold it all.
    async fn write(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
    ) -> Result<Applied, ProviderError> {
        refuse_empty(
            desired,
            "an allow policy without ipBlock peers admits no external source",
        )?;
        let t = self.target();
        rangekeeper_provider::lease::refuse_unheld(desired, leases).map_err(|e| match e {
            ProviderError::Invalid(m) => ProviderError::Invalid(format!("target `{t}`: {m}")),
            other => other,
        })?;
        let wanted = leases::annotations(leases)
            .map_err(|e| ProviderError::Invalid(format!("target `{t}`: {e}")))?;
        let mut rendered = self.render(desired).await?;
        // Every object is checked to be ours before anything is written.
        let live = self.live_of(&rendered).await?;
        let (res, ns, name) = self.primary();
        let Some(pi) = rendered
            .iter()
            .position(|o| o.res == res && o.namespace == ns && o.name == name)
        else {
            return Err(ProviderError::Other(format!(
                "target `{t}`: {} is not among the objects rendered",
                res.describe(ns.as_deref(), &name)
            )));
        };
        let what = rendered[pi].describe();
        let live_rv = live[pi]
            .as_ref()
            .and_then(|l| l["metadata"]["resourceVersion"].as_str());
        match (version, live_rv) {
            (Some(ABSENT), Some(now)) => {
                return Err(ProviderError::Conflict(format!(
                    "target `{t}`: {what} was created by someone else since it was read (resourceVersion {now})"
                )));
            }
            (Some(v), None) if v != ABSENT => {
                return Err(ProviderError::Conflict(format!(
                    "target `{t}`: {what} was deleted since it was read at resourceVersion {v}"
                )));
            }
            (Some(v), Some(now)) if v != now => {
                return Err(ProviderError::Conflict(format!(
                    "target `{t}`: {what} changed since it was read (resourceVersion {v} is now {now})"
                )));
            }
            _ => {}
        }
        leases::set(&mut rendered[pi].body, &wanted, live[pi].as_ref(), &what)
            .map_err(|e| ProviderError::Invalid(format!("target `{t}`: {e}")))?;
        if let Some(rv) = live_rv {
            // The compare-and-swap: the API server refuses the apply with 409 Conflict when
            // the object is no longer at this resourceVersion. (An object that does not exist
            // is created by the apply whatever resourceVersion it carries; a creation that
            // races another one is the one unguarded case, and it holds no leases yet: grant
            // refuses an unrestricted target.)
            rendered[pi].body["metadata"]["resourceVersion"] = Value::String(rv.to_owned());
        }
        let owned = self.owned().await?;
        let stale: Vec<&Live> = owned
            .iter()
            .filter(|l| !rendered.iter().any(|o| l.is(o)))
            .collect();
        let mut written = Vec::new();
        for (i, (o, l)) in rendered.iter().zip(&live).enumerate() {
            let leases_held = i != pi || l.as_ref().is_some_and(|l| leases::held(l) == wanted);
            if leases_held && l.as_ref().is_some_and(|l| o.differs(l).is_none()) {
                continue;
            }
            let back = self.apply_one(o, l.as_ref(), false).await?;
            if i == pi {
                self.no_foreign_leases(o, &back, &wanted)?;
            }
            written.push(o.describe());
        }
        let mut removed = Vec::new();
        for l in stale {
            self.cluster
                .delete(&l.res, l.namespace.as_deref(), &l.name, l.uid())
                .await?;
            removed.push(l.describe());
        }
        if written.is_empty() && removed.is_empty() {
            return Ok(Applied::unchanged());
        }
        let mut applied = Applied::changed();
        if !written.is_empty() {
            applied = applied.with_note(format!("applied {}", written.join(", ")));
        }
        if !removed.is_empty() {
            applied = applied.with_note(format!("removed {}", removed.join(", ")));
        }
        Ok(applied)
    }

    /// After an apply: a lease annotation rangekeeper left out and the object still carries
    /// is also owned by another field manager (`kubectl annotate`), so the apply could not
    /// remove it; say which and how to remove it.
    fn no_foreign_leases(
        &self,
        o: &Obj,
        back: &Value,
        wanted: &BTreeMap<String, String>,
    ) -> Result<(), ProviderError> {
        let left: Vec<String> = leases::held(back)
            .into_keys()
            .filter(|k| !wanted.contains_key(k))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        let owners: Vec<String> = left
            .iter()
            .map(|k| {
                let by: Vec<String> = annotation_owners(back, k)
                    .into_iter()
                    .filter(|m| m != kube::FIELD_MANAGER)
                    .map(|m| format!("`{m}`"))
                    .collect();
                if by.is_empty() {
                    format!("`{k}`")
                } else {
                    format!("`{k}` (also owned by {})", by.join(", "))
                }
            })
            .collect();
        let ns = o.ns().map(|n| format!(" -n {n}")).unwrap_or_default();
        let keys: Vec<String> = left.iter().map(|k| format!("{k}-")).collect();
        Err(ProviderError::Invalid(format!(
            "target `{}`: {} keeps the lease annotation{} {} that another field manager wrote, so rangekeeper's apply cannot remove {}; remove {} by hand: kubectl annotate{ns} {}/{} {}",
            self.target(),
            o.describe(),
            if left.len() == 1 { "" } else { "s" },
            owners.join(", "),
            if left.len() == 1 { "it" } else { "them" },
            if left.len() == 1 { "it" } else { "them" },
            o.res.qualified(),
            o.name,
            keys.join(" ")
        )))
    }

    fn conflict(&self, o: &Obj, c: &kube::Conflicts) -> ProviderError {
        let fields: Vec<String> = c
            .fields
            .iter()
            .map(|(m, f)| format!("`{f}` (owned by `{m}`)"))
            .collect();
        let managers: Vec<String> = c.managers().iter().map(|m| format!("`{m}`")).collect();
        ProviderError::Invalid(format!(
            "target `{}`: {} has fields that field manager {} applies: {}; rangekeeper does not take them over. Stop {} managing them, or set `force: true` on the target to take them over",
            self.target(),
            o.describe(),
            managers.join(", "),
            fields.join(", "),
            if managers.len() == 1 { "it" } else { "them" },
        ))
    }
}

/// The field managers whose managed fields include annotation `key` of `obj`.
fn annotation_owners(obj: &Value, key: &str) -> Vec<String> {
    let field = format!("f:{key}");
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| !m["fieldsV1"]["f:metadata"]["f:annotations"][&field].is_null())
        .filter_map(|m| m["manager"].as_str().map(str::to_owned))
        .collect()
}

#[async_trait::async_trait]
impl Provider for KubeProvider {
    fn capabilities(&self) -> Capabilities {
        match &self.kind {
            Kind::Netpol(_) => netpol_capabilities(),
            Kind::Calico(_) => calico_capabilities(),
        }
    }

    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        match &self.kind {
            Kind::Netpol(_) => Vec::new(),
            Kind::Calico(c) => c.check(desired),
        }
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let (res, ns, name) = self.primary();
        let primary = self.cluster.get(&res, ns.as_deref(), &name).await?;
        let what = res.describe(ns.as_deref(), &name);
        if let Some(p) = &primary {
            self.ours(&what, p)?;
        }
        let owned = self.owned().await?;
        let Some(primary) = primary else {
            let mut state = State::new(Restriction::Unrestricted)
                .with_leases(Vec::new(), Some(ABSENT.to_owned()));
            for l in &owned {
                state = state.with_drift(format!("{} is left without {what}", l.describe()));
            }
            return Ok(state);
        };
        let ranges = self.ranges_of(&primary)?;
        let leases = self.leases_of(&what, &primary)?;
        let version = primary["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        let rendered = self.render(&ranges).await?;
        let mut state = State::new(Restriction::Ranges(ranges))
            .with_leases(leases, version)
            .with_detail("object", what)
            .with_detail("objects", rendered.len().to_string());
        for o in &rendered {
            let live = owned.iter().find(|l| l.is(o));
            match live {
                None => state = state.with_drift(format!("{} is missing", o.describe())),
                Some(l) => {
                    if let Some(path) = o.differs(&l.body) {
                        let editors: Vec<String> = kube::managers(&l.body)
                            .into_iter()
                            .filter(|(m, _)| m != kube::FIELD_MANAGER)
                            .map(|(m, _)| format!("`{m}`"))
                            .collect();
                        let by = if editors.is_empty() {
                            String::new()
                        } else {
                            format!(" (also written by {})", editors.join(", "))
                        };
                        state =
                            state.with_drift(format!("{} differs at `{path}`{by}", o.describe()));
                    }
                }
            }
        }
        for l in owned.iter().filter(|l| !rendered.iter().any(|o| l.is(o))) {
            state = state.with_drift(format!("{} is no longer declared", l.describe()));
        }
        Ok(state)
    }

    async fn preflight(
        &self,
        desired: &RangeSet,
        _current: &State,
    ) -> Result<Vec<Violation>, ProviderError> {
        let mut found = Vec::new();
        if let Kind::Calico(c) = &self.kind {
            let felix = self.cluster.get(&c.group.felix(), None, "default").await;
            let felix_ref = match &felix {
                Ok(f) => Ok(f.as_ref()),
                // No FelixConfiguration type served: Felix runs on its defaults.
                Err(ProviderError::Config(_)) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            let nodes = self.cluster.list(&calico::nodes(), None, "").await;
            let nodes_ref = match &nodes {
                Ok(n) => Ok(n.as_slice()),
                Err(e) => Err(e.to_string()),
            };
            found.extend(c.lockout_checks(
                desired,
                felix_ref.as_ref().map(|f| *f).map_err(String::as_str),
                nodes_ref.as_ref().map(|n| *n).map_err(String::as_str),
            ));
        }
        // The server judges every object as a dry run: a missing namespace or CRD, RBAC,
        // schema and validation, conflicts with other managers. Nothing is written.
        let refusal = |e: ProviderError| match e {
            ProviderError::Config(m) | ProviderError::Auth(m) | ProviderError::Invalid(m) => {
                Ok(Violation::new(m))
            }
            other => Err(other),
        };
        let rendered = match self.render(desired).await {
            Ok(r) => r,
            Err(e) => {
                found.push(refusal(e)?);
                return Ok(found);
            }
        };
        let live = match self.live_of(&rendered).await {
            Ok(l) => l,
            Err(e) => {
                found.push(refusal(e)?);
                return Ok(found);
            }
        };
        for (o, l) in rendered.iter().zip(&live) {
            if l.as_ref().is_some_and(|l| o.differs(l).is_none()) {
                continue;
            }
            if let Err(e) = self.apply_one(o, l.as_ref(), true).await {
                found.push(refusal(e)?);
            }
        }
        Ok(found)
    }

    /// Keeps the leases the object holds whose address `desired` still holds (as the `file`
    /// provider does), conditional on the object not changing from this read to the write.
    async fn apply(
        &self,
        desired: &RangeSet,
        _opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let (res, ns, name) = self.primary();
        let kept: Vec<Lease> = match self.cluster.get(&res, ns.as_deref(), &name).await? {
            Some(p) => self
                .leases_of(&res.describe(ns.as_deref(), &name), &p)?
                .into_iter()
                .filter(|l| desired.contains_net(&l.net()))
                .collect(),
            None => Vec::new(),
        };
        self.write(desired, &kept, None).await
    }

    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        _opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        self.write(desired, leases, version).await
    }

    async fn disable(&self, _opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        let (res, ns, name) = self.primary();
        if let Some(p) = self.cluster.get(&res, ns.as_deref(), &name).await? {
            self.ours(&res.describe(ns.as_deref(), &name), &p)?;
        }
        let mut owned = self.owned().await?;
        if owned.is_empty() {
            return Ok(Applied::unchanged());
        }
        // The policy that holds the ranges goes last, so nothing is left half-open while
        // the rest is removed.
        owned.sort_by_key(|l| l.res == res && l.name == name);
        let mut removed = Vec::new();
        for l in &owned {
            self.cluster
                .delete(&l.res, l.namespace.as_deref(), &l.name, l.uid())
                .await?;
            removed.push(l.describe());
        }
        Ok(Applied::changed().with_note(format!("removed {}", removed.join(", "))))
    }

    /// The objects of the declaration, without leases: manifests are what a GitOps tool
    /// applies as the declared state, and a lease is temporary runtime state of the live
    /// object (an hour of one runner's address) that has no place in a repository. A live
    /// object that Argo CD or Flux applies is theirs: rangekeeper then refuses to write it
    /// (another applier's fields) unless the target says `force: true`, so `grant` on such
    /// a target is refused the same way.
    async fn manifests(&self, desired: &RangeSet) -> Result<Option<Vec<Value>>, ProviderError> {
        refuse_empty(
            desired,
            "an allow policy without ipBlock peers admits no external source",
        )?;
        Ok(Some(
            self.render(desired)
                .await?
                .into_iter()
                .map(|o| o.body)
                .collect(),
        ))
    }
}
