//! A bridge with tracking, loaded from an iptables-save text as the daemon loads a file, for
//! the tests that send built frames through the tracked pipeline (`mangle_tests`,
//! `connmark_tests`).

use crate::config::Mode;
use crate::load::{load_filter, tree_classifier, RuleFiles};
use crate::rules::Hook;
use dataplane::filter::Filter;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::Verdict;

/// The bridge's two ports, `inside` and `outside`.
pub(crate) const INSIDE: u16 = 0;
pub(crate) const OUTSIDE: u16 = 1;

/// The IPv4 rules `text` as the daemon loads them (bridge mode, FORWARD).
pub(crate) fn load(text: &str) -> Filter {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.v4");
    std::fs::write(&path, text).unwrap();
    let files = RuleFiles {
        rules: Some(&path),
        ..RuleFiles::default()
    };
    let ports = ["inside".to_string(), "outside".to_string()];
    load_filter(
        &files,
        &ports,
        Hook::Forward,
        Mode::Bridge,
        &tree_classifier,
    )
    .unwrap()
}

pub(crate) struct Rig {
    pub(crate) bridge: Bridge,
    pub(crate) filter: Filter,
    pub(crate) tables: Tables,
    pub(crate) now: u64,
}

impl Rig {
    pub(crate) fn new(text: &str) -> Rig {
        Rig {
            bridge: Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop),
            filter: load(text),
            tables: Tables::new(&TrackConfig::new(64)),
            now: 1_000_000_000,
        }
    }

    /// The verdict and the frame as it leaves, a millisecond after the last frame.
    pub(crate) fn send(&mut self, ingress: u16, mut frame: Vec<u8>) -> (Verdict, Vec<u8>) {
        self.now += 1_000_000;
        let out = self.bridge.judge(
            &self.filter,
            Some(&mut self.tables),
            ingress,
            &mut frame,
            self.now,
            |_, _, _| {},
        );
        (out.verdict, frame)
    }
}
