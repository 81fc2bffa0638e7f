//! Seeded nat tables and traffic for router mode, judged against a Linux router
//! (`tests/tests/router_natgen.rs`).
//!
//! [`generate`] turns a `u64` seed into a rule set per family (nat PREROUTING DNAT,
//! POSTROUTING SNAT and MASQUERADE, user chains with RETURN; filter FORWARD with a policy,
//! `--ctstate` and REJECT) and a script of steps: frames sent by the hosts on either side of
//! the router, and answers built from what the router delivered at an earlier step (a server's
//! SYN/ACK, data and FIN, a UDP response, an echo reply, a port unreachable quoting the
//! delivered packet, a time exceeded from the gateway beyond the router). An answer is built
//! from each router's own output, so the port or address a router chose need not be known in
//! advance: the replies go to whatever it chose, and whether they reach the right client is
//! compared.
//!
//! [`LinuxRouter`] runs a script through a Linux router namespace (frames in and out through
//! `AF_PACKET` sockets on the far ends of its two veth pairs, a python3 helper holding them);
//! [`rampart_run`] through `rampart replay` in router mode. Replay is a batch: answers are
//! built from the previous run's output and the capture replayed again until nothing changes
//! (replay is deterministic, and an answer depends only on earlier steps). [`compare`] holds
//! the two to the same packets on the same ports, with translated endpoints equal where Linux's
//! choice is deterministic (a source port kept when free, DNAT to one address, the first port
//! of a range), and otherwise by what Linux guarantees: the endpoint is in the rule's range,
//! a kept port is kept by both, and one connection's endpoint maps to one endpoint throughout.

use dataplane::classify::classbench::SplitMix64;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use dataplane::wire::MacAddr;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Which side of the router a frame is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Inside,
    Outside,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }
}

/// How an answer is built from the frame the router delivered at the step it answers: from
/// that frame's destination back to its source, on the side it came out.
#[derive(Clone, Debug)]
pub enum Answer {
    Tcp {
        flags: Flags,
        seq: u32,
        ack: u32,
        payload: Vec<u8>,
    },
    Udp(Vec<u8>),
    /// An echo reply with the request's identifier and sequence.
    Echo,
    /// Port unreachable from the delivered packet's destination, quoting it.
    PortUnreachable,
    /// Time exceeded from the gateway beyond the router, quoting the delivered packet.
    TimeExceeded,
    /// Piece `piece` (from 0) of the answer `whole` cut into fragments of `chunk` L4 bytes,
    /// with identification `ident`; not sent when the answer has fewer pieces.
    Frag {
        whole: Box<Answer>,
        chunk: usize,
        piece: usize,
        ident: u16,
    },
}

/// One step of a script.
#[derive(Clone, Debug)]
pub enum Step {
    Send { side: Side, frame: Vec<u8> },
    Answer { of: usize, answer: Answer },
}

/// One seed's rule sets, script and the endpoint ranges whose choice is Linux's own.
pub struct Generated {
    pub seed: u64,
    pub rampart4: String,
    pub rampart6: String,
    pub linux4: String,
    pub linux6: String,
    pub steps: Vec<Step>,
    pub what: Vec<String>,
    pub loose: Vec<Loose>,
}

/// A translation target whose endpoint Linux chooses by its own hash or random draw: an
/// address range, a port range, or a port class (no `--to-ports`).
#[derive(Clone, Debug)]
pub struct Loose {
    pub lo: IpAddr,
    pub hi: IpAddr,
    pub ports: (u16, u16),
    /// `--random` / `--random-fully`: a port in range is not kept.
    pub random: bool,
}

// The addressing of both routers.
const NET4_IN: [u8; 3] = [10, 9, 0];
/// Public addresses of the router's outside port (/32 each): the first only for DNAT without
/// ports, the others also as SNAT pools (see [`rule_sets`]).
const PUB4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
    Ipv4Addr::new(192, 0, 2, 4),
    Ipv4Addr::new(192, 0, 2, 5),
];
const R4_IN: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const R4_OUT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const GW4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
const R6_IN: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 1);
const R6_OUT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);
const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 0x254);

fn pub6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 2 + i as u16)
}

/// The router's MACs in the Linux namespace (`ri`, `ro`).
pub const LINUX_MAC: [[u8; 6]; 2] = [[2, 0x52, 0, 0, 0, 1], [2, 0x52, 0, 0, 0, 2]];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fam {
    V4,
    V6,
}

/// Hosts of one family.
struct Hosts {
    fam: Fam,
    inside: Vec<IpAddr>,
    /// On the outside link (first) and beyond the gateway.
    outside: Vec<IpAddr>,
    public: Vec<IpAddr>,
    router_in: IpAddr,
    router_out: IpAddr,
}

impl Hosts {
    fn new(fam: Fam) -> Hosts {
        match fam {
            Fam::V4 => Hosts {
                fam,
                inside: (2..7)
                    .map(|h| IpAddr::V4(Ipv4Addr::new(NET4_IN[0], NET4_IN[1], NET4_IN[2], h)))
                    .collect(),
                outside: [20, 21, 22]
                    .map(|h| IpAddr::V4(Ipv4Addr::new(203, 0, 113, h)))
                    .into_iter()
                    .chain([5, 6, 7].map(|h| IpAddr::V4(Ipv4Addr::new(198, 51, 100, h))))
                    .collect(),
                public: PUB4.iter().map(|&a| IpAddr::V4(a)).collect(),
                router_in: IpAddr::V4(R4_IN),
                router_out: IpAddr::V4(R4_OUT),
            },
            Fam::V6 => Hosts {
                fam,
                inside: (2..7)
                    .map(|h| IpAddr::V6(Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, h)))
                    .collect(),
                outside: [0x20, 0x21, 0x22]
                    .map(|h| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, h)))
                    .into_iter()
                    .chain(
                        [5, 6, 7]
                            .map(|h| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 9, 1, 0, 0, 0, h))),
                    )
                    .collect(),
                public: (0..4).map(|i| IpAddr::V6(pub6(i))).collect(),
                router_in: IpAddr::V6(R6_IN),
                router_out: IpAddr::V6(R6_OUT),
            },
        }
    }

    fn inside_net(&self) -> &'static str {
        match self.fam {
            Fam::V4 => "10.9.0.0/24",
            Fam::V6 => "fd00:9::/64",
        }
    }

    fn host_len(&self) -> u8 {
        match self.fam {
            Fam::V4 => 32,
            Fam::V6 => 128,
        }
    }

    fn icmp(&self) -> &'static str {
        match self.fam {
            Fam::V4 => "icmp",
            Fam::V6 => "ipv6-icmp",
        }
    }
}

/// The MAC a host's frames carry (and the router's permanent neighbour entry gives).
pub fn host_mac(a: IpAddr) -> MacAddr {
    let o = match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets()[12..].to_vec(),
    };
    let fam = if a.is_ipv4() { 4 } else { 6 };
    MacAddr([2, fam, o[0], o[1], o[2], o[3]])
}

struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
    fn pct(&mut self, p: u64) -> bool {
        self.0.percent(p)
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())].clone()
    }
    fn neg(&mut self, p: u64) -> &'static str {
        if self.pct(p) {
            "! "
        } else {
            ""
        }
    }
}

/// Server ports: what DNAT rules publish and clients ask for.
const SERVER_PORTS: [u16; 6] = [22, 53, 80, 443, 8080, 5300];
/// Ports DNAT moves connections to.
const TARGET_PORTS: [u16; 4] = [8000, 8001, 8002, 9000];
/// Client ports, far from the server ports (SNAT never meets a published port).
const CLIENT_PORTS: (u16, u16) = (30000, 30040);

