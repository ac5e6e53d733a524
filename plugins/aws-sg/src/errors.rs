//! AWS SDK errors of the EC2 calls, as rangekeeper's typed [`ProviderError`]s.
//!
//! EC2 models almost no errors: each failure is told by its error code (`RequestLimitExceeded`,
//! `UnauthorizedOperation`, `InvalidGroup.NotFound`, ...), then by the HTTP status.

use std::error::Error as StdError;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use rangekeeper_provider::ProviderError;

/// The EC2 operations the plugin calls; each is also the IAM action it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    DescribeSecurityGroups,
    DescribeSecurityGroupRules,
    AuthorizeSecurityGroupIngress,
    RevokeSecurityGroupIngress,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::DescribeSecurityGroups => "DescribeSecurityGroups",
            Op::DescribeSecurityGroupRules => "DescribeSecurityGroupRules",
            Op::AuthorizeSecurityGroupIngress => "AuthorizeSecurityGroupIngress",
            Op::RevokeSecurityGroupIngress => "RevokeSecurityGroupIngress",
        }
    }

    /// Every IAM action the plugin needs, for the example policy and messages.
    pub const ALL: [Op; 4] = [
        Op::DescribeSecurityGroups,
        Op::DescribeSecurityGroupRules,
        Op::AuthorizeSecurityGroupIngress,
        Op::RevokeSecurityGroupIngress,
    ];
}

/// What kind of failure an EC2 error code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    NotFound,
    Invalid,
    Quota,
    Conflict,
    Throttled,
    Server,
    /// Credentials missing, expired or rejected.
    Credentials,
    /// Authenticated, but not allowed to make the call.
    Denied,
}

fn by_code(code: &str) -> Option<Class> {
    Some(match code {
        "InvalidGroup.NotFound" | "InvalidGroupId.NotFound" => Class::NotFound,
        "RulesPerSecurityGroupLimitExceeded" | "SecurityGroupLimitExceeded" => Class::Quota,
        // Someone added or removed the same rule between our read and our write: re-read.
        "InvalidPermission.Duplicate"
        | "InvalidPermission.NotFound"
        | "InvalidSecurityGroupRuleId.NotFound"
        | "IncorrectState"
        | "ConcurrentModification" => Class::Conflict,
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "SlowDown"
        | "PriorRequestNotComplete" => Class::Throttled,
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable"
        | "ServerInternal" => Class::Server,
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "Blocked"
        | "OptInRequired" => Class::Denied,
        "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired"
        | "MissingAuthenticationToken"
        | "UnrecognizedClientException" => Class::Credentials,
        c if c.starts_with("InvalidParameter")
            || c.starts_with("InvalidGroupId.")
            || c.starts_with("InvalidPermission.")
            || c == "MissingParameter"
            || c == "InvalidRequest"
            || c == "ValidationError" =>
        {
            Class::Invalid
        }
        _ => return None,
    })
}

/// What to do about missing or unusable AWS credentials.
pub const AWS_AUTH_HINT: &str = "To authenticate: set `profile:` on the target (an SSO or assume-role profile; `aws sso login --profile NAME` first), export AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, use web identity (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE), or run with an instance or pod role";

/// Where a call went, for messages: the group and the AWS identity.
pub struct Context<'a> {
    pub group_id: &'a str,
    /// `region `eu-west-1`, the default credential chain`.
    pub identity: &'a str,
    pub max_rules: usize,
}

