//! The router-mode test topologies (`tests::topo`): with Linux as the router, pings cross it in
//! both families with the TTL decremented and the rules loaded; the topology for Rampart has its
//! ports' veth ends in this namespace. Both are gone after drop.

use std::process::Command;
use std::time::Duration;
use tests::topo::{in_ns, RouterTopology};
use tests::{root_or_skip, run, run_ok};

const RULES4: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p icmp -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o ro -j MASQUERADE
COMMIT
";

fn namespaces() -> String {
    String::from_utf8_lossy(&run(Command::new("ip").args(["netns", "list"])).stdout).into_owned()
}

fn link_exists(name: &str) -> bool {
    run(Command::new("ip").args(["link", "show", "dev", name]))
        .status
        .success()
}

#[test]
fn linux_router_topology_forwards_pings_and_tears_down() {
    if !root_or_skip("linux_router_topology_forwards_pings_and_tears_down") {
        return;
    }
    let names = {
        let t = RouterTopology::with_linux_router(61, Some(RULES4), None);
        let a = t.addressing;
        let router = t.router.clone().expect("a router namespace");
        assert!(
            t.wait_ping(&a.server_v4(), Duration::from_secs(10)),
            "no IPv4 echo reply through the Linux router"
        );
        let out = t.ping_from_inside(&a.server_v4(), 2);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("ttl=63"),
            "one hop decrements the TTL: {text}"
        );
        assert!(
            t.wait_ping(&a.server_v6(), Duration::from_secs(10)),
            "no IPv6 echo reply through the Linux router"
        );
        // The router's own address answers too, and the rules are in force.
        assert!(t
            .ping_from_inside(&a.router_inside_v4(), 1)
            .status
            .success());
        let saved = run_ok(&mut in_ns(&router, &["iptables-save"]));
        let saved = String::from_utf8_lossy(&saved.stdout);
        assert!(
            saved.contains("-A POSTROUTING -o ro -j MASQUERADE") && saved.contains(":FORWARD DROP"),
            "{saved}"
        );
        [t.inside.clone(), t.outside.clone(), router]
    };
    let left = namespaces();
    for n in &names {
        assert!(
            !left.lines().any(|l| l.split_whitespace().next() == Some(n)),
            "{n} left behind"
        );
    }
}

#[test]
fn rampart_topology_has_its_ports_here_and_tears_down() {
    if !root_or_skip("rampart_topology_has_its_ports_here_and_tears_down") {
        return;
    }
    let (ports, names) = {
        let t = RouterTopology::for_rampart(62);
        assert!(t.router.is_none());
        for p in &t.ports {
            assert!(link_exists(p), "{p}");
        }
        // Nothing routes between the hosts until Rampart runs.
        assert!(!t
            .ping_from_inside(&t.addressing.server_v4(), 1)
            .status
            .success());
        let text = t.rampart_ports("rt");
        assert!(text.contains(&format!("iface={},", t.ports[0])), "{text}");
        (t.ports.clone(), [t.inside.clone(), t.outside.clone()])
    };
    for p in &ports {
        assert!(!link_exists(p), "{p} left behind");
    }
    let left = namespaces();
    for n in &names {
        assert!(
            !left.lines().any(|l| l.split_whitespace().next() == Some(n)),
            "{n} left behind"
        );
    }
}
