//! Options of `-m recent` (xt_recent's named lists) and of the IPv6 extension header and
//! SPI matches (`frag`, `hbh`, `dst`, `ipv6header`, `ah`, `esp`), kept apart from the other
//! matches' so that each is one hook in the parser.

use super::super::ast::*;
use super::super::matches;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::ipv6ext::{bits, ExtMatch};
use dataplane::classify::recent::{self, RecentMatch, RecentOp, MAX_HITCOUNT};
use dataplane::classify::Check;
use dataplane::wire::Family;
use std::sync::Arc;

/// xt_recent's longest list name (`XT_RECENT_NAME_LEN` less its NUL).
const MAX_NAME: usize = 199;

/// What the parser holds for the matches of this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    recents: Vec<PendingRecent>,
}

/// A `-m recent` being read: where its check goes among the rule's matches, and its options.
struct PendingRecent {
    at: usize,
    col: u32,
    op: Option<(RecentOp, bool, u32)>,
    seconds: u32,
    hitcount: u32,
    reap: Option<u32>,
    rttl: Option<u32>,
    dest: bool,
    name: String,
    mask: Option<[u8; 16]>,
}

/// The module `-m NAME` loads in `family`, if it is one of this file's.
pub(super) fn module(name: &str, family: Family) -> Option<Module> {
    Some(match (name, family) {
        ("recent", _) => Module::Recent,
        ("frag", Family::V6) => Module::Frag,
        ("hbh", Family::V6) => Module::Hbh,
        ("dst", Family::V6) => Module::Dst,
        ("ipv6header", Family::V6) => Module::Ipv6Header,
        ("ah", _) => Module::Ah,
        ("esp", _) => Module::Esp,
        _ => return None,
    })
}

/// The canonical name of `opt` if `module` is one of this file's and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    Some(match (module, opt) {
        (Module::Frag, "--fragid") => "--fragid",
        (Module::Frag, "--fraglen") => "--fraglen",
        (Module::Frag, "--fragres") => "--fragres",
        (Module::Frag, "--fragfirst") => "--fragfirst",
        (Module::Frag, "--fragmore") => "--fragmore",
        (Module::Frag, "--fraglast") => "--fraglast",
        (Module::Hbh, "--hbh-len") => "--hbh-len",
        (Module::Hbh, "--hbh-opts") => "--hbh-opts",
        (Module::Dst, "--dst-len") => "--dst-len",
        (Module::Dst, "--dst-opts") => "--dst-opts",
        (Module::Ipv6Header, "--header") => "--header",
        (Module::Ipv6Header, "--soft") => "--soft",
        (Module::Ah, "--ahspi") => "--ahspi",
        (Module::Ah, "--ahlen") => "--ahlen",
        (Module::Ah, "--ahres") => "--ahres",
        (Module::Esp, "--espspi") => "--espspi",
        (Module::Recent, "--set") => "--set",
        (Module::Recent, "--rcheck") => "--rcheck",
        (Module::Recent, "--update") => "--update",
        (Module::Recent, "--remove") => "--remove",
        (Module::Recent, "--seconds") => "--seconds",
        (Module::Recent, "--reap") => "--reap",
        (Module::Recent, "--hitcount") => "--hitcount",
        (Module::Recent, "--rttl") => "--rttl",
        (Module::Recent, "--name") => "--name",
        (Module::Recent, "--rsource") => "--rsource",
        (Module::Recent, "--rdest") => "--rdest",
        (Module::Recent, "--mask") => "--mask",
        _ => return None,
    })
}

/// Whether `canonical` is an option of this file's modules.
pub(super) fn takes(canonical: &str) -> bool {
    [
        Module::Recent,
        Module::Frag,
        Module::Hbh,
        Module::Dst,
        Module::Ipv6Header,
        Module::Ah,
        Module::Esp,
    ]
    .into_iter()
    .any(|m| module_option(m, canonical).is_some())
}

/// `ipv6header`'s names and numbers (libip6t_ipv6header's table) as its bits.
fn header_bit(name: &str) -> Option<u8> {
    Some(match name {
        "hop-by-hop" | "hop" | "0" => bits::HOPOPTS,
        "dst" | "60" => bits::DSTOPTS,
        "route" | "43" => bits::ROUTING,
        "frag" | "44" => bits::FRAGMENT,
        "auth" | "51" => bits::AH,
        "esp" | "50" => bits::ESP,
        "none" | "59" => bits::NONE,
        "protocol" | "prot" | "255" => bits::PROTO,
        _ => return None,
    })
}

