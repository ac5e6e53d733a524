//! Google OAuth access tokens as Google's own tools find them: `GOOGLE_OAUTH_ACCESS_TOKEN`,
//! then Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
//! `application_default_credentials.json`, the metadata server). A credentials file may be a
//! service-account key (JWT bearer grant signed RS256), an `authorized_user` (refresh token)
//! or an `external_account` (workload identity federation: STS token exchange of a file- or
//! URL-sourced subject token such as GitHub's OIDC token, optionally followed by service
//! account impersonation). Tokens, keys and refresh tokens never appear in logs or errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rangekeeper_provider::{ProviderError, Secret};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::api::{LazyHttp, google_error, transport_error};

/// A bearer token already issued to the pipeline (the variable Terraform's Google provider reads).
pub const ACCESS_TOKEN_VAR: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
/// The scope every token is asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's OAuth token endpoint (for keys and refresh tokens that name none).
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's address on GCE, GKE, Cloud Run and Cloud Build.
pub const METADATA_HOST: &str = "169.254.169.254";
/// How long the metadata-server probe may take before we decide we are not on Google Cloud.
const METADATA_PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// The lifetime asked for when impersonating a service account.
const IMPERSONATION_LIFETIME: Duration = Duration::from_secs(3600);

/// Secret text (a token, a private key, a refresh token), redacted by the shared type.
pub type SecretText = Secret<String>;

/// Wrap text as a secret.
pub fn secret(s: impl Into<String>) -> SecretText {
    Secret::from(s.into())
}

/// Read a secret's text, for the one place that sends it.
fn reveal(s: &SecretText) -> &str {
    s.as_ref().expose().as_str()
}

/// An OAuth access token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AccessToken(SecretText);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        AccessToken(secret(token))
    }

    /// The `Authorization` header value, marked sensitive so HTTP logging hides it.
    pub fn header_value(&self) -> Result<reqwest::header::HeaderValue, ProviderError> {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", reveal(&self.0)))
            .map_err(|_| {
                ProviderError::Auth(
                    "the access token contains characters not allowed in an HTTP header".into(),
                )
            })?;
        v.set_sensitive(true);
        Ok(v)
    }

    pub fn expose(&self) -> &str {
        reveal(&self.0)
    }
}

/// Something that hands out access tokens for the GKE API.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    async fn token(&self) -> Result<AccessToken, ProviderError>;
}

/// A fixed token (from [`ACCESS_TOKEN_VAR`], or a test).
#[derive(Debug, Clone)]
pub struct StaticToken(AccessToken);

impl StaticToken {
    pub fn new(token: AccessToken) -> Self {
        StaticToken(token)
    }
}

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<AccessToken, ProviderError> {
        Ok(self.0.clone())
    }
}

/// The environment the chain looks at, read once (so it is testable without touching the
/// process environment).
#[derive(Default, Clone)]
pub struct CredentialEnv {
    pub access_token: Option<SecretText>,
    /// `GOOGLE_APPLICATION_CREDENTIALS`
    pub application_credentials: Option<PathBuf>,
    /// gcloud's config directory: `CLOUDSDK_CONFIG`, else `~/.config/gcloud`.
    pub gcloud_config_dir: Option<PathBuf>,
    /// `GCE_METADATA_HOST` (`host[:port]`), else the well-known address, probed.
    pub metadata_host: Option<String>,
    /// Skip the metadata server (`NO_GCE_CHECK=true`, as Google's libraries honour it).
    pub no_metadata: bool,
}

impl fmt::Debug for CredentialEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialEnv")
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("application_credentials", &self.application_credentials)
            .field("gcloud_config_dir", &self.gcloud_config_dir)
            .field("metadata_host", &self.metadata_host)
            .field("no_metadata", &self.no_metadata)
            .finish()
    }
}

impl CredentialEnv {
    /// Read the variables Google's tools read; empty values count as unset.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let gcloud_config_dir = var("CLOUDSDK_CONFIG").map(PathBuf::from).or_else(|| {
            if cfg!(windows) {
                var("APPDATA").map(|d| PathBuf::from(d).join("gcloud"))
            } else {
                var("HOME").map(|h| PathBuf::from(h).join(".config").join("gcloud"))
            }
        });
        CredentialEnv {
            access_token: var(ACCESS_TOKEN_VAR).map(|t| secret(t.trim())),
            application_credentials: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            gcloud_config_dir,
            metadata_host: var("GCE_METADATA_HOST"),
            no_metadata: var("NO_GCE_CHECK").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }
}

