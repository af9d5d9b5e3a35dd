//! Windows on keyed streams, as Flink's `WindowOperator`: tumbling,
//! sliding, session (merging) and global windows, on event time or
//! processing time, with the default trigger or a count trigger, allowed
//! lateness and a side output for late records.
//!
//! The host assigns windows, keeps timers and decides when windows fire;
//! the guest folds records into accumulators (incremental functions) or
//! runs the process-window function over a window's elements. Everything a
//! window holds lives in keyed state with the window as namespace:
//! accumulators (state `acc`, cached in the guest like other
//! aggregations), elements (`weir.window.contents`), session sets
//! (`weir.window.sessions`), counts (`weir.window.count`) and timers — so
//! it is checkpointed, restored mid-window, and rescaled by key group.

use crate::services::{TaskHost, state_failure};
use crate::slots::{FRESH, SlotIndex};
use std::collections::BTreeMap;
use weir_core::guest::{Guest, GuestOutput};
use weir_core::plan::{TimeDomain, Trigger, WindowAssigner, WindowFunction, WindowSpec};
use weir_core::{Failure, TimeDomain as HostDomain};
use weir_frame::{GLOBAL_WINDOW, Reader, Record, Window, Writer};
use weir_state::{StateId, Timer};

/// The windows a timestamp belongs to, in Flink's order.
pub(crate) fn assign(assigner: &WindowAssigner, ts: i64, out: &mut Vec<Window>) {
    out.clear();
    match *assigner {
        WindowAssigner::Tumbling { size_ms, offset_ms } => {
            let start = ts.saturating_sub((ts.wrapping_sub(offset_ms)).rem_euclid(size_ms));
            out.push(Window {
                start,
                end: start.saturating_add(size_ms),
            });
        }
        WindowAssigner::Sliding {
            size_ms,
            slide_ms,
            offset_ms,
        } => {
            let last = ts.saturating_sub((ts.wrapping_sub(offset_ms)).rem_euclid(slide_ms));
            let mut start = last;
            while start > ts.saturating_sub(size_ms) {
                out.push(Window {
                    start,
                    end: start.saturating_add(size_ms),
                });
                match start.checked_sub(slide_ms) {
                    Some(s) => start = s,
                    None => break,
                }
            }
        }
        WindowAssigner::Session { gap_ms } => out.push(Window {
            start: ts,
            end: ts.saturating_add(gap_ms),
        }),
        WindowAssigner::Global => out.push(GLOBAL_WINDOW),
    }
}

/// Flink's `TimeWindow.intersects`: windows that overlap or touch.
fn intersects(a: &Window, b: &Window) -> bool {
    a.start <= b.end && a.end >= b.start
}

fn cover(a: &Window, b: &Window) -> Window {
    Window {
        start: a.start.min(b.start),
        end: a.end.max(b.end),
    }
}

/// The session windows of one key: each window, and the window whose
/// namespace holds its state (which stays put as the session grows, as in
/// Flink's `MergingWindowSet`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    pub windows: Vec<(Window, Window)>,
}

/// What adding a window to a session set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merge {
    /// The window the new element belongs to.
    pub window: Window,
    /// Where that window's state lives.
    pub state: Window,
    /// State windows merged into `state` (their state moves there).
    pub merged_states: Vec<Window>,
    /// Windows that no longer exist (their timers go).
    pub replaced: Vec<Window>,
}

impl Sessions {
    pub fn decode(bytes: &[u8]) -> Sessions {
        let windows = bytes
            .chunks_exact(32)
            .filter_map(|c| {
                Some((
                    Window::from_namespace(&c[..16])?,
                    Window::from_namespace(&c[16..])?,
                ))
            })
            .collect();
        Sessions { windows }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.windows.len() * 32);
        for (w, s) in &self.windows {
            out.extend_from_slice(&w.to_namespace());
            out.extend_from_slice(&s.to_namespace());
        }
        out
    }

    /// Adds the window of a new element, merging every window it bridges.
    pub fn add(&mut self, w: Window) -> Merge {
        let mut merged = w;
        let mut taken: Vec<(Window, Window)> = Vec::new();
        while let Some(i) = self
            .windows
            .iter()
            .position(|(x, _)| intersects(x, &merged))
        {
            let x = self.windows.remove(i);
            merged = cover(&merged, &x.0);
            taken.push(x);
        }
        if taken.is_empty() {
            self.windows.push((w, w));
            return Merge {
                window: w,
                state: w,
                merged_states: vec![],
                replaced: vec![],
            };
        }
        taken.sort_by_key(|(x, _)| *x);
        let state = taken[0].1;
        let merged_states = taken[1..].iter().map(|(_, s)| *s).collect();
        let replaced = taken
            .iter()
            .map(|(x, _)| *x)
            .filter(|x| *x != merged)
            .collect();
        self.windows.push((merged, state));
        self.windows.sort_by_key(|(x, _)| *x);
        Merge {
            window: merged,
            state,
            merged_states,
            replaced,
        }
    }

    pub fn state_of(&self, w: &Window) -> Option<Window> {
        self.windows.iter().find(|(x, _)| x == w).map(|(_, s)| *s)
    }

    pub fn remove(&mut self, w: &Window) {
        self.windows.retain(|(x, _)| x != w);
    }
}

