//! Maps AWS SDK errors of the EKS operations to rangekeeper's typed [`ProviderError`].

use std::error::Error as StdError;

use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eks::operation::describe_cluster::DescribeClusterError;
use aws_sdk_eks::operation::describe_update::DescribeUpdateError;
use aws_sdk_eks::operation::list_clusters::ListClustersError;
use aws_sdk_eks::operation::list_updates::ListUpdatesError;
use aws_sdk_eks::operation::tag_resource::TagResourceError;
use aws_sdk_eks::operation::untag_resource::UntagResourceError;
use aws_sdk_eks::operation::update_cluster_config::UpdateClusterConfigError;
use rangekeeper_provider::ProviderError;

/// What kind of failure a modeled EKS error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    NotFound,
    Invalid,
    InUse,
    Throttled,
    Server,
    Auth,
}

/// The modeled error variants of one operation, classified.
pub(crate) trait Modeled {
    fn modeled(&self) -> Option<Class>;
}

impl Modeled for DescribeClusterError {
    fn modeled(&self) -> Option<Class> {
        match self {
            Self::ResourceNotFoundException(_) => Some(Class::NotFound),
            Self::ServerException(_) | Self::ServiceUnavailableException(_) => Some(Class::Server),
            Self::ClientException(_) => Some(Class::Invalid),
            _ => None,
        }
    }
}

impl Modeled for ListClustersError {
    fn modeled(&self) -> Option<Class> {
        match self {
            Self::ServerException(_) | Self::ServiceUnavailableException(_) => Some(Class::Server),
            Self::InvalidParameterException(_) | Self::ClientException(_) => Some(Class::Invalid),
            _ => None,
        }
    }
}

impl Modeled for UpdateClusterConfigError {
    fn modeled(&self) -> Option<Class> {
        match self {
            Self::ResourceNotFoundException(_) => Some(Class::NotFound),
            Self::InvalidParameterException(_)
            | Self::InvalidRequestException(_)
            | Self::ClientException(_) => Some(Class::Invalid),
            Self::ResourceInUseException(_) => Some(Class::InUse),
            Self::ServerException(_) => Some(Class::Server),
            Self::ThrottlingException(_) => Some(Class::Throttled),
            _ => None,
        }
    }
}

impl Modeled for DescribeUpdateError {
    fn modeled(&self) -> Option<Class> {
        match self {
            Self::ResourceNotFoundException(_) => Some(Class::NotFound),
            Self::InvalidParameterException(_) | Self::ClientException(_) => Some(Class::Invalid),
            Self::ServerException(_) => Some(Class::Server),
            _ => None,
        }
    }
}

impl Modeled for ListUpdatesError {
    fn modeled(&self) -> Option<Class> {
        match self {
            Self::ResourceNotFoundException(_) => Some(Class::NotFound),
            Self::InvalidParameterException(_) | Self::ClientException(_) => Some(Class::Invalid),
            Self::ServerException(_) => Some(Class::Server),
            _ => None,
        }
    }
}

impl Modeled for TagResourceError {
    fn modeled(&self) -> Option<Class> {
        match self {
            Self::NotFoundException(_) => Some(Class::NotFound),
            Self::BadRequestException(_) => Some(Class::Invalid),
            _ => None,
        }
    }
}

impl Modeled for UntagResourceError {
    fn modeled(&self) -> Option<Class> {
        match self {
            Self::NotFoundException(_) => Some(Class::NotFound),
            Self::BadRequestException(_) => Some(Class::Invalid),
            _ => None,
        }
    }
}

/// Classify an unmodeled error by its AWS error code.
fn by_code(code: &str) -> Option<Class> {
    Some(match code {
        "ResourceNotFoundException" => Class::NotFound,
        "InvalidParameterException"
        | "InvalidRequestException"
        | "ClientException"
        | "ValidationException" => Class::Invalid,
        "ResourceInUseException" => Class::InUse,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown"
        | "PriorRequestNotComplete" => Class::Throttled,
        "ServerException"
        | "ServiceUnavailableException"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "InternalServerError" => Class::Server,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException"
        | "NotAuthorized"
        | "UnauthorizedOperation"
        | "AuthFailure" => Class::Auth,
        _ => return None,
    })
}

