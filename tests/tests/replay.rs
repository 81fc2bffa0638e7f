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

#[test]
fn replay_translates_with_the_nat_table_and_logs_the_translation() {
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use std::net::Ipv4Addr;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("nat.rules");
    std::fs::write(
        &rules,
        "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -d 203.0.113.1/32 -p udp --dport 5353 -j DNAT --to-destination 10.0.0.5:53\n\
         -A POSTROUTING -s 10.0.0.0/24 -o outside -j SNAT --to-source 203.0.113.1\nCOMMIT\n\
         *filter\n:FORWARD DROP [0:0]\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A FORWARD -i inside -m conntrack --ctstate NEW -j ACCEPT\n\
         -A FORWARD -i outside -d 10.0.0.5 -p udp --dport 53 -m conntrack --ctstate NEW -j ACCEPT\n\
         COMMIT\n",
    )
    .unwrap();
    let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let udp = |s: &str, sp: u16, d: &str, dp: u16| {
        FrameSpec::new(IpSpec::v4(a(s), a(d)), L4Spec::udp(sp, dp, b"dns")).build()
    };
    let frames = [
        // SNAT out and the reply back.
        udp("10.0.0.2", 40000, "198.51.100.9", 53),
        udp("198.51.100.9", 53, "203.0.113.1", 40000),
        // DNAT in and the server's reply out.
        udp("198.51.100.7", 7000, "203.0.113.1", 5353),
        udp("10.0.0.5", 53, "198.51.100.7", 7000),
        // A reply to the untranslated address: no connection, dropped.
        udp("198.51.100.9", 53, "10.0.0.2", 40000),
    ];
    let want = [
        udp("203.0.113.1", 40000, "198.51.100.9", 53),
        udp("198.51.100.9", 53, "10.0.0.2", 40000),
        udp("198.51.100.7", 7000, "10.0.0.5", 53),
        udp("203.0.113.1", 5353, "198.51.100.7", 7000),
    ];
    let (inp, out, ver) = (
        dir.path().join("in.pcap"),
        dir.path().join("out.pcap"),
        dir.path().join("v.jsonl"),
    );
    write_frames(&inp, frames.iter().map(|f| f.as_slice())).unwrap();
    let o = replay(&[
        "--rules".as_ref(),
        rules.as_os_str(),
        "--input".as_ref(),
        inp.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        "--verdicts".as_ref(),
        ver.as_os_str(),
        "--inside".as_ref(),
        "10.0.0.0/8".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_frames(&out).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(&g.data, w, "output frame {i}");
    }
    let v = verdicts(&ver);
    assert_eq!(v[0]["nat"]["dir"], "original");
    assert_eq!(v[0]["nat"]["src"]["from"], "10.0.0.2:40000");
    assert_eq!(v[0]["nat"]["src"]["to"], "203.0.113.1:40000");
    assert_eq!(v[0]["nat"]["dst"], serde_json::Value::Null);
    assert_eq!(v[1]["nat"]["dir"], "reply");
    assert_eq!(v[1]["nat"]["dst"]["to"], "10.0.0.2:40000");
    assert_eq!(v[2]["nat"]["dst"]["from"], "203.0.113.1:5353");
    assert_eq!(v[2]["nat"]["dst"]["to"], "10.0.0.5:53");
    assert_eq!(v[3]["nat"]["src"]["to"], "203.0.113.1:5353");
    assert_eq!(
        (&v[4]["verdict"], &v[4]["nat"]),
        (&"drop".into(), &serde_json::Value::Null)
    );

    // Without connection tracking the nat table cannot work: a clear error.
    let o = replay(&[
        "--rules".as_ref(),
        rules.as_os_str(),
        "--input".as_ref(),
        inp.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        "--no-conntrack".as_ref(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nat table cannot be used"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
