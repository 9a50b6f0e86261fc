//! JSON-RPC requests from the control plane's peers (`edge::rpc`): any bytes
//! give a request or a rejection with a JSON-RPC code, never a panic; a
//! request runs against a fixed backend and answers a result or an error
//! with one of the documented codes.

#![no_main]

use std::net::SocketAddr;

use edge::dispatcher::{DestKey, DestState, DestinationSets, DestinationSpec, SetLimits};
use edge::rpc::{
    dispatch, parse_request, Backend, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,
    OPERATIONAL, PARSE_ERROR,
};
use edge::runtime::{DestinationTotal, ShardReport};
use libfuzzer_sys::fuzz_target;

struct Fixed {
    sets: DestinationSets,
    probing: bool,
}

impl Backend for Fixed {
    fn clock(&self) -> (u64, u64) {
        (1, 2)
    }
    fn sets(&self) -> Option<&DestinationSets> {
        Some(&self.sets)
    }
    fn totals(&self) -> Vec<DestinationTotal> {
        Vec::new()
    }
    fn probe_all(&self) -> bool {
        true
    }
    fn reload(&mut self, _who: &str) -> Result<(), String> {
        Ok(())
    }
    fn set_state(&mut self, keys: Vec<DestKey>, _: DestState, _: &str) -> Result<(), String> {
        assert!(!keys.is_empty(), "a state change names a destination");
        Ok(())
    }
    fn replace_sets(&mut self, sets: DestinationSets, _who: &str) -> Result<(), String> {
        self.sets = sets;
        Ok(())
    }
    fn ping_active(&mut self, on: Option<bool>, _who: &str) -> Result<bool, String> {
        let old = self.probing;
        self.probing = on.unwrap_or(old);
        Ok(old)
    }
    fn reports(&self) -> Vec<ShardReport> {
        Vec::new()
    }
}

fuzz_target!(|data: &[u8]| {
    let request = match parse_request(data) {
        Ok(r) => r,
        Err(rejected) => {
            let code = rejected.error.code;
            assert!(code == PARSE_ERROR || code == INVALID_REQUEST, "{code}");
            return;
        }
    };
    let spec = DestinationSpec {
        set: 1,
        uri: "sip:192.0.2.1:5060",
        flags: 0,
        priority: 0,
        attrs: "duid=a",
    };
    let Ok(sets) = DestinationSets::from_specs([spec], "fuzz", &SetLimits::default()) else {
        return;
    };
    let mut backend = Fixed {
        sets,
        probing: true,
    };
    let remote = SocketAddr::from(([127, 0, 0, 1], 9));
    if let Err(e) = dispatch(&mut backend, &request, remote) {
        let known = [METHOD_NOT_FOUND, INVALID_PARAMS, OPERATIONAL];
        assert!(known.contains(&e.code), "{}: {}", e.code, e.message);
        assert!(!e.message.is_empty());
    }
});
