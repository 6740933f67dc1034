//! Running the app on a listener with graceful shutdown: on the signal, stop accepting, let the
//! engine finish running sequences for up to `drain` (then it cancels the rest, which ends their
//! streams), and return once connections have closed. Connections are accepted and limited by
//! [`crate::connections`] (header, keep-alive and body timeouts, a connection cap).

use std::future::Future;
use std::time::Duration;

use crate::connections::{self, Budget};
use crate::{app, AppState};

/// Extra time after the engine has drained for responses to reach their clients.
const FLUSH_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let engine = state.models.clone();
    let metrics = state.metrics.clone();
    let opts = state.config.connections.clone();
    let budget = Budget::for_process(opts.max_connections);
    if opts.max_connections.is_some_and(|m| m > budget.normal) {
        tracing::warn!(
            requested = opts.max_connections,
            allowed = budget.normal,
            nofile = budget.nofile,
            "the descriptor limit (ulimit -n) allows fewer connections than requested"
        );
    }
    tracing::info!(
        max_connections = budget.normal,
        overflow = budget.overflow,
        nofile = budget.nofile,
        header_timeout_s = opts.header_timeout.as_secs_f64(),
        body_timeout_s = opts.body_timeout.as_secs_f64(),
        "connection limits"
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; draining running requests");
        let _ = tx.send(());
    };
    let router = app(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let server = async {
        connections::accept_loop(listener, router, metrics, &opts, budget, &graceful, signal).await;
        // Stop accepting; ask every connection to close once its request is answered.
        graceful.shutdown().await;
    };
    let stop_engine = {
        let engine = engine.clone();
        move || async move {
            let _ = tokio::task::spawn_blocking(move || engine.shutdown(drain)).await;
        }
    };
    tokio::select! {
        _ = server => {}
        _ = async {
            if rx.await.is_ok() {
                stop_engine().await;
                tokio::time::sleep(FLUSH_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("connections still open after the drain; closing them");
            return Ok(());
        }
    };
    // The server ended first (every connection closed): stop the engine thread too.
    let _ = tokio::task::spawn_blocking(move || engine.shutdown(Duration::ZERO)).await;
    Ok(())
}

/// Resolves when the process gets Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The whole server for a command-line caller with no async runtime of its own: builds a
/// runtime, binds `addr`, calls `on_ready` with the bound address (port 0 picks a free one),
/// serves until Ctrl-C or SIGTERM, drains for up to `drain`, and returns.
pub fn run(
    addr: &str,
    state: AppState,
    drain: Duration,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("daehwa-http").build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?);
        serve(listener, state, shutdown_signal(), drain).await
    })
}
