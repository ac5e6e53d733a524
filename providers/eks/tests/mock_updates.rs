//! The update and poll logic of the EKS provider against the SDK's own mock layer
//! (aws-smithy-mocks): each test scripts EKS's answers and checks what the provider sent.
//!
//! The provider makes one attempt per call; where a test needs the call run again after a
//! conflict, throttling or a server error, [`until_ok`] stands in for the binary's retry
//! policy (tested in the binary) and the test asserts the typed errors on the way.

use std::sync::{Arc, Mutex};

use aws_sdk_eks::Client;
use aws_sdk_eks::error::ErrorMetadata;
use aws_sdk_eks::operation::describe_cluster::{DescribeClusterError, DescribeClusterOutput};
use aws_sdk_eks::operation::describe_update::DescribeUpdateOutput;
use aws_sdk_eks::operation::list_updates::ListUpdatesOutput;
use aws_sdk_eks::operation::update_cluster_config::{
    UpdateClusterConfigError, UpdateClusterConfigInput, UpdateClusterConfigOutput,
};
use aws_sdk_eks::types::error::{
    InvalidParameterException, ResourceInUseException, ResourceNotFoundException,
    ThrottlingException,
};
use aws_sdk_eks::types::{
    Cluster, ClusterStatus, ErrorCode, ErrorDetail, IpFamily, KubernetesNetworkConfigResponse,
    Update, UpdateStatus, UpdateType, VpcConfigResponse,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use rangekeeper_provider::{
    ApplyOptions, Progress, Provider, ProviderError, RangeSet, Restriction,
};
use rangekeeper_provider_eks::{EksProvider, Tuning, configure};

const OLD: &[&str] = &["93.184.216.0/24"];
const NEW: &[&str] = &["140.82.112.0/20", "151.101.0.0/16"];

fn set(s: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        s.iter()
            .map(|c| rangekeeper_provider::cidr::parse(c).unwrap().net),
    )
}

fn cluster(cidrs: &[&str], ipv6: bool) -> DescribeClusterOutput {
    let mut vpc = VpcConfigResponse::builder()
        .endpoint_public_access(true)
        .endpoint_private_access(true);
    for c in cidrs {
        vpc = vpc.public_access_cidrs(*c);
    }
    let mut c = Cluster::builder()
        .name("prod")
        .status(ClusterStatus::Active)
        .resources_vpc_config(vpc.build());
    if ipv6 {
        c = c.kubernetes_network_config(
            KubernetesNetworkConfigResponse::builder()
                .ip_family(IpFamily::Ipv6)
                .build(),
        );
    }
    DescribeClusterOutput::builder().cluster(c.build()).build()
}

fn update(id: &str, status: UpdateStatus) -> Update {
    Update::builder()
        .id(id)
        .status(status)
        .r#type(UpdateType::EndpointAccessUpdate)
        .build()
}

fn accepted(id: &str) -> UpdateClusterConfigOutput {
    UpdateClusterConfigOutput::builder()
        .update(update(id, UpdateStatus::InProgress))
        .build()
}

fn described(u: Update) -> DescribeUpdateOutput {
    DescribeUpdateOutput::builder().update(u).build()
}

/// Describe answers: `before` for the first `n_before` calls, then `after` forever.
fn describe_rule(
    before: &'static [&'static str],
    n_before: usize,
    after: &'static [&'static str],
) -> Rule {
    mock!(Client::describe_cluster)
        .sequence()
        .output(move || cluster(before, false))
        .times(n_before)
        .output(move || cluster(after, false))
        .repeatedly()
        .build()
}

/// Records every UpdateClusterConfig request the provider sends.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<UpdateClusterConfigInput>>>);

impl Sent {
    fn matcher(&self) -> impl Fn(&UpdateClusterConfigInput) -> bool + Send + Sync + 'static {
        let sent = self.0.clone();
        move |req| {
            sent.lock().unwrap().push(req.clone());
            true
        }
    }
    fn all(&self) -> Vec<UpdateClusterConfigInput> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn message(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_owned());
    }
}

fn opts() -> (ApplyOptions, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    (
        ApplyOptions {
            wait: true,
            progress: rec.clone(),
        },
        rec,
    )
}

fn provider(rules: &[&Rule]) -> EksProvider {
    let client = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        rules.iter().copied(),
        |c| configure(c, &Tuning::fast())
    );
    EksProvider::with_client("prod", client).with_tuning(Tuning::fast())
}

