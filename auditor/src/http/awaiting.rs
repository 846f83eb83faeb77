//! The requests of one connection awaiting their final responses, oldest
//! first, within a bound in count and in bytes.
//!
//! Past the bound a request's head is not kept: the request stays in the
//! queue only as its place, so that later responses still pair with the
//! right requests, and its exchange is reported without its head (not
//! judged, flagged `oversized`, counted). An upgrade offer takes the place
//! of the newest plain request kept, so that pipelining plain requests
//! cannot hide an offer.

use std::collections::VecDeque;

use super::exchange::{EarlyData, NotHttp, Pairing, Quality, RequestHead, ResponseHead};
use super::HttpLimits;

/// Interim responses kept per exchange; more set `oversized`.
const MAX_INTERIM: usize = 8;

/// An exchange not reported yet.
pub(super) struct Pending {
    pub seq: u64,
    pub request: Option<RequestHead>,
    pub request_ns: Option<u64>,
    pub interim: Vec<ResponseHead>,
    pub response: Option<ResponseHead>,
    pub response_ns: Option<u64>,
    pub quality: Quality,
    pub early_data: Option<EarlyData>,
    pub pipelined_behind: bool,
    pub not_http_after_decline: Option<NotHttp>,
    pub pairing: Pairing,
    /// When its head was read, no request awaited a response and the
    /// server was between messages.
    pub first_in_line: bool,
}

impl Pending {
    pub fn new(seq: u64, request: Option<RequestHead>, request_ns: Option<u64>) -> Pending {
        Pending {
            seq,
            request,
            request_ns,
            interim: Vec::new(),
            response: None,
            response_ns: None,
            quality: Quality::default(),
            early_data: None,
            pipelined_behind: false,
            not_http_after_decline: None,
            pairing: Pairing::Certain,
            first_in_line: false,
        }
    }

    /// The place of a request whose head was not kept.
    fn not_kept(seq: u64) -> Pending {
        let mut pending = Pending::new(seq, None, None);
        pending.quality.oversized = true;
        pending
    }

    /// Its answer may turn the connection into something else than HTTP.
    pub fn may_switch(&self) -> bool {
        self.request.as_ref().is_some_and(|r| {
            r.line.method == "CONNECT" || r.header_values("upgrade").next().is_some()
        })
    }

    pub fn carries_upgrade(&self) -> bool {
        self.request
            .as_ref()
            .is_some_and(|r| r.header_values("upgrade").next().is_some())
    }

    /// Bytes held on the heap, for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        let heads = self.interim.iter().chain(&self.response);
        self.request.as_ref().map_or(0, RequestHead::heap_bytes)
            + self.interim.capacity() * std::mem::size_of::<ResponseHead>()
            + heads.map(ResponseHead::heap_bytes).sum::<usize>()
    }
}

#[derive(Default)]
pub(super) struct Awaiting {
    /// Oldest first.
    kept: VecDeque<Pending>,
    /// The requests whose heads were not kept, as runs of consecutive
    /// sequence numbers (first, count), oldest first.
    not_kept: VecDeque<(u64, u64)>,
    /// `heap_bytes` of every kept exchange.
    kept_bytes: usize,
}

