"""OTF addon: a bucket (a local directory standing in for a remote store)."""
