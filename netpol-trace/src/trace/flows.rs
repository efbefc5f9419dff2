//! From the kernel's per-observation counters to connection-level events: joins the SYNs,
//! drops and SYN-ACKs of one client → server:port flow, and decides when to report a drop
//! (first sight, then at most once per interval while it goes on) and when a dropped flow
//! is restored (a SYN-ACK newer than its last drop). It is fed only the kernel flows that
//! changed, keeps the latest counters of each, and decides which connections the kernel map
//! no longer needs ([`FlowTable::prune`]). Pure: testable without a kernel.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use chrono::{DateTime, Utc};
use netpol_trace_common::{FAMILY_IPV4, FAMILY_IPV6, FlowKey, FlowStats, Observation};

use crate::policy::Protocol;

use super::model::{DropRecord, Endpoint, Evidence, RestoredRecord, TraceEvent};

/// A connection: client, server and server port, without the client's ephemeral port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// Client address.
    pub src: IpAddr,
    /// Server address.
    pub dst: IpAddr,
    /// Server port.
    pub dport: u16,
}

/// Decodes an address of a [`FlowKey`].
pub fn ip_of(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_IPV4 => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        FAMILY_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

impl ConnKey {
    /// The connection a kernel flow key belongs to.
    pub fn of(key: &FlowKey) -> Option<Self> {
        Some(Self {
            src: ip_of(key.family, &key.saddr)?,
            dst: ip_of(key.family, &key.daddr)?,
            dport: key.dport,
        })
    }
}

/// Counters of one observation point, summed.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    count: u64,
    first_ns: u64,
    last_ns: u64,
    reason: u32,
    ifindex: u32,
    sport: u16,
}

impl Seen {
    fn add(&mut self, key: &FlowKey, stats: &FlowStats) {
        if stats.count == 0 {
            return;
        }
        if self.count == 0 || stats.first_ns < self.first_ns {
            self.first_ns = stats.first_ns;
        }
        if stats.last_ns >= self.last_ns {
            self.last_ns = stats.last_ns;
            self.reason = stats.reason;
            self.ifindex = key.ifindex;
            self.sport = stats.sport;
        }
        self.count += stats.count;
    }
}

#[derive(Debug, Default)]
struct Totals {
    syn_from: Seen,
    syn_to: Seen,
    synack: Seen,
    /// SYN-ACKs that reached the client pod (answers to `syn_from`).
    synack_to: Seen,
    drop: Seen,
}

impl Totals {
    fn evidence(&self) -> Evidence {
        Evidence {
            syn_left_source: self.syn_from.count,
            syn_reached_destination: self.syn_to.count,
            synack_returned: self.synack.count,
            dropped: self.drop.count,
        }
    }

    fn client_port(&self) -> u16 {
        [self.drop, self.syn_from, self.syn_to, self.synack]
            .iter()
            .max_by_key(|s| s.last_ns)
            .map_or(0, |s| s.sport)
    }
}

#[derive(Debug, Default)]
struct ConnState {
    /// The latest counters of each kernel flow of this connection.
    flows: Vec<(FlowKey, FlowStats)>,
    /// Newest packet of any of its flows.
    last_ns: u64,
    /// tc-only mode: SYNs seen leaving the client, their newest time, and the SYNs inferred
    /// dropped (a SYN followed by another SYN without a SYN-ACK in between).
    syns_seen: u64,
    syn_last_ns: u64,
    inferred: Seen,
    drops_seen: u64,
    synacks_seen: u64,
    dropping: bool,
    outage_base: u64,
    outage_first_ns: u64,
    last_report_ns: u64,
    reported_count: u64,
}

