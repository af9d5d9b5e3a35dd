//! Window namespaces: the encoding of a window as a state namespace.

/// A time window `[start, end)` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
}

/// The single window of a global window assigner.
pub const GLOBAL_WINDOW: Window = Window {
    start: i64::MIN,
    end: i64::MAX,
};

impl Window {
    /// The last timestamp that belongs to the window (`end - 1`), when its
    /// event-time timer fires.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// The 16-byte namespace of this window; byte order is time order.
    pub fn to_namespace(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&flip(self.start).to_be_bytes());
        out[8..].copy_from_slice(&flip(self.end).to_be_bytes());
        out
    }

    /// Reads a namespace written by [`Window::to_namespace`].
    pub fn from_namespace(ns: &[u8]) -> Option<Window> {
        let ns: &[u8; 16] = ns.try_into().ok()?;
        let start = unflip(u64::from_be_bytes(ns[..8].try_into().ok()?));
        let end = unflip(u64::from_be_bytes(ns[8..].try_into().ok()?));
        Some(Window { start, end })
    }
}

fn flip(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

fn unflip(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_round_trip_and_order() {
        let ws = [
            GLOBAL_WINDOW,
            Window {
                start: -15_000,
                end: 0,
            },
            Window {
                start: 0,
                end: 15_000,
            },
            Window {
                start: 15_000,
                end: 30_000,
            },
        ];
        for w in ws {
            assert_eq!(Window::from_namespace(&w.to_namespace()), Some(w));
        }
        let a = Window {
            start: -15_000,
            end: 0,
        }
        .to_namespace();
        let b = Window {
            start: 0,
            end: 15_000,
        }
        .to_namespace();
        assert!(a < b);
        assert_eq!(Window::from_namespace(b"short"), None);
    }
}