/// A window to fire: the key, the window, where its state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fire {
    key: Vec<u8>,
    window: Window,
    state: Window,
    /// Clear the window afterwards.
    purge: bool,
    /// Emit its result (false: only clear it).
    emit: bool,
}

fn domain(d: TimeDomain) -> HostDomain {
    match d {
        TimeDomain::EventTime => HostDomain::EventTime,
        TimeDomain::ProcessingTime => HostDomain::ProcessingTime,
    }
}

/// Sliding event-time windows of an incremental aggregate, sliced into
/// panes, as Flink SQL's sliced window aggregates: a record is folded into
/// the one pane (of the greatest common divisor of size and slide) that
/// holds it, not into each of the size/slide windows that do, and a window
/// fires as the merge of its panes' accumulators.
///
/// Each (key, pane) has one timer, at the end of the next window to fire
/// that holds the pane; when it fires it moves on to the next window, until
/// the pane's last, after which the pane is cleared. So the timers of one
/// key due at one time name exactly the panes of the window that fires.
/// A namespace as wide as the window is an accumulator of the whole window,
/// from a snapshot taken before panes: it joins the merge and then goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panes {
    size: i64,
    slide: i64,
    offset: i64,
    pane: i64,
}

/// Most panes per window for which a window operator slices.
const MAX_PANES: i64 = 64;

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Panes {
    /// Panes for a window spec that can use them: sliding event-time
    /// windows of an incremental function that merges accumulators, with
    /// the default trigger and no allowed lateness, each window a few panes.
    pub fn of(spec: &WindowSpec) -> Option<Panes> {
        let WindowAssigner::Sliding {
            size_ms,
            slide_ms,
            offset_ms,
        } = spec.assigner
        else {
            return None;
        };
        if spec.domain != TimeDomain::EventTime
            || spec.function != WindowFunction::Aggregate
            || !spec.mergeable
            || spec.trigger != Trigger::Default
            || spec.allowed_lateness_ms > 0
            || size_ms <= slide_ms
            || slide_ms <= 0
        {
            return None;
        }
        let pane = gcd(size_ms, slide_ms);
        (size_ms / pane <= MAX_PANES).then_some(Panes {
            size: size_ms,
            slide: slide_ms,
            offset: offset_ms,
            pane,
        })
    }

    /// The smallest window start at or after `x`.
    fn start_at_or_after(&self, x: i128) -> i128 {
        x + (i128::from(self.offset) - x).rem_euclid(i128::from(self.slide))
    }

    /// The pane of `ts`, and the end of the first window holding it whose
    /// last millisecond is after `watermark`; None when every window that
    /// holds it has fired (or lies beyond the ends of time).
    fn place(&self, ts: i64, watermark: i64) -> Option<(Window, i64)> {
        let (p, l, s) = (
            i128::from(self.pane),
            i128::from(self.slide),
            i128::from(self.size),
        );
        let ts = i128::from(ts);
        let start = ts - (ts - i128::from(self.offset)).rem_euclid(p);
        let end = start + p;
        // Windows holding the pane start in [end - size, start].
        let last = start - (start - i128::from(self.offset)).rem_euclid(l);
        let first = self
            .start_at_or_after(end - s)
            .max(self.start_at_or_after(i128::from(watermark) + 2 - s));
        if first > last {
            return None;
        }
        let pane = Window {
            start: i64::try_from(start).ok()?,
            end: i64::try_from(end).ok()?,
        };
        Some((pane, i64::try_from(first + s).ok()?))
    }

    /// The end of the window after the one ending at `end` when it still
    /// holds `pane`.
    fn next_end(&self, pane: &Window, end: i64) -> Option<i64> {
        let next = end.checked_add(self.slide)?;
        (next.checked_sub(self.size)? <= pane.start).then_some(next)
    }
}

/// A window operator at the head of a task's chain.
pub(crate) struct WindowStep {
    pub op: u32,
    name: String,
    spec: WindowSpec,
    /// Accumulators (incremental window functions), state 0 of the op.
    acc: Option<StateId>,
    /// Elements (process-window functions).
    contents: Option<StateId>,
    /// Session sets (merging assigners).
    sessions: Option<StateId>,
    /// Record counts (count trigger).
    counts: Option<StateId>,
    /// Set when the windows are sliced into panes.
    panes: Option<Panes>,
    /// (key, state window) pairs the guest and the timers know about.
    pub slots: SlotIndex,
    /// With panes: the (key, pane) pairs that had slots before the guest
    /// last forgot its slots. Each has its timer, so that a pane fresh again
    /// in the guest need not register it again.
    timed: SlotIndex,
    capacity: usize,
    windows: Vec<Window>,
    due: Vec<Timer>,
}

