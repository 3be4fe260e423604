//! The verifying tower layer: [`AAuthLayer`] → [`AAuthService`] → [`ResponseFuture`].
//!
//! * Unsigned request (none of the three signature headers): passes through with no
//!   identity; guards and extractors decide later.
//! * Partial or bad signature: `401` with exactly one `Signature-Error`,
//!   `Cache-Control: no-store` and a problem+json body; the inner service never runs.
//! * Valid: a [`VerifiedRequest`] is inserted into the request's extensions and the inner
//!   service is called.
//!
//! When every key is in memory the whole verification runs inside `call` and the future
//! is the inner service's own, wrapped without boxing. Only a key fetch or a covered
//! `content-digest` takes the boxed slow path.
//!
//! The request body type must be constructible from [`Bytes`] so that a body buffered to
//! check `Content-Digest` can be handed on (axum's `Body` and `Full<Bytes>` are).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{AAuth, Shared};
use crate::error::Error;
use crate::verifier::{Pending, Step, VerifiedRequest, Verifier};

/// Verifies AAuth request signatures. Build it with [`AAuth::layer`].
#[derive(Clone, Debug)]
pub struct AAuthLayer {
    aauth: AAuth,
}

impl AAuthLayer {
    /// A layer for this configuration.
    pub fn new(aauth: AAuth) -> Self {
        AAuthLayer { aauth }
    }
}

impl<S> Layer<S> for AAuthLayer {
    type Service = AAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AAuthService {
            inner,
            shared: self.aauth.shared.clone(),
        }
    }
}

/// The service produced by [`AAuthLayer`].
#[derive(Clone)]
pub struct AAuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for AAuthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

type VerifyFuture<B> = Pin<Box<dyn Future<Output = Result<Request<B>, Error>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = Verifier { shared: &self.shared };
        let step = verifier.verify_head(
            request.method(),
            request.uri(),
            request.headers(),
            original_path(&request),
        );
        let state = match step {
            Step::Unsigned => State::Inner {
                future: inner.call(request),
            },
            Step::Done(Ok(verified)) => {
                request.extensions_mut().insert(verified);
                State::Inner {
                    future: inner.call(request),
                }
            }
            Step::Done(Err(error)) => {
                log_rejection(&error);
                State::Rejected { error: Some(error) }
            }
            Step::Pending(pending) => State::Verifying {
                future: Box::pin(finish(*pending, self.shared.clone(), request)),
                service: Some(inner),
            },
        };
        ResponseFuture { state }
    }
}

/// The path the agent signed: the original URI's, even inside a nested axum router.
fn original_path<B>(request: &Request<B>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = request.extensions().get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    request.uri().path()
}

async fn finish<B>(pending: Pending, shared: Arc<Shared>, request: Request<B>) -> Result<Request<B>, Error>
where
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if pending.digest.is_none() {
        let verified: VerifiedRequest = pending.finish(shared, None).await?;
        let mut request = request;
        request.extensions_mut().insert(verified);
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let limit = shared.max_body_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(Error::PayloadTooLarge);
        }
        Err(_) => return Err(Error::invalid_signature("the request body could not be read")),
    };
    let verified = pending.finish(shared, Some(&bytes)).await?;
    let mut request = Request::from_parts(parts, B::from(bytes));
    request.extensions_mut().insert(verified);
    Ok(request)
}

fn log_rejection(error: &Error) {
    tracing::debug!(target: "tower_aauth", code = error.code(), detail = error.detail(), "request refused");
}

pin_project! {
    /// The response future of [`AAuthService`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner {
            #[pin]
            future: S::Future,
        },
        Verifying {
            future: VerifyFuture<B>,
            service: Option<S>,
        },
        Rejected {
            error: Option<Error>,
        },
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Verifying { future, service } => {
                    let result = ready!(future.as_mut().poll(cx));
                    match result {
                        Ok(request) => {
                            let Some(mut service) = service.take() else {
                                let error = Error::Misconfigured {
                                    detail: "response future polled after completion",
                                };
                                return Poll::Ready(Ok(error.to_response()));
                            };
                            let future = service.call(request);
                            this.state.set(State::Inner { future });
                        }
                        Err(error) => {
                            log_rejection(&error);
                            this.state.set(State::Rejected { error: Some(error) });
                        }
                    }
                }
                StateProj::Rejected { error } => {
                    let error = error.take().unwrap_or(Error::Misconfigured {
                        detail: "response future polled after completion",
                    });
                    return Poll::Ready(Ok(error.to_response()));
                }
            }
        }
    }
}
