//! Black-box tests: the real `nsqlookupd` binary on loopback port 0, driven with raw sockets.

mod cli;
mod harness;
mod http;
mod robustness;
mod tcp;
