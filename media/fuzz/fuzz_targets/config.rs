//! Arbitrary text as a `media.toml`: parsing never panics, and settings
//! that parse either give a relay configuration or a typed error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use media::config::Options;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(options) = Options::from_toml(text, "fuzz.toml") {
        if let Ok(config) = options.relay_config() {
            let _ = config.validate();
        }
    }
});
