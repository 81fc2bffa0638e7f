//! `ipset save` files: `create NAME TYPE [options]` and `add NAME ENTRY [options]` lines (and
//! `del` and `flush`, which `ipset restore` takes too) read into the dataplane's
//! [`IpSets`], every value checked as ipset and the kernel check it, every problem reported
//! as a [`RuleError`] at its line and column.
//!
//! Types: hash:ip, hash:net, hash:ip,port, hash:net,port, hash:ip,port,ip, hash:ip,port,net,
//! bitmap:ip, bitmap:port, list:set. Options that change no match (hashsize, bucketsize,
//! initval, counters, comment, skbinfo and their entry values) are taken and change nothing;
//! anything else is refused with a reason.

use super::lex::{tokenize, Token};
use super::names;
use super::RuleError;
use dataplane::classify::ipset::{mask, Elem, IpSet, IpSets, Key, Kind};
use dataplane::wire::{ip_proto, Family, IpAddr128};
use std::net::{Ipv4Addr, Ipv6Addr};

/// `IPSET_MAXNAMELEN` less its NUL.
pub const MAX_NAME: usize = 31;
/// The kernel's largest timeout in seconds (`UINT_MAX / MSEC_PER_SEC`).
pub const MAX_TIMEOUT: u32 = 2_147_483;
/// The most entries a bitmap holds (`IPSET_BITMAP_MAX_RANGE + 1`).
const BITMAP_MAX: u128 = 65_536;
/// The most entries Rampart takes in one set (its memory is made when the file is loaded).
pub const MAX_ENTRIES: u32 = 1 << 24;

/// Reads an `ipset save` file.
pub fn parse_ipsets(file: &str, text: &str) -> Result<IpSets, Vec<RuleError>> {
    let mut sets = IpSets::default();
    let errors = each_line(file, text, |toks| apply_line(&mut sets, toks, At::FILE));
    if errors.is_empty() {
        Ok(sets)
    } else {
        Err(errors)
    }
}

