//! The corpus tier: every public capture in `../shared/corpus` (when present) replayed through
//! Rampart. Nothing may crash; each input frame gets exactly one verdict line; the output holds
//! exactly the frames judged "forward", unchanged and in order. Skipped, with a message, when the
//! corpus is absent.

use control::pcap::read_frames;
use std::path::{Path, PathBuf};
use std::process::Command;
use tests::{bin, corpus_dir, run};

fn captures(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            captures(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "pcap" || x == "pcapng" || x == "cap")
        {
            out.push(p);
        }
    }
}

#[test]
fn corpus_captures_replay_without_loss_of_accounting() {
    let Some(corpus) = corpus_dir() else {
        eprintln!(
            "SKIPPED corpus tier: ../shared/corpus not found (set RAMPART_CORPUS to point at it)"
        );
        return;
    };
    let mut files = Vec::new();
    captures(&corpus, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus at {} holds no captures",
        corpus.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut replayed, mut frames_total, mut unsupported) = (0, 0, Vec::new());
    for f in &files {
        let out = dir.path().join("out.pcap");
        let ver = dir.path().join("v.jsonl");
        let o = run(Command::new(bin("rampart"))
            .args(["replay", "--input"])
            .arg(f)
            .arg("--output")
            .arg(&out)
            .arg("--verdicts")
            .arg(&ver));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code().is_some(),
            "{}: rampart killed by a signal: {stderr}",
            f.display()
        );
        if !o.status.success() {
            // The only acceptable refusal is a link type replay does not handle, named clearly.
            assert!(
                stderr.contains("link type"),
                "{}: replay failed: {stderr}",
                f.display()
            );
            unsupported.push(f.clone());
            continue;
        }
        let input = read_frames(f).unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ver)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            input.len(),
            "{}: one verdict per frame",
            f.display()
        );
        let mut kept: Vec<&Vec<u8>> = input
            .iter()
            .zip(&lines)
            .filter(|(_, l)| l["verdict"] == "forward")
            .map(|(i, _)| &i.data)
            .collect();
        let output = read_frames(&out).unwrap();
        assert_eq!(output.len(), kept.len(), "{}", f.display());
        // In input order but for fragments, which leave when their datagram is whole: the
        // same frames, compared in sorted order.
        let mut sent: Vec<&Vec<u8>> = output.iter().map(|o| &o.data).collect();
        sent.sort();
        kept.sort();
        for (a, b) in sent.iter().zip(kept) {
            assert_eq!(*a, b, "{}: output frame changed", f.display());
        }
        for l in &lines {
            assert!(
                l["verdict"] == "forward" || l["reason"].is_string(),
                "{}: drop without a reason: {l}",
                f.display()
            );
        }
        replayed += 1;
        frames_total += input.len();
    }
    eprintln!(
        "corpus tier: {replayed} captures, {frames_total} frames replayed; {} refused for their link type: {:?}",
        unsupported.len(),
        unsupported.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>()
    );
    assert!(
        replayed * 2 > files.len(),
        "most corpus captures must replay"
    );
}