/// Run `op` again while it fails with a retryable error, as the binary's retry policy does,
/// at most `max` times; the result and the errors on the way.
async fn until_ok<T, F, Fut>(
    max: usize,
    mut op: F,
) -> (Result<T, ProviderError>, Vec<ProviderError>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut errors = Vec::new();
    loop {
        match op().await {
            Err(e) if e.is_retryable() && errors.len() < max => errors.push(e),
            other => return (other, errors),
        }
    }
}

fn cidrs_of(req: &UpdateClusterConfigInput) -> Vec<String> {
    req.resources_vpc_config()
        .unwrap()
        .public_access_cidrs()
        .to_vec()
}

#[tokio::test]
async fn in_sync_makes_no_update_call() {
    // The server holds the same set in another form: two /25s and a bare address.
    let describe = mock!(Client::describe_cluster).then_output(|| {
        cluster(
            &["151.101.0.0/17", "151.101.128.0/17", "140.82.112.0/20"],
            false,
        )
    });
    let sent = Sent::default();
    let upd = mock!(Client::update_cluster_config)
        .match_requests(sent.matcher())
        .then_output(|| accepted("u1"));
    let p = provider(&[&describe, &upd]);
    let (o, _) = opts();
    let applied = p.apply(&set(NEW), &o).await.unwrap();
    assert!(!applied.changed && !applied.pending);
    assert_eq!(upd.num_calls(), 0);
    assert!(sent.all().is_empty());
}

#[tokio::test]
async fn update_sends_only_the_cidrs_with_a_stable_token_and_polls_to_success() {
    let describe = describe_rule(OLD, 1, NEW);
    let sent = Sent::default();
    let upd = mock!(Client::update_cluster_config)
        .match_requests(sent.matcher())
        .then_output(|| accepted("u1"));
    let poll = mock!(Client::describe_update)
        .match_requests(|r| r.update_id() == Some("u1") && r.name() == Some("prod"))
        .sequence()
        .output(|| described(update("u1", UpdateStatus::InProgress)))
        .times(2)
        .output(|| described(update("u1", UpdateStatus::Successful)))
        .build();
    let p = provider(&[&describe, &upd, &poll]);
    let (o, rec) = opts();
    let applied = p.apply(&set(NEW), &o).await.unwrap();
    assert!(applied.changed && !applied.pending, "{applied:?}");
    assert_eq!(poll.num_calls(), 3);
    let sent = sent.all();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.name(), Some("prod"));
    assert_eq!(cidrs_of(req), vec!["140.82.112.0/20", "151.101.0.0/16"]);
    let vpc = req.resources_vpc_config().unwrap();
    assert_eq!(
        vpc.endpoint_public_access(),
        None,
        "must not touch endpointPublicAccess"
    );
    assert_eq!(
        vpc.endpoint_private_access(),
        None,
        "must not touch endpointPrivateAccess"
    );
    assert!(vpc.subnet_ids().is_empty() && vpc.security_group_ids().is_empty());
    let token = req.client_request_token().unwrap();
    assert!(token.len() <= 64 && token.starts_with("rk-"), "{token}");
    let msgs = rec.0.lock().unwrap().clone();
    assert!(
        msgs.iter()
            .any(|m| m.contains("u1") && m.contains("InProgress")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("u1") && m.contains("Successful")),
        "{msgs:?}"
    );

    // The same change computed again yields the same token (a retried request is idempotent).
    let describe2 = describe_rule(OLD, 1, NEW);
    let sent2 = Sent::default();
    let upd2 = mock!(Client::update_cluster_config)
        .match_requests(sent2.matcher())
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    let p2 = provider(&[&describe2, &upd2]);
    p2.apply(&set(NEW), &o).await.unwrap();
    assert_eq!(sent2.all()[0].client_request_token(), Some(token));
}

#[tokio::test]
async fn resource_in_use_is_a_conflict_and_the_rerun_reuses_the_token() {
    // Formerly the provider waited for the running update itself; now the conflict goes to
    // the retry policy, which runs the whole update again.
    let describe = describe_rule(OLD, 2, NEW);
    let sent = Sent::default();
    let upd = mock!(Client::update_cluster_config)
        .match_requests(sent.matcher())
        .sequence()
        .error(|| {
            UpdateClusterConfigError::ResourceInUseException(
                ResourceInUseException::builder()
                    .message("Cannot EndpointAccessUpdate because cluster prod currently has update u0 in progress")
                    .build(),
            )
        })
        .output(|| accepted("u1"))
        .build();
    let ours = mock!(Client::describe_update)
        .match_requests(|r| r.update_id() == Some("u1"))
        .then_output(|| described(update("u1", UpdateStatus::Successful)));
    let p = provider(&[&describe, &upd, &ours]);
    let (o, _) = opts();
    let new = set(NEW);
    let (applied, errors) = until_ok(3, || p.apply(&new, &o)).await;
    assert!(applied.unwrap().changed);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], ProviderError::Conflict(m) if m.contains("u0")),
        "{errors:?}"
    );
    let sent = sent.all();
    assert_eq!(sent.len(), 2, "one 409, one accepted");
    assert_eq!(
        sent[0].client_request_token(),
        sent[1].client_request_token(),
        "the retry reuses the token"
    );
    assert_eq!(ours.num_calls(), 1);
}