impl ConnState {
    fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for (key, stats) in &self.flows {
            match Observation::from_raw(key.observation) {
                Observation::SynFromPod => t.syn_from.add(key, stats),
                Observation::SynToPod => t.syn_to.add(key, stats),
                Observation::SynAckToPod => {
                    t.synack.add(key, stats);
                    t.synack_to.add(key, stats);
                }
                Observation::SynAckFromPod => t.synack.add(key, stats),
                Observation::Drop => t.drop.add(key, stats),
                Observation::Unknown => {}
            }
        }
        t
    }

    /// tc-only mode: a SYN that is followed by another SYN of the same connection with no
    /// SYN-ACK back in between was lost on the way (the client retransmitted it).
    fn infer_drops(&mut self, t: &Totals) {
        let syn = &t.syn_from;
        if syn.count > self.syns_seen {
            if self.syns_seen > 0 && t.synack_to.last_ns < self.syn_last_ns {
                let lost = syn.count - self.syns_seen;
                if self.inferred.count == 0 {
                    self.inferred.first_ns = self.syn_last_ns;
                }
                self.inferred.count += lost;
                // Just before the newest SYN: that one may still be answered.
                self.inferred.last_ns = syn.last_ns.saturating_sub(1);
                self.inferred.ifindex = syn.ifindex;
                self.inferred.sport = syn.sport;
            }
            self.syns_seen = syn.count;
            self.syn_last_ns = syn.last_ns;
        }
    }
}

/// A non-dropping connection idle this long is done: its kernel flows are removed.
pub const CONSUMED_IDLE_NS: u64 = 10 * 1_000_000_000;
/// A dropping connection idle this long is forgotten (a later drop starts a new outage).
pub const FORGET_AFTER_NS: u64 = 120 * 1_000_000_000;
/// Above this share of the kernel map's capacity, the least recently active connections are
/// evicted (non-dropping ones first) ...
pub const EVICT_ABOVE: f64 = 0.75;
/// ... down to this share.
pub const EVICT_DOWN_TO: f64 = 0.5;

/// Kernel flows [`FlowTable::prune`] decided to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Flows of connections that are done or idle.
    pub idle: Vec<FlowKey>,
    /// Flows removed early to make room in a filling map.
    pub evicted: Vec<FlowKey>,
}

/// Converts the programs' monotonic timestamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        let wall = Utc::now().timestamp_nanos_opt().unwrap_or_default() as i128;
        Self { offset_ns: wall - monotonic_ns() as i128 }
    }

    /// A clock whose monotonic zero is `wall` (tests).
    pub fn fixed(wall: DateTime<Utc>) -> Self {
        Self { offset_ns: wall.timestamp_nanos_opt().unwrap_or_default() as i128 }
    }

    /// Wall time of a monotonic timestamp.
    pub fn wall(&self, mono_ns: u64) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos((mono_ns as i128 + self.offset_ns) as i64)
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Per-connection state across snapshots of the kernel's flow map.
#[derive(Debug)]
pub struct FlowTable {
    conns: HashMap<ConnKey, ConnState>,
    report_interval_ns: u64,
    infer_drops: bool,
    /// Dropping connections with drops not yet reported (throttled): evaluated on every
    /// update even when nothing of theirs changed, so the repeat line is not held back.
    unreported: Vec<ConnKey>,
}

impl FlowTable {
    /// A table that repeats a drop report at most every `report_interval`.
    pub fn new(report_interval: std::time::Duration) -> Self {
        Self {
            conns: HashMap::new(),
            report_interval_ns: report_interval.as_nanos() as u64,
            infer_drops: false,
            unreported: Vec::new(),
        }
    }

    /// tc-only mode (no drop tracepoint): a SYN retransmitted without a SYN-ACK in between
    /// counts as dropped, reason unknown (raw 0).
    pub fn inferring_drops(mut self) -> Self {
        self.infer_drops = true;
        self
    }

    /// Flows currently dropping.
    pub fn dropping(&self) -> usize {
        self.conns.values().filter(|c| c.dropping).count()
    }

