"""A bundle's life: plan, tar, hash, encrypt, upload, manifest, commit, and back (unpack), approvals, records, prune."""
