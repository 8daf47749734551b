//! A product's tuning knobs: which variant runs it, `wide`'s depth, tile
//! and padding, `coop`'s mode, loop and shape, and the splits of K. None
//! changes what is computed, only how: the kernel tests run each against
//! the same f64 reference. Without a knob the launcher decides (its rules,
//! and the SPARSETRAIN_* variables for experiments).

use super::{CoopMode, Matmul, Size, TileFit, Variant};
use crate::device::variant::{check_coop_shape, check_wide_tile, coop_shape_env};
use crate::error::Result;

impl<'a> Matmul<'a> {
    /// Runs the product in variant `v` whatever the device chose.
    pub fn variant(mut self, v: Variant) -> Matmul<'a> {
        self.variant = Some(v);
        self
    }

    /// The shape of `coop` from f16 packs (`matmul_coop_direct`, and
    /// `matmul_coop_tiled` where it fits): `tm` × `tm` pieces per subgroup
    /// (2 or 4), `wm` × `wn` subgroups (1, 2 or 4 each, at most 8); without
    /// this, `SPARSETRAIN_COOP_SHAPE`, else `coop_direct_shape`'s or
    /// `coop_tiled_shape`'s rule. Checked when recorded; other variants
    /// ignore it.
    pub fn coop_direct_shape(mut self, tm: u32, wm: u32, wn: u32) -> Matmul<'a> {
        self.coop_shape = Some((tm, wm, wn));
        self
    }

    /// Whether `matmul_coop_direct` takes two K pieces a pass, all their
    /// loads before any multiply (`COOP_UNROLL`); without this,
    /// `SPARSETRAIN_COOP_UNROLL` (on unless `off`).
    pub fn coop_unroll(mut self, on: bool) -> Matmul<'a> {
        self.coop_unroll = Some(on);
        self
    }

    /// Whether `wide` pads the staged slice whose store transposes where the
    /// workgroup memory allows (`wide_pads`; without this,
    /// `SPARSETRAIN_WIDE_PAD`, which pads unless `off`).
    pub fn wide_padding(mut self, on: bool) -> Matmul<'a> {
        self.wide_pad = Some(on);
        self
    }

    /// How the mixed-precision variant (`coop`) reads its operands: f16
    /// packs multiplied with no staging (`CoopMode::Direct`), the packs
    /// copied into workgroup memory a K slice at a time (`CoopMode::Tiled`,
    /// direct where that staging does not fit), or f32 operands staged and
    /// rounded in workgroup memory (`CoopMode::Staged`); any of them staged
    /// where a pack would not fit one binding. Without this,
    /// `SPARSETRAIN_COOP` (`direct`, `tiled` or `staged`), else
    /// `coop_mode_rule` (tiled on GPUs where no size is a kept count).
    /// Other variants ignore it.
    pub fn coop_mode(mut self, mode: CoopMode) -> Matmul<'a> {
        self.coop_mode = Some(mode);
        self
    }

    /// Whether `wide` first copies an operand stored along K (A as [M, K],
    /// B as [N, K]) into a K-major pack and multiplies that, as Aᵀ·B
    /// (`matmul_kpack`); without this, `SPARSETRAIN_WIDE_KPACK`, else
    /// `kpack_rule` (large products on GPUs). Implicit operands never pack,
    /// nor a pair (`record_pair`: its samples' operands are read where they
    /// lie); other variants ignore it.
    pub fn wide_kpack(mut self, on: bool) -> Matmul<'a> {
        self.wide_kpack = Some(on);
        self
    }

    /// K slice depth of the `wide` variant: 8 or 16 (16 needs 32 KiB of
    /// workgroup memory); without this, `SPARSETRAIN_WIDE_BK` or 8.
    pub fn wide_depth(mut self, bk: u32) -> Matmul<'a> {
        self.wide_bk = Some(bk);
        self
    }

    /// Block tile of the `wide` variant: `rows` × `cols` outputs, 64 or 128
    /// each; without this, `SPARSETRAIN_WIDE_TILE` or the launcher's rule
    /// (128 × 128, 128 × 64 for Aᵀ·B, 64 × 64 where a kept count sets M or
    /// N).
    pub fn wide_tile(mut self, rows: u32, cols: u32) -> Matmul<'a> {
        self.wide_tile = Some((rows, cols));
        self
    }

    /// Splits K into `n` ranges summed by separate workgroups and added up
    /// by a second pass (1: no split). Every variant but `naive` splits;
    /// without this the launcher decides (`auto_splits`).
    pub fn split_k(mut self, n: u32) -> Matmul<'a> {
        self.split = Some(n.max(1));
        self.split_within = None;
        self
    }

    /// Leaves the splits of K to the device: up to `n`, as many as `room`
    /// floats of partial products hold for the M × N it reads, and none
    /// where that is fewer than two (the product is then recorded both
    /// ways, and each launch checks which runs). For products whose kept
    /// counts vary from step to step: few kept units make few output tiles,
    /// which leave a large GPU idle while they walk K; many need no split.
    /// GPUs' weight gradients of kept units take it without asking
    /// (`KEPT_SPLITS` within `KEPT_SPLIT_ROOM`).
    /// Replaces `split_k`; `n` below 2 splits nothing.
    pub fn split_k_within(mut self, n: u32, room: usize) -> Matmul<'a> {
        self.split_within = Some((n, room));
        self.split = None;
        self
    }

    /// What the tiles are sized for: whether a kept count sets M or N, and
    /// the `wide` tile asked for (checked even where another variant runs).
    pub(in crate::ops) fn tile_fit(&self) -> Result<TileFit> {
        let wide_wg = self.wide_tile.map(|(r, c)| check_wide_tile(r, c)).transpose()?;
        let kept = self.sizes[..2].iter().any(|s| matches!(s, Size::Kept { .. }));
        let coop_shape = match self.coop_shape {
            Some(s) => Some(check_coop_shape(s)?),
            None => coop_shape_env()?,
        };
        Ok(TileFit { kept, wide_wg, coop_staged: false, coop_shape, trans_a: self.layout.trans_a() })
    }
}
