//! Every patch that makes minijinja render Hugging Face chat templates the way transformers'
//! Jinja2 setup does. Each item is tested in `tests/template_compat.rs`; keep them all here.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use super::{json, time, NOW_VAR};

/// Configures `env` like transformers' `ImmutableSandboxedEnvironment(trim_blocks=True,
/// lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])` plus its globals.
pub(super) fn apply(env: &mut Environment<'static>) {
    // 1. Whitespace control as in transformers (Jinja2 keeps `keep_trailing_newline=False`).
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .expect("invariant: the default delimiters are valid");
    env.set_syntax(syntax);

    // 2. Python string/dict methods (`.strip()`, `.startswith()`, `.items()`, `.get()`...), which
    //    Jinja2 gets for free from Python objects.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    minijinja_contrib::add_to_environment(env);

    // 3. `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=...)`,
    //    Python's separators, no HTML escaping of `<`, `>`, `&`, `'` (minijinja's builtin escapes
    //    them, which would change tool schemas inside prompts).
    env.add_filter("tojson", tojson);

    // 4. transformers' globals.
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);

    // 5. Python's `str()` of constants: Jinja2 prints `None`, `True`, `False`; minijinja prints
    //    `none`, `true`, `false`. Undefined prints nothing in both.
    env.set_formatter(|out, state, value| {
        let python = match value.kind() {
            ValueKind::None => Some("None"),
            ValueKind::Bool if value.is_true() => Some("True"),
            ValueKind::Bool => Some("False"),
            _ => None,
        };
        match python {
            Some(s) => out.write_str(s).map_err(Error::from),
            None => minijinja::escape_formatter(out, state, value),
        }
    });
}

/// Source-level patches, applied before compiling.
///
/// 6. transformers' `AssistantTracker` extension adds `{% generation %}...{% endgeneration %}`
///    (it marks assistant text for training masks and renders the body unchanged). minijinja has no
///    such tag, so each becomes an always-true `if`, keeping any `-`/`+` whitespace control.
pub(super) fn patch_source(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        let body = &tag[2..];
        let ctl = body.len() - body.trim_start_matches(['-', '+']).len();
        let after_ctl = &body[ctl..];
        let keyword_at = after_ctl.len() - after_ctl.trim_start().len();
        let word = &after_ctl[keyword_at..];
        let replaced = [("endgeneration", "endif"), ("generation", "if true")]
            .into_iter()
            .find(|(kw, _)| {
                word.starts_with(kw)
                    && word[kw.len()..]
                        .trim_start()
                        .trim_start_matches(['-', '+'])
                        .starts_with("%}")
            });
        out.push_str("{%");
        out.push_str(&body[..ctl + keyword_at]);
        match replaced {
            Some((kw, new)) => {
                out.push_str(new);
                rest = &word[kw.len()..];
            }
            None => rest = word,
        }
    }
    out.push_str(rest);
    out
}

/// The marker error a template's `raise_exception(msg)` produces; found again in
/// [`raised_message`] so the caller sees the template's own words.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// The message of a `raise_exception` call somewhere in `e`'s cause chain.
pub(super) fn raised_message(e: &Error) -> Option<String> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        src = err.source();
    }
    None
}

/// `strftime_now(format)`: the render's clock (UTC), formatted with C `strftime` directives.
fn strftime_now(state: &State, format: String) -> Result<String, Error> {
    let unix = state
        .lookup(NOW_VAR)
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or_else(|| time::unix_seconds(std::time::SystemTime::now()));
    Ok(time::strftime(&format, unix))
}

/// `tojson(value, indent=None, ensure_ascii=False, separators=None, sort_keys=False)`.
/// One positional argument is accepted as Jinja2's builtin `tojson(indent)`.
fn tojson(value: &Value, positional: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut opts = json::Options::default();
    let mut indent: Option<Value> = kwargs.get("indent")?;
    if let Some(p) = positional {
        match p.kind() {
            ValueKind::Bool => opts.ensure_ascii = p.is_true(),
            _ => indent = Some(p),
        }
    }
    if let Some(ea) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        opts.ensure_ascii = ea;
    }
    if let Some(sk) = kwargs.get::<Option<bool>>("sort_keys")? {
        opts.sort_keys = sk;
    }
    opts.indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_owned()),
        Some(v) => {
            let n = i64::try_from(v)?;
            // Python: a non-positive indent still inserts newlines, with no spaces.
            Some(" ".repeat(n.max(0) as usize))
        }
    };
    if let Some(sep) = kwargs.get::<Option<Value>>("separators")? {
        if !sep.is_none() {
            let item = sep.get_item(&Value::from(0))?;
            let key = sep.get_item(&Value::from(1))?;
            match (item.as_str(), key.as_str()) {
                (Some(i), Some(k)) => opts.separators = Some((i.to_owned(), k.to_owned())),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
    }
    kwargs.assert_all_used()?;
    json::to_python_json(value, &opts).map(Value::from_safe_string)
}
