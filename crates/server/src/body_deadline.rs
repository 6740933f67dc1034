//! A deadline for reading a whole request body: a body trickled in (one byte every few seconds)
//! is cut when the deadline passes, and the request is answered 408.
//!
//! Hand-written because tower-http's `TimeoutBody` restarts its timer at every frame: it bounds
//! the gap between two chunks, so a body trickled one byte at a time never times out. Here the
//! deadline is set once, when the request arrives.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a body reports once its deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// `inner` with a deadline for the whole of it.
pub struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    pub fn new(inner: Body, limit: Duration) -> Self {
        DeadlineBody { inner, sleep: Box::pin(tokio::time::sleep_until(Instant::now() + limit)), limit }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request body gets `limit` from now to arrive in full.
pub async fn layer(limit: Duration, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = if http_body::Body::is_end_stream(&body) { body } else { Body::new(DeadlineBody::new(body, limit)) };
    next.run(Request::from_parts(parts, body)).await
}

/// Whether `e` (or any error under it) is a [`BodyTimeout`].
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}
