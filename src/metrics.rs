//! Prometheus metrics, kept with atomics: counters of what ingest decided
//! and histograms of batch size and receive-to-commit latency.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::events::Reason;

/// A fixed-bucket histogram (cumulative on output, as Prometheus wants).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro
            .fetch_add((v * 1e6).max(0.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    rejected: [AtomicU64; Reason::ALL.len()],
    pub batches: AtomicU64,
    /// Deliveries (MQTT messages) per committed batch.
    pub batch_size: Histogram,
    /// Seconds from a message's arrival to its batch's commit.
    pub commit_latency: Histogram,
    pub store_retries: AtomicU64,
    /// Bays replayed from history (because of a late event) per transaction.
    pub replayed_bays: Histogram,
    /// Messages (and their payload bytes) held between the broker and the store.
    queued_messages: AtomicU64,
    queued_bytes: AtomicU64,
    /// Rejection notices not published because too many were waiting.
    pub rejection_notices_dropped: AtomicU64,
    /// Messages set aside after failing to store, alone, several times.
    pub quarantined: AtomicU64,
    /// Completed sweeps (overstays by time, staleness published).
    pub sweeps: AtomicU64,
}

const SIZE_BOUNDS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];
const REPLAY_BOUNDS: &[f64] = &[0.0, 1.0, 4.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            events_accepted: AtomicU64::new(0),
            events_duplicate: AtomicU64::new(0),
            rejected: Default::default(),
            batches: AtomicU64::new(0),
            batch_size: Histogram::new(SIZE_BOUNDS),
            commit_latency: Histogram::new(LATENCY_BOUNDS),
            store_retries: AtomicU64::new(0),
            replayed_bays: Histogram::new(REPLAY_BOUNDS),
            quarantined: AtomicU64::new(0),
            rejection_notices_dropped: AtomicU64::new(0),
            queued_messages: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            sweeps: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one rejected event.
    pub fn rejected(&self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes messages (and bytes of payload) taken into the ingest queue.
    pub fn queued(&self, messages: u64, bytes: u64) {
        self.queued_messages.fetch_add(messages, Ordering::Relaxed);
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Notes messages (and bytes of payload) that left the ingest queue.
    pub fn dequeued(&self, messages: u64, bytes: u64) {
        self.queued_messages.fetch_sub(messages, Ordering::Relaxed);
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Rejected events so far, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "kerbside_events_accepted_total",
            "Events stored as new.",
            self.events_accepted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kerbside_events_duplicate_total",
            "Events already stored (same device_id and event_id).",
            self.events_duplicate.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kerbside_events_rejected_total",
            "Events refused, all reasons.",
            self.rejected_total(),
        );
        let _ = writeln!(
            out,
            "# HELP kerbside_events_rejected_by_reason_total Events refused, by reason.\n# TYPE kerbside_events_rejected_by_reason_total counter"
        );
        for (r, c) in Reason::ALL.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "kerbside_events_rejected_by_reason_total{{reason=\"{}\"}} {}",
                r.as_str(),
                c.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "kerbside_ingest_batches_total",
            "Batches committed.",
            self.batches.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kerbside_ingest_store_retries_total",
            "Batch commits retried after a store failure.",
            self.store_retries.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kerbside_quarantined_total",
            "Messages set aside after failing to store, alone, several times (GET /v1/quarantine).",
            self.quarantined.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kerbside_rejection_notices_dropped_total",
            "Rejections stored but not published to their device, because too many notices were waiting.",
            self.rejection_notices_dropped.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kerbside_sweeps_total",
            "Sweeps completed (overstays that time alone decides, stale bays).",
            self.sweeps.load(Ordering::Relaxed),
        );
        for (name, help, v) in [
            (
                "kerbside_ingest_queue_messages",
                "Messages held between the broker and the store.",
                &self.queued_messages,
            ),
            (
                "kerbside_ingest_queue_bytes",
                "Payload bytes held between the broker and the store.",
                &self.queued_bytes,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.batch_size.render(
            &mut out,
            "kerbside_ingest_batch_messages",
            "MQTT messages per committed batch.",
        );
        self.replayed_bays.render(
            &mut out,
            "kerbside_ingest_replayed_bays",
            "Bays replayed from history per transaction, because of a late event.",
        );
        self.commit_latency.render(
            &mut out,
            "kerbside_ingest_commit_latency_seconds",
            "Seconds from a message's arrival at the service to its batch's commit.",
        );
        out
    }
}
