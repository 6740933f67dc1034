//! The 256-element k-quants q4_K, q5_K, q6_K and the activation type q8_K: reference
//! quantization (`quantize_row_*_ref`), dequantization and the scalar dot products.
//!
//! **The float order of the dot products** (every SIMD, packed and AMX kernel follows it, so
//! all return the same bits; see [`k_step`]): per 256-element super-block, the exact integer
//! total `isum` (the sub-block scales times the quant products, for q6_K minus its -32 offset
//! times the block sums) and, for q4_K/q5_K, `msum` (the mins times the block sums) are
//! computed in any order (integers are exact), then folded into one f32 accumulator:
//! `acc = acc + (d_x * d_w) * float(isum)`, then `acc = acc - (d_x * dmin_w) * float(msum)`,
//! as separate multiplies and adds (no FMA). ggml's kernels instead keep eight float lanes per
//! row; a per-row total per super-block is what AMX tiles and 16-row VNNI kernels produce, so
//! this order lets one matrix run on any of them with identical results (batch invariance).

use super::blocks::{
    dot_operands, f16_le, f16_le_from, unpack_scales_mins_k4, BlockQ4K, BlockQ5K, BlockQ6K,
    BlockQ8K, K_SCALE_SIZE, QK_K,
};
use super::fp::f16_to_f32;
use super::kutil::{make_qkx2_quants, make_qx_quants_rmse1, nearest_int, GROUP_MAX_EPS};

