//! The linear-scan reference classifier: obviously correct, used by tests to check the others,
//! and by the nat chains (a few rules each, judged once per connection).

use super::{Classifier, FlatRule, PacketMeta};

/// First match by scanning every rule in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Linear;

/// The first rule at or after `from` that matches `p`, or `u32::MAX`.
#[inline(always)]
fn scan(rules: &[FlatRule], p: &PacketMeta, from: u32) -> u32 {
    let start = (from as usize).min(rules.len());
    match rules[start..].iter().position(|r| r.matches(p)) {
        Some(i) => (start + i) as u32,
        None => u32::MAX,
    }
}

impl Classifier for Linear {
    fn classify(&self, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32], out: &mut [u32]) {
        for ((p, &start), o) in pkts.iter().zip(from).zip(out.iter_mut()) {
            *o = scan(rules, p, start);
        }
    }

    /// One packet without the burst call's slices (a nat chain asks for one at a time).
    fn first_match(&self, rules: &[FlatRule], p: &PacketMeta, from: u32) -> u32 {
        scan(rules, p, from)
    }
}
