//! The residual sum of two activations of the same shape (a ResNet block's
//! output plus its shortcut). Each input keeps its own layer's channels, so
//! the sum keeps their union: a channel either branch keeps (`nn::graph`
//! makes the union a channel set of its own, compacted with the others).
//! In a compacted network (export) the inputs hold different channels, so
//! the sum carries where each input's channels go in it: fixed channel sets
//! the network uploads once. A following ReLU fuses into it. A sparse
//! step's two mask samples run each launch once (`ops::add::forward_pair`).

use serde::{Deserialize, Serialize};

use super::layer::{Channels, CpuIo, Ctx, Layer, Second, Shape, expect_inputs};
use crate::error::{Error, Result};
use crate::ops::add::{backward, backward_pair, forward, forward_pair};
use crate::ops::gather::Side;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Add {
    /// A compacted network's sum: the output channel of each channel of
    /// each input (ascending); every output channel comes from one input
    /// at least. Absent: inputs and output have the same channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<[Vec<usize>; 2]>,
}

impl Add {
    /// Output channels of a sum with fixed channel lists.
    fn fixed_out(lists: &[Vec<usize>; 2]) -> usize {
        lists.iter().flat_map(|l| l.last()).map(|&c| c + 1).max().unwrap_or(0)
    }

    fn check_lists(lists: &[Vec<usize>; 2], inputs: &[Shape]) -> Result<usize> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("add: {m}")));
        let out = Add::fixed_out(lists);
        for (i, (l, s)) in lists.iter().zip(inputs).enumerate() {
            if l.len() != s.c {
                return bad(format!("input {i} has {} channels but its channel list {}", s.c, l.len()));
            }
            if l.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("input {i}'s channel list is not ascending"));
            }
        }
        let mut covered = vec![false; out];
        lists.iter().flatten().for_each(|&c| covered[c] = true);
        if let Some(c) = covered.iter().position(|&k| !k) {
            return bad(format!("output channel {c} comes from no input"));
        }
        Ok(out)
    }
}

impl Layer for Add {
    fn kind(&self) -> &'static str {
        "add"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain data")
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs("add", inputs, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        match &self.channels {
            None if a != b => Err(Error::InvalidArgument(format!("add: the inputs are {a} and {b}"))),
            None => Ok(a),
            Some(_) if (a.h, a.w) != (b.h, b.w) => {
                Err(Error::InvalidArgument(format!("add: the inputs are {a} and {b} (different image sizes)")))
            }
            Some(lists) => Ok(Shape { c: Add::check_lists(lists, inputs)?, ..a }),
        }
    }

    fn channels(&self) -> Channels {
        match self.channels {
            // A compacted network is trained dense, if at all.
            Some(_) => Channels::New { prunable: false },
            None => Channels::Union,
        }
    }

    fn fixed_sets(&self) -> Vec<(usize, Vec<usize>)> {
        match &self.channels {
            Some(lists) => lists.iter().map(|l| (Add::fixed_out(lists), l.clone())).collect(),
            None => Vec::new(),
        }
    }

    fn fuses_relu(&self) -> bool {
        true
    }

    fn gates_input_grads(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx) -> Result<()> {
        let (a, b) = (cx.inputs[0], cx.inputs[1]);
        let rows = cx.rows.per_sample(a.shape.plane());
        match self.channels {
            None => {
                let sides = [cx.output.side, a.side, b.side];
                let kept = cx.kept_or_unused();
                forward(cx.rec, cx.output.t, (a.t, b.t), kept, sides, rows, a.shape.c, (cx.relu, false))
            }
            Some(_) => {
                let (kept, fixed) = cx.fixed("add")?;
                let sides = [Side::Full, fixed[0], fixed[1]];
                let c = cx.output.shape.c;
                forward(cx.rec, cx.output.t, (a.t, b.t), kept, sides, rows, c, (cx.relu, true))
            }
        }
    }

    fn backward(&self, cx: &mut Ctx) -> Result<()> {
        let dy = cx.d_output.ok_or_else(|| Error::InvalidArgument("add backward without d_output".into()))?;
        let (kept, exact, sides) = match self.channels {
            None => (cx.kept_or_unused(), false, [cx.output.side, cx.inputs[0].side, cx.inputs[1].side]),
            Some(_) => {
                let (kept, fixed) = cx.fixed("add")?;
                (kept, true, [Side::Full, fixed[0], fixed[1]])
            }
        };
        let c = if exact { cx.output.shape.c } else { cx.inputs[0].shape.c };
        for i in 0..2 {
            let x = cx.inputs[i];
            let Some(dx) = cx.d_inputs[i] else { continue };
            let rows = cx.rows.per_sample(x.shape.plane());
            let flags = (dx.accumulate, dx.gate, exact);
            backward(cx.rec, dx.t, dy, x.t, kept, (sides[0], sides[1 + i]), rows, c, flags)?;
        }
        Ok(())
    }

