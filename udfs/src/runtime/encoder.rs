//! A BERT-family encoder on CPU, written for batch scoring.
//!
//! candle's BERT pads every sequence of a batch to the longest one and runs each element-wise
//! step as its own pass. Here the sequences of a chunk are packed end to end with no padding:
//! the dense layers (where nearly all the arithmetic is) run once over all the chunk's tokens,
//! attention runs per sequence and head on exactly its tokens (so no mask is needed), bias and
//! activation ride on each matrix multiply, and the residual add is fused into layer
//! normalisation. The attention scale is folded into the query weights when the model loads.

use std::collections::HashMap;

use ::gemm::Parallelism;
use candle_core::{DType, Tensor};

use crate::kernels::dense::{Dense, LayerNorm};
use crate::kernels::gemm::{MatMut, MatRef, matmul};
use crate::kernels::math;

/// Tokens whose hidden states go through the dense layers together.
pub const CHUNK_TOKENS: usize = 512;

/// The hidden activation of the feed-forward layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HiddenAct {
    /// GELU, erf form (`"gelu"`).
    Gelu,
    /// GELU, tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// ReLU.
    Relu,
}

impl HiddenAct {
    fn apply(self, values: &mut [f32]) {
        match self {
            HiddenAct::Gelu => math::map_in_place::<math::Gelu>(values),
            HiddenAct::GeluTanh => math::map_in_place::<math::GeluTanh>(values),
            HiddenAct::Relu => math::map_in_place::<math::Relu>(values),
        }
    }
}

/// The shape of the encoder, from its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderShape {
    /// Width of the hidden states.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Positions the model has embeddings for.
    pub max_positions: usize,
    /// Token types the model has embeddings for.
    pub token_types: usize,
    /// Tokens in the vocabulary.
    pub vocab: usize,
    /// Layer normalisation's epsilon.
    pub eps: f32,
    /// Feed-forward activation.
    pub act: HiddenAct,
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value projections in one `3 hidden x hidden` layer.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    up: Dense,
    down: Dense,
    output_norm: LayerNorm,
}

/// The encoder's weights.
#[derive(Debug)]
pub struct Encoder {
    shape: EncoderShape,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// One tokenised sequence.
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    /// Token ids.
    pub ids: &'a [u32],
    /// Token type ids, as long as `ids`.
    pub types: &'a [u32],
}

/// Scratch buffers for one chunk, reused across chunks.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
}

