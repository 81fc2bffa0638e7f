#!/usr/bin/env bash
# The bundled demo: generates a capture of mixed traffic (some of it malformed), runs the daemon
# over net_pcap virtual devices on it, and prints what it forwarded and dropped. No NIC needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --bins
mkdir -p demo-out
./target/release/rampart-perf gen-pcap --kind demo --output demo-out/in.pcap --expected demo-out/expected.txt
./target/release/rampart-perf gen-pcap --kind empty --output demo-out/empty.pcap
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd ./target/release/rampart run --config examples/demo.toml --exit-when-idle-ms 1000 \
  --summary-json demo-out/summary.json
echo
echo "demo: forwarded frames are in demo-out/outside.pcap (read them with: tcpdump -nr demo-out/outside.pcap)"
echo "demo: expected verdicts per input frame are in demo-out/expected.txt"
