//! Hostile and degenerate inputs: the loader answers every one with diagnostics, never a
//! panic, a hang or a stack overflow.
//!
//! Every input is bounded, so no test needs a timeout. The sizes the issue names (a
//! 100,000-key table, 5 MB of instructions) run in release builds; a debug build, which
//! is ten times slower in the TOML, JSON Schema and template crates, runs a tenth of them
//! so each test stays within about two seconds:
//!
//! ```text
//! cargo test --release -p clarion-engine --test robustness
//! ```
//!
//! Every report is also rendered both ways (code frame and JSON), because that is what
//! `clarion validate` does next, and a span the loader got wrong would only blow up there.

use std::fmt::Write as _;
use std::path::Path;

use clarion_flow::diagnostic::{Diagnostic, render};
use clarion_flow::{LoadReport, MAX_FILE_BYTES, load_bytes, load_file, load_str};

const FINANCE: &str = include_str!("../../../flows/personal-finance.toml");

/// The issue's sizes in release builds, a tenth of them in debug builds.
const fn scaled(full: usize) -> usize {
    if cfg!(debug_assertions) {
        full / 10
    } else {
        full
    }
}

/// Checks the invariants every report keeps and returns its codes, in order.
fn codes(report: &LoadReport) -> Vec<&'static str> {
    let text = report.source.text();
    for diagnostic in &report.diagnostics {
        if let Some(span) = &diagnostic.span {
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "{} span {span:?} outside a {}-byte file",
                diagnostic.code(),
                text.len()
            );
            assert!(
                text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
                "{} span {span:?} splits a character",
                diagnostic.code()
            );
        }
        let _ = render::human(diagnostic, &report.source, false);
        let _ = render::json(diagnostic, &report.source);
    }
    assert_eq!(report.flow.is_some(), report.error_count() == 0);
    report.diagnostics.iter().map(Diagnostic::code).collect()
}

fn load(text: &str) -> LoadReport {
    load_str("test.toml", text, None)
}

/// Asserts the report has at least one diagnostic and one with `code`.
fn assert_has(report: &LoadReport, code: &str) {
    let found = codes(report);
    assert!(found.contains(&code), "expected {code}, found {found:?}");
}

/// A minimal valid flow to which a test appends its own tables.
const MINIMAL: &str = "[flow]\nname = \"t\"\n[assistant]\nmodel = \"m\"\ninstructions = \"i\"\n";

#[test]
fn empty_file_misses_flow_and_assistant() {
    let report = load("");
    assert_eq!(codes(&report), ["E006", "E006"]);
    let messages: Vec<String> = report.diagnostics.iter().map(Diagnostic::message).collect();
    assert!(
        messages.iter().any(|m| m.contains("`flow`")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("`assistant`")),
        "{messages:?}"
    );
}

#[test]
fn whitespace_and_comments_only_misses_flow_and_assistant() {
    let report = load("\n  \t\n# just a comment\r\n\n   # another\n");
    assert_eq!(codes(&report), ["E006", "E006"]);
}

#[test]
fn invalid_utf8_is_unreadable() {
    let mut bytes = b"[flow]\nname = \"caf".to_vec();
    bytes.extend_from_slice(&[0xC3, 0x28, 0xFF]);
    bytes.extend_from_slice(b"\"\n");
    let report = load_bytes("test.toml", &bytes, None);
    assert_eq!(codes(&report), ["E001"]);
    assert!(report.diagnostics[0].message().contains("UTF-8"));
    let json = render::json(&report.diagnostics[0], &report.source);
    assert_eq!((json.line, json.column), (Some(2), Some(12)));
}

#[test]
fn truncated_utf8_at_the_end_is_unreadable() {
    let mut bytes = FINANCE.as_bytes().to_vec();
    bytes.extend_from_slice(&[0xE2, 0x82]);
    assert_eq!(codes(&load_bytes("test.toml", &bytes, None)), ["E001"]);
}

#[test]
fn byte_order_mark_is_accepted() {
    let with_bom = format!("\u{FEFF}{FINANCE}");
    let report = load(&with_bom);
    assert_eq!(codes(&report), Vec::<&str>::new());
    assert!(report.flow.is_some());
    let report = load_bytes("test.toml", with_bom.as_bytes(), None);
    assert!(report.flow.is_some());
}

