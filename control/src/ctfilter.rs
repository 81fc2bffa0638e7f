//! conntrack-tools' filters for `rampart ctl conntrack list|delete|count`: the options of
//! `conntrack -L/-D` (1.4.7), parsed as `conntrack` parses them and refused with its messages,
//! and the filter's JSON form in management requests (versioned: [`FILTER_VERSION`]).
//!
//! What differs from `conntrack`: an address is a dotted quad or an IPv6 address (not
//! `inet_aton`'s other forms), a port or mark must be a number in range (1.4.7 takes `atoi`'s
//! and `strtoul`'s reading of anything), `-f` is exactly `ipv4` or `ipv6`, a NAT address may be
//! IPv6, and `count` takes filters (1.4.7's `-C` takes none). `-w N` selects the connections
//! whose zone id is N in either direction (0: those in no zone), `--orig-zone`/`--reply-zone`
//! the zone id that applies to that direction. Options that select by what Rampart does not
//! keep (labels, secmark, id, timeout, ICMP fields, expectations) are refused.

use dataplane::conntrack::filter::{status, CtFilter, NatTo, Net};
use dataplane::conntrack::tcp::TcpState;
use dataplane::wire::{Family, IpAddr128};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// The filter's JSON form this build reads and writes.
pub const FILTER_VERSION: u64 = 1;

/// A parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub filter: CtFilter,
    /// `--max N` (`list` only).
    pub max: Option<u64>,
    /// What conntrack warns about and ignores (`-u SRC_NAT`).
    pub warnings: Vec<String>,
}

/// Protocols with ports (conntrack's port options exist after `-p` names one of these).
const PORTED: [u8; 5] = [6, 17, 136, 132, 33];

/// conntrack's own protocol names (case-insensitive), then /etc/protocols' usual ones.
const PROTOCOLS: [(&str, u8); 14] = [
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("sctp", 132),
    ("dccp", 33),
    ("icmp", 1),
    ("icmpv6", 58),
    ("gre", 47),
    ("ipv6-icmp", 58),
    ("esp", 50),
    ("ah", 51),
    ("igmp", 2),
    ("ipip", 4),
    ("ospf", 89),
];

/// Status names in conntrack's order (a name may be abbreviated, case-insensitively).
const STATUS: [(&str, u32); 7] = [
    ("ASSURED", status::ASSURED),
    ("SEEN_REPLY", status::SEEN_REPLY),
    ("UNSET", 0),
    ("FIXED_TIMEOUT", status::FIXED_TIMEOUT),
    ("EXPECTED", status::EXPECTED),
    ("OFFLOAD", status::OFFLOAD),
    ("HW_OFFLOAD", status::HW_OFFLOAD),
];

/// conntrack's options Rampart refuses, with why.
const REFUSED: [(&str, &str); 18] = [
    ("-t", "timeouts"),
    ("--timeout", "timeouts"),
    ("-l", "labels"),
    ("--label", "labels"),
    ("-c", "secmarks"),
    ("--secmark", "secmarks"),
    ("-i", "ids"),
    ("--id", "ids"),
    ("-z", "zeroing counters"),
    ("--zero", "zeroing counters"),
    ("-o", "output formats (--json gives the JSON answer)"),
    ("--output", "output formats (--json gives the JSON answer)"),
    ("--icmp-type", "ICMP fields"),
    ("--icmp-code", "ICMP fields"),
    ("--icmp-id", "ICMP fields"),
    ("--tuple-src", "expectations"),
    ("--tuple-dst", "expectations"),
    ("--mask-port-src", "port masks"),
];

/// The options' canonical names (conntrack's error messages use the long form).
fn canonical(opt: &str) -> Option<&'static str> {
    Some(match opt {
        "-s" | "--src" | "--orig-src" => "orig-src",
        "-d" | "--dst" | "--orig-dst" => "orig-dst",
        "-r" | "--reply-src" => "reply-src",
        "-q" | "--reply-dst" => "reply-dst",
        "--mask-src" => "mask-src",
        "--mask-dst" => "mask-dst",
        "-p" | "--proto" | "--protonum" => "protonum",
        "--sport" | "--orig-port-src" => "sport",
        "--dport" | "--orig-port-dst" => "dport",
        "--reply-port-src" => "reply-port-src",
        "--reply-port-dst" => "reply-port-dst",
        "--state" => "state",
        "-m" | "--mark" => "mark",
        "-u" | "--status" => "status",
        "-f" | "--family" => "family",
        "-n" | "--src-nat" => "src-nat",
        "-g" | "--dst-nat" => "dst-nat",
        "-j" | "--any-nat" => "any-nat",
        "-w" | "--zone" => "zone",
        "--orig-zone" => "orig-zone",
        "--reply-zone" => "reply-zone",
        "--max" => "max",
        _ => return None,
    })
}

