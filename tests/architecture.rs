//! The arrows run one way (DESIGN.md, "Layout"): the transport-free core never reaches into an
//! edge, and the policy engine knows intents, never keys.
//!
//! Every `crate::…` and `super::…` path under `src/` is resolved to the top-level module it names;
//! a test fails naming the file, the line and the rule when:
//! - a file under `src/signing/`, `src/policy/`, `src/chains/`, `src/state/` or
//!   `src/governance/` reaches `crate::service` or `crate::cli`;
//! - a file under `src/policy/` reaches `crate::keys`, `crate::keystore`, `crate::chains` or
//!   `crate::backend`.
//!
//! Comments and doc comments are ignored (a doc may say where the edge lives).

use std::path::{Path, PathBuf};

/// (folder under src/, top-level modules it must not use, why).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "signing",
        &["service", "cli"],
        "the core knows no transport",
    ),
    ("policy", &["service", "cli"], "the core knows no transport"),
    ("chains", &["service", "cli"], "the core knows no transport"),
    ("state", &["service", "cli"], "the core knows no transport"),
    (
        "governance",
        &["service", "cli"],
        "the core knows no transport",
    ),
    (
        "policy",
        &["keys", "keystore", "chains", "backend"],
        "the policy engine knows intents, never keys",
    ),
];

/// The module path of a source file: `src/signing/contract/core.rs` → `[signing, contract, core]`,
/// `src/signing/mod.rs` → `[signing]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// Source with comments blanked out (line comments, doc comments, block comments), so paths in
/// prose are not read as code. String literals are kept: a path in a string is not an import, but
/// none of the checked folders spells one.
fn strip_comments(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if bytes[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else {
            let ch = source[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first segments reached after a `crate::` or `super::` prefix at `at` (several for a
/// `crate::{a, b::c}` group), as absolute top-level module names.
fn reached(code: &str, at: usize, module: &[String]) -> Vec<String> {
    let mut rest = &code[at..];
    let mut base: Vec<String> = Vec::new();
    if let Some(r) = rest.strip_prefix("crate::") {
        rest = r;
    } else {
        base = module.to_vec();
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        if rest.starts_with("super") {
            return Vec::new();
        }
    }
    let rest = rest.trim_start();
    let heads: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut items = vec![String::new()];
        for ch in group.chars() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(String::new());
                    continue;
                }
                _ => {}
            }
            items.last_mut().expect("one item").push(ch);
        }
        items
            .iter()
            .map(|item| item.trim().chars().take_while(|&c| is_ident(c)).collect())
            .filter(|s: &String| !s.is_empty())
            .collect()
    } else {
        vec![rest.chars().take_while(|&c| is_ident(c)).collect()]
    };
    heads
        .into_iter()
        .map(|head| base.first().cloned().unwrap_or(head))
        .collect()
}

/// Every violation in one file: (line, reached module, rule's reason).
fn violations(relative: &Path, source: &str) -> Vec<(usize, String, &'static str)> {
    let module = module_of(relative);
    let Some(top) = module.first() else {
        return Vec::new();
    };
    let code = strip_comments(source);
    let mut found = Vec::new();
    let mut search = 0;
    while let Some(pos) = code[search..].find(['c', 's']).map(|p| p + search) {
        search = pos + 1;
        let preceded_by_ident =
            code[..pos].chars().next_back().is_some_and(is_ident) || code[..pos].ends_with("::");
        if preceded_by_ident
            || !(code[pos..].starts_with("crate::") || code[pos..].starts_with("super::"))
        {
            continue;
        }
        let line = code[..pos].matches('\n').count() + 1;
        for target in reached(&code, pos, &module) {
            for (folder, forbidden, why) in RULES {
                if top == folder && forbidden.contains(&target.as_str()) {
                    found.push((line, target.clone(), *why));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_and_policy_import_only_what_they_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut report = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let source = std::fs::read_to_string(file).expect("utf-8 source");
        for (line, target, why) in violations(relative, &source) {
            report.push(format!(
                "src/{}:{line} reaches crate::{target} ({why})",
                relative.display()
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn the_checker_sees_each_way_of_naming_a_module() {
    let check = |file: &str, source: &str| {
        violations(Path::new(file), source)
            .into_iter()
            .map(|(line, target, _)| format!("{line}:{target}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        check("signing/pipeline.rs", "use crate::service::model::X;"),
        ["1:service"]
    );
    assert_eq!(
        check("signing/a.rs", "use crate::{intent::Intent, cli::x};"),
        ["1:cli"]
    );
    assert_eq!(
        check(
            "signing/contract/core.rs",
            "\nuse super::super::super::service::y;"
        ),
        ["2:service"]
    );
    // `super::super` from signing/contract/core.rs is `crate::signing`: allowed.
    assert!(check("signing/contract/core.rs", "use super::super::outbox::Z;").is_empty());
    assert_eq!(
        check("state/x.rs", "fn f() { crate::cli::run(); }"),
        ["1:cli"]
    );
    assert_eq!(
        check("policy/eval.rs", "use crate::keys::{Chain, Network};"),
        ["1:keys"]
    );
    assert_eq!(
        check("policy/mod.rs", "use crate::{backend::B, network::Chain};"),
        ["1:backend"]
    );
    // Prose, other folders and allowed modules are not violations.
    assert!(check(
        "signing/a.rs",
        "/// see `crate::service::status`\nuse crate::state::S;"
    )
    .is_empty());
    assert!(check("service/a.rs", "use crate::cli::x;").is_empty());
    assert!(check(
        "policy/a.rs",
        "use crate::network::Chain; use my_crate::keys;"
    )
    .is_empty());
}
