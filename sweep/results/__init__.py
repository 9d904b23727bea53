"""What a sweep leaves behind: result shards, the manifest, and how they are written."""
