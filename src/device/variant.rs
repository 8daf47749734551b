//! The matmul family's variants (which entry point of shaders/matmul.wgsl
//! or matmul_coop.wgsl a product runs), the features the mixed-precision
//! one needs, and the device's choice between them with where it came from.
//! (Each variant's entry point, `Variant::kernel`, is in `shader`, with the
//! kernel registry.) Also the depths and tiles `wide` may take, and their
//! variables.

use crate::error::{Error, Result};

/// Variants of the matmul family (see the header of shaders/matmul.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// 4×4 register tile per thread, vec4 loads from memory, no barriers.
    RegTile,
    /// Workgroup-memory tiles plus 4×4 register tiles.
    Shared,
    /// Large GPUs: block tiles of 64 or 128 a side, 8×8 register tiles,
    /// double-buffered workgroup memory.
    Wide,
    /// One thread per output; the benchmark baseline.
    Naive,
    /// Products with a side of at most 16 (`THIN_MAX`) and long others: a
    /// running sum per output of the thin side in every thread, the long
    /// operand read once. Not a tuning choice: the launcher takes it for
    /// such products on GPUs (`thin_rule`), or where forced.
    Thin,
    /// Mixed precision on tensor cores: f16 operands in cooperative
    /// matrices, f32 accumulation and outputs. Not a tuning choice: chosen
    /// by `Precision::Mixed` (or forced), where the adapter has the features.
    Coop,
}

impl Variant {
    /// The variants a device of type `ty` chooses between. Software
    /// adapters leave `wide` out: its square-product timing can beat
    /// `regtile` there, but only `regtile` reads convolution operands in
    /// place (no column buffers) and narrows its tile to few kept units.
    pub fn tuned(ty: wgpu::DeviceType) -> &'static [Variant] {
        if ty == wgpu::DeviceType::Cpu {
            &[Variant::RegTile, Variant::Shared]
        } else {
            &[Variant::RegTile, Variant::Shared, Variant::Wide]
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::RegTile => "regtile",
            Variant::Shared => "shared",
            Variant::Wide => "wide",
            Variant::Naive => "naive",
            Variant::Thin => "thin",
            Variant::Coop => "coop",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        match s.trim().to_ascii_lowercase().as_str() {
            "regtile" => Some(Variant::RegTile),
            "shared" => Some(Variant::Shared),
            "wide" => Some(Variant::Wide),
            "naive" => Some(Variant::Naive),
            "thin" => Some(Variant::Thin),
            "coop" => Some(Variant::Coop),
            _ => None,
        }
    }

    /// Whether the variant can split K (see `Matmul::split_k`).
    pub fn splits_k(self) -> bool {
        matches!(self, Variant::RegTile | Variant::Shared | Variant::Wide | Variant::Thin | Variant::Coop)
    }
}

/// The device features of the mixed-precision path (`matmul_coop`).
pub fn coop_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
}

/// Where a device's matmul choice came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceSource {
    /// `SPARSETRAIN_MATMUL`.
    Env,
    /// An earlier autotune on this adapter, read from the cache file.
    Cache,
    /// Timed just now.
    Autotune,
    /// The device-type rule: software adapters get `RegTile`, GPUs `Shared`.
    DeviceType,
}

/// The matmul variant a device uses, and why.
#[derive(Clone, Debug)]
pub struct MatmulChoice {
    pub variant: Variant,
    pub source: ChoiceSource,
    /// GFLOP/s per variant when timed in this process.
    pub timings: Vec<(Variant, f64)>,
}

impl MatmulChoice {
    pub fn fallback(ty: wgpu::DeviceType) -> MatmulChoice {
        let variant = if ty == wgpu::DeviceType::Cpu { Variant::RegTile } else { Variant::Shared };
        MatmulChoice { variant, source: ChoiceSource::DeviceType, timings: Vec::new() }
    }
}

/// A depth `wide` can take: 8 or 16.
pub fn check_wide_depth(bk: u32) -> Result<u32> {
    if bk != 8 && bk != 16 {
        return Err(Error::InvalidArgument(format!("the wide matmul's K slices are 8 or 16 deep, not {bk}")));
    }
    Ok(bk)
}

