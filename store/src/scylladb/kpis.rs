//! [`WithKpis`]: a row whose first columns are the KPI columns ([`crate::kpi_columns`]: the
//! counts of a [`Counts`], then its [`Latencies`]) and whose other columns a derived row type
//! reads and writes. (The `scylla` derives flatten a field only when writing; this reads and
//! writes the KPIs of the `daily_metrics` and `kpi_windows` rows in one place.)

use schemas::kpi::{Counts, Latencies};
use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::value::DeserializeValue;
use scylla::deserialize::{DeserializationError, TypeCheckError};
use scylla::frame::response::result::ColumnSpec;
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::RowWriter;
use scylla::serialize::SerializationError;

use crate::kpi_columns::{latencies_of, latency_values, COUNT_COLUMNS, LATENCY_COLUMNS};

/// Columns of the KPIs.
const KPI_COLUMNS: usize = COUNT_COLUMNS + LATENCY_COLUMNS;

/// A row of the KPI columns, then the columns of `R`.
pub(super) struct WithKpis<R> {
    /// The first [`COUNT_COLUMNS`] columns.
    pub(super) counts: Counts,
    /// The next [`LATENCY_COLUMNS`] columns.
    pub(super) latency: Latencies,
    /// The other columns.
    pub(super) rest: R,
}

/// A statement or result with fewer columns than the KPIs take.
#[derive(Debug, thiserror::Error)]
#[error("{0} columns, fewer than the {KPI_COLUMNS} KPI columns")]
struct TooFewColumns(usize);

/// A KPI column of another type than its field's.
#[derive(Debug, thiserror::Error)]
#[error("KPI column `{column}`: {source}")]
struct KpiColumn<E: std::error::Error + 'static> {
    column: String,
    source: E,
}

impl<E: std::error::Error + 'static> KpiColumn<E> {
    fn new(spec: &ColumnSpec<'_>, source: E) -> Self {
        KpiColumn {
            column: spec.name().to_owned(),
            source,
        }
    }
}

/// The KPI columns and the rest of `columns`.
fn split<'a, 'b>(columns: &'a [ColumnSpec<'b>]) -> Option<(&'a [ColumnSpec<'b>], &'a [ColumnSpec<'b>])> {
    (columns.len() >= KPI_COLUMNS).then(|| columns.split_at(KPI_COLUMNS))
}

impl<R: SerializeRow> SerializeRow for WithKpis<R> {
    fn serialize(
        &self,
        ctx: &RowSerializationContext<'_>,
        writer: &mut RowWriter,
    ) -> Result<(), SerializationError> {
        let columns = ctx.columns();
        let (kpis, rest) =
            split(columns).ok_or_else(|| SerializationError::new(TooFewColumns(columns.len())))?;
        let (counts, latency) = kpis.split_at(COUNT_COLUMNS);
        for (value, spec) in self.counts.to_array().iter().zip(counts) {
            value
                .serialize(spec.typ(), writer.make_cell_writer())
                .map_err(|e| SerializationError::new(KpiColumn::new(spec, e)))?;
        }
        for (value, spec) in latency_values(&self.latency).iter().zip(latency) {
            value
                .serialize(spec.typ(), writer.make_cell_writer())
                .map_err(|e| SerializationError::new(KpiColumn::new(spec, e)))?;
        }
        self.rest
            .serialize(&RowSerializationContext::from_specs(rest), writer)
    }

    fn is_empty(&self) -> bool {
        false
    }
}

impl<'frame, 'metadata, R: DeserializeRow<'frame, 'metadata>> DeserializeRow<'frame, 'metadata>
    for WithKpis<R>
{
    fn type_check(specs: &[ColumnSpec]) -> Result<(), TypeCheckError> {
        let (kpis, rest) = split(specs).ok_or_else(|| TypeCheckError::new(TooFewColumns(specs.len())))?;
        let (counts, latency) = kpis.split_at(COUNT_COLUMNS);
        for spec in counts {
            <i64 as DeserializeValue>::type_check(spec.typ())
                .map_err(|e| TypeCheckError::new(KpiColumn::new(spec, e)))?;
        }
        for spec in latency {
            <Option<f64> as DeserializeValue>::type_check(spec.typ())
                .map_err(|e| TypeCheckError::new(KpiColumn::new(spec, e)))?;
        }
        R::type_check(rest)
    }

    fn deserialize(mut row: ColumnIterator<'frame, 'metadata>) -> Result<Self, DeserializationError> {
        let available = row.columns_remaining();
        let mut next = || {
            row.next()
                .ok_or_else(|| DeserializationError::new(TooFewColumns(available)))?
        };
        let mut counts = [0; COUNT_COLUMNS];
        for value in &mut counts {
            let column = next()?;
            *value = i64::deserialize(column.spec.typ(), column.slice)
                .map_err(|e| DeserializationError::new(KpiColumn::new(column.spec, e)))?;
        }
        let mut latency = [None; LATENCY_COLUMNS];
        for value in &mut latency {
            let column = next()?;
            *value = Option::<f64>::deserialize(column.spec.typ(), column.slice)
                .map_err(|e| DeserializationError::new(KpiColumn::new(column.spec, e)))?;
        }
        Ok(WithKpis {
            counts: Counts::from_array(counts),
            latency: latencies_of(latency),
            rest: R::deserialize(row)?,
        })
    }
}