/// A parsed credentials file.
#[derive(Debug, Clone)]
pub enum CredentialFile {
    ServiceAccount(ServiceAccountKey),
    AuthorizedUser {
        client_id: String,
        client_secret: SecretText,
        refresh_token: SecretText,
        token_uri: Url,
    },
    ExternalAccount(ExternalAccount),
}

/// A service-account key file (`"type": "service_account"`).
#[derive(Debug, Clone)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key_id: Option<String>,
    /// PKCS#8 DER.
    private_key: Secret<Vec<u8>>,
    pub token_uri: Url,
}

/// Where an external account's subject token comes from.
#[derive(Debug, Clone)]
pub enum SubjectSource {
    File(PathBuf),
    Url {
        url: Url,
        headers: Vec<(String, SecretText)>,
    },
}

/// How the subject token is stored in its source.
#[derive(Debug, Clone)]
pub enum SubjectFormat {
    Text,
    /// A JSON object; the token is this field.
    Json(String),
}

/// A workload identity federation config (`"type": "external_account"`).
#[derive(Debug, Clone)]
pub struct ExternalAccount {
    pub audience: String,
    pub subject_token_type: String,
    pub token_url: Url,
    pub impersonation_url: Option<Url>,
    pub source: SubjectSource,
    pub format: SubjectFormat,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    credential_source: Option<Value>,
}

impl CredentialFile {
    /// Read and parse a credentials file. Errors name the file, never its secrets.
    pub fn load(path: &Path) -> Result<CredentialFile, ProviderError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ProviderError::Auth(format!(
                "cannot read the Google credentials file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|m| {
            ProviderError::Auth(format!(
                "the Google credentials file {}: {m}",
                path.display()
            ))
        })
    }

    /// Parse the JSON of a credentials file.
    pub fn parse(text: &str) -> Result<CredentialFile, String> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| {
            // serde_json's message carries a position, not the content.
            format!("not a credentials JSON file: {e}")
        })?;
        let need = |v: Option<String>, field: &str| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| format!("`{field}` is missing"))
        };
        let url = |s: &str, field: &str| {
            let u = Url::parse(s).map_err(|e| format!("`{field}` is not a URL: {e}"))?;
            match u.scheme() {
                "https" => Ok(u),
                "http" if crate::config::is_loopback_host(&u) => Ok(u),
                _ => Err(format!("`{field}` must be an https URL")),
            }
        };
        match raw.kind.as_deref() {
            Some("service_account") => {
                let pem = need(raw.private_key, "private_key")?;
                let der = pem_to_der(&pem)?;
                // Check the key now, so a broken file fails before any call.
                aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der)
                    .map_err(|e| format!("`private_key` is not a PKCS#8 RSA key: {e}"))?;
                Ok(CredentialFile::ServiceAccount(ServiceAccountKey {
                    client_email: need(raw.client_email, "client_email")?,
                    private_key_id: raw.private_key_id.filter(|s| !s.is_empty()),
                    private_key: Secret::from(der),
                    token_uri: url(
                        raw.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI),
                        "token_uri",
                    )?,
                }))
            }
            Some("authorized_user") => Ok(CredentialFile::AuthorizedUser {
                client_id: need(raw.client_id, "client_id")?,
                client_secret: secret(need(raw.client_secret, "client_secret")?),
                refresh_token: secret(need(raw.refresh_token, "refresh_token")?),
                token_uri: url(
                    raw.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI),
                    "token_uri",
                )?,
            }),
            Some("external_account") => {
                let source = raw
                    .credential_source
                    .ok_or_else(|| "`credential_source` is missing".to_owned())?;
                let (source, format) = subject_source(&source)?;
                Ok(CredentialFile::ExternalAccount(ExternalAccount {
                    audience: need(raw.audience, "audience")?,
                    subject_token_type: need(raw.subject_token_type, "subject_token_type")?,
                    token_url: url(&need(raw.token_url, "token_url")?, "token_url")?,
                    impersonation_url: raw
                        .service_account_impersonation_url
                        .filter(|s| !s.is_empty())
                        .map(|s| url(&s, "service_account_impersonation_url"))
                        .transpose()?,
                    source,
                    format,
                }))
            }
            Some(other) => Err(format!(
                "credentials of type `{other}` are not supported (service_account, authorized_user and external_account are)"
            )),
            None => Err("`type` is missing".into()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            CredentialFile::ServiceAccount(_) => "service account key",
            CredentialFile::AuthorizedUser { .. } => {
                "authorized user (gcloud auth application-default login)"
            }
            CredentialFile::ExternalAccount(_) => "workload identity federation (external_account)",
        }
    }
}

