// Starts `clarion lsp` for TOML files; the server itself decides which are flows or
// scenarios and ignores the rest (docs/editors.md).
const { workspace } = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function activate() {
  const command = workspace.getConfiguration('clarion').get('path') || 'clarion';
  // TransportKind.stdio adds `--stdio`, which `clarion lsp` accepts.
  const server = { command, args: ['lsp'], transport: TransportKind.stdio };
  client = new LanguageClient(
    'clarion',
    'Clarion',
    { run: server, debug: server },
    {
      documentSelector: [{ scheme: 'file', pattern: '**/*.toml' }],
      // `$ref` schema files and flows on disk: their changes re-check the open files.
      synchronize: { fileEvents: workspace.createFileSystemWatcher('**/*.{toml,json,lock}') },
    },
  );
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
