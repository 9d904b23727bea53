"""What a sweep leaves in its output folder: the result rows, the manifest that vouches
for them, the plan of the latest run, and how they are written."""