fn subject_source(v: &Value) -> Result<(SubjectSource, SubjectFormat), String> {
    if v.get("executable").is_some() {
        return Err("executable-sourced credentials are not supported (file and url are)".into());
    }
    if v.get("environment_id").is_some() {
        return Err("AWS-sourced credentials are not supported (file and url are)".into());
    }
    let format = match v.get("format") {
        None => SubjectFormat::Text,
        Some(f) => match f.get("type").and_then(Value::as_str).unwrap_or("text") {
            "text" => SubjectFormat::Text,
            "json" => SubjectFormat::Json(
                f.get("subject_token_field_name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or("`credential_source.format.subject_token_field_name` is missing")?
                    .to_owned(),
            ),
            other => {
                return Err(format!(
                    "`credential_source.format.type` `{other}` is not text or json"
                ));
            }
        },
    };
    if let Some(file) = v.get("file").and_then(Value::as_str) {
        return Ok((SubjectSource::File(PathBuf::from(file)), format));
    }
    if let Some(u) = v.get("url").and_then(Value::as_str) {
        let url =
            Url::parse(u).map_err(|e| format!("`credential_source.url` is not a URL: {e}"))?;
        let headers = v
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), secret(s))))
                    .collect()
            })
            .unwrap_or_default();
        return Ok((SubjectSource::Url { url, headers }, format));
    }
    Err("`credential_source` has neither `file` nor `url`".into())
}

/// The DER inside a PEM block (`-----BEGIN PRIVATE KEY-----`).
fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return Err("`private_key` is not a PEM block".into());
    }
    STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "`private_key` is not valid base64 inside its PEM block".to_owned())
}

/// A signed JWT for the service-account bearer grant (RFC 7523), RS256.
pub fn signed_assertion(key: &ServiceAccountKey, now: u64) -> Result<SecretText, ProviderError> {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = Value::String(kid.clone());
    }
    let claims = json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri.as_str(),
        "iat": now,
        "exp": now + 3600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(key.private_key.as_ref().expose())
        .map_err(|e| ProviderError::Auth(format!("the service account key is not usable: {e}")))?;
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| ProviderError::Auth("signing the token request failed".into()))?;
    Ok(secret(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(sig)
    )))
}

/// Where the chain found its credentials.
#[derive(Debug, Clone)]
enum Found {
    Static(AccessToken),
    File {
        origin: String,
        cred: Box<CredentialFile>,
    },
    Metadata {
        host: String,
    },
}

struct Cached {
    token: AccessToken,
    /// `None`: never expires (a static token).
    expires: Option<Instant>,
}

/// The Application Default Credentials chain, resolved on first use and cached.
pub struct CredentialChain {
    env: CredentialEnv,
    /// Built on first use (see [`LazyHttp`]).
    http: LazyHttp,
    found: Mutex<Option<Found>>,
    cache: Mutex<Option<Cached>>,
}

