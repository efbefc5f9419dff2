//! netpol-trace kernel programs: observe only.
//!
//! * `tc_from_pod` / `tc_to_pod` run on the host side of a pod's veth (tc ingress = the
//!   packet leaves the pod, tc egress = it enters the pod). They note TCP SYNs (no ACK) and
//!   SYN-ACKs of watched ports and always return `TC_ACT_UNSPEC` so that the rest of the
//!   chain, a CNI's own programs included, runs as if we were not there.
//! * `kfree_skb` (tp_btf) notes SYNs the kernel frees with a drop reason, parsed from the
//!   packet itself (a forwarded SYN has no socket) with offsets taken from the running
//!   kernel's BTF by user space.
//!
//! A packet that is not a TCP SYN leaves after a handful of loads and one bounds check. A
//! watched SYN costs one map lookup and, at most, one insert; the flow is entered into the
//! changed-flows map on its first packet and after a quiet gap (so user space reads only
//! what changed), and a ring-buffer notice with the packet's header is sent only for a flow
//! seen for the first time.
//!
//! Diagnostics (a packet whose headers cannot be read, a map that refuses an insert, a ring
//! buffer that is full) go through aya-log at debug level, only on those failure paths: the
//! per-packet success path never logs. User space enables them at load time when its log
//! filter enables `netpol_trace::ebpf=debug`; otherwise `AYA_LOG_LEVEL` stays 0 and each
//! diagnostic costs one load and one compare.
#![no_std]
#![no_main]
// The program macros emit the exported entry points without their doc comments.
#![allow(missing_docs)]

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{
        bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_buf, bpf_skb_load_bytes,
    },
    macros::{btf_tracepoint, classifier, map},
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePointContext, TcContext},
};
use netpol_trace_common::{
    COUNTER_CHANGED_LOST, COUNTER_EVENTS_LOST, COUNTER_FLOW_INSERTS, COUNTER_FLOWS_FULL,
    COUNTER_MATCHED, COUNTERS_LEN, Config, EVENT_HEADER_BYTES, EVENTS_BYTES, FAMILY_IPV4,
    FAMILY_IPV6, FLOWS_MAX_ENTRIES, FlowEvent, FlowKey, FlowStats, Observation, PORTS_MAX_ENTRIES,
};

/// Load-time configuration, rewritten by user space before the object is loaded.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::zeroed();

/// Per-CPU values: every CPU counts into its own slot, so no atomics are needed (the bpf
/// target has no 64-bit fetch-add in stable Rust) and nothing is lost to races; user space
/// sums the slots. Not LRU: user space prunes (and counts its evictions), a full map is
/// counted.
#[map]
static FLOWS: PerCpuHashMap<FlowKey, FlowStats> =
    PerCpuHashMap::with_max_entries(FLOWS_MAX_ENTRIES, 0);

/// Flows changed since user space last drained this map (the value is unused).
#[map]
static CHANGED: HashMap<FlowKey, u8> = HashMap::with_max_entries(FLOWS_MAX_ENTRIES, 0);

#[map]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(PORTS_MAX_ENTRIES, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;
const TCP_FLAG_RST: u8 = 0x04;
const EEXIST: i32 = 17;
/// Ethernet + IPv4 without options + the TCP header up to its flags.
const V4_FAST_LEN: usize = ETH_HLEN + 20 + 14;
/// Ethernet + IPv6 + the TCP header up to its flags.
const V6_LEN: usize = ETH_HLEN + 40 + 14;

/// A debug-level diagnostic, for failure paths only.
macro_rules! diag {
    ($($arg:tt)+) => {
        aya_log_ebpf::debug!(&(), target: "netpol_trace::ebpf", $($arg)+)
    };
}

/// Where a tc program runs on the host-side veth.
#[derive(Clone, Copy)]
enum Side {
    /// tc ingress: the packet comes out of the pod.
    FromPod,
    /// tc egress: the packet goes into the pod.
    ToPod,
}

/// The fields of a TCP segment that matter here.
struct Segment {
    family: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    flags: u8,
}

#[inline(always)]
fn config() -> Config {
    // SAFETY: CONFIG is a plain global that user space patches before load; a volatile read
    // keeps the compiler from folding in the all-zero initialiser.
    unsafe { core::ptr::read_volatile(&raw const CONFIG) }
}

