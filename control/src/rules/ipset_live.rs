//! ipset commands against live sets (`rampart ctl ipset ...`): `add`, `del`, `test`, `list`
//! (`save`), `flush`, `swap`, and `restore` of a file of such lines, all or nothing.
//!
//! Every change is made on a copy of the live [`IpSets`] (the `Vec` of per-set `Arc`s is
//! copied, and only the sets a command changes are copied in full); the caller publishes the
//! copy ([`dataplane::classify::ipset::SetsCell::replace`]) once every line has applied, so a
//! failed command or file changes nothing.

use super::ipsets::{apply_line, At, Failure};
use super::lex::tokenize;
use super::RuleError;
use dataplane::classify::ipset::{IpSet, IpSets, Key, Kind};
use dataplane::wire::{ip_proto, Family};
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// What a command did.
#[derive(Debug)]
pub enum Outcome {
    /// The sets after the change (to publish).
    Changed(IpSets),
    /// `test`: whether the entry is in the set, and ipset's sentence saying so.
    Tested(bool, String),
    /// `list`/`save`: the sets in `ipset save` form.
    Listed(String),
}

/// One command line (`add NAME ENTRY [options] [-exist]`, `del`, `test`, `list [NAME]`,
/// `save [NAME]`, `flush [NAME]`, `swap FROM TO`) against the live `sets`; errors give the
/// column.
pub fn command(sets: &IpSets, line: &str, at: At) -> Result<Outcome, Failure> {
    let toks = tokenize(line)?;
    let Some(cmd) = toks.first() else {
        return Err((1, "no command given".into()));
    };
    match cmd.text.as_ref() {
        "test" | "-T" | "t" => {
            let name = toks
                .get(1)
                .ok_or_else(|| (cmd.col, "test needs a set name and an entry".to_string()))?;
            let i = find(sets, name.col, &name.text)?;
            let entry = toks
                .get(2)
                .ok_or_else(|| (name.col, "test needs an entry".to_string()))?;
            if let Some(extra) = toks.get(3) {
                return Err((
                    extra.col,
                    format!("unexpected {:?} after the entry", extra.text),
                ));
            }
            let set = &sets.sets[i];
            let yes = if set.kind == Kind::ListSet {
                let m = find(sets, entry.col, &entry.text)?;
                set.members.iter().any(|x| x.0 == m && !at.gone(x.1))
            } else {
                test_entry(set, &super::ipsets::entry_key(set, entry)?, at)
            };
            let text = format!(
                "{} is {}in set {}.",
                entry.text,
                if yes { "" } else { "NOT " },
                set.name
            );
            Ok(Outcome::Tested(yes, text))
        }
        "list" | "-L" | "save" | "-S" => {
            if let Some(extra) = toks.get(2) {
                return Err((extra.col, format!("unexpected {:?}", extra.text)));
            }
            let only = match toks.get(1) {
                Some(n) => Some(find(sets, n.col, &n.text)?),
                None => None,
            };
            Ok(Outcome::Listed(save_text(sets, only, at)))
        }
        _ => {
            let mut next = sets.clone();
            apply(&mut next, &toks, at)?;
            Ok(Outcome::Changed(next))
        }
    }
}

/// `ipset restore`: every line of `text` applied to a copy of `sets`, or none (every error
/// reported at its line and column).
pub fn restore(sets: &IpSets, file: &str, text: &str, at: At) -> Result<IpSets, Vec<RuleError>> {
    let mut next = sets.clone();
    let errors = super::ipsets::each_line(file, text, |toks| {
        // `ipset save` output restores as it is; COMMIT ends ipset's own restore batches.
        if toks[0].text == "COMMIT" && toks.len() == 1 {
            return Ok(());
        }
        apply(&mut next, toks, at)
    });
    if errors.is_empty() {
        Ok(next)
    } else {
        Err(errors)
    }
}

