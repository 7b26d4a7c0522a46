//! Sentence embeddings: a BERT-family encoder (safetensors + `tokenizer.json` + `config.json`)
//! run on candle, with the pooling and normalisation of the model's sentence-transformers
//! configuration.
//!
//! Texts are tokenised (truncated to `max_length`). On CPU they are encoded by scorch's own
//! encoder ([`super::encoder`]), packed without padding; on CUDA by candle's BERT, sorted by
//! length and encoded in groups of similar length so that padding wastes little work.
//! Embeddings are returned in input order.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, HiddenAct as BertAct};
use rayon::prelude::*;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use crate::features::FeatureMatrix;
use crate::package::{ModelPackage, Pooling};
use crate::runtime::encoder::{Encoder, EncoderShape, HiddenAct, Sequence};
use crate::runtime::{Model, OutputColumn};

/// Texts encoded together on CUDA, at most.
const GROUP: usize = 32;

enum Backend {
    Cpu(Encoder),
    Candle(BertModel, Device),
}

/// A sentence encoder.
pub struct EmbedderModel {
    name: String,
    backend: Backend,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    dim: usize,
}

impl std::fmt::Debug for EmbedderModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedderModel")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .finish()
    }
}

impl EmbedderModel {
    /// Loads the encoder, its configuration and tokenizer from the package.
    pub fn try_new(name: &str, package: &ModelPackage, device: &Device) -> Result<Self> {
        let bad = |reason: String| Error::InvalidWeights {
            name: name.to_string(),
            reason,
        };
        let spec = package
            .manifest
            .embedder
            .as_ref()
            .ok_or_else(|| bad("the manifest has no [embedder] section".into()))?;
        let config: Config =
            serde_json::from_slice(package.artifact(&spec.config)?).map_err(|e| {
                bad(format!(
                    "`{}` is not a BERT configuration: {e}",
                    spec.config
                ))
            })?;
        let weights = package.artifact(&spec.weights)?;
        let unreadable = |e: candle_core::Error| {
            bad(format!(
                "`{}` is not a readable safetensors file: {e}",
                spec.weights
            ))
        };
        let backend = if device.is_cpu() {
            let tensors =
                candle_core::safetensors::load_buffer(weights, device).map_err(unreadable)?;
            let shape = EncoderShape {
                hidden: config.hidden_size,
                heads: config.num_attention_heads,
                intermediate: config.intermediate_size,
                layers: config.num_hidden_layers,
                max_positions: config.max_position_embeddings,
                token_types: config.type_vocab_size,
                vocab: config.vocab_size,
                eps: config.layer_norm_eps as f32,
                act: match config.hidden_act {
                    BertAct::Gelu => HiddenAct::Gelu,
                    BertAct::GeluApproximate => HiddenAct::GeluTanh,
                    BertAct::Relu => HiddenAct::Relu,
                },
            };
            Backend::Cpu(
                Encoder::try_from_tensors(shape, &tensors)
                    .map_err(|e| bad(format!("the weights do not fit the configuration: {e}")))?,
            )
        } else {
            let tensors =
                candle_core::safetensors::load_buffer(weights, device).map_err(unreadable)?;
            let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
            let model = BertModel::load(vb, &config)
                .map_err(|e| bad(format!("the weights do not fit the configuration: {e}")))?;
            Backend::Candle(model, device.clone())
        };
        let mut tokenizer = Tokenizer::from_bytes(package.artifact(&spec.tokenizer)?)
            .map_err(|e| bad(format!("`{}` is not a tokenizer: {e}", spec.tokenizer)))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| bad(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);
        let dim = package.manifest.outputs[0].width();
        if dim != config.hidden_size {
            return Err(bad(format!(
                "the output has size {dim} but the encoder's hidden size is {}",
                config.hidden_size
            )));
        }
        Ok(Self {
            name: name.to_string(),
            backend,
            tokenizer,
            pooling: spec.pooling,
            normalize: spec.normalize,
            dim,
        })
    }

