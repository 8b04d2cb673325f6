//! The relayer's top-level modules form no import cycle: each module (a file or a folder under `src/`)
//! may use the modules below it and none above — the records at the bottom, then the store, the pool, the
//! bundler and the chain follower, the service, the RPC face at the top. Read from the source: every
//! `crate::<module>` path outside comments and test modules is an edge. A cycle fails with its path.
//!
//! The same check holds keyscope-core's modules (read from its sibling folder in the workspace), so the
//! key <-> session import circle, once broken, cannot come back.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The source of `path` without comment lines and without `#[cfg(test)]` modules.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            // Skip the attribute and the item it guards, by its braces (or to its `;`).
            let mut depth = 0i32;
            let mut opened = false;
            for next in lines.by_ref() {
                for c in next.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && next.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        // A trailing comment on a code line.
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Module name → the modules its code names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        if p.is_dir() {
            rust_files(&p, &mut files);
        } else {
            files.push(p);
        }
        modules.entry(name).or_default().extend(files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (m, files) in &modules {
        let mut uses = BTreeSet::new();
        for f in files {
            let code = code_of(f);
            // `crate::name` anywhere, and the names inside `use crate::{a::…, b, …}` groups.
            let mut rest = code.as_str();
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                if let Some(group) = rest.strip_prefix('{') {
                    let end = matching_brace(group);
                    for part in split_top_level(&group[..end]) {
                        let head: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        uses.insert(head);
                    }
                } else {
                    let head: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    uses.insert(head);
                }
            }
        }
        uses.retain(|u| names.contains(u) && u != m);
        g.insert(m.clone(), uses);
    }
    g
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A cycle in `g`, if any, as the path that closes it.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for n in g.get(m).into_iter().flatten() {
            match state.get(n).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|p| p == n).unwrap();
                    let mut c = path[from..].to_vec();
                    c.push(n.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(g, n, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(g, m, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The module graph of the workspace crate in `crates/<dir>`, after failing if it has a cycle.
fn acyclic_graph_of(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join("src");
    let g = graph(&src);
    assert!(g.len() > 10, "read the modules of {dir}: {g:?}");
    if let Some(c) = cycle(&g) {
        panic!(
            "the {dir} crate's modules form a cycle: {}\nwhole graph: {g:#?}",
            c.join(" -> ")
        );
    }
    g
}

#[test]
fn the_relayers_modules_form_no_cycle() {
    let g = acyclic_graph_of("relayer");
    // The bottom layer uses no other module.
    assert!(g["records"].is_empty(), "records uses {:?}", g["records"]);
}

#[test]
fn the_cores_modules_form_no_cycle() {
    let g = acyclic_graph_of("core");
    // Signing sits below session rules: a key needs nothing from them.
    assert!(
        g["session"].contains("key"),
        "session uses {:?}",
        g["session"]
    );
    assert!(!g["key"].contains("session"), "key uses {:?}", g["key"]);
}

#[test]
fn the_check_finds_a_cycle_and_ignores_comments_and_tests() {
    let dir = std::env::temp_dir().join(format!("keyscope-modgraph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(
        dir.join("a.rs"),
        "//! see [`crate::c`]\nuse crate::{b::X, records};\n#[cfg(test)]\nmod tests {\n    use crate::c;\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("b").join("mod.rs"), "pub struct X; // crate::c\n").unwrap();
    std::fs::write(dir.join("c.rs"), "fn f() { crate::a::g(); }\n").unwrap();
    std::fs::write(dir.join("records.rs"), "\n").unwrap();
    let g = graph(&dir);
    assert_eq!(
        g["a"],
        BTreeSet::from(["b".to_string(), "records".to_string()])
    );
    assert!(g["b"].is_empty());
    assert_eq!(cycle(&g), None);
    // b starts using c, which uses a: a -> b -> c -> a.
    std::fs::write(dir.join("b").join("mod.rs"), "use crate::c::Y;\n").unwrap();
    let c = cycle(&graph(&dir)).expect("a cycle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4, "{c:?}");
}
