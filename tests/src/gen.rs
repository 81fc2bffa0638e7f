//! Seeded rule sets and traffic for the randomized differential test against Linux
//! (`tests/tests/netfilter_diff.rs`, `generated_sets_match_linux`).
//!
//! [`generate`] turns a `u64` seed into an iptables-save rule set for each family (filter, and
//! raw PREROUTING) drawn from the subset the README's "Rule files" documents, and a capture of
//! a few dozen interleaved flows between the inside hosts (`10.0.0.0/8`, `fd00::/8`) and the
//! outside ones. Rule addresses, ports, ICMP types and header values are drawn from the same
//! pools as the traffic, so most matches sometimes hold and sometimes do not. Everything is a
//! function of the seed: a seed that shows a difference is reproduced alone.
//!
//! The rule set comes in two dialects that differ only in how interfaces are named: Rampart's
//! `-i inside`/`-o outside` (its bridge's port names) become `-m physdev --physdev-in ri` /
//! `--physdev-out ro` for Linux, whose br_netfilter shows iptables the bridge as `-i`/`-o` and
//! the bridge ports through `physdev`. Rampart's dialect writes about half of its interface
//! matches as `-m physdev` with its own port names, which on its bridge mean the same.

use dataplane::classify::classbench::SplitMix64;
use dataplane::wire::builder::{tcp_options, FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::{Flags, TcpOption};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One seed's rule sets (both dialects) and traffic.
pub struct Generated {
    pub seed: u64,
    /// Rampart's rule files (iptables-save text).
    pub rampart4: String,
    pub rampart6: String,
    /// The same rules for Linux's bridge (interfaces through `-m physdev`).
    pub linux4: String,
    pub linux6: String,
    /// Ethernet frames in the order they are sent, and a description of each.
    pub frames: Vec<Vec<u8>>,
    pub what: Vec<String>,
}

/// The prefixes the inside hosts are drawn from (`rampart replay --inside`).
pub const INSIDE: &str = "10.0.0.0/8,fd00::/8";

struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
    fn pct(&mut self, p: u64) -> bool {
        self.0.percent(p)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
    fn neg(&mut self, p: u64) -> &'static str {
        if self.pct(p) {
            "! "
        } else {
            ""
        }
    }
    /// An index drawn by weight.
    fn weighted(&mut self, w: &[u32]) -> usize {
        let total: u32 = w.iter().sum();
        let mut x = self.below(total as usize) as u32;
        for (i, &k) in w.iter().enumerate() {
            if x < k {
                return i;
            }
            x -= k;
        }
        w.len() - 1
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

/// Addresses and values both the rules and the traffic draw from.
struct Pools {
    in4: Vec<Ipv4Addr>,
    out4: Vec<Ipv4Addr>,
    in6: Vec<Ipv6Addr>,
    out6: Vec<Ipv6Addr>,
    /// Server ports.
    ports: Vec<u16>,
    /// Draw what only iptables-nft reads otherwise (see [`generate_for`]).
    legacy: bool,
}

const TTLS: [u8; 8] = [1, 2, 3, 63, 64, 65, 128, 255];
const TOSES: [u8; 10] = [0, 0, 0, 0x10, 0x04, 0xb8, 0x01, 0x02, 0x03, 0x28];
const LENGTHS: [u16; 10] = [0, 40, 60, 64, 80, 100, 200, 500, 1000, 1500];
const CLIENT_PORTS: (u16, u16) = (30000, 30100);

impl Pools {
    fn new(r: &mut Rng) -> Pools {
        let in4 = (0..4)
            .map(|_| Ipv4Addr::new(10, 1, r.below(4) as u8, 1 + r.below(30) as u8))
            .collect();
        let out4 = (0..4)
            .map(|_| {
                let (a, b, c) = r.pick(&[(198, 51, 100), (203, 0, 113), (192, 0, 2)]);
                Ipv4Addr::new(a, b, c, 1 + r.below(60) as u8)
            })
            .collect();
        let in6 = (0..4)
            .map(|_| {
                Ipv6Addr::new(
                    0xfd00,
                    1,
                    0,
                    r.below(4) as u16,
                    0,
                    0,
                    0,
                    1 + r.below(30) as u16,
                )
            })
            .collect();
        let out6 = (0..4)
            .map(|_| {
                Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    r.below(3) as u16,
                    0,
                    0,
                    0,
                    0,
                    1 + r.below(60) as u16,
                )
            })
            .collect();
        let mut ports = vec![22, 53, 80, 123, 443];
        for _ in 0..3 {
            ports.push(r.pick(&[1024, 5000, 5001, 8080, 8443, 9000, 33434]));
        }
        Pools {
            in4,
            out4,
            in6,
            out6,
            ports,
            legacy: false,
        }
    }

    fn host(&self, r: &mut Rng, fam: Fam, inside: bool) -> IpAddr {
        match (fam, inside) {
            (Fam::V4, true) => IpAddr::V4(r.pick(&self.in4)),
            (Fam::V4, false) => IpAddr::V4(r.pick(&self.out4)),
            (Fam::V6, true) => IpAddr::V6(r.pick(&self.in6)),
            (Fam::V6, false) => IpAddr::V6(r.pick(&self.out6)),
        }
    }
}

/// One piece of a rule: text common to both dialects, or an interface match.
enum Part {
    Text(String),
    Iface {
        out: bool,
        neg: bool,
        name: &'static str,
    },
}

fn render(parts: &[Part], linux: bool) -> String {
    let mut s = String::new();
    for p in parts {
        if !s.is_empty() {
            s.push(' ');
        }
        match p {
            Part::Text(t) => s += t,
            Part::Iface { out, neg, name } => {
                let n = if *neg { "! " } else { "" };
                if linux {
                    let dev = match *name {
                        "inside" => "ri",
                        "outside" => "ro",
                        "in+" => "ri+",
                        "out+" => "ro+",
                        other => other,
                    };
                    let opt = if *out {
                        "--physdev-out"
                    } else {
                        "--physdev-in"
                    };
                    let _ = write!(s, "-m physdev {n}{opt} {dev}");
                } else if s.len() % 2 == 1 {
                    // Rampart's ports through `-m physdev` too (its bridge's ports by their
                    // own names), for about half of the interface matches: the same meaning
                    // as `-i`/`-o` on a bridge, where every packet is bridged.
                    let opt = if *out {
                        "--physdev-out"
                    } else {
                        "--physdev-in"
                    };
                    let _ = write!(s, "-m physdev {n}{opt} {name}");
                } else {
                    let _ = write!(s, "{n}{} {name}", if *out { "-o" } else { "-i" });
                }
            }
        }
    }
    s
}

fn prefix(r: &mut Rng, pools: &Pools, fam: Fam) -> String {
    let inside = r.pct(50);
    match pools.host(r, fam, inside) {
        IpAddr::V4(a) => {
            let len = r.pick(&[0u32, 8, 16, 22, 24, 26, 30, 32, 32]);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            format!("{}/{len}", Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let len = r.pick(&[0u32, 8, 16, 32, 48, 62, 64, 120, 126, 128]);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            format!("{}/{len}", Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

fn range(r: &mut Rng, pools: &Pools, fam: Fam) -> String {
    let inside = r.pct(50);
    let (lo, hi) = (r.below(40) as u128, r.below(40) as u128);
    match pools.host(r, fam, inside) {
        IpAddr::V4(a) => {
            let a = u128::from(u32::from(a));
            let lo = Ipv4Addr::from(a.saturating_sub(lo) as u32);
            let hi = Ipv4Addr::from((a + hi).min(u128::from(u32::MAX)) as u32);
            format!("{lo}-{hi}")
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            format!(
                "{}-{}",
                Ipv6Addr::from(a.saturating_sub(lo)),
                Ipv6Addr::from(a.saturating_add(hi))
            )
        }
    }
}

fn port_spec(r: &mut Rng, pools: &Pools, sep: char) -> String {
    match r.below(4) {
        // Linux's multiport refuses a range whose ends are equal.
        0 => format!(
            "{}{sep}{}",
            CLIENT_PORTS.0,
            CLIENT_PORTS.0 + 1 + r.below(100) as u16
        ),
        1 => {
            let p = r.pick(&pools.ports);
            let q = p.saturating_add(r.pick(&[0u16, 1, 10, 1000]));
            if q == p {
                p.to_string()
            } else {
                format!("{p}{sep}{q}")
            }
        }
        _ => r.pick(&pools.ports).to_string(),
    }
}

fn states(r: &mut Rng, conntrack: bool) -> String {
    let all = ["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"];
    let mut v: Vec<&str> = all.iter().copied().filter(|_| r.pct(35)).collect();
    if v.is_empty() {
        v.push(r.pick(&all));
    }
    // --ctstate's DNAT and SNAT never hold without a nat table; --state takes neither.
    if conntrack && r.pct(10) {
        v.push(r.pick(&["DNAT", "SNAT"]));
    }
    v.join(",")
}

const TCP_FLAGS: [&str; 6] = ["SYN", "ACK", "FIN", "RST", "PSH", "URG"];

fn flag_set(r: &mut Rng) -> String {
    match r.below(8) {
        0 => "ALL".into(),
        1 => "NONE".into(),
        _ => {
            let v: Vec<&str> = TCP_FLAGS.iter().copied().filter(|_| r.pct(40)).collect();
            if v.is_empty() {
                "NONE".into()
            } else {
                v.join(",")
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Raw,
    Filter,
}

/// The matches of one rule, and what the target may rely on: `Some(true)` when the rule
/// requires TCP (`-p tcp` without `!`).
fn matches(r: &mut Rng, pools: &Pools, fam: Fam, table: Table) -> (Vec<Part>, bool) {
    let mut parts = Vec::new();
    let t = |s: String| Part::Text(s);
    if r.pct(25) {
        let p = prefix(r, pools, fam);
        // iptables-nft refuses a negated /0 (iptables-legacy took it).
        let neg = if p.ends_with("/0") { "" } else { r.neg(20) };
        parts.push(t(format!("{neg}-s {p}")));
    }
    if r.pct(25) {
        let p = prefix(r, pools, fam);
        // iptables-nft refuses a negated /0 (iptables-legacy took it).
        let neg = if p.ends_with("/0") { "" } else { r.neg(20) };
        parts.push(t(format!("{neg}-d {p}")));
    }
    if r.pct(15) {
        let name = r.pick(&["inside", "outside", "inside", "outside", "+", "in+", "out+"]);
        parts.push(Part::Iface {
            out: false,
            neg: r.pct(20),
            name,
        });
    }
    if table == Table::Filter && r.pct(15) {
        let name = r.pick(&["inside", "outside", "inside", "outside", "+"]);
        parts.push(Part::Iface {
            out: true,
            neg: r.pct(20),
            name,
        });
    }
    let icmp_name = if fam == Fam::V4 { "icmp" } else { "ipv6-icmp" };
    let mut tcp_only = false;
    if r.pct(65) {
        let k = r.weighted(&[35, 30, 20, 15]);
        let neg = r.pct(8);
        let (proto, l4) = match k {
            0 => (r.pick(&["tcp", "tcp", "6"]).to_string(), Some("tcp")),
            1 => (r.pick(&["udp", "udp", "17"]).to_string(), Some("udp")),
            2 => {
                let p = if fam == Fam::V4 {
                    r.pick(&["icmp", "icmp", "1"])
                } else {
                    r.pick(&[icmp_name, "icmpv6", "58"])
                };
                (p.to_string(), Some("icmp"))
            }
            _ => (r.pick(&["47", "132", "all"]).to_string(), None),
        };
        parts.push(t(format!(
            "{}-p {proto}",
            if neg && proto != "all" { "! " } else { "" }
        )));
        let neg = neg && proto != "all";
        if !neg {
            match l4 {
                Some(p @ ("tcp" | "udp")) => {
                    tcp_only = p == "tcp";
                    let mut m = Vec::new();
                    let sport = r.pct(35).then(|| (r.neg(15), port_spec(r, pools, ':')));
                    let mut dport = r.pct(50).then(|| (r.neg(15), port_spec(r, pools, ':')));
                    // `! --sport A ! --dport B` with single ports: iptables-nft compares the
                    // two ports as one 32-bit word, so the rule matches when either differs
                    // (x_tables: when both do; docs/conntrack-vs-netfilter.md). Not drawn.
                    if let (Some((ns, ps)), Some((nd, pd))) = (&sport, &mut dport) {
                        if !pools.legacy
                            && !ns.is_empty()
                            && !nd.is_empty()
                            && !ps.contains(':')
                            && !pd.contains(':')
                        {
                            *nd = "";
                        }
                    }
                    if let Some((n, p)) = sport {
                        m.push(format!("{n}--sport {p}"));
                    }
                    if let Some((n, p)) = dport {
                        m.push(format!("{n}--dport {p}"));
                    }
                    if p == "tcp" && r.pct(30) {
                        if r.pct(40) {
                            m.push(format!("{}--syn", r.neg(30)));
                        } else {
                            // A NONE mask: xt_tcp never matches unless the comparison is
                            // NONE too, but iptables-nft drops the flags test from such a
                            // rule (docs/conntrack-vs-netfilter.md). Not drawn.
                            let mut mask = flag_set(r);
                            while mask == "NONE" && !pools.legacy {
                                mask = flag_set(r);
                            }
                            let comp = flag_set(r);
                            m.push(format!("{}--tcp-flags {mask} {comp}", r.neg(15)));
                        }
                    }
                    if !m.is_empty() {
                        parts.push(t(format!("-m {p} {}", m.join(" "))));
                    }
                    if r.pct(20) {
                        let n = 1 + r.below(4);
                        let list: Vec<String> = (0..n).map(|_| port_spec(r, pools, ':')).collect();
                        let which = r.pick(&["--dports", "--sports", "--ports"]);
                        parts.push(t(format!(
                            "-m multiport {}{which} {}",
                            r.neg(15),
                            list.join(",")
                        )));
                    }
                    if p == "tcp" && r.pct(8) {
                        let o = r.pick(&["--ecn-tcp-cwr", "--ecn-tcp-ece"]);
                        parts.push(t(format!("-m ecn {}{o}", r.neg(20))));
                    }
                }
                Some(_) if r.pct(55) => {
                    let (m, opt, ty) = if fam == Fam::V4 {
                        let ty = match r.below(6) {
                            0 => r
                                .pick(&[
                                    "echo-request",
                                    "echo-reply",
                                    "port-unreachable",
                                    "destination-unreachable",
                                    "time-exceeded",
                                    "any",
                                ])
                                .to_string(),
                            1 => format!("3/{}", r.pick(&[1, 3, 4])),
                            _ => r.pick(&[0, 3, 8, 11]).to_string(),
                        };
                        ("icmp", "--icmp-type", ty)
                    } else {
                        let ty = match r.below(6) {
                            0 => r
                                .pick(&[
                                    "echo-request",
                                    "echo-reply",
                                    "port-unreachable",
                                    "destination-unreachable",
                                    "time-exceeded",
                                    "packet-too-big",
                                ])
                                .to_string(),
                            1 => format!("1/{}", r.pick(&[0, 3, 4])),
                            _ => r.pick(&[1, 2, 3, 128, 129]).to_string(),
                        };
                        ("icmp6", "--icmpv6-type", ty)
                    };
                    parts.push(t(format!("-m {m} {}{opt} {ty}", r.neg(15))));
                }
                _ => {}
            }
        }
    }
    if r.pct(8) {
        let which = r.pick(&["--src-range", "--dst-range"]);
        parts.push(t(format!(
            "-m iprange {}{which} {}",
            r.neg(20),
            range(r, pools, fam)
        )));
    }
    if table == Table::Filter && r.pct(30) {
        if r.pct(75) {
            parts.push(t(format!(
                "-m conntrack {}--ctstate {}",
                r.neg(30),
                states(r, true)
            )));
        } else {
            parts.push(t(format!(
                "-m state {}--state {}",
                r.neg(20),
                states(r, false)
            )));
        }
    }
    if fam == Fam::V4 && r.pct(6) {
        parts.push(t(format!("{}-f", r.neg(40))));
    }
    if r.pct(25) {
        let h = match r.below(5) {
            0 => {
                let v = r.pick(&TTLS);
                let (m, p) = if fam == Fam::V4 {
                    ("ttl", "ttl")
                } else {
                    ("hl", "hl")
                };
                match r.below(3) {
                    0 => format!("-m {m} {}--{p}-eq {v}", r.neg(20)),
                    1 => format!("-m {m} --{p}-lt {v}"),
                    _ => format!("-m {m} --{p}-gt {v}"),
                }
            }
            1 => {
                let a = r.pick(&LENGTHS);
                let b = r.pick(&LENGTHS);
                let (a, b) = (a.min(b), a.max(b));
                if a == b {
                    format!("-m length {}--length {a}", r.neg(20))
                } else {
                    format!("-m length {}--length {a}:{b}", r.neg(20))
                }
            }
            2 => {
                let v = r.pick(&TOSES);
                if r.pct(50) {
                    format!(
                        "-m tos {}--tos 0x{v:02x}/0x{:02x}",
                        r.neg(20),
                        r.pick(&[0xffu8, 0x3f, 0xfc, 0x03, 0x1e])
                    )
                } else {
                    format!("-m tos {}--tos 0x{v:02x}", r.neg(20))
                }
            }
            3 => {
                if r.pct(60) {
                    format!("-m dscp {}--dscp {}", r.neg(20), r.pick(&[0, 4, 10, 46, 1]))
                } else {
                    format!(
                        "-m dscp {}--dscp-class {}",
                        r.neg(20),
                        r.pick(&["CS0", "CS1", "AF11", "EF", "BE"])
                    )
                }
            }
            _ => format!("-m ecn {}--ecn-ip-ect {}", r.neg(20), r.below(4)),
        };
        parts.push(t(h));
    }
    if r.pct(4) {
        parts.push(t("-m comment --comment \"generated\"".into()));
    }
    (parts, tcp_only)
}

fn reject(r: &mut Rng, fam: Fam, tcp: bool) -> String {
    if tcp && r.pct(40) {
        return "-j REJECT --reject-with tcp-reset".into();
    }
    if r.pct(20) {
        return "-j REJECT".into();
    }
    let with = if fam == Fam::V4 {
        r.pick(&[
            "icmp-net-unreachable",
            "icmp-host-unreachable",
            "icmp-port-unreachable",
            "icmp-proto-unreachable",
            "icmp-net-prohibited",
            "icmp-host-prohibited",
            "icmp-admin-prohibited",
        ])
    } else {
        r.pick(&[
            "icmp6-no-route",
            "no-route",
            "icmp6-adm-prohibited",
            "adm-prohibited",
            "icmp6-addr-unreachable",
            "addr-unreach",
            "icmp6-port-unreachable",
        ])
    };
    format!("-j REJECT --reject-with {with}")
}

/// One family's rule set in both dialects.
fn rule_set(r: &mut Rng, pools: &Pools, fam: Fam) -> (String, String) {
    let mut rampart = String::new();
    let mut linux = String::new();
    let both = |line: &str, rampart: &mut String, linux: &mut String| {
        rampart.push_str(line);
        rampart.push('\n');
        linux.push_str(line);
        linux.push('\n');
    };
    // raw: PREROUTING only.
    both(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]",
        &mut rampart,
        &mut linux,
    );
    let nraw = if r.pct(50) { 0 } else { 1 + r.below(3) };
    for _ in 0..nraw {
        let (mut parts, _) = matches(r, pools, fam, Table::Raw);
        let target = match r.weighted(&[60, 20, 20]) {
            0 => r.pick(&["-j NOTRACK", "-j CT --notrack"]),
            1 => "-j DROP",
            _ => "-j ACCEPT",
        };
        parts.insert(0, Part::Text("-A PREROUTING".into()));
        parts.push(Part::Text(target.into()));
        rampart += &render(&parts, false);
        rampart.push('\n');
        linux += &render(&parts, true);
        linux.push('\n');
    }
    both("COMMIT", &mut rampart, &mut linux);
    let nchains = r.below(5);
    let policy = if r.pct(50) { "ACCEPT" } else { "DROP" };
    let mut head =
        format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]");
    for c in 0..nchains {
        let _ = write!(head, "\n:U{c} - [0:0]");
    }
    both(&head, &mut rampart, &mut linux);
    // Chain -1 is FORWARD; jumps and gotos only go to later chains, so none loops.
    for c in -1..nchains as i32 {
        let name = if c < 0 {
            "FORWARD".to_string()
        } else {
            format!("U{c}")
        };
        let n = if c < 0 {
            2 + r.below(9)
        } else {
            1 + r.below(5)
        };
        for _ in 0..n {
            let (mut parts, tcp) = matches(r, pools, fam, Table::Filter);
            let later = (c + 1)..nchains as i32;
            let k = r.weighted(&[28, 24, 10, if c < 0 { 2 } else { 10 }, 16, 6, 4]);
            let target = match k {
                0 => "-j ACCEPT".to_string(),
                1 => "-j DROP".to_string(),
                2 => reject(r, fam, tcp),
                3 => "-j RETURN".to_string(),
                4 | 5 if !later.is_empty() => {
                    let to = later.start + r.below(later.len()) as i32;
                    format!("{} U{to}", if k == 4 { "-j" } else { "-g" })
                }
                6 => String::new(),
                _ => "-j ACCEPT".to_string(),
            };
            parts.insert(0, Part::Text(format!("-A {name}")));
            if !target.is_empty() {
                parts.push(Part::Text(target));
            }
            rampart += &render(&parts, false);
            rampart.push('\n');
            linux += &render(&parts, true);
            linux.push('\n');
        }
    }
    both("COMMIT", &mut rampart, &mut linux);
    (rampart, linux)
}

/// A frame of a flow under construction, and how a script names it.
type Script = VecDeque<(String, Vec<u8>)>;

/// Per-flow IP-layer values: TTL and TOS, usually fixed for a direction.
struct IpLook {
    ttl: u8,
    tos: u8,
}

fn ip_spec(src: IpAddr, dst: IpAddr, look: &IpLook, ident: u32) -> IpSpec {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpSpec::V4 {
            src: s,
            dst: d,
            ttl: look.ttl,
            ident: ident as u16,
            dont_frag: false,
            options: Vec::new(),
        },
        (IpAddr::V6(s), IpAddr::V6(d)) => IpSpec::V6 {
            src: s,
            dst: d,
            hop_limit: look.ttl,
            ident,
            ext: Vec::new(),
        },
        _ => unreachable!("one family per flow"),
    }
}

/// Sets the TOS / traffic class of a built frame (and the IPv4 header checksum).
fn set_tos(frame: &mut [u8], tos: u8) {
    match frame[14] >> 4 {
        4 => {
            frame[15] = tos;
            let ihl = usize::from(frame[14] & 15) * 4;
            frame[24] = 0;
            frame[25] = 0;
            let mut sum: u32 = 0;
            for i in (14..14 + ihl).step_by(2) {
                sum += u32::from(u16::from_be_bytes([frame[i], frame[i + 1]]));
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let c = !(sum as u16);
            frame[24..26].copy_from_slice(&c.to_be_bytes());
        }
        6 => {
            frame[14] = 0x60 | (tos >> 4);
            frame[15] = (tos << 4) | (frame[15] & 0x0f);
        }
        _ => {}
    }
}

struct Flows<'a> {
    r: Rng,
    pools: &'a Pools,
    ident: u32,
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// The IP packet an ICMP error quotes (IPv4: header and 8 bytes; IPv6: up to 1232 bytes).
fn quote(frame: &[u8]) -> Vec<u8> {
    let ip = &frame[14..];
    if ip[0] >> 4 == 4 {
        ip[..(20 + 8).min(ip.len())].to_vec()
    } else {
        ip[..ip.len().min(1232)].to_vec()
    }
}

impl Flows<'_> {
    fn look(&mut self) -> IpLook {
        IpLook {
            ttl: if self.r.pct(70) {
                64
            } else {
                self.r.pick(&TTLS)
            },
            tos: if self.r.pct(60) {
                0
            } else {
                self.r.pick(&TOSES)
            },
        }
    }

    fn frame(&mut self, src: IpAddr, dst: IpAddr, look: &IpLook, l4: L4Spec) -> Vec<u8> {
        // Now and then a packet of the flow with another TTL or TOS.
        let odd;
        let look = if self.r.pct(8) {
            odd = self.look();
            &odd
        } else {
            look
        };
        let mut spec = FrameSpec::new(ip_spec(src, dst, look, 0), l4);
        if self.r.pct(3) {
            // One 802.1Q tag: br_netfilter filters IP under one tag, as Rampart does.
            spec.vlans[0] = Some(dataplane::wire::VlanTag {
                tpid: 0x8100,
                tci: 10,
            });
        }
        let mut f = spec.build();
        set_tos(&mut f, look.tos);
        if self.r.pct(2) {
            bad_checksum(&mut f);
        }
        f
    }

    /// ICMP messages other than echo and errors: timestamps, address masks, router and
    /// neighbour discovery, MLD, an unassigned type.
    fn icmp_other(&mut self, fam: Fam) -> Script {
        let mut s = Script::new();
        let (c, sv) = self.ends(fam, 50);
        let id = self.r.0.next_u64() as u16;
        let (ty, answer) = if fam == Fam::V4 {
            self.r.pick(&[
                (13u8, Some(14u8)),
                (17, Some(18)),
                (9, None),
                (10, None),
                (42, None),
                (14, None),
            ])
        } else {
            self.r.pick(&[
                (133u8, None),
                (134, None),
                (135, Some(136u8)),
                (136, None),
                (130, None),
                (200, None),
                (139, Some(140)),
            ])
        };
        let mut look = self.look();
        if fam == Fam::V6 && (130..140).contains(&ty) && self.r.pct(70) {
            look.ttl = 255;
        }
        let mk = |ty: u8| match fam {
            Fam::V4 => L4Spec::Icmp {
                ty,
                code: 0,
                ident: id,
                seq: 1,
                payload: payload(12, ty),
            },
            Fam::V6 => L4Spec::Icmpv6 {
                ty,
                code: 0,
                ident: id,
                seq: 1,
                payload: payload(20, ty),
            },
        };
        let f = self.frame(c, sv, &look, mk(ty));
        s.push_back((format!("ICMP type {ty}"), f));
        if let Some(a) = answer {
            if self.r.pct(70) {
                let f = self.frame(sv, c, &look, mk(a));
                s.push_back((format!("ICMP type {a} answer"), f));
            }
        }
        s
    }

    /// A flow's two hosts, client first: the client inside `pct` percent of the time, the
    /// server on the other side.
    fn ends(&mut self, fam: Fam, pct: u64) -> (IpAddr, IpAddr) {
        let from_inside = self.r.pct(pct);
        let c = self.pools.host(&mut self.r, fam, from_inside);
        (c, self.pools.host(&mut self.r, fam, !from_inside))
    }

    /// A protocol Linux and Rampart track by address pair alone (GRE, ESP), both ways.
    fn other_proto(&mut self, fam: Fam) -> Script {
        let mut s = Script::new();
        let (c, sv) = self.ends(fam, 60);
        let proto = self.r.pick(&[47u8, 50]);
        let (lc, ls) = (self.look(), self.look());
        // GRE version 0 (no key), ESP with an SPI and sequence number.
        let body = |n: u8| -> Vec<u8> {
            if proto == 47 {
                let mut v = vec![0, 0, 0x08, 0x00];
                v.extend(payload(40, n));
                v
            } else {
                let mut v = vec![0, 0, 0x10, n, 0, 0, 0, n];
                v.extend(payload(40, n));
                v
            }
        };
        for i in 0..1 + self.r.below(3) {
            let (a, b, l) = if i % 2 == 0 {
                (c, sv, &lc)
            } else {
                (sv, c, &ls)
            };
            let f = self.frame(
                a,
                b,
                l,
                L4Spec::Raw {
                    proto,
                    payload: body(i as u8),
                },
            );
            s.push_back((
                format!("proto {proto} {}", if i % 2 == 0 { "c>s" } else { "s>c" }),
                f,
            ));
        }
        s
    }

    fn icmp_error(&mut self, s: &mut Script, to: IpAddr, quoted: &[u8]) {
        let v4 = to.is_ipv4();
        let from = self.pools.host(
            &mut self.r,
            if v4 { Fam::V4 } else { Fam::V6 },
            !is_inside(to),
        );
        let (ty, code, seq) = if v4 {
            self.r
                .pick(&[(3u8, 3u8, 0u16), (3, 1, 0), (11, 0, 0), (3, 4, 1280)])
        } else {
            self.r
                .pick(&[(1u8, 4u8, 0u16), (1, 3, 0), (3, 0, 0), (2, 0, 1280)])
        };
        let payload = quote(quoted);
        let l4 = if v4 {
            L4Spec::Icmp {
                ty,
                code,
                ident: 0,
                seq,
                payload,
            }
        } else {
            L4Spec::Icmpv6 {
                ty,
                code,
                ident: 0,
                seq,
                payload,
            }
        };
        let look = self.look();
        let f = self.frame(from, to, &look, l4);
        s.push_back((
            format!("ICMP error {ty}/{code} quoting an earlier packet"),
            f,
        ));
    }

    fn tcp(&mut self, fam: Fam) -> Script {
        let mut s = Script::new();
        let (c, sv) = self.ends(fam, 65);
        let cp = CLIENT_PORTS.0 + self.r.below(100) as u16;
        let sp = self.r.pick(&self.pools.ports);
        let (lc, ls) = (self.look(), self.look());
        let mut cseq: u32 = self.r.0.next_u64() as u32;
        let mut sseq: u32 = self.r.0.next_u64() as u32;
        let seg = |flags: Flags, seq: u32, ack: u32, data: &[u8], a: u16, b: u16| {
            let mut l4 = L4Spec::tcp_segment(a, b, flags, seq, ack, data);
            if flags.contains(Flags::SYN) {
                if let L4Spec::Tcp { options, .. } = &mut l4 {
                    *options = tcp_options(&[TcpOption::MaxSegmentSize(1460)]);
                }
            }
            l4
        };
        let syn_ack = Flags(Flags::SYN.0 | Flags::ACK.0);
        let psh_ack = Flags(Flags::PSH.0 | Flags::ACK.0);
        let fin_ack = Flags(Flags::FIN.0 | Flags::ACK.0);
        let rst_ack = Flags(Flags::RST.0 | Flags::ACK.0);
        // Odd openings: a lone segment that is not a SYN.
        if self.r.pct(12) {
            let flags = self.r.pick(&[
                syn_ack,
                Flags::ACK,
                psh_ack,
                Flags::FIN,
                Flags::RST,
                Flags(Flags::SYN.0 | Flags::FIN.0),
                Flags(0),
                Flags(0x29),
            ]);
            let data = if flags.contains(Flags::PSH) {
                payload(50, 3)
            } else {
                vec![]
            };
            let f = self.frame(c, sv, &lc, seg(flags, cseq, sseq, &data, cp, sp));
            s.push_back((format!("TCP lone {flags:?}"), f));
            if self.r.pct(50) {
                let f = self.frame(sv, c, &ls, seg(Flags::ACK, sseq, cseq, &[], sp, cp));
                s.push_back(("TCP answer to the lone segment".into(), f));
            }
            return s;
        }
        let syn = if self.r.pct(10) {
            Flags(Flags::SYN.0 | Flags::ECE.0 | Flags::CWR.0)
        } else {
            Flags::SYN
        };
        let f = self.frame(c, sv, &lc, seg(syn, cseq, 0, &[], cp, sp));
        let first = f.clone();
        s.push_back(("c>s SYN".into(), f.clone()));
        if self.r.pct(10) {
            s.push_back(("c>s SYN again".into(), f));
        }
        cseq = cseq.wrapping_add(1);
        if self.r.pct(12) {
            self.icmp_error(&mut s, c, &first);
        }
        if self.r.pct(12) {
            let f = self.frame(sv, c, &ls, seg(rst_ack, 0, cseq, &[], sp, cp));
            s.push_back(("s>c RST/ACK (refused)".into(), f));
            return s;
        }
        let f = self.frame(sv, c, &ls, seg(syn_ack, sseq, cseq, &[], sp, cp));
        s.push_back(("s>c SYN/ACK".into(), f));
        sseq = sseq.wrapping_add(1);
        let f = self.frame(c, sv, &lc, seg(Flags::ACK, cseq, sseq, &[], cp, sp));
        s.push_back(("c>s ACK".into(), f));
        for _ in 0..self.r.below(3) {
            let n = self.r.pick(&[1usize, 20, 100, 400, 1200]);
            let f = self.frame(c, sv, &lc, seg(psh_ack, cseq, sseq, &payload(n, 1), cp, sp));
            s.push_back((format!("c>s data {n}"), f.clone()));
            if self.r.pct(10) {
                self.icmp_error(&mut s, c, &f);
            }
            cseq = cseq.wrapping_add(n as u32);
            let n = self.r.pick(&[0usize, 0, 30, 300, 1000]);
            let flags = if n > 0 { psh_ack } else { Flags::ACK };
            let f = self.frame(sv, c, &ls, seg(flags, sseq, cseq, &payload(n, 2), sp, cp));
            s.push_back((format!("s>c data {n}"), f.clone()));
            if self.r.pct(8) {
                self.icmp_error(&mut s, sv, &f);
            }
            sseq = sseq.wrapping_add(n as u32);
        }
        if self.r.pct(12) {
            let off = self.r.pick(&[1_000_000_000u32, 0x8000_0000, 200_000]);
            let f = self.frame(
                c,
                sv,
                &lc,
                seg(
                    psh_ack,
                    cseq.wrapping_add(off),
                    sseq,
                    &payload(10, 4),
                    cp,
                    sp,
                ),
            );
            s.push_back(("c>s data out of window".into(), f));
        }
        if self.r.pct(8) {
            let f = self.frame(
                sv,
                c,
                &ls,
                seg(Flags::ACK, sseq, cseq.wrapping_add(500_000), &[], sp, cp),
            );
            s.push_back(("s>c ACK of data never sent".into(), f));
        }
        match self.r.below(4) {
            0 | 1 => {
                let f = self.frame(c, sv, &lc, seg(fin_ack, cseq, sseq, &[], cp, sp));
                s.push_back(("c>s FIN".into(), f));
                cseq = cseq.wrapping_add(1);
                let f = self.frame(sv, c, &ls, seg(fin_ack, sseq, cseq, &[], sp, cp));
                s.push_back(("s>c FIN".into(), f));
                sseq = sseq.wrapping_add(1);
                let f = self.frame(c, sv, &lc, seg(Flags::ACK, cseq, sseq, &[], cp, sp));
                s.push_back(("c>s last ACK".into(), f));
                if self.r.pct(20) {
                    let f =
                        self.frame(c, sv, &lc, seg(psh_ack, cseq, sseq, &payload(5, 9), cp, sp));
                    s.push_back(("c>s data after close".into(), f));
                }
            }
            2 => {
                let (a, b, seq, ack, pa, pb, la) = if self.r.pct(50) {
                    (c, sv, cseq, sseq, cp, sp, &lc)
                } else {
                    (sv, c, sseq, cseq, sp, cp, &ls)
                };
                let flags = if self.r.pct(50) { Flags::RST } else { rst_ack };
                let f = self.frame(a, b, la, seg(flags, seq, ack, &[], pa, pb));
                s.push_back(("RST".into(), f));
                if self.r.pct(30) {
                    let f = self.frame(c, sv, &lc, seg(Flags::ACK, cseq, sseq, &[], cp, sp));
                    s.push_back(("c>s ACK after RST".into(), f));
                }
            }
            _ => {}
        }
        s
    }

    fn udp(&mut self, fam: Fam) -> Script {
        let mut s = Script::new();
        let (c, sv) = self.ends(fam, 65);
        let cp = if self.r.pct(85) {
            CLIENT_PORTS.0 + self.r.below(100) as u16
        } else {
            self.r.pick(&self.pools.ports)
        };
        let sp = self.r.pick(&self.pools.ports);
        let (lc, ls) = (self.look(), self.look());
        let n = self.r.pick(&[0usize, 8, 40, 200, 600]);
        let f = self.frame(c, sv, &lc, L4Spec::udp(cp, sp, &payload(n, 5)));
        let first = f.clone();
        s.push_back((format!("c>s UDP {n}"), f));
        if self.r.pct(25) {
            self.icmp_error(&mut s, c, &first);
            if self.r.pct(50) {
                return s;
            }
        }
        for i in 0..self.r.below(4) {
            let n = self.r.pick(&[0usize, 8, 100, 900]);
            let (a, b, pa, pb, l) = if i % 2 == 0 {
                (sv, c, sp, cp, &ls)
            } else {
                (c, sv, cp, sp, &lc)
            };
            let f = self.frame(a, b, l, L4Spec::udp(pa, pb, &payload(n, 6)));
            s.push_back((
                format!("UDP {n} {}", if i % 2 == 0 { "reply" } else { "again" }),
                f,
            ));
        }
        s
    }

    fn echo(&mut self, fam: Fam) -> Script {
        let mut s = Script::new();
        let (c, sv) = self.ends(fam, 65);
        let id = self.r.0.next_u64() as u16;
        let (lc, ls) = (self.look(), self.look());
        let mk = |reply: bool, seq: u16, n: usize| {
            let payload = payload(n, seq as u8);
            match fam {
                Fam::V4 => L4Spec::Icmp {
                    ty: if reply { 0 } else { 8 },
                    code: 0,
                    ident: id,
                    seq,
                    payload,
                },
                Fam::V6 => L4Spec::Icmpv6 {
                    ty: if reply { 129 } else { 128 },
                    code: 0,
                    ident: id,
                    seq,
                    payload,
                },
            }
        };
        if self.r.pct(10) {
            let f = self.frame(c, sv, &lc, mk(true, 1, 32));
            s.push_back(("echo reply without request".into(), f));
            return s;
        }
        for seq in 1..=1 + self.r.below(2) as u16 {
            let n = self.r.pick(&[0usize, 32, 56, 300]);
            let f = self.frame(c, sv, &lc, mk(false, seq, n));
            s.push_back((format!("echo request {seq}"), f));
            if self.r.pct(75) {
                let f = self.frame(sv, c, &ls, mk(true, seq, n));
                s.push_back((format!("echo reply {seq}"), f));
            }
        }
        s
    }

    /// A UDP datagram or echo request in fragments, in order, and maybe an answer.
    fn fragmented(&mut self, fam: Fam) -> Script {
        let mut s = Script::new();
        let (c, sv) = self.ends(fam, 65);
        let n = 600 + self.r.below(900);
        let l4 = if self.r.pct(70) {
            L4Spec::udp(
                CLIENT_PORTS.0 + self.r.below(100) as u16,
                self.r.pick(&self.pools.ports),
                &payload(n, 7),
            )
        } else if fam == Fam::V4 {
            L4Spec::Icmp {
                ty: 8,
                code: 0,
                ident: 77,
                seq: 1,
                payload: payload(n, 8),
            }
        } else {
            L4Spec::Icmpv6 {
                ty: 128,
                code: 0,
                ident: 77,
                seq: 1,
                payload: payload(n, 8),
            }
        };
        self.ident += 1;
        let look = self.look();
        let spec = FrameSpec::new(ip_spec(c, sv, &look, self.ident), l4.clone());
        let frags = spec.fragments(self.r.pick(&[256usize, 400, 512]));
        let k = frags.len();
        for (i, mut f) in frags.into_iter().enumerate() {
            set_tos(&mut f, look.tos);
            s.push_back((format!("c>s fragment {}/{k} of {n}", i + 1), f));
        }
        if self.r.pct(50) {
            let reply = match l4 {
                L4Spec::Udp { sport, dport, .. } => L4Spec::udp(dport, sport, &payload(20, 9)),
                L4Spec::Icmp { .. } => L4Spec::Icmp {
                    ty: 0,
                    code: 0,
                    ident: 77,
                    seq: 1,
                    payload: payload(20, 9),
                },
                _ => L4Spec::Icmpv6 {
                    ty: 129,
                    code: 0,
                    ident: 77,
                    seq: 1,
                    payload: payload(20, 9),
                },
            };
            let f = self.frame(sv, c, &look, reply);
            s.push_back(("s>c answer to the fragmented datagram".into(), f));
        }
        s
    }
}

/// Spoils the L4 checksum of an unfragmented TCP, UDP or ICMP frame.
fn bad_checksum(f: &mut [u8]) {
    let Ok(info) = dataplane::wire::parse_frame(f) else {
        return;
    };
    if !matches!(info.frag, dataplane::wire::Fragment::None) {
        return;
    }
    let Some(k) = info.flow else { return };
    let at = match k.proto {
        6 => 16,
        17 => 6,
        1 | 58 => 2,
        _ => return,
    };
    let Some(l4) = info.l4_bytes(f) else { return };
    if l4.len() < at + 2 || (k.proto == 17 && l4[at] == 0 && l4[at + 1] == 0) {
        return;
    }
    let off = f.len() - l4.len() + at;
    f[off] ^= 0x5a;
}

fn is_inside(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.octets()[0] == 10,
        IpAddr::V6(a) => a.segments()[0] & 0xff00 == 0xfd00,
    }
}

/// The rule sets and traffic of `seed`.
pub fn generate(seed: u64) -> Generated {
    generate_for(seed, false)
}

/// [`generate`], or with `legacy` for a Linux side loaded through iptables-legacy: then the
/// sets may also hold what iptables-nft translates differently from x_tables (a NONE
/// `--tcp-flags` mask, `! --sport A ! --dport B`).
pub fn generate_for(seed: u64, legacy: bool) -> Generated {
    let mut r = Rng(SplitMix64(seed ^ 0x005e_ed0f_d1ff));
    let mut pools = Pools::new(&mut r);
    pools.legacy = legacy;
    let (rampart4, linux4) = rule_set(&mut r, &pools, Fam::V4);
    let (rampart6, linux6) = rule_set(&mut r, &pools, Fam::V6);
    let mut flows = Flows {
        r: Rng(SplitMix64(r.0.next_u64())),
        pools: &pools,
        // Fragment identifiers differ between seeds, which share one Linux bridge.
        ident: (seed as u32).wrapping_mul(64),
    };
    let mut scripts = Vec::new();
    let n = 20 + flows.r.below(20);
    for _ in 0..n {
        let fam = if flows.r.pct(50) { Fam::V4 } else { Fam::V6 };
        let s = match flows.r.weighted(&[40, 25, 15, 5, 5, 8]) {
            0 => flows.tcp(fam),
            1 => flows.udp(fam),
            2 => flows.echo(fam),
            3 => flows.icmp_other(fam),
            4 => flows.other_proto(fam),
            _ => flows.fragmented(fam),
        };
        scripts.push(s);
    }
    let mut mix = SplitMix64(flows.r.0.next_u64());
    let frames = crate::interleave(scripts, 4, &mut mix);
    let (what, frames) = frames.into_iter().unzip();
    Generated {
        seed,
        rampart4,
        rampart6,
        linux4,
        linux6,
        frames,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sets_and_frames() {
        let (a, b) = (generate(7), generate(7));
        assert_ne!(generate(8).frames, b.frames);
        assert_eq!(
            (a.rampart4, a.linux6, a.frames),
            (b.rampart4, b.linux6, b.frames)
        );
    }

    #[test]
    fn frames_parse() {
        for seed in 0..50 {
            let g = generate(seed);
            for (f, w) in g.frames.iter().zip(&g.what) {
                assert!(dataplane::wire::parse_frame(f).is_ok(), "seed {seed}: {w}");
            }
        }
    }

    #[test]
    fn rampart_loads_every_generated_set() {
        use dataplane::wire::Family;
        let ports = ["inside".to_string(), "outside".to_string()];
        let (mut physdev, mut iface) = (0, 0);
        for seed in 0..500 {
            let g = generate(seed);
            for (text, family) in [(&g.rampart4, Family::V4), (&g.rampart6, Family::V6)] {
                physdev += text.matches("-m physdev").count();
                iface += text.matches(" -i ").count() + text.matches(" -o ").count();
                let parsed =
                    control::rules::parse_iptables("gen", text, family, &ports).and_then(|p| {
                        control::rules::compile_parsed(&p, control::rules::Hook::Forward)?;
                        control::rules::compile_raw(&p)
                    });
                if let Err(e) = parsed {
                    panic!("seed {seed}: {e:?}\n{text}");
                }
            }
        }
        // Both spellings of Rampart's interface matches are drawn.
        assert!(
            physdev > 100 && iface > 100,
            "physdev {physdev}, -i/-o {iface}"
        );
    }
}
