//! From the kernel's per-observation counters to connection-level events: joins the SYNs,
//! drops and SYN-ACKs of one client → server:port flow, and decides when to report a drop
//! (first sight, then at most once per interval while it goes on) and when a dropped flow
//! is restored (a SYN-ACK newer than its last drop). Pure: testable without a kernel.

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
    drops_seen: u64,
    synacks_seen: u64,
    dropping: bool,
    outage_base: u64,
    outage_first_ns: u64,
    last_report_ns: u64,
    reported_count: u64,
    /// Monotonic time of the latest snapshot that held this connection.
    present_ns: u64,
}

/// How long a connection the kernel map no longer holds (LRU eviction) is remembered, so that
/// the table stays as bounded as the map in a long-running agent while a snapshot that missed
/// an entry (map iteration racing with updates) loses nothing.
pub const FORGET_AFTER_NS: u64 = 120 * 1_000_000_000;

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
}

impl FlowTable {
    /// A table that repeats a drop report at most every `report_interval`.
    pub fn new(report_interval: std::time::Duration) -> Self {
        Self { conns: HashMap::new(), report_interval_ns: report_interval.as_nanos() as u64 }
    }

    /// Flows currently dropping.
    pub fn dropping(&self) -> usize {
        self.conns.values().filter(|c| c.dropping).count()
    }

    /// Feeds one snapshot of the kernel map; returns the events it implies, in order.
    /// `ifname` names an interface index; `now_ns` is the monotonic time of the snapshot.
    pub fn update(
        &mut self,
        snapshot: &[(FlowKey, FlowStats)],
        now_ns: u64,
        clock: &Clock,
        ifname: impl Fn(u32) -> String,
    ) -> Vec<TraceEvent> {
        let mut totals: HashMap<ConnKey, Totals> = HashMap::new();
        for (key, stats) in snapshot {
            let Some(conn) = ConnKey::of(key) else { continue };
            let t = totals.entry(conn).or_default();
            match Observation::from_raw(key.observation) {
                Observation::SynFromPod => t.syn_from.add(key, stats),
                Observation::SynToPod => t.syn_to.add(key, stats),
                Observation::SynAckToPod | Observation::SynAckFromPod => t.synack.add(key, stats),
                Observation::Drop => t.drop.add(key, stats),
                Observation::Unknown => {}
            }
        }
        let mut keys: Vec<_> = totals.keys().copied().collect();
        keys.sort();
        let mut out = Vec::new();
        for conn in keys {
            let t = &totals[&conn];
            let st = self.conns.entry(conn).or_default();
            st.present_ns = now_ns;
            // Counts only grow, unless the LRU map evicted the entry: then re-baseline.
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
        }
        self.conns.retain(|_, st| now_ns.saturating_sub(st.present_ns) <= FORGET_AFTER_NS);
        out
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

    fn stats(count: u64, first: u64, last: u64, reason: u32) -> FlowStats {
        FlowStats { first_ns: first, last_ns: last, count, reason, sport: 51514, _pad: 0 }
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
    fn connections_gone_from_the_kernel_map_are_forgotten_after_a_while() {
        let (mut t, clock) = table();
        let syn = (key(Observation::SynFromPod, 4), stats(1, SEC, SEC, 0));
        t.update(&[syn], SEC, &clock, name);
        assert_eq!(t.len(), 1);
        // A snapshot that misses the entry (eviction, or an iteration race) keeps it...
        t.update(&[], 2 * SEC, &clock, name);
        assert_eq!(t.len(), 1);
        // ...until it has been absent for FORGET_AFTER_NS.
        t.update(&[], SEC + FORGET_AFTER_NS + 1, &clock, name);
        assert!(t.is_empty());
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
    }
}
