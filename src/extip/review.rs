//! AdmissionReview `admission.k8s.io/v1` for Services: the request read once into what the
//! rules need, and the response the API server expects.
//!
//! A body that is not an AdmissionReview (not JSON, another apiVersion or kind, no request,
//! no uid) is an HTTP 400 the API server logs; a review whose object is not a Service (or
//! whose `spec.externalIPs` is not a list of strings) is answered, denied with code 400, as
//! externalip-webhook answers an object it cannot decode.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Rules, Verdict};

pub const API_VERSION: &str = "admission.k8s.io/v1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReview {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<RawRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    uid: Option<String>,
    kind: Option<RawKind>,
    operation: Option<String>,
    #[serde(default)]
    user_info: RawUser,
    object: Option<Value>,
}

#[derive(Deserialize, Default)]
struct RawKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize, Default)]
struct RawUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawService {
    #[serde(default)]
    spec: RawSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(default, rename = "externalIPs")]
    external_ips: Option<Vec<String>>,
}

/// A review request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub uid: String,
    pub user: String,
    pub groups: Vec<String>,
    pub subject: Subject,
}

/// What the request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A Service being created or updated, with its `spec.externalIPs`.
    Service { external_ips: Vec<String> },
    /// An operation that sets nothing (DELETE, CONNECT): allowed.
    NoObject,
    /// A review rangekeeper cannot judge: denied with code 400 and this message.
    Undecodable(String),
}

/// Why a body is not an AdmissionReview (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

/// Read an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<Request, BadReview> {
    let raw: RawReview = serde_json::from_slice(body)
        .map_err(|e| BadReview(format!("the body is not an AdmissionReview: {e}")))?;
    match raw.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(BadReview(format!(
                "apiVersion {} is not served: register the webhook with admissionReviewVersions [\"v1\"]",
                super::go_quote(other)
            )));
        }
        None => return Err(BadReview("the AdmissionReview has no apiVersion".into())),
    }
    if raw.kind.as_deref() != Some("AdmissionReview") {
        return Err(BadReview(format!(
            "kind {} is not AdmissionReview",
            super::go_quote(raw.kind.as_deref().unwrap_or(""))
        )));
    }
    let req = raw
        .request
        .ok_or_else(|| BadReview("the AdmissionReview has no request".into()))?;
    let uid = req
        .uid
        .filter(|u| !u.is_empty())
        .ok_or_else(|| BadReview("the AdmissionReview request has no uid".into()))?;
    let kind = req.kind.unwrap_or_default();
    let subject = match (req.operation.as_deref(), req.object) {
        (Some("DELETE" | "CONNECT"), _) => Subject::NoObject,
        _ if !(kind.group.is_empty() && kind.kind == "Service") => Subject::Undecodable(format!(
            "rangekeeper judges Services only, not {}",
            if kind.group.is_empty() {
                kind.kind.clone()
            } else {
                format!("{}/{}", kind.group, kind.kind)
            }
        )),
        (_, None | Some(Value::Null)) => {
            Subject::Undecodable("the AdmissionReview request has no object".into())
        }
        (_, Some(obj)) => match serde_json::from_value::<RawService>(obj) {
            Ok(s) => Subject::Service {
                external_ips: s.spec.external_ips.unwrap_or_default(),
            },
            Err(e) => Subject::Undecodable(format!("the object is not a Service: {e}")),
        },
    };
    Ok(Request {
        uid,
        user: req.user_info.username,
        groups: req.user_info.groups,
        subject,
    })
}

/// The verdict on a request (none for a review that could not be judged: denied with code
/// 400), and the AdmissionReview answering it.
pub fn answer(rules: &Rules, req: &Request) -> (Option<Verdict>, Value) {
    let verdict = match &req.subject {
        Subject::Service { external_ips } => rules.review(external_ips, &req.user, &req.groups),
        Subject::NoObject => Verdict::Allowed,
        Subject::Undecodable(m) => {
            return (
                None,
                review(json!({
                    "uid": req.uid,
                    "allowed": false,
                    "status": { "code": 400, "message": m },
                })),
            );
        }
    };
    let response = match &verdict {
        Verdict::Allowed => json!({ "uid": req.uid, "allowed": true }),
        Verdict::Denied {
            message, reason, ..
        } => json!({
            "uid": req.uid,
            "allowed": false,
            "status": { "code": 403, "reason": "Forbidden", "message": message },
            "auditAnnotations": { "error": reason },
        }),
    };
    (Some(verdict), review(response))
}

fn review(response: Value) -> Value {
    json!({ "apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(object: Value, user: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": API_VERSION, "kind": "AdmissionReview",
            "request": {
                "uid": "a2d5bf04-75e5-4f30-9ec6-e648611f22a0",
                "kind": {"group": "", "version": "v1", "kind": "Service"},
                "resource": {"group": "", "version": "v1", "resource": "services"},
                "operation": "CREATE",
                "userInfo": {"username": user, "groups": ["system:authenticated"]},
                "object": object,
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_service_review_is_read() {
        let r = parse(&body(
            json!({"apiVersion": "v1", "kind": "Service", "spec": {"externalIPs": ["10.0.0.1"]}}),
            "alice",
        ))
        .unwrap();
        assert_eq!(r.user, "alice");
        assert_eq!(
            r.subject,
            Subject::Service {
                external_ips: vec!["10.0.0.1".into()]
            }
        );
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        for b in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"x\"}}",
            b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
            b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{}}",
        ] {
            assert!(parse(b).is_err(), "{}", String::from_utf8_lossy(b));
        }
        let r = parse(&body(json!({"spec": {"externalIPs": "10.0.0.1"}}), "u")).unwrap();
        assert!(matches!(r.subject, Subject::Undecodable(_)));
    }
}
