//! Types shared by the netpol-trace kernel programs and user space.
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into maps and the
//! ring buffer, the user side reads the same bytes back. Every enum-like value keeps `0` for
//! "unknown" because zeroed eBPF memory must never read as a meaningful value.
#![no_std]

/// Per-CPU hash map of [`FlowKey`] → [`FlowStats`]: per-flow aggregation in the kernel.
/// Not an LRU map: user space prunes consumed and idle flows itself and counts what it
/// evicts, and a full map is counted ([`COUNTER_FLOWS_FULL`]) instead of evicting silently.
pub const MAP_FLOWS: &str = "FLOWS";
/// Hash map of [`FlowKey`] → 1: the flows changed since user space last drained it. A flow
/// is (re-)entered on its first packet and on any packet that follows a quiet gap longer
/// than [`Config::notify_quiet_ns`]; user space re-reads a flow while it keeps changing.
pub const MAP_CHANGED: &str = "CHANGED";
/// Hash map of watched TCP ports (host byte order) → 1.
pub const MAP_PORTS: &str = "PORTS";
/// Ring buffer of [`FlowEvent`]s, one per flow the first time it is seen.
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU array of `u64` counters indexed by the `COUNTER_*` constants.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// The load-time global holding [`Config`].
pub const GLOBAL_CONFIG: &str = "CONFIG";

/// tc program for the host side of a pod veth, ingress (packets leaving the pod).
pub const PROG_TC_FROM_POD: &str = "tc_from_pod";
/// tc program for the host side of a pod veth, egress (packets entering the pod).
pub const PROG_TC_TO_POD: &str = "tc_to_pod";
/// BTF-enabled raw tracepoint on `kfree_skb` (drop reason as an argument).
pub const PROG_KFREE_SKB: &str = "kfree_skb";

/// Capacity of [`MAP_FLOWS`]; LRU eviction keeps a storm of distinct flows bounded.
pub const FLOWS_MAX_ENTRIES: u32 = 16_384;
/// Capacity of [`MAP_PORTS`].
pub const PORTS_MAX_ENTRIES: u32 = 1_024;
/// Size of [`MAP_EVENTS`] in bytes (a power of two, multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Counter: a new-flow notice did not fit in the ring buffer.
pub const COUNTER_EVENTS_LOST: u32 = 0;
/// Counter: a flow could not be inserted into [`MAP_FLOWS`].
pub const COUNTER_FLOWS_FULL: u32 = 1;
/// Counter: packets the programs looked at (watched port, SYN or SYN-ACK).
pub const COUNTER_MATCHED: u32 = 2;
/// Counter: flows inserted into [`MAP_FLOWS`] (entries = inserts − deletes by user space).
pub const COUNTER_FLOW_INSERTS: u32 = 3;
/// Counter: a changed-flow notice did not fit in [`MAP_CHANGED`] (user space then rescans).
pub const COUNTER_CHANGED_LOST: u32 = 4;
/// Number of counters.
pub const COUNTERS_LEN: u32 = 8;

/// Address family of a [`FlowKey`]: unknown.
pub const FAMILY_UNKNOWN: u8 = 0;
/// Address family of a [`FlowKey`]: IPv4 (address in the first four bytes).
pub const FAMILY_IPV4: u8 = 4;
/// Address family of a [`FlowKey`]: IPv6.
pub const FAMILY_IPV6: u8 = 6;

/// What a flow record observed.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Observation {
    /// Zeroed memory.
    Unknown = 0,
    /// A SYN left the pod (tc ingress on the host-side veth).
    SynFromPod = 1,
    /// A SYN entered the pod (tc egress on the host-side veth).
    SynToPod = 2,
    /// A SYN-ACK left the pod (the destination answered).
    SynAckFromPod = 3,
    /// A SYN-ACK entered the pod (the source got its answer).
    SynAckToPod = 4,
    /// The kernel freed a SYN with a drop reason.
    Drop = 5,
}

impl Observation {
    /// Decodes the raw byte stored in a [`FlowKey`].
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Self::SynFromPod,
            2 => Self::SynToPod,
            3 => Self::SynAckFromPod,
            4 => Self::SynAckToPod,
            5 => Self::Drop,
            _ => Self::Unknown,
        }
    }
}

