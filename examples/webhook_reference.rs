//! The peer of `scripts/bench-webhook.sh`: a minimal admission handler on the same TLS and
//! HTTP stack as `rangekeeper external-ips serve` (rustls, hyper, axum) that answers every
//! POST with a fixed "allowed" AdmissionReview without reading it. What rangekeeper adds over
//! it is the review's parsing, the rules and the metrics.
//!
//!   webhook-reference CERT KEY ADDR

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, cert, key, addr] = args.as_slice() else {
        return Err("usage: webhook-reference CERT KEY ADDR".into());
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = Router::new().route(
        "/validate-service",
        post(|| async {
            (
                [("content-type", "application/json")],
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .await;
            }
        });
    }
}
