//! The query parser never panics; what it accepts prints back to text that
//! parses to the same statements (the printer back-quotes every name and
//! parenthesises every operator, so nothing depends on precedence).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match quiver_query::parse(text) {
        Ok(statements) => {
            let printed: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
            let again = quiver_query::parse(&printed.join(";\n"))
                .unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
            assert_eq!(statements, again, "{printed:?}");
        }
        Err(e) => {
            let shown = e.render(text);
            assert!(shown.starts_with("error: "));
        }
    }
});
