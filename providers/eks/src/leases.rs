//! Leases on EKS: cluster tags `rangekeeper-lease-<id>` (TagResource/UntagResource) beside
//! `publicAccessCidrs`. EKS has no eTag, so the compare-and-swap is a digest of the list and
//! the lease tags compared right before writing, and a read-back after: a change that finds
//! the cluster moved, or reads back something else, is a conflict, and the binary plans again
//! from a new read (each writer's tags are separate keys, so none is lost to another's write).

use std::collections::BTreeMap;

use rangekeeper_provider::lease::TAG_PREFIX;
use rangekeeper_provider::{Applied, ApplyOptions, Lease, ProviderError, RangeSet};

use crate::EksProvider;
use crate::errors::map_sdk_error;
use crate::retry::bounded;

/// EKS allows 50 tags per resource, keys of at most 128 characters and values of 256.
pub(crate) const MAX_TAGS: usize = 50;

impl EksProvider {
    pub(crate) async fn converge_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let view = self.describe().await?;
        if let Some(v) = version
            && view.version() != v
        {
            return Err(ProviderError::Conflict(format!(
                "cluster `{}` changed since it was read (its list or lease tags differ)",
                self.cluster
            )));
        }
        let found = crate::violations(desired, Some(view.ipv6), &self.cluster);
        if !found.is_empty() {
            let list: Vec<String> = found.into_iter().map(|v| v.message).collect();
            return Err(ProviderError::Invalid(list.join("; ")));
        }
        rangekeeper_provider::lease::refuse_unheld(desired, leases)?;
        let want: BTreeMap<String, String> = leases
            .iter()
            .map(|l| (l.tag_key(), l.tag_value()))
            .collect();
        let others = view
            .tags
            .keys()
            .filter(|k| !k.starts_with(TAG_PREFIX))
            .count();
        if others + want.len() > MAX_TAGS {
            return Err(ProviderError::Invalid(format!(
                "the lease does not fit: EKS allows {MAX_TAGS} tags per resource, and cluster `{}` has {others} other tag{} and would have {} lease tag{}",
                self.cluster,
                if others == 1 { "" } else { "s" },
                want.len(),
                if want.len() == 1 { "" } else { "s" }
            )));
        }
        let held: BTreeMap<&String, &String> = view
            .tags
            .iter()
            .filter(|(k, _)| k.starts_with(TAG_PREFIX))
            .collect();
        let add: BTreeMap<String, String> = want
            .iter()
            .filter(|(k, v)| held.get(k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let remove: Vec<String> = held
            .keys()
            .filter(|k| !want.contains_key(k.as_str()))
            .map(|k| (*k).clone())
            .collect();
        let mut changed = false;
        if !add.is_empty() || !remove.is_empty() {
            let arn = view.arn.clone().ok_or_else(|| {
                ProviderError::Other(format!(
                    "EKS DescribeCluster on cluster `{}` returned no ARN to tag",
                    self.cluster
                ))
            })?;
            // Records go first and out last: a lease record never outlives a revoke's list
            // update (the reconciler would put its address back), and a grant whose list
            // update fails leaves a record the next pass applies or expires.
            if !remove.is_empty() {
                self.untag(&arn, &remove).await?;
            }
            if !add.is_empty() {
                self.tag(&arn, add).await?;
            }
            changed = true;
        }
        let applied = self.converge(view, desired, opts).await?;
        changed |= applied.changed;
        if applied.pending {
            return Ok(applied);
        }
        // Read back: another writer between our check and our writes shows here.
        let back = self.describe().await?;
        let back_tags: BTreeMap<&String, &String> = back
            .tags
            .iter()
            .filter(|(k, _)| k.starts_with(TAG_PREFIX))
            .collect();
        let same_tags =
            back_tags.len() == want.len() && want.iter().all(|(k, v)| back_tags.get(k) == Some(&v));
        if back.set != *desired || !same_tags {
            return Err(ProviderError::Conflict(format!(
                "cluster `{}` was changed by someone else during our update: it holds {} and {} lease tag(s)",
                self.cluster,
                back.set,
                back_tags.len()
            )));
        }
        Ok(if changed {
            Applied::changed().with_notes(applied.notes)
        } else {
            applied
        })
    }

    async fn tag(&self, arn: &str, tags: BTreeMap<String, String>) -> Result<(), ProviderError> {
        let client = self.client().await?;
        bounded(&self.tuning, "TagResource", || async {
            client
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags.into_iter().collect()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_sdk_error("TagResource", &self.cluster, e))
        })
        .await
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), ProviderError> {
        let client = self.client().await?;
        bounded(&self.tuning, "UntagResource", || async {
            client
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_sdk_error("UntagResource", &self.cluster, e))
        })
        .await
    }
}
