//! `clarion lsp` end to end: the built binary as a language server, spoken to over stdio by
//! a scripted client (every feature's answer pinned with insta), by Neovim itself, and by
//! a property test that edits the example flows at random and compares the diagnostics
//! with `clarion validate --format json` on the same text.

#[path = "lsp/client.rs"]
mod client;

use std::path::{Path, PathBuf};
use std::process::Command;

use client::{Client, offset, position, uri};
use serde_json::{Value, json};

/// A small flow with three mistakes, one of them on a line with `É` and `💶` (which take
/// one and two UTF-16 units, two and four bytes).
const BROKEN: &str = r#"[flow]
name = "epargne"

[assistant]
model = "gpt-4.1-mini"
instructions = "Tu aides à épargner. {{ slots.objectif }}"

[slots.objectif]
type = "number"
description = "L'objectif en €."

[tools.plan]
description = "Planifie l'épargne."
client = true

[tools.plan.params.montant]
type = "number"
description = "Montant mensuel en €."
aks = "Combien par mois ?"
slot = "objectf"

[[tools.plan.after]]
inject = "Épargne 💶 : {{ args.montnt }} par mois."
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn open(client: &mut Client, uri: &str, text: &str) {
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "toml", "version": 1, "text": text } }),
    );
}

/// Sends the whole new `text` of an open document as its `version`.
fn replace(client: &mut Client, uri: &str, version: i64, text: &str) {
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "text": text }] }),
    );
}

fn at(uri: &str, text: &str, needle: &str, past: usize) -> Value {
    let found = text.find(needle).unwrap_or_else(|| panic!("no {needle:?}")) + past;
    json!({ "textDocument": { "uri": uri }, "position": position(text, found, false) })
}

/// The diagnostics as `code line:col-line:col message` lines.
fn summary(diagnostics: &[Value]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| {
            let r = &d["range"];
            format!(
                "{} {}:{}-{}:{} {}",
                d["code"].as_str().unwrap_or_default(),
                r["start"]["line"],
                r["start"]["character"],
                r["end"]["line"],
                r["end"]["character"],
                d["message"]
                    .as_str()
                    .unwrap_or_default()
                    .replace('\n', " | ")
            )
        })
        .collect()
}

/// `value` with `uri` replaced by `file:///flow.toml`, for stable snapshots.
fn stable(value: &Value, uri: &str) -> Value {
    let text = value.to_string().replace(uri, "file:///flow.toml");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[test]
fn diagnostics_are_published_on_open_updated_on_change_and_cleared_when_fixed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(dir.path(), "épargne flow.toml", BROKEN);
    let uri = uri(&path);
    let (mut client, init) = Client::start(&["--stdio"], &[]);
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-16");
    assert_eq!(init["serverInfo"]["name"], "clarion");
    open(&mut client, &uri, BROKEN);
    let diagnostics = client.diagnostics(&uri, 1);
    insta::assert_json_snapshot!("broken_flow_diagnostics", summary(&diagnostics));
    // The E015 on the line with `É` and `💶`: columns in UTF-16 units.
    let e015 = diagnostics.iter().find(|d| d["code"] == "E015");
    let e015 = e015.unwrap_or_else(|| panic!("no E015 in {diagnostics:?}"));
    let line = BROKEN.lines().nth(22).unwrap_or_default();
    let column: usize = line[..line.find("args.montnt").unwrap_or_default()]
        .chars()
        .map(char::len_utf16)
        .sum();
    assert_eq!(
        e015["range"]["start"],
        json!({ "line": 22, "character": column })
    );

    // Fix `aks` with an incremental edit: that diagnostic goes, the others stay.
    let start = BROKEN.find("aks").unwrap_or_default();
    let change = |text: &str, from: usize, to: usize, new: &str, version: i64| {
        json!({
            "textDocument": { "uri": uri, "version": version },
            "contentChanges": [{ "range": { "start": position(text, from, false), "end": position(text, to, false) }, "text": new }],
        })
    };
    client.notify(
        "textDocument/didChange",
        change(BROKEN, start, start + 3, "ask", 2),
    );
    let fixed_one = BROKEN.replacen("aks", "ask", 1);
    let after = summary(&client.diagnostics(&uri, 2));
    assert!(after.iter().all(|d| !d.starts_with("E004")), "{after:#?}");
    assert!(after.iter().any(|d| d.starts_with("E011")), "{after:#?}");

    // Fix the rest: the list is published empty.
    let text = fixed_one
        .replacen("objectf", "objectif", 1)
        .replacen("montnt", "montant", 1);
    replace(&mut client, &uri, 3, &text);
    assert_eq!(client.diagnostics(&uri, 3), Vec::<Value>::new());
    // Closing clears them too.
    client.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert!(client.stop().success());
}

