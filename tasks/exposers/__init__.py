"""Exposers: CIFS shares (Samba) and NFS exports (kernel exportfs or nfs-ganesha)."""
