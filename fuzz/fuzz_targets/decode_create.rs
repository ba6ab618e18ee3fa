//! Arbitrary bytes through request decoding and validation: never a panic,
//! and a request that validates survives a round trip.
#![no_main]

use atelet_api::{validate_create, CreateActorRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<CreateActorRequest>(data) {
        if validate_create(&req).is_ok() {
            let bytes = serde_json::to_vec(&req).expect("a valid request encodes");
            let again: CreateActorRequest = serde_json::from_slice(&bytes).expect("and decodes");
            assert_eq!(again, req);
        }
    }
});
