//! `docs/SECURITY.md` promises that every row of its bad-input table is a
//! test. This checks the promise: every test the table names exists, and
//! every row names at least one.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// The backticked spans of a table row.
fn code_spans(row: &str) -> Vec<&str> {
    row.split('`').skip(1).step_by(2).collect()
}

fn defines_test(source: &str, name: &str) -> bool {
    source.contains(&format!("fn {name}("))
}

#[test]
fn every_row_of_the_bad_input_table_names_a_test_that_exists() {
    let doc = read("docs/SECURITY.md");
    let table = doc
        .split("## Every bad input and its answer")
        .nth(1)
        .expect("the bad-input section");
    let mut rows = 0;
    let mut checked = 0;
    for row in table.lines().filter(|line| line.starts_with("| ")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let test_cell = cells.last().copied().unwrap_or_default();
        if test_cell.trim_end_matches(" |").trim() == "test" {
            continue; // a header row
        }
        rows += 1;
        let mut named = 0;
        // A `src/...` or `fuzz/`-style file named in a cell applies to the
        // test names that follow it in the same cell.
        let mut file: Option<String> = None;
        for span in code_spans(test_cell) {
            if span.ends_with(".rs") || span.ends_with('/') {
                file = Some(span.to_string());
                continue;
            }
            if let Some((module, name)) = span.split_once("::") {
                let source = read(&format!("tests/integration/{module}.rs"));
                assert!(
                    defines_test(&source, name),
                    "{span} is named in SECURITY.md but tests/integration/{module}.rs has no such test"
                );
                named += 1;
                continue;
            }
            if span
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                let Some(file) = &file else {
                    panic!("{span} in SECURITY.md follows no file: {row}");
                };
                if file.starts_with("fuzz") {
                    let target = read(&format!("fuzz/fuzz_targets/{span}.rs"));
                    assert!(!target.is_empty(), "fuzz target {span}");
                } else {
                    assert!(
                        defines_test(&read(file), span),
                        "{span} is named in SECURITY.md but {file} has no such test"
                    );
                }
                named += 1;
            }
        }
        if test_cell.contains("same") && named == 0 {
            continue; // "same": the test of the row above
        }
        assert!(named > 0, "a row of SECURITY.md names no test: {row}");
        checked += named;
    }
    assert!(rows >= 40, "only {rows} rows found: the table moved?");
    assert!(checked >= rows, "{checked} tests for {rows} rows");
}