fn fmt_ep(a: IpAddr, port: Option<String>) -> String {
    match (a, port) {
        (IpAddr::V6(v), Some(p)) => format!("[{v}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

fn addr_range(lo: IpAddr, hi: IpAddr) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// A rule set per family; `{IN}`/`{OUT}` stand for the interface names.
fn rule_set(r: &mut Rng, h: &Hosts, loose: &mut Vec<Loose>) -> String {
    let mut s = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    let user_pre = r.pct(40);
    let user_post = r.pct(30);
    if user_pre {
        s += ":PORTFWD - [0:0]\n";
    }
    if user_post {
        s += ":OUTBOUND - [0:0]\n";
    }
    let mut pre = Vec::new();
    let mut chain_pre = Vec::new();
    // PREROUTING: DNAT of public endpoints to inside servers.
    for _ in 0..1 + r.below(4) {
        let proto = r.pick(&["tcp", "udp", "tcp", "icmp"]);
        let proto = if proto == "icmp" { h.icmp() } else { proto };
        let l4 = proto == "tcp" || proto == "udp";
        let with_port = l4 && r.pct(80);
        // The first public address is only published whole (no port); the others only by
        // port, so SNAT to them never meets a published endpoint (Rampart's SNAT skips those).
        let addr = if with_port {
            r.pick(&[h.public[1], h.public[2], h.router_out])
        } else {
            h.public[0]
        };
        let port = with_port.then(|| r.pick(&SERVER_PORTS));
        let mut m = String::new();
        if r.pct(20) {
            let _ = write!(m, "{}-i {{OUT}} ", r.neg(10));
        }
        let _ = write!(m, "-d {addr}/{} -p {proto} ", h.host_len());
        if let Some(p) = port {
            if r.pct(25) {
                let other = r.pick(&SERVER_PORTS);
                if other != p {
                    let (a, b) = (p.min(other), p.max(other));
                    let _ = write!(m, "-m multiport --dports {a},{b} ");
                } else {
                    let _ = write!(m, "-m {proto} --dport {p} ");
                }
            } else {
                let _ = write!(m, "-m {proto} --dport {p} ");
            }
        }
        if r.pct(15) {
            let src = r.pick(&h.outside);
            let _ = write!(m, "{}-s {src}/{} ", r.neg(40), h.host_len());
        }
        // The target: one server, a range of two, a port, a port range.
        // A range holds the last two inside hosts, which no filter rule names: which one
        // a connection gets is each router's own choice, and must not change its fate.
        let (lo, hi) = if r.pct(20) {
            (h.inside[3], h.inside[4])
        } else {
            let server = r.pick(&h.inside);
            (server, server)
        };
        let ports = if l4 && r.pct(50) {
            let p = r.pick(&TARGET_PORTS);
            if r.pct(30) {
                Some((p, p + 2))
            } else {
                Some((p, p))
            }
        } else {
            None
        };
        let to = match (h.fam, lo == hi, ports) {
            (_, true, None) => lo.to_string(),
            (Fam::V4, _, None) => format!("{lo}-{hi}"),
            (Fam::V6, _, None) => format!("{lo}-{hi}"),
            (Fam::V6, _, Some((a, b))) => {
                let p = if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                };
                if lo == hi {
                    format!("[{lo}]:{p}")
                } else {
                    format!("[{lo}-{hi}]:{p}")
                }
            }
            (Fam::V4, _, Some((a, b))) => {
                let p = if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                };
                format!("{}:{p}", addr_range(lo, hi))
            }
        };
        if lo != hi {
            loose.push(Loose {
                lo,
                hi,
                ports: ports.unwrap_or((1, 65535)),
                random: false,
            });
        }
        let rule = format!("{m}-j DNAT --to-destination {to}");
        if user_pre && r.pct(60) {
            chain_pre.push(rule);
        } else {
            pre.push(rule);
        }
    }
    for rule in &pre {
        let _ = writeln!(s, "-A PREROUTING {rule}");
    }
    if user_pre {
        let _ = writeln!(
            s,
            "-A PREROUTING {}-i {{IN}} -j PORTFWD",
            if r.pct(50) { "! " } else { "" }
        );
        if r.pct(60) {
            let src = r.pick(&h.outside);
            let _ = writeln!(s, "-A PORTFWD -s {src}/{} -j RETURN", h.host_len());
        }
        for rule in &chain_pre {
            let _ = writeln!(s, "-A PORTFWD {rule}");
        }
    }
    // POSTROUTING: MASQUERADE and SNAT out of the outside port, hairpin MASQUERADE inside.
    let mut post = Vec::new();
    if r.pct(50) {
        // Hairpin: inside to inside through a public address comes back translated.
        post.push(format!(
            "-s {net} -d {net} -j MASQUERADE",
            net = h.inside_net()
        ));
        loose.push(Loose {
            lo: h.router_in,
            hi: h.router_in,
            ports: (1, 65535),
            random: false,
        });
    }
    for _ in 0..1 + r.below(3) {
        let mut m = String::new();
        if r.pct(80) {
            let _ = write!(m, "-o {{OUT}} ");
        }
        match r.below(4) {
            0 => {
                let src = r.pick(&h.inside);
                let _ = write!(m, "{}-s {src}/{} ", r.neg(30), h.host_len());
            }
            1 => {
                let _ = write!(m, "-s {} ", h.inside_net());
            }
            _ => {}
        }
        match r.below(5) {
            0 => {
                let p = r.pick(&["tcp", "udp"]);
                let _ = write!(
                    m,
                    "-p {p} -m {p} {}--dport {} ",
                    r.neg(20),
                    r.pick(&SERVER_PORTS)
                );
            }
            1 => {
                let p = r.pick(&["tcp", "udp"]);
                let _ = write!(
                    m,
                    "-p {p} -m multiport --dports {},{} ",
                    SERVER_PORTS[0], SERVER_PORTS[2]
                );
            }
            2 => {
                let _ = write!(m, "{}-p {} ", r.neg(30), r.pick(&["tcp", "udp", h.icmp()]));
            }
            _ => {}
        }
        if r.pct(20) {
            let d = r.pick(&h.outside);
            let _ = write!(m, "{}-d {d}/{} ", r.neg(30), h.host_len());
        }
        // Port ranges within the client ports keep some ports and move the rest.
        let ports = match r.below(4) {
            0 => Some((CLIENT_PORTS.0 + 10, CLIENT_PORTS.0 + 30)),
            1 => Some((40000, 40020)),
            _ => None,
        };
        let port_ok = m.contains("-p tcp") || m.contains("-p udp");
        let ports = ports.filter(|_| port_ok && !m.contains("! -p"));
        let random = match r.below(6) {
            0 => " --random",
            1 => " --random-fully",
            _ => "",
        };
        let persistent = if r.pct(15) { " --persistent" } else { "" };
        let masq = r.pct(40) && m.contains("-o {OUT}");
        let target = if masq {
            loose.push(Loose {
                lo: h.router_out,
                hi: h.router_out,
                ports: ports.unwrap_or((1, 65535)),
                random: !random.is_empty(),
            });
            match ports {
                Some((a, b)) => format!("MASQUERADE --to-ports {a}-{b}{random}"),
                None => format!("MASQUERADE{random}"),
            }
        } else {
            let (lo, hi) = match r.below(3) {
                0 => (h.router_out, h.router_out),
                1 => (h.public[1], h.public[1]),
                _ => (h.public[1], h.public[3]),
            };
            loose.push(Loose {
                lo,
                hi,
                ports: ports.unwrap_or((1, 65535)),
                random: !random.is_empty(),
            });
            let to = match (h.fam, ports) {
                (Fam::V6, Some((a, b))) if lo != hi => format!("[{lo}-{hi}]:{a}-{b}"),
                (_, p) => fmt_ep_range(lo, hi, p),
            };
            format!("SNAT --to-source {to}{random}{persistent}")
        };
        post.push(format!("{m}-j {target}"));
    }
    if user_post {
        let _ = writeln!(s, "-A POSTROUTING -o {{OUT}} -j OUTBOUND");
        let n = post.len();
        for (i, rule) in post.into_iter().enumerate() {
            if i == n / 2 && r.pct(70) {
                let src = r.pick(&h.inside);
                let _ = writeln!(s, "-A OUTBOUND -s {src}/{} -j RETURN", h.host_len());
            }
            let _ = writeln!(s, "-A OUTBOUND {rule}");
        }
    } else {
        for rule in post {
            let _ = writeln!(s, "-A POSTROUTING {rule}");
        }
    }
    s += "COMMIT\n*filter\n:INPUT DROP [0:0]\n";
    let policy = if r.pct(50) { "ACCEPT" } else { "DROP" };
    let _ = writeln!(s, ":FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]");
    let _ = writeln!(s, "-A INPUT -p {} -j ACCEPT", h.icmp());
    if r.pct(85) {
        s += "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
    }
    if r.pct(30) {
        s += "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n";
    }
    for _ in 0..r.below(4) {
        let mut m = String::new();
        if r.pct(40) {
            let (a, b) = if r.pct(50) {
                ("IN", "OUT")
            } else {
                ("OUT", "IN")
            };
            let _ = write!(m, "-i {{{a}}} ");
            if r.pct(50) {
                let _ = write!(m, "{}-o {{{b}}} ", r.neg(20));
            }
        }
        if r.pct(30) {
            let a = r.pick(&h.inside[..3]);
            let _ = write!(m, "{}-d {a}/{} ", r.neg(20), h.host_len());
        }
        if r.pct(30) {
            let a = r.pick(&h.outside);
            let _ = write!(m, "{}-s {a}/{} ", r.neg(20), h.host_len());
        }
        let proto = r.pick(&["tcp", "udp", h.icmp(), ""]);
        if !proto.is_empty() {
            let _ = write!(m, "-p {proto} ");
            if (proto == "tcp" || proto == "udp") && r.pct(50) {
                let p = r.pick(&TARGET_PORTS);
                let _ = write!(m, "-m {proto} {}--dport {p} ", r.neg(20));
            }
        }
        if r.pct(25) {
            let _ = write!(m, "-m conntrack {}--ctstate DNAT ", r.neg(25));
        }
        let target = match r.below(6) {
            0 | 1 => "ACCEPT".to_string(),
            2 | 3 => "DROP".to_string(),
            4 if proto == "tcp" => "REJECT --reject-with tcp-reset".to_string(),
            _ => match h.fam {
                Fam::V4 => "REJECT --reject-with icmp-port-unreachable".to_string(),
                Fam::V6 => "REJECT --reject-with icmp6-port-unreachable".to_string(),
            },
        };
        let _ = writeln!(s, "-A FORWARD {m}-j {target}");
    }
    if r.pct(40) {
        s += "-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT\n";
    }
    if policy == "DROP" || r.pct(30) {
        let _ = writeln!(s, "-A FORWARD -s {} -j ACCEPT", h.inside_net());
    }
    s += "COMMIT\n";
    s
}

fn fmt_ep_range(lo: IpAddr, hi: IpAddr, ports: Option<(u16, u16)>) -> String {
    let p = ports.map(|(a, b)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    });
    if lo == hi {
        fmt_ep(lo, p)
    } else {
        match p {
            Some(p) => format!("{lo}-{hi}:{p}"),
            None => format!("{lo}-{hi}"),
        }
    }
}

/// A flow's steps, answers by index within the flow.
type Flow = VecDeque<(usize, Step, String)>;

struct Draw<'a> {
    r: Rng,
    h: &'a Hosts,
    ttl_ident: u16,
    used_ports: Vec<u16>,
}

fn ip_spec(src: IpAddr, dst: IpAddr, ttl: u8, ident: u16) -> IpSpec {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpSpec::V4 {
            src: s,
            dst: d,
            ttl,
            ident,
            dont_frag: true,
            options: Vec::new(),
        },
        (IpAddr::V6(s), IpAddr::V6(d)) => IpSpec::V6 {
            src: s,
            dst: d,
            hop_limit: ttl,
            ident: 0,
            ext: Vec::new(),
        },
        _ => unreachable!("one family"),
    }
}

fn build(src: IpAddr, dst: IpAddr, ttl: u8, ident: u16, l4: L4Spec, dst_mac: MacAddr) -> Vec<u8> {
    let mut f = FrameSpec::new(ip_spec(src, dst, ttl, ident), l4);
    f.src_mac = host_mac(src);
    f.dst_mac = dst_mac;
    f.build()
}

