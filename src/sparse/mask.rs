//! Mask sets: one or more Bernoulli masks over all prunable units, drawn
//! from the scores and compacted in the same dispatch into the kept
//! channels of every channel set of the graph (each prunable layer's units,
//! and the unions residual sums carry), with their counts and every
//! channel's rank. Sample s keeps its mask at mask[s·U..], its lists and
//! ranks at kept[s·T + slot..] and its counts at counts[s·S + set] (U units,
//! T slots, S sets; `nn::Graph::channel_sets`): the layout the compressed
//! passes of `nn::Net` address.

use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::tensor::{DType, Tensor, aligned_len};
use crate::error::{Error, Result};
use crate::nn::{Graph, MaskRef};
use crate::ops::compact::{Compacted, compact_sets, draw_compact_sets, set_table};
use crate::ops::gather::KeptSet;
use crate::ops::mask::{KeyStep, MaskKey};

pub struct MaskSet {
    pub samples: usize,
    /// Units (the mask's length per sample), prunable layers, all sets, slots.
    pub units: usize,
    pub layers: usize,
    pub sets: usize,
    pub slots: usize,
    /// [samples · units] u32 0/1.
    pub mask: Tensor,
    /// [samples · slots] u32: kept lists of every set.
    pub kept: Tensor,
    /// [samples · slots] u32: each channel's position in its set's list, or u32::MAX.
    pub ranks: Tensor,
    /// [samples · sets] u32: kept channels per set.
    pub counts: Tensor,
    /// One buffer holding `kept`, `ranks` and `counts` (views of it, at
    /// `offsets`), for kernels that read all three through one binding.
    pub all: Tensor,
    /// Element offsets of kept, ranks and counts in `all`.
    pub offsets: [usize; 3],
    unit_off: Vec<usize>,
    table: Tensor,
}

impl MaskSet {
    pub fn new(gpu: &Gpu, graph: &Graph, samples: usize, label: &str) -> Result<MaskSet> {
        let (units, layers) = (graph.units(), graph.prunable.len());
        if units == 0 {
            return Err(Error::InvalidArgument("the graph has no prunable units".into()));
        }
        let descs = graph.channel_sets();
        let slots = descs.iter().map(|d| d.slot + d.len).max().unwrap_or(units);
        let table = set_table(&descs)?;
        let lens = [samples * slots, samples * slots, samples * descs.len()];
        let offsets = [0, aligned_len(lens[0]), aligned_len(lens[0]) + aligned_len(lens[1])];
        let all = Tensor::zeros(gpu, &format!("{label} kept sets"), &[offsets[2] + lens[2]], DType::U32)?;
        Ok(MaskSet {
            samples,
            units,
            layers,
            sets: descs.len(),
            slots,
            mask: Tensor::zeros(gpu, &format!("{label} masks"), &[samples * units], DType::U32)?,
            kept: all.view(offsets[0], &[lens[0]])?,
            ranks: all.view(offsets[1], &[lens[1]])?,
            counts: all.view(offsets[2], &[lens[2]])?,
            all,
            offsets,
            unit_off: graph.unit_off.clone(),
            table: Tensor::from_u32(gpu, "channel set table", &[table.len()], &table)?,
        })
    }

    /// Draws every sample (sample s with key sample `key.sample + s`, the
    /// bits of `ops::mask::mask_samples`) and compacts them: one dispatch
    /// however many samples.
    pub fn draw(&self, rec: &mut Recorder, scores: &Tensor, key: MaskKey, step: KeyStep) -> Result<()> {
        let out = Compacted { kept: &self.kept, counts: &self.counts, ranks: &self.ranks };
        let strides = (self.units, self.slots);
        let draw = (key, step);
        draw_compact_sets(rec, out, (&self.mask, scores), &self.table, self.sets, strides, self.samples, draw)
    }

    /// Compacts the masks as they are (e.g. uploaded from a checkpoint).
    pub fn compact(&self, rec: &mut Recorder) -> Result<()> {
        let out = Compacted { kept: &self.kept, counts: &self.counts, ranks: &self.ranks };
        compact_sets(rec, out, &self.mask, &self.table, self.sets, (self.units, self.slots), self.samples)
    }

    /// Sample s, as the compressed passes take it.
    pub fn sample(&self, s: usize) -> MaskRef<'_> {
        MaskRef { kept: KeptSet { dims: &self.counts, maps: &self.kept, ranks: &self.ranks }, sample: s }
    }

    /// Kept units per prunable layer of sample s (a small read-back).
    pub fn kept_counts(&self, gpu: &Gpu, s: usize) -> Result<Vec<usize>> {
        let c = self.counts.download_u32(gpu)?;
        Ok(c[s * self.sets..s * self.sets + self.layers].iter().map(|&v| v as usize).collect())
    }

    /// The kept units of each prunable layer of sample s, ascending (read-back).
    pub fn kept_lists(&self, gpu: &Gpu, s: usize) -> Result<Vec<Vec<usize>>> {
        let counts = self.kept_counts(gpu, s)?;
        let lists = self.kept.download_u32(gpu)?;
        Ok((0..self.layers)
            .map(|p| {
                let at = s * self.slots + self.unit_off[p];
                lists[at..at + counts[p]].iter().map(|&u| u as usize).collect()
            })
            .collect())
    }

    /// The 0/1 mask of sample s (read-back).
    pub fn mask_of(&self, gpu: &Gpu, s: usize) -> Result<Vec<u32>> {
        Ok(self.mask.download_u32(gpu)?[s * self.units..(s + 1) * self.units].to_vec())
    }
}
