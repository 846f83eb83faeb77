//! At most `max_alerts` alerts of one rule for one server endpoint per
//! interval, in capture time. What goes over is counted, and each interval
//! with suppressed alerts ends in one summary alert carrying the count.
//!
//! Intervals start at the first alert of their key. A key's interval is
//! closed, and its summary emitted, by the key's next alert after the end, by
//! [`AlertRateLimiter::expire`] or [`AlertRateLimiter::finish`], or when the
//! key is evicted to stay within `max_tracked_keys`.
//!
//! The limiter decides on an [`AlertDraft`] before the alert is built: most
//! alerts of a storm are suppressed, and one of those is never built whole.

use std::{net::SocketAddr, num::NonZeroUsize};

use lru::LruCache;
use serde::Deserialize;

use super::{Event, EventBody};

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Alerts emitted per rule, server endpoint and interval.
    pub max_alerts: u32,
    pub interval_secs: u64,
    /// Rule and endpoint pairs tracked at once; the least recently alerted
    /// is forgotten first.
    pub max_tracked_keys: usize,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            max_alerts: 10,
            interval_secs: 60,
            max_tracked_keys: 10_000,
        }
    }
}

/// A rule id and a server endpoint.
type Key = (&'static str, SocketAddr);

/// An alert the limiter decides on before it is built.
pub trait AlertDraft {
    /// Its rule and server endpoint: what it is limited by.
    fn key(&self) -> Key;
    fn timestamp_ns(&self) -> u64;
    /// The alert, to be emitted.
    fn build(self) -> Event;
    /// What the summary of its interval shows if it is the last alert
    /// suppressed: everything but its message, which the summary replaces.
    fn evidence(self) -> Event;
}

struct Interval {
    start_ns: u64,
    emitted: u32,
    suppressed: u64,
    /// The summary's evidence: flow, http and timestamp of the last
    /// suppressed alert.
    last_suppressed: Option<Event>,
}

impl Interval {
    fn starting(start_ns: u64) -> Interval {
        Interval {
            start_ns,
            emitted: 0,
            suppressed: 0,
            last_suppressed: None,
        }
    }

    /// `alert` built, if under `max_alerts`, to be emitted; otherwise it is
    /// counted and its evidence kept for the summary.
    fn admit(&mut self, alert: impl AlertDraft, max_alerts: u32) -> Option<Event> {
        if self.emitted < max_alerts {
            self.emitted += 1;
            Some(alert.build())
        } else {
            self.suppressed += 1;
            self.last_suppressed = Some(alert.evidence());
            None
        }
    }
}

pub struct AlertRateLimiter {
    settings: RateLimitSettings,
    intervals: LruCache<Key, Interval>,
    suppressed_total: u64,
    keys_evicted: u64,
}

impl AlertRateLimiter {
    pub fn new(settings: RateLimitSettings) -> AlertRateLimiter {
        // Bounded by `resize`, not by `LruCache::new`, which reserves room
        // for every key at once: the configuration may allow billions.
        let mut intervals = LruCache::unbounded();
        intervals.resize(key_capacity(&settings));
        AlertRateLimiter {
            settings,
            intervals,
            suppressed_total: 0,
            keys_evicted: 0,
        }
    }

    /// Applies new settings to the intervals open and to come. When fewer
    /// keys may be tracked, the least recently alerted are forgotten as on
    /// eviction: counted, their summaries pushed to `out`.
    pub fn reconfigure(&mut self, settings: RateLimitSettings, out: &mut Vec<Event>) {
        let capacity = key_capacity(&settings);
        while self.intervals.len() > capacity.get() {
            if let Some((_, evicted)) = self.intervals.pop_lru() {
                self.keys_evicted += 1;
                out.extend(summary(&self.settings, evicted));
            }
        }
        self.intervals.resize(capacity);
        self.settings = settings;
    }

    /// Pushes to `out` the alert `draft` stands for if under its limit,
    /// after the summary of its key's previous interval if that one ended,
    /// and the summary of a key evicted to make room.
    pub fn admit(&mut self, draft: impl AlertDraft, out: &mut Vec<Event>) {
        let key = draft.key();
        let now_ns = draft.timestamp_ns();
        let interval_ns = self.interval_ns();
        let max_alerts = self.settings.max_alerts;
        let admitted = if let Some(interval) = self.intervals.get_mut(&key) {
            if now_ns >= interval.start_ns.saturating_add(interval_ns) {
                let ended = std::mem::replace(interval, Interval::starting(now_ns));
                out.extend(summary(&self.settings, ended));
            }
            interval.admit(draft, max_alerts)
        } else {
            // A new key: its interval takes the alert before it is
            // tracked, so the key is looked up once; what it evicts is
            // still summarized first.
            let mut interval = Interval::starting(now_ns);
            let admitted = interval.admit(draft, max_alerts);
            if let Some((_, evicted)) = self.intervals.push(key, interval) {
                self.keys_evicted += 1;
                out.extend(summary(&self.settings, evicted));
            }
            admitted
        };
        match admitted {
            Some(event) => out.push(event),
            None => self.suppressed_total += 1,
        }
    }

    /// Closes every interval that ended by `now_ns` (capture time), pushing
    /// the summaries of those with suppressed alerts to `out`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Event>) {
        let interval_ns = self.interval_ns();
        let ended: Vec<Key> = self
            .intervals
            .iter()
            .filter(|(_, interval)| now_ns >= interval.start_ns.saturating_add(interval_ns))
            .map(|(key, _)| *key)
            .collect();
        for key in ended {
            if let Some(interval) = self.intervals.pop(&key) {
                out.extend(summary(&self.settings, interval));
            }
        }
    }

    /// The input ended: summaries of every open interval with suppressed
    /// alerts.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        while let Some((_, interval)) = self.intervals.pop_lru() {
            out.extend(summary(&self.settings, interval));
        }
    }

    /// Alerts suppressed since start (`loss.alerts_suppressed`).
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }

    /// Keys forgotten to stay within bounds since start
    /// (`loss.rate_limit_keys_evicted`).
    pub fn keys_evicted(&self) -> u64 {
        self.keys_evicted
    }

    fn interval_ns(&self) -> u64 {
        self.settings.interval_secs.saturating_mul(1_000_000_000)
    }
}