#[test]
fn a_file_that_stops_declaring_itself_a_flow_is_checked_no_more_until_it_does_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(dir.path(), "flow.toml", BROKEN);
    let uri = uri(&path);
    let (mut client, _) = Client::start(&[], &[]);
    open(&mut client, &uri, BROKEN);
    assert!(!client.diagnostics(&uri, 1).is_empty());
    // Neither a `[flow]` table nor the flow schema's `#:schema` line: a TOML file like
    // any other, as `validate DIR` sees it, so its diagnostics are cleared.
    let other = BROKEN
        .replace("[flow]", "# [flow]")
        .replace("flow.schema.json", "other.json");
    assert!(!clarion_flow::discover::declares_flow(&other));
    replace(&mut client, &uri, 2, &other);
    assert_eq!(client.diagnostics(&uri, 2), Vec::<Value>::new());
    replace(&mut client, &uri, 3, BROKEN);
    assert!(!client.diagnostics(&uri, 3).is_empty());
    assert!(client.stop().success());
}

#[test]
fn a_diagnostic_with_several_spans_carries_the_others_as_related_information() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Two executors: `client` and an HTTP table (E009 points at both).
    let text = BROKEN.replace(
        "client = true\n",
        "client = true\n\n[tools.plan.http]\nurl = \"https://example.com\"\n",
    );
    let path = write(dir.path(), "flow.toml", &text);
    let uri = uri(&path);
    let (mut client, _) = Client::start(&[], &[]);
    open(&mut client, &uri, &text);
    let diagnostics = client.diagnostics(&uri, 1);
    let e009 = diagnostics.iter().find(|d| d["code"] == "E009");
    let e009 = e009.unwrap_or_else(|| panic!("no E009 in {diagnostics:#?}"));
    let related = &e009["relatedInformation"][0];
    assert_eq!(related["location"]["uri"], uri);
    let start = offset(&text, &related["location"]["range"]["start"]);
    let end = offset(&text, &related["location"]["range"]["end"]);
    assert_eq!(&text[start..end], "client", "{e009:#}");
    assert!(related["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(client.stop().success());
}

#[test]
fn utf8_positions_are_used_when_the_client_offers_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(dir.path(), "flow.toml", BROKEN);
    let uri = uri(&path);
    let (mut client, init) = Client::start(&[], &["utf-8", "utf-16"]);
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-8");
    open(&mut client, &uri, BROKEN);
    let diagnostics = client.diagnostics(&uri, 1);
    let e015 = diagnostics.iter().find(|d| d["code"] == "E015");
    let e015 = e015.unwrap_or_else(|| panic!("no E015 in {diagnostics:?}"));
    let found = BROKEN.find("args.montnt").unwrap_or_default();
    assert_eq!(e015["range"]["start"], position(BROKEN, found, true));
    assert!(client.stop().success());
}

