//! Options of `-m physdev` (libxt_physdev, xt_physdev revision 0): the bridge ports a bridged
//! packet came in by and leaves by. In bridge mode they are Rampart's ports (a frame enters by
//! one port of a pair and leaves by the other); in router mode no packet is bridged. What each
//! hook sees is decided when the chain is flattened ([`PhysDev::at`]).

use super::super::ast::*;
use super::{resolve_iface, RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::PortMask;

/// What the parser holds for this module until the rule is read: where each `-m physdev`'s
/// condition is among the rule's matches.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<usize>,
}

/// The canonical name of `opt` if `module` is `-m physdev` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    if module != Module::PhysDev {
        return None;
    }
    Some(match opt {
        "--physdev-in" => "--physdev-in",
        "--physdev-out" => "--physdev-out",
        "--physdev-is-in" => "--physdev-is-in",
        "--physdev-is-out" => "--physdev-is-out",
        "--physdev-is-bridged" => "--physdev-is-bridged",
        _ => return None,
    })
}

/// Whether `canonical` is an option of `-m physdev`.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::PhysDev, canonical).is_some()
}

/// The kernel's refusal (`physdev_mt_check`) of the options that need an output port where a
/// packet may be locally generated.
pub(crate) const OUT_IN_OUTPUT: &str = "--physdev-out and --physdev-is-out only supported in \
     the FORWARD and POSTROUTING chains with bridged traffic";

impl PhysDev {
    /// Whether the kernel refuses this match in a chain reached from OUTPUT: it tests the
    /// output port without `--physdev-is-bridged` (not negated).
    pub(crate) fn refused_in_output(&self) -> bool {
        (self.out.is_some() || self.is_out.is_some()) && self.is_bridged != Some(false)
    }

    /// What the match is at `hook`, as `physdev_mt` answers: `None` when it never holds there,
    /// else the input and output port sets it leaves to test (`None`: any port).
    ///
    /// Router mode: no packet has bridge information, so the match holds exactly when every
    /// option given is negated. Bridge mode: every packet Rampart judges is bridged and has
    /// its input port; its output port is known from FORWARD on (PREROUTING and INPUT have
    /// none: `--physdev-is-out` and `--physdev-is-bridged` fail there, `--physdev-out` fails
    /// negated or not, and `--physdev-in` is tested wherever there is an input port).
    pub(crate) fn at(&self, hook: HookPoint) -> Option<(Option<PortMask>, Option<PortMask>)> {
        if !self.bridged {
            let negated = [
                self.inp.as_ref().map(|i| i.1),
                self.out.as_ref().map(|o| o.1),
                self.is_in,
                self.is_out,
                self.is_bridged,
            ];
            return negated.iter().flatten().all(|&n| n).then_some((None, None));
        }
        let has_in = hook != HookPoint::Output;
        let has_out = matches!(hook, HookPoint::Forward | HookPoint::Postrouting);
        let holds = |flag: Option<bool>, present: bool| flag.is_none_or(|neg| present != neg);
        if !holds(self.is_bridged, has_out)
            || !holds(self.is_in, has_in)
            || !holds(self.is_out, has_out)
        {
            return None;
        }
        let mask = |(iface, neg): &(Iface, bool)| if *neg { !iface.mask } else { iface.mask };
        let inp = self.inp.as_ref().filter(|_| has_in).map(mask);
        let out = match &self.out {
            Some(_) if !has_out => return None,
            Some(o) => Some(mask(o)),
            None => None,
        };
        Some((inp, out))
    }
}

impl<'a> RuleParser<'a> {
    /// `-m physdev` was read (at `col`).
    pub(super) fn physdev_load(&mut self, module: Module, col: u32) {
        if module == Module::PhysDev {
            self.physdev.pending.push(self.matches.len());
            let bridged = !self.ctx.host.routed;
            self.push(
                col,
                false,
                Cond::PhysDev(PhysDev {
                    bridged,
                    ..PhysDev::default()
                }),
            );
        }
    }

    /// An option of `-m physdev` (`canonical`, already checked to be given once).
    pub(super) fn physdev_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let name = match canonical {
            "--physdev-in" | "--physdev-out" => {
                let v = self.value(tok)?;
                let iface = resolve_iface(self.ctx.ports, &v.text).map_err(|m| {
                    self.err(
                        v.col,
                        format!("{m}; -m physdev names Rampart's ports, the bridge's ports"),
                    )
                })?;
                Some(iface)
            }
            _ => None,
        };
        let at = *self.physdev.pending.last().expect("-m physdev loaded");
        let Cond::PhysDev(p) = &mut self.matches[at].cond else {
            unreachable!("the pending -m physdev's condition")
        };
        match canonical {
            "--physdev-in" => p.inp = name.map(|n| (n, negated)),
            "--physdev-out" => p.out = name.map(|n| (n, negated)),
            "--physdev-is-in" => p.is_in = Some(negated),
            "--physdev-is-out" => p.is_out = Some(negated),
            _ => p.is_bridged = Some(negated),
        }
        Ok(())
    }

    /// After the rule is read: the kernel's hook check for the built-in OUTPUT chain (user
    /// chains reached from it are checked with the table, in `validate`).
    pub(super) fn physdev_finish(&mut self) -> Result<(), RuleError> {
        self.physdev.pending.clear();
        for m in &self.matches {
            let Cond::PhysDev(p) = &m.cond else { continue };
            if self.hook == Some(HookPoint::Output) && p.refused_in_output() {
                return Err(self.err(m.col, OUT_IN_OUTPUT));
            }
        }
        Ok(())
    }

    /// `-i`/`-o`'s interface: the ports the name matches and, in bridge mode, every port when
    /// it matches the configured bridge name (br_netfilter gives a bridged packet the bridge as
    /// its input and output device).
    pub(super) fn interface(&self, name: &str) -> Result<Iface, String> {
        let bridge = self
            .ctx
            .host
            .bridge
            .as_deref()
            .filter(|b| match name.strip_suffix('+') {
                Some(stem) => b.starts_with(stem),
                None => *b == name,
            });
        let Some(_) = bridge else {
            return resolve_iface(self.ctx.ports, name);
        };
        let ports = self.ctx.ports.len().min(32);
        let all: PortMask = if ports == 32 {
            PortMask::MAX
        } else {
            (1 << ports) - 1
        };
        Ok(Iface {
            name: name.to_string(),
            mask: all,
        })
    }
}
