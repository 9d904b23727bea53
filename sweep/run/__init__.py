"""Running a sweep: where workers go, the worker pool, and the loop that feeds it cells."""
