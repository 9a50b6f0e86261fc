//! The proxy's counters and call setup latency: protocol facts the core
//! counts as they happen, read by the shell once a second for metrics.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::sip::Method;

/// Counters of one shard; the shell reads them for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests received, by the shard that owns the call.
    pub requests_in: u64,
    /// Responses received.
    pub responses_in: u64,
    /// Datagrams that did not parse (answered 400 when a request's Via could
    /// be read, dropped otherwise).
    pub parse_errors: u64,
    /// Retransmitted requests and responses absorbed by a transaction.
    pub retransmissions_absorbed: u64,
    /// Requests forwarded.
    pub requests_forwarded: u64,
    /// Responses forwarded (statefully or stray).
    pub responses_forwarded: u64,
    /// 503s from a full transaction table or shutdown.
    pub rejected_overload: u64,
    /// Branches ended by Timer B, C or F (answered 408 upstream).
    pub timeouts: u64,
    /// Responses this proxy wrote itself (100, 4xx, 5xx, 200 to CANCEL and
    /// OPTIONS), first transmissions only.
    pub responses_generated: u64,
    /// Responses with no matching client transaction forwarded by their
    /// second Via (includes 2xx retransmissions).
    pub stray_responses: u64,
    /// Responses dropped: top Via not ours, no second Via, or no address.
    pub responses_dropped: u64,
    /// Requests answered 482 (16.3 step 4).
    pub loops_detected: u64,
    /// Requests answered 483 (Max-Forwards 0).
    pub too_many_hops: u64,
    /// ACKs of non-2xx finals absorbed by a server transaction.
    pub acks_absorbed: u64,
    /// CANCELs that matched a transaction.
    pub cancels: u64,
    /// Initial requests the router refused (answered 503).
    pub no_route: u64,
    /// New branches started by a router's failover.
    pub failovers: u64,
    /// OPTIONS probes sent for the router.
    pub probes_sent: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Initial INVITEs (no To tag) received, retransmissions excluded: calls
    /// offered, whatever became of them.
    pub calls: u64,
    /// Requests received, by [`Method::index`].
    pub requests_by_method: [u64; Method::COUNT],
    /// Responses received, by the method of their CSeq and code class
    /// (index 0 is 1xx, 5 is 6xx).
    pub responses_in_by_class: [[u64; CODE_CLASSES]; Method::COUNT],
    /// Responses sent upstream (forwarded or written here; first
    /// transmissions), by CSeq method and code class.
    pub responses_out_by_class: [[u64; CODE_CLASSES]; Method::COUNT],
    /// Transactions created (server and client).
    pub transactions_created: u64,
    /// Transactions removed from the table.
    pub transactions_freed: u64,
}

impl ProxyStats {
    /// Counts a response to a `method` request with `code`, received.
    pub(super) fn response_in(&mut self, method: Method, code: u16) {
        if let Some(class) = code_class(code) {
            self.responses_in_by_class[method.index()][class] += 1;
        }
    }

    /// Counts a response to a `method` request with `code`, sent upstream.
    pub(super) fn response_out(&mut self, method: Method, code: u16) {
        if let Some(class) = code_class(code) {
            self.responses_out_by_class[method.index()][class] += 1;
        }
    }

    /// Responses sent upstream in code class `class` (0 is 1xx), all methods.
    pub fn responses_out_in_class(&self, class: usize) -> u64 {
        self.responses_out_by_class.iter().map(|c| c[class]).sum()
    }

    /// Responses received in code class `class` (0 is 1xx), all methods.
    pub fn responses_in_in_class(&self, class: usize) -> u64 {
        self.responses_in_by_class.iter().map(|c| c[class]).sum()
    }

