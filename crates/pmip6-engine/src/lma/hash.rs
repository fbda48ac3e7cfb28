//! The hash maps of the LMA's indexes: foldhash with a fixed seed.
//!
//! The standard `RandomState` seeds SipHash randomly, which would make any iteration over a map
//! differ from run to run; the engine must be deterministic. The keys (prefixes, MN-IDs,
//! link-layer identifiers) come from MAGs the LMA authorises, so resistance to chosen-key
//! flooding matters less than speed.

use std::collections::{HashMap, HashSet};

/// The hasher state: fixed, so iteration order depends on the inputs only.
pub type FixedState = foldhash::fast::FixedState;
/// A `HashMap` with a fixed-seed foldhash.
pub type Map<K, V> = HashMap<K, V, FixedState>;
/// A `HashSet` with a fixed-seed foldhash.
pub type Set<K> = HashSet<K, FixedState>;
