"""Where the shared reference lives (`../shared` beside the repository). Tests read SendGrid's
schema and the campaign-format doc from there; nothing is copied into the project."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    candidates = [Path(os.environ["NURTURE_SHARED_DIR"])] if os.environ.get(
        "NURTURE_SHARED_DIR") else []
    candidates += [REPO.parent / "shared", Path("/work/shared")]
    for c in candidates:
        if (c / "docs" / "DESIGN.md").is_file():
            return c
    return candidates[0]


SHARED = shared_dir()
SENDGRID_REF = SHARED / "reference" / "sendgrid"
