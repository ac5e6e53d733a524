//! Discovery: the `discover:` templates of a declaration expanded into targets by their
//! providers' discoverers (reached through the registry), under the one retry policy.
//!
//! A [`Fleet`] keeps the last good list of each template: a listing that fails changes
//! nothing (never are all of a template's targets dropped because a list call failed), and
//! is reported by template. [`Fleet::expand`] joins the lists to the declaration: explicit
//! targets win over discovered ones of the same name, and targets still being provisioned
//! are pending (listed, never planned). The result is a plain list of targets, so whatever
//! splits targets among workers (shards) splits discovered ones alike.

use indexmap::IndexMap;
use rangekeeper_provider::{DiscoveredTarget, ProviderError};

use crate::declaration::{Declaration, Template};
use crate::registry;
use crate::retry;

/// One listing of one template's targets under `policy` (its attempts and read deadline).
pub async fn list(
    template: &Template,
    policy: retry::Policy,
) -> Result<Vec<DiscoveredTarget>, ProviderError> {
    let discoverer = registry::discoverer(&template.target.provider, &template.target.config)?;
    let what = format!("discovering the targets of template `{}`", template.name);
    policy
        .run(retry::Op::Read, &what, None, || discoverer.discover())
        .await
}

/// A target a template found that cannot be planned yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub target: String,
    pub provider: String,
    pub template: String,
    pub reason: String,
}

/// A template whose last listing failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub template: String,
    pub provider: String,
    /// The error's kind (`transient`, `auth`, ...), as metrics name it.
    pub kind: &'static str,
    pub error: String,
    /// Targets still in force from the template's last good listing (`None`: it never
    /// listed successfully, so it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<usize>,
}

/// What one template's listing contributed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSummary {
    pub template: String,
    pub provider: String,
    /// Targets made from the listing (ready, not overridden).
    pub targets: Vec<String>,
    pub pending: Vec<Pending>,
    /// Listed targets that a target of `targets:` of the same name overrides.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
    /// Listed targets another template listed first (the first one in the file wins).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// What discovery added to a declaration, by template in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Expanded(pub Vec<TemplateSummary>);

impl Expanded {
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.0.iter().filter_map(|t| t.failure.as_ref())
    }

    pub fn pending(&self) -> impl Iterator<Item = &Pending> {
        self.0.iter().flat_map(|t| &t.pending)
    }
}

/// How one listing changed a template's list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Names listed now and not before (pending ones included).
    pub added: Vec<String>,
    /// Names listed before and not now: vanished clusters, dropped (never an error).
    pub vanished: Vec<String>,
    /// Names pending before and ready now.
    pub ready: Vec<String>,
    /// Whether the list differs from the last good one at all.
    pub changed: bool,
}

/// The last good listing of each template, and the last failure of those whose latest
/// listing failed.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    lists: IndexMap<String, Vec<DiscoveredTarget>>,
    failures: IndexMap<String, ProviderError>,
}

impl Fleet {
    /// Record a listing of `template`: a good one replaces its list, a failed one keeps the
    /// last good list and is remembered as the template's failure.
    pub fn record(
        &mut self,
        template: &str,
        result: Result<Vec<DiscoveredTarget>, ProviderError>,
    ) -> Recorded {
        match result {
            Err(e) => {
                self.failures.insert(template.to_owned(), e);
                Recorded::default()
            }
            Ok(new) => {
                self.failures.shift_remove(template);
                let old = self.lists.get(template).cloned().unwrap_or_default();
                let names = |l: &[DiscoveredTarget]| -> Vec<String> {
                    l.iter().map(|d| d.name.clone()).collect()
                };
                let (old_names, new_names) = (names(&old), names(&new));
                let recorded = Recorded {
                    added: new_names
                        .iter()
                        .filter(|n| !old_names.contains(n))
                        .cloned()
                        .collect(),
                    vanished: old_names
                        .iter()
                        .filter(|n| !new_names.contains(n))
                        .cloned()
                        .collect(),
                    ready: new
                        .iter()
                        .filter(|d| d.pending.is_none())
                        .filter(|d| old.iter().any(|o| o.name == d.name && o.pending.is_some()))
                        .map(|d| d.name.clone())
                        .collect(),
                    changed: old != new || !self.lists.contains_key(template),
                };
                self.lists.insert(template.to_owned(), new);
                recorded
            }
        }
    }

