"""Container images: references, registry auth, the registry client, OCI archives and rootfs tarballs."""