/// `SPARSETRAIN_WIDE_BK`, checked (None where unset); read when a device
/// opens too, so that a bad value fails there whatever variant runs.
pub fn wide_depth_env() -> Result<Option<u32>> {
    match std::env::var("SPARSETRAIN_WIDE_BK") {
        Ok(v) if !v.trim().is_empty() => {
            let bad = || Error::InvalidEnv { var: "SPARSETRAIN_WIDE_BK", value: v.clone(), expected: "8 or 16" };
            let bk = v.trim().parse::<u32>().map_err(|_| bad())?;
            check_wide_depth(bk).map(Some).map_err(|_| bad())
        }
        _ => Ok(None),
    }
}

/// `wide`'s workgroup for a block tile of `rows` × `cols` outputs (64 or
/// 128 each; 8 outputs per thread each way): x along the columns.
pub fn check_wide_tile(rows: u32, cols: u32) -> Result<glam::UVec2> {
    let ok = |s: u32| s == 64 || s == 128;
    if !ok(rows) || !ok(cols) {
        return Err(Error::InvalidArgument(format!(
            "the wide matmul's block tiles are 64 or 128 a side, not {rows} × {cols}"
        )));
    }
    Ok(glam::UVec2::new(cols / 8, rows / 8))
}

/// `SPARSETRAIN_WIDE_TILE` (`ROWSxCOLS`, each 64 or 128; `auto` or unset:
/// None, the launcher's rule) as `wide`'s workgroup; checked when a device
/// opens too.
pub fn wide_tile_env() -> Result<Option<glam::UVec2>> {
    match std::env::var("SPARSETRAIN_WIDE_TILE") {
        Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => {
            let bad = || Error::InvalidEnv {
                var: "SPARSETRAIN_WIDE_TILE",
                value: v.clone(),
                expected: "auto, 128x128, 128x64, 64x128 or 64x64 (rows x columns)",
            };
            let (r, c) = v.trim().split_once(['x', 'X']).ok_or_else(bad)?;
            let (r, c) = (r.trim().parse::<u32>().map_err(|_| bad())?, c.trim().parse::<u32>().map_err(|_| bad())?);
            check_wide_tile(r, c).map(Some).map_err(|_| bad())
        }
        _ => Ok(None),
    }
}

/// Shapes of `coop` from f16 packs a caller may ask for (`Matmul::coop_direct_shape`,
/// `SPARSETRAIN_COOP_SHAPE`): pieces a side per subgroup 2 or 4, subgroups
/// along M and along N 1, 2 or 4 each, at most 8 subgroups.
pub fn check_coop_shape((tm, wm, wn): (u32, u32, u32)) -> Result<(u32, u32, u32)> {
    let side = |v: u32| matches!(v, 1 | 2 | 4);
    if matches!(tm, 2 | 4) && side(wm) && side(wn) && wm * wn <= 8 {
        Ok((tm, wm, wn))
    } else {
        Err(Error::InvalidArgument(format!(
            "coop shape {tm}x{wm}x{wn}: pieces a side 2 or 4, subgroups each way 1, 2 or 4, at most 8 in all"
        )))
    }
}

/// `SPARSETRAIN_COOP_SHAPE` (`TMxWMxWN`, see `check_coop_shape`; `auto` or
/// unset: None, the launcher's rules `coop_direct_shape` and
/// `coop_tiled_shape`) for every product of `coop` from f16 packs, direct
/// or tiled; checked when a device opens too.
pub fn coop_shape_env() -> Result<Option<(u32, u32, u32)>> {
    match std::env::var("SPARSETRAIN_COOP_SHAPE") {
        Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => {
            let bad = || Error::InvalidEnv {
                var: "SPARSETRAIN_COOP_SHAPE",
                value: v.clone(),
                expected: "auto or TMxWMxWN (pieces a side 2 or 4, subgroups 1, 2 or 4 each way, at most 8), e.g. 4x2x4",
            };
            let parts: Vec<u32> = v
                .trim()
                .split(['x', 'X', '×'])
                .map(|p| p.trim().parse::<u32>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad())?;
            match parts[..] {
                [tm, wm, wn] => check_coop_shape((tm, wm, wn)).map(Some).map_err(|_| bad()),
                _ => Err(bad()),
            }
        }
        _ => Ok(None),
    }
}

/// `SPARSETRAIN_COOP_UNROLL`: whether `matmul_coop_direct` takes two K
/// pieces a pass (`on`, the default: on an H100 5–13% faster on A·B and
/// Aᵀ·B, the same on A·Bᵀ) or one
/// (`off`, for comparison); checked when a device opens too.
pub fn coop_unroll_env() -> Result<bool> {
    match std::env::var("SPARSETRAIN_COOP_UNROLL") {
        Ok(v) => match v.trim() {
            "" | "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(Error::InvalidEnv { var: "SPARSETRAIN_COOP_UNROLL", value: v.clone(), expected: "on or off" }),
        },
        Err(_) => Ok(true),
    }
}