#[tokio::test]
async fn resource_in_use_is_one_attempt() {
    let describe = describe_rule(OLD, 100, OLD);
    let upd = mock!(Client::update_cluster_config)
        .sequence()
        .error(|| {
            UpdateClusterConfigError::ResourceInUseException(
                ResourceInUseException::builder().build(),
            )
        })
        .repeatedly()
        .build();
    let list = mock!(Client::list_updates).then_output(|| ListUpdatesOutput::builder().build());
    let p = provider(&[&describe, &upd, &list]);
    let (o, _) = opts();
    let e = p.apply(&set(NEW), &o).await.unwrap_err();
    assert!(matches!(e, ProviderError::Conflict(_)), "{e:?}");
    assert_eq!(upd.num_calls(), 1);
    assert_eq!(list.num_calls(), 0, "no waiting on someone else's update");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_the_same_token() {
    // One attempt per call: throttled describe; throttled update; 503 update; accepted
    // update whose poll fails (500); then the re-run finds the list and confirms it.
    let describe = mock!(Client::describe_cluster)
        .sequence()
        .error(|| {
            DescribeClusterError::generic(
                ErrorMetadata::builder().code("ThrottlingException").build(),
            )
        })
        .output(|| cluster(OLD, false))
        .times(3)
        .output(|| cluster(NEW, false))
        .repeatedly()
        .build();
    let sent = Sent::default();
    let upd = mock!(Client::update_cluster_config)
        .match_requests(sent.matcher())
        .sequence()
        .error(|| {
            UpdateClusterConfigError::ThrottlingException(
                ThrottlingException::builder()
                    .message("Rate exceeded")
                    .build(),
            )
        })
        .http_status(503, None)
        .output(|| accepted("u1"))
        .build();
    let poll = mock!(Client::describe_update)
        .sequence()
        .http_status(500, None)
        .output(|| described(update("u1", UpdateStatus::Successful)))
        .build();
    let p = provider(&[&describe, &upd, &poll]);
    let (o, _) = opts();
    let new = set(NEW);
    let (applied, errors) = until_ok(10, || p.apply(&new, &o)).await;
    assert!(applied.unwrap().changed, "the re-run confirms our update");
    let kinds: Vec<&str> = errors.iter().map(ProviderError::kind).collect();
    assert_eq!(kinds, ["throttled", "throttled", "transient", "transient"]);
    let sent = sent.all();
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter()
            .all(|r| r.client_request_token() == sent[0].client_request_token())
    );
    assert_eq!(
        describe.num_calls(),
        5,
        "throttled describe, three describes before updates, the re-run's describe"
    );
    assert_eq!(poll.num_calls(), 1);
}

#[tokio::test]
async fn throttling_is_one_attempt() {
    let describe = mock!(Client::describe_cluster)
        .sequence()
        .error(|| {
            DescribeClusterError::generic(
                ErrorMetadata::builder().code("ThrottlingException").build(),
            )
        })
        .repeatedly()
        .build();
    let p = provider(&[&describe]);
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Throttled { .. }), "{e:?}");
    assert_eq!(describe.num_calls(), 1);
}

