"""The demo city, Shahr-e Nemuneh (شهر نمونه): a seeded, deterministic generator of synthetic
municipal datasets in mixed formats and CRSs, with their ETL job manifests. It is what
`make demo` loads and what the tests and benchmarks use."""

from etl.demo.generate import generate_city, write_parcels

__all__ = ["generate_city", "write_parcels"]