    /// Feeds the kernel flows that changed (their latest counters, `None` when the flow is no
    /// longer in the map); returns the events it implies, in order. `ifname` names an
    /// interface index; `now_ns` is the monotonic time of the read.
    pub fn update(
        &mut self,
        changed: &[(FlowKey, Option<FlowStats>)],
        now_ns: u64,
        clock: &Clock,
        ifname: impl Fn(u32) -> String,
    ) -> Vec<TraceEvent> {
        let mut touched: Vec<ConnKey> = Vec::new();
        for (key, stats) in changed {
            let Some(conn) = ConnKey::of(key) else { continue };
            let st = self.conns.entry(conn).or_default();
            let slot = st.flows.iter().position(|(k, _)| k == key);
            match (slot, stats) {
                (Some(i), Some(s)) => st.flows[i].1 = *s,
                (None, Some(s)) => st.flows.push((*key, *s)),
                (Some(i), None) => {
                    st.flows.swap_remove(i);
                }
                (None, None) => {}
            }
            st.last_ns = st.flows.iter().map(|(_, s)| s.last_ns).max().unwrap_or(st.last_ns);
            touched.push(conn);
        }
        touched.append(&mut self.unreported);
        touched.sort();
        touched.dedup();
        let mut out = Vec::new();
        for conn in touched {
            let Some(st) = self.conns.get_mut(&conn) else { continue };
            let mut t = st.totals();
            if self.infer_drops && t.drop.count == 0 {
                st.infer_drops(&t);
                t.drop = st.inferred;
            }
            // Counts only grow, unless the kernel entry was removed: then re-baseline.
            if t.drop.count < st.drops_seen {
                st.drops_seen = t.drop.count;
                st.outage_base = st.outage_base.min(t.drop.count);
            }
            if t.synack.count < st.synacks_seen {
                st.synacks_seen = t.synack.count;
            }
            let new_drops = t.drop.count > st.drops_seen;
            let new_synacks = t.synack.count > st.synacks_seen;

            if new_drops && !st.dropping {
                st.dropping = true;
                st.outage_base = st.drops_seen;
                st.outage_first_ns =
                    if st.drops_seen == 0 { t.drop.first_ns } else { t.drop.last_ns };
                st.last_report_ns = 0;
                st.reported_count = 0;
            }
            st.drops_seen = t.drop.count;

            if new_synacks && st.dropping && t.synack.last_ns > t.drop.last_ns {
                st.dropping = false;
                out.push(TraceEvent::Restored(RestoredRecord {
                    time: clock.wall(t.synack.last_ns),
                    first_drop: clock.wall(st.outage_first_ns),
                    drops: t.drop.count - st.outage_base,
                    protocol: Protocol::Tcp,
                    src: Endpoint::addr(conn.src, t.client_port()),
                    dst: Endpoint::addr(conn.dst, conn.dport),
                    evidence: t.evidence(),
                }));
            }
            st.synacks_seen = t.synack.count;

            let outage_count = t.drop.count - st.outage_base;
            let due = st.last_report_ns == 0
                || now_ns.saturating_sub(st.last_report_ns) >= self.report_interval_ns;
            if st.dropping && outage_count > st.reported_count && due {
                st.last_report_ns = now_ns.max(1);
                st.reported_count = outage_count;
                out.push(TraceEvent::Drop(DropRecord {
                    time: clock.wall(t.drop.last_ns),
                    first_seen: clock.wall(st.outage_first_ns),
                    reason: String::new(),
                    reason_raw: t.drop.reason,
                    ifname: ifname(t.drop.ifindex),
                    count: outage_count,
                    protocol: Protocol::Tcp,
                    src: Endpoint::addr(conn.src, t.drop.sport),
                    dst: Endpoint::addr(conn.dst, conn.dport),
                    policies: vec![],
                    hint: None,
                    evidence: t.evidence(),
                }));
            }
            if st.dropping && outage_count > st.reported_count {
                self.unreported.push(conn);
            }
        }
        out
    }

