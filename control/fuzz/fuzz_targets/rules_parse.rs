//! Fuzz the iptables-save front end (`control::rules`) on untrusted rule files.
//!
//! Run with `cargo +nightly fuzz run rules_parse` from `control/`. Besides "never panics", it
//! checks what the compiler promises: every error's Display starts with `FILE:LINE:COL: `, a
//! compiled set ends with a terminal catch-all, and every `ContinueAt` points forward within
//! the set. The first byte picks the family and hook; the rest is the file.

#![no_main]

use control::rules::{compile_iptables, infer_family, Hook};
use dataplane::classify::Action;
use dataplane::wire::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let family = if mode & 1 == 0 {
        Family::V4
    } else {
        Family::V6
    };
    let hook = if mode & 2 == 0 {
        Hook::Forward
    } else {
        Hook::Input
    };
    let ports: Vec<String> = ["in0", "in1", "out0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let _ = infer_family(&text);
    match compile_iptables("fuzz.rules", &text, family, &ports, hook) {
        Ok(rs) => {
            let last = rs.rules.last().expect("a rule set is never empty");
            assert!(matches!(last.action, Action::Accept | Action::Drop));
            for (i, r) in rs.rules.iter().enumerate() {
                if let Action::ContinueAt(t) = r.action {
                    assert!(t as usize > i && (t as usize) < rs.rules.len());
                }
                assert!((r.origin as usize) < rs.origins.len());
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e
                    .to_string()
                    .starts_with(&format!("fuzz.rules:{}:{}: ", e.line, e.col)));
            }
        }
    }
});
