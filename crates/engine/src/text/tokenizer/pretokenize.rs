//! Byte-level BPE pre-tokenizers: `tokenizer.ggml.pre` names -> the list of regexes llama.cpp applies
//! in order (`llm_tokenizer_bpe` in `llama-vocab.cpp`), and the splitter (`unicode_regex_split`).
//!
//! Each regex splits every piece left by the previous one; the text between matches is kept as a piece
//! of its own (nothing is dropped). Like llama.cpp, the two most common regexes (GPT-2's and Llama 3's)
//! run as hand-written scanners, which also pins down the exact meaning of `\s+(?!\S)`; the others go
//! through `fancy-regex` (they need look-ahead).

use super::unicode::{flags, LETTER, NUMBER, WHITESPACE};

/// GPT-2's regex (`unicode_regex_split_custom_gpt2` implements it by hand).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's regex, with the case-insensitive group spelled out (`unicode_regex_split_custom_llama3`).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const BLOOM: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";
const CJK_HANGUL: &str = "[一-龥ࠀ-一가-퟿]+";

const DEFAULT_SET: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
const GPT2_SET: &[&str] = &[GPT2];
const STARCODER_SET: &[&str] = &[r"\p{N}", GPT2];
const LLAMA3_SET: &[&str] = &[LLAMA3];
const QWEN2_SET: &[&str] = &[QWEN2];
const FALCON_SET: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"];
const DEEPSEEK_CODER_SET: &[&str] = &["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_HANGUL, r"\p{N}"];
// Characters that Unicode normalization would fold (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A)
// are written as \x{..} escapes so that the class survives editors and copy-paste unchanged.
const DEEPSEEK_LLM_SET: &[&str] = &[
    "[\r\n]",
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    CJK_HANGUL,
    r"\p{N}+",
];
const DEEPSEEK3_SET: &[&str] = &[
    r"\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];

/// What a `tokenizer.ggml.pre` name selects, besides its regexes (llama.cpp's `llama_vocab::load`).
#[derive(Clone, Copy, Debug)]
pub struct PreConfig {
    pub regexes: &'static [&'static str],
    /// `clean_spaces`: detokenizing removes the space in " ." " ?" " 's" ... (on for most BPE vocabularies).
    pub clean_spaces: bool,
    /// A whole pre-tokenized word that is itself a token is taken as is, without merging.
    pub ignore_merges: bool,
    /// The default of `add_bos` when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos: bool,
    /// The pre-tokenizer clears the BOS id (ChatGLM 4).
    pub no_bos: bool,
}

const fn cfg(regexes: &'static [&'static str], clean_spaces: bool) -> PreConfig {
    PreConfig { regexes, clean_spaces, ignore_merges: false, add_bos: false, no_bos: false }
}

/// The pre-tokenizer names we support, for error messages.
pub const SUPPORTED: &[&str] = &[
    "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
    "dbrx", "smaug-bpe", "deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon", "mpt", "starcoder",
    "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
    "refact", "command-r", "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "olmo", "poro-chat", "bloom",
    "gpt3-finnish", "glm4", "chatglm-bpe", "jais", "tekken", "smollm", "codeshell", "exaone", "exaone4",
    "minerva-7b", "gpt-4o", "llama4", "trillion", "granite-docling", "seed-coder", "grok-2", "bailingmoe",
    "bailingmoe2", "llada-moe", "hunyuan",
];

