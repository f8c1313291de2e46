"""migw benchmarks: ``python -m bench [--quick] [NAME ...]`` (``make bench``)."""
