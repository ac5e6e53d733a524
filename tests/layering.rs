//! The binary crate's module graph: its top-level modules (`src/<module>.rs` or
//! `src/<module>/`) and the `crate::<module>` paths between them, outside comments and test
//! modules, must have no cycle, so dependencies point one way (commands -> plan, guard,
//! reconcile -> declaration). A cycle fails with the modules in it and one use of each edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and without what follows a `#[cfg(test)]`
/// inline test module (test code may reach anywhere).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| {
                next.trim_start().starts_with("mod ") && next.trim_end().ends_with('{')
            })
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `crate::a::b` and `use crate::{a, b}` references in `code`.
fn referenced(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn the_binarys_top_level_modules_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    // module -> (module it uses -> a file that uses it)
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "main" || top == "lib" || rel.ends_with("tests.rs") {
            continue;
        }
        modules.insert(top.clone());
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        for m in referenced(&code) {
            if m != top {
                edges
                    .entry(top.clone())
                    .or_default()
                    .entry(m)
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    assert!(
        modules.len() >= 10,
        "found only {modules:?} under {}",
        src.display()
    );
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_owned(), 1);
        stack.push(m.to_owned());
        for next in edges.get(m).into_iter().flat_map(|e| e.keys()) {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(m.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in &modules {
        if !state.contains_key(m.as_str()) {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(m, &edges, &mut state, &mut stack) {
                let why: Vec<String> = cycle
                    .windows(2)
                    .map(|w| format!("{} -> {} (in src/{})", w[0], w[1], edges[&w[0]][&w[1]]))
                    .collect();
                panic!(
                    "module cycle {}:\n  {}",
                    cycle.join(" -> "),
                    why.join("\n  ")
                );
            }
        }
    }
}

/// The check itself finds a cycle where there is one.
#[test]
fn the_cycle_check_sees_uses_in_code_and_not_in_comments() {
    let code = code_of(
        "use crate::{a, b::c};\n// crate::zzz\nfn f() { crate::d::e(); } // crate::y\n#[cfg(test)]\nmod tests {\n  use crate::t;\n}\n",
    );
    assert_eq!(
        referenced(&code),
        ["a", "b", "d"].iter().map(|s| (*s).to_owned()).collect()
    );
}
