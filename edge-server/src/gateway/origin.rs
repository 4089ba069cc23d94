//! Requests to the origin (the cloud API): what is forwarded, and the answer, buffered
//! when small enough to cache or share and streamed through otherwise. At most a
//! configured number of origin requests run at once (a streamed answer holds its place
//! until its body is done), so no flood of clients turns into a flood on the cloud.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What is forwarded to the origin.
#[derive(Clone)]
pub(super) struct Forward {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: IpAddr,
    pub player: Option<u64>,
}

/// An origin answer's body.
pub(super) enum Payload {
    /// Read in full: small enough to cache and to share with coalesced requests.
    Full(Bytes),
    /// Streamed through as it arrives (too large, or of unknown length), holding its
    /// place among the origin requests until done.
    Stream(Body),
}

/// One origin answer.
pub(super) struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Payload,
}

/// An origin answer read in full, shareable by every request that waited for it.
#[derive(Debug, Clone)]
pub(super) struct Shareable {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl From<Shareable> for Fetched {
    fn from(shared: Shareable) -> Self {
        Self {
            status: shared.status,
            headers: shared.headers,
            body: Payload::Full(shared.body),
        }
    }
}

impl Fetched {
    /// A copy for coalesced requests, if the body was read in full.
    pub fn shareable(&self) -> Option<Shareable> {
        match &self.body {
            Payload::Full(body) => Some(Shareable {
                status: self.status,
                headers: self.headers.clone(),
                body: body.clone(),
            }),
            Payload::Stream(_) => None,
        }
    }
}

/// Why the origin gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FetchError {
    /// It could not be reached (or failed mid-answer).
    Unreachable,
    /// It did not answer in time.
    Timeout,
    /// Its answer is larger than the gateway relays.
    TooLarge,
    /// As many origin requests as allowed are running, and none finished in time.
    Busy,
}

/// Hop-by-hop headers: never forwarded either way.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The origin and the bounds on talking to it.
pub(super) struct Origin {
    pub http: reqwest::Client,
    /// Base URL, no trailing slash.
    pub base: String,
    /// This edge's region, passed on as `X-Outpost-Region`.
    pub region: String,
    /// Largest answer relayed, bytes.
    pub max_response: usize,
    /// Largest answer read in full (and so cacheable and shareable), bytes.
    pub max_buffered: usize,
    /// One permit per origin request allowed at once.
    pub permits: Arc<Semaphore>,
    /// How long a request waits for a permit before it is answered 503.
    pub queue_wait: Duration,
}

impl Origin {
    /// One request to the origin.
    pub async fn fetch(&self, forward: &Forward) -> Result<Fetched, FetchError> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| FetchError::Busy)?
            .map_err(|_| FetchError::Busy)?;
        let url = format!("{}{}", self.base, forward.path_and_query);
        let mut request = self.http.request(forward.method.clone(), url);
        for (name, value) in &forward.headers {
            if !hop_by_hop(name)
                && name.as_str() != "x-forwarded-for"
                && !name.as_str().starts_with("x-outpost-")
            {
                request = request.header(name, value);
            }
        }
        let forwarded_for = match forward
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => format!("{earlier}, {}", forward.peer),
            None => forward.peer.to_string(),
        };
        request = request
            .header("x-forwarded-for", forwarded_for)
            .header("x-outpost-region", self.region.as_str());
        if let Some(player) = forward.player {
            request = request.header("x-outpost-player", player.to_string());
        }
        if !forward.body.is_empty() {
            request = request.body(forward.body.clone());
        }
        let response = request.send().await.map_err(fetch_error)?;
        let length = response.content_length();
        if length.is_some_and(|len| len > self.max_response as u64) {
            return Err(FetchError::TooLarge);
        }
        let status = response.status();
        let mut headers = HeaderMap::new();
        for (name, value) in response.headers() {
            if !hop_by_hop(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let body = match length {
            Some(len) if len <= self.max_buffered as u64 => {
                Payload::Full(response.bytes().await.map_err(fetch_error)?)
            }
            _ => {
                let body = axum::http::Response::from(response).into_body();
                Payload::Stream(Body::new(http_body_util::Limited::new(
                    Permitted {
                        body,
                        _permit: permit,
                    },
                    self.max_response,
                )))
            }
        };
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

fn fetch_error(err: reqwest::Error) -> FetchError {
    if err.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Unreachable
    }
}

/// A streamed origin body that holds its origin-request permit until it is done.
struct Permitted {
    body: reqwest::Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Permitted {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
