//! Evidence for postmortems: the captured SYN headers as a classic pcap file
//! (nanosecond timestamps, LINKTYPE_RAW: packets start at the IP header), which Wireshark
//! and tshark open as is.

use std::io::{self, Write};

use chrono::{DateTime, Utc};

/// pcap magic for nanosecond-resolution timestamps.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_RAW: raw IPv4/IPv6 packets.
const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 65_535;

/// Writes packets to a pcap stream.
pub struct PcapWriter<W: Write> {
    out: W,
    packets: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&MAGIC_NANOS.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&SNAPLEN.to_le_bytes())?;
        out.write_all(&LINKTYPE_RAW.to_le_bytes())?;
        Ok(Self { out, packets: 0 })
    }

    /// Appends one packet (from its IP header on). `orig_len` is the length on the wire
    /// when known (at least the captured length).
    pub fn write(&mut self, time: DateTime<Utc>, data: &[u8], orig_len: usize) -> io::Result<()> {
        let secs = time.timestamp().max(0) as u32;
        let nanos = time.timestamp_subsec_nanos();
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&nanos.to_le_bytes())?;
        self.out.write_all(&(data.len() as u32).to_le_bytes())?;
        self.out.write_all(&(orig_len.max(data.len()) as u32).to_le_bytes())?;
        self.out.write_all(data)?;
        self.packets += 1;
        self.out.flush()
    }

    /// Packets written.
    pub fn packets(&self) -> u64 {
        self.packets
    }
}

/// The length on the wire of an IP packet, from its header.
pub fn ip_total_len(header: &[u8]) -> Option<usize> {
    match header.first()? >> 4 {
        4 => Some(u16::from_be_bytes([*header.get(2)?, *header.get(3)?]) as usize),
        6 => Some(u16::from_be_bytes([*header.get(4)?, *header.get(5)?]) as usize + 40),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_header_and_records() {
        let mut buf = Vec::new();
        let mut w = PcapWriter::new(&mut buf).unwrap();
        let t = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let pkt = [0x45u8, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        w.write(t, &pkt, ip_total_len(&pkt).unwrap()).unwrap();
        assert_eq!(w.packets(), 1);
        assert_eq!(buf.len(), 24 + 16 + pkt.len());
        assert_eq!(&buf[0..4], &MAGIC_NANOS.to_le_bytes());
        assert_eq!(&buf[20..24], &LINKTYPE_RAW.to_le_bytes());
        assert_eq!(u32::from_le_bytes(buf[24..28].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(buf[28..32].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(buf[36..40].try_into().unwrap()), 60);
        assert_eq!(ip_total_len(&[0x60, 0, 0, 0, 0, 20]), Some(60));
        assert_eq!(ip_total_len(&[0x10]), None);
    }
}
