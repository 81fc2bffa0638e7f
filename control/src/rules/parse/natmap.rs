//! `-j NETMAP --to ADDR[/MASK]` (libxt_NETMAP, xt_NETMAP) and `-j REDIRECT [--to-ports
//! P[-Q]] [--random]` (libxt_REDIRECT, xt_REDIRECT), read into [`Target::Netmap`] and
//! [`Target::Redirect`].
//!
//! NETMAP's `--to` is a prefix: `ADDR`, `ADDR/LEN` or (IPv4) `ADDR/DOTTED.MASK`; its host bits
//! are dropped, as iptables stores the prefix's first and last address. It is needed, once,
//! not negated. iptables 1.8.9 takes a prefix length beyond the family (`/33`) or a
//! non-contiguous mask and stores a /32 (the mask read as a dotted address, then discarded);
//! both are refused here, as a length beyond the family is by `-s`. The hooks are xt_NETMAP's:
//! PREROUTING, POSTROUTING, INPUT, OUTPUT.
//!
//! REDIRECT's `--to-ports` is a port or a range, once, not negated, and needs a protocol with
//! ports (`-p tcp`, `udp`, `sctp`, `dccp`), as for MASQUERADE; `--random` spreads the ports
//! over the range. The hooks are xt_REDIRECT's: PREROUTING and OUTPUT.

use super::super::ast::*;
use super::{parse_nat_ports, RuleParser, Token};
use crate::rules::RuleError;

/// A NETMAP or REDIRECT target being read.
pub(super) enum Pending {
    Netmap {
        /// The prefix, once `--to` gave it.
        to: Option<AddrRange>,
    },
    Redirect {
        /// `--to-ports` and its column.
        ports: Option<(PortRange, u32)>,
        random: bool,
    },
}

impl Pending {
    /// The pending form of target `name`, if it is NETMAP or REDIRECT.
    pub(super) fn of(name: &str) -> Option<Pending> {
        match name {
            "NETMAP" => Some(Pending::Netmap { to: None }),
            "REDIRECT" => Some(Pending::Redirect {
                ports: None,
                random: false,
            }),
            _ => None,
        }
    }
}

impl<'a> RuleParser<'a> {
    /// A NETMAP or REDIRECT option; `Ok(false)` when `tok` is not one.
    pub(super) fn natmap_target_option(
        &mut self,
        p: &mut Pending,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<bool, RuleError> {
        let opt = tok.text.as_ref();
        match (p, opt) {
            (Pending::Netmap { to }, "--to") => {
                self.no_negation(tok, negated)?;
                if to.is_some() {
                    return Err(self.err(tok.col, "only one --to is allowed"));
                }
                let v = self.value(tok)?;
                let family = self.ctx.family;
                *to = Some(super::parse_net(family, &v.text).map_err(|m| self.err(v.col, m))?);
            }
            (Pending::Redirect { ports, .. }, "--to-ports") => {
                self.no_negation(tok, negated)?;
                if ports.is_some() {
                    return Err(self.err(tok.col, "only one --to-ports is allowed"));
                }
                let v = self.value(tok)?;
                *ports = Some((
                    parse_nat_ports(&v.text).map_err(|m| self.err(v.col, m))?,
                    v.col,
                ));
            }
            (Pending::Redirect { random, .. }, "--random") => {
                self.no_negation(tok, negated)?;
                *random = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The target read, checked against its table and chain (`name_col`: the target name's
    /// column; `l4_ports`: the rule's protocol has ports).
    pub(super) fn finish_natmap(
        &self,
        p: Pending,
        name_col: u32,
        l4_ports: bool,
    ) -> Result<Target, RuleError> {
        let (name, hooks): (&str, &[HookPoint]) = match p {
            Pending::Netmap { .. } => (
                "NETMAP",
                &[
                    HookPoint::Prerouting,
                    HookPoint::Input,
                    HookPoint::Output,
                    HookPoint::Postrouting,
                ],
            ),
            Pending::Redirect { .. } => ("REDIRECT", &[HookPoint::Prerouting, HookPoint::Output]),
        };
        if self.table != TableKind::Nat {
            return Err(self.err(
                name_col,
                format!("target {name} is only valid in the nat table"),
            ));
        }
        if let Some(h) = self.hook.filter(|h| !hooks.contains(h)) {
            let ok: Vec<&str> = hooks.iter().map(|h| h.chain_name()).collect();
            return Err(self.err(
                name_col,
                format!(
                    "target {name} is not valid in chain {} (only in {})",
                    h.chain_name(),
                    ok.join(", ")
                ),
            ));
        }
        match p {
            Pending::Netmap { to } => match to {
                Some(to) => Ok(Target::Netmap(to)),
                None => Err(self.err(name_col, "NETMAP needs --to")),
            },
            Pending::Redirect { ports, random } => {
                if let (Some((_, col)), false) = (ports, l4_ports) {
                    return Err(self.err(
                        col,
                        "a port mapping needs -p tcp, -p udp, -p sctp or -p dccp",
                    ));
                }
                Ok(Target::Redirect {
                    ports: ports.map(|p| p.0),
                    random,
                })
            }
        }
    }
}
