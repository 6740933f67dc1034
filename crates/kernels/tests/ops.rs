//! Element-wise ops: the dispatched (AVX2 where available) path against the scalar reference,
//! and the reference against the mathematical definition computed in f64.

use kernels::ops::{self, scalar, RopeCache, RopeMode};

/// Small deterministic generator (xorshift64*), values in [-scale, scale).
struct Rng(u64);
impl Rng {
    fn f32(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40; // 24 bits
        (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(scale)).collect()
    }
}

const LENS: [usize; 9] = [1, 3, 7, 8, 9, 16, 31, 576, 1537];

fn note_simd() {
    if !ops::simd_available() {
        eprintln!("note: no AVX2+FMA on this CPU; the dispatched path is the scalar one");
    }
}

/// Relative difference with an absolute floor for values near zero.
fn close(a: f32, b: f32, rel: f32, abs: f32) -> bool {
    (a - b).abs() <= abs + rel * a.abs().max(b.abs())
}

fn assert_all_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(close(g, w, rel, abs), "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn rms_norm_simd_matches_scalar_and_definition() {
    note_simd();
    let mut rng = Rng(1);
    for n in LENS {
        let x = rng.vec(n, 3.0);
        let w = rng.vec(n, 1.5);
        let eps = 1e-5;
        let mut fast = vec![0.0; n];
        let mut reference = vec![0.0; n];
        ops::rms_norm(&x, &w, eps, &mut fast);
        scalar::rms_norm(&x, &w, eps, &mut reference);
        // Only the f64 summation order differs: the f32 scale can move by one ulp at most.
        assert_all_close("rms_norm simd vs scalar", &fast, &reference, 3e-7, 0.0);

        let mean: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n as f64;
        let inv = 1.0 / (mean + f64::from(eps)).sqrt();
        let exact: Vec<f32> = x.iter().zip(&w).map(|(&a, &b)| (f64::from(a) * inv * f64::from(b)) as f32).collect();
        assert_all_close("rms_norm vs f64", &reference, &exact, 1e-6, 1e-7);

        let mut inplace = x.clone();
        ops::rms_norm_inplace(&mut inplace, &w, eps);
        assert_eq!(inplace, fast, "in-place equals out-of-place");
        let mut inplace_ref = x.clone();
        scalar::rms_norm_inplace(&mut inplace_ref, &w, eps);
        assert_eq!(inplace_ref, reference);
    }
}

#[test]
fn softmax_simd_matches_scalar_and_definition() {
    note_simd();
    let mut rng = Rng(2);
    for n in LENS {
        let x = rng.vec(n, 20.0);
        let mut fast = x.clone();
        let mut reference = x.clone();
        ops::softmax_inplace(&mut fast);
        scalar::softmax_inplace(&mut reference);
        // ggml's vector exp is within ~2 ulp of expf.
        assert_all_close("softmax simd vs scalar", &fast, &reference, 1e-6, 1e-30);

        let max = x.iter().copied().fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(v)));
        let e: Vec<f64> = x.iter().map(|&v| (f64::from(v) - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        let exact: Vec<f32> = e.iter().map(|v| (v / sum) as f32).collect();
        // `x - max` is rounded to f32 first: exp's relative error grows with |x - max| (up to 40).
        assert_all_close("softmax vs f64", &reference, &exact, 5e-6, 1e-30);
        let total: f64 = fast.iter().map(|&v| f64::from(v)).sum();
        assert!((total - 1.0).abs() < 1e-5, "sums to {total}");
    }
}

#[test]
fn softmax_handles_masked_entries() {
    let mut x = vec![f32::NEG_INFINITY; 11];
    x[4] = 0.5;
    x[10] = 0.5;
    ops::softmax_inplace(&mut x);
    for (i, &v) in x.iter().enumerate() {
        let want = if i == 4 || i == 10 { 0.5 } else { 0.0 };
        assert_eq!(v, want, "index {i}");
    }
    let mut all_masked = vec![f32::NEG_INFINITY; 9];
    ops::softmax_inplace(&mut all_masked);
    assert!(all_masked.iter().all(|&v| v == 0.0));
}