#[test]
#[allow(clippy::too_many_lines)] // one session, one feature after another, in reading order
fn completion_hover_definition_references_rename_and_outline_on_an_example_flow() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(repo().join("flows/personal-finance.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = write(dir.path(), "personal-finance.toml", &text);
    let uri = uri(&path);
    let (mut client, _) = Client::start(&[], &[]);
    open(&mut client, &uri, &text);
    assert_eq!(client.diagnostics(&uri, 1), Vec::<Value>::new());

    let labels = |result: &Value| -> Vec<String> {
        let items = result.get("items").unwrap_or(result);
        items
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i["label"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut completions = serde_json::Map::new();
    for (what, needle, past) in [
        ("slot value", "slot = \"goal_amount\"", 8),
        (
            "builtin value",
            "builtin = \"finance.savings_timeline\"",
            11,
        ),
        ("args. in inject", "{{ args.monthly_savings", 8),
        ("slots. in instructions", "{{ slots.risk_tolerance }}.", 9),
        ("error. in on_error", "{{ error.message", 9),
        ("roots in when", "when = \"not result.attainable\"", 12),
        ("result. in when", "when = \"not result.attainable\"", 19),
        ("keys of a parameter", "grounded = true #", 0),
        (
            "tables after [tools.",
            "[tools.calculate_savings_timeline]",
            7,
        ),
    ] {
        let result = client.request("textDocument/completion", at(&uri, &text, needle, past));
        completions.insert(what.to_owned(), json!(labels(&result)));
    }
    insta::assert_json_snapshot!("completions", completions);

    let mut hovers = serde_json::Map::new();
    for (what, needle, past) in [
        ("slot key", "[slots.monthly_savings]", 8),
        ("slot in template", "{{ slots.monthly_income }}", 10),
        ("parameter read", "{{ args.monthly_income }}", 9),
        ("builtin", "\"finance.savings_timeline\"", 3),
        ("schema key", "grounded = true #", 2),
        ("table key", "max_consecutive_failures", 3),
    ] {
        let result = client.request("textDocument/hover", at(&uri, &text, needle, past));
        hovers.insert(what.to_owned(), result["contents"]["value"].clone());
    }
    insta::assert_json_snapshot!("hovers", hovers);

    let definition = client.request(
        "textDocument/definition",
        at(&uri, &text, "slot = \"monthly_savings\"", 9),
    );
    let references = client.request("textDocument/references", {
        let mut p = at(&uri, &text, "[slots.monthly_savings]", 8);
        p["context"] = json!({ "includeDeclaration": true });
        p
    });
    insta::assert_json_snapshot!(
        "definition_and_references",
        stable(
            &json!({ "definition": definition, "references": references }),
            &uri
        )
    );

    let rename = client.request("textDocument/rename", {
        let mut p = at(&uri, &text, "[slots.monthly_savings]", 8);
        p["newName"] = json!("savings_per_month");
        p
    });
    insta::assert_json_snapshot!("rename_slot", stable(&rename, &uri));
    let bad = client.request("textDocument/rename", {
        let mut p = at(&uri, &text, "[slots.monthly_savings]", 8);
        p["newName"] = json!("not a name");
        p
    });
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a valid name"))
    );

    // Applying the rename leaves a flow with no diagnostics.
    let mut renamed = text.clone();
    let mut edits: Vec<(usize, usize, String)> = rename["changes"][&uri]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                offset(&text, &e["range"]["start"]),
                offset(&text, &e["range"]["end"]),
                e["newText"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (start, end, new) in edits {
        renamed.replace_range(start..end, &new);
    }
    assert!(renamed.contains("[slots.savings_per_month]"));
    assert!(
        !renamed.contains("slot = \"monthly_savings\"")
            && !renamed.contains("set = { monthly_savings")
    );
    replace(&mut client, &uri, 2, &renamed);
    assert_eq!(summary(&client.diagnostics(&uri, 2)), Vec::<String>::new());

    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    let outline: Vec<String> = symbols
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let children: Vec<&str> = s["children"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
                .unwrap_or_default();
            format!(
                "{} {}: {}",
                s["kind"],
                s["name"].as_str().unwrap_or_default(),
                children.join(", ")
            )
        })
        .collect();
    insta::assert_json_snapshot!("outline", outline);
    assert!(client.stop().success());
}

#[test]
fn quick_fixes_apply_the_suggestions_and_declare_a_missing_slot() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = BROKEN.replace("slot = \"objectf\"", "slot = \"budget\"");
    let path = write(dir.path(), "flow.toml", &text);
    let uri = uri(&path);
    let (mut client, _) = Client::start(&[], &[]);
    open(&mut client, &uri, &text);
    let diagnostics = client.diagnostics(&uri, 1);
    let actions = client.request(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": uri },
            "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 30, "character": 0 } },
            "context": { "diagnostics": diagnostics },
        }),
    );
    let titles: Vec<(String, Value)> = actions
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["title"].as_str().unwrap_or_default().to_owned(),
                a["edit"]["changes"][&uri][0]["newText"].clone(),
            )
        })
        .collect();
    insta::assert_json_snapshot!("quick_fixes", titles);
    assert!(client.stop().success());
}