#[test]
fn byte_order_mark_keeps_columns_right() {
    let text = "\u{FEFF}[flow]\nname = \"t\"\nnmae = \"x\"\n[assistant]\nmodel = \"m\"\ninstructions = \"i\"\n";
    let report = load(text);
    assert_eq!(codes(&report), ["E004"]);
    let diagnostic = &report.diagnostics[0];
    let span = diagnostic.span.clone().unwrap_or_default();
    assert_eq!(&text[span], "nmae");
    let json = render::json(diagnostic, &report.source);
    assert_eq!((json.line, json.column), (Some(3), Some(1)));
}

#[test]
fn byte_order_mark_on_its_own_line_one_keeps_columns_right() {
    let text = "\u{FEFF}nmae = 1\n";
    let report = load(text);
    let unknown = report.diagnostics.iter().find(|d| d.code() == "E004");
    let unknown = unknown.unwrap_or_else(|| panic!("no E004 in {:?}", codes(&report)));
    let span = unknown.span.clone().unwrap_or_default();
    assert_eq!(&text[span], "nmae");
    // Editors do not show the mark, so the key is in column 1 for the user too... but it
    // is one character in the text; what matters is that the caret lands on the key.
    let json = render::json(unknown, &report.source);
    assert_eq!(json.line, Some(1));
}

