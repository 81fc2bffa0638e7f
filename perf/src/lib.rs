#![forbid(unsafe_code)]
//! Traffic synthesis and benchmark drivers for Rampart.

pub mod bench_classify;
pub mod bench_conn;
pub mod bench_ctselect;
pub mod bench_latency;
pub mod bench_nat;
pub mod bench_route;
pub mod bench_stateful;
pub mod bench_swap;
pub mod bench_swaploss;
pub mod loadgen;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod synth;
