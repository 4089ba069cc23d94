//! Who may join: connect-token checks and replay protection. Pure apart from the time
//! the caller passes in, so every rule is unit-tested.

use std::collections::HashMap;

use outpost_protocol::{ConnectToken, Hello, RejectCode, SignedToken, TokenError, TokenVerifier};

/// Most remembered token nonces. Far above what the edge's player capacity can use
/// within a token lifetime; when full, expired entries are pruned, and if that frees
/// nothing, new players are refused rather than memory growing.
pub const MAX_REMEMBERED_NONCES: usize = 200_000;
/// How long after a token's expiry it may still be used to reconnect (with its reconnect
/// key): the longest a match can run.
pub const RECONNECT_WINDOW_MS: u64 = 7_200_000;
/// How long a connect-token key the cloud stopped publishing still admits new players:
/// longer than a token lives (60 s), so no token minted before a rotation is stranded.
pub const KEY_OVERLAP_MS: u64 = 300_000;
/// Most token keys remembered (the current one and those rotated out): reconnects with a
/// token signed by any of them still verify.
pub const MAX_KEYS: usize = 8;

/// A token admitted: what it grants and the key for reconnecting with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The token's claims.
    pub token: ConnectToken,
    /// The key to present when reconnecting with this token.
    pub reconnect_key: [u8; 16],
    /// Whether this is a reconnect with a token used before.
    pub reconnect: bool,
}

struct Seen {
    reconnect_key: [u8; 16],
    forget_at_ms: u64,
}

/// Token verification plus the memory of nonces already used.
///
/// The memory lives as long as the process. So that a token is good once across
/// restarts too, the edge accepts only tokens issued after it started: one minted before
/// a restart (whose nonce the new process never saw) is refused as [`RejectCode::
/// IssuedBeforeStart`]; its match died with the old process anyway. Clocks are allowed
/// `leeway_ms` of disagreement on every time check (issue, expiry, start).
pub struct Admission {
    /// Keys tokens may be signed with, newest first; each with when it was rotated out.
    keys: Vec<(TokenVerifier, [u8; 32], Option<u64>)>,
    edge_id: String,
    seen: HashMap<[u8; 16], Seen>,
    started_at_ms: u64,
    leeway_ms: u64,
}

impl Admission {
    /// Admission for an edge that started at `started_at_ms`, trusting a verifier's key,
    /// with `leeway_ms` of clock disagreement allowed.
    pub fn new(key: [u8; 32], edge_id: String, started_at_ms: u64, leeway_ms: u64) -> Option<Self> {
        Some(Self {
            keys: vec![(TokenVerifier::new(&key)?, key, None)],
            edge_id,
            seen: HashMap::new(),
            started_at_ms,
            leeway_ms,
        })
    }

    /// Takes the keys the cloud publishes now (a rotation): they admit new players; keys
    /// no longer published still do for [`KEY_OVERLAP_MS`], and verify reconnects for as
    /// long as they are remembered ([`MAX_KEYS`]). Keys that are not valid Ed25519 public
    /// keys are skipped; an empty list changes nothing. Returns whether anything changed.
    pub fn trust(&mut self, published: &[[u8; 32]], now_ms: u64) -> bool {
        let fresh: Vec<(TokenVerifier, [u8; 32])> = published
            .iter()
            .filter_map(|k| Some((TokenVerifier::new(k)?, *k)))
            .collect();
        if fresh.is_empty() {
            return false;
        }
        let mut changed = false;
        for (_, key, retired) in &mut self.keys {
            let still = fresh.iter().any(|(_, k)| k == key);
            if !still && retired.is_none() {
                *retired = Some(now_ms);
                changed = true;
            } else if still && retired.is_some() {
                *retired = None;
                changed = true;
            }
        }
        for (verifier, key) in fresh.into_iter().rev() {
            if !self.keys.iter().any(|(_, k, _)| *k == key) {
                self.keys.insert(0, (verifier, key, None));
                changed = true;
            }
        }
        self.keys.truncate(MAX_KEYS);
        changed
    }

