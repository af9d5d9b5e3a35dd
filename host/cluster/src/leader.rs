//! Leader election over the HA store (`high-availability.type: lease`):
//! several sessions share one store; one leads and runs the jobs, the
//! others wait to take over.
//!
//! Each term of leadership is an object `leader/<epoch>.json`, created
//! with a conditional write (create-if-absent, on S3/MinIO as on a file
//! system): of two standbys that find the lease expired, one creates the
//! next term and leads. The leader renews its term by rewriting its own
//! object. It leads while its last renewal is younger than the lease
//! (by its own clock) and no later term exists: a deposed leader that
//! wakes up finds the next term and stops, and every HA write it would
//! make — the record of a completed checkpoint, before which no sink
//! commits — is refused ([`Lease::check`]).

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir_checkpoint::{Storage, block_on};

/// One term of leadership, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Term {
    pub epoch: u64,
    pub holder: String,
    /// The leader's REST endpoint and cluster endpoint, for clients and
    /// task managers.
    pub rest: Option<String>,
    pub cluster: Option<String>,
    /// Wall-clock time of the last renewal (ms since the epoch).
    pub renewed_ms: u64,
    pub lease_ms: u64,
}

fn term_path(epoch: u64) -> String {
    format!("leader/{epoch:020}.json")
}

/// This session's claim to lead.
pub struct Lease {
    storage: Storage,
    holder: String,
    lease: Duration,
    epoch: AtomicU64,
    /// Until when this session leads, by its own clock.
    valid_until: Mutex<Option<Instant>>,
    deposed: AtomicBool,
    endpoints: Mutex<(Option<String>, Option<String>)>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("holder", &self.holder)
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish()
    }
}

