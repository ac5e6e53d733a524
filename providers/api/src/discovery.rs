//! Discovery: a provider lists the targets it can see for a template of the declaration's
//! `discover:` section (every AKS cluster of a subscription with some tags, every EKS cluster
//! of some regions), so a fleet is not written out target by target.
//!
//! A provider that can discover exports a [`DiscoveryFactory`]: it parses the template's
//! provider fields (offline: `rangekeeper validate` calls it to check them) into a
//! [`Discoverer`], whose [`Discoverer::discover`] makes ONE attempt at listing (following the
//! listing's pages is part of that attempt) and returns typed [`ProviderError`]s; the
//! binary's retry policy alone decides whether to try again, and keeps the last good list
//! when a listing fails.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{ProviderError, TargetConfig};

/// One target a provider found for a template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DiscoveredTarget {
    /// A stable name, the same on every listing while the target exists and unique across
    /// providers (`aks/<subscription>/<group>/<cluster>`, `eks/<region>/<cluster>`): the
    /// reconciler keys its state by it, and an explicit target of the same name overrides
    /// the discovered one.
    pub name: String,
    /// The provider fields of the target (what a declared target of this provider would
    /// write: `subscription`, `resourceGroup`, `cluster`, ...), handed to the provider's
    /// factory as [`TargetConfig::fields`].
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Why the target cannot be planned yet (a cluster still being created or updated):
    /// it is listed as pending and looked at again on the next listing, never planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// Facts worth showing (`location`, `provisioningState`), in display order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
}

impl DiscoveredTarget {
    /// A target ready to be planned.
    pub fn new(
        name: impl Into<String>,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        DiscoveredTarget {
            name: name.into(),
            fields,
            pending: None,
            details: Vec::new(),
        }
    }

    /// Mark the target as not ready yet, saying why.
    pub fn with_pending(mut self, why: impl Into<String>) -> Self {
        self.pending = Some(why.into());
        self
    }

    /// Add a fact for `plan` and `show`.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((key.into(), value.into()));
        self
    }
}

/// Lists the targets of one template. Built by a [`DiscoveryFactory`] from the template's
/// provider fields.
#[async_trait::async_trait]
pub trait Discoverer: Send + Sync {
    /// One attempt at listing every target of the template that its filters admit, in a
    /// stable order, pending ones included. A listing that fails part way (a page, a region)
    /// fails as a whole: the binary keeps the last good list rather than act on half of one.
    async fn discover(&self) -> Result<Vec<DiscoveredTarget>, ProviderError>;
}

/// Builds the discoverer of one template from its provider fields (`cfg.name` is the
/// template's name). No network call happens here: `validate` calls it to check the fields.
pub type DiscoveryFactory = fn(&TargetConfig) -> Result<Box<dyn Discoverer>, ProviderError>;

/// A discoverer with every error message scrubbed of bearer tokens (the binary wraps each
/// one, as it wraps providers).
pub fn scrubbed(inner: Box<dyn Discoverer>) -> Box<dyn Discoverer> {
    Box::new(Scrubbed(inner))
}

struct Scrubbed(Box<dyn Discoverer>);

#[async_trait::async_trait]
impl Discoverer for Scrubbed {
    async fn discover(&self) -> Result<Vec<DiscoveredTarget>, ProviderError> {
        self.0
            .discover()
            .await
            .map_err(|e| e.map_message(|m| crate::secret::scrub(&m, &[])))
    }
}

/// What one tag must hold: this value, or one of these.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum TagValues {
    One(String),
    AnyOf(Vec<String>),
}

/// The `tags:` filter of a template: a target is listed only when it carries every tag
/// named, each with the value given (or one of the values of a list). Keys match exactly
/// (Azure tag keys are case-insensitive and are compared so; see [`TagFilter::matches_ci`]).
/// An empty filter admits every target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct TagFilter(BTreeMap<String, TagValues>);

impl TagFilter {
    /// Whether a target with these tags passes the filter (keys compared exactly).
    pub fn matches<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> bool {
        self.matches_with(tags, |a, b| a == b)
    }

    /// [`TagFilter::matches`] with tag keys compared without regard to ASCII case (Azure).
    pub fn matches_ci<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> bool {
        self.matches_with(tags, |a, b| a.eq_ignore_ascii_case(b))
    }

    fn matches_with<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
        same_key: impl Fn(&str, &str) -> bool,
    ) -> bool {
        self.0.iter().all(|(key, want)| {
            let Some((_, value)) = tags.clone().into_iter().find(|(k, _)| same_key(k, key)) else {
                return false;
            };
            match want {
                TagValues::One(v) => v == value,
                TagValues::AnyOf(vs) => vs.iter().any(|v| v == value),
            }
        })
    }

    /// Check the filter itself: keys and values non-empty, lists not empty. The message
    /// names the tag at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_as("tags", "tag")
    }

    /// [`TagFilter::validate`] for a filter declared under another field (GKE's `labels`),
    /// the messages naming `field` and calling each key a `what`.
    pub fn validate_as(&self, field: &str, what: &str) -> Result<(), String> {
        for (key, want) in &self.0 {
            if key.trim().is_empty() {
                return Err(format!("`{field}`: a {what} key must not be empty"));
            }
            if let TagValues::AnyOf(vs) = want
                && vs.is_empty()
            {
                return Err(format!(
                    "`{field}`: `{key}`: the list of values is empty, so no target could match; list at least one value"
                ));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(v: serde_json::Value) -> TagFilter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_tag_must_match_one_of_its_values() {
        let f = filter(serde_json::json!({"env": "prod", "team": ["a", "b"]}));
        assert!(f.matches([("env", "prod"), ("team", "b"), ("x", "y")]));
        assert!(!f.matches([("env", "prod")]), "a missing tag fails");
        assert!(!f.matches([("env", "dev"), ("team", "a")]));
        assert!(!f.matches([("env", "prod"), ("team", "c")]));
        assert!(
            !f.matches([("Env", "prod"), ("team", "a")]),
            "keys are exact"
        );
        assert!(
            f.matches_ci([("Env", "prod"), ("TEAM", "a")]),
            "Azure keys are not"
        );
        assert!(
            !f.matches_ci([("env", "Prod"), ("team", "a")]),
            "values are exact"
        );
        assert!(TagFilter::default().matches([]));
    }

    #[test]
    fn an_empty_key_or_list_is_refused() {
        assert!(filter(serde_json::json!({"": "x"})).validate().is_err());
        let e = filter(serde_json::json!({"team": []}))
            .validate()
            .unwrap_err();
        assert!(e.contains("`tags`: `team`"), "{e}");
        assert!(filter(serde_json::json!({"a": "b"})).validate().is_ok());
        let e = filter(serde_json::json!({"team": []}))
            .validate_as("labels", "label")
            .unwrap_err();
        assert!(e.contains("`labels`: `team`"), "{e}");
        let e = filter(serde_json::json!({" ": "x"}))
            .validate_as("labels", "label")
            .unwrap_err();
        assert_eq!(e, "`labels`: a label key must not be empty");
    }
}
