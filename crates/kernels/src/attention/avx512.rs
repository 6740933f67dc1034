//! AVX-512 form of the online-softmax attention of [`super::head`], for a few heads sharing one KV
//! head at once (see [`heads`]), for head sizes that are
//! a multiple of 16, with the query and the f32 V accumulator held in registers across the KV
//! rows (the AVX2 form loads and stores the accumulator per row).
//!
//! Bit-for-bit the same as the AVX2 form: the dot product's two 8-lane accumulators (even and
//! odd 8-element chunks) are the low and high halves of one 16-lane register, fed the same
//! fused multiply-adds in the same order and summed the same way; every V update is the same
//! `fma(v, w, acc)`; `exp` is the same vectorised `expf8` arithmetic (here on 16
//! lanes, for 16 KV rows at once); the running sum is the same scalar code.

use std::arch::x86_64::*;
use std::ops::Range;

use half::f16;

use super::KvChunk;

/// Whether this process runs [`head`]: the kernels' AVX-512 level (not capped by
/// `DAEHWA_KERNELS=avx2`), which includes AVX-512 F and F16C/FMA/AVX2.
pub(super) fn available() -> bool {
    crate::quant::chosen_level() >= crate::quant::Level::Avx512Vnni
}

#[inline(always)]
unsafe fn load16(p: *const f16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
}

/// The horizontal sums of 16 rows at once: lane `j` of the result is ggml's `hsum_float_8` of
/// the 8-lane sum of `rows[j]`'s two halves (the AVX2 form's two accumulators), the same
/// additions in the same tree (lanes `i` and `i + 8`, then `i` and `i + 4`, then `0 + 2` and
/// `1 + 3`, then those two), done for all rows together by pairing registers instead of
/// reducing each one alone (about a third of the instructions); a last permute puts row `j` in
/// lane `j`.
#[inline(always)]
unsafe fn hsum_halves16(rows: &[__m512; 16]) -> __m512 {
    // Row j's 8 sums (a[i] + a[i + 8]) in the low half, row j + 8's in the high half.
    let t: [__m512; 8] = std::array::from_fn(|j| {
        let (a, b) = (rows[j], rows[j + 8]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(a, b), _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b))
    });
    // Quarters: rows j, j + 8, j + 4, j + 12, each 4 sums (i and i + 4).
    let u: [__m512; 4] = std::array::from_fn(|j| {
        let (a, b) = (t[j], t[j + 4]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b))
    });
    // Per quarter: two sums (0 + 2, 1 + 3) of a row from u[j], then of one from u[j + 2].
    let w: [__m512; 2] = std::array::from_fn(|j| {
        let (a, b) = (u[j], u[j + 2]);
        _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(a, b), _mm512_shuffle_ps::<0b11_10_11_10>(a, b))
    });
    let z = _mm512_add_ps(_mm512_shuffle_ps::<0b10_00_10_00>(w[0], w[1]), _mm512_shuffle_ps::<0b11_01_11_01>(w[0], w[1]));
    // z's lanes hold rows 0 2 1 3 | 8 10 9 11 | 4 6 5 7 | 12 14 13 15.
    let at = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    _mm512_permutexvar_ps(at, z)
}

