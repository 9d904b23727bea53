"""Benchmarks of attack-sweep (see docs/BENCHMARKS.md); a package only so that specs
can name the factories in :mod:`bench.nets` (``factory: "bench.nets:resnet18_net"``)."""
