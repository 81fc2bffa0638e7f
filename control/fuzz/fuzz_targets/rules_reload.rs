//! Differential fuzzing of incremental rule loads (`control::reload`).
//!
//! Run with `cargo +nightly fuzz run rules_reload` from `control/`. The input is a mode byte,
//! then a first and a second rule file separated by a 0xff byte. The first file is loaded, then
//! the second through the same reloader; the second load must give exactly what a fresh full
//! load of it gives: the same flat rules, origins and logs, or the same errors. A third load of
//! the first file checks that a failed load left the kept state as it was.

#![no_main]

use control::config::ClassifierKind;
use control::load::{load_filter, tree_classifier, RuleFiles};
use control::reload::Reloader;
use control::rules::Hook;
use dataplane::filter::Filter;
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("rampart-fuzz-reload-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temporary directory");
        d
    })
}

fn summary(r: &Result<Filter, control::load::LoadError>) -> String {
    match r {
        Err(e) => format!("error: {e}"),
        Ok(f) => {
            let mut s = String::new();
            for rs in [&f.v4, &f.v6, &f.raw_v4, &f.raw_v6].into_iter().flatten() {
                s += &format!("{:?}\n{:?}\n{:?}\n", rs.rules, rs.origins, rs.logs);
            }
            s
        }
    }
}

/// The file as IPv4 or IPv6 rules.
fn files(p: &Path, v6: bool) -> RuleFiles<'_> {
    if v6 {
        RuleFiles {
            rules6: Some(p),
            ..RuleFiles::default()
        }
    } else {
        RuleFiles {
            rules: Some(p),
            ..RuleFiles::default()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
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
    let (a, b) = (dir().join("a.rules"), dir().join("b.rules"));
    std::fs::write(&a, String::from_utf8_lossy(first).as_bytes()).expect("write");
    std::fs::write(&b, String::from_utf8_lossy(second).as_bytes()).expect("write");
    let v6 = mode & 1 != 0;
    let mut r = Reloader::new();
    let load = |r: &mut Reloader, p: &PathBuf| {
        r.load_filter(
            &files(p, v6),
            &ports,
            hook,
            ClassifierKind::Tree,
            &tree_classifier,
        )
    };
    let first_ok = load(&mut r, &a).is_ok();
    let got = load(&mut r, &b);
    let want = load_filter(&files(&b, v6), &ports, hook, control::config::Mode::Bridge, &tree_classifier);
    assert_eq!(summary(&got), summary(&want));
    if first_ok && got.is_err() {
        let again = load(&mut r, &a);
        let fresh = load_filter(&files(&a, v6), &ports, hook, control::config::Mode::Bridge, &tree_classifier);
        assert_eq!(summary(&again), summary(&fresh));
    }
});
