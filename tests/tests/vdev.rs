//! `rampart run` on DPDK virtual devices: `net_pcap` (the TX capture must hold exactly the
//! forwarded RX frames, in order, on the paired port) and `net_null` (two workers, stopped by
//! SIGTERM). Every run must give back every mbuf.

use control::pcap::{read_frames, write_frames};
use perf::synth::{demo_frames, Expect};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, root_or_skip, run, test_eal_args, toml_array, unique};

fn summary(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written"))
        .expect("summary is JSON")
}

fn assert_no_leak(s: &serde_json::Value) {
    assert_eq!(
        s["mbufs_in_use"]["start"], s["mbufs_in_use"]["end"],
        "mbufs leaked: {s}"
    );
    assert_eq!(
        s["mbufs_in_use"]["after_close"], 0,
        "mbufs still in use after the ports closed: {s}"
    );
}

/// A configuration bridging two `net_null` ports of `prefix` on `lcores`, with `rest` (more
/// `[bridge]` keys, then other tables) after the pair.
fn null_pair_config(prefix: &str, lcores: &str, rest: &str) -> String {
    format!(
        r#"
[eal]
args = {eal}
[[port]]
name = "a"
device = "net_null{prefix}a"
[[port]]
name = "b"
device = "net_null{prefix}b"
[bridge]
pairs = [["a", "b"]]
{rest}"#,
        eal = toml_array(&test_eal_args(prefix, lcores)),
    )
}

#[test]
fn net_pcap_bridge_forwards_exactly_the_well_formed_frames_in_order() {
    if !root_or_skip("net_pcap_bridge_forwards_exactly_the_well_formed_frames_in_order") {
        return;
    }
    pcap_bridge_forwards_the_well_formed("", None);
}

/// The same through the pass-through bridge (no tracking, no rules), whose burst screen and
/// loop are its own, at each screen level this CPU runs (the capture repeated, so that the
/// screen sees whole bursts of several kinds of frame, and led by a burst and a half of
/// well-formed IPv4 frames, so that the port's next burst, malformed frames among them, is
/// checked the way a port whose bursts are IPv4 alone has them checked).
#[test]
fn pass_through_bridge_forwards_exactly_the_well_formed_frames_in_order() {
    if !root_or_skip("pass_through_bridge_forwards_exactly_the_well_formed_frames_in_order") {
        return;
    }
    for level in ["portable", "avx2", "avx512"] {
        pcap_bridge_forwards_the_well_formed("[conntrack]\nenabled = false\n", Some(level));
    }
}