/// One aggregated flow: the connection's direction (client → server) without the client's
/// ephemeral port, so retries and new connections of the same client add to one record.
///
/// For SYN-ACK observations the addresses are still client → server (the reply is folded
/// onto the flow it answers), which lets user space join the two without reordering.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address (IPv4 in the first 4 bytes).
    pub saddr: [u8; 16],
    /// Server address.
    pub daddr: [u8; 16],
    /// Server port, host byte order.
    pub dport: u16,
    /// [`Observation`] as a raw byte.
    pub observation: u8,
    /// `FAMILY_*`.
    pub family: u8,
    /// Interface where it was seen (the device of the freed skb for drops).
    pub ifindex: u32,
}

impl FlowKey {
    /// An all-zero key.
    pub const fn zeroed() -> Self {
        Self { saddr: [0; 16], daddr: [0; 16], dport: 0, observation: 0, family: 0, ifindex: 0 }
    }
}

/// Aggregated counters of a [`FlowKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStats {
    /// `bpf_ktime_get_ns` of the first packet.
    pub first_ns: u64,
    /// `bpf_ktime_get_ns` of the latest packet.
    pub last_ns: u64,
    /// Packets.
    pub count: u64,
    /// Kernel drop reason (`enum skb_drop_reason`), 0 when not a drop.
    pub reason: u32,
    /// Latest client port seen, host byte order.
    pub sport: u16,
    /// Padding.
    pub _pad: u16,
}

/// Bytes of the packet, from its IP header on, carried by a [`FlowEvent`] (enough for an
/// IPv6 header and a TCP header with options).
pub const EVENT_HEADER_BYTES: usize = 80;

/// Ring-buffer notice: a flow was seen for the first time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// The new flow.
    pub key: FlowKey,
    /// `bpf_ktime_get_ns` of the packet.
    pub ts_ns: u64,
    /// Kernel drop reason, 0 when not a drop.
    pub reason: u32,
    /// Client port, host byte order.
    pub sport: u16,
    /// Valid bytes in `header`.
    pub header_len: u16,
    /// The packet from its IP header on (evidence for pcap output).
    pub header: [u8; EVENT_HEADER_BYTES],
}

/// Byte offsets of kernel struct members, read from the running kernel's BTF at load time
/// (aya-ebpf has no CO-RE field relocations).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `sk_buff.dev`.
    pub skb_dev: u32,
    /// `sk_buff.head`.
    pub skb_head: u32,
    /// `sk_buff.network_header` (u16 offset from head).
    pub skb_network_header: u32,
    /// `sk_buff.protocol` (__be16).
    pub skb_protocol: u32,
    /// `net_device.ifindex`.
    pub dev_ifindex: u32,
    /// `net_device.nd_net` + `possible_net_t.net`.
    pub dev_net: u32,
    /// `net.ns` + `ns_common.inum`.
    pub net_inum: u32,
    /// Padding.
    pub _pad: u32,
}

/// Load-time configuration of the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Inode number of the network namespace whose drops count; 0 disables the filter.
    pub netns_inum: u32,
    /// Non-zero: every TCP port is watched and [`MAP_PORTS`] is ignored.
    pub all_ports: u32,
    /// Non-zero when the drop program may run (offsets are valid). Zero in the degraded
    /// tc-only mode (a kernel without the drop-reason enum or without `tp_btf/kfree_skb`).
    pub drops_enabled: u32,
    /// Padding.
    pub _pad: u32,
    /// Struct member offsets.
    pub offsets: KernelOffsets,
    /// A packet of a flow whose previous packet (on the same CPU) is older than this enters
    /// the flow into [`MAP_CHANGED`] again; user space keeps re-reading a flow until it has
    /// been quiet this long, so no update is missed.
    pub notify_quiet_ns: u64,
}

impl Config {
    /// An all-zero configuration (nothing watched, no filter).
    pub const fn zeroed() -> Self {
        Self {
            netns_inum: 0,
            all_ports: 0,
            drops_enabled: 0,
            _pad: 0,
            offsets: KernelOffsets {
                skb_dev: 0,
                skb_head: 0,
                skb_network_header: 0,
                skb_protocol: 0,
                dev_ifindex: 0,
                dev_net: 0,
                net_inum: 0,
                _pad: 0,
            },
            notify_quiet_ns: 0,
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all types are repr(C), Copy, and have no padding that is not an explicit field.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::Config {}
}