#[inline(always)]
fn bump(counter: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, no other writer on this CPU while we run.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn port_watched(cfg: &Config, port: u16) -> bool {
    // SAFETY: read-only lookup of a plain value.
    cfg.all_ports != 0 || unsafe { PORTS.get(port) }.is_some()
}

/// Folds a segment onto its client → server flow and records it, or ignores it.
#[inline(always)]
fn observe(
    seg: &Segment,
    obs_syn: Observation,
    obs_synack: Observation,
    ifindex: u32,
    reason: u32,
    header: impl FnOnce(&mut [u8; EVENT_HEADER_BYTES]) -> u16,
) {
    let cfg = config();
    let syn = seg.flags & TCP_FLAG_SYN != 0;
    let ack = seg.flags & TCP_FLAG_ACK != 0;
    if !syn || seg.flags & TCP_FLAG_RST != 0 {
        return;
    }
    let mut key = FlowKey::zeroed();
    key.family = seg.family;
    key.ifindex = ifindex;
    let client_port;
    if !ack {
        if !port_watched(&cfg, seg.dport) {
            return;
        }
        key.saddr = seg.saddr;
        key.daddr = seg.daddr;
        key.dport = seg.dport;
        key.observation = obs_syn as u8;
        client_port = seg.sport;
    } else {
        if reason != 0 || !port_watched(&cfg, seg.sport) {
            return;
        }
        key.saddr = seg.daddr;
        key.daddr = seg.saddr;
        key.dport = seg.sport;
        key.observation = obs_synack as u8;
        client_port = seg.dport;
    }
    record(&key, reason, client_port, cfg.notify_quiet_ns, header);
}

#[inline(always)]
fn record(
    key: &FlowKey,
    reason: u32,
    sport: u16,
    quiet_ns: u64,
    header: impl FnOnce(&mut [u8; EVENT_HEADER_BYTES]) -> u16,
) {
    bump(COUNTER_MATCHED);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(stats) = FLOWS.get_ptr_mut(key) {
        let previous = update(stats, now, reason, sport);
        if now.wrapping_sub(previous) > quiet_ns {
            notify(key);
        }
        return;
    }
    let stats = FlowStats { first_ns: now, last_ns: now, count: 1, reason, sport, _pad: 0 };
    match FLOWS.insert(key, stats, BPF_NOEXIST as u64) {
        Ok(()) => {
            bump(COUNTER_FLOW_INSERTS);
            notify(key);
            send_event(key, now, reason, sport, header);
        }
        Err(e) if e == -EEXIST => {
            // Another CPU inserted it between our lookup and insert; this CPU's slot is
            // new, so the flow is noted as changed.
            if let Some(stats) = FLOWS.get_ptr_mut(key) {
                update(stats, now, reason, sport);
                notify(key);
            }
        }
        Err(e) => {
            bump(COUNTER_FLOWS_FULL);
            diag!("flow map insert failed ({}): flow to port {} not recorded", e, key.dport);
        }
    }
}

/// Enters `key` into the changed-flows map (idempotent: a key already there stays once).
#[inline(always)]
fn notify(key: &FlowKey) {
    if let Err(e) = CHANGED.insert(key, 1, 0) {
        bump(COUNTER_CHANGED_LOST);
        diag!("changed-flows map insert failed ({}): port {}", e, key.dport);
    }
}

/// Sends the new-flow notice with the packet's header (pcap evidence).
#[inline(always)]
fn send_event(
    key: &FlowKey,
    now: u64,
    reason: u32,
    sport: u16,
    header: impl FnOnce(&mut [u8; EVENT_HEADER_BYTES]) -> u16,
) {
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            let event = entry.as_mut_ptr();
            // SAFETY: the entry is ours until submitted; every field is written.
            unsafe {
                (*event).key = *key;
                (*event).ts_ns = now;
                (*event).reason = reason;
                (*event).sport = sport;
                (*event).header = [0; EVENT_HEADER_BYTES];
                (*event).header_len = header(&mut (*event).header);
            }
            entry.submit(0);
        }
        None => {
            bump(COUNTER_EVENTS_LOST);
            diag!("ring buffer full: new-flow notice to port {} lost", key.dport);
        }
    }
}

/// Adds a packet to this CPU's slot; returns the slot's previous `last_ns` (0 when new).
#[inline(always)]
fn update(stats: *mut FlowStats, now: u64, reason: u32, sport: u16) -> u64 {
    // SAFETY: the pointer is this CPU's slot from a successful lookup, valid for this run.
    // A slot another CPU created reads as zero here, hence the first_ns check.
    unsafe {
        let previous = (*stats).last_ns;
        if (*stats).first_ns == 0 {
            (*stats).first_ns = now;
        }
        (*stats).last_ns = now;
        (*stats).sport = sport;
        if reason != 0 {
            (*stats).reason = reason;
        }
        (*stats).count += 1;
        previous
    }
}

