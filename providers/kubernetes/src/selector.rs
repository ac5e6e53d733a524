//! Selectors as written in a target: Kubernetes label selectors (`matchLabels`,
//! `matchExpressions`) and Calico selector expressions, each checked once when the target is
//! read, so a selector the API server (or Felix) would reject is an error naming the field.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A Kubernetes label selector; `{}` selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Check keys, values and operators as the API server does; `field` names the selector
    /// in messages (`podSelector`).
    pub fn validate(&self, field: &str) -> Result<(), String> {
        for (k, v) in &self.match_labels {
            label_key(k).map_err(|e| format!("`{field}.matchLabels`: key `{k}` {e}"))?;
            label_value(v)
                .map_err(|e| format!("`{field}.matchLabels`: value `{v}` of `{k}` {e}"))?;
        }
        for (i, r) in self.match_expressions.iter().enumerate() {
            let at = format!("`{field}.matchExpressions[{i}]`");
            label_key(&r.key).map_err(|e| format!("{at}: key `{}` {e}", r.key))?;
            match r.operator {
                Operator::In | Operator::NotIn if r.values.is_empty() => {
                    return Err(format!(
                        "{at}: operator `{:?}` needs at least one value in `values`",
                        r.operator
                    ));
                }
                Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => {
                    return Err(format!(
                        "{at}: operator `{:?}` takes no `values` (remove them)",
                        r.operator
                    ));
                }
                _ => {}
            }
            for v in &r.values {
                label_value(v).map_err(|e| format!("{at}: value `{v}` {e}"))?;
            }
        }
        Ok(())
    }

    /// The selector as the API expects it (`{}` for everything).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if !self.match_labels.is_empty() {
            m.insert("matchLabels".into(), serde_json::json!(self.match_labels));
        }
        if !self.match_expressions.is_empty() {
            let exprs: Vec<_> = self
                .match_expressions
                .iter()
                .map(|r| {
                    let mut e = serde_json::json!({"key": r.key, "operator": r.operator});
                    if !r.values.is_empty() {
                        e["values"] = serde_json::json!(r.values);
                    }
                    e
                })
                .collect();
            m.insert("matchExpressions".into(), serde_json::Value::Array(exprs));
        }
        serde_json::Value::Object(m)
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        dns_subdomain(p).map_err(|e| format!("has a prefix that {e}"))?;
    }
    label_name(name)
}

fn label_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 63 {
        return Err("is longer than 63 characters".into());
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !name.chars().all(ok) || !edge(name.chars().next()) || !edge(name.chars().last()) {
        return Err(
            "must be alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric"
                .into(),
        );
    }
    Ok(())
}

/// A label value: empty, or a label name.
pub fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    label_name(v)
}

/// A DNS-1123 subdomain (object names, label prefixes): at most 253 characters of
/// lowercase alphanumerics, `-` and `.`, starting and ending alphanumeric.
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.');
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !s.chars().all(ok) || !edge(s.chars().next()) || !edge(s.chars().last()) {
        return Err(
            "must be lowercase alphanumerics, `-` or `.`, starting and ending with an alphanumeric"
                .into(),
        );
    }
    Ok(())
}

/// A DNS-1123 label (namespace names): a subdomain of at most 63 characters without `.`.
pub fn dns_label(s: &str) -> Result<(), String> {
    dns_subdomain(s)?;
    if s.len() > 63 {
        return Err("is longer than 63 characters".into());
    }
    if s.contains('.') {
        return Err("must not contain `.`".into());
    }
    Ok(())
}