fn key_capacity(settings: &RateLimitSettings) -> NonZeroUsize {
    NonZeroUsize::new(settings.max_tracked_keys).unwrap_or(NonZeroUsize::MIN)
}

/// The last suppressed alert, turned into the interval's summary.
fn summary(settings: &RateLimitSettings, interval: Interval) -> Option<Event> {
    let mut event = interval.last_suppressed?;
    if let EventBody::Alert(alert_event) = &mut event.body {
        let (flow, alert) = (&alert_event.flow, &mut alert_event.alert);
        alert.message = format!(
            "{} more `{}` alerts for server {} were suppressed in this {} s interval (limit {}); flow and http are those of the last one.",
            interval.suppressed,
            alert.rule,
            SocketAddr::new(flow.dest_ip, flow.dest_port),
            settings.interval_secs,
            settings.max_alerts,
        );
        alert.suppressed = Some(interval.suppressed);
        alert.interval_s = Some(settings.interval_secs);
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        events::{events_for, EventContext, RedactionAllowlist},
        rules::{self, testing, Finding, Severity},
    };

    const SECOND: u64 = 1_000_000_000;

    fn settings(max_alerts: u32, max_tracked_keys: usize) -> RateLimitSettings {
        RateLimitSettings {
            max_alerts,
            interval_secs: 60,
            max_tracked_keys,
        }
    }

    /// An alert of the catalogue's `rule_index`th rule for server port
    /// `server_port`, at `at_ns`.
    fn alert(rule_index: usize, server_port: u16, at_ns: u64) -> Event {
        let exchange = testing::exchange(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        );
        let finding = Finding {
            rule: rules::catalogue().nth(rule_index).unwrap(),
            severity: Severity::Error,
            message: "seen".into(),
        };
        let allowlist = RedactionAllowlist::default();
        let context = EventContext {
            host: &Arc::from("sensor"),
            interface: None,
            role: None,
            allowlist: &allowlist,
        };
        let mut event = events_for(&exchange, &[finding], &context).remove(0);
        event.timestamp_ns = at_ns;
        if let EventBody::Alert(alert_event) = &mut event.body {
            Arc::make_mut(&mut alert_event.flow).dest_port = server_port;
        }
        event
    }

    /// A built alert stands for itself.
    impl AlertDraft for Event {
        fn key(&self) -> Key {
            let EventBody::Alert(alert_event) = &self.body else {
                panic!("only alerts are rate-limited: {self:?}");
            };
            let flow = &alert_event.flow;
            (
                alert_event.alert.rule,
                SocketAddr::new(flow.dest_ip, flow.dest_port),
            )
        }
        fn timestamp_ns(&self) -> u64 {
            self.timestamp_ns
        }
        fn build(self) -> Event {
            self
        }
        fn evidence(self) -> Event {
            self
        }
    }

    fn suppressed_of(event: &Event) -> Option<(u64, u64)> {
        match &event.body {
            EventBody::Alert(a) => a.alert.suppressed.zip(a.alert.interval_s),
            _ => None,
        }
    }

    /// Found with the `config` fuzz target: a valid configuration whose
    /// `max_tracked_keys` is large (`[rate_limit] max_tracked_keys =
    /// 100000000000`) made the limiter reserve a table of that many keys up
    /// front (here 2.3 TB: the process aborted).
    #[test]
    fn reserves_nothing_for_keys_not_yet_seen() {
        let mut limiter = AlertRateLimiter::new(settings(10, 100_000_000_000));
        let mut out = Vec::new();
        for port in [80, 81] {
            limiter.admit(alert(0, port, 0), &mut out);
        }
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn passes_the_limit_then_counts_and_summarizes_at_the_interval_end() {
        let mut limiter = AlertRateLimiter::new(settings(10, 100));
        let mut out = Vec::new();
        for i in 0..13 {
            limiter.admit(alert(0, 80, i * SECOND), &mut out);
        }
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|e| suppressed_of(e).is_none()));
        assert_eq!(limiter.suppressed_total(), 3);

        out.clear();
        limiter.expire(59 * SECOND, &mut out);
        assert!(out.is_empty());
        limiter.expire(60 * SECOND, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(suppressed_of(&out[0]), Some((3, 60)));
        assert_eq!(
            out[0].timestamp_ns,
            12 * SECOND,
            "the last suppressed one's time"
        );
        let EventBody::Alert(summary) = &out[0].body else {
            unreachable!()
        };
        assert!(summary.alert.message.starts_with("3 more `"));
        assert!(summary.alert.message.contains("192.0.2.2:80"));

        out.clear();
        limiter.admit(alert(0, 80, 61 * SECOND), &mut out);
        assert_eq!(out.len(), 1, "a new interval");
        assert_eq!(suppressed_of(&out[0]), None);
    }

    /// An alert that counts how often it is built whole.
    struct Counted<'a> {
        alert: Event,
        built: &'a std::cell::Cell<u32>,
    }

    impl AlertDraft for Counted<'_> {
        fn key(&self) -> Key {
            self.alert.key()
        }
        fn timestamp_ns(&self) -> u64 {
            self.alert.timestamp_ns
        }
        fn build(self) -> Event {
            self.built.set(self.built.get() + 1);
            self.alert
        }
        fn evidence(self) -> Event {
            self.alert
        }
    }

    #[test]
    fn alerts_over_the_limit_are_never_built_whole() {
        let mut limiter = AlertRateLimiter::new(settings(2, 100));
        let built = std::cell::Cell::new(0);
        let mut out = Vec::new();
        for i in 0..50 {
            let alert = alert(0, 80, i * SECOND);
            limiter.admit(
                Counted {
                    alert,
                    built: &built,
                },
                &mut out,
            );
        }
        limiter.finish(&mut out);
        assert_eq!(built.get(), 2);
        let suppressed: Vec<_> = out.iter().map(suppressed_of).collect();
        assert_eq!(suppressed, [None, None, Some((48, 60))]);
    }

    #[test]
    fn the_next_alert_after_the_interval_brings_the_summary_first() {
        let mut limiter = AlertRateLimiter::new(settings(1, 100));
        let mut out = Vec::new();
        limiter.admit(alert(0, 80, 0), &mut out);
        limiter.admit(alert(0, 80, SECOND), &mut out);
        limiter.admit(alert(0, 80, 70 * SECOND), &mut out);
        let suppressed: Vec<_> = out.iter().map(suppressed_of).collect();
        assert_eq!(suppressed, [None, Some((1, 60)), None]);
    }

    #[test]
    fn rules_and_endpoints_are_limited_apart() {
        let mut limiter = AlertRateLimiter::new(settings(1, 100));
        let mut out = Vec::new();
        limiter.admit(alert(0, 80, 0), &mut out);
        limiter.admit(alert(0, 81, 0), &mut out);
        limiter.admit(alert(0, 80, 0), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(limiter.suppressed_total(), 1);
        out.clear();
        limiter.finish(&mut out);
        let suppressed: Vec<_> = out.iter().map(suppressed_of).collect();
        assert_eq!(suppressed, [Some((1, 60))]);
    }

    #[test]
    fn a_forgotten_key_gives_its_summary_and_is_counted() {
        let mut limiter = AlertRateLimiter::new(settings(1, 2));
        let mut out = Vec::new();
        limiter.admit(alert(0, 80, 0), &mut out);
        limiter.admit(alert(0, 80, 1), &mut out);
        limiter.admit(alert(0, 81, 2), &mut out);
        limiter.admit(alert(0, 82, 3), &mut out);
        assert_eq!(limiter.keys_evicted(), 1);
        let suppressed: Vec<_> = out.iter().map(suppressed_of).collect();
        assert_eq!(suppressed, [None, None, Some((1, 60)), None]);
        limiter.admit(alert(0, 81, 4), &mut out);
        limiter.finish(&mut out);
        assert_eq!(limiter.suppressed_total(), 2);
        assert_eq!(suppressed_of(out.last().unwrap()), Some((1, 60)));
    }

    #[test]
    fn reconfiguring_forgets_keys_over_the_new_bound_and_applies_the_new_limit() {
        let mut limiter = AlertRateLimiter::new(settings(1, 3));
        let mut out = Vec::new();
        for port in [80, 81, 82] {
            limiter.admit(alert(0, port, 0), &mut out);
            limiter.admit(alert(0, port, 1), &mut out);
        }
        out.clear();
        limiter.reconfigure(settings(3, 1), &mut out);
        assert_eq!(limiter.keys_evicted(), 2);
        let summarized: Vec<_> = out
            .iter()
            .map(|e| match &e.body {
                EventBody::Alert(a) => (a.flow.dest_port, suppressed_of(e)),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            summarized,
            [(80, Some((1, 60))), (81, Some((1, 60)))],
            "the least recently alerted first"
        );
        out.clear();
        limiter.admit(alert(0, 82, 2), &mut out);
        limiter.admit(alert(0, 82, 3), &mut out);
        assert_eq!(out.len(), 2, "three alerts per interval now, one was used");
        limiter.admit(alert(0, 82, 4), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(limiter.suppressed_total(), 4);
    }
}