/// What a window step emitted and how many records it dropped as late.
#[derive(Debug, Default)]
pub(crate) struct WindowOutput {
    pub out: GuestOutput,
    pub dropped: u64,
}

impl WindowOutput {
    fn add(&mut self, o: GuestOutput) {
        if o.records > 0 || !o.main.is_empty() {
            self.out.main.extend_from_slice(&o.main);
            self.out.records += o.records;
        }
        self.out.side.extend_from_slice(&o.side);
    }
}

impl WindowStep {
    pub fn new(
        op: u32,
        uid: &str,
        name: &str,
        spec: WindowSpec,
        host: &mut TaskHost,
        capacity: usize,
    ) -> Result<Self, Failure> {
        use weir_core::plan::StateKind;
        let (acc, contents) = match spec.function {
            WindowFunction::Aggregate => {
                let acc = host.internal_state(uid, "acc", StateKind::Value)?;
                host.states.insert((op, 0), acc);
                (Some(acc), None)
            }
            WindowFunction::Process => (
                None,
                Some(host.internal_state(uid, "weir.window.contents", StateKind::List)?),
            ),
        };
        let sessions = match spec.assigner {
            WindowAssigner::Session { .. } => {
                Some(host.internal_state(uid, "weir.window.sessions", StateKind::Value)?)
            }
            _ => None,
        };
        let counts = match spec.trigger {
            Trigger::Count(_) => {
                Some(host.internal_state(uid, "weir.window.count", StateKind::Value)?)
            }
            Trigger::Default => None,
        };
        host.add_timers(op, uid)?;
        Ok(WindowStep {
            op,
            name: name.to_owned(),
            spec,
            acc,
            contents,
            sessions,
            counts,
            panes: Panes::of(&spec),
            slots: SlotIndex::default(),
            timed: SlotIndex::default(),
            capacity: capacity.max(1),
            windows: Vec::new(),
            due: Vec::new(),
        })
    }

    fn event_time(&self) -> bool {
        self.spec.domain == TimeDomain::EventTime
    }

    fn lateness(&self) -> i64 {
        match self.spec.domain {
            TimeDomain::EventTime => self.spec.allowed_lateness_ms.max(0),
            TimeDomain::ProcessingTime => 0,
        }
    }

    fn cleanup_time(&self, w: &Window) -> i64 {
        if *w == GLOBAL_WINDOW {
            return i64::MAX;
        }
        w.max_timestamp().saturating_add(self.lateness())
    }

    fn window_late(&self, w: &Window, watermark: i64) -> bool {
        self.event_time() && self.cleanup_time(w) <= watermark
    }

    fn load_sessions(&self, host: &mut TaskHost, key: &[u8]) -> Result<Sessions, Failure> {
        let s = self.sessions.expect("merging windows keep session sets");
        Ok(host
            .backend()?
            .get(s, key, b"")
            .map_err(state_failure)?
            .map(|b| Sessions::decode(&b))
            .unwrap_or_default())
    }

    fn store_sessions(
        &self,
        host: &mut TaskHost,
        key: &[u8],
        set: &Sessions,
    ) -> Result<(), Failure> {
        let s = self.sessions.expect("merging windows keep session sets");
        let b = host.backend()?;
        if set.windows.is_empty() {
            b.delete(s, key, b"").map_err(state_failure)
        } else {
            b.put(s, key, b"", &set.encode()).map_err(state_failure)
        }
    }

    /// Registers the timers of window `w`: when it fires (unless it is
    /// due already and fires right away) and, with allowed lateness, when
    /// it is cleared.
    fn register_timers(
        &self,
        host: &mut TaskHost,
        key: &[u8],
        w: &Window,
        watermark: i64,
    ) -> Result<(), Failure> {
        if *w == GLOBAL_WINDOW {
            return Ok(());
        }
        let d = domain(self.spec.domain);
        let ns = w.to_namespace();
        if !self.event_time() || w.max_timestamp() > watermark {
            host.put_timer(self.op, d, key, &ns, w.max_timestamp())?;
        }
        if self.lateness() > 0 {
            host.put_timer(self.op, d, key, &ns, self.cleanup_time(w))?;
        }
        Ok(())
    }

    fn delete_timers(&self, host: &mut TaskHost, key: &[u8], w: &Window) -> Result<(), Failure> {
        let d = domain(self.spec.domain);
        let ns = w.to_namespace();
        host.remove_timer(self.op, d, key, &ns, w.max_timestamp())?;
        if self.lateness() > 0 {
            host.remove_timer(self.op, d, key, &ns, self.cleanup_time(w))?;
        }
        Ok(())
    }

    /// Folds the records collected so far into their accumulators.
    fn fold(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        agg: &mut Writer,
        slots: &mut Vec<u32>,
    ) -> Result<(), Failure> {
        if agg.is_empty() {
            return Ok(());
        }
        host.current_op = self.op;
        guest.aggregate(host, self.op, agg.as_bytes(), slots, false)?;
        agg.clear();
        slots.clear();
        Ok(())
    }

