//! Channels between tasks on different processes.
//!
//! Each channel (one upstream subtask to one downstream subtask of an
//! edge) is one HTTP/2 stream: a `POST` from the sending process to the
//! receiving one, whose body carries the channel's messages in order. The
//! stream's flow-control window is the channel's credit: a receiver that
//! stops reading (its task's input queue is full) stops granting window to
//! that stream alone, and other channels on the same connection go on.
//! Batches travel as the framed bytes the sending task wrote.

use super::codec::{self, Decoder};
use super::{Auth, net_runtime};
use crate::channel::{Barrier, Disconnected, Lane, Message, Priority, RemoteChannel};
use crate::events::{TaskEvent, TaskId};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use weir_core::{Failure, JobId};

/// Identifies one channel of one attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChannelKey {
    pub job: JobId,
    pub attempt: u32,
    /// Index of the edge in the execution graph.
    pub edge: usize,
    pub from: u32,
    pub to: u32,
}

impl ChannelKey {
    /// The channel's path under `route` (`channels` or `priority`).
    fn path(&self, route: &str) -> String {
        format!(
            "/v1/cluster/{route}/{}/{}/{}/{}/{}",
            self.job, self.attempt, self.edge, self.from, self.to
        )
    }
}

/// The body of a priority message: a barrier announced ahead of what its
/// channel holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Announce {
    barrier: Barrier,
    before: u64,
}

/// Where a channel's messages go on the receiving side.
struct Inbound {
    tx: Sender<Message>,
    /// The channel's credits, when its task takes messages off the queue
    /// before it processes them (unaligned checkpoints).
    credits: Option<Sender<()>>,
    /// How many messages of the channel precede the latest barrier
    /// announced on it: those go to the task without a credit, since it
    /// takes them off the queue at once.
    announced: Arc<AtomicU64>,
    /// The receiving task's attempt, told when the channel breaks.
    events: Sender<TaskEvent>,
    task: TaskId,
}

/// How long a stream waits for its receiving task to be deployed.
const REGISTRATION_WAIT: Duration = Duration::from_secs(60);

/// Chunks queued between a sending task and its stream.
const OUTBOUND_CHUNKS: usize = 8;

/// This process's end of the network channels.
pub struct DataPlane {
    inbound: Mutex<HashMap<ChannelKey, Inbound>>,
    /// The priority lanes of the channels this process receives, with
    /// what was announced on each.
    lanes: Mutex<HashMap<ChannelKey, (Lane, Arc<AtomicU64>)>>,
    registered: Notify,
    client: reqwest::Client,
    pub(crate) auth: Auth,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane").finish_non_exhaustive()
    }
}

impl DataPlane {
    pub fn new(auth: Auth) -> Arc<DataPlane> {
        Arc::new(DataPlane {
            inbound: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            registered: Notify::new(),
            client: super::client(),
            auth,
        })
    }

    /// Expects channel `key`: its messages go to `tx`, barriers announced
    /// ahead of them to `lane`; a broken stream fails `task` through
    /// `events`.
    pub(crate) fn expect(
        &self,
        key: ChannelKey,
        tx: Sender<Message>,
        lane: Lane,
        credits: Option<Sender<()>>,
        events: Sender<TaskEvent>,
        task: TaskId,
    ) {
        let announced = Arc::new(AtomicU64::new(0));
        self.lanes
            .lock()
            .expect("lanes lock")
            .insert(key.clone(), (lane, announced.clone()));
        self.inbound.lock().expect("inbound lock").insert(
            key,
            Inbound {
                tx,
                credits,
                announced,
                events,
                task,
            },
        );
        self.registered.notify_waiters();
    }

    /// Forgets the channels of an attempt that ended.
    pub(crate) fn forget(&self, job: JobId, attempt: u32) {
        self.inbound
            .lock()
            .expect("inbound lock")
            .retain(|k, _| !(k.job == job && k.attempt == attempt));
        self.lanes
            .lock()
            .expect("lanes lock")
            .retain(|k, _| !(k.job == job && k.attempt == attempt));
    }

