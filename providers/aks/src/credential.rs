//! Entra ID access tokens for ARM: a redacting token type and the credential chain users
//! expect from other Azure tools (explicit token, service principal, workload identity,
//! managed identity, then `az`/`azd`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::CloudConfiguration;
use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_core::time::OffsetDateTime;
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use rangekeeper_provider::{ProviderError, Secret};
use tokio::sync::Mutex;

use crate::config::Cloud;

/// The variable holding a bearer token already issued to the pipeline.
pub const ACCESS_TOKEN_VAR: &str = "RANGEKEEPER_AZURE_ACCESS_TOKEN";

/// How long one credential may take to produce a token (the `az` CLI can be slow).
const SOURCE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the managed-identity endpoint probe may take before we decide we are not on Azure.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
const IMDS_ADDR: &str = "169.254.169.254:80";
/// Tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// An access token, kept in the one redacting [`Secret`] type: `Debug` shows `***` and
/// there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Secret<String>);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(Secret::from(token.into()))
    }

    /// The `Authorization` header value, marked sensitive so HTTP logging hides it.
    pub fn header_value(&self) -> Result<reqwest::header::HeaderValue, ProviderError> {
        let mut v =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.0.as_ref().expose()))
                .map_err(|_| {
                    ProviderError::Auth(
                        "the access token contains characters not allowed in an HTTP header".into(),
                    )
                })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// `text` without this token (or anything shaped like a bearer token): for error bodies
    /// of servers that echo the request.
    pub fn scrub(&self, text: &str) -> String {
        self.0.scrub_from(text)
    }

    /// The raw token, for this crate's own tests.
    #[cfg(test)]
    fn expose(&self) -> &str {
        self.0.as_ref().expose()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// Something that hands out ARM bearer tokens.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    async fn token(&self, scope: &str) -> Result<BearerToken, ProviderError>;
}

/// A fixed token (from [`ACCESS_TOKEN_VAR`], or a test).
#[derive(Debug, Clone)]
pub struct StaticToken(BearerToken);

impl StaticToken {
    pub fn new(token: BearerToken) -> Self {
        StaticToken(token)
    }
}

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn token(&self, _scope: &str) -> Result<BearerToken, ProviderError> {
        Ok(self.0.clone())
    }
}

/// The credential environment variables, read once (so the chain is testable without
/// touching the process environment).
#[derive(Default, Clone)]
pub struct CredentialEnv {
    pub access_token: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_certificate_path: Option<String>,
    pub client_certificate_password: Option<String>,
    pub federated_token_file: Option<String>,
    /// `IDENTITY_ENDPOINT` or `MSI_ENDPOINT` is set (App Service, Functions, Arc, ML).
    pub managed_identity_endpoint: bool,
}

impl fmt::Debug for CredentialEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialEnv")
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("client_certificate_path", &self.client_certificate_path)
            .field("federated_token_file", &self.federated_token_file)
            .field("managed_identity_endpoint", &self.managed_identity_endpoint)
            .finish_non_exhaustive()
    }
}

impl CredentialEnv {
    /// Read the standard `AZURE_*` variables and [`ACCESS_TOKEN_VAR`]; empty values count as unset.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        CredentialEnv {
            access_token: var(ACCESS_TOKEN_VAR),
            tenant_id: var("AZURE_TENANT_ID"),
            client_id: var("AZURE_CLIENT_ID"),
            client_secret: var("AZURE_CLIENT_SECRET"),
            client_certificate_path: var("AZURE_CLIENT_CERTIFICATE_PATH"),
            client_certificate_password: var("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
            federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE"),
            managed_identity_endpoint: var("IDENTITY_ENDPOINT").is_some()
                || var("MSI_ENDPOINT").is_some(),
        }
    }
}

enum SourceKind {
    Static(BearerToken),
    Azure(Arc<dyn TokenCredential>),
    /// Managed identity; probe IMDS first unless an identity endpoint is configured.
    Managed {
        cred: Arc<dyn TokenCredential>,
        probe: bool,
    },
    /// Not configured, or configured wrongly: the reason, for the "tried" list.
    Unavailable(String),
}

struct Source {
    name: &'static str,
    kind: SourceKind,
}

struct Cached {
    token: BearerToken,
    scope: String,
    expires_on: Option<OffsetDateTime>,
    source: usize,
}

/// The credential chain: the first source that yields a token is used from then on.
pub struct CredentialChain {
    sources: Vec<Source>,
    cache: Mutex<Option<Cached>>,
}

