//! Writing an imported declaration: the skeleton's own text with `sets` and each target's
//! `allow` spliced in (so its comments, key order and formatting stay as they were), or, when
//! the skeleton is JSON or flow-style YAML, the document rebuilt from its parsed values.

use std::fmt::Write as _;

use rangekeeper_cidr::IpNet;

/// One item of an `allow` list or a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Set(String),
    Cidr { net: IpNet, note: Option<String> },
}

/// What import decided for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOut {
    /// Write this `allow` list and these policy flags, with these comments above them.
    Allow {
        entries: Vec<Entry>,
        flags: Vec<(&'static str, bool)>,
        comments: Vec<String>,
    },
    /// The target holds no restriction: it is written as a comment, without `allow`.
    Unrestricted { comment: String },
}

/// The whole result, in skeleton order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// New named sets, in the order they are written.
    pub sets: Vec<(String, Vec<Entry>)>,
    /// Per imported target (by name); targets not listed are left as they are.
    pub targets: Vec<(String, TargetOut)>,
}

impl Output {
    fn target(&self, name: &str) -> Option<&TargetOut> {
        self.targets.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// A YAML scalar: plain when that is unambiguous, else double-quoted (JSON string syntax is
/// valid YAML).
fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_'))
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        s.to_owned()
    } else {
        serde_json::Value::String(s.to_owned()).to_string()
    }
}

fn entry_yaml(e: &Entry) -> String {
    match e {
        Entry::Set(name) => scalar(name),
        Entry::Cidr { net, note: None } => scalar(&net.to_string()),
        Entry::Cidr {
            net,
            note: Some(note),
        } => format!(
            "{{cidr: {}, note: {}}}",
            scalar(&net.to_string()),
            serde_json::Value::String(note.clone())
        ),
    }
}

fn entry_json(e: &Entry) -> serde_json::Value {
    match e {
        Entry::Set(name) => name.clone().into(),
        Entry::Cidr { net, note: None } => net.to_string().into(),
        Entry::Cidr {
            net,
            note: Some(note),
        } => serde_json::json!({"cidr": net.to_string(), "note": note}),
    }
}

fn list_yaml(out: &mut String, indent: usize, entries: &[Entry]) {
    for e in entries {
        let _ = writeln!(out, "{:indent$}- {}", "", entry_yaml(e));
    }
}

fn comment_lines(out: &mut String, indent: usize, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{:indent$}# {line}", "");
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The key of a `key:` line whose value is a block (nothing but a comment after the colon).
fn block_key(line: &str) -> Option<String> {
    let t = line.trim();
    let (key, rest) = if let Some(q) = t.strip_prefix('"') {
        let end = q.find('"')?;
        (q[..end].to_owned(), &q[end + 1..])
    } else if let Some(q) = t.strip_prefix('\'') {
        let end = q.find('\'')?;
        (q[..end].to_owned(), &q[end + 1..])
    } else {
        let end = t.find(':')?;
        (t[..end].trim_end().to_owned(), &t[end..])
    };
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    (rest.is_empty() || rest.starts_with('#')).then_some(key)
}

/// The key of any `key: …` line.
fn any_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let end = t.find(':')?;
    let key = t[..end].trim_end();
    let after = &t[end + 1..];
    (after.is_empty() || after.starts_with(' ') || after.starts_with('\t')).then_some(key)
}

/// A block of lines `[start, end)` and the last content line in it.
fn last_content(lines: &[&str], start: usize, end: usize) -> usize {
    (start..end)
        .rev()
        .find(|&i| is_content(lines[i]))
        .unwrap_or(start)
}

