//! Automatic titles: after the first completed exchange of an untitled conversation, a
//! background task asks the model for a short title (greedy, a few tokens, one line) and stores
//! it, unless the user named the conversation meanwhile.
//!
//! A model's answer is cleaned (first line, a `Title:` label, quotes, markup and end
//! punctuation removed, at most [`MAX_CHARS`]); when nothing usable is left, or the question is
//! Korean and the title is not, the title is the first words of the question instead, so a
//! Korean question gets a Korean title even from a model that only writes English.
//!
//! A title runs under the user's use-case policy like their answers do: when the policy does not
//! allow the model, or the day's tokens are used up, the model is not asked (the fallback is the
//! title); otherwise the title's tokens count toward the policy's daily limit, and never more
//! than what is left of the day are asked for.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{ConversationId, UserId};

use super::WebState;
use crate::backend::{ChatMessage, GenSpec, SamplingSpec};
use crate::generation;
use crate::openai::chat::ChatChoice;
use crate::routes::choices;
use crate::tenant::{Identity, Tenant};
use crate::validate::{Job, JobInput};

/// The longest title kept (characters, words).
pub const MAX_CHARS: usize = 60;
const MAX_WORDS: usize = 8;
/// Tokens the model may spend on a title.
const MAX_TOKENS: usize = 20;
/// Characters of the question and the answer shown to the model.
const QUESTION_CHARS: usize = 600;
const ANSWER_CHARS: usize = 300;
/// The fallback: the question's first words, at most this long.
const FALLBACK_CHARS: usize = 40;
const FALLBACK_WORDS: usize = 6;
/// Give up on the model after this long (a long queue); the fallback is used.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The conversations being titled right now (one title task per conversation at a time).
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashSet<ConversationId>>);

impl InFlight {
    fn claim(self: &Arc<Self>, c: ConversationId) -> Option<Claim> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(c).then(|| Claim(self.clone(), c))
    }
}

/// Releases a conversation when its title task ends (however it ends).
struct Claim(Arc<InFlight>, ConversationId);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0 .0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

/// Makes and stores the title in the background (unless a title task for this conversation is
/// running already).
pub fn spawn(st: WebState, user: UserId, conversation: ConversationId, model: String, question: String, answer: String) {
    let Some(claim) = st.titling.claim(conversation) else { return };
    tokio::spawn(async move {
        let _claim = claim;
        let title = make(&st, user, &model, &question, &answer).await;
        match st.store.conversation(user, conversation).await {
            Ok(c) if c.title.trim().is_empty() => {
                if let Err(e) = st.store.rename_conversation(user, conversation, &title).await {
                    tracing::warn!(error = ?e.to_string(), %conversation, "could not store the title");
                }
            }
            // Named meanwhile, or deleted: leave it.
            Ok(_) | Err(store::StoreError::NotFound) => {}
            Err(e) => tracing::warn!(error = ?e.to_string(), %conversation, "could not read the conversation to title it"),
        }
    });
}

/// The title for `user`'s conversation that starts with `question` and `answer`, asked of
/// `model` (the one that answered).
pub async fn make(st: &WebState, user: UserId, model: &str, question: &str, answer: &str) -> String {
    let tenant = Tenant::of(&st.config, Identity::User(user.0));
    let from_model: Option<String> =
        tokio::time::timeout(TIMEOUT, ask_model(st, user, model, question, answer, tenant)).await.unwrap_or_default();
    from_model.and_then(|raw| clean(&raw, question)).unwrap_or_else(|| fallback(question))
}

