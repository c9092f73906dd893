//! The server's counters and their Prometheus text (`GET /metrics`).
//!
//! | metric | kind | meaning |
//! | --- | --- | --- |
//! | `occ_queue_depth` | gauge | requests waiting for the model |
//! | `occ_active_slots` | gauge | pages the model is reading now |
//! | `occ_tokens_per_second` | gauge | generated tokens per second: of the last second of decoding (live), of the last batch (per request) |
//! | `occ_generated_tokens_total` | counter | generated tokens |
//! | `occ_batches_total` | counter | admissions: groups of requests admitted into the running batcher together (live), batches read (per request) |
//! | `occ_decode_steps_total` | counter | decode steps of the live batcher (one token for every active slot) |
//! | `occ_requests_total{code}` | counter | answered requests by HTTP status (499: the client went away) |
//! | `occ_request_duration_seconds` | histogram | time from a request's arrival to its last byte |
//! | `occ_decoder_slots` | gauge | decoder slots of the live batcher (absent when reading per request) |
//! | `occ_decoder_slots_requested` | gauge | decoder slots asked for (`--max-batch`); more than `occ_decoder_slots` when they did not fit the free device memory |
//! | `occ_decoder_slots_fit` | gauge | the most decoder slots the free device memory holds (memory planner; absent without a memory figure) |

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use occ_model::batcher::SlotFit;

/// Upper bounds of the latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Debug, Default)]
struct Latency {
    /// Counts per bucket (not cumulative), one more for `+Inf`.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
}

/// Counters shared by the handlers and the model's worker.
#[derive(Debug, Default)]
pub struct Metrics {
    queue_depth: AtomicUsize,
    active: AtomicUsize,
    generated: AtomicU64,
    batches: AtomicU64,
    steps: AtomicU64,
    /// f64 bits of the last batch's tokens per second.
    tokens_per_second: AtomicU64,
    requests: Mutex<BTreeMap<u16, u64>>,
    latency: Mutex<Latency>,
    /// The live batcher's decoder slots (`None`: reading per request).
    slots: Mutex<Option<SlotFit>>,
}

impl Metrics {
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n, Ordering::Relaxed);
    }

    pub fn set_active(&self, n: usize) {
        self.active.store(n, Ordering::Relaxed);
    }

    /// The live batcher's decoder slots (`None`: reading per request).
    pub fn set_slots(&self, fit: Option<SlotFit>) {
        *self.slots.lock().unwrap_or_else(|p| p.into_inner()) = fit;
    }

    /// The live batcher's decoder slots: asked for, used, and the memory plan behind them.
    pub fn slots(&self) -> Option<SlotFit> {
        *self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pages the model is reading now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A batch that generated `tokens` in `elapsed`.
    pub fn record_batch(&self, tokens: usize, elapsed: Duration) {
        self.generated.fetch_add(tokens as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        let rate = tokens as f64 / elapsed.as_secs_f64().max(1e-9);
        self.tokens_per_second.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Live decoding: `tokens` generated in `elapsed` (a window of decode steps).
    pub fn record_tokens(&self, tokens: usize, elapsed: Duration) {
        self.generated.fetch_add(tokens as u64, Ordering::Relaxed);
        let rate = tokens as f64 / elapsed.as_secs_f64().max(1e-9);
        self.tokens_per_second.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Live decoding: one decode step ran.
    pub fn record_step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Live decoding: a group of requests was admitted into the running batcher.
    pub fn record_admission(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered with `status` after `elapsed`.
    pub fn record_request(&self, status: u16, elapsed: Duration) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = LATENCY_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(LATENCY_BUCKETS.len());
        l.counts[bucket] += 1;
        l.sum += secs;
    }

    /// Answered requests with `status` so far.
    pub fn requests_with(&self, status: u16) -> u64 {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).get(&status).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let gauge = |s: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            &mut s,
            "occ_queue_depth",
            "Requests waiting for the model.",
            "gauge",
            self.queue_depth.load(Ordering::Relaxed).to_string(),
        );
        gauge(&mut s, "occ_active_slots", "Pages the model is reading now.", "gauge", self.active().to_string());
        gauge(
            &mut s,
            "occ_tokens_per_second",
            "Generated tokens per second (live: the last second of decoding; per request: the last batch).",
            "gauge",
            format!("{}", f64::from_bits(self.tokens_per_second.load(Ordering::Relaxed))),
        );
        gauge(
            &mut s,
            "occ_generated_tokens_total",
            "Generated tokens.",
            "counter",
            self.generated.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut s,
            "occ_batches_total",
            "Groups of requests admitted together (live) or batches read (per request).",
            "counter",
            self.batches.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut s,
            "occ_decode_steps_total",
            "Decode steps of the live batcher.",
            "counter",
            self.steps.load(Ordering::Relaxed).to_string(),
        );
        if let Some(fit) = self.slots() {
            gauge(&mut s, "occ_decoder_slots", "Decoder slots of the live batcher.", "gauge", fit.used.to_string());
            gauge(
                &mut s,
                "occ_decoder_slots_requested",
                "Decoder slots asked for (--max-batch); lowered to occ_decoder_slots when they do not fit.",
                "gauge",
                fit.requested.to_string(),
            );
            if let Some(limit) = fit.limit {
                gauge(
                    &mut s,
                    "occ_decoder_slots_fit",
                    "The most decoder slots the free device memory holds (memory planner).",
                    "gauge",
                    limit.to_string(),
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP occ_requests_total Answered requests by HTTP status (499: the client went away).\n\
             # TYPE occ_requests_total counter"
        );
        for (code, n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(s, "occ_requests_total{{code=\"{code}\"}} {n}");
        }
        let l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            s,
            "# HELP occ_request_duration_seconds Time from a request's arrival to its last byte.\n\
             # TYPE occ_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += l.counts[i];
            let _ = writeln!(s, "occ_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += l.counts[LATENCY_BUCKETS.len()];
        let _ = writeln!(s, "occ_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(s, "occ_request_duration_seconds_sum {}", l.sum);
        let _ = writeln!(s, "occ_request_duration_seconds_count {cumulative}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_request() {
        let m = Metrics::default();
        m.record_request(200, Duration::from_millis(5));
        m.record_request(200, Duration::from_millis(300));
        m.record_request(503, Duration::from_secs(1000));
        m.record_batch(50, Duration::from_millis(500));
        let text = m.render();
        assert!(text.contains("occ_request_duration_seconds_bucket{le=\"0.01\"} 1\n"), "{text}");
        assert!(text.contains("occ_request_duration_seconds_bucket{le=\"0.5\"} 2\n"), "{text}");
        assert!(text.contains("occ_request_duration_seconds_bucket{le=\"300\"} 2\n"), "{text}");
        assert!(text.contains("occ_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("occ_request_duration_seconds_count 3\n"), "{text}");
        assert!(text.contains("occ_requests_total{code=\"200\"} 2\n"), "{text}");
        assert!(text.contains("occ_requests_total{code=\"503\"} 1\n"), "{text}");
        assert!(text.contains("occ_tokens_per_second 100\n"), "{text}");
        assert!(text.contains("occ_generated_tokens_total 50\n"), "{text}");
    }
}
