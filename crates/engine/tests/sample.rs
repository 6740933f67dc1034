//! Sampler behaviour on known distributions: greedy, seeds, each truncation step, penalties,
//! temperature statistics, and logprobs.

use engine::sample::{logprobs, Sampler, SamplingParams, TokenLogprob};

/// Logits whose softmax is exactly `probs` (up to rounding).
fn logits_of(probs: &[f64]) -> Vec<f32> {
    probs.iter().map(|p| p.ln() as f32).collect()
}

/// Pure sampling: no truncation, no penalties, temperature 1.
fn plain(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(seed),
        ..SamplingParams::default()
    }
}

fn histogram(params: SamplingParams, logits: &[f32], draws: usize) -> Vec<usize> {
    let mut s = Sampler::new(params);
    let mut h = vec![0; logits.len()];
    for _ in 0..draws {
        h[s.sample(logits, &[]) as usize] += 1;
    }
    h
}

/// Pearson's chi-square statistic of observed counts against expected probabilities.
fn chi_square(observed: &[usize], expected: &[f64]) -> f64 {
    let n: usize = observed.iter().sum();
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// A reproducible pseudo-random logit vector (an LCG; the values just need to be varied).
fn noisy_logits(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        })
        .collect()
}

#[test]
fn defaults_are_llama_cpp_defaults() {
    let d = SamplingParams::default();
    assert_eq!(
        (d.temperature, d.top_k, d.top_p, d.min_p),
        (0.8, 40, 0.95, 0.05)
    );
    assert_eq!((d.repeat_penalty, d.repeat_last_n), (1.0, 64));
    assert_eq!(
        (d.presence_penalty, d.frequency_penalty, d.seed),
        (0.0, 0.0, None)
    );
    assert!(d.validate().is_ok());
    assert!(SamplingParams::greedy().validate().is_ok());
}

#[test]
fn greedy_is_argmax_of_raw_logits() {
    for seed in 0..20 {
        let logits = noisy_logits(49152, seed);
        let want = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0 as u32;
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&logits, &[]), want);
        // History does not matter without penalties.
        assert_eq!(s.sample(&logits, &[want, want, want]), want);
    }
    // Ties go to the lowest id.
    let mut s = Sampler::new(SamplingParams::greedy());
    assert_eq!(s.sample(&[0.0, 5.0, 1.0, 5.0], &[]), 1);
}

#[test]
fn same_seed_same_tokens_different_seed_different_tokens() {
    let logits = noisy_logits(1000, 3);
    let params = |seed| SamplingParams {
        temperature: 1.5,
        seed: Some(seed),
        ..plain(seed)
    };
    let run = |seed| {
        let mut s = Sampler::new(params(seed));
        (0..200)
            .map(|_| s.sample(&logits, &[]))
            .collect::<Vec<u32>>()
    };
    assert_eq!(run(1234), run(1234));
    assert_ne!(run(1234), run(1235));
    // Also with the default chain (top-k, top-p, min-p active).
    let run_default = |seed| {
        let mut s = Sampler::new(SamplingParams {
            seed: Some(seed),
            ..SamplingParams::default()
        });
        (0..200)
            .map(|_| s.sample(&logits, &[]))
            .collect::<Vec<u32>>()
    };
    assert_eq!(run_default(9), run_default(9));
}

#[test]
fn top_k_1_is_greedy() {
    for seed in 0..10 {
        let logits = noisy_logits(5000, seed + 100);
        let greedy = Sampler::new(SamplingParams::greedy()).sample(&logits, &[]);
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            temperature: 2.0,
            ..plain(seed)
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), greedy);
        }
    }
}

#[test]
fn top_k_keeps_exactly_k_best() {
    // probs ~ 0.4, 0.3, 0.2, 0.1 on ids 3, 1, 0, 2.
    let logits = logits_of(&[0.2, 0.3, 0.1, 0.4]);
    let h = histogram(
        SamplingParams {
            top_k: 2,
            ..plain(5)
        },
        &logits,
        20_000,
    );
    assert_eq!((h[0], h[2]), (0, 0), "{h:?}");
    // Renormalised: 0.4/0.7 and 0.3/0.7.
    assert!(
        chi_square(&[h[3], h[1]], &[4.0 / 7.0, 3.0 / 7.0]) < 10.83,
        "{h:?}"
    );
}