/// The configuration of a pre-tokenizer name (an empty name is llama.cpp's fallback, `default`).
pub fn pre_config(name: &str) -> Option<PreConfig> {
    Some(match name {
        "" | "default" => cfg(DEFAULT_SET, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
            PreConfig { ignore_merges: true, add_bos: true, ..cfg(LLAMA3_SET, true) }
        }
        "dbrx" | "smaug-bpe" => cfg(LLAMA3_SET, true),
        "deepseek-llm" => cfg(DEEPSEEK_LLM_SET, false),
        "deepseek-coder" => cfg(DEEPSEEK_CODER_SET, false),
        "deepseek-v3" => cfg(DEEPSEEK3_SET, false),
        "falcon" => cfg(FALCON_SET, true),
        "mpt" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
        | "mellum" | "olmo" | "jais" | "exaone4" => cfg(GPT2_SET, true),
        "trillion" | "granite-docling" => cfg(GPT2_SET, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" => cfg(STARCODER_SET, true),
        "command-r" | "smollm" => cfg(STARCODER_SET, false),
        "qwen2" | "deepseek-r1-qwen" | "hunyuan" | "grok-2" => cfg(QWEN2_SET, false),
        "megrez" | "stablelm2" => cfg(QWEN2_SET, true),
        "poro-chat" => cfg(&[BLOOM], false),
        "bloom" | "gpt3-finnish" => cfg(&[BLOOM], true),
        "glm4" | "chatglm-bpe" => PreConfig { no_bos: true, ..cfg(LLAMA3_SET, true) },
        "tekken" => PreConfig { ignore_merges: true, add_bos: true, ..cfg(&[TEKKEN], false) },
        "gpt-4o" | "llama4" => cfg(&[GPT4O], false),
        "seed-coder" => cfg(&[SEED_CODER], false),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => cfg(&[BAILINGMOE], false),
        _ => return None,
    })
}

enum Step {
    Gpt2,
    Llama3,
    Regex(fancy_regex::Regex),
}

/// A compiled pre-tokenizer: splits text into the words that BPE then merges separately.
pub struct PreTokenizer {
    steps: Vec<Step>,
}

impl PreTokenizer {
    pub fn new(regexes: &[&str]) -> Result<Self, String> {
        let steps = regexes
            .iter()
            .map(|&re| {
                Ok(match re {
                    GPT2 => Step::Gpt2,
                    LLAMA3 => Step::Llama3,
                    // llama.cpp's collapsed-category trick leaves ASCII '~' out of \p{S}; keep that.
                    _ => Step::Regex(
                        fancy_regex::Regex::new(&re.replace(r"\p{S}", r"[\p{S}--~]"))
                            .map_err(|e| format!("bad pre-tokenizer regex {re:?}: {e}"))?,
                    ),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(PreTokenizer { steps })
    }

    /// Splits `text` into words (byte ranges in order, covering the whole text).
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut ranges = vec![(0usize, text.len())];
        for step in &self.steps {
            let mut next = Vec::with_capacity(ranges.len() * 2);
            for &(a, b) in &ranges {
                let piece = &text[a..b];
                match step {
                    Step::Gpt2 => scan(piece, a, &mut next, gpt2_next),
                    Step::Llama3 => scan(piece, a, &mut next, llama3_next),
                    Step::Regex(re) => regex_split(re, piece, a, &mut next),
                }
            }
            ranges = next;
        }
        ranges.into_iter().filter(|(a, b)| b > a).map(|(a, b)| &text[a..b]).collect()
    }
}

fn regex_split(re: &fancy_regex::Regex, piece: &str, base: usize, out: &mut Vec<(usize, usize)>) {
    let mut last = 0;
    for m in re.find_iter(piece) {
        // A backtracking-limit error leaves the rest of the piece as one word.
        let Ok(m) = m else { break };
        if m.start() > last {
            out.push((base + last, base + m.start()));
        }
        if m.end() > m.start() {
            out.push((base + m.start(), base + m.end()));
        }
        last = m.end();
    }
    if last < piece.len() {
        out.push((base + last, base + piece.len()));
    }
}

/// A piece as codepoints, with the class lookups the hand-written scanners need. Positions past the
/// end read as "no codepoint" (`None` / no flags), which is how the scanners see a piece's end.
struct Cps {
    cps: Vec<char>,
}

impl Cps {
    fn len(&self) -> usize {
        self.cps.len()
    }
    fn get(&self, i: usize) -> Option<char> {
        self.cps.get(i).copied()
    }
    fn fl(&self, i: usize) -> u8 {
        self.cps.get(i).map_or(0, |&c| flags(c))
    }
    fn is(&self, i: usize, f: u8) -> bool {
        self.fl(i) & f != 0
    }
    /// In range and neither whitespace, letter nor number (`[^\s\p{L}\p{N}]`).
    fn is_other(&self, i: usize) -> bool {
        i < self.len() && self.fl(i) == 0
    }
    fn is_crlf(&self, i: usize) -> bool {
        matches!(self.get(i), Some('\r' | '\n'))
    }
    /// `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (optionally case-insensitive): the match length.
    fn contraction(&self, pos: usize, fold: bool) -> Option<usize> {
        if self.get(pos) != Some('\'') || pos + 1 >= self.len() {
            return None;
        }
        let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
        let c1 = low(self.get(pos + 1))?;
        if matches!(c1, 's' | 't' | 'm' | 'd') {
            return Some(2);
        }
        if pos + 2 < self.len() {
            let c2 = low(self.get(pos + 2))?;
            if matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return Some(3);
            }
        }
        None
    }
    /// Whitespace run at `pos`: (its length, end of its last '\r'/'\n' if any).
    fn whitespace_run(&self, pos: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut last_crlf = None;
        while self.is(pos + n, WHITESPACE) {
            if self.is_crlf(pos + n) {
                last_crlf = Some(pos + n + 1);
            }
            n += 1;
        }
        (n, last_crlf)
    }
}

/// A hand-written scanner: `next(cps, pos)` returns where the word starting at `pos` ends (> pos).
type Scanner = fn(&Cps, usize) -> usize;

/// Runs a hand-written scanner over a piece.
fn scan(piece: &str, base: usize, out: &mut Vec<(usize, usize)>, next: Scanner) {
    let cps = Cps { cps: piece.chars().collect() };
    // Byte offset of each codepoint boundary.
    let mut offs = Vec::with_capacity(cps.len() + 1);
    let mut o = 0;
    for &c in &cps.cps {
        offs.push(o);
        o += c.len_utf8();
    }
    offs.push(o);
    let mut pos = 0;
    while pos < cps.len() {
        let end = next(&cps, pos).clamp(pos + 1, cps.len());
        out.push((base + offs[pos], base + offs[end]));
        pos = end;
    }
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
fn gpt2_next(c: &Cps, pos: usize) -> usize {
    if let Some(n) = c.contraction(pos, false) {
        return pos + n;
    }
    let space = c.get(pos) == Some(' ');
    let start = pos + usize::from(space);
    let lead = if space { pos + 1 } else { pos };
    for class in [LETTER, NUMBER] {
        if c.is(lead, class) {
            let mut p = start;
            while c.is(p, class) {
                p += 1;
            }
            return p;
        }
    }
    if c.is_other(lead) {
        let mut p = start;
        while c.is_other(p) {
            p += 1;
        }
        return p;
    }
    let (n_ws, _) = c.whitespace_run(pos);
    if n_ws > 1 && pos + n_ws < c.len() {
        // \s+(?!\S): leave the last space to start the next word.
        return pos + n_ws - 1;
    }
    if n_ws > 0 {
        return pos + n_ws;
    }
    pos + 1
}

/// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
fn llama3_next(c: &Cps, pos: usize) -> usize {
    if let Some(n) = c.contraction(pos, true) {
        return pos + n;
    }
    let is_num = c.is(pos, NUMBER);
    if !(c.is_crlf(pos) || is_num) && (c.is(pos, LETTER) || c.is(pos + 1, LETTER)) {
        let mut p = pos + 1;
        while c.is(p, LETTER) {
            p += 1;
        }
        return p;
    }
    if is_num {
        let mut p = pos;
        while c.is(p, NUMBER) && p - pos < 3 {
            p += 1;
        }
        return p;
    }
    let space = c.get(pos) == Some(' ');
    let lead = if space { pos + 1 } else { pos };
    // llama.cpp tests "in range" on `pos` itself here, so a lone trailing space also lands in this branch.
    if c.fl(lead) & (WHITESPACE | LETTER | NUMBER) == 0 {
        let mut p = lead;
        while c.is_other(p) {
            p += 1;
        }
        while c.is_crlf(p) {
            p += 1;
        }
        return p;
    }
    let (n_ws, last_crlf) = c.whitespace_run(pos);
    if let Some(end) = last_crlf {
        return end;
    }
    if n_ws > 1 && pos + n_ws < c.len() {
        return pos + n_ws - 1;
    }
    if n_ws > 0 {
        return pos + n_ws;
    }
    pos + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pre: &str, text: &str) -> Vec<String> {
        let cfg = pre_config(pre).expect("known pre");
        PreTokenizer::new(cfg.regexes).expect("compiles").split(text).into_iter().map(String::from).collect()
    }

    #[test]
    fn all_supported_names_compile() {
        for name in SUPPORTED {
            let cfg = pre_config(name).unwrap_or_else(|| panic!("{name} has no config"));
            PreTokenizer::new(cfg.regexes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn gpt2_whitespace_lookahead() {
        assert_eq!(split("gpt-2", "a   b"), ["a", "  ", " b"]);
        assert_eq!(split("gpt-2", "a  \n"), ["a", "  \n"]);
        assert_eq!(split("gpt-2", "it's 12 apples!!"), ["it", "'s", " 12", " apples", "!!"]);
    }

    #[test]
    fn smollm_splits_digits_first() {
        assert_eq!(split("smollm", "x 2024y"), ["x", " ", "2", "0", "2", "4", "y"]);
    }

    #[test]
    fn llama3_groups() {
        assert_eq!(split("llama3", "Hello WORLD's 12345\r\n\n  x"), ["Hello", " WORLD", "'s", " ", "123", "45", "\r\n\n", " ", " x"]);
        assert_eq!(split("llama3", "a ..\n"), ["a", " ..\n"]);
    }

    /// The hand-written scanners implement their regexes: fuzz them against fancy-regex on strings
    /// drawn from an alphabet of the characters that matter (letters of several scripts, digits,
    /// ASCII and Unicode whitespace, CR/LF, apostrophes, punctuation, marks, emoji).
    #[test]
    fn scanners_agree_with_their_regexes() {
        const ALPHABET: &[char] = &[
            'a', 'Z', 's', 't', 'e', 'r', 'v', 'l', 'L', 'S', 'd', 'm', '\'', '\'', ' ', ' ', ' ', '\t', '\n', '\r',
            '\u{0B}', '\u{A0}', '\u{3000}', '\u{85}', '1', '2', '٣', 'Ⅻ', '.', '!', ',', '-', '_', '(', '~', '$',
            '한', '국', 'é', '\u{301}', '日', '🍕', '\u{200D}', '\u{FFFD}',
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut rand = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let scanners: [(&str, Scanner); 2] = [(GPT2, gpt2_next), (LLAMA3, llama3_next)];
        for (re, next) in scanners {
            let regex = fancy_regex::Regex::new(re).expect("regex");
            for _ in 0..3000 {
                let len = 1 + rand(14);
                let text: String = (0..len).map(|_| ALPHABET[rand(ALPHABET.len())]).collect();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                scan(&text, 0, &mut a, next);
                regex_split(&regex, &text, 0, &mut b);
                let words = |v: &[(usize, usize)]| v.iter().map(|&(s, e)| text[s..e].to_string()).collect::<Vec<_>>();
                assert_eq!(words(&a), words(&b), "{re} on {text:?}");
            }
        }
    }

    #[test]
    fn qwen2_regex_matches_llama3_scanner_except_digits() {
        let text = "Hi there!  How's\tit going?\n\n 안녕 123";
        let q = split("qwen2", text);
        assert_eq!(q.concat(), text);
        assert!(q.contains(&"1".to_string()) && q.contains(&" 안녕".to_string()));
    }
}
