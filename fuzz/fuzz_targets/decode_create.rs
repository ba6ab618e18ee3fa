//! Arbitrary bytes through request decoding and validation: never a panic,
//! and a request that validates survives a round trip.
#![no_main]

use atelet_api::{from_json_slice, validate_create, CreateActorRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = from_json_slice::<CreateActorRequest>(data) {
        if validate_create(&req).is_ok() {
            let bytes = serde_json::to_vec(&req).expect("a valid request encodes");
            let again: CreateActorRequest = from_json_slice(&bytes).expect("and decodes");
            assert_eq!(again, req);
        }
    }
});
