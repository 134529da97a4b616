//! `GroupCommit`: durable mode's acknowledgement point. A publish that wrote its messages to disk
//! queues asks for a commit of those queues and waits; one syncer task fdatasyncs every queue
//! asked for since its last round, then wakes everyone who asked before that round started.
//! Publishers arriving while an fsync runs join the next round, so under load one fsync serves
//! many publishes (group commit) and a lone publisher waits for one fsync.
//!
//! Rounds are numbered (epochs). A ticket names the round that will cover the request; the syncer
//! publishes the last finished round through a watch channel, and remembers recently failed rounds
//! so their waiters get an error (`E_PUB_FAILED`) instead of an acknowledgement.

use crate::backend::Backend;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{Notify, watch};

/// Failed rounds remembered for late waiters.
const FAILED_ROUNDS_KEPT: usize = 256;

/// The node's group-commit service.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    gathering: Mutex<Gathering>,
    wake: Notify,
    /// The last finished round.
    finished: watch::Sender<u64>,
    failed: Mutex<VecDeque<(u64, String)>>,
    started: AtomicBool,
    rounds: AtomicU64,
    fsyncs: AtomicU64,
    requests: AtomicU64,
}

#[derive(Debug)]
struct Gathering {
    /// The round the next request joins.
    epoch: u64,
    queues: Vec<Arc<Backend>>,
}

/// A request waiting for the round that covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a durable publish is acknowledged only after its commit"]
pub(crate) struct CommitTicket {
    epoch: u64,
}

/// Counters for `/stats` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounters {
    /// Rounds run (each one group commit).
    pub rounds: u64,
    /// fdatasync/fsync calls made by the rounds.
    pub fsyncs: u64,
    /// Requests (durable publishes and drain steps) covered.
    pub requests: u64,
}

impl GroupCommit {
    pub(crate) fn new() -> Self {
        Self {
            gathering: Mutex::new(Gathering {
                epoch: 1,
                queues: Vec::new(),
            }),
            wake: Notify::new(),
            finished: watch::Sender::new(0),
            failed: Mutex::new(VecDeque::new()),
            started: AtomicBool::new(false),
            rounds: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Asks for the next round to make everything already written to `queues` durable. Call it
    /// after the writes returned. Must be called inside the Tokio runtime (the syncer task
    /// starts on first use).
    pub(crate) fn request(self: &Arc<Self>, queues: &[Arc<Backend>]) -> CommitTicket {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).run());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let epoch = {
            let mut gathering = self.gathering.lock();
            for queue in queues {
                if !gathering
                    .queues
                    .iter()
                    .any(|known| Arc::ptr_eq(known, queue))
                {
                    gathering.queues.push(Arc::clone(queue));
                }
            }
            gathering.epoch
        };
        self.wake.notify_one();
        CommitTicket { epoch }
    }

    /// Waits for the round of `ticket`. `Err` carries the disk error of a failed round.
    pub(crate) async fn wait(&self, ticket: CommitTicket) -> Result<(), String> {
        let mut finished = self.finished.subscribe();
        if finished
            .wait_for(|&done| done >= ticket.epoch)
            .await
            .is_err()
        {
            return Err("exiting".to_owned());
        }
        let failed = self.failed.lock();
        match failed.iter().find(|(epoch, _)| *epoch == ticket.epoch) {
            Some((_, err)) => Err(err.clone()),
            None if failed.front().is_some_and(|(oldest, _)| {
                failed.len() == FAILED_ROUNDS_KEPT && ticket.epoch < *oldest
            }) =>
            {
                // Too late to know: refuse rather than acknowledge something perhaps not durable.
                Err("commit outcome unknown".to_owned())
            }
            None => Ok(()),
        }
    }

    /// Requests and waits.
    pub(crate) async fn commit(self: &Arc<Self>, queues: &[Arc<Backend>]) -> Result<(), String> {
        let ticket = self.request(queues);
        self.wait(ticket).await
    }

    pub(crate) fn counters(&self) -> CommitCounters {
        CommitCounters {
            rounds: self.rounds.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// The syncer: one round at a time, for as long as the process runs (waiters must never be
    /// left hanging, so it does not stop at shutdown).
    async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                let (epoch, queues) = {
                    let mut gathering = self.gathering.lock();
                    if gathering.queues.is_empty() {
                        break;
                    }
                    let epoch = gathering.epoch;
                    gathering.epoch += 1;
                    (epoch, std::mem::take(&mut gathering.queues))
                };
                let outcome = tokio::task::spawn_blocking(move || {
                    let mut calls = 0u64;
                    for queue in &queues {
                        calls += u64::from(queue.sync_writes()?);
                    }
                    Ok::<u64, nsq_diskqueue::Error>(calls)
                })
                .await;
                self.rounds.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(Ok(calls)) => {
                        self.fsyncs.fetch_add(calls, Ordering::Relaxed);
                    }
                    Ok(Err(err)) => self.fail(epoch, err.to_string()),
                    Err(join) => self.fail(epoch, format!("fsync task failed - {join}")),
                }
                self.finished.send_replace(epoch);
            }
        }
    }

    fn fail(&self, epoch: u64, err: String) {
        tracing::error!("durable commit failed - {err}");
        let mut failed = self.failed.lock();
        if failed.len() == FAILED_ROUNDS_KEPT {
            failed.pop_front();
        }
        failed.push_back((epoch, err));
    }
}
