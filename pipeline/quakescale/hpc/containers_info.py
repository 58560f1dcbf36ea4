"""What container (if any) this process runs in, for the run manifest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def container_info(hash_image: bool = True) -> dict | None:
    """Apptainer/Singularity sets APPTAINER_CONTAINER (or SINGULARITY_CONTAINER) to the image
    path inside the container; its SHA-256 identifies the exact image."""
    path = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    if not path:
        return None
    info = {"image": path, "name": os.environ.get("APPTAINER_NAME") or os.environ.get("SINGULARITY_NAME")}
    p = Path(path)
    if hash_image and p.is_file():
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        info["sha256"] = h.hexdigest()
    return info
