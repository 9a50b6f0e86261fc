//! Health of one destination: the operator's state, the probed liveness, and
//! the thresholds between them (Kamailio's `probing_threshold` and
//! `inactive_threshold`).

use std::time::{Duration, Instant};

use super::hunt::CodeSet;
use super::sets::{DestKey, FLAG_DISABLED, FLAG_INACTIVE, FLAG_NO_PING, FLAG_PROBING, FLAG_TRYING};
use super::state::DestId;

/// Health settings of a dispatcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between two probes of one destination (default 10 s).
    pub probe_interval: Duration,
    /// A probe without a final reply for this long failed (default 5 s, at most
    /// `probe_interval`).
    pub probe_timeout: Duration,
    /// Consecutive failures that make an active destination inactive; fewer
    /// make it trying (Kamailio `ds_probing_threshold`; default 3, at least 1).
    pub probing_threshold: u8,
    /// Consecutive successful probes that bring an inactive destination back
    /// (Kamailio `ds_inactive_threshold`; default 2, at least 1).
    pub inactive_threshold: u8,
    /// Reply codes that count as up (default any 2xx; operators add 403, 404, ...).
    pub accepted_codes: CodeSet,
    /// Probe every destination without the no-ping flag (Kamailio
    /// `ds_probing_mode=1`, default); `false` probes only the probing flag (8).
    pub probe_all: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(5),
            probing_threshold: 3,
            inactive_threshold: 2,
            accepted_codes: CodeSet::range(200, 299),
            probe_all: true,
        }
    }
}

/// What the operator set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// Takes calls when alive.
    Enabled,
    /// Takes no calls (flag 4).
    Disabled,
    /// Takes no new calls; calls on it continue (ours).
    Draining,
}

/// What probes and failures say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Up.
    Active,
    /// Failed fewer than `probing_threshold` times in a row; still takes calls.
    Trying,
    /// Down: takes no calls until `inactive_threshold` probes succeed.
    Inactive,
}

/// The state a destination shows (RPC, selection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestState {
    /// Up, takes calls.
    Active,
    /// Failing, still takes calls.
    Trying,
    /// Down, no calls.
    Inactive,
    /// Disabled by the operator, no calls.
    Disabled,
    /// Drained by the operator: no new calls, existing calls continue.
    Draining,
}

impl DestState {
    /// May a new call be sent there?
    pub fn takes_new_calls(self) -> bool {
        matches!(self, DestState::Active | DestState::Trying)
    }

    /// Kamailio's state letter (`A`, `T`, `I`, `D`); `R` for draining (ours).
    pub fn letter(self) -> char {
        match self {
            DestState::Active => 'A',
            DestState::Trying => 'T',
            DestState::Inactive => 'I',
            DestState::Disabled => 'D',
            DestState::Draining => 'R',
        }
    }
}

/// A probe to send: an OPTIONS to the destination `id`
/// ([`Dispatcher::destination`](super::Dispatcher::destination) has its URI,
/// address and `ping_from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRequest {
    /// The destination.
    pub id: DestId,
}

/// How a probe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A final reply with this code.
    Response(u16),
    /// No final reply (transaction timeout or transport error).
    Timeout,
}

/// A destination's state changed on this shard: send it to the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// Which destination.
    pub key: DestKey,
    /// The operator's state.
    pub admin: AdminState,
    /// The probed liveness.
    pub liveness: Liveness,
}

impl StateChange {
    /// The state this shows.
    pub fn state(&self) -> DestState {
        shown(self.admin, self.liveness)
    }
}

fn shown(admin: AdminState, liveness: Liveness) -> DestState {
    match (admin, liveness) {
        (AdminState::Disabled, _) => DestState::Disabled,
        (AdminState::Draining, _) => DestState::Draining,
        (AdminState::Enabled, Liveness::Active) => DestState::Active,
        (AdminState::Enabled, Liveness::Trying) => DestState::Trying,
        (AdminState::Enabled, Liveness::Inactive) => DestState::Inactive,
    }
}

/// Health of one destination on one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Health {
    pub(crate) admin: AdminState,
    pub(crate) liveness: Liveness,
    failures: u8,
    successes: u8,
    /// Probed by this shard at all (no-ping, probing mode, ownership).
    pub(crate) probed: bool,
    pub(crate) next_probe: Instant,
    pub(crate) probe_deadline: Option<Instant>,
}

