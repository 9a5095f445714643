//! Loading a scenario: bytes in, a checked [`Scenario`] or every diagnostic out.
//!
//! The pipeline is the flow loader's: decode → parse TOML (recovering, so several syntax
//! errors show at once) → JSON with a span for every node ([`clarion_flow::spans`]) →
//! structural checks against the scenario schema → deserialize → load the flow →
//! checks against the flow. Nothing here panics on any input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use toml::de::DeTable;

use super::spec::ScenarioFile;
use super::{check, structure};
use clarion_flow::diagnostic::{self, Diagnostic, DiagnosticKind, Severity};
use clarion_flow::source::SourceFile;
use clarion_flow::spans::{self, SpanIndex};
use clarion_flow::{BuiltinCatalog, Flow, LoadOptions};

/// Scenario files larger than this are refused unread.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// A checked scenario, ready to play.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file's stem: the snapshot's name and what `clarion test -k` matches.
    pub name: String,
    /// `scenario.name`, or the file's stem.
    pub title: String,
    /// `scenario.description`.
    pub description: Option<String>,
    /// The scenario file.
    pub path: PathBuf,
    /// The flow file.
    pub flow_path: PathBuf,
    /// The flow.
    pub flow: Arc<Flow>,
    /// The file as written.
    pub file: ScenarioFile,
    /// Where each part of the file is, for locating problems found while playing.
    pub spans: SpanIndex,
}

/// The outcome of loading one scenario: its text, everything found, and the scenario if
/// there were no errors.
#[derive(Debug)]
pub struct ScenarioReport {
    /// The file's text (for rendering diagnostics).
    pub source: SourceFile,
    /// Errors, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The scenario, when there were no errors.
    pub scenario: Option<Scenario>,
}

impl ScenarioReport {
    /// Number of errors.
    #[must_use]
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Error)
            .count()
    }
}

/// Flows loaded once and shared by every scenario that uses them, even when scenarios
/// load concurrently: the first asks, the others wait for its answer.
#[derive(Default)]
pub struct FlowCache {
    flows: Mutex<HashMap<PathBuf, Arc<OnceLock<Loaded>>>>,
    builtins: Option<Arc<dyn BuiltinCatalog + Send + Sync>>,
}

impl std::fmt::Debug for FlowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowCache")
            .field("builtins", &self.builtins.as_ref().map(|b| b.names()))
            .finish_non_exhaustive()
    }
}

/// A flow, or why it cannot be used.
type Loaded = Result<Arc<Flow>, String>;

impl FlowCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `builtin = "…"` names and parameters against `builtins` when loading flows
    /// (as `clarion validate` does).
    #[must_use]
    pub fn with_builtins(mut self, builtins: Arc<dyn BuiltinCatalog + Send + Sync>) -> Self {
        self.builtins = Some(builtins);
        self
    }

    /// The flow at `path`, loaded on first use; the error says why it cannot be used.
    pub fn load(&self, path: &Path) -> Result<Arc<Flow>, String> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let cell = match self.flows.lock() {
            Ok(mut flows) => Arc::clone(flows.entry(key).or_default()),
            Err(_) => Arc::new(OnceLock::new()),
        };
        cell.get_or_init(|| self.load_uncached(path)).clone()
    }

    /// Uses `loaded` for the flow at `path` from now on instead of reading the file: a
    /// language server checks scenarios against the flow's unsaved text in the editor.
    pub fn insert(&self, path: &Path, loaded: Result<Arc<Flow>, String>) {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let cell = OnceLock::new();
        let _ = cell.set(loaded);
        if let Ok(mut flows) = self.flows.lock() {
            flows.insert(key, Arc::new(cell));
        }
    }

    fn load_uncached(&self, path: &Path) -> Loaded {
        if !path.is_file() {
            return Err("no such file".to_owned());
        }
        let options = LoadOptions {
            builtins: self.builtins.as_deref().map(|b| b as &dyn BuiltinCatalog),
            ..LoadOptions::default()
        };
        let report = clarion_flow::load_file_with(path, &options);
        let errors = report.error_count();
        report.into_result().map(Arc::new).map_err(|_| {
            format!(
                "it has {errors} error(s); run `clarion validate {}`",
                path.display()
            )
        })
    }
}