#[test]
fn file_over_the_limit_is_refused_unread() {
    let bytes = vec![b'#'; 10 * 1024 * 1024];
    let report = load_bytes("big.toml", &bytes, None);
    assert_eq!(codes(&report), ["E001"]);
    assert!(report.diagnostics[0].message().contains("limited to"));
    assert!(report.source.text().is_empty(), "the text was kept");

    let path = std::env::temp_dir().join(format!("clarion-big-{}.toml", std::process::id()));
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let report = load_file(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(codes(&report), ["E001"]);
    assert!(report.diagnostics[0].message().contains("limited to"));
}

#[test]
fn file_just_under_the_limit_is_read() {
    let mut text = String::from("# ");
    text.push_str(&"x".repeat(MAX_FILE_BYTES - 3));
    text.push('\n');
    assert_eq!(text.len(), MAX_FILE_BYTES);
    assert_eq!(codes(&load(&text)), ["E006", "E006"]);
}

#[test]
fn missing_file_is_unreadable() {
    let report = load_file(Path::new("/nonexistent/clarion/flow.toml"));
    assert_eq!(codes(&report), ["E001"]);
}

#[test]
fn five_megabytes_of_instructions_load() {
    let prose = "You are a careful assistant; answer in short, concrete sentences.\n";
    let body = prose.repeat(5 * 1024 * 1024 / prose.len());
    let text = FINANCE.replacen(
        "never calculate yourself.",
        &format!("never calculate yourself.\n{body}"),
        1,
    );
    assert!(text.len() > 5 * 1024 * 1024);
    assert_eq!(codes(&load(&text)), Vec::<&str>::new());
}

/// A template tag on every line: the template compiler does the most work per byte.
#[test]
fn megabytes_of_template_tags_load() {
    let line = "Use {{ slots.monthly_income }} when {% if slots.risk_tolerance %}set{% endif %}.\n";
    let body = line.repeat(scaled(5 * 1024 * 1024) / line.len());
    let text = FINANCE.replacen(
        "never calculate yourself.",
        &format!("never calculate yourself.\n{body}"),
        1,
    );
    assert_eq!(codes(&load(&text)), Vec::<&str>::new());
}

#[test]
fn megabytes_of_template_tags_with_an_error_at_the_end() {
    let body = "{{ slots.x }} ".repeat(scaled(5 * 1024 * 1024) / 14);
    let text = format!("{MINIMAL}[slots.x]\ntype = \"number\"\ndescription = \"d\"\n").replacen(
        "\"i\"",
        &format!("'''{body}{{{{ oops'''"),
        1,
    );
    let report = load(&text);
    assert_eq!(codes(&report), ["E013"]);
    let span = report.diagnostics[0].span.clone().unwrap_or_default();
    assert_eq!(&text[span], "oops");
}

/// `depth` levels of nesting, each written as `open` + `key`, closed by `close`.
fn nested(open: &str, close: &str, depth: usize) -> String {
    let mut text = open.repeat(depth);
    text.push_str(&close.repeat(depth));
    text
}

/// TOML nests at most 80 levels deep (toml's own limit, which keeps its parser off the
/// stack's edge); deeper is a syntax error, whichever way it is written.
fn assert_too_deep(text: &str) {
    let report = load(text);
    assert_eq!(codes(&report), ["E002"]);
    assert!(report.diagnostics[0].message().contains("recurs"));
}

#[test]
fn thousand_deep_dotted_keys() {
    let key = vec!["a"; 1000].join(".");
    assert_too_deep(&format!("{MINIMAL}{key} = 1\n"));
    assert_too_deep(&format!("{MINIMAL}[slots.s]\n{key} = 1\n"));
}

#[test]
fn thousand_deep_table_header() {
    let key = vec!["a"; 1000].join(".");
    assert_too_deep(&format!("{MINIMAL}[{key}]\nx = 1\n"));
    assert_too_deep(&format!("{MINIMAL}[[{key}]]\nx = 1\n"));
    assert_too_deep(&format!("{MINIMAL}[tools.t.params.p.{key}]\nx = 1\n"));
}

#[test]
fn thousand_deep_inline_tables() {
    assert_too_deep(&format!("{MINIMAL}x = {}\n", nested("{a=", "}", 1000)));
    let value = nested("{properties={a=", "}}", 500);
    assert_too_deep(&format!("{MINIMAL}[slots.s]\nproperties = {{a={value}}}\n"));
}

#[test]
fn thousand_deep_arrays() {
    assert_too_deep(&format!("{MINIMAL}x = {}\n", nested("[", "]", 1000)));
    let value = nested("[", "]", 1000);
    assert_too_deep(&format!("{MINIMAL}[slots.s]\nenum = {value}\n"));
}

#[test]
fn million_deep_arrays_and_inline_tables() {
    let depth = scaled(1_000_000);
    assert_too_deep(&format!("{MINIMAL}x = {}\n", nested("[", "]", depth)));
    assert_too_deep(&format!("{MINIMAL}x = {}\n", nested("{a=", "}", depth)));
    // Unclosed: nothing to match the brackets against.
    assert!(!codes(&load(&"[".repeat(depth))).is_empty());
    assert!(!codes(&load(&format!("x = {}", "{a=".repeat(depth)))).is_empty());
}

/// The deepest document TOML allows, inside a parameter's schema where every later stage
/// (JSON conversion, the flow schema, the JSON Schema meta-schema, keyword checks,
/// export) walks it: a header, a dotted key and inline tables, each at the limit, nest
/// schemas about 120 deep.
#[test]
fn deepest_schema_toml_allows() {
    let header = vec!["properties.a"; 38].join(".");
    let dotted = vec!["properties.a"; 39].join(".");
    let inline = nested("{properties={a=", "}}", 39).replace("a=}", "a={}}");
    let text = format!(
        "{MINIMAL}[tools.t]\ndescription = \"d\"\nclient = true\n\
         [tools.t.params.p]\ntype = \"object\"\ndescription = \"d\"\nask = \"?\"\n\
         [tools.t.params.p.{header}]\n{dotted} = {inline}\n"
    );
    assert_eq!(codes(&load(&text)), Vec::<&str>::new());
    // Keyword typos are looked for 32 schemas deep; past that the meta-schema still checks.
    let typo = text.replace("a={}}", "a={minimun=1}}");
    let _ = codes(&load(&typo));
    let wrong = text.replace("a={}}", "a={minimum=\"1\"}}");
    assert_has(&load(&wrong), "E010");
    // Two more levels pass TOML's limit.
    assert_too_deep(&text.replace("a={}}", "a={b={c={}}}}"));
    let arrays = nested("[", "]", 79);
    let text = format!("{MINIMAL}[slots.s.{header}]\ndescription = \"d\"\nenum = {arrays}\n");
    assert!(!codes(&load(&text)).is_empty());
}

#[test]
fn very_long_single_line() {
    let long = "x".repeat(scaled(4 * 1024 * 1024));
    let report = load(&format!(
        "{MINIMAL}[tools.t]\ndescription = \"{long}\"\nnmae = 1\n"
    ));
    assert_has(&report, "E004");
    // A syntax error far into one long line.
    let report = load(&format!("a = \"{long}\" b"));
    assert_has(&report, "E002");
    let json = render::json(&report.diagnostics[0], &report.source);
    assert_eq!(json.line, Some(1));
    assert!(json.column.unwrap_or_default() > long.len());
}

#[test]
fn nul_bytes_are_syntax_errors() {
    assert_has(&load("[flow]\nname = \"a\0b\"\n"), "E002");
    assert_has(&load("# comment \0\n"), "E002");
    assert_has(&load("\0"), "E002");
    let mut bytes = FINANCE.as_bytes().to_vec();
    bytes.insert(FINANCE.len() / 2, 0);
    assert!(!codes(&load_bytes("test.toml", &bytes, None)).is_empty());
}

#[test]
fn crlf_line_endings_keep_lines_and_columns_right() {
    let text = FINANCE
        .replacen("[limits]\n", "[limits]\n  max_stepz = 8\n", 1)
        .replace('\n', "\r\n");
    let report = load(&text);
    assert_eq!(codes(&report), ["E004"]);
    let json = render::json(&report.diagnostics[0], &report.source);
    let line = FINANCE
        .lines()
        .position(|l| l == "[limits]")
        .unwrap_or_default()
        + 2;
    assert_eq!(
        (json.line, json.column, json.end_line, json.end_column),
        (Some(line), Some(3), Some(line), Some(12))
    );
}

#[test]
fn crlf_template_error_points_inside_the_string() {
    let text = FINANCE
        .replace(
            "{% if slots.risk_tolerance %}",
            "{% if slots.risk_tolerence %}",
        )
        .replace('\n', "\r\n");
    let report = load(&text);
    assert_eq!(codes(&report), ["E011"]);
    let span = report.diagnostics[0].span.clone().unwrap_or_default();
    assert_eq!(&text[span], "slots.risk_tolerence");
}

/// `count` lines of `line(i)` under `header`, after [`MINIMAL`].
fn many(header: &str, count: usize, line: impl Fn(usize) -> String) -> String {
    let mut text = format!("{MINIMAL}{header}");
    for i in 0..count {
        let _ = writeln!(text, "{}", line(i));
    }
    text
}

#[test]
fn hundred_thousand_unknown_keys_in_one_table() {
    let count = scaled(100_000);
    let report = load(&many("[limits]\n", count, |i| format!("k{i} = {i}")));
    assert_eq!(report.diagnostics.len(), count);
    assert!(codes(&report).iter().all(|c| *c == "E004"));
}

#[test]
fn hundred_thousand_unknown_keys_at_the_top() {
    let count = scaled(100_000);
    let mut text = String::new();
    for i in 0..count {
        let _ = writeln!(text, "k{i} = {i}");
    }
    let report = load(&format!("{text}{MINIMAL}"));
    assert_eq!(report.diagnostics.len(), count);
    assert!(codes(&report).iter().all(|c| *c == "E004"));
}

#[test]
fn hundred_thousand_slots() {
    let count = scaled(100_000);
    let report = load(&many("[slots]\n", count, |i| {
        format!("s{i} = {{ type = \"number\", description = \"d\" }}")
    }));
    assert_eq!(report.diagnostics.len(), count);
    assert!(codes(&report).iter().all(|c| *c == "W002"));
}

#[test]
fn hundred_thousand_keys_in_a_parameter_schema() {
    let count = scaled(100_000);
    let header = "[tools.t]\ndescription = \"d\"\nclient = true\n\
                  [tools.t.params.p]\ntype = \"object\"\ndescription = \"d\"\nask = \"?\"\n\
                  [tools.t.params.p.properties]\n";
    let report = load(&many(header, count, |i| {
        format!("p{i} = {{ type = \"integer\" }}")
    }));
    assert_eq!(codes(&report), Vec::<&str>::new());
    let report = load(&many(header, count, |i| {
        format!("p{i} = {{ tpye = \"integer\" }}")
    }));
    assert_eq!(report.diagnostics.len(), count);
}

#[test]
fn ref_to_a_fifo_does_not_block() {
    let dir = std::env::temp_dir().join(format!("clarion-fifo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let fifo = dir.join("schema.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return;
    }
    let text = format!(
        "{MINIMAL}[tools.t]\ndescription = \"d\"\nclient = true\n\
         [tools.t.params.p]\n\"$ref\" = \"schema.json\"\nask = \"?\"\n"
    );
    let report = load_str("flow.toml", &text, Some(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(codes(&report), ["E019"]);
    assert!(
        report.diagnostics[0]
            .message()
            .contains("not a regular file")
    );
}
