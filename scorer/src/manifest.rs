//! The manifest of a model set (`manifest.json` next to the ONNX files): what the models
//! expect and how their outputs are read. A model set whose manifest does not fit this
//! scorer, or whose files do not match their recorded hashes, is refused with the key or file
//! that is wrong.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::detector::DetectorParams;
use crate::features::FEATURES;
use crate::scoring::{Calibration, Ensemble};
use crate::{Error, Result};

/// File name of the manifest in a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One model of the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// ONNX file, relative to the model directory.
    pub file: String,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// Name of the input tensor (`[batch, sequence_length, features]`, f32).
    pub input: String,
    /// Name of the reconstruction output (same shape).
    pub output: String,
    /// Calibration of the model's raw error.
    pub calibration: Calibration,
}

/// Both models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Models {
    /// The LSTM autoencoder.
    pub lstm: ModelEntry,
    /// The Transformer autoencoder.
    pub transformer: ModelEntry,
}

/// Ensemble weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// LSTM weight.
    pub lstm: f64,
    /// Transformer weight.
    pub transformer: f64,
    /// Weight of the statistical member (the detector's evidence).
    pub statistical: f64,
}

/// How the two scores are combined and judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnsembleEntry {
    /// Weights of the calibrated scores.
    pub weights: Weights,
    /// Decision threshold on the ensemble score.
    pub threshold: f64,
}

/// The manifest of a model set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of the set; goes into every verdict.
    pub version: String,
    /// Length of the KPI windows the models were trained on.
    pub window_secs: u32,
    /// Windows per input sequence.
    pub sequence_length: usize,
    /// The last positions of a sequence whose error is scored.
    pub score_positions: usize,
    /// Feature names in input order.
    pub features: Vec<String>,
    /// The per-series baselines and evidence the models read (see [`crate::detector`]).
    pub detector: DetectorParams,
    /// The two models.
    pub models: Models,
    /// The ensemble.
    pub ensemble: EnsembleEntry,
    /// How the set was trained (informational).
    #[serde(default)]
    pub training: serde_json::Value,
}