/// `rampart run` over a capture of [`demo_frames`] on `net_pcap`, with `rest` appended to the
/// configuration and the screen capped at `level`: the paired port sends exactly the
/// well-formed frames, in order (fragments once their datagram is whole), and every malformed
/// one is counted under its reason.
fn pcap_bridge_forwards_the_well_formed(rest: &str, level: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let once = demo_frames();
    let times = if level.is_some() { 5 } else { 1 };
    let ipv4 = once
        .iter()
        .find(|f| {
            f.expect == Expect::Forward && f.frame.get(12..15) == Some(&[0x08, 0x00, 0x45][..])
        })
        .expect("a well-formed IPv4 frame");
    let lead = if level.is_some() { 40 } else { 0 };
    let frames: Vec<_> = std::iter::repeat_n(ipv4, lead)
        .chain((0..times).flat_map(|_| once.iter()))
        .cloned()
        .collect();
    write_frames(&p("in.pcap"), frames.iter().map(|f| f.frame.as_slice())).unwrap();
    write_frames(&p("empty.pcap"), std::iter::empty()).unwrap();
    let prefix = unique("rpcap");
    let cfg = format!(
        r#"
[eal]
args = {eal}
[[port]]
name = "inside"
device = "net_pcap{prefix}i,rx_pcap={inp},tx_pcap={itx}"
[[port]]
name = "outside"
device = "net_pcap{prefix}o,rx_pcap={empty},tx_pcap={otx}"
[bridge]
pairs = [["inside", "outside"]]
[management]
socket = "{sock}"
[mempool]
mbufs = 4095
cache = 64
[rings]
rx_desc = 512
tx_desc = 512
{rest}"#,
        eal = toml_array(&test_eal_args(&prefix, "0@0,1@1")),
        inp = p("in.pcap").display(),
        itx = p("inside-tx.pcap").display(),
        empty = p("empty.pcap").display(),
        otx = p("outside-tx.pcap").display(),
        sock = p("m.sock").display(),
    );
    std::fs::write(p("cfg.toml"), cfg).unwrap();
    let mut cmd = Command::new(bin("rampart"));
    cmd.args(["run", "--exit-when-idle-ms", "1500", "--config"])
        .arg(p("cfg.toml"))
        .arg("--summary-json")
        .arg(p("summary.json"));
    if let Some(level) = level {
        cmd.env("RAMPART_SCREEN_SIMD", level);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "rampart run failed ({level:?}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Fragments leave once their datagram is whole, after the burst that completed it: the
    // other frames in order, the fragments as a set.
    let fragment = |f: &&perf::synth::SynthFrame| f.what.contains("fragment");
    let expected: Vec<&[u8]> = frames
        .iter()
        .filter(|f| f.expect == Expect::Forward && !fragment(f))
        .map(|f| f.frame.as_slice())
        .collect();
    let mut expected_frags: Vec<&[u8]> = frames
        .iter()
        .filter(|f| f.expect == Expect::Forward && fragment(f))
        .map(|f| f.frame.as_slice())
        .collect();
    let got_all = read_frames(&p("outside-tx.pcap")).unwrap();
    let (mut got_frags, got): (Vec<&[u8]>, Vec<&[u8]>) = got_all
        .iter()
        .map(|g| g.data.as_slice())
        .partition(|d| expected_frags.contains(d));
    assert_eq!(
        got.len(),
        expected.len(),
        "forwarded frame count ({level:?})"
    );
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "forwarded frame {i} differs ({level:?})");
    }
    got_frags.sort();
    expected_frags.sort();
    assert_eq!(got_frags, expected_frags, "fragments forwarded ({level:?})");
    assert!(
        read_frames(&p("inside-tx.pcap")).unwrap().is_empty(),
        "nothing goes back out of the ingress port"
    );

    let s = summary(&p("summary.json"));
    assert_eq!(s["rx_packets"].as_u64(), Some(frames.len() as u64));
    assert_eq!(
        s["tx_packets"].as_u64(),
        Some((expected.len() + expected_frags.len()) as u64)
    );
    for f in &frames {
        if let Expect::Drop(reason) = f.expect {
            let want = frames
                .iter()
                .filter(|g| g.expect == Expect::Drop(reason))
                .count() as u64;
            assert_eq!(
                s["drops"][reason].as_u64(),
                Some(want),
                "drops for {reason}: {s}"
            );
        }
    }
    assert_no_leak(&s);
}

