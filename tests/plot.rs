//! Charts from a metrics file: every chart is written as PNG and SVG, the
//! PNG is a real image of the expected size, and malformed input is a typed
//! error naming the line.

use sparsetrain::plot::{SweepPoint, plot_run, plot_sweep, read_metrics};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sparsetrain-plot-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn run_and_sweep_charts_are_written() {
    let dir = temp_dir("run");
    let metrics = dir.join("m.jsonl");
    let mut text = String::new();
    for e in 1..=3 {
        text += &format!(
            "{{\"phase\":\"train\",\"epoch\":{e},\"lr\":0.05,\"loss\":{},\"train_acc\":{},\"test_acc\":{},\"step_ms\":12.5,\"samples_per_s\":900,\"kept\":[{},{}],\"polarized\":0.5}}\n",
            1.0 / e as f64,
            0.8 + 0.05 * e as f64,
            0.78 + 0.05 * e as f64,
            30 + e,
            28 - e
        );
    }
    text += "{\"phase\":\"finetune\",\"epoch\":1,\"lr\":0.01,\"loss\":0.2,\"train_acc\":0.97,\"test_acc\":0.95,\"step_ms\":6.0,\"samples_per_s\":1800,\"kept\":[31,27],\"polarized\":0.9}\n";
    text += "{\"phase\":\"summary\",\"kept\":[31,27],\"params\":5000,\"dense_params\":20000,\"test_acc\":0.95,\"score_hist\":[50,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,14]}\n";
    std::fs::write(&metrics, text).unwrap();
    let m = read_metrics(&metrics).unwrap();
    assert_eq!(m.epochs.len(), 4);
    assert!(m.summary.is_some());
    let out = dir.join("charts");
    let files = plot_run(&m, &out).unwrap();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in ["loss.png", "loss.svg", "accuracy.png", "kept_units.svg", "score_histogram.png"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        if f.extension().unwrap() == "png" {
            assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", f.display());
            // IHDR width and height, big-endian, at bytes 16..24.
            assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 900);
            assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 560);
        } else {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.contains("<svg") && svg.contains("<text"), "{} has no labels", f.display());
        }
    }
    let points = [
        SweepPoint { label: "dense".into(), step_ms: 40.0, test_acc: 0.98 },
        SweepPoint { label: "keep 0.1".into(), step_ms: 5.0, test_acc: 0.975 },
    ];
    let sweep = plot_sweep(&points, &out).unwrap();
    assert_eq!(sweep.len(), 2);
    assert!(plot_sweep(&[], &out).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_metrics_are_refused_with_the_line() {
    let dir = temp_dir("bad");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"phase\":\"train\",\"epoch\":1,\"loss\":0.5}\nnot json\n").unwrap();
    let err = read_metrics(&bad).unwrap_err().to_string();
    assert!(err.contains(":2:"), "{err}");
    std::fs::write(&bad, "").unwrap();
    assert!(read_metrics(&bad).is_err(), "an empty file has nothing to plot");
    assert!(read_metrics(&dir.join("missing.jsonl")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
