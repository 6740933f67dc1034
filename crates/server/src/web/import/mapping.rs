//! One exported conversation's tree of nodes into the messages to insert, in time linear in
//! the nodes (plus a sort):
//!
//! * dropped nodes (no message, system/tool, hidden, no text) are skipped and their children
//!   re-attached to the nearest kept ancestor, so branches survive;
//! * messages come out parents first (by depth), siblings by time, ties in the file's order;
//! * the current message is ChatGPT's `current_node`, or its nearest kept ancestor.
//!
//! Ancestors and depths are memoised and walked with explicit stacks, never by recursion (a
//! 200 000-node chain is one long path) and never from every node to the root (quadratic).
//! Cycles in a malformed file are cut where they are found.

use std::collections::HashMap;

use store::{ImportConversation, ImportMessage, NewConversation, Role};

use super::export::{Conversation, Node};
use crate::web::{input, title};

#[derive(Clone, Copy, PartialEq)]
enum Walk<T> {
    Unknown,
    InProgress,
    Done(T),
}

/// For every node, its nearest kept proper ancestor (`None` at a root or in a cycle).
fn kept_ancestors(parent: &[Option<usize>], kept: &[bool]) -> Vec<Option<usize>> {
    let mut memo: Vec<Walk<Option<usize>>> = vec![Walk::Unknown; parent.len()];
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..parent.len() {
        if memo[start] != Walk::Unknown {
            continue;
        }
        memo[start] = Walk::InProgress;
        stack.push(start);
        let found = loop {
            let top = *stack.last().unwrap_or(&start);
            let Some(p) = parent[top] else { break None };
            if kept[p] {
                break Some(p);
            }
            match memo[p] {
                Walk::Done(r) => break r,
                Walk::InProgress => break None,
                Walk::Unknown => {
                    memo[p] = Walk::InProgress;
                    stack.push(p);
                }
            }
        };
        // Every node on the path shares the answer: all but the first are dropped nodes.
        for n in stack.drain(..) {
            memo[n] = Walk::Done(found);
        }
    }
    memo.into_iter().map(|w| if let Walk::Done(r) = w { r } else { None }).collect()
}

/// Depths in the kept forest; a link that closes a cycle is cut (its node becomes a root).
fn depths(kparent: &mut [Option<usize>], nodes: &[usize]) -> Vec<usize> {
    let mut memo: Vec<Walk<usize>> = vec![Walk::Unknown; kparent.len()];
    let mut stack: Vec<usize> = Vec::new();
    for &start in nodes {
        if memo[start] != Walk::Unknown {
            continue;
        }
        memo[start] = Walk::InProgress;
        stack.push(start);
        let mut base = loop {
            let top = *stack.last().unwrap_or(&start);
            let Some(p) = kparent[top] else { break 0 };
            match memo[p] {
                Walk::Done(d) => break d + 1,
                Walk::InProgress => {
                    kparent[top] = None;
                    break 0;
                }
                Walk::Unknown => {
                    memo[p] = Walk::InProgress;
                    stack.push(p);
                }
            }
        };
        while let Some(n) = stack.pop() {
            memo[n] = Walk::Done(base);
            base += 1;
        }
    }
    memo.into_iter().map(|w| if let Walk::Done(d) = w { d } else { 0 }).collect()
}

/// Unix seconds (ChatGPT's times) as milliseconds, if plausible.
fn ms(t: f64) -> Option<i64> {
    (t.is_finite() && t > 0.0 && t < 1e11).then_some((t * 1000.0) as i64)
}

/// Maps one exported conversation (see the module docs). `now_ms` dates the messages of a
/// conversation that has no times at all.
pub fn map_conversation(c: Conversation, now_ms: i64) -> ImportConversation {
    let n = c.nodes.len();
    let (parent, current) = {
        let index: HashMap<&str, usize> = c.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        let parent: Vec<Option<usize>> =
            c.nodes.iter().map(|n| n.parent.as_deref().and_then(|p| index.get(p).copied())).collect();
        let current = c.current_node.as_deref().and_then(|id| index.get(id).copied());
        (parent, current)
    };
    let kept: Vec<bool> = c.nodes.iter().map(|n| n.message.is_some()).collect();
    let ancestors = kept_ancestors(&parent, &kept);
    drop(parent);
    let kept_nodes: Vec<usize> = (0..n).filter(|&i| kept[i]).collect();
    let mut kparent = ancestors.clone();
    let depth = depths(&mut kparent, &kept_nodes);

    let mut messages: Vec<Option<_>> = c.nodes.into_iter().map(|Node { message, .. }| message).collect();
    let time = |i: usize| messages[i].as_ref().and_then(|m| m.create_time).unwrap_or(f64::MIN);
    let mut order = kept_nodes;
    // Stable: equal depth and time keep the file's order.
    order.sort_by(|&a, &b| depth[a].cmp(&depth[b]).then(time(a).total_cmp(&time(b))));
    let mut position = vec![usize::MAX; n];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }

    // ChatGPT's own times, where the file has them, so the import sorts among the other
    // conversations by when it happened. A message without a time takes its parent's (or the
    // conversation's), and no child is older than its parent.
    let conv_created = c.create_time.and_then(ms).or_else(|| {
        order.iter().filter_map(|&i| messages[i].as_ref().and_then(|m| m.create_time).and_then(ms)).min()
    });
    let mut out: Vec<ImportMessage> = Vec::with_capacity(order.len());
    for &i in &order {
        let Some(m) = messages[i].take() else { continue };
        let parent = kparent[i].map(|p| position[p]);
        let created_at = match conv_created {
            Some(created) => {
                let parent_at = parent.map_or(created, |p| out[p].created_at);
                m.create_time.and_then(ms).unwrap_or(parent_at).max(parent_at)
            }
            None => now_ms,
        };
        let model = m.model.filter(|_| m.role == Role::Assistant);
        out.push(ImportMessage { parent, role: m.role, content: m.content, model, created_at });
    }
    let last = out.iter().map(|m| m.created_at).max();
    let updated_at = conv_created.map(|created| {
        let last = last.unwrap_or(created);
        c.update_time.and_then(ms).unwrap_or(last).max(last).max(created)
    });
    let current = current.and_then(|i| if kept[i] { Some(i) } else { ancestors[i] }).map(|i| position[i]);

    let title = c.title.as_deref().map(str::trim).unwrap_or("");
    let title = if title.is_empty() {
        out.iter().find(|m| m.role == Role::User).map(|m| title::fallback(&m.content)).unwrap_or_default()
    } else {
        title.chars().take(input::MAX_TITLE_CHARS).collect()
    };
    ImportConversation {
        new: NewConversation { title, system_prompt: None, model: None, settings: serde_json::Value::Null },
        messages: out,
        current,
        created_at: conv_created,
        updated_at,
    }
}