/// `exp` of 16 lanes: [`crate::ops::expf8`] (ggml's `ggml_v_expf`) on a 512-bit register, the
/// same operations in the same order, so each lane equals the 8-lane form bit for bit (the AVX2
/// attention path computes its weights with `expf8`).
#[inline(always)]
unsafe fn expf16(x: __m512) -> __m512 {
    use crate::ops::exp_bits as c;
    let splat = |b: u32| _mm512_castsi512_ps(_mm512_set1_epi32(b as i32));
    let r = splat(c::SHIFT);
    let z = _mm512_fmadd_ps(x, splat(c::LOG2E), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(n, splat(c::LN2_LO), _mm512_fnmadd_ps(n, splat(c::LN2_HI), x));
    let e = _mm512_slli_epi32::<23>(_mm512_castps_si512(z));
    let k = _mm512_castsi512_ps(_mm512_add_epi32(e, _mm512_castps_si512(_mm512_set1_ps(1.0))));
    let abs_n = _mm512_abs_ps(n);
    let c = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(abs_n, _mm512_set1_ps(126.0));
    let u = _mm512_mul_ps(b, b);
    let hi = _mm512_fmadd_ps(splat(c::P4), b, splat(c::P3));
    let lo = _mm512_fmadd_ps(splat(c::P2), b, splat(c::P1));
    let j = _mm512_fmadd_ps(_mm512_fmadd_ps(hi, u, lo), u, _mm512_mul_ps(splat(c::P0), b));
    let normal = _mm512_fmadd_ps(k, j, k);
    if c == 0 {
        return normal;
    }
    let le0 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
    let g = _mm512_maskz_mov_epi32(le0, _mm512_set1_epi32(0x8200_0000u32 as i32));
    let s1 = _mm512_castsi512_ps(_mm512_add_epi32(g, _mm512_set1_epi32(0x7f00_0000)));
    let s2 = _mm512_castsi512_ps(_mm512_sub_epi32(e, g));
    let d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(abs_n, _mm512_set1_ps(192.0));
    let scaled = _mm512_mul_ps(_mm512_fmadd_ps(s2, j, s2), s1);
    let finite = _mm512_mask_blend_ps(c, normal, scaled);
    _mm512_mask_blend_ps(d, finite, _mm512_mul_ps(s1, s1))
}

/// `v` moved up `16 - SH` lanes (lane `i` gets lane `i - (16 - SH)`), the low lanes from `fill`.
#[inline(always)]
unsafe fn shift_up<const SH: i32>(v: __m512, fill: __m512) -> __m512 {
    // valignd: lane i of (v:fill) >> SH lanes is concat[i + SH], concat = [fill (low), v (high)].
    _mm512_castsi512_ps(_mm512_alignr_epi32::<SH>(_mm512_castps_si512(v), _mm512_castps_si512(fill)))
}

/// KV rows per block: their scores, running maxima and weights are computed 16 lanes at a time.
const BLOCK: usize = 16;

/// The running state of `G` heads' online softmax: the f32 V accumulators, the running maxima
/// and sums. In memory (see [`heads_resume`]) it is `G * NV * 16` accumulator values, then `G`
/// maxima, then `G` sums.
pub(super) struct State<const NV: usize, const G: usize> {
    acc: [[__m512; NV]; G],
    m: [f32; G],
    sum: [f32; G],
}

impl<const NV: usize, const G: usize> State<NV, G> {
    /// 16-lane chunks of the head per pass of the V updates: as many as keep the `G` heads'
    /// accumulators of a pass in 16 registers, a power of two so that it divides `NV` (4, 8 or
    /// 16) and every pass has the same (constant) length.
    const PASS: usize = {
        let p = 16 / G;
        let p = if p >= 16 { 16 } else if p >= 8 { 8 } else if p >= 4 { 4 } else if p >= 2 { 2 } else { 1 };
        if p >= NV { NV } else { p }
    };

    #[inline(always)]
    unsafe fn new() -> Self {
        State { acc: [[_mm512_setzero_ps(); NV]; G], m: [f32::NEG_INFINITY; G], sum: [0.0; G] }
    }

    #[inline(always)]
    unsafe fn load(st: &[f32]) -> Self {
        let mut s = Self::new();
        for g in 0..G {
            for i in 0..NV {
                s.acc[g][i] = _mm512_loadu_ps(st.as_ptr().add((g * NV + i) * 16));
            }
            s.m[g] = st[G * NV * 16 + g];
            s.sum[g] = st[G * NV * 16 + G + g];
        }
        s
    }

    #[inline(always)]
    unsafe fn store(&self, st: &mut [f32]) {
        for g in 0..G {
            for i in 0..NV {
                _mm512_storeu_ps(st.as_mut_ptr().add((g * NV + i) * 16), self.acc[g][i]);
            }
            st[G * NV * 16 + g] = self.m[g];
            st[G * NV * 16 + G + g] = self.sum[g];
        }
    }
}

/// A fresh state in memory: zero accumulators, maxima at minus infinity, zero sums.
pub(super) fn init_state(st: &mut [f32], n_acc: usize) {
    let g = (st.len() - n_acc) / 2;
    st[..n_acc].fill(0.0);
    st[n_acc..n_acc + g].fill(f32::NEG_INFINITY);
    st[n_acc + g..].fill(0.0);
}

/// Where one KV head's rows are and how its scores are scaled.
#[derive(Clone, Copy)]
pub(super) struct Kv<'a> {
    pub chunks: &'a [KvChunk<'a>],
    /// Values per KV row (all KV heads).
    pub stride: usize,
    pub kvh: usize,
    pub scale: f32,
    /// Soft cap (0: none); the scale is then already divided by it.
    pub cap: f32,
}