impl fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialChain")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl CredentialChain {
    /// The chain over `env`, in the order Google's tools use:
    /// 1. `GOOGLE_OAUTH_ACCESS_TOKEN` (a token given directly);
    /// 2. `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key, an authorized user, or an
    ///    external account); when set, it must work: the chain does not fall through;
    /// 3. gcloud's `application_default_credentials.json` (`gcloud auth application-default login`);
    /// 4. the metadata server (`GCE_METADATA_HOST`, else 169.254.169.254, probed briefly;
    ///    `NO_GCE_CHECK=true` skips it).
    pub fn from_env(env: CredentialEnv) -> Result<Self, ProviderError> {
        Ok(CredentialChain {
            env,
            http: LazyHttp::default(),
            found: Mutex::new(None),
            cache: Mutex::new(None),
        })
    }

    /// Where the credentials come from (for messages), resolving the chain if needed.
    pub async fn describe(&self) -> Result<String, ProviderError> {
        Ok(match self.resolve().await? {
            Found::Static(_) => ACCESS_TOKEN_VAR.to_owned(),
            Found::File { origin, cred } => format!("{} from {origin}", cred.kind()),
            Found::Metadata { host } => format!("the metadata server at {host}"),
        })
    }

    async fn resolve(&self) -> Result<Found, ProviderError> {
        let mut found = self.found.lock().await;
        if let Some(f) = found.as_ref() {
            return Ok(f.clone());
        }
        let f = self.find().await?;
        *found = Some(f.clone());
        Ok(f)
    }

    async fn find(&self) -> Result<Found, ProviderError> {
        let mut tried = Vec::new();
        if let Some(t) = &self.env.access_token {
            return Ok(Found::Static(AccessToken(t.clone())));
        }
        tried.push(format!("{ACCESS_TOKEN_VAR} (not set)"));
        if let Some(path) = &self.env.application_credentials {
            let cred = CredentialFile::load(path)?;
            return Ok(Found::File {
                origin: format!("GOOGLE_APPLICATION_CREDENTIALS ({})", path.display()),
                cred: Box::new(cred),
            });
        }
        tried.push("GOOGLE_APPLICATION_CREDENTIALS (not set)".into());
        if let Some(dir) = &self.env.gcloud_config_dir {
            let path = dir.join("application_default_credentials.json");
            if path.is_file() {
                let cred = CredentialFile::load(&path)?;
                return Ok(Found::File {
                    origin: path.display().to_string(),
                    cred: Box::new(cred),
                });
            }
            tried.push(format!("{} (no such file)", path.display()));
        }
        if self.env.no_metadata {
            tried.push("the metadata server (NO_GCE_CHECK=true)".into());
        } else if let Some(host) = &self.env.metadata_host {
            return Ok(Found::Metadata { host: host.clone() });
        } else if self.probe_metadata(METADATA_HOST).await {
            return Ok(Found::Metadata {
                host: METADATA_HOST.to_owned(),
            });
        } else {
            tried.push(format!(
                "the metadata server at {METADATA_HOST} (not reachable)"
            ));
        }
        Err(ProviderError::Auth(format!(
            "no Google credentials found; tried {}. Set GOOGLE_APPLICATION_CREDENTIALS to a service account key or workload identity federation config, run `gcloud auth application-default login`, or run on Google Cloud",
            tried.join(", ")
        )))
    }

    async fn probe_metadata(&self, host: &str) -> bool {
        let Ok(url) = Url::parse(&format!("http://{host}/")) else {
            return false;
        };
        let Ok(http) = self.http.get() else {
            return false;
        };
        let probe = http
            .get(url)
            .header("Metadata-Flavor", "Google")
            .timeout(METADATA_PROBE_TIMEOUT)
            .send()
            .await;
        probe.is_ok_and(|r| {
            r.headers()
                .get("metadata-flavor")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"google"))
        })
    }

    async fn fetch(&self, found: &Found) -> Result<Cached, ProviderError> {
        match found {
            Found::Static(t) => Ok(Cached {
                token: t.clone(),
                expires: None,
            }),
            Found::Metadata { host } => {
                let url = Url::parse(&format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                ))
                .map_err(|e| {
                    ProviderError::Auth(format!("GCE_METADATA_HOST `{host}` is not a host: {e}"))
                })?;
                let req = self
                    .http
                    .get()?
                    .get(url.clone())
                    .header("Metadata-Flavor", "Google");
                self.token_response(req, Method::GET, &url, "the metadata server")
                    .await
            }
            Found::File { cred, .. } => match cred.as_ref() {
                CredentialFile::ServiceAccount(key) => {
                    let assertion = signed_assertion(key, unix_now())?;
                    let form = [
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", reveal(&assertion)),
                    ];
                    let req = self.http.get()?.post(key.token_uri.clone()).form(&form);
                    self.token_response(
                        req,
                        Method::POST,
                        &key.token_uri,
                        "the service account token grant",
                    )
                    .await
                }
                CredentialFile::AuthorizedUser {
                    client_id,
                    client_secret,
                    refresh_token,
                    token_uri,
                } => {
                    let form = [
                        ("grant_type", "refresh_token"),
                        ("client_id", client_id.as_str()),
                        ("client_secret", reveal(client_secret)),
                        ("refresh_token", reveal(refresh_token)),
                    ];
                    let req = self.http.get()?.post(token_uri.clone()).form(&form);
                    self.token_response(req, Method::POST, token_uri, "the refresh token grant")
                        .await
                }
                CredentialFile::ExternalAccount(ext) => self.external(ext).await,
            },
        }
    }

    /// Workload identity federation: subject token -> STS exchange -> (impersonation).
    async fn external(&self, ext: &ExternalAccount) -> Result<Cached, ProviderError> {
        let subject = self.subject_token(ext).await?;
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", ext.audience.as_str()),
            ("scope", SCOPE),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token_type", ext.subject_token_type.as_str()),
            ("subject_token", reveal(&subject)),
        ];
        let req = self.http.get()?.post(ext.token_url.clone()).form(&form);
        let federated = self
            .token_response(req, Method::POST, &ext.token_url, "the STS token exchange")
            .await?;
        let Some(url) = &ext.impersonation_url else {
            return Ok(federated);
        };
        let started = Instant::now();
        let body =
            json!({"scope": [SCOPE], "lifetime": format!("{}s", IMPERSONATION_LIFETIME.as_secs())});
        let resp = self
            .http
            .get()?
            .post(url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                federated.token.header_value()?,
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error(&Method::POST, url, &e))?;
        let v = read_json(resp, "the service account impersonation").await?;
        let token = v
            .get("accessToken")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ProviderError::Auth(
                    "the service account impersonation answer has no accessToken".into(),
                )
            })?;
        Ok(Cached {
            token: AccessToken::new(token),
            expires: Some(started + IMPERSONATION_LIFETIME),
        })
    }

    async fn subject_token(&self, ext: &ExternalAccount) -> Result<SecretText, ProviderError> {
        let raw = match &ext.source {
            SubjectSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                ProviderError::Auth(format!(
                    "cannot read the subject token file {}: {e}",
                    path.display()
                ))
            })?,
            SubjectSource::Url { url, headers } => {
                let mut req = self.http.get()?.get(url.clone());
                for (k, v) in headers {
                    req = req.header(k.as_str(), reveal(v));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| transport_error(&Method::GET, url, &e))?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| {
                    ProviderError::Transient(format!("reading the subject token failed: {e}"))
                })?;
                if !status.is_success() {
                    let mut u = url.clone();
                    u.set_query(None);
                    return Err(ProviderError::Auth(format!(
                        "the subject token URL {u} answered HTTP {}",
                        status.as_u16()
                    )));
                }
                text
            }
        };
        let token = match &ext.format {
            SubjectFormat::Text => raw.trim().to_owned(),
            SubjectFormat::Json(field) => serde_json::from_str::<Value>(&raw)
                .ok()
                .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_owned))
                .ok_or_else(|| {
                    ProviderError::Auth(format!("the subject token has no `{field}` field"))
                })?,
        };
        if token.is_empty() {
            return Err(ProviderError::Auth("the subject token is empty".into()));
        }
        Ok(secret(token))
    }

    /// Send a token request and read `{access_token, expires_in}`.
    async fn token_response(
        &self,
        req: reqwest::RequestBuilder,
        method: Method,
        url: &Url,
        what: &str,
    ) -> Result<Cached, ProviderError> {
        let started = Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&method, url, &e))?;
        let v = read_json(resp, what).await?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ProviderError::Auth(format!("{what}: the answer has no access_token"))
            })?;
        let expires_in = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        Ok(Cached {
            token: AccessToken::new(token),
            expires: Some(started + Duration::from_secs(expires_in)),
        })
    }
}

