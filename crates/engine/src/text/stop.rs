//! Stop strings for streamed generation.
//!
//! Text arrives a token at a time, and a stop string can straddle tokens (`"<|im"` + `"_end|>"`).
//! [`StopMatcher`] emits text only once it is sure the text cannot be the start of a stop string:
//! it holds back the longest tail of the stream that is a proper prefix of some stop string, so a
//! stop string never leaks, not even partly. Each push costs O(Σ|stop|²) at worst, independent of
//! how much text has streamed.
//!
//! ```
//! use engine::text::stop::StopMatcher;
//! let mut m = StopMatcher::new(vec!["<|im_end|>".into()]);
//! assert_eq!(m.push("Paris<|im"), ("Paris".to_string(), false));
//! assert_eq!(m.push("_end|> more"), (String::new(), true));
//! ```

/// Holds back text that could be the start of a stop string, so no stop string ever leaks partly.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet emitted: always a proper prefix of some stop string (between pushes).
    held: String,
    stopped: bool,
    /// The stop string that ended the text.
    matched: Option<String>,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would end generation before it starts).
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            stops,
            held: String::new(),
            stopped: false,
            matched: None,
        }
    }

    /// The stop string that ended the text, once one has.
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// Whether a stop string has been seen; after that every push returns `("", true)`.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Feed newly decoded text; returns (text safe to emit now, whether a stop string was hit).
    /// When hit, the emitted text ends right before the stop string and nothing after it is emitted.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(text);
        // The earliest stop occurrence wins: text after it was never meant to be produced.
        let first_hit = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|&(at, _)| at);
        if let Some((at, s)) = first_hit {
            self.matched = Some(s.clone());
            self.held.truncate(at);
            self.stopped = true;
            return (std::mem::take(&mut self.held), true);
        }
        let keep_from = self.partial_stop_start();
        let tail = self.held.split_off(keep_from);
        (std::mem::replace(&mut self.held, tail), false)
    }

    /// End of generation without a stop: release what was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The byte offset of the longest suffix of `held` that is a proper prefix of a stop string
    /// (`held.len()` when there is none). Offsets are char boundaries, so Korean and other
    /// multi-byte text is never split inside a character.
    fn partial_stop_start(&self) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let window_start = self.held.len().saturating_sub(longest.saturating_sub(1));
        self.held
            .char_indices()
            .map(|(i, _)| i)
            .skip_while(|&i| i < window_start)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}