impl fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialChain")
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl CredentialChain {
    /// Compose the chain from the environment, in the order users expect:
    /// 1. `RANGEKEEPER_AZURE_ACCESS_TOKEN` (a bearer token given directly);
    /// 2. service principal: `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET`
    ///    (or `AZURE_CLIENT_CERTIFICATE_PATH`, a PKCS#12 file, with the `client-certificate` feature);
    /// 3. workload identity: `AZURE_FEDERATED_TOKEN_FILE` (+ tenant and client id);
    /// 4. managed identity (user-assigned when `AZURE_CLIENT_ID` is set alone);
    /// 5. developer tools: `az`, then `azd`.
    pub fn from_env(env: &CredentialEnv, cloud: Cloud) -> Self {
        let client_options = || ClientOptions {
            cloud: match cloud {
                // None keeps AZURE_AUTHORITY_HOST working for the public cloud.
                Cloud::Public => None,
                Cloud::Usgov => Some(Arc::new(CloudConfiguration::AzureGovernment)),
                Cloud::China => Some(Arc::new(CloudConfiguration::AzureChina)),
            },
            ..Default::default()
        };
        let mut sources = Vec::new();

        sources.push(Source {
            name: ACCESS_TOKEN_VAR,
            kind: match &env.access_token {
                Some(t) => SourceKind::Static(BearerToken::new(t.trim())),
                None => SourceKind::Unavailable("not set".into()),
            },
        });

        let sp_name = "service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH)";
        let sp_kind = match (
            &env.tenant_id,
            &env.client_id,
            &env.client_secret,
            &env.client_certificate_path,
        ) {
            (Some(tenant), Some(client), Some(secret), _) => match ClientSecretCredential::new(
                tenant,
                client.clone(),
                azure_core::credentials::Secret::new(secret.clone()),
                Some(ClientSecretCredentialOptions {
                    client_options: client_options(),
                }),
            ) {
                Ok(c) => SourceKind::Azure(c),
                Err(e) => SourceKind::Unavailable(format!("invalid: {e}")),
            },
            (Some(tenant), Some(client), None, Some(path)) => certificate_source(
                tenant,
                client,
                path,
                env.client_certificate_password.as_deref(),
                client_options(),
            ),
            (None, None, None, None) => SourceKind::Unavailable("not set".into()),
            _ if env.client_secret.is_none() && env.client_certificate_path.is_none() => {
                SourceKind::Unavailable(
                    "no AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH".into(),
                )
            }
            _ => SourceKind::Unavailable(
                "AZURE_TENANT_ID and AZURE_CLIENT_ID must both be set".into(),
            ),
        };
        sources.push(Source {
            name: sp_name,
            kind: sp_kind,
        });

        let wi_kind = match (&env.federated_token_file, &env.tenant_id, &env.client_id) {
            (None, _, _) => SourceKind::Unavailable("AZURE_FEDERATED_TOKEN_FILE not set".into()),
            (Some(file), Some(tenant), Some(client)) => {
                match WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    client_id: Some(client.clone()),
                    tenant_id: Some(tenant.clone()),
                    token_file_path: Some(file.into()),
                    credential_options: azure_identity::ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                })) {
                    Ok(c) => SourceKind::Azure(c),
                    Err(e) => SourceKind::Unavailable(format!("invalid: {e}")),
                }
            }
            (Some(_), _, _) => {
                SourceKind::Unavailable("AZURE_TENANT_ID and AZURE_CLIENT_ID must be set".into())
            }
        };
        sources.push(Source {
            name: "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
            kind: wi_kind,
        });

        let user_assigned = match (
            &env.client_id,
            &env.client_secret,
            &env.client_certificate_path,
            &env.federated_token_file,
        ) {
            (Some(id), None, None, None) => Some(UserAssignedId::ClientId(id.clone())),
            _ => None,
        };
        let mi_kind = match ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: user_assigned,
            client_options: client_options(),
        })) {
            Ok(c) => SourceKind::Managed {
                cred: c,
                probe: !env.managed_identity_endpoint,
            },
            Err(e) => SourceKind::Unavailable(e.to_string()),
        };
        sources.push(Source {
            name: "managed identity",
            kind: mi_kind,
        });

        let dev_kind = match DeveloperToolsCredential::new(None) {
            Ok(c) => SourceKind::Azure(c),
            Err(e) => SourceKind::Unavailable(e.to_string()),
        };
        sources.push(Source {
            name: "developer tools (az, then azd)",
            kind: dev_kind,
        });

        CredentialChain {
            sources,
            cache: Mutex::new(None),
        }
    }

    async fn try_source(
        &self,
        source: &Source,
        scope: &str,
    ) -> Result<(BearerToken, Option<OffsetDateTime>), String> {
        let cred = match &source.kind {
            SourceKind::Static(t) => return Ok((t.clone(), None)),
            SourceKind::Unavailable(why) => return Err(why.clone()),
            SourceKind::Azure(c) => c,
            SourceKind::Managed { cred, probe } => {
                if *probe && !imds_reachable().await {
                    return Err("the instance metadata endpoint (169.254.169.254) is not reachable: not running on Azure".into());
                }
                cred
            }
        };
        match tokio::time::timeout(SOURCE_TIMEOUT, cred.get_token(&[scope], None)).await {
            Err(_) => Err(format!("no token within {}s", SOURCE_TIMEOUT.as_secs())),
            Ok(Err(e)) => Err(one_line(&e.to_string())),
            Ok(Ok(tok)) => Ok((BearerToken::new(tok.token.secret()), Some(tok.expires_on))),
        }
    }
}

