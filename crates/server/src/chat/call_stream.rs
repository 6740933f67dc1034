//! Tool calls as they are written: a scanner over the text of one or more call objects
//! (`{"name": "f", "arguments": {...}}`, separated by whitespace, `,` or `;`) that announces a
//! call as soon as its name is complete and then passes its arguments on in pieces, as OpenAI
//! streams `delta.tool_calls[i].function.arguments`.
//!
//! The scanner only streams the common layout (`name` first, then `arguments` or `parameters`
//! holding an object or array); on anything else it stops and the caller parses the whole text
//! at the end, as before. Its decisions depend only on the text, never on how the text was split
//! into pieces, so a stream and a non-streaming answer agree.

/// What the scanner found in the text so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallPiece {
    /// A call's name is complete.
    Begin(String),
    /// More of the current call's arguments (raw JSON text, in order).
    Args(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between calls: skipping separators, waiting for the next `{`.
    Seek,
    /// Inside a call's arguments value: `emitted` bytes of the text are passed on.
    Value { emitted: usize },
    /// After the arguments: up to the call object's closing `}`.
    Tail,
    /// No more calls (the end of a list, or text that is not a call).
    Done,
    /// The layout is not one the scanner streams: the caller parses the whole text.
    Off,
}

/// JSON nesting outside and inside strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Nesting {
    depth: u32,
    in_str: bool,
    esc: bool,
}

