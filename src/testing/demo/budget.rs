//! The budget run of the demo (`cargo run --example demo -- --budget`): a metered route
//! spends the auth token's budget, runs out, and the agent steps up for a new one
//! (draft-hardt-aauth-budgets). Every step is printed and checked.
//!
//! The resource meters `GET /report` at 1000 `USD` at 6 decimals (0.001 USD) a call and
//! offers up to 1 USD; the auth server, as a person server sizing its allocation, grants
//! 3000 (three calls). So the agent is served three times, refused the fourth with
//! `reason=budget-exhausted`, takes the new resource token to the auth server (the person
//! approves again), and is served on the new budget.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::report::{self, DemoReport};
use super::{Demo, PersonAction, Printer, play_person};
use crate::testing::flow::unverified_claims;
use crate::testing::{Exchange, FlowEvent, FlowOutcome, FlowStep, KeySource};

/// What a call of `/report` costs, in micro-dollars.
pub(crate) const PRICE: u64 = 1000;
/// What the resource offers per auth token (1 USD).
pub(crate) const OFFER: u64 = 1_000_000;
/// What the auth server grants (three calls).
pub(crate) const ALLOCATION: u64 = 3 * PRICE;

fn budget(amount: u64) -> Value {
    json!({ "amount": amount, "unit": "USD", "decimals": 6 })
}

fn served_with(exchange: Option<&Exchange>, remaining: u64) -> bool {
    exchange.is_some_and(|e| {
        e.status == StatusCode::OK
            && e.budget_figure("remaining") == Some(remaining)
            && e.budget_figure("cost") == Some(PRICE)
            && e.budget_figure("decimals") == Some(6)
            && e.header(crate::names::header::AAUTH_BUDGET)
                .is_some_and(|v| v.contains("unit=\"USD\""))
    })
}

fn granted_budget(outcome: &FlowOutcome) -> Option<Value> {
    let token = outcome.auth_token.as_deref()?;
    unverified_claims(token)?.get("budget").cloned()
}

/// Runs the budget flow against a started demo and checks it.
pub(super) async fn run(demo: &Demo, print: Printer) -> DemoReport {
    let mut report = DemoReport::default();
    let url = format!("{}/report", demo.resource);
    let generation = demo.generation;
    let (interactions, mut inbox) = mpsc::unbounded_channel::<String>();
    let observer_print = print.clone();
    let client = demo
        .client()
        .with_max_polling(Duration::from_secs(60))
        .with_observer(move |event| {
            observer_print(&report::describe(event, generation));
            if let FlowEvent::Interaction { url, .. } = event {
                let _ = interactions.send(url.clone());
            }
        });
    // The person approves every consent request the agent shows them.
    let person_print = print.clone();
    let person = tokio::spawn(async move {
        while let Some(url) = inbox.recv().await {
            let (one, only) = mpsc::unbounded_channel();
            let _ = one.send(url);
            play_person(PersonAction::Approve, only, person_print.clone()).await;
        }
    });

    print("\n--- step 1: the first call of the metered /report earns an auth token with a budget\n");
    let first = client.fetch(Method::GET, &url, None).await;
    let first = match first {
        Ok(outcome) => outcome,
        Err(error) => {
            print(&format!("[agent] the flow failed: {error}\n"));
            report.expect(false, "the first call of /report is served after consent");
            person.abort();
            print(&report.to_string());
            return report;
        }
    };
    let offer = first.transcript.first().and_then(Exchange::resource_token_claims);
    report.expect(
        offer.as_ref().and_then(|c| c.get("budget")) == Some(&budget(OFFER)),
        "the challenge's resource token offers a budget of 1000000 USD at 6 decimals (1 USD)",
    );
    report.expect(
        granted_budget(&first) == Some(budget(ALLOCATION)),
        "the auth token grants 3000 of it: the unit and scale unchanged, the amount narrowed",
    );
    report.expect(
        served_with(Some(&first.response), ALLOCATION - PRICE),
        "the call is served: AAuth-Budget: remaining=2000; cost=1000; unit=\"USD\"; decimals=6",
    );
    let Some(token) = first.auth_token.clone() else {
        person.abort();
        print(&report.to_string());
        return report;
    };

    print("\n--- step 2: two more calls spend the rest of the budget\n");
    let source = KeySource::Jwt(token.clone());
    for remaining in [PRICE, 0] {
        let call = client.send(FlowStep::Retry, Method::GET, &url, None, &source).await;
        report.expect(
            served_with(call.as_ref().ok(), remaining),
            format!("a call is served and leaves remaining={remaining}"),
        );
    }

    print("\n--- step 3: the fourth call finds the budget spent\n");
    let spent = client
        .send(FlowStep::Retry, Method::GET, &url, None, &source)
        .await
        .ok();
    report.expect(
        spent.as_ref().is_some_and(|e| {
            e.status == StatusCode::UNAUTHORIZED && e.requirement_reason().as_deref() == Some("budget-exhausted")
        }),
        "401 AAuth-Requirement: requirement=auth-token; resource-token=\"…\"; reason=budget-exhausted",
    );
    report.expect(
        spent
            .as_ref()
            .is_some_and(|e| e.budget_figure("remaining") == Some(0) && e.budget_figure("cost").is_none()),
        "AAuth-Budget: remaining=0 beside the challenge, and no cost: the refusal drew nothing",
    );
    report.expect(
        spent
            .as_ref()
            .and_then(Exchange::resource_token_claims)
            .is_some_and(|c| c.get("budget") == Some(&budget(OFFER)) && c.get("scope").is_some()),
        "the new resource token asks for the same scope and offers a new budget",
    );
    let record =
        json!([{ "jti": unverified_claims(&token).and_then(|c| c.get("jti").cloned()), "consumed": ALLOCATION }]);
    report.expect(
        spent
            .as_ref()
            .and_then(Exchange::resource_token_claims)
            .is_some_and(|c| c.get("budget_consumed") == Some(&record)),
        "and reports budget_consumed: the spent token's jti consumed 3000",
    );

    print("\n--- step 4: the agent takes the new resource token to the auth server and is served again\n");
    let stepped = client.fetch_presenting(Method::GET, &url, None, &token).await;
    person.abort();
    match stepped {
        Ok(outcome) => {
            report.expect(
                outcome.auth_token.as_deref().is_some_and(|new| new != token),
                "a new auth token is issued",
            );
            report.expect(
                granted_budget(&outcome) == Some(budget(ALLOCATION)),
                "it carries a fresh budget of 3000",
            );
            report.expect(
                served_with(Some(&outcome.response), ALLOCATION - PRICE),
                "the call is served on the new budget: remaining=2000; cost=1000",
            );
        }
        Err(error) => {
            print(&format!("[agent] the step-up failed: {error}\n"));
            report.expect(false, "the step-up earns a new auth token");
        }
    }
    print(&report.to_string());
    report
}
