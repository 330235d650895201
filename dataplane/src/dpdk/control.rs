//! The control socket's backend over a running [`Dataplane`]: policies are compiled here, on
//! the control thread (never on a worker), published to every worker and acknowledged once
//! all of them run it; port pairs are hotplugged.
//!
//! Workloads announced one by one (`SetWorkload`) are kept beside the last policy snapshot and
//! override its workloads of the same id; every change recompiles and publishes a new epoch.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// How long the last policy took to compile.
    pub last_compile: Option<Duration>,
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
            last_compile: None,
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
    fn publish(&mut self, policy: &Policy) -> Result<(), PublishError> {
        let extra: Vec<Workload> = self.announced.values().cloned().collect();
        let started = Instant::now();
        let compiled =
            Compiled::compile(policy, &extra).map_err(|e| PublishError::Rejected(e.into()))?;
        self.last_compile = Some(started.elapsed());
        self.epoch += 1;
        let took = self
            .dp
            .publish_policy(ActivePolicy {
                epoch: self.epoch,
                compiled,
            })
            .map_err(|e| {
                PublishError::Unacknowledged(BackendError::failed(format!(
                    "published (it runs on the workers that answered), but: {e}"
                )))
            })?;
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

/// Why a publication failed.
enum PublishError {
    /// The policy did not compile: nothing changed.
    Rejected(BackendError),
    /// The snapshot is published, but not every worker acknowledged it in time.
    Unacknowledged(BackendError),
}

impl Backend for DpBackend {
    fn generation(&self) -> u64 {
        self.policy.generation
    }

    fn set_policy(&mut self, policy: Policy) -> Result<u64, BackendError> {
        match self.publish(&policy) {
            Ok(()) => {
                self.policy = policy;
                Ok(self.policy.generation)
            }
            Err(PublishError::Rejected(e)) => Err(e),
            Err(PublishError::Unacknowledged(e)) => {
                // It is live: what we remember must say so.
                self.policy = policy;
                Err(e)
            }
        }
    }

    fn set_workload(&mut self, workload: Workload) -> Result<(), BackendError> {
        let previous = self.announced.insert(workload.id.clone(), workload.clone());
        let policy = self.policy.clone();
        match self.publish(&policy) {
            Ok(()) => Ok(()),
            Err(PublishError::Rejected(e)) => {
                // Nothing was published: keep what runs and what we remember in step.
                match previous {
                    Some(p) => self.announced.insert(workload.id, p),
                    None => self.announced.remove(&workload.id),
                };
                Err(e)
            }
            Err(PublishError::Unacknowledged(e)) => Err(e),
        }
    }

    fn remove_workload(&mut self, id: &str) -> Result<(), BackendError> {
        let Some(previous) = self.announced.remove(id) else {
            return Err(BackendError::not_found(format!(
                "no workload `{id}` was announced"
            )));
        };
        let policy = self.policy.clone();
        match self.publish(&policy) {
            Ok(()) => Ok(()),
            Err(PublishError::Rejected(e)) => {
                self.announced.insert(id.to_owned(), previous);
                Err(e)
            }
            Err(PublishError::Unacknowledged(e)) => Err(e),
        }
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
        let mut s = Stats::from_dataplane(&self.dp, self.policy.generation);
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        s.policy_compile_us = self.last_compile.map(us);
        s.policy_swap_us = self.last_swap.map(us);
        s
    }
}