/// Sets the TOS (traffic class) of a built frame, fixing the IPv4 header checksum.
fn set_tos(frame: &mut [u8], tos: u8) {
    if frame[14] >> 4 == 4 {
        frame[15] = tos;
        frame[24..26].fill(0);
        let c = !fold(sum16(&frame[14..34], 0));
        frame[24..26].copy_from_slice(&c.to_be_bytes());
    } else {
        frame[14] = 0x60 | (tos >> 4);
        frame[15] = (tos << 4) | (frame[15] & 0x0f);
    }
}

/// The router's MAC on `side` as the Linux router has it (replay writes its own).
fn router_mac(side: Side) -> MacAddr {
    MacAddr(LINUX_MAC[side as usize])
}

impl Draw<'_> {
    fn client_port(&mut self) -> u16 {
        // Now and then a port another flow used: a clash for a single-address SNAT.
        if !self.used_ports.is_empty() && self.r.pct(12) {
            return self.r.pick(&self.used_ports);
        }
        let p = CLIENT_PORTS.0 + self.r.below(usize::from(CLIENT_PORTS.1 - CLIENT_PORTS.0)) as u16;
        self.used_ports.push(p);
        p
    }

    fn send(&mut self, side: Side, src: IpAddr, dst: IpAddr, ttl: u8, l4: L4Spec) -> Step {
        self.ttl_ident = self.ttl_ident.wrapping_add(1);
        let mut frame = build(src, dst, ttl, self.ttl_ident, l4, router_mac(side));
        if ttl == 1 && self.r.pct(50) {
            // The router's time exceeded carries the probe's TOS under its own precedence.
            set_tos(&mut frame, self.r.pick(&[0x10, 0xb8, 0x04, 0x02, 0x28]));
        }
        Step::Send { side, frame }
    }

    /// A flow: who talks to whom and what.
    fn flow(&mut self) -> Flow {
        let kind = self.r.below(10);
        let (side, src, dst) = self.ends();
        let dport = if self.r.pct(80) {
            self.r.pick(&SERVER_PORTS)
        } else {
            self.r.pick(&TARGET_PORTS)
        };
        self.flow_of(kind, side, src, dst, dport)
    }

    /// Who talks to whom: the side the first packet comes in by, its source and destination.
    fn ends(&mut self) -> (Side, IpAddr, IpAddr) {
        let h = self.h;
        // Direction: outbound (inside client), inbound (outside client to a public or inside
        // address), hairpin (inside client to a public address).
        let dir = self.r.below(10);
        if dir < 5 {
            (
                Side::Inside,
                self.r.pick(&h.inside),
                self.r.pick(&h.outside),
            )
        } else if dir < 8 {
            let dst = if self.r.pct(80) {
                self.r
                    .pick(&[h.public[0], h.public[1], h.public[2], h.router_out])
            } else {
                self.r.pick(&h.inside)
            };
            (Side::Outside, self.r.pick(&h.outside), dst)
        } else {
            let dst = self
                .r
                .pick(&[h.public[0], h.public[1], h.public[2], h.router_out]);
            (Side::Inside, self.r.pick(&h.inside), dst)
        }
    }

    fn flow_of(&mut self, kind: usize, side: Side, src: IpAddr, dst: IpAddr, dport: u16) -> Flow {
        let h = self.h;
        let ttl = if self.r.pct(8) { 1 } else { 64 };
        let what = format!("{src} -> {dst}");
        let mut f: Flow = VecDeque::new();
        let push = |f: &mut Flow, s: Step, w: String| {
            let i = f.len();
            f.push_back((i, s, w));
        };
        match kind {
            0..=3 => {
                let sport = self.client_port();
                let c = 1000 + u32::from(sport);
                let sv = 70000;
                let syn = self.send(
                    side,
                    src,
                    dst,
                    ttl,
                    L4Spec::tcp_segment(sport, dport, Flags::SYN, c, 0, &[]),
                );
                push(&mut f, syn, format!("tcp SYN {what}:{dport} from {sport}"));
                if self.r.pct(10) {
                    push(
                        &mut f,
                        Step::Answer {
                            of: 0,
                            answer: Answer::PortUnreachable,
                        },
                        "port unreachable for the SYN".into(),
                    );
                    return f;
                }
                if self.r.pct(10) {
                    push(
                        &mut f,
                        Step::Answer {
                            of: 0,
                            answer: Answer::Tcp {
                                flags: Flags::RST | Flags::ACK,
                                seq: 0,
                                ack: c + 1,
                                payload: vec![],
                            },
                        },
                        "refused".into(),
                    );
                    return f;
                }
                push(
                    &mut f,
                    Step::Answer {
                        of: 0,
                        answer: Answer::Tcp {
                            flags: Flags::SYN | Flags::ACK,
                            seq: sv,
                            ack: c + 1,
                            payload: vec![],
                        },
                    },
                    "SYN/ACK".into(),
                );
                let a = self.send(
                    side,
                    src,
                    dst,
                    64,
                    L4Spec::tcp_segment(sport, dport, Flags::ACK, c + 1, sv + 1, &[]),
                );
                push(&mut f, a, "ACK".into());
                let d = self.send(
                    side,
                    src,
                    dst,
                    64,
                    L4Spec::tcp_segment(
                        sport,
                        dport,
                        Flags::ACK | Flags::PSH,
                        c + 1,
                        sv + 1,
                        b"GET / HTTP/1.0\r\n\r\n",
                    ),
                );
                push(&mut f, d, "data".into());
                push(
                    &mut f,
                    Step::Answer {
                        of: 0,
                        answer: Answer::Tcp {
                            flags: Flags::ACK | Flags::PSH,
                            seq: sv + 1,
                            ack: c + 19,
                            payload: b"HTTP/1.0 200 OK\r\n".to_vec(),
                        },
                    },
                    "response".into(),
                );
                if self.r.pct(15) {
                    push(
                        &mut f,
                        Step::Answer {
                            of: 0,
                            answer: Answer::TimeExceeded,
                        },
                        "time exceeded quoting the SYN".into(),
                    );
                }
                // The client ends it: a RST now and then, else a FIN and the close.
                let reset = self.r.pct(20);
                let (flags, what) = if reset {
                    (Flags::RST | Flags::ACK, "RST")
                } else {
                    (Flags::FIN | Flags::ACK, "FIN")
                };
                let end = self.send(
                    side,
                    src,
                    dst,
                    64,
                    L4Spec::tcp_segment(sport, dport, flags, c + 19, sv + 18, &[]),
                );
                push(&mut f, end, what.into());
                if reset {
                    return f;
                }
                push(
                    &mut f,
                    Step::Answer {
                        of: 0,
                        answer: Answer::Tcp {
                            flags: Flags::FIN | Flags::ACK,
                            seq: sv + 18,
                            ack: c + 20,
                            payload: vec![],
                        },
                    },
                    "FIN/ACK".into(),
                );
                let last = self.send(
                    side,
                    src,
                    dst,
                    64,
                    L4Spec::tcp_segment(sport, dport, Flags::ACK, c + 20, sv + 19, &[]),
                );
                push(&mut f, last, "last ACK".into());
            }
            4..=6 => {
                let sport = self.client_port();
                let q = self.send(side, src, dst, ttl, L4Spec::udp(sport, dport, b"query"));
                push(&mut f, q, format!("udp {what}:{dport} from {sport}"));
                match self.r.below(6) {
                    0 => push(
                        &mut f,
                        Step::Answer {
                            of: 0,
                            answer: Answer::PortUnreachable,
                        },
                        "port unreachable".into(),
                    ),
                    1 => push(
                        &mut f,
                        Step::Answer {
                            of: 0,
                            answer: Answer::TimeExceeded,
                        },
                        "time exceeded".into(),
                    ),
                    _ => {
                        push(
                            &mut f,
                            Step::Answer {
                                of: 0,
                                answer: Answer::Udp(b"answer".to_vec()),
                            },
                            "response".into(),
                        );
                        if self.r.pct(40) {
                            let q2 =
                                self.send(side, src, dst, 64, L4Spec::udp(sport, dport, b"again"));
                            push(&mut f, q2, "second query".into());
                            push(
                                &mut f,
                                Step::Answer {
                                    of: 2,
                                    answer: Answer::Udp(b"second".to_vec()),
                                },
                                "second response".into(),
                            );
                        }
                    }
                }
            }
            _ => {
                let id = self.client_port() - 20000;
                let echo = match h.fam {
                    Fam::V4 => L4Spec::icmp_echo(id, 1),
                    Fam::V6 => L4Spec::icmpv6_echo(id, 1),
                };
                let e = self.send(side, src, dst, ttl, echo);
                push(&mut f, e, format!("echo {what} id {id}"));
                if self.r.pct(15) {
                    push(
                        &mut f,
                        Step::Answer {
                            of: 0,
                            answer: Answer::TimeExceeded,
                        },
                        "time exceeded".into(),
                    );
                } else {
                    push(
                        &mut f,
                        Step::Answer {
                            of: 0,
                            answer: Answer::Echo,
                        },
                        "echo reply".into(),
                    );
                }
            }
        }
        f
    }

    /// A UDP datagram or echo request in 2 or 3 fragments, sent in order or not, and its
    /// answer, now and then in fragments too. The fragments' bytes are letters, never an ICMP
    /// type the noise filters drop.
    fn fragmented(&mut self, ident: u16) -> Flow {
        let (side, src, mut dst) = self.ends();
        if dst == self.h.router_out {
            dst = self.h.public[0];
        }
        // No echo request to an address the router owns (the public ones are its own unless
        // a DNAT rule moves them): Rampart answers only an unfragmented echo request to its
        // own address (docs/conntrack-vs-netfilter.md).
        let udp = self.r.pct(60) || self.h.public.contains(&dst);
        let chunk = self.r.pick(&[256usize, 400, 512]);
        // 8 + n L4 bytes: more than one chunk, less than three, the last fragment longer than
        // a Fragment header (else Linux sends the reassembled IPv6 datagram whole: it fits the
        // largest fragment, docs/conntrack-vs-netfilter.md).
        let n = chunk + 8 + self.r.below(2 * chunk - 16);
        let salt = self.r.below(26);
        let payload: Vec<u8> = (0..n).map(|i| b'a' + ((i * 7 + salt) % 26) as u8).collect();
        let sport = self.client_port();
        let (l4, what) = if udp {
            let dport = self.r.pick(&SERVER_PORTS);
            (
                L4Spec::udp(sport, dport, &payload),
                format!("udp {src} -> {dst}:{dport} from {sport}, {n} bytes"),
            )
        } else {
            let id = sport - 20000;
            let l4 = match self.h.fam {
                Fam::V4 => L4Spec::Icmp {
                    ty: 8,
                    code: 0,
                    ident: id,
                    seq: 1,
                    payload: payload.clone(),
                },
                Fam::V6 => L4Spec::Icmpv6 {
                    ty: 128,
                    code: 0,
                    ident: id,
                    seq: 1,
                    payload: payload.clone(),
                },
            };
            (l4, format!("echo {src} -> {dst} id {id}, {n} bytes"))
        };
        let mut spec = ip_spec(src, dst, 64, ident);
        match &mut spec {
            IpSpec::V4 { dont_frag, .. } => *dont_frag = false,
            IpSpec::V6 { ident: i, .. } => *i = 0x0600_0000 | u32::from(ident),
        }
        let mut fs = FrameSpec::new(spec, l4);
        fs.src_mac = host_mac(src);
        fs.dst_mac = router_mac(side);
        let pieces = fs.fragments(chunk);
        let k = pieces.len();
        let mut order: Vec<usize> = (0..k).collect();
        match self.r.below(4) {
            0 => order.reverse(),
            1 => order.rotate_left(1),
            _ => {}
        }
        let mut f: Flow = VecDeque::new();
        for (j, &at) in order.iter().enumerate() {
            let w = if j == 0 {
                format!("{what}: fragment {}/{k}", at + 1)
            } else {
                format!("fragment {}/{k}", at + 1)
            };
            f.push_back((
                j,
                Step::Send {
                    side,
                    frame: pieces[at].clone(),
                },
                w,
            ));
        }
        // The datagram leaves when its last fragment comes in.
        let of = k - 1;
        let plain = if udp {
            Answer::Udp(b"answer".to_vec())
        } else {
            Answer::Echo
        };
        if self.r.pct(50) {
            f.push_back((k, Step::Answer { of, answer: plain }, "answer".into()));
            return f;
        }
        // The answer in two fragments (an echo reply carries the first fragment's data).
        let (whole, c2) = if udp {
            let m = 300 + self.r.below(200);
            let data: Vec<u8> = (0..m).map(|i| b'A' + ((i * 5 + salt) % 26) as u8).collect();
            (Answer::Udp(data), 256)
        } else {
            (plain, (chunk / 2) & !7)
        };
        let mut pieces: Vec<usize> = vec![0, 1];
        if self.r.pct(30) {
            pieces.reverse();
        }
        for (j, piece) in pieces.into_iter().enumerate() {
            f.push_back((
                k + j,
                Step::Answer {
                    of,
                    answer: Answer::Frag {
                        whole: Box::new(whole.clone()),
                        chunk: c2,
                        piece,
                        ident: ident ^ 0x8000,
                    },
                },
                format!("answer fragment {}/2", piece + 1),
            ));
        }
        f
    }
}

