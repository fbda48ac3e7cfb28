//! The PMIPv6 Timestamp (RFC 5213 §8.8): 48 bits of seconds since 1970-01-01 00:00 UTC and 16
//! bits of binary fraction. Not the NTP format (that is RFC 4285's MESG-ID).

use core::fmt;
use core::time::Duration;

/// A PMIPv6 timestamp: `seconds << 16 | fraction`, fraction in units of 1/65536 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// Serialized as its decimal seconds (`"1700000000.500000"`), as the text form shows it.
#[cfg(feature = "serde")]
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Timestamp {
    /// The largest number of seconds the 48-bit field holds.
    pub const MAX_SECONDS: u64 = (1 << 48) - 1;

    /// From seconds since the epoch and a fraction in 1/65536 s. Seconds beyond 48 bits wrap.
    pub const fn new(seconds: u64, fraction: u16) -> Self {
        Self(((seconds & Self::MAX_SECONDS) << 16) | fraction as u64)
    }

    /// From the time elapsed since 1970-01-01 00:00 UTC (the caller reads its clock).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let fraction = (u64::from(since_epoch.subsec_nanos()) << 16) / 1_000_000_000;
        Self::new(since_epoch.as_secs(), fraction as u16)
    }

    /// Seconds since the epoch.
    pub const fn seconds(self) -> u64 {
        self.0 >> 16
    }

    /// Fraction of a second, in 1/65536 s.
    pub const fn fraction(self) -> u16 {
        self.0 as u16
    }

    /// Time since the epoch (the fraction rounded down to whole nanoseconds).
    pub fn to_unix(self) -> Duration {
        let nanos = (u64::from(self.fraction()) * 1_000_000_000) >> 16;
        Duration::new(self.seconds(), nanos as u32)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = (u64::from(self.fraction()) * 1_000_000) >> 16;
        write!(f, "{}.{:06}", self.seconds(), micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // protocol-facts §2.5: 1700000000.5 s is 00 00 65 53 f1 00 80 00.
    #[test]
    fn half_second_example() {
        let t = Timestamp::from_unix(Duration::from_millis(1_700_000_000_500));
        assert_eq!(t.0.to_be_bytes(), [0x00, 0x00, 0x65, 0x53, 0xf1, 0x00, 0x80, 0x00]);
        assert_eq!(t.seconds(), 1_700_000_000);
        assert_eq!(t.to_unix(), Duration::from_millis(1_700_000_000_500));
        assert_eq!(t.to_string(), "1700000000.500000");
    }

    #[test]
    fn ordering_follows_time() {
        let a = Timestamp::from_unix(Duration::from_millis(1_000));
        let b = Timestamp::from_unix(Duration::from_millis(1_001));
        assert!(a < b);
    }
}
