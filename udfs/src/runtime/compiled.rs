//! A branch-free layout of a tree ensemble, for fast scoring on CPU.
//!
//! [`Ensemble`]'s node array is general (any comparison, category sets, leaves with several
//! contributions) and walked with a branch per node, which the CPU mispredicts about half the
//! time on real data. When an ensemble only has order tests and category sets and one
//! contribution per leaf (XGBoost, LightGBM, most ONNX ensembles), it is compiled here:
//!
//! - every split becomes `x <= threshold` (a `<` test moves the threshold one float down; a `>`
//!   or `>=` test also swaps the children), with the direction of missing values folded into one
//!   bit, so a step is one comparison and a little bit arithmetic;
//! - a category split (LightGBM's bitsets) is a bit test on the value's integer category, taken
//!   out of line behind a branch that the CPU predicts well (category splits are few), so an
//!   ensemble with category splits keeps the layout instead of falling back to the general walk
//!   (only such ensembles pay for the check);
//! - each node's children are adjacent: the next node is `first + (the test failed)`, with no
//!   branch; leaves point to themselves, so every tree is walked exactly its depth in steps;
//! - [`LANES`] rows walk the same tree together, so the CPU overlaps their independent chains of
//!   loads, in blocks of [`BLOCK_ROWS`] whose features stay in L1 while all trees go by;
//! - when every feature value is a single-precision float (Parquet `FLOAT` columns, and always
//!   for XGBoost, which compares in single precision), thresholds and features are `f32`: the
//!   threshold is rounded to the float that gives every `f32` input the same answer as the
//!   double-precision test, so results do not change, and the data is half the size. The feature
//!   gather knows the column types ([`crate::features::Precision::Splits`]) and hands such rows
//!   over as `f32` directly; `f64` rows are checked here.
//!
//! Predictions are bit-identical to [`Ensemble::accumulate`]'s: the same decisions, the leaves
//! added in the same order in double precision.

use crate::runtime::trees::{Cond, Ensemble, Missing, Node};

mod levels;

use levels::Levels;

/// Rows walked through a tree together.
pub const LANES: usize = 8;
/// Rows whose features stay in cache while every tree is applied.
pub const BLOCK_ROWS: usize = 64;

/// Feature bits of [`FlatNode::feature`].
const FEATURE: u32 = (1 << 29) - 1;
/// A category split: the threshold's bits are an index into [`Flat::sets`].
const SET: u32 = 1 << 29;
/// Missing values (and zeros, under [`ZERO_MISSING`]) pass the test.
const DEFAULT_PASS: u32 = 1 << 31;
/// Values within 1e-35 of zero are missing (LightGBM's missing type "Zero").
const ZERO_MISSING: u32 = 1 << 30;

/// A threshold and feature type: `f32` or `f64`.
pub trait Value: Copy + PartialOrd + std::fmt::Debug + Send + Sync {
    /// Whether the value is NaN.
    fn nan(self) -> bool;
    /// The value in double precision (exact).
    fn wide(self) -> f64;
    /// A value whose bits hold `index` (a category split's set, in place of a threshold).
    fn from_index(index: u32) -> Self;
    /// The index [`Value::from_index`] stored.
    fn index(self) -> u32;

    /// Whether `|value| <= 1e-35`, in double precision as the general walk tests it.
    #[inline(always)]
    fn near_zero(self) -> bool {
        self.wide().abs() <= 1e-35
    }
    /// Whether the value is below zero.
    #[inline(always)]
    fn negative(self) -> bool {
        self.wide() < 0.0
    }
    /// The integer category of a value that is not negative or NaN (truncated, saturating).
    #[inline(always)]
    fn category(self) -> u64 {
        self.wide() as u64
    }
}

impl Value for f32 {
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        f64::from(self)
    }
    fn from_index(index: u32) -> Self {
        f32::from_bits(index)
    }
    #[inline(always)]
    fn index(self) -> u32 {
        self.to_bits()
    }
}

impl Value for f64 {
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    fn from_index(index: u32) -> Self {
        f64::from_bits(u64::from(index))
    }
    #[inline(always)]
    fn index(self) -> u32 {
        self.to_bits() as u32
    }
}

