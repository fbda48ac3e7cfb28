//! Strategies generating random representations that round-trip exactly (emit, then parse with
//! the default [`ParseConfig`], gives an equal value). For property tests and fuzzing; built
//! with the `proptest` feature.

use core::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use crate::codepoint::*;
use crate::message::*;
use crate::option::{Authentication, MnIdentifier, MobilityOption, ParseConfig, Prefix, option_type};
use crate::timestamp::Timestamp;

/// Option types with a meaning of their own, which an `Unknown` option must not use.
const INTERPRETED_OPTION_TYPES: &[u8] = &[
    option_type::PAD1,
    option_type::PADN,
    option_type::MN_IDENTIFIER,
    option_type::AUTHENTICATION,
    option_type::MESG_ID,
    option_type::EXPERIMENTAL,
    option_type::HOME_NETWORK_PREFIX,
    option_type::HANDOFF_INDICATOR,
    option_type::ACCESS_TECHNOLOGY_TYPE,
    option_type::MN_LINK_LAYER_IDENTIFIER,
    option_type::LINK_LOCAL_ADDRESS,
    option_type::TIMESTAMP,
    option_type::RESTART_COUNTER,
    option_type::IPV4_CARE_OF_ADDRESS,
    option_type::IPV4_HOME_ADDRESS_REQUEST,
    option_type::IPV4_HOME_ADDRESS_REPLY,
    option_type::IPV4_DEFAULT_ROUTER,
    option_type::IPV4_DHCP_SUPPORT_MODE,
    option_type::FLOW_SUMMARY,
    option_type::FLOW_IDENTIFICATION,
];

/// MH types [`Message`] interprets, which an [`UnknownMessage`] must not use.
const INTERPRETED_MH_TYPES: &[u8] = &[5, 6, 7, 13, 16, 19, 20];

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// A prefix with a length of 0 to 128.
pub fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![Just(Prefix::ALL_ZERO), (ipv6(), 0u8..=128).prop_map(|(a, l)| Prefix::new(a, l))]
}

/// Any mobility option this crate represents, MuHo as the default type.
pub fn mobility_option() -> impl Strategy<Value = MobilityOption> {
    let muho_type = ParseConfig::default().muho_option_type();
    prop_oneof![
        (any::<u8>(), vec(any::<u8>(), 1..40)).prop_map(|(subtype, identifier)| {
            MobilityOption::MnIdentifier(MnIdentifier { subtype: MnIdSubtype::from(subtype), identifier })
        }),
        prefix().prop_map(MobilityOption::HomeNetworkPrefix),
        prefix().prop_map(move |prefix| MobilityOption::MuHo { option_type: muho_type, prefix }),
        any::<u8>().prop_map(|v| MobilityOption::HandoffIndicator(HandoffIndicator::from(v))),
        any::<u8>().prop_map(|v| MobilityOption::AccessTechnologyType(AccessTechnologyType::from(v))),
        vec(any::<u8>(), 1..20).prop_map(MobilityOption::MnLinkLayerIdentifier),
        ipv6().prop_map(MobilityOption::LinkLocalAddress),
        any::<u64>().prop_map(|v| MobilityOption::Timestamp(Timestamp(v))),
        any::<u32>().prop_map(MobilityOption::RestartCounter),
        (0u8..=32, ipv4())
            .prop_map(|(prefix_len, address)| MobilityOption::Ipv4HomeAddressRequest { prefix_len, address }),
        (any::<u8>(), 0u8..=32, ipv4()).prop_map(|(status, prefix_len, address)| {
            MobilityOption::Ipv4HomeAddressReply { status: Ipv4HoaReplyStatus::from(status), prefix_len, address }
        }),
        ipv4().prop_map(MobilityOption::Ipv4DefaultRouter),
        any::<bool>().prop_map(|server| MobilityOption::Ipv4DhcpSupportMode { server }),
        ipv4().prop_map(MobilityOption::Ipv4CareOfAddress),
        (any::<u8>(), any::<u32>(), vec(any::<u8>(), 0..24))
            .prop_map(|(subtype, spi, data)| MobilityOption::Authentication(Authentication { subtype, spi, data })),
        any::<u64>().prop_map(MobilityOption::MesgId),
        crate::flow::strategy::flow_identification().prop_map(MobilityOption::FlowIdentification),
        crate::flow::strategy::flow_summary().prop_map(MobilityOption::FlowSummary),
        // Eighteen octets under the MuHo type would read back as a MuHo.
        vec(any::<u8>(), 0..30).prop_filter("MuHo-sized", |d| d.len() != 18).prop_map(MobilityOption::Experimental),
        (any::<u8>(), vec(any::<u8>(), 0..40))
            .prop_filter("interpreted type", |(t, _)| !INTERPRETED_OPTION_TYPES.contains(t))
            .prop_map(|(option_type, data)| MobilityOption::Unknown { option_type, data }),
    ]
}

