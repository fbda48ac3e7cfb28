//! A deadline queue keyed by what the timer is for: set, cancel, and take what expired, each in
//! O(log n). Setting a key that is already armed moves its deadline.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use crate::common::Now;

/// Timers keyed by `K`.
#[derive(Debug, Clone)]
pub struct TimerQueue<K> {
    by_deadline: BTreeSet<(Now, u64)>,
    entries: HashMap<u64, K>,
    by_key: HashMap<K, (Now, u64)>,
    next_id: u64,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        Self { by_deadline: BTreeSet::new(), entries: HashMap::new(), by_key: HashMap::new(), next_id: 0 }
    }
}

impl<K: Clone + Eq + Hash> TimerQueue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `key` to fire at `deadline`, replacing its previous deadline.
    pub fn set(&mut self, key: K, deadline: Now) {
        self.cancel(&key);
        let id = self.next_id;
        self.next_id += 1;
        self.by_deadline.insert((deadline, id));
        self.entries.insert(id, key.clone());
        self.by_key.insert(key, (deadline, id));
    }

    /// Disarms `key`; returns whether it was armed.
    pub fn cancel(&mut self, key: &K) -> bool {
        match self.by_key.remove(key) {
            Some((deadline, id)) => {
                self.by_deadline.remove(&(deadline, id));
                self.entries.remove(&id);
                true
            }
            None => false,
        }
    }

    /// When `key` fires, if armed.
    pub fn deadline(&self, key: &K) -> Option<Now> {
        self.by_key.get(key).map(|(d, _)| *d)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Now> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    /// Removes and returns one key whose deadline is at or before `now`, earliest first.
    pub fn pop_expired(&mut self, now: Now) -> Option<K> {
        let &(deadline, id) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.remove(&(deadline, id));
        let key = self.entries.remove(&id)?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn fires_in_deadline_order_and_honours_cancel_and_rearm() {
        let s = Duration::from_secs;
        let mut q = TimerQueue::new();
        q.set("a", s(3));
        q.set("b", s(1));
        q.set("c", s(2));
        q.set("a", s(0)); // re-armed earlier
        assert!(q.cancel(&"c"));
        assert!(!q.cancel(&"c"));
        assert_eq!(q.next_deadline(), Some(s(0)));
        assert_eq!(q.pop_expired(s(5)), Some("a"));
        assert_eq!(q.pop_expired(s(0)), None);
        assert_eq!(q.pop_expired(s(1)), Some("b"));
        assert!(q.is_empty());
    }
}