#[test]
fn a_scenario_is_checked_against_its_flows_unsaved_text() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow_text = std::fs::read_to_string(repo().join("flows/personal-finance.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let scenario_text = std::fs::read_to_string(
        repo().join("flows/personal-finance/scenarios/missing_parameter.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let flow = write(dir.path(), "flows/personal-finance.toml", &flow_text);
    let scenario = write(
        dir.path(),
        "flows/personal-finance/scenarios/missing_parameter.toml",
        &scenario_text,
    );
    let (flow_uri, scenario_uri) = (uri(&flow), uri(&scenario));
    let (mut client, _) = Client::start(&[], &[]);
    open(&mut client, &flow_uri, &flow_text);
    open(&mut client, &scenario_uri, &scenario_text);
    assert_eq!(client.diagnostics(&scenario_uri, 1), Vec::<Value>::new());
    // Break the flow in the editor (not on disk): the scenario's flow no longer loads.
    let broken = flow_text.replacen("[flow]\n", "[flow]\noops = 1\n", 1);
    replace(&mut client, &flow_uri, 2, &broken);
    let after = summary(&client.diagnostics(&scenario_uri, 1));
    assert!(after.iter().any(|d| d.contains("error(s)")), "{after:#?}");
    // Fixing it clears the scenario's diagnostics again.
    replace(&mut client, &flow_uri, 3, &flow_text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if client.diagnostics(&scenario_uri, 1).is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scenario kept its diagnostics"
        );
    }
    // Keys complete from the scenario schema: `[scenario]` has no `flow` yet.
    let keys = client.request(
        "textDocument/completion",
        at(&scenario_uri, &scenario_text, "description = \"The user", 0),
    );
    let keys: Vec<&str> = keys.as_array().map_or_else(Vec::new, |items| {
        items.iter().filter_map(|i| i["label"].as_str()).collect()
    });
    assert!(
        keys.contains(&"flow") && !keys.contains(&"name"),
        "{keys:?}"
    );
    // A mistake in the scenario itself is located in it.
    let bad = scenario_text.replacen("[scenario]", "[scenario]\nnot_a_key = 1", 1);
    replace(&mut client, &scenario_uri, 2, &bad);
    let found = summary(&client.diagnostics(&scenario_uri, 2));
    assert!(found.iter().any(|d| d.contains("not_a_key")), "{found:#?}");
    assert!(client.stop().success());
}

#[test]
fn a_flow_is_rechecked_when_its_ref_schema_file_changes_on_disk() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let schema = write(dir.path(), "schemas/amount.json", r#"{ "type": "number" }"#);
    let text = BROKEN
        .replace("aks", "ask")
        .replace("objectf", "objectif")
        .replace("montnt", "montant")
        .replace(
            "type = \"number\"\ndescription = \"Montant",
            "\"$ref\" = \"schemas/amount.json\"\ndescription = \"Montant",
        );
    let path = write(dir.path(), "flow.toml", &text);
    let uri = uri(&path);
    let (mut client, _) = Client::start(&[], &[]);
    open(&mut client, &uri, &text);
    assert_eq!(summary(&client.diagnostics(&uri, 1)), Vec::<String>::new());
    std::fs::write(&schema, "{ not json").unwrap_or_else(|e| panic!("{e}"));
    client.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": client::uri(&schema), "type": 2 }] }),
    );
    let found = summary(&client.diagnostics(&uri, 1));
    assert!(found.iter().any(|d| d.starts_with("E019")), "{found:#?}");
    assert!(client.stop().success());
}

#[test]
fn an_mcp_flow_is_checked_against_its_lock_file_and_completes_server_names() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(repo().join("flows/world-clock.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lock_text = std::fs::read_to_string(repo().join("flows/world-clock.mcp.lock"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lock = write(dir.path(), "world-clock.mcp.lock", &lock_text);
    let path = write(dir.path(), "world-clock.toml", &text);
    let uri = uri(&path);
    let (mut client, _) = Client::start(&[], &[]);
    open(&mut client, &uri, &text);
    assert_eq!(summary(&client.diagnostics(&uri, 1)), Vec::<String>::new());

    let result = client.request(
        "textDocument/completion",
        at(&uri, &text, "[tools.convert_time]\nmcp = \"time\"", 28),
    );
    let items = result.get("items").unwrap_or(&result);
    let labels: Vec<&str> = items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert_eq!(labels, ["time"], "{result}");

    // The server renamed `time`: `clarion mcp lock` recorded it, and the editor says where
    // the flow no longer fits.
    let drifted = lock_text.replace(
        "\"time\": {\n                \"description\": \"Time to convert",
        "\"time_hhmm\": {\n                \"description\": \"Time to convert",
    );
    std::fs::write(&lock, drifted).unwrap_or_else(|e| panic!("{e}"));
    client.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [{ "uri": client::uri(&lock), "type": 2 }] }),
    );
    let found = summary(&client.diagnostics(&uri, 1));
    assert!(found.iter().any(|d| d.starts_with("E028")), "{found:#?}");
    assert!(client.stop().success());
}

