//! Reference of shaders/decode.wgsl: value i of an NHWC batch is its
//! channel's table entry for byte i.

pub fn decode_bytes(bytes: &[u8], tables: &[[f32; 256]]) -> Vec<f64> {
    let c = tables.len();
    bytes.iter().enumerate().map(|(i, &b)| f64::from(tables[i % c][usize::from(b)])).collect()
}