/// `f` on the tokens of each line of `text` that is neither empty nor a comment; the errors
/// of the lexer and of `f`, each at its line and column in `file`.
pub(crate) fn each_line(
    file: &str,
    text: &str,
    mut f: impl FnMut(&[super::lex::Token<'_>]) -> Result<(), Failure>,
) -> Vec<RuleError> {
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let err = |col: u32, message: String| RuleError {
            file: file.to_string(),
            line: line_no,
            col,
            message,
        };
        let toks = match tokenize(line) {
            Ok(t) => t,
            Err((col, m)) => {
                errors.push(err(col, m));
                continue;
            }
        };
        if toks.is_empty() || toks[0].text.starts_with('#') {
            continue;
        }
        if let Err((col, m)) = f(&toks) {
            errors.push(err(col, m));
        }
    }
    errors
}

pub(crate) type Failure = (u32, String);

/// When and how a line is applied.
#[derive(Clone, Copy, Debug, Default)]
pub struct At {
    /// Milliseconds since the sets' start ([`IpSets::elapsed_ms`]): entry timeouts count from
    /// here, and an entry gone by then is as absent. 0 for a file.
    pub now_ms: u64,
    /// `-exist` for every line (`ipset restore -exist`).
    pub exist: bool,
}

impl At {
    pub const FILE: At = At {
        now_ms: 0,
        exist: false,
    };

    /// Whether an entry expiring at `expires` is gone.
    pub fn gone(self, expires: u64) -> bool {
        expires != 0 && self.now_ms > expires
    }

    /// When an entry with a timeout of `secs` (0: never) is gone.
    fn expiry(self, secs: u64) -> u64 {
        if secs == 0 {
            0
        } else {
            self.now_ms + secs * 1000
        }
    }
}

/// One command line against `sets` (all of it or nothing).
pub(crate) fn apply_line(sets: &mut IpSets, toks: &[Token<'_>], at: At) -> Result<(), Failure> {
    // `-exist` may stand anywhere after the command, as ipset takes it.
    let exist = at.exist || toks.iter().skip(1).any(|t| t.text == "-exist" && !t.quoted);
    let kept: Vec<Token<'_>>;
    let toks = if toks.iter().skip(1).any(|t| t.text == "-exist" && !t.quoted) {
        kept = toks
            .iter()
            .enumerate()
            .filter(|(i, t)| *i == 0 || t.text != "-exist" || t.quoted)
            .map(|(_, t)| t.clone())
            .collect();
        &kept[..]
    } else {
        toks
    };
    let at = At { exist, ..at };
    let cmd = &toks[0];
    let name_tok = |what: &str| {
        toks.get(1)
            .ok_or_else(|| (cmd.col, format!("{} needs a set name{what}", cmd.text)))
    };
    match cmd.text.as_ref() {
        "create" | "-N" | "n" => {
            let name = name_tok(" and a type")?;
            check_name(name)?;
            if sets.find(&name.text).is_some() {
                return Err((
                    name.col,
                    format!(
                        "set {} cannot be created: a set with the same name already exists",
                        name.text
                    ),
                ));
            }
            let set = create(name, cmd, &toks[2..])?;
            sets.sets.push(std::sync::Arc::new(set));
            Ok(())
        }
        "add" | "-A" | "a" | "del" | "-D" | "d" => {
            let name = name_tok(" and an entry")?;
            let Some(i) = sets.find(&name.text) else {
                return Err((
                    name.col,
                    format!("the set with the given name ({}) does not exist", name.text),
                ));
            };
            let Some(entry) = toks.get(2) else {
                return Err((name.col, format!("{} needs an entry", cmd.text)));
            };
            let add = matches!(cmd.text.as_ref(), "add" | "-A" | "a");
            change(sets, i, entry, &toks[3..], add, at)
        }
        "flush" | "-F" | "f" => {
            match toks.get(1) {
                None => {
                    for s in &mut sets.sets {
                        *s = std::sync::Arc::new(s.emptied());
                    }
                }
                Some(n) => match sets.find(&n.text) {
                    Some(i) => sets.sets[i] = std::sync::Arc::new(sets.sets[i].emptied()),
                    None => {
                        return Err((
                            n.col,
                            format!("the set with the given name ({}) does not exist", n.text),
                        ))
                    }
                },
            }
            Ok(())
        }
        other => Err((
            cmd.col,
            format!(
                "unsupported command {other:?} (a sets file holds ipset save's create and add \
                 lines; del and flush are taken too)"
            ),
        )),
    }
}

fn check_name(t: &Token<'_>) -> Result<(), Failure> {
    if t.text.is_empty() || t.text.len() > MAX_NAME {
        return Err((
            t.col,
            format!("invalid set name {:?} (1 to {MAX_NAME} characters)", t.text),
        ));
    }
    Ok(())
}

fn number(t: &Token<'_>, what: &str, lo: u64, hi: u64) -> Result<u64, Failure> {
    let s = t.text.as_ref();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        s.parse().ok()
    } else {
        None
    };
    match v {
        Some(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err((
            t.col,
            format!("invalid {what} {s:?} (a number from {lo} to {hi})"),
        )),
    }
}

/// An address of the family as a v4-mapped or IPv6 word.
fn address(family: Family, t: &Token<'_>, s: &str) -> Result<u128, Failure> {
    let bad = || {
        (
            t.col,
            format!(
                "cannot parse {s:?}: not an {} address",
                if family == Family::V4 { "IPv4" } else { "IPv6" }
            ),
        )
    };
    match family {
        Family::V4 => s
            .parse::<Ipv4Addr>()
            .map(|a| u128::from_be_bytes(IpAddr128::from_v4(a).0))
            .map_err(|_| bad()),
        Family::V6 => s
            .parse::<Ipv6Addr>()
            .map(|a| u128::from_be_bytes(a.octets()))
            .map_err(|_| bad()),
    }
}

fn host(family: Family) -> u8 {
    if family == Family::V6 {
        128
    } else {
        32
    }
}

/// `create NAME TYPE options`.
fn create(name: &Token<'_>, cmd: &Token<'_>, rest: &[Token<'_>]) -> Result<IpSet, Failure> {
    let Some(ty) = rest.first() else {
        return Err((cmd.col, "create needs a set type".into()));
    };
    let kind = Kind::from_name(&ty.text).ok_or_else(|| {
        (
            ty.col,
            format!(
                "set type {} is not supported (Rampart takes hash:ip, hash:net, hash:ip,port, \
                 hash:net,port, hash:ip,port,ip, hash:ip,port,net, hash:net,net, \
                 hash:net,port,net, bitmap:ip, bitmap:port and list:set)",
                ty.text
            ),
        )
    })?;
    let hash = kind.has_family();
    let is_hash = !matches!(kind, Kind::BitmapIp | Kind::BitmapPort | Kind::ListSet);
    let mut family = Family::V4;
    let mut netmask = None;
    let mut range = None;
    let mut timeout = None;
    let mut maxelem = 65536u32;
    let mut size = 8u32;
    let mut options = Vec::new();
    let mut i = 1;
    let mut seen: Vec<&str> = Vec::new();
    while i < rest.len() {
        let opt = &rest[i];
        let o = opt.text.as_ref();
        i += 1;
        let takes_value = matches!(
            o,
            "family"
                | "hashsize"
                | "maxelem"
                | "bucketsize"
                | "initval"
                | "netmask"
                | "range"
                | "timeout"
                | "size"
                | "bitmask"
                | "markmask"
        );
        let value = if takes_value {
            let v = rest
                .get(i)
                .ok_or_else(|| (opt.col, format!("option {o} needs a value")))?;
            i += 1;
            Some(v)
        } else {
            None
        };
        if seen.contains(&o) {
            return Err((opt.col, format!("option {o} is given twice")));
        }
        let refuse = |why: &str| Err((opt.col, format!("option {o} {why}")));
        match (o, value) {
            ("family", Some(v)) if hash && kind != Kind::BitmapIp || kind == Kind::BitmapIp => {
                family = match v.text.as_ref() {
                    "inet" | "ipv4" | "-4" => Family::V4,
                    "inet6" | "ipv6" | "-6" if kind != Kind::BitmapIp => Family::V6,
                    _ => {
                        return Err((
                            v.col,
                            format!(
                                "invalid family {:?} for {} (inet{})",
                                v.text,
                                kind.name(),
                                if kind == Kind::BitmapIp {
                                    " only"
                                } else {
                                    " or inet6"
                                }
                            ),
                        ))
                    }
                };
            }
            ("hashsize", Some(v)) if is_hash => {
                number(v, "hashsize", 1, u64::from(u32::MAX))?;
            }
            ("maxelem", Some(v)) if is_hash => {
                maxelem = number(v, "maxelem", 1, u64::from(u32::MAX))? as u32;
                if maxelem > MAX_ENTRIES {
                    return Err((
                        v.col,
                        format!(
                            "maxelem {maxelem} is more than Rampart takes in one set \
                             ({MAX_ENTRIES}): a set's memory is made when it is loaded"
                        ),
                    ));
                }
            }
            ("bucketsize", Some(v)) if is_hash => {
                number(v, "bucketsize", 2, 255)?;
            }
            ("initval", Some(v)) if is_hash => {
                number(v, "initval", 0, u64::from(u32::MAX))?;
            }
            ("netmask", Some(v)) if matches!(kind, Kind::HashIp | Kind::BitmapIp) => {
                netmask = Some((number(v, "netmask", 1, 128)? as u8, v));
            }
            ("range", Some(v)) if matches!(kind, Kind::BitmapIp | Kind::BitmapPort) => {
                range = Some(v);
            }
            ("timeout", Some(v)) => {
                timeout = Some(number(v, "timeout", 0, u64::from(MAX_TIMEOUT))? as u32);
            }
            ("size", Some(v)) if kind == Kind::ListSet => {
                size = number(v, "size", 1, u64::from(u32::MAX))? as u32;
            }
            ("counters" | "comment" | "skbinfo", None) => {}
            ("forceadd", None) if is_hash => {
                return refuse(
                    "is not supported: a full set would evict an entry at random, and Rampart's \
                     sets do not change by packets",
                )
            }
            ("bitmask" | "markmask", _) => {
                return refuse("is not supported (no set type Rampart holds takes it)")
            }
            _ => {
                return refuse(&format!("is not an option of {} sets", kind.name()));
            }
        }
        seen.push(match o {
            "family" => "family",
            "hashsize" => "hashsize",
            "maxelem" => "maxelem",
            "bucketsize" => "bucketsize",
            "initval" => "initval",
            "netmask" => "netmask",
            "range" => "range",
            "timeout" => "timeout",
            "size" => "size",
            "counters" => "counters",
            "comment" => "comment",
            _ => "skbinfo",
        });
        options.push(match value {
            Some(v) => format!("{o} {}", v.text),
            None => o.to_string(),
        });
    }
    let mut set = IpSet::new(&name.text, kind, hash.then_some(family));
    set.timeout = timeout;
    set.maxelem = match kind {
        Kind::ListSet => size,
        _ => maxelem,
    };
    set.options = options.join(" ");
    if let Some((n, v)) = netmask {
        if n > host(family) {
            return Err((
                v.col,
                format!(
                    "netmask {n} is longer than an address ({} bits)",
                    host(family)
                ),
            ));
        }
        set.netmask = n;
    }
    match kind {
        Kind::BitmapIp => {
            let v = range.ok_or_else(|| (ty.col, "bitmap:ip needs a range".to_string()))?;
            let (lo, hi) = if let Some((a, b)) = v.text.split_once('-') {
                (address(family, v, a)?, address(family, v, b)?)
            } else {
                let (a, len) = prefix(family, v, &v.text)?;
                let lo = mask(a, len, 32);
                (lo, lo | (((1u128 << (32 - len)) - 1) & 0xffff_ffff))
            };
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let lo = mask(lo, set.netmask, 32);
            let hi = hi | ((1u128 << (32 - set.netmask)) - 1);
            let elements = ((hi - lo) >> (32 - set.netmask)) + 1;
            if elements > BITMAP_MAX {
                return Err((
                    v.col,
                    format!("range {} holds more than {BITMAP_MAX} entries", v.text),
                ));
            }
            set.range = (lo, hi);
            set.maxelem = elements as u32;
        }
        Kind::BitmapPort => {
            let v = range.ok_or_else(|| (ty.col, "bitmap:port needs a range".to_string()))?;
            let (a, b) = v
                .text
                .split_once('-')
                .ok_or_else(|| (v.col, format!("invalid range {:?} (FROM-TO ports)", v.text)))?;
            let p = |s: &str| {
                names::port(
                    s.strip_prefix("tcp:")
                        .or(s.strip_prefix("udp:"))
                        .unwrap_or(s),
                )
                .map_err(|m| (v.col, m))
            };
            let (a, b) = (p(a)?, p(b)?);
            set.range = (u128::from(a.min(b)), u128::from(a.max(b)));
            set.maxelem = (a.abs_diff(b) as u32) + 1;
        }
        _ => {}
    }
    Ok(set)
}

/// `ADDR[/LEN]`: the address and prefix length (the family's when not given; 0 refused).
fn prefix(family: Family, t: &Token<'_>, s: &str) -> Result<(u128, u8), Failure> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => {
            let len = l
                .parse::<u8>()
                .ok()
                .filter(|&l| l >= 1 && l <= host(family));
            let Some(len) = len else {
                return Err((
                    t.col,
                    format!(
                        "invalid prefix length in {s:?} (1 to {} for this family)",
                        host(family)
                    ),
                ));
            };
            (a, len)
        }
        None => (s, host(family)),
    };
    Ok((mask(address(family, t, a)?, len, host(family)), len))
}

/// `[PROTO:]PORT` as `(port, protocol)`: TCP when no protocol is given, ICMP and ICMPv6 as a
/// name or `TYPE/CODE` (`type << 8 | code`), port 0 for protocols without ports.
fn proto_port(family: Family, t: &Token<'_>, s: &str) -> Result<(u16, u8), Failure> {
    let (proto, port) = match s.split_once(':') {
        Some((p, v)) => {
            let n = names::protocol(p).map_err(|m| (t.col, m))?;
            let Some(n) = n else {
                return Err((t.col, format!("invalid protocol {p:?} in {s:?}")));
            };
            (n, v)
        }
        None => (ip_proto::TCP, s),
    };
    match proto {
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let (want, fam) = if proto == ip_proto::ICMP {
                (Family::V4, "inet")
            } else {
                (Family::V6, "inet6")
            };
            if family != want {
                return Err((
                    t.col,
                    format!(
                        "protocol {} can be used with family {fam} only",
                        &s[..s.find(':').unwrap_or(0)]
                    ),
                ));
            }
            if port.starts_with(|c: char| c.is_ascii_digit()) && !port.contains('/') {
                return Err((
                    t.col,
                    format!("cannot parse {port:?} as an ICMP type/code (NAME or TYPE/CODE)"),
                ));
            }
            let (ty, lo, hi) = names::icmp_type(family, port).map_err(|m| (t.col, m))?;
            if family == Family::V4 && ty == 0xff && lo == 0 && hi == 0xff {
                return Err((t.col, format!("cannot parse {port:?} as an ICMP type/code")));
            }
            let code = if lo == hi { lo } else { 0 };
            Ok((u16::from(ty) << 8 | u16::from(code), proto))
        }
        6 | 17 | 132 | 136 => Ok((names::port(port).map_err(|m| (t.col, m))?, proto)),
        _ => match port {
            "0" => Ok((0, proto)),
            _ => Err((
                t.col,
                format!("protocol {proto} has no ports: write PROTO:0 ({s:?})"),
            )),
        },
    }
}

