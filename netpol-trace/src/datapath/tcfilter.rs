//! Legacy tc filters (clsact + cls_bpf) from rtnetlink: which BPF programs are attached to an
//! interface's ingress or egress hook, so the tracer can check that its own are still there.
//! (tcx links are listed with `SchedClassifier::query_tcx` instead.)

use std::io;

use aya::programs::TcAttachType;

use super::links::{Socket, align4, attrs, cstr};

const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const TCMSG_LEN: usize = 20;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)`.
const PARENT_INGRESS: u32 = 0xffff_fff2;
/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)`.
const PARENT_EGRESS: u32 = 0xffff_fff3;

/// A cls_bpf filter on a clsact hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfFilter {
    /// The filter's name (aya names it after the program).
    pub name: String,
    /// The attached program's id.
    pub prog_id: u32,
}

/// The cls_bpf filters on `ifindex`'s clsact hook for `side` (calling thread's namespace).
/// An interface without a clsact qdisc has none.
pub fn bpf_filters(ifindex: u32, side: TcAttachType) -> io::Result<Vec<BpfFilter>> {
    let parent = match side {
        TcAttachType::Egress => PARENT_EGRESS,
        _ => PARENT_INGRESS,
    };
    let sock = Socket::open(0, false)?;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + TCMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + TCMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETTFILTER.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(&[0u8; 4]); // family, padding
    req.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // handle
    req.extend_from_slice(&parent.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // info
    sock.send(&req)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv(&mut buf)?;
        let mut data = &buf[..n];
        while data.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
            let ty = u16::from_ne_bytes([data[4], data[5]]);
            if len < NLMSG_HDRLEN || len > data.len() {
                break;
            }
            let body = &data[NLMSG_HDRLEN..len];
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = body
                        .get(0..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                    // No clsact qdisc: no filters.
                    if errno == -libc::EINVAL || errno == -libc::ENOENT {
                        return Ok(out);
                    }
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                }
                RTM_NEWTFILTER => out.extend(parse_filter(body)),
                _ => {}
            }
            data = &data[align4(len).min(data.len())..];
        }
    }
}

fn parse_filter(body: &[u8]) -> Option<BpfFilter> {
    let mut kind = None;
    let mut filter = BpfFilter { name: String::new(), prog_id: 0 };
    for (ty, payload) in attrs(body.get(TCMSG_LEN..)?) {
        match ty {
            TCA_KIND => kind = Some(cstr(payload)),
            TCA_OPTIONS => {
                for (t, p) in attrs(payload) {
                    match t {
                        TCA_BPF_NAME => filter.name = cstr(p),
                        TCA_BPF_ID => {
                            filter.prog_id = u32::from_ne_bytes(p.get(0..4)?.try_into().ok()?);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (kind.as_deref() == Some("bpf") && filter.prog_id != 0).then_some(filter)
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

    #[test]
    fn parses_a_cls_bpf_filter_and_skips_other_kinds() {
        let mut body = vec![0u8; TCMSG_LEN];
        body.extend(attr(TCA_KIND, b"bpf\0"));
        let mut opts = attr(TCA_BPF_NAME, b"tc_from_pod\0");
        opts.extend(attr(TCA_BPF_ID, &42u32.to_ne_bytes()));
        body.extend(attr(TCA_OPTIONS | 0x8000, &opts));
        let f = parse_filter(&body).unwrap();
        assert_eq!((f.name.as_str(), f.prog_id), ("tc_from_pod", 42));

        let mut other = vec![0u8; TCMSG_LEN];
        other.extend(attr(TCA_KIND, b"u32\0"));
        assert!(parse_filter(&other).is_none());
        assert!(parse_filter(&body[..10]).is_none());
    }
}