#[classifier]
pub fn tc_from_pod(ctx: TcContext) -> i32 {
    if let Err(e) = try_tc(&ctx, Side::FromPod) {
        diag!("tc from pod: TCP SYN headers unreadable ({}), packet of {} bytes", e, ctx.len());
    }
    TC_ACT_UNSPEC
}

#[classifier]
pub fn tc_to_pod(ctx: TcContext) -> i32 {
    if let Err(e) = try_tc(&ctx, Side::ToPod) {
        diag!("tc to pod: TCP SYN headers unreadable ({}), packet of {} bytes", e, ctx.len());
    }
    TC_ACT_UNSPEC
}

#[inline(always)]
fn try_tc(ctx: &TcContext, side: Side) -> Result<(), i64> {
    // Every packet of the pod passes here: the common case (not a TCP SYN) is decided with
    // one bounds check and a few single-byte loads at constant offsets, no helper call and
    // no copy. IPv4 headers with options (rare) take the bpf_skb_load_bytes path.
    let data = ctx.data();
    let end = ctx.data_end();
    if data + V4_FAST_LEN > end {
        return Ok(());
    }
    // SAFETY (every `byte` below): offsets < V4_FAST_LEN, checked against data_end above,
    // or < V6_LEN, checked in the IPv6 arm.
    let byte = |off: usize| unsafe { *((data + off) as *const u8) };
    let (family, flags) = match (byte(12), byte(13)) {
        (0x08, 0x00) => {
            // Protocol, then fragment offset (a non-first fragment has no TCP header).
            if byte(ETH_HLEN + 9) != IPPROTO_TCP
                || (byte(ETH_HLEN + 6) & 0x1f) | byte(ETH_HLEN + 7) != 0
            {
                return Ok(());
            }
            let vihl = byte(ETH_HLEN);
            let flags = if vihl == 0x45 {
                byte(ETH_HLEN + 20 + 13)
            } else {
                ctx.load::<u8>(((vihl & 0x0f) as usize) * 4 + ETH_HLEN + 13)?
            };
            (FAMILY_IPV4, flags)
        }
        (0x86, 0xdd) => {
            if data + V6_LEN > end || byte(ETH_HLEN + 6) != IPPROTO_TCP {
                return Ok(());
            }
            (FAMILY_IPV6, byte(ETH_HLEN + 40 + 13))
        }
        _ => return Ok(()),
    };
    if flags & TCP_FLAG_SYN == 0 {
        return Ok(());
    }
    syn_seen(ctx, side, family, flags)
}

/// The slow path: a SYN or SYN-ACK (a few per connection).
#[inline(never)]
fn syn_seen(ctx: &TcContext, side: Side, family: u8, flags: u8) -> Result<(), i64> {
    let l4 = if family == FAMILY_IPV4 {
        ((load::<u8>(ctx, ETH_HLEN)? & 0x0f) as usize) * 4 + ETH_HLEN
    } else {
        ETH_HLEN + 40
    };
    let tcp: [u8; 4] = match l4 {
        34 => load(ctx, 34)?,
        54 => load(ctx, 54)?,
        off => ctx.load(off)?,
    };
    let mut seg = Segment {
        family,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        flags,
    };
    if family == FAMILY_IPV4 {
        seg.saddr[..4].copy_from_slice(&load::<[u8; 4]>(ctx, ETH_HLEN + 12)?);
        seg.daddr[..4].copy_from_slice(&load::<[u8; 4]>(ctx, ETH_HLEN + 16)?);
    } else {
        seg.saddr = load::<[u8; 16]>(ctx, ETH_HLEN + 8)?;
        seg.daddr = load::<[u8; 16]>(ctx, ETH_HLEN + 24)?;
    }
    // SAFETY: reading the context's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let (syn, synack) = match side {
        Side::FromPod => (Observation::SynFromPod, Observation::SynAckFromPod),
        Side::ToPod => (Observation::SynToPod, Observation::SynAckToPod),
    };
    observe(&seg, syn, synack, ifindex, 0, |buf| copy_header(ctx, buf));
    Ok(())
}

/// Reads a `T` at a constant `offset` of the packet's linear data, bounds-checked for the
/// verifier. Data beyond the linear part reads as an error and the packet is skipped.
#[inline(always)]
fn load<T: Copy>(ctx: &TcContext, offset: usize) -> Result<T, i64> {
    let ptr = ctx.data() + offset;
    if ptr + core::mem::size_of::<T>() > ctx.data_end() {
        return Err(-1);
    }
    // SAFETY: the range was checked against data_end just above.
    Ok(unsafe { core::ptr::read_unaligned(ptr as *const T) })
}