impl Awaiting {
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.not_kept.is_empty()
    }

    /// Bytes held on the heap, for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        self.kept_bytes
            + self.kept.capacity() * std::mem::size_of::<Pending>()
            + self.not_kept.capacity() * std::mem::size_of::<(u64, u64)>()
    }

    /// The kept exchanges, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.kept.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Pending> {
        self.kept.iter_mut()
    }

    /// Queues `pending`, whose sequence number is above all others; returns
    /// how many request heads were given up to stay within `limits`.
    pub fn push(&mut self, pending: Pending, limits: &HttpLimits) -> u64 {
        let bytes = pending.heap_bytes();
        if self.has_room(bytes, limits) {
            self.keep(pending, bytes);
            return 0;
        }
        let mut given_up = 0;
        if pending.may_switch() {
            while !self.has_room(bytes, limits) {
                let Some(newest_plain) = self.kept.iter().rposition(|p| !p.may_switch()) else {
                    break;
                };
                let plain = self.kept.remove(newest_plain).expect("found above");
                self.kept_bytes -= plain.heap_bytes();
                self.add_not_kept(plain.seq);
                given_up += 1;
            }
            if self.has_room(bytes, limits) {
                self.keep(pending, bytes);
                return given_up;
            }
        }
        self.add_not_kept(pending.seq);
        given_up + 1
    }

    /// The oldest exchange, for its final response.
    pub fn pop_front(&mut self) -> Option<Pending> {
        if self.front_is_not_kept() {
            return self.take_front_not_kept();
        }
        let pending = self.kept.pop_front()?;
        self.kept_bytes -= pending.heap_bytes();
        Some(pending)
    }

    /// Adds an interim response to the oldest exchange, which must exist;
    /// false when it was not kept: over the count, or over the bytes after
    /// the first.
    pub fn add_interim(&mut self, response: ResponseHead, limits: &HttpLimits) -> bool {
        if self.front_is_not_kept() {
            // The place of a request not kept becomes an exchange kept, to
            // hold the interim response.
            let front = self.take_front_not_kept().expect("a front not kept");
            self.kept_bytes += front.heap_bytes();
            self.kept.push_front(front);
        }
        let bytes = response.heap_bytes() + std::mem::size_of::<ResponseHead>();
        let over_bytes = self.kept_bytes + bytes > limits.max_pending_bytes;
        let Some(front) = self.kept.front_mut() else {
            return false;
        };
        if front.interim.len() >= MAX_INTERIM || (!front.interim.is_empty() && over_bytes) {
            front.quality.oversized = true;
            return false;
        }
        let before = front.heap_bytes();
        front.interim.push(response);
        self.kept_bytes = self.kept_bytes - before + front.heap_bytes();
        true
    }

    /// The oldest exchange, if kept.
    pub fn front_mut(&mut self) -> Option<&mut Pending> {
        if self.front_is_not_kept() {
            return None;
        }
        self.kept.front_mut()
    }

    /// The kept exchange with sequence number `seq`.
    pub fn find_mut(&mut self, seq: u64) -> Option<&mut Pending> {
        self.kept.iter_mut().find(|p| p.seq == seq)
    }

    fn has_room(&self, bytes: usize, limits: &HttpLimits) -> bool {
        self.kept.is_empty()
            || (self.kept.len() < limits.max_pipelined
                && self.kept_bytes + bytes <= limits.max_pending_bytes)
    }

    fn keep(&mut self, pending: Pending, bytes: usize) {
        if self.kept.capacity() == 0 {
            // Room for the one request most connections have awaiting at a
            // time, not the four a first push makes room for.
            self.kept.reserve_exact(1);
        }
        self.kept_bytes += bytes;
        self.kept.push_back(pending);
    }

    /// Places `seq` among the runs, which stay in order.
    fn add_not_kept(&mut self, seq: u64) {
        let at = self.not_kept.partition_point(|&(first, _)| first < seq);
        if let Some((first, count)) = at.checked_sub(1).and_then(|i| self.not_kept.get_mut(i)) {
            if *first + *count == seq {
                *count += 1;
                self.merge_with_next(at - 1);
                return;
            }
        }
        self.not_kept.insert(at, (seq, 1));
        self.merge_with_next(at);
    }

    fn merge_with_next(&mut self, i: usize) {
        let next = match (self.not_kept.get(i), self.not_kept.get(i + 1)) {
            (Some(&(first, count)), Some(&(next, _))) if first + count == next => i + 1,
            _ => return,
        };
        let (_, next_count) = self.not_kept.remove(next).expect("checked above");
        self.not_kept[i].1 += next_count;
    }

    fn front_is_not_kept(&self) -> bool {
        match (self.not_kept.front(), self.kept.front()) {
            (Some(&(first, _)), Some(kept)) => first < kept.seq,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn take_front_not_kept(&mut self) -> Option<Pending> {
        let run = self.not_kept.front_mut()?;
        let seq = run.0;
        run.0 += 1;
        run.1 -= 1;
        if run.1 == 0 {
            self.not_kept.pop_front();
        }
        Some(Pending::not_kept(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_request;

    fn request(seq: u64, text: &str) -> Pending {
        let head = parse_request(text.as_bytes(), 64).unwrap();
        Pending::new(seq, Some(head), Some(seq))
    }

    fn plain(seq: u64) -> Pending {
        request(seq, &format!("GET /{seq} HTTP/1.1\r\nHost: a\r\n\r\n"))
    }

    fn offer(seq: u64) -> Pending {
        request(
            seq,
            &format!("GET /{seq} HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"),
        )
    }

    fn limits(max_pipelined: usize) -> HttpLimits {
        HttpLimits {
            max_pipelined,
            ..HttpLimits::default()
        }
    }

    /// Each answered exchange: its sequence number and whether its head was kept.
    fn drain(awaiting: &mut Awaiting) -> Vec<(u64, bool)> {
        std::iter::from_fn(|| awaiting.pop_front())
            .map(|p| (p.seq, p.request.is_some()))
            .collect()
    }

    #[test]
    fn past_the_count_requests_keep_their_place_but_not_their_head() {
        let mut awaiting = Awaiting::default();
        let given_up: u64 = (0..5)
            .map(|seq| awaiting.push(plain(seq), &limits(2)))
            .sum();
        assert_eq!(given_up, 3);
        assert_eq!(
            drain(&mut awaiting),
            [(0, true), (1, true), (2, false), (3, false), (4, false)]
        );
        assert!(awaiting.is_empty());
        assert_eq!(awaiting.kept_bytes, 0);
    }

    #[test]
    fn an_offer_takes_the_place_of_the_newest_plain_request() {
        let mut awaiting = Awaiting::default();
        let limits = limits(3);
        for seq in 0..4 {
            awaiting.push(plain(seq), &limits);
        }
        assert_eq!(awaiting.push(offer(4), &limits), 1);
        assert_eq!(awaiting.push(plain(5), &limits), 1);
        assert_eq!(awaiting.push(offer(6), &limits), 1);
        assert_eq!(
            drain(&mut awaiting),
            [
                (0, true),
                (1, false),
                (2, false),
                (3, false),
                (4, true),
                (5, false),
                (6, true)
            ]
        );
    }

    #[test]
    fn offers_past_the_bound_with_no_plain_request_to_give_up_are_not_kept() {
        let mut awaiting = Awaiting::default();
        let given_up: u64 = (0..3)
            .map(|seq| awaiting.push(offer(seq), &limits(2)))
            .sum();
        assert_eq!(given_up, 1);
        assert_eq!(drain(&mut awaiting), [(0, true), (1, true), (2, false)]);
    }

    #[test]
    fn the_bytes_bound_applies_too_but_one_head_is_always_kept() {
        let limits = HttpLimits {
            max_pending_bytes: 1,
            ..HttpLimits::default()
        };
        let mut awaiting = Awaiting::default();
        assert_eq!(awaiting.push(plain(0), &limits), 0);
        assert_eq!(awaiting.push(plain(1), &limits), 1);
        assert_eq!(drain(&mut awaiting), [(0, true), (1, false)]);
    }

    #[test]
    fn an_interim_response_to_a_request_not_kept_is_kept_in_its_place() {
        let mut awaiting = Awaiting::default();
        let limits = limits(1);
        awaiting.push(plain(0), &limits);
        awaiting.push(plain(1), &limits);
        awaiting.pop_front();
        let interim = crate::http::head::parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", 8);
        assert!(awaiting.add_interim(interim.unwrap(), &limits));
        let answered = awaiting.pop_front().unwrap();
        assert_eq!((answered.seq, answered.interim.len()), (1, 1));
        assert!(answered.quality.oversized && answered.request.is_none());
        assert!(awaiting.is_empty());
    }
}
