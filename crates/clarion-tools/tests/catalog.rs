//! Flows checked against the built-in catalog at load time: the example flow fits the Rust
//! functions, and every way a tool can drift from its built-in is a located diagnostic.

use std::path::Path;

use clarion_flow::diagnostic::{Diagnostic, render};
use clarion_flow::{LoadOptions, LoadReport, load_file, load_file_with, load_str, load_str_with};
use clarion_tools::BuiltinRegistry;

fn with_catalog(text: &str) -> LoadReport {
    let registry = BuiltinRegistry::standard();
    load_str_with(
        "flows/loan.toml",
        text,
        None,
        &LoadOptions {
            builtins: Some(&registry),
            ..LoadOptions::default()
        },
    )
}

fn rendered(report: &LoadReport) -> Vec<String> {
    report
        .diagnostics
        .iter()
        .map(|d| render::human(d, &report.source, false))
        .collect()
}

const HEADER: &str = r#"
[flow]
name = "loan"
[assistant]
model = "gpt-4.1-mini"
instructions = "Help with loans."
"#;

#[test]
fn the_example_flow_fits_its_built_ins() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml");
    let registry = BuiltinRegistry::standard();
    let checked = load_file_with(
        &path,
        &LoadOptions {
            builtins: Some(&registry),
            ..LoadOptions::default()
        },
    );
    let unchecked = load_file(&path);
    assert_eq!(
        checked.diagnostics,
        unchecked.diagnostics,
        "{:#?}",
        rendered(&checked)
    );
    assert!(checked.flow.is_some());
}

#[test]
fn an_unknown_built_in_is_reported_on_its_name_with_a_suggestion() {
    let text = format!(
        r#"{HEADER}
[tools.payment]
description = "Monthly payment of a loan."
builtin = "finance.loan_paymnt"
"#
    );
    let report = with_catalog(&text);
    assert_eq!(
        rendered(&report),
        [r#"error[E021]: unknown built-in `finance.loan_paymnt`
  --> flows/loan.toml:10:11
   |
10 | builtin = "finance.loan_paymnt"
   |           ^^^^^^^^^^^^^^^^^^^^^ no built-in has this name
   |
   = help: did you mean `finance.loan_payment`?"#]
    );
    assert!(report.flow.is_none());

    let far = with_catalog(&text.replace("finance.loan_paymnt", "weather.forecast"));
    assert_eq!(
        far.diagnostics[0].help.as_deref(),
        Some(
            "the built-ins are `finance.budget_analysis`, `finance.compound_growth`, \
             `finance.loan_payment` and `finance.savings_timeline`"
        )
    );

    // Without a catalog, names are not checked: the loader knows no built-ins.
    assert!(
        load_str("flows/loan.toml", &text, None)
            .diagnostics
            .is_empty()
    );
}

#[test]
fn every_difference_from_the_rust_signature_is_located() {
    let text = format!(
        r#"{HEADER}
[tools.payment]
description = "Monthly payment of a loan."
builtin = "finance.loan_payment"

[tools.payment.params.principal]
type = "number"
description = "Amount borrowed."
required = false

[tools.payment.params.years]
type = "number"
description = "Loan term in years."
ask = "Over how many years?"

[tools.payment.params.rate]
type = "number"
description = "Annual rate in percent."
ask = "What rate?"
"#
    );
    let report = with_catalog(&text);
    let messages: Vec<String> = report.diagnostics.iter().map(Diagnostic::message).collect();
    assert_eq!(
        messages,
        [
            "tool `payment` does not match built-in `finance.loan_payment`: the built-in needs parameter `annual_rate_percent`, which the tool does not declare",
            "tool `payment` does not match built-in `finance.loan_payment`: parameter `principal` is optional here, but the built-in needs it",
            "tool `payment` does not match built-in `finance.loan_payment`: parameter `years` is a number here, but the built-in takes an integer",
            "tool `payment` does not match built-in `finance.loan_payment`: the built-in has no parameter `rate`",
        ]
    );
    assert!(report.diagnostics.iter().all(|d| d.code() == "E022"));
    let shown = rendered(&report);
    assert!(
        shown[2]
            .contains("18 | type = \"number\"\n   |        ^^^^^^^^ the built-in takes an integer"),
        "{}",
        shown[2]
    );
    assert!(
        shown[2].ends_with("= help: write `type = \"integer\"`"),
        "{}",
        shown[2]
    );
    assert!(
        shown[3].contains("[tools.payment.params.rate]"),
        "{}",
        shown[3]
    );
    assert!(shown[0].ends_with(
        "= help: declare it: `[tools.payment.params.annual_rate_percent]` with `type = \"number\"`, a `description` and an `ask`"
    ), "{}", shown[0]);
    assert!(report.flow.is_none());
}

#[test]
fn enums_must_fit_the_rust_enum() {
    let growth = |risk: &str| {
        format!(
            r#"{HEADER}
[tools.grow]
description = "Compound growth."
builtin = "finance.compound_growth"

[tools.grow.params.monthly_contribution]
type = "integer"
description = "Monthly amount; whole dollars are numbers too."
ask = "How much?"

[tools.grow.params.years]
type = "integer"
description = "Years."
ask = "How long?"

[tools.grow.params.risk_tolerance]
type = "string"
description = "Risk."
ask = "Risk?"
{risk}
"#
        )
    };
    let fits = with_catalog(&growth(r#"enum = ["low", "high"]"#));
    assert!(fits.diagnostics.is_empty(), "{:#?}", rendered(&fits));

    let extra = with_catalog(&growth(r#"enum = ["low", "extreme"]"#));
    let messages: Vec<String> = extra.diagnostics.iter().map(Diagnostic::message).collect();
    assert_eq!(
        messages,
        [
            "tool `grow` does not match built-in `finance.compound_growth`: parameter `risk_tolerance` allows `extreme` here, which the built-in does not accept"
        ]
    );

    let open = with_catalog(&growth(""));
    assert_eq!(
        open.diagnostics[0].help.as_deref(),
        Some(r#"add `enum = ["low", "medium", "high"]`"#)
    );
}

#[test]
fn a_tool_with_several_executors_is_only_e009() {
    let text = format!(
        r#"{HEADER}
[tools.payment]
description = "Monthly payment of a loan."
builtin = "finance.loan_payment"
client = true
"#
    );
    let report = with_catalog(&text);
    let codes: Vec<&str> = report.diagnostics.iter().map(Diagnostic::code).collect();
    assert_eq!(codes, ["E009"]);
}