/// Splice the result into block-style YAML. `None` when the text is not shaped so that this
/// is safe (flow-style targets, an unexpected layout); the caller then rebuilds the document.
pub fn splice_yaml(text: &str, target_names: &[String], out: &Output) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    // Top-level keys.
    let top: Vec<(usize, String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_content(l) && indent_of(l) == 0 && !l.starts_with('-'))
        .filter_map(|(i, l)| any_key(l).map(|k| (i, k.trim_matches(['"', '\'']).to_owned())))
        .collect();
    let block_end = |i: usize| {
        top.iter()
            .map(|(j, _)| *j)
            .find(|&j| j > i)
            .unwrap_or(lines.len())
    };
    let (t_line, _) = top.iter().find(|(_, k)| k == "targets")?.clone();
    block_key(lines[t_line])?;
    let t_end = block_end(t_line);
    // Target key lines.
    let first = (t_line + 1..t_end).find(|&i| is_content(lines[i]))?;
    let key_indent = indent_of(lines[first]);
    let mut keys: Vec<(usize, String)> = Vec::new();
    for (i, l) in lines.iter().enumerate().take(t_end).skip(first) {
        if is_content(l) && indent_of(l) <= key_indent {
            if indent_of(l) < key_indent {
                return None;
            }
            keys.push((i, block_key(l)?));
        }
    }
    if keys.iter().map(|(_, k)| k).ne(target_names.iter()) {
        return None;
    }
    // Per-target replacement of its block lines.
    let mut replaced: Vec<Option<String>> = vec![None; lines.len()];
    let mut dropped = vec![false; lines.len()];
    for (n, (k_line, name)) in keys.iter().enumerate() {
        let Some(t) = out.target(name) else { continue };
        let next = keys.get(n + 1).map_or(t_end, |(l, _)| *l);
        let last = last_content(&lines, *k_line, next);
        let field_indent = (k_line + 1..=last)
            .find(|&i| is_content(lines[i]))
            .map_or(key_indent + 2, |i| indent_of(lines[i]));
        match t {
            TargetOut::Unrestricted { comment } => {
                let mut s = String::new();
                comment_lines(&mut s, key_indent, comment);
                for i in *k_line..=last {
                    let l = lines[i];
                    let ind = indent_of(l).min(key_indent);
                    let _ = writeln!(s, "{:ind$}# {}", "", &l[ind..]);
                    dropped[i] = true;
                }
                replaced[*k_line] = Some(s);
            }
            TargetOut::Allow {
                entries,
                flags,
                comments,
            } => {
                // Remove the keys we write: `allow` and the flags.
                let mut remove = |key: &str| {
                    let mut i = k_line + 1;
                    while i <= last {
                        let l = lines[i];
                        if is_content(l) && indent_of(l) == field_indent && any_key(l) == Some(key)
                        {
                            let mut end = i;
                            for (j, m) in lines.iter().enumerate().take(last + 1).skip(i + 1) {
                                if !is_content(m) {
                                    continue;
                                }
                                let ind = indent_of(m);
                                if ind > field_indent
                                    || (ind == field_indent && m.trim_start().starts_with('-'))
                                {
                                    end = j;
                                } else {
                                    break;
                                }
                            }
                            for d in &mut dropped[i..=end] {
                                *d = true;
                            }
                            i = end;
                        }
                        i += 1;
                    }
                };
                remove("allow");
                for (flag, _) in flags {
                    remove(flag);
                }
                let mut s = String::new();
                for c in comments {
                    comment_lines(&mut s, field_indent, c);
                }
                for (flag, value) in flags {
                    let _ = writeln!(s, "{:field_indent$}{flag}: {value}", "");
                }
                let _ = writeln!(s, "{:field_indent$}allow:", "");
                list_yaml(&mut s, field_indent + 2, entries);
                // Insert after the target's last remaining line.
                let anchor = (*k_line..=last)
                    .rev()
                    .find(|&i| !dropped[i])
                    .unwrap_or(*k_line);
                let mut keep = if dropped[anchor] {
                    String::new()
                } else {
                    format!("{}\n", lines[anchor])
                };
                keep.push_str(&s);
                dropped[anchor] = true;
                replaced[anchor] = Some(keep);
            }
        }
    }
    // The new sets: appended to an existing `sets:` block, or a new block before `targets:`.
    let mut sets_text = String::new();
    let sets_at = top.iter().find(|(_, k)| k == "sets").map(|(l, _)| *l);
    let set_indent = sets_at
        .and_then(|s| (s + 1..block_end(s)).find(|&i| is_content(lines[i])))
        .map_or(2, |i| indent_of(lines[i]));
    for (name, entries) in &out.sets {
        let _ = writeln!(sets_text, "{:set_indent$}{}:", "", scalar(name));
        list_yaml(&mut sets_text, set_indent + 2, entries);
    }
    let mut result = String::new();
    let mut sets_anchor = None;
    if !out.sets.is_empty() {
        match sets_at {
            Some(s) if block_key(lines[s]).is_some() => {
                sets_anchor = Some(last_content(&lines, s, block_end(s)));
            }
            Some(s) if lines[s].trim_end().ends_with("{}") || lines[s].contains("{}") => {
                replaced[s] = Some(format!("sets:\n{sets_text}"));
                dropped[s] = true;
            }
            Some(_) => return None,
            None => {
                // Before the comment lines that introduce `targets:`.
                let mut at = t_line;
                while at > 0 && !is_content(lines[at - 1]) && !lines[at - 1].trim().is_empty() {
                    at -= 1;
                }
                let prev = replaced[at].take();
                let mut s = format!("sets:\n{sets_text}\n");
                match prev {
                    Some(p) => s.push_str(&p),
                    None if dropped[at] => {}
                    None => {
                        s.push_str(lines[at]);
                        s.push('\n');
                    }
                }
                replaced[at] = Some(s);
                dropped[at] = true;
            }
        }
    }
    for (i, l) in lines.iter().enumerate() {
        if let Some(r) = &replaced[i] {
            result.push_str(r);
        } else if !dropped[i] {
            result.push_str(l);
            result.push('\n');
        }
        if sets_anchor == Some(i) {
            result.push_str(&sets_text);
        }
    }
    Some(result)
}