fn options() -> impl Strategy<Value = Vec<MobilityOption>> {
    vec(mobility_option(), 0..8)
}

/// Any message this crate represents.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u16>(), options()).prop_map(|(sequence, flags, lifetime, options)| {
            Message::BindingUpdate(BindingUpdate {
                sequence,
                flags: BuFlags::from_bits_retain(flags),
                lifetime,
                options,
            })
        }),
        (any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>(), options()).prop_map(
            |(status, flags, sequence, lifetime, options)| {
                Message::BindingAck(BindingAck {
                    status: BaStatus::from(status),
                    flags: BaFlags::from_bits_retain(flags),
                    sequence,
                    lifetime,
                    options,
                })
            }
        ),
        (any::<u8>(), ipv6(), options()).prop_map(|(status, home_address, options)| {
            Message::BindingError(BindingError { status: BindingErrorStatus::from(status), home_address, options })
        }),
        (any::<u16>(), any::<u32>(), options()).prop_map(|(flags, sequence, options)| {
            Message::Heartbeat(Heartbeat { flags: HeartbeatFlags::from_bits_retain(flags), sequence, options })
        }),
        (any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>(), options()).prop_map(
            |(br_type, code, sequence, flags, options)| {
                let kind = match br_type {
                    1 => RevocationKind::Indication(RevocationTrigger::from(code)),
                    2 => RevocationKind::Acknowledgement(RevocationStatus::from(code)),
                    br_type => RevocationKind::Unknown { br_type, code },
                };
                Message::BindingRevocation(BindingRevocation {
                    kind,
                    sequence,
                    flags: RevocationFlags::from_bits_retain(flags),
                    options,
                })
            }
        ),
        (any::<u16>(), any::<u16>(), any::<u16>(), options()).prop_map(|(sequence, reason, flags, options)| {
            Message::UpdateNotification(UpdateNotification {
                sequence,
                reason: NotificationReason::from(reason),
                flags: UpnFlags::from_bits_retain(flags),
                options,
            })
        }),
        (any::<u16>(), any::<u8>(), options()).prop_map(|(sequence, status, options)| {
            Message::UpdateNotificationAck(UpdateNotificationAck { sequence, status: UpaStatus::from(status), options })
        }),
        (any::<u8>(), 0usize..8, any::<u64>())
            .prop_filter("interpreted type", |(t, _, _)| !INTERPRETED_MH_TYPES.contains(t))
            .prop_map(|(mh_type, words, seed)| {
                // Message Data of a parsed message is 2 + 8k octets.
                let data = (0..2 + 8 * words).map(|i| (seed >> (i % 8 * 8)) as u8 ^ i as u8).collect();
                Message::Unknown(UnknownMessage { mh_type, data })
            }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::option::OptionIter;

    fn config() -> ParseConfig {
        ParseConfig::default()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// emit → parse gives the same message; the octets obey the framing rules.
        #[test]
        fn messages_round_trip(msg in message()) {
            let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
            let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
            let bytes = msg.to_vec(&src, &dst).unwrap();
            // RFC 6275 §6.1.1: a multiple of 8 octets, Header Len excluding the first 8.
            prop_assert_eq!(bytes.len() % 8, 0);
            prop_assert_eq!((usize::from(bytes[1]) + 1) * 8, bytes.len());
            let parsed = Message::parse_checked(&bytes, &src, &dst, &config()).unwrap();
            prop_assert_eq!(&parsed, &msg);
            // Every option sits where its alignment rule puts it.
            let start = match msg { Message::BindingError(_) => 24, Message::Unknown(_) => return Ok(()), _ => 12 };
            for (raw, option) in OptionIter::new(&bytes, start).zip(msg.options()) {
                let raw = raw.unwrap();
                let (x, y) = option.alignment();
                prop_assert_eq!(raw.offset % x, y, "{} at {}", option, raw.offset);
            }
        }

        /// Any input parses or fails with an error; what parses re-emits to something that
        /// parses to the same value.
        #[test]
        fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
            if let Ok(msg) = Message::parse(&bytes, &config()) {
                let mut out = vec![0; msg.buffer_len()];
                msg.emit(&mut out).unwrap();
                prop_assert_eq!(Message::parse(&out, &config()).unwrap(), msg);
            }
        }

        /// Valid messages with one octet changed, or cut short, never panic the parser.
        #[test]
        fn damaged_messages_never_panic(msg in message(), at in any::<prop::sample::Index>(), value in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut bytes = vec![0; msg.buffer_len()];
            msg.emit(&mut bytes).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = value;
            let _ = Message::parse(&bytes, &config());
            let _ = Message::parse(&bytes[..cut.index(bytes.len())], &config());
        }
    }
}