#[test]
fn top_p_cuts_at_the_cumulative_mass() {
    let logits = logits_of(&[0.2, 0.3, 0.1, 0.4]);
    // 0.4 < 0.65 <= 0.4 + 0.3: keeps ids 3 and 1.
    let h = histogram(
        SamplingParams {
            top_p: 0.65,
            ..plain(11)
        },
        &logits,
        20_000,
    );
    assert_eq!((h[0], h[2]), (0, 0), "{h:?}");
    assert!(
        chi_square(&[h[3], h[1]], &[4.0 / 7.0, 3.0 / 7.0]) < 10.83,
        "{h:?}"
    );
    // 0.4 + 0.3 < 0.85 <= 0.9: keeps three.
    let h = histogram(
        SamplingParams {
            top_p: 0.85,
            ..plain(12)
        },
        &logits,
        20_000,
    );
    assert_eq!(h[2], 0, "{h:?}");
    assert!(h[0] > 0 && h[1] > 0 && h[3] > 0, "{h:?}");
    // A tiny top_p still keeps the best token.
    let h = histogram(
        SamplingParams {
            top_p: 0.01,
            ..plain(13)
        },
        &logits,
        1000,
    );
    assert_eq!(h[3], 1000, "{h:?}");
}

#[test]
fn min_p_cuts_relative_to_the_best_token() {
    let logits = logits_of(&[0.2, 0.3, 0.1, 0.4]);
    // Threshold 0.6 * 0.4 = 0.24: keeps 0.4 and 0.3.
    let h = histogram(
        SamplingParams {
            min_p: 0.6,
            ..plain(21)
        },
        &logits,
        20_000,
    );
    assert_eq!((h[0], h[2]), (0, 0), "{h:?}");
    assert!(h[1] > 0 && h[3] > 0);
    // Threshold 0.3 * 0.4 = 0.12: also keeps 0.2, drops 0.1.
    let h = histogram(
        SamplingParams {
            min_p: 0.3,
            ..plain(22)
        },
        &logits,
        20_000,
    );
    assert_eq!(h[2], 0, "{h:?}");
    assert!(h[0] > 0 && h[1] > 0 && h[3] > 0, "{h:?}");
}

#[test]
fn temperature_reshapes_the_distribution() {
    let probs = [0.1, 0.2, 0.3, 0.4];
    let logits = logits_of(&probs);
    // 3 degrees of freedom: P(chi2 > 16.27) = 0.001. The seed is fixed, so this is deterministic;
    // the bound says the sampler really draws from softmax(logits / T).
    let h = histogram(plain(31), &logits, 40_000);
    assert!(chi_square(&h, &probs) < 16.27, "T=1: {h:?}");
    // T = 0.5 squares the probabilities: 1:4:9:16.
    let sq: Vec<f64> = probs.iter().map(|p| p * p / 0.3).collect();
    let h = histogram(
        SamplingParams {
            temperature: 0.5,
            ..plain(32)
        },
        &logits,
        40_000,
    );
    assert!(chi_square(&h, &sq) < 16.27, "T=0.5: {h:?}");
    // ... and is clearly not the T = 1 distribution.
    assert!(
        chi_square(&h, &probs) > 100.0,
        "T=0.5 looks like T=1: {h:?}"
    );
    // T = 2 flattens them: sqrt(p), renormalised.
    let z: f64 = probs.iter().map(|p: &f64| p.sqrt()).sum();
    let flat: Vec<f64> = probs.iter().map(|p| p.sqrt() / z).collect();
    let h = histogram(
        SamplingParams {
            temperature: 2.0,
            ..plain(33)
        },
        &logits,
        40_000,
    );
    assert!(chi_square(&h, &flat) < 16.27, "T=2: {h:?}");
}

