//! Rotary position embedding (RoPE), computed like ggml's `ggml_compute_forward_rope_flt`.
//!
//! For rotated pair `i` (`0 <= i < n_rot/2`) at position `p`:
//!
//! ```text
//! theta_i = freq_scale * (p * theta_scale^i) / freq_factor_i,   theta_scale = freq_base^(-2/n_rot)
//! (a, b) -> (a*cos(theta_i) - b*sin(theta_i),  a*sin(theta_i) + b*cos(theta_i))
//! ```
//!
//! `p * theta_scale^i` is built by repeated f32 multiplication, as ggml's `rope_cache_init` does
//! (not `powf` per pair), so angles carry ggml's rounding. Which elements form a pair depends on
//! the [`RopeMode`]; dimensions past `n_rot` pass through unchanged.

/// How a head's rotated dimensions are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs `(0,1), (2,3), ...` (ggml mode 0; llama, smollm).
    Normal,
    /// Split halves `(i, i + n_rot/2)` (ggml `GGML_ROPE_TYPE_NEOX`; gemma, qwen, phi).
    Neox,
}

/// YaRN ("Yet another RoPE extensioN") parameters as ggml's `rope_yarn` takes them: pair `i`'s
/// angle blends the interpolated angle `freq_scale * theta` with the unscaled one by a ramp over
/// the correction dimensions, and cos/sin are multiplied by a magnitude.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// Weight of the extrapolation ramp (ggml's `ext_factor`; 1 for YaRN, 0 disables the blend).
    pub ext_factor: f32,
    /// Magnitude before ggml's own `1 + 0.1 ln(1 / freq_scale)` (llama.cpp's `yarn_attn_factor`).
    pub attn_factor: f32,
    /// `[low, high]` pair indices of the ramp, from [`Yarn::corr_dims`].
    pub corr_dims: [f32; 2],
}

impl Yarn {
    /// ggml's `ggml_rope_yarn_corr_dims`: the pairs whose wavelength at `n_ctx_orig` positions
    /// turns `beta_fast` and `beta_slow` times, floored/ceiled and clamped to `[0, n_rot - 1]`.
    pub fn corr_dims(n_rot: usize, n_ctx_orig: usize, freq_base: f32, beta_fast: f32, beta_slow: f32) -> [f32; 2] {
        let dim = |beta: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln() / (2.0 * freq_base.ln())
        };
        [dim(beta_fast).floor().max(0.0), dim(beta_slow).ceil().min(n_rot as f32 - 1.0)]
    }

    /// `(cos, sin)` of pair `i` for the extrapolated angle `theta_extrap` (ggml's `rope_yarn`).
    #[inline]
    fn cos_sin(&self, theta_extrap: f32, freq_scale: f32, i: usize) -> (f32, f32) {
        let theta_interp = freq_scale * theta_extrap;
        let mut theta = theta_interp;
        let mut mscale = self.attn_factor;
        if self.ext_factor != 0.0 {
            let [low, high] = self.corr_dims;
            let y = (i as f32 - low) / (high - low).max(0.001);
            let ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor;
            theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0 + 0.1 * (1.0 / freq_scale).ln();
        }
        (theta.cos() * mscale, theta.sin() * mscale)
    }
}

/// The angles of one position: `f(i, cos, sin)` for each pair, in ggml's order and rounding.
#[inline]
fn for_each_angle(
    n_rot: usize,
    pos: usize,
    theta_scale: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
    yarn: Option<&Yarn>,
    mut f: impl FnMut(usize, f32, f32),
) {
    let mut theta = pos as f32;
    for i in 0..n_rot / 2 {
        let ff = freq_factors.map_or(1.0, |ff| ff[i]);
        match yarn {
            None => {
                let t = freq_scale * (theta / ff);
                f(i, t.cos(), t.sin());
            }
            Some(y) => {
                let (c, s) = y.cos_sin(theta / ff, freq_scale, i);
                f(i, c, s);
            }
        }
        theta *= theta_scale;
    }
}

/// Rotates pair `i` of every head by `(cos, sin)`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn rotate_pair(x: &mut [f32], n_head: usize, head_dim: usize, n_rot: usize, mode: RopeMode, i: usize, cos: f32, sin: f32) {
    let (i0, i1) = match mode {
        RopeMode::Normal => (2 * i, 2 * i + 1),
        RopeMode::Neox => (i, i + n_rot / 2),
    };
    for h in 0..n_head {
        let head = &mut x[h * head_dim..(h + 1) * head_dim];
        let (a, b) = (head[i0], head[i1]);
        head[i0] = a * cos - b * sin;
        head[i1] = a * sin + b * cos;
    }
}

fn check_shape(x: &[f32], n_head: usize, head_dim: usize, n_rot: usize) {
    assert_eq!(x.len(), n_head * head_dim, "rope: x has {} values, expected n_head {n_head} x head_dim {head_dim}", x.len());
    assert!(n_rot.is_multiple_of(2) && n_rot <= head_dim, "rope: n_rot {n_rot} must be even and <= head_dim {head_dim}");
}

