//! Server-Sent Events framing (WHATWG HTML, "Server-sent events", 9.2.6 interpreting an
//! event stream), for `GET /v1/events/stream`: `id: N`, `event: <kind>`, `data: <json>`
//! lines, a blank line ends an event, `:` starts a comment.
//!
//! Hand-written rather than a crate: the framing is ten lines and the CLI reads it
//! line by line from a blocking body anyway.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id seen on the stream (sticky across events, as the spec says).
    pub id: Option<String>,
    /// `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Feeds lines, returns events.
#[derive(Debug, Default)]
pub struct SseParser {
    last_id: Option<String>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last event id seen (to resume with `Last-Event-ID`).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// One line, without or with its `\n` / `\r\n`; an event when this line ended one.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let event = self.event.take();
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            return Some(SseEvent {
                id: self.last_id.clone(),
                event,
                data: std::mem::take(&mut self.data),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields: ignored.
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        text.split_inclusive('\n')
            .filter_map(|l| p.line(l))
            .collect()
    }

    #[test]
    fn events_with_ids_kinds_and_data() {
        let got = parse(
            ": keep-alive\n\nid: 7\nevent: audit\ndata: {\"id\":7}\n\nid:8\r\nevent:threat\r\ndata:a\r\ndata: b\r\n\r\n",
        );
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("7".into()),
                    event: Some("audit".into()),
                    data: "{\"id\":7}".into()
                },
                SseEvent {
                    id: Some("8".into()),
                    event: Some("threat".into()),
                    data: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn ids_stick_and_events_without_data_are_dropped() {
        let mut p = SseParser::new();
        assert_eq!(p.line("id: 3"), None);
        assert_eq!(p.line("event: system"), None);
        assert_eq!(p.line(""), None); // no data: nothing dispatched, type reset
        assert_eq!(p.line("data"), None); // a field name alone: empty value
        let e = p.line("").unwrap();
        assert_eq!(
            (e.id.as_deref(), e.event, e.data.as_str()),
            (Some("3"), None, "")
        );
        assert_eq!(p.line("retry: 1000"), None);
        assert_eq!(p.last_id(), Some("3"));
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert_eq!(parse("id: 1\ndata: x\n"), vec![]);
    }
}
