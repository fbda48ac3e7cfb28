//! Parse → emit → parse over arbitrary octets for Router Solicitations and Advertisements.
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use pmip6_wire::nd::NdMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = NdMessage::parse(data) {
        let (src, dst) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
        let mut out = vec![0; msg.buffer_len()];
        msg.emit(&mut out, &src, &dst).expect("a parsed message emits");
        let again = NdMessage::parse_checked(&out, &src, &dst).expect("emitted octets parse");
        assert_eq!(again, msg);
    }
});