    /// Waits up to `REGISTRATION_WAIT` for `find` to find what a channel's
    /// receiving task registered.
    async fn wait_for<T>(&self, find: impl Fn() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + REGISTRATION_WAIT;
        loop {
            let notified = self.registered.notified();
            if let Some(found) = find() {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    async fn claim(&self, key: &ChannelKey) -> Option<Inbound> {
        self.wait_for(|| self.inbound.lock().expect("inbound lock").remove(key))
            .await
    }

    async fn lane(&self, key: &ChannelKey) -> Option<(Lane, Arc<AtomicU64>)> {
        self.wait_for(|| self.lanes.lock().expect("lanes lock").get(key).cloned())
            .await
    }

    /// Opens channel `key` to the process at `address`. A stream that
    /// breaks fails `task` (the sender) through `events`.
    pub(crate) fn open(
        self: &Arc<Self>,
        address: &str,
        key: ChannelKey,
        events: Sender<TaskEvent>,
        task: TaskId,
    ) -> RemoteSender {
        let (tx, rx) = mpsc::channel::<Bytes>(OUTBOUND_CHUNKS);
        let url = format!("{}{}", address.trim_end_matches('/'), key.path("channels"));
        let request = self
            .auth
            .apply(self.client.post(&url))
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>),
            ));
        let peer = address.to_owned();
        let priority = self.announcer(address, &key, events.clone(), task);
        net_runtime().spawn(async move {
            let outcome = match request.send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    format!("{status}: {text}")
                }
                Err(e) => format!("{e}"),
            };
            let _ = events.send(TaskEvent::Failed(
                task,
                Failure::external(format!(
                    "the data connection to {peer} broke ({outcome}); the task manager there may \
                     be gone"
                )),
            ));
        });
        RemoteSender { tx, priority }
    }

    /// Sends the barriers announced on a channel, in order, each as one
    /// small request beside the channel's stream.
    fn announcer(
        self: &Arc<Self>,
        address: &str,
        key: &ChannelKey,
        events: Sender<TaskEvent>,
        task: TaskId,
    ) -> mpsc::UnboundedSender<Announce> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Announce>();
        let url = format!("{}{}", address.trim_end_matches('/'), key.path("priority"));
        let plane = self.clone();
        let peer = address.to_owned();
        net_runtime().spawn(async move {
            while let Some(a) = rx.recv().await {
                let body = serde_json::to_vec(&a).expect("barriers serialize");
                let outcome = match plane
                    .auth
                    .apply(plane.client.post(&url))
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => continue,
                    Ok(r) => {
                        let status = r.status();
                        format!("{status}: {}", r.text().await.unwrap_or_default())
                    }
                    Err(e) => e.to_string(),
                };
                let _ = events.send(TaskEvent::Failed(
                    task,
                    Failure::external(format!(
                        "announcing checkpoint {} to {peer} failed ({outcome}); the task \
                         manager there may be gone",
                        a.barrier.id
                    )),
                ));
                return;
            }
        });
        tx
    }
}

/// The sending end of a network channel, used from a task's thread.
#[derive(Debug, Clone)]
pub(crate) struct RemoteSender {
    tx: mpsc::Sender<Bytes>,
    priority: mpsc::UnboundedSender<Announce>,
}

impl RemoteChannel for RemoteSender {
    fn try_send(&self, msg: Message) -> Result<Option<Message>, Disconnected> {
        if self.tx.capacity() < 2 {
            return if self.tx.is_closed() {
                Err(Disconnected)
            } else {
                Ok(Some(msg))
            };
        }
        self.send(msg).map(|()| None)
    }

    fn has_room(&self) -> bool {
        self.tx.capacity() >= 2 || self.tx.is_closed()
    }

    fn priority(&self, barrier: Barrier, before: u64) -> Result<(), Disconnected> {
        self.priority
            .send(Announce { barrier, before })
            .map_err(|_| Disconnected)
    }

    fn send(&self, msg: Message) -> Result<(), Disconnected> {
        let (header, payload) = codec::encode(msg);
        self.tx.blocking_send(header).map_err(|_| Disconnected)?;
        if let Some(p) = payload {
            self.tx.blocking_send(p).map_err(|_| Disconnected)?;
        }
        Ok(())
    }
}