impl Manifest {
    /// Reads and checks the manifest of `dir`, and the hashes of the files it names.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| model_error(dir, format!("{MANIFEST_FILE}: {e}")))?;
        manifest.check().map_err(|m| model_error(dir, m))?;
        for entry in [&manifest.models.lstm, &manifest.models.transformer] {
            let file = dir.join(&entry.file);
            let bytes = std::fs::read(&file).map_err(|source| Error::Io {
                path: file.display().to_string(),
                source,
            })?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if !actual.eq_ignore_ascii_case(&entry.sha256) {
                return Err(model_error(
                    dir,
                    format!(
                        "{} has sha256 {actual}, the manifest says {}",
                        entry.file, entry.sha256
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// Why this manifest cannot be used by this scorer, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.features != FEATURES {
            return Err(format!(
                "features {:?} differ from the scorer's {FEATURES:?}",
                self.features
            ));
        }
        if self.window_secs == 0 {
            return Err("window_secs must be positive".into());
        }
        if self.sequence_length == 0 {
            return Err("sequence_length must be positive".into());
        }
        if !(1..=self.sequence_length).contains(&self.score_positions) {
            return Err(format!(
                "score_positions {} must be in 1..={}",
                self.score_positions, self.sequence_length
            ));
        }
        self.detector.check()?;
        for (name, entry) in [
            ("lstm", &self.models.lstm),
            ("transformer", &self.models.transformer),
        ] {
            let c = entry.calibration;
            if !(c.scale.is_finite() && c.scale > 0.0) {
                return Err(format!("models.{name}.calibration.scale must be positive"));
            }
            if !(c.eps.is_finite() && c.eps > 0.0 && c.loc.is_finite()) {
                return Err(format!(
                    "models.{name}.calibration needs a finite loc and a positive eps"
                ));
            }
            if entry.file.is_empty() || entry.input.is_empty() || entry.output.is_empty() {
                return Err(format!("models.{name}: file, input and output are required"));
            }
        }
        let w = self.ensemble.weights;
        if !(w.lstm >= 0.0
            && w.transformer >= 0.0
            && w.statistical >= 0.0
            && w.lstm + w.transformer + w.statistical > 0.0)
        {
            return Err("ensemble.weights must be non-negative with a positive sum".into());
        }
        if !self.ensemble.threshold.is_finite() {
            return Err("ensemble.threshold must be finite".into());
        }
        Ok(())
    }

    /// The ensemble parameters.
    pub fn ensemble(&self) -> Ensemble {
        Ensemble {
            w_lstm: self.ensemble.weights.lstm,
            w_transformer: self.ensemble.weights.transformer,
            w_statistical: self.ensemble.weights.statistical,
            threshold: self.ensemble.threshold,
        }
    }

    /// Window length in ms.
    pub fn window_ms(&self) -> i64 {
        i64::from(self.window_secs) * 1000
    }

    /// What identifies the exact files of the set (a change means: reload).
    pub fn fingerprint(&self) -> String {
        format!(
            "{}/{}/{}",
            self.version, self.models.lstm.sha256, self.models.transformer.sha256
        )
    }
}

/// The path of a model file of `dir`.
pub fn model_path(dir: &Path, entry: &ModelEntry) -> PathBuf {
    dir.join(&entry.file)
}

fn model_error(dir: &Path, message: String) -> Error {
    Error::Model {
        dir: dir.display().to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let entry = |file: &str| ModelEntry {
            file: file.into(),
            sha256: String::new(),
            input: "input".into(),
            output: "reconstruction".into(),
            calibration: Calibration {
                loc: -3.0,
                scale: 0.5,
                eps: 1e-6,
            },
        };
        Manifest {
            version: "test".into(),
            window_secs: 900,
            sequence_length: 16,
            score_positions: 4,
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            detector: DetectorParams::default(),
            models: Models {
                lstm: entry("lstm.onnx"),
                transformer: entry("transformer.onnx"),
            },
            ensemble: EnsembleEntry {
                weights: Weights {
                    lstm: 0.5,
                    transformer: 0.5,
                    statistical: 1.0,
                },
                threshold: 3.0,
            },
            training: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_sound_manifest_passes() {
        assert_eq!(sample().check(), Ok(()));
    }

    #[test]
    fn each_defect_is_named() {
        type Breaker = fn(&mut Manifest);
        let cases: Vec<(Breaker, &str)> = vec![
            (|m| m.features.swap(0, 1), "features"),
            (|m| m.score_positions = 17, "score_positions"),
            (|m| m.detector.cusum_cap = -1.0, "detector.cusum_cap"),
            (
                |m| m.models.transformer.calibration.scale = 0.0,
                "models.transformer.calibration.scale",
            ),
            (|m| m.ensemble.weights.lstm = -1.0, "ensemble.weights"),
            (|m| m.ensemble.threshold = f64::NAN, "ensemble.threshold"),
        ];
        for (break_it, key) in cases {
            let mut m = sample();
            break_it(&mut m);
            let err = m.check().unwrap_err();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn a_file_that_does_not_match_its_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sample();
        std::fs::write(dir.path().join("lstm.onnx"), b"one").unwrap();
        std::fs::write(dir.path().join("transformer.onnx"), b"two").unwrap();
        m.models.lstm.sha256 = hex::encode(Sha256::digest(b"one"));
        m.models.transformer.sha256 = hex::encode(Sha256::digest(b"three"));
        std::fs::write(dir.path().join(MANIFEST_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("transformer.onnx has sha256"), "{err}");
        m.models.transformer.sha256 = hex::encode(Sha256::digest(b"two"));
        std::fs::write(dir.path().join(MANIFEST_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    }
}
