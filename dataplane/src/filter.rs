//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The filter stage: an IP packet that the bridge would forward is judged by the rule set of its
//! family. A family without a rule set is not filtered (Linux's empty ACCEPT policy).
//!
//! Until connection tracking exists every packet is judged as conntrack state NEW.

use crate::classify::{ct, Action, PacketMeta, RejectWith, RuleSet};
use crate::wire::{ip_proto, Family, Fragment, PacketInfo};

/// The filter's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterVerdict {
    /// The family has no rule set.
    Unfiltered,
    Accept {
        rule: u32,
    },
    Drop {
        rule: u32,
    },
    Reject {
        rule: u32,
        with: RejectWith,
    },
}

/// The rule sets in force, one per family.
#[derive(Debug, Default)]
pub struct Filter {
    pub v4: Option<RuleSet>,
    pub v6: Option<RuleSet>,
}

/// Builds what classification looks at from a parsed frame; `None` for non-IP frames.
#[inline]
pub fn packet_meta(
    frame: &[u8],
    info: &PacketInfo,
    in_port: u16,
    out_port: u16,
) -> Option<PacketMeta> {
    let key = info.flow?;
    let later_fragment = matches!(info.frag, Fragment::Later { .. });
    let tcp_flags = if key.proto == ip_proto::TCP && !later_fragment && info.l4_offset != 0 {
        frame
            .get(usize::from(info.l4_offset) + 13)
            .copied()
            .unwrap_or(0)
    } else {
        0
    };
    Some(PacketMeta {
        key,
        in_port: in_port as u8,
        out_port: out_port as u8,
        ct_state: ct::NEW,
        tcp_flags,
        later_fragment,
    })
}

impl Filter {
    /// The rule set for `family`, if any.
    #[inline]
    pub fn rules(&self, family: Family) -> Option<&RuleSet> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// Judges one packet; `on_log` is called for each LOG rule it passes (a cold path).
    #[inline]
    pub fn judge(
        &self,
        meta: &PacketMeta,
        on_log: impl FnMut(u32, &crate::classify::LogSpec),
    ) -> FilterVerdict {
        let Some(rs) = self.rules(meta.key.family) else {
            return FilterVerdict::Unfiltered;
        };
        let j = rs.evaluate(meta, on_log);
        match j.action {
            Action::Accept => FilterVerdict::Accept { rule: j.rule },
            Action::Reject(with) => FilterVerdict::Reject { rule: j.rule, with },
            _ => FilterVerdict::Drop { rule: j.rule },
        }
    }
}