    /// Both mask samples' sums in one launch (`ops::add::forward_pair`); a
    /// compacted network's (fixed sets, no masks) one by one.
    fn forward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        if self.channels.is_some() {
            return cx.each_sample(second, |c| self.forward(c));
        }
        let part = |c: &Ctx<'a, '_>| -> Result<_> {
            let (a, b) = (c.inputs[0], c.inputs[1]);
            Ok((c.output.t, (a.t, b.t), c.kept_or_unused(), [c.output.side, a.side, b.side]))
        };
        let ((y0, in0, k0, s0), (y1, in1, k1, s1)) = cx.both(second, part)?;
        let a = cx.inputs[0];
        let rows = cx.rows.per_sample(a.shape.plane());
        forward_pair(cx.rec, [y0, y1], [in0, in1], [k0, k1], [s0, s1], rows, a.shape.c, cx.relu)
    }

    /// Both samples' gradients into each input in one launch
    /// (`ops::add::backward_pair`), input 0's first as one by one.
    fn backward_pair<'a>(&self, cx: &mut Ctx<'a, '_>, second: &mut Second<'a>) -> Result<()> {
        if self.channels.is_some() {
            return cx.each_sample(second, |c| self.backward(c));
        }
        for i in 0..2 {
            let part = |c: &Ctx<'a, '_>| -> Result<_> {
                let dy = c.d_output.ok_or_else(|| Error::InvalidArgument("add backward without d_output".into()))?;
                let x = c.inputs[i];
                Ok((c.d_inputs[i], dy, x.t, c.kept_or_unused(), (c.output.side, x.side)))
            };
            let ((dx0, dy0, x0, k0, s0), (dx1, dy1, x1, k1, s1)) = cx.both(second, part)?;
            let x = cx.inputs[i];
            let rows = cx.rows.per_sample(x.shape.plane());
            let c = cx.inputs[0].shape.c;
            match (dx0, dx1) {
                (Some(d0), Some(d1)) if (d0.accumulate, d0.gate) == (d1.accumulate, d1.gate) => {
                    let (dxs, flags) = ([d0.t, d1.t], (d0.accumulate, d0.gate));
                    backward_pair(cx.rec, (dxs, [dy0, dy1], [x0, x1]), [k0, k1], [s0, s1], rows, c, flags)?;
                }
                // Otherwise each sample on its own, sample 0's first.
                _ => {
                    for (dx, dy, xt, k, s) in [(dx0, dy0, x0, k0, s0), (dx1, dy1, x1, k1, s1)] {
                        if let Some(dx) = dx {
                            backward(cx.rec, dx.t, dy, xt, k, s, rows, c, (dx.accumulate, dx.gate, false))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn cpu_forward(&self, io: &CpuIo, x: &[&[f64]]) -> Vec<f64> {
        let Some(lists) = &self.channels else {
            return x[0].iter().zip(x[1]).map(|(a, b)| a + b).collect();
        };
        let c = io.out_shape.c;
        let rows = io.batch * io.out_shape.plane();
        let mut out = vec![0.0; rows * c];
        for (xi, list) in x.iter().zip(lists) {
            for r in 0..rows {
                for (j, &o) in list.iter().enumerate() {
                    out[r * c + o] += xi[r * list.len() + j];
                }
            }
        }
        out
    }

    fn cpu_backward(&self, io: &CpuIo, _x: &[&[f64]], _y: &[f64], dy: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let Some(lists) = &self.channels else {
            return (vec![dy.to_vec(), dy.to_vec()], Vec::new());
        };
        let c = io.out_shape.c;
        let rows = io.batch * io.out_shape.plane();
        let dx = lists
            .iter()
            .map(|list| (0..rows).flat_map(|r| list.iter().map(move |&o| dy[r * c + o])).collect())
            .collect();
        (dx, Vec::new())
    }

    fn compacted(&self, kept_in: &[Vec<usize>], kept_out: &[usize]) -> Box<dyn Layer> {
        if kept_in.iter().all(|k| k == kept_out) {
            return Box::new(Add::default());
        }
        let place = |k: &Vec<usize>| -> Vec<usize> {
            k.iter().map(|c| kept_out.binary_search(c).expect("an input's channel is in the union")).collect()
        };
        Box::new(Add { channels: Some([place(&kept_in[0]), place(&kept_in[1])]) })
    }
}
