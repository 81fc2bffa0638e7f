//! `rampart replay --config` with a router-mode configuration: frames go through the same
//! router path a worker runs (neighbours, LPM, TTL, NAT, INPUT, ICMP errors), and the output
//! capture holds every frame the router transmits.

use control::pcap::{read_frames, write_frames};
use dataplane::wire::builder::{arp_reply, FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use dataplane::wire::{parse_frame, MacAddr};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use tests::{bin, run};

const CONFIG: &str = r#"
mode = "router"
[[port]]
name = "inside"
device = "net_null0"
addresses = ["10.0.0.1/24"]
[[port]]
name = "outside"
device = "net_null1"
addresses = ["203.0.113.1/24"]
[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.254"
[[neighbour]]
port = "outside"
address = "203.0.113.254"
mac = "02:00:00:00:fe:fe"
[[neighbour]]
port = "inside"
address = "10.0.0.5"
mac = "02:00:00:00:00:05"
[router]
icmp_msgs_per_sec = 0
"#;

const RULES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o outside -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i inside -o outside -j ACCEPT
-A FORWARD -i outside -d 10.0.0.9/32 -p tcp --dport 22 -j ACCEPT
-A FORWARD -i outside -p tcp --dport 23 -j REJECT --reject-with icmp-port-unreachable
COMMIT
";

const INSIDE_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const OUTSIDE_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const GW_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xfe, 0xfe]);
const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 5]);
const HOST9_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

