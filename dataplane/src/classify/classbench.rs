//! ClassBench filter sets and traces, and a generator of ClassBench-like sets for tests and
//! benchmarks.
//!
//! A filter line (WUSTL / `db_generator` format, fields separated by tabs or spaces):
//! `@src/len dst/len sport_lo : sport_hi dport_lo : dport_hi proto/mask [flags/mask]`, e.g.
//! `@192.151.11.17/32 15.0.0.0/8 0 : 65535 1521 : 1521 0x06/0xFF 0x0000/0x0000` (tab-separated).
//! A protocol mask of 0 means any protocol, 0xFF exactly that one. A trace line is
//! `src dst sport dport proto [flags] [expected]` in decimal, where `expected` is the 1-based
//! index of the first matching filter (0 = none).
//!
//! Invariants: filters become IPv4 [`FlatRule`]s with [`Action::Accept`] and `origin` = the 0-based
//! line index; host bits of a prefix are ignored (as ClassBench does). Trace packets are IPv4,
//! port 0 in and out, conntrack state NEW, no TCP flags, not a later fragment.

use super::{ct, Action, FlatRule, FragMatch, PacketMeta};
use crate::wire::{Family, FlowKey, IpAddr128};
use std::net::Ipv4Addr;

/// What is wrong with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassBenchError {
    #[error("line {line}: a filter must start with '@'")]
    MissingAt { line: usize },
    #[error("line {line}: bad prefix (want a.b.c.d/len)")]
    BadPrefix { line: usize },
    #[error("line {line}: bad port range (want lo : hi)")]
    BadPortRange { line: usize },
    #[error("line {line}: bad value/mask field")]
    BadValueMask { line: usize },
    #[error("line {line}: protocol mask must be 0x00 or a prefix mask")]
    UnsupportedProtoMask { line: usize },
    #[error("line {line}: TCP flag mask wider than 8 bits")]
    UnsupportedFlagMask { line: usize },
    #[error("line {line}: a trace line needs at least five numbers")]
    ShortTraceLine { line: usize },
    #[error("line {line}: bad number in a trace line")]
    BadTraceNumber { line: usize },
}

/// Parses a filter file. Blank lines are skipped (they still count for `origin`).
pub fn parse_rules(text: &str) -> Result<Vec<FlatRule>, ClassBenchError> {
    let mut rules = Vec::new();
    for (line, s) in text.lines().enumerate() {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        rules.push(parse_rule(s, line)?);
    }
    Ok(rules)
}