#[test]
fn the_server_survives_nonsense() {
    let (mut client, _) = Client::start(&[], &[]);
    let uri = "file:///nowhere/flow.toml";
    // Requests about a file that is not open, with bad parameters, or unknown methods.
    assert_eq!(
        client.request("textDocument/hover", at(uri, "x", "x", 0)),
        Value::Null
    );
    let bad = client.request("textDocument/completion", json!({ "nope": true }));
    assert!(bad["error"]["code"].is_i64(), "{bad}");
    let unknown = client.request("clarion/nothing", json!({}));
    assert_eq!(unknown["error"]["code"], -32601);
    // Text that is not a flow at all, then binary junk, then an edit past the end.
    for (version, text) in [
        (1, "[flow]\n\u{0}\u{feff}[[[[ \"\"\"\n{{ {% args. slots.\n"),
        (
            2,
            "[flow]\nname = \"x\"\n[tools.\"\"]\n[tools.a.params.\"\"]\nslot = \"\"\n",
        ),
    ] {
        open(&mut client, uri, text);
        let _ = client.diagnostics(uri, version);
        for line in 0..6 {
            for character in [0, 3, 7, 50] {
                let p = json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } });
                for method in [
                    "textDocument/completion",
                    "textDocument/hover",
                    "textDocument/definition",
                    "textDocument/prepareRename",
                ] {
                    let answer = client.request(method, p.clone());
                    assert!(
                        answer.get("error").is_none(),
                        "{method} at {line}:{character}: {answer}"
                    );
                }
            }
        }
        client.notify(
            "textDocument/didClose",
            json!({ "textDocument": { "uri": uri } }),
        );
    }
    open(&mut client, uri, "[flow]\n");
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 9 }, "contentChanges": [{ "range": { "start": { "line": 99, "character": 5 }, "end": { "line": 0, "character": 0 } }, "text": "€" }] }),
    );
    let _ = client.diagnostics(uri, 9);
    // A frame that is not JSON-RPC ends the session with an error, never a hang.
    client.send_raw(b"Content-Length: 5\r\n\r\n{}{}{");
    let status = client.wait();
    assert_eq!(status.code(), Some(2), "{status}");
}

#[test]
fn the_vscode_extension_starts_clarion_lsp_on_toml_files() {
    let dir = repo().join("editors/vscode");
    let manifest =
        std::fs::read_to_string(dir.join("package.json")).unwrap_or_else(|e| panic!("{e}"));
    let manifest: Value =
        serde_json::from_str(&manifest).unwrap_or_else(|e| panic!("package.json: {e}"));
    for key in [
        "name",
        "version",
        "publisher",
        "engines",
        "main",
        "activationEvents",
    ] {
        assert!(!manifest[key].is_null(), "package.json has no `{key}`");
    }
    assert!(manifest["dependencies"]["vscode-languageclient"].is_string());
    let main = manifest["main"].as_str().unwrap_or_default();
    let script = std::fs::read_to_string(dir.join(main)).unwrap_or_else(|e| panic!("{main}: {e}"));
    assert!(
        script.contains("args: ['lsp']"),
        "{main} does not run `clarion lsp`"
    );
    assert!(
        script.contains("get('path') || 'clarion'"),
        "{main} ignores `clarion.path`"
    );
    let setting = &manifest["contributes"]["configuration"]["properties"]["clarion.path"];
    assert_eq!(setting["default"], "clarion");
    // What the extension launches is a command line this binary accepts.
    let (client, _) = Client::start(&["--stdio"], &[]);
    assert!(client.stop().success());
    let packaging = std::fs::read_to_string(repo().join("scripts/package-vscode.sh"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(packaging.contains("@vscode/vsce package"));
}

// ----------------------------------------------------------------------------------------
// Neovim as the client.

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn skip_or_fail(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why} (CI installs it in .ci/run)"
    );
    #[allow(clippy::print_stderr)] // the suite's convention for a skipped check
    {
        eprintln!("skipped: {why}");
    }
}

