//! The aggregator: consumes `TaskEvent`s, keeps event-time windows per tenant/agent, writes daily
//! metrics to the store and publishes `KpiWindow`s for the scorer (issue 4; not built yet: the
//! binary only validates config and applies migrations).
