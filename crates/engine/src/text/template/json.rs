//! `json.dumps` as Python writes it, for the `tojson` filter of chat templates: templates put tool
//! schemas and arguments into prompts with it, and the model was trained on Python's exact spelling
//! (`", "` and `": "` separators, `1.0` for floats, non-ASCII kept as is).

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// The `json.dumps` keyword arguments transformers forwards.
#[derive(Debug, Default)]
pub(super) struct Options {
    /// `None`: one line. `Some(unit)`: one item per line, nested levels indented by `unit`.
    pub indent: Option<String>,
    pub ensure_ascii: bool,
    /// `(item_separator, key_separator)`; `None` means Python's default for the indent mode.
    pub separators: Option<(String, String)>,
    pub sort_keys: bool,
}

/// Serializes `value` as `json.dumps(value, **opts)` would.
pub(super) fn to_python_json(value: &Value, opts: &Options) -> Result<String, Error> {
    let (item_sep, key_sep) = match (&opts.separators, &opts.indent) {
        (Some((i, k)), _) => (i.as_str(), k.as_str()),
        (None, None) => (", ", ": "),
        (None, Some(_)) => (",", ": "),
    };
    let w = Writer {
        opts,
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    w.value(&mut out, value, 0)?;
    Ok(out)
}

struct Writer<'a> {
    opts: &'a Options,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl Writer<'_> {
    fn value(&self, out: &mut String, v: &Value, depth: usize) -> Result<(), Error> {
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.number(out, v)?,
            ValueKind::String => self.string(out, v.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.container(out, '[', ']', items.len(), depth, |out, i, d| {
                    self.value(out, &items[i], d)
                })?;
            }
            ValueKind::Map => {
                let mut keys: Vec<(String, Value)> = Vec::new();
                for k in v.try_iter()? {
                    keys.push((key_text(&k)?, k));
                }
                if self.opts.sort_keys {
                    keys.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container(out, '{', '}', keys.len(), depth, |out, i, d| {
                    self.string(out, &keys[i].0);
                    out.push_str(self.key_sep);
                    self.value(out, &v.get_item(&keys[i].1)?, d)
                })?;
            }
            kind => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: a value of type {kind} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    fn container(
        &self,
        out: &mut String,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        mut item: impl FnMut(&mut String, usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if len == 0 {
            out.push(close);
            return Ok(());
        }
        for i in 0..len {
            if i > 0 {
                out.push_str(self.item_sep);
            }
            self.newline(out, depth + 1);
            item(out, i, depth + 1)?;
        }
        self.newline(out, depth);
        out.push(close);
        Ok(())
    }

    fn newline(&self, out: &mut String, depth: usize) {
        if let Some(unit) = &self.opts.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    }

    fn number(&self, out: &mut String, v: &Value) -> Result<(), Error> {
        if v.is_integer() {
            // `Display` of an integer Value is its decimal digits, for every width minijinja keeps.
            write!(out, "{v}").expect("invariant: writing to a String cannot fail");
            return Ok(());
        }
        let x = f64::try_from(v.clone())?;
        out.push_str(&python_float_repr(x));
        Ok(())
    }

    fn string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => push_u_escape(out, c as u32),
                c if self.opts.ensure_ascii && !(' '..='~').contains(&c) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        push_u_escape(out, u32::from(*unit));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

fn push_u_escape(out: &mut String, unit: u32) {
    write!(out, "\\u{unit:04x}").expect("invariant: writing to a String cannot fail");
}

/// Python turns `str`, number, bool and `None` keys into strings; anything else is a TypeError.
fn key_text(k: &Value) -> Result<String, Error> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".to_owned(),
        ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).to_owned(),
        ValueKind::Number if k.is_integer() => k.to_string(),
        ValueKind::Number => python_float_repr(f64::try_from(k.clone())?),
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: keys must be str, int, float, bool or None, not {kind}"),
            ))
        }
    })
}

/// Python's `float.__repr__`: the shortest round-tripping digits, in exponent form when the decimal
/// exponent is below -4 or at least 16, always with a `.0` or an exponent so it reads as a float.
pub(super) fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // `{:e}` is the shortest round-trip form too: `d.ddde±x`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("invariant: `{:e}` always has an exponent");
    let exp: i32 = exp
        .parse()
        .expect("invariant: `{:e}` exponent is an integer");
    if (-4..16).contains(&exp) {
        let plain = format!("{x}");
        if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::python_float_repr;

    #[test]
    fn floats_read_like_python() {
        // Expected strings are Python 3's `repr(float)`.
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (1e300, "1e+300"),
            (f64::INFINITY, "Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "{x}");
        }
    }
}
