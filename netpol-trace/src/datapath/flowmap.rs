//! Reading the kernel's flow map without scanning it.
//!
//! The programs enter a flow into the changed-flows map on its first packet and on any packet
//! that follows a quiet gap longer than [`NOTIFY_QUIET`] (per CPU). Each poll drains that map
//! (one batch syscall where the kernel has them) and reads the per-CPU counters of the
//! drained flows plus the flows still "hot" (changed within the quiet gap): a flow stays hot
//! until a read, started more than the quiet gap after its newest packet, shows no newer
//! one. Every packet is therefore seen by some read — either it followed a quiet gap and
//! was notified, or a packet at most the gap earlier keeps the flow hot until a read after
//! it — while an idle map costs one syscall per poll whatever its size.
//!
//! The map is not LRU: entries leave only when user space removes them ([`FlowMap::remove`]),
//! so entries, removals and evictions are exact numbers ([`FlowMapPressure`]).

use std::{
    collections::HashSet,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, Map, MapError, PerCpuHashMap};
use aya_obj::generated::bpf_cmd;
use netpol_trace_common::{FLOWS_MAX_ENTRIES, FlowKey, FlowStats, MAP_CHANGED, MAP_FLOWS};

use super::programs::DatapathError;

/// The quiet gap after which a flow's next packet notifies user space again (and how long
/// user space keeps re-reading a flow after its newest packet).
pub const NOTIFY_QUIET: Duration = Duration::from_millis(200);

/// Keys drained from the changed-flows map per batch syscall.
const BATCH: usize = 1024;

/// How full the flow map is, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowMapPressure {
    /// Flows in the kernel map now.
    pub entries: u64,
    /// Its capacity.
    pub capacity: u64,
    /// Flows removed by user space before they were idle, to make room.
    pub evictions: u64,
    /// New flows the kernel could not record because the map was full.
    pub full: u64,
}

/// The flow map and its changed-flows companion, read incrementally.
pub struct FlowMap {
    flows: Map,
    changed: Map,
    hot: HashSet<FlowKey>,
    quiet_ns: u64,
    removed: u64,
    evicted: u64,
    /// Whether the kernel answers the batch commands (Linux >= 5.6).
    batch: bool,
}

/// A flow read from the kernel: its summed counters, or `None` when it is no longer there.
pub type FlowRead = (FlowKey, Option<FlowStats>);

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |e| DatapathError::Map { map, reason: e.to_string() }
}

impl FlowMap {
    /// Wraps the two maps taken from the loaded object.
    pub fn new(flows: Map, changed: Map) -> Result<Self, DatapathError> {
        PerCpuHashMap::<_, FlowKey, FlowStats>::try_from(&flows).map_err(map_err(MAP_FLOWS))?;
        BpfHashMap::<_, FlowKey, u8>::try_from(&changed).map_err(map_err(MAP_CHANGED))?;
        Ok(Self {
            flows,
            changed,
            hot: HashSet::new(),
            quiet_ns: NOTIFY_QUIET.as_nanos() as u64,
            removed: 0,
            evicted: 0,
            batch: true,
        })
    }

    /// Flows changed since the previous call, read from the kernel. `now_ns` is the
    /// monotonic time taken before this call (it decides which flows stay hot).
    pub fn poll(&mut self, now_ns: u64) -> Vec<FlowRead> {
        let mut keys = self.drain_changed();
        keys.extend(self.hot.drain());
        keys.sort_unstable_by(|a, b| key_bytes(a).cmp(&key_bytes(b)));
        keys.dedup();
        self.read(keys, now_ns)
    }

    /// Every flow in the kernel map (a full scan: only to resynchronise after lost
    /// changed-flow notices, never in the steady state).
    pub fn rescan(&mut self, now_ns: u64) -> Vec<FlowRead> {
        let _ = self.drain_changed();
        let keys: Vec<FlowKey> = match PerCpuHashMap::<_, FlowKey, FlowStats>::try_from(&self.flows)
        {
            Ok(map) => map.keys().filter_map(Result::ok).collect(),
            Err(_) => vec![],
        };
        self.hot.clear();
        self.read(keys, now_ns)
    }

    fn read(&mut self, keys: Vec<FlowKey>, now_ns: u64) -> Vec<FlowRead> {
        let Ok(map) = PerCpuHashMap::<_, FlowKey, FlowStats>::try_from(&self.flows) else {
            return vec![];
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match map.get(&key, 0) {
                Ok(per_cpu) => {
                    let sum = sum_slots(per_cpu.iter());
                    if now_ns.saturating_sub(sum.last_ns) <= self.quiet_ns {
                        self.hot.insert(key);
                    }
                    out.push((key, Some(sum)));
                }
                Err(MapError::KeyNotFound) => out.push((key, None)),
                Err(e) => tracing::debug!(error = %e, "reading a flow"),
            }
        }
        out
    }

