//! The control socket's backend over a running [`Dataplane`]: policies are compiled here, on
//! the control thread (never on a worker), published to every worker and acknowledged once
//! all of them run it; port pairs are hotplugged.
//!
//! Workloads announced one by one (`SetWorkload`) are kept beside the last policy snapshot and
//! override its workloads of the same id; every change recompiles and publishes a new epoch.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Dataplane, PairId};
use crate::config::PortConfig;
use crate::ctl::{Backend, BackendError, Stats};
use crate::policy::{ActivePolicy, Compiled, Policy, Workload};

/// [`Backend`] for `palisade-dp`.
#[derive(Debug)]
pub struct DpBackend {
    dp: Dataplane,
    policy: Policy,
    announced: BTreeMap<String, Workload>,
    epoch: u64,
    /// How long the last publication took to reach every worker.
    pub last_swap: Option<Duration>,
}

impl DpBackend {
    /// Wraps a running dataplane (which enforces the empty policy until told otherwise).
    pub fn new(dp: Dataplane) -> Self {
        let epoch = dp.policy().epoch;
        Self {
            dp,
            policy: Policy::default(),
            announced: BTreeMap::new(),
            epoch,
            last_swap: None,
        }
    }

    /// The dataplane.
    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    /// The dataplane, mutably (report rings).
    pub fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    /// Gives the dataplane back (to shut it down).
    pub fn into_dataplane(self) -> Dataplane {
        self.dp
    }

    /// Compiles `policy` with the announced workloads and publishes it.
    fn publish(&mut self, policy: &Policy) -> Result<(), BackendError> {
        let extra: Vec<Workload> = self.announced.values().cloned().collect();
        let compiled = Compiled::compile(policy, &extra)?;
        self.epoch += 1;
        let took = self
            .dp
            .publish_policy(ActivePolicy {
                epoch: self.epoch,
                compiled,
            })
            .map_err(|e| BackendError::failed(e.to_string()))?;
        self.last_swap = Some(took);
        tracing::info!(
            generation = policy.generation,
            epoch = self.epoch,
            rules = policy.rules.len(),
            workloads = policy.workloads.len() + self.announced.len(),
            swap_us = took.as_micros() as u64,
            "policy published"
        );
        Ok(())
    }

    /// Describes an address for reports with the policy running now.
    pub fn resolver(&self) -> impl Fn(IpAddr) -> (Option<String>, String) + use<> {
        let policy: Arc<ActivePolicy> = self.dp.policy();
        move |ip| {
            let (w, g) = policy.compiled.describe(ip);
            (w.map(str::to_owned), g.to_owned())
        }
    }
}

impl Backend for DpBackend {
    fn generation(&self) -> u64 {
        self.policy.generation
    }

    fn set_policy(&mut self, policy: Policy) -> Result<u64, BackendError> {
        self.publish(&policy)?;
        self.policy = policy;
        Ok(self.policy.generation)
    }

    fn set_workload(&mut self, workload: Workload) -> Result<(), BackendError> {
        let previous = self.announced.insert(workload.id.clone(), workload.clone());
        let policy = self.policy.clone();
        if let Err(e) = self.publish(&policy) {
            // Keep what runs and what we remember in step.
            match previous {
                Some(p) => self.announced.insert(workload.id, p),
                None => self.announced.remove(&workload.id),
            };
            return Err(e);
        }
        Ok(())
    }

    fn remove_workload(&mut self, id: &str) -> Result<(), BackendError> {
        let Some(previous) = self.announced.remove(id) else {
            return Err(BackendError::not_found(format!(
                "no workload `{id}` was announced"
            )));
        };
        let policy = self.policy.clone();
        if let Err(e) = self.publish(&policy) {
            self.announced.insert(id.to_owned(), previous);
            return Err(e);
        }
        Ok(())
    }

    fn add_pair(&mut self, ports: [PortConfig; 2]) -> Result<u64, BackendError> {
        let [a, b] = ports;
        self.dp
            .attach_pair(&a, &b)
            .map(|id| id.0)
            .map_err(|e| BackendError::failed(e.to_string()))
    }

    fn remove_pair(&mut self, id: u64) -> Result<(), BackendError> {
        if !self.dp.pairs().iter().any(|p| p.id == PairId(id)) {
            return Err(BackendError::not_found(format!("no pair {id}")));
        }
        self.dp
            .remove_pair(PairId(id))
            .map_err(|e| BackendError::failed(e.to_string()))
    }

    fn stats(&mut self) -> Stats {
        Stats::from_dataplane(&self.dp, self.policy.generation)
    }
}
