//! Reference of shaders/compact.wgsl.

/// (kept lists laid out like the mask, counts per layer). Slots past a
/// layer's count are None: the kernel leaves them untouched.
pub fn compact_kept(mask: &[u32], offsets: &[u32]) -> (Vec<Option<u32>>, Vec<u32>) {
    let mut kept = vec![None; mask.len()];
    let mut counts = Vec::new();
    for l in 0..offsets.len() - 1 {
        let (b, e) = (offsets[l] as usize, offsets[l + 1] as usize);
        let mut c = 0;
        for i in b..e {
            if mask[i] != 0 {
                kept[b + c] = Some((i - b) as u32);
                c += 1;
            }
        }
        counts.push(c as u32);
    }
    (kept, counts)
}
