//! The auth and dashboard API (issue 6; not built yet: the binary only validates config and
//! applies migrations).