/// The flow a scenario at `scenario` uses by convention: `flows/NAME/scenarios/x.toml` →
/// `flows/NAME.toml`; the same for live evaluation sets in `flows/NAME/evals/`.
#[must_use]
pub fn default_flow_path(scenario: &Path) -> Option<PathBuf> {
    let scenarios = scenario.parent()?;
    if !matches!(scenarios.file_name()?.to_str()?, "scenarios" | "evals") {
        return None;
    }
    let flow_dir = scenarios.parent()?;
    let name = flow_dir.file_name()?.to_str()?;
    Some(flow_dir.with_file_name(format!("{name}.toml")))
}

/// Loads the scenario file at `path`.
#[must_use]
pub fn load_file(path: &Path, flows: &FlowCache) -> ScenarioReport {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > MAX_FILE_BYTES as u64 {
        return unreadable(
            path,
            format!("it is {size} bytes; scenario files are limited to {MAX_FILE_BYTES}"),
        );
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => load_str(path, &text, flows),
            Err(error) => {
                let at = error.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
                ScenarioReport {
                    source: SourceFile::new(path, text),
                    diagnostics: vec![
                        Diagnostic::new(
                            DiagnosticKind::ScenarioUnreadable {
                                reason: format!("it is not valid UTF-8 (byte {at})"),
                            },
                            Some(at..at + 1),
                        )
                        .with_help("save the file as UTF-8"),
                    ],
                    scenario: None,
                }
            }
        },
        Err(error) => unreadable(path, error.to_string()),
    }
}

fn unreadable(path: &Path, reason: String) -> ScenarioReport {
    ScenarioReport {
        source: SourceFile::new(path, String::new()),
        diagnostics: vec![Diagnostic::new(
            DiagnosticKind::ScenarioUnreadable { reason },
            None,
        )],
        scenario: None,
    }
}

/// Loads a scenario from text; `path` names it in diagnostics and locates its flow.
#[must_use]
pub fn load_str(path: impl Into<PathBuf>, text: &str, flows: &FlowCache) -> ScenarioReport {
    let source = SourceFile::new(path, text);
    let (mut diagnostics, scenario) = check_source(&source, flows);
    diagnostic::sort(&mut diagnostics);
    ScenarioReport {
        source,
        diagnostics,
        scenario,
    }
}

