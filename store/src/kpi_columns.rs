//! The KPI columns of `daily_metrics` and `kpi_windows`: a [`Counts`] as seven `bigint` columns
//! named as its fields (in the order of [`Counts::FIELDS`]), then the [`Latencies`] as three
//! nullable `double` columns named as its fields. Both backends read and write them through
//! here.

#[cfg(test)]
use schemas::kpi::Counts;
use schemas::kpi::Latencies;

/// The KPI column names, comma-separated, as a literal for `concat!` (the fields of
/// [`Counts`], then those of [`Latencies`], in their order).
macro_rules! kpi_columns {
    () => {
        "tasks_total, succeeded, failed, cancelled, tasks_with_intervention, interventions, cost_micros, \
         latency_p50_ms, latency_p95_ms, latency_p99_ms"
    };
}
pub(crate) use kpi_columns;

/// How many columns a [`Counts`](schemas::kpi::Counts) takes (the first KPI columns).
pub(crate) const COUNT_COLUMNS: usize = 7;
/// How many columns the [`Latencies`](schemas::kpi::Latencies) take (after the counts).
pub(crate) const LATENCY_COLUMNS: usize = 3;

/// The latency columns' values of `l`, in column order.
pub(crate) fn latency_values(l: &Latencies) -> [Option<f64>; LATENCY_COLUMNS] {
    [l.latency_p50_ms, l.latency_p95_ms, l.latency_p99_ms]
}

/// The inverse of [`latency_values`].
pub(crate) fn latencies_of(values: [Option<f64>; LATENCY_COLUMNS]) -> Latencies {
    let [latency_p50_ms, latency_p95_ms, latency_p99_ms] = values;
    Latencies {
        latency_p50_ms,
        latency_p95_ms,
        latency_p99_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_are_the_fields_of_counts_and_latencies_in_their_order() {
        let latencies = serde_json::to_value(Latencies::<f64>::default()).unwrap();
        let mut latency_fields: Vec<&str> = latencies
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        latency_fields.sort_unstable();
        assert_eq!(
            latency_fields,
            ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
        );
        let names: Vec<&str> = Counts::FIELDS.into_iter().chain(latency_fields).collect();
        assert_eq!(kpi_columns!(), names.join(", "));
        assert_eq!(COUNT_COLUMNS, Counts::FIELDS.len());
        let l = latencies_of([Some(1.0), None, Some(3.0)]);
        assert_eq!(
            serde_json::to_value(l).unwrap(),
            serde_json::json!({"latency_p50_ms": 1.0, "latency_p95_ms": null, "latency_p99_ms": 3.0})
        );
        assert_eq!(latency_values(&l), [Some(1.0), None, Some(3.0)]);
    }
}
