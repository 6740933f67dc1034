//! One test per compatibility patch in `text/template/compat.rs`: each asserts the text Python's
//! Jinja2 with transformers' setup produces for the same template.

use std::time::{Duration, UNIX_EPOCH};

use engine::text::template::{ChatMessage, ChatTemplate};

fn render(src: &str, msgs: &[ChatMessage]) -> String {
    ChatTemplate::new(src, "<s>", "</s>")
        .expect("compile")
        .render(msgs, false)
        .expect("render")
}

fn user(s: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", s)]
}

#[test]
fn trim_blocks_and_lstrip_blocks_like_transformers() {
    // Block tags on their own lines leave no blank lines or indentation behind; one trailing newline
    // of the source is dropped (keep_trailing_newline=False).
    let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
    assert_eq!(render(src, &user("a")), "[a]\n");
}

#[test]
fn python_string_and_dict_methods() {
    let src =
        "{{ messages[0].content.strip().upper() }}|{{ messages[0].content.startswith(' h') }}|\
               {% for k, v in messages[0].items() %}{{ k }}={{ v.strip() }};{% endfor %}|\
               {{ messages[0].get('name', 'anon') }}|{{ 'a,b'.split(',') | join('+') }}";
    assert_eq!(
        render(src, &user(" hi ")),
        "HI|True|role=user;content=hi;|anon|a+b"
    );
}

#[test]
fn python_indexing_and_slicing() {
    // DeepSeek-R1 style: drop the reasoning with `.split(...)[-1]`; Mistral style: `messages[1:]`.
    let src = "{{ messages[-1].content.split('</think>')[-1] }}|{{ messages[1:] | length }}|\
               {{ 'abc'[::-1] }}|{{ [1, 'a'] }}|{{ 3 // 2 }}";
    let msgs = [
        ChatMessage::new("system", "s"),
        ChatMessage::new("user", "x</think>answer"),
    ];
    assert_eq!(render(src, &msgs), "answer|1|cba|[1, 'a']|1");
}

#[test]
fn tojson_matches_python_json_dumps() {
    // json.dumps(x, ensure_ascii=False): Python separators, no HTML escaping, keys in insertion order.
    let src =
        "{{ {'name': 'f', 'desc': '<a & b>', 'k': '한국', 'n': [1, 2.0, none, true]} | tojson }}";
    assert_eq!(
        render(src, &[]),
        r#"{"name": "f", "desc": "<a & b>", "k": "한국", "n": [1, 2.0, null, true]}"#
    );
    // indent=2 puts one item per line with "," separators, empty containers stay compact.
    let src = "{{ {'a': [1, {}], 'b': []} | tojson(indent=2) }}";
    assert_eq!(
        render(src, &[]),
        "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}"
    );
    // ensure_ascii, sort_keys and separators are forwarded like json.dumps's keywords.
    let src = "{{ {'z': '한', 'a': 'q\"\\n'} | tojson(ensure_ascii=true, sort_keys=true, separators=(',', ':')) }}";
    assert_eq!(render(src, &[]), r#"{"a":"q\"\n","z":"\ud55c"}"#);
    // Messages keep their field order (role, then content) as Python dicts do.
    assert_eq!(
        render("{{ messages[0] | tojson }}", &user("x")),
        r#"{"role": "user", "content": "x"}"#
    );
}

#[test]
fn strftime_now_and_date_string_use_the_render_clock() {
    let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}|{{ date_string }}", "", "")
        .expect("compile");
    let at = UNIX_EPOCH + Duration::from_secs(1_721_997_296); // 2024-07-26 12:34:56 UTC
    assert_eq!(
        t.render_at(&[], false, at).expect("render"),
        "26 Jul 2024|26 Jul 2024"
    );
    // Without a pinned clock the current year shows up (sanity: a 4-digit year >= 2024).
    let now = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "")
        .expect("compile")
        .render(&[], false)
        .expect("render");
    let year: u32 = now.parse().expect("a year");
    assert!(year >= 2024, "{now}");
}

#[test]
fn constants_print_like_python() {
    let src = "{{ none }}|{{ true }}|{{ false }}|{{ undefined_name }}|{{ 1.5 }}|{{ tools }}";
    assert_eq!(render(src, &[]), "None|True|False||1.5|None");
    // `tools` is defined and none, as transformers passes `tools=None`.
    assert_eq!(
        render("{% if tools is not none %}T{% else %}N{% endif %}{% if tools is defined %}D{% endif %}", &[]),
        "ND"
    );
}

#[test]
fn generation_tags_render_their_body() {
    // transformers' AssistantTracker `{% generation %}` marks assistant text; the body renders as is.
    let src =
        "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}<{{ m.content }}>\
               {% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}\
               {%- generation -%}  !  {%- endgeneration -%}";
    let msgs = [
        ChatMessage::new("user", "q"),
        ChatMessage::new("assistant", "a"),
    ];
    assert_eq!(render(src, &msgs), "q<a>!");
    // A variable merely named like the tag is untouched.
    assert_eq!(render("{% set generation = 1 %}{{ generation }}", &[]), "1");
}

#[test]
fn loop_controls_and_namespace_work() {
    let src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'system' %}\
               {% continue %}{% endif %}{% set ns.n = ns.n + 1 %}{% if ns.n > 1 %}{% break %}\
               {% endif %}{{ m.content }}{% endfor %}|{{ ns.n }}";
    let msgs = [
        ChatMessage::new("system", "s"),
        ChatMessage::new("user", "u1"),
        ChatMessage::new("user", "u2"),
    ];
    assert_eq!(render(src, &msgs), "u1|2");
}