    /// Verifies a first use with a key that admits new players now.
    fn verify_fresh(&self, token: &SignedToken, now_ms: u64) -> Result<ConnectToken, TokenError> {
        let expiry_now = now_ms.saturating_sub(self.leeway_ms);
        for (verifier, _, retired) in &self.keys {
            if retired.is_some_and(|at| now_ms.saturating_sub(at) >= KEY_OVERLAP_MS) {
                continue;
            }
            match verifier.verify(token, expiry_now, &self.edge_id) {
                Err(TokenError::BadSignature) => continue,
                other => return other,
            }
        }
        Err(TokenError::BadSignature)
    }

    /// Verifies a reconnect's signature with any remembered key.
    fn verify_known(&self, token: &SignedToken) -> Result<ConnectToken, TokenError> {
        for (verifier, _, _) in &self.keys {
            match verifier.verify_signature(token) {
                Err(TokenError::BadSignature) => continue,
                other => return other,
            }
        }
        Err(TokenError::BadSignature)
    }

    /// The time checks every token passes: issued neither before this edge started nor
    /// in the future (both give or take the leeway).
    fn check_issued(&self, token: &ConnectToken, now_ms: u64) -> Result<(), RejectCode> {
        if token.issued_at_ms.saturating_add(self.leeway_ms) < self.started_at_ms {
            return Err(RejectCode::IssuedBeforeStart);
        }
        if token.issued_at_ms > now_ms.saturating_add(self.leeway_ms) {
            return Err(RejectCode::NotYetValid);
        }
        Ok(())
    }

    /// Decides on a Hello. `fresh_key` becomes the reconnect key of a first use.
    pub fn admit(
        &mut self,
        hello: &Hello,
        now_ms: u64,
        fresh_key: [u8; 16],
    ) -> Result<Admitted, RejectCode> {
        if hello.protocol_version != outpost_protocol::PROTOCOL_VERSION {
            return Err(RejectCode::VersionMismatch);
        }
        if let Some(key) = hello.reconnect_key {
            // A reconnect: the signature must hold, the edge must match, and the key must
            // be the one issued at first use. Expiry is not checked again: the key proves
            // the holder was admitted while the token was valid.
            let token = self
                .verify_known(&hello.connect_token)
                .map_err(reject_code)?;
            if token.edge_id != self.edge_id {
                return Err(RejectCode::WrongEdge);
            }
            self.check_issued(&token, now_ms)?;
            let known = self
                .seen
                .get(&token.nonce)
                .filter(|seen| now_ms < seen.forget_at_ms);
            return match known {
                Some(seen) if keys_equal(&seen.reconnect_key, &key) => Ok(Admitted {
                    token,
                    reconnect_key: key,
                    reconnect: true,
                }),
                _ => Err(RejectCode::TokenReused),
            };
        }
        // Expiry with the leeway: checked as of `leeway_ms` ago.
        let token = self
            .verify_fresh(&hello.connect_token, now_ms)
            .map_err(reject_code)?;
        self.check_issued(&token, now_ms)?;
        if self.seen.contains_key(&token.nonce) {
            return Err(RejectCode::TokenReused);
        }
        if self.seen.len() >= MAX_REMEMBERED_NONCES {
            self.seen.retain(|_, seen| now_ms < seen.forget_at_ms);
            if self.seen.len() >= MAX_REMEMBERED_NONCES {
                return Err(RejectCode::EdgeFull);
            }
        }
        self.seen.insert(
            token.nonce,
            Seen {
                reconnect_key: fresh_key,
                forget_at_ms: token.expires_at_ms.saturating_add(RECONNECT_WINDOW_MS),
            },
        );
        Ok(Admitted {
            token,
            reconnect_key: fresh_key,
            reconnect: false,
        })
    }

    /// Forgets a first use that came to nothing (the player was refused after the token
    /// checked out), so the token may be presented again.
    pub fn release(&mut self, nonce: &[u8; 16]) {
        self.seen.remove(nonce);
    }

    /// Nonces remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

/// Compares keys in time independent of where they differ.
fn keys_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]))
}

