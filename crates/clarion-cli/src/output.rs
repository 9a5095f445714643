//! Writing to the terminal: colour only on a TTY (anstream strips it otherwise, and honours
//! `NO_COLOR` / `CLICOLOR_FORCE`), and a closed pipe (`clarion validate | head`) ends
//! quietly instead of panicking.

use std::io::Write;

/// Writes `text` to stdout.
pub fn out(text: &str) {
    let mut stdout = anstream::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes `text` to stderr.
pub fn err(text: &str) {
    let mut stderr = anstream::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Whether styled output would reach a colour terminal on stdout.
pub fn stdout_styled() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// Whether styled output would reach a colour terminal on stderr.
pub fn stderr_styled() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

/// `error: MESSAGE` on stderr, rustc style.
pub fn error_line(message: &str) {
    let style = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    err(&format!("{style}error{style:#}: {message}\n"));
}
