"""What a sweep leaves in its output folder: the result rows, the manifest that vouches
for them and the plan of the latest run."""
