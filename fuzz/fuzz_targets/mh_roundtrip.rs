//! Parse → emit → parse over arbitrary octets: the parser never panics, and whatever it accepts
//! re-emits to octets that parse to the same message, under both MuHo option types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmip6_wire::{Message, ParseConfig};

fuzz_target!(|data: &[u8]| {
    for config in [ParseConfig::default(), ParseConfig::with_muho_option_type(200).unwrap()] {
        if let Ok(msg) = Message::parse(data, &config) {
            let mut out = vec![0; msg.buffer_len()];
            let len = msg.emit(&mut out).expect("a parsed message emits");
            assert_eq!(len, out.len());
            let again = Message::parse(&out, &config).expect("emitted octets parse");
            assert_eq!(again, msg);
        }
    }
});