impl<'a> RuleParser<'a> {
    /// `-m MODULE` was read (at `col`).
    pub(super) fn ext_load(&mut self, module: Module, col: u32) {
        let v6 = self.ctx.family == Family::V6;
        let m = match module {
            Module::Frag => ExtMatch::Frag {
                ids: (0, u32::MAX, false),
                res: false,
                first: false,
                more: false,
                last: false,
            },
            Module::Hbh | Module::Dst => ExtMatch::Opts {
                dst: module == Module::Dst,
                len: None,
                opts: None,
            },
            Module::Ipv6Header => ExtMatch::Header {
                flags: 0,
                inv: 0,
                soft: false,
            },
            Module::Ah if v6 => ExtMatch::Ah6 {
                spis: (0, u32::MAX, false),
                len: (0, false),
                res: false,
            },
            Module::Ah | Module::Esp => ExtMatch::Spi {
                ah: module == Module::Ah,
                spis: (0, u32::MAX, false),
            },
            _ => return self.recent_load(module, col),
        };
        self.push(col, false, Cond::Check(Check::Ext(Arc::new(m))));
    }

    /// The last extension header match's fields.
    fn last_ext(&mut self) -> Option<&mut ExtMatch> {
        self.matches
            .iter_mut()
            .rev()
            .find_map(|m| match &mut m.cond {
                Cond::Check(Check::Ext(e)) => Some(Arc::make_mut(e)),
                _ => None,
            })
    }

