//! Rows in Postgres's binary `COPY` format: what the commit path appends in
//! bulk goes in without a statement parsing arrays of every column into a
//! table function first (measured in BENCHMARKS.md, "The commit path").

use chrono::{DateTime, Utc};

/// 2000-01-01 UTC, Postgres's epoch, in microseconds since the Unix epoch.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rows of a binary `COPY … FROM STDIN (FORMAT binary)`, field by field in
/// the column order of the statement.
pub(super) struct BinaryRows {
    buf: Vec<u8>,
    rows: usize,
}

impl Default for BinaryRows {
    /// No rows yet: the format's header.
    fn default() -> Self {
        let mut buf = Vec::with_capacity(8192);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        BinaryRows { buf, rows: 0 }
    }
}

impl BinaryRows {
    /// Starts a row of `fields` fields.
    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
    }

    /// A `text` field.
    pub fn text(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A `bigint` field.
    pub fn int8(&mut self, v: i64) {
        self.len(8);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A `timestamptz` field: microseconds since 2000-01-01 UTC.
    pub fn timestamptz(&mut self, at: DateTime<Utc>) {
        self.int8(at.timestamp_micros() - POSTGRES_EPOCH_MICROS);
    }

    /// How many rows there are.
    pub fn len_rows(&self) -> usize {
        self.rows
    }

    /// The rows, ended by the format's trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }

    fn len(&mut self, n: usize) {
        let n = i32::try_from(n).expect("a COPY field over 2 GiB");
        self.buf.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_row_is_its_field_count_then_each_field_with_its_length() {
        let mut rows = BinaryRows::default();
        rows.row(2);
        rows.text("A");
        rows.int8(-3);
        let bytes = rows.finish();
        let header = 11 + 4 + 4;
        assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(
            &bytes[header..],
            &[
                0, 2, 0, 0, 0, 1, b'A', 0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 253, 255,
                255
            ]
        );
    }

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let mut rows = BinaryRows::default();
        rows.timestamptz(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap());
        let bytes = rows.finish();
        assert_eq!(
            &bytes[19..31],
            &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]
        );
    }
}