/// A node: the row goes to `first` when `x <= threshold` passes, else to `first + 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatNode<T> {
    threshold: T,
    /// The feature index, with [`DEFAULT_PASS`] and [`ZERO_MISSING`] in the top bits.
    feature: u32,
    first: u32,
}

/// One tree: its nodes start at `root`, it adds to margin `output`, and a walk of `depth` steps
/// reaches a leaf from the root.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatTree {
    root: u32,
    depth: u32,
    output: u32,
}

/// A category set: `len` words of [`Flat::bitsets`] from `start`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Set {
    start: u32,
    len: u32,
}

/// The trees in one precision.
#[derive(Debug, Clone, PartialEq)]
struct Flat<T> {
    nodes: Vec<FlatNode<T>>,
    /// The value of each node that is a leaf (0 for splits), indexed like `nodes`.
    values: Vec<f64>,
    trees: Vec<FlatTree>,
    /// Whether any node treats zeros as missing.
    zero_missing: bool,
    /// Whether any node is a category split.
    category_splits: bool,
    /// The category sets; the first is empty (for empty sets).
    sets: Vec<Set>,
    /// The sets' words.
    bitsets: Vec<u32>,
}

/// The compiled ensemble, in both precisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    narrow: Flat<f32>,
    wide: Flat<f64>,
    /// The narrow trees' top levels, for the vector walk (order tests only).
    levels: Option<Levels>,
    round_to_f32: bool,
}

/// The largest `f32` not above `v`.
fn down_f32(v: f64) -> f32 {
    let a = v as f32;
    if f64::from(a) > v { a.next_down() } else { a }
}

/// A split in the `x <= threshold` form: the threshold (`<` moved one value down, in the
/// precision the test runs in) and whether the children swap.
fn normalize(cond: Cond, threshold: f64) -> Option<(f64, f32, bool)> {
    // x < t  <=>  x <= (the largest value below t), in either precision.
    let below = |t: f64| {
        let narrow = down_f32(t);
        let narrow = if f64::from(narrow) == t {
            narrow.next_down()
        } else {
            narrow
        };
        (t.next_down(), narrow)
    };
    let at = |t: f64| (t, down_f32(t));
    Some(match cond {
        Cond::Le => (at(threshold).0, at(threshold).1, false),
        Cond::Lt => (below(threshold).0, below(threshold).1, false),
        // x > t  <=>  !(x <= t): the test holds on the second child.
        Cond::Gt => (at(threshold).0, at(threshold).1, true),
        // x >= t  <=>  !(x < t).
        Cond::Ge => (below(threshold).0, below(threshold).1, true),
        Cond::Eq | Cond::Ne | Cond::InSet { .. } => return None,
    })
}