/// Which products GPUs leave the K splits of to the device
/// (`SPARSETRAIN_KEPT_SPLITS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeptSplits {
    /// None: the fixed rule alone (`off`, for comparison).
    Off,
    /// Those a kept count sizes over a long K that is not a kept count, such
    /// as a linear layer's weight gradient over the batch (`auto`, the
    /// default).
    Auto,
    /// Every product a kept count sizes, forward and input-gradient products
    /// over kept K included (`all`: an experiment on their occupancy).
    All,
}

/// `SPARSETRAIN_KEPT_SPLITS`: `auto` (the default), `off` or `all` (see
/// `KeptSplits`); checked when a device opens too.
pub fn kept_splits_env() -> Result<KeptSplits> {
    let var = "SPARSETRAIN_KEPT_SPLITS";
    match std::env::var(var) {
        Ok(v) => match v.trim() {
            "" | "auto" => Ok(KeptSplits::Auto),
            "off" => Ok(KeptSplits::Off),
            "all" => Ok(KeptSplits::All),
            _ => Err(Error::InvalidEnv { var, value: v.clone(), expected: "auto, off or all" }),
        },
        Err(_) => Ok(KeptSplits::Auto),
    }
}

/// `SPARSETRAIN_KEPT_MATMUL`: the f32 variant of products whose M or N a
/// kept count sets (`regtile`, `shared` or `wide`), where no variant was
/// asked for and no operand is an implicit convolution; `auto` (the default, None) leaves them to the device's
/// choice. An experiment: on GPUs they run `wide` on 64 × 64 tiles of 64
/// threads, few workgroups per multiprocessor at small keep ratios, where
/// `shared` covers the same tile with 256. Checked when a device opens too.
pub fn kept_matmul_env() -> Result<Option<Variant>> {
    let var = "SPARSETRAIN_KEPT_MATMUL";
    match std::env::var(var) {
        Ok(v) if matches!(v.trim(), "" | "auto") => Ok(None),
        Ok(v) => Variant::parse(v.trim())
            .filter(|v| matches!(v, Variant::RegTile | Variant::Shared | Variant::Wide))
            .map(Some)
            .ok_or(Error::InvalidEnv { var, value: v.clone(), expected: "auto, regtile, shared or wide" }),
        Err(_) => Ok(None),
    }
}

/// A variable of `auto` (or unset) and `off`: true for `auto`.
pub(crate) fn auto_or_off(var: &'static str) -> Result<bool> {
    match std::env::var(var) {
        Ok(v) => match v.trim() {
            "" | "auto" => Ok(true),
            "off" => Ok(false),
            _ => Err(Error::InvalidEnv { var, value: v.clone(), expected: "auto or off" }),
        },
        Err(_) => Ok(true),
    }
}

/// `SPARSETRAIN_THIN`: which products the launcher runs on `matmul_thin`:
/// by its rule (`auto`, the default, None; see `thin_rule`), none (`off`,
/// for comparison), or every product of the f32 tile variants or `coop`
/// with a side of at most `THIN_MAX`, on any adapter (`on`: the test suite's pass that runs the
/// models' steps as GPUs run their output layers); checked when a device
/// opens too.
pub fn thin_env() -> Result<Option<bool>> {
    auto_on_off("SPARSETRAIN_THIN")
}

/// `SPARSETRAIN_WIDE_PAD`: whether `wide` pads the staged slice whose store
/// transposes (`auto`, the default) or not (`off`, for comparison; see
/// `wide_pads`); checked when a device opens too.
pub fn wide_pad_env() -> Result<bool> {
    auto_or_off("SPARSETRAIN_WIDE_PAD")
}

/// `SPARSETRAIN_IMPLICIT_QUADS`: whether the matmuls' loaders read an
/// implicit convolution operand four values at a time where its channels
/// per kernel position come in fours (`auto`, the default) or one at a
/// time (`off`, for comparison; `a_quad_k` in matmul_core.wgsl); checked
/// when a device opens too.
pub fn implicit_quads_env() -> Result<bool> {
    auto_or_off("SPARSETRAIN_IMPLICIT_QUADS")
}

