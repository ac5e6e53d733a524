//! The EKS calls and the update state machine: describe, update with an idempotency token,
//! poll our update, and confirm by reading the cluster back. One attempt of each call:
//! another update in progress is a typed conflict, and the binary's retry policy runs the
//! whole read-modify-write again (with the same token, so EKS runs the update once).

use std::time::Instant;

use aws_sdk_eks::types::{Update, UpdateStatus, VpcConfigRequest};
use rangekeeper_provider::{Applied, ApplyOptions, ProviderError, RangeSet};
use sha2::{Digest, Sha256};

use crate::EksProvider;
use crate::cluster::ClusterView;
use crate::errors::map_sdk_error;
use crate::retry::bounded;

/// The idempotency token of an update of `cluster` from `from` to `to`: a retried request (same
/// cluster, same starting list, same target list) reuses it, so EKS runs it once. `salt` is
/// raised only when EKS answered an old request's result for the same token (A -> B -> A).
/// EKS allows at most 64 characters; this is 35.
pub(crate) fn request_token(cluster: &str, from: &RangeSet, to: &RangeSet, salt: u32) -> String {
    let mut h = Sha256::new();
    h.update(b"rangekeeper/eks/v1\n");
    h.update(cluster.as_bytes());
    h.update(b"\n");
    h.update(from.to_string().as_bytes());
    h.update(b"\n");
    h.update(to.to_string().as_bytes());
    h.update(b"\n");
    h.update(salt.to_be_bytes());
    let digest = h.finalize();
    let mut token = String::from("rk-");
    for b in &digest[..16] {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

fn is_terminal(status: Option<&UpdateStatus>) -> bool {
    matches!(
        status,
        Some(UpdateStatus::Successful | UpdateStatus::Failed | UpdateStatus::Cancelled)
    )
}

fn status_str(u: &Update) -> &str {
    u.status().map_or("unknown", |s| s.as_str())
}

/// The failure of an update, with the errors EKS attached to it.
fn update_failed(cluster: &str, u: &Update) -> ProviderError {
    let id = u.id().unwrap_or("?");
    let mut msg = format!(
        "EKS update {id} of cluster `{cluster}` ended {}",
        status_str(u)
    );
    let errors: Vec<String> = u
        .errors()
        .iter()
        .map(|e| {
            let mut s = e
                .error_code()
                .map_or("error".to_owned(), |c| c.as_str().to_owned());
            if let Some(m) = e.error_message() {
                s.push_str(": ");
                s.push_str(m);
            }
            if !e.resource_ids().is_empty() {
                s.push_str(&format!(" (resources: {})", e.resource_ids().join(", ")));
            }
            s
        })
        .collect();
    if errors.is_empty() {
        msg.push_str(" without errors reported");
    } else {
        msg.push_str(": ");
        msg.push_str(&errors.join("; "));
    }
    if u.status() == Some(&UpdateStatus::Cancelled) {
        ProviderError::Conflict(msg)
    } else {
        ProviderError::Other(msg)
    }
}

/// How a read-back ended.
enum ReadBack {
    Converged,
    Differs(Box<ClusterView>),
}

impl EksProvider {
    /// DescribeCluster, parsed.
    pub(crate) async fn describe(&self) -> Result<ClusterView, ProviderError> {
        let client = self.client().await?;
        let out = bounded(&self.tuning, "DescribeCluster", || async {
            client
                .describe_cluster()
                .name(&self.cluster)
                .send()
                .await
                .map_err(|e| map_sdk_error("DescribeCluster", &self.cluster, e))
        })
        .await?;
        let cluster = out.cluster().ok_or_else(|| {
            ProviderError::Other(format!(
                "EKS DescribeCluster on cluster `{}` returned no cluster",
                self.cluster
            ))
        })?;
        let view = ClusterView::from_cluster(&self.cluster, cluster)?;
        self.remember_family(view.ipv6);
        Ok(view)
    }

    /// Make the cluster hold `desired` (already validated), starting from `view`.
    pub(crate) async fn converge(
        &self,
        mut view: ClusterView,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let mut salt = 0;
        loop {
            if view.set == *desired {
                // An update of ours that a failed call could not confirm has landed.
                return Ok(if self.take_unconfirmed(desired) {
                    changed()
                } else {
                    Applied::default()
                });
            }
            if let Some(status) = view.status.as_deref()
                && matches!(status, "DELETING" | "FAILED")
            {
                return Err(ProviderError::Invalid(format!(
                    "cluster `{}` is {status}: it cannot be updated",
                    self.cluster
                )));
            }
            let token = request_token(&self.cluster, &view.set, desired, salt);
            let update = match self.send_update(desired, &token).await {
                Ok(update) => update,
                // Someone else set the same list since we read it: EKS refuses the no-op.
                Err(ProviderError::Invalid(msg))
                    if msg.contains("already at the desired configuration") =>
                {
                    let now = self.describe().await?;
                    if now.set == *desired {
                        return Ok(Applied::default());
                    }
                    return Err(ProviderError::Invalid(msg));
                }
                Err(e) => {
                    if matches!(e, ProviderError::Transient(_)) {
                        // The answer may be lost while EKS took the update.
                        self.set_unconfirmed(Some(desired.clone()));
                    }
                    return Err(e);
                }
            };
            let id = update.as_ref().and_then(|u| u.id()).map(str::to_owned);
            tracing::info!(cluster = %self.cluster, update = ?id, "EKS accepted the publicAccessCidrs update");
            if !opts.wait {
                let note = match &id {
                    Some(id) => format!("EKS update {id} accepted; not waiting for it to finish"),
                    None => "EKS accepted the update; not waiting to confirm it".to_owned(),
                };
                return Ok(Applied::pending().with_note(note));
            }
            let Some(id) = id else {
                // No update to poll (local emulators): the cluster itself must show the list.
                return match self
                    .read_back(desired, opts, self.tuning.readback_attempts)
                    .await?
                {
                    ReadBack::Converged => Ok(changed()),
                    ReadBack::Differs(now) => Err(ProviderError::Transient(format!(
                        "EKS accepted the update of cluster `{}` but after {} read-backs it holds {} instead of {}",
                        self.cluster, self.tuning.readback_attempts, now.set, desired
                    ))),
                };
            };
            let done = self
                .wait_update(&id, opts, "update")
                .await
                .inspect_err(|_| self.set_unconfirmed(Some(desired.clone())))?;
            if done.status() != Some(&UpdateStatus::Successful) {
                return Err(update_failed(&self.cluster, &done));
            }
            match self
                .read_back(desired, opts, self.tuning.readback_attempts.min(3))
                .await?
            {
                ReadBack::Converged => return Ok(changed()),
                ReadBack::Differs(now) if salt == 0 => {
                    // The token named an older, finished update (the list went A -> B -> A):
                    // send again with a fresh token.
                    tracing::warn!(cluster = %self.cluster, update = %id,
                        "update {id} succeeded but the cluster holds {}; resending with a new token", now.set);
                    salt += 1;
                    view = *now;
                }
                ReadBack::Differs(now) => {
                    return Err(ProviderError::Conflict(format!(
                        "EKS update {id} of cluster `{}` succeeded but the cluster holds {} instead of {}: \
                         something else changed it",
                        self.cluster, now.set, desired
                    )));
                }
            }
        }
    }

    /// Remember (or forget) an update to `set` whose outcome is unknown.
    fn set_unconfirmed(&self, set: Option<RangeSet>) {
        if let Ok(mut g) = self.unconfirmed.lock() {
            *g = set;
        }
    }

    /// Whether the update whose outcome was unknown was to `set`; forgets it either way.
    fn take_unconfirmed(&self, set: &RangeSet) -> bool {
        self.unconfirmed
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .is_some_and(|sent| sent == *set)
    }

    /// UpdateClusterConfig with only `publicAccessCidrs`, one attempt. Another update in
    /// progress (ResourceInUseException) comes back as a conflict for the retry policy.
    async fn send_update(
        &self,
        desired: &RangeSet,
        token: &str,
    ) -> Result<Option<Update>, ProviderError> {
        let client = self.client().await?;
        let cidrs: Vec<String> = desired.prefixes().iter().map(ToString::to_string).collect();
        let out = bounded(&self.tuning, "UpdateClusterConfig", || async {
            client
                .update_cluster_config()
                .name(&self.cluster)
                .resources_vpc_config(
                    VpcConfigRequest::builder()
                        .set_public_access_cidrs(Some(cidrs.clone()))
                        .build(),
                )
                .client_request_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error("UpdateClusterConfig", &self.cluster, e))
        })
        .await?;
        Ok(out.update().cloned())
    }

    async fn describe_update(&self, id: &str) -> Result<Update, ProviderError> {
        let client = self.client().await?;
        let out = bounded(&self.tuning, "DescribeUpdate", || async {
            client
                .describe_update()
                .name(&self.cluster)
                .update_id(id)
                .send()
                .await
                .map_err(|e| map_sdk_error("DescribeUpdate", &self.cluster, e))
        })
        .await?;
        out.update().cloned().ok_or_else(|| {
            ProviderError::Other(format!(
                "EKS DescribeUpdate {id} on cluster `{}` returned no update",
                self.cluster
            ))
        })
    }

    /// Poll DescribeUpdate until the update ends (any terminal status), bounded by `max_wait`.
    async fn wait_update(
        &self,
        id: &str,
        opts: &ApplyOptions,
        label: &str,
    ) -> Result<Update, ProviderError> {
        let start = Instant::now();
        loop {
            let u = self.describe_update(id).await?;
            if is_terminal(u.status()) {
                opts.progress.message(&format!(
                    "{label} {id} of cluster {}: {}",
                    self.cluster,
                    status_str(&u)
                ));
                return Ok(u);
            }
            let elapsed = start.elapsed();
            opts.progress.message(&format!(
                "{label} {id} of cluster {}: {} ({}s)",
                self.cluster,
                status_str(&u),
                elapsed.as_secs()
            ));
            if elapsed >= self.tuning.max_wait {
                return Err(ProviderError::Transient(format!(
                    "EKS update {id} of cluster `{}` is still {} after {:?}",
                    self.cluster,
                    status_str(&u),
                    self.tuning.max_wait
                )));
            }
            tokio::time::sleep(self.tuning.poll_delay()).await;
        }
    }

    /// Read the cluster until it holds `desired`, at most `attempts` times with backoff.
    async fn read_back(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
        attempts: u32,
    ) -> Result<ReadBack, ProviderError> {
        let mut last = None;
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.tuning.poll_delay()).await;
            }
            opts.progress.message(&format!(
                "confirming cluster {} holds the new list (read {} of {})",
                self.cluster,
                attempt + 1,
                attempts.max(1)
            ));
            let view = self.describe().await?;
            if view.set == *desired {
                return Ok(ReadBack::Converged);
            }
            last = Some(view);
        }
        match last {
            Some(view) => Ok(ReadBack::Differs(Box::new(view))),
            None => Err(ProviderError::Other("no read-back happened".into())),
        }
    }
}

fn changed() -> Applied {
    Applied::changed()
}
