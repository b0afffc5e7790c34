//! The scorer: scores `KpiWindow`s with an LSTM and a Transformer autoencoder in ONNX Runtime
//! and publishes `Anomaly` records (issue 5; not built yet: the binary only validates config and
//! applies migrations).