fn parse_rule(s: &str, line: usize) -> Result<FlatRule, ClassBenchError> {
    let s = s
        .strip_prefix('@')
        .ok_or(ClassBenchError::MissingAt { line })?;
    // Ports may be written `lo : hi` or `lo:hi`; spacing the colons out makes both one shape.
    let spaced = s.replace(':', " : ");
    let t: Vec<&str> = spaced.split_whitespace().collect();
    if t.len() < 9 {
        return Err(ClassBenchError::BadPortRange { line });
    }
    let src = prefix(t[0]).ok_or(ClassBenchError::BadPrefix { line })?;
    let dst = prefix(t[1]).ok_or(ClassBenchError::BadPrefix { line })?;
    let ports = |lo: &str, colon: &str, hi: &str| -> Result<(u16, u16), ClassBenchError> {
        let bad = ClassBenchError::BadPortRange { line };
        let (lo, hi) = (lo.parse::<u16>(), hi.parse::<u16>());
        match (lo, colon, hi) {
            (Ok(lo), ":", Ok(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err(bad),
        }
    };
    let sport = ports(t[2], t[3], t[4])?;
    let dport = ports(t[5], t[6], t[7])?;
    let (pv, pm) = value_mask(t[8]).ok_or(ClassBenchError::BadValueMask { line })?;
    if pm > 0xff || pv > 0xff {
        return Err(ClassBenchError::BadValueMask { line });
    }
    let pm = pm as u8;
    if pm.leading_ones() + pm.trailing_zeros() != 8 {
        return Err(ClassBenchError::UnsupportedProtoMask { line });
    }
    let proto = (pv as u8 & pm, pv as u8 | !pm);
    let tcp_flags = match t.get(9) {
        None => None,
        Some(f) => match value_mask(f).ok_or(ClassBenchError::BadValueMask { line })? {
            (_, 0) => None,
            (v, m) if m <= 0xff => Some((m as u8, (v & m) as u8)),
            _ => return Err(ClassBenchError::UnsupportedFlagMask { line }),
        },
    };
    let mut r = FlatRule::any(Family::V4, Action::Accept, line as u32);
    r.src = src;
    r.dst = dst;
    r.sport = sport;
    r.dport = dport;
    r.proto = proto;
    r.tcp_flags = tcp_flags;
    Ok(r)
}

/// `a.b.c.d/len` as an inclusive v4-mapped range.
fn prefix(s: &str) -> Option<(IpAddr128, IpAddr128)> {
    let (a, len) = s.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    let lo = u32::from(a) & mask;
    Some((
        IpAddr128::from_v4(Ipv4Addr::from(lo)),
        IpAddr128::from_v4(Ipv4Addr::from(lo | !mask)),
    ))
}

/// `0x06/0xFF` (hex) as `(value, mask)`.
fn value_mask(s: &str) -> Option<(u32, u32)> {
    let (v, m) = s.split_once('/')?;
    let hex = |x: &str| {
        let x = x.strip_prefix("0x").or_else(|| x.strip_prefix("0X"))?;
        u32::from_str_radix(x, 16).ok()
    };
    Some((hex(v)?, hex(m)?))
}

/// One trace packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracePacket {
    pub meta: PacketMeta,
    /// The trace's answer: the 1-based index of the first matching filter, 0 for none; `None` when
    /// the line has no answer column.
    pub expected: Option<u32>,
}

/// Parses a trace file: five numbers, then optionally flags and the expected answer (with six
/// columns the sixth is the answer).
pub fn parse_trace(text: &str) -> Result<Vec<TracePacket>, ClassBenchError> {
    let mut out = Vec::new();
    for (line, s) in text.lines().enumerate() {
        let t: Vec<&str> = s.split_whitespace().collect();
        if t.is_empty() {
            continue;
        }
        if t.len() < 5 {
            return Err(ClassBenchError::ShortTraceLine { line });
        }
        let num = |i: usize| -> Result<u64, ClassBenchError> {
            t[i].parse::<u64>()
                .map_err(|_| ClassBenchError::BadTraceNumber { line })
        };
        let bad = ClassBenchError::BadTraceNumber { line };
        let src = u32::try_from(num(0)?).map_err(|_| bad)?;
        let dst = u32::try_from(num(1)?).map_err(|_| bad)?;
        let sport = u16::try_from(num(2)?).map_err(|_| bad)?;
        let dport = u16::try_from(num(3)?).map_err(|_| bad)?;
        let proto = u8::try_from(num(4)?).map_err(|_| bad)?;
        let expected = match t.len() {
            5 => None,
            6 => Some(u32::try_from(num(5)?).map_err(|_| bad)?),
            _ => Some(u32::try_from(num(6)?).map_err(|_| bad)?),
        };
        out.push(TracePacket {
            meta: packet(FlowKey::new_v4(
                Ipv4Addr::from(src),
                Ipv4Addr::from(dst),
                proto,
                sport,
                dport,
            )),
            expected,
        });
    }
    Ok(out)
}

fn packet(key: FlowKey) -> PacketMeta {
    PacketMeta {
        key,
        in_port: 0,
        out_port: 0,
        ct_state: ct::NEW,
        tcp_flags: 0,
        later_fragment: false,
    }
}

/// SplitMix64: a small, seedable generator for synthetic sets (not for anything secret).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform in `0..n` (`n > 0`; the slight modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `pct`/100.
    pub fn percent(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// What [`synth_rules`] generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    pub rules: usize,
    pub family: Family,
    pub seed: u64,
    /// End with a catch-all rule, as most ClassBench-derived sets do.
    pub default_rule: bool,
}

/// A ClassBench-like filter set: prefixes drawn around a pool of networks with a realistic
/// length mix (many hosts, some /24s and /16s, some wildcards), source ports mostly wildcard,
/// destination ports a mix of well-known exact ports, ranges and wildcards, protocol TCP, UDP,
/// ICMP or any. Rules are `Accept` with `origin` = index.
pub fn synth_rules(cfg: &SynthConfig) -> Vec<FlatRule> {
    let mut rng = SplitMix64(cfg.seed);
    let v6 = cfg.family == Family::V6;
    let width: u32 = if v6 { 128 } else { 32 };
    let top: u128 = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let pool: Vec<u128> = (0..cfg.rules / 16 + 4)
        .map(|_| {
            let r = rng.next_u128() & top;
            if v6 {
                // Global unicast space, clustered under a few /32s.
                (0x2001_0db8 << 96) | ((r % 8) << 96) | (r & ((1 << 96) - 1))
            } else {
                r
            }
        })
        .collect();
    // (weight %, shortest, longest) prefix lengths, as a fraction of the width in 32ths.
    let src_mix: [(u64, u32, u32); 5] = [
        (12, 0, 0),
        (5, 8, 15),
        (13, 16, 23),
        (25, 24, 31),
        (45, 32, 32),
    ];
    let dst_mix: [(u64, u32, u32); 5] = [
        (8, 0, 0),
        (7, 8, 15),
        (15, 16, 23),
        (30, 24, 31),
        (40, 32, 32),
    ];
    let prefix = |rng: &mut SplitMix64, mix: &[(u64, u32, u32); 5]| -> (IpAddr128, IpAddr128) {
        let mut roll = rng.below(100);
        let mut len32 = 32;
        for &(w, lo, hi) in mix {
            if roll < w {
                len32 = lo + rng.below(u64::from(hi - lo + 1)) as u32;
                break;
            }
            roll -= w;
        }
        let len = len32 * width / 32;
        let base = pool[rng.below(pool.len() as u64) as usize] ^ (rng.next_u128() & 0xffff & top);
        let host = if len >= width { 0 } else { top >> len };
        let lo = base & !host & top;
        let to = |v: u128| {
            if v6 {
                IpAddr128(v.to_be_bytes())
            } else {
                IpAddr128::from_v4_octets((v as u32).to_be_bytes())
            }
        };
        (to(lo), to(lo | host))
    };
    const WELL_KNOWN: [u16; 12] = [20, 21, 22, 23, 25, 53, 80, 110, 143, 443, 1521, 3306];
    let mut rules = Vec::with_capacity(cfg.rules + 1);
    for i in 0..cfg.rules {
        let mut r = FlatRule::any(cfg.family, Action::Accept, i as u32);
        r.src = prefix(&mut rng, &src_mix);
        r.dst = prefix(&mut rng, &dst_mix);
        r.proto = match rng.below(100) {
            0..=59 => (6, 6),
            60..=84 => (17, 17),
            85..=89 => (1, 1),
            _ => (0, 255),
        };
        if r.proto.0 == 6 || r.proto.0 == 17 {
            r.sport = match rng.below(100) {
                0..=79 => (0, u16::MAX),
                80..=89 => (1024, u16::MAX),
                _ => {
                    let p = rng.below(65536) as u16;
                    (p, p)
                }
            };
            r.dport = match rng.below(100) {
                0..=24 => (0, u16::MAX),
                25..=59 => {
                    let p = WELL_KNOWN[rng.below(WELL_KNOWN.len() as u64) as usize];
                    (p, p)
                }
                60..=74 => {
                    let p = rng.below(65536) as u16;
                    (p, p)
                }
                75..=84 => (1024, u16::MAX),
                85..=89 => (0, 1023),
                _ => {
                    let a = rng.below(60000) as u16;
                    (a, a.saturating_add(rng.below(4000) as u16))
                }
            };
        }
        r.frag = FragMatch::Any;
        rules.push(r);
    }
    if cfg.default_rule {
        rules.push(FlatRule::any(cfg.family, Action::Accept, cfg.rules as u32));
    }
    rules
}

/// A trace for `rules`: mostly headers drawn from inside a random rule, some drawn at random.
pub fn synth_trace(rules: &[FlatRule], seed: u64, packets: usize) -> Vec<PacketMeta> {
    let mut rng = SplitMix64(seed);
    let fam = rules.first().map_or(Family::V4, |r| r.family);
    let mut out = Vec::with_capacity(packets);
    for _ in 0..packets {
        let in_range = |rng: &mut SplitMix64, lo: u128, hi: u128| -> u128 {
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let span = hi - lo;
            if span == u128::MAX {
                rng.next_u128()
            } else {
                lo + rng.next_u128() % (span + 1)
            }
        };
        let key = if rules.is_empty() || rng.percent(10) {
            let (a, b) = (rng.next_u128(), rng.next_u128());
            let proto = [6u8, 17, 1, 47][rng.below(4) as usize];
            let (sp, dp) = (rng.below(65536) as u16, rng.below(65536) as u16);
            match fam {
                Family::V4 => FlowKey::new_v4(
                    Ipv4Addr::from(a as u32),
                    Ipv4Addr::from(b as u32),
                    proto,
                    sp,
                    dp,
                ),
                Family::V6 => FlowKey::new_v6(a.into(), b.into(), proto, sp, dp),
            }
        } else {
            let r = &rules[rng.below(rules.len() as u64) as usize];
            let addr = |rng: &mut SplitMix64, (lo, hi): (IpAddr128, IpAddr128)| {
                IpAddr128(
                    in_range(rng, u128::from_be_bytes(lo.0), u128::from_be_bytes(hi.0))
                        .to_be_bytes(),
                )
            };
            FlowKey {
                src: addr(&mut rng, r.src),
                dst: addr(&mut rng, r.dst),
                src_port: in_range(&mut rng, r.sport.0.into(), r.sport.1.into()) as u16,
                dst_port: in_range(&mut rng, r.dport.0.into(), r.dport.1.into()) as u16,
                proto: in_range(&mut rng, r.proto.0.into(), r.proto.1.into()) as u8,
                family: r.family,
            }
        };
        out.push(packet(key));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Linear};

    #[test]
    fn parses_filter_lines() {
        let text =
            "@192.151.11.17/32\t15.0.0.0/8\t0 : 65535\t1521 : 1521\t0x06/0xFF\t0x0000/0x0000\n\
                    @0.0.0.0/0 10.1.2.3/24 1024 : 2048 0 : 65535 0x00/0x00\n\
                    \n\
                    @1.2.3.4/16\t5.6.7.8/32\t0:0\t80:80\t0x11/0xFF\t0x0012/0x00ff\n";
        let r = parse_rules(text).unwrap();
        assert_eq!(r.len(), 3);
        let a = |s: &str| IpAddr128::from_v4(s.parse().unwrap());
        assert_eq!(r[0].src, (a("192.151.11.17"), a("192.151.11.17")));
        assert_eq!(r[0].dst, (a("15.0.0.0"), a("15.255.255.255")));
        assert_eq!(
            (r[0].sport, r[0].dport, r[0].proto),
            ((0, 65535), (1521, 1521), (6, 6))
        );
        assert_eq!(
            (r[0].tcp_flags, r[0].origin, r[0].action),
            (None, 0, Action::Accept)
        );
        assert_eq!(r[1].src, (a("0.0.0.0"), a("255.255.255.255")));
        assert_eq!(r[1].dst, (a("10.1.2.0"), a("10.1.2.255")));
        assert_eq!((r[1].sport, r[1].proto), ((1024, 2048), (0, 255)));
        assert_eq!(r[2].origin, 3);
        assert_eq!(r[2].src, (a("1.2.0.0"), a("1.2.255.255")));
        assert_eq!(r[2].tcp_flags, Some((0xff, 0x12)));
        assert_eq!(r[2].family, Family::V4);
    }

    #[test]
    fn rejects_bad_filter_lines() {
        use ClassBenchError::*;
        let e = |s: &str| parse_rules(s).unwrap_err();
        assert_eq!(
            e("1.2.3.4/32 1.2.3.4/32 0 : 1 0 : 1 0x06/0xFF"),
            MissingAt { line: 0 }
        );
        assert_eq!(
            e("@1.2.3.4/33 1.2.3.4/32 0 : 1 0 : 1 0x06/0xFF"),
            BadPrefix { line: 0 }
        );
        assert_eq!(
            e("@1.2.3.4/32 1.2.3.4/32 5 : 1 0 : 1 0x06/0xFF"),
            BadPortRange { line: 0 }
        );
        assert_eq!(
            e("@1.2.3.4/32 1.2.3.4/32 0 : 1 0 : 1 6/0xFF"),
            BadValueMask { line: 0 }
        );
        assert_eq!(
            e("@1.2.3.4/32 1.2.3.4/32 0 : 1 0 : 1 0x06/0x0F"),
            UnsupportedProtoMask { line: 0 }
        );
        assert_eq!(
            e("@1.2.3.4/32 1.2.3.4/32 0 : 1 0 : 1"),
            BadPortRange { line: 0 }
        );
    }

    #[test]
    fn parses_trace_lines() {
        let t = parse_trace("1600753409 3271393328 65535 21 6 413\n1 2 3 4 17 0 0\n5 6 7 8 1\n")
            .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].expected, Some(413));
        let k = t[0].meta.key;
        assert_eq!(k.src_ip(), Ipv4Addr::from(1600753409u32));
        assert_eq!(k.dst_ip(), Ipv4Addr::from(3271393328u32));
        assert_eq!(
            (k.src_port, k.dst_port, k.proto, k.family),
            (65535, 21, 6, Family::V4)
        );
        assert_eq!(t[0].meta.ct_state, ct::NEW);
        assert_eq!((t[1].expected, t[1].meta.key.proto), (Some(0), 17));
        assert_eq!(t[2].expected, None);
        assert_eq!(
            parse_trace("1 2 3\n"),
            Err(ClassBenchError::ShortTraceLine { line: 0 })
        );
        assert_eq!(
            parse_trace("1 2 3 70000 6\n"),
            Err(ClassBenchError::BadTraceNumber { line: 0 })
        );
    }

    #[test]
    fn synthetic_sets_look_like_classbench() {
        let rules = synth_rules(&SynthConfig {
            rules: 2000,
            family: Family::V4,
            seed: 7,
            default_rule: true,
        });
        assert_eq!(rules.len(), 2001);
        let hosts = rules.iter().filter(|r| r.src.0 == r.src.1).count();
        let wild_sport = rules.iter().filter(|r| r.sport == (0, u16::MAX)).count();
        let exact_dport = rules.iter().filter(|r| r.dport.0 == r.dport.1).count();
        assert!((600..1200).contains(&hosts), "{hosts}");
        assert!(wild_sport > 1400, "{wild_sport}");
        assert!(exact_dport > 500, "{exact_dport}");
        // Most trace packets hit a rule before the default one.
        let trace = synth_trace(&rules, 8, 2000);
        let mut out = vec![0; trace.len()];
        Linear.classify(&rules, &trace, &vec![0; trace.len()], &mut out);
        let specific = out.iter().filter(|&&o| o < 2000).count();
        assert!(specific > 1500, "{specific}");
        // Same seed, same set.
        assert_eq!(
            rules,
            synth_rules(&SynthConfig {
                rules: 2000,
                family: Family::V4,
                seed: 7,
                default_rule: true
            })
        );
    }

    /// The corpus files parse, when the corpus is there.
    #[test]
    fn parses_corpus_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/classbench/wustl-original");
        if !dir.is_dir() {
            println!(
                "SKIPPED parses_corpus_files: corpus not found at {}",
                dir.display()
            );
            return;
        }
        for set in ["acl1_100", "fw1_100", "ipc1_100"] {
            let rules = parse_rules(&std::fs::read_to_string(dir.join("rules").join(set)).unwrap())
                .unwrap();
            let trace = parse_trace(
                &std::fs::read_to_string(dir.join("traces").join(format!("{set}_trace"))).unwrap(),
            )
            .unwrap();
            assert!(rules.len() > 80 && trace.len() > 900, "{set}");
            assert!(trace.iter().all(|t| t.expected.is_some()));
        }
    }
}