/// The configuration docs/editors.md gives for Neovim 0.7+, as the test's init file.
const NVIM_INIT: &str = r"
local clarion = nil
vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
  pattern = '*.toml',
  callback = function(args)
    clarion = clarion or vim.lsp.start_client({
      name = 'clarion',
      cmd = { vim.env.CLARION_BIN or 'clarion', 'lsp' },
      root_dir = vim.fn.getcwd(),
    })
    vim.lsp.buf_attach_client(args.buf, clarion)
  end,
})
";

/// Waits for diagnostics, asks for completions, writes both as JSON and quits.
const NVIM_PROBE: &str = r"
local buf = vim.api.nvim_get_current_buf()
vim.wait(30000, function() return #vim.diagnostic.get(buf) > 0 end, 50)
local diagnostics = {}
for _, d in ipairs(vim.diagnostic.get(buf)) do
  local lsp = (d.user_data or {}).lsp or {}
  table.insert(diagnostics, {
    code = d.code or lsp.code, lnum = d.lnum, col = d.col, end_col = d.end_col,
    severity = d.severity, message = d.message,
  })
end
local params = {
  textDocument = { uri = vim.uri_from_bufnr(buf) },
  position = { line = tonumber(vim.env.CLARION_LINE), character = tonumber(vim.env.CLARION_CHARACTER) },
}
local answers = vim.lsp.buf_request_sync(buf, 'textDocument/completion', params, 30000) or {}
local labels = {}
for _, answer in pairs(answers) do
  local result = answer.result or {}
  for _, item in ipairs(result.items or result) do table.insert(labels, item.label) end
end
vim.fn.writefile({ vim.fn.json_encode({ diagnostics = diagnostics, completion = labels }) }, vim.env.CLARION_OUT)
vim.cmd('qa!')
";

#[test]
fn neovim_shows_the_diagnostics_and_completes_slot_names() {
    let Some(nvim) = which("nvim") else {
        skip_or_fail("nvim is not installed (Debian package `neovim`)");
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = write(dir.path(), "flow.toml", BROKEN);
    let init = write(dir.path(), "init.lua", NVIM_INIT);
    let probe = write(dir.path(), "probe.lua", NVIM_PROBE);
    let out = dir.path().join("out.json");
    // Inside `slot = "objectf"`, after the opening quote.
    let slot = BROKEN.find("slot = \"objectf\"").unwrap_or_default() + 8;
    let cursor = position(BROKEN, slot, false);
    let mut child = Command::new(nvim)
        .current_dir(dir.path())
        .args(["--headless", "-n", "-i", "NONE", "-u"])
        .arg(&init)
        .arg(&flow)
        .arg("-c")
        .arg(format!("luafile {}", probe.display()))
        .env("CLARION_BIN", env!("CARGO_BIN_EXE_clarion"))
        .env("CLARION_OUT", &out)
        .env("CLARION_LINE", cursor["line"].to_string())
        .env("CLARION_CHARACTER", cursor["character"].to_string())
        .env("XDG_STATE_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nvim: {e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("nvim did not finish");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text =
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("nvim wrote no result: {e}"));
    let result: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut codes: Vec<String> = result["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            format!(
                "{} {}:{}",
                d["code"].as_str().unwrap_or_default(),
                d["lnum"],
                d["col"]
            )
        })
        .collect();
    codes.sort();
    insta::assert_json_snapshot!("neovim_diagnostics", codes);
    let labels = result["completion"].as_array().cloned().unwrap_or_default();
    assert_eq!(labels, [json!("objectif")], "{result}");
}

// ----------------------------------------------------------------------------------------
// Random edits: never a crash, and always what `clarion validate` says.

mod edits {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const FRAGMENTS: &[&str] = &[
        "",
        "\"",
        "'",
        "\"\"\"",
        "{{",
        "}}",
        "{%",
        "[",
        "]",
        "[[",
        "=",
        "\n",
        "\n[tools.",
        ".",
        "args.",
        "slots.",
        "slots.nope",
        "result.",
        "env.X",
        "é",
        "💶",
        "#",
        " = 1\n",
        "{ a = ",
        "\\",
        "slot = \"x\"\n",
        "builtin = \"finance.nope\"\n",
        "[slots.new]\ntype = \"string\"\n",
    ];

    /// Where (in ten-thousandths of the text), how many bytes to delete, what to insert.
    fn edit() -> impl Strategy<Value = (usize, usize, String)> {
        (
            0usize..10_000,
            0usize..24,
            0..FRAGMENTS.len(),
            "[a-z_ ]{0,4}",
        )
            .prop_map(|(at, delete, fragment, extra)| {
                (at, delete, format!("{}{extra}", FRAGMENTS[fragment]))
            })
    }

