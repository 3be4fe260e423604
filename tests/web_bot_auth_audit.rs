//! Audit events of Web Bot Auth requests name the kind of caller. A file of its own: every
//! test here installs a subscriber, so no test of the same process registers the audit
//! callsites while no subscriber listens (which would leave them uninteresting for a
//! test that does).

mod support;

use http::StatusCode;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use support::bots::{BotWorld, NOW, get};
use tower_aauth::testing::KeySource;

use tower_aauth::policy::{AUDIT_TARGET, AuditField};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

type Event = BTreeMap<String, String>;

/// Records every event of the audit target as a field → value map.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Event>>>);

struct Fields<'a>(&'a mut Event);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == AUDIT_TARGET {
            let mut fields = Event::new();
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
}

impl Capture {
    /// Captures this thread's audit events until the guard drops. The interest cache
    /// is rebuilt afterwards: a test of this file running without a subscriber on
    /// another thread may have registered the audit callsite as uninteresting while
    /// this subscriber was being registered.
    fn install() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        tracing::callsite::rebuild_interest_cache();
        (capture, guard)
    }

    fn one(&self) -> Event {
        let mut events = std::mem::take(&mut *self.0.lock().unwrap());
        assert_eq!(events.len(), 1, "exactly one audit event per request: {events:?}");
        events.pop().unwrap()
    }
}

#[tokio::test]
async fn the_audit_event_of_a_bot_names_its_kind_origin_and_key() {
    let world = BotWorld::new().await;
    let (capture, _guard) = Capture::install();
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    let event = capture.one();
    assert_eq!(event[AuditField::Kind.name()], "bot");
    assert_eq!(event[AuditField::BotOrigin.name()], world.directory.origin());
    assert_eq!(event[AuditField::KeyThumbprint.name()], world.signer.thumbprint());
    assert_eq!(event[AuditField::Reason.name()], "bot");
    assert_eq!(event[AuditField::Decision.name()], "allow");
    assert!(!event.contains_key(AuditField::Agent.name()));
}

#[tokio::test]
async fn the_audit_event_of_an_aauth_agent_names_the_agent_kind() {
    let world = BotWorld::new().await;
    let (capture, _guard) = Capture::install();
    let mut request = get("/verified");
    world.app.agent.sign(&mut request, &KeySource::Hwk, NOW);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    let event = capture.one();
    assert_eq!(event[AuditField::Kind.name()], "agent");
    assert!(!event.contains_key(AuditField::BotOrigin.name()));
}

#[tokio::test]
async fn a_refused_bot_is_audited_without_an_identity() {
    let world = BotWorld::new().await;
    let (capture, _guard) = Capture::install();
    let mut request = get("/bot");
    let mut options = tower_aauth::testing::BotSignOptions::default();
    options.alg = Some("rsa-pss-sha512".to_owned());
    world.signer.sign_with(&mut request, NOW, &options);
    assert_eq!(world.send(request).await.status(), StatusCode::UNAUTHORIZED);
    let event = capture.one();
    assert_eq!(event[AuditField::Reason.name()], "unsupported_algorithm");
    assert_eq!(event[AuditField::Decision.name()], "reject");
    for field in [AuditField::Kind, AuditField::BotOrigin, AuditField::KeyThumbprint] {
        assert!(!event.contains_key(field.name()), "{}", field.name());
    }
}
