//! `edge.toml` (`edge::config::Config`), a parser of operator input: any
//! text gives a configuration or an error with a sentence, never a panic,
//! and the same text always gives the same outcome.

#![no_main]

use edge::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text) {
        Ok(config) => assert_eq!(Config::from_toml_str(text).ok(), Some(config)),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
