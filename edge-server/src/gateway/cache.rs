//! What the gateway may keep and for how long: `Cache-Control` as a shared cache reads it
//! (RFC 9111), `ETag` revalidation, `Vary`, and the stale-while-revalidate /
//! stale-if-error extensions (RFC 5861). Pure: time is passed in.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use bytes::Bytes;

/// The directives a shared cache acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`: never kept.
    pub no_store: bool,
    /// `private`: for one user only; a shared cache never keeps it.
    pub private: bool,
    /// `no-cache`: kept, but revalidated before every use.
    pub no_cache: bool,
    /// `public`: may be kept even for an authenticated request.
    pub public: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds (overrides `max-age` in shared caches).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`, seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`, seconds.
    pub stale_if_error: Option<u64>,
}

impl Directives {
    /// Reads every `Cache-Control` header of a response.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for part in text.split(',') {
                let part = part.trim();
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part, None),
                };
                let seconds = arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "private" => d.private = true,
                    "no-cache" => d.no_cache = true,
                    "public" => d.public = true,
                    "max-age" => d.max_age = seconds,
                    "s-maxage" => d.s_maxage = seconds,
                    "stale-while-revalidate" => d.stale_while_revalidate = seconds,
                    "stale-if-error" => d.stale_if_error = seconds,
                    _ => {}
                }
            }
        }
        d
    }

    /// How long a stored response is fresh.
    pub fn freshness(&self) -> Duration {
        if self.no_cache {
            return Duration::ZERO;
        }
        Duration::from_secs(self.s_maxage.or(self.max_age).unwrap_or(0))
    }

    /// Whether a shared cache may store this response to a request that did (or did not)
    /// carry credentials.
    pub fn storable(&self, status: StatusCode, authenticated: bool, vary: &HeaderMap) -> bool {
        let explicit = self.max_age.is_some() || self.s_maxage.is_some() || self.no_cache;
        status == StatusCode::OK
            && !self.no_store
            && !self.private
            && explicit
            && (!authenticated || self.public || self.s_maxage.is_some())
            && !vary
                .get_all(header::VARY)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains('*')))
    }
}

/// A stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Status (always 200 today).
    pub status: StatusCode,
    /// End-to-end headers as the origin sent them.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// When it was stored or last revalidated.
    pub stored_at: Instant,
    /// Its directives.
    pub directives: Directives,
    /// The request headers `Vary` names, and their values when it was stored.
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
}

/// How a stored response may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Fresh: serve it.
    Fresh,
    /// Stale but within `stale-while-revalidate`: serve it and revalidate behind.
    StaleWhileRevalidate,
    /// Must be revalidated (or refetched) first.
    Revalidate,
}

impl Entry {
    /// Its age now.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// How it may be used at `now`.
    pub fn usable(&self, now: Instant) -> Use {
        let age = self.age(now);
        let fresh = self.directives.freshness();
        if age < fresh {
            Use::Fresh
        } else if !self.directives.no_cache
            && age
                < fresh + Duration::from_secs(self.directives.stale_while_revalidate.unwrap_or(0))
        {
            Use::StaleWhileRevalidate
        } else {
            Use::Revalidate
        }
    }

    /// Whether it may be served, stale, because the origin failed.
    pub fn usable_on_error(&self, now: Instant) -> bool {
        let limit = self.directives.freshness()
            + Duration::from_secs(self.directives.stale_if_error.unwrap_or(0));
        self.directives.stale_if_error.is_some() && self.age(now) < limit
    }

    /// Whether the request's headers match the ones the entry varies on.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| request.get(name) == value.as_ref())
    }

    /// The entry's `ETag`.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(header::ETAG)
    }

    /// Bytes it takes in the cache (body, headers, bookkeeping).
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        u32::try_from(self.body.len() + headers + 256).unwrap_or(u32::MAX)
    }
}