impl Compiled {
    /// Compiles `e`, or `None` when it has a split or leaf this layout cannot express (equality
    /// tests, leaves with several contributions, averaged forests).
    pub fn try_from_ensemble(e: &Ensemble) -> Option<Self> {
        if e.average || e.features > FEATURE as usize {
            return None;
        }
        let mut narrow = Flat::<f32>::with_capacity(e);
        let mut wide = Flat::<f64>::with_capacity(e);
        for &root in &e.roots {
            let start = wide.nodes.len() as u32;
            narrow.push_placeholder();
            wide.push_placeholder();
            let mut output = None;
            let mut depth = 0u32;
            // (node in `e`, its slot, its depth)
            let mut stack = vec![(root, start, 0u32)];
            while let Some((source, slot, d)) = stack.pop() {
                depth = depth.max(d);
                let slot_index = slot as usize;
                match *e.nodes.get(source as usize)? {
                    Node::Leaf { start: first, len } => {
                        if len != 1 {
                            return None;
                        }
                        let (o, value) = e.leaf_values[first as usize];
                        if output.is_some_and(|seen| seen != o) {
                            return None;
                        }
                        output = Some(o);
                        // Every value, NaN included, stays here.
                        narrow.nodes[slot_index] = FlatNode {
                            threshold: f32::INFINITY,
                            feature: DEFAULT_PASS,
                            first: slot,
                        };
                        wide.nodes[slot_index] = FlatNode {
                            threshold: f64::INFINITY,
                            feature: DEFAULT_PASS,
                            first: slot,
                        };
                        narrow.values[slot_index] = value;
                        wide.values[slot_index] = value;
                    }
                    Node::Split {
                        feature,
                        cond: Cond::InSet { start, len },
                        missing,
                        default_left,
                        left,
                        right,
                        ..
                    } => {
                        let words = e
                            .bitsets
                            .get(start as usize..(start as usize + len as usize))?;
                        // A NaN compared as 0 goes where the category 0 goes.
                        let zero_in_set = words.first().is_some_and(|w| w & 1 == 1);
                        let default_pass = match missing {
                            Missing::NanAsZero => zero_in_set,
                            Missing::Nan | Missing::NanOrZero => default_left,
                        };
                        let zero = if missing == Missing::NanOrZero {
                            ZERO_MISSING
                        } else {
                            0
                        };
                        let bits =
                            feature | SET | zero | if default_pass { DEFAULT_PASS } else { 0 };
                        let set = narrow.push_set(words);
                        wide.push_set(words);
                        let first = place_split(
                            (&mut narrow, &mut wide),
                            slot_index,
                            (f32::from_index(set), f64::from_index(set)),
                            (bits, bits),
                            missing == Missing::NanOrZero,
                        );
                        stack.push((right, first + 1, d + 1));
                        stack.push((left, first, d + 1));
                    }
                    Node::Split {
                        feature,
                        threshold,
                        cond,
                        missing,
                        default_left,
                        left,
                        right,
                    } => {
                        let (t_wide, t_narrow, swap) = normalize(cond, threshold)?;
                        let (pass, fail) = if swap { (right, left) } else { (left, right) };
                        let bits = |zero_as_value_passes: bool| -> u32 {
                            let default_pass = match missing {
                                // NaN is compared as 0.
                                Missing::NanAsZero => zero_as_value_passes,
                                Missing::Nan | Missing::NanOrZero => default_left != swap,
                            };
                            let zero = if missing == Missing::NanOrZero {
                                ZERO_MISSING
                            } else {
                                0
                            };
                            feature | zero | if default_pass { DEFAULT_PASS } else { 0 }
                        };
                        let first = place_split(
                            (&mut narrow, &mut wide),
                            slot_index,
                            (t_narrow, t_wide),
                            (bits(0.0 <= t_narrow), bits(0.0 <= t_wide)),
                            missing == Missing::NanOrZero,
                        );
                        stack.push((fail, first + 1, d + 1));
                        stack.push((pass, first, d + 1));
                    }
                }
                // A corrupt model with a cycle would never finish: a tree can never have more
                // nodes than the whole ensemble.
                if wide.nodes.len() > 2 * e.nodes.len() + 1 {
                    return None;
                }
            }
            let tree = FlatTree {
                root: start,
                depth,
                output: output.unwrap_or(0),
            };
            narrow.trees.push(tree);
            wide.trees.push(tree);
        }
        let levels =
            (!narrow.zero_missing && !narrow.category_splits).then(|| Levels::new(&narrow));
        Some(Self {
            narrow,
            wide,
            levels,
            round_to_f32: e.round_to_f32,
        })
    }

    /// Adds every tree's leaf to the margins of `rows` rows (`features` row-major, `cols` wide;
    /// `margins` row-major, `outputs` wide).
    pub fn accumulate_f64(
        &self,
        features: &[f64],
        cols: usize,
        outputs: usize,
        margins: &mut [f64],
    ) {
        let single = self.round_to_f32
            || features.iter().fold(true, |all, x| {
                all & (f64::from(*x as f32) == *x || x.is_nan())
            });
        if single {
            let narrow: Vec<f32> = features.iter().map(|x| *x as f32).collect();
            self.accumulate_f32(&narrow, cols, outputs, margins);
        } else {
            self.wide.accumulate(features, cols, outputs, margins);
        }
    }

    /// [`Compiled::accumulate_f64`] of single-precision rows: the `f32` walk, with no check or
    /// copy; the vector walk of the top levels first, where the CPU and the splits allow it.
    pub fn accumulate_f32(
        &self,
        features: &[f32],
        cols: usize,
        outputs: usize,
        margins: &mut [f64],
    ) {
        let done = self.levels.as_ref().map_or(0, |levels| {
            levels.walk(&self.narrow, features, cols, outputs, margins)
        });
        self.narrow.accumulate(
            &features[done * cols..],
            cols,
            outputs,
            &mut margins[done * outputs..],
        );
    }
}

