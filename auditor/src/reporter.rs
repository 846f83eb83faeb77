//! Exchanges to events: runs the rules, builds the `handshake` and `alert`
//! events, rate-limits alerts, and keeps what `loss` and `stats` events,
//! the metrics and `--fail-on` need.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use crate::{
    events::{
        events_for_offer, AlertRateLimiter, EmittedCounts, Event, EventContext, LossCounters, Made,
        RateLimitSettings, RedactionAllowlist, StatsCounters,
    },
    http::Exchange,
    rules::{self, Context, Offer, PortRole, RuleSettings, Severity, Silences},
};

/// What the reporter needs to know about where it runs.
#[derive(Clone, Debug, Default)]
pub struct ReportSettings {
    /// Every event carries it: events share this one.
    pub host: Arc<str>,
    /// The configured role of each watched port.
    pub roles: HashMap<u16, PortRole>,
    /// Interface names by index, for live capture.
    pub interface_names: HashMap<u32, String>,
    pub allowlist: RedactionAllowlist,
    pub rate_limit: RateLimitSettings,
    /// Rules turned off, and severities changed.
    pub rules: RuleSettings,
    /// Findings the operator accepts.
    pub silences: Silences,
}

/// This machine's name, as events give it in `host`.
pub fn host_name() -> Arc<str> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned());
    Arc::from(host)
}

pub struct Reporter {
    settings: ReportSettings,
    limiter: AlertRateLimiter,
    worst: Option<Severity>,
    reported_loss: LossCounters,
    emitted: EmittedCounts,
    /// Findings silenced since start, by rule.
    silenced: BTreeMap<&'static str, u64>,
}

impl Reporter {
    pub fn new(settings: ReportSettings) -> Reporter {
        Reporter {
            limiter: AlertRateLimiter::new(settings.rate_limit),
            settings,
            worst: None,
            reported_loss: LossCounters::default(),
            emitted: EmittedCounts::default(),
            silenced: BTreeMap::new(),
        }
    }

    /// Applies settings changed on reload to the exchanges to come; summaries
    /// of rate-limit keys it forgets go to `out`.
    pub fn replace_settings(&mut self, settings: ReportSettings, out: &mut Vec<Event>) {
        self.limiter.reconfigure(settings.rate_limit, out);
        self.settings = settings;
    }

    /// The events of one exchange, alerts past the rate limit held back.
    pub fn report(&mut self, exchange: &Exchange, out: &mut Vec<Event>) {
        let first = out.len();
        let role = self.settings.roles.get(&exchange.server.port()).copied();
        let offer = Offer::of(exchange);
        let mut findings = self.settings.rules.configured(rules::evaluate_offer(
            exchange,
            &offer,
            &Context { role },
        ));
        if !findings.is_empty() {
            let today = time::OffsetDateTime::now_utc().date();
            let silences = &self.settings.silences;
            silences.apply(&mut findings, exchange, role, today, &mut self.silenced);
        }
        self.worst = findings.iter().map(|f| f.severity).chain(self.worst).max();
        let interface = exchange
            .interface
            .and_then(|index| self.settings.interface_names.get(&index))
            .map(String::as_str);
        let context = EventContext {
            host: &self.settings.host,
            interface,
            role,
            allowlist: &self.settings.allowlist,
        };
        events_for_offer(exchange, &offer, findings, &context, |made| match made {
            Made::Handshake(event) => out.push(event),
            Made::Alert(alert) => self.limiter.admit(alert, out),
        });
        self.emitted.count(&out[first..]);
    }

    /// Summaries of rate-limit intervals that ended by `now_ns`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Event>) {
        let first = out.len();
        self.limiter.expire(now_ns, out);
        self.emitted.count(&out[first..]);
    }

    /// The input ended: the remaining summaries.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        let first = out.len();
        self.limiter.finish(out);
        self.emitted.count(&out[first..]);
    }

    /// Alerts the rate limit held back, and keys it forgot, since start.
    pub fn rate_limit_loss(&self) -> (u64, u64) {
        (self.limiter.suppressed_total(), self.limiter.keys_evicted())
    }

    /// A `loss` event with what was lost since the previous one, if
    /// anything; `totals` are the loss totals since start.
    pub fn loss(&mut self, now_ns: u64, totals: LossCounters) -> Option<Event> {
        let since = totals.since(&self.reported_loss);
        self.reported_loss = totals;
        (!since.is_zero()).then(|| Event::loss(now_ns, &self.settings.host, since))
    }

    /// A `stats` event with `counters`.
    pub fn stats(&self, now_ns: u64, counters: StatsCounters) -> Event {
        Event::stats(now_ns, &self.settings.host, counters)
    }

    /// The handshakes and alerts emitted since start.
    pub fn emitted(&self) -> &EmittedCounts {
        &self.emitted
    }

    /// The findings silenced since start, by rule.
    pub fn silenced(&self) -> &BTreeMap<&'static str, u64> {
        &self.silenced
    }

    /// The highest severity any rule raised, rate-limited or not.
    pub fn worst_severity(&self) -> Option<Severity> {
        self.worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::{EventBody, HandshakeOutcome},
        rules::testing,
    };

    const PROXMOX_OFFER: &[u8] = b"GET /api2/json/backup HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
    const PROXMOX_101: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";

    #[test]
    fn counts_what_it_emitted_summaries_included() {
        let mut reporter = Reporter::new(ReportSettings {
            rate_limit: RateLimitSettings {
                max_alerts: 1,
                ..RateLimitSettings::default()
            },
            ..ReportSettings::default()
        });
        let exchange = testing::exchange(PROXMOX_OFFER, PROXMOX_101);
        let mut events = Vec::new();
        for _ in 0..3 {
            reporter.report(&exchange, &mut events);
        }
        reporter.finish(&mut events);

        let alerts = events
            .iter()
            .filter(|e| matches!(e.body, EventBody::Alert(_)))
            .count();
        assert_eq!(alerts, 2, "one alert and one summary");
        let emitted = reporter.emitted();
        assert_eq!(
            emitted.handshakes.get(&HandshakeOutcome::Switched),
            Some(&3)
        );
        assert_eq!(emitted.handshakes_total(), 3);
        assert_eq!(
            emitted
                .alerts
                .get(&("upgrade-101-missing-connection-option", Severity::Error)),
            Some(&2)
        );
        assert_eq!(emitted.alerts_total(), 2);
        assert_eq!(reporter.rate_limit_loss(), (2, 0));
    }
}
