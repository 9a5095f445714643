//! Bearer API keys, kept only as SHA-256 digests, and per-key ownership of threads.
//!
//! With keys configured every request needs `Authorization: Bearer <key>`; the key's
//! *owner id* (the first 16 hex digits of its digest) is recorded on each thread it
//! creates, and a thread owned by another key is reported as not found — the same 404 as
//! an id that never existed, so ids cannot be probed. Without keys the server is open
//! (loopback development) and threads have no owner.
//!
//! The owner id lives in the thread's metadata under [`OWNER_KEY`]: it is stored and
//! deleted atomically with the thread, in every store, and survives restarts. Keys that
//! start with [`RESERVED_PREFIX`] are hidden from responses and refused in requests.

use std::collections::HashSet;
use std::fmt::Write as _;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ring::digest::{SHA256, digest};

use crate::error::ApiError;
use crate::state::AppState;

/// Metadata keys the server keeps for itself.
pub const RESERVED_PREFIX: &str = "_clarion";
/// The metadata key holding a thread's owner id.
pub const OWNER_KEY: &str = "_clarion_owner";

/// The accepted keys, as digests.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: HashSet<String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

impl ApiKeys {
    /// No keys: every request is accepted and threads have no owner.
    #[must_use]
    pub fn open() -> Self {
        Self::default()
    }

    /// The given keys (blank ones ignored); only their digests are kept.
    #[must_use]
    pub fn new<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Self {
        Self {
            digests: keys
                .into_iter()
                .map(|k| k.as_ref().trim().to_owned())
                .filter(|k| !k.is_empty())
                .map(|k| hex_digest(&k))
                .collect(),
        }
    }

    /// Keys from a comma- or newline-separated list (as in an environment variable).
    #[must_use]
    pub fn parse(list: &str) -> Self {
        Self::new(list.split([',', '\n']))
    }

    /// Keys from a key file: one per line, either the key itself or `sha256:` and the
    /// 64 hex digits of its SHA-256 digest (so the file need not hold a secret:
    /// `printf %s "$KEY" | sha256sum`); blank lines and `#` comments are skipped. The
    /// error names the line.
    pub fn from_file_text(text: &str) -> Result<Self, String> {
        let mut digests = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_prefix("sha256:") {
                Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    digests.insert(hex.to_ascii_lowercase());
                }
                Some(_) => {
                    return Err(format!(
                        "line {}: `sha256:` must be followed by the 64 hex digits of the key's SHA-256 digest",
                        n + 1
                    ));
                }
                None => {
                    digests.insert(hex_digest(line));
                }
            }
        }
        Ok(Self { digests })
    }

    /// These keys and `other`'s.
    #[must_use]
    pub fn union(mut self, other: Self) -> Self {
        self.digests.extend(other.digests);
        self
    }

    /// Whether any key is configured.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// How many keys are configured.
    #[must_use]
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether no key is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The caller a request's `Authorization` header identifies.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller { owner: None });
        }
        let Some(header) = authorization else {
            return Err(ApiError::unauthorized(
                "You didn't provide an API key. Send it as `Authorization: Bearer YOUR_KEY`.",
            ));
        };
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        let hashed = hex_digest(key);
        if key.is_empty() || !self.digests.contains(&hashed) {
            return Err(ApiError::unauthorized(
                "Incorrect API key provided. Use a key configured for this server.",
            ));
        }
        Ok(Caller {
            owner: Some(hashed[..16].to_owned()),
        })
    }
}

fn hex_digest(key: &str) -> String {
    let hash = digest(&SHA256, key.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in hash.as_ref() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Who is calling: the owner id of their key, or `None` on an open server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's owner id.
    pub owner: Option<String>,
}

impl Caller {
    /// Whether this caller may see a thread with this owner id.
    #[must_use]
    pub fn may_see(&self, thread_owner: Option<&str>) -> bool {
        match &self.owner {
            None => true,
            Some(owner) => thread_owner == Some(owner.as_str()),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = match state.keys().caller(header) {
            Ok(caller) => caller,
            Err(refused) => {
                // Guessing keys costs tokens too: failed attempts share one bucket per
                // client address, so a wrong key is 429 before it is another 401.
                let peer = parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
                if let (Some(limiter), Some(peer)) = (state.limiter(), peer) {
                    limiter.check(&format!("address {}", peer.0.ip()))?;
                }
                return Err(refused);
            }
        };
        if let Some(limiter) = state.limiter() {
            limiter.check(caller.owner.as_deref().unwrap_or("open"))?;
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_holds_keys_or_their_digests() {
        // sha256("sk-b")
        let digest = hex_digest("sk-b");
        let text = format!(
            "# team keys\nsk-a\n\n  sha256:{}  \n",
            digest.to_uppercase()
        );
        let keys = ApiKeys::from_file_text(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.len(), 2);
        assert!(keys.caller(Some("Bearer sk-a")).is_ok());
        assert!(keys.caller(Some("Bearer sk-b")).is_ok(), "by digest");
        assert!(keys.caller(Some("Bearer sk-c")).is_err());
        assert_eq!(
            ApiKeys::from_file_text("sk-a\nsha256:abc\n")
                .err()
                .as_deref(),
            Some(
                "line 2: `sha256:` must be followed by the 64 hex digits of the key's SHA-256 digest"
            )
        );
        let both = keys.union(ApiKeys::parse("sk-d"));
        assert_eq!(both.len(), 3);
    }

    #[test]
    fn keys_are_checked_by_digest_and_owners_differ() {
        let keys = ApiKeys::parse("sk-a, sk-b\n");
        assert_eq!(keys.len(), 2);
        assert!(format!("{keys:?}").contains("2 keys"), "no key in Debug");
        let a = keys
            .caller(Some("Bearer sk-a"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let b = keys
            .caller(Some("Bearer sk-b"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(a, b);
        assert!(a.may_see(a.owner.as_deref()));
        assert!(!a.may_see(b.owner.as_deref()));
        assert!(!a.may_see(None));
        assert_eq!(
            keys.caller(Some("Bearer sk-c"))
                .map_err(|e| e.status.as_u16()),
            Err(401)
        );
        assert_eq!(
            keys.caller(None).map_err(|e| e.code),
            Err(Some("invalid_api_key"))
        );
        let open = ApiKeys::open();
        assert_eq!(open.caller(None), Ok(Caller { owner: None }));
    }
}
