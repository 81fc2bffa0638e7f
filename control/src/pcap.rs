//! Reading and writing capture files for `rampart replay` (classic pcap and pcapng in, classic
//! pcap out). Frames whose link type is raw IP are given a synthetic Ethernet header on the way
//! in, so the pipeline always sees Ethernet, and lose it again on the way out.

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Capture I/O errors, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: link type {linktype} is not supported (Ethernet, raw IPv4/IPv6 are)")]
    LinkType { path: PathBuf, linktype: u32 },
}

/// How frames of a capture map to Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Raw IP (link types 101, 228, 229): the version nibble tells the family.
    RawIp,
}

impl Link {
    fn from_datalink(path: &Path, dl: DataLink) -> Result<Link, PcapError> {
        match dl {
            DataLink::ETHERNET => Ok(Link::Ethernet),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Ok(Link::RawIp),
            other => Err(PcapError::LinkType {
                path: path.into(),
                linktype: u32::from(other),
            }),
        }
    }

    fn datalink(self) -> DataLink {
        match self {
            Link::Ethernet => DataLink::ETHERNET,
            Link::RawIp => DataLink::RAW,
        }
    }
}

/// The synthetic header given to raw-IP frames: locally administered MACs.
const SYNTH_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SYNTH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// One captured frame, as Ethernet.
#[derive(Clone, Debug)]
pub struct Frame {
    pub timestamp: Duration,
    /// pcapng interface id (0 for classic pcap).
    pub interface: u32,
    pub link: Link,
    pub data: Vec<u8>,
}

fn to_ethernet(link: Link, data: &[u8]) -> Vec<u8> {
    match link {
        Link::Ethernet => data.to_vec(),
        Link::RawIp => {
            let ethertype: u16 = if data.first().map(|b| b >> 4) == Some(6) {
                0x86dd
            } else {
                0x0800
            };
            let mut v = Vec::with_capacity(14 + data.len());
            v.extend_from_slice(&SYNTH_DST);
            v.extend_from_slice(&SYNTH_SRC);
            v.extend_from_slice(&ethertype.to_be_bytes());
            v.extend_from_slice(data);
            v
        }
    }
}

/// Reads every frame of a pcap or pcapng file.
pub fn read_frames(path: &Path) -> Result<Vec<Frame>, PcapError> {
    let io = |source| PcapError::Io {
        path: path.into(),
        source,
    };
    let fmt = |e: pcap_file::PcapError| PcapError::Format {
        path: path.into(),
        message: e.to_string(),
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(io)?;
    let file = BufReader::new(File::open(path).map_err(io)?);
    let mut frames = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let bytes = std::fs::read(path).map_err(io)?;
        read_pcapng(path, &bytes, &mut frames)?;
    } else {
        let mut r = PcapReader::new(file).map_err(fmt)?;
        let link = Link::from_datalink(path, r.header().datalink)?;
        while let Some(p) = r.next_packet() {
            let p = p.map_err(fmt)?;
            frames.push(Frame {
                timestamp: p.timestamp,
                interface: 0,
                link,
                data: to_ethernet(link, &p.data),
            });
        }
    }
    Ok(frames)
}