#[tokio::test]
async fn a_failed_update_reports_its_errors() {
    let describe = describe_rule(OLD, 100, OLD);
    let upd = mock!(Client::update_cluster_config).then_output(|| accepted("u1"));
    let poll = mock!(Client::describe_update)
        .sequence()
        .output(|| described(update("u1", UpdateStatus::InProgress)))
        .output(|| {
            described(
                Update::builder()
                    .id("u1")
                    .status(UpdateStatus::Failed)
                    .errors(
                        ErrorDetail::builder()
                            .error_code(ErrorCode::AccessDenied)
                            .error_message("The role is not authorized to update the endpoint")
                            .resource_ids("prod")
                            .build(),
                    )
                    .build(),
            )
        })
        .build();
    let p = provider(&[&describe, &upd, &poll]);
    let (o, _) = opts();
    let e = p.apply(&set(NEW), &o).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");
    assert!(msg.contains("u1") && msg.contains("Failed"), "{msg}");
    assert!(
        msg.contains("AccessDenied") && msg.contains("not authorized"),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_update_id_converges_by_reading_back() {
    // Like moto: an empty answer, and the cluster shows the new list a little later.
    let describe = describe_rule(OLD, 3, NEW);
    let upd = mock!(Client::update_cluster_config)
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    let poll =
        mock!(Client::describe_update).then_output(|| described(update("x", UpdateStatus::Failed)));
    let p = provider(&[&describe, &upd, &poll]);
    let (o, rec) = opts();
    let applied = p.apply(&set(NEW), &o).await.unwrap();
    assert!(applied.changed && !applied.pending);
    assert_eq!(upd.num_calls(), 1);
    assert_eq!(poll.num_calls(), 0, "no update id: nothing to poll");
    assert_eq!(
        describe.num_calls(),
        4,
        "1 before, 2 stale read-backs, 1 converged"
    );
    assert!(
        rec.0
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("confirming"))
    );
}

#[tokio::test]
async fn missing_update_id_without_convergence_is_an_error_after_the_bound() {
    let describe = describe_rule(OLD, 1000, OLD);
    let upd = mock!(Client::update_cluster_config)
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    let p = provider(&[&describe, &upd]);
    let (o, _) = opts();
    let e = p.apply(&set(NEW), &o).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Transient(m) if m.contains("read-backs")),
        "{e:?}"
    );
    assert_eq!(
        describe.num_calls(),
        1 + Tuning::fast().readback_attempts as usize
    );
}

#[tokio::test]
async fn no_wait_returns_pending_after_acceptance() {
    let describe = describe_rule(OLD, 100, OLD);
    let upd = mock!(Client::update_cluster_config).then_output(|| accepted("u9"));
    let poll = mock!(Client::describe_update)
        .then_output(|| described(update("u9", UpdateStatus::Successful)));
    let p = provider(&[&describe, &upd, &poll]);
    let o = ApplyOptions {
        wait: false,
        ..ApplyOptions::default()
    };
    let applied = p.apply(&set(NEW), &o).await.unwrap();
    assert!(applied.changed && applied.pending);
    assert!(applied.notes[0].contains("u9"));
    assert_eq!(poll.num_calls(), 0);
    assert_eq!(describe.num_calls(), 1);
}

#[tokio::test]
async fn ipv6_on_an_ipv4_cluster_is_refused_before_any_update() {
    let describe = describe_rule(OLD, 100, OLD);
    let upd = mock!(Client::update_cluster_config).then_output(|| accepted("u1"));
    let p = provider(&[&describe, &upd]);
    let (o, _) = opts();
    let e = p
        .apply(&set(&["2a00:1450::/32", "140.82.112.0/20"]), &o)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("ipFamily ipv4")),
        "{e:?}"
    );
    assert_eq!(upd.num_calls(), 0);
    // After the cluster was read, `check` knows the family too.
    assert!(!p.check(&set(&["2a00:1450::/32"])).is_empty());
}

#[tokio::test]
async fn reserved_ranges_are_refused_before_any_call() {
    let describe = describe_rule(OLD, 100, OLD);
    let upd = mock!(Client::update_cluster_config).then_output(|| accepted("u1"));
    let p = provider(&[&describe, &upd]);
    let (o, _) = opts();
    let e = p
        .apply(&set(&["10.0.0.0/16", "140.82.112.0/20"]), &o)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("10.0.0.0/16")),
        "{e:?}"
    );
    assert_eq!(upd.num_calls(), 0);
}

#[tokio::test]
async fn disable_on_an_ipv6_cluster_sends_both_families_and_skips_when_open() {
    let describe = mock!(Client::describe_cluster)
        .sequence()
        .output(|| cluster(NEW, true))
        .output(|| cluster(&["0.0.0.0/0", "::/0"], true))
        .repeatedly()
        .build();
    let sent = Sent::default();
    let upd = mock!(Client::update_cluster_config)
        .match_requests(sent.matcher())
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    let p = provider(&[&describe, &upd]);
    let (o, _) = opts();
    let applied = p.disable(&o).await.unwrap();
    assert!(applied.changed);
    assert_eq!(cidrs_of(&sent.all()[0]), vec!["0.0.0.0/0", "::/0"]);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    // Already unrestricted: no call.
    let applied = p.disable(&o).await.unwrap();
    assert!(!applied.changed);
    assert_eq!(upd.num_calls(), 1);
}

