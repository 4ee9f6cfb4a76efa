//! The crate's modules import one way: each uses only the modules listed above it in the
//! "Modules" section of `src/lib.rs`. This reads that list and every module's source, so a
//! new back-edge (or a module missing from the list) fails here rather than in review.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The modules in the order `lib.rs`'s module doc lists them, bottom first.
fn listed_order(lib: &str) -> Vec<String> {
    let section = lib
        .split("//! # Modules\n")
        .nth(1)
        .expect("lib.rs has a \"# Modules\" section");
    section
        .lines()
        .take_while(|line| line.starts_with("//!") && !line.starts_with("//! #"))
        .filter_map(|line| line.strip_prefix("//! - "))
        .map(|item| {
            let name = item.split('`').nth(1).expect("a module name in backticks");
            name.to_string()
        })
        .collect()
}

/// The module's own code: comments and its unit tests (which may use anything) left out.
fn code_of(source: &str) -> String {
    let code = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate's modules named in `code` (`crate::NAME`), with the line where each appears.
fn mentions(code: &str, modules: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in code.lines() {
        assert!(
            !line.contains("crate::{"),
            "write one `use crate::MODULE` per module, so this check sees it: {line}"
        );
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                found.push((name, line.trim().to_string()));
            }
        }
    }
    found
}

#[test]
fn modules_import_only_modules_listed_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = listed_order(&fs::read_to_string(src.join("lib.rs")).unwrap());

    let mut on_disk = BTreeSet::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("lib.rs") {
            on_disk.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        listed.len(),
        order.len(),
        "a module listed twice: {order:?}"
    );
    assert_eq!(listed, on_disk, "lib.rs's module list and src/ differ");

    let mut violations = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        // A module's files: `src/NAME.rs` and, for a module with submodules, `src/NAME/*.rs`.
        let mut files = vec![src.join(format!("{module}.rs"))];
        if let Ok(dir) = fs::read_dir(src.join(module)) {
            files.extend(dir.map(|e| e.unwrap().path()));
        }
        for file in files {
            let code = code_of(&fs::read_to_string(&file).unwrap());
            for (used, line) in mentions(&code, &order) {
                let used_rank = order.iter().position(|m| *m == used).unwrap();
                if used_rank > rank {
                    violations.push(format!("{}: uses {used}: {line}", file.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules that use a module listed below them in lib.rs:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_a_back_edge() {
    let order: Vec<String> = ["error", "atomic"].map(String::from).into();
    let code = code_of("//! uses crate::atomic in a doc\nuse crate::atomic::AtomicFile;\n");
    assert_eq!(
        mentions(&code, &order),
        [(
            "atomic".to_string(),
            "use crate::atomic::AtomicFile;".to_string()
        )]
    );
    let tests_only = code_of("fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::atomic;\n}\n");
    assert!(mentions(&tests_only, &order).is_empty());
}
