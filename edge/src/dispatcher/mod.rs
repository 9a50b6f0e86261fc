//! The dispatcher: destination sets, selection, failover, health and call load
//! (issue 4), sans-IO. It reads no clock (time comes in as `now`), opens no
//! socket and takes no lock; a shard owns one [`Dispatcher`] and drives it.
//!
//! - [`DestinationSets`] is the immutable snapshot of the configured sets, built
//!   from a Kamailio `dispatcher.list` ([`parse_list`]) or from TOML
//!   ([`DestinationSets::from_toml_value`]). A bad file fails as a whole with the
//!   file and line ([`LoadError`]), so a reload keeps the running sets.
//! - [`Dispatcher::select`] ranks the destinations of a set for one call with a
//!   Kamailio algorithm number ([`Algorithm`]); the hash algorithms use weighted
//!   rendezvous hashing, so a destination that leaves moves only its own calls.
//! - [`Hunt`] walks that ranking for one proxied request: failover on timeout or
//!   on a failover code, a limit on attempts, CANCEL stops it.
//! - Health: OPTIONS probes are asked for with [`Dispatcher::poll_probe`], their
//!   results fed back with [`Dispatcher::on_probe_result`]; state changes come out
//!   of [`Dispatcher::poll_event`] for the shell to send to the other shards, which
//!   apply them with [`Dispatcher::apply_state_change`].
//! - Call load: per destination counters of calls being set up and established,
//!   summed across shards by the shell from [`Dispatcher::load_snapshot`].
//! - [`Dispatcher::reload`] swaps in a new snapshot keeping the state and counters
//!   of destinations that stay.
//! - [`DispatchRouter`] puts all of it behind the proxy's
//!   [`Router`](crate::proxy::Router) seam: route rules (method to set and
//!   algorithm), hunts, answered calls by Call-ID for the call load, probes.

#![warn(missing_docs)]

mod hash;
mod health;
mod hunt;
mod list;
mod router;
mod select;
mod sets;
mod state;
mod toml_spec;

pub use health::{
    AdminState, DestState, HealthConfig, Liveness, ProbeOutcome, ProbeRequest, StateChange,
};
pub use hunt::{CodeSet, FailoverConfig, Hunt, HuntVerdict};
pub use list::{format_list, parse_list, ListOptions, ListParse};
pub use router::{DispatchRouter, RouteRule, RouterConfig, RouterStats};
pub use select::{Algorithm, Candidates, SelectionInput, MAX_CANDIDATES};
pub use sets::{
    Attrs, DestKey, Destination, DestinationSet, DestinationSets, DestinationSpec, LoadError,
    LoadErrorKind, Origin, SetLimits, Target, TargetHost, Transport, FLAG_DISABLED, FLAG_INACTIVE,
    FLAG_NO_PING, FLAG_PROBING, FLAG_TRYING,
};
pub use state::{
    DestId, DestLoad, Dispatcher, DispatcherConfig, DispatcherStats, Load, MAX_PENDING_EVENTS,
};
pub use toml_spec::{TomlDestination, TomlDispatcher};