#[test]
fn repeat_penalty_follows_llama_cpp() {
    let greedy = |rep: f32, last_n: usize| SamplingParams {
        repeat_penalty: rep,
        repeat_last_n: last_n,
        ..SamplingParams::greedy()
    };
    // Positive logit divided: 2.0 / 1.5 = 1.33 < 1.5, so id 1 loses to id 0.
    let logits = [1.5, 2.0, -3.0];
    assert_eq!(Sampler::new(greedy(1.0, 64)).sample(&logits, &[1]), 1);
    assert_eq!(Sampler::new(greedy(1.5, 64)).sample(&logits, &[1]), 0);
    // Repeats in the window do not compound the repeat penalty.
    assert_eq!(
        Sampler::new(greedy(1.2, 64)).sample(&logits, &[1, 1, 1, 1]),
        1
    );
    // Negative logit multiplied: -0.5 * 3 = -1.5 < -1.0.
    let logits = [-1.0, -0.5];
    assert_eq!(Sampler::new(greedy(3.0, 64)).sample(&logits, &[1]), 0);
    // The window: a token older than repeat_last_n is not penalised; 0 turns penalties off.
    let logits = [1.5, 2.0, -5.0];
    assert_eq!(Sampler::new(greedy(1.5, 2)).sample(&logits, &[1, 2, 2]), 1);
    assert_eq!(Sampler::new(greedy(1.5, 3)).sample(&logits, &[1, 2, 2]), 0);
    assert_eq!(Sampler::new(greedy(1.5, 0)).sample(&logits, &[1]), 1);
    assert_eq!(
        Sampler::new(greedy(1.5, usize::MAX)).sample(&logits, &[1, 2, 2]),
        0
    );
}

#[test]
fn presence_and_frequency_penalties_follow_openai() {
    let greedy = |presence: f32, frequency: f32| SamplingParams {
        presence_penalty: presence,
        frequency_penalty: frequency,
        ..SamplingParams::greedy()
    };
    let logits = [1.0, 1.25];
    let history = [1, 1, 1];
    // Presence: once: 1.25 - 0.2 = 1.05 > 1.0; 1.25 - 0.3 = 0.95 < 1.0.
    assert_eq!(Sampler::new(greedy(0.2, 0.0)).sample(&logits, &history), 1);
    assert_eq!(Sampler::new(greedy(0.3, 0.0)).sample(&logits, &history), 0);
    // Frequency: per occurrence: 1.25 - 3 * 0.07 = 1.04 > 1.0; 1.25 - 3 * 0.09 = 0.98 < 1.0.
    assert_eq!(Sampler::new(greedy(0.0, 0.07)).sample(&logits, &history), 1);
    assert_eq!(Sampler::new(greedy(0.0, 0.09)).sample(&logits, &history), 0);
    // Negative penalties encourage repetition.
    assert_eq!(Sampler::new(greedy(-0.5, 0.0)).sample(&[1.0, 0.7], &[1]), 1);
    // Penalties also apply before the random chain: a heavily penalised token never comes up.
    let mut s = Sampler::new(SamplingParams {
        presence_penalty: 2.0,
        ..plain(41)
    });
    let logits = logits_of(&[0.5, 0.5 - 1e-9]);
    let mut penalised = SamplingParams {
        frequency_penalty: 2.0,
        ..plain(42)
    };
    penalised.repeat_last_n = 64;
    let mut f = Sampler::new(penalised);
    let history = [0; 10]; // id 0 gets -2 (presence) / -20 (frequency)
    let h0: usize = (0..2000)
        .filter(|_| s.sample(&logits, &history) == 0)
        .count();
    let h1: usize = (0..2000)
        .filter(|_| f.sample(&logits, &history) == 0)
        .count();
    // e^-2 / (1 + e^-2) = 0.119 of draws; e^-20 is never.
    assert!((150..330).contains(&h0), "{h0}");
    assert_eq!(h1, 0);
}