/// The seed's rule sets and script.
pub fn generate(seed: u64) -> Generated {
    let mut r = Rng(SplitMix64(seed ^ 0x6e61_7467_656e));
    let mut loose = Vec::new();
    let h4 = Hosts::new(Fam::V4);
    let h6 = Hosts::new(Fam::V6);
    let t4 = rule_set(&mut r, &h4, &mut loose);
    let t6 = rule_set(&mut r, &h6, &mut loose);
    let dialect = |t: &str, linux: bool| {
        let (i, o) = if linux {
            ("ri", "ro")
        } else {
            ("inside", "outside")
        };
        t.replace("{IN}", i).replace("{OUT}", o)
    };
    let mut flows = Vec::new();
    let n = 8 + r.below(12);
    // One draw per family: its client ports are remembered across flows, so that now and then
    // two flows share one (a clash for a single-address SNAT).
    let mut draws = [&h4, &h6].map(|h| Draw {
        r: Rng(SplitMix64(r.0.next_u64())),
        h,
        ttl_ident: 0,
        used_ports: Vec::new(),
    });
    for k in 0..n {
        let d = &mut draws[usize::from(!r.pct(60))];
        d.ttl_ident = (k as u16) << 8;
        flows.push(d.flow());
    }
    let mut mix = SplitMix64(r.0.next_u64());
    // Tag every step with its flow, interleave, and turn flow-local answers into global ones.
    let tagged: Vec<VecDeque<(usize, usize, Step, String)>> = flows
        .into_iter()
        .enumerate()
        .map(|(fi, f)| f.into_iter().map(|(i, s, w)| (fi, i, s, w)).collect())
        .collect();
    let mut order = crate::interleave(tagged, 4, &mut mix);
    // Fragmented datagrams, drawn from a stream of their own and sent after the rest, so a
    // seed's other steps are what they were before fragments were drawn.
    let mut fr = Rng(SplitMix64(seed ^ 0x6672_6167_6d6e));
    let nf = 1 + fr.below(3);
    let frag_flows: Vec<VecDeque<(usize, usize, Step, String)>> = (0..nf)
        .map(|j| {
            let mut d = Draw {
                r: Rng(SplitMix64(fr.0.next_u64())),
                h: if fr.pct(50) { &h4 } else { &h6 },
                ttl_ident: 0,
                used_ports: Vec::new(),
            };
            let fi = n + j;
            d.fragmented(0x7000 | ((seed as u16 & 0xff) << 4) | j as u16)
                .into_iter()
                .map(|(i, s, w)| (fi, i, s, w))
                .collect()
        })
        .collect();
    order.extend(crate::interleave(
        frag_flows,
        4,
        &mut SplitMix64(fr.0.next_u64()),
    ));
    let mut at: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut what = Vec::new();
    for (g, (fi, i, s, w)) in order.into_iter().enumerate() {
        at.insert((fi, i), g);
        let s = match s {
            Step::Answer { of, answer } => Step::Answer {
                of: at[&(fi, of)],
                answer,
            },
            s => s,
        };
        steps.push(s);
        what.push(format!("f{fi} {w}"));
    }
    Generated {
        seed,
        rampart4: dialect(&t4, false),
        rampart6: dialect(&t6, false),
        linux4: dialect(&t4, true),
        linux6: dialect(&t6, true),
        steps,
        what,
        loose,
    }
}

// ---------------------------------------------------------------------------------------------
// Frames: reading what a router delivered, building answers.

/// An IP packet's outline.
#[derive(Clone, Debug)]
struct Pkt<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ttl: u8,
    /// The IP packet.
    ip: &'a [u8],
    /// From the L4 header on (IPv6: after the fixed header and a Fragment header; no other
    /// extension headers are drawn). A fragment's own piece of the datagram.
    l4: &'a [u8],
    /// A fragment's place in its datagram.
    frag: Option<FragAt>,
}

/// Where a fragment sits: byte offset of its data, more fragments, identification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FragAt {
    off: usize,
    more: bool,
    id: u32,
}

fn ip_of(ip: &[u8]) -> Option<Pkt<'_>> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => {
            let hl = usize::from(ip[0] & 15) * 4;
            let total = (usize::from(ip[2]) << 8 | usize::from(ip[3])).min(ip.len());
            Some(Pkt {
                src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                proto: ip[9],
                ttl: ip[8],
                ip: &ip[..total],
                l4: ip.get(hl..total)?,
                frag: (be16(ip, 6) & 0x3fff != 0).then(|| FragAt {
                    off: usize::from(be16(ip, 6) & 0x1fff) * 8,
                    more: be16(ip, 6) & 0x2000 != 0,
                    id: u32::from(be16(ip, 4)),
                }),
            })
        }
        6 if ip.len() >= 40 => {
            let a = |o: usize| {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&ip[o..o + 16]).unwrap(),
                ))
            };
            let total = (40 + (usize::from(ip[4]) << 8 | usize::from(ip[5]))).min(ip.len());
            if ip[6] == 44 && total >= 48 {
                return Some(Pkt {
                    src: a(8),
                    dst: a(24),
                    proto: ip[40],
                    ttl: ip[7],
                    ip: &ip[..total],
                    l4: &ip[48..total],
                    frag: Some(FragAt {
                        off: usize::from(be16(ip, 42) & 0xfff8),
                        more: ip[43] & 1 != 0,
                        id: be32(ip, 44),
                    }),
                });
            }
            Some(Pkt {
                src: a(8),
                dst: a(24),
                proto: ip[6],
                ttl: ip[7],
                ip: &ip[..total],
                l4: &ip[40..total],
                frag: None,
            })
        }
        _ => None,
    }
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Frames routers send that the comparison leaves out: non-IP (ARP), IGMP, ICMPv6 neighbour
/// discovery and MLD, ICMP redirects (see `docs/conntrack-vs-netfilter.md`).
pub fn is_noise(frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return true;
    }
    let Some(p) = ip_of(&frame[14..]) else {
        return true;
    };
    if p.frag.is_some_and(|f| f.off != 0) {
        return false;
    }
    match (p.src, p.proto) {
        (IpAddr::V4(_), 2) => true,
        (IpAddr::V4(_), 1) => p.l4.first() == Some(&5),
        (IpAddr::V6(_), 58) => matches!(p.l4.first(), Some(130..=137 | 143)),
        (IpAddr::V6(_), 0) => true, // hop-by-hop: MLD
        _ => false,
    }
}

