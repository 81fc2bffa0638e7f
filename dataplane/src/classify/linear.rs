//! The linear-scan reference classifier: obviously correct, used by tests to check the others.

use super::{Classifier, FlatRule, PacketMeta};

/// First match by scanning every rule in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Linear;

impl Classifier for Linear {
    fn classify(&self, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32], out: &mut [u32]) {
        for ((p, &start), o) in pkts.iter().zip(from).zip(out.iter_mut()) {
            *o = rules
                .iter()
                .enumerate()
                .skip(start as usize)
                .find(|(_, r)| r.matches(p))
                .map_or(u32::MAX, |(i, _)| i as u32);
        }
    }
}
