//! The ONNX Runtime adapter: the two sessions of a model set and batched inference.
//!
//! ONNX Runtime is loaded from its shared library at run time (`ort` with `load-dynamic`):
//! [`init_runtime`] once per process, then [`ModelSet::load`] checks what each model declares
//! (input and output names, element type, rank, fixed dimensions) against the manifest and runs
//! one probe inference, so that a model that does not fit is refused at start, not at the first
//! window.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::detector::Evidence;
use crate::features::{self, Row, FEATURE_COUNT};
use crate::manifest::{model_path, Manifest, ModelEntry};
use crate::scoring::{feature_errors, verdict, Statistical, Verdict};
use crate::{Error, Result};

static RUNTIME: OnceLock<Environment> = OnceLock::new();

/// The shared library to load: `configured` if not empty, else `ORT_DYLIB_PATH`, else the
/// system search path.
pub fn runtime_path(configured: &str) -> PathBuf {
    if !configured.is_empty() {
        return configured.into();
    }
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| "libonnxruntime.so".into())
}

/// Loads ONNX Runtime from `library` (first call; later calls return the loaded runtime).
pub fn init_runtime(library: &Path) -> Result<&'static Environment> {
    if let Some(env) = RUNTIME.get() {
        return Ok(env);
    }
    let builder = ort::init_from(library).map_err(|e| {
        Error::Ort(format!(
            "loading {} (set scorer.onnxruntime_path or ORT_DYLIB_PATH; scripts/install-deps.sh installs it): {e}",
            library.display()
        ))
    })?;
    let env = builder.with_name("agentops-scorer").build()?;
    Ok(RUNTIME.get_or_init(|| env))
}

/// The statistical member's reading of the last window of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StatInput {
    /// Its score (largest CUSUM).
    pub score: f64,
    /// Per-feature CUSUM.
    pub evidence: [f64; FEATURE_COUNT],
    /// Whether the series may alarm.
    pub warm: bool,
}

impl StatInput {
    /// The statistical reading of `evidence`.
    pub fn of(evidence: &Evidence) -> StatInput {
        StatInput {
            score: evidence.score(),
            evidence: evidence.cusum,
            warm: evidence.warm,
        }
    }
}

/// Model inputs of a batch of sequences: `[n][sequence_length][features]`, row-major, and the
/// statistical reading of each sequence's last window.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Features.
    pub x: Vec<f32>,
    /// 1 where a feature is defined, 0 where not.
    pub mask: Vec<f32>,
    /// Statistical reading per sequence.
    pub statistical: Vec<StatInput>,
    /// Sequences in the batch.
    pub len: usize,
}

impl Batch {
    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.x.clear();
        self.mask.clear();
        self.statistical.clear();
        self.len = 0;
    }
}

/// A loaded model set: manifest and both sessions.
pub struct ModelSet {
    /// The model directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    lstm: Session,
    transformer: Session,
    reconstruction: Vec<f32>,
}

impl std::fmt::Debug for ModelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSet")
            .field("dir", &self.dir)
            .field("version", &self.manifest.version)
            .finish_non_exhaustive()
    }
}

impl ModelSet {
    /// Loads and checks the set in `dir`; `threads` is each session's intra-op thread count.
    /// [`init_runtime`] must have been called.
    pub fn load(dir: &Path, threads: usize) -> Result<ModelSet> {
        let env = RUNTIME
            .get()
            .ok_or_else(|| Error::Ort("ONNX Runtime is not loaded (init_runtime)".into()))?;
        let manifest = Manifest::load(dir)?;
        let open = |entry: &ModelEntry| -> Result<Session> {
            let path = model_path(dir, entry);
            let session = Session::builder(env)
                .and_then(|b| {
                    b.with_optimization_level(GraphOptimizationLevel::Level3)
                        .map_err(Into::into)
                })
                .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
                .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
                .and_then(|b| b.with_flush_to_zero().map_err(Into::into))
                .and_then(|mut b| b.commit_from_file(&path))
                .map_err(|e| model_error(dir, format!("{}: {e}", entry.file)))?;
            check_signature(&session, entry, &manifest)
                .map_err(|m| model_error(dir, format!("{}: {m}", entry.file)))?;
            Ok(session)
        };
        let lstm = open(&manifest.models.lstm)?;
        let transformer = open(&manifest.models.transformer)?;
        let mut set = ModelSet {
            dir: dir.to_path_buf(),
            manifest,
            lstm,
            transformer,
            reconstruction: Vec::new(),
        };
        let mut probe = Batch::default();
        set.push(
            &mut probe,
            std::iter::repeat_n(&crate::features::EMPTY, set.manifest.sequence_length),
            StatInput::default(),
        );
        set.score(&probe)?;
        Ok(set)
    }