/// The reject code a token error earns.
pub fn reject_code(err: TokenError) -> RejectCode {
    match err {
        TokenError::Expired { .. } => RejectCode::Expired,
        TokenError::WrongEdge(_) => RejectCode::WrongEdge,
        TokenError::InvalidConfig(_) => RejectCode::InvalidConfig,
        TokenError::BadSignature | TokenError::Malformed => RejectCode::BadSignature,
        _ => RejectCode::MalformedHello,
    }
}

#[cfg(test)]
mod tests {
    use outpost_arena::{self as arena, ArenaConfig};
    use outpost_protocol::*;

    use super::*;

    fn setup() -> (TokenSigner, Admission) {
        let signer = TokenSigner::from_seed(&[4; 32]);
        let admission = Admission::new(signer.public_key(), "edge-1".into(), 0, 0).expect("key");
        (signer, admission)
    }

    fn hello(signer: &TokenSigner, nonce: u8, expires_at_ms: u64, key: Option<[u8; 16]>) -> Hello {
        issued(signer, nonce, 0, expires_at_ms, key)
    }

    fn issued(
        signer: &TokenSigner,
        nonce: u8,
        issued_at_ms: u64,
        expires_at_ms: u64,
        key: Option<[u8; 16]>,
    ) -> Hello {
        let token = ConnectToken {
            player_id: PlayerId(1),
            match_id: MatchId(2),
            team: 0,
            edge_id: "edge-1".into(),
            config: arena::config(&ArenaConfig::default()),
            issued_at_ms,
            expires_at_ms,
            nonce: [nonce; 16],
        };
        Hello {
            protocol_version: PROTOCOL_VERSION,
            connect_token: signer.sign(&token).expect("signs"),
            reconnect_key: key,
        }
    }

    #[test]
    fn first_use_is_admitted_and_reuse_refused() {
        let (signer, mut admission) = setup();
        let first = admission
            .admit(&hello(&signer, 1, 100, None), 10, [7; 16])
            .expect("admitted");
        assert!(!first.reconnect);
        assert_eq!(first.reconnect_key, [7; 16]);
        assert_eq!(
            admission.admit(&hello(&signer, 1, 100, None), 11, [8; 16]),
            Err(RejectCode::TokenReused)
        );
    }

    #[test]
    fn reconnect_needs_the_issued_key_and_survives_expiry() {
        let (signer, mut admission) = setup();
        admission
            .admit(&hello(&signer, 1, 100, None), 10, [7; 16])
            .expect("admitted");
        let again = admission.admit(&hello(&signer, 1, 100, Some([7; 16])), 500, [0; 16]);
        assert!(again.expect("reconnect admitted").reconnect);
        assert_eq!(
            admission.admit(&hello(&signer, 1, 100, Some([6; 16])), 500, [0; 16]),
            Err(RejectCode::TokenReused)
        );
        // A key for a token never used is worthless.
        assert_eq!(
            admission.admit(&hello(&signer, 2, 100, Some([7; 16])), 50, [0; 16]),
            Err(RejectCode::TokenReused)
        );
        // Past the reconnect window the nonce is forgotten, and the token is dead.
        assert_eq!(
            admission.admit(
                &hello(&signer, 1, 100, Some([7; 16])),
                100 + RECONNECT_WINDOW_MS,
                [0; 16]
            ),
            Err(RejectCode::TokenReused)
        );
    }

    #[test]
    fn token_errors_map_to_reject_codes() {
        let (signer, mut admission) = setup();
        assert_eq!(
            admission.admit(&hello(&signer, 1, 100, None), 100, [0; 16]),
            Err(RejectCode::Expired)
        );
        let forger = TokenSigner::from_seed(&[5; 32]);
        assert_eq!(
            admission.admit(&hello(&forger, 1, 100, None), 10, [0; 16]),
            Err(RejectCode::BadSignature)
        );
        let mut old = hello(&signer, 3, 100, None);
        old.protocol_version = 0;
        assert_eq!(
            admission.admit(&old, 10, [0; 16]),
            Err(RejectCode::VersionMismatch)
        );
        let other_edge = Admission::new(signer.public_key(), "edge-2".into(), 0, 0)
            .expect("key")
            .admit(&hello(&signer, 4, 100, None), 10, [0; 16]);
        assert_eq!(other_edge, Err(RejectCode::WrongEdge));
    }