#[test]
fn net_null_two_workers_forward_and_stop_on_sigterm() {
    if !root_or_skip("net_null_two_workers_forward_and_stop_on_sigterm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("rpnull");
    let cfg = null_pair_config(
        &prefix,
        "0@0,1@1,2@1",
        &format!(
            r#"non_ip = "forward"
[workers]
count = 2
[management]
socket = "{sock}"
[mempool]
mbufs = 8191
cache = 64
[rings]
rx_desc = 512
tx_desc = 512
"#,
            sock = dir.path().join("m.sock").display(),
        ),
    );
    let cfg_path = dir.path().join("null.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let sum_path = dir.path().join("summary.json");
    let mut child = Command::new(bin("rampart"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .arg("--summary-json")
        .arg(&sum_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "rampart did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rampart run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("worker 0") && stdout.contains("worker 1"),
        "final counters printed:\n{stdout}"
    );
    let s = summary(&sum_path);
    for w in 0..2 {
        let rx = s["workers"][w]["rx_packets"].as_u64().unwrap();
        assert!(rx > 1000, "worker {w} received only {rx}: {s}");
    }
    assert!(s["tx_packets"].as_u64().unwrap() > 0, "{s}");
    let rx = s["rx_packets"].as_u64().unwrap();
    let tx = s["tx_packets"].as_u64().unwrap()
        + s["tx_refused"].as_u64().unwrap()
        + s["dropped"].as_u64().unwrap();
    assert_eq!(
        rx, tx,
        "every received packet is forwarded, refused or dropped: {s}"
    );
    assert_no_leak(&s);
}

/// Two workers, each flow's request on one worker's queue and its reply on the other's: the
/// worker that owns the connection must see both, so each flow makes exactly one entry and
/// exactly one of its two packets is handed over.
#[test]
fn two_workers_hand_each_packet_to_the_owner_of_its_connection() {
    if !root_or_skip("two_workers_hand_each_packet_to_the_owner_of_its_connection") {
        return;
    }
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use std::net::Ipv4Addr;
    const FLOWS: u32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // Port a, queue q: the requests of flows i with i % 2 == q; port b, queue q: the replies of
    // flows i with i % 2 != q.
    let mut a = [Vec::new(), Vec::new()];
    let mut b = [Vec::new(), Vec::new()];
    for i in 0..FLOWS {
        let client = Ipv4Addr::from(0x0a00_0000 + i);
        let server = Ipv4Addr::from(0xc000_0200 + (i % 7));
        let port = 20_000 + i as u16;
        a[(i % 2) as usize]
            .push(FrameSpec::new(IpSpec::v4(client, server), L4Spec::udp(port, 53, b"q")).build());
        b[((i + 1) % 2) as usize]
            .push(FrameSpec::new(IpSpec::v4(server, client), L4Spec::udp(53, port, b"a")).build());
    }
    let s = run_two_queue_bridge(dir.path(), &a, &b, None, "rpho", "0@0,1@1,2@1");
    let total = u64::from(2 * FLOWS);
    assert_eq!(s["rx_packets"].as_u64(), Some(total), "{s}");
    assert_eq!(s["tx_packets"].as_u64(), Some(total), "{s}");
    assert_eq!(s["handed_off"].as_u64(), Some(u64::from(FLOWS)), "{s}");
    assert_eq!(
        s["conntrack"]["created"].as_u64(),
        Some(u64::from(FLOWS)),
        "{s}"
    );
    assert_eq!(
        s["conntrack"]["entries"].as_u64(),
        Some(u64::from(FLOWS)),
        "{s}"
    );
    assert_eq!(s["conntrack"]["clash"].as_u64(), Some(0), "{s}");
    let forwarded_b: usize = ["a-tx0", "a-tx1", "b-tx0", "b-tx1"]
        .iter()
        .map(|n| read_frames(&p(&format!("{n}.pcap"))).unwrap().len())
        .sum();
    assert_eq!(forwarded_b as u64, total);
    assert_no_leak(&s);
}

/// The same with a DNAT port forward: each worker owns a share of the published endpoint's
/// clients, requests and replies meet on the owner whichever queue they arrive on, every flow
/// gets one binding, and both directions leave translated.
#[test]
fn two_workers_translate_each_flow_on_its_owner() {
    if !root_or_skip("two_workers_translate_each_flow_on_its_owner") {
        return;
    }
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::IpAddr128;
    use std::net::Ipv4Addr;
    const FLOWS: u32 = 40;
    let public = Ipv4Addr::new(203, 0, 113, 1);
    let private = Ipv4Addr::new(10, 0, 0, 5);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // Port b (outside): the clients' requests; port a (inside): the server's replies.
    // The replies wait behind frames the bridge drops at once (not IP), so that every request
    // has made its binding before the first reply is judged (the workers run on different
    // CPUs: a worker that shared its CPU could read all its replies before the other one had
    // handed it the requests).
    const JUNK: usize = 50_000;
    let junk = {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        f
    };
    let mut a = [vec![junk.clone(); JUNK], vec![junk; JUNK]];
    let mut b = [Vec::new(), Vec::new()];
    let client = |i: u32| Ipv4Addr::from(0xc633_6400 + i);
    let steering = dataplane::nat::Steering::new(2);
    for i in 0..FLOWS {
        let cport = 30_000 + i as u16;
        // The request on its owner's queue (so that no reply can overtake it), the reply on
        // the other worker's, which hands it over.
        let owner = steering.owner_of(&IpAddr128::from_v4(client(i)), cport);
        b[usize::from(owner)].push(
            FrameSpec::new(IpSpec::v4(client(i), public), L4Spec::udp(cport, 53, b"q")).build(),
        );
        a[usize::from(1 - owner)].push(
            FrameSpec::new(
                IpSpec::v4(private, client(i)),
                L4Spec::udp(5353, cport, b"a"),
            )
            .build(),
        );
    }
    std::fs::write(
        p("rules"),
        "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -d 203.0.113.1/32 -p udp --dport 53 -j DNAT --to-destination 10.0.0.5:5353\n\
         COMMIT\n*filter\n:FORWARD DROP [0:0]\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A FORWARD -i b -d 10.0.0.5 -p udp --dport 5353 -m conntrack --ctstate NEW -j ACCEPT\n\
         COMMIT\n",
    )
    .unwrap();
    let s = run_two_queue_bridge(dir.path(), &a, &b, Some(&p("rules")), "rphn", "0@0,1@0,2@1");
    let total = u64::from(2 * FLOWS);
    assert_eq!(
        s["rx_packets"].as_u64(),
        Some(total + 2 * JUNK as u64),
        "{s}"
    );
    assert_eq!(
        s["drops"]["non_ip_policy"].as_u64(),
        Some(2 * JUNK as u64),
        "{s}"
    );
    assert_eq!(s["tx_packets"].as_u64(), Some(total), "{s}");
    assert_eq!(s["handed_off"].as_u64(), Some(u64::from(FLOWS)), "{s}");
    assert_eq!(
        s["conntrack"]["created"].as_u64(),
        Some(u64::from(FLOWS)),
        "{s}"
    );
    assert_eq!(
        s["conntrack"]["nat_bindings"].as_u64(),
        Some(u64::from(FLOWS)),
        "{s}"
    );
    assert_eq!(s["conntrack"]["clash"].as_u64(), Some(0), "{s}");
    // Requests leave by a (inside) to the private server; replies by b from the public address.
    let mut to_server = Vec::new();
    let mut to_clients = Vec::new();
    for n in ["a-tx0", "a-tx1"] {
        to_server.extend(read_frames(&p(&format!("{n}.pcap"))).unwrap());
    }
    for n in ["b-tx0", "b-tx1"] {
        to_clients.extend(read_frames(&p(&format!("{n}.pcap"))).unwrap());
    }
    assert_eq!(
        (to_server.len(), to_clients.len()),
        (FLOWS as usize, FLOWS as usize)
    );
    for f in &to_server {
        let k = dataplane::wire::parse_frame(&f.data).unwrap().flow.unwrap();
        assert_eq!((k.dst.to_v4(), k.dst_port), (Some(private), 5353), "{k:?}");
    }
    for f in &to_clients {
        let k = dataplane::wire::parse_frame(&f.data).unwrap().flow.unwrap();
        assert_eq!((k.src.to_v4(), k.src_port), (Some(public), 53), "{k:?}");
    }
    assert_no_leak(&s);
}

/// Fragmented requests to a DNAT port forward with two workers: a datagram's fragments meet
/// the worker of their address pair, which holds them until the datagram is whole and then
/// hands it to the worker its first fragment's tuple steers to (the client's endpoint). Before,
/// the first fragment went by the NAT steering and the later ones by the pair, so about half
/// of the datagrams were split between the workers, never became whole, and were dropped when
/// the workers stopped.
#[test]
fn two_workers_join_the_fragments_of_a_translated_datagram() {
    if !root_or_skip("two_workers_join_the_fragments_of_a_translated_datagram") {
        return;
    }
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::IpAddr128;
    use std::net::Ipv4Addr;
    const FLOWS: u32 = 40;
    let public = Ipv4Addr::new(203, 0, 113, 1);
    let private = Ipv4Addr::new(10, 0, 0, 5);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let mut b = [Vec::new(), Vec::new()];
    let client = |i: u32| Ipv4Addr::from(0xc633_6400 + i);
    let steering = dataplane::nat::Steering::new(2);
    let (mut split, mut fragments) = (0, 0);
    for i in 0..FLOWS {
        let cport = 30_000 + i as u16;
        let by_port = steering.owner_of(&IpAddr128::from_v4(client(i)), cport);
        let by_pair =
            dataplane::steer::pick(IpAddr128::from_v4(client(i)), IpAddr128::from_v4(public), 2);
        split += usize::from(by_port != by_pair);
        let mut spec = FrameSpec::new(
            IpSpec::v4(client(i), public),
            L4Spec::udp(cport, 53, &[i as u8; 2500]),
        );
        if let IpSpec::V4 { ident, .. } = &mut spec.ip {
            *ident = 0x4000 + i as u16;
        }
        let frags = spec.fragments(1000);
        assert_eq!(frags.len(), 3);
        fragments += frags.len();
        // The last fragment first on one queue, the others on the other.
        let q = (i % 2) as usize;
        b[q].push(frags[2].clone());
        b[1 - q].extend(frags[..2].iter().cloned());
    }
    assert!(split > 0, "no datagram whose owners differ");
    std::fs::write(
        p("rules"),
        "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -d 203.0.113.1/32 -p udp --dport 53 -j DNAT --to-destination 10.0.0.5:5353\n\
         COMMIT\n*filter\n:FORWARD DROP [0:0]\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A FORWARD -i b -d 10.0.0.5 -p udp --dport 5353 -m conntrack --ctstate NEW -j ACCEPT\n\
         COMMIT\n",
    )
    .unwrap();
    let a = [Vec::new(), Vec::new()];
    let s = run_two_queue_bridge(dir.path(), &a, &b, Some(&p("rules")), "rphf", "0@0,1@0,2@1");
    assert_eq!(s["rx_packets"].as_u64(), Some(fragments as u64), "{s}");
    assert_eq!(s["tx_packets"].as_u64(), Some(fragments as u64), "{s}");
    assert_eq!(s["dropped"].as_u64(), Some(0), "{s}");
    assert!(s["handed_off"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        s["conntrack"]["created"].as_u64(),
        Some(u64::from(FLOWS)),
        "{s}"
    );
    let mut to_server = Vec::new();
    for n in ["a-tx0", "a-tx1"] {
        to_server.extend(read_frames(&p(&format!("{n}.pcap"))).unwrap());
    }
    assert_eq!(to_server.len(), fragments);
    for f in &to_server {
        let info = dataplane::wire::parse_frame(&f.data).unwrap();
        let k = info.flow.unwrap();
        assert_eq!(k.dst.to_v4(), Some(private), "{k:?}");
        if !matches!(info.frag, dataplane::wire::Fragment::Later { .. }) {
            assert_eq!(k.dst_port, 5353, "{k:?}");
        }
    }
    assert_no_leak(&s);
}

/// Runs a bridge of ports `a` and `b` with two workers, each port with two RX queues that
/// replay `a[q]` and `b[q]` (pcaps written to `dir`, as are the TX pcaps `a-tx0.pcap` ..
/// `b-tx1.pcap`), with `rules` as its IPv4 rule set when given, on `lcores`, until idle;
/// returns the run's summary.
fn run_two_queue_bridge(
    dir: &std::path::Path,
    a: &[Vec<Vec<u8>>; 2],
    b: &[Vec<Vec<u8>>; 2],
    rules: Option<&std::path::Path>,
    tag: &str,
    lcores: &str,
) -> serde_json::Value {
    let p = |n: &str| dir.join(n);
    for (name, frames) in [("a0", &a[0]), ("a1", &a[1]), ("b0", &b[0]), ("b1", &b[1])] {
        write_frames(
            &p(&format!("{name}.pcap")),
            frames.iter().map(Vec::as_slice),
        )
        .unwrap();
    }
    let prefix = unique(tag);
    let dev = |port: &str| {
        format!(
            "net_pcap{prefix}{port},rx_pcap={},rx_pcap={},tx_pcap={},tx_pcap={}",
            p(&format!("{port}0.pcap")).display(),
            p(&format!("{port}1.pcap")).display(),
            p(&format!("{port}-tx0.pcap")).display(),
            p(&format!("{port}-tx1.pcap")).display(),
        )
    };
    let rules = rules.map_or(String::new(), |r| {
        format!("[rules]\nipv4 = \"{}\"\n", r.display())
    });
    let cfg = format!(
        r#"
[eal]
args = {eal}
[[port]]
name = "a"
device = "{da}"
[[port]]
name = "b"
device = "{db}"
[bridge]
pairs = [["a", "b"]]
[workers]
count = 2
{rules}[management]
socket = "{sock}"
[mempool]
mbufs = 8191
cache = 64
[rings]
rx_desc = 512
tx_desc = 512
[conntrack]
max = 4096
"#,
        eal = toml_array(&test_eal_args(&prefix, lcores)),
        da = dev("a"),
        db = dev("b"),
        sock = p("m.sock").display(),
    );
    std::fs::write(p("cfg.toml"), cfg).unwrap();
    run_until_idle(dir)
}

/// `rampart replay` of `DIR/in.pcap` with `DIR/cfg.toml` and `option` followed by `values`,
/// into `DIR/replay.pcap`; the frames it wrote.
fn replay_pair(
    dir: &std::path::Path,
    values: &[&std::ffi::OsStr],
    option: &str,
) -> Vec<control::pcap::Frame> {
    let p = |n: &str| dir.join(n);
    let out = run(Command::new(bin("rampart"))
        .args(["replay", "--config"])
        .arg(p("cfg.toml"))
        .arg(option)
        .args(values)
        .arg("--input")
        .arg(p("in.pcap"))
        .arg("--output")
        .arg(p("replay.pcap")));
    assert!(
        out.status.success(),
        "rampart replay failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    read_frames(&p("replay.pcap")).unwrap()
}

/// `rampart run` with `DIR/cfg.toml` until 1.5 s pass without a packet; its summary.
fn run_until_idle(dir: &std::path::Path) -> serde_json::Value {
    let p = |n: &str| dir.join(n);
    let out = run(Command::new(bin("rampart"))
        .args(["run", "--exit-when-idle-ms", "1500", "--config"])
        .arg(p("cfg.toml"))
        .arg("--summary-json")
        .arg(p("summary.json")));
    assert!(
        out.status.success(),
        "rampart run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&p("summary.json"))
}

/// A screen level the environment names wrongly stops the daemon before it starts, saying
/// what is wrong, instead of running with a cap it silently ignored.
#[test]
fn a_misspelt_screen_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("rpsimd");
    let cfg = null_pair_config(&prefix, "0@0,1@1", "");
    let cfg_path = dir.path().join("null.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let out = run(Command::new(bin("rampart"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("RAMPART_SCREEN_SIMD", "avx3"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rampart ran with a misspelt level");
    assert!(
        stderr.contains("RAMPART_SCREEN_SIMD=avx3") && stderr.contains("portable, avx2 or avx512"),
        "the refusal names the variable and the levels:\n{stderr}"
    );
}

/// Router mode's worker path (`route_burst`: conntrack's prefetch pass over each burst of up
/// to 32 frames `net_pcap` reads, then each frame judged with the pass's parse and hint)
/// against `rampart replay` of the same capture and configuration, which judges one frame at a
/// time without a pass: the port must transmit exactly the frames replay writes, in order.
/// Clients (10.1.0.0/16, behind 10.0.0.5) and servers (198.51.100.0/24, behind 10.0.0.254)
/// both sit on the port `lan`, so requests and replies come from one capture in a fixed order:
/// 600 flows MASQUERADEd to 10.0.0.1, handshakes and data both ways interleaved, a burst
/// often holding several packets of one connection, and connections the servers open,
/// dropped by the FORWARD policy.
/// `rampart run` (until idle) over two `net_pcap` ports in `dir`: `lan` receives `in.pcap`,
/// `wan` `empty.pcap`, and they send into `lan-tx.pcap` and `wan-tx.pcap`; `top` goes before
/// the tables, `lan` and `wan` into their ports, `rest` after them. The configuration is left
/// in `cfg.toml`; returns the run's summary, once it is checked to have given back every
/// mbuf.
fn run_pcap_pair(
    dir: &std::path::Path,
    top: &str,
    lan: &str,
    wan: &str,
    rest: &str,
) -> serde_json::Value {
    let p = |n: &str| dir.join(n);
    let prefix = unique("rpair");
    let cfg = format!(
        r#"{top}
[eal]
args = {eal}
[[port]]
name = "lan"
device = "net_pcap{prefix}l,rx_pcap={inp},tx_pcap={ltx}"
{lan}
[[port]]
name = "wan"
device = "net_pcap{prefix}w,rx_pcap={empty},tx_pcap={wtx}"
{wan}
{rest}
[management]
socket = "{sock}"
[mempool]
mbufs = 4095
cache = 64
[rings]
rx_desc = 512
tx_desc = 512
"#,
        eal = toml_array(&test_eal_args(&prefix, "0@0,1@1")),
        inp = p("in.pcap").display(),
        ltx = p("lan-tx.pcap").display(),
        empty = p("empty.pcap").display(),
        wtx = p("wan-tx.pcap").display(),
        sock = p("m.sock").display(),
    );
    std::fs::write(p("cfg.toml"), cfg).unwrap();
    let s = run_until_idle(dir);
    assert_no_leak(&s);
    s
}

#[test]
fn router_worker_bursts_transmit_what_replay_does() {
    if !root_or_skip("router_worker_bursts_transmit_what_replay_does") {
        return;
    }
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::tcp::Flags;
    use dataplane::wire::MacAddr;
    use std::net::Ipv4Addr;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    const LAN: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    let build = |s: [u8; 4], sp: u16, d: [u8; 4], dp: u16, l4: &str, flags, seq, ack| {
        let ip = IpSpec::v4(Ipv4Addr::from(s), Ipv4Addr::from(d));
        let l4 = match l4 {
            "tcp" => L4Spec::tcp_segment(sp, dp, flags, seq, ack, b"0123"),
            _ => L4Spec::udp(sp, dp, b"q"),
        };
        let mut f = FrameSpec::new(ip, l4);
        f.dst_mac = LAN;
        f.build()
    };
    let me = [10, 0, 0, 1];
    let mut rng = dataplane::classify::classbench::SplitMix64(0x6275_7273);
    let mut scripts = Vec::new();
    for n in 0..600u32 {
        let r = rng.next_u64();
        let c = [10, 1, (r >> 8) as u8, (r >> 16) as u8 | 1];
        let s = [198, 51, 100, (r >> 24) as u8 | 1];
        let sp = 20_000 + n as u16;
        let dp = [80, 443][(r >> 32) as usize % 2];
        let mut q = std::collections::VecDeque::new();
        if r >> 40 & 1 == 0 {
            q.push_back(build(c, sp, s, dp, "tcp", Flags::SYN, 100, 0));
            q.push_back(build(
                s,
                dp,
                me,
                sp,
                "tcp",
                Flags::SYN | Flags::ACK,
                900,
                101,
            ));
            q.push_back(build(c, sp, s, dp, "tcp", Flags::ACK, 101, 901));
            for _ in 0..(r >> 44) % 8 {
                q.push_back(build(c, sp, s, dp, "tcp", Flags::ACK, 101, 901));
                q.push_back(build(s, dp, me, sp, "tcp", Flags::ACK, 901, 101));
            }
        } else {
            q.push_back(build(c, sp, s, 53, "udp", Flags::ACK, 0, 0));
            for _ in 0..1 + (r >> 44) % 6 {
                q.push_back(build(s, 53, me, sp, "udp", Flags::ACK, 0, 0));
                q.push_back(build(c, sp, s, 53, "udp", Flags::ACK, 0, 0));
            }
        }
        if n % 10 == 0 {
            q.push_back(build(s, 4000, c, 22, "tcp", Flags::SYN, 7, 0));
        }
        scripts.push(q);
    }
    let frames = tests::interleave(scripts, 24, &mut rng);
    write_frames(&p("in.pcap"), frames.iter().map(|f| f.as_slice())).unwrap();
    write_frames(&p("empty.pcap"), std::iter::empty()).unwrap();
    std::fs::write(
        p("rules"),
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.1.0.0/16 -o lan -j MASQUERADE\nCOMMIT\n\
         *filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -s 10.1.0.0/16 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let s = run_pcap_pair(
        dir.path(),
        "mode = \"router\"",
        "mac = \"02:00:00:00:00:01\"\naddresses = [\"10.0.0.1/24\"]",
        "mac = \"02:00:00:00:00:02\"\naddresses = [\"192.0.2.1/24\"]",
        &format!(
            r#"[[route]]
prefix = "10.1.0.0/16"
via = "10.0.0.5"
[[route]]
prefix = "198.51.100.0/24"
via = "10.0.0.254"
[[neighbour]]
port = "lan"
address = "10.0.0.5"
mac = "02:00:00:00:00:05"
[[neighbour]]
port = "lan"
address = "10.0.0.254"
mac = "02:00:00:00:00:fe"
[rules]
ipv4 = "{rules}""#,
            rules = p("rules").display(),
        ),
    );
    let want = replay_pair(dir.path(), &[p("rules").as_os_str()], "--rules");
    let got = read_frames(&p("lan-tx.pcap")).unwrap();
    assert!(
        want.len() > frames.len() * 3 / 4,
        "{} of {}",
        want.len(),
        frames.len()
    );
    assert!(want.len() < frames.len(), "the policy drops some");
    assert_eq!(got.len(), want.len(), "frames sent");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.data, w.data, "sent frame {i} differs");
    }
    assert!(read_frames(&p("wan-tx.pcap")).unwrap().is_empty());
    assert_eq!(s["rx_packets"].as_u64(), Some(frames.len() as u64));
}

/// Every fragment of a datagram is held until the datagram is whole, then its fragments go
/// on in offset order with the verdict of the whole datagram, by the worker (`rampart run`
/// over `net_pcap`, bridge and router mode) as by `rampart replay`, whatever order they came
/// in. Nothing of a datagram whose fragments never all come is sent (Linux's conntrack
/// reassembles before any table, and a forwarding box gives an incomplete datagram up without
/// a word): its fragments are dropped as `frag_timeout` (at the latest when the worker
/// stops), and no mbuf is lost.
#[test]
fn fragments_wait_for_their_whole_datagram() {
    if !root_or_skip("fragments_wait_for_their_whole_datagram") {
        return;
    }
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::MacAddr;
    use std::net::{Ipv4Addr, Ipv6Addr};
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    const LAN: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    let datagram = |v6: bool, ident: u16, len: usize| {
        let mut ip = if v6 {
            IpSpec::v6(
                "fd00:1::2".parse::<Ipv6Addr>().unwrap(),
                "2001:db8:1::20".parse::<Ipv6Addr>().unwrap(),
            )
        } else {
            IpSpec::v4(Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(198, 51, 100, 20))
        };
        match &mut ip {
            IpSpec::V4 { ident: i, .. } => *i = ident,
            IpSpec::V6 { ident: i, .. } => *i = u32::from(ident),
        }
        let mut f = FrameSpec::new(
            ip,
            L4Spec::udp(40_000 + ident, 7000, &vec![ident as u8; len]),
        );
        f.dst_mac = LAN;
        f.fragments(400)
    };
    // (datagram, the order its three fragments come in); then a fragment alone, and the
    // first two of a datagram whose last never comes.
    let mut frames = Vec::new();
    let mut whole = Vec::new();
    for (v6, ident, order) in [
        (false, 1, [2, 0, 1]),
        (false, 2, [1, 2, 0]),
        (true, 3, [2, 1, 0]),
        (false, 4, [0, 1, 2]),
    ] {
        let f = datagram(v6, ident, 1000);
        assert_eq!(f.len(), 3);
        frames.extend(order.iter().map(|&i| f[i].clone()));
        whole.extend(f);
    }
    frames.push(datagram(false, 5, 1000)[1].clone());
    let incomplete = datagram(true, 6, 1000);
    frames.extend(incomplete[..2].iter().cloned());
    let given_up = frames.len() - 3..frames.len();
    write_frames(&p("in.pcap"), frames.iter().map(|f| f.as_slice())).unwrap();
    write_frames(&p("empty.pcap"), std::iter::empty()).unwrap();
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    let want = sorted(whole.clone());

    for router in [false, true] {
        let (mode, lan, wan, topology) = if router {
            (
                "mode = \"router\"",
                "mac = \"02:00:00:00:00:01\"\naddresses = [\"10.1.0.1/16\", \"fd00:1::1/64\"]",
                "mac = \"02:00:00:00:00:02\"\naddresses = [\"192.0.2.1/24\", \"fd00:2::1/64\"]",
                "[[route]]\nprefix = \"198.51.100.0/24\"\nvia = \"192.0.2.9\"\n\
                 [[route]]\nprefix = \"2001:db8:1::/64\"\nvia = \"fd00:2::9\"\n\
                 [[neighbour]]\nport = \"wan\"\naddress = \"192.0.2.9\"\nmac = \"02:00:00:00:00:09\"\n\
                 [[neighbour]]\nport = \"wan\"\naddress = \"fd00:2::9\"\nmac = \"02:00:00:00:00:09\"",
            )
        } else {
            ("", "", "", "[bridge]\npairs = [[\"lan\", \"wan\"]]")
        };
        let s = run_pcap_pair(dir.path(), mode, lan, wan, topology);
        let sent: Vec<Vec<u8>> = read_frames(&p("wan-tx.pcap"))
            .unwrap()
            .into_iter()
            .map(|f| f.data)
            .collect();
        assert_eq!(sent.len(), whole.len(), "forwarded (router {router}): {s}");
        assert_eq!(s["drops"]["frag_timeout"].as_u64(), Some(3), "{s}");
        // Held: every fragment.
        assert_eq!(
            s["conntrack"]["frag_held"].as_u64(),
            Some(frames.len() as u64),
            "{s}"
        );
        assert_eq!(
            s["conntrack"]["frag_held_fragments"].as_u64(),
            Some(0),
            "{s}"
        );
        // The replay forwards the same frames and keeps its verdict log in frame order.
        let replayed: Vec<Vec<u8>> =
            replay_pair(dir.path(), &[p("v.jsonl").as_os_str()], "--verdicts")
                .into_iter()
                .map(|f| f.data)
                .collect();
        assert_eq!(sorted(replayed), sorted(sent.clone()), "router {router}");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(p("v.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), frames.len());
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["index"], i);
            let dropped = given_up.contains(&i);
            assert_eq!(
                l["verdict"],
                if dropped { "drop" } else { "forward" },
                "{l}"
            );
            if dropped {
                assert_eq!(l["reason"], "frag_timeout", "{l}");
            }
        }
        if !router {
            // Each datagram's fragments leave in offset order, once it is whole.
            assert_eq!(sent, whole);
            assert_eq!(sorted(sent), want);
        }
    }
}
