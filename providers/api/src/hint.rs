//! The one did-you-mean of rangekeeper, shared by the binary and the providers, so every
//! hint (unknown target, set, key, provider, a provider's own config keys) reads the same.

/// The closest candidate to `name`, if one is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` when a candidate is close to `name`, else nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(name, candidates) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_far_ones_not() {
        assert_eq!(suggest("alow", ["allow", "protect"]), Some("allow"));
        assert_eq!(did_you_mean("zzz", ["allow"]), "");
        assert_eq!(
            did_you_mean("nginix", ["nginx", "plain"]),
            " (did you mean `nginx`?)"
        );
    }
}
