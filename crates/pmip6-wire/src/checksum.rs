//! The Internet checksum (RFC 1071) over the IPv6 pseudo-header (RFC 8200 §8.1), as used by the
//! Mobility Header (RFC 6275 §6.1.1, next header 135) and ICMPv6 (RFC 4443 §2.3, next header 58).

use core::net::Ipv6Addr;

/// IPv6 Next Header value of the Mobility Header.
pub const IPPROTO_MH: u8 = 135;
/// IPv6 Next Header value of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Adds `data` to a running one's-complement sum (not yet folded).
///
/// Sums 32-bit big-endian words into 64 bits: folding that sum gives the same result as adding
/// 16-bit words (RFC 1071 §2(B), byte-order and word-size independence), with half the steps.
fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data` (with its checksum field already zero, or holding the value to
/// verify) behind the IPv6 pseudo-header for `next_header`.
///
/// Computing over data whose checksum field is zero gives the value to write; computing over
/// data that carries a correct checksum gives 0.
pub fn pseudo_header_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, data: &[u8]) -> u16 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc += (data.len() as u64) & 0xffff_ffff;
    acc += u64::from(next_header);
    acc = sum(acc, data);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 §3 worked example: 0001 f203 f4f5 f6f7 sums to 220d (folded 0xddf2 complemented).
    #[test]
    fn rfc1071_example_sum() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
    }

    /// The word-wise sum equals the 16-bit reference sum for every length and alignment.
    #[test]
    fn wide_sum_matches_16_bit_sum() {
        let data: Vec<u8> = (0..67u32).map(|i| (i * 37 + 11) as u8).collect();
        for start in 0..4 {
            for end in start..data.len() {
                let slice = &data[start..end];
                let mut reference = 0u64;
                for (i, b) in slice.iter().enumerate() {
                    reference += if i % 2 == 0 { u64::from(*b) << 8 } else { u64::from(*b) };
                }
                assert_eq!(fold(sum(0, slice)), fold(reference), "{start}..{end}");
            }
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12])), 0x1200);
    }
}