    /// An option of an extension header or SPI match.
    fn ext_header_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let flag = matches!(
            canonical,
            "--fragres" | "--fragfirst" | "--fragmore" | "--fraglast" | "--ahres" | "--soft"
        );
        if flag || matches!(canonical, "--hbh-opts" | "--dst-opts") {
            self.no_negation(tok, negated)?;
        }
        if matches!(canonical, "--fragmore" | "--fraglast") {
            let other = if canonical == "--fragmore" {
                "--fraglast"
            } else {
                "--fragmore"
            };
            let inst = self
                .instances
                .iter()
                .rev()
                .find(|i| i.module == Module::Frag);
            if inst.is_some_and(|i| i.used.contains(&other)) {
                return Err(self.err(
                    tok.col,
                    format!("{canonical} cannot be combined with {other} in one -m frag"),
                ));
            }
        }
        let v = if flag { None } else { Some(self.value(tok)?) };
        let col = v.map_or(tok.col, |v| v.col);
        let text = v.map_or("", |v| &v.text);
        let err = |p: &Self, m: String| p.err(col, m);
        let range = |p: &Self, what| matches::range(text, u32::MAX, what).map_err(|m| err(p, m));
        let number = |p: &Self, what| matches::number(text, u32::MAX, what).map_err(|m| err(p, m));
        let opts = |p: &Self| -> Result<Vec<u16>, RuleError> {
            let mut out = Vec::new();
            for part in text.split(',') {
                let (ty, len) = match part.split_once(':') {
                    Some((t, l)) => (t, Some(l)),
                    None => (part, None),
                };
                let ty = matches::number(ty, 255, "option type").map_err(|m| err(p, m))?;
                let len = match len {
                    Some(l) => matches::number(l, 255, "option length").map_err(|m| err(p, m))?,
                    None => 0xff,
                };
                out.push((ty << 8 | len) as u16);
            }
            if out.len() > 16 {
                return Err(err(p, "at most 16 options may be listed".to_string()));
            }
            Ok(out)
        };
        let (lo, hi, n, o, h) = match canonical {
            "--fragid" | "--ahspi" | "--espspi" => {
                let (lo, hi) = range(self, if canonical == "--fragid" { "id" } else { "SPI" })?;
                (lo, hi, 0, None, 0)
            }
            "--fraglen" | "--hbh-len" | "--dst-len" | "--ahlen" => {
                (0, 0, number(self, "length")?, None, 0)
            }
            "--hbh-opts" | "--dst-opts" => (0, 0, 0, Some(opts(self)?), 0),
            "--header" => {
                let mut b = 0;
                for name in text.split(',') {
                    b |= header_bit(name).ok_or_else(|| {
                        err(self, format!("unknown header {name:?} (hop-by-hop, dst, route, frag, auth, esp, none, protocol, or their numbers)"))
                    })?;
                }
                (0, 0, 0, None, b)
            }
            _ => (0, 0, 0, None, 0),
        };
        let Some(m) = self.last_ext() else {
            return Ok(());
        };
        match m {
            ExtMatch::Frag {
                ids,
                res,
                first,
                more,
                last,
            } => match canonical {
                "--fragid" => *ids = (lo, hi, negated),
                "--fragres" => *res = true,
                "--fragfirst" => *first = true,
                "--fragmore" => *more = true,
                "--fraglast" => *last = true,
                // --fraglen: ip6t_frag keeps it and never compares it.
                _ => {}
            },
            ExtMatch::Opts { len, opts, .. } => match o {
                Some(list) => *opts = Some(list),
                None => *len = Some((n, negated)),
            },
            ExtMatch::Header { flags, inv, soft } => {
                if canonical == "--soft" {
                    *soft = true;
                } else {
                    *flags = h;
                    *inv = if negated { 0xff } else { 0 };
                }
            }
            ExtMatch::Ah6 { spis, len, res } => match canonical {
                "--ahspi" => *spis = (lo, hi, negated),
                "--ahlen" => *len = (n, negated),
                _ => *res = true,
            },
            ExtMatch::Spi { spis, .. } => *spis = (lo, hi, negated),
        }
        Ok(())
    }

    /// What the kernel and ip6tables refuse of a module of this file: `-m esp` and iptables'
    /// `-m ah` without their protocol, `-m ipv6header` without `--header`, ip6tables' AH
    /// options in iptables.
    pub(super) fn ext_check_module(
        &self,
        module: Module,
        col: u32,
        proto: Option<u8>,
    ) -> Result<(), RuleError> {
        let v4 = self.ctx.family == Family::V4;
        let inst = self.instances.iter().find(|i| i.col == col);
        let used = |o: &str| inst.is_some_and(|i| i.used.contains(&o));
        match module {
            Module::Esp if proto != Some(50) => Err(self.err(
                col,
                "-m esp needs -p esp (the kernel's match is for protocol 50 only)",
            )),
            Module::Ah if v4 && proto != Some(51) => Err(self.err(
                col,
                "-m ah needs -p ah (the kernel's match is for protocol 51 only)",
            )),
            Module::Ah if v4 && (used("--ahlen") || used("--ahres")) => Err(self.err(
                col,
                "iptables' -m ah takes --ahspi only (--ahlen and --ahres are ip6tables')",
            )),
            Module::Ipv6Header if !used("--header") => {
                Err(self.err(col, "-m ipv6header needs --header"))
            }
            _ => Ok(()),
        }
    }

    /// `-m recent` was read (at `col`).
    fn recent_load(&mut self, module: Module, col: u32) {
        if module == Module::Recent {
            self.ext.recents.push(PendingRecent {
                at: self.matches.len(),
                col,
                op: None,
                seconds: 0,
                hitcount: 0,
                reap: None,
                rttl: None,
                dest: false,
                name: "DEFAULT".to_string(),
                mask: None,
            });
        }
    }

    /// An option of this file's modules (`canonical`, already checked to be given once).
    pub(super) fn ext_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        if module_option(Module::Recent, canonical).is_none() {
            return self.ext_header_option(canonical, tok, negated);
        }
        let family = self.ctx.family;
        let op = match canonical {
            "--set" => Some(RecentOp::Set),
            "--rcheck" => Some(RecentOp::Check),
            "--update" => Some(RecentOp::Update),
            "--remove" => Some(RecentOp::Remove),
            _ => None,
        };
        if op.is_none() {
            self.no_negation(tok, negated)?;
        }
        let value = match canonical {
            "--seconds" | "--hitcount" | "--name" | "--mask" => Some(self.value(tok)?),
            _ => None,
        };
        let err = |p: &Self, col: u32, m: String| p.err(col, m);
        let mut parsed_mask = None;
        let mut number = None;
        if let Some(v) = value {
            match canonical {
                "--seconds" => {
                    number = Some(
                        matches::number(&v.text, u32::MAX, "seconds")
                            .map_err(|m| err(self, v.col, m))?,
                    );
                }
                "--hitcount" => {
                    let n = matches::number(&v.text, u32::MAX, "hit count")
                        .map_err(|m| err(self, v.col, m))?;
                    if n > MAX_HITCOUNT {
                        return Err(self.err(
                            v.col,
                            format!(
                                "--hitcount {n} is larger than the kernel allows \
                                 ({MAX_HITCOUNT}: the stamps an entry can keep)"
                            ),
                        ));
                    }
                    number = Some(n);
                }
                "--name" => {
                    if v.text.is_empty() || v.text.len() > MAX_NAME {
                        return Err(self.err(
                            v.col,
                            format!("--name must be 1 to {MAX_NAME} characters long"),
                        ));
                    }
                }
                _ => {
                    // An IPv4 mask fills the first word and leaves the others zero, which is
                    // what IPv6 addresses meet in a list an IPv4 rule made (libxt_recent
                    // starts from all ones only when there is no --mask).
                    let mut m = [0u8; 16];
                    let ok = match family {
                        Family::V4 => v
                            .text
                            .parse::<std::net::Ipv4Addr>()
                            .map(|a| m[..4].copy_from_slice(&a.octets()))
                            .is_ok(),
                        Family::V6 => v
                            .text
                            .parse::<std::net::Ipv6Addr>()
                            .map(|a| m = a.octets())
                            .is_ok(),
                    };
                    if !ok {
                        return Err(self.err(
                            v.col,
                            format!("invalid --mask {:?} (an address mask)", v.text),
                        ));
                    }
                    parsed_mask = Some(m);
                }
            }
        }
        let col = tok.col;
        let Some(r) = self.ext.recents.last_mut() else {
            return Ok(());
        };
        if let Some(op) = op {
            if r.op.is_some() {
                return Err(self.err(
                    col,
                    "-m recent takes only one of --set, --rcheck, --update and --remove",
                ));
            }
            r.op = Some((op, negated, col));
            return Ok(());
        }
        match canonical {
            "--seconds" => r.seconds = number.unwrap_or(0),
            "--hitcount" => r.hitcount = number.unwrap_or(0),
            "--reap" => r.reap = Some(col),
            "--rttl" => r.rttl = Some(col),
            "--rsource" | "--rdest" => {
                let other = if canonical == "--rsource" {
                    "--rdest"
                } else {
                    "--rsource"
                };
                let inst = self
                    .instances
                    .iter()
                    .rev()
                    .find(|i| i.module == Module::Recent);
                if inst.is_some_and(|i| i.used.contains(&other)) {
                    return Err(self.err(
                        col,
                        format!("{canonical} cannot be combined with {other} in one -m recent"),
                    ));
                }
                let Some(r) = self.ext.recents.last_mut() else {
                    return Ok(());
                };
                r.dest = canonical == "--rdest";
            }
            "--name" => r.name = value.map(|v| v.text.to_string()).unwrap_or_default(),
            "--mask" => r.mask = parsed_mask,
            _ => {}
        }
        Ok(())
    }

    /// The rule's `-m recent` checks, each at its place among the matches, bound to its list;
    /// the kernel's refusals (`recent_mt_check`).
    pub(super) fn ext_finish(&mut self) -> Result<(), RuleError> {
        let recents = std::mem::take(&mut self.ext.recents);
        for r in recents.into_iter().rev() {
            let Some((op, invert, op_col)) = r.op else {
                return Err(self.err(
                    r.col,
                    "-m recent needs one of --set, --rcheck, --update or --remove",
                ));
            };
            if matches!(op, RecentOp::Set | RecentOp::Remove) {
                let bad = [
                    (r.seconds != 0, "--seconds"),
                    (r.hitcount != 0, "--hitcount"),
                    (r.reap.is_some(), "--reap"),
                    (r.rttl.is_some(), "--rttl"),
                ];
                if let Some((_, what)) = bad.iter().find(|b| b.0) {
                    return Err(self.err(
                        op_col,
                        format!(
                            "{what} goes with --rcheck or --update only (the kernel refuses it \
                             with --set and --remove)"
                        ),
                    ));
                }
            }
            if let (Some(c), 0) = (r.reap, r.seconds) {
                return Err(self.err(c, "--reap needs --seconds"));
            }
            if !self.table.applied() && (op != RecentOp::Check || r.reap.is_some()) {
                return Err(self.err(
                    op_col,
                    format!(
                        "-m recent that changes its list is not supported in the {} table \
                         (Rampart does not apply it, and other rules would see the list \
                         unchanged)",
                        self.table.name()
                    ),
                ));
            }
            let mask = r.mask.unwrap_or([0xff; 16]);
            let list = recent::list(&r.name, mask, recent::history_for(r.hitcount));
            let m = RecentMatch {
                list,
                op,
                invert,
                seconds: r.seconds,
                hitcount: r.hitcount,
                reap: r.reap.is_some(),
                rttl: r.rttl.is_some(),
                dest: r.dest,
                mask,
                forward: false,
            };
            self.place_check(r.at, r.col, Check::Recent(std::sync::Arc::new(m)));
        }
        Ok(())
    }
}
