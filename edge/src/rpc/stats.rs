//! `stats.get_statistics` and `tm.stats`: the shards' latest counters summed
//! over shards, named as Kamailio names them where one means the same
//! (`core:rcv_requests`, `tm:inuse_transactions`, ...) and in group `edge`
//! where Kamailio has no such counter.

use serde_json::{json, Value};

use super::{Params, RpcError, OPERATIONAL};
use crate::proxy::{ProxyStats, CODE_CLASSES};
use crate::runtime::ShardReport;
use crate::sip::Method;

/// One statistic: group, name, value.
pub type Statistic = (&'static str, String, u64);

/// The shards' counters summed.
#[derive(Default)]
struct Totals {
    proxy: ProxyStats,
    router: crate::dispatcher::RouterStats,
    shell: crate::runtime::ShellCounters,
    /// Live transactions, and those without a final response.
    inuse: u64,
    unfinished: u64,
    dialogs: u64,
}

fn totals(reports: &[ShardReport]) -> Totals {
    let mut t = Totals::default();
    for r in reports {
        t.proxy.add(&r.proxy);
        t.inuse += r.transactions as u64;
        t.unfinished += r.unfinished as u64;
        t.dialogs += r.dialogs as u64;
        t.router.dialogs_started += r.stats.dialogs_started;
        t.router.dialogs_ended += r.stats.dialogs_ended;
        t.router.dialogs_expired += r.stats.dialogs_expired;
        t.router.dialogs_evicted += r.stats.dialogs_evicted;
        t.shell.handoffs_out += r.shell.handoffs_out;
        t.shell.handoff_drops += r.shell.handoff_drops;
        t.shell.send_drops += r.shell.send_drops;
    }
    t
}

/// Every counter over all shards, in a fixed order.
pub fn statistics(reports: &[ShardReport]) -> Vec<Statistic> {
    let t = totals(reports);
    let p = &t.proxy;
    let mut out: Vec<Statistic> = Vec::with_capacity(64);
    let mut put = |group, name: &str, value| out.push((group, name.to_owned(), value));
    put("core", "rcv_requests", p.requests_in);
    for m in Method::ALL {
        let name = m.as_str().unwrap_or("other").to_ascii_lowercase();
        put(
            "core",
            &format!("rcv_requests_{name}"),
            p.requests_by_method[m.index()],
        );
    }
    put("core", "rcv_replies", p.responses_in);
    for class in 0..CODE_CLASSES {
        let name = format!("rcv_replies_{}xx", class + 1);
        put("core", &name, p.responses_in_in_class(class));
    }
    put("core", "fwd_requests", p.requests_forwarded);
    put("core", "fwd_replies", p.responses_forwarded);
    put("core", "drop_replies", p.responses_dropped);
    put("core", "err_requests", p.parse_errors);
    put("tm", "inuse_transactions", t.inuse);
    put("tm", "active_transactions", t.unfinished);
    put("tm", "created", p.transactions_created);
    put("tm", "freed", p.transactions_freed);
    put("tm", "received_replies", p.responses_in);
    put("tm", "relayed_replies", p.responses_forwarded);
    put("tm", "local_replies", p.responses_generated);
    for class in 1..CODE_CLASSES {
        let name = format!("{}xx_transactions", class + 1);
        put("tm", &name, p.responses_out_in_class(class));
    }
    put("dialog", "active_dialogs", t.dialogs);
    put("dialog", "processed_dialogs", t.router.dialogs_started);
    put("dialog", "ended_dialogs", t.router.dialogs_ended);
    put("dialog", "expired_dialogs", t.router.dialogs_expired);
    put("dialog", "evicted_dialogs", t.router.dialogs_evicted);
    put("edge", "calls", p.calls);
    put(
        "edge",
        "retransmissions_absorbed",
        p.retransmissions_absorbed,
    );
    put("edge", "stray_responses", p.stray_responses);
    put("edge", "rejected_overload", p.rejected_overload);
    put("edge", "no_route", p.no_route);
    put("edge", "timeouts", p.timeouts);
    put("edge", "loops_detected", p.loops_detected);
    put("edge", "too_many_hops", p.too_many_hops);
    put("edge", "cancels", p.cancels);
    put("edge", "failovers", p.failovers);
    put("edge", "probes_sent", p.probes_sent);
    put("edge", "transmits_dropped", p.transmits_dropped);
    put("edge", "handoffs", t.shell.handoffs_out);
    put("edge", "handoff_drops", t.shell.handoff_drops);
    put("edge", "send_drops", t.shell.send_drops);
    out
}

/// `stats.get_statistics`: each parameter is `all`, a group (`core:`), a
/// name (`rcv_requests`) or both (`core:rcv_requests`); no parameter is
/// `all`. The result lists `"group:name = value"` strings, Kamailio's
/// shape. A parameter that names nothing is an error.
pub fn get_statistics(reports: &[ShardReport], params: &Params) -> Result<Value, RpcError> {
    let wanted: Vec<String> = match params {
        Params::None => vec!["all".into()],
        Params::Positional(v) if v.is_empty() => vec!["all".into()],
        Params::Positional(v) => v
            .iter()
            .map(|p| match p {
                Value::String(s) => Ok(s.clone()),
                _ => Err(RpcError::params("statistic names must be strings")),
            })
            .collect::<Result<_, _>>()?,
        Params::Named(m) => match m.get("names") {
            Some(Value::String(s)) if m.len() == 1 => vec![s.clone()],
            _ => return Err(RpcError::params("takes `names`, a string")),
        },
    };
    let all = statistics(reports);
    let mut lines = Vec::new();
    for w in &wanted {
        let before = lines.len();
        lines.extend(
            all.iter()
                .filter(|(group, name, _)| selects(w, group, name))
                .map(|(group, name, value)| Value::String(format!("{group}:{name} = {value}"))),
        );
        if lines.len() == before {
            return Err(RpcError::new(OPERATIONAL, format!("No statistic `{w}`")));
        }
    }
    Ok(Value::Array(lines))
}

fn selects(wanted: &str, group: &str, name: &str) -> bool {
    match wanted.split_once(':') {
        _ if wanted == "all" => true,
        Some((g, "")) => g == group,
        Some((g, n)) => g == group && n == name,
        None => wanted == name,
    }
}

/// `tm.stats`: Kamailio's object over all shards. `current` counts live
/// transactions, `waiting` those past their final response, `total_local`
/// the probes this proxy originated; `2xx`..`6xx` count final responses
/// sent upstream by class.
pub fn tm_stats(reports: &[ShardReport]) -> Value {
    let t = totals(reports);
    let (p, current) = (&t.proxy, t.inuse);
    json!({
        "current": current,
        "waiting": current.saturating_sub(t.unfinished),
        "total": p.transactions_created,
        "total_local": p.probes_sent,
        "rpl_received": p.responses_in,
        "rpl_generated": p.responses_generated,
        "rpl_sent": p.responses_generated + p.responses_forwarded,
        "6xx": p.responses_out_in_class(5),
        "5xx": p.responses_out_in_class(4),
        "4xx": p.responses_out_in_class(3),
        "3xx": p.responses_out_in_class(2),
        "2xx": p.responses_out_in_class(1),
        "created": p.transactions_created,
        "freed": p.transactions_freed,
        "delayed_free": 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ShellCounters;

    fn report(shard: usize, invites: u64) -> ShardReport {
        let mut proxy = ProxyStats {
            requests_in: invites + 1,
            transactions_created: 2 * invites,
            ..ProxyStats::default()
        };
        proxy.requests_by_method[Method::Invite.index()] = invites;
        proxy.requests_by_method[Method::Extension.index()] = 1;
        proxy.responses_out_by_class[Method::Invite.index()][1] = invites;
        ShardReport {
            shard,
            loads: Vec::new(),
            dialogs: 1,
            stats: Default::default(),
            proxy,
            shell: ShellCounters::default(),
            transactions: 3,
            unfinished: 1,
            latency: Default::default(),
        }
    }

    #[test]
    fn names_groups_and_all() {
        let reports = [report(0, 5), report(1, 7)];
        let one = |p: Params| get_statistics(&reports, &p).unwrap();
        let names = Params::Positional(vec![json!("rcv_requests_invite")]);
        assert_eq!(one(names), json!(["core:rcv_requests_invite = 12"]));
        let full = Params::Positional(vec![json!("core:rcv_requests_other")]);
        assert_eq!(one(full), json!(["core:rcv_requests_other = 2"]));
        let group = one(Params::Positional(vec![json!("tm:")]));
        let group = group.as_array().unwrap();
        assert!(group.iter().all(|l| l.as_str().unwrap().starts_with("tm:")));
        assert!(group.contains(&json!("tm:inuse_transactions = 6")));
        assert!(group.contains(&json!("tm:2xx_transactions = 12")));
        let all = one(Params::None);
        assert_eq!(all.as_array().unwrap().len(), statistics(&reports).len());
        let bad = Params::Positional(vec![json!("nope")]);
        assert_eq!(
            get_statistics(&reports, &bad).unwrap_err().code,
            OPERATIONAL
        );
        let bad = Params::Positional(vec![json!(3)]);
        assert_eq!(
            get_statistics(&reports, &bad).unwrap_err().code,
            super::super::INVALID_PARAMS
        );
    }

    #[test]
    fn tm_stats_sums_shards() {
        let t = tm_stats(&[report(0, 5), report(1, 7)]);
        assert_eq!(t["current"], json!(6));
        assert_eq!(t["waiting"], json!(4));
        assert_eq!(t["total"], json!(24));
        assert_eq!(t["2xx"], json!(12));
        assert_eq!(t["4xx"], json!(0));
    }
}