/// Per-sub-block scale and min search shared by q4_K (`nmax` 15) and q5_K (`nmax` 31):
/// returns the 6-bit packed scales, the fp16 `d`/`dmin` and the final quants (0..=nmax).
fn quantize_k4_common(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> ([u8; K_SCALE_SIZE], [u8; 2], [u8; 2], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            0.1,
            nstep,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; K_SCALE_SIZE];
    for j in 0..QK_K / 32 {
        // `as u8` truncates like the C assignment to uint8_t before MIN.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d16 = f16_le_from(max_scale / 63.0);
    let dmin16 = f16_le_from(max_min / 63.0);
    let sm = unpack_scales_mins_k4(&packed);
    for j in 0..QK_K / 32 {
        let d = f16_le(d16) * sm[j] as f32;
        if d == 0.0 {
            continue;
        }
        let dm = f16_le(dmin16) * sm[8 + j] as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    (packed, d16, dmin16, l)
}

pub fn quantize_q4_k(x: &[f32], y: &mut [BlockQ4K]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(y) {
        let (scales, d, dmin, l) = quantize_k4_common(xb, 15, -1.0, 20);
        yb.scales = scales;
        yb.d = d;
        yb.dmin = dmin;
        for (j, q) in (0..QK_K).step_by(64).zip(yb.qs.chunks_exact_mut(32)) {
            for i in 0..32 {
                q[i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
}

pub fn quantize_q5_k(x: &[f32], y: &mut [BlockQ5K]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(y) {
        let (scales, d, dmin, l) = quantize_k4_common(xb, 31, -0.5, 15);
        yb.scales = scales;
        yb.d = d;
        yb.dmin = dmin;
        yb.qh = [0; QK_K / 8];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (n, ql) in (0..QK_K).step_by(64).zip(yb.qs.chunks_exact_mut(32)) {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    yb.qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    yb.qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }
}

pub fn quantize_q6_k(x: &[f32], y: &mut [BlockQ6K]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(y) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            let s = make_qx_quants_rmse1(
                &xb[16 * ib..16 * ib + 16],
                32,
                &mut l[16 * ib..16 * ib + 16],
            );
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            yb.ql = [0; QK_K / 2];
            yb.qh = [0; QK_K / 4];
            yb.scales = [0; QK_K / 16];
            yb.d = f16_le_from(0.0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        yb.d = f16_le_from(1.0 / iscale);
        for (sc, &s) in yb.scales.iter_mut().zip(&scales) {
            *sc = nearest_int(iscale * s).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = f16_le(yb.d) * yb.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xb[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for (j, (ql, qh)) in (0..QK_K)
            .step_by(128)
            .zip(yb.ql.chunks_exact_mut(64).zip(yb.qh.chunks_exact_mut(32)))
        {
            for i in 0..32 {
                let q = |k: usize| l[j + i + k] as u8;
                ql[i] = (q(0) & 0xF) | ((q(64) & 0xF) << 4);
                ql[i + 32] = (q(32) & 0xF) | ((q(96) & 0xF) << 4);
                qh[i] =
                    (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
            }
        }
    }
}

pub fn quantize_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(y) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            yb.d = 0f32.to_le_bytes();
            yb.qs = [0; QK_K];
            yb.bsums = [[0; 2]; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let sum: i32 = yb.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            yb.bsums[j] = (sum as i16).to_le_bytes();
        }
        yb.d = (1.0 / iscale).to_le_bytes();
    }
}

pub fn dequantize_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_le(b.d), f16_le(b.dmin));
        let sm = unpack_scales_mins_k4(&b.scales);
        for (k, (q, out)) in
            b.qs.chunks_exact(32)
                .zip(yb.chunks_exact_mut(64))
                .enumerate()
        {
            let (d1, m1) = (d * sm[2 * k] as f32, min * sm[8 + 2 * k] as f32);
            let (d2, m2) = (d * sm[2 * k + 1] as f32, min * sm[8 + 2 * k + 1] as f32);
            for l in 0..32 {
                out[l] = d1 * (q[l] & 0xF) as f32 - m1;
                out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

pub fn dequantize_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_le(b.d), f16_le(b.dmin));
        let sm = unpack_scales_mins_k4(&b.scales);
        let (mut u1, mut u2) = (1u8, 2u8);
        for (k, (q, out)) in
            b.qs.chunks_exact(32)
                .zip(yb.chunks_exact_mut(64))
                .enumerate()
        {
            let (d1, m1) = (d * sm[2 * k] as f32, min * sm[8 + 2 * k] as f32);
            let (d2, m2) = (d * sm[2 * k + 1] as f32, min * sm[8 + 2 * k + 1] as f32);
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                out[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
                out[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

/// The 256 signed 6-bit values (-32..32) of a q6_K block in element order.
#[inline(always)]
fn q6_values(b: &BlockQ6K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for (n, (ql, qh)) in (0..QK_K)
        .step_by(128)
        .zip(b.ql.chunks_exact(64).zip(b.qh.chunks_exact(32)))
    {
        for l in 0..32 {
            a[n + l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[n + l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[n + l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[n + l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

pub fn dequantize_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let a = q6_values(b);
        for (i, o) in yb.iter_mut().enumerate() {
            *o = d * b.scales[i / 16] as f32 * a[i] as f32;
        }
    }
}

pub fn dequantize_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (o, &q) in yb.iter_mut().zip(&b.qs) {
            *o = d * q as f32;
        }
    }
}

/// One super-block's step of the float order above: `acc + d * float(isum) - dm * float(msum)`,
/// where `d = d_x * d_w` and `dm = d_x * dmin_w` (q6_K: `msum = 0`, `dm = 0`).
#[inline(always)]
pub(crate) fn k_step(acc: f32, d: f32, isum: i32, dm: f32, msum: i32) -> f32 {
    let acc = acc + d * isum as f32;
    acc - dm * msum as f32
}

/// `sum scale(i / group) * a[i] * q8[i]` over one super-block (exact).
#[inline(always)]
fn block_isum(a: &[i8; QK_K], q8: &[i8; QK_K], group: usize, scale: impl Fn(usize) -> i32) -> i32 {
    a.chunks_exact(group)
        .zip(q8.chunks_exact(group))
        .enumerate()
        .map(|(g, (ac, qc))| scale(g) * ac.iter().zip(qc).map(|(&a, &q)| a as i32 * q as i32).sum::<i32>())
        .sum()
}

/// Shared body of the q4_K/q5_K dots, given the unsigned quants of each block.
#[inline(always)]
fn dot_k4(
    n: usize,
    blocks: impl Iterator<Item = ([u8; 2], [u8; 2], [u8; K_SCALE_SIZE], [i8; QK_K])>,
    y: &[BlockQ8K],
) -> f32 {
    debug_assert_eq!(n / QK_K, y.len());
    let mut acc = 0f32;
    for ((d16, dmin16, scales, a), yb) in blocks.zip(y) {
        let sm = unpack_scales_mins_k4(&scales);
        let msum: i32 = (0..QK_K / 16).map(|j| yb.bsum(j) as i32 * sm[8 + j / 2] as i32).sum();
        let isum = block_isum(&a, &yb.qs, 32, |g| sm[g] as i32);
        let d = yb.d() * f16_to_f32(u16::from_le_bytes(d16));
        let dm = yb.d() * f16_to_f32(u16::from_le_bytes(dmin16));
        acc = k_step(acc, d, isum, dm, msum);
    }
    acc
}
pub fn vec_dot_q4_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ4K, BlockQ8K>(n, w, x);
    let blocks = wb.iter().map(|b| {
        let mut a = [0i8; QK_K];
        for (q, out) in b.qs.chunks_exact(32).zip(a.chunks_exact_mut(64)) {
            for l in 0..32 {
                out[l] = (q[l] & 0xF) as i8;
                out[l + 32] = (q[l] >> 4) as i8;
            }
        }
        (b.d, b.dmin, b.scales, a)
    });
    dot_k4(n, blocks, xb)
}

pub fn vec_dot_q5_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ5K, BlockQ8K>(n, w, x);
    let blocks = wb.iter().map(|b| {
        let mut a = [0i8; QK_K];
        let mut m = 1u8;
        for (q, out) in b.qs.chunks_exact(32).zip(a.chunks_exact_mut(64)) {
            for l in 0..32 {
                out[l] = ((q[l] & 0xF) + if b.qh[l] & m != 0 { 16 } else { 0 }) as i8;
                out[l + 32] = ((q[l] >> 4) + if b.qh[l] & (m << 1) != 0 { 16 } else { 0 }) as i8;
            }
            m <<= 2;
        }
        (b.d, b.dmin, b.scales, a)
    });
    dot_k4(n, blocks, xb)
}

pub fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ6K, BlockQ8K>(n, w, x);
    let mut acc = 0f32;
    for (b, yb) in wb.iter().zip(xb) {
        let a = q6_values(b);
        let isum = block_isum(&a, &yb.qs, 16, |g| b.scales[g] as i32);
        acc = k_step(acc, yb.d() * f16_le(b.d), isum, 0.0, 0);
    }
    acc
}
