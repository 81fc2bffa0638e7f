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
    replay_with(dir, frames, RULES)
}

/// [`replay`] under `rules`.
fn replay_with(
    dir: &Path,
    frames: &[Vec<u8>],
    rules: &str,
) -> (Vec<Vec<u8>>, Vec<serde_json::Value>, String) {
    let p = |n: &str| dir.join(n);
    std::fs::write(p("router.toml"), CONFIG).unwrap();
    std::fs::write(p("rules"), rules).unwrap();
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
    // Linux's TOS for an error (precedence 6), and the quote as FORWARD saw the packet: TTL 63
    // (ip_forward decrements it before the hook), its header checksum updated.
    assert_eq!(out[4][15], 0xc0);
    let quote = &out[4][l4 + 8..];
    assert_eq!(quote[8], 63);
    assert_eq!(dataplane::wire::checksum::checksum(&quote[..20]), 0);

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

/// The router-mode worker's burst path (`route_burst`: conntrack's prefetch pass over the
/// burst, then each frame with the pass's parse and hint, `Router::judge_and_route_hinted`)
/// against the path replay runs (each frame parsed and judged alone, `judge_and_route`), over
/// many flows in bursts of 32: the same fate, bytes, frames the router sends, counted rule
/// and tables for every frame. The flows overlap in time, so a burst often holds several
/// packets of one connection (a SYN and its reply: the second's hint found nothing, its entry
/// was made by the first), besides packets the lean path leaves (TTL 1, RST, REJECT, local
/// delivery, a queued packet and its release, ARP, frames the parsers refuse).
#[test]
fn router_bursts_with_prefetch_and_hints_answer_as_frame_by_frame() {
    use control::load::{load_filter, tree_classifier, NatSettings, RuleFiles};
    use dataplane::conntrack::Hint;
    use dataplane::router::{Arrival, Fate, Router, RouterState};
    use dataplane::track::{prefetch_burst, Tables, TrackConfig};

    // The replay configuration, with the inside clients behind 10.0.0.5.
    let config = format!("{CONFIG}[[route]]\nprefix = \"10.1.0.0/16\"\nvia = \"10.0.0.5\"\n");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::write(&rules, RULES).unwrap();
    let cfg = control::config::Config::parse(Path::new("router.toml"), &config).unwrap();
    let router = control::router_conf::build_router(&cfg, &[INSIDE_MAC, OUTSIDE_MAC]).unwrap();
    let names = ["inside".to_string(), "outside".to_string()];
    let settings = NatSettings::of(&cfg);
    let files = RuleFiles {
        rules: Some(&rules),
        nat: settings.env(1),
        ..Default::default()
    };
    let filter = load_filter(
        &files,
        &names,
        control::rules::Hook::Forward,
        cfg.mode,
        &tree_classifier,
    )
    .unwrap();
    assert!(filter.nat.is_some());

    // Traffic: each flow a script of frames (ingress, frame), the scripts interleaved from a
    // window of 24 flows at a time, so that a flow's packets fall close together.
    let mut rng = dataplane::classify::classbench::SplitMix64(0x726f_7574);
    let public = [203, 0, 113, 1];
    let mut scripts: Vec<std::collections::VecDeque<(u16, Vec<u8>)>> = Vec::new();
    let tcp = |s: [u8; 4], sp: u16, d: [u8; 4], dp: u16, ttl: u8, flags, seq, ack| {
        let mut spec = IpSpec::v4(ip(s), ip(d));
        if let IpSpec::V4 { ttl: t, .. } = &mut spec {
            *t = ttl;
        }
        let mut f = FrameSpec::new(spec, L4Spec::tcp_segment(sp, dp, flags, seq, ack, b"0123"));
        f.dst_mac = if s[0] == 10 { INSIDE_MAC } else { OUTSIDE_MAC };
        f.build()
    };
    // Frames are sent to their ingress port's MAC, but for the one sent to another.
    const STRAY: [u8; 6] = [2, 0, 0, 0, 0x33, 0x33];
    let at = |f: Vec<u8>, port: u16| {
        let mut f = f;
        if f[..6] != STRAY {
            f[..6].copy_from_slice(&[INSIDE_MAC, OUTSIDE_MAC][usize::from(port)].0);
        }
        (port, f)
    };
    for n in 0..1500u32 {
        let r = rng.next_u64();
        let c = [10, 1, (r >> 8) as u8, (r >> 16) as u8 | 1];
        let s = [198, 51, 100 + (r >> 24) as u8 % 2, (r >> 32) as u8 | 1];
        let sp = 10_000 + n as u16;
        let dp = [80, 443, 53][(r >> 40) as usize % 3];
        let (i, o) = (0u16, 1u16);
        let mut q = std::collections::VecDeque::new();
        match (r >> 48) % 8 {
            // TCP: handshake, data both ways, sometimes a TTL 1 segment, sometimes a reset.
            0..=3 => {
                q.push_back((i, tcp(c, sp, s, dp, 64, Flags::SYN, 100, 0)));
                q.push_back((
                    o,
                    tcp(s, dp, public, sp, 60, Flags::SYN | Flags::ACK, 900, 101),
                ));
                q.push_back((i, tcp(c, sp, s, dp, 64, Flags::ACK, 101, 901)));
                for k in 0..(r >> 52) % 6 {
                    q.push_back((i, tcp(c, sp, s, dp, 64, Flags::ACK, 101, 901)));
                    q.push_back((o, tcp(s, dp, public, sp, 60, Flags::ACK, 901, 101)));
                    if k == 2 && r >> 60 & 1 == 1 {
                        q.push_back((i, tcp(c, sp, s, dp, 1, Flags::ACK, 101, 901)));
                    }
                }
                if r >> 61 & 1 == 1 {
                    q.push_back((o, tcp(s, dp, public, sp, 60, Flags::RST, 901, 0)));
                    q.push_back((i, tcp(c, sp, s, dp, 64, Flags::ACK, 101, 901)));
                }
            }
            // UDP: a request, its reply, more of both.
            4..=5 => {
                let u = |a: [u8; 4], ap: u16, b: [u8; 4], bp: u16| {
                    let mut f = FrameSpec::new(IpSpec::v4(ip(a), ip(b)), L4Spec::udp(ap, bp, b"q"));
                    f.dst_mac = if a[0] == 10 { INSIDE_MAC } else { OUTSIDE_MAC };
                    f.build()
                };
                q.push_back((i, u(c, sp, s, 53)));
                for _ in 0..1 + (r >> 52) % 5 {
                    q.push_back((o, u(s, 53, public, sp)));
                    q.push_back((i, u(c, sp, s, 53)));
                }
            }
            // Pings through the router, and to it.
            6 => {
                q.push_back((i, frame(c, s, 64, L4Spec::icmp_echo(sp, 1))));
                q.push_back((i, frame(c, [10, 0, 0, 1], 64, L4Spec::icmp_echo(sp, 2))));
                q.push_back((i, frame(c, s, 64, L4Spec::icmp_echo(sp, 3))));
            }
            // From outside: REJECT, the FORWARD policy, a packet that waits for 10.0.0.9
            // (and, for some, its answer), an ARP request, frames refused early.
            _ => {
                q.push_back((
                    o,
                    frame(s, [10, 0, 0, 5], 64, L4Spec::tcp(sp, 23, Flags::SYN)),
                ));
                q.push_back((
                    o,
                    frame(s, [10, 0, 0, 5], 64, L4Spec::tcp(sp, 25, Flags::SYN)),
                ));
                if n % 3 == 0 {
                    q.push_back((
                        o,
                        frame(s, [10, 0, 0, 9], 64, L4Spec::tcp(sp, 22, Flags::SYN)),
                    ));
                }
                if n % 9 == 0 {
                    let a = arp_reply(HOST9_MAC, ip([10, 0, 0, 9]), INSIDE_MAC, ip([10, 0, 0, 1]));
                    q.push_back((i, a));
                }
                let req = dataplane::wire::builder::arp_request(
                    HOST_MAC,
                    ip([10, 0, 0, 5]),
                    ip([10, 0, 0, 1]),
                );
                q.push_back((i, req));
                q.push_back((i, vec![0u8; 10]));
                let mut stray = tcp(c, sp, s, dp, 64, Flags::ACK, 101, 901);
                stray[..6].copy_from_slice(&STRAY);
                q.push_back((i, stray));
            }
        }
        scripts.push(q.into_iter().map(|(p, f)| at(f, p)).collect());
    }
    let frames = tests::interleave(scripts, 24, &mut rng);
    assert!(frames.len() > 10_000, "{} frames", frames.len());

    // What became of one frame: how it arrived or its fate and bytes, the rule counted, and
    // every frame the router sent meanwhile.
    type Seen = (String, Option<u32>, Vec<(u16, Vec<u8>)>);
    let fate_of = |fate: Fate<Vec<u8>>| match fate {
        Fate::Send { port, pkt } => format!("send {port} {pkt:02x?}"),
        Fate::Queued => "queued".to_string(),
        Fate::Dropped(pkt, why) => format!("dropped {} {pkt:02x?}", why.name()),
        Fate::Reject { pkt, with } => format!("reject {with:?} {pkt:02x?}"),
    };
    let track = {
        let mut t = TrackConfig::new(8192);
        t.conntrack.nat = true;
        t
    };
    struct Run {
        st: RouterState<Vec<u8>>,
        tables: Tables,
        seen: Vec<Seen>,
    }
    let start = |router: &Router| Run {
        st: router.new_state(1_000_000_000),
        tables: Tables::new(&track),
        seen: Vec::new(),
    };
    // Both runs judge a burst at one time, as a worker does.
    let now_of = |b: usize| 1_000_000_000 + b as u64 * 1_000_000;
    let arrived = |run: &mut Run,
                   ingress: u16,
                   data: &[u8],
                   info: &dataplane::wire::PacketInfo,
                   now: u64,
                   sent: &mut Vec<(u16, Vec<u8>)>| {
        let mut released = Vec::new();
        let a = router.arrive(&mut run.st, ingress, data, info, now, sent, |p, f| {
            released.push((p, f))
        });
        sent.extend(released);
        a
    };

    // Frame by frame, as replay runs them.
    let mut one = start(&router);
    for (b, burst) in frames.chunks(32).enumerate() {
        let now = now_of(b);
        for (ingress, data) in burst {
            let mut sent = Vec::new();
            let info = match dataplane::wire::parse::parse_common(data)
                .map_or_else(|| parse_frame(data), Ok)
            {
                Ok(i) => i,
                Err(e) => {
                    one.seen.push((format!("parse {e:?}"), None, sent));
                    continue;
                }
            };
            let seen = match arrived(&mut one, *ingress, data, &info, now, &mut sent) {
                Arrival::Ip(key) => {
                    let (j, fate) = router.judge_and_route(
                        &mut one.st,
                        &filter,
                        &mut one.tables,
                        *ingress,
                        data.clone(),
                        &info,
                        key,
                        now,
                        &mut sent,
                        |_, _, _| {},
                    );
                    let counted = (j.judged && !j.raw && !j.input)
                        .then(|| j.filter.rule())
                        .flatten();
                    (fate_of(fate), counted)
                }
                other => (format!("{other:?}"), None),
            };
            one.seen.push((seen.0, seen.1, sent));
        }
    }

    // In bursts, as a router-mode worker runs them.
    let mut burst_run = start(&router);
    let run = &mut burst_run;
    for (b, burst) in frames.chunks(32).enumerate() {
        let now = now_of(b);
        let mut parsed = [None; 32];
        let mut hints = [Hint::default(); 32];
        prefetch_burst(
            &run.tables,
            burst.iter().map(|(_, f)| f.as_slice()),
            &mut parsed,
            &mut hints,
        );
        for (k, (ingress, data)) in burst.iter().enumerate() {
            let mut sent = Vec::new();
            let full;
            let (info, hint) = match &parsed[k] {
                Some(i) => (i, Some(hints[k])),
                None => match parse_frame(data) {
                    Ok(i) => {
                        full = i;
                        (&full, None)
                    }
                    Err(e) => {
                        run.seen.push((format!("parse {e:?}"), None, sent));
                        continue;
                    }
                },
            };
            let seen = match arrived(run, *ingress, data, info, now, &mut sent) {
                Arrival::Ip(key) => {
                    let (counted, fate) = router.judge_and_route_hinted(
                        &mut run.st,
                        &filter,
                        &mut run.tables,
                        *ingress,
                        data.clone(),
                        info,
                        &key,
                        hint,
                        now,
                        &mut sent,
                        |_, _, _| {},
                    );
                    (fate_of(fate), counted.rule())
                }
                other => (format!("{other:?}"), None),
            };
            run.seen.push((seen.0, seen.1, sent));
        }
    }

    for (i, (a, b)) in one.seen.iter().zip(&burst_run.seen).enumerate() {
        assert_eq!(a, b, "frame {i} ({:?})", frames[i].1);
    }
    assert_eq!(one.seen.len(), burst_run.seen.len());
    assert_eq!(one.st.stats, burst_run.st.stats);
    assert_eq!(
        format!("{:?}", one.tables.ct.stats()),
        format!("{:?}", burst_run.tables.ct.stats())
    );
    assert_eq!(one.tables.ct.len(), burst_run.tables.ct.len());
    // The traffic is what it claims: most frames forwarded, translated connections among
    // them, and each kind of early end present.
    let count = |p: &str| one.seen.iter().filter(|s| s.0.starts_with(p)).count();
    assert!(count("send") > frames.len() / 2, "{} sent", count("send"));
    for kind in [
        "dropped ttl_expired",
        "dropped rule_drop",
        "dropped rule_reject",
        "queued",
        "Consumed",
        "Drop(",
        "parse",
    ] {
        assert!(count(kind) > 0, "no frame {kind}");
    }
    assert!(one.tables.ct.stats().nat_live > 100);
}

/// Linux's `ip_forward` takes one off the TTL before the FORWARD hook, so the FORWARD chain's
/// `-m ttl` sees the decremented value (checked on a Linux router namespace: with `--ttl-eq 64
/// -j DROP` in FORWARD a ping sent with TTL 64 passes and one sent with 65 does not); INPUT
/// sees the TTL the packet came with.
#[test]
fn forward_chain_sees_the_decremented_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -m ttl --ttl-eq 64 -j ACCEPT
-A FORWARD -p udp -m ttl --ttl-eq 64 -j DROP
-A FORWARD -p udp -m ttl --ttl-lt 63 -j DROP
COMMIT
";
    let host = [10, 0, 0, 5];
    let far = [198, 51, 100, 9];
    let frames = vec![
        frame(host, far, 64, L4Spec::udp(5000, 53, b"q")),
        frame(host, far, 65, L4Spec::udp(5001, 53, b"q")),
        frame(host, far, 63, L4Spec::udp(5002, 53, b"q")),
        frame(host, [10, 0, 0, 1], 64, L4Spec::icmp_echo(7, 1)),
        frame(host, [10, 0, 0, 1], 65, L4Spec::icmp_echo(7, 2)),
    ];
    let (out, v, _) = replay_with(dir.path(), &frames, rules);
    let verdicts: Vec<&str> = v.iter().map(|l| l["verdict"].as_str().unwrap()).collect();
    assert_eq!(
        verdicts,
        ["forward", "drop", "drop", "local", "drop"],
        "{v:?}"
    );
    // The forwarded frame leaves with TTL 63.
    assert_eq!(fields(&out[0]).7, 63);
}