    /// Moves the state of `from` windows into `into` (session merges).
    fn merge_states(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        key: &[u8],
        into: &Window,
        from: &[Window],
    ) -> Result<(), Failure> {
        let into_ns = into.to_namespace();
        if let Some(acc) = self.acc {
            let mut list = Writer::new();
            let mut slots = vec![self.slots.slot(key, &into_ns)];
            for w in from {
                let ns = w.to_namespace();
                list.push(&Record::value(&ns));
                slots.push(self.slots.slot(key, &ns));
            }
            let mut req = Writer::new();
            req.push(&Record {
                key: Some(key),
                namespace: Some(&into_ns),
                value: list.as_bytes(),
                ..Record::default()
            });
            host.current_op = self.op;
            guest.merge_windows(host, self.op, req.as_bytes(), &slots)?;
            for w in from {
                let ns = w.to_namespace();
                self.slots.release(key, &ns);
                host.backend()?
                    .delete(acc, key, &ns)
                    .map_err(state_failure)?;
            }
        }
        if let Some(c) = self.contents {
            let b = host.backend()?;
            for w in from {
                let ns = w.to_namespace();
                if let Some(elements) = b.get(c, key, &ns).map_err(state_failure)? {
                    for e in Reader::new(&elements) {
                        let e =
                            e.map_err(|e| Failure::internal(format!("window contents: {e}")))?;
                        b.append(c, key, &into_ns, e.value).map_err(state_failure)?;
                    }
                }
                b.delete(c, key, &ns).map_err(state_failure)?;
                self.slots.release(key, &ns);
            }
        }
        if let Some(c) = self.counts {
            let b = host.backend()?;
            let mut total = read_count(b.get(c, key, &into_ns).map_err(state_failure)?);
            for w in from {
                let ns = w.to_namespace();
                total += read_count(b.get(c, key, &ns).map_err(state_failure)?);
                b.delete(c, key, &ns).map_err(state_failure)?;
            }
            b.put(c, key, &into_ns, &total.to_le_bytes())
                .map_err(state_failure)?;
        }
        Ok(())
    }

    /// Assigns a batch of keyed records to windows and folds or stores them;
    /// windows that must fire at once (late-but-allowed records, count
    /// triggers) fire before this returns.
    pub fn process(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        batch: &[u8],
        watermark: i64,
        now_ms: i64,
    ) -> Result<WindowOutput, Failure> {
        let mut out = WindowOutput::default();
        let mut agg = Writer::new();
        let mut agg_slots: Vec<u32> = Vec::new();
        let mut late = Writer::new();
        let mut windows = std::mem::take(&mut self.windows);
        let event = self.event_time();
        for rec in Reader::new(batch) {
            let rec = rec.map_err(|e| Failure::internal(format!("malformed batch: {e}")))?;
            let key = rec.key.ok_or_else(|| {
                Failure::internal("a record without a key reached a window operator")
            })?;
            let ts = if event {
                rec.timestamp.ok_or_else(|| {
                    Failure::user(format!(
                        "{}: a record has no event timestamp, so it belongs to no event-time \
                         window. Assign timestamps and watermarks before the window \
                         (assign_timestamps_and_watermarks), or use processing-time windows",
                        self.name
                    ))
                })?
            } else {
                now_ms
            };
            if let Some(panes) = self.panes {
                match panes.place(ts, watermark) {
                    Some((pane, end)) => {
                        let ns = pane.to_namespace();
                        let slot = self.slots.slot(key, &ns);
                        if slot & FRESH != 0 && !self.timed.contains(key, &ns) {
                            // The pane's timer, unless it is known to have
                            // one (registering it again is harmless).
                            host.put_timer(self.op, HostDomain::EventTime, key, &ns, end - 1)?;
                        }
                        to_fold(&mut agg, &mut agg_slots, &rec, key, &ns, slot);
                    }
                    None => self.too_late(rec, &mut late, &mut out),
                }
                continue;
            }
            assign(&self.spec.assigner, ts, &mut windows);
            let mut accepted = false;
            let mut fire_now: Option<Fire> = None;
            for w in &windows {
                if self.window_late(w, watermark) {
                    continue;
                }
                accepted = true;
                // The window the element goes to, and where its state lives.
                let (window, state, changed) = if self.sessions.is_some() {
                    let mut set = self.load_sessions(host, key)?;
                    let m = set.add(*w);
                    self.store_sessions(host, key, &set)?;
                    for r in &m.replaced {
                        self.delete_timers(host, key, r)?;
                    }
                    if !m.merged_states.is_empty() {
                        // Fold what is pending first: it may belong to a
                        // state window that is about to move.
                        self.fold(host, guest, &mut agg, &mut agg_slots)?;
                        self.merge_states(host, guest, key, &m.state, &m.merged_states)?;
                    }
                    (m.window, m.state, !m.replaced.is_empty())
                } else {
                    (*w, *w, false)
                };
                let ns = state.to_namespace();
                let slot = self.slots.slot(key, &ns);
                let fresh = slot & FRESH != 0;
                match self.spec.function {
                    WindowFunction::Aggregate => {
                        to_fold(&mut agg, &mut agg_slots, &rec, key, &ns, slot);
                    }
                    WindowFunction::Process => {
                        let c = self.contents.expect("process windows keep contents");
                        host.backend()?
                            .append(c, key, &ns, rec.value)
                            .map_err(state_failure)?;
                    }
                }
                match self.spec.trigger {
                    Trigger::Count(n) => {
                        let c = self.counts.expect("count triggers keep counts");
                        let b = host.backend()?;
                        let count = read_count(b.get(c, key, &ns).map_err(state_failure)?) + 1;
                        if count >= n {
                            b.delete(c, key, &ns).map_err(state_failure)?;
                            fire_now = Some(Fire {
                                key: key.to_vec(),
                                window,
                                state,
                                purge: true,
                                emit: true,
                            });
                        } else {
                            b.put(c, key, &ns, &count.to_le_bytes())
                                .map_err(state_failure)?;
                        }
                    }
                    Trigger::Default => {
                        if fresh || changed {
                            self.register_timers(host, key, &window, watermark)?;
                        }
                        if event && window != GLOBAL_WINDOW && window.max_timestamp() <= watermark {
                            // A late record within the allowed lateness: the
                            // window fires again now.
                            fire_now = Some(Fire {
                                key: key.to_vec(),
                                window,
                                state,
                                purge: false,
                                emit: true,
                            });
                        }
                    }
                }
                // A window that fires because of this record fires with
                // exactly the records up to it.
                if let Some(f) = fire_now.take() {
                    self.fold(host, guest, &mut agg, &mut agg_slots)?;
                    let fired = self.fire(host, guest, vec![f])?;
                    out.add(fired);
                }
            }
            if !accepted && event && ts.saturating_add(self.lateness()) <= watermark {
                self.too_late(rec, &mut late, &mut out);
            }
        }
        self.windows = windows;
        self.fold(host, guest, &mut agg, &mut agg_slots)?;
        out.out.side.extend_from_slice(&late.into_bytes());
        self.bound_slots(host, guest)?;
        Ok(out)
    }

