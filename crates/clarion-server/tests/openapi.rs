//! `schemas/serve.openapi.json` is built from `clarion_server::openapi::document()`; this
//! fails when the checked-in file is stale. To update it:
//! `CLARION_UPDATE_OPENAPI=1 cargo test -p clarion-server --test openapi`.

use std::path::Path;

#[test]
fn the_checked_in_openapi_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/serve.openapi.json");
    let fresh = serde_json::to_string_pretty(&clarion_server::openapi::document())
        .unwrap_or_else(|e| panic!("{e}"))
        + "\n";
    if std::env::var_os("CLARION_UPDATE_OPENAPI").is_some() && std::env::var_os("CI").is_none() {
        std::fs::write(&path, &fresh).unwrap_or_else(|e| panic!("{e}"));
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == fresh,
        "{} is stale.\nRegenerate it with: CLARION_UPDATE_OPENAPI=1 cargo test -p clarion-server --test openapi",
        path.display()
    );
}

#[test]
fn every_route_is_documented() {
    let document = clarion_server::openapi::document();
    let paths = document["paths"]
        .as_object()
        .map(serde_json::Map::len)
        .unwrap_or_default();
    assert_eq!(paths, 14, "a path was added or removed: update openapi.rs");
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            assert!(op["operationId"].is_string(), "{method} {path}");
            assert!(
                op["responses"]["default"]["content"].is_object(),
                "{method} {path}: error body"
            );
        }
    }
}