/// Applies RoPE in place to `x = [n_head][head_dim]` (one token) at position `pos`.
/// Computes the `n_rot/2` angles on the fly; for many tokens prefer [`RopeCache`].
///
/// # Panics
/// If `x.len() != n_head * head_dim`, or `n_rot` is odd or larger than `head_dim`.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    x: &mut [f32],
    n_head: usize,
    head_dim: usize,
    n_rot: usize,
    pos: usize,
    freq_base: f32,
    freq_scale: f32,
    mode: RopeMode,
) {
    check_shape(x, n_head, head_dim, n_rot);
    let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
    for_each_angle(n_rot, pos, theta_scale, freq_scale, None, None, |i, cos, sin| {
        rotate_pair(x, n_head, head_dim, n_rot, mode, i, cos, sin)
    });
}

/// Precomputed `(cos, sin)` for positions `0..max_pos`, so a forward pass does no trigonometry.
/// Positions beyond the table are computed on the fly with identical arithmetic.
#[derive(Clone, Debug)]
pub struct RopeCache {
    head_dim: usize,
    n_rot: usize,
    theta_scale: f32,
    freq_scale: f32,
    freq_factors: Option<Vec<f32>>,
    yarn: Option<Yarn>,
    max_pos: usize,
    /// `(max_pos, n_rot/2, 2)`: cos, sin interleaved.
    cos_sin: Vec<f32>,
}

impl RopeCache {
    /// # Panics
    /// If `n_rot` is odd or larger than `head_dim`.
    pub fn new(head_dim: usize, n_rot: usize, freq_base: f32, freq_scale: f32, max_pos: usize) -> Self {
        Self::build(head_dim, n_rot, freq_base, freq_scale, max_pos, None, None)
    }

    /// Like [`new`](Self::new) with per-pair frequency divisors (the `rope_freqs.weight` tensor
    /// of llama 3.1+ style rope scaling; ggml's `freq_factors`), one per rotated pair.
    ///
    /// # Panics
    /// As `new`, or if `freq_factors.len() < n_rot / 2`.
    pub fn with_freq_factors(
        head_dim: usize,
        n_rot: usize,
        freq_base: f32,
        freq_scale: f32,
        max_pos: usize,
        freq_factors: &[f32],
    ) -> Self {
        assert!(freq_factors.len() >= n_rot / 2, "rope: {} freq_factors for {} pairs", freq_factors.len(), n_rot / 2);
        Self::build(head_dim, n_rot, freq_base, freq_scale, max_pos, Some(freq_factors[..n_rot / 2].to_vec()), None)
    }

    /// The general form: optional per-pair frequency divisors and optional [`Yarn`] scaling
    /// (ggml's `ggml_rope_ext` with `ext_factor`, `attn_factor` and the correction dims).
    ///
    /// # Panics
    /// As [`with_freq_factors`](Self::with_freq_factors).
    pub fn with_scaling(
        head_dim: usize,
        n_rot: usize,
        freq_base: f32,
        freq_scale: f32,
        max_pos: usize,
        freq_factors: Option<&[f32]>,
        yarn: Option<Yarn>,
    ) -> Self {
        if let Some(ff) = freq_factors {
            assert!(ff.len() >= n_rot / 2, "rope: {} freq_factors for {} pairs", ff.len(), n_rot / 2);
        }
        let ff = freq_factors.map(|ff| ff[..n_rot / 2].to_vec());
        Self::build(head_dim, n_rot, freq_base, freq_scale, max_pos, ff, yarn)
    }

    fn build(
        head_dim: usize,
        n_rot: usize,
        freq_base: f32,
        freq_scale: f32,
        max_pos: usize,
        freq_factors: Option<Vec<f32>>,
        yarn: Option<Yarn>,
    ) -> Self {
        assert!(n_rot.is_multiple_of(2) && n_rot <= head_dim, "rope: n_rot {n_rot} must be even and <= head_dim {head_dim}");
        let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
        let mut cos_sin = vec![0f32; max_pos * n_rot];
        for (pos, row) in cos_sin.chunks_exact_mut(n_rot.max(1)).enumerate().take(max_pos) {
            for_each_angle(n_rot, pos, theta_scale, freq_scale, freq_factors.as_deref(), yarn.as_ref(), |i, c, s| {
                row[2 * i] = c;
                row[2 * i + 1] = s;
            });
        }
        RopeCache { head_dim, n_rot, theta_scale, freq_scale, freq_factors, yarn, max_pos, cos_sin }
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    pub fn n_rot(&self) -> usize {
        self.n_rot
    }

    /// Number of positions held in the table.
    pub fn max_pos(&self) -> usize {
        self.max_pos
    }

    /// Applies RoPE in place to one token's `x = [n_head][head_dim]` at position `pos`.
    ///
    /// # Panics
    /// If `x.len() != n_head * head_dim`.
    pub fn apply(&self, x: &mut [f32], n_head: usize, pos: usize, mode: RopeMode) {
        let (head_dim, n_rot) = (self.head_dim, self.n_rot);
        check_shape(x, n_head, head_dim, n_rot);
        if pos < self.max_pos {
            let row = &self.cos_sin[pos * n_rot..(pos + 1) * n_rot];
            for (i, cs) in row.chunks_exact(2).enumerate() {
                rotate_pair(x, n_head, head_dim, n_rot, mode, i, cs[0], cs[1]);
            }
        } else {
            let ff = self.freq_factors.as_deref();
            for_each_angle(n_rot, pos, self.theta_scale, self.freq_scale, ff, self.yarn.as_ref(), |i, cos, sin| {
                rotate_pair(x, n_head, head_dim, n_rot, mode, i, cos, sin)
            });
        }
    }
}