/// Rebuild the document from the skeleton's values (JSON skeletons, flow-style YAML, and
/// `-o json`). Comments cannot be kept; unrestricted targets are left out.
pub fn rebuild(skeleton: &serde_json::Value, out: &Output) -> serde_json::Value {
    let mut doc = skeleton.clone();
    let Some(obj) = doc.as_object_mut() else {
        return doc;
    };
    if !out.sets.is_empty() {
        let sets = obj
            .entry("sets")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(sets) = sets.as_object_mut() {
            for (name, entries) in &out.sets {
                sets.insert(
                    name.clone(),
                    serde_json::Value::Array(entries.iter().map(entry_json).collect()),
                );
            }
        }
        // Keep `sets` before `targets`, as in every example.
        if let Some(targets) = obj.shift_remove("targets") {
            obj.insert("targets".into(), targets);
        }
    }
    if let Some(targets) = obj.get_mut("targets").and_then(|t| t.as_object_mut()) {
        for (name, t) in &out.targets {
            match t {
                TargetOut::Unrestricted { .. } => {
                    targets.shift_remove(name);
                }
                TargetOut::Allow { entries, flags, .. } => {
                    if let Some(fields) = targets.get_mut(name).and_then(|v| v.as_object_mut()) {
                        for (flag, value) in flags {
                            fields.insert((*flag).to_owned(), (*value).into());
                        }
                        fields.insert(
                            "allow".into(),
                            serde_json::Value::Array(entries.iter().map(entry_json).collect()),
                        );
                    }
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn sample() -> Output {
        Output {
            sets: vec![(
                "office".into(),
                vec![Entry::Cidr {
                    net: net("203.0.113.0/24"),
                    note: Some("HQ".into()),
                }],
            )],
            targets: vec![
                (
                    "a".into(),
                    TargetOut::Allow {
                        entries: vec![
                            Entry::Set("office".into()),
                            Entry::Cidr {
                                net: net("2001:db8::/32"),
                                note: None,
                            },
                        ],
                        flags: vec![("allowBroad", true)],
                        comments: vec!["imported".into()],
                    },
                ),
                (
                    "b".into(),
                    TargetOut::Unrestricted {
                        comment: "b is open".into(),
                    },
                ),
            ],
        }
    }

    #[test]
    fn splice_keeps_comments_and_order() {
        let text = "# fleet\nversion: 1\n\n# the targets\ntargets:\n  # first\n  a:\n    provider: file   # here\n    allow: [1.2.3.4]\n    allowBroad: false\n    path: a.conf\n\n  b:\n    provider: file\n    path: b.conf\n# end\n";
        let got = splice_yaml(text, &["a".into(), "b".into()], &sample()).unwrap();
        assert_eq!(
            got,
            "# fleet\nversion: 1\n\nsets:\n  office:\n    - {cidr: 203.0.113.0/24, note: \"HQ\"}\n\n# the targets\ntargets:\n  # first\n  a:\n    provider: file   # here\n    path: a.conf\n    # imported\n    allowBroad: true\n    allow:\n      - office\n      - 2001:db8::/32\n\n  # b is open\n  # b:\n  #   provider: file\n  #   path: b.conf\n# end\n"
        );
    }

    #[test]
    fn splice_refuses_flow_style() {
        let text = "version: 1\ntargets: {a: {provider: file}}\n";
        assert_eq!(splice_yaml(text, &["a".into()], &sample()), None);
        let text = "version: 1\ntargets:\n  a: {provider: file}\n";
        assert_eq!(splice_yaml(text, &["a".into()], &sample()), None);
    }

    #[test]
    fn splice_appends_to_existing_sets() {
        let text = "version: 1\nsets:\n    old: [10.0.0.0/8]\ntargets:\n  a:\n    provider: file\n";
        let got = splice_yaml(text, &["a".into()], &sample()).unwrap();
        assert!(
            got.starts_with("version: 1\nsets:\n    old: [10.0.0.0/8]\n    office:\n      - {cidr"),
            "{got}"
        );
    }

    #[test]
    fn scalars_are_quoted_when_needed() {
        assert_eq!(scalar("::1/128"), "\"::1/128\"");
        assert_eq!(scalar("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(scalar("yes"), "\"yes\"");
    }
}
