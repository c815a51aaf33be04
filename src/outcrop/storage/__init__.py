"""Object storage: one ObjectStore interface; local-directory buckets and S3."""