/// `SPARSETRAIN_WIDE_KPACK`: whether `wide` reads operands stored along K
/// from K-major packs (`matmul_kpack`): `on` for every such product, `off`
/// for none, `auto` (the default, None) by `kpack_rule`; checked when a
/// device opens too.
pub fn wide_kpack_env() -> Result<Option<bool>> {
    auto_on_off("SPARSETRAIN_WIDE_KPACK")
}

/// A switch that is `auto` (the default, None: the caller's rule), `on` or
/// `off`.
pub(crate) fn auto_on_off(var: &'static str) -> Result<Option<bool>> {
    match std::env::var(var) {
        Ok(v) => match v.trim() {
            "" | "auto" => Ok(None),
            "on" => Ok(Some(true)),
            "off" => Ok(Some(false)),
            _ => Err(Error::InvalidEnv { var, value: v.clone(), expected: "auto, on or off" }),
        },
        Err(_) => Ok(None),
    }
}

/// How the mixed-precision matmul (`coop`) reads its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoopMode {
    /// f16 packs of both operands (`matmul_pack`), multiplied by
    /// `matmul_coop_direct` with no staging: the default for kept products
    /// and on CPU adapters, where the packs fit one binding.
    Direct,
    /// The f32 operands staged through workgroup memory and rounded there
    /// (`matmul_coop`): no packs, one launch.
    Staged,
    /// The f16 packs, each K slice of a block tile copied into workgroup
    /// memory with 16-byte loads (`matmul_coop_tiled`): the default on GPUs
    /// for products with no kept size (`coop_mode_rule`). Where its staging
    /// does not fit the workgroup memory the product runs direct.
    Tiled,
}

/// `SPARSETRAIN_COOP`: `off` (no mixed precision; read when the device
/// opens), `staged`, `tiled` or `direct`; None where unset, empty, `auto`
/// or `off` (the launcher's rule, `coop_mode_rule`); checked when a device
/// opens.
pub fn coop_mode_env() -> Result<Option<CoopMode>> {
    match std::env::var("SPARSETRAIN_COOP") {
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "auto" | "off" => Ok(None),
            "direct" => Ok(Some(CoopMode::Direct)),
            "staged" => Ok(Some(CoopMode::Staged)),
            "tiled" => Ok(Some(CoopMode::Tiled)),
            _ => Err(Error::InvalidEnv {
                var: "SPARSETRAIN_COOP",
                value: v.clone(),
                expected: "auto, direct, tiled, staged or off",
            }),
        },
        Err(_) => Ok(None),
    }
}

/// How `coop` reads its operands by default: through workgroup tiles
/// (`CoopMode::Tiled`) on GPUs where no size of the product is a kept
/// count, from the f16 packs directly everywhere else. On an H100 (the
/// nineteenth session, matmuls without index clamps) the tiled kernel ran
/// the dense 784-8192-8192-10 step in 12.20 ms against 14.66 direct, and
/// 94–104 TFLOP/s at 4096³ against 56–96; direct stayed ahead on the
/// keep-0.1 step (1.78 against 1.85 ms), whose kept products have few
/// tiles each. CPU adapters (lavapipe) stage nothing by default.
pub fn coop_mode_rule(ty: wgpu::DeviceType, kept: bool) -> CoopMode {
    if ty != wgpu::DeviceType::Cpu && !kept { CoopMode::Tiled } else { CoopMode::Direct }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coop_stages_tiles_on_gpus_for_products_without_kept_sizes() {
        use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu};
        assert_eq!(coop_mode_rule(DiscreteGpu, false), CoopMode::Tiled);
        assert_eq!(coop_mode_rule(IntegratedGpu, false), CoopMode::Tiled);
        assert_eq!(coop_mode_rule(DiscreteGpu, true), CoopMode::Direct);
        assert_eq!(coop_mode_rule(Cpu, false), CoopMode::Direct);
    }

    #[test]
    fn coop_shapes_within_the_kernel_are_accepted() {
        for ok in [(2, 2, 2), (4, 2, 2), (4, 2, 4), (4, 4, 2), (2, 1, 4), (4, 1, 1), (2, 4, 2)] {
            assert_eq!(check_coop_shape(ok).unwrap(), ok);
        }
        // Pieces a side 2 or 4; subgroups 1, 2 or 4 each way; at most 8.
        for bad in [(3, 2, 2), (1, 2, 2), (8, 2, 2), (4, 3, 2), (4, 2, 0), (4, 4, 4), (2, 8, 1)] {
            let err = check_coop_shape(bad).unwrap_err().to_string();
            assert!(err.contains("coop shape"), "{bad:?}: {err}");
        }
    }
}