/// The credential chain, assembled on the first token request: assembling it builds an HTTP
/// pipeline per credential (each loading the system's root certificates), a cost that
/// commands which never call ARM (`validate`) must not pay.
pub struct LazyChain {
    env: CredentialEnv,
    cloud: Cloud,
    chain: std::sync::OnceLock<CredentialChain>,
}

impl LazyChain {
    pub fn new(env: CredentialEnv, cloud: Cloud) -> Self {
        LazyChain {
            env,
            cloud,
            chain: std::sync::OnceLock::new(),
        }
    }
}

impl fmt::Debug for LazyChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyChain")
            .field("env", &self.env)
            .field("assembled", &self.chain.get().is_some())
            .finish()
    }
}

#[async_trait::async_trait]
impl TokenSource for LazyChain {
    async fn token(&self, scope: &str) -> Result<BearerToken, ProviderError> {
        self.chain
            .get_or_init(|| CredentialChain::from_env(&self.env, self.cloud))
            .token(scope)
            .await
    }
}

#[async_trait::async_trait]
impl TokenSource for CredentialChain {
    async fn token(&self, scope: &str) -> Result<BearerToken, ProviderError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            let fresh = c
                .expires_on
                .is_none_or(|exp| exp - EXPIRY_MARGIN > OffsetDateTime::now_utc());
            if c.scope == scope && fresh {
                return Ok(c.token.clone());
            }
        }
        // Once a source has worked, stay with it (like DeveloperToolsCredential does).
        let order: Vec<usize> = match cache.as_ref() {
            Some(c) => vec![c.source],
            None => (0..self.sources.len()).collect(),
        };
        let mut tried = Vec::new();
        for i in order {
            let Some(source) = self.sources.get(i) else {
                continue;
            };
            match self.try_source(source, scope).await {
                Ok((token, expires_on)) => {
                    tracing::debug!(credential = source.name, "got an ARM access token");
                    *cache = Some(Cached {
                        token: token.clone(),
                        scope: scope.to_owned(),
                        expires_on,
                        source: i,
                    });
                    return Ok(token);
                }
                Err(why) => tried.push(format!("{}: {why}", source.name)),
            }
        }
        Err(ProviderError::Auth(format!(
            "no Azure credential produced a token for {scope}; tried: {}. To authenticate: run `az login` (a developer machine), set AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET (a service principal) or AZURE_FEDERATED_TOKEN_FILE (workload identity, GitHub OIDC), run on Azure with a managed identity, or give a token in {ACCESS_TOKEN_VAR}",
            tried.join("; ")
        )))
    }
}

/// An error text on one line (credential errors span several), at most 600 characters.
fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("To troubleshoot"))
        .collect::<Vec<_>>()
        .join(" ");
    if joined.chars().count() > 600 {
        let cut: String = joined.chars().take(600).collect();
        format!("{cut}...")
    } else {
        joined
    }
}