    /// Decides which kernel flows are no longer needed and forgets their connections:
    /// connections that are done (not dropping, idle for [`CONSUMED_IDLE_NS`]) or long idle
    /// ([`FORGET_AFTER_NS`]); then, while the kernel map holds more than [`EVICT_ABOVE`] of
    /// its `capacity` (`entries` now), the least recently active, non-dropping first.
    pub fn prune(&mut self, now_ns: u64, entries: u64, capacity: u64) -> Pruned {
        let mut pruned = Pruned::default();
        self.conns.retain(|_, st| {
            let idle = now_ns.saturating_sub(st.last_ns);
            let limit = if st.dropping { FORGET_AFTER_NS } else { CONSUMED_IDLE_NS };
            if idle < limit {
                return true;
            }
            pruned.idle.extend(st.flows.iter().map(|(k, _)| *k));
            false
        });
        let mut left = entries.saturating_sub(pruned.idle.len() as u64);
        if (left as f64) <= capacity as f64 * EVICT_ABOVE {
            return pruned;
        }
        let target = (capacity as f64 * EVICT_DOWN_TO) as u64;
        let mut order: Vec<(bool, u64, ConnKey)> =
            self.conns.iter().map(|(c, st)| (st.dropping, st.last_ns, *c)).collect();
        order.sort_unstable();
        for (_, _, conn) in order {
            if left <= target {
                break;
            }
            if let Some(st) = self.conns.remove(&conn) {
                left = left.saturating_sub(st.flows.len() as u64);
                pruned.evicted.extend(st.flows.into_iter().map(|(k, _)| k));
            }
        }
        pruned
    }

