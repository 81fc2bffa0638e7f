//! Fuzz `dataplane::wire::parse_frame` on untrusted frames.
//!
//! Run with `cargo +nightly fuzz run parse_frame` from `dataplane/`. Besides "never panics",
//! it checks the invariants `parse_frame` documents: the datagram lies within the frame, the
//! L4 slice of an unfragmented TCP/UDP packet passes `new_checked`, and walking TCP options
//! and IPv6 extension headers on accepted frames stays in bounds.

#![no_main]

use dataplane::wire::{ip_proto, ipv6, parse_frame, tcp, udp, Family, Fragment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let Ok(info) = parse_frame(frame) else {
        return;
    };
    assert!(info.l3_end() <= frame.len());
    let Some(flow) = info.flow else {
        assert_eq!(info.l4_offset, 0);
        return;
    };
    if flow.family == Family::V6 {
        let ip = ipv6::Packet::new_checked(&frame[usize::from(info.l3_offset)..])
            .expect("accepted IPv6 header");
        for hdr in ip.ext_headers() {
            let hdr = hdr.expect("walk already succeeded");
            assert!(hdr.offset + hdr.data.len() <= ip.payload().len());
        }
    }
    let Some(l4) = info.l4_bytes(frame) else {
        return;
    };
    match (info.frag, flow.proto) {
        (Fragment::None, ip_proto::TCP) => {
            let seg = tcp::Packet::new_checked(l4).expect("accepted TCP header");
            for opt in seg.options_iter() {
                let _ = opt;
            }
            let _ = seg.payload();
        }
        (Fragment::First { .. }, ip_proto::TCP) => {
            let seg = tcp::Packet::new_unchecked(l4);
            assert!(seg.header_len() <= l4.len());
            seg.options_iter().for_each(drop);
        }
        (Fragment::None, ip_proto::UDP) => {
            let _ = udp::Packet::new_checked(l4)
                .expect("accepted UDP header")
                .payload();
        }
        _ => {}
    }
});
