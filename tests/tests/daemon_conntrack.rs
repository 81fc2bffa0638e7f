//! `rampart ctl conntrack delete` on a running daemon (bridge mode on `net_af_packet` ports over
//! veth pairs in namespaces): two TCP connections run through Rampart; a reload removes the
//! rule that let the first one open, and it goes on as ESTABLISHED until a filtered delete
//! forgets it, after which its packets are judged NEW against the rules in force and dropped,
//! while the second, which the filter does not select, goes on. Every mbuf comes back.

use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use tests::netfilter::{prefixes, RampartDaemon};
use tests::root_or_skip;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn rules(ssh: bool) -> String {
    let ssh = if ssh {
        "-A FORWARD -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT\n"
    } else {
        ""
    };
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n{ssh}\
         -A FORWARD -p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT\n\
         COMMIT\n"
    )
}

const RULES6: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

/// One TCP connection's segments, sequence numbers kept.
struct Flow {
    sport: u16,
    dport: u16,
    c: u32,
    s: u32,
}

impl Flow {
    fn seg(&self, flags: Flags, payload: &[u8], reply: bool) -> Vec<u8> {
        let (src, dst, sp, dp, seq, ack) = if reply {
            (SERVER, CLIENT, self.dport, self.sport, self.s, self.c)
        } else {
            (CLIENT, SERVER, self.sport, self.dport, self.c, self.s)
        };
        FrameSpec::new(
            IpSpec::v4(src, dst),
            L4Spec::Tcp {
                sport: sp,
                dport: dp,
                seq,
                ack,
                flags,
                window: 65535,
                options: Vec::new(),
                payload: payload.to_vec(),
            },
        )
        .build()
    }

    fn handshake(&mut self) -> Vec<Vec<u8>> {
        let syn = self.seg(Flags::SYN, &[], false);
        self.c += 1;
        let syn_ack = self.seg(Flags::SYN | Flags::ACK, &[], true);
        self.s += 1;
        let ack = self.seg(Flags::ACK, &[], false);
        vec![syn, syn_ack, ack]
    }

    /// Ten bytes from the client and the server's acknowledgement.
    fn exchange(&mut self) -> Vec<Vec<u8>> {
        let data = self.seg(Flags::PSH | Flags::ACK, b"0123456789", false);
        self.c += 10;
        let ack = self.seg(Flags::ACK, &[], true);
        vec![data, ack]
    }
}

/// `rampart ctl --socket S ARGS`: stdout, after checking it succeeded.
fn ctl(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(tests::bin("rampart"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("rampart ctl");
    assert!(
        out.status.success(),
        "rampart ctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_filtered_delete_ends_one_connection_and_not_the_other() {
    if !root_or_skip("a_filtered_delete_ends_one_connection_and_not_the_other") {
        return;
    }
    let inside = prefixes(perf::scenarios::INSIDE);
    let daemon = RampartDaemon::start(&rules(true), RULES6);
    let sock = daemon.socket().to_path_buf();
    let mut ssh = Flow {
        sport: 40001,
        dport: 22,
        c: 1000,
        s: 5000,
    };
    let mut web = Flow {
        sport: 40002,
        dport: 80,
        c: 7000,
        s: 9000,
    };
    let forwarded = |frames: &[Vec<u8>]| -> Vec<bool> {
        daemon
            .inject(frames, &inside)
            .outcomes
            .iter()
            .map(|o| o.forwarded)
            .collect()
    };
    let mut frames = ssh.handshake();
    frames.extend(web.handshake());
    for _ in 0..3 {
        frames.extend(ssh.exchange());
        frames.extend(web.exchange());
    }
    assert_eq!(forwarded(&frames), vec![true; 18], "both connections open");

    // The SSH rule goes; the connection it let in is ESTABLISHED and goes on.
    let dir = tempfile::tempdir().unwrap();
    let (p4, p6) = (dir.path().join("v4"), dir.path().join("v6"));
    std::fs::write(&p4, rules(false)).unwrap();
    std::fs::write(&p6, RULES6).unwrap();
    ctl(
        &sock,
        &[
            "rules",
            "load",
            p4.to_str().unwrap(),
            "--rules6",
            p6.to_str().unwrap(),
        ],
    );
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.extend(ssh.exchange());
        frames.extend(web.exchange());
    }
    assert_eq!(forwarded(&frames), vec![true; 12], "after the reload");
    // A new SSH connection is refused now.
    let mut late = Flow {
        sport: 40003,
        dport: 22,
        c: 1,
        s: 2,
    };
    assert_eq!(forwarded(&late.handshake()[..1]), vec![false]);

    assert_eq!(ctl(&sock, &["conntrack", "count"]), "2");
    assert_eq!(
        ctl(&sock, &["conntrack", "count", "-p", "tcp", "--dport", "22"]),
        "1"
    );
    let listed: serde_json::Value = serde_json::from_str(&ctl(
        &sock,
        &["--json", "conntrack", "list", "-p", "tcp", "--dport", "22"],
    ))
    .unwrap();
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["connections"][0]["orig"]["sport"], 40001);
    assert_eq!(listed["connections"][0]["state"], "ESTABLISHED");
    // A filter that selects nothing deletes nothing.
    assert_eq!(
        ctl(
            &sock,
            &["conntrack", "delete", "-p", "udp", "--dport", "22"]
        ),
        "0 flow entries have been deleted."
    );
    assert_eq!(
        ctl(
            &sock,
            &[
                "conntrack",
                "delete",
                "-s",
                "10.0.0.1",
                "-p",
                "tcp",
                "--dport",
                "22"
            ]
        ),
        "1 flow entries have been deleted."
    );
    assert_eq!(ctl(&sock, &["conntrack", "count"]), "1");

    // The SSH connection's packets are NEW now, and no rule lets NEW SSH in; the web one goes on.
    let mut frames = Vec::new();
    for _ in 0..2 {
        frames.extend(ssh.exchange());
        frames.extend(web.exchange());
    }
    assert_eq!(
        forwarded(&frames),
        vec![false, false, true, true, false, false, true, true],
        "after the delete"
    );
    assert_eq!(ctl(&sock, &["conntrack", "count"]), "1");
    // A bad filter is refused before anything is sent, and changes nothing.
    let out = Command::new(tests::bin("rampart"))
        .arg("ctl")
        .arg("--socket")
        .arg(&sock)
        .args(["conntrack", "delete", "-p", "tcp", "--state", "OPEN"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown TCP state `OPEN'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ctl(&sock, &["conntrack", "count"]), "1");
    let summary = daemon.stop();
    assert_eq!(
        summary["mbufs_in_use"]["start"], summary["mbufs_in_use"]["end"],
        "mbuf leak: {summary}"
    );
}