    fn boundary(text: &str, mut at: usize) -> usize {
        at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    /// `(code, severity, message, help, [start, end])` from the server's diagnostics.
    fn from_server(text: &str, diagnostics: &[Value]) -> Vec<Value> {
        let mut out: Vec<Value> = diagnostics
            .iter()
            .map(|d| {
                let message = d["message"].as_str().unwrap_or_default();
                let (message, help) = match message.split_once("\nhelp: ") {
                    Some((m, h)) => (m, Some(h)),
                    None => (message, None),
                };
                let severity = if d["severity"] == 1 {
                    "error"
                } else {
                    "warning"
                };
                json!([
                    d["code"],
                    severity,
                    message,
                    help,
                    [
                        offset(text, &d["range"]["start"]),
                        offset(text, &d["range"]["end"])
                    ]
                ])
            })
            .collect();
        out.sort_by_key(Value::to_string);
        out
    }

    fn from_validate(path: &Path) -> Vec<Value> {
        let output = Command::new(env!("CARGO_BIN_EXE_clarion"))
            .args(["validate", "--format", "json"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|d| {
                let span = d["span"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![json!(0), json!(0)]);
                json!([d["code"], d["severity"], d["message"], d["help"], span])
            })
            .collect();
        out.sort_by_key(Value::to_string);
        out
    }

    #[test]
    fn random_edits_never_crash_the_server_and_end_with_validates_diagnostics() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for schema in ["email.json", "priority.json"] {
            let text = std::fs::read_to_string(repo().join("schemas").join(schema))
                .unwrap_or_else(|e| panic!("{e}"));
            write(dir.path(), &format!("schemas/{schema}"), &text);
        }
        std::fs::create_dir_all(dir.path().join("flows")).unwrap_or_else(|e| panic!("{e}"));
        let flows: Vec<String> = ["personal-finance", "support-triage", "travel-booking"]
            .iter()
            .map(|name| {
                std::fs::read_to_string(repo().join(format!("flows/{name}.toml")))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let (client, _) = Client::start(&[], &[]);
        let client = std::cell::RefCell::new(client);
        let case = std::cell::Cell::new(0);
        let cases = std::env::var("CLARION_LSP_EDIT_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(32);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (0..flows.len(), proptest::collection::vec(edit(), 1..8));
        let result = runner.run(&strategy, |(flow, edits)| {
            let mut client = client.borrow_mut();
            case.set(case.get() + 1);
            let path = dir.path().join(format!("flows/case{}.toml", case.get()));
            let uri = uri(&path);
            let mut text = flows[flow].clone();
            open(&mut client, &uri, &text);
            for (version, (at, delete, insert)) in edits.iter().enumerate() {
                let start = boundary(&text, text.len() * at / 10_000);
                let end = boundary(&text, start + delete).max(start);
                let params = json!({
                    "textDocument": { "uri": uri, "version": version + 2 },
                    "contentChanges": [{ "range": { "start": position(&text, start, false), "end": position(&text, end, false) }, "text": insert }],
                });
                text.replace_range(start..end, insert);
                client.notify("textDocument/didChange", params);
                // Requests between edits must be answered, whatever the text.
                let p = json!({ "textDocument": { "uri": uri }, "position": position(&text, start, false) });
                for method in ["textDocument/completion", "textDocument/hover"] {
                    let answer = client.request(method, p.clone());
                    prop_assert!(answer.get("error").is_none(), "{} failed: {}", method, answer);
                }
            }
            let last = i64::try_from(edits.len() + 1).unwrap_or(i64::MAX);
            let published = client.diagnostics(&uri, last);
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            // An edit can take away both of what makes a file a flow (its `[flow]` table
            // and its `#:schema` line); the server then checks it no more than
            // `validate DIR` would, where `validate FILE` checks any file it is given.
            let expected = if clarion_flow::discover::declares_flow(&text) {
                from_validate(&path)
            } else {
                Vec::new()
            };
            let got = from_server(&text, &published);
            client.notify("textDocument/didClose", json!({ "textDocument": { "uri": uri } }));
            prop_assert_eq!(got, expected, "text:\n{}", text);
            Ok(())
        });
        if let Err(error) = result {
            panic!("{error}");
        }
        assert!(client.into_inner().stop().success());
    }
}