    /// A record too late for every window that holds it: to the side output
    /// for late records, or dropped and counted.
    fn too_late(&self, rec: Record<'_>, late: &mut Writer, out: &mut WindowOutput) {
        match self.spec.late_port {
            Some(port) => late.push(&Record {
                port,
                namespace: None,
                ..rec
            }),
            None => out.dropped += 1,
        }
    }

    /// Keeps the guest's slots within capacity.
    fn bound_slots(&mut self, host: &mut TaskHost, guest: &mut dyn Guest) -> Result<(), Failure> {
        if self.slots.len() > self.capacity {
            if self.acc.is_some() {
                host.current_op = self.op;
                guest.flush(host, self.op, true)?;
            }
            if self.panes.is_some() {
                self.timed = std::mem::take(&mut self.slots);
            }
            self.slots.clear();
        }
        Ok(())
    }

    /// Fires and clears windows.
    fn fire(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        mut fires: Vec<Fire>,
    ) -> Result<GuestOutput, Failure> {
        // One fire per window, in time order.
        fires.sort_by(|a, b| {
            (a.window.max_timestamp(), a.window.start, &a.key).cmp(&(
                b.window.max_timestamp(),
                b.window.start,
                &b.key,
            ))
        });
        fires.dedup_by(|later, first| {
            let same = later.key == first.key && later.window == first.window;
            if same {
                first.purge |= later.purge;
                first.emit |= later.emit;
            }
            same
        });
        let mut out = WindowOutput::default();
        match self.spec.function {
            WindowFunction::Aggregate => {
                // Cleanup-only purges go through the guest too, so that it
                // drops its slots; their output is discarded.
                for (purge, emit) in [(false, true), (true, true), (true, false)] {
                    let these: Vec<&Fire> = fires
                        .iter()
                        .filter(|f| f.purge == purge && f.emit == emit)
                        .collect();
                    // Many windows at once (the final watermark fires them
                    // all): a bounded number per guest call.
                    for chunk in these.chunks(FIRES_PER_CALL) {
                        let mut req = Writer::new();
                        let mut slots = Vec::with_capacity(chunk.len());
                        for f in chunk {
                            let ns = f.state.to_namespace();
                            let actual = f.window.to_namespace();
                            req.push(&Record {
                                key: Some(&f.key),
                                namespace: Some(&ns),
                                timestamp: Some(f.window.max_timestamp()),
                                value: if f.window == f.state { b"" } else { &actual },
                                ..Record::default()
                            });
                            slots.push(self.slots.slot(&f.key, &ns));
                        }
                        host.current_op = self.op;
                        let o = guest.fire(host, self.op, req.as_bytes(), &slots, purge)?;
                        if emit {
                            out.add(o);
                        }
                    }
                }
            }
            WindowFunction::Process => {
                let c = self.contents.expect("process windows keep contents");
                let mut req = Writer::new();
                for f in fires.iter().filter(|f| f.emit) {
                    let ns = f.state.to_namespace();
                    let Some(elements) =
                        host.backend()?.get(c, &f.key, &ns).map_err(state_failure)?
                    else {
                        continue;
                    };
                    req.push(&Record {
                        key: Some(&f.key),
                        namespace: Some(&f.window.to_namespace()),
                        timestamp: Some(f.window.max_timestamp()),
                        value: &elements,
                        ..Record::default()
                    });
                }
                if !req.is_empty() {
                    host.current_op = self.op;
                    out.add(guest.process_window(host, self.op, req.as_bytes())?);
                }
            }
        }
        for f in fires.iter().filter(|f| f.purge) {
            self.clear(host, f)?;
        }
        Ok(out.out)
    }