/// A changing command: the file's (create, add, del, flush) and `swap`.
fn apply(sets: &mut IpSets, toks: &[super::lex::Token<'_>], at: At) -> Result<(), Failure> {
    let cmd = &toks[0];
    match cmd.text.as_ref() {
        "swap" | "-W" | "w" => {
            let (Some(a), Some(b)) = (toks.get(1), toks.get(2)) else {
                return Err((cmd.col, "swap needs two set names".into()));
            };
            if let Some(extra) = toks.get(3) {
                return Err((extra.col, format!("unexpected {:?}", extra.text)));
            }
            let (i, j) = (find(sets, a.col, &a.text)?, find(sets, b.col, &b.text)?);
            let (x, y) = (&sets.sets[i], &sets.sets[j]);
            if x.kind != y.kind || x.family != y.family {
                return Err((
                    b.col,
                    "the sets cannot be swapped: their type does not match".into(),
                ));
            }
            if x.kind == Kind::ListSet {
                return Err((
                    a.col,
                    "swapping list:set sets is not supported (their members name sets by place)"
                        .into(),
                ));
            }
            // Rules name sets by place: the contents move, the names stay.
            let mut x2 = IpSet::clone(y);
            let mut y2 = IpSet::clone(x);
            x2.name = x.name.clone();
            y2.name = y.name.clone();
            sets.sets[i] = Arc::new(x2);
            sets.sets[j] = Arc::new(y2);
            Ok(())
        }
        "destroy" | "-X" | "x" | "rename" | "-E" | "e" => Err((
            cmd.col,
            format!(
                "{} is not supported at run time: rules name sets by place; load a new sets \
                 file with rules load --ipsets",
                cmd.text
            ),
        )),
        "create" | "-N" | "n" => {
            // `create ... -exist` of a set that exists with the same type: nothing to do.
            let exist = at.exist || toks.iter().any(|t| t.text == "-exist" && !t.quoted);
            if let (true, Some(n), Some(ty)) = (exist, toks.get(1), toks.get(2)) {
                if let Some(i) = sets.find(&n.text) {
                    if sets.sets[i].kind.name() == ty.text {
                        return Ok(());
                    }
                    return Err((
                        ty.col,
                        format!(
                            "set {} cannot be created: a set with the same name already exists \
                             and is of another type",
                            n.text
                        ),
                    ));
                }
            }
            apply_line(sets, toks, at)
        }
        _ => apply_line(sets, toks, at),
    }
}

fn find(sets: &IpSets, col: u32, name: &str) -> Result<usize, Failure> {
    sets.find(name).ok_or_else(|| {
        (
            col,
            format!("the set with the given name ({name}) does not exist"),
        )
    })
}

/// `ipset test` of one entry: a network entry is looked up as written; a host address of a
/// type with a network dimension tries every prefix length present, longest first (the
/// kernel's `mtype_test` for a host-length test). A `nomatch` entry answers no.
pub fn test_entry(set: &IpSet, key: &Key, at: At) -> bool {
    let found = |k: &Key| {
        set.entries
            .get(k)
            .filter(|e| !at.gone(e.expires))
            .map(|e| !e.nomatch)
    };
    let Some(nd) = set.kind.net_dim() else {
        return found(key).unwrap_or(false);
    };
    let host = set.host_bits();
    if set.kind.two_nets() {
        if key.cidr != host || key.cidr2 != host {
            return found(key).unwrap_or(false);
        }
        for &(c0, _) in &set.cidrs {
            for &(c1, _) in &set.cidrs2 {
                let mut k = *key;
                (k.cidr, k.cidr2) = (c0, c1);
                k.a = dataplane::classify::ipset::mask(k.a, c0, host);
                k.b = dataplane::classify::ipset::mask(k.b, c1, host);
                if let Some(yes) = found(&k) {
                    return yes;
                }
            }
        }
        return false;
    }
    if key.cidr != host {
        return found(key).unwrap_or(false);
    }
    for &(cidr, _) in &set.cidrs {
        let mut k = *key;
        k.cidr = cidr;
        if nd == 0 {
            k.a = dataplane::classify::ipset::mask(k.a, cidr, host);
        } else {
            k.b = dataplane::classify::ipset::mask(k.b, cidr, host);
        }
        if let Some(yes) = found(&k) {
            return yes;
        }
    }
    false
}

/// The sets (or set `only`) in `ipset save` form: a `create` line, then an `add` line an
/// entry (in order; timeouts as what is left of them at `at`).
pub fn save_text(sets: &IpSets, only: Option<usize>, at: At) -> String {
    let mut out = String::new();
    for (i, set) in sets.sets.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let _ = write!(out, "create {} {}", set.name, set.kind.name());
        if !set.options.is_empty() {
            let _ = write!(out, " {}", set.options);
        }
        out.push('\n');
        let left = |expires: u64| {
            if set.timeout.is_none() {
                String::new()
            } else if expires == 0 {
                " timeout 0".to_string()
            } else {
                format!(
                    " timeout {}",
                    expires.saturating_sub(at.now_ms).div_ceil(1000)
                )
            }
        };
        if set.kind == Kind::ListSet {
            for &(m, expires) in &set.members {
                if at.gone(expires) {
                    continue;
                }
                let name = sets.sets.get(m).map_or("?", |s| s.name.as_str());
                let _ = writeln!(out, "add {} {name}{}", set.name, left(expires));
            }
            continue;
        }
        let mut entries: Vec<_> = set
            .entries
            .iter()
            .filter(|(_, e)| !at.gone(e.expires))
            .collect();
        entries.sort_by_key(|(k, _)| **k);
        for (k, e) in entries {
            let _ = writeln!(
                out,
                "add {} {}{}{}",
                set.name,
                entry_text(set, k),
                left(e.expires),
                if e.nomatch { " nomatch" } else { "" }
            );
        }
    }
    out
}

