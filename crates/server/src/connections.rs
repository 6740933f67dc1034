//! Connection hygiene: the accept loop that replaces `axum::serve`, so that no client can hold
//! the server's connections or file descriptors.
//!
//! - **Header (and keep-alive idle) timeout**: hyper's `header_read_timeout` closes a connection
//!   whose request head is not complete within [`ConnOptions::header_timeout`], counted from the
//!   connection's start or, on a kept-alive connection, from the end of the previous response.
//!   So a half-sent header and an idle keep-alive connection are both closed after it.
//! - **Body deadline**: [`crate::body_deadline`] (408 when the whole body has not arrived within
//!   [`ConnOptions::body_timeout`]).
//! - **Connection cap** ([`Budget`]): at most `normal` connections are served; beyond them up to
//!   `overflow` more are accepted and answered `503` with `Retry-After` (but `/health` still
//!   works) under a short header timeout, one request each; beyond both, a connection is closed
//!   as soon as it is accepted (load shedding: the kernel's backlog stays short, so a `/health`
//!   probe never waits behind a flood). The cap is derived from `RLIMIT_NOFILE` minus the
//!   descriptors already open and a reserve (database, model, logs), so the server never runs out
//!   of descriptors because of connections, and `/health` keeps answering.
//! - **EMFILE**: should `accept` still fail for lack of descriptors, the loop backs off (10 ms
//!   doubling to 1 s), logs at most every 10 s, and resumes by itself.
//!
//! Connections are served by hyper's HTTP/1 connection directly (hyper-util for the Tokio glue
//! and the graceful drain), as `axum::serve` does, with these limits added.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::metrics::{Metrics, Rejection};

/// Default of [`ConnOptions::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of [`ConnOptions::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Default connection cap when none is configured (the descriptor budget may lower it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept free for everything but connections: the database and its WAL, the model
/// file, logs, the runtime's own.
pub const FD_RESERVE: usize = 64;
/// Header timeout of an over-the-cap connection (it only gets a 503 or `/health`).
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection settings (`daehwa serve` flags `--header-timeout`, `--body-timeout`,
/// `--max-connections`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnOptions {
    /// Time to receive a request's complete head, from the connection's start or the end of the
    /// previous response on a kept-alive connection (so also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Time to receive a request's whole body, from its head.
    pub body_timeout: Duration,
    /// Most connections served at once; `None` = [`DEFAULT_MAX_CONNECTIONS`]. Lowered to what the
    /// descriptor limit allows.
    pub max_connections: Option<usize>,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: None,
        }
    }
}

/// How many connections are served, and how many more answered 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub normal: usize,
    pub overflow: usize,
    /// The descriptor limit it was derived from (`None` where unknown).
    pub nofile: Option<usize>,
}

impl Budget {
    /// The budget for this process: `requested` (or the default) within the descriptors left
    /// under `RLIMIT_NOFILE` (whose soft limit is first raised to the hard one).
    pub fn for_process(requested: Option<usize>) -> Budget {
        let nofile = raise_nofile_limit();
        Budget::from_limits(requested, nofile, open_fds())
    }

    /// The budget for a descriptor limit with `open` descriptors in use.
    pub fn from_limits(requested: Option<usize>, nofile: Option<usize>, open: Option<usize>) -> Budget {
        let wanted = requested.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1);
        let Some(limit) = nofile else {
            return Budget { normal: wanted, overflow: (wanted / 4).clamp(2, 256), nofile };
        };
        let free = limit.saturating_sub(open.unwrap_or(32) + FD_RESERVE);
        let overflow = (free / 4).clamp(2, 256);
        let normal = wanted.min(free.saturating_sub(overflow)).max(1);
        Budget { normal, overflow, nofile }
    }
}

/// Raises the soft descriptor limit to the hard one (as Go's runtime does) and returns it.
#[cfg(unix)]
fn raise_nofile_limit() -> Option<usize> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn raise_nofile_limit() -> Option<usize> {
    None
}

/// Descriptors open now (Linux: `/proc/self/fd`).
fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