    /// Forget a template (removed from the declaration, or its provider fields changed so
    /// its list no longer says what it would list).
    pub fn forget(&mut self, template: &str) {
        self.lists.shift_remove(template);
        self.failures.shift_remove(template);
    }

    /// Whether a template has a good listing.
    pub fn has_list(&self, template: &str) -> bool {
        self.lists.contains_key(template)
    }

    /// Join the listed targets to `decl.targets`: each ready target of a template becomes a
    /// target made from it; explicit targets override discovered ones of the same name, and
    /// the first template in the file wins over later ones listing the same name.
    pub fn expand(&self, decl: &mut Declaration) -> Expanded {
        let Some(discover) = decl.discover.clone() else {
            return Expanded::default();
        };
        let mut out = Vec::new();
        for (name, template) in &discover.templates {
            let mut summary = TemplateSummary {
                template: name.clone(),
                provider: template.target.provider.clone(),
                targets: Vec::new(),
                pending: Vec::new(),
                overridden: Vec::new(),
                duplicates: Vec::new(),
                failure: None,
            };
            let list = self.lists.get(name);
            if let Some(e) = self.failures.get(name) {
                summary.failure = Some(Failure {
                    template: name.clone(),
                    provider: template.target.provider.clone(),
                    kind: e.kind(),
                    error: e.to_string(),
                    kept: list.map(|l| l.iter().filter(|d| d.pending.is_none()).count()),
                });
            }
            for d in list.into_iter().flatten() {
                if let Some(existing) = decl
                    .targets
                    .get(&d.name)
                    .or_else(|| decl.partial_targets.get(&d.name))
                {
                    match &existing.template {
                        None => summary.overridden.push(d.name.clone()),
                        Some(_) => summary.duplicates.push(d.name.clone()),
                    }
                    continue;
                }
                if let Some(reason) = &d.pending {
                    summary.pending.push(Pending {
                        target: d.name.clone(),
                        provider: template.target.provider.clone(),
                        template: name.clone(),
                        reason: reason.clone(),
                    });
                    continue;
                }
                decl.targets.insert(
                    d.name.clone(),
                    template.instantiate(&d.name, d.fields.clone()),
                );
                summary.targets.push(d.name.clone());
            }
            out.push(summary);
        }
        Expanded(out)
    }
}

/// List every template of `decl` once, concurrently, under `policy` (one-shot commands).
pub async fn discover_all(decl: &Declaration, policy: retry::Policy) -> Fleet {
    let mut fleet = Fleet::default();
    let Some(discover) = &decl.discover else {
        return fleet;
    };
    let results = futures::future::join_all(
        discover
            .templates
            .values()
            .map(|t| async move { (t.name.clone(), list(t, policy).await) }),
    )
    .await;
    for (name, r) in results {
        if let Err(e) = &r {
            tracing::error!(template = %name, kind = e.kind(), "discovery by template `{name}` failed: {e}");
        }
        fleet.record(&name, r);
    }
    fleet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, pending: bool) -> DiscoveredTarget {
        let d = DiscoveredTarget::new(name, serde_json::Map::new());
        if pending {
            d.with_pending("creating")
        } else {
            d
        }
    }

    #[test]
    fn a_failed_listing_keeps_the_last_good_list() {
        let mut f = Fleet::default();
        let r = f.record("t", Ok(vec![listed("a", false), listed("b", true)]));
        assert_eq!(r.added, ["a", "b"]);
        assert!(r.changed);
        let r = f.record("t", Err(ProviderError::Transient("down".into())));
        assert_eq!(r, Recorded::default());
        assert!(f.has_list("t") && f.failures.contains_key("t"));
        assert_eq!(f.lists["t"].len(), 2, "the last good list stays");
        let r = f.record("t", Ok(vec![listed("b", false), listed("c", false)]));
        assert_eq!(r.added, ["c"]);
        assert_eq!(r.vanished, ["a"]);
        assert_eq!(r.ready, ["b"]);
        assert!(!f.failures.contains_key("t"));
        let r = f.record("t", Ok(vec![listed("b", false), listed("c", false)]));
        assert!(!r.changed);
    }
}
