//! Every on-disk record decoder returns an error, never panics, on any bytes:
//! the rkyv catalog and property records and the segment container.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_storage::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::decode_catalog(data);
    fuzzing::decode_value(data);
    let dir = tempfile::tempdir().unwrap();
    fuzzing::open_segment(dir.path(), data);
});
