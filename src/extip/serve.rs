//! `external-ips serve`: the validating admission webhook.
//!
//! `POST /validate-service` over TLS takes an AdmissionReview `admission.k8s.io/v1` of a
//! Service and answers it with [`super::Rules`]. The serving certificate and key are read
//! again whenever their files change (cert-manager rotates them): a handshake always gets
//! the last pair that loaded and whose key matches its certificate. The rules are swapped
//! the same way when the declaration changes (the last valid one stays in force).
//!
//! Requests that are not a review are HTTP errors the API server logs (415 for another
//! content type, 413 over [`MAX_BODY`], 400 for a body that is not an AdmissionReview), never
//! a crash. `/metrics`, `/healthz` and `/readyz` are served on the TLS port and, with
//! `--metrics-addr`, on a plain HTTP port of their own (`reconcile`'s endpoint).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::review;
use super::{Denial, Rules, Verdict};
use crate::reconcile::metrics::{escape, write_family};
use crate::reconcile::server::Health;

/// The largest AdmissionReview read: a Service and its old version, each at most the
/// API server's 1.5 MiB object limit, with room to spare.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The serving certificate, reloaded when its files change.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The contents last seen (loaded or rejected), so a bad pair is reported once.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

/// Read a certificate chain and its private key (PEM), checking that they belong together.
fn load_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_file.display()))?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: unsupported private key: {e}", key_file.display()))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(ck)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl CertStore {
    /// Load the pair now (an error stops the command: nothing to serve with).
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<CertStore, String> {
        let (c, k) = (read(cert_file)?, read(key_file)?);
        let ck = load_pair(&c, &k, cert_file, key_file)?;
        Ok(CertStore {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(Arc::new(ck)),
            seen: Mutex::new((c, k)),
        })
    }

    /// Read the files again; when they changed and load, serve the new pair. Returns
    /// `Some(Ok(()))` on a reload, `Some(Err(why))` on a changed pair that did not load.
    pub fn reload(&self) -> Option<Result<(), String>> {
        let (c, k) = match (read(&self.cert_file), read(&self.key_file)) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
        };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.0 == c && seen.1 == k {
            return None;
        }
        let result = load_pair(&c, &k, &self.cert_file, &self.key_file);
        // A half-written pair (certificate new, key old) is tried again next time.
        if let Ok(ck) = &result {
            *seen = (c, k);
            *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ck.clone());
        }
        Some(result.map(|_| ()))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The webhook's counters.
#[derive(Debug, Default)]
struct Counts {
    allowed: u64,
    denied: BTreeMap<&'static str, u64>,
    undecodable: u64,
    http_errors: BTreeMap<&'static str, u64>,
    rules_reloads: u64,
    rules_errors: u64,
    rules_valid: bool,
    cert_reloads: u64,
    cert_errors: u64,
}

/// What the handlers share: the rules in force and the counters.
#[derive(Debug)]
pub struct Webhook {
    rules: RwLock<Arc<Rules>>,
    counts: Mutex<Counts>,
}

impl Webhook {
    pub fn new(rules: Rules) -> Webhook {
        Webhook {
            rules: RwLock::new(Arc::new(rules)),
            counts: Mutex::new(Counts {
                rules_valid: true,
                ..Counts::default()
            }),
        }
    }