/// The request headers a response varies on, with the request's values.
pub fn vary_of(
    response: &HeaderMap,
    request: &HeaderMap,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    let mut out = Vec::new();
    for value in response.get_all(header::VARY) {
        let Ok(text) = value.to_str() else { continue };
        for name in text.split(',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                let value = request.get(&name).cloned();
                out.push((name, value));
            }
        }
    }
    out
}

/// Whether `If-None-Match` in `request` names `etag` (or `*`).
pub fn not_modified(request: &HeaderMap, etag: Option<&HeaderValue>) -> bool {
    let Some(etag) = etag.and_then(|e| e.to_str().ok()) else {
        return false;
    };
    request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t == etag || t.trim_start_matches("W/") == etag)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    fn entry(cache_control: &str, age: Duration) -> (Entry, Instant) {
        let now = Instant::now() + Duration::from_secs(3600);
        let h = headers(&[("cache-control", cache_control), ("etag", "\"v1\"")]);
        let entry = Entry {
            status: StatusCode::OK,
            directives: Directives::parse(&h),
            headers: h,
            body: Bytes::from_static(b"{}"),
            stored_at: now - age,
            vary: Vec::new(),
        };
        (entry, now)
    }

    #[test]
    fn directives_parse_and_decide_storage() {
        let d = Directives::parse(&headers(&[(
            "cache-control",
            "public, max-age=5, s-maxage=10, stale-while-revalidate=3, stale-if-error=60",
        )]));
        assert!(d.public);
        assert_eq!(d.freshness(), Duration::from_secs(10), "s-maxage wins");
        assert_eq!(
            (d.stale_while_revalidate, d.stale_if_error),
            (Some(3), Some(60))
        );
        let none = HeaderMap::new();
        assert!(d.storable(StatusCode::OK, false, &none));
        assert!(!d.storable(StatusCode::NOT_FOUND, false, &none));
        for refused in ["no-store, max-age=5", "private, max-age=5", ""] {
            let d = Directives::parse(&headers(&[("cache-control", refused)]));
            assert!(!d.storable(StatusCode::OK, false, &none), "{refused}");
        }
        let plain = Directives::parse(&headers(&[("cache-control", "max-age=5")]));
        assert!(plain.storable(StatusCode::OK, false, &none));
        assert!(
            !plain.storable(StatusCode::OK, true, &none),
            "authenticated needs public"
        );
        assert!(!plain.storable(StatusCode::OK, false, &headers(&[("vary", "*")])));
    }

    #[test]
    fn freshness_stale_while_revalidate_and_stale_if_error() {
        let cc = "max-age=5, stale-while-revalidate=5, stale-if-error=30";
        assert_eq!(
            entry(cc, Duration::from_secs(2))
                .0
                .usable(entry(cc, Duration::from_secs(2)).1),
            Use::Fresh
        );
        let (e, now) = entry(cc, Duration::from_secs(7));
        assert_eq!(e.usable(now), Use::StaleWhileRevalidate);
        let (e, now) = entry(cc, Duration::from_secs(12));
        assert_eq!(e.usable(now), Use::Revalidate);
        assert!(e.usable_on_error(now));
        let (e, now) = entry(cc, Duration::from_secs(40));
        assert!(!e.usable_on_error(now));
        let (e, now) = entry("no-cache, max-age=60", Duration::from_secs(1));
        assert_eq!(
            e.usable(now),
            Use::Revalidate,
            "no-cache always revalidates"
        );
    }

    #[test]
    fn etags_and_vary() {
        let (mut e, _) = entry("max-age=5", Duration::ZERO);
        assert!(not_modified(
            &headers(&[("if-none-match", "\"v0\", \"v1\"")]),
            e.etag()
        ));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"v2\"")]),
            e.etag()
        ));
        let response = headers(&[("vary", "accept-language")]);
        e.vary = vary_of(&response, &headers(&[("accept-language", "fr")]));
        assert!(e.matches(&headers(&[("accept-language", "fr")])));
        assert!(!e.matches(&headers(&[("accept-language", "de")])));
        assert!(!e.matches(&HeaderMap::new()));
    }
}
