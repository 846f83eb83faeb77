//! Exchanges to events: runs the rules, builds the `handshake` and `alert`
//! events, rate-limits alerts, and keeps what `loss` events and
//! `--fail-on` need.

use std::collections::HashMap;

use crate::{
    config::{Config, Role},
    events::{
        events_for, AlertRateLimiter, Event, EventBody, EventContext, LossCounters,
        RateLimitSettings, RedactionAllowlist,
    },
    http::Exchange,
    reassembly::ReassemblyStats,
    rules::{self, Context, Severity},
};

/// What the reporter needs to know about where it runs.
#[derive(Clone, Debug, Default)]
pub struct ReportSettings {
    pub host: String,
    /// The configured role of each watched port.
    pub roles: HashMap<u16, Role>,
    /// Interface names by index, for live capture.
    pub interface_names: HashMap<u32, String>,
    pub allowlist: RedactionAllowlist,
    pub rate_limit: RateLimitSettings,
}

impl ReportSettings {
    /// Settings from the configuration, on this host.
    pub fn new(config: &Config, interface_names: HashMap<u32, String>) -> ReportSettings {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "unknown".to_owned());
        ReportSettings {
            host,
            roles: config.roles(),
            interface_names,
            allowlist: config.redaction.clone(),
            rate_limit: config.rate_limit,
        }
    }
}

/// Counts of what the kernel could not deliver, for `loss` events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLoss {
    pub ring_buffer_full: u64,
    pub records_truncated: u64,
    pub undecodable_records: u64,
}

pub struct Reporter {
    settings: ReportSettings,
    limiter: AlertRateLimiter,
    worst: Option<Severity>,
    reported_loss: LossCounters,
}

impl Reporter {
    pub fn new(settings: ReportSettings) -> Reporter {
        Reporter {
            limiter: AlertRateLimiter::new(settings.rate_limit),
            settings,
            worst: None,
            reported_loss: LossCounters::default(),
        }
    }

    /// The events of one exchange, alerts past the rate limit held back.
    pub fn report(&mut self, exchange: &Exchange, out: &mut Vec<Event>) {
        let role = self.settings.roles.get(&exchange.server.port()).copied();
        let findings = rules::evaluate(exchange, &Context { role });
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
        for event in events_for(exchange, &findings, &context) {
            if matches!(event.body, EventBody::Alert(_)) {
                self.limiter.admit(event, out);
            } else {
                out.push(event);
            }
        }
    }

    /// Summaries of rate-limit intervals that ended by `now_ns`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Event>) {
        self.limiter.expire(now_ns, out);
    }

    /// The input ended: the remaining summaries.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.limiter.finish(out);
    }

    /// A `loss` event with what was lost since the previous one, if anything.
    /// `output_drops`: events the outputs dropped so far.
    pub fn loss(
        &mut self,
        now_ns: u64,
        reassembly: &ReassemblyStats,
        kernel: KernelLoss,
        output_drops: u64,
    ) -> Option<Event> {
        let totals = LossCounters {
            kernel_drops: kernel.ring_buffer_full,
            truncated_records: kernel.records_truncated,
            undecodable_records: kernel.undecodable_records,
            output_drops,
            alerts_suppressed: self.limiter.suppressed_total(),
            rate_limit_keys_evicted: self.limiter.keys_evicted(),
            ..LossCounters::reassembly(reassembly)
        };
        let since = totals.since(&self.reported_loss);
        self.reported_loss = totals;
        (!since.is_zero()).then(|| Event::loss(now_ns, &self.settings.host, since))
    }

    /// The highest severity any rule raised, rate-limited or not.
    pub fn worst_severity(&self) -> Option<Severity> {
        self.worst
    }
}
