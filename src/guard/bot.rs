//! The bot guards: [`require_bot`] and [`require_bot_from`] admit requests the layer
//! verified as Web Bot Auth ([`crate::bot`]) and refuse every other request, AAuth agents
//! included, with `403 bot_required` and an `Accept-Signature` asking for a Web Bot Auth
//! signature (RFC 9421 §5.1). A bot from an origin the guard does not list gets `403
//! bot_not_admitted`. A request the layer never saw is a `500`, as for every guard.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, HeaderValue, Request, Response};
use tower_service::Service;

use super::judge::{Reader, without_layer};
use super::middleware::{BoxedResponse, GuardLayer, GuardPolicy, Verdict, never};
use crate::bot::VerifiedBot;
use crate::challenge::error_response;
use crate::error::Error;
use crate::names;
use crate::state::Inspected;

/// What `Accept-Signature` asks a bot for: `@authority` and its `Signature-Agent` member
/// covered, `created`, `expires` and the Web Bot Auth tag.
const ACCEPT_SIGNATURE: &str =
    r#"sig1=("@authority" "signature-agent";key="agent1");created;expires;tag="web-bot-auth""#;

const BOT_REQUIRED: Error = Error::forbidden(
    names::problem::BOT_REQUIRED,
    "this resource admits verified Web Bot Auth bots only",
);
const BOT_NOT_ADMITTED: Error = Error::forbidden(
    names::problem::BOT_NOT_ADMITTED,
    "this resource does not admit bots of that directory",
);

/// The rule of [`require_bot`] and [`require_bot_from`].
#[derive(Clone, Debug)]
pub struct BotPolicy {
    origins: Option<Arc<[String]>>,
}

/// A guard admitting verified Web Bot Auth bots of any directory, and nothing else: not
/// unsigned requests, not AAuth agents. The layer must have
/// [`web_bot_auth`](crate::AAuthBuilder::web_bot_auth) enabled for any bot to pass.
///
/// ```
/// # fn app(aauth: tower_aauth::AAuth) -> axum::Router {
/// use axum::routing::get;
/// use tower_aauth::bot::VerifiedBot;
/// axum::Router::new()
///     .route("/crawl", get(|bot: VerifiedBot| async move { bot.directory_origin().to_owned() })
///         .route_layer(tower_aauth::guard::require_bot()))
///     .layer(aauth.layer())
/// # }
/// ```
pub fn require_bot() -> GuardLayer<BotPolicy> {
    GuardLayer {
        policy: BotPolicy { origins: None },
    }
}

/// [`require_bot`], admitting only bots whose key directory is on one of `origins`
/// (origins as [`VerifiedBot::directory_origin`] names them, such as
/// `https://bots.example`). Each is normalised first: scheme and host lower-cased, a
/// trailing `/` and the `https` default port `:443` dropped.
///
/// # Panics
///
/// At start-up, if an origin, once normalised, is not one a bot can be verified from: an
/// `https` origin on a DNS name (no other port, path, query or userinfo, no address
/// literal), or `http://127.0.0.1:PORT` (admitted by the layer only under its loopback
/// fence).
pub fn require_bot_from<I, S>(origins: I) -> GuardLayer<BotPolicy>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let origins: Vec<String> = origins
        .into_iter()
        .map(|origin| {
            let origin = origin.into();
            let normalised = normalise_origin(&origin);
            assert!(
                crate::bot::agent::admitted_origin(
                    &normalised,
                    &crate::discovery::admission::IdentifierPolicy::allowing_http_loopback()
                ),
                "tower-aauth: {origin:?} is not an origin a Web Bot Auth directory can have"
            );
            normalised
        })
        .collect();
    GuardLayer {
        policy: BotPolicy {
            origins: Some(origins.into()),
        },
    }
}

/// Scheme and host lower-cased, one trailing `/` and the `https` default port dropped.
fn normalise_origin(origin: &str) -> String {
    let lowered = origin.to_ascii_lowercase();
    let trimmed = lowered.strip_suffix('/').unwrap_or(&lowered);
    match trimmed.strip_suffix(":443") {
        Some(bare) if bare.starts_with("https://") => bare.to_owned(),
        _ => trimmed.to_owned(),
    }
}

impl BotPolicy {
    /// `None` to serve, else the refusal.
    fn judge<B: From<Bytes>>(&self, extensions: &Extensions) -> Option<Response<B>> {
        let Some(Inspected(shared)) = extensions.get::<Inspected>() else {
            return Some(without_layer(Reader::Guard).to_response());
        };
        let Some(bot) = extensions.get::<VerifiedBot>() else {
            return Some(bot_required(shared.hook()));
        };
        match &self.origins {
            Some(origins) if !origins.iter().any(|o| o.eq_ignore_ascii_case(bot.directory_origin())) => {
                Some(error_response(shared.hook(), &BOT_NOT_ADMITTED))
            }
            _ => None,
        }
    }
}

/// `403 bot_required` with `Accept-Signature`: the answer to a request without a
/// verified bot where one is required.
pub(crate) fn bot_required<B: From<Bytes>>(hook: Option<&crate::challenge::RejectionHook>) -> Response<B> {
    let mut response = error_response(hook, &BOT_REQUIRED);
    response
        .headers_mut()
        .insert(names::bot::ACCEPT_SIGNATURE, HeaderValue::from_static(ACCEPT_SIGNATURE));
    response
}

impl<S, ReqBody, ResBody> GuardPolicy<S, ReqBody, ResBody> for BotPolicy
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Hold = Infallible;

    fn check(&self, request: &Parts) -> Verdict<ResBody, Infallible> {
        match self.judge(&request.extensions) {
            None => Verdict::Allow,
            Some(response) => Verdict::Answer(response),
        }
    }

    fn hold(&self, hold: Infallible, _: &mut S, _: Request<ReqBody>) -> BoxedResponse<ResBody, S::Error> {
        never(hold)
    }
}
