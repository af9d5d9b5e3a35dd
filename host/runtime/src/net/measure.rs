//! Throughput of one channel, in this process and over the network, for
//! the benchmarks: the same batches through a channel between two tasks
//! of one process, and through an HTTP/2 stream over loopback TCP to this
//! process's own cluster endpoint (the path between two task managers).

use super::data::{ChannelKey, DataPlane};
use super::{Auth, advertised_url, bind, serve};
use crate::channel::RemoteChannel;
use crate::channel::{Batch, CHANNEL_CAPACITY, Message};
use crate::events::{TaskEvent, TaskId};
use std::time::{Duration, Instant};
use weir_core::JobId;
use weir_frame::{Record, Writer};

/// What one run of a channel carried.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeFigures {
    pub bytes: u64,
    pub records: u64,
    pub took: Duration,
}

impl ExchangeFigures {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.took.as_secs_f64()
    }

    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.took.as_secs_f64()
    }
}

/// Batches of `record_bytes`-byte records (about 64 KiB each), `total`
/// bytes in all.
fn batches(total: u64, record_bytes: usize) -> Vec<Batch> {
    let value = vec![b'x'; record_bytes];
    let mut out = Vec::new();
    let mut sent = 0u64;
    while sent < total {
        let mut w = Writer::new();
        while w.len() < crate::channel::BUFFER_BYTES {
            w.push(&Record {
                key: Some(b"key-0001"),
                ..Record::value(&value)
            });
        }
        let records = w.records() as u32;
        let data = w.take();
        sent += data.len() as u64;
        out.push(Batch::new(data, records));
    }
    out
}

fn drain(rx: crossbeam_channel::Receiver<Message>) -> (u64, u64) {
    let (mut bytes, mut records) = (0u64, 0u64);
    while let Ok(m) = rx.recv() {
        match m {
            Message::Batch(b) => {
                bytes += b.data.len() as u64;
                records += u64::from(b.records);
            }
            Message::EndOfPartition => break,
            _ => {}
        }
    }
    (bytes, records)
}

/// One channel between two threads of this process.
pub fn exchange_in_process(total: u64, record_bytes: usize) -> ExchangeFigures {
    let batches = batches(total, record_bytes);
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
    let started = Instant::now();
    let reader = std::thread::spawn(move || drain(rx));
    for b in batches {
        tx.send(Message::Batch(b)).expect("the reader is there");
    }
    tx.send(Message::EndOfPartition)
        .expect("the reader is there");
    let (bytes, records) = reader.join().expect("the reader");
    ExchangeFigures {
        bytes,
        records,
        took: started.elapsed(),
    }
}

/// One channel over an HTTP/2 stream on loopback TCP.
pub fn exchange_over_network(total: u64, record_bytes: usize) -> ExchangeFigures {
    let batches = batches(total, record_bytes);
    let listener = bind("127.0.0.1:0").expect("a loopback port");
    let address = advertised_url(&listener, None);
    let plane = DataPlane::new(Auth::default());
    serve(
        listener,
        super::cluster::data_router(plane.clone()),
        Auth::default(),
    );
    let (events, _events_rx) = crossbeam_channel::unbounded::<TaskEvent>();
    let key = ChannelKey {
        job: JobId::random(),
        attempt: 1,
        edge: 0,
        from: 0,
        to: 0,
    };
    let task = TaskId {
        chain: 0,
        subtask: 0,
    };
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
    let (lane, _lane) = crossbeam_channel::unbounded();
    let lane = crate::channel::Lane { tx: lane, input: 0 };
    plane.expect(key.clone(), tx, lane, None, events.clone(), task);
    let started = Instant::now();
    let reader = std::thread::spawn(move || drain(rx));
    let sender = plane.open(&address, key, events, task);
    for b in batches {
        sender.send(Message::Batch(b)).expect("the stream is open");
    }
    sender
        .send(Message::EndOfPartition)
        .expect("the stream is open");
    let (bytes, records) = reader.join().expect("the reader");
    ExchangeFigures {
        bytes,
        records,
        took: started.elapsed(),
    }
}
