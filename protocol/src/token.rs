//! Connect tokens: the cloud's signed permission for one player to join one match on one
//! edge. The edge verifies them offline with the cloud's public key; no call back to the
//! cloud is needed to admit a player.
//!
//! One signature covers a whole match: the signed body (a [`MatchGrant`]) lists every
//! seat as a player id and a commitment — the first 16 bytes of SHA-256 over a 16-byte
//! secret. Each player's token is that body and signature plus their seat number and
//! their secret, which only they get; the edge checks the secret against the seat's
//! commitment, so one player's token cannot admit another. Minting a match of eight costs
//! one Ed25519 signature instead of eight. The secret is also the token's nonce: the edge
//! admits it once.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use wincode::config::Configuration;
use wincode::containers;
use wincode::len::BincodeLen;
use wincode::{SchemaRead, SchemaWrite};

use crate::config::{ConfigError, MatchConfig};
use crate::ids::{MatchId, PlayerId};

/// Largest encoded token body, in bytes (a grant of 128 seats fits).
pub const MAX_TOKEN_BODY: usize = 4096;
/// Most seats one grant holds.
pub const MAX_SEATS: usize = 128;
/// Longest edge id, in bytes.
pub const MAX_EDGE_ID_LEN: usize = 64;

/// Whether an edge id is well formed: 1..=64 of `A-Z a-z 0-9 . _ -` (the pattern
/// [`EDGE_ID_PATTERN`] gives the HTTP API's schema).
pub fn valid_edge_id(id: &str) -> bool {
    (1..=MAX_EDGE_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// [`valid_edge_id`] as a regular expression.
pub const EDGE_ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";
/// Domain separation: signatures over tokens can never be confused with any other
/// signature made with the same key.
const SIGNING_CONTEXT: &[u8] = b"outpost-connect-token/v3\0";
/// Domain separation of seat commitments.
const SEAT_CONTEXT: &[u8] = b"outpost-seat/v1\0";

type BodyLen = BincodeLen<MAX_TOKEN_BODY>;
type SignatureLen = BincodeLen<64>;
type SeatsLen = BincodeLen<{ MAX_SEATS * size_of::<Seat>() }>;
type Wire = Configuration<true, MAX_TOKEN_BODY>;
const WIRE: Wire = Wire::new();

/// What a connect token grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct ConnectToken {
    /// The player admitted.
    pub player_id: PlayerId,
    /// The match they may join.
    pub match_id: MatchId,
    /// The team matchmaking put them on (0 in a free-for-all); the mode seats them there.
    pub team: u8,
    /// The edge that must host it. At most [`MAX_EDGE_ID_LEN`] bytes.
    pub edge_id: String,
    /// How the match is played; the edge creates the match from this if it is new.
    pub config: MatchConfig,
    /// When the token was minted, milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
    /// When it stops being valid, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Random; the edge admits each nonce once.
    pub nonce: [u8; 16],
}

/// One seat of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct Seat {
    /// Whose seat.
    pub player_id: PlayerId,
    /// First 16 bytes of SHA-256 over the seat context and the player's secret.
    pub commitment: [u8; 16],
    /// The team matchmaking put them on (0 in a free-for-all).
    pub team: u8,
}

/// What one signature grants: seats in one match on one edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct MatchGrant {
    /// The match.
    pub match_id: MatchId,
    /// The edge that must host it. At most [`MAX_EDGE_ID_LEN`] bytes.
    pub edge_id: String,
    /// How the match is played.
    pub config: MatchConfig,
    /// When minted, milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
    /// When it stops being valid, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The seats, at most [`MAX_SEATS`].
    #[wincode(with = "containers::Vec<Seat, SeatsLen>")]
    pub seats: Vec<Seat>,
}

/// A player's token, as carried in [`crate::Hello`]: the match's signed grant, and which
/// seat is theirs with the secret that proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct SignedToken {
    /// The encoded [`MatchGrant`].
    #[wincode(with = "containers::Vec<u8, BodyLen>")]
    pub body: Vec<u8>,
    /// Ed25519 signature over the body (64 bytes).
    #[wincode(with = "containers::Vec<u8, SignatureLen>")]
    pub signature: Vec<u8>,
    /// This player's seat in the grant.
    pub seat: u16,
    /// The secret behind that seat's commitment (the player's alone).
    pub secret: [u8; 16],
}

/// The commitment to a seat secret.
pub fn seat_commitment(secret: &[u8; 16]) -> [u8; 16] {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(SEAT_CONTEXT);
    hasher.update(secret);
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The signature does not verify with the trusted key.
    #[error("token signature does not verify")]
    BadSignature,
    /// The signature verified but the body does not decode (a signer bug).
    #[error("token body is malformed")]
    Malformed,
    /// The token is past its expiry.
    #[error("token expired at {expires_at_ms} ms, now is {now_ms} ms")]
    Expired {
        /// Its expiry.
        expires_at_ms: u64,
        /// The time it was checked.
        now_ms: u64,
    },
    /// The token is for another edge.
    #[error("token is for edge `{0}`")]
    WrongEdge(String),
    /// The token's match configuration is out of bounds.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// The token could not be encoded (edge id or body too long).
    #[error("token too long to encode")]
    TooLong,
}

/// Mints tokens with the cloud's (or the dev tool's) private key.
pub struct TokenSigner {
    key: SigningKey,
}