fn ip(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn frame(src: [u8; 4], dst: [u8; 4], ttl: u8, l4: L4Spec) -> Vec<u8> {
    let mut spec = IpSpec::v4(ip(src), ip(dst));
    if let IpSpec::V4 { ttl: t, .. } = &mut spec {
        *t = ttl;
    }
    FrameSpec::new(spec, l4).build()
}

/// `rampart replay --config DIR/router.toml --input DIR/in.pcap --output DIR/out.pcap`, with
/// `extra` arguments after the configuration.
fn replay_command(dir: &Path, extra: &[&str]) -> Command {
    let p = |n: &str| dir.join(n);
    let mut c = Command::new(bin("rampart"));
    c.arg("replay")
        .arg("--config")
        .arg(p("router.toml"))
        .args(extra)
        .arg("--input")
        .arg(p("in.pcap"))
        .arg("--output")
        .arg(p("out.pcap"));
    c
}

fn replay(dir: &Path, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<serde_json::Value>, String) {
    let p = |n: &str| dir.join(n);
    std::fs::write(p("router.toml"), CONFIG).unwrap();
    std::fs::write(p("rules"), RULES).unwrap();
    write_frames(&p("in.pcap"), frames.iter().map(|f| f.as_slice())).unwrap();
    let o = run(replay_command(dir, &[])
        .arg("--rules")
        .arg(p("rules"))
        .arg("--verdicts")
        .arg(p("v.jsonl")));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "replay failed: {}{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = read_frames(&p("out.pcap"))
        .unwrap()
        .into_iter()
        .map(|f| f.data)
        .collect();
    let lines = std::fs::read_to_string(p("v.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, lines, stdout)
}

/// (dst MAC, src MAC, src, dst, sport, dport, proto, ttl) of an IPv4 frame.
fn fields(f: &[u8]) -> (MacAddr, MacAddr, Ipv4Addr, Ipv4Addr, u16, u16, u8, u8) {
    let i = parse_frame(f).unwrap();
    let k = i.flow.unwrap();
    let mac = |o: usize| MacAddr(f[o..o + 6].try_into().unwrap());
    let ttl = f[usize::from(i.l3_offset) + 8];
    (
        mac(0),
        mac(6),
        k.src.to_v4().unwrap(),
        k.dst.to_v4().unwrap(),
        k.src_port,
        k.dst_port,
        k.proto,
        ttl,
    )
}

#[test]
fn router_mode_replays_through_the_workers_router_path() {
    let dir = tempfile::tempdir().unwrap();
    let host = [10, 0, 0, 5];
    let far = [198, 51, 100, 9];
    let public = [203, 0, 113, 1];
    let mut frames = vec![
        // 0: out through MASQUERADE, to the permanent gateway neighbour.
        frame(host, far, 64, L4Spec::tcp(40000, 80, Flags::SYN)),
    ];
    // The reply needs the port MASQUERADE chose: replay once to learn it.
    let (out0, _, _) = replay(dir.path(), &frames);
    let (_, _, _, _, nat_port, _, _, _) = fields(&out0[0]);
    frames.extend([
        // 1: the reply, back to the host.
        frame(
            far,
            public,
            60,
            L4Spec::tcp(80, nat_port, Flags::SYN | Flags::ACK),
        ),
        // 2: a ping to the router's inside address: answered.
        frame(host, [10, 0, 0, 1], 64, L4Spec::icmp_echo(7, 1)),
        // 3: TTL 1 toward the internet: time exceeded from the router.
        frame(host, far, 1, L4Spec::udp(5000, 53, b"q")),
        // 4: REJECT from outside: port unreachable from the router's outside address.
        frame(far, [10, 0, 0, 5], 64, L4Spec::tcp(41000, 23, Flags::SYN)),
        // 5: allowed in to 10.0.0.9, whose MAC nobody configured: queued, ARP request.
        frame(far, [10, 0, 0, 9], 64, L4Spec::tcp(41001, 22, Flags::SYN)),
        // 6: 10.0.0.9 answers the request: the waiting SYN goes out.
        arp_reply(HOST9_MAC, ip([10, 0, 0, 9]), INSIDE_MAC, ip([10, 0, 0, 1])),
        // 7: dropped by the FORWARD policy.
        frame(far, [10, 0, 0, 5], 64, L4Spec::tcp(41002, 25, Flags::SYN)),
    ]);
    let (out, v, stdout) = replay(dir.path(), &frames);
    let verdict = |i: usize| v[i]["verdict"].as_str().unwrap().to_string();
    assert_eq!(v.len(), frames.len());

    // 0: SNAT to the outside address, TTL 63, gateway's MAC.
    assert_eq!(verdict(0), "forward");
    assert_eq!(v[0]["egress"], "outside");
    assert_eq!(v[0]["ingress"], "inside");
    let f = fields(&out[0]);
    assert_eq!((f.0, f.1), (GW_MAC, OUTSIDE_MAC));
    assert_eq!((f.2, f.3, f.5, f.7), (ip(public), ip(far), 80, 63));
    assert_eq!(v[0]["nat"]["src"]["to"], format!("203.0.113.1:{nat_port}"));

    // 1: reply translated back, to the host's permanent MAC.
    assert_eq!(verdict(1), "forward");
    assert_eq!(v[1]["ingress"], "outside");
    assert_eq!(v[1]["ct_state"], "ESTABLISHED");
    let f = fields(&out[1]);
    assert_eq!((f.0, f.1), (HOST_MAC, INSIDE_MAC));
    assert_eq!(
        (f.2, f.3, f.4, f.5, f.7),
        (ip(far), ip(host), 80, 40000, 59)
    );

    // 2: echo reply from the router.
    assert_eq!(verdict(2), "local");
    assert_eq!(v[2]["sent"], serde_json::json!(["inside"]));
    let f = fields(&out[2]);
    assert_eq!(
        (f.0, f.1, f.2, f.3, f.6),
        (HOST_MAC, INSIDE_MAC, ip([10, 0, 0, 1]), ip(host), 1)
    );

    // 3: time exceeded (ICMP type 11) from the inside address.
    assert_eq!(verdict(3), "drop");
    assert_eq!(v[3]["reason"], "ttl_expired");
    let f = fields(&out[3]);
    assert_eq!(
        (f.0, f.2, f.3, f.6),
        (HOST_MAC, ip([10, 0, 0, 1]), ip(host), 1)
    );
    let te = parse_frame(&out[3]).unwrap();
    assert_eq!(out[3][usize::from(te.l4_offset)], 11);

    // 4: REJECT: port unreachable (type 3 code 3) from the router, out of the outside port.
    assert_eq!(verdict(4), "drop");
    assert_eq!(v[4]["reason"], "rule_reject");
    assert_eq!(v[4]["sent"], serde_json::json!(["outside"]));
    let f = fields(&out[4]);
    assert_eq!(
        (f.0, f.1, f.2, f.3),
        (GW_MAC, OUTSIDE_MAC, ip(public), ip(far))
    );
    let un = parse_frame(&out[4]).unwrap();
    let l4 = usize::from(un.l4_offset);
    assert_eq!((out[4][l4], out[4][l4 + 1]), (3, 3));

    // 5: queued; an ARP request for 10.0.0.9 goes out of the inside port.
    assert_eq!(verdict(5), "queued");
    assert_eq!(v[5]["egress"], "inside");
    assert_eq!(v[5]["sent"], serde_json::json!(["inside"]));
    assert_eq!(&out[5][12..14], &[0x08, 0x06], "an ARP request");
    assert_eq!(&out[5][0..6], &[0xff; 6]);

    // 6: the answer is consumed and releases the SYN.
    assert_eq!(verdict(6), "consumed");
    assert_eq!(v[6]["sent"], serde_json::json!(["inside"]));
    let f = fields(&out[6]);
    assert_eq!(
        (f.0, f.1, f.3, f.5, f.7),
        (HOST9_MAC, INSIDE_MAC, ip([10, 0, 0, 9]), 22, 63)
    );

    // 7: the FORWARD policy.
    assert_eq!(verdict(7), "drop");
    assert_eq!(v[7]["reason"], "rule_drop");
    assert_eq!(out.len(), 7, "nothing else was sent");
    assert!(
        stdout.contains("replayed 8 packets: forwarded 3, dropped 3"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("2 for the router itself, 1 sent once a neighbour answered, 0 still waiting"),
        "{stdout}"
    );
}

#[test]
fn router_mode_replay_refuses_what_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_frames(&p("in.pcap"), std::iter::empty()).unwrap();
    for (config, want) in [
        (
            CONFIG.replace("address = \"10.0.0.5\"", "address = \"10.0.1.5\""),
            "neighbour[1].address",
        ),
        (
            CONFIG.replace("mac = \"02:00:00:00:00:05\"", "mac = \"01:00:00:00:00:05\""),
            "neighbour[1].mac",
        ),
        (
            CONFIG.replace("port = \"inside\"\naddress", "port = \"nowhere\"\naddress"),
            "neighbour[1].port",
        ),
    ] {
        std::fs::write(p("router.toml"), config).unwrap();
        let o = run(&mut replay_command(dir.path(), &[]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{want}: {err}");
    }
    std::fs::write(p("router.toml"), CONFIG).unwrap();
    let o = run(&mut replay_command(dir.path(), &["--no-conntrack"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("tracks connections"),
        "{err}"
    );
    let o = run(&mut replay_command(dir.path(), &["--inside", "10.0.0.0/8"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--inside is for bridge mode"),
        "{err}"
    );
}