/// The answer to the delivered frame `seen` (which left the router on `side`); `None` when it
/// cannot be answered (not the kind the answer expects).
fn answer(seen: &[u8], side: Side, a: &Answer) -> Option<Vec<u8>> {
    if let Answer::Frag {
        whole,
        chunk,
        piece,
        ident,
    } = a
    {
        let (src, dst, l4, mac) = answer_parts(seen, side, whole)?;
        let mut spec = ip_spec(src, dst, 64, *ident);
        match &mut spec {
            IpSpec::V4 { dont_frag, .. } => *dont_frag = false,
            IpSpec::V6 { ident: i, .. } => *i = 0x0a00_0000 | u32::from(*ident),
        }
        let mut f = FrameSpec::new(spec, l4);
        f.src_mac = host_mac(src);
        f.dst_mac = mac;
        return f.fragments(*chunk).get(*piece).cloned();
    }
    let (src, dst, l4, mac) = answer_parts(seen, side, a)?;
    Some(build(src, dst, 64, 0x4000, l4, mac))
}

/// The answer's source, destination, L4 layer and destination MAC.
fn answer_parts(seen: &[u8], side: Side, a: &Answer) -> Option<(IpAddr, IpAddr, L4Spec, MacAddr)> {
    let p = ip_of(seen.get(14..)?)?;
    let v6 = p.src.is_ipv6();
    let mac = router_mac(side);
    let quote = || {
        if v6 {
            p.ip[..p.ip.len().min(1232)].to_vec()
        } else {
            let hl = usize::from(p.ip[0] & 15) * 4;
            p.ip[..(hl + 8).min(p.ip.len())].to_vec()
        }
    };
    let icmp = |ty4: u8, ty6: u8, code: u8, payload: Vec<u8>| {
        if v6 {
            L4Spec::Icmpv6 {
                ty: ty6,
                code,
                ident: 0,
                seq: 0,
                payload,
            }
        } else {
            L4Spec::Icmp {
                ty: ty4,
                code,
                ident: 0,
                seq: 0,
                payload,
            }
        }
    };
    let ports = || (p.l4.len() >= 4).then(|| (be16(p.l4, 0), be16(p.l4, 2)));
    // A host answers what was sent to it: not the router's own echo replies and errors (an
    // "answer" to those would be a stray reply to the router, whose fate depends on which
    // address or identifier each router chose for some other connection).
    let icmp_type = matches!(p.proto, 1 | 58)
        .then(|| p.l4.first().copied())
        .flatten();
    if matches!(icmp_type, Some(t) if !matches!(t, 8 | 128)) {
        return None;
    }
    let l4 = match a {
        Answer::Tcp {
            flags,
            seq,
            ack,
            payload,
        } => {
            if p.proto != 6 {
                return None;
            }
            let (s, d) = ports()?;
            L4Spec::tcp_segment(d, s, *flags, *seq, *ack, payload)
        }
        Answer::Udp(payload) => {
            if p.proto != 17 {
                return None;
            }
            let (s, d) = ports()?;
            L4Spec::udp(d, s, payload)
        }
        Answer::Echo => {
            if !matches!(p.proto, 1 | 58) || p.l4.len() < 8 {
                return None;
            }
            let (id, sq) = (be16(p.l4, 4), be16(p.l4, 6));
            if v6 {
                L4Spec::Icmpv6 {
                    ty: 129,
                    code: 0,
                    ident: id,
                    seq: sq,
                    payload: p.l4[8..].to_vec(),
                }
            } else {
                L4Spec::Icmp {
                    ty: 0,
                    code: 0,
                    ident: id,
                    seq: sq,
                    payload: p.l4[8..].to_vec(),
                }
            }
        }
        Answer::PortUnreachable => icmp(3, 1, if v6 { 4 } else { 3 }, quote()),
        Answer::TimeExceeded => icmp(11, 3, 0, quote()),
        Answer::Frag { .. } => return None,
    };
    let src = match a {
        Answer::TimeExceeded => {
            if side == Side::Inside {
                return None;
            }
            if v6 {
                IpAddr::V6(GW6)
            } else {
                IpAddr::V4(GW4)
            }
        }
        _ => p.dst,
    };
    Some((src, p.src, l4, mac))
}

/// What a router sent in answer to each step (side, frame), noise left out; `None` for a step
/// that was not sent (it answers a step whose frame never came out).
pub type Outputs = Vec<Option<StepOut>>;

/// The frames a router sent in answer to one step: (the side they left on, the frame).
pub type StepOut = Vec<(Side, Vec<u8>)>;

