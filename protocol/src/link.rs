//! A link conditioner's core: for each packet, whether it arrives, how late, and how
//! many times. Pure and seeded, so a conditioned run can be replayed; the I/O shell that
//! holds and forwards packets lives in the client SDK (`outpost_client::link`).
//!
//! Loss is uniform or bursty (a Gilbert–Elliott two-state channel); delay is latency plus
//! uniform jitter, which also reorders packets sent closer together than the jitter;
//! duplication and extra reordering are independent chances per packet.

use std::time::Duration;

use crate::rng::SplitMix64;

/// A two-state bursty loss channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Chance per packet of moving from the good state to the bad one.
    pub enter_bad: f64,
    /// Chance per packet of moving from the bad state back to the good one.
    pub leave_bad: f64,
    /// Loss chance while bad (while good, [`LinkConfig::loss`] applies).
    pub loss_in_bad: f64,
}

/// How one direction of a link misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Base one-way delay.
    pub latency: Duration,
    /// Each packet's delay varies uniformly by up to this much either way.
    pub jitter: Duration,
    /// Uniform loss chance (in the good state, when bursts are on).
    pub loss: f64,
    /// Bursty loss on top, if any.
    pub burst: Option<GilbertElliott>,
    /// Chance a packet is delivered twice.
    pub duplicate: f64,
    /// Chance a packet is held back an extra latency, arriving after later ones.
    pub reorder: f64,
}

impl LinkConfig {
    /// A perfect link.
    pub const PERFECT: Self = Self {
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        burst: None,
        duplicate: 0.0,
        reorder: 0.0,
    };

    /// A device near its edge, what an edge at a regional point of presence is for
    /// (metro fibre, then home Wi-Fi or 5G): 5 ms, ±2 ms, 0.5 % loss.
    pub fn edge() -> Self {
        Self {
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(2),
            loss: 0.005,
            ..Self::PERFECT
        }
    }

    /// 40 ms, ±6 ms, 0.2 % loss.
    pub fn good() -> Self {
        Self {
            latency: Duration::from_millis(40),
            jitter: Duration::from_millis(6),
            loss: 0.002,
            ..Self::PERFECT
        }
    }

    /// 100 ms, ±15 ms, 2 % loss.
    pub fn average() -> Self {
        Self {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(15),
            loss: 0.02,
            ..Self::PERFECT
        }
    }

    /// 200 ms, ±30 ms, 10 % loss.
    pub fn poor() -> Self {
        Self {
            latency: Duration::from_millis(200),
            jitter: Duration::from_millis(30),
            loss: 0.1,
            ..Self::PERFECT
        }
    }

    /// A mobile link losing packets in bursts: 100 ms, ±15 ms, 1 % background loss, and
    /// runs of heavy loss (about one packet in 20 starts a burst averaging 4 packets, of
    /// which 60 % are lost), with some duplication and reordering.
    pub fn bursty() -> Self {
        Self {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(15),
            loss: 0.01,
            burst: Some(GilbertElliott {
                enter_bad: 0.05,
                leave_bad: 0.25,
                loss_in_bad: 0.6,
            }),
            duplicate: 0.01,
            reorder: 0.02,
        }
    }

    /// A preset by name: `perfect`, `edge`, `good`, `average`, `poor`, `bursty`.
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "perfect" => Self::PERFECT,
            "edge" => Self::edge(),
            "good" => Self::good(),
            "average" => Self::average(),
            "poor" => Self::poor(),
            "bursty" => Self::bursty(),
            _ => return None,
        })
    }
}

/// Decides the fate of each packet on one direction of a link.
#[derive(Debug, Clone)]
pub struct Conditioner {
    config: LinkConfig,
    rng: SplitMix64,
    bad: bool,
}

impl Conditioner {
    /// A conditioner with its own seeded randomness.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: SplitMix64::new(seed),
            bad: false,
        }
    }

    /// The fate of the next packet: one delay per delivery (none when it is lost, two
    /// when it is duplicated).
    pub fn fate(&mut self) -> Vec<Duration> {
        let c = self.config;
        let loss = match c.burst {
            Some(ge) => {
                let flip = if self.bad { ge.leave_bad } else { ge.enter_bad };
                if self.rng.unit() < flip {
                    self.bad = !self.bad;
                }
                if self.bad { ge.loss_in_bad } else { c.loss }
            }
            None => c.loss,
        };
        if self.rng.unit() < loss {
            return Vec::new();
        }
        let copies = if self.rng.unit() < c.duplicate { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                let jitter = c.jitter.as_secs_f64() * (self.rng.unit() * 2.0 - 1.0);
                let mut delay = (c.latency.as_secs_f64() + jitter).max(0.0);
                if self.rng.unit() < c.reorder {
                    delay += c.latency.as_secs_f64().max(0.01);
                }
                Duration::from_secs_f64(delay)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(config: LinkConfig, n: usize) -> (f64, f64, f64) {
        let mut link = Conditioner::new(config, 1);
        let (mut lost, mut copies, mut delay) = (0usize, 0usize, 0f64);
        for _ in 0..n {
            let fate = link.fate();
            if fate.is_empty() {
                lost += 1;
            }
            copies += fate.len();
            delay += fate.iter().map(Duration::as_secs_f64).sum::<f64>();
        }
        (
            lost as f64 / n as f64,
            copies as f64 / n as f64,
            delay / copies.max(1) as f64,
        )
    }

    #[test]
    fn presets_behave_as_named() {
        let (loss, _, delay) = stats(LinkConfig::poor(), 100_000);
        assert!((0.09..0.11).contains(&loss), "poor loses {loss}");
        assert!((0.195..0.205).contains(&delay), "poor delays {delay}");
        let (loss, _, _) = stats(LinkConfig::good(), 100_000);
        assert!(loss < 0.004);
        let (loss, copies, _) = stats(LinkConfig::PERFECT, 1000);
        assert_eq!((loss, copies), (0.0, 1.0));
    }

    #[test]
    fn bursts_cluster_losses() {
        let mut link = Conditioner::new(LinkConfig::bursty(), 3);
        let lost: Vec<bool> = (0..100_000).map(|_| link.fate().is_empty()).collect();
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        let after_loss = lost.windows(2).filter(|w| w[0] && w[1]).count() as f64
            / lost.iter().filter(|&&l| l).count() as f64;
        assert!(
            after_loss > 2.0 * rate,
            "a loss makes the next likelier: {after_loss} vs {rate}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let mut a = Conditioner::new(LinkConfig::bursty(), 9);
        let mut b = Conditioner::new(LinkConfig::bursty(), 9);
        for _ in 0..1000 {
            assert_eq!(a.fate(), b.fate());
        }
    }
}
