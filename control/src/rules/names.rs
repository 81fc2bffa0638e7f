//! The name tables iptables resolves: protocols (a built-in subset of `/etc/protocols`),
//! services (a subset of `/etc/services`), ICMP and ICMPv6 type names (as libxt_icmp has
//! them), REJECT types, log levels, conntrack states and TCP flags. Names compare
//! case-insensitively, as iptables does.

use dataplane::classify::{ct, RejectWith};
use dataplane::wire::Family;

/// Protocol names and numbers (`-p`).
const PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("ipencap", 4),
    ("ipip", 4),
    ("tcp", 6),
    ("egp", 8),
    ("udp", 17),
    ("dccp", 33),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmpv6", 58),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("l2tp", 115),
    ("sctp", 132),
    ("mh", 135),
    ("udplite", 136),
];

/// `-p` value: `Ok(None)` for `all` (or 0), `Ok(Some(n))` for one protocol.
pub(crate) fn protocol(s: &str) -> Result<Option<u8>, String> {
    let lower = s.to_ascii_lowercase();
    if lower == "all" {
        return Ok(None);
    }
    if let Ok(n) = lower.parse::<u8>() {
        return Ok((n != 0).then_some(n));
    }
    PROTOCOLS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|&(_, n)| Some(n))
        .ok_or_else(|| {
            format!("unknown protocol {s:?} (use a name like tcp, udp, icmp, or a number 0-255)")
        })
}

/// Service names for ports.
const SERVICES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("ntp", 123),
    ("imap", 143),
    ("imap2", 143),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("submissions", 465),
    ("syslog", 514),
    ("submission", 587),
    ("ldaps", 636),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("mysql", 3306),
    ("postgresql", 5432),
];

/// One port: a number or a service name.
pub(crate) fn port(s: &str) -> Result<u16, String> {
    if let Ok(n) = s.parse::<u16>() {
        return Ok(n);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return Err(format!("port {s} out of range (0-65535)"));
    }
    let lower = s.to_ascii_lowercase();
    SERVICES
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|&(_, n)| n)
        .ok_or_else(|| format!("invalid port/service {s:?}"))
}

/// `(name, type, code_lo, code_hi)`; type 255 in the ICMPv4 table means any.
type IcmpName = (&'static str, u8, u8, u8);

const ICMP_TYPES: &[IcmpName] = &[
    ("any", 0xff, 0, 0xff),
    ("echo-reply", 0, 0, 0xff),
    ("pong", 0, 0, 0xff),
    ("destination-unreachable", 3, 0, 0xff),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("tos-network-unreachable", 3, 11, 11),
    ("tos-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xff),
    ("redirect", 5, 0, 0xff),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("tos-network-redirect", 5, 2, 2),
    ("tos-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xff),
    ("ping", 8, 0, 0xff),
    ("router-advertisement", 9, 0, 0xff),
    ("router-solicitation", 10, 0, 0xff),
    ("time-exceeded", 11, 0, 0xff),
    ("ttl-exceeded", 11, 0, 0xff),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xff),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xff),
    ("timestamp-reply", 14, 0, 0xff),
    ("address-mask-request", 17, 0, 0xff),
    ("address-mask-reply", 18, 0, 0xff),
];

const ICMPV6_TYPES: &[IcmpName] = &[
    ("destination-unreachable", 1, 0, 0xff),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 0xff),
    ("time-exceeded", 3, 0, 0xff),
    ("ttl-exceeded", 3, 0, 0xff),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 0xff),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 0xff),
    ("ping", 128, 0, 0xff),
    ("echo-reply", 129, 0, 0xff),
    ("pong", 129, 0, 0xff),
    ("router-solicitation", 133, 0, 0xff),
    ("router-advertisement", 134, 0, 0xff),
    ("neighbour-solicitation", 135, 0, 0xff),
    ("neighbor-solicitation", 135, 0, 0xff),
    ("neighbour-advertisement", 136, 0, 0xff),
    ("neighbor-advertisement", 136, 0, 0xff),
    ("redirect", 137, 0, 0xff),
];

/// An `--icmp-type` (V4) or `--icmpv6-type` (V6) value: a name or `type[/code]`, as
/// `(type, code_lo, code_hi)`; for V4, type 255 means any type.
pub(crate) fn icmp_type(family: Family, s: &str) -> Result<(u8, u8, u8), String> {
    let table = match family {
        Family::V4 => ICMP_TYPES,
        Family::V6 => ICMPV6_TYPES,
    };
    let lower = s.to_ascii_lowercase();
    if let Some(&(_, t, lo, hi)) = table.iter().find(|(n, ..)| *n == lower) {
        return Ok((t, lo, hi));
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        let (t, c) = match s.split_once('/') {
            Some((t, c)) => (t, Some(c)),
            None => (s, None),
        };
        let num = |v: &str, what: &str| {
            v.parse::<u8>()
                .map_err(|_| format!("invalid ICMP {what} {v:?} in {s:?} (0-255)"))
        };
        let t = num(t, "type")?;
        return Ok(match c {
            Some(c) => {
                let c = num(c, "code")?;
                (t, c, c)
            }
            None => (t, 0, 0xff),
        });
    }
    Err(format!(
        "invalid {} type {s:?} (a name like echo-request, or TYPE[/CODE])",
        if family == Family::V4 {
            "ICMP"
        } else {
            "ICMPv6"
        }
    ))
}

