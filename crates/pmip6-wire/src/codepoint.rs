//! Code points: message types, status codes, indicators. Every enum keeps an `Unknown` variant
//! so that values this crate has no name for survive a parse/emit round trip.

/// Declares a code-point enum over an integer type with an `Unknown` catch-all, and the
/// conversions both ways.
macro_rules! enum_with_unknown {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this crate has no name for, kept as received.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self {
                    $name::Unknown(v) => write!(f, "Unknown({v})"),
                    other => write!(f, "{:?}({})", other, <$ty>::from(*other)),
                }
            }
        }
    };
}

#[allow(unused_imports)]
pub(crate) use enum_with_unknown;

enum_with_unknown! {
    /// Mobility Header type (IANA "Mobility Header Types").
    pub enum MhType(u8) {
        /// Binding Refresh Request (RFC 6275).
        BindingRefreshRequest = 0,
        /// Binding Update, or Proxy Binding Update with P set (RFC 6275, RFC 5213).
        BindingUpdate = 5,
        /// Binding Acknowledgement, or Proxy Binding Acknowledgement (RFC 6275, RFC 5213).
        BindingAck = 6,
        /// Binding Error (RFC 6275).
        BindingError = 7,
        /// Experimental Mobility Header (RFC 5096).
        Experimental = 11,
        /// Heartbeat (RFC 5847).
        Heartbeat = 13,
        /// Binding Revocation, indication or acknowledgement (RFC 5846).
        BindingRevocation = 16,
        /// Update Notification (RFC 7077).
        UpdateNotification = 19,
        /// Update Notification Acknowledgement (RFC 7077).
        UpdateNotificationAck = 20,
    }
}

enum_with_unknown! {
    /// Binding Acknowledgement status (RFC 6275 §6.1.8, RFC 5213 §8.9, RFC 5844 §6.2). Values
    /// below 128 accept the binding, values from 128 reject it.
    pub enum BaStatus(u8) {
        /// Binding Update accepted / Proxy Binding Update accepted.
        Accepted = 0,
        /// Accepted but prefix discovery necessary (RFC 6275).
        AcceptedPrefixDiscoveryNecessary = 1,
        /// Reason unspecified.
        ReasonUnspecified = 128,
        /// Administratively prohibited.
        AdministrativelyProhibited = 129,
        /// Insufficient resources.
        InsufficientResources = 130,
        /// Home registration not supported.
        HomeRegistrationNotSupported = 131,
        /// Not home subnet.
        NotHomeSubnet = 132,
        /// Not home agent for this mobile node.
        NotHomeAgentForThisMobileNode = 133,
        /// Duplicate Address Detection failed.
        DuplicateAddressDetectionFailed = 134,
        /// Sequence number out of window.
        SequenceNumberOutOfWindow = 135,
        /// Registration type change disallowed.
        RegistrationTypeChangeDisallowed = 139,
        /// MIPV6-AUTH-FAIL: the authentication option did not verify (RFC 4285).
        AuthenticationFailed = 146,
        /// PROXY_REG_NOT_ENABLED (RFC 5213).
        ProxyRegNotEnabled = 152,
        /// NOT_LMA_FOR_THIS_MOBILE_NODE (RFC 5213).
        NotLmaForThisMobileNode = 153,
        /// MAG_NOT_AUTHORIZED_FOR_PROXY_REG (RFC 5213).
        MagNotAuthorizedForProxyReg = 154,
        /// NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX (RFC 5213).
        NotAuthorizedForHomeNetworkPrefix = 155,
        /// TIMESTAMP_MISMATCH (RFC 5213).
        TimestampMismatch = 156,
        /// TIMESTAMP_LOWER_THAN_PREV_ACCEPTED (RFC 5213).
        TimestampLowerThanPrevAccepted = 157,
        /// MISSING_HOME_NETWORK_PREFIX_OPTION (RFC 5213).
        MissingHomeNetworkPrefixOption = 158,
        /// BCE_PBU_PREFIX_SET_DO_NOT_MATCH (RFC 5213).
        BcePbuPrefixSetDoNotMatch = 159,
        /// MISSING_MN_IDENTIFIER_OPTION (RFC 5213).
        MissingMnIdentifierOption = 160,
        /// MISSING_HANDOFF_INDICATOR_OPTION (RFC 5213).
        MissingHandoffIndicatorOption = 161,
        /// MISSING_ACCESS_TECH_TYPE_OPTION (RFC 5213).
        MissingAccessTechTypeOption = 162,
        /// NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE (RFC 5844).
        NotAuthorizedForIpv4MobilityService = 170,
        /// NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS (RFC 5844).
        NotAuthorizedForIpv4HomeAddress = 171,
        /// NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE (RFC 5844).
        NotAuthorizedForIpv6MobilityService = 172,
        /// MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED (RFC 5844).
        MultipleIpv4HomeAddressAssignmentNotSupported = 173,
    }
}