/// pcapng (draft-ietf-opsawg-pcapng) read block by block: section headers (either byte order),
/// interface descriptions (link type, timestamp resolution), enhanced and simple packets. Options
/// Rampart has no use for, and block types it does not know, are skipped rather than refused, so
/// captures from any writer (dpdk-dumpcap's included) replay.
fn read_pcapng(path: &Path, bytes: &[u8], frames: &mut Vec<Frame>) -> Result<(), PcapError> {
    let bad = |message: String| PcapError::Format {
        path: path.into(),
        message,
    };
    let mut little = true;
    // Per interface of the current section: link type (or the unsupported number) and ticks/s.
    let mut ifaces: Vec<(Result<Link, u32>, u64)> = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let word = |o: usize, little: bool| -> Option<u32> {
            let b: [u8; 4] = bytes.get(o..o + 4)?.try_into().ok()?;
            Some(if little {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            })
        };
        let block_type =
            word(at, true).ok_or_else(|| bad(format!("truncated block at byte {at}")))?;
        if block_type == 0x0a0d_0d0a {
            match bytes.get(at + 8..at + 12) {
                Some([0x4d, 0x3c, 0x2b, 0x1a]) => little = true,
                Some([0x1a, 0x2b, 0x3c, 0x4d]) => little = false,
                _ => return Err(bad(format!("bad byte-order magic at byte {at}"))),
            }
            ifaces.clear();
        }
        let block_type = word(at, little).unwrap_or(0);
        let len = word(at + 4, little)
            .ok_or_else(|| bad(format!("truncated block at byte {at}")))?
            as usize;
        if len < 12 || !len.is_multiple_of(4) || at + len > bytes.len() {
            return Err(bad(format!("block at byte {at} has a bad length {len}")));
        }
        let body = &bytes[at + 8..at + len - 4];
        let u32_at = |o: usize| -> Option<u32> {
            let b: [u8; 4] = body.get(o..o + 4)?.try_into().ok()?;
            Some(if little {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            })
        };
        let u16_at = |o: usize| -> Option<u16> {
            let b: [u8; 2] = body.get(o..o + 2)?.try_into().ok()?;
            Some(if little {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            })
        };
        match block_type {
            1 => {
                let lt = u32::from(
                    u16_at(0).ok_or_else(|| bad(format!("short interface block at byte {at}")))?,
                );
                let link = Link::from_datalink(path, DataLink::from(lt)).map_err(|_| lt);
                // if_tsresol (option 9): 10^-n or 2^-n seconds per tick; default microseconds.
                let mut hz = 1_000_000u64;
                let mut o = 8;
                while let (Some(code), Some(olen)) = (u16_at(o), u16_at(o + 2)) {
                    if code == 0 {
                        break;
                    }
                    if let (9, Some(&r)) = (code, body.get(o + 4)) {
                        let n = u32::from(r & 0x7f);
                        hz = if r & 0x80 == 0 {
                            10u64.checked_pow(n)
                        } else {
                            2u64.checked_pow(n)
                        }
                        .unwrap_or(1_000_000);
                    }
                    o += 4 + usize::from(olen).div_ceil(4) * 4;
                }
                ifaces.push((link, hz.max(1)));
            }
            6 => {
                let (iface, hi, lo, cap) = match (u32_at(0), u32_at(4), u32_at(8), u32_at(12)) {
                    (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d as usize),
                    _ => return Err(bad(format!("short packet block at byte {at}"))),
                };
                let data = body
                    .get(20..20 + cap)
                    .ok_or_else(|| bad(format!("packet block at byte {at} overruns its block")))?;
                let (link, hz) = match ifaces.get(iface as usize) {
                    Some((Ok(l), hz)) => (*l, *hz),
                    Some((Err(lt), _)) => {
                        return Err(PcapError::LinkType {
                            path: path.into(),
                            linktype: *lt,
                        })
                    }
                    None => return Err(bad(format!("packet on undeclared interface {iface}"))),
                };
                let ticks = (u64::from(hi) << 32) | u64::from(lo);
                let timestamp = Duration::from_secs(ticks / hz)
                    + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz);
                frames.push(Frame {
                    timestamp,
                    interface: iface,
                    link,
                    data: to_ethernet(link, data),
                });
            }
            3 => {
                let orig = u32_at(0)
                    .ok_or_else(|| bad(format!("short simple packet at byte {at}")))?
                    as usize;
                let data = &body[4..(4 + orig).min(body.len())];
                let link = match ifaces.first() {
                    Some((Ok(l), _)) => *l,
                    _ => return Err(bad("simple packet without a usable interface".into())),
                };
                frames.push(Frame {
                    timestamp: Duration::ZERO,
                    interface: 0,
                    link,
                    data: to_ethernet(link, data),
                });
            }
            _ => {}
        }
        at += len;
    }
    Ok(())
}

/// Writes frames to a classic pcap file.
pub struct FrameWriter {
    path: PathBuf,
    link: Link,
    w: PcapWriter<BufWriter<File>>,
}

