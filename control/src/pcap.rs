//! Reading and writing capture files for `rampart replay` (classic pcap and pcapng in, classic
//! pcap out). Frames whose link type is raw IP are given a synthetic Ethernet header on the way
//! in, so the pipeline always sees Ethernet, and lose it again on the way out.

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
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
        let mut r = PcapNgReader::new(file).map_err(fmt)?;
        let mut links: Vec<Result<Link, u32>> = Vec::new();
        while let Some(block) = r.next_block() {
            match block.map_err(fmt)? {
                Block::InterfaceDescription(idb) => links.push(
                    Link::from_datalink(path, idb.linktype).map_err(|_| u32::from(idb.linktype)),
                ),
                Block::EnhancedPacket(epb) => {
                    let link = match links.get(epb.interface_id as usize) {
                        Some(Ok(l)) => *l,
                        Some(Err(lt)) => {
                            return Err(PcapError::LinkType {
                                path: path.into(),
                                linktype: *lt,
                            })
                        }
                        None => {
                            return Err(PcapError::Format {
                                path: path.into(),
                                message: format!(
                                    "packet on undeclared interface {}",
                                    epb.interface_id
                                ),
                            })
                        }
                    };
                    frames.push(Frame {
                        timestamp: epb.timestamp,
                        interface: epb.interface_id,
                        link,
                        data: to_ethernet(link, &epb.data),
                    });
                }
                Block::SimplePacket(spb) => {
                    let link = match links.first() {
                        Some(Ok(l)) => *l,
                        _ => {
                            return Err(PcapError::Format {
                                path: path.into(),
                                message: "simple packet without a usable interface".into(),
                            })
                        }
                    };
                    frames.push(Frame {
                        timestamp: Duration::ZERO,
                        interface: 0,
                        link,
                        data: to_ethernet(link, &spb.data),
                    });
                }
                _ => {}
            }
        }
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
