//! Finding scenario files: `*.toml` files in folders named `scenarios`, below the paths
//! given (a file given by name is taken as is). Folders are walked in sorted order;
//! hidden folders, `target/` and `snapshots/` are skipped.

use std::path::{Path, PathBuf};

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A path that does not exist.
    #[error("no such file or directory: {0}")]
    Missing(PathBuf),
    /// A folder that cannot be read.
    #[error("cannot read directory {path}: {source}")]
    Unreadable {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The scenario files named by `paths`, in order, without duplicates.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files)?;
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(DiscoverError::Missing(path.clone()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), DiscoverError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| DiscoverError::Unreadable {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    let in_scenarios = dir.file_name().is_some_and(|n| n == "scenarios");
    for entry in entries {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if entry.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "snapshots" {
                walk(&entry, files)?;
            }
        } else if in_scenarios && entry.extension().is_some_and(|e| e == "toml") {
            files.push(entry);
        }
    }
    Ok(())
}