/// A name for an object made from a target's name: lowercase, every character a DNS
/// subdomain does not allow replaced by `-`, trimmed to start and end alphanumeric.
pub fn object_name(prefix: &str, target: &str) -> String {
    let mut s: String = format!("{prefix}{target}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(253);
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

// --- Calico selectors -------------------------------------------------------------------

/// Check a Calico selector expression (`k8s-role == 'node'`, `has(x) && !has(y)`,
/// `env in {'a', 'b'}`, `all()`): the grammar of Calico's selector parser. The error says
/// where it stopped and what it expected.
pub fn calico(expr: &str) -> Result<(), String> {
    let mut p = Parser { s: expr, i: 0 };
    p.ws();
    if p.eof() {
        return Err("is empty (write `all()` to select every endpoint)".into());
    }
    p.or()?;
    p.ws();
    if !p.eof() {
        return Err(p.fail("`&&`, `||` or the end"));
    }
    Ok(())
}

/// Whether a Calico selector selects every endpoint (`all()` alone).
pub fn calico_selects_all(expr: &str) -> bool {
    expr.split_whitespace().collect::<String>() == "all()"
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.i += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.rest().starts_with(tok) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }

    /// A keyword, not followed by a label character (`in` but not `inside`).
    fn word(&mut self, w: &str) -> bool {
        self.ws();
        let r = self.rest();
        if r.starts_with(w) && !r[w.len()..].starts_with(is_label_char) {
            self.i += w.len();
            true
        } else {
            false
        }
    }

    fn fail(&self, expected: &str) -> String {
        let col = self.s[..self.i].chars().count() + 1;
        let found = self.rest().chars().take(12).collect::<String>();
        if found.is_empty() {
            format!("does not parse: expected {expected} at column {col}, found the end")
        } else {
            format!("does not parse: expected {expected} at column {col}, found `{found}`")
        }
    }

    fn or(&mut self) -> Result<(), String> {
        self.and()?;
        while self.eat("||") {
            self.and()?;
        }
        Ok(())
    }

    fn and(&mut self) -> Result<(), String> {
        self.not()?;
        while self.eat("&&") {
            self.not()?;
        }
        Ok(())
    }

    fn not(&mut self) -> Result<(), String> {
        self.ws();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.i += 1;
            return self.not();
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<(), String> {
        if self.eat("(") {
            self.or()?;
            if !self.eat(")") {
                return Err(self.fail("`)`"));
            }
            return Ok(());
        }
        for f in ["all()", "global()"] {
            if self.eat(f) {
                return Ok(());
            }
        }
        if self.word("has") {
            if !self.eat("(") {
                return Err(self.fail("`(` after `has`"));
            }
            self.label()?;
            if !self.eat(")") {
                return Err(self.fail("`)`"));
            }
            return Ok(());
        }
        self.label()?;
        if self.eat("==") || self.eat("!=") || self.word("contains") {
            return self.string();
        }
        if self.word("starts") || self.word("ends") {
            if !self.word("with") {
                return Err(self.fail("`with`"));
            }
            return self.string();
        }
        if self.word("not") {
            if !self.word("in") {
                return Err(self.fail("`in` after `not`"));
            }
            return self.set();
        }
        if self.word("in") {
            return self.set();
        }
        Err(self.fail("`==`, `!=`, `in`, `not in`, `contains`, `starts with` or `ends with`"))
    }

    fn label(&mut self) -> Result<(), String> {
        self.ws();
        let n = self
            .rest()
            .find(|c: char| !is_label_char(c))
            .unwrap_or(self.rest().len());
        if n == 0 {
            return Err(self.fail("a label name, `has(...)`, `all()`, `!` or `(`"));
        }
        self.i += n;
        Ok(())
    }

    fn string(&mut self) -> Result<(), String> {
        self.ws();
        let Some(q) = self
            .rest()
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
        else {
            return Err(self.fail("a quoted string"));
        };
        match self.rest()[1..].find(q) {
            Some(end) => {
                self.i += end + 2;
                Ok(())
            }
            None => Err(self.fail(&format!("a closing {q}"))),
        }
    }

    fn set(&mut self) -> Result<(), String> {
        if !self.eat("{") {
            return Err(self.fail("`{`"));
        }
        if self.eat("}") {
            return Ok(());
        }
        loop {
            self.string()?;
            if self.eat("}") {
                return Ok(());
            }
            if !self.eat(",") {
                return Err(self.fail("`,` or `}`"));
            }
        }
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_selectors_of_the_documentation_parse() {
        for s in [
            "k8s-role == 'node'",
            "has(node-role.kubernetes.io/worker)",
            "all()",
            "has(kubernetes-host) && !has(x)",
            "env in {'prod', \"stage\"} || tier not in {}",
            "(a == 'b' || c != 'd') && name starts with 'web' && !(x contains 'y')",
        ] {
            assert_eq!(calico(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn calico_selectors_that_do_not_parse_say_where() {
        assert_eq!(
            calico("k8s-role = 'node'").unwrap_err(),
            "does not parse: expected `==`, `!=`, `in`, `not in`, `contains`, `starts with` or `ends with` at column 10, found `= 'node'`"
        );
        assert!(calico("has(x").unwrap_err().contains("`)`"));
        assert!(calico("a == 'b").unwrap_err().contains("closing '"));
        assert!(calico("a == 'b' &&").unwrap_err().contains("found the end"));
        assert!(calico("  ").unwrap_err().contains("all()"));
    }

    #[test]
    fn label_selectors_are_checked_like_the_api_server() {
        let sel = LabelSelector {
            match_labels: [("app".to_owned(), "web".to_owned())].into(),
            match_expressions: vec![Requirement {
                key: "tier".into(),
                operator: Operator::In,
                values: vec![],
            }],
        };
        assert_eq!(
            sel.validate("podSelector").unwrap_err(),
            "`podSelector.matchExpressions[0]`: operator `In` needs at least one value in `values`"
        );
        let bad = LabelSelector {
            match_labels: [("app".to_owned(), "web frontend".to_owned())].into(),
            match_expressions: vec![],
        };
        assert!(
            bad.validate("podSelector")
                .unwrap_err()
                .contains("value `web frontend`")
        );
    }

    #[test]
    fn object_names_follow_dns_rules() {
        assert_eq!(
            object_name("rangekeeper-", "Web_Ingress"),
            "rangekeeper-web-ingress"
        );
        assert_eq!(dns_subdomain("rangekeeper-web-ingress"), Ok(()));
    }
}
