//! The HTTP endpoint of rangekeeper's long-running commands: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (ready to do its work). `reconcile` serves
//! its [`Metrics`]; `external-ips serve` serves its own through the same [`Health`] contract.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;

/// What the endpoint shows: the metrics text and whether the process is ready.
pub trait Health: Send + Sync + 'static {
    /// The text exposition format (0.0.4).
    fn render_metrics(&self) -> String;
    /// Whether `/readyz` answers 200.
    fn ready(&self) -> bool;
    /// What `/readyz` says when not ready.
    fn not_ready_reason(&self) -> &'static str;
    /// What `/readyz` says when ready.
    fn ready_text(&self) -> String {
        "ready\n".to_owned()
    }
}

impl Health for Metrics {
    fn render_metrics(&self) -> String {
        self.render()
    }
    fn ready(&self) -> bool {
        Metrics::ready(self)
    }
    fn not_ready_reason(&self) -> &'static str {
        if self.shards_held().is_some() {
            return "not ready: the shard leases were not reached within the lease duration, or the declaration file is not valid\n";
        }
        match self.leading() {
            None => "not ready: the first pass is not done, or the declaration file is not valid\n",
            Some(true) => {
                "not ready: leader: the first pass is not done, or the declaration file is not valid\n"
            }
            Some(false) => {
                "not ready: follower: the leader lease was not reached within the lease duration (this replica could not take over), or the declaration file is not valid\n"
            }
        }
    }
    fn ready_text(&self) -> String {
        if let Some((held, count)) = self.shards_held() {
            return if held.is_empty() {
                format!("ready: no shard of {count} held (standing by)\n")
            } else {
                let list: Vec<String> = held.iter().map(u32::to_string).collect();
                format!(
                    "ready: shard{} {} of {count}\n",
                    if held.len() == 1 { "" } else { "s" },
                    list.join(", ")
                )
            };
        }
        match self.leading() {
            None => "ready\n",
            Some(true) => "ready: leader\n",
            Some(false) => "ready: follower (standing by; the leader reconciles)\n",
        }
        .to_owned()
    }
}

type Shared = Arc<dyn Health>;

async fn serve_metrics(State(m): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render_metrics(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(m): State<Shared>) -> impl IntoResponse {
    if m.ready() {
        (StatusCode::OK, m.ready_text())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            m.not_ready_reason().to_owned(),
        )
    }
}

/// The routes `/metrics`, `/healthz` and `/readyz`, to serve alone or beside others.
pub fn router(health: Shared) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Bind `addr` now (so a busy port fails at start) and serve until the task is dropped.
pub async fn start(
    addr: std::net::SocketAddr,
    health: Shared,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    let local = listener.local_addr()?;
    let app = router(health);
    tracing::info!("serving metrics on http://{local}/metrics (and /healthz, /readyz)");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the metrics server stopped: {e}");
        }
    }))
}