    /// Drops everything a window holds (its accumulator the guest already
    /// dropped when it fired with `purge`).
    fn clear(&mut self, host: &mut TaskHost, f: &Fire) -> Result<(), Failure> {
        let ns = f.state.to_namespace();
        self.slots.release(&f.key, &ns);
        let b = host.backend()?;
        for s in [self.acc, self.contents, self.counts].into_iter().flatten() {
            b.delete(s, &f.key, &ns).map_err(state_failure)?;
        }
        if self.sessions.is_some() {
            let mut set = self.load_sessions(host, &f.key)?;
            set.remove(&f.window);
            self.store_sessions(host, &f.key, &set)?;
        }
        Ok(())
    }

    /// Fires the next windows whose timers are due at `until` in `d`, a
    /// bounded number at a time; true when more may be due (call again).
    pub fn on_time(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        d: TimeDomain,
        until: i64,
    ) -> Result<(GuestOutput, bool), Failure> {
        if d != self.spec.domain {
            return Ok((GuestOutput::default(), false));
        }
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        let more = host.take_due(self.op, domain(d), until, FIRES_PER_CALL, &mut due)?;
        let out = match self.panes {
            Some(panes) => self.fire_panes(host, guest, &panes, &due, until),
            None => self.fire_due(host, guest, &due),
        };
        self.due = due;
        let out = out?;
        self.bound_slots(host, guest)?;
        Ok((out, more))
    }

    /// Fires the windows of due timers (one timer per window).
    fn fire_due(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        due: &[Timer],
    ) -> Result<GuestOutput, Failure> {
        let mut fires = Vec::new();
        let lateness = self.lateness();
        for t in due {
            let Some(window) = Window::from_namespace(&t.namespace) else {
                return Err(Failure::internal("a window timer without a window"));
            };
            let state = if self.sessions.is_some() {
                match self.load_sessions(host, &t.key)?.state_of(&window) {
                    Some(s) => s,
                    None => continue, // merged away
                }
            } else {
                window
            };
            let at_end = t.timestamp == window.max_timestamp();
            let cleanup = t.timestamp == self.cleanup_time(&window);
            if at_end || cleanup {
                fires.push(Fire {
                    key: t.key.clone(),
                    window,
                    state,
                    purge: cleanup || lateness == 0,
                    emit: at_end,
                });
            }
        }
        if fires.is_empty() {
            return Ok(GuestOutput::default());
        }
        self.fire(host, guest, fires)
    }