    /// Appends one sequence (exactly `sequence_length` windows, oldest first) to `batch`.
    pub fn push<'a>(
        &self,
        batch: &mut Batch,
        sequence: impl Iterator<Item = &'a Row>,
        statistical: StatInput,
    ) {
        let start = batch.x.len();
        for row in sequence {
            let at = batch.x.len();
            batch.x.resize(at + FEATURE_COUNT, 0.0);
            batch.mask.resize(at + FEATURE_COUNT, 0.0);
            features::apply(row, &mut batch.x[at..], &mut batch.mask[at..]);
        }
        batch.statistical.push(statistical);
        assert_eq!(
            batch.x.len() - start,
            self.manifest.sequence_length * FEATURE_COUNT,
            "a sequence has sequence_length windows"
        );
        batch.len += 1;
    }

    /// Scores every sequence of `batch`: both models in one call each.
    pub fn score(&mut self, batch: &Batch) -> Result<Vec<Verdict>> {
        if batch.len == 0 {
            return Ok(Vec::new());
        }
        let (l, f, p) = (
            self.manifest.sequence_length,
            FEATURE_COUNT,
            self.manifest.score_positions,
        );
        let per = l * f;
        let mut lstm_errors = Vec::with_capacity(batch.len);
        run(
            &mut self.lstm,
            &self.manifest.models.lstm,
            batch,
            l,
            &mut self.reconstruction,
        )?;
        for i in 0..batch.len {
            let r = i * per..(i + 1) * per;
            lstm_errors.push(feature_errors(
                &batch.x[r.clone()],
                &self.reconstruction[r.clone()],
                &batch.mask[r],
                f,
                p,
            ));
        }
        run(
            &mut self.transformer,
            &self.manifest.models.transformer,
            batch,
            l,
            &mut self.reconstruction,
        )?;
        let ensemble = self.manifest.ensemble();
        let (cl, ct) = (
            self.manifest.models.lstm.calibration,
            self.manifest.models.transformer.calibration,
        );
        Ok(lstm_errors
            .into_iter()
            .enumerate()
            .map(|(i, le)| {
                let r = i * per..(i + 1) * per;
                let te = feature_errors(
                    &batch.x[r.clone()],
                    &self.reconstruction[r.clone()],
                    &batch.mask[r],
                    f,
                    p,
                );
                let stat = &batch.statistical[i];
                let statistical = Statistical {
                    score: stat.score,
                    evidence: &stat.evidence,
                    warm: stat.warm,
                };
                verdict(&le, &te, statistical, &cl, &ct, &ensemble)
            })
            .collect())
    }
}

fn run(
    session: &mut Session,
    entry: &ModelEntry,
    batch: &Batch,
    len: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let input = TensorRef::from_array_view(([batch.len, len, FEATURE_COUNT], &batch.x[..]))?;
    let outputs = session.run(ort::inputs![entry.input.as_str() => input])?;
    let value = outputs
        .get(&entry.output)
        .ok_or_else(|| Error::Ort(format!("{}: no output {}", entry.file, entry.output)))?;
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    if **shape != [batch.len as i64, len as i64, FEATURE_COUNT as i64] {
        return Err(Error::Ort(format!(
            "{}: output shape {:?}, expected [{}, {len}, {FEATURE_COUNT}]",
            entry.file, &**shape, batch.len
        )));
    }
    out.clear();
    out.extend_from_slice(data);
    Ok(())
}

/// Why a session's declared inputs and outputs do not fit the manifest, if they do not.
fn check_signature(session: &Session, entry: &ModelEntry, manifest: &Manifest) -> Result<(), String> {
    let expected = [-1, manifest.sequence_length as i64, FEATURE_COUNT as i64];
    let fits = |dtype: &ValueType, what: &str, name: &str| -> Result<(), String> {
        let (Some(ty), Some(shape)) = (dtype.tensor_type(), dtype.tensor_shape()) else {
            return Err(format!("{what} `{name}` is not a tensor"));
        };
        if ty != TensorElementType::Float32 {
            return Err(format!("{what} `{name}` is {ty:?}, expected Float32"));
        }
        let dims: &[i64] = shape;
        let fixed_fit = dims.len() == 3 && dims.iter().zip(expected).skip(1).all(|(d, e)| *d == e || *d < 0);
        if !fixed_fit {
            return Err(format!(
                "{what} `{name}` has shape {dims:?}, expected [batch, {}, {FEATURE_COUNT}] (sequence_length, features of the manifest)",
                manifest.sequence_length
            ));
        }
        Ok(())
    };
    let inputs = session.inputs();
    if inputs.len() != 1 || inputs[0].name() != entry.input {
        let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
        return Err(format!(
            "inputs {names:?}, the manifest says one input `{}`",
            entry.input
        ));
    }
    fits(inputs[0].dtype(), "input", &entry.input)?;
    let Some(output) = session.outputs().iter().find(|o| o.name() == entry.output) else {
        let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        return Err(format!("outputs {names:?} lack `{}`", entry.output));
    };
    fits(output.dtype(), "output", &entry.output)
}

fn model_error(dir: &Path, message: String) -> Error {
    Error::Model {
        dir: dir.display().to_string(),
        message,
    }
}
