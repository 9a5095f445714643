//! Server-sent events: turns a byte stream into `event:`/`data:` records.
//!
//! Both OpenAI protocols stream this way. Chunks from the network split lines anywhere
//! (even inside a UTF-8 character), so bytes are buffered until a full line arrives, and an
//! event is complete at the blank line that ends it.

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, if any.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Incremental decoder.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    event: Option<String>,
    /// The `data:` lines so far, joined with `\n`; `None` before the first.
    data: Option<String>,
}

/// A line's text: the bytes themselves when they are UTF-8 (checked a word at a time), a
/// lossy copy when they are not.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl SseDecoder {
    /// Feeds bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        // Lines are read in place and the buffer shifted once per push: draining line by
        // line would move the rest of a 64 KiB network chunk once for every line in it.
        let buffer = std::mem::take(&mut self.buffer);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = buffer[start..].iter().position(|b| *b == b'\n') {
            let end = start + offset;
            let line = text(&buffer[start..end]);
            if let Some(event) = self.line(line.trim_end_matches('\r')) {
                events.push(event);
            }
            start = end + 1;
        }
        self.buffer = buffer;
        self.buffer.drain(..start);
        events
    }

    /// Ends the stream; returns a last event that was not followed by a blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            let line = text(&rest).trim_end_matches('\r').to_owned();
            if let Some(event) = self.line(&line) {
                return Some(event);
            }
        }
        self.line("")
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_none() && self.event.is_none() {
                return None;
            }
            return Some(SseEvent {
                event: self.event.take(),
                data: self.data.take().unwrap_or_default(),
            });
        }
        if line.starts_with(':') {
            return None; // a comment (keep-alive)
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_arbitrary_chunking() {
        let stream = "data: {\"a\":1}\n\n: keep-alive\n\nevent: done\r\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
        for chunk in 1..stream.len() {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            for piece in stream.as_bytes().chunks(chunk) {
                events.extend(decoder.push(piece));
            }
            events.extend(decoder.finish());
            assert_eq!(
                events,
                [
                    SseEvent {
                        event: None,
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: Some("done".into()),
                        data: "x\ny".into()
                    },
                    SseEvent {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn bad_utf8_is_read_lossily_and_an_empty_data_line_is_an_event() {
        let mut decoder = SseDecoder::default();
        let events = decoder.push(b"data: caf\xc3\n\ndata:\n\n");
        assert_eq!(
            events,
            [
                SseEvent {
                    event: None,
                    data: "caf\u{fffd}".into()
                },
                SseEvent {
                    event: None,
                    data: String::new()
                },
            ]
        );
    }

    #[test]
    fn a_last_event_without_blank_line_is_kept() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"data: tail").is_empty());
        assert_eq!(
            decoder.finish(),
            Some(SseEvent {
                event: None,
                data: "tail".into()
            })
        );
    }
}
