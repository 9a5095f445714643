//! Finding files below the paths a user gives: flow files for `clarion validate` and
//! `clarion serve`, scenario files for `clarion test` and `clarion eval`. One walker for all.
//!
//! Directories are walked with the `ignore` crate, as ripgrep walks them: `.gitignore`
//! (and `.ignore`) rules hold, hidden files and folders are skipped, and entries come in
//! sorted order so output is stable. A path named explicitly is always taken as it is.
//!
//! **What is a flow.** A directory holds more TOML than flows — `Cargo.toml`, scenario
//! files, fixtures, lock files — so a `*.toml` file found by walking is a flow only when it
//! says so: it has a top-level `[flow]` table, or a `#:schema` line naming
//! `flow.schema.json` (the line editors use). The check reads the file's lines, not its
//! TOML, so a flow with syntax errors is still found and reported.

use std::path::{Path, PathBuf};

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// A path that does not exist.
    #[error("no such file or directory: {0}")]
    Missing(PathBuf),
    /// A directory without flow files.
    #[error("no flow files found in {0} (a flow file is a `*.toml` file with a `[flow]` table)")]
    NoFlows(PathBuf),
    /// A directory that cannot be read.
    #[error("cannot read {path}: {message}")]
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The flow files named by `paths`, in order, without duplicates: files as given, and the
/// flow files below each directory (see the module docs for what counts as one).
pub fn flow_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    files(paths, is_flow_file, true)
}

/// The scenario files named by `paths`, in order, without duplicates: files as given, and
/// the `*.toml` files in folders named `scenarios` below each directory.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    files(
        paths,
        |path| {
            path.parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "scenarios")
        },
        false,
    )
}

/// The scenario files `clarion eval` plays, in order, without duplicates: files as given,
/// and the `*.toml` files in folders named `evals` (scenarios written for live evaluation)
/// or `scenarios` below each directory.
pub fn eval_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    files(
        paths,
        |path| {
            path.parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "scenarios" || n == "evals")
        },
        false,
    )
}

/// Whether the file at `path` declares itself a flow.
#[must_use]
pub fn is_flow_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| declares_flow(&text))
}

/// Whether `text` has a top-level `[flow]` table or a `#:schema` line naming the flow schema.
#[must_use]
pub fn declares_flow(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        line.strip_prefix("[flow]")
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
            || (line.starts_with("#:schema") && line.contains("flow.schema.json"))
    })
}

fn files(
    paths: &[PathBuf],
    wanted: impl Fn(&Path) -> bool,
    need_some: bool,
) -> Result<Vec<PathBuf>, DiscoverError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            walk(path, &wanted, &mut files)?;
            if need_some && files.len() == before {
                return Err(DiscoverError::NoFlows(path.clone()));
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(DiscoverError::Missing(path.clone()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

fn walk(
    dir: &Path,
    wanted: &impl Fn(&Path) -> bool,
    files: &mut Vec<PathBuf>,
) -> Result<(), DiscoverError> {
    let walker = ignore::WalkBuilder::new(dir)
        .sort_by_file_path(Path::cmp)
        // `.gitignore` rules hold in a folder that is not (yet) a git checkout too.
        .require_git(false)
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| DiscoverError::Unreadable {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let path = entry.path();
        if entry.file_type().is_some_and(|t| t.is_file())
            && path.extension().is_some_and(|e| e == "toml")
            && wanted(path)
        {
            files.push(path.to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::declares_flow;

    #[test]
    fn a_flow_says_so() {
        assert!(declares_flow("[flow]\nname = \"x\"\n"));
        assert!(declares_flow("# a flow\n\n  [flow]   # the flow\n"));
        assert!(declares_flow(
            "#:schema ../schemas/flow.schema.json\n[assistant]\n"
        ));
        assert!(!declares_flow("[package]\nname = \"clarion\"\n"));
        assert!(!declares_flow(
            "#:schema ../../../schemas/scenario.schema.json\n[scenario]\n"
        ));
        assert!(!declares_flow("[flow.x]\n[flows]\n"));
    }
}