fn head(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

async fn ask_model(st: &WebState, user: UserId, model: &str, question: &str, answer: &str, tenant: Tenant) -> Option<String> {
    let prompt = format!(
        "Write a short title (at most six words) for a conversation that starts like this. Reply with the title \
         only, in the language of the question.\n\nQuestion: {}\n\nAnswer: {}",
        head(question, QUESTION_CHARS),
        head(answer, ANSWER_CHARS)
    );
    let backend = st.models.get(Some(model)).await.ok()?;
    let policy = match crate::policy::resolve_in(Some(&st.store), Some(&crate::policy::Who::user(user, None))).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = ?e.to_string(), "finding the policy for a title: the model is not asked");
            return None;
        }
    };
    let mut max_tokens = MAX_TOKENS;
    if let Some(p) = &policy {
        // A title is short anyway: a smaller per-answer limit shortens it rather than refusing it.
        max_tokens = max_tokens.min(p.policy.spec.max_tokens_per_answer.map_or(usize::MAX, |l| l as usize));
        if let Err(e) = p.admit(backend.id(), &mut max_tokens).await {
            tracing::info!(policy = p.name(), reason = ?e.to_string(), "the policy refuses a model title: using the question's first words");
            return None;
        }
    }
    let job = Job {
        model: backend.id().to_string(),
        input: JobInput::Chat(vec![ChatMessage { role: "user".into(), content: prompt }]),
        params: GenSpec {
            sampling: SamplingSpec { temperature: Some(0.0), ..SamplingSpec::default() },
            max_tokens,
            stop: vec!["\n".into()],
            top_logprobs: None,
            ignore_eos: false,
            grammar: None,
            logit_bias: Vec::new(),
        },
        n: 1,
        stream: false,
        include_usage: false,
    };
    let prompts = generation::tokenize(&backend, &job).await.ok()?;
    let gen = generation::submit(backend.as_ref(), st.metrics.clone(), &st.admission, &job, prompts, tenant).ok()?.under(policy);
    let (choices, _) = choices::collect::<ChatChoice>(backend.as_ref(), gen, false).await.ok()?;
    choices.into_iter().next().map(|c| c.message.content)
}

fn has_hangul(s: &str) -> bool {
    s.chars().any(|c| matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}'))
}

const QUOTES_AND_MARKUP: &[char] =
    &['"', '\'', '`', '*', '_', '#', '“', '”', '‘', '’', '「', '」', '『', '』', '«', '»', '[', ']'];
const END_PUNCTUATION: &[char] = &['.', '。', ',', ':', ';', '-', '–', '—', '…', '?', '!', '？', '！'];

/// Cuts `s` to at most `max` characters, at a space when one is reasonably near the end.
fn cap(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut = head(s, max);
    match cut.rfind(' ') {
        Some(i) if cut[..i].chars().count() >= max / 2 => cut[..i].to_string(),
        _ => cut,
    }
}

fn tidy(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let s = words.join(" ");
    s.trim_matches(|c: char| c.is_whitespace() || QUOTES_AND_MARKUP.contains(&c))
        .trim_end_matches(|c: char| c.is_whitespace() || END_PUNCTUATION.contains(&c) || QUOTES_AND_MARKUP.contains(&c))
        .to_string()
}

