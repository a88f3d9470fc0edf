//! The rustdoc math renders: inside `$…$` and `$$…$$` in doc comments, no backslash may precede
//! ASCII punctuation. Markdown reads `\,`, `\|`, `\!`, `\{` and `\\` as escapes and drops the
//! backslash before KaTeX sees the formula ("B_G)\, v" renders as "B_G), v"); the docs use
//! `\thinspace`, `\Vert`, `\negthinspace`, `\lbrace` and `\cr` instead. And every module page
//! with a formula loads KaTeX itself (`#![doc = include_str!(".../katex-header.html")]`), so the
//! math renders with a plain `cargo doc`, dependencies included, and on docs.rs alike.

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

/// (line number, the offending two characters) of every backslash-punctuation pair inside math
/// in the doc comments of `text`.
fn escapes_in_math(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut display = false;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let Some(doc) = trimmed
            .strip_prefix("//!")
            .or_else(|| trimmed.strip_prefix("///"))
        else {
            continue;
        };
        let chars: Vec<char> = doc.chars().collect();
        let mut inline = false;
        let mut k = 0;
        while k < chars.len() {
            if chars[k] == '$' {
                if chars.get(k + 1) == Some(&'$') {
                    display = !display;
                    k += 2;
                    continue;
                }
                if !display {
                    inline = !inline;
                }
            } else if chars[k] == '\\'
                && (display || inline)
                && chars.get(k + 1).is_some_and(|c| c.is_ascii_punctuation())
            {
                found.push((number + 1, format!("\\{}", chars[k + 1])));
                k += 2;
                continue;
            }
            k += 1;
        }
    }
    found
}

#[test]
fn the_checker_finds_escapes_inside_math_only() {
    let text = "//! $$ a\\, b \\|x\\| $$ and E\\[x\\]\n/// inline $\\{1\\}$ but not \\* here\n";
    let found: Vec<String> = escapes_in_math(text).into_iter().map(|(_, s)| s).collect();
    assert_eq!(found, ["\\,", "\\|", "\\|", "\\{", "\\}"]);
}

#[test]
fn doc_math_has_no_backslash_that_markdown_would_eat() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 50, "the sources were found: {}", files.len());
    let mut problems = Vec::new();
    let mut with_math = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, pair) in escapes_in_math(&text) {
            problems.push(format!("{}:{line}: {pair}", file.display()));
        }
        let module_math = text
            .lines()
            .any(|l| l.trim_start().starts_with("//!") && l.contains('$'));
        if module_math {
            with_math += 1;
            if !text.contains("katex-header.html\")]") {
                problems.push(format!(
                    "{}: module docs with math but no KaTeX include",
                    file.display()
                ));
            }
        }
    }
    assert!(with_math > 20, "{with_math} module pages with math");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
