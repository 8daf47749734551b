//! Mask sets: one or more Bernoulli masks over all prunable units, drawn
//! from the scores in one dispatch and compacted in another into ordered
//! kept-unit lists and counts per prunable layer. Sample s of a set keeps
//! its mask at mask[s·U..], its lists at kept[s·U + unit_off[p]..] and its
//! counts at counts[s·P + p] (U units, P prunable layers): the layout the
//! compressed passes of `nn::Net` address.

use crate::device::gpu::Gpu;
use crate::device::record::Recorder;
use crate::device::tensor::{DType, Tensor};
use crate::error::{Error, Result};
use crate::nn::{Graph, MaskRef};
use crate::ops::compact::compact_samples;
use crate::ops::gather::KeptSet;
use crate::ops::mask::{KeyStep, MaskKey, mask_samples};

pub struct MaskSet {
    pub samples: usize,
    pub units: usize,
    pub layers: usize,
    /// [samples · units] u32 0/1.
    pub mask: Tensor,
    /// [samples · units] u32: kept lists, laid out like the units.
    pub kept: Tensor,
    /// [samples · layers] u32: kept units per prunable layer.
    pub counts: Tensor,
    unit_off: Vec<usize>,
    offsets: Tensor,
}

impl MaskSet {
    pub fn new(gpu: &Gpu, graph: &Graph, samples: usize, label: &str) -> Result<MaskSet> {
        let (units, layers) = (graph.units(), graph.prunable.len());
        if units == 0 {
            return Err(Error::InvalidArgument("the graph has no prunable units".into()));
        }
        let off32: Vec<u32> = graph.unit_off.iter().map(|&o| o as u32).collect();
        Ok(MaskSet {
            samples,
            units,
            layers,
            mask: Tensor::zeros(gpu, &format!("{label} masks"), &[samples * units], DType::U32)?,
            kept: Tensor::zeros(gpu, &format!("{label} kept units"), &[samples * units], DType::U32)?,
            counts: Tensor::zeros(gpu, &format!("{label} kept counts"), &[samples * layers], DType::U32)?,
            unit_off: graph.unit_off.clone(),
            offsets: Tensor::from_u32(gpu, "unit offsets", &[off32.len()], &off32)?,
        })
    }

    /// Draws every sample (sample s with key sample `key.sample + s`) and
    /// compacts them: two dispatches however many samples.
    pub fn draw(&self, rec: &mut Recorder, scores: &Tensor, key: MaskKey, step: KeyStep) -> Result<()> {
        mask_samples(rec, &self.mask, scores, key, step, self.units, self.samples)?;
        self.compact(rec)
    }

    /// Compacts the masks as they are (e.g. uploaded from a checkpoint).
    pub fn compact(&self, rec: &mut Recorder) -> Result<()> {
        compact_samples(rec, &self.kept, &self.counts, &self.mask, &self.offsets, self.layers, self.units, self.samples)
    }

    /// Sample s, as the compressed passes take it.
    pub fn sample(&self, s: usize) -> MaskRef<'_> {
        MaskRef { kept: KeptSet { dims: &self.counts, maps: &self.kept }, sample: s }
    }

    /// Kept units per prunable layer of sample s (a small read-back).
    pub fn kept_counts(&self, gpu: &Gpu, s: usize) -> Result<Vec<usize>> {
        let c = self.counts.download_u32(gpu)?;
        Ok(c[s * self.layers..(s + 1) * self.layers].iter().map(|&v| v as usize).collect())
    }

    /// The kept units of each prunable layer of sample s, ascending (read-back).
    pub fn kept_lists(&self, gpu: &Gpu, s: usize) -> Result<Vec<Vec<usize>>> {
        let counts = self.kept_counts(gpu, s)?;
        let lists = self.kept.download_u32(gpu)?;
        Ok((0..self.layers)
            .map(|p| {
                let at = s * self.units + self.unit_off[p];
                lists[at..at + counts[p]].iter().map(|&u| u as usize).collect()
            })
            .collect())
    }

    /// The 0/1 mask of sample s (read-back).
    pub fn mask_of(&self, gpu: &Gpu, s: usize) -> Result<Vec<u32>> {
        Ok(self.mask.download_u32(gpu)?[s * self.units..(s + 1) * self.units].to_vec())
    }
}