/// Turn an SDK error of operation `op` on `cluster` into a [`ProviderError`].
pub(crate) fn map_sdk_error<E, R>(op: &str, cluster: &str, err: SdkError<E, R>) -> ProviderError
where
    E: Modeled + ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    map_sdk_error_on(op, &format!("cluster `{cluster}`"), err)
}

/// Turn an SDK error of operation `op` on `subject` (``cluster `prod` ``, ``region
/// `eu-west-1` ``) into a [`ProviderError`].
pub(crate) fn map_sdk_error_on<E, R>(op: &str, subject: &str, err: SdkError<E, R>) -> ProviderError
where
    E: Modeled + ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let status = ctx.raw().status_code();
            let text = match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (None, Some(msg)) => msg.to_owned(),
                _ => e.to_string(),
            };
            let class = e
                .modeled()
                .or_else(|| e.code().and_then(by_code))
                .or(match status {
                    401 | 403 => Some(Class::Auth),
                    429 => Some(Class::Throttled),
                    500..=599 => Some(Class::Server),
                    _ => None,
                });
            let text = format!("EKS {op} on {subject}: {text}");
            match class {
                Some(Class::NotFound) => ProviderError::NotFound(text),
                Some(Class::Invalid) => ProviderError::Invalid(text),
                Some(Class::InUse) => ProviderError::Conflict(text),
                Some(Class::Throttled) => ProviderError::Throttled {
                    message: text,
                    retry_after: None,
                },
                Some(Class::Server) => ProviderError::Transient(text),
                Some(Class::Auth) => ProviderError::Auth(text),
                None => ProviderError::Other(format!("{text} (HTTP {status})")),
            }
        }
        SdkError::TimeoutError(_) => {
            ProviderError::Transient(format!("EKS {op} on {subject} timed out"))
        }
        SdkError::DispatchFailure(d) => {
            let text = format!("EKS {op} on {subject}: {}", chain(&err));
            if d.is_timeout() || d.is_io() {
                ProviderError::Transient(text)
            } else if mentions_credentials(&text) {
                ProviderError::Auth(format!("{text}. {AWS_AUTH_HINT}"))
            } else if d.is_user() {
                ProviderError::Other(text)
            } else {
                ProviderError::Transient(text)
            }
        }
        SdkError::ResponseError(_) => ProviderError::Transient(format!(
            "EKS {op} on {subject}: unreadable response: {}",
            chain(&err)
        )),
        _ => {
            let text = format!("EKS {op} on {subject}: {}", chain(&err));
            if mentions_credentials(&text) {
                ProviderError::Auth(format!("{text}. {AWS_AUTH_HINT}"))
            } else {
                ProviderError::Other(text)
            }
        }
    }
}

/// What to do about missing or unusable AWS credentials.
const AWS_AUTH_HINT: &str = "To authenticate: set `profile:` on the target (an SSO or assume-role profile; `aws sso login --profile NAME` first), export AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, use web identity (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, as GitHub OIDC does), or run with an instance or pod role";

/// An error and its sources, joined by `: ` (repeats dropped), without debug dumps.
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
pub(crate) trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_eks::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify() {
        assert_eq!(by_code("ThrottlingException"), Some(Class::Throttled));
        assert_eq!(by_code("AccessDeniedException"), Some(Class::Auth));
        assert_eq!(by_code("ResourceInUseException"), Some(Class::InUse));
        assert_eq!(by_code("InvalidParameterException"), Some(Class::Invalid));
        assert_eq!(by_code("SomethingNew"), None);
    }

    #[test]
    fn credential_messages_are_recognized() {
        assert!(mentions_credentials(
            "dispatch failure: other: no credentials in the property bag"
        ));
        assert!(!mentions_credentials("connection refused"));
    }
}