impl FrameWriter {
    /// Creates `path`, writing frames of `link` (raw-IP frames lose their synthetic header).
    pub fn create(path: &Path, link: Link) -> Result<FrameWriter, PcapError> {
        let io = |source| PcapError::Io {
            path: path.into(),
            source,
        };
        let f = BufWriter::new(File::create(path).map_err(io)?);
        let header = PcapHeader {
            datalink: link.datalink(),
            snaplen: 65535,
            ..Default::default()
        };
        let w = PcapWriter::with_header(f, header).map_err(|e| PcapError::Format {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(FrameWriter {
            path: path.into(),
            link,
            w,
        })
    }

    /// Appends one Ethernet frame.
    pub fn write(&mut self, timestamp: Duration, frame: &[u8]) -> Result<(), PcapError> {
        let data = match self.link {
            Link::Ethernet => frame,
            Link::RawIp => frame.get(14..).unwrap_or(&[]),
        };
        let pkt = PcapPacket {
            timestamp,
            orig_len: data.len() as u32,
            data: Cow::Borrowed(data),
        };
        self.w
            .write_packet(&pkt)
            .map(|_| ())
            .map_err(|e| PcapError::Format {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// Flushes to disk.
    pub fn finish(self) -> Result<(), PcapError> {
        use std::io::Write;
        let path = self.path;
        self.w
            .into_writer()
            .flush()
            .map_err(|source| PcapError::Io { path, source })
    }
}

/// Writes Ethernet frames to a new classic pcap (tests, generators, demos).
pub fn write_frames<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), PcapError> {
    let mut w = FrameWriter::create(path, Link::Ethernet)?;
    for (i, f) in frames.into_iter().enumerate() {
        w.write(Duration::from_micros(i as u64), f)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pcapng file in either byte order: one interface with nanosecond timestamps and an
    /// unknown option, an enhanced packet with a custom option, a simple packet, an unknown block.
    fn pcapng(little: bool, frame: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let w16 = |v: u16| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let block = |t: u32, body: Vec<u8>| -> Vec<u8> {
            let len = 12 + body.len() as u32;
            [w32(t).to_vec(), w32(len).to_vec(), body, w32(len).to_vec()].concat()
        };
        let pad = |mut v: Vec<u8>| {
            while !v.len().is_multiple_of(4) {
                v.push(0);
            }
            v
        };
        let shb = block(
            0x0a0d0d0a,
            [
                w32(0x1a2b3c4d).to_vec(),
                w16(1).to_vec(),
                w16(0).to_vec(),
                vec![0xff; 8],
            ]
            .concat(),
        );
        let idb = block(
            1,
            [
                w16(1).to_vec(),
                w16(0).to_vec(),
                w32(65535).to_vec(),
                w16(9).to_vec(),
                w16(1).to_vec(),
                vec![9, 0, 0, 0],
                w16(0x8abc).to_vec(),
                w16(3).to_vec(),
                vec![1, 2, 3, 0],
                w16(0).to_vec(),
                w16(0).to_vec(),
            ]
            .concat(),
        );
        let ns: u64 = 1_500_000_000;
        let epb = block(
            6,
            [
                w32(0).to_vec(),
                w32((ns >> 32) as u32).to_vec(),
                w32(ns as u32).to_vec(),
                w32(frame.len() as u32).to_vec(),
                w32(frame.len() as u32).to_vec(),
                pad(frame.to_vec()),
                w16(0x8001).to_vec(),
                w16(4).to_vec(),
                vec![7; 4],
                w16(0).to_vec(),
                w16(0).to_vec(),
            ]
            .concat(),
        );
        let spb = block(
            3,
            [w32(frame.len() as u32).to_vec(), pad(frame.to_vec())].concat(),
        );
        let unknown = block(0x0bad, vec![0; 8]);
        [shb, idb, epb, unknown, spb].concat()
    }

    #[test]
    fn pcapng_with_foreign_options_in_both_byte_orders() {
        let frame: Vec<u8> = (0..61u8).collect();
        for little in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.pcapng");
            std::fs::write(&p, pcapng(little, &frame)).unwrap();
            let frames = read_frames(&p).unwrap();
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[0].data, frame);
            assert_eq!(
                frames[0].timestamp,
                Duration::from_millis(1500),
                "nanosecond resolution honoured"
            );
            assert_eq!(frames[1].data, frame);
        }
    }

    #[test]
    fn broken_pcapng_is_an_error_not_a_panic() {
        let frame: Vec<u8> = (0..61u8).collect();
        let good = pcapng(true, &frame);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pcapng");
        for cut in (1..good.len()).step_by(3) {
            std::fs::write(&p, &good[..cut]).unwrap();
            let _ = read_frames(&p);
        }
        let mut bad = good.clone();
        bad[4] = 0xff; // SHB length
        std::fs::write(&p, &bad).unwrap();
        assert!(read_frames(&p).is_err());
    }
}
