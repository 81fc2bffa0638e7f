//! `rampart-perf loadgen` against `rampart run` in two processes joined by `net_memif` pairs:
//! generator port 0 -> Rampart port "a" -> Rampart port "b" -> generator port 1. Rampart's
//! memif ports are the servers (it starts first and stays up), the generator's the clients.
//! What comes back must be exactly what was sent minus what the rules drop, per the generator's
//! report and per Rampart's own counters, and every packet back carries a latency sample.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, root_or_skip, run, test_eal_args, toml_array, unique};

/// Rules: everything passes the bridge except UDP and TCP to port 9.
const RULES: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -p udp --dport 9 -j DROP\n-A FORWARD -p tcp --dport 9 -j DROP\nCOMMIT\n";

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} not written: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// Starts `rampart run` bridging two memif servers whose sockets live in `dir`.
fn start_rampart(dir: &Path, rules6: bool) -> Child {
    start_rampart_with(dir, rules6, RULES)
}

/// The same with the rule file `rules` (IPv4, and IPv6 with `rules6`).
fn start_rampart_with(dir: &Path, rules6: bool, rules: &str) -> Child {
    let prefix = unique("lgfw");
    std::fs::write(dir.join("rules"), rules).unwrap();
    std::fs::write(dir.join("rules6"), rules).unwrap();
    let cfg = format!(
        r#"
mode = "bridge"
[eal]
args = {eal}
[[port]]
name = "a"
device = "net_memif{prefix}a,role=server,socket={dir}/a.sock,rsize=12"
[[port]]
name = "b"
device = "net_memif{prefix}b,role=server,socket={dir}/b.sock,rsize=12"
[bridge]
pairs = [["a", "b"]]
[rules]
ipv4 = "{dir}/rules"
{v6}
[management]
socket = "{dir}/m.sock"
[mempool]
mbufs = 8191
cache = 64
[rings]
rx_desc = 1024
tx_desc = 1024
"#,
        eal = toml_array(&test_eal_args(&prefix, "0@0,1@1")),
        dir = dir.display(),
        v6 = if rules6 {
            format!("ipv6 = \"{}/rules6\"", dir.display())
        } else {
            String::new()
        },
    );
    std::fs::write(dir.join("fw.toml"), cfg).unwrap();
    Command::new(bin("rampart"))
        .args(["run", "--config"])
        .arg(dir.join("fw.toml"))
        .arg("--summary-json")
        .arg(dir.join("fw.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rampart starts")
}

/// Stops Rampart with SIGTERM and returns its summary.
fn stop_rampart(child: Child, dir: &Path) -> serde_json::Value {
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let mut child = child;
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
    json(&dir.join("fw.json"))
}

/// Runs the generator through Rampart with `extra` traffic options and checks the counts.
fn through_rampart(test: &str, count: u64, extra: &[&str], expect_to_drop: u64, v6: bool) {
    if !root_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fw = start_rampart(d, v6);
    let prefix = unique("lggen");
    let count_s = count.to_string();
    // The generator lingers after its report with its ports up, so Rampart stops first: a memif
    // server whose lcore polls while its client disconnects can crash (DPDK 22.11).
    let mut gen = Command::new(bin("rampart-perf"))
        .arg("loadgen")
        .arg("--tx")
        .arg(format!(
            "net_memif{prefix}0,role=client,socket={}/a.sock,rsize=12",
            d.display()
        ))
        .arg("--rx")
        .arg(format!(
            "net_memif{prefix}1,role=client,socket={}/b.sock,rsize=12",
            d.display()
        ))
        .args([
            "--count",
            &count_s,
            "--rate-pps",
            "20000",
            "--quiet",
            "--linger",
        ])
        .args(extra)
        .arg("--json")
        .arg(d.join("gen.json"))
        .arg("--")
        .args(test_eal_args(&prefix, "0@0,1@0"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rampart-perf starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !d.join("gen.json").exists() {
        if gen.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = gen.kill();
            let out = gen.wait_with_output().unwrap();
            let _ = stop_rampart(fw, d);
            panic!(
                "loadgen ended or hung without a report:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let fw_summary = stop_rampart(fw, d);
    run(Command::new("kill").args(["-TERM", &gen.id().to_string()]));
    let gen = gen.wait_with_output().unwrap();
    assert!(
        gen.status.success(),
        "loadgen failed:\n{}\n{}",
        String::from_utf8_lossy(&gen.stdout),
        String::from_utf8_lossy(&gen.stderr)
    );
    let g = json(&d.join("gen.json"));
    let ctx = format!("generator: {g:#}\nrampart: {fw_summary:#}");

    // The generator's view.
    assert_eq!(g["tx"]["packets"].as_u64(), Some(count), "{ctx}");
    assert_eq!(g["tx"]["to_drop"].as_u64(), Some(expect_to_drop), "{ctx}");
    let expected = count - expect_to_drop;
    assert_eq!(g["expected_rx"].as_u64(), Some(expected), "{ctx}");
    assert_eq!(g["rx"]["signed"].as_u64(), Some(expected), "{ctx}");
    assert_eq!(g["rx"]["packets"].as_u64(), Some(expected), "{ctx}");
    assert_eq!(g["rx"]["foreign"].as_u64(), Some(0), "{ctx}");
    assert_eq!(g["lost"].as_i64(), Some(0), "{ctx}");
    assert_eq!(g["latency_ns"]["samples"].as_u64(), Some(expected), "{ctx}");
    let l = &g["latency_ns"];
    let (p50, p99, max) = (
        l["p50"].as_u64().unwrap(),
        l["p99"].as_u64().unwrap(),
        l["max"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{ctx}");

    // Rampart's view.
    let port = |name: &str| {
        fw_summary["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("port {name} in the summary: {ctx}"))
            .clone()
    };
    assert_eq!(port("a")["rx_packets"].as_u64(), Some(count), "{ctx}");
    assert_eq!(port("b")["tx_packets"].as_u64(), Some(expected), "{ctx}");
    assert_eq!(port("b")["rx_packets"].as_u64(), Some(0), "{ctx}");
    assert_eq!(fw_summary["rx_packets"].as_u64(), Some(count), "{ctx}");
    assert_eq!(fw_summary["tx_packets"].as_u64(), Some(expected), "{ctx}");
    assert_eq!(fw_summary["tx_refused"].as_u64(), Some(0), "{ctx}");
    assert_eq!(
        fw_summary["drops"]["rule_drop"].as_u64().unwrap_or(0),
        expect_to_drop,
        "{ctx}"
    );
    assert_eq!(
        fw_summary["dropped"].as_u64(),
        Some(expect_to_drop),
        "only the rules drop: {ctx}"
    );
}

#[test]
fn udp_through_rampart_loses_exactly_what_the_rules_drop() {
    // 12.5 % of 20000 packets go to port 9: exactly 2500.
    through_rampart(
        "udp_through_rampart_loses_exactly_what_the_rules_drop",
        20_000,
        &[
            "--flows",
            "256",
            "--src-ip",
            "10.0.0.1-10.0.0.16",
            "--sport",
            "2000-2015",
            "--dport",
            "80",
            "--drop-share",
            "0.125",
            "--drop-dport",
            "9",
            "--size",
            "imix",
        ],
        2_500,
        false,
    );
}

#[test]
fn ipv6_tcp_through_rampart_loses_exactly_what_the_rules_drop() {
    through_rampart(
        "ipv6_tcp_through_rampart_loses_exactly_what_the_rules_drop",
        10_000,
        &[
            "--proto",
            "tcp",
            "--flows",
            "100",
            "--src-ip",
            "fd00::1-fd00::a",
            "--dst-ip",
            "fd00:1::1",
            "--sport",
            "3000-3009",
            "--dport",
            "443",
            "--drop-share",
            "0.25",
            "--size",
            "64,1518",
        ],
        2_500,
        true,
    );
}

#[test]
fn tcp_churn_through_rampart_loses_exactly_the_dropped_connections() {
    // Connections of SYN, 3 data segments and FIN (5 packets); 10 % of 2000 connections go to
    // port 9: 200 connections, 1000 packets.
    through_rampart(
        "tcp_churn_through_rampart_loses_exactly_the_dropped_connections",
        10_000,
        &[
            "--proto",
            "tcp",
            "--churn",
            "3",
            "--flows",
            "2000",
            "--sport",
            "1024-65535",
            "--dport",
            "80",
            "--drop-share",
            "0.1",
            "--size",
            "128",
        ],
        1_000,
        false,
    );
}

/// A stateful set: a server's SYN+ACK, data and FIN pass only as replies of a connection
/// conntrack saw open.
const STATEFUL: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
-A FORWARD -m conntrack --ctstate INVALID -j DROP\n\
-A FORWARD -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";

#[test]
fn tcp_connections_with_both_sides_all_complete_through_conntrack() {
    if !root_or_skip("tcp_connections_with_both_sides_all_complete_through_conntrack") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fw = start_rampart_with(d, false, STATEFUL);
    let prefix = unique("lgconn");
    const CONNS: u64 = 500;
    let mut gen = Command::new(bin("rampart-perf"))
        .arg("loadgen")
        .arg("--tx")
        .arg(format!(
            "net_memif{prefix}0,role=client,socket={}/a.sock,rsize=12",
            d.display()
        ))
        .arg("--rx")
        .arg(format!(
            "net_memif{prefix}1,role=client,socket={}/b.sock,rsize=12",
            d.display()
        ))
        .args(["--proto", "tcp", "--churn", "2", "--both-sides"])
        .args(["--count", &CONNS.to_string(), "--conn-rate", "5000"])
        .args(["--inflight", "64", "--flows", "10000", "--dport", "80"])
        .args(["--sport", "1024-65535", "--quiet", "--linger"])
        .arg("--json")
        .arg(d.join("gen.json"))
        .arg("--")
        .args(test_eal_args(&prefix, "0@0,1@0"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rampart-perf starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !d.join("gen.json").exists() {
        if gen.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = gen.kill();
            let out = gen.wait_with_output().unwrap();
            let _ = stop_rampart(fw, d);
            panic!(
                "loadgen ended or hung without a report:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let fw_summary = stop_rampart(fw, d);
    run(Command::new("kill").args(["-TERM", &gen.id().to_string()]));
    let gen = gen.wait_with_output().unwrap();
    assert!(gen.status.success(), "loadgen failed");
    let g = json(&d.join("gen.json"));
    let ctx = format!("generator: {g:#}\nrampart: {fw_summary:#}");
    let c = &g["connections"];
    assert_eq!(c["opened"].as_u64(), Some(CONNS), "{ctx}");
    assert_eq!(c["completed"].as_u64(), Some(CONNS), "{ctx}");
    assert_eq!(c["abandoned"].as_u64(), Some(0), "{ctx}");
    // SYN, ACK, 2 data, FIN+ACK, last ACK from the client; SYN+ACK and FIN+ACK from the server.
    assert_eq!(g["client"]["tx_packets"].as_u64(), Some(6 * CONNS), "{ctx}");
    assert_eq!(g["server"]["rx_packets"].as_u64(), Some(6 * CONNS), "{ctx}");
    assert_eq!(
        g["server"]["data_segments"].as_u64(),
        Some(2 * CONNS),
        "{ctx}"
    );
    assert_eq!(g["server"]["tx_packets"].as_u64(), Some(2 * CONNS), "{ctx}");
    assert_eq!(g["client"]["rx_packets"].as_u64(), Some(2 * CONNS), "{ctx}");
    assert_eq!(g["foreign"].as_u64(), Some(0), "{ctx}");
    assert_eq!(fw_summary["tx_packets"].as_u64(), Some(8 * CONNS), "{ctx}");
    assert_eq!(fw_summary["dropped"].as_u64(), Some(0), "{ctx}");
}