fn too_many_open_files(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

enum Permit {
    Normal(OwnedSemaphorePermit),
    Overflow(OwnedSemaphorePermit),
    /// Neither: the connection is closed at once.
    Shed,
}

/// A served place if one is free, else an overflow place, else none.
fn permit(normal: &Arc<Semaphore>, overflow: &Arc<Semaphore>) -> Permit {
    if let Ok(p) = normal.clone().try_acquire_owned() {
        return Permit::Normal(p);
    }
    match overflow.clone().try_acquire_owned() {
        Ok(p) => Permit::Overflow(p),
        Err(_) => Permit::Shed,
    }
}

/// What an over-the-cap connection gets for anything but `/health`.
fn over_capacity() -> Response {
    ApiError::TooManyConnections.into_response()
}

/// Accepts and serves connections until `stop` resolves; connections are registered with
/// `graceful`, which the caller drains.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    metrics: Arc<Metrics>,
    opts: &ConnOptions,
    budget: Budget,
    graceful: &GracefulShutdown,
    stop: impl Future<Output = ()>,
) {
    let normal = Arc::new(Semaphore::new(budget.normal));
    let overflow = Arc::new(Semaphore::new(budget.overflow));
    let mut served = http1::Builder::new();
    served.timer(TokioTimer::new()).header_read_timeout(opts.header_timeout).keep_alive(true);
    let mut refused = http1::Builder::new();
    refused.timer(TokioTimer::new()).header_read_timeout(opts.header_timeout.min(OVERFLOW_HEADER_TIMEOUT)).keep_alive(false);
    let mut backoff = Duration::ZERO;
    let mut last_warning: Option<Instant> = None;
    let mut suppressed = 0u64;
    tokio::pin!(stop);
    loop {
        let (stream, addr) = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) if too_many_open_files(&e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, suppressed, "cannot accept a connection: out of file descriptors; backing off");
                        last_warning = Some(Instant::now());
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                // A connection that failed before it was accepted (reset, aborted): the next.
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        backoff = Duration::ZERO;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let router = router.clone();
        let m = metrics.clone();
        match permit(&normal, &overflow) {
            // Closing at once (rather than leaving connections in the kernel's backlog) keeps
            // the backlog short, so a `/health` probe is not stuck behind a flood.
            Permit::Shed => {
                m.reject(Rejection::Connections);
                drop(io);
            }
            Permit::Normal(p) => {
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(addr));
                    router.clone().oneshot(req)
                });
                let conn = graceful.watch(served.serve_connection(io, svc));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        if e.is_timeout() {
                            m.reject(Rejection::Timeout);
                        }
                        tracing::debug!(error = %e, client = %addr, "connection ended with an error");
                    }
                    drop(p);
                });
            }
            Permit::Overflow(p) => {
                let counted = m.clone();
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    let router = router.clone();
                    let m = counted.clone();
                    async move {
                        if req.uri().path() == "/health" {
                            req.extensions_mut().insert(ConnectInfo(addr));
                            return router.oneshot(req).await;
                        }
                        m.reject(Rejection::Connections);
                        Ok(over_capacity())
                    }
                });
                let conn = graceful.watch(refused.serve_connection(io, svc));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        if e.is_timeout() {
                            m.reject(Rejection::Timeout);
                        }
                    }
                    drop(p);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_stays_under_the_descriptor_limit() {
        // 256 descriptors, 20 open: 172 free, 43 of them for 503s.
        let b = Budget::from_limits(None, Some(256), Some(20));
        assert_eq!((b.normal, b.overflow), (129, 43));
        assert!(b.normal + b.overflow + 20 + FD_RESERVE <= 256);
        assert_eq!(Budget::from_limits(Some(10), Some(256), Some(20)).normal, 10);
        assert_eq!(Budget::from_limits(Some(5000), Some(256), Some(20)).normal, 129);
        assert_eq!(Budget::from_limits(None, Some(1 << 20), Some(20)).normal, DEFAULT_MAX_CONNECTIONS);
        // A tiny limit still serves one connection.
        assert_eq!(Budget::from_limits(None, Some(50), Some(20)).normal, 1);
        assert_eq!(Budget::from_limits(Some(7), None, None).normal, 7);
    }
}
