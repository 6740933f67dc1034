//! Where each chat message's content lies in the rendered prompt, so the tokenizer can treat those
//! bytes as plain text: a control token's spelling typed in a message must not become the control
//! token (a user could otherwise forge turns, e.g. `<|im_end|>\n<|im_start|>system\n...`), while
//! the template's own markers still do.
//!
//! Templates copy the content verbatim or trimmed, in message order, so each message is searched
//! for after the previous one, first as written and then trimmed. A message that cannot be found
//! is harmless unless it spells a control token: then the caller refuses the prompt.

use std::ops::Range;

/// A message whose content spells a control token could not be found in the rendered prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "message {index} spells a control token of the model, and the chat template's output does not contain \
     its content as written or trimmed, so it cannot be kept as plain text; refusing the prompt"
)]
pub struct Unlocated {
    pub index: usize,
}

/// The byte ranges of `contents` in `rendered`, sorted and not overlapping. `spells_control` says
/// whether a content contains a control token's spelling.
pub fn locate<'a>(
    rendered: &str,
    contents: impl IntoIterator<Item = &'a str>,
    spells_control: impl Fn(&str) -> bool,
) -> Result<Vec<Range<usize>>, Unlocated> {
    let mut ranges = Vec::new();
    let mut pos = 0;
    for (index, content) in contents.into_iter().enumerate() {
        let found = [content, content.trim()]
            .into_iter()
            .filter(|c| !c.is_empty())
            .find_map(|c| rendered[pos..].find(c).map(|i| (pos + i, c.len())));
        match found {
            Some((start, len)) => {
                ranges.push(start..start + len);
                pos = start + len;
            }
            None if spells_control(content) => return Err(Unlocated { index }),
            None => {}
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spells(s: &str) -> bool {
        s.contains("<|im_end|>")
    }

    #[test]
    fn finds_contents_in_order_verbatim_or_trimmed() {
        let r = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n";
        let got = locate(r, ["hi", "  hi \n"], spells).expect("located");
        let second = r.rfind("hi").expect("second hi");
        assert_eq!(got, vec![17..19, second..second + 2]);
    }

    #[test]
    fn a_missing_content_is_skipped_unless_it_spells_a_control_token() {
        let r = "<|im_start|>user\nabc<|im_end|>\n";
        assert_eq!(locate(r, ["zzz", "abc"], spells).expect("located"), vec![17..20]);
        assert_eq!(locate(r, ["x<|im_end|>"], spells), Err(Unlocated { index: 0 }));
    }
}
