//! One redacting type for every secret (tokens, passwords), after cargo's `secret.rs`: no
//! `Display`, a `Debug` that never shows the value, and reading it is an explicit
//! `expose()`. [`scrub`] removes secrets from text that came from elsewhere (a server that
//! echoes the `Authorization` header in its error body).

use std::fmt;

use crate::{
    Applied, ApplyOptions, Capabilities, Provider, ProviderError, RangeSet, State, Violation,
};

/// A value that must not be shown. `Debug` prints `Secret { inner: "REDACTED" }`; there is
/// no `Display`, so it cannot end up in a message by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T> {
    inner: T,
}

impl<T> Secret<T> {
    /// Unwrap the secret; the caller is now responsible for not showing it.
    pub fn expose(self) -> T {
        self.inner
    }

    /// A `Secret` borrowing this one's value.
    pub fn as_ref(&self) -> Secret<&T> {
        Secret::from(&self.inner)
    }

    /// Transform the secret value, keeping it secret.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Secret<U> {
        Secret::from(f(self.inner))
    }
}

impl<T: AsRef<str>> Secret<T> {
    /// Remove this secret (and anything shaped like a bearer token) from `text`.
    pub fn scrub_from(&self, text: &str) -> String {
        scrub(text, &[self.inner.as_ref()])
    }
}

impl<T> From<T> for Secret<T> {
    fn from(inner: T) -> Self {
        Secret { inner }
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("inner", &"REDACTED")
            .finish()
    }
}

/// What replaces a secret in text.
pub const REDACTED: &str = "[REDACTED]";

/// `text` with every occurrence of the `known` secrets (those of at least 4 characters)
/// replaced, and the credential (8 or more token characters) after any `Bearer ` (any
/// letter case) as well.
pub fn scrub(text: &str, known: &[&str]) -> String {
    let mut out = text.to_owned();
    for k in known.iter().filter(|k| k.len() >= 4) {
        if out.contains(k) {
            out = out.replace(k, REDACTED);
        }
    }
    scrub_bearer(&out)
}

/// Replace the token after each `Bearer ` with [`REDACTED`].
fn scrub_bearer(text: &str) -> String {
    const WORD: &str = "bearer";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(WORD) {
        let start = search + found;
        let after = start + WORD.len();
        // The word, then at least one space (or `=`/`:` as in `bearer=...`), then the token.
        let gap = text[after..]
            .char_indices()
            .find(|(_, c)| !matches!(c, ' ' | '\t' | '=' | ':' | '"'))
            .map_or(text.len() - after, |(i, _)| i);
        let token_start = after + gap;
        let token_len = text[token_start..]
            .char_indices()
            .find(|(_, c)| !is_token_char(*c))
            .map_or(text.len() - token_start, |(i, _)| i);
        let word_boundary = start == 0 || !text[..start].ends_with(|c: char| c.is_alphanumeric());
        // Real tokens are long; "the bearer of" is not one.
        if gap > 0 && token_len >= 8 && word_boundary {
            out.push_str(&text[rest..token_start]);
            out.push_str(REDACTED);
            rest = token_start + token_len;
            search = rest;
        } else {
            search = after;
        }
    }
    out.push_str(&text[rest..]);
    out
}

/// The characters of an RFC 6750 `b64token` (and of JWTs).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
}

/// `provider` with every error it returns (and every warning and note it reports) scrubbed
/// of bearer tokens, whatever the provider put in them; the binary wraps every provider,
/// built-in or plugin, in this.
pub fn scrubbed(provider: Box<dyn Provider>) -> Box<dyn Provider> {
    Box::new(Scrubbed(provider))
}

struct Scrubbed(Box<dyn Provider>);

fn clean(e: ProviderError) -> ProviderError {
    e.map_message(|m| scrub(&m, &[]))
}

fn clean_all(items: &mut [String]) {
    for i in items {
        *i = scrub(i, &[]);
    }
}

#[async_trait::async_trait]
impl Provider for Scrubbed {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        self.0.check(desired)
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let mut state = self.0.current().await.map_err(clean)?;
        clean_all(&mut state.warnings);
        clean_all(&mut state.drift);
        Ok(state)
    }

    async fn preflight(
        &self,
        desired: &RangeSet,
        current: &State,
    ) -> Result<Vec<Violation>, ProviderError> {
        let mut found = self.0.preflight(desired, current).await.map_err(clean)?;
        for v in &mut found {
            v.message = scrub(&v.message, &[]);
        }
        Ok(found)
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let mut applied = self.0.apply(desired, opts).await.map_err(clean)?;
        clean_all(&mut applied.notes);
        Ok(applied)
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        let mut applied = self.0.disable(opts).await.map_err(clean)?;
        clean_all(&mut applied.notes);
        Ok(applied)
    }

    async fn manifests(
        &self,
        desired: &RangeSet,
    ) -> Result<Option<Vec<serde_json::Value>>, ProviderError> {
        self.0.manifests(desired).await.map_err(clean)
    }

    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[crate::Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let mut applied = self
            .0
            .apply_leased(desired, leases, version, opts)
            .await
            .map_err(clean)?;
        clean_all(&mut applied.notes);
        Ok(applied)
    }

    async fn apply_leased_declared(
        &self,
        declared: &RangeSet,
        desired: &RangeSet,
        leases: &[crate::Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let mut applied = self
            .0
            .apply_leased_declared(declared, desired, leases, version, opts)
            .await
            .map_err(clean)?;
        clean_all(&mut applied.notes);
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::from("hunter22".to_owned());
        assert_eq!(format!("{s:?}"), r#"Secret { inner: "REDACTED" }"#);
        assert_eq!(s.as_ref().map(|v| v.len()).expose(), 8);
    }

    #[test]
    fn scrub_removes_known_secrets_and_bearer_tokens() {
        assert_eq!(
            scrub(
                r#"{"error": "bad header Authorization: Bearer eyJ0eXAi.abc-_d=="}"#,
                &[]
            ),
            r#"{"error": "bad header Authorization: Bearer [REDACTED]"}"#
        );
        assert_eq!(
            scrub(
                "token s3cr3t-token rejected; BEARER=x1y2z3w4",
                &["s3cr3t-token"]
            ),
            "token [REDACTED] rejected; BEARER=[REDACTED]"
        );
        assert_eq!(
            scrub("the bearer of bad news", &[]),
            "the bearer of bad news"
        );
        assert_eq!(scrub("no secrets here", &["abc"]), "no secrets here");
    }
}