/// Copies the packet from its IP header on. Fixed lengths only (the verifier rejects a
/// length that may be zero): 80 bytes fit an IPv6 SYN with options, 60 an IPv4 one.
#[inline(always)]
fn copy_header(ctx: &TcContext, buf: &mut [u8; EVENT_HEADER_BYTES]) -> u16 {
    let avail = ctx.len().saturating_sub(ETH_HLEN as u32);
    let skb = ctx.skb.skb.cast::<core::ffi::c_void>();
    let to = buf.as_mut_ptr().cast::<core::ffi::c_void>();
    // SAFETY: `buf` holds at least the constant length passed in each call.
    let (ret, n) = unsafe {
        if avail >= 80 {
            (bpf_skb_load_bytes(skb, ETH_HLEN as u32, to, 80), 80)
        } else if avail >= 60 {
            (bpf_skb_load_bytes(skb, ETH_HLEN as u32, to, 60), 60)
        } else if avail >= 40 {
            (bpf_skb_load_bytes(skb, ETH_HLEN as u32, to, 40), 40)
        } else {
            return 0;
        }
    };
    if ret == 0 { n } else { 0 }
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    if let Err(e) = try_kfree_skb(&ctx) {
        diag!("kfree_skb: kernel read failed ({}), dropped packet not parsed", e);
    }
    0
}

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
fn kread<T>(base: *const u8, off: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel validates the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }
}

#[inline(always)]
fn try_kfree_skb(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let cfg = config();
    if cfg.drops_enabled == 0 {
        return Ok(());
    }
    let o = cfg.offsets;
    let skb: *const u8 = ctx.arg(0);
    let reason = ctx.arg::<u64>(2) as u32;
    let dev: *const u8 = kread(skb, o.skb_dev)?;
    if dev.is_null() {
        return Ok(());
    }
    if cfg.netns_inum != 0 {
        let net: *const u8 = kread(dev, o.dev_net)?;
        let inum: u32 = kread(net, o.net_inum)?;
        if inum != cfg.netns_inum {
            return Ok(());
        }
    }
    let proto = u16::from_be(kread::<u16>(skb, o.skb_protocol)?);
    let head: *const u8 = kread(skb, o.skb_head)?;
    let nh: u16 = kread(skb, o.skb_network_header)?;
    if head.is_null() || nh == 0xffff {
        return Ok(());
    }
    let ip = head.wrapping_add(nh as usize);
    let mut seg =
        Segment { family: 0, saddr: [0; 16], daddr: [0; 16], sport: 0, dport: 0, flags: 0 };
    let total_len: u16;
    let tcp = match proto {
        ETH_P_IP => {
            let hdr: [u8; 20] = kread(ip, 0)?;
            let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
            if hdr[0] >> 4 != 4 || hdr[9] != IPPROTO_TCP || frag & 0x1fff != 0 {
                return Ok(());
            }
            let ihl = ((hdr[0] & 0x0f) as usize) * 4;
            if ihl < 20 {
                diag!("kfree_skb: IPv4 header length {} below 20, packet skipped", ihl);
                return Ok(());
            }
            seg.family = FAMILY_IPV4;
            seg.saddr[..4].copy_from_slice(&hdr[12..16]);
            seg.daddr[..4].copy_from_slice(&hdr[16..20]);
            total_len = u16::from_be_bytes([hdr[2], hdr[3]]);
            ip.wrapping_add(ihl)
        }
        ETH_P_IPV6 => {
            let hdr: [u8; 40] = kread(ip, 0)?;
            if hdr[0] >> 4 != 6 || hdr[6] != IPPROTO_TCP {
                return Ok(());
            }
            seg.family = FAMILY_IPV6;
            seg.saddr.copy_from_slice(&hdr[8..24]);
            seg.daddr.copy_from_slice(&hdr[24..40]);
            total_len = u16::from_be_bytes([hdr[4], hdr[5]]).saturating_add(40);
            ip.wrapping_add(40)
        }
        _ => return Ok(()),
    };
    let th: [u8; 14] = kread(tcp, 0)?;
    seg.sport = u16::from_be_bytes([th[0], th[1]]);
    seg.dport = u16::from_be_bytes([th[2], th[3]]);
    seg.flags = th[13];
    let ifindex: u32 = kread(dev, o.dev_ifindex)?;
    // Only SYNs count as drops (observe() ignores SYN-ACKs when a reason is given).
    observe(&seg, Observation::Drop, Observation::Drop, ifindex, reason.max(1), |buf| {
        // SAFETY: a checked kernel read; bytes past the packet are cut by total_len.
        match unsafe { bpf_probe_read_kernel_buf(ip, buf) } {
            Ok(()) => total_len.min(EVENT_HEADER_BYTES as u16),
            Err(_) => 0,
        }
    });
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