/// An entry as ipset writes it.
pub fn entry_text(set: &IpSet, k: &Key) -> String {
    let v6 = set.family == Some(Family::V6);
    let host = set.host_bits();
    let addr = |a: u128| {
        if v6 {
            Ipv6Addr::from(a.to_be_bytes()).to_string()
        } else {
            Ipv4Addr::from(a as u32).to_string()
        }
    };
    let net_of = |a: u128, cidr: u8| {
        if cidr == host {
            addr(a)
        } else {
            format!("{}/{}", addr(a), cidr)
        }
    };
    let net = |a: u128| net_of(a, k.cidr);
    let port = || {
        let name = match k.proto {
            ip_proto::TCP => "tcp",
            ip_proto::UDP => "udp",
            132 => "sctp",
            136 => "udplite",
            ip_proto::ICMP => "icmp",
            ip_proto::ICMPV6 => "icmpv6",
            _ => "",
        };
        let value = match k.proto {
            ip_proto::ICMP | ip_proto::ICMPV6 => format!("{}/{}", k.port >> 8, k.port & 0xff),
            _ => k.port.to_string(),
        };
        if name.is_empty() {
            format!("{}:{value}", k.proto)
        } else {
            format!("{name}:{value}")
        }
    };
    match set.kind {
        Kind::HashIp | Kind::BitmapIp => addr(k.a),
        Kind::BitmapPort => k.port.to_string(),
        Kind::HashNet => net(k.a),
        Kind::HashIpPort => format!("{},{}", addr(k.a), port()),
        Kind::HashNetPort => format!("{},{}", net(k.a), port()),
        Kind::HashIpPortIp => format!("{},{},{}", addr(k.a), port(), addr(k.b)),
        Kind::HashIpPortNet => format!("{},{},{}", addr(k.a), port(), net(k.b)),
        Kind::HashNetNet => format!("{},{}", net(k.a), net_of(k.b, k.cidr2)),
        Kind::HashNetPortNet => format!("{},{},{}", net(k.a), port(), net_of(k.b, k.cidr2)),
        Kind::ListSet => String::new(),
    }
}
