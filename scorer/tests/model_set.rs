//! The committed model set (`scorer/models`) in ONNX Runtime: the Rust scorer reproduces the
//! Python reference (`reference.json`, written by the training package with onnxruntime on the
//! same files) within 1e-4, and a set whose files or manifest do not fit is refused with the
//! reason. Needs `ORT_DYLIB_PATH` (set by scripts/test.sh).

use std::path::{Path, PathBuf};

use scorer::features::{Row, FEATURE_COUNT};
use scorer::manifest::MANIFEST_FILE;
use scorer::models::{init_runtime, runtime_path, Batch, ModelSet, StatInput};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-4;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn load(dir: &Path) -> scorer::Result<ModelSet> {
    init_runtime(&runtime_path("")).expect("ONNX Runtime: set ORT_DYLIB_PATH (scripts/test.sh does)");
    ModelSet::load(dir, 1)
}

#[derive(Deserialize)]
struct Statistical {
    score: f64,
    evidence: Vec<f64>,
    warm: bool,
}

#[derive(Deserialize)]
struct Case {
    series: String,
    rows: Vec<Vec<Option<f64>>>,
    statistical_input: Statistical,
    lstm_raw: f64,
    transformer_raw: f64,
    lstm_normalized: f64,
    transformer_normalized: f64,
    ensemble: f64,
    is_anomaly: bool,
    contributions: Vec<f64>,
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

fn close(what: &str, series: &str, rust: f64, python: f64) {
    let scale = python.abs().max(1.0);
    assert!(
        (rust - python).abs() <= TOLERANCE * scale,
        "{series}: {what} rust {rust} python {python}"
    );
}

#[test]
fn rust_scores_equal_the_python_reference() {
    let mut set = load(&models_dir()).unwrap();
    let text = std::fs::read_to_string(models_dir().join("reference.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    assert!(reference.cases.len() >= 4, "a handful of reference cases");
    assert!(
        reference
            .cases
            .iter()
            .any(|c| c.rows.iter().any(|r| r.iter().any(Option::is_none))),
        "the reference covers empty windows"
    );
    assert!(reference.cases.iter().any(|c| c.is_anomaly) && reference.cases.iter().any(|c| !c.is_anomaly));
    let mut batch = Batch::default();
    let rows: Vec<Vec<Row>> = reference
        .cases
        .iter()
        .map(|c| {
            c.rows
                .iter()
                .map(|r| r.as_slice().try_into().expect("FEATURE_COUNT values per row"))
                .collect()
        })
        .collect();
    let stat = |c: &Case| StatInput {
        score: c.statistical_input.score,
        evidence: c
            .statistical_input
            .evidence
            .as_slice()
            .try_into()
            .expect("FEATURE_COUNT values"),
        warm: c.statistical_input.warm,
    };
    assert!(rows.iter().flatten().all(|r: &Row| r.len() == FEATURE_COUNT));
    for (r, c) in rows.iter().zip(&reference.cases) {
        set.push(&mut batch, r.iter(), stat(c));
    }
    // Scored together in one batch, and each alone: batching must not change a score.
    let together = set.score(&batch).unwrap();
    for ((case, v), r) in reference.cases.iter().zip(&together).zip(&rows) {
        let s = &case.series;
        close("lstm_raw", s, v.lstm_raw, case.lstm_raw);
        close("transformer_raw", s, v.transformer_raw, case.transformer_raw);
        close("lstm_normalized", s, v.lstm_normalized, case.lstm_normalized);
        close(
            "transformer_normalized",
            s,
            v.transformer_normalized,
            case.transformer_normalized,
        );
        close("ensemble", s, v.ensemble, case.ensemble);
        close("statistical", s, v.statistical, case.statistical_input.score);
        assert_eq!(v.is_anomaly, case.is_anomaly, "{s}");
        for (f, (a, b)) in v.contributions.iter().zip(&case.contributions).enumerate() {
            close(&format!("contribution {f}"), s, *a, *b);
        }
        let mut one = Batch::default();
        set.push(&mut one, r.iter(), stat(case));
        let alone = set.score(&one).unwrap();
        close("ensemble alone", s, alone[0].ensemble, v.ensemble);
    }
}

fn copy_set(to: &Path) {
    for entry in std::fs::read_dir(models_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(MANIFEST_FILE);
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn a_set_that_does_not_fit_is_refused_with_the_reason() {
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "shape",
            Box::new(|m| m["sequence_length"] = (m["sequence_length"].as_u64().unwrap() + 1).into()),
        ),
        ("inputs", Box::new(|m| m["models"]["lstm"]["input"] = "x".into())),
        (
            "lack `recon`",
            Box::new(|m| m["models"]["transformer"]["output"] = "recon".into()),
        ),
        (
            "has sha256",
            Box::new(|m| m["models"]["lstm"]["sha256"] = "00".into()),
        ),
        ("features", Box::new(|m| m["features"][0] = "tsr".into())),
        (
            "missing field `threshold`",
            Box::new(|m| {
                m["ensemble"].as_object_mut().unwrap().remove("threshold");
            }),
        ),
    ];
    for (reason, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_set(dir.path());
        edit_manifest(dir.path(), edit);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(reason), "expected `{reason}` in: {err}");
    }
    // Swapping the two files (hashes updated) is caught only if their signatures differ; a
    // file that is not ONNX at all is refused by the runtime.
    let dir = tempfile::tempdir().unwrap();
    copy_set(dir.path());
    std::fs::write(dir.path().join("garbage.onnx"), b"not a model").unwrap();
    edit_manifest(dir.path(), |m| {
        use sha2::Digest;
        m["models"]["lstm"]["file"] = "garbage.onnx".into();
        m["models"]["lstm"]["sha256"] = hex::encode(sha2::Sha256::digest(b"not a model")).into();
    });
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("garbage.onnx"), "{err}");
}