#[test]
fn validate_rejects_out_of_range_values() {
    let ok = SamplingParams::default();
    let cases: [(&str, SamplingParams); 8] = [
        (
            "temperature",
            SamplingParams {
                temperature: -0.1,
                ..ok.clone()
            },
        ),
        (
            "temperature",
            SamplingParams {
                temperature: 2.5,
                ..ok.clone()
            },
        ),
        (
            "top_p",
            SamplingParams {
                top_p: 0.0,
                ..ok.clone()
            },
        ),
        (
            "top_p",
            SamplingParams {
                top_p: 1.01,
                ..ok.clone()
            },
        ),
        (
            "min_p",
            SamplingParams {
                min_p: -0.01,
                ..ok.clone()
            },
        ),
        (
            "repeat_penalty",
            SamplingParams {
                repeat_penalty: 0.0,
                ..ok.clone()
            },
        ),
        (
            "presence_penalty",
            SamplingParams {
                presence_penalty: 2.5,
                ..ok.clone()
            },
        ),
        (
            "frequency_penalty",
            SamplingParams {
                frequency_penalty: f32::NAN,
                ..ok.clone()
            },
        ),
    ];
    for (want, p) in cases {
        match p.validate() {
            Err(engine::Error::InvalidParam { param, message }) => {
                assert_eq!(param, want, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("{want}: expected InvalidParam, got {other:?}"),
        }
    }
    let edge = SamplingParams {
        temperature: 2.0,
        top_p: 1.0,
        min_p: 1.0,
        presence_penalty: -2.0,
        frequency_penalty: 2.0,
        ..ok
    };
    assert!(edge.validate().is_ok());
}

#[test]
fn logprobs_are_a_log_softmax() {
    let logits = noisy_logits(49152, 77);
    let mut scratch = Vec::new();
    let (lp, top) = logprobs(&logits, 123, 5, &mut scratch);
    assert_eq!(scratch.len(), logits.len());
    // exp sums to 1 over the vocabulary.
    let total: f64 = scratch.iter().map(|&l| f64::from(l).exp()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    assert_eq!(lp, scratch[123]);
    // Differences of logprobs equal differences of logits (softmax is shift-invariant).
    assert!(((scratch[7] - scratch[9]) - (logits[7] - logits[9])).abs() < 1e-4);
    // top-5: sorted descending, the five largest.
    assert_eq!(top.len(), 5);
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let want: Vec<u32> = order[..5].to_vec();
    assert_eq!(top.iter().map(|t| t.id).collect::<Vec<_>>(), want);
    assert!(top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
    assert!(top[0].logprob < 0.0);
}

#[test]
fn logprobs_on_a_known_distribution() {
    let logits = logits_of(&[0.1, 0.2, 0.3, 0.4]);
    // A constant shift must not change anything.
    let shifted: Vec<f32> = logits.iter().map(|l| l + 100.0).collect();
    let mut scratch = Vec::new();
    for l in [&logits, &shifted] {
        let (lp, top) = logprobs(l, 1, 2, &mut scratch);
        assert!((lp - 0.2f32.ln()).abs() < 1e-5, "{lp}");
        assert_eq!(top[0].id, 3);
        assert_eq!(top[1].id, 2);
        assert!((top[0].logprob - 0.4f32.ln()).abs() < 1e-5);
    }
    // top_n larger than the vocabulary returns the whole vocabulary; 0 returns none.
    assert_eq!(logprobs(&logits, 0, 10, &mut scratch).1.len(), 4);
    assert_eq!(
        logprobs(&logits, 0, 0, &mut scratch).1,
        Vec::<TokenLogprob>::new()
    );
    // Ties: lower id first.
    let (_, top) = logprobs(&[1.0, 2.0, 2.0, 0.0], 0, 2, &mut scratch);
    assert_eq!(top.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn nan_logits_never_win() {
    let logits = [f32::NAN, 1.0, f32::NAN, 0.0];
    assert_eq!(
        Sampler::new(SamplingParams::greedy()).sample(&logits, &[]),
        1
    );
    let h = histogram(plain(51), &logits, 2000);
    assert_eq!((h[0], h[2]), (0, 0), "{h:?}");
}