    /// Removes flows from the kernel map; `evicted` counts them as evictions (removed to
    /// make room, not because they were done). Returns how many were removed.
    pub fn remove(&mut self, keys: &[FlowKey], evicted: bool) -> u64 {
        let mut done = 0u64;
        let mut rest = keys;
        while let Some(fd) = map_fd(&self.flows).filter(|_| self.batch && !rest.is_empty()) {
            match delete_batch(fd, rest) {
                Ok(n) => {
                    done += n as u64;
                    rest = &[];
                }
                // A key already gone stops the batch at its index: skip it, go on.
                Err((n, e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                    done += n as u64;
                    rest = &rest[(n + 1).min(rest.len())..];
                }
                Err((n, e)) => {
                    tracing::debug!(error = %e, "batch delete unavailable; deleting one by one");
                    done += n as u64;
                    rest = &rest[n.min(rest.len())..];
                    self.batch = false;
                }
            }
        }
        if !rest.is_empty()
            && let Ok(mut map) = PerCpuHashMap::<_, FlowKey, FlowStats>::try_from(&mut self.flows)
        {
            done += rest.iter().filter(|k| map.remove(k).is_ok()).count() as u64;
        }
        for k in keys {
            self.hot.remove(k);
        }
        self.removed += done;
        if evicted {
            self.evicted += done;
        }
        done
    }

    /// Map pressure, given the kernel's insert and full counters.
    pub fn pressure(&self, inserted: u64, full: u64) -> FlowMapPressure {
        FlowMapPressure {
            entries: inserted.saturating_sub(self.removed),
            capacity: u64::from(FLOWS_MAX_ENTRIES),
            evictions: self.evicted,
            full,
        }
    }

    /// Flows re-read on every poll because they changed within the quiet gap.
    pub fn hot(&self) -> usize {
        self.hot.len()
    }

    /// Takes every key out of the changed-flows map.
    fn drain_changed(&mut self) -> Vec<FlowKey> {
        if let Some(fd) = map_fd(&self.changed).filter(|_| self.batch) {
            match lookup_and_delete_all(fd) {
                Ok(keys) => return keys,
                Err(e) => {
                    tracing::debug!(error = %e, "batch lookup unavailable; draining one by one");
                    self.batch = false;
                }
            }
        }
        let Ok(mut map) = BpfHashMap::<_, FlowKey, u8>::try_from(&mut self.changed) else {
            return vec![];
        };
        let keys: Vec<FlowKey> = map.keys().filter_map(Result::ok).collect();
        for k in &keys {
            let _ = map.remove(k);
        }
        keys
    }
}

/// Sums a flow's per-CPU slots (slots a CPU never wrote are zero and skipped).
pub fn sum_slots<'a>(slots: impl Iterator<Item = &'a FlowStats>) -> FlowStats {
    let mut sum =
        FlowStats { first_ns: u64::MAX, last_ns: 0, count: 0, reason: 0, sport: 0, _pad: 0 };
    for s in slots.filter(|s| s.count > 0) {
        sum.first_ns = sum.first_ns.min(s.first_ns);
        if s.last_ns >= sum.last_ns {
            sum.last_ns = s.last_ns;
            sum.sport = s.sport;
            if s.reason != 0 {
                sum.reason = s.reason;
            }
        }
        sum.count += s.count;
    }
    if sum.count == 0 {
        sum.first_ns = 0;
    }
    sum
}

fn key_bytes(k: &FlowKey) -> (&[u8; 16], &[u8; 16], u16, u8, u8, u32) {
    (&k.saddr, &k.daddr, k.dport, k.observation, k.family, k.ifindex)
}

/// The descriptor of a hash map (`None` for other types; [`FlowMap::new`] checked them).
fn map_fd(map: &Map) -> Option<BorrowedFd<'_>> {
    match map {
        Map::HashMap(d) | Map::PerCpuHashMap(d) => Some(d.fd().as_fd()),
        _ => None,
    }
}

/// `union bpf_attr`'s member for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: bpf_cmd, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: bpf(2) with a batch attribute whose pointers are valid for `count` elements.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<BatchAttr>(),
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Drains a hash map of [`FlowKey`] → u8 with `BPF_MAP_LOOKUP_AND_DELETE_BATCH`.
fn lookup_and_delete_all(fd: BorrowedFd<'_>) -> io::Result<Vec<FlowKey>> {
    let mut out = Vec::new();
    let mut keys = vec![FlowKey::zeroed(); BATCH];
    let mut values = vec![0u8; BATCH];
    let (mut token, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { std::ptr::from_mut(&mut token) as u64 },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr);
        let n = (attr.count as usize).min(BATCH);
        match result {
            Ok(()) => out.extend_from_slice(&keys[..n]),
            // ENOENT: the map has been walked to its end (the last chunk may hold keys).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                out.extend_from_slice(&keys[..n]);
                return Ok(out);
            }
            Err(e) if first => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "changed-flows drain stopped early");
                return Ok(out);
            }
        }
        token = next;
        first = false;
    }
}

/// Deletes `keys` with `BPF_MAP_DELETE_BATCH`; on error, how many were deleted before it.
fn delete_batch(fd: BorrowedFd<'_>, keys: &[FlowKey]) -> Result<usize, (usize, io::Error)> {
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    match bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr) {
        Ok(()) => Ok(keys.len()),
        Err(e) => Err(((attr.count as usize).min(keys.len()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(count: u64, first: u64, last: u64, reason: u32, sport: u16) -> FlowStats {
        FlowStats { first_ns: first, last_ns: last, count, reason, sport, _pad: 0 }
    }

    #[test]
    fn slots_sum_with_the_newest_reason_and_port() {
        let slots = [slot(2, 10, 20, 0, 1000), slot(0, 0, 0, 0, 0), slot(3, 5, 30, 11, 2000)];
        let s = sum_slots(slots.iter());
        assert_eq!((s.count, s.first_ns, s.last_ns, s.reason, s.sport), (5, 5, 30, 11, 2000));
        let empty = sum_slots([slot(0, 0, 0, 0, 0)].iter());
        assert_eq!((empty.count, empty.first_ns), (0, 0));
    }

    #[test]
    fn the_batch_attribute_has_the_kernel_layout() {
        // struct { u64 in_batch, out_batch, keys, values; u32 count, map_fd; u64 elem_flags, flags; }
        assert_eq!(size_of::<BatchAttr>(), 56);
        assert_eq!(std::mem::offset_of!(BatchAttr, count), 32);
        assert_eq!(std::mem::offset_of!(BatchAttr, elem_flags), 40);
    }
}
