//! Dense layers and layer normalisation: the building blocks of the CPU networks.

use ::gemm::Parallelism;

use super::gemm::{MatMut, MatRef, matmul};

/// A fully connected layer `y = x W^T + b`, with `weight` stored `fan_out x fan_in` as PyTorch
/// and safetensors store it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// `fan_out x fan_in`, row-major.
    pub weight: Vec<f32>,
    /// `fan_out` values.
    pub bias: Vec<f32>,
    /// Input width.
    pub fan_in: usize,
    /// Output width.
    pub fan_out: usize,
}

impl Dense {
    /// A layer; panics when the buffers do not have the stated shape (callers check shapes
    /// against the model's files first and report them as errors).
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, fan_in: usize, fan_out: usize) -> Self {
        assert_eq!(weight.len(), fan_in * fan_out, "weight shape");
        assert_eq!(bias.len(), fan_out, "bias shape");
        Self {
            weight,
            bias,
            fan_in,
            fan_out,
        }
    }

    /// `out = x W^T + b` for `x.len() / fan_in` rows: the bias is broadcast into `out` and the
    /// product accumulated onto it, so the bias costs no extra pass.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        let rows = x.len() / self.fan_in;
        let out = &mut out[..rows * self.fan_out];
        for row in out.chunks_exact_mut(self.fan_out) {
            row.copy_from_slice(&self.bias);
        }
        matmul(
            MatMut::row_major(out, rows, self.fan_out),
            MatRef::row_major(x, rows, self.fan_in),
            MatRef::row_major(&self.weight, self.fan_out, self.fan_in).t(),
            true,
            Parallelism::None,
        );
    }
}

/// Layer normalisation's learned scale and shift.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    /// Scale (gamma).
    pub weight: Vec<f32>,
    /// Shift (beta).
    pub bias: Vec<f32>,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// `x = norm(x + residual)` row by row, in one pass per row (the residual add is fused).
    pub fn forward_residual(&self, x: &mut [f32], residual: &[f32]) {
        super::vectorized(Rows {
            norm: self,
            x,
            residual: Some(residual),
        });
    }

    /// `x = norm(x)` row by row.
    pub fn forward(&self, x: &mut [f32]) {
        super::vectorized(Rows {
            norm: self,
            x,
            residual: None,
        });
    }
}

/// Layer normalisation over rows, as one vectorised operation.
struct Rows<'a> {
    norm: &'a LayerNorm,
    x: &'a mut [f32],
    residual: Option<&'a [f32]>,
}

impl pulp::WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let LayerNorm { weight, bias, eps } = self.norm;
        let width = weight.len();
        for (i, row) in self.x.chunks_exact_mut(width).enumerate() {
            if let Some(residual) = self.residual {
                row.iter_mut()
                    .zip(&residual[i * width..(i + 1) * width])
                    .for_each(|(v, r)| *v += r);
            }
            let n = width as f32;
            let mean = row.iter().sum::<f32>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_adds_the_bias_to_the_product() {
        // 2 inputs -> 3 outputs.
        let layer = Dense::new(
            vec![1.0, 2.0, 0.0, -1.0, 0.5, 0.5],
            vec![0.1, 0.2, 0.3],
            2,
            3,
        );
        let mut out = vec![0f32; 6];
        layer.forward(&[1.0, 1.0, 2.0, -4.0], &mut out);
        let want = [3.1, -0.8, 1.3, -5.9, 4.2, -0.7];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn layer_norm_of_the_sum() {
        let norm = LayerNorm {
            weight: vec![1.0, 2.0, 1.0, 1.0],
            bias: vec![0.0, 0.0, 1.0, 0.0],
            eps: 1e-12,
        };
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        norm.forward_residual(&mut x, &[1.0, 0.0, -1.0, 0.0]);
        // x + r = [2, 2, 2, 4]: mean 2.5, variance 0.75.
        let s = 0.75f32.sqrt();
        let want = [-0.5 / s, 2.0 * -0.5 / s, 1.0 - 0.5 / s, 1.5 / s];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{x:?} vs {want:?}");
        }
    }
}