/// Whether [`heads`], [`heads_resume`] and [`heads_finish`] have a kernel for `n` heads of `hd`.
pub(super) fn supported(hd: usize, n: usize) -> bool {
    hd.is_multiple_of(16) && matches!(hd / 16, 4 | 8 | 16) && (1..=super::MAX_GROUP).contains(&n)
}

macro_rules! dispatch {
    ($hd:expr, $n:expr, $f:ident ( $($arg:expr),* )) => {{
        macro_rules! g {
            ($nv:literal) => {
                match $n {
                    1 => $f::<$nv, 1>($($arg),*),
                    2 => $f::<$nv, 2>($($arg),*),
                    3 => $f::<$nv, 3>($($arg),*),
                    _ => $f::<$nv, 4>($($arg),*),
                }
            };
        }
        match $hd / 16 {
            4 => g!(4),
            8 => g!(8),
            _ => g!(16),
        }
    }};
}

/// `n` heads (`q`, `out`: `n * hd` values) over the rows `range`: [`heads_nv`] for
/// [`supported`]`(hd, n)`.
///
/// # Safety
/// [`available`] and [`supported`]`(hd, n)`; every chunk holds `n_rows * stride` values;
/// `kvh * hd + hd <= stride`; `range` lies within the chunks' rows; `q` and `out` hold `n * hd`
/// values; `sinks`, where given, `n`.
pub(super) unsafe fn heads(kv: Kv, hd: usize, n: usize, q: &[f32], range: Range<usize>, sinks: Option<&[f32]>, out: &mut [f32]) {
    dispatch!(hd, n, heads_nv(kv, q, range.clone(), sinks, out))
}

/// Goes on with the heads' state `st` (in memory, `n * hd + 2 * n` values, started by
/// [`init_state`]) over the further rows `range`: the state after rows `a..b` and then `b..c` is
/// the state after `a..c` bit for bit (see [`rows`]), so a long context may be run in tiles.
///
/// # Safety
/// As [`heads`]; `st` holds `n * hd + 2 * n` values.
pub(super) unsafe fn heads_resume(kv: Kv, hd: usize, n: usize, q: &[f32], range: Range<usize>, st: &mut [f32]) {
    dispatch!(hd, n, resume_nv(kv, q, range.clone(), st))
}