/// `s` without anything that looks like an HTML tag (`<img ...>`, `</b>`): a title is plain
/// text. The UI shows it as text anyway; this keeps markup out of the sidebar and exports.
fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let tag_like = after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
        match after.find('>') {
            Some(j) if tag_like => rest = &after[j + 1..],
            // An unclosed tag: drop the rest of the line (it is the tag's attributes).
            None if tag_like => rest = "",
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A model's reply as a title, or `None` when it is unusable.
pub fn clean(raw: &str, question: &str) -> Option<String> {
    let stripped = strip_tags(raw);
    let line = stripped.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut t = line.trim_start_matches(|c: char| c.is_whitespace() || QUOTES_AND_MARKUP.contains(&c));
    for label in ["title:", "title -", "title-", "제목:", "제목 :"] {
        if t.get(..label.len()).is_some_and(|p| p.eq_ignore_ascii_case(label)) {
            t = t[label.len()..].trim_start_matches(|c: char| c.is_whitespace() || QUOTES_AND_MARKUP.contains(&c));
            break;
        }
    }
    let words: Vec<&str> = t.split_whitespace().take(MAX_WORDS).collect();
    let t = cap(&tidy(&words.join(" ")), MAX_CHARS);
    let t = tidy(&t);
    if t.chars().filter(|c| c.is_alphanumeric()).count() < 2 {
        return None;
    }
    if has_hangul(question) && !has_hangul(&t) {
        return None;
    }
    Some(t)
}

/// The first words of the question (at most six words, 40 characters).
pub fn fallback(question: &str) -> String {
    let stripped = strip_tags(question);
    let plain: String = question.chars().filter(|c| !matches!(c, '<' | '>')).collect();
    let question = if stripped.trim().is_empty() { plain.as_str() } else { stripped.as_str() };
    let line = question.lines().map(|l| l.trim_start_matches(['#', '>', '*', '-', ' '])).find(|l| !l.trim().is_empty());
    let line = line.unwrap_or("");
    let mut out = String::new();
    for w in line.split_whitespace().take(FALLBACK_WORDS) {
        let next = if out.is_empty() { w.to_string() } else { format!("{out} {w}") };
        if next.chars().count() > FALLBACK_CHARS {
            if out.is_empty() {
                out = head(w, FALLBACK_CHARS);
            }
            break;
        }
        out = next;
    }
    let t = tidy(&out);
    if t.is_empty() {
        head(question.trim(), FALLBACK_CHARS)
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_model_titles() {
        assert_eq!(clean("\"Paris, the capital of France.\"\nmore", "What is the capital of France?").as_deref(), Some("Paris, the capital of France"));
        assert_eq!(clean("Title: **Grass is green**", "why").as_deref(), Some("Grass is green"));
        assert_eq!(clean("  \n\n## Rust ownership  ", "q").as_deref(), Some("Rust ownership"));
        assert_eq!(clean("\"\"", "q"), None);
        assert_eq!(clean("...", "q"), None);
        let long = clean(&"word ".repeat(40), "q").expect("capped");
        assert_eq!(long.split(' ').count(), MAX_WORDS, "{long}");
        let long = clean(&"abcdefghijklmnopqrstuvwxyz ".repeat(4), "q").expect("capped");
        assert!(long.chars().count() <= MAX_CHARS && !long.ends_with(' '), "{long}");
        // A Korean question needs a Korean title.
        assert_eq!(clean("Weather in Seoul", "오늘 서울 날씨 어때?"), None);
        assert_eq!(clean("제목: 서울 날씨", "오늘 서울 날씨 어때?").as_deref(), Some("서울 날씨"));
        // Markup never reaches a title.
        assert_eq!(clean("<img src=x onerror=\"alert(1)\"> Cat pictures", "q").as_deref(), Some("Cat pictures"));
        assert_eq!(clean("<b>Bold</b> move", "q").as_deref(), Some("Bold move"));
        assert_eq!(clean("<script>alert(1)</script>", "q").as_deref(), Some("alert(1)"));
        assert_eq!(clean("<img src=x onerror=alert(1)", "q"), None);
        assert_eq!(clean("1 < 2 and 3 > 2", "q").as_deref(), Some("1 < 2 and 3 > 2"));
    }

    #[test]
    fn fallbacks_are_the_first_words() {
        assert_eq!(fallback("오늘 서울 날씨 어때?"), "오늘 서울 날씨 어때");
        assert_eq!(fallback("What is the capital of France and why is it Paris?"), "What is the capital of France");
        assert_eq!(fallback("## Explain\nmore"), "Explain");
        assert_eq!(fallback(&"가".repeat(100)).chars().count(), FALLBACK_CHARS);
        assert_eq!(fallback("안녕하세요"), "안녕하세요");
        assert_eq!(fallback("<img src=x onerror=alert(1)> why is the sky blue"), "why is the sky blue");
        assert!(!fallback("<script>").contains('<'));
    }
}