/// Options whose argument is optional (taken from the next word unless it starts with `-` or
/// `!`, as conntrack's `get_optional_arg`).
fn optional_arg(name: &str) -> bool {
    matches!(name, "src-nat" | "dst-nat" | "any-nat")
}

fn set_family(family: &mut Option<Family>, f: Family) -> Result<(), String> {
    match *family {
        Some(g) if g != f => Err("mismatched address family".into()),
        _ => {
            *family = Some(f);
            Ok(())
        }
    }
}

fn family_of(a: &IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// `ADDR[/PREFIX]`; the prefix only where conntrack takes CIDR notation (`cidr` names the
/// option for the refusal).
fn parse_addr(arg: &str, cidr: Option<&str>) -> Result<(IpAddr, Option<u8>), String> {
    let (a, p) = match arg.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (arg, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("Invalid IP address `{arg}'"))?;
    let prefix = match (p, cidr) {
        (None, _) => None,
        (Some(_), Some(opt)) => return Err(format!("CIDR notation unavailable for `--{opt}'")),
        (Some(p), None) => {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => Some(n),
                _ => return Err("Invalid netmask".into()),
            }
        }
    };
    Ok((addr, prefix))
}

fn parse_port(arg: &str) -> Result<u16, String> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("Invalid port `{arg}'"));
    }
    arg.parse().map_err(|_| format!("Invalid port `{arg}'"))
}

/// `strtoul(s, 0)`'s reading: `0x` hex, a leading `0` octal, else decimal; whole word.
fn parse_u32(s: &str) -> Option<u32> {
    crate::rules::matches::number64(s).and_then(|n| u32::try_from(n).ok())
}

/// `-m MARK[/MASK]`.
/// A zone id, 0..65535 (conntrack takes it as a number and refuses one out of range).
fn parse_zone(arg: &str) -> Result<u16, String> {
    parse_u32(arg)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("Wrong zone value `{arg}'"))
}

fn parse_mark(arg: &str) -> Result<(u32, u32), String> {
    let bad = || format!("unexpected value '{arg}' with -m option");
    let (v, m) = match arg.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (arg, None),
    };
    let v = parse_u32(v).ok_or_else(bad)?;
    let m = match m {
        Some(m) => parse_u32(m).ok_or_else(bad)?,
        None => u32::MAX,
    };
    Ok((v, m))
}

/// `-u NAME[,NAME...]`: each a (case-insensitive) abbreviation of a status name, `!NAME` for
/// a bit that must be clear, `UNREPLIED` for SEEN_REPLY clear; `SRC_NAT` and `DST_NAT` are
/// ignored with a warning, as conntrack does.
fn parse_status(arg: &str, f: &mut CtFilter, warnings: &mut Vec<String>) -> Result<(), String> {
    let words: Vec<&str> = arg.split(',').collect();
    for (i, word) in words.iter().enumerate() {
        // conntrack's message names the rest of the list from the bad word on.
        let rest = words[i..].join(",");
        let bad = || format!("Bad parameter `{rest}'");
        let (negated, w) = match word.strip_prefix('!') {
            Some(w) => (true, w),
            None => (false, *word),
        };
        if w.is_empty() {
            return Err(bad());
        }
        if !negated && w.starts_with("UNREPLIED") {
            f.status_clear |= status::SEEN_REPLY;
            continue;
        }
        let abbreviates =
            |name: &str| w.len() <= name.len() && name[..w.len()].eq_ignore_ascii_case(w);
        if let Some(n) = ["SRC_NAT", "DST_NAT"].into_iter().find(|n| abbreviates(n)) {
            let opt = if n == "SRC_NAT" {
                "--src-nat"
            } else {
                "--dst-nat"
            };
            warnings.push(format!("WARNING: ignoring {n}, use {opt} instead"));
            continue;
        }
        let (_, bit) = STATUS
            .iter()
            .find(|(n, _)| abbreviates(n))
            .ok_or_else(bad)?;
        if negated {
            f.status_clear |= bit;
        } else {
            f.status_set |= bit;
        }
    }
    Ok(())
}