/// Turn an SDK error of `op` into a [`ProviderError`].
pub fn map_sdk_error<E, R>(op: Op, cx: &Context<'_>, err: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    let group = cx.group_id;
    let head = format!("EC2 {} on security group `{group}`", op.name());
    match &err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let status = ctx.raw().status_code();
            let text = match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_owned(),
                (None, Some(msg)) => msg.to_owned(),
                (None, None) => format!("HTTP {status}"),
            };
            let class = e.code().and_then(by_code).or(match status {
                401 => Some(Class::Credentials),
                403 => Some(Class::Denied),
                429 => Some(Class::Throttled),
                500..=599 => Some(Class::Server),
                _ => None,
            });
            let text = format!("{head}: {text}");
            match class {
                Some(Class::NotFound) => ProviderError::NotFound(format!(
                    "security group `{group}` does not exist ({}): {text}",
                    cx.identity
                )),
                Some(Class::Invalid) => ProviderError::Invalid(text),
                Some(Class::Quota) => ProviderError::Invalid(format!(
                    "{text}. The group's rule quota is lower than `maxRules` {} says: set \
                     `maxRules` to your account's quota of inbound rules per security group",
                    cx.max_rules
                )),
                Some(Class::Conflict) => ProviderError::Conflict(format!(
                    "{text} (the group changed while rangekeeper was changing it)"
                )),
                Some(Class::Throttled) => ProviderError::Throttled {
                    message: text,
                    retry_after: None,
                },
                Some(Class::Server) => ProviderError::Transient(text),
                Some(Class::Denied) => ProviderError::Auth(format!(
                    "{text}. The caller ({}) needs the IAM permission `ec2:{}` on this group",
                    cx.identity,
                    op.name()
                )),
                Some(Class::Credentials) => {
                    ProviderError::Auth(format!("{text} ({}). {AWS_AUTH_HINT}", cx.identity))
                }
                None => ProviderError::Other(format!("{text} (HTTP {status})")),
            }
        }
        SdkError::TimeoutError(_) => ProviderError::Transient(format!("{head} timed out")),
        SdkError::DispatchFailure(d) => {
            let text = format!("{head}: {}", chain(&err));
            if d.is_timeout() || d.is_io() {
                ProviderError::Transient(text)
            } else if mentions_credentials(&text) {
                ProviderError::Auth(format!("{text} ({}). {AWS_AUTH_HINT}", cx.identity))
            } else if d.is_user() {
                ProviderError::Other(text)
            } else {
                ProviderError::Transient(text)
            }
        }
        SdkError::ResponseError(_) => {
            ProviderError::Transient(format!("{head}: unreadable response: {}", chain(&err)))
        }
        _ => {
            let text = format!("{head}: {}", chain(&err));
            if mentions_credentials(&text) {
                ProviderError::Auth(format!("{text} ({}). {AWS_AUTH_HINT}", cx.identity))
            } else {
                ProviderError::Other(text)
            }
        }
    }
}

/// An error and its sources, joined by `: ` (repeats dropped).
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Whether an SDK error chain is about missing or unusable credentials (identity resolution
/// fails before any request is sent, so there is no error code to go by).
fn mentions_credentials(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("credential") || t.contains("identity") || t.contains("sso") || t.contains("token")
}

/// The HTTP status of a raw response (abstracted so the mapping stays generic).
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_ec2::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify() {
        assert_eq!(by_code("RequestLimitExceeded"), Some(Class::Throttled));
        assert_eq!(by_code("UnauthorizedOperation"), Some(Class::Denied));
        assert_eq!(by_code("AuthFailure"), Some(Class::Credentials));
        assert_eq!(by_code("InvalidGroup.NotFound"), Some(Class::NotFound));
        assert_eq!(by_code("InvalidGroupId.Malformed"), Some(Class::Invalid));
        assert_eq!(
            by_code("InvalidPermission.Duplicate"),
            Some(Class::Conflict)
        );
        assert_eq!(by_code("InvalidPermission.Malformed"), Some(Class::Invalid));
        assert_eq!(
            by_code("RulesPerSecurityGroupLimitExceeded"),
            Some(Class::Quota)
        );
        assert_eq!(by_code("InternalError"), Some(Class::Server));
        assert_eq!(by_code("SomethingNew"), None);
    }

    #[test]
    fn every_operation_names_its_iam_action() {
        let names: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(
            names,
            [
                "DescribeSecurityGroups",
                "DescribeSecurityGroupRules",
                "AuthorizeSecurityGroupIngress",
                "RevokeSecurityGroupIngress"
            ]
        );
    }
}
