//! `palisade`, the control process and CLI: the REST API ([`api`]) over the store
//! ([`store`]), the shared core ([`service`]), the domain model ([`model`]), the dataplane
//! supervisor ([`dataplane`]) and what it feeds ([`policy`], [`learn`]), `palisade up`
//! ([`up`]) with its demo topology ([`demo`]) and the whole configuration file ([`config`]).

pub mod api;
pub mod cli;
pub mod config;
pub mod conversations;
pub mod dataplane;
pub mod demo;
pub mod fanotify;
pub mod file;
pub mod learn;
pub mod model;
pub mod notify;
pub mod plumb;
pub mod policy;
pub mod policy_code;
pub mod process;
pub mod service;
pub mod store;
pub mod up;
pub mod workload;

/// An error and its causes, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
