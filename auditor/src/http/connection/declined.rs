//! The watch after a declined upgrade: is HTTP/1.1 going on on both sides,
//! or was a tunnel opened without a 101?

use super::end::{End, PerEnd};
use super::reading::Reader;
use super::{Connection, Cx};
use crate::http::awaiting::Pending;
use crate::http::exchange::NotHttp;

/// A non-101 final answer to a request carrying `Upgrade`: its exchange is
/// reported once each side's next message start shows whether HTTP/1.1 goes
/// on (see `Exchange::not_http_after_decline`).
pub(super) struct Declined {
    pub exchange: Pending,
    pub deadline_ns: u64,
    /// The side's next message start was read, or can no longer be told.
    decided: PerEnd<bool>,
}

/// What a side's next message start after a declined upgrade showed.
pub(super) enum NextStart<'a> {
    Http,
    /// These bytes, the first of which do not start an HTTP/1.1 message.
    NotHttp(&'a [u8]),
    /// Boundaries were lost, or the side finished.
    Unknowable,
}

impl Connection {
    /// `exchange` declined an upgrade (`server`: the server's side): it
    /// waits for the next message start of each side, unless neither is to
    /// be read.
    pub(super) fn await_next_starts(
        &mut self,
        server: End,
        exchange: Pending,
        ts: u64,
        cx: &mut Cx<'_>,
    ) {
        let client = server.peer();
        let mut decided = PerEnd::<bool>::default();
        // The client's next message start is not to judge after a request
        // already read behind the declined one, after early data (sent
        // before the answer), or once its boundaries are lost.
        decided[client] = !self.awaiting.is_empty()
            || self.sides[client].finished
            || !matches!(
                self.sides[client].reader,
                Reader::Head(_) | Reader::Body { .. }
            );
        decided[server] = self.sides[server].finished;
        if decided.iter().all(|d| *d) {
            self.report(exchange, None, cx);
            return;
        }
        self.report_declined(cx);
        self.declined = Some(Box::new(Declined {
            exchange,
            deadline_ns: ts.saturating_add(cx.limits.switch_wait_ns),
            decided,
        }));
    }

    /// The side `end` showed its next message start (or that it cannot be told).
    pub(super) fn next_start(&mut self, end: End, next: NextStart<'_>, cx: &mut Cx<'_>) {
        let sent_by_client = self.client() == Some(end);
        let Some(declined) = self.declined.as_mut() else {
            return;
        };
        if declined.decided[end] {
            return;
        }
        declined.decided[end] = true;
        if let NextStart::NotHttp(bytes) = next {
            declined.exchange.not_http_after_decline = Some(NotHttp {
                sent_by_client,
                first_bytes: bytes.to_vec(),
            });
        }
        let settled = declined.exchange.not_http_after_decline.is_some()
            || declined.decided.iter().all(|d| *d);
        if settled {
            self.report_declined(cx);
        }
    }

    pub(super) fn report_declined(&mut self, cx: &mut Cx<'_>) {
        if let Some(declined) = self.declined.take() {
            self.emit(declined.exchange, None, cx);
        }
    }
}
