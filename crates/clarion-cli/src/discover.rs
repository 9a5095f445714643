//! Finding flow files: the paths given, and `*.toml` files below given directories.
//!
//! Directories are walked in sorted order so output is stable. Hidden directories,
//! `target/` and `scenarios/` (conversation scenarios, not flows) are skipped.

use std::path::{Path, PathBuf};

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A path that does not exist.
    #[error("no such file or directory: {0}")]
    Missing(PathBuf),
    /// A directory without flow files.
    #[error("no flow files (*.toml) found in {0}")]
    Empty(PathBuf),
    /// A directory that cannot be read.
    #[error("cannot read directory {path}: {source}")]
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The flow files named by `paths`, in order, without duplicates.
pub fn flow_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            walk(path, &mut files)?;
            if files.len() == before {
                return Err(DiscoverError::Empty(path.clone()));
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

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), DiscoverError> {
    let unreadable = |source| DiscoverError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if entry.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "scenarios" {
                walk(&entry, files)?;
            }
        } else if entry.extension().is_some_and(|e| e == "toml") {
            files.push(entry);
        }
    }
    Ok(())
}
