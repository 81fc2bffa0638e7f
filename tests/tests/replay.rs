//! `rampart replay` on generated captures: the output holds exactly the well-formed frames, in
//! order; malformed frames are dropped with the right reason; bad input files get clear errors.

use control::pcap::{read_frames, write_frames, FrameWriter, Link};
use perf::synth::{demo_frames, Expect, SynthFrame};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tests::{bin, run};

fn replay(args: &[&std::ffi::OsStr]) -> std::process::Output {
    run(Command::new(bin("rampart")).arg("replay").args(args))
}

fn verdicts(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check_replay(frames: &[SynthFrame], dir: &Path) {
    let (inp, out, ver) = (
        dir.join("in.pcap"),
        dir.join("out.pcap"),
        dir.join("v.jsonl"),
    );
    write_frames(&inp, frames.iter().map(|f| f.frame.as_slice())).unwrap();
    let o = replay(&[
        "--input".as_ref(),
        inp.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        "--verdicts".as_ref(),
        ver.as_os_str(),
        "--inside".as_ref(),
        "10.0.0.0/8,fd00::/16".as_ref(),
    ]);
    assert!(
        o.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("no IPv4 rules"),
        "says once that IPv4 is unfiltered: {stderr}"
    );

    let want: Vec<&[u8]> = frames
        .iter()
        .filter(|f| f.expect == Expect::Forward)
        .map(|f| f.frame.as_slice())
        .collect();
    let got = read_frames(&out).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.data.as_slice(), *w, "output frame {i}");
    }

    let v = verdicts(&ver);
    assert_eq!(v.len(), frames.len(), "one verdict line per input frame");
    for (i, (line, f)) in v.iter().zip(frames).enumerate() {
        assert_eq!(line["index"], i);
        match f.expect {
            Expect::Forward => {
                assert_eq!(line["verdict"], "forward", "frame {i} ({}): {line}", f.what);
                assert_eq!(line["reason"], serde_json::Value::Null);
            }
            Expect::Drop(reason) => {
                assert_eq!(line["verdict"], "drop", "frame {i} ({}): {line}", f.what);
                assert_eq!(line["reason"], reason, "frame {i} ({})", f.what);
            }
        }
    }
}

#[test]
fn replay_forwards_well_formed_and_drops_malformed_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let frames = demo_frames();
    assert!(frames.iter().any(|f| f.expect == Expect::Forward));
    assert!(
        frames
            .iter()
            .filter(|f| matches!(f.expect, Expect::Drop(_)))
            .count()
            >= 8,
        "the demo covers many drop reasons"
    );
    check_replay(&frames, dir.path());
}

#[test]
fn replay_sides_follow_inside_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let frames = demo_frames();
    check_replay(&frames, dir.path());
    let v = verdicts(&dir.path().join("v.jsonl"));
    for (line, f) in v.iter().zip(&frames) {
        if let (Some(src), "forward") = (f.src, line["verdict"].as_str().unwrap()) {
            let inside = match src {
                std::net::IpAddr::V4(a) => a.octets()[0] == 10,
                std::net::IpAddr::V6(a) => a.segments()[0] == 0xfd00,
            };
            let (i, e) = if inside {
                ("inside", "outside")
            } else {
                ("outside", "inside")
            };
            assert_eq!(
                (
                    line["ingress"].as_str().unwrap(),
                    line["egress"].as_str().unwrap()
                ),
                (i, e),
                "{line}"
            );
        }
    }
}

#[test]
fn replay_of_raw_ip_capture_keeps_the_link_type() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<SynthFrame> = demo_frames()
        .into_iter()
        .filter(|f| f.expect == Expect::Forward && f.src.is_some() && f.vlan_free)
        .collect();
    let inp = dir.path().join("raw.pcap");
    let mut w = FrameWriter::create(&inp, Link::RawIp).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(Duration::from_micros(i as u64), &f.frame).unwrap();
    }
    w.finish().unwrap();
    let out = dir.path().join("out.pcap");
    let o = replay(&[
        "--input".as_ref(),
        inp.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = read_frames(&inp).unwrap();
    let b = read_frames(&out).unwrap();
    assert_eq!(a.len(), frames.len());
    assert_eq!(b.len(), a.len());
    assert!(b.iter().all(|f| f.link == Link::RawIp));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.data, y.data);
    }
}

#[test]
fn replay_rejects_bad_input_files_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let missing = dir.path().join("missing.pcap");
    let o = replay(&[
        "--input".as_ref(),
        missing.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.pcap"));

    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all").unwrap();
    let o = replay(&[
        "--input".as_ref(),
        junk.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("junk.pcap") && e.contains("not a pcap"), "{e}");

    // A capture cut short in the middle of a record.
    let good = dir.path().join("good.pcap");
    write_frames(&good, demo_frames().iter().map(|f| f.frame.as_slice())).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let o = replay(&[
        "--input".as_ref(),
        cut.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("cut.pcap"));

    let o = replay(&[
        "--input".as_ref(),
        good.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        "--inside".as_ref(),
        "10.0.0.0/99".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(2), "bad prefix is a usage error");
}
