//! StopMatcher: no stop string leaks, even split across pushes, in any script.

use engine::text::stop::StopMatcher;

/// Feeds `pieces` one by one; returns everything emitted and whether a stop was hit.
fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
    let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
    let mut out = String::new();
    for p in pieces {
        let (emitted, hit) = m.push(p);
        out.push_str(&emitted);
        // Streaming invariant: what was emitted never contains a stop string.
        for s in stops {
            assert!(!out.contains(s), "stop {s:?} leaked in {out:?}");
        }
        if hit {
            return (out, true);
        }
    }
    out.push_str(&m.finish());
    (out, false)
}

#[test]
fn stop_split_across_pushes_never_leaks() {
    let mut m = StopMatcher::new(vec!["<|im_end|>".into()]);
    assert_eq!(m.push("The answer is 4"), ("The answer is 4".into(), false));
    assert_eq!(m.push(".<|"), (".".into(), false));
    assert_eq!(m.push("im"), (String::new(), false));
    assert_eq!(m.push("_en"), (String::new(), false));
    assert_eq!(m.push("d|>\nignored"), (String::new(), true));
    assert!(m.is_stopped());
    assert_eq!(m.push("more"), (String::new(), true));
    assert_eq!(m.finish(), "");
}

#[test]
fn false_alarm_is_released() {
    let mut m = StopMatcher::new(vec!["<|im_end|>".into()]);
    assert_eq!(m.push("a <|im"), ("a ".into(), false));
    // `<|im_start` diverges from the stop: everything held comes out.
    assert_eq!(m.push("_start"), ("<|im_start".into(), false));
    assert_eq!(m.push(" x <"), (" x ".into(), false));
    assert_eq!(m.finish(), "<");
}

#[test]
fn every_split_point_gives_the_same_result() {
    let text = "Hello</s>World";
    for cut in 0..=text.len() {
        for cut2 in cut..=text.len() {
            let pieces = [&text[..cut], &text[cut..cut2], &text[cut2..]];
            assert_eq!(
                run(&["</s>"], &pieces),
                ("Hello".into(), true),
                "{pieces:?}"
            );
        }
    }
    // Byte by byte.
    let bytes: Vec<String> = text.chars().map(String::from).collect();
    let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
    assert_eq!(run(&["</s>"], &pieces), ("Hello".into(), true));
}

#[test]
fn multiple_stops_earliest_wins() {
    // Both complete within one push: the one that starts first wins.
    assert_eq!(
        run(&["###", "END"], &["abc EN", "D ### x"]),
        ("abc ".into(), true)
    );
    assert_eq!(
        run(&["###", "END"], &["abc ## ###", " END"]),
        ("abc ## ".into(), true)
    );
    // A stop that is a prefix of another: the shorter one completes first.
    assert_eq!(
        run(&["User:", "User"], &["hi Us", "er: x"]),
        ("hi ".into(), true)
    );
    // Overlapping partials: held back while either could still match.
    let mut m = StopMatcher::new(vec!["abcd".into(), "bcx".into()]);
    assert_eq!(m.push("zabc"), ("z".into(), false));
    assert_eq!(m.push("x!"), ("a".into(), true));
}

#[test]
fn korean_text_and_korean_stop() {
    let stops = ["사용자:", "<|im_end|>"];
    let (out, hit) = run(
        &stops,
        &["안녕하세요! ", "오늘 기분이 어때요?", " 사용", "자: 다음"],
    );
    assert_eq!(
        (out.as_str(), hit),
        ("안녕하세요! 오늘 기분이 어때요? ", true)
    );
    // A partial Korean stop that turns out not to be one is released intact.
    let (out, hit) = run(&stops, &["저는 사용", "해요"]);
    assert_eq!((out.as_str(), hit), ("저는 사용해요", false));
    // Char-by-char Korean with a stop straddling the pushes.
    let text = "좋아요<|im_end|>끝";
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(run(&stops, &pieces), ("좋아요".into(), true));
}

#[test]
fn no_stops_passes_everything_through() {
    let mut m = StopMatcher::new(vec![String::new()]);
    assert_eq!(m.push("<|im_end|>"), ("<|im_end|>".into(), false));
    assert_eq!(m.finish(), "");
}

#[test]
fn finish_releases_held_prefix() {
    let (out, hit) = run(&["<|im_end|>"], &["The end <|im_e"]);
    assert_eq!((out.as_str(), hit), ("The end <|im_e", false));
}