#[test]
fn silu_and_swiglu_simd_match_scalar_and_definition() {
    note_simd();
    let mut rng = Rng(3);
    for n in LENS {
        let mut x = rng.vec(n, 12.0);
        if n > 8 {
            // The vector exp's slow path: arguments past +-126 * ln 2.
            x[0] = 95.0;
            x[1] = -95.0;
            x[2] = -150.0;
            x[3] = 0.0;
        }
        let up = rng.vec(n, 2.0);
        let mut fast = vec![0.0; n];
        let mut reference = vec![0.0; n];
        ops::silu(&x, &mut fast);
        scalar::silu(&x, &mut reference);
        assert_all_close("silu simd vs scalar", &fast, &reference, 1e-6, 1e-37);
        for (&r, &v) in reference.iter().zip(&x) {
            let exact = f64::from(v) / (1.0 + (-f64::from(v)).exp());
            assert!(close(r, exact as f32, 1e-6, 1e-37), "silu({v}) = {r}, want {exact}");
        }
        let mut inplace = x.clone();
        ops::silu_inplace(&mut inplace);
        assert_eq!(inplace, fast);

        let mut sw = vec![0.0; n];
        let mut sw_ref = vec![0.0; n];
        ops::swiglu(&x, &up, &mut sw);
        scalar::swiglu(&x, &up, &mut sw_ref);
        assert_all_close("swiglu simd vs scalar", &sw, &sw_ref, 1e-6, 1e-37);
        for i in 0..n {
            assert_eq!(sw_ref[i], reference[i] * up[i]);
        }
    }
}

#[test]
fn gelu_follows_ggml_f16_table() {
    let mut rng = Rng(4);
    let x = rng.vec(4000, 12.0);
    let mut y = vec![0.0; x.len()];
    ops::gelu(&x, &mut y);
    for (&v, &g) in x.iter().zip(&y) {
        let exact = 0.5 * f64::from(v) * (1.0 + libm_erf_free_tanh_gelu(f64::from(v)));
        if v <= -10.0 {
            assert_eq!(g, 0.0);
        } else if v >= 10.0 {
            assert_eq!(g, v);
        } else {
            // Input and output both rounded to f16: relative error of a few 1e-4 (plus the
            // steep part near zero, where x's own rounding dominates).
            assert!(close(g, exact as f32, 2e-3, 2e-4), "gelu({v}) = {g}, want {exact}");
        }
    }
    // The table value is f16(gelu(f16(x))), exactly.
    let v = 0.3337f32;
    let xr = half::f16::from_f32(v).to_f32();
    let want = half::f16::from_f32(scalar::gelu_exact1(xr)).to_f32();
    assert_eq!(scalar::gelu1(v), want);
    assert!((scalar::gelu_exact1(1.0) - 0.841_192).abs() < 1e-5);

    let up = rng.vec(x.len(), 2.0);
    let mut gg = vec![0.0; x.len()];
    ops::geglu(&x, &up, &mut gg);
    for i in 0..x.len() {
        assert_eq!(gg[i], y[i] * up[i], "geglu = gelu(gate) * up at {i}");
    }
    let mut inplace = x.clone();
    ops::gelu_inplace(&mut inplace);
    assert_eq!(inplace, y);
}

/// `tanh(sqrt(2/pi) * (x + 0.044715 x^3))`, the tanh-approximation's inner term, in f64.
fn libm_erf_free_tanh_gelu(x: f64) -> f64 {
    ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()
}

#[test]
fn add_mul_scale_simd_match_scalar_exactly() {
    note_simd();
    let mut rng = Rng(5);
    for n in LENS {
        let a = rng.vec(n, 5.0);
        let b = rng.vec(n, 5.0);
        let (mut f, mut r) = (a.clone(), a.clone());
        ops::add_inplace(&mut f, &b);
        scalar::add_inplace(&mut r, &b);
        assert_eq!(f, r);
        assert!(f.iter().zip(a.iter().zip(&b)).all(|(&s, (&x, &y))| s == x + y));
        ops::mul_inplace(&mut f, &b);
        scalar::mul_inplace(&mut r, &b);
        assert_eq!(f, r);
        ops::scale_inplace(&mut f, -0.37);
        scalar::scale_inplace(&mut r, -0.37);
        assert_eq!(f, r);
        assert!(f.iter().zip(a.iter().zip(&b)).all(|(&s, (&x, &y))| s == (x + y) * y * -0.37));
    }
}