/// Puts a split at `slot` in both precisions (threshold and feature bits in each), with its two
/// children's slots after every node so far; returns the first child's slot.
fn place_split(
    (narrow, wide): (&mut Flat<f32>, &mut Flat<f64>),
    slot: usize,
    (t_narrow, t_wide): (f32, f64),
    (f_narrow, f_wide): (u32, u32),
    zero_missing: bool,
) -> u32 {
    let first = wide.nodes.len() as u32;
    for _ in 0..2 {
        narrow.push_placeholder();
        wide.push_placeholder();
    }
    narrow.nodes[slot] = FlatNode {
        threshold: t_narrow,
        feature: f_narrow,
        first,
    };
    wide.nodes[slot] = FlatNode {
        threshold: t_wide,
        feature: f_wide,
        first,
    };
    narrow.zero_missing |= zero_missing;
    wide.zero_missing |= zero_missing;
    first
}

impl<T: Value> Flat<T> {
    fn with_capacity(e: &Ensemble) -> Self {
        Self {
            nodes: Vec::with_capacity(e.nodes.len()),
            values: Vec::with_capacity(e.nodes.len()),
            trees: Vec::with_capacity(e.roots.len()),
            zero_missing: false,
            category_splits: false,
            sets: vec![Set { start: 0, len: 0 }],
            bitsets: vec![0],
        }
    }

    /// Adds a category set of `words`, returning its index (0, the empty set, for no words).
    fn push_set(&mut self, words: &[u32]) -> u32 {
        self.category_splits = true;
        if words.is_empty() {
            return 0;
        }
        self.sets.push(Set {
            start: self.bitsets.len() as u32,
            len: words.len() as u32,
        });
        self.bitsets.extend_from_slice(words);
        (self.sets.len() - 1) as u32
    }

    fn push_placeholder(&mut self)
    where
        T: Default,
    {
        self.nodes.push(FlatNode {
            threshold: T::default(),
            feature: 0,
            first: 0,
        });
        self.values.push(0.0);
    }

    fn accumulate(&self, x: &[T], cols: usize, outputs: usize, margins: &mut [f64]) {
        match (self.zero_missing, self.category_splits) {
            (false, false) => self.walk::<false, false>(x, cols, outputs, margins),
            (true, false) => self.walk::<true, false>(x, cols, outputs, margins),
            (false, true) => self.walk::<false, true>(x, cols, outputs, margins),
            (true, true) => self.walk::<true, true>(x, cols, outputs, margins),
        }
    }

    fn walk<const ZERO: bool, const SETS: bool>(
        &self,
        x: &[T],
        cols: usize,
        outputs: usize,
        margins: &mut [f64],
    ) {
        let rows = margins.len() / outputs.max(1);
        for block in (0..rows).step_by(BLOCK_ROWS) {
            let end = (block + BLOCK_ROWS).min(rows);
            for tree in &self.trees {
                let out = tree.output as usize;
                let mut r = block;
                while r + LANES <= end {
                    let leaves = self.walk_lanes::<LANES, ZERO, SETS>(tree, x, r, cols);
                    for (lane, leaf) in leaves.iter().enumerate() {
                        margins[(r + lane) * outputs + out] += self.values[*leaf as usize];
                    }
                    r += LANES;
                }
                while r < end {
                    let [leaf] = self.walk_lanes::<1, ZERO, SETS>(tree, x, r, cols);
                    margins[r * outputs + out] += self.values[leaf as usize];
                    r += 1;
                }
            }
        }
    }

    /// Whether `v`'s category is in set `set`. Out of the walk's line: category splits are a
    /// small share of the nodes (6% in the harness' categorical LightGBM model), so a branch
    /// predicted "order test" costs less than computing both tests at every node (that model's
    /// 10M-row job took 63.4 s that way, 25.4 s this way).
    #[cold]
    #[inline(never)]
    fn in_set(&self, set: u32, v: T) -> bool {
        let Some(set) = self.sets.get(set as usize) else {
            return false;
        };
        let category = v.category();
        let word = category / 32;
        !v.negative()
            && word < u64::from(set.len)
            && (self.bitsets[(set.start as u64 + word) as usize] >> (category % 32)) & 1 == 1
    }

