"""Running a sweep: the pipeline, where workers go (placement), the worker pool on Ray,
the dispatcher that feeds it cells, the worker that computes a cell, adoption of
orphaned files, the output lease, progress and telemetry."""