#[tokio::test]
async fn an_old_update_answered_for_a_reused_token_is_detected_and_resent() {
    // A -> B -> A: EKS answers the token of an earlier identical request with that old,
    // finished update; the cluster still holds the other list.
    let describe = describe_rule(OLD, 1 + 3, NEW);
    let sent = Sent::default();
    let upd = mock!(Client::update_cluster_config)
        .match_requests(sent.matcher())
        .sequence()
        .output(|| {
            UpdateClusterConfigOutput::builder()
                .update(update("ancient", UpdateStatus::Successful))
                .build()
        })
        .output(|| accepted("fresh"))
        .build();
    let ancient = mock!(Client::describe_update)
        .match_requests(|r| r.update_id() == Some("ancient"))
        .then_output(|| described(update("ancient", UpdateStatus::Successful)));
    let fresh = mock!(Client::describe_update)
        .match_requests(|r| r.update_id() == Some("fresh"))
        .then_output(|| described(update("fresh", UpdateStatus::Successful)));
    let p = provider(&[&describe, &upd, &ancient, &fresh]);
    let (o, _) = opts();
    let applied = p.apply(&set(NEW), &o).await.unwrap();
    assert!(applied.changed);
    let sent = sent.all();
    assert_eq!(sent.len(), 2);
    assert_ne!(
        sent[0].client_request_token(),
        sent[1].client_request_token()
    );
}

#[tokio::test]
async fn errors_map_to_typed_provider_errors() {
    let describe = mock!(Client::describe_cluster).then_error(|| {
        DescribeClusterError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("No cluster found for name: prod.")
                .build(),
        )
    });
    let p = provider(&[&describe]);
    let e = p.current().await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::NotFound(m) if m.contains("No cluster found")),
        "{e:?}"
    );
    assert_eq!(describe.num_calls(), 1, "not found is not retried");

    let describe = mock!(Client::describe_cluster).then_error(|| {
        DescribeClusterError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User is not authorized to perform: eks:DescribeCluster")
                .build(),
        )
    });
    let p = provider(&[&describe]);
    let e = p.current().await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Auth(m) if m.contains("eks:DescribeCluster")),
        "{e:?}"
    );

    let describe = describe_rule(OLD, 100, OLD);
    let upd = mock!(Client::update_cluster_config).then_error(|| {
        UpdateClusterConfigError::InvalidParameterException(
            InvalidParameterException::builder()
                .message("The following CIDRs are invalid in publicAccessCidrs: [151.101.0.0/16]")
                .build(),
        )
    });
    let p = provider(&[&describe, &upd]);
    let (o, _) = opts();
    let e = p.apply(&set(NEW), &o).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("invalid in publicAccessCidrs: [151.101.0.0/16]")),
        "{e:?}"
    );
    assert_eq!(upd.num_calls(), 1, "invalid is not retried");
}

#[tokio::test]
async fn current_reports_details_and_warnings() {
    let describe = mock!(Client::describe_cluster).then_output(|| {
        let vpc = VpcConfigResponse::builder()
            .endpoint_public_access(false)
            .endpoint_private_access(true)
            .public_access_cidrs("140.82.112.0/20")
            .build();
        DescribeClusterOutput::builder()
            .cluster(
                Cluster::builder()
                    .name("prod")
                    .status(ClusterStatus::Active)
                    .resources_vpc_config(vpc)
                    .build(),
            )
            .build()
    });
    let p = provider(&[&describe]);
    let st = p.current().await.unwrap();
    assert_eq!(
        st.restriction,
        Restriction::Ranges(set(&["140.82.112.0/20"]))
    );
    assert!(
        st.details
            .contains(&("endpointPublicAccess".into(), "false".into()))
    );
    assert!(
        st.details
            .contains(&("endpointPrivateAccess".into(), "true".into()))
    );
    assert_eq!(
        st.warnings,
        vec!["public endpoint access is off: the list has no effect".to_string()]
    );
}

#[tokio::test]
async fn a_no_op_refusal_after_a_concurrent_change_counts_as_in_sync() {
    // Read OLD, someone else sets NEW, our update is refused as a no-op (400).
    let describe = describe_rule(OLD, 1, NEW);
    let upd = mock!(Client::update_cluster_config).then_error(|| {
        UpdateClusterConfigError::InvalidParameterException(
            InvalidParameterException::builder()
                .message("Cluster is already at the desired configuration with endpointPrivateAccess: true, endpointPublicAccess: true, publicAccessCidrs: [140.82.112.0/20, 151.101.0.0/16]")
                .build(),
        )
    });
    let p = provider(&[&describe, &upd]);
    let (o, _) = opts();
    let applied = p.apply(&set(NEW), &o).await.unwrap();
    assert!(!applied.changed);
    assert_eq!(upd.num_calls(), 1);
    assert_eq!(describe.num_calls(), 2);
}
