//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The walk of a mangle chain ([`crate::mangle`]): as [`RuleSet::judge_marked`], but an
//! [`Action::Edit`] changes the frame and the walk goes on, so each rule after it sees the
//! packet as edited (`-m ttl`, `-m tos`, `-m dscp` read the bytes), as Linux's mangle does.

use super::{walk, Action, PacketMeta, RuleSet, Wire};

impl RuleSet {
    /// Walks a mangle chain for one packet: the checks see `frame` at each step with the
    /// rest of `wire` (whose own frame is not read), `edit(k, frame)` applies edit `k` (`false`: drop). `Ok` when the chain
    /// accepts or ends, `Err(rule)` when `rule` drops the packet (`u32::MAX`: the chain did
    /// not end, a compiler bug). Every step moves on by at least one rule, so the walk ends.
    #[inline]
    pub fn walk_edits(
        &self,
        p: &PacketMeta,
        frame: &mut [u8],
        wire: Wire<'static>,
        mark: &mut walk::Marks,
        mut edit: impl FnMut(u32, &mut [u8]) -> bool,
    ) -> Result<(), u32> {
        let mut from = 0u32;
        for _ in 0..=self.rules.len() {
            let w = Wire {
                frame: &*frame,
                ..wire
            };
            let mut idx = self.classifier.first_match(&self.rules, p, from);
            let rule = loop {
                let Some(rule) = self.rules.get(idx as usize) else {
                    break None;
                };
                match &rule.checks {
                    Some(c) if self.checks_hold(c, p, &w, mark) != super::Held::Yes => {
                        idx = self.classifier.first_match(&self.rules, p, idx + 1);
                    }
                    _ => break Some(rule),
                }
            };
            let Some(rule) = rule else {
                return Ok(());
            };
            match rule.action {
                Action::Accept => return Ok(()),
                Action::ContinueAt(next) => from = next.max(idx + 1),
                Action::Mark => {
                    if let Some(c) = &rule.checks {
                        walk::set_mark(c, mark);
                    }
                    from = idx + 1;
                }
                Action::Edit(k) => {
                    if !edit(k, frame) {
                        return Err(idx);
                    }
                    from = idx + 1;
                }
                Action::Log(_) | Action::NoTrack | Action::Ct(_) => from = idx + 1,
                Action::Drop | Action::Reject(_) => return Err(idx),
            }
        }
        Err(u32::MAX)
    }
}