/// The frame of step `i`, built from `outputs` of earlier steps.
fn frame_of(steps: &[Step], outputs: &Outputs, i: usize) -> Option<(Side, Vec<u8>)> {
    match &steps[i] {
        Step::Send { side, frame } => Some((*side, frame.clone())),
        Step::Answer { of, answer: a } => {
            let (side, seen) = outputs.get(*of)?.as_ref()?.first()?;
            Some((*side, answer(seen, *side, a)?))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Linux router.

const HELPER_PY: &str = r#"
import ctypes, os, select, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def enter(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
    finally:
        os.close(fd)
inside_ns, outside_ns, router_ns = sys.argv[1:4]
wait = float(sys.argv[4])
socks = {}
for side, ns, dev in (("inside", inside_ns, "vi"), ("outside", outside_ns, "vo")):
    enter(ns)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)
    s.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING
    s.bind((dev, 0))
    s.setblocking(False)
    socks[side] = s
enter(router_ns)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
nl.bind((0, 0))
def flush():
    # IPCTNL_MSG_CT_DELETE without attributes: every entry, both families.
    body = struct.pack("=BBH", 0, 0, 0)
    nl.send(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2, 1 | 4, 1, 0) + body)
    data = nl.recv(65536)
    n, t = struct.unpack_from("=IH", data)
    err = struct.unpack_from("=i", data, 16)[0] if t == 2 else 0
    if err != 0:
        raise OSError(-err, "conntrack flush")
def noise(f):
    if len(f) < 34:
        return True
    et = f[12] << 8 | f[13]
    if et == 0x0800:
        return f[23] == 2 or (f[23] == 1 and f[14 + (f[14] & 15) * 4] == 5)
    if et == 0x86dd:
        nh = f[20]
        return nh == 0 or (nh == 58 and (130 <= f[54] <= 137 or f[54] == 143))
    return True
def drain():
    for s in socks.values():
        while True:
            try:
                s.recv(1 << 17)
            except BlockingIOError:
                break
for line in sys.stdin:
    w = line.split()
    if w[0] == "flush":
        time.sleep(0.002)
        drain()
        flush()
        print("ok", flush=True)
        continue
    side, frame, expect = w[1], bytes.fromhex(w[2]), int(w[3])
    drain()
    socks[side].send(frame)
    got, start, last = [], time.monotonic(), None
    while True:
        now = time.monotonic()
        if len(got) >= expect:
            until = (last or start) + (0.0015 if expect else 0.003)
        else:
            until = start + wait
        if now >= until:
            break
        ready, _, _ = select.select(list(socks.values()), [], [], until - now)
        for name, s in socks.items():
            if s in ready:
                while True:
                    try:
                        f = s.recv(1 << 17)
                    except BlockingIOError:
                        break
                    if not noise(f):
                        got.append((name, f))
                        last = time.monotonic()
    for name, f in got:
        print("out", name, f.hex())
    print("end", flush=True)
"#;

fn ns_run(ns: &str, args: &[&str]) {
    let o = crate::run(Command::new("ip").args(["netns", "exec", ns]).args(args));
    assert!(
        o.status.success(),
        "{ns}: {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn ns_try(ns: &str, args: &[&str]) {
    let _ = crate::run(Command::new("ip").args(["netns", "exec", ns]).args(args));
}

/// A Linux router namespace between an inside and an outside namespace, whose far veth ends
/// (`vi`, `vo`) carry no addresses: a helper sends the script's frames on them and reports
/// what the router sends back. Deleted on drop.
pub struct LinuxRouter {
    names: [String; 3],
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl LinuxRouter {
    pub fn create() -> LinuxRouter {
        LinuxRouter::build(false)
    }

    /// The same namespaces with the middle one bare (no addresses, routes or forwarding, IPv6
    /// off on `ri` and `ro`): for a Rampart daemon on `ri`/`ro` ([`RampartRouter`]).
    pub fn create_bare() -> LinuxRouter {
        LinuxRouter::build(true)
    }

    /// The middle namespace's name.
    pub fn router_ns(&self) -> &str {
        &self.names[2]
    }

    fn build(bare: bool) -> LinuxRouter {
        let tag = crate::unique("ng");
        let names = [format!("{tag}i"), format!("{tag}o"), format!("{tag}r")];
        for n in &names {
            let o = crate::run(Command::new("ip").args(["netns", "add", n]));
            assert!(o.status.success(), "ip netns add {n}");
        }
        let [i, o, r] = [&names[0], &names[1], &names[2]];
        for (mine, peer, ns, mac) in [("ri", "vi", i, LINUX_MAC[0]), ("ro", "vo", o, LINUX_MAC[1])]
        {
            ns_run(
                r,
                &[
                    "ip", "link", "add", mine, "type", "veth", "peer", "name", peer, "netns", ns,
                ],
            );
            let mac = MacAddr(mac).to_string();
            ns_run(r, &["ip", "link", "set", mine, "address", &mac]);
            for dev_ns in [(mine, r.as_str()), (peer, ns.as_str())] {
                ns_try(
                    dev_ns.1,
                    &[
                        "ethtool", "-K", dev_ns.0, "rx", "off", "tx", "off", "tso", "off", "gso",
                        "off", "gro", "off",
                    ],
                );
            }
            ns_run(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{peer}.disable_ipv6=1"),
                ],
            );
            ns_run(ns, &["ip", "link", "set", peer, "up"]);
        }
        if bare {
            for dev in ["ri", "ro"] {
                ns_run(
                    r,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
                    ],
                );
                ns_run(r, &["ip", "link", "set", dev, "up"]);
            }
            return LinuxRouter::helper(names, 0.2);
        }
        for key in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.accept_dad=0",
        ] {
            ns_run(r, &["sysctl", "-qw", key]);
        }
        for key in [
            "net.ipv4.icmp_msgs_per_sec=100000",
            "net.ipv4.icmp_msgs_burst=100000",
        ] {
            ns_try(r, &["sysctl", "-qw", key]);
        }
        for dev in ["ri", "ro"] {
            ns_run(
                r,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{dev}.send_redirects=0"),
                ],
            );
        }
        ns_run(r, &["ip", "link", "set", "lo", "up"]);
        let (inside, outside) = router_addresses();
        for (dev, addrs) in [("ri", inside), ("ro", outside)] {
            for a in addrs {
                let mut args = vec!["ip", "addr", "add", a.as_str(), "dev", dev];
                if a.contains(':') {
                    args.push("nodad");
                }
                ns_run(r, &args);
            }
            ns_run(r, &["ip", "link", "set", dev, "up"]);
        }
        ns_run(
            r,
            &[
                "ip",
                "-4",
                "route",
                "add",
                "default",
                "via",
                &GW4.to_string(),
            ],
        );
        ns_run(
            r,
            &[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                &GW6.to_string(),
            ],
        );
        for (side, a) in neighbours() {
            let dev = if side == Side::Inside { "ri" } else { "ro" };
            ns_run(
                r,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &a.to_string(),
                    "lladdr",
                    &host_mac(a).to_string(),
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
        }
        LinuxRouter::helper(names, 0.03)
    }

    /// Starts the helper on the namespaces; `wait` is how many seconds it waits for a frame
    /// it expects.
    fn helper(names: [String; 3], wait: f64) -> LinuxRouter {
        let [i, o, r] = [&names[0], &names[1], &names[2]];
        // Carriers up (the veth peers are up) before the first frame.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut child = Command::new("python3")
            .args(["-c", HELPER_PY, i, o, r, &wait.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        LinuxRouter {
            names,
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.stdout.read_line(&mut l).expect("helper output");
        assert!(n > 0, "the helper stopped");
        l.trim_end().to_string()
    }

    /// Loads both rule sets (iptables-restore is the reference: a refusal is a generator bug)
    /// and flushes the connection table.
    pub fn load(&mut self, rules4: &str, rules6: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        for (tool, text, name) in [
            ("iptables-restore", rules4, "r4"),
            ("ip6tables-restore", rules6, "r6"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let o = crate::run(
                Command::new("ip")
                    .args(["netns", "exec", &self.names[2], tool])
                    .arg(&p),
            );
            if !o.status.success() {
                return Err(format!("{tool}: {}", String::from_utf8_lossy(&o.stderr)));
            }
        }
        writeln!(self.stdin, "flush").unwrap();
        self.stdin.flush().unwrap();
        let l = self.line();
        assert_eq!(l, "ok");
        Ok(())
    }

    /// Runs the script; `expect[i]` is how many frames step `i` is expected to give (the helper
    /// waits for them, and a little longer for more).
    pub fn run(&mut self, steps: &[Step], expect: &[usize]) -> Outputs {
        let mut outputs: Outputs = Vec::new();
        for i in 0..steps.len() {
            let Some((side, frame)) = frame_of(steps, &outputs, i) else {
                outputs.push(None);
                continue;
            };
            let got = self.send_one(side, &frame, expect.get(i).copied().unwrap_or(0));
            outputs.push(Some(got));
        }
        outputs
    }

    /// Sends `frame` on `side`; what came out (noise left out), having waited for `expect`
    /// frames.
    pub fn send_one(&mut self, side: Side, frame: &[u8], expect: usize) -> StepOut {
        writeln!(self.stdin, "send {} {} {expect}", side.name(), hex(frame)).unwrap();
        self.stdin.flush().unwrap();
        let mut got = Vec::new();
        loop {
            let l = self.line();
            if l == "end" {
                break;
            }
            let w: Vec<&str> = l.split(' ').collect();
            let side = if w[1] == "inside" {
                Side::Inside
            } else {
                Side::Outside
            };
            got.push((side, unhex(w[2])));
        }
        got
    }
}

impl Drop for LinuxRouter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The router's addresses (ADDRESS/LENGTH): inside, outside.
fn router_addresses() -> (Vec<String>, Vec<String>) {
    let mut outside = vec![format!("{R4_OUT}/24"), format!("{R6_OUT}/64")];
    outside.extend(PUB4.iter().map(|a| format!("{a}/32")));
    outside.extend((0..4).map(|i| format!("{}/128", pub6(i))));
    (vec![format!("{R4_IN}/24"), format!("{R6_IN}/64")], outside)
}

/// Every host the routers may send to: permanent neighbours on both routers.
fn neighbours() -> Vec<(Side, IpAddr)> {
    let mut v = Vec::new();
    for fam in [Fam::V4, Fam::V6] {
        let h = Hosts::new(fam);
        v.extend(h.inside.iter().map(|&a| (Side::Inside, a)));
        // The outside hosts on the link (those beyond go through the gateway).
        v.extend(h.outside[..3].iter().map(|&a| (Side::Outside, a)));
    }
    v.push((Side::Outside, IpAddr::V4(GW4)));
    v.push((Side::Outside, IpAddr::V6(GW6)));
    v
}

// ---------------------------------------------------------------------------------------------
// Rampart: `rampart replay` in router mode.

/// The router-mode configuration replay runs with: the Linux router's addresses, routes and
/// neighbours, ICMP errors unlimited.
pub fn rampart_config() -> String {
    let (inside, outside) = router_addresses();
    let list = |v: &[String]| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "mode = \"router\"\n[[port]]\nname = \"inside\"\ndevice = \"net_null0\"\naddresses = [{}]\n\
         [[port]]\nname = \"outside\"\ndevice = \"net_null1\"\naddresses = [{}]\n\
         [[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"{GW4}\"\n[[route]]\nprefix = \"::/0\"\nvia = \"{GW6}\"\n",
        list(&inside),
        list(&outside)
    );
    for (side, a) in neighbours() {
        let _ = write!(
            s,
            "[[neighbour]]\nport = \"{}\"\naddress = \"{a}\"\nmac = \"{}\"\n",
            side.name(),
            host_mac(a)
        );
    }
    s += "[router]\nicmp_msgs_per_sec = 0\n";
    s
}

/// One replay of `frames`: each frame's output (egress side, frame), in frame order.
fn replay_once(dir: &Path, frames: &[Vec<u8>]) -> Result<Vec<StepOut>, String> {
    let p = |n: &str| dir.join(n);
    control::pcap::write_frames(&p("in.pcap"), frames.iter().map(|f| f.as_slice())).unwrap();
    let o = crate::run(
        Command::new(crate::bin("rampart"))
            .arg("replay")
            .arg("--config")
            .arg(p("router.toml"))
            .arg("--rules")
            .arg(p("r4"))
            .arg("--rules6")
            .arg(p("r6"))
            .arg("--input")
            .arg(p("in.pcap"))
            .arg("--output")
            .arg(p("out.pcap"))
            .arg("--verdicts")
            .arg(p("v.jsonl")),
    );
    if !o.status.success() {
        return Err(format!("replay: {}", String::from_utf8_lossy(&o.stderr)));
    }
    // Frames go to the step whose frame made them leave, told by their timestamps (replay
    // stamps what it sends with the time of the frame it is handling; the input's frame `i`
    // is at `i` µs): a held fragment's datagram leaves at the step of its last fragment in,
    // as it leaves Linux. The verdict log keeps each fragment's line, with the ports of what
    // it sent, in frame order; a step's frames left in the order of those lines' fragment
    // offsets (a whole datagram is judged from its first fragment on).
    let out = control::pcap::read_frames(&p("out.pcap")).unwrap();
    let mut ports: Vec<Vec<Side>> = Vec::new();
    for l in std::fs::read_to_string(p("v.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let sides = v["sent"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        ports.push(
            sides
                .iter()
                .map(|port| {
                    if port == "inside" {
                        Side::Inside
                    } else {
                        Side::Outside
                    }
                })
                .collect(),
        );
    }
    if ports.len() != frames.len() {
        return Err(format!(
            "{} verdicts for {} frames",
            ports.len(),
            frames.len()
        ));
    }
    let frag = |f: &[u8]| {
        let p = ip_of(f.get(14..)?)?;
        let at = p.frag?;
        Some(((p.src, p.dst, p.proto, at.id), at.off))
    };
    let mut last = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some((k, _)) = frag(f) {
            last.insert(k, i);
        }
    }
    let mut members: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        let (step, off) = frag(f).map_or((i, 0), |(k, off)| (last[&k], off));
        members.entry(step).or_default().push((off, i));
    }
    let mut buckets: Vec<Vec<Vec<u8>>> = vec![Vec::new(); frames.len()];
    for f in out {
        let at = usize::try_from(f.timestamp.as_micros()).unwrap_or(usize::MAX);
        let Some(b) = buckets.get_mut(at) else {
            return Err(format!("an output frame at {:?}", f.timestamp));
        };
        b.push(f.data);
    }
    let mut res: Vec<StepOut> = vec![Vec::new(); frames.len()];
    for (step, mut m) in members {
        m.sort();
        let sides: Vec<Side> = m.iter().flat_map(|&(_, i)| ports[i].clone()).collect();
        let got = std::mem::take(&mut buckets[step]);
        if sides.len() != got.len() {
            return Err(format!(
                "step {step}: {} frames out, the verdicts say {}",
                got.len(),
                sides.len()
            ));
        }
        res[step] = sides
            .into_iter()
            .zip(got)
            .filter(|(_, f)| !is_noise(f))
            .collect();
    }
    Ok(res)
}

/// The script through `rampart replay`: replayed again with answers built from the last
/// run's output until they stop changing.
pub fn rampart_run(g: &Generated, rampart4: &str, rampart6: &str) -> Result<Outputs, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("router.toml"), rampart_config()).unwrap();
    std::fs::write(p("r4"), rampart4).unwrap();
    std::fs::write(p("r6"), rampart6).unwrap();
    let mut outputs: Outputs = vec![None; g.steps.len()];
    let mut last: Vec<Option<Vec<u8>>> = Vec::new();
    for _round in 0..12 {
        // Frames from the previous run's outputs (a step whose answered frame is missing
        // is not sent).
        let mut built: Vec<Option<(Side, Vec<u8>)>> = Vec::new();
        for i in 0..g.steps.len() {
            built.push(frame_of(&g.steps, &outputs, i));
        }
        let frames: Vec<Option<Vec<u8>>> = built
            .iter()
            .map(|b| b.as_ref().map(|x| x.1.clone()))
            .collect();
        if frames == last {
            if let Ok(keep) = std::env::var("RAMPART_NATGEN_KEEP") {
                // The last replay's files, for `rampart replay` by hand.
                let _ = std::fs::create_dir_all(&keep);
                for n in ["router.toml", "r4", "r6", "in.pcap", "out.pcap", "v.jsonl"] {
                    let _ = std::fs::copy(p(n), Path::new(&keep).join(n));
                }
            }
            return Ok(outputs);
        }
        let sent: Vec<Vec<u8>> = frames.iter().flatten().cloned().collect();
        let res = replay_once(dir.path(), &sent)?;
        let mut it = res.into_iter();
        outputs = frames
            .iter()
            .map(|f| f.as_ref().map(|_| it.next().unwrap()))
            .collect();
        last = frames;
    }
    Err("answers did not settle in 12 replays".into())
}

