//! The message loop: one thread, one channel, a deadline for debouncing.
//!
//! Requests are answered at once from the current text. Changes only update the text and
//! mark the file (and, for a flow, the open scenarios that may use it) as needing a check;
//! the loop waits for messages with a timeout that ends [`Options::debounce`] after the
//! last change, and checks and publishes every marked file then. A save, or a watched file
//! changing on disk, marks every open file: a flow's `$ref` schema files and a scenario's
//! flow are read from disk when they are not open. Each handler runs under
//! `catch_unwind`, so a bug on some text answers that one request with an error instead
//! of ending the session.

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use clarion_flow::{BuiltinCatalog, Flow};
use lsp_server::{Connection, ErrorCode, Message, Notification, ProtocolError, Request, Response};
use lsp_types::notification::{self as notify, Notification as _};
use lsp_types::request::{self as req, Request as _};
use lsp_types::{
    CodeActionProviderCapability, CompletionOptions, CompletionResponse, HoverProviderCapability,
    InitializeParams, OneOf, PublishDiagnosticsParams, RenameOptions, ServerCapabilities,
    ServerInfo, TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions,
    TextDocumentSyncSaveOptions, Uri,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Options;
use crate::document::{Document, Kind};
use crate::position::Encoding;

/// Runs the server on stdin and stdout until the client says `exit`; an error is a client
/// that broke the protocol or a closed stdio.
pub fn run_stdio(options: Options) -> std::io::Result<()> {
    let (connection, threads) = Connection::stdio();
    serve(&connection, options).map_err(std::io::Error::other)?;
    drop(connection);
    threads.join()
}

/// Runs the server on `connection` (stdio, or an in-memory pair in tests) until `exit`.
pub fn serve(connection: &Connection, mut options: Options) -> Result<(), ProtocolError> {
    let (id, params) = connection.initialize_start()?;
    let params: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let encoding = Encoding::negotiate(
        params
            .capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_deref()),
    );
    if let Some(ms) = params
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("debounceMs"))
        .and_then(serde_json::Value::as_u64)
    {
        options.debounce = std::time::Duration::from_millis(ms);
    }
    let result = serde_json::json!({
        "capabilities": capabilities(encoding),
        "serverInfo": ServerInfo {
            name: "clarion".to_owned(),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        },
    });
    connection.initialize_finish(id, result)?;
    let mut server = Server {
        connection,
        options,
        encoding,
        documents: HashMap::new(),
        pending: BTreeSet::new(),
        deadline: None,
    };
    server.run()
}

fn capabilities(encoding: Encoding) -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(encoding.kind()),
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                ..TextDocumentSyncOptions::default()
            },
        )),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(
                [".", "[", "\"", " "]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            ..CompletionOptions::default()
        }),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: lsp_types::WorkDoneProgressOptions::default(),
        })),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        ..ServerCapabilities::default()
    }
}

struct Server<'c> {
    connection: &'c Connection,
    options: Options,
    encoding: Encoding,
    documents: HashMap<Uri, Document>,
    /// Files waiting for a check, and when to check them.
    pending: BTreeSet<Uri>,
    deadline: Option<Instant>,
}

