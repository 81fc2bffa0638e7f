#![forbid(unsafe_code)]
//! Rampart's control plane: configuration, capture I/O, the replay driver and the daemon.

pub mod config;
pub mod ctfilter;
pub mod daemon;
pub mod groups;
pub mod load;
pub mod metrics;
pub mod mgmt;
pub mod pcap;
pub mod prefix;
pub mod reload;
pub mod replay;
pub mod router_conf;
pub mod rules;
pub mod run;

#[cfg(test)]
mod bridge_rig;
#[cfg(test)]
mod connmark_tests;
#[cfg(test)]
mod ctzone_tests;
#[cfg(test)]
mod mangle_tests;
#[cfg(test)]
mod nat_tests;
#[cfg(test)]
mod natmap_tests;
#[cfg(test)]
mod stateful_tests;