/// An `add` or `del` of `entry` (with its options) to set `i`.
fn change(
    sets: &mut IpSets,
    i: usize,
    entry: &Token<'_>,
    opts: &[Token<'_>],
    add: bool,
    at: At,
) -> Result<(), Failure> {
    let set = &sets.sets[i];
    let kind = set.kind;
    // Options.
    let mut expires = at.expiry(set.timeout.map_or(0, u64::from));
    let mut nomatch = false;
    let mut place: Option<(bool, usize, u32)> = None;
    let mut j = 0;
    while j < opts.len() {
        let o = &opts[j];
        j += 1;
        let mut value = || {
            let v = opts
                .get(j)
                .ok_or_else(|| (o.col, format!("option {} needs a value", o.text)));
            j += 1;
            v
        };
        match o.text.as_ref() {
            "timeout" => {
                let v = value()?;
                let t = number(v, "timeout", 0, u64::from(MAX_TIMEOUT))?;
                if set.timeout.is_none() {
                    return Err((
                        o.col,
                        format!(
                            "timeout cannot be used: set {} was created without timeout support",
                            set.name
                        ),
                    ));
                }
                expires = at.expiry(t);
            }
            "nomatch" if kind.nomatch() => nomatch = true,
            "packets" | "bytes" => {
                number(value()?, &o.text, 0, u64::MAX)?;
            }
            "comment" => {
                let v = value()?;
                if v.text.len() > 255 {
                    return Err((v.col, "a comment is at most 255 characters".into()));
                }
            }
            "skbmark" | "skbprio" | "skbqueue" => {
                value()?;
            }
            "before" | "after" if kind == Kind::ListSet => {
                let v = value()?;
                let Some(m) = sets.find(&v.text) else {
                    return Err((v.col, format!("set {} does not exist", v.text)));
                };
                let Some(at) = set.members.iter().position(|x| x.0 == m) else {
                    return Err((
                        v.col,
                        format!("set {} is not a member of {}", v.text, set.name),
                    ));
                };
                place = Some((o.text == "before", at, v.col));
            }
            other => {
                return Err((
                    o.col,
                    format!("{other:?} is not an entry option of {} sets", kind.name()),
                ))
            }
        }
    }
    if kind == Kind::ListSet {
        let Some(m) = sets.find(&entry.text) else {
            return Err((
                entry.col,
                format!(
                    "set {} to be added as an element does not exist",
                    entry.text
                ),
            ));
        };
        let set = &sets.sets[i];
        let pos = set.members.iter().position(|x| x.0 == m && !at.gone(x.1));
        if sets.sets[m].kind == Kind::ListSet {
            return Err((
                entry.col,
                format!(
                    "set {}: a list:set cannot be a member of a list:set",
                    entry.text
                ),
            ));
        }
        if pos.is_none() && !add && at.exist {
            return Ok(());
        }
        let set = sets.set_mut(i);
        set.purge_expired(at.now_ms);
        let pos = set.members.iter().position(|x| x.0 == m);
        if !add {
            let Some(pos) = pos else {
                return Err((
                    entry.col,
                    format!("{} is not in set {}", entry.text, set.name),
                ));
            };
            set.members.remove(pos);
            return Ok(());
        }
        if let Some(pos) = pos.filter(|_| at.exist) {
            set.members[pos].1 = expires;
            return Ok(());
        }
        if pos.is_some() {
            return Err((
                entry.col,
                format!(
                    "element cannot be added to the set: {} is already added",
                    entry.text
                ),
            ));
        }
        if set.members.len() >= set.maxelem as usize {
            return Err((entry.col, format!("list set {} is full", set.name)));
        }
        let at = match place {
            Some((true, at, _)) => at,
            Some((false, at, _)) => at + 1,
            None => set.members.len(),
        };
        set.members.insert(at, (m, expires));
        return Ok(());
    }
    let key = entry_key(set, entry)?;
    let present = set.entries.get(&key).is_some_and(|e| !at.gone(e.expires));
    if !add {
        if !present {
            if at.exist {
                return Ok(());
            }
            return Err((
                entry.col,
                "element cannot be deleted from the set: it's not added".into(),
            ));
        }
        sets.set_mut(i).remove(&key);
        return Ok(());
    }
    if present && !at.exist {
        return Err((
            entry.col,
            "element cannot be added to the set: it's already added".into(),
        ));
    }
    let set = sets.set_mut(i);
    if present {
        // `-exist`: the entry's timeout and nomatch are those given now, as the kernel's
        // re-add with IPSET_FLAG_EXIST.
        set.entries.insert(key, Elem { nomatch, expires });
        return Ok(());
    }
    if set.entries.len() >= set.maxelem as usize && set.timeout.is_some() {
        set.purge_expired(at.now_ms);
    }
    // An entry gone by its timeout is replaced.
    set.remove(&key);
    if set.entries.len() >= set.maxelem as usize {
        return Err((
            entry.col,
            format!(
                "set {} is full ({} entries, its maxelem), cannot add more elements",
                set.name, set.maxelem
            ),
        ));
    }
    set.insert(key, Elem { nomatch, expires });
    Ok(())
}

/// The key of an entry of a hash or bitmap set.
pub(crate) fn entry_key(set: &IpSet, t: &Token<'_>) -> Result<Key, Failure> {
    let family = set.family.unwrap_or(Family::V4);
    let parts: Vec<&str> = t.text.split(',').collect();
    let want = usize::from(set.kind.dimension());
    if parts.len() != want {
        return Err((
            t.col,
            format!(
                "invalid entry {:?} for {} (it has {want} part{})",
                t.text,
                set.kind.name(),
                if want == 1 { "" } else { "s, comma separated" }
            ),
        ));
    }
    let h = host(family);
    let mut key = Key::default();
    let single = |s: &str| -> Result<u128, Failure> {
        if s.contains('/') || s.contains('-') {
            return Err((
                t.col,
                format!(
                    "{s:?}: a range or prefix is not taken in an address dimension (one \
                     address an entry, as ipset save writes them)"
                ),
            ));
        }
        address(family, t, s)
    };
    match set.kind {
        Kind::HashIp => {
            key.a = mask(single(parts[0])?, set.netmask, h);
            if key.a == 0 || h == 32 && key.a as u32 == 0 {
                return Err((t.col, "zero valued IP address is not allowed".into()));
            }
        }
        Kind::BitmapIp => {
            let a = single(parts[0])?;
            if a < set.range.0 || a > set.range.1 {
                return Err((t.col, format!("{} is outside the set's range", parts[0])));
            }
            key.a = mask(a, set.netmask, h);
        }
        Kind::BitmapPort => {
            let p = parts[0];
            let p = p
                .strip_prefix("tcp:")
                .or(p.strip_prefix("udp:"))
                .unwrap_or(p);
            let port = names::port(p).map_err(|m| (t.col, m))?;
            if u128::from(port) < set.range.0 || u128::from(port) > set.range.1 {
                return Err((t.col, format!("port {port} is outside the set's range")));
            }
            key.port = port;
        }
        Kind::HashNet | Kind::HashNetPort | Kind::HashNetNet | Kind::HashNetPortNet => {
            (key.a, key.cidr) = prefix(family, t, parts[0])?;
        }
        Kind::HashIpPort | Kind::HashIpPortIp | Kind::HashIpPortNet => {
            key.a = single(parts[0])?;
        }
        Kind::ListSet => {}
    }
    if set.kind.has_port() {
        (key.port, key.proto) = proto_port(family, t, parts[1])?;
    }
    match set.kind {
        Kind::HashIpPortIp => key.b = single(parts[2])?,
        Kind::HashIpPortNet => (key.b, key.cidr) = prefix(family, t, parts[2])?,
        Kind::HashNetNet => (key.b, key.cidr2) = prefix(family, t, parts[1])?,
        Kind::HashNetPortNet => (key.b, key.cidr2) = prefix(family, t, parts[2])?,
        _ => {}
    }
    Ok(key)
}