impl Server<'_> {
    fn run(&mut self) -> Result<(), ProtocolError> {
        loop {
            let message = match self.deadline {
                Some(deadline) => {
                    match self
                        .connection
                        .receiver
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(message) => message,
                        Err(error) if error.is_timeout() => {
                            self.check_pending();
                            continue;
                        }
                        Err(_) => return Ok(()),
                    }
                }
                None => match self.connection.receiver.recv() {
                    Ok(message) => message,
                    Err(_) => return Ok(()),
                },
            };
            match message {
                Message::Request(request) => {
                    if self.connection.handle_shutdown(&request)? {
                        return Ok(());
                    }
                    let id = request.id.clone();
                    let response = catch_unwind(AssertUnwindSafe(|| self.request(request)))
                        .unwrap_or_else(|_| {
                            Response::new_err(
                                id,
                                ErrorCode::InternalError as i32,
                                "the server failed on this request; it goes on".to_owned(),
                            )
                        });
                    self.send(Message::Response(response));
                }
                Message::Notification(notification) => {
                    // A failed notification has no one to answer; the next change recovers.
                    let _ = catch_unwind(AssertUnwindSafe(|| self.notification(notification)));
                }
                Message::Response(_) => {}
            }
        }
    }

    fn send(&self, message: Message) {
        // The client has gone when this fails; the receiver then ends the loop.
        let _ = self.connection.sender.send(message);
    }

    fn builtins(&self) -> Option<&dyn BuiltinCatalog> {
        self.options
            .builtins
            .as_deref()
            .map(|b| b as &dyn BuiltinCatalog)
    }

    fn mark(&mut self, uri: Uri) {
        self.pending.insert(uri);
        self.deadline = Some(Instant::now() + self.options.debounce);
    }

    fn mark_all(&mut self) {
        let uris: Vec<Uri> = self.documents.keys().cloned().collect();
        for uri in uris {
            self.mark(uri);
        }
    }

    /// Checks every pending file, flows first so their scenarios see the new flow.
    fn check_pending(&mut self) {
        self.deadline = None;
        let mut pending: Vec<Uri> = std::mem::take(&mut self.pending).into_iter().collect();
        pending.sort_by_key(|uri| {
            self.documents
                .get(uri)
                .map_or(2, |d| u8::from(d.kind != Kind::Flow))
        });
        for uri in pending {
            let _ = catch_unwind(AssertUnwindSafe(|| self.check(&uri)));
        }
    }

    fn check(&mut self, uri: &Uri) {
        let Some(document) = self.documents.get(uri) else {
            return;
        };
        let flows: Vec<(&std::path::Path, &Result<Arc<Flow>, String>)> = self
            .documents
            .values()
            .filter(|d| d.kind == Kind::Flow)
            .filter_map(|d| Some((d.path.as_path(), d.loaded.as_ref()?)))
            .collect();
        let checked = crate::diagnostics::check(document, &self.options, &flows);
        let params = PublishDiagnosticsParams {
            uri: uri.clone(),
            diagnostics: checked.diagnostics,
            version: Some(document.version),
        };
        self.send(Message::Notification(Notification::new(
            notify::PublishDiagnostics::METHOD.to_owned(),
            params,
        )));
        if let Some(document) = self.documents.get_mut(uri) {
            document.loaded = checked.loaded;
        }
    }

    fn notification(&mut self, notification: Notification) {
        match notification.method.as_str() {
            notify::DidOpenTextDocument::METHOD => {
                if let Ok(params) = notification.extract::<lsp_types::DidOpenTextDocumentParams>(
                    notify::DidOpenTextDocument::METHOD,
                ) {
                    let item = params.text_document;
                    let document =
                        Document::new(item.uri.clone(), item.version, item.text, self.encoding);
                    let is_flow = document.kind == Kind::Flow;
                    self.documents.insert(item.uri.clone(), document);
                    self.mark(item.uri);
                    if is_flow {
                        self.mark_scenarios();
                    }
                }
            }
            notify::DidChangeTextDocument::METHOD => {
                if let Ok(params) = notification.extract::<lsp_types::DidChangeTextDocumentParams>(
                    notify::DidChangeTextDocument::METHOD,
                ) {
                    let uri = params.text_document.uri;
                    let encoding = self.encoding;
                    if let Some(document) = self.documents.get_mut(&uri) {
                        document.apply(
                            params.text_document.version,
                            params.content_changes,
                            encoding,
                        );
                        let is_flow = document.kind == Kind::Flow;
                        self.mark(uri);
                        if is_flow {
                            self.mark_scenarios();
                        }
                    }
                }
            }
            notify::DidCloseTextDocument::METHOD => {
                if let Ok(params) = notification.extract::<lsp_types::DidCloseTextDocumentParams>(
                    notify::DidCloseTextDocument::METHOD,
                ) {
                    let uri = params.text_document.uri;
                    self.documents.remove(&uri);
                    self.pending.remove(&uri);
                    self.send(Message::Notification(Notification::new(
                        notify::PublishDiagnostics::METHOD.to_owned(),
                        PublishDiagnosticsParams::new(uri, Vec::new(), None),
                    )));
                }
            }
            notify::DidSaveTextDocument::METHOD | notify::DidChangeWatchedFiles::METHOD => {
                self.mark_all();
            }
            _ => {}
        }
    }

    fn mark_scenarios(&mut self) {
        let scenarios: Vec<Uri> = self
            .documents
            .values()
            .filter(|d| d.kind == Kind::Scenario)
            .map(|d| d.uri.clone())
            .collect();
        for uri in scenarios {
            self.mark(uri);
        }
    }

    fn request(&mut self, request: Request) -> Response {
        match request.method.as_str() {
            req::Completion::METHOD => self.answer(request, |s, p: lsp_types::CompletionParams| {
                let at = p.text_document_position;
                let document = s.documents.get(&at.text_document.uri)?;
                let offset = document.offset(at.position);
                let items = crate::completion::complete(document, offset, s.builtins());
                Some(CompletionResponse::Array(items))
            }),
            req::HoverRequest::METHOD => self.answer(request, |s, p: lsp_types::HoverParams| {
                let at = p.text_document_position_params;
                let document = s.documents.get(&at.text_document.uri)?;
                crate::hover::hover(document, document.offset(at.position), s.builtins())
            }),
            req::GotoDefinition::METHOD => {
                self.answer(request, |s, p: lsp_types::GotoDefinitionParams| {
                    let at = p.text_document_position_params;
                    let document = s.documents.get(&at.text_document.uri)?;
                    crate::navigate::definition(document, document.offset(at.position))
                        .map(lsp_types::GotoDefinitionResponse::Scalar)
                })
            }
            req::References::METHOD => self.answer(request, |s, p: lsp_types::ReferenceParams| {
                let at = p.text_document_position;
                let document = s.documents.get(&at.text_document.uri)?;
                Some(crate::navigate::references(
                    document,
                    document.offset(at.position),
                    p.context.include_declaration,
                ))
            }),
            req::DocumentSymbolRequest::METHOD => {
                self.answer(request, |s, p: lsp_types::DocumentSymbolParams| {
                    let document = s.documents.get(&p.text_document.uri)?;
                    Some(lsp_types::DocumentSymbolResponse::Nested(
                        crate::navigate::document_symbols(document),
                    ))
                })
            }
            req::PrepareRenameRequest::METHOD => {
                self.answer(request, |s, p: lsp_types::TextDocumentPositionParams| {
                    let document = s.documents.get(&p.text_document.uri)?;
                    crate::navigate::prepare_rename(document, document.offset(p.position))
                        .map(lsp_types::PrepareRenameResponse::Range)
                })
            }
            req::Rename::METHOD => {
                let id = request.id.clone();
                let Ok(params) = serde_json::from_value::<lsp_types::RenameParams>(request.params)
                else {
                    return invalid(id);
                };
                let at = params.text_document_position;
                let Some(document) = self.documents.get(&at.text_document.uri) else {
                    return Response::new_ok(id, serde_json::Value::Null);
                };
                match crate::navigate::rename(
                    document,
                    document.offset(at.position),
                    &params.new_name,
                ) {
                    Ok(edit) => Response::new_ok(id, edit),
                    Err(error) => {
                        Response::new_err(id, ErrorCode::InvalidParams as i32, error.to_string())
                    }
                }
            }
            req::CodeActionRequest::METHOD => {
                self.answer(request, |s, p: lsp_types::CodeActionParams| {
                    let document = s.documents.get(&p.text_document.uri)?;
                    Some(crate::actions::code_actions(
                        document,
                        &p.context.diagnostics,
                    ))
                })
            }
            _ => Response::new_err(
                request.id,
                ErrorCode::MethodNotFound as i32,
                format!("`{}` is not supported", request.method),
            ),
        }
    }

    /// Parses the request's parameters, runs `handler`, and answers (`null` for `None`).
    fn answer<P: DeserializeOwned, R: Serialize>(
        &self,
        request: Request,
        handler: impl FnOnce(&Self, P) -> Option<R>,
    ) -> Response {
        match serde_json::from_value::<P>(request.params) {
            Ok(params) => Response::new_ok(request.id, handler(self, params)),
            Err(_) => invalid(request.id),
        }
    }
}

fn invalid(id: lsp_server::RequestId) -> Response {
    Response::new_err(
        id,
        ErrorCode::InvalidParams as i32,
        "the request's parameters do not have the protocol's shape".to_owned(),
    )
}
