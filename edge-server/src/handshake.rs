//! Who may start a QUIC handshake: the guard in front of admission.
//!
//! Anyone can send an edge an Initial, so handshake state is bounded three ways before a
//! connection has shown anything: a per-address cap on pending handshakes (IPv6 by /64,
//! see [`outpost_protocol::addr`]), a cap on all of them, and address validation by
//! QUIC Retry once more than a threshold are pending, which costs a spoofed or
//! never-answering source its place at no cost to the edge. A handshake stays pending
//! until its connection has sent a valid Hello (or run out of time): only then does it
//! take a player slot, so a flood of Initials never stands in front of real players.
//! Pure: the caller passes what quinn knows of the Initial.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use outpost_protocol::addr::limit_key;
use prometheus_client::metrics::gauge::Gauge;

/// Limits on pending handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Most handshakes pending at once (connections that have not sent a valid Hello).
    pub max_pending: usize,
    /// Most pending from one address (an IPv6 /64).
    pub max_pending_per_address: usize,
    /// Pending handshakes above which an unvalidated address is sent a Retry first; 0
    /// validates every address.
    pub retry_above: usize,
}

/// Why an Initial was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Its address already has its share of pending handshakes.
    PerAddress,
    /// The edge has as many pending handshakes as it allows.
    PendingFull,
}

impl Refusal {
    /// Short stable name, used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerAddress => "per_address",
            Self::PendingFull => "pending_full",
        }
    }
}

/// What to do with an Initial.
#[derive(Debug)]
pub enum Decision {
    /// Go on with the handshake; the handshake is pending while the guard lives.
    Accept(Pending),
    /// Ask the client to prove its address first.
    Retry,
    /// Refuse the connection.
    Refuse(Refusal),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The pending-handshake counts of one endpoint.
#[derive(Debug)]
pub struct HandshakeGate {
    limits: HandshakeLimits,
    counts: Mutex<Counts>,
    gauge: Gauge,
}

impl HandshakeGate {
    /// A gate with the given limits that keeps `gauge` at the number pending.
    pub fn new(limits: HandshakeLimits, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
            gauge,
        })
    }

    /// Decides on an Initial from `remote`. `validated`: quinn has proved the address
    /// (a Retry token came back); `may_retry`: a Retry may still be sent.
    pub fn decide(self: &Arc<Self>, remote: IpAddr, validated: bool, may_retry: bool) -> Decision {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if !validated && may_retry && counts.total >= self.limits.retry_above {
            return Decision::Retry;
        }
        let key = limit_key(remote);
        let from_key = counts.per_address.get(&key).copied().unwrap_or(0);
        if from_key >= self.limits.max_pending_per_address {
            return Decision::Refuse(Refusal::PerAddress);
        }
        if counts.total >= self.limits.max_pending {
            return Decision::Refuse(Refusal::PendingFull);
        }
        counts.total += 1;
        *counts.per_address.entry(key).or_insert(0) += 1;
        self.gauge.set(counts.total as i64);
        Decision::Accept(Pending {
            gate: self.clone(),
            key,
        })
    }

    /// Handshakes pending now.
    pub fn pending(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    fn release(&self, key: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        self.gauge.set(counts.total as i64);
        if let Some(n) = counts.per_address.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&key);
            }
        }
    }
}

/// A pending handshake's place; dropping it frees the place.
#[derive(Debug)]
pub struct Pending {
    gate: Arc<HandshakeGate>,
    key: IpAddr,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.gate.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(retry_above: usize) -> Arc<HandshakeGate> {
        HandshakeGate::new(
            HandshakeLimits {
                max_pending: 4,
                max_pending_per_address: 2,
                retry_above,
            },
            Gauge::default(),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn accepted(decision: Decision) -> Pending {
        match decision {
            Decision::Accept(pending) => pending,
            other => panic!("expected Accept, got {other:?}"),
        }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let gate = gate(100);
        let a = accepted(gate.decide(ip("10.0.0.1"), false, true));
        let _b = accepted(gate.decide(ip("10.0.0.1"), false, true));
        assert!(matches!(
            gate.decide(ip("10.0.0.1"), true, false),
            Decision::Refuse(Refusal::PerAddress)
        ));
        // Another /64 of IPv6 is another address; the same /64 is not.
        let _c = accepted(gate.decide(ip("2001:db8::1"), false, true));
        let _d = accepted(gate.decide(ip("2001:db8::2"), false, true));
        assert!(matches!(
            gate.decide(ip("2001:db8::3"), false, true),
            Decision::Refuse(Refusal::PerAddress)
        ));
        assert!(matches!(
            gate.decide(ip("10.0.0.9"), false, true),
            Decision::Refuse(Refusal::PendingFull)
        ));
        assert_eq!(gate.pending(), 4);
        drop(a);
        assert_eq!(gate.pending(), 3);
        let _e = accepted(gate.decide(ip("10.0.0.1"), false, true));
    }

    #[test]
    fn past_the_threshold_unvalidated_addresses_are_asked_to_retry() {
        let gate = gate(1);
        let _first = accepted(gate.decide(ip("10.0.0.1"), false, true));
        assert!(matches!(
            gate.decide(ip("10.0.0.2"), false, true),
            Decision::Retry
        ));
        // The same client back with its Retry token is validated and goes on.
        assert!(matches!(
            gate.decide(ip("10.0.0.2"), true, false),
            Decision::Accept(_)
        ));
        // Zero validates everyone.
        assert!(matches!(
            self::gate(0).decide(ip("10.0.0.3"), false, true),
            Decision::Retry
        ));
    }
}
