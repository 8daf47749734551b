//! Reference of shaders/compact.wgsl.

use crate::ops::compact::SetDesc;

/// What one mask compacts to: kept lists and ranks laid out like the slots
/// (None where the kernel leaves a slot untouched), counts per set.
pub struct Compacted {
    pub kept: Vec<Option<u32>>,
    pub ranks: Vec<Option<u32>>,
    pub counts: Vec<u32>,
}

/// Whether channel c of `set` is kept by `mask`.
pub fn in_set(set: &SetDesc, mask: &[u32], c: usize) -> bool {
    if set.members.is_empty() { mask[set.slot + c] != 0 } else { set.members.iter().any(|&m| mask[m + c] != 0) }
}

/// `slots` slots; a kept channel's rank is its position, a removed one's NONE.
pub fn compact_sets(mask: &[u32], sets: &[SetDesc], slots: usize) -> Compacted {
    let mut out = Compacted { kept: vec![None; slots], ranks: vec![None; slots], counts: Vec::new() };
    for set in sets {
        let mut count = 0;
        for c in 0..set.len {
            if in_set(set, mask, c) {
                out.kept[set.slot + count] = Some(c as u32);
                out.ranks[set.slot + c] = Some(count as u32);
                count += 1;
            } else {
                out.ranks[set.slot + c] = Some(u32::MAX);
            }
        }
        out.counts.push(count as u32);
    }
    out
}