impl Lease {
    pub fn new(storage: Storage, lease: Duration) -> Lease {
        Lease {
            storage,
            holder: format!("weir-session-{:016x}", rand::random::<u64>()),
            lease,
            epoch: AtomicU64::new(0),
            valid_until: Mutex::new(None),
            deposed: AtomicBool::new(false),
            endpoints: Mutex::new((None, None)),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The latest term, if any. Its epoch is the object's name; a term
    /// whose content does not parse counts as expired, and objects with
    /// other names are ignored.
    pub fn current(&self) -> Result<Option<Term>> {
        let names = block_on(self.storage.list("leader"))
            .map_err(crate::ha::err)
            .context("reading the leader lease")?;
        let latest = names
            .iter()
            .filter_map(|p| {
                let name = p.rsplit('/').next()?.strip_suffix(".json")?;
                (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| name.parse::<u64>().ok())
                    .flatten()
            })
            .max();
        let Some(epoch) = latest else {
            return Ok(None);
        };
        let bytes = block_on(self.storage.get(&term_path(epoch))).map_err(crate::ha::err)?;
        Ok(Some(
            serde_json::from_slice::<Term>(&bytes)
                .ok()
                .filter(|t| t.epoch == epoch)
                .unwrap_or(Term {
                    epoch,
                    holder: String::new(),
                    rest: None,
                    cluster: None,
                    renewed_ms: 0,
                    lease_ms: 0,
                }),
        ))
    }

    fn term(&self, epoch: u64, renewed_ms: u64) -> Term {
        let (rest, cluster) = self.endpoints.lock().expect("endpoints lock").clone();
        Term {
            epoch,
            holder: self.holder.clone(),
            rest,
            cluster,
            renewed_ms,
            lease_ms: self.lease.as_millis() as u64,
        }
    }

    /// Leads if the lease is free (no term yet, or the latest one expired):
    /// true when this session now leads.
    pub fn try_acquire(&self) -> Result<bool> {
        let current = self.current()?;
        if let Some(t) = &current
            && crate::status::now_ms() < t.renewed_ms.saturating_add(t.lease_ms)
        {
            return Ok(false);
        }
        let epoch = current.map(|t| t.epoch).unwrap_or(0) + 1;
        let began = Instant::now();
        let term = self.term(epoch, crate::status::now_ms());
        let created = block_on(
            self.storage
                .create(&term_path(epoch), Bytes::from(serde_json::to_vec(&term)?)),
        )
        .map_err(crate::ha::err)
        .context("taking the leader lease")?;
        // A create retried after it succeeded finds its own term there.
        let created = created
            || self
                .current()
                .ok()
                .flatten()
                .is_some_and(|t| t.epoch == epoch && t.holder == self.holder);
        if created {
            self.epoch.store(epoch, Ordering::Relaxed);
            *self.valid_until.lock().expect("lease lock") = Some(began + self.safe_lease());
            tracing::info!("leading, term {epoch}");
        }
        Ok(created)
    }

    /// The part of the lease this session counts on: a tenth less, for
    /// clocks that drift.
    fn safe_lease(&self) -> Duration {
        self.lease.mul_f64(0.9)
    }

    /// Tells clients and task managers where this session is.
    pub fn set_endpoints(&self, rest: Option<String>, cluster: Option<String>) {
        *self.endpoints.lock().expect("endpoints lock") = (rest, cluster);
    }

    /// Renews the term; an error once this session no longer leads.
    pub fn renew(&self) -> Result<()> {
        self.check()?;
        let epoch = self.epoch();
        let began = Instant::now();
        let term = self.term(epoch, crate::status::now_ms());
        block_on(
            self.storage
                .put(&term_path(epoch), Bytes::from(serde_json::to_vec(&term)?)),
        )
        .map_err(crate::ha::err)
        .context("renewing the leader lease")?;
        // A standby may have taken over while this write was on its way.
        self.check()?;
        *self.valid_until.lock().expect("lease lock") = Some(began + self.safe_lease());
        Ok(())
    }

    /// Whether this session still leads: its lease is younger than the
    /// lease duration, and no later term exists. Everything that would
    /// let sinks commit asks first.
    pub fn check(&self) -> Result<()> {
        let epoch = self.epoch();
        if self.deposed.load(Ordering::Relaxed) {
            anyhow::bail!("this session no longer leads (term {epoch} ended)");
        }
        let valid = self
            .valid_until
            .lock()
            .expect("lease lock")
            .is_some_and(|t| Instant::now() < t);
        if !valid {
            self.deposed.store(true, Ordering::Relaxed);
            anyhow::bail!(
                "this session's leader lease (term {epoch}) expired before it was renewed; \
                 another session may lead now"
            );
        }
        let next = block_on(self.storage.exists(&term_path(epoch + 1)))
            .map_err(crate::ha::err)
            .context("checking the leader lease")?;
        if next {
            self.deposed.store(true, Ordering::Relaxed);
            anyhow::bail!("another session leads now (term {})", epoch + 1);
        }
        Ok(())
    }

    /// Renews the lease until this session is deposed, then calls
    /// `deposed` (on a thread of its own).
    pub fn keep(self: &std::sync::Arc<Self>, deposed: impl Fn(String) + Send + Sync + 'static) {
        let deposed = std::sync::Arc::new(deposed);
        // A watchdog that does no I/O: once the lease ran out unrenewed
        // (the renewal may hang on the store), this session stops leading.
        let watched = self.clone();
        let on_expiry = deposed.clone();
        let _ = std::thread::Builder::new()
            .name("leader-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(watched.lease / 20);
                    let expired = watched
                        .valid_until
                        .lock()
                        .expect("lease lock")
                        .is_none_or(|t| Instant::now() >= t);
                    if expired {
                        watched.deposed.store(true, Ordering::Relaxed);
                        on_expiry(format!(
                            "its lease (term {}) ran out before it was renewed",
                            watched.epoch()
                        ));
                        return;
                    }
                }
            });
        let lease = self.clone();
        let every = self.lease / 4;
        let _ = std::thread::Builder::new()
            .name("leader-lease".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    if let Err(e) = lease.renew() {
                        if lease.deposed.load(Ordering::Relaxed) {
                            deposed(format!("{e:#}"));
                            return;
                        }
                        // The store did not answer: try again while the
                        // lease lasts.
                        tracing::warn!("{e:#}");
                    }
                }
            });
    }
}
