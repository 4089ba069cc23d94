//! Connect tokens: the cloud's signed permission for one player to join one match on one
//! edge. The edge verifies them offline with the cloud's public key; no call back to the
//! cloud is needed to admit a player.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use wincode::config::Configuration;
use wincode::containers;
use wincode::len::BincodeLen;
use wincode::{SchemaRead, SchemaWrite};

use crate::config::{ConfigError, MatchConfig};
use crate::ids::{MatchId, PlayerId};

/// Largest encoded token body, in bytes.
pub const MAX_TOKEN_BODY: usize = 1024;
/// Longest edge id, in bytes.
pub const MAX_EDGE_ID_LEN: usize = 64;
/// Domain separation: signatures over tokens can never be confused with any other
/// signature made with the same key.
const SIGNING_CONTEXT: &[u8] = b"outpost-connect-token/v1\0";

type BodyLen = BincodeLen<MAX_TOKEN_BODY>;
type SignatureLen = BincodeLen<64>;
type Wire = Configuration<true, MAX_TOKEN_BODY>;
const WIRE: Wire = Wire::new();

/// What a connect token grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct ConnectToken {
    /// The player admitted.
    pub player_id: PlayerId,
    /// The match they may join.
    pub match_id: MatchId,
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

/// A token body and its Ed25519 signature, as carried in [`crate::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, SchemaWrite, SchemaRead)]
pub struct SignedToken {
    /// The encoded [`ConnectToken`].
    #[wincode(with = "containers::Vec<u8, BodyLen>")]
    pub body: Vec<u8>,
    /// Ed25519 signature over the body (64 bytes).
    #[wincode(with = "containers::Vec<u8, SignatureLen>")]
    pub signature: Vec<u8>,
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

    /// Signs a token.
    pub fn sign(&self, token: &ConnectToken) -> Result<SignedToken, TokenError> {
        if token.edge_id.len() > MAX_EDGE_ID_LEN {
            return Err(TokenError::TooLong);
        }
        let body = wincode::config::serialize(token, WIRE).map_err(|_| TokenError::TooLong)?;
        if body.len() > MAX_TOKEN_BODY {
            return Err(TokenError::TooLong);
        }
        let signature = self.key.sign(&signed_message(&body));
        Ok(SignedToken {
            body,
            signature: signature.to_bytes().to_vec(),
        })
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
        let claims: ConnectToken = wincode::config::deserialize_exact(&token.body, WIRE)
            .map_err(|_| TokenError::Malformed)?;
        if claims.edge_id.len() > MAX_EDGE_ID_LEN {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }
}

impl SignedToken {
    /// The token as text, for JSON: `base64url(body).base64url(signature)`.
    pub fn to_text(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(&self.body), b64.encode(&self.signature))
    }

    /// Reads [`SignedToken::to_text`]'s form; `None` if it is not that form or too long.
    pub fn from_text(text: &str) -> Option<Self> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if text.len() > 2 * MAX_TOKEN_BODY {
            return None;
        }
        let (body, signature) = text.split_once('.')?;
        let token = Self {
            body: b64.decode(body).ok()?,
            signature: b64.decode(signature).ok()?,
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