/// `--reject-with` for the family; `Err` names the problem.
pub(crate) fn reject_with(family: Family, s: &str) -> Result<RejectWith, String> {
    use RejectWith::*;
    let lower = s.to_ascii_lowercase();
    let v4: &[(&str, &str, RejectWith)] = &[
        ("icmp-net-unreachable", "net-unreach", IcmpNetUnreachable),
        ("icmp-host-unreachable", "host-unreach", IcmpHostUnreachable),
        ("icmp-port-unreachable", "port-unreach", IcmpPortUnreachable),
        (
            "icmp-proto-unreachable",
            "proto-unreach",
            IcmpProtoUnreachable,
        ),
        ("icmp-net-prohibited", "net-prohib", IcmpNetProhibited),
        ("icmp-host-prohibited", "host-prohib", IcmpHostProhibited),
        ("icmp-admin-prohibited", "admin-prohib", IcmpAdminProhibited),
        ("tcp-reset", "tcp-rst", TcpReset),
    ];
    let v6: &[(&str, &str, RejectWith)] = &[
        ("icmp6-no-route", "no-route", Icmp6NoRoute),
        ("icmp6-adm-prohibited", "adm-prohibited", Icmp6AdmProhibited),
        (
            "icmp6-addr-unreachable",
            "addr-unreach",
            Icmp6AddrUnreachable,
        ),
        (
            "icmp6-port-unreachable",
            "port-unreach",
            Icmp6PortUnreachable,
        ),
        ("tcp-reset", "tcp-rst", TcpReset),
    ];
    let table = if family == Family::V4 { v4 } else { v6 };
    if let Some(&(_, _, r)) = table.iter().find(|(a, b, _)| *a == lower || *b == lower) {
        return Ok(r);
    }
    if family == Family::V6
        && matches!(
            lower.as_str(),
            "icmp6-policy-fail" | "policy-fail" | "icmp6-reject-route" | "reject-route"
        )
    {
        return Err(format!("unsupported --reject-with {s}"));
    }
    let names: Vec<&str> = table.iter().map(|(a, ..)| *a).collect();
    Err(format!(
        "invalid --reject-with {s:?} (one of {})",
        names.join(", ")
    ))
}

/// The default REJECT type of the family.
pub(crate) fn default_reject(family: Family) -> RejectWith {
    match family {
        Family::V4 => RejectWith::IcmpPortUnreachable,
        Family::V6 => RejectWith::Icmp6PortUnreachable,
    }
}

/// `--log-level`: 0-7 or a syslog level name.
pub(crate) fn log_level(s: &str) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("log level {n} out of range (0-7)"))
        };
    }
    let levels = [
        ("emerg", 0),
        ("panic", 0),
        ("alert", 1),
        ("crit", 2),
        ("error", 3),
        ("err", 3),
        ("warning", 4),
        ("warn", 4),
        ("notice", 5),
        ("info", 6),
        ("debug", 7),
    ];
    let lower = s.to_ascii_lowercase();
    levels
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|&(_, l)| l)
        .ok_or_else(|| format!("invalid log level {s:?} (0-7 or emerg, alert, crit, error, warning, notice, info, debug)"))
}

/// `--ctstate SNAT`: the connection's source was translated (`IPS_SRC_NAT`). Above the bits
/// of [`ct::ANY`]: Rampart keeps no such status, so no packet has it; the parser admits it
/// only when the nat table cannot set it (see [`super::validate::nat_states`]).
pub(crate) const CT_SNAT: u16 = 1 << 8;

/// A comma list of conntrack states (`--ctstate`, `--state`) as the mask of a rule: each
/// state with its `_DNAT` twin ([`ct::states`]), `DNAT` as [`ct::DNAT`], `SNAT` as
/// [`CT_SNAT`]. `nat_states`: the list may name SNAT and DNAT (`--ctstate` may, `--state` may
/// not).
pub(crate) fn ct_states(s: &str, nat_states: bool) -> Result<u16, String> {
    let mut bits = 0;
    for name in s.split(',') {
        bits |= match name.to_ascii_uppercase().as_str() {
            "NEW" => u16::from(ct::states(ct::NEW)),
            "ESTABLISHED" => u16::from(ct::states(ct::ESTABLISHED)),
            "RELATED" => u16::from(ct::states(ct::RELATED)),
            "INVALID" => u16::from(ct::INVALID),
            "UNTRACKED" => u16::from(ct::UNTRACKED),
            "SNAT" if nat_states => CT_SNAT,
            "DNAT" if nat_states => u16::from(ct::DNAT),
            _ if nat_states => {
                return Err(format!(
                "invalid conntrack state {name:?} (NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED, SNAT, DNAT)"
            ))
            }
            _ => {
                return Err(format!(
                "invalid state {name:?} (NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED; SNAT and DNAT only with -m conntrack --ctstate)"
            ))
            }
        };
    }
    Ok(bits)
}

/// TCP flag bits as in the header's 13th byte.
pub(crate) mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ALL: u8 = 0x3f;
}

/// A comma list of TCP flag names (`SYN,ACK`, `ALL`, `NONE`).
pub(crate) fn tcp_flags(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for name in s.split(',') {
        bits |= match name.to_ascii_uppercase().as_str() {
            "FIN" => tcp_flag::FIN,
            "SYN" => tcp_flag::SYN,
            "RST" => tcp_flag::RST,
            "PSH" => tcp_flag::PSH,
            "ACK" => tcp_flag::ACK,
            "URG" => tcp_flag::URG,
            "ALL" => tcp_flag::ALL,
            "NONE" => 0,
            _ => {
                return Err(format!(
                    "unknown TCP flag {name:?} (FIN, SYN, RST, PSH, ACK, URG, ALL, NONE)"
                ))
            }
        };
    }
    Ok(bits)
}