    /// Adds `other`'s counters to these (totals over shards).
    pub fn add(&mut self, other: &ProxyStats) {
        let ProxyStats {
            requests_in,
            responses_in,
            parse_errors,
            retransmissions_absorbed,
            requests_forwarded,
            responses_forwarded,
            rejected_overload,
            timeouts,
            responses_generated,
            stray_responses,
            responses_dropped,
            loops_detected,
            too_many_hops,
            acks_absorbed,
            cancels,
            no_route,
            failovers,
            probes_sent,
            transmits_dropped,
            calls,
            requests_by_method,
            responses_in_by_class,
            responses_out_by_class,
            transactions_created,
            transactions_freed,
        } = other;
        let pairs = [
            (&mut self.requests_in, requests_in),
            (&mut self.responses_in, responses_in),
            (&mut self.parse_errors, parse_errors),
            (&mut self.retransmissions_absorbed, retransmissions_absorbed),
            (&mut self.requests_forwarded, requests_forwarded),
            (&mut self.responses_forwarded, responses_forwarded),
            (&mut self.rejected_overload, rejected_overload),
            (&mut self.timeouts, timeouts),
            (&mut self.responses_generated, responses_generated),
            (&mut self.stray_responses, stray_responses),
            (&mut self.responses_dropped, responses_dropped),
            (&mut self.loops_detected, loops_detected),
            (&mut self.too_many_hops, too_many_hops),
            (&mut self.acks_absorbed, acks_absorbed),
            (&mut self.cancels, cancels),
            (&mut self.no_route, no_route),
            (&mut self.failovers, failovers),
            (&mut self.probes_sent, probes_sent),
            (&mut self.transmits_dropped, transmits_dropped),
            (&mut self.calls, calls),
            (&mut self.transactions_created, transactions_created),
            (&mut self.transactions_freed, transactions_freed),
        ];
        for (mine, theirs) in pairs {
            *mine += theirs;
        }
        for (mine, theirs) in self.requests_by_method.iter_mut().zip(requests_by_method) {
            *mine += theirs;
        }
        let tables = [
            (&mut self.responses_in_by_class, responses_in_by_class),
            (&mut self.responses_out_by_class, responses_out_by_class),
        ];
        for (mine, theirs) in tables {
            for (row, other_row) in mine.iter_mut().zip(theirs) {
                for (m, t) in row.iter_mut().zip(other_row) {
                    *m += t;
                }
            }
        }
    }
}

/// Response code classes counted: 1xx to 6xx.
pub const CODE_CLASSES: usize = 6;

/// The class index of `code` (0 for 1xx), `None` outside 100-699.
fn code_class(code: u16) -> Option<usize> {
    let class = usize::from(code / 100);
    (1..=CODE_CLASSES).contains(&class).then(|| class - 1)
}

/// The highest latency a histogram tells apart; longer ones count as this.
const MAX_LATENCY_US: u64 = 600_000_000;

/// A latency distribution in microseconds (1 µs to 10 min, two significant
/// digits) with its exact sum, so it can be exported as a Prometheus
/// histogram and merged over shards.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    sum_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                .expect("constant bounds are valid"),
            sum_us: 0,
        }
    }
}

impl LatencyHistogram {
    /// Records one latency (clamped to the highest trackable one).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_US);
        self.histogram.saturating_record(us);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds every value of `other` (merging shards).
    pub fn add(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so the addition cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The sum of the values, microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Values at most `us` microseconds (to the histogram's precision).
    pub fn count_at_most(&self, us: u64) -> u64 {
        self.histogram.count_between(0, us)
    }

    /// The value at quantile `q` (0 to 1), microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }
}

/// Call setup latency of one shard, measured from the arrival of an initial
/// INVITE (the proxy's own 100 Trying does not count).
#[derive(Clone, Debug, Default)]
pub struct SetupLatency {
    /// To the first response from downstream (100 included).
    pub first_response: LatencyHistogram,
    /// To the first 2xx forwarded upstream.
    pub answer: LatencyHistogram,
}

impl SetupLatency {
    /// Adds `other`'s values (merging shards).
    pub fn add(&mut self, other: &SetupLatency) {
        self.first_response.add(&other.first_response);
        self.answer.add(&other.answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_classes() {
        assert_eq!(code_class(100), Some(0));
        assert_eq!(code_class(299), Some(1));
        assert_eq!(code_class(699), Some(5));
        assert_eq!(code_class(99), None);
        assert_eq!(code_class(700), None);
    }

    #[test]
    fn add_sums_every_counter() {
        let mut one = ProxyStats {
            requests_in: 2,
            transactions_freed: 3,
            ..ProxyStats::default()
        };
        one.requests_by_method[Method::Bye.index()] = 4;
        one.response_in(Method::Invite, 180);
        one.response_out(Method::Invite, 486);
        let mut total = one.clone();
        total.add(&one);
        assert_eq!(total.requests_in, 4);
        assert_eq!(total.transactions_freed, 6);
        assert_eq!(total.requests_by_method[Method::Bye.index()], 8);
        assert_eq!(total.responses_in_in_class(0), 2);
        assert_eq!(total.responses_out_in_class(3), 2);
    }

    #[test]
    fn latency_merges_and_clamps() {
        let mut a = LatencyHistogram::default();
        a.record(Duration::from_millis(2));
        a.record(Duration::from_secs(3600));
        let mut b = LatencyHistogram::default();
        b.record(Duration::from_micros(0));
        a.add(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.sum_us(), 2_000 + MAX_LATENCY_US + 1);
        assert_eq!(a.count_at_most(10), 1);
        assert_eq!(a.count_at_most(2_100), 2);
        assert!(a.quantile_us(1.0) >= MAX_LATENCY_US * 99 / 100);
    }
}
