//! The import line splitter never panics, reports columns inside the line, and
//! in TSV mode its fields joined by the delimiter give back the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_storage::import::split_fields;

fuzz_target!(|data: &[u8]| {
    for (delim, quoting) in [(b'\t', false), (b',', true)] {
        match split_fields(data, delim, quoting) {
            Ok(fields) => {
                assert!(!fields.is_empty());
                assert!(fields.windows(2).all(|w| w[0].column < w[1].column));
                if !quoting {
                    let joined: Vec<&str> = fields.iter().map(|f| f.text.as_ref()).collect();
                    assert_eq!(joined.join("\t").as_bytes(), data);
                }
            }
            Err((column, message)) => {
                assert!(column >= 1 && column <= data.len() as u64 + 1, "{column} {message}");
            }
        }
    }
});