impl Health {
    /// Initial health from the file's flags; the first probe at `first_probe`.
    pub(crate) fn from_flags(flags: u32, first_probe: Instant) -> Self {
        let admin = if flags & FLAG_DISABLED != 0 {
            AdminState::Disabled
        } else {
            AdminState::Enabled
        };
        let liveness = if flags & FLAG_INACTIVE != 0 {
            Liveness::Inactive
        } else if flags & FLAG_TRYING != 0 {
            Liveness::Trying
        } else {
            Liveness::Active
        };
        Health {
            admin,
            liveness,
            failures: 0,
            successes: 0,
            probed: false,
            next_probe: first_probe,
            probe_deadline: None,
        }
    }

    /// Does this destination get probes (before ownership)?
    pub(crate) fn wants_probes(flags: u32, config: &HealthConfig) -> bool {
        flags & FLAG_NO_PING == 0 && (config.probe_all || flags & FLAG_PROBING != 0)
    }

    pub(crate) fn state(&self) -> DestState {
        shown(self.admin, self.liveness)
    }

    /// A failed probe or a failover failure.
    pub(crate) fn fail(&mut self, config: &HealthConfig) {
        self.successes = 0;
        if self.liveness == Liveness::Inactive {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        self.liveness = if self.failures >= config.probing_threshold.max(1) {
            Liveness::Inactive
        } else {
            Liveness::Trying
        };
    }

    /// A successful probe.
    pub(crate) fn succeed(&mut self, config: &HealthConfig) {
        self.failures = 0;
        match self.liveness {
            Liveness::Active => {}
            Liveness::Trying => self.liveness = Liveness::Active,
            Liveness::Inactive => {
                self.successes = self.successes.saturating_add(1);
                if self.successes >= config.inactive_threshold.max(1) {
                    self.successes = 0;
                    self.liveness = Liveness::Active;
                }
            }
        }
    }

    /// A reply to a call that is not a failure: a trying destination is up.
    pub(crate) fn alive(&mut self) {
        if self.liveness == Liveness::Trying {
            self.failures = 0;
            self.liveness = Liveness::Active;
        }
    }

    /// Sets both states (operator or another shard); counters restart.
    pub(crate) fn set(&mut self, admin: AdminState, liveness: Liveness) {
        if liveness != self.liveness {
            self.failures = 0;
            self.successes = 0;
        }
        self.admin = admin;
        self.liveness = liveness;
    }

    /// Is a probe due at `now`?
    pub(crate) fn probe_due(&self, now: Instant) -> bool {
        self.probed
            && self.admin != AdminState::Disabled
            && self.probe_deadline.is_none()
            && self.next_probe <= now
    }

    /// The next instant this destination needs attention.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if !self.probed || self.admin == AdminState::Disabled {
            return None;
        }
        Some(self.probe_deadline.unwrap_or(self.next_probe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_go_trying_then_inactive_and_probes_bring_it_back() {
        let config = HealthConfig::default();
        let mut h = Health::from_flags(0, Instant::now());
        h.fail(&config);
        assert_eq!(h.state(), DestState::Trying);
        h.fail(&config);
        assert_eq!(h.state(), DestState::Trying);
        h.fail(&config);
        assert_eq!(h.state(), DestState::Inactive);
        h.succeed(&config);
        assert_eq!(h.state(), DestState::Inactive);
        h.succeed(&config);
        assert_eq!(h.state(), DestState::Active);
    }

    #[test]
    fn a_failure_between_successes_restarts_the_count() {
        let config = HealthConfig::default();
        let mut h = Health::from_flags(FLAG_INACTIVE, Instant::now());
        h.succeed(&config);
        h.fail(&config);
        h.succeed(&config);
        assert_eq!(h.state(), DestState::Inactive);
        h.succeed(&config);
        assert_eq!(h.state(), DestState::Active);
    }

    #[test]
    fn flags_give_the_initial_state() {
        let now = Instant::now();
        assert_eq!(
            Health::from_flags(FLAG_DISABLED | FLAG_INACTIVE, now).state(),
            DestState::Disabled
        );
        assert_eq!(
            Health::from_flags(FLAG_TRYING, now).state(),
            DestState::Trying
        );
        let config = HealthConfig::default();
        assert!(!Health::wants_probes(FLAG_NO_PING, &config));
        let flagged_only = HealthConfig {
            probe_all: false,
            ..config
        };
        assert!(!Health::wants_probes(0, &flagged_only));
        assert!(Health::wants_probes(FLAG_PROBING, &flagged_only));
    }
}
