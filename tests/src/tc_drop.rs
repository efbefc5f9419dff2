//! A packet dropper the way an eBPF dataplane drops: a two-instruction tc program
//! (`r0 = TC_ACT_SHOT; exit`) attached as a tcx egress link. Test-only: the project's own
//! programs never drop anything. Closing the link detaches it.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_EGRESS: u32 = 47;
const TC_ACT_SHOT: u8 = 2;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<OwnedFd> {
    // SAFETY: attr is a zero-initialised bpf_attr of the size passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Drops every packet leaving `ifindex` (of the calling thread's namespace) until dropped.
pub struct TcxDropper {
    _link: OwnedFd,
    _prog: OwnedFd,
}

impl TcxDropper {
    /// Loads and attaches the dropper.
    pub fn attach_egress(ifindex: u32) -> io::Result<Self> {
        let insns: [u8; 16] = [0xb7, 0, 0, 0, TC_ACT_SHOT, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        let license = b"GPL\0";
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        let prog = bpf(BPF_PROG_LOAD, &mut attr)?;
        let mut attr = [0u8; 128];
        use std::os::fd::AsRawFd;
        attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        attr[8..12].copy_from_slice(&BPF_TCX_EGRESS.to_ne_bytes());
        let link = bpf(BPF_LINK_CREATE, &mut attr)?;
        Ok(Self { _link: link, _prog: prog })
    }
}
