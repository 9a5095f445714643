//! Navigation: go to definition, find references, the outline, rename.
//!
//! All four read the occurrences of [`symbols::Index`](crate::symbols::Index): the
//! definition of a name is its `Declares` occurrence, its references are all of them, a
//! rename edits all of them (the tool's name in every header of its tables too), and the
//! outline is the declarations nested tool → parameters and rules, then slots.

use std::collections::HashMap;

use clarion_flow::spans::pointer;
use lsp_types::{DocumentSymbol, Location, SymbolKind, TextEdit, WorkspaceEdit};
use serde_json::Value;

use crate::document::{Document, Kind};
use crate::symbols::{Index, Role, Symbol};

fn index(document: &Document) -> Option<Index> {
    (document.kind == Kind::Flow).then(|| Index::of(&document.text))
}

/// Where the name at `offset` is declared.
#[must_use]
pub fn definition(document: &Document, offset: usize) -> Option<Location> {
    let index = index(document)?;
    let symbol = &index.at(offset)?.symbol;
    let declared = index
        .of_symbol(symbol)
        .into_iter()
        .find(|o| o.role == Role::Declares)?;
    Some(Location::new(
        document.uri.clone(),
        document.range(&declared.span),
    ))
}

/// Every use of the name at `offset`; its declaration only when asked for.
#[must_use]
pub fn references(document: &Document, offset: usize, declaration: bool) -> Vec<Location> {
    let Some(index) = index(document) else {
        return Vec::new();
    };
    let Some(symbol) = index.at(offset).map(|o| o.symbol.clone()) else {
        return Vec::new();
    };
    index
        .of_symbol(&symbol)
        .into_iter()
        .filter(|o| declaration || o.role != Role::Declares)
        .map(|o| Location::new(document.uri.clone(), document.range(&o.span)))
        .collect()
}

/// Why a rename is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenameError {
    /// The cursor is not on a tool, parameter or slot.
    NothingHere,
    /// The new name is not one the format allows.
    InvalidName(String),
}

impl std::fmt::Display for RenameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NothingHere => f.write_str("only a tool, parameter or slot name can be renamed"),
            Self::InvalidName(name) => write!(
                f,
                "`{name}` is not a valid name: use letters, digits and `_` (and `-` in tool names), starting with a letter or `_`"
            ),
        }
    }
}

/// The span of the name at `offset` that a rename would edit.
#[must_use]
pub fn prepare_rename(document: &Document, offset: usize) -> Option<lsp_types::Range> {
    let index = index(document)?;
    index.at(offset).map(|o| document.range(&o.span))
}

/// Renames the name at `offset` to `new_name` everywhere in the file.
pub fn rename(
    document: &Document,
    offset: usize,
    new_name: &str,
) -> Result<WorkspaceEdit, RenameError> {
    let index = index(document).ok_or(RenameError::NothingHere)?;
    let symbol = index
        .at(offset)
        .ok_or(RenameError::NothingHere)?
        .symbol
        .clone();
    let dash = matches!(symbol, Symbol::Tool(_));
    let valid = new_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dash && c == '-'))
        && new_name.len() <= 64;
    if !valid {
        return Err(RenameError::InvalidName(new_name.to_owned()));
    }
    let edits = index
        .of_symbol(&symbol)
        .into_iter()
        .map(|o| TextEdit::new(document.range(&o.span), new_name.to_owned()))
        .collect();
    Ok(WorkspaceEdit {
        changes: Some(HashMap::from([(document.uri.clone(), edits)])),
        ..WorkspaceEdit::default()
    })
}

/// The outline: tools (their parameters and rules inside), then slots.
#[must_use]
pub fn document_symbols(document: &Document) -> Vec<DocumentSymbol> {
    let Some(index) = index(document) else {
        return Vec::new();
    };
    let node = |at: &str, name: String, kind: SymbolKind, detail: Option<String>| {
        let spans = index.spans.get(at)?;
        let selection = spans.key.clone().unwrap_or_else(|| spans.value.clone());
        let full = selection.start.min(spans.value.start)..selection.end.max(spans.value.end);
        #[allow(deprecated)] // `deprecated` is a required field of the struct.
        let symbol = DocumentSymbol {
            name,
            detail,
            kind,
            tags: None,
            deprecated: None,
            range: document.range(&full),
            selection_range: document.range(&selection),
            children: None,
        };
        Some(symbol)
    };
    let text = |at: &str, key: &str| {
        index
            .json
            .pointer(at)
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(ToOwned::to_owned)
    };
    let mut symbols = Vec::new();
    for tool in index.names("/tools") {
        let at = pointer(&["tools", &tool]);
        let Some(mut symbol) = node(
            &at,
            tool.clone(),
            SymbolKind::FUNCTION,
            text(&at, "description"),
        ) else {
            continue;
        };
        let mut children = Vec::new();
        for param in index.names(&pointer(&["tools", &tool, "params"])) {
            let at = pointer(&["tools", &tool, "params", &param]);
            let detail = index
                .json
                .pointer(&at)
                .and_then(|p| p.get("type"))
                .map(crate::completion::type_name);
            children.extend(node(&at, param, SymbolKind::FIELD, detail));
        }
        let rules = index
            .json
            .pointer(&pointer(&["tools", &tool, "after"]))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for rule in 0..rules {
            let at = pointer(&["tools", &tool, "after", &rule.to_string()]);
            let detail = text(&at, "when").map(|w| format!("when {w}"));
            children.extend(node(
                &at,
                format!("after #{}", rule + 1),
                SymbolKind::EVENT,
                detail,
            ));
        }
        let at = pointer(&["tools", &tool, "on_error"]);
        children.extend(node(&at, "on_error".to_owned(), SymbolKind::EVENT, None));
        symbol.children = Some(children);
        symbols.push(symbol);
    }
    for slot in index.names("/slots") {
        let at = pointer(&["slots", &slot]);
        let detail = index.json.pointer(&at).map(crate::completion::slot_detail);
        symbols.extend(node(&at, slot, SymbolKind::VARIABLE, detail));
    }
    symbols
}
