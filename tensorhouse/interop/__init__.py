"""Other tools' data structures: pandas, Polars, Hugging Face ``datasets``, Parquet export.

Each client is an optional extra, imported only when its function runs:
``th.polars.scan``, ``th.to_huggingface``, ``th.ingest.huggingface``,
``th.export``, ``Dataset.to_pandas``.
"""