    /// Walks rows `r..r + L` through `tree`, returning the leaf each reaches.
    #[inline(always)]
    fn walk_lanes<const L: usize, const ZERO: bool, const SETS: bool>(
        &self,
        tree: &FlatTree,
        x: &[T],
        r: usize,
        cols: usize,
    ) -> [u32; L] {
        self.walk_from::<L, ZERO, SETS>([tree.root; L], tree.depth as usize, x, r, cols)
    }

    /// Walks rows `r..r + L` `steps` levels down from nodes `at`, returning the nodes reached;
    /// stops early once a step moves no row (a leaf keeps every row, a split moves all of its
    /// rows: every row is at its leaf).
    #[inline(always)]
    fn walk_from<const L: usize, const ZERO: bool, const SETS: bool>(
        &self,
        mut at: [u32; L],
        steps: usize,
        x: &[T],
        r: usize,
        cols: usize,
    ) -> [u32; L] {
        let rows: [&[T]; L] =
            std::array::from_fn(|lane| &x[(r + lane) * cols..(r + lane + 1) * cols]);
        for _ in 0..steps {
            let before = at;
            for lane in 0..L {
                let n = self.nodes[at[lane] as usize];
                let v = rows[lane][(n.feature & FEATURE) as usize];
                let missing = if ZERO {
                    v.nan() | ((n.feature & ZERO_MISSING != 0) & v.near_zero())
                } else {
                    v.nan()
                };
                let test = if SETS && n.feature & SET != 0 {
                    self.in_set(n.threshold.index(), v)
                } else {
                    v <= n.threshold
                };
                let passes = if missing {
                    n.feature & DEFAULT_PASS != 0
                } else {
                    test
                };
                at[lane] = n.first + u32::from(!passes);
            }
            if at == before {
                break;
            }
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::trees::Transform;

    /// A deterministic pseudo-random generator, so the test needs no extra crate.
    pub(super) struct Lcg(pub(super) u64);
    impl Lcg {
        pub(super) fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn unit(&mut self) -> f64 {
            self.next() as f64 / (1u64 << 31) as f64
        }
    }

    /// A random ensemble of unbalanced trees mixing every numeric test, category sets (when
    /// `sets`) and every missing rule; each tree's depth is at most one drawn from `depths`.
    pub(super) fn random_ensemble(
        rng: &mut Lcg,
        trees: usize,
        depths: std::ops::RangeInclusive<u32>,
        features: usize,
        outputs: usize,
        sets: bool,
    ) -> Ensemble {
        let mut e = Ensemble {
            outputs,
            base: vec![0.0; outputs],
            transform: Transform::Identity,
            features,
            ..Default::default()
        };
        fn grow(e: &mut Ensemble, rng: &mut Lcg, depth: u32, output: u32, sets: bool) -> u32 {
            if depth == 0 || rng.next().is_multiple_of(5) {
                let v = rng.unit() - 0.5;
                return e.push_leaf(&[(output, v)]);
            }
            let left = grow(e, rng, depth - 1, output, sets);
            let right = grow(e, rng, depth - 1, output, sets);
            let cond = if sets && rng.next().is_multiple_of(3) {
                // Sets of 0 to 2 words: categories up to 63, the values' grid (scaled) and
                // beyond.
                let start = e.bitsets.len() as u32;
                let len = (rng.next() % 3) as u32;
                for _ in 0..len {
                    e.bitsets
                        .push(rng.next() as u32 ^ ((rng.next() as u32) << 16));
                }
                Cond::InSet { start, len }
            } else {
                [Cond::Lt, Cond::Le, Cond::Gt, Cond::Ge][(rng.next() % 4) as usize]
            };
            let missing =
                [Missing::Nan, Missing::NanAsZero, Missing::NanOrZero][(rng.next() % 3) as usize];
            // Thresholds on a coarse grid, so that ties with the features happen.
            let threshold = (rng.next() % 9) as f64 / 4.0 - 1.0;
            e.nodes.push(Node::Split {
                feature: (rng.next() % e.features as u64) as u32,
                threshold,
                cond,
                missing,
                default_left: rng.next().is_multiple_of(2),
                left,
                right,
            });
            (e.nodes.len() - 1) as u32
        }
        for t in 0..trees {
            let span = u64::from(depths.end() - depths.start() + 1);
            let depth = depths.start() + (rng.next() % span) as u32;
            let root = grow(&mut e, rng, depth, (t % outputs) as u32, sets);
            e.roots.push(root);
        }
        e
    }

    #[test]
    fn compiled_margins_equal_the_general_walk_bit_for_bit() {
        let mut rng = Lcg(7);
        // (XGBoost's single-precision rule, outputs, features exact in f32, category sets): the
        // cases with inexact features and no rounding take the double-precision path.
        for (round_to_f32, outputs, exact, sets) in [
            (false, 1, true, false),
            (true, 3, false, false),
            (false, 2, false, false),
            (false, 1, true, true),
            (false, 2, false, true),
            (true, 1, false, true),
        ] {
            let mut e = random_ensemble(&mut rng, 40, 7..=7, 5, outputs, sets);
            e.round_to_f32 = round_to_f32;
            e.validate("random").expect("valid");
            let compiled = Compiled::try_from_ensemble(&e).expect("numeric splits compile");
            let rows = 301;
            // Values on and next to the thresholds' grid, in both precisions, with NaN and zeros.
            let nudge = if exact { f64::from(0.1f32) } else { 0.1 };
            let features: Vec<f64> = (0..rows * 5)
                .map(|_| match rng.next() % 12 {
                    0 => f64::NAN,
                    1 => 0.0,
                    2 => -0.0,
                    3 => 1e-36,
                    // Above 1e-35 by a little: not missing under LightGBM's "Zero" rule.
                    8 => f64::from(1e-35f32),
                    4 => ((rng.next() % 9) as f64 / 4.0 - 1.0).next_up(),
                    // Categories: small integers, fractions, beyond every set, huge.
                    5 if sets => (rng.next() % 70) as f64,
                    6 if sets => (rng.next() % 70) as f64 + 0.5,
                    7 if sets => 1e20,
                    _ => {
                        (rng.next() % 9) as f64 / 4.0 - 1.0
                            + if rng.next().is_multiple_of(2) {
                                0.0
                            } else {
                                nudge
                            }
                    }
                })
                .map(|v: f64| if exact { f64::from(v as f32) } else { v })
                .collect();
            let mut want = vec![0f64; rows * outputs];
            let mut counts = vec![0u32; outputs];
            for r in 0..rows {
                e.accumulate(
                    &features[r * 5..(r + 1) * 5],
                    &mut want[r * outputs..(r + 1) * outputs],
                    &mut counts,
                );
            }
            let mut got = vec![0f64; rows * outputs];
            compiled.accumulate_f64(&features, 5, outputs, &mut got);
            assert_eq!(got, want);
            if exact {
                // The same rows handed over in single precision, as the gather does for
                // `Float32` columns.
                let narrow: Vec<f32> = features.iter().map(|x| *x as f32).collect();
                let mut got = vec![0f64; rows * outputs];
                compiled.accumulate_f32(&narrow, 5, outputs, &mut got);
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn equality_tests_and_averaged_forests_are_not_compiled() {
        let mut e = Ensemble {
            outputs: 1,
            base: vec![0.0],
            features: 1,
            bitsets: vec![1],
            ..Default::default()
        };
        let a = e.push_leaf(&[(0, 1.0)]);
        let b = e.push_leaf(&[(0, 2.0)]);
        e.nodes.push(Node::Split {
            feature: 0,
            threshold: 0.0,
            cond: Cond::InSet { start: 0, len: 1 },
            missing: Missing::Nan,
            default_left: false,
            left: a,
            right: b,
        });
        e.roots.push(2);
        assert!(Compiled::try_from_ensemble(&e).is_some());
        let Node::Split { cond, .. } = &mut e.nodes[2] else {
            unreachable!("node 2 is the split")
        };
        *cond = Cond::Eq;
        assert!(Compiled::try_from_ensemble(&e).is_none());
        e.nodes[2] = Node::Split {
            feature: 0,
            threshold: 0.0,
            cond: Cond::Lt,
            missing: Missing::Nan,
            default_left: false,
            left: a,
            right: b,
        };
        assert!(Compiled::try_from_ensemble(&e).is_some());
        e.average = true;
        assert!(Compiled::try_from_ensemble(&e).is_none());
    }
}