    /// Regression test for tokens after a restart: nonces live in memory, so an unexpired
    /// token worked again on a restarted edge. Now a token issued before the edge started
    /// is refused, and the time checks allow a documented leeway.
    #[test]
    fn a_token_issued_before_the_edge_started_is_refused() {
        let signer = TokenSigner::from_seed(&[4; 32]);
        let started_at = 100_000;
        let mut restarted =
            Admission::new(signer.public_key(), "edge-1".into(), started_at, 5_000).expect("key");
        let before = issued(&signer, 1, started_at - 6_000, 200_000, None);
        assert_eq!(
            restarted.admit(&before, started_at + 10, [0; 16]),
            Err(RejectCode::IssuedBeforeStart)
        );
        // Nor with its reconnect key from the old process.
        let again = issued(&signer, 1, started_at - 6_000, 200_000, Some([7; 16]));
        assert_eq!(
            restarted.admit(&again, started_at + 10, [0; 16]),
            Err(RejectCode::IssuedBeforeStart)
        );
        // Within the leeway of the start, and after it, tokens are good.
        let near = issued(&signer, 2, started_at - 4_000, 200_000, None);
        assert!(restarted.admit(&near, started_at + 10, [0; 16]).is_ok());
        let after = issued(&signer, 3, started_at + 5, 200_000, None);
        assert!(restarted.admit(&after, started_at + 10, [0; 16]).is_ok());
    }

    #[test]
    fn clocks_may_disagree_by_the_leeway_and_no_more() {
        let signer = TokenSigner::from_seed(&[4; 32]);
        let mut admission =
            Admission::new(signer.public_key(), "edge-1".into(), 0, 5_000).expect("key");
        let now = 1_000_000;
        // Expired 4 s ago by this edge's clock: within the leeway.
        let late = issued(&signer, 1, now - 60_000, now - 4_000, None);
        assert!(admission.admit(&late, now, [0; 16]).is_ok());
        let too_late = issued(&signer, 2, now - 60_000, now - 6_000, None);
        assert_eq!(
            admission.admit(&too_late, now, [0; 16]),
            Err(RejectCode::Expired)
        );
        // Issued 4 s in this edge's future: fine; 10 s: a clock far off, refused.
        let early = issued(&signer, 3, now + 4_000, now + 60_000, None);
        assert!(admission.admit(&early, now, [0; 16]).is_ok());
        let too_early = issued(&signer, 4, now + 10_000, now + 60_000, None);
        assert_eq!(
            admission.admit(&too_early, now, [0; 16]),
            Err(RejectCode::NotYetValid)
        );
    }

    /// Regression test for a rotated connect-token key: the edge took the key once at
    /// start, so every token signed with the cloud's new key was refused until a restart.
    #[test]
    fn a_rotated_key_admits_players_and_the_old_one_overlaps() {
        let old = TokenSigner::from_seed(&[4; 32]);
        let new = TokenSigner::from_seed(&[5; 32]);
        let mut admission = Admission::new(old.public_key(), "edge-1".into(), 0, 0).expect("key");
        let first = hello(&old, 1, 1_000_000, None);
        admission.admit(&first, 10, [7; 16]).expect("old key");
        assert_eq!(
            admission.admit(&hello(&new, 2, 1_000_000, None), 10, [0; 16]),
            Err(RejectCode::BadSignature),
            "not yet published"
        );
        assert!(admission.trust(&[new.public_key()], 20));
        assert!(!admission.trust(&[new.public_key()], 21), "nothing new");
        admission
            .admit(&hello(&new, 2, 1_000_000, None), 30, [0; 16])
            .expect("the new key admits");
        // The old key still admits during the overlap, then only reconnects.
        admission
            .admit(&hello(&old, 3, 1_000_000, None), 40, [0; 16])
            .expect("overlap");
        let later = 20 + KEY_OVERLAP_MS;
        assert_eq!(
            admission.admit(&hello(&old, 4, 10_000_000, None), later, [0; 16]),
            Err(RejectCode::BadSignature)
        );
        let reconnect = hello(&old, 1, 1_000_000, Some([7; 16]));
        assert!(admission.admit(&reconnect, later, [0; 16]).is_ok());
    }
}