fn check_source(source: &SourceFile, flows: &FlowCache) -> (Vec<Diagnostic>, Option<Scenario>) {
    let (root, errors) = DeTable::parse_recoverable(source.text());
    if !errors.is_empty() {
        return (errors.iter().map(|e| syntax(source, e)).collect(), None);
    }
    let (document, spans, unrepresentable) = spans::to_json(&root);
    if !unrepresentable.is_empty() {
        let diagnostics = unrepresentable
            .into_iter()
            .map(|bad| {
                Diagnostic::new(
                    DiagnosticKind::InvalidValue {
                        key: structure::key_name(&bad.pointer),
                        reason: "`nan` and `inf` have no JSON equivalent".to_owned(),
                    },
                    Some(bad.span),
                )
                .with_help("use a finite number")
            })
            .collect();
        return (diagnostics, None);
    }
    let structural = structure::check(&document, &spans);
    if !structural.is_empty() {
        return (structural, None);
    }
    let file: ScenarioFile = match serde_json::from_value(document) {
        Ok(file) => file,
        Err(error) => {
            // The structural pass should make this unreachable; say so plainly if not.
            let diagnostic = Diagnostic::new(
                DiagnosticKind::InvalidValue {
                    key: "(file)".to_owned(),
                    reason: error.to_string(),
                },
                None,
            );
            return (vec![diagnostic], None);
        }
    };
    let path = source.path();
    let (flow_path, flow) = match resolve_flow(&file, &spans, path, flows) {
        Ok(found) => found,
        Err(diagnostic) => return (vec![*diagnostic], None),
    };
    let diagnostics = check::run(&file, &flow, &spans);
    if !diagnostics.is_empty() {
        return (diagnostics, None);
    }
    let name = path.file_stem().map_or_else(
        || "scenario".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let scenario = Scenario {
        title: file.scenario.name.clone().unwrap_or_else(|| name.clone()),
        description: file.scenario.description.clone(),
        name,
        path: path.to_path_buf(),
        flow_path,
        flow,
        file,
        spans,
    };
    (Vec::new(), Some(scenario))
}

/// The scenario's flow: named in `[scenario]`, or found by convention.
fn resolve_flow(
    file: &ScenarioFile,
    spans: &SpanIndex,
    path: &Path,
    flows: &FlowCache,
) -> Result<(PathBuf, Arc<Flow>), Box<Diagnostic>> {
    let flow_path = if let Some(relative) = &file.scenario.flow {
        path.parent().unwrap_or(Path::new("")).join(relative)
    } else if let Some(found) = default_flow_path(path) {
        found
    } else {
        return Err(Box::new(Diagnostic::new(
            DiagnosticKind::ScenarioFlow {
                path: "(none)".to_owned(),
                reason: "the scenario names no flow and is not in a `scenarios` folder beside one"
                    .to_owned(),
            },
            None,
        )
        .with_help("keep scenarios in `flows/NAME/scenarios/` for `flows/NAME.toml`, or set `flow = \"path/to/flow.toml\"` in [scenario]")));
    };
    let reason = match flows.load(&flow_path) {
        Ok(flow) => return Ok((flow_path, flow)),
        Err(reason) => reason,
    };
    let at = spans
        .value_span("/scenario/flow")
        .filter(|_| file.scenario.flow.is_some());
    let shown = file
        .scenario
        .flow
        .clone()
        .unwrap_or_else(|| flow_path.display().to_string());
    let diagnostic = Diagnostic::new(
        DiagnosticKind::ScenarioFlow {
            path: shown,
            reason,
        },
        at,
    );
    Err(Box::new(if let Some(near) = flow_file_near(&flow_path) {
        diagnostic.with_help(format!(
            "did you mean `{near}`? (the path is relative to this scenario file)"
        ))
    } else if file.scenario.flow.is_none() {
        diagnostic.with_help(
            "scenarios in `flows/NAME/scenarios/` use `flows/NAME.toml`; set `flow = \"…\"` in [scenario] to use another",
        )
    } else {
        diagnostic
    }))
}

/// For a flow path that does not exist, the closest `*.toml` file name in its folder.
fn flow_file_near(path: &Path) -> Option<String> {
    if path.exists() {
        return None;
    }
    let dir = path.parent()?;
    let wanted = path.file_name()?.to_str()?;
    let names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(ToOwned::to_owned))
        .filter(|n| {
            Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        })
        .collect();
    clarion_flow::suggest::closest(wanted, names.iter().map(String::as_str)).map(ToOwned::to_owned)
}

/// A TOML syntax error as a diagnostic; duplicate keys get their own code.
fn syntax(source: &SourceFile, error: &toml::de::Error) -> Diagnostic {
    let message = error.message().trim().to_owned();
    let span = error.span().map(|s| source.clamp(&s));
    if let Some(rest) = message.strip_prefix("duplicate key") {
        let key = rest.trim().trim_matches('`').to_owned();
        return Diagnostic::new(DiagnosticKind::DuplicateKey { key }, span)
            .with_label("defined again here")
            .with_help("TOML allows each key and table once; merge the two definitions");
    }
    Diagnostic::new(DiagnosticKind::TomlSyntax { message }, span)
        .with_help("see https://toml.io/en/v1.0.0 for TOML syntax")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_is_found_beside_the_scenarios_folder() {
        assert_eq!(
            default_flow_path(Path::new("flows/pf/scenarios/a.toml")),
            Some(PathBuf::from("flows/pf.toml"))
        );
        assert_eq!(
            default_flow_path(Path::new("flows/pf/evals/a.toml")),
            Some(PathBuf::from("flows/pf.toml"))
        );
        assert_eq!(default_flow_path(Path::new("flows/pf/a.toml")), None);
    }
}