/// Takes one of a channel's credits for its message number `index`,
/// waiting for the task to give one back — unless none is free and a
/// barrier announced on the channel follows the message: the task takes
/// those off its queue at once, and its checkpoint waits for them. Such a
/// message passes owing its credit (`debt`), which later messages pay
/// back before they pass, so that the credits keep bounding what the task
/// holds. False if the task is gone.
async fn take_credit(
    credits: &Sender<()>,
    announced: &AtomicU64,
    index: u64,
    debt: &mut u64,
) -> bool {
    let mut pause = Duration::ZERO;
    loop {
        let owed = index < announced.load(Ordering::Acquire);
        match credits.try_send(()) {
            Ok(()) if *debt > 0 && !owed => {
                *debt -= 1;
                continue;
            }
            Ok(()) => return true,
            Err(TrySendError::Disconnected(())) => return false,
            Err(TrySendError::Full(())) if owed => {
                *debt += 1;
                return true;
            }
            Err(TrySendError::Full(())) => {}
        }
        pause = (pause * 2).clamp(Duration::from_micros(50), Duration::from_millis(2));
        tokio::time::sleep(pause).await;
    }
}

/// Puts `msg` into a full queue once its task made room, without holding
/// a thread meanwhile; false if the task is gone.
async fn wait_to_send(tx: &Sender<Message>, mut msg: Message) -> bool {
    let mut pause = Duration::from_micros(50);
    loop {
        tokio::time::sleep(pause).await;
        match tx.try_send(msg) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(m)) => {
                msg = m;
                pause = (pause * 2).min(Duration::from_millis(2));
            }
        }
    }
}

/// The channel a request's path names.
type ChannelPath = Path<(String, u32, usize, u32, u32)>;

fn channel_key(Path((job, attempt, edge, from, to)): ChannelPath) -> Result<ChannelKey, String> {
    let job = job
        .parse::<JobId>()
        .map_err(|_| format!("{job} is not a job id"))?;
    Ok(ChannelKey {
        job,
        attempt,
        edge,
        from,
        to,
    })
}

fn not_expected(key: &ChannelKey) -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        format!("no task here expects channel {key:?}"),
    )
}

/// `POST /v1/cluster/priority/{job}/{attempt}/{edge}/{from}/{to}`: a
/// barrier announced ahead of the records queued in a channel.
pub(crate) async fn priority(
    State(plane): State<Arc<DataPlane>>,
    path: ChannelPath,
    body: Bytes,
) -> (StatusCode, String) {
    let key = match channel_key(path) {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, e),
    };
    let announce: Announce = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a barrier: {e}")),
    };
    let Some((lane, announced)) = plane.lane(&key).await else {
        return not_expected(&key);
    };
    // First: the stream then lets these messages through at once.
    announced.fetch_max(announce.before, Ordering::AcqRel);
    let priority = Priority {
        input: lane.input,
        barrier: announce.barrier,
        before: announce.before,
    };
    // A task that ended needs no barrier: its checkpoints are complete, or
    // its attempt is ending anyway.
    let _ = lane.tx.send(priority);
    (StatusCode::OK, String::new())
}

