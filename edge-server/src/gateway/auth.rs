//! Access tokens checked at the edge: EdDSA JWTs validated against the cloud's JWKS,
//! cached, and refreshed when a token names an unknown `kid` (at most once per
//! `refresh_every`, so forged kids cannot make the edge hammer the cloud). Keys the cloud
//! still publishes during a rotation's overlap stay accepted.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub &'static str);

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    x: String,
    #[serde(default)]
    alg: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// The cloud's access-token keys, as the edge knows them.
pub struct KeyCache {
    http: reqwest::Client,
    jwks_url: String,
    issuer: String,
    audience: String,
    refresh_every: Duration,
    keys: RwLock<Keys>,
    refresh: tokio::sync::Mutex<()>,
}

impl KeyCache {
    /// Keys from `{origin}/.well-known/jwks.json`, for tokens of `issuer` and `audience`.
    pub fn new(
        http: reqwest::Client,
        origin: &str,
        issuer: &str,
        audience: &str,
        refresh_every: Duration,
    ) -> Self {
        Self {
            http,
            jwks_url: format!("{}/.well-known/jwks.json", origin.trim_end_matches('/')),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            refresh_every,
            keys: RwLock::new(Keys {
                by_kid: HashMap::new(),
                fetched_at: None,
            }),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Fetches the JWKS now (unless fetched within `refresh_every`).
    pub async fn refresh(&self) -> Result<(), String> {
        let _one_at_a_time = self.refresh.lock().await;
        let recent = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.refresh_every);
        if recent {
            return Ok(());
        }
        let fetched = async {
            self.http
                .get(&self.jwks_url)
                .send()
                .await?
                .error_for_status()?
                .json::<Jwks>()
                .await
        }
        .await;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        // Rate-limit failures as well as successes.
        keys.fetched_at = Some(Instant::now());
        let jwks = fetched.map_err(|e| e.to_string())?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        keys.by_kid = jwks
            .keys
            .into_iter()
            // Connect-token keys never sign access tokens.
            .filter(|k| {
                !k.kid.starts_with("connect-") && k.alg.as_deref().is_none_or(|a| a == "EdDSA")
            })
            .filter_map(|k| {
                let x = b64.decode(&k.x).ok()?;
                (x.len() == 32).then(|| (k.kid, DecodingKey::from_ed_der(&x)))
            })
            .collect();
        Ok(())
    }

    /// The player a bearer token names, checked offline: EdDSA only, a known `kid`, and
    /// `exp`, `iss`, `aud`, `sub` required with the configured values.
    pub async fn player(&self, authorization: Option<&str>) -> Result<u64, Refused> {
        let token = authorization
            .ok_or(Refused("missing bearer token"))?
            .strip_prefix("Bearer ")
            .ok_or(Refused("expected a Bearer token"))?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused("malformed token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(Refused("algorithm not accepted"));
        }
        let kid = header.kid.ok_or(Refused("token names no key"))?;
        if kid.len() > 64 {
            return Err(Refused("unknown key"));
        }
        let known = |kid: &str| {
            self.keys
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .by_kid
                .get(kid)
                .cloned()
        };
        let key = match known(&kid) {
            Some(key) => key,
            None => {
                // A rotation the edge has not seen yet, or a forged kid: look once.
                let _ = self.refresh().await;
                known(&kid).ok_or(Refused("unknown key"))?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refused("token expired"),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => Refused("wrong audience"),
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => Refused("wrong issuer"),
                _ => Refused("invalid token"),
            })?
            .claims;
        claims
            .sub
            .parse()
            .map_err(|_| Refused("token subject is not a player id"))
    }
}