impl BaStatus {
    /// Whether the status accepts the binding (RFC 6275 §6.1.8: values below 128).
    pub fn is_accepted(self) -> bool {
        u8::from(self) < 128
    }
}

enum_with_unknown! {
    /// Binding Error status (RFC 6275 §6.1.9).
    pub enum BindingErrorStatus(u8) {
        /// Unknown binding for Home Address destination option.
        UnknownBindingForHomeAddress = 1,
        /// Unrecognized MH Type value.
        UnrecognizedMhType = 2,
    }
}

enum_with_unknown! {
    /// Handoff Indicator (RFC 5213 §8.4, RFC 7864 §6).
    pub enum HandoffIndicator(u8) {
        /// Reserved.
        Reserved = 0,
        /// Attachment over a new interface.
        NewInterface = 1,
        /// Handoff between two different interfaces of the mobile node.
        BetweenInterfaces = 2,
        /// Handoff between mobile access gateways for the same interface.
        BetweenMags = 3,
        /// Handoff state unknown.
        StateUnknown = 4,
        /// Handoff state not changed (re-registration).
        NotChanged = 5,
        /// Attachment over a new interface sharing prefixes (RFC 7864).
        NewInterfaceSharingPrefixes = 6,
    }
}

enum_with_unknown! {
    /// Access Technology Type (RFC 5213 §8.5, IANA registry).
    pub enum AccessTechnologyType(u8) {
        /// Reserved.
        Reserved = 0,
        /// Virtual (logical interface).
        Virtual = 1,
        /// PPP.
        Ppp = 2,
        /// IEEE 802.3.
        Ieee8023 = 3,
        /// IEEE 802.11a/b/g (WLAN).
        Ieee80211 = 4,
        /// IEEE 802.16e.
        Ieee80216e = 5,
        /// 3GPP GERAN.
        Geran = 6,
        /// 3GPP UTRAN (3G).
        Utran = 7,
        /// 3GPP E-UTRAN (LTE).
        Eutran = 8,
        /// 3GPP2 eHRPD.
        Ehrpd = 9,
        /// 3GPP2 HRPD.
        Hrpd = 10,
        /// 3GPP2 1xRTT.
        OneXRtt = 11,
        /// 3GPP2 UMB.
        Umb = 12,
        /// 3GPP NB-IoT.
        NbIot = 13,
    }
}

enum_with_unknown! {
    /// Mobile Node Identifier subtype (RFC 4283, RFC 8371).
    pub enum MnIdSubtype(u8) {
        /// Network Access Identifier (RFC 4282), the one RFC 5213 uses.
        Nai = 1,
        /// IPv6 address.
        Ipv6Address = 2,
        /// IMSI.
        Imsi = 3,
        /// P-TMSI.
        PTmsi = 4,
        /// EUI-48 address.
        Eui48 = 5,
        /// EUI-64 address.
        Eui64 = 6,
        /// GUTI.
        Guti = 7,
        /// DUID.
        Duid = 8,
    }
}