    /// Connections remembered.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is remembered.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(obs: Observation, ifindex: u32) -> FlowKey {
        let mut k = FlowKey::zeroed();
        k.family = FAMILY_IPV4;
        k.saddr[..4].copy_from_slice(&[10, 0, 1, 5]);
        k.daddr[..4].copy_from_slice(&[10, 0, 2, 7]);
        k.dport = 3306;
        k.observation = obs as u8;
        k.ifindex = ifindex;
        k
    }

    fn stats(count: u64, first: u64, last: u64, reason: u32) -> Option<FlowStats> {
        Some(FlowStats { first_ns: first, last_ns: last, count, reason, sport: 51514, _pad: 0 })
    }

    fn table() -> (FlowTable, Clock) {
        (FlowTable::new(Duration::from_secs(1)), Clock::fixed(DateTime::UNIX_EPOCH))
    }

    fn name(i: u32) -> String {
        format!("cali{i}")
    }

    #[test]
    fn a_drop_is_reported_once_then_throttled_then_restored() {
        let (mut t, clock) = table();
        let syn = (key(Observation::SynFromPod, 4), stats(1, SEC, SEC, 0));
        let drop1 = (key(Observation::Drop, 4), stats(1, SEC, SEC, 11));
        let ev = t.update(&[syn, drop1], SEC, &clock, name);
        assert_eq!(ev.len(), 1);
        let TraceEvent::Drop(d) = &ev[0] else { panic!("{ev:?}") };
        assert_eq!((d.count, d.reason_raw, d.ifname.as_str()), (1, 11, "cali4"));
        assert_eq!(d.src.ip.to_string(), "10.0.1.5");
        assert_eq!((d.src.port, d.dst.port), (51514, 3306));
        assert_eq!(d.evidence.syn_left_source, 1);

        // Retransmits within the interval: no new line.
        let drop3 = (key(Observation::Drop, 4), stats(3, SEC, 2 * SEC, 11));
        assert!(t.update(&[syn, drop3], SEC + SEC / 2, &clock, name).is_empty());
        // After the interval: one update with the cumulative count.
        let ev = t.update(&[syn, drop3], 2 * SEC + SEC / 2, &clock, name);
        let [TraceEvent::Drop(d)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!(d.count, 3);
        // Nothing new: silence.
        assert!(t.update(&[syn, drop3], 5 * SEC, &clock, name).is_empty());
        assert_eq!(t.dropping(), 1);

        // The rule is fixed: SYN-ACK after the last drop.
        let synack = (key(Observation::SynAckToPod, 4), stats(1, 6 * SEC, 6 * SEC, 0));
        let ev = t.update(&[syn, drop3, synack], 6 * SEC, &clock, name);
        let [TraceEvent::Restored(r)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!(r.drops, 3);
        assert_eq!(r.first_drop, clock.wall(SEC));
        assert_eq!(t.dropping(), 0);
        assert!(t.update(&[syn, drop3, synack], 7 * SEC, &clock, name).is_empty());
    }

    #[test]
    fn done_connections_are_pruned_soon_and_dropping_ones_late() {
        let (mut t, clock) = table();
        let ok = (key(Observation::SynFromPod, 4), stats(1, SEC, SEC, 0));
        let mut other = key(Observation::Drop, 4);
        other.daddr[3] = 9;
        let dropping = (other, stats(1, SEC, SEC, 11));
        t.update(&[ok, dropping], SEC, &clock, name);
        assert_eq!((t.len(), t.dropping()), (2, 1));
        assert_eq!(t.prune(2 * SEC, 2, 100), Pruned::default());
        let p = t.prune(SEC + CONSUMED_IDLE_NS, 2, 100);
        assert_eq!((p.idle, p.evicted), (vec![ok.0], vec![]));
        assert_eq!(t.len(), 1);
        let p = t.prune(SEC + FORGET_AFTER_NS, 1, 100);
        assert_eq!(p.idle, vec![other]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_filling_map_evicts_the_oldest_non_dropping_connections_first() {
        let (mut t, clock) = table();
        let mut flows = vec![];
        for i in 0..8u8 {
            let obs = if i == 0 { Observation::Drop } else { Observation::SynFromPod };
            let mut k = key(obs, 4);
            k.daddr[3] = i;
            flows.push((k, stats(1, SEC + u64::from(i), SEC + u64::from(i), 11)));
        }
        t.update(&flows, 2 * SEC, &clock, name);
        // 8 of 10 entries: above 3/4, evict down to 1/2 (5 entries): 3 evicted.
        let p = t.prune(2 * SEC, 8, 10);
        assert!(p.idle.is_empty());
        let evicted: Vec<u8> = p.evicted.iter().map(|k| k.daddr[3]).collect();
        assert_eq!(evicted, [1, 2, 3], "oldest non-dropping first; the dropping one stays");
        assert_eq!((t.len(), t.dropping()), (5, 1));
    }

    #[test]
    fn a_flow_gone_from_the_kernel_map_leaves_its_connection() {
        let (mut t, clock) = table();
        let syn = (key(Observation::SynFromPod, 4), stats(1, SEC, SEC, 0));
        t.update(&[syn], SEC, &clock, name);
        t.update(&[(syn.0, None)], 2 * SEC, &clock, name);
        let p = t.prune(2 * SEC + CONSUMED_IDLE_NS, 0, 100);
        assert!(p.idle.is_empty() && t.is_empty(), "{p:?}");
    }

    #[test]
    fn a_throttled_repeat_goes_out_without_a_further_change() {
        let (mut t, clock) = table();
        let drop1 = (key(Observation::Drop, 4), stats(1, SEC, SEC, 11));
        assert_eq!(t.update(&[drop1], SEC, &clock, name).len(), 1);
        let drop2 = (key(Observation::Drop, 4), stats(2, SEC, SEC + 1, 11));
        assert!(t.update(&[drop2], SEC + SEC / 2, &clock, name).is_empty());
        let ev = t.update(&[], 2 * SEC + SEC / 2, &clock, name);
        let [TraceEvent::Drop(d)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!(d.count, 2);
        assert!(t.update(&[], 4 * SEC, &clock, name).is_empty());
    }

    #[test]
    fn tc_only_mode_infers_a_drop_from_a_retransmitted_syn_then_restores() {
        let mut t = FlowTable::new(Duration::from_secs(1)).inferring_drops();
        let clock = Clock::fixed(DateTime::UNIX_EPOCH);
        // A normal handshake: no drop.
        let syn = key(Observation::SynFromPod, 4);
        let synack = key(Observation::SynAckToPod, 4);
        let ev = t.update(&[(syn, stats(1, SEC, SEC, 0))], SEC, &clock, name);
        assert!(ev.is_empty());
        t.update(&[(synack, stats(1, SEC + 1, SEC + 1, 0))], SEC, &clock, name);
        assert!(t.update(&[(syn, stats(2, SEC, 2 * SEC, 0))], 2 * SEC, &clock, name).is_empty());
        // That SYN gets no answer and is retransmitted: one drop, reason unknown.
        let ev = t.update(&[(syn, stats(3, SEC, 3 * SEC, 0))], 3 * SEC, &clock, name);
        let [TraceEvent::Drop(d)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!((d.count, d.reason_raw, d.ifname.as_str()), (1, 0, "cali4"));
        // The retransmit is answered: restored.
        let ev = t.update(&[(synack, stats(2, SEC + 1, 3 * SEC + 5, 0))], 3 * SEC, &clock, name);
        assert!(matches!(ev.as_slice(), [TraceEvent::Restored(_)]), "{ev:?}");
    }

    #[test]
    fn handshakes_without_drops_report_nothing() {
        let (mut t, clock) = table();
        let syn = (key(Observation::SynFromPod, 4), stats(5, SEC, SEC, 0));
        let synack = (key(Observation::SynAckToPod, 4), stats(5, SEC, SEC, 0));
        assert!(t.update(&[syn, synack], SEC, &clock, name).is_empty());
    }

    #[test]
    fn a_stale_synack_does_not_restore_and_a_new_outage_starts_a_new_count() {
        let (mut t, clock) = table();
        let old_synack = (key(Observation::SynAckToPod, 4), stats(1, SEC, SEC, 0));
        t.update(&[old_synack], SEC, &clock, name);
        let drop = (key(Observation::Drop, 4), stats(2, 2 * SEC, 3 * SEC, 11));
        let ev = t.update(&[old_synack, drop], 3 * SEC, &clock, name);
        assert!(matches!(ev.as_slice(), [TraceEvent::Drop(_)]));
        let synack = (key(Observation::SynAckToPod, 4), stats(2, SEC, 4 * SEC, 0));
        let ev = t.update(&[synack, drop], 4 * SEC, &clock, name);
        assert!(matches!(ev.as_slice(), [TraceEvent::Restored(_)]));
        // Broken again: the new outage counts from zero.
        let drop_again = (key(Observation::Drop, 4), stats(3, 2 * SEC, 5 * SEC, 11));
        let ev = t.update(&[synack, drop_again], 5 * SEC, &clock, name);
        let [TraceEvent::Drop(d)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!(d.count, 1);
    }

    #[test]
    fn per_interface_drops_are_summed_and_the_latest_reason_wins() {
        let (mut t, clock) = table();
        let a = (key(Observation::Drop, 4), stats(2, SEC, SEC, 11));
        let b = (key(Observation::Drop, 9), stats(1, 2 * SEC, 2 * SEC, 64));
        let ev = t.update(&[a, b], 2 * SEC, &clock, name);
        let [TraceEvent::Drop(d)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!((d.count, d.reason_raw, d.ifname.as_str()), (3, 64, "cali9"));
    }

    #[test]
    fn unknown_families_are_ignored() {
        let (mut t, clock) = table();
        let mut k = key(Observation::Drop, 1);
        k.family = 0;
        assert!(t.update(&[(k, stats(1, 1, 1, 2))], 1, &clock, name).is_empty());
        assert!(t.is_empty());
    }
}
