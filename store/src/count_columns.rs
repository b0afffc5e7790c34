//! The count columns of `daily_metrics` and `kpi_windows`: a [`Counts`] stored as seven
//! `bigint` columns named as its fields, in the order of [`Counts::FIELDS`]. Both backends
//! read and write them through here.

#[cfg(test)]
use schemas::kpi::Counts;

/// The count column names, comma-separated, as a literal for `concat!` (the names of
/// [`Counts::FIELDS`], in their order).
macro_rules! count_columns {
    () => {
        "tasks_total, succeeded, failed, cancelled, tasks_with_intervention, interventions, cost_micros"
    };
}
pub(crate) use count_columns;

/// How many columns a [`Counts`](schemas::kpi::Counts) takes.
pub(crate) const COUNT_COLUMNS: usize = 7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_are_the_fields_of_counts_in_their_order() {
        assert_eq!(count_columns!(), Counts::FIELDS.join(", "));
        assert_eq!(COUNT_COLUMNS, Counts::FIELDS.len());
    }
}