enum_with_unknown! {
    /// Binding Revocation Trigger of a BRI (RFC 5846 §8.1).
    pub enum RevocationTrigger(u8) {
        /// Unspecified.
        Unspecified = 0,
        /// Administrative reason.
        AdministrativeReason = 1,
        /// Inter-MAG handover, same access type.
        InterMagHandoverSameAccessType = 2,
        /// Inter-MAG handover, different access type.
        InterMagHandoverDifferentAccessType = 3,
        /// Inter-MAG handover, unknown.
        InterMagHandoverUnknown = 4,
        /// User-initiated session(s) termination.
        UserInitiatedSessionTermination = 5,
        /// Access network session(s) termination.
        AccessNetworkSessionTermination = 6,
        /// Possible out-of-sync BCE state.
        PossibleOutOfSyncBceState = 7,
        /// Per-peer policy.
        PerPeerPolicy = 128,
        /// Revoking mobility node local policy.
        RevokingMobilityNodeLocalPolicy = 129,
    }
}

enum_with_unknown! {
    /// Binding Revocation Acknowledgement status (RFC 5846 §8.2).
    pub enum RevocationStatus(u8) {
        /// Success.
        Success = 0,
        /// Partial success.
        PartialSuccess = 1,
        /// Binding does not exist.
        BindingDoesNotExist = 128,
        /// IPv4 Home Address option required.
        Ipv4HomeAddressOptionRequired = 129,
        /// Global revocation not authorized.
        GlobalRevocationNotAuthorized = 130,
        /// Revoked mobile nodes' identity required.
        RevokedMobileNodesIdentityRequired = 131,
        /// Revocation failed: the MN is attached.
        RevocationFailedMnAttached = 132,
        /// Revocation trigger not supported.
        RevocationTriggerNotSupported = 133,
        /// Revocation function not supported.
        RevocationFunctionNotSupported = 134,
        /// Proxy binding revocation not supported.
        ProxyBindingRevocationNotSupported = 135,
    }
}

enum_with_unknown! {
    /// Update Notification reason (RFC 7077 §4.1, RFC 7864 §5).
    pub enum NotificationReason(u16) {
        /// FORCE-REREGISTRATION.
        ForceReregistration = 1,
        /// UPDATE-SESSION-PARAMETERS.
        UpdateSessionParameters = 2,
        /// VENDOR-SPECIFIC-REASON.
        VendorSpecific = 3,
        /// ANI-PARAMS-REQUESTED.
        AniParamsRequested = 4,
        /// QOS_SERVICE_REQUEST (RFC 7222).
        QosServiceRequest = 5,
        /// FLOW-MOBILITY (RFC 7864).
        FlowMobility = 8,
    }
}

enum_with_unknown! {
    /// Update Notification Acknowledgement status (RFC 7077 §4.2, RFC 7864 §5).
    pub enum UpaStatus(u8) {
        /// SUCCESS.
        Success = 0,
        /// FAILED-TO-UPDATE-SESSION-PARAMETERS.
        FailedToUpdateSessionParameters = 128,
        /// MISSING-VENDOR-SPECIFIC-OPTION.
        MissingVendorSpecificOption = 129,
        /// CANNOT_MEET_QOS_SERVICE_REQUEST (RFC 7222).
        CannotMeetQosServiceRequest = 130,
        /// Reason unspecified (RFC 7864).
        ReasonUnspecified = 131,
        /// MN not attached (RFC 7864).
        MnNotAttached = 132,
    }
}

enum_with_unknown! {
    /// IPv4 Home Address Reply status (RFC 5844 §3.2).
    pub enum Ipv4HoaReplyStatus(u8) {
        /// Success.
        Success = 0,
        /// Failure, reason unspecified.
        Failure = 128,
        /// Administratively prohibited.
        AdministrativelyProhibited = 129,
        /// Incorrect IPv4 home address.
        IncorrectIpv4HomeAddress = 130,
        /// Invalid IPv4 address.
        InvalidIpv4Address = 131,
        /// Dynamic IPv4 home address assignment not available.
        DynamicAssignmentNotAvailable = 132,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(BaStatus::from(v)), v);
            assert_eq!(u8::from(HandoffIndicator::from(v)), v);
        }
        assert_eq!(BaStatus::from(162), BaStatus::MissingAccessTechTypeOption);
        assert_eq!(MhType::from(200), MhType::Unknown(200));
    }

    #[test]
    fn acceptance_is_below_128() {
        assert!(BaStatus::Accepted.is_accepted());
        assert!(!BaStatus::ProxyRegNotEnabled.is_accepted());
        assert!(!BaStatus::Unknown(200).is_accepted());
    }
}