    /// Fires the windows of due pane timers: the timers of one key at one
    /// time name the panes of the window ending then. Panes that later
    /// windows hold move their timers on; the others are cleared. `due` is
    /// in time order, with the timers of one key at one time together (and
    /// never split between two rounds).
    fn fire_panes(
        &mut self,
        host: &mut TaskHost,
        guest: &mut dyn Guest,
        panes: &Panes,
        due: &[Timer],
        until: i64,
    ) -> Result<GuestOutput, Failure> {
        // The windows to fire, by time and key, with their panes. A pane
        // whose next window is due too, where the scan for due timers has
        // passed already (so that the window's other panes are here, if
        // any), moves on here rather than through a timer.
        let mut agenda: BTreeMap<(i64, &[u8]), Vec<[u8; 16]>> = BTreeMap::new();
        for t in due {
            let ns: [u8; 16] = t
                .namespace
                .as_slice()
                .try_into()
                .map_err(|_| Failure::internal("a window timer without a window"))?;
            agenda
                .entry((t.timestamp, t.key.as_slice()))
                .or_default()
                .push(ns);
        }
        // Requests whose first accumulator goes after the window fires
        // (purge) and whose first one stays; then accumulators that go and
        // were not first.
        let mut going = (Writer::new(), Vec::new());
        let mut staying = (Writer::new(), Vec::new());
        let mut cleanup = (Writer::new(), Vec::new());
        let mut cleared: Vec<(&[u8], [u8; 16])> = Vec::new();
        let mut value = Vec::with_capacity(16 * MAX_PANES as usize);
        let mut parts: Vec<([u8; 16], bool)> = Vec::new();
        while let Some(((at, key), mut spaces)) = agenda.pop_first() {
            let end = at.saturating_add(1);
            let window = Window {
                start: end.saturating_sub(panes.size),
                end,
            };
            parts.clear();
            // In time order, each once (a pane may have had two timers: a
            // restore at another parallelism judges lateness by the lowest
            // watermark of the subtasks before it).
            spaces.sort_unstable();
            spaces.dedup();
            let mut here = None;
            for ns in &spaces {
                let Some(w) = Window::from_namespace(ns) else {
                    return Err(Failure::internal("a window timer without a window"));
                };
                let next = if w.end - w.start == panes.pane {
                    panes.next_end(&w, end)
                } else {
                    None
                };
                if let Some(next) = next {
                    let moves_here = match here {
                        Some(h) => h,
                        None => {
                            let h = next - 1 <= until
                                && host.scan_passed(
                                    self.op,
                                    HostDomain::EventTime,
                                    key,
                                    next - 1,
                                )?;
                            *here.insert(h)
                        }
                    };
                    if moves_here {
                        agenda.entry((next - 1, key)).or_default().push(*ns);
                    } else {
                        host.put_timer(self.op, HostDomain::EventTime, key, ns, next - 1)?;
                    }
                }
                parts.push((*ns, next.is_none()));
            }
            // The first accumulator of the request is one that goes, if any.
            if let Some(i) = parts.iter().position(|(_, goes)| *goes) {
                parts.swap(0, i);
            }
            value.clear();
            value.extend_from_slice(&window.to_namespace());
            let (w, slots) = if parts[0].1 { &mut going } else { &mut staying };
            slots.push(self.slots.slot(key, &parts[0].0));
            for (ns, _) in &parts[1..] {
                value.extend_from_slice(ns);
                slots.push(self.slots.slot(key, ns));
            }
            w.push(&Record {
                key: Some(key),
                namespace: Some(&parts[0].0),
                timestamp: Some(window.max_timestamp()),
                value: &value,
                ..Record::default()
            });
            for (i, (ns, goes)) in parts.iter().enumerate() {
                if *goes {
                    if i > 0 {
                        cleanup.0.push(&Record {
                            key: Some(key),
                            namespace: Some(ns),
                            ..Record::default()
                        });
                        cleanup.1.push(self.slots.slot(key, ns));
                    }
                    cleared.push((key, *ns));
                }
            }
        }
        let mut out = WindowOutput::default();
        host.current_op = self.op;
        for ((w, slots), purge, emit) in [
            (&staying, false, true),
            (&going, true, true),
            (&cleanup, true, false),
        ] {
            if w.is_empty() {
                continue;
            }
            let o = guest.fire(host, self.op, w.as_bytes(), slots, purge)?;
            if emit {
                out.add(o);
            }
        }
        let acc = self.acc.expect("panes keep accumulators");
        for (key, ns) in cleared {
            self.slots.release(key, &ns);
            self.timed.release(key, &ns);
            host.backend()?
                .delete(acc, key, &ns)
                .map_err(state_failure)?;
        }
        Ok(out.out)
    }
}

/// Adds a record to the batch folded into the accumulator of (key, ns).
fn to_fold(
    agg: &mut Writer,
    slots: &mut Vec<u32>,
    rec: &Record<'_>,
    key: &[u8],
    ns: &[u8],
    slot: u32,
) {
    agg.push(&Record {
        key: Some(key),
        namespace: Some(ns),
        timestamp: rec.timestamp,
        value: rec.value,
        ..Record::default()
    });
    slots.push(slot);
}

/// Windows fired in one guest call.
const FIRES_PER_CALL: usize = 4096;

