//! How the positions of one forward pass are laid out: a dense block of
//! rows from a common first position, or packed ragged rows (each patched
//! run recomputing only its own positions), with the matching attention
//! masks and cached keys/values.

use candle_core::{DType, Result as CResult, Tensor};

use super::forward::{KvCache, StartState, Transformer};
use super::layers::{causal_mask, visible};
use super::rotary::TokenPositions;

/// Rows of different lengths packed along one token axis (a ragged batch).
///
/// Row `r` computes positions `row_start[r]..n_pos`; its tokens are stored
/// contiguously in row order. Every row attends to the cached keys/values
/// of the unpatched run for positions before its start and to its own
/// recomputed tokens after that, so no row computes a position it does not
/// need. Hook activations have one entry per packed token
/// (`[1, n_tokens, ...]`); interventions must be given in that layout.
///
/// Rows may patch different unpatched runs (prompt pairs of one length):
/// the cached keys/values are then those runs' caches concatenated along
/// the position axis, and `row_segment[r]` says which of them row `r`
/// attends to (empty: every row reads segment 0).
#[derive(Debug, Clone)]
pub struct Packing {
    pub row_start: Vec<usize>,
    pub n_pos: usize,
    pub row_segment: Vec<usize>,
}

impl Packing {
    pub fn new(row_start: Vec<usize>, n_pos: usize) -> Self {
        Self {
            row_start,
            n_pos,
            row_segment: vec![],
        }
    }

    /// Rows over several cached runs: row `r` reads segment `row_segment[r]`.
    pub fn with_segments(row_start: Vec<usize>, row_segment: Vec<usize>, n_pos: usize) -> Self {
        Self {
            row_start,
            n_pos,
            row_segment,
        }
    }

    /// The cached segment row `r` attends to.
    pub fn segment(&self, r: usize) -> usize {
        self.row_segment.get(r).copied().unwrap_or(0)
    }

    /// How many cached runs the rows read.
    pub fn n_segments(&self) -> usize {
        self.row_segment.iter().max().map_or(1, |m| m + 1)
    }

    /// `(row, absolute position)` of every packed token, in order.
    pub fn tokens(&self) -> Vec<(usize, usize)> {
        self.row_start
            .iter()
            .enumerate()
            .flat_map(|(r, &p)| (p..self.n_pos).map(move |t| (r, t)))
            .collect()
    }

    pub fn n_tokens(&self) -> usize {
        self.row_start.iter().map(|&p| self.n_pos - p).sum()
    }
}

/// How the computed positions of one pass are laid out.
pub(crate) struct Layout<'a> {
    /// Position range passed to hooks (`offset..total`).
    pub(crate) hook_offset: usize,
    pub(crate) hook_total: usize,
    /// Absolute positions of the computed tokens (for rotary embeddings).
    pub(crate) positions: TokenPositions,
    /// Additive attention mask `[queries, cached keys + computed keys]`.
    pub(crate) mask: Tensor,
    /// The same for local (sliding-window) layers, when the model has any.
    pub(crate) local_mask: Option<Tensor>,
    /// Cached keys/values and how many leading positions to take from them.
    pub(crate) past: Option<(&'a KvCache, usize)>,
    /// Packed rows: index of each row's last token.
    pub(crate) last_tokens: Option<Tensor>,
    /// Absolute position of the last token (`T - 1`).
    pub(crate) last_pos: usize,
}

impl Layout<'_> {
    /// The mask of a global or a local layer.
    pub(crate) fn mask_for(&self, local: bool) -> &Tensor {
        match (&self.local_mask, local) {
            (Some(m), true) => m,
            _ => &self.mask,
        }
    }
}

impl Transformer {
    /// The sliding window, when some layer attends locally.
    pub(crate) fn local_window(&self) -> Option<usize> {
        let x = &self.cfg.extras;
        (0..self.cfg.n_layers)
            .any(|l| x.is_local(l))
            .then_some(x.sliding_window)
            .flatten()
    }