/// The heads' outputs from their state `st` after the last row (sinks folded in).
///
/// # Safety
/// As [`heads_resume`].
pub(super) unsafe fn heads_finish(hd: usize, n: usize, st: &[f32], sinks: Option<&[f32]>, out: &mut [f32]) {
    dispatch!(hd, n, finish_nv(st, sinks, out))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn heads_nv<const NV: usize, const G: usize>(kv: Kv, q: &[f32], range: Range<usize>, sinks: Option<&[f32]>, out: &mut [f32]) {
    let mut st = State::<NV, G>::new();
    rows(&mut st, kv, q, range);
    finish(&st, sinks, out);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn resume_nv<const NV: usize, const G: usize>(kv: Kv, q: &[f32], range: Range<usize>, st: &mut [f32]) {
    let mut s = State::<NV, G>::load(st);
    rows(&mut s, kv, q, range);
    s.store(st);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn finish_nv<const NV: usize, const G: usize>(st: &[f32], sinks: Option<&[f32]>, out: &mut [f32]) {
    finish(&State::<NV, G>::load(st), sinks, out);
}

/// Runs the state of `G` heads of one query that share one KV head (`NV * 16` values each,
/// consecutive in `q`) over the KV rows `range` of the concatenated chunks: the online softmax
/// of `q K^T * scale [softcapped]` against `V`, in f32 ([`finish`] makes the outputs).
///
/// The rows go in blocks of 16. For a block, each head's 16 scores come first (each K row loaded
/// and converted once for the `G` heads); then, in registers, the running maximum after each
/// row (a prefix-max scan), the rows' weights `exp(s_j - M_j)` and the rescale factors
/// `exp(M_{j-1} - M_j)` (1 where the maximum did not move); then the rows' V updates in order
/// (for wide heads, in passes over the head's 16-lane chunks: see [`State::PASS`]).
/// That is the one-row-at-a-time online softmax of [`super::head`] value for value: `M_j` is
/// the same running maximum, where a row raises it its weight is `exp(0) = 1` and the factor
/// `exp(M - s)`, elsewhere the factor is `exp(0) = 1` (no rescale) and the weight `exp(s - M)`,
/// and the sum and the accumulator are updated row by row in the same order. So the
/// result does not depend on where blocks or chunks start, and equals the AVX2 form bit for bit.
///
/// # Safety
/// As [`heads`] with `hd = NV * 16`, `n = G`.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn rows<const NV: usize, const G: usize>(st: &mut State<NV, G>, kv: Kv, q: &[f32], range: Range<usize>) {
    let Kv { chunks, stride, kvh, scale, cap } = kv;
    let hd = NV * 16;
    // The queries stay in memory (an FMA's memory operand, from L1): with the accumulators,
    // 4 heads of 64 would need all 32 registers and the compiler spilled the accumulators.
    let qp = q.as_ptr();
    // Local copies, so that the accumulators live in registers across the rows.
    let mut acc = st.acc;
    let mut m = st.m;
    let mut sum = st.sum;
    // Per head and block row: score, then weight; rescale factor.
    let mut sc = [[0f32; BLOCK]; G];
    let mut fac = [[0f32; BLOCK]; G];
    // Per head, the block rows' 16-lane dot products before their horizontal sums.
    let mut dots = [[_mm512_setzero_ps(); BLOCK]; G];
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut base = 0;
    for c in chunks {
        if base >= range.end {
            break;
        }
        let lo = range.start.max(base).saturating_sub(base);
        let hi = range.end.min(base + c.n_rows).saturating_sub(base);
        let mut j0 = lo;
        while j0 < hi {
            let n = (hi - j0).min(BLOCK);
            for jj in 0..n {
                let kp = c.k.as_ptr().add((j0 + jj) * stride + kvh * hd);
                let mut d = [_mm512_setzero_ps(); G];
                for i in 0..NV {
                    let k = load16(kp.add(i * 16));
                    for g in 0..G {
                        d[g] = _mm512_fmadd_ps(_mm512_loadu_ps(qp.add(g * hd + i * 16)), k, d[g]);
                    }
                }
                for g in 0..G {
                    dots[g][jj] = d[g];
                }
            }
            // Rows past `n` hold an earlier block's sums (or zeros): their lanes are masked below.
            for g in 0..G {
                _mm512_storeu_ps(sc[g].as_mut_ptr(), _mm512_mul_ps(hsum_halves16(&dots[g]), _mm512_set1_ps(scale)));
            }
            if cap != 0.0 {
                for g in 0..G {
                    for s in &mut sc[g][..n] {
                        *s = cap * s.tanh();
                    }
                }
            }
            let live = (1u32 << n).wrapping_sub(1) as u16;
            // Whether the block leaves every head's running maximum where it was (after the
            // first rows, most blocks): then every rescale factor is exp(0) = 1 exactly, so the
            // prefix scan, the factors' `exp` and the per-row rescale checks are skipped; the
            // weights, sums and accumulators are the same values as on the general path.
            let mut steady = true;
            for g in 0..G {
                let s = _mm512_mask_loadu_ps(ninf, live, sc[g].as_ptr());
                let mprev = _mm512_set1_ps(m[g]);
                if _mm512_reduce_max_ps(s) <= m[g] {
                    _mm512_storeu_ps(sc[g].as_mut_ptr(), expf16(_mm512_sub_ps(s, mprev)));
                    fac[g] = [1.0; BLOCK];
                    continue;
                }
                steady = false;
                // Prefix maximum of the block's scores, then with the running maximum before it.
                let mut pm = _mm512_max_ps(s, shift_up::<15>(s, ninf));
                pm = _mm512_max_ps(pm, shift_up::<14>(pm, ninf));
                pm = _mm512_max_ps(pm, shift_up::<12>(pm, ninf));
                pm = _mm512_max_ps(pm, shift_up::<8>(pm, ninf));
                let cur = _mm512_max_ps(pm, mprev);
                let before = shift_up::<15>(cur, mprev);
                _mm512_storeu_ps(sc[g].as_mut_ptr(), expf16(_mm512_sub_ps(s, cur)));
                _mm512_storeu_ps(fac[g].as_mut_ptr(), expf16(_mm512_sub_ps(before, cur)));
                m[g] = _mm512_reduce_max_ps(cur);
            }
            if State::<NV, G>::PASS == NV {
                // One pass (heads up to 64 wide): the rows' updates on the accumulators
                // themselves. The same steps as `v_pass`, kept apart: calling `v_pass` on `acc`
                // measured 5% slower on Llama-3.2-1B's shape (7.8 -> 8.2 ms, kernels bench).
                for jj in 0..n {
                    let vp = c.v.as_ptr().add((j0 + jj) * stride + kvh * hd);
                    for g in 0..G {
                        if steady {
                            // `sum * 1 + w` is `sum + w` exactly.
                            sum[g] += sc[g][jj];
                            continue;
                        }
                        let ms = fac[g][jj];
                        if ms != 1.0 {
                            let msv = _mm512_set1_ps(ms);
                            for a in acc[g].iter_mut() {
                                *a = _mm512_mul_ps(*a, msv);
                            }
                        }
                        sum[g] = sum[g] * ms + sc[g][jj];
                    }
                    for i in 0..NV {
                        let v = load16(vp.add(i * 16));
                        for g in 0..G {
                            acc[g][i] = _mm512_fmadd_ps(v, _mm512_set1_ps(sc[g][jj]), acc[g][i]);
                        }
                    }
                }
            } else {
                // The V updates in passes over `PASS` of the head's 16-lane chunks, so that a
                // pass's `G * PASS` accumulators stay in registers (4 heads of 128 would need
                // all 32); each value still gets its rescales and multiply-adds in row order,
                // so the passes do not change a bit. The first pass also updates the sums,
                // whose chain of dependent additions then overlaps the multiply-adds.
                for i0 in (0..NV).step_by(State::<NV, G>::PASS) {
                    let mut a = [[_mm512_setzero_ps(); 16]; G];
                    for g in 0..G {
                        for k in 0..State::<NV, G>::PASS {
                            a[g][k] = acc[g][i0 + k];
                        }
                    }
                    let sums = (i0 == 0).then_some(&mut sum);
                    v_pass::<NV, G>(&mut a, sums, c.v.as_ptr().add(j0 * stride + kvh * hd + i0 * 16), stride, n, steady, &sc, &fac);
                    for g in 0..G {
                        for k in 0..State::<NV, G>::PASS {
                            acc[g][i0 + k] = a[g][k];
                        }
                    }
                }
            }
            j0 += n;
        }
        base += c.n_rows;
    }
    st.acc = acc;
    st.m = m;
    st.sum = sum;
}

/// One pass of a block's V updates: the accumulators `a[g][..PASS]` of [`State::PASS`] of the
/// head's 16-lane chunks, from `vp` on in each of the block's `n` rows; with `sums`, the heads'
/// running sums too, row by row.
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
#[inline(always)]
unsafe fn v_pass<const NV: usize, const G: usize>(
    a: &mut [[__m512; 16]; G],
    mut sums: Option<&mut [f32; G]>,
    vp: *const f16,
    stride: usize,
    n: usize,
    steady: bool,
    sc: &[[f32; BLOCK]; G],
    fac: &[[f32; BLOCK]; G],
) {
    let len = State::<NV, G>::PASS;
    for jj in 0..n {
        let vp = vp.add(jj * stride);
        if let Some(sum) = sums.as_deref_mut() {
            for g in 0..G {
                // `sum * 1 + w` is `sum + w` exactly.
                sum[g] = if steady { sum[g] + sc[g][jj] } else { sum[g] * fac[g][jj] + sc[g][jj] };
            }
        }
        if !steady {
            for g in 0..G {
                let ms = fac[g][jj];
                if ms != 1.0 {
                    let msv = _mm512_set1_ps(ms);
                    for x in &mut a[g][..len] {
                        *x = _mm512_mul_ps(*x, msv);
                    }
                }
            }
        }
        for k in 0..len {
            let v = load16(vp.add(k * 16));
            for g in 0..G {
                a[g][k] = _mm512_fmadd_ps(v, _mm512_set1_ps(sc[g][jj]), a[g][k]);
            }
        }
    }
}

/// `out = acc / sum` per head, with the sink logits folded in first.
#[inline(always)]
unsafe fn finish<const NV: usize, const G: usize>(st: &State<NV, G>, sinks: Option<&[f32]>, out: &mut [f32]) {
    let hd = NV * 16;
    let mut acc = st.acc;
    let mut sum = st.sum;
    let m = st.m;
    if let Some(z) = sinks {
        for g in 0..G {
            let ms;
            (sum[g], ms) = super::sink(z[g], m[g], sum[g], |x| _mm512_cvtss_f32(expf16(_mm512_set1_ps(x))));
            let msv = _mm512_set1_ps(ms);
            for a in acc[g].iter_mut() {
                *a = _mm512_mul_ps(*a, msv);
            }
        }
    }
    for g in 0..G {
        let inv = _mm512_set1_ps(if sum[g] == 0.0 { 0.0 } else { 1.0 / sum[g] });
        for (i, a) in acc[g].iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(g * hd + i * 16), _mm512_mul_ps(*a, inv));
        }
    }
}