async fn imds_reachable() -> bool {
    let Ok(addr) = IMDS_ADDR.parse::<SocketAddr>() else {
        return false;
    };
    matches!(
        tokio::time::timeout(IMDS_PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[cfg(feature = "client-certificate")]
fn certificate_source(
    tenant: &str,
    client: &str,
    path: &str,
    password: Option<&str>,
    client_options: ClientOptions,
) -> SourceKind {
    use azure_core::credentials::SecretBytes;
    use azure_identity::{ClientCertificateCredential, ClientCertificateCredentialOptions};
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return SourceKind::Unavailable(format!("cannot read {path}: {e}")),
    };
    match ClientCertificateCredential::new(
        tenant.to_owned(),
        client.to_owned(),
        SecretBytes::new(bytes),
        Some(ClientCertificateCredentialOptions {
            client_options,
            password: password.map(|p| azure_core::credentials::Secret::new(p.to_owned())),
        }),
    ) {
        Ok(c) => SourceKind::Azure(c),
        Err(e) => SourceKind::Unavailable(format!("invalid certificate {path}: {e}")),
    }
}

#[cfg(not(feature = "client-certificate"))]
fn certificate_source(
    _tenant: &str,
    _client: &str,
    _path: &str,
    _password: Option<&str>,
    _client_options: ClientOptions,
) -> SourceKind {
    SourceKind::Unavailable(
        "AZURE_CLIENT_CERTIFICATE_PATH is set, but this build has no client-certificate support (cargo feature `client-certificate`); use AZURE_CLIENT_SECRET or workload identity"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #10.19: a credential error listed what was tried but not what to do next.
    #[tokio::test]
    async fn no_credential_says_what_was_tried_and_how_to_authenticate() {
        let chain = CredentialChain {
            sources: vec![
                Source {
                    name: "environment",
                    kind: SourceKind::Unavailable("AZURE_TENANT_ID is not set".into()),
                },
                Source {
                    name: "developer tools",
                    kind: SourceKind::Unavailable("`az` is not installed".into()),
                },
            ],
            cache: Mutex::new(None),
        };
        let e = chain
            .token("https://management.azure.com/.default")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("environment: AZURE_TENANT_ID is not set"), "{e}");
        assert!(e.contains("developer tools: `az` is not installed"), "{e}");
        assert!(e.contains("To authenticate: run `az login`"), "{e}");
        assert!(e.contains(ACCESS_TOKEN_VAR), "{e}");
    }

    #[test]
    fn token_is_redacted() {
        let t = BearerToken::new("eyJsecret");
        assert_eq!(format!("{t:?}"), "BearerToken(***)");
        // No `Display` at all (#10 item 10); error bodies that echo it are scrubbed.
        assert_eq!(t.scrub("echoed eyJsecret"), "echoed [REDACTED]");
        let env = CredentialEnv {
            access_token: Some("eyJsecret".into()),
            client_secret: Some("hunter2".into()),
            ..Default::default()
        };
        let dbg = format!("{env:?}");
        assert!(
            !dbg.contains("eyJsecret") && !dbg.contains("hunter2"),
            "{dbg}"
        );
        let h = t.header_value().unwrap();
        assert!(h.is_sensitive());
    }

    #[tokio::test]
    async fn explicit_token_comes_first() {
        let env = CredentialEnv {
            access_token: Some("  tok-1 ".into()),
            tenant_id: Some("00000000-0000-0000-0000-000000000001".into()),
            client_id: Some("app".into()),
            client_secret: Some("s".into()),
            ..Default::default()
        };
        let chain = CredentialChain::from_env(&env, Cloud::Public);
        let t = chain
            .token("https://management.azure.com/.default")
            .await
            .unwrap();
        assert_eq!(t.expose(), "tok-1");
    }

    #[test]
    fn chain_order_and_reasons() {
        let env = CredentialEnv {
            client_id: Some("app".into()),
            ..Default::default()
        };
        let chain = CredentialChain::from_env(&env, Cloud::Usgov);
        let names: Vec<_> = chain.sources.iter().map(|s| s.name).collect();
        assert_eq!(names[0], ACCESS_TOKEN_VAR);
        assert!(names[1].starts_with("service principal"));
        assert!(names[2].starts_with("workload identity"));
        assert_eq!(names[3], "managed identity");
        assert!(names[4].starts_with("developer tools"));
        match &chain.sources[1].kind {
            SourceKind::Unavailable(why) => assert!(why.contains("AZURE_CLIENT_SECRET"), "{why}"),
            _ => panic!("service principal should be unavailable without a secret"),
        }
    }

    #[test]
    fn workload_identity_names_a_missing_token_file() {
        let env = CredentialEnv {
            tenant_id: Some("00000000-0000-0000-0000-000000000001".into()),
            client_id: Some("app".into()),
            federated_token_file: Some("/nonexistent/rangekeeper-test-token".into()),
            ..Default::default()
        };
        let chain = CredentialChain::from_env(&env, Cloud::Public);
        match &chain.sources[2].kind {
            SourceKind::Unavailable(why) => {
                assert!(why.contains("/nonexistent/rangekeeper-test-token"), "{why}")
            }
            _ => panic!("workload identity should be unavailable"),
        }
        // A readable token file makes it a real source.
        let dir = std::env::temp_dir().join(format!("rk-aks-wi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "eyJfederated").unwrap();
        let env = CredentialEnv {
            federated_token_file: Some(file.to_string_lossy().into_owned()),
            ..env
        };
        let chain = CredentialChain::from_env(&env, Cloud::Public);
        assert!(matches!(chain.sources[2].kind, SourceKind::Azure(_)));
        // With a federated token file, AZURE_CLIENT_ID is not taken as a user-assigned
        // managed identity, and the service principal says what is missing.
        match &chain.sources[1].kind {
            SourceKind::Unavailable(why) => assert!(why.contains("AZURE_CLIENT_SECRET"), "{why}"),
            _ => panic!("service principal should be unavailable"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
