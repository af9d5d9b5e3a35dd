//! The write-back cache in front of RocksDB.
//!
//! Entries are keyed by `state id (u32 BE) | raw RocksDB key`, so lookups
//! borrow the caller's scratch buffer and allocate only on insertion.

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;

/// A cached entry: a value, or a deletion not yet written; or, with
/// `appended`, list elements to append to whatever RocksDB holds.
#[derive(Debug)]
pub(crate) struct Entry {
    pub value: Option<Vec<u8>>,
    pub dirty: bool,
    pub appended: bool,
}

#[derive(Debug)]
pub(crate) struct Cache {
    map: HashMap<Box<[u8]>, Entry>,
    capacity: usize,
}

/// Splits a cache key into state id and raw key.
pub(crate) fn split(ck: &[u8]) -> (u32, &[u8]) {
    let state = u32::from_be_bytes([ck[0], ck[1], ck[2], ck[3]]);
    (state, &ck[4..])
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache {
            map: HashMap::default(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, ck: &[u8]) -> Option<&Entry> {
        self.map.get(ck)
    }

    pub fn get_mut(&mut self, ck: &[u8]) -> Option<&mut Entry> {
        self.map.get_mut(ck)
    }

    pub fn put(&mut self, ck: &[u8], value: Option<Vec<u8>>, dirty: bool) {
        match self.map.entry_ref(ck) {
            EntryRef::Occupied(mut o) => {
                let e = o.get_mut();
                e.value = value;
                e.dirty |= dirty;
                e.appended = false;
            }
            EntryRef::Vacant(v) => {
                v.insert(Entry {
                    value,
                    dirty,
                    appended: false,
                });
            }
        }
    }

    /// Records list elements appended to a key the cache does not hold.
    pub fn append(&mut self, ck: &[u8], framed: &[u8]) {
        self.map.insert(
            ck.into(),
            Entry {
                value: Some(framed.to_vec()),
                dirty: true,
                appended: true,
            },
        );
    }

    pub fn remove(&mut self, ck: &[u8]) {
        self.map.remove(ck);
    }

    pub fn is_full(&self) -> bool {
        self.map.len() >= self.capacity
    }

    /// Calls `f(state, raw key, value, appended)` for every dirty entry and
    /// marks it clean. Pending appends are forgotten once written: the
    /// cache does not know the whole list.
    pub fn for_each_dirty(&mut self, mut f: impl FnMut(u32, &[u8], Option<&[u8]>, bool)) {
        for (ck, e) in self.map.iter_mut().filter(|(_, e)| e.dirty) {
            let (state, raw) = split(ck);
            f(state, raw, e.value.as_deref(), e.appended);
            e.dirty = false;
        }
        self.map.retain(|_, e| !e.appended);
    }

    pub fn has_dirty(&self, state: u32) -> bool {
        self.map
            .iter()
            .any(|(ck, e)| e.dirty && split(ck).0 == state)
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}