#[test]
fn tanh_softcap_matches_formula() {
    let mut x = vec![-1000.0f32, -30.0, -1.0, 0.0, 0.5, 29.9, 1e6];
    let orig = x.clone();
    ops::tanh_softcap(&mut x, 30.0);
    for (&got, &v) in x.iter().zip(&orig) {
        let want = 30.0 * (f64::from(v) / 30.0).tanh();
        assert!(close(got, want as f32, 1e-6, 1e-7), "softcap({v}) = {got}, want {want}");
        assert!(got.abs() <= 30.0);
    }
}

/// RoPE by its definition in f64: pair i rotates by pos * base^(-2i/n_rot) * freq_scale.
#[allow(clippy::too_many_arguments)]
fn rope_f64(x: &[f32], n_head: usize, head_dim: usize, n_rot: usize, pos: usize, base: f64, fs: f64, neox: bool) -> Vec<f32> {
    let mut y = x.to_vec();
    for h in 0..n_head {
        for i in 0..n_rot / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / n_rot as f64) * fs;
            let (i0, i1) = if neox { (i, i + n_rot / 2) } else { (2 * i, 2 * i + 1) };
            let (a, b) = (f64::from(x[h * head_dim + i0]), f64::from(x[h * head_dim + i1]));
            y[h * head_dim + i0] = (a * theta.cos() - b * theta.sin()) as f32;
            y[h * head_dim + i1] = (a * theta.sin() + b * theta.cos()) as f32;
        }
    }
    y
}

#[test]
fn rope_matches_direct_formula_both_modes() {
    let mut rng = Rng(6);
    for (n_head, head_dim, n_rot, base, fs) in [(9, 64, 64, 10000.0f32, 1.0f32), (4, 128, 64, 1e6, 0.25), (2, 256, 256, 10000.0, 1.0)] {
        for mode in [RopeMode::Normal, RopeMode::Neox] {
            for pos in [0usize, 1, 7, 100, 2047] {
                let x = rng.vec(n_head * head_dim, 2.0);
                let mut y = x.clone();
                ops::rope(&mut y, n_head, head_dim, n_rot, pos, base, fs, mode);
                let want = rope_f64(&x, n_head, head_dim, n_rot, pos, f64::from(base), f64::from(fs), mode == RopeMode::Neox);
                // f32 angles of up to ~2000 rad carry ~1e-4 absolute error (as in ggml).
                let tol = 2e-6 + 3e-7 * pos as f32;
                assert_all_close(&format!("rope {mode:?} pos {pos} dims {head_dim}/{n_rot}"), &y, &want, 0.0, tol);
                if n_rot < head_dim {
                    for h in 0..n_head {
                        let tail = h * head_dim + n_rot..(h + 1) * head_dim;
                        assert_eq!(y[tail.clone()], x[tail], "dims past n_rot pass through");
                    }
                }
                if pos == 0 {
                    assert_eq!(y, x, "position 0 is the identity");
                }
            }
        }
    }
}

#[test]
fn rope_normal_pairs_adjacent_and_neox_pairs_halves() {
    // One head of 8 with only element 0 set: a rotation moves it into its partner.
    let pos = 1;
    let mut normal = vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    ops::rope(&mut normal, 1, 8, 8, pos, 10000.0, 1.0, RopeMode::Normal);
    assert!((normal[0] - 1f32.cos()).abs() < 1e-6 && (normal[1] - 1f32.sin()).abs() < 1e-6);
    assert!(normal[2..].iter().all(|&v| v == 0.0));
    let mut neox = vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    ops::rope(&mut neox, 1, 8, 8, pos, 10000.0, 1.0, RopeMode::Neox);
    assert!((neox[0] - 1f32.cos()).abs() < 1e-6 && (neox[4] - 1f32.sin()).abs() < 1e-6);
    assert!(neox[1..4].iter().chain(&neox[5..]).all(|&v| v == 0.0));
}