impl Nesting {
    /// Feeds one byte; `true` when it closes the outermost container.
    fn feed(&mut self, b: u8) -> bool {
        if self.in_str {
            match (self.esc, b) {
                (true, _) => self.esc = false,
                (false, b'\\') => self.esc = true,
                (false, b'"') => self.in_str = false,
                _ => {}
            }
            return false;
        }
        match b {
            b'"' => self.in_str = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

/// The incremental scanner; feed it the whole text so far each time (it remembers where it was).
#[derive(Clone, Debug)]
pub struct CallScanner {
    state: State,
    /// Bytes of the text decided.
    pos: usize,
    nest: Nesting,
    /// Calls announced.
    begun: usize,
    /// The current call's arguments are complete.
    closed: bool,
}

impl Default for CallScanner {
    fn default() -> Self {
        CallScanner { state: State::Seek, pos: 0, nest: Nesting::default(), begun: 0, closed: true }
    }
}

/// How a head (`{"name": "...", "arguments": `) reads.
enum Head {
    NeedMore,
    Mismatch,
    /// The name, and where the arguments value starts.
    Found(String, usize),
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Expects `lit` at `i` (after whitespace): the position after it.
fn expect(b: &[u8], i: usize, lit: &[u8]) -> Result<usize, Head> {
    let i = skip_ws(b, i);
    let have = &b[i.min(b.len())..];
    if have.len() < lit.len() {
        return if lit.starts_with(have) { Err(Head::NeedMore) } else { Err(Head::Mismatch) };
    }
    if have.starts_with(lit) {
        Ok(i + lit.len())
    } else {
        Err(Head::Mismatch)
    }
}

/// A JSON string at `i` (after whitespace): its value and the position after it.
fn string_at(s: &str, i: usize) -> Result<(String, usize), Head> {
    let b = s.as_bytes();
    let i = skip_ws(b, i);
    match b.get(i) {
        None => return Err(Head::NeedMore),
        Some(b'"') => {}
        Some(_) => return Err(Head::Mismatch),
    }
    let mut n = Nesting::default();
    for (k, &c) in b.iter().enumerate().skip(i) {
        n.feed(c);
        if k > i && !n.in_str {
            let name = serde_json::from_str::<String>(&s[i..=k]).map_err(|_| Head::Mismatch)?;
            return Ok((name, k + 1));
        }
    }
    Err(Head::NeedMore)
}

fn head(s: &str, i: usize) -> Head {
    let b = s.as_bytes();
    let run = || -> Result<(String, usize), Head> {
        let i = expect(b, i, b"{")?;
        let i = expect(b, i, b"\"name\"")?;
        let i = expect(b, i, b":")?;
        let (name, i) = string_at(s, i)?;
        let i = expect(b, i, b",")?;
        let i = match expect(b, i, b"\"arguments\"") {
            Ok(i) => i,
            Err(Head::Mismatch) => expect(b, i, b"\"parameters\"")?,
            Err(e) => return Err(e),
        };
        let i = expect(b, i, b":")?;
        let i = skip_ws(b, i);
        match b.get(i) {
            None => Err(Head::NeedMore),
            Some(b'{' | b'[') => Ok((name, i)),
            Some(_) => Err(Head::Mismatch),
        }
    };
    match run() {
        Ok((name, at)) => Head::Found(name, at),
        Err(h) => h,
    }
}

impl CallScanner {
    /// Calls announced so far.
    pub fn begun(&self) -> usize {
        self.begun
    }

    /// The scanner gave up on this layout (and announced nothing): parse at the end instead.
    pub fn off(&self) -> bool {
        self.state == State::Off
    }

    /// Every announced call's arguments are complete.
    pub fn settled(&self) -> bool {
        self.closed
    }

    /// Bytes of the text that belong to the calls scanned so far (up to the last `}` read).
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// Scans the text (which only grows between calls) and reports what is new.
    pub fn scan(&mut self, text: &str, out: &mut Vec<CallPiece>) {
        let b = text.as_bytes();
        loop {
            match self.state {
                State::Done | State::Off => return,
                State::Seek => {
                    let mut i = self.pos;
                    while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',' || b[i] == b';') {
                        i += 1;
                    }
                    match b.get(i) {
                        None => return,
                        Some(b'{') => match head(text, i) {
                            Head::NeedMore => return,
                            Head::Mismatch => {
                                self.state = if self.begun == 0 { State::Off } else { State::Done };
                                return;
                            }
                            Head::Found(name, at) => {
                                out.push(CallPiece::Begin(name));
                                self.begun += 1;
                                self.closed = false;
                                self.pos = at;
                                self.nest = Nesting::default();
                                self.state = State::Value { emitted: at };
                            }
                        },
                        Some(_) => {
                            self.state = if self.begun == 0 { State::Off } else { State::Done };
                            return;
                        }
                    }
                }
                State::Value { emitted } => {
                    let mut end = None;
                    while self.pos < b.len() {
                        let c = b[self.pos];
                        self.pos += 1;
                        if self.nest.feed(c) {
                            end = Some(self.pos);
                            break;
                        }
                    }
                    // The text holds whole characters; a cut inside one cannot happen at an
                    // ASCII structural byte, but check the boundary all the same.
                    let upto = end.unwrap_or(self.pos);
                    if upto > emitted && text.is_char_boundary(upto) {
                        out.push(CallPiece::Args(text[emitted..upto].to_string()));
                        self.state = State::Value { emitted: upto };
                    }
                    match end {
                        Some(_) if text.is_char_boundary(upto) => {
                            self.closed = true;
                            self.nest = Nesting { depth: 1, ..Nesting::default() };
                            self.state = State::Tail;
                        }
                        _ => return,
                    }
                }
                State::Tail => {
                    // Anything up to the object's `}` (normally nothing but whitespace).
                    while self.pos < b.len() {
                        let c = b[self.pos];
                        self.pos += 1;
                        if self.nest.feed(c) {
                            self.state = State::Seek;
                            break;
                        }
                    }
                    if self.state == State::Tail {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `text` fed in pieces of `step` bytes (at char boundaries): the pieces, merged.
    fn scan_split(text: &str, step: usize) -> (Vec<(String, String)>, CallScanner) {
        let mut sc = CallScanner::default();
        let mut out = Vec::new();
        let mut end = 0;
        while end < text.len() {
            end = (end + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            sc.scan(&text[..end], &mut out);
        }
        let mut calls: Vec<(String, String)> = Vec::new();
        for p in out {
            match p {
                CallPiece::Begin(n) => calls.push((n, String::new())),
                CallPiece::Args(a) => calls.last_mut().expect("a call").1.push_str(&a),
            }
        }
        (calls, sc)
    }

    #[test]
    fn calls_stream_in_pieces_whatever_the_split() {
        let text = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울 \\\"}\\\" x\", \"n\": [1, {\"a\": 2}]}}, {\"name\": \"t\", \"parameters\": {}}";
        for step in 1..=text.len() {
            let (calls, sc) = scan_split(text, step);
            assert_eq!(calls.len(), 2, "step {step}");
            assert_eq!(calls[0].0, "get_weather");
            assert_eq!(calls[0].1, "{\"city\": \"서울 \\\"}\\\" x\", \"n\": [1, {\"a\": 2}]}");
            assert_eq!(calls[1], ("t".to_string(), "{}".to_string()));
            assert!(sc.settled() && !sc.off());
            assert_eq!(sc.consumed(), text.len());
        }
        // Arguments really come in several pieces when the text does.
        let mut sc = CallScanner::default();
        let mut out = Vec::new();
        sc.scan("{\"name\": \"f\", \"arguments\": {\"a\": ", &mut out);
        sc.scan("{\"name\": \"f\", \"arguments\": {\"a\": 12", &mut out);
        sc.scan("{\"name\": \"f\", \"arguments\": {\"a\": 123}", &mut out);
        assert_eq!(out, vec![CallPiece::Begin("f".into()), CallPiece::Args("{\"a\": ".into()), CallPiece::Args("12".into()), CallPiece::Args("3}".into())]);
        assert!(sc.settled());
    }

    #[test]
    fn other_layouts_are_left_to_the_end() {
        for text in ["{\"arguments\": {}, \"name\": \"f\"}", "{\"name\": \"f\", \"arguments\": \"{}\"}", "Hello", "{\"tool\": 1}"] {
            let (calls, sc) = scan_split(text, 1);
            assert!(calls.is_empty() && sc.off(), "{text}");
        }
        // After a streamed call, a non-call ends the scan without undoing it.
        let (calls, sc) = scan_split("{\"name\": \"f\", \"arguments\": {}}]}", 3);
        assert_eq!(calls.len(), 1);
        assert!(!sc.off() && sc.settled());
        // A cut-off call is announced and unsettled.
        let (calls, sc) = scan_split("{\"name\": \"f\", \"arguments\": {\"a\": [1, 2", 2);
        assert_eq!(calls, vec![("f".to_string(), "{\"a\": [1, 2".to_string())]);
        assert!(!sc.settled());
    }
}
