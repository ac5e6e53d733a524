//! The cluster side of `external-ips`: reading Services (`audit`) and server-side applying
//! the generated policy (`policy --apply`), through kube-rs (kubeconfig contexts, in-cluster
//! config and exec credential plugins, as kubectl reads them).

use std::path::Path;

use anyhow::{Context as _, anyhow};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Service as KService;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::audit::Service;

/// The field manager of everything rangekeeper applies.
pub const FIELD_MANAGER: &str = "rangekeeper";

/// A client for `kubeconfig` (default: `$KUBECONFIG`, `~/.kube/config`, then the in-cluster
/// service account) and `context` (default: the current context).
pub async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| anyhow!("cannot read kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| anyhow!("kubeconfig {}: {e}", path.display()))?
        }
        None if context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| anyhow!("kubeconfig: {e}"))?,
        None => Config::infer()
            .await
            .map_err(|e| anyhow!("no Kubernetes configuration found: {e}"))?,
    };
    let server = config.cluster_url.to_string();
    Client::try_from(config).map_err(|e| anyhow!("cannot make a client for {server}: {e}"))
}

/// What the API server said, without kube-rs's debug dump.
fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow!("{} (HTTP {}, {})", s.message, s.code, s.reason),
        other => anyhow!("{other}"),
    }
}

/// Every Service of every namespace (listed in pages of 500).
pub async fn list_services(client: &Client) -> anyhow::Result<Vec<Service>> {
    let api: Api<KService> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(api_error)
            .context("cannot list Services")?;
        for s in page.items {
            let spec = s.spec.unwrap_or_default();
            out.push(Service {
                namespace: s.metadata.namespace.unwrap_or_else(|| "default".into()),
                name: s.metadata.name.unwrap_or_default(),
                external_ips: spec.external_ips.unwrap_or_default(),
                ingress_ips: s
                    .status
                    .and_then(|st| st.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|i| i.ip)
                    .collect(),
                source_ranges: spec.load_balancer_source_ranges.unwrap_or_default(),
            });
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    Ok(out)
}

/// Server-side apply the policy and its binding (field manager `rangekeeper`): both are
/// dry-run first, so a policy the API server rejects changes nothing. A field another
/// manager owns is a conflict, refused unless `force`.
pub async fn apply_policy(
    client: &Client,
    policy: &serde_json::Value,
    binding: &serde_json::Value,
    force: bool,
) -> anyhow::Result<()> {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let name = |v: &serde_json::Value| v["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let (pn, bn) = (name(policy), name(binding));
    for dry_run in [true, false] {
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.dry_run = dry_run;
        pp.force = force;
        let what = if dry_run {
            " (server-side dry run)"
        } else {
            ""
        };
        policies
            .patch(&pn, &pp, &Patch::Apply(policy))
            .await
            .map_err(api_error)
            .with_context(|| format!("ValidatingAdmissionPolicy {pn} was not applied{what}"))?;
        bindings
            .patch(&bn, &pp, &Patch::Apply(binding))
            .await
            .map_err(api_error)
            .with_context(|| {
                format!("ValidatingAdmissionPolicyBinding {bn} was not applied{what}")
            })?;
    }
    Ok(())
}
