//! Signing keys for access tokens: Ed25519, each with a `kid`; one current, recent ones
//! still accepted (and published) during an overlap window after a rotation.

use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::CloudConfig;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): followed by the 32-byte seed,
/// it is the DER the JWT library takes.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The player id, as a decimal string.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
}

/// What a party consent says: player `sub` agrees to play in `leader`'s party in
/// `mode`, until `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentClaims {
    /// The consenting player, as a decimal string.
    pub sub: String,
    /// The party leader (who files the ticket).
    pub leader: u64,
    /// The game mode.
    pub mode: String,
    /// Issuer.
    pub iss: String,
    /// Audience: the access tokens' with `/party-consent` after it.
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public: [u8; 32],
    /// When this key stopped being current (None while current).
    retired_at: Option<SystemTime>,
}

impl Key {
    fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let public = signing.verifying_key().to_bytes();
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let kid = URL_SAFE_NO_PAD.encode(&sha2_256(&public)[..8]);
        Self {
            kid,
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(&public),
            public,
            retired_at: None,
        }
    }
}

fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A JSON Web Key Set, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One published key (OKP / Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// Algorithm: `EdDSA`.
    pub alg: String,
    /// Use: `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenRejected(pub &'static str);

/// The signing keys of the cloud.
pub struct KeyRing {
    keys: RwLock<Vec<Key>>,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    overlap: Duration,
}

impl KeyRing {
    /// A ring with one fresh random key.
    pub fn generate(config: &CloudConfig) -> Self {
        Self::from_seed(config, rand::random())
    }

    /// A ring whose current key comes from a 32-byte seed (from a secret file).
    pub fn from_seed(config: &CloudConfig, seed: [u8; 32]) -> Self {
        Self {
            keys: RwLock::new(vec![Key::from_seed(seed)]),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl: config.access_ttl,
            overlap: config.key_overlap,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Key>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a new key current; the old one is still accepted and published for the
    /// overlap window. Keys past it are dropped.
    pub fn rotate(&self, seed: [u8; 32]) {
        let now = SystemTime::now();
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        for key in keys.iter_mut() {
            key.retired_at.get_or_insert(now);
        }
        keys.retain(|k| {
            k.retired_at
                .is_none_or(|at| now.duration_since(at).unwrap_or_default() < self.overlap)
        });
        keys.push(Key::from_seed(seed));
    }

    /// The current key's id.
    pub fn current_kid(&self) -> String {
        self.read()
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    /// Signs claims with the current key, its `kid` in the header.
    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let keys = self.read();
        let key = keys
            .last()
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidEddsaKey)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
    }

    /// Issues an access token for a player; returns it and its lifetime in seconds.
    pub fn issue(&self, player_id: u64) -> Result<(String, u64), jsonwebtoken::errors::Error> {
        let now = now_secs();
        let claims = AccessClaims {
            sub: player_id.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + self.access_ttl.as_secs(),
            iat: now,
        };
        Ok((self.sign(&claims)?, self.access_ttl.as_secs()))
    }

    /// Checks a token: algorithm pinned to EdDSA, a known `kid`, the signature, and
    /// required `exp`, `iss` and `aud` with the expected values. (The JWT library checks
    /// `aud` only when present unless told it is required; here it is required.)
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenRejected> {
        self.check(token, &self.audience)
    }

    /// The audience of party consents: not the access tokens', so a consent can never be
    /// used as its signer's access token.
    fn consent_audience(&self) -> String {
        format!("{}/party-consent", self.audience)
    }

    /// Issues `member`'s consent to be in `leader`'s party for `mode`, good for `ttl`.
    pub fn issue_consent(
        &self,
        member: u64,
        leader: u64,
        mode: &str,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = now_secs();
        self.sign(&ConsentClaims {
            sub: member.to_string(),
            leader,
            mode: mode.to_owned(),
            iss: self.issuer.clone(),
            aud: self.consent_audience(),
            exp: now + ttl.as_secs(),
            iat: now,
        })
    }

    /// Checks a party consent as [`KeyRing::verify`] checks access tokens.
    pub fn verify_consent(&self, token: &str) -> Result<ConsentClaims, TokenRejected> {
        self.check(token, &self.consent_audience())
    }

    fn check<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, TokenRejected> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenRejected("malformed token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenRejected("algorithm not accepted"));
        }
        let kid = header.kid.ok_or(TokenRejected("token has no kid"))?;
        let keys = self.read();
        let now = SystemTime::now();
        let key = keys
            .iter()
            .filter(|k| {
                k.retired_at
                    .is_none_or(|at| now.duration_since(at).unwrap_or_default() < self.overlap)
            })
            .find(|k| k.kid == kid)
            .ok_or(TokenRejected("unknown signing key"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenRejected("token expired"),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => TokenRejected("wrong audience"),
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenRejected("wrong issuer"),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenRejected("bad signature"),
                _ => TokenRejected("invalid token"),
            })
    }

    /// The published keys: the current one and those within their overlap window.
    pub fn jwks(&self) -> Jwks {
        let now = SystemTime::now();
        Jwks {
            keys: self
                .read()
                .iter()
                .filter(|k| {
                    k.retired_at
                        .is_none_or(|at| now.duration_since(at).unwrap_or_default() < self.overlap)
                })
                .map(|k| Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: URL_SAFE_NO_PAD.encode(k.public),
                    kid: k.kid.clone(),
                    alg: "EdDSA".into(),
                    use_: "sig".into(),
                })
                .collect(),
        }
    }
}