fn read_count(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn tumbling_sliding_session_and_global_assignment() {
        let mut out = Vec::new();
        let tumbling = WindowAssigner::Tumbling {
            size_ms: 15_000,
            offset_ms: 0,
        };
        assign(&tumbling, 15_001, &mut out);
        assert_eq!(out, vec![w(15_000, 30_000)]);
        assign(&tumbling, -1, &mut out);
        assert_eq!(out, vec![w(-15_000, 0)], "negative timestamps round down");
        let offset = WindowAssigner::Tumbling {
            size_ms: 10,
            offset_ms: 3,
        };
        assign(&offset, 12, &mut out);
        assert_eq!(out, vec![w(3, 13)]);
        let sliding = WindowAssigner::Sliding {
            size_ms: 10,
            slide_ms: 5,
            offset_ms: 0,
        };
        assign(&sliding, 12, &mut out);
        assert_eq!(out, vec![w(10, 20), w(5, 15)]);
        assign(&sliding, 10, &mut out);
        assert_eq!(out, vec![w(10, 20), w(5, 15)]);
        assign(&WindowAssigner::Session { gap_ms: 100 }, 7, &mut out);
        assert_eq!(out, vec![w(7, 107)]);
        assign(&WindowAssigner::Global, 7, &mut out);
        assert_eq!(out, vec![GLOBAL_WINDOW]);
    }

    #[test]
    fn sliding_windows_slice_into_panes_that_move_from_window_to_window() {
        let spec = |assigner, lateness| WindowSpec {
            assigner,
            domain: TimeDomain::EventTime,
            trigger: Trigger::Default,
            allowed_lateness_ms: lateness,
            late_port: None,
            function: WindowFunction::Aggregate,
            mergeable: true,
        };
        let sliding = |size_ms, slide_ms, offset_ms| WindowAssigner::Sliding {
            size_ms,
            slide_ms,
            offset_ms,
        };
        // Size 10, slide 4: panes of 2; windows start at 0, 4, 8, ...
        let p = Panes::of(&spec(sliding(10, 4, 0), 0)).unwrap();
        assert_eq!(p.pane, 2);
        // Pane [4, 6) is held by windows [-4, 6) and [0, 10) and [4, 14).
        let (pane, end) = p.place(5, i64::MIN).unwrap();
        assert_eq!((pane, end), (w(4, 6), 6));
        assert_eq!(p.next_end(&pane, 6), Some(10));
        assert_eq!(p.next_end(&pane, 10), Some(14));
        assert_eq!(p.next_end(&pane, 14), None);
        // Windows ending at 6 and 10 fired: the next one holding the pane.
        assert_eq!(p.place(5, 9).unwrap().1, 14);
        assert_eq!(p.place(5, 12).unwrap().1, 14);
        assert_eq!(p.place(5, 13), None, "every window holding it fired");
        // Each window is exactly its panes, and each pane is in the windows
        // the assigner gives its timestamps, from first to last.
        for (size, slide, offset) in [(10, 4, 0), (10, 2, 1), (9, 6, -2), (6000, 2000, 0)] {
            let p = Panes::of(&spec(sliding(size, slide, offset), 0)).unwrap();
            let mut windows = Vec::new();
            for ts in -50..50 {
                assign(&sliding(size, slide, offset), ts, &mut windows);
                let (pane, mut end) = p.place(ts, i64::MIN).unwrap();
                assert!(pane.start <= ts && ts < pane.end);
                let mut ends = vec![end];
                while let Some(next) = p.next_end(&pane, end) {
                    ends.push(next);
                    end = next;
                }
                let mut expected: Vec<i64> = windows.iter().map(|w| w.end).collect();
                expected.sort();
                assert_eq!(ends, expected, "ts {ts} of {size}/{slide}/{offset}");
            }
        }
        // Extremes neither overflow nor place records beyond time.
        assert_eq!(p.place(i64::MAX, i64::MIN), None);
        let _ = p.place(i64::MIN, i64::MIN);
        // What does not slice.
        assert!(Panes::of(&spec(sliding(10, 4, 0), 5)).is_none(), "lateness");
        let unmergeable = WindowSpec {
            mergeable: false,
            ..spec(sliding(10, 4, 0), 0)
        };
        assert!(Panes::of(&unmergeable).is_none(), "no merge");
        assert!(Panes::of(&spec(sliding(4, 4, 0), 0)).is_none(), "tumbling");
        assert!(
            Panes::of(&spec(sliding(1000, 7, 0), 0)).is_none(),
            "too many panes"
        );
        assert!(Panes::of(&spec(WindowAssigner::Session { gap_ms: 5 }, 0)).is_none());
    }

    #[test]
    fn sessions_grow_in_place_and_merge_when_bridged() {
        let mut s = Sessions::default();
        let a = s.add(w(0, 10));
        assert_eq!((a.window, a.state), (w(0, 10), w(0, 10)));
        // Growing keeps the state where it is.
        let g = s.add(w(5, 15));
        assert_eq!((g.window, g.state), (w(0, 15), w(0, 10)));
        assert_eq!(g.replaced, vec![w(0, 10)]);
        assert!(g.merged_states.is_empty());
        // Inside an existing window: nothing changes.
        let i = s.add(w(1, 2));
        assert_eq!((i.window, i.state), (w(0, 15), w(0, 10)));
        assert!(i.replaced.is_empty());
        let b = s.add(w(40, 50));
        assert_eq!(b.state, w(40, 50));
        assert_eq!(s.windows.len(), 2);
        // A record between them bridges both sessions.
        let m = s.add(w(14, 41));
        assert_eq!(m.window, w(0, 50));
        assert_eq!(m.state, w(0, 10));
        assert_eq!(m.merged_states, vec![w(40, 50)]);
        assert_eq!(m.replaced, vec![w(0, 15), w(40, 50)]);
        assert_eq!(s.windows, vec![(w(0, 50), w(0, 10))]);
        assert_eq!(Sessions::decode(&s.encode()), s);
        assert_eq!(s.state_of(&w(0, 50)), Some(w(0, 10)));
        s.remove(&w(0, 50));
        assert!(s.windows.is_empty());
    }
}