/// A NAT option's optional `ADDR[:PORT]` or `[ADDR6]:PORT` (conntrack's
/// `split_address_and_port`).
fn parse_nat_to(arg: &str, opt: &str, family: &mut Option<Family>) -> Result<NatTo, String> {
    let (addr, port) = if let Some(open) = arg.find('[') {
        let rest = &arg[open + 1..];
        let close = rest.find(']');
        match close {
            Some(0) => return Err("No IPv6 address specified".into()),
            None => return Err("No closing ']' around IPv6 address".into()),
            Some(c) => match rest[c..].find(':') {
                Some(colon) => (&rest[..c], Some(&rest[c + colon + 1..])),
                None => (arg, None),
            },
        }
    } else {
        match arg.split_once(':') {
            Some((a, p)) if !p.contains(':') => (a, Some(p)),
            _ => (arg, None),
        }
    };
    let port = match port {
        Some("") => return Err("No port specified after `:'".into()),
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    let (a, _) = parse_addr(addr, Some(opt))?;
    set_family(family, family_of(&a))?;
    Ok(NatTo {
        addr: Some(IpAddr128::from_std(a)),
        port,
    })
}

/// Parses conntrack's filter options (`list` also takes `--max N`). Errors are conntrack's
/// messages.
pub fn parse_args(args: &[String], list: bool) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let f = &mut out.filter;
    let mut family: Option<Family> = None;
    let mut explicit_family = None;
    let mut orig_src: Option<IpAddr> = None;
    let mut orig_dst: Option<IpAddr> = None;
    let mut src_prefix: Option<u8> = None;
    let mut dst_prefix: Option<u8> = None;
    let mut mask_src: Option<IpAddr> = None;
    let mut mask_dst: Option<IpAddr> = None;
    let mut i = 0;
    while i < args.len() {
        let word = &args[i];
        i += 1;
        if !word.starts_with('-') || word == "-" {
            return Err(format!("unexpected argument `{word}'"));
        }
        // `--name=value`, `-xVALUE`, or the value in the next word.
        let (opt, attached): (&str, Option<&str>) = if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (&word[..2 + n.len()], Some(v)),
                None => (word.as_str(), None),
            }
        } else if word.len() > 2 {
            (&word[..2], Some(&word[2..]))
        } else {
            (word.as_str(), None)
        };
        if let Some((_, what)) = REFUSED.iter().find(|(o, _)| *o == opt) {
            return Err(format!(
                "option `{opt}' is not supported: Rampart does not filter by {what}"
            ));
        }
        let Some(name) = canonical(opt) else {
            return Err(format!("unknown option `{word}'"));
        };
        let ports_known = f.proto.is_some_and(|p| PORTED.contains(&p));
        let needs_proto = matches!(
            name,
            "sport" | "dport" | "reply-port-src" | "reply-port-dst"
        );
        // conntrack knows these only once -p named a protocol that has them.
        if (needs_proto && !ports_known) || (name == "state" && f.proto != Some(6)) {
            return Err(format!("unknown option `{word}'"));
        }
        if name == "max" && !list {
            return Err(format!("unknown option `{word}'"));
        }
        let value: Option<String> = if optional_arg(name) {
            match attached {
                Some(v) => Some(v.to_string()),
                None => match args.get(i) {
                    Some(next) if !next.starts_with('-') && !next.starts_with('!') => {
                        i += 1;
                        Some(next.clone())
                    }
                    _ => None,
                },
            }
        } else {
            match attached {
                Some(v) => Some(v.to_string()),
                None => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    None => return Err(format!("option `{word}' requires an argument")),
                },
            }
        };
        let v = value.as_deref().unwrap_or("");
        match name {
            "orig-src" | "orig-dst" => {
                let (a, p) = parse_addr(v, None)?;
                set_family(&mut family, family_of(&a))?;
                if name == "orig-src" {
                    (orig_src, src_prefix) = (Some(a), p);
                } else {
                    (orig_dst, dst_prefix) = (Some(a), p);
                }
            }
            "reply-src" | "reply-dst" => {
                let (a, _) = parse_addr(v, Some(name))?;
                set_family(&mut family, family_of(&a))?;
                let full = if a.is_ipv4() { 32 } else { 128 };
                let net = Some(Net::new(a, full));
                if name == "reply-src" {
                    f.reply_src = net;
                } else {
                    f.reply_dst = net;
                }
            }
            "mask-src" | "mask-dst" => {
                let (a, _) = parse_addr(v, Some(name))?;
                set_family(&mut family, family_of(&a))?;
                if name == "mask-src" {
                    mask_src = Some(a);
                } else {
                    mask_dst = Some(a);
                }
            }
            "protonum" => {
                let p = PROTOCOLS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(v))
                    .map(|(_, p)| *p)
                    .or_else(|| parse_u32(v).filter(|&n| n <= 255).map(|n| n as u8))
                    .ok_or_else(|| format!("`{v}' unsupported protocol"))?;
                f.proto = Some(p);
            }
            "sport" => f.orig_sport = Some(parse_port(v)?),
            "dport" => f.orig_dport = Some(parse_port(v)?),
            "reply-port-src" => f.reply_sport = Some(parse_port(v)?),
            "reply-port-dst" => f.reply_dport = Some(parse_port(v)?),
            "state" => {
                let s = if v == "LISTEN" {
                    TcpState::SynSent2
                } else {
                    *TcpState::ALL
                        .iter()
                        .find(|s| s.name() == v)
                        .ok_or_else(|| format!("unknown TCP state `{v}'"))?
                };
                f.tcp_state = Some(s);
            }
            "mark" => f.mark = Some(parse_mark(v)?),
            "zone" => f.zone = Some(parse_zone(v)?),
            "orig-zone" => f.orig_zone = Some(parse_zone(v)?),
            "reply-zone" => f.reply_zone = Some(parse_zone(v)?),
            "status" => parse_status(v, f, &mut out.warnings)?,
            "family" => {
                let fam = match v {
                    "ipv4" => Family::V4,
                    "ipv6" => Family::V6,
                    _ => return Err(format!("`{v}' unsupported protocol")),
                };
                set_family(&mut family, fam)?;
                explicit_family = Some(fam);
            }
            "src-nat" | "dst-nat" | "any-nat" => {
                let to = match value.as_deref() {
                    Some(v) => parse_nat_to(v, name, &mut family)?,
                    None => NatTo::default(),
                };
                match name {
                    "src-nat" => f.nat.src = Some(to),
                    "dst-nat" => f.nat.dst = Some(to),
                    _ => f.nat.any = Some(to),
                }
            }
            "max" => {
                out.max = Some(
                    v.parse()
                        .map_err(|_| format!("--max wants a number, not `{v}'"))?,
                );
            }
            _ => unreachable!("every canonical name is handled"),
        }
    }
    let _ = explicit_family;
    if f.nat.any.is_some() && (f.nat.src.is_some() || f.nat.dst.is_some()) {
        return Err("cannot specify `--src-nat' or `--dst-nat' with `--any-nat'".into());
    }
    // conntrack's nfct_filter_init: a mask needs its address; a prefix of the full length is
    // the address alone.
    for (addr, prefix, mask, which, slot) in [
        (orig_src, src_prefix, mask_src, "src", &mut f.orig_src),
        (orig_dst, dst_prefix, mask_dst, "dst", &mut f.orig_dst),
    ] {
        let Some(a) = addr else {
            if mask.is_some() {
                return Err(format!("Can't use --mask-{which} without --{which}"));
            }
            continue;
        };
        *slot = Some(match (mask, prefix) {
            (Some(m), _) => {
                let bits = match m {
                    IpAddr::V4(m) => u128::from(u32::from(m)),
                    IpAddr::V6(m) => u128::from(m),
                };
                Net::with_mask(a, bits)
            }
            (None, Some(p)) => Net::new(a, p),
            (None, None) => Net::new(a, if a.is_ipv4() { 32 } else { 128 }),
        });
    }
    f.family = family;
    Ok(out)
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

