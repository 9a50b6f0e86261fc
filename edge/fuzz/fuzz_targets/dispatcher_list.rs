//! Kamailio `dispatcher.list` files (`edge::dispatcher::parse_list`), a parser
//! of operator input: any bytes give sets or a typed error with a line, never
//! a panic; and an accepted file, written back by `format_list`, parses to
//! the same sets (compared through their written form).

#![no_main]

use edge::dispatcher::{format_list, parse_list, ListOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = ListOptions::default();
    let Ok(parsed) = parse_list(data, "fuzz.list", &options) else {
        return;
    };
    let written = format_list(&parsed.sets);
    let again = match parse_list(written.as_bytes(), "fuzz.list", &options) {
        Ok(again) => again,
        Err(e) => panic!("written list does not parse: {e}\n{written}"),
    };
    assert_eq!(again.skipped_total, 0, "written list skips lines:\n{written}");
    assert_eq!(format_list(&again.sets), written, "round trip changed the sets");
});