/// `rampart run` in router mode on the bare middle namespace of a [`LinuxRouter::create_bare`]
/// topology (`net_af_packet` on `ri` and `ro`, one worker), with [`rampart_config`]'s
/// addresses, routes and neighbours.
pub struct RampartRouter {
    child: Child,
    summary: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl RampartRouter {
    pub fn start(ns: &str, rules4: &str, rules6: &str) -> RampartRouter {
        RampartRouter::start_workers(ns, rules4, rules6, 1)
    }

    /// [`RampartRouter::start`] with `workers` workers (one queue each on both ports, the
    /// kernel's fanout spreading the frames over them; every worker on the second core).
    pub fn start_workers(ns: &str, rules4: &str, rules6: &str, workers: usize) -> RampartRouter {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("r4"), rules4).unwrap();
        std::fs::write(p("r6"), rules6).unwrap();
        let prefix = crate::unique("ngd");
        let cfg = rampart_config()
            .replace(
                "device = \"net_null0\"",
                &format!("device = \"net_af_packet{prefix}i,iface=ri,qpairs={workers}\""),
            )
            .replace(
                "device = \"net_null1\"",
                &format!("device = \"net_af_packet{prefix}o,iface=ro,qpairs={workers}\""),
            );
        let lcores: String = std::iter::once("0@0".to_string())
            .chain((1..=workers).map(|w| format!("{w}@1")))
            .collect::<Vec<_>>()
            .join(",");
        let cfg = format!(
            "{cfg}[eal]\nargs = {eal}\n[rules]\nipv4 = \"{r4}\"\nipv6 = \"{r6}\"\n\
             [management]\nsocket = \"{sock}\"\n[mempool]\nmbufs = {mbufs}\ncache = 64\n\
             [rings]\nrx_desc = 512\ntx_desc = 512\n[conntrack]\nmax = 65536\n\
             [workers]\ncount = {workers}\n",
            eal = crate::toml_array(&crate::test_eal_args(&prefix, &lcores)),
            mbufs = 4096 * workers - 1,
            r4 = p("r4").display(),
            r6 = p("r6").display(),
            sock = p("m.sock").display(),
        );
        std::fs::write(p("cfg.toml"), cfg).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(crate::bin("rampart"))
            .args(["run", "--config"])
            .arg(p("cfg.toml"))
            .arg("--summary-json")
            .arg(p("summary.json"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let mut r = RampartRouter {
            child,
            summary: p("summary.json"),
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(r._dir.path().join("m.sock")).is_err() {
            if let Some(st) = r.child.try_wait().unwrap() {
                let err = std::fs::read_to_string(r._dir.path().join("stderr.log"));
                panic!("rampart exited {st} at start: {err:?}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rampart did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        r
    }

    /// Waits until an echo request to the router's inside address is answered through the
    /// helper (the ports are polled).
    pub fn wait_ready(&self, helper: &mut LinuxRouter) {
        let h = Hosts::new(Fam::V4);
        let ping = build(
            h.inside[0],
            h.router_in,
            64,
            1,
            L4Spec::icmp_echo(1, 1),
            router_mac(Side::Inside),
        );
        for _ in 0..100 {
            if !helper.send_one(Side::Inside, &ping, 1).is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("no answer from rampart's router");
    }

    /// Stops it with SIGTERM (it must exit 0); its summary.
    pub fn stop(mut self) -> serde_json::Value {
        let _ = crate::run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let st = self.child.wait().unwrap();
        assert!(st.success(), "rampart exited {st}");
        serde_json::from_str(&std::fs::read_to_string(&self.summary).unwrap()).unwrap()
    }
}

impl Drop for RampartRouter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison.

/// A packet reduced to what both routers must agree on.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Desc {
    side: Side,
    dst_mac: [u8; 6],
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    /// Protocol, TTL, TOS/traffic class, flags, and the L4 bytes without ports, identifiers and
    /// checksums (an ICMP error: type and code only).
    rest: String,
    /// An ICMP error's quote: source and destination endpoints, and the rest.
    quote: Option<Box<Desc>>,
    /// The IP and, unless a fragment, L4 checksums (a fragmented datagram's L4 checksum is
    /// checked over all its fragments, [`whole_datagrams`]).
    checksums_ok: bool,
    /// A fragment after the first: no ports; its addresses are held to its first fragment's.
    later: bool,
}

fn sum16(b: &[u8], mut acc: u32) -> u32 {
    let mut c = b.chunks_exact(2);
    for w in &mut c {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = c.remainder() {
        acc += u32::from(*x) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn l4_sum_ok(p: &Pkt) -> bool {
    let mut acc = 0u32;
    let pseudo = matches!(p.proto, 6 | 17 | 58);
    if pseudo {
        match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                acc = sum16(&s.octets(), acc);
                acc = sum16(&d.octets(), acc);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                acc = sum16(&s.octets(), acc);
                acc = sum16(&d.octets(), acc);
            }
            _ => return false,
        }
        acc += u32::from(p.proto) + p.l4.len() as u32;
    }
    if p.proto == 17 && p.src.is_ipv4() && p.l4.len() >= 8 && be16(p.l4, 6) == 0 {
        return true;
    }
    fold(sum16(p.l4, acc)) == 0xffff
}

fn describe(side: Side, frame: &[u8]) -> Desc {
    let ip = &frame[14..];
    let p = ip_of(ip).expect("an IP frame");
    let mut d = desc_ip(&p, true);
    d.side = side;
    d.dst_mac = frame[..6].try_into().unwrap();
    d
}

fn desc_ip(p: &Pkt, outer: bool) -> Desc {
    let v6 = p.src.is_ipv6();
    let tos = if v6 {
        (p.ip[0] << 4) | (p.ip[1] >> 4)
    } else {
        p.ip[1]
    };
    let mut rest = format!("proto {} ttl {} tos {tos:#x}", p.proto, p.ttl);
    // A quote exactly: its fragment bits and Fragment header (an error about a reassembled
    // datagram quotes it as reassembled), the length its header says and the bytes quoted.
    let frag = p.frag;
    if !v6 {
        let _ = write!(rest, " frag {:#x}", be16(p.ip, 6));
    }
    if !outer {
        let said = if v6 {
            40 + usize::from(be16(p.ip, 4))
        } else {
            usize::from(be16(p.ip, 2))
        };
        let _ = write!(rest, " len {said} quoted {}", p.ip.len());
    }
    if let Some(f) = frag {
        let _ = write!(rest, " fragment off {} more {}", f.off, f.more);
        // Linux's ip6_fragment gives the pieces it sends a new identification
        // (ipv6_select_ident); Rampart keeps the sender's (docs/conntrack-vs-netfilter.md).
        if !v6 {
            let _ = write!(rest, " id {:#x}", f.id);
        }
    }
    let mut checksums_ok = true;
    if outer {
        if !v6 {
            let hl = usize::from(p.ip[0] & 15) * 4;
            checksums_ok &= fold(sum16(&p.ip[..hl], 0)) == 0xffff;
        }
        if p.frag.is_none() {
            checksums_ok &= l4_sum_ok(p);
        }
    }
    let l4 = p.l4;
    if p.frag.is_some_and(|f| f.off != 0) {
        if outer {
            let _ = write!(rest, " data {}", hex(l4));
        }
        return Desc {
            side: Side::Inside,
            dst_mac: [0; 6],
            src: (p.src, 0),
            dst: (p.dst, 0),
            rest,
            quote: None,
            checksums_ok,
            later: true,
        };
    }
    let (mut sp, mut dp) = (0, 0);
    let mut quote = None;
    match p.proto {
        6 | 17 if l4.len() >= 8 => {
            sp = be16(l4, 0);
            dp = be16(l4, 2);
            if p.proto == 6 && l4.len() >= 20 {
                let _ = write!(
                    rest,
                    " seq {} ack {} flags {:#x} win {} data {}",
                    be32(l4, 4),
                    be32(l4, 8),
                    l4[13],
                    be16(l4, 14),
                    hex(&l4[usize::from(l4[12] >> 4) * 4..])
                );
            } else if p.proto == 17 {
                let _ = write!(rest, " data {}", hex(&l4[8..]));
            }
        }
        1 | 58 if l4.len() >= 8 => {
            let (ty, code) = (l4[0], l4[1]);
            let _ = write!(rest, " icmp {ty}/{code}");
            let error = if v6 {
                ty < 128
            } else {
                matches!(ty, 3 | 4 | 5 | 11 | 12)
            };
            if error {
                if let Some(q) = ip_of(&l4[8..]) {
                    quote = Some(Box::new(desc_ip(&q, false)));
                }
            } else {
                // The identifier is the querier's "port": the source of a request, the
                // destination of a reply.
                let id = be16(l4, 4);
                if matches!(ty, 0 | 14 | 16 | 18 | 129) {
                    dp = id;
                } else {
                    sp = id;
                }
                let _ = write!(rest, " seq {} data {}", be16(l4, 6), hex(&l4[8..]));
            }
        }
        _ => {}
    }
    Desc {
        side: Side::Inside,
        dst_mac: [0; 6],
        src: (p.src, sp),
        dst: (p.dst, dp),
        rest,
        quote,
        checksums_ok,
        later: false,
    }
}

/// The fragments among one step's frames gathered into datagrams by (source, destination,
/// protocol, identification): each must be whole (from offset 0 to a last fragment, no gap or
/// overlap) with its L4 checksum right over all its pieces.
fn whole_datagrams(frames: &StepOut) -> Result<(), String> {
    type Piece = (usize, bool, Vec<u8>);
    let mut groups: BTreeMap<(IpAddr, IpAddr, u8, u32), Vec<Piece>> = BTreeMap::new();
    for (_, f) in frames {
        let Some(p) = f.get(14..).and_then(ip_of) else {
            continue;
        };
        let Some(at) = p.frag else { continue };
        groups
            .entry((p.src, p.dst, p.proto, at.id))
            .or_default()
            .push((at.off, at.more, p.l4.to_vec()));
    }
    for ((src, dst, proto, id), mut v) in groups {
        v.sort_by_key(|x| x.0);
        let mut data = Vec::new();
        for (off, _, piece) in &v {
            if *off != data.len() {
                return Err(format!(
                    "{src} > {dst} id {id:#x}: a fragment at {off} after {} bytes",
                    data.len()
                ));
            }
            data.extend_from_slice(piece);
        }
        if v.last().is_some_and(|x| x.1) {
            return Err(format!("{src} > {dst} id {id:#x}: no last fragment"));
        }
        let whole = Pkt {
            src,
            dst,
            proto,
            ttl: 0,
            ip: &[],
            l4: &data,
            frag: None,
        };
        if !l4_sum_ok(&whole) {
            return Err(format!(
                "{src} > {dst} id {id:#x}: the L4 checksum over its fragments"
            ));
        }
    }
    Ok(())
}

fn in_range(a: IpAddr, lo: IpAddr, hi: IpAddr) -> bool {
    let n = |x: IpAddr| match x {
        IpAddr::V4(v) => (4u8, u128::from(u32::from(v))),
        IpAddr::V6(v) => (6u8, u128::from(v)),
    };
    let (fa, x) = n(a);
    let (fl, l) = n(lo);
    let (_, h) = n(hi);
    fa == fl && l <= x && x <= h
}

type Ep = (IpAddr, u16);
/// A connection as one packet shows it: protocol and its two endpoints in a fixed order.
type Conn = (String, Ep, Ep);

fn conn(proto: &str, a: Ep, b: Ep) -> Conn {
    (proto.to_string(), a.min(b), a.max(b))
}

/// Connections matched so far: Linux's tuple to Rampart's and back. The same endpoint may
/// serve several connections (to other peers, or after one ends); one connection's tuple
/// stands for one tuple of the other router throughout.
#[derive(Default)]
struct Endpoints {
    l2r: BTreeMap<Conn, Conn>,
    r2l: BTreeMap<Conn, Conn>,
}

/// Whether Linux's endpoint `l` and Rampart's `r` may be the same translation; `orig` is the
/// endpoint as the step's frame had it (whether a port was kept).
fn fits(l: Ep, r: Ep, orig: Option<Ep>, loose: &[Loose]) -> Result<(), String> {
    if l == r {
        return Ok(());
    }
    let ok = loose.iter().any(|x| {
        let port_ok = |e: Ep| e.1 == 0 || (x.ports.0 <= e.1 && e.1 <= x.ports.1);
        let kept = |e: Ep| orig.is_some_and(|o| o.1 == e.1);
        in_range(l.0, x.lo, x.hi)
            && in_range(r.0, x.lo, x.hi)
            && port_ok(l)
            && port_ok(r)
            && (x.random || kept(l) == kept(r))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("Linux {l:?}, Rampart {r:?}"))
    }
}

impl Endpoints {
    /// Linux's packet `l` (source, destination) against Rampart's `r`, of protocol `proto`;
    /// `orig` the step's frame's endpoints.
    fn agree(
        &mut self,
        proto: &str,
        l: (Ep, Ep),
        r: (Ep, Ep),
        orig: Option<(Ep, Ep)>,
        loose: &[Loose],
    ) -> Result<(), String> {
        let (lc, rc) = (conn(proto, l.0, l.1), conn(proto, r.0, r.1));
        match (self.l2r.get(&lc), self.r2l.get(&rc)) {
            (Some(x), _) if *x == rc => return Ok(()),
            (None, None) => {}
            _ => {
                return Err(format!(
                    "connection {lc:?} / {rc:?} was {:?} / {:?} before",
                    self.l2r.get(&lc),
                    self.r2l.get(&rc)
                ))
            }
        }
        fits(l.0, r.0, orig.map(|o| o.0), loose).map_err(|e| format!("source: {e}"))?;
        fits(l.1, r.1, orig.map(|o| o.1), loose).map_err(|e| format!("destination: {e}"))?;
        self.l2r.insert(lc.clone(), rc.clone());
        self.r2l.insert(rc, lc);
        Ok(())
    }
}

fn compare_desc(
    l: &Desc,
    r: &Desc,
    input: Option<&Desc>,
    eps: &mut Endpoints,
    loose: &[Loose],
) -> Result<(), String> {
    if l.side != r.side {
        return Err(format!("out {:?} / {:?}", l.side, r.side));
    }
    if l.dst.0 == r.dst.0 && l.dst_mac != r.dst_mac {
        return Err("destination MAC".into());
    }
    if !r.checksums_ok {
        return Err("Rampart's checksums are wrong".into());
    }
    if l.checksums_ok != r.checksums_ok {
        return Err("checksum validity".into());
    }
    if l.rest != r.rest {
        return Err(format!("{} / {}", l.rest, r.rest));
    }
    let proto = |d: &Desc| d.rest.split(' ').nth(1).unwrap_or("").to_string();
    if l.later {
        // `whole_datagrams` held its addresses to its first fragment's.
        return Ok(());
    }
    eps.agree(
        &proto(l),
        (l.src, l.dst),
        (r.src, r.dst),
        input.map(|i| (i.src, i.dst)),
        loose,
    )?;
    match (&l.quote, &r.quote) {
        (None, None) => Ok(()),
        (Some(a), Some(b)) => {
            if a.rest != b.rest {
                return Err(format!("quote: {} / {}", a.rest, b.rest));
            }
            eps.agree(&proto(a), (a.src, a.dst), (b.src, b.dst), None, loose)
                .map_err(|e| format!("quote: {e}"))
        }
        _ => Err("quote".into()),
    }
}

/// Differences between Linux's and Rampart's outputs, one line per differing step.
pub fn compare(g: &Generated, linux: &Outputs, rampart: &Outputs) -> Vec<String> {
    let mut eps = Endpoints::default();
    let mut out = Vec::new();
    for i in 0..g.steps.len() {
        let (l, r) = (&linux[i], &rampart[i]);
        let (l, r) = match (l, r) {
            (None, None) => continue,
            (Some(l), Some(r)) => (l, r),
            _ => {
                out.push(format!("#{i}: sent by one side only"));
                continue;
            }
        };
        // The step's own frame, as each side sent it (the answers differ with the choices).
        let input = match &g.steps[i] {
            Step::Send { side, frame } => Some(describe(*side, frame)),
            _ => None,
        };
        if l.len() != r.len() {
            out.push(format!("#{i}: Linux sent {}, Rampart {}", l.len(), r.len()));
            continue;
        }
        if let Err(e) = whole_datagrams(r) {
            out.push(format!("#{i}: Rampart's fragments: {e}"));
        }
        if let Err(e) = whole_datagrams(l) {
            out.push(format!("#{i}: Linux's fragments: {e}"));
        }
        let mut ls: Vec<Desc> = l.iter().map(|(s, f)| describe(*s, f)).collect();
        let mut rs: Vec<Desc> = r.iter().map(|(s, f)| describe(*s, f)).collect();
        ls.sort_by_key(|d| d.side);
        rs.sort_by_key(|d| d.side);
        for (a, b) in ls.iter().zip(&rs) {
            if let Err(e) = compare_desc(a, b, input.as_ref(), &mut eps, &g.loose) {
                out.push(format!("#{i}: {e}"));
            }
        }
    }
    out
}

/// One line per frame of a run: `side src > dst rest`.
pub fn show(o: &Option<Vec<(Side, Vec<u8>)>>) -> String {
    match o {
        None => "(not sent)".into(),
        Some(v) if v.is_empty() => "-".into(),
        Some(v) => v
            .iter()
            .map(|(s, f)| {
                let d = describe(*s, f);
                let q = d
                    .quote
                    .map(|q| {
                        format!(
                            " [{}:{} > {}:{} {}]",
                            q.src.0, q.src.1, q.dst.0, q.dst.1, q.rest
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "{} {}:{} > {}:{} {}{q}",
                    s.name(),
                    d.src.0,
                    d.src.1,
                    d.dst.0,
                    d.dst.1,
                    d.rest
                )
            })
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

/// The frame a step sent, in words.
pub fn show_step(g: &Generated, outputs: &Outputs, i: usize) -> String {
    match frame_of(&g.steps, outputs, i) {
        None => "(not sent)".into(),
        Some((s, f)) => show(&Some(vec![(s, f)])),
    }
}