impl Encoder {
    /// Builds the encoder from safetensors tensors (names as Hugging Face BERT checkpoints use
    /// them, with or without a `bert.` prefix). Errors name the missing or misshapen tensor.
    pub fn try_from_tensors(
        shape: EncoderShape,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self, String> {
        let prefix = ["", "bert.", "model."]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or("tensor `embeddings.word_embeddings.weight` is missing")?;
        let get = |name: &str, dims: &[usize]| -> Result<Vec<f32>, String> {
            let key = format!("{prefix}{name}");
            let t = tensors
                .get(&key)
                .ok_or_else(|| format!("tensor `{key}` is missing"))?;
            if t.dims() != dims {
                return Err(format!(
                    "tensor `{key}` has shape {:?}, expected {dims:?}",
                    t.dims()
                ));
            }
            t.to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| format!("tensor `{key}`: {e}"))
        };
        // LayerNorm parameters are `weight`/`bias` in new checkpoints, `gamma`/`beta` in old.
        let norm = |name: &str| -> Result<LayerNorm, String> {
            let h = shape.hidden;
            let either = |a: &str, b: &str| {
                get(&format!("{name}.{a}"), &[h]).or_else(|_| get(&format!("{name}.{b}"), &[h]))
            };
            Ok(LayerNorm {
                weight: either("weight", "gamma")?,
                bias: either("bias", "beta")?,
                eps: shape.eps,
            })
        };
        let dense = |name: &str, fan_in: usize, fan_out: usize| -> Result<Dense, String> {
            Ok(Dense::new(
                get(&format!("{name}.weight"), &[fan_out, fan_in])?,
                get(&format!("{name}.bias"), &[fan_out])?,
                fan_in,
                fan_out,
            ))
        };
        let (h, i) = (shape.hidden, shape.intermediate);
        if shape.heads == 0 || h % shape.heads != 0 {
            return Err(format!(
                "hidden size {h} is not a multiple of the {} attention heads",
                shape.heads
            ));
        }
        let scale = 1.0 / ((h / shape.heads) as f32).sqrt();
        let mut layers = Vec::with_capacity(shape.layers);
        for l in 0..shape.layers {
            let p = format!("encoder.layer.{l}");
            let mut q = dense(&format!("{p}.attention.self.query"), h, h)?;
            let k = dense(&format!("{p}.attention.self.key"), h, h)?;
            let v = dense(&format!("{p}.attention.self.value"), h, h)?;
            q.weight
                .iter_mut()
                .chain(q.bias.iter_mut())
                .for_each(|w| *w *= scale);
            let qkv = Dense::new(
                [q.weight, k.weight, v.weight].concat(),
                [q.bias, k.bias, v.bias].concat(),
                h,
                3 * h,
            );
            layers.push(Layer {
                qkv,
                attention_out: dense(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: dense(&format!("{p}.intermediate.dense"), h, i)?,
                down: dense(&format!("{p}.output.dense"), i, h)?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Self {
            word: get("embeddings.word_embeddings.weight", &[shape.vocab, h])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[shape.max_positions, h],
            )?,
            token_type: get(
                "embeddings.token_type_embeddings.weight",
                &[shape.token_types, h],
            )?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            shape,
        })
    }

    /// The encoder's shape.
    pub fn shape(&self) -> &EncoderShape {
        &self.shape
    }

    /// Encodes `sequences`, calling `each(i, hidden)` with sequence `i`'s final hidden states
    /// (`len x hidden`, row-major), in order. Panics on a token id, type or position the model
    /// has no embedding for; [`Encoder::check`] finds those first.
    pub fn encode(&self, sequences: &[Sequence<'_>], mut each: impl FnMut(usize, &[f32])) {
        let mut scratch = Scratch::default();
        let mut start = 0;
        while start < sequences.len() {
            // A chunk: sequences up to CHUNK_TOKENS tokens (at least one sequence).
            let mut end = start;
            let mut tokens = 0;
            while end < sequences.len()
                && (end == start || tokens + sequences[end].ids.len() <= CHUNK_TOKENS)
            {
                tokens += sequences[end].ids.len();
                end += 1;
            }
            let chunk = &sequences[start..end];
            self.encode_chunk(chunk, tokens, &mut scratch);
            let h = self.shape.hidden;
            let mut offset = 0;
            for (j, s) in chunk.iter().enumerate() {
                let len = s.ids.len();
                each(start + j, &scratch.x[offset * h..(offset + len) * h]);
                offset += len;
            }
            start = end;
        }
    }

    /// Checks that every token id, type and position has an embedding.
    pub fn check(&self, sequences: &[Sequence<'_>]) -> Result<(), String> {
        for (i, s) in sequences.iter().enumerate() {
            if s.ids.len() > self.shape.max_positions {
                return Err(format!(
                    "text {i} has {} tokens, the model has {} positions",
                    s.ids.len(),
                    self.shape.max_positions
                ));
            }
            if s.types.len() != s.ids.len() {
                return Err(format!("text {i}: token types do not match its tokens"));
            }
            if let Some(id) = s.ids.iter().find(|id| **id as usize >= self.shape.vocab) {
                return Err(format!("text {i}: token id {id} is outside the vocabulary"));
            }
            if let Some(t) = s
                .types
                .iter()
                .find(|t| **t as usize >= self.shape.token_types)
            {
                return Err(format!("text {i}: token type {t} is unknown to the model"));
            }
        }
        Ok(())
    }

    fn encode_chunk(&self, chunk: &[Sequence<'_>], tokens: usize, s: &mut Scratch) {
        let EncoderShape {
            hidden: h,
            heads,
            intermediate,
            ..
        } = self.shape;
        let d = h / heads;
        let longest = chunk.iter().map(|q| q.ids.len()).max().unwrap_or(0);
        s.x.resize(tokens * h, 0.0);
        s.qkv.resize(tokens * 3 * h, 0.0);
        s.context.resize(tokens * h, 0.0);
        s.tmp.resize(tokens * h, 0.0);
        s.inter.resize(tokens * intermediate, 0.0);
        s.scores.resize(longest * longest, 0.0);

        // Embeddings: word + position + token type, then layer norm.
        let mut row = 0;
        for q in chunk {
            for (pos, (id, t)) in q.ids.iter().zip(q.types).enumerate() {
                let out = &mut s.x[row * h..(row + 1) * h];
                let word = &self.word[*id as usize * h..(*id as usize + 1) * h];
                let position = &self.position[pos * h..(pos + 1) * h];
                let token_type = &self.token_type[*t as usize * h..(*t as usize + 1) * h];
                for (((o, w), p), t) in out.iter_mut().zip(word).zip(position).zip(token_type) {
                    *o = w + p + t;
                }
                row += 1;
            }
        }
        self.embedding_norm.forward(&mut s.x);

        for layer in &self.layers {
            layer.qkv.forward(&s.x, &mut s.qkv);
            // Attention, per sequence and head, on exactly the sequence's tokens.
            let mut offset = 0;
            for q in chunk {
                let len = q.ids.len();
                let qkv = &s.qkv[offset * 3 * h..(offset + len) * 3 * h];
                let context = &mut s.context[offset * h..(offset + len) * h];
                let scores = &mut s.scores[..len * len];
                for head in 0..heads {
                    let query = MatRef::new(&qkv[head * d..], len, d, 3 * h, 1);
                    let key = MatRef::new(&qkv[h + head * d..], len, d, 3 * h, 1);
                    let value = MatRef::new(&qkv[2 * h + head * d..], len, d, 3 * h, 1);
                    matmul(
                        MatMut::row_major(scores, len, len),
                        query,
                        key.t(),
                        false,
                        Parallelism::None,
                    );
                    math::softmax_rows(scores, len);
                    matmul(
                        MatMut::new(&mut context[head * d..], len, d, h, 1),
                        MatRef::row_major(scores, len, len),
                        value,
                        false,
                        Parallelism::None,
                    );
                }
                offset += len;
            }
            layer.attention_out.forward(&s.context, &mut s.tmp);
            // x = norm(attention + x), written into tmp then swapped into x.
            layer.attention_norm.forward_residual(&mut s.tmp, &s.x);
            std::mem::swap(&mut s.x, &mut s.tmp);
            layer.up.forward(&s.x, &mut s.inter);
            self.shape.act.apply(&mut s.inter);
            layer.down.forward(&s.inter, &mut s.tmp);
            layer.output_norm.forward_residual(&mut s.tmp, &s.x);
            std::mem::swap(&mut s.x, &mut s.tmp);
        }
    }
}
