//! Running the app on a listener with graceful shutdown: on the signal, stop accepting, let the
//! engine finish running sequences for up to `drain` (then it cancels the rest, which ends their
//! streams), and return once connections have closed.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use crate::{app, AppState};

/// Extra time after the engine has drained for responses to reach their clients.
const FLUSH_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; draining running requests");
        let _ = tx.send(());
    };
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(signal).into_future();
    let stop_engine = {
        let engine = engine.clone();
        move || async move {
            let _ = tokio::task::spawn_blocking(move || engine.shutdown(drain)).await;
        }
    };
    let result = tokio::select! {
        r = server => r,
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
    result
}
