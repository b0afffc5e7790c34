//! [`Counted`]: a row whose first columns are the count columns of a [`Counts`]
//! ([`crate::count_columns`]) and whose other columns a derived row type reads and writes. (The
//! `scylla` derives flatten a field only when writing; this reads and writes the counts of the
//! `daily_metrics` and `kpi_windows` rows in one place.)

use schemas::kpi::Counts;
use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::value::DeserializeValue;
use scylla::deserialize::{DeserializationError, TypeCheckError};
use scylla::frame::response::result::ColumnSpec;
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::RowWriter;
use scylla::serialize::SerializationError;

use crate::count_columns::COUNT_COLUMNS;

/// A row of [`COUNT_COLUMNS`] count columns, then the columns of `R`.
pub(super) struct Counted<R> {
    /// The first columns.
    pub(super) counts: Counts,
    /// The other columns.
    pub(super) rest: R,
}

/// A statement or result with fewer columns than the counts take.
#[derive(Debug, thiserror::Error)]
#[error("{0} columns, fewer than the {COUNT_COLUMNS} count columns")]
struct TooFewColumns(usize);

/// A count column of another type than `bigint`.
#[derive(Debug, thiserror::Error)]
#[error("count column `{column}`: {source}")]
struct CountColumn<E: std::error::Error + 'static> {
    column: String,
    source: E,
}

/// The count columns and the rest of `columns`.
fn split<'a, 'b>(columns: &'a [ColumnSpec<'b>]) -> Option<(&'a [ColumnSpec<'b>], &'a [ColumnSpec<'b>])> {
    (columns.len() >= COUNT_COLUMNS).then(|| columns.split_at(COUNT_COLUMNS))
}

impl<R: SerializeRow> SerializeRow for Counted<R> {
    fn serialize(
        &self,
        ctx: &RowSerializationContext<'_>,
        writer: &mut RowWriter,
    ) -> Result<(), SerializationError> {
        let columns = ctx.columns();
        let (counts, rest) =
            split(columns).ok_or_else(|| SerializationError::new(TooFewColumns(columns.len())))?;
        for (value, spec) in self.counts.to_array().iter().zip(counts) {
            value
                .serialize(spec.typ(), writer.make_cell_writer())
                .map_err(|source| {
                    SerializationError::new(CountColumn {
                        column: spec.name().to_owned(),
                        source,
                    })
                })?;
        }
        self.rest
            .serialize(&RowSerializationContext::from_specs(rest), writer)
    }

    fn is_empty(&self) -> bool {
        false
    }
}

impl<'frame, 'metadata, R: DeserializeRow<'frame, 'metadata>> DeserializeRow<'frame, 'metadata>
    for Counted<R>
{
    fn type_check(specs: &[ColumnSpec]) -> Result<(), TypeCheckError> {
        let (counts, rest) = split(specs).ok_or_else(|| TypeCheckError::new(TooFewColumns(specs.len())))?;
        for spec in counts {
            <i64 as DeserializeValue>::type_check(spec.typ()).map_err(|source| {
                TypeCheckError::new(CountColumn {
                    column: spec.name().to_owned(),
                    source,
                })
            })?;
        }
        R::type_check(rest)
    }

    fn deserialize(mut row: ColumnIterator<'frame, 'metadata>) -> Result<Self, DeserializationError> {
        let available = row.columns_remaining();
        let mut values = [0; COUNT_COLUMNS];
        for value in &mut values {
            let column = row
                .next()
                .ok_or_else(|| DeserializationError::new(TooFewColumns(available)))??;
            *value = i64::deserialize(column.spec.typ(), column.slice).map_err(|source| {
                DeserializationError::new(CountColumn {
                    column: column.spec.name().to_owned(),
                    source,
                })
            })?;
        }
        Ok(Counted {
            counts: Counts::from_array(values),
            rest: R::deserialize(row)?,
        })
    }
}