    fn count<R>(&self, f: impl FnOnce(&mut Counts) -> R) -> R {
        f(&mut self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Put new rules in force.
    pub fn set_rules(&self, rules: Rules) {
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
        self.count(|c| {
            c.rules_reloads += 1;
            c.rules_valid = true;
        });
    }

    /// A changed declaration was rejected; the last valid rules stay in force.
    pub fn rules_rejected(&self) {
        self.count(|c| {
            c.rules_errors += 1;
            c.rules_valid = false;
        });
    }

    pub fn cert_reloaded(&self, ok: bool) {
        self.count(|c| {
            if ok {
                c.cert_reloads += 1;
            } else {
                c.cert_errors += 1;
            }
        });
    }

    fn http_error(&self, kind: &'static str) {
        self.count(|c| *c.http_errors.entry(kind).or_default() += 1);
    }
}

impl Health for Webhook {
    fn render_metrics(&self) -> String {
        let ranges = self.rules().allowed.len();
        self.count(|c| {
            let mut out = String::new();
            let denied: u64 = c.denied.values().sum();
            write_family(
                &mut out,
                "webhook_failed_request_count",
                "counter",
                "Denied Service requests (externalip-webhook's metric).",
                vec![(String::new(), denied as f64)],
            );
            let reviews = vec![
                ("{result=\"allowed\"}".to_owned(), c.allowed as f64),
                ("{result=\"denied\"}".to_owned(), denied as f64),
                ("{result=\"undecodable\"}".to_owned(), c.undecodable as f64),
            ];
            write_family(
                &mut out,
                "rangekeeper_external_ips_reviews_total",
                "counter",
                "AdmissionReviews answered, by result.",
                reviews,
            );
            write_family(
                &mut out,
                "rangekeeper_external_ips_denied_total",
                "counter",
                "Denied Service requests, by reason (user, not-valid, not-allowed).",
                [Denial::NotAllowed, Denial::NotValid, Denial::User]
                    .iter()
                    .map(|d| {
                        (
                            format!("{{reason=\"{}\"}}", escape(d.as_str())),
                            c.denied.get(d.as_str()).copied().unwrap_or(0) as f64,
                        )
                    })
                    .collect(),
            );
            write_family(
                &mut out,
                "rangekeeper_external_ips_http_errors_total",
                "counter",
                "Requests refused before review (content-type, too-large, malformed).",
                c.http_errors
                    .iter()
                    .map(|(k, v)| (format!("{{kind=\"{}\"}}", escape(k)), *v as f64))
                    .collect(),
            );
            write_family(
                &mut out,
                "rangekeeper_external_ips_allowed_ranges",
                "gauge",
                "Prefixes in the allowed set in force.",
                vec![(String::new(), ranges as f64)],
            );
            write_family(
                &mut out,
                "rangekeeper_declaration_valid",
                "gauge",
                "1 when the last read of the declaration was valid.",
                vec![(String::new(), f64::from(u8::from(c.rules_valid)))],
            );
            write_family(
                &mut out,
                "rangekeeper_declaration_reloads_total",
                "counter",
                "Changed declarations put in force.",
                vec![(String::new(), c.rules_reloads as f64)],
            );
            write_family(
                &mut out,
                "rangekeeper_declaration_errors_total",
                "counter",
                "Changed declarations rejected (the last valid one stays in force).",
                vec![(String::new(), c.rules_errors as f64)],
            );
            write_family(
                &mut out,
                "rangekeeper_external_ips_certificate_reloads_total",
                "counter",
                "Serving certificates loaded after their files changed.",
                vec![(String::new(), c.cert_reloads as f64)],
            );
            write_family(
                &mut out,
                "rangekeeper_external_ips_certificate_errors_total",
                "counter",
                "Changed serving certificate files that did not load (the last good pair stays).",
                vec![(String::new(), c.cert_errors as f64)],
            );
            out
        })
    }

    fn ready(&self) -> bool {
        true
    }

    fn not_ready_reason(&self) -> &'static str {
        "not ready\n"
    }
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn validate(State(hook): State<Arc<Webhook>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        hook.http_error("content-type");
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "expected Content-Type application/json, not {}\n",
                super::go_quote(ct)
            ),
        );
    }
    let req = match review::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            hook.http_error("malformed");
            tracing::warn!("a request that is not an AdmissionReview: {e}");
            return plain(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    let rules = hook.rules();
    let (verdict, answer) = review::answer(&rules, &req);
    match verdict {
        None => {
            hook.count(|c| c.undecodable += 1);
            tracing::warn!(uid = %req.uid, "{}", answer["response"]["status"]["message"].as_str().unwrap_or(""));
        }
        Some(Verdict::Allowed) => hook.count(|c| c.allowed += 1),
        Some(Verdict::Denied { why, message, .. }) => {
            hook.count(|c| *c.denied.entry(why.as_str()).or_default() += 1);
            tracing::info!(uid = %req.uid, user = %req.user, "denied: {message}");
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

async fn too_large(State(hook): State<Arc<Webhook>>) -> Response {
    hook.http_error("too-large");
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over {MAX_BODY} bytes\n"),
    )
}

/// The routes of the TLS port.
pub fn router(hook: Arc<Webhook>) -> Router {
    let review = Router::new()
        .route("/validate-service", post(validate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            hook.clone(),
            limit_body,
        ))
        .with_state(hook.clone());
    review.merge(crate::reconcile::server::router(hook))
}

/// A body announced (or found) over the cap is answered 413 and counted.
async fn limit_body(
    State(hook): State<Arc<Webhook>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large(State(hook)).await;
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        hook.http_error("too-large");
    }
    resp
}

/// Where to listen: `:PORT` is every address (IPv6 and IPv4), otherwise `HOST:PORT`.
pub fn parse_listen(s: &str) -> Result<Vec<SocketAddr>, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| {
            format!("`{s}` is not a port (`:9443`) or an address (`127.0.0.1:9443`)")
        })?;
        return Ok(vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ]);
    }
    s.parse::<SocketAddr>()
        .map(|a| vec![a])
        .map_err(|_| format!("`{s}` is not a port (`:9443`) or an address (`127.0.0.1:9443`)"))
}

/// Bind the first address that binds (`[::]` falls back to `0.0.0.0` where IPv6 is off).
pub async fn bind(addrs: &[SocketAddr]) -> anyhow::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in addrs {
        match tokio::net::TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(format!("cannot listen on {a}: {e}")),
        }
    }
    Err(anyhow::anyhow!(
        last.unwrap_or_else(|| "no address to listen on".into())
    ))
}

/// Serve the webhook over TLS on `listener` until `shutdown` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    certs: Arc<CertStore>,
    hook: Arc<Webhook>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
    .with_no_client_auth()
    .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = router(hook);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, never spin or stop.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake with {peer} failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake with {peer} timed out");
                        return;
                    }
                };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// Check the certificate files every `every` and serve a changed pair once it loads.
pub fn watch_certs(
    certs: Arc<CertStore>,
    hook: Arc<Webhook>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_error: Option<String> = None;
        loop {
            tokio::time::sleep(every).await;
            let c = certs.clone();
            let r = tokio::task::spawn_blocking(move || c.reload())
                .await
                .ok()
                .flatten();
            match r {
                None => {}
                Some(Ok(())) => {
                    last_error = None;
                    hook.cert_reloaded(true);
                    tracing::info!(
                        "the serving certificate changed: loaded {}",
                        certs.cert_file.display()
                    );
                }
                // A pair that keeps failing the same way is reported once.
                Some(Err(e)) if last_error.as_ref() != Some(&e) => {
                    hook.cert_reloaded(false);
                    tracing::error!("{e}; the last good certificate stays in use");
                    last_error = Some(e);
                }
                Some(Err(_)) => {}
            }
        }
    })
}