/// The JSON answer of a token endpoint; OAuth errors (`{"error", "error_description"}`) and
/// Google errors map to typed errors (a rejected grant is `Auth`, 429 `Throttled`, 5xx
/// `Transient`).
async fn read_json(resp: reqwest::Response, what: &str) -> Result<Value, ProviderError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ProviderError::Transient(format!("{what}: reading the answer failed: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::Auth(format!("{what}: the answer is not JSON: {e}")));
    }
    let v: Option<Value> = serde_json::from_slice(&bytes).ok();
    // OAuth's error form: {"error": "invalid_grant", "error_description": "..."}.
    if let Some(code) = v
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
    {
        let desc = v
            .as_ref()
            .and_then(|v| v.get("error_description"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let text = format!("{what}: HTTP {}: {code}: {desc}", status.as_u16());
        return Err(match status.as_u16() {
            429 => ProviderError::Throttled {
                message: text,
                retry_after: crate::api::retry_after_header(&headers),
            },
            500..=599 => ProviderError::Transient(text),
            _ => ProviderError::Auth(text),
        });
    }
    Err(match google_error(status, &headers, &bytes, what) {
        ProviderError::Invalid(m) | ProviderError::NotFound(m) | ProviderError::Other(m) => {
            ProviderError::Auth(m)
        }
        other => other,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl TokenSource for CredentialChain {
    async fn token(&self) -> Result<AccessToken, ProviderError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.expires.is_none_or(|e| Instant::now() + EXPIRY_MARGIN < e)
        {
            return Ok(c.token.clone());
        }
        let found = self.resolve().await?;
        let fresh = self.fetch(&found).await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let t = AccessToken::new("ya29.secret");
        assert!(!format!("{t:?}").contains("ya29"));
        let env = CredentialEnv {
            access_token: Some(secret("ya29.secret")),
            ..CredentialEnv::default()
        };
        assert!(!format!("{env:?}").contains("ya29"));
        let f = CredentialFile::parse(
            r#"{"type":"authorized_user","client_id":"c","client_secret":"s3cr3t","refresh_token":"1//r3fr3sh"}"#,
        )
        .unwrap();
        let shown = format!("{f:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("r3fr3sh"),
            "{shown}"
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong_without_secrets() {
        for (text, want) in [
            (
                r#"{"type":"service_account","client_email":"a@b","private_key":"nope"}"#,
                "PEM",
            ),
            (
                r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
                "PKCS#8",
            ),
            (
                r#"{"type":"impersonated_service_account"}"#,
                "not supported",
            ),
            (r#"{"client_id":"x"}"#, "`type` is missing"),
            (
                r#"{"type":"authorized_user","client_id":"c","client_secret":"s"}"#,
                "refresh_token",
            ),
            (
                r#"{"type":"external_account","audience":"a","subject_token_type":"t","token_url":"https://sts.googleapis.com/v1/token","credential_source":{"executable":{"command":"x"}}}"#,
                "executable",
            ),
            (
                r#"{"type":"external_account","audience":"a","subject_token_type":"t","token_url":"http://sts.example.com/v1/token","credential_source":{"file":"/x"}}"#,
                "https",
            ),
        ] {
            let e = CredentialFile::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn github_style_external_account_parses() {
        let f = CredentialFile::parse(
            r#"{"type":"external_account","audience":"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gh/providers/gh",
                "subject_token_type":"urn:ietf:params:oauth:token-type:jwt","token_url":"https://sts.googleapis.com/v1/token",
                "service_account_impersonation_url":"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/rk@p.iam.gserviceaccount.com:generateAccessToken",
                "credential_source":{"url":"https://pipelines.actions.githubusercontent.com/x?audience=y","headers":{"Authorization":"Bearer gh-request-token"},
                "format":{"type":"json","subject_token_field_name":"value"}}}"#,
        )
        .unwrap();
        let CredentialFile::ExternalAccount(ext) = f else {
            panic!()
        };
        assert!(ext.impersonation_url.is_some());
        assert!(matches!(ext.format, SubjectFormat::Json(ref f) if f == "value"));
        assert!(!format!("{:?}", ext.source).contains("gh-request-token"));
    }

    #[tokio::test]
    async fn no_credentials_lists_what_was_tried() {
        let dir = tempfile::tempdir().unwrap();
        let chain = CredentialChain::from_env(CredentialEnv {
            gcloud_config_dir: Some(dir.path().to_path_buf()),
            no_metadata: true,
            ..CredentialEnv::default()
        })
        .unwrap();
        let e = chain.token().await.unwrap_err();
        assert!(matches!(e, ProviderError::Auth(_)));
        let text = e.to_string();
        assert!(
            text.contains("GOOGLE_APPLICATION_CREDENTIALS") && text.contains("NO_GCE_CHECK"),
            "{text}"
        );
    }
}