    /// Embeds `texts`, returning `texts.len() * dim` values in input order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<f32>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::InvalidWeights {
                name: self.name.clone(),
                reason: format!("tokenizer: {e}"),
            })?;
        match &self.backend {
            Backend::Cpu(encoder) => self.embed_cpu(encoder, &encodings),
            Backend::Candle(model, device) => self.embed_candle(model, device, &encodings),
        }
    }

    fn embed_cpu(&self, encoder: &Encoder, encodings: &[Encoding]) -> Result<Vec<f32>> {
        let sequences: Vec<Sequence<'_>> = encodings
            .iter()
            .map(|e| Sequence {
                ids: e.get_ids(),
                types: e.get_type_ids(),
            })
            .collect();
        encoder
            .check(&sequences)
            .map_err(|reason| Error::InvalidWeights {
                name: self.name.clone(),
                reason,
            })?;
        let dim = self.dim;
        let mut out = vec![0f32; sequences.len() * dim];
        let pool = |hidden: &[f32], out: &mut [f32]| {
            let row = &mut out[..dim];
            let tokens = hidden.len() / dim;
            match self.pooling {
                Pooling::Cls => row.copy_from_slice(&hidden[..dim]),
                Pooling::Mean => {
                    for token in hidden.chunks_exact(dim) {
                        row.iter_mut().zip(token).for_each(|(o, v)| *o += v);
                    }
                    let inv = 1.0 / tokens.max(1) as f32;
                    row.iter_mut().for_each(|o| *o *= inv);
                }
                Pooling::Max => {
                    row.copy_from_slice(&hidden[..dim]);
                    for token in hidden.chunks_exact(dim).skip(1) {
                        row.iter_mut().zip(token).for_each(|(o, v)| *o = o.max(*v));
                    }
                }
            }
            if self.normalize {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|v| *v /= norm);
            }
        };
        let threads = rayon::current_num_threads();
        if threads > 1 && sequences.len() > 1 {
            // Contiguous shares of the texts, one per thread of the call's lease.
            let share = sequences.len().div_ceil(threads);
            sequences
                .par_chunks(share)
                .zip(out.par_chunks_mut(share * dim))
                .for_each(|(seqs, out)| {
                    encoder.encode(seqs, |i, hidden| pool(hidden, &mut out[i * dim..]));
                });
        } else {
            encoder.encode(&sequences, |i, hidden| pool(hidden, &mut out[i * dim..]));
        }
        Ok(out)
    }

    fn embed_candle(
        &self,
        model: &BertModel,
        device: &Device,
        encodings: &[Encoding],
    ) -> Result<Vec<f32>> {
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|i| encodings[*i].get_ids().len());
        let mut out = vec![0f32; encodings.len() * self.dim];
        for group in order.chunks(GROUP) {
            let len = group
                .iter()
                .map(|i| encodings[*i].get_ids().len())
                .max()
                .unwrap_or(0)
                .max(1);
            let mut ids = vec![0u32; group.len() * len];
            let mut types = vec![0u32; group.len() * len];
            let mut mask = vec![0u32; group.len() * len];
            for (row, i) in group.iter().enumerate() {
                let e = &encodings[*i];
                for (j, ((id, t), m)) in e
                    .get_ids()
                    .iter()
                    .zip(e.get_type_ids())
                    .zip(e.get_attention_mask())
                    .enumerate()
                {
                    ids[row * len + j] = *id;
                    types[row * len + j] = *t;
                    mask[row * len + j] = *m;
                }
            }
            let shape = (group.len(), len);
            let ids = Tensor::from_vec(ids, shape, device).map_err(Error::candle(&self.name))?;
            let types =
                Tensor::from_vec(types, shape, device).map_err(Error::candle(&self.name))?;
            let mask = Tensor::from_vec(mask, shape, device).map_err(Error::candle(&self.name))?;
            let hidden = model
                .forward(&ids, &types, Some(&mask))
                .map_err(Error::candle(&self.name))?;
            let pooled = self
                .pool(&hidden, &mask)
                .map_err(Error::candle(&self.name))?;
            let values = pooled
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(Error::candle(&self.name))?;
            for (row, i) in group.iter().enumerate() {
                out[i * self.dim..(i + 1) * self.dim]
                    .copy_from_slice(&values[row * self.dim..(row + 1) * self.dim]);
            }
        }
        Ok(out)
    }

    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&count)?
            }
            Pooling::Max => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                // Padding positions get a very negative value so they never win.
                let penalty = ((m.ones_like()? - &m)? * -1e9)?;
                hidden.broadcast_add(&penalty)?.max(1)?
            }
        };
        if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norm)
        } else {
            Ok(pooled)
        }
    }
}

impl Model for EmbedderModel {
    fn predict(&self, features: &FeatureMatrix) -> Result<Vec<OutputColumn>> {
        let texts = features.text.first().map(Vec::as_slice).unwrap_or(&[]);
        Ok(vec![OutputColumn::F32(self.embed(texts)?)])
    }
}
