//! The top levels of compiled trees, walked eight rows per instruction on CPUs with AVX2.
//!
//! The scalar walk ([`Flat::walk`]) loads a node, then the row's feature, then decides, one row
//! at a time: it is bound by the micro-operations of each step. Here the first [`TOP`] levels
//! of every tree are laid out as a complete binary tree (node `h`'s children at `2h + 1` and
//! `2h + 2`; a leaf above the bottom passes every row to its left child, which stands for the
//! same leaf), so a level's thresholds and features are at most 32 values each: they sit in
//! vector registers, and eight rows pick theirs with a permute. Only the rows' feature values
//! are gathered, one instruction per level for eight rows. Deeper trees go on from the node each
//! row reached with the scalar walk.
//!
//! Single-precision rows, order tests only (no category sets, no "zero is missing" rule): that is
//! XGBoost's and most LightGBM models' case. The decisions are the scalar walk's, and leaves are
//! added in the same order, so margins are bit-identical.

use super::{DEFAULT_PASS, FEATURE, Flat, FlatNode, FlatTree};

/// Levels walked with vectors (a complete tree of this depth has 63 splits).
pub(super) const TOP: usize = 6;
/// Slots per tree: room for the `2^TOP - 1` splits of the top levels (one slot unused), and for
/// the `2^TOP` bottom slots.
const SLOTS: usize = 1 << TOP;
/// Groups of eight rows walked together, so the gathers of one group overlap the others'.
const GROUPS: usize = 16;
/// Rows walked together.
pub(super) const SPAN: usize = 8 * GROUPS;

/// The top levels of every tree, in complete-tree order.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Levels {
    /// Per tree, [`SLOTS`] thresholds of the top levels' splits (the last slot unused).
    thresholds: Vec<f32>,
    /// Per tree, the splits' feature bits, as [`FlatNode::feature`].
    features: Vec<u32>,
    /// Per tree, the node of the flat layout each bottom slot stands for.
    bottom: Vec<u32>,
    /// One more than the largest feature index any split reads (0 when none).
    reads: usize,
}

impl Levels {
    /// The top levels of `flat`'s trees. Only for a layout with order tests alone: category
    /// sets and the "zero is missing" rule are not expressed here.
    pub(super) fn new(flat: &Flat<f32>) -> Self {
        let trees = flat.trees.len();
        let mut levels = Self {
            thresholds: vec![f32::INFINITY; trees * SLOTS],
            features: vec![DEFAULT_PASS; trees * SLOTS],
            bottom: vec![0; trees * SLOTS],
            reads: 0,
        };
        for (t, tree) in flat.trees.iter().enumerate() {
            let top = top_levels(tree);
            let slots = t * SLOTS..(t + 1) * SLOTS;
            let mut table = Table {
                nodes: &flat.nodes,
                top,
                thresholds: &mut levels.thresholds[slots.clone()],
                features: &mut levels.features[slots.clone()],
                bottom: &mut levels.bottom[slots],
                reads: 0,
            };
            table.fill(0, 0, tree.root);
            levels.reads = levels.reads.max(table.reads);
        }
        levels
    }

    /// Adds every tree's leaf to the margins of the first rows of `x`, a multiple of [`SPAN`];
    /// returns how many rows that was (0 when the CPU has no AVX2, or the rows are too short
    /// for the model's features). The caller walks the rest.
    pub(super) fn walk(
        &self,
        flat: &Flat<f32>,
        x: &[f32],
        cols: usize,
        outputs: usize,
        margins: &mut [f64],
    ) -> usize {
        let rows = margins.len() / outputs.max(1);
        let fits = cols >= self.reads.max(1)
            && x.len() >= rows * cols
            && SPAN
                .checked_mul(cols)
                .is_some_and(|n| i32::try_from(n).is_ok());
        if !fits || rows < SPAN {
            return 0;
        }
        #[cfg(target_arch = "x86_64")]
        if available() {
            let done = rows - rows % SPAN;
            // SAFETY: the CPU has AVX2 (checked above).
            #[allow(unsafe_code)]
            unsafe {
                avx2::walk(self, flat, &x[..done * cols], cols, outputs, margins)
            };
            return done;
        }
        0
    }
}

/// The levels of `tree` walked here: its depth, at most [`TOP`].
fn top_levels(tree: &FlatTree) -> usize {
    (tree.depth as usize).min(TOP)
}

/// Whether this CPU runs the vector walk.
fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One tree's slots, filled from its flat nodes.
struct Table<'a> {
    nodes: &'a [FlatNode<f32>],
    top: usize,
    thresholds: &'a mut [f32],
    features: &'a mut [u32],
    bottom: &'a mut [u32],
    reads: usize,
}