/// A RST answering a connection's first packet kills the entry, and is still translated by
/// its binding, as Linux's (`nf_ct_kill_acct` leaves the packet its reference): a refused
/// port forward resets from the public address, a refused SNAT'd connection reaches the
/// client's own address and port.
#[test]
fn rst_answering_the_first_packet_is_translated() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i outside -d 203.0.113.1/32 -p tcp -m tcp --dport 2222 -j DNAT --to-destination 10.0.0.5:22
-A POSTROUTING -o outside -p tcp -j SNAT --to-source 203.0.113.1:50000-50010
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
";
    let host = [10, 0, 0, 5];
    let far = [198, 51, 100, 9];
    let public = [203, 0, 113, 1];
    let seg =
        |sport, dport, flags, seq, ack| L4Spec::tcp_segment(sport, dport, flags, seq, ack, &[]);
    let mut frames = vec![
        // 0: a port forward; 1: the server refuses it (a stack's reset: seq 0, ack SYN + 1).
        frame(far, public, 64, seg(41000, 2222, Flags::SYN, 1000, 0)),
        frame(
            host,
            far,
            64,
            seg(22, 41000, Flags::RST | Flags::ACK, 0, 1001),
        ),
        // 2: out through SNAT (its port moves into the range).
        frame(host, far, 64, seg(40000, 80, Flags::SYN, 5000, 0)),
    ];
    let (out, _, _) = replay_with(dir.path(), &frames, rules);
    let nat_port = fields(&out[2]).4;
    assert!((50000..=50010).contains(&nat_port));
    // 3: the far server refuses it.
    frames.push(frame(
        far,
        public,
        64,
        seg(80, nat_port, Flags::RST | Flags::ACK, 0, 5001),
    ));
    let (out, v, _) = replay_with(dir.path(), &frames, rules);
    let verdicts: Vec<&str> = v.iter().map(|l| l["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["forward"; 4], "{v:?}");
    let f = fields(&out[1]);
    assert_eq!(
        (f.2, f.3, f.4, f.5),
        (ip(public), ip(far), 2222, 41000),
        "{v:?}"
    );
    let f = fields(&out[3]);
    assert_eq!(
        (f.2, f.3, f.4, f.5),
        (ip(far), ip(host), 80, 40000),
        "{v:?}"
    );
}

/// REDIRECT in router mode: the destination becomes the ingress port's address and the
/// packet takes the INPUT path exactly as a DNAT to that address would; what the router
/// answers goes back as the connection's reply (from the address and port the client asked).
/// NETMAP maps a prefix each way, host bits kept. Replay runs the worker's path.
#[test]
fn redirect_goes_to_the_ingress_port_and_netmap_maps_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i inside -p tcp --dport 80 -j REDIRECT --to-ports 3128
-A PREROUTING -i inside -p icmp -d 198.51.100.77 -j REDIRECT
-A PREROUTING -i outside -d 198.19.0.0/24 -j NETMAP --to 10.0.0.0/24
-A POSTROUTING -o outside -s 10.0.0.0/24 -j NETMAP --to 198.18.0.0/24
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -d 10.0.0.1/32 -p tcp --dport 3128 -j REJECT --reject-with tcp-reset
-A INPUT -d 10.0.0.1/32 -p icmp -j ACCEPT
COMMIT
";
    let host = [10, 0, 0, 5];
    let far = [198, 51, 100, 9];
    let seg =
        |sport, dport, flags, seq, ack| L4Spec::tcp_segment(sport, dport, flags, seq, ack, &[]);
    let ping = |ident| L4Spec::Icmp {
        ty: 8,
        code: 0,
        ident,
        seq: 1,
        payload: b"ping".to_vec(),
    };
    let frames = vec![
        // 0: to a web server beyond the router: redirected to 10.0.0.1:3128, which INPUT
        // rejects with a reset.
        frame(host, far, 64, seg(40000, 80, Flags::SYN, 1000, 0)),
        // 1: to port 443: forwarded, its source mapped (10.0.0.5 -> 198.18.0.5).
        frame(host, far, 64, seg(40001, 443, Flags::SYN, 2000, 0)),
        // 2: a ping to 198.51.100.77, redirected: the router answers it.
        frame(host, [198, 51, 100, 77], 64, ping(99)),
        // 3: from outside to 198.19.0.5: mapped to the inside host.
        frame(far, [198, 19, 0, 5], 64, seg(5555, 22, Flags::SYN, 3000, 0)),
    ];
    let (out, v, _) = replay_with(dir.path(), &frames, rules);
    let verdicts: Vec<&str> = v.iter().map(|l| l["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["drop", "forward", "local", "forward"], "{v:?}");
    assert_eq!(out.len(), 4, "{v:?}");
    // The reset, from the address and port the client asked, out of the inside port.
    let f = fields(&out[0]);
    assert_eq!(
        (f.2, f.3, f.4, f.5, f.6),
        (ip(far), ip(host), 80, 40000, 6),
        "{v:?}"
    );
    assert_eq!(v[0]["sent"][0], "inside");
    let f = fields(&out[1]);
    assert_eq!(
        (f.1, f.2, f.3, f.4, f.5),
        (OUTSIDE_MAC, ip([198, 18, 0, 5]), ip(far), 40001, 443)
    );
    // The echo reply comes from the address pinged, not the router's own.
    let f = fields(&out[2]);
    assert_eq!(
        (f.0, f.2, f.3, f.4, f.6),
        (HOST_MAC, ip([198, 51, 100, 77]), ip(host), 99, 1)
    );
    let i = parse_frame(&out[2]).unwrap();
    assert_eq!(out[2][usize::from(i.l4_offset)], 0, "an echo reply");
    let f = fields(&out[3]);
    assert_eq!(
        (f.0, f.2, f.3, f.4, f.5),
        (HOST_MAC, ip(far), ip(host), 5555, 22)
    );
}

/// A datagram given up at the reassembly timeout (30 s from its first-arrived fragment):
/// an IPv6 one whose first fragment came is answered with ICMPv6 time exceeded, fragment
/// reassembly time exceeded, quoting that fragment as it arrived, from the router's address
/// toward the sender (Linux's `ip6frag_expire_frag_queue`); one whose first fragment never
/// came, and IPv4 (`ip_expire` skips conntrack's defrag queues on a forwarding box), get
/// nothing.
#[test]
fn reassembly_timeout_sends_time_exceeded_for_ipv6() {
    use std::net::Ipv6Addr;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let config = r#"
mode = "router"
[[port]]
name = "inside"
device = "net_null0"
addresses = ["10.0.0.1/24", "fd00::1/64"]
[[port]]
name = "outside"
device = "net_null1"
addresses = ["203.0.113.1/24", "2001:db8::1/64"]
[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.254"
[[route]]
prefix = "::/0"
via = "2001:db8::fe"
[[neighbour]]
port = "outside"
address = "203.0.113.254"
mac = "02:00:00:00:fe:fe"
[[neighbour]]
port = "outside"
address = "2001:db8::fe"
mac = "02:00:00:00:fe:fe"
[[neighbour]]
port = "inside"
address = "10.0.0.5"
mac = "02:00:00:00:00:05"
[[neighbour]]
port = "inside"
address = "fd00::5"
mac = "02:00:00:00:00:05"
[router]
icmp_msgs_per_sec = 0
"#;
    let accept = |t: &str| {
        format!("*filter\n:INPUT {t} [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
    };
    std::fs::write(p("router.toml"), config).unwrap();
    std::fs::write(p("rules"), accept("DROP")).unwrap();
    std::fs::write(p("rules6"), accept("DROP")).unwrap();
    let host: Ipv6Addr = "fd00::5".parse().unwrap();
    let far: Ipv6Addr = "2001:db8:9::9".parse().unwrap();
    let v6 = |id: u32| {
        let mut s = IpSpec::v6(host, far);
        if let IpSpec::V6 { ident, .. } = &mut s {
            *ident = id;
        }
        FrameSpec::new(s, L4Spec::udp(5000, 53, &[7; 200])).fragments(64)
    };
    let v4 = {
        let mut s = IpSpec::v4(ip([10, 0, 0, 5]), ip([198, 51, 100, 9]));
        if let IpSpec::V4 { ident, .. } = &mut s {
            *ident = 3;
        }
        FrameSpec::new(s, L4Spec::udp(5000, 53, &[7; 200])).fragments(64)
    };
    let first6 = v6(1)[0].clone();
    let frames = [
        (0u64, first6.clone()),
        (0, v6(1)[1].clone()),
        (0, v6(2)[1].clone()),
        (0, v4[0].clone()),
        (0, v4[1].clone()),
        (
            31,
            FrameSpec::new(IpSpec::v6(host, far), L4Spec::udp(5001, 53, b"q")).build(),
        ),
    ];
    let mut w =
        control::pcap::FrameWriter::create(&p("in.pcap"), control::pcap::Link::Ethernet).unwrap();
    for (i, (s, f)) in frames.iter().enumerate() {
        let t = std::time::Duration::from_secs(1_700_000_000 + s)
            + std::time::Duration::from_micros(i as u64);
        w.write(t, f).unwrap();
    }
    w.finish().unwrap();
    let o = run(replay_command(dir.path(), &[])
        .arg("--rules")
        .arg(p("rules"))
        .arg("--rules6")
        .arg(p("rules6"))
        .arg("--verdicts")
        .arg(p("v.jsonl")));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Vec<serde_json::Value> = std::fs::read_to_string(p("v.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str, String)> = v
        .iter()
        .map(|l| {
            (
                l["verdict"].as_str().unwrap(),
                l["reason"].as_str().unwrap_or("-"),
                l["sent"].to_string(),
            )
        })
        .collect();
    let timeout = |sent: &str| ("drop", "frag_timeout", sent.to_string());
    assert_eq!(
        got,
        [
            timeout("[\"inside\"]"),
            timeout("[]"),
            timeout("[]"),
            timeout("[]"),
            timeout("[]"),
            ("forward", "-", "[\"outside\"]".to_string()),
        ],
        "{v:?}"
    );
    let out: Vec<Vec<u8>> = read_frames(&p("out.pcap"))
        .unwrap()
        .into_iter()
        .map(|f| f.data)
        .collect();
    assert_eq!(out.len(), 2, "the error and the forwarded packet");
    let err = &out[0];
    let info = parse_frame(err).unwrap();
    let k = info.flow.unwrap();
    assert_eq!(
        (k.src.to_std(), k.dst.to_std(), k.proto),
        ("fd00::1".parse().unwrap(), host.into(), 58)
    );
    assert_eq!(MacAddr(err[0..6].try_into().unwrap()), HOST_MAC);
    let l4 = usize::from(info.l4_offset);
    // Time exceeded (3), fragment reassembly time exceeded (1), the first fragment quoted
    // from its IPv6 header, as it arrived.
    assert_eq!((err[l4], err[l4 + 1]), (3, 1));
    assert_eq!(&err[l4 + 8..], &first6[14..]);
    let sum = dataplane::wire::checksum::PseudoHeader::V6 {
        src: "fd00::1".parse().unwrap(),
        dst: host,
    }
    .checksum(58, &err[l4..]);
    assert_eq!(sum, 0, "the ICMPv6 checksum verifies");
}

/// `TCPMSS --clamp-mss-to-pmtu` takes the smaller of the route's MTU (the out port's) and the
/// MTU of the route back to the packet's source (xt_TCPMSS's `tcpmss_reverse_mtu`, a lookup by
/// the source address), less 40: with asymmetric routes that is not the ingress port's.
#[test]
fn mss_clamp_takes_the_route_and_the_reverse_route() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let config = r#"
mode = "router"
[[port]]
name = "inside"
device = "net_null0"
addresses = ["10.0.0.1/24"]
mtu = 1400
[[port]]
name = "outside"
device = "net_null1"
addresses = ["203.0.113.1/24"]
[[port]]
name = "dmz"
device = "net_null2"
addresses = ["10.2.0.1/24"]
mtu = 1300
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
[[neighbour]]
port = "dmz"
address = "10.2.0.7"
mac = "02:00:00:00:00:07"
"#;
    let rules = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
";
    std::fs::write(p("router.toml"), config).unwrap();
    std::fs::write(p("rules"), rules).unwrap();
    let syn = |src: [u8; 4], dst: [u8; 4], dport: u16| {
        FrameSpec::new(
            IpSpec::v4(ip(src), ip(dst)),
            L4Spec::Tcp {
                sport: 40000,
                dport,
                seq: 1,
                ack: 0,
                flags: Flags::SYN,
                window: 65535,
                options: vec![2, 4, 0x05, 0xb4],
                payload: vec![],
            },
        )
        .build()
    };
    // (pcapng interface: 0 the port toward the sender, else that port; the frame)
    let frames = [
        // Out from inside: the route (outside, 1500) and back (inside, 1400): 1360.
        (0u32, syn([10, 0, 0, 5], [198, 51, 100, 9], 80)),
        // From a DMZ address arriving by the outside port, to inside: the route (inside,
        // 1400) and back (dmz, 1300): 1260, where the ingress port would give 1360.
        (1, syn([10, 2, 0, 7], [10, 0, 0, 5], 22)),
        // In from outside to the DMZ: the route (dmz, 1300), back (outside, 1500): 1260.
        (0, syn([198, 51, 100, 9], [10, 2, 0, 7], 443)),
    ];
    std::fs::write(p("in.pcap"), pcapng_on_ports(3, &frames)).unwrap();
    let o = run(replay_command(dir.path(), &[])
        .arg("--rules")
        .arg(p("rules"))
        .arg("--verdicts")
        .arg(p("v.jsonl")));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = std::fs::read_to_string(p("v.jsonl")).unwrap();
    let out: Vec<Vec<u8>> = read_frames(&p("out.pcap"))
        .unwrap()
        .into_iter()
        .map(|f| f.data)
        .collect();
    let mss: Vec<(String, u16)> = out
        .iter()
        .map(|f| {
            let i = parse_frame(f).unwrap();
            let l4 = usize::from(i.l4_offset);
            assert_eq!(&f[l4 + 20..l4 + 22], &[2, 4], "{v}");
            (
                i.flow.unwrap().dst.to_std().to_string(),
                u16::from_be_bytes([f[l4 + 22], f[l4 + 23]]),
            )
        })
        .collect();
    let want: Vec<(String, u16)> = [
        ("198.51.100.9", 1360),
        ("10.0.0.5", 1260),
        ("10.2.0.7", 1260),
    ]
    .iter()
    .map(|(a, m)| (a.to_string(), *m))
    .collect();
    assert_eq!(mss, want, "{v}");
}

/// A pcapng capture (one section, `ports` Ethernet interfaces, enhanced packet blocks) of
/// `frames`, each on its interface (port index; 0: the port toward the sender).
fn pcapng_on_ports(ports: usize, frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut b: Vec<u8> = Vec::new();
    let block = |b: &mut Vec<u8>, ty: u32, body: &[u8]| {
        let len = (12 + body.len().next_multiple_of(4)) as u32;
        b.extend(ty.to_le_bytes());
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.resize(b.len() + body.len().next_multiple_of(4) - body.len(), 0);
        b.extend(len.to_le_bytes());
    };
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend([1, 0, 0, 0]);
    shb.extend((-1i64).to_le_bytes());
    block(&mut b, 0x0a0d_0d0a, &shb);
    for _ in 0..ports {
        block(&mut b, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
    }
    for (i, (iface, f)) in frames.iter().enumerate() {
        let ts = 1_700_000_000_000_000u64 + i as u64 * 1000;
        let mut epb = iface.to_le_bytes().to_vec();
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend((f.len() as u32).to_le_bytes());
        epb.extend((f.len() as u32).to_le_bytes());
        epb.extend(f);
        block(&mut b, 6, &epb);
    }
    b
}

/// `-m rpfilter` in raw PREROUTING through replay's router path: an inside source arriving
/// by the outside port is dropped by the strict check and passed by `--loose`; sources on
/// their own port pass both.
#[test]
fn rpfilter_drops_a_source_on_the_wrong_port() {
    let host = [10, 0, 0, 5];
    let far = [198, 51, 100, 9];
    let frames = vec![
        (0u32, frame(host, far, 64, L4Spec::udp(5000, 53, b"q"))),
        (1, frame(host, far, 64, L4Spec::udp(5001, 53, b"q"))),
        (1, frame(far, host, 64, L4Spec::udp(53, 5002, b"a"))),
    ];
    for (mode, want) in [
        ("", ["forward", "drop", "forward"]),
        (" --loose", ["forward", "forward", "forward"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let rules = format!(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A PREROUTING -m rpfilter{mode} --invert -j DROP\nCOMMIT\n\
             *filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        );
        std::fs::write(p("router.toml"), CONFIG).unwrap();
        std::fs::write(p("rules"), rules).unwrap();
        std::fs::write(p("in.pcap"), pcapng_on_ports(2, &frames)).unwrap();
        let o = run(replay_command(dir.path(), &[])
            .arg("--rules")
            .arg(p("rules"))
            .arg("--verdicts")
            .arg(p("v.jsonl")));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v = std::fs::read_to_string(p("v.jsonl")).unwrap();
        let got: Vec<String> = v
            .lines()
            .map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                j["verdict"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(got, want, "rpfilter{mode}: {v}");
    }
}