fn net_json(n: &Net) -> Value {
    let a = n.addr.to_std();
    match n.prefix() {
        Some(p) if u32::from(p) == if n.family == Family::V4 { 32 } else { 128 } => {
            json!(a.to_string())
        }
        Some(p) => json!(format!("{a}/{p}")),
        None => {
            let m = n.family_mask();
            let mask: IpAddr = match n.family {
                Family::V4 => IpAddr::V4((m as u32).into()),
                Family::V6 => IpAddr::V6(m.into()),
            };
            json!(format!("{a}/{mask}"))
        }
    }
}

fn nat_json(to: &NatTo) -> Value {
    json!({ "addr": to.addr.map(|a| a.to_std().to_string()), "port": to.port })
}

/// The filter as a management request carries it.
pub fn to_json(f: &CtFilter) -> Value {
    let mut m = Map::new();
    m.insert("version".into(), json!(FILTER_VERSION));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    put("family", f.family.map(|x| json!(family_name(x))));
    put("proto", f.proto.map(|p| json!(p)));
    put("orig_src", f.orig_src.as_ref().map(net_json));
    put("orig_dst", f.orig_dst.as_ref().map(net_json));
    put("reply_src", f.reply_src.as_ref().map(net_json));
    put("reply_dst", f.reply_dst.as_ref().map(net_json));
    put("orig_sport", f.orig_sport.map(|p| json!(p)));
    put("orig_dport", f.orig_dport.map(|p| json!(p)));
    put("reply_sport", f.reply_sport.map(|p| json!(p)));
    put("reply_dport", f.reply_dport.map(|p| json!(p)));
    put("state", f.tcp_state.map(|s| json!(s.name())));
    put(
        "mark",
        f.mark.map(|(v, mask)| json!({ "value": v, "mask": mask })),
    );
    let names = |bits: u32| -> Vec<&str> {
        STATUS
            .iter()
            .filter(|(_, b)| *b != 0 && bits & b != 0)
            .map(|(n, _)| *n)
            .collect()
    };
    put(
        "status_set",
        (f.status_set != 0).then(|| json!(names(f.status_set))),
    );
    put(
        "status_clear",
        (f.status_clear != 0).then(|| json!(names(f.status_clear))),
    );
    put("zone", f.zone.map(|z| json!(z)));
    put("orig_zone", f.orig_zone.map(|z| json!(z)));
    put("reply_zone", f.reply_zone.map(|z| json!(z)));
    put("src_nat", f.nat.src.as_ref().map(nat_json));
    put("dst_nat", f.nat.dst.as_ref().map(nat_json));
    put("any_nat", f.nat.any.as_ref().map(nat_json));
    Value::Object(m)
}