impl Table<'_> {
    /// Fills slot `h` (at `level`) and its subtree from flat node `node`.
    fn fill(&mut self, h: usize, level: usize, node: u32) {
        if level == self.top {
            self.bottom[h + 1 - (1 << self.top)] = node;
            return;
        }
        let n = self.nodes[node as usize];
        // A leaf (its own first child, threshold +inf, missing values passing) passes every
        // row to its left child: both children stand for the leaf itself.
        let leaf = n.first == node;
        self.thresholds[h] = n.threshold;
        self.features[h] = n.feature;
        self.reads = self.reads.max((n.feature & FEATURE) as usize + 1);
        self.fill(2 * h + 1, level + 1, n.first);
        self.fill(2 * h + 2, level + 1, if leaf { node } else { n.first + 1 });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, __m256i, _CMP_LE_OQ, _CMP_UNORD_Q, _mm256_add_epi32, _mm256_and_si256,
        _mm256_blendv_ps, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_cmp_ps,
        _mm256_i32gather_ps, _mm256_loadu_ps, _mm256_mullo_epi32, _mm256_permutevar8x32_ps,
        _mm256_set1_epi32, _mm256_setr_epi32, _mm256_setzero_ps, _mm256_setzero_si256,
        _mm256_slli_epi32, _mm256_srai_epi32, _mm256_storeu_si256, _mm256_sub_epi32,
    };

    use super::{FEATURE, Flat, FlatTree, GROUPS, Levels, SLOTS, SPAN, top_levels};

    /// The value at local index `i` (per lane) of a level of `n` values (8, 16 or 32) held in
    /// `v`: permutes read an index's low three bits, blends pick the vector by the next two.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn pick(v: &[__m256; 4], i: __m256i, n: usize) -> __m256 {
        let a = _mm256_permutevar8x32_ps(v[0], i);
        if n == 8 {
            return a;
        }
        let b = _mm256_permutevar8x32_ps(v[1], i);
        let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(i));
        let ab = _mm256_blendv_ps(a, b, bit3);
        if n == 16 {
            return ab;
        }
        let c = _mm256_permutevar8x32_ps(v[2], i);
        let d = _mm256_permutevar8x32_ps(v[3], i);
        let cd = _mm256_blendv_ps(c, d, bit3);
        let bit4 = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(i));
        _mm256_blendv_ps(ab, cd, bit4)
    }

    /// A level's first slot and size: levels 0 to 2 share the first eight slots.
    fn level_slots(level: usize) -> (usize, usize) {
        match level {
            0..=2 => (0, 8),
            _ => ((1 << level) - 1, 1 << level),
        }
    }

    /// The values of slots `first..first + n` of `slots` (a tree's [`SLOTS`]), in vectors.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn load(slots: &[f32], first: usize, n: usize) -> [__m256; 4] {
        std::array::from_fn(|k| {
            if k * 8 < n {
                let eight = &slots[first + 8 * k..first + 8 * k + 8];
                // SAFETY: `eight` is eight values long, and the load is unaligned.
                #[allow(unsafe_code)]
                unsafe {
                    _mm256_loadu_ps(eight.as_ptr())
                }
            } else {
                _mm256_setzero_ps()
            }
        })
    }

    /// [`Levels::walk`] of rows `x` (a multiple of [`SPAN`] rows of `cols` values each).
    ///
    /// Calling it needs AVX2, which callers check (the call is `unsafe` outside code compiled
    /// for AVX2). Every memory access is checked: `x` holds whole rows of `cols` values, and
    /// `cols` covers every feature a split reads.
    #[target_feature(enable = "avx2")]
    pub(super) fn walk(
        levels: &Levels,
        flat: &Flat<f32>,
        x: &[f32],
        cols: usize,
        outputs: usize,
        margins: &mut [f64],
    ) {
        assert!(x.len().is_multiple_of(SPAN * cols) && cols >= levels.reads.max(1));
        let feature = _mm256_set1_epi32(FEATURE as i32);
        let two = _mm256_set1_epi32(2);
        // Each lane's row offset, within a group and then within the span.
        let lane = _mm256_mullo_epi32(
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            _mm256_set1_epi32(cols as i32),
        );
        let offsets: [__m256i; GROUPS] = std::array::from_fn(|g| {
            _mm256_add_epi32(lane, _mm256_set1_epi32((g * 8 * cols) as i32))
        });
        for (span, rows) in x.chunks_exact(SPAN * cols).enumerate() {
            let first_row = span * SPAN;
            for (t, tree) in flat.trees.iter().enumerate() {
                let top = top_levels(tree);
                let slots = t * SLOTS..(t + 1) * SLOTS;
                let thresholds = &levels.thresholds[slots.clone()];
                let features: &[f32] = bits_as_f32(&levels.features[slots.clone()]);
                let mut at = [_mm256_setzero_si256(); GROUPS];
                for level in 0..top {
                    let (first, n) = level_slots(level);
                    let tv = load(thresholds, first, n);
                    let fv = load(features, first, n);
                    let base = _mm256_set1_epi32(first as i32);
                    for (g, at) in at.iter_mut().enumerate() {
                        let i = _mm256_sub_epi32(*at, base);
                        let threshold = pick(&tv, i, n);
                        let bits = pick(&fv, i, n);
                        let index = _mm256_add_epi32(
                            offsets[g],
                            _mm256_and_si256(_mm256_castps_si256(bits), feature),
                        );
                        // SAFETY: every index is a row of this span (`offsets`: rows 0 to
                        // SPAN - 1, `cols` apart) plus a feature below `cols` (`reads`), inside
                        // `rows`, which holds SPAN rows of `cols` values; SPAN * cols fits in
                        // an i32 (checked by the caller).
                        #[allow(unsafe_code)]
                        let v = unsafe { _mm256_i32gather_ps::<4>(rows.as_ptr(), index) };
                        let le = _mm256_cmp_ps::<_CMP_LE_OQ>(v, threshold);
                        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
                        // A missing value takes the split's default: DEFAULT_PASS is the
                        // feature bits' sign bit.
                        let passes = _mm256_blendv_ps(le, bits, nan);
                        let passes = _mm256_srai_epi32::<31>(_mm256_castps_si256(passes));
                        // Children of h: 2h + 1 when the test passes (passes = -1), else 2h + 2.
                        *at = _mm256_add_epi32(
                            _mm256_add_epi32(*at, *at),
                            _mm256_add_epi32(two, passes),
                        );
                    }
                }
                finish(
                    levels,
                    flat,
                    tree,
                    t,
                    &at,
                    rows,
                    cols,
                    outputs,
                    &mut margins[first_row * outputs..],
                );
            }
        }
    }

    /// Takes each row from the bottom slot it reached to its leaf (the scalar walk, for trees
    /// deeper than the top levels) and adds the leaf to its margin.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    #[inline]
    fn finish(
        levels: &Levels,
        flat: &Flat<f32>,
        tree: &FlatTree,
        t: usize,
        at: &[__m256i; GROUPS],
        rows: &[f32],
        cols: usize,
        outputs: usize,
        margins: &mut [f64],
    ) {
        let top = top_levels(tree);
        let bottom = &levels.bottom[t * SLOTS..(t + 1) * SLOTS];
        let steps = tree.depth as usize - top;
        let out = tree.output as usize;
        for (g, at) in at.iter().enumerate() {
            let mut slots = [0i32; 8];
            // SAFETY: `slots` is eight i32 long, and the store is unaligned.
            #[allow(unsafe_code)]
            unsafe {
                _mm256_storeu_si256(slots.as_mut_ptr().cast::<__m256i>(), *at)
            };
            let start = slots.map(|h| bottom[h as usize + 1 - (1 << top)]);
            let leaves = flat.walk_from::<8, false, false>(start, steps, rows, g * 8, cols);
            for (lane, leaf) in leaves.iter().enumerate() {
                margins[(g * 8 + lane) * outputs + out] += flat.values[*leaf as usize];
            }
        }
    }

    /// The feature bits as the `f32` lanes the permutes move (the same bits).
    fn bits_as_f32(bits: &[u32]) -> &[f32] {
        // SAFETY: u32 and f32 have the same size and alignment, and every bit pattern is a
        // valid f32; the values are only moved, never computed with.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(bits.as_ptr().cast::<f32>(), bits.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::compiled::Compiled;
    use crate::runtime::compiled::tests::{Lcg, random_ensemble};
    use crate::runtime::trees::{Missing, Node};

    #[test]
    fn the_vector_walk_adds_the_scalar_walks_leaves_bit_for_bit() {
        let mut rng = Lcg(11);
        // Unbalanced trees of depth 3 to 11: leaves above the bottom of the top levels, and
        // rows that go on below them, some to the bottom and some not.
        let mut e = random_ensemble(&mut rng, 60, 3..=11, 9, 2, false);
        // LightGBM's "zero is missing" rule keeps a model on the scalar walk.
        for node in &mut e.nodes {
            if let Node::Split { missing, .. } = node
                && *missing == Missing::NanOrZero
            {
                *missing = Missing::Nan;
            }
        }
        let compiled = Compiled::try_from_ensemble(&e).expect("order tests compile");
        let flat = &compiled.narrow;
        let levels = compiled
            .levels
            .as_ref()
            .expect("order tests have top levels");
        assert!(flat.trees.iter().any(|t| t.depth as usize > TOP));
        assert!(flat.trees.iter().any(|t| (t.depth as usize) < TOP));
        let rows = 2 * SPAN + 5;
        let x: Vec<f32> = (0..rows * 9)
            .map(|_| match rng.next() % 10 {
                0 => f32::NAN,
                1 => -0.0,
                2 => f32::INFINITY,
                3 => ((rng.next() % 9) as f32 / 4.0 - 1.0).next_up(),
                _ => (rng.next() % 9) as f32 / 4.0 - 1.0,
            })
            .collect();
        let mut scalar = vec![0f64; rows * 2];
        flat.walk::<false, false>(&x, 9, 2, &mut scalar);
        let mut vector = vec![0f64; rows * 2];
        let done = levels.walk(flat, &x, 9, 2, &mut vector);
        if available() {
            assert_eq!(done, 2 * SPAN);
        }
        assert_eq!(vector[..done * 2], scalar[..done * 2]);
        // Rows shorter than the features the splits read are left to the scalar walk.
        assert_eq!(
            levels.walk(flat, &x[..rows * 3], 3, 2, &mut vector[..rows * 2]),
            0
        );
    }
}