#[test]
fn rope_cache_equals_uncached_bit_for_bit() {
    let mut rng = Rng(7);
    let (n_head, head_dim, n_rot) = (3, 64, 32);
    let cache = RopeCache::new(head_dim, n_rot, 10000.0, 0.5, 64);
    assert_eq!(cache.max_pos(), 64);
    for mode in [RopeMode::Normal, RopeMode::Neox] {
        for pos in [0, 5, 63, 64, 500] {
            // 64 and 500 are past the table: computed on the fly, still identical.
            let x = rng.vec(n_head * head_dim, 1.0);
            let mut a = x.clone();
            let mut b = x.clone();
            cache.apply(&mut a, n_head, pos, mode);
            ops::rope(&mut b, n_head, head_dim, n_rot, pos, 10000.0, 0.5, mode);
            assert_eq!(a, b, "{mode:?} pos {pos}");
        }
    }
}

#[test]
fn rope_freq_factors_divide_the_angle() {
    let mut rng = Rng(8);
    let (head_dim, n_rot) = (16, 16);
    // Factor 2 everywhere halves each angle, the same as freq_scale 0.5.
    let ff = vec![2.0f32; n_rot / 2];
    let with_ff = RopeCache::with_freq_factors(head_dim, n_rot, 10000.0, 1.0, 32, &ff);
    let halved = RopeCache::new(head_dim, n_rot, 10000.0, 0.5, 32);
    let x = rng.vec(head_dim, 1.0);
    for pos in [3, 31, 40] {
        let mut a = x.clone();
        let mut b = x.clone();
        with_ff.apply(&mut a, 1, pos, RopeMode::Neox);
        halved.apply(&mut b, 1, pos, RopeMode::Neox);
        assert_all_close("freq factors", &a, &b, 0.0, 1e-6);
        assert_ne!(a, x);
    }
}

/// YaRN (issue 14): with `ext_factor` 0 and magnitude 1 the table is the plain one bit for bit;
/// with the ramp, pairs below the correction range keep their unscaled angle, pairs above it take
/// the interpolated one, and the magnitude multiplies both cos and sin by `1 + 0.1 ln(factor)`.
#[test]
fn yarn_blends_extrapolated_and_interpolated_angles() {
    let (head_dim, n_rot, factor) = (16, 16, 8.0f32);
    let plain = RopeCache::new(head_dim, n_rot, 10000.0, 1.0 / factor, 64);
    let off = kernels::ops::Yarn { ext_factor: 0.0, attn_factor: 1.0, corr_dims: [2.0, 5.0] };
    let same = RopeCache::with_scaling(head_dim, n_rot, 10000.0, 1.0 / factor, 64, None, Some(off));
    let unscaled = RopeCache::new(head_dim, n_rot, 10000.0, 1.0, 64);
    let on = kernels::ops::Yarn { ext_factor: 1.0, attn_factor: 1.0, corr_dims: [2.0, 5.0] };
    let yarn = RopeCache::with_scaling(head_dim, n_rot, 10000.0, 1.0 / factor, 64, None, Some(on));
    let mscale = 1.0 + 0.1 * factor.ln();
    for pos in [1usize, 17, 63, 100] {
        // One unit vector per pair: rotating it reads back (cos, sin) of that pair.
        for i in 0..n_rot / 2 {
            let unit = |c: &RopeCache| {
                let mut x = vec![0f32; head_dim];
                x[i] = 1.0;
                c.apply(&mut x, 1, pos, RopeMode::Neox);
                (x[i], x[i + n_rot / 2])
            };
            assert_eq!(unit(&same), unit(&plain), "pos {pos} pair {i}: ext_factor 0 is plain RoPE");
            let (c, s) = unit(&yarn);
            let want = if i <= 2 { unit(&unscaled) } else if i >= 5 { unit(&plain) } else { continue };
            assert!((c - want.0 * mscale).abs() < 1e-5 && (s - want.1 * mscale).abs() < 1e-5, "pos {pos} pair {i}: ({c}, {s}) vs {want:?} x {mscale}");
        }
    }
}