/// Reads a management request's filter. An unknown version or field is refused with what
/// this build speaks, so a client newer than the daemon learns why.
pub fn from_json(v: &Value) -> Result<CtFilter, String> {
    let o = v
        .as_object()
        .ok_or("bad request: \"filter\" is an object")?;
    match o.get("version").and_then(Value::as_u64) {
        Some(FILTER_VERSION) => {}
        Some(n) => {
            return Err(format!(
                "conntrack filter version {n} is unknown to this daemon, which reads version \
                 {FILTER_VERSION}: use a rampart ctl of the daemon's release"
            ))
        }
        None => return Err("bad request: the filter has no \"version\"".into()),
    }
    let bad = |k: &str, what: &str| format!("bad request: filter {k:?}: {what}");
    let mut f = CtFilter::default();
    let mut family: Option<Family> = None;
    for (k, v) in o {
        let num = |max: u64| -> Result<u64, String> {
            v.as_u64()
                .filter(|&n| n <= max)
                .ok_or_else(|| bad(k, &format!("a number up to {max}")))
        };
        let net = |family: &mut Option<Family>| -> Result<Net, String> {
            let s = v.as_str().ok_or_else(|| bad(k, "an address"))?;
            let (a, rest) = match s.split_once('/') {
                Some((a, r)) => (a, Some(r)),
                None => (s, None),
            };
            let addr: IpAddr = a.parse().map_err(|_| bad(k, "an address"))?;
            set_family(family, family_of(&addr)).map_err(|e| bad(k, &e))?;
            let full = if addr.is_ipv4() { 32 } else { 128 };
            Ok(match rest {
                None => Net::new(addr, full),
                Some(r) => match (r.parse::<u8>(), r.parse::<IpAddr>()) {
                    (Ok(p), _) if p <= full => Net::new(addr, p),
                    (_, Ok(IpAddr::V4(m))) if addr.is_ipv4() => {
                        Net::with_mask(addr, u128::from(u32::from(m)))
                    }
                    (_, Ok(IpAddr::V6(m))) if addr.is_ipv6() => Net::with_mask(addr, u128::from(m)),
                    _ => return Err(bad(k, "a prefix length or mask of the address's family")),
                },
            })
        };
        let nat = |family: &mut Option<Family>| -> Result<NatTo, String> {
            let o = v.as_object().ok_or_else(|| bad(k, "an object"))?;
            let mut to = NatTo::default();
            for (nk, nv) in o {
                match (nk.as_str(), nv) {
                    (_, Value::Null) => {}
                    ("addr", Value::String(s)) => {
                        let a: IpAddr = s.parse().map_err(|_| bad(k, "addr: an address"))?;
                        set_family(family, family_of(&a)).map_err(|e| bad(k, &e))?;
                        to.addr = Some(IpAddr128::from_std(a));
                    }
                    ("port", p) => {
                        to.port = Some(
                            p.as_u64()
                                .filter(|&n| n <= 65535)
                                .ok_or_else(|| bad(k, "port: a number up to 65535"))?
                                as u16,
                        )
                    }
                    _ => return Err(bad(k, &format!("unknown field {nk:?}"))),
                }
            }
            Ok(to)
        };
        let status_bits = || -> Result<u32, String> {
            let mut bits = 0;
            for n in v
                .as_array()
                .ok_or_else(|| bad(k, "a list of status names"))?
            {
                let n = n.as_str().unwrap_or("");
                bits |= STATUS
                    .iter()
                    .find(|(s, _)| *s == n)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| bad(k, &format!("unknown status {n:?}")))?;
            }
            Ok(bits)
        };
        match k.as_str() {
            "version" => {}
            "family" => {
                let fam = match v.as_str() {
                    Some("ipv4") => Family::V4,
                    Some("ipv6") => Family::V6,
                    _ => return Err(bad(k, "\"ipv4\" or \"ipv6\"")),
                };
                set_family(&mut family, fam).map_err(|e| bad(k, &e))?;
            }
            "proto" => f.proto = Some(num(255)? as u8),
            "orig_src" => f.orig_src = Some(net(&mut family)?),
            "orig_dst" => f.orig_dst = Some(net(&mut family)?),
            "reply_src" => f.reply_src = Some(net(&mut family)?),
            "reply_dst" => f.reply_dst = Some(net(&mut family)?),
            "orig_sport" => f.orig_sport = Some(num(65535)? as u16),
            "orig_dport" => f.orig_dport = Some(num(65535)? as u16),
            "reply_sport" => f.reply_sport = Some(num(65535)? as u16),
            "reply_dport" => f.reply_dport = Some(num(65535)? as u16),
            "state" => {
                let s = v.as_str().unwrap_or("");
                f.tcp_state = Some(
                    *TcpState::ALL
                        .iter()
                        .find(|t| t.name() == s)
                        .ok_or_else(|| bad(k, "a TCP state name"))?,
                );
            }
            "mark" => {
                let m = |n: &str| {
                    v.get(n)
                        .and_then(Value::as_u64)
                        .filter(|&x| x <= u64::from(u32::MAX))
                        .map(|x| x as u32)
                };
                let extra = v
                    .as_object()
                    .is_some_and(|o| o.keys().any(|x| x != "value" && x != "mask"));
                match (m("value"), m("mask")) {
                    (Some(val), Some(mask)) if !extra => f.mark = Some((val, mask)),
                    _ => return Err(bad(k, "{\"value\": N, \"mask\": N}, 32-bit numbers")),
                }
            }
            "zone" => f.zone = Some(num(65535)? as u16),
            "orig_zone" => f.orig_zone = Some(num(65535)? as u16),
            "reply_zone" => f.reply_zone = Some(num(65535)? as u16),
            "status_set" => f.status_set = status_bits()?,
            "status_clear" => f.status_clear = status_bits()?,
            "src_nat" => f.nat.src = Some(nat(&mut family)?),
            "dst_nat" => f.nat.dst = Some(nat(&mut family)?),
            "any_nat" => f.nat.any = Some(nat(&mut family)?),
            _ => return Err(format!("bad request: unknown filter field {k:?}")),
        }
    }
    if f.nat.any.is_some() && (f.nat.src.is_some() || f.nat.dst.is_some()) {
        return Err("bad request: any_nat with src_nat or dst_nat".into());
    }
    if (f.orig_sport.is_some()
        || f.orig_dport.is_some()
        || f.reply_sport.is_some()
        || f.reply_dport.is_some())
        && !f.proto.is_some_and(|p| PORTED.contains(&p))
    {
        return Err("bad request: a port needs a proto with ports".into());
    }
    if f.tcp_state.is_some() && f.proto != Some(6) {
        return Err("bad request: a TCP state needs proto 6".into());
    }
    f.family = family;
    Ok(f)
}

#[cfg(test)]
#[path = "ctfilter_tests.rs"]
mod tests;
