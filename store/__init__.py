"""The only place with SQL: migrations, the COPY writer, queries, retention, the embedded cluster."""