impl TokenSigner {
    /// A signer from a 32-byte Ed25519 secret seed. The caller supplies the randomness.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The public key edges must trust.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs one player's token (a grant of one seat; the token's nonce is the seat's
    /// secret).
    pub fn sign(&self, token: &ConnectToken) -> Result<SignedToken, TokenError> {
        let mut tokens = self.sign_match(token, &[(token.player_id, token.team, token.nonce)])?;
        tokens.pop().ok_or(TokenError::TooLong)
    }

    /// Signs a whole match once: the match, edge, configuration and times of `terms`
    /// (its `player_id`, `team` and `nonce` are not used), one seat per
    /// `(player, team, secret)`.
    /// Returns each player's token, in the order given. The caller supplies the secrets
    /// (random, 16 bytes each).
    pub fn sign_match(
        &self,
        terms: &ConnectToken,
        seats: &[(PlayerId, u8, [u8; 16])],
    ) -> Result<Vec<SignedToken>, TokenError> {
        if terms.edge_id.len() > MAX_EDGE_ID_LEN || seats.is_empty() || seats.len() > MAX_SEATS {
            return Err(TokenError::TooLong);
        }
        let grant = MatchGrant {
            match_id: terms.match_id,
            edge_id: terms.edge_id.clone(),
            config: terms.config.clone(),
            issued_at_ms: terms.issued_at_ms,
            expires_at_ms: terms.expires_at_ms,
            seats: seats
                .iter()
                .map(|(player_id, team, secret)| Seat {
                    player_id: *player_id,
                    commitment: seat_commitment(secret),
                    team: *team,
                })
                .collect(),
        };
        let body = wincode::config::serialize(&grant, WIRE).map_err(|_| TokenError::TooLong)?;
        if body.len() > MAX_TOKEN_BODY {
            return Err(TokenError::TooLong);
        }
        let signature = self.key.sign(&signed_message(&body)).to_bytes().to_vec();
        Ok(seats
            .iter()
            .enumerate()
            .map(|(seat, (_, _, secret))| SignedToken {
                body: body.clone(),
                signature: signature.clone(),
                seat: seat as u16,
                secret: *secret,
            })
            .collect())
    }
}

/// Checks tokens offline with a trusted public key.
#[derive(Clone)]
pub struct TokenVerifier {
    key: VerifyingKey,
}

impl TokenVerifier {
    /// A verifier trusting this Ed25519 public key; `None` if the bytes are not a valid key.
    pub fn new(public_key: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(public_key)
            .ok()
            .map(|key| Self { key })
    }

    /// Verifies the signature, then the body's expiry, edge and configuration.
    /// Replay (nonce reuse) is the caller's to check: it needs state.
    pub fn verify(
        &self,
        token: &SignedToken,
        now_ms: u64,
        edge_id: &str,
    ) -> Result<ConnectToken, TokenError> {
        let claims = self.verify_signature(token)?;
        if now_ms >= claims.expires_at_ms {
            return Err(TokenError::Expired {
                expires_at_ms: claims.expires_at_ms,
                now_ms,
            });
        }
        if claims.edge_id != edge_id {
            return Err(TokenError::WrongEdge(claims.edge_id));
        }
        claims.config.validate()?;
        Ok(claims)
    }

    /// Verifies only the signature and decodes the body: for reconnects, where the token
    /// may have expired since it was first used but the reconnect key proves possession.
    pub fn verify_signature(&self, token: &SignedToken) -> Result<ConnectToken, TokenError> {
        let signature: [u8; 64] = token
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| TokenError::BadSignature)?;
        let signature = Signature::from_bytes(&signature);
        self.key
            .verify_strict(&signed_message(&token.body), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let grant: MatchGrant = wincode::config::deserialize_exact(&token.body, WIRE)
            .map_err(|_| TokenError::Malformed)?;
        if grant.edge_id.len() > MAX_EDGE_ID_LEN {
            return Err(TokenError::Malformed);
        }
        let seat = grant
            .seats
            .get(usize::from(token.seat))
            .ok_or(TokenError::BadSignature)?;
        let proof = seat_commitment(&token.secret);
        // Compared without an early exit.
        let differs = proof
            .iter()
            .zip(&seat.commitment)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs != 0 {
            return Err(TokenError::BadSignature);
        }
        Ok(ConnectToken {
            player_id: seat.player_id,
            match_id: grant.match_id,
            team: seat.team,
            edge_id: grant.edge_id,
            config: grant.config,
            issued_at_ms: grant.issued_at_ms,
            expires_at_ms: grant.expires_at_ms,
            nonce: token.secret,
        })
    }
}

impl SignedToken {
    /// The token as text, for JSON:
    /// `base64url(body).base64url(signature).seat.base64url(secret)`.
    pub fn to_text(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}.{}",
            b64.encode(&self.body),
            b64.encode(&self.signature),
            self.seat,
            b64.encode(self.secret)
        )
    }

    /// Reads [`SignedToken::to_text`]'s form; `None` if it is not that form or too long.
    pub fn from_text(text: &str) -> Option<Self> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if text.len() > 2 * MAX_TOKEN_BODY {
            return None;
        }
        let mut parts = text.split('.');
        let (body, signature, seat, secret) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let token = Self {
            body: b64.decode(body).ok()?,
            signature: b64.decode(signature).ok()?,
            seat: seat.parse().ok()?,
            secret: b64.decode(secret).ok()?.try_into().ok()?,
        };
        (token.body.len() <= MAX_TOKEN_BODY && token.signature.len() == 64).then_some(token)
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(body);
    message
}