    /// Dense causal masks for queries `p0..p0 + t_local`: global, and local
    /// when the model has local layers.
    pub(crate) fn dense_masks(
        &self,
        t_local: usize,
        p0: usize,
        dtype: DType,
    ) -> CResult<(Tensor, Option<Tensor>)> {
        let global = causal_mask(t_local, p0, None, dtype, self.device())?;
        let local = match self.local_window() {
            Some(w) => Some(causal_mask(t_local, p0, Some(w), dtype, self.device())?),
            None => None,
        };
        Ok((global, local))
    }

    /// Positions `p0..T` of `batch` rows, attending to cached keys/values before `p0`.
    pub(crate) fn dense_layout<'a>(&self, s: &StartState<'a>, dtype: DType) -> CResult<Layout<'a>> {
        let t_local = s.resid.dim(1)?;
        let p0 = s.pos_offset;
        if p0 + t_local > self.cfg.n_ctx {
            candle_core::bail!(
                "{} positions exceed the model's context of {}",
                p0 + t_local,
                self.cfg.n_ctx
            );
        }
        if p0 > 0 && s.past.is_none() {
            candle_core::bail!("a forward starting at position {p0} needs the cached keys/values");
        }
        let (mask, local_mask) = self.dense_masks(t_local, p0, dtype)?;
        Ok(Layout {
            hook_offset: p0,
            hook_total: p0 + t_local,
            positions: TokenPositions::Range(p0),
            mask,
            local_mask,
            past: s.past.filter(|_| p0 > 0).map(|kv| (kv, p0)),
            last_tokens: None,
            last_pos: p0 + t_local - 1,
        })
    }

    /// Packed ragged rows: token `n` of row `r` at position `t` sees the
    /// cached keys `< row_start[r]` and its own row's tokens up to `t`.
    pub(crate) fn packed_layout<'a>(
        &self,
        pk: &Packing,
        past: Option<&'a KvCache>,
        dtype: DType,
    ) -> CResult<Layout<'a>> {
        let past = past.ok_or_else(|| {
            candle_core::Error::Msg("packed rows need the cached keys/values".into())
        })?;
        if pk.n_pos > self.cfg.n_ctx {
            candle_core::bail!(
                "{} positions exceed the model's context of {}",
                pk.n_pos,
                self.cfg.n_ctx
            );
        }
        let tokens = pk.tokens();
        let n = tokens.len();
        let t = pk.n_pos;
        // Cached keys: every segment's `t` positions, one after another.
        let cached = t * pk.n_segments();
        let build = |window: Option<usize>| -> CResult<Tensor> {
            let mut mask = vec![f32::NEG_INFINITY; n * (cached + n)];
            for (q, &(r, tq)) in tokens.iter().enumerate() {
                let row = &mut mask[q * (cached + n)..(q + 1) * (cached + n)];
                let seg = pk.segment(r) * t;
                for (k, v) in row[seg..seg + pk.row_start[r]].iter_mut().enumerate() {
                    if visible(tq, k, window) {
                        *v = 0.0;
                    }
                }
                for (k, &(rk, tk)) in tokens.iter().enumerate() {
                    if rk == r && visible(tq, tk, window) {
                        row[cached + k] = 0.0;
                    }
                }
            }
            Tensor::from_vec(mask, (n, cached + n), self.device())?.to_dtype(dtype)
        };
        let mask = build(None)?;
        let local_mask = match self.local_window() {
            Some(w) => Some(build(Some(w))?),
            None => None,
        };
        let positions: Vec<u32> = tokens.iter().map(|&(_, p)| p as u32).collect();
        let last: Vec<u32> = tokens
            .iter()
            .enumerate()
            .filter(|(_, &(_, p))| p + 1 == t)
            .map(|(i, _)| i as u32)
            .collect();
        Ok(Layout {
            hook_offset: 0,
            hook_total: n,
            positions: TokenPositions::Index(Tensor::new(positions, self.device())?),
            mask,
            local_mask,
            past: Some((past, cached)),
            last_tokens: Some(Tensor::new(last, self.device())?),
            last_pos: t - 1,
        })
    }
}
