//! Branch navigation over a conversation's messages (pure functions, no database).
//!
//! Messages form a tree through `parent_id`: editing a question adds a sibling of the old
//! question, regenerating adds a sibling of the old answer. The UI shows one path from a root
//! to a leaf and, at each message with siblings, a `< i/n >` switch. These helpers compute that
//! from the flat list [`crate::Store::messages`] returns.

use std::collections::HashMap;

use crate::types::{Message, MessageId};

/// The path from the root down to `leaf` (inclusive), root first. Empty when `leaf` is not in
/// `messages`. A cycle (impossible through the store) stops the walk instead of looping.
pub fn path_to(messages: &[Message], leaf: MessageId) -> Vec<&Message> {
    let by_id: HashMap<MessageId, &Message> = messages.iter().map(|m| (m.id, m)).collect();
    let mut path = Vec::new();
    let mut next = Some(leaf);
    while let Some(id) = next {
        let Some(m) = by_id.get(&id) else { break };
        if path.len() > messages.len() {
            break;
        }
        path.push(*m);
        next = m.parent_id;
    }
    path.reverse();
    path
}

/// The messages sharing `id`'s parent (roots share the absent parent), oldest first,
/// including `id` itself.
pub fn siblings(messages: &[Message], id: MessageId) -> Vec<&Message> {
    let Some(me) = messages.iter().find(|m| m.id == id) else {
        return Vec::new();
    };
    let mut sibs: Vec<&Message> = messages
        .iter()
        .filter(|m| m.parent_id == me.parent_id)
        .collect();
    sibs.sort_by_key(|m| m.id);
    sibs
}

/// `(position, count)` of `id` among its siblings, 1-based: the UI's `< position/count >`.
pub fn sibling_position(messages: &[Message], id: MessageId) -> Option<(usize, usize)> {
    let sibs = siblings(messages, id);
    let at = sibs.iter().position(|m| m.id == id)?;
    Some((at + 1, sibs.len()))
}

/// The leaf reached from `id` by always following the newest child: where the UI lands when
/// the user switches to the branch starting at `id`.
pub fn newest_leaf(messages: &[Message], id: MessageId) -> MessageId {
    let mut newest_child: HashMap<MessageId, MessageId> = HashMap::new();
    for m in messages {
        if let Some(p) = m.parent_id {
            let e = newest_child.entry(p).or_insert(m.id);
            if m.id > *e {
                *e = m.id;
            }
        }
    }
    let mut at = id;
    let mut steps = 0;
    while let Some(&child) = newest_child.get(&at) {
        at = child;
        steps += 1;
        if steps > messages.len() {
            break;
        }
    }
    at
}

/// The branch to show: the path to `current` when it is given and present, else the path to
/// the newest leaf under the newest root. Empty for an empty conversation.
pub fn active_branch(messages: &[Message], current: Option<MessageId>) -> Vec<&Message> {
    if let Some(c) = current {
        let path = path_to(messages, c);
        if !path.is_empty() {
            return path;
        }
    }
    let Some(root) = messages
        .iter()
        .filter(|m| m.parent_id.is_none())
        .map(|m| m.id)
        .max()
    else {
        return Vec::new();
    };
    path_to(messages, newest_leaf(messages, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConversationId, MessageStatus, Role};

    fn msg(id: i64, parent: Option<i64>) -> Message {
        Message {
            id: MessageId(id),
            conversation_id: ConversationId(1),
            parent_id: parent.map(MessageId),
            role: Role::User,
            content: format!("m{id}"),
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            energy_uj: None,
            energy_method: None,
            marked: false,
            status: MessageStatus::Complete,
            created_at: id,
            updated_at: id,
        }
    }

    /// 1 -> 2 -> 3, and an edit of 1 as 4 -> 5, and a regeneration of 2 as 6.
    fn sample() -> Vec<Message> {
        vec![msg(1, None), msg(2, Some(1)), msg(3, Some(2)), msg(4, None), msg(5, Some(4)), msg(6, Some(1))]
    }

    fn ids(path: &[&Message]) -> Vec<i64> {
        path.iter().map(|m| m.id.0).collect()
    }

    #[test]
    fn paths_siblings_and_leaves() {
        let ms = sample();
        assert_eq!(ids(&path_to(&ms, MessageId(3))), vec![1, 2, 3]);
        assert_eq!(ids(&path_to(&ms, MessageId(99))), Vec::<i64>::new());
        assert_eq!(sibling_position(&ms, MessageId(4)), Some((2, 2)));
        assert_eq!(sibling_position(&ms, MessageId(2)), Some((1, 2)));
        assert_eq!(sibling_position(&ms, MessageId(3)), Some((1, 1)));
        assert_eq!(newest_leaf(&ms, MessageId(1)), MessageId(6));
        assert_eq!(newest_leaf(&ms, MessageId(2)), MessageId(3));
        assert_eq!(ids(&active_branch(&ms, Some(MessageId(3)))), vec![1, 2, 3]);
        assert_eq!(ids(&active_branch(&ms, None)), vec![4, 5]);
        assert_eq!(ids(&active_branch(&ms, Some(MessageId(42)))), vec![4, 5]);
        assert!(active_branch(&[], None).is_empty());
    }
}
