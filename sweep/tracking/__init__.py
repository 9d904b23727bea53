"""MLflow: the sweep's parent and child runs, metrics and curve artifacts."""
