//! Network interfaces of the current network namespace, from rtnetlink: a dump of the links
//! and a subscription to link changes, so the tracer follows pods as they come and go.

use std::{io, mem::size_of, os::fd::AsRawFd};

const NETLINK_ROUTE: i32 = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const RTMGRP_LINK: u32 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (per network namespace).
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Link kind from IFLA_INFO_KIND (`veth`, `bridge`, ...), if any.
    pub kind: Option<String>,
}

impl Link {
    /// Whether this looks like the host side of a pod interface.
    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }
}

/// A netlink route socket.
pub(crate) struct Socket(std::os::fd::OwnedFd);

impl Socket {
    pub(crate) fn open(groups: u32, nonblocking: bool) -> io::Result<Self> {
        let mut flags = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        if nonblocking {
            flags |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, flags, NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let sock = Self(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
        // SAFETY: zeroed sockaddr_nl is valid; we set family and groups.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = groups;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                sock.0.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

/// Lists the links of the calling thread's network namespace.
pub fn list() -> io::Result<Vec<Link>> {
    let sock = Socket::open(0, false)?;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(&[0u8; IFINFOMSG_LEN]); // ifinfomsg: AF_UNSPEC, all links
    sock.send(&req)?;
    let mut links = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv(&mut buf)?;
        match parse(&buf[..n], &mut links) {
            Parsed::Done => return Ok(links),
            Parsed::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
            Parsed::More => {}
        }
    }
}

enum Parsed {
    More,
    Done,
    Error(i32),
}

/// Parses one datagram of netlink messages, appending RTM_NEWLINK links.
fn parse(mut data: &[u8], links: &mut Vec<Link>) -> Parsed {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let body = &data[NLMSG_HDRLEN..len];
        match ty {
            NLMSG_DONE => return Parsed::Done,
            NLMSG_ERROR => {
                let errno = body.get(0..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                if errno != 0 {
                    return Parsed::Error(-errno);
                }
            }
            RTM_NEWLINK => {
                if let Some(link) = parse_link(body) {
                    links.push(link);
                }
            }
            _ => {}
        }
        data = &data[align4(len).min(data.len())..];
    }
    Parsed::More
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn parse_link(body: &[u8]) -> Option<Link> {
    let ifindex = i32::from_ne_bytes(body.get(4..8)?.try_into().ok()?) as u32;
    let mut name = None;
    let mut kind = None;
    for (ty, payload) in attrs(body.get(IFINFOMSG_LEN..)?) {
        match ty {
            IFLA_IFNAME => name = Some(cstr(payload)),
            IFLA_LINKINFO => {
                kind = attrs(payload).find(|(t, _)| *t == IFLA_INFO_KIND).map(|(_, p)| cstr(p));
            }
            _ => {}
        }
    }
    Some(Link { ifindex, name: name?, kind })
}

pub(crate) fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Iterates over rtattrs: (type without flag bits, payload).
pub(crate) fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let payload = &data[4..len];
        data = &data[align4(len).min(data.len())..];
        Some((ty, payload))
    })
}

/// A subscription to link changes in the calling thread's network namespace.
pub struct LinkWatcher {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkWatcher {
    /// Subscribes (non-blocking).
    pub fn new() -> io::Result<Self> {
        Ok(Self { sock: Socket::open(RTMGRP_LINK, true)?, buf: vec![0u8; 64 * 1024] })
    }

    /// Drains pending notifications; true when any link was added, changed or removed.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        loop {
            match self.sock.recv(&mut self.buf) {
                Ok(n) if n >= NLMSG_HDRLEN => {
                    let ty = u16::from_ne_bytes([self.buf[4], self.buf[5]]);
                    changed |= ty == RTM_NEWLINK || ty == RTM_DELLINK;
                }
                Ok(_) => {}
                // ENOBUFS: we missed notifications; a re-list catches up.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(_) => return changed,
            }
        }
    }
}

/// Matches `name` against a shell-style glob (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    fn newlink(ifindex: i32, name: &str, kind: Option<&str>) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        body.extend(attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        if let Some(kind) = kind {
            body.extend(attr(IFLA_LINKINFO | 0x8000, &attr(IFLA_INFO_KIND, kind.as_bytes())));
        }
        let mut msg = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend(body);
        msg
    }

    #[test]
    fn parses_link_dumps() {
        let mut data = newlink(1, "lo", None);
        data.extend(newlink(7, "cali0123456789a", Some("veth")));
        let mut links = vec![];
        assert!(matches!(parse(&data, &mut links), Parsed::More));
        assert_eq!(links.len(), 2);
        assert_eq!(links[1].name, "cali0123456789a");
        assert_eq!(links[1].ifindex, 7);
        assert!(links[1].is_veth() && !links[0].is_veth());
        let mut done = ((NLMSG_HDRLEN + 4) as u32).to_ne_bytes().to_vec();
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0; 14]);
        assert!(matches!(parse(&done, &mut links), Parsed::Done));
    }

    #[test]
    fn truncated_messages_do_not_panic() {
        let data = newlink(3, "eth0", Some("veth"));
        for cut in 0..data.len() {
            let mut links = vec![];
            let _ = parse(&data[..cut], &mut links);
        }
    }

    #[test]
    fn lists_the_loopback_of_this_namespace() {
        let links = list().unwrap();
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("cali*", "cali12ab"));
        assert!(glob_match("*", ""));
        assert!(glob_match("c?li*x", "calibrx"));
        assert!(!glob_match("cali*", "lxc123"));
        assert!(!glob_match("cali?", "cali"));
        assert!(glob_match("veth*a*b", "vethxxaxxb"));
    }
}
