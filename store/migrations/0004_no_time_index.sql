-- The hypertable's default index on fix_time alone costs every stored row a third b-tree insert
-- (about a fifth of the COPY rate: 42,600 -> 54,600 rows/s measured with bench.e2e's ceiling) and
-- serves no query of the project: time ranges are answered per device (positions_device_time), per
-- H3 cell (positions_cell_time), and chunk exclusion bounds any scan by time; retention drops chunks.
DROP INDEX IF EXISTS positions_fix_time_idx;
