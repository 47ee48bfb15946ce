//! The gateway's access tokens (SPEC §3.2): the button window, one token per
//! press, only a hash of each token kept, constant-time verification, and
//! `last_used` / `ip_address` kept current in memory.
//!
//! Sans-I/O like the rest of core: the caller passes `now_ms` and the random
//! token text, persists the [`TokenRecord`]s this returns before answering,
//! and flushes [`TokenRegistry::take_dirty`] now and then, so a request that
//! only *uses* a token costs no disk write (SPEC §3.2: "without a disk write
//! on every request"). A crash may lose the last few seconds of `last_used`
//! updates; it never loses a token or a revocation.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a press of the gateway button keeps the window open (SPEC §3.2).
pub const BUTTON_WINDOW_MS: i64 = 120_000;

/// Most tokens kept at once. SPEC gap: the gateway names no limit; a venue
/// has a few POS terminals and consoles, and verification scans every token
/// (constant time), so the list is kept small. Generating past it is a 409.
pub const MAX_TOKENS: usize = 256;

/// The exact 403 of a generate request outside a window (SPEC §3.2).
pub const WINDOW_CLOSED: &str = "press the gateway button, then request a token within 120 seconds";

/// One access token, as kept (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// `default`, `default-2`, …: how the token is listed and revoked.
    pub name: String,
    /// SHA-256 of the token: enough to recognise it, useless to a thief.
    pub hash: [u8; 32],
    /// When it was generated, ms since the epoch.
    pub created_ms: i64,
    /// When it last authenticated a request (`null` until then).
    pub last_used_ms: Option<i64>,
    /// The peer address of that request.
    pub ip: Option<String>,
}

/// What the store must persist for a change of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRecord {
    /// Insert or replace this token's row.
    Put(AccessToken),
    /// Delete the row of this name.
    Delete(String),
}

/// Why a token request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No button window is open (403).
    #[error("{WINDOW_CLOSED}")]
    WindowClosed,
    /// [`MAX_TOKENS`] tokens exist already (409).
    #[error("too many access tokens ({MAX_TOKENS}); revoke one first")]
    TooMany,
    /// No token has this name (404).
    #[error("no access token named {0:?}")]
    NotFound(String),
}

impl TokenError {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> u16 {
        match self {
            TokenError::WindowClosed => 403,
            TokenError::TooMany => 409,
            TokenError::NotFound(_) => 404,
        }
    }
}

/// SHA-256 of a presented token.
pub fn hash_token(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The registry of access tokens and the button window.
#[derive(Debug, Default)]
pub struct TokenRegistry {
    /// Every token, in creation order (the list order).
    tokens: Vec<AccessToken>,
    /// Which tokens have `last_used` / `ip` changes not yet on disk.
    dirty: Vec<bool>,
    /// The open window's end, ms since the epoch.
    window_until_ms: Option<i64>,
}

impl TokenRegistry {
    /// A registry holding the stored tokens (no window open).
    pub fn restore(mut tokens: Vec<AccessToken>) -> Self {
        tokens.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        let dirty = vec![false; tokens.len()];
        TokenRegistry {
            tokens,
            dirty,
            window_until_ms: None,
        }
    }

    /// The button was pressed: a window opens (or restarts) for 120 s.
    pub fn press_button(&mut self, now_ms: i64) {
        self.window_until_ms = Some(now_ms + BUTTON_WINDOW_MS);
    }

    /// Whether a window is open at `now_ms`.
    pub fn window_open(&self, now_ms: i64) -> bool {
        self.window_until_ms.is_some_and(|until| now_ms < until)
    }

    /// Generates the token `token` (the caller's random text) inside an open
    /// window, which closes: one token per press. Returns the new entry and
    /// its record to persist before answering.
    ///
    /// # Errors
    ///
    /// [`TokenError::WindowClosed`] outside a window, [`TokenError::TooMany`].
    pub fn generate(
        &mut self,
        token: &str,
        now_ms: i64,
    ) -> Result<(AccessToken, TokenRecord), TokenError> {
        if !self.window_open(now_ms) {
            return Err(TokenError::WindowClosed);
        }
        if self.tokens.len() >= MAX_TOKENS {
            return Err(TokenError::TooMany);
        }
        self.window_until_ms = None;
        let entry = AccessToken {
            name: self.free_name(),
            hash: hash_token(token.as_bytes()),
            created_ms: now_ms,
            last_used_ms: None,
            ip: None,
        };
        self.tokens.push(entry.clone());
        self.dirty.push(false);
        Ok((entry.clone(), TokenRecord::Put(entry)))
    }

    /// The lowest free name of `default`, `default-2`, `default-3`, …
    fn free_name(&self) -> String {
        let taken = |name: &str| self.tokens.iter().any(|t| t.name == name);
        if !taken("default") {
            return "default".into();
        }
        (2..)
            .map(|n| format!("default-{n}"))
            .find(|name| !taken(name))
            .unwrap_or_default()
    }

    /// Checks a presented token against every stored hash in constant time
    /// (no early exit, `subtle` comparisons), and on a match records the use.
    /// Returns the token's name.
    pub fn verify(&mut self, presented: &[u8], now_ms: i64, ip: Option<&str>) -> Option<&str> {
        let hash = hash_token(presented);
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.hash.ct_eq(&hash)) {
                found = Some(i);
            }
        }
        let i = found?;
        let t = &mut self.tokens[i];
        t.last_used_ms = Some(now_ms);
        if let Some(ip) = ip {
            if t.ip.as_deref() != Some(ip) {
                t.ip = Some(ip.to_owned());
            }
        }
        self.dirty[i] = true;
        Some(&self.tokens[i].name)
    }

    /// Whether `presented` is a stored token, without recording a use.
    pub fn contains(&self, presented: &[u8]) -> bool {
        let hash = hash_token(presented);
        let mut found = false;
        for t in &self.tokens {
            found |= bool::from(t.hash.ct_eq(&hash));
        }
        found
    }

    /// Revokes the token `name`: it is refused from now on.
    ///
    /// # Errors
    ///
    /// [`TokenError::NotFound`].
    pub fn revoke(&mut self, name: &str) -> Result<TokenRecord, TokenError> {
        let i = self
            .tokens
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| TokenError::NotFound(name.to_owned()))?;
        self.tokens.remove(i);
        self.dirty.remove(i);
        Ok(TokenRecord::Delete(name.to_owned()))
    }

    /// The records of uses not yet on disk (and forgets they were pending).
    pub fn take_dirty(&mut self) -> Vec<TokenRecord> {
        let mut out = Vec::new();
        for (t, d) in self.tokens.iter().zip(self.dirty.iter_mut()) {
            if std::mem::take(d) {
                out.push(TokenRecord::Put(t.clone()));
            }
        }
        out
    }

    /// Every token, in creation order.
    pub fn list(&self) -> &[AccessToken] {
        &self.tokens
    }
}

#[cfg(test)]
mod tests;
