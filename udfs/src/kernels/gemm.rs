//! A safe single-precision matrix multiply over the `gemm` crate.
//!
//! [`MatRef`] and [`MatMut`] are strided views over slices; their constructors check that every
//! element they can address is inside the slice, which is what makes the one `unsafe` call below
//! sound.

use ::gemm::Parallelism;

/// A read-only `rows x cols` view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A mutable `rows x cols` view, laid out like [`MatRef`].
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Panics unless a strided view of this shape stays inside a slice of `len` elements.
fn assert_fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) {
    let fits = rows == 0
        || cols == 0
        || (rows - 1)
            .checked_mul(row_stride)
            .and_then(|a| (cols - 1).checked_mul(col_stride).map(|b| (a, b)))
            .and_then(|(a, b)| a.checked_add(b))
            .is_some_and(|last| last < len);
    assert!(
        fits,
        "a {rows}x{cols} view with strides ({row_stride}, {col_stride}) does not fit in {len} values"
    );
}

impl<'a> MatRef<'a> {
    /// A strided view. Panics when the view would reach outside `data`: callers derive the
    /// shapes from the same numbers they sized the buffers with, so a mismatch is a bug.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert_fits(data.len(), rows, cols, row_stride, col_stride);
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A dense row-major matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

impl<'a> MatMut<'a> {
    /// A strided view; panics like [`MatRef::new`].
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert_fits(data.len(), rows, cols, row_stride, col_stride);
        let distinct = match (rows > 1, cols > 1) {
            (false, false) => true,
            (false, true) => col_stride >= 1,
            (true, false) => row_stride >= 1,
            (true, true) => {
                (col_stride >= 1 && row_stride >= cols * col_stride)
                    || (row_stride >= 1 && col_stride >= rows * row_stride)
            }
        };
        assert!(distinct, "a destination's elements must not overlap");
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A dense row-major matrix.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }
}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate`.
///
/// Panics when the shapes do not chain (`lhs` is `m x k`, `rhs` `k x n`, `dst` `m x n`).
pub fn matmul(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    parallelism: Parallelism,
) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "cannot multiply {}x{} by {}x{} into {m}x{n}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.row_stride + j * dst.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    let stride = |s: usize| isize::try_from(s).expect("a view's stride fits in isize");
    // SAFETY: every view was checked at construction to address only elements inside its slice
    // (`fits`), the shapes were checked to chain above, the destination is borrowed mutably (so
    // it cannot alias an input) and its elements do not overlap (checked in `MatMut::new`).
    #[allow(unsafe_code)]
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            stride(dst.col_stride),
            stride(dst.row_stride),
            accumulate,
            lhs.data.as_ptr(),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr(),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_naive_product_with_transposes_and_accumulation() {
        let (m, n, k) = (37, 19, 53);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let want = naive(&a, &b, m, n, k);
        let mut c = vec![0f32; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            false,
            Parallelism::None,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
        // b stored transposed (n x k), read through a transposed view; accumulate onto c.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        matmul(
            MatMut::row_major(&mut c, m, n),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&bt, n, k).t(),
            true,
            Parallelism::None,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-4, "{x} vs {}", 2.0 * y);
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_view_outside_its_slice_is_refused() {
        let data = vec![0f32; 10];
        let _ = MatRef::new(&data, 3, 4, 4, 1);
    }
}
