"""Real servers for tests and benchmarks: an HTTP range server with fault injection, moto S3."""
