//! The notification sender: delivers the case notifications in the store's
//! outbox to the parties' webhooks (contract 6.4).
//!
//! It works from the outbox alone: a notification is written in the same
//! transaction as the case change that causes it, and is due until an
//! attempt succeeds (a 2xx, and for a chat group robot an answer without
//! an error code) or 24 hours have passed; every attempt is
//! recorded. So a restart resumes where the last process stopped, and
//! nothing is lost. Each POST is signed (`X-Kerbside-Signature`), carries
//! its notification id (`X-Kerbside-Notification`, for a receiver that
//! must not act twice), and is given five seconds; the attempts of one
//! round run concurrently, so a hanging webhook delays only its own. Ingest
//! never waits for any of it. When attempts fall due is judged by the
//! service's clock, like everything else.
//!
//! One instance sends at a time (the leader, see `crate::sync`); a lease
//! that changes hands mid-round may deliver a notification twice, never
//! none, which is what the notification id is for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::domain::cases::{
    WEBHOOK_TIMEOUT, WebhookFormat, accepted, dingtalk_signed_url, signature,
};
use crate::store::{Attempt, Pending, Store};

/// How often the outbox is looked at, real time.
const POLL: Duration = Duration::from_millis(500);
/// Most notifications attempted in one round.
const ROUND: i64 = 32;
/// The most of an error body kept with an attempt, characters.
const ERROR_CHARS: usize = 200;

/// Starts the sender on the current tokio runtime.
pub fn spawn(store: Store, clock: Arc<dyn Clock>, leading: Arc<AtomicBool>) {
    let client = match reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .connect_timeout(WEBHOOK_TIMEOUT)
        .user_agent(concat!("kerbside/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; no case notification will be sent");
            return;
        }
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !leading.load(Ordering::Relaxed) {
                continue;
            }
            let now = clock.now();
            let s = store.clone();
            let due = match tokio::task::spawn_blocking(move || s.due_notifications(now, ROUND))
                .await
            {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the notification outbox; will retry");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the outbox read failed");
                    continue;
                }
            };
            if due.is_empty() {
                continue;
            }
            let attempts = futures_util::future::join_all(
                due.into_iter().map(|p| attempt(&client, clock.as_ref(), p)),
            )
            .await;
            let s = store.clone();
            let recorded = tokio::task::spawn_blocking(move || {
                for (id, a) in &attempts {
                    s.record_attempt(*id, a)?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .await;
            match recorded {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot record webhook attempts; they will be made again");
                }
                Err(e) => tracing::error!(error = %e, "the attempt record task failed"),
            }
        }
    });
}

/// One POST of a notification, and how it went.
async fn attempt(client: &reqwest::Client, clock: &dyn Clock, p: Pending) -> (i64, Attempt) {
    let started = Instant::now();
    let url = match (&p.robot_secret, p.format) {
        (Some(secret), WebhookFormat::Dingtalk) => {
            dingtalk_signed_url(&p.url, secret, clock.now().timestamp_millis())
        }
        _ => p.url.clone(),
    };
    let sent = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            "X-Kerbside-Signature",
            signature(&p.secret, p.body.as_bytes()),
        )
        .header("X-Kerbside-Notification", p.notification_id.to_string())
        .body(p.body.clone())
        .send()
        .await;
    let (http_status, error) = match sent {
        Ok(r) if r.status().is_success() => {
            let status = r.status().as_u16();
            let answer = r.text().await.unwrap_or_default();
            (Some(status), accepted(p.format, &answer).err())
        }
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let text: String = text.chars().take(ERROR_CHARS).collect();
            (
                Some(status.as_u16()),
                Some(format!("HTTP {status}: {}", text.trim())),
            )
        }
        Err(e) if e.is_timeout() => (
            None,
            Some(format!("no answer within {} s", WEBHOOK_TIMEOUT.as_secs())),
        ),
        Err(e) => (None, Some(error_chain(&e))),
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match &error {
        None => {
            tracing::info!(notification = p.notification_id, party = %p.party_id, "case notification delivered")
        }
        Some(e) => {
            tracing::warn!(notification = p.notification_id, party = %p.party_id, attempts = p.attempts + 1, error = %e, "case notification not delivered; will retry")
        }
    }
    (
        p.notification_id,
        Attempt {
            at: clock.now(),
            http_status,
            error,
            duration_ms,
        },
    )
}

/// An error with its causes, on one line ("error sending request: ...:
/// connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
