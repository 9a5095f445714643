//! Reading a command's stdout and stderr without trusting their size.
//!
//! stdout is the result, so it is kept whole up to `max_output_bytes` and the call fails the
//! moment it grows past that. stderr is only for the error message, so it is drained to the
//! end (a child blocked on a full stderr pipe would otherwise hang) but only its last
//! [`STDERR_TAIL`] bytes are kept: a traceback's useful line is its last.

use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of stderr kept for the error message.
pub(crate) const STDERR_TAIL: usize = 2048;

/// stdout passed its limit.
#[derive(Debug)]
pub(crate) struct Overflow;

/// Reads `reader` to the end, failing as soon as it passes `limit` bytes.
pub(crate) async fn read_limited<R: AsyncRead + Unpin>(
    mut reader: R,
    limit: u64,
) -> Result<Vec<u8>, Overflow> {
    let mut out = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return Ok(out),
            Ok(n) => n,
        };
        if (out.len() + n) as u64 > limit {
            return Err(Overflow);
        }
        out.extend_from_slice(&buffer[..n]);
    }
}

/// The end of a stream, as it is read.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * STDERR_TAIL {
            let excess = self.bytes.len() - STDERR_TAIL;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    /// The kept text, trimmed; `…` marks a cut beginning.
    pub(crate) fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(STDERR_TAIL);
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        let text = text.trim();
        if self.cut || start > 0 {
            format!("…{text}")
        } else {
            text.to_owned()
        }
    }
}

/// Drains `reader` into `tail`.
pub(crate) async fn drain_into<R: AsyncRead + Unpin>(mut reader: R, tail: &Mutex<Tail>) {
    let mut buffer = [0u8; 4096];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut tail) = tail.lock() {
                    tail.push(&buffer[..n]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdout_is_bounded_and_stderr_keeps_its_end() {
        let data = [b'x'; 100];
        assert_eq!(
            read_limited(&data[..], 100).await.ok().map(|v| v.len()),
            Some(100)
        );
        assert!(read_limited(&data[..], 99).await.is_err());

        let tail = Mutex::new(Tail::default());
        let mut long = vec![b'a'; 10_000];
        long.extend_from_slice(b"\nValueError: the last line\n");
        drain_into(&long[..], &tail).await;
        let text = tail.lock().map(|t| t.text()).unwrap_or_default();
        assert!(text.starts_with('…'));
        assert!(text.ends_with("ValueError: the last line"));
        assert!(text.len() <= STDERR_TAIL + '…'.len_utf8());

        let short = Mutex::new(Tail::default());
        drain_into(&b"  oops \n"[..], &short).await;
        assert_eq!(short.lock().map(|t| t.text()).unwrap_or_default(), "oops");
    }
}