/// `POST /v1/cluster/channels/{job}/{attempt}/{edge}/{from}/{to}`: the
/// receiving end of a channel.
pub(crate) async fn receive(
    State(plane): State<Arc<DataPlane>>,
    path: ChannelPath,
    body: Body,
) -> (StatusCode, String) {
    let key = match channel_key(path) {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, e),
    };
    let from = key.from;
    let Some(inbound) = plane.claim(&key).await else {
        return not_expected(&key);
    };
    let mut stream = body.into_data_stream();
    let mut decoder = Decoder::default();
    // Messages other than barriers passed to the task, and how many of
    // them passed without a credit.
    let (mut forwarded, mut debt) = (0u64, 0u64);
    let broke = |why: String| {
        let _ = inbound.events.send(TaskEvent::Failed(
            inbound.task,
            Failure::external(format!(
                "the data connection from upstream subtask {} broke: {why}; the task manager \
                 there may be gone",
                from + 1
            )),
        ));
    };
    loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                broke(e.to_string());
                return (StatusCode::BAD_REQUEST, "broken stream".into());
            }
            // The sender closed the stream before its end of partition:
            // its task stopped. Its attempt is ending, or this one must.
            None => {
                broke("the upstream task stopped".into());
                return (StatusCode::OK, String::new());
            }
        };
        decoder.push(&chunk);
        loop {
            let msg = match decoder.next() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(f) => {
                    broke(f.message.clone());
                    return (StatusCode::BAD_REQUEST, f.message);
                }
            };
            let end = matches!(msg, Message::EndOfPartition);
            if let Some(credits) = &inbound.credits
                && !matches!(msg, Message::Barrier(_))
            {
                if !take_credit(credits, &inbound.announced, forwarded, &mut debt).await {
                    return (StatusCode::GONE, "the receiving task ended".into());
                }
                forwarded += 1;
            }
            let sent = match inbound.tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Disconnected(_)) => false,
                Err(TrySendError::Full(msg)) => {
                    // Not reading on this stream withholds its window: the
                    // sender waits, other streams go on.
                    wait_to_send(&inbound.tx, msg).await
                }
            };
            if !sent {
                // The receiving task is gone (its attempt ended).
                return (StatusCode::GONE, "the receiving task ended".into());
            }
            if end {
                return (StatusCode::OK, String::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Batch, CHANNEL_CAPACITY};
    use crossbeam_channel::{bounded, unbounded};

    fn batch(n: u8) -> Message {
        Message::Batch(Batch::new(vec![n; 64 * 1024], 1))
    }

    /// Credit per channel: a receiver that stops reading one channel
    /// stalls that channel's sender only; another channel on the same
    /// connection goes on, and the stalled one resumes once read.
    #[test]
    fn a_full_channel_does_not_stall_another_on_the_same_connection() {
        let listener = super::super::bind("127.0.0.1:0").unwrap();
        let address = super::super::advertised_url(&listener, None);
        let plane = DataPlane::new(Auth::default());
        super::super::serve(
            listener,
            super::super::cluster::data_router(plane.clone()),
            Auth::default(),
        );
        let (events, _events) = unbounded();
        let job = JobId::random();
        let key = |to| ChannelKey {
            job,
            attempt: 1,
            edge: 0,
            from: 0,
            to,
        };
        let task = |subtask| TaskId { chain: 1, subtask };
        let (slow_tx, slow_rx) = bounded(CHANNEL_CAPACITY);
        let (fast_tx, fast_rx) = bounded(CHANNEL_CAPACITY);
        let (lane, _lane) = unbounded();
        let lane = |input| Lane {
            tx: lane.clone(),
            input,
        };
        plane.expect(key(0), slow_tx, lane(0), None, events.clone(), task(0));
        plane.expect(key(1), fast_tx, lane(1), None, events.clone(), task(1));
        let slow = plane.open(&address, key(0), events.clone(), task(0));
        let fast = plane.open(&address, key(1), events.clone(), task(1));
        const N: usize = 200;
        // 12.5 MiB into a channel nobody reads: its sender blocks once
        // the queue and the stream's window are full.
        let filler = std::thread::spawn(move || {
            for i in 0..N {
                slow.send(batch(i as u8)).unwrap();
            }
            slow.send(Message::EndOfPartition).unwrap();
        });
        std::thread::sleep(Duration::from_millis(300));
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                fast.send(batch(i as u8)).unwrap();
            }
        });
        for i in 0..N {
            match fast_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Message::Batch(b)) => assert_eq!(b.data[0], i as u8),
                other => panic!("batch {i} of the other channel: {other:?}"),
            }
        }
        sender.join().unwrap();
        assert!(!filler.is_finished(), "the unread channel's sender waits");
        assert_eq!(
            slow_rx.len(),
            CHANNEL_CAPACITY,
            "its queue is full, no more"
        );
        for i in 0..N {
            match slow_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Message::Batch(b)) => assert_eq!(b.data[0], i as u8),
                other => panic!("batch {i} of the stalled channel: {other:?}"),
            }
        }
        assert!(matches!(
            slow_rx.recv_timeout(Duration::from_secs(10)),
            Ok(Message::EndOfPartition)
        ));
        filler.join().unwrap();
    }
}
